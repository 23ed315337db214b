//! CoAP (RFC 7252) message codec, used by SoftBus discovery on IP.
//!
//! The layout follows smoltcp's `wire` modules: [`CoapHeader`] reads the fixed
//! 4-byte header alone (enough to answer a malformed Confirmable message with a
//! Reset), and [`CoapMessage`] is the high-level representation with
//! [`CoapMessage::parse`], [`CoapMessage::emit`] and [`CoapMessage::buffer_len`].
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver| T |  TKL  |      Code     |          Message ID           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Token (if any, TKL bytes) ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Options (if any) ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |1 1 1 1 1 1 1 1|    Payload (if any) ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! # What the codec checks, and what it leaves to the endpoint
//!
//! [`CoapMessage::parse`] rejects exactly the *message format errors* of RFC 7252
//! section 3: a datagram shorter than the header, a version other than 1, a
//! reserved token length (9 to 15), a truncated token or option, the reserved
//! nibble 15 in an option delta or length (other than in the payload marker
//! `0xFF`), an option number above 65535, a payload marker followed by no
//! payload, and an Empty message (code 0.00) that carries anything after its
//! Message ID. It does not judge whether a type and code make sense together
//! (a Reset carrying a request, a response on a Confirmable message...): that
//! is the endpoint's business, and the conformance suite needs to build and read
//! such messages.
//!
//! The encoding of a message is unique (an extended delta or length form can only
//! carry values its shorter forms cannot), so for every byte string `b` that
//! parses, `parse(b)?.emit()` gives back `b` exactly.
//!
//! # Panics
//!
//! Nothing here panics, whatever the input: parsing returns a [`CoapError`], and
//! every [`CoapMessage`] can be emitted because the types that could hold
//! unencodable values ([`Token`], [`CoapOption`]) check their length when built.
//! `emit` writes whatever it is given, including messages that `parse` would
//! reject (an Empty message with a token, say), so tests can build bad frames.

use core::fmt;

use thiserror::Error;

/// The only CoAP version defined (RFC 7252 section 3).
pub const VERSION: u8 = 1;

/// Length of the fixed header: version, type, token length, code, message ID.
pub const HEADER_LEN: usize = 4;

/// Longest token (RFC 7252 section 3: token lengths 9 to 15 are reserved).
pub const MAX_TOKEN_LEN: usize = 8;

/// The byte that separates the options from a non-empty payload.
pub const PAYLOAD_MARKER: u8 = 0xFF;

/// Longest option value the option length field can encode (269 + 65535).
pub const MAX_OPTION_VALUE_LEN: usize = 269 + 0xFFFF;

/// Longest value of a CoAP `uint` option (4 bytes, RFC 7252 section 3.2).
pub const MAX_UINT_OPTION_LEN: usize = 4;

/// Why bytes are not a CoAP message, or why a value cannot be put in one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CoapError {
    /// The datagram is shorter than the 4-byte fixed header.
    #[error("CoAP message of {len} bytes is shorter than the 4-byte header")]
    TruncatedHeader {
        /// Length of the datagram.
        len: usize,
    },
    /// The version field is not 1; RFC 7252 says such messages are silently ignored.
    #[error("unsupported CoAP version {0} (only version 1 is defined)")]
    UnsupportedVersion(u8),
    /// The token length field holds a reserved value (9 to 15).
    #[error("token length {0} is reserved (CoAP tokens are 0 to 8 bytes)")]
    ReservedTokenLength(u8),
    /// A part of the message runs past the end of the datagram.
    #[error(
        "CoAP message truncated: {what} at offset {offset} needs {needed} bytes, {available} left"
    )]
    Truncated {
        /// The part that is cut short ("token", "option value", ...).
        what: &'static str,
        /// Offset of that part in the datagram.
        offset: usize,
        /// Bytes that part needs.
        needed: usize,
        /// Bytes that are left in the datagram.
        available: usize,
    },
    /// An option header uses the reserved nibble 15 in its delta (and is not the payload marker).
    #[error("option header at offset {offset} uses the reserved delta nibble 15")]
    ReservedOptionDelta {
        /// Offset of the option header byte.
        offset: usize,
    },
    /// An option header uses the reserved nibble 15 in its length.
    #[error("option header at offset {offset} uses the reserved length nibble 15")]
    ReservedOptionLength {
        /// Offset of the option header byte.
        offset: usize,
    },
    /// The option deltas add up to a number above 65535.
    #[error(
        "option at offset {offset} has number {number}, above the largest option number 65535"
    )]
    OptionNumberTooLarge {
        /// Offset of the option header byte.
        offset: usize,
        /// The number the deltas add up to.
        number: u32,
    },
    /// A payload marker ends the datagram: RFC 7252 makes that a format error.
    #[error("payload marker 0xFF at offset {offset} is followed by an empty payload")]
    EmptyPayloadAfterMarker {
        /// Offset of the marker.
        offset: usize,
    },
    /// An Empty message (code 0.00) has a token, options or a payload.
    #[error("Empty message (code 0.00) has token length {token_len} and {len} bytes in all; it must be exactly the 4-byte header")]
    NonEmptyEmptyMessage {
        /// The token length field.
        token_len: u8,
        /// Length of the datagram.
        len: usize,
    },
    /// A token longer than 8 bytes was given to [`Token::new`].
    #[error("token of {0} bytes is longer than the 8 bytes CoAP allows")]
    TokenTooLong(usize),
    /// An option value is longer than an option can encode, or than its option allows.
    #[error("option {number} value of {len} bytes exceeds its maximum of {max} bytes")]
    OptionValueTooLong {
        /// The option number.
        number: u16,
        /// Length of the value.
        len: usize,
        /// Largest allowed length.
        max: usize,
    },
    /// A string option (Uri-Path, Uri-Query...) is not UTF-8.
    #[error("option {number} value is not valid UTF-8")]
    InvalidUtf8 {
        /// The option number.
        number: u16,
    },
}

/// The 2-bit message type (RFC 7252 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// CON: needs an acknowledgement.
    Confirmable = 0,
    /// NON: needs no acknowledgement.
    NonConfirmable = 1,
    /// ACK: acknowledges a Confirmable message, possibly with a piggybacked response.
    Acknowledgement = 2,
    /// RST: says a message was received but could not be processed.
    Reset = 3,
}

