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

mod launch;
mod pixit;
mod ports;
mod schema;
mod source;
mod validate;

pub use launch::{helper_placeholders, HelperValue, LaunchVars};
pub use pixit::Pixit;
pub use schema::{
    BleResolved, BleTarget, CaptureSpec, Control, ControlEndpoint, ControlKind, Discovery, Dut,
    DutKind, Helper, IntOrTemplate, IpEndpoint, Launch, Rig, RigInfo, SerialLink, ZigbeeResolved,
    ZigbeeTarget,
};

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests;
