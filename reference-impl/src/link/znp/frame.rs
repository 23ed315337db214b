//! The MT transport frame.
//!
//! ```text
//! +------+--------+------+------+-----------------+-----+
//! | SOF  | length | CMD0 | CMD1 | payload         | FCS |
//! | 0xFE | 1      | 1    | 1    | length (0..250) | 1   |
//! +------+--------+------+------+-----------------+-----+
//! ```
//!
//! `CMD0` carries the command type in bits 7-5 (POLL 0, SREQ 1, AREQ 2, SRSP 3) and the
//! subsystem in bits 4-0 (SYS 1, AF 4, ZDO 5, UTIL 7, APP_CNF 15, ...); `CMD1` is the command ID
//! within the subsystem. The FCS is the XOR of every byte from the length through the last
//! payload byte. Z-Stack (and zigpy-znp) refuse lengths above 250, so this codec does too.
//!
//! [`Frame`] is a zero-copy view over a buffer in the smoltcp manner: [`Frame::new_checked`]
//! validates the start byte, the length and the buffer size, after which no accessor can panic.
//! [`FrameRepr`] is the owned, validated form with [`FrameRepr::parse`], [`FrameRepr::emit`] and
//! [`FrameRepr::buffer_len`].

use std::fmt;

/// The start-of-frame byte.
pub const SOF: u8 = 0xFE;
/// The largest payload Z-Stack accepts or sends in one frame.
pub const MAX_PAYLOAD: usize = 250;
/// Bytes around the payload: SOF, length, CMD0, CMD1 and FCS.
pub const OVERHEAD: usize = 5;
/// The longest frame on the wire.
pub const MAX_FRAME: usize = MAX_PAYLOAD + OVERHEAD;

/// Why bytes are not an MT frame. The sender (or the line) is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The buffer ends before the frame does.
    #[error("truncated MT frame: need {needed} bytes, have {got}")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes there are.
        got: usize,
    },
    /// The first byte is not 0xFE.
    #[error("MT frame starts with {0:#04x}, not the start-of-frame byte 0xfe")]
    BadStartOfFrame(u8),
    /// The length byte exceeds 250.
    #[error("MT frame length {0} exceeds the maximum of 250")]
    LengthTooLong(u8),
    /// The frame check sequence does not match.
    #[error("MT frame check sequence is {got:#04x}, expected {expected:#04x}")]
    BadFcs {
        /// The FCS computed over the frame.
        expected: u8,
        /// The FCS on the wire.
        got: u8,
    },
    /// A payload to emit is longer than 250 bytes.
    #[error("MT payload of {0} bytes exceeds the maximum of 250")]
    PayloadTooLong(usize),
    /// The output buffer is too small for the frame.
    #[error("output buffer of {got} bytes is too small for an MT frame of {needed}")]
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
}

/// The command type in bits 7-5 of `CMD0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandType {
    /// A poll (used by SPI transports; never on UART).
    Poll,
    /// A synchronous request; the device answers with exactly one SRSP.
    Sreq,
    /// An asynchronous request or indication (callbacks from the device).
    Areq,
    /// A synchronous response to an SREQ.
    Srsp,
    /// Types 4 to 7, reserved.
    Reserved(u8),
}

impl CommandType {
    /// From the three type bits (the value is masked to 0..=7).
    pub fn from_bits(bits: u8) -> CommandType {
        match bits & 0x07 {
            0 => CommandType::Poll,
            1 => CommandType::Sreq,
            2 => CommandType::Areq,
            3 => CommandType::Srsp,
            other => CommandType::Reserved(other),
        }
    }

    /// The three type bits.
    pub fn bits(self) -> u8 {
        match self {
            CommandType::Poll => 0,
            CommandType::Sreq => 1,
            CommandType::Areq => 2,
            CommandType::Srsp => 3,
            CommandType::Reserved(b) => b & 0x07,
        }
    }
}

impl fmt::Display for CommandType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandType::Poll => f.write_str("POLL"),
            CommandType::Sreq => f.write_str("SREQ"),
            CommandType::Areq => f.write_str("AREQ"),
            CommandType::Srsp => f.write_str("SRSP"),
            CommandType::Reserved(b) => write!(f, "TYPE{b}"),
        }
    }
}

