//! The TIME figures of `link-bench` (spec 17), per link: how far the DUT's estimate of the
//! tester's clock lies from the truth, round after round of a synchronization at accuracy
//! `high`, period `short`; how far from their presentation time it presents timed stream
//! messages; and on UDP, when the rig names a time partner, how far apart two devices present
//! one stream (SB-TIME-007's measurement).
//!
//! The truth: the tester's timebase and the DUT's both count this machine's monotonic clock,
//! so their offset is a constant. The bench reads it over the control channel, apart from the
//! link being measured: `state` carries the DUT's `clock_us` from when it built the answer,
//! which lies between the tester's instants before and after the call. The call with the
//! shortest round trip of [`TRUTH_READS`] fixes the offset to within half that round trip,
//! printed as the truth's uncertainty.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use softbus::wire::msg::{ChannelKind, MsgBody};
use softbus_conformance::case::Ctx;
use softbus_conformance::cases::time::{lead, my_peer_state};
use softbus_conformance::tester::clock::TesterClock;
use softbus_conformance::tester::dut::DutHandle;
use softbus_harness::link::Transport;
use softbus_harness::pics::Pics;
use softbus_harness::timing::Histogram;
use softbus_harness::verdict::Verdict;

/// Control-channel reads of the DUT's clock, the best of which is the truth.
const TRUTH_READS: u32 = 32;

/// What one link measured.
pub struct TimeRow {
    pub link: Transport,
    /// |the DUT's offset estimate − the truth| after each round, µs.
    pub offset_err: Histogram,
    /// The error bound the DUT stated with each estimate, µs.
    pub stated: Histogram,
    /// Rounds whose estimate lay outside the DUT's stated bound (plus the truth's uncertainty).
    pub outside: u32,
    /// |presentation instant − presentation time| of each presented message, µs.
    pub present_err: Histogram,
    /// Timed messages sent.
    pub sent: u32,
    /// Half the round trip of the best truth read, µs.
    pub truth_unc: u64,
    /// Half the shortest SoftBus round trip on the link: how far asymmetry alone can put an
    /// estimate learnt over it.
    pub floor: Option<Duration>,
}

/// The inter-device skew on UDP (SB-TIME-007 run once).
pub struct Skew {
    pub skew: Histogram,
    pub verdict: Verdict,
    pub reason: String,
}

/// The tester's timebase minus the DUT's, µs, and its uncertainty (see the module docs).
fn truth(ctx: &mut Ctx<'_>, clock: &TesterClock) -> anyhow::Result<(i128, u64)> {
    let mut best: Option<(u64, i128)> = None;
    for _ in 0..TRUTH_READS {
        let before = clock.now_us();
        let st = ctx.upper()?.state()?;
        let after = clock.now_us();
        let dut = st["clock_us"]
            .as_u64()
            .context("the DUT's state has no clock_us (spec 17.5)")?;
        let half = (after - before).div_ceil(2);
        let offset = (before + after).div_ceil(2) as i128 - dut as i128;
        if best.is_none_or(|(h, _)| half < h) {
            best = Some((half, offset));
        }
    }
    let (unc, offset) = best.context("no read of the DUT's clock")?;
    Ok((offset, unc))
}

