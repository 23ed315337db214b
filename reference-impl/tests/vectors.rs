//! Crypto vectors (spec sections 4-7), generated into `fixtures/crypto/` and checked byte for
//! byte:
//!
//! * `transcript.json`: two reference endpoints with fixed static keys and RNG seeds pair with
//!   a PIN, run the Noise XX handshake, open an `echo` session, exchange messages and rekey,
//!   joined in memory; every datagram in order, the session keys, and each record's plaintext;
//! * `record_key.json`: AES-256-GCM record sealing (nonce, AAD, ciphertext) and the REKEY chain;
//! * `pairing.json`: the pairing confirmations and result MAC for a fixed SPAKE2 key, and the
//!   device ID derivation.
//!
//! The checks recompute what they can from the spec's definitions with the primitive crates
//! (`aes-gcm`, `hmac`, `sha2`) rather than through `softbus::crypto`, so a vector pins the
//! definition, not just the implementation.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use softbus::crypto::{self, DeviceId, PairingTranscript, RecordKey};
use softbus::endpoint::{Config, Endpoint, Event, LinkAddr, PromptPolicy};
use softbus::trust::TrustStore;
use softbus::wire::frame::{record_aad, Body, Frame};
use softbus::wire::msg::{ChannelKind, Message, Qos};
use softbus::Identity;

use support::{check_fixture, generated_stamp, hex, read_fixture, unhex, update_mode};

const TRANSCRIPT: &str = "fixtures/crypto/transcript.json";
const RECORD_KEY: &str = "fixtures/crypto/record_key.json";
const PAIRING: &str = "fixtures/crypto/pairing.json";

const PIN: &str = "123456";
const UNIX_TIME: u64 = 1_700_000_000;

fn pattern<const N: usize>(start: u8) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = start.wrapping_add(i as u8);
    }
    out
}

fn render_json<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("vectors serialize");
    s.push('\n');
    s
}

// ------------------------------------------------------------------ transcript

/// One side of the transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Party {
    name: String,
    static_secret: String,
    static_public: String,
    device_id: String,
    /// The endpoint's 32-byte RNG seed (ChaCha20): pairing IDs, SPAKE2 scalars, Noise
    /// ephemeral keys and connection IDs all come from it, in the order the endpoint draws them.
    rng_seed: String,
    hb_ms: u32,
    mtu: usize,
    link_addr: String,
}

/// Both directions' record keys at epoch 0, as the handshake's split gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SessionKeys {
    initiator_conn_id: u32,
    responder_conn_id: u32,
    initiator_to_responder: String,
    responder_to_initiator: String,
}

/// One datagram on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Datagram {
    index: usize,
    /// What the application was doing: `pair`, `connect`, `open_session`, `send`, `rekey`.
    phase: String,
    from: String,
    frame: String,
    /// The whole datagram.
    hex: String,
    /// For RECORDs: key epoch, sequence number and the decrypted inner message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<RecordInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RecordInfo {
    epoch: u8,
    seq: u64,
    message: String,
    rseq: u32,
    plaintext: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Transcript {
    #[serde(rename = "@generated")]
    generated: String,
    description: String,
    noise_protocol: String,
    prologue: String,
    pin: String,
    unix_time: u64,
    initiator: Party,
    responder: Party,
    session_keys: SessionKeys,
    datagrams: Vec<Datagram>,
}

struct Side {
    ep: Endpoint,
    addr: LinkAddr,
    events: Vec<Event>,
}

