//! TIME: clock synchronization and synchronized playout (spec section 17).
//!
//! > [TIME-3] A device MUST answer every TIME_REQUEST it receives on an established connection
//! > with a TIME_RESPONSE carrying the request's sync_id and t1 unchanged, within T_RESP.
//! >
//! > [TIME-4] A responder MUST set t2 no earlier than the instant the request reached it and t3
//! > no later than the instant the response left it, with t2 <= t3 [...]
//! >
//! > [TIME-7] A device MUST report for each peer it synchronizes with an offset estimate and an
//! > error bound such that the true offset lies within the bound of the estimate.
//! >
//! > [TIME-10] A receiver MUST present a complete TIMED_DATA message that arrived before its
//! > presentation instant no earlier than 1 ms before that instant and no later than T_PRESENT
//! > (5 ms) after it [...]
//!
//! The truth the cases judge against is the tester's own measurement of the DUT's clock
//! (`measure_dut`): its error bound holds for any path, so every check allows the tester's
//! bound on top of the DUT's. The tester runs its timebase at chosen offsets from its own clock
//! (far ahead, far behind), so a DUT that ignores the offset, or gets its sign wrong, is seen.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use softbus::time::{ClockFilter, Estimate, Exchange};
use softbus::wire::msg::{ChannelKind, MsgBody, Qos};
use softbus::wire::Code;
use softbus_harness::link::Transport;
use softbus_harness::timing::Histogram;

use crate::case::{Case, Ctx, Measured};
use crate::tester::clock::TesterClock;
use crate::tester::lower::{SecureConn, StepError};

/// The drift allowance of spec 17.3, ppm.
const DRIFT_PPM: u64 = 200;

/// Exchanges the tester makes to measure the DUT's clock.
const TESTER_EXCHANGES: u32 = 16;

/// T_PRESENT and the early allowance of [TIME-10].
const T_PRESENT: Duration = Duration::from_millis(5);
const EARLY: Duration = Duration::from_millis(1);

/// T_LATE of [TIME-11].
const T_LATE: Duration = Duration::from_millis(10);

/// The tester timebases the estimate is checked under: none, 11.5 days ahead, a day behind.
const OFFSETS_US: [i64; 3] = [0, 1_000_000_000_000, -86_400_000_000];

/// The tester's own measurement of the DUT's clock: `n` exchanges with the tester as requester,
/// in the tester's timebase `clock`. The estimate's offset is the DUT's timebase minus the
/// tester's; its error bound holds whatever the DUT does, if the DUT's timestamps are honest
/// (which SB-TIME-001 checks).
pub fn measure_dut(
    c: &mut SecureConn,
    clock: &TesterClock,
    n: u32,
    timeout: Duration,
) -> Result<Estimate, StepError> {
    let mut filter = ClockFilter::new();
    let mut refused = Vec::new();
    for i in 0..n {
        let (id, t1) = (0x7100_0000 + i, clock.now_us());
        c.send(MsgBody::TimeRequest { sync_id: id, t1 }, false)?;
        let (at, body) = c.expect_time_response(timeout, id)?;
        let MsgBody::TimeResponse { t2, t3, .. } = body else {
            continue;
        };
        let ex = Exchange {
            t1,
            t2,
            t3,
            t4: clock.at(at),
        };
        if let Err(e) = filter.add(ex, at) {
            refused.push(e.to_string());
        }
    }
    filter.estimate(Instant::now()).ok_or_else(|| {
        StepError::Unexpected(format!(
            "no usable TIME_RESPONSE from the DUT in {n} exchanges: {}",
            refused.join("; ")
        ))
    })
}

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-TIME-001",
            title: "answers TIME_REQUESTs within T_RESP, echoing sync_id and t1, with t2 <= t3, a hold within the round trip, and one monotonic timebase",
            requirements: &["TIME-3", "TIME-4", "TIME-1"],
            pics: "TIME",
            pixit: &[],
            transport: "udp",
            run: answers_time_requests,
        },
        Case {
            id: "SB-TIME-002",
            title: "reports an offset within its own error bound of the truth, for tester clocks far ahead and far behind, with a bound within the PIXIT bound",
            requirements: &["TIME-7", "TIME-15"],
            pics: "TIME",
            pixit: &["time_error_bound_us"],
            transport: "udp",
            run: estimate_within_bound,
        },
        Case {
            id: "SB-TIME-003",
            title: "sends at most the level's exchanges per round and starts a round once per period",
            requirements: &["TIME-9", "TIME-16", "TIME-17"],
            pics: "TIME",
            pixit: &[],
            transport: "udp",
            run: rounds_follow_the_level,
        },
        Case {
            id: "SB-TIME-004",
            title: "discards and counts TIME_RESPONSEs that match no request and samples with inconsistent timestamps",
            requirements: &["TIME-5", "TIME-6"],
            pics: "TIME",
            pixit: &[],
            transport: "udp",
            run: refuses_bad_responses,
        },
        Case {
            id: "SB-TIME-005",
            title: "presents timed stream messages at their presentation time, translated through its offset estimate, within T_PRESENT",
            requirements: &["TIME-10", "TIME-7"],
            pics: "TIME",
            pixit: &["time_error_bound_us"],
            transport: "udp",
            run: presents_on_time,
        },
        Case {
            id: "SB-TIME-006",
            title: "drops and counts late, far-ahead and unsynchronized timed messages, never presenting them, and refuses TIMED_DATA outside a stream session",
            requirements: &["TIME-11", "TIME-12", "TIME-14"],
            pics: "TIME",
            pixit: &[],
            transport: "udp",
            run: drops_what_cannot_be_presented,
        },
        Case {
            id: "SB-TIME-007",
            title: "two devices present one timed stream together: each within T_PRESENT of the presentation time, the inter-device skew reported",
            requirements: &["TIME-10", "TIME-7"],
            pics: "TIME && SESS_STREAM",
            pixit: &["time_partner", "time_error_bound_us"],
            transport: "udp",
            run: two_devices_present_together,
        },
    ]
}

