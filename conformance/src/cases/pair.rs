//! Section 5, PIN pairing with SPAKE2 and the trust store.
//!
//! > [PAIR-4] A responder that has a PIN configured and is not locked out MUST answer a
//! > well-formed PAIR_REQUEST with a PAIR_RESPONSE carrying the same pairing_id within 500 ms.
//! >
//! > [PAIR-7] A responder MUST answer a PAIR_CONFIRM for its pending pairing whose confirm_A is
//! > wrong with a PAIR_RESULT carrying status PAIRING_FAILED (5) and a zero mac, and count a
//! > failure.
//! >
//! > [PAIR-11] A responder that counts its third failure within 60 s MUST enter a lockout [...]
//!
//! > [PAIR-17] A responder MUST answer a byte-for-byte repeat, from the same address and within
//! > 10 s of its PAIR_RESULT, of the PAIR_CONFIRM that ended its last pairing with a
//! > byte-identical copy of that PAIR_RESULT, without counting a failure, pinning a key or
//! > reporting an event for it.
//!
//! (and PAIR-2, 3, 5, 9, 10, 12, 13: see each case's requirement list.)

use std::time::{Duration, Instant};

use serde_json::json;
use softbus::wire::frame::{Body, Frame};
use softbus::wire::Code;

use crate::case::{Case, Ctx};
use crate::cases::steps::T_RESP;
use crate::tester::lower::{LowerTester, StepError};

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-PAIR-001",
            title: "pairs with the right PIN and pins the tester's key",
            requirements: &["PAIR-1", "PAIR-2", "PAIR-4", "PAIR-9"],
            pics: "PAIR_PIN",
            pixit: &["pin"],
            transport: "udp",
            run: right_pin_pairs,
        },
        Case {
            id: "SB-PAIR-002",
            title: "refuses a wrong PIN with PAIRING_FAILED and pins nothing",
            requirements: &["PAIR-7", "PAIR-9"],
            pics: "PAIR_PIN",
            pixit: &["pin"],
            transport: "udp",
            run: wrong_pin_refused,
        },
        Case {
            id: "SB-PAIR-003",
            title: "locks pairing out after three wrong PINs, even for the right PIN, until the lockout ends",
            requirements: &["PAIR-11", "PAIR-12", "PAIR-13"],
            pics: "PAIR_PIN",
            pixit: &["pin", "lockout_ms"],
            transport: "udp",
            run: wrong_pins_rate_limited,
        },
        Case {
            id: "SB-PAIR-004",
            title: "refuses pairing without a PIN and uses a fresh SPAKE2 scalar per attempt",
            requirements: &["PAIR-1", "PAIR-3", "PAIR-5"],
            pics: "PAIR_PIN",
            pixit: &["pin"],
            transport: "udp",
            run: no_pin_and_fresh_scalars,
        },
        Case {
            id: "SB-PAIR-005",
            title: "answers a repeated PAIR_REQUEST with an identical PAIR_RESPONSE",
            requirements: &["PAIR-10"],
            pics: "PAIR_PIN",
            pixit: &["pin"],
            transport: "udp",
            run: repeated_request_same_answer,
        },
        Case {
            id: "SB-PAIR-006",
            title: "refuses an invalid SPAKE2 message with PAIRING_FAILED without counting it toward the lockout",
            requirements: &["PAIR-6"],
            pics: "PAIR_PIN",
            pixit: &["pin"],
            transport: "udp",
            run: invalid_spake_message_refused,
        },
        Case {
            id: "SB-PAIR-007",
            title: "counts an abandoned pairing as a failure, so unconfirmed requests cannot bypass the lockout",
            requirements: &["PAIR-8", "PAIR-11"],
            pics: "PAIR_PIN",
            pixit: &["pin", "lockout_ms"],
            transport: "udp",
            run: abandoned_pairings_count,
        },
        Case {
            id: "SB-PAIR-008",
            title: "as initiator, sends no PAIR_CONFIRM when the responder's confirmation is wrong",
            requirements: &["PAIR-14"],
            pics: "PAIR_PIN && CTRL",
            pixit: &["pin"],
            transport: "udp",
            run: initiator_checks_confirm_b,
        },
        Case {
            id: "SB-PAIR-009",
            title: "as initiator, pins the responder only after a PAIR_RESULT with a valid MAC",
            requirements: &["PAIR-15", "PAIR-2"],
            pics: "PAIR_PIN && CTRL",
            pixit: &["pin"],
            transport: "udp",
            run: initiator_checks_result_mac,
        },
        Case {
            id: "SB-PAIR-010",
            title: "locks out PAIR_REQUESTs from every address, and makes a second lockout last twice as long as the first",
            requirements: &["PAIR-11"],
            pics: "PAIR_PIN",
            pixit: &["pin", "lockout_ms"],
            transport: "udp",
            run: lockout_everywhere_and_doubling,
        },
        Case {
            id: "SB-PAIR-011",
            title: "counts a pairing left unconfirmed as a failure once its 10 s pass, with failures spread over them",
            requirements: &["PAIR-8", "PAIR-10", "PAIR-11"],
            pics: "PAIR_PIN",
            pixit: &["pin"],
            transport: "udp",
            run: unconfirmed_pairing_times_out_as_failure,
        },
        Case {
            id: "SB-PAIR-012",
            title: "answers a repeat of the PAIR_CONFIRM that ended its last pairing with the same PAIR_RESULT, counting nothing",
            requirements: &["PAIR-17"],
            pics: "PAIR_PIN && CTRL",
            pixit: &["pin"],
            transport: "udp",
            run: repeated_confirm_answered_again,
        },
    ]
}