/// Two endpoints joined in memory; `now` never moves, so no timer fires and the exchange is
/// exactly the request/response ping-pong of the protocol.
struct Wire {
    now: Instant,
    a: Side,
    b: Side,
    log: Vec<(String, &'static str, Vec<u8>)>,
}

fn party_config(name: &str, pin: Option<&str>) -> Config {
    Config {
        name: name.into(),
        hb_interval: Duration::from_millis(1000),
        mtu: 1400,
        pin: pin.map(str::to_owned),
        prompt_policy: PromptPolicy::Approve,
        ..Config::default()
    }
}

const INITIATOR_SECRET: u8 = 0x01;
const RESPONDER_SECRET: u8 = 0x41;
const INITIATOR_SEED: u8 = 0x80;
const RESPONDER_SEED: u8 = 0xC0;

fn addr(port: u16) -> LinkAddr {
    LinkAddr::Ip(SocketAddr::from(([192, 0, 2, 1], port)))
}

impl Wire {
    fn new() -> Wire {
        let now = Instant::now();
        let side = |name: &str, pin, secret: u8, seed: u8, port| Side {
            ep: Endpoint::new(
                party_config(name, pin),
                Identity::from_secret(pattern(secret)),
                TrustStore::new(),
                pattern(seed),
                now,
                UNIX_TIME,
            ),
            addr: addr(port),
            events: Vec::new(),
        };
        Wire {
            now,
            a: side("initiator", None, INITIATOR_SECRET, INITIATOR_SEED, 40001),
            b: side(
                "responder",
                Some(PIN),
                RESPONDER_SECRET,
                RESPONDER_SEED,
                40002,
            ),
            log: Vec::new(),
        }
    }

    /// Deliver datagrams both ways until neither side has anything to send.
    fn drive(&mut self, phase: &str) {
        loop {
            let mut moved = false;
            while let Some(t) = self.a.ep.poll_transmit() {
                moved = true;
                self.log
                    .push((phase.to_string(), "initiator", t.data.clone()));
                self.b
                    .ep
                    .handle_datagram(self.now, self.a.addr.clone(), &t.data);
            }
            while let Some(t) = self.b.ep.poll_transmit() {
                moved = true;
                self.log
                    .push((phase.to_string(), "responder", t.data.clone()));
                self.a
                    .ep
                    .handle_datagram(self.now, self.b.addr.clone(), &t.data);
            }
            while let Some(e) = self.a.ep.poll_event() {
                self.a.events.push(e);
            }
            while let Some(e) = self.b.ep.poll_event() {
                self.b.events.push(e);
            }
            if !moved {
                return;
            }
        }
    }
}

fn party(side: &Side, secret: u8, seed: u8) -> Party {
    let id = side.ep.identity();
    let cfg = side.ep.config();
    Party {
        name: cfg.name.clone(),
        static_secret: hex(id.secret()),
        static_public: hex(id.public()),
        device_id: id.device_id().to_hex(),
        rng_seed: hex(&pattern::<32>(seed)),
        hb_ms: cfg.hb_interval.as_millis() as u32,
        mtu: cfg.mtu,
        link_addr: side.addr.to_string(),
    }
    .with_checked_secret(secret)
}

impl Party {
    fn with_checked_secret(self, secret: u8) -> Party {
        assert_eq!(
            self.static_secret,
            hex(&pattern::<32>(secret)),
            "X25519 secrets are used as given"
        );
        self
    }
}

/// The name of a frame type as in the spec tables.
fn frame_name(data: &[u8]) -> String {
    match Frame::parse(data).map(|f| f.body) {
        Ok(Body::PairRequest { .. }) => "PAIR_REQUEST",
        Ok(Body::PairResponse { .. }) => "PAIR_RESPONSE",
        Ok(Body::PairConfirm { .. }) => "PAIR_CONFIRM",
        Ok(Body::PairResult { .. }) => "PAIR_RESULT",
        Ok(Body::Handshake1 { .. }) => "HANDSHAKE_1",
        Ok(Body::Handshake2 { .. }) => "HANDSHAKE_2",
        Ok(Body::Handshake3 { .. }) => "HANDSHAKE_3",
        Ok(Body::HandshakeReject { .. }) => "HANDSHAKE_REJECT",
        Ok(Body::Record { .. }) => "RECORD",
        Err(_) => "MALFORMED",
    }
    .to_string()
}

/// The name of a message type as in the spec tables (`SESSION_OPEN` for `SessionOpen`).
fn message_name(m: &Message) -> String {
    let camel = format!("{:?}", m.body.msg_type());
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Run the scenario and write down everything that crossed the wire.
fn generate_transcript() -> Transcript {
    let mut w = Wire::new();
    let b_addr = w.b.addr.clone();
    w.a.ep.pair(w.now, b_addr.clone(), PIN).expect("valid PIN");
    w.drive("pair");
    assert!(
        w.a.events.iter().any(|e| matches!(e, Event::Paired { .. })),
        "{:?}",
        w.a.events
    );
    w.a.ep.connect(w.now, b_addr);
    w.drive("connect");
    assert!(
        w.a.events
            .iter()
            .any(|e| matches!(e, Event::Connected { .. })),
        "{:?}",
        w.a.events
    );
    let keys_a = w.a.ep.session_keys();
    let (a_local, a_remote, a_tx, a_rx) = keys_a.first().cloned().expect("one connection");
    let peer_b = w.b.ep.identity().device_id();
    let sid =
        w.a.ep
            .open_session(
                w.now,
                peer_b,
                "echo",
                ChannelKind::Message,
                Qos::Interactive,
            )
            .expect("connected");
    w.drive("open_session");
    for text in ["hello, softbus", "second message"] {
        w.a.ep
            .send(w.now, peer_b, sid, text.as_bytes())
            .expect("session open");
        w.drive("send");
    }
    w.a.ep.rekey(peer_b).expect("connected");
    w.a.ep
        .send(w.now, peer_b, sid, b"after rekey")
        .expect("session open");
    w.drive("rekey");
    let echoed: Vec<&[u8]> =
        w.a.events
            .iter()
            .filter_map(|e| match e {
                Event::Message { data, .. } => Some(data.as_slice()),
                _ => None,
            })
            .collect();
    assert_eq!(
        echoed,
        [&b"hello, softbus"[..], b"second message", b"after rekey"]
    );

    let session_keys = SessionKeys {
        initiator_conn_id: a_local,
        responder_conn_id: a_remote,
        initiator_to_responder: a_tx,
        responder_to_initiator: a_rx,
    };
    let datagrams = w
        .log
        .iter()
        .enumerate()
        .map(|(index, (phase, from, data))| Datagram {
            index,
            phase: phase.clone(),
            from: from.to_string(),
            frame: frame_name(data),
            hex: hex(data),
            record: open_record(&session_keys, from, data),
        })
        .collect();
    Transcript {
        generated: generated_stamp("reference-impl/tests/vectors.rs"),
        description: "Two SoftBus v1 reference endpoints, joined in memory with a frozen clock: \
                      PIN pairing (SPAKE2), Noise XX handshake, SESSION_OPEN to `echo`, two \
                      messages echoed, the initiator rekeys and sends a third. Every datagram in \
                      order; RECORDs with the plaintext they carry."
            .into(),
        noise_protocol: crypto::NOISE_PARAMS.into(),
        prologue: hex(crypto::PROLOGUE),
        pin: PIN.into(),
        unix_time: UNIX_TIME,
        initiator: party(&w.a, INITIATOR_SECRET, INITIATOR_SEED),
        responder: party(&w.b, RESPONDER_SECRET, RESPONDER_SEED),
        session_keys,
        datagrams,
    }
}

/// AES-256-GCM with the SoftBus nonce (4 zero bytes, then seq big-endian), straight from
/// the primitive crate.
fn aead_open(key: &[u8; 32], seq: u64, aad: &[u8], ct: &[u8]) -> Option<Vec<u8>> {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: ct, aad })
        .ok()
}

