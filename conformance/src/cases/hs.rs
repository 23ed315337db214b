//! Section 6, the Noise XX handshake (and the version binding of 2.3 and 2.6).
//!
//! > [HS-3] A responder MUST answer a well-formed HANDSHAKE_1 within 500 ms (T_RESP) with a
//! > HANDSHAKE_2 whose header conn_id is the initiator's sender conn_id, whose sender conn_id is
//! > the responder's own connection ID, and whose Noise payload is the responder's HELLO.
//! >
//! > [HS-4] A device MUST use a fresh ephemeral key in every handshake, so that no two
//! > HANDSHAKE_1 or HANDSHAKE_2 frames it sends for different handshakes carry the same ephemeral
//! > public key.
//! >
//! > [HS-6] A responder that processes a HANDSHAKE_3 with a valid HELLO and an initiator static
//! > key that is not pinned MUST send HANDSHAKE_REJECT with code UNKNOWN_PEER (4) and header
//! > conn_id equal to the initiator's connection ID, and discard the handshake.
//! >
//! > [HS-10] On a datagram link, an initiator MUST retransmit HANDSHAKE_1, byte for byte, while
//! > awaiting HANDSHAKE_2, 500 ms after the first transmission and then after doubling intervals,
//! > at most 4 times, and fail the handshake (reporting code PEER_LOST) when the interval after
//! > the last transmission ends.
//! >
//! > [HS-12] A device MUST NOT send anything in response to a HANDSHAKE_2 or HANDSHAKE_3 whose
//! > Noise processing fails; a responder discards that handshake and counts `auth_failed`.
//! >
//! > [HS-17] An initiator MUST repeat its HANDSHAKE_3, byte for byte, together with each
//! > retransmission of reliable messages on the connection (section 8.3), until it has received
//! > an authenticated RECORD on the connection.
//! >
//! > [HS-18] A device MUST drop, without changing the state of any handshake or connection, a
//! > HANDSHAKE_2 whose header conn_id is not that of a handshake it initiated and that awaits
//! > HANDSHAKE_2, and a HANDSHAKE_3 whose header conn_id is not that of a handshake it responded
//! > to and that awaits HANDSHAKE_3.
//! >
//! > [FRAME-8] A receiver that gets a frame with a version byte other than `0x01` and frame type
//! > `0x10` (HANDSHAKE_1) MUST answer it with a version `0x01` HANDSHAKE_REJECT carrying code
//! > UNSUPPORTED_VERSION (3), whose header conn_id is the first four body bytes of the received
//! > frame read as a `u32`, or 0 when the body is shorter than four bytes.
//!
//! (and HS-1, 2, 5, 7, 14, 15, 16, REC-1, ERR-1: see each case's requirement list.) The SHOULDs
//! HS-9, HS-11, HS-13 and FRAME-10 are observed and logged, not judged; HS-8 is a MAY. The
//! DUT-initiated cases use the control operation `connect`, which a DUT answers at once (14.3),
//! and answer the DUT's handshake with the lower tester.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use softbus::wire::frame::{Body, Frame};
use softbus::wire::hello::Hello;
use softbus::wire::msg::{ChannelKind, Message, MsgBody, Qos};
use softbus::wire::Code;

use super::rec::{check_delta, gather, must_counters, opened, Echo, QUIET};
use super::steps::describe;
use crate::case::{Case, Ctx};
use crate::tester::lower::{AcceptOpts, Accepted, HsOpts, LowerTester, SecureConn, StepError};

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-HS-001",
            title: "answers HANDSHAKE_1 within 500 ms with its conn ID and HELLO, then confirms with a HEARTBEAT record",
            requirements: &["HS-1", "HS-3", "HS-7", "REC-1"],
            pics: "PAIR_PIN && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: responder_handshake,
        },
        Case {
            id: "SB-HS-002",
            title: "refuses an unpinned static key with HANDSHAKE_REJECT UNKNOWN_PEER and establishes nothing",
            requirements: &["HS-6", "HS-18"],
            pics: "PAIR_PIN",
            pixit: &["step_timeout_ms"],
            transport: "udp",
            run: unpinned_refused,
        },
        Case {
            id: "SB-HS-003",
            title: "discards a handshake whose HANDSHAKE_3 fails Noise processing, silently, counting auth_failed",
            requirements: &["HS-12", "HS-18", "ERR-6"],
            pics: "PAIR_PIN",
            pixit: &["pin"],
            transport: "udp",
            run: tampered_hs3,
        },
        Case {
            id: "SB-HS-004",
            title: "binds the version: a wrong prologue fails, another version's HANDSHAKE_1 gets UNSUPPORTED_VERSION",
            requirements: &["HS-1", "FRAME-8"],
            pics: "PAIR_PIN",
            pixit: &["pin"],
            transport: "udp",
            run: version_bound,
        },
        Case {
            id: "SB-HS-005",
            title: "uses a fresh ephemeral key in every handshake, as responder and as initiator",
            requirements: &["HS-4", "HS-2"],
            pics: "PAIR_PIN && CTRL",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: fresh_ephemerals,
        },
        Case {
            id: "SB-HS-006",
            title: "drops a repeated HANDSHAKE_3 once the connection is established, and keeps the connection",
            requirements: &["HS-18"],
            pics: "PAIR_PIN && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: repeats_dropped,
        },
        Case {
            id: "SB-HS-007",
            title: "ignores a HANDSHAKE_REJECT aimed at an established connection",
            requirements: &["HS-16"],
            pics: "PAIR_PIN && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: reject_ignored_when_established,
        },
        Case {
            id: "SB-HS-008",
            title: "rejects a pinned initiator's malformed HELLO with HANDSHAKE_REJECT MALFORMED",
            requirements: &["HS-14", "ERR-6"],
            pics: "PAIR_PIN",
            pixit: &["pin"],
            transport: "udp",
            run: bad_hello_rejected,
        },
        Case {
            id: "SB-HS-009",
            title: "as initiator, sends HANDSHAKE_1 and HANDSHAKE_3 as specified and protects its records with k_i2r",
            requirements: &["HS-2", "REC-1"],
            pics: "PAIR_PIN && CTRL && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: initiator_handshake,
        },
        Case {
            id: "SB-HS-010",
            title: "as initiator, rejects an unpinned responder, ignores a failing HANDSHAKE_2 and aborts on HANDSHAKE_REJECT",
            requirements: &["HS-5", "HS-12", "HS-15", "ERR-1", "HS-2"],
            pics: "PAIR_PIN && CTRL",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: initiator_failures,
        },
        Case {
            id: "SB-HS-011",
            title: "retransmits HANDSHAKE_1 every 500 ms doubling then fails with PEER_LOST, and repeats HANDSHAKE_3 with its retransmissions",
            requirements: &["HS-10", "HS-17", "HS-2"],
            pics: "PAIR_PIN && CTRL",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: handshake_timers,
        },
        Case {
            id: "SB-HS-012",
            title: "drops HANDSHAKE_2 and HANDSHAKE_3 that match no handshake awaiting them, without changing any state",
            requirements: &["HS-18"],
            pics: "PAIR_PIN && CTRL && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: stray_handshake_frames,
        },
    ]
}

