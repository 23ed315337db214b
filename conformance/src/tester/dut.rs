//! The DUT's lifecycle during a run: launch a virtual DUT (the reference daemon, optionally
//! with a fault) and the helper processes its rig starts before it (`[[dut.launch.before]]`,
//! such as the virtual Zigbee coordinator it bridges), watch them, relaunch them all after a
//! crash of any, and reach the DUT's control channel.
//!
//! Helpers live exactly as long as the DUT launch they belong to: started first, in order,
//! each announcing itself in its first stdout line (whose fields feed the DUT's placeholders);
//! stopped after the DUT; restarted with it, so a relaunched DUT also meets fresh devices.
//!
//! External DUTs are never launched: the harness only connects to what the rig names.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::Arc;

use softbus_harness::link::ble::BleLink;
use softbus_harness::link::udp::UdpLink;
use softbus_harness::link::zigbee::ZigbeeLink;
use softbus_harness::link::{DatagramLink, Transport};
use softbus_harness::rig::{
    helper_placeholders, BleResolved, ControlEndpoint, Dut, DutKind, LaunchVars, ZigbeeResolved,
};

use super::lower::StepError;
use super::upper::Upper;

/// How long a launched process may take to print its first line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A DUT the run talks to.
pub struct DutHandle {
    /// The rig entry, ports allocated.
    pub dut: Dut,
    /// The fault to launch a virtual DUT with.
    pub fault: Option<String>,
    /// Settings laid over a virtual DUT's config (a legal variant, [`crate::variant`]).
    pub overrides: Vec<(String, toml::Value)>,
    softbusd: PathBuf,
    znp_emulator: PathBuf,
    vbluez: PathBuf,
    workdir: PathBuf,
    child: Option<Child>,
    /// The running helpers of the current launch, in start order: (name, process).
    helpers: Vec<(String, Child)>,
    /// Where the DUT's (and its helpers') stderr log goes.
    pub log_path: PathBuf,
    /// The frame address.
    pub udp: SocketAddr,
    control: Option<SocketAddr>,
    serial_control: Option<(PathBuf, u32)>,
    /// How many times the DUT had to be (re)launched.
    pub launches: u32,
    /// `[dut.zigbee]` resolved for the current launch.
    pub zigbee: Option<ZigbeeResolved>,
    /// `[dut.ble]` resolved for the current launch.
    pub ble: Option<BleResolved>,
    /// Open non-IP links, kept across cases of one launch (opening one resets a radio or
    /// scans and connects, which each case should not pay for).
    links: BTreeMap<Transport, Arc<dyn DatagramLink>>,
    /// The rig's `[[dut]]` named by PIXIT `time_partner`, ports not yet allocated: the case
    /// that needs it launches it ([`DutHandle::launch_partner`]) and stops it when done.
    pub partner: Option<Dut>,
    run_dir: PathBuf,
    /// The impairment every lower tester's link gets (`certify --impair`).
    pub impair: Option<softbus_harness::link::impair::Profile>,
}

/// Find `softbusd` next to the running binary, building it if it is missing (`SOFTBUSD`
/// overrides).
pub fn locate_softbusd() -> Result<PathBuf, String> {
    locate_binary("SOFTBUSD", "softbus", "softbusd")
}

/// Find the harness's virtual BlueZ, `vbluez`, the same way (`VBLUEZ` overrides).
pub fn locate_vbluez() -> Result<PathBuf, String> {
    locate_binary("VBLUEZ", "softbus-harness", "vbluez")
}

/// Find the harness's `znp-emulator` the same way (`ZNP_EMULATOR` overrides).
pub fn locate_znp_emulator() -> Result<PathBuf, String> {
    locate_binary("ZNP_EMULATOR", "softbus-harness", "znp-emulator")
}

