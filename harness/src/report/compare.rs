//! Comparing a run with a baseline (`--baseline old/report.json`).
//!
//! A **regression** is a case whose verdict got worse (PASS → FAIL, FAIL → ERROR, ...), a
//! **progression** one that got better. A change to or from NA is neither: the case did not run
//! on one side (usually because the PICS changed), so it is listed as an applicability change.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::RunReport;
use crate::verdict::Verdict;

/// One case whose verdict differs between baseline and run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictChange {
    /// Case ID.
    pub id: String,
    /// Verdict in the baseline.
    pub old: Verdict,
    /// Verdict in this run.
    pub new: Verdict,
}

/// What changed between a baseline run and this one. Lists are sorted by case ID.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Comparison {
    /// Cases whose verdict got worse.
    pub regressions: Vec<VerdictChange>,
    /// Cases whose verdict got better.
    pub progressions: Vec<VerdictChange>,
    /// Cases that became NA or stopped being NA.
    pub applicability_changes: Vec<VerdictChange>,
    /// Cases in this run but not in the baseline.
    pub new_cases: Vec<String>,
    /// Cases in the baseline but not in this run.
    pub missing_cases: Vec<String>,
    /// Whether the PICS differ (which explains applicability changes).
    pub pics_changed: bool,
}

impl Comparison {
    /// Whether any verdict got worse.
    pub fn has_regressions(&self) -> bool {
        !self.regressions.is_empty()
    }

    /// Whether nothing at all changed.
    pub fn is_empty(&self) -> bool {
        self.regressions.is_empty()
            && self.progressions.is_empty()
            && self.applicability_changes.is_empty()
            && self.new_cases.is_empty()
            && self.missing_cases.is_empty()
            && !self.pics_changed
    }

    /// A plain-text account for the terminal.
    pub fn render(&self) -> String {
        if self.is_empty() {
            return "baseline: no changes\n".to_owned();
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "baseline: {} regression(s), {} progression(s), {} applicability change(s), \
             {} new case(s), {} missing case(s)",
            self.regressions.len(),
            self.progressions.len(),
            self.applicability_changes.len(),
            self.new_cases.len(),
            self.missing_cases.len()
        );
        if self.pics_changed {
            out.push_str("  note: the PICS differ from the baseline's\n");
        }
        for (label, list) in [
            ("REGRESSION ", &self.regressions),
            ("progression", &self.progressions),
            ("applicable ", &self.applicability_changes),
        ] {
            for c in list {
                let _ = writeln!(out, "  {label}  {:<6} -> {:<6}  {}", c.old, c.new, c.id);
            }
        }
        for id in &self.new_cases {
            let _ = writeln!(out, "  new case                      {id}");
        }
        for id in &self.missing_cases {
            let _ = writeln!(out, "  missing case                  {id}");
        }
        out
    }
}

/// Compares `new` against the baseline `old` case by case (matched by ID).
pub fn compare_with_baseline(old: &RunReport, new: &RunReport) -> Comparison {
    let old_cases: BTreeMap<&str, Verdict> = old
        .cases
        .iter()
        .map(|c| (c.id.as_str(), c.verdict))
        .collect();
    let new_cases: BTreeMap<&str, Verdict> = new
        .cases
        .iter()
        .map(|c| (c.id.as_str(), c.verdict))
        .collect();
    let mut cmp = Comparison {
        pics_changed: old.provenance.pics != new.provenance.pics,
        ..Comparison::default()
    };
    for (&id, &nv) in &new_cases {
        let Some(&ov) = old_cases.get(id) else {
            cmp.new_cases.push(id.to_owned());
            continue;
        };
        if ov == nv {
            continue;
        }
        let change = VerdictChange {
            id: id.to_owned(),
            old: ov,
            new: nv,
        };
        match (ov.regression_rank(), nv.regression_rank()) {
            (Some(o), Some(n)) if n > o => cmp.regressions.push(change),
            (Some(_), Some(_)) => cmp.progressions.push(change),
            _ => cmp.applicability_changes.push(change),
        }
    }
    cmp.missing_cases = old_cases
        .keys()
        .filter(|id| !new_cases.contains_key(*id))
        .map(|id| (*id).to_owned())
        .collect();
    cmp
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{case, provenance};
    use super::*;
    use Verdict::*;

    fn run(cases: &[(&str, Verdict)]) -> RunReport {
        RunReport::new(
            provenance(),
            cases.iter().map(|(id, v)| case(id, *v)).collect(),
        )
    }

    #[test]
    fn classifies_changes() {
        let old = run(&[
            ("a", Pass),
            ("b", Fail),
            ("c", Pass),
            ("d", Na),
            ("e", Pass),
            ("gone", Pass),
            ("same", Fail),
            ("f", Inconc),
        ]);
        let new = run(&[
            ("a", Fail),
            ("b", Pass),
            ("c", Na),
            ("d", Pass),
            ("e", Error),
            ("fresh", Pass),
            ("same", Fail),
            ("f", Pass),
        ]);
        let cmp = compare_with_baseline(&old, &new);
        let ids = |l: &[VerdictChange]| l.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&cmp.regressions), ["a", "e"]);
        assert_eq!(ids(&cmp.progressions), ["b", "f"]);
        assert_eq!(ids(&cmp.applicability_changes), ["c", "d"]);
        assert_eq!(cmp.new_cases, ["fresh"]);
        assert_eq!(cmp.missing_cases, ["gone"]);
        assert!(cmp.has_regressions());
        assert!(!cmp.pics_changed);
        let text = cmp.render();
        assert!(text.contains("REGRESSION   PASS   -> FAIL    a"), "{text}");
        assert!(
            text.contains("missing case                  gone"),
            "{text}"
        );
    }

    #[test]
    fn identical_runs_compare_empty() {
        let r = run(&[("a", Pass), ("b", Fail)]);
        let cmp = compare_with_baseline(&r, &r);
        assert!(cmp.is_empty());
        assert_eq!(cmp.render(), "baseline: no changes\n");
    }

    #[test]
    fn notes_pics_change() {
        let old = run(&[("a", Pass)]);
        let mut new = old.clone();
        new.provenance.pics.insert("PERM".into(), true);
        let cmp = compare_with_baseline(&old, &new);
        assert!(cmp.pics_changed);
        assert!(cmp.render().contains("PICS differ"));
    }
}
