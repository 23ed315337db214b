//! The sans-IO SoftBus device: pairing, handshake, records, reliable delivery, sessions,
//! capabilities, permissions and liveness (spec sections 5–12) in one state machine.
//!
//! # Using an [`Endpoint`]
//!
//! The endpoint never touches a socket, a clock or an RNG of its own: the driver feeds it and
//! drains it. Methods fall in four groups:
//!
//! * **inputs**: [`Endpoint::handle_datagram`] (a frame arrived on a link) and
//!   [`Endpoint::handle_timeout`] (the instant from [`Endpoint::poll_timeout`] has passed);
//! * **application commands**: [`Endpoint::pair`], [`Endpoint::connect`],
//!   [`Endpoint::open_session`], [`Endpoint::send`], [`Endpoint::request_permission`],
//!   [`Endpoint::revoke`], [`Endpoint::complete_invoke`] and the rest; each takes `now`;
//! * **outputs**: after any input or command, call [`Endpoint::poll_transmit`] until it returns
//!   `None` and send each datagram, then [`Endpoint::poll_event`] until `None`, then
//!   [`Endpoint::poll_timeout`] to learn when to call `handle_timeout` next;
//! * **getters**: [`Endpoint::state`], [`Endpoint::counters`], [`Endpoint::trust_store`].
//!
//! Randomness comes from a seed given to [`Endpoint::new`], so a simulation with a virtual clock
//! and a logged seed replays exactly.
//!
//! # Capability backends
//!
//! Every CAP_INVOKE is checked here, in the order of spec 11.4, before anything else sees it.
//! A use that passes is carried out by its backend: simulated capabilities answer at once with
//! their args; the capabilities named in [`Config::external_capabilities`] (a protocol
//! converter's bridged devices) raise [`Event::CapabilityRequest`], and the driver, which owns
//! the I/O, answers later with [`Endpoint::complete_invoke`]. The endpoint keeps the pending
//! use, so the CAP_RESULT goes to the right connection and request, at most once, and with
//! INTERNAL after [`Config::backend_timeout`] if the driver never answers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use crate::capability::{self, Capability};
use crate::crypto::{
    self, ct_eq, DeviceId, Identity, PairingTranscript, RecordKey, ReplayVerdict, ReplayWindow,
};
use crate::fault::Fault;
use crate::time::{Accuracy, ConnTime, Period, TimeSnapshot};
use crate::trust::{PersistedGrant, TrustStore};
use crate::wire::frame::{Body, Frame, RECORD_OVERHEAD, SPAKE2_MSG_LEN, TAG_LEN};
use crate::wire::hello::Hello;
use crate::wire::msg::{ChannelKind, Message, MsgBody, PermResult, Qos, Scope, DATA_OVERHEAD};
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
    /// Raise [`Event::PermissionPrompt`] and wait for [`Endpoint::answer_prompt`].
    Ask,
}

/// Static configuration of an endpoint.
#[derive(Debug, Clone)]
pub struct Config {
    /// Human-readable name (1..=64 bytes), sent in HELLO.
    pub name: String,
    /// Heartbeat interval announced in HELLO.
    pub hb_interval: Duration,
    /// Largest frame on the link.
    pub mtu: usize,
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
    /// calls [`Endpoint::complete_invoke`]. Every other capability is simulated: a use that
    /// passes the checks is answered at once with its args as result.
    pub external_capabilities: Vec<String>,
    /// How long the driver may take to complete an external use before the endpoint answers
    /// it with INTERNAL itself, so that every CAP_INVOKE gets exactly one CAP_RESULT.
    pub backend_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            name: "softbus-device".into(),
            hb_interval: Duration::from_millis(1000),
            mtu: 1400,
            prompt_timeout: Duration::from_secs(30),
            capabilities: Vec::new(),
            services: vec!["echo".into(), "sink".into()],
            pin: None,
            prompt_policy: PromptPolicy::Ask,
            lockout: Duration::from_secs(30),
            faults: Vec::new(),
            external_capabilities: Vec::new(),
            backend_timeout: Duration::from_secs(10),
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
    /// [`Endpoint::complete_invoke`] and this `handle`. Always preceded by its
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

// ---------------------------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------------------------

const HANDSHAKE_RETRY: Duration = Duration::from_millis(500);
/// HANDSHAKE_1 is sent at most this many times (1 + 4 retransmissions, doubling from 500 ms).
const HANDSHAKE_TRIES: u32 = 5;
const HALF_OPEN_LIFETIME: Duration = Duration::from_secs(10);
const PAIRING_TIMEOUT: Duration = Duration::from_secs(10);
const PAIR_FAILURE_WINDOW: Duration = Duration::from_secs(60);
const PAIR_FAILURES_BEFORE_LOCKOUT: usize = 3;
const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
const INITIAL_RTO: Duration = Duration::from_millis(200);
const MAX_RTO: Duration = Duration::from_secs(2);
const MAX_TRIES: u32 = 8;
const SEND_WINDOW: usize = 64;
const RECV_AHEAD: u32 = 64;
const PREV_KEY_LIFETIME: Duration = Duration::from_secs(2);
const MAX_SESSIONS: usize = 64;
const LOST_AFTER_INTERVALS: u32 = 3;

struct PairInit {
    addr: LinkAddr,
    spake: Option<spake2::Spake2<spake2::Ed25519Group>>,
    msg_a: Vec<u8>,
    deadline: Instant,
    transcript: Option<(PairingTranscript, [u8; 32])>,
}

struct PairResp {
    /// The PAIR_RESPONSE sent, repeated byte for byte for a repeated PAIR_REQUEST.
    response: Vec<u8>,
    transcript: PairingTranscript,
    peer_key: [u8; 32],
    deadline: Instant,
}

enum ConnState {
    /// Initiator sent HANDSHAKE_1.
    AwaitHs2 {
        hs: Box<snow::HandshakeState>,
        hs1: Vec<u8>,
        tries: u32,
        retry_at: Instant,
    },
    /// Responder sent HANDSHAKE_2.
    AwaitHs3 {
        hs: Box<snow::HandshakeState>,
        hs2: Vec<u8>,
        deadline: Instant,
    },
    /// Keys are split; records flow.
    Established(Box<Secure>),
}

struct Secure {
    peer: DeviceId,
    peer_hb: Duration,
    /// The largest frame the peer accepts (its HELLO max_frame).
    peer_max_frame: usize,
    tx: RecordKey,
    rx: RecordKey,
    rx_prev: Option<(RecordKey, Instant)>,
    tx_seq: u64,
    replay: ReplayWindow,
    /// The initiator repeats HANDSHAKE_3 until the first record arrives from the responder.
    hs3: Option<Vec<u8>>,
    next_rseq: u32,
    unacked: BTreeMap<u32, Pending>,
    queue: BTreeMap<std::cmp::Reverse<Qos>, VecDeque<MsgBody>>,
    rx_next: u32,
    rx_buf: BTreeMap<u32, MsgBody>,
    sessions: BTreeMap<u32, Session>,
    next_session: u32,
    /// Clock synchronization with the peer and timed messages waiting (spec 17).
    time: ConnTime,
}

struct Pending {
    plaintext: Vec<u8>,
    next_send: Instant,
    rto: Duration,
    tries: u32,
}

struct Conn {
    local_id: u32,
    remote_id: u32,
    addr: LinkAddr,
    initiator: bool,
    state: ConnState,
    last_tx: Instant,
    last_rx: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SessionState {
    Opening,
    Open,
}

struct Session {
    /// The peer opened it: we provide the service.
    inbound: bool,
    /// The max_message the peer announced in SESSION_ACCEPT (sessions we opened).
    peer_max_message: Option<usize>,
    kind: ChannelKind,
    qos: Qos,
    service: String,
    state: SessionState,
    next_msg_id: u32,
    reassembly: BTreeMap<u32, Reassembly>,
    last_stream_delivered: Option<u32>,
}

struct Reassembly {
    frag_count: u16,
    parts: BTreeMap<u16, Vec<u8>>,
    size: usize,
}

struct Grant {
    holder: DeviceId,
    capability: String,
    scope: Scope,
    expires_at: Option<Instant>,
    conn_local_id: u32,
    used: bool,
    revoked: bool,
}

/// A use of an external capability the driver has not completed yet.
struct PendingInvocation {
    conn_local_id: u32,
    req_id: u32,
    capability: String,
    deadline: Instant,
}

struct PendingPrompt {
    conn_local_id: u32,
    peer: DeviceId,
    req_id: u32,
    capability: String,
    scope: Scope,
    duration_s: u32,
    deadline: Instant,
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

/// One SoftBus device, sans IO. See the module docs for the call order.
pub struct Endpoint {
    cfg: Config,
    identity: Identity,
    rng: ChaCha20Rng,
    trust: TrustStore,
    epoch_instant: Instant,
    epoch_unix: u64,
    pin: Option<String>,
    policy: PromptPolicy,
    conns: HashMap<u32, Conn>,
    pair_init: HashMap<u32, PairInit>,
    pair_resp: HashMap<(LinkAddr, u32), PairResp>,
    pair_failures: VecDeque<Instant>,
    lockout_until: Option<Instant>,
    lockouts: u32,
    grants: BTreeMap<u32, Grant>,
    prompts: BTreeMap<u64, PendingPrompt>,
    next_prompt: u64,
    invocations: BTreeMap<u64, PendingInvocation>,
    next_invocation: u64,
    next_req: u32,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    /// TIME_RESPONSEs sent (for [`Fault::TimeClockBackwards`]).
    time_responses: u64,
}

impl Endpoint {
    /// A new endpoint. `now` and `unix_now` anchor wall-clock timestamps in the trust store;
    /// `seed` drives every random choice (keys, IDs, leisure).
    pub fn new(
        cfg: Config,
        identity: Identity,
        trust: TrustStore,
        seed: [u8; 32],
        now: Instant,
        unix_now: u64,
    ) -> Endpoint {
        let mut ep = Endpoint {
            pin: cfg.pin.clone(),
            policy: cfg.prompt_policy,
            cfg,
            identity,
            rng: ChaCha20Rng::from_seed(seed),
            trust,
            epoch_instant: now,
            epoch_unix: unix_now,
            conns: HashMap::new(),
            pair_init: HashMap::new(),
            pair_resp: HashMap::new(),
            pair_failures: VecDeque::new(),
            lockout_until: None,
            lockouts: 0,
            grants: BTreeMap::new(),
            prompts: BTreeMap::new(),
            next_prompt: 1,
            invocations: BTreeMap::new(),
            next_invocation: 1,
            next_req: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            time_responses: 0,
        };
        ep.restore_persisted_grants();
        ep
    }

