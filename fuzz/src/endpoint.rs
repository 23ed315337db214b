//! Fuzz an endpoint at each stage of a connection with arbitrary datagrams: it must never
//! panic, and two endpoints must never answer each other without end.
//!
//! Input layout: the first byte picks the stage and the endpoint that receives; the rest is a
//! sequence of datagrams, each `flags (u8) | len (u8) | bytes[len]`:
//!
//! * flags bit 0: overwrite bytes 0..6 with a real header (version 1, the datagram's own
//!   type byte, the receiver's conn_id), so garbage reaches the per-connection code;
//! * flags bit 1: on an established connection, seal the bytes as the plaintext of a RECORD
//!   with the sender's real key, so they reach the inner-message handling;
//! * flags bit 2: let 300 ms pass and fire the timers first.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use softbus::capability::{Capability, Metrics};
use softbus::crypto::RecordKey;
use softbus::endpoint::{Config, Endpoint, LinkAddr, PromptPolicy};
use softbus::trust::TrustStore;
use softbus::wire::frame::{Body, Frame};
use softbus::wire::msg::{ChannelKind, Qos};
use softbus::Identity;

/// How far the connection gets before the fuzz input arrives, and who receives it.
#[derive(Clone, Copy)]
enum Stage {
    /// Nothing sent yet; B receives (first contact).
    Fresh,
    /// B has answered HANDSHAKE_1 and waits for HANDSHAKE_3; B receives.
    ResponderMidHandshake,
    /// A has sent HANDSHAKE_1 and waits for HANDSHAKE_2; A receives.
    InitiatorMidHandshake,
    /// Connected with an `echo` session open; B receives.
    EstablishedResponder,
    /// Connected with an `echo` session open; A receives.
    EstablishedInitiator,
}

impl Stage {
    fn from_byte(b: u8) -> Stage {
        match b % 5 {
            0 => Stage::Fresh,
            1 => Stage::ResponderMidHandshake,
            2 => Stage::InitiatorMidHandshake,
            3 => Stage::EstablishedResponder,
            _ => Stage::EstablishedInitiator,
        }
    }
}

const SHUTTLE_LIMIT: usize = 20_000;

struct World {
    now: Instant,
    a: Endpoint,
    b: Endpoint,
    a_addr: LinkAddr,
    b_addr: LinkAddr,
}

fn addr(port: u16) -> LinkAddr {
    LinkAddr::Ip(SocketAddr::from(([127, 0, 0, 1], port)))
}

impl World {
    fn new() -> World {
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
        World {
            now,
            a: Endpoint::new(cfg("a"), id_a, trust_a, [0x33; 32], now, 0),
            b: Endpoint::new(cfg("b"), id_b, trust_b, [0x44; 32], now, 0),
            a_addr: addr(1000),
            b_addr: addr(2000),
        }
    }

    /// Move datagrams both ways until both are quiet.
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
}

/// The receiver's conn_id and, once established, the sender's record key.
struct Target {
    conn_id: u32,
    key: Option<RecordKey>,
}

fn key_from_hex(s: &str) -> Option<RecordKey> {
    let raw: [u8; 32] = hex::decode(s).ok()?.try_into().ok()?;
    Some(RecordKey::new(raw))
}

/// Bring the world to `stage`; returns what the fuzzer needs to aim at the receiver.
fn prepare(w: &mut World, stage: Stage) -> Target {
    match stage {
        Stage::Fresh => Target {
            conn_id: 0,
            key: None,
        },
        Stage::ResponderMidHandshake | Stage::InitiatorMidHandshake => {
            w.a.connect(w.now, w.b_addr.clone());
            let Some(hs1) = w.a.poll_transmit() else {
                return Target {
                    conn_id: 0,
                    key: None,
                };
            };
            let a_conn = match Frame::parse(&hs1.data).map(|f| f.body) {
                Ok(Body::Handshake1 { sender_conn_id, .. }) => sender_conn_id,
                _ => 0,
            };
            if let Stage::InitiatorMidHandshake = stage {
                return Target {
                    conn_id: a_conn,
                    key: None,
                };
            }
            w.b.handle_datagram(w.now, w.a_addr.clone(), &hs1.data);
            // B's HANDSHAKE_2 is dropped: B stays waiting for HANDSHAKE_3.
            let b_conn = match w
                .b
                .poll_transmit()
                .map(|t| Frame::parse(&t.data).map(|f| f.body))
            {
                Some(Ok(Body::Handshake2 { sender_conn_id, .. })) => sender_conn_id,
                _ => 0,
            };
            Target {
                conn_id: b_conn,
                key: None,
            }
        }
        Stage::EstablishedResponder | Stage::EstablishedInitiator => {
            w.a.connect(w.now, w.b_addr.clone());
            w.shuttle();
            let peer_b = w.b.identity().device_id();
            let _ = w.a.open_session(
                w.now,
                peer_b,
                "echo",
                ChannelKind::Message,
                Qos::Interactive,
            );
            w.shuttle();
            let Some((a_conn, b_conn, a_tx, a_rx)) = w.a.session_keys().into_iter().next() else {
                return Target {
                    conn_id: 0,
                    key: None,
                };
            };
            match stage {
                Stage::EstablishedResponder => Target {
                    conn_id: b_conn,
                    key: key_from_hex(&a_tx),
                },
                _ => Target {
                    conn_id: a_conn,
                    key: key_from_hex(&a_rx),
                },
            }
        }
    }
}

/// The `endpoint` target: see the module documentation for the input layout.
pub fn run(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let stage = Stage::from_byte(first);
    let mut w = World::new();
    let target = prepare(&mut w, stage);
    let to_a = matches!(
        stage,
        Stage::InitiatorMidHandshake | Stage::EstablishedInitiator
    );
    // Far above the real connection's sequence numbers, so the replay window lets them in.
    let mut seq = 1u64 << 40;
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        if flags & 4 != 0 {
            w.now += Duration::from_millis(300);
            w.a.handle_timeout(w.now);
            w.b.handle_timeout(w.now);
        }
        let mut datagram = chunk.to_vec();
        match &target.key {
            Some(key) if flags & 2 != 0 => {
                datagram = Frame {
                    conn_id: target.conn_id,
                    body: Body::Record {
                        epoch: key.epoch,
                        seq,
                        ciphertext: key.seal(target.conn_id, seq, chunk),
                    },
                }
                .to_vec();
                seq += 1;
            }
            _ if flags & 1 != 0 && datagram.len() >= 6 => {
                datagram[0] = 0x01;
                datagram[2..6].copy_from_slice(&target.conn_id.to_be_bytes());
            }
            _ => {}
        }
        if to_a {
            w.a.handle_datagram(w.now, w.b_addr.clone(), &datagram);
        } else {
            w.b.handle_datagram(w.now, w.a_addr.clone(), &datagram);
        }
        w.shuttle();
    }
    let _ = w.a.state(w.now);
    let _ = w.b.state(w.now);
}
