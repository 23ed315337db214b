//! Section 12, liveness: heartbeats, loss detection, device loss, changing links and CLOSE.
//!
//! > [LIVE-1] A device that has sent no RECORD on a connection for its hb_interval_ms MUST send a
//! > RECORD carrying a HEARTBEAT at a time `t` with `last + hb <= t <= last + 1.1 × hb + 50 ms`,
//! > where `last` is the time it sent its previous RECORD on that connection and `hb` its
//! > hb_interval_ms.
//! >
//! > [LIVE-2] A device MUST declare a connection's peer lost when, and only when, it has received
//! > no authenticated RECORD on the connection for 3 × the peer's hb_interval_ms, doing so no
//! > later than 3 × hb_interval_ms + 500 ms after the last one.
//! >
//! > [LIVE-5] A device that loses a connection MUST report a `disconnected` event with code
//! > PEER_LOST and a `peer_lost` event naming the peer.
//!
//! (and LIVE-3, 4, 7–9, PERM-11: see each case's requirement list.)
//!
//! The lower tester announces hb_interval_ms 1000 in its HELLO, so the DUT must declare it lost
//! between 3 s and 3.5 s after its last authenticated record. Times are measured at the tester;
//! loss is observed by polling the control channel, and each bound is judged only where the
//! polling brackets the DUT's decision with certainty.

use std::time::{Duration, Instant};

use serde_json::Value;
use softbus::wire::msg::{ChannelKind, Message, MsgBody, Qos, Scope};
use softbus::wire::Code;

use crate::case::{Case, Ctx};
use crate::cases::sess::Reassembler;
use crate::cases::steps::{
    brief, connected_to, describe, ev_type, gather, grants_issued, is_disconnected, is_peer_lost,
    is_session_closed, maybe, peer_id, T_RESP,
};
use crate::tester::lower::{SecureConn, StepError};

/// The hb_interval_ms the lower tester announces in its HELLO (`LowerTester::handshake_with`).
const TESTER_HB: Duration = Duration::from_millis(1000);

/// Extra time the DUT has to declare loss (LIVE-2).
const LOSS_SLACK: Duration = Duration::from_millis(500);

/// Measurement tolerance on heartbeat gaps (receive-time jitter at the tester).
const JITTER: Duration = Duration::from_millis(10);

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-LIVE-001",
            title: "sends a HEARTBEAT after each hb_interval_ms without records, within 1.1 × hb + 50 ms",
            requirements: &["LIVE-1"],
            pics: "LIVE_HEARTBEAT",
            pixit: &["heartbeat_interval_ms"],
            transport: "udp",
            run: heartbeats,
        },
        Case {
            id: "SB-LIVE-002",
            title: "declares a silent peer lost between 3 × its hb_interval_ms and 500 ms later, closing its sessions with PEER_LOST",
            requirements: &["LIVE-2", "LIVE-4", "LIVE-5", "PERM-11"],
            pics: "LIVE_HEARTBEAT",
            pixit: &[],
            transport: "udp",
            run: silent_peer_lost,
        },
        Case {
            id: "SB-LIVE-003",
            title: "keeps a peer that sends authenticated records, and loses it despite forged and replayed ones",
            requirements: &["LIVE-2", "LIVE-3"],
            pics: "LIVE_HEARTBEAT",
            pixit: &[],
            transport: "udp",
            run: only_authentic_records_count,
        },
        Case {
            id: "SB-LIVE-004",
            title: "discards a connection on an authenticated CLOSE, closing its sessions with the CLOSE's code",
            requirements: &["LIVE-9"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: close_discards,
        },
        Case {
            id: "SB-LIVE-005",
            title: "follows the peer to a new address and delivers every reliable message once, in order, across the move",
            requirements: &["LIVE-7", "LIVE-8"],
            pics: "SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: follows_new_address,
        },
    ]
}

/// When the DUT was seen to declare `peer` lost, by polling its events and state until
/// `deadline`. Returns the observations and every event seen.
struct LossWatch {
    /// Send time of the last poll that still saw the connection (the DUT decided after it).
    last_alive_poll: Option<Instant>,
    /// Receive time of the first poll that saw the loss (the DUT decided before it).
    first_lost_seen: Option<Instant>,
    /// Whether a `peer_lost` event naming the peer was reported.
    event: bool,
    events: Vec<Value>,
}

