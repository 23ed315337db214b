//! Golden frames: one fixture per frame type, inner message type, CoAP discovery exchange and
//! the advert CBOR, pinning the `softbus` wire codec to the spec's byte layouts.
//!
//! Each case is a repr built from fixed values. [`layout`] writes its bytes field by field from
//! the spec's tables, independently of the codec, and the tests check that:
//!
//! * the codec emits exactly those bytes, and `buffer_len` says how many;
//! * the codec parses those bytes back into the repr;
//! * the fixture file `fixtures/frames/<case>.json` holds the same fields and bytes (a stale or
//!   missing file fails and names `cargo xtask fixtures --accept`), and decoding its bytes gives
//!   the fields it lists;
//! * an annotated hex dump of every encoding matches its insta snapshot in `tests/snapshots/`.
//!
//! Adding a frame or message type without a case here fails
//! `every_frame_and_message_type_has_a_golden_case`.

mod support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use softbus::capability::{self, Capability, Metrics};
use softbus::crypto::RecordKey;
use softbus::discovery::{Advert, Probe, Responder};
use softbus::wire::coap::{self, CoapMessage, ContentFormat, MessageType, OptionNumber, Token};
use softbus::wire::frame::{Body, Frame, FrameType};
use softbus::wire::msg::{ChannelKind, Message, MsgBody, MsgType, PermResult, Qos, Scope};
use softbus::wire::Code;
use softbus::Identity;

use support::{check_fixture, generated_stamp, hex, read_fixture, unhex, update_mode};

/// Where the frame fixtures live, relative to the workspace root.
const FRAMES_DIR: &str = "fixtures/frames";

// ------------------------------------------------------------------ the fixture file format

/// One field of an encoding, in wire order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Field {
    /// The field name used in the spec tables.
    name: String,
    /// The field's value when it reads as a number or a name (absent for opaque bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    /// The field's bytes.
    hex: String,
}

/// The content of `fixtures/frames/<case>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fixture {
    #[serde(rename = "@generated")]
    generated: String,
    /// The case name (the file stem).
    name: String,
    /// `frame`, `message` (the plaintext of a RECORD), `coap` or `cbor`.
    layer: String,
    /// Where the spec defines this encoding.
    spec: String,
    /// What the case shows.
    description: String,
    /// Length of the encoding in bytes.
    len: usize,
    /// The whole encoding.
    hex: String,
    /// The encoding field by field; their bytes concatenate to `hex`.
    fields: Vec<Field>,
}

// ------------------------------------------------------------------ the cases

/// A value of one of the codecs under test.
#[derive(Debug, Clone, PartialEq)]
enum Repr {
    Frame(Frame),
    Message(Message),
    Coap(CoapMessage),
    Advert(Advert),
}

impl Repr {
    fn layer(&self) -> &'static str {
        match self {
            Repr::Frame(_) => "frame",
            Repr::Message(_) => "message",
            Repr::Coap(_) => "coap",
            Repr::Advert(_) => "cbor",
        }
    }

    fn emit(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Repr::Frame(f) => f.emit(&mut out),
            Repr::Message(m) => m.emit(&mut out),
            Repr::Coap(c) => c.emit(&mut out),
            Repr::Advert(a) => out = a.to_cbor(),
        }
        out
    }

    fn buffer_len(&self) -> usize {
        match self {
            Repr::Frame(f) => f.buffer_len(),
            Repr::Message(m) => m.buffer_len(),
            Repr::Coap(c) => c.buffer_len(),
            // The advert codec has no separate length computation.
            Repr::Advert(a) => a.to_cbor().len(),
        }
    }

    /// Parse `bytes` with the codec of this repr's layer.
    fn parse_same_layer(&self, bytes: &[u8]) -> Result<Repr, String> {
        match self {
            Repr::Frame(_) => Frame::parse(bytes)
                .map(Repr::Frame)
                .map_err(|e| e.to_string()),
            Repr::Message(_) => Message::parse(bytes)
                .map(Repr::Message)
                .map_err(|e| e.to_string()),
            Repr::Coap(_) => CoapMessage::parse(bytes)
                .map(Repr::Coap)
                .map_err(|e| e.to_string()),
            Repr::Advert(_) => Advert::from_cbor(bytes)
                .map(Repr::Advert)
                .map_err(|e| e.to_string()),
        }
    }

    fn layout(&self) -> Vec<Field> {
        let mut l = Layout::default();
        match self {
            Repr::Frame(f) => frame_layout(&mut l, f),
            Repr::Message(m) => message_layout(&mut l, m),
            Repr::Coap(c) => coap_layout(&mut l, c),
            Repr::Advert(a) => advert_layout(&mut l, a),
        }
        l.0
    }
}

struct Case {
    name: &'static str,
    spec: &'static str,
    description: &'static str,
    repr: Repr,
}

impl Case {
    fn path(&self) -> String {
        format!("{FRAMES_DIR}/{}.json", self.name)
    }

    fn fixture(&self) -> Fixture {
        let bytes = self.repr.emit();
        Fixture {
            generated: generated_stamp("reference-impl/tests/golden.rs"),
            name: self.name.to_string(),
            layer: self.repr.layer().to_string(),
            spec: self.spec.to_string(),
            description: self.description.to_string(),
            len: bytes.len(),
            hex: hex(&bytes),
            fields: self.repr.layout(),
        }
    }

    fn render(&self) -> String {
        render_json(&self.fixture())
    }
}

fn render_json<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("fixtures serialize");
    s.push('\n');
    s
}

/// `n` bytes counting up from `start` (wrapping): easy to spot in a hex dump.
fn pattern(start: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| start.wrapping_add(i as u8)).collect()
}