/// Find workspace binary `bin` of `package` next to the running binary, asking cargo to build
/// it (a no-op when it is fresh); the environment variable `env` overrides.
fn locate_binary(env: &str, package: &str, bin: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/certify or target/<profile>/deps/conformance-<hash>
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let candidate = dir.join(bin);
    let release = dir.file_name().is_some_and(|n| n == "release");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(&manifest);
    if release {
        cmd.arg("--release");
    }
    // Always ask cargo: it is a no-op when the binary is fresh, and rebuilds it when its
    // sources changed since.
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) if candidate.exists() => {
            eprintln!("warning: rebuilding {bin} failed ({s}); using the existing binary")
        }
        Ok(s) => {
            return Err(format!(
                "building {bin} failed ({s}); fix the build or set {env} to a built {bin}"
            ))
        }
        Err(e) if candidate.exists() => {
            eprintln!("warning: cannot run cargo ({e}); using the existing {bin}")
        }
        Err(e) => {
            return Err(format!(
                "cannot run cargo to build {bin}: {e}; set {env} to a built {bin}"
            ))
        }
    }
    Ok(candidate)
}

/// Spawns `argv` with stdin and stdout piped and stderr appended to `log`, and waits up to
/// [`START_TIMEOUT`] for its first stdout line, which it returns. The rest of its stdout is
/// read and discarded, so a chatty process never blocks on a full pipe.
fn spawn_announcing(argv: &[String], log: &Path, what: &str) -> Result<(Child, String), String> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| format!("{what}: empty launch command"))?;
    let log_file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(prog);
    // Its own process group: a Ctrl-C in certify's terminal goes to certify's group only, so
    // the harness's own shutdown never reaches the DUT (and never becomes a DUT verdict);
    // `stop` still ends it, and its stdin closing ends it if certify dies.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .args(args)
        // Stdin stays open while the handle lives: a launcher that dies (even by SIGKILL)
        // closes it, and a process run with --exit-on-stdin-eof then exits too.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .env("SOFTBUS_LOG", "debug")
        .spawn()
        .map_err(|e| format!("cannot launch {what} ({prog}): {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let mut sink = [0u8; 4096];
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) if !line.trim().is_empty() => Ok((child, line)),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            Err(format!("{what} did not start: {tail}"))
        }
    }
}

impl DutHandle {
    /// Prepare a handle; nothing is launched until [`DutHandle::ensure_running`].
    pub fn new(dut: &Dut, fault: Option<String>, run_dir: &Path) -> Result<DutHandle, String> {
        let dut = dut.allocate_ports().map_err(|e| e.to_string())?;
        let udp = dut
            .udp
            .as_ref()
            .ok_or_else(|| {
                format!(
                    "DUT '{}' has no [dut.udp] table: the UDP cases need its address",
                    dut.name
                )
            })?
            .socket_addrs()
            .map_err(|e| format!("DUT '{}' udp address: {e}", dut.name))?
            .into_iter()
            .next()
            .ok_or_else(|| format!("DUT '{}' udp address resolves to nothing", dut.name))?;
        let (control, serial_control) = match dut.control_endpoint().map_err(|e| e.to_string())? {
            ControlEndpoint::Tcp(ep) => (
                ep.socket_addrs().ok().and_then(|a| a.into_iter().next()),
                None,
            ),
            ControlEndpoint::Serial(s) => (None, Some((s.path.clone(), s.baud))),
            _ => (None, None),
        };
        let softbusd = if dut.kind == DutKind::Virtual {
            locate_softbusd()?
        } else {
            PathBuf::new()
        };
        // Only rigs that launch the emulator pay for building it.
        let uses = |tool: &str| {
            dut.launch.as_ref().is_some_and(|l| {
                l.command
                    .iter()
                    .chain(l.before.iter().flat_map(|h| h.command.iter()))
                    .any(|a| a.contains(tool))
            })
        };
        let znp_emulator = if uses("{znp_emulator}") {
            locate_znp_emulator()?
        } else {
            PathBuf::new()
        };
        let vbluez = if uses("{vbluez}") {
            locate_vbluez()?
        } else {
            PathBuf::new()
        };
        // An external DUT's links are what the rig says, with no helpers to fill anything in.
        let (zigbee, ble) = if dut.kind == DutKind::Virtual {
            (None, None)
        } else {
            let vars = LaunchVars::default();
            (
                dut.zigbee_resolved(&vars).map_err(|e| e.to_string())?,
                dut.ble_resolved(&vars).map_err(|e| e.to_string())?,
            )
        };
        let workdir = run_dir.join("dut");
        std::fs::create_dir_all(&workdir).map_err(|e| format!("{}: {e}", workdir.display()))?;
        Ok(DutHandle {
            log_path: run_dir.join("dut.log"),
            dut,
            fault,
            overrides: Vec::new(),
            softbusd,
            znp_emulator,
            vbluez,
            workdir,
            child: None,
            helpers: Vec::new(),
            udp,
            control,
            serial_control,
            launches: 0,
            zigbee,
            ble,
            links: BTreeMap::new(),
            partner: None,
            run_dir: run_dir.to_path_buf(),
            impair: None,
        })
    }

