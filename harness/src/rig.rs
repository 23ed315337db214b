//! Rig files: which DUTs a run talks to, how to reach each one, and what each claims.
//!
//! A rig is a TOML file (see `rigs/example-lab.toml` for every key, documented):
//!
//! ```toml
//! [rig]
//! name = "virtual"
//! description = "..."
//!
//! [[dut]]
//! name = "reference"
//! kind = "virtual"            # the harness launches it; "external" = already running
//! launch.command = ["{softbusd}", "--config", "{config}", "--fault", "{fault}"]
//! [dut.udp]
//! host = "127.0.0.1"
//! port = 0                    # 0 on a virtual DUT: the harness picks a free port
//! [dut.pics]
//! DISC_COAP = true
//! [dut.pixit]
//! pin = "123456"
//! ```
//!
//! Loading ([`Rig::load`]) checks everything that can be checked without touching hardware and
//! reports problems with the file, line, TOML key path (`dut[1].udp.port`), the problem and what
//! to do. Unknown keys are errors, so typos do not silently fall back to defaults.
//!
//! A DUT without PICS is accepted by the loader (so `xtask rig` can inspect it) but refused at
//! run start by [`Rig::require_pics`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pics::Pics;

/// The default IPv4 CoAP multicast group ("All CoAP Nodes", RFC 7252 §12.8).
pub const DEFAULT_DISCOVERY_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 187);
/// The default IPv6 link-local CoAP multicast group.
pub const DEFAULT_DISCOVERY_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfd);
/// The default CoAP UDP port.
pub const DEFAULT_DISCOVERY_PORT: u16 = 5683;
/// The default serial baud rate.
pub const DEFAULT_BAUD: u32 = 115_200;

/// Placeholders a launch command or config template may use, besides the fields of helper
/// announcements (`{<helper>_<field>}`, see [`Helper`]).
pub const PLACEHOLDERS: &[&str] = &[
    "softbusd",
    "znp_emulator",
    "vbluez",
    "config",
    "fault",
    "workdir",
    "name",
    "pin",
    "udp_host",
    "udp_port",
    "tcp_host",
    "tcp_port",
    "discovery_port",
    "control_host",
    "control_port",
    "heartbeat_interval_ms",
    "prompt_timeout_ms",
    "lockout_ms",
];

/// Everything that can go wrong loading or using a rig.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RigError {
    /// The rig file could not be read.
    #[error("cannot read rig file {}: {source}; check the --rig path", path.display())]
    Read {
        /// The rig file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, does not match the schema, or fails a check.
    #[error("{}: {}: {problem}", location(path, *line, *column), if key.is_empty() { "(syntax)" } else { key })]
    Invalid {
        /// The rig file.
        path: PathBuf,
        /// 1-based line of the offending key, when known.
        line: Option<usize>,
        /// 1-based column of the offending key, when known.
        column: Option<usize>,
        /// TOML key path, e.g. `dut[1].udp.port` (empty for document-level syntax errors).
        key: String,
        /// What is wrong and what to do about it.
        problem: String,
    },
    /// A run was asked for on a DUT that declares no PICS.
    #[error(
        "refusing to run: DUT '{dut}' in {} has {}; list the features it implements, \
         e.g. `DISC_COAP = true` (see rigs/example-lab.toml)",
        path.display(),
        if *empty { "an empty [dut.pics] table" } else { "no [dut.pics] table" }
    )]
    NoPics {
        /// The rig file.
        path: PathBuf,
        /// The DUT name.
        dut: String,
        /// `true` when the table exists but is empty.
        empty: bool,
    },
    /// No DUT by that name, or no name given on a rig with several.
    #[error("{}", unknown_dut(path, name.as_deref(), known))]
    UnknownDut {
        /// The rig file.
        path: PathBuf,
        /// The name asked for (`None`: none given).
        name: Option<String>,
        /// The DUT names the rig defines.
        known: Vec<String>,
    },
    /// A free port could not be allocated for a virtual DUT.
    #[error("DUT '{dut}': cannot allocate a free port for {key} on {host}: {source}")]
    PortAllocation {
        /// The DUT name.
        dut: String,
        /// The key path of the port.
        key: String,
        /// The host the port was to be bound on.
        host: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A launch command or config template could not be rendered.
    #[error("DUT '{dut}': {key}: {problem}")]
    Template {
        /// The DUT name.
        dut: String,
        /// The key path of the template.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

fn unknown_dut(path: &Path, name: Option<&str>, known: &[String]) -> String {
    match name {
        Some(n) => format!(
            "{} has no DUT '{n}'; it has: {}",
            path.display(),
            known.join(", ")
        ),
        None => format!(
            "{} defines several DUTs ({}); choose one by name",
            path.display(),
            known.join(", ")
        ),
    }
}

fn location(path: &Path, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", path.display()),
        (Some(l), None) => format!("{}:{l}", path.display()),
        _ => path.display().to_string(),
    }
}

/// A loaded and validated rig file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rig {
    /// The `[rig]` table.
    pub rig: RigInfo,
    /// The `[[dut]]` entries, in file order.
    #[serde(rename = "dut", default)]
    pub duts: Vec<Dut>,
    #[serde(skip)]
    path: PathBuf,
}

/// The `[rig]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RigInfo {
    /// Short name of the rig (shown in reports).
    pub name: String,
    /// What the rig is, for humans.
    #[serde(default)]
    pub description: String,
}

/// How a DUT comes to life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DutKind {
    /// The harness launches it (from `[dut.launch]`) and may allocate its ports.
    Virtual,
    /// It is already running somewhere (a real device); the harness only connects.
    External,
}

/// One `[[dut]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dut {
    /// Unique name within the rig (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Virtual (launched by the harness) or external.
    pub kind: DutKind,
    /// How to launch a virtual DUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    /// SoftBus over UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<IpEndpoint>,
    /// SoftBus over TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<IpEndpoint>,
    /// CoAP discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Discovery>,
    /// A serial-attached link (e.g. a Zigbee coordinator stick).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<SerialLink>,
    /// The DUT's BLE identity, and the tester's BLE adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ble: Option<BleTarget>,
    /// SoftBus over Zigbee: the tester's radio and the DUT's network address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zigbee: Option<ZigbeeTarget>,
    /// The tester control channel (upper tester); absent means operator prompts.
    #[serde(default)]
    pub control: Control,
    /// Where to capture packets for evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureSpec>,
    /// Claimed features; `None` when the table is absent (a run then refuses to start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pics: Option<Pics>,
    /// Parameters (PIN, timeouts, bounds).
    #[serde(default)]
    pub pixit: Pixit,
}

/// `[dut.launch]`: how the harness starts a virtual DUT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// Program and arguments, with placeholders (see [`PLACEHOLDERS`]) in `{braces}`;
    /// `{{` and `}}` are literal braces. With no fault selected, an argument containing
    /// `{fault}` is dropped, and so is an option (`-x`/`--x`) right before a bare `{fault}`.
    pub command: Vec<String>,
    /// `[[dut.launch.before]]`: helper processes started, in order, before the DUT (a virtual
    /// Zigbee coordinator the DUT bridges, say). They live, restart and stop with the DUT.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<Helper>,
    /// A TOML table written to the file that `{config}` names, with placeholders substituted in
    /// its strings. A string that is exactly one numeric placeholder (ports, PIXIT times) becomes
    /// an integer; with no
    /// fault selected, a value that is exactly `{fault}` is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<toml::Table>,
}

/// `[[dut.launch.before]]`: a helper process launched before the DUT.
///
/// The harness starts it with its standard input piped (kept open while the DUT runs, so a
/// helper given `--exit-on-stdin-eof` never outlives the harness) and waits for its first line
/// on standard output: a JSON object announcing what it set up, such as
/// `{"pty": "/dev/pts/7", "baud": 115200, "network": {"channel": 15}}`. Each scalar field
/// becomes a placeholder named after the helper and the field, nested objects joined with `_`:
/// `{znp_pty}`, `{znp_baud}` (a number), `{znp_network_channel}`. The DUT's command and config,
/// and the commands of later helpers, may use them. A built-in placeholder of the same name
/// (`{znp_emulator}`) wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Helper {
    /// Lower-case letters and digits, unique among the DUT's helpers; the prefix of its
    /// placeholders.
    pub name: String,
    /// Program and arguments, with placeholders as in [`Launch::command`].
    pub command: Vec<String>,
}

/// Whether `name` is usable as a helper name (and so as a placeholder prefix).
fn valid_helper_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// The placeholders a helper's announcement defines: `{<helper>_<field>}` for each scalar
/// field, nested objects joined with `_`; arrays and nulls define none.
pub fn helper_placeholders(
    helper: &str,
    announcement: &serde_json::Value,
) -> BTreeMap<String, HelperValue> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, HelperValue>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    walk(&format!("{prefix}_{k}"), v, out);
                }
            }
            serde_json::Value::String(s) => {
                out.insert(prefix.to_owned(), HelperValue::Text(s.clone()));
            }
            serde_json::Value::Number(n) => {
                let value = match n.as_u64() {
                    Some(u) => HelperValue::Int(u),
                    None => HelperValue::Text(n.to_string()),
                };
                out.insert(prefix.to_owned(), value);
            }
            serde_json::Value::Bool(b) => {
                out.insert(prefix.to_owned(), HelperValue::Text(b.to_string()));
            }
            serde_json::Value::Array(_) | serde_json::Value::Null => {}
        }
    }
    let mut out = BTreeMap::new();
    walk(helper, announcement, &mut out);
    out
}

/// A value a helper announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperValue {
    /// Text (strings, and numbers that are not unsigned integers).
    Text(String),
    /// An unsigned integer: a string that is exactly this placeholder becomes a TOML integer.
    Int(u64),
}

/// `[dut.udp]` / `[dut.tcp]`: a host and port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpEndpoint {
    /// Host name or IP address.
    pub host: String,
    /// Port; 0 on a virtual DUT means "allocate a free one" ([`Dut::allocate_ports`]).
    pub port: u16,
}

