//! `cargo xtask`: the kit's commands for developers, vendors and CI (rust-analyzer style: a
//! plain binary in the workspace, aliased in `.cargo/config.toml`, one module per subcommand).
//!
//! | command | what it does |
//! |---|---|
//! | `cargo xtask test [ARGS]` | install missing prerequisites, then `cargo test --workspace ARGS` (CI runs this) |
//! | `cargo xtask certify [ARGS]` | certify a device (`--rig rigs/<rig>.toml`; the reference on the virtual rig by default) |
//! | `cargo xtask repeat N [ARGS]` | certify N times with seeds 1..=N and list every case whose verdict changed (flakes) |
//! | `cargo xtask variants [--seeds N]` | certify the reference under the legal corners and N random legal variants; every case must pass (CI's last step) |
//! | `cargo xtask fixtures [--accept]` | regenerate golden fixtures and snapshots, show what changed, accept it |
//! | `cargo xtask spec-coverage [ARGS]` | which spec requirements have cases |
//! | `cargo xtask rig [ARGS]` | check and inspect rig files |
//! | `cargo xtask fuzz list\|run T\|cmin T` | fuzz a decoder with libFuzzer (nightly), keep the corpus that `cargo xtask test` replays |
//! | `cargo xtask bench [ARGS]` | latency and throughput of the reference over loopback UDP, the serial Zigbee line, and SoftBus over UDP, Zigbee and BLE on the virtual rig, each next to a baseline and the physical floor |
//!
//! Exit status: the forwarded command's status (0 pass, 1 fail, 2 error or usage); xtask's own
//! failures (a missing prerequisite, cargo not found) exit 2.

mod bench;
mod cargo;
mod certify;
mod fixtures;
mod fuzz;
mod repeat;
mod rig;
mod setup;
mod spec_coverage;
mod test;
mod variants;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer, vendor and CI commands of the SoftBus conformance kit.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Arguments forwarded untouched, `--help` and flags included.
#[derive(Debug, clap::Args)]
struct Forwarded {
    /// Arguments for the underlying command.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install missing system prerequisites, then run `cargo test --workspace` with ARGS.
    #[command(disable_help_flag = true)]
    Test(Forwarded),
    /// Certify a device against the spec (forwards ARGS to the `certify` binary; `--help` for its options).
    #[command(disable_help_flag = true)]
    Certify(Forwarded),
    /// Certify N times with seeds 1..=N and list every case whose verdict changed (forwards
    /// the other ARGS to `certify`).
    #[command(disable_help_flag = true)]
    Repeat(Forwarded),
    /// Certify the reference under legal variants of its behaviour (the corners and random
    /// seeds): every case must pass under every one.
    Variants(variants::Options),
    /// Regenerate the golden fixtures and snapshots and show what changed.
    Fixtures(fixtures::Options),
    /// Report which spec requirements have test cases (forwards ARGS to `spec-coverage`).
    #[command(disable_help_flag = true)]
    SpecCoverage(Forwarded),
    /// Check and inspect rig files (forwards ARGS to the `rig` binary).
    #[command(disable_help_flag = true)]
    Rig(Forwarded),
    /// Measure the reference next to baselines: loopback UDP, the serial line, and SoftBus over
    /// UDP, Zigbee and BLE on the virtual rig (forwards ARGS; `--help` lists them).
    #[command(disable_help_flag = true)]
    Bench(Forwarded),
    /// Fuzz the decoders with libFuzzer (nightly, cargo-fuzz) and keep the replayed corpus.
    Fuzz(fuzz::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(f) => test::run(&f.args),
        Command::Certify(f) => certify::run(&f.args),
        Command::Variants(o) => variants::run(&o),
        Command::Repeat(f) => repeat::run(&f.args),
        Command::Fixtures(o) => fixtures::run(&o),
        Command::SpecCoverage(f) => spec_coverage::run(&f.args),
        Command::Rig(f) => rig::run(&f.args),
        Command::Bench(f) => bench::run(&f.args),
        Command::Fuzz(o) => fuzz::run(&o),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied()))
            .expect("parses")
            .command
    }

    #[test]
    fn forwarded_commands_pass_flags_and_help_through() {
        match parse(&["certify", "--help"]) {
            Command::Certify(f) => assert_eq!(f.args, ["--help"]),
            other => panic!("parsed as {other:?}"),
        }
        match parse(&[
            "certify",
            "--rig",
            "rigs/virtual.toml",
            "--fault",
            "accept-replay",
        ]) {
            Command::Certify(f) => {
                assert_eq!(
                    f.args,
                    ["--rig", "rigs/virtual.toml", "--fault", "accept-replay"]
                );
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["spec-coverage", "--json"]) {
            Command::SpecCoverage(f) => assert_eq!(f.args, ["--json"]),
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["test", "-p", "softbus", "--", "--nocapture"]) {
            Command::Test(f) => assert_eq!(f.args, ["-p", "softbus", "--", "--nocapture"]),
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["rig"]) {
            Command::Rig(f) => assert!(f.args.is_empty()),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn fixtures_takes_accept() {
        match parse(&["fixtures", "--accept"]) {
            Command::Fixtures(o) => assert!(o.accept),
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["fixtures"]) {
            Command::Fixtures(o) => assert!(!o.accept),
            other => panic!("parsed as {other:?}"),
        }
    }
}