impl MessageType {
    /// The type held by the two low bits of `bits` (every value is a type).
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => Self::Confirmable,
            1 => Self::NonConfirmable,
            2 => Self::Acknowledgement,
            _ => Self::Reset,
        }
    }

    /// The short name RFC 7252 uses: "CON", "NON", "ACK" or "RST".
    pub const fn abbreviation(self) -> &'static str {
        match self {
            Self::Confirmable => "CON",
            Self::NonConfirmable => "NON",
            Self::Acknowledgement => "ACK",
            Self::Reset => "RST",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.abbreviation())
    }
}

/// A method or response code: 3-bit class and 5-bit detail, written `c.dd`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u8);

impl Code {
    /// 0.00: an Empty message (ping, empty ACK, RST).
    pub const EMPTY: Code = Code::new(0, 0);
    /// 0.01 GET.
    pub const GET: Code = Code::new(0, 1);
    /// 0.02 POST.
    pub const POST: Code = Code::new(0, 2);
    /// 0.03 PUT.
    pub const PUT: Code = Code::new(0, 3);
    /// 0.04 DELETE.
    pub const DELETE: Code = Code::new(0, 4);
    /// 0.05 FETCH (RFC 8132).
    pub const FETCH: Code = Code::new(0, 5);
    /// 0.06 PATCH (RFC 8132).
    pub const PATCH: Code = Code::new(0, 6);
    /// 0.07 iPATCH (RFC 8132).
    pub const IPATCH: Code = Code::new(0, 7);
    /// 2.01 Created.
    pub const CREATED: Code = Code::new(2, 1);
    /// 2.02 Deleted.
    pub const DELETED: Code = Code::new(2, 2);
    /// 2.03 Valid.
    pub const VALID: Code = Code::new(2, 3);
    /// 2.04 Changed.
    pub const CHANGED: Code = Code::new(2, 4);
    /// 2.05 Content.
    pub const CONTENT: Code = Code::new(2, 5);
    /// 2.31 Continue (RFC 7959).
    pub const CONTINUE: Code = Code::new(2, 31);
    /// 4.00 Bad Request.
    pub const BAD_REQUEST: Code = Code::new(4, 0);
    /// 4.01 Unauthorized.
    pub const UNAUTHORIZED: Code = Code::new(4, 1);
    /// 4.02 Bad Option.
    pub const BAD_OPTION: Code = Code::new(4, 2);
    /// 4.03 Forbidden.
    pub const FORBIDDEN: Code = Code::new(4, 3);
    /// 4.04 Not Found.
    pub const NOT_FOUND: Code = Code::new(4, 4);
    /// 4.05 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Code = Code::new(4, 5);
    /// 4.06 Not Acceptable.
    pub const NOT_ACCEPTABLE: Code = Code::new(4, 6);
    /// 4.08 Request Entity Incomplete (RFC 7959).
    pub const REQUEST_ENTITY_INCOMPLETE: Code = Code::new(4, 8);
    /// 4.09 Conflict (RFC 8132).
    pub const CONFLICT: Code = Code::new(4, 9);
    /// 4.12 Precondition Failed.
    pub const PRECONDITION_FAILED: Code = Code::new(4, 12);
    /// 4.13 Request Entity Too Large.
    pub const REQUEST_ENTITY_TOO_LARGE: Code = Code::new(4, 13);
    /// 4.15 Unsupported Content-Format.
    pub const UNSUPPORTED_CONTENT_FORMAT: Code = Code::new(4, 15);
    /// 4.22 Unprocessable Entity (RFC 8132).
    pub const UNPROCESSABLE_ENTITY: Code = Code::new(4, 22);
    /// 4.29 Too Many Requests (RFC 8516).
    pub const TOO_MANY_REQUESTS: Code = Code::new(4, 29);
    /// 5.00 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Code = Code::new(5, 0);
    /// 5.01 Not Implemented.
    pub const NOT_IMPLEMENTED: Code = Code::new(5, 1);
    /// 5.02 Bad Gateway.
    pub const BAD_GATEWAY: Code = Code::new(5, 2);
    /// 5.03 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Code = Code::new(5, 3);
    /// 5.04 Gateway Timeout.
    pub const GATEWAY_TIMEOUT: Code = Code::new(5, 4);
    /// 5.05 Proxying Not Supported.
    pub const PROXYING_NOT_SUPPORTED: Code = Code::new(5, 5);

    /// The code `class.detail`; bits beyond the 3-bit class and 5-bit detail are dropped.
    pub const fn new(class: u8, detail: u8) -> Self {
        Code(((class & 0x07) << 5) | (detail & 0x1F))
    }

    /// The class: 0 request, 2 success, 4 client error, 5 server error (1, 6, 7 reserved).
    pub const fn class(self) -> u8 {
        self.0 >> 5
    }

    /// The detail, 0 to 31.
    pub const fn detail(self) -> u8 {
        self.0 & 0x1F
    }

    /// True for 0.00, the code of Empty messages.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True for a method code (class 0, detail 1 to 31), known or not.
    pub const fn is_request(self) -> bool {
        self.class() == 0 && self.detail() != 0
    }

    /// True for a response code (class 2, 4 or 5).
    pub const fn is_response(self) -> bool {
        matches!(self.class(), 2 | 4 | 5)
    }

    /// True for a success response (class 2).
    pub const fn is_success(self) -> bool {
        self.class() == 2
    }

    /// True for a code in a reserved class (1, 6 or 7).
    pub const fn is_reserved_class(self) -> bool {
        matches!(self.class(), 1 | 6 | 7)
    }

