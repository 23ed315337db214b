//! Property tests of the wire codec and of the decoders that face the network:
//!
//! * every valid [`Frame`] and [`Message`] repr round-trips (`emit` then `parse` gives it back)
//!   and `buffer_len` is the emitted length; the generators cover every body variant;
//! * no decoder panics on any input: `Frame::parse`, `Message::parse`,
//!   `capability::decode_list`, `Advert::from_cbor`, `CoapMessage::parse`,
//!   `control::parse_request`, `wire::hello::Hello::parse`, fed both random bytes and mutations of
//!   valid encodings (which get past the first checks);
//! * an established [`Endpoint`] fed arbitrary datagrams (random bytes, well-framed garbage
//!   aimed at its connection, and records sealed with the real session key carrying arbitrary
//!   plaintext or valid messages) never panics, and two endpoints never answer each other
//!   forever.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use softbus::capability::{self, Capability, Metrics};
use softbus::control;
use softbus::crypto::RecordKey;
use softbus::discovery::Advert;
use softbus::endpoint::{Config, Endpoint, LinkAddr, PromptPolicy};
use softbus::trust::TrustStore;
use softbus::wire::coap::CoapMessage;
use softbus::wire::frame::{Body, Frame, MAX_NOISE_LEN, SPAKE2_MSG_LEN, TAG_LEN};
use softbus::wire::hello::Hello;
use softbus::wire::msg::{ChannelKind, Message, MsgBody, PermResult, Qos, Scope};
use softbus::wire::Code;
use softbus::Identity;

// ------------------------------------------------------------------ generators

fn code() -> impl Strategy<Value = Code> {
    prop_oneof![
        prop::sample::select(Code::ALL.to_vec()),
        any::<u16>().prop_map(Code::from_u16),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn spake() -> impl Strategy<Value = [u8; SPAKE2_MSG_LEN]> {
    prop::collection::vec(any::<u8>(), SPAKE2_MSG_LEN).prop_map(|v| {
        let mut out = [0u8; SPAKE2_MSG_LEN];
        out.copy_from_slice(&v);
        out
    })
}

fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 32..=MAX_NOISE_LEN)
}

/// Every frame body the spec defines, with any field values `parse` accepts.
fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (any::<u32>(), any::<[u8; 32]>(), spake()).prop_map(
            |(pairing_id, static_key, spake_msg)| {
                Body::PairRequest {
                    pairing_id,
                    static_key,
                    spake_msg,
                }
            }
        ),
        (any::<u32>(), any::<[u8; 32]>(), spake(), any::<[u8; 32]>()).prop_map(
            |(pairing_id, static_key, spake_msg, confirm)| Body::PairResponse {
                pairing_id,
                static_key,
                spake_msg,
                confirm,
            }
        ),
        (any::<u32>(), any::<[u8; 32]>()).prop_map(|(pairing_id, confirm)| Body::PairConfirm {
            pairing_id,
            confirm
        }),
        (any::<u32>(), code(), any::<[u8; 32]>()).prop_map(|(pairing_id, status, mac)| {
            Body::PairResult {
                pairing_id,
                status,
                mac,
            }
        }),
        (any::<u32>(), noise()).prop_map(|(sender_conn_id, noise)| Body::Handshake1 {
            sender_conn_id,
            noise
        }),
        (any::<u32>(), noise()).prop_map(|(sender_conn_id, noise)| Body::Handshake2 {
            sender_conn_id,
            noise
        }),
        noise().prop_map(|noise| Body::Handshake3 { noise }),
        code().prop_map(|code| Body::HandshakeReject { code }),
        (
            any::<u8>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), TAG_LEN..=1400)
        )
            .prop_map(|(epoch, seq, ciphertext)| Body::Record {
                epoch,
                seq,
                ciphertext,
            }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (any::<u32>(), body()).prop_map(|(conn_id, body)| Frame { conn_id, body })
}

/// A service or capability name: 1..=64 bytes of UTF-8.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9._-]{0,63}",
        "\\PC{1,32}".prop_filter("1..=64 bytes", |s| !s.is_empty() && s.len() <= 64),
    ]
}

fn kind() -> impl Strategy<Value = ChannelKind> {
    prop::sample::select(vec![
        ChannelKind::Message,
        ChannelKind::Bytes,
        ChannelKind::Stream,
    ])
}

