//! Running cases against a DUT and writing the evidence: the engine behind `certify` and the
//! libtest-mimic harness.
//!
//! Per case: PICS gate (NA), DUT alive (relaunched after a crash), capture started, body run
//! (a panic in a case is a harness ERROR, never a DUT verdict), DUT checked for a crash during
//! the case, evidence written, `results.jsonl` appended. Before the first case the DUT's
//! reachability is probed (as `rig check` does); after [`MAX_ERRORS_IN_A_ROW`] ERRORs in a row
//! the run stops. A Ctrl-C (or SIGTERM) stops after the current case. In each of these cases the
//! report of what ran is still written, with its plan: what was planned, what ran, what did not,
//! and why; an incomplete run exits 2 and says INCOMPLETE in every rendering.

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use softbus_harness::capture::Capture;
use softbus_harness::link::Transport;
use softbus_harness::pics::{Expr, Pics};
use softbus_harness::report::{
    self, compare_with_baseline, CaseReport, LatencyReport, Plan, Provenance, ResultsLog, RunReport,
};
use softbus_harness::rig::Rig;
use softbus_harness::verdict::{CaseOutcome, Verdict};

use crate::case::{Case, Ctx};
use crate::tester::dut::DutHandle;
use crate::tester::lower::StepError;

/// After this many consecutive ERROR verdicts the run stops: the DUT or the rig is gone, and
/// grinding through the rest would only repeat the same ERROR. The report says so.
pub const MAX_ERRORS_IN_A_ROW: usize = 5;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Rig file.
    pub rig: PathBuf,
    /// DUT name (the only DUT when `None`).
    pub dut: Option<String>,
    /// Only cases whose ID or title contains this (case-insensitive); `*` matches anything.
    pub filter: Option<String>,
    /// Where to write the run's files.
    pub report_dir: PathBuf,
    /// A previous report.json to compare against.
    pub baseline: Option<PathBuf>,
    /// Fault for the virtual DUT.
    pub fault: Option<String>,
    /// Legal variant for the virtual DUT ([`crate::variant::Variant::parse`]).
    pub variant: Option<String>,
    /// Impairment profile on the tester's side of every link
    /// ([`softbus_harness::link::impair::Profile::named`]).
    pub impair: Option<String>,
    /// Seed (random when `None`).
    pub seed: Option<u64>,
    /// Print a progress line per case.
    pub progress: bool,
    /// Only cases whose tester link is one of these (all when empty).
    pub transports: Vec<Transport>,
    /// Only cases that check at least one of these requirement IDs (all when empty).
    pub requirements: Vec<String>,
    /// Leave out the cases matching any of these `--filter` patterns.
    pub skip: Vec<String>,
}

impl RunOptions {
    /// The first of [`RunOptions::requirements`] that is not in `known`.
    pub fn requirement_ids_unknown(&self, known: &[String]) -> Option<String> {
        self.requirements
            .iter()
            .find(|r| !known.contains(r))
            .cloned()
    }
}

/// A usage or rig problem: the run did not start (exit status 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The workspace root (for fixtures and git provenance).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Whether `case` matches a `--filter` pattern: a case-insensitive substring of its ID or
/// title, or a glob with `*` matched against the whole ID.
pub fn matches_filter(case: &Case, filter: Option<&str>) -> bool {
    let Some(f) = filter else { return true };
    let f = f.to_ascii_lowercase();
    let id = case.id.to_ascii_lowercase();
    if f.contains('*') {
        return glob(&f, &id);
    }
    id.contains(&f) || case.title.to_ascii_lowercase().contains(&f)
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(after) = text.strip_prefix(head) else {
                return false;
            };
            (0..=after.len()).any(|i| after.is_char_boundary(i) && glob(rest, &after[i..]))
        }
    }
}

/// A loaded rig, selected DUT and its launched handle: reusable across many cases.
pub struct Session {
    /// The rig.
    pub rig: Rig,
    /// The DUT's PICS.
    pub pics: Pics,
    /// The DUT.
    pub dut: DutHandle,
    /// The run directory.
    pub dir: PathBuf,
    /// The run seed.
    pub seed: u64,
}

impl Session {
    /// Load the rig, check PICS, prepare (and launch) the DUT.
    pub fn open(
        rig_path: &Path,
        dut: Option<&str>,
        fault: Option<String>,
        dir: &Path,
        seed: u64,
    ) -> Result<Session, UsageError> {
        Session::open_with(rig_path, dut, fault, None, dir, seed)
    }

