//! Support for the end-to-end tests in `tests/tests/`: build and launch `softbusd` processes and
//! talk to them over the tester control protocol.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of a workspace binary, built (once per test process) if needed.
pub fn binary(package: &str, name: &str) -> anyhow::Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", package, "--bin", name])
        .current_dir(workspace_root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p {package} --bin {name} failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    Ok(target.join("debug").join(name))
}

/// A running `softbusd` with the addresses it bound.
pub struct Daemon {
    child: Child,
    /// The first line it printed: `{device_id, udp, tcp, coap, control}`.
    pub bound: Value,
    /// Its working directory (config, key, trust store).
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Write `config` (TOML) into a fresh directory and start `softbusd` on it.
    pub fn spawn(config: &str, fault: Option<&str>) -> anyhow::Result<Daemon> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("softbusd.toml");
        std::fs::write(&cfg, config)?;
        let mut cmd = Command::new(binary("softbus", "softbusd")?);
        cmd.arg("--config")
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(f) = fault {
            cmd.arg("--fault").arg(f);
        }
        let mut child = cmd.spawn().context("spawning softbusd")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let bound: Value = serde_json::from_str(&line)
            .with_context(|| format!("softbusd start line: {line:?}"))?;
        Ok(Daemon { child, bound, dir })
    }

    /// An address it bound (`udp`, `control`, ...).
    pub fn addr(&self, key: &str) -> anyhow::Result<SocketAddr> {
        self.bound[key]
            .as_str()
            .with_context(|| format!("softbusd did not report {key}"))?
            .parse()
            .context("bad address")
    }

    /// Connect a control client.
    pub fn control(&self) -> anyhow::Result<Control> {
        Control::connect(self.addr("control")?)
    }

    /// Kill it now, as a device that loses power would stop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tester control protocol client (blocking, JSON lines).
pub struct Control {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_id: u64,
    last_event: u64,
}