fn aead_seal(key: &[u8; 32], seq: u64, aad: &[u8], pt: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    Aes256Gcm::new(key.into())
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: pt, aad })
        .expect("small plaintexts encrypt")
}

/// Noise REKEY: the first 32 bytes of ENCRYPT(k, 2^64-1, empty AD, 32 zero bytes).
fn noise_rekey(key: &[u8; 32]) -> [u8; 32] {
    let ct = aead_seal(key, u64::MAX, &[], &[0u8; 32]);
    let mut out = [0u8; 32];
    out.copy_from_slice(&ct[..32]);
    out
}

fn key32(s: &str, what: &str) -> [u8; 32] {
    unhex("session_keys", what, s)
        .try_into()
        .unwrap_or_else(|_| panic!("{what} is not 32 bytes"))
}

/// Decrypt a RECORD of the transcript with the key of its direction, at its epoch.
fn open_record(keys: &SessionKeys, from: &str, data: &[u8]) -> Option<RecordInfo> {
    let frame = Frame::parse(data).ok()?;
    let Body::Record {
        epoch,
        seq,
        ciphertext,
    } = frame.body
    else {
        return None;
    };
    let mut key = if from == "initiator" {
        key32(&keys.initiator_to_responder, "initiator_to_responder")
    } else {
        key32(&keys.responder_to_initiator, "responder_to_initiator")
    };
    for _ in 0..epoch {
        key = noise_rekey(&key);
    }
    let aad = [&data[..6], &[epoch][..], &seq.to_be_bytes()[..]].concat();
    let plaintext = aead_open(&key, seq, &aad, &ciphertext)?;
    let msg = Message::parse(&plaintext).ok()?;
    Some(RecordInfo {
        epoch,
        seq,
        message: message_name(&msg),
        rseq: msg.rseq,
        plaintext: hex(&plaintext),
    })
}