/// Offset and presentation error over link `t`: `rounds` estimates one period apart, then
/// `messages` timed messages on a stream session to `sink`.
pub fn measure(
    handle: &mut DutHandle,
    pics: &Pics,
    t: Transport,
    rounds: u32,
    messages: u32,
    floor: Option<Duration>,
) -> anyhow::Result<TimeRow> {
    let mut ctx = Ctx::new(handle, pics.clone(), 3, t);
    let (lt, mut c, sid) = ctx
        .session("sink", ChannelKind::Stream)
        .context("preamble (reset, pair, handshake, a stream session to sink)")?;
    let me = lt.identity.device_id().to_hex();
    let clock = TesterClock::new(0);
    c.clock = Some(clock);
    let (truth, truth_unc) = truth(&mut ctx, &clock)?;
    ctx.upper()?
        .call(json!({"op": "time_sync", "peer": me, "accuracy": "high", "period": "short"}))?;
    let (mut offset_err, mut stated, mut outside) = (Histogram::new(), Histogram::new(), 0);
    let give_up = Instant::now() + Duration::from_secs(u64::from(rounds) * 2 + 10);
    let mut next = Instant::now();
    while offset_err.count() < u64::from(rounds) {
        if Instant::now() > give_up {
            bail!(
                "{} of {rounds} estimates from the DUT in {:?}",
                offset_err.count(),
                Duration::from_secs(u64::from(rounds) * 2 + 10)
            );
        }
        // Heartbeats and pumping: the tester answers the DUT's TIME_REQUESTs meanwhile.
        c.send(MsgBody::Heartbeat, false)?;
        c.pump(Duration::from_millis(50))?;
        if Instant::now() < next {
            continue;
        }
        let time = my_peer_state(&ctx.upper()?.state()?, &me)["time"].clone();
        let (Some(off), Some(err)) = (time["offset_us"].as_i64(), time["error_us"].as_u64()) else {
            continue;
        };
        let miss = (off as i128 - truth).unsigned_abs() as u64;
        offset_err.record_us(miss);
        stated.record_us(err);
        if miss > err + truth_unc {
            outside += 1;
        }
        // One estimate per period (short: 1 s), so each reflects a new round.
        next = Instant::now() + Duration::from_secs(1);
    }
    ctx.upper()?.skip_events()?;
    let lead = lead(&ctx);
    for i in 0..messages {
        c.send(
            MsgBody::TimedData {
                session_id: sid,
                msg_id: i + 1,
                frag_index: 0,
                frag_count: 1,
                pts_us: clock.now_us() + lead.as_micros() as u64,
                payload: format!("frame {i:04}").into_bytes(),
            },
            false,
        )?;
        let next = Instant::now() + Duration::from_millis(20);
        while Instant::now() < next {
            c.pump(next.saturating_duration_since(Instant::now()))?;
        }
    }
    let end = Instant::now() + lead + Duration::from_millis(500);
    while Instant::now() < end {
        c.pump(Duration::from_millis(20))?;
    }
    let mut present_err = Histogram::new();
    for e in ctx.upper()?.poll_events()? {
        if e["type"] != "presented" {
            continue;
        }
        let (Some(at), Some(pts)) = (e["at_us"].as_u64(), e["pts_us"].as_u64()) else {
            bail!("a presented event without at_us and pts_us: {e}");
        };
        present_err.record_us((at as i128 + truth - pts as i128).unsigned_abs() as u64);
    }
    ctx.upper()?
        .call(json!({"op": "time_sync_stop", "peer": me}))?;
    Ok(TimeRow {
        link: t,
        offset_err,
        stated,
        outside,
        present_err,
        sent: messages,
        truth_unc,
        floor,
    })
}

/// SB-TIME-007 once over UDP; `None` when the rig names no time partner.
pub fn skew(handle: &mut DutHandle, pics: &Pics) -> anyhow::Result<Option<Skew>> {
    if handle.partner.is_none() {
        return Ok(None);
    }
    let case = softbus_conformance::cases::all()
        .into_iter()
        .find(|c| c.id == "SB-TIME-007")
        .context("the suite has no SB-TIME-007")?;
    let mut ctx = Ctx::new(handle, pics.clone(), 4, Transport::Udp);
    if let Err(e) = (case.run)(&mut ctx) {
        bail!("SB-TIME-007 did not complete: {e}");
    }
    let skew = ctx
        .measured
        .take()
        .map_or_else(Histogram::new, |m| m.histogram);
    Ok(Some(Skew {
        skew,
        verdict: ctx.outcome.verdict(),
        reason: ctx.outcome.reason(),
    }))
}

fn us(v: Option<u64>) -> String {
    match v {
        Some(v) if v >= 1000 => format!("{:.2} ms", v as f64 / 1e3),
        Some(v) => format!("{v} µs"),
        None => "-".into(),
    }
}

fn q(h: &Histogram, p: f64) -> Option<u64> {
    h.value_at_quantile(p)
}

/// The table: per link the offset error, the stated bound and the presentation error (p50,
/// p99), next to the link's asymmetry floor; then the skew.
pub fn print(rows: &[TimeRow], skew: Option<&Skew>) {
    println!();
    println!(
        "TIME (spec 17) over each link: the DUT's offset estimate of the tester's clock against the truth \
         (read over the control channel), one estimate per round at accuracy high, period short; timed \
         messages presented against their presentation time"
    );
    println!();
    println!("| link | offset error p50 | p99 | stated bound p50 | outside bound | presentation error p50 | p99 | presented | asymmetry floor | truth ± |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} of {} | {} | {} | {} of {} | {} | {} |",
            r.link,
            us(q(&r.offset_err, 0.5)),
            us(q(&r.offset_err, 0.99)),
            us(q(&r.stated, 0.5)),
            r.outside,
            r.offset_err.count(),
            us(q(&r.present_err, 0.5)),
            us(q(&r.present_err, 0.99)),
            r.present_err.count(),
            r.sent,
            r.floor
                .map_or("-".into(), |f| us(Some(f.as_micros() as u64))),
            us(Some(r.truth_unc)),
        );
    }
    println!();
    println!("- asymmetry floor: half the shortest SoftBus round trip on the link in this run (the most an estimate learnt over it can be off if the path is asymmetric)");
    match skew {
        Some(s) => println!(
            "- two devices (SB-TIME-007 on UDP, {}): skew p50 {}, p99 {} over {} messages{}",
            s.verdict,
            us(q(&s.skew, 0.5)),
            us(q(&s.skew, 0.99)),
            s.skew.count(),
            if s.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.reason)
            }
        ),
        None => println!("- two devices: the rig's DUT names no time_partner, no skew measured"),
    }
}
