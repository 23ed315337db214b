//! Every conformance case, laid out by spec section. Each module opens with the requirements
//! it checks, quoted from the spec.

use softbus_harness::link::Transport;

use crate::case::Case;

pub mod bridge;
pub mod cap;
pub mod ctrl;
pub mod disc;
pub mod err;
pub mod hs;
pub mod lat;
pub mod link;
pub mod live;
pub mod pair;
pub mod perm;
pub mod rec;
pub mod rel;
pub mod sess;
pub mod steps;
pub mod time;

/// Cases that need a link that loses, delays and reorders nothing, with why: each judges
/// every frame the DUT sends, or times them to a few milliseconds, so on an impaired link
/// (`certify --impair`) a frame the tester's own impairment dropped, delayed or reordered would
/// be charged to the DUT. Under `--impair` they are NA with this reason (and run on the clean
/// link of every other run); the other cases are loss-aware (the tester retransmits as the spec
/// requires of a peer, and judges what a lost frame cannot explain).
pub const CLEAN_LINK_ONLY: &[(&str, &str)] = &[
    (
        "SB-REC-002",
        "it judges the seq of every record the DUT sends to step by exactly one",
    ),
    (
        "SB-REC-006",
        "it judges a counter to rise by exactly one for one unreliable record",
    ),
    (
        "SB-PAIR-012",
        "it sends each repeat of a PAIR_CONFIRM once and expects its answer",
    ),
    (
        "SB-ERR-003",
        "it sends each malformed message once and expects exactly one ERROR for each",
    ),
    (
        "SB-REL-004",
        "it sends a fixed out-of-order pattern of messages once each, which loss and reordering change",
    ),
    (
        "SB-REL-005",
        "it counts every retransmission the DUT sends and times each to 100 ms",
    ),
    (
        "SB-LIVE-001",
        "it times the gaps between the DUT's heartbeats to a few milliseconds",
    ),
    (
        "SB-TIME-001",
        "it expects an answer to every unreliable TIME_REQUEST",
    ),
    (
        "SB-TIME-002",
        "it judges the DUT's error bound against the PIXIT bound, which is a clean link's",
    ),
    (
        "SB-TIME-003",
        "it counts the DUT's TIME_REQUESTs per round, which a lost TIME_RESPONSE changes",
    ),
    (
        "SB-TIME-006",
        "it times presentations to the millisecond against a clean link's offset",
    ),
];

/// Why `id` (or the case it runs over another link, `<ID>@<link>`) needs a clean link, if it
/// does ([`CLEAN_LINK_ONLY`]).
pub fn needs_clean_link(id: &str) -> Option<&'static str> {
    let base = id.split('@').next().unwrap_or(id);
    CLEAN_LINK_ONLY
        .iter()
        .find(|(c, _)| *c == base)
        .map(|(_, why)| *why)
}

/// Cases that judge only what crosses a datagram link with one tester identity, so they run
/// again on every other link the DUT claims (spec 16: the layers above a link are the same on
/// all of them). Left out: discovery and TCP (IP only), cases that tell the DUT a tester's IP
/// address or move to another socket, cases with two tester identities (one radio is one link
/// address), and bulk or many-message transfers (SESS-8, SESS-12) that would take minutes on a 250 kbit/s
/// radio.
pub const LINK_GENERIC: &[&str] = &[
    "SB-PAIR-001",
    "SB-PAIR-002",
    "SB-PAIR-005",
    "SB-PAIR-006",
    "SB-HS-001",
    "SB-HS-002",
    "SB-HS-003",
    "SB-HS-004",
    "SB-HS-006",
    "SB-HS-008",
    "SB-REC-001",
    "SB-REC-002",
    "SB-REC-003",
    "SB-REC-004",
    "SB-REC-005",
    "SB-REC-006",
    "SB-REC-007",
    "SB-REL-001",
    "SB-REL-002",
    "SB-REL-003",
    "SB-REL-004",
    "SB-SESS-001",
    "SB-SESS-002",
    "SB-SESS-006",
    "SB-SESS-013",
    "SB-PERM-001",
    "SB-PERM-002",
    "SB-PERM-003",
    "SB-PERM-006",
    "SB-LIVE-001",
    "SB-LIVE-002",
    "SB-ERR-002",
    "SB-ERR-003",
    "SB-ERR-006",
    "SB-CAP-001",
    "SB-LAT-001",
    "SB-LAT-002",
    "SB-LAT-003",
    "SB-TIME-001",
    "SB-TIME-002",
    "SB-TIME-005",
];

/// The non-IP links link-generic cases run again on, in report order.
pub const OTHER_LINKS: [Transport; 2] = [Transport::Zigbee, Transport::Ble];

/// All cases: every case on its own transport in spec order, then the link-generic ones on
/// Zigbee, then on BLE (each gated by the transport's PICS).
pub fn all() -> Vec<Case> {
    let base = on_own_transport();
    let mut v = base.clone();
    for t in OTHER_LINKS {
        v.extend(
            base.iter()
                .filter(|c| LINK_GENERIC.contains(&c.id))
                .map(|c| c.over(t)),
        );
    }
    v
}

/// Every case once, on the transport it is written for, in spec order.
pub fn on_own_transport() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(disc::cases());
    v.extend(pair::cases());
    v.extend(hs::cases());
    v.extend(rec::cases());
    v.extend(rel::cases());
    v.extend(sess::cases());
    v.extend(cap::cases());
    v.extend(bridge::cases());
    v.extend(perm::cases());
    v.extend(live::cases());
    v.extend(err::cases());
    v.extend(ctrl::cases());
    v.extend(lat::cases());
    v.extend(link::cases());
    v.extend(time::cases());
    v
}

#[cfg(test)]
mod tests {
    use softbus_harness::pics::{is_known, Expr};

    /// A rig may declare only the PICS names the harness knows; so every name a case consults
    /// must be among them, or no rig could ever make that case apply.
    #[test]
    fn every_pics_name_a_case_consults_is_known_to_the_harness() {
        for c in super::all() {
            let expr = Expr::parse(c.pics).unwrap_or_else(|e| panic!("{}: {e}", c.id));
            for name in expr.names() {
                assert!(
                    is_known(name),
                    "{} consults PICS `{name}`, which harness::pics::KNOWN lacks",
                    c.id
                );
            }
        }
    }
}