fn pattern_array<const N: usize>(start: u8) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&pattern(start, N));
    out
}

/// A SPAKE2 message: the side byte (`A` or `B`) and a 32-byte point.
fn spake_msg(side: u8, start: u8) -> [u8; 33] {
    let mut out = [0u8; 33];
    out[0] = side;
    out[1..].copy_from_slice(&pattern(start, 32));
    out
}

const PAIRING_ID: u32 = 0x1A2B_3C4D;
const INITIATOR_CONN: u32 = 0x0000_1001;
const RESPONDER_CONN: u32 = 0x0000_2002;
const TOKEN: [u8; 4] = [0xDE, 0xAD, 0xBE, 0xEF];

fn frame(conn_id: u32, body: Body) -> Repr {
    Repr::Frame(Frame { conn_id, body })
}

fn msg(rseq: u32, body: MsgBody) -> Repr {
    Repr::Message(Message { rseq, body })
}

/// The advert of the golden device.
fn golden_advert() -> Advert {
    let identity = Identity::from_secret(pattern_array(0x01));
    let mut advert = Advert::new(*identity.public(), "living-room speaker", "speaker", 5684);
    advert.caps = vec!["speaker".into(), "microphone".into()];
    advert.pair = true;
    advert
}

fn golden_probe() -> Probe {
    Probe::new(0x7D01, TOKEN, Some("speaker")).expect("a valid capability filter")
}

fn golden_response() -> CoapMessage {
    let mut m = CoapMessage::new(MessageType::NonConfirmable, coap::Code::CONTENT, 0x3A00)
        .with_token(Token::from(TOKEN))
        .with_payload(golden_advert().to_cbor());
    m.set_content_format(ContentFormat::CBOR);
    m
}

fn golden_caps() -> Vec<Capability> {
    vec![Capability {
        name: "speaker.main".into(),
        kind: "speaker".into(),
        metrics: Metrics {
            load: 12,
            battery: Some(80),
            latency_ms: 4,
        },
    }]
}

