//! Outer frames (spec section 2): the 6-byte header and the pairing, handshake and record bodies.
//!
//! ```text
//! +---------+------+-----------------+----------------------+
//! | version | type | conn_id (u32 BE)| body (type-specific) |
//! +---------+------+-----------------+----------------------+
//! ```
//! `conn_id` is the *receiver's* connection ID (0 while not yet known).

use super::{Code, Reader, WireError};

/// The only protocol version this crate speaks.
pub const VERSION: u8 = 0x01;
/// Length of the frame header.
pub const HEADER_LEN: usize = 6;
/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes a RECORD adds around its ciphertext: header, epoch, seq and tag.
pub const RECORD_OVERHEAD: usize = HEADER_LEN + 1 + 8 + TAG_LEN;
/// Length of a SPAKE2 message (side byte + compressed point).
pub const SPAKE2_MSG_LEN: usize = 33;

/// Frame type byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Pairing, message 1 (initiator to responder).
    PairRequest = 0x01,
    /// Pairing, message 2.
    PairResponse = 0x02,
    /// Pairing, message 3.
    PairConfirm = 0x03,
    /// Pairing outcome.
    PairResult = 0x04,
    /// Noise XX message 1.
    Handshake1 = 0x10,
    /// Noise XX message 2.
    Handshake2 = 0x11,
    /// Noise XX message 3.
    Handshake3 = 0x12,
    /// Handshake refused.
    HandshakeReject = 0x1F,
    /// Encrypted record.
    Record = 0x20,
}

impl FrameType {
    /// Decode a type byte.
    pub fn from_u8(v: u8) -> Result<FrameType, WireError> {
        Ok(match v {
            0x01 => FrameType::PairRequest,
            0x02 => FrameType::PairResponse,
            0x03 => FrameType::PairConfirm,
            0x04 => FrameType::PairResult,
            0x10 => FrameType::Handshake1,
            0x11 => FrameType::Handshake2,
            0x12 => FrameType::Handshake3,
            0x1F => FrameType::HandshakeReject,
            0x20 => FrameType::Record,
            other => return Err(WireError::UnknownFrameType(other)),
        })
    }
}

/// A parsed frame. Byte fields are owned so a frame can outlive its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The receiver's connection ID.
    pub conn_id: u32,
    /// The type-specific body.
    pub body: Body,
}

/// The body of a frame, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// PAIR_REQUEST.
    PairRequest {
        /// Initiator-chosen pairing attempt ID.
        pairing_id: u32,
        /// Initiator's static X25519 public key.
        static_key: [u8; 32],
        /// SPAKE2 message of side A.
        spake_msg: [u8; SPAKE2_MSG_LEN],
    },
    /// PAIR_RESPONSE.
    PairResponse {
        /// Echoed pairing ID.
        pairing_id: u32,
        /// Responder's static X25519 public key.
        static_key: [u8; 32],
        /// SPAKE2 message of side B.
        spake_msg: [u8; SPAKE2_MSG_LEN],
        /// Responder key confirmation.
        confirm: [u8; 32],
    },
    /// PAIR_CONFIRM.
    PairConfirm {
        /// Echoed pairing ID.
        pairing_id: u32,
        /// Initiator key confirmation.
        confirm: [u8; 32],
    },
    /// PAIR_RESULT.
    PairResult {
        /// Echoed pairing ID.
        pairing_id: u32,
        /// Outcome (OK, PAIRING_FAILED, RATE_LIMITED, ...).
        status: Code,
        /// HMAC over the status when OK, zeros otherwise.
        mac: [u8; 32],
    },
    /// HANDSHAKE_1.
    Handshake1 {
        /// The initiator's connection ID.
        sender_conn_id: u32,
        /// Noise message 1.
        noise: Vec<u8>,
    },
    /// HANDSHAKE_2.
    Handshake2 {
        /// The responder's connection ID.
        sender_conn_id: u32,
        /// Noise message 2.
        noise: Vec<u8>,
    },
    /// HANDSHAKE_3.
    Handshake3 {
        /// Noise message 3.
        noise: Vec<u8>,
    },
    /// HANDSHAKE_REJECT.
    HandshakeReject {
        /// Why.
        code: Code,
    },
    /// RECORD.
    Record {
        /// Key epoch (rekey count modulo 256).
        epoch: u8,
        /// Record sequence number; the AES-GCM nonce.
        seq: u64,
        /// Ciphertext followed by the 16-byte tag.
        ciphertext: Vec<u8>,
    },
}

