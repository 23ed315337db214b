//! Section 14, the tester control protocol ("upper tester"), and the helpers the other modules
//! use to read the DUT's state and events.
//!
//! > [CTRL-1] A DUT MUST answer every request line with exactly one response line that carries
//! > the request's `id` (null when the line has none).
//! >
//! > [CTRL-2] A DUT MUST answer a line that is not a JSON object, or an object without a string
//! > `op`, with error code `BAD_REQUEST` (and `id` null when the line has no usable `id`), and a
//! > request whose `op` it does not know with error code `UNKNOWN_OP`. A line that is not valid
//! > UTF-8 is not a JSON object [...]: it is answered `BAD_REQUEST` with `id` null, and the
//! > connection goes on.
//! >
//! > [CTRL-18] A DUT MUST answer a request line longer than the longest it accepts with error
//! > code `BAD_REQUEST` and `id` null, once, discard the line up to its line feed, and go on
//! > serving the connection.
//! >
//! > [CTRL-9] A DUT MUST answer `reset` only after it has discarded all its connections (without
//! > sending CLOSE), handshakes, sessions, pairing attempts, pending prompts and grants, emptied
//! > its trust store [...], cleared its failure count and lockout, removed its PIN, set its prompt
//! > policy to `deny`, and set the counters of [ERR-7] to 0.
//! >
//! > [CTRL-17] A DUT MUST report each event of the table of 14.5 when it happens, with the
//! > members listed and consecutive `seq` values, and keep at least the 1024 most recent events.
//!
//! (and CTRL-3, 7, 11, 14, 16, ID-3: see each case's requirement list. [CTRL-4], [CTRL-5],
//! [CTRL-8], [CTRL-13], [CTRL-19] and [CTRL-20] are SHOULDs and are not judged.)

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use softbus::wire::frame::{Body, Frame};
use softbus::wire::msg::{ChannelKind, MsgBody, PermResult, Qos, Scope};
use softbus::wire::Code;

use crate::case::{Case, Ctx};
use crate::cases::steps::{
    brief, connections, ev_type, gather, grants_issued, maybe, peer_id, T_RESP,
};
use crate::tester::lower::{LowerTester, StepError};
use crate::tester::upper::Upper;

mod lines;
use lines::{bad_lines, invalid_args, long_line, one_answer_per_line, raw_client};

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-CTRL-001",
            title: "answers every request line with one response line carrying its id, in order, whatever the id",
            requirements: &["CTRL-1"],
            pics: "CTRL",
            pixit: &[],
            transport: "udp",
            run: one_answer_per_line,
        },
        Case {
            id: "SB-CTRL-002",
            title: "answers BAD_REQUEST to a line that is not a request and UNKNOWN_OP to an unknown op",
            requirements: &["CTRL-2", "CTRL-1"],
            pics: "CTRL",
            pixit: &[],
            transport: "udp",
            run: bad_lines,
        },
        Case {
            id: "SB-CTRL-003",
            title: "answers INVALID_ARGS to a missing, mistyped or out-of-range argument",
            requirements: &["CTRL-3"],
            pics: "CTRL",
            pixit: &[],
            transport: "udp",
            run: invalid_args,
        },
        Case {
            id: "SB-CTRL-004",
            title: "implements the mandatory ops and lists in hello exactly the ops it implements, with a consistent identity",
            requirements: &["CTRL-7"],
            pics: "CTRL",
            pixit: &[],
            transport: "udp",
            run: hello_and_ops,
        },
        Case {
            id: "SB-CTRL-005",
            title: "reset discards connections, prompts, grants, trust store, PIN, lockout and counters, keeps the identity and sets policy deny",
            requirements: &["CTRL-9", "ID-3", "CTRL-11"],
            pics: "CTRL && PAIR_PIN && PERM",
            pixit: &["pin"],
            transport: "udp",
            run: reset_clears,
        },
        Case {
            id: "SB-CTRL-006",
            title: "reports in state every member of 14.4, reflecting the frames and requests processed",
            requirements: &["CTRL-16"],
            pics: "CTRL && PERM && SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: state_members,
        },
        Case {
            id: "SB-CTRL-007",
            title: "reports events with the members of 14.5 and consecutive seq values, keeping at least the 1024 most recent",
            requirements: &["CTRL-17"],
            pics: "CTRL && PERM && SESS_MESSAGE",
            pixit: &[],
            transport: "udp",
            run: events_reported,
        },
        Case {
            id: "SB-CTRL-008",
            title: "answers pair, connect, open_session, query_capabilities, request_permission and invoke at once and reports each outcome as an event",
            requirements: &["CTRL-14", "CTRL-7", "CTRL-17"],
            pics: "CTRL && PERM && SESS_MESSAGE",
            pixit: &["pin"],
            transport: "udp",
            run: exchanges_as_events,
        },
        Case {
            id: "SB-CTRL-009",
            title: "answers a line longer than it accepts with one BAD_REQUEST and goes on serving the connection",
            requirements: &["CTRL-18", "CTRL-1"],
            pics: "CTRL",
            pixit: &[],
            transport: "udp",
            run: long_line,
        },
    ]
}

// ---------------------------------------------------------------------------------- helpers

