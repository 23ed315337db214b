//! Inner messages (spec 8.1): routing each decrypted message to the concern that handles it.

use super::*;

impl Endpoint {
    pub(super) fn dispatch(&mut self, now: Instant, local_id: u32, body: MsgBody) {
        let Some(peer) = self.peer_of(local_id) else {
            return;
        };
        match body {
            MsgBody::SessionOpen {
                session_id,
                kind,
                qos,
                service,
            } => self.on_session_open(now, local_id, peer, session_id, kind, qos, service),
            MsgBody::SessionAccept {
                session_id,
                max_message,
            } => {
                if let Some(Conn {
                    state: ConnState::Established(s),
                    ..
                }) = self.conns.get_mut(&local_id)
                {
                    if let Some(sess) = s.sessions.get_mut(&session_id) {
                        if sess.state == SessionState::Opening {
                            sess.state = SessionState::Open;
                            sess.peer_max_message =
                                Some((max_message as usize).min(sess.kind.max_message()));
                            let (service, kind) = (sess.service.clone(), sess.kind);
                            self.events.push_back(Event::SessionOpened {
                                peer,
                                session_id,
                                service,
                                kind,
                                inbound: false,
                            });
                        }
                    }
                }
            }
            MsgBody::SessionReject { session_id, code } => {
                if let Some(Conn {
                    state: ConnState::Established(s),
                    ..
                }) = self.conns.get_mut(&local_id)
                {
                    if s.sessions.remove(&session_id).is_some() {
                        self.events.push_back(Event::SessionRejected {
                            peer,
                            session_id,
                            code,
                        });
                    }
                }
            }
            MsgBody::SessionClose { session_id, code } => {
                if let Some(Conn {
                    state: ConnState::Established(s),
                    ..
                }) = self.conns.get_mut(&local_id)
                {
                    if s.sessions.remove(&session_id).is_some() {
                        self.events.push_back(Event::SessionClosed {
                            peer,
                            session_id,
                            code,
                            by_peer: true,
                        });
                    }
                }
            }
            MsgBody::Data {
                session_id,
                msg_id,
                frag_index,
                frag_count,
                payload,
            } => self.on_data(
                now, local_id, peer, session_id, msg_id, frag_index, frag_count, None, payload,
            ),
            MsgBody::CapQuery { req_id } => {
                let cbor = self.cap_list_that_fits(local_id, req_id);
                self.send_reliable(
                    now,
                    local_id,
                    Qos::Interactive,
                    MsgBody::CapList { req_id, cbor },
                );
            }
            MsgBody::CapList { req_id, cbor } => match capability::decode_list(&cbor) {
                Ok(capabilities) => self.events.push_back(Event::Capabilities {
                    peer,
                    req_id,
                    capabilities,
                }),
                Err(_) => self.send_unreliable(
                    now,
                    local_id,
                    MsgBody::Error {
                        code: Code::Malformed,
                        offending: 0x21,
                    },
                ),
            },
            MsgBody::PermRequest {
                req_id,
                scope,
                duration_s,
                capability,
            } => self.on_perm_request(now, local_id, peer, req_id, scope, duration_s, capability),
            MsgBody::PermResponse {
                req_id,
                result,
                grant_id,
                expires_in_ms,
            } => self.events.push_back(Event::PermissionResult {
                peer,
                req_id,
                result,
                grant_id,
                expires_in_ms,
            }),
            MsgBody::PermRevoke { grant_id } => {
                // Either the device revoked a grant we hold, or the holder gave one back.
                let ours = self.grants.get(&grant_id).is_some_and(|g| g.holder == peer);
                if ours {
                    self.grants.remove(&grant_id);
                    let before = self.trust.grants.len();
                    self.trust.grants.retain(|p| p.grant_id != grant_id);
                    if self.trust.grants.len() != before {
                        self.events.push_back(Event::TrustStoreChanged);
                    }
                } else {
                    self.events
                        .push_back(Event::GrantRevoked { peer, grant_id });
                }
            }
            MsgBody::CapInvoke {
                req_id,
                grant_id,
                capability,
                args,
            } => self.on_invoke(now, local_id, peer, req_id, grant_id, capability, args),
            MsgBody::CapResult {
                req_id,
                status,
                result,
            } => self.events.push_back(Event::CapabilityResult {
                peer,
                req_id,
                status,
                result,
            }),
            MsgBody::TimeRequest { .. } if self.has(Fault::TimeNoResponse) => {}
            MsgBody::TimeRequest { sync_id, t1 } => {
                let mut t2 = self.clock_us(now);
                if self.has(Fault::TimeClockBackwards) {
                    self.time_responses += 1;
                    t2 = t2.saturating_sub(20_000 * self.time_responses);
                }
                // The response leaves with this `now`: the driver stamps `now` on receipt.
                let t3 = if self.has(Fault::TimeHoldStamp) {
                    t2 + 5_000
                } else {
                    t2
                };
                self.send_unreliable(now, local_id, ConnTime::respond(sync_id, t1, t2, t3));
            }
            MsgBody::TimeResponse {
                sync_id,
                t1,
                t2,
                t3,
            } => {
                let t4 = self.clock_us(now);
                let uncounted = self.has(Fault::TimeUncounted);
                let flood = self.has(Fault::TimeSyncFlood);
                if let Some(Conn {
                    state: ConnState::Established(s),
                    ..
                }) = self.conns.get_mut(&local_id)
                {
                    match s.time.handle_response(now, t4, sync_id, t1, t2, t3) {
                        Ok(()) if flood => {
                            if let Some((accuracy, period)) = s.time.level() {
                                s.time.start(now, accuracy, period);
                            }
                        }
                        Ok(()) => {}
                        Err(_) if uncounted => {}
                        Err(crate::time::ResponseError::Unmatched { .. }) => {
                            self.counters.time_unmatched += 1
                        }
                        Err(crate::time::ResponseError::Inconsistent(_)) => {
                            self.counters.time_inconsistent += 1
                        }
                    }
                }
            }
            MsgBody::TimedData {
                session_id,
                msg_id,
                frag_index,
                frag_count,
                pts_us,
                payload,
            } => self.on_data(
                now,
                local_id,
                peer,
                session_id,
                msg_id,
                frag_index,
                frag_count,
                Some(pts_us),
                payload,
            ),
            MsgBody::Heartbeat
            | MsgBody::Close { .. }
            | MsgBody::Ack { .. }
            | MsgBody::Error { .. } => {}
        }
    }
}

