//! Section 7, record protection.
//!
//! > [REC-1] A device MUST protect the records it sends as initiator with `k_i2r` and as
//! > responder with `k_r2i`, the two keys of Noise `Split()` in that order, each used as an
//! > AES-256-GCM key.
//! >
//! > [REC-2] A device MUST NOT send any inner message except inside a RECORD, so that only CoAP
//! > discovery, PAIR_* and HANDSHAKE_* frames ever cross a link in plaintext.
//! >
//! > [REC-4] A device MUST number the records it sends on a connection 0, 1, 2, ... in its `seq`
//! > field, never repeating a value on that connection, not resetting it on rekey, and giving
//! > every retransmission a new seq.
//! >
//! > [REC-5] A receiver MUST drop a RECORD whose header conn_id matches no established
//! > connection (no connection, or one still in its handshake), and count it in
//! > `unknown_connection`.
//! >
//! > [REC-6] A receiver MUST drop a RECORD whose seq is at most `H - 64`, or equals a seq it has
//! > already accepted, and count it in `replayed`.
//! >
//! > [REC-8] A receiver MUST drop a RECORD that fails authentication and count it in
//! > `auth_failed`, without sending anything in response and without changing any state of the
//! > connection (replay window, keys, liveness timers); only records that authenticate update the
//! > replay window.
//!
//! (and REC-3, 7, 10, 11, 12: see each case's requirement list.) REC-9 and REC-13 are SHOULDs:
//! REC-13 is observed and logged, REC-9 (rekey before 2^32 records) cannot be observed in a test
//! of reasonable length.
//!
//! The helpers at the end (sealing arbitrary plaintexts, probing whether a record was accepted,
//! reading the DUT's counters) are shared with the handshake, reliable-delivery and error
//! modules.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use softbus::crypto::RecordKey;
use softbus::wire::frame::{Body, Frame};
use softbus::wire::msg::{ChannelKind, Message, MsgBody};
use softbus::wire::Code;

use crate::case::{Case, Ctx};
use crate::cases::steps::describe;
use crate::tester::lower::{HsOpts, SecureConn, StepError};

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-REC-001",
            title: "sends session data only in records that authenticate under its key, never in plaintext",
            requirements: &["REC-1", "REC-2", "REC-3"],
            pics: "PAIR_PIN && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: no_plaintext,
        },
        Case {
            id: "SB-REC-002",
            title: "numbers its records 0, 1, 2, ... and never reuses a seq, also across its own rekey",
            requirements: &["REC-4", "REC-10"],
            pics: "PAIR_PIN && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: seq_numbering,
        },
        Case {
            id: "SB-REC-003",
            title: "drops a replayed record without answering it and counts it as replayed",
            requirements: &["REC-6", "ERR-2"],
            pics: "PAIR_PIN && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: replay_dropped,
        },
        Case {
            id: "SB-REC-004",
            title: "accepts records reordered within the 64-record window and drops older ones",
            requirements: &["REC-6", "REC-7"],
            pics: "PAIR_PIN && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: replay_window,
        },
        Case {
            id: "SB-REC-005",
            title: "drops a modified record silently, counts auth_failed and keeps its replay window",
            requirements: &["REC-8"],
            pics: "PAIR_PIN && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: tampered_dropped,
        },
        Case {
            id: "SB-REC-006",
            title: "drops a record for no established connection, even a handshake in progress, and counts it",
            requirements: &["REC-5", "ERR-6"],
            pics: "PAIR_PIN && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: unknown_conn_dropped,
        },
        Case {
            id: "SB-REC-007",
            title: "follows the peer's rekey and keeps the previous epoch for 2 s only",
            requirements: &["REC-11", "REC-12"],
            pics: "PAIR_PIN && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "udp",
            run: peer_rekey,
        },
    ]
}

