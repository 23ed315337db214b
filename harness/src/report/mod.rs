//! The run report: a versioned schema and the files a run leaves behind.
//!
//! Every run writes, into its output directory:
//!
//! | file | written by | for |
//! |---|---|---|
//! | `report.json` | [`RunReport::write_all`] | machines, `--baseline` comparisons ([`compare_with_baseline`]) |
//! | `junit.xml` | [`RunReport::write_all`] | CI dashboards ([`junit::to_junit_xml`]) |
//! | `report.html` | [`RunReport::write_all`] | people: self-contained, with latency plots ([`html::to_html`]) |
//! | `results.jsonl` | [`ResultsLog`] | one line per case as it finishes: a killed run keeps what ran |
//!
//! The schema is versioned by [`SCHEMA_VERSION`]; readers refuse versions they do not know
//! rather than misreading them. Adding an optional field keeps the version; renaming, removing
//! or changing the meaning of a field bumps it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::timing::{Bucket, Histogram};
use crate::verdict::{CaseOutcome, Failure, Verdict};

mod compare;
pub mod html;
mod jsonl;
pub mod junit;
mod provenance;
mod summary;

pub use compare::{compare_with_baseline, Comparison, VerdictChange};
pub use jsonl::ResultsLog;
pub use provenance::{git_commit, hash_tree, host_name, rfc3339_utc};
pub use summary::{latency_by_transport, summary_table, TransportLatency};

/// The report schema version this harness writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// File name of the JSON report.
pub const REPORT_JSON: &str = "report.json";
/// File name of the JUnit report.
pub const JUNIT_XML: &str = "junit.xml";
/// File name of the HTML report.
pub const REPORT_HTML: &str = "report.html";
/// File name of the per-case results log.
pub const RESULTS_JSONL: &str = "results.jsonl";

/// Everything that can go wrong writing or reading reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot write", "cannot read", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A report file is not valid JSON for the schema.
    #[error("{} is not a valid SoftBus report: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error (with line and column).
        source: serde_json::Error,
    },
    /// A report file has a schema version this harness does not read.
    #[error(
        "{} has schema_version {}; this harness reads version {SCHEMA_VERSION}: \
         compare it with the harness version that wrote it",
        path.display(),
        found.map_or_else(|| "missing".to_owned(), |v| v.to_string())
    )]
    Schema {
        /// The file.
        path: PathBuf,
        /// The version found (`None` when absent).
        found: Option<u64>,
    },
    /// A line of `results.jsonl` (other than a torn last line) does not parse.
    #[error("{}:{line}: not a case result: {source}", path.display())]
    ResultsLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parse error.
        source: serde_json::Error,
    },
}

pub(crate) fn io_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> ReportError {
    let path = path.to_owned();
    move |source| ReportError::Io {
        action,
        path,
        source,
    }
}

/// Where a run came from: enough to reproduce it and to know what it certifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Version of the conformance suite (crate version).
    pub suite_version: String,
    /// Git commit of the kit, when known ([`git_commit`]).
    pub git_commit: Option<String>,
    /// SHA-256 of the fixtures tree ([`hash_tree`]).
    pub fixtures_hash: String,
    /// The rig file, as given.
    pub rig_path: String,
    /// [`crate::rig::Rig::hash`].
    pub rig_hash: String,
    /// [`crate::pics::Pics::hash`] of the DUT's PICS.
    pub pics_hash: String,
    /// The PICS used, name to value.
    pub pics: BTreeMap<String, bool>,
    /// The RNG seed of the run.
    pub seed: u64,
    /// Host the harness ran on ([`host_name`]).
    pub host: String,
    /// Start time, RFC 3339 UTC ([`rfc3339_utc`]).
    pub started_at: String,
    /// End time, RFC 3339 UTC.
    pub finished_at: String,
    /// The DUT's name in the rig.
    pub dut: String,
    /// The fault injected into a virtual DUT, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The legal variant a virtual DUT ran with (`certify --variant`): its name and settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The impairment profile on the tester's side of every link (`certify --impair`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<String>,
}