impl IpEndpoint {
    /// Resolves to socket addresses (DNS for names).
    pub fn socket_addrs(&self) -> std::io::Result<Vec<std::net::SocketAddr>> {
        use std::net::ToSocketAddrs;
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }
}

impl fmt::Display for IpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `[dut.discovery]`: CoAP discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// IPv4 multicast group (default 224.0.1.187).
    #[serde(default = "default_group")]
    pub group: Ipv4Addr,
    /// IPv6 multicast group (default ff02::fd).
    #[serde(default = "default_group_v6")]
    pub group_v6: Ipv6Addr,
    /// UDP port (default 5683; 0 on a virtual DUT: allocate).
    #[serde(default = "default_discovery_port")]
    pub port: u16,
    /// Interface to send multicast on (e.g. "eth0"); `None`: the system's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

fn default_group() -> Ipv4Addr {
    DEFAULT_DISCOVERY_GROUP
}
fn default_group_v6() -> Ipv6Addr {
    DEFAULT_DISCOVERY_GROUP_V6
}
fn default_discovery_port() -> u16 {
    DEFAULT_DISCOVERY_PORT
}
fn default_baud() -> u32 {
    DEFAULT_BAUD
}

/// `[dut.serial]`: a serial-attached link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialLink {
    /// Device path, e.g. `/dev/ttyUSB0`.
    pub path: PathBuf,
    /// Baud rate (default 115200).
    #[serde(default = "default_baud")]
    pub baud: u32,
}

/// `[dut.ble]`: how to find the DUT over BLE (address, name or both), and which Bluetooth
/// stack the tester uses as a central.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BleTarget {
    /// Device address, `AA:BB:CC:DD:EE:FF`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Advertised local name (placeholders allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// D-Bus address of the bus BlueZ is on; absent means the system bus. The virtual rig
    /// points it at the virtual BlueZ (`"{vbluez_dbus}"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbus: Option<String>,
    /// The tester's adapter (`hci0`); absent means the first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
}

/// A number written as a TOML integer, or as a string: `"0x1A2B"`, or a placeholder that a
/// launch helper fills in (`"{znp_nodes_dut_nwk}"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrTemplate {
    /// A literal number.
    Int(u64),
    /// Text: a number in decimal or `0x` hex, or a template.
    Text(String),
}

impl IntOrTemplate {
    /// Parses a literal (no placeholders): an integer, decimal or `0x` hex text.
    pub fn parse_literal(&self) -> Result<u64, String> {
        match self {
            IntOrTemplate::Int(n) => Ok(*n),
            IntOrTemplate::Text(t) => {
                let t = t.trim();
                let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => t.parse(),
                };
                r.map_err(|_| format!("{t:?} is not a number (decimal, or hex with 0x)"))
            }
        }
    }

    fn is_template(&self) -> bool {
        matches!(self, IntOrTemplate::Text(t) if t.contains('{'))
    }
}

/// `[dut.zigbee]`: SoftBus over Zigbee (spec 16.2). The harness has its own Zigbee radio (a
/// Z-Stack stick) on the DUT's network and sends to the DUT's network address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZigbeeTarget {
    /// The tester's radio: serial device path (placeholders allowed).
    pub radio: String,
    /// Its baud rate (default 115200).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// The DUT's 16-bit network address.
    pub address: IntOrTemplate,
}

/// `[dut.zigbee]` with its placeholders filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZigbeeResolved {
    /// Serial device of the tester's radio.
    pub radio: String,
    /// Its baud rate.
    pub baud: u32,
    /// The DUT's network address.
    pub address: u16,
}

/// `[dut.ble]` with its placeholders filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleResolved {
    /// The DUT's address, if the rig names it.
    pub address: Option<String>,
    /// The DUT's advertised name, if the rig names it.
    pub name: Option<String>,
    /// The bus BlueZ is on (`None`: the system bus).
    pub dbus: Option<String>,
    /// The tester's adapter.
    pub adapter: Option<String>,
}

/// The control channel kinds, as written in `[dut.control] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ControlKind {
    /// Tester control protocol over TCP; `address = "host:port"`.
    Tcp,
    /// Over a serial port; `address = "/dev/ttyUSB1"`, optional `baud`.
    Serial,
    /// Over the launched process's stdin/stdout (virtual DUTs only).
    Stdio,
    /// No control channel: cases that need one prompt the operator, or are INCONC.
    #[default]
    None,
}

/// `[dut.control]` as written in the file. Use [`Control::endpoint`] for the parsed form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Which transport carries the tester control protocol.
    pub kind: ControlKind,
    /// `host:port` for tcp, a device path for serial; absent for stdio and none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Baud rate for serial (default 115200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baud: Option<u32>,
}

/// A validated control channel endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEndpoint {
    /// TCP to host and port.
    Tcp(IpEndpoint),
    /// Serial port.
    Serial(SerialLink),
    /// The launched process's stdin/stdout.
    Stdio,
    /// No control channel.
    None,
}

impl Control {
    /// Parses the address for the kind. Errors say what is wrong and what to write instead;
    /// a loaded [`Rig`] has already passed this check.
    pub fn endpoint(&self) -> Result<ControlEndpoint, String> {
        match self.kind {
            ControlKind::Tcp => {
                let Some(addr) = &self.address else {
                    return Err(
                        "kind \"tcp\" needs `address = \"host:port\"`, e.g. \"127.0.0.1:7000\""
                            .into(),
                    );
                };
                if self.baud.is_some() {
                    return Err("`baud` only applies to kind \"serial\"; remove it".into());
                }
                parse_host_port(addr).map(ControlEndpoint::Tcp)
            }
            ControlKind::Serial => {
                let Some(addr) = self.address.as_deref().filter(|a| !a.trim().is_empty()) else {
                    return Err(
                        "kind \"serial\" needs `address` = a device path, e.g. \"/dev/ttyUSB1\""
                            .into(),
                    );
                };
                let baud = self.baud.unwrap_or(DEFAULT_BAUD);
                check_baud(baud)?;
                Ok(ControlEndpoint::Serial(SerialLink {
                    path: PathBuf::from(addr),
                    baud,
                }))
            }
            ControlKind::Stdio | ControlKind::None => {
                if self.address.is_some() || self.baud.is_some() {
                    return Err(format!(
                        "kind \"{}\" takes no `address` or `baud`; remove them",
                        if self.kind == ControlKind::Stdio {
                            "stdio"
                        } else {
                            "none"
                        }
                    ));
                }
                Ok(if self.kind == ControlKind::Stdio {
                    ControlEndpoint::Stdio
                } else {
                    ControlEndpoint::None
                })
            }
        }
    }
}

fn parse_host_port(addr: &str) -> Result<IpEndpoint, String> {
    let bad = || {
        format!("address {addr:?} is not `host:port` (e.g. \"127.0.0.1:7000\" or \"[::1]:7000\")")
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').ok_or_else(bad)?
    } else if host.contains(':') {
        return Err(bad());
    } else {
        host
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok(IpEndpoint {
        host: host.to_owned(),
        port,
    })
}

fn check_baud(baud: u32) -> Result<(), String> {
    if baud == 0 || baud > 12_000_000 {
        return Err(format!(
            "baud {baud} is not a usable rate; use the device's rate, e.g. 115200"
        ));
    }
    Ok(())
}

/// `[dut.capture]`: where the harness captures packets for evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSpec {
    /// Interface name, e.g. "lo", "eth0", "any".
    pub interface: String,
    /// Extra BPF filter ANDed with the harness's own (e.g. "host 192.168.7.20").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// `[dut.pixit]`: parameters the suite needs to exercise the DUT. Every key has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pixit {
    /// The pairing PIN the DUT expects: exactly 6 ASCII digits, as a string.
    pub pin: String,
    /// Latency bound for timed cases, in milliseconds (default 20).
    pub latency_bound_ms: u64,
    /// How long one step may wait for the DUT, in milliseconds (default 5000).
    pub step_timeout_ms: u64,
    /// How long the DUT's permission prompt waits before timing out, in ms (default 10000).
    pub prompt_timeout_ms: u64,
    /// The DUT's heartbeat interval, in milliseconds (default 1000).
    pub heartbeat_interval_ms: u64,
    /// How many samples latency cases take (default 200).
    pub latency_samples: u32,
    /// How long one case may use the DUT's links in all, in milliseconds (default 300000): a
    /// case past it ends INCONC and the run goes on.
    pub case_timeout_ms: u64,
    /// How long the DUT locks pairing out after too many wrong PINs, in ms (default 30000).
    pub lockout_ms: u64,
    /// Capability kinds the DUT offers (e.g. "camera", "speaker").
    pub capabilities: Vec<String>,
    /// Service names the DUT accepts sessions for.
    pub services: Vec<String>,
    /// Bridged capabilities (spec 10.3) whose legacy device is unreachable during the run
    /// (powered off, out of range, or an address nobody has): the suite checks that their uses
    /// fail with INTERNAL. Empty (the default) leaves that check INCONC.
    pub bridge_unreachable: Vec<String>,
    /// Line speed of the serial link behind the DUT (its Zigbee coordinator), bits/s: latency
    /// cases over that link report its UART wire time as the physical floor. None: not stated.
    pub serial_baud: Option<u32>,
    /// Latency bounds that replace `latency_bound_ms` on one transport, in ms, by transport
    /// name (`{ zigbee = 150 }`): a link whose physical floor is above the general bound is
    /// judged against its own. Empty by default.
    pub transport_latency_bound_ms: BTreeMap<String, u64>,
    /// The BLE connection interval the DUT's link runs at, in microseconds (7500 for 7.5 ms):
    /// BLE latency cases report it as the physical floor (a central cannot read it from
    /// BlueZ). None: not stated.
    pub ble_connection_interval_us: Option<u64>,
    /// The largest error bound of a clock offset estimate the DUT may report (spec 17.3), µs
    /// (default 2000).
    pub time_error_bound_us: u64,
    /// Error bounds that replace `time_error_bound_us` on one transport, µs, by transport name:
    /// a slow link's round trip bounds how well a clock can be learnt over it.
    pub transport_time_error_bound_us: BTreeMap<String, u64>,
}