    /// The registered name of the code ("GET", "Content", "Not Found"...), if it has one.
    pub const fn name(self) -> Option<&'static str> {
        Some(match (self.class(), self.detail()) {
            (0, 0) => "Empty",
            (0, 1) => "GET",
            (0, 2) => "POST",
            (0, 3) => "PUT",
            (0, 4) => "DELETE",
            (0, 5) => "FETCH",
            (0, 6) => "PATCH",
            (0, 7) => "iPATCH",
            (2, 1) => "Created",
            (2, 2) => "Deleted",
            (2, 3) => "Valid",
            (2, 4) => "Changed",
            (2, 5) => "Content",
            (2, 31) => "Continue",
            (4, 0) => "Bad Request",
            (4, 1) => "Unauthorized",
            (4, 2) => "Bad Option",
            (4, 3) => "Forbidden",
            (4, 4) => "Not Found",
            (4, 5) => "Method Not Allowed",
            (4, 6) => "Not Acceptable",
            (4, 8) => "Request Entity Incomplete",
            (4, 9) => "Conflict",
            (4, 12) => "Precondition Failed",
            (4, 13) => "Request Entity Too Large",
            (4, 15) => "Unsupported Content-Format",
            (4, 22) => "Unprocessable Entity",
            (4, 29) => "Too Many Requests",
            (5, 0) => "Internal Server Error",
            (5, 1) => "Not Implemented",
            (5, 2) => "Bad Gateway",
            (5, 3) => "Service Unavailable",
            (5, 4) => "Gateway Timeout",
            (5, 5) => "Proxying Not Supported",
            _ => return None,
        })
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "Code({self} {name})"),
            None => write!(f, "Code({self})"),
        }
    }
}

/// A CoAP option number, with the registered numbers as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OptionNumber(pub u16);

impl OptionNumber {
    /// If-Match (1), opaque 0-8 bytes, repeatable.
    pub const IF_MATCH: OptionNumber = OptionNumber(1);
    /// Uri-Host (3), string 1-255 bytes.
    pub const URI_HOST: OptionNumber = OptionNumber(3);
    /// ETag (4), opaque 1-8 bytes.
    pub const ETAG: OptionNumber = OptionNumber(4);
    /// If-None-Match (5), empty.
    pub const IF_NONE_MATCH: OptionNumber = OptionNumber(5);
    /// Observe (6, RFC 7641), uint 0-3 bytes.
    pub const OBSERVE: OptionNumber = OptionNumber(6);
    /// Uri-Port (7), uint 0-2 bytes.
    pub const URI_PORT: OptionNumber = OptionNumber(7);
    /// Location-Path (8), string 0-255 bytes, repeatable.
    pub const LOCATION_PATH: OptionNumber = OptionNumber(8);
    /// Uri-Path (11), string 0-255 bytes, repeatable: one option per path segment.
    pub const URI_PATH: OptionNumber = OptionNumber(11);
    /// Content-Format (12), uint 0-2 bytes.
    pub const CONTENT_FORMAT: OptionNumber = OptionNumber(12);
    /// Max-Age (14), uint 0-4 bytes.
    pub const MAX_AGE: OptionNumber = OptionNumber(14);
    /// Uri-Query (15), string 0-255 bytes, repeatable: one option per query item.
    pub const URI_QUERY: OptionNumber = OptionNumber(15);
    /// Accept (17), uint 0-2 bytes.
    pub const ACCEPT: OptionNumber = OptionNumber(17);
    /// Location-Query (20), string 0-255 bytes, repeatable.
    pub const LOCATION_QUERY: OptionNumber = OptionNumber(20);
    /// Block2 (23, RFC 7959), uint 0-3 bytes.
    pub const BLOCK2: OptionNumber = OptionNumber(23);
    /// Block1 (27, RFC 7959), uint 0-3 bytes.
    pub const BLOCK1: OptionNumber = OptionNumber(27);
    /// Size2 (28, RFC 7959), uint 0-4 bytes.
    pub const SIZE2: OptionNumber = OptionNumber(28);
    /// Proxy-Uri (35), string 1-1034 bytes.
    pub const PROXY_URI: OptionNumber = OptionNumber(35);
    /// Proxy-Scheme (39), string 1-255 bytes.
    pub const PROXY_SCHEME: OptionNumber = OptionNumber(39);
    /// Size1 (60), uint 0-4 bytes.
    pub const SIZE1: OptionNumber = OptionNumber(60);
    /// No-Response (258, RFC 7967), uint 0-1 bytes.
    pub const NO_RESPONSE: OptionNumber = OptionNumber(258);

    /// Critical options (odd numbers) must be understood by the recipient or the message rejected.
    pub const fn is_critical(self) -> bool {
        self.0 & 1 == 1
    }

    /// Unsafe-to-forward options (bit 1 set) must be understood by a proxy.
    pub const fn is_unsafe(self) -> bool {
        self.0 & 2 == 2
    }

    /// NoCacheKey options are not part of a cache key (RFC 7252 section 5.4.6).
    pub const fn is_no_cache_key(self) -> bool {
        self.0 & 0x1E == 0x1C
    }
}

impl fmt::Display for OptionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Content-Format identifier (the CoRE Parameters registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentFormat(pub u16);

impl ContentFormat {
    /// 0: `text/plain; charset=utf-8`.
    pub const TEXT_PLAIN: ContentFormat = ContentFormat(0);
    /// 40: `application/link-format` (RFC 6690).
    pub const LINK_FORMAT: ContentFormat = ContentFormat(40);
    /// 41: `application/xml`.
    pub const XML: ContentFormat = ContentFormat(41);
    /// 42: `application/octet-stream`.
    pub const OCTET_STREAM: ContentFormat = ContentFormat(42);
    /// 47: `application/exi`.
    pub const EXI: ContentFormat = ContentFormat(47);
    /// 50: `application/json`.
    pub const JSON: ContentFormat = ContentFormat(50);
    /// 60: `application/cbor`.
    pub const CBOR: ContentFormat = ContentFormat(60);
}

impl fmt::Display for ContentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A token of 0 to 8 bytes, which matches a response to its request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Token {
    len: u8,
    // Bytes past `len` are always zero, so the derived equality is byte equality.
    bytes: [u8; MAX_TOKEN_LEN],
}

impl Token {
    /// The zero-length token.
    pub const EMPTY: Token = Token {
        len: 0,
        bytes: [0; MAX_TOKEN_LEN],
    };

    /// A token holding `bytes`, or [`CoapError::TokenTooLong`] past 8 bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, CoapError> {
        let mut token = Self::EMPTY;
        let slot = token
            .bytes
            .get_mut(..bytes.len())
            .ok_or(CoapError::TokenTooLong(bytes.len()))?;
        slot.copy_from_slice(bytes);
        token.len = u8::try_from(bytes.len()).map_err(|_| CoapError::TokenTooLong(bytes.len()))?;
        Ok(token)
    }

    /// The token bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// Length of the token in bytes (0 to 8).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True for the zero-length token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl From<[u8; 4]> for Token {
    fn from(bytes: [u8; 4]) -> Self {
        let mut token = Self::EMPTY;
        token.bytes[..4].copy_from_slice(&bytes);
        token.len = 4;
        token
    }
}

