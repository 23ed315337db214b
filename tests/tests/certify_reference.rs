//! The suite tests itself: certifying the reference implementation on the virtual rig passes
//! (every case PASS or NA) and writes every report file. A binary of its own, so that no other
//! certification competes with it for the CPU while its timing cases run.

use softbus_e2e::certify;

#[test]
fn reference_certifies_clean_on_the_virtual_rig() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (code, report, stderr) = certify(dir.path(), &[])?;
    let cases = report["cases"].as_array().cloned().unwrap_or_default();
    let bad: Vec<String> = cases
        .iter()
        .filter(|c| c["verdict"] != "PASS" && c["verdict"] != "NA")
        .map(|c| format!("{} {}: {}", c["id"], c["verdict"], c["reason"]))
        .collect();
    assert!(
        bad.is_empty(),
        "cases that did not pass:\n{}\n{stderr}",
        bad.join("\n")
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    for f in ["report.json", "junit.xml", "report.html", "results.jsonl"] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let jsonl = std::fs::read_to_string(dir.path().join("results.jsonl"))?;
    assert_eq!(jsonl.lines().count(), cases.len());
    let p = &report["provenance"];
    for k in [
        "suite_version",
        "fixtures_hash",
        "rig_hash",
        "pics_hash",
        "seed",
        "host",
    ] {
        assert!(!p[k].is_null(), "provenance.{k} missing: {p}");
    }
    // Every case that ran left evidence that exists.
    for c in &cases {
        for e in c["evidence"].as_array().cloned().unwrap_or_default() {
            let rel = e.as_str().unwrap_or_default();
            assert!(dir.path().join(rel).is_file(), "{rel} listed but missing");
        }
    }
    // Latency cases report percentiles.
    assert!(
        cases.iter().any(|c| c["latency"]["p99_us"].is_u64()),
        "no latency figures"
    );
    Ok(())
}
