//! Section 9, sessions and channels.
//!
//! > [SESS-2] A device MUST answer each SESSION_OPEN with exactly one SESSION_ACCEPT or
//! > SESSION_REJECT for the same session_id within 500 ms (T_RESP) of its delivery, unless the
//! > SESSION_OPEN is malformed ([SESS-4]).
//! >
//! > [SESS-3] A device MUST reject a SESSION_OPEN for a service it does not offer with code
//! > UNKNOWN_SERVICE (7).
//! >
//! > [SESS-7] A device MUST accept up to 64 concurrent sessions per connection for the services
//! > it offers, and reject a SESSION_OPEN that would make more than 64 with code
//! > TOO_MANY_SESSIONS (16).
//! >
//! > [SESS-14] A receiver MUST close the session with SESSION_CLOSE code MESSAGE_TOO_LARGE (8) as
//! > soon as the payload it has received for one message exceeds its limit for the session.
//! >
//! > [SESS-16] A receiver MUST deliver the messages of a message or bytes session to the service
//! > complete, in the order they were sent, and each once.
//! >
//! > [SESS-18] A stream receiver MUST deliver a message only if its msg_id is greater than that
//! > of the last message it delivered on the session.
//! >
//! > [SESS-22] A test build MUST offer the services `echo` and `sink` for all three kinds [...]
//!
//! (and SESS-1, 4–6, 8–13, 15, 17, ERR-3, CTRL-7: see each case's requirement list.)
//!
//! [SESS-19], [SESS-20] and [SESS-21] are SHOULDs: where a case meets them it reports a deviation
//! in its log, never as a verdict.
//!
//! The lower tester initiates every connection, so the sessions it opens have even IDs and the
//! DUT's have odd ones. Sessions opened by hand here use IDs from [`RAW_ID_BASE`] so that they
//! never collide with the ones `SecureConn::open_session` allocates.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use softbus::wire::frame::{Body, Frame};
use softbus::wire::msg::{ChannelKind, Message, MsgBody, Qos};
use softbus::wire::Code;

use crate::case::{Case, Ctx};
use crate::cases::steps::{describe, gather, largest_frame, maybe, peer_id, T_RESP};
use crate::tester::lower::{SecureConn, StepError};

/// First session ID the cases pick by hand (even: the tester is always the initiator).
pub(crate) const RAW_ID_BASE: u32 = 0x1000;

