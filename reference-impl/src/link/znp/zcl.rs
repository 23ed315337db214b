//! The Zigbee Cluster Library frames the kit exchanges with legacy devices: the ZCL header,
//! the global Read Attributes / Read Attributes Response / Default Response commands, the
//! On/Off cluster's commands, and the attribute data types they carry.
//!
//! ```text
//! +---------------+-------------------+-----+---------+---------+
//! | frame control | manufacturer code | TSN | command | payload |
//! | 1             | 0 or 2            | 1   | 1       | ...     |
//! +---------------+-------------------+-----+---------+---------+
//! ```
//!
//! Frame control: bits 0-1 frame type (0 global, 1 cluster-specific), bit 2 manufacturer
//! specific, bit 3 direction (1 server to client), bit 4 disable default response.
//! Parsing never panics; unknown data types are an error rather than a guess, since their
//! length cannot be known.

/// Home Automation profile.
pub const PROFILE_HA: u16 = 0x0104;
/// On/Off cluster.
pub const CLUSTER_ON_OFF: u16 = 0x0006;
/// Temperature Measurement cluster.
pub const CLUSTER_TEMPERATURE: u16 = 0x0402;
/// Basic cluster.
pub const CLUSTER_BASIC: u16 = 0x0000;

/// On/Off attribute of the On/Off cluster (boolean).
pub const ATTR_ON_OFF: u16 = 0x0000;
/// MeasuredValue of Temperature Measurement (int16, 0.01 °C).
pub const ATTR_MEASURED_VALUE: u16 = 0x0000;
/// MinMeasuredValue of Temperature Measurement.
pub const ATTR_MIN_MEASURED_VALUE: u16 = 0x0001;
/// MaxMeasuredValue of Temperature Measurement.
pub const ATTR_MAX_MEASURED_VALUE: u16 = 0x0002;

/// Global command: Read Attributes.
pub const CMD_READ_ATTRIBUTES: u8 = 0x00;
/// Global command: Read Attributes Response.
pub const CMD_READ_ATTRIBUTES_RSP: u8 = 0x01;
/// Global command: Default Response.
pub const CMD_DEFAULT_RSP: u8 = 0x0B;
/// On/Off cluster command: Off.
pub const CMD_OFF: u8 = 0x00;
/// On/Off cluster command: On.
pub const CMD_ON: u8 = 0x01;
/// On/Off cluster command: Toggle.
pub const CMD_TOGGLE: u8 = 0x02;

/// ZCL status codes.
pub mod status {
    /// Success.
    pub const SUCCESS: u8 = 0x00;
    /// Malformed command.
    pub const MALFORMED_COMMAND: u8 = 0x80;
    /// Unsupported cluster-specific or global command.
    pub const UNSUP_COMMAND: u8 = 0x81;
    /// Unsupported attribute.
    pub const UNSUPPORTED_ATTRIBUTE: u8 = 0x86;
    /// Unsupported cluster.
    pub const UNSUPPORTED_CLUSTER: u8 = 0xC3;
}

/// Why bytes are not the ZCL frame or value expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZclError {
    /// The frame or payload ends early.
    #[error("ZCL {what}: ends after {len} bytes")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes there were.
        len: usize,
    },
    /// A data type this module cannot size.
    #[error("ZCL data type {0:#04x} is not supported")]
    UnsupportedType(u8),
    /// A reserved frame type.
    #[error("ZCL frame type {0} is reserved")]
    ReservedFrameType(u8),
}

/// Global or cluster-specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// Profile-wide commands (read attributes...).
    Global,
    /// Commands of the addressed cluster.
    ClusterSpecific,
}

/// Client to server (requests) or server to client (responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client (the coordinator) to the server (the device).
    ClientToServer,
    /// From the server back.
    ServerToClient,
}

/// A ZCL frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZclFrame {
    /// Global or cluster-specific.
    pub frame_type: FrameType,
    /// Manufacturer code, for manufacturer-specific frames.
    pub manufacturer: Option<u16>,
    /// Direction.
    pub direction: Direction,
    /// Whether the receiver must not send a Default Response.
    pub disable_default_response: bool,
    /// Transaction sequence number, echoed in the response.
    pub tsn: u8,
    /// Command ID.
    pub command: u8,
    /// Command payload.
    pub payload: Vec<u8>,
}