fn cases() -> Vec<Case> {
    let record_key = RecordKey::new(pattern_array(0x70));
    let heartbeat = Message::unreliable(MsgBody::Heartbeat).to_vec();
    vec![
        // ---- outer frames (spec 2, 5, 6, 7)
        Case {
            name: "pair_request",
            spec: "sections 2.4 and 5.2, PAIR_REQUEST (frame type 0x01)",
            description:
                "Pairing message 1: the initiator's pairing ID, static key and SPAKE2 message A.",
            repr: frame(
                0,
                Body::PairRequest {
                    pairing_id: PAIRING_ID,
                    static_key: pattern_array(0xA0),
                    spake_msg: spake_msg(b'A', 0x20),
                },
            ),
        },
        Case {
            name: "pair_response",
            spec: "sections 2.4 and 5.3, PAIR_RESPONSE (frame type 0x02)",
            description:
                "Pairing message 2: the responder's static key, SPAKE2 message B and confirm_B.",
            repr: frame(
                0,
                Body::PairResponse {
                    pairing_id: PAIRING_ID,
                    static_key: pattern_array(0xB0),
                    spake_msg: spake_msg(b'B', 0x60),
                    confirm: pattern_array(0xC0),
                },
            ),
        },
        Case {
            name: "pair_confirm",
            spec: "sections 2.4 and 5.5, PAIR_CONFIRM (frame type 0x03)",
            description: "Pairing message 3: the initiator's confirm_A.",
            repr: frame(
                0,
                Body::PairConfirm {
                    pairing_id: PAIRING_ID,
                    confirm: pattern_array(0xD0),
                },
            ),
        },
        Case {
            name: "pair_result",
            spec: "sections 2.4 and 5.3, PAIR_RESULT (frame type 0x04)",
            description: "Pairing outcome OK with the MAC over the status.",
            repr: frame(
                0,
                Body::PairResult {
                    pairing_id: PAIRING_ID,
                    status: Code::Ok,
                    mac: pattern_array(0xE0),
                },
            ),
        },
        Case {
            name: "handshake_1",
            spec: "sections 2.4 and 6.1, HANDSHAKE_1 (frame type 0x10)",
            description: "Noise XX message 1 (the initiator's ephemeral key), to conn_id 0.",
            repr: frame(
                0,
                Body::Handshake1 {
                    sender_conn_id: INITIATOR_CONN,
                    noise: pattern(0x00, 32),
                },
            ),
        },
        Case {
            name: "handshake_2",
            spec: "sections 2.4, 6.1 and 6.4, HANDSHAKE_2 (frame type 0x11)",
            description:
                "Noise XX message 2: ephemeral key, encrypted static key and encrypted HELLO \
                          (110 bytes for a 14-byte HELLO).",
            repr: frame(
                INITIATOR_CONN,
                Body::Handshake2 {
                    sender_conn_id: RESPONDER_CONN,
                    noise: pattern(0x10, 32 + 48 + 14 + 16),
                },
            ),
        },
        Case {
            name: "handshake_3",
            spec: "sections 2.4, 6.1 and 6.4, HANDSHAKE_3 (frame type 0x12)",
            description: "Noise XX message 3: encrypted static key and encrypted HELLO (78 bytes).",
            repr: frame(
                RESPONDER_CONN,
                Body::Handshake3 {
                    noise: pattern(0x80, 48 + 14 + 16),
                },
            ),
        },
        Case {
            name: "handshake_reject",
            spec: "sections 2.4 and 6.5, HANDSHAKE_REJECT (frame type 0x1F)",
            description: "The responder refuses a handshake from an unpinned key.",
            repr: frame(
                INITIATOR_CONN,
                Body::HandshakeReject {
                    code: Code::UnknownPeer,
                },
            ),
        },
        Case {
            name: "record",
            spec: "sections 2.4 and 7.2, RECORD (frame type 0x20)",
            description: "A HEARTBEAT sealed with AES-256-GCM under the key 707172..8f, epoch 0, \
                          seq 0; the AAD is the header, epoch and seq.",
            repr: frame(
                RESPONDER_CONN,
                Body::Record {
                    epoch: 0,
                    seq: 0,
                    ciphertext: record_key.seal(RESPONDER_CONN, 0, &heartbeat),
                },
            ),
        },
        // ---- inner messages (spec 8-12)
        Case {
            name: "msg_heartbeat",
            spec: "sections 8.1, 12.1 and 13, HEARTBEAT (message type 0x01)",
            description: "Keepalive; unreliable, so rseq is 0.",
            repr: msg(0, MsgBody::Heartbeat),
        },
        Case {
            name: "msg_close",
            spec: "sections 8.1, 12 and 13, CLOSE (message type 0x02)",
            description: "Orderly connection close with a short reason.",
            repr: msg(
                0,
                MsgBody::Close {
                    code: Code::NormalClose,
                    reason: "bye".into(),
                },
            ),
        },
        Case {
            name: "msg_ack",
            spec: "sections 8.1, 8.2 and 13, ACK (message type 0x03)",
            description: "Cumulative acknowledgement: every rseq below 42 arrived.",
            repr: msg(0, MsgBody::Ack { next_expected: 42 }),
        },
        Case {
            name: "msg_error",
            spec: "sections 8.1 and 13, ERROR (message type 0x04)",
            description: "Error report: a DATA message (0x14) could not be parsed.",
            repr: msg(
                0,
                MsgBody::Error {
                    code: Code::Malformed,
                    offending: 0x14,
                },
            ),
        },
        Case {
            name: "msg_time_request",
            spec: "section 17.2, TIME_REQUEST (message type 0x05)",
            description: "Clock synchronization request 7, sent at 1.5 s in the requester's timebase.",
            repr: msg(
                0,
                MsgBody::TimeRequest {
                    sync_id: 7,
                    t1: 1_500_000,
                },
            ),
        },
        Case {
            name: "msg_time_response",
            spec: "section 17.2, TIME_RESPONSE (message type 0x06)",
            description: "Answer to request 7: received at 9.000100 s and sent at 9.000130 s in the responder's timebase.",
            repr: msg(
                0,
                MsgBody::TimeResponse {
                    sync_id: 7,
                    t1: 1_500_000,
                    t2: 9_000_100,
                    t3: 9_000_130,
                },
            ),
        },
        Case {
            name: "msg_session_open",
            spec: "sections 8.1 and 9.2, SESSION_OPEN (message type 0x10)",
            description:
                "Open session 2 to the `echo` service on a message channel, QoS interactive.",
            repr: msg(
                1,
                MsgBody::SessionOpen {
                    session_id: 2,
                    kind: ChannelKind::Message,
                    qos: Qos::Interactive,
                    service: "echo".into(),
                },
            ),
        },
        Case {
            name: "msg_session_accept",
            spec: "sections 8.1 and 9.2, SESSION_ACCEPT (message type 0x11)",
            description: "Accept session 2 with a 64 KiB message limit.",
            repr: msg(
                1,
                MsgBody::SessionAccept {
                    session_id: 2,
                    max_message: 65536,
                },
            ),
        },
        Case {
            name: "msg_session_reject",
            spec: "sections 8.1 and 9.2, SESSION_REJECT (message type 0x12)",
            description: "Refuse session 4: no such service.",
            repr: msg(
                2,
                MsgBody::SessionReject {
                    session_id: 4,
                    code: Code::UnknownService,
                },
            ),
        },
        Case {
            name: "msg_session_close",
            spec: "sections 8.1 and 9.2, SESSION_CLOSE (message type 0x13)",
            description: "Close session 2 normally.",
            repr: msg(
                3,
                MsgBody::SessionClose {
                    session_id: 2,
                    code: Code::NormalClose,
                },
            ),
        },
        Case {
            name: "msg_data",
            spec: "sections 8.1 and 9.3, DATA (message type 0x14)",
            description:
                "The only fragment of message 1 on session 2 (a reliable channel, so rseq is set).",
            repr: msg(
                4,
                MsgBody::Data {
                    session_id: 2,
                    msg_id: 1,
                    frag_index: 0,
                    frag_count: 1,
                    payload: b"hello, softbus".to_vec(),
                },
            ),
        },
        Case {
            name: "msg_timed_data",
            spec: "section 17.4, TIMED_DATA (message type 0x15)",
            description: "A 20 ms audio frame on stream session 3, to be presented at 2.02 s in the sender's timebase (unreliable, so rseq is 0).",
            repr: msg(
                0,
                MsgBody::TimedData {
                    session_id: 3,
                    msg_id: 101,
                    frag_index: 0,
                    frag_count: 1,
                    pts_us: 2_020_000,
                    payload: b"pcm".to_vec(),
                },
            ),
        },
        Case {
            name: "msg_cap_query",
            spec: "sections 8.1 and 10.1, CAP_QUERY (message type 0x20)",
            description: "Ask for the capability list.",
            repr: msg(5, MsgBody::CapQuery { req_id: 7 }),
        },
        Case {
            name: "msg_cap_list",
            spec: "sections 8.1 and 10.1, CAP_LIST (message type 0x21)",
            description: "One capability, `speaker.main`, as the CBOR array of spec 10.",
            repr: msg(
                5,
                MsgBody::CapList {
                    req_id: 7,
                    cbor: capability::encode_list(&golden_caps()),
                },
            ),
        },
        Case {
            name: "msg_perm_request",
            spec: "sections 8.1 and 11.1, PERM_REQUEST (message type 0x30)",
            description: "Ask to use `speaker.main` until revoked, for at most an hour.",
            repr: msg(
                6,
                MsgBody::PermRequest {
                    req_id: 8,
                    scope: Scope::UntilRevoked,
                    duration_s: 3600,
                    capability: "speaker.main".into(),
                },
            ),
        },
        Case {
            name: "msg_perm_response",
            spec: "sections 8.1 and 11.1, PERM_RESPONSE (message type 0x31)",
            description: "Granted as grant 0x0101, expiring in an hour.",
            repr: msg(
                6,
                MsgBody::PermResponse {
                    req_id: 8,
                    result: PermResult::Granted,
                    grant_id: 0x0101,
                    expires_in_ms: 3_600_000,
                },
            ),
        },
        Case {
            name: "msg_perm_revoke",
            spec: "sections 8.1 and 11.3, PERM_REVOKE (message type 0x32)",
            description: "The device revokes grant 0x0101.",
            repr: msg(7, MsgBody::PermRevoke { grant_id: 0x0101 }),
        },
        Case {
            name: "msg_cap_invoke",
            spec: "sections 8.1 and 10.2, CAP_INVOKE (message type 0x33)",
            description: "Use `speaker.main` under grant 0x0101 with the argument `play`.",
            repr: msg(
                8,
                MsgBody::CapInvoke {
                    req_id: 9,
                    grant_id: 0x0101,
                    capability: "speaker.main".into(),
                    args: b"play".to_vec(),
                },
            ),
        },
        Case {
            name: "msg_cap_result",
            spec: "sections 8.1 and 10.2, CAP_RESULT (message type 0x34)",
            description: "The invocation succeeded with the result `playing`.",
            repr: msg(
                9,
                MsgBody::CapResult {
                    req_id: 9,
                    status: Code::Ok,
                    result: b"playing".to_vec(),
                },
            ),
        },
        // ---- discovery (spec 3)
        Case {
            name: "coap_discovery_request",
            spec: "section 3.1, discovery request (CoAP NON GET /softbus/v1/device?cap=speaker)",
            description:
                "What a client multicasts to 224.0.1.187 or ff02::fd, UDP 5683, to find speakers.",
            repr: Repr::Coap(golden_probe().to_message()),
        },
        Case {
            name: "coap_discovery_response",
            spec: "section 3.1, discovery response (CoAP NON 2.05 Content, Content-Format 60)",
            description: "The golden device's answer to the golden request: its advert as CBOR.",
            repr: Repr::Coap(golden_response()),
        },
        Case {
            name: "advert_cbor",
            spec:
                "section 3.2, the advert (CDDL softbus-advert), deterministic CBOR (RFC 8949 4.2.1)",
            description:
                "The advert of a speaker with identity secret 0102..20, pairable, on port 5684.",
            repr: Repr::Advert(golden_advert()),
        },
    ]
}