fn no_plaintext(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let rx0 = c.rx.clone();
    let t = ctx.timeout();
    let canary = format!("SOFTBUS-CANARY-{:016x}", ctx.seed).into_bytes();
    let mut echo = Echo::new(sid);
    // Up to 3000 bytes (several records at the usual MTU), within the DUT's max_message.
    let limit = c.max_message(sid, ChannelKind::Message);
    let mut sizes: Vec<usize> = [canary.len(), 1000, 3000]
        .into_iter()
        .map(|s| s.min(limit))
        .collect();
    sizes.dedup();
    for size in sizes {
        let payload: Vec<u8> = canary.iter().copied().cycle().take(size).collect();
        let got = ctx.must(
            "REC-1",
            "the echo of the message, in records that authenticate",
            echo.round(&mut c, &payload, t),
        );
        let Some(got) = got else { break };
        ctx.check(
            "REC-3",
            got == payload,
            format!("the {size}-byte message echoed intact"),
            format!("{} bytes, differing", got.len()),
        );
    }
    c.collect(Duration::from_millis(100))?;
    let bad: Vec<u64> = c
        .records
        .iter()
        .filter(|r| !r.authentic)
        .map(|r| r.seq)
        .collect();
    ctx.check(
        "REC-1",
        bad.is_empty(),
        "every RECORD from the DUT (responder) authenticates under k_r2i with the 7.2 nonce and AAD",
        format!("{} of {} records do not (seqs {:?})", bad.len(), c.records.len(), first_n(&bad, 10)),
    );
    let needle = &canary[..16];
    let leaks = c
        .records
        .iter()
        .map(|r| &r.frame)
        .chain(c.non_records.iter())
        .filter(|f| f.windows(needle.len()).any(|w| w == needle))
        .count();
    ctx.check(
        "REC-2",
        leaks == 0,
        "the echoed payload never visible on the wire",
        format!("visible in {leaks} datagrams"),
    );
    let stray: Vec<String> = c
        .non_records
        .iter()
        .filter(|raw| {
            !matches!(
                Frame::parse(raw),
                Ok(Frame {
                    body: Body::Handshake2 { .. } | Body::HandshakeReject { .. },
                    ..
                })
            )
        })
        .map(|raw| hex::encode(&raw[..raw.len().min(24)]))
        .collect();
    ctx.check(
        "REC-2",
        stray.is_empty(),
        "nothing but RECORDs on an established connection",
        format!(
            "{} other datagrams: {}",
            stray.len(),
            first_n(&stray, 5).join(", ")
        ),
    );
    let mut unparsed = Vec::new();
    for (seq, _, pt) in opened(&c, &rx0) {
        if let Some(pt) = pt {
            if Message::parse(&pt).is_err() {
                unparsed.push(seq);
            }
        }
    }
    ctx.check(
        "REC-3",
        unparsed.is_empty(),
        "each record carries exactly one well-formed inner message",
        format!("records {:?} do not", first_n(&unparsed, 10)),
    );
    ctx.pass();
    Ok(())
}