    /// [`Session::open`] with a legal variant of a virtual DUT's behaviour.
    pub fn open_with(
        rig_path: &Path,
        dut: Option<&str>,
        fault: Option<String>,
        variant: Option<&crate::variant::Variant>,
        dir: &Path,
        seed: u64,
    ) -> Result<Session, UsageError> {
        let rig = Rig::load(rig_path).map_err(|e| UsageError(e.to_string()))?;
        let d = rig
            .select_dut(dut)
            .map_err(|e| UsageError(e.to_string()))?
            .clone();
        let pics = rig
            .require_pics(&d.name)
            .map_err(|e| UsageError(e.to_string()))?;
        std::fs::create_dir_all(dir).map_err(|e| UsageError(format!("{}: {e}", dir.display())))?;
        if fault.is_some() && d.kind != softbus_harness::rig::DutKind::Virtual {
            return Err(UsageError(format!(
                "--fault applies only to virtual DUTs; '{}' in {} is external",
                d.name,
                rig_path.display()
            )));
        }
        if variant.is_some() && d.kind != softbus_harness::rig::DutKind::Virtual {
            return Err(UsageError(format!(
                "--variant applies only to virtual DUTs (the harness cannot vary a device it does \
                 not launch); '{}' in {} is external",
                d.name,
                rig_path.display()
            )));
        }
        let mut handle = DutHandle::new(&d, fault, dir).map_err(UsageError)?;
        handle.overrides = variant.map(|v| v.overrides()).unwrap_or_default();
        handle.partner = match &d.pixit.time_partner {
            Some(name) => Some(
                rig.dut(name)
                    .map_err(|e| UsageError(e.to_string()))?
                    .clone(),
            ),
            None => None,
        };
        handle.ensure_running().map_err(UsageError)?;
        Ok(Session {
            rig,
            pics,
            dut: handle,
            dir: dir.to_path_buf(),
            seed,
        })
    }

