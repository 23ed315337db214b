//! The tester control protocol (spec section 14), server side: JSON lines in, JSON lines out.
//!
//! ```text
//! -> {"id": 1, "op": "set_pin", "pin": "123456"}
//! <- {"id": 1, "ok": true, "result": {}}
//! -> {"id": 2, "op": "open_session", "peer": "9f3a...", "service": "echo"}
//! <- {"id": 2, "ok": false, "error": {"code": "NOT_CONNECTED", "message": "..."}}
//! ```
//!
//! Parsing and execution against an [`Endpoint`] are plain functions so they can be tested
//! without sockets; `daemon` wires them to TCP.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::crypto::DeviceId;
use crate::endpoint::{ApiError, Endpoint, LinkAddr, PromptPolicy};
use crate::time::{Accuracy, Period};
use crate::wire::msg::{ChannelKind, Qos, Scope};
use crate::wire::Code;

/// Every op the server understands, for `hello` and for the error on an unknown op.
pub const OPS: &[&str] = &[
    "hello",
    "reset",
    "set_pin",
    "set_prompt_policy",
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
    "discover",
    "time_sync",
    "time_sync_stop",
];

/// What the daemon bound, reported on stdout at start so launchers can find free ports, and in
/// the `hello` op.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bound {
    /// Device ID.
    pub device_id: String,
    /// UDP frame socket.
    pub udp: SocketAddr,
    /// TCP frame listener.
    pub tcp: Option<SocketAddr>,
    /// Unicast CoAP socket.
    pub coap: Option<SocketAddr>,
    /// Control server.
    pub control: Option<SocketAddr>,
    /// The Zigbee stick's own network address, when the Zigbee link is up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zigbee: Option<u16>,
    /// The BLE device address, when the BLE link is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ble: Option<String>,
    /// Links that were configured but could not start (the daemon runs without them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link_errors: Vec<String>,
}

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The client's request ID, echoed in the response.
    pub id: Value,
    /// The op name.
    pub op: String,
    /// All fields of the request object.
    pub args: Map<String, Value>,
}

/// A request failed; `code` is one of the spec's control error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    /// Machine-readable code (spec 14): `BAD_REQUEST`, `UNKNOWN_OP`, `INVALID_ARGS`,
    /// `UNSUPPORTED`, `NOT_CONNECTED`, `UNKNOWN_SESSION`, `UNKNOWN_GRANT`, `TIMEOUT`, `INTERNAL`.
    pub code: &'static str,
    /// Human-readable detail.
    pub message: String,
}

impl ControlError {
    /// Build an error.
    pub fn new(code: &'static str, message: impl Into<String>) -> ControlError {
        ControlError {
            code,
            message: message.into(),
        }
    }
}

impl From<ApiError> for ControlError {
    fn from(e: ApiError) -> ControlError {
        let code = match e {
            ApiError::NotConnected(_) => "NOT_CONNECTED",
            ApiError::UnknownSession { .. } => "UNKNOWN_SESSION",
            ApiError::NotFound(_) => "UNKNOWN_GRANT",
            _ => "INVALID_ARGS",
        };
        ControlError::new(code, e.to_string())
    }
}

/// Parse one line. On failure, the request ID (if readable) comes back with the error.
pub fn parse_request(line: &str) -> Result<Request, (Value, ControlError)> {
    let v: Value = serde_json::from_str(line).map_err(|e| {
        (
            Value::Null,
            ControlError::new("BAD_REQUEST", format!("not JSON: {e}")),
        )
    })?;
    let Value::Object(args) = v else {
        return Err((
            Value::Null,
            ControlError::new("BAD_REQUEST", "a request is a JSON object"),
        ));
    };
    let id = args.get("id").cloned().unwrap_or(Value::Null);
    let Some(op) = args.get("op").and_then(Value::as_str) else {
        return Err((
            id,
            ControlError::new("BAD_REQUEST", "missing string field \"op\""),
        ));
    };
    Ok(Request {
        id: id.clone(),
        op: op.to_string(),
        args,
    })
}

/// The response line for a result.
pub fn response(id: Value, r: Result<Value, ControlError>) -> Value {
    match r {
        Ok(result) => json!({ "id": id, "ok": true, "result": result }),
        Err(e) => {
            json!({ "id": id, "ok": false, "error": { "code": e.code, "message": e.message } })
        }
    }
}

