//! Section 10.3, protocol converters: legacy ZCL devices bridged as capabilities.
//!
//! > [CAP-7] A device that bridges ZCL devices MUST list each one it offers in CAP_LIST as a
//! > capability of the kind the table of 10.3 gives for its type, named as 10.3 says.
//! >
//! > [CAP-8] A device MUST NOT act on a legacy device for a CAP_INVOKE that a check of 11.4
//! > refuses.
//! >
//! > [CAP-9] A device MUST answer a CAP_INVOKE of a bridged capability that passes the checks of
//! > 11.4, and whose args are an operation of the table of 10.3, with status OK (0) and the
//! > result the table gives once the legacy device has carried the operation out, and with
//! > status INTERNAL (18) and a non-empty result when it has not.
//! >
//! > [CAP-10] A device MUST answer a CAP_INVOKE of a bridged capability that passes the checks
//! > of 11.4 but whose args are not an operation the table of 10.3 gives for it with status
//! > MALFORMED (2), without acting on the legacy device.
//!
//! (and CAP-2, CAP-5, PERM-10, PERM-15, PERM-19: see each case's requirement list. [CAP-11] is
//! a SHOULD: an answer slower than 5 s is reported in a log line, not judged.)
//!
//! The suite sees the legacy devices only through the DUT: "did not act" is judged by reading
//! the device's state back through the bridge with a valid grant. The light's state at the
//! start of a case is whatever earlier cases left, so every case reads it first. A device the
//! rig keeps unreachable (PIXIT `bridge_unreachable`) is the only way to see the INTERNAL
//! branch of [CAP-9] from the wire; without one that case is INCONC.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use softbus::wire::msg::{PermResult, Scope};
use softbus::wire::Code;

use crate::case::{Case, Ctx};
use crate::cases::cap::CapEntry;
use crate::cases::steps::T_RESP;
use crate::tester::lower::{SecureConn, StepError};

/// Base name of a bridged on/off light (spec 10.3).
const LIGHT: &str = "light.onoff";
/// Base name of a bridged temperature sensor (spec 10.3).
const SENSOR: &str = "sensor.temperature";
/// [CAP-11]: a bridged use should be answered within this.
const BRIDGE_ANSWER: Duration = Duration::from_secs(5);
/// Transit allowance on upper bounds measured at the tester.
const TRANSIT: Duration = Duration::from_millis(10);

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-BRIDGE-001",
            title: "lists its bridged devices in CAP_LIST as light.onoff (kind light) and sensor.temperature (kind sensor)",
            requirements: &["CAP-7", "CAP-2"],
            pics: "BRIDGE_ZCL",
            pixit: &["capabilities", "bridge_unreachable"],
            transport: "udp",
            run: bridged_capabilities_listed,
        },
        Case {
            id: "SB-BRIDGE-002",
            title: "refuses a bridged capability without a valid grant within 500 ms and leaves the device untouched",
            requirements: &["CAP-8", "PERM-19", "CAP-5"],
            pics: "BRIDGE_ZCL && PERM",
            pixit: &[],
            transport: "udp",
            run: ungranted_use_refused,
        },
        Case {
            id: "SB-BRIDGE-003",
            title: "switches a bridged light on and off under a grant, and reads back on and off",
            requirements: &["CAP-9"],
            pics: "BRIDGE_ZCL && PERM",
            pixit: &["bridge_unreachable"],
            transport: "udp",
            run: light_on_off_read,
        },
        Case {
            id: "SB-BRIDGE-004",
            title: "toggles a bridged light and answers with the state it switched to",
            requirements: &["CAP-9"],
            pics: "BRIDGE_ZCL && PERM",
            pixit: &["bridge_unreachable"],
            transport: "udp",
            run: light_toggles,
        },
        Case {
            id: "SB-BRIDGE-005",
            title: "reads a bridged temperature sensor as degrees Celsius with two decimals",
            requirements: &["CAP-9"],
            pics: "BRIDGE_ZCL && PERM",
            pixit: &["bridge_unreachable"],
            transport: "udp",
            run: sensor_reads,
        },
        Case {
            id: "SB-BRIDGE-006",
            title: "answers MALFORMED to args that are not an operation of the bridged capability, without acting",
            requirements: &["CAP-10"],
            pics: "BRIDGE_ZCL && PERM",
            pixit: &["bridge_unreachable"],
            transport: "udp",
            run: bad_args_malformed,
        },
        Case {
            id: "SB-BRIDGE-007",
            title: "refuses a bridged capability with GRANT_REVOKED once its grant is revoked, without acting",
            requirements: &["PERM-15", "CAP-8"],
            pics: "BRIDGE_ZCL && PERM && PERM_SCOPE_UNTIL_REVOKED",
            pixit: &["bridge_unreachable"],
            transport: "udp",
            run: revocation_stops_use,
        },
        Case {
            id: "SB-BRIDGE-008",
            title: "uses up a scope-once grant of a bridged capability with its first use",
            requirements: &["PERM-10", "CAP-8"],
            pics: "BRIDGE_ZCL && PERM && PERM_SCOPE_ONCE",
            pixit: &["bridge_unreachable"],
            transport: "udp",
            run: once_grant_used_up,
        },
        Case {
            id: "SB-BRIDGE-009",
            title: "answers INTERNAL with a diagnostic when the bridged device does not answer",
            requirements: &["CAP-9", "CAP-11"],
            pics: "BRIDGE_ZCL && PERM",
            pixit: &["bridge_unreachable"],
            transport: "udp",
            run: unreachable_device_internal,
        },
    ]
}

