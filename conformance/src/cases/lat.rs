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
//! SB-LAT-004 times reads of a bridged sensor (spec 10.3, [CAP-9]): the path includes the DUT's
//! serial link to its Zigbee coordinator, so the report states, next to the percentiles, the
//! physical floor of that link: the UART wire time of the MT frames one read needs at the PIXIT
//! `serial_baud`.
//!
//! L is the PIXIT `latency_bound_ms` (20 ms by default); the histogram and percentiles go into
//! the report whatever the verdict. Each case sends `latency_samples` 64-byte messages one at a time, each after the echo of
//! the previous one (or, on a stream session, after a loss timeout), after a short warm-up.

use std::time::{Duration, Instant};

use softbus::wire::msg::{ChannelKind, Message, MsgBody};
use softbus_harness::link::Transport;
use softbus_harness::timing::Histogram;

use crate::case::{Case, Ctx, Measured};
use crate::cases::steps::maybe;
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
        Case {
            id: "SB-LAT-004",
            title: "answers reads of a bridged temperature sensor, latency reported next to the serial link's UART wire time",
            requirements: &["CAP-9"],
            pics: "BRIDGE_ZCL",
            pixit: &["latency_samples", "serial_baud"],
            // The tester reaches the DUT over UDP; the DUT reaches the sensor over its serial
            // Zigbee coordinator: the figure covers both.
            transport: "udp+zigbee",
            run: bridged_read_latency,
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
    let bound = ctx.pixit.latency_bound_on(ctx.transport.as_str());
    let samples = ctx.pixit.latency_samples.max(1);
    let stream = kind == ChannelKind::Stream;
    let probe = Message {
        rseq: 0,
        body: MsgBody::Data {
            session_id: sid,
            msg_id: 0,
            frag_index: 0,
            frag_count: 1,
            payload: sample(0),
        },
    };
    let floor = link_floor(ctx, c.seal_at(&probe, 0).len());
    // On a stream session a sample without an echo within this time counts as lost.
    let loss_timeout = (bound * 5).max(Duration::from_millis(100));
    let wait = if stream { loss_timeout } else { t };
    // On an impaired link (`certify --impair`) a sample during which the impairment lost a
    // datagram (the sample, its echo, or an ACK that a retransmission then waits out) measures
    // the link's recovery, not the DUT: it is reported in `all` and left out of the judged
    // histogram, and the bound grows by what the path adds to a round trip it loses nothing of.
    let allowance = ctx
        .impaired()
        .map(|p| p.round_trip_allowance(c.seal_at(&probe, 0).len()));
    let bound = bound + allowance.unwrap_or_default();
    let mut all = Histogram::new();
    let mut hit = 0u32;
    let mut hist = Histogram::new();
    let mut lost = 0u32;
    let mut stale = Vec::new();
    let mut last_echo_id = 0u32;
    for n in 1..=WARM_UP + samples {
        let payload = sample(n);
        // Spec 9.8 measures from handing the message to the link: the tester's own wait for
        // window room (ACKs the DUT may send up to 100 ms late) happens before.
        c.make_room()?;
        let losses = ctx.path_losses();
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
                    all.record(rtt);
                    if ctx.path_losses() == losses {
                        hist.record(rtt);
                    } else {
                        hit += 1;
                    }
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
    if let (Some(profile), Some(extra)) = (ctx.impaired(), allowance) {
        let name = profile.name.clone();
        if let Some(a) = all.percentiles() {
            ctx.note(format!(
                "under --impair {name}: all {} samples p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {hit} hit by a datagram the impairment lost (not judged); bound {} ms = PIXIT latency_bound_ms + {:.3} ms the path adds to a round trip",
                a.count,
                a.p50_us as f64 / 1000.0,
                a.p99_us as f64 / 1000.0,
                a.max_us as f64 / 1000.0,
                bound.as_millis(),
                extra.as_secs_f64() * 1e3
            ));
        }
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
                    "p99 round trip at most {} ms (PIXIT latency_bound_ms{})",
                    bound.as_millis(),
                    if allowance.is_some() {
                        " + the impaired path's round trip"
                    } else {
                        ""
                    }
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
        floor,
    });
    ctx.pass();
    Ok(())
}

/// The physical floor of one round trip of a `frame_len`-byte frame each way on the case's
/// link, noted in the log: none on IP (the loopback or LAN has no stated floor); on Zigbee the
/// UART wire time of the MT frames that carry its segments through both radios plus their
/// 802.15.4 air time; on BLE one connection interval (the answer can leave at the next
/// connection event at the earliest).
fn link_floor(ctx: &mut Ctx<'_>, frame_len: usize) -> Option<Duration> {
    match ctx.transport {
        Transport::Zigbee => {
            let baud = ctx.dut.zigbee.as_ref().map(|z| z.baud)?;
            let w = softbus_harness::link::zigbee::wire_time(frame_len, baud)?;
            let floor = w.time * 2;
            ctx.note(format!(
                "physical floor: {} segments each way, {} bytes of MT frames at {baud} baud and {} bytes on 802.15.4 air per direction = {:.3} ms per round trip",
                w.segments,
                w.uart_bytes,
                w.air_bytes,
                floor.as_secs_f64() * 1e3
            ));
            Some(floor)
        }
        Transport::Ble => {
            let us = ctx.pixit.ble_connection_interval_us?;
            let floor = Duration::from_micros(us);
            ctx.note(format!(
                "physical floor: one BLE connection interval, {:.2} ms (PIXIT ble_connection_interval_us)",
                floor.as_secs_f64() * 1e3
            ));
            Some(floor)
        }
        Transport::Udp | Transport::Tcp => None,
    }
}

