//! The `softbusd` configuration file (TOML).
//!
//! ```toml
//! [device]
//! name = "living-room-speaker"
//! type = "speaker"                 # phone | speaker | tv | sensor | bridge | ...
//! identity_key = "identity.key"    # hex X25519 secret; created on first start
//! trust_store = "trust.json"       # pinned peers; created on first pairing
//! pin = "123456"                   # pairing PIN (6 digits); omit to refuse pairing
//! prompt_policy = "ask"            # approve | deny | timeout | ask
//! prompt_timeout_ms = 30000
//! heartbeat_interval_ms = 1000
//! lockout_ms = 30000
//! mtu = 1400                       # link MTU, 256..=65535, announced as HELLO max_frame
//! max_message = 65536              # optional: announced in SESSION_ACCEPT, 1024 or more
//! services = ["echo", "sink"]
//!
//! [[capability]]
//! name = "speaker.main"
//! kind = "speaker"
//!
//! [listen]
//! udp = "0.0.0.0:5700"
//! tcp = "0.0.0.0:5700"             # optional
//!
//! [discovery]
//! enabled = true
//! group = "224.0.1.187"
//! port = 5683
//! interface = "0.0.0.0"            # address of the interface to join the group on
//! unicast_port = 5683              # port for unicast CoAP requests (0: any)
//!
//! [control]
//! tcp = "127.0.0.1:5800"           # tester control protocol; omit in production builds
//!
//! [timing]                         # optional: where in the spec's windows the device acts
//! ack_delay_ms = 0                 # ACK this long after its message, 0..=100 ([REL-6])
//! retransmit_late_ms = 0           # each retransmission this late after its RTO, 0..=100 ([REL-8])
//! prev_epoch_grace_ms = 2000       # previous receive epoch kept, 2000..=2500 ([REC-12])
//!
//! [bridge]                         # optional: the protocol converter (spec 10.3)
//! znp = "/dev/ttyUSB0"             # serial port of the Z-Stack 3.x coordinator
//! baud = 115200
//! timeout_ms = 2000                # per exchange with the coordinator or a device
//! discover = true                  # expose the ZCL devices ZDO discovery finds
//!
//! [[bridge.device]]                # and/or devices named statically
//! nwk = 0x4F21                     # network address
//! endpoint = 1
//! capability = "light.onoff.porch" # light.onoff or sensor.temperature, optionally .LABEL
//!
//! [zigbee]                         # optional: the Zigbee link (spec 16.2)
//! znp = "/dev/ttyACM0"             # serial port of a Z-Stack 3.x stick (router or coordinator),
//!                                  # not the bridge's
//! baud = 115200
//! timeout_ms = 1000                # per SREQ and per AF_DATA_CONFIRM
//!
//! [ble]                            # optional: the BLE link (spec 16.3), peripheral role
//! radio = "vbluez.sock"            # the virtual radio's Unix socket (real controllers: no)
//! ```
//!
//! Relative paths are relative to the configuration file. Every error names the file, the key
//! and the problem.

use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::capability::{self, Capability};
use crate::endpoint::{Config, PromptPolicy};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// The device.
    pub device: DeviceSection,
    /// Offered capabilities.
    #[serde(default, rename = "capability")]
    pub capabilities: Vec<Capability>,
    /// Listening sockets.
    pub listen: ListenSection,
    /// CoAP discovery.
    #[serde(default)]
    pub discovery: DiscoverySection,
    /// Tester control channel.
    #[serde(default)]
    pub control: ControlSection,
    /// The protocol converter, when the device bridges ZCL devices.
    #[serde(default)]
    pub bridge: Option<BridgeSection>,
    /// The Zigbee link.
    #[serde(default)]
    pub zigbee: Option<ZigbeeSection>,
    /// The BLE link.
    #[serde(default)]
    pub ble: Option<BleSection>,
    /// Where in the spec's windows the device acts.
    #[serde(default)]
    pub timing: TimingSection,
}