fn seq_numbering(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let mut echo = Echo::new(sid);
    let t = Duration::from_millis(2000).min(ctx.timeout());
    for i in 0..30 {
        let p = format!("nonce probe {i:02} {}", "x".repeat(i * 7)).into_bytes();
        if ctx
            .must(
                "REC-4",
                "the echo of every message (records the tester can accept)",
                echo.round(&mut c, &p, t),
            )
            .is_none()
        {
            break;
        }
    }
    c.collect(Duration::from_millis(50))?;
    check_seqs(ctx, &c, "30 echo messages");
    // The DUT's own rekey, where its control channel offers one (section 14 has no op for it).
    let hello = ctx.upper()?.call(json!({"op": "hello"}))?;
    let has_rekey = hello["ops"]
        .as_array()
        .is_some_and(|a| a.iter().any(|o| o == "rekey"));
    if !has_rekey {
        ctx.note("REC-10 not exercised: the DUT's control channel lists no `rekey` op");
        ctx.pass();
        return Ok(());
    }
    let before = c.records.len();
    let peer = lt.identity.device_id().to_hex();
    ctx.upper()?.call(json!({"op": "rekey", "peer": peer}))?;
    for i in 0..5 {
        let p = format!("after rekey {i}").into_bytes();
        if ctx
            .must(
                "REC-10",
                "the echo of every message after the DUT rekeyed",
                echo.round(&mut c, &p, t),
            )
            .is_none()
        {
            break;
        }
    }
    c.collect(Duration::from_millis(50))?;
    let after = &c.records[before..];
    let first_new = after.iter().position(|r| r.epoch != 0);
    match first_new {
        None => ctx.note("the DUT sent no record under a new epoch after `rekey`"),
        Some(i) => {
            let stale: Vec<u64> = after[i..]
                .iter()
                .filter(|r| r.epoch == 0)
                .map(|r| r.seq)
                .collect();
            ctx.check(
                "REC-10",
                stale.is_empty(),
                "no record under epoch 0 once one under epoch 1 was sent",
                format!("records {:?} under epoch 0", first_n(&stale, 10)),
            );
            let unauth = after.iter().filter(|r| !r.authentic).count();
            ctx.check(
                "REC-10",
                unauth == 0,
                "records under the new epoch authenticate under the rekeyed key",
                format!("{unauth} do not"),
            );
        }
    }
    check_seqs(ctx, &c, "the whole connection, across the DUT's rekey");
    ctx.pass();
    Ok(())
}

/// REC-4 over every record the DUT sent on `c`.
fn check_seqs(ctx: &mut Ctx<'_>, c: &SecureConn, what: &str) {
    let seqs: Vec<u64> = c.records.iter().map(|r| r.seq).collect();
    let mut seen = BTreeMap::new();
    for s in &seqs {
        *seen.entry(*s).or_insert(0u32) += 1;
    }
    let repeated: Vec<u64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    ctx.check(
        "REC-4",
        repeated.is_empty(),
        format!("no seq (AES-GCM nonce) used twice over {what}"),
        format!(
            "{} of {} seqs repeated, e.g. {:?}",
            repeated.len(),
            seqs.len(),
            first_n(&repeated, 10)
        ),
    );
    ctx.check(
        "REC-4",
        seqs.first() == Some(&0),
        "the first record of the connection has seq 0",
        format!("first seq {:?}", seqs.first()),
    );
    let jumps: Vec<(u64, u64)> = seqs
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    ctx.check(
        "REC-4",
        jumps.is_empty(),
        format!("seq 0, 1, 2, ... over {what}"),
        format!(
            "{} steps that are not +1, e.g. {:?}",
            jumps.len(),
            first_n(&jumps, 5)
        ),
    );
}

fn replay_dropped(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let t = ctx.timeout();
    let before = must_counters(ctx)?;
    // A reliable DATA to echo, then the very same record again.
    let rseq = c.next_rseq;
    c.next_rseq += 1;
    let frame = c.seal(&Message {
        rseq,
        body: data_body(sid, 1, b"replay me"),
    });
    c.send_raw(&frame)?;
    c.recv_data(sid, t)?;
    // The original's ACK may come up to 100 ms after it ([REL-6]): replay only after that.
    c.settle(t)?;
    c.send_raw(&frame)?;
    let ans = gather(&mut c, QUIET)?;
    ctx.check(
        "REC-6",
        ans.is_empty(),
        "nothing in answer to a replayed record (neither ACK nor echo)",
        describe(&ans),
    );
    // An unreliable probe answered by ERROR, then replayed three times.
    let probe = seal_plain(&mut c, &[0xA5]);
    c.send_raw(&probe)?;
    let first = gather(&mut c, QUIET)?;
    ctx.check(
        "ERR-2",
        count_errors(&first, 0xA5) == 1,
        "one ERROR MALFORMED (offending 0xa5) for a 1-byte plaintext",
        describe(&first),
    );
    for _ in 0..3 {
        c.send_raw(&probe)?;
    }
    let again = gather(&mut c, QUIET)?;
    ctx.check(
        "REC-6",
        count_errors(&again, 0xA5) == 0,
        "no ERROR for the replayed copies of the probe (they are dropped before decryption)",
        describe(&again),
    );
    check_delta(
        ctx,
        "REC-6",
        &before,
        "replayed",
        4..=4,
        "one replayed DATA, three replayed probes",
    )?;
    ctx.pass();
    Ok(())
}