/// The subsystem in bits 4-0 of `CMD0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subsystem {
    /// 0: RPC errors (the device did not understand an SREQ).
    RpcError,
    /// 1: system: ping, version, reset, NV memory.
    Sys,
    /// 2: IEEE 802.15.4 MAC.
    Mac,
    /// 3: network layer.
    Nwk,
    /// 4: application framework: endpoints and data.
    Af,
    /// 5: Zigbee device objects.
    Zdo,
    /// 6: simple API.
    Sapi,
    /// 7: utilities: device info and more.
    Util,
    /// 8: debug.
    Debug,
    /// 9: application.
    App,
    /// 15: application configuration (BDB commissioning).
    AppCnf,
    /// 21: Green Power.
    Zgp,
    /// Any other value (0..=31).
    Other(u8),
}

impl Subsystem {
    /// From the five subsystem bits (the value is masked to 0..=31).
    pub fn from_bits(bits: u8) -> Subsystem {
        match bits & 0x1F {
            0 => Subsystem::RpcError,
            1 => Subsystem::Sys,
            2 => Subsystem::Mac,
            3 => Subsystem::Nwk,
            4 => Subsystem::Af,
            5 => Subsystem::Zdo,
            6 => Subsystem::Sapi,
            7 => Subsystem::Util,
            8 => Subsystem::Debug,
            9 => Subsystem::App,
            15 => Subsystem::AppCnf,
            21 => Subsystem::Zgp,
            other => Subsystem::Other(other),
        }
    }

    /// The five subsystem bits.
    pub fn bits(self) -> u8 {
        match self {
            Subsystem::RpcError => 0,
            Subsystem::Sys => 1,
            Subsystem::Mac => 2,
            Subsystem::Nwk => 3,
            Subsystem::Af => 4,
            Subsystem::Zdo => 5,
            Subsystem::Sapi => 6,
            Subsystem::Util => 7,
            Subsystem::Debug => 8,
            Subsystem::App => 9,
            Subsystem::AppCnf => 15,
            Subsystem::Zgp => 21,
            Subsystem::Other(b) => b & 0x1F,
        }
    }
}

impl fmt::Display for Subsystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subsystem::RpcError => f.write_str("RPC_ERROR"),
            Subsystem::Sys => f.write_str("SYS"),
            Subsystem::Mac => f.write_str("MAC"),
            Subsystem::Nwk => f.write_str("NWK"),
            Subsystem::Af => f.write_str("AF"),
            Subsystem::Zdo => f.write_str("ZDO"),
            Subsystem::Sapi => f.write_str("SAPI"),
            Subsystem::Util => f.write_str("UTIL"),
            Subsystem::Debug => f.write_str("DEBUG"),
            Subsystem::App => f.write_str("APP"),
            Subsystem::AppCnf => f.write_str("APP_CNF"),
            Subsystem::Zgp => f.write_str("ZGP"),
            Subsystem::Other(b) => write!(f, "SUBSYS{b}"),
        }
    }
}

/// `CMD0` and `CMD1`: what a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandHeader {
    /// Request, response or indication.
    pub kind: CommandType,
    /// The subsystem.
    pub subsystem: Subsystem,
    /// The command ID within the subsystem (`CMD1`).
    pub id: u8,
}

impl CommandHeader {
    /// A header from its parts.
    pub const fn new(kind: CommandType, subsystem: Subsystem, id: u8) -> CommandHeader {
        CommandHeader {
            kind,
            subsystem,
            id,
        }
    }

    /// From the two header bytes.
    pub fn from_bytes(cmd0: u8, cmd1: u8) -> CommandHeader {
        CommandHeader {
            kind: CommandType::from_bits(cmd0 >> 5),
            subsystem: Subsystem::from_bits(cmd0 & 0x1F),
            id: cmd1,
        }
    }

    /// `CMD0`.
    pub fn cmd0(self) -> u8 {
        (self.kind.bits() << 5) | self.subsystem.bits()
    }

    /// `CMD1`.
    pub fn cmd1(self) -> u8 {
        self.id
    }

    /// The same command with another type (an SREQ's SRSP has the SREQ's subsystem and ID).
    pub fn with_kind(self, kind: CommandType) -> CommandHeader {
        CommandHeader { kind, ..self }
    }
}

impl fmt::Display for CommandHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:#04x}", self.kind, self.subsystem, self.id)
    }
}

