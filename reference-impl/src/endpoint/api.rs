//! The endpoint's public API types: link addresses, datagrams out, configuration, events,
//! counters, errors and the `state` snapshots (spec 14.3).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::capability::Capability;
use crate::crypto::DeviceId;
use crate::fault::Fault;
use crate::time::TimeSnapshot;
use crate::wire::msg::{ChannelKind, PermResult, Scope};
use crate::wire::Code;

/// Where a frame came from or goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "link", content = "addr", rename_all = "lowercase")]
pub enum LinkAddr {
    /// UDP or TCP over IP.
    Ip(SocketAddr),
    /// A Zigbee network address.
    Zigbee(u16),
    /// A BLE device address.
    Ble(String),
}

impl std::fmt::Display for LinkAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkAddr::Ip(a) => write!(f, "{a}"),
            LinkAddr::Zigbee(n) => write!(f, "zigbee:{n:#06x}"),
            LinkAddr::Ble(a) => write!(f, "ble:{a}"),
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dst: LinkAddr,
    /// The frame.
    pub data: Vec<u8>,
}

/// How the simulated user answers permission prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptPolicy {
    /// Grant every request.
    Approve,
    /// Deny every request.
    Deny,
    /// Never answer (the prompt times out).
    Timeout,
    /// Raise [`Event::PermissionPrompt`] and wait for [`Endpoint::answer_prompt`](super::Endpoint::answer_prompt).
    Ask,
}

/// The smallest max_message a device may announce in SESSION_ACCEPT ([SESS-8]).
pub const MIN_MAX_MESSAGE: usize = 1024;

/// Static configuration of an endpoint.
#[derive(Debug, Clone)]
pub struct Config {
    /// Human-readable name (1..=64 bytes), sent in HELLO.
    pub name: String,
    /// Heartbeat interval announced in HELLO.
    pub hb_interval: Duration,
    /// Largest frame on the link.
    pub mtu: usize,
    /// The max_message announced in SESSION_ACCEPT (and enforced on those sessions), capped by
    /// the kind's limit and raised to [`MIN_MAX_MESSAGE`]; `None` announces the kind's limit.
    pub max_message: Option<usize>,
    /// How long a permission prompt waits for the user.
    pub prompt_timeout: Duration,
    /// Offered capabilities.
    pub capabilities: Vec<Capability>,
    /// Offered services (session targets). `echo` echoes every message back.
    pub services: Vec<String>,
    /// Pairing PIN (6 digits), or `None` to refuse pairing.
    pub pin: Option<String>,
    /// Prompt policy.
    pub prompt_policy: PromptPolicy,
    /// First lock-out after 3 wrong PINs; doubles each time.
    pub lockout: Duration,
    /// Injected defects (suite self-test only).
    pub faults: Vec<Fault>,
    /// Names of the capabilities whose uses the driver carries out (a protocol converter's
    /// bridged devices, real hardware). A CAP_INVOKE for one that passes the checks of spec
    /// 11.4 raises [`Event::CapabilityRequest`], and its CAP_RESULT is sent when the driver
    /// calls [`Endpoint::complete_invoke`](super::Endpoint::complete_invoke). Every other capability is simulated: a use that
    /// passes the checks is answered at once with its args as result.
    pub external_capabilities: Vec<String>,
    /// How long the driver may take to complete an external use before the endpoint answers
    /// it with INTERNAL itself, so that every CAP_INVOKE gets exactly one CAP_RESULT.
    pub backend_timeout: Duration,
    /// Where in the windows the spec gives it the device acts (legal variants).
    pub timing: Timing,
}

/// Where in a window the spec allows the device acts. The defaults act at once (and keep the
/// previous epoch for the least the spec allows); other legal values let the conformance suite
/// prove it judges a device by the spec's bounds, not by the reference's habits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long after handling a reliable message its ACK is sent ([REL-6]: within 100 ms of
    /// receiving it). With a delay the message's own response (an echo, a SESSION_ACCEPT, ...)
    /// goes out before its ACK.
    pub ack_delay: Duration,
    /// How late after its RTO each retransmission is sent ([REL-8]: at most 100 ms).
    pub retransmit_late: Duration,
    /// How long records under the previous receive epoch are still accepted after a switch
    /// ([REC-12]: at least 2 s, and none after 2.5 s).
    pub prev_epoch_grace: Duration,
}