fn replay_window(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let before = must_counters(ctx)?;
    let s = c.tx_seq;
    // H becomes s + 100.
    let steps: [(u8, u64, bool, &str); 6] = [
        (0xB1, s + 100, true, "REC-7"),
        (0xB2, s + 36, false, "REC-6"), // = H - 64
        (0xB3, s + 37, true, "REC-7"),  // = H - 63
        (0xB4, s + 99, true, "REC-7"),
        (0xB5, s + 38, true, "REC-7"),
        (0xB6, s + 37, false, "REC-6"), // seen
    ];
    for (tag, seq, accept, req) in steps {
        let frame = seal_plain_at(c.remote_id, &c.tx, seq, &[tag]);
        let got = probe_accepted(&mut c, &frame, tag, accept)?;
        let h = s + 100;
        let rel = if seq <= h {
            format!("H-{}", h - seq)
        } else {
            "new H".to_string()
        };
        ctx.check(
            req,
            got == accept,
            format!(
                "record seq {seq} ({rel}) {}",
                if accept {
                    "accepted (answered with ERROR MALFORMED)"
                } else {
                    "dropped"
                }
            ),
            if got {
                "accepted".to_string()
            } else {
                "dropped".to_string()
            },
        );
    }
    c.tx_seq = s + 101;
    // Two reliable DATA records crossing each other inside the window.
    let r = c.next_rseq;
    let b = seal_msg_at(&c, s + 102, r + 1, data_body(sid, 2, b"second"));
    let a = seal_msg_at(&c, s + 101, r, data_body(sid, 1, b"first"));
    c.send_raw(&b)?;
    c.send_raw(&a)?;
    c.tx_seq = s + 103;
    c.next_rseq = r + 2;
    let echoes = echoes_within(&mut c, sid, 2, Duration::from_millis(800))?;
    ctx.check(
        "REC-7",
        echoes == [b"first".to_vec(), b"second".to_vec()],
        "both reordered records accepted (echoes \"first\", \"second\")",
        format!(
            "{:?}",
            echoes
                .iter()
                .map(|e| String::from_utf8_lossy(e).to_string())
                .collect::<Vec<_>>()
        ),
    );
    check_delta(
        ctx,
        "REC-6",
        &before,
        "replayed",
        2..=2,
        "one record too old, one seen",
    )?;
    ctx.pass();
    Ok(())
}

fn tampered_dropped(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let t = ctx.timeout();
    let before = must_counters(ctx)?;
    let rseq = c.next_rseq;
    c.next_rseq += 1;
    let body = data_body(sid, 1, b"genuine after forgeries");
    let seq = c.tx_seq;
    c.tx_seq += 1;
    let genuine = seal_msg_at(&c, seq, rseq, body.clone());
    let ahead = seal_msg_at(&c, seq + 200, rseq, body);
    let flip = |f: &[u8], i: usize| {
        let mut v = f.to_vec();
        v[i] ^= 0x01;
        v
    };
    let last = genuine.len() - 1;
    let forgeries: Vec<(&str, Vec<u8>)> = vec![
        ("a ciphertext bit flipped", flip(&genuine, 17)),
        ("a tag bit flipped", flip(&genuine, last)),
        ("the seq changed (AAD and nonce)", flip(&genuine, 14)),
        ("the epoch changed to 1", flip(&genuine, 6)),
        ("seq + 200 with a flipped ciphertext bit", flip(&ahead, 17)),
    ];
    for (_, f) in &forgeries {
        c.send_raw(f)?;
    }
    let ans = gather(&mut c, QUIET)?;
    let extra: Vec<String> = c
        .non_records
        .iter()
        .map(|r| hex::encode(&r[..r.len().min(12)]))
        .collect();
    ctx.check(
        "REC-8",
        ans.is_empty() && extra.is_empty(),
        format!(
            "nothing in answer to {} forged records ({})",
            forgeries.len(),
            forgeries.iter().map(|f| f.0).collect::<Vec<_>>().join("; ")
        ),
        format!("messages {}, other frames {:?}", describe(&ans), extra),
    );
    c.send_raw(&genuine)?;
    let got = ctx.must(
        "REC-8",
        "the genuine record accepted after the forgeries (window and keys unchanged by them)",
        c.recv_data(sid, t),
    );
    if let Some(got) = got {
        ctx.check(
            "REC-8",
            got == b"genuine after forgeries",
            "its echo",
            String::from_utf8_lossy(&got).to_string(),
        );
    }
    check_delta(
        ctx,
        "REC-8",
        &before,
        "auth_failed",
        5..=5,
        "one per forged record",
    )?;
    ctx.pass();
    Ok(())
}