/// T_RESP.
const T_RESP: Duration = Duration::from_millis(500);
/// How long a case waits before concluding that the DUT does not answer a handshake frame.
const SILENCE: Duration = Duration::from_millis(700);
/// Timing tolerance for retransmission schedules measured at the tester.
const EARLY: Duration = Duration::from_millis(30);
const LATE: Duration = Duration::from_millis(150);

fn responder_handshake(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    ctx.pair(&mut lt)?;
    let mark = lt.trace.len();
    let r = lt.handshake_with(None, false);
    let Some(mut c) = established(ctx, r)? else {
        ctx.pass();
        return Ok(());
    };
    let rx0 = c.rx.clone();
    let tr = &lt.trace[mark..];
    let at = |outbound: bool, ty: u8| {
        tr.iter()
            .find(|s| s.outbound == outbound && s.bytes.get(1) == Some(&ty))
            .map(|s| s.at)
    };
    if let (Some(a), Some(b)) = (at(true, 0x10), at(false, 0x11)) {
        let d = b.saturating_duration_since(a);
        ctx.check(
            "HS-3",
            d <= T_RESP,
            "HANDSHAKE_2 within 500 ms of HANDSHAKE_1",
            format!("after {d:?}"),
        );
    }
    if let (Some(a), Some(b)) = (at(true, 0x12), at(false, 0x20)) {
        let d = b.saturating_duration_since(a);
        ctx.check(
            "HS-7",
            d <= T_RESP,
            "the first RECORD within 500 ms of HANDSHAKE_3",
            format!("after {d:?}"),
        );
    }
    let hs2 = tr
        .iter()
        .filter(|s| !s.outbound)
        .find_map(|s| match Frame::parse(&s.bytes) {
            Ok(Frame {
                conn_id,
                body: Body::Handshake2 { sender_conn_id, .. },
            }) => Some((conn_id, sender_conn_id)),
            _ => None,
        });
    if let Some((hdr, sender)) = hs2 {
        ctx.check(
            "HS-3",
            hdr == c.local_id,
            format!("HANDSHAKE_2 header conn_id {:#010x} (ours)", c.local_id),
            format!("{hdr:#010x}"),
        );
        if sender == 0 {
            ctx.note("FRAME-10 (SHOULD): the DUT chose connection ID 0");
        }
    }
    note_hello(ctx, &c.dut_hello);
    c.collect(Duration::from_millis(50))?;
    match opened(&c, &rx0).into_iter().next() {
        Some((seq, _, Some(pt))) => {
            let m = Message::parse(&pt);
            ctx.check(
                "HS-7",
                matches!(m, Ok(ref m) if m.body == MsgBody::Heartbeat && m.rseq == 0),
                "the first RECORD carries a HEARTBEAT",
                format!("seq {seq}: {m:?}"),
            );
        }
        other => {
            ctx.check(
                "REC-1",
                false,
                "the first RECORD authenticates under k_r2i",
                format!("{other:?}"),
            );
        }
    }
    // Both directions work with the Split() keys.
    let sid = ctx.must(
        "HS-1",
        "a session to echo over the new connection",
        c.open_session("echo", ChannelKind::Message, Qos::Interactive),
    );
    if let Some(Ok(sid)) = sid {
        let t = ctx.timeout();
        let r = Echo::new(sid).round(&mut c, b"keys in order", t);
        ctx.check(
            "HS-1",
            r.is_ok(),
            "an echo over the connection",
            format!("{:?}", r.err()),
        );
    }
    ctx.pass();
    Ok(())
}

fn unpinned_refused(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?; // never paired
    let mark = lt.trace.len();
    match lt.handshake_with(None, false) {
        Ok(Err(Code::UnknownPeer)) => {}
        Ok(Err(code)) => {
            ctx.check(
                "HS-6",
                false,
                "HANDSHAKE_REJECT UNKNOWN_PEER",
                format!("HANDSHAKE_REJECT {code}"),
            );
        }
        Ok(Ok(c)) => {
            ctx.keep_keys(&c);
            ctx.check(
                "HS-6",
                false,
                "the handshake with an unpinned key refused",
                "completed: the DUT sent an authenticated RECORD",
            );
        }
        Err(StepError::Io(e)) => return Err(StepError::Io(e)),
        Err(e) => {
            ctx.check(
                "HS-6",
                false,
                "HANDSHAKE_REJECT UNKNOWN_PEER after HANDSHAKE_3",
                e.to_string(),
            );
        }
    }
    let reject = lt.trace[mark..]
        .iter()
        .find(|s| !s.outbound && s.bytes.get(1) == Some(&0x1F))
        .map(|s| s.bytes.clone());
    let hs1_id = lt.trace[mark..]
        .iter()
        .find(|s| s.outbound && s.bytes.get(1) == Some(&0x10))
        .and_then(|s| hs1_sender(&s.bytes));
    if let (Some(raw), Some(id)) = (reject, hs1_id) {
        let hdr = frame_conn_id(&raw).unwrap_or(0);
        ctx.check(
            "HS-6",
            hdr == id,
            format!("the REJECT's header conn_id {id:#010x} (the initiator's)"),
            format!("{hdr:#010x}"),
        );
    }
    // The handshake is gone: a repeated HANDSHAKE_3 finds nothing, and no record ever comes.
    if let Some(hs3) = last_sent(&lt, mark, 0x12) {
        lt.send_raw(&hs3)?;
    }
    let after = frames_within(&mut lt, SILENCE, |_| true)?;
    ctx.check(
        "HS-18",
        after.is_empty(),
        "nothing more once the unpinned key is refused, not even for a repeated HANDSHAKE_3",
        format!(
            "{} frames: {:?}",
            after.len(),
            after.iter().map(|f| frame_name(&f.1)).collect::<Vec<_>>()
        ),
    );
    ctx.pass();
    Ok(())
}

