//! `certify`: run the SoftBus v1 conformance suite against a DUT and write the report.
//! Usually invoked as `cargo xtask certify`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use softbus_conformance::run::{certify, workspace_root, RunOptions};
use softbus_harness::link::Transport;

const AFTER_HELP: &str = "\
Exit status:
  0  every case PASS or NA
  1  at least one case FAIL or INCONC
  2  a case ended in ERROR (the rig or harness broke), or a usage/rig-file error

Without arguments the reference implementation is certified on rigs/virtual.toml, which
launches softbusd on loopback. Each run writes report.json, junit.xml, report.html,
results.jsonl and per-case evidence (capture.pcap, keys.log, harness.log, dut.log).";

/// Certify a SoftBus v1 device against the spec.
#[derive(Parser, Debug)]
#[command(name = "certify", version, about, after_help = AFTER_HELP)]
struct Args {
    /// Rig file describing the DUT(s) and how to reach them.
    #[arg(long, value_name = "FILE")]
    rig: Option<PathBuf>,
    /// DUT to certify, by name (required when the rig has several).
    #[arg(long, value_name = "NAME")]
    dut: Option<String>,
    /// Run only cases whose ID or title contains PATTERN (or whose ID matches a `*` glob).
    #[arg(long, value_name = "PATTERN")]
    filter: Option<String>,
    /// Leave out the cases matching PATTERN (as --filter; comma-separated or repeated:
    /// `--skip 'SB-PAIR-*,SB-DISC-*'`).
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    skip: Vec<String>,
    /// Run only cases that check one of these requirement IDs (comma-separated: `REC-6,TIME-7`),
    /// e.g. to see which cases a change to those requirements touches.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    requirement: Vec<String>,
    /// Run only cases over these links (comma-separated: udp, tcp, zigbee, ble).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_transport)]
    transport: Vec<Transport>,
    /// Directory for the report and evidence [default: reports/<rig>-<UTC time>].
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// A previous report.json: print regressions and progressions against it.
    #[arg(long, value_name = "OLD/report.json")]
    baseline: Option<PathBuf>,
    /// Launch the virtual DUT with this fault (see `softbusd --fault list`).
    #[arg(long, value_name = "NAME")]
    fault: Option<String>,
    /// Launch the virtual DUT with a legal variant of its behaviour: a named one (smallest,
    /// largest, slowest, ...; `--variant list` prints them and every knob with its spec range),
    /// `random` (drawn with the seed), or settings `device.mtu=1024,timing.ack_delay_ms=80`.
    /// Every case must still pass.
    #[arg(long, value_name = "VARIANT")]
    variant: Option<String>,
    /// Impair every link on the tester's side with a named profile (lossy-wifi,
    /// congested-ble, noisy-zigbee): delay, jitter, bursty loss, reordering, duplication, a
    /// rate limit, drawn from the seed. TCP cases open their own streams, unimpaired.
    #[arg(long, value_name = "PROFILE")]
    impair: Option<String>,
    /// Seed for every random choice (logged in the report); random by default.
    #[arg(long)]
    seed: Option<u64>,
    /// No progress lines or summary (the report files are still written).
    #[arg(long, short)]
    quiet: bool,
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    match s.trim() {
        "udp" => Ok(Transport::Udp),
        "tcp" => Ok(Transport::Tcp),
        "zigbee" => Ok(Transport::Zigbee),
        "ble" => Ok(Transport::Ble),
        other => Err(format!(
            "unknown transport {other:?}; one of udp, tcp, zigbee, ble"
        )),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.variant.as_deref() == Some("list") {
        print!("{}", softbus_conformance::variant::catalogue());
        return ExitCode::SUCCESS;
    }
    let root = workspace_root();
    let rig = args.rig.unwrap_or_else(|| root.join("rigs/virtual.toml"));
    let report_dir = args.report_dir.unwrap_or_else(|| {
        let stem = rig
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "rig".into());
        let now =
            softbus_harness::report::rfc3339_utc(std::time::SystemTime::now()).replace(':', "");
        let suffix = args
            .fault
            .as_deref()
            .map(|f| format!("-{f}"))
            .unwrap_or_default();
        root.join("reports").join(format!("{stem}{suffix}-{now}"))
    });
    let opts = RunOptions {
        rig,
        dut: args.dut,
        filter: args.filter,
        report_dir,
        baseline: args.baseline,
        fault: args.fault.filter(|f| f != "none"),
        variant: args.variant,
        impair: args.impair,
        seed: args.seed,
        progress: !args.quiet,
        transports: args.transport,
        requirements: args.requirement,
        skip: args.skip,
    };
    if let Some(f) = &opts.fault {
        if f.parse::<softbus::Fault>().is_err() {
            eprintln!("certify: unknown fault '{f}'; `softbusd --fault list` prints the catalogue");
            return ExitCode::from(2);
        }
    }
    let known: Vec<String> = softbus_conformance::spec::requirements()
        .into_iter()
        .map(|r| r.id)
        .collect();
    if let Some(bad) = opts.requirement_ids_unknown(&known) {
        eprintln!("certify: --requirement {bad} is not a requirement ID of the spec (e.g. REC-6)");
        return ExitCode::from(2);
    }
    match certify(&opts, &softbus_conformance::cases::all()) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("certify: {e}");
            ExitCode::from(2)
        }
    }
}