fn unknown_conn_dropped(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let t = ctx.timeout();
    let before = must_counters(ctx)?;
    let msg = Message {
        rseq: c.next_rseq,
        body: data_body(sid, 1, b"to nobody"),
    };
    let others = [c.remote_id ^ 0x8000_0001, c.remote_id.wrapping_add(1), 0];
    for id in others {
        let seq = c.tx_seq;
        c.tx_seq += 1;
        // Sealed so that it would authenticate for a connection with that ID and our key.
        let f = seal_plain_at(id, &c.tx, seq, &msg.to_vec());
        c.send_raw(&f)?;
    }
    let ans = gather(&mut c, QUIET)?;
    let extra: Vec<String> = c
        .non_records
        .iter()
        .map(|r| hex::encode(&r[..r.len().min(12)]))
        .collect();
    ctx.check(
        "REC-5",
        ans.is_empty() && extra.is_empty(),
        format!("nothing in answer to RECORDs for conn_ids {others:08x?}"),
        format!("messages {}, other frames {:?}", describe(&ans), extra),
    );
    let mid = check_delta(
        ctx,
        "REC-5",
        &before,
        "unknown_connection",
        3..=3,
        "one per record for an unknown connection ID",
    )?;
    let mut echo = Echo::new(sid);
    let ok = echo.round(&mut c, b"still here", t);
    ctx.check(
        "ERR-6",
        ok.is_ok(),
        "the connection still echoes",
        format!("{:?}", ok.err()),
    );
    // A RECORD for a handshake in progress (the DUT awaits HANDSHAKE_3): no connection yet, and
    // the handshake still completes afterwards.
    let mut l2 = ctx.lower()?;
    ctx.pair(&mut l2)?;
    let mid = match mid {
        Some(m) => m,
        None => must_counters(ctx)?,
    };
    // (Its conn_id is set to the DUT's by the tester; no key could authenticate it yet.)
    let stray = seal_plain_at(
        0,
        &RecordKey::new([7; 32]),
        0,
        &Message::unreliable(MsgBody::Heartbeat).to_vec(),
    );
    let r = l2.handshake_opts(&HsOpts {
        pre_hs3: Some(stray),
        ..HsOpts::default()
    });
    match r {
        Ok(Ok(c2)) => ctx.keep_keys(&c2),
        Ok(Err(code)) => {
            ctx.check(
                "REC-5",
                false,
                "the handshake completes after a RECORD sent to it while half-open",
                format!("HANDSHAKE_REJECT {code}"),
            );
        }
        Err(StepError::Io(e)) => return Err(StepError::Io(e)),
        Err(e) => {
            ctx.check(
                "REC-5",
                false,
                "the handshake completes after a RECORD sent to it while half-open",
                e.to_string(),
            );
        }
    }
    check_delta(
        ctx,
        "REC-5",
        &mid,
        "unknown_connection",
        1..=1,
        "the record for the half-open handshake",
    )?;
    ctx.pass();
    Ok(())
}

