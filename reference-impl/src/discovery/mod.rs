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

mod advert;
mod probe;
mod responder;

pub use advert::Advert;
pub use probe::{parse_response, Probe};
pub use responder::{Responder, ResponderOutput};

#[cfg(test)]
mod tests;
