//! The MT payload codec under [`super::commands`]: the errors of decoding a payload, Z-Stack's
//! status and constant tables, the EUI-64, the little-endian field [`Reader`] and [`Writer`],
//! and the [`Payload`] and [`Request`] traits every typed command implements.

use std::fmt;

use super::frame::{CommandHeader, FrameError, FrameRepr};

/// Why a payload does not decode or encode as its command. The sender is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The payload ends before a field.
    #[error("{command}: payload of {len} bytes ends before field `{field}`")]
    Truncated {
        /// The command.
        command: &'static str,
        /// The field that did not fit.
        field: &'static str,
        /// The payload length.
        len: usize,
    },
    /// Bytes remain after the last field.
    #[error("{command}: {count} unexpected bytes after the last field")]
    TrailingBytes {
        /// The command.
        command: &'static str,
        /// How many.
        count: usize,
    },
    /// A field is too long for its length prefix.
    #[error("{command}: field `{field}` of {len} bytes is too long for its length prefix")]
    FieldTooLong {
        /// The command.
        command: &'static str,
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The encoded payload does not fit in a frame.
    #[error("{command}: {source}")]
    Frame {
        /// The command.
        command: &'static str,
        /// Why.
        source: FrameError,
    },
}

/// MT status codes (`ZStatus_t` and friends) the emulator and tests use.
pub mod status {
    /// Success.
    pub const SUCCESS: u8 = 0x00;
    /// Generic failure.
    pub const FAILURE: u8 = 0x01;
    /// Invalid parameter (unregistered endpoint, unreadable NV item...).
    pub const INVALID_PARAMETER: u8 = 0x02;
    /// The NV item did not exist and was created.
    pub const NV_ITEM_UNINIT: u8 = 0x09;
    /// NV operation failed.
    pub const NV_OPER_FAILED: u8 = 0x0A;
    /// NV item length mismatch.
    pub const NV_BAD_ITEM_LEN: u8 = 0x0C;
    /// No route to the destination.
    pub const NWK_NO_ROUTE: u8 = 0xCD;
    /// The MAC layer got no acknowledgement.
    pub const MAC_NO_ACK: u8 = 0xE9;
}

/// ZDO status codes in the `status` of ZDO callbacks (Zigbee spec 2.4.5).
pub mod zdo_status {
    /// Success.
    pub const SUCCESS: u8 = 0x00;
    /// The request type is not valid.
    pub const INV_REQUESTTYPE: u8 = 0x80;
    /// The addressed device is not known.
    pub const DEVICE_NOT_FOUND: u8 = 0x81;
    /// The endpoint is outside 1..=240.
    pub const INVALID_EP: u8 = 0x82;
    /// The endpoint has no simple descriptor.
    pub const NOT_ACTIVE: u8 = 0x83;
    /// The device does not support the request (an end device asked for its neighbours).
    pub const NOT_SUPPORTED: u8 = 0x84;
}

/// Zigbee logical device types, as in [`Neighbor::device_type`].
pub mod logical_type {
    /// The coordinator.
    pub const COORDINATOR: u8 = 0;
    /// A router.
    pub const ROUTER: u8 = 1;
    /// An end device.
    pub const END_DEVICE: u8 = 2;
    /// Not known.
    pub const UNKNOWN: u8 = 3;
}

/// `SYS_PING` capability bits (`MT_CAP_*`).
pub mod capabilities {
    /// SYS.
    pub const SYS: u16 = 1 << 0;
    /// MAC.
    pub const MAC: u16 = 1 << 1;
    /// NWK.
    pub const NWK: u16 = 1 << 2;
    /// AF.
    pub const AF: u16 = 1 << 3;
    /// ZDO.
    pub const ZDO: u16 = 1 << 4;
    /// SAPI.
    pub const SAPI: u16 = 1 << 5;
    /// UTIL.
    pub const UTIL: u16 = 1 << 6;
    /// DEBUG.
    pub const DEBUG: u16 = 1 << 7;
    /// APP.
    pub const APP: u16 = 1 << 8;
    /// Green Power.
    pub const GP: u16 = 1 << 9;
    /// APP_CNF (BDB); Z-Stack 3.x only.
    pub const APP_CNF: u16 = 1 << 10;
}

/// ZDO device states (`devStates_t`), as in `ZDO_STATE_CHANGE_IND` and `UTIL_GET_DEVICE_INFO`.
pub mod device_state {
    /// Initialized, not started automatically.
    pub const INITIALIZED_NOT_STARTED: u8 = 0x00;
    /// Started as a Zigbee router (`DEV_ROUTER`).
    pub const STARTED_AS_ROUTER: u8 = 0x07;
    /// Starting as Zigbee coordinator.
    pub const STARTING_AS_COORDINATOR: u8 = 0x08;
    /// Started as Zigbee coordinator.
    pub const STARTED_AS_COORDINATOR: u8 = 0x09;
}

/// Base Device Behaviour commissioning modes and statuses (APP_CNF).
pub mod bdb {
    /// No mode.
    pub const MODE_NONE: u8 = 0;
    /// Network steering.
    pub const MODE_NWK_STEERING: u8 = 1 << 1;
    /// Network formation.
    pub const MODE_NWK_FORMATION: u8 = 1 << 2;
    /// Commissioning status: success.
    pub const STATUS_SUCCESS: u8 = 0x00;
    /// Commissioning status: in progress.
    pub const STATUS_IN_PROGRESS: u8 = 0x01;
    /// Commissioning status: the node restored its network from NV.
    pub const STATUS_NETWORK_RESTORED: u8 = 0x0D;
}