fn qos() -> impl Strategy<Value = Qos> {
    prop::sample::select(vec![
        Qos::Background,
        Qos::BestEffort,
        Qos::Interactive,
        Qos::Realtime,
    ])
}

fn scope() -> impl Strategy<Value = Scope> {
    prop::sample::select(vec![Scope::Once, Scope::Session, Scope::UntilRevoked])
}

fn perm_result() -> impl Strategy<Value = PermResult> {
    prop::sample::select(vec![
        PermResult::Granted,
        PermResult::Denied,
        PermResult::Timeout,
        PermResult::UnknownCapability,
    ])
}

/// Every inner message body the spec defines, with any field values `parse` accepts.
fn msg_body() -> impl Strategy<Value = MsgBody> {
    prop_oneof![
        Just(MsgBody::Heartbeat),
        (
            code(),
            "\\PC{0,60}".prop_filter("at most 255 bytes", |s| s.len() <= 255)
        )
            .prop_map(|(code, reason)| MsgBody::Close { code, reason }),
        any::<u32>().prop_map(|next_expected| MsgBody::Ack { next_expected }),
        (code(), any::<u8>()).prop_map(|(code, offending)| MsgBody::Error { code, offending }),
        (any::<u32>(), kind(), qos(), name()).prop_map(|(session_id, kind, qos, service)| {
            MsgBody::SessionOpen {
                session_id,
                kind,
                qos,
                service,
            }
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(session_id, max_message)| MsgBody::SessionAccept {
            session_id,
            max_message,
        }),
        (any::<u32>(), code())
            .prop_map(|(session_id, code)| MsgBody::SessionReject { session_id, code }),
        (any::<u32>(), code())
            .prop_map(|(session_id, code)| MsgBody::SessionClose { session_id, code }),
        (
            any::<u32>(),
            any::<u32>(),
            1..=u16::MAX,
            any::<u16>(),
            bytes(1400)
        )
            .prop_map(|(session_id, msg_id, frag_count, index_seed, payload)| {
                MsgBody::Data {
                    session_id,
                    msg_id,
                    frag_index: index_seed % frag_count,
                    frag_count,
                    payload,
                }
            }),
        any::<u32>().prop_map(|req_id| MsgBody::CapQuery { req_id }),
        (any::<u32>(), bytes(512)).prop_map(|(req_id, cbor)| MsgBody::CapList { req_id, cbor }),
        (any::<u32>(), scope(), any::<u32>(), name()).prop_map(
            |(req_id, scope, duration_s, capability)| {
                MsgBody::PermRequest {
                    req_id,
                    scope,
                    duration_s,
                    capability,
                }
            }
        ),
        (any::<u32>(), perm_result(), any::<u32>(), any::<u32>()).prop_map(
            |(req_id, result, grant_id, expires_in_ms)| MsgBody::PermResponse {
                req_id,
                result,
                grant_id,
                expires_in_ms,
            }
        ),
        any::<u32>().prop_map(|grant_id| MsgBody::PermRevoke { grant_id }),
        (any::<u32>(), any::<u32>(), name(), bytes(600)).prop_map(
            |(req_id, grant_id, capability, args)| {
                MsgBody::CapInvoke {
                    req_id,
                    grant_id,
                    capability,
                    args,
                }
            }
        ),
        (any::<u32>(), code(), bytes(600)).prop_map(|(req_id, status, result)| {
            MsgBody::CapResult {
                req_id,
                status,
                result,
            }
        }),
    ]
}

/// A message with an rseq its type allows: never 0 for reliable-only types, always 0 for
/// the unreliable control messages, anything for DATA (0 on stream channels).
fn message() -> impl Strategy<Value = Message> {
    msg_body().prop_flat_map(|body| {
        let rseq = match body {
            MsgBody::Heartbeat
            | MsgBody::Close { .. }
            | MsgBody::Ack { .. }
            | MsgBody::Error { .. } => Just(0).boxed(),
            MsgBody::Data { .. } => any::<u32>().boxed(),
            _ => (1..=u32::MAX).boxed(),
        };
        (rseq, Just(body)).prop_map(|(rseq, body)| Message { rseq, body })
    })
}

/// A valid encoding with one of: a byte flipped, a cut, a byte inserted, a tail appended.
fn mutate(valid: Vec<u8>, at: usize, byte: u8, how: u8, tail: Vec<u8>) -> Vec<u8> {
    let mut v = valid;
    let at = if v.is_empty() { 0 } else { at % v.len() };
    match how % 4 {
        0 if !v.is_empty() => v[at] ^= byte | 1,
        1 => v.truncate(at),
        2 => v.insert(at, byte),
        _ => v.extend(tail),
    }
    v
}

fn mutated<S: Strategy<Value = Vec<u8>>>(valid: S) -> impl Strategy<Value = Vec<u8>> {
    (valid, any::<usize>(), any::<u8>(), any::<u8>(), bytes(16))
        .prop_map(|(v, at, byte, how, tail)| mutate(v, at, byte, how, tail))
}

/// Names of the variants a sample of `strategy` produced.
fn variants<T: std::fmt::Debug>(
    strategy: impl Strategy<Value = T>,
    samples: usize,
) -> BTreeSet<String> {
    let mut runner = TestRunner::deterministic();
    (0..samples)
        .map(|_| {
            let value = strategy
                .new_tree(&mut runner)
                .expect("strategy generates")
                .current();
            let debug = format!("{value:?}");
            debug
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .find(|w| {
                    w.chars().next().is_some_and(char::is_uppercase)
                        && *w != "Frame"
                        && *w != "Message"
                })
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

// ------------------------------------------------------------------ round trips

#[test]
fn generators_cover_every_frame_body_and_message_body() {
    let frames = variants(body(), 600);
    assert_eq!(frames.len(), 9, "frame bodies generated: {frames:?}");
    let msgs = variants(msg_body(), 1500);
    assert_eq!(msgs.len(), 16, "message bodies generated: {msgs:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_frame_round_trips(f in frame()) {
        prop_assert_eq!(f.validate(), Ok(()));
        let bytes = f.to_vec();
        prop_assert_eq!(bytes.len(), f.buffer_len());
        prop_assert_eq!(Frame::parse(&bytes), Ok(f.clone()));
        prop_assert_eq!(&bytes[..6], &f.header()[..]);
        // emit appends and leaves what was there.
        let mut out = vec![0xAA];
        f.emit(&mut out);
        prop_assert_eq!(out[0], 0xAA);
        prop_assert_eq!(&out[1..], &bytes[..]);
    }

    #[test]
    fn every_message_round_trips(m in message()) {
        prop_assert_eq!(m.validate(), Ok(()));
        let bytes = m.to_vec();
        prop_assert_eq!(bytes.len(), m.buffer_len());
        prop_assert_eq!(Message::parse(&bytes), Ok(m.clone()));
        let mut out = vec![0x55];
        m.emit(&mut out);
        prop_assert_eq!(&out[1..], &bytes[..]);
    }

    #[test]
    fn hello_round_trips(hb_ms in 1..=u32::MAX, max_frame in any::<u16>(), name in "\\PC{0,16}".prop_filter("<= 64 bytes", |s| s.len() <= 64)) {
        let h = Hello { hb_ms, max_frame, name };
        prop_assert_eq!(Hello::parse(&h.to_bytes()), Ok(h));
    }

    #[test]
    fn capability_lists_round_trip(caps in prop::collection::vec((name(), name(), 0..=100u8, prop::option::of(0..=100u8), any::<u32>()), 0..6)) {
        let caps: Vec<Capability> = caps
            .into_iter()
            .map(|(name, kind, load, battery, latency_ms)| Capability { name, kind, metrics: Metrics { load, battery, latency_ms } })
            .collect();
        prop_assert_eq!(capability::decode_list(&capability::encode_list(&caps)), Ok(caps));
    }
}

// ------------------------------------------------------------------ decoders never panic

fn valid_advert() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<[u8; 32]>(),
        name(),
        name(),
        any::<u16>(),
        prop::collection::vec(name(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(pk, n, ty, port, caps, pair)| {
            let mut a = Advert::new(pk, n, ty, port);
            a.caps = caps;
            a.pair = pair;
            a.to_cbor()
        })
}

fn valid_cap_list() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((name(), name()), 0..4).prop_map(|caps| {
        let caps: Vec<Capability> = caps
            .into_iter()
            .map(|(name, kind)| Capability {
                name,
                kind,
                metrics: Metrics::default(),
            })
            .collect();
        capability::encode_list(&caps)
    })
}

/// Bytes that start like a frame: version 1, an assigned or random type, a conn_id.
fn frame_like() -> impl Strategy<Value = Vec<u8>> {
    let types = vec![
        0x01u8, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x1F, 0x20, 0x00, 0xFF,
    ];
    (prop::sample::select(types), any::<u32>(), bytes(1500))
        .prop_map(|(ty, conn, tail)| [&[0x01, ty][..], &conn.to_be_bytes()[..], &tail[..]].concat())
}

/// Bytes that start like an inner message: an assigned type and an rseq.
fn message_like() -> impl Strategy<Value = Vec<u8>> {
    let types = vec![
        0x01u8, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x13, 0x14, 0x20, 0x21, 0x30, 0x31, 0x32, 0x33,
        0x34,
    ];
    (prop::sample::select(types), any::<u32>(), bytes(300))
        .prop_map(|(ty, rseq, tail)| [&[ty][..], &rseq.to_be_bytes()[..], &tail[..]].concat())
}

fn control_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,80}",
        (
            any::<i64>(),
            prop::sample::select(control::OPS.to_vec()),
            "\\PC{0,20}"
        )
            .prop_map(|(id, op, arg)| format!(
                "{{\"id\":{id},\"op\":\"{op}\",\"pin\":{arg:?},\"peer\":[1,{{}}]}}"
            )),
        mutated("\\{\"id\":[0-9]{1,3},\"op\":\"[a-z_]{1,12}\"\\}".prop_map(String::into_bytes))
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn frame_parse_never_panics(data in prop_oneof![bytes(1500), frame_like(), mutated(frame().prop_map(|f| f.to_vec()))]) {
        if let Ok(f) = Frame::parse(&data) {
            // Whatever parses re-encodes to the same bytes: the encoding is canonical.
            prop_assert_eq!(f.to_vec(), data);
        }
    }

    #[test]
    fn message_parse_never_panics(data in prop_oneof![bytes(600), message_like(), mutated(message().prop_map(|m| m.to_vec()))]) {
        if let Ok(m) = Message::parse(&data) {
            prop_assert_eq!(m.to_vec(), data);
        }
    }

    #[test]
    fn decode_list_never_panics(data in prop_oneof![bytes(300), mutated(valid_cap_list())]) {
        if let Ok(caps) = capability::decode_list(&data) {
            prop_assert!(caps.iter().all(|c| !c.name.is_empty() && c.name.len() <= 64 && c.metrics.load <= 100));
        }
    }

    #[test]
    fn advert_from_cbor_never_panics(data in prop_oneof![bytes(300), mutated(valid_advert())]) {
        if let Ok(advert) = Advert::from_cbor(&data) {
            // What was accepted encodes canonically and reads back the same.
            prop_assert_eq!(Advert::from_cbor(&advert.to_cbor()), Ok(advert));
        }
    }

    #[test]
    fn coap_parse_never_panics(data in prop_oneof![bytes(300), mutated(valid_advert().prop_map(|p| {
        CoapMessage::new(softbus::wire::coap::MessageType::NonConfirmable, softbus::wire::coap::Code::CONTENT, 7).with_payload(p).to_bytes()
    }))]) {
        if let Ok(m) = CoapMessage::parse(&data) {
            prop_assert_eq!(m.buffer_len(), m.to_bytes().len());
        }
    }

    #[test]
    fn control_parse_request_never_panics(line in control_line()) {
        match control::parse_request(&line) {
            Ok(req) => prop_assert!(req.args.contains_key("op")),
            Err((_, e)) => prop_assert_eq!(e.code, "BAD_REQUEST"),
        }
    }

    #[test]
    fn parse_hello_never_panics(data in bytes(100)) {
        if let Ok(h) = Hello::parse(&data) {
            prop_assert_eq!(h.to_bytes(), data);
        }
    }
}

// ------------------------------------------------------------------ the endpoint

fn addr(port: u16) -> LinkAddr {
    LinkAddr::Ip(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Two endpoints with each other's keys pinned, connected, with an `echo` session open.
struct Established {
    now: Instant,
    a: Endpoint,
    b: Endpoint,
    a_addr: LinkAddr,
    b_addr: LinkAddr,
    /// B's connection ID (the conn_id of frames to B).
    b_conn: u32,
    /// The key A seals records to B with.
    a_to_b: RecordKey,
    session: u32,
    next_seq: u64,
}

/// Datagrams two endpoints may exchange in answer to one input before it counts as a loop.
const SHUTTLE_LIMIT: usize = 20_000;

impl Established {
    fn new() -> Established {
        let now = Instant::now();
        let id_a = Identity::from_secret([0x11; 32]);
        let id_b = Identity::from_secret([0x22; 32]);
        let mut trust_a = TrustStore::new();
        trust_a.pin(id_b.public(), 0);
        let mut trust_b = TrustStore::new();
        trust_b.pin(id_a.public(), 0);
        let cfg = |name: &str| Config {
            name: name.into(),
            hb_interval: Duration::from_millis(200),
            pin: Some("123456".into()),
            prompt_policy: PromptPolicy::Approve,
            prompt_timeout: Duration::from_millis(300),
            capabilities: vec![Capability {
                name: "speaker.main".into(),
                kind: "speaker".into(),
                metrics: Metrics::default(),
            }],
            ..Config::default()
        };
        let mut e = Established {
            now,
            a: Endpoint::new(cfg("a"), id_a, trust_a, [0x33; 32], now, 0),
            b: Endpoint::new(cfg("b"), id_b, trust_b, [0x44; 32], now, 0),
            a_addr: addr(1000),
            b_addr: addr(2000),
            b_conn: 0,
            a_to_b: RecordKey::new([0; 32]),
            session: 0,
            next_seq: 1 << 40,
        };
        e.a.connect(now, e.b_addr.clone());
        e.shuttle();
        let (_, b_conn, tx, _) = e.a.session_keys().into_iter().next().expect("connected");
        e.b_conn = b_conn;
        let mut key = [0u8; 32];
        key.copy_from_slice(&hex::decode(tx).expect("hex key"));
        e.a_to_b = RecordKey::new(key);
        let peer_b = e.b.identity().device_id();
        e.session =
            e.a.open_session(now, peer_b, "echo", ChannelKind::Message, Qos::Interactive)
                .expect("connected");
        e.shuttle();
        e
    }

    /// Move datagrams both ways until both are quiet; panics on an endless exchange.
    fn shuttle(&mut self) {
        let mut moved = 0;
        loop {
            let mut any = false;
            while let Some(t) = self.a.poll_transmit() {
                any = true;
                moved += 1;
                self.b
                    .handle_datagram(self.now, self.a_addr.clone(), &t.data);
            }
            while let Some(t) = self.b.poll_transmit() {
                any = true;
                moved += 1;
                self.a
                    .handle_datagram(self.now, self.b_addr.clone(), &t.data);
            }
            while self.a.poll_event().is_some() {}
            while self.b.poll_event().is_some() {}
            assert!(
                moved < SHUTTLE_LIMIT,
                "the endpoints answer each other without end"
            );
            if !any {
                return;
            }
        }
    }

    fn feed(&mut self, input: &Input) {
        match input {
            Input::Raw(data) => self.b.handle_datagram(self.now, self.a_addr.clone(), data),
            Input::FromStranger(data) => self.b.handle_datagram(self.now, addr(3000), data),
            Input::Aimed { ty, body } => {
                let data = [&[0x01, *ty][..], &self.b_conn.to_be_bytes()[..], &body[..]].concat();
                self.b.handle_datagram(self.now, self.a_addr.clone(), &data);
            }
            Input::Sealed {
                epoch_bump,
                plaintext,
            } => self.seal_to_b(*epoch_bump, plaintext),
            Input::SealedMessage(m) => self.seal_to_b(false, &m.to_vec()),
            Input::Tick(ms) => {
                self.now += Duration::from_millis(u64::from(*ms));
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
            }
        }
        self.shuttle();
    }

    fn seal_to_b(&mut self, epoch_bump: bool, plaintext: &[u8]) {
        let key = if epoch_bump {
            self.a_to_b.rekeyed()
        } else {
            self.a_to_b.clone()
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = Frame {
            conn_id: self.b_conn,
            body: Body::Record {
                epoch: key.epoch,
                seq,
                ciphertext: key.seal(self.b_conn, seq, plaintext),
            },
        };
        self.b
            .handle_datagram(self.now, self.a_addr.clone(), &frame.to_vec());
    }

    /// Whether a message on the echo session still comes back.
    fn echo_works(&mut self) -> bool {
        let peer_b = self.b.identity().device_id();
        if self
            .a
            .send(self.now, peer_b, self.session, b"still there?")
            .is_err()
        {
            return false;
        }
        let mut echoed = false;
        for _ in 0..100 {
            while let Some(t) = self.a.poll_transmit() {
                self.b
                    .handle_datagram(self.now, self.a_addr.clone(), &t.data);
            }
            while let Some(t) = self.b.poll_transmit() {
                self.a
                    .handle_datagram(self.now, self.b_addr.clone(), &t.data);
            }
            while let Some(e) = self.a.poll_event() {
                echoed |= matches!(e, softbus::Event::Message { ref data, .. } if data == b"still there?");
            }
            while self.b.poll_event().is_some() {}
            if echoed {
                return true;
            }
        }
        false
    }
}

/// One thing that arrives at endpoint B.
#[derive(Debug, Clone)]
enum Input {
    /// Random bytes from A's address.
    Raw(Vec<u8>),
    /// Random bytes from an address B has never seen.
    FromStranger(Vec<u8>),
    /// A frame header of version 1 and `ty`, to B's connection ID, then random bytes.
    Aimed { ty: u8, body: Vec<u8> },
    /// A record sealed with A's real key (at the current or next epoch) with any plaintext.
    Sealed {
        epoch_bump: bool,
        plaintext: Vec<u8>,
    },
    /// A record sealed with A's real key carrying a well-formed message.
    SealedMessage(Message),
    /// Time passes (milliseconds) and timers fire.
    Tick(u16),
}

/// Garbage anyone on the link could send: it carries no valid record authentication.
fn unauthenticated_input() -> impl Strategy<Value = Input> {
    unauthenticated_input_of(vec![0x01u8, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x1F, 0x20])
}

fn unauthenticated_input_of(types: Vec<u8>) -> impl Strategy<Value = Input> {
    prop_oneof![
        prop_oneof![bytes(1500), frame_like(), frame().prop_map(|f| f.to_vec())]
            .prop_map(Input::Raw),
        prop_oneof![bytes(200), frame().prop_map(|f| f.to_vec())].prop_map(Input::FromStranger),
        (prop::sample::select(types), bytes(1100)).prop_map(|(ty, body)| Input::Aimed { ty, body }),
    ]
}

fn any_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => unauthenticated_input(),
        2 => (any::<bool>(), prop_oneof![bytes(64), message_like()])
            .prop_map(|(epoch_bump, plaintext)| Input::Sealed { epoch_bump, plaintext }),
        3 => message().prop_map(Input::SealedMessage),
        1 => (0..3000u16).prop_map(Input::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn an_established_endpoint_survives_arbitrary_datagrams(inputs in prop::collection::vec(any_input(), 1..40)) {
        let mut e = Established::new();
        for input in &inputs {
            e.feed(input);
        }
        // Still answers its getters coherently.
        let state = e.b.state(e.now);
        prop_assert_eq!(state.device_id, e.b.identity().device_id());
        prop_assert!(serde_json::to_string(&state).is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Nobody without the session key can tear down or disturb an established connection.
    ///
    /// HANDSHAKE_2 and HANDSHAKE_3 aimed at the connection are left to the two regression
    /// tests below, which are ignored until the endpoint is fixed.
    #[test]
    fn unauthenticated_datagrams_do_not_disturb_an_established_connection(
        inputs in prop::collection::vec(unauthenticated_input_of(vec![0x01, 0x02, 0x03, 0x04, 0x10, 0x1F, 0x20]), 1..30)
    ) {
        let mut e = Established::new();
        for input in &inputs {
            e.feed(input);
        }
        prop_assert!(e.echo_works(), "the echo session stopped working after {:?}", inputs);
    }
}

/// An unauthenticated frame of type `ty` with a plausible Noise body, aimed at B's connection.
fn aimed_handshake_leaves_the_connection_working(ty: u8) -> bool {
    let mut e = Established::new();
    e.feed(&Input::Aimed {
        ty,
        body: [&[0u8; 4][..], &[0x5A; 96][..]].concat(),
    });
    e.echo_works()
}

#[test]
fn forged_handshake_2_to_an_established_connection_is_ignored() {
    assert!(aimed_handshake_leaves_the_connection_working(0x11));
}

#[test]
fn forged_handshake_3_to_an_established_connection_is_ignored() {
    assert!(aimed_handshake_leaves_the_connection_working(0x12));
}