    fn restore_persisted_grants(&mut self) {
        for g in self.trust.grants.clone() {
            if let Some(holder) = DeviceId::from_hex(&g.holder) {
                self.grants.insert(
                    g.grant_id,
                    Grant {
                        holder,
                        capability: g.capability,
                        scope: Scope::UntilRevoked,
                        expires_at: None,
                        conn_local_id: 0,
                        used: false,
                        revoked: false,
                    },
                );
            }
        }
    }

    fn has(&self, f: Fault) -> bool {
        self.cfg.faults.contains(&f)
    }

    // ------------------------------------------------------------------ getters

    /// Our identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The trust store (persist it on [`Event::TrustStoreChanged`]).
    pub fn trust_store(&self) -> &TrustStore {
        &self.trust
    }

    /// Drop and refusal counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether a pairing PIN is set (the advert's `pair`).
    pub fn has_pin(&self) -> bool {
        self.pin.is_some()
    }

    /// The current prompt policy.
    pub fn prompt_policy(&self) -> PromptPolicy {
        self.policy
    }

    /// Session keys of established connections: `(peer, tx key, rx key)` as hex, for the
    /// Wireshark key log.
    pub fn session_keys(&self) -> Vec<(u32, u32, String, String)> {
        self.conns
            .values()
            .filter_map(|c| match &c.state {
                ConnState::Established(s) => Some((
                    c.local_id,
                    c.remote_id,
                    hex::encode(s.tx.raw()),
                    hex::encode(s.rx.raw()),
                )),
                _ => None,
            })
            .collect()
    }

    /// A snapshot for the control channel.
    pub fn state(&self, now: Instant) -> StateSnapshot {
        let mut peers: Vec<_> = self
            .conns
            .values()
            .map(|c| match &c.state {
                ConnState::Established(s) => PeerSnapshot {
                    peer: Some(s.peer),
                    addr: c.addr.clone(),
                    state: "established",
                    sessions: s
                        .sessions
                        .iter()
                        .filter(|(_, x)| x.state == SessionState::Open)
                        .map(|(id, _)| *id)
                        .collect(),
                    tx_seq: s.tx_seq,
                    time: s.time.snapshot(now).map(|mut t| {
                        if self.has(Fault::TimeOffsetSign) {
                            t.offset_us = t.offset_us.map(|o| -o);
                        }
                        t
                    }),
                },
                _ => PeerSnapshot {
                    peer: None,
                    addr: c.addr.clone(),
                    state: "handshaking",
                    sessions: vec![],
                    tx_seq: 0,
                    time: None,
                },
            })
            .collect();
        peers.sort_by(|a, b| a.addr.cmp(&b.addr));
        StateSnapshot {
            device_id: self.identity.device_id(),
            name: self.cfg.name.clone(),
            peers,
            grants: self
                .grants
                .iter()
                .map(|(id, g)| GrantSnapshot {
                    grant_id: *id,
                    holder: g.holder,
                    capability: g.capability.clone(),
                    scope: g.scope,
                    revoked: g.revoked,
                })
                .collect(),
            pinned: self.trust.peers.keys().cloned().collect(),
            prompts: self.prompts.keys().copied().collect(),
            pairing_locked: self.lockout_until.is_some_and(|t| now < t),
            counters: self.counters.clone(),
            clock_us: self.clock_us(now),
        }
    }

    /// Our timebase at `now`, µs (spec 17.1): microseconds since the endpoint was created.
    pub fn clock_us(&self, now: Instant) -> u64 {
        crate::time::filter::micros_since(self.epoch_instant, now)
    }

    // ------------------------------------------------------------------ outputs

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |i: Instant| t = Some(t.map_or(i, |x| x.min(i)));
        for p in self.pair_init.values() {
            at(p.deadline);
        }
        for p in self.pair_resp.values() {
            at(p.deadline);
        }
        for p in self.prompts.values() {
            at(p.deadline);
        }
        for p in self.invocations.values() {
            at(p.deadline);
        }
        for c in self.conns.values() {
            match &c.state {
                ConnState::AwaitHs2 { retry_at, .. } => at(*retry_at),
                ConnState::AwaitHs3 { deadline, .. } => at(*deadline),
                ConnState::Established(s) => {
                    if !self.has(Fault::SkipHeartbeat) {
                        at(c.last_tx + self.cfg.hb_interval);
                    }
                    if !self.has(Fault::NoDeviceLoss) {
                        at(c.last_rx + s.peer_hb * LOST_AFTER_INTERVALS);
                    }
                    if let Some(p) = s.unacked.values().map(|p| p.next_send).min() {
                        at(p);
                    }
                    if let Some((_, exp)) = &s.rx_prev {
                        at(*exp);
                    }
                    if let Some(t) = s.time.poll_timeout() {
                        at(t);
                    }
                }
            }
        }
        t
    }

    // ------------------------------------------------------------------ commands

    /// Forget every peer, connection, grant and pairing attempt; clear the PIN and set the prompt
    /// policy to deny (spec 14). The identity is kept.
    pub fn reset(&mut self) {
        self.trust = TrustStore::new();
        self.conns.clear();
        self.pair_init.clear();
        self.pair_resp.clear();
        self.pair_failures.clear();
        self.lockout_until = None;
        self.lockouts = 0;
        self.grants.clear();
        self.prompts.clear();
        self.invocations.clear();
        self.transmits.clear();
        self.events.clear();
        self.counters = Counters::default();
        // Spec 14: after reset a device has no PIN and denies every prompt until told otherwise.
        self.pin = None;
        self.policy = PromptPolicy::Deny;
        self.events.push_back(Event::TrustStoreChanged);
    }

    /// Set the pairing PIN.
    pub fn set_pin(&mut self, pin: &str) -> Result<(), ApiError> {
        if !crypto::is_valid_pin(pin) {
            return Err(ApiError::InvalidPin);
        }
        self.pin = Some(pin.to_string());
        Ok(())
    }

    /// Set the prompt policy.
    pub fn set_prompt_policy(&mut self, policy: PromptPolicy) {
        self.policy = policy;
    }

    /// Start PIN pairing with the device at `addr`.
    pub fn pair(&mut self, now: Instant, addr: LinkAddr, pin: &str) -> Result<u32, ApiError> {
        if !crypto::is_valid_pin(pin) {
            return Err(ApiError::InvalidPin);
        }
        let pairing_id = self.rng.gen_range(1..=u32::MAX);
        let (spake, msg_a) = crypto::spake2_start_a(pin, &mut self.rng);
        let Ok(spake_msg) = <[u8; SPAKE2_MSG_LEN]>::try_from(msg_a.as_slice()) else {
            unreachable!("SPAKE2 Ed25519 messages are 33 bytes")
        };
        self.send_frame(
            &addr,
            Frame {
                conn_id: 0,
                body: Body::PairRequest {
                    pairing_id,
                    static_key: *self.identity.public(),
                    spake_msg,
                },
            },
        );
        self.pair_init.insert(
            pairing_id,
            PairInit {
                addr,
                spake: Some(spake),
                msg_a,
                deadline: now + PAIRING_TIMEOUT,
                transcript: None,
            },
        );
        Ok(pairing_id)
    }

    /// Start a Noise handshake with the (pinned) device at `addr`.
    pub fn connect(&mut self, now: Instant, addr: LinkAddr) {
        let local_id = self.fresh_conn_id();
        let mut eph = [0u8; 32];
        self.rng.fill_bytes(&mut eph);
        let hs = crypto::noise_builder(&self.identity)
            .fixed_ephemeral_key_for_testing_only(&eph)
            .build_initiator();
        let Ok(mut hs) = hs else {
            unreachable!("valid static key and params")
        };
        let mut buf = [0u8; 256];
        let Ok(n) = hs.write_message(&[], &mut buf) else {
            unreachable!("message 1 of XX always fits")
        };
        let frame = Frame {
            conn_id: 0,
            body: Body::Handshake1 {
                sender_conn_id: local_id,
                noise: buf[..n].to_vec(),
            },
        }
        .to_vec();
        self.transmits.push_back(Transmit {
            dst: addr.clone(),
            data: frame.clone(),
        });
        self.conns.insert(
            local_id,
            Conn {
                local_id,
                remote_id: 0,
                addr,
                initiator: true,
                state: ConnState::AwaitHs2 {
                    hs: Box::new(hs),
                    hs1: frame,
                    tries: 1,
                    retry_at: now + HANDSHAKE_RETRY,
                },
                last_tx: now,
                last_rx: now,
            },
        );
    }

    /// Open a session to `service` on `peer`; returns the session ID. The session is usable
    /// after [`Event::SessionOpened`].
    pub fn open_session(
        &mut self,
        now: Instant,
        peer: DeviceId,
        service: &str,
        kind: ChannelKind,
        qos: Qos,
    ) -> Result<u32, ApiError> {
        if service.is_empty() || service.len() > 64 {
            return Err(ApiError::InvalidName("service"));
        }
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let conn = self
            .conns
            .get_mut(&local_id)
            .ok_or(ApiError::NotConnected(peer))?;
        let initiator = conn.initiator;
        let ConnState::Established(s) = &mut conn.state else {
            return Err(ApiError::NotConnected(peer));
        };
        let mut id = s.next_session;
        while s.sessions.contains_key(&id) {
            id = id.wrapping_add(2);
        }
        debug_assert_eq!(id % 2, if initiator { 0 } else { 1 });
        s.next_session = id.wrapping_add(2);
        s.sessions.insert(
            id,
            Session {
                inbound: false,
                peer_max_message: None,
                kind,
                qos,
                service: service.to_string(),
                state: SessionState::Opening,
                next_msg_id: 1,
                reassembly: BTreeMap::new(),
                last_stream_delivered: None,
            },
        );
        self.send_reliable(
            now,
            local_id,
            Qos::Realtime,
            MsgBody::SessionOpen {
                session_id: id,
                kind,
                qos,
                service: service.to_string(),
            },
        );
        Ok(id)
    }

    /// Start (or re-level) clock synchronization with `peer` (spec 17.3, control op `time_sync`).
    pub fn start_time_sync(
        &mut self,
        now: Instant,
        peer: DeviceId,
        accuracy: Accuracy,
        period: Period,
    ) -> Result<(), ApiError> {
        let s = self.secure_mut(peer)?;
        s.time.start(now, accuracy, period);
        Ok(())
    }

    /// Stop clock synchronization with `peer` and forget its samples.
    pub fn stop_time_sync(&mut self, peer: DeviceId) -> Result<(), ApiError> {
        self.secure_mut(peer)?.time.stop();
        Ok(())
    }

