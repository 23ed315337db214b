//! Timers: every deadline of the endpoint, in one place. [`Endpoint::poll_timeout`] reports
//! the earliest; [`Endpoint::handle_timeout`] fires those that are due (spec 6.3, 8, 9, 12, 17).

use super::*;

impl Endpoint {
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
                    if let Some((t, _)) = s.acks_due.front() {
                        at(*t);
                    }
                    if let Some(t) = s.time.poll_timeout() {
                        at(t);
                    }
                }
            }
        }
        t
    }

    pub(super) fn conn_timers(&mut self, now: Instant, local_id: u32) {
        let skip_hb = self.has(Fault::SkipHeartbeat);
        let no_loss = self.has(Fault::NoDeviceLoss);
        let no_resync = self.has(Fault::TimeNoResync);
        let hb = self.cfg.hb_interval;
        let late = self.cfg.timing.retransmit_late;
        self.send_due_acks(now, local_id);
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
                        // A retransmission may be late by up to 100 ms ([REL-8]); the loss after
                        // the last one is declared when its RTO expires ([REL-9]).
                        p.next_send = if p.tries >= MAX_TRIES {
                            now + p.rto
                        } else {
                            now + p.rto + late
                        };
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
}