// ---------------------------------------------------------------------------------- helpers

/// Whether `name` is a bridged capability of the type whose base name is `base`: the base
/// name itself, or the base name, `.` and a label.
fn is_bridged(name: &str, base: &str) -> bool {
    name == base
        || name
            .strip_prefix(base)
            .and_then(|r| r.strip_prefix('.'))
            .is_some_and(|label| !label.is_empty())
}

/// The bridged capability of type `base` the cases drive: the first listed that the PIXIT
/// does not declare unreachable.
fn reachable(ctx: &Ctx<'_>, caps: &[CapEntry], base: &str) -> Result<String, StepError> {
    caps.iter()
        .map(|c| c.name.as_str())
        .find(|n| is_bridged(n, base) && !ctx.pixit.bridge_unreachable.iter().any(|u| u == n))
        .map(str::to_owned)
        .ok_or_else(|| {
            StepError::Unexpected(format!(
                "preamble: the DUT bridges no reachable {base} (its CAP_LIST: {:?}); connect one to \
                 the rig",
                caps.iter().map(|c| &c.name).collect::<Vec<_>>()
            ))
        })
}

/// Grants the tester holds, by capability, in the longest-lived scope the DUT supports. Under
/// scope once each use gets a fresh grant.
struct Grants {
    scope: Scope,
    held: BTreeMap<String, u32>,
}

impl Grants {
    fn new(ctx: &Ctx<'_>) -> Grants {
        let scope = if ctx.pics.get("PERM_SCOPE_UNTIL_REVOKED") {
            Scope::UntilRevoked
        } else if ctx.pics.get("PERM_SCOPE_SESSION") {
            Scope::Session
        } else {
            Scope::Once
        };
        Grants {
            scope,
            held: BTreeMap::new(),
        }
    }

    /// A grant for `cap` (policy approve is set by the preamble).
    fn grant(&mut self, c: &mut SecureConn, cap: &str, t: Duration) -> Result<u32, StepError> {
        if let Some(g) = self.held.get(cap) {
            if self.scope != Scope::Once {
                return Ok(*g);
            }
        }
        let (result, g, _) = c.request_permission(cap, self.scope, 0, t)?;
        if result != PermResult::Granted || g == 0 {
            return Err(StepError::Unexpected(format!(
                "preamble: policy approve did not grant {cap} ({result:?}, grant_id {g})"
            )));
        }
        self.held.insert(cap.to_owned(), g);
        Ok(g)
    }
}