impl From<[u8; 8]> for Token {
    fn from(bytes: [u8; 8]) -> Self {
        Token { len: 8, bytes }
    }
}

impl TryFrom<&[u8]> for Token {
    type Error = CoapError;

    fn try_from(bytes: &[u8]) -> Result<Self, CoapError> {
        Self::new(bytes)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(")?;
        for byte in self.as_bytes() {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// One option: a number and a value of at most [`MAX_OPTION_VALUE_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CoapOption {
    number: OptionNumber,
    value: Vec<u8>,
}

impl CoapOption {
    /// An option with an opaque value; fails when the value cannot be encoded.
    pub fn new(number: OptionNumber, value: impl Into<Vec<u8>>) -> Result<Self, CoapError> {
        let value = value.into();
        if value.len() > MAX_OPTION_VALUE_LEN {
            return Err(CoapError::OptionValueTooLong {
                number: number.0,
                len: value.len(),
                max: MAX_OPTION_VALUE_LEN,
            });
        }
        Ok(CoapOption { number, value })
    }

    /// A `uint` option in its shortest form (RFC 7252 section 3.2: 0 is the empty value).
    pub fn uint(number: OptionNumber, value: u32) -> Self {
        let bytes = value.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        CoapOption {
            number,
            value: bytes.get(skip..).unwrap_or_default().to_vec(),
        }
    }

    /// The option number.
    pub fn number(&self) -> OptionNumber {
        self.number
    }

    /// The raw value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The value as a string option (UTF-8).
    pub fn as_str(&self) -> Result<&str, CoapError> {
        core::str::from_utf8(&self.value).map_err(|_| CoapError::InvalidUtf8 {
            number: self.number.0,
        })
    }

    /// The value as a `uint` option; leading zero bytes are accepted, as RFC 7252 requires.
    pub fn as_uint(&self) -> Result<u32, CoapError> {
        if self.value.len() > MAX_UINT_OPTION_LEN {
            return Err(CoapError::OptionValueTooLong {
                number: self.number.0,
                len: self.value.len(),
                max: MAX_UINT_OPTION_LEN,
            });
        }
        Ok(self
            .value
            .iter()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
    }
}

/// The fixed 4-byte header, read without looking at the rest of the datagram.
///
/// Used to answer a Confirmable message whose body is malformed with a Reset.
/// Unlike [`CoapMessage::parse`] it accepts any version and token length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoapHeader {
    /// The version field (1 for every message CoAP defines).
    pub version: u8,
    /// The message type.
    pub msg_type: MessageType,
    /// The token length field, reserved values (9 to 15) included.
    pub token_len: u8,
    /// The code.
    pub code: Code,
    /// The message ID.
    pub message_id: u16,
}

impl CoapHeader {
    /// Reads the header; fails only when `data` is shorter than 4 bytes.
    pub fn parse(data: &[u8]) -> Result<Self, CoapError> {
        match *data {
            [b0, code, id_hi, id_lo, ..] => Ok(CoapHeader {
                version: b0 >> 6,
                msg_type: MessageType::from_bits(b0 >> 4),
                token_len: b0 & 0x0F,
                code: Code(code),
                message_id: u16::from_be_bytes([id_hi, id_lo]),
            }),
            _ => Err(CoapError::TruncatedHeader { len: data.len() }),
        }
    }
}

/// A CoAP message: the representation that is parsed from and emitted to a datagram.
///
/// `options` may be in any order: [`CoapMessage::emit`] writes them sorted by
/// number, keeping the relative order of options with the same number (the order
/// of Uri-Path segments, for one). [`CoapMessage::parse`] returns them in wire
/// order, which is sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoapMessage {
    /// The message type.
    pub msg_type: MessageType,
    /// Method or response code.
    pub code: Code,
    /// Message ID, for deduplication and to match ACK/RST to CON.
    pub message_id: u16,
    /// Token, to match a response to its request.
    pub token: Token,
    /// Options, in any order (see the type's documentation).
    pub options: Vec<CoapOption>,
    /// Payload; empty means no payload marker is written.
    pub payload: Vec<u8>,
}

impl CoapMessage {
    /// A message with no token, options or payload.
    pub fn new(msg_type: MessageType, code: Code, message_id: u16) -> Self {
        CoapMessage {
            msg_type,
            code,
            message_id,
            token: Token::EMPTY,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// The Reset that rejects the message with ID `message_id`.
    pub fn reset(message_id: u16) -> Self {
        Self::new(MessageType::Reset, Code::EMPTY, message_id)
    }

    /// The empty Acknowledgement of the message with ID `message_id`.
    pub fn empty_ack(message_id: u16) -> Self {
        Self::new(MessageType::Acknowledgement, Code::EMPTY, message_id)
    }

    /// Parses one datagram, rejecting the message format errors of RFC 7252 section 3.
    pub fn parse(data: &[u8]) -> Result<Self, CoapError> {
        let header = CoapHeader::parse(data)?;
        if header.version != VERSION {
            return Err(CoapError::UnsupportedVersion(header.version));
        }
        let token_len = usize::from(header.token_len);
        if token_len > MAX_TOKEN_LEN {
            return Err(CoapError::ReservedTokenLength(header.token_len));
        }
        if header.code.is_empty() && (token_len != 0 || data.len() > HEADER_LEN) {
            return Err(CoapError::NonEmptyEmptyMessage {
                token_len: header.token_len,
                len: data.len(),
            });
        }
        let token_bytes = take(data, HEADER_LEN, token_len, "token")?;
        let token = Token::new(token_bytes)?;

        let mut pos = HEADER_LEN + token_len;
        let mut number: u32 = 0;
        let mut options = Vec::new();
        let mut payload = Vec::new();
        while let Some(&byte) = data.get(pos) {
            if byte == PAYLOAD_MARKER {
                let rest = data.get(pos + 1..).unwrap_or_default();
                if rest.is_empty() {
                    return Err(CoapError::EmptyPayloadAfterMarker { offset: pos });
                }
                payload = rest.to_vec();
                break;
            }
            let start = pos;
            pos += 1;
            if byte >> 4 == 15 {
                return Err(CoapError::ReservedOptionDelta { offset: start });
            }
            if byte & 0x0F == 15 {
                return Err(CoapError::ReservedOptionLength { offset: start });
            }
            let delta = read_extended(data, &mut pos, byte >> 4, "option delta")?;
            let len = read_extended(data, &mut pos, byte & 0x0F, "option length")?;
            number += delta;
            let option_number =
                u16::try_from(number).map_err(|_| CoapError::OptionNumberTooLarge {
                    offset: start,
                    number,
                })?;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            let value = take(data, pos, len, "option value")?;
            pos += len;
            options.push(CoapOption {
                number: OptionNumber(option_number),
                value: value.to_vec(),
            });
        }
        Ok(CoapMessage {
            msg_type: header.msg_type,
            code: header.code,
            message_id: header.message_id,
            token,
            options,
            payload,
        })
    }

    /// Number of bytes [`CoapMessage::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let mut len = HEADER_LEN + self.token.len();
        let mut previous = 0u16;
        for option in self.sorted_options() {
            let delta = usize::from(option.number.0.saturating_sub(previous));
            len +=
                1 + extension_len(delta) + extension_len(option.value.len()) + option.value.len();
            previous = option.number.0;
        }
        if !self.payload.is_empty() {
            len += 1 + self.payload.len();
        }
        len
    }

    /// Appends the encoded message to `buf`; never fails and never panics.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        buf.reserve(self.buffer_len());
        let token = self.token.as_bytes();
        // Token::len is at most 8, so it fits the 4-bit field.
        buf.push((VERSION << 6) | ((self.msg_type as u8) << 4) | (self.token.len & 0x0F));
        buf.push(self.code.0);
        buf.extend_from_slice(&self.message_id.to_be_bytes());
        buf.extend_from_slice(token);
        let mut previous = 0u16;
        for option in self.sorted_options() {
            let delta = usize::from(option.number.0.saturating_sub(previous));
            let (delta_nibble, delta_ext) = split_extended(delta);
            let (len_nibble, len_ext) = split_extended(option.value.len());
            buf.push((delta_nibble << 4) | len_nibble);
            delta_ext.write(buf);
            len_ext.write(buf);
            buf.extend_from_slice(&option.value);
            previous = option.number.0;
        }
        if !self.payload.is_empty() {
            buf.push(PAYLOAD_MARKER);
            buf.extend_from_slice(&self.payload);
        }
    }

    /// The encoded message in a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.buffer_len());
        self.emit(&mut buf);
        buf
    }

    /// Options with number `number`, in order.
    pub fn options_with(&self, number: OptionNumber) -> impl Iterator<Item = &CoapOption> + '_ {
        self.options.iter().filter(move |o| o.number == number)
    }