/// The least time [REC-12] lets a device keep its previous receive epoch.
pub const MIN_PREV_EPOCH_GRACE: Duration = Duration::from_secs(2);
/// The most time [REC-12] lets a device keep its previous receive epoch.
pub const MAX_PREV_EPOCH_GRACE: Duration = Duration::from_millis(2500);
/// The latest an ACK may follow its message ([REL-6]).
pub const MAX_ACK_DELAY: Duration = Duration::from_millis(100);
/// The latest a retransmission may follow its RTO ([REL-8]).
pub const MAX_RETRANSMIT_LATE: Duration = Duration::from_millis(100);

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            ack_delay: Duration::ZERO,
            retransmit_late: Duration::ZERO,
            prev_epoch_grace: MIN_PREV_EPOCH_GRACE,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            name: "softbus-device".into(),
            hb_interval: Duration::from_millis(1000),
            mtu: 1400,
            max_message: None,
            prompt_timeout: Duration::from_secs(30),
            capabilities: Vec::new(),
            services: vec!["echo".into(), "sink".into()],
            pin: None,
            prompt_policy: PromptPolicy::Ask,
            lockout: Duration::from_secs(30),
            faults: Vec::new(),
            external_capabilities: Vec::new(),
            backend_timeout: Duration::from_secs(10),
            timing: Timing::default(),
        }
    }
}

/// What happened, for the application (and the control channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(missing_docs)] // variant fields are self-describing
pub enum Event {
    /// Pairing succeeded; the peer's key is pinned.
    Paired { peer: DeviceId, addr: LinkAddr },
    /// Pairing failed.
    PairingFailed { addr: LinkAddr, code: Code },
    /// A secure connection is up.
    Connected {
        peer: DeviceId,
        addr: LinkAddr,
        initiator: bool,
    },
    /// A handshake failed or was rejected.
    HandshakeFailed { addr: LinkAddr, code: Code },
    /// A connection ended.
    Disconnected { peer: DeviceId, code: Code },
    /// The peer went silent for 3 heartbeat intervals.
    PeerLost { peer: DeviceId },
    /// A session is open.
    SessionOpened {
        peer: DeviceId,
        session_id: u32,
        service: String,
        kind: ChannelKind,
        inbound: bool,
    },
    /// The peer refused a session we opened.
    SessionRejected {
        peer: DeviceId,
        session_id: u32,
        code: Code,
    },
    /// A session closed.
    SessionClosed {
        peer: DeviceId,
        session_id: u32,
        code: Code,
        by_peer: bool,
    },
    /// A complete message arrived on a session.
    Message {
        peer: DeviceId,
        session_id: u32,
        #[serde(serialize_with = "ser_hex")]
        data: Vec<u8>,
    },
    /// A timed stream message was presented at its presentation instant (spec 17.4).
    Presented {
        peer: DeviceId,
        session_id: u32,
        msg_id: u32,
        pts_us: u64,
        at_us: u64,
        #[serde(serialize_with = "ser_hex")]
        data: Vec<u8>,
    },
    /// The user must answer a permission prompt ([`PromptPolicy::Ask`]).
    PermissionPrompt {
        prompt_id: u64,
        peer: DeviceId,
        capability: String,
        scope: Scope,
    },
    /// The answer to our permission request.
    PermissionResult {
        peer: DeviceId,
        req_id: u32,
        result: PermResult,
        grant_id: u32,
        expires_in_ms: u32,
    },
    /// The device revoked a grant we held.
    GrantRevoked { peer: DeviceId, grant_id: u32 },
    /// A peer used one of our capabilities under a grant.
    CapabilityUsed {
        peer: DeviceId,
        capability: String,
        grant_id: u32,
    },
    /// A use of an external capability ([`Config::external_capabilities`]) passed the
    /// permission checks: the driver carries it out and answers with
    /// [`Endpoint::complete_invoke`](super::Endpoint::complete_invoke) and this `handle`. Always preceded by its
    /// [`Event::CapabilityUsed`]. Not part of the control protocol's event list.
    CapabilityRequest {
        handle: u64,
        peer: DeviceId,
        capability: String,
        #[serde(serialize_with = "ser_hex")]
        args: Vec<u8>,
    },
    /// The answer to our capability invocation.
    CapabilityResult {
        peer: DeviceId,
        req_id: u32,
        status: Code,
        #[serde(serialize_with = "ser_hex")]
        result: Vec<u8>,
    },
    /// The peer's capability list.
    Capabilities {
        peer: DeviceId,
        req_id: u32,
        capabilities: Vec<Capability>,
    },
    /// The peer reported an error.
    PeerError {
        peer: DeviceId,
        code: Code,
        offending: u8,
    },
    /// The trust store changed and should be persisted.
    TrustStoreChanged,
}

fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

impl Serialize for DeviceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Counters of what the endpoint dropped or refused (exposed by `state`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Frames that did not parse.
    pub malformed_frames: u64,
    /// Frames larger than the MTU.
    pub oversized_frames: u64,
    /// Records that failed authentication.
    pub auth_failed: u64,
    /// Records refused by the replay window.
    pub replayed: u64,
    /// Records for unknown connections.
    pub unknown_connection: u64,
    /// Authenticated messages that did not parse.
    pub malformed_messages: u64,
    /// Handshakes refused.
    pub handshakes_rejected: u64,
    /// Pairings failed.
    pub pairing_failures: u64,
    /// Pairing requests refused by the rate limit.
    pub rate_limited: u64,
    /// Records sent.
    pub records_sent: u64,
    /// Records received and authenticated.
    pub records_received: u64,
    /// TIME_RESPONSEs that matched no outstanding request ([TIME-5]).
    pub time_unmatched: u64,
    /// TIME samples refused for inconsistent timestamps ([TIME-6]).
    pub time_inconsistent: u64,
    /// Timed messages dropped for arriving late ([TIME-11]).
    pub presentation_late: u64,
    /// Timed messages dropped: too far ahead, no estimate, queue full ([TIME-12]).
    pub presentation_dropped: u64,
}

/// The application called a command wrongly (the peer is not at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No established connection to the peer.
    #[error("no secure connection to {0}")]
    NotConnected(DeviceId),
    /// No such session.
    #[error("no open session {session_id} with {peer}")]
    UnknownSession {
        /// The peer.
        peer: DeviceId,
        /// The session.
        session_id: u32,
    },
    /// The message exceeds the channel's limit.
    #[error("message of {size} bytes exceeds the {kind:?} channel limit of {limit}")]
    TooLarge {
        /// Channel kind.
        kind: ChannelKind,
        /// Size given.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// PIN not six digits.
    #[error("a PIN is exactly 6 ASCII digits")]
    InvalidPin,
    /// A name is empty or longer than 64 bytes.
    #[error("{0} must be 1..=64 bytes")]
    InvalidName(&'static str),
    /// No such grant or prompt.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// A presentation time was given for a session that is not a stream session.
    #[error("session {session_id} with {peer} is not a stream session")]
    NotStream {
        /// The peer.
        peer: DeviceId,
        /// The session.
        session_id: u32,
    },
}

/// A snapshot of the endpoint for the control channel's `state` op.
#[derive(Debug, Clone, Serialize)]
pub struct StateSnapshot {
    /// Our device ID.
    pub device_id: DeviceId,
    /// Our name.
    pub name: String,
    /// Connections.
    pub peers: Vec<PeerSnapshot>,
    /// Grants we issued.
    pub grants: Vec<GrantSnapshot>,
    /// Pinned device IDs.
    pub pinned: Vec<String>,
    /// Pending prompts.
    pub prompts: Vec<u64>,
    /// Whether pairing is locked out.
    pub pairing_locked: bool,
    /// Counters.
    pub counters: Counters,
    /// Our timebase (spec 17.1) when the snapshot was taken, µs.
    pub clock_us: u64,
}

/// One connection in a [`StateSnapshot`].
#[derive(Debug, Clone, Serialize)]
pub struct PeerSnapshot {
    /// Peer device ID, once known.
    pub peer: Option<DeviceId>,
    /// Link address.
    pub addr: LinkAddr,
    /// `handshaking` or `established`.
    pub state: &'static str,
    /// Open session IDs.
    pub sessions: Vec<u32>,
    /// Records sent on this connection.
    pub tx_seq: u64,
    /// The clock synchronization with the peer, if one runs (spec 17.5).
    pub time: Option<TimeSnapshot>,
}

/// One grant in a [`StateSnapshot`].
#[derive(Debug, Clone, Serialize)]
pub struct GrantSnapshot {
    /// Grant ID.
    pub grant_id: u32,
    /// Holder.
    pub holder: DeviceId,
    /// Capability.
    pub capability: String,
    /// Scope.
    pub scope: Scope,
    /// Whether revoked.
    pub revoked: bool,
}
