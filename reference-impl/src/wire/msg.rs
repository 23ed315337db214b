//! Inner messages (spec sections 8–12): the plaintext of one RECORD.
//!
//! ```text
//! +----------+-----------------+------+
//! | type u8  | rseq u32 BE     | body |
//! +----------+-----------------+------+
//! ```
//! `rseq` numbers reliable messages from 1; unreliable ones carry 0.

use super::{Code, Reader, WireError};

/// Length of the message header (type + rseq).
pub const MSG_HEADER_LEN: usize = 5;
/// Longest service or capability name.
pub const MAX_NAME_LEN: usize = 64;
/// Bytes a DATA message adds before its payload (header + session, msg id, fragment fields).
pub const DATA_OVERHEAD: usize = MSG_HEADER_LEN + 4 + 4 + 2 + 2;

/// Inner message type byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// Keepalive.
    Heartbeat = 0x01,
    /// Connection close.
    Close = 0x02,
    /// Cumulative acknowledgement.
    Ack = 0x03,
    /// Error report for an unexpected message.
    Error = 0x04,
    /// Clock synchronization request (spec 17.2).
    TimeRequest = 0x05,
    /// Clock synchronization response (spec 17.2).
    TimeResponse = 0x06,
    /// Open a session.
    SessionOpen = 0x10,
    /// Accept a session.
    SessionAccept = 0x11,
    /// Refuse a session.
    SessionReject = 0x12,
    /// Close a session.
    SessionClose = 0x13,
    /// Session payload fragment.
    Data = 0x14,
    /// Stream fragment with a presentation time (spec 17.4).
    TimedData = 0x15,
    /// Ask for capabilities.
    CapQuery = 0x20,
    /// Capability list (CBOR).
    CapList = 0x21,
    /// Ask for a permission.
    PermRequest = 0x30,
    /// Answer a permission request.
    PermResponse = 0x31,
    /// Revoke a grant.
    PermRevoke = 0x32,
    /// Use a capability.
    CapInvoke = 0x33,
    /// Result of a capability use.
    CapResult = 0x34,
}

impl MsgType {
    /// Decode a type byte.
    pub fn from_u8(v: u8) -> Result<MsgType, WireError> {
        Ok(match v {
            0x01 => MsgType::Heartbeat,
            0x02 => MsgType::Close,
            0x03 => MsgType::Ack,
            0x04 => MsgType::Error,
            0x05 => MsgType::TimeRequest,
            0x06 => MsgType::TimeResponse,
            0x10 => MsgType::SessionOpen,
            0x11 => MsgType::SessionAccept,
            0x12 => MsgType::SessionReject,
            0x13 => MsgType::SessionClose,
            0x14 => MsgType::Data,
            0x15 => MsgType::TimedData,
            0x20 => MsgType::CapQuery,
            0x21 => MsgType::CapList,
            0x30 => MsgType::PermRequest,
            0x31 => MsgType::PermResponse,
            0x32 => MsgType::PermRevoke,
            0x33 => MsgType::CapInvoke,
            0x34 => MsgType::CapResult,
            other => return Err(WireError::UnknownMessageType(other)),
        })
    }

    /// Whether messages of this type always travel reliably (DATA depends on the channel kind).
    pub fn always_reliable(self) -> bool {
        !matches!(
            self,
            MsgType::Heartbeat
                | MsgType::Close
                | MsgType::Ack
                | MsgType::Error
                | MsgType::TimeRequest
                | MsgType::TimeResponse
                | MsgType::Data
                | MsgType::TimedData
        )
    }
}

/// Channel kinds of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// Reliable, ordered messages up to 64 KiB.
    Message = 1,
    /// Reliable, ordered bulk data up to 16 MiB.
    Bytes = 2,
    /// Unreliable, latest-wins (audio/video).
    Stream = 3,
}

impl ChannelKind {
    /// Decode.
    pub fn from_u8(v: u8) -> Option<ChannelKind> {
        match v {
            1 => Some(ChannelKind::Message),
            2 => Some(ChannelKind::Bytes),
            3 => Some(ChannelKind::Stream),
            _ => None,
        }
    }

