//! The Bluetooth LE binding (spec section 16.3): a SoftBus peripheral advertises the SoftBus
//! service, a central connects, writes SoftBus segments ([`super::sar`]) to the RX
//! characteristic and receives the peripheral's as notifications of the TX characteristic.
//! Segments are at most ATT_MTU − 3 bytes (the largest value one ATT PDU carries).
//!
//! The advert carries the 16-bit service UUID and service data ([`AdvertData`]) so a central can
//! tell SoftBus devices apart before it connects. [`radio`] is the protocol between a virtual
//! peripheral and the virtual radio the harness runs in CI in place of a controller.

pub mod radio;

/// 16-bit SoftBus service UUID, in adverts and as the GATT primary service (spec BLE-1).
pub const SERVICE_UUID16: u16 = 0xFD5B;
/// The service UUID in 128-bit form (Bluetooth base UUID).
pub const SERVICE_UUID: &str = "0000fd5b-0000-1000-8000-00805f9b34fb";
/// RX characteristic: the central writes segments here (write without response; write
/// request allowed) (spec BLE-2).
pub const RX_CHAR_UUID: &str = "b5b50002-0b5e-4b1e-9c3a-536f66744275";
/// TX characteristic: the peripheral notifies segments here (spec BLE-2).
pub const TX_CHAR_UUID: &str = "b5b50003-0b5e-4b1e-9c3a-536f66744275";
/// ATT MTU before any exchange (spec BLE-4).
pub const DEFAULT_ATT_MTU: u16 = 23;
/// ATT header bytes in a write or notification (opcode + handle).
pub const ATT_HEADER: usize = 3;
/// Length of the service data (spec BLE-5).
pub const ADVERT_DATA_LEN: usize = 8;

/// The largest segment an ATT MTU allows.
pub fn segment_size(att_mtu: u16) -> usize {
    usize::from(att_mtu).saturating_sub(ATT_HEADER)
}

/// The SoftBus service data in an advert (spec BLE-5): 8 bytes.
///
/// | byte | field |
/// |---|---|
/// | 0 | protocol version (1) |
/// | 1 | flags: bit 0 accepts pairing (a PIN is set) |
/// | 2..6 | device hash: the first 4 bytes of the device ID |
/// | 6..8 | capability bits, big-endian (bit n = kind n of spec 10.1's kind list) |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertData {
    /// Protocol version.
    pub version: u8,
    /// Whether the device accepts pairing now.
    pub pairable: bool,
    /// First 4 bytes of the device ID.
    pub device_hash: [u8; 4],
    /// Capability kind bits.
    pub capabilities: u16,
}

/// Service data that is not SoftBus v1 advert data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    /// Wrong length.
    #[error("service data is {0} bytes, SoftBus advert data is {ADVERT_DATA_LEN}")]
    Length(usize),
    /// Reserved flag bits set.
    #[error("reserved flag bits set: {0:#04x}")]
    ReservedFlags(u8),
}

impl AdvertData {
    /// Parses the service data of [`SERVICE_UUID16`].
    pub fn parse(data: &[u8]) -> Result<AdvertData, AdvertError> {
        let b: [u8; ADVERT_DATA_LEN] = data
            .try_into()
            .map_err(|_| AdvertError::Length(data.len()))?;
        if b[1] & !1 != 0 {
            return Err(AdvertError::ReservedFlags(b[1]));
        }
        Ok(AdvertData {
            version: b[0],
            pairable: b[1] & 1 != 0,
            device_hash: [b[2], b[3], b[4], b[5]],
            capabilities: u16::from_be_bytes([b[6], b[7]]),
        })
    }

    /// The 8 bytes of service data.
    pub fn emit(&self) -> [u8; ADVERT_DATA_LEN] {
        let c = self.capabilities.to_be_bytes();
        let h = self.device_hash;
        [
            self.version,
            u8::from(self.pairable),
            h[0],
            h[1],
            h[2],
            h[3],
            c[0],
            c[1],
        ]
    }
}

/// A random static device address (spec BLE-6) derived from the device ID, so a device keeps
/// one address and a rig can name it: the two top bits set, as random static addresses have.
pub fn static_address(device_id: &[u8]) -> String {
    let mut a = [0u8; 6];
    for (i, b) in device_id.iter().take(6).enumerate() {
        a[i] = *b;
    }
    a[0] |= 0xC0;
    a.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advert_data_round_trips_and_rejects_bad_bytes() {
        let a = AdvertData {
            version: 1,
            pairable: true,
            device_hash: [1, 2, 3, 4],
            capabilities: 0x0105,
        };
        assert_eq!(a.emit(), [1, 1, 1, 2, 3, 4, 0x01, 0x05]);
        assert_eq!(AdvertData::parse(&a.emit()), Ok(a));
        assert_eq!(AdvertData::parse(&[1, 2]), Err(AdvertError::Length(2)));
        assert_eq!(
            AdvertData::parse(&[1, 2, 0, 0, 0, 0, 0, 0]),
            Err(AdvertError::ReservedFlags(2))
        );
    }

    #[test]
    fn static_address_has_the_random_static_bits() {
        assert_eq!(
            static_address(&[0x01, 2, 3, 4, 5, 6, 7]),
            "C1:02:03:04:05:06"
        );
        assert_eq!(segment_size(23), 20);
    }
}