/// The largest frame the lower tester announces in its HELLO (`max_frame`, its link MTU).
const TESTER_MAX_FRAME: usize = 1400;

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-SESS-001",
            title: "accepts sessions to echo and sink for every kind within 500 ms, announcing a max_message within the kind's limit",
            requirements: &["SESS-2", "SESS-8", "SESS-22"],
            pics: "SESS_MESSAGE || SESS_BYTES || SESS_STREAM",
            pixit: &["services"],
            transport: "udp",
            run: accepts_test_services,
        },
        Case {
            id: "SB-SESS-002",
            title: "rejects a session to a service it does not offer with UNKNOWN_SERVICE",
            requirements: &["SESS-2", "SESS-3"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: unknown_service_rejected,
        },
        Case {
            id: "SB-SESS-003",
            title: "rejects a SESSION_OPEN with the session-ID parity of its own sessions with PROTOCOL_VIOLATION",
            requirements: &["SESS-2", "SESS-5"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: wrong_parity_rejected,
        },
        Case {
            id: "SB-SESS-004",
            title: "rejects a SESSION_OPEN for a session ID in use with PROTOCOL_VIOLATION and keeps the session",
            requirements: &["SESS-6"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: duplicate_id_refused,
        },
        Case {
            id: "SB-SESS-005",
            title: "accepts 64 concurrent sessions, rejects the 65th with TOO_MANY_SESSIONS, and reuses a closed slot",
            requirements: &["SESS-2", "SESS-7"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: session_limit,
        },
        Case {
            id: "SB-SESS-006",
            title: "closes a session on close_session with a SESSION_CLOSE, and answers DATA for it with UNKNOWN_SESSION",
            requirements: &["CTRL-7", "SESS-17"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: close_session_codes,
        },
        Case {
            id: "SB-SESS-007",
            title: "opens sessions with odd IDs as responder, sends no DATA before SESSION_ACCEPT, and numbers and fragments its messages",
            requirements: &["SESS-1", "SESS-9", "SESS-10", "SESS-11", "SESS-12"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: dut_opened_sessions,
        },
        Case {
            id: "SB-SESS-008",
            title: "delivers 200 messages through echo complete, in order and once, and reports sink messages as events",
            requirements: &["SESS-16", "SESS-10", "SESS-22"],
            pics: "SESS_MESSAGE",
            pixit: &["services"],
            transport: "udp",
            run: ordered_through_echo,
        },
        Case {
            id: "SB-SESS-009",
            title: "delivers a message of exactly its announced max_message and closes the session with MESSAGE_TOO_LARGE on one byte more",
            requirements: &["SESS-14", "SESS-16", "SESS-17"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: message_size_limit,
        },
        Case {
            id: "SB-SESS-010",
            title: "closes a session with MESSAGE_TOO_LARGE on fragments that do not continue the message",
            requirements: &["SESS-15"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: bad_fragments_close,
        },
        Case {
            id: "SB-SESS-011",
            title: "answers DATA for a session that is not open (never opened, closed, rejected, still opening) with ERROR UNKNOWN_SESSION",
            requirements: &["SESS-17"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: data_for_unknown_session,
        },
        Case {
            id: "SB-SESS-012",
            title: "carries a 1 MiB message (or its smaller max_message) on a bytes session intact, in ordered fragments that fit the tester's max_frame",
            requirements: &["SESS-16", "SESS-10", "SESS-11", "SESS-12"],
            pics: "SESS_BYTES",
            pixit: &[],
            transport: "udp",
            run: bytes_one_mib,
        },
        Case {
            id: "SB-SESS-013",
            title: "delivers on a stream session only messages newer than the last one delivered",
            requirements: &["SESS-18", "SESS-10", "SESS-12"],
            pics: "SESS_STREAM",
            pixit: &[],
            transport: "udp",
            run: stream_latest_wins,
        },
        Case {
            id: "SB-SESS-014",
            title: "treats a SESSION_OPEN with a bad kind, qos or service length as malformed and opens no session",
            requirements: &["SESS-4", "ERR-3"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: malformed_open_rejected,
        },
        Case {
            id: "SB-SESS-015",
            title: "does not send a message larger than the max_message the tester announced",
            requirements: &["SESS-13"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: respects_peer_max_message,
        },
    ]
}

// ---------------------------------------------------------------------------------- helpers

/// The PICS item of a kind.
pub(crate) fn kind_pics(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Message => "SESS_MESSAGE",
        ChannelKind::Bytes => "SESS_BYTES",
        ChannelKind::Stream => "SESS_STREAM",
    }
}

/// The control protocol's name of a kind.
pub(crate) fn kind_name(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Message => "message",
        ChannelKind::Bytes => "bytes",
        ChannelKind::Stream => "stream",
    }
}

const KINDS: [ChannelKind; 3] = [
    ChannelKind::Message,
    ChannelKind::Bytes,
    ChannelKind::Stream,
];

/// Send SESSION_OPEN with a chosen ID and wait for its answer; returns it and the time it took.
pub(crate) fn open_raw(
    c: &mut SecureConn,
    session_id: u32,
    service: &str,
    kind: ChannelKind,
    t: Duration,
) -> Result<(MsgBody, Duration), StepError> {
    let started = Instant::now();
    c.send_reliable(MsgBody::SessionOpen {
        session_id,
        kind,
        qos: Qos::BestEffort,
        service: service.to_string(),
    })?;
    let m = c.expect(t, &format!("SESSION_ACCEPT or SESSION_REJECT for session {session_id}"), |b| {
        matches!(b, MsgBody::SessionAccept { session_id: s, .. } | MsgBody::SessionReject { session_id: s, .. } if *s == session_id)
    })?;
    Ok((m.body, started.elapsed()))
}

/// Seal `plaintext` (a whole inner message, header included) as the next record and send it.
pub(crate) fn send_plaintext(c: &mut SecureConn, plaintext: &[u8]) -> Result<(), StepError> {
    let seq = c.tx_seq;
    c.tx_seq += 1;
    let ciphertext = c.tx.seal(c.remote_id, seq, plaintext);
    let frame = Frame {
        conn_id: c.remote_id,
        body: Body::Record {
            epoch: c.tx.epoch,
            seq,
            ciphertext,
        },
    };
    c.send_raw(&frame.to_vec())
}

/// One DATA fragment as received.
#[derive(Debug, Clone)]
pub(crate) struct Frag {
    pub msg_id: u32,
    pub index: u16,
    pub count: u16,
    pub rseq: u32,
}

/// Reassembles the DUT's messages on one session and logs every fragment.
#[derive(Default)]
pub(crate) struct Reassembler {
    parts: BTreeMap<u32, (u16, BTreeMap<u16, Vec<u8>>)>,
    /// Every fragment received, in arrival order.
    pub frags: Vec<Frag>,
}

impl Reassembler {
    /// The next complete message on `session_id`: `(msg_id, data)`.
    pub(crate) fn next(
        &mut self,
        c: &mut SecureConn,
        session_id: u32,
        timeout: Duration,
    ) -> Result<(u32, Vec<u8>), StepError> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let m = c
                .expect(
                    left,
                    &format!("DATA on session {session_id}"),
                    |b| matches!(b, MsgBody::Data { session_id: s, .. } if *s == session_id),
                )
                .map_err(|e| match e {
                    StepError::Timeout(..) => StepError::Timeout(
                        timeout,
                        format!("a complete message on session {session_id}"),
                    ),
                    e => e,
                })?;
            let MsgBody::Data {
                msg_id,
                frag_index,
                frag_count,
                payload,
                ..
            } = m.body
            else {
                continue;
            };
            self.frags.push(Frag {
                msg_id,
                index: frag_index,
                count: frag_count,
                rseq: m.rseq,
            });
            let entry = self
                .parts
                .entry(msg_id)
                .or_insert_with(|| (frag_count, BTreeMap::new()));
            entry.1.entry(frag_index).or_insert(payload);
            if entry.0 > 0 && entry.1.len() >= entry.0 as usize {
                if let Some((_, parts)) = self.parts.remove(&msg_id) {
                    return Ok((msg_id, parts.into_values().flatten().collect()));
                }
            }
        }
    }
}

/// Check that the fragments of each message are numbered and ordered as SESS-10/11 require:
/// same frag_count, frag_index 0..count-1 in order, no interleaving. Returns a problem, if any.
pub(crate) fn fragment_problem(frags: &[Frag]) -> Option<String> {
    let mut i = 0;
    while i < frags.len() {
        let first = &frags[i];
        if first.index != 0 {
            return Some(format!(
                "message {} starts with frag_index {}",
                first.msg_id, first.index
            ));
        }
        for k in 0..first.count as usize {
            let Some(f) = frags.get(i + k) else {
                return Some(format!(
                    "message {} incomplete: {k} of {} fragments",
                    first.msg_id, first.count
                ));
            };
            if f.msg_id != first.msg_id || f.count != first.count || f.index as usize != k {
                return Some(format!(
                    "fragment {k} of message {} (frag_count {}) is msg {} frag {}/{}",
                    first.msg_id, first.count, f.msg_id, f.index, f.count
                ));
            }
        }
        i += first.count.max(1) as usize;
    }
    None
}

// ------------------------------------------------------------------------------------ cases

fn accepts_test_services(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    let mut id = RAW_ID_BASE;
    for service in ["echo", "sink"] {
        for kind in KINDS {
            if !ctx.pics.get(kind_pics(kind)) {
                continue;
            }
            id += 2;
            let what = format!("an answer to SESSION_OPEN('{service}', {kind:?})");
            let Some((body, took)) =
                ctx.must("SESS-2", &what, open_raw(&mut c, id, service, kind, t))
            else {
                continue;
            };
            ctx.check(
                "SESS-2",
                took <= T_RESP,
                format!("{what} within 500 ms"),
                format!("after {took:?}"),
            );
            match body {
                MsgBody::SessionAccept { max_message, .. } => {
                    let limit = kind.max_message() as u64; // the kind's limit (9.1)
                    ctx.check(
                        "SESS-8",
                        (1024..=limit).contains(&u64::from(max_message)),
                        format!("max_message in 1024..={limit} for a {kind:?} session"),
                        max_message.to_string(),
                    );
                }
                other => {
                    ctx.check(
                        "SESS-22",
                        false,
                        format!("SESSION_ACCEPT for the test service '{service}' ({kind:?})"),
                        format!("{other:?}"),
                    );
                }
            }
        }
    }
    let late = gather(&mut c, Duration::from_millis(200))?;
    let extra: Vec<Message> = late
        .into_iter()
        .filter(|m| {
            matches!(&m.body, MsgBody::SessionAccept { session_id, .. } | MsgBody::SessionReject { session_id, .. }
                if *session_id > RAW_ID_BASE && *session_id <= id)
        })
        .collect();
    ctx.check(
        "SESS-2",
        extra.is_empty(),
        "exactly one answer per SESSION_OPEN",
        format!("further answers: {}", describe(&extra)),
    );
    ctx.pass();
    Ok(())
}

fn unknown_service_rejected(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    let mut id = RAW_ID_BASE;
    // "Echo" differs from a test service only in case: names are compared byte for byte.
    for service in ["no-such-service", "Echo"] {
        id += 2;
        let what = format!("an answer to SESSION_OPEN('{service}')");
        let Some((body, took)) = ctx.must(
            "SESS-2",
            &what,
            open_raw(&mut c, id, service, ChannelKind::Message, t),
        ) else {
            continue;
        };
        ctx.check(
            "SESS-2",
            took <= T_RESP,
            format!("{what} within 500 ms"),
            format!("after {took:?}"),
        );
        ctx.check(
            "SESS-3",
            matches!(
                body,
                MsgBody::SessionReject {
                    code: Code::UnknownService,
                    ..
                }
            ),
            format!("SESSION_REJECT UNKNOWN_SERVICE(7) for '{service}'"),
            format!("{body:?}"),
        );
    }
    ctx.pass();
    Ok(())
}

fn wrong_parity_rejected(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    // The tester initiated the connection: odd IDs belong to the DUT.
    let id = RAW_ID_BASE + 1;
    let Some((body, took)) = ctx.must(
        "SESS-2",
        "an answer to SESSION_OPEN with an odd ID",
        open_raw(&mut c, id, "echo", ChannelKind::Message, t),
    ) else {
        return Ok(());
    };
    ctx.check(
        "SESS-2",
        took <= T_RESP,
        "an answer within 500 ms",
        format!("after {took:?}"),
    );
    ctx.check(
        "SESS-5",
        matches!(body, MsgBody::SessionReject { code: Code::ProtocolViolation, .. }),
        format!("SESSION_REJECT PROTOCOL_VIOLATION(1) for session {id} (odd: the DUT's parity, the DUT is the responder)"),
        format!("{body:?}"),
    );
    ctx.pass();
    Ok(())
}

fn duplicate_id_refused(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    let id = RAW_ID_BASE + 2;
    match open_raw(&mut c, id, "echo", ChannelKind::Message, t)? {
        (MsgBody::SessionAccept { .. }, _) => {}
        (other, _) => {
            return Err(StepError::Unexpected(format!(
                "preamble: session to echo not accepted: {other:?}"
            )))
        }
    }
    c.send_reliable(MsgBody::SessionOpen {
        session_id: id,
        kind: ChannelKind::Message,
        qos: Qos::BestEffort,
        service: "echo".into(),
    })?;
    let got = gather(&mut c, T_RESP + Duration::from_millis(100))?;
    let answers: Vec<Message> = got
        .into_iter()
        .filter(|m| matches!(&m.body, MsgBody::SessionAccept { session_id, .. } | MsgBody::SessionReject { session_id, .. } if *session_id == id))
        .collect();
    ctx.check(
        "SESS-6",
        answers.len() == 1 && matches!(answers[0].body, MsgBody::SessionReject { code: Code::ProtocolViolation, .. }),
        format!("exactly one SESSION_REJECT PROTOCOL_VIOLATION(1) for session {id}, already open, within 500 ms"),
        describe(&answers),
    );
    c.send_data(id, 1, b"still open?", ChannelKind::Message)?;
    let echo = c.recv_data(id, t);
    ctx.check(
        "SESS-6",
        echo.as_deref() == Ok(b"still open?".as_slice()),
        "the existing session unchanged: echo still answers on it",
        format!("{echo:?}"),
    );
    ctx.pass();
    Ok(())
}

fn session_limit(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    let mut ids = Vec::new();
    for k in 0..64u32 {
        let id = RAW_ID_BASE + 2 * (k + 1);
        let (body, took) = open_raw(&mut c, id, "echo", ChannelKind::Message, t)?;
        ctx.check(
            "SESS-2",
            took <= T_RESP,
            format!("an answer to SESSION_OPEN {} within 500 ms", k + 1),
            format!("after {took:?}"),
        );
        if !ctx.check(
            "SESS-7",
            matches!(body, MsgBody::SessionAccept { .. }),
            format!("SESSION_ACCEPT for concurrent session {} of 64", k + 1),
            format!("{body:?}"),
        ) {
            ctx.pass();
            return Ok(());
        }
        ids.push(id);
    }
    let id65 = RAW_ID_BASE + 2 * 65;
    let (body, _) = open_raw(&mut c, id65, "echo", ChannelKind::Message, t)?;
    ctx.check(
        "SESS-7",
        matches!(
            body,
            MsgBody::SessionReject {
                code: Code::TooManySessions,
                ..
            }
        ),
        "SESSION_REJECT TOO_MANY_SESSIONS(16) for a 65th concurrent session",
        format!("{body:?}"),
    );
    // Closing one frees a slot.
    c.send_reliable(MsgBody::SessionClose {
        session_id: ids[0],
        code: Code::NormalClose,
    })?;
    let id66 = RAW_ID_BASE + 2 * 66;
    let (body, _) = open_raw(&mut c, id66, "echo", ChannelKind::Message, t)?;
    ctx.check(
        "SESS-7",
        matches!(body, MsgBody::SessionAccept { .. }),
        "SESSION_ACCEPT once a session was closed (64 concurrent again)",
        format!("{body:?}"),
    );
    ctx.pass();
    Ok(())
}

fn close_session_codes(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let peer = peer_id(&lt);
    for code in [None, Some(Code::Internal)] {
        let Ok(id) = c.open_session("echo", ChannelKind::Message, Qos::Interactive)? else {
            return Err(StepError::Unexpected(
                "preamble: session to echo rejected".into(),
            ));
        };
        let mut req = json!({"op": "close_session", "peer": peer, "session_id": id});
        if let Some(code) = code {
            req["code"] = json!(code.name());
        }
        let expected = code.unwrap_or(Code::NormalClose);
        let what = format!(
            "SESSION_CLOSE {expected} for session {id} after close_session (code {})",
            code.map_or("absent", |c| c.name())
        );
        let r = ctx.upper()?.call(req);
        if ctx.must("CTRL-7", &what, r).is_none() {
            continue;
        }
        let m = maybe(
            &mut c,
            Duration::from_secs(1),
            |b| matches!(b, MsgBody::SessionClose { session_id, .. } if *session_id == id),
        )?;
        match &m {
            None => {
                ctx.check(
                    "CTRL-7",
                    false,
                    format!("close_session (14.3) closes session {id}: a SESSION_CLOSE"),
                    "nothing within 1 s",
                );
            }
            Some(Message {
                body: MsgBody::SessionClose { code, .. },
                ..
            }) if *code != expected => {
                // [SESS-21] is a SHOULD: reported, not judged.
                ctx.note(format!(
                    "SHOULD [SESS-21] not met: expected {what}, observed code {code}"
                ));
            }
            Some(_) => {}
        }
        // The session is closed: DATA for it is answered with UNKNOWN_SESSION.
        c.send_data(id, 1, b"after close", ChannelKind::Message)?;
        let e = maybe(&mut c, Duration::from_secs(1), |b| {
            matches!(b, MsgBody::Error { .. } | MsgBody::Data { .. })
        })?;
        ctx.check(
            "SESS-17",
            matches!(
                &e,
                Some(Message {
                    body: MsgBody::Error {
                        code: Code::UnknownSession,
                        ..
                    },
                    ..
                })
            ),
            format!("ERROR UNKNOWN_SESSION(17) for DATA on closed session {id}"),
            e.map_or("nothing within 1 s".to_string(), |m| {
                format!("{:?}", m.body)
            }),
        );
    }
    ctx.pass();
    Ok(())
}

fn dut_opened_sessions(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let peer = peer_id(&lt);
    let t = ctx.timeout();
    let stream = ctx.pics.get("SESS_STREAM");
    let kinds = [
        ChannelKind::Message,
        ChannelKind::Message,
        if stream {
            ChannelKind::Stream
        } else {
            ChannelKind::Message
        },
    ];
    let mut ids = Vec::new();
    for kind in kinds {
        ctx.upper()?.call(json!({"op": "open_session", "peer": peer, "service": "tester", "kind": kind_name(kind), "qos": "interactive"}))?;
        let m = c.expect(t, "SESSION_OPEN from the DUT", |b| {
            matches!(b, MsgBody::SessionOpen { .. })
        })?;
        if let MsgBody::SessionOpen {
            session_id,
            kind: k,
            ..
        } = m.body
        {
            ctx.check(
                "SESS-1",
                k == kind,
                format!("SESSION_OPEN of kind {kind:?} as asked"),
                format!("{k:?}"),
            );
            ids.push(session_id);
        }
    }
    let mut uniq = ids.clone();
    uniq.sort_unstable();
    uniq.dedup();
    ctx.check(
        "SESS-1",
        ids.iter().all(|i| i % 2 == 1) && uniq.len() == ids.len(),
        "distinct odd session IDs (the DUT responded to the tester's handshake)",
        format!("{ids:?}"),
    );
    let (s1, s2, s3) = (ids[0], ids[1], ids[2]);
    // No DATA before SESSION_ACCEPT: the DUT may refuse the send or hold it.
    let early = ctx
        .upper()?
        .call(json!({"op": "send", "peer": peer, "session_id": s1, "data_hex": "e0"}));
    ctx.note(format!("send before SESSION_ACCEPT answered {early:?}"));
    let mut seen = gather(&mut c, Duration::from_millis(300))?;
    let data_early: Vec<Message> = seen
        .iter()
        .filter(|m| matches!(m.body, MsgBody::Data { .. }))
        .cloned()
        .collect();
    ctx.check(
        "SESS-9",
        data_early.is_empty(),
        "no DATA on a session before the tester's SESSION_ACCEPT",
        describe(&data_early),
    );
    for id in &ids {
        c.send_reliable(MsgBody::SessionAccept {
            session_id: *id,
            max_message: 65_536,
        })?;
    }
    seen.extend(gather(&mut c, Duration::from_millis(100))?);
    for (i, text) in ["m1", "m2", "m3"].iter().enumerate() {
        let r = ctx.upper()?.call(
            json!({"op": "send", "peer": peer, "session_id": s1, "data_hex": hex::encode(text)}),
        );
        ctx.must(
            "SESS-10",
            &format!("the DUT sends message {} on an accepted session", i + 1),
            r,
        );
    }
    let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let r = ctx
        .upper()?
        .call(json!({"op": "send", "peer": peer, "session_id": s2, "data_hex": hex::encode(&big)}));
    ctx.must("SESS-10", "the DUT sends a 5000-byte message", r);
    if stream {
        let r = ctx
            .upper()?
            .call(json!({"op": "send", "peer": peer, "session_id": s3, "data_hex": "5354"}));
        ctx.must("SESS-12", "the DUT sends a message on a stream session", r);
    }
    let end = Instant::now() + t;
    let mut r1 = Reassembler::default();
    let mut got1 = Vec::new();
    // Messages on s1: "m1".."m3", possibly preceded by the early one if the DUT held it back.
    while got1.len() < 3 && Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        match r1.next(&mut c, s1, left) {
            Ok((id, d)) if d == [0xe0] && got1.is_empty() => ctx.note(format!(
                "the held-back message arrived as msg_id {id} after SESSION_ACCEPT"
            )),
            Ok(m) => got1.push(m),
            Err(StepError::Timeout(..)) => break,
            Err(e) => return Err(e),
        }
    }
    let texts: Vec<&[u8]> = got1.iter().map(|(_, d)| d.as_slice()).collect();
    ctx.check(
        "SESS-16",
        texts == [b"m1".as_slice(), b"m2", b"m3"],
        "messages m1, m2, m3 on the first session",
        format!("{texts:?}"),
    );
    let msg_ids: Vec<u32> = r1.frags.iter().map(|f| f.msg_id).collect();
    let from1 = msg_ids
        .iter()
        .enumerate()
        .all(|(i, id)| *id == i as u32 + 1);
    ctx.check(
        "SESS-10",
        from1,
        "msg_id 1, 2, 3, ... on the session",
        format!("{msg_ids:?}"),
    );
    let unreliable: Vec<&Frag> = r1.frags.iter().filter(|f| f.rseq == 0).collect();
    ctx.check(
        "SESS-12",
        unreliable.is_empty(),
        "DATA of a message session sent reliably (rseq > 0)",
        format!("{unreliable:?}"),
    );
    let mut r2 = Reassembler::default();
    if let Some((id, data)) = ctx.must(
        "SESS-10",
        "the 5000-byte message on the second session",
        r2.next(&mut c, s2, t),
    ) {
        ctx.check(
            "SESS-10",
            id == 1,
            "msg_id 1 for the first message of the session",
            id.to_string(),
        );
        ctx.check(
            "SESS-16",
            data == big,
            "the 5000-byte message intact",
            format!("{} bytes, equal: {}", data.len(), data == big),
        );
        if let Some(p) = fragment_problem(&r2.frags) {
            ctx.check(
                "SESS-11",
                false,
                "fragments numbered 0..frag_count-1, in order, with one frag_count",
                p,
            );
        }
        ctx.check(
            "SESS-10",
            r2.frags.len() > 1,
            "a 5000-byte message split into several fragments for a 1400-byte max_frame",
            format!("{} fragment(s)", r2.frags.len()),
        );
    }
    let largest = largest_frame(&c);
    ctx.check(
        "SESS-10",
        largest <= TESTER_MAX_FRAME,
        format!("every frame within the tester's max_frame {TESTER_MAX_FRAME}"),
        format!("a {largest}-byte frame"),
    );
    if stream {
        let m = maybe(
            &mut c,
            t,
            |b| matches!(b, MsgBody::Data { session_id, .. } if *session_id == s3),
        )?;
        match m {
            Some(m) => {
                ctx.check(
                    "SESS-12",
                    m.rseq == 0,
                    "DATA of a stream session sent unreliably (rseq 0)",
                    format!("rseq {}", m.rseq),
                );
            }
            None => {
                ctx.check("SESS-12", false, "DATA on the stream session", "nothing");
            }
        }
    }
    ctx.pass();
    Ok(())
}

fn ordered_through_echo(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let t = ctx.timeout();
    let n = 200u32;
    let sent: Vec<Vec<u8>> = (1..=n)
        .map(|i| {
            let mut p = format!("message {i:05} ").into_bytes();
            p.extend(std::iter::repeat_n(b'.', (i % 37) as usize * 9));
            p
        })
        .collect();
    for (i, p) in sent.iter().enumerate() {
        c.send_data(sid, i as u32 + 1, p, ChannelKind::Message)?;
    }
    let mut r = Reassembler::default();
    let mut got = Vec::new();
    for _ in 0..n {
        match r.next(&mut c, sid, t) {
            Ok(m) => got.push(m),
            Err(StepError::Timeout(..)) => break,
            Err(e) => return Err(e),
        }
    }
    let first_bad = sent.iter().zip(got.iter()).position(|(s, (_, g))| s != g);
    ctx.check(
        "SESS-16",
        got.len() == sent.len() && first_bad.is_none(),
        format!("{n} echoes, each equal to the message sent at its position"),
        match first_bad {
            Some(i) => format!("echo {} is {:?}", i + 1, String::from_utf8_lossy(&got[i].1)),
            None => format!("{} echoes", got.len()),
        },
    );
    let ids: Vec<u32> = got.iter().map(|(id, _)| *id).collect();
    let expected: Vec<u32> = (1..=got.len() as u32).collect();
    ctx.check(
        "SESS-10",
        ids == expected,
        "the echo numbers its messages 1, 2, 3, ...",
        format!(
            "first differing: {:?}",
            ids.iter().zip(&expected).find(|(a, b)| a != b)
        ),
    );
    // The sink reports what it receives.
    let Ok(sink) = c.open_session("sink", ChannelKind::Message, Qos::Interactive)? else {
        ctx.check(
            "SESS-22",
            false,
            "SESSION_ACCEPT for the sink service",
            "SESSION_REJECT",
        );
        ctx.pass();
        return Ok(());
    };
    let peer = peer_id(&lt);
    ctx.upper()?.skip_events()?;
    let msgs: Vec<String> = (1..=20).map(|i| format!("sink message {i}")).collect();
    for (i, m) in msgs.iter().enumerate() {
        c.send_data(sink, i as u32 + 1, m.as_bytes(), ChannelKind::Message)?;
    }
    let mut reported = Vec::new();
    let end = Instant::now() + t;
    while reported.len() < msgs.len() && Instant::now() < end {
        c.pump(Duration::from_millis(5))?;
        for e in ctx.upper()?.poll_events()? {
            if e["type"] == "message" && e["session_id"] == sink && e["peer"] == peer {
                let hexd = e["data"].as_str().unwrap_or("");
                reported.push(
                    String::from_utf8_lossy(&hex::decode(hexd).unwrap_or_default()).to_string(),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ctx.check(
        "SESS-22",
        reported == msgs,
        "a message event per message sent to sink, in order, with its data",
        format!(
            "{} events: {:?}",
            reported.len(),
            reported.iter().take(3).collect::<Vec<_>>()
        ),
    );
    ctx.pass();
    Ok(())
}

fn message_size_limit(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let t = ctx.timeout();
    // The limit is the max_message the DUT announced in SESSION_ACCEPT ([SESS-8] lets it pick
    // anything from 1024 to the kind's 65536).
    let limit = c.max_message(sid, ChannelKind::Message);
    ctx.note(format!(
        "max_message announced for the message session: {limit}"
    ));
    let at_limit = lt.random_bytes(limit);
    c.send_data(sid, 1, &at_limit, ChannelKind::Message)?;
    let echo = c.recv_data(sid, t);
    ctx.check(
        "SESS-16",
        echo.as_ref().is_ok_and(|e| *e == at_limit),
        format!("a {limit}-byte message (the limit) echoed intact"),
        match &echo {
            Ok(e) => format!("{} bytes, equal: {}", e.len(), *e == at_limit),
            Err(e) => e.to_string(),
        },
    );
    let over = lt.random_bytes(limit + 1);
    c.send_data(sid, 2, &over, ChannelKind::Message)?;
    let close = maybe(
        &mut c,
        Duration::from_secs(1),
        |b| matches!(b, MsgBody::SessionClose { session_id, .. } if *session_id == sid),
    )?;
    let echoed: Vec<Message> = c
        .inbox()
        .filter(|m| matches!(m.body, MsgBody::Data { session_id, .. } if session_id == sid))
        .cloned()
        .collect();
    ctx.check(
        "SESS-14",
        matches!(
            &close,
            Some(Message {
                body: MsgBody::SessionClose {
                    code: Code::MessageTooLarge,
                    ..
                },
                ..
            })
        ),
        format!(
            "SESSION_CLOSE MESSAGE_TOO_LARGE(8) for a {}-byte message on a message session",
            limit + 1
        ),
        match &close {
            Some(m) => format!("{:?}", m.body),
            None => format!(
                "no SESSION_CLOSE within 1 s; the DUT sent {}",
                describe(&echoed)
            ),
        },
    );
    if close.is_some() {
        c.send_data(sid, 3, b"after the close", ChannelKind::Message)?;
        let e = maybe(&mut c, Duration::from_secs(1), |b| {
            matches!(b, MsgBody::Error { .. })
        })?;
        ctx.check(
            "SESS-17",
            matches!(
                &e,
                Some(Message {
                    body: MsgBody::Error {
                        code: Code::UnknownSession,
                        ..
                    },
                    ..
                })
            ),
            "ERROR UNKNOWN_SESSION(17) for DATA on the session closed by the DUT",
            e.map_or("nothing within 1 s".to_string(), |m| {
                format!("{:?}", m.body)
            }),
        );
    }
    if ctx.pics.get("SESS_STREAM") {
        let Ok(st) = c.open_session("echo", ChannelKind::Stream, Qos::Interactive)? else {
            return Err(StepError::Unexpected(
                "preamble: stream session to echo rejected".into(),
            ));
        };
        let stream_limit = c.max_message(st, ChannelKind::Stream);
        let over = lt.random_bytes(stream_limit + 1);
        c.send_data(st, 1, &over, ChannelKind::Stream)?;
        let close = maybe(
            &mut c,
            Duration::from_secs(1),
            |b| matches!(b, MsgBody::SessionClose { session_id, .. } if *session_id == st),
        )?;
        ctx.check(
            "SESS-14",
            matches!(
                &close,
                Some(Message {
                    body: MsgBody::SessionClose {
                        code: Code::MessageTooLarge,
                        ..
                    },
                    ..
                })
            ),
            format!(
                "SESSION_CLOSE MESSAGE_TOO_LARGE(8) for a {}-byte message on a stream session",
                stream_limit + 1
            ),
            close.map_or("no SESSION_CLOSE within 1 s".to_string(), |m| {
                format!("{:?}", m.body)
            }),
        );
    }
    ctx.pass();
    Ok(())
}

fn bad_fragments_close(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    // (what, fragments as (msg_id, frag_index, frag_count))
    type Frags = &'static [(u32, u16, u16)];
    let variants: [(&str, Frags); 4] = [
        (
            "a fragment of another msg_id before the message is complete",
            &[(1, 0, 2), (2, 0, 1)],
        ),
        (
            "a fragment with another frag_count",
            &[(1, 0, 3), (1, 1, 2)],
        ),
        (
            "a fragment that skips a frag_index",
            &[(1, 0, 3), (1, 2, 3)],
        ),
        (
            "a fragment that repeats a frag_index",
            &[(1, 0, 3), (1, 1, 3), (1, 1, 3)],
        ),
    ];
    let mut id = RAW_ID_BASE;
    for (what, frags) in variants {
        id += 2;
        match open_raw(&mut c, id, "echo", ChannelKind::Message, t)? {
            (MsgBody::SessionAccept { .. }, _) => {}
            (other, _) => {
                return Err(StepError::Unexpected(format!(
                    "preamble: session to echo not accepted: {other:?}"
                )))
            }
        }
        for &(msg_id, frag_index, frag_count) in frags {
            c.send_reliable(MsgBody::Data {
                session_id: id,
                msg_id,
                frag_index,
                frag_count,
                payload: vec![0x42; 100],
            })?;
        }
        let got = gather(&mut c, Duration::from_millis(700))?;
        let closed = got
            .iter()
            .any(|m| matches!(m.body, MsgBody::SessionClose { session_id, code: Code::MessageTooLarge } if session_id == id));
        let relevant: Vec<Message> = got
            .into_iter()
            .filter(|m| match &m.body {
                MsgBody::SessionClose { session_id, .. } | MsgBody::Data { session_id, .. } => {
                    *session_id == id
                }
                MsgBody::Error { .. } => true,
                _ => false,
            })
            .collect();
        ctx.check(
            "SESS-15",
            closed,
            format!("SESSION_CLOSE MESSAGE_TOO_LARGE(8) after {what}"),
            describe(&relevant),
        );
    }
    ctx.pass();
    Ok(())
}

fn data_for_unknown_session(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    let expect_unknown = |c: &mut SecureConn| {
        maybe(c, Duration::from_secs(1), |b| {
            matches!(b, MsgBody::Error { .. } | MsgBody::Data { .. })
        })
    };
    let judge = |ctx: &mut Ctx<'_>, what: &str, m: Option<Message>| {
        ctx.check(
            "SESS-17",
            matches!(
                &m,
                Some(Message {
                    body: MsgBody::Error {
                        code: Code::UnknownSession,
                        offending: 0x14
                    },
                    ..
                })
            ),
            format!("ERROR UNKNOWN_SESSION(17) for DATA (0x14) {what}"),
            m.map_or("nothing within 1 s".to_string(), |m| {
                format!("{:?}", m.body)
            }),
        );
    };
    // Never opened.
    c.send_data(RAW_ID_BASE + 200, 1, b"nobody home", ChannelKind::Message)?;
    let m = expect_unknown(&mut c)?;
    judge(ctx, "on a session never opened", m);
    // Closed by the tester.
    let id = RAW_ID_BASE + 2;
    open_raw(&mut c, id, "echo", ChannelKind::Message, t)?;
    c.send_reliable(MsgBody::SessionClose {
        session_id: id,
        code: Code::NormalClose,
    })?;
    c.send_data(id, 1, b"closed", ChannelKind::Message)?;
    let m = expect_unknown(&mut c)?;
    judge(ctx, "on a session the tester closed", m);
    // Rejected.
    let id = RAW_ID_BASE + 4;
    open_raw(&mut c, id, "no-such-service", ChannelKind::Message, t)?;
    c.send_data(id, 1, b"rejected", ChannelKind::Message)?;
    let m = expect_unknown(&mut c)?;
    judge(ctx, "on a session the DUT rejected", m);
    // Still being opened: the DUT opened it and the tester has not accepted it yet.
    let peer = peer_id(&lt);
    ctx.upper()?.call(
        json!({"op": "open_session", "peer": peer, "service": "tester", "kind": "message"}),
    )?;
    let m = c.expect(t, "SESSION_OPEN from the DUT", |b| {
        matches!(b, MsgBody::SessionOpen { .. })
    })?;
    if let MsgBody::SessionOpen { session_id, .. } = m.body {
        c.send_data(session_id, 1, b"too early", ChannelKind::Message)?;
        let m = expect_unknown(&mut c)?;
        judge(ctx, "on a session the DUT is still opening", m);
    }
    ctx.pass();
    Ok(())
}

fn bytes_one_mib(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut lt, mut c, sid) = ctx.session("echo", ChannelKind::Bytes)?;
    let t = ctx.timeout();
    let size = c.max_message(sid, ChannelKind::Bytes).min(1 << 20);
    let data = lt.random_bytes(size);
    let started = Instant::now();
    c.send_data(sid, 1, &data, ChannelKind::Bytes)?;
    let mut r = Reassembler::default();
    let got = r.next(&mut c, sid, t * 4);
    ctx.note(format!(
        "{size}-byte round trip through echo took {:?}",
        started.elapsed()
    ));
    let Some((msg_id, echo)) = ctx.must("SESS-16", &format!("the {size}-byte message echoed"), got)
    else {
        ctx.pass();
        return Ok(());
    };
    let diff = echo.iter().zip(&data).position(|(a, b)| a != b);
    ctx.check(
        "SESS-16",
        echo.len() == data.len() && diff.is_none(),
        format!("the {size}-byte message back intact"),
        format!("{} bytes, first difference at {diff:?}", echo.len()),
    );
    ctx.check(
        "SESS-10",
        msg_id == 1,
        "msg_id 1 for the first message of the session",
        msg_id.to_string(),
    );
    if let Some(p) = fragment_problem(&r.frags) {
        ctx.check(
            "SESS-11",
            false,
            "fragments numbered 0..frag_count-1, in order, with one frag_count",
            p,
        );
    }
    let unreliable = r.frags.iter().filter(|f| f.rseq == 0).count();
    ctx.check(
        "SESS-12",
        unreliable == 0,
        "DATA of a bytes session sent reliably (rseq > 0)",
        format!("{unreliable} fragments with rseq 0"),
    );
    let largest = largest_frame(&c);
    ctx.check(
        "SESS-10",
        largest <= TESTER_MAX_FRAME,
        format!("every frame within the tester's max_frame {TESTER_MAX_FRAME}"),
        format!("a {largest}-byte frame"),
    );
    ctx.note(format!(
        "{} fragments, largest frame {largest} bytes",
        r.frags.len()
    ));
    ctx.pass();
    Ok(())
}

fn stream_latest_wins(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c, sid) = ctx.session("echo", ChannelKind::Stream)?;
    let t = ctx.timeout();
    let payload = |n: u32| format!("stream message {n} / padding to split in two").into_bytes();
    let send = |c: &mut SecureConn, msg_id: u32, index: u16, count: u16| -> Result<(), StepError> {
        let p = payload(msg_id);
        let half = p.len() / 2;
        let part = match (count, index) {
            (1, _) => p,
            (_, 0) => p[..half].to_vec(),
            _ => p[half..].to_vec(),
        };
        c.send(
            MsgBody::Data {
                session_id: sid,
                msg_id,
                frag_index: index,
                frag_count: count,
                payload: part,
            },
            false,
        )
        .map(|_| ())
    };
    let mut echoes: Vec<Message> = Vec::new();
    let wait_echo = |c: &mut SecureConn,
                     n: u32,
                     dur: Duration,
                     echoes: &mut Vec<Message>|
     -> Result<bool, StepError> {
        let want = payload(n);
        let m = maybe(
            c,
            dur,
            |b| matches!(b, MsgBody::Data { session_id, payload, .. } if *session_id == sid && *payload == want),
        )?;
        let hit = m.is_some();
        echoes.extend(m);
        Ok(hit)
    };
    send(&mut c, 5, 0, 1)?;
    let ok5 = wait_echo(&mut c, 5, t, &mut echoes)?;
    ctx.check(
        "SESS-18",
        ok5,
        "message 5 (the first) echoed on the stream session",
        "no echo",
    );
    send(&mut c, 3, 0, 1)?;
    let got3 = wait_echo(&mut c, 3, Duration::from_millis(300), &mut echoes)?;
    ctx.check(
        "SESS-18",
        !got3,
        "message 3, older than the delivered 5, not delivered",
        "message 3 echoed",
    );
    // Fragments in reverse order, one repeated.
    send(&mut c, 6, 1, 2)?;
    send(&mut c, 6, 1, 2)?;
    send(&mut c, 6, 0, 2)?;
    // [SESS-19] is a SHOULD: reported, not judged.
    let ok6 = wait_echo(&mut c, 6, Duration::from_secs(1), &mut echoes)?;
    if !ok6 {
        ctx.note("SHOULD [SESS-19] not met: message 6, whose fragments came in reverse order with one repeated, was not delivered");
    }
    let again6 = wait_echo(&mut c, 6, Duration::from_millis(200), &mut echoes)?;
    ctx.check(
        "SESS-18",
        !again6,
        "message 6 delivered once (a repeat is not newer than the last delivered)",
        "echoed twice",
    );
    // An incomplete message overtaken by a newer one is discarded.
    send(&mut c, 7, 0, 2)?;
    send(&mut c, 8, 0, 1)?;
    let ok8 = wait_echo(&mut c, 8, t, &mut echoes)?;
    ctx.check("SESS-18", ok8, "message 8 echoed", "no echo");
    send(&mut c, 7, 1, 2)?;
    let got7 = wait_echo(&mut c, 7, Duration::from_millis(300), &mut echoes)?;
    ctx.check(
        "SESS-18",
        !got7,
        "message 7, completed after 8 was delivered, not delivered",
        "message 7 echoed",
    );
    let reliable: Vec<&Message> = echoes.iter().filter(|m| m.rseq != 0).collect();
    ctx.check(
        "SESS-12",
        reliable.is_empty(),
        "stream DATA sent unreliably (rseq 0)",
        format!("{} echoes with rseq > 0", reliable.len()),
    );
    let ids: Vec<u32> = echoes
        .iter()
        .filter_map(|m| match m.body {
            MsgBody::Data { msg_id, .. } => Some(msg_id),
            _ => None,
        })
        .collect();
    ctx.check(
        "SESS-10",
        ids.windows(2).all(|w| w[0] < w[1]),
        "the echo's msg_ids increasing",
        format!("{ids:?}"),
    );
    ctx.pass();
    Ok(())
}

fn malformed_open_rejected(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    // (what, kind, qos, service bytes)
    let long = vec![b'e'; 65];
    let variants: [(&str, u8, u8, &[u8]); 5] = [
        ("kind 0", 0, 1, b"echo"),
        ("kind 4", 4, 1, b"echo"),
        ("qos 4", 1, 4, b"echo"),
        ("service_len 0", 1, 1, b""),
        ("service_len 65", 1, 1, &long),
    ];
    let mut id = RAW_ID_BASE;
    for (what, kind, qos, service) in variants {
        id += 2;
        let rseq = c.next_rseq;
        c.next_rseq += 1;
        let mut pt = vec![0x10];
        pt.extend_from_slice(&rseq.to_be_bytes());
        pt.extend_from_slice(&id.to_be_bytes());
        pt.extend_from_slice(&[kind, qos, service.len() as u8]);
        pt.extend_from_slice(service);
        send_plaintext(&mut c, &pt)?;
        let got: Vec<Message> = c
            .collect(Duration::from_millis(600))?
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        let acked = got
            .iter()
            .any(|m| matches!(m.body, MsgBody::Ack { next_expected } if next_expected > rseq));
        let error = got.iter().any(|m| {
            matches!(
                m.body,
                MsgBody::Error {
                    code: Code::Malformed,
                    offending: 0x10
                }
            )
        });
        let relevant: Vec<Message> = got
            .into_iter()
            .filter(|m| {
                matches!(
                    m.body,
                    MsgBody::SessionReject { .. }
                        | MsgBody::SessionAccept { .. }
                        | MsgBody::Error { .. }
                )
            })
            .collect();
        let answered = relevant
            .iter()
            .any(|m| matches!(m.body, MsgBody::SessionAccept { session_id, .. } | MsgBody::SessionReject { session_id, .. } if session_id == id));
        ctx.check(
            "ERR-3",
            error,
            format!("ERROR MALFORMED(2) for SESSION_OPEN (0x10) with {what}"),
            describe(&relevant),
        );
        ctx.check(
            "SESS-4",
            acked,
            format!("the SESSION_OPEN with {what} acknowledged (rseq {rseq})"),
            "no ACK covering it",
        );
        ctx.check(
            "SESS-4",
            !answered,
            format!("no SESSION_ACCEPT or SESSION_REJECT for a SESSION_OPEN with {what}"),
            describe(&relevant),
        );
        // No session was opened for it.
        c.send_data(id, 1, b"x", ChannelKind::Message)?;
        let e = maybe(&mut c, Duration::from_secs(1), |b| {
            matches!(b, MsgBody::Error { .. } | MsgBody::Data { .. })
        })?;
        ctx.check(
            "SESS-4",
            matches!(&e, Some(Message { body: MsgBody::Error { code: Code::UnknownSession, .. }, .. })),
            format!("no session opened for a SESSION_OPEN with {what}: DATA on it answered UNKNOWN_SESSION"),
            e.map_or("nothing within 1 s".to_string(), |m| format!("{:?}", m.body)),
        );
    }
    ctx.pass();
    Ok(())
}

fn respects_peer_max_message(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let peer = peer_id(&lt);
    let t = ctx.timeout();
    ctx.upper()?.call(json!({"op": "open_session", "peer": peer, "service": "tester", "kind": "message", "qos": "interactive"}))?;
    let m = c.expect(t, "SESSION_OPEN from the DUT", |b| {
        matches!(b, MsgBody::SessionOpen { .. })
    })?;
    let MsgBody::SessionOpen {
        session_id: sid, ..
    } = m.body
    else {
        return Err(StepError::Unexpected("not a SESSION_OPEN".into()));
    };
    c.send_reliable(MsgBody::SessionAccept {
        session_id: sid,
        max_message: 1024,
    })?;
    gather(&mut c, Duration::from_millis(100))?;
    let small = vec![0x11u8; 1000];
    ctx.upper()?.call(
        json!({"op": "send", "peer": peer, "session_id": sid, "data_hex": hex::encode(&small)}),
    )?;
    let got = c.recv_data(sid, t)?;
    ctx.note(format!("a 1000-byte message arrived ({} bytes)", got.len()));
    let r = ctx.upper()?.raw(json!({"op": "send", "peer": peer, "session_id": sid, "data_hex": hex::encode(vec![0x22u8; 2000])}));
    ctx.note(format!("send of 2000 bytes answered {r:?}"));
    let data: Vec<Message> = gather(&mut c, T_RESP)?
        .into_iter()
        .filter(|m| matches!(m.body, MsgBody::Data { session_id, .. } if session_id == sid))
        .collect();
    let bytes: usize = data
        .iter()
        .map(|m| match &m.body {
            MsgBody::Data { payload, .. } => payload.len(),
            _ => 0,
        })
        .sum();
    ctx.check(
        "SESS-13",
        bytes <= 1024,
        "no message above the max_message 1024 the tester announced in SESSION_ACCEPT",
        format!("{} DATA carrying {bytes} bytes", data.len()),
    );
    ctx.pass();
    Ok(())
}