/// The last PAIR_CONFIRM the tester sent and the last PAIR_RESULT it received, raw.
fn last_confirm_and_result(lt: &LowerTester) -> Option<(Vec<u8>, Vec<u8>)> {
    let is = |s: &&crate::tester::lower::Seen, outbound: bool, confirm: bool| {
        s.outbound == outbound
            && Frame::parse(&s.bytes).is_ok_and(|f| {
                if confirm {
                    matches!(f.body, Body::PairConfirm { .. })
                } else {
                    matches!(f.body, Body::PairResult { .. })
                }
            })
    };
    let confirm = lt.trace.iter().rev().find(|s| is(s, true, true))?;
    let result = lt.trace.iter().rev().find(|s| is(s, false, false))?;
    Some((confirm.bytes.clone(), result.bytes.clone()))
}

/// A lost PAIR_RESULT, as the initiator sees it: repeat the PAIR_CONFIRM `times` times and
/// check each repeat is answered with a byte-identical copy of the PAIR_RESULT.
fn repeat_confirm(
    ctx: &mut Ctx<'_>,
    lt: &mut LowerTester,
    what: &str,
    times: usize,
) -> Result<(), StepError> {
    let Some((confirm, result)) = last_confirm_and_result(lt) else {
        return Err(StepError::Unexpected(format!(
            "preamble: no PAIR_CONFIRM and PAIR_RESULT of the {what} pairing in the trace"
        )));
    };
    for i in 1..=times {
        lt.send_raw(&confirm)?;
        let sent = Instant::now();
        let again = lt.recv_raw(T_RESP + Duration::from_millis(200))?;
        let late = sent.elapsed() > T_RESP;
        ctx.check(
            "PAIR-17",
            again.as_deref() == Some(result.as_slice()) && !late,
            format!("repeat {i} of the {what} pairing's PAIR_CONFIRM answered within T_RESP with a byte-identical PAIR_RESULT"),
            match &again {
                None => "no answer".to_string(),
                Some(b) if b == &result && late => format!("the same PAIR_RESULT after {:?}", sent.elapsed()),
                Some(b) => format!("{} (the PAIR_RESULT was {})", hex::encode(b), hex::encode(&result)),
            },
        );
    }
    Ok(())
}