fn watch_loss(
    ctx: &mut Ctx<'_>,
    peer: &str,
    deadline: Instant,
    mut between: impl FnMut() -> Result<(), StepError>,
) -> Result<LossWatch, StepError> {
    let mut w = LossWatch {
        last_alive_poll: None,
        first_lost_seen: None,
        event: false,
        events: Vec::new(),
    };
    while Instant::now() < deadline {
        between()?;
        let sent = Instant::now();
        let evs = ctx.upper()?.poll_events()?;
        let st = ctx.upper()?.state()?;
        let seen = Instant::now();
        let lost_event = evs.iter().any(|e| is_peer_lost(e, peer));
        w.event |= lost_event;
        w.events.extend(evs);
        if lost_event || !connected_to(&st, peer) {
            w.first_lost_seen = Some(seen);
            break;
        }
        w.last_alive_poll = Some(sent);
        std::thread::sleep(Duration::from_millis(20));
    }
    if w.first_lost_seen.is_some() && !w.event {
        // The state dropped the connection; the event may follow at once.
        std::thread::sleep(Duration::from_millis(50));
        let evs = ctx.upper()?.poll_events()?;
        w.event = evs.iter().any(|e| is_peer_lost(e, peer));
        w.events.extend(evs);
    }
    Ok(w)
}

fn heartbeats(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    let hb = Duration::from_millis(u64::from(c.dut_hello.hb_ms));
    if u64::from(c.dut_hello.hb_ms) != ctx.pixit.heartbeat_interval_ms {
        ctx.note(format!(
            "the DUT's HELLO announces hb_interval_ms {} (PIXIT says {})",
            c.dut_hello.hb_ms, ctx.pixit.heartbeat_interval_ms
        ));
    }
    // Long enough for several intervals, well inside the 3 s after which the DUT loses a silent
    // tester.
    let window = (hb * 10).clamp(Duration::from_millis(1500), Duration::from_millis(2500));
    let started = Instant::now();
    let got = c.collect(window)?;
    let end = Instant::now();
    let times: Vec<Instant> = got.iter().map(|(t, _)| *t).collect();
    let beats = got
        .iter()
        .filter(|(_, m)| matches!(m.body, MsgBody::Heartbeat))
        .count();
    let expected_min =
        (window.as_millis() / (hb.as_millis() * 11 / 10 + 50)).saturating_sub(1) as usize;
    ctx.note(format!(
        "{} records ({beats} heartbeats) in {window:?} with hb {hb:?}",
        got.len()
    ));
    let upper = hb * 11 / 10 + Duration::from_millis(50);
    ctx.check(
        "LIVE-1",
        beats >= expected_min.max(1),
        format!(
            "at least {} HEARTBEATs in {window:?} of tester silence (hb_interval_ms {})",
            expected_min.max(1),
            hb.as_millis()
        ),
        format!("{beats}"),
    );
    let mut prev = None;
    for t in times.iter().copied() {
        if let Some(p) = prev {
            let gap: Duration = t.duration_since(p);
            if gap + JITTER < hb {
                ctx.check(
                    "LIVE-1",
                    false,
                    format!(
                        "records at least hb_interval_ms {hb:?} apart while nothing else is sent"
                    ),
                    format!("a gap of {gap:?}"),
                );
                break;
            }
            if gap > upper + JITTER {
                ctx.check("LIVE-1", false, format!("a HEARTBEAT no later than 1.1 × hb + 50 ms = {upper:?} after the previous record"), format!("a gap of {gap:?}"));
                break;
            }
        }
        prev = Some(t);
    }
    let tail = end.duration_since(prev.unwrap_or(started));
    ctx.check(
        "LIVE-1",
        tail <= upper + JITTER,
        format!("a HEARTBEAT no later than {upper:?} after the previous record"),
        format!("nothing for the last {tail:?} of the window"),
    );
    ctx.pass();
    Ok(())
}