/// The DUT's `state` entry for the tester's connection.
pub fn my_peer_state(state: &Value, me: &str) -> Value {
    state["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["peer"] == json!(me)).cloned())
        .unwrap_or(Value::Null)
}

fn counter(state: &Value, name: &str) -> u64 {
    state["counters"][name].as_u64().unwrap_or(0)
}

fn answers_time_requests(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    let clock = TesterClock::new(0);
    // Each sample's true-offset interval [θ − δ/2, θ + δ/2] (widened by drift): one clock's
    // samples all contain the true offset, so they must overlap.
    let (mut lo, mut hi) = (i128::MIN, i128::MAX);
    let mut last_t2 = None;
    let start = Instant::now();
    for i in 0..20u32 {
        let id = 0x5100_0000 + i;
        let t1 = clock.now_us();
        c.send(MsgBody::TimeRequest { sync_id: id, t1 }, false)?;
        let sent = Instant::now();
        let Some((at, body)) = ctx.must(
            "TIME-3",
            "a TIME_RESPONSE to each TIME_REQUEST within T_RESP",
            c.expect_time_response(t, id),
        ) else {
            return Ok(());
        };
        let MsgBody::TimeResponse {
            sync_id,
            t1: echo,
            t2,
            t3,
        } = body
        else {
            continue;
        };
        let t4 = clock.at(at);
        ctx.check(
            "TIME-3",
            sync_id == id && echo == t1,
            format!("sync_id {id} and t1 {t1} echoed"),
            format!("sync_id {sync_id}, t1 {echo}"),
        );
        ctx.check(
            "TIME-3",
            at.duration_since(sent) <= Duration::from_millis(500),
            "the response within T_RESP (500 ms)",
            format!("after {:?}", at.duration_since(sent)),
        );
        if !ctx.check("TIME-4", t2 <= t3, "t2 <= t3", format!("t2 {t2}, t3 {t3}")) {
            return Ok(());
        }
        let (rtt, hold) = (t4 - t1, t3 - t2);
        ctx.check(
            "TIME-4",
            hold <= rtt,
            format!("a hold t3 - t2 no longer than the round trip the tester saw ({rtt} µs)"),
            format!("t3 - t2 = {hold} µs"),
        );
        if let Some(prev) = last_t2 {
            ctx.check(
                "TIME-1",
                t2 >= prev,
                "t2 of successive responses never going backwards",
                format!("t2 {t2} after {prev}"),
            );
        }
        last_t2 = Some(t2);
        let theta = (t2 as i128 - t1 as i128 + t3 as i128 - t4 as i128) / 2;
        let half = (rtt.saturating_sub(hold) as i128 + 1) / 2 + 1;
        let drift = (start.elapsed().as_micros() as u64 * DRIFT_PPM / 1_000_000) as i128 + 1;
        lo = lo.max(theta - half - drift);
        hi = hi.min(theta + half + drift);
    }
    ctx.check(
        "TIME-4",
        lo <= hi,
        "the offset intervals of all samples overlapping (timestamps of one clock, stamped at receive and send)",
        format!("no common offset: the latest lower bound {lo} µs exceeds the earliest upper bound {hi} µs"),
    );
    ctx.pass();
    Ok(())
}

/// Ask the DUT to synchronize with the tester and wait until it reports at least `samples`.
fn dut_sync(
    ctx: &mut Ctx<'_>,
    c: &mut SecureConn,
    me: &str,
    accuracy: &str,
    samples: u64,
) -> Result<Value, StepError> {
    ctx.upper()?
        .call(json!({"op": "time_sync_stop", "peer": me}))?;
    ctx.upper()?
        .call(json!({"op": "time_sync", "peer": me, "accuracy": accuracy, "period": "short"}))?;
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        // Pump so the tester answers the DUT's requests.
        c.send(MsgBody::Heartbeat, false)?;
        c.pump(Duration::from_millis(20))?;
        let st = ctx.upper()?.state()?;
        let time = my_peer_state(&st, me)["time"].clone();
        if time["samples"].as_u64().unwrap_or(0) >= samples && time["offset_us"].is_i64() {
            return Ok(time);
        }
        if Instant::now() >= end {
            return Err(StepError::Timeout(
                Duration::from_secs(3),
                format!("the DUT's time estimate with {samples} samples (state: {time})"),
            ));
        }
    }
}

