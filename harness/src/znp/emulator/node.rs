//! Who the sticks are: the coordinator's and router nodes' roles and addresses, a node's
//! addresses derived from its name, and which names are usable.

use super::{EmulatorConfig, ABSENT_NWK, BROADCAST_MIN, LIGHT_NWK, SENSOR_NWK};
use softbus::link::znp::commands::Eui64;

/// What a stick's firmware is configured as (NV `LOGICAL_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Coordinator,
    Router,
}

/// Who a stick is on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) ieee: Eui64,
    pub(super) nwk: u16,
    pub(super) role: Role,
}

/// A router node stick as a host addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    /// The name it was given (`--node NAME`).
    pub name: String,
    /// Its network address.
    pub nwk: u16,
    /// Its IEEE address (TI OUI 00:12:4b).
    pub ieee: Eui64,
}

/// Network addresses no node may take: the coordinator's, the simulated devices', the address
/// the virtual rig configures as an absent light, and broadcasts.
pub(super) fn reserved_nwk(nwk: u16) -> bool {
    matches!(nwk, 0x0000 | LIGHT_NWK | SENSOR_NWK | ABSENT_NWK) || nwk >= BROADCAST_MIN
}

/// FNV-1a (32 bits): a stable hash, so a node's addresses depend on its name only.
pub(super) fn fnv1a(name: &str) -> u32 {
    name.bytes().fold(0x811C_9DC5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The addresses of the router nodes named `names`, in order: a hash of the name, stepped past
/// reserved addresses and those of earlier nodes (so a name keeps its addresses whatever other
/// nodes there are, unless two names collide).
pub(super) fn node_identities(config: &EmulatorConfig, names: &[String]) -> Vec<Identity> {
    let mut out: Vec<Identity> = Vec::new();
    for name in names {
        let h = fnv1a(name);
        let mut nwk = (h ^ (h >> 16)) as u16;
        while reserved_nwk(nwk) || out.iter().any(|i| i.nwk == nwk) {
            nwk = nwk.wrapping_add(0x0101);
        }
        let mut ieee = Eui64(0x0012_4B00_0000_0000 | u64::from(h));
        while ieee == config.ieee || out.iter().any(|i| i.ieee == ieee) {
            ieee = Eui64(0x0012_4B00_0000_0000 | ((ieee.0 + 1) & 0xFFFF_FFFF));
        }
        out.push(Identity {
            ieee,
            nwk,
            role: Role::Router,
        });
    }
    out
}

/// Whether `name` is usable as a node name: it becomes part of announcement fields and rig
/// placeholders (`{znp_node_NAME_pty}`), whose names are ASCII letters, digits and `_`.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