    /// The established connection to `peer`.
    fn secure_mut(&mut self, peer: DeviceId) -> Result<&mut Secure, ApiError> {
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        match self.conns.get_mut(&local_id).map(|c| &mut c.state) {
            Some(ConnState::Established(s)) => Ok(s),
            _ => Err(ApiError::NotConnected(peer)),
        }
    }

    /// Send one message on an open session, fragmented to the link MTU.
    pub fn send(
        &mut self,
        now: Instant,
        peer: DeviceId,
        session_id: u32,
        data: &[u8],
    ) -> Result<(), ApiError> {
        self.send_message(now, peer, session_id, data, None)
    }

    /// Send one message on an open stream session as TIMED_DATA, to be presented at `pts_us` of
    /// our timebase ([`Endpoint::clock_us`]; spec 17.4).
    pub fn send_timed(
        &mut self,
        now: Instant,
        peer: DeviceId,
        session_id: u32,
        data: &[u8],
        pts_us: u64,
    ) -> Result<(), ApiError> {
        self.send_message(now, peer, session_id, data, Some(pts_us))
    }

    fn send_message(
        &mut self,
        now: Instant,
        peer: DeviceId,
        session_id: u32,
        data: &[u8],
        pts_us: Option<u64>,
    ) -> Result<(), ApiError> {
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let (kind, qos, msg_id, peer_max_frame) = {
            let Some(Conn {
                state: ConnState::Established(s),
                ..
            }) = self.conns.get_mut(&local_id)
            else {
                return Err(ApiError::NotConnected(peer));
            };
            let sess = s
                .sessions
                .get_mut(&session_id)
                .filter(|x| x.state == SessionState::Open)
                .ok_or(ApiError::UnknownSession { peer, session_id })?;
            // The peer's announced limit when it accepted our session (spec SESS-13).
            let limit = sess.peer_max_message.unwrap_or(sess.kind.max_message());
            if data.len() > limit && !self.cfg.faults.contains(&Fault::AcceptOversizedMessage) {
                return Err(ApiError::TooLarge {
                    kind: sess.kind,
                    size: data.len(),
                    limit,
                });
            }
            if pts_us.is_some() && sess.kind != ChannelKind::Stream {
                return Err(ApiError::NotStream { peer, session_id });
            }
            let msg_id = sess.next_msg_id;
            sess.next_msg_id = sess.next_msg_id.wrapping_add(1);
            (sess.kind, sess.qos, msg_id, s.peer_max_frame)
        };
        // TIMED_DATA carries 8 bytes more header than DATA.
        let max_frag = self.max_fragment(peer_max_frame) - if pts_us.is_some() { 8 } else { 0 };
        let frag_count = data.len().div_ceil(max_frag).max(1);
        let Ok(frag_count) = u16::try_from(frag_count) else {
            return Err(ApiError::TooLarge {
                kind,
                size: data.len(),
                limit: max_frag * u16::MAX as usize,
            });
        };
        for i in 0..frag_count {
            let start = i as usize * max_frag;
            let end = (start + max_frag).min(data.len());
            let payload = data[start..end].to_vec();
            let body = match pts_us {
                Some(pts_us) => MsgBody::TimedData {
                    session_id,
                    msg_id,
                    frag_index: i,
                    frag_count,
                    pts_us,
                    payload,
                },
                None => MsgBody::Data {
                    session_id,
                    msg_id,
                    frag_index: i,
                    frag_count,
                    payload,
                },
            };
            if kind.is_reliable() {
                self.send_reliable(now, local_id, qos, body);
            } else {
                self.send_unreliable(now, local_id, body);
            }
        }
        Ok(())
    }

    /// Close a session with `code`.
    pub fn close_session(
        &mut self,
        now: Instant,
        peer: DeviceId,
        session_id: u32,
        code: Code,
    ) -> Result<(), ApiError> {
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let removed = match self.conns.get_mut(&local_id) {
            Some(Conn {
                state: ConnState::Established(s),
                ..
            }) => s.sessions.remove(&session_id).is_some(),
            _ => false,
        };
        if !removed {
            return Err(ApiError::UnknownSession { peer, session_id });
        }
        self.send_reliable(
            now,
            local_id,
            Qos::Realtime,
            MsgBody::SessionClose { session_id, code },
        );
        self.events.push_back(Event::SessionClosed {
            peer,
            session_id,
            code,
            by_peer: false,
        });
        Ok(())
    }

    /// Ask `peer` for a capability list; the answer arrives as [`Event::Capabilities`].
    pub fn query_capabilities(&mut self, now: Instant, peer: DeviceId) -> Result<u32, ApiError> {
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let req_id = self.fresh_req();
        self.send_reliable(
            now,
            local_id,
            Qos::Interactive,
            MsgBody::CapQuery { req_id },
        );
        Ok(req_id)
    }

    /// Ask `peer` for permission to use `capability`.
    pub fn request_permission(
        &mut self,
        now: Instant,
        peer: DeviceId,
        capability: &str,
        scope: Scope,
        duration_s: u32,
    ) -> Result<u32, ApiError> {
        if capability.is_empty() || capability.len() > 64 {
            return Err(ApiError::InvalidName("capability"));
        }
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let req_id = self.fresh_req();
        self.send_reliable(
            now,
            local_id,
            Qos::Interactive,
            MsgBody::PermRequest {
                req_id,
                scope,
                duration_s,
                capability: capability.to_string(),
            },
        );
        Ok(req_id)
    }

    /// Use `capability` on `peer` under `grant_id`.
    pub fn invoke(
        &mut self,
        now: Instant,
        peer: DeviceId,
        capability: &str,
        grant_id: u32,
        args: &[u8],
    ) -> Result<u32, ApiError> {
        if capability.is_empty() || capability.len() > 64 {
            return Err(ApiError::InvalidName("capability"));
        }
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let req_id = self.fresh_req();
        self.send_reliable(
            now,
            local_id,
            Qos::Interactive,
            MsgBody::CapInvoke {
                req_id,
                grant_id,
                capability: capability.to_string(),
                args: args[..args.len().min(u16::MAX as usize)].to_vec(),
            },
        );
        Ok(req_id)
    }

    /// Answer the use of an external capability announced by [`Event::CapabilityRequest`]:
    /// send its CAP_RESULT with `status` and `result` (at most 65535 bytes are sent; a refusal
    /// or failure may carry a diagnostic text). Errors with [`ApiError::NotFound`] when the
    /// handle is unknown, already completed, timed out ([`Config::backend_timeout`]), or its
    /// connection has ended (a `reset` included): nothing is sent then.
    pub fn complete_invoke(
        &mut self,
        now: Instant,
        handle: u64,
        status: Code,
        result: &[u8],
    ) -> Result<(), ApiError> {
        let p = self
            .invocations
            .remove(&handle)
            .ok_or(ApiError::NotFound("capability invocation"))?;
        self.cap_result(now, p.conn_local_id, p.req_id, status, result.to_vec());
        Ok(())
    }

    /// Revoke a grant we issued; the holder is told with PERM_REVOKE.
    pub fn revoke(&mut self, now: Instant, grant_id: u32) -> Result<(), ApiError> {
        let g = self
            .grants
            .get_mut(&grant_id)
            .ok_or(ApiError::NotFound("grant"))?;
        g.revoked = true;
        let holder = g.holder;
        let persisted = g.scope == Scope::UntilRevoked;
        if persisted {
            self.trust.grants.retain(|p| p.grant_id != grant_id);
            self.events.push_back(Event::TrustStoreChanged);
        }
        if let Some(local_id) = self.conn_of(holder) {
            self.send_reliable(
                now,
                local_id,
                Qos::Realtime,
                MsgBody::PermRevoke { grant_id },
            );
        }
        Ok(())
    }

    /// Answer a pending permission prompt ([`PromptPolicy::Ask`]).
    pub fn answer_prompt(
        &mut self,
        now: Instant,
        prompt_id: u64,
        approve: bool,
    ) -> Result<(), ApiError> {
        let p = self
            .prompts
            .remove(&prompt_id)
            .ok_or(ApiError::NotFound("prompt"))?;
        if approve {
            self.grant(
                now,
                p.conn_local_id,
                p.peer,
                p.req_id,
                &p.capability,
                p.scope,
                p.duration_s,
            );
        } else {
            self.perm_response(now, p.conn_local_id, p.req_id, PermResult::Denied, 0, 0);
        }
        Ok(())
    }

    /// Close the connection to `peer` with `code`.
    pub fn disconnect(&mut self, now: Instant, peer: DeviceId, code: Code) -> Result<(), ApiError> {
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        self.send_unreliable(
            now,
            local_id,
            MsgBody::Close {
                code,
                reason: String::new(),
            },
        );
        self.drop_conn(local_id, code, false);
        Ok(())
    }

    // ------------------------------------------------------------------ inputs

    /// A frame arrived from `from`. Malformed input is counted and dropped; nothing panics.
    pub fn handle_datagram(&mut self, now: Instant, from: LinkAddr, data: &[u8]) {
        if data.len() > self.cfg.mtu {
            if self.has(Fault::OversizedCrash) {
                panic!("fault oversized-crash: frame of {} bytes", data.len());
            }
            self.counters.oversized_frames += 1;
            return;
        }
        let frame = match Frame::parse(data) {
            Ok(f) => f,
            Err(err) => {
                self.counters.malformed_frames += 1;
                if let crate::wire::WireError::UnsupportedVersion(_) = err {
                    if data.get(1) == Some(&0x10) {
                        self.send_frame(
                            &from,
                            Frame {
                                conn_id: sender_conn_id_of(data),
                                body: Body::HandshakeReject {
                                    code: Code::UnsupportedVersion,
                                },
                            },
                        );
                    }
                }
                tracing::debug!(%from, %err, "dropped malformed frame");
                return;
            }
        };
        match frame.body {
            Body::PairRequest {
                pairing_id,
                static_key,
                spake_msg,
            } => self.on_pair_request(now, from, pairing_id, static_key, spake_msg),
            Body::PairResponse {
                pairing_id,
                static_key,
                spake_msg,
                confirm,
            } => self.on_pair_response(now, from, pairing_id, static_key, spake_msg, confirm),
            Body::PairConfirm {
                pairing_id,
                confirm,
            } => self.on_pair_confirm(now, from, pairing_id, confirm),
            Body::PairResult {
                pairing_id,
                status,
                mac,
            } => self.on_pair_result(now, from, pairing_id, status, mac),
            Body::Handshake1 {
                sender_conn_id,
                noise,
            } => self.on_hs1(now, from, sender_conn_id, &noise),
            Body::Handshake2 {
                sender_conn_id,
                noise,
            } => self.on_hs2(now, from, frame.conn_id, sender_conn_id, &noise),
            Body::Handshake3 { noise } => self.on_hs3(now, from, frame.conn_id, &noise),
            Body::HandshakeReject { code } => self.on_hs_reject(from, frame.conn_id, code),
            Body::Record {
                epoch,
                seq,
                ciphertext,
            } => self.on_record(now, from, frame.conn_id, epoch, seq, &ciphertext),
        }
    }