fn estimate_within_bound(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let me = lt.identity.device_id().to_hex();
    let t = ctx.timeout();
    let bound_us = ctx.pixit.time_error_bound_us_on(ctx.transport.as_str());
    let hello = ctx.upper()?.call(json!({"op": "hello"}))?;
    let ops: Vec<String> = hello["ops"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ctx.check(
        "TIME-15",
        ops.iter().any(|o| o == "time_sync") && ops.iter().any(|o| o == "time_sync_stop"),
        "hello's ops listing time_sync and time_sync_stop (PICS TIME)",
        format!("{ops:?}"),
    );
    let mut hist = Histogram::new();
    for off in OFFSETS_US {
        let clock = TesterClock::new(off);
        c.clock = Some(clock);
        let synced = dut_sync(ctx, &mut c, &me, "high", 4);
        let Some(time) = ctx.must("TIME-7", "an offset estimate after time_sync", synced) else {
            return Ok(());
        };
        let st = ctx.upper()?.state()?;
        ctx.check(
            "TIME-15",
            st["clock_us"].is_u64()
                && [
                    "time_unmatched",
                    "time_inconsistent",
                    "presentation_late",
                    "presentation_dropped",
                ]
                .iter()
                .all(|k| st["counters"][k].is_u64()),
            "state with clock_us and the TIME counters",
            format!("clock_us {}, counters {}", st["clock_us"], st["counters"]),
        );
        let (Some(dut_off), Some(dut_err)) =
            (time["offset_us"].as_i64(), time["error_us"].as_u64())
        else {
            ctx.check(
                "TIME-15",
                false,
                "offset_us and error_us numbers",
                time.to_string(),
            );
            return Ok(());
        };
        // The DUT's offset of the tester is minus the tester's offset of the DUT.
        let truth = measure_dut(&mut c, &clock, TESTER_EXCHANGES, t)?;
        let err = (dut_off as i128 + truth.offset_us as i128).unsigned_abs() as u64;
        hist.record_us(err);
        ctx.note(format!(
            "tester clock {off:+} µs: DUT says {dut_off} ± {dut_err} µs, tester measures {} ± {} µs, difference {err} µs",
            -truth.offset_us, truth.error_us
        ));
        ctx.check(
            "TIME-7",
            err <= dut_err + truth.error_us,
            format!("the offset within its error bound ({dut_err} µs, plus the tester's {} µs) of the truth {}", truth.error_us, -truth.offset_us),
            format!("offset {dut_off} µs, {err} µs off"),
        );
        ctx.check(
            "TIME-7",
            dut_err <= bound_us,
            format!("an error bound within the PIXIT time_error_bound_us ({bound_us} µs)"),
            format!("{dut_err} µs"),
        );
    }
    ctx.measured = Some(Measured {
        histogram: hist,
        bound: Duration::from_micros(bound_us),
        floor: None,
    });
    ctx.pass();
    Ok(())
}

fn rounds_follow_the_level(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let me = lt.identity.device_id().to_hex();
    c.clock = Some(TesterClock::new(0));
    c.time_log.clear();
    ctx.upper()?
        .call(json!({"op": "time_sync", "peer": me, "accuracy": "normal", "period": "short"}))?;
    let end = Instant::now() + Duration::from_millis(3_500);
    while Instant::now() < end {
        // Heartbeats keep the tester alive if the DUT goes quiet.
        c.send(MsgBody::Heartbeat, false)?;
        c.pump(Duration::from_millis(250))?;
    }
    ctx.upper()?
        .call(json!({"op": "time_sync_stop", "peer": me}))?;
    let reqs: Vec<Instant> = c
        .time_log
        .iter()
        .filter(|(_, b)| matches!(b, MsgBody::TimeRequest { .. }))
        .map(|(t, _)| *t)
        .collect();
    // Rounds: requests closer than half a period belong to one round.
    let mut rounds: Vec<Vec<Instant>> = Vec::new();
    for r in reqs {
        match rounds.last_mut() {
            Some(last) if r.duration_since(last[0]) < Duration::from_millis(500) => last.push(r),
            _ => rounds.push(vec![r]),
        }
    }
    ctx.note(format!(
        "rounds seen: {:?}",
        rounds.iter().map(Vec::len).collect::<Vec<_>>()
    ));
    if !ctx.check(
        "TIME-17",
        rounds.len() >= 3,
        "a round about every second over 3.5 s at period short (at least 3)",
        format!("{} rounds", rounds.len()),
    ) {
        return Ok(());
    }
    for (i, r) in rounds.iter().enumerate() {
        ctx.check(
            "TIME-9",
            r.len() <= 4,
            "at most 4 TIME_REQUESTs per round at accuracy normal",
            format!("round {i}: {}", r.len()),
        );
    }
    for w in rounds.windows(2) {
        let gap = w[1][0].duration_since(w[0][0]);
        // The tester stamps arrivals: allow 20 ms of link jitter either way.
        ctx.check(
            "TIME-16",
            gap + Duration::from_millis(20) >= Duration::from_secs(1),
            "a round starting no earlier than one period (1 s) after the previous one",
            format!("{gap:?} between round starts"),
        );
        ctx.check(
            "TIME-17",
            gap <= Duration::from_secs(2) + Duration::from_millis(20),
            "a round starting within 1 s after the period (2 s after the previous one)",
            format!("{gap:?} between round starts"),
        );
    }
    ctx.pass();
    Ok(())
}

fn refuses_bad_responses(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let me = lt.identity.device_id().to_hex();
    let clock = TesterClock::new(0);
    c.clock = None; // this case answers by hand
    let before = ctx.upper()?.state()?;
    ctx.upper()?
        .call(json!({"op": "time_sync", "peer": me, "accuracy": "high", "period": "short"}))?;
    let t = ctx.timeout();
    let end = Instant::now() + t;
    let req = loop {
        c.pump(Duration::from_millis(20))?;
        if let Some(i) = c
            .time_log
            .iter()
            .position(|(_, b)| matches!(b, MsgBody::TimeRequest { .. }))
        {
            break Some(c.time_log.remove(i));
        }
        if Instant::now() >= end {
            break None;
        }
    };
    let Some((_, MsgBody::TimeRequest { sync_id, t1 })) = req else {
        ctx.check(
            "TIME-9",
            false,
            "a TIME_REQUEST after time_sync",
            "none within the step timeout",
        );
        return Ok(());
    };
    // 1: a response to a request never sent; 2: the right request, answered with t3 < t2.
    c.send(
        MsgBody::TimeResponse {
            sync_id: sync_id ^ 0x8000_0000,
            t1,
            t2: clock.now_us(),
            t3: clock.now_us(),
        },
        false,
    )?;
    let now = clock.now_us();
    c.send(
        MsgBody::TimeResponse {
            sync_id,
            t1,
            t2: now,
            t3: now - 1_000,
        },
        false,
    )?;
    let mut after = before.clone();
    // A second is ample for two counters; heartbeats keep the tester alive meanwhile.
    let end = Instant::now() + t.min(Duration::from_secs(1));
    while Instant::now() < end {
        c.send(MsgBody::Heartbeat, false)?;
        c.pump(Duration::from_millis(20))?;
        after = ctx.upper()?.state()?;
        if counter(&after, "time_unmatched") > counter(&before, "time_unmatched")
            && counter(&after, "time_inconsistent") > counter(&before, "time_inconsistent")
        {
            break;
        }
    }
    ctx.upper()?
        .call(json!({"op": "time_sync_stop", "peer": me}))?;
    ctx.check(
        "TIME-5",
        counter(&after, "time_unmatched") == counter(&before, "time_unmatched") + 1,
        "time_unmatched up by 1 for a TIME_RESPONSE with an unknown sync_id",
        format!(
            "{} -> {}",
            counter(&before, "time_unmatched"),
            counter(&after, "time_unmatched")
        ),
    );
    ctx.check(
        "TIME-6",
        counter(&after, "time_inconsistent") == counter(&before, "time_inconsistent") + 1,
        "time_inconsistent up by 1 for a sample with t3 < t2",
        format!(
            "{} -> {}",
            counter(&before, "time_inconsistent"),
            counter(&after, "time_inconsistent")
        ),
    );
    let samples = my_peer_state(&after, &me)["time"]["samples"].as_u64();
    ctx.check(
        "TIME-6",
        samples.unwrap_or(0) == 0,
        "no sample taken from either response",
        format!("samples {samples:?}"),
    );
    ctx.pass();
    Ok(())
}

/// How far ahead of now the tester sets presentation times: room for the link's latency.
pub fn lead(ctx: &Ctx<'_>) -> Duration {
    (ctx.pixit.latency_bound_on(ctx.transport.as_str()) * 3).max(Duration::from_millis(30))
}

fn presents_on_time(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c, sid) = ctx.session("sink", ChannelKind::Stream)?;
    let me = lt.identity.device_id().to_hex();
    let t = ctx.timeout();
    // An hour ahead: a DUT that ignores the offset presents nothing on time.
    let clock = TesterClock::new(3_600_000_000);
    c.clock = Some(clock);
    let synced = dut_sync(ctx, &mut c, &me, "high", 4);
    let Some(_) = ctx.must("TIME-10", "an offset estimate after time_sync", synced) else {
        return Ok(());
    };
    ctx.upper()?.skip_events()?;
    let lead = lead(ctx);
    let n = 40u32;
    let mut sent = Vec::new();
    for i in 0..n {
        let pts = clock.now_us() + lead.as_micros() as u64;
        c.send(
            MsgBody::TimedData {
                session_id: sid,
                msg_id: i + 1,
                frag_index: 0,
                frag_count: 1,
                pts_us: pts,
                payload: format!("frame {i:04}").into_bytes(),
            },
            false,
        )?;
        sent.push(pts);
        let next = Instant::now() + Duration::from_millis(20);
        while Instant::now() < next {
            c.pump(next.saturating_duration_since(Instant::now()))?;
        }
    }
    let wait_end = Instant::now() + lead + t;
    while Instant::now() < wait_end {
        c.pump(Duration::from_millis(20))?;
    }
    let truth = measure_dut(&mut c, &clock, TESTER_EXCHANGES, t)?;
    let events = ctx.upper()?.poll_events()?;
    let presented: Vec<&Value> = events.iter().filter(|e| e["type"] == "presented").collect();
    let mut hist = Histogram::new();
    let (mut early, mut late) = (0u32, 0u32);
    let slack = truth.error_us as i128;
    for e in &presented {
        let (Some(at), Some(pts)) = (e["at_us"].as_u64(), e["pts_us"].as_u64()) else {
            ctx.check(
                "TIME-15",
                false,
                "presented events with at_us and pts_us",
                e.to_string(),
            );
            continue;
        };
        // The DUT's at_us in the tester's timebase, minus the presentation time.
        let err = at as i128 - truth.offset_us as i128 - pts as i128;
        hist.record_us(err.unsigned_abs() as u64);
        if err < -(EARLY.as_micros() as i128) - slack {
            early += 1;
        }
        if err > T_PRESENT.as_micros() as i128 + slack {
            late += 1;
        }
    }
    ctx.note(format!(
        "{} of {n} presented; tester's clock bound {} µs; early {early}, late {late}",
        presented.len(),
        truth.error_us
    ));
    ctx.check(
        "TIME-10",
        presented.len() as u32 >= n * 9 / 10,
        format!("at least 90% of {n} timed messages sent {lead:?} ahead presented"),
        format!("{} presented", presented.len()),
    );
    ctx.check(
        "TIME-10",
        early == 0 && late == 0,
        "every message presented between 1 ms before and 5 ms after its presentation time",
        format!("{early} early, {late} late"),
    );
    let bound = ctx.pixit.time_error_bound_us_on(ctx.transport.as_str());
    ctx.measured = Some(Measured {
        histogram: hist,
        bound: T_PRESENT + Duration::from_micros(bound),
        floor: None,
    });
    ctx.pass();
    Ok(())
}

