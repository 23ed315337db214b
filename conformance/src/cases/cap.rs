//! Section 10, capabilities and live metrics.
//!
//! > [CAP-1] A device MUST answer each CAP_QUERY with exactly one CAP_LIST carrying the same
//! > req_id within 500 ms (T_RESP) of its delivery.
//! >
//! > [CAP-2] A device MUST send a CAP_LIST whose array is valid against `capability-list` and
//! > lists every capability it offers once, under distinct names.
//! >
//! > [CAP-6] A device MUST answer a CAP_INVOKE naming a capability it does not offer with status
//! > UNKNOWN_CAPABILITY (11).
//!
//! (and CAP-5, PERM-19: see each case's requirement list; [CAP-3] is a SHOULD NOT, reported in a
//! log line when not met.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use softbus::wire::frame::RECORD_OVERHEAD;
use softbus::wire::msg::{Message, MsgBody, Scope};
use softbus::wire::Code;

use crate::case::{Case, Ctx};
use crate::cases::steps::{gather, largest_frame, T_RESP};
use crate::tester::lower::{SecureConn, StepError};

/// Capability kinds defined by the spec (3.2).
pub(crate) const SPEC_KINDS: &[&str] = &[
    "camera",
    "microphone",
    "speaker",
    "display",
    "compute",
    "sensor",
    "actuator",
    "light",
];

/// The cases of this section.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "SB-CAP-001",
            title: "answers every CAP_QUERY within 500 ms with one valid CAP_LIST of distinct names and the PIXIT kinds",
            requirements: &["CAP-1", "CAP-2", "CAP-12"],
            pics: "true",
            pixit: &["capabilities"],
            transport: "udp",
            run: cap_list_valid,
        },
        Case {
            id: "SB-CAP-002",
            title: "refuses CAP_INVOKE of a capability it does not offer with UNKNOWN_CAPABILITY within 500 ms",
            requirements: &["CAP-5", "CAP-6", "PERM-19"],
            pics: "PERM",
            pixit: &[],
            transport: "udp",
            run: unknown_capability_refused,
        },
    ]
}

/// One capability of a CAP_LIST, read by hand from the CBOR (not through the reference's
/// decoder, so that schema problems are seen).
#[derive(Debug, Clone)]
pub(crate) struct CapEntry {
    pub name: String,
    pub kind: String,
}

/// Query the DUT's capabilities; returns the list and how long the answer took.
pub(crate) fn query(
    c: &mut SecureConn,
    req_id: u32,
    t: Duration,
) -> Result<(Vec<u8>, Duration), StepError> {
    let started = Instant::now();
    c.send_reliable(MsgBody::CapQuery { req_id })?;
    let m = c.expect(
        t,
        &format!("CAP_LIST with req_id {req_id}"),
        |b| matches!(b, MsgBody::CapList { req_id: r, .. } if *r == req_id),
    )?;
    let MsgBody::CapList { cbor, .. } = m.body else {
        return Err(StepError::Unexpected("not a CAP_LIST".into()));
    };
    Ok((cbor, started.elapsed()))
}

/// Validate a CAP_LIST array against `capability-list` (10.1); the entries or the first problem.
pub(crate) fn validate_list(cbor: &[u8]) -> Result<Vec<CapEntry>, String> {
    let caps = softbus::capability::decode_list(cbor).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for c in caps {
        if c.name.is_empty() || c.name.len() > 64 {
            return Err(format!("name {:?} is not 1..64 bytes", c.name));
        }
        if !SPEC_KINDS.contains(&c.kind.as_str()) {
            return Err(format!(
                "capability {:?} has kind {:?}, not a capability-kind",
                c.name, c.kind
            ));
        }
        if c.metrics.load > 100 || c.metrics.battery.is_some_and(|b| b > 100) {
            return Err(format!(
                "capability {:?} has metrics out of range: {:?}",
                c.name, c.metrics
            ));
        }
        out.push(CapEntry {
            name: c.name,
            kind: c.kind,
        });
    }
    Ok(out)
}