fn arg_str<'a>(req: &'a Request, key: &str) -> Result<&'a str, ControlError> {
    req.args.get(key).and_then(Value::as_str).ok_or_else(|| {
        ControlError::new(
            "INVALID_ARGS",
            format!("{}: missing string field \"{key}\"", req.op),
        )
    })
}

fn arg_u64(req: &Request, key: &str) -> Result<u64, ControlError> {
    req.args.get(key).and_then(Value::as_u64).ok_or_else(|| {
        ControlError::new(
            "INVALID_ARGS",
            format!("{}: missing integer field \"{key}\"", req.op),
        )
    })
}

fn arg_u32(req: &Request, key: &str) -> Result<u32, ControlError> {
    u32::try_from(arg_u64(req, key)?).map_err(|_| {
        ControlError::new("INVALID_ARGS", format!("{}: \"{key}\" exceeds u32", req.op))
    })
}

/// Which link an `addr` argument names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// `udp:host:port` or plain `host:port`.
    Udp,
    /// `tcp:host:port`.
    Tcp,
    /// `zigbee:NWK`, the network address in hex (`0x1234`) or decimal.
    Zigbee,
    /// `ble:AA:BB:CC:DD:EE:FF`, a device address.
    Ble,
}

/// An `addr` argument: `[udp:|tcp:]host:port`.
pub fn arg_addr(req: &Request, key: &str) -> Result<(Link, SocketAddr), ControlError> {
    let s = arg_str(req, key)?;
    let (link, rest) = if let Some(r) = s.strip_prefix("tcp:") {
        (Link::Tcp, r)
    } else {
        (Link::Udp, s.strip_prefix("udp:").unwrap_or(s))
    };
    let addr = rest.parse().map_err(|_| {
        ControlError::new(
            "INVALID_ARGS",
            format!("{}: \"{key}\" = {s:?} is not [udp:|tcp:]host:port", req.op),
        )
    })?;
    Ok((link, addr))
}

/// A link address argument: `[udp:|tcp:]host:port`, `zigbee:NWK` (hex `0x1234` or decimal) or
/// `ble:AA:BB:CC:DD:EE:FF`.
pub fn arg_link(req: &Request, key: &str) -> Result<(Link, LinkAddr), ControlError> {
    let s = arg_str(req, key)?;
    let bad = |what: &str| {
        ControlError::new(
            "INVALID_ARGS",
            format!("{}: \"{key}\" = {s:?} is not {what}", req.op),
        )
    };
    if let Some(n) = s.strip_prefix("zigbee:") {
        let nwk = match n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
            Some(h) => u16::from_str_radix(h, 16).ok(),
            None => n.parse().ok(),
        };
        return match nwk {
            Some(nwk) if nwk < 0xFFF8 => Ok((Link::Zigbee, LinkAddr::Zigbee(nwk))),
            _ => Err(bad(
                "zigbee:NWK with a unicast network address (0x0000..=0xfff7)",
            )),
        };
    }
    if let Some(a) = s.strip_prefix("ble:") {
        let parts: Vec<&str> = a.split(':').collect();
        let ok = parts.len() == 6
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Err(bad("ble:AA:BB:CC:DD:EE:FF"));
        }
        return Ok((Link::Ble, LinkAddr::Ble(a.to_ascii_uppercase())));
    }
    let (link, addr) = arg_addr(req, key)?;
    Ok((link, LinkAddr::Ip(addr)))
}

fn arg_peer(req: &Request) -> Result<DeviceId, ControlError> {
    let s = arg_str(req, "peer")?;
    DeviceId::from_hex(s).ok_or_else(|| {
        ControlError::new(
            "INVALID_ARGS",
            format!("{}: peer {s:?} is not 16 hex digits", req.op),
        )
    })
}

/// An optional unsigned integer argument: absent gives `None`, another JSON type an error.
pub(crate) fn opt_u64(req: &Request, key: &str) -> Result<Option<u64>, ControlError> {
    match req.args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ControlError::new(
                "INVALID_ARGS",
                format!("{}: \"{key}\" must be a non-negative integer", req.op),
            )
        }),
    }
}

/// An optional boolean argument.
fn opt_bool(req: &Request, key: &str) -> Result<Option<bool>, ControlError> {
    match req.args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| {
            ControlError::new(
                "INVALID_ARGS",
                format!("{}: \"{key}\" must be true or false", req.op),
            )
        }),
    }
}