fn drops_what_cannot_be_presented(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c, sid) = ctx.session("sink", ChannelKind::Stream)?;
    let me = lt.identity.device_id().to_hex();
    let t = ctx.timeout();
    let clock = TesterClock::new(-86_400_000_000);
    c.clock = Some(clock);
    let timed = |msg_id: u32, pts_us: u64, session_id: u32| MsgBody::TimedData {
        session_id,
        msg_id,
        frag_index: 0,
        frag_count: 1,
        pts_us,
        payload: b"frame".to_vec(),
    };
    let s0 = ctx.upper()?.state()?;
    // Unsynchronized: the DUT has no estimate of the tester's clock yet.
    c.send(timed(1, clock.now_us() + 50_000, sid), false)?;
    c.pump(Duration::from_millis(50))?;
    let s1 = ctx.upper()?.state()?;
    ctx.check(
        "TIME-12",
        counter(&s1, "presentation_dropped") > counter(&s0, "presentation_dropped"),
        "presentation_dropped up for a timed message before any estimate of the sender's clock",
        format!(
            "{} -> {}",
            counter(&s0, "presentation_dropped"),
            counter(&s1, "presentation_dropped")
        ),
    );
    let synced = dut_sync(ctx, &mut c, &me, "high", 4);
    let Some(_) = ctx.must("TIME-12", "an offset estimate after time_sync", synced) else {
        return Ok(());
    };
    ctx.upper()?.skip_events()?;
    let s2 = ctx.upper()?.state()?;
    let late_by = T_LATE + Duration::from_millis(40);
    let link = ctx.pixit.latency_bound_on(ctx.transport.as_str());
    for i in 0..5u32 {
        // Late on arrival, however fast the link: due 50 ms + the link's bound ago.
        let pts = clock.now_us() - (late_by + link).as_micros() as u64;
        c.send(timed(10 + i, pts, sid), false)?;
    }
    // 60 s ahead, past the 10 s horizon.
    c.send(timed(20, clock.now_us() + 60_000_000, sid), false)?;
    let end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < end {
        c.pump(Duration::from_millis(20))?;
    }
    let s3 = ctx.upper()?.state()?;
    let presented: Vec<Value> = ctx
        .upper()?
        .poll_events()?
        .into_iter()
        .filter(|e| e["type"] == "presented")
        .collect();
    ctx.check(
        "TIME-11",
        presented.is_empty(),
        "no late or far-ahead message presented",
        format!("{} presented: {:?}", presented.len(), presented.first()),
    );
    ctx.check(
        "TIME-11",
        counter(&s3, "presentation_late") >= counter(&s2, "presentation_late") + 5,
        "presentation_late up by 5",
        format!(
            "{} -> {}",
            counter(&s2, "presentation_late"),
            counter(&s3, "presentation_late")
        ),
    );
    ctx.check(
        "TIME-12",
        counter(&s3, "presentation_dropped") > counter(&s2, "presentation_dropped"),
        "presentation_dropped up for a message 60 s ahead",
        format!(
            "{} -> {}",
            counter(&s2, "presentation_dropped"),
            counter(&s3, "presentation_dropped")
        ),
    );
    // TIMED_DATA for a session that is not open, and on a message session.
    c.send(timed(1, clock.now_us(), 0x7FFF_FFF1), false)?;
    let err = c.expect(t, "ERROR UNKNOWN_SESSION", |b| {
        matches!(
            b,
            MsgBody::Error {
                offending: 0x15,
                ..
            }
        )
    });
    if let Some(m) = ctx.must(
        "TIME-14",
        "ERROR UNKNOWN_SESSION for TIMED_DATA on no session",
        err,
    ) {
        ctx.check(
            "TIME-14",
            matches!(
                m.body,
                MsgBody::Error {
                    code: Code::UnknownSession,
                    ..
                }
            ),
            "code UNKNOWN_SESSION",
            format!("{:?}", m.body),
        );
    }
    let msid = match c.open_session("sink", ChannelKind::Message, Qos::Interactive)? {
        Ok(id) => id,
        Err(code) => {
            return Err(StepError::Unexpected(format!(
                "preamble: message session to sink rejected with {code}"
            )))
        }
    };
    c.send(timed(1, clock.now_us(), msid), false)?;
    let close = c.expect(
        t,
        "SESSION_CLOSE",
        |b| matches!(b, MsgBody::SessionClose { session_id, .. } if *session_id == msid),
    );
    if let Some(m) = ctx.must(
        "TIME-14",
        "SESSION_CLOSE for TIMED_DATA on a message session",
        close,
    ) {
        ctx.check(
            "TIME-14",
            matches!(
                m.body,
                MsgBody::SessionClose {
                    code: Code::ProtocolViolation,
                    ..
                }
            ),
            "code PROTOCOL_VIOLATION",
            format!("{:?}", m.body),
        );
    }
    ctx.pass();
    Ok(())
}