impl ZclFrame {
    /// A client-to-server frame.
    pub fn request(frame_type: FrameType, tsn: u8, command: u8, payload: Vec<u8>) -> ZclFrame {
        ZclFrame {
            frame_type,
            manufacturer: None,
            direction: Direction::ClientToServer,
            disable_default_response: false,
            tsn,
            command,
            payload,
        }
    }

    /// A server-to-client response to `req`, with the same TSN.
    pub fn response_to(
        req: &ZclFrame,
        frame_type: FrameType,
        command: u8,
        payload: Vec<u8>,
    ) -> ZclFrame {
        ZclFrame {
            frame_type,
            manufacturer: req.manufacturer,
            direction: Direction::ServerToClient,
            disable_default_response: true,
            tsn: req.tsn,
            command,
            payload,
        }
    }

    /// Parses a frame.
    pub fn parse(bytes: &[u8]) -> Result<ZclFrame, ZclError> {
        let truncated = ZclError::Truncated {
            what: "frame header",
            len: bytes.len(),
        };
        let fc = *bytes.first().ok_or(truncated.clone())?;
        let frame_type = match fc & 0x03 {
            0 => FrameType::Global,
            1 => FrameType::ClusterSpecific,
            other => return Err(ZclError::ReservedFrameType(other)),
        };
        let mut at = 1;
        let manufacturer = if fc & 0x04 != 0 {
            let b = bytes.get(1..3).ok_or(truncated.clone())?;
            at = 3;
            Some(u16::from_le_bytes([b[0], b[1]]))
        } else {
            None
        };
        let tsn = *bytes.get(at).ok_or(truncated.clone())?;
        let command = *bytes.get(at + 1).ok_or(truncated)?;
        Ok(ZclFrame {
            frame_type,
            manufacturer,
            direction: if fc & 0x08 != 0 {
                Direction::ServerToClient
            } else {
                Direction::ClientToServer
            },
            disable_default_response: fc & 0x10 != 0,
            tsn,
            command,
            payload: bytes.get(at + 2..).unwrap_or_default().to_vec(),
        })
    }

    /// The frame's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut fc = match self.frame_type {
            FrameType::Global => 0,
            FrameType::ClusterSpecific => 1,
        };
        if self.manufacturer.is_some() {
            fc |= 0x04;
        }
        if self.direction == Direction::ServerToClient {
            fc |= 0x08;
        }
        if self.disable_default_response {
            fc |= 0x10;
        }
        let mut out = vec![fc];
        if let Some(m) = self.manufacturer {
            out.extend_from_slice(&m.to_le_bytes());
        }
        out.push(self.tsn);
        out.push(self.command);
        out.extend_from_slice(&self.payload);
        out
    }
}

/// An attribute value with its ZCL data type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// 0x10 boolean.
    Bool(bool),
    /// 0x20 uint8.
    U8(u8),
    /// 0x21 uint16.
    U16(u16),
    /// 0x29 int16.
    I16(i16),
    /// 0x30 enum8.
    Enum8(u8),
    /// 0x42 character string (one-byte length prefix).
    String(String),
}

impl Value {
    /// The data type ID.
    pub fn type_id(&self) -> u8 {
        match self {
            Value::Bool(_) => 0x10,
            Value::U8(_) => 0x20,
            Value::U16(_) => 0x21,
            Value::I16(_) => 0x29,
            Value::Enum8(_) => 0x30,
            Value::String(_) => 0x42,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bool(b) => out.push(u8::from(*b)),
            Value::U8(v) | Value::Enum8(v) => out.push(*v),
            Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::String(s) => {
                let b = &s.as_bytes()[..s.len().min(254)];
                out.push(b.len() as u8); // <= 254
                out.extend_from_slice(b);
            }
        }
    }

