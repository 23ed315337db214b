//! The suite tests itself: certifying each fault of `softbusd --fault list` with the cases that
//! check the requirements it names (`--requirement`) fails, with at least one failing case that
//! traces such a requirement; rigs without PICS or without a
//! control channel are handled. (The clean certification of the reference is in
//! `certify_reference.rs`, a separate binary so it never shares the CPU with the fault runs.)

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;
use softbus_e2e::{binary, certify, workspace_root};

/// A fault's name and the failing cases that trace its requirements (or why none did).
type FaultResult = (String, Result<Vec<String>, String>);

#[test]
fn every_fault_is_caught_by_a_case_tracing_its_requirements() -> anyhow::Result<()> {
    let out = Command::new(binary("softbus", "softbusd")?)
        .args(["--fault", "list"])
        .output()?;
    let catalogue = String::from_utf8(out.stdout)?;
    let faults: Vec<(String, BTreeSet<String>)> = catalogue
        .lines()
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let name = cols.next()?.to_string();
            let reqs = cols
                .next()?
                .split(',')
                .map(|s| s.trim().to_string())
                .collect();
            Some((name, reqs))
        })
        .collect();
    assert!(faults.len() >= 12);
    let results: Mutex<Vec<FaultResult>> = Mutex::new(Vec::new());
    let queue = Mutex::new(faults.clone());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let Some((name, reqs)) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop()
                else {
                    return;
                };
                let r = (|| -> Result<Vec<String>, String> {
                    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                    // Only the cases that check the fault's requirements: the question is
                    // whether they catch it, and the rest of the suite would only add minutes.
                    let ids = reqs.iter().cloned().collect::<Vec<_>>().join(",");
                    let (code, report, stderr) = certify(
                        dir.path(),
                        &[
                            "--fault",
                            &name,
                            "--transport",
                            "udp,tcp",
                            "--requirement",
                            &ids,
                        ],
                    )
                    .map_err(|e| e.to_string())?;
                    let cases = report["cases"].as_array().cloned().unwrap_or_default();
                    let failing: Vec<&Value> =
                        cases.iter().filter(|c| c["verdict"] == "FAIL").collect();
                    let tracing: Vec<String> = failing
                        .iter()
                        .filter(|c| {
                            c["failures"].as_array().is_some_and(|fs| {
                                fs.iter().any(|f| {
                                    f["requirement"].as_str().is_some_and(|r| reqs.contains(r))
                                })
                            })
                        })
                        .map(|c| c["id"].as_str().unwrap_or_default().to_string())
                        .collect();
                    if code != 1 {
                        return Err(format!(
                            "exit {code} (want 1); {} failing cases; {stderr}",
                            failing.len()
                        ));
                    }
                    if tracing.is_empty() {
                        let ids: Vec<String> = failing
                            .iter()
                            .map(|c| format!("{} {}", c["id"], c["failures"]))
                            .collect();
                        return Err(format!("no failing case traces {reqs:?}; failing: {ids:?}"));
                    }
                    Ok(tracing)
                })();
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((name, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut table = String::from("| fault | requirements | caught by |\n|---|---|---|\n");
    let mut missed = Vec::new();
    for (name, r) in &results {
        let reqs = faults
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.iter().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        match r {
            Ok(cases) => table.push_str(&format!("| `{name}` | {reqs} | {} |\n", cases.join(", "))),
            Err(e) => missed.push(format!("{name}: {e}")),
        }
    }
    let out = workspace_root().join("target").join("fault-table.md");
    let _ = std::fs::write(&out, &table);
    println!("{table}");
    assert!(
        missed.is_empty(),
        "faults not caught:\n{}",
        missed.join("\n")
    );
    Ok(())
}

/// Faults are caught on the other links too: the cases that run again over Zigbee and BLE fail
/// there, naming the fault's requirements, when the reference carries the defect.
#[test]
fn faults_are_caught_over_zigbee_and_ble() -> anyhow::Result<()> {
    let checks: &[(&str, &str, &str)] = &[
        ("accept-replay", "SB-REC-003", "REC-"),
        ("plaintext-data", "SB-REC-001", "REC-"),
        ("unordered-delivery", "SB-REL-002", "REL-"),
        ("grant-without-prompt", "SB-PERM-003", "PERM-"),
    ];
    let mut missed = Vec::new();
    for transport in ["zigbee", "ble"] {
        for (fault, case, req) in checks {
            let id = format!("{case}@{transport}");
            let dir = tempfile::tempdir()?;
            let (code, report, stderr) = certify(
                dir.path(),
                &["--fault", fault, "--transport", transport, "--filter", &id],
            )?;
            let cases = report["cases"].as_array().cloned().unwrap_or_default();
            let ran: Vec<String> = cases
                .iter()
                .map(|c| format!("{} {} {}", c["id"], c["transport"], c["verdict"]))
                .collect();
            let caught = cases.iter().any(|c| {
                c["id"] == id.as_str()
                    && c["transport"] == transport
                    && c["verdict"] == "FAIL"
                    && c["failures"].as_array().is_some_and(|fs| {
                        fs.iter().any(|f| {
                            f["requirement"]
                                .as_str()
                                .is_some_and(|r| r.starts_with(req))
                        })
                    })
            });
            if code != 1 || !caught {
                missed.push(format!(
                    "{fault} over {transport}: exit {code}, cases {ran:?}; {stderr}"
                ));
            }
        }
    }
    assert!(missed.is_empty(), "not caught:\n{}", missed.join("\n"));
    Ok(())
}

/// A case that runs past its time budget (PIXIT `case_timeout_ms`) ends INCONC naming the
/// budget, and the run goes on to the next case and writes its report.
#[test]
fn a_case_past_its_time_budget_is_inconclusive_and_the_run_goes_on() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rig = std::fs::read_to_string(workspace_root().join("rigs/virtual.toml"))?;
    let rig = rig.replacen(
        "latency_samples = 200\n",
        "latency_samples = 200\ncase_timeout_ms = 2000\n",
        1,
    );
    assert!(
        rig.contains("case_timeout_ms = 2000"),
        "the virtual rig changed shape"
    );
    let rig_path = dir.path().join("budget.toml");
    std::fs::write(&rig_path, rig)?;
    let rig_arg = rig_path.display().to_string();
    let report_dir = dir.path().join("report");
    let (code, report, stderr) = certify(
        &report_dir,
        &[
            "--rig",
            &rig_arg,
            "--transport",
            "zigbee",
            "--filter",
            "SB-LAT-00",
        ],
    )?;
    let cases = report["cases"].as_array().cloned().unwrap_or_default();
    let verdicts: Vec<String> = cases
        .iter()
        .map(|c| format!("{} {} {}", c["id"], c["verdict"], c["reason"]))
        .collect();
    assert_eq!(code, 1, "{verdicts:?} {stderr}");
    assert_eq!(cases.len(), 3, "{verdicts:?}");
    for c in &cases {
        assert_eq!(c["verdict"], "INCONC", "{c}");
        assert!(
            c["reason"]
                .as_str()
                .is_some_and(|r| r.contains("time budget")),
            "{c}"
        );
    }
    Ok(())
}