/// A use under a valid grant: `(status, result text, how long it took)`. A use slower than
/// [`BRIDGE_ANSWER`] is noted against [CAP-11].
fn use_granted(
    ctx: &mut Ctx<'_>,
    c: &mut SecureConn,
    grants: &mut Grants,
    cap: &str,
    args: &str,
) -> Result<(Code, String, Duration), StepError> {
    let t = ctx.timeout();
    let g = grants.grant(c, cap, t)?;
    let started = Instant::now();
    let (status, result) = c.invoke(cap, g, args.as_bytes())?;
    let took = started.elapsed();
    if took > BRIDGE_ANSWER {
        ctx.note(format!(
            "SHOULD [CAP-11] not met: {cap} {args:?} answered after {took:?}"
        ));
    }
    let text = String::from_utf8_lossy(&result).into_owned();
    ctx.note(format!("{cap} {args:?} -> {status} {text:?} in {took:?}"));
    Ok((status, text, took))
}

/// Uses `cap` with `args` and FAILs `requirement` unless the answer is OK with `expected`.
fn expect_ok(
    ctx: &mut Ctx<'_>,
    c: &mut SecureConn,
    grants: &mut Grants,
    requirement: &str,
    cap: &str,
    args: &str,
    expected: &str,
) -> Result<bool, StepError> {
    let r = use_granted(ctx, c, grants, cap, args);
    let Some((status, text, _)) = ctx.must(requirement, "a CAP_RESULT", r) else {
        return Ok(false);
    };
    Ok(ctx.check(
        requirement,
        status == Code::Ok && text == expected,
        format!("{cap} {args:?}: OK with result {expected:?}"),
        format!("{status} with result {text:?}"),
    ))
}

/// The light's state read through the bridge (`on` or `off`); a preamble step.
fn light_state(
    ctx: &mut Ctx<'_>,
    c: &mut SecureConn,
    grants: &mut Grants,
    light: &str,
) -> Result<String, StepError> {
    let (status, text, _) = use_granted(ctx, c, grants, light, "read")?;
    if status != Code::Ok || (text != "on" && text != "off") {
        return Err(StepError::Unexpected(format!(
            "preamble: reading {light} gave {status} {text:?}, not OK \"on\" or \"off\""
        )));
    }
    Ok(text)
}

fn opposite(state: &str) -> &'static str {
    if state == "on" {
        "off"
    } else {
        "on"
    }
}

/// Connected, with the DUT's capabilities. A CAP_LIST without a bridged device of each type
/// that is full at the connection's frame size makes the case NA: [CAP-12] lets a device with a
/// small link MTU offer only the capabilities that fit, and the bridged ones come after its own.
fn setup(ctx: &mut Ctx<'_>) -> Result<(SecureConn, Vec<CapEntry>), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    let (cbor, _) = crate::cases::cap::query(&mut c, 0x0b1d, t)?;
    let caps = crate::cases::cap::validate_list(&cbor).map_err(|e| {
        StepError::Unexpected(format!("preamble: the DUT's CAP_LIST is invalid: {e}"))
    })?;
    let absent: Vec<&str> = [(LIGHT, "light"), (SENSOR, "sensor")]
        .into_iter()
        .filter(|(base, _)| !caps.iter().any(|e| is_bridged(&e.name, base)))
        .map(|(_, kind)| kind)
        .collect();
    let cut = crate::cases::cap::full_for(&c, &cbor, &absent);
    if !cut.is_empty() {
        return Err(StepError::NotApplicable(format!(
            "the DUT's CAP_LIST ({:?}) is full at the frame size {} and lists no bridged {} \
             device: [CAP-12] lets it offer only what fits; certify bridging at a link MTU that \
             holds its bridged devices ([CAP-3])",
            caps.iter().map(|e| &e.name).collect::<Vec<_>>(),
            c.max_frame(),
            cut.join(" or ")
        )));
    }
    Ok((c, caps))
}