impl Endpoint {
    /// The CAP_LIST body for a CAP_QUERY on connection `local_id`: every capability if the
    /// record fits the frame size [FRAME-5] allows (our MTU and the peer's max_frame), otherwise
    /// the longest prefix of the list that does ([CAP-12]).
    fn cap_list_that_fits(&self, local_id: u32, req_id: u32) -> Vec<u8> {
        let peer_max_frame = match self.conns.get(&local_id) {
            Some(Conn {
                state: ConnState::Established(s),
                ..
            }) => s.peer_max_frame,
            _ => self.cfg.mtu,
        };
        let limit = self.cfg.mtu.min(peer_max_frame);
        let caps = &self.cfg.capabilities;
        let mut n = caps.len();
        if self.has(Fault::CapListDropsLast) {
            n = n.saturating_sub(1);
        }
        loop {
            let cbor = capability::encode_list(&caps[..n]);
            let record = RECORD_OVERHEAD
                + Message {
                    rseq: u32::MAX,
                    body: MsgBody::CapList {
                        req_id,
                        cbor: cbor.clone(),
                    },
                }
                .buffer_len();
            if record <= limit || n == 0 {
                if n < caps.len() {
                    tracing::debug!(
                        offered = n,
                        of = caps.len(),
                        limit,
                        "CAP_LIST cut to the capabilities that fit one record"
                    );
                }
                return cbor;
            }
            n -= 1;
        }
    }
}