/// RPC error codes in [`RpcErrorRsp`].
pub mod rpc_error {
    /// The subsystem is not supported.
    pub const INVALID_SUBSYSTEM: u8 = 0x01;
    /// The command ID is not supported.
    pub const INVALID_COMMAND_ID: u8 = 0x02;
    /// A parameter is invalid.
    pub const INVALID_PARAMETER: u8 = 0x03;
    /// The length is invalid.
    pub const INVALID_LENGTH: u8 = 0x04;
}

/// An IEEE 802.15.4 extended address, shown most significant byte first
/// (`00:12:4b:00:1c:aa:bb:cc`) as Zigbee tools print it; on the wire it is little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Eui64(pub u64);

impl fmt::Display for Eui64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.to_be_bytes();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
        )
    }
}

/// Reads fields off a payload, naming the field that did not fit.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    command: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf` for `command` (used in error messages).
    pub fn new(buf: &'a [u8], command: &'static str) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            command,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CommandError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(CommandError::Truncated {
                command: self.command,
                field,
                len: self.buf.len(),
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, CommandError> {
        Ok(self.take(1, field)?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, CommandError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// A little-endian u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, CommandError> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A little-endian EUI-64.
    pub fn eui64(&mut self, field: &'static str) -> Result<Eui64, CommandError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(Eui64(u64::from_le_bytes(a)))
    }

    /// Bytes with a one-byte length prefix.
    pub fn short_bytes(&mut self, field: &'static str) -> Result<Vec<u8>, CommandError> {
        let n = self.u8(field)?;
        Ok(self.take(usize::from(n), field)?.to_vec())
    }

    /// Bytes with a two-byte length prefix.
    pub fn long_bytes(&mut self, field: &'static str) -> Result<Vec<u8>, CommandError> {
        let n = self.u16(field)?;
        Ok(self.take(usize::from(n), field)?.to_vec())
    }

    /// A list of u16 with a one-byte count prefix.
    pub fn u16_list(&mut self, field: &'static str) -> Result<Vec<u16>, CommandError> {
        let n = self.u8(field)?;
        (0..n).map(|_| self.u16(field)).collect()
    }

    /// Everything left.
    pub fn rest(&mut self) -> Vec<u8> {
        let out = self.buf[self.pos..].to_vec();
        self.pos = self.buf.len();
        out
    }

    /// Whether bytes remain.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Fails if bytes remain.
    pub fn finish(&self) -> Result<(), CommandError> {
        let count = self.buf.len().saturating_sub(self.pos);
        if count > 0 {
            return Err(CommandError::TrailingBytes {
                command: self.command,
                count,
            });
        }
        Ok(())
    }
}

/// Writes fields into a payload, remembering the first field too long for its prefix.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
    command: &'static str,
    error: Option<CommandError>,
}

impl Writer {
    /// An empty payload for `command`.
    pub fn new(command: &'static str) -> Writer {
        Writer {
            buf: Vec::new(),
            command,
            error: None,
        }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A little-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A little-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A little-endian EUI-64.
    pub fn eui64(&mut self, v: Eui64) {
        self.buf.extend_from_slice(&v.0.to_le_bytes());
    }

    /// Raw bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Bytes with a one-byte length prefix.
    pub fn short_bytes(&mut self, field: &'static str, v: &[u8]) {
        match u8::try_from(v.len()) {
            Ok(n) => {
                self.u8(n);
                self.bytes(v);
            }
            Err(_) => self.fail(field, v.len()),
        }
    }

    /// Bytes with a two-byte length prefix.
    pub fn long_bytes(&mut self, field: &'static str, v: &[u8]) {
        match u16::try_from(v.len()) {
            Ok(n) => {
                self.u16(n);
                self.bytes(v);
            }
            Err(_) => self.fail(field, v.len()),
        }
    }

    /// A list of u16 with a one-byte count prefix.
    pub fn u16_list(&mut self, field: &'static str, v: &[u16]) {
        match u8::try_from(v.len()) {
            Ok(n) => {
                self.u8(n);
                v.iter().for_each(|x| self.u16(*x));
            }
            Err(_) => self.fail(field, v.len()),
        }
    }

    pub(super) fn fail(&mut self, field: &'static str, len: usize) {
        if self.error.is_none() {
            self.error = Some(CommandError::FieldTooLong {
                command: self.command,
                field,
                len,
            });
        }
    }

    /// The payload, or the first encoding error.
    pub fn finish(self) -> Result<Vec<u8>, CommandError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.buf),
        }
    }
}

/// A command payload with a fixed header.
pub trait Payload: Sized {
    /// `CMD0`/`CMD1` of this command.
    const HEADER: CommandHeader;
    /// The command's name as in TI's documentation.
    const NAME: &'static str;
    /// Writes the fields.
    fn encode(&self, w: &mut Writer);
    /// Reads the fields (the caller checks for trailing bytes).
    fn decode(r: &mut Reader<'_>) -> Result<Self, CommandError>;

    /// The payload bytes.
    fn to_payload(&self) -> Result<Vec<u8>, CommandError> {
        let mut w = Writer::new(Self::NAME);
        self.encode(&mut w);
        w.finish()
    }

    /// The whole frame.
    fn to_frame(&self) -> Result<FrameRepr, CommandError> {
        FrameRepr::new(Self::HEADER, self.to_payload()?).map_err(|source| CommandError::Frame {
            command: Self::NAME,
            source,
        })
    }

    /// Decodes a whole payload, rejecting trailing bytes.
    fn from_payload(payload: &[u8]) -> Result<Self, CommandError> {
        let mut r = Reader::new(payload, Self::NAME);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// A synchronous request and the type of its synchronous response.
pub trait Request: Payload {
    /// The SRSP.
    type Response: Payload;
}
