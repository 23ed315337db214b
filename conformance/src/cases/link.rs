//! Section 16, link bindings: segmentation (16.1), Zigbee (16.2) and Bluetooth LE (16.3).
//!
//! > [LINK-1] A device MUST carry every frame it sends on a Zigbee or BLE link as the segments of
//! > one datagram in the format above, each no longer than the link's packet limit.
//! >
//! > [LINK-3] A receiver MUST pass a datagram on only when its segments arrived in order from
//! > `START` to `END` and carried exactly the announced length.
//! >
//! > [LINK-6] A receiver MUST discard a partial datagram when a segment does not continue it
//! > [...].
//! >
//! > [LINK-7] A receiver MUST receive the datagrams that follow a discarded one as if nothing
//! > had happened.
//! >
//! > [LINK-4] A receiver MUST accept datagrams of up to 1400 bytes.
//! >
//! > [ZB-1] A device MUST send its segments as APS data frames from endpoint `0x5B` to endpoint
//! > `0x5B`, with application profile `0xC05B` and cluster `0xFC5B` [...].
//! >
//! > [BLE-1] A peripheral MUST advertise, connectable, with the service UUID `0xFD5B` and the
//! > service data above.
//! >
//! > [BLE-5] A peripheral MUST keep its service data true: version 1, the pairing flag set
//! > exactly while it has a PIN, its own device ID's first bytes.
//!
//! (and LINK-2, ZB-2, ZB-4, BLE-2, BLE-3, BLE-4, BLE-7: see each case's requirement list.) The tester's link
//! reassembles strictly, so a DUT segment that breaks LINK-2 is discarded there and counted: the
//! cases check that count and the longest segment the DUT sent. Everything above the link is
//! checked by the link-generic cases, which run again on each link (`cases::LINK_GENERIC`).
//! LINK-5 and ZB-3 are SHOULDs; BLE-6 (a stable address) needs a restart the suite cannot ask for.

use std::time::Duration;

use softbus::link::ble::AdvertData;
use softbus::link::sar;
use softbus::wire::msg::{ChannelKind, Message, MsgBody};
use softbus::DeviceId;
use softbus_harness::link::Transport;

use crate::case::{Case, Ctx};
use crate::tester::lower::{SecureConn, StepError};

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-LINK-001",
            title: "exchanges 1400-byte frames over Zigbee in segments of at most 80 bytes on endpoint 0x5B, cluster 0xFC5B",
            requirements: &["LINK-1", "LINK-2", "LINK-4", "ZB-1", "ZB-2"],
            pics: "TRANSPORT_ZIGBEE && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "zigbee",
            run: full_size_frames,
        },
        Case {
            id: "SB-LINK-002",
            title: "discards broken segment sequences on Zigbee and delivers the datagrams that follow",
            requirements: &["LINK-3", "LINK-6", "LINK-7"],
            pics: "TRANSPORT_ZIGBEE && SESS_STREAM",
            pixit: &["pin", "step_timeout_ms"],
            transport: "zigbee",
            run: broken_sequences,
        },
        Case {
            id: "SB-LINK-005",
            title: "ignores APS frames on its SoftBus endpoint that carry another cluster",
            requirements: &["ZB-4"],
            pics: "TRANSPORT_ZIGBEE && SESS_STREAM",
            pixit: &["pin", "step_timeout_ms"],
            transport: "zigbee",
            run: misaddressed_ignored,
        },
        Case {
            id: "SB-LINK-003",
            title: "exchanges 1400-byte frames over BLE, writes to RX and notifications of TX each within ATT_MTU - 3",
            requirements: &["LINK-1", "LINK-2", "LINK-4", "BLE-2", "BLE-3", "BLE-4", "BLE-7"],
            pics: "TRANSPORT_BLE && SESS_MESSAGE",
            pixit: &["pin", "step_timeout_ms"],
            transport: "ble",
            run: full_size_frames,
        },
        Case {
            id: "SB-LINK-004",
            title: "discards broken segment sequences on BLE and delivers the datagrams that follow",
            requirements: &["LINK-3", "LINK-6", "LINK-7"],
            pics: "TRANSPORT_BLE && SESS_STREAM",
            pixit: &["pin", "step_timeout_ms"],
            transport: "ble",
            run: broken_sequences,
        },
        Case {
            id: "SB-BLE-001",
            title: "advertises the SoftBus service with true service data: version, pairing flag, device ID, capability kinds",
            requirements: &["BLE-1", "BLE-5"],
            pics: "TRANSPORT_BLE",
            pixit: &["pin", "step_timeout_ms", "capabilities"],
            transport: "ble",
            run: advert_is_true,
        },
    ]
}

/// The largest payload of a one-fragment DATA message, so its record is a full 1400-byte frame.
fn full_payload(c: &SecureConn, n: usize, tag: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31) ^ tag)
        .collect::<Vec<u8>>()[..n.min(c.max_fragment())]
        .to_vec()
}

