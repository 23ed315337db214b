//! `znp-emulator`: a virtual Z-Stack 3.30 coordinator (CC2652) on a PTY, with an on/off light
//! and a temperature sensor behind it, and optionally router sticks (`--node NAME`) on the same
//! network, each on its own PTY. See [`softbus_harness::znp::emulator`].
//!
//! It prints one JSON line on stdout, `{"pty": "/dev/pts/N", "baud": B, "ieee": ..., "network":
//! {...}, "devices": [...], "nodes": {"NAME": {"pty": ..., "nwk": N, "ieee": ...}},
//! "node_NAME_pty": ..., "node_NAME_nwk": N, "node_NAME_ieee": ...}`, then serves the MT
//! protocol on those PTYs until it is killed, or, with `--exit-on-stdin-eof`, until its standard
//! input closes (so it never outlives a parent that holds its stdin).
//!
//! ```text
//! znp-emulator [--baud N] [--node NAME]... [--trace] [--exit-on-stdin-eof]
//! ```

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use softbus_harness::znp::emulator::{Emulator, EmulatorConfig};

const USAGE: &str =
    "usage: znp-emulator [--baud N] [--node NAME]... [--trace] [--exit-on-stdin-eof]
  --baud N             line speed to pace output at on every PTY, bits/s (default 115200;
                       0 = unpaced)
  --node NAME          add a router stick (Z-Stack 3.30 router, already joined) on its own
                       PTY; repeatable. NAME: 1 to 32 ASCII letters, digits or '_'. Its PTY and
                       addresses are announced as \"nodes\": {NAME: {...}} and as
                       \"node_NAME_pty\", \"node_NAME_nwk\", \"node_NAME_ieee\"
  --trace              log every MT frame in and out to stderr
  --exit-on-stdin-eof  exit when standard input closes";

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("znp-emulator: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut config = EmulatorConfig::default();
    let mut exit_on_eof = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--baud" => {
                let v = args.next().context("--baud needs a value")?;
                config.baud = v
                    .parse()
                    .with_context(|| format!("--baud {v:?} is not a number of bits/s"))?;
            }
            "--node" => {
                let name = args.next().context("--node needs a name")?;
                config.nodes.push(name);
            }
            "--trace" => config.trace = true,
            "--exit-on-stdin-eof" => exit_on_eof = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let mut emulator = Emulator::new(config)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", emulator.announcement())?;
    out.flush()?;
    drop(out);

    let stop = Arc::new(AtomicBool::new(false));
    if exit_on_eof {
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            flag.store(true, Ordering::Relaxed);
        });
    }
    emulator.run(&stop)?;
    Ok(())
}
