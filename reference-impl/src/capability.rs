//! Capability descriptors with live metrics (spec 10) and their CBOR encoding in CAP_LIST.

use ciborium::value::Value;
use serde::{Deserialize, Serialize};

/// Capability kinds defined by the spec.
pub const KINDS: &[&str] = &[
    "camera",
    "microphone",
    "speaker",
    "display",
    "compute",
    "sensor",
    "actuator",
    "light",
];

/// Live metrics of a capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Metrics {
    /// Load, percent (0..=100).
    #[serde(default)]
    pub load: u8,
    /// Battery, percent, or `None` on mains power.
    #[serde(default)]
    pub battery: Option<u8>,
    /// Link latency estimate, ms.
    #[serde(default)]
    pub latency_ms: u32,
}

/// One capability a device offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// Name, e.g. `speaker.main` (1..=64 bytes).
    pub name: String,
    /// Kind, one of [`KINDS`].
    pub kind: String,
    /// Live metrics.
    #[serde(default)]
    pub metrics: Metrics,
}

/// A CAP_LIST payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid capability list: {0}")]
pub struct CapListError(pub String);

/// Encode capabilities as the CBOR array carried in CAP_LIST.
pub fn encode_list(caps: &[Capability]) -> Vec<u8> {
    let arr = caps
        .iter()
        .map(|c| {
            let battery = match c.metrics.battery {
                Some(b) => Value::Integer(b.into()),
                None => Value::Null,
            };
            Value::Map(vec![
                (Value::Text("name".into()), Value::Text(c.name.clone())),
                (Value::Text("kind".into()), Value::Text(c.kind.clone())),
                (
                    Value::Text("metrics".into()),
                    Value::Map(vec![
                        (
                            Value::Text("load".into()),
                            Value::Integer(c.metrics.load.into()),
                        ),
                        (Value::Text("battery".into()), battery),
                        (
                            Value::Text("latency_ms".into()),
                            Value::Integer(c.metrics.latency_ms.into()),
                        ),
                    ]),
                ),
            ])
        })
        .collect();
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = ciborium::ser::into_writer(&Value::Array(arr), &mut out);
    out
}

fn get<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
        .map(|(_, v)| v)
}

fn small_uint(v: Option<&Value>, field: &str, max: u64) -> Result<u64, CapListError> {
    match v {
        Some(Value::Integer(i)) => {
            let n: i128 = (*i).into();
            if (0..=max as i128).contains(&n) {
                Ok(n as u64)
            } else {
                Err(CapListError(format!("{field} out of range")))
            }
        }
        _ => Err(CapListError(format!("{field} missing or not an integer"))),
    }
}

/// Decode and validate a CAP_LIST payload.
pub fn decode_list(cbor: &[u8]) -> Result<Vec<Capability>, CapListError> {
    let value: Value =
        ciborium::de::from_reader(cbor).map_err(|e| CapListError(format!("not CBOR: {e}")))?;
    let Value::Array(items) = value else {
        return Err(CapListError("top level is not an array".into()));
    };
    items
        .iter()
        .map(|item| {
            let Value::Map(m) = item else {
                return Err(CapListError("entry is not a map".into()));
            };
            let text = |k: &str| match get(m, k) {
                Some(Value::Text(t)) if !t.is_empty() && t.len() <= 64 => Ok(t.clone()),
                _ => Err(CapListError(format!(
                    "{k} missing or not a 1..64 byte string"
                ))),
            };
            let name = text("name")?;
            let kind = text("kind")?;
            let Some(Value::Map(metrics)) = get(m, "metrics") else {
                return Err(CapListError("metrics missing or not a map".into()));
            };
            let battery = match get(metrics, "battery") {
                Some(Value::Null) | None => None,
                v => Some(small_uint(v, "battery", 100)? as u8),
            };
            Ok(Capability {
                name,
                kind,
                metrics: Metrics {
                    load: small_uint(get(metrics, "load"), "load", 100)? as u8,
                    battery,
                    latency_ms: small_uint(
                        get(metrics, "latency_ms"),
                        "latency_ms",
                        u32::MAX as u64,
                    )? as u32,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_round_trips_and_rejects_garbage() {
        let caps = vec![
            Capability {
                name: "speaker.main".into(),
                kind: "speaker".into(),
                metrics: Metrics {
                    load: 10,
                    battery: None,
                    latency_ms: 4,
                },
            },
            Capability {
                name: "mic".into(),
                kind: "microphone".into(),
                metrics: Metrics {
                    load: 0,
                    battery: Some(80),
                    latency_ms: 1,
                },
            },
        ];
        assert_eq!(decode_list(&encode_list(&caps)).unwrap(), caps);
        assert!(decode_list(&[0xff, 0x00]).is_err());
        assert!(decode_list(&[]).is_err());
    }
}