/// Largest Noise message accepted in a handshake frame.
pub const MAX_NOISE_LEN: usize = 1024;

impl Frame {
    /// The frame's type.
    pub fn frame_type(&self) -> FrameType {
        match self.body {
            Body::PairRequest { .. } => FrameType::PairRequest,
            Body::PairResponse { .. } => FrameType::PairResponse,
            Body::PairConfirm { .. } => FrameType::PairConfirm,
            Body::PairResult { .. } => FrameType::PairResult,
            Body::Handshake1 { .. } => FrameType::Handshake1,
            Body::Handshake2 { .. } => FrameType::Handshake2,
            Body::Handshake3 { .. } => FrameType::Handshake3,
            Body::HandshakeReject { .. } => FrameType::HandshakeReject,
            Body::Record { .. } => FrameType::Record,
        }
    }

    /// Parse one frame. Never panics; every error says which field was wrong.
    pub fn parse(buf: &[u8]) -> Result<Frame, WireError> {
        let mut r = Reader::new(buf);
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let ty = FrameType::from_u8(r.u8("type")?)?;
        let conn_id = r.u32("conn_id")?;
        let body = match ty {
            FrameType::PairRequest => Body::PairRequest {
                pairing_id: r.u32("pairing_id")?,
                static_key: r.array("static_key")?,
                spake_msg: r.array("spake_msg")?,
            },
            FrameType::PairResponse => Body::PairResponse {
                pairing_id: r.u32("pairing_id")?,
                static_key: r.array("static_key")?,
                spake_msg: r.array("spake_msg")?,
                confirm: r.array("confirm")?,
            },
            FrameType::PairConfirm => Body::PairConfirm {
                pairing_id: r.u32("pairing_id")?,
                confirm: r.array("confirm")?,
            },
            FrameType::PairResult => Body::PairResult {
                pairing_id: r.u32("pairing_id")?,
                status: Code::from_u16(r.u16("status")?),
                mac: r.array("mac")?,
            },
            FrameType::Handshake1 => Body::Handshake1 {
                sender_conn_id: r.u32("sender_conn_id")?,
                noise: noise_field(&mut r)?,
            },
            FrameType::Handshake2 => Body::Handshake2 {
                sender_conn_id: r.u32("sender_conn_id")?,
                noise: noise_field(&mut r)?,
            },
            FrameType::Handshake3 => Body::Handshake3 {
                noise: noise_field(&mut r)?,
            },
            FrameType::HandshakeReject => Body::HandshakeReject {
                code: Code::from_u16(r.u16("code")?),
            },
            FrameType::Record => {
                let epoch = r.u8("epoch")?;
                let seq = r.u64("seq")?;
                let ciphertext = r.rest().to_vec();
                if ciphertext.len() < TAG_LEN {
                    return Err(WireError::Truncated {
                        field: "tag",
                        needed: TAG_LEN,
                        available: ciphertext.len(),
                    });
                }
                Body::Record {
                    epoch,
                    seq,
                    ciphertext,
                }
            }
        };
        r.finish("frame")?;
        Ok(Frame { conn_id, body })
    }