// ------------------------------------------------------------------ the spec layouts

/// The fields of an encoding, written from the spec tables without the codec.
#[derive(Default)]
struct Layout(Vec<Field>);

impl Layout {
    fn field(&mut self, name: impl Into<String>, value: Option<Value>, bytes: &[u8]) {
        self.0.push(Field {
            name: name.into(),
            value,
            hex: hex(bytes),
        });
    }

    fn u8(&mut self, name: &str, v: u8) {
        self.field(name, Some(v.into()), &[v]);
    }

    fn u16(&mut self, name: &str, v: u16) {
        self.field(name, Some(v.into()), &v.to_be_bytes());
    }

    fn u32(&mut self, name: &str, v: u32) {
        self.field(name, Some(v.into()), &v.to_be_bytes());
    }

    fn u64(&mut self, name: &str, v: u64) {
        self.field(name, Some(v.into()), &v.to_be_bytes());
    }

    /// A byte whose value has a name in a spec table.
    fn named_u8(&mut self, name: &str, label: &str, v: u8) {
        self.field(name, Some(format!("{label} ({v:#04x})").into()), &[v]);
    }

    /// An error or close code (spec 13): u16, shown by name.
    fn code(&mut self, name: &str, code: Code) {
        let v = code.to_u16();
        self.field(
            name,
            Some(format!("{} ({v})", code.name()).into()),
            &v.to_be_bytes(),
        );
    }

    fn bytes(&mut self, name: &str, b: &[u8]) {
        self.field(name, None, b);
    }

    /// A UTF-8 string with a u8 length prefix named `{prefix}_len`, as in the spec tables.
    fn short_text(&mut self, prefix: &str, name: &str, s: &str) {
        self.u8(&format!("{prefix}_len"), s.len() as u8);
        self.field(name, Some(s.into()), s.as_bytes());
    }

    /// Bytes shown as text when they are printable UTF-8.
    fn payload(&mut self, name: &str, b: &[u8]) {
        let value = std::str::from_utf8(b)
            .ok()
            .filter(|s| s.chars().all(|c| !c.is_control()))
            .map(|s| Value::from(s.to_string()));
        self.field(name, value, b);
    }
}

/// Frame type names and bytes, from the spec's frame table (section 2.4).
fn frame_type_entry(body: &Body) -> (&'static str, u8) {
    match body {
        Body::PairRequest { .. } => ("PAIR_REQUEST", 0x01),
        Body::PairResponse { .. } => ("PAIR_RESPONSE", 0x02),
        Body::PairConfirm { .. } => ("PAIR_CONFIRM", 0x03),
        Body::PairResult { .. } => ("PAIR_RESULT", 0x04),
        Body::Handshake1 { .. } => ("HANDSHAKE_1", 0x10),
        Body::Handshake2 { .. } => ("HANDSHAKE_2", 0x11),
        Body::Handshake3 { .. } => ("HANDSHAKE_3", 0x12),
        Body::HandshakeReject { .. } => ("HANDSHAKE_REJECT", 0x1F),
        Body::Record { .. } => ("RECORD", 0x20),
    }
}

