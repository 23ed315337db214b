//! The requirement-to-case matrix: which cases check each requirement of the spec, and which
//! mandatory requirements (MUST / MUST NOT) no case checks yet.

use std::collections::BTreeMap;

use crate::case::Case;
use crate::spec::Requirement;

/// One row of the matrix.
#[derive(Debug, Clone)]
pub struct Row {
    /// The requirement.
    pub requirement: Requirement,
    /// IDs of the cases that check it.
    pub cases: Vec<&'static str>,
}

/// The matrix and its problems.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// One row per requirement, in spec order.
    pub rows: Vec<Row>,
    /// Requirement IDs that cases name but the spec does not define.
    pub unknown: Vec<(&'static str, &'static str)>,
}

impl Matrix {
    /// Build the matrix.
    pub fn build(reqs: &[Requirement], cases: &[Case]) -> Matrix {
        let mut by_req: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
        let mut unknown = Vec::new();
        for c in cases {
            for r in c.requirements {
                if reqs.iter().any(|q| q.id == *r) {
                    by_req.entry(r).or_default().push(c.id);
                } else {
                    unknown.push((c.id, *r));
                }
            }
        }
        let rows = reqs
            .iter()
            .map(|r| Row {
                requirement: r.clone(),
                cases: by_req.get(r.id.as_str()).cloned().unwrap_or_default(),
            })
            .collect();
        Matrix { rows, unknown }
    }

    /// Mandatory requirements without a case.
    pub fn uncovered_musts(&self) -> Vec<&Requirement> {
        self.rows
            .iter()
            .filter(|r| r.requirement.keyword.is_mandatory() && r.cases.is_empty())
            .map(|r| &r.requirement)
            .collect()
    }

    /// The printed matrix.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut section = String::new();
        for row in &self.rows {
            let r = &row.requirement;
            if r.section_title != section {
                section = r.section_title.clone();
                out.push_str(&format!("\n{} {}\n", r.chapter(), section));
            }
            let cases = if row.cases.is_empty() {
                if r.keyword.is_mandatory() {
                    "-- NO CASE --".to_string()
                } else {
                    "(none)".to_string()
                }
            } else {
                row.cases.join(", ")
            };
            out.push_str(&format!(
                "  {:<9} {:<10} {}\n",
                r.id,
                r.keyword.as_str(),
                cases
            ));
        }
        let musts = self
            .rows
            .iter()
            .filter(|r| r.requirement.keyword.is_mandatory())
            .count();
        let covered = musts - self.uncovered_musts().len();
        let all_cov = self.rows.iter().filter(|r| !r.cases.is_empty()).count();
        out.push_str(&format!(
            "\n{} requirements, {} covered; {} MUST/MUST NOT, {} covered ({:.0}%)\n",
            self.rows.len(),
            all_cov,
            musts,
            covered,
            if musts == 0 {
                100.0
            } else {
                covered as f64 * 100.0 / musts as f64
            }
        ));
        for (case, req) in &self.unknown {
            out.push_str(&format!(
                "case {case} names {req}, which the spec does not define\n"
            ));
        }
        out
    }
}