/// Timed messages the skew case sends to each device: enough for a p99.
const SKEW_MESSAGES: u32 = 100;

/// Pump both connections, a few milliseconds each in turn, for `d`: the tester answers both
/// devices' TIME_REQUESTs and ACKs while it streams.
fn pump_both(a: &mut SecureConn, b: &mut SecureConn, d: Duration) -> Result<(), StepError> {
    let end = Instant::now() + d;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        a.pump(left.min(Duration::from_millis(2)))?;
        b.pump(left.min(Duration::from_millis(2)))?;
    }
}

/// The `presented` events among `events` by msg_id: when each was presented in the tester's
/// timebase (the device's `at_us` through `truth`, the tester's measurement of its clock) and
/// its presentation time; and the events that lack those fields.
fn presented_in_tester_time(
    events: &[Value],
    truth: &Estimate,
) -> (BTreeMap<u32, (i128, i128)>, Vec<String>) {
    let mut by_id = BTreeMap::new();
    let mut malformed = Vec::new();
    for e in events.iter().filter(|e| e["type"] == "presented") {
        match (
            e["msg_id"].as_u64(),
            e["at_us"].as_u64(),
            e["pts_us"].as_u64(),
        ) {
            (Some(id), Some(at), Some(pts)) => {
                let at = at as i128 - truth.offset_us as i128;
                by_id.insert(id as u32, (at, pts as i128));
            }
            _ => malformed.push(e.to_string()),
        }
    }
    (by_id, malformed)
}