fn full_size_frames(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c, sid) = ctx.session("echo", ChannelKind::Message)?;
    let t = ctx.timeout();
    let payload = full_payload(&c, c.max_fragment(), 0x5B);
    let frame_len = c.seal_at(&data(sid, 1, &payload), 0).len();
    ctx.note(format!(
        "sending a {}-byte message in one {frame_len}-byte frame over {}",
        payload.len(),
        lt.transport()
    ));
    c.send_data(sid, 1, &payload, ChannelKind::Message)?;
    let echo = c.recv_data(sid, t);
    let link = lt.link();
    let stats = link.stats();
    ctx.note(format!("link: {stats:?}"));
    let Some(echo) = ctx.must(
        "LINK-4",
        "the echo of a message sent in a 1400-byte frame",
        echo,
    ) else {
        return Ok(());
    };
    ctx.check(
        "LINK-4",
        echo == payload,
        format!("the {}-byte echo equal to what was sent", payload.len()),
        format!("{} bytes, different", echo.len()),
    );
    let limit_req = if lt.transport() == Transport::Zigbee {
        "ZB-2"
    } else {
        "BLE-4"
    };
    ctx.check(
        limit_req,
        stats.packet_limit == 0 || stats.largest_packet_in <= stats.packet_limit,
        format!("segments of at most {} bytes", stats.packet_limit),
        format!("a {}-byte segment", stats.largest_packet_in),
    );
    ctx.check(
        "LINK-2",
        stats.discarded == 0,
        "every segment of the DUT's continuing its datagram (START, indexes, END, length)",
        format!("{} segments the tester had to discard", stats.discarded),
    );
    ctx.check(
        "LINK-1",
        stats.packets_in as usize > frame_len / stats.packet_limit.max(1),
        "the echo's frame in several segments",
        format!("{} segments in all", stats.packets_in),
    );
    ctx.pass();
    Ok(())
}

fn data(session_id: u32, msg_id: u32, payload: &[u8]) -> Message {
    Message {
        rseq: 0,
        body: MsgBody::Data {
            session_id,
            msg_id,
            frag_index: 0,
            frag_count: 1,
            payload: payload.to_vec(),
        },
    }
}

fn broken_sequences(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c, sid) = ctx.session("echo", ChannelKind::Stream)?;
    let link = lt.link();
    let limit = link.stats().packet_limit.max(sar::MIN_SEGMENT);
    let wait = ctx.timeout().min(Duration::from_secs(2));
    // Four stream messages of a few segments each, labelled so their echoes tell them apart.
    let msg = |n: u8| -> Vec<u8> {
        let mut p = format!("segmentation probe {n} ").into_bytes();
        p.resize(3 * limit, b'0' + n);
        p
    };
    let seal = |c: &mut SecureConn, id: u32, p: &[u8]| c.seal(&data(sid, id, p));
    let (m1, m2, m3, m4) = (msg(1), msg(2), msg(3), msg(4));
    let d1 = seal(&mut c, 11, &m1);
    let d2 = seal(&mut c, 12, &m2);
    let d3 = seal(&mut c, 13, &m3);
    let d4 = seal(&mut c, 14, &m4);
    let s1 = sar::segment(&d1, 40, limit).map_err(|e| StepError::Io(e.to_string()))?;
    let s2 = sar::segment(&d2, 41, limit).map_err(|e| StepError::Io(e.to_string()))?;
    let s3 = sar::segment(&d3, 42, limit).map_err(|e| StepError::Io(e.to_string()))?;
    ctx.note(format!(
        "datagrams of {} segments; 1 misses its second segment, 2 is cut off by 3's START, garbage follows, 4 goes whole",
        s1.len()
    ));
    // 1: a segment missing in the middle.
    for (i, s) in s1.iter().enumerate() {
        if i != 1 {
            link.send_packet(s)?;
        }
    }
    // 2: cut off by the START of 3, which is complete.
    link.send_packet(&s2[0])?;
    for s in &s3 {
        link.send_packet(s)?;
    }
    // Segments that belong to nothing: a continuation, a truncated START, a bad length.
    link.send_packet(&[0x05, 3, 1, 2, 3])?;
    link.send_packet(&[0x80])?;
    link.send_packet(&[0xC0, 0, 0xFF, 0xFF, 1])?;
    // 4: whole, through the link's own segmentation.
    c.send_raw(&d4)?;
    let echoes = c.collect(wait)?;
    let label = |m: &Message| match &m.body {
        MsgBody::Data {
            session_id,
            payload,
            ..
        } if *session_id == sid => [&m1, &m2, &m3, &m4]
            .iter()
            .position(|x| *x == payload)
            .map(|i| i + 1),
        _ => None,
    };
    let seen: Vec<usize> = echoes.iter().filter_map(|(_, m)| label(m)).collect();
    ctx.note(format!("echoes of messages {seen:?}"));
    ctx.check(
        "LINK-6",
        !seen.contains(&1),
        "no echo of the datagram that missed a segment",
        "message 1 echoed",
    );
    ctx.check(
        "LINK-6",
        !seen.contains(&2),
        "no echo of the datagram cut off by a new START",
        "message 2 echoed",
    );
    ctx.check(
        "LINK-3",
        seen.iter().filter(|n| **n == 3).count() == 1,
        "one echo of the complete datagram after the broken one",
        format!("{seen:?}"),
    );
    ctx.check(
        "LINK-7",
        seen.iter().filter(|n| **n == 4).count() == 1,
        "one echo of the datagram after the stray segments",
        format!("{seen:?}"),
    );
    ctx.pass();
    Ok(())
}