/// The bytes of the Z-Stack MT exchange one bridged ZCL read needs on the serial line:
/// AF_DATA_REQUEST carrying a Read Attributes frame, its SRSP, AF_DATA_CONFIRM, and the
/// AF_INCOMING_MSG carrying the int16 answer. Built with the codec so it cannot drift from it.
fn mt_read_exchange_bytes() -> Result<usize, StepError> {
    use softbus::link::znp::commands::{
        AfDataConfirm, AfDataRequestReq, AfDataRequestRsp, AfIncomingMsg, Payload,
    };
    use softbus::link::znp::zcl::{
        read_attributes_payload, read_attributes_rsp_payload, FrameType, ReadAttributeRecord,
        Value, ZclFrame,
    };
    let request = ZclFrame::request(
        FrameType::Global,
        1,
        0x00,
        read_attributes_payload(&[0x0000]),
    )
    .to_bytes();
    let answer = ZclFrame::request(
        FrameType::Global,
        1,
        0x01,
        read_attributes_rsp_payload(&[ReadAttributeRecord {
            attribute: 0x0000,
            result: Ok(Value::I16(2150)),
        }]),
    )
    .to_bytes();
    let err = |e: softbus::link::znp::commands::CommandError| StepError::Unexpected(e.to_string());
    let frames = [
        AfDataRequestReq {
            dst_addr: 0,
            dst_endpoint: 1,
            src_endpoint: 1,
            cluster_id: 0x0402,
            trans_id: 1,
            options: 0,
            radius: 30,
            data: request,
        }
        .to_frame()
        .map_err(err)?,
        AfDataRequestRsp { status: 0 }.to_frame().map_err(err)?,
        AfDataConfirm {
            status: 0,
            endpoint: 1,
            trans_id: 1,
        }
        .to_frame()
        .map_err(err)?,
        AfIncomingMsg {
            group_id: 0,
            cluster_id: 0x0402,
            src_addr: 0,
            src_endpoint: 1,
            dst_endpoint: 1,
            was_broadcast: 0,
            lqi: 0,
            security_use: 0,
            timestamp: 0,
            trans_seq: 0,
            data: answer,
            mac_src_addr: None,
            msg_result_radius: None,
        }
        .to_frame()
        .map_err(err)?,
    ];
    Ok(frames.iter().map(|f| f.buffer_len()).sum())
}

fn bridged_read_latency(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    use softbus::wire::msg::{PermResult, Scope};
    use softbus::wire::Code;
    let (_lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    let (cbor, _) = crate::cases::cap::query(&mut c, 0x0ca9, t)?;
    let caps = crate::cases::cap::validate_list(&cbor).map_err(|e| {
        StepError::Unexpected(format!("preamble: the DUT's CAP_LIST is invalid: {e}"))
    })?;
    let Some(sensor) = caps
        .iter()
        .find(|e| e.kind == "sensor" && e.name.starts_with("sensor.temperature"))
        .map(|e| e.name.clone())
    else {
        if !crate::cases::cap::full_for(&c, &cbor, &["sensor"]).is_empty() {
            return Err(StepError::NotApplicable(format!(
                "the DUT's CAP_LIST is full at the frame size {} and lists no bridged sensor \
                 ([CAP-12]); measure bridged reads at a link MTU that holds it",
                c.max_frame()
            )));
        }
        ctx.outcome
            .inconc("the DUT lists no bridged sensor.temperature capability");
        return Ok(());
    };
    let (result, grant, _) = c.request_permission(&sensor, Scope::UntilRevoked, 0, t)?;
    if result != PermResult::Granted {
        return Err(StepError::Unexpected(format!(
            "preamble: {sensor} not granted ({result:?})"
        )));
    }
    let samples = ctx.pixit.latency_samples.clamp(10, 100);
    let mut hist = Histogram::new();
    for i in 0..samples + 3 {
        let started = Instant::now();
        let (status, value) = c.invoke(&sensor, grant, b"read")?;
        let rtt = started.elapsed();
        if !ctx.check(
            "CAP-9",
            status == Code::Ok && !value.is_empty(),
            "status OK with the temperature",
            format!("{status} {:?}", String::from_utf8_lossy(&value)),
        ) {
            break;
        }
        if i >= 3 {
            hist.record(rtt);
        }
    }
    let floor = match ctx.pixit.serial_baud {
        Some(baud) => {
            let bytes = mt_read_exchange_bytes()?;
            let floor = Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(baud));
            ctx.note(format!(
                "physical floor: {bytes} bytes of MT frames at {baud} baud = {:.3} ms of UART wire time per read",
                floor.as_secs_f64() * 1e3
            ));
            Some(floor)
        }
        None => {
            ctx.note("PIXIT serial_baud not given: no physical floor stated");
            None
        }
    };
    if let Some(p) = hist.percentiles() {
        ctx.note(format!(
            "bridged read of {sensor}: {} samples, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            p.count,
            p.p50_us as f64 / 1000.0,
            p.p99_us as f64 / 1000.0,
            p.max_us as f64 / 1000.0
        ));
    }
    let bound = Duration::from_millis(ctx.pixit.latency_bound_ms);
    ctx.measured = Some(Measured {
        histogram: hist,
        bound,
        floor,
    });
    ctx.pass();
    Ok(())
}
