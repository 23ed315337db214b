//! Two sans-IO endpoints joined in memory with virtual time (quinn-style `Pair`): pairing,
//! handshake, sessions, permissions and liveness, all without a socket or a real clock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use softbus::capability::{Capability, Metrics};
use softbus::endpoint::{Config, Endpoint, Event, LinkAddr, PromptPolicy};
use softbus::wire::msg::{ChannelKind, PermResult, Qos, Scope};
use softbus::wire::Code;
use softbus::{DeviceId, Fault, Identity};

struct Pair {
    now: Instant,
    a: Endpoint,
    b: Endpoint,
    a_addr: LinkAddr,
    b_addr: LinkAddr,
    a_events: VecDeque<Event>,
    b_events: VecDeque<Event>,
    /// Drop every Nth datagram (0 = none).
    drop_every: usize,
    sent: usize,
}

fn addr(port: u16) -> LinkAddr {
    LinkAddr::Ip(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn config(name: &str, pin: Option<&str>) -> Config {
    Config {
        name: name.into(),
        hb_interval: Duration::from_millis(200),
        pin: pin.map(str::to_owned),
        prompt_policy: PromptPolicy::Approve,
        prompt_timeout: Duration::from_millis(500),
        lockout: Duration::from_secs(3),
        capabilities: vec![Capability {
            name: "speaker.main".into(),
            kind: "speaker".into(),
            metrics: Metrics::default(),
        }],
        ..Config::default()
    }
}

impl Pair {
    fn new(a_cfg: Config, b_cfg: Config) -> Pair {
        let now = Instant::now();
        let mk = |cfg, seed: u8| {
            Endpoint::new(
                cfg,
                Identity::from_secret([seed; 32]),
                softbus::trust::TrustStore::new(),
                [seed; 32],
                now,
                1_700_000_000,
            )
        };
        Pair {
            now,
            a: mk(a_cfg, 1),
            b: mk(b_cfg, 2),
            a_addr: addr(1000),
            b_addr: addr(2000),
            a_events: VecDeque::new(),
            b_events: VecDeque::new(),
            drop_every: 0,
            sent: 0,
        }
    }

    /// Move datagrams and fire timers until both are idle or `limit` of virtual time passed.
    fn drive_for(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            let mut progressed = false;
            while let Some(t) = self.a.poll_transmit() {
                progressed = true;
                self.sent += 1;
                if self.drop_every == 0 || !self.sent.is_multiple_of(self.drop_every) {
                    self.b
                        .handle_datagram(self.now, self.a_addr.clone(), &t.data);
                }
            }
            while let Some(t) = self.b.poll_transmit() {
                progressed = true;
                self.sent += 1;
                if self.drop_every == 0 || !self.sent.is_multiple_of(self.drop_every) {
                    self.a
                        .handle_datagram(self.now, self.b_addr.clone(), &t.data);
                }
            }
            while let Some(e) = self.a.poll_event() {
                self.a_events.push_back(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.b_events.push_back(e);
            }
            if progressed {
                continue;
            }
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
    }

    fn drive(&mut self) {
        self.drive_for(Duration::from_millis(50));
    }

    /// Pair, connect, and open a message session from A to B's `echo`: B's ID and the session.
    fn connected_echo(&mut self) -> (DeviceId, u32) {
        self.pair_and_connect();
        let (_, idb) = self.ids();
        let sid = self
            .a
            .open_session(
                self.now,
                idb,
                "echo",
                ChannelKind::Message,
                Qos::Interactive,
            )
            .unwrap();
        self.drive();
        (idb, sid)
    }

    fn ids(&self) -> (DeviceId, DeviceId) {
        (self.a.identity().device_id(), self.b.identity().device_id())
    }

    fn pair_and_connect(&mut self) {
        self.a
            .pair(self.now, self.b_addr.clone(), "123456")
            .unwrap();
        self.drive();
        self.a.connect(self.now, self.b_addr.clone());
        self.drive();
        assert!(
            self.a_events
                .iter()
                .any(|e| matches!(e, Event::Connected { .. })),
            "{:?}",
            self.a_events
        );
        assert!(
            self.b_events
                .iter()
                .any(|e| matches!(e, Event::Connected { .. })),
            "{:?}",
            self.b_events
        );
    }

    fn take_a(&mut self) -> Vec<Event> {
        self.a_events.drain(..).collect()
    }
}

#[test]
fn right_pin_pairs_and_pins_both_keys() {
    let mut p = Pair::new(config("a", None), config("b", Some("123456")));
    p.a.pair(p.now, p.b_addr.clone(), "123456").unwrap();
    p.drive();
    let (ida, idb) = p.ids();
    assert!(p
        .a_events
        .iter()
        .any(|e| matches!(e, Event::Paired { peer, .. } if *peer == idb)));
    assert!(p
        .b_events
        .iter()
        .any(|e| matches!(e, Event::Paired { peer, .. } if *peer == ida)));
    assert!(p.a.trust_store().is_pinned(p.b.identity().public()));
    assert!(p.b.trust_store().is_pinned(p.a.identity().public()));
}

#[test]
fn wrong_pin_fails_and_is_rate_limited() {
    let mut p = Pair::new(config("a", None), config("b", Some("123456")));
    for _ in 0..3 {
        p.a.pair(p.now, p.b_addr.clone(), "000000").unwrap();
        p.drive();
    }
    assert!(!p.b.trust_store().is_pinned(p.a.identity().public()));
    p.take_a();
    p.a.pair(p.now, p.b_addr.clone(), "123456").unwrap();
    p.drive();
    assert!(p.take_a().iter().any(|e| matches!(
        e,
        Event::PairingFailed {
            code: Code::RateLimited,
            ..
        }
    )));
    p.drive_for(Duration::from_secs(4));
    p.a.pair(p.now, p.b_addr.clone(), "123456").unwrap();
    p.drive();
    assert!(p.take_a().iter().any(|e| matches!(e, Event::Paired { .. })));
}

#[test]
fn unpinned_handshake_is_rejected() {
    let mut p = Pair::new(config("a", None), config("b", Some("123456")));
    p.a.connect(p.now, p.b_addr.clone());
    p.drive();
    assert!(p.take_a().iter().any(|e| matches!(
        e,
        Event::HandshakeFailed {
            code: Code::UnknownPeer,
            ..
        }
    )));
}

#[test]
fn sessions_echo_in_order_even_with_loss() {
    let mut p = Pair::new(config("a", None), config("b", Some("123456")));
    let (idb, sid) = p.connected_echo();
    assert!(p
        .take_a()
        .iter()
        .any(|e| matches!(e, Event::SessionOpened { session_id, .. } if *session_id == sid)));
    p.drop_every = 5;
    for i in 0..40u32 {
        p.a.send(p.now, idb, sid, &i.to_be_bytes()).unwrap();
    }
    let big = vec![7u8; 20_000];
    p.a.send(p.now, idb, sid, &big).unwrap();
    p.drive_for(Duration::from_secs(5));
    let got: Vec<Vec<u8>> = p
        .take_a()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { data, .. } => Some(data),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 41);
    for (i, d) in got.iter().take(40).enumerate() {
        assert_eq!(d, &(i as u32).to_be_bytes());
    }
    assert_eq!(got[40], big);
}

#[test]
fn unknown_service_is_rejected() {
    let mut p = Pair::new(config("a", None), config("b", Some("123456")));
    p.pair_and_connect();
    let (_, idb) = p.ids();
    p.a.open_session(p.now, idb, "nope", ChannelKind::Message, Qos::BestEffort)
        .unwrap();
    p.drive();
    assert!(p.take_a().iter().any(|e| matches!(
        e,
        Event::SessionRejected {
            code: Code::UnknownService,
            ..
        }
    )));
}

#[test]
fn permission_grant_use_revoke_and_deny() {
    let mut p = Pair::new(config("a", None), config("b", Some("123456")));
    p.pair_and_connect();
    let (_, idb) = p.ids();
    p.a.request_permission(p.now, idb, "speaker.main", Scope::UntilRevoked, 0)
        .unwrap();
    p.drive();
    let grant = p
        .take_a()
        .into_iter()
        .find_map(|e| match e {
            Event::PermissionResult {
                result: PermResult::Granted,
                grant_id,
                ..
            } => Some(grant_id),
            _ => None,
        })
        .expect("granted");
    p.a.invoke(p.now, idb, "speaker.main", grant, b"play")
        .unwrap();
    p.drive();
    assert!(p.take_a().iter().any(|e| matches!(
        e,
        Event::CapabilityResult {
            status: Code::Ok,
            ..
        }
    )));
    p.b.revoke(p.now, grant).unwrap();
    p.drive();
    assert!(p
        .take_a()
        .iter()
        .any(|e| matches!(e, Event::GrantRevoked { .. })));
    p.a.invoke(p.now, idb, "speaker.main", grant, b"play")
        .unwrap();
    p.drive();
    assert!(p.take_a().iter().any(|e| matches!(
        e,
        Event::CapabilityResult {
            status: Code::GrantRevoked,
            ..
        }
    )));
    p.b.set_prompt_policy(PromptPolicy::Deny);
    p.a.request_permission(p.now, idb, "speaker.main", Scope::Once, 0)
        .unwrap();
    p.drive();
    assert!(p.take_a().iter().any(|e| matches!(
        e,
        Event::PermissionResult {
            result: PermResult::Denied,
            ..
        }
    )));
    p.b.set_prompt_policy(PromptPolicy::Timeout);
    p.a.request_permission(p.now, idb, "speaker.main", Scope::Once, 0)
        .unwrap();
    p.drive_for(Duration::from_millis(600));
    assert!(p.take_a().iter().any(|e| matches!(
        e,
        Event::PermissionResult {
            result: PermResult::Timeout,
            ..
        }
    )));
}

/// The result of `a`'s last CAP_INVOKE, if one came back.
fn cap_result(events: &[Event]) -> Option<(Code, Vec<u8>)> {
    events.iter().rev().find_map(|e| match e {
        Event::CapabilityResult { status, result, .. } => Some((*status, result.clone())),
        _ => None,
    })
}

fn capability_request(events: &[Event]) -> Option<(u64, String, Vec<u8>)> {
    events.iter().find_map(|e| match e {
        Event::CapabilityRequest {
            handle,
            capability,
            args,
            ..
        } => Some((*handle, capability.clone(), args.clone())),
        _ => None,
    })
}

#[test]
fn external_capability_is_answered_by_the_driver_only_after_the_checks() {
    let mut b_cfg = config("b", Some("123456"));
    b_cfg.capabilities.push(Capability {
        name: "light.onoff".into(),
        kind: "light".into(),
        metrics: Metrics::default(),
    });
    b_cfg.external_capabilities = vec!["light.onoff".into()];
    b_cfg.backend_timeout = Duration::from_secs(1);
    let mut p = Pair::new(config("a", None), b_cfg);
    p.pair_and_connect();
    let (_, idb) = p.ids();
    p.b_events.clear();

    // Refused by the checks: answered at once, the driver never hears of it.
    p.a.invoke(p.now, idb, "light.onoff", 0, b"on").unwrap();
    p.drive();
    assert_eq!(
        cap_result(&p.take_a()),
        Some((Code::PermissionDenied, vec![]))
    );
    let b_events: Vec<Event> = p.b_events.drain(..).collect();
    assert_eq!(capability_request(&b_events), None, "{b_events:?}");

    p.a.request_permission(p.now, idb, "light.onoff", Scope::UntilRevoked, 0)
        .unwrap();
    p.drive();
    let grant = p
        .take_a()
        .into_iter()
        .find_map(|e| match e {
            Event::PermissionResult {
                result: PermResult::Granted,
                grant_id,
                ..
            } => Some(grant_id),
            _ => None,
        })
        .expect("granted");

    // Passed: the driver is asked, and the peer waits for it.
    p.a.invoke(p.now, idb, "light.onoff", grant, b"on").unwrap();
    p.drive();
    assert_eq!(
        cap_result(&p.take_a()),
        None,
        "no answer before the driver's"
    );
    let b_events: Vec<Event> = p.b_events.drain(..).collect();
    let used = b_events
        .iter()
        .position(|e| matches!(e, Event::CapabilityUsed { .. }));
    let asked = b_events
        .iter()
        .position(|e| matches!(e, Event::CapabilityRequest { .. }));
    assert!(used.is_some() && used < asked, "{b_events:?}");
    let (handle, capability, args) = capability_request(&b_events).expect("a request");
    assert_eq!(
        (capability.as_str(), args.as_slice()),
        ("light.onoff", &b"on"[..])
    );
    p.b.complete_invoke(p.now, handle, Code::Ok, b"on").unwrap();
    p.drive();
    assert_eq!(cap_result(&p.take_a()), Some((Code::Ok, b"on".to_vec())));
    assert!(
        p.b.complete_invoke(p.now, handle, Code::Ok, b"on").is_err(),
        "one CAP_RESULT per CAP_INVOKE"
    );

    // A driver that never answers: INTERNAL after the backend timeout, late answers dropped.
    p.a.invoke(p.now, idb, "light.onoff", grant, b"read")
        .unwrap();
    p.drive();
    let (handle, ..) =
        capability_request(&p.b_events.drain(..).collect::<Vec<_>>()).expect("asked");
    p.drive_for(Duration::from_millis(1100));
    let (status, why) = cap_result(&p.take_a()).expect("answered by the endpoint");
    assert_eq!(status, Code::Internal);
    assert!(
        String::from_utf8_lossy(&why).contains("light.onoff"),
        "{why:?}"
    );
    assert!(p
        .b
        .complete_invoke(p.now, handle, Code::Ok, b"off")
        .is_err());
    p.drive();
    assert_eq!(cap_result(&p.take_a()), None, "nothing more was sent");

    // Revoked: refused by the checks again, before the driver.
    p.b.revoke(p.now, grant).unwrap();
    p.drive();
    p.b_events.clear();
    p.a.invoke(p.now, idb, "light.onoff", grant, b"on").unwrap();
    p.drive();
    assert_eq!(cap_result(&p.take_a()), Some((Code::GrantRevoked, vec![])));
    assert_eq!(
        capability_request(&p.b_events.drain(..).collect::<Vec<_>>()),
        None
    );
}

#[test]
fn pending_external_use_ends_with_its_connection() {
    let mut b_cfg = config("b", Some("123456"));
    b_cfg.external_capabilities = vec!["speaker.main".into()];
    let mut p = Pair::new(config("a", None), b_cfg);
    p.pair_and_connect();
    let (_, idb) = p.ids();
    p.a.request_permission(p.now, idb, "speaker.main", Scope::Session, 0)
        .unwrap();
    p.drive();
    let grant = p
        .take_a()
        .into_iter()
        .find_map(|e| match e {
            Event::PermissionResult { grant_id, .. } => Some(grant_id),
            _ => None,
        })
        .expect("an answer");
    p.a.invoke(p.now, idb, "speaker.main", grant, b"play")
        .unwrap();
    p.drive();
    let (handle, ..) =
        capability_request(&p.b_events.drain(..).collect::<Vec<_>>()).expect("asked");
    let (ida, _) = p.ids();
    p.b.disconnect(p.now, ida, Code::NormalClose).unwrap();
    p.drive();
    assert!(
        p.b.complete_invoke(p.now, handle, Code::Ok, b"play")
            .is_err(),
        "the use went with its connection"
    );
}

#[test]
fn silent_peer_is_declared_lost() {
    let mut p = Pair::new(config("a", None), config("b", Some("123456")));
    p.pair_and_connect();
    p.drop_every = 1; // the link dies
    p.drive_for(Duration::from_secs(2));
    assert!(p
        .take_a()
        .iter()
        .any(|e| matches!(e, Event::PeerLost { .. })));
}

#[test]
fn faulty_device_grants_without_prompt() {
    let mut b = config("b", Some("123456"));
    b.prompt_policy = PromptPolicy::Deny;
    b.faults = vec![Fault::GrantWithoutPrompt];
    let mut p = Pair::new(config("a", None), b);
    p.pair_and_connect();
    let (_, idb) = p.ids();
    p.a.request_permission(p.now, idb, "speaker.main", Scope::Once, 0)
        .unwrap();
    p.drive();
    assert!(p.take_a().iter().any(|e| matches!(
        e,
        Event::PermissionResult {
            result: PermResult::Granted,
            ..
        }
    )));
}

#[test]
fn forged_handshake_frames_do_not_touch_an_established_connection() {
    use softbus::wire::frame::{Body, Frame};
    let mut p = Pair::new(config("a", None), config("b", Some("123456")));
    p.pair_and_connect();
    let (ida, idb) = p.ids();
    for (local_id, _, _, _) in p.b.session_keys() {
        for body in [
            Body::Handshake3 {
                noise: vec![0x55; 64],
            },
            Body::Handshake2 {
                sender_conn_id: 9,
                noise: vec![0x55; 96],
            },
        ] {
            let f = Frame {
                conn_id: local_id,
                body,
            }
            .to_vec();
            p.b.handle_datagram(p.now, p.a_addr.clone(), &f);
        }
    }
    for (local_id, _, _, _) in p.a.session_keys() {
        let f = Frame {
            conn_id: local_id,
            body: Body::Handshake2 {
                sender_conn_id: 9,
                noise: vec![0x55; 96],
            },
        }
        .to_vec();
        p.a.handle_datagram(p.now, p.b_addr.clone(), &f);
    }
    p.drive_for(Duration::from_millis(300));
    let sid =
        p.a.open_session(p.now, idb, "echo", ChannelKind::Message, Qos::Interactive)
            .unwrap();
    p.drive();
    p.a.send(p.now, idb, sid, b"still here").unwrap();
    p.drive();
    let events = p.take_a();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Message { data, .. } if data == b"still here")),
        "{events:?}"
    );
    assert!(!p
        .b_events
        .iter()
        .any(|e| matches!(e, Event::Disconnected { peer, .. } if *peer == ida)));
}

