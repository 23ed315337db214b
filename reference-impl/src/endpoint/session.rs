//! Sessions (spec 9): opening, accepting, closing, sending with fragmentation, reassembly and
//! stream delivery (latest wins).

use super::*;

impl Endpoint {
    /// Open a session to `service` on `peer`; returns the session ID. The session is usable
    /// after [`Event::SessionOpened`].
    pub fn open_session(
        &mut self,
        now: Instant,
        peer: DeviceId,
        service: &str,
        kind: ChannelKind,
        qos: Qos,
    ) -> Result<u32, ApiError> {
        if service.is_empty() || service.len() > 64 {
            return Err(ApiError::InvalidName("service"));
        }
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let conn = self
            .conns
            .get_mut(&local_id)
            .ok_or(ApiError::NotConnected(peer))?;
        let initiator = conn.initiator;
        let ConnState::Established(s) = &mut conn.state else {
            return Err(ApiError::NotConnected(peer));
        };
        let mut id = s.next_session;
        while s.sessions.contains_key(&id) {
            id = id.wrapping_add(2);
        }
        debug_assert_eq!(id % 2, if initiator { 0 } else { 1 });
        s.next_session = id.wrapping_add(2);
        s.sessions.insert(
            id,
            Session {
                inbound: false,
                peer_max_message: None,
                max_message: kind.max_message(),
                kind,
                qos,
                service: service.to_string(),
                state: SessionState::Opening,
                next_msg_id: 1,
                reassembly: BTreeMap::new(),
                last_stream_delivered: None,
            },
        );
        self.send_reliable(
            now,
            local_id,
            Qos::Realtime,
            MsgBody::SessionOpen {
                session_id: id,
                kind,
                qos,
                service: service.to_string(),
            },
        );
        Ok(id)
    }

    /// Send one message on an open session, fragmented to the link MTU.
    pub fn send(
        &mut self,
        now: Instant,
        peer: DeviceId,
        session_id: u32,
        data: &[u8],
    ) -> Result<(), ApiError> {
        self.send_message(now, peer, session_id, data, None)
    }

    pub(super) fn send_message(
        &mut self,
        now: Instant,
        peer: DeviceId,
        session_id: u32,
        data: &[u8],
        pts_us: Option<u64>,
    ) -> Result<(), ApiError> {
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let (kind, qos, msg_id, peer_max_frame) = {
            let Some(Conn {
                state: ConnState::Established(s),
                ..
            }) = self.conns.get_mut(&local_id)
            else {
                return Err(ApiError::NotConnected(peer));
            };
            let sess = s
                .sessions
                .get_mut(&session_id)
                .filter(|x| x.state == SessionState::Open)
                .ok_or(ApiError::UnknownSession { peer, session_id })?;
            // The peer's announced limit when it accepted our session (spec SESS-13).
            let limit = sess.peer_max_message.unwrap_or(sess.kind.max_message());
            if data.len() > limit && !self.cfg.faults.contains(&Fault::AcceptOversizedMessage) {
                return Err(ApiError::TooLarge {
                    kind: sess.kind,
                    size: data.len(),
                    limit,
                });
            }
            if pts_us.is_some() && sess.kind != ChannelKind::Stream {
                return Err(ApiError::NotStream { peer, session_id });
            }
            let msg_id = sess.next_msg_id;
            sess.next_msg_id = sess.next_msg_id.wrapping_add(1);
            (sess.kind, sess.qos, msg_id, s.peer_max_frame)
        };
        // TIMED_DATA carries 8 bytes more header than DATA.
        let max_frag = self.max_fragment(peer_max_frame) - if pts_us.is_some() { 8 } else { 0 };
        let frag_count = data.len().div_ceil(max_frag).max(1);
        let Ok(frag_count) = u16::try_from(frag_count) else {
            return Err(ApiError::TooLarge {
                kind,
                size: data.len(),
                limit: max_frag * u16::MAX as usize,
            });
        };
        for i in 0..frag_count {
            let start = i as usize * max_frag;
            let end = (start + max_frag).min(data.len());
            let payload = data[start..end].to_vec();
            let body = match pts_us {
                Some(pts_us) => MsgBody::TimedData {
                    session_id,
                    msg_id,
                    frag_index: i,
                    frag_count,
                    pts_us,
                    payload,
                },
                None => MsgBody::Data {
                    session_id,
                    msg_id,
                    frag_index: i,
                    frag_count,
                    payload,
                },
            };
            if kind.is_reliable() {
                self.send_reliable(now, local_id, qos, body);
            } else {
                self.send_unreliable(now, local_id, body);
            }
        }
        Ok(())
    }