/// [TIME-10] on one device's presentations: at least 90% of `n` presented, none before 1 ms
/// ahead of its presentation time or after T_PRESENT, with the tester's own bound on top.
fn check_presented_on_time(
    ctx: &mut Ctx<'_>,
    who: &str,
    presented: &BTreeMap<u32, (i128, i128)>,
    truth: &Estimate,
    n: u32,
) {
    let slack = truth.error_us as i128;
    let early = presented
        .values()
        .filter(|(at, pts)| at - pts < -(EARLY.as_micros() as i128) - slack)
        .count();
    let late = presented
        .values()
        .filter(|(at, pts)| at - pts > T_PRESENT.as_micros() as i128 + slack)
        .count();
    ctx.note(format!(
        "{who}: {} of {n} presented; tester's clock bound {} µs; early {early}, late {late}",
        presented.len(),
        truth.error_us
    ));
    ctx.check(
        "TIME-10",
        presented.len() as u32 >= n * 9 / 10,
        format!("{who}: at least 90% of the {n} timed messages presented"),
        format!("{} presented", presented.len()),
    );
    ctx.check(
        "TIME-10",
        early == 0 && late == 0,
        format!("{who}: every message presented between 1 ms before and 5 ms after its presentation time"),
        format!("{early} early, {late} late"),
    );
}