fn repeated_confirm_answered_again(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    use crate::cases::rec::{check_delta, must_counters};
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    let pin = ctx.pixit.pin.clone();
    // A wrong PIN: one failure. Three repeats of its PAIR_CONFIRM would start a lockout if
    // they counted (PAIR-11), and must each get the same PAIRING_FAILED.
    let out = lt.pair(&wrong_pin(&pin), true)?;
    ctx.check(
        "PAIR-7",
        out.status == Code::PairingFailed,
        "PAIRING_FAILED for a wrong PIN",
        out.status.to_string(),
    );
    let before = must_counters(ctx)?;
    repeat_confirm(ctx, &mut lt, "failed", 3)?;
    check_delta(
        ctx,
        "PAIR-17",
        &before,
        "pairing_failures",
        0..=0,
        "(three repeated PAIR_CONFIRMs)",
    )?;
    // The right PIN still pairs (no lockout), and a repeat of its PAIR_CONFIRM gets the same OK.
    let ok = lt.pair(&pin, false)?;
    ctx.check(
        "PAIR-17",
        ok.status == Code::Ok,
        "the right PIN pairs after the repeats (they counted no failure)",
        ok.status.to_string(),
    );
    if ok.status == Code::Ok {
        ctx.upper()?.skip_events()?;
        repeat_confirm(ctx, &mut lt, "successful", 1)?;
        let events = ctx.upper()?.poll_events()?;
        let paired: Vec<_> = events.iter().filter(|e| e["type"] == "paired").collect();
        ctx.check(
            "PAIR-17",
            paired.is_empty(),
            "no `paired` event for the repeat",
            format!("{paired:?}"),
        );
    }
    ctx.pass();
    Ok(())
}

fn right_pin_pairs(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    let pin = ctx.pixit.pin.clone();
    let started = Instant::now();
    let Some(out) = ctx.must(
        "PAIR-4",
        "a PAIR_RESPONSE and PAIR_RESULT",
        lt.pair(&pin, false),
    ) else {
        return Ok(());
    };
    ctx.note(format!("pairing took {:?}: {out:?}", started.elapsed()));
    ctx.check(
        "PAIR-2",
        out.responder_confirm_ok,
        "confirm_B computed as in 5.2",
        "confirm_B mismatch",
    );
    ctx.check(
        "PAIR-9",
        out.status == Code::Ok,
        "PAIR_RESULT OK",
        out.status.to_string(),
    );
    ctx.check(
        "PAIR-2",
        out.result_mac_ok,
        "PAIR_RESULT mac as in 5.2",
        "mac mismatch",
    );
    let st = ctx.upper()?.state()?;
    let me = lt.identity.device_id().to_hex();
    let pinned = st["pinned"]
        .as_array()
        .is_some_and(|a| a.iter().any(|p| p == &json!(me)));
    ctx.check(
        "PAIR-9",
        pinned,
        format!("the tester ({me}) pinned in state"),
        st["pinned"].to_string(),
    );
    // The pin must be usable: a handshake now succeeds.
    let hs = lt.handshake();
    ctx.check(
        "PAIR-9",
        hs.is_ok(),
        "a handshake after pairing succeeds",
        format!("{:?}", hs.err()),
    );
    ctx.pass();
    Ok(())
}

fn wrong_pin(pin: &str) -> String {
    // Same length, different digits.
    pin.bytes()
        .map(|b| (b'0' + (b - b'0' + 5) % 10) as char)
        .collect()
}

fn wrong_pin_refused(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    let bad = wrong_pin(&ctx.pixit.pin);
    let Some(out) = ctx.must("PAIR-7", "a PAIR_RESULT", lt.pair(&bad, true)) else {
        return Ok(());
    };
    ctx.check(
        "PAIR-7",
        out.status == Code::PairingFailed,
        "PAIR_RESULT PAIRING_FAILED",
        out.status.to_string(),
    );
    let hs = lt.handshake_with(None, false)?;
    ctx.check(
        "PAIR-9",
        matches!(hs, Err(Code::UnknownPeer)),
        "the tester is not pinned: handshake rejected UNKNOWN_PEER",
        format!("{:?}", hs.as_ref().err()),
    );
    ctx.pass();
    Ok(())
}