/// Latency measured by a timed case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// Number of samples.
    pub samples: u64,
    /// Smallest sample, µs.
    pub min_us: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest sample, µs.
    pub max_us: u64,
    /// The bound the case judged against (PIXIT `latency_bound_ms`), µs.
    pub bound_us: u64,
    /// The physical floor of the link (e.g. airtime of a BLE frame), µs, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_floor_us: Option<u64>,
    /// Non-empty histogram buckets, for plotting.
    pub buckets: Vec<Bucket>,
}

impl LatencyReport {
    /// Summarises a histogram; `None` when it has no samples.
    pub fn from_histogram(
        hist: &Histogram,
        bound: Duration,
        physical_floor: Option<Duration>,
    ) -> Option<LatencyReport> {
        let p = hist.percentiles()?;
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Some(LatencyReport {
            samples: p.count,
            min_us: p.min_us,
            mean_us: p.mean_us,
            p50_us: p.p50_us,
            p90_us: p.p90_us,
            p99_us: p.p99_us,
            p999_us: p.p999_us,
            max_us: p.max_us,
            bound_us: us(bound),
            physical_floor_us: physical_floor.map(us),
            buckets: hist.buckets(),
        })
    }
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseReport {
    /// Case ID, laid out by spec section (e.g. `sec.replay.rejects_replayed_frame`).
    pub id: String,
    /// One-line title (the requirement it checks, in words).
    pub title: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The transport the case ran over ("udp", "tcp", "ble", "zigbee", ...; "" if none).
    pub transport: String,
    /// Requirement IDs the case checks.
    pub requirements: Vec<String>,
    /// Every reason given while running, joined with "; " (empty for a clean PASS).
    pub reason: String,
    /// The requirements the DUT broke.
    pub failures: Vec<Failure>,
    /// Wall time of the case, ms.
    pub duration_ms: u64,
    /// Latency, for timed cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyReport>,
    /// Evidence files (pcap, keys, logs), relative to the run directory.
    pub evidence: Vec<String>,
}

impl CaseReport {
    /// A report for case `id` with the verdict, reasons and failures of `outcome`; the caller
    /// fills in transport, requirements, duration, latency and evidence.
    pub fn from_outcome(
        id: impl Into<String>,
        title: impl Into<String>,
        outcome: &CaseOutcome,
    ) -> CaseReport {
        CaseReport {
            id: id.into(),
            title: title.into(),
            verdict: outcome.verdict(),
            transport: String::new(),
            requirements: Vec::new(),
            reason: outcome.reason(),
            failures: outcome.failures().to_vec(),
            duration_ms: 0,
            latency: None,
            evidence: Vec::new(),
        }
    }
}

/// Case counts by verdict, and the run's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Number of cases.
    pub total: usize,
    /// PASS cases.
    pub pass: usize,
    /// FAIL cases.
    pub fail: usize,
    /// INCONC cases.
    pub inconc: usize,
    /// ERROR cases.
    pub error: usize,
    /// NA cases.
    pub na: usize,
    /// The exit status the run ends with ([`Verdict::exit_code`]).
    pub exit_code: i32,
}

impl Summary {
    /// Counts the cases.
    pub fn from_cases(cases: &[CaseReport]) -> Summary {
        let mut s = Summary {
            total: cases.len(),
            exit_code: Verdict::exit_code(cases.iter().map(|c| c.verdict)),
            ..Summary::default()
        };
        for c in cases {
            *match c.verdict {
                Verdict::Pass => &mut s.pass,
                Verdict::Fail => &mut s.fail,
                Verdict::Inconc => &mut s.inconc,
                Verdict::Error => &mut s.error,
                Verdict::Na => &mut s.na,
            } += 1;
        }
        s
    }

    /// The count for one verdict.
    pub fn count(&self, v: Verdict) -> usize {
        match v {
            Verdict::Pass => self.pass,
            Verdict::Fail => self.fail,
            Verdict::Inconc => self.inconc,
            Verdict::Error => self.error,
            Verdict::Na => self.na,
        }
    }
}