fn frame_layout(l: &mut Layout, f: &Frame) {
    let (name, ty) = frame_type_entry(&f.body);
    l.u8("version", 0x01);
    l.named_u8("type", name, ty);
    l.u32("conn_id", f.conn_id);
    match &f.body {
        Body::PairRequest {
            pairing_id,
            static_key,
            spake_msg,
        } => {
            l.u32("pairing_id", *pairing_id);
            l.bytes("static_key", static_key);
            l.bytes("spake_msg", spake_msg);
        }
        Body::PairResponse {
            pairing_id,
            static_key,
            spake_msg,
            confirm,
        } => {
            l.u32("pairing_id", *pairing_id);
            l.bytes("static_key", static_key);
            l.bytes("spake_msg", spake_msg);
            l.bytes("confirm", confirm);
        }
        Body::PairConfirm {
            pairing_id,
            confirm,
        } => {
            l.u32("pairing_id", *pairing_id);
            l.bytes("confirm", confirm);
        }
        Body::PairResult {
            pairing_id,
            status,
            mac,
        } => {
            l.u32("pairing_id", *pairing_id);
            l.code("status", *status);
            l.bytes("mac", mac);
        }
        Body::Handshake1 {
            sender_conn_id,
            noise,
        }
        | Body::Handshake2 {
            sender_conn_id,
            noise,
        } => {
            l.u32("sender_conn_id", *sender_conn_id);
            l.bytes("noise", noise);
        }
        Body::Handshake3 { noise } => l.bytes("noise", noise),
        Body::HandshakeReject { code } => l.code("code", *code),
        Body::Record {
            epoch,
            seq,
            ciphertext,
        } => {
            l.u8("epoch", *epoch);
            l.u64("seq", *seq);
            let (ct, tag) = ciphertext.split_at(ciphertext.len().saturating_sub(16));
            l.bytes("ciphertext", ct);
            l.bytes("tag", tag);
        }
    }
}

/// Message type names and bytes, from the spec's message table (section 13).
fn msg_type_entry(body: &MsgBody) -> (&'static str, u8) {
    match body {
        MsgBody::Heartbeat => ("HEARTBEAT", 0x01),
        MsgBody::Close { .. } => ("CLOSE", 0x02),
        MsgBody::Ack { .. } => ("ACK", 0x03),
        MsgBody::Error { .. } => ("ERROR", 0x04),
        MsgBody::TimeRequest { .. } => ("TIME_REQUEST", 0x05),
        MsgBody::TimeResponse { .. } => ("TIME_RESPONSE", 0x06),
        MsgBody::SessionOpen { .. } => ("SESSION_OPEN", 0x10),
        MsgBody::SessionAccept { .. } => ("SESSION_ACCEPT", 0x11),
        MsgBody::SessionReject { .. } => ("SESSION_REJECT", 0x12),
        MsgBody::SessionClose { .. } => ("SESSION_CLOSE", 0x13),
        MsgBody::Data { .. } => ("DATA", 0x14),
        MsgBody::TimedData { .. } => ("TIMED_DATA", 0x15),
        MsgBody::CapQuery { .. } => ("CAP_QUERY", 0x20),
        MsgBody::CapList { .. } => ("CAP_LIST", 0x21),
        MsgBody::PermRequest { .. } => ("PERM_REQUEST", 0x30),
        MsgBody::PermResponse { .. } => ("PERM_RESPONSE", 0x31),
        MsgBody::PermRevoke { .. } => ("PERM_REVOKE", 0x32),
        MsgBody::CapInvoke { .. } => ("CAP_INVOKE", 0x33),
        MsgBody::CapResult { .. } => ("CAP_RESULT", 0x34),
    }
}

