//! The SoftBus v1 wire codec: outer frames ([`frame`]), the HELLO handshake payload ([`hello`]),
//! the inner messages carried in records ([`msg`]), the error-code table ([`code`]) and CoAP for
//! discovery ([`coap`]).
//!
//! Every type here follows the same shape: a `Repr` enum or struct with `parse`, `emit` and
//! `buffer_len`. Parsing never panics on any input; it returns [`WireError`] naming what was wrong.
//! Emitting never panics either, provided the repr respects the documented field limits (string
//! lengths); [`frame::Frame::validate`] checks those limits before a value built by hand is sent.

pub mod coap;
pub mod code;
pub mod frame;
pub mod hello;
pub mod msg;

pub use code::Code;
pub use frame::{Frame, FrameType, HEADER_LEN};
pub use msg::{Message, MsgType};

/// Why a byte string is not a well-formed SoftBus frame or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer ended before the field named.
    #[error("truncated: need {needed} bytes for {field}, {available} available")]
    Truncated {
        /// Which field could not be read.
        field: &'static str,
        /// Bytes needed from the field's start.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// Bytes remain after the last field of a fixed-size body.
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes {
        /// The message whose body was complete.
        what: &'static str,
        /// How many bytes were left over.
        count: usize,
    },
    /// The version byte is not one this implementation speaks.
    #[error("unsupported protocol version {0:#04x}")]
    UnsupportedVersion(u8),
    /// The frame type byte is not assigned.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// The inner message type byte is not assigned.
    #[error("unknown message type {0:#04x}")]
    UnknownMessageType(u8),
    /// A field holds a value outside its allowed range.
    #[error("invalid {field}: {problem}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// A cursor over a received buffer; every read is bounds-checked and names its field.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated {
                field,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.bytes(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A u8-length-prefixed UTF-8 string with 1..=max bytes.
    pub(crate) fn short_str(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<String, WireError> {
        let len = self.u8(field)? as usize;
        if len == 0 || len > max {
            return Err(WireError::InvalidField {
                field,
                problem: "length out of range",
            });
        }
        let raw = self.bytes(len, field)?;
        String::from_utf8(raw.to_vec()).map_err(|_| WireError::InvalidField {
            field,
            problem: "not UTF-8",
        })
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn finish(&self, what: &'static str) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(WireError::TrailingBytes { what, count }),
        }
    }
}