/// A device that announces a smaller max_message ([SESS-8] allows anything from 1024 to the
/// kind's limit) gets it respected by the peer ([SESS-13]) and enforces it itself ([SESS-14]).
#[test]
fn a_smaller_max_message_is_announced_respected_and_enforced() {
    let b_cfg = Config {
        max_message: Some(2048),
        ..config("b", Some("123456"))
    };
    let a_cfg = Config {
        faults: vec![softbus::Fault::AcceptOversizedMessage],
        ..config("a", None)
    };
    let mut p = Pair::new(config("a", None), b_cfg.clone());
    let (idb, sid) = p.connected_echo();
    p.take_a();
    p.a.send(p.now, idb, sid, &[1u8; 2048]).unwrap();
    let refused = p.a.send(p.now, idb, sid, &[1u8; 2049]);
    assert!(
        matches!(
            refused,
            Err(softbus::endpoint::ApiError::TooLarge { limit: 2048, .. })
        ),
        "{refused:?}"
    );
    p.drive();
    assert!(p
        .take_a()
        .iter()
        .any(|e| matches!(e, Event::Message { data, .. } if data.len() == 2048)));

    // A sender that ignores the limit gets the session closed with MESSAGE_TOO_LARGE.
    let mut p = Pair::new(a_cfg, b_cfg);
    let (idb, sid) = p.connected_echo();
    p.a.send(p.now, idb, sid, &[1u8; 2049]).unwrap();
    p.drive();
    assert!(p.take_a().iter().any(|e| matches!(
        e,
        Event::SessionClosed { session_id, code: Code::MessageTooLarge, by_peer: true, .. }
            if *session_id == sid
    )));
}

