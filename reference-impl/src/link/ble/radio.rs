//! The virtual radio protocol: how a virtual BLE peripheral reaches the virtual BlueZ
//! (`vbluez`, in the harness) that CI runs in place of a Bluetooth controller.
//!
//! A real peripheral talks to its own controller and the air carries its adverts and ATT PDUs
//! to the central's controller, which BlueZ drives. In CI there is no controller, so the
//! peripheral connects to vbluez's Unix socket instead and says what it would have put on the
//! air; vbluez plays the air (connection interval, ATT MTU, loss with link-layer retransmission)
//! and the central's BlueZ (`org.bluez` on D-Bus). The central side is unchanged: btleplug talks
//! D-Bus to vbluez as it would to BlueZ.
//!
//! The protocol is JSON lines over a Unix stream socket, one [`RadioMsg`] per line, bytes as
//! lowercase hex. A peripheral sends `Advertise` once (and again when its advert changes),
//! then `Notify` for each TX notification; vbluez sends `Connected` (with the negotiated MTU),
//! `Write` for each ATT write to the RX characteristic, `Subscribed`/`Unsubscribed` for the
//! TX characteristic's CCCD, and `Disconnected`. Closing the socket is powering off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One message of the virtual radio protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RadioMsg {
    /// Peripheral → radio: start (or update) advertising, connectable, with this GATT database.
    Advertise {
        /// Device address, `AA:BB:CC:DD:EE:FF` (random static).
        address: String,
        /// Complete local name.
        name: String,
        /// 128-bit service UUIDs in the advert.
        service_uuids: Vec<String>,
        /// Service data by 128-bit UUID, hex.
        service_data: BTreeMap<String, String>,
        /// The GATT primary services the peripheral serves.
        services: Vec<GattService>,
    },
    /// Peripheral → radio: a notification of characteristic `char_uuid`.
    Notify {
        /// Characteristic UUID.
        char_uuid: String,
        /// Value, hex.
        data: String,
    },
    /// Peripheral → radio: drop the connection.
    Disconnect,
    /// Radio → peripheral: a central connected; ATT MTU after the exchange.
    Connected {
        /// The central's address.
        central: String,
        /// ATT MTU both sides use.
        mtu: u16,
    },
    /// Radio → peripheral: the central wrote characteristic `char_uuid`.
    Write {
        /// Characteristic UUID.
        char_uuid: String,
        /// Value, hex.
        data: String,
    },
    /// Radio → peripheral: the central enabled notifications of `char_uuid`.
    Subscribed {
        /// Characteristic UUID.
        char_uuid: String,
    },
    /// Radio → peripheral: the central disabled notifications of `char_uuid`.
    Unsubscribed {
        /// Characteristic UUID.
        char_uuid: String,
    },
    /// Radio → peripheral: the connection ended.
    Disconnected {
        /// Why (`"central"`, `"supervision timeout"`, ...).
        reason: String,
    },
}

/// A GATT primary service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GattService {
    /// 128-bit UUID.
    pub uuid: String,
    /// Its characteristics.
    pub characteristics: Vec<GattCharacteristic>,
}

/// A GATT characteristic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GattCharacteristic {
    /// 128-bit UUID.
    pub uuid: String,
    /// BlueZ flag names: `read`, `write`, `write-without-response`, `notify`, `indicate`.
    pub flags: Vec<String>,
}

/// A line that is not a radio message.
#[derive(Debug, thiserror::Error)]
#[error("bad radio message {line:?}: {cause}")]
pub struct RadioError {
    /// The line (truncated).
    pub line: String,
    /// What was wrong.
    pub cause: String,
}

impl RadioMsg {
    /// One JSON line, with its newline.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }

    /// Parses one line.
    pub fn from_line(line: &str) -> Result<RadioMsg, RadioError> {
        serde_json::from_str(line.trim()).map_err(|e| RadioError {
            line: line.chars().take(120).collect(),
            cause: e.to_string(),
        })
    }
}

/// The SoftBus GATT service (spec BLE-2): RX (write, write without response) and TX (notify).
pub fn softbus_service() -> GattService {
    GattService {
        uuid: super::SERVICE_UUID.into(),
        characteristics: vec![
            GattCharacteristic {
                uuid: super::RX_CHAR_UUID.into(),
                flags: vec!["write".into(), "write-without-response".into()],
            },
            GattCharacteristic {
                uuid: super::TX_CHAR_UUID.into(),
                flags: vec!["notify".into()],
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json_lines() {
        let m = RadioMsg::Write {
            char_uuid: super::super::RX_CHAR_UUID.into(),
            data: "c00000".into(),
        };
        let line = m.to_line();
        assert!(line.starts_with("{\"op\":\"write\""));
        assert!(line.ends_with('\n'));
        assert_eq!(RadioMsg::from_line(&line).unwrap(), m);
        assert!(RadioMsg::from_line("{\"op\":\"fly\"}").is_err());
    }
}