fn wrong_pins_rate_limited(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    let bad = wrong_pin(&ctx.pixit.pin);
    let pin = ctx.pixit.pin.clone();
    for i in 0..3 {
        let out = lt.pair(&bad, true)?;
        ctx.note(format!("wrong PIN attempt {}: {}", i + 1, out.status));
    }
    let locked_at = Instant::now();
    let out = lt.pair(&pin, false)?;
    ctx.check(
        "PAIR-11",
        out.status == Code::RateLimited,
        "RATE_LIMITED for the right PIN during the lockout",
        out.status.to_string(),
    );
    // Requests during the lockout must not extend it.
    let again = lt.pair(&pin, false)?;
    ctx.check(
        "PAIR-12",
        again.status == Code::RateLimited,
        "still RATE_LIMITED",
        again.status.to_string(),
    );
    let lockout = Duration::from_millis(ctx.pixit.lockout_ms);
    let wait = (locked_at + lockout + Duration::from_millis(300))
        .saturating_duration_since(Instant::now());
    ctx.note(format!("waiting {wait:?} for the lockout to end"));
    std::thread::sleep(wait);
    let after = lt.pair(&pin, false)?;
    ctx.check(
        "PAIR-13",
        after.status == Code::Ok,
        "pairing works again after the lockout",
        after.status.to_string(),
    );
    ctx.pass();
    Ok(())
}

fn no_pin_and_fresh_scalars(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.upper()?.reset()?; // after reset a device has no PIN
    let mut lt = ctx.lower()?;
    let pin = ctx.pixit.pin.clone();
    let out = lt.pair(&pin, false)?;
    ctx.check(
        "PAIR-5",
        out.status == Code::PairingFailed,
        "PAIRING_FAILED without a PIN",
        out.status.to_string(),
    );
    ctx.upper()?.call(json!({"op": "set_pin", "pin": pin}))?;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let before = lt.trace.len();
        lt.pair(&pin, false)?;
        for s in &lt.trace[before..] {
            if let Ok(Frame {
                body: Body::PairResponse { spake_msg, .. },
                ..
            }) = Frame::parse(&s.bytes)
            {
                seen.push(spake_msg);
            }
        }
    }
    let mut uniq = seen.clone();
    uniq.sort();
    uniq.dedup();
    ctx.check(
        "PAIR-3",
        seen.len() == 3 && uniq.len() == 3,
        "3 distinct SPAKE2 messages B",
        format!("{} of {}", uniq.len(), seen.len()),
    );
    ctx.pass();
    Ok(())
}

fn repeated_request_same_answer(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    let pin = ctx.pixit.pin.clone();
    let (_, msg_a) = softbus::crypto::spake2_start_a(&pin, rand::thread_rng());
    let Ok(spake_msg) = <[u8; 33]>::try_from(msg_a.as_slice()) else {
        return Err(StepError::Unexpected("SPAKE2 message length".into()));
    };
    let req = Frame {
        conn_id: 0,
        body: Body::PairRequest {
            pairing_id: 0x5151_5151,
            static_key: *lt.identity.public(),
            spake_msg,
        },
    };
    let t = lt.timeout;
    lt.send_frame(&req)?;
    let first = lt.expect_frame(t, "PAIR_RESPONSE", |f| {
        matches!(f.body, Body::PairResponse { .. })
    })?;
    lt.send_frame(&req)?;
    let second = ctx.must(
        "PAIR-10",
        "a PAIR_RESPONSE to the repeated PAIR_REQUEST",
        lt.expect_frame(t, "PAIR_RESPONSE", |f| {
            matches!(f.body, Body::PairResponse { .. })
        }),
    );
    if let Some(second) = second {
        ctx.check(
            "PAIR-10",
            first == second,
            "a byte-identical PAIR_RESPONSE",
            "a different PAIR_RESPONSE",
        );
    }
    ctx.pass();
    Ok(())
}