    /// Largest message on a channel of this kind.
    pub fn max_message(self) -> usize {
        match self {
            ChannelKind::Message | ChannelKind::Stream => 65536,
            ChannelKind::Bytes => 16 * 1024 * 1024,
        }
    }

    /// Whether DATA on this kind is reliable.
    pub fn is_reliable(self) -> bool {
        !matches!(self, ChannelKind::Stream)
    }
}

/// QoS classes a scheduler honours, lowest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Qos {
    /// Bulk transfer that may wait.
    Background = 0,
    /// Default.
    BestEffort = 1,
    /// User-visible, latency-sensitive.
    Interactive = 2,
    /// Audio/video deadlines.
    Realtime = 3,
}

impl Qos {
    /// Decode.
    pub fn from_u8(v: u8) -> Option<Qos> {
        match v {
            0 => Some(Qos::Background),
            1 => Some(Qos::BestEffort),
            2 => Some(Qos::Interactive),
            3 => Some(Qos::Realtime),
            _ => None,
        }
    }
}

/// Permission scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// One use.
    Once = 1,
    /// Until the connection closes.
    Session = 2,
    /// Until revoked (or expired); persisted.
    UntilRevoked = 3,
}

impl Scope {
    /// Decode.
    pub fn from_u8(v: u8) -> Option<Scope> {
        match v {
            1 => Some(Scope::Once),
            2 => Some(Scope::Session),
            3 => Some(Scope::UntilRevoked),
            _ => None,
        }
    }
}

/// Outcome of a permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermResult {
    /// Granted.
    Granted = 0,
    /// The user said no.
    Denied = 1,
    /// The user did not answer in time.
    Timeout = 2,
    /// No such capability.
    UnknownCapability = 3,
}

impl PermResult {
    /// Decode.
    pub fn from_u8(v: u8) -> Option<PermResult> {
        match v {
            0 => Some(PermResult::Granted),
            1 => Some(PermResult::Denied),
            2 => Some(PermResult::Timeout),
            3 => Some(PermResult::UnknownCapability),
            _ => None,
        }
    }
}

/// One inner message with its reliable sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Reliable sequence number (0 for unreliable messages).
    pub rseq: u32,
    /// The typed body.
    pub body: MsgBody,
}

/// Inner message bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // fields are documented in the spec tables, named identically
pub enum MsgBody {
    Heartbeat,
    Close {
        code: Code,
        reason: String,
    },
    Ack {
        next_expected: u32,
    },
    Error {
        code: Code,
        offending: u8,
    },
    /// `t1`: the requester's send time, µs in its own timebase.
    TimeRequest {
        sync_id: u32,
        t1: u64,
    },
    /// `t1` echoed; `t2`/`t3`: the responder's receive and send times, µs in its timebase.
    TimeResponse {
        sync_id: u32,
        t1: u64,
        t2: u64,
        t3: u64,
    },
    SessionOpen {
        session_id: u32,
        kind: ChannelKind,
        qos: Qos,
        service: String,
    },
    SessionAccept {
        session_id: u32,
        max_message: u32,
    },
    SessionReject {
        session_id: u32,
        code: Code,
    },
    SessionClose {
        session_id: u32,
        code: Code,
    },
    Data {
        session_id: u32,
        msg_id: u32,
        frag_index: u16,
        frag_count: u16,
        payload: Vec<u8>,
    },
    /// A stream DATA fragment with `pts_us`, the presentation time in the sender's timebase.
    TimedData {
        session_id: u32,
        msg_id: u32,
        frag_index: u16,
        frag_count: u16,
        pts_us: u64,
        payload: Vec<u8>,
    },
    CapQuery {
        req_id: u32,
    },
    CapList {
        req_id: u32,
        cbor: Vec<u8>,
    },
    PermRequest {
        req_id: u32,
        scope: Scope,
        duration_s: u32,
        capability: String,
    },
    PermResponse {
        req_id: u32,
        result: PermResult,
        grant_id: u32,
        expires_in_ms: u32,
    },
    PermRevoke {
        grant_id: u32,
    },
    CapInvoke {
        req_id: u32,
        grant_id: u32,
        capability: String,
        args: Vec<u8>,
    },
    CapResult {
        req_id: u32,
        status: Code,
        result: Vec<u8>,
    },
}