/// The XOR frame check sequence over `bytes`.
pub fn fcs(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

mod field {
    pub const SOF: usize = 0;
    pub const LEN: usize = 1;
    pub const CMD0: usize = 2;
    pub const CMD1: usize = 3;
    pub const PAYLOAD: usize = 4;
}

/// A zero-copy view of an MT frame in a buffer (which may hold more bytes after the frame).
///
/// Accessors do not panic once [`Frame::new_checked`] (or [`Frame::check_len`]) has succeeded;
/// on a view made with [`Frame::new_unchecked`] over a short buffer they may.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// A view without any check.
    pub fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// A view over a buffer that holds a whole frame with a valid start byte and length.
    /// The FCS is not checked here: see [`Frame::check_fcs`].
    pub fn new_checked(buffer: T) -> Result<Frame<T>, FrameError> {
        let frame = Frame::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks the start byte, the length limit and that the buffer holds the whole frame.
    pub fn check_len(&self) -> Result<(), FrameError> {
        let buf = self.buffer.as_ref();
        if buf.len() < OVERHEAD {
            return Err(FrameError::Truncated {
                needed: OVERHEAD,
                got: buf.len(),
            });
        }
        if buf[field::SOF] != SOF {
            return Err(FrameError::BadStartOfFrame(buf[field::SOF]));
        }
        let len = buf[field::LEN];
        if usize::from(len) > MAX_PAYLOAD {
            return Err(FrameError::LengthTooLong(len));
        }
        let needed = usize::from(len) + OVERHEAD;
        if buf.len() < needed {
            return Err(FrameError::Truncated {
                needed,
                got: buf.len(),
            });
        }
        Ok(())
    }

    /// Checks the frame check sequence.
    pub fn check_fcs(&self) -> Result<(), FrameError> {
        let expected = self.compute_fcs();
        let got = self.fcs();
        if expected != got {
            return Err(FrameError::BadFcs { expected, got });
        }
        Ok(())
    }

    /// The payload length byte.
    pub fn payload_len(&self) -> u8 {
        self.buffer.as_ref()[field::LEN]
    }

    /// The whole frame's length on the wire.
    pub fn total_len(&self) -> usize {
        usize::from(self.payload_len()) + OVERHEAD
    }

    /// `CMD0`.
    pub fn cmd0(&self) -> u8 {
        self.buffer.as_ref()[field::CMD0]
    }

    /// `CMD1`.
    pub fn cmd1(&self) -> u8 {
        self.buffer.as_ref()[field::CMD1]
    }

    /// The decoded header.
    pub fn header(&self) -> CommandHeader {
        CommandHeader::from_bytes(self.cmd0(), self.cmd1())
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        let len = usize::from(self.payload_len());
        &self.buffer.as_ref()[field::PAYLOAD..field::PAYLOAD + len]
    }

    /// The FCS byte on the wire.
    pub fn fcs(&self) -> u8 {
        let at = field::PAYLOAD + usize::from(self.payload_len());
        self.buffer.as_ref()[at]
    }

    /// The FCS the frame should carry.
    pub fn compute_fcs(&self) -> u8 {
        let end = field::PAYLOAD + usize::from(self.payload_len());
        fcs(&self.buffer.as_ref()[field::LEN..end])
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Writes the start byte.
    pub fn set_sof(&mut self) {
        self.buffer.as_mut()[field::SOF] = SOF;
    }

    /// Writes the length byte.
    pub fn set_payload_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::LEN] = len;
    }

    /// Writes `CMD0` and `CMD1`.
    pub fn set_header(&mut self, header: CommandHeader) {
        let buf = self.buffer.as_mut();
        buf[field::CMD0] = header.cmd0();
        buf[field::CMD1] = header.cmd1();
    }

    /// The payload, mutable (its length is the length byte's).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.payload_len());
        &mut self.buffer.as_mut()[field::PAYLOAD..field::PAYLOAD + len]
    }

    /// Computes and writes the FCS.
    pub fn fill_fcs(&mut self) {
        let value = self.compute_fcs();
        let at = field::PAYLOAD + usize::from(self.payload_len());
        self.buffer.as_mut()[at] = value;
    }
}