/// Send `lines` on `u` and read one response per expected answer, then check that nothing more
/// comes. Returns the parsed responses (`Value::Null` for a line that is not JSON).
fn exchange(
    u: &mut Upper,
    lines: &[String],
    answers: usize,
    t: Duration,
) -> Result<(Vec<Value>, Vec<String>), StepError> {
    for l in lines {
        u.write_line(l)?;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        match u.read_line(t)? {
            Some(l) => out.push(serde_json::from_str(&l).unwrap_or(Value::Null)),
            None => break,
        }
    }
    let mut extra = Vec::new();
    while let Some(l) = u.read_line(Duration::from_millis(300))? {
        extra.push(l.trim_end().to_string());
    }
    Ok((out, extra))
}

/// The 16-hex-digit form of a device ID.
fn is_device_id(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Lowercase hex (possibly empty).
fn is_hex(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() % 2 == 0
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// What a member of an event must hold (14.5).
#[derive(Clone, Copy)]
enum M {
    Dev,
    Str,
    Num,
    Bool,
    Code,
    Hex,
    Addr,
    Kind,
    Scope,
    PermResult,
    Caps,
}

fn member_ok(v: &Value, m: M) -> bool {
    match m {
        M::Dev => is_device_id(v),
        M::Str => v.is_string(),
        M::Num => v.is_u64(),
        M::Bool => v.is_boolean(),
        M::Code => v.as_str().is_some_and(|s| Code::from_name(s).is_some()),
        M::Hex => is_hex(v),
        M::Addr => v["link"].is_string() && v["addr"].is_string(),
        M::Kind => matches!(v.as_str(), Some("message" | "bytes" | "stream")),
        M::Scope => matches!(v.as_str(), Some("once" | "session" | "until-revoked")),
        M::PermResult => matches!(
            v.as_str(),
            Some("granted" | "denied" | "timeout" | "unknown-capability")
        ),
        M::Caps => v.as_array().is_some_and(|a| {
            a.iter()
                .all(|c| c["name"].is_string() && c["kind"].is_string() && c["metrics"].is_object())
        }),
    }
}

/// The members of each event type (14.5).
fn event_members(ty: &str) -> Option<&'static [(&'static str, M)]> {
    use M::*;
    Some(match ty {
        "paired" => &[("peer", Dev), ("addr", Addr)],
        "pairing_failed" => &[("addr", Addr), ("code", Code)],
        "connected" => &[("peer", Dev), ("addr", Addr), ("initiator", Bool)],
        "handshake_failed" => &[("addr", Addr), ("code", Code)],
        "disconnected" => &[("peer", Dev), ("code", Code)],
        "peer_lost" => &[("peer", Dev)],
        "session_opened" => &[
            ("peer", Dev),
            ("session_id", Num),
            ("service", Str),
            ("kind", Kind),
            ("inbound", Bool),
        ],
        "session_rejected" => &[("peer", Dev), ("session_id", Num), ("code", Code)],
        "session_closed" => &[
            ("peer", Dev),
            ("session_id", Num),
            ("code", Code),
            ("by_peer", Bool),
        ],
        "message" => &[("peer", Dev), ("session_id", Num), ("data", Hex)],
        "permission_prompt" => &[
            ("prompt_id", Num),
            ("peer", Dev),
            ("capability", Str),
            ("scope", Scope),
        ],
        "permission_result" => &[
            ("peer", Dev),
            ("req_id", Num),
            ("result", PermResult),
            ("grant_id", Num),
            ("expires_in_ms", Num),
        ],
        "grant_revoked" => &[("peer", Dev), ("grant_id", Num)],
        "capability_used" => &[("peer", Dev), ("capability", Str), ("grant_id", Num)],
        "capability_result" => &[
            ("peer", Dev),
            ("req_id", Num),
            ("status", Code),
            ("result", Hex),
        ],
        "capabilities" => &[("peer", Dev), ("req_id", Num), ("capabilities", Caps)],
        "peer_error" => &[("peer", Dev), ("code", Code), ("offending", Num)],
        "trust_store_changed" => &[],
        _ => return None,
    })
}

/// Check the members of every event of a known type; notes unknown types.
fn check_members(ctx: &mut Ctx<'_>, evs: &[Value]) {
    let mut unknown = BTreeSet::new();
    for e in evs {
        let ty = ev_type(e);
        let Some(members) = event_members(ty) else {
            unknown.insert(ty.to_string());
            continue;
        };
        let bad: Vec<&str> = members
            .iter()
            .filter(|(k, m)| !member_ok(&e[*k], *m))
            .map(|(k, _)| *k)
            .collect();
        ctx.check(
            "CTRL-17",
            bad.is_empty() && e["seq"].is_u64(),
            format!("a {ty} event with seq and the members of 14.5"),
            format!("{e} (bad or missing: {bad:?})"),
        );
    }
    if !unknown.is_empty() {
        ctx.note(format!("event types outside 14.5: {unknown:?}"));
    }
}

/// Copy a second control connection's transcript into the case's log.
fn keep_transcript(ctx: &mut Ctx<'_>, u: &Upper) {
    ctx.note("--- second control connection ---");
    for l in &u.transcript {
        ctx.note(l.clone());
    }
}

/// The `last` of `events`: the newest seq the DUT keeps.
fn last_seq(ctx: &mut Ctx<'_>) -> Result<u64, StepError> {
    let r = ctx
        .upper()?
        .call(json!({"op": "events", "after": 1u64 << 53}))?;
    r["last"]
        .as_u64()
        .ok_or_else(|| StepError::Unexpected(format!("events without a numeric last: {r}")))
}