impl MsgBody {
    /// The message type.
    pub fn msg_type(&self) -> MsgType {
        match self {
            MsgBody::Heartbeat => MsgType::Heartbeat,
            MsgBody::Close { .. } => MsgType::Close,
            MsgBody::Ack { .. } => MsgType::Ack,
            MsgBody::Error { .. } => MsgType::Error,
            MsgBody::TimeRequest { .. } => MsgType::TimeRequest,
            MsgBody::TimeResponse { .. } => MsgType::TimeResponse,
            MsgBody::SessionOpen { .. } => MsgType::SessionOpen,
            MsgBody::SessionAccept { .. } => MsgType::SessionAccept,
            MsgBody::SessionReject { .. } => MsgType::SessionReject,
            MsgBody::SessionClose { .. } => MsgType::SessionClose,
            MsgBody::Data { .. } => MsgType::Data,
            MsgBody::TimedData { .. } => MsgType::TimedData,
            MsgBody::CapQuery { .. } => MsgType::CapQuery,
            MsgBody::CapList { .. } => MsgType::CapList,
            MsgBody::PermRequest { .. } => MsgType::PermRequest,
            MsgBody::PermResponse { .. } => MsgType::PermResponse,
            MsgBody::PermRevoke { .. } => MsgType::PermRevoke,
            MsgBody::CapInvoke { .. } => MsgType::CapInvoke,
            MsgBody::CapResult { .. } => MsgType::CapResult,
        }
    }
}

impl Message {
    /// An unreliable message (rseq 0).
    pub fn unreliable(body: MsgBody) -> Message {
        Message { rseq: 0, body }
    }