    /// The first option with number `number`.
    pub fn first_option(&self, number: OptionNumber) -> Option<&CoapOption> {
        self.options_with(number).next()
    }

    /// The Uri-Path segments (`["softbus", "v1", "device"]`); empty for the root path.
    pub fn uri_path(&self) -> Result<Vec<&str>, CoapError> {
        self.options_with(OptionNumber::URI_PATH)
            .map(CoapOption::as_str)
            .collect()
    }

    /// The Uri-Query items (`["cap=camera"]`), each as sent.
    pub fn uri_query(&self) -> Result<Vec<&str>, CoapError> {
        self.options_with(OptionNumber::URI_QUERY)
            .map(CoapOption::as_str)
            .collect()
    }

    /// The Content-Format, if the message has that option.
    pub fn content_format(&self) -> Result<Option<ContentFormat>, CoapError> {
        self.uint_option_u16(OptionNumber::CONTENT_FORMAT)
            .map(|v| v.map(ContentFormat))
    }

    /// The Accept option (the Content-Format the client wants), if present.
    pub fn accept(&self) -> Result<Option<ContentFormat>, CoapError> {
        self.uint_option_u16(OptionNumber::ACCEPT)
            .map(|v| v.map(ContentFormat))
    }

    fn uint_option_u16(&self, number: OptionNumber) -> Result<Option<u16>, CoapError> {
        let Some(option) = self.first_option(number) else {
            return Ok(None);
        };
        let value = option.as_uint()?;
        u16::try_from(value)
            .map(Some)
            .map_err(|_| CoapError::OptionValueTooLong {
                number: number.0,
                len: option.value.len(),
                max: 2,
            })
    }