    fn decode(type_id: u8, bytes: &[u8], at: &mut usize) -> Result<Value, ZclError> {
        let truncated = ZclError::Truncated {
            what: "attribute value",
            len: bytes.len(),
        };
        let mut take = |n: usize| -> Result<&[u8], ZclError> {
            let end = at
                .checked_add(n)
                .filter(|e| *e <= bytes.len())
                .ok_or(truncated.clone())?;
            let out = &bytes[*at..end];
            *at = end;
            Ok(out)
        };
        Ok(match type_id {
            0x10 => Value::Bool(take(1)?[0] != 0),
            0x20 => Value::U8(take(1)?[0]),
            0x21 => {
                let b = take(2)?;
                Value::U16(u16::from_le_bytes([b[0], b[1]]))
            }
            0x29 => {
                let b = take(2)?;
                Value::I16(i16::from_le_bytes([b[0], b[1]]))
            }
            0x30 => Value::Enum8(take(1)?[0]),
            0x42 => {
                let n = usize::from(take(1)?[0]);
                Value::String(String::from_utf8_lossy(take(n)?).into_owned())
            }
            other => return Err(ZclError::UnsupportedType(other)),
        })
    }
}

/// The payload of Read Attributes: the attribute IDs.
pub fn read_attributes_payload(attributes: &[u16]) -> Vec<u8> {
    attributes.iter().flat_map(|a| a.to_le_bytes()).collect()
}

/// Parses a Read Attributes payload. A trailing odd byte is malformed.
pub fn parse_read_attributes(payload: &[u8]) -> Result<Vec<u16>, ZclError> {
    if payload.len() % 2 == 1 {
        return Err(ZclError::Truncated {
            what: "read attributes",
            len: payload.len(),
        });
    }
    Ok(payload
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// One record of a Read Attributes Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAttributeRecord {
    /// Attribute ID.
    pub attribute: u16,
    /// The value, or the ZCL status why not.
    pub result: Result<Value, u8>,
}

/// The payload of a Read Attributes Response.
pub fn read_attributes_rsp_payload(records: &[ReadAttributeRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&r.attribute.to_le_bytes());
        match &r.result {
            Ok(v) => {
                out.push(status::SUCCESS);
                out.push(v.type_id());
                v.encode(&mut out);
            }
            Err(st) => out.push(*st),
        }
    }
    out
}

/// Parses a Read Attributes Response payload.
pub fn parse_read_attributes_rsp(payload: &[u8]) -> Result<Vec<ReadAttributeRecord>, ZclError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let head = payload.get(at..at + 3).ok_or(ZclError::Truncated {
            what: "read attributes record",
            len: payload.len(),
        })?;
        let attribute = u16::from_le_bytes([head[0], head[1]]);
        let st = head[2];
        at += 3;
        let result = if st == status::SUCCESS {
            let type_id = *payload.get(at).ok_or(ZclError::Truncated {
                what: "attribute type",
                len: payload.len(),
            })?;
            at += 1;
            Ok(Value::decode(type_id, payload, &mut at)?)
        } else {
            Err(st)
        };
        out.push(ReadAttributeRecord { attribute, result });
    }
    Ok(out)
}

/// The payload of a Default Response: the command answered and a status.
pub fn default_rsp_payload(command: u8, status: u8) -> Vec<u8> {
    vec![command, status]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_attributes_response_round_trips() {
        let records = vec![
            ReadAttributeRecord {
                attribute: 0,
                result: Ok(Value::Bool(true)),
            },
            ReadAttributeRecord {
                attribute: 1,
                result: Err(status::UNSUPPORTED_ATTRIBUTE),
            },
            ReadAttributeRecord {
                attribute: 2,
                result: Ok(Value::I16(-4000)),
            },
        ];
        let bytes = read_attributes_rsp_payload(&records);
        assert_eq!(parse_read_attributes_rsp(&bytes), Ok(records));
    }

    #[test]
    fn frame_with_manufacturer_code_round_trips() {
        let mut f = ZclFrame::request(FrameType::ClusterSpecific, 7, CMD_TOGGLE, vec![]);
        f.manufacturer = Some(0x115F);
        assert_eq!(ZclFrame::parse(&f.to_bytes()), Ok(f));
        assert!(ZclFrame::parse(&[0x04, 0x5F]).is_err());
    }
}
