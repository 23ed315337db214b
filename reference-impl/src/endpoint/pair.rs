//! Pairing (spec 5): SPAKE2 over the PIN, key confirmation, trust pinning, failure counting and
//! lockout.

use super::*;

pub(super) struct PairInit {
    pub(super) addr: LinkAddr,
    pub(super) spake: Option<spake2::Spake2<spake2::Ed25519Group>>,
    pub(super) msg_a: Vec<u8>,
    pub(super) deadline: Instant,
    pub(super) transcript: Option<(PairingTranscript, [u8; 32])>,
}

pub(super) struct PairResp {
    /// The PAIR_RESPONSE sent, repeated byte for byte for a repeated PAIR_REQUEST.
    pub(super) response: Vec<u8>,
    pub(super) transcript: PairingTranscript,
    pub(super) peer_key: [u8; 32],
    pub(super) deadline: Instant,
}

/// The pairing the responder ended last, kept 10 s to answer a repeat of its PAIR_CONFIRM
/// ([PAIR-17]).
pub(super) struct PairEnded {
    pub(super) from: LinkAddr,
    pub(super) pairing_id: u32,
    pub(super) confirm: [u8; 32],
    pub(super) result: Frame,
    pub(super) until: Instant,
}

/// How long [`PairEnded`] is kept.
const PAIR_ENDED_KEPT: Duration = Duration::from_secs(10);

impl Endpoint {
    /// Start PIN pairing with the device at `addr`.
    pub fn pair(&mut self, now: Instant, addr: LinkAddr, pin: &str) -> Result<u32, ApiError> {
        if !crypto::is_valid_pin(pin) {
            return Err(ApiError::InvalidPin);
        }
        let pairing_id = self.rng.gen_range(1..=u32::MAX);
        let (spake, msg_a) = crypto::spake2_start_a(pin, &mut self.rng);
        let Ok(spake_msg) = <[u8; SPAKE2_MSG_LEN]>::try_from(msg_a.as_slice()) else {
            unreachable!("SPAKE2 Ed25519 messages are 33 bytes")
        };
        self.send_frame(
            &addr,
            Frame {
                conn_id: 0,
                body: Body::PairRequest {
                    pairing_id,
                    static_key: *self.identity.public(),
                    spake_msg,
                },
            },
        );
        self.pair_init.insert(
            pairing_id,
            PairInit {
                addr,
                spake: Some(spake),
                msg_a,
                deadline: now + PAIRING_TIMEOUT,
                transcript: None,
            },
        );
        Ok(pairing_id)
    }