#[test]
fn transcript_fixture_is_fresh() {
    check_fixture(TRANSCRIPT, &render_json(&generate_transcript()));
}

/// The stored transcript, unless it is being regenerated.
fn stored_transcript() -> Option<Transcript> {
    let text = read_fixture(TRANSCRIPT);
    if update_mode() && text.as_deref() != Some(render_json(&generate_transcript()).as_str()) {
        return None;
    }
    let text = text
        .unwrap_or_else(|| panic!("{TRANSCRIPT} is missing: run `cargo xtask fixtures --accept`"));
    Some(
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{TRANSCRIPT}: not a transcript: {e}")),
    )
}

#[test]
fn replaying_the_endpoints_reproduces_the_transcript_byte_for_byte() {
    let Some(stored) = stored_transcript() else {
        return;
    };
    let fresh = generate_transcript();
    for (i, (s, f)) in stored.datagrams.iter().zip(&fresh.datagrams).enumerate() {
        assert_eq!(
            s.hex, f.hex,
            "datagram {i} ({} from the {}, phase {}) differs from {TRANSCRIPT}",
            s.frame, s.from, s.phase
        );
    }
    assert_eq!(
        stored.datagrams.len(),
        fresh.datagrams.len(),
        "number of datagrams"
    );
    assert_eq!(stored.session_keys, fresh.session_keys);
}

#[test]
fn transcript_is_consistent_with_the_spec_definitions() {
    let Some(t) = stored_transcript() else {
        return;
    };
    // Identities: X25519 public keys and device IDs (SHA-256("softbus/1 device-id" || pk)[..8]).
    for p in [&t.initiator, &t.responder] {
        let secret: [u8; 32] = key32(&p.static_secret, "static_secret");
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
        assert_eq!(
            p.static_public,
            hex(public.as_bytes()),
            "{} public key",
            p.name
        );
        let digest = Sha256::new()
            .chain_update(b"softbus/1 device-id")
            .chain_update(public.as_bytes())
            .finalize();
        assert_eq!(p.device_id, hex(&digest[..8]), "{} device ID", p.name);
    }
    assert_eq!(t.prologue, hex(b"SoftBus/1\x01"));
    assert_eq!(t.noise_protocol, "Noise_XX_25519_AESGCM_SHA256");

    let phases: Vec<(&str, &str)> = t
        .datagrams
        .iter()
        .map(|d| (d.phase.as_str(), d.frame.as_str()))
        .collect();
    let expected_start = [
        ("pair", "PAIR_REQUEST"),
        ("pair", "PAIR_RESPONSE"),
        ("pair", "PAIR_CONFIRM"),
        ("pair", "PAIR_RESULT"),
        ("connect", "HANDSHAKE_1"),
        ("connect", "HANDSHAKE_2"),
        ("connect", "HANDSHAKE_3"),
    ];
    assert_eq!(&phases[..expected_start.len()], expected_start);
    let mut records = 0;
    let mut rekeyed = 0;
    for d in &t.datagrams {
        let bytes = unhex(TRANSCRIPT, "datagram", &d.hex);
        let frame = Frame::parse(&bytes)
            .unwrap_or_else(|e| panic!("datagram {} does not parse: {e}", d.index));
        assert_eq!(
            frame.to_vec(),
            bytes,
            "datagram {} re-encodes identically",
            d.index
        );
        match frame.body {
            Body::PairRequest { static_key, .. } => {
                assert_eq!(hex(&static_key), t.initiator.static_public)
            }
            Body::PairResponse { static_key, .. } => {
                assert_eq!(hex(&static_key), t.responder.static_public)
            }
            Body::Handshake1 { sender_conn_id, .. } => {
                assert_eq!(sender_conn_id, t.session_keys.initiator_conn_id);
            }
            Body::Handshake2 { sender_conn_id, .. } => {
                assert_eq!(frame.conn_id, t.session_keys.initiator_conn_id);
                assert_eq!(sender_conn_id, t.session_keys.responder_conn_id);
            }
            Body::Record { epoch, seq, .. } => {
                records += 1;
                let info = d.record.as_ref().unwrap_or_else(|| {
                    panic!("datagram {} is a RECORD without its plaintext", d.index)
                });
                // Decrypted here from the listed keys with aes-gcm directly.
                let opened = open_record(&t.session_keys, &d.from, &bytes).unwrap_or_else(|| {
                    panic!("datagram {} does not open with the listed keys", d.index)
                });
                assert_eq!(&opened, info, "datagram {}", d.index);
                assert_eq!((info.epoch, info.seq), (epoch, seq));
                let to = if d.from == "initiator" {
                    t.session_keys.responder_conn_id
                } else {
                    t.session_keys.initiator_conn_id
                };
                assert_eq!(frame.conn_id, to, "a record carries the receiver's conn_id");
                if epoch > 0 {
                    rekeyed += 1;
                }
            }
            _ => {}
        }
    }
    assert!(
        records >= 8,
        "the transcript has the session's records ({records})"
    );
    assert!(rekeyed >= 1, "the transcript has a record after the rekey");
}