/// `[timing]`: the device's choices within the windows the spec gives it (each defaults to the
/// reference's own: act at once, keep the previous epoch 2 s).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingSection {
    /// ACK delay after handling a reliable message, ms ([REL-6]: within 100).
    #[serde(default)]
    pub ack_delay_ms: u64,
    /// Lateness of each retransmission after its RTO, ms ([REL-8]: at most 100).
    #[serde(default)]
    pub retransmit_late_ms: u64,
    /// How long the previous receive epoch is accepted after a switch, ms ([REC-12]).
    #[serde(default = "default_prev_epoch_grace")]
    pub prev_epoch_grace_ms: u64,
}

impl Default for TimingSection {
    fn default() -> TimingSection {
        TimingSection {
            ack_delay_ms: 0,
            retransmit_late_ms: 0,
            prev_epoch_grace_ms: default_prev_epoch_grace(),
        }
    }
}

fn default_prev_epoch_grace() -> u64 {
    crate::endpoint::MIN_PREV_EPOCH_GRACE.as_millis() as u64
}

impl TimingSection {
    fn validate(&self) -> Result<(), String> {
        use crate::endpoint::{
            MAX_ACK_DELAY, MAX_PREV_EPOCH_GRACE, MAX_RETRANSMIT_LATE, MIN_PREV_EPOCH_GRACE,
        };
        let ms = |d: Duration| d.as_millis() as u64;
        if self.ack_delay_ms > ms(MAX_ACK_DELAY) {
            return Err(format!(
                "timing.ack_delay_ms: {} is past {}, the latest [REL-6] allows an ACK",
                self.ack_delay_ms,
                ms(MAX_ACK_DELAY)
            ));
        }
        if self.retransmit_late_ms > ms(MAX_RETRANSMIT_LATE) {
            return Err(format!(
                "timing.retransmit_late_ms: {} is past {}, the latest [REL-8] allows a \
                 retransmission after its RTO",
                self.retransmit_late_ms,
                ms(MAX_RETRANSMIT_LATE)
            ));
        }
        let (lo, hi) = (ms(MIN_PREV_EPOCH_GRACE), ms(MAX_PREV_EPOCH_GRACE));
        if !(lo..=hi).contains(&self.prev_epoch_grace_ms) {
            return Err(format!(
                "timing.prev_epoch_grace_ms: {} is outside {lo}..={hi} ([REC-12])",
                self.prev_epoch_grace_ms
            ));
        }
        Ok(())
    }

    fn timing(&self) -> crate::endpoint::Timing {
        crate::endpoint::Timing {
            ack_delay: Duration::from_millis(self.ack_delay_ms),
            retransmit_late: Duration::from_millis(self.retransmit_late_ms),
            prev_epoch_grace: Duration::from_millis(self.prev_epoch_grace_ms),
        }
    }
}

/// `[device]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    /// Device name.
    pub name: String,
    /// Device type.
    #[serde(rename = "type", default = "default_type")]
    pub device_type: String,
    /// Identity key file.
    pub identity_key: PathBuf,
    /// Trust store file.
    pub trust_store: PathBuf,
    /// Pairing PIN.
    #[serde(default)]
    pub pin: Option<String>,
    /// Prompt policy.
    #[serde(default = "default_policy")]
    pub prompt_policy: PromptPolicy,
    /// Prompt timeout, ms.
    #[serde(default = "default_prompt_timeout")]
    pub prompt_timeout_ms: u64,
    /// Heartbeat interval, ms.
    #[serde(default = "default_hb")]
    pub heartbeat_interval_ms: u64,
    /// First pairing lock-out, ms.
    #[serde(default = "default_lockout")]
    pub lockout_ms: u64,
    /// Link MTU.
    #[serde(default = "default_mtu")]
    pub mtu: usize,
    /// The max_message announced in SESSION_ACCEPT, 1024 or more ([SESS-8]); absent: each
    /// kind's limit (64 KiB for message and stream sessions, 16 MiB for bytes).
    #[serde(default)]
    pub max_message: Option<usize>,
    /// Offered services.
    #[serde(default = "default_services")]
    pub services: Vec<String>,
}

/// `[listen]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// UDP address for frames.
    pub udp: SocketAddr,
    /// Optional TCP address for frames (u16 length-prefixed).
    #[serde(default)]
    pub tcp: Option<SocketAddr>,
}