fn tampered_hs3(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    ctx.pair(&mut lt)?;
    let before = must_counters(ctx)?;
    let mark = lt.trace.len();
    lt.timeout = SILENCE;
    match lt.handshake_with(None, true) {
        Err(StepError::Timeout(_, what)) if what.contains("after HANDSHAKE_3") => {}
        Err(e) => return Err(e),
        Ok(Ok(c)) => {
            ctx.keep_keys(&c);
            ctx.check(
                "HS-12",
                false,
                "a HANDSHAKE_3 that fails Noise processing refused",
                "the handshake completed",
            );
        }
        Ok(Err(code)) => {
            ctx.check(
                "HS-12",
                false,
                "nothing sent in response to a HANDSHAKE_3 that fails Noise processing",
                format!("HANDSHAKE_REJECT {code}"),
            );
        }
    }
    // The genuine HANDSHAKE_3 (the tampered one with its bit flipped back) finds no handshake.
    if let Some(mut hs3) = last_sent(&lt, mark, 0x12) {
        if let Some(b) = hs3.last_mut() {
            *b ^= 0x01;
        }
        lt.send_raw(&hs3)?;
        let after = frames_within(&mut lt, SILENCE, |_| true)?;
        ctx.check(
            "HS-12",
            after.is_empty(),
            "the handshake discarded: nothing answers the genuine HANDSHAKE_3 sent afterwards",
            format!(
                "{:?}",
                after.iter().map(|f| frame_name(&f.1)).collect::<Vec<_>>()
            ),
        );
    }
    check_delta(
        ctx,
        "HS-12",
        &before,
        "auth_failed",
        1..=1,
        "the HANDSHAKE_3 that failed Noise processing",
    )?;
    lt.timeout = ctx.timeout();
    let again = lt.handshake();
    ctx.check(
        "ERR-6",
        again.is_ok(),
        "a new handshake afterwards succeeds",
        format!("{:?}", again.err()),
    );
    ctx.pass();
    Ok(())
}

fn version_bound(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    ctx.pair(&mut lt)?;
    lt.timeout = Duration::from_millis(1500);
    let r = lt.handshake_with(Some(b"SoftBus/1\x02"), false);
    ctx.note(format!(
        "handshake with prologue \"SoftBus/1\"||0x02: {:?}",
        r.as_ref().map(|x| x.as_ref().map(|_| "established"))
    ));
    if let Err(StepError::Io(e)) = r {
        return Err(StepError::Io(e));
    }
    ctx.check(
        "HS-1",
        !matches!(r, Ok(Ok(_))),
        "the handshake fails when the initiator binds version 0x02 into the prologue",
        "it completed",
    );
    // Other versions of HANDSHAKE_1: rejected with UNSUPPORTED_VERSION to the body's conn_id.
    let mut probes: Vec<(String, Vec<u8>, u32)> = Vec::new();
    for v in [0x02u8, 0x00, 0xFF] {
        let id = lt.random_u32();
        let mut f = Frame {
            conn_id: 0,
            body: Body::Handshake1 {
                sender_conn_id: id,
                noise: lt.random_bytes(32),
            },
        }
        .to_vec();
        f[0] = v;
        probes.push((format!("version {v:#04x}"), f, id));
    }
    let id = lt.random_u32();
    let mut f = vec![0x02, 0x10, 0x01, 0x02, 0x03, 0x04];
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&lt.random_bytes(32));
    probes.push(("version 0x02, header conn_id 0x01020304".into(), f, id));
    probes.push((
        "version 0x02, a 2-byte body".into(),
        vec![0x02, 0x10, 0, 0, 0, 0, 0xAB, 0xCD],
        0,
    ));
    for (what, f, want) in probes {
        lt.send_raw(&f)?;
        let Some(raw) = first_frame(&mut lt, Duration::from_millis(1000), |raw| {
            raw.get(1) == Some(&0x1F)
        })?
        else {
            ctx.check(
                "FRAME-8",
                false,
                format!("a HANDSHAKE_REJECT for a HANDSHAKE_1 of {what}"),
                "nothing within 1 s",
            );
            continue;
        };
        ctx.check(
            "FRAME-8",
            raw[0] == 0x01,
            format!("the REJECT for {what} in version 0x01"),
            format!("version {:#04x}", raw[0]),
        );
        match Frame::parse(&raw) {
            Ok(Frame {
                conn_id,
                body: Body::HandshakeReject { code },
            }) => {
                ctx.check(
                    "FRAME-8",
                    code == Code::UnsupportedVersion,
                    format!("UNSUPPORTED_VERSION for {what}"),
                    code.to_string(),
                );
                ctx.check(
                    "FRAME-8",
                    conn_id == want,
                    format!("header conn_id {want:#010x} for {what}"),
                    format!("{conn_id:#010x}"),
                );
            }
            other => {
                ctx.check(
                    "FRAME-8",
                    false,
                    format!("a well-formed HANDSHAKE_REJECT for {what}"),
                    format!("{other:?}"),
                );
            }
        }
    }
    ctx.pass();
    Ok(())
}

fn fresh_ephemerals(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    ctx.pair(&mut lt)?;
    let mut ephs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut ids: Vec<(String, u32)> = Vec::new();
    for i in 0..3 {
        let mark = lt.trace.len();
        let c = lt.handshake()?;
        ctx.keep_keys(&c);
        for s in lt.trace[mark..].iter().filter(|s| !s.outbound) {
            if let Ok(Frame {
                body:
                    Body::Handshake2 {
                        sender_conn_id,
                        noise,
                    },
                ..
            }) = Frame::parse(&s.bytes)
            {
                ephs.push((format!("HANDSHAKE_2 #{}", i + 1), noise[..32].to_vec()));
                ids.push((format!("HANDSHAKE_2 #{}", i + 1), sender_conn_id));
            }
        }
    }
    // As initiator: two `connect`s, each answered with a HANDSHAKE_REJECT so the DUT gives up.
    let addr = tester_addr(&lt)?;
    for i in 0..2 {
        connect(ctx, addr)?;
        let acc = lt.accept_handshake(&AcceptOpts {
            wait_hs1: ctx.timeout(),
            reject_with: Some(Code::UnknownPeer),
            ..AcceptOpts::default()
        });
        if let Some(acc) = ctx.must(
            "HS-2",
            "a HANDSHAKE_1 after the control operation `connect`",
            acc,
        ) {
            if let Ok(Frame {
                body:
                    Body::Handshake1 {
                        sender_conn_id,
                        noise,
                    },
                ..
            }) = Frame::parse(&acc.hs1)
            {
                ephs.push((format!("HANDSHAKE_1 #{}", i + 1), noise[..32].to_vec()));
                ids.push((format!("HANDSHAKE_1 #{}", i + 1), sender_conn_id));
            }
        }
    }
    let mut dup = Vec::new();
    for (i, a) in ephs.iter().enumerate() {
        for b in &ephs[i + 1..] {
            if a.1 == b.1 {
                dup.push(format!("{} = {}", a.0, b.0));
            }
        }
    }
    ctx.check(
        "HS-4",
        dup.is_empty() && ephs.len() == 5,
        "5 handshakes (3 as responder, 2 as initiator) with 5 distinct ephemeral keys",
        format!("{} ephemerals seen, repeated: {dup:?}", ephs.len()),
    );
    let mut sorted: Vec<u32> = ids.iter().map(|(_, id)| *id).collect();
    sorted.sort_unstable();
    sorted.dedup();
    if ids.iter().any(|(_, id)| *id == 0) || sorted.len() != ids.len() {
        ctx.note(format!(
            "FRAME-10 (SHOULD): connection IDs not all nonzero and distinct: {ids:08x?}"
        ));
    }
    ctx.pass();
    Ok(())
}