// ------------------------------------------------------------------ record keys

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SealVector {
    epoch: u8,
    conn_id: u32,
    seq: u64,
    /// The AES-GCM nonce: 4 zero bytes, then seq big-endian.
    nonce: String,
    /// The associated data: the RECORD header (version, type 0x20, conn_id), epoch and seq.
    aad: String,
    plaintext: String,
    /// Ciphertext followed by the 16-byte tag.
    ciphertext: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EpochKey {
    epoch: u8,
    key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RecordKeyVectors {
    #[serde(rename = "@generated")]
    generated: String,
    description: String,
    /// Epoch 0 and the keys each REKEY gives.
    rekey_chain: Vec<EpochKey>,
    seal: Vec<SealVector>,
}

fn generate_record_keys() -> RecordKeyVectors {
    let mut key = RecordKey::new(pattern(0x70));
    let mut chain = Vec::new();
    let mut by_epoch = Vec::new();
    for _ in 0..4 {
        chain.push(EpochKey {
            epoch: key.epoch,
            key: hex(key.raw()),
        });
        by_epoch.push(key.clone());
        key = key.rekeyed();
    }
    let heartbeat = Message::unreliable(softbus::wire::msg::MsgBody::Heartbeat).to_vec();
    let inputs: [(usize, u32, u64, &[u8]); 6] = [
        (0, 0x0000_2002, 0, b""),
        (0, 0x0000_2002, 1, b"hello, softbus"),
        (0, 0x0000_2002, 2, &heartbeat),
        (
            0,
            0xFFFF_FFFF,
            (1 << 32) + 5,
            b"a sequence number above 2^32",
        ),
        (1, 0x0000_2002, 3, b"first record after a rekey"),
        (
            3,
            0x0000_1001,
            u64::MAX - 1,
            b"the last usable sequence number",
        ),
    ];
    let seal = inputs
        .iter()
        .map(|&(e, conn_id, seq, pt)| {
            let k = &by_epoch[e];
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&seq.to_be_bytes());
            SealVector {
                epoch: k.epoch,
                conn_id,
                seq,
                nonce: hex(&nonce),
                aad: hex(&record_aad(conn_id, k.epoch, seq)),
                plaintext: hex(pt),
                ciphertext: hex(&k.seal(conn_id, seq, pt)),
            }
        })
        .collect();
    RecordKeyVectors {
        generated: generated_stamp("reference-impl/tests/vectors.rs"),
        description: "AES-256-GCM record protection (spec 7) and Noise REKEY: \
                      k' = ENCRYPT(k, nonce 2^64-1, empty AD, 32 zero bytes)[0..32]."
            .into(),
        rekey_chain: chain,
        seal,
    }
}

#[test]
fn record_key_fixture_is_fresh() {
    check_fixture(RECORD_KEY, &render_json(&generate_record_keys()));
}

#[test]
fn record_key_vectors_match_aes_gcm_and_the_reference() {
    let text = read_fixture(RECORD_KEY);
    if update_mode() && text.as_deref() != Some(render_json(&generate_record_keys()).as_str()) {
        return;
    }
    let text = text
        .unwrap_or_else(|| panic!("{RECORD_KEY} is missing: run `cargo xtask fixtures --accept`"));
    let v: RecordKeyVectors =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{RECORD_KEY}: {e}"));
    // The chain follows the REKEY definition, computed with aes-gcm directly...
    for pair in v.rekey_chain.windows(2) {
        let k = key32(&pair[0].key, "rekey_chain");
        assert_eq!(
            hex(&noise_rekey(&k)),
            pair[1].key,
            "rekey of epoch {}",
            pair[0].epoch
        );
        assert_eq!(pair[1].epoch, pair[0].epoch + 1);
    }
    // ... and the reference's RecordKey::rekeyed walks the same chain.
    let mut reference = RecordKey::new(key32(&v.rekey_chain[0].key, "rekey_chain"));
    for step in &v.rekey_chain {
        assert_eq!(
            (reference.epoch, hex(reference.raw())),
            (step.epoch, step.key.clone())
        );
        reference = reference.rekeyed();
    }
    for (i, s) in v.seal.iter().enumerate() {
        let key = key32(&v.rekey_chain[s.epoch as usize].key, "rekey_chain");
        let pt = unhex(RECORD_KEY, "plaintext", &s.plaintext);
        let aad = unhex(RECORD_KEY, "aad", &s.aad);
        let expected_aad = [
            &[0x01, 0x20][..],
            &s.conn_id.to_be_bytes()[..],
            &[s.epoch][..],
            &s.seq.to_be_bytes()[..],
        ]
        .concat();
        assert_eq!(
            aad, expected_aad,
            "seal[{i}]: AAD is header || epoch || seq"
        );
        assert_eq!(
            s.nonce,
            hex(&[&[0u8; 4][..], &s.seq.to_be_bytes()[..]].concat()),
            "seal[{i}] nonce"
        );
        assert_eq!(
            hex(&aead_seal(&key, s.seq, &aad, &pt)),
            s.ciphertext,
            "seal[{i}] with aes-gcm"
        );
        let mut rk = RecordKey::new(key);
        rk.epoch = s.epoch;
        assert_eq!(
            hex(&rk.seal(s.conn_id, s.seq, &pt)),
            s.ciphertext,
            "seal[{i}] with RecordKey"
        );
        let ct = unhex(RECORD_KEY, "ciphertext", &s.ciphertext);
        assert_eq!(
            rk.open(s.conn_id, s.seq, &ct).as_deref(),
            Ok(&pt[..]),
            "seal[{i}] opens"
        );
        assert!(
            rk.open(s.conn_id, s.seq ^ 1, &ct).is_err(),
            "seal[{i}]: seq is authenticated"
        );
        assert!(
            rk.open(s.conn_id ^ 1, s.seq, &ct).is_err(),
            "seal[{i}]: conn_id is authenticated"
        );
    }
}

// ------------------------------------------------------------------ pairing confirmations

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PairingVectors {
    #[serde(rename = "@generated")]
    generated: String,
    description: String,
    spake2_key: String,
    initiator_public: String,
    responder_public: String,
    spake_msg_a: String,
    spake_msg_b: String,
    /// HMAC-SHA256(key, "softbus/1 pair responder" || pk_A || pk_B || msg_A || msg_B).
    confirm_b: String,
    /// HMAC-SHA256(key, "softbus/1 pair initiator" || pk_A || pk_B || msg_A || msg_B).
    confirm_a: String,
    /// HMAC-SHA256(key, "softbus/1 pair result" || status u16 BE) for status OK (0).
    result_mac_ok: String,
    initiator_device_id: String,
    responder_device_id: String,
}

fn generate_pairing() -> PairingVectors {
    let key: [u8; 32] = pattern(0x30);
    let pub_a = *Identity::from_secret(pattern(INITIATOR_SECRET)).public();
    let pub_b = *Identity::from_secret(pattern(RESPONDER_SECRET)).public();
    let msg_a = [&[b'A'][..], &pattern::<32>(0x20)[..]].concat();
    let msg_b = [&[b'B'][..], &pattern::<32>(0x60)[..]].concat();
    let t = PairingTranscript::new(key.to_vec(), &pub_a, &pub_b, &msg_a, &msg_b);
    PairingVectors {
        generated: generated_stamp("reference-impl/tests/vectors.rs"),
        description: "Pairing key confirmation (spec 5) for a fixed SPAKE2 key, and device IDs \
                      (spec 4): SHA-256(\"softbus/1 device-id\" || pk)[0..8]."
            .into(),
        spake2_key: hex(&key),
        initiator_public: hex(&pub_a),
        responder_public: hex(&pub_b),
        spake_msg_a: hex(&msg_a),
        spake_msg_b: hex(&msg_b),
        confirm_b: hex(&t.responder_confirm()),
        confirm_a: hex(&t.initiator_confirm()),
        result_mac_ok: hex(&t.result_mac(0)),
        initiator_device_id: DeviceId::from_public_key(&pub_a).to_hex(),
        responder_device_id: DeviceId::from_public_key(&pub_b).to_hex(),
    }
}

#[test]
fn pairing_fixture_is_fresh() {
    check_fixture(PAIRING, &render_json(&generate_pairing()));
}

#[test]
fn pairing_vectors_match_hmac_sha256() {
    let text = read_fixture(PAIRING);
    if update_mode() && text.as_deref() != Some(render_json(&generate_pairing()).as_str()) {
        return;
    }
    let text =
        text.unwrap_or_else(|| panic!("{PAIRING} is missing: run `cargo xtask fixtures --accept`"));
    let v: PairingVectors =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{PAIRING}: {e}"));
    let b = |field: &str, s: &str| unhex(PAIRING, field, s);
    let key = b("spake2_key", &v.spake2_key);
    let transcript = [
        b("initiator_public", &v.initiator_public),
        b("responder_public", &v.responder_public),
        b("spake_msg_a", &v.spake_msg_a),
        b("spake_msg_b", &v.spake_msg_b),
    ]
    .concat();
    let hmac = |label: &[u8], data: &[u8]| {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
        mac.update(label);
        mac.update(data);
        hex(&mac.finalize().into_bytes())
    };
    assert_eq!(v.confirm_b, hmac(b"softbus/1 pair responder", &transcript));
    assert_eq!(v.confirm_a, hmac(b"softbus/1 pair initiator", &transcript));
    assert_eq!(
        v.result_mac_ok,
        hmac(b"softbus/1 pair result", &0u16.to_be_bytes())
    );
    for (pk, id) in [
        (&v.initiator_public, &v.initiator_device_id),
        (&v.responder_public, &v.responder_device_id),
    ] {
        let digest = Sha256::new()
            .chain_update(b"softbus/1 device-id")
            .chain_update(b("public", pk))
            .finalize();
        assert_eq!(id, &hex(&digest[..8]));
    }
    // And the reference agrees with the vectors.
    let pub_a: [u8; 32] = key32(&v.initiator_public, "initiator_public");
    let pub_b: [u8; 32] = key32(&v.responder_public, "responder_public");
    let t = PairingTranscript::new(
        key,
        &pub_a,
        &pub_b,
        &b("a", &v.spake_msg_a),
        &b("b", &v.spake_msg_b),
    );
    assert_eq!(hex(&t.responder_confirm()), v.confirm_b);
    assert_eq!(hex(&t.initiator_confirm()), v.confirm_a);
    assert_eq!(hex(&t.result_mac(0)), v.result_mac_ok);
}

/// The scenario is deterministic: two runs in one process give the same bytes, so the
/// transcript fixture can only change when the code or the fixed inputs do.
#[test]
fn the_scenario_is_deterministic() {
    let one = generate_transcript();
    let two = generate_transcript();
    assert_eq!(one, two);
}