impl Default for Pixit {
    fn default() -> Self {
        Pixit {
            pin: "123456".to_owned(),
            latency_bound_ms: 20,
            step_timeout_ms: 5000,
            prompt_timeout_ms: 10_000,
            heartbeat_interval_ms: 1000,
            latency_samples: 200,
            case_timeout_ms: 300_000,
            lockout_ms: 30_000,
            capabilities: Vec::new(),
            services: Vec::new(),
            bridge_unreachable: Vec::new(),
            serial_baud: None,
            transport_latency_bound_ms: BTreeMap::new(),
            ble_connection_interval_us: None,
            time_error_bound_us: 2000,
            transport_time_error_bound_us: BTreeMap::new(),
        }
    }
}

impl Pixit {
    /// [`Pixit::latency_bound_ms`] as a duration.
    pub fn latency_bound(&self) -> Duration {
        Duration::from_millis(self.latency_bound_ms)
    }
    /// The latency bound on `transport` (`udp`, `zigbee`, ...): its own if the PIXIT gives
    /// one, else [`Pixit::latency_bound`].
    pub fn latency_bound_on(&self, transport: &str) -> Duration {
        self.transport_latency_bound_ms
            .get(transport)
            .map_or(self.latency_bound(), |ms| Duration::from_millis(*ms))
    }
    /// The time error bound on `transport`, µs: its own if the PIXIT gives one, else
    /// [`Pixit::time_error_bound_us`].
    pub fn time_error_bound_us_on(&self, transport: &str) -> u64 {
        self.transport_time_error_bound_us
            .get(transport)
            .copied()
            .unwrap_or(self.time_error_bound_us)
    }
    /// [`Pixit::step_timeout_ms`] as a duration.
    pub fn step_timeout(&self) -> Duration {
        Duration::from_millis(self.step_timeout_ms)
    }
    /// [`Pixit::prompt_timeout_ms`] as a duration.
    pub fn prompt_timeout(&self) -> Duration {
        Duration::from_millis(self.prompt_timeout_ms)
    }
    /// [`Pixit::heartbeat_interval_ms`] as a duration.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
    /// [`Pixit::lockout_ms`] as a duration.
    pub fn lockout(&self) -> Duration {
        Duration::from_millis(self.lockout_ms)
    }
}

/// Values for the launch placeholders that come from the run rather than the rig.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LaunchVars {
    /// Path of the `softbusd` binary (`{softbusd}`).
    pub softbusd: PathBuf,
    /// Path of the `znp-emulator` binary (`{znp_emulator}`).
    pub znp_emulator: PathBuf,
    /// Path of the harness's virtual BlueZ, `vbluez` (`{vbluez}`).
    pub vbluez: PathBuf,
    /// The helpers started so far, by name, with the placeholders their announcements define
    /// ([`helper_placeholders`]); `None` for a helper that is declared but not started (when a
    /// rig is checked at load, where any field of it renders as a stand-in).
    pub helpers: BTreeMap<String, Option<BTreeMap<String, HelperValue>>>,
    /// Path the rendered config is written to (`{config}`).
    pub config: PathBuf,
    /// The named fault to inject (`{fault}`), if any.
    pub fault: Option<String>,
    /// The DUT's working directory for this run (`{workdir}`).
    pub workdir: PathBuf,
}

/// What a placeholder expands to.
enum Subst {
    Text(String),
    /// A number: a string that is exactly this placeholder becomes a TOML integer.
    Int(u64),
    /// `{fault}` with no fault selected.
    Absent,
}

impl Dut {
    /// The DUT's PICS, empty when the table is absent.
    pub fn pics(&self) -> Pics {
        self.pics.clone().unwrap_or_default()
    }

    /// The validated control endpoint.
    pub fn control_endpoint(&self) -> Result<ControlEndpoint, RigError> {
        self.control
            .endpoint()
            .map_err(|problem| RigError::Template {
                dut: self.name.clone(),
                key: "control".into(),
                problem,
            })
    }