// ------------------------------------------------------------------------------------ cases

fn hello_and_ops(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let h = ctx.upper()?.call(json!({"op": "hello"}))?;
    ctx.check(
        "CTRL-7",
        h["spec"] == "softbus/1",
        "hello spec \"softbus/1\"",
        h["spec"].to_string(),
    );
    ctx.check(
        "CTRL-7",
        is_device_id(&h["device_id"]),
        "hello device_id of 16 hex digits",
        h["device_id"].to_string(),
    );
    ctx.check(
        "CTRL-7",
        h["name"].as_str().is_some_and(|n| !n.is_empty()),
        "hello name",
        h["name"].to_string(),
    );
    let udp = ctx.dut.udp.to_string();
    ctx.check(
        "CTRL-7",
        h["udp"] == udp.as_str(),
        format!("hello udp {udp} (the rig's SoftBus UDP address)"),
        h["udp"].to_string(),
    );
    for k in ["tcp", "coap"] {
        ctx.check(
            "CTRL-7",
            h[k].is_null() || h[k].is_string(),
            format!("hello {k} a string or null"),
            h[k].to_string(),
        );
    }
    ctx.check(
        "CTRL-7",
        h["faults"].is_array(),
        "hello faults an array",
        h["faults"].to_string(),
    );
    let ops: BTreeSet<String> = h["ops"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let mandatory = [
        "hello",
        "reset",
        "set_pin",
        "set_prompt_policy",
        "state",
        "events",
    ];
    let missing: Vec<&str> = mandatory
        .iter()
        .copied()
        .filter(|m| !ops.contains(*m))
        .collect();
    ctx.check(
        "CTRL-7",
        missing.is_empty(),
        "hello ops listing hello, reset, set_pin, set_prompt_policy, state and events",
        format!("missing {missing:?} from {ops:?}"),
    );
    let table = [
        "hello",
        "reset",
        "set_pin",
        "set_prompt_policy",
        "discover",
        "pair",
        "connect",
        "open_session",
        "send",
        "close_session",
        "query_capabilities",
        "request_permission",
        "answer_prompt",
        "invoke",
        "revoke",
        "rekey",
        "disconnect",
        "state",
        "events",
    ];
    let extra: Vec<&String> = ops
        .iter()
        .filter(|o| !table.contains(&o.as_str()))
        .collect();
    if !extra.is_empty() {
        ctx.note(format!("ops outside 14.3: {extra:?}"));
    }
    // Every op of 14.3: listed ones are implemented, unlisted ones are not.
    for op in table {
        if op == "reset" {
            continue; // implemented by every case's preamble
        }
        let mut req = json!({"op": op});
        if op == "discover" {
            req["timeout_ms"] = json!(10);
        }
        let r = ctx.upper()?.raw(req)?;
        let code = r["error"]["code"].as_str().unwrap_or("");
        if ops.contains(op) {
            ctx.check(
                "CTRL-7",
                code != "UNKNOWN_OP" && code != "UNSUPPORTED",
                format!("{op}, listed in hello, implemented"),
                r.to_string(),
            );
        } else {
            ctx.check(
                "CTRL-7",
                code == "UNKNOWN_OP" || code == "UNSUPPORTED",
                format!("{op}, not listed in hello, answered UNKNOWN_OP or UNSUPPORTED"),
                r.to_string(),
            );
        }
    }
    // The identity is the one the DUT proves on the wire.
    let (_lt, c) = ctx.connected()?;
    let wire = c.dut_id().to_hex();
    ctx.check(
        "CTRL-7",
        h["device_id"] == wire.as_str(),
        format!("hello device_id the device ID of the DUT's static key ({wire})"),
        h["device_id"].to_string(),
    );
    let st = ctx.upper()?.state()?;
    ctx.check(
        "CTRL-7",
        st["device_id"] == h["device_id"],
        "state device_id equal to hello's",
        st["device_id"].to_string(),
    );
    ctx.pass();
    Ok(())
}

fn reset_clears(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    let pin = ctx.pixit.pin.clone();
    let caps = crate::cases::cap::capabilities(&mut c, t)?;
    let cap = caps
        .first()
        .map(|c| c.name.clone())
        .ok_or_else(|| StepError::Unexpected("preamble: no capability".into()))?;
    let Ok(_sid) = c.open_session("echo", ChannelKind::Message, Qos::Interactive)? else {
        return Err(StepError::Unexpected(
            "preamble: session to echo rejected".into(),
        ));
    };
    let (res, grant, _) = c.request_permission(&cap, Scope::UntilRevoked, 0, t)?;
    if res != PermResult::Granted {
        return Err(StepError::Unexpected(format!(
            "preamble: no grant under policy approve ({res:?})"
        )));
    }
    // A pending prompt, a malformed frame, and a lockout from three wrong PINs.
    ctx.prompt_policy("ask")?;
    c.send_reliable(MsgBody::PermRequest {
        req_id: 0x7e5e7,
        scope: Scope::Once,
        duration_s: 0,
        capability: cap.clone(),
    })?;
    lt.send_raw(&[0x01, 0x7f, 0, 0, 0, 0, 1, 2, 3])?;
    let mut lt2 = ctx.lower()?;
    let wrong: String = pin
        .bytes()
        .map(|b| (b'0' + (b - b'0' + 5) % 10) as char)
        .collect();
    for _ in 0..3 {
        lt2.pair(&wrong, true)?;
    }
    gather(&mut c, Duration::from_millis(100))?;
    let before = ctx.upper()?.state()?;
    ctx.note(format!("state before reset: {before}"));
    let id_before = before["device_id"].clone();
    ctx.upper()?.call(json!({"op": "reset"}))?;
    let after = ctx.upper()?.state()?;
    let empty = |k: &str| after[k].as_array().is_some_and(|a| a.is_empty());
    for (k, what) in [
        ("peers", "connections and handshakes"),
        ("grants", "grants"),
        ("pinned", "trust store"),
        ("prompts", "pending prompts"),
    ] {
        ctx.check(
            "CTRL-9",
            empty(k),
            format!("{what} discarded: state {k} empty after reset"),
            after[k].to_string(),
        );
    }
    ctx.check(
        "CTRL-9",
        after["pairing_locked"] == json!(false),
        "lockout cleared: pairing_locked false after reset",
        after["pairing_locked"].to_string(),
    );
    ctx.check(
        "CTRL-9",
        after["prompt_policy"] == "deny",
        "prompt policy deny after reset",
        after["prompt_policy"].to_string(),
    );
    let nonzero: Vec<(String, Value)> = after["counters"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.as_u64() != Some(0))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    ctx.check(
        "CTRL-9",
        after["counters"].is_object() && nonzero.is_empty(),
        "every counter 0 after reset",
        format!("{nonzero:?}"),
    );
    ctx.check(
        "ID-3",
        after["device_id"] == id_before,
        format!("the identity kept: device_id {id_before}"),
        after["device_id"].to_string(),
    );
    // On the wire: no CLOSE, no answer to the pending prompt, nothing on the old connection.
    let got = gather(&mut c, Duration::from_millis(300))?;
    let said: Vec<_> = got
        .iter()
        .filter(|m| matches!(m.body, MsgBody::Close { .. } | MsgBody::PermResponse { .. }))
        .collect();
    ctx.check(
        "CTRL-9",
        said.is_empty(),
        "no CLOSE and no PERM_RESPONSE for the discarded connection and prompt",
        format!("{said:?}"),
    );
    c.send_reliable(MsgBody::CapQuery { req_id: 0x7e5e8 })?;
    let answer = maybe(&mut c, T_RESP, |b| matches!(b, MsgBody::CapList { .. }))?;
    ctx.check(
        "CTRL-9",
        answer.is_none(),
        "no answer on the discarded connection",
        "a CAP_LIST",
    );
    // The trust store is empty: the tester is unknown.
    let hs = lt.handshake_with(None, false);
    ctx.check(
        "CTRL-9",
        matches!(hs, Ok(Err(Code::UnknownPeer))),
        "HANDSHAKE_REJECT UNKNOWN_PEER for the formerly pinned tester",
        match &hs {
            Ok(Ok(_)) => "handshake completed".into(),
            Ok(Err(code)) => format!("HANDSHAKE_REJECT {code}"),
            Err(e) => e.to_string(),
        },
    );
    // No PIN (and no lockout): pairing refused with PAIRING_FAILED, not RATE_LIMITED.
    let out = lt.pair(&pin, false)?;
    ctx.check(
        "CTRL-9",
        out.status == Code::PairingFailed,
        "PAIRING_FAILED without a PIN after reset",
        out.status.to_string(),
    );
    // set_pin applies to the next PAIR_REQUEST.
    ctx.upper()?.call(json!({"op": "set_pin", "pin": pin}))?;
    let out = lt.pair(&pin, false)?;
    ctx.check(
        "CTRL-11",
        out.status == Code::Ok,
        "pairing with the PIN set after reset",
        out.status.to_string(),
    );
    if out.status == Code::Ok {
        let mut c2 = lt.handshake()?;
        ctx.keep_keys(&c2);
        let (status, _) = c2.invoke(&cap, grant, b"x")?;
        ctx.check(
            "CTRL-9",
            status == Code::PermissionDenied,
            "PERMISSION_DENIED under a grant issued before reset",
            status.to_string(),
        );
        let (res, g, _) = c2.request_permission(&cap, Scope::Once, 0, t)?;
        ctx.check(
            "CTRL-9",
            res == PermResult::Denied && g == 0,
            "a PERM_REQUEST denied: policy deny after reset",
            format!("{res:?} grant_id {g}"),
        );
    }
    ctx.pass();
    Ok(())
}

fn state_members(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut lt, mut c) = ctx.connected()?;
    let peer = peer_id(&lt);
    let t = ctx.timeout();
    let st = ctx.upper()?.state()?;
    let arrays = ["peers", "grants", "pinned", "prompts"];
    let mut bad: Vec<&str> = arrays
        .iter()
        .copied()
        .filter(|k| !st[*k].is_array())
        .collect();
    if !is_device_id(&st["device_id"]) {
        bad.push("device_id");
    }
    if !st["name"].is_string() {
        bad.push("name");
    }
    if !st["pairing_locked"].is_boolean() {
        bad.push("pairing_locked");
    }
    if !matches!(
        st["prompt_policy"].as_str(),
        Some("approve" | "deny" | "timeout" | "ask")
    ) {
        bad.push("prompt_policy");
    }
    if !st["coap_malformed"].is_u64() {
        bad.push("coap_malformed");
    }
    let counters = [
        "malformed_frames",
        "oversized_frames",
        "auth_failed",
        "replayed",
        "unknown_connection",
        "malformed_messages",
        "handshakes_rejected",
        "pairing_failures",
        "rate_limited",
        "records_sent",
        "records_received",
    ];
    let missing: Vec<&str> = counters
        .iter()
        .copied()
        .filter(|k| !st["counters"][*k].is_u64())
        .collect();
    ctx.check(
        "CTRL-16",
        bad.is_empty() && missing.is_empty(),
        "every member and counter of 14.4",
        format!("bad or missing: {bad:?}, counters {missing:?}"),
    );
    ctx.check(
        "CTRL-16",
        st["prompt_policy"] == "approve",
        "prompt_policy approve (set by the preamble)",
        st["prompt_policy"].to_string(),
    );
    ctx.check(
        "CTRL-16",
        st["pinned"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p == peer.as_str())),
        format!("pinned listing the paired tester {peer}"),
        st["pinned"].to_string(),
    );
    // The connection, with its session.
    let Ok(sid) = c.open_session("echo", ChannelKind::Message, Qos::Interactive)? else {
        return Err(StepError::Unexpected(
            "preamble: session to echo rejected".into(),
        ));
    };
    let st = ctx.upper()?.state()?;
    let conn = connections(&st)
        .into_iter()
        .find(|p| p["peer"] == peer.as_str());
    let local = c.local_addr().map(|a| a.to_string()).unwrap_or_default();
    match conn {
        None => {
            ctx.check(
                "CTRL-16",
                false,
                format!("peers listing the connection with {peer}"),
                st["peers"].to_string(),
            );
        }
        Some(p) => {
            let ok = p["state"] == "established"
                && p["addr"]["link"] == "ip"
                && p["addr"]["addr"] == local.as_str()
                && p["tx_seq"].is_u64()
                && p["sessions"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == sid));
            ctx.check("CTRL-16", ok, format!("peers entry {{peer {peer}, addr ip {local}, state established, sessions with {sid}, tx_seq}}"), p.to_string());
        }
    }
    // A grant, then revoked.
    let cap = crate::cases::cap::capabilities(&mut c, t)?
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let (_, g, _) = c.request_permission(&cap, Scope::UntilRevoked, 0, t)?;
    let st = ctx.upper()?.state()?;
    let entry = grants_issued(&st).into_iter().find(|x| x["grant_id"] == g);
    ctx.check(
        "CTRL-16",
        entry.as_ref().is_some_and(|e| e["holder"] == peer.as_str() && e["capability"] == cap.as_str() && e["scope"] == "until-revoked" && e["revoked"] == json!(false)),
        format!("grants listing {{grant_id {g}, holder {peer}, capability {cap}, scope until-revoked, revoked false}}"),
        format!("{entry:?}"),
    );
    ctx.upper()?.call(json!({"op": "revoke", "grant_id": g}))?;
    let st = ctx.upper()?.state()?;
    let entry = grants_issued(&st).into_iter().find(|x| x["grant_id"] == g);
    ctx.check(
        "CTRL-16",
        entry.as_ref().is_some_and(|e| e["revoked"] == json!(true)),
        format!("grant {g} listed with revoked true after revoke"),
        format!("{entry:?}"),
    );
    // A pending prompt.
    ctx.prompt_policy("ask")?;
    c.send_reliable(MsgBody::PermRequest {
        req_id: 0x57a7e,
        scope: Scope::Once,
        duration_s: 0,
        capability: cap.clone(),
    })?;
    gather(&mut c, Duration::from_millis(50))?;
    let st = ctx.upper()?.state()?;
    ctx.check(
        "CTRL-16",
        st["prompt_policy"] == "ask",
        "prompt_policy ask after set_prompt_policy ask",
        st["prompt_policy"].to_string(),
    );
    ctx.check(
        "CTRL-16",
        st["prompts"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0].is_u64()),
        "one pending prompt_id in prompts",
        st["prompts"].to_string(),
    );
    // Counters reflect the frames processed.
    let before = st["counters"].clone();
    lt.send_raw(&[0x01, 0x7f, 0, 0, 0, 0, 9, 9, 9, 9])?; // unknown frame type
                                                         // Longer than the link MTU the DUT announced (HELLO max_frame), if a datagram can be.
    let mtu = usize::from(c.dut_hello.max_frame).max(256);
    let oversized = mtu < crate::tester::MAX_UDP_PAYLOAD;
    if oversized {
        lt.send_raw(&vec![0x20; mtu + 1])?;
    } else {
        ctx.note(format!(
            "no frame longer than the MTU {mtu} fits a UDP datagram: oversized_frames not probed"
        ));
    }
    let mut forged = c.seal(&softbus::wire::msg::Message {
        rseq: 0,
        body: MsgBody::Heartbeat,
    });
    if let Some(b) = forged.last_mut() {
        *b ^= 1;
    }
    c.send_raw(&forged)?; // fails authentication
    let hb = c.seal(&softbus::wire::msg::Message {
        rseq: 0,
        body: MsgBody::Heartbeat,
    });
    c.send_raw(&hb)?;
    std::thread::sleep(Duration::from_millis(20));
    c.send_raw(&hb)?; // a replay
    let mut unknown = hb.clone();
    unknown[2..6].copy_from_slice(&(c.remote_id ^ 0x5a5a_5a5a).to_be_bytes());
    c.send_raw(&unknown)?; // no such connection
    std::thread::sleep(Duration::from_millis(50));
    let after = ctx.upper()?.state()?["counters"].clone();
    let delta = |k: &str| {
        after[k]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(before[k].as_u64().unwrap_or(0))
    };
    for (k, want) in [
        ("malformed_frames", 1),
        ("oversized_frames", u64::from(oversized)),
        ("auth_failed", 1),
        ("replayed", 1),
        ("unknown_connection", 1),
    ] {
        ctx.check(
            "CTRL-16",
            delta(k) == want,
            format!("counters.{k} up by {want} after the frames sent"),
            format!("up by {}", delta(k)),
        );
    }
    ctx.check(
        "CTRL-16",
        delta("records_received") >= 1,
        "counters.records_received up after an authentic record",
        format!("up by {}", delta("records_received")),
    );
    ctx.pass();
    Ok(())
}

