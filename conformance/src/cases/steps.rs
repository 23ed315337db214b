//! Steps and readers the cases of several sections share: waiting for the DUT's answers over a
//! secure connection ([`gather`], [`maybe`]), describing them for FAIL texts, and reading the
//! control protocol's `state` and `events` results (14.4, 14.5). A case file holds its own
//! section's cases and the helpers only they use; what two sections need lives here, so no case
//! file depends on another's.

use std::time::Duration;

use serde_json::Value;
use softbus::wire::msg::{Message, MsgBody};
use softbus::wire::Code;

use crate::tester::lower::{LowerTester, SecureConn, StepError};

/// The response bound T_RESP.
pub(crate) const T_RESP: Duration = Duration::from_millis(500);

/// Every message (heartbeats and ACKs left out) that arrives within `dur`.
pub(crate) fn gather(c: &mut SecureConn, dur: Duration) -> Result<Vec<Message>, StepError> {
    Ok(c.collect(dur)?
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| !matches!(m.body, MsgBody::Heartbeat | MsgBody::Ack { .. }))
        .collect())
}

/// Wait up to `dur` for a message matching `pred`; `None` when none came.
pub(crate) fn maybe(
    c: &mut SecureConn,
    dur: Duration,
    pred: impl Fn(&MsgBody) -> bool,
) -> Result<Option<Message>, StepError> {
    match c.expect(dur, "", pred) {
        Ok(m) => Ok(Some(m)),
        Err(StepError::Timeout(..)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Messages for a FAIL text, briefly: DATA and CAP_LIST by their header and size, anything else
/// as its body (cut at 120 characters) and rseq; at most 8, then how many more.
pub(crate) fn describe(msgs: &[Message]) -> String {
    if msgs.is_empty() {
        return "nothing".into();
    }
    let v: Vec<String> = msgs
        .iter()
        .take(8)
        .map(|m| match &m.body {
            MsgBody::Data {
                session_id,
                msg_id,
                frag_index,
                frag_count,
                payload,
            } => format!("DATA(session {session_id}, msg {msg_id}, frag {frag_index}/{frag_count}, {} bytes)", payload.len()),
            MsgBody::CapList { req_id, cbor } => format!("CAP_LIST(req {req_id}, {} bytes)", cbor.len()),
            b => {
                let mut s = format!("{b:?} rseq {}", m.rseq);
                if s.len() > 120 {
                    let cut = (0..=120).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
                    s.truncate(cut);
                    s.push_str("...");
                }
                s
            }
        })
        .collect();
    let more = if msgs.len() > 8 {
        format!(" and {} more", msgs.len() - 8)
    } else {
        String::new()
    };
    format!("{}{more}", v.join("; "))
}

/// Largest frame the DUT sent on the connection so far.
pub(crate) fn largest_frame(c: &SecureConn) -> usize {
    c.records
        .iter()
        .filter(|r| r.from_dut)
        .map(|r| r.frame.len())
        .max()
        .unwrap_or(0)
}

/// The device ID of a lower tester, as the control protocol writes it.
pub(crate) fn peer_id(lt: &LowerTester) -> String {
    lt.identity.device_id().to_hex()
}

/// The connections and handshakes a `state` result lists (14.4 `peers`).
pub(crate) fn connections(state: &Value) -> Vec<Value> {
    state["peers"].as_array().cloned().unwrap_or_default()
}

/// Whether a `state` result lists a connection with `peer`.
pub(crate) fn connected_to(state: &Value, peer: &str) -> bool {
    connections(state).iter().any(|c| c["peer"] == peer)
}

/// The grants a `state` result says the DUT issued and keeps (14.4 `grants`).
pub(crate) fn grants_issued(state: &Value) -> Vec<Value> {
    state["grants"].as_array().cloned().unwrap_or_default()
}

/// Whether an event member holds `code` (codes are the names of 13.1).
pub(crate) fn is_code(v: &Value, code: Code) -> bool {
    v.as_str() == Some(code.name())
}

/// An event's type.
pub(crate) fn ev_type(e: &Value) -> &str {
    e["type"].as_str().unwrap_or("")
}

/// Whether `e` reports the loss of `peer` (14.5 `peer_lost`).
pub(crate) fn is_peer_lost(e: &Value, peer: &str) -> bool {
    ev_type(e) == "peer_lost" && e["peer"] == peer
}

/// Whether `e` reports that the connection with `peer` ended with `code` (14.5 `disconnected`).
pub(crate) fn is_disconnected(e: &Value, peer: &str, code: Code) -> bool {
    ev_type(e) == "disconnected" && e["peer"] == peer && is_code(&e["code"], code)
}

/// Whether `e` reports that session `session_id` with `peer` closed with `code`.
pub(crate) fn is_session_closed(e: &Value, peer: &str, session_id: u32, code: Code) -> bool {
    ev_type(e) == "session_closed"
        && e["peer"] == peer
        && e["session_id"] == session_id
        && is_code(&e["code"], code)
}

/// Compact rendering of events for FAIL messages.
pub(crate) fn brief(evs: &[Value]) -> String {
    let s: Vec<String> = evs.iter().map(|e| e.to_string()).collect();
    let mut out = s.join(", ");
    if out.len() > 600 {
        out.truncate(600);
        out.push_str("...");
    }
    format!("[{out}]")
}