fn peer_rekey(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let t = ctx.timeout();
    let mut echo = Echo::new(sid);
    echo.round(&mut c, b"epoch 0", t)?;
    let before = must_counters(ctx)?;
    let k0 = c.tx.clone();
    let dut_records = c.records.len();
    c.rekey();
    let switched = Instant::now();
    let r = echo.round(&mut c, b"epoch 1", t);
    if ctx
        .must(
            "REC-11",
            "a record under epoch 1 (the next key) accepted and echoed",
            r,
        )
        .is_none()
    {
        return Ok(());
    }
    // Within the 2 s grace: the previous epoch is still accepted.
    let seq = c.tx_seq;
    c.tx_seq += 1;
    let old = seal_plain_at(c.remote_id, &k0, seq, &[0xC1]);
    let got = probe_accepted(&mut c, &old, 0xC1, true)?;
    ctx.check(
        "REC-12",
        got,
        "a record under the previous epoch accepted within 2 s of the switch",
        format!("dropped {:?} after the switch", switched.elapsed()),
    );
    // Epochs that are neither current, next nor previous.
    let mut stale = 0;
    for (tag, ups) in [(0xC2u8, 3u8), (0xC3, 5)] {
        let mut k = k0.clone();
        for _ in 0..ups {
            k = k.rekeyed();
        }
        let seq = c.tx_seq;
        c.tx_seq += 1;
        let f = seal_plain_at(c.remote_id, &k, seq, &[tag]);
        let got = probe_accepted(&mut c, &f, tag, false)?;
        stale += 1;
        ctx.check(
            "REC-12",
            !got,
            format!("a record under epoch {} (current 1) dropped", k.epoch),
            "accepted",
        );
    }
    // After 2.5 s the previous epoch is gone.
    let wait = (switched + Duration::from_millis(2600)).saturating_duration_since(Instant::now());
    c.idle(wait, Duration::from_millis(400))?;
    let seq = c.tx_seq;
    c.tx_seq += 1;
    let late = seal_plain_at(c.remote_id, &k0, seq, &[0xC4]);
    let got = probe_accepted(&mut c, &late, 0xC4, false)?;
    stale += 1;
    ctx.check(
        "REC-12",
        !got,
        "a record under the previous epoch dropped more than 2.5 s after the switch",
        format!("accepted {:?} after the switch", switched.elapsed()),
    );
    check_delta(
        ctx,
        "REC-12",
        &before,
        "auth_failed",
        stale..=stale,
        "one per record under a stale epoch",
    )?;
    // Rekeying again works, and the DUT never followed with its own sending key.
    c.rekey();
    let r = echo.round(&mut c, b"epoch 2", t);
    ctx.check(
        "REC-11",
        r.is_ok(),
        "a record under epoch 2 accepted and echoed",
        format!("{:?}", r.err()),
    );
    c.collect(Duration::from_millis(50))?;
    let moved: Vec<(u64, u8)> = c.records[dut_records..]
        .iter()
        .filter(|r| r.epoch != 0)
        .map(|r| (r.seq, r.epoch))
        .collect();
    // REC-13 is a SHOULD NOT: logged, not judged.
    ctx.note(if moved.is_empty() {
        "REC-13: the DUT kept sending under its epoch 0 while the tester rekeyed".to_string()
    } else {
        format!("REC-13 (SHOULD NOT): the DUT changed its sending epoch after the tester rekeyed: (seq, epoch) {:?}", first_n(&moved, 5))
    });
    ctx.pass();
    Ok(())
}

// ------------------------------------------------------------------------------------ helpers

/// How long a case waits before concluding that nothing answers a record (the ACK bound is
/// 100 ms; ERROR has no bound of its own).
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// The DUT's counters (spec 14.4 `counters`), by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters(BTreeMap<String, u64>);

impl Counters {
    /// One counter, if the DUT reports it.
    pub(crate) fn get(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }
}

