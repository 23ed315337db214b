//! The client side of discovery: the probe a client multicasts and the reader of the answers.

use super::*;

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