fn repeats_dropped(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    ctx.pair(&mut lt)?;
    lt.timeout = Duration::from_millis(1500);
    let mark = lt.trace.len();
    let r = lt.handshake_opts(&HsOpts {
        repeat_hs1: true,
        ..HsOpts::default()
    });
    let Some(mut c) = established(ctx, r)? else {
        ctx.pass();
        return Ok(());
    };
    let hs2s: Vec<Vec<u8>> = lt.trace[mark..]
        .iter()
        .filter(|s| !s.outbound && s.bytes.get(1) == Some(&0x11))
        .map(|s| s.bytes.clone())
        .collect();
    ctx.note(match hs2s.len() {
        0 | 1 => "HS-9 (SHOULD): no HANDSHAKE_2 in answer to the repeated HANDSHAKE_1".to_string(),
        _ if hs2s[0] == hs2s[1] => {
            "HS-9: the repeated HANDSHAKE_1 got a byte-identical HANDSHAKE_2".to_string()
        }
        _ => "HS-9 (SHOULD): the repeated HANDSHAKE_1 got a different HANDSHAKE_2".to_string(),
    });
    let Some(hs3) = last_sent(&lt, mark, 0x12) else {
        return Err(StepError::Unexpected("no HANDSHAKE_3 in the trace".into()));
    };
    let rx0 = c.rx.clone();
    c.collect(Duration::from_millis(100))?;
    // Repeats of the HANDSHAKE_1 and HANDSHAKE_3 of the established connection: dropped.
    let hs1 = last_sent(&lt, mark, 0x10);
    let n0 = c.records.len();
    let nr = c.non_records.len();
    const REPEATS: usize = 8;
    // On a slow link the repeats themselves take a while to send: the window the periodic
    // heartbeats may fall in runs from the first send to the end of the wait.
    let window_start = std::time::Instant::now();
    for _ in 0..REPEATS {
        c.send_raw(&hs3)?;
    }
    if let Some(hs1) = &hs1 {
        c.send_raw(hs1)?;
    }
    c.collect(T_RESP)?;
    let window = window_start.elapsed();
    let heartbeats = opened(&c, &rx0)[n0..]
        .iter()
        .filter(|(_, _, pt)| {
            pt.as_deref()
                .is_some_and(|p| Message::parse(p).is_ok_and(|m| m.body == MsgBody::Heartbeat))
        })
        .count();
    // Periodic heartbeats go on: at most one per hb_interval_ms in the window, plus one.
    let hb = u64::from(c.dut_hello.hb_ms.max(100));
    let periodic = (window.as_millis() as u64 / hb + 1) as usize;
    ctx.check(
        "HS-18",
        heartbeats <= periodic,
        format!(
            "{REPEATS} repeats of HANDSHAKE_3 dropped: at most {periodic} (periodic) HEARTBEAT records in {} ms",
            window.as_millis()
        ),
        format!("{heartbeats} HEARTBEAT records"),
    );
    let extra: Vec<String> = c.non_records[nr..].iter().map(|f| frame_name(f)).collect();
    ctx.check(
        "HS-18",
        extra.is_empty(),
        "no handshake frame in answer to the repeats",
        format!("{extra:?}"),
    );
    let t = ctx.timeout();
    let echo = match c.open_session("echo", ChannelKind::Message, Qos::Interactive) {
        Ok(Ok(sid)) => Echo::new(sid)
            .round(&mut c, b"still established", t)
            .map(|_| ()),
        Ok(Err(code)) => Err(StepError::Unexpected(format!("SESSION_REJECT {code}"))),
        Err(e) => Err(e),
    };
    ctx.check(
        "HS-18",
        echo.is_ok(),
        "the connection unchanged by the repeats (an echo works)",
        format!("{:?}", echo.err()),
    );
    ctx.pass();
    Ok(())
}

fn reject_ignored_when_established(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let t = ctx.timeout();
    for code in [
        Code::UnknownPeer,
        Code::Malformed,
        Code::UnsupportedVersion,
        Code::Unassigned(999),
    ] {
        let f = Frame {
            conn_id: c.remote_id,
            body: Body::HandshakeReject { code },
        };
        c.send_raw(&f.to_vec())?;
    }
    let ans = gather(&mut c, QUIET)?;
    ctx.check(
        "HS-16",
        ans.is_empty() && c.non_records.is_empty(),
        "nothing in answer to HANDSHAKE_REJECTs for the established connection",
        format!("{} ; {} other frames", describe(&ans), c.non_records.len()),
    );
    let r = Echo::new(sid).round(&mut c, b"still here", t);
    ctx.check(
        "HS-16",
        r.is_ok(),
        "the connection still echoes after 4 HANDSHAKE_REJECTs",
        format!("{:?}", r.err()),
    );
    ctx.pass();
    Ok(())
}

fn hello(hb: u32, max_frame: u16, name_len: u8, name: &[u8]) -> Vec<u8> {
    let mut v = hb.to_be_bytes().to_vec();
    v.extend_from_slice(&max_frame.to_be_bytes());
    v.push(name_len);
    v.extend_from_slice(name);
    v
}