/// `timing.ack_delay` (a legal variant, [REL-6]): the message's own response (the echo) leaves at
/// once, its ACK only when the delay has passed; without a delay both leave at once.
#[test]
fn a_delayed_ack_follows_the_response_after_its_delay() {
    for delay in [Duration::ZERO, Duration::from_millis(60)] {
        let b_cfg = Config {
            timing: softbus::endpoint::Timing {
                ack_delay: delay,
                ..Default::default()
            },
            ..config("b", Some("123456"))
        };
        let mut p = Pair::new(config("a", None), b_cfg);
        let (idb, sid) = p.connected_echo();
        p.drive_for(Duration::from_millis(200));
        p.a.send(p.now, idb, sid, b"ping").unwrap();
        let t0 = p.now;
        let mut first = Vec::new();
        while let Some(t) = p.a.poll_transmit() {
            first.push(t);
        }
        assert_eq!(first.len(), 1, "A sends one record");
        p.b.handle_datagram(t0, p.a_addr.clone(), &first[0].data);
        let mut at_once = 0;
        while p.b.poll_transmit().is_some() {
            at_once += 1;
        }
        if delay.is_zero() {
            assert_eq!(at_once, 2, "the ACK and the echo at once");
            continue;
        }
        assert_eq!(at_once, 1, "only the echo at once");
        let due = p.b.poll_timeout().expect("a timer for the ACK");
        assert!(due <= t0 + delay, "{:?} after the message", due - t0);
        p.b.handle_timeout(t0 + delay - Duration::from_millis(1));
        assert!(p.b.poll_transmit().is_none(), "no ACK before its delay");
        p.b.handle_timeout(t0 + delay);
        assert!(
            p.b.poll_transmit().is_some(),
            "the ACK once its delay passed"
        );
    }
}