/// An owned, validated MT frame: a header and up to 250 payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrameRepr {
    /// `CMD0` and `CMD1`.
    pub header: CommandHeader,
    /// The payload.
    pub payload: Vec<u8>,
}

impl FrameRepr {
    /// A frame; fails if the payload exceeds 250 bytes.
    pub fn new(header: CommandHeader, payload: Vec<u8>) -> Result<FrameRepr, FrameError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(FrameError::PayloadTooLong(payload.len()));
        }
        Ok(FrameRepr { header, payload })
    }

    /// Parses a checked view, verifying the FCS.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<FrameRepr, FrameError> {
        frame.check_len()?;
        frame.check_fcs()?;
        Ok(FrameRepr {
            header: frame.header(),
            payload: frame.payload().to_vec(),
        })
    }

    /// Parses the frame at the start of `bytes` (trailing bytes are ignored).
    pub fn parse_bytes(bytes: &[u8]) -> Result<FrameRepr, FrameError> {
        FrameRepr::parse(&Frame::new_unchecked(bytes))
    }

    /// Bytes the frame occupies on the wire.
    pub fn buffer_len(&self) -> usize {
        self.payload.len() + OVERHEAD
    }

    /// Writes the frame into the start of `frame`'s buffer, FCS included.
    ///
    /// Fails (never panics) if the buffer is too small or the payload too long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut Frame<T>,
    ) -> Result<(), FrameError> {
        let len = u8::try_from(self.payload.len())
            .ok()
            .filter(|l| usize::from(*l) <= MAX_PAYLOAD)
            .ok_or(FrameError::PayloadTooLong(self.payload.len()))?;
        let got = frame.buffer.as_ref().len();
        if got < self.buffer_len() {
            return Err(FrameError::BufferTooSmall {
                needed: self.buffer_len(),
                got,
            });
        }
        frame.set_sof();
        frame.set_payload_len(len);
        frame.set_header(self.header);
        frame.payload_mut().copy_from_slice(&self.payload);
        frame.fill_fcs();
        Ok(())
    }

    /// The frame's bytes.
    ///
    /// A `FrameRepr` built with [`FrameRepr::new`] or parsed never exceeds the limit; one built
    /// field by field with a longer payload is written with its length truncated to 250 bytes,
    /// as the length byte cannot say more.
    pub fn to_bytes(&self) -> Vec<u8> {
        let payload = &self.payload[..self.payload.len().min(MAX_PAYLOAD)];
        let mut out = Vec::with_capacity(payload.len() + OVERHEAD);
        out.push(SOF);
        out.push(payload.len() as u8); // <= 250
        out.push(self.header.cmd0());
        out.push(self.header.cmd1());
        out.extend_from_slice(payload);
        out.push(fcs(&out[1..]));
        out
    }
}

impl fmt::Display for FrameRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [", self.header)?;
        for (i, b) in self.payload.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SYS_PING SREQ as every Z-Stack document shows it.
    const PING: [u8; 5] = [0xFE, 0x00, 0x21, 0x01, 0x20];

    #[test]
    fn parses_sys_ping_request() {
        let repr = FrameRepr::parse_bytes(&PING).expect("valid frame");
        assert_eq!(
            repr.header,
            CommandHeader::new(CommandType::Sreq, Subsystem::Sys, 0x01)
        );
        assert!(repr.payload.is_empty());
        assert_eq!(repr.to_bytes(), PING);
    }

    #[test]
    fn rejects_bad_fcs_and_long_length() {
        let mut bad = PING;
        bad[4] ^= 1;
        assert!(matches!(
            FrameRepr::parse_bytes(&bad),
            Err(FrameError::BadFcs { .. })
        ));
        let long = [0xFE, 251, 0x21, 0x01, 0x00];
        assert_eq!(
            FrameRepr::parse_bytes(&long),
            Err(FrameError::LengthTooLong(251))
        );
        assert!(matches!(
            FrameRepr::parse_bytes(&PING[..3]),
            Err(FrameError::Truncated { .. })
        ));
    }

    #[test]
    fn emit_refuses_small_buffer() {
        let repr = FrameRepr::parse_bytes(&PING).expect("valid frame");
        let mut small = [0u8; 4];
        let err = repr.emit(&mut Frame::new_unchecked(&mut small[..]));
        assert_eq!(err, Err(FrameError::BufferTooSmall { needed: 5, got: 4 }));
    }
}
