//! The control channel's framing (14.1-14.3): one answer per line, lines that are not JSON or not
//! UTF-8, lines past the bound, and requests with invalid arguments, sent as raw lines on a
//! second control connection.

use super::*;

pub(super) fn one_answer_per_line(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let t = ctx.timeout();
    let mut u = raw_client(ctx)?;
    let ids = [
        json!(1),
        json!("abc"),
        json!({"x": [1]}),
        Value::Null,
        json!(7),
        json!(8.5),
        Value::Null,
    ];
    let lines = vec![
        r#"{"id":1,"op":"hello"}"#.to_string(),
        r#"{"id":"abc","op":"state"}"#.to_string(),
        r#"{"id":{"x":[1]},"op":"events","after":9007199254740992}"#.to_string(),
        r#"{"op":"hello"}"#.to_string(),
        String::new(),
        r#"{"id":7,"op":"no_such_op"}"#.to_string(),
        r#"{"id":8.5,"op":"hello"}"#.to_string(),
        r#"{"id":null,"op":"state"}"#.to_string(),
    ];
    let (got, extra) = exchange(&mut u, &lines, ids.len(), t)?;
    let got_ids: Vec<Value> = got.iter().map(|r| r["id"].clone()).collect();
    ctx.check(
        "CTRL-1",
        got_ids == ids,
        format!(
            "{} responses (the blank line ignored) carrying the ids {ids:?}, in order",
            ids.len()
        ),
        format!("{} responses with ids {got_ids:?}", got.len()),
    );
    let shaped = got.iter().all(|r| {
        (r["ok"] == json!(true) && r["result"].is_object())
            || (r["ok"] == json!(false) && r["error"]["code"].is_string())
    });
    ctx.check(
        "CTRL-1",
        shaped,
        "every response {id, ok, result} or {id, ok: false, error: {code, message}}",
        format!("{got:?}"),
    );
    ctx.check(
        "CTRL-1",
        extra.is_empty(),
        "exactly one response line per request line",
        format!("extra lines: {extra:?}"),
    );
    keep_transcript(ctx, &u);
    ctx.pass();
    Ok(())
}

