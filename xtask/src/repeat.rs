//! `cargo xtask repeat N [CERTIFY-ARGS]`: certify N times, each with another seed, and report
//! every case whose verdict changed between runs (a flake: the suite or the DUT is not
//! deterministic where it should be).
//!
//! Run `i` (1..=N) passes `--seed i` and writes its report to `<report-dir>/run-i` (default
//! `target/repeat`); every other argument goes to `certify` unchanged (`--rig`, `--filter`,
//! `--transport`, `--variant`, ...). Prints the verdict counts per run and, per flaky case, its
//! verdict in each run. Exit status 0 when no verdict changed, 1 when one did, 2 when a run
//! produced no report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Parse `N [ARGS]`, with `--report-dir DIR` taken out of ARGS.
fn parse(args: &[String]) -> anyhow::Result<(u64, PathBuf, Vec<String>)> {
    let Some((n, rest)) = args.split_first() else {
        anyhow::bail!("usage: cargo xtask repeat N [CERTIFY-ARGS] (N runs, seeds 1..=N)");
    };
    let n: u64 = n
        .parse()
        .ok()
        .filter(|n| *n >= 2)
        .ok_or_else(|| anyhow::anyhow!("repeat: {n:?} is not a number of runs (2 or more)"))?;
    let mut dir = PathBuf::from("target/repeat");
    let mut pass = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        if a == "--report-dir" {
            dir = it
                .next()
                .map(PathBuf::from)
                .ok_or_else(|| anyhow::anyhow!("repeat: --report-dir needs a directory"))?;
        } else if a == "--seed" || a.starts_with("--seed=") {
            anyhow::bail!("repeat: --seed is chosen per run (1..=N)");
        } else {
            pass.push(a.clone());
        }
    }
    Ok((n, dir, pass))
}

/// The cases whose verdict differs between runs: id -> verdict per run ("-" when not run).
fn flaky(runs: &[BTreeMap<String, String>]) -> BTreeMap<String, Vec<String>> {
    let mut ids: Vec<&String> = runs.iter().flat_map(|r| r.keys()).collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| {
            let v: Vec<String> = runs
                .iter()
                .map(|r| r.get(id).cloned().unwrap_or_else(|| "-".into()))
                .collect();
            v.iter().any(|x| x != &v[0]).then(|| (id.clone(), v))
        })
        .collect()
}

/// Run the repeats; see the module docs.
pub fn run(args: &[String]) -> anyhow::Result<u8> {
    let (n, dir, pass) = parse(args)?;
    crate::setup::ensure()?;
    let root = crate::cargo::root();
    let dir = if dir.is_absolute() {
        dir
    } else {
        root.join(dir)
    };
    let certify = match crate::cargo::build_certify()? {
        Ok(path) => path,
        Err(code) => return Ok(code),
    };
    let mut runs = Vec::new();
    let mut broken = false;
    for i in 1..=n {
        let out = dir.join(format!("run-{i}"));
        let _ = std::fs::remove_dir_all(&out);
        let started = Instant::now();
        eprintln!("xtask repeat: run {i}/{n} (--seed {i})");
        let code = crate::cargo::run(
            std::process::Command::new(&certify)
                .args(&pass)
                .args(["--seed", &i.to_string(), "--quiet", "--report-dir"])
                .arg(&out),
        )?;
        let report = std::fs::read_to_string(out.join("report.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let Some(report) = report else {
            eprintln!("xtask repeat: run {i}: certify exited {code} without a report");
            broken = true;
            continue;
        };
        let verdicts: BTreeMap<String, String> = report["cases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or("?").to_owned(),
                    c["verdict"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect();
        let s = &report["summary"];
        eprintln!(
            "xtask repeat: run {i}: {} cases, {} pass, {} fail, {} inconc, {} error, {} na in {:.0} s",
            verdicts.len(),
            s["pass"],
            s["fail"],
            s["inconc"],
            s["error"],
            s["na"],
            started.elapsed().as_secs_f64()
        );
        runs.push(verdicts);
    }
    let changed = flaky(&runs);
    println!(
        "\n{} runs, {} cases: {} verdict changes",
        runs.len(),
        runs.first().map_or(0, |r| r.len()),
        changed.len()
    );
    for (id, v) in &changed {
        println!("  {id:<18} {}", v.join(" "));
    }
    println!("reports under {}", dir.display());
    Ok(if !changed.is_empty() {
        1
    } else if broken {
        2
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_verdict_that_changes_or_a_case_that_vanishes_is_a_flake() {
        let runs = [
            run(&[("SB-A", "PASS"), ("SB-B", "PASS"), ("SB-C", "NA")]),
            run(&[("SB-A", "PASS"), ("SB-B", "FAIL"), ("SB-C", "NA")]),
            run(&[("SB-A", "PASS"), ("SB-C", "NA")]),
        ];
        let f = flaky(&runs);
        assert_eq!(f.keys().collect::<Vec<_>>(), ["SB-B"]);
        assert_eq!(f["SB-B"], ["PASS", "FAIL", "-"]);
    }

    #[test]
    fn arguments_pass_through_but_the_seed_is_per_run() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (n, dir, pass) =
            parse(&a(&["20", "--transport", "udp", "--report-dir", "/tmp/r"])).unwrap();
        assert_eq!(
            (n, dir, pass),
            (20, "/tmp/r".into(), a(&["--transport", "udp"]))
        );
        assert!(parse(&a(&["3", "--seed", "4"])).is_err());
        assert!(parse(&a(&["one"])).is_err());
        assert!(parse(&a(&[])).is_err());
    }
}