/// `[discovery]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySection {
    /// Answer discovery at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Multicast group.
    #[serde(default = "default_group")]
    pub group: Ipv4Addr,
    /// Multicast port.
    #[serde(default = "default_coap_port")]
    pub port: u16,
    /// Interface address to join on.
    #[serde(default = "default_iface")]
    pub interface: Ipv4Addr,
    /// Unicast CoAP port (0: any free port).
    #[serde(default = "default_coap_port")]
    pub unicast_port: u16,
}

impl Default for DiscoverySection {
    fn default() -> Self {
        DiscoverySection {
            enabled: true,
            group: default_group(),
            port: default_coap_port(),
            interface: default_iface(),
            unicast_port: default_coap_port(),
        }
    }
}

/// `[control]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// TCP address of the tester control protocol server.
    #[serde(default)]
    pub tcp: Option<SocketAddr>,
}

/// `[bridge]`: legacy ZCL devices behind a Z-Stack coordinator, exposed as capabilities.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSection {
    /// The coordinator's serial port: a device path (`/dev/ttyUSB0`, `/dev/pts/3`...), used as
    /// written, or a port shared by ser2net, `tcp://HOST:PORT` (raw) or `rfc2217://HOST:PORT`
    /// (Telnet with RFC 2217: the baud rate is set through it).
    pub znp: PathBuf,
    /// Its baud rate.
    #[serde(default = "default_bridge_baud")]
    pub baud: u32,
    /// How long one exchange (an SREQ, or a ZCL request and its answer) may take, ms.
    #[serde(default = "default_bridge_timeout")]
    pub timeout_ms: u64,
    /// Find devices through ZDO (the coordinator's neighbour tables, then each node's active
    /// endpoints and simple descriptors) and expose every on/off light and temperature sensor.
    #[serde(default = "yes")]
    pub discover: bool,
    /// Devices exposed whatever discovery finds (a device that is asleep or away at start).
    #[serde(default, rename = "device")]
    pub devices: Vec<BridgeDeviceSection>,
}

/// `[[bridge.device]]`: one statically configured ZCL device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeDeviceSection {
    /// Network address (0x0001..=0xFFF7).
    pub nwk: u16,
    /// Endpoint serving the cluster (1..=240).
    pub endpoint: u8,
    /// Capability name: `light.onoff` or `sensor.temperature`, optionally followed by `.LABEL`;
    /// the prefix says which cluster the device is driven through.
    pub capability: String,
}

impl BridgeSection {
    /// The bridge's settings, checked.
    pub fn bridge_config(&self) -> crate::bridge::BridgeConfig {
        crate::bridge::BridgeConfig {
            port: self.znp.display().to_string(),
            baud: self.baud,
            timeout: Duration::from_millis(self.timeout_ms),
            discover: self.discover,
            devices: self
                .devices
                .iter()
                .filter_map(|d| {
                    let kind = crate::bridge::BridgedKind::from_capability_name(&d.capability)?;
                    Some(crate::bridge::BridgedDevice {
                        capability: d.capability.clone(),
                        kind,
                        nwk: d.nwk,
                        endpoint: d.endpoint,
                        ieee: None,
                    })
                })
                .collect(),
        }
    }