/// The PIXIT's unreachable bridged devices (`bridge_unreachable`) that `caps` does not list.
fn unlisted_unreachable(ctx: &Ctx<'_>, caps: &[CapEntry]) -> Vec<String> {
    ctx.pixit
        .bridge_unreachable
        .iter()
        .filter(|u| !caps.iter().any(|c| &&c.name == u))
        .cloned()
        .collect()
}

/// Of the PIXIT-named bridged devices `missing` from the DUT's CAP_LIST, those it should have
/// listed: a device of a kind for which the list is full at the frame size is legally not
/// offered on this connection ([CAP-12]) and only noted. When every named device is cut so and
/// `na_if_all_cut`, the case is NA (it is about those devices).
fn not_cut(
    ctx: &mut Ctx<'_>,
    c: &mut SecureConn,
    missing: Vec<String>,
    na_if_all_cut: bool,
) -> Result<Vec<String>, StepError> {
    if missing.is_empty() {
        return Ok(missing);
    }
    let t = ctx.timeout();
    let (cbor, _) = crate::cases::cap::query(c, 0x0b1e, t)?;
    let kind = |n: &str| {
        if is_bridged(n, SENSOR) {
            "sensor"
        } else {
            "light"
        }
    };
    let (cut, kept): (Vec<String>, Vec<String>) = missing
        .into_iter()
        .partition(|n| !crate::cases::cap::full_for(c, &cbor, &[kind(n)]).is_empty());
    if !cut.is_empty() {
        let why = format!(
            "{cut:?} not listed: the CAP_LIST is full at the frame size {} ([CAP-12])",
            c.max_frame()
        );
        if na_if_all_cut && kept.is_empty() && cut.len() == ctx.pixit.bridge_unreachable.len() {
            return Err(StepError::NotApplicable(why));
        }
        ctx.note(why);
    }
    Ok(kept)
}

// ------------------------------------------------------------------------------------ cases

fn bridged_capabilities_listed(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut c, caps) = setup(ctx)?;
    let mut bridged = 0;
    for (base, kind) in [(LIGHT, "light"), (SENSOR, "sensor")] {
        let of_type: Vec<&CapEntry> = caps.iter().filter(|c| is_bridged(&c.name, base)).collect();
        bridged += of_type.len();
        for cap in &of_type {
            ctx.check(
                "CAP-7",
                cap.kind == kind,
                format!("{} of kind {kind:?}", cap.name),
                format!("kind {:?}", cap.kind),
            );
            ctx.check(
                "CAP-2",
                ctx.pixit.capabilities.iter().any(|k| k == kind),
                format!("the PIXIT capabilities to declare kind {kind:?}, which the DUT lists"),
                format!("{:?}", ctx.pixit.capabilities),
            );
        }
        if !of_type.is_empty() {
            ctx.check(
                "CAP-7",
                of_type.iter().any(|c| c.name == base),
                format!("the first bridged device of its type named {base:?}"),
                format!("{:?}", of_type.iter().map(|c| &c.name).collect::<Vec<_>>()),
            );
        }
    }
    ctx.check(
        "CAP-7",
        bridged > 0,
        "at least one bridged ZCL device in CAP_LIST (PICS BRIDGE_ZCL)",
        format!("{:?}", caps.iter().map(|c| &c.name).collect::<Vec<_>>()),
    );
    let missing = unlisted_unreachable(ctx, &caps);
    let missing = not_cut(ctx, &mut c, missing, false)?;
    ctx.check(
        "CAP-7",
        missing.is_empty(),
        "every bridged device of PIXIT bridge_unreachable listed",
        format!("not listed: {missing:?}"),
    );
    ctx.note(format!(
        "bridged: {:?}",
        caps.iter()
            .filter(|c| is_bridged(&c.name, LIGHT) || is_bridged(&c.name, SENSOR))
            .map(|c| format!("{} ({})", c.name, c.kind))
            .collect::<Vec<_>>()
    ));
    ctx.pass();
    Ok(())
}

