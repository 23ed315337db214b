//! Two `softbusd` processes on loopback: discover each other over CoAP multicast, pair with a
//! PIN, open an encrypted session, exchange messages both ways, and take a permission through
//! grant, use, revocation and refusal. Everything crosses real sockets.

use std::time::Duration;

use serde_json::{json, Value};
use softbus_e2e::{loopback_config, Daemon};

const T: Duration = Duration::from_secs(5);

fn is(e: &Value, ty: &str) -> bool {
    e["type"] == json!(ty)
}

#[test]
fn two_daemons_discover_pair_talk_and_enforce_permissions() -> anyhow::Result<()> {
    let disc_port = 20000 + (std::process::id() % 20000) as u16;
    let a = Daemon::spawn(&loopback_config("alpha", None, disc_port), None)?;
    let b = Daemon::spawn(&loopback_config("bravo", Some("246810"), disc_port), None)?;
    let mut ca = a.control()?;
    let mut cb = b.control()?;
    let b_id = b.bound["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let a_id = a.bound["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // Discovery: alpha's multicast probe finds bravo, with an advert consistent with bravo.
    let found = ca.call(json!({"op": "discover", "timeout_ms": 400}))?;
    let devices = found["devices"].as_array().cloned().unwrap_or_default();
    let advert = devices
        .iter()
        .find(|d| d["id"] == json!(b_id))
        .unwrap_or_else(|| panic!("bravo not discovered: {found}"));
    assert_eq!(advert["name"], json!("bravo"));
    assert_eq!(advert["pair"], json!(true));
    assert_eq!(advert["caps"], json!(["speaker"]));
    let b_udp = format!("127.0.0.1:{}", advert["port"]);

    // Pairing with the PIN, then the Noise handshake.
    ca.call(json!({"op": "pair", "addr": b_udp, "pin": "246810"}))?;
    ca.wait_event(T, |e| is(e, "paired"))?;
    cb.wait_event(T, |e| is(e, "paired") && e["peer"] == json!(a_id))?;
    ca.call(json!({"op": "connect", "addr": b_udp}))?;
    ca.wait_event(T, |e| is(e, "connected"))?;
    cb.wait_event(T, |e| is(e, "connected"))?;

    // alpha -> bravo's echo service and back.
    let s =
        ca.call(json!({"op": "open_session", "peer": b_id, "service": "echo", "kind": "message"}))?;
    let sid = s["session_id"].clone();
    ca.wait_event(T, |e| is(e, "session_opened"))?;
    ca.call(json!({"op": "send", "peer": b_id, "session_id": sid, "data_hex": "68656c6c6f"}))?;
    let echoed = ca.wait_event(T, |e| is(e, "message"))?;
    assert_eq!(echoed["data"], json!("68656c6c6f"));

    // bravo -> alpha's sink.
    let s =
        cb.call(json!({"op": "open_session", "peer": a_id, "service": "sink", "kind": "message"}))?;
    cb.wait_event(T, |e| is(e, "session_opened"))?;
    cb.call(json!({"op": "send", "peer": a_id, "session_id": s["session_id"], "data_hex": "7468657265"}))?;
    let got = ca.wait_event(T, |e| {
        is(e, "message") && e["peer"] == json!(b_id) && e["data"] == json!("7468657265")
    })?;
    assert_eq!(got["data"], json!("7468657265"));

    // Permission: granted, used, revoked, refused.
    cb.call(json!({"op": "set_prompt_policy", "policy": "approve"}))?;
    ca.call(json!({"op": "request_permission", "peer": b_id, "capability": "speaker.main", "scope": "until-revoked"}))?;
    let res = ca.wait_event(T, |e| is(e, "permission_result"))?;
    assert_eq!(res["result"], json!("granted"), "{res}");
    let grant = res["grant_id"].clone();
    ca.call(json!({"op": "invoke", "peer": b_id, "capability": "speaker.main", "grant_id": grant, "data_hex": "01"}))?;
    let used = ca.wait_event(T, |e| is(e, "capability_result"))?;
    assert_eq!(used["status"], json!("OK"), "{used}");
    cb.call(json!({"op": "revoke", "grant_id": grant}))?;
    ca.wait_event(T, |e| is(e, "grant_revoked"))?;
    ca.call(json!({"op": "invoke", "peer": b_id, "capability": "speaker.main", "grant_id": grant, "data_hex": "01"}))?;
    let refused = ca.wait_event(T, |e| is(e, "capability_result"))?;
    assert_eq!(refused["status"], json!("GRANT_REVOKED"), "{refused}");

    // The trust store was persisted on both sides.
    let trust: Value =
        serde_json::from_str(&std::fs::read_to_string(b.dir.path().join("trust.json"))?)?;
    assert!(trust["peers"].get(&a_id).is_some(), "{trust}");
    Ok(())
}

#[test]
fn daemon_survives_garbage_and_counts_it() -> anyhow::Result<()> {
    let disc_port = 20000 + ((std::process::id() + 7) % 20000) as u16;
    let mut d = Daemon::spawn(&loopback_config("target", Some("123456"), disc_port), None)?;
    let udp = d.addr("udp")?;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let junk: [&[u8]; 5] = [
        b"",
        b"\x01",
        b"\x01\x20\0\0\0\0",
        b"\x09\x10garbage",
        &[0xffu8; 2000],
    ];
    for j in junk {
        sock.send_to(j, udp)?;
    }
    let mut c = d.control()?;
    std::thread::sleep(Duration::from_millis(100));
    let st = c.call(json!({"op": "state"}))?;
    let counters = &st["counters"];
    let dropped = counters["malformed_frames"].as_u64().unwrap_or(0)
        + counters["oversized_frames"].as_u64().unwrap_or(0);
    assert!(dropped >= 3, "{st}");
    assert!(d.is_running());
    Ok(())
}

#[test]
fn bad_config_names_the_file_and_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, loopback_config("x", Some("12345"), 5683))?;
    let out = std::process::Command::new(softbus_e2e::binary("softbus", "softbusd")?)
        .arg("--config")
        .arg(&cfg)
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("device.pin"),
        "{err}"
    );
    Ok(())
}

#[test]
fn fault_list_prints_the_catalogue() -> anyhow::Result<()> {
    let out = std::process::Command::new(softbus_e2e::binary("softbus", "softbusd")?)
        .args(["--fault", "list"])
        .output()?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 12, "{text}");
    for l in lines {
        let cols: Vec<&str> = l.split('\t').collect();
        assert_eq!(cols.len(), 3, "{l}");
        assert!(cols[1].split(',').all(|id| id.contains('-')), "{l}");
    }
    Ok(())
}