fn silent_peer_lost(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let peer = peer_id(&lt);
    let t = ctx.timeout();
    let Ok(sid) = c.open_session("echo", ChannelKind::Message, Qos::Interactive)? else {
        return Err(StepError::Unexpected(
            "preamble: session to echo rejected".into(),
        ));
    };
    let grant = if ctx.pics.get("PERM_SCOPE_SESSION") {
        let caps = crate::cases::cap::capabilities(&mut c, t)?;
        match caps.first() {
            Some(cap) => {
                let (_, g, _) = c.request_permission(&cap.name, Scope::Session, 0, t)?;
                (g != 0).then_some(g)
            }
            None => None,
        }
    } else {
        None
    };
    gather(&mut c, Duration::from_millis(50))?;
    ctx.upper()?.skip_events()?;
    // The last authenticated record; the tester is silent from here on.
    c.send(MsgBody::Heartbeat, false)?;
    let t0 = Instant::now();
    let w = watch_loss(
        ctx,
        &peer,
        t0 + TESTER_HB * 3 + LOSS_SLACK + Duration::from_secs(1),
        || Ok(()),
    )?;
    let bound = TESTER_HB * 3 + LOSS_SLACK;
    match w.first_lost_seen {
        None => {
            ctx.check(
                "LIVE-2",
                false,
                format!(
                    "the tester declared lost within 3 × {TESTER_HB:?} + 500 ms of its last record"
                ),
                format!("still connected {:?} later", t0.elapsed()),
            );
        }
        Some(seen) => {
            let decided_by = seen.duration_since(t0);
            ctx.note(format!(
                "loss seen {decided_by:?} after the last record (last poll still connected: {:?})",
                w.last_alive_poll.map(|p| p.duration_since(t0))
            ));
            ctx.check(
                "LIVE-2",
                decided_by >= TESTER_HB * 3,
                format!(
                    "no loss before 3 × the tester's hb_interval_ms = {:?}",
                    TESTER_HB * 3
                ),
                format!("lost by {decided_by:?}"),
            );
            if let Some(alive) = w.last_alive_poll {
                let alive_at = alive.duration_since(t0);
                ctx.check(
                    "LIVE-2",
                    alive_at <= bound,
                    format!("the tester declared lost within {bound:?} of its last record"),
                    format!("still connected at {alive_at:?}"),
                );
            }
        }
    }
    let mut evs = w.events.clone();
    if !evs
        .iter()
        .any(|e| is_session_closed(e, &peer, sid, Code::PeerLost))
        || !evs
            .iter()
            .any(|e| is_disconnected(e, &peer, Code::PeerLost))
    {
        std::thread::sleep(Duration::from_millis(50));
        evs.extend(ctx.upper()?.poll_events()?);
    }
    ctx.check(
        "LIVE-5",
        w.event,
        format!("a peer_lost event naming {peer}"),
        brief(&evs),
    );
    ctx.check(
        "LIVE-5",
        evs.iter()
            .any(|e| is_disconnected(e, &peer, Code::PeerLost)),
        format!("a disconnected event for {peer} with code PEER_LOST"),
        brief(&evs),
    );
    // The sessions closed with PEER_LOST.
    ctx.check(
        "LIVE-4",
        evs.iter()
            .any(|e| is_session_closed(e, &peer, sid, Code::PeerLost)),
        format!("a session_closed event for session {sid} with code PEER_LOST"),
        brief(&evs),
    );
    let st = ctx.upper()?.state()?;
    if let Some(g) = grant {
        let gs = grants_issued(&st);
        ctx.check(
            "PERM-11",
            !gs.iter().any(|x| x["grant_id"] == g),
            format!("the session grant {g} ended (gone from state) with the lost connection"),
            format!("{gs:?}"),
        );
    }
    ctx.pass();
    Ok(())
}

fn only_authentic_records_count(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let peer = peer_id(&lt);
    ctx.upper()?.skip_events()?;
    // Kept alive by heartbeats every half interval, past the 3-interval loss timeout.
    let replayable = c.seal(&Message {
        rseq: 0,
        body: MsgBody::Heartbeat,
    });
    c.send_raw(&replayable)?;
    c.idle(TESTER_HB * 3 + Duration::from_millis(400), TESTER_HB / 2)?;
    let evs = ctx.upper()?.poll_events()?;
    let st = ctx.upper()?.state()?;
    ctx.check(
        "LIVE-2",
        connected_to(&st, &peer) && !evs.iter().any(|e| is_peer_lost(e, &peer)),
        format!(
            "the tester, sending a HEARTBEAT every {:?}, still connected after {:?}",
            TESTER_HB / 2,
            TESTER_HB * 3 + Duration::from_millis(400)
        ),
        format!(
            "state lists it: {}; events {}",
            connected_to(&st, &peer),
            brief(&evs)
        ),
    );
    // From here only forged and replayed records: they must not delay the loss.
    c.send(MsgBody::Heartbeat, false)?;
    let t0 = Instant::now();
    let forge = |c: &mut SecureConn| -> Result<(), StepError> {
        let mut f = c.seal(&Message {
            rseq: 0,
            body: MsgBody::Heartbeat,
        });
        if let Some(b) = f.last_mut() {
            *b ^= 0x80; // breaks the tag
        }
        c.send_raw(&f)?;
        c.send_raw(&replayable)
    };
    let mut last_forge = Instant::now();
    let bound = TESTER_HB * 3 + LOSS_SLACK;
    let w = watch_loss(ctx, &peer, t0 + bound + Duration::from_secs(1), || {
        if last_forge.elapsed() >= Duration::from_millis(100) {
            last_forge = Instant::now();
            forge(&mut c)?;
        }
        Ok(())
    })?;
    match (w.first_lost_seen, w.last_alive_poll) {
        (None, _) => {
            ctx.check("LIVE-3", false, format!("the tester declared lost within {bound:?} of its last authentic record despite forged and replayed ones"), "never");
        }
        (Some(_), Some(alive)) => {
            let alive_at = alive.duration_since(t0);
            ctx.check(
                "LIVE-3",
                alive_at <= bound,
                format!("the tester declared lost within {bound:?} of its last authentic record despite forged and replayed ones"),
                format!("still connected at {alive_at:?}"),
            );
        }
        (Some(_), None) => {}
    }
    ctx.pass();
    Ok(())
}

