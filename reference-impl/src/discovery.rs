//! SoftBus discovery on IP: the device advert, a sans-IO CoAP responder, and the client probe.
//!
//! A device listens on UDP port [`COAP_PORT`] (5683), joined to the groups
//! [`MULTICAST_V4`] (224.0.1.187) and [`MULTICAST_V6`] (ff02::fd), and serves
//! two CoAP resources:
//!
//! | resource | representation |
//! |---|---|
//! | `/softbus/v1/device` | the [`Advert`], CBOR, Content-Format 60 |
//! | `/.well-known/core` | [`CORE_LINK`], link-format (RFC 6690), Content-Format 40 |
//!
//! A client finds devices by sending a Non-confirmable `GET /softbus/v1/device`
//! to a group ([`Probe`]), optionally with the Uri-Query `cap=<kind>` to hear
//! only from devices that have that capability, and reads each answer with
//! [`parse_response`]. Off-the-shelf CoAP clients work as well, for instance
//! `coap-client -m get coap://192.0.2.7/softbus/v1/device?cap=camera`.
//!
//! # The advert
//!
//! The payload of `/softbus/v1/device`, in CDDL (RFC 8610):
//!
//! ```cddl
//! softbus-advert = {
//!   "v": 1,                 ; advert format version
//!   "id": bstr .size 8,     ; device ID: SHA-256("softbus/1 device-id" || pk)[0..8]
//!   "name": tstr,           ; human-readable device name
//!   "type": tstr,           ; device type ("phone", "speaker", "bridge", ...)
//!   "pk": bstr .size 32,    ; static X25519 identity public key
//!   "caps": [* tstr],       ; capability kinds offered ("camera", "display", ...)
//!   "port": uint .le 65535, ; UDP port of the SoftBus secure channel
//!   "hb": uint .le 4294967295,  ; heartbeat interval, milliseconds
//!   "pt": uint .le 4294967295,  ; permission prompt timeout, milliseconds
//!   "pair": bool,           ; true while the device accepts pairing requests
//!   * tstr => any           ; later versions may add keys; readers ignore them
//! }
//! ```
//!
//! [`Advert::to_cbor`] writes the map with the core deterministic encoding of
//! RFC 8949 section 4.2.1 (shortest integer and length forms, definite lengths,
//! keys sorted by their encoded bytes: `v hb id pk pt caps name pair port type`),
//! so an advert has exactly one encoding and golden fixtures are stable.
//! [`Advert::from_cbor`] accepts any valid encoding, checks every field's type
//! and size, ignores unknown keys, rejects duplicated known keys and trailing
//! bytes, and says which field is wrong. It does not check that `id` derives from
//! `pk`; [`Advert::check_device_id`] does, and [`parse_response`] calls it.
//!
//! # How the responder answers
//!
//! [`Responder::handle_request`] takes one datagram and gives at most one datagram
//! back, with the earliest time to send it. It owns no socket, clock or random
//! number generator: the driver passes `now`, says whether the datagram arrived
//! on a multicast group, and passes a random leisure for multicast requests.
//!
//! | request | answer |
//! |---|---|
//! | `GET /softbus/v1/device` | 2.05 Content, Content-Format 60, the advert |
//! | `GET /softbus/v1/device?cap=K`, device has a capability `K` | 2.05 Content, as above |
//! | `GET /softbus/v1/device?cap=K`, device has no capability `K` | unicast 4.04 Not Found; multicast nothing |
//! | `GET /softbus/v1/device?cap=` (empty kind) | unicast 4.00 Bad Request; multicast nothing |
//! | `GET /.well-known/core` | 2.05 Content, Content-Format 40, [`CORE_LINK`] |
//! | `GET /.well-known/core?rt=softbus.device` (RFC 6690 filter) | as above if the link matches, else 2.05 with no payload (multicast: nothing) |
//! | any other path, any method | 4.04 Not Found |
//! | a method other than GET on a known path | 4.05 Method Not Allowed |
//! | Accept option other than the resource's Content-Format | 4.06 Not Acceptable |
//! | Proxy-Uri or Proxy-Scheme | 5.05 Proxying Not Supported |
//! | an unrecognised critical option (Block2, If-Match, ...) or a recognised one repeated or of bad length | CON: 4.02 Bad Option; NON: nothing |
//! | Confirmable request | the response piggybacked on an ACK with the request's Message ID |
//! | Non-confirmable request | a NON response with a Message ID from the responder's counter |
//! | malformed CoAP (any [`CoapError`]) | CON with a readable version-1 header: RST; otherwise nothing |
//! | Empty CON ("CoAP ping") | RST |
//! | Empty NON, code of a reserved class (1, 6, 7), CON on a multicast group | nothing (CON on unicast with a reserved class: RST) |
//! | ACK or RST | nothing |
//! | a response code on a NON | nothing |
//! | a response code on a CON | RST (RFC 7252 section 5.3.2: an unexpected response is rejected) |
//!
//! Every response echoes the request's token. Error responses carry a short
//! diagnostic payload (UTF-8, no Content-Format, RFC 7252 section 5.5.2).
//!
//! Multicast requests (RFC 7252 section 8.2): the responder answers only with a
//! success response that has a payload, never with an error or a Reset, so a
//! device without the requested capability stays silent, as the spec requires.
//! The answer's `send_at` is `now + leisure`; leisure above [`MAX_LEISURE`]
//! (100 ms) is cut to it. The driver sends the answer from its unicast address.
//! A unicast request is answered at `now`, and a `cap` filter that does not match
//! gets 4.04 rather than silence, so a tester asking one device directly can tell
//! "no such capability" from a lost datagram.
//!
//! The responder keeps no record of Message IDs it has seen: a retransmitted
//! CON gets a fresh piggybacked answer, which is the same answer, since GET is
//! idempotent and the advert only changes through [`Responder::set_advert`].
//!
//! [`Responder::malformed_count`] counts datagrams that are not valid CoAP
//! requests: format errors, Empty NONs, reserved code classes, and CONs on a
//! multicast group. Options it does not support do not count: the message is
//! valid CoAP that this server cannot serve.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ciborium::value::Value;
use thiserror::Error;

use crate::wire::coap::{
    CoapError, CoapHeader, CoapMessage, Code, ContentFormat, MessageType, OptionNumber, Token,
    VERSION,
};

/// UDP port of CoAP, on which devices listen for discovery requests.
pub const COAP_PORT: u16 = 5683;

/// IPv4 group for discovery: "All CoAP Nodes".
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 187);

/// IPv6 group for discovery: link-local "All CoAP Nodes".
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfd);

/// Uri-Path segments of the device resource.
pub const DEVICE_PATH: [&str; 3] = ["softbus", "v1", "device"];

/// Uri-Path segments of the CoRE resource directory entry point.
pub const WELL_KNOWN_CORE_PATH: [&str; 2] = [".well-known", "core"];

/// The link-format document served at `/.well-known/core`.
pub const CORE_LINK: &str = "</softbus/v1/device>;rt=\"softbus.device\";ct=60";

/// The Uri-Query prefix of the capability filter: `cap=<kind>`.
pub const CAP_QUERY_PREFIX: &str = "cap=";

/// Longest capability kind a [`Probe`] can ask for (a Uri-Query holds 255 bytes).
pub const MAX_CAP_FILTER_LEN: usize = 255 - CAP_QUERY_PREFIX.len();