fn ungranted_use_refused(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut c, caps) = setup(ctx)?;
    let light = reachable(ctx, &caps, LIGHT)?;
    let t = ctx.timeout();
    let mut grants = Grants::new(ctx);
    let before = light_state(ctx, &mut c, &mut grants, &light)?;
    // A grant the tester holds, but for another capability (check 4 of 11.4).
    let other = caps
        .iter()
        .map(|c| c.name.clone())
        .find(|n| *n != light)
        .ok_or_else(|| {
            StepError::Unexpected("preamble: the DUT lists one capability only".into())
        })?;
    let (result, other_grant, _) = c.request_permission(&other, grants.scope, 0, t)?;
    let mut attempts = vec![
        (0u32, "grant_id 0".to_string()),
        (0x5eed_0b1d, "a grant_id never issued".to_string()),
    ];
    if result == PermResult::Granted && other_grant != 0 {
        attempts.push((other_grant, format!("a grant for {other}")));
    }
    for (grant_id, what) in attempts {
        let started = Instant::now();
        let r = c.invoke(&light, grant_id, b"toggle");
        let took = started.elapsed();
        let Some((status, result)) = ctx.must("CAP-5", "a CAP_RESULT for the CAP_INVOKE", r) else {
            continue;
        };
        ctx.check(
            "PERM-19",
            status == Code::PermissionDenied && result.is_empty(),
            format!("PERMISSION_DENIED(9) with an empty result for {light} \"toggle\" with {what}"),
            format!("{status} with {} result bytes", result.len()),
        );
        ctx.check(
            "CAP-5",
            took <= T_RESP + TRANSIT,
            "a refusal within 500 ms",
            format!("after {took:?}"),
        );
    }
    let after = light_state(ctx, &mut c, &mut grants, &light)?;
    ctx.check(
        "CAP-8",
        after == before,
        format!("{light} still {before:?} after refused toggles"),
        format!("{after:?}"),
    );
    ctx.pass();
    Ok(())
}

fn light_on_off_read(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut c, caps) = setup(ctx)?;
    let light = reachable(ctx, &caps, LIGHT)?;
    let mut g = Grants::new(ctx);
    for state in ["on", "off", "on", "off"] {
        expect_ok(ctx, &mut c, &mut g, "CAP-9", &light, state, state)?;
        expect_ok(ctx, &mut c, &mut g, "CAP-9", &light, "read", state)?;
    }
    ctx.pass();
    Ok(())
}

fn light_toggles(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut c, caps) = setup(ctx)?;
    let light = reachable(ctx, &caps, LIGHT)?;
    let mut g = Grants::new(ctx);
    let mut state = light_state(ctx, &mut c, &mut g, &light)?;
    for _ in 0..2 {
        let next = opposite(&state);
        expect_ok(ctx, &mut c, &mut g, "CAP-9", &light, "toggle", next)?;
        expect_ok(ctx, &mut c, &mut g, "CAP-9", &light, "read", next)?;
        state = next.to_string();
    }
    ctx.pass();
    Ok(())
}

/// Whether `text` is a temperature as 10.3 writes it: an optional `-`, digits, `.`, two digits.
fn temperature(text: &str) -> Option<f64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = digits.split_once('.')?;
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() == 2
        && frac.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| text.parse().ok()).flatten()
}