    /// Parse one message from a record's plaintext. Never panics.
    pub fn parse(buf: &[u8]) -> Result<Message, WireError> {
        let mut r = Reader::new(buf);
        let ty = MsgType::from_u8(r.u8("msg_type")?)?;
        let rseq = r.u32("rseq")?;
        if ty.always_reliable() && rseq == 0 {
            return Err(WireError::InvalidField {
                field: "rseq",
                problem: "zero on a reliable message type",
            });
        }
        if !ty.always_reliable() && ty != MsgType::Data && rseq != 0 {
            return Err(WireError::InvalidField {
                field: "rseq",
                problem: "non-zero on an unreliable message type",
            });
        }
        let body = match ty {
            MsgType::Heartbeat => MsgBody::Heartbeat,
            MsgType::Close => {
                let code = Code::from_u16(r.u16("code")?);
                let len = r.u8("reason_len")? as usize;
                let raw = r.bytes(len, "reason")?;
                let reason =
                    String::from_utf8(raw.to_vec()).map_err(|_| WireError::InvalidField {
                        field: "reason",
                        problem: "not UTF-8",
                    })?;
                MsgBody::Close { code, reason }
            }
            MsgType::Ack => MsgBody::Ack {
                next_expected: r.u32("next_expected")?,
            },
            MsgType::Error => MsgBody::Error {
                code: Code::from_u16(r.u16("code")?),
                offending: r.u8("offending")?,
            },
            MsgType::TimeRequest => MsgBody::TimeRequest {
                sync_id: r.u32("sync_id")?,
                t1: r.u64("t1")?,
            },
            MsgType::TimeResponse => MsgBody::TimeResponse {
                sync_id: r.u32("sync_id")?,
                t1: r.u64("t1")?,
                t2: r.u64("t2")?,
                t3: r.u64("t3")?,
            },
            MsgType::SessionOpen => MsgBody::SessionOpen {
                session_id: r.u32("session_id")?,
                kind: ChannelKind::from_u8(r.u8("kind")?).ok_or(WireError::InvalidField {
                    field: "kind",
                    problem: "not 1, 2 or 3",
                })?,
                qos: Qos::from_u8(r.u8("qos")?).ok_or(WireError::InvalidField {
                    field: "qos",
                    problem: "not 0..=3",
                })?,
                service: r.short_str("service", MAX_NAME_LEN)?,
            },
            MsgType::SessionAccept => MsgBody::SessionAccept {
                session_id: r.u32("session_id")?,
                max_message: r.u32("max_message")?,
            },
            MsgType::SessionReject => MsgBody::SessionReject {
                session_id: r.u32("session_id")?,
                code: Code::from_u16(r.u16("code")?),
            },
            MsgType::SessionClose => MsgBody::SessionClose {
                session_id: r.u32("session_id")?,
                code: Code::from_u16(r.u16("code")?),
            },
            MsgType::Data => {
                let session_id = r.u32("session_id")?;
                let msg_id = r.u32("msg_id")?;
                let frag_index = r.u16("frag_index")?;
                let frag_count = r.u16("frag_count")?;
                if frag_count == 0 || frag_index >= frag_count {
                    return Err(WireError::InvalidField {
                        field: "frag_index",
                        problem: "not below frag_count",
                    });
                }
                MsgBody::Data {
                    session_id,
                    msg_id,
                    frag_index,
                    frag_count,
                    payload: r.rest().to_vec(),
                }
            }
            MsgType::TimedData => {
                let session_id = r.u32("session_id")?;
                let msg_id = r.u32("msg_id")?;
                let frag_index = r.u16("frag_index")?;
                let frag_count = r.u16("frag_count")?;
                let pts_us = r.u64("pts_us")?;
                if frag_count == 0 || frag_index >= frag_count {
                    return Err(WireError::InvalidField {
                        field: "frag_index",
                        problem: "not below frag_count",
                    });
                }
                MsgBody::TimedData {
                    session_id,
                    msg_id,
                    frag_index,
                    frag_count,
                    pts_us,
                    payload: r.rest().to_vec(),
                }
            }
            MsgType::CapQuery => MsgBody::CapQuery {
                req_id: r.u32("req_id")?,
            },
            MsgType::CapList => MsgBody::CapList {
                req_id: r.u32("req_id")?,
                cbor: r.rest().to_vec(),
            },
            MsgType::PermRequest => MsgBody::PermRequest {
                req_id: r.u32("req_id")?,
                scope: Scope::from_u8(r.u8("scope")?).ok_or(WireError::InvalidField {
                    field: "scope",
                    problem: "not 1, 2 or 3",
                })?,
                duration_s: r.u32("duration_s")?,
                capability: r.short_str("capability", MAX_NAME_LEN)?,
            },
            MsgType::PermResponse => MsgBody::PermResponse {
                req_id: r.u32("req_id")?,
                result: PermResult::from_u8(r.u8("result")?).ok_or(WireError::InvalidField {
                    field: "result",
                    problem: "not 0..=3",
                })?,
                grant_id: r.u32("grant_id")?,
                expires_in_ms: r.u32("expires_in_ms")?,
            },
            MsgType::PermRevoke => MsgBody::PermRevoke {
                grant_id: r.u32("grant_id")?,
            },
            MsgType::CapInvoke => {
                let req_id = r.u32("req_id")?;
                let grant_id = r.u32("grant_id")?;
                let capability = r.short_str("capability", MAX_NAME_LEN)?;
                let len = r.u16("arg_len")? as usize;
                MsgBody::CapInvoke {
                    req_id,
                    grant_id,
                    capability,
                    args: r.bytes(len, "args")?.to_vec(),
                }
            }
            MsgType::CapResult => {
                let req_id = r.u32("req_id")?;
                let status = Code::from_u16(r.u16("status")?);
                let len = r.u16("res_len")? as usize;
                MsgBody::CapResult {
                    req_id,
                    status,
                    result: r.bytes(len, "result")?.to_vec(),
                }
            }
        };
        r.finish("message")?;
        Ok(Message { rseq, body })
    }

