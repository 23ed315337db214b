//! `cargo xtask fuzz`: the coverage-guided fuzzing of the decoders (cargo-fuzz, libFuzzer) and
//! the upkeep of the committed corpus that `cargo xtask test` replays.
//!
//! | command | what it does |
//! |---|---|
//! | `cargo xtask fuzz list` | the targets, their committed corpus (`fixtures/fuzz/T`) and local corpus (`fuzz/corpus/T`) |
//! | `cargo xtask fuzz run T [--time S] [-- ARGS]` | fuzz target T (all targets in turn with `all`) for S seconds each (default 60); new inputs go to `fuzz/corpus/T`, crashes to `fuzz/artifacts/T` |
//! | `cargo xtask fuzz cmin T` | merge `fuzz/corpus/T` into `fixtures/fuzz/T` and minimise it (the inputs that reach new coverage), for committing |
//!
//! Needs a nightly toolchain (libFuzzer's instrumentation) and cargo-fuzz; cargo-fuzz is
//! installed with `cargo install cargo-fuzz` when missing, a missing nightly is an error that
//! names the command to run. The targets themselves are plain functions in `fuzz/src/lib.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// `cargo xtask fuzz` options.
#[derive(Debug, clap::Args)]
pub struct Options {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List the targets and the size of their corpora.
    List,
    /// Fuzz one target (or `all`, each in turn) with libFuzzer.
    Run {
        /// A target name from `list`, or `all`.
        target: String,
        /// Seconds to fuzz each target.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Further libFuzzer arguments (`-- -jobs=2 -max_len=512`).
        #[arg(last = true)]
        libfuzzer: Vec<String>,
    },
    /// Merge the local corpus into the committed one and minimise it.
    Cmin {
        /// A target name from `list`, or `all`.
        target: String,
    },
}

/// Run the action; the exit code of the last cargo-fuzz run, or 0.
pub fn run(o: &Options) -> anyhow::Result<u8> {
    let root = crate::cargo::root();
    let targets = targets(&root)?;
    match &o.action {
        Action::List => {
            println!("{:<10} {:>10} {:>10}", "target", "committed", "local");
            for t in &targets {
                println!(
                    "{t:<10} {:>10} {:>10}",
                    count(&committed(&root, t)),
                    count(&local(&root, t))
                );
            }
            Ok(0)
        }
        Action::Run {
            target,
            time,
            libfuzzer,
        } => {
            ensure_tools()?;
            for t in pick(&targets, target)? {
                let corpus = local(&root, t);
                std::fs::create_dir_all(&corpus)
                    .with_context(|| format!("creating {}", corpus.display()))?;
                eprintln!("xtask fuzz: {t} for {time} s (seed corpus fixtures/fuzz/{t})");
                let mut cmd = cargo_fuzz(&root, "run", t);
                cmd.arg(&corpus)
                    .arg(committed(&root, t))
                    .arg("--")
                    .arg(format!("-max_total_time={time}"))
                    .args(libfuzzer);
                let code = crate::cargo::run(&mut cmd)?;
                if code != 0 {
                    eprintln!(
                        "xtask fuzz: {t} failed (exit {code}); the input is in fuzz/artifacts/{t}/"
                    );
                    return Ok(code);
                }
            }
            Ok(0)
        }
        Action::Cmin { target } => {
            ensure_tools()?;
            for t in pick(&targets, target)? {
                let dest = committed(&root, t);
                std::fs::create_dir_all(&dest)?;
                let before = count(&dest);
                if let Ok(entries) = std::fs::read_dir(local(&root, t)) {
                    for e in entries.flatten() {
                        let to = dest.join(e.file_name());
                        if !to.exists() {
                            std::fs::copy(e.path(), &to)
                                .with_context(|| format!("copying {}", e.path().display()))?;
                        }
                    }
                }
                let code = crate::cargo::run(cargo_fuzz(&root, "cmin", t).arg(&dest))?;
                if code != 0 {
                    return Ok(code);
                }
                eprintln!(
                    "xtask fuzz: fixtures/fuzz/{t}: {before} inputs before, {} after",
                    count(&dest)
                );
            }
            Ok(0)
        }
    }
}

/// The targets: the binaries in `fuzz/fuzz_targets/`, sorted.
fn targets(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rs"))
                .map(String::from)
        })
        .collect();
    names.sort();
    Ok(names)
}

fn pick<'a>(targets: &'a [String], name: &str) -> anyhow::Result<Vec<&'a String>> {
    if name == "all" {
        return Ok(targets.iter().collect());
    }
    match targets.iter().find(|t| *t == name) {
        Some(t) => Ok(vec![t]),
        None => bail!(
            "no fuzz target `{name}`; the targets are: {} (or `all`)",
            targets.join(", ")
        ),
    }
}

fn committed(root: &Path, target: &str) -> PathBuf {
    root.join("fixtures/fuzz").join(target)
}

fn local(root: &Path, target: &str) -> PathBuf {
    root.join("fuzz/corpus").join(target)
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().count())
}

/// `cargo +nightly fuzz ACTION --fuzz-dir fuzz --features libfuzzer TARGET`, in the root.
/// Through the rustup proxy (`cargo`, not `$CARGO`), which is what resolves `+nightly`.
fn cargo_fuzz(root: &Path, action: &str, target: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["+nightly", "fuzz", action, "--fuzz-dir", "fuzz"])
        .args(["--features", "libfuzzer", target]);
    cmd
}

/// A nightly toolchain must be there (an error naming the command otherwise); cargo-fuzz is
/// installed when missing.
fn ensure_tools() -> anyhow::Result<()> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        bail!(
            "libFuzzer needs a nightly toolchain; install it with: rustup toolchain install nightly"
        );
    }
    let have_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_fuzz {
        eprintln!("xtask fuzz: installing cargo-fuzz: cargo install cargo-fuzz");
        let code = crate::cargo::run(Command::new("cargo").args(["install", "cargo-fuzz"]))?;
        if code != 0 {
            bail!("`cargo install cargo-fuzz` failed (exit {code})");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_targets_are_the_fuzz_binaries_and_all_picks_every_one() {
        let root = crate::cargo::root();
        let t = targets(&root).unwrap();
        for name in ["frame", "message", "coap", "endpoint"] {
            assert!(t.iter().any(|x| x == name), "{name} missing from {t:?}");
        }
        assert_eq!(pick(&t, "all").unwrap().len(), t.len());
        let err = pick(&t, "frames").unwrap_err().to_string();
        assert!(
            err.contains("no fuzz target `frames`") && err.contains("frame,"),
            "{err}"
        );
    }

    #[test]
    fn cargo_fuzz_uses_nightly_the_fuzz_dir_and_the_libfuzzer_feature() {
        let cmd = cargo_fuzz(Path::new("/r"), "run", "frame");
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "+nightly",
                "fuzz",
                "run",
                "--fuzz-dir",
                "fuzz",
                "--features",
                "libfuzzer",
                "frame"
            ]
        );
    }
}
