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