fn bad_hello_rejected(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    ctx.pair(&mut lt)?;
    lt.timeout = Duration::from_millis(1500);
    let name = b"tester";
    let mut short = hello(1000, 1400, 6, name);
    short.truncate(6);
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("hb_interval_ms 0", hello(0, 1400, 6, name)),
        (
            "name_len 10 over a 6-byte name",
            hello(1000, 1400, 10, name),
        ),
        ("name_len 3 under a 6-byte name", hello(1000, 1400, 3, name)),
        (
            "a name that is not UTF-8",
            hello(1000, 1400, 2, &[0xFF, 0xFE]),
        ),
        ("6 bytes only", short),
    ];
    for (what, h) in variants {
        let r = lt.handshake_opts(&HsOpts {
            hello: Some(h),
            ..HsOpts::default()
        });
        let expected = format!("HANDSHAKE_REJECT MALFORMED for a HELLO with {what}");
        match r {
            Ok(Err(Code::Malformed)) => {}
            Ok(Err(code)) => {
                ctx.check("HS-14", false, expected, format!("HANDSHAKE_REJECT {code}"));
            }
            Ok(Ok(c)) => {
                ctx.keep_keys(&c);
                ctx.check("HS-14", false, expected, "the handshake completed");
            }
            Err(StepError::Io(e)) => return Err(StepError::Io(e)),
            Err(e) => {
                ctx.check("HS-14", false, expected, e.to_string());
            }
        }
    }
    lt.timeout = ctx.timeout();
    let ok = lt.handshake();
    ctx.check(
        "ERR-6",
        ok.is_ok(),
        "a handshake with a valid HELLO still succeeds",
        format!("{:?}", ok.err()),
    );
    ctx.pass();
    Ok(())
}

fn initiator_handshake(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    ctx.pair(&mut lt)?;
    connect(ctx, tester_addr(&lt)?)?;
    let acc = lt.accept_handshake(&AcceptOpts {
        wait_hs1: ctx.timeout(),
        wait_hs3: Duration::from_millis(1500),
        ..AcceptOpts::default()
    });
    let Some(acc) = ctx.must(
        "HS-2",
        "a HANDSHAKE_1 after the control operation `connect`",
        acc,
    ) else {
        ctx.pass();
        return Ok(());
    };
    check_hs1(ctx, &acc.hs1);
    match (acc.reject, &acc.hs3) {
        (Some(code), _) => {
            ctx.check(
                "HS-2",
                false,
                "a HANDSHAKE_3 to the pinned responder's conn_id",
                format!("HANDSHAKE_REJECT {code}"),
            );
        }
        (None, None) => {
            ctx.check(
                "HS-2",
                false,
                "a HANDSHAKE_3 to the responder's conn_id",
                "nothing within 1.5 s",
            );
        }
        (None, Some(_)) => {}
    }
    let Some(mut c) = acc.conn else {
        ctx.pass();
        return Ok(());
    };
    ctx.keep_keys(&c);
    match Hello::parse(&acc.hello_raw).ok() {
        Some(h) => note_hello(ctx, &h),
        None => {
            ctx.check(
                "HS-2",
                false,
                "the initiator's HELLO as HANDSHAKE_3 payload",
                hex::encode(&acc.hello_raw),
            );
        }
    }
    let t = ctx.timeout();
    let sid = ctx.must(
        "REC-1",
        "a session to echo opened by the tester (responder)",
        c.open_session("echo", ChannelKind::Message, Qos::Interactive),
    );
    if let Some(Ok(sid)) = sid {
        let r = Echo::new(sid).round(&mut c, b"initiator keys", t);
        ctx.check(
            "REC-1",
            r.is_ok(),
            "an echo over the DUT-initiated connection",
            format!("{:?}", r.err()),
        );
    }
    let bad = c.records.iter().filter(|r| !r.authentic).count();
    ctx.check(
        "REC-1",
        bad == 0 && !c.records.is_empty(),
        "every RECORD of the DUT (initiator) authenticates under k_i2r",
        format!("{bad} of {} do not", c.records.len()),
    );
    ctx.pass();
    Ok(())
}

fn initiator_failures(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    // An unpinned responder.
    let mut lu = ctx.lower()?;
    connect(ctx, tester_addr(&lu)?)?;
    let acc = lu.accept_handshake(&AcceptOpts {
        wait_hs1: ctx.timeout(),
        wait_hs3: Duration::from_millis(1500),
        first_record: false,
        ..AcceptOpts::default()
    });
    if let Some(acc) = ctx.must(
        "HS-2",
        "a HANDSHAKE_1 after the control operation `connect`",
        acc,
    ) {
        ctx.check(
            "HS-5",
            acc.reject == Some(Code::UnknownPeer),
            "HANDSHAKE_REJECT UNKNOWN_PEER to the responder's conn_id for an unpinned responder key",
            match (acc.reject, &acc.hs3) {
                (Some(code), _) => format!("HANDSHAKE_REJECT {code}"),
                (None, Some(_)) => "HANDSHAKE_3: the DUT went on with the handshake".into(),
                (None, None) => "nothing".into(),
            },
        );
        let more = frames_within(&mut lu, SILENCE, |raw| {
            hs1_sender(raw) == Some(acc.dut_conn_id) || raw.get(1) == Some(&0x12)
        })?;
        ctx.check(
            "HS-5",
            more.is_empty(),
            "the handshake aborted: no further HANDSHAKE_1 or HANDSHAKE_3",
            format!("{} frames", more.len()),
        );
    }

    // A HANDSHAKE_2 that fails Noise processing: nothing in response.
    let mut lp = ctx.lower()?;
    ctx.pair(&mut lp)?;
    let addr = tester_addr(&lp)?;
    connect(ctx, addr)?;
    let acc = lp.accept_handshake(&AcceptOpts {
        wait_hs1: ctx.timeout(),
        wait_hs3: SILENCE,
        tamper_hs2: true,
        first_record: false,
        ..AcceptOpts::default()
    });
    if let Some(acc) = ctx.must(
        "HS-2",
        "a HANDSHAKE_1 after the control operation `connect`",
        acc,
    ) {
        let local = acc.local_id;
        let late = frames_within(&mut lp, Duration::from_millis(300), |raw| {
            frame_conn_id(raw) == Some(local)
        })?;
        ctx.check(
            "HS-12",
            acc.hs3.is_none() && acc.reject.is_none() && late.is_empty(),
            "nothing in answer to a HANDSHAKE_2 that fails Noise processing",
            format!(
                "HANDSHAKE_3: {}, REJECT: {:?}, later: {:?}",
                acc.hs3.is_some(),
                acc.reject,
                late.iter().map(|f| frame_name(&f.1)).collect::<Vec<_>>()
            ),
        );
    }
    // Let that attempt end (6.3: 500 ms after the failing HANDSHAKE_2).
    std::thread::sleep(Duration::from_millis(600));

    // HANDSHAKE_REJECT in answer to HANDSHAKE_1, with a known and an unknown code.
    for (code, req) in [
        (Code::UnknownPeer, "HS-15"),
        (Code::Unassigned(999), "ERR-1"),
    ] {
        ctx.upper()?.skip_events()?;
        connect(ctx, addr)?;
        let acc = lp.accept_handshake(&AcceptOpts {
            wait_hs1: ctx.timeout(),
            reject_with: Some(code),
            ..AcceptOpts::default()
        });
        if let Some(acc) = ctx.must(
            "HS-2",
            "a HANDSHAKE_1 after the control operation `connect`",
            acc,
        ) {
            let more = frames_within(&mut lp, Duration::from_millis(1200), |raw| {
                hs1_sender(raw) == Some(acc.dut_conn_id)
            })?;
            ctx.check(
                req,
                more.is_empty(),
                format!("the handshake aborted on HANDSHAKE_REJECT {code}: no HANDSHAKE_1 retransmission"),
                format!("{} retransmissions", more.len()),
            );
            let ev = ctx
                .upper()?
                .wait_event(Duration::from_secs(1), "handshake_failed", |e| {
                    e["type"] == "handshake_failed"
                });
            let name = if matches!(code, Code::Unassigned(_)) {
                "UNASSIGNED"
            } else {
                code.name()
            };
            match ev {
                Ok(e) => {
                    ctx.check(
                        req,
                        e["code"] == name,
                        format!("`handshake_failed` reporting {name}"),
                        e.to_string(),
                    );
                }
                Err(e) => {
                    ctx.check(
                        req,
                        false,
                        format!("a `handshake_failed` event for HANDSHAKE_REJECT {code}"),
                        e.to_string(),
                    );
                }
            }
        }
    }
    ctx.pass();
    Ok(())
}