    /// A copy with every port 0 (on a virtual DUT) replaced by a currently free port:
    /// `udp.port` and `discovery.port` from UDP, `tcp.port` and the control address from TCP.
    /// All are distinct. An external DUT is returned unchanged.
    ///
    /// There is a window between allocation and the DUT binding the port in which another
    /// process could take it; launch the DUT promptly.
    pub fn allocate_ports(&self) -> Result<Dut, RigError> {
        let mut out = self.clone();
        if self.kind != DutKind::Virtual {
            return Ok(out);
        }
        // Keep every probe socket open until all are chosen so the ports are distinct.
        let mut held_udp: Vec<UdpSocket> = Vec::new();
        let mut held_tcp: Vec<TcpListener> = Vec::new();
        let err = |key: &str, host: &str, source| RigError::PortAllocation {
            dut: self.name.clone(),
            key: key.to_owned(),
            host: host.to_owned(),
            source,
        };
        if let Some(udp) = out.udp.as_mut().filter(|e| e.port == 0) {
            let s = UdpSocket::bind((udp.host.as_str(), 0))
                .map_err(|e| err("udp.port", &udp.host, e))?;
            udp.port = s
                .local_addr()
                .map_err(|e| err("udp.port", &udp.host, e))?
                .port();
            held_udp.push(s);
        }
        if let Some(tcp) = out.tcp.as_mut().filter(|e| e.port == 0) {
            let s = TcpListener::bind((tcp.host.as_str(), 0))
                .map_err(|e| err("tcp.port", &tcp.host, e))?;
            tcp.port = s
                .local_addr()
                .map_err(|e| err("tcp.port", &tcp.host, e))?
                .port();
            held_tcp.push(s);
        }
        if let Some(disc) = out.discovery.as_mut().filter(|d| d.port == 0) {
            let s =
                UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| err("discovery.port", "0.0.0.0", e))?;
            disc.port = s
                .local_addr()
                .map_err(|e| err("discovery.port", "0.0.0.0", e))?
                .port();
            held_udp.push(s);
        }
        if let Ok(ControlEndpoint::Tcp(mut ep)) = out.control.endpoint() {
            if ep.port == 0 {
                let s = TcpListener::bind((ep.host.as_str(), 0))
                    .map_err(|e| err("control.address", &ep.host, e))?;
                ep.port = s
                    .local_addr()
                    .map_err(|e| err("control.address", &ep.host, e))?
                    .port();
                held_tcp.push(s);
                out.control.address = Some(ep.to_string());
            }
        }
        drop(held_udp);
        drop(held_tcp);
        Ok(out)
    }

    fn lookup(&self, name: &str, vars: &LaunchVars) -> Result<Subst, String> {
        let need = |what: &str, table: &str| {
            format!("placeholder {{{name}}} needs {what}, but the DUT has no {table}")
        };
        Ok(match name {
            "softbusd" => Subst::Text(vars.softbusd.display().to_string()),
            "znp_emulator" => Subst::Text(vars.znp_emulator.display().to_string()),
            "vbluez" => Subst::Text(vars.vbluez.display().to_string()),
            "config" => Subst::Text(vars.config.display().to_string()),
            "workdir" => Subst::Text(vars.workdir.display().to_string()),
            "fault" => match &vars.fault {
                Some(f) => Subst::Text(f.clone()),
                None => Subst::Absent,
            },
            "name" => Subst::Text(self.name.clone()),
            "heartbeat_interval_ms" => Subst::Int(self.pixit.heartbeat_interval_ms),
            "prompt_timeout_ms" => Subst::Int(self.pixit.prompt_timeout_ms),
            "lockout_ms" => Subst::Int(self.pixit.lockout_ms),
            "pin" => Subst::Text(self.pixit.pin.clone()),
            "udp_host" | "udp_port" => {
                let udp = self
                    .udp
                    .as_ref()
                    .ok_or_else(|| need("a UDP endpoint", "[dut.udp]"))?;
                if name == "udp_host" {
                    Subst::Text(udp.host.clone())
                } else {
                    Subst::Int(udp.port.into())
                }
            }
            "tcp_host" | "tcp_port" => {
                let tcp = self
                    .tcp
                    .as_ref()
                    .ok_or_else(|| need("a TCP endpoint", "[dut.tcp]"))?;
                if name == "tcp_host" {
                    Subst::Text(tcp.host.clone())
                } else {
                    Subst::Int(tcp.port.into())
                }
            }
            "discovery_port" => Subst::Int(
                self.discovery
                    .as_ref()
                    .ok_or_else(|| need("discovery", "[dut.discovery]"))?
                    .port
                    .into(),
            ),
            "control_host" | "control_port" => match self.control.endpoint() {
                Ok(ControlEndpoint::Tcp(ep)) => {
                    if name == "control_host" {
                        Subst::Text(ep.host)
                    } else {
                        Subst::Int(ep.port.into())
                    }
                }
                _ => {
                    return Err(need(
                        "a TCP control channel",
                        "[dut.control] with kind = \"tcp\"",
                    ))
                }
            },
            other => {
                if let Some(v) = Self::helper_lookup(other, vars)? {
                    return Ok(v);
                }
                return Err(format!(
                    "unknown placeholder {{{other}}}; known: {}, and {{<helper>_<field>}} for the \
                     fields a [[dut.launch.before]] helper announces; write {{{{ and }}}} for literal braces",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        })
    }

    /// A helper's placeholder (`{znp_pty}`), when `name` starts with the name of a helper in
    /// `vars`.
    fn helper_lookup(name: &str, vars: &LaunchVars) -> Result<Option<Subst>, String> {
        for (helper, fields) in &vars.helpers {
            if !name
                .strip_prefix(helper.as_str())
                .is_some_and(|rest| rest.starts_with('_') && rest.len() > 1)
            {
                continue;
            }
            let Some(fields) = fields else {
                return Ok(Some(Subst::Text(format!("<{name}>"))));
            };
            return match fields.get(name) {
                Some(HelperValue::Text(t)) => Ok(Some(Subst::Text(t.clone()))),
                Some(HelperValue::Int(n)) => Ok(Some(Subst::Int(*n))),
                None => Err(format!(
                    "placeholder {{{name}}}: helper '{helper}' announced no such field; it \
                     announced {}",
                    if fields.is_empty() {
                        "none".to_owned()
                    } else {
                        fields
                            .keys()
                            .map(|k| format!("{{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )),
            };
        }
        Ok(None)
    }

    /// The helpers to start before the DUT, in order (empty without `[dut.launch]`).
    pub fn helpers(&self) -> &[Helper] {
        self.launch.as_ref().map_or(&[], |l| l.before.as_slice())
    }

    /// The command of helper `index` with placeholders substituted, as for
    /// [`Dut::launch_command`]. `vars` must hold the announcements of the helpers before it.
    pub fn helper_command(&self, index: usize, vars: &LaunchVars) -> Result<Vec<String>, RigError> {
        let helper = self
            .helpers()
            .get(index)
            .ok_or_else(|| RigError::Template {
                dut: self.name.clone(),
                key: format!("launch.before[{index}]"),
                problem: "no such helper".into(),
            })?;
        self.render_argv(
            &helper.command,
            &format!("launch.before[{index}].command"),
            vars,
        )
    }

    /// Renders one template string. `Ok(None)` when it is exactly `{fault}` and no fault is set.
    fn render_str(&self, template: &str, vars: &LaunchVars) -> Result<Option<Subst>, String> {
        let pieces = split_template(template)?;
        if let [Piece::Placeholder(p)] = pieces.as_slice() {
            return match self.lookup(p, vars)? {
                Subst::Absent => Ok(None),
                other => Ok(Some(other)),
            };
        }
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Literal(l) => out.push_str(&l),
                Piece::Placeholder(p) => match self.lookup(&p, vars)? {
                    Subst::Text(t) => out.push_str(&t),
                    Subst::Int(n) => out.push_str(&n.to_string()),
                    Subst::Absent => return Ok(None),
                },
            }
        }
        Ok(Some(Subst::Text(out)))
    }

    /// The launch command with placeholders substituted (see [`Launch::command`]).
    /// Errors if the DUT has no `[dut.launch]`.
    pub fn launch_command(&self, vars: &LaunchVars) -> Result<Vec<String>, RigError> {
        let launch = self.launch_or_err()?;
        self.render_argv(&launch.command, "launch.command", vars)
    }

    /// One string of the rig with its placeholders filled in (`key` names it in errors).
    pub fn render_text(
        &self,
        template: &str,
        key: &str,
        vars: &LaunchVars,
    ) -> Result<String, RigError> {
        match self.render_str(template, vars) {
            Ok(Some(Subst::Text(t))) => Ok(t),
            Ok(Some(Subst::Int(n))) => Ok(n.to_string()),
            Ok(None | Some(Subst::Absent)) => Err(RigError::Template {
                dut: self.name.clone(),
                key: key.to_owned(),
                problem: format!("{template:?} renders to nothing"),
            }),
            Err(problem) => Err(RigError::Template {
                dut: self.name.clone(),
                key: key.to_owned(),
                problem,
            }),
        }
    }

    /// `[dut.zigbee]` with placeholders filled in from `vars` (after the helpers started).
    pub fn zigbee_resolved(&self, vars: &LaunchVars) -> Result<Option<ZigbeeResolved>, RigError> {
        let Some(z) = &self.zigbee else {
            return Ok(None);
        };
        let radio = self.render_text(&z.radio, "zigbee.radio", vars)?;
        let address = match &z.address {
            IntOrTemplate::Int(n) => IntOrTemplate::Int(*n),
            IntOrTemplate::Text(t) => {
                IntOrTemplate::Text(self.render_text(t, "zigbee.address", vars)?)
            }
        };
        let address = address
            .parse_literal()
            .ok()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n <= 0xFFF7)
            .ok_or_else(|| RigError::Template {
                dut: self.name.clone(),
                key: "zigbee.address".into(),
                problem: format!("{address:?} is not a unicast Zigbee network address"),
            })?;
        Ok(Some(ZigbeeResolved {
            radio,
            baud: z.baud,
            address,
        }))
    }

    /// `[dut.ble]` with placeholders filled in from `vars` (after the helpers started).
    pub fn ble_resolved(&self, vars: &LaunchVars) -> Result<Option<BleResolved>, RigError> {
        let Some(b) = &self.ble else {
            return Ok(None);
        };
        let r = |v: &Option<String>, key: &str| -> Result<Option<String>, RigError> {
            v.as_deref()
                .map(|t| self.render_text(t, key, vars))
                .transpose()
        };
        Ok(Some(BleResolved {
            address: b.address.clone(),
            name: r(&b.name, "ble.name")?,
            dbus: r(&b.dbus, "ble.dbus")?,
            adapter: b.adapter.clone(),
        }))
    }

    fn render_argv(
        &self,
        command: &[String],
        key: &str,
        vars: &LaunchVars,
    ) -> Result<Vec<String>, RigError> {
        let mut out: Vec<String> = Vec::with_capacity(command.len());
        let mut prev_was_literal_option = false;
        for (i, arg) in command.iter().enumerate() {
            let rendered = self
                .render_str(arg, vars)
                .map_err(|problem| RigError::Template {
                    dut: self.name.clone(),
                    key: format!("{key}[{i}]"),
                    problem,
                })?;
            match rendered {
                Some(Subst::Text(t)) => {
                    prev_was_literal_option = t.starts_with('-') && !t.contains('=');
                    out.push(t);
                }
                Some(Subst::Int(n)) => {
                    prev_was_literal_option = false;
                    out.push(n.to_string());
                }
                Some(Subst::Absent) | None => {
                    if arg == "{fault}" && prev_was_literal_option {
                        out.pop();
                    }
                    prev_was_literal_option = false;
                }
            }
        }
        Ok(out)
    }

    /// The config file text (TOML) rendered from `[dut.launch.config]`, or `None` when the DUT
    /// has no config template.
    pub fn launch_config(&self, vars: &LaunchVars) -> Result<Option<String>, RigError> {
        let launch = self.launch_or_err()?;
        let Some(template) = &launch.config else {
            return Ok(None);
        };
        let rendered = self.render_table(template, vars, "launch.config")?;
        toml::to_string(&rendered)
            .map(Some)
            .map_err(|e| RigError::Template {
                dut: self.name.clone(),
                key: "launch.config".into(),
                problem: format!("cannot write the rendered config as TOML: {e}"),
            })
    }

    fn launch_or_err(&self) -> Result<&Launch, RigError> {
        self.launch.as_ref().ok_or_else(|| RigError::Template {
            dut: self.name.clone(),
            key: "launch".into(),
            problem: "the DUT has no [dut.launch] table; only virtual DUTs are launched".into(),
        })
    }

    fn render_table(
        &self,
        table: &toml::Table,
        vars: &LaunchVars,
        key: &str,
    ) -> Result<toml::Table, RigError> {
        let mut out = toml::Table::new();
        for (k, v) in table {
            let child_key = format!("{key}.{}", display_key(k));
            if let Some(v) = self.render_value(v, vars, &child_key)? {
                out.insert(k.clone(), v);
            }
        }
        Ok(out)
    }

    fn render_value(
        &self,
        value: &toml::Value,
        vars: &LaunchVars,
        key: &str,
    ) -> Result<Option<toml::Value>, RigError> {
        Ok(match value {
            toml::Value::String(s) => {
                match self
                    .render_str(s, vars)
                    .map_err(|problem| RigError::Template {
                        dut: self.name.clone(),
                        key: key.to_owned(),
                        problem,
                    })? {
                    None | Some(Subst::Absent) => None,
                    Some(Subst::Text(t)) => Some(toml::Value::String(t)),
                    Some(Subst::Int(n)) => {
                        Some(toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)))
                    }
                }
            }
            toml::Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(v) = self.render_value(item, vars, &format!("{key}[{i}]"))? {
                        out.push(v);
                    }
                }
                Some(toml::Value::Array(out))
            }
            toml::Value::Table(t) => Some(toml::Value::Table(self.render_table(t, vars, key)?)),
            other => Some(other.clone()),
        })
    }
}

enum Piece {
    Literal(String),
    Placeholder(String),
}

fn split_template(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                        _ => {
                            return Err(format!(
                                "unclosed or malformed placeholder in {s:?}; \
                                 write {{name}}, or {{{{ for a literal brace"
                            ))
                        }
                    }
                }
                if !lit.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Placeholder(name));
            }
            '}' => {
                return Err(format!(
                    "stray `}}` in {s:?}; write }}}} for a literal brace"
                ))
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Literal(lit));
    }
    Ok(pieces)
}

fn display_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        format!("{k:?}")
    }
}

/// One step of a TOML key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&display_key(k));
            }
            Seg::Index(i) => {
                out.push_str(&format!("[{i}]"));
            }
        }
    }
    out
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// Source text of a rig plus its parsed syntax tree, for turning spans into key paths and key
/// paths into lines.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    doc: Option<toml_edit::ImDocument<&'a str>>,
}