    fn validate(&self, capabilities: &[Capability]) -> Result<(), String> {
        if self.znp.as_os_str().is_empty() {
            return Err(
                "bridge.znp: is empty; give the coordinator's serial port, e.g. \"/dev/ttyUSB0\""
                    .into(),
            );
        }
        check_serial_addr("bridge.znp", &self.znp)?;
        if self.baud == 0 || self.baud > 12_000_000 {
            return Err(format!(
                "bridge.baud: {} is not a usable rate; use the coordinator's (115200 for Z-Stack 3 sticks)",
                self.baud
            ));
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return Err(format!(
                "bridge.timeout_ms: {} is outside 1..=60000",
                self.timeout_ms
            ));
        }
        if !self.discover && self.devices.is_empty() {
            return Err(
                "bridge.discover: is false and there is no [[bridge.device]]: the bridge \
                        would expose nothing; set discover = true or name devices"
                    .into(),
            );
        }
        let mut names: Vec<&str> = capabilities.iter().map(|c| c.name.as_str()).collect();
        for (i, d) in self.devices.iter().enumerate() {
            if d.nwk == 0x0000 || d.nwk >= 0xFFF8 {
                return Err(format!(
                    "bridge.device[{i}].nwk: {:#06x} is the coordinator or a broadcast address; \
                     give the device's network address (0x0001..=0xfff7)",
                    d.nwk
                ));
            }
            if !(1..=240).contains(&d.endpoint) {
                return Err(format!(
                    "bridge.device[{i}].endpoint: {} is outside 1..=240",
                    d.endpoint
                ));
            }
            if d.capability.len() > 64
                || crate::bridge::BridgedKind::from_capability_name(&d.capability).is_none()
            {
                return Err(format!(
                    "bridge.device[{i}].capability: {:?} is not {} or {}, optionally followed by \
                     .LABEL (at most 64 bytes in all)",
                    d.capability,
                    crate::bridge::LIGHT_ONOFF,
                    crate::bridge::SENSOR_TEMPERATURE
                ));
            }
            if names.contains(&d.capability.as_str()) {
                return Err(format!(
                    "bridge.device[{i}].capability: {:?} is already the name of another capability",
                    d.capability
                ));
            }
            names.push(&d.capability);
        }
        Ok(())
    }
}

/// A serial port key's value must be a path or a `tcp://`/`rfc2217://` address.
fn check_serial_addr(key: &str, value: &std::path::Path) -> Result<(), String> {
    let text = value
        .to_str()
        .ok_or_else(|| format!("{key}: is not valid UTF-8"))?;
    crate::link::serial::SerialAddr::parse(text)
        .map(|_| ())
        .map_err(|e| format!("{key}: {e}"))
}

/// `[zigbee]`: SoftBus over a serial-attached Z-Stack 3.x stick (spec 16.2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZigbeeSection {
    /// The stick's serial port: a device path, used as written, or `tcp://HOST:PORT` /
    /// `rfc2217://HOST:PORT` for one ser2net shares (see [`BridgeSection::znp`]).
    pub znp: PathBuf,
    /// Its baud rate.
    #[serde(default = "default_bridge_baud")]
    pub baud: u32,
    /// Bound on each SREQ and on each wait for a delivery confirmation, ms.
    #[serde(default = "default_zigbee_timeout")]
    pub timeout_ms: u64,
}

impl ZigbeeSection {
    /// The link driver's settings.
    pub fn link_config(&self) -> crate::link::zigbee_driver::ZigbeeLinkConfig {
        crate::link::zigbee_driver::ZigbeeLinkConfig {
            port: self.znp.display().to_string(),
            baud: self.baud,
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }

    fn validate(&self, bridge: Option<&BridgeSection>) -> Result<(), String> {
        if self.znp.as_os_str().is_empty() {
            return Err(
                "zigbee.znp: is empty; give the stick's serial port, e.g. \"/dev/ttyACM0\"".into(),
            );
        }
        check_serial_addr("zigbee.znp", &self.znp)?;
        if self.baud == 0 || self.baud > 12_000_000 {
            return Err(format!(
                "zigbee.baud: {} is not a usable rate; use the stick's (115200 for Z-Stack 3 sticks)",
                self.baud
            ));
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return Err(format!(
                "zigbee.timeout_ms: {} is outside 1..=60000",
                self.timeout_ms
            ));
        }
        if bridge.is_some_and(|b| b.znp == self.znp) {
            return Err(format!(
                "zigbee.znp: {} is also bridge.znp; a serial port has one host, so the link \
                 needs a stick of its own",
                self.znp.display()
            ));
        }
        Ok(())
    }
}

/// `[ble]`: SoftBus over Bluetooth LE as a peripheral (spec 16.3), on the virtual radio.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BleSection {
    /// The virtual radio's Unix socket (relative to the configuration file). Real controllers
    /// are not supported.
    pub radio: PathBuf,
}