#[test]
fn a_dut_without_control_channel_is_inconclusive_not_hung() -> anyhow::Result<()> {
    use softbus_e2e::{loopback_config, Daemon};
    let disc_port = 20000 + ((std::process::id() + 13) % 20000) as u16;
    let d = Daemon::spawn(
        &loopback_config("external", Some("123456"), disc_port),
        None,
    )?;
    let udp = d.addr("udp")?;
    let dir = tempfile::tempdir()?;
    let rig = dir.path().join("external.toml");
    std::fs::write(
        &rig,
        format!(
            r#"[rig]
name = "external-no-control"
description = "an already running device with no tester control channel"

[[dut]]
name = "device"
kind = "external"

[dut.udp]
host = "127.0.0.1"
port = {}

[dut.control]
kind = "none"

[dut.pics]
PAIR_PIN = true
TRANSPORT_UDP = true
"#,
            udp.port()
        ),
    )?;
    let started = std::time::Instant::now();
    let (code, report, stderr) = certify(
        &dir.path().join("run"),
        &[
            "--rig",
            rig.to_str().unwrap_or_default(),
            "--filter",
            "SB-PAIR-001",
        ],
    )?;
    assert_eq!(code, 1, "{stderr}");
    let case = &report["cases"][0];
    assert_eq!(case["verdict"], "INCONC", "{case}");
    assert!(
        case["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("needs operator"),
        "{case}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the run waited for an operator"
    );
    Ok(())
}

#[test]
fn a_rig_without_pics_refuses_to_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let text = std::fs::read_to_string(workspace_root().join("rigs/virtual.toml"))?;
    let cut = text.find("[dut.pics]").unwrap_or(text.len());
    let end = text[cut..]
        .find("[dut.pixit]")
        .map(|i| cut + i)
        .unwrap_or(text.len());
    let rig = dir.path().join("nopics.toml");
    std::fs::write(&rig, format!("{}{}", &text[..cut], &text[end..]))?;
    let out = Command::new(binary("softbus-conformance", "certify")?)
        .args([
            "--rig",
            rig.to_str().unwrap_or_default(),
            "--quiet",
            "--report-dir",
        ])
        .arg(dir.path().join("run"))
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pics") && err.contains("nopics.toml"), "{err}");
    Ok(())
}

/// `--skip` leaves the matching cases out of the plan (comma-separated, globs and substrings as
/// `--filter`), and the report lists only the cases that were planned.
#[test]
fn skip_leaves_matching_cases_out() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (code, report, stderr) = certify(
        dir.path(),
        &[
            "--filter",
            "SB-HS-00*",
            "--transport",
            "udp",
            "--skip",
            "SB-HS-001,sb-hs-003",
        ],
    )?;
    assert_eq!(code, 0, "{stderr}");
    let ids: Vec<&str> = report["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(!ids.is_empty(), "{stderr}");
    assert!(
        ids.iter()
            .all(|id| id.starts_with("SB-HS-00") && *id != "SB-HS-001" && *id != "SB-HS-003"),
        "{ids:?}"
    );
    assert_eq!(report["plan"]["planned"], ids.len());
    Ok(())
}