/// Read the counters from `state`. `Ok(None)` when the DUT has exited (a crash is judged by the
/// case and the runner, and the control channel is gone) or reports no `counters` object (FAIL
/// naming ERR-7).
pub(crate) fn counters(ctx: &mut Ctx<'_>) -> Result<Option<Counters>, StepError> {
    if ctx.dut.exited().is_some() {
        return Ok(None);
    }
    let st = ctx.upper()?.state()?;
    let Some(obj) = st["counters"].as_object() else {
        ctx.check(
            "ERR-7",
            false,
            "`state` reports a `counters` object",
            st["counters"].to_string(),
        );
        return Ok(None);
    };
    Ok(Some(Counters(
        obj.iter()
            .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
            .collect(),
    )))
}

/// Counters before a step (empty when the DUT cannot report them: that is judged at once, and
/// the comparisons after the step are skipped).
pub(crate) fn must_counters(ctx: &mut Ctx<'_>) -> Result<Counters, StepError> {
    Ok(counters(ctx)?.unwrap_or_default())
}

/// Check that counter `name` grew by an amount in `want` since `before`, naming `req` when it
/// did not (and ERR-7 when the DUT does not report it). Returns the counters read.
pub(crate) fn check_delta(
    ctx: &mut Ctx<'_>,
    req: &str,
    before: &Counters,
    name: &str,
    want: std::ops::RangeInclusive<u64>,
    what: &str,
) -> Result<Option<Counters>, StepError> {
    let Some(after) = counters(ctx)? else {
        return Ok(None);
    };
    match (before.get(name), after.get(name)) {
        (Some(b), Some(a)) => {
            let d = i128::from(a) - i128::from(b);
            let range = if want.start() == want.end() {
                format!("{}", want.start())
            } else if *want.end() == u64::MAX {
                format!("at least {}", want.start())
            } else {
                format!("{} to {}", want.start(), want.end())
            };
            ctx.check(
                req,
                u64::try_from(d).is_ok_and(|d| want.contains(&d)),
                format!("`{name}` up by {range} ({what})"),
                format!("up by {d}"),
            );
        }
        (None, _) if before.0.is_empty() => {}
        _ => {
            ctx.check(
                "ERR-7",
                false,
                format!("`state` reports the counter `{name}`"),
                "missing",
            );
        }
    }
    Ok(Some(after))
}

/// Seal any plaintext (possibly not a valid inner message) as the connection's next record.
pub(crate) fn seal_plain(c: &mut SecureConn, plaintext: &[u8]) -> Vec<u8> {
    let seq = c.tx_seq;
    c.tx_seq += 1;
    seal_plain_at(c.remote_id, &c.tx, seq, plaintext)
}

/// Seal any plaintext as a record to `conn_id` with `key` and an explicit seq.
pub(crate) fn seal_plain_at(conn_id: u32, key: &RecordKey, seq: u64, plaintext: &[u8]) -> Vec<u8> {
    Frame {
        conn_id,
        body: Body::Record {
            epoch: key.epoch,
            seq,
            ciphertext: key.seal(conn_id, seq, plaintext),
        },
    }
    .to_vec()
}

/// Seal a message with an explicit rseq and seq (the connection's counters are left alone).
pub(crate) fn seal_msg_at(c: &SecureConn, seq: u64, rseq: u32, body: MsgBody) -> Vec<u8> {
    c.seal_at(&Message { rseq, body }, seq)
}

/// A one-fragment DATA body.
pub(crate) fn data_body(session_id: u32, msg_id: u32, payload: &[u8]) -> MsgBody {
    MsgBody::Data {
        session_id,
        msg_id,
        frag_index: 0,
        frag_count: 1,
        payload: payload.to_vec(),
    }
}

/// Every message but HEARTBEAT that arrives within `dur` (ACKs included), in order.
pub(crate) fn gather(c: &mut SecureConn, dur: Duration) -> Result<Vec<Message>, StepError> {
    Ok(c.collect(dur)?
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| !matches!(m.body, MsgBody::Heartbeat))
        .collect())
}

/// Like [`gather`], with arrival times.
pub(crate) fn gather_timed(
    c: &mut SecureConn,
    dur: Duration,
) -> Result<Vec<(Instant, Message)>, StepError> {
    Ok(c.collect(dur)?
        .into_iter()
        .filter(|(_, m)| !matches!(m.body, MsgBody::Heartbeat))
        .collect())
}

