//! `cargo xtask test [ARGS]`: the README's test command, and exactly what CI runs (`.ci/run`
//! only installs system packages first).
//!
//! Installs missing system prerequisites (see [`crate::setup`]); then, without ARGS, checks
//! formatting (`cargo fmt --all -- --check`), lints (`cargo clippy --workspace --all-targets --
//! -D warnings`), runs `cargo test --workspace`, and certifies the reference over UDP under the
//! legal corners and two random legal variants (`cargo xtask variants --transport udp`, see
//! [`crate::variants`]): a contributor gets CI's answer from one command. With ARGS (`cargo xtask test -p softbus`), it runs only `cargo test ARGS`, for a
//! quick look at one part. The first step that fails ends the run with its exit status.

use std::process::Command;

/// CI's steps, in order: what each checks, and its cargo arguments.
const STEPS: [(&str, &[&str]); 4] = [
    ("formatting", &["fmt", "--all", "--", "--check"]),
    (
        "lints",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ),
    ("tests", &["test", "--workspace"]),
    (
        "legal variants",
        &["xtask", "variants", "--seeds", "2", "--transport", "udp"],
    ),
];

/// Install missing prerequisites, then run CI's steps (or `cargo test ARGS` alone).
pub fn run(args: &[String]) -> anyhow::Result<u8> {
    crate::setup::ensure()?;
    if !args.is_empty() {
        return crate::cargo::run(crate::cargo::cargo().arg("test").args(args));
    }
    ensure_component("rustfmt", &["fmt", "--version"]);
    ensure_component("clippy", &["clippy", "--version"]);
    for (what, cargo_args) in STEPS {
        eprintln!("xtask test: {what}: cargo {}", cargo_args.join(" "));
        let mut cmd = crate::cargo::cargo();
        cmd.args(cargo_args);
        if what == "tests" {
            // The suite's libtest-mimic binary runs one case per family: tests/certify_reference.rs
            // certifies every case in the same step (conformance/tests/conformance.rs).
            cmd.env("SOFTBUS_CONFORMANCE_SMOKE", "1");
        }
        let code = crate::cargo::run(&mut cmd)?;
        if code != 0 {
            eprintln!("xtask test: {what} failed (exit {code})");
            return Ok(code);
        }
    }
    Ok(0)
}

/// Add a rustup component when `cargo CHECK...` says it is missing (a toolchain installed with
/// the minimal profile has neither rustfmt nor clippy).
fn ensure_component(component: &str, check: &[&str]) {
    let present = crate::cargo::cargo()
        .args(check)
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        eprintln!(
            "xtask test: installing the {component} component: rustup component add {component}"
        );
        let _ = Command::new("rustup")
            .args(["component", "add", component])
            .status();
    }
}

#[cfg(test)]
mod tests {
    /// CI and a contributor get the same answer: `.ci/run` runs no cargo command but the
    /// README's test command, and that command runs the lints CI needs.
    #[test]
    fn ci_runs_the_readme_test_command_and_nothing_else() {
        let root = crate::cargo::root();
        let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
        let cargo_lines: Vec<&str> = ci
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("cargo "))
            .collect();
        assert_eq!(
            cargo_lines,
            ["cargo xtask test"],
            ".ci/run runs other cargo commands"
        );
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        assert!(
            readme.contains("```sh\ncargo xtask test\n```"),
            "the README's test command is not `cargo xtask test`"
        );
        let steps: Vec<String> = super::STEPS.iter().map(|(_, a)| a.join(" ")).collect();
        assert_eq!(
            steps,
            [
                "fmt --all -- --check",
                "clippy --workspace --all-targets -- -D warnings",
                "test --workspace",
                "xtask variants --seeds 2 --transport udp"
            ]
        );
    }
}