fn events_reported(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    ctx.fresh_dut()?;
    let t = ctx.timeout();
    let start = last_seq(ctx)?;
    let mut lt = ctx.lower()?;
    ctx.pair(&mut lt)?;
    let mut c = lt.handshake()?;
    ctx.keep_keys(&c);
    let peer = peer_id(&lt);
    let mut seen: Vec<Value> = ctx.upper()?.poll_events()?;
    // Reported when it happens: visible as soon as the DUT has answered.
    let Ok(sid) = c.open_session("echo", ChannelKind::Message, Qos::Interactive)? else {
        return Err(StepError::Unexpected(
            "preamble: session to echo rejected".into(),
        ));
    };
    let now = ctx.upper()?.poll_events()?;
    ctx.check(
        "CTRL-17",
        now.iter().any(|e| {
            ev_type(e) == "session_opened"
                && e["session_id"] == sid
                && e["inbound"] == json!(true)
                && e["service"] == "echo"
        }),
        format!("session_opened for session {sid} reported by the time its SESSION_ACCEPT arrived"),
        brief(&now),
    );
    seen.extend(now);
    c.send_data(sid, 1, b"event me", ChannelKind::Message)?;
    c.recv_data(sid, t)?;
    let now = ctx.upper()?.poll_events()?;
    ctx.check(
        "CTRL-17",
        now.iter().any(|e| {
            ev_type(e) == "message"
                && e["session_id"] == sid
                && e["data"] == hex::encode(b"event me")
        }),
        "a message event reported by the time the echo arrived",
        brief(&now),
    );
    seen.extend(now);
    // Prompt, use, give-back, error, session close, CLOSE.
    let cap = crate::cases::cap::capabilities(&mut c, t)?
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    ctx.prompt_policy("ask")?;
    c.send_reliable(MsgBody::PermRequest {
        req_id: 0xe7e7,
        scope: Scope::Once,
        duration_s: 0,
        capability: cap.clone(),
    })?;
    c.pump(Duration::from_millis(20))?;
    let prompt = ctx
        .upper()?
        .wait_event(Duration::from_secs(1), "permission_prompt", |e| {
            ev_type(e) == "permission_prompt"
        })?;
    seen.push(prompt.clone());
    ctx.upper()?
        .call(json!({"op": "answer_prompt", "prompt_id": prompt["prompt_id"], "approve": true}))?;
    let m = c.expect(t, "PERM_RESPONSE", |b| {
        matches!(b, MsgBody::PermResponse { req_id: 0xe7e7, .. })
    })?;
    if let MsgBody::PermResponse { grant_id, .. } = m.body {
        c.invoke(&cap, grant_id, b"use")?;
    }
    c.send_reliable(MsgBody::PermRevoke {
        grant_id: 0x0bad_cafe,
    })?;
    c.send(
        MsgBody::Error {
            code: Code::Internal,
            offending: 0x20,
        },
        false,
    )?;
    c.send_reliable(MsgBody::SessionClose {
        session_id: sid,
        code: Code::NormalClose,
    })?;
    gather(&mut c, Duration::from_millis(100))?;
    c.send(
        MsgBody::Close {
            code: Code::NormalClose,
            reason: String::new(),
        },
        false,
    )?;
    std::thread::sleep(Duration::from_millis(100));
    seen.extend(ctx.upper()?.poll_events()?);
    let types: BTreeSet<&str> = seen.iter().map(ev_type).collect();
    for want in [
        "paired",
        "connected",
        "session_opened",
        "message",
        "permission_prompt",
        "capability_used",
        "grant_revoked",
        "peer_error",
        "session_closed",
        "disconnected",
    ] {
        ctx.check(
            "CTRL-17",
            types.contains(want),
            format!("a {want} event for what the tester did"),
            format!("types seen: {types:?}"),
        );
    }
    let mine: Vec<&Value> = seen
        .iter()
        .filter(|e| e.get("peer").is_none_or(|p| p == peer.as_str()))
        .collect();
    ctx.note(format!(
        "{} events, {} naming the tester",
        seen.len(),
        mine.len()
    ));
    check_members(ctx, &seen);
    // Consecutive seq from the first event after `start`.
    let seqs: Vec<u64> = seen.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let consecutive =
        seqs.first() == Some(&(start + 1)) && seqs.windows(2).all(|w| w[1] == w[0] + 1);
    ctx.check(
        "CTRL-17",
        consecutive,
        format!("seq values {}, {}, ... consecutive", start + 1, start + 2),
        format!("{seqs:?}"),
    );
    // At least the 1024 most recent events kept: 1100 messages to sink.
    let (_lt3, mut c3) = {
        let mut lt3 = ctx.lower()?;
        ctx.pair(&mut lt3)?;
        let c3 = lt3.handshake()?;
        (lt3, c3)
    };
    ctx.keep_keys(&c3);
    let Ok(sink) = c3.open_session("sink", ChannelKind::Message, Qos::Interactive)? else {
        return Err(StepError::Unexpected(
            "preamble: session to sink rejected".into(),
        ));
    };
    let mark = last_seq(ctx)?;
    let n = 1100u32;
    for i in 1..=n {
        c3.send_data(
            sink,
            i,
            format!("kept {i}").as_bytes(),
            ChannelKind::Message,
        )?;
    }
    let until = Instant::now() + t;
    let mut newest = mark;
    while Instant::now() < until {
        c3.pump(Duration::from_millis(10))?;
        newest = last_seq(ctx)?;
        if newest >= mark + u64::from(n) {
            break;
        }
    }
    let r = ctx.upper()?.call(json!({"op": "events", "after": mark}))?;
    let evs = r["events"].as_array().cloned().unwrap_or_default();
    let seqs: Vec<u64> = evs.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let want = (newest - mark).min(1024) as usize;
    let ends_newest = seqs.last() == Some(&newest) && r["last"] == newest;
    let consecutive = seqs.windows(2).all(|w| w[1] == w[0] + 1);
    ctx.check(
        "CTRL-17",
        seqs.len() >= want && ends_newest && consecutive,
        format!(
            "at least the {want} most recent of {} events, consecutive, up to last {newest}",
            newest - mark
        ),
        format!(
            "{} events, seq {:?}..{:?}, last {}",
            seqs.len(),
            seqs.first(),
            seqs.last(),
            r["last"]
        ),
    );
    let messages = evs
        .iter()
        .filter(|e| ev_type(e) == "message" && e["session_id"] == sink)
        .count();
    ctx.note(format!("{messages} message events for {n} sink messages"));
    ctx.pass();
    Ok(())
}