fn misaddressed_ignored(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c, sid) = ctx.session("echo", ChannelKind::Stream)?;
    let link = lt.link();
    let wait = ctx.timeout().min(Duration::from_secs(2));
    let stray = b"another cluster: not for SoftBus".to_vec();
    let fine = b"the SoftBus cluster".to_vec();
    let d_stray = c.seal(&data(sid, 21, &stray));
    let d_fine = c.seal(&data(sid, 22, &fine));
    let limit = link.stats().packet_limit.max(sar::MIN_SEGMENT);
    let segs = sar::segment(&d_stray, 9, limit).map_err(|e| StepError::Io(e.to_string()))?;
    for s in &segs {
        if !link.send_misaddressed(s)? {
            return Err(StepError::Io(format!(
                "the {} link cannot address a packet outside the binding",
                lt.transport()
            )));
        }
    }
    c.send_raw(&d_fine)?;
    let echoes = c.collect(wait)?;
    let payloads: Vec<Vec<u8>> = echoes
        .iter()
        .filter_map(|(_, m)| match &m.body {
            MsgBody::Data {
                session_id,
                payload,
                ..
            } if *session_id == sid => Some(payload.clone()),
            _ => None,
        })
        .collect();
    ctx.check(
        "ZB-4",
        !payloads.contains(&stray),
        "no echo of the datagram sent with cluster 0xFC5C",
        "it was echoed",
    );
    ctx.check(
        "ZB-4",
        payloads.contains(&fine),
        "the echo of the datagram sent right after on cluster 0xFC5B",
        format!("{} echoes, none of it", payloads.len()),
    );
    ctx.pass();
    Ok(())
}

fn advert_is_true(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let lower = ctx.lower();
    let Some(mut lt) = ctx.must(
        "BLE-1",
        "a connectable advert with the SoftBus service, and its GATT service",
        lower,
    ) else {
        return Ok(());
    };
    let raw = lt.link().advert();
    let Some(raw) = ctx.must(
        "BLE-1",
        "service data for 0xFD5B in the advert",
        raw.ok_or_else(|| StepError::Unexpected("no SoftBus service data".into())),
    ) else {
        return Ok(());
    };
    let parsed = AdvertData::parse(&raw).map_err(|e| StepError::Unexpected(e.to_string()));
    let Some(ad) = ctx.must("BLE-1", "8 bytes of SoftBus advert data", parsed) else {
        return Ok(());
    };
    ctx.note(format!("advert data {}: {ad:?}", hex::encode(&raw)));
    ctx.check(
        "BLE-5",
        ad.version == 1,
        "version 1",
        ad.version.to_string(),
    );
    ctx.check(
        "BLE-5",
        ad.pairable,
        "the pairing flag set (the DUT has a PIN)",
        "not set",
    );
    ctx.pair(&mut lt)?;
    let mut c = lt.handshake()?;
    ctx.keep_keys(&c);
    let id: DeviceId = c.dut_id();
    ctx.check(
        "BLE-5",
        ad.device_hash == id.0[..4],
        format!("device hash {}", hex::encode(&id.0[..4])),
        hex::encode(ad.device_hash),
    );
    c.send_reliable(MsgBody::CapQuery { req_id: 16 })?;
    let t = ctx.timeout();
    let m = c.expect(t, "CAP_LIST", |b| {
        matches!(b, MsgBody::CapList { req_id: 16, .. })
    })?;
    if let MsgBody::CapList { cbor, .. } = m.body {
        let caps = softbus::capability::decode_list(&cbor)
            .map_err(|e| StepError::Unexpected(e.to_string()))?;
        let mut bits = 0u16;
        for cap in &caps {
            if let Some(i) = crate::cases::cap::SPEC_KINDS
                .iter()
                .position(|k| *k == cap.kind)
            {
                bits |= 1 << i;
            }
        }
        ctx.check(
            "BLE-5",
            ad.capabilities == bits,
            format!("capability bits {bits:#06x} (the kinds of its CAP_LIST)"),
            format!("{:#06x}", ad.capabilities),
        );
    }
    ctx.pass();
    Ok(())
}