fn invalid_spake_message_refused(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    let t = lt.timeout;
    // More invalid requests than the lockout threshold: none of them may count.
    let bad_point = invalid_element()
        .ok_or_else(|| StepError::Unexpected("no invalid Ed25519 encoding found".into()))?;
    let mut wrong_side = bad_point;
    wrong_side[0] = 0x42;
    let mut wrong_side_good_point = bad_point;
    wrong_side_good_point[0] = 0x00;
    for (i, spake_msg) in [bad_point, wrong_side, wrong_side_good_point, bad_point]
        .into_iter()
        .enumerate()
    {
        let pairing_id = 0x6000 + i as u32;
        let request = Frame {
            conn_id: 0,
            body: Body::PairRequest {
                pairing_id,
                static_key: *lt.identity.public(),
                spake_msg,
            },
        };
        let r = lt.exchange(&request, t, "an answer to an invalid PAIR_REQUEST", |f| {
            matches!(&f.body, Body::PairResult { pairing_id: p, .. } | Body::PairResponse { pairing_id: p, .. } if *p == pairing_id)
        });
        match r {
            Ok(Frame {
                body: Body::PairResult { status, mac, .. },
                ..
            }) => {
                ctx.check(
                    "PAIR-6",
                    status == Code::PairingFailed,
                    "PAIR_RESULT PAIRING_FAILED",
                    status.to_string(),
                );
                ctx.check("PAIR-6", mac == [0u8; 32], "a zero mac", hex::encode(mac));
            }
            Ok(other) => {
                ctx.check(
                    "PAIR-6",
                    false,
                    "PAIR_RESULT PAIRING_FAILED",
                    format!("{:?}", other.frame_type()),
                );
            }
            Err(e) => {
                ctx.check("PAIR-6", false, "PAIR_RESULT PAIRING_FAILED", e.to_string());
            }
        }
    }
    let pin = ctx.pixit.pin.clone();
    let out = lt.pair(&pin, false)?;
    ctx.check(
        "PAIR-6",
        out.status == Code::Ok,
        "pairing still works: invalid requests are not lockout failures",
        out.status.to_string(),
    );
    ctx.pass();
    Ok(())
}

fn abandoned_pairings_count(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    let pin = ctx.pixit.pin.clone();
    let t = lt.timeout;
    // Four right-PIN requests never confirmed: each new one abandons the pending one, and the
    // third abandonment starts the lockout, so the fourth request is refused.
    let mut last = None;
    for i in 0..4u32 {
        let (_, msg_a) = softbus::crypto::spake2_start_a(&pin, rand::thread_rng());
        let Ok(spake_msg) = <[u8; 33]>::try_from(msg_a.as_slice()) else {
            return Err(StepError::Unexpected("SPAKE2 message length".into()));
        };
        let pairing_id = 0x7000 + i;
        lt.send_frame(&Frame {
            conn_id: 0,
            body: Body::PairRequest {
                pairing_id,
                static_key: *lt.identity.public(),
                spake_msg,
            },
        })?;
        let f = lt.expect_frame(t, "PAIR_RESPONSE or PAIR_RESULT", |f| {
            matches!(&f.body, Body::PairResult { pairing_id: p, .. } | Body::PairResponse { pairing_id: p, .. } if *p == pairing_id)
        })?;
        last = Some(f);
    }
    let status = match last.map(|f| f.body) {
        Some(Body::PairResult { status, .. }) => status.to_string(),
        Some(Body::PairResponse { .. }) => "PAIR_RESPONSE (no lockout)".to_string(),
        _ => "nothing".to_string(),
    };
    ctx.check(
        "PAIR-8",
        status == Code::RateLimited.to_string(),
        "RATE_LIMITED for the 4th request after 3 abandoned pairings",
        status,
    );
    ctx.pass();
    Ok(())
}

/// The DUT pairs with the tester (control `pair`); the tester answers as responder and lets
/// `respond` decide what to send. Returns the DUT's PAIR_REQUEST context.
struct Responder {
    pairing_id: u32,
    dut_key: [u8; 32],
    msg_a: Vec<u8>,
}