/// The DUT's capabilities by name (the first, second, ... are used by permission cases).
pub(crate) fn capabilities(c: &mut SecureConn, t: Duration) -> Result<Vec<CapEntry>, StepError> {
    let (cbor, _) = query(c, 0x0ca9, t)?;
    validate_list(&cbor)
        .map_err(|e| StepError::Unexpected(format!("preamble: the DUT's CAP_LIST is invalid: {e}")))
}

fn cap_list_valid(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    // Three queries at once, each answered on its own.
    let ids = [0x11u32, 0x12, 0x13];
    let started = Instant::now();
    for id in ids {
        c.send_reliable(MsgBody::CapQuery { req_id: id })?;
    }
    let mut lists: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for id in ids {
        let m = c.expect(
            t,
            &format!("CAP_LIST with req_id {id}"),
            |b| matches!(b, MsgBody::CapList { req_id, .. } if *req_id == id),
        );
        let took = started.elapsed();
        let Some(m) = ctx.must("CAP-1", &format!("a CAP_LIST with req_id {id}"), m) else {
            continue;
        };
        ctx.check(
            "CAP-1",
            took <= T_RESP,
            format!("CAP_LIST {id} within 500 ms"),
            format!("after {took:?}"),
        );
        if let MsgBody::CapList { cbor, .. } = m.body {
            lists.insert(id, cbor);
        }
    }
    let extra: Vec<_> = gather(&mut c, Duration::from_millis(200))?
        .into_iter()
        .filter(|m| matches!(m.body, MsgBody::CapList { .. }))
        .collect();
    ctx.check(
        "CAP-1",
        extra.is_empty(),
        "exactly one CAP_LIST per CAP_QUERY",
        format!("{} more CAP_LIST", extra.len()),
    );
    // [CAP-3] is a SHOULD NOT: reported, not judged.
    let largest = largest_frame(&c);
    if largest > 1400 {
        ctx.note(format!(
            "SHOULD NOT [CAP-3] not met: a {largest}-byte frame, above the tester's max_frame 1400"
        ));
    }
    let Some(cbor) = lists.values().next().cloned() else {
        ctx.pass();
        return Ok(());
    };
    match validate_list(&cbor) {
        Err(e) => {
            ctx.check(
                "CAP-2",
                false,
                "a CAP_LIST valid against capability-list",
                e,
            );
        }
        Ok(caps) => {
            let names: BTreeSet<&str> = caps.iter().map(|c| c.name.as_str()).collect();
            ctx.check(
                "CAP-2",
                names.len() == caps.len(),
                "distinct capability names",
                format!("{:?}", caps.iter().map(|c| &c.name).collect::<Vec<_>>()),
            );
            let kinds: BTreeSet<&str> = caps.iter().map(|c| c.kind.as_str()).collect();
            let pixit_kinds = ctx.pixit.capabilities.clone();
            let declared: BTreeSet<&str> = pixit_kinds.iter().map(String::as_str).collect();
            // A kind the PIXIT declares may be missing only when not even its smallest entry
            // fits the record within the frame size ([CAP-12]: a small MTU is legal).
            let limit = c.max_frame();
            let record = RECORD_OVERHEAD
                + Message {
                    rseq: 1,
                    body: MsgBody::CapList {
                        req_id: 0x11,
                        cbor: cbor.clone(),
                    },
                }
                .buffer_len();
            let (cut, could_fit): (Vec<&str>, Vec<&str>) = declared
                .difference(&kinds)
                .copied()
                .partition(|k| record + smallest_entry(k) > limit);
            if !cut.is_empty() {
                ctx.note(format!(
                    "kinds {cut:?} not listed: the {record}-byte CAP_LIST record has no room for \
                     them within the frame size {limit} ([CAP-12])"
                ));
            }
            ctx.check(
                "CAP-12",
                could_fit.is_empty(),
                "every PIXIT kind listed that fits the CAP_LIST record",
                format!("{could_fit:?} left out of a {record}-byte record, limit {limit}"),
            );
            ctx.check(
                "CAP-2",
                kinds.is_subset(&declared),
                format!("capabilities only of the kinds the PIXIT declares: {declared:?}"),
                format!("{kinds:?} ({caps:?})"),
            );
            ctx.note(format!("CAP_LIST: {caps:?}"));
        }
    }
    let same = lists.values().all(|l| {
        validate_list(l).ok().map(|v| v.len()) == validate_list(&cbor).ok().map(|v| v.len())
    });
    ctx.check(
        "CAP-2",
        same,
        "the same capabilities in every CAP_LIST",
        format!("{} lists differ in length", lists.len()),
    );
    ctx.pass();
    Ok(())
}