    /// Check the field limits that `parse` enforces, so a hand-built message round-trips.
    pub fn validate(&self) -> Result<(), WireError> {
        let name_ok = |s: &str, field| {
            if s.is_empty() || s.len() > MAX_NAME_LEN {
                Err(WireError::InvalidField {
                    field,
                    problem: "length out of range",
                })
            } else {
                Ok(())
            }
        };
        match &self.body {
            MsgBody::Close { reason, .. } if reason.len() > 255 => Err(WireError::InvalidField {
                field: "reason",
                problem: "longer than 255 bytes",
            }),
            MsgBody::SessionOpen { service, .. } => name_ok(service, "service"),
            MsgBody::PermRequest { capability, .. } => name_ok(capability, "capability"),
            MsgBody::CapInvoke {
                capability, args, ..
            } => {
                name_ok(capability, "capability")?;
                if args.len() > u16::MAX as usize {
                    return Err(WireError::InvalidField {
                        field: "args",
                        problem: "longer than 65535 bytes",
                    });
                }
                Ok(())
            }
            MsgBody::CapResult { result, .. } if result.len() > u16::MAX as usize => {
                Err(WireError::InvalidField {
                    field: "result",
                    problem: "longer than 65535 bytes",
                })
            }
            MsgBody::Data {
                frag_index,
                frag_count,
                ..
            }
            | MsgBody::TimedData {
                frag_index,
                frag_count,
                ..
            } if frag_index >= frag_count => Err(WireError::InvalidField {
                field: "frag_index",
                problem: "not below frag_count",
            }),
            _ => Ok(()),
        }
    }

    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        MSG_HEADER_LEN
            + match &self.body {
                MsgBody::Heartbeat => 0,
                MsgBody::Close { reason, .. } => 3 + reason.len(),
                MsgBody::Ack { .. } => 4,
                MsgBody::Error { .. } => 3,
                MsgBody::TimeRequest { .. } => 12,
                MsgBody::TimeResponse { .. } => 28,
                MsgBody::SessionOpen { service, .. } => 4 + 1 + 1 + 1 + service.len(),
                MsgBody::SessionAccept { .. } => 8,
                MsgBody::SessionReject { .. } | MsgBody::SessionClose { .. } => 6,
                MsgBody::Data { payload, .. } => 12 + payload.len(),
                MsgBody::TimedData { payload, .. } => 20 + payload.len(),
                MsgBody::CapQuery { .. } => 4,
                MsgBody::CapList { cbor, .. } => 4 + cbor.len(),
                MsgBody::PermRequest { capability, .. } => 4 + 1 + 4 + 1 + capability.len(),
                MsgBody::PermResponse { .. } => 4 + 1 + 4 + 4,
                MsgBody::PermRevoke { .. } => 4,
                MsgBody::CapInvoke {
                    capability, args, ..
                } => 4 + 4 + 1 + capability.len() + 2 + args.len(),
                MsgBody::CapResult { result, .. } => 4 + 2 + 2 + result.len(),
            }
    }

    /// Append the encoding to `out`. Fields beyond their length limits are truncated to the
    /// limit; call [`Message::validate`] first to refuse them instead.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        out.push(self.body.msg_type() as u8);
        out.extend_from_slice(&self.rseq.to_be_bytes());
        fn short(out: &mut Vec<u8>, s: &str) {
            let b = &s.as_bytes()[..s.len().min(255)];
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        }
        fn long(out: &mut Vec<u8>, b: &[u8]) {
            let b = &b[..b.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(b.len() as u16).to_be_bytes());
            out.extend_from_slice(b);
        }
        match &self.body {
            MsgBody::Heartbeat => {}
            MsgBody::Close { code, reason } => {
                out.extend_from_slice(&code.to_u16().to_be_bytes());
                short(out, reason);
            }
            MsgBody::Ack { next_expected } => out.extend_from_slice(&next_expected.to_be_bytes()),
            MsgBody::Error { code, offending } => {
                out.extend_from_slice(&code.to_u16().to_be_bytes());
                out.push(*offending);
            }
            MsgBody::SessionOpen {
                session_id,
                kind,
                qos,
                service,
            } => {
                out.extend_from_slice(&session_id.to_be_bytes());
                out.push(*kind as u8);
                out.push(*qos as u8);
                short(out, service);
            }
            MsgBody::SessionAccept {
                session_id,
                max_message,
            } => {
                out.extend_from_slice(&session_id.to_be_bytes());
                out.extend_from_slice(&max_message.to_be_bytes());
            }
            MsgBody::SessionReject { session_id, code }
            | MsgBody::SessionClose { session_id, code } => {
                out.extend_from_slice(&session_id.to_be_bytes());
                out.extend_from_slice(&code.to_u16().to_be_bytes());
            }
            MsgBody::Data {
                session_id,
                msg_id,
                frag_index,
                frag_count,
                payload,
            } => {
                out.extend_from_slice(&session_id.to_be_bytes());
                out.extend_from_slice(&msg_id.to_be_bytes());
                out.extend_from_slice(&frag_index.to_be_bytes());
                out.extend_from_slice(&frag_count.to_be_bytes());
                out.extend_from_slice(payload);
            }
            MsgBody::TimedData {
                session_id,
                msg_id,
                frag_index,
                frag_count,
                pts_us,
                payload,
            } => {
                out.extend_from_slice(&session_id.to_be_bytes());
                out.extend_from_slice(&msg_id.to_be_bytes());
                out.extend_from_slice(&frag_index.to_be_bytes());
                out.extend_from_slice(&frag_count.to_be_bytes());
                out.extend_from_slice(&pts_us.to_be_bytes());
                out.extend_from_slice(payload);
            }
            MsgBody::TimeRequest { sync_id, t1 } => {
                out.extend_from_slice(&sync_id.to_be_bytes());
                out.extend_from_slice(&t1.to_be_bytes());
            }
            MsgBody::TimeResponse {
                sync_id,
                t1,
                t2,
                t3,
            } => {
                out.extend_from_slice(&sync_id.to_be_bytes());
                for t in [t1, t2, t3] {
                    out.extend_from_slice(&t.to_be_bytes());
                }
            }
            MsgBody::CapQuery { req_id } => out.extend_from_slice(&req_id.to_be_bytes()),
            MsgBody::CapList { req_id, cbor } => {
                out.extend_from_slice(&req_id.to_be_bytes());
                out.extend_from_slice(cbor);
            }
            MsgBody::PermRequest {
                req_id,
                scope,
                duration_s,
                capability,
            } => {
                out.extend_from_slice(&req_id.to_be_bytes());
                out.push(*scope as u8);
                out.extend_from_slice(&duration_s.to_be_bytes());
                short(out, capability);
            }
            MsgBody::PermResponse {
                req_id,
                result,
                grant_id,
                expires_in_ms,
            } => {
                out.extend_from_slice(&req_id.to_be_bytes());
                out.push(*result as u8);
                out.extend_from_slice(&grant_id.to_be_bytes());
                out.extend_from_slice(&expires_in_ms.to_be_bytes());
            }
            MsgBody::PermRevoke { grant_id } => out.extend_from_slice(&grant_id.to_be_bytes()),
            MsgBody::CapInvoke {
                req_id,
                grant_id,
                capability,
                args,
            } => {
                out.extend_from_slice(&req_id.to_be_bytes());
                out.extend_from_slice(&grant_id.to_be_bytes());
                short(out, capability);
                long(out, args);
            }
            MsgBody::CapResult {
                req_id,
                status,
                result,
            } => {
                out.extend_from_slice(&req_id.to_be_bytes());
                out.extend_from_slice(&status.to_u16().to_be_bytes());
                long(out, result);
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
