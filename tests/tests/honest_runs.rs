//! A report never claims more than the run checked: a DUT that cannot be reached stops the run
//! at once with one message; a DUT that goes away mid-run stops it after a few ERRORs; an
//! interrupted run exits 2 with an INCOMPLETE report, and the interrupt never reaches the DUT
//! (it runs in its own process group), so it never turns into a DUT verdict.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use softbus_e2e::{binary, certify, loopback_config, workspace_root, Daemon};

/// A rig with one external DUT at these ports.
fn external_rig(dir: &Path, udp: u16, control: u16) -> String {
    let rig = dir.join("external.toml");
    std::fs::write(
        &rig,
        format!(
            r#"[rig]
name = "external"
description = "a device the test starts (or not) itself"

[[dut]]
name = "device"
kind = "external"

[dut.udp]
host = "127.0.0.1"
port = {udp}

[dut.control]
kind = "tcp"
address = "127.0.0.1:{control}"

[dut.pics]
CTRL = true
PAIR_PIN = true
TRANSPORT_UDP = true
"#
        ),
    )
    .unwrap();
    rig.display().to_string()
}

/// Two ports nothing listens on (bound, then released).
fn dead_ports() -> (u16, u16) {
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        u.local_addr().unwrap().port(),
        t.local_addr().unwrap().port(),
    )
}

fn plan(report: &Value) -> &Value {
    &report["plan"]
}

#[test]
fn an_unreachable_dut_stops_the_run_before_the_first_case() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (udp, control) = dead_ports();
    let rig = external_rig(dir.path(), udp, control);
    let (code, report, stderr) = certify(
        &dir.path().join("run"),
        &["--rig", &rig, "--filter", "SB-CTRL"],
    )?;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be reached"), "{stderr}");
    assert!(
        stderr.contains("control channel"),
        "names what did not answer: {stderr}"
    );
    let p = plan(&report);
    assert_eq!(p["run"], 0, "{p}");
    assert!(p["planned"].as_u64() > Some(0), "{p}");
    assert_eq!(
        p["not_run"].as_array().map(Vec::len),
        p["planned"].as_u64().map(|n| n as usize),
        "{p}"
    );
    assert!(
        p["stopped"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be reached"),
        "{p}"
    );
    assert!(report["cases"].as_array().is_some_and(Vec::is_empty));
    Ok(())
}

#[test]
fn a_dut_that_goes_away_mid_run_stops_it_after_a_few_errors() -> anyhow::Result<()> {
    let disc_port = 20000 + ((std::process::id() + 29) % 20000) as u16;
    let mut d = Daemon::spawn(&loopback_config("leaving", Some("123456"), disc_port), None)?;
    let dir = tempfile::tempdir()?;
    let rig = external_rig(dir.path(), d.addr("udp")?.port(), d.addr("control")?.port());
    let report_dir = dir.path().join("run");
    let mut run = Command::new(binary("softbus-conformance", "certify")?)
        .args(["--rig", &rig, "--seed", "42", "--transport", "udp"])
        .arg("--report-dir")
        .arg(&report_dir)
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // The DUT goes away once the first case has a verdict.
    let mut out = BufReader::new(run.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line)? > 0 && !line.trim_start_matches(['[', ' ']).starts_with("1/") {
        line.clear();
    }
    d.kill();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest)?;
    let status = run.wait()?;
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json"))?)?;
    let p = plan(&report);
    assert_eq!(status.code(), Some(2), "{rest}");
    assert!(
        p["stopped"].as_str().unwrap_or("").contains("in a row"),
        "{p}\n{rest}"
    );
    let cases = report["cases"].as_array().cloned().unwrap_or_default();
    let errors = cases.iter().filter(|c| c["verdict"] == "ERROR").count();
    assert_eq!(
        errors,
        softbus_conformance::run::MAX_ERRORS_IN_A_ROW,
        "{cases:?}"
    );
    assert!(!p["not_run"].as_array().unwrap().is_empty(), "{p}");
    assert!(rest.contains("INCOMPLETE"), "{rest}");
    Ok(())
}

#[test]
fn an_interrupted_run_is_incomplete_and_never_blames_the_dut() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let report_dir = dir.path().join("run");
    // certify leads its own process group, as a shell's foreground job does; the SIGINT goes to
    // the whole group, as a Ctrl-C in a terminal would.
    let mut run = Command::new(binary("softbus-conformance", "certify")?)
        .args(["--seed", "42", "--filter", "SB-HS", "--transport", "udp"])
        .arg("--report-dir")
        .arg(&report_dir)
        .current_dir(workspace_root())
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pgid = run.id();
    let mut out = BufReader::new(run.stdout.take().unwrap());
    let mut line = String::new();
    let started = Instant::now();
    while out.read_line(&mut line)? > 0 && !line.starts_with("[ 2/") && !line.starts_with("[2/") {
        line.clear();
        assert!(started.elapsed() < Duration::from_secs(300), "no progress");
    }
    let killed = Command::new("kill")
        .args(["-s", "INT", "--", &format!("-{pgid}")])
        .status()?;
    assert!(killed.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest)?;
    let status = run.wait()?;
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json"))?)?;
    let p = plan(&report);
    assert_eq!(status.code(), Some(2), "an interrupted run exits 2\n{rest}");
    assert_eq!(p["interrupted"], true, "{p}");
    assert!(!p["not_run"].as_array().unwrap().is_empty(), "{p}");
    assert!(rest.contains("INCOMPLETE"), "{rest}");
    assert!(!rest.contains("all PASS or NA"), "{rest}");
    let junit = std::fs::read_to_string(report_dir.join("junit.xml"))?;
    assert!(junit.contains("type=\"NOT_RUN\""), "{junit}");
    // Every case that ran judged the DUT on its behaviour, not on the harness's shutdown.
    for c in report["cases"].as_array().unwrap() {
        assert_eq!(c["verdict"], "PASS", "{c}");
    }
    Ok(())
}
