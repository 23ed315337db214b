//! Record protection (spec 7): opening records (replay window, previous key after a rekey),
//! sealing and sending them, and rekeying.

use super::*;

impl Endpoint {
    pub(super) fn on_record(
        &mut self,
        now: Instant,
        from: LinkAddr,
        local_id: u32,
        epoch: u8,
        seq: u64,
        ct: &[u8],
    ) {
        let accept_replay = self.has(Fault::AcceptReplay);
        let grace = self.cfg.timing.prev_epoch_grace;
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
                    s.rx_prev = Some((old, now + grace));
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

    pub(super) fn send_frame(&mut self, to: &LinkAddr, frame: Frame) {
        self.transmits.push_back(Transmit {
            dst: to.clone(),
            data: frame.to_vec(),
        });
    }

    pub(super) fn seal_and_send(&mut self, now: Instant, local_id: u32, plaintext: &[u8]) {
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
}