fn message_layout(l: &mut Layout, m: &Message) {
    let (name, ty) = msg_type_entry(&m.body);
    l.named_u8("msg_type", name, ty);
    l.u32("rseq", m.rseq);
    match &m.body {
        MsgBody::Heartbeat => {}
        MsgBody::Close { code, reason } => {
            l.code("code", *code);
            l.u8("reason_len", reason.len() as u8);
            l.field("reason", Some(reason.as_str().into()), reason.as_bytes());
        }
        MsgBody::Ack { next_expected } => l.u32("next_expected", *next_expected),
        MsgBody::Error { code, offending } => {
            l.code("code", *code);
            l.u8("offending", *offending);
        }
        MsgBody::SessionOpen {
            session_id,
            kind,
            qos,
            service,
        } => {
            l.u32("session_id", *session_id);
            let (kind_name, kind_byte) = match kind {
                ChannelKind::Message => ("message", 1),
                ChannelKind::Bytes => ("bytes", 2),
                ChannelKind::Stream => ("stream", 3),
            };
            l.named_u8("kind", kind_name, kind_byte);
            let (qos_name, qos_byte) = match qos {
                Qos::Background => ("background", 0),
                Qos::BestEffort => ("best-effort", 1),
                Qos::Interactive => ("interactive", 2),
                Qos::Realtime => ("realtime", 3),
            };
            l.named_u8("qos", qos_name, qos_byte);
            l.short_text("service", "service", service);
        }
        MsgBody::SessionAccept {
            session_id,
            max_message,
        } => {
            l.u32("session_id", *session_id);
            l.u32("max_message", *max_message);
        }
        MsgBody::SessionReject { session_id, code }
        | MsgBody::SessionClose { session_id, code } => {
            l.u32("session_id", *session_id);
            l.code("code", *code);
        }
        MsgBody::Data {
            session_id,
            msg_id,
            frag_index,
            frag_count,
            payload,
        } => {
            l.u32("session_id", *session_id);
            l.u32("msg_id", *msg_id);
            l.u16("frag_index", *frag_index);
            l.u16("frag_count", *frag_count);
            l.payload("payload", payload);
        }
        MsgBody::TimedData {
            session_id,
            msg_id,
            frag_index,
            frag_count,
            pts_us,
            payload,
        } => {
            l.u32("session_id", *session_id);
            l.u32("msg_id", *msg_id);
            l.u16("frag_index", *frag_index);
            l.u16("frag_count", *frag_count);
            l.u64("pts_us", *pts_us);
            l.payload("payload", payload);
        }
        MsgBody::TimeRequest { sync_id, t1 } => {
            l.u32("sync_id", *sync_id);
            l.u64("t1", *t1);
        }
        MsgBody::TimeResponse {
            sync_id,
            t1,
            t2,
            t3,
        } => {
            l.u32("sync_id", *sync_id);
            l.u64("t1", *t1);
            l.u64("t2", *t2);
            l.u64("t3", *t3);
        }
        MsgBody::CapQuery { req_id } => l.u32("req_id", *req_id),
        MsgBody::CapList { req_id, cbor } => {
            l.u32("req_id", *req_id);
            l.bytes("cbor", cbor);
        }
        MsgBody::PermRequest {
            req_id,
            scope,
            duration_s,
            capability,
        } => {
            l.u32("req_id", *req_id);
            let (scope_name, scope_byte) = match scope {
                Scope::Once => ("once", 1),
                Scope::Session => ("session", 2),
                Scope::UntilRevoked => ("until-revoked", 3),
            };
            l.named_u8("scope", scope_name, scope_byte);
            l.u32("duration_s", *duration_s);
            l.short_text("cap", "capability", capability);
        }
        MsgBody::PermResponse {
            req_id,
            result,
            grant_id,
            expires_in_ms,
        } => {
            l.u32("req_id", *req_id);
            let (result_name, result_byte) = match result {
                PermResult::Granted => ("granted", 0),
                PermResult::Denied => ("denied", 1),
                PermResult::Timeout => ("timeout", 2),
                PermResult::UnknownCapability => ("unknown-capability", 3),
            };
            l.named_u8("result", result_name, result_byte);
            l.u32("grant_id", *grant_id);
            l.u32("expires_in_ms", *expires_in_ms);
        }
        MsgBody::PermRevoke { grant_id } => l.u32("grant_id", *grant_id),
        MsgBody::CapInvoke {
            req_id,
            grant_id,
            capability,
            args,
        } => {
            l.u32("req_id", *req_id);
            l.u32("grant_id", *grant_id);
            l.short_text("cap", "capability", capability);
            l.u16("arg_len", args.len() as u16);
            l.payload("args", args);
        }
        MsgBody::CapResult {
            req_id,
            status,
            result,
        } => {
            l.u32("req_id", *req_id);
            l.code("status", *status);
            l.u16("res_len", result.len() as u16);
            l.payload("result", result);
        }
    }
}

/// RFC 7252 option names for the options discovery uses.
fn option_name(number: OptionNumber) -> String {
    match number.0 {
        11 => "Uri-Path".into(),
        12 => "Content-Format".into(),
        15 => "Uri-Query".into(),
        17 => "Accept".into(),
        n => format!("option {n}"),
    }
}

/// An option delta or length: the 4-bit nibble and its extension bytes (RFC 7252 3.1).
fn coap_extended(v: usize) -> (u8, Vec<u8>) {
    match v {
        0..=12 => (v as u8, vec![]),
        13..=268 => (13, vec![(v - 13) as u8]),
        _ => (14, ((v - 269) as u16).to_be_bytes().to_vec()),
    }
}

fn coap_layout(l: &mut Layout, m: &CoapMessage) {
    let tkl = m.token.len() as u8;
    let first = (1 << 6) | ((m.msg_type as u8) << 4) | tkl;
    l.field(
        "ver|type|tkl",
        Some(format!("1|{}|{tkl}", m.msg_type.abbreviation()).into()),
        &[first],
    );
    let code_name = m.code.name().unwrap_or("unassigned");
    l.field(
        "code",
        Some(format!("{} {code_name}", m.code).into()),
        &[m.code.0],
    );
    l.u16("message_id", m.message_id);
    l.bytes("token", m.token.as_bytes());
    let mut options: Vec<_> = m.options.iter().collect();
    options.sort_by_key(|o| o.number().0);
    let mut previous = 0u16;
    for o in options {
        let name = option_name(o.number());
        let delta = (o.number().0 - previous) as usize;
        let (dn, dext) = coap_extended(delta);
        let (ln, lext) = coap_extended(o.value().len());
        let mut head = vec![(dn << 4) | ln];
        head.extend(dext);
        head.extend(lext);
        l.field(
            format!("{name} header"),
            Some(format!("delta {delta}, length {}", o.value().len()).into()),
            &head,
        );
        let value = match o.number() {
            OptionNumber::URI_PATH | OptionNumber::URI_QUERY => {
                o.as_str().ok().map(|s| Value::from(s.to_string()))
            }
            _ => o.as_uint().ok().map(Value::from),
        };
        l.field(name, value, o.value());
        previous = o.number().0;
    }
    if !m.payload.is_empty() {
        l.bytes("payload_marker", &[0xFF]);
        l.bytes("payload", &m.payload);
    }
}

