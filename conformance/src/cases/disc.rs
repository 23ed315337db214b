//! Section 3, discovery over CoAP.
//!
//! > [DISC-2] A device MUST answer a matching GET request for `/softbus/v1/device` with a 2.05
//! > Content response that carries Content-Format 60 (`application/cbor`), the token of the
//! > request, and its advert (3.2) as payload.
//! >
//! > [DISC-5] A device MUST NOT answer a multicast request that it does not match.
//! >
//! > [DISC-11] A device MUST send an advert that is valid against `softbus-advert` and contains
//! > every key the schema lists by name.
//!
//! (and DISC-1, 3, 4, 6–10, 12, 13, ID-1, ID-2: see each case's requirement list.)

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;
use softbus::discovery::{Advert, Probe};
use softbus::wire::coap::{CoapMessage, Code as CoapCode, ContentFormat, MessageType};

use crate::case::{Case, Ctx};
use crate::tester::lower::StepError;

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-DISC-001",
            title: "answers a multicast CoAP probe with its advert within 500 ms",
            requirements: &["DISC-1", "DISC-2", "DISC-3", "DISC-4"],
            pics: "DISC_COAP",
            pixit: &["step_timeout_ms"],
            transport: "udp",
            run: answers_multicast_probe,
        },
        Case {
            id: "SB-DISC-002",
            title: "advertises fields consistent with its key, its HELLO and its PICS",
            requirements: &["DISC-11", "DISC-12", "DISC-13", "ID-1", "ID-2"],
            pics: "DISC_COAP && PAIR_PIN",
            pixit: &["pin", "capabilities"],
            transport: "udp",
            run: advert_is_consistent,
        },
        Case {
            id: "SB-DISC-003",
            title: "answers a confirmable unicast GET with a piggybacked ACK",
            requirements: &["DISC-2", "DISC-3"],
            pics: "DISC_COAP",
            pixit: &[],
            transport: "udp",
            run: piggybacks_confirmable_get,
        },
        Case {
            id: "SB-DISC-004",
            title: "stays silent on multicast and answers 4.04 on unicast for a capability kind it lacks, also among several cap= filters",
            requirements: &["DISC-5", "DISC-6", "DISC-9", "DISC-2"],
            pics: "DISC_COAP",
            pixit: &["capabilities"],
            transport: "udp",
            run: filters_by_capability,
        },
        Case {
            id: "SB-DISC-005",
            title: "serves /.well-known/core, 4.04 for unknown paths and 4.05 for other methods",
            requirements: &["DISC-7", "DISC-8"],
            pics: "DISC_COAP",
            pixit: &[],
            transport: "udp",
            run: serves_core_and_errors,
        },
        Case {
            id: "SB-DISC-006",
            title: "resets a malformed confirmable message and ignores other malformed CoAP",
            requirements: &["DISC-10"],
            pics: "DISC_COAP",
            pixit: &[],
            transport: "udp",
            run: resets_malformed_con,
        },
    ]
}

const T_RESP: Duration = Duration::from_millis(500);

/// Where the DUT listens for unicast CoAP: `hello.coap` when it reports one, else port 5683 on
/// its frame address.
fn coap_unicast(ctx: &mut Ctx<'_>) -> Result<SocketAddr, StepError> {
    let hello = ctx.upper()?.call(serde_json::json!({"op": "hello"}))?;
    if let Some(a) = hello["coap"].as_str().and_then(|s| s.parse().ok()) {
        return Ok(a);
    }
    Ok(SocketAddr::new(ctx.dut.udp.ip(), 5683))
}

