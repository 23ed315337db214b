//! `vbluez`: a virtual BlueZ (`org.bluez` on a private D-Bus) with a modelled BLE air, which
//! virtual peripherals reach over a Unix socket. See [`softbus_harness::ble::vbluez`].
//!
//! It prints one JSON line on stdout, `{"dbus": "unix:path=...", "radio": "/path/radio.sock",
//! "adapter": "hci0", "address": ..., "mtu": 247, "interval_ms": 7.5, "pdus_per_event": 4,
//! "loss": 0.0, "seed": 1, "supervision_timeout_ms": 420}`, then serves until it is killed
//! (SIGTERM/SIGINT stop it cleanly, with its dbus-daemon), or, with `--exit-on-stdin-eof`,
//! until its standard input closes.
//!
//! ```text
//! vbluez [--bus ADDRESS | --bus-socket PATH] [--radio PATH] [--adapter hciN] [--address AA:BB:..] [--mtu N]
//!        [--interval-ms F] [--pdus-per-event N] [--loss P] [--seed N]
//!        [--supervision-timeout-ms N] [--trace] [--exit-on-stdin-eof]
//! ```

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use softbus_harness::ble::vbluez::{Config, Vbluez};
use tokio::io::AsyncReadExt;

const USAGE: &str = "usage: vbluez [options]
  --bus ADDRESS               serve on this D-Bus instead of starting a private dbus-daemon
  --bus-socket PATH           socket of the private dbus-daemon (default: in a temporary
                              directory); a fixed path keeps the announced dbus address across restarts
  --radio PATH                radio socket path (default: in a temporary directory)
  --adapter NAME              adapter name (default hci0)
  --address AA:BB:CC:DD:EE:FF adapter address (default 00:1A:7D:DA:71:01)
  --mtu N                     ATT MTU after the exchange, 23..=517 (default 247)
  --interval-ms F             connection interval in ms (default 7.5)
  --pdus-per-event N          PDUs per connection event and direction (default 4)
  --loss P                    per-transmission loss probability, 0 <= P < 1 (default 0)
  --seed N                    seed of the loss draws (default 1)
  --supervision-timeout-ms N  supervision timeout (default 420)
  --trace                     log radio traffic to stderr
  --exit-on-stdin-eof         exit when standard input closes";

fn main() {
    if let Err(e) = run() {
        eprintln!("vbluez: {e:#}");
        std::process::exit(2);
    }
}

fn value<T: std::str::FromStr>(
    args: &mut impl Iterator<Item = String>,
    flag: &str,
) -> anyhow::Result<T> {
    let v = args
        .next()
        .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
    v.parse()
        .map_err(|_| anyhow::anyhow!("{flag} {v:?} is not a valid value\n{USAGE}"))
}

fn run() -> anyhow::Result<()> {
    let mut config = Config::default();
    let mut exit_on_eof = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bus" => config.bus = Some(value(&mut args, "--bus")?),
            "--bus-socket" => {
                config.bus_socket = Some(value::<String>(&mut args, "--bus-socket")?.into())
            }
            "--radio" => config.radio = Some(value::<String>(&mut args, "--radio")?.into()),
            "--adapter" => config.adapter = value(&mut args, "--adapter")?,
            "--address" => config.address = value(&mut args, "--address")?,
            "--mtu" => {
                let mtu: u16 = value(&mut args, "--mtu")?;
                if !(23..=517).contains(&mtu) {
                    bail!("--mtu {mtu} is outside 23..=517 (the ATT MTU range)");
                }
                config.mtu = mtu;
            }
            "--interval-ms" => {
                let ms: f64 = value(&mut args, "--interval-ms")?;
                if !(ms > 0.0 && ms <= 4000.0) {
                    bail!("--interval-ms {ms} is outside (0, 4000]");
                }
                config.air.interval = Duration::from_secs_f64(ms / 1000.0);
            }
            "--pdus-per-event" => {
                let n: usize = value(&mut args, "--pdus-per-event")?;
                if n == 0 {
                    bail!("--pdus-per-event must be at least 1");
                }
                config.air.pdus_per_event = n;
            }
            "--loss" => {
                let p: f64 = value(&mut args, "--loss")?;
                if !(0.0..1.0).contains(&p) {
                    bail!("--loss {p} is outside [0, 1)");
                }
                config.air.loss = p;
            }
            "--seed" => config.seed = value(&mut args, "--seed")?,
            "--supervision-timeout-ms" => {
                let ms: u64 = value(&mut args, "--supervision-timeout-ms")?;
                config.air.supervision_timeout = Duration::from_millis(ms);
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        let vbluez = Vbluez::start(config).await?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", vbluez.announcement())?;
            out.flush()?;
        }
        let stdin_eof = async {
            if exit_on_eof {
                let mut stdin = tokio::io::stdin();
                let mut sink = [0u8; 64];
                while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
            } else {
                std::future::pending::<()>().await;
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        tokio::select! {
            _ = stdin_eof => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        vbluez.shutdown().await;
        anyhow::Ok(())
    })?;
    // The runtime's remaining tasks are dropped here; the private bus was stopped with vbluez.
    rt.shutdown_timeout(Duration::from_millis(200));
    Ok(())
}