pub(super) fn bad_lines(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let t = ctx.timeout();
    let mut u = raw_client(ctx)?;
    let cases: [(&str, &str, Value); 8] = [
        ("this is not json", "BAD_REQUEST", Value::Null),
        ("[1,2,3]", "BAD_REQUEST", Value::Null),
        (r#""hello""#, "BAD_REQUEST", Value::Null),
        (r#"{"id":5}"#, "BAD_REQUEST", json!(5)),
        (r#"{"id":6,"op":42}"#, "BAD_REQUEST", json!(6)),
        (r#"{"id":9,"op":"teleport"}"#, "UNKNOWN_OP", json!(9)),
        (r#"{"id":10,"op":"HELLO"}"#, "UNKNOWN_OP", json!(10)),
        (r#"{"id":11,"op":""}"#, "UNKNOWN_OP", json!(11)),
    ];
    for (line, code, id) in &cases {
        let (got, extra) = exchange(&mut u, &[line.to_string()], 1, t)?;
        let r = got.first().cloned().unwrap_or(Value::Null);
        ctx.check(
            "CTRL-2",
            is_error(&r, code, id),
            format!("error {code} with id {id} for the line {line}"),
            r.to_string(),
        );
        ctx.check(
            "CTRL-1",
            extra.is_empty(),
            format!("one response line for {line}"),
            format!("extra lines: {extra:?}"),
        );
    }
    // A line that is not UTF-8 (an `op` with bytes 0xff 0xfe in it) is not a JSON object either.
    u.write_raw(b"{\"id\":13,\"op\":\"hel\xff\xfelo\"}\n")?;
    match u.read_line(t) {
        Ok(answer) => {
            let r: Value = answer
                .as_deref()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or(Value::Null);
            ctx.check(
                "CTRL-2",
                is_error(&r, "BAD_REQUEST", &Value::Null),
                "error BAD_REQUEST with id null for a line that is not UTF-8",
                answer.unwrap_or_else(|| format!("no answer within {t:?}")),
            );
        }
        Err(e) => {
            ctx.check(
                "CTRL-1",
                false,
                "an answer to a line that is not UTF-8, on a connection that stays open",
                e.to_string(),
            );
            keep_transcript(ctx, &u);
            return Ok(());
        }
    }
    // Still serving.
    let (got, _) = exchange(&mut u, &[r#"{"id":12,"op":"hello"}"#.to_string()], 1, t)?;
    ctx.check(
        "CTRL-1",
        got.first()
            .is_some_and(|r| r["ok"] == json!(true) && r["id"] == 12),
        "a normal answer to hello after the bad lines",
        format!("{got:?}"),
    );
    keep_transcript(ctx, &u);
    ctx.pass();
    Ok(())
}

pub(super) fn long_line(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let t = ctx.timeout();
    let mut u = raw_client(ctx)?;
    if !u.is_tcp() {
        ctx.not_applicable("a 64 MiB line needs a TCP control channel; this one is serial");
        return Ok(());
    }
    // Unterminated, in 1 MiB writes; the DUT may answer (and does, if it bounds the line) before
    // the line feed, so nothing is read until the whole line has gone.
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0;
    while sent < LONG_LINE {
        if let Err(e) = u.write_raw(&chunk) {
            ctx.check(
                "CTRL-18",
                false,
                format!(
                    "the DUT reads a {LONG_LINE}-byte line to its end and keeps the connection"
                ),
                format!("after {sent} bytes the write failed: {e}"),
            );
            keep_transcript(ctx, &u);
            return Ok(());
        }
        sent += chunk.len();
    }
    let ended = u.write_raw(b"\n");
    let mut answers = Vec::new();
    let mut closed = ended.err().map(|e| e.to_string());
    while closed.is_none() {
        match u.read_line(if answers.is_empty() {
            t
        } else {
            Duration::from_millis(300)
        }) {
            Ok(Some(l)) => answers.push(l.trim_end().to_string()),
            Ok(None) => break,
            Err(e) => closed = Some(e.to_string()),
        }
    }
    let first: Value = answers
        .first()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    ctx.check(
        "CTRL-18",
        closed.is_none() && answers.len() == 1 && is_error(&first, "BAD_REQUEST", &Value::Null),
        format!("exactly one answer, BAD_REQUEST with id null, to a {LONG_LINE}-byte line"),
        match &closed {
            Some(e) => format!("{} answers, then: {e}", answers.len()),
            None => format!(
                "{} answers: {:?}",
                answers.len(),
                &answers[..answers.len().min(3)]
            ),
        },
    );
    if closed.is_some() {
        keep_transcript(ctx, &u);
        return Ok(());
    }
    // Still serving, on the same connection.
    let (got, _) = exchange(&mut u, &[r#"{"id":21,"op":"hello"}"#.to_string()], 1, t)?;
    ctx.check(
        "CTRL-18",
        got.first()
            .is_some_and(|r| r["ok"] == json!(true) && r["id"] == 21),
        "a normal answer to hello on the same connection after the long line",
        format!("{got:?}"),
    );
    keep_transcript(ctx, &u);
    ctx.pass();
    Ok(())
}

pub(super) fn invalid_args(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let (lt, mut c) = ctx.connected()?;
    let peer = peer_id(&lt);
    let Ok(sid) = c.open_session("echo", ChannelKind::Message, Qos::Interactive)? else {
        return Err(StepError::Unexpected(
            "preamble: session to echo rejected".into(),
        ));
    };
    let hello = ctx.upper()?.call(json!({"op": "hello"}))?;
    let listed: BTreeSet<String> = hello["ops"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let big = hex::encode(vec![0u8; 65_537]);
    let requests = vec![
        json!({"op": "set_pin"}),
        json!({"op": "set_pin", "pin": "12345"}),
        json!({"op": "set_pin", "pin": "1234567"}),
        json!({"op": "set_pin", "pin": "12a456"}),
        json!({"op": "set_pin", "pin": 123456}),
        json!({"op": "set_prompt_policy"}),
        json!({"op": "set_prompt_policy", "policy": "sometimes"}),
        json!({"op": "set_prompt_policy", "policy": 1}),
        json!({"op": "revoke"}),
        json!({"op": "revoke", "grant_id": "x"}),
        json!({"op": "revoke", "grant_id": 4_294_967_296u64}),
        json!({"op": "revoke", "grant_id": -1}),
        json!({"op": "events", "after": "x"}),
        json!({"op": "events", "after": -1}),
        json!({"op": "open_session", "peer": "zz", "service": "echo"}),
        json!({"op": "open_session", "peer": peer, "service": "echo", "kind": "video"}),
        json!({"op": "open_session", "peer": peer, "service": "echo", "qos": "urgent"}),
        json!({"op": "open_session", "peer": peer}),
        json!({"op": "open_session", "peer": peer, "service": ""}),
        json!({"op": "send", "peer": peer, "session_id": sid, "data_hex": "xyz"}),
        json!({"op": "send", "peer": peer, "session_id": "one", "data_hex": "00"}),
        json!({"op": "send", "peer": peer, "session_id": sid, "data_hex": big}),
        json!({"op": "close_session", "peer": peer, "session_id": sid, "code": "NOT_A_CODE"}),
        json!({"op": "request_permission", "peer": peer, "capability": "speaker.main", "scope": "forever"}),
        json!({"op": "request_permission", "peer": peer}),
        json!({"op": "invoke", "peer": peer, "capability": "speaker.main"}),
        json!({"op": "answer_prompt", "prompt_id": "x"}),
        json!({"op": "pair", "addr": "nowhere", "pin": "123456"}),
        json!({"op": "pair", "addr": "udp:127.0.0.1:9", "pin": "12"}),
        json!({"op": "connect", "addr": "udp:999.1.1.1:5"}),
        json!({"op": "connect"}),
        json!({"op": "rekey", "peer": "not-hex"}),
        json!({"op": "disconnect"}),
        json!({"op": "query_capabilities", "peer": 7}),
        json!({"op": "discover", "timeout_ms": "soon"}),
    ];
    let mandatory = [
        "set_pin",
        "set_prompt_policy",
        "state",
        "events",
        "hello",
        "reset",
    ];
    for req in requests {
        let op = req["op"].as_str().unwrap_or("").to_string();
        if !listed.contains(&op) && !mandatory.contains(&op.as_str()) {
            continue;
        }
        let shown = {
            let mut s = req.to_string();
            if s.len() > 160 {
                s.truncate(160);
                s.push_str("...");
            }
            s
        };
        let r = ctx.upper()?.raw(req)?;
        ctx.check(
            "CTRL-3",
            r["ok"] == json!(false) && r["error"]["code"] == "INVALID_ARGS",
            format!("INVALID_ARGS for {shown}"),
            if r["ok"] == json!(true) {
                format!("ok: {}", r["result"]).chars().take(200).collect()
            } else {
                r["error"].to_string()
            },
        );
    }
    gather(&mut c, Duration::from_millis(50))?;
    ctx.pass();
    Ok(())
}

/// A second control connection, for requests sent as raw lines.
pub(super) fn raw_client(ctx: &mut Ctx<'_>) -> Result<Upper, StepError> {
    let t = ctx.timeout();
    ctx.dut.upper(t)
}

/// Whether a response line is an error with `code` and `id`.
pub(super) fn is_error(resp: &Value, code: &str, id: &Value) -> bool {
    resp["ok"] == json!(false)
        && resp["error"]["code"] == code
        && resp["error"]["message"].is_string()
        && resp["id"] == *id
}