/// Longest delay before answering a multicast request.
pub const MAX_LEISURE: Duration = Duration::from_millis(100);

/// The advert format version this module reads and writes.
pub const ADVERT_VERSION: u8 = 1;

/// Domain separation string hashed before the public key to give the device ID.
pub const DEVICE_ID_CONTEXT: &[u8] = crate::crypto::DEVICE_ID_LABEL;

/// Default heartbeat interval, milliseconds.
pub const DEFAULT_HEARTBEAT_MS: u32 = 1000;

/// Default permission prompt timeout, milliseconds.
pub const DEFAULT_PROMPT_TIMEOUT_MS: u32 = 30_000;

/// Why an advert or a discovery response was not accepted, or a probe not built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The response datagram is not a CoAP message.
    #[error("discovery response is not valid CoAP: {0}")]
    Coap(#[from] CoapError),
    /// The device rejected the probe with a Reset.
    #[error("device answered the probe with a Reset message")]
    Reset,
    /// The response's token is not the probe's.
    #[error("response token {} does not match the probe token {}", hex(.received), hex(.expected))]
    TokenMismatch {
        /// The probe's token.
        expected: Vec<u8>,
        /// The response's token.
        received: Vec<u8>,
    },
    /// The response code is not 2.05 Content.
    #[error("expected a 2.05 Content response, got {0}")]
    UnexpectedCode(Code),
    /// The response is not marked as CBOR (Content-Format 60).
    #[error("expected Content-Format 60 (application/cbor), got {}", describe_format(*.0))]
    UnexpectedContentFormat(Option<u16>),
    /// The 2.05 response has no payload.
    #[error("2.05 response carries no advert payload")]
    MissingPayload,
    /// The advert is not one well-formed CBOR item.
    #[error("advert is not well-formed CBOR: {0}")]
    Cbor(String),
    /// Bytes follow the advert's CBOR item.
    #[error("advert is followed by {0} trailing bytes")]
    TrailingBytes(usize),
    /// The advert is a CBOR item, but not a map.
    #[error("advert must be a CBOR map, found {0}")]
    NotAMap(&'static str),
    /// A required field is absent.
    #[error("advert field \"{0}\" is missing")]
    MissingField(&'static str),
    /// A field appears more than once.
    #[error("advert field \"{0}\" appears more than once")]
    DuplicateField(&'static str),
    /// A field has the wrong CBOR type.
    #[error("advert field \"{field}\" must be {expected}, found {found}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// The CBOR type the schema asks for.
        expected: &'static str,
        /// The CBOR type found.
        found: &'static str,
    },
    /// A byte-string field has the wrong length.
    #[error("advert field \"{field}\" must be {expected} bytes, found {actual}")]
    WrongSize {
        /// The field.
        field: &'static str,
        /// The length the schema asks for.
        expected: usize,
        /// The length found.
        actual: usize,
    },
    /// An integer field is negative or too large.
    #[error("advert field \"{field}\" is {value}, outside 0..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value found.
        value: i128,
        /// The largest value allowed.
        max: u64,
    },
    /// The advert's `v` is not 1.
    #[error("advert version {0} is not supported (this implementation reads version 1)")]
    UnsupportedVersion(i128),
    /// The advert's `id` is not derived from its `pk`.
    #[error("advert id {} is not the id {} derived from its public key", hex(.advertised), hex(.derived))]
    DeviceIdMismatch {
        /// The `id` in the advert.
        advertised: [u8; 8],
        /// The id derived from the advert's `pk`.
        derived: [u8; 8],
    },
    /// A probe's capability filter is empty or too long to fit a Uri-Query.
    #[error("capability filter of {len} bytes must be 1 to {MAX_CAP_FILTER_LEN} bytes")]
    InvalidCapFilter {
        /// Length of the filter.
        len: usize,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn describe_format(format: Option<u16>) -> String {
    match format {
        Some(f) => f.to_string(),
        None => "none".to_owned(),
    }
}

/// The device ID: the first 8 bytes of SHA-256(`"softbus/1 device-id"` || `pk`).
pub fn device_id_from_public_key(pk: &[u8; 32]) -> [u8; 8] {
    crate::crypto::DeviceId::from_public_key(pk).0
}

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
const CANONICAL_KEYS: [&str; 10] = [
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

const MAJOR_UINT: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const CBOR_FALSE: u8 = 0xF4;
const CBOR_TRUE: u8 = 0xF5;

/// Writes a CBOR head in its shortest form (RFC 8949 section 4.2.1).
fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
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

fn cbor_text(out: &mut Vec<u8>, text: &str) {
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

/// One datagram for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponderOutput {
    /// Where to send it: the request's source address.
    pub to: SocketAddr,
    /// The earliest time to send it: `now` for unicast, `now + leisure` for multicast.
    pub send_at: Instant,
    /// The CoAP message.
    pub datagram: Vec<u8>,
}

/// The device side of discovery: answers CoAP requests for the advert.
///
/// Sans-IO: feed it every datagram received on the discovery socket with
/// [`Responder::handle_request`], and send what it returns at `send_at`.
/// See the module documentation for what it answers to what.
#[derive(Debug, Clone)]
pub struct Responder {
    advert: Advert,
    advert_cbor: Vec<u8>,
    next_message_id: u16,
    malformed: u64,
    /// [`crate::Fault::DiscAnyCap`]: a request matches when the device has any one kind asked.
    any_cap_matches: bool,
}

/// A response decided by the routing, before it becomes a message.
struct Reply {
    code: Code,
    format: Option<ContentFormat>,
    payload: Vec<u8>,
}

impl Reply {
    fn content(format: ContentFormat, payload: impl Into<Vec<u8>>) -> Self {
        Reply {
            code: Code::CONTENT,
            format: Some(format),
            payload: payload.into(),
        }
    }

    fn error(code: Code, diagnostic: &str) -> Self {
        Reply {
            code,
            format: None,
            payload: diagnostic.as_bytes().to_vec(),
        }
    }
}

impl Responder {
    /// A responder serving `advert`, whose NON responses count Message IDs from 0.
    pub fn new(advert: Advert) -> Self {
        Responder {
            advert_cbor: advert.to_cbor(),
            advert,
            next_message_id: 0,
            malformed: 0,
            any_cap_matches: false,
        }
    }

    /// The defect [`crate::Fault::DiscAnyCap`] (suite self-test only): a request with several
    /// `cap=` filters matches when the device has any one of the kinds, not every one (3.1).
    pub fn with_any_cap_matching(mut self) -> Self {
        self.any_cap_matches = true;
        self
    }

    /// Starts the Message ID counter at `first`; drivers should pass a random value
    /// (RFC 7252 section 4.4), tests a fixed one.
    pub fn with_first_message_id(mut self, first: u16) -> Self {
        self.next_message_id = first;
        self
    }

    /// The advert served.
    pub fn advert(&self) -> &Advert {
        &self.advert
    }

    /// Replaces the advert served (a change of name, capabilities, pairing mode...).
    pub fn set_advert(&mut self, advert: Advert) {
        self.advert_cbor = advert.to_cbor();
        self.advert = advert;
    }

    /// The Message ID the next NON response will carry.
    pub fn next_message_id(&self) -> u16 {
        self.next_message_id
    }

    /// Number of datagrams received that were not valid CoAP requests.
    pub fn malformed_count(&self) -> u64 {
        self.malformed
    }

    /// Handles one datagram from `from`, received at `now`, and returns the answer to send.
    ///
    /// `multicast` says the datagram was addressed to a discovery group. `leisure`
    /// is the random delay (0 to [`MAX_LEISURE`]) the driver draws for each
    /// multicast request; it is ignored for unicast. Never panics, whatever the bytes.
    pub fn handle_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        multicast: bool,
        leisure: Duration,
    ) -> Option<ResponderOutput> {
        let request = match CoapMessage::parse(datagram) {
            Ok(request) => request,
            Err(_) => {
                self.malformed += 1;
                // Other versions are silently ignored (RFC 7252 section 3), and a
                // multicast message is never reset (section 8.2).
                let header = CoapHeader::parse(datagram).ok()?;
                let reject = header.version == VERSION
                    && header.msg_type == MessageType::Confirmable
                    && !multicast;
                return reject.then(|| Self::reset(now, from, header.message_id));
            }
        };
        let confirmable = match request.msg_type {
            MessageType::Confirmable => true,
            MessageType::NonConfirmable => false,
            MessageType::Acknowledgement | MessageType::Reset => return None,
        };
        if multicast && confirmable {
            // RFC 7252 section 8.1: multicast requests are Non-confirmable.
            self.malformed += 1;
            return None;
        }
        let code = request.code;
        if code.is_empty() || code.is_reserved_class() {
            // An Empty CON is a ping, answered with RST; an Empty NON is a format
            // error (section 4.3), and so is a reserved class.
            if !code.is_empty() || !confirmable {
                self.malformed += 1;
            }
            return confirmable.then(|| Self::reset(now, from, request.message_id));
        }
        if code.is_response() {
            // A response we did not ask for: reject a CON (section 5.3.2), drop a NON.
            return confirmable.then(|| Self::reset(now, from, request.message_id));
        }

        let reply = if let Some(bad) = unsupported_critical_option(&request) {
            if !confirmable {
                return None; // Rejected NON (section 5.4.1): silently dropped.
            }
            Reply::error(
                Code::BAD_OPTION,
                &format!("unsupported critical option {bad}"),
            )
        } else {
            self.route(&request)
        };
        let useful = reply.code.is_success() && !reply.payload.is_empty();
        if multicast && !useful {
            // Section 8.2: nothing useful to say, so say nothing.
            return None;
        }

        let (msg_type, message_id) = if confirmable {
            (MessageType::Acknowledgement, request.message_id)
        } else {
            let id = self.next_message_id;
            self.next_message_id = id.wrapping_add(1);
            (MessageType::NonConfirmable, id)
        };
        let mut response = CoapMessage::new(msg_type, reply.code, message_id)
            .with_token(request.token)
            .with_payload(reply.payload);
        if let Some(format) = reply.format {
            response.set_content_format(format);
        }
        let delay = if multicast {
            leisure.min(MAX_LEISURE)
        } else {
            Duration::ZERO
        };
        Some(ResponderOutput {
            to: from,
            send_at: now.checked_add(delay).unwrap_or(now),
            datagram: response.to_bytes(),
        })
    }

    fn reset(now: Instant, to: SocketAddr, message_id: u16) -> ResponderOutput {
        ResponderOutput {
            to,
            send_at: now,
            datagram: CoapMessage::reset(message_id).to_bytes(),
        }
    }

    fn route(&self, request: &CoapMessage) -> Reply {
        if request.first_option(OptionNumber::PROXY_URI).is_some()
            || request.first_option(OptionNumber::PROXY_SCHEME).is_some()
        {
            return Reply::error(Code::PROXYING_NOT_SUPPORTED, "this device is not a proxy");
        }
        let (resource_format, is_device) = if path_is(request, &DEVICE_PATH) {
            (ContentFormat::CBOR, true)
        } else if path_is(request, &WELL_KNOWN_CORE_PATH) {
            (ContentFormat::LINK_FORMAT, false)
        } else {
            return Reply::error(Code::NOT_FOUND, "no such resource");
        };
        if request.code != Code::GET {
            return Reply::error(Code::METHOD_NOT_ALLOWED, "only GET is allowed");
        }
        match request.accept() {
            Ok(None) => {}
            Ok(Some(format)) if format == resource_format => {}
            _ => return Reply::error(Code::NOT_ACCEPTABLE, "resource has one Content-Format"),
        }
        if is_device {
            self.device(request)
        } else {
            core_links(request)
        }
    }

    fn device(&self, request: &CoapMessage) -> Reply {
        let filters = request
            .options_with(OptionNumber::URI_QUERY)
            .filter_map(|o| o.value().strip_prefix(CAP_QUERY_PREFIX.as_bytes()));
        let has = |kind: &[u8]| self.advert.caps.iter().any(|c| c.as_bytes() == kind);
        if self.any_cap_matches {
            let kinds: Vec<&[u8]> = filters.collect();
            if kinds.iter().any(|k| k.is_empty()) {
                return Reply::error(Code::BAD_REQUEST, "empty cap filter");
            }
            if !kinds.is_empty() && !kinds.iter().any(|k| has(k)) {
                return Reply::error(Code::NOT_FOUND, "no capability of the requested kind");
            }
            return Reply::content(ContentFormat::CBOR, self.advert_cbor.as_slice());
        }
        for kind in filters {
            if kind.is_empty() {
                return Reply::error(Code::BAD_REQUEST, "empty cap filter");
            }
            if !has(kind) {
                return Reply::error(Code::NOT_FOUND, "no capability of the requested kind");
            }
        }
        Reply::content(ContentFormat::CBOR, self.advert_cbor.as_slice())
    }
}

/// `/.well-known/core`, with the query filtering of RFC 6690 section 4.1.
fn core_links(request: &CoapMessage) -> Reply {
    let matches = request
        .options_with(OptionNumber::URI_QUERY)
        .all(|o| link_matches(o.value()));
    let payload = if matches { CORE_LINK.as_bytes() } else { &[] };
    Reply::content(ContentFormat::LINK_FORMAT, payload)
}

/// Whether the one link served matches a filter `name=value` (`value*` is a prefix).
fn link_matches(filter: &[u8]) -> bool {
    let Some(eq) = filter.iter().position(|&b| b == b'=') else {
        return false;
    };
    let (name, rest) = filter.split_at(eq);
    let value = rest.get(1..).unwrap_or_default();
    let attribute: &[u8] = match name {
        b"href" => b"/softbus/v1/device",
        b"rt" => b"softbus.device",
        b"ct" => b"60",
        _ => return false,
    };
    match value.strip_suffix(b"*") {
        Some(prefix) => attribute.starts_with(prefix),
        None => attribute == value,
    }
}

/// True if the request's Uri-Path is exactly `path`, compared as bytes.
fn path_is(request: &CoapMessage, path: &[&str]) -> bool {
    let mut segments = request.options_with(OptionNumber::URI_PATH);
    path.iter()
        .all(|p| segments.next().is_some_and(|s| s.value() == p.as_bytes()))
        && segments.next().is_none()
}

/// The first critical option this server cannot honour (RFC 7252 section 5.4.1):
/// unrecognised, of a length outside its range (5.4.3), or a repeated
/// non-repeatable option (5.4.5).
fn unsupported_critical_option(request: &CoapMessage) -> Option<OptionNumber> {
    let mut seen: Vec<OptionNumber> = Vec::new();
    for option in &request.options {
        let number = option.number();
        if !number.is_critical() {
            continue; // Elective options may be ignored.
        }
        let (min, max, repeatable) = match number {
            OptionNumber::URI_HOST => (1, 255, false),
            OptionNumber::URI_PORT => (0, 2, false),
            OptionNumber::URI_PATH | OptionNumber::URI_QUERY => (0, 255, true),
            OptionNumber::ACCEPT => (0, 2, false),
            OptionNumber::PROXY_URI => (1, 1034, false),
            OptionNumber::PROXY_SCHEME => (1, 255, false),
            _ => return Some(number),
        };
        let len = option.value().len();
        if len < min || len > max || (!repeatable && seen.contains(&number)) {
            return Some(number);
        }
        seen.push(number);
    }
    None
}

/// A client's discovery request: a Non-confirmable `GET /softbus/v1/device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    message_id: u16,
    token: [u8; 4],
    cap_filter: Option<String>,
}

impl Probe {
    /// A probe with the given Message ID and token, optionally asking only for
    /// devices with capability kind `cap_filter` (1 to [`MAX_CAP_FILTER_LEN`] bytes).
    pub fn new(
        message_id: u16,
        token: [u8; 4],
        cap_filter: Option<&str>,
    ) -> Result<Probe, DiscoveryError> {
        if let Some(kind) = cap_filter {
            if kind.is_empty() || kind.len() > MAX_CAP_FILTER_LEN {
                return Err(DiscoveryError::InvalidCapFilter { len: kind.len() });
            }
        }
        Ok(Probe {
            message_id,
            token,
            cap_filter: cap_filter.map(str::to_owned),
        })
    }

    /// The probe's Message ID.
    pub fn message_id(&self) -> u16 {
        self.message_id
    }

    /// The probe's token, which every answer echoes.
    pub fn token(&self) -> [u8; 4] {
        self.token
    }

    /// The capability kind asked for, if any.
    pub fn cap_filter(&self) -> Option<&str> {
        self.cap_filter.as_deref()
    }

    /// The request as a CoAP message.
    pub fn to_message(&self) -> CoapMessage {
        let mut message = CoapMessage::new(MessageType::NonConfirmable, Code::GET, self.message_id)
            .with_token(Token::from(self.token));
        for segment in DEVICE_PATH {
            // Constant segments, well under the 255-byte limit.
            let _ = message.push_uri_path(segment);
        }
        if let Some(kind) = &self.cap_filter {
            // Probe::new bounded the kind so the query fits in 255 bytes.
            let _ = message.push_uri_query(&format!("{CAP_QUERY_PREFIX}{kind}"));
        }
        message
    }

    /// The request datagram.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_message().to_bytes()
    }

    /// Reads one answer to this probe; see [`parse_response`].
    pub fn parse_response(&self, datagram: &[u8]) -> Result<Advert, DiscoveryError> {
        parse_response(datagram, &self.token)
    }
}

/// Reads a device's answer to a probe whose token was `expected_token`.
///
/// Accepts a 2.05 Content response of any type but Reset (NON, piggybacked ACK,
/// or a separate CON) with the same token, Content-Format 60, and a valid advert
/// whose `id` derives from its `pk`.
pub fn parse_response(datagram: &[u8], expected_token: &[u8]) -> Result<Advert, DiscoveryError> {
    let message = CoapMessage::parse(datagram)?;
    if message.msg_type == MessageType::Reset {
        return Err(DiscoveryError::Reset);
    }
    if message.token.as_bytes() != expected_token {
        return Err(DiscoveryError::TokenMismatch {
            expected: expected_token.to_vec(),
            received: message.token.as_bytes().to_vec(),
        });
    }
    if message.code != Code::CONTENT {
        return Err(DiscoveryError::UnexpectedCode(message.code));
    }
    let format = message.content_format()?;
    if format != Some(ContentFormat::CBOR) {
        return Err(DiscoveryError::UnexpectedContentFormat(format.map(|f| f.0)));
    }
    if message.payload.is_empty() {
        return Err(DiscoveryError::MissingPayload);
    }
    let advert = Advert::from_cbor(&message.payload)?;
    advert.check_device_id()?;
    Ok(advert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::coap::CoapOption;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn advert() -> Advert {
        let mut a = Advert::new([7; 32], "living-room speaker", "speaker", 40_000);
        a.caps = vec!["speaker".into(), "microphone".into()];
        a.pair = true;
        a
    }

    fn peer() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 50_000)
    }

    fn responder() -> Responder {
        Responder::new(advert()).with_first_message_id(0x1000)
    }

    fn request(ty: MessageType, code: Code, mid: u16, path: &str) -> CoapMessage {
        let mut m =
            CoapMessage::new(ty, code, mid).with_token(Token::from([0xA1, 0xB2, 0xC3, 0xD4]));
        m.push_uri_path(path).unwrap();
        m
    }

    /// Sends `m` unicast and returns the parsed answer.
    fn ask(r: &mut Responder, m: &CoapMessage) -> Option<CoapMessage> {
        let now = Instant::now();
        let out = r.handle_request(now, peer(), &m.to_bytes(), false, Duration::from_millis(50))?;
        assert_eq!(out.to, peer());
        assert_eq!(out.send_at, now, "unicast answers go out at once");
        Some(CoapMessage::parse(&out.datagram).unwrap())
    }

    fn ask_multicast(
        r: &mut Responder,
        m: &CoapMessage,
        leisure: Duration,
    ) -> Option<(Duration, CoapMessage)> {
        let now = Instant::now();
        let out = r.handle_request(now, peer(), &m.to_bytes(), true, leisure)?;
        Some((
            out.send_at - now,
            CoapMessage::parse(&out.datagram).unwrap(),
        ))
    }

    #[test]
    fn device_id_matches_fixed_vectors() {
        // Computed independently: sha256(b"softbus/1 device-id" + pk)[:8].
        assert_eq!(
            hex(&device_id_from_public_key(&[0; 32])),
            "70ba1f59b3a0aab4"
        );
        let mut pk = [0u8; 32];
        for (i, b) in pk.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(hex(&device_id_from_public_key(&pk)), "bb910dce1f1c872d");
    }

    #[test]
    fn advert_round_trips() {
        let a = advert();
        let bytes = a.to_cbor();
        assert_eq!(Advert::from_cbor(&bytes).unwrap(), a);
        a.check_device_id().unwrap();
    }

    #[test]
    fn advert_encoding_is_core_deterministic() {
        let a = advert();
        // Build the same map with ciborium, keys in RFC 8949 section 4.2.1 order.
        let text = |s: &str| Value::Text(s.to_owned());
        let map = Value::Map(vec![
            (text("v"), Value::Integer(1.into())),
            (text("hb"), Value::Integer(a.hb.into())),
            (text("id"), Value::Bytes(a.id.to_vec())),
            (text("pk"), Value::Bytes(a.pk.to_vec())),
            (text("pt"), Value::Integer(a.pt.into())),
            (
                text("caps"),
                Value::Array(a.caps.iter().map(|c| text(c)).collect()),
            ),
            (text("name"), text(&a.name)),
            (text("pair"), Value::Bool(a.pair)),
            (text("port"), Value::Integer(a.port.into())),
            (text("type"), text(&a.device_type)),
        ]);
        let mut expected = Vec::new();
        ciborium::ser::into_writer(&map, &mut expected).unwrap();
        assert_eq!(a.to_cbor(), expected);
        // Encoded keys are in strictly increasing bytewise order.
        let encoded: Vec<Vec<u8>> = CANONICAL_KEYS
            .iter()
            .map(|k| {
                let mut out = Vec::new();
                cbor_text(&mut out, k);
                out
            })
            .collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn cbor_heads_are_shortest() {
        let head = |n: u64| {
            let mut out = Vec::new();
            cbor_head(&mut out, MAJOR_UINT, n);
            out
        };
        assert_eq!(head(23), [0x17]);
        assert_eq!(head(24), [0x18, 24]);
        assert_eq!(head(255), [0x18, 0xFF]);
        assert_eq!(head(256), [0x19, 1, 0]);
        assert_eq!(head(65_536), [0x1A, 0, 1, 0, 0]);
        assert_eq!(
            head(u64::from(u32::MAX) + 1),
            [0x1B, 0, 0, 0, 1, 0, 0, 0, 0]
        );
    }

    /// The advert as a ciborium map, to tamper with.
    fn advert_map() -> Vec<(Value, Value)> {
        match ciborium::de::from_reader::<Value, _>(advert().to_cbor().as_slice()).unwrap() {
            Value::Map(m) => m,
            _ => unreachable!(),
        }
    }

    fn encode(map: Vec<(Value, Value)>) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(&Value::Map(map), &mut out).unwrap();
        out
    }

    fn with_field(key: &str, value: Value) -> Vec<u8> {
        let mut map = advert_map();
        for entry in &mut map {
            if entry.0 == Value::Text(key.into()) {
                entry.1 = value.clone();
            }
        }
        encode(map)
    }

    fn without_field(key: &str) -> Vec<u8> {
        let mut map = advert_map();
        map.retain(|(k, _)| *k != Value::Text(key.into()));
        encode(map)
    }

    #[test]
    fn advert_errors_name_the_field() {
        use DiscoveryError as E;
        let cases: Vec<(Vec<u8>, DiscoveryError)> = vec![
            (
                with_field("v", Value::Integer(2.into())),
                E::UnsupportedVersion(2),
            ),
            (
                with_field("v", Value::Integer(1000.into())),
                E::OutOfRange {
                    field: "v",
                    value: 1000,
                    max: 255,
                },
            ),
            (
                with_field("id", Value::Bytes(vec![0; 7])),
                E::WrongSize {
                    field: "id",
                    expected: 8,
                    actual: 7,
                },
            ),
            (
                with_field("pk", Value::Bytes(vec![0; 33])),
                E::WrongSize {
                    field: "pk",
                    expected: 32,
                    actual: 33,
                },
            ),
            (
                with_field("pk", Value::Text("key".into())),
                E::WrongType {
                    field: "pk",
                    expected: "bstr",
                    found: "tstr",
                },
            ),
            (
                with_field("name", Value::Bytes(vec![])),
                E::WrongType {
                    field: "name",
                    expected: "tstr",
                    found: "bstr",
                },
            ),
            (
                with_field("port", Value::Integer(65_536.into())),
                E::OutOfRange {
                    field: "port",
                    value: 65_536,
                    max: 65_535,
                },
            ),
            (
                with_field("hb", Value::Integer((-1).into())),
                E::OutOfRange {
                    field: "hb",
                    value: -1,
                    max: u64::from(u32::MAX),
                },
            ),
            (
                with_field("pt", Value::Float(1.5)),
                E::WrongType {
                    field: "pt",
                    expected: "uint",
                    found: "float",
                },
            ),
            (
                with_field("pair", Value::Integer(1.into())),
                E::WrongType {
                    field: "pair",
                    expected: "bool",
                    found: "uint",
                },
            ),
            (
                with_field("caps", Value::Array(vec![Value::Integer(3.into())])),
                E::WrongType {
                    field: "caps",
                    expected: "an array of tstr",
                    found: "uint",
                },
            ),
            (
                with_field("caps", Value::Text("camera".into())),
                E::WrongType {
                    field: "caps",
                    expected: "an array of tstr",
                    found: "tstr",
                },
            ),
            (without_field("type"), E::MissingField("type")),
            (without_field("v"), E::MissingField("v")),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                Advert::from_cbor(&bytes),
                Err(expected.clone()),
                "{expected}"
            );
        }
    }

    #[test]
    fn advert_rejects_duplicates_trailing_bytes_and_non_maps() {
        let mut map = advert_map();
        map.push((Value::Text("name".into()), Value::Text("again".into())));
        assert_eq!(
            Advert::from_cbor(&encode(map)),
            Err(DiscoveryError::DuplicateField("name"))
        );
        let mut bytes = advert().to_cbor();
        bytes.push(0x00);
        assert_eq!(
            Advert::from_cbor(&bytes),
            Err(DiscoveryError::TrailingBytes(1))
        );
        assert_eq!(
            Advert::from_cbor(&[0x80]),
            Err(DiscoveryError::NotAMap("array"))
        );
        assert!(matches!(
            Advert::from_cbor(&[]),
            Err(DiscoveryError::Cbor(_))
        ));
        assert!(matches!(
            Advert::from_cbor(&[0xA1, 0x61]),
            Err(DiscoveryError::Cbor(_))
        ));
    }

    #[test]
    fn advert_ignores_unknown_keys() {
        let mut map = advert_map();
        map.push((Value::Text("future".into()), Value::Array(vec![])));
        map.push((Value::Integer(7.into()), Value::Null));
        assert_eq!(Advert::from_cbor(&encode(map)).unwrap(), advert());
    }

    #[test]
    fn device_id_mismatch_is_reported() {
        let mut a = advert();
        a.id[0] ^= 1;
        let err = a.check_device_id().unwrap_err();
        assert!(matches!(err, DiscoveryError::DeviceIdMismatch { .. }));
        assert!(err.to_string().contains(&hex(&a.id)), "{err}");
    }

    #[test]
    fn get_device_con_is_answered_with_piggybacked_ack() {
        let mut r = responder();
        let req = request(
            MessageType::Confirmable,
            Code::GET,
            0x4242,
            "/softbus/v1/device",
        );
        let resp = ask(&mut r, &req).unwrap();
        assert_eq!(resp.msg_type, MessageType::Acknowledgement);
        assert_eq!(resp.message_id, 0x4242);
        assert_eq!(resp.token, req.token);
        assert_eq!(resp.code, Code::CONTENT);
        assert_eq!(resp.content_format(), Ok(Some(ContentFormat::CBOR)));
        assert_eq!(Advert::from_cbor(&resp.payload).unwrap(), advert());
        assert_eq!(
            r.next_message_id(),
            0x1000,
            "piggybacked answers use the request's ID"
        );
    }

    #[test]
    fn get_device_non_is_answered_with_non_from_the_counter() {
        let mut r = responder().with_first_message_id(0xFFFF);
        let req = request(
            MessageType::NonConfirmable,
            Code::GET,
            0x4242,
            "softbus/v1/device",
        );
        let first = ask(&mut r, &req).unwrap();
        let second = ask(&mut r, &req).unwrap();
        assert_eq!(first.msg_type, MessageType::NonConfirmable);
        assert_eq!(first.message_id, 0xFFFF);
        assert_eq!(second.message_id, 0x0000, "the counter wraps");
        assert_eq!(first.token, req.token);
        assert_eq!(first.code, Code::CONTENT);
        assert_eq!(first.payload, advert().to_cbor());
    }

    #[test]
    fn multicast_answers_wait_for_the_leisure() {
        let mut r = responder();
        let req = request(
            MessageType::NonConfirmable,
            Code::GET,
            1,
            "softbus/v1/device",
        );
        let (delay, resp) = ask_multicast(&mut r, &req, Duration::from_millis(37)).unwrap();
        assert_eq!(delay, Duration::from_millis(37));
        assert_eq!(resp.code, Code::CONTENT);
        let (delay, _) = ask_multicast(&mut r, &req, Duration::from_secs(5)).unwrap();
        assert_eq!(delay, MAX_LEISURE, "leisure is capped at 100 ms");
    }

    #[test]
    fn cap_filter_selects_devices() {
        let mut r = responder();
        let mut matching = request(
            MessageType::NonConfirmable,
            Code::GET,
            1,
            "softbus/v1/device",
        );
        matching.push_uri_query("cap=microphone").unwrap();
        matching.push_uri_query("other=ignored").unwrap();
        assert_eq!(ask(&mut r, &matching).unwrap().code, Code::CONTENT);
        assert!(ask_multicast(&mut r, &matching, Duration::ZERO).is_some());

        let mut missing = request(
            MessageType::NonConfirmable,
            Code::GET,
            2,
            "softbus/v1/device",
        );
        missing.push_uri_query("cap=camera").unwrap();
        assert!(
            ask_multicast(&mut r, &missing, Duration::ZERO).is_none(),
            "MUST NOT answer multicast"
        );
        let resp = ask(&mut r, &missing).unwrap();
        assert_eq!(resp.code, Code::NOT_FOUND, "unicast says why");
        assert_eq!(resp.token, missing.token);

        let mut two = matching.clone();
        two.push_uri_query("cap=camera").unwrap();
        assert_eq!(
            ask(&mut r, &two).unwrap().code,
            Code::NOT_FOUND,
            "every filter must match"
        );

        let mut empty = request(
            MessageType::NonConfirmable,
            Code::GET,
            3,
            "softbus/v1/device",
        );
        empty.push_uri_query("cap=").unwrap();
        assert_eq!(ask(&mut r, &empty).unwrap().code, Code::BAD_REQUEST);
        assert!(ask_multicast(&mut r, &empty, Duration::ZERO).is_none());
        assert_eq!(r.malformed_count(), 0);
    }

    #[test]
    fn well_known_core_lists_the_device_resource() {
        let mut r = responder();
        let req = request(MessageType::Confirmable, Code::GET, 9, "/.well-known/core");
        let resp = ask(&mut r, &req).unwrap();
        assert_eq!(resp.code, Code::CONTENT);
        assert_eq!(resp.content_format(), Ok(Some(ContentFormat::LINK_FORMAT)));
        assert_eq!(resp.payload, CORE_LINK.as_bytes());
        assert_eq!(
            std::str::from_utf8(&resp.payload).unwrap(),
            r#"</softbus/v1/device>;rt="softbus.device";ct=60"#
        );
        assert!(ask_multicast(&mut r, &req.clone_as_non(), Duration::ZERO).is_some());
    }

    #[test]
    fn well_known_core_filters_by_link_attributes() {
        let mut r = responder();
        for (query, matches) in [
            ("rt=softbus.device", true),
            ("rt=softbus*", true),
            ("ct=60", true),
            ("href=/softbus/v1/device", true),
            ("rt=core.rd", false),
            ("ct=40", false),
            ("if=sensor", false),
            ("rt", false),
        ] {
            let mut req = request(
                MessageType::NonConfirmable,
                Code::GET,
                9,
                "/.well-known/core",
            );
            req.push_uri_query(query).unwrap();
            let resp = ask(&mut r, &req).unwrap();
            assert_eq!(resp.code, Code::CONTENT, "{query}");
            assert_eq!(resp.payload.is_empty(), !matches, "{query}");
            assert_eq!(
                ask_multicast(&mut r, &req, Duration::ZERO).is_some(),
                matches,
                "{query}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_not_found() {
        let mut r = responder();
        for path in [
            "/",
            "/softbus",
            "/softbus/v1",
            "/softbus/v1/device/",
            "/softbus/v2/device",
            "/SOFTBUS/v1/device",
        ] {
            for method in [Code::GET, Code::POST] {
                let req = request(MessageType::Confirmable, method, 5, path);
                let resp = ask(&mut r, &req).unwrap();
                assert_eq!(resp.code, Code::NOT_FOUND, "{method} {path}");
                assert_eq!(resp.message_id, 5);
                assert!(ask_multicast(&mut r, &req.clone_as_non(), Duration::ZERO).is_none());
            }
        }
    }

    #[test]
    fn other_methods_are_not_allowed() {
        let mut r = responder();
        for path in ["/softbus/v1/device", "/.well-known/core"] {
            for method in [
                Code::POST,
                Code::PUT,
                Code::DELETE,
                Code::FETCH,
                Code::IPATCH,
                Code::new(0, 31),
            ] {
                let req = request(MessageType::NonConfirmable, method, 5, path);
                let resp = ask(&mut r, &req).unwrap();
                assert_eq!(resp.code, Code::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_eq!(resp.token, req.token);
                assert!(ask_multicast(&mut r, &req, Duration::ZERO).is_none());
            }
        }
    }

    #[test]
    fn accept_must_match_the_resource() {
        let mut r = responder();
        let mut req = request(MessageType::Confirmable, Code::GET, 5, "/softbus/v1/device");
        req.set_accept(ContentFormat::CBOR);
        assert_eq!(ask(&mut r, &req).unwrap().code, Code::CONTENT);
        req.set_accept(ContentFormat::JSON);
        assert_eq!(ask(&mut r, &req).unwrap().code, Code::NOT_ACCEPTABLE);
    }

    #[test]
    fn critical_options_that_cannot_be_honoured() {
        let mut r = responder();
        let with = |number: u16, value: &[u8]| {
            let mut req = request(MessageType::Confirmable, Code::GET, 5, "/softbus/v1/device");
            req.push_option(CoapOption::new(OptionNumber(number), value).unwrap());
            req
        };
        // Block2 (unsupported), If-Match, an unknown critical option, a bad Uri-Host, a repeated Accept.
        let mut repeated = with(17, &[60]);
        repeated.push_option(CoapOption::new(OptionNumber::ACCEPT, vec![60]).unwrap());
        for req in [
            with(23, &[0x06]),
            with(1, b""),
            with(2049, b"x"),
            with(3, b""),
            repeated,
        ] {
            let resp = ask(&mut r, &req).unwrap();
            assert_eq!(resp.code, Code::BAD_OPTION);
            assert_eq!(resp.msg_type, MessageType::Acknowledgement);
            assert!(
                ask(&mut r, &req.clone_as_non()).is_none(),
                "a rejected NON is dropped"
            );
        }
        // Elective options are ignored; Uri-Host and Uri-Port are accepted.
        for req in [
            with(4, b"etag"),
            with(2048, b"x"),
            with(3, b"device.local"),
            with(7, &[0x16, 0x33]),
        ] {
            assert_eq!(ask(&mut r, &req).unwrap().code, Code::CONTENT);
        }
        assert_eq!(
            ask(&mut r, &with(35, b"coap://elsewhere/")).unwrap().code,
            Code::PROXYING_NOT_SUPPORTED
        );
        assert_eq!(r.malformed_count(), 0);
    }

    #[test]
    fn malformed_non_is_ignored_and_counted() {
        let mut r = responder();
        // NON, TKL 2, token truncated.
        assert!(r
            .handle_request(
                Instant::now(),
                peer(),
                &[0x52, 0x01, 0, 1, 0xAA],
                false,
                Duration::ZERO
            )
            .is_none());
        // Shorter than a header.
        assert!(r
            .handle_request(Instant::now(), peer(), &[0x50], false, Duration::ZERO)
            .is_none());
        assert!(r
            .handle_request(Instant::now(), peer(), &[], false, Duration::ZERO)
            .is_none());
        assert_eq!(r.malformed_count(), 3);
    }

    #[test]
    fn malformed_con_is_reset() {
        let mut r = responder();
        // CON GET, MID 0xBEEF, payload marker with no payload.
        let out = r
            .handle_request(
                Instant::now(),
                peer(),
                &[0x40, 0x01, 0xBE, 0xEF, 0xFF],
                false,
                Duration::ZERO,
            )
            .unwrap();
        assert_eq!(out.datagram, [0x70, 0x00, 0xBE, 0xEF]);
        // Reserved token length.
        let out = r
            .handle_request(
                Instant::now(),
                peer(),
                &[0x4A, 0x01, 0x00, 0x07],
                false,
                Duration::ZERO,
            )
            .unwrap();
        assert_eq!(
            CoapMessage::parse(&out.datagram).unwrap(),
            CoapMessage::reset(7)
        );
        // Never on multicast, never for another version.
        assert!(r
            .handle_request(
                Instant::now(),
                peer(),
                &[0x40, 0x01, 0xBE, 0xEF, 0xFF],
                true,
                Duration::ZERO
            )
            .is_none());
        assert!(r
            .handle_request(
                Instant::now(),
                peer(),
                &[0x80, 0x01, 0xBE, 0xEF],
                false,
                Duration::ZERO
            )
            .is_none());
        assert_eq!(r.malformed_count(), 4);
    }

    #[test]
    fn ping_is_reset_and_empty_non_is_malformed() {
        let mut r = responder();
        let resp = ask(
            &mut r,
            &CoapMessage::new(MessageType::Confirmable, Code::EMPTY, 77),
        )
        .unwrap();
        assert_eq!(resp, CoapMessage::reset(77));
        assert_eq!(r.malformed_count(), 0);
        assert!(ask(
            &mut r,
            &CoapMessage::new(MessageType::NonConfirmable, Code::EMPTY, 78)
        )
        .is_none());
        assert_eq!(r.malformed_count(), 1);
    }

    #[test]
    fn acks_resets_and_responses_are_not_answered() {
        let mut r = responder();
        let mut content = request(MessageType::NonConfirmable, Code::CONTENT, 1, "");
        content.payload = advert().to_cbor();
        for m in [
            CoapMessage::empty_ack(1),
            CoapMessage::reset(1),
            request(MessageType::Acknowledgement, Code::CONTENT, 1, ""),
            request(
                MessageType::Acknowledgement,
                Code::GET,
                1,
                "softbus/v1/device",
            ),
            request(MessageType::Reset, Code::GET, 1, "softbus/v1/device"),
            content.clone(),
        ] {
            assert!(ask(&mut r, &m).is_none(), "{m:?}");
        }
        assert_eq!(r.malformed_count(), 0);
        // A Confirmable response we never asked for is rejected.
        content.msg_type = MessageType::Confirmable;
        assert_eq!(ask(&mut r, &content).unwrap(), CoapMessage::reset(1));
    }

    #[test]
    fn reserved_classes_and_multicast_con_are_malformed() {
        let mut r = responder();
        let reserved = request(
            MessageType::Confirmable,
            Code::new(7, 1),
            3,
            "softbus/v1/device",
        );
        assert_eq!(ask(&mut r, &reserved).unwrap(), CoapMessage::reset(3));
        assert!(ask(&mut r, &reserved.clone_as_non()).is_none());
        let con = request(MessageType::Confirmable, Code::GET, 4, "softbus/v1/device");
        assert!(ask_multicast(&mut r, &con, Duration::ZERO).is_none());
        assert_eq!(r.malformed_count(), 3);
    }

    #[test]
    fn set_advert_changes_the_answer() {
        let mut r = responder();
        let mut a = advert();
        a.pair = false;
        a.caps.push("camera".into());
        r.set_advert(a.clone());
        assert_eq!(r.advert(), &a);
        let mut req = request(
            MessageType::NonConfirmable,
            Code::GET,
            1,
            "softbus/v1/device",
        );
        req.push_uri_query("cap=camera").unwrap();
        assert_eq!(
            Advert::from_cbor(&ask(&mut r, &req).unwrap().payload).unwrap(),
            a
        );
    }

    #[test]
    fn probe_is_a_non_get_for_the_device() {
        let probe = Probe::new(0x0102, [1, 2, 3, 4], Some("camera")).unwrap();
        let m = CoapMessage::parse(&probe.to_bytes()).unwrap();
        assert_eq!(m.msg_type, MessageType::NonConfirmable);
        assert_eq!(m.code, Code::GET);
        assert_eq!(m.message_id, 0x0102);
        assert_eq!(m.token.as_bytes(), &[1, 2, 3, 4]);
        assert_eq!(m.uri_path().unwrap(), DEVICE_PATH);
        assert_eq!(m.uri_query().unwrap(), vec!["cap=camera"]);
        assert!(m.payload.is_empty());
        // Golden bytes: NON GET tkl 4, Uri-Path softbus/v1/device, Uri-Query cap=camera.
        let plain = Probe::new(0x0102, [1, 2, 3, 4], None).unwrap();
        let mut expected = vec![0x54, 0x01, 0x01, 0x02, 1, 2, 3, 4, 0xB7];
        expected.extend_from_slice(b"softbus");
        expected.push(0x02);
        expected.extend_from_slice(b"v1");
        expected.push(0x06);
        expected.extend_from_slice(b"device");
        assert_eq!(plain.to_bytes(), expected);

        assert_eq!(
            Probe::new(1, [0; 4], Some("")),
            Err(DiscoveryError::InvalidCapFilter { len: 0 })
        );
        assert!(Probe::new(1, [0; 4], Some(&"x".repeat(MAX_CAP_FILTER_LEN))).is_ok());
        assert!(Probe::new(1, [0; 4], Some(&"x".repeat(MAX_CAP_FILTER_LEN + 1))).is_err());
    }

    #[test]
    fn probe_and_responder_talk() {
        let mut r = responder();
        let probe = Probe::new(9, [9, 8, 7, 6], Some("speaker")).unwrap();
        let out = r
            .handle_request(
                Instant::now(),
                peer(),
                &probe.to_bytes(),
                true,
                Duration::from_millis(3),
            )
            .unwrap();
        assert_eq!(probe.parse_response(&out.datagram).unwrap(), advert());
        let other = Probe::new(9, [1, 1, 1, 1], None).unwrap();
        assert!(matches!(
            other.parse_response(&out.datagram),
            Err(DiscoveryError::TokenMismatch { .. })
        ));
        let camera = Probe::new(10, [5; 4], Some("camera")).unwrap();
        assert!(r
            .handle_request(
                Instant::now(),
                peer(),
                &camera.to_bytes(),
                true,
                Duration::ZERO
            )
            .is_none());
        let out = r
            .handle_request(
                Instant::now(),
                peer(),
                &camera.to_bytes(),
                false,
                Duration::ZERO,
            )
            .unwrap();
        assert_eq!(
            camera.parse_response(&out.datagram),
            Err(DiscoveryError::UnexpectedCode(Code::NOT_FOUND))
        );
    }

    #[test]
    fn parse_response_checks_everything() {
        let token = [1, 2, 3, 4];
        let good = || {
            let mut m = CoapMessage::new(MessageType::NonConfirmable, Code::CONTENT, 1)
                .with_token(Token::from(token))
                .with_payload(advert().to_cbor());
            m.set_content_format(ContentFormat::CBOR);
            m
        };
        assert_eq!(parse_response(&good().to_bytes(), &token), Ok(advert()));
        assert_eq!(
            parse_response(&CoapMessage::reset(1).to_bytes(), &token),
            Err(DiscoveryError::Reset)
        );
        assert!(matches!(
            parse_response(&[0x50], &token),
            Err(DiscoveryError::Coap(_))
        ));

        let mut m = good();
        m.set_content_format(ContentFormat::JSON);
        assert_eq!(
            parse_response(&m.to_bytes(), &token),
            Err(DiscoveryError::UnexpectedContentFormat(Some(50)))
        );
        m.options.clear();
        assert_eq!(
            parse_response(&m.to_bytes(), &token),
            Err(DiscoveryError::UnexpectedContentFormat(None))
        );

        let mut m = good();
        m.payload.clear();
        assert_eq!(
            parse_response(&m.to_bytes(), &token),
            Err(DiscoveryError::MissingPayload)
        );

        let mut a = advert();
        a.id = [0; 8];
        let m = good().with_payload(a.to_cbor());
        assert!(matches!(
            parse_response(&m.to_bytes(), &token),
            Err(DiscoveryError::DeviceIdMismatch { .. })
        ));

        let mut a = advert();
        a.v = 3;
        let m = good().with_payload(a.to_cbor());
        assert_eq!(
            parse_response(&m.to_bytes(), &token),
            Err(DiscoveryError::UnsupportedVersion(3))
        );
    }

    #[test]
    fn error_messages_read_well() {
        let e = DiscoveryError::WrongSize {
            field: "pk",
            expected: 32,
            actual: 31,
        };
        assert_eq!(
            e.to_string(),
            "advert field \"pk\" must be 32 bytes, found 31"
        );
        let e = DiscoveryError::UnexpectedCode(Code::NOT_FOUND);
        assert_eq!(e.to_string(), "expected a 2.05 Content response, got 4.04");
    }

    trait CloneAsNon {
        fn clone_as_non(&self) -> CoapMessage;
    }

    impl CloneAsNon for CoapMessage {
        fn clone_as_non(&self) -> CoapMessage {
            let mut m = self.clone();
            m.msg_type = MessageType::NonConfirmable;
            m
        }
    }

    fn arb_advert() -> impl Strategy<Value = Advert> {
        (
            any::<[u8; 32]>(),
            ".{0,40}",
            "[a-z]{0,12}",
            proptest::collection::vec("[a-z_]{1,12}", 0..6),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
        )
            .prop_map(|(pk, name, device_type, caps, port, hb, pt, pair)| {
                let mut a = Advert::new(pk, name, device_type, port);
                a.caps = caps;
                a.hb = hb;
                a.pt = pt;
                a.pair = pair;
                a
            })
    }

    fn arb_request() -> impl Strategy<Value = Vec<u8>> {
        (
            0u8..4,
            prop_oneof![
                Just(Code::GET),
                Just(Code::POST),
                any::<u8>().prop_map(Code)
            ],
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..=8),
            prop_oneof![
                Just("/softbus/v1/device"),
                Just("/.well-known/core"),
                Just("/softbus"),
                Just(""),
            ],
            proptest::collection::vec(
                (
                    prop_oneof![Just(15u16), Just(17), Just(3), Just(23), any::<u16>()],
                    proptest::collection::vec(any::<u8>(), 0..20),
                ),
                0..4,
            ),
        )
            .prop_map(|(ty, code, mid, token, path, options)| {
                let mut m = CoapMessage::new(MessageType::from_bits(ty), code, mid);
                if code.is_empty() {
                    return m.to_bytes(); // An Empty message carries nothing else.
                }
                m.token = Token::new(&token).unwrap();
                m.push_uri_path(path).unwrap();
                for (n, v) in options {
                    m.push_option(CoapOption::new(OptionNumber(n), v).unwrap());
                }
                m.to_bytes()
            })
    }

    proptest! {
        #[test]
        fn advert_round_trips_for_any_advert(a in arb_advert()) {
            let bytes = a.to_cbor();
            prop_assert_eq!(Advert::from_cbor(&bytes).unwrap(), a.clone());
            let mut m = CoapMessage::new(MessageType::Acknowledgement, Code::CONTENT, 1)
                .with_token(Token::from([1, 2, 3, 4]))
                .with_payload(bytes);
            m.set_content_format(ContentFormat::CBOR);
            prop_assert_eq!(parse_response(&m.to_bytes(), &[1, 2, 3, 4]).unwrap(), a);
        }

        #[test]
        fn from_cbor_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Advert::from_cbor(&bytes);
            let _ = parse_response(&bytes, &[1, 2, 3, 4]);
        }

        #[test]
        fn from_cbor_never_panics_on_mutated_adverts(
            a in arb_advert(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = a.to_cbor();
            for (index, byte) in flips {
                let i = index.index(bytes.len());
                bytes[i] = byte;
            }
            let _ = Advert::from_cbor(&bytes);
        }

        #[test]
        fn responder_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            multicast in any::<bool>(),
            leisure_ms in 0u64..1000,
        ) {
            let mut r = responder();
            let now = Instant::now();
            if let Some(out) = r.handle_request(now, peer(), &bytes, multicast, Duration::from_millis(leisure_ms)) {
                prop_assert!(CoapMessage::parse(&out.datagram).is_ok());
                prop_assert!(out.send_at >= now && out.send_at <= now + MAX_LEISURE);
            }
        }

        #[test]
        fn responder_answers_well_formed_requests_sanely(
            bytes in arb_request(),
            multicast in any::<bool>(),
        ) {
            let mut r = responder();
            let request = CoapMessage::parse(&bytes).unwrap();
            if let Some(out) = r.handle_request(Instant::now(), peer(), &bytes, multicast, Duration::ZERO) {
                let resp = CoapMessage::parse(&out.datagram).unwrap();
                match resp.msg_type {
                    MessageType::Reset => {
                        prop_assert!(!multicast);
                        prop_assert_eq!(resp.message_id, request.message_id);
                    }
                    MessageType::Acknowledgement => {
                        prop_assert_eq!(request.msg_type, MessageType::Confirmable);
                        prop_assert_eq!(resp.message_id, request.message_id);
                        prop_assert_eq!(resp.token, request.token);
                    }
                    MessageType::NonConfirmable => {
                        prop_assert_eq!(request.msg_type, MessageType::NonConfirmable);
                        prop_assert_eq!(resp.token, request.token);
                    }
                    MessageType::Confirmable => prop_assert!(false, "never sends CON"),
                }
                if multicast {
                    prop_assert_eq!(resp.code, Code::CONTENT);
                    prop_assert!(!resp.payload.is_empty());
                }
            }
        }
    }
}