    /// Close a session with `code`.
    pub fn close_session(
        &mut self,
        now: Instant,
        peer: DeviceId,
        session_id: u32,
        code: Code,
    ) -> Result<(), ApiError> {
        let local_id = self.conn_of(peer).ok_or(ApiError::NotConnected(peer))?;
        let removed = match self.conns.get_mut(&local_id) {
            Some(Conn {
                state: ConnState::Established(s),
                ..
            }) => s.sessions.remove(&session_id).is_some(),
            _ => false,
        };
        if !removed {
            return Err(ApiError::UnknownSession { peer, session_id });
        }
        self.send_reliable(
            now,
            local_id,
            Qos::Realtime,
            MsgBody::SessionClose { session_id, code },
        );
        self.events.push_back(Event::SessionClosed {
            peer,
            session_id,
            code,
            by_peer: false,
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_session_open(
        &mut self,
        now: Instant,
        local_id: u32,
        peer: DeviceId,
        session_id: u32,
        kind: ChannelKind,
        qos: Qos,
        service: String,
    ) {
        let offered = self.cfg.services.contains(&service) || self.has(Fault::AcceptUnknownService);
        let Some(conn) = self.conns.get_mut(&local_id) else {
            return;
        };
        let peer_parity = if conn.initiator { 1 } else { 0 };
        let ConnState::Established(s) = &mut conn.state else {
            return;
        };
        let code = if session_id % 2 != peer_parity || s.sessions.contains_key(&session_id) {
            Some(Code::ProtocolViolation)
        } else if !offered {
            Some(Code::UnknownService)
        } else if s.sessions.len() >= MAX_SESSIONS {
            Some(Code::TooManySessions)
        } else {
            None
        };
        if let Some(code) = code {
            self.send_reliable(
                now,
                local_id,
                Qos::Realtime,
                MsgBody::SessionReject { session_id, code },
            );
            return;
        }
        let max_message = self.cfg.max_message.map_or(kind.max_message(), |m| {
            m.clamp(MIN_MAX_MESSAGE, kind.max_message())
        });
        s.sessions.insert(
            session_id,
            Session {
                inbound: true,
                peer_max_message: None,
                max_message,
                kind,
                qos,
                service: service.clone(),
                state: SessionState::Open,
                next_msg_id: 1,
                reassembly: BTreeMap::new(),
                last_stream_delivered: None,
            },
        );
        self.send_reliable(
            now,
            local_id,
            Qos::Realtime,
            MsgBody::SessionAccept {
                session_id,
                max_message: max_message as u32,
            },
        );
        self.events.push_back(Event::SessionOpened {
            peer,
            session_id,
            service,
            kind,
            inbound: true,
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_data(
        &mut self,
        now: Instant,
        local_id: u32,
        peer: DeviceId,
        session_id: u32,
        msg_id: u32,
        frag_index: u16,
        frag_count: u16,
        pts_us: Option<u64>,
        payload: Vec<u8>,
    ) {
        let accept_oversized = self.has(Fault::AcceptOversizedMessage);
        let offending = if pts_us.is_some() { 0x15 } else { 0x14 };
        let timed_anywhere = self.has(Fault::TimedDataAnywhere);
        let Some(Conn {
            state: ConnState::Established(s),
            ..
        }) = self.conns.get_mut(&local_id)
        else {
            return;
        };
        let Some(sess) = s
            .sessions
            .get_mut(&session_id)
            .filter(|x| x.state == SessionState::Open)
        else {
            self.send_unreliable(
                now,
                local_id,
                MsgBody::Error {
                    code: Code::UnknownSession,
                    offending,
                },
            );
            return;
        };
        if pts_us.is_some() && sess.kind != ChannelKind::Stream && !timed_anywhere {
            // [TIME-14]: a presentation time has no meaning on a reliable session.
            s.sessions.remove(&session_id);
            s.time.session_closed(session_id);
            self.send_reliable(
                now,
                local_id,
                Qos::Realtime,
                MsgBody::SessionClose {
                    session_id,
                    code: Code::ProtocolViolation,
                },
            );
            self.events.push_back(Event::SessionClosed {
                peer,
                session_id,
                code: Code::ProtocolViolation,
                by_peer: false,
            });
            return;
        }
        if sess.kind == ChannelKind::Stream {
            if sess
                .last_stream_delivered
                .is_some_and(|last| msg_id <= last)
            {
                return; // latest wins: older frames are dropped
            }
            // Start of a newer message: forget older partial ones.
            sess.reassembly.retain(|id, _| *id >= msg_id);
        }
        let limit = sess.max_message;
        // Reliable channels deliver in order, so a conforming sender's fragments arrive as one
        // message at a time, in frag_index order; anything else would let a peer keep many
        // partial messages alive (spec SESS-15).
        let out_of_sequence = sess.kind.is_reliable()
            && match sess.reassembly.get(&msg_id) {
                Some(e) => frag_index as usize != e.parts.len(),
                None => !sess.reassembly.is_empty() || frag_index != 0,
            };
        let entry = sess.reassembly.entry(msg_id).or_insert_with(|| Reassembly {
            frag_count,
            parts: BTreeMap::new(),
            size: 0,
        });
        let mut too_large = false;
        if out_of_sequence || entry.frag_count != frag_count {
            too_large = true; // inconsistent fragmentation
        } else if !entry.parts.contains_key(&frag_index) {
            entry.size += payload.len();
            entry.parts.insert(frag_index, payload);
            if entry.size > limit && !accept_oversized {
                too_large = true;
            }
        }
        if too_large {
            s.sessions.remove(&session_id);
            self.send_reliable(
                now,
                local_id,
                Qos::Realtime,
                MsgBody::SessionClose {
                    session_id,
                    code: Code::MessageTooLarge,
                },
            );
            self.events.push_back(Event::SessionClosed {
                peer,
                session_id,
                code: Code::MessageTooLarge,
                by_peer: false,
            });
            return;
        }
        if entry.parts.len() < frag_count as usize {
            return;
        }
        let Some(done) = sess.reassembly.remove(&msg_id) else {
            return;
        };
        if sess.kind == ChannelKind::Stream {
            sess.last_stream_delivered = Some(msg_id);
        }
        let data: Vec<u8> = done.parts.into_values().flatten().collect();
        if let Some(pts) = pts_us.filter(|_| sess.kind == ChannelKind::Stream) {
            self.present_later(now, local_id, session_id, msg_id, pts, data);
            return;
        }
        let echo = sess.inbound && sess.service == "echo";
        if echo {
            let _ = self.send(now, peer, session_id, &data);
        }
        self.events.push_back(Event::Message {
            peer,
            session_id,
            data,
        });
    }

    /// Largest DATA payload per record: our MTU and the peer's max_frame both bound the frame
    /// (spec FRAME-5).
    pub(super) fn max_fragment(&self, peer_max_frame: usize) -> usize {
        self.cfg
            .mtu
            .min(peer_max_frame)
            .saturating_sub(RECORD_OVERHEAD + DATA_OVERHEAD)
            .max(16)
    }
}
