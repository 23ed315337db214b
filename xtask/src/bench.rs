//! `cargo xtask bench [ARGS] [--links LINK-ARGS]`: the reference implementation's latency and
//! throughput, every figure next to a baseline measured in the same run, in two parts:
//!
//! 1. **loopback**: `cargo run --release -p softbus --example bench -- ARGS`
//!    (`reference-impl/examples/bench.rs`): encrypted round trip, handshake and bulk throughput
//!    next to raw UDP, and the serial Zigbee coordinator's SYS_PING next to its UART wire time;
//!    it needs no system prerequisites;
//! 2. **links**: `cargo run --release -p softbus-conformance --bin link-bench -- LINK-ARGS`
//!    (`conformance/src/bin/link-bench.rs`): the virtual rig launched once, and per link (UDP,
//!    Zigbee, BLE) SoftBus 64-byte echo round trips through `softbusd` next to a raw echo on
//!    the same link and the link's physical floor. It builds the conformance crate and runs
//!    the virtual BlueZ, so it installs missing prerequisites first, like `certify`.
//!
//! `--no-links` skips part 2, `--links-only` part 1; everything after `--links` goes to
//! link-bench (`cargo xtask bench --links --samples 50`). `--help` shows both option sets.
//! The status is the first non-zero status of the parts run.

/// What `args` ask for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    example: Option<Vec<String>>,
    links: Option<Vec<String>>,
    help: bool,
}

fn plan(args: &[String]) -> Plan {
    let (mine, link_args) = match args.iter().position(|a| a == "--links") {
        Some(i) => (&args[..i], args[i + 1..].to_vec()),
        None => (args, Vec::new()),
    };
    let flag = |f: &str| mine.iter().any(|a| a == f);
    let example: Vec<String> = mine
        .iter()
        .filter(|a| *a != "--no-links" && *a != "--links-only")
        .cloned()
        .collect();
    let help = example.iter().any(|a| a == "--help" || a == "-h")
        || link_args.iter().any(|a| a == "--help" || a == "-h");
    Plan {
        example: (!flag("--links-only")).then_some(example),
        links: (!flag("--no-links")).then_some(link_args),
        help,
    }
}

/// Run the loopback bench example, then link-bench, as `args` say.
pub fn run(args: &[String]) -> anyhow::Result<u8> {
    let plan = plan(args);
    if plan.help {
        println!("cargo xtask bench [ARGS] [--no-links | --links-only] [--links LINK-ARGS]\n\nARGS go to the loopback bench (reference-impl/examples/bench.rs), LINK-ARGS to\nlink-bench (conformance/src/bin/link-bench.rs):\n");
    }
    let help = vec!["--help".to_string()];
    if let Some(example_args) = &plan.example {
        let status = loopback(if plan.help { &help } else { example_args }, plan.help)?;
        if status != 0 {
            return Ok(status);
        }
    }
    if let Some(link_args) = &plan.links {
        return links(if plan.help { &help } else { link_args });
    }
    Ok(0)
}

/// Part 1: the reference over loopback UDP and the emulated coordinator's serial line.
fn loopback(args: &[String], help: bool) -> anyhow::Result<u8> {
    // The virtual Zigbee coordinator, so the serial link is measured too.
    let status = crate::cargo::run(crate::cargo::cargo().args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "softbus-harness",
        "--bin",
        "znp-emulator",
    ]))?;
    if status != 0 {
        return Ok(status);
    }
    let emulator = crate::cargo::target_dir()
        .join("release")
        .join("znp-emulator");
    let mut cmd = crate::cargo::cargo();
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "softbus",
        "--example",
        "bench",
        "--",
    ]);
    if !help {
        cmd.arg("--znp-emulator").arg(&emulator);
    }
    crate::cargo::run(cmd.args(args))
}

/// Part 2: SoftBus over each link of the virtual rig. The rig's binaries are built in release
/// first, in one cargo run: link-bench finds them next to itself.
fn links(args: &[String]) -> anyhow::Result<u8> {
    crate::setup::ensure()?;
    let status = crate::cargo::run(crate::cargo::cargo().args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "softbus",
        "-p",
        "softbus-harness",
        "-p",
        "softbus-conformance",
        "--bin",
        "softbusd",
        "--bin",
        "znp-emulator",
        "--bin",
        "vbluez",
        "--bin",
        "link-bench",
    ]))?;
    if status != 0 {
        return Ok(status);
    }
    crate::cargo::run_conformance_bin("link-bench", args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn no_arguments_run_both_parts_with_their_defaults() {
        assert_eq!(
            plan(&[]),
            Plan {
                example: Some(vec![]),
                links: Some(vec![]),
                help: false
            }
        );
    }

    #[test]
    fn arguments_after_links_go_to_link_bench() {
        let p = plan(&args("--samples 5000 --links --samples 50"));
        assert_eq!(p.example, Some(args("--samples 5000")));
        assert_eq!(p.links, Some(args("--samples 50")));
    }

    #[test]
    fn either_part_can_be_skipped() {
        assert_eq!(plan(&args("--no-links")).links, None);
        let p = plan(&args("--links-only --links --links zigbee"));
        assert_eq!(p.example, None);
        assert_eq!(p.links, Some(args("--links zigbee")));
    }

    #[test]
    fn help_anywhere_shows_both() {
        assert!(plan(&args("--help")).help);
        assert!(plan(&args("--links -h")).help);
    }
}