fn handshake_timers(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut la = ctx.lower()?; // DUT initiates, the tester withholds its first RECORD
    ctx.pair(&mut la)?;
    let mut lr = ctx.lower()?; // the tester initiates and sends HANDSHAKE_3 10.5 s late
    ctx.pair(&mut lr)?;
    let mut lb = ctx.lower()?; // DUT initiates towards a silent peer
    ctx.upper()?.skip_events()?;
    lr.timeout = Duration::from_millis(1000);
    const HALF_OPEN: Duration = Duration::from_millis(10_500);
    const WATCH: Duration = Duration::from_millis(16_600);
    connect(ctx, tester_addr(&lb)?)?;
    let addr_a = tester_addr(&la)?;
    let peer_a = la.identity.device_id().to_hex();
    let (late, hs1s, phase_a) = std::thread::scope(|s| -> Result<_, StepError> {
        let hr = s.spawn(|| {
            let r = lr.handshake_opts(&HsOpts {
                hs3_delay: Some(HALF_OPEN),
                ..HsOpts::default()
            });
            r.map(|x| x.map(|_| ()))
        });
        let hb = s.spawn(|| frames_within(&mut lb, WATCH, |raw| raw.get(1) == Some(&0x10)));
        let a = hs3_with_retransmissions(ctx, &mut la, addr_a, &peer_a);
        let late = hr
            .join()
            .map_err(|_| StepError::Io("tester thread panicked".into()))?;
        let hs1s = hb
            .join()
            .map_err(|_| StepError::Io("tester thread panicked".into()))??;
        Ok((late, hs1s, a?))
    })?;

    // HS-10: HANDSHAKE_1 at 0, 0.5, 1.5, 3.5, 7.5 s, then PEER_LOST at 15.5 s.
    let times: Vec<Instant> = hs1s.iter().map(|f| f.0).collect();
    let identical = hs1s.windows(2).all(|w| w[0].1 == w[1].1);
    ctx.check(
        "HS-10",
        identical,
        "byte-identical HANDSHAKE_1 retransmissions",
        "they differ",
    );
    ctx.check(
        "HS-10",
        times.len() == 5,
        "HANDSHAKE_1 sent 5 times (4 retransmissions) in 16.6 s towards a silent peer",
        format!("{} times", times.len()),
    );
    let expected = [500u64, 1000, 2000, 4000];
    for (i, w) in times.windows(2).enumerate().take(expected.len()) {
        let gap = w[1].saturating_duration_since(w[0]);
        let want = Duration::from_millis(expected[i]);
        ctx.check(
            "HS-10",
            gap + EARLY >= want && gap <= want + LATE,
            format!(
                "retransmission {} of HANDSHAKE_1 {want:?} after the previous transmission",
                i + 1
            ),
            format!("after {gap:?}"),
        );
    }
    let evs = ctx.upper()?.poll_events()?;
    let failed: Vec<String> = evs
        .iter()
        .filter(|e| e["type"] == "handshake_failed")
        .map(Value::to_string)
        .collect();
    ctx.check(
        "HS-10",
        evs.iter()
            .any(|e| e["type"] == "handshake_failed" && e["code"] == "PEER_LOST"),
        "a `handshake_failed` event with code PEER_LOST once the last interval ended (15.5 s)",
        format!("handshake_failed events: [{}]", failed.join(", ")),
    );

    // HS-17: HANDSHAKE_3 repeated with each retransmission, until the first record came.
    match phase_a {
        A::NoHs3(why) => {
            ctx.check("HS-2", false, "a HANDSHAKE_3 from the DUT as initiator", why);
        }
        A::Silent => ctx.note("HS-17 not exercised: the DUT sent no reliable message before the responder's first RECORD"),
        A::Seen { retrans_before, hs3_before, hs3_after, retrans_after, identical } => {
            ctx.check("HS-17", identical, "byte-identical HANDSHAKE_3 repeats", "they differ");
            ctx.check(
                "HS-17",
                retrans_before > 0 && hs3_before >= retrans_before,
                "HANDSHAKE_3 repeated with each retransmission while no RECORD came from the responder",
                format!("{hs3_before} HANDSHAKE_3 for {retrans_before} retransmissions"),
            );
            ctx.check(
                "HS-17",
                hs3_after == 0,
                "no HANDSHAKE_3 once the responder's first RECORD arrived",
                format!("{hs3_after} HANDSHAKE_3 with {retrans_after} later retransmissions"),
            );
        }
    }

    // HS-11 (SHOULD): a HANDSHAKE_3 sent 10.5 s after HANDSHAKE_2.
    ctx.note(match late {
        Err(StepError::Timeout(_, what)) if what.contains("after HANDSHAKE_3") => "HS-11: the half-open handshake was discarded after 10 s".to_string(),
        Err(e) => format!("HS-11: the late-HANDSHAKE_3 probe did not run: {e}"),
        Ok(Ok(())) => "HS-11 (SHOULD): a HANDSHAKE_3 sent 10.5 s after HANDSHAKE_2 still completed the handshake".to_string(),
        Ok(Err(code)) => format!("HS-11 (SHOULD): a HANDSHAKE_3 sent 10.5 s after HANDSHAKE_2 got HANDSHAKE_REJECT {code}"),
    });
    ctx.pass();
    Ok(())
}