    /// A handle on the time partner (PIXIT `time_partner`), launched if it is virtual, with its
    /// working directory and log under `partner/` of the run directory. `None` when the DUT
    /// has no partner. Dropping the handle stops what it launched.
    pub fn launch_partner(&self) -> Option<Result<DutHandle, String>> {
        let partner = self.partner.as_ref()?;
        let dir = self.run_dir.join("partner");
        Some(DutHandle::new(partner, None, &dir).and_then(|mut h| {
            h.ensure_running()
                .map_err(|e| format!("time partner '{}': {e}", partner.name))?;
            Ok(h)
        }))
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

    /// The name and exit status of a helper of the current launch that has exited.
    pub fn helper_exited(&mut self) -> Option<(String, String)> {
        self.helpers
            .iter_mut()
            .find_map(|(name, child)| match child.try_wait() {
                Ok(Some(status)) => Some((name.clone(), status.to_string())),
                _ => None,
            })
    }

    /// Like [`DutHandle::exited`], but waits up to `grace` for a DUT that is going down: its
    /// sockets close a moment before the process can be reaped.
    pub fn exited_within(&mut self, grace: Duration) -> Option<String> {
        let end = std::time::Instant::now() + grace;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if std::time::Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Launch a virtual DUT, after its helpers, if it is not running: the first time, or
    /// after the DUT or one of its helpers exited (everything is then stopped and started
    /// afresh, with a fresh working directory).
    pub fn ensure_running(&mut self) -> Result<(), String> {
        if !self.is_virtual() {
            return Ok(());
        }
        if self.child.is_some() && self.exited().is_none() && self.helper_exited().is_none() {
            return Ok(());
        }
        self.stop();
        let r = self.launch();
        if r.is_err() {
            self.stop();
        }
        r
    }

    fn launch(&mut self) -> Result<(), String> {
        // A fresh identity and trust store each launch: a crash must not leak state.
        let _ = std::fs::remove_dir_all(&self.workdir);
        std::fs::create_dir_all(&self.workdir).map_err(|e| e.to_string())?;
        let mut vars = LaunchVars {
            softbusd: self.softbusd.clone(),
            znp_emulator: self.znp_emulator.clone(),
            vbluez: self.vbluez.clone(),
            config: self.workdir.join("softbusd.toml"),
            fault: self.fault.clone(),
            workdir: self.workdir.clone(),
            overrides: self.overrides.clone(),
            ..LaunchVars::default()
        };
        self.launches += 1;
        let helpers = self.dut.helpers().to_vec();
        for (i, helper) in helpers.iter().enumerate() {
            let argv = self
                .dut
                .helper_command(i, &vars)
                .map_err(|e| e.to_string())?;
            let what = format!("helper '{}' of DUT '{}'", helper.name, self.dut.name);
            let (child, line) = spawn_announcing(&argv, &self.log_path, &what)?;
            self.helpers.push((helper.name.clone(), child));
            let announced: serde_json::Value = match serde_json::from_str(line.trim()) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                _ => {
                    return Err(format!(
                        "{what} printed {:?} first, not a JSON object announcing what it set up",
                        line.trim()
                    ))
                }
            };
            vars.helpers.insert(
                helper.name.clone(),
                Some(helper_placeholders(&helper.name, &announced)),
            );
        }
        if let Some(cfg) = self.dut.launch_config(&vars).map_err(|e| e.to_string())? {
            std::fs::write(&vars.config, cfg)
                .map_err(|e| format!("{}: {e}", vars.config.display()))?;
        }
        let argv = self.dut.launch_command(&vars).map_err(|e| e.to_string())?;
        let what = format!("DUT '{}'", self.dut.name);
        let (child, _) = spawn_announcing(&argv, &self.log_path, &what)?;
        self.child = Some(child);
        self.zigbee = self.dut.zigbee_resolved(&vars).map_err(|e| e.to_string())?;
        self.ble = self.dut.ble_resolved(&vars).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The link to the DUT over `transport`: a fresh UDP socket bound to `local` each time;
    /// for Zigbee and BLE the link of this launch, opened on first use and kept (drained of
    /// what an earlier case left behind). TCP is not a datagram link.
    pub fn link(
        &mut self,
        transport: Transport,
        local: SocketAddr,
        timeout: Duration,
    ) -> Result<Arc<dyn DatagramLink>, StepError> {
        let io = |e: softbus_harness::link::LinkError| StepError::Io(e.to_string());
        match transport {
            Transport::Udp => Ok(Arc::new(UdpLink::bind(local, self.udp).map_err(io)?)),
            Transport::Tcp => Err(StepError::Io(
                "TCP is a stream link: cases open their own connections".into(),
            )),
            Transport::Zigbee | Transport::Ble => {
                if let Some(l) = self.links.get(&transport) {
                    while l.recv(Duration::ZERO).map_err(io)?.is_some() {}
                    // What an earlier case left is that case's evidence, not this one's.
                    drop(l.take_trace());
                    return Ok(l.clone());
                }
                let link: Arc<dyn DatagramLink> = match transport {
                    Transport::Zigbee => {
                        let z = self.zigbee.as_ref().ok_or_else(|| {
                            StepError::Io(format!(
                                "DUT '{}' has no [dut.zigbee]: the Zigbee cases need the tester's radio and the DUT's address",
                                self.dut.name
                            ))
                        })?;
                        Arc::new(
                            ZigbeeLink::open(&z.radio, z.baud, z.address, timeout).map_err(io)?,
                        )
                    }
                    _ => {
                        let b = self.ble.as_ref().ok_or_else(|| {
                            StepError::Io(format!(
                                "DUT '{}' has no [dut.ble]: the BLE cases need the DUT's address or name",
                                self.dut.name
                            ))
                        })?;
                        open_ble(b, timeout).map_err(io)?
                    }
                };
                self.links.insert(transport, link.clone());
                Ok(link)
            }
        }
    }

    /// The open link over `transport`, if a case opened one during this launch.
    pub fn open_link(&self, transport: Transport) -> Option<Arc<dyn DatagramLink>> {
        self.links.get(&transport).cloned()
    }

    /// Forget a link that failed (the next case opens it afresh).
    pub fn drop_link(&mut self, transport: Transport) {
        self.links.remove(&transport);
    }

    /// Connect to the control channel.
    pub fn upper(&self, timeout: Duration) -> Result<Upper, StepError> {
        if let Some((path, baud)) = &self.serial_control {
            return Upper::serial(path, *baud);
        }
        let addr = self.control.ok_or_else(|| {
            StepError::Unexpected(
                "the DUT has no control channel (cases needing one ask the operator)".into(),
            )
        })?;
        Upper::connect(addr, timeout)
    }

    /// Stop a launched DUT, then its helpers (the last started first).
    pub fn stop(&mut self) {
        self.links.clear();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Helpers get to shut down cleanly first (their stdin closing is the signal: the
        // virtual BlueZ stops its private dbus-daemon then), and are killed if they linger.
        while let Some((_, mut c)) = self.helpers.pop() {
            drop(c.stdin.take());
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while std::time::Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
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

/// Connects to the DUT as a BLE central.
fn open_ble(
    b: &BleResolved,
    timeout: Duration,
) -> Result<Arc<dyn DatagramLink>, softbus_harness::link::LinkError> {
    let target = softbus_harness::rig::BleTarget {
        address: b.address.clone(),
        name: b.name.clone(),
        dbus: b.dbus.clone(),
        adapter: b.adapter.clone(),
    };
    Ok(Arc::new(BleLink::connect(&target, timeout)?))
}
