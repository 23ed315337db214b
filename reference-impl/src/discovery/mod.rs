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
mod tests;