    /// The 6-byte header of this frame, which RECORD uses as associated data.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        header_bytes(self.frame_type(), self.conn_id)
    }

    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match &self.body {
                Body::PairRequest { .. } => 4 + 32 + SPAKE2_MSG_LEN,
                Body::PairResponse { .. } => 4 + 32 + SPAKE2_MSG_LEN + 32,
                Body::PairConfirm { .. } => 4 + 32,
                Body::PairResult { .. } => 4 + 2 + 32,
                Body::Handshake1 { noise, .. } | Body::Handshake2 { noise, .. } => 4 + noise.len(),
                Body::Handshake3 { noise } => noise.len(),
                Body::HandshakeReject { .. } => 2,
                Body::Record { ciphertext, .. } => 1 + 8 + ciphertext.len(),
            }
    }

    /// Check the limits `parse` enforces, so a hand-built frame round-trips.
    pub fn validate(&self) -> Result<(), WireError> {
        match &self.body {
            Body::Handshake1 { noise, .. }
            | Body::Handshake2 { noise, .. }
            | Body::Handshake3 { noise } => check_noise(noise),
            Body::Record { ciphertext, .. } if ciphertext.len() < TAG_LEN => {
                Err(WireError::InvalidField {
                    field: "ciphertext",
                    problem: "shorter than the tag",
                })
            }
            _ => Ok(()),
        }
    }

    /// Append the encoding to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        out.extend_from_slice(&self.header());
        match &self.body {
            Body::PairRequest {
                pairing_id,
                static_key,
                spake_msg,
            } => {
                out.extend_from_slice(&pairing_id.to_be_bytes());
                out.extend_from_slice(static_key);
                out.extend_from_slice(spake_msg);
            }
            Body::PairResponse {
                pairing_id,
                static_key,
                spake_msg,
                confirm,
            } => {
                out.extend_from_slice(&pairing_id.to_be_bytes());
                out.extend_from_slice(static_key);
                out.extend_from_slice(spake_msg);
                out.extend_from_slice(confirm);
            }
            Body::PairConfirm {
                pairing_id,
                confirm,
            } => {
                out.extend_from_slice(&pairing_id.to_be_bytes());
                out.extend_from_slice(confirm);
            }
            Body::PairResult {
                pairing_id,
                status,
                mac,
            } => {
                out.extend_from_slice(&pairing_id.to_be_bytes());
                out.extend_from_slice(&status.to_u16().to_be_bytes());
                out.extend_from_slice(mac);
            }
            Body::Handshake1 {
                sender_conn_id,
                noise,
            }
            | Body::Handshake2 {
                sender_conn_id,
                noise,
            } => {
                out.extend_from_slice(&sender_conn_id.to_be_bytes());
                out.extend_from_slice(noise);
            }
            Body::Handshake3 { noise } => out.extend_from_slice(noise),
            Body::HandshakeReject { code } => out.extend_from_slice(&code.to_u16().to_be_bytes()),
            Body::Record {
                epoch,
                seq,
                ciphertext,
            } => {
                out.push(*epoch);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(ciphertext);
            }
        }
    }

    /// Encode into a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        self.emit(&mut out);
        out
    }
}

/// The 6-byte header for a frame of `ty` to `conn_id`.
pub fn header_bytes(ty: FrameType, conn_id: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = VERSION;
    h[1] = ty as u8;
    h[2..6].copy_from_slice(&conn_id.to_be_bytes());
    h
}

/// The associated data a RECORD's AEAD covers: header, epoch and seq.
pub fn record_aad(conn_id: u32, epoch: u8, seq: u64) -> [u8; HEADER_LEN + 9] {
    let mut aad = [0u8; HEADER_LEN + 9];
    aad[..HEADER_LEN].copy_from_slice(&header_bytes(FrameType::Record, conn_id));
    aad[HEADER_LEN] = epoch;
    aad[HEADER_LEN + 1..].copy_from_slice(&seq.to_be_bytes());
    aad
}

fn noise_field(r: &mut Reader<'_>) -> Result<Vec<u8>, WireError> {
    let noise = r.rest().to_vec();
    check_noise(&noise)?;
    Ok(noise)
}

fn check_noise(noise: &[u8]) -> Result<(), WireError> {
    if noise.len() < 32 {
        return Err(WireError::InvalidField {
            field: "noise",
            problem: "shorter than an ephemeral key",
        });
    }
    if noise.len() > MAX_NOISE_LEN {
        return Err(WireError::InvalidField {
            field: "noise",
            problem: "longer than 1024 bytes",
        });
    }
    Ok(())
}

/// Peek at the header without parsing the body: `(type, conn_id)`.
pub fn peek_header(buf: &[u8]) -> Result<(FrameType, u32), WireError> {
    let mut r = Reader::new(buf);
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let ty = FrameType::from_u8(r.u8("type")?)?;
    Ok((ty, r.u32("conn_id")?))
}
