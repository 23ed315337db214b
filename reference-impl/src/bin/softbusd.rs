//! `softbusd`: one SoftBus device from a configuration file.
//!
//! ```text
//! softbusd --config device.toml            # run
//! softbusd --config device.toml --fault accept-replay
//! softbusd --fault list                    # the fault catalogue: NAME<TAB>IDS<TAB>description
//! ```
//! On start it prints one JSON line with the device ID and the addresses it bound (ports given
//! as 0 in the file are chosen by the OS), so launchers can find it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use softbus::config::DaemonConfig;
use softbus::Fault;

/// Run a SoftBus v1 device (the reference implementation).
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Configuration file (TOML). See the `softbus::config` docs or README for the keys.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Run with one named defect (suite self-test). `--fault list` prints the catalogue;
    /// `--fault none` runs without a fault.
    #[arg(long)]
    fault: Option<String>,
    /// Exit when standard input reaches end of file: a launcher that dies takes the daemon
    /// with it (the conformance harness uses this for virtual DUTs).
    #[arg(long)]
    exit_on_stdin_eof: bool,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `softbus=debug`.
    #[arg(long, default_value = "info", env = "SOFTBUS_LOG")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let faults = match args.fault.as_deref() {
        Some("list") => {
            print!("{}", softbus::fault::catalogue());
            return ExitCode::SUCCESS;
        }
        None | Some("none") | Some("") => Vec::new(),
        Some(name) => match name.parse::<Fault>() {
            Ok(f) => vec![f],
            Err(e) => {
                eprintln!("softbusd: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let Some(config_path) = args.config else {
        eprintln!("softbusd: --config FILE is required (or --fault list)");
        return ExitCode::from(2);
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = match DaemonConfig::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("softbusd: {e}");
            return ExitCode::from(2);
        }
    };
    if !faults.is_empty() {
        tracing::warn!(fault = %faults[0], "running with an injected fault (suite self-test)");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("softbusd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exit_on_eof = args.exit_on_stdin_eof;
    let shutdown = async move {
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
        if exit_on_eof {
            std::thread::spawn(move || {
                let mut sink = [0u8; 256];
                while matches!(std::io::Read::read(&mut std::io::stdin(), &mut sink), Ok(n) if n > 0)
                {
                }
                let _ = eof_tx.send(());
            });
        } else {
            std::mem::forget(eof_tx);
        }
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = eof_rx => tracing::info!("standard input closed: exiting"),
        }
    };
    match rt.block_on(softbus::daemon::run(cfg, faults, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("softbusd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