fn sensor_reads(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut c, caps) = setup(ctx)?;
    let sensor = reachable(ctx, &caps, SENSOR)?;
    let mut g = Grants::new(ctx);
    for _ in 0..2 {
        let r = use_granted(ctx, &mut c, &mut g, &sensor, "read");
        let Some((status, text, _)) = ctx.must("CAP-9", "a CAP_RESULT", r) else {
            break;
        };
        let value = temperature(&text);
        ctx.check(
            "CAP-9",
            status == Code::Ok && value.is_some(),
            format!("{sensor} \"read\": OK with °C written with two decimals, such as \"21.50\""),
            format!("{status} with result {text:?}"),
        );
        // ZCL MeasuredValue spans -273.15..327.67 °C; a sensor a rig can hold is far inside.
        if let Some(v) = value {
            ctx.check(
                "CAP-9",
                (-273.15..=327.67).contains(&v),
                "a temperature a ZCL sensor can measure (-273.15 to 327.67 °C)",
                format!("{v} °C"),
            );
            if !(-40.0..=85.0).contains(&v) {
                ctx.note(format!("unusual reading for a lab: {v} °C"));
            }
        }
    }
    ctx.pass();
    Ok(())
}

fn bad_args_malformed(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut c, caps) = setup(ctx)?;
    let light = reachable(ctx, &caps, LIGHT)?;
    let mut g = Grants::new(ctx);
    let before = light_state(ctx, &mut c, &mut g, &light)?;
    for args in ["ON", "toggle ", "", "conformance", "\u{0}on"] {
        let r = use_granted(ctx, &mut c, &mut g, &light, args);
        let Some((status, _, _)) = ctx.must("CAP-10", "a CAP_RESULT", r) else {
            continue;
        };
        ctx.check(
            "CAP-10",
            status == Code::Malformed,
            format!("MALFORMED(2) for {light} {args:?}"),
            status.to_string(),
        );
    }
    let after = light_state(ctx, &mut c, &mut g, &light)?;
    ctx.check(
        "CAP-10",
        after == before,
        format!("{light} still {before:?} after malformed uses"),
        format!("{after:?}"),
    );
    if let Ok(sensor) = reachable(ctx, &caps, SENSOR) {
        let r = use_granted(ctx, &mut c, &mut g, &sensor, "on");
        if let Some((status, _, _)) = ctx.must("CAP-10", "a CAP_RESULT", r) {
            ctx.check(
                "CAP-10",
                status == Code::Malformed,
                format!("MALFORMED(2) for {sensor} \"on\" (a sensor only reads)"),
                status.to_string(),
            );
        }
    }
    ctx.pass();
    Ok(())
}

fn revocation_stops_use(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut c, caps) = setup(ctx)?;
    let light = reachable(ctx, &caps, LIGHT)?;
    let t = ctx.timeout();
    let mut g = Grants::new(ctx);
    let state = light_state(ctx, &mut c, &mut g, &light)?;
    let (result, grant, _) = c.request_permission(&light, Scope::UntilRevoked, 0, t)?;
    if result != PermResult::Granted || grant == 0 {
        return Err(StepError::Unexpected(format!(
            "preamble: policy approve did not grant {light} ({result:?})"
        )));
    }
    let (status, text) = c.invoke(&light, grant, state.as_bytes())?;
    if status != Code::Ok {
        return Err(StepError::Unexpected(format!(
            "preamble: the fresh grant was refused: {status} {:?}",
            String::from_utf8_lossy(&text)
        )));
    }
    let r = ctx
        .upper()?
        .call(json!({"op": "revoke", "grant_id": grant}));
    if ctx.must("PERM-15", "the revoke op answered", r).is_none() {
        ctx.pass();
        return Ok(());
    }
    let r = c.invoke(&light, grant, opposite(&state).as_bytes());
    if let Some((status, result)) = ctx.must("PERM-15", "a CAP_RESULT", r) {
        ctx.check(
            "PERM-15",
            status == Code::GrantRevoked && result.is_empty(),
            format!("GRANT_REVOKED(12) for {light} after the revoke response"),
            format!("{status} with {} result bytes", result.len()),
        );
    }
    let after = light_state(ctx, &mut c, &mut g, &light)?;
    ctx.check(
        "CAP-8",
        after == state,
        format!("{light} still {state:?}: a revoked grant switches nothing"),
        format!("{after:?}"),
    );
    ctx.pass();
    Ok(())
}