    /// Run one case and write its evidence under `cases/<ID>/`.
    pub fn run_case(&mut self, case: &Case, index: u64) -> CaseReport {
        let started = Instant::now();
        let expr = Expr::parse(case.pics);
        let report =
            |outcome: &CaseOutcome, evidence: Vec<String>, latency: Option<LatencyReport>| {
                let mut r = CaseReport::from_outcome(case.id, case.title, outcome);
                r.transport = case.transport.to_string();
                r.requirements = case.requirements.iter().map(|s| s.to_string()).collect();
                r.duration_ms = started.elapsed().as_millis() as u64;
                r.evidence = evidence;
                r.latency = latency;
                r
            };
        let expr = match expr {
            Ok(e) => e,
            Err(e) => {
                let mut o = CaseOutcome::new();
                o.error(format!("case has an invalid PICS expression: {e}"));
                return report(&o, vec![], None);
            }
        };
        if !self.pics.satisfies(&expr) {
            return report(
                &CaseOutcome::not_applicable(expr.explain(&self.pics)),
                vec![],
                None,
            );
        }
        if let (Some(profile), Some(why)) =
            (&self.dut.impair, crate::cases::needs_clean_link(case.id))
        {
            return report(
                &CaseOutcome::not_applicable(format!(
                    "needs a clean link under --impair {}: {why}",
                    profile.name
                )),
                vec![],
                None,
            );
        }
        if let Err(e) = self.dut.ensure_running() {
            let mut o = CaseOutcome::new();
            o.error(format!("cannot (re)launch the DUT: {e}"));
            return report(&o, vec![], None);
        }
        let case_dir = self.dir.join("cases").join(case.id);
        let _ = std::fs::create_dir_all(&case_dir);
        let rel = |name: &str| format!("cases/{}/{name}", case.id);
        let mut evidence = Vec::new();

        // Capture on the rig's interface, if it names one and we have the rights.
        let mut capture_note = None;
        let capture = self
            .dut
            .dut
            .capture
            .as_ref()
            .map(|c| c.interface.clone())
            .and_then(|iface| {
                let filter = format!("udp port {}", self.dut.udp.port());
                match Capture::start(&iface, &filter, case_dir.join("capture.pcap")) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        capture_note = Some(format!("no capture: {e}"));
                        None
                    }
                }
            });
        let log_start = std::fs::metadata(&self.dut.log_path)
            .map(|m| m.len())
            .unwrap_or(0);

        let seed = self.seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // On an impaired link, an attempt that FAILs or is INCONC while the impairment lost,
        // reordered or duplicated datagrams runs again, up to IMPAIRED_ATTEMPTS times: the
        // last attempt's verdict stands (a defect fails every attempt; a verdict the path's
        // disturbance caused rarely repeats). An attempt the path left alone is never repeated,
        // and on a clean link every case runs once.
        let attempts = if self.dut.impair.is_some() {
            IMPAIRED_ATTEMPTS
        } else {
            1
        };
        let mut earlier = Vec::new();
        let mut attempt = 0;
        let mut ctx = loop {
            attempt += 1;
            let seed = seed.wrapping_add(u64::from(attempt) - 1);
            let pics = self.pics.clone();
            let mut ctx = Ctx::new(&mut self.dut, pics, seed, case.tester_transport());
            ctx.log.append(&mut earlier);
            ctx.note(format!("case {} seed {seed:#018x}", case.id));
            if let Some(n) = &capture_note {
                ctx.note(n.clone());
            }
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| (case.run)(&mut ctx)));
            match result {
                Ok(Ok(())) => {}
                Ok(Err(StepError::Io(e))) => ctx.outcome.error(format!("harness I/O error: {e}")),
                Ok(Err(StepError::NotApplicable(why))) => ctx.not_applicable(why),
                Ok(Err(e)) => ctx
                    .outcome
                    .inconc(format!("a preamble or step did not complete: {e}")),
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    ctx.outcome
                        .error(format!("harness bug: the case panicked: {msg}"));
                }
            }
            if !ctx.outcome.is_decided() {
                ctx.outcome
                    .error("the case assigned no verdict (harness bug)");
            }
            let disturbed = ctx.path_disturbances();
            let verdict = ctx.outcome.verdict();
            if attempt < attempts
                && disturbed > 0
                && matches!(verdict, Verdict::Fail | Verdict::Inconc)
                && ctx.dut.exited().is_none()
            {
                let why = ctx.outcome.reason();
                ctx.note(format!(
                    "attempt {attempt} of {attempts}: {verdict:?} while the impaired path lost, reordered or duplicated {disturbed} datagrams ({why}); running the case again"
                ));
                earlier = std::mem::take(&mut ctx.log);
                continue;
            }
            if attempt > 1 {
                ctx.note(format!(
                    "attempt {attempt} of {attempts} gives the verdict ({disturbed} datagrams disturbed in it)"
                ));
            }
            break ctx;
        };
        let mut outcome = std::mem::take(&mut ctx.outcome);
        let log = std::mem::take(&mut ctx.log);
        let transcript = ctx.control_transcript();
        let keys = std::mem::take(&mut ctx.keys);
        let measured = ctx.measured.take();
        drop(ctx);
        // On a link packet capture cannot see, the datagrams the tester's link carried are
        // the capture (`link.pcap`, read by the Wireshark dissector with `keys.log`).
        let transport = case.tester_transport();
        if let Some(link) = self.dut.open_link(transport) {
            let traced = link.take_trace();
            if !traced.is_empty() {
                match softbus_harness::link::trace::write_pcap(&case_dir.join("link.pcap"), &traced)
                {
                    Ok(()) => evidence.push(rel("link.pcap")),
                    Err(e) => outcome.inconc(format!("writing link.pcap: {e}")),
                }
            }
        }
        // A radio link that went wrong is opened afresh for the next case.
        if matches!(transport, Transport::Zigbee | Transport::Ble)
            && matches!(outcome.verdict(), Verdict::Error | Verdict::Inconc)
        {
            self.dut.drop_link(transport);
        }

        // A DUT that died during the case fails it; the next case relaunches it.
        // The broken control channel or socket errors that follow a crash are the DUT's doing,
        // not the rig's: rebuild the verdict as FAIL, keeping what the case found before.
        let grace = if outcome.verdict() == Verdict::Error {
            std::time::Duration::from_millis(500)
        } else {
            std::time::Duration::ZERO
        };
        if let Some(status) = self.dut.exited_within(grace) {
            let mut crashed = CaseOutcome::new();
            for f in outcome.failures() {
                crashed.fail(
                    f.requirement.clone(),
                    f.expected.clone(),
                    f.observed.clone(),
                );
            }
            let earlier = outcome.reason();
            crashed.fail(
                "ERR-6",
                "the DUT keeps running whatever it receives",
                if earlier.is_empty() {
                    format!("the DUT process exited during the case ({status})")
                } else {
                    format!("the DUT process exited during the case ({status}); the case saw: {earlier}")
                },
            );
            outcome = crashed;
        }
        if let Some(c) = capture {
            match c.stop() {
                Ok(p) => {
                    evidence.push(rel("capture.pcap"));
                    if p.is_empty() {
                        let _ = std::fs::remove_file(case_dir.join("capture.pcap"));
                        evidence.pop();
                    }
                }
                Err(e) => outcome.inconc(format!("capture failed: {e}")),
            }
        }
        let mut hl = log.join("\n");
        hl.push_str("\n--- control channel ---\n");
        hl.push_str(&transcript.join("\n"));
        if std::fs::write(case_dir.join("harness.log"), hl).is_ok() {
            evidence.push(rel("harness.log"));
        }
        if !keys.is_empty() {
            // One line per direction: conn_id (receiver) and the AES-256-GCM key, for the
            // Wireshark dissector (tools/wireshark/softbus.lua).
            let text: String = keys
                .iter()
                .map(|(id, tx, _)| format!("SOFTBUS_KEY {id:08x} {tx}\n"))
                .collect();
            if std::fs::write(case_dir.join("keys.log"), text).is_ok() {
                evidence.push(rel("keys.log"));
            }
        }
        if let Ok(all) = std::fs::read(&self.dut.log_path) {
            let start = (log_start as usize).min(all.len());
            if std::fs::write(case_dir.join("dut.log"), &all[start..]).is_ok() {
                evidence.push(rel("dut.log"));
            }
        }
        let latency =
            measured.and_then(|m| LatencyReport::from_histogram(&m.histogram, m.bound, m.floor));
        report(&outcome, evidence, latency)
    }
}

