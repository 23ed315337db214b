//! The DUT's lifecycle during a run: launch a virtual DUT (the reference daemon, optionally
//! with a fault), watch it, relaunch it after a crash, and reach its control channel.
//!
//! External DUTs are never launched: the harness only connects to what the rig names.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use softbus_harness::rig::{ControlEndpoint, Dut, DutKind, LaunchVars};

use super::lower::StepError;
use super::upper::Upper;

/// A DUT the run talks to.
pub struct DutHandle {
    /// The rig entry, ports allocated.
    pub dut: Dut,
    /// The fault to launch a virtual DUT with.
    pub fault: Option<String>,
    softbusd: PathBuf,
    workdir: PathBuf,
    child: Option<Child>,
    /// Where the DUT's stderr log goes.
    pub log_path: PathBuf,
    /// The frame address.
    pub udp: SocketAddr,
    control: Option<SocketAddr>,
    serial_control: Option<(PathBuf, u32)>,
    /// How many times the DUT had to be (re)launched.
    pub launches: u32,
}

/// Find `softbusd` next to the running binary, building it if it is missing.
pub fn locate_softbusd() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SOFTBUSD") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/certify or target/<profile>/deps/conformance-<hash>
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let candidate = dir.join("softbusd");
    let release = dir.file_name().is_some_and(|n| n == "release");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--quiet", "-p", "softbus", "--bin", "softbusd"]).current_dir(&manifest);
    if release {
        cmd.arg("--release");
    }
    // Always ask cargo: it is a no-op when softbusd is fresh, and rebuilds it when the
    // reference changed since.
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) if candidate.exists() => eprintln!("warning: rebuilding softbusd failed ({s}); using the existing binary"),
        Ok(s) => return Err(format!("building softbusd failed ({s})")),
        Err(e) if candidate.exists() => eprintln!("warning: cannot run cargo ({e}); using the existing softbusd"),
        Err(e) => return Err(format!("cannot run cargo to build softbusd: {e}")),
    }
    Ok(candidate)
}

impl DutHandle {
    /// Prepare a handle; nothing is launched until [`DutHandle::ensure_running`].
    pub fn new(dut: &Dut, fault: Option<String>, run_dir: &Path) -> Result<DutHandle, String> {
        let dut = dut.allocate_ports().map_err(|e| e.to_string())?;
        let udp = dut
            .udp
            .as_ref()
            .ok_or_else(|| format!("DUT '{}' has no [dut.udp] table: the UDP cases need its address", dut.name))?
            .socket_addrs()
            .map_err(|e| format!("DUT '{}' udp address: {e}", dut.name))?
            .into_iter()
            .next()
            .ok_or_else(|| format!("DUT '{}' udp address resolves to nothing", dut.name))?;
        let (control, serial_control) = match dut.control_endpoint().map_err(|e| e.to_string())? {
            ControlEndpoint::Tcp(ep) => (ep.socket_addrs().ok().and_then(|a| a.into_iter().next()), None),
            ControlEndpoint::Serial(s) => (None, Some((s.path.clone(), s.baud))),
            _ => (None, None),
        };
        let softbusd = if dut.kind == DutKind::Virtual {
            locate_softbusd()?
        } else {
            PathBuf::new()
        };
        let workdir = run_dir.join("dut");
        std::fs::create_dir_all(&workdir).map_err(|e| format!("{}: {e}", workdir.display()))?;
        Ok(DutHandle {
            log_path: run_dir.join("dut.log"),
            dut,
            fault,
            softbusd,
            workdir,
            child: None,
            udp,
            control,
            serial_control,
            launches: 0,
        })
    }

    /// Whether the harness launches this DUT.
    pub fn is_virtual(&self) -> bool {
        self.dut.kind == DutKind::Virtual
    }

    /// Whether the DUT has a control channel the harness can use.
    pub fn has_control(&self) -> bool {
        self.control.is_some() || self.serial_control.is_some()
    }

    /// `Some(status)` when a launched DUT has exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Launch a virtual DUT if it is not running (first time, or after a crash).
    pub fn ensure_running(&mut self) -> Result<(), String> {
        if !self.is_virtual() {
            return Ok(());
        }
        if self.child.is_some() && self.exited().is_none() {
            return Ok(());
        }
        self.child = None;
        // A fresh identity and trust store each launch: a crash must not leak state.
        let _ = std::fs::remove_dir_all(&self.workdir);
        std::fs::create_dir_all(&self.workdir).map_err(|e| e.to_string())?;
        let vars = LaunchVars {
            softbusd: self.softbusd.clone(),
            config: self.workdir.join("softbusd.toml"),
            fault: self.fault.clone(),
            workdir: self.workdir.clone(),
        };
        if let Some(cfg) = self.dut.launch_config(&vars).map_err(|e| e.to_string())? {
            std::fs::write(&vars.config, cfg).map_err(|e| format!("{}: {e}", vars.config.display()))?;
        }
        let argv = self.dut.launch_command(&vars).map_err(|e| e.to_string())?;
        let (prog, args) = argv.split_first().ok_or("empty launch command")?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("{}: {e}", self.log_path.display()))?;
        let mut child = Command::new(prog)
            .args(args)
            // The DUT's stdin stays open while the handle lives: a launcher that dies (even by
            // SIGKILL) closes it, and softbusd --exit-on-stdin-eof then exits too.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .env("SOFTBUS_LOG", "debug")
            .spawn()
            .map_err(|e| format!("cannot launch DUT '{}' ({prog}): {e}", self.dut.name))?;
        // The first stdout line says the DUT is up.
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        self.launches += 1;
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if !line.trim().is_empty() => {
                self.child = Some(child);
                Ok(())
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = std::fs::read_to_string(&self.log_path).unwrap_or_default();
                let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                Err(format!("DUT '{}' did not start: {tail}", self.dut.name))
            }
        }
    }

    /// Connect to the control channel.
    pub fn upper(&self, timeout: Duration) -> Result<Upper, StepError> {
        if let Some((path, baud)) = &self.serial_control {
            return Upper::serial(path, *baud);
        }
        let addr = self
            .control
            .ok_or_else(|| StepError::Unexpected("the DUT has no control channel (cases needing one ask the operator)".into()))?;
        Upper::connect(addr, timeout)
    }

    /// Stop a launched DUT.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for DutHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
