//! The advert (spec 5.2): the device's self-description, its deterministic CBOR encoding and
//! the checked reader of any valid encoding (see the module docs of [`super`] for the CDDL).

use super::*;

/// What a device says about itself in answer to discovery (see the module's CDDL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Advert format version (`v`); [`ADVERT_VERSION`] is the only one readers accept.
    pub v: u8,
    /// Device ID (`id`), derived from `pk` by [`device_id_from_public_key`].
    pub id: [u8; 8],
    /// Human-readable device name (`name`).
    pub name: String,
    /// Device type (`type`).
    pub device_type: String,
    /// Static X25519 identity public key (`pk`).
    pub pk: [u8; 32],
    /// Capability kinds the device offers (`caps`).
    pub caps: Vec<String>,
    /// UDP port of the SoftBus secure channel (`port`).
    pub port: u16,
    /// Heartbeat interval in milliseconds (`hb`).
    pub hb: u32,
    /// Permission prompt timeout in milliseconds (`pt`).
    pub pt: u32,
    /// Whether the device accepts pairing requests now (`pair`).
    pub pair: bool,
}

/// Advert keys in the order [`Advert::to_cbor`] writes them (RFC 8949 section 4.2.1).
pub(super) const CANONICAL_KEYS: [&str; 10] = [
    "v", "hb", "id", "pk", "pt", "caps", "name", "pair", "port", "type",
];

impl Advert {
    /// An advert for the device with identity key `pk`: the ID derived from it,
    /// version 1, no capabilities, default heartbeat and prompt timeout, not pairable.
    pub fn new(
        pk: [u8; 32],
        name: impl Into<String>,
        device_type: impl Into<String>,
        port: u16,
    ) -> Self {
        Advert {
            v: ADVERT_VERSION,
            id: device_id_from_public_key(&pk),
            name: name.into(),
            device_type: device_type.into(),
            pk,
            caps: Vec::new(),
            port,
            hb: DEFAULT_HEARTBEAT_MS,
            pt: DEFAULT_PROMPT_TIMEOUT_MS,
            pair: false,
        }
    }

    /// True if `caps` lists `kind` (exact, case-sensitive match).
    pub fn has_capability(&self, kind: &str) -> bool {
        self.caps.iter().any(|c| c == kind)
    }

    /// The advert as deterministically encoded CBOR (see the module documentation).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        cbor_head(&mut out, MAJOR_MAP, CANONICAL_KEYS.len() as u64);
        for key in CANONICAL_KEYS {
            cbor_text(&mut out, key);
            match key {
                "v" => cbor_head(&mut out, MAJOR_UINT, u64::from(self.v)),
                "hb" => cbor_head(&mut out, MAJOR_UINT, u64::from(self.hb)),
                "id" => cbor_bytes(&mut out, &self.id),
                "pk" => cbor_bytes(&mut out, &self.pk),
                "pt" => cbor_head(&mut out, MAJOR_UINT, u64::from(self.pt)),
                "caps" => {
                    cbor_head(&mut out, MAJOR_ARRAY, self.caps.len() as u64);
                    for cap in &self.caps {
                        cbor_text(&mut out, cap);
                    }
                }
                "name" => cbor_text(&mut out, &self.name),
                "pair" => out.push(if self.pair { CBOR_TRUE } else { CBOR_FALSE }),
                "port" => cbor_head(&mut out, MAJOR_UINT, u64::from(self.port)),
                _ => cbor_text(&mut out, &self.device_type),
            }
        }
        out
    }

    /// Reads an advert, checking every field's presence, type, size and range.
    pub fn from_cbor(bytes: &[u8]) -> Result<Advert, DiscoveryError> {
        let mut rest = bytes;
        let value: Value = ciborium::de::from_reader(&mut rest)
            .map_err(|e| DiscoveryError::Cbor(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DiscoveryError::TrailingBytes(rest.len()));
        }
        let Value::Map(entries) = value else {
            return Err(DiscoveryError::NotAMap(cbor_kind(&value)));
        };
        let mut fields = Fields::default();
        for (key, value) in entries {
            if let Value::Text(key) = key {
                fields.put(&key, value)?;
            }
        }
        // The version comes first: a later version may have changed the other fields.
        let v = fields.uint("v", u64::from(u8::MAX))?;
        if v != u64::from(ADVERT_VERSION) {
            return Err(DiscoveryError::UnsupportedVersion(i128::from(v)));
        }
        Ok(Advert {
            v: ADVERT_VERSION,
            id: fields.byte_array("id")?,
            name: fields.text("name")?,
            device_type: fields.text("type")?,
            pk: fields.byte_array("pk")?,
            caps: fields.text_array("caps")?,
            port: u16::try_from(fields.uint("port", u64::from(u16::MAX))?).unwrap_or(u16::MAX),
            hb: u32::try_from(fields.uint("hb", u64::from(u32::MAX))?).unwrap_or(u32::MAX),
            pt: u32::try_from(fields.uint("pt", u64::from(u32::MAX))?).unwrap_or(u32::MAX),
            pair: fields.boolean("pair")?,
        })
    }

    /// Checks that `id` is the ID derived from `pk`.
    pub fn check_device_id(&self) -> Result<(), DiscoveryError> {
        let derived = device_id_from_public_key(&self.pk);
        if derived == self.id {
            Ok(())
        } else {
            Err(DiscoveryError::DeviceIdMismatch {
                advertised: self.id,
                derived,
            })
        }
    }
}