    /// Count a failure of 5.4 from `from`; the third within 60 s starts a lockout ([PAIR-11]).
    pub(super) fn record_pair_failure(&mut self, now: Instant, from: &LinkAddr) {
        self.counters.pairing_failures += 1;
        if self.has(Fault::NoPinRateLimit) {
            return;
        }
        let window = if self.has(Fault::PairFailureWindow5s) {
            Duration::from_secs(5)
        } else {
            PAIR_FAILURE_WINDOW
        };
        self.pair_failures.push_back(now);
        while self
            .pair_failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.pair_failures.pop_front();
        }
        if self.pair_failures.len() >= PAIR_FAILURES_BEFORE_LOCKOUT {
            self.lockout_from = Some(from.clone());
            let doublings = if self.has(Fault::LockoutNoDoubling) {
                0
            } else {
                self.lockouts.min(10)
            };
            let factor = 1u32 << doublings;
            self.lockout_until = Some(now + (self.cfg.lockout * factor).min(MAX_LOCKOUT));
            self.lockouts += 1;
            self.pair_failures.clear();
        }
    }

    /// Whether a PAIR_REQUEST from `from` falls in a lockout: every address's does ([PAIR-11]),
    /// except under [`Fault::LockoutPerAddress`].
    fn locked_out(&self, now: Instant, from: &LinkAddr) -> bool {
        self.lockout_until.is_some_and(|t| now < t)
            && (!self.has(Fault::LockoutPerAddress) || self.lockout_from.as_ref() == Some(from))
    }

    pub(super) fn pair_result(
        &mut self,
        to: &LinkAddr,
        pairing_id: u32,
        status: Code,
        mac: [u8; 32],
    ) {
        self.send_frame(
            to,
            Frame {
                conn_id: 0,
                body: Body::PairResult {
                    pairing_id,
                    status,
                    mac,
                },
            },
        );
    }

    pub(super) fn on_pair_request(
        &mut self,
        now: Instant,
        from: LinkAddr,
        pairing_id: u32,
        peer_key: [u8; 32],
        msg_a: [u8; SPAKE2_MSG_LEN],
    ) {
        if self.locked_out(now, &from) {
            self.counters.rate_limited += 1;
            self.pair_result(&from, pairing_id, Code::RateLimited, [0; 32]);
            return;
        }
        if let Some(p) = self.pair_resp.get(&(from.clone(), pairing_id)) {
            // A repeated request (our response was lost): answer it identically.
            let t = Transmit {
                dst: from,
                data: p.response.clone(),
            };
            self.transmits.push_back(t);
            return;
        }
        // One pending pairing at a time: a new attempt replaces the pending one, which counts
        // as a failed guess (otherwise parallel requests would bypass the rate limit).
        let pending = self.pair_resp.keys().next().map(|(a, _)| a.clone());
        if let Some(abandoned) = pending {
            self.pair_resp.clear();
            self.record_pair_failure(now, &abandoned);
            if self.locked_out(now, &from) {
                self.counters.rate_limited += 1;
                self.pair_result(&from, pairing_id, Code::RateLimited, [0; 32]);
                return;
            }
        }
        let Some(pin) = self.pin.clone() else {
            self.pair_result(&from, pairing_id, Code::PairingFailed, [0; 32]);
            return;
        };
        let (spake, msg_b) = crypto::spake2_start_b(&pin, &mut self.rng);
        let Ok(key) = spake.finish(&msg_a) else {
            self.counters.pairing_failures += 1;
            self.pair_result(&from, pairing_id, Code::PairingFailed, [0; 32]);
            return;
        };
        let Ok(spake_msg) = <[u8; SPAKE2_MSG_LEN]>::try_from(msg_b.as_slice()) else {
            unreachable!("SPAKE2 Ed25519 messages are 33 bytes")
        };
        let transcript =
            PairingTranscript::new(key, &peer_key, self.identity.public(), &msg_a, &msg_b);
        let confirm = transcript.responder_confirm();
        let response = Frame {
            conn_id: 0,
            body: Body::PairResponse {
                pairing_id,
                static_key: *self.identity.public(),
                spake_msg,
                confirm,
            },
        }
        .to_vec();
        self.transmits.push_back(Transmit {
            dst: from.clone(),
            data: response.clone(),
        });
        self.pair_resp.insert(
            (from, pairing_id),
            PairResp {
                response,
                transcript,
                peer_key,
                deadline: now + PAIRING_TIMEOUT,
            },
        );
    }

    pub(super) fn on_pair_response(
        &mut self,
        _now: Instant,
        from: LinkAddr,
        pairing_id: u32,
        peer_key: [u8; 32],
        msg_b: [u8; SPAKE2_MSG_LEN],
        confirm_b: [u8; 32],
    ) {
        let Some(mut p) = self.pair_init.remove(&pairing_id) else {
            return;
        };
        let spake = match p.spake.take() {
            Some(s) if p.addr == from => s,
            other => {
                p.spake = other;
                self.pair_init.insert(pairing_id, p);
                return;
            }
        };
        let key = spake.finish(&msg_b);
        let transcript = key.map(|k| {
            PairingTranscript::new(k, self.identity.public(), &peer_key, &p.msg_a, &msg_b)
        });
        match transcript {
            Ok(t) if ct_eq(&t.responder_confirm(), &confirm_b) => {
                let confirm = t.initiator_confirm();
                self.send_frame(
                    &from,
                    Frame {
                        conn_id: 0,
                        body: Body::PairConfirm {
                            pairing_id,
                            confirm,
                        },
                    },
                );
                self.pair_init.insert(
                    pairing_id,
                    PairInit {
                        transcript: Some((t, peer_key)),
                        ..p
                    },
                );
            }
            _ => {
                self.counters.pairing_failures += 1;
                self.pair_result(&from, pairing_id, Code::PairingFailed, [0; 32]);
                self.events.push_back(Event::PairingFailed {
                    addr: from,
                    code: Code::PairingFailed,
                });
            }
        }
    }

    pub(super) fn on_pair_confirm(
        &mut self,
        now: Instant,
        from: LinkAddr,
        pairing_id: u32,
        confirm_a: [u8; 32],
    ) {
        let Some(p) = self.pair_resp.remove(&(from.clone(), pairing_id)) else {
            // A repeat of the PAIR_CONFIRM that ended the last pairing: its PAIR_RESULT was
            // lost, answer it again ([PAIR-17]); anything else is dropped.
            let repeat = self.pair_ended.as_ref().filter(|e| {
                e.from == from
                    && e.pairing_id == pairing_id
                    && e.confirm == confirm_a
                    && now < e.until
            });
            if let Some(e) = repeat {
                if !self.has(Fault::PairConfirmRepeatDropped) {
                    let to = e.from.clone();
                    let result = e.result.clone();
                    self.send_frame(&to, result);
                }
            }
            return;
        };
        let ok =
            ct_eq(&p.transcript.initiator_confirm(), &confirm_a) || self.has(Fault::AcceptWrongPin);
        let (status, mac) = if ok {
            (Code::Ok, p.transcript.result_mac(Code::Ok.to_u16()))
        } else {
            (Code::PairingFailed, [0; 32])
        };
        self.pair_ended = Some(PairEnded {
            from: from.clone(),
            pairing_id,
            confirm: confirm_a,
            result: Frame {
                conn_id: 0,
                body: Body::PairResult {
                    pairing_id,
                    status,
                    mac,
                },
            },
            until: now + PAIR_ENDED_KEPT,
        });
        if ok {
            let unix = self.unix_time(now);
            let peer = self.trust.pin(&p.peer_key, unix);
            self.pair_result(&from, pairing_id, Code::Ok, mac);
            self.events.push_back(Event::TrustStoreChanged);
            self.events.push_back(Event::Paired { peer, addr: from });
        } else {
            self.record_pair_failure(now, &from);
            self.pair_result(&from, pairing_id, Code::PairingFailed, [0; 32]);
            self.events.push_back(Event::PairingFailed {
                addr: from,
                code: Code::PairingFailed,
            });
        }
    }

    pub(super) fn on_pair_result(
        &mut self,
        now: Instant,
        from: LinkAddr,
        pairing_id: u32,
        status: Code,
        mac: [u8; 32],
    ) {
        // As responder: the initiator gave up (its check of our confirmation failed).
        if status != Code::Ok && self.pair_resp.remove(&(from.clone(), pairing_id)).is_some() {
            self.record_pair_failure(now, &from);
            return;
        }
        let Some(p) = self.pair_init.remove(&pairing_id) else {
            return;
        };
        if p.addr != from {
            self.pair_init.insert(pairing_id, p);
            return;
        }
        match (&p.transcript, status) {
            (Some((t, peer_key)), Code::Ok) if ct_eq(&t.result_mac(0), &mac) => {
                let unix = self.unix_time(now);
                let peer = self.trust.pin(peer_key, unix);
                self.events.push_back(Event::TrustStoreChanged);
                self.events.push_back(Event::Paired { peer, addr: from });
            }
            (_, Code::Ok) => {
                // An OK without a valid MAC is forged; keep waiting for the real answer.
                self.pair_init.insert(pairing_id, p);
            }
            (_, code) => {
                self.events
                    .push_back(Event::PairingFailed { addr: from, code });
            }
        }
    }
}