/// What the DUT did as initiator while the responder withheld its first RECORD.
enum A {
    /// No HANDSHAKE_3 came.
    NoHs3(String),
    /// No reliable message was sent (HS-17 then requires nothing).
    Silent,
    /// Retransmissions seen: before and after the responder's first RECORD.
    Seen {
        retrans_before: usize,
        hs3_before: usize,
        hs3_after: usize,
        retrans_after: usize,
        identical: bool,
    },
}

/// The DUT initiates towards `la`; `la` answers HANDSHAKE_2 and, without sending any RECORD,
/// has the DUT open a session to it and watches its SESSION_OPEN be retransmitted for 0.7 s;
/// then it sends a HEARTBEAT and watches 1.1 s more (no ACK, so retransmissions go on).
fn hs3_with_retransmissions(
    ctx: &mut Ctx<'_>,
    la: &mut LowerTester,
    addr: SocketAddr,
    peer: &str,
) -> Result<A, StepError> {
    connect(ctx, addr)?;
    let acc = la.accept_handshake(&AcceptOpts {
        wait_hs1: ctx.timeout(),
        wait_hs3: Duration::from_millis(1500),
        first_record: false,
        ..AcceptOpts::default()
    })?;
    let Accepted { hs3, conn, .. } = acc;
    let (Some(hs3), Some(mut c)) = (hs3, conn) else {
        return Ok(A::NoHs3(
            "no HANDSHAKE_3 (or one that does not verify)".into(),
        ));
    };
    let r = ctx
        .upper()?
        .raw(json!({"op": "open_session", "peer": peer, "service": "echo", "kind": "message"}))?;
    ctx.note(format!("open_session towards the tester: {r}"));
    let watch = |c: &mut SecureConn, dur: Duration| -> Result<(usize, usize, bool), StepError> {
        let end = Instant::now() + dur;
        let (mut records, mut hs3s, mut same) = (0, 0, true);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok((records, hs3s, same));
            }
            let Some(raw) = c.recv_raw(left)? else {
                continue;
            };
            match raw.get(1) {
                Some(0x12) => {
                    hs3s += 1;
                    same &= raw == hs3;
                }
                Some(0x20) if frame_conn_id(&raw) == Some(c.local_id) => {
                    // Reliable messages only (periodic HEARTBEATs are not retransmissions).
                    if let Ok(Frame {
                        body:
                            Body::Record {
                                seq, ciphertext, ..
                            },
                        ..
                    }) = Frame::parse(&raw)
                    {
                        let m =
                            c.rx.open(c.local_id, seq, &ciphertext)
                                .ok()
                                .and_then(|p| Message::parse(&p).ok());
                        if m.is_some_and(|m| m.rseq > 0) {
                            records += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    };
    // The first transmission and the retransmissions at 0.2 and 0.6 s.
    let (before, hs3_before, same1) = watch(&mut c, Duration::from_millis(700))?;
    if before == 0 {
        c.send(MsgBody::Heartbeat, false)?;
        return Ok(A::Silent);
    }
    c.send(MsgBody::Heartbeat, false)?;
    let (after, hs3_after, same2) = watch(&mut c, Duration::from_millis(1100))?;
    c.send(MsgBody::Ack { next_expected: 2 }, false)?;
    Ok(A::Seen {
        retrans_before: before.saturating_sub(1),
        hs3_before,
        hs3_after,
        retrans_after: after,
        identical: same1 && same2,
    })
}

fn stray_handshake_frames(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let t = ctx.timeout();
    gather(&mut c, Duration::from_millis(50))?;
    // (a) An established connection (the DUT responded): HANDSHAKE_2 and a new HANDSHAKE_3.
    let nr = c.non_records.len();
    let n0 = c.records.len();
    let hs2 = Frame {
        conn_id: c.remote_id,
        body: Body::Handshake2 {
            sender_conn_id: lt.random_u32(),
            noise: lt.random_bytes(120),
        },
    };
    let hs3 = Frame {
        conn_id: c.remote_id,
        body: Body::Handshake3 {
            noise: lt.random_bytes(80),
        },
    };
    let hs3_unknown = Frame {
        conn_id: c.remote_id ^ 0x5A5A_5A5A,
        body: Body::Handshake3 {
            noise: lt.random_bytes(80),
        },
    };
    for f in [&hs2, &hs3, &hs3_unknown] {
        c.send_raw(&f.to_vec())?;
    }
    let ans = gather(&mut c, QUIET)?;
    let extra: Vec<String> = c.non_records[nr..].iter().map(|f| frame_name(f)).collect();
    ctx.check(
        "HS-18",
        ans.is_empty() && extra.is_empty(),
        "nothing in answer to HANDSHAKE_2 and HANDSHAKE_3 for an established connection or no handshake",
        format!("messages {}; frames {extra:?}", describe(&ans)),
    );
    let r = Echo::new(sid).round(&mut c, b"unchanged", t);
    ctx.check(
        "HS-18",
        r.is_ok(),
        "the established connection unchanged (an echo works)",
        format!("{:?}", r.err()),
    );
    let _ = n0;
    // (b) A handshake the DUT responded to, awaiting HANDSHAKE_3: a HANDSHAKE_2 for it first.
    let mut l2 = ctx.lower()?;
    ctx.pair(&mut l2)?;
    let stray = Frame {
        conn_id: 0,
        body: Body::Handshake2 {
            sender_conn_id: l2.random_u32(),
            noise: l2.random_bytes(120),
        },
    };
    let r = l2.handshake_opts(&HsOpts {
        pre_hs3: Some(stray.to_vec()),
        ..HsOpts::default()
    });
    match r {
        Ok(Ok(c2)) => ctx.keep_keys(&c2),
        other => {
            ctx.check(
                "HS-18",
                false,
                "the half-open handshake completes after a stray HANDSHAKE_2 for it",
                format!("{:?}", other.map(|x| x.map(|_| "established"))),
            );
        }
    }
    // (c) A handshake the DUT initiated, awaiting HANDSHAKE_2: a HANDSHAKE_3 for it first.
    let mut l3 = ctx.lower()?;
    ctx.pair(&mut l3)?;
    connect(ctx, tester_addr(&l3)?)?;
    let stray = Frame {
        conn_id: 0,
        body: Body::Handshake3 {
            noise: l3.random_bytes(80),
        },
    };
    let acc = l3.accept_handshake(&AcceptOpts {
        wait_hs1: t,
        pre_hs2: Some(stray.to_vec()),
        ..AcceptOpts::default()
    });
    if let Some(acc) = ctx.must(
        "HS-2",
        "a HANDSHAKE_1 after the control operation `connect`",
        acc,
    ) {
        ctx.check(
            "HS-18",
            acc.conn.is_some(),
            "the DUT's handshake goes on (HANDSHAKE_3) after a stray HANDSHAKE_3 for it",
            format!(
                "HANDSHAKE_3: {}, REJECT: {:?}",
                acc.hs3.is_some(),
                acc.reject
            ),
        );
        if let Some(c3) = &acc.conn {
            ctx.keep_keys(c3);
        }
    }
    let _ = &mut lt;
    ctx.pass();
    Ok(())
}

// ------------------------------------------------------------------------------------ helpers

/// Judge a handshake with a pinned tester that should complete.
fn established(
    ctx: &mut Ctx<'_>,
    r: Result<Result<SecureConn, Code>, StepError>,
) -> Result<Option<SecureConn>, StepError> {
    match r {
        Ok(Ok(c)) => {
            ctx.keep_keys(&c);
            Ok(Some(c))
        }
        Ok(Err(code)) => {
            ctx.check(
                "HS-3",
                false,
                "a handshake with a pinned tester completes",
                format!("HANDSHAKE_REJECT {code}"),
            );
            Ok(None)
        }
        Err(StepError::Io(e)) => Err(StepError::Io(e)),
        Err(e) => {
            let m = e.to_string();
            let req = if m.contains("HANDSHAKE_2 or") {
                "HS-3"
            } else if m.contains("does not verify") || m.contains("HELLO") {
                "HS-1"
            } else {
                "HS-7"
            };
            ctx.check(
                req,
                false,
                "a completed handshake with the pinned tester",
                m,
            );
            Ok(None)
        }
    }
}

/// HS-13 (a SHOULD) on a HELLO the DUT sent: logged.
fn note_hello(ctx: &mut Ctx<'_>, h: &Hello) {
    let ok =
        (100..=60_000).contains(&h.hb_ms) && h.max_frame >= 256 && (1..=64).contains(&h.name.len());
    ctx.note(format!(
        "HELLO: hb_interval_ms {}, max_frame {}, name {:?}{}",
        h.hb_ms,
        h.max_frame,
        h.name,
        if ok {
            ""
        } else {
            " (outside the ranges of HS-13, a SHOULD)"
        }
    ));
}

/// HS-2 on the DUT's HANDSHAKE_1.
fn check_hs1(ctx: &mut Ctx<'_>, raw: &[u8]) {
    ctx.check(
        "HS-2",
        raw.len() == 6 + 36,
        "a HANDSHAKE_1 body of 36 bytes (empty Noise payload)",
        format!("{} bytes", raw.len().saturating_sub(6)),
    );
    match Frame::parse(raw) {
        Ok(Frame {
            conn_id,
            body: Body::Handshake1 { sender_conn_id, .. },
        }) => {
            ctx.check(
                "HS-2",
                conn_id == 0,
                "HANDSHAKE_1 header conn_id 0",
                format!("{conn_id:#010x}"),
            );
            if sender_conn_id == 0 {
                ctx.note("FRAME-10 (SHOULD): the DUT chose connection ID 0");
            }
        }
        other => {
            ctx.check(
                "HS-2",
                false,
                "a well-formed HANDSHAKE_1",
                format!("{other:?}"),
            );
        }
    }
}

/// Ask the DUT to connect to `to` (answered at once, [CTRL-14]).
fn connect(ctx: &mut Ctx<'_>, to: SocketAddr) -> Result<(), StepError> {
    ctx.upper()?
        .call(json!({"op": "connect", "addr": format!("udp:{to}")}))?;
    Ok(())
}

/// The last frame of type `ty` the tester sent since trace index `mark`.
fn last_sent(lt: &LowerTester, mark: usize, ty: u8) -> Option<Vec<u8>> {
    lt.trace[mark..]
        .iter()
        .rev()
        .find(|s| s.outbound && s.bytes.get(1) == Some(&ty))
        .map(|s| s.bytes.clone())
}

/// The sender conn_id of a HANDSHAKE_1 frame.
fn hs1_sender(raw: &[u8]) -> Option<u32> {
    (raw.get(1) == Some(&0x10) && raw.len() >= 10)
        .then(|| u32::from_be_bytes([raw[6], raw[7], raw[8], raw[9]]))
}

/// The header conn_id of a frame.
fn frame_conn_id(raw: &[u8]) -> Option<u32> {
    (raw.len() >= 6).then(|| u32::from_be_bytes([raw[2], raw[3], raw[4], raw[5]]))
}

/// A frame's type and receiver for reports.
pub(crate) fn frame_name(raw: &[u8]) -> String {
    match Frame::parse(raw) {
        Ok(f) => format!("{:?} to {:#010x}", f.frame_type(), f.conn_id),
        Err(_) => format!("unparsable {}", hex::encode(&raw[..raw.len().min(12)])),
    }
}

/// Every datagram from the DUT within `dur` that satisfies `pred`, with its arrival time.
pub(crate) fn frames_within(
    lt: &mut LowerTester,
    dur: Duration,
    pred: impl Fn(&[u8]) -> bool,
) -> Result<Vec<(Instant, Vec<u8>)>, StepError> {
    let end = Instant::now() + dur;
    let mut out = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(out);
        }
        if let Some(raw) = lt.recv_raw(left)? {
            if pred(&raw) {
                out.push((Instant::now(), raw));
            }
        }
    }
}

/// The first datagram from the DUT within `dur` that satisfies `pred`.
fn first_frame(
    lt: &mut LowerTester,
    dur: Duration,
    pred: impl Fn(&[u8]) -> bool,
) -> Result<Option<Vec<u8>>, StepError> {
    let end = Instant::now() + dur;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        if let Some(raw) = lt.recv_raw(left)? {
            if pred(&raw) {
                return Ok(Some(raw));
            }
        }
    }
}

/// The tester's address as the DUT sees it (for `connect`).
pub(crate) fn tester_addr(lt: &LowerTester) -> Result<SocketAddr, StepError> {
    let a = lt.local_addr();
    if !a.ip().is_unspecified() {
        return Ok(a);
    }
    let dut = lt.dut_ip().ok_or_else(|| {
        StepError::Io(format!(
            "the DUT can only be told a tester address on an IP link, not {}",
            lt.transport()
        ))
    })?;
    let any: IpAddr = if dut.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let probe = UdpSocket::bind(SocketAddr::new(any, 0))?;
    probe.connect(dut)?;
    Ok(SocketAddr::new(probe.local_addr()?.ip(), a.port()))
}