fn default_zigbee_timeout() -> u64 {
    1000
}
fn default_bridge_baud() -> u32 {
    115_200
}
fn default_bridge_timeout() -> u64 {
    2000
}
fn yes() -> bool {
    true
}
fn default_type() -> String {
    "device".into()
}
fn default_policy() -> PromptPolicy {
    PromptPolicy::Ask
}
fn default_prompt_timeout() -> u64 {
    30_000
}
fn default_hb() -> u64 {
    1000
}
fn default_lockout() -> u64 {
    30_000
}
fn default_mtu() -> usize {
    1400
}
fn default_services() -> Vec<String> {
    vec!["echo".into(), "sink".into()]
}
fn default_group() -> Ipv4Addr {
    Ipv4Addr::new(224, 0, 1, 187)
}
fn default_coap_port() -> u16 {
    5683
}
fn default_iface() -> Ipv4Addr {
    Ipv4Addr::UNSPECIFIED
}

/// The configuration file is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, naming the key.
    pub problem: String,
}

impl DaemonConfig {
    /// Read, parse and validate a file; relative paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let err = |problem: String| ConfigError {
            path: path.to_owned(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut cfg: DaemonConfig =
            toml::from_str(&text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        cfg.validate().map_err(err)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let ble_radio = cfg.ble.as_mut().map(|b| &mut b.radio);
        for p in [&mut cfg.device.identity_key, &mut cfg.device.trust_store]
            .into_iter()
            .chain(ble_radio)
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let d = &self.device;
        if d.name.is_empty() || d.name.len() > 64 {
            return Err("device.name: must be 1..=64 bytes".into());
        }
        if let Some(pin) = &d.pin {
            if !crate::crypto::is_valid_pin(pin) {
                return Err(format!(
                    "device.pin: \"{pin}\" is not exactly 6 ASCII digits"
                ));
            }
        }
        if d.heartbeat_interval_ms == 0 || d.heartbeat_interval_ms > 3_600_000 {
            return Err("device.heartbeat_interval_ms: must be 1..=3600000".into());
        }
        if !(256..=65535).contains(&d.mtu) {
            return Err(format!("device.mtu: {} is outside 256..=65535", d.mtu));
        }
        if let Some(m) = d
            .max_message
            .filter(|m| *m < crate::endpoint::MIN_MAX_MESSAGE)
        {
            return Err(format!(
                "device.max_message: {m} is below {}, the least a device may announce",
                crate::endpoint::MIN_MAX_MESSAGE
            ));
        }
        for (i, s) in d.services.iter().enumerate() {
            if s.is_empty() || s.len() > 64 {
                return Err(format!("device.services[{i}]: must be 1..=64 bytes"));
            }
        }
        for (i, c) in self.capabilities.iter().enumerate() {
            if c.name.is_empty() || c.name.len() > 64 {
                return Err(format!("capability[{i}].name: must be 1..=64 bytes"));
            }
            if !capability::KINDS.contains(&c.kind.as_str()) {
                return Err(format!(
                    "capability[{i}].kind: \"{}\" is not one of {}",
                    c.kind,
                    capability::KINDS.join(", ")
                ));
            }
            if c.metrics.load > 100 || c.metrics.battery.is_some_and(|b| b > 100) {
                return Err(format!(
                    "capability[{i}].metrics: load and battery are percentages (0..=100)"
                ));
            }
        }
        if let Some(b) = &self.bridge {
            b.validate(&self.capabilities)?;
        }
        if let Some(z) = &self.zigbee {
            z.validate(self.bridge.as_ref())?;
        }
        if self
            .ble
            .as_ref()
            .is_some_and(|b| b.radio.as_os_str().is_empty())
        {
            return Err(
                "ble.radio: is empty; give the virtual radio's socket, e.g. \"vbluez.sock\"".into(),
            );
        }
        self.timing.validate()?;
        if !self.discovery.group.is_multicast() {
            return Err(format!(
                "discovery.group: {} is not a multicast address",
                self.discovery.group
            ));
        }
        Ok(())
    }

    /// The core configuration.
    pub fn endpoint_config(&self, faults: Vec<crate::Fault>) -> Config {
        let d = &self.device;
        Config {
            name: d.name.clone(),
            hb_interval: Duration::from_millis(d.heartbeat_interval_ms),
            mtu: d.mtu,
            max_message: d.max_message,
            prompt_timeout: Duration::from_millis(d.prompt_timeout_ms),
            capabilities: self.capabilities.clone(),
            services: d.services.clone(),
            pin: d.pin.clone(),
            prompt_policy: d.prompt_policy,
            lockout: Duration::from_millis(d.lockout_ms),
            faults,
            timing: self.timing.timing(),
            // The bridge's devices join these once it has found them (see `daemon::run`).
            ..Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<DaemonConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.toml");
        std::fs::write(&p, text).unwrap();
        DaemonConfig::load(&p)
    }

    const GOOD: &str = r#"
[device]
name = "spk"
identity_key = "id.key"
trust_store = "trust.json"
pin = "123456"
[[capability]]
name = "speaker.main"
kind = "speaker"
[listen]
udp = "127.0.0.1:0"
"#;

    #[test]
    fn good_file_loads_and_paths_are_resolved() {
        let c = load_str(GOOD).unwrap();
        assert!(c.device.identity_key.is_absolute());
        assert_eq!(c.capabilities.len(), 1);
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = load_str(&GOOD.replace("123456", "12a"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.toml") && e.contains("device.pin"), "{e}");
        let e = load_str(&GOOD.replace("kind = \"speaker\"", "kind = \"toaster\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("capability[0].kind"), "{e}");
        let e = load_str(&GOOD.replace("name = \"spk\"", "name = \"spk\"\nnmae = 1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nmae"), "{e}");
        let e = load_str(&GOOD.replace("name = \"spk\"", "name = \"spk\"\nmax_message = 1000"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("device.max_message: 1000 is below 1024"), "{e}");
        let c = load_str(&GOOD.replace("name = \"spk\"", "name = \"spk\"\nmax_message = 2048"))
            .unwrap();
        assert_eq!(c.endpoint_config(Vec::new()).max_message, Some(2048));
    }

    #[test]
    fn timing_defaults_to_acting_at_once_and_refuses_what_the_spec_does_not_allow() {
        let c = load_str(GOOD).unwrap();
        assert_eq!(
            c.endpoint_config(Vec::new()).timing,
            crate::endpoint::Timing::default()
        );
        let t = |body: &str| load_str(&format!("{GOOD}\n[timing]\n{body}\n"));
        let c = t("ack_delay_ms = 80\nretransmit_late_ms = 90\nprev_epoch_grace_ms = 2400")
            .unwrap()
            .endpoint_config(Vec::new())
            .timing;
        assert_eq!(c.ack_delay, Duration::from_millis(80));
        assert_eq!(c.retransmit_late, Duration::from_millis(90));
        assert_eq!(c.prev_epoch_grace, Duration::from_millis(2400));
        for (body, want) in [
            ("ack_delay_ms = 101", "timing.ack_delay_ms: 101 is past 100"),
            (
                "retransmit_late_ms = 150",
                "timing.retransmit_late_ms: 150 is past 100",
            ),
            (
                "prev_epoch_grace_ms = 1999",
                "timing.prev_epoch_grace_ms: 1999 is outside 2000..=2500",
            ),
            ("prev_epoch_grace_ms = 2501", "is outside 2000..=2500"),
            ("ack_delay = 5", "unknown field `ack_delay`"),
        ] {
            let e = t(body).unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    const BRIDGE: &str = r#"
[bridge]
znp = "/dev/ttyUSB0"
timeout_ms = 1500

[[bridge.device]]
nwk = 0x4F21
endpoint = 1
capability = "light.onoff.porch"
"#;

    #[test]
    fn bridge_section_loads_with_defaults_and_hex_addresses() {
        let c = load_str(&format!("{GOOD}{BRIDGE}")).unwrap();
        let b = c.bridge.expect("a [bridge] section");
        assert_eq!((b.baud, b.timeout_ms, b.discover), (115_200, 1500, true));
        let bc = b.bridge_config();
        assert_eq!(bc.port, "/dev/ttyUSB0");
        assert_eq!(bc.timeout, Duration::from_millis(1500));
        assert_eq!(bc.devices.len(), 1);
        assert_eq!(bc.devices[0].nwk, 0x4F21);
        assert_eq!(bc.devices[0].kind, crate::bridge::BridgedKind::OnOffLight);
        assert!(load_str(GOOD).unwrap().bridge.is_none());
    }

    #[test]
    fn bad_bridge_config_names_file_and_key() {
        let bad = |from: &str, to: &str, key: &str| {
            let text = format!("{GOOD}{BRIDGE}").replace(from, to);
            let e = load_str(&text).unwrap_err().to_string();
            assert!(e.contains("d.toml") && e.contains(key), "{key}: {e}");
        };
        bad("znp = \"/dev/ttyUSB0\"", "znp = \"\"", "bridge.znp");
        bad("timeout_ms = 1500", "baud = 0", "bridge.baud");
        bad("timeout_ms = 1500", "timeout_ms = 0", "bridge.timeout_ms");
        bad("timeout_ms = 1500", "timeout_ms = 1500\nzpn = 1", "zpn");
        bad("nwk = 0x4F21", "nwk = 0xFFFD", "bridge.device[0].nwk");
        bad("nwk = 0x4F21", "nwk = 0x10000", "nwk");
        bad("endpoint = 1", "endpoint = 0", "bridge.device[0].endpoint");
        bad(
            "\"light.onoff.porch\"",
            "\"fan.main\"",
            "bridge.device[0].capability",
        );
        bad(
            "\"light.onoff.porch\"",
            "\"light.onoffx\"",
            "bridge.device[0].capability",
        );
        // A name a [[capability]] already has.
        bad(
            "name = \"speaker.main\"",
            "name = \"light.onoff.porch\"",
            "already the name",
        );
        let only_discover_off = format!("{GOOD}[bridge]\nznp = \"/dev/x\"\ndiscover = false\n");
        let e = load_str(&only_discover_off).unwrap_err().to_string();
        assert!(e.contains("bridge.discover"), "{e}");
    }

    #[test]
    fn link_sections_load_with_defaults_and_name_their_keys() {
        let c = load_str(&format!(
            "{GOOD}[zigbee]\nznp = \"/dev/pts/9\"\n[ble]\nradio = \"r.sock\"\n"
        ))
        .unwrap();
        let z = c.zigbee.expect("a [zigbee] section").link_config();
        assert_eq!(z.port, "/dev/pts/9");
        assert_eq!((z.baud, z.timeout), (115_200, Duration::from_millis(1000)));
        let radio = c.ble.expect("a [ble] section").radio;
        assert!(
            radio.is_absolute() && radio.ends_with("r.sock"),
            "{radio:?}"
        );
        let bad = |tail: &str, key: &str| {
            let e = load_str(&format!("{GOOD}{tail}")).unwrap_err().to_string();
            assert!(e.contains("d.toml") && e.contains(key), "{key}: {e}");
        };
        bad("[zigbee]\nznp = \"\"\n", "zigbee.znp");
        bad("[zigbee]\nznp = \"/dev/x\"\nbaud = 0\n", "zigbee.baud");
        bad(
            "[zigbee]\nznp = \"/dev/x\"\ntimeout_ms = 0\n",
            "zigbee.timeout_ms",
        );
        bad("[zigbee]\nznp = \"/dev/x\"\nradius = 3\n", "radius");
        bad("[ble]\nradio = \"\"\n", "ble.radio");
        bad("[ble]\nsocket = \"x\"\n", "socket");
        bad(
            &format!("{BRIDGE}[zigbee]\nznp = \"/dev/ttyUSB0\"\n"),
            "zigbee.znp",
        );
    }

    #[test]
    fn serial_ports_may_be_ser2net_urls_and_a_bad_url_names_its_key_and_problem() {
        for url in ["tcp://lab-3:3001", "rfc2217://[::1]:4001"] {
            let c = load_str(&format!("{GOOD}[zigbee]\nznp = \"{url}\"\n")).unwrap();
            assert_eq!(c.zigbee.expect("[zigbee]").link_config().port, url);
        }
        let e = load_str(&format!("{GOOD}[zigbee]\nznp = \"rfc2217://lab-3\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("d.toml") && e.contains("zigbee.znp: \"rfc2217://lab-3\" has no port"),
            "{e}"
        );
        let e = load_str(&format!("{GOOD}{BRIDGE}").replace("/dev/ttyUSB0", "ser2net://h:1"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bridge.znp: \"ser2net://h:1\" has an unknown scheme"),
            "{e}"
        );
    }
}
