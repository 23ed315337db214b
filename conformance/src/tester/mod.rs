//! The two testers of ISO/IEC 9646's distributed method: the lower tester ([`lower`]) speaks
//! SoftBus to the DUT over its transports, the upper tester ([`upper`]) drives the DUT through
//! its tester control channel; [`dut`] launches and watches the DUT itself; [`probe`] checks it
//! can be reached; [`clock`] is the lower tester's timebase for the TIME cases.

pub mod clock;
pub mod dut;
pub mod lower;
pub mod probe;
pub mod upper;

/// The largest UDP payload (IPv4): the largest frame a UDP link can carry, so a DUT whose link
/// MTU is at least this cannot be sent an oversized frame over UDP.
pub const MAX_UDP_PAYLOAD: usize = 65_507;