/// ERROR MALFORMED messages naming `offending`.
pub(crate) fn count_errors(msgs: &[Message], offending: u8) -> usize {
    msgs.iter()
        .filter(|m| matches!(m.body, MsgBody::Error { code: Code::Malformed, offending: o } if o == offending))
        .count()
}

/// Send `frame` (a record carrying the 1-byte plaintext `tag`) and report whether the DUT
/// accepted it, i.e. answered with ERROR MALFORMED naming `tag` ([ERR-2]). When `expect` is true
/// the wait ends as soon as the answer comes.
pub(crate) fn probe_accepted(
    c: &mut SecureConn,
    frame: &[u8],
    tag: u8,
    expect: bool,
) -> Result<bool, StepError> {
    c.send_raw(frame)?;
    let wait = if expect {
        Duration::from_millis(800)
    } else {
        QUIET
    };
    let end = Instant::now() + wait;
    let mut seen = false;
    while Instant::now() < end && !seen {
        let left = end.saturating_duration_since(Instant::now());
        seen = count_errors(&gather(c, left.min(Duration::from_millis(50)))?, tag) > 0;
        if seen && !expect {
            break;
        }
    }
    Ok(seen)
}

/// Up to `n` single-fragment DATA payloads received on `sid` within `dur`, in arrival order.
pub(crate) fn echoes_within(
    c: &mut SecureConn,
    sid: u32,
    n: usize,
    dur: Duration,
) -> Result<Vec<Vec<u8>>, StepError> {
    let end = Instant::now() + dur;
    let mut out = Vec::new();
    while out.len() < n {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        for m in gather(c, left.min(Duration::from_millis(50)))? {
            if let MsgBody::Data {
                session_id,
                payload,
                ..
            } = m.body
            {
                if session_id == sid {
                    out.push(payload);
                }
            }
        }
    }
    Ok(out)
}

/// Decrypt every record the DUT sent on `c`: `(seq, epoch, plaintext)`, `rx0` being the
/// receive key at epoch 0 (later epochs are derived from it).
pub(crate) fn opened(c: &SecureConn, rx0: &RecordKey) -> Vec<(u64, u8, Option<Vec<u8>>)> {
    let mut keys: BTreeMap<u8, RecordKey> = BTreeMap::new();
    keys.insert(rx0.epoch, rx0.clone());
    let mut out = Vec::new();
    for r in &c.records {
        keys.entry(r.epoch).or_insert_with(|| {
            let mut k = rx0.clone();
            while k.epoch != r.epoch {
                k = k.rekeyed();
            }
            k
        });
        let pt = Frame::parse(&r.frame).ok().and_then(|f| match f.body {
            Body::Record {
                seq, ciphertext, ..
            } => keys
                .get(&r.epoch)
                .and_then(|k| k.open(c.local_id, seq, &ciphertext).ok()),
            _ => None,
        });
        out.push((r.seq, r.epoch, pt));
    }
    out
}

/// The first `n` items, for FAIL reports.
pub(crate) fn first_n<T: Clone>(v: &[T], n: usize) -> Vec<T> {
    v.iter().take(n).cloned().collect()
}

/// Echo service client on one message session: numbers messages 1, 2, 3, ...
pub(crate) struct Echo {
    /// The session.
    pub sid: u32,
    next_msg: u32,
}

impl Echo {
    /// A client for the open echo session `sid`.
    pub(crate) fn new(sid: u32) -> Echo {
        Echo { sid, next_msg: 1 }
    }

    /// The msg_id the next message gets.
    pub(crate) fn take_msg_id(&mut self) -> u32 {
        let id = self.next_msg;
        self.next_msg += 1;
        id
    }

    /// Send `data` and wait for the echo.
    pub(crate) fn round(
        &mut self,
        c: &mut SecureConn,
        data: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, StepError> {
        let id = self.take_msg_id();
        c.send_data(self.sid, id, data, ChannelKind::Message)?;
        c.recv_data(self.sid, timeout)
    }
}
