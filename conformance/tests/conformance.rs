//! The suite as a libtest-mimic test binary: `cargo test -p softbus-conformance -- --list`
//! lists every case, name filters select cases, and each case runs against the DUT of the rig
//! named by `SOFTBUS_RIG` (default `rigs/virtual.toml`, which launches the reference daemon).
//!
//! A case passes when its verdict is PASS; a case whose PICS expression is false is ignored
//! (NA). Everything else fails with the verdict and its reasons.
//!
//! Under `cargo xtask test` (which sets `SOFTBUS_CONFORMANCE_SMOKE`) only the first case of each
//! family on each link runs and the rest are ignored: `tests/certify_reference.rs` certifies every
//! case in the same run, so here only the libtest-mimic wiring needs proving.
//!
//! The evidence (captures, logs) goes to `SOFTBUS_EVIDENCE` if set, else to a directory under
//! the system's temporary directory that is removed when every case passed and kept (its path
//! printed) when one did not.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Failed, Trial};
use softbus_conformance::run::{workspace_root, Session};
use softbus_harness::pics::Expr;
use softbus_harness::rig::Rig;
use softbus_harness::verdict::Verdict;

fn main() {
    let args = Arguments::from_args();
    let rig_path = std::env::var_os("SOFTBUS_RIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("rigs/virtual.toml"));
    let cases = softbus_conformance::cases::all();
    // PICS decide NA before anything is launched.
    let pics = Rig::load(&rig_path).ok().and_then(|r| {
        r.select_dut(None)
            .ok()
            .and_then(|d| r.require_pics(&d.name).ok())
    });
    let (evidence, keep) = match std::env::var_os("SOFTBUS_EVIDENCE") {
        Some(d) => (PathBuf::from(d), true),
        None => (
            std::env::temp_dir().join(format!("softbus-conformance-{}", std::process::id())),
            false,
        ),
    };
    let session: Arc<Mutex<Option<Result<Session, String>>>> = Arc::new(Mutex::new(None));
    let smoke = std::env::var_os("SOFTBUS_CONFORMANCE_SMOKE").is_some();
    let mut families = std::collections::HashSet::new();
    let trials = cases
        .into_iter()
        .enumerate()
        .map(|(i, case)| {
            let na = match (&pics, Expr::parse(case.pics)) {
                (Some(p), Ok(e)) => !p.satisfies(&e),
                _ => false,
            };
            let family = case.id.split('-').nth(1).unwrap_or("").to_owned();
            let na = na || (smoke && !families.insert((family, case.transport)));
            let session = session.clone();
            let rig_path = rig_path.clone();
            let dir = evidence.clone();
            let name = format!("{} {}", case.id, case.title);
            let kind = case.transport;
            Trial::test(name, move || {
                // One DUT for the whole binary: cases run one at a time against it.
                let mut guard = session.lock().unwrap_or_else(|p| p.into_inner());
                if guard.is_none() {
                    *guard = Some(
                        Session::open(&rig_path, None, None, &dir, 0x5eed)
                            .map_err(|e| e.to_string()),
                    );
                }
                let s = match guard.as_mut() {
                    Some(Ok(s)) => s,
                    Some(Err(e)) => return Err(Failed::from(format!("ERROR: {e}"))),
                    None => return Err(Failed::from("ERROR: no session")),
                };
                let r = s.run_case(&case, i as u64);
                match r.verdict {
                    Verdict::Pass | Verdict::Na => Ok(()),
                    v => Err(Failed::from(format!("{}: {}", v.as_str(), r.reason))),
                }
            })
            .with_kind(kind)
            .with_ignored_flag(na)
        })
        .collect();
    let mut args = args;
    // One DUT: never run two cases against it at once.
    args.test_threads = Some(1);
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop the DUT before exiting: `exit` skips destructors.
    drop(session.lock().unwrap_or_else(|p| p.into_inner()).take());
    if evidence.exists() {
        if keep || conclusion.has_failed() {
            eprintln!("evidence kept in {}", evidence.display());
        } else if let Err(e) = std::fs::remove_dir_all(&evidence) {
            eprintln!("could not remove {}: {e}", evidence.display());
        }
    }
    conclusion.exit();
}