    /// The instant from [`Endpoint::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Pairing attempts that went nowhere. A responder-side attempt that never confirmed
        // counts as a failed guess: each PAIR_REQUEST lets an attacker test one PIN.
        let expired: Vec<u32> = self
            .pair_init
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = self.pair_init.remove(&id) {
                self.events.push_back(Event::PairingFailed {
                    addr: p.addr,
                    code: Code::PairingFailed,
                });
            }
        }
        let expired: Vec<_> = self
            .pair_resp
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.pair_resp.remove(&k);
            self.record_pair_failure(now);
        }
        // Prompts nobody answered.
        let due: Vec<u64> = self
            .prompts
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = self.prompts.remove(&id) {
                self.perm_response(now, p.conn_local_id, p.req_id, PermResult::Timeout, 0, 0);
            }
        }
        // External uses the driver never completed.
        let due: Vec<u64> = self
            .invocations
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(h, _)| *h)
            .collect();
        for handle in due {
            if let Some(p) = self.invocations.remove(&handle) {
                let why = format!(
                    "{} did not complete within {} ms",
                    p.capability,
                    self.cfg.backend_timeout.as_millis()
                );
                self.cap_result(
                    now,
                    p.conn_local_id,
                    p.req_id,
                    Code::Internal,
                    why.into_bytes(),
                );
            }
        }
        let ids: Vec<u32> = self.conns.keys().copied().collect();
        for id in ids {
            self.conn_timers(now, id);
        }
    }

    fn conn_timers(&mut self, now: Instant, local_id: u32) {
        let skip_hb = self.has(Fault::SkipHeartbeat);
        let no_loss = self.has(Fault::NoDeviceLoss);
        let no_resync = self.has(Fault::TimeNoResync);
        let hb = self.cfg.hb_interval;
        let Some(conn) = self.conns.get_mut(&local_id) else {
            return;
        };
        match &mut conn.state {
            ConnState::AwaitHs2 {
                hs1,
                tries,
                retry_at,
                ..
            } => {
                if *retry_at <= now {
                    if *tries >= HANDSHAKE_TRIES {
                        let addr = conn.addr.clone();
                        self.conns.remove(&local_id);
                        self.events.push_back(Event::HandshakeFailed {
                            addr,
                            code: Code::PeerLost,
                        });
                    } else {
                        *tries += 1;
                        *retry_at = now + HANDSHAKE_RETRY * (1 << (*tries - 1).min(8));
                        let t = Transmit {
                            dst: conn.addr.clone(),
                            data: hs1.clone(),
                        };
                        self.transmits.push_back(t);
                    }
                }
            }
            ConnState::AwaitHs3 { deadline, .. } => {
                if *deadline <= now {
                    self.conns.remove(&local_id);
                }
            }
            ConnState::Established(s) => {
                if let Some((_, exp)) = &s.rx_prev {
                    if *exp <= now {
                        s.rx_prev = None;
                    }
                }
                if !no_loss && now >= conn.last_rx + s.peer_hb * LOST_AFTER_INTERVALS {
                    let peer = s.peer;
                    self.drop_conn(local_id, Code::PeerLost, true);
                    self.events.push_back(Event::PeerLost { peer });
                    return;
                }
                // Retransmissions.
                let due: Vec<u32> = s
                    .unacked
                    .iter()
                    .filter(|(_, p)| p.next_send <= now)
                    .map(|(r, _)| *r)
                    .collect();
                let mut lost = false;
                let mut resend = Vec::new();
                for r in due {
                    if let Some(p) = s.unacked.get_mut(&r) {
                        if p.tries >= MAX_TRIES {
                            lost = true;
                            break;
                        }
                        p.tries += 1;
                        p.rto = (p.rto * 2).min(MAX_RTO);
                        p.next_send = now + p.rto;
                        resend.push(p.plaintext.clone());
                    }
                }
                if lost {
                    let peer = s.peer;
                    self.drop_conn(local_id, Code::PeerLost, true);
                    self.events.push_back(Event::PeerLost { peer });
                    return;
                }
                // TIME (spec 17): a request due, messages due for presentation.
                let epoch = self.epoch_instant;
                let peer = s.peer;
                let mut request = s.time.poll_request(now, epoch);
                let first_round = s
                    .time
                    .level()
                    .map_or(0, |(a, _)| usize::from(a.exchanges()));
                if no_resync
                    && s.time
                        .estimate(now)
                        .is_some_and(|e| e.samples >= first_round)
                {
                    request = None; // drawn (so its timeout paces the timer) but never sent
                }
                let presented: Vec<_> =
                    std::iter::from_fn(|| s.time.poll_presented(now, epoch)).collect();
                if !resend.is_empty() {
                    if let Some(hs3) = s.hs3.clone() {
                        self.transmits.push_back(Transmit {
                            dst: conn.addr.clone(),
                            data: hs3,
                        });
                    }
                }
                for pt in resend {
                    self.seal_and_send(now, local_id, &pt);
                }
                for p in presented {
                    self.events.push_back(Event::Presented {
                        peer,
                        session_id: p.session_id,
                        msg_id: p.msg_id,
                        pts_us: p.pts_us,
                        at_us: p.at_us,
                        data: p.data,
                    });
                }
                if let Some(req) = request {
                    self.send_unreliable(now, local_id, req);
                }
                if !skip_hb {
                    if let Some(conn) = self.conns.get(&local_id) {
                        if now >= conn.last_tx + hb {
                            self.send_unreliable(now, local_id, MsgBody::Heartbeat);
                        }
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ pairing

    fn record_pair_failure(&mut self, now: Instant) {
        self.counters.pairing_failures += 1;
        if self.has(Fault::NoPinRateLimit) {
            return;
        }
        self.pair_failures.push_back(now);
        while self
            .pair_failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > PAIR_FAILURE_WINDOW)
        {
            self.pair_failures.pop_front();
        }
        if self.pair_failures.len() >= PAIR_FAILURES_BEFORE_LOCKOUT {
            let factor = 1u32 << self.lockouts.min(10);
            self.lockout_until = Some(now + (self.cfg.lockout * factor).min(MAX_LOCKOUT));
            self.lockouts += 1;
            self.pair_failures.clear();
        }
    }

    fn pair_result(&mut self, to: &LinkAddr, pairing_id: u32, status: Code, mac: [u8; 32]) {
        self.send_frame(
            to,
            Frame {
                conn_id: 0,
                body: Body::PairResult {
                    pairing_id,
                    status,
                    mac,
                },
            },
        );
    }

    fn on_pair_request(
        &mut self,
        now: Instant,
        from: LinkAddr,
        pairing_id: u32,
        peer_key: [u8; 32],
        msg_a: [u8; SPAKE2_MSG_LEN],
    ) {
        if self.lockout_until.is_some_and(|t| now < t) {
            self.counters.rate_limited += 1;
            self.pair_result(&from, pairing_id, Code::RateLimited, [0; 32]);
            return;
        }
        if let Some(p) = self.pair_resp.get(&(from.clone(), pairing_id)) {
            // A repeated request (our response was lost): answer it identically.
            let t = Transmit {
                dst: from,
                data: p.response.clone(),
            };
            self.transmits.push_back(t);
            return;
        }
        // One pending pairing at a time: a new attempt replaces the pending one, which counts
        // as a failed guess (otherwise parallel requests would bypass the rate limit).
        if !self.pair_resp.is_empty() {
            self.pair_resp.clear();
            self.record_pair_failure(now);
            if self.lockout_until.is_some_and(|t| now < t) {
                self.counters.rate_limited += 1;
                self.pair_result(&from, pairing_id, Code::RateLimited, [0; 32]);
                return;
            }
        }
        let Some(pin) = self.pin.clone() else {
            self.pair_result(&from, pairing_id, Code::PairingFailed, [0; 32]);
            return;
        };
        let (spake, msg_b) = crypto::spake2_start_b(&pin, &mut self.rng);
        let Ok(key) = spake.finish(&msg_a) else {
            self.counters.pairing_failures += 1;
            self.pair_result(&from, pairing_id, Code::PairingFailed, [0; 32]);
            return;
        };
        let Ok(spake_msg) = <[u8; SPAKE2_MSG_LEN]>::try_from(msg_b.as_slice()) else {
            unreachable!("SPAKE2 Ed25519 messages are 33 bytes")
        };
        let transcript =
            PairingTranscript::new(key, &peer_key, self.identity.public(), &msg_a, &msg_b);
        let confirm = transcript.responder_confirm();
        let response = Frame {
            conn_id: 0,
            body: Body::PairResponse {
                pairing_id,
                static_key: *self.identity.public(),
                spake_msg,
                confirm,
            },
        }
        .to_vec();
        self.transmits.push_back(Transmit {
            dst: from.clone(),
            data: response.clone(),
        });
        self.pair_resp.insert(
            (from, pairing_id),
            PairResp {
                response,
                transcript,
                peer_key,
                deadline: now + PAIRING_TIMEOUT,
            },
        );
    }

    fn on_pair_response(
        &mut self,
        _now: Instant,
        from: LinkAddr,
        pairing_id: u32,
        peer_key: [u8; 32],
        msg_b: [u8; SPAKE2_MSG_LEN],
        confirm_b: [u8; 32],
    ) {
        let Some(mut p) = self.pair_init.remove(&pairing_id) else {
            return;
        };
        let spake = match p.spake.take() {
            Some(s) if p.addr == from => s,
            other => {
                p.spake = other;
                self.pair_init.insert(pairing_id, p);
                return;
            }
        };
        let key = spake.finish(&msg_b);
        let transcript = key.map(|k| {
            PairingTranscript::new(k, self.identity.public(), &peer_key, &p.msg_a, &msg_b)
        });
        match transcript {
            Ok(t) if ct_eq(&t.responder_confirm(), &confirm_b) => {
                let confirm = t.initiator_confirm();
                self.send_frame(
                    &from,
                    Frame {
                        conn_id: 0,
                        body: Body::PairConfirm {
                            pairing_id,
                            confirm,
                        },
                    },
                );
                self.pair_init.insert(
                    pairing_id,
                    PairInit {
                        transcript: Some((t, peer_key)),
                        ..p
                    },
                );
            }
            _ => {
                self.counters.pairing_failures += 1;
                self.pair_result(&from, pairing_id, Code::PairingFailed, [0; 32]);
                self.events.push_back(Event::PairingFailed {
                    addr: from,
                    code: Code::PairingFailed,
                });
            }
        }
    }

    fn on_pair_confirm(
        &mut self,
        now: Instant,
        from: LinkAddr,
        pairing_id: u32,
        confirm_a: [u8; 32],
    ) {
        let Some(p) = self.pair_resp.remove(&(from.clone(), pairing_id)) else {
            return;
        };
        let ok =
            ct_eq(&p.transcript.initiator_confirm(), &confirm_a) || self.has(Fault::AcceptWrongPin);
        if ok {
            let mac = p.transcript.result_mac(Code::Ok.to_u16());
            let unix = self.unix_time(now);
            let peer = self.trust.pin(&p.peer_key, unix);
            self.pair_result(&from, pairing_id, Code::Ok, mac);
            self.events.push_back(Event::TrustStoreChanged);
            self.events.push_back(Event::Paired { peer, addr: from });
        } else {
            self.record_pair_failure(now);
            self.pair_result(&from, pairing_id, Code::PairingFailed, [0; 32]);
            self.events.push_back(Event::PairingFailed {
                addr: from,
                code: Code::PairingFailed,
            });
        }
    }

    fn on_pair_result(
        &mut self,
        now: Instant,
        from: LinkAddr,
        pairing_id: u32,
        status: Code,
        mac: [u8; 32],
    ) {
        // As responder: the initiator gave up (its check of our confirmation failed).
        if status != Code::Ok && self.pair_resp.remove(&(from.clone(), pairing_id)).is_some() {
            self.record_pair_failure(now);
            return;
        }
        let Some(p) = self.pair_init.remove(&pairing_id) else {
            return;
        };
        if p.addr != from {
            self.pair_init.insert(pairing_id, p);
            return;
        }
        match (&p.transcript, status) {
            (Some((t, peer_key)), Code::Ok) if ct_eq(&t.result_mac(0), &mac) => {
                let unix = self.unix_time(now);
                let peer = self.trust.pin(peer_key, unix);
                self.events.push_back(Event::TrustStoreChanged);
                self.events.push_back(Event::Paired { peer, addr: from });
            }
            (_, Code::Ok) => {
                // An OK without a valid MAC is forged; keep waiting for the real answer.
                self.pair_init.insert(pairing_id, p);
            }
            (_, code) => {
                self.events
                    .push_back(Event::PairingFailed { addr: from, code });
            }
        }
    }

    // ------------------------------------------------------------------ handshake

    fn hello(&self) -> Vec<u8> {
        (Hello {
            hb_ms: self.cfg.hb_interval.as_millis().min(u32::MAX as u128) as u32,
            max_frame: self.cfg.mtu.min(u16::MAX as usize) as u16,
            name: self.cfg.name.clone(),
        })
        .to_bytes()
    }

    fn on_hs1(&mut self, now: Instant, from: LinkAddr, sender_conn_id: u32, noise: &[u8]) {
        // A retransmitted HANDSHAKE_1: answer with the same HANDSHAKE_2.
        if let Some(c) = self
            .conns
            .values()
            .find(|c| c.addr == from && c.remote_id == sender_conn_id && !c.initiator)
        {
            if let ConnState::AwaitHs3 { hs2, .. } = &c.state {
                let t = Transmit {
                    dst: from.clone(),
                    data: hs2.clone(),
                };
                self.transmits.push_back(t);
            }
            return;
        }
        let mut eph = [0u8; 32];
        self.rng.fill_bytes(&mut eph);
        let Ok(mut hs) = crypto::noise_builder(&self.identity)
            .fixed_ephemeral_key_for_testing_only(&eph)
            .build_responder()
        else {
            unreachable!("valid static key and params")
        };
        let mut scratch = [0u8; 1024];
        if hs.read_message(noise, &mut scratch).is_err() {
            self.counters.handshakes_rejected += 1;
            return;
        }
        let local_id = self.fresh_conn_id();
        let mut buf = [0u8; 1024];
        let Ok(n) = hs.write_message(&self.hello(), &mut buf) else {
            return;
        };
        let frame = Frame {
            conn_id: sender_conn_id,
            body: Body::Handshake2 {
                sender_conn_id: local_id,
                noise: buf[..n].to_vec(),
            },
        }
        .to_vec();
        self.transmits.push_back(Transmit {
            dst: from.clone(),
            data: frame.clone(),
        });
        self.conns.insert(
            local_id,
            Conn {
                local_id,
                remote_id: sender_conn_id,
                addr: from,
                initiator: false,
                state: ConnState::AwaitHs3 {
                    hs: Box::new(hs),
                    hs2: frame,
                    deadline: now + HALF_OPEN_LIFETIME,
                },
                last_tx: now,
                last_rx: now,
            },
        );
    }

    fn reject(&mut self, to: &LinkAddr, conn_id: u32, code: Code) {
        self.counters.handshakes_rejected += 1;
        self.send_frame(
            to,
            Frame {
                conn_id,
                body: Body::HandshakeReject { code },
            },
        );
        self.events.push_back(Event::HandshakeFailed {
            addr: to.clone(),
            code,
        });
    }

    fn on_hs2(
        &mut self,
        now: Instant,
        from: LinkAddr,
        local_id: u32,
        sender_conn_id: u32,
        noise: &[u8],
    ) {
        // Only a connection waiting for HANDSHAKE_2 takes one: a stray or forged frame naming an
        // established connection must not touch it (spec HS-18).
        if !matches!(
            self.conns.get(&local_id),
            Some(Conn {
                state: ConnState::AwaitHs2 { .. },
                ..
            })
        ) {
            return;
        }
        let Some(conn) = self.conns.remove(&local_id) else {
            return;
        };
        // Checked above: the connection is waiting for HANDSHAKE_2.
        let ConnState::AwaitHs2 { mut hs, .. } = conn.state else {
            return;
        };
        let mut payload = [0u8; 1024];
        let Ok(n) = hs.read_message(noise, &mut payload) else {
            // A failed read poisons the Noise state: the attempt ends here, silently (HS-12).
            self.counters.auth_failed += 1;
            self.events.push_back(Event::HandshakeFailed {
                addr: from,
                code: Code::ProtocolViolation,
            });
            return;
        };
        let Some(hello) = Hello::parse(&payload[..n]).ok() else {
            self.reject(&from, sender_conn_id, Code::Malformed);
            return;
        };
        let Some(remote_static) = hs
            .get_remote_static()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
        else {
            return;
        };
        if !self.trust.is_pinned(&remote_static) && !self.has(Fault::AcceptUnpinned) {
            self.reject(&from, sender_conn_id, Code::UnknownPeer);
            return;
        }
        let mut buf = [0u8; 1024];
        let Ok(n) = hs.write_message(&self.hello(), &mut buf) else {
            return;
        };
        let hs3 = Frame {
            conn_id: sender_conn_id,
            body: Body::Handshake3 {
                noise: buf[..n].to_vec(),
            },
        }
        .to_vec();
        self.transmits.push_back(Transmit {
            dst: from.clone(),
            data: hs3.clone(),
        });
        let (k_i2r, k_r2i) = hs.dangerously_get_raw_split();
        let peer = DeviceId::from_public_key(&remote_static);
        self.establish(
            now,
            (conn.local_id, sender_conn_id, from, true),
            peer,
            hello,
            (RecordKey::new(k_i2r), RecordKey::new(k_r2i)),
            Some(hs3),
        );
    }

    fn on_hs3(&mut self, now: Instant, from: LinkAddr, local_id: u32, noise: &[u8]) {
        // Only a handshake waiting for HANDSHAKE_3 takes one. A repeat on an established
        // connection is dropped (spec HS-18): the initiator stops repeating once our next record
        // (a heartbeat at the latest) reaches it.
        if !matches!(
            self.conns.get(&local_id),
            Some(Conn {
                state: ConnState::AwaitHs3 { .. },
                ..
            })
        ) {
            return;
        }
        let Some(conn) = self.conns.remove(&local_id) else {
            return;
        };
        // Checked above: the handshake is waiting for HANDSHAKE_3.
        let ConnState::AwaitHs3 { mut hs, .. } = conn.state else {
            return;
        };
        let mut payload = [0u8; 1024];
        let Ok(n) = hs.read_message(noise, &mut payload) else {
            // A failed read poisons the Noise state: a tampered HANDSHAKE_3 ends the attempt
            // silently (HS-12), so an attacker learns nothing.
            self.counters.auth_failed += 1;
            return;
        };
        let Some(hello) = Hello::parse(&payload[..n]).ok() else {
            self.reject(&from, conn.remote_id, Code::Malformed);
            return;
        };
        let Some(remote_static) = hs
            .get_remote_static()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
        else {
            return;
        };
        if !self.trust.is_pinned(&remote_static) && !self.has(Fault::AcceptUnpinned) {
            let remote = conn.remote_id;
            self.reject(&from, remote, Code::UnknownPeer);
            return;
        }
        let (k_i2r, k_r2i) = hs.dangerously_get_raw_split();
        let peer = DeviceId::from_public_key(&remote_static);
        self.establish(
            now,
            (conn.local_id, conn.remote_id, from, false),
            peer,
            hello,
            (RecordKey::new(k_r2i), RecordKey::new(k_i2r)),
            None,
        );
    }

    /// Make a connection established. `ids` is (local conn ID, remote conn ID, peer address,
    /// whether we initiated); the keys are (send, receive).
    fn establish(
        &mut self,
        now: Instant,
        ids: (u32, u32, LinkAddr, bool),
        peer: DeviceId,
        hello: Hello,
        (tx, rx): (RecordKey, RecordKey),
        hs3: Option<Vec<u8>>,
    ) {
        // One connection per peer: a new handshake replaces the old connection.
        if let Some(old) = self.conn_of(peer) {
            self.drop_conn(old, Code::NormalClose, false);
        }
        let (local_id, remote_id, addr, initiator) = ids;
        let state = ConnState::Established(Box::new(Secure {
            peer,
            peer_hb: Duration::from_millis(hello.hb_ms.max(10) as u64),
            peer_max_frame: (hello.max_frame as usize).max(256),
            tx,
            rx,
            rx_prev: None,
            tx_seq: 0,
            replay: ReplayWindow::default(),
            hs3,
            next_rseq: 1,
            unacked: BTreeMap::new(),
            queue: BTreeMap::new(),
            rx_next: 1,
            rx_buf: BTreeMap::new(),
            sessions: BTreeMap::new(),
            next_session: if initiator { 2 } else { 1 },
            time: ConnTime::new(),
        }));
        self.events.push_back(Event::Connected {
            peer,
            addr: addr.clone(),
            initiator,
        });
        let id = local_id;
        self.conns.insert(
            id,
            Conn {
                local_id,
                remote_id,
                addr,
                initiator,
                state,
                last_tx: now,
                last_rx: now,
            },
        );
        // The responder speaks first so the initiator learns that HANDSHAKE_3 arrived.
        if !initiator {
            self.send_unreliable(now, id, MsgBody::Heartbeat);
        }
    }

    fn on_hs_reject(&mut self, from: LinkAddr, local_id: u32, code: Code) {
        let handshaking = self
            .conns
            .get(&local_id)
            .is_some_and(|c| c.addr == from && !matches!(c.state, ConnState::Established(_)));
        if handshaking {
            self.conns.remove(&local_id);
            self.events
                .push_back(Event::HandshakeFailed { addr: from, code });
        }
    }

    // ------------------------------------------------------------------ records

    fn on_record(
        &mut self,
        now: Instant,
        from: LinkAddr,
        local_id: u32,
        epoch: u8,
        seq: u64,
        ct: &[u8],
    ) {
        let accept_replay = self.has(Fault::AcceptReplay);
        let Some(conn) = self.conns.get_mut(&local_id) else {
            self.counters.unknown_connection += 1;
            return;
        };
        let ConnState::Established(s) = &mut conn.state else {
            self.counters.unknown_connection += 1;
            return;
        };
        if !accept_replay && s.replay.check(seq) != ReplayVerdict::Fresh {
            self.counters.replayed += 1;
            return;
        }
        let opened = if epoch == s.rx.epoch {
            s.rx.open(local_id, seq, ct).ok()
        } else if epoch == s.rx.epoch.wrapping_add(1) {
            let next = s.rx.rekeyed();
            match next.open(local_id, seq, ct) {
                Ok(pt) => {
                    let old = std::mem::replace(&mut s.rx, next);
                    s.rx_prev = Some((old, now + PREV_KEY_LIFETIME));
                    Some(pt)
                }
                Err(_) => None,
            }
        } else {
            match &s.rx_prev {
                Some((k, _)) if k.epoch == epoch => k.open(local_id, seq, ct).ok(),
                _ => None,
            }
        };
        let Some(plaintext) = opened else {
            self.counters.auth_failed += 1;
            return;
        };
        s.replay.commit(seq);
        s.hs3 = None;
        conn.last_rx = now;
        // The peer may move to another link; follow its latest authenticated address.
        conn.addr = from;
        self.counters.records_received += 1;
        match Message::parse(&plaintext) {
            Ok(msg) => self.on_message(now, local_id, msg),
            Err(err) => {
                self.counters.malformed_messages += 1;
                tracing::debug!(%err, "malformed inner message");
                let offending = plaintext.first().copied().unwrap_or(0);
                // A malformed reliable message still occupies its rseq: acknowledge it so the
                // sender does not retransmit it forever (spec 8).
                let rseq = plaintext
                    .get(1..5)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                    .unwrap_or(0);
                if rseq > 0 {
                    self.consume_rseq(now, local_id, rseq);
                }
                self.send_unreliable(
                    now,
                    local_id,
                    MsgBody::Error {
                        code: Code::Malformed,
                        offending,
                    },
                );
            }
        }
    }

    fn on_message(&mut self, now: Instant, local_id: u32, msg: Message) {
        let unordered = self.has(Fault::UnorderedDelivery);
        match msg.body {
            MsgBody::Heartbeat => {}
            MsgBody::Close { code, .. } => self.drop_conn(local_id, code, true),
            MsgBody::Ack { next_expected } => self.on_ack(now, local_id, next_expected),
            MsgBody::Error { code, offending } => {
                if let Some(peer) = self.peer_of(local_id) {
                    self.events.push_back(Event::PeerError {
                        peer,
                        code,
                        offending,
                    });
                }
            }
            body if msg.rseq == 0 => {
                // Unreliable DATA (stream channels) is handled at once; anything else
                // reliable-only without an rseq was refused by the parser.
                self.dispatch(now, local_id, body)
            }
            body => {
                let Some(Conn {
                    state: ConnState::Established(s),
                    ..
                }) = self.conns.get_mut(&local_id)
                else {
                    return;
                };
                let rseq = msg.rseq;
                let mut deliver = Vec::new();
                if unordered {
                    if rseq >= s.rx_next && !s.rx_buf.contains_key(&rseq) {
                        deliver.push(body);
                        s.rx_buf.insert(rseq, MsgBody::Heartbeat);
                        while s.rx_buf.remove(&s.rx_next).is_some() {
                            s.rx_next += 1;
                        }
                    }
                } else if rseq == s.rx_next {
                    deliver.push(body);
                    s.rx_next += 1;
                    while let Some(b) = s.rx_buf.remove(&s.rx_next) {
                        deliver.push(b);
                        s.rx_next += 1;
                    }
                } else if rseq > s.rx_next && rseq - s.rx_next < RECV_AHEAD {
                    s.rx_buf.entry(rseq).or_insert(body);
                }
                let ack = s.rx_next;
                self.send_unreliable(now, local_id, MsgBody::Ack { next_expected: ack });
                for b in deliver {
                    self.dispatch(now, local_id, b);
                }
            }
        }
    }

    /// Mark `rseq` as received without delivering anything, then acknowledge.
    fn consume_rseq(&mut self, now: Instant, local_id: u32, rseq: u32) {
        let Some(Conn {
            state: ConnState::Established(s),
            ..
        }) = self.conns.get_mut(&local_id)
        else {
            return;
        };
        let mut deliver = Vec::new();
        if rseq == s.rx_next {
            s.rx_next += 1;
            while let Some(b) = s.rx_buf.remove(&s.rx_next) {
                deliver.push(b);
                s.rx_next += 1;
            }
        } else if rseq > s.rx_next && rseq - s.rx_next < RECV_AHEAD {
            s.rx_buf.entry(rseq).or_insert(MsgBody::Heartbeat);
        }
        let ack = s.rx_next;
        self.send_unreliable(now, local_id, MsgBody::Ack { next_expected: ack });
        for b in deliver {
            self.dispatch(now, local_id, b);
        }
    }

    fn on_ack(&mut self, now: Instant, local_id: u32, next_expected: u32) {
        let Some(Conn {
            state: ConnState::Established(s),
            ..
        }) = self.conns.get_mut(&local_id)
        else {
            return;
        };
        s.unacked.retain(|r, _| *r >= next_expected);
        self.flush_queue(now, local_id);
    }

    fn dispatch(&mut self, now: Instant, local_id: u32, body: MsgBody) {
        let Some(peer) = self.peer_of(local_id) else {
            return;
        };
        match body {
            MsgBody::SessionOpen {
                session_id,
                kind,
                qos,
                service,
            } => self.on_session_open(now, local_id, peer, session_id, kind, qos, service),
            MsgBody::SessionAccept {
                session_id,
                max_message,
            } => {
                if let Some(Conn {
                    state: ConnState::Established(s),
                    ..
                }) = self.conns.get_mut(&local_id)
                {
                    if let Some(sess) = s.sessions.get_mut(&session_id) {
                        if sess.state == SessionState::Opening {
                            sess.state = SessionState::Open;
                            sess.peer_max_message =
                                Some((max_message as usize).min(sess.kind.max_message()));
                            let (service, kind) = (sess.service.clone(), sess.kind);
                            self.events.push_back(Event::SessionOpened {
                                peer,
                                session_id,
                                service,
                                kind,
                                inbound: false,
                            });
                        }
                    }
                }
            }
            MsgBody::SessionReject { session_id, code } => {
                if let Some(Conn {
                    state: ConnState::Established(s),
                    ..
                }) = self.conns.get_mut(&local_id)
                {
                    if s.sessions.remove(&session_id).is_some() {
                        self.events.push_back(Event::SessionRejected {
                            peer,
                            session_id,
                            code,
                        });
                    }
                }
            }
            MsgBody::SessionClose { session_id, code } => {
                if let Some(Conn {
                    state: ConnState::Established(s),
                    ..
                }) = self.conns.get_mut(&local_id)
                {
                    if s.sessions.remove(&session_id).is_some() {
                        self.events.push_back(Event::SessionClosed {
                            peer,
                            session_id,
                            code,
                            by_peer: true,
                        });
                    }
                }
            }
            MsgBody::Data {
                session_id,
                msg_id,
                frag_index,
                frag_count,
                payload,
            } => self.on_data(
                now, local_id, peer, session_id, msg_id, frag_index, frag_count, None, payload,
            ),
            MsgBody::CapQuery { req_id } => {
                let cbor = capability::encode_list(&self.cfg.capabilities);
                self.send_reliable(
                    now,
                    local_id,
                    Qos::Interactive,
                    MsgBody::CapList { req_id, cbor },
                );
            }
            MsgBody::CapList { req_id, cbor } => match capability::decode_list(&cbor) {
                Ok(capabilities) => self.events.push_back(Event::Capabilities {
                    peer,
                    req_id,
                    capabilities,
                }),
                Err(_) => self.send_unreliable(
                    now,
                    local_id,
                    MsgBody::Error {
                        code: Code::Malformed,
                        offending: 0x21,
                    },
                ),
            },
            MsgBody::PermRequest {
                req_id,
                scope,
                duration_s,
                capability,
            } => self.on_perm_request(now, local_id, peer, req_id, scope, duration_s, capability),
            MsgBody::PermResponse {
                req_id,
                result,
                grant_id,
                expires_in_ms,
            } => self.events.push_back(Event::PermissionResult {
                peer,
                req_id,
                result,
                grant_id,
                expires_in_ms,
            }),
            MsgBody::PermRevoke { grant_id } => {
                // Either the device revoked a grant we hold, or the holder gave one back.
                let ours = self.grants.get(&grant_id).is_some_and(|g| g.holder == peer);
                if ours {
                    self.grants.remove(&grant_id);
                    let before = self.trust.grants.len();
                    self.trust.grants.retain(|p| p.grant_id != grant_id);
                    if self.trust.grants.len() != before {
                        self.events.push_back(Event::TrustStoreChanged);
                    }
                } else {
                    self.events
                        .push_back(Event::GrantRevoked { peer, grant_id });
                }
            }
            MsgBody::CapInvoke {
                req_id,
                grant_id,
                capability,
                args,
            } => self.on_invoke(now, local_id, peer, req_id, grant_id, capability, args),
            MsgBody::CapResult {
                req_id,
                status,
                result,
            } => self.events.push_back(Event::CapabilityResult {
                peer,
                req_id,
                status,
                result,
            }),
            MsgBody::TimeRequest { .. } if self.has(Fault::TimeNoResponse) => {}
            MsgBody::TimeRequest { sync_id, t1 } => {
                let mut t2 = self.clock_us(now);
                if self.has(Fault::TimeClockBackwards) {
                    self.time_responses += 1;
                    t2 = t2.saturating_sub(20_000 * self.time_responses);
                }
                // The response leaves with this `now`: the driver stamps `now` on receipt.
                let t3 = if self.has(Fault::TimeHoldStamp) {
                    t2 + 5_000
                } else {
                    t2
                };
                self.send_unreliable(now, local_id, ConnTime::respond(sync_id, t1, t2, t3));
            }
            MsgBody::TimeResponse {
                sync_id,
                t1,
                t2,
                t3,
            } => {
                let t4 = self.clock_us(now);
                let uncounted = self.has(Fault::TimeUncounted);
                let flood = self.has(Fault::TimeSyncFlood);
                if let Some(Conn {
                    state: ConnState::Established(s),
                    ..
                }) = self.conns.get_mut(&local_id)
                {
                    match s.time.handle_response(now, t4, sync_id, t1, t2, t3) {
                        Ok(()) if flood => {
                            if let Some((accuracy, period)) = s.time.level() {
                                s.time.start(now, accuracy, period);
                            }
                        }
                        Ok(()) => {}
                        Err(_) if uncounted => {}
                        Err(crate::time::ResponseError::Unmatched { .. }) => {
                            self.counters.time_unmatched += 1
                        }
                        Err(crate::time::ResponseError::Inconsistent(_)) => {
                            self.counters.time_inconsistent += 1
                        }
                    }
                }
            }
            MsgBody::TimedData {
                session_id,
                msg_id,
                frag_index,
                frag_count,
                pts_us,
                payload,
            } => self.on_data(
                now,
                local_id,
                peer,
                session_id,
                msg_id,
                frag_index,
                frag_count,
                Some(pts_us),
                payload,
            ),
            MsgBody::Heartbeat
            | MsgBody::Close { .. }
            | MsgBody::Ack { .. }
            | MsgBody::Error { .. } => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_session_open(
        &mut self,
        now: Instant,
        local_id: u32,
        peer: DeviceId,
        session_id: u32,
        kind: ChannelKind,
        qos: Qos,
        service: String,
    ) {
        let offered = self.cfg.services.contains(&service) || self.has(Fault::AcceptUnknownService);
        let Some(conn) = self.conns.get_mut(&local_id) else {
            return;
        };
        let peer_parity = if conn.initiator { 1 } else { 0 };
        let ConnState::Established(s) = &mut conn.state else {
            return;
        };
        let code = if session_id % 2 != peer_parity || s.sessions.contains_key(&session_id) {
            Some(Code::ProtocolViolation)
        } else if !offered {
            Some(Code::UnknownService)
        } else if s.sessions.len() >= MAX_SESSIONS {
            Some(Code::TooManySessions)
        } else {
            None
        };
        if let Some(code) = code {
            self.send_reliable(
                now,
                local_id,
                Qos::Realtime,
                MsgBody::SessionReject { session_id, code },
            );
            return;
        }
        s.sessions.insert(
            session_id,
            Session {
                inbound: true,
                peer_max_message: None,
                kind,
                qos,
                service: service.clone(),
                state: SessionState::Open,
                next_msg_id: 1,
                reassembly: BTreeMap::new(),
                last_stream_delivered: None,
            },
        );
        self.send_reliable(
            now,
            local_id,
            Qos::Realtime,
            MsgBody::SessionAccept {
                session_id,
                max_message: kind.max_message() as u32,
            },
        );
        self.events.push_back(Event::SessionOpened {
            peer,
            session_id,
            service,
            kind,
            inbound: true,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn on_data(
        &mut self,
        now: Instant,
        local_id: u32,
        peer: DeviceId,
        session_id: u32,
        msg_id: u32,
        frag_index: u16,
        frag_count: u16,
        pts_us: Option<u64>,
        payload: Vec<u8>,
    ) {
        let accept_oversized = self.has(Fault::AcceptOversizedMessage);
        let offending = if pts_us.is_some() { 0x15 } else { 0x14 };
        let timed_anywhere = self.has(Fault::TimedDataAnywhere);
        let Some(Conn {
            state: ConnState::Established(s),
            ..
        }) = self.conns.get_mut(&local_id)
        else {
            return;
        };
        let Some(sess) = s
            .sessions
            .get_mut(&session_id)
            .filter(|x| x.state == SessionState::Open)
        else {
            self.send_unreliable(
                now,
                local_id,
                MsgBody::Error {
                    code: Code::UnknownSession,
                    offending,
                },
            );
            return;
        };
        if pts_us.is_some() && sess.kind != ChannelKind::Stream && !timed_anywhere {
            // [TIME-14]: a presentation time has no meaning on a reliable session.
            s.sessions.remove(&session_id);
            s.time.session_closed(session_id);
            self.send_reliable(
                now,
                local_id,
                Qos::Realtime,
                MsgBody::SessionClose {
                    session_id,
                    code: Code::ProtocolViolation,
                },
            );
            self.events.push_back(Event::SessionClosed {
                peer,
                session_id,
                code: Code::ProtocolViolation,
                by_peer: false,
            });
            return;
        }
        if sess.kind == ChannelKind::Stream {
            if sess
                .last_stream_delivered
                .is_some_and(|last| msg_id <= last)
            {
                return; // latest wins: older frames are dropped
            }
            // Start of a newer message: forget older partial ones.
            sess.reassembly.retain(|id, _| *id >= msg_id);
        }
        let limit = sess.kind.max_message();
        // Reliable channels deliver in order, so a conforming sender's fragments arrive as one
        // message at a time, in frag_index order; anything else would let a peer keep many
        // partial messages alive (spec SESS-15).
        let out_of_sequence = sess.kind.is_reliable()
            && match sess.reassembly.get(&msg_id) {
                Some(e) => frag_index as usize != e.parts.len(),
                None => !sess.reassembly.is_empty() || frag_index != 0,
            };
        let entry = sess.reassembly.entry(msg_id).or_insert_with(|| Reassembly {
            frag_count,
            parts: BTreeMap::new(),
            size: 0,
        });
        let mut too_large = false;
        if out_of_sequence || entry.frag_count != frag_count {
            too_large = true; // inconsistent fragmentation
        } else if !entry.parts.contains_key(&frag_index) {
            entry.size += payload.len();
            entry.parts.insert(frag_index, payload);
            if entry.size > limit && !accept_oversized {
                too_large = true;
            }
        }
        if too_large {
            s.sessions.remove(&session_id);
            self.send_reliable(
                now,
                local_id,
                Qos::Realtime,
                MsgBody::SessionClose {
                    session_id,
                    code: Code::MessageTooLarge,
                },
            );
            self.events.push_back(Event::SessionClosed {
                peer,
                session_id,
                code: Code::MessageTooLarge,
                by_peer: false,
            });
            return;
        }
        if entry.parts.len() < frag_count as usize {
            return;
        }
        let Some(done) = sess.reassembly.remove(&msg_id) else {
            return;
        };
        if sess.kind == ChannelKind::Stream {
            sess.last_stream_delivered = Some(msg_id);
        }
        let data: Vec<u8> = done.parts.into_values().flatten().collect();
        if let Some(pts) = pts_us.filter(|_| sess.kind == ChannelKind::Stream) {
            self.present_later(now, local_id, session_id, msg_id, pts, data);
            return;
        }
        let echo = sess.inbound && sess.service == "echo";
        if echo {
            let _ = self.send(now, peer, session_id, &data);
        }
        self.events.push_back(Event::Message {
            peer,
            session_id,
            data,
        });
    }

    /// Queue a complete timed message for its presentation instant (spec 17.4).
    fn present_later(
        &mut self,
        now: Instant,
        local_id: u32,
        session_id: u32,
        msg_id: u32,
        pts: u64,
        data: Vec<u8>,
    ) {
        let epoch = self.epoch_instant;
        let negate = self.has(Fault::TimeOffsetSign);
        let present_late = self.has(Fault::PresentLate);
        let uncounted = self.has(Fault::TimeUncounted);
        let Some(Conn {
            state: ConnState::Established(s),
            ..
        }) = self.conns.get_mut(&local_id)
        else {
            return;
        };
        // The faulty offset sign: translate with −θ instead of θ, i.e. pts + 2θ with θ.
        let pts_used = match (negate, s.time.estimate(now)) {
            (true, Some(e)) => (i128::from(pts) + 2 * i128::from(e.offset_us)).max(0) as u64,
            _ => pts,
        };
        match s
            .time
            .timed_message(now, epoch, session_id, msg_id, pts_used, data)
        {
            Ok(()) => {}
            Err(crate::time::Dropped::Late { .. }) if present_late => {
                let peer = s.peer;
                let data = Vec::new();
                self.events.push_back(Event::Presented {
                    peer,
                    session_id,
                    msg_id,
                    pts_us: pts,
                    at_us: self.clock_us(now),
                    data,
                });
            }
            Err(crate::time::Dropped::Late { .. }) => self.counters.presentation_late += 1,
            Err(crate::time::Dropped::Unsynchronized) => {
                if !uncounted {
                    self.counters.presentation_dropped += 1;
                }
                // [TIME-13]: learn the sender's clock so its next messages can be presented.
                s.time.start(now, Accuracy::Normal, Period::Normal);
            }
            Err(_) if uncounted => {}
            Err(_) => self.counters.presentation_dropped += 1,
        }
    }

    // ------------------------------------------------------------------ permissions

    #[allow(clippy::too_many_arguments)]
    fn on_perm_request(
        &mut self,
        now: Instant,
        local_id: u32,
        peer: DeviceId,
        req_id: u32,
        scope: Scope,
        duration_s: u32,
        capability: String,
    ) {
        if !self.cfg.capabilities.iter().any(|c| c.name == capability) {
            self.perm_response(now, local_id, req_id, PermResult::UnknownCapability, 0, 0);
            return;
        }
        if self.has(Fault::GrantWithoutPrompt) {
            self.grant(now, local_id, peer, req_id, &capability, scope, duration_s);
            return;
        }
        match self.policy {
            PromptPolicy::Approve => {
                self.grant(now, local_id, peer, req_id, &capability, scope, duration_s)
            }
            PromptPolicy::Deny => {
                self.perm_response(now, local_id, req_id, PermResult::Denied, 0, 0)
            }
            PromptPolicy::Timeout | PromptPolicy::Ask => {
                let prompt_id = self.next_prompt;
                self.next_prompt += 1;
                self.prompts.insert(
                    prompt_id,
                    PendingPrompt {
                        conn_local_id: local_id,
                        peer,
                        req_id,
                        capability: capability.clone(),
                        scope,
                        duration_s,
                        deadline: now + self.cfg.prompt_timeout,
                    },
                );
                if self.policy == PromptPolicy::Ask {
                    self.events.push_back(Event::PermissionPrompt {
                        prompt_id,
                        peer,
                        capability,
                        scope,
                    });
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn grant(
        &mut self,
        now: Instant,
        local_id: u32,
        peer: DeviceId,
        req_id: u32,
        capability: &str,
        scope: Scope,
        duration_s: u32,
    ) {
        let mut grant_id = self.rng.gen_range(1..=u32::MAX);
        while self.grants.contains_key(&grant_id) {
            grant_id = self.rng.gen_range(1..=u32::MAX);
        }
        let expires_in_ms = duration_s.saturating_mul(1000);
        self.grants.insert(
            grant_id,
            Grant {
                holder: peer,
                capability: capability.to_string(),
                scope,
                expires_at: (duration_s > 0)
                    .then(|| now + Duration::from_millis(expires_in_ms as u64)),
                conn_local_id: local_id,
                used: false,
                revoked: false,
            },
        );
        if scope == Scope::UntilRevoked && duration_s == 0 {
            self.trust.grants.push(PersistedGrant {
                grant_id,
                holder: peer.to_hex(),
                capability: capability.to_string(),
            });
            self.events.push_back(Event::TrustStoreChanged);
        }
        self.perm_response(
            now,
            local_id,
            req_id,
            PermResult::Granted,
            grant_id,
            expires_in_ms,
        );
    }

    fn perm_response(
        &mut self,
        now: Instant,
        local_id: u32,
        req_id: u32,
        result: PermResult,
        grant_id: u32,
        expires_in_ms: u32,
    ) {
        self.send_reliable(
            now,
            local_id,
            Qos::Interactive,
            MsgBody::PermResponse {
                req_id,
                result,
                grant_id,
                expires_in_ms,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn on_invoke(
        &mut self,
        now: Instant,
        local_id: u32,
        peer: DeviceId,
        req_id: u32,
        grant_id: u32,
        capability: String,
        args: Vec<u8>,
    ) {
        let status = if !self.cfg.capabilities.iter().any(|c| c.name == capability) {
            Code::UnknownCapability
        } else {
            let ignore_revocation = self.has(Fault::IgnoreRevocation);
            let ignore_expiry = self.has(Fault::IgnoreExpiry);
            let not_bound = self.has(Fault::GrantNotBound);
            match self.grants.get_mut(&grant_id) {
                None => Code::PermissionDenied,
                Some(g) if g.holder != peer && !not_bound => Code::PermissionDenied,
                Some(g) if g.capability != capability => Code::PermissionDenied,
                Some(g) if g.revoked && !ignore_revocation => Code::GrantRevoked,
                Some(g) if g.expires_at.is_some_and(|t| now >= t) && !ignore_expiry => {
                    Code::GrantExpired
                }
                Some(g) if g.scope == Scope::Once && g.used => Code::PermissionDenied,
                Some(g) if g.scope == Scope::Session && g.conn_local_id != local_id => {
                    Code::PermissionDenied
                }
                Some(g) => {
                    g.used = true;
                    Code::Ok
                }
            }
        };
        if status != Code::Ok {
            // A refused use never reaches a backend (spec 11.4, CAP-8).
            return self.cap_result(now, local_id, req_id, status, Vec::new());
        }
        self.events.push_back(Event::CapabilityUsed {
            peer,
            capability: capability.clone(),
            grant_id,
        });
        if self.cfg.external_capabilities.contains(&capability) {
            let handle = self.next_invocation;
            self.next_invocation += 1;
            self.invocations.insert(
                handle,
                PendingInvocation {
                    conn_local_id: local_id,
                    req_id,
                    capability: capability.clone(),
                    deadline: now + self.cfg.backend_timeout,
                },
            );
            self.events.push_back(Event::CapabilityRequest {
                handle,
                peer,
                capability,
                args,
            });
        } else {
            // A simulated capability: a use returns its arguments.
            self.cap_result(now, local_id, req_id, Code::Ok, args);
        }
    }

    fn cap_result(
        &mut self,
        now: Instant,
        local_id: u32,
        req_id: u32,
        status: Code,
        result: Vec<u8>,
    ) {
        let mut result = result;
        result.truncate(u16::MAX as usize);
        self.send_reliable(
            now,
            local_id,
            Qos::Interactive,
            MsgBody::CapResult {
                req_id,
                status,
                result,
            },
        );
    }

    // ------------------------------------------------------------------ sending

    /// Largest DATA payload per record: our MTU and the peer's max_frame both bound the frame
    /// (spec FRAME-5).
    fn max_fragment(&self, peer_max_frame: usize) -> usize {
        self.cfg
            .mtu
            .min(peer_max_frame)
            .saturating_sub(RECORD_OVERHEAD + DATA_OVERHEAD)
            .max(16)
    }

    fn send_frame(&mut self, to: &LinkAddr, frame: Frame) {
        self.transmits.push_back(Transmit {
            dst: to.clone(),
            data: frame.to_vec(),
        });
    }

    fn send_unreliable(&mut self, now: Instant, local_id: u32, body: MsgBody) {
        let pt = Message::unreliable(body).to_vec();
        self.seal_and_send(now, local_id, &pt);
    }

    fn send_reliable(&mut self, now: Instant, local_id: u32, qos: Qos, body: MsgBody) {
        let Some(Conn {
            state: ConnState::Established(s),
            ..
        }) = self.conns.get_mut(&local_id)
        else {
            return;
        };
        s.queue
            .entry(std::cmp::Reverse(qos))
            .or_default()
            .push_back(body);
        self.flush_queue(now, local_id);
    }

    /// Move queued reliable messages into flight while the send window has room, highest QoS
    /// class first.
    fn flush_queue(&mut self, now: Instant, local_id: u32) {
        loop {
            let Some(Conn {
                state: ConnState::Established(s),
                ..
            }) = self.conns.get_mut(&local_id)
            else {
                return;
            };
            if s.unacked.len() >= SEND_WINDOW {
                return;
            }
            let Some(mut entry) = s.queue.first_entry() else {
                return;
            };
            let Some(body) = entry.get_mut().pop_front() else {
                entry.remove();
                continue;
            };
            if entry.get().is_empty() {
                entry.remove();
            }
            let rseq = s.next_rseq;
            s.next_rseq = s.next_rseq.wrapping_add(1).max(1);
            let pt = Message { rseq, body }.to_vec();
            s.unacked.insert(
                rseq,
                Pending {
                    plaintext: pt.clone(),
                    next_send: now + INITIAL_RTO,
                    rto: INITIAL_RTO,
                    tries: 1,
                },
            );
            self.seal_and_send(now, local_id, &pt);
        }
    }

    fn seal_and_send(&mut self, now: Instant, local_id: u32, plaintext: &[u8]) {
        let nonce_reuse = self.has(Fault::NonceReuse);
        let plaintext_fault = self.has(Fault::PlaintextData) && plaintext.first() == Some(&0x14);
        let Some(conn) = self.conns.get_mut(&local_id) else {
            return;
        };
        let ConnState::Established(s) = &mut conn.state else {
            return;
        };
        let seq = if nonce_reuse { s.tx_seq / 2 } else { s.tx_seq };
        s.tx_seq += 1;
        let ciphertext = if plaintext_fault {
            let mut v = plaintext.to_vec();
            v.extend_from_slice(&[0u8; TAG_LEN]);
            v
        } else {
            s.tx.seal(conn.remote_id, seq, plaintext)
        };
        let frame = Frame {
            conn_id: conn.remote_id,
            body: Body::Record {
                epoch: s.tx.epoch,
                seq,
                ciphertext,
            },
        };
        conn.last_tx = now;
        let dst = conn.addr.clone();
        self.counters.records_sent += 1;
        self.send_frame(&dst, frame);
    }

    /// Rotate our sending key (Noise REKEY) on the connection to `peer`.
    pub fn rekey(&mut self, peer: DeviceId) -> Result<(), ApiError> {
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        if let Some(Conn {
            state: ConnState::Established(s),
            ..
        }) = self.conns.get_mut(&local_id)
        {
            s.tx = s.tx.rekeyed();
        }
        Ok(())
    }

    // ------------------------------------------------------------------ helpers

    fn drop_conn(&mut self, local_id: u32, code: Code, notify_sessions: bool) {
        let Some(conn) = self.conns.remove(&local_id) else {
            return;
        };
        if let ConnState::Established(s) = conn.state {
            if notify_sessions {
                for id in s.sessions.keys() {
                    self.events.push_back(Event::SessionClosed {
                        peer: s.peer,
                        session_id: *id,
                        code,
                        by_peer: false,
                    });
                }
            }
            // Session-scoped grants end with the connection.
            self.grants
                .retain(|_, g| !(g.scope == Scope::Session && g.conn_local_id == local_id));
            self.prompts.retain(|_, p| p.conn_local_id != local_id);
            self.invocations.retain(|_, p| p.conn_local_id != local_id);
            self.events
                .push_back(Event::Disconnected { peer: s.peer, code });
        }
    }

    fn conn_of(&self, peer: DeviceId) -> Option<u32> {
        self.conns
            .values()
            .find(|c| matches!(&c.state, ConnState::Established(s) if s.peer == peer))
            .map(|c| c.local_id)
    }

    fn peer_of(&self, local_id: u32) -> Option<DeviceId> {
        match &self.conns.get(&local_id)?.state {
            ConnState::Established(s) => Some(s.peer),
            _ => None,
        }
    }

    fn fresh_conn_id(&mut self) -> u32 {
        loop {
            let id = self.rng.gen_range(1..=u32::MAX);
            if !self.conns.contains_key(&id) {
                return id;
            }
        }
    }

    fn fresh_req(&mut self) -> u32 {
        let r = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(1);
        r
    }

    fn unix_time(&self, now: Instant) -> u64 {
        self.epoch_unix + now.saturating_duration_since(self.epoch_instant).as_secs()
    }
}

fn sender_conn_id_of(data: &[u8]) -> u32 {
    data.get(6..10)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0)
}
