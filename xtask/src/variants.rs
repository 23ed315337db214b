//! `cargo xtask variants`: certify the reference under legal variants of its behaviour.
//!
//! A verdict is worth something only if it does not depend on the reference's own choices. Each
//! run launches the virtual DUT with a legal variant (`certify --variant`, the knobs and their
//! spec ranges in `conformance/src/variant.rs`): the named corners (by default `smallest`,
//! `largest` and `slowest`) and `--seeds N` random combinations (seeds 1..=N). Every case must
//! PASS (or be NA) under every variant; a FAIL is a suite or spec bug, not the reference's.
//! `cargo xtask test` runs it as CI's last step.
//!
//! The corners run every case. The random variants leave out, unless `--all-cases`, the case
//! families no knob reaches ([`UNREACHED`]): pairing and discovery run outside connections (no
//! record, no ACK, frames far below any legal MTU) and TIME messages are small and unreliable.
//! That keeps CI's two random runs to about 110 s each (more seeds: `--seeds N`; CI stays under 45 min).
//!
//! Prints one row per variant (its settings, the verdict counts, the time) and every case that
//! did not pass; each run's report is kept under `--report-dir` (default `target/variants`).
//! Exit status 0 when every case passed under every variant, 1 otherwise, 2 when a run could not
//! produce a report.

use std::path::PathBuf;
use std::time::Instant;

/// The case families no variant knob reaches, left out of the random runs unless `--all-cases`.
pub const UNREACHED: &str = "SB-PAIR-*,SB-DISC-*,SB-TIME-*";

/// `cargo xtask variants` options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Random variants to run, with seeds 1..=N.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Named variants to run (comma-separated; `none` for none).
    #[arg(long, default_value = "smallest,largest,slowest")]
    pub named: String,
    /// Links to certify over (comma-separated, as `certify --transport`).
    #[arg(long, default_value = "udp,tcp")]
    pub transport: String,
    /// Where each variant's report goes (one directory per variant).
    #[arg(long, default_value = "target/variants")]
    pub report_dir: PathBuf,
    /// Run every case under the random variants too (by default they skip [`UNREACHED`]).
    #[arg(long)]
    pub all_cases: bool,
}

/// One variant to run: its `--variant` value, the seed, and its directory name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    variant: String,
    seed: u64,
    dir: String,
}

/// The runs `o` asks for, named corners first.
fn plan(o: &Options) -> Vec<Run> {
    let mut runs: Vec<Run> = o
        .named
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != "none")
        .map(|n| Run {
            variant: n.to_owned(),
            seed: 1,
            dir: n.to_owned(),
        })
        .collect();
    runs.extend((1..=o.seeds).map(|s| Run {
        variant: "random".into(),
        seed: s,
        dir: format!("random-{s}"),
    }));
    runs
}

/// Run every variant; see the module docs.
pub fn run(o: &Options) -> anyhow::Result<u8> {
    crate::setup::ensure()?;
    let root = crate::cargo::root();
    let report_dir = if o.report_dir.is_absolute() {
        o.report_dir.clone()
    } else {
        root.join(&o.report_dir)
    };
    let runs = plan(o);
    // Built once, so that an edit during the sweep cannot change the suite halfway.
    eprintln!("xtask variants: building the certify binary");
    let certify = match crate::cargo::build_certify()? {
        Ok(path) => path,
        Err(code) => return Ok(code),
    };
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let mut broken = false;
    for (i, r) in runs.iter().enumerate() {
        let dir = report_dir.join(&r.dir);
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "xtask variants: [{}/{}] certify --variant {} --seed {} --transport {}",
            i + 1,
            runs.len(),
            r.variant,
            r.seed,
            o.transport
        );
        let started = Instant::now();
        let mut args: Vec<String> = [
            "--variant",
            &r.variant,
            "--seed",
            &r.seed.to_string(),
            "--transport",
            &o.transport,
            "--report-dir",
            &dir.display().to_string(),
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if r.variant == "random" && !o.all_cases {
            args.extend(["--skip".to_string(), UNREACHED.to_string()]);
        }
        let code = crate::cargo::run(std::process::Command::new(&certify).args(&args))?;
        let secs = started.elapsed().as_secs_f64();
        let report = std::fs::read_to_string(dir.join("report.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let Some(report) = report else {
            eprintln!(
                "xtask variants: {} (seed {}): certify exited {code} without a report in {}",
                r.variant,
                r.seed,
                dir.display()
            );
            broken = true;
            continue;
        };
        let s = &report["summary"];
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        let settings = report["provenance"]["variant"]
            .as_str()
            .unwrap_or(&r.variant)
            .to_owned();
        for c in report["cases"].as_array().into_iter().flatten() {
            let v = c["verdict"].as_str().unwrap_or("?");
            if v != "PASS" && v != "NA" {
                bad.push(format!(
                    "  {:<8} {:<14} {:<6} {}",
                    r.dir,
                    c["id"].as_str().unwrap_or("?"),
                    v,
                    c["reason"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(140)
                        .collect::<String>()
                ));
            }
        }
        rows.push(format!(
            "  {:<10} {:>4} {:>4} {:>6} {:>5} {:>3} {:>6.0}s  {}",
            r.dir,
            n("pass"),
            n("fail"),
            n("inconc"),
            n("error"),
            n("na"),
            secs,
            settings
        ));
        if code != 0 && n("fail") + n("inconc") + n("error") == 0 {
            eprintln!("xtask variants: {}: certify exited {code}", r.dir);
            broken = true;
        }
    }
    println!("\nlegal variants of the reference, over {}:", o.transport);
    println!(
        "  {:<10} {:>4} {:>4} {:>6} {:>5} {:>3} {:>7}  settings",
        "variant", "pass", "fail", "inconc", "error", "na", "time"
    );
    for r in &rows {
        println!("{r}");
    }
    println!("reports under {}", report_dir.display());
    if !bad.is_empty() {
        println!(
            "\n{} case runs did not pass under a legal variant (a suite or spec bug):",
            bad.len()
        );
        for b in &bad {
            println!("{b}");
        }
        return Ok(1);
    }
    Ok(if broken { 2 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan_is_the_corners_then_five_seeds() {
        let o = Options {
            seeds: 5,
            named: "smallest,largest,slowest".into(),
            transport: "udp,tcp".into(),
            report_dir: "target/variants".into(),
            all_cases: false,
        };
        let dirs: Vec<String> = plan(&o).into_iter().map(|r| r.dir).collect();
        assert_eq!(
            dirs,
            [
                "smallest", "largest", "slowest", "random-1", "random-2", "random-3", "random-4",
                "random-5"
            ]
        );
        let o = Options {
            seeds: 0,
            named: "none".into(),
            ..o
        };
        assert!(plan(&o).is_empty());
    }
}