    /// Sets the token.
    pub fn with_token(mut self, token: Token) -> Self {
        self.token = token;
        self
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Adds an option after those already present.
    pub fn push_option(&mut self, option: CoapOption) {
        self.options.push(option);
    }

    /// Adds one Uri-Path option per segment of `path` (`"/softbus/v1/device"`).
    ///
    /// One leading `/` is ignored, as in a URI; every other `/` separates
    /// segments, so `"a//b/"` gives the segments `a`, ``, `b`, ``. A segment
    /// longer than 255 bytes is an error and adds nothing.
    pub fn push_uri_path(&mut self, path: &str) -> Result<(), CoapError> {
        let path = path.strip_prefix('/').unwrap_or(path);
        if path.is_empty() {
            return Ok(());
        }
        let segments = path
            .split('/')
            .map(|s| string_option(OptionNumber::URI_PATH, s))
            .collect::<Result<Vec<_>, _>>()?;
        self.options.extend(segments);
        Ok(())
    }

    /// Adds one Uri-Query option (`"cap=camera"`); more than 255 bytes is an error.
    pub fn push_uri_query(&mut self, item: &str) -> Result<(), CoapError> {
        let option = string_option(OptionNumber::URI_QUERY, item)?;
        self.options.push(option);
        Ok(())
    }

    /// Replaces any Content-Format option with `format`, in its shortest encoding.
    pub fn set_content_format(&mut self, format: ContentFormat) {
        self.set_uint_option(OptionNumber::CONTENT_FORMAT, format.0);
    }

    /// Replaces any Accept option with `format`, in its shortest encoding.
    pub fn set_accept(&mut self, format: ContentFormat) {
        self.set_uint_option(OptionNumber::ACCEPT, format.0);
    }

    fn set_uint_option(&mut self, number: OptionNumber, value: u16) {
        self.options.retain(|o| o.number != number);
        self.options
            .push(CoapOption::uint(number, u32::from(value)));
    }

    fn sorted_options(&self) -> Vec<&CoapOption> {
        let mut sorted: Vec<&CoapOption> = self.options.iter().collect();
        // A stable sort keeps repeated options (path segments) in their order.
        sorted.sort_by_key(|o| o.number);
        sorted
    }
}

/// Longest value of a string option such as Uri-Path or Uri-Query.
const MAX_STRING_OPTION_LEN: usize = 255;

fn string_option(number: OptionNumber, value: &str) -> Result<CoapOption, CoapError> {
    if value.len() > MAX_STRING_OPTION_LEN {
        return Err(CoapError::OptionValueTooLong {
            number: number.0,
            len: value.len(),
            max: MAX_STRING_OPTION_LEN,
        });
    }
    CoapOption::new(number, value.as_bytes())
}

fn take<'a>(
    data: &'a [u8],
    offset: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], CoapError> {
    offset
        .checked_add(len)
        .and_then(|end| data.get(offset..end))
        .ok_or(CoapError::Truncated {
            what,
            offset,
            needed: len,
            available: data.len().saturating_sub(offset),
        })
}

/// Reads the extended form of an option delta or length whose nibble is 0 to 14.
fn read_extended(
    data: &[u8],
    pos: &mut usize,
    nibble: u8,
    what: &'static str,
) -> Result<u32, CoapError> {
    match nibble {
        13 => {
            let ext = take(data, *pos, 1, what)?;
            *pos += 1;
            Ok(13 + ext.iter().map(|&b| u32::from(b)).sum::<u32>())
        }
        14 => {
            let ext = take(data, *pos, 2, what)?;
            *pos += 2;
            let value = ext.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
            Ok(269 + value)
        }
        n => Ok(u32::from(n)),
    }
}

/// The bytes that follow the option header byte for one extended field.
enum Extension {
    None,
    One(u8),
    Two(u16),
}

impl Extension {
    fn write(&self, buf: &mut Vec<u8>) {
        match *self {
            Extension::None => {}
            Extension::One(b) => buf.push(b),
            Extension::Two(v) => buf.extend_from_slice(&v.to_be_bytes()),
        }
    }
}

/// Splits a delta or length into its nibble and extension; values are at most 65804.
fn split_extended(value: usize) -> (u8, Extension) {
    match value {
        0..=12 => (value as u8, Extension::None),
        13..=268 => (13, Extension::One((value - 13) as u8)),
        _ => (
            14,
            Extension::Two(u16::try_from(value - 269).unwrap_or(u16::MAX)),
        ),
    }
}

