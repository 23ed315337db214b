//! HELLO: the payload carried inside Noise handshake messages 2 and 3 (spec 6.3), which tells the
//! peer the sender's heartbeat interval, the largest frame it accepts and its name.
//!
//! Layout: `hb_ms: u32 | max_frame: u16 | name_len: u8 | name: name_len bytes of UTF-8`.

use super::{Reader, WireError};

/// Longest device name carried in a HELLO; [`Hello::emit`] truncates longer names to it.
pub const MAX_NAME_LEN: usize = 64;

/// The HELLO payload carried in handshake messages 2 and 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Heartbeat interval, ms (never 0).
    pub hb_ms: u32,
    /// Largest frame the sender accepts.
    pub max_frame: u16,
    /// Device name.
    pub name: String,
}

impl Hello {
    /// Parse a HELLO payload; never panics.
    pub fn parse(b: &[u8]) -> Result<Hello, WireError> {
        let mut r = Reader::new(b);
        let hb_ms = r.u32("hello.hb_ms")?;
        let max_frame = r.u16("hello.max_frame")?;
        let len = r.u8("hello.name_len")? as usize;
        let raw = r.bytes(len, "hello.name")?;
        r.finish("HELLO")?;
        if hb_ms == 0 {
            return Err(WireError::InvalidField {
                field: "hello.hb_ms",
                problem: "zero",
            });
        }
        let name = String::from_utf8(raw.to_vec()).map_err(|_| WireError::InvalidField {
            field: "hello.name",
            problem: "not UTF-8",
        })?;
        Ok(Hello {
            hb_ms,
            max_frame,
            name,
        })
    }

    /// The name as emitted: at most [`MAX_NAME_LEN`] bytes, cut on a character boundary.
    fn wire_name(&self) -> &str {
        let mut end = self.name.len().min(MAX_NAME_LEN);
        while !self.name.is_char_boundary(end) {
            end -= 1;
        }
        &self.name[..end]
    }

    /// Bytes [`Hello::emit`] appends.
    pub fn buffer_len(&self) -> usize {
        7 + self.wire_name().len()
    }

    /// Append the encoded payload to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hb_ms.to_be_bytes());
        out.extend_from_slice(&self.max_frame.to_be_bytes());
        let name = self.wire_name();
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }

    /// The encoded payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        self.emit(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_payloads() {
        let h = Hello {
            hb_ms: 1000,
            max_frame: 1400,
            name: "speaker".into(),
        };
        let b = h.to_bytes();
        assert_eq!(b.len(), h.buffer_len());
        assert_eq!(Hello::parse(&b).unwrap(), h);
        assert!(Hello::parse(&b[..b.len() - 1]).is_err());
        let mut long = b.clone();
        long.push(0);
        assert!(Hello::parse(&long).is_err());
        let mut zero = b;
        zero[..4].copy_from_slice(&0u32.to_be_bytes());
        assert!(Hello::parse(&zero).is_err());
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary() {
        let h = Hello {
            hb_ms: 1,
            max_frame: 256,
            name: "é".repeat(40),
        };
        let parsed = Hello::parse(&h.to_bytes()).unwrap();
        assert_eq!(parsed.name.len(), 64);
    }
}