fn dut_pairs_with_tester(
    ctx: &mut Ctx<'_>,
    lt: &mut crate::tester::lower::LowerTester,
) -> Result<Option<Responder>, StepError> {
    let addr = format!("udp:{}", lt.local_addr());
    let pin = ctx.pixit.pin.clone();
    ctx.upper()?
        .call(json!({"op": "pair", "addr": addr, "pin": pin}))?;
    let t = lt.timeout;
    let f = lt.expect_frame(t, "the DUT's PAIR_REQUEST", |f| {
        matches!(f.body, Body::PairRequest { .. })
    })?;
    let Body::PairRequest {
        pairing_id,
        static_key,
        spake_msg,
    } = f.body
    else {
        return Ok(None);
    };
    Ok(Some(Responder {
        pairing_id,
        dut_key: static_key,
        msg_a: spake_msg.to_vec(),
    }))
}

fn respond(
    lt: &mut crate::tester::lower::LowerTester,
    pin: &str,
    r: &Responder,
    corrupt_confirm: bool,
) -> Result<softbus::crypto::PairingTranscript, StepError> {
    let (spake, msg_b) = softbus::crypto::spake2_start_b(pin, rand::thread_rng());
    let key = spake.finish(&r.msg_a).map_err(|e| {
        StepError::Unexpected(format!("the DUT's SPAKE2 message A is invalid: {e:?}"))
    })?;
    let tr = softbus::crypto::PairingTranscript::new(
        key,
        &r.dut_key,
        lt.identity.public(),
        &r.msg_a,
        &msg_b,
    );
    let mut confirm = tr.responder_confirm();
    if corrupt_confirm {
        confirm[0] ^= 0x80;
    }
    let Ok(spake_msg) = <[u8; 33]>::try_from(msg_b.as_slice()) else {
        return Err(StepError::Unexpected("SPAKE2 message length".into()));
    };
    lt.send_frame(&Frame {
        conn_id: 0,
        body: Body::PairResponse {
            pairing_id: r.pairing_id,
            static_key: *lt.identity.public(),
            spake_msg,
            confirm,
        },
    })?;
    Ok(tr)
}

fn initiator_checks_confirm_b(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    let Some(r) = dut_pairs_with_tester(ctx, &mut lt)? else {
        return Ok(());
    };
    let pin = ctx.pixit.pin.clone();
    respond(&mut lt, &pin, &r, true)?;
    let t = lt.timeout;
    let f = lt.expect_frame(t, "PAIR_RESULT or PAIR_CONFIRM", |f| {
        matches!(&f.body, Body::PairConfirm { pairing_id: p, .. } | Body::PairResult { pairing_id: p, .. } if *p == r.pairing_id)
    });
    match f {
        Ok(Frame {
            body: Body::PairResult { status, mac, .. },
            ..
        }) => {
            ctx.check(
                "PAIR-14",
                status == Code::PairingFailed,
                "PAIR_RESULT PAIRING_FAILED",
                status.to_string(),
            );
            ctx.check("PAIR-14", mac == [0u8; 32], "a zero mac", hex::encode(mac));
        }
        Ok(_) => {
            ctx.check(
                "PAIR-14",
                false,
                "no PAIR_CONFIRM after a wrong confirm_B",
                "PAIR_CONFIRM sent",
            );
        }
        Err(e) => {
            ctx.check(
                "PAIR-14",
                false,
                "PAIR_RESULT PAIRING_FAILED",
                e.to_string(),
            );
        }
    }
    let me = lt.identity.device_id().to_hex();
    let st = ctx.upper()?.state()?;
    let pinned = st["pinned"]
        .as_array()
        .is_some_and(|a| a.iter().any(|p| p == &json!(me)));
    ctx.check("PAIR-14", !pinned, "the tester not pinned", "pinned");
    ctx.pass();
    Ok(())
}

