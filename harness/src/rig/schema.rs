//! The rig file's schema: the serde types a rig TOML deserialises into, one per table, with
//! their defaults. Checking them is [`validate`](super::validate)'s job.

use super::pixit::Pixit;
use super::{
    DEFAULT_BAUD, DEFAULT_DISCOVERY_GROUP, DEFAULT_DISCOVERY_GROUP_V6, DEFAULT_DISCOVERY_PORT,
};
use crate::pics::Pics;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

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
    pub(super) path: PathBuf,
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
    /// Program and arguments, with placeholders (see [`PLACEHOLDERS`](super::PLACEHOLDERS)) in `{braces}`;
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

pub(super) fn default_group() -> Ipv4Addr {
    DEFAULT_DISCOVERY_GROUP
}

pub(super) fn default_group_v6() -> Ipv6Addr {
    DEFAULT_DISCOVERY_GROUP_V6
}

pub(super) fn default_discovery_port() -> u16 {
    DEFAULT_DISCOVERY_PORT
}

pub(super) fn default_baud() -> u32 {
    DEFAULT_BAUD
}

/// `[dut.serial]`: a serial-attached link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialLink {
    /// Device path, e.g. `/dev/ttyUSB0`, or a port ser2net shares: `tcp://HOST:PORT`,
    /// `rfc2217://HOST:PORT`.
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

    pub(super) fn is_template(&self) -> bool {
        matches!(self, IntOrTemplate::Text(t) if t.contains('{'))
    }
}

/// `[dut.zigbee]`: SoftBus over Zigbee (spec 16.2). The harness has its own Zigbee radio (a
/// Z-Stack stick) on the DUT's network and sends to the DUT's network address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZigbeeTarget {
    /// The tester's radio: serial device path, or a port ser2net shares, `tcp://HOST:PORT`
    /// (raw) or `rfc2217://HOST:PORT` (Telnet with RFC 2217, which sets the baud rate);
    /// placeholders allowed.
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