fn arg_hex(req: &Request, key: &str) -> Result<Vec<u8>, ControlError> {
    match req.args.get(key) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => hex::decode(s).map_err(|_| {
            ControlError::new("INVALID_ARGS", format!("{}: \"{key}\" is not hex", req.op))
        }),
        Some(_) => Err(ControlError::new(
            "INVALID_ARGS",
            format!("{}: \"{key}\" must be a hex string", req.op),
        )),
    }
}

fn arg_enum<T: serde::de::DeserializeOwned>(
    req: &Request,
    key: &str,
    default: Option<T>,
) -> Result<T, ControlError> {
    match req.args.get(key) {
        None => default.ok_or_else(|| {
            ControlError::new(
                "INVALID_ARGS",
                format!("{}: missing field \"{key}\"", req.op),
            )
        }),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            ControlError::new(
                "INVALID_ARGS",
                format!("{}: \"{key}\" = {v} is not an allowed value", req.op),
            )
        }),
    }
}

/// The `events` op: every event with a sequence number above `after`.
pub fn events_since(events: &VecDeque<(u64, Value)>, req: &Request) -> Result<Value, ControlError> {
    let after = opt_u64(req, "after")?.unwrap_or(0);
    let list: Vec<&Value> = events
        .iter()
        .filter(|(s, _)| *s > after)
        .map(|(_, v)| v)
        .collect();
    let last = events.back().map(|(s, _)| *s).unwrap_or(after);
    Ok(json!({ "events": list, "last": last }))
}

