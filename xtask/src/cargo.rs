//! Running cargo from xtask: the workspace root, the cargo binary, and exit statuses passed on
//! exactly.

use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use anyhow::Context;

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// The build's target directory (`CARGO_TARGET_DIR`, or `target/` in the workspace root).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// A `cargo` command (the one running xtask, if known) in the workspace root.
pub fn cargo() -> Command {
    let bin = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(bin);
    cmd.current_dir(root());
    cmd
}

/// Run `cmd` with inherited stdio and return its exit status.
pub fn status(cmd: &mut Command) -> anyhow::Result<ExitStatus> {
    cmd.status()
        .with_context(|| format!("could not start {:?}", cmd.get_program()))
}

/// The exit code to pass on for `status`: its own code, or 2 when a signal ended it (the
/// command did not reach a verdict, which the kit reports as an error).
pub fn exit_code(status: ExitStatus) -> u8 {
    status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(2)
}

/// Run `cmd` and return the exit code to pass on.
pub fn run(cmd: &mut Command) -> anyhow::Result<u8> {
    Ok(exit_code(status(cmd)?))
}

/// Build the release `certify` binary once (for runs that call it many times, so that an edit
/// during them cannot change the suite halfway); its path, or cargo's exit code on failure.
pub fn build_certify() -> anyhow::Result<Result<std::path::PathBuf, u8>> {
    let code = run(cargo().args([
        "build",
        "--release",
        "-p",
        "softbus-conformance",
        "--bin",
        "certify",
    ]))?;
    if code != 0 {
        return Ok(Err(code));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok(Ok(target.join("release").join("certify")))
}

/// `cargo run --release -p softbus-conformance --bin BIN -- ARGS`, status passed on.
pub fn run_conformance_bin(bin: &str, args: &[String]) -> anyhow::Result<u8> {
    run(&mut conformance_bin(bin, args))
}

/// The command behind [`run_conformance_bin`]. Not `--quiet`: on a fresh clone the build takes
/// minutes, and cargo's own progress is the only sign that something is happening.
fn conformance_bin(bin: &str, args: &[String]) -> Command {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "softbus-conformance",
        "--bin",
        bin,
        "--",
    ])
    .args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certify_shows_the_build_progress() {
        let cmd = conformance_bin("certify", &["--filter".into(), "SB-HS".into()]);
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let (build, run) = args.split_at(args.iter().position(|a| a == "--").unwrap());
        assert!(
            !build.iter().any(|a| a == "--quiet" || a == "-q"),
            "{args:?}"
        );
        assert_eq!(run, ["--", "--filter", "SB-HS"]);
    }

    #[test]
    fn root_is_the_workspace() {
        assert!(root().join("Cargo.toml").is_file());
        assert!(root().join("xtask").is_dir());
    }

    #[cfg(unix)]
    #[test]
    fn exit_codes_pass_through_and_signals_are_errors() {
        use std::os::unix::process::ExitStatusExt;
        for code in [0u8, 1, 2] {
            assert_eq!(exit_code(ExitStatus::from_raw(i32::from(code) << 8)), code);
        }
        // Killed by SIGKILL: no exit code.
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 2);
    }
}
