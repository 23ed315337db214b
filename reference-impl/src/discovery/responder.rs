//! The device side of discovery: the sans-IO CoAP responder that answers requests for the
//! advert and for `/.well-known/core` (the table in [`super`]'s docs).

use super::*;

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