/// What a run set out to do and how far it got. A report whose plan is not complete claims
/// nothing about the cases it did not run: its exit status is 2 and every rendering says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Plan {
    /// How many cases the run selected.
    pub planned: usize,
    /// How many of them ran (each has a verdict in `cases`).
    pub run: usize,
    /// The IDs of the selected cases that did not run, in plan order.
    #[serde(default)]
    pub not_run: Vec<String>,
    /// The run was interrupted (SIGINT or SIGTERM) before the end of its plan.
    #[serde(default)]
    pub interrupted: bool,
    /// Why the harness stopped the run early, when it did (the DUT cannot be reached, or stopped
    /// answering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl Plan {
    /// A plan that ran every one of `planned` cases.
    pub fn complete(planned: usize) -> Plan {
        Plan {
            planned,
            run: planned,
            ..Plan::default()
        }
    }

    /// Whether every planned case ran.
    pub fn is_complete(&self) -> bool {
        self.not_run.is_empty() && !self.interrupted && self.stopped.is_none()
    }

    /// One line for an incomplete run (`None` when it is complete).
    pub fn incomplete_reason(&self) -> Option<String> {
        if self.is_complete() {
            return None;
        }
        let why = match (&self.stopped, self.interrupted) {
            (Some(s), _) => s.clone(),
            (None, true) => "interrupted".to_string(),
            (None, false) => "stopped early".to_string(),
        };
        Some(format!(
            "INCOMPLETE: {} of {} planned cases ran ({why}); the {} not run have no verdict",
            self.run,
            self.planned,
            self.not_run.len()
        ))
    }
}

/// A whole run: provenance, the plan, every case, and the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Always [`SCHEMA_VERSION`] when written by this harness.
    pub schema_version: u32,
    /// Where the run came from.
    pub provenance: Provenance,
    /// What the run set out to do and how far it got (reports older than the field read as
    /// complete).
    #[serde(default)]
    pub plan: Plan,
    /// Case results, in run order.
    pub cases: Vec<CaseReport>,
    /// Counts by verdict (derived from `cases`).
    pub summary: Summary,
}

impl RunReport {
    /// A report of the current schema version with the summary computed from `cases`.
    pub fn new(provenance: Provenance, cases: Vec<CaseReport>) -> RunReport {
        let plan = Plan::complete(cases.len());
        RunReport::with_plan(provenance, plan, cases)
    }

    /// A report of a run that followed `plan` (which may not be complete).
    pub fn with_plan(provenance: Provenance, plan: Plan, cases: Vec<CaseReport>) -> RunReport {
        let summary = Summary::from_cases(&cases);
        RunReport {
            schema_version: SCHEMA_VERSION,
            provenance,
            plan,
            cases,
            summary,
        }
    }

