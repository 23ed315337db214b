//! Latency: round trips of small messages through the `echo` service, per channel kind.
//!
//! > [SESS-16] A receiver MUST deliver the messages of a message or bytes session to the service
//! > complete, in the order they were sent, and each once.
//! >
//! > [SESS-10] A device MUST number the messages it sends on a session 1, 2, 3, ... in msg_id
//! > [...]
//! >
//! > [SESS-22] A test build MUST offer the services `echo` and `sink` for all three kinds [...]
//!
//! > [SESS-23] A test build MUST echo 64-byte messages on message, bytes and stream sessions so
//! > that the 99th percentile of at least 100 consecutive round trips, sent one at a time, is at
//! > most L.
//!
//! L is the PIXIT `latency_bound_ms` (20 ms by default); the histogram and percentiles go into
//! the report whatever the verdict. Each case sends `latency_samples` 64-byte messages one at a time, each after the echo of
//! the previous one (or, on a stream session, after a loss timeout), after a short warm-up.

use std::time::{Duration, Instant};

use softbus::wire::msg::{ChannelKind, Message, MsgBody};
use softbus_harness::timing::Histogram;

use crate::case::{Case, Ctx, Measured};
use crate::cases::sess::maybe;
use crate::tester::lower::StepError;

/// Payload size of a sample.
const SAMPLE_BYTES: usize = 64;

/// Samples sent before measuring.
const WARM_UP: u32 = 10;

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-LAT-001",
            title: "echoes 64-byte messages on a message session, each delivered, p99 round trip within the latency bound",
            requirements: &["SESS-16", "SESS-22", "SESS-23"],
            pics: "SESS_MESSAGE",
            pixit: &["latency_samples", "latency_bound_ms"],
            transport: "udp",
            run: message_latency,
        },
        Case {
            id: "SB-LAT-002",
            title: "echoes 64-byte messages on a bytes session, each delivered, p99 round trip within the latency bound",
            requirements: &["SESS-16", "SESS-22", "SESS-23"],
            pics: "SESS_BYTES",
            pixit: &["latency_samples", "latency_bound_ms"],
            transport: "udp",
            run: bytes_latency,
        },
        Case {
            id: "SB-LAT-003",
            title: "echoes 64-byte messages on a stream session, p99 round trip within the latency bound (loss counted)",
            requirements: &["SESS-22", "SESS-10", "SESS-23"],
            pics: "SESS_STREAM",
            pixit: &["latency_samples", "latency_bound_ms"],
            transport: "udp",
            run: stream_latency,
        },
    ]
}

fn message_latency(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    round_trips(ctx, ChannelKind::Message)
}

fn bytes_latency(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    round_trips(ctx, ChannelKind::Bytes)
}

fn stream_latency(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    round_trips(ctx, ChannelKind::Stream)
}

/// A sample's payload: its number, padded to 64 bytes.
fn sample(n: u32) -> Vec<u8> {
    let mut p = format!("latency sample {n:08} ").into_bytes();
    p.resize(SAMPLE_BYTES, b'.');
    p
}

fn round_trips(ctx: &mut Ctx<'_>, kind: ChannelKind) -> Result<(), StepError> {
    let (_lt, mut c, sid) = ctx.session("echo", kind)?;
    let t = ctx.timeout();
    let bound = ctx.pixit.latency_bound();
    let samples = ctx.pixit.latency_samples.max(1);
    let stream = kind == ChannelKind::Stream;
    // On a stream session a sample without an echo within this time counts as lost.
    let loss_timeout = (bound * 5).max(Duration::from_millis(100));
    let wait = if stream { loss_timeout } else { t };
    let mut hist = Histogram::new();
    let mut lost = 0u32;
    let mut stale = Vec::new();
    let mut last_echo_id = 0u32;
    for n in 1..=WARM_UP + samples {
        let payload = sample(n);
        let started = Instant::now();
        c.send_data(sid, n, &payload, kind)?;
        let echo = maybe(
            &mut c,
            wait,
            |b| matches!(b, MsgBody::Data { session_id, payload: p, .. } if *session_id == sid && *p == payload),
        )?;
        let rtt = started.elapsed();
        // Echoes of other samples (late stream echoes, or duplicates) waiting in the inbox.
        let of_session =
            |b: &MsgBody| matches!(b, MsgBody::Data { session_id, .. } if *session_id == sid);
        while c.inbox().any(|m| of_session(&m.body)) {
            if let Some(Message {
                body: MsgBody::Data { payload: p, .. },
                ..
            }) = maybe(&mut c, Duration::ZERO, of_session)?
            {
                stale.push(String::from_utf8_lossy(&p[..p.len().min(23)]).to_string());
            }
        }
        match echo {
            Some(m) => {
                if let MsgBody::Data { msg_id, .. } = m.body {
                    if stream && msg_id <= last_echo_id {
                        ctx.check(
                            "SESS-10",
                            false,
                            "the echo's stream msg_ids increasing",
                            format!("msg_id {msg_id} after {last_echo_id}"),
                        );
                    }
                    last_echo_id = last_echo_id.max(msg_id);
                }
                if n > WARM_UP {
                    hist.record(rtt);
                }
            }
            None if stream => {
                if n > WARM_UP {
                    lost += 1;
                }
            }
            None => {
                ctx.check(
                    "SESS-16",
                    false,
                    format!("the echo of sample {n} within {t:?}"),
                    "none",
                );
                break;
            }
        }
    }
    if !stale.is_empty() && !stream {
        ctx.check(
            "SESS-16",
            false,
            "each message echoed once",
            format!("unexpected echoes: {stale:?}"),
        );
    }
    let p = hist.percentiles();
    match p {
        Some(p) => {
            ctx.note(format!(
                "{kind:?}: {} samples, min {:.3} ms, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms; lost {lost}; late echoes {}",
                p.count,
                p.min_us as f64 / 1000.0,
                p.p50_us as f64 / 1000.0,
                p.p90_us as f64 / 1000.0,
                p.p99_us as f64 / 1000.0,
                p.max_us as f64 / 1000.0,
                stale.len()
            ));
            ctx.check(
                "SESS-23",
                Duration::from_micros(p.p99_us) <= bound,
                format!(
                    "p99 round trip at most {} ms (PIXIT latency_bound_ms)",
                    bound.as_millis()
                ),
                format!(
                    "p99 {:.3} ms (p50 {:.3} ms, max {:.3} ms, {} samples)",
                    p.p99_us as f64 / 1000.0,
                    p.p50_us as f64 / 1000.0,
                    p.max_us as f64 / 1000.0,
                    p.count
                ),
            );
        }
        None => ctx.note(format!("{kind:?}: no sample measured; lost {lost}")),
    }
    if stream {
        ctx.note(format!(
            "stream: {lost} of {samples} samples lost (no echo within {loss_timeout:?})"
        ));
        ctx.check(
            "SESS-22",
            lost < samples,
            "the echo service answering on the stream session",
            format!("all {samples} samples lost"),
        );
    }
    ctx.measured = Some(Measured {
        histogram: hist,
        bound,
        floor: None,
    });
    ctx.pass();
    Ok(())
}