/// Execute every op except `events` and `connect` over TCP (which need the driver's state).
pub fn execute(
    ep: &mut Endpoint,
    now: Instant,
    req: &Request,
    bound: &Bound,
    coap_malformed: u64,
) -> Result<Value, ControlError> {
    match req.op.as_str() {
        "hello" => Ok(json!({
            "spec": "softbus/1",
            "device_id": ep.identity().device_id().to_hex(),
            "name": ep.config().name,
            "udp": bound.udp.to_string(),
            "tcp": bound.tcp.map(|a| a.to_string()),
            "coap": bound.coap.map(|a| a.to_string()),
            "zigbee": bound.zigbee.map(|n| format!("zigbee:{n:#06x}")),
            "ble": bound.ble.as_ref().map(|a| format!("ble:{a}")),
            "faults": ep.config().faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "ops": OPS,
        })),
        "reset" => {
            ep.reset();
            Ok(json!({}))
        }
        "set_pin" => {
            ep.set_pin(arg_str(req, "pin")?)?;
            Ok(json!({}))
        }
        "set_prompt_policy" => {
            let p: PromptPolicy = arg_enum(req, "policy", None)?;
            ep.set_prompt_policy(p);
            Ok(json!({}))
        }
        "pair" => {
            let (_, addr) = arg_link(req, "addr")?;
            let id = ep.pair(now, addr, arg_str(req, "pin")?)?;
            Ok(json!({ "pairing_id": id }))
        }
        "connect" => {
            ep.connect(now, arg_link(req, "addr")?.1);
            Ok(json!({}))
        }
        "open_session" => {
            let kind: ChannelKind = arg_enum(req, "kind", Some(ChannelKind::Message))?;
            let qos: Qos = arg_enum(req, "qos", Some(Qos::BestEffort))?;
            let id = ep.open_session(now, arg_peer(req)?, arg_str(req, "service")?, kind, qos)?;
            Ok(json!({ "session_id": id }))
        }
        "send" => {
            let (peer, session_id, data) = (
                arg_peer(req)?,
                arg_u32(req, "session_id")?,
                arg_hex(req, "data_hex")?,
            );
            match opt_u64(req, "pts_us")? {
                Some(pts) => ep.send_timed(now, peer, session_id, &data, pts)?,
                None => ep.send(now, peer, session_id, &data)?,
            }
            Ok(json!({}))
        }
        "time_sync" => {
            let peer = arg_peer(req)?;
            let accuracy = arg_enum(req, "accuracy", Some(Accuracy::Normal))?;
            let period = arg_enum(req, "period", Some(Period::Normal))?;
            ep.start_time_sync(now, peer, accuracy, period)?;
            Ok(json!({}))
        }
        "time_sync_stop" => {
            ep.stop_time_sync(arg_peer(req)?)?;
            Ok(json!({}))
        }
        "close_session" => {
            let code = match req.args.get("code").map(|v| v.as_str().ok_or(v)) {
                None => Code::NormalClose,
                Some(Err(v)) => {
                    return Err(ControlError::new(
                        "INVALID_ARGS",
                        format!("close_session: code {v} must be a code name"),
                    ))
                }
                Some(Ok(name)) => Code::from_name(name).ok_or_else(|| {
                    ControlError::new(
                        "INVALID_ARGS",
                        format!("close_session: unknown code {name:?}"),
                    )
                })?,
            };
            ep.close_session(now, arg_peer(req)?, arg_u32(req, "session_id")?, code)?;
            Ok(json!({}))
        }
        "query_capabilities" => {
            Ok(json!({ "req_id": ep.query_capabilities(now, arg_peer(req)?)? }))
        }
        "request_permission" => {
            let scope: Scope = arg_enum(req, "scope", Some(Scope::Once))?;
            let duration = opt_u64(req, "duration_s")?
                .unwrap_or(0)
                .min(u32::MAX as u64) as u32;
            let id = ep.request_permission(
                now,
                arg_peer(req)?,
                arg_str(req, "capability")?,
                scope,
                duration,
            )?;
            Ok(json!({ "req_id": id }))
        }
        "answer_prompt" => {
            let approve = opt_bool(req, "approve")?.unwrap_or(false);
            ep.answer_prompt(now, arg_u64(req, "prompt_id")?, approve)?;
            Ok(json!({}))
        }
        "invoke" => {
            let id = ep.invoke(
                now,
                arg_peer(req)?,
                arg_str(req, "capability")?,
                arg_u32(req, "grant_id")?,
                &arg_hex(req, "data_hex")?,
            )?;
            Ok(json!({ "req_id": id }))
        }
        "revoke" => {
            ep.revoke(now, arg_u32(req, "grant_id")?)?;
            Ok(json!({}))
        }
        "rekey" => {
            ep.rekey(arg_peer(req)?)?;
            Ok(json!({}))
        }
        "disconnect" => {
            ep.disconnect(now, arg_peer(req)?, Code::NormalClose)?;
            Ok(json!({}))
        }
        "state" => {
            let mut v = serde_json::to_value(ep.state(now)).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert(
                    "prompt_policy".into(),
                    serde_json::to_value(ep.prompt_policy()).unwrap_or(Value::Null),
                );
                m.insert("coap_malformed".into(), json!(coap_malformed));
            }
            Ok(v)
        }
        other => Err(ControlError::new(
            "UNKNOWN_OP",
            format!("unknown op {other:?}; supported: {}", OPS.join(", ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(addr: &str) -> Request {
        parse_request(&json!({"op": "connect", "addr": addr}).to_string()).unwrap()
    }

    #[test]
    fn link_addresses_name_every_link() {
        let ip = "127.0.0.1:5700".parse().unwrap();
        assert_eq!(
            arg_link(&req("127.0.0.1:5700"), "addr"),
            Ok((Link::Udp, LinkAddr::Ip(ip)))
        );
        assert_eq!(
            arg_link(&req("tcp:127.0.0.1:5700"), "addr"),
            Ok((Link::Tcp, LinkAddr::Ip(ip)))
        );
        assert_eq!(
            arg_link(&req("zigbee:0x4F21"), "addr"),
            Ok((Link::Zigbee, LinkAddr::Zigbee(0x4F21)))
        );
        assert_eq!(
            arg_link(&req("zigbee:0"), "addr"),
            Ok((Link::Zigbee, LinkAddr::Zigbee(0)))
        );
        assert_eq!(
            arg_link(&req("ble:c1:02:03:04:05:06"), "addr"),
            Ok((Link::Ble, LinkAddr::Ble("C1:02:03:04:05:06".into())))
        );
        for bad in [
            "zigbee:0xFFFF",
            "zigbee:x",
            "ble:C1:02",
            "ble:C1:02:03:04:05:0G",
            "nowhere",
        ] {
            let e = arg_link(&req(bad), "addr").unwrap_err();
            assert_eq!(e.code, "INVALID_ARGS", "{bad}");
        }
    }
}