/// A CBOR head in its shortest form (RFC 8949 3, 4.2.1).
fn cbor_head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=0xFF => vec![m | 24, n as u8],
        0x100..=0xFFFF => [vec![m | 25], (n as u16).to_be_bytes().to_vec()].concat(),
        0x1_0000..=0xFFFF_FFFF => [vec![m | 26], (n as u32).to_be_bytes().to_vec()].concat(),
        _ => [vec![m | 27], n.to_be_bytes().to_vec()].concat(),
    }
}

fn cbor_text(s: &str) -> Vec<u8> {
    [cbor_head(3, s.len() as u64), s.as_bytes().to_vec()].concat()
}

fn advert_layout(l: &mut Layout, a: &Advert) {
    l.field("map(10)", Some(10.into()), &cbor_head(5, 10));
    // Keys sorted by their encoded bytes: shorter first, then bytewise (RFC 8949 4.2.1).
    for key in [
        "v", "hb", "id", "pk", "pt", "caps", "name", "pair", "port", "type",
    ] {
        l.field(format!("key \"{key}\""), Some(key.into()), &cbor_text(key));
        match key {
            "v" => l.field("v", Some(a.v.into()), &cbor_head(0, a.v.into())),
            "hb" => l.field("hb", Some(a.hb.into()), &cbor_head(0, a.hb.into())),
            "id" => l.bytes("id", &[cbor_head(2, 8), a.id.to_vec()].concat()),
            "pk" => l.bytes("pk", &[cbor_head(2, 32), a.pk.to_vec()].concat()),
            "pt" => l.field("pt", Some(a.pt.into()), &cbor_head(0, a.pt.into())),
            "caps" => {
                l.field(
                    "caps",
                    Some(a.caps.len().into()),
                    &cbor_head(4, a.caps.len() as u64),
                );
                for (i, cap) in a.caps.iter().enumerate() {
                    l.field(
                        format!("caps[{i}]"),
                        Some(cap.as_str().into()),
                        &cbor_text(cap),
                    );
                }
            }
            "name" => l.field("name", Some(a.name.as_str().into()), &cbor_text(&a.name)),
            "pair" => l.field(
                "pair",
                Some(a.pair.into()),
                &[if a.pair { 0xF5 } else { 0xF4 }],
            ),
            "port" => l.field("port", Some(a.port.into()), &cbor_head(0, a.port.into())),
            _ => l.field(
                "type",
                Some(a.device_type.as_str().into()),
                &cbor_text(&a.device_type),
            ),
        }
    }
}

fn concat_fields(fields: &[Field]) -> Vec<u8> {
    fields
        .iter()
        .flat_map(|f| ::hex::decode(&f.hex).expect("layout hex is hex"))
        .collect()
}