impl<'a> Source<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        Source {
            path,
            text,
            doc: toml_edit::ImDocument::parse(text).ok(),
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit_once('\n')
            .map_or(before, |(_, tail)| tail)
            .chars()
            .count()
            + 1;
        (line, col)
    }

    fn invalid(&self, path: &[Seg], problem: impl Into<String>) -> RigError {
        let offset = self
            .doc
            .as_ref()
            .and_then(|d| span_of_path(Node::Item(d.as_item()), path, None));
        let (line, column) = match offset {
            Some(o) => {
                let (l, c) = self.line_col(o);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        RigError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            key: render_path(path),
            problem: problem.into(),
        }
    }

    fn invalid_from_toml(&self, err: &toml::de::Error) -> RigError {
        let span = err.span();
        let key = match (&self.doc, &span) {
            (Some(doc), Some(span)) => {
                let mut path = Vec::new();
                if find_path_item(doc.as_item(), span.start, &mut path) {
                    render_path(&path)
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = self.line_col(s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        let message = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        let hint = if message.contains("unknown field") || message.contains("unknown variant") {
            "; check the spelling (rigs/example-lab.toml documents every key)"
        } else if message.contains("missing field") {
            "; add it (rigs/example-lab.toml documents every key)"
        } else if self.doc.is_none() {
            "; this is a TOML syntax error"
        } else {
            ""
        };
        RigError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            key,
            problem: format!("{message}{hint}"),
        }
    }
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

fn find_path_table(table: &dyn toml_edit::TableLike, offset: usize, path: &mut Vec<Seg>) -> bool {
    for (k, child) in table.iter() {
        path.push(key(k));
        let key_span = table.get_key_value(k).and_then(|(key, _)| key.span());
        if contains(key_span, offset) || find_path_item(child, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_path_value(value: &toml_edit::Value, offset: usize, path: &mut Vec<Seg>) -> bool {
    match value {
        toml_edit::Value::InlineTable(t) if find_path_table(t, offset, path) => return true,
        toml_edit::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                if find_path_value(v, offset, path) {
                    return true;
                }
                path.pop();
            }
        }
        _ => {}
    }
    contains(value.span(), offset)
}

/// Finds the deepest key path whose key, value or table header covers `offset`.
fn find_path_item(item: &toml_edit::Item, offset: usize, path: &mut Vec<Seg>) -> bool {
    match item {
        toml_edit::Item::None => false,
        toml_edit::Item::Value(v) => find_path_value(v, offset, path),
        toml_edit::Item::Table(t) => find_path_table(t, offset, path) || contains(t.span(), offset),
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                if find_path_table(t, offset, path) || contains(t.span(), offset) {
                    return true;
                }
                path.pop();
            }
            false
        }
    }
}

/// A position in the syntax tree while following a key path.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn table_like(self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Node::Item(i) => i.as_table_like(),
            Node::Table(t) => Some(t),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike),
        }
    }

    fn index(self, i: usize) -> Option<(Node<'a>, Option<Range<usize>>)> {
        match self {
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => {
                a.get(i).map(|t| (Node::Table(t), t.span()))
            }
            Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a)))
            | Node::Value(toml_edit::Value::Array(a)) => {
                a.get(i).map(|v| (Node::Value(v), v.span()))
            }
            _ => None,
        }
    }
}

/// Start offset of the deepest existing prefix of `path` (the key itself when present), so a
/// problem with a defaulted key points at its table.
fn span_of_path(node: Node<'_>, path: &[Seg], best: Option<usize>) -> Option<usize> {
    let Some((first, rest)) = path.split_first() else {
        return best;
    };
    let next = match first {
        Seg::Key(k) => node
            .table_like()
            .and_then(|t| t.get_key_value(k))
            .map(|(key, child)| (Node::Item(child), key.span())),
        Seg::Index(i) => node.index(*i),
    };
    match next {
        Some((child, span)) => span_of_path(child, rest, span.map(|s| s.start).or(best)),
        None => best,
    }
}

impl Rig {
    /// Reads, parses and validates a rig file.
    pub fn load(path: impl AsRef<Path>) -> Result<Rig, RigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| RigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Rig::parse(&text, path)
    }

    /// Parses and validates rig text; `path` is used in messages and [`Rig::path`].
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Rig, RigError> {
        let path = path.as_ref();
        let source = Source::new(path, text);
        let mut rig: Rig = toml::from_str(text).map_err(|e| source.invalid_from_toml(&e))?;
        rig.path = path.to_owned();
        rig.validate(&source)?;
        Ok(rig)
    }

    /// The file the rig was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The DUT called `name`.
    pub fn dut(&self, name: &str) -> Result<&Dut, RigError> {
        self.duts
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| RigError::UnknownDut {
                path: self.path.clone(),
                name: Some(name.to_owned()),
                known: self.dut_names(),
            })
    }

    /// The DUT called `name`, or the only DUT when `name` is `None` and there is exactly one.
    pub fn select_dut(&self, name: Option<&str>) -> Result<&Dut, RigError> {
        match (name, self.duts.as_slice()) {
            (Some(n), _) => self.dut(n),
            (None, [only]) => Ok(only),
            (None, _) => Err(RigError::UnknownDut {
                path: self.path.clone(),
                name: None,
                known: self.dut_names(),
            }),
        }
    }

    fn dut_names(&self) -> Vec<String> {
        self.duts.iter().map(|d| d.name.clone()).collect()
    }

    /// The PICS of DUT `dut`, refusing (with [`RigError::NoPics`]) when it has none: a run must
    /// not start against a DUT that claims nothing.
    pub fn require_pics(&self, dut: &str) -> Result<Pics, RigError> {
        let d = self.dut(dut)?;
        match &d.pics {
            Some(p) if !p.is_empty() => Ok(p.clone()),
            other => Err(RigError::NoPics {
                path: self.path.clone(),
                dut: d.name.clone(),
                empty: other.is_some(),
            }),
        }
    }

    /// SHA-256 (lower-case hex) of the canonical serialisation (compact JSON of the parsed rig):
    /// comments, key order and formatting do not change it; any value does.
    pub fn hash(&self) -> String {
        // The rig is plain data (strings, numbers, maps): serialising cannot fail.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }

    fn validate(&self, src: &Source<'_>) -> Result<(), RigError> {
        if self.rig.name.trim().is_empty() {
            return Err(src.invalid(
                &[key("rig"), key("name")],
                "the rig name is empty; give it a short name, e.g. \"lab-bench-3\"",
            ));
        }
        if self.duts.is_empty() {
            return Err(src.invalid(
                &[key("rig")],
                "the rig has no [[dut]] entries; add one (see rigs/example-lab.toml)",
            ));
        }
        let mut seen = BTreeMap::new();
        for (i, dut) in self.duts.iter().enumerate() {
            let at = |rest: &[&str]| {
                let mut p = vec![key("dut"), Seg::Index(i)];
                p.extend(rest.iter().map(|k| key(k)));
                p
            };
            if let Some(first) = seen.insert(dut.name.as_str(), i) {
                return Err(src.invalid(
                    &at(&["name"]),
                    format!(
                        "DUT name '{}' is already used by dut[{first}]; names must be unique",
                        dut.name
                    ),
                ));
            }
            dut.validate(src, &at)?;
        }
        Ok(())
    }
}

