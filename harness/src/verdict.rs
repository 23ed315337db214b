//! Verdicts as ISO/IEC 9646 defines them, and the accumulator a running case reports into.
//!
//! - **NA** is decided *before* a case runs: the DUT's PICS say the feature is absent.
//! - While a case runs its verdict only gets worse, in the order
//!   PASS < INCONC < FAIL < ERROR. A later `pass()` never hides an earlier `fail()`.
//! - **ERROR** means the rig or the harness broke (a socket could not be opened, a driver
//!   crashed), never the DUT. **FAIL** names the requirement ID, what was expected and what was
//!   observed. **INCONC** means the case could not decide (no capture permission, no operator).
//!
//! A run's exit status: 0 when every case is PASS or NA, 1 when any is FAIL or INCONC, 2 when
//! any is ERROR ([`Verdict::exit_code`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ISO/IEC 9646 verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// The DUT did what the requirements say.
    Pass,
    /// The case could not decide (e.g. no capture permission, no operator to answer a prompt).
    Inconc,
    /// The DUT broke a requirement.
    Fail,
    /// The rig or harness broke; says nothing about the DUT.
    Error,
    /// Not applicable: the DUT's PICS say it does not implement the feature.
    Na,
}

impl Verdict {
    /// All verdicts, in report order.
    pub const ALL: [Verdict; 5] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::Inconc,
        Verdict::Error,
        Verdict::Na,
    ];

    /// Severity while running: PASS 1 < INCONC 2 < FAIL 3 < ERROR 4. NA is 0: it is assigned
    /// before a case runs, and any verdict from running replaces it.
    pub fn severity(self) -> u8 {
        match self {
            Verdict::Na => 0,
            Verdict::Pass => 1,
            Verdict::Inconc => 2,
            Verdict::Fail => 3,
            Verdict::Error => 4,
        }
    }

    /// The worse of two verdicts (by [`Verdict::severity`]): a verdict only gets worse.
    #[must_use]
    pub fn merge(self, other: Verdict) -> Verdict {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The upper-case name used in reports: `PASS`, `INCONC`, `FAIL`, `ERROR`, `NA`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Inconc => "INCONC",
            Verdict::Fail => "FAIL",
            Verdict::Error => "ERROR",
            Verdict::Na => "NA",
        }
    }

    /// Exit status of a run with these case verdicts: 0 all PASS or NA (or no case),
    /// 1 any FAIL or INCONC, 2 any ERROR.
    pub fn exit_code(verdicts: impl IntoIterator<Item = Verdict>) -> i32 {
        verdicts
            .into_iter()
            .map(|v| match v {
                Verdict::Pass | Verdict::Na => 0,
                Verdict::Fail | Verdict::Inconc => 1,
                Verdict::Error => 2,
            })
            .max()
            .unwrap_or(0)
    }

    /// For comparing runs: how bad the verdict is for a DUT that ran the case.
    /// `None` for NA (the case did not run, so it is neither better nor worse).
    pub fn regression_rank(self) -> Option<u8> {
        match self {
            Verdict::Na => None,
            other => Some(other.severity()),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A string that is not a verdict name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verdict {0:?}; expected PASS, INCONC, FAIL, ERROR or NA")]
pub struct UnknownVerdict(pub String);

impl FromStr for Verdict {
    type Err = UnknownVerdict;

    /// Accepts the report names, case-insensitively (`pass`, `INCONC`, `na`, ...).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "PASS" => Ok(Verdict::Pass),
            "INCONC" => Ok(Verdict::Inconc),
            "FAIL" => Ok(Verdict::Fail),
            "ERROR" => Ok(Verdict::Error),
            "NA" => Ok(Verdict::Na),
            _ => Err(UnknownVerdict(s.to_owned())),
        }
    }
}

/// A broken requirement: which one, what was expected, what the DUT did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The requirement ID from the spec, e.g. `SEC-12`.
    pub requirement: String,
    /// What the requirement demands, concretely for this step.
    pub expected: String,
    /// What was observed on the wire.
    pub observed: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] expected {}, observed {}",
            self.requirement, self.expected, self.observed
        )
    }
}

/// The verdict of one case as it runs: starts with no verdict, only ever gets worse, and keeps
/// every reason given along the way.
///
/// A case that finishes without assigning any verdict is a harness bug, and
/// [`CaseOutcome::verdict`] reports it as ERROR: a case must say `pass()` explicitly, so an
/// empty case never passes by accident.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseOutcome {
    verdict: Option<Verdict>,
    reasons: Vec<String>,
    failures: Vec<Failure>,
}

impl CaseOutcome {
    /// An outcome with no verdict yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outcome of a case that is not run because its PICS expression is false.
    pub fn not_applicable(reason: impl Into<String>) -> Self {
        CaseOutcome {
            verdict: Some(Verdict::Na),
            reasons: vec![reason.into()],
            failures: Vec::new(),
        }
    }

    fn set(&mut self, v: Verdict) {
        self.verdict = Some(match self.verdict {
            Some(current) => current.merge(v),
            None => v,
        });
    }

    /// Records that a check passed. Does not improve an earlier worse verdict.
    pub fn pass(&mut self) {
        self.set(Verdict::Pass);
    }