/// How often a case whose attempt the impaired path disturbed may run under `--impair`.
pub const IMPAIRED_ATTEMPTS: u32 = 3;

/// Run a whole certification; returns the exit status (0, 1 or 2).
pub fn certify(opts: &RunOptions, cases: &[Case]) -> Result<i32, UsageError> {
    let seed = opts.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let started_at = report::rfc3339_utc(SystemTime::now());
    let variant = match &opts.variant {
        Some(v) => Some(
            crate::variant::Variant::parse(v, seed)
                .map_err(|e| UsageError(format!("--variant: {e}")))?,
        ),
        None => None,
    };
    let impair = match &opts.impair {
        Some(name) => Some(
            softbus_harness::link::impair::Profile::named(name)
                .map_err(|e| UsageError(format!("--impair: {e}")))?,
        ),
        None => None,
    };
    let selected: Vec<&Case> = cases
        .iter()
        .filter(|c| matches_filter(c, opts.filter.as_deref()))
        .filter(|c| !opts.skip.iter().any(|s| matches_filter(c, Some(s))))
        .filter(|c| opts.transports.is_empty() || opts.transports.contains(&c.tester_transport()))
        .filter(|c| {
            opts.requirements.is_empty()
                || c.requirements
                    .iter()
                    .any(|r| opts.requirements.iter().any(|q| q == r))
        })
        .collect();
    if selected.is_empty() {
        return Err(UsageError(format!(
            "--filter {:?} with --requirement {:?} matches no case; `cargo xtask spec-coverage` \
             lists the cases per requirement",
            opts.filter.as_deref().unwrap_or(""),
            opts.requirements.join(",")
        )));
    }
    let baseline = match &opts.baseline {
        Some(p) => Some(RunReport::read(p).map_err(|e| UsageError(format!("--baseline: {e}")))?),
        None => None,
    };
    let mut session = Session::open_with(
        &opts.rig,
        opts.dut.as_deref(),
        opts.fault.clone(),
        variant.as_ref(),
        &opts.report_dir,
        seed,
    )?;
    session.dut.impair = impair.clone();
    let mut results =
        ResultsLog::create(&opts.report_dir).map_err(|e| UsageError(e.to_string()))?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(2);
            }
            eprintln!("\ninterrupted: finishing the current case, then writing the report (Ctrl-C again to abort)");
        });
    }
    if opts.progress {
        println!(
            "certifying DUT '{}' from {} ({} cases, seed {seed}{})",
            session.dut.dut.name,
            opts.rig.display(),
            selected.len(),
            opts.fault
                .as_deref()
                .map(|f| format!(", fault {f}"))
                .unwrap_or_default()
        );
        if let Some(v) = &variant {
            println!("legal variant {}: {}", v.name, v.describe());
        }
        if let Some(p) = &impair {
            println!("impaired links: {} ({})", p.name, p.source);
        }
    }
    let mut reports = Vec::new();
    let width = selected.len().to_string().len();
    // Pre-flight: the rig check's probes, so that a DUT that cannot be reached costs one clear
    // message rather than an ERROR per case.
    let mut stopped = crate::tester::probe::reachable(&mut session.dut)
        .err()
        .map(|e| {
            let why = format!(
                "the DUT '{}' cannot be reached: {e}; `cargo xtask rig check {}` probes each part",
                session.dut.dut.name,
                opts.rig.display()
            );
            eprintln!("certify: {why}");
            why
        });
    let mut errors_in_a_row = 0;
    for (i, case) in selected.iter().enumerate() {
        if stop.load(Ordering::SeqCst) || stopped.is_some() {
            break;
        }
        let r = session.run_case(case, i as u64);
        // NA cases never touch the DUT, so they neither prove it is there nor that it is gone.
        errors_in_a_row = match r.verdict {
            Verdict::Error => errors_in_a_row + 1,
            Verdict::Na => errors_in_a_row,
            _ => 0,
        };
        if errors_in_a_row >= MAX_ERRORS_IN_A_ROW {
            let why = format!(
                "{MAX_ERRORS_IN_A_ROW} cases in a row ended in ERROR (the last: {}): the DUT or the \
                 rig seems gone",
                r.reason.chars().take(120).collect::<String>()
            );
            eprintln!("certify: stopping: {why}");
            stopped = Some(why);
        }
        if opts.progress {
            let extra = match (&r.latency, r.verdict) {
                (Some(l), _) => format!(
                    "  p50 {:.2} ms  p99 {:.2} ms{}",
                    l.p50_us as f64 / 1000.0,
                    l.p99_us as f64 / 1000.0,
                    l.physical_floor_us
                        .map(|f| format!("  (link floor {:.2} ms)", f as f64 / 1000.0))
                        .unwrap_or_default()
                ),
                (None, Verdict::Pass) => String::new(),
                (None, _) => format!("  {}", r.reason.chars().take(160).collect::<String>()),
            };
            println!(
                "[{:>w$}/{}] {:<12} {:<6} {:<6} {:>7.2}s  {}{}",
                i + 1,
                selected.len(),
                r.id,
                r.transport,
                r.verdict.as_str(),
                r.duration_ms as f64 / 1000.0,
                case.title,
                extra,
                w = width
            );
            let _ = std::io::stdout().flush();
        }
        if let Err(e) = results.append(&r) {
            eprintln!("warning: cannot append to results.jsonl: {e}");
        }
        reports.push(r);
    }
    session.dut.stop();

    let root = workspace_root();
    let provenance = Provenance {
        suite_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: report::git_commit(&root),
        fixtures_hash: report::hash_tree(&root.join("fixtures"))
            .unwrap_or_else(|_| "unavailable".into()),
        rig_path: opts.rig.display().to_string(),
        rig_hash: session.rig.hash(),
        pics_hash: session.pics.hash(),
        pics: session.pics.as_map().clone(),
        seed,
        host: report::host_name(),
        started_at,
        finished_at: report::rfc3339_utc(SystemTime::now()),
        dut: session.dut.dut.name.clone(),
        fault: opts.fault.clone(),
        variant: variant
            .as_ref()
            .map(|v| format!("{} ({})", v.name, v.describe())),
        impair: impair.as_ref().map(|p| p.name.clone()),
    };
    let ran: std::collections::HashSet<&str> = reports.iter().map(|r| r.id.as_str()).collect();
    let not_run: Vec<String> = selected
        .iter()
        .map(|c| c.id.to_string())
        .filter(|id| !ran.contains(id.as_str()))
        .collect();
    let plan = Plan {
        planned: selected.len(),
        run: reports.len(),
        interrupted: stop.load(Ordering::SeqCst) && !not_run.is_empty(),
        not_run,
        stopped,
    };
    let run = RunReport::with_plan(provenance, plan, reports);
    let written = run
        .write_all(&opts.report_dir)
        .map_err(|e| UsageError(format!("writing the report: {e}")))?;
    if opts.progress {
        println!();
        print!("{}", report::summary_table(&run));
        if let Some(old) = baseline {
            println!();
            print!("{}", compare_with_baseline(&old, &run).render());
        }
        println!();
        for p in written {
            println!("wrote {}", p.display());
        }
        println!("evidence under {}", opts.report_dir.join("cases").display());
    }
    Ok(run.exit_code())
}