fn initiator_checks_result_mac(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    let Some(r) = dut_pairs_with_tester(ctx, &mut lt)? else {
        return Ok(());
    };
    let pin = ctx.pixit.pin.clone();
    let tr = respond(&mut lt, &pin, &r, false)?;
    let t = lt.timeout;
    let confirm = ctx.must(
        "PAIR-2",
        "PAIR_CONFIRM after a correct confirm_B",
        lt.expect_frame(
            t,
            "PAIR_CONFIRM",
            |f| matches!(&f.body, Body::PairConfirm { pairing_id: p, .. } if *p == r.pairing_id),
        ),
    );
    let Some(Frame {
        body: Body::PairConfirm { confirm, .. },
        ..
    }) = confirm
    else {
        return Ok(());
    };
    ctx.check(
        "PAIR-2",
        softbus::crypto::ct_eq(&confirm, &tr.initiator_confirm()),
        "confirm_A as in 5.2",
        hex::encode(confirm),
    );
    // A forged OK: wrong MAC. The DUT must not pin us and must keep waiting.
    lt.send_frame(&Frame {
        conn_id: 0,
        body: Body::PairResult {
            pairing_id: r.pairing_id,
            status: Code::Ok,
            mac: [0x11; 32],
        },
    })?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    let me = lt.identity.device_id().to_hex();
    let st = ctx.upper()?.state()?;
    let pinned = st["pinned"]
        .as_array()
        .is_some_and(|a| a.iter().any(|p| p == &json!(me)));
    ctx.check(
        "PAIR-15",
        !pinned,
        "not pinned after a PAIR_RESULT OK with a wrong mac",
        "pinned",
    );
    // The genuine result still completes the pairing.
    lt.send_frame(&Frame {
        conn_id: 0,
        body: Body::PairResult {
            pairing_id: r.pairing_id,
            status: Code::Ok,
            mac: tr.result_mac(0),
        },
    })?;
    let paired = ctx.upper()?.wait_event(t, "paired", |e| {
        e["type"] == json!("paired") && e["peer"] == json!(me)
    });
    ctx.check(
        "PAIR-15",
        paired.is_ok(),
        "paired after the genuine PAIR_RESULT",
        format!("{:?}", paired.err()),
    );
    ctx.pass();
    Ok(())
}

/// A side-A message (0x41 || 32 bytes) whose point does not decode to a group element, as judged
/// by the SPAKE2 library itself: the first small y-coordinate that is not on the curve.
fn invalid_element() -> Option<[u8; 33]> {
    (2u8..=255).find_map(|y| {
        let mut m = [0u8; 33];
        m[0] = 0x41;
        m[1] = y;
        let (b, _) = softbus::crypto::spake2_start_b("000000", rand::thread_rng());
        b.finish(&m).is_err().then_some(m)
    })
}

/// Three wrong PINs from `lt`; returns when the PAIR_RESULT of the third arrived (the lockout
/// starts no later than that on the DUT).
fn three_wrong_pins(ctx: &mut Ctx<'_>, lt: &mut LowerTester) -> Result<Instant, StepError> {
    let bad = wrong_pin(&ctx.pixit.pin);
    for i in 0..3 {
        let out = lt.pair(&bad, true)?;
        ctx.note(format!("wrong PIN attempt {}: {}", i + 1, out.status));
    }
    Ok(Instant::now())
}

/// Pair with the right PIN at `at` (sleeping until then); the PAIR_RESULT's status.
fn right_pin_at(ctx: &mut Ctx<'_>, lt: &mut LowerTester, at: Instant) -> Result<Code, StepError> {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
    let pin = ctx.pixit.pin.clone();
    Ok(lt.pair(&pin, false)?.status)
}