/// The field that covers byte `offset`, for error messages.
fn field_at(fields: &[Field], offset: usize) -> String {
    let mut start = 0;
    for f in fields {
        let end = start + f.hex.len() / 2;
        if offset < end {
            return format!("{} (bytes {start}..{end})", f.name);
        }
        start = end;
    }
    format!("past the last field (offset {offset})")
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// An annotated hex dump: offset, field, bytes (16 a line) and value.
fn annotated(case: &Case) -> String {
    let fields = case.repr.layout();
    let width = fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let total = concat_fields(&fields).len();
    let mut out = format!(
        "{} ({}, {total} bytes): {}\n{}\n\n",
        case.name,
        case.repr.layer(),
        case.spec,
        case.description
    );
    let mut offset = 0;
    for f in &fields {
        let bytes = ::hex::decode(&f.hex).expect("layout hex is hex");
        let value = match &f.value {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let mut chunks = bytes.chunks(16).peekable();
        if chunks.peek().is_none() {
            let _ = writeln!(
                out,
                "{offset:04x}  {:<width$}  {:<47}  {value}",
                f.name, "(empty)"
            );
        }
        let mut first = true;
        for chunk in chunks {
            let hexes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let line = hexes.join(" ");
            if first {
                let _ = writeln!(out, "{offset:04x}  {:<width$}  {line:<47}  {value}", f.name);
                first = false;
            } else {
                let _ = writeln!(out, "      {:<width$}  {line}", "");
            }
        }
        offset += bytes.len();
    }
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    lines.join("\n").trim_end().to_string()
}

// ------------------------------------------------------------------ tests

#[test]
fn every_frame_and_message_type_has_a_golden_case() {
    let cases = cases();
    let mut frames = BTreeSet::new();
    let mut msgs = BTreeSet::new();
    for c in &cases {
        match &c.repr {
            Repr::Frame(f) => {
                frames.insert(f.frame_type() as u8);
            }
            Repr::Message(m) => {
                msgs.insert(m.body.msg_type() as u8);
            }
            _ => {}
        }
    }
    let assigned_frames: BTreeSet<u8> = (0..=255u8)
        .filter(|b| FrameType::from_u8(*b).is_ok())
        .collect();
    let assigned_msgs: BTreeSet<u8> = (0..=255u8)
        .filter(|b| MsgType::from_u8(*b).is_ok())
        .collect();
    let missing_frames: Vec<String> = assigned_frames
        .difference(&frames)
        .map(|b| format!("{b:#04x}"))
        .collect();
    let missing_msgs: Vec<String> = assigned_msgs
        .difference(&msgs)
        .map(|b| format!("{b:#04x}"))
        .collect();
    assert!(
        missing_frames.is_empty() && missing_msgs.is_empty(),
        "no golden case for frame types {missing_frames:?} / message types {missing_msgs:?}: \
         add them to cases() in reference-impl/tests/golden.rs, then run `cargo xtask fixtures --accept`"
    );
    assert_eq!(frames.len(), 9, "the spec's nine frame types");
    assert_eq!(msgs.len(), 19, "the spec's nineteen message types");
    let layers: BTreeSet<&str> = cases.iter().map(|c| c.repr.layer()).collect();
    assert_eq!(layers, BTreeSet::from(["cbor", "coap", "frame", "message"]));
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name).collect();
    assert_eq!(
        names.len(),
        cases.len(),
        "case names are unique (they name the files)"
    );
}

#[test]
fn codec_emits_the_spec_layout() {
    let mut failures = Vec::new();
    for case in cases() {
        let fields = case.repr.layout();
        let expected = concat_fields(&fields);
        let emitted = case.repr.emit();
        if emitted != expected {
            let at = first_difference(&emitted, &expected);
            failures.push(format!(
                "{}: codec emits {} bytes, the spec layout has {}; first difference at byte {at}, in {}\n  codec: {}\n  spec:  {}",
                case.name,
                emitted.len(),
                expected.len(),
                field_at(&fields, at),
                hex(&emitted),
                hex(&expected)
            ));
        }
        if case.repr.buffer_len() != expected.len() {
            failures.push(format!(
                "{}: buffer_len says {}, the encoding has {} bytes",
                case.name,
                case.repr.buffer_len(),
                expected.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn codec_parses_the_spec_layout_into_the_repr() {
    let mut failures = Vec::new();
    for case in cases() {
        let bytes = concat_fields(&case.repr.layout());
        match case.repr.parse_same_layer(&bytes) {
            Ok(parsed) if parsed == case.repr => {}
            Ok(parsed) => failures.push(format!(
                "{}: parsed\n  {parsed:?}\nexpected\n  {:?}",
                case.name, case.repr
            )),
            Err(e) => failures.push(format!("{}: does not parse: {e}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn golden_files_decode_to_the_fields_they_list() {
    let mut failures = Vec::new();
    for case in cases() {
        let path = case.path();
        let Some(text) = read_fixture(&path) else {
            if !update_mode() {
                failures.push(format!(
                    "{path} is missing: run `cargo xtask fixtures --accept`"
                ));
            }
            continue;
        };
        if update_mode() && text != case.render() {
            // Stale under `cargo xtask fixtures`: the freshness test writes the new version.
            continue;
        }
        let fixture: Fixture = match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{path}: not a golden fixture: {e}"));
                continue;
            }
        };
        let bytes = unhex(&path, "hex", &fixture.hex);
        let from_fields: Vec<u8> = fixture
            .fields
            .iter()
            .flat_map(|f| unhex(&path, &f.name, &f.hex))
            .collect();
        if from_fields != bytes {
            failures.push(format!("{path}: the fields' bytes do not add up to `hex`"));
        }
        if fixture.len != bytes.len() {
            failures.push(format!(
                "{path}: len {} but {} bytes of hex",
                fixture.len,
                bytes.len()
            ));
        }
        match case.repr.parse_same_layer(&bytes) {
            Ok(decoded) => {
                if decoded != case.repr {
                    failures.push(format!(
                        "{path}: decodes to {decoded:?}, expected {:?}",
                        case.repr
                    ));
                }
                // The decoded value, laid out again, lists exactly the file's fields and values.
                if decoded.layout() != fixture.fields {
                    failures.push(format!(
                        "{path}: the decoded fields differ from the listed fields"
                    ));
                }
                if decoded.emit() != bytes {
                    failures.push(format!("{path}: decoding then encoding changes the bytes"));
                }
            }
            Err(e) => failures.push(format!("{path}: does not decode: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(if the fixture files are merely out of date, review with `{}` and regenerate with `{}`)",
        failures.join("\n"),
        support::REVIEW_COMMAND,
        support::REGENERATE_COMMAND
    );
}

#[test]
fn golden_fixture_files_are_fresh() {
    let cases = cases();
    let mut stale = 0;
    for case in &cases {
        if !check_fixture(&case.path(), &case.render()) {
            stale += 1;
        }
    }
    if stale > 0 {
        eprintln!("{stale} golden fixtures written as .new for review");
    }
    // A file no case generates is left over from a removed or renamed case.
    let dir = support::workspace_root().join(FRAMES_DIR);
    let known: BTreeSet<String> = cases.iter().map(|c| format!("{}.json", c.name)).collect();
    let orphans: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json") && !known.contains(n))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        orphans.is_empty(),
        "{FRAMES_DIR} has files no golden case generates: {orphans:?}; delete them or add their cases"
    );
}

#[test]
fn encodings_match_their_snapshots() {
    let cases = cases();
    for case in &cases {
        insta::assert_snapshot!(case.name, annotated(case));
    }
    // A snapshot no case asserts is left over from a removed or renamed case.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let known: BTreeSet<String> = cases
        .iter()
        .map(|c| format!("golden__{}.snap", c.name))
        .collect();
    let orphans: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("golden__") && n.ends_with(".snap") && !known.contains(n))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        orphans.is_empty(),
        "reference-impl/tests/snapshots has golden snapshots no case asserts: {orphans:?}; delete them"
    );
}

#[test]
fn reference_responder_answers_the_golden_request_with_the_golden_response() {
    let advert = golden_advert();
    let mut responder = Responder::new(advert.clone()).with_first_message_id(0x3A00);
    let from: SocketAddr = "192.0.2.10:50000".parse().expect("address");
    let out = responder
        .handle_request(
            Instant::now(),
            from,
            &golden_probe().to_bytes(),
            false,
            Duration::ZERO,
        )
        .expect("the device has a speaker, so it answers");
    assert_eq!(hex(&out.datagram), hex(&golden_response().to_bytes()));
    assert_eq!(out.to, from);
    assert_eq!(golden_probe().parse_response(&out.datagram), Ok(advert));
}