fn close_discards(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let peer = peer_id(&lt);
    let Ok(sid) = c.open_session("echo", ChannelKind::Message, Qos::Interactive)? else {
        return Err(StepError::Unexpected(
            "preamble: session to echo rejected".into(),
        ));
    };
    gather(&mut c, Duration::from_millis(50))?;
    ctx.upper()?.skip_events()?;
    let code = Code::Internal;
    c.send(
        MsgBody::Close {
            code,
            reason: "conformance".into(),
        },
        false,
    )?;
    let mut evs = Vec::new();
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        evs.extend(ctx.upper()?.poll_events()?);
        if evs
            .iter()
            .any(|e| ev_type(e) == "session_closed" && e["session_id"] == sid)
            && evs.iter().any(|e| ev_type(e) == "disconnected")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ctx.check(
        "LIVE-9",
        evs.iter().any(|e| is_session_closed(e, &peer, sid, code)),
        format!(
            "a session_closed event for session {sid} with the CLOSE's code {}",
            code.name()
        ),
        brief(&evs),
    );
    ctx.check(
        "LIVE-9",
        evs.iter().any(|e| is_disconnected(e, &peer, code)),
        format!(
            "a disconnected event for {peer} with the CLOSE's code {}",
            code.name()
        ),
        brief(&evs),
    );
    let st = ctx.upper()?.state()?;
    ctx.check(
        "LIVE-9",
        !connected_to(&st, &peer),
        "the connection gone from state after CLOSE",
        format!("{}", st["peers"]),
    );
    // Records on the discarded connection are not processed.
    c.send_reliable(MsgBody::CapQuery { req_id: 0xc105e })?;
    let answer = maybe(&mut c, T_RESP, |b| !matches!(b, MsgBody::Heartbeat))?;
    ctx.check(
        "LIVE-9",
        answer.is_none(),
        "no answer on the discarded connection",
        answer.map_or(String::new(), |m| format!("{:?}", m.body)),
    );
    ctx.pass();
    Ok(())
}

fn follows_new_address(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let t = ctx.timeout();
    let msgs: Vec<Vec<u8>> = (1..=20)
        .map(|i| format!("moving message {i:02}").into_bytes())
        .collect();
    // Half sent from the old address; their echoes go there and are never read or acknowledged.
    for (i, m) in msgs[..10].iter().enumerate() {
        c.send_data(sid, i as u32 + 1, m, ChannelKind::Message)?;
    }
    std::thread::sleep(Duration::from_millis(50));
    let new_addr = c.rebind(ctx.local)?;
    ctx.note(format!("the tester moved to {new_addr}"));
    for (i, m) in msgs[10..].iter().enumerate() {
        c.send_data(sid, i as u32 + 11, m, ChannelKind::Message)?;
    }
    // The first answer on the new address must come quickly: anything the DUT sends now goes
    // there (retransmissions of the lost echoes included).
    let first = maybe(&mut c, T_RESP, |b| matches!(b, MsgBody::Ack { .. }))?;
    ctx.check(
        "LIVE-7",
        first.is_some(),
        "frames sent to the tester's new address once it sent authenticated records from there",
        "nothing arrived there within 500 ms",
    );
    let mut r = Reassembler::default();
    let mut got = Vec::new();
    while got.len() < msgs.len() {
        match r.next(&mut c, sid, t) {
            Ok((_, d)) => got.push(d),
            Err(StepError::Timeout(..)) => break,
            Err(e) => return Err(e),
        }
    }
    ctx.check(
        "LIVE-8",
        got == msgs,
        "all 20 echoes, in order and once, on the new address",
        format!(
            "{} echoes; first: {:?}",
            got.len(),
            got.first().map(|d| String::from_utf8_lossy(d).to_string())
        ),
    );
    let stray = gather(&mut c, Duration::from_millis(200))?;
    let dup: Vec<Message> = stray
        .into_iter()
        .filter(|m| matches!(m.body, MsgBody::Data { .. }))
        .collect();
    ctx.check(
        "LIVE-8",
        dup.is_empty(),
        "no message delivered twice",
        describe(&dup),
    );
    ctx.pass();
    Ok(())
}