fn exchanges_as_events(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let peer = peer_id(&lt);
    let t = ctx.timeout();
    let mut u = raw_client(ctx)?;
    let mut n = 0u64;
    // Send a request on the second control connection and read its answer: a DUT that waited
    // for the exchange would not answer, since the tester does not take part in it yet.
    let mut start_op =
        |ctx: &mut Ctx<'_>, u: &mut Upper, mut req: Value| -> Result<Option<Value>, StepError> {
            n += 1;
            req["id"] = json!(n);
            let op = req["op"].as_str().unwrap_or("").to_string();
            u.write_line(&req.to_string())?;
            let line = u.read_line(Duration::from_secs(1))?;
            let r: Value = line
                .as_deref()
                .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            let ok = r["ok"] == json!(true) && r["id"] == n;
            ctx.check(
                "CTRL-14",
                ok,
                format!(
                "{op} answered at once (within 1 s, before the tester takes part in the exchange)"
            ),
                line.unwrap_or_else(|| "no answer within 1 s".into()),
            );
            Ok(ok.then(|| r["result"].clone()))
        };
    let outcome =
        |ctx: &mut Ctx<'_>, what: &str, pred: &dyn Fn(&Value) -> bool| -> Result<(), StepError> {
            match ctx.upper()?.wait_event(Duration::from_secs(2), what, pred) {
                Ok(e) => {
                    check_members(ctx, std::slice::from_ref(&e));
                    Ok(())
                }
                Err(StepError::Timeout(..)) => {
                    ctx.check(
                        "CTRL-14",
                        false,
                        format!("a {what} event reporting how the exchange ended"),
                        "none within 2 s",
                    );
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
    ctx.upper()?.skip_events()?;
    // open_session, rejected then accepted.
    for accept in [false, true] {
        let Some(r) = start_op(
            ctx,
            &mut u,
            json!({"op": "open_session", "peer": peer, "service": "tester.svc", "kind": "message"}),
        )?
        else {
            continue;
        };
        let m = c.expect(t, "SESSION_OPEN", |b| {
            matches!(b, MsgBody::SessionOpen { .. })
        })?;
        let MsgBody::SessionOpen { session_id, .. } = m.body else {
            continue;
        };
        ctx.check(
            "CTRL-7",
            r["session_id"] == session_id,
            "open_session's session_id the wire session ID",
            format!("result {r}, wire {session_id}"),
        );
        if accept {
            c.send_reliable(MsgBody::SessionAccept {
                session_id,
                max_message: 65_536,
            })?;
            let p = peer.clone();
            outcome(ctx, "session_opened", &move |e| {
                ev_type(e) == "session_opened"
                    && e["session_id"] == session_id
                    && e["peer"] == p.as_str()
                    && e["inbound"] == json!(false)
            })?;
        } else {
            c.send_reliable(MsgBody::SessionReject {
                session_id,
                code: Code::UnknownService,
            })?;
            let p = peer.clone();
            outcome(ctx, "session_rejected", &move |e| {
                ev_type(e) == "session_rejected"
                    && e["session_id"] == session_id
                    && e["peer"] == p.as_str()
                    && e["code"] == "UNKNOWN_SERVICE"
            })?;
        }
    }
    // query_capabilities.
    if let Some(r) = start_op(
        ctx,
        &mut u,
        json!({"op": "query_capabilities", "peer": peer}),
    )? {
        let m = c.expect(t, "CAP_QUERY", |b| matches!(b, MsgBody::CapQuery { .. }))?;
        if let MsgBody::CapQuery { req_id } = m.body {
            let caps = vec![softbus::capability::Capability {
                name: "tester.light".into(),
                kind: "light".into(),
                metrics: softbus::capability::Metrics::default(),
            }];
            c.send_reliable(MsgBody::CapList {
                req_id,
                cbor: softbus::capability::encode_list(&caps),
            })?;
            let op_req = r["req_id"].clone();
            outcome(ctx, "capabilities", &move |e| {
                ev_type(e) == "capabilities"
                    && e["req_id"] == op_req
                    && e["capabilities"][0]["name"] == "tester.light"
            })?;
        }
    }
    // request_permission, denied.
    if let Some(r) = start_op(
        ctx,
        &mut u,
        json!({"op": "request_permission", "peer": peer, "capability": "tester.light", "scope": "once"}),
    )? {
        let m = c.expect(t, "PERM_REQUEST", |b| {
            matches!(b, MsgBody::PermRequest { .. })
        })?;
        if let MsgBody::PermRequest { req_id, .. } = m.body {
            c.send_reliable(MsgBody::PermResponse {
                req_id,
                result: PermResult::Denied,
                grant_id: 0,
                expires_in_ms: 0,
            })?;
            let op_req = r["req_id"].clone();
            outcome(ctx, "permission_result", &move |e| {
                ev_type(e) == "permission_result"
                    && e["req_id"] == op_req
                    && e["result"] == "denied"
            })?;
        }
    }
    // invoke, refused.
    if let Some(r) = start_op(
        ctx,
        &mut u,
        json!({"op": "invoke", "peer": peer, "capability": "tester.light", "grant_id": 77, "data_hex": "0102"}),
    )? {
        let m = c.expect(t, "CAP_INVOKE", |b| matches!(b, MsgBody::CapInvoke { .. }))?;
        if let MsgBody::CapInvoke {
            req_id,
            grant_id,
            args,
            ..
        } = m.body
        {
            ctx.check(
                "CTRL-7",
                grant_id == 77 && args == [1, 2],
                "CAP_INVOKE with the grant_id and args (data_hex) given to invoke",
                format!("grant_id {grant_id}, args {args:?}"),
            );
            c.send_reliable(MsgBody::CapResult {
                req_id,
                status: Code::PermissionDenied,
                result: Vec::new(),
            })?;
            let op_req = r["req_id"].clone();
            outcome(ctx, "capability_result", &move |e| {
                ev_type(e) == "capability_result"
                    && e["req_id"] == op_req
                    && e["status"] == "PERMISSION_DENIED"
            })?;
        }
    }
    gather(&mut c, Duration::from_millis(50))?;
    // pair and connect towards another tester address, which refuses.
    let mut other: LowerTester = ctx.lower()?;
    let addr = other.local_addr();
    let pin = ctx.pixit.pin.clone();
    if let Some(r) = start_op(
        ctx,
        &mut u,
        json!({"op": "pair", "addr": format!("udp:{addr}"), "pin": pin}),
    )? {
        let f = other.expect_frame(t, "PAIR_REQUEST", |f| {
            matches!(f.body, Body::PairRequest { .. })
        })?;
        if let Body::PairRequest { pairing_id, .. } = f.body {
            ctx.check(
                "CTRL-7",
                r["pairing_id"] == pairing_id,
                "pair's pairing_id the one of the PAIR_REQUEST",
                format!("result {r}, wire {pairing_id}"),
            );
            other.send_frame(&Frame {
                conn_id: 0,
                body: Body::PairResult {
                    pairing_id,
                    status: Code::RateLimited,
                    mac: [0; 32],
                },
            })?;
            outcome(ctx, "pairing_failed", &|e| {
                ev_type(e) == "pairing_failed" && e["code"] == "RATE_LIMITED"
            })?;
        }
    }
    if start_op(
        ctx,
        &mut u,
        json!({"op": "connect", "addr": format!("udp:{addr}")}),
    )?
    .is_some()
    {
        let f = other.expect_frame(t, "HANDSHAKE_1", |f| {
            matches!(f.body, Body::Handshake1 { .. })
        })?;
        if let Body::Handshake1 { sender_conn_id, .. } = f.body {
            other.send_frame(&Frame {
                conn_id: sender_conn_id,
                body: Body::HandshakeReject {
                    code: Code::UnknownPeer,
                },
            })?;
            outcome(ctx, "handshake_failed", &|e| {
                ev_type(e) == "handshake_failed" && e["code"] == "UNKNOWN_PEER"
            })?;
        }
    }
    keep_transcript(ctx, &u);
    ctx.pass();
    Ok(())
}

/// How long the line of SB-CTRL-009 is: twice the longest line [CTRL-5] asks any DUT to accept
/// (a 16 MiB bytes message is a 32 MiB `data_hex`), so it is past the bound of every DUT that
/// bounds its lines near what the spec needs. A DUT that accepts even longer lines still answers
/// it `BAD_REQUEST` once its line feed comes (it is not JSON), so the verdict does not depend on
/// where the DUT's bound lies.
const LONG_LINE: usize = 64 << 20;