fn extension_len(value: usize) -> usize {
    match value {
        0..=12 => 0,
        13..=268 => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(bytes: &[u8]) -> CoapMessage {
        CoapMessage::parse(bytes).unwrap()
    }

    #[test]
    fn parses_rfc7252_get_example() {
        // CON GET /temperature, MID 0x7d34, no token (RFC 7252 appendix A, figure 16).
        let bytes = [
            0x40, 0x01, 0x7d, 0x34, 0xbb, b't', b'e', b'm', b'p', b'e', b'r', b'a', b't', b'u',
            b'r', b'e',
        ];
        let m = msg(&bytes);
        assert_eq!(m.msg_type, MessageType::Confirmable);
        assert_eq!(m.code, Code::GET);
        assert_eq!(m.message_id, 0x7d34);
        assert!(m.token.is_empty());
        assert_eq!(m.uri_path().unwrap(), vec!["temperature"]);
        assert!(m.payload.is_empty());
        assert_eq!(m.to_bytes(), bytes);
    }

    #[test]
    fn parses_piggybacked_response_with_token_and_payload() {
        // ACK 2.05, MID 0x7d34, token 0x20, payload "22.3 C".
        let bytes = [
            0x61, 0x45, 0x7d, 0x34, 0x20, 0xff, b'2', b'2', b'.', b'3', b' ', b'C',
        ];
        let m = msg(&bytes);
        assert_eq!(m.msg_type, MessageType::Acknowledgement);
        assert_eq!(m.code, Code::CONTENT);
        assert_eq!(m.token.as_bytes(), &[0x20]);
        assert_eq!(m.payload, b"22.3 C");
        assert_eq!(m.to_bytes(), bytes);
    }

    #[test]
    fn code_display_and_names() {
        assert_eq!(Code::CONTENT.to_string(), "2.05");
        assert_eq!(Code::NOT_FOUND.to_string(), "4.04");
        assert_eq!(Code::METHOD_NOT_ALLOWED.to_string(), "4.05");
        assert_eq!(Code::BAD_REQUEST, Code(0x80));
        assert_eq!(Code::GET, Code(0x01));
        assert_eq!(format!("{:?}", Code::CONTENT), "Code(2.05 Content)");
        assert_eq!(format!("{:?}", Code::new(3, 7)), "Code(3.07)");
        assert!(Code::new(7, 1).is_reserved_class());
        assert!(Code::GET.is_request() && !Code::EMPTY.is_request());
        assert!(Code::NOT_FOUND.is_response() && !Code::NOT_FOUND.is_success());
    }

    #[test]
    fn rejects_short_header() {
        assert_eq!(
            CoapMessage::parse(&[0x40, 0x01, 0x00]),
            Err(CoapError::TruncatedHeader { len: 3 })
        );
        assert_eq!(
            CoapMessage::parse(&[]),
            Err(CoapError::TruncatedHeader { len: 0 })
        );
    }

    #[test]
    fn rejects_other_versions() {
        for version in [0u8, 2, 3] {
            let bytes = [version << 6 | 0x10, 0x01, 0, 1];
            assert_eq!(
                CoapMessage::parse(&bytes),
                Err(CoapError::UnsupportedVersion(version))
            );
        }
    }

    #[test]
    fn rejects_reserved_token_lengths() {
        for tkl in 9u8..=15 {
            let mut bytes = vec![0x50 | tkl, 0x01, 0, 1];
            bytes.resize(4 + usize::from(tkl), 0xAA);
            assert_eq!(
                CoapMessage::parse(&bytes),
                Err(CoapError::ReservedTokenLength(tkl))
            );
        }
    }

    #[test]
    fn rejects_truncated_token() {
        let err = CoapMessage::parse(&[0x54, 0x01, 0, 1, 0xAA, 0xBB]).unwrap_err();
        assert!(
            matches!(err, CoapError::Truncated { what: "token", .. }),
            "{err}"
        );
    }

    #[test]
    fn rejects_payload_marker_without_payload() {
        assert_eq!(
            CoapMessage::parse(&[0x50, 0x45, 0, 1, 0xFF]),
            Err(CoapError::EmptyPayloadAfterMarker { offset: 4 })
        );
    }

    #[test]
    fn rejects_reserved_nibbles() {
        // Delta 15 with length 0: not the payload marker.
        assert_eq!(
            CoapMessage::parse(&[0x50, 0x01, 0, 1, 0xF0]),
            Err(CoapError::ReservedOptionDelta { offset: 4 })
        );
        assert_eq!(
            CoapMessage::parse(&[0x50, 0x01, 0, 1, 0x1F, 0, 0]),
            Err(CoapError::ReservedOptionLength { offset: 4 })
        );
    }

    #[test]
    fn rejects_non_empty_empty_message() {
        assert!(matches!(
            CoapMessage::parse(&[0x41, 0x00, 0, 1, 0xAA]),
            Err(CoapError::NonEmptyEmptyMessage { token_len: 1, .. })
        ));
        assert!(matches!(
            CoapMessage::parse(&[0x40, 0x00, 0, 1, 0xFF, 1]),
            Err(CoapError::NonEmptyEmptyMessage { token_len: 0, .. })
        ));
        // Exactly the header: a CoAP ping.
        let ping = msg(&[0x40, 0x00, 0x12, 0x34]);
        assert!(ping.code.is_empty());
        assert_eq!(ping.message_id, 0x1234);
    }

    #[test]
    fn rejects_truncated_extended_fields_and_values() {
        // Delta nibble 13 without its extension byte.
        let err = CoapMessage::parse(&[0x50, 0x01, 0, 1, 0xD0]).unwrap_err();
        assert!(
            matches!(
                err,
                CoapError::Truncated {
                    what: "option delta",
                    ..
                }
            ),
            "{err}"
        );
        // Length nibble 14 with one of its two extension bytes.
        let err = CoapMessage::parse(&[0x50, 0x01, 0, 1, 0x1E, 0x00]).unwrap_err();
        assert!(
            matches!(
                err,
                CoapError::Truncated {
                    what: "option length",
                    ..
                }
            ),
            "{err}"
        );
        // Length 3, two bytes present.
        let err = CoapMessage::parse(&[0x50, 0x01, 0, 1, 0xB3, b'a', b'b']).unwrap_err();
        assert!(
            matches!(
                err,
                CoapError::Truncated {
                    what: "option value",
                    needed: 3,
                    available: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rejects_option_numbers_past_65535() {
        // 65535 + 1 via two 14-form deltas.
        let bytes = [0x50, 0x01, 0, 1, 0xE0, 0xFE, 0xF2, 0x10];
        let first = 269 + 0xFEF2;
        assert_eq!(first, 65535);
        assert_eq!(
            CoapMessage::parse(&bytes),
            Err(CoapError::OptionNumberTooLarge {
                offset: 7,
                number: 65536
            })
        );
    }

    #[test]
    fn extended_delta_and_length_forms() {
        let mut m = CoapMessage::new(MessageType::NonConfirmable, Code::GET, 7);
        m.push_option(CoapOption::new(OptionNumber(12), vec![1; 12]).unwrap());
        m.push_option(CoapOption::new(OptionNumber(25), vec![2; 13]).unwrap());
        m.push_option(CoapOption::new(OptionNumber(293), vec![3; 268]).unwrap());
        m.push_option(CoapOption::new(OptionNumber(65535), vec![4; 269]).unwrap());
        m.push_option(CoapOption::new(OptionNumber(65535), vec![5; MAX_OPTION_VALUE_LEN]).unwrap());
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), m.buffer_len());
        // delta 12, length 12: both fit the nibbles.
        assert_eq!(bytes[4], 0xCC);
        // delta 13, length 13: both take the one-byte extension, holding 0.
        assert_eq!(&bytes[4 + 13..4 + 16], &[0xDD, 0x00, 0x00]);
        assert_eq!(CoapMessage::parse(&bytes).unwrap(), m);
        assert!(CoapOption::new(OptionNumber(1), vec![0; MAX_OPTION_VALUE_LEN + 1]).is_err());
    }

    #[test]
    fn emit_sorts_options_and_keeps_repeated_order() {
        let mut m = CoapMessage::new(MessageType::Confirmable, Code::GET, 1);
        m.set_content_format(ContentFormat::CBOR);
        m.push_uri_query("cap=camera").unwrap();
        m.push_uri_path("/softbus/v1/device").unwrap();
        let parsed = msg(&m.to_bytes());
        let numbers: Vec<u16> = parsed.options.iter().map(|o| o.number().0).collect();
        assert_eq!(numbers, vec![11, 11, 11, 12, 15]);
        assert_eq!(parsed.uri_path().unwrap(), vec!["softbus", "v1", "device"]);
        assert_eq!(parsed.uri_query().unwrap(), vec!["cap=camera"]);
        assert_eq!(parsed.content_format().unwrap(), Some(ContentFormat::CBOR));
    }

    #[test]
    fn uint_options_are_minimal_and_accept_leading_zeros() {
        assert_eq!(
            CoapOption::uint(OptionNumber::CONTENT_FORMAT, 0).value(),
            b""
        );
        assert_eq!(
            CoapOption::uint(OptionNumber::CONTENT_FORMAT, 40).value(),
            &[40]
        );
        assert_eq!(
            CoapOption::uint(OptionNumber::CONTENT_FORMAT, 0x1234).value(),
            &[0x12, 0x34]
        );
        assert_eq!(
            CoapOption::uint(OptionNumber::MAX_AGE, 0x0100_0000).value(),
            &[1, 0, 0, 0]
        );
        let padded = CoapOption::new(OptionNumber::CONTENT_FORMAT, vec![0, 60]).unwrap();
        assert_eq!(padded.as_uint(), Ok(60));
        let long = CoapOption::new(OptionNumber::CONTENT_FORMAT, vec![0, 0, 0, 0, 60]).unwrap();
        assert!(long.as_uint().is_err());
        let mut m = CoapMessage::new(MessageType::NonConfirmable, Code::CONTENT, 1);
        m.push_option(CoapOption::new(OptionNumber::CONTENT_FORMAT, vec![1, 0, 0]).unwrap());
        assert!(m.content_format().is_err());
        m.set_content_format(ContentFormat::TEXT_PLAIN);
        assert_eq!(m.options.len(), 1);
        assert_eq!(m.content_format(), Ok(Some(ContentFormat::TEXT_PLAIN)));
    }

    #[test]
    fn uri_path_builder_edge_cases() {
        let mut m = CoapMessage::new(MessageType::Confirmable, Code::GET, 1);
        m.push_uri_path("/").unwrap();
        assert!(m.options.is_empty());
        m.push_uri_path("a//b/").unwrap();
        assert_eq!(m.uri_path().unwrap(), vec!["a", "", "b", ""]);
        let long = "x".repeat(256);
        assert!(m.push_uri_path(&long).is_err());
        assert!(m.push_uri_query(&long).is_err());
        assert_eq!(m.options.len(), 4);
        let bad = CoapOption::new(OptionNumber::URI_PATH, vec![0xFF]).unwrap();
        m.push_option(bad);
        assert_eq!(m.uri_path(), Err(CoapError::InvalidUtf8 { number: 11 }));
    }

    #[test]
    fn tokens() {
        assert!(Token::new(&[0; 9]).is_err());
        let t = Token::new(&[1, 2, 3]).unwrap();
        assert_eq!(t.as_bytes(), &[1, 2, 3]);
        assert_eq!(Token::from([1, 2, 3, 4]).len(), 4);
        assert_eq!(Token::from([9; 8]).as_bytes(), &[9; 8]);
        assert_eq!(
            format!("{:?}", Token::from([0xde, 0xad, 0xbe, 0xef])),
            "Token(deadbeef)"
        );
    }

    #[test]
    fn header_is_readable_when_the_rest_is_not() {
        let bytes = [0x4F, 0x01, 0xAB, 0xCD, 1, 2];
        assert!(CoapMessage::parse(&bytes).is_err());
        let h = CoapHeader::parse(&bytes).unwrap();
        assert_eq!(h.version, 1);
        assert_eq!(h.msg_type, MessageType::Confirmable);
        assert_eq!(h.token_len, 15);
        assert_eq!(h.message_id, 0xABCD);
    }

    fn arb_option() -> impl Strategy<Value = CoapOption> {
        let number = prop_oneof![
            4 => 0u16..=40,
            2 => 0u16..=300,
            1 => any::<u16>(),
            1 => 65000u16..=65535,
        ];
        let value = prop_oneof![
            8 => proptest::collection::vec(any::<u8>(), 0..=14),
            2 => proptest::collection::vec(any::<u8>(), 0..=300),
            1 => proptest::collection::vec(any::<u8>(), 260..=600),
        ];
        (number, value).prop_map(|(n, v)| CoapOption::new(OptionNumber(n), v).unwrap())
    }

    fn arb_message() -> impl Strategy<Value = CoapMessage> {
        (
            0u8..4,
            any::<u8>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..=MAX_TOKEN_LEN),
            proptest::collection::vec(arb_option(), 0..8),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(ty, code, id, token, options, payload)| {
                let mut m = CoapMessage::new(MessageType::from_bits(ty), Code(code), id);
                if !m.code.is_empty() {
                    m.token = Token::new(&token).unwrap();
                    m.options = options;
                    m.payload = payload;
                }
                m
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = CoapMessage::parse(&bytes);
            let _ = CoapHeader::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_plausible_messages(
            head in prop_oneof![Just(0x40u8), Just(0x50), Just(0x44), Just(0x58)],
            code in any::<u8>(),
            rest in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut bytes = vec![head, code, 0x12, 0x34];
            bytes.extend(rest);
            if let Ok(m) = CoapMessage::parse(&bytes) {
                // The encoding is unique: what parses re-emits byte for byte.
                prop_assert_eq!(m.to_bytes(), bytes);
            }
        }

        #[test]
        fn whatever_parses_re_emits_identically(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(m) = CoapMessage::parse(&bytes) {
                prop_assert_eq!(m.buffer_len(), bytes.len());
                prop_assert_eq!(m.to_bytes(), bytes);
            }
        }

        #[test]
        fn round_trip(m in arb_message()) {
            let bytes = m.to_bytes();
            prop_assert_eq!(bytes.len(), m.buffer_len());
            let parsed = CoapMessage::parse(&bytes).unwrap();
            let mut expected = m.clone();
            expected.options.sort_by_key(|o| o.number());
            prop_assert_eq!(parsed, expected);
        }

        #[test]
        fn emit_appends(m in arb_message(), prefix in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut buf = prefix.clone();
            m.emit(&mut buf);
            prop_assert_eq!(&buf[..prefix.len()], &prefix[..]);
            prop_assert_eq!(&buf[prefix.len()..], &m.to_bytes()[..]);
        }
    }
}
