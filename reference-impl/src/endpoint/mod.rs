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
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::capability::{self};
use crate::crypto::{
    self, ct_eq, DeviceId, Identity, PairingTranscript, RecordKey, ReplayVerdict, ReplayWindow,
};
use crate::fault::Fault;
use crate::time::{Accuracy, ConnTime, Period};
use crate::trust::{PersistedGrant, TrustStore};
use crate::wire::frame::{Body, Frame, RECORD_OVERHEAD, SPAKE2_MSG_LEN, TAG_LEN};
use crate::wire::hello::Hello;
use crate::wire::msg::{ChannelKind, Message, MsgBody, PermResult, Qos, Scope, DATA_OVERHEAD};
use crate::wire::Code;

pub mod api;
mod conn;
mod dispatch;
mod handshake;
mod pair;
mod perm;
mod record;
mod reliable;
mod session;
mod timer;
mod timesync;

pub use api::*;
use conn::*;
use pair::{PairInit, PairResp};
use perm::{Grant, PendingInvocation, PendingPrompt};

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
const MAX_SESSIONS: usize = 64;
const LOST_AFTER_INTERVALS: u32 = 3;

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
    pair_ended: Option<pair::PairEnded>,
    pair_failures: VecDeque<Instant>,
    lockout_until: Option<Instant>,
    /// The address of the failure that started the lockout ([`Fault::LockoutPerAddress`]).
    lockout_from: Option<LinkAddr>,
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
            pair_ended: None,
            pair_failures: VecDeque::new(),
            lockout_until: None,
            lockout_from: None,
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

    fn has(&self, f: Fault) -> bool {
        self.cfg.faults.contains(&f)
    }

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

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Forget every peer, connection, grant and pairing attempt; clear the PIN and set the prompt
    /// policy to deny (spec 14). The identity is kept.
    pub fn reset(&mut self) {
        self.trust = TrustStore::new();
        self.conns.clear();
        self.pair_init.clear();
        self.pair_resp.clear();
        self.pair_ended = None;
        self.pair_failures.clear();
        self.lockout_until = None;
        self.lockout_from = None;
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

    /// The secure state of connection `local_id`, if it is established.
    fn established_mut(&mut self, local_id: u32) -> Option<&mut Secure> {
        match self.conns.get_mut(&local_id).map(|c| &mut c.state) {
            Some(ConnState::Established(s)) => Some(s),
            _ => None,
        }
    }

    /// The established connection to `peer`.
    fn secure_mut(&mut self, peer: DeviceId) -> Result<&mut Secure, ApiError> {
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        match self.conns.get_mut(&local_id).map(|c| &mut c.state) {
            Some(ConnState::Established(s)) => Ok(s),
            _ => Err(ApiError::NotConnected(peer)),
        }
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
            if !self.has(Fault::PendingTimeoutUncounted) {
                self.record_pair_failure(now, &k.0);
            }
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
