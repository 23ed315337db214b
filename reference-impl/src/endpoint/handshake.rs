//! The Noise XX handshake (spec 6): HELLO exchange, HANDSHAKE_1..3, retries, rejection and the
//! split into record keys.

use super::*;

impl Endpoint {
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

    pub(super) fn hello(&self) -> Vec<u8> {
        (Hello {
            hb_ms: self.cfg.hb_interval.as_millis().min(u32::MAX as u128) as u32,
            max_frame: self.cfg.mtu.min(u16::MAX as usize) as u16,
            name: self.cfg.name.clone(),
        })
        .to_bytes()
    }

    pub(super) fn on_hs1(
        &mut self,
        now: Instant,
        from: LinkAddr,
        sender_conn_id: u32,
        noise: &[u8],
    ) {
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

    pub(super) fn reject(&mut self, to: &LinkAddr, conn_id: u32, code: Code) {
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

    pub(super) fn on_hs2(
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

    pub(super) fn on_hs3(&mut self, now: Instant, from: LinkAddr, local_id: u32, noise: &[u8]) {
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
    pub(super) fn establish(
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
            acks_due: VecDeque::new(),
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

    pub(super) fn on_hs_reject(&mut self, from: LinkAddr, local_id: u32, code: Code) {
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
}