    /// The run's exit status: 0 all PASS or NA, 1 any FAIL or INCONC, 2 any ERROR, and 2 for a
    /// run that did not complete its plan whatever its verdicts (it certifies nothing).
    pub fn exit_code(&self) -> i32 {
        let verdicts = Verdict::exit_code(self.cases.iter().map(|c| c.verdict));
        if self.plan.is_complete() {
            verdicts
        } else {
            verdicts.max(2)
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a `report.json`, refusing unknown schema versions.
    pub fn read(path: impl AsRef<Path>) -> Result<RunReport, ReportError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(io_err("cannot read report", path))?;
        RunReport::from_json(&text, path)
    }

    /// Parses report JSON; `path` is used in messages.
    pub fn from_json(text: &str, path: impl AsRef<Path>) -> Result<RunReport, ReportError> {
        let path = path.as_ref();
        let json_err = |source| ReportError::Json {
            path: path.to_owned(),
            source,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(json_err)?;
        let found = value.get("schema_version").and_then(|v| v.as_u64());
        if found != Some(u64::from(SCHEMA_VERSION)) {
            return Err(ReportError::Schema {
                path: path.to_owned(),
                found,
            });
        }
        serde_json::from_value(value).map_err(json_err)
    }

    /// Writes `report.json`, `junit.xml` and `report.html` into `dir` (created if needed),
    /// each atomically (a temporary file renamed into place). Returns the paths written.
    pub fn write_all(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, ReportError> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(io_err("cannot create report directory", dir))?;
        let files = [
            (REPORT_JSON, self.to_json()),
            (JUNIT_XML, junit::to_junit_xml(self)),
            (REPORT_HTML, html::to_html(self)),
        ];
        let mut written = Vec::with_capacity(files.len());
        for (name, contents) in files {
            let path = dir.join(name);
            write_atomically(&path, contents.as_bytes())?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Writes `contents` to `path` through a temporary file in the same directory, synced and
/// renamed, so readers never see a half-written file.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), ReportError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".to_owned());
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let mut f = fs::File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(io_err("cannot write", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err("cannot move report into place at", path))
}

/// Formats microseconds for people: `850 µs`, `12.3 ms`, `1.23 s` (with `micro` as the µ sign,
/// so text output can use plain `us`).
pub(crate) fn format_us(us: u64, micro: &str) -> String {
    if us < 1_000 {
        format!("{us} {micro}s")
    } else if us < 1_000_000 {
        let ms = us as f64 / 1_000.0;
        if ms < 10.0 {
            format!("{ms:.2} ms")
        } else if ms < 100.0 {
            format!("{ms:.1} ms")
        } else {
            format!("{ms:.0} ms")
        }
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn provenance() -> Provenance {
        Provenance {
            suite_version: "0.1.0".into(),
            git_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            fixtures_hash: "f".repeat(64),
            rig_path: "rigs/virtual.toml".into(),
            rig_hash: "a".repeat(64),
            pics_hash: "b".repeat(64),
            pics: [
                ("DISC_COAP".to_owned(), true),
                ("TRANSPORT_BLE".to_owned(), false),
            ]
            .into_iter()
            .collect(),
            seed: 42,
            host: "bench-3".into(),
            started_at: "2026-11-26T16:06:00.000Z".into(),
            finished_at: "2026-11-26T16:07:30.500Z".into(),
            dut: "reference".into(),
            fault: None,
            variant: None,
            impair: None,
        }
    }

    pub fn case(id: &str, verdict: Verdict) -> CaseReport {
        let mut outcome = CaseOutcome::new();
        match verdict {
            Verdict::Pass => outcome.pass(),
            Verdict::Fail => outcome.fail("SEC-7", "replayed frame dropped", "frame delivered"),
            Verdict::Inconc => outcome.inconc("no capture permission"),
            Verdict::Error => outcome.error("control channel closed"),
            Verdict::Na => outcome = CaseOutcome::not_applicable("PICS `TRANSPORT_BLE` is false"),
        }
        let mut c = CaseReport::from_outcome(id, format!("title of {id}"), &outcome);
        c.transport = "udp".into();
        c.requirements = vec!["SEC-7".into()];
        c.duration_ms = 120;
        c
    }

    pub fn latency(values: impl IntoIterator<Item = u64>) -> LatencyReport {
        let mut h = Histogram::new();
        for v in values {
            h.record_us(v);
        }
        LatencyReport::from_histogram(
            &h,
            Duration::from_millis(20),
            Some(Duration::from_micros(50)),
        )
        .expect("samples")
    }

    pub fn report() -> RunReport {
        let mut fast = case("sess.message.latency_within_bound", Verdict::Pass);
        fast.latency = Some(latency((0..200).map(|i| 300 + (i * 37) % 900)));
        fast.evidence = vec![
            "cases/sess.message.latency_within_bound/capture.pcap".into(),
            "cases/sess.message.latency_within_bound/keys.log".into(),
        ];
        RunReport::new(
            provenance(),
            vec![
                case("disc.coap.answers_multicast_query", Verdict::Pass),
                fast,
                case("sec.replay.rejects_replayed_frame", Verdict::Fail),
                case("perm.prompt.times_out", Verdict::Inconc),
                case("ctrl.reset.restores_defaults", Verdict::Error),
                case("ble.adv.carries_service_data", Verdict::Na),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn an_incomplete_run_certifies_nothing_in_any_rendering() {
        let cases = vec![case("a.one", Verdict::Pass), case("a.two", Verdict::Na)];
        let plan = Plan {
            planned: 5,
            run: 2,
            not_run: vec!["a.three".into(), "a.four".into(), "a.five".into()],
            interrupted: true,
            stopped: None,
        };
        let r = RunReport::with_plan(provenance(), plan, cases);
        assert_eq!(
            r.exit_code(),
            2,
            "every verdict PASS/NA, but the run is incomplete"
        );
        let text = summary::summary_table(&r);
        assert!(
            text.contains("INCOMPLETE: 2 of 5 planned cases ran (interrupted)"),
            "{text}"
        );
        assert!(!text.contains("all PASS or NA"), "{text}");
        assert!(text.contains("not run: a.three, a.four, a.five"), "{text}");
        let xml = junit::to_junit_xml(&r);
        assert_eq!(xml.matches("type=\"NOT_RUN\"").count(), 3, "{xml}");
        assert!(
            xml.contains("tests=\"5\" failures=\"0\" errors=\"3\""),
            "{xml}"
        );
        assert!(
            xml.contains("<property name=\"interrupted\" value=\"true\"/>"),
            "{xml}"
        );
        let html = html::to_html(&r);
        assert!(html.contains("INCOMPLETE"), "the HTML says so");
        let back: RunReport = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
        assert!(r.to_json().contains("\"interrupted\": true"));
    }

    #[test]
    fn a_report_written_before_the_plan_field_reads_as_complete() {
        let mut v: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        v.as_object_mut().unwrap().remove("plan");
        let back: RunReport = serde_json::from_value(v).unwrap();
        assert!(back.plan.is_complete());
    }

    #[test]
    fn summary_counts_and_exit_code() {
        let r = report();
        assert_eq!(
            r.summary,
            Summary {
                total: 6,
                pass: 2,
                fail: 1,
                inconc: 1,
                error: 1,
                na: 1,
                exit_code: 2
            }
        );
        assert_eq!(r.exit_code(), 2);
    }

    #[test]
    fn json_round_trips_and_checks_version() {
        let r = report();
        let json = r.to_json();
        assert_eq!(RunReport::from_json(&json, "r.json").unwrap(), r);
        let newer = json.replacen("\"schema_version\": 1", "\"schema_version\": 2", 1);
        let e = RunReport::from_json(&newer, "old/report.json").unwrap_err();
        assert!(
            matches!(e, ReportError::Schema { found: Some(2), .. }),
            "{e}"
        );
        assert!(e.to_string().contains("old/report.json"), "{e}");
        let e = RunReport::from_json("{}", "x.json").unwrap_err();
        assert!(matches!(e, ReportError::Schema { found: None, .. }));
        let e = RunReport::from_json("{not json", "x.json").unwrap_err();
        assert!(matches!(e, ReportError::Json { .. }));
    }

    #[test]
    fn write_all_writes_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let r = report();
        let written = r.write_all(dir.path().join("run")).unwrap();
        assert_eq!(written.len(), 3);
        let back = RunReport::read(dir.path().join("run").join(REPORT_JSON)).unwrap();
        assert_eq!(back, r);
        assert!(fs::read_to_string(dir.path().join("run/junit.xml"))
            .unwrap()
            .starts_with("<?xml"));
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("run"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn report_json_snapshot() {
        let mut r = report();
        r.cases.truncate(3);
        r.summary = Summary::from_cases(&r.cases);
        if let Some(l) = r.cases[1].latency.as_mut() {
            l.buckets.truncate(2);
        }
        insta::assert_json_snapshot!(r);
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_us(850, "µ"), "850 µs");
        assert_eq!(format_us(1_234, "u"), "1.23 ms");
        assert_eq!(format_us(12_345, "u"), "12.3 ms");
        assert_eq!(format_us(123_456, "u"), "123 ms");
        assert_eq!(format_us(2_500_000, "u"), "2.50 s");
    }
}
