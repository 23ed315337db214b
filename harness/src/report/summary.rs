//! The end-of-run summary: counts by verdict, the cases that did not pass, and latency
//! percentiles per transport.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{format_us, CaseReport, RunReport};
use crate::timing::{Histogram, Percentiles};
use crate::verdict::Verdict;

/// Latency of every timed case on one transport, merged.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportLatency {
    /// Transport name ("udp", "ble", ...; "-" for cases without one).
    pub transport: String,
    /// Number of timed cases merged.
    pub cases: usize,
    /// Merged statistics (min, max and mean exact; percentiles within 1 %).
    pub percentiles: Percentiles,
}

/// Merges the latency of timed cases per transport, sorted by transport name.
pub fn latency_by_transport(cases: &[CaseReport]) -> Vec<TransportLatency> {
    struct Acc {
        cases: usize,
        hist: Histogram,
        min: u64,
        max: u64,
        weighted_sum: f64,
        samples: u64,
    }
    let mut by: BTreeMap<String, Acc> = BTreeMap::new();
    for case in cases {
        let Some(lat) = &case.latency else { continue };
        if lat.samples == 0 {
            continue;
        }
        let name = if case.transport.is_empty() {
            "-".to_owned()
        } else {
            case.transport.clone()
        };
        let acc = by.entry(name).or_insert_with(|| Acc {
            cases: 0,
            hist: Histogram::new(),
            min: u64::MAX,
            max: 0,
            weighted_sum: 0.0,
            samples: 0,
        });
        acc.cases += 1;
        acc.hist.merge(&Histogram::from_buckets(&lat.buckets));
        acc.min = acc.min.min(lat.min_us);
        acc.max = acc.max.max(lat.max_us);
        acc.weighted_sum += lat.mean_us * lat.samples as f64;
        acc.samples += lat.samples;
    }
    by.into_iter()
        .filter_map(|(transport, acc)| {
            let mut p = acc.hist.percentiles()?;
            p.min_us = acc.min;
            p.max_us = acc.max;
            p.mean_us = acc.weighted_sum / acc.samples.max(1) as f64;
            let clamp = |v: u64| v.clamp(acc.min, acc.max);
            p.p50_us = clamp(p.p50_us);
            p.p90_us = clamp(p.p90_us);
            p.p99_us = clamp(p.p99_us);
            p.p999_us = clamp(p.p999_us);
            Some(TransportLatency {
                transport,
                cases: acc.cases,
                percentiles: p,
            })
        })
        .collect()
}

fn one_line(s: &str, max_chars: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max_chars {
        let cut: String = flat.chars().take(max_chars.saturating_sub(3)).collect();
        format!("{cut}...")
    } else {
        flat
    }
}

/// The text printed at the end of a run: counts by verdict with the exit status, the cases that
/// did not pass (with their first reason), and latency percentiles per transport.
pub fn summary_table(report: &RunReport) -> String {
    let p = &report.provenance;
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "SoftBus conformance: DUT '{}' on rig {}{}",
        p.dut,
        p.rig_path,
        p.fault
            .as_deref()
            .map(|f| format!(" with fault '{f}'"))
            .unwrap_or_default()
    );
    out.push('\n');
    let _ = writeln!(out, "  {:<8}{:>6}", "verdict", "cases");
    for v in Verdict::ALL {
        let _ = writeln!(out, "  {:<8}{:>6}", v.as_str(), s.count(v));
    }
    let _ = writeln!(out, "  {:<8}{:>6}", "total", s.total);
    let meaning = match (report.exit_code(), report.plan.is_complete()) {
        (_, false) => "the run is incomplete: it certifies nothing",
        (0, _) => "all PASS or NA",
        (1, _) => "some FAIL or INCONC",
        _ => "some ERROR: the rig or harness broke",
    };
    let _ = writeln!(out, "  exit status {} ({meaning})", report.exit_code());
    if let Some(why) = report.plan.incomplete_reason() {
        let _ = writeln!(out, "\n  {why}");
        let shown: Vec<&str> = report
            .plan
            .not_run
            .iter()
            .take(8)
            .map(String::as_str)
            .collect();
        let more = report.plan.not_run.len().saturating_sub(shown.len());
        let _ = writeln!(
            out,
            "  not run: {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }

    let not_passing: Vec<&CaseReport> = report
        .cases
        .iter()
        .filter(|c| !matches!(c.verdict, Verdict::Pass | Verdict::Na))
        .collect();
    if !not_passing.is_empty() {
        out.push_str("\n  not passing:\n");
        for c in not_passing {
            let first = c
                .failures
                .first()
                .map(|f| format!("FAIL {f}"))
                .unwrap_or_else(|| c.reason.clone());
            let _ = writeln!(
                out,
                "  {:<7}{}  {}",
                c.verdict.as_str(),
                c.id,
                one_line(&first, 100)
            );
        }
    }

    let latency = latency_by_transport(&report.cases);
    if !latency.is_empty() {
        out.push_str("\n  latency by transport\n");
        let _ = writeln!(
            out,
            "  {:<10}{:>6}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "transport", "cases", "samples", "p50", "p90", "p99", "p99.9", "max"
        );
        for t in latency {
            let q = &t.percentiles;
            let f = |v| format_us(v, "u");
            let _ = writeln!(
                out,
                "  {:<10}{:>6}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}",
                t.transport,
                t.cases,
                q.count,
                f(q.p50_us),
                f(q.p90_us),
                f(q.p99_us),
                f(q.p999_us),
                f(q.max_us)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{latency, report};
    use super::*;

    #[test]
    fn summary_table_snapshot() {
        insta::assert_snapshot!(summary_table(&report()));
    }

    #[test]
    fn merges_latency_per_transport() {
        let mut r = report();
        let mut other = r.cases[0].clone();
        other.latency = Some(latency([5_000, 6_000, 7_000]));
        r.cases.push(other);
        let mut ble = r.cases[0].clone();
        ble.transport = "ble".into();
        ble.latency = Some(latency([40_000]));
        r.cases.push(ble);
        let by = latency_by_transport(&r.cases);
        assert_eq!(by.len(), 2);
        assert_eq!(by[0].transport, "ble");
        let udp = &by[1];
        assert_eq!(udp.cases, 2);
        assert_eq!(udp.percentiles.count, 203);
        assert_eq!(udp.percentiles.max_us, 7_000);
        assert_eq!(udp.percentiles.min_us, 300);
        assert!(udp.percentiles.p999_us <= 7_000);
    }
}