pub(super) const MAJOR_UINT: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const CBOR_FALSE: u8 = 0xF4;
const CBOR_TRUE: u8 = 0xF5;

/// Writes a CBOR head in its shortest form (RFC 8949 section 4.2.1).
pub(super) fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let major = major << 5;
    if let Ok(small) = u8::try_from(n) {
        if small < 24 {
            out.push(major | small);
        } else {
            out.extend_from_slice(&[major | 24, small]);
        }
    } else if let Ok(n) = u16::try_from(n) {
        out.push(major | 25);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(major | 26);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

pub(super) fn cbor_text(out: &mut Vec<u8>, text: &str) {
    cbor_head(out, MAJOR_TEXT, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn cbor_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    cbor_head(out, MAJOR_BYTES, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The CDDL name of a value's type, for error messages.
fn cbor_kind(value: &Value) -> &'static str {
    match value {
        Value::Integer(i) if i128::from(*i) < 0 => "nint",
        Value::Integer(_) => "uint",
        Value::Bytes(_) => "bstr",
        Value::Float(_) => "float",
        Value::Text(_) => "tstr",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        Value::Tag(..) => "tagged item",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        _ => "unknown item",
    }
}

/// The known advert fields of one map, each taken out once.
#[derive(Default)]
struct Fields {
    values: [Option<Value>; CANONICAL_KEYS.len()],
}

impl Fields {
    fn put(&mut self, key: &str, value: Value) -> Result<(), DiscoveryError> {
        let Some(index) = CANONICAL_KEYS.iter().position(|k| *k == key) else {
            return Ok(()); // Unknown keys are for later versions.
        };
        let (Some(name), Some(slot)) = (CANONICAL_KEYS.get(index), self.values.get_mut(index))
        else {
            return Ok(());
        };
        if slot.is_some() {
            return Err(DiscoveryError::DuplicateField(name));
        }
        *slot = Some(value);
        Ok(())
    }

    fn take(&mut self, field: &'static str) -> Result<Value, DiscoveryError> {
        CANONICAL_KEYS
            .iter()
            .position(|k| *k == field)
            .and_then(|index| self.values.get_mut(index))
            .and_then(Option::take)
            .ok_or(DiscoveryError::MissingField(field))
    }

    fn uint(&mut self, field: &'static str, max: u64) -> Result<u64, DiscoveryError> {
        match self.take(field)? {
            Value::Integer(i) => {
                let value = i128::from(i);
                u64::try_from(value)
                    .ok()
                    .filter(|v| *v <= max)
                    .ok_or(DiscoveryError::OutOfRange { field, value, max })
            }
            other => Err(wrong_type(field, "uint", &other)),
        }
    }

    fn text(&mut self, field: &'static str) -> Result<String, DiscoveryError> {
        match self.take(field)? {
            Value::Text(s) => Ok(s),
            other => Err(wrong_type(field, "tstr", &other)),
        }
    }

    fn byte_array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DiscoveryError> {
        match self.take(field)? {
            Value::Bytes(b) => {
                <[u8; N]>::try_from(b.as_slice()).map_err(|_| DiscoveryError::WrongSize {
                    field,
                    expected: N,
                    actual: b.len(),
                })
            }
            other => Err(wrong_type(field, "bstr", &other)),
        }
    }

    fn text_array(&mut self, field: &'static str) -> Result<Vec<String>, DiscoveryError> {
        match self.take(field)? {
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::Text(s) => Ok(s),
                    other => Err(wrong_type(field, "an array of tstr", &other)),
                })
                .collect(),
            other => Err(wrong_type(field, "an array of tstr", &other)),
        }
    }

    fn boolean(&mut self, field: &'static str) -> Result<bool, DiscoveryError> {
        match self.take(field)? {
            Value::Bool(b) => Ok(b),
            other => Err(wrong_type(field, "bool", &other)),
        }
    }
}

fn wrong_type(field: &'static str, expected: &'static str, found: &Value) -> DiscoveryError {
    DiscoveryError::WrongType {
        field,
        expected,
        found: cbor_kind(found),
    }
}