/// The capability kinds of `kinds` for which a CAP_LIST `cbor` received on `c` is full: the
/// record has no room for even the smallest entry of that kind within the connection's frame
/// size, so a capability of that kind missing from it is legally not offered on this
/// connection ([CAP-12]).
pub(crate) fn full_for<'k>(c: &SecureConn, cbor: &[u8], kinds: &[&'k str]) -> Vec<&'k str> {
    let record = RECORD_OVERHEAD
        + Message {
            rseq: 1,
            body: MsgBody::CapList {
                req_id: 0x11,
                cbor: cbor.to_vec(),
            },
        }
        .buffer_len();
    kinds
        .iter()
        .copied()
        .filter(|k| record + smallest_entry(k) > c.max_frame())
        .collect()
}

/// Bytes one capability entry of `kind` adds to a CAP_LIST at the least: a one-byte name and
/// zero metrics (the array header may grow by a byte too).
fn smallest_entry(kind: &str) -> usize {
    let one = softbus::capability::encode_list(&[softbus::capability::Capability {
        name: "x".into(),
        kind: kind.into(),
        metrics: softbus::capability::Metrics::default(),
    }]);
    one.len() - 1
}

fn unknown_capability_refused(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (_lt, mut c) = ctx.connected()?;
    let t = ctx.timeout();
    let caps = capabilities(&mut c, t)?;
    let first = caps
        .first()
        .map(|c| c.name.clone())
        .ok_or_else(|| StepError::Unexpected("preamble: the DUT lists no capability".into()))?;
    // A grant for another capability does not help: check 1 comes first.
    let (_, grant, _) = c.request_permission(&first, Scope::UntilRevoked, 0, t)?;
    for (grant_id, what) in [
        (0u32, "without a grant"),
        (grant, "with a grant for another capability"),
    ] {
        let started = Instant::now();
        let r = c.invoke("no.such.capability", grant_id, b"x");
        let took = started.elapsed();
        let Some((status, result)) = ctx.must("CAP-5", "a CAP_RESULT for the CAP_INVOKE", r) else {
            continue;
        };
        ctx.check(
            "CAP-6",
            status == Code::UnknownCapability,
            format!("CAP_RESULT UNKNOWN_CAPABILITY(11) {what}"),
            format!("{status} with {} result bytes", result.len()),
        );
        ctx.check(
            "CAP-5",
            took <= T_RESP,
            "a refusal within 500 ms",
            format!("after {took:?}"),
        );
    }
    let extra: Vec<_> = gather(&mut c, Duration::from_millis(200))?
        .into_iter()
        .filter(|m| matches!(m.body, MsgBody::CapResult { .. }))
        .collect();
    ctx.check(
        "CAP-5",
        extra.is_empty(),
        "exactly one CAP_RESULT per CAP_INVOKE",
        format!("{} more CAP_RESULT", extra.len()),
    );
    ctx.pass();
    Ok(())
}
