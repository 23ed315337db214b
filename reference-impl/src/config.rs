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
//! mtu = 1400
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
        for p in [&mut cfg.device.identity_key, &mut cfg.device.trust_store] {
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
            prompt_timeout: Duration::from_millis(d.prompt_timeout_ms),
            capabilities: self.capabilities.clone(),
            services: d.services.clone(),
            pin: d.pin.clone(),
            prompt_policy: d.prompt_policy,
            lockout: Duration::from_millis(d.lockout_ms),
            faults,
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
    }
}