impl Control {
    /// Connect.
    pub fn connect(addr: SocketAddr) -> anyhow::Result<Control> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Control {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            next_id: 1,
            last_event: 0,
        })
    }

    /// Send a request and return the whole response object.
    pub fn raw(&mut self, mut req: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        writeln!(self.writer, "{req}")?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Send a request; error unless `ok`.
    pub fn call(&mut self, req: Value) -> anyhow::Result<Value> {
        let op = req["op"].clone();
        let r = self.raw(req)?;
        if r["ok"] != json!(true) {
            bail!("control op {op} failed: {}", r["error"]);
        }
        Ok(r["result"].clone())
    }

    /// Wait until an event matching `pred` arrives (events before it are consumed).
    pub fn wait_event(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let end = Instant::now() + timeout;
        loop {
            let r = self.call(json!({ "op": "events", "after": self.last_event }))?;
            for e in r["events"].as_array().cloned().unwrap_or_default() {
                self.last_event = e["seq"].as_u64().unwrap_or(self.last_event);
                if pred(&e) {
                    return Ok(e);
                }
            }
            if Instant::now() > end {
                bail!("timed out waiting for an event");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A daemon configuration on loopback with OS-chosen ports and discovery on `disc_port`.
pub fn loopback_config(name: &str, pin: Option<&str>, disc_port: u16) -> String {
    let pin = pin.map(|p| format!("pin = \"{p}\"\n")).unwrap_or_default();
    format!(
        r#"[device]
name = "{name}"
type = "speaker"
identity_key = "identity.key"
trust_store = "trust.json"
{pin}prompt_policy = "approve"
prompt_timeout_ms = 1000
heartbeat_interval_ms = 200
lockout_ms = 3000

[[capability]]
name = "speaker.main"
kind = "speaker"

[listen]
udp = "127.0.0.1:0"
tcp = "127.0.0.1:0"

[discovery]
group = "224.0.1.187"
port = {disc_port}
interface = "127.0.0.1"
unicast_port = 0

[control]
tcp = "127.0.0.1:0"
"#
    )
}

// ------------------------------------------------------------------ third-party tools

/// Serialises package installs within one test process (apt and pip take locks of their own,
/// but two tests installing at once would still make one of them fail).
static INSTALL_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where `command` is on `PATH`, if anywhere.
pub fn find_on_path(command: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(command))
        .find(|p| p.is_file())
}

/// Whether this process runs as root (and may therefore install Debian packages).
pub fn running_as_root() -> bool {
    // The effective UID is the second number of the `Uid:` line.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(euid) = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
        {
            return euid == "0";
        }
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Install Debian `packages` with apt when running as root, or fail with the exact command a
/// person has to run (`why` says what needs them).
pub fn apt_install(packages: &[&str], why: &str) -> anyhow::Result<()> {
    let list = packages.join(" ");
    if !running_as_root() {
        bail!("{why} needs the Debian package(s) {list}; install them with: sudo apt-get install -y {list}");
    }
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
    };
    if install().map(|s| s.success()).unwrap_or(false) {
        return Ok(());
    }
    // The package lists may be missing or stale on a fresh machine.
    let _ = Command::new("apt-get")
        .args(["update", "-qq"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if install().map(|s| s.success()).unwrap_or(false) {
        return Ok(());
    }
    bail!("{why}: `apt-get install -y {list}` failed; run it by hand to see why")
}

/// The path of `command`, installing Debian `package` first when it is missing (as root), or
/// an error naming the exact install command (otherwise).
pub fn require_debian_tool(command: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = find_on_path(command) {
        return Ok(p);
    }
    apt_install(&[package], &format!("`{command}`"))?;
    find_on_path(command)
        .with_context(|| format!("`{command}` is still missing after installing {package}"))
}

/// The Python virtual environment for interop tools, `target/interop-venv`.
pub fn interop_venv() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("interop-venv")
}

/// The path of console script `tool` from the PyPI `requirement` (e.g. `aiocoap==0.4.17`),
/// installed with pip into [`interop_venv`], which is created first if needed (with Debian's
/// `python3-venv` installed as root when `venv` is missing).
pub fn require_pip_tool(tool: &str, requirement: &str) -> anyhow::Result<PathBuf> {
    let venv = interop_venv();
    let exe = venv.join("bin").join(tool);
    let marker = venv.join(format!(
        ".installed-{}",
        requirement.replace(['=', '<', '>', '[', ']', ','], "_")
    ));
    if exe.is_file() && marker.is_file() {
        return Ok(exe);
    }
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if exe.is_file() && marker.is_file() {
        return Ok(exe);
    }
    // Debian's own interpreter when there is one: python3-venv is the package that serves it.
    let python = ["/usr/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| find_on_path("python3"))
        .context("python3 is not installed; install it with: sudo apt-get install -y python3 python3-venv")?;
    if !venv.join("bin").join("pip").is_file() {
        let _ = std::fs::remove_dir_all(&venv);
        let create = || {
            Command::new(&python)
                .args(["-m", "venv"])
                .arg(&venv)
                .stdout(Stdio::null())
                .status()
        };
        if !create().map(|s| s.success()).unwrap_or(false) {
            let _ = std::fs::remove_dir_all(&venv);
            drop(_guard);
            apt_install(
                &["python3-venv"],
                &format!("creating the venv {}", venv.display()),
            )?;
            let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            if !create().map(|s| s.success()).unwrap_or(false) {
                bail!("`{} -m venv {}` failed", python.display(), venv.display());
            }
        }
    }
    let pip = venv.join("bin").join("pip");
    let status = Command::new(&pip)
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ])
        .status()
        .with_context(|| format!("running {}", pip.display()))?;
    if !status.success() || !exe.is_file() {
        bail!(
            "`{} install {requirement}` failed (PyPI must be reachable)",
            pip.display()
        );
    }
    std::fs::write(&marker, requirement)?;
    Ok(exe)
}

/// Run `cmd` to completion with its output captured, killing it after `timeout`.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> anyhow::Result<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let mut out = child.stdout.take().context("no stdout")?;
    let mut err = child.stderr.take().context("no stderr")?;
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(std::process::Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

// ------------------------------------------------------------------ pcap files

/// A classic pcap file (LINKTYPE_ETHERNET) assembled from IPv4 UDP datagrams and TCP segments,
/// for feeding traffic made in-process to Wireshark.
pub struct PcapWriter {
    buf: Vec<u8>,
    tcp_next_seq: std::collections::HashMap<(std::net::SocketAddrV4, std::net::SocketAddrV4), u32>,
    ip_id: u16,
}

impl Default for PcapWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PcapWriter {
    /// An empty capture: just the global header.
    pub fn new() -> PcapWriter {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microseconds
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        buf.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        buf.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
        buf.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        PcapWriter {
            buf,
            tcp_next_seq: Default::default(),
            ip_id: 1,
        }
    }

    /// Append a UDP datagram sent at `ts` (since the Unix epoch).
    pub fn udp(
        &mut self,
        ts: Duration,
        src: std::net::SocketAddrV4,
        dst: std::net::SocketAddrV4,
        payload: &[u8],
    ) {
        let mut udp = Vec::with_capacity(8 + payload.len());
        udp.extend_from_slice(&src.port().to_be_bytes());
        udp.extend_from_slice(&dst.port().to_be_bytes());
        udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        let sum = transport_checksum(src, dst, 17, &udp);
        udp[6..8].copy_from_slice(&(if sum == 0 { 0xffff } else { sum }).to_be_bytes());
        self.ip_packet(ts, src, dst, 17, &udp);
    }

    /// Append a TCP segment (PSH, ACK) carrying `payload`; sequence numbers continue per
    /// direction, so consecutive calls form a stream Wireshark can reassemble.
    pub fn tcp(
        &mut self,
        ts: Duration,
        src: std::net::SocketAddrV4,
        dst: std::net::SocketAddrV4,
        payload: &[u8],
    ) {
        let seq = *self.tcp_next_seq.entry((src, dst)).or_insert(1000);
        let ack = *self.tcp_next_seq.entry((dst, src)).or_insert(1000);
        self.tcp_next_seq
            .insert((src, dst), seq.wrapping_add(payload.len() as u32));
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&src.port().to_be_bytes());
        tcp.extend_from_slice(&dst.port().to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.extend_from_slice(&[0x50, 0x18]); // data offset 5 words; PSH, ACK
        tcp.extend_from_slice(&65535u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend_from_slice(payload);
        let sum = transport_checksum(src, dst, 6, &tcp);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        self.ip_packet(ts, src, dst, 6, &tcp);
    }

    fn ip_packet(
        &mut self,
        ts: Duration,
        src: std::net::SocketAddrV4,
        dst: std::net::SocketAddrV4,
        proto: u8,
        l4: &[u8],
    ) {
        let mut ip = Vec::with_capacity(20 + l4.len());
        ip.extend_from_slice(&[0x45, 0]);
        ip.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&self.ip_id.to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);
        ip.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]); // DF, TTL 64, checksum later
        ip.extend_from_slice(&src.ip().octets());
        ip.extend_from_slice(&dst.ip().octets());
        let sum = ones_complement(&ip, 0);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip.extend_from_slice(l4);
        let mut frame = Vec::with_capacity(14 + ip.len());
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]);
        frame.extend_from_slice(&ip);
        let len = frame.len() as u32;
        self.buf
            .extend_from_slice(&(ts.as_secs() as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&ts.subsec_micros().to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&frame);
    }

    /// The file's bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Write the capture to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, &self.buf).with_context(|| format!("writing {}", path.display()))
    }
}

fn ones_complement(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn transport_checksum(
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    proto: u8,
    segment: &[u8],
) -> u16 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    let partial = !ones_complement(&pseudo, 0);
    ones_complement(segment, u32::from(partial))
}

/// Run the `certify` binary with `--report-dir report_dir --seed 42 --quiet` and `extra`;
/// returns its exit status, the parsed `report.json` and its stderr.
pub fn certify(report_dir: &Path, extra: &[&str]) -> anyhow::Result<(i32, Value, String)> {
    let out = Command::new(binary("softbus-conformance", "certify")?)
        .arg("--report-dir")
        .arg(report_dir)
        .args(["--seed", "42", "--quiet"])
        .args(extra)
        .current_dir(workspace_root())
        .output()?;
    let code = out.status.code().unwrap_or(-1);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json"))?)?;
    Ok((
        code,
        report,
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}