fn lockout_everywhere_and_doubling(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let lockout = ctx.pixit.lockout();
    let margin = Duration::from_millis(300);
    let mut lt = ctx.lower()?;
    let first = three_wrong_pins(ctx, &mut lt)?;
    // Another address, during the lockout: refused too ("answers every PAIR_REQUEST").
    let mut other = ctx.lower()?;
    ctx.note(format!(
        "failures from {}, probe from {}",
        lt.local_addr(),
        other.local_addr()
    ));
    let status = right_pin_at(ctx, &mut other, Instant::now())?;
    ctx.check(
        "PAIR-11",
        status == Code::RateLimited,
        "RATE_LIMITED for the right PIN from another address during the lockout",
        status.to_string(),
    );
    // The first lockout ends after lockout_ms; three more failures start the second.
    let status = right_pin_at(ctx, &mut lt, first + lockout + margin)?;
    ctx.check(
        "PAIR-13",
        status == Code::Ok,
        format!("pairing works again {lockout:?} + {margin:?} after the first lockout began"),
        status.to_string(),
    );
    let second = three_wrong_pins(ctx, &mut lt)?;
    // Just past the first lockout's length, inside the second's (twice as long).
    let status = right_pin_at(ctx, &mut lt, second + lockout + margin)?;
    ctx.check(
        "PAIR-11",
        status == Code::RateLimited,
        format!(
            "RATE_LIMITED {:?} after the second lockout began (it lasts {:?})",
            lockout + margin,
            lockout * 2
        ),
        status.to_string(),
    );
    // Just past twice the first.
    let status = right_pin_at(ctx, &mut lt, second + lockout * 2 + margin)?;
    ctx.check(
        "PAIR-11",
        status == Code::Ok,
        format!(
            "pairing works again {:?} after the second lockout began",
            lockout * 2 + margin
        ),
        status.to_string(),
    );
    ctx.pass();
    Ok(())
}

fn unconfirmed_pairing_times_out_as_failure(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let mut lt = ctx.lower()?;
    let t = lt.timeout;
    let bad = wrong_pin(&ctx.pixit.pin);
    for i in 0..2 {
        let out = lt.pair(&bad, true)?;
        ctx.note(format!("wrong PIN attempt {}: {}", i + 1, out.status));
    }
    // A right-PIN request never confirmed: the third failure, once its 10 s pass (5.3).
    let (_, msg_a) = softbus::crypto::spake2_start_a(&ctx.pixit.pin, rand::thread_rng());
    let Ok(spake_msg) = <[u8; 33]>::try_from(msg_a.as_slice()) else {
        return Err(StepError::Unexpected("SPAKE2 message length".into()));
    };
    let request = Frame {
        conn_id: 0,
        body: Body::PairRequest {
            pairing_id: 0x7a11,
            static_key: *lt.identity.public(),
            spake_msg,
        },
    };
    let is_answer = |f: &Frame| {
        matches!(
            &f.body,
            Body::PairResponse {
                pairing_id: 0x7a11,
                ..
            } | Body::PairResult {
                pairing_id: 0x7a11,
                ..
            }
        )
    };
    let response = lt.exchange(&request, t, "PAIR_RESPONSE", is_answer)?;
    let pending_since = Instant::now();
    if !matches!(response.body, Body::PairResponse { .. }) {
        ctx.check(
            "PAIR-11",
            false,
            "a PAIR_RESPONSE after two failures (no lockout yet)",
            format!("{:?}", response.body),
        );
        ctx.pass();
        return Ok(());
    }
    // Just inside the 10 s: still pending, so a repeat gets the same PAIR_RESPONSE ([PAIR-10]).
    std::thread::sleep(
        (pending_since + Duration::from_millis(9_000)).saturating_duration_since(Instant::now()),
    );
    lt.send_frame(&request)?;
    let repeat = lt.expect_frame(t, "the repeated PAIR_RESPONSE", is_answer)?;
    ctx.check(
        "PAIR-10",
        repeat.to_vec() == response.to_vec(),
        "9 s after it, a byte-identical PAIR_RESPONSE to the repeated request (still pending)",
        format!("{:?}", repeat.body),
    );
    // Just past the 10 s (counted from the first PAIR_RESPONSE; the repeat does not restart
    // them): abandoned, the third failure in about 10 s, so a lockout.
    std::thread::sleep(
        (pending_since + Duration::from_millis(10_500)).saturating_duration_since(Instant::now()),
    );
    let pin = ctx.pixit.pin.clone();
    let status = lt.pair(&pin, false)?.status;
    ctx.check(
        "PAIR-11",
        status == Code::RateLimited,
        "RATE_LIMITED 10.5 s after the unconfirmed PAIR_RESPONSE: its abandonment was the third \
         failure, the first two about 10 s earlier",
        status.to_string(),
    );
    ctx.pass();
    Ok(())
}
