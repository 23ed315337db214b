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
//! (and PAIR-2, 3, 5, 9, 10, 12, 13: see each case's requirement list.)

use std::time::{Duration, Instant};

use serde_json::json;
use softbus::wire::frame::{Body, Frame};
use softbus::wire::Code;

use crate::case::{Case, Ctx};
use crate::tester::lower::StepError;

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-PAIR-001",
            title: "pairs with the right PIN and pins the tester's key",
            requirements: &["PAIR-2", "PAIR-4", "PAIR-9"],
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
            requirements: &["PAIR-3", "PAIR-5"],
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
    ]
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