fn valid_dut_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid_ble_address(a: &str) -> bool {
    let parts: Vec<&str> = a.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

impl Dut {
    fn validate(&self, src: &Source<'_>, at: &dyn Fn(&[&str]) -> Vec<Seg>) -> Result<(), RigError> {
        let virt = self.kind == DutKind::Virtual;
        if !valid_dut_name(&self.name) {
            return Err(src.invalid(
                &at(&["name"]),
                format!(
                    "DUT name {:?} is not usable in file names; use letters, digits, '.', '_' \
                     and '-' (at most 64)",
                    self.name
                ),
            ));
        }
        match (&self.launch, virt) {
            (None, true) => {
                return Err(src.invalid(
                    &at(&["kind"]),
                    "a virtual DUT needs [dut.launch] with `command = [...]`; \
                     or set kind = \"external\" for a device that is already running",
                ))
            }
            (Some(_), false) => {
                return Err(src.invalid(
                    &at(&["launch"]),
                    "[dut.launch] is only for kind = \"virtual\"; the harness does not \
                     start external devices: remove it",
                ))
            }
            _ => {}
        }
        let zero_port = |path: Vec<Seg>| {
            src.invalid(
                &path,
                "port 0 (\"pick a free port\") is only allowed on a virtual DUT; \
                 set the port the device listens on",
            )
        };
        for (table, ep) in [("udp", &self.udp), ("tcp", &self.tcp)] {
            if let Some(ep) = ep {
                if ep.host.trim().is_empty() {
                    return Err(src.invalid(
                        &at(&[table, "host"]),
                        "host is empty; give the DUT's IP address or host name",
                    ));
                }
                if ep.port == 0 && !virt {
                    return Err(zero_port(at(&[table, "port"])));
                }
            }
        }
        if let Some(d) = &self.discovery {
            if !d.group.is_multicast() {
                return Err(src.invalid(
                    &at(&["discovery", "group"]),
                    format!(
                        "{} is not an IPv4 multicast address; use the default 224.0.1.187",
                        d.group
                    ),
                ));
            }
            if !d.group_v6.is_multicast() {
                return Err(src.invalid(
                    &at(&["discovery", "group_v6"]),
                    format!(
                        "{} is not an IPv6 multicast address; use the default ff02::fd",
                        d.group_v6
                    ),
                ));
            }
            if d.port == 0 && !virt {
                return Err(zero_port(at(&["discovery", "port"])));
            }
            if d.interface.as_deref().is_some_and(|i| i.trim().is_empty()) {
                return Err(src.invalid(
                    &at(&["discovery", "interface"]),
                    "interface is empty; name one (e.g. \"eth0\") or remove the key",
                ));
            }
        }
        if let Some(s) = &self.serial {
            if s.path.as_os_str().is_empty() {
                return Err(src.invalid(
                    &at(&["serial", "path"]),
                    "serial path is empty; give the device, e.g. \"/dev/ttyUSB0\"",
                ));
            }
            check_baud(s.baud).map_err(|p| src.invalid(&at(&["serial", "baud"]), p))?;
        }
        if let Some(b) = &self.ble {
            match (&b.address, &b.name) {
                (None, None) => {
                    return Err(src.invalid(
                        &at(&["ble"]),
                        "[dut.ble] needs `address = \"AA:BB:CC:DD:EE:FF\"` or `name = \"...\"`",
                    ))
                }
                (Some(a), _) if !valid_ble_address(a) => {
                    return Err(src.invalid(
                        &at(&["ble", "address"]),
                        format!(
                            "BLE address {a:?} is not six hex pairs separated by ':', \
                             e.g. \"C0:FF:EE:12:34:56\""
                        ),
                    ))
                }
                (_, Some(n)) if n.trim().is_empty() => {
                    return Err(src.invalid(
                        &at(&["ble", "name"]),
                        "BLE name is empty; give the advertised name or remove the key",
                    ))
                }
                _ => {}
            }
        }
        match self.control.endpoint() {
            Err(problem) => {
                let k = if self.control.address.is_some() {
                    "address"
                } else {
                    "kind"
                };
                return Err(src.invalid(&at(&["control", k]), problem));
            }
            Ok(ControlEndpoint::Tcp(ep)) if ep.port == 0 && !virt => {
                return Err(zero_port(at(&["control", "address"])))
            }
            Ok(ControlEndpoint::Stdio) if !virt => {
                return Err(src.invalid(
                    &at(&["control", "kind"]),
                    "kind = \"stdio\" needs a process the harness launches (a virtual DUT); \
                     use \"tcp\" or \"serial\" for an external device",
                ))
            }
            Ok(_) => {}
        }
        if let Some(c) = &self.capture {
            if c.interface.trim().is_empty() {
                return Err(src.invalid(
                    &at(&["capture", "interface"]),
                    "capture interface is empty; name one (e.g. \"eth0\", \"lo\") \
                     or remove [dut.capture]",
                ));
            }
        }
        if let Some(z) = &self.zigbee {
            if z.radio.trim().is_empty() {
                return Err(src.invalid(
                    &at(&["zigbee", "radio"]),
                    "radio is empty; give the tester's Zigbee stick, e.g. \"/dev/ttyUSB0\"",
                ));
            }
            check_baud(z.baud).map_err(|p| src.invalid(&at(&["zigbee", "baud"]), p))?;
            if !z.address.is_template() {
                match z.address.parse_literal() {
                    Ok(n) if n <= 0xFFF7 => {}
                    Ok(n) => {
                        return Err(src.invalid(
                            &at(&["zigbee", "address"]),
                            format!(
                                "{n:#x} is not a unicast Zigbee network address (0x0000..=0xFFF7)"
                            ),
                        ))
                    }
                    Err(p) => return Err(src.invalid(&at(&["zigbee", "address"]), p)),
                }
            }
        }
        if self.udp.is_none()
            && self.tcp.is_none()
            && self.serial.is_none()
            && self.ble.is_none()
            && self.zigbee.is_none()
        {
            return Err(src.invalid(
                &at(&["name"]),
                format!(
                    "DUT '{}' has no transport; add [dut.udp], [dut.tcp], [dut.zigbee], [dut.serial] or [dut.ble]",
                    self.name
                ),
            ));
        }
        self.pixit.validate(src, at)?;
        if let Some(launch) = &self.launch {
            self.validate_launch(launch, src, at)?;
        }
        Ok(())
    }

    fn validate_launch(
        &self,
        launch: &Launch,
        src: &Source<'_>,
        at: &dyn Fn(&[&str]) -> Vec<Seg>,
    ) -> Result<(), RigError> {
        if launch.command.first().is_none_or(|c| c.trim().is_empty()) {
            return Err(src.invalid(
                &at(&["launch", "command"]),
                "the launch command is empty; give the program and its arguments, \
                 e.g. [\"{softbusd}\", \"--config\", \"{config}\"]",
            ));
        }
        let mut names = BTreeMap::new();
        for (i, h) in launch.before.iter().enumerate() {
            let idx = |k: &str| {
                let mut p = at(&["launch", "before"]);
                p.push(Seg::Index(i));
                p.push(key(k));
                p
            };
            if !valid_helper_name(&h.name) {
                return Err(src.invalid(
                    &idx("name"),
                    format!(
                        "helper name {:?} is not usable as a placeholder prefix; use lower-case \
                         letters and digits, starting with a letter (e.g. \"znp\")",
                        h.name
                    ),
                ));
            }
            if let Some(first) = names.insert(h.name.as_str(), i) {
                return Err(src.invalid(
                    &idx("name"),
                    format!(
                        "helper name '{}' is already used by launch.before[{first}]; names must \
                         be unique",
                        h.name
                    ),
                ));
            }
            if h.command.first().is_none_or(|c| c.trim().is_empty()) {
                return Err(src.invalid(
                    &idx("command"),
                    "the helper's command is empty; give the program and its arguments, e.g. \
                     [\"{znp_emulator}\", \"--exit-on-stdin-eof\"]",
                ));
            }
        }
        // Render with stand-in values: this checks placeholders (names, availability, syntax)
        // both with and without a fault, each helper seeing only the helpers before it.
        for fault in [Some("stand-in".to_owned()), None] {
            let mut vars = LaunchVars {
                softbusd: PathBuf::from("softbusd"),
                znp_emulator: PathBuf::from("znp-emulator"),
                vbluez: PathBuf::from("vbluez"),
                config: PathBuf::from("config.toml"),
                fault,
                workdir: PathBuf::from("work"),
                helpers: BTreeMap::new(),
            };
            for (i, h) in launch.before.iter().enumerate() {
                if let Err(RigError::Template {
                    key: k, problem, ..
                }) = self.helper_command(i, &vars)
                {
                    let mut p = at(&[]);
                    p.extend(parse_simple_path(&k));
                    return Err(src.invalid(&p, problem));
                }
                vars.helpers.insert(h.name.clone(), None);
            }
            for (i, arg) in launch.command.iter().enumerate() {
                if let Err(problem) = self.render_str(arg, &vars) {
                    let mut p = at(&["launch", "command"]);
                    p.push(Seg::Index(i));
                    return Err(src.invalid(&p, problem));
                }
            }
            if let Err(RigError::Template {
                key: k, problem, ..
            }) = self.launch_config(&vars)
            {
                let mut p = at(&[]);
                p.extend(parse_simple_path(&k));
                return Err(src.invalid(&p, problem));
            }
            // Link settings may name what helpers announce; the names must exist.
            let mut templates: Vec<(&[&str], &str)> = Vec::new();
            if let Some(z) = &self.zigbee {
                templates.push((&["zigbee", "radio"], &z.radio));
                if let IntOrTemplate::Text(t) = &z.address {
                    templates.push((&["zigbee", "address"], t));
                }
            }
            if let Some(b) = &self.ble {
                for (k, v) in [("name", &b.name), ("dbus", &b.dbus)] {
                    if let Some(v) = v {
                        templates.push((
                            if k == "name" {
                                &["ble", "name"]
                            } else {
                                &["ble", "dbus"]
                            },
                            v,
                        ));
                    }
                }
            }
            for (path, t) in templates {
                if let Err(problem) = self.render_str(t, &vars) {
                    return Err(src.invalid(&at(path), problem));
                }
            }
        }
        Ok(())
    }
}

/// Parses a path rendered by [`render_path`]-like code (`a.b[2].c`, keys possibly quoted).
fn parse_simple_path(s: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix('[') {
            let (num, tail) = r.split_once(']').unwrap_or((r, ""));
            if let Ok(i) = num.parse() {
                out.push(Seg::Index(i));
            }
            rest = tail;
            continue;
        }
        if let Some(r) = rest.strip_prefix('"') {
            // Quoted keys come from `{:?}`; find the closing quote that is not escaped.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in r.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let end = end.unwrap_or(r.len());
            out.push(Seg::Key(r[..end].replace("\\\"", "\"")));
            rest = r.get(end + 1..).unwrap_or("");
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        out.push(Seg::Key(rest[..end].to_owned()));
        rest = &rest[end..];
    }
    out
}

impl Pixit {
    fn validate(&self, src: &Source<'_>, at: &dyn Fn(&[&str]) -> Vec<Seg>) -> Result<(), RigError> {
        if self.pin.len() != 6 || !self.pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(src.invalid(
                &at(&["pixit", "pin"]),
                format!(
                    "PIN {:?} is not 6 digits; write it as a quoted string, e.g. pin = \"123456\"",
                    self.pin
                ),
            ));
        }
        for (k, v) in [
            ("latency_bound_ms", self.latency_bound_ms),
            ("step_timeout_ms", self.step_timeout_ms),
            ("prompt_timeout_ms", self.prompt_timeout_ms),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("lockout_ms", self.lockout_ms),
            ("latency_samples", u64::from(self.latency_samples)),
        ] {
            if v == 0 {
                return Err(src.invalid(
                    &at(&["pixit", k]),
                    format!("{k} must be greater than 0; remove it to use the default"),
                ));
            }
        }
        const HOUR_MS: u64 = 3_600_000;
        for (k, v) in [
            ("latency_bound_ms", self.latency_bound_ms),
            ("step_timeout_ms", self.step_timeout_ms),
            ("prompt_timeout_ms", self.prompt_timeout_ms),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("lockout_ms", self.lockout_ms),
        ] {
            if v > HOUR_MS {
                return Err(src.invalid(
                    &at(&["pixit", k]),
                    format!("{k} = {v} is over an hour; the value is in milliseconds"),
                ));
            }
        }
        if self.case_timeout_ms < 1_000 {
            return Err(src.invalid(
                &at(&["pixit", "case_timeout_ms"]),
                "case_timeout_ms under 1000 leaves a case no time; give milliseconds (default 300000)",
            ));
        }
        if self.latency_samples > 1_000_000 {
            return Err(src.invalid(
                &at(&["pixit", "latency_samples"]),
                "latency_samples is over 1000000; a few hundred give stable percentiles",
            ));
        }
        if self.time_error_bound_us == 0 {
            return Err(src.invalid(
                &at(&["pixit", "time_error_bound_us"]),
                "a time error bound of 0 µs cannot be met; give microseconds (default 2000)",
            ));
        }
        for (t, us) in &self.transport_time_error_bound_us {
            if !["udp", "tcp", "zigbee", "ble"].contains(&t.as_str()) {
                return Err(src.invalid(
                    &at(&["pixit", "transport_time_error_bound_us", t]),
                    format!("unknown transport {t:?}; one of udp, tcp, zigbee, ble"),
                ));
            }
            if *us == 0 {
                return Err(src.invalid(
                    &at(&["pixit", "transport_time_error_bound_us", t]),
                    "a time error bound of 0 µs cannot be met; give microseconds",
                ));
            }
        }
        for (t, ms) in &self.transport_latency_bound_ms {
            if !["udp", "tcp", "zigbee", "ble"].contains(&t.as_str()) {
                return Err(src.invalid(
                    &at(&["pixit", "transport_latency_bound_ms", t]),
                    format!("unknown transport {t:?}; one of udp, tcp, zigbee, ble"),
                ));
            }
            if *ms == 0 {
                return Err(src.invalid(
                    &at(&["pixit", "transport_latency_bound_ms", t]),
                    "a latency bound of 0 ms cannot be met; give milliseconds",
                ));
            }
        }
        if self
            .ble_connection_interval_us
            .is_some_and(|i| !(7_500..=4_000_000).contains(&i) || i % 1250 != 0)
        {
            return Err(src.invalid(
                &at(&["pixit", "ble_connection_interval_us"]),
                "a BLE connection interval is a multiple of 1250 µs from 7500 to 4000000",
            ));
        }
        if self.serial_baud == Some(0) {
            return Err(src.invalid(
                &at(&["pixit", "serial_baud"]),
                "serial_baud is 0; give the line speed in bits/s (e.g. 115200) or leave it out",
            ));
        }
        for (list, items) in [
            ("capabilities", &self.capabilities),
            ("services", &self.services),
            ("bridge_unreachable", &self.bridge_unreachable),
        ] {
            for (i, item) in items.iter().enumerate() {
                if item.trim().is_empty() {
                    let mut p = at(&["pixit", list]);
                    p.push(Seg::Index(i));
                    return Err(src.invalid(&p, format!("empty entry in {list}; remove it")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rigs_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../rigs")
    }

    const MINIMAL: &str = r#"
[rig]
name = "t"

[[dut]]
name = "a"
kind = "external"

[dut.udp]
host = "192.0.2.7"
port = 40000

[dut.pics]
DISC_COAP = true
"#;

    fn parse(text: &str) -> Result<Rig, RigError> {
        Rig::parse(text, "rigs/test.toml")
    }

    fn invalid(text: &str) -> (String, Option<usize>, String) {
        match parse(text) {
            Err(e @ RigError::Invalid { .. }) => {
                let msg = e.to_string();
                let RigError::Invalid { key, line, .. } = e else {
                    unreachable!()
                };
                (key, line, msg)
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn loads_the_shipped_rigs() {
        let virt = Rig::load(rigs_dir().join("virtual.toml")).unwrap_or_else(|e| panic!("{e}"));
        let dut = virt.dut("reference").unwrap();
        assert_eq!(dut.kind, DutKind::Virtual);
        assert_eq!(dut.udp.as_ref().unwrap().port, 0);
        assert_eq!(dut.pixit.heartbeat_interval_ms, 200);
        assert_eq!(dut.pixit.prompt_timeout_ms, 1000);
        assert_eq!(dut.pixit.lockout_ms, 3000);
        assert_eq!(dut.capture.as_ref().unwrap().interface, "lo");
        let pics = virt.require_pics("reference").unwrap();
        assert!(pics.get("TRANSPORT_UDP"));
        assert!(pics.get("TRANSPORT_BLE") && pics.get("TRANSPORT_ZIGBEE"));
        assert_eq!(dut.zigbee.as_ref().unwrap().radio, "{znp_nodes_tester_pty}");
        assert_eq!(
            dut.ble.as_ref().unwrap().dbus.as_deref(),
            Some("{vbluez_dbus}")
        );
        assert_eq!(
            dut.pixit.latency_bound_on("zigbee"),
            Duration::from_millis(150)
        );
        assert_eq!(dut.pixit.latency_bound_on("udp"), Duration::from_millis(20));

        let lab = Rig::load(rigs_dir().join("example-lab.toml")).unwrap_or_else(|e| panic!("{e}"));
        let dut = lab.select_dut(None).unwrap();
        assert_eq!(dut.kind, DutKind::External);
        assert_eq!(
            dut.serial.as_ref().unwrap().path,
            PathBuf::from("/dev/ttyUSB2")
        );
        let z = dut
            .zigbee_resolved(&LaunchVars::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (z.radio.as_str(), z.baud, z.address),
            ("/dev/ttyUSB0", 115_200, 0x1A2B)
        );
        assert_eq!(dut.serial.as_ref().unwrap().baud, 115_200);
        assert_eq!(
            dut.control_endpoint().unwrap(),
            ControlEndpoint::Serial(SerialLink {
                path: "/dev/ttyUSB1".into(),
                baud: 115_200
            })
        );
        assert!(dut.ble.as_ref().unwrap().address.is_some());
        assert_eq!(dut.capture.as_ref().unwrap().interface, "eth0");
        lab.require_pics(&dut.name).unwrap();
    }

    #[test]
    fn virtual_rig_launches_with_and_without_fault() {
        let rig = Rig::load(rigs_dir().join("virtual.toml")).unwrap();
        let dut = rig.dut("reference").unwrap().allocate_ports().unwrap();
        let udp = dut.udp.as_ref().unwrap().port;
        let disc = dut.discovery.as_ref().unwrap().port;
        let ControlEndpoint::Tcp(ctl) = dut.control_endpoint().unwrap() else {
            panic!("virtual rig control should be tcp")
        };
        assert!(udp != 0 && disc != 0 && ctl.port != 0);
        assert!(udp != disc, "UDP ports must be distinct");
        let mut vars = LaunchVars {
            softbusd: "/bin/softbusd".into(),
            config: "/tmp/w/config.toml".into(),
            fault: Some("accept-replay".into()),
            workdir: "/tmp/w".into(),
            ..LaunchVars::default()
        };
        // The virtual Zigbee network and the virtual BlueZ are launched first.
        assert_eq!(dut.helpers().len(), 2);
        assert_eq!(dut.helpers()[0].name, "znp");
        assert_eq!(dut.helpers()[1].name, "vbluez");
        vars.znp_emulator = "/bin/znp-emulator".into();
        vars.vbluez = "/bin/vbluez".into();
        assert_eq!(
            dut.helper_command(0, &vars).unwrap(),
            [
                "/bin/znp-emulator",
                "--node",
                "dut",
                "--node",
                "tester",
                "--exit-on-stdin-eof"
            ]
        );
        let announced = serde_json::json!({
            "pty": "/dev/pts/9",
            "baud": 115200,
            "devices": [],
            "nodes": {
                "dut": {"pty": "/dev/pts/10", "nwk": 12098},
                "tester": {"pty": "/dev/pts/11", "nwk": 34656}
            }
        });
        vars.helpers
            .insert("znp".into(), Some(helper_placeholders("znp", &announced)));
        let argv = dut.helper_command(1, &vars).unwrap();
        assert_eq!(
            argv[..3],
            ["/bin/vbluez", "--bus-socket", "/tmp/w/../vbluez.bus"]
        );
        let announced = serde_json::json!({"dbus": "unix:path=/tmp/b", "radio": "/tmp/r.sock"});
        vars.helpers.insert(
            "vbluez".into(),
            Some(helper_placeholders("vbluez", &announced)),
        );
        assert_eq!(
            dut.launch_command(&vars).unwrap(),
            [
                "/bin/softbusd",
                "--config",
                "/tmp/w/config.toml",
                "--exit-on-stdin-eof",
                "--fault",
                "accept-replay"
            ]
        );
        vars.fault = None;
        assert_eq!(
            dut.launch_command(&vars).unwrap(),
            [
                "/bin/softbusd",
                "--config",
                "/tmp/w/config.toml",
                "--exit-on-stdin-eof"
            ]
        );
        let config = dut
            .launch_config(&vars)
            .unwrap()
            .expect("virtual rig has a config");
        let table: toml::Table = toml::from_str(&config).unwrap();
        let text = table.to_string();
        assert!(text.contains(&udp.to_string()), "{text}");
        assert!(!text.contains('{'), "placeholders left in {text}");
        assert_eq!(table["bridge"]["znp"].as_str(), Some("/dev/pts/9"));
        assert_eq!(table["bridge"]["baud"].as_integer(), Some(115_200));
        assert_eq!(table["zigbee"]["znp"].as_str(), Some("/dev/pts/10"));
        assert_eq!(table["ble"]["radio"].as_str(), Some("/tmp/r.sock"));
        let z = dut.zigbee_resolved(&vars).unwrap().unwrap();
        assert_eq!((z.radio.as_str(), z.address), ("/dev/pts/11", 12098));
        let b = dut.ble_resolved(&vars).unwrap().unwrap();
        assert_eq!(b.dbus.as_deref(), Some("unix:path=/tmp/b"));
        assert_eq!(b.name.as_deref(), Some("reference"));
    }

    #[test]
    fn helper_announcements_become_placeholders() {
        let announced = serde_json::json!({
            "pty": "/dev/pts/3",
            "baud": 57600,
            "ok": true,
            "network": {"channel": 15, "pan_id": 6754},
            "devices": [{"nwk": 1}],
            "gone": null,
            "ratio": 0.5
        });
        let p = helper_placeholders("znp", &announced);
        assert_eq!(p["znp_pty"], HelperValue::Text("/dev/pts/3".into()));
        assert_eq!(p["znp_baud"], HelperValue::Int(57_600));
        assert_eq!(p["znp_ok"], HelperValue::Text("true".into()));
        assert_eq!(p["znp_network_channel"], HelperValue::Int(15));
        assert_eq!(p["znp_ratio"], HelperValue::Text("0.5".into()));
        assert!(!p.contains_key("znp_devices") && !p.contains_key("znp_gone"));

        let text = MINIMAL.replace("kind = \"external\"", "kind = \"virtual\"")
            + r#"
[dut.launch]
command = ["sbd", "--coordinator={znp_pty}"]
[[dut.launch.before]]
name = "znp"
command = ["{znp_emulator}", "--exit-on-stdin-eof"]
[[dut.launch.before]]
name = "sniffer"
command = ["sniff", "{znp_pty}"]
[dut.launch.config.bridge]
baud = "{znp_baud}"
"#;
        let rig = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let dut = &rig.duts[0];
        let mut vars = LaunchVars {
            znp_emulator: "emu".into(),
            ..LaunchVars::default()
        };
        assert_eq!(
            dut.helper_command(0, &vars).unwrap(),
            ["emu", "--exit-on-stdin-eof"]
        );
        vars.helpers.insert("znp".into(), Some(p));
        assert_eq!(
            dut.helper_command(1, &vars).unwrap(),
            ["sniff", "/dev/pts/3"]
        );
        assert_eq!(
            dut.launch_command(&vars).unwrap(),
            ["sbd", "--coordinator=/dev/pts/3"]
        );
        let cfg: toml::Table = toml::from_str(&dut.launch_config(&vars).unwrap().unwrap()).unwrap();
        assert_eq!(cfg["bridge"]["baud"].as_integer(), Some(57_600));

        // A field the helper did not announce is an error naming what it did announce.
        vars.helpers.insert(
            "znp".into(),
            Some(helper_placeholders("znp", &serde_json::json!({"baud": 1}))),
        );
        let e = dut.launch_command(&vars).unwrap_err().to_string();
        assert!(
            e.contains("launch.command[1]") && e.contains("{znp_baud}"),
            "{e}"
        );
    }

    #[test]
    fn helpers_are_checked_at_load() {
        let base = MINIMAL.replace("kind = \"external\"", "kind = \"virtual\"")
            + "[dut.launch]\ncommand = [\"sbd\"]\n";
        let (key, _, msg) = invalid(
            &(base.clone() + "[[dut.launch.before]]\nname = \"Zn_p\"\ncommand = [\"x\"]\n"),
        );
        assert_eq!(key, "dut[0].launch.before[0].name", "{msg}");
        let (key, _, msg) = invalid(
            &(base.clone()
                + "[[dut.launch.before]]\nname = \"a\"\ncommand = [\"x\"]\n\
                   [[dut.launch.before]]\nname = \"a\"\ncommand = [\"y\"]\n"),
        );
        assert_eq!(key, "dut[0].launch.before[1].name", "{msg}");
        assert!(msg.contains("already used"), "{msg}");
        let (key, _, msg) =
            invalid(&(base.clone() + "[[dut.launch.before]]\nname = \"a\"\ncommand = []\n"));
        assert_eq!(key, "dut[0].launch.before[0].command", "{msg}");
        // A helper sees only the helpers before it, not itself.
        let (key, _, msg) = invalid(
            &(base.clone()
                + "[[dut.launch.before]]\nname = \"a\"\ncommand = [\"x\", \"{a_pty}\"]\n"),
        );
        assert_eq!(key, "dut[0].launch.before[0].command[1]", "{msg}");
        assert!(msg.contains("unknown placeholder {a_pty}"), "{msg}");
        let (key, _, msg) = invalid(&(base + "[dut.launch.config]\nport = \"{b_port}\"\n"));
        assert_eq!(key, "dut[0].launch.config.port", "{msg}");
    }

    #[test]
    fn config_placeholders_become_typed_values() {
        let text = MINIMAL.replace("kind = \"external\"", "kind = \"virtual\"")
            + r#"
[dut.launch]
command = ["{softbusd}", "--fault={fault}", "--literal={{x}}"]
[dut.launch.config]
udp = { bind = "{udp_host}:{udp_port}", port = "{udp_port}" }
fault = "{fault}"
list = ["{pin}", "{fault}", 3]
"#;
        let rig = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let dut = &rig.duts[0];
        let vars = LaunchVars {
            softbusd: "sbd".into(),
            config: "c".into(),
            fault: None,
            workdir: "w".into(),
            ..LaunchVars::default()
        };
        assert_eq!(dut.launch_command(&vars).unwrap(), ["sbd", "--literal={x}"]);
        let cfg: toml::Table = toml::from_str(&dut.launch_config(&vars).unwrap().unwrap()).unwrap();
        assert_eq!(cfg["udp"]["port"].as_integer(), Some(40000));
        assert_eq!(cfg["udp"]["bind"].as_str(), Some("192.0.2.7:40000"));
        assert!(cfg.get("fault").is_none());
        assert_eq!(cfg["list"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn typo_is_reported_with_key_path_and_line() {
        let text = MINIMAL.replace("port = 40000", "prot = 40000");
        let (key, line, msg) = invalid(&text);
        assert_eq!(key, "dut[0].udp.prot");
        assert_eq!(line, Some(11));
        assert!(
            msg.starts_with("rigs/test.toml:11:1: dut[0].udp.prot: unknown field"),
            "{msg}"
        );
        assert!(msg.contains("check the spelling"), "{msg}");
    }

    #[test]
    fn wrong_type_and_missing_field_name_the_key() {
        let (key, line, msg) = invalid(&MINIMAL.replace("40000", "\"forty\""));
        assert_eq!((key.as_str(), line), ("dut[0].udp.port", Some(11)), "{msg}");
        let (key, _, msg) = invalid(&MINIMAL.replace("kind = \"external\"\n", ""));
        assert!(key.starts_with("dut[0]"), "{key}: {msg}");
        assert!(msg.contains("missing field `kind`"), "{msg}");
        let (key, _, msg) = invalid(&MINIMAL.replace("\"external\"", "\"externel\""));
        assert_eq!(key, "dut[0].kind", "{msg}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let (_, line, msg) = invalid("[rig]\nname = \"x\"\n[[dut]\n");
        assert_eq!(line, Some(3), "{msg}");
    }

    #[test]
    fn semantic_errors_name_key_line_and_fix() {
        let (key, line, msg) = invalid(&MINIMAL.replace("40000", "0"));
        assert_eq!((key.as_str(), line), ("dut[0].udp.port", Some(11)));
        assert!(msg.contains("only allowed on a virtual DUT"), "{msg}");

        let (key, _, msg) = invalid(&(MINIMAL.to_owned() + "[dut.pixit]\npin = \"12345\"\n"));
        assert_eq!(key, "dut[0].pixit.pin");
        assert!(msg.contains("6 digits"), "{msg}");

        let (key, line, msg) = invalid(&(MINIMAL.to_owned() + "\n[[dut]]\nname = \"a\"\nkind = \"external\"\n[dut.tcp]\nhost = \"h\"\nport = 1\n"));
        assert_eq!((key.as_str(), line), ("dut[1].name", Some(17)), "{msg}");

        let (key, _, msg) =
            invalid(&(MINIMAL.to_owned() + "[dut.control]\nkind = \"tcp\"\naddress = \"nope\"\n"));
        assert_eq!(key, "dut[0].control.address");
        assert!(msg.contains("host:port"), "{msg}");

        let (key, _, _) = invalid(&(MINIMAL.to_owned() + "[dut.ble]\naddress = \"12:34\"\n"));
        assert_eq!(key, "dut[0].ble.address");

        let (key, _, msg) = invalid(&(MINIMAL.to_owned() + "[dut.launch]\ncommand = [\"x\"]\n"));
        assert_eq!(key, "dut[0].launch", "{msg}");

        let (key, _, msg) =
            invalid(&MINIMAL.replace("[dut.pics]\nDISC_COAP", "[dut.pics]\ndisc_coap"));
        assert!(key.starts_with("dut[0].pics"), "{key}");
        assert!(msg.contains("DISC_COAP"), "{msg}");
    }

    #[test]
    fn launch_placeholders_are_checked_at_load() {
        let base = MINIMAL.replace("kind = \"external\"", "kind = \"virtual\"");
        let (key, _, msg) =
            invalid(&(base.clone() + "[dut.launch]\ncommand = [\"{softbusd}\", \"{nope}\"]\n"));
        assert_eq!(key, "dut[0].launch.command[1]", "{msg}");
        assert!(msg.contains("unknown placeholder {nope}"), "{msg}");
        let (key, _, msg) =
            invalid(&(base.clone() + "[dut.launch]\ncommand = [\"x\", \"{tcp_port}\"]\n"));
        assert_eq!(key, "dut[0].launch.command[1]");
        assert!(msg.contains("[dut.tcp]"), "{msg}");
        let (key, _, msg) = invalid(
            &(base
                + "[dut.launch]\ncommand = [\"x\"]\n[dut.launch.config.net]\nport = \"{oops\"\n"),
        );
        assert_eq!(key, "dut[0].launch.config.net.port", "{msg}");
    }

    #[test]
    fn missing_or_empty_pics_refuses_to_run() {
        let no_pics = MINIMAL.replace("[dut.pics]\nDISC_COAP = true\n", "");
        let rig = parse(&no_pics).unwrap();
        let msg = rig.require_pics("a").unwrap_err().to_string();
        assert_eq!(
            msg,
            "refusing to run: DUT 'a' in rigs/test.toml has no [dut.pics] table; list the \
             features it implements, e.g. `DISC_COAP = true` (see rigs/example-lab.toml)"
        );
        let rig = parse(&MINIMAL.replace("DISC_COAP = true\n", "")).unwrap();
        let msg = rig.require_pics("a").unwrap_err().to_string();
        assert!(msg.contains("an empty [dut.pics] table"), "{msg}");
        assert!(matches!(
            rig.require_pics("zz"),
            Err(RigError::UnknownDut { .. })
        ));
    }

    #[test]
    fn hash_ignores_comments_and_order() {
        let a = parse(MINIMAL).unwrap();
        let b = parse(&format!("# a comment\n{MINIMAL}")).unwrap();
        assert_eq!(a.hash(), b.hash());
        let c = parse(&MINIMAL.replace("40000", "40001")).unwrap();
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn external_dut_ports_are_not_reallocated() {
        let rig = parse(MINIMAL).unwrap();
        let dut = rig.duts[0].allocate_ports().unwrap();
        assert_eq!(dut, rig.duts[0]);
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let msg = Rig::load("/nonexistent/rig.toml").unwrap_err().to_string();
        assert!(msg.contains("/nonexistent/rig.toml"), "{msg}");
    }

    #[test]
    fn key_path_parser_round_trips() {
        let p = vec![
            key("launch"),
            key("config"),
            key("a b"),
            Seg::Index(2),
            key("c"),
        ];
        assert_eq!(parse_simple_path(&render_path(&p)), p);
    }
}