fn multicast_target(ctx: &Ctx<'_>) -> (SocketAddrV4, Ipv4Addr) {
    let d = ctx.dut.dut.discovery.clone();
    let group: Ipv4Addr = d
        .as_ref()
        .map(|d| d.group)
        .unwrap_or(Ipv4Addr::new(224, 0, 1, 187));
    let port = d.as_ref().map(|d| d.port).unwrap_or(5683);
    let iface = match ctx.dut.udp.ip() {
        std::net::IpAddr::V4(v4) if v4.is_loopback() => v4,
        _ => d
            .as_ref()
            .and_then(|d| d.interface.as_ref())
            .and_then(|i| i.parse().ok())
            .unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    (SocketAddrV4::new(group, port), iface)
}

fn socket(iface: Ipv4Addr) -> Result<UdpSocket, StepError> {
    let s = UdpSocket::bind(SocketAddrV4::new(iface, 0))?;
    if !iface.is_unspecified() {
        socket2::SockRef::from(&s).set_multicast_if_v4(&iface)?;
    }
    s.set_multicast_loop_v4(true)?;
    Ok(s)
}

/// Every datagram that arrives within `dur`.
fn collect(s: &UdpSocket, dur: Duration) -> Result<Vec<(Instant, SocketAddr, Vec<u8>)>, StepError> {
    let end = Instant::now() + dur;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(out);
        }
        s.set_read_timeout(Some(left))?;
        match s.recv_from(&mut buf) {
            Ok((n, from)) => out.push((Instant::now(), from, buf[..n].to_vec())),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(out)
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Datagrams received: when, from where, what.
type Received = Vec<(Instant, SocketAddr, Vec<u8>)>;

fn probe_multicast(
    ctx: &mut Ctx<'_>,
    filter: Option<&str>,
) -> Result<(Probe, Instant, Received), StepError> {
    let (target, iface) = multicast_target(ctx);
    let s = socket(iface)?;
    let token = (ctx.seed as u32).to_be_bytes();
    let probe = Probe::new(ctx.seed as u16, token, filter)
        .map_err(|e| StepError::Unexpected(e.to_string()))?;
    let sent = Instant::now();
    s.send_to(&probe.to_bytes(), target)?;
    ctx.note(format!(
        "multicast probe to {target} via {iface}, filter {filter:?}"
    ));
    let got = collect(&s, T_RESP + Duration::from_millis(300))?;
    Ok((probe, sent, got))
}

fn unicast(ctx: &mut Ctx<'_>, msg: &CoapMessage) -> Result<Option<CoapMessage>, StepError> {
    let to = coap_unicast(ctx)?;
    let s = UdpSocket::bind(SocketAddr::new(ctx.local.ip(), 0))?;
    s.send_to(&msg.to_bytes(), to)?;
    let got = collect(&s, T_RESP)?;
    Ok(got
        .into_iter()
        .find_map(|(_, _, b)| CoapMessage::parse(&b).ok()))
}

fn get(mid: u16, token: [u8; 4], path: &[&str], ty: MessageType) -> Result<CoapMessage, StepError> {
    let mut m = CoapMessage::new(ty, CoapCode::GET, mid).with_token(token.into());
    for p in path {
        m.push_uri_path(p)
            .map_err(|e| StepError::Unexpected(e.to_string()))?;
    }
    Ok(m)
}

fn answers_multicast_probe(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (probe, sent, got) = probe_multicast(ctx, None)?;
    let answers: Vec<_> = got
        .iter()
        .filter(|(_, _, b)| {
            CoapMessage::parse(b).is_ok_and(|m| m.token.as_bytes() == probe.token())
        })
        .collect();
    let Some((at, from, bytes)) = answers.first() else {
        ctx.check(
            "DISC-1",
            false,
            "a response to the multicast probe",
            "no response within 800 ms",
        );
        return Ok(());
    };
    ctx.note(format!(
        "response from {from} after {:?}",
        at.duration_since(sent)
    ));
    ctx.check(
        "DISC-4",
        at.duration_since(sent) <= T_RESP,
        "response within 500 ms",
        format!("{:?}", at.duration_since(sent)),
    );
    let Ok(m) = CoapMessage::parse(bytes) else {
        return Ok(());
    };
    ctx.check(
        "DISC-2",
        m.code == CoapCode::CONTENT,
        "2.05 Content",
        m.code.to_string(),
    );
    ctx.check(
        "DISC-2",
        m.content_format().ok().flatten() == Some(ContentFormat::CBOR),
        "Content-Format 60",
        format!("{:?}", m.content_format()),
    );
    ctx.check(
        "DISC-3",
        m.msg_type == MessageType::NonConfirmable,
        "a NON response to a NON request",
        m.msg_type.abbreviation(),
    );
    match Advert::from_cbor(&m.payload) {
        Ok(_) => {}
        Err(e) => {
            ctx.check("DISC-2", false, "an advert as payload", format!("{e}"));
        }
    }
    ctx.check(
        "DISC-1",
        answers.len() == 1,
        "exactly one response",
        format!("{}", answers.len()),
    );
    ctx.pass();
    Ok(())
}

fn advert_is_consistent(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let m = get(
        0x1234,
        [1, 2, 3, 4],
        &["softbus", "v1", "device"],
        MessageType::NonConfirmable,
    )?;
    let answer = unicast(ctx, &m);
    let Some(resp) = ctx.must("DISC-2", "an answer to a unicast GET", answer) else {
        return Ok(());
    };
    let Some(resp) = resp else {
        ctx.check(
            "DISC-2",
            false,
            "an answer to a unicast GET",
            "nothing within 500 ms",
        );
        return Ok(());
    };
    let advert = match Advert::from_cbor(&resp.payload) {
        Ok(a) => a,
        Err(e) => {
            ctx.check(
                "DISC-11",
                false,
                "an advert valid against softbus-advert",
                e.to_string(),
            );
            return Ok(());
        }
    };
    ctx.note(format!("advert: {advert:?}"));
    ctx.check(
        "ID-2",
        advert.check_device_id().is_ok(),
        "id derived from pk",
        format!(
            "id {} pk {}",
            hex::encode(advert.id),
            hex::encode(advert.pk)
        ),
    );
    let mut kinds = ctx.pixit.capabilities.clone();
    kinds.sort();
    let mut caps = advert.caps.clone();
    caps.sort();
    ctx.check(
        "DISC-12",
        caps == kinds,
        format!("caps {kinds:?} (PIXIT capabilities)"),
        format!("{caps:?}"),
    );
    let mut dedup = caps.clone();
    dedup.dedup();
    ctx.check(
        "DISC-12",
        dedup.len() == caps.len(),
        "each kind once",
        format!("{caps:?}"),
    );
    ctx.check(
        "DISC-13",
        advert.pair,
        "pair = true while a PIN is set",
        "false",
    );
    // The same key and values must appear in the handshake.
    let mut lt = ctx.lower()?;
    ctx.pair(&mut lt)?;
    let conn = lt.handshake()?;
    ctx.keep_keys(&conn);
    ctx.check(
        "ID-1",
        conn.dut_static == advert.pk,
        "the Noise static key equals the advert's pk",
        hex::encode(conn.dut_static),
    );
    ctx.check(
        "DISC-13",
        conn.dut_hello.hb_ms == advert.hb,
        format!("hb = HELLO hb_interval_ms {}", conn.dut_hello.hb_ms),
        advert.hb.to_string(),
    );
    ctx.check(
        "DISC-13",
        conn.dut_hello.name == advert.name,
        format!("name = HELLO name {:?}", conn.dut_hello.name),
        advert.name.clone(),
    );
    let pt = ctx.pixit.prompt_timeout_ms;
    ctx.check(
        "DISC-13",
        u64::from(advert.pt) == pt,
        format!("pt = PIXIT prompt_timeout_ms {pt}"),
        advert.pt.to_string(),
    );
    ctx.pass();
    Ok(())
}

fn piggybacks_confirmable_get(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let m = get(
        0x4242,
        [9, 9, 9, 9],
        &["softbus", "v1", "device"],
        MessageType::Confirmable,
    )?;
    let Some(resp) = unicast(ctx, &m)? else {
        ctx.check(
            "DISC-3",
            false,
            "a piggybacked ACK",
            "no answer within 500 ms",
        );
        return Ok(());
    };
    ctx.check(
        "DISC-3",
        resp.msg_type == MessageType::Acknowledgement,
        "ACK",
        resp.msg_type.abbreviation(),
    );
    ctx.check(
        "DISC-3",
        resp.message_id == 0x4242,
        "message ID 0x4242",
        format!("{:#06x}", resp.message_id),
    );
    ctx.check(
        "DISC-2",
        resp.token.as_bytes() == [9, 9, 9, 9],
        "the request's token",
        hex::encode(resp.token.as_bytes()),
    );
    ctx.check(
        "DISC-2",
        resp.code == CoapCode::CONTENT,
        "2.05",
        resp.code.to_string(),
    );
    ctx.pass();
    Ok(())
}

fn filters_by_capability(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let absent = crate::cases::cap::SPEC_KINDS
        .iter()
        .copied()
        .find(|k| !ctx.pixit.capabilities.iter().any(|c| c == k));
    let Some(absent) = absent else {
        ctx.outcome
            .inconc("the DUT offers every capability kind; no filter can miss");
        return Ok(());
    };
    let (probe, _, got) = probe_multicast(ctx, Some(absent))?;
    let answers: Vec<Value> = got
        .iter()
        .filter_map(|(_, from, b)| {
            CoapMessage::parse(b)
                .ok()
                .filter(|m| m.token.as_bytes() == probe.token())
                .map(|m| serde_json::json!({"from": from.to_string(), "code": m.code.to_string()}))
        })
        .collect();
    ctx.check(
        "DISC-5",
        answers.is_empty(),
        format!("no answer to a multicast probe with cap={absent}"),
        format!("{answers:?}"),
    );
    let mut m = get(
        7,
        [7, 7, 7, 7],
        &["softbus", "v1", "device"],
        MessageType::NonConfirmable,
    )?;
    m.push_uri_query(&format!("cap={absent}"))
        .map_err(|e| StepError::Unexpected(e.to_string()))?;
    match unicast(ctx, &m)? {
        Some(r) => ctx.check(
            "DISC-6",
            r.code == CoapCode::NOT_FOUND,
            "4.04",
            r.code.to_string(),
        ),
        None => ctx.check("DISC-6", false, "4.04", "no answer"),
    };
    // Several filters: a device matches only when it has every kind asked for (3.1). One it has
    // with one it lacks: no match; every kind it has: a match.
    let mut have: Vec<String> = ctx.pixit.capabilities.clone();
    have.sort();
    have.dedup();
    if let Some(present) = have.first().cloned() {
        let device_get = |mid: u16, token: [u8; 4], kinds: &[&str], ty| {
            let mut m = get(mid, token, &["softbus", "v1", "device"], ty)?;
            for k in kinds {
                m.push_uri_query(&format!("cap={k}"))
                    .map_err(|e| StepError::Unexpected(e.to_string()))?;
            }
            Ok::<_, StepError>(m)
        };
        let mixed = device_get(
            8,
            [8, 8, 8, 8],
            &[present.as_str(), absent],
            MessageType::NonConfirmable,
        )?;
        let answers = multicast_answers(ctx, &mixed)?;
        ctx.check(
            "DISC-5",
            answers.is_empty(),
            format!("no answer to a multicast probe with cap={present} and cap={absent}"),
            format!("{answers:?}"),
        );
        match unicast(ctx, &mixed)? {
            Some(r) => ctx.check(
                "DISC-6",
                r.code == CoapCode::NOT_FOUND,
                format!("4.04 for a unicast GET with cap={present} and cap={absent}"),
                r.code.to_string(),
            ),
            None => ctx.check("DISC-6", false, "4.04", "no answer"),
        };
        let kinds: Vec<&str> = have.iter().map(String::as_str).collect();
        let all = device_get(9, [9, 9, 9, 8], &kinds, MessageType::NonConfirmable)?;
        let answers = multicast_answers(ctx, &all)?;
        ctx.check(
            "DISC-2",
            answers.len() == 1 && answers[0]["code"] == CoapCode::CONTENT.to_string(),
            format!(
                "one 2.05 answer to a multicast probe naming every kind it has ({})",
                kinds.join(", ")
            ),
            format!("{answers:?}"),
        );
    }
    ctx.pass();
    Ok(())
}

/// Send `m` to the discovery group; the answers carrying its token, as {from, code}.
fn multicast_answers(ctx: &mut Ctx<'_>, m: &CoapMessage) -> Result<Vec<Value>, StepError> {
    let (target, iface) = multicast_target(ctx);
    let s = socket(iface)?;
    s.send_to(&m.to_bytes(), target)?;
    let got = collect(&s, T_RESP + Duration::from_millis(300))?;
    Ok(got
        .iter()
        .filter_map(|(_, from, b)| {
            CoapMessage::parse(b)
                .ok()
                .filter(|r| r.token == m.token)
                .map(|r| serde_json::json!({"from": from.to_string(), "code": r.code.to_string()}))
        })
        .collect())
}

fn serves_core_and_errors(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let m = get(
        11,
        [1, 1, 1, 1],
        &[".well-known", "core"],
        MessageType::NonConfirmable,
    )?;
    match unicast(ctx, &m)? {
        Some(r) => {
            ctx.check(
                "DISC-7",
                r.code == CoapCode::CONTENT,
                "2.05",
                r.code.to_string(),
            );
            ctx.check(
                "DISC-7",
                r.content_format().ok().flatten() == Some(ContentFormat::LINK_FORMAT),
                "Content-Format 40",
                format!("{:?}", r.content_format()),
            );
            let body = String::from_utf8_lossy(&r.payload).to_string();
            ctx.check(
                "DISC-7",
                body == "</softbus/v1/device>;rt=\"softbus.device\";ct=60",
                "the spec's link",
                body,
            );
        }
        None => {
            ctx.check("DISC-7", false, "an answer", "nothing");
        }
    }
    let m = get(
        12,
        [2, 2, 2, 2],
        &["softbus", "v1", "nothing"],
        MessageType::NonConfirmable,
    )?;
    let r = unicast(ctx, &m)?;
    ctx.check(
        "DISC-8",
        r.as_ref().is_some_and(|r| r.code == CoapCode::NOT_FOUND),
        "4.04 for an unknown path",
        format!("{:?}", r.map(|r| r.code.to_string())),
    );
    let mut m = get(
        13,
        [3, 3, 3, 3],
        &["softbus", "v1", "device"],
        MessageType::NonConfirmable,
    )?;
    m.code = CoapCode::POST;
    let r = unicast(ctx, &m)?;
    ctx.check(
        "DISC-8",
        r.as_ref()
            .is_some_and(|r| r.code == CoapCode::METHOD_NOT_ALLOWED),
        "4.05 for POST",
        format!("{:?}", r.map(|r| r.code.to_string())),
    );
    ctx.pass();
    Ok(())
}

fn resets_malformed_con(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let to = coap_unicast(ctx)?;
    let s = UdpSocket::bind(SocketAddr::new(ctx.local.ip(), 0))?;
    // CON GET, message ID 0x0bad, token length 4 but only 2 token bytes.
    s.send_to(&[0x44, 0x01, 0x0b, 0xad, 0xaa, 0xbb], to)?;
    let got = collect(&s, T_RESP)?;
    let rst = got
        .iter()
        .filter_map(|(_, _, b)| CoapMessage::parse(b).ok())
        .find(|m| m.msg_type == MessageType::Reset);
    ctx.check(
        "DISC-10",
        rst.as_ref().is_some_and(|m| m.message_id == 0x0bad),
        "RST with message ID 0x0bad",
        format!(
            "{:?}",
            got.iter()
                .map(|(_, _, b)| hex::encode(b))
                .collect::<Vec<_>>()
        ),
    );
    // A malformed NON gets nothing.
    s.send_to(&[0x54, 0x01, 0x0b, 0xae, 0xaa], to)?;
    let got = collect(&s, T_RESP)?;
    ctx.check(
        "DISC-10",
        got.is_empty(),
        "no answer to a malformed NON",
        format!("{} datagrams", got.len()),
    );
    ctx.pass();
    Ok(())
}
