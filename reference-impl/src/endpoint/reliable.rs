//! Reliable delivery (spec 8): sequence numbers, ACKs, retransmission, the QoS send queue
//! (spec 9.5) and the receive reorder buffer.

use super::*;

impl Endpoint {
    pub(super) fn on_message(&mut self, now: Instant, local_id: u32, msg: Message) {
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
                self.ack(now, local_id, ack);
                for b in deliver {
                    self.dispatch(now, local_id, b);
                }
            }
        }
    }

    /// Mark `rseq` as received without delivering anything, then acknowledge.
    pub(super) fn consume_rseq(&mut self, now: Instant, local_id: u32, rseq: u32) {
        let Some(s) = self.established_mut(local_id) else {
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
        self.ack(now, local_id, ack);
        for b in deliver {
            self.dispatch(now, local_id, b);
        }
    }

    /// Acknowledge with `next_expected` ([REL-6]): now, or after [`Timing::ack_delay`].
    fn ack(&mut self, now: Instant, local_id: u32, next_expected: u32) {
        let delay = self.cfg.timing.ack_delay;
        if delay.is_zero() {
            self.send_unreliable(now, local_id, MsgBody::Ack { next_expected });
        } else if let Some(s) = self.established_mut(local_id) {
            s.acks_due.push_back((now + delay, next_expected));
        }
    }

    /// Send the delayed ACKs that are due.
    pub(super) fn send_due_acks(&mut self, now: Instant, local_id: u32) {
        loop {
            let Some(s) = self.established_mut(local_id) else {
                return;
            };
            match s.acks_due.front() {
                Some((at, next_expected)) if *at <= now => {
                    let next_expected = *next_expected;
                    s.acks_due.pop_front();
                    self.send_unreliable(now, local_id, MsgBody::Ack { next_expected });
                }
                _ => return,
            }
        }
    }

    pub(super) fn on_ack(&mut self, now: Instant, local_id: u32, next_expected: u32) {
        let Some(s) = self.established_mut(local_id) else {
            return;
        };
        s.unacked.retain(|r, _| *r >= next_expected);
        self.flush_queue(now, local_id);
    }

    pub(super) fn send_unreliable(&mut self, now: Instant, local_id: u32, body: MsgBody) {
        let pt = Message::unreliable(body).to_vec();
        self.seal_and_send(now, local_id, &pt);
    }

    pub(super) fn send_reliable(&mut self, now: Instant, local_id: u32, qos: Qos, body: MsgBody) {
        let Some(s) = self.established_mut(local_id) else {
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
    pub(super) fn flush_queue(&mut self, now: Instant, local_id: u32) {
        let first_rto = INITIAL_RTO + self.cfg.timing.retransmit_late;
        loop {
            let Some(s) = self.established_mut(local_id) else {
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
                    next_send: now + first_rto,
                    rto: INITIAL_RTO,
                    tries: 1,
                },
            );
            self.seal_and_send(now, local_id, &pt);
        }
    }
}