fn once_grant_used_up(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (mut c, caps) = setup(ctx)?;
    let light = reachable(ctx, &caps, LIGHT)?;
    let t = ctx.timeout();
    let mut g = Grants::new(ctx);
    let state = light_state(ctx, &mut c, &mut g, &light)?;
    let (result, once, _) = c.request_permission(&light, Scope::Once, 0, t)?;
    if result != PermResult::Granted || once == 0 {
        return Err(StepError::Unexpected(format!(
            "preamble: policy approve did not grant {light} once ({result:?})"
        )));
    }
    let r = c.invoke(&light, once, b"read");
    if let Some((status, text)) = ctx.must("PERM-10", "a CAP_RESULT", r) {
        ctx.check(
            "PERM-10",
            status == Code::Ok,
            format!("the first use of a scope-once grant for {light} carried out"),
            format!("{status} {:?}", String::from_utf8_lossy(&text)),
        );
    }
    let r = c.invoke(&light, once, opposite(&state).as_bytes());
    if let Some((status, _)) = ctx.must("PERM-10", "a CAP_RESULT", r) {
        ctx.check(
            "PERM-10",
            status == Code::PermissionDenied,
            "PERMISSION_DENIED(9) for a second use of the scope-once grant",
            status.to_string(),
        );
    }
    let after = light_state(ctx, &mut c, &mut g, &light)?;
    ctx.check(
        "CAP-8",
        after == state,
        format!("{light} still {state:?}: a used-up grant switches nothing"),
        format!("{after:?}"),
    );
    ctx.pass();
    Ok(())
}

fn unreachable_device_internal(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    if ctx.pixit.bridge_unreachable.is_empty() {
        return Err(StepError::Unexpected(
            "preamble: the PIXIT names no unreachable bridged device (bridge_unreachable); \
             configure one on the DUT (a light powered off, or an address nobody has) and name it"
                .into(),
        ));
    }
    let (mut c, caps) = setup(ctx)?;
    let mut g = Grants::new(ctx);
    let missing = unlisted_unreachable(ctx, &caps);
    let missing = not_cut(ctx, &mut c, missing, true)?;
    for cap in ctx.pixit.bridge_unreachable.clone() {
        if missing.contains(&cap) {
            ctx.check(
                "CAP-9",
                false,
                format!("the unreachable bridged device {cap} listed"),
                "not in CAP_LIST",
            );
            continue;
        }
        if !caps.iter().any(|c| c.name == cap) {
            continue; // cut by [CAP-12], noted
        }
        let args = if is_bridged(&cap, LIGHT) {
            "on"
        } else {
            "read"
        };
        let r = use_granted(ctx, &mut c, &mut g, &cap, args);
        let Some((status, text, took)) = ctx.must("CAP-9", "a CAP_RESULT", r) else {
            continue;
        };
        ctx.check(
            "CAP-9",
            status == Code::Internal && !text.is_empty(),
            format!(
                "INTERNAL(18) with a diagnostic for {cap} {args:?}, whose device does not answer"
            ),
            format!("{status} with result {text:?}"),
        );
        if took <= BRIDGE_ANSWER {
            ctx.note(format!("{cap}: failure reported after {took:?}"));
        }
    }
    ctx.pass();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridged_names_and_temperatures_are_recognised() {
        assert!(is_bridged("light.onoff", LIGHT));
        assert!(is_bridged("light.onoff.porch", LIGHT));
        assert!(!is_bridged("light.onoffx", LIGHT));
        assert!(!is_bridged("light.onoff.", LIGHT));
        assert_eq!(temperature("21.50"), Some(21.5));
        assert_eq!(temperature("-3.05"), Some(-3.05));
        for bad in ["21.5", "21", ".50", "21.500", "+1.00", "2a.00", "", "-"] {
            assert_eq!(temperature(bad), None, "{bad}");
        }
    }
}