    /// Records that the case could not decide, and why.
    pub fn inconc(&mut self, reason: impl Into<String>) {
        self.reasons.push(format!("INCONC: {}", reason.into()));
        self.set(Verdict::Inconc);
    }

    /// Records that the DUT broke `requirement`: what was expected and what was observed.
    pub fn fail(
        &mut self,
        requirement: impl Into<String>,
        expected: impl Into<String>,
        observed: impl Into<String>,
    ) {
        let failure = Failure {
            requirement: requirement.into(),
            expected: expected.into(),
            observed: observed.into(),
        };
        self.reasons.push(format!("FAIL {failure}"));
        self.failures.push(failure);
        self.set(Verdict::Fail);
    }

    /// Records that the rig or harness broke (never the DUT's fault), and how.
    pub fn error(&mut self, reason: impl Into<String>) {
        self.reasons.push(format!("ERROR: {}", reason.into()));
        self.set(Verdict::Error);
    }

    /// Folds another outcome (e.g. a sub-step's) into this one.
    pub fn absorb(&mut self, other: CaseOutcome) {
        self.reasons.extend(other.reasons);
        self.failures.extend(other.failures);
        if let Some(v) = other.verdict {
            self.set(v);
        }
    }

    /// The verdict so far; ERROR (a harness bug) when none was ever assigned.
    pub fn verdict(&self) -> Verdict {
        self.verdict.unwrap_or(Verdict::Error)
    }

    /// Whether any verdict has been assigned yet.
    pub fn is_decided(&self) -> bool {
        self.verdict.is_some()
    }

    /// Every reason given, in order (each prefixed with its verdict).
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// Every requirement failure, in order.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// All reasons joined with `"; "`, including the "no verdict assigned" harness bug.
    pub fn reason(&self) -> String {
        let mut all = self.reasons.clone();
        if self.verdict.is_none() {
            all.push(
                "ERROR: the case finished without assigning a verdict (harness bug: \
                 call pass(), fail(), inconc() or error())"
                    .to_owned(),
            );
        }
        all.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_only_gets_worse() {
        let mut o = CaseOutcome::new();
        o.pass();
        assert_eq!(o.verdict(), Verdict::Pass);
        o.inconc("no capture permission");
        assert_eq!(o.verdict(), Verdict::Inconc);
        o.pass();
        assert_eq!(o.verdict(), Verdict::Inconc);
        o.fail("SEC-3", "frame rejected", "frame accepted");
        o.inconc("later");
        o.pass();
        assert_eq!(o.verdict(), Verdict::Fail);
        o.error("socket closed");
        assert_eq!(o.verdict(), Verdict::Error);
        o.fail("SEC-4", "a", "b");
        assert_eq!(o.verdict(), Verdict::Error);
        assert_eq!(o.reasons().len(), 5);
        assert_eq!(o.failures().len(), 2);
        assert_eq!(
            o.reason(),
            "INCONC: no capture permission; FAIL [SEC-3] expected frame rejected, observed \
             frame accepted; INCONC: later; ERROR: socket closed; FAIL [SEC-4] expected a, \
             observed b"
        );
    }

    #[test]
    fn merge_is_max_by_severity() {
        use Verdict::*;
        let order = [Na, Pass, Inconc, Fail, Error];
        for (i, a) in order.iter().enumerate() {
            for (j, b) in order.iter().enumerate() {
                assert_eq!(a.merge(*b), order[i.max(j)], "{a} merge {b}");
            }
        }
    }

    #[test]
    fn undecided_case_is_an_error() {
        let o = CaseOutcome::new();
        assert!(!o.is_decided());
        assert_eq!(o.verdict(), Verdict::Error);
        assert!(o.reason().contains("without assigning a verdict"));
    }

    #[test]
    fn na_then_run_takes_the_run_verdict() {
        let mut o = CaseOutcome::not_applicable("PICS `PERM` is false");
        assert_eq!(o.verdict(), Verdict::Na);
        o.pass();
        assert_eq!(o.verdict(), Verdict::Pass);
    }

    #[test]
    fn absorb_keeps_reasons_and_worst_verdict() {
        let mut a = CaseOutcome::new();
        a.pass();
        let mut b = CaseOutcome::new();
        b.fail("X-1", "e", "o");
        a.absorb(b);
        assert_eq!(a.verdict(), Verdict::Fail);
        assert_eq!(a.failures()[0].requirement, "X-1");
        a.absorb(CaseOutcome::new());
        assert_eq!(a.verdict(), Verdict::Fail);
    }

    #[test]
    fn exit_codes() {
        use Verdict::*;
        assert_eq!(Verdict::exit_code([]), 0);
        assert_eq!(Verdict::exit_code([Pass, Na, Pass]), 0);
        assert_eq!(Verdict::exit_code([Pass, Inconc]), 1);
        assert_eq!(Verdict::exit_code([Fail, Pass]), 1);
        assert_eq!(Verdict::exit_code([Fail, Error, Inconc]), 2);
    }

    #[test]
    fn names_round_trip() {
        for v in Verdict::ALL {
            assert_eq!(v.as_str().parse::<Verdict>().unwrap(), v);
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("\"{}\"", v.as_str())
            );
        }
        assert_eq!("inconc".parse::<Verdict>().unwrap(), Verdict::Inconc);
        assert!("maybe".parse::<Verdict>().is_err());
    }
}