fn two_devices_present_together(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let mut partner = ctx.partner()?;
    let pics = partner.dut.pics.clone().unwrap_or_default();
    if !(pics.get("TIME") && pics.get("SESS_STREAM")) {
        return Err(StepError::NotApplicable(format!(
            "the time partner '{}' does not claim TIME and SESS_STREAM",
            partner.dut.name
        )));
    }
    let name = partner.dut.name.clone();
    let mut pctx = Ctx::new(&mut partner, pics, ctx.seed ^ 0x7107, Transport::Udp);
    let result = skew_between(ctx, &mut pctx, &name);
    // The partner's side of the exchange is this case's evidence too.
    ctx.keys.append(&mut pctx.keys);
    for line in pctx.log.drain(..) {
        ctx.note(format!("partner: {line}"));
    }
    for line in pctx.control_transcript() {
        ctx.note(format!("partner control: {line}"));
    }
    result
}

fn skew_between(ctx: &mut Ctx<'_>, pctx: &mut Ctx<'_>, name: &str) -> Result<(), StepError> {
    let (lt_a, mut a, sid_a) = ctx.session("sink", ChannelKind::Stream)?;
    let (lt_b, mut b, sid_b) = pctx.session("sink", ChannelKind::Stream)?;
    let (me_a, me_b) = (
        lt_a.identity.device_id().to_hex(),
        lt_b.identity.device_id().to_hex(),
    );
    let t = ctx.timeout();
    // One source timebase for both, two hours behind the tester's own clock: a device that
    // ignores its estimate presents nothing on time, and the two only agree through it.
    let clock = TesterClock::new(-7_200_000_000);
    a.clock = Some(clock);
    b.clock = Some(clock);
    let synced = dut_sync(ctx, &mut a, &me_a, "high", 4);
    let Some(_) = ctx.must(
        "TIME-10",
        "the DUT's offset estimate after time_sync",
        synced,
    ) else {
        return Ok(());
    };
    let synced = dut_sync(pctx, &mut b, &me_b, "high", 4);
    let Some(_) = ctx.must(
        "TIME-10",
        "the partner's offset estimate after time_sync",
        synced,
    ) else {
        return Ok(());
    };
    ctx.upper()?.skip_events()?;
    pctx.upper()?.skip_events()?;
    let lead = lead(ctx);
    let n = SKEW_MESSAGES;
    for i in 0..n {
        let pts_us = clock.now_us() + lead.as_micros() as u64;
        for (c, session_id) in [(&mut a, sid_a), (&mut b, sid_b)] {
            c.send(
                MsgBody::TimedData {
                    session_id,
                    msg_id: i + 1,
                    frag_index: 0,
                    frag_count: 1,
                    pts_us,
                    payload: format!("frame {i:04}").into_bytes(),
                },
                false,
            )?;
        }
        pump_both(&mut a, &mut b, Duration::from_millis(20))?;
    }
    // Everything is due within `lead`; T_PRESENT and the control round trip are well inside
    // the extra half second.
    pump_both(&mut a, &mut b, lead + Duration::from_millis(500))?;
    let truth_a = measure_dut(&mut a, &clock, TESTER_EXCHANGES, t)?;
    let truth_b = measure_dut(&mut b, &clock, TESTER_EXCHANGES, t)?;
    let (on_a, bad_a) = presented_in_tester_time(&ctx.upper()?.poll_events()?, &truth_a);
    let (on_b, bad_b) = presented_in_tester_time(&pctx.upper()?.poll_events()?, &truth_b);
    ctx.check(
        "TIME-15",
        bad_a.is_empty() && bad_b.is_empty(),
        "presented events with msg_id, at_us and pts_us",
        format!("{:?}", bad_a.iter().chain(&bad_b).collect::<Vec<_>>()),
    );
    check_presented_on_time(ctx, "DUT", &on_a, &truth_a, n);
    check_presented_on_time(ctx, &format!("partner '{name}'"), &on_b, &truth_b, n);
    let mut hist = Histogram::new();
    let mut worst = (0u32, 0i128);
    for (id, (at_a, _)) in &on_a {
        if let Some((at_b, _)) = on_b.get(id) {
            let skew = at_a - at_b;
            hist.record_us(skew.unsigned_abs() as u64);
            if skew.abs() > worst.1.abs() {
                worst = (*id, skew);
            }
        }
    }
    // Each device presents within [-1 ms, +5 ms] of the presentation time ([TIME-10]), as the
    // tester measures it to within its own bound: so two of them within 6 ms of each other.
    let apart = (EARLY + T_PRESENT).as_micros() as i128
        + truth_a.error_us as i128
        + truth_b.error_us as i128;
    ctx.note(format!(
        "{} messages presented by both; skew (DUT minus partner) largest {} µs at msg_id {}",
        hist.count(),
        worst.1,
        worst.0
    ));
    ctx.check(
        "TIME-10",
        worst.1.abs() <= apart,
        format!("both presentations of each message within {apart} µs of each other (6 ms and the tester's bounds)"),
        format!("{} µs apart at msg_id {}", worst.1, worst.0),
    );
    let bound = ctx.pixit.time_error_bound_us_on("udp") + pctx.pixit.time_error_bound_us_on("udp");
    ctx.measured = Some(Measured {
        histogram: hist,
        bound: EARLY + T_PRESENT + Duration::from_micros(bound),
        floor: None,
    });
    ctx.pass();
    Ok(())
}
