//! The Zigbee link binding (spec section 16.2): SoftBus datagrams carried as APS payloads
//! between two Zigbee nodes, on a dedicated endpoint, profile and cluster, segmented to the APS
//! payload limit with the common link segmentation ([`super::sar`]).
//!
//! These numbers are part of the wire: a harness talking to a DUT's Zigbee radio uses the same
//! ones, and the emulated network delivers on them.

/// The endpoint SoftBus frames are sent from and delivered to (spec ZB-1).
pub const SOFTBUS_ENDPOINT: u8 = 0x5B;
/// The manufacturer-specific application profile of that endpoint (spec ZB-1).
pub const SOFTBUS_PROFILE: u16 = 0xC05B;
/// The manufacturer-specific cluster every SoftBus APS frame uses (spec ZB-1).
pub const SOFTBUS_CLUSTER: u16 = 0xFC5B;
/// Device ID the endpoint registers with.
pub const SOFTBUS_DEVICE_ID: u16 = 0x0000;
/// Largest APS payload one `AF_DATA_REQUEST` carries without APS fragmentation, with NWK
/// security on (spec ZB-2): one link segment, header included.
pub const APS_PAYLOAD_MAX: usize = 80;
/// `AF_DATA_REQUEST` radius (maximum hops).
pub const RADIUS: u8 = 30;

/// The device states a stick carrying the SoftBus link may settle in: router or coordinator.
pub const STARTED: &[u8] = &[
    super::znp::commands::device_state::STARTED_AS_ROUTER,
    super::znp::commands::device_state::STARTED_AS_COORDINATOR,
];

/// The `AF_REGISTER` of the SoftBus endpoint (spec ZB-1).
pub fn register_request() -> super::znp::commands::AfRegisterReq {
    super::znp::commands::AfRegisterReq {
        endpoint: SOFTBUS_ENDPOINT,
        profile_id: SOFTBUS_PROFILE,
        device_id: SOFTBUS_DEVICE_ID,
        device_version: 0,
        latency_req: 0,
        input_clusters: vec![SOFTBUS_CLUSTER],
        output_clusters: vec![SOFTBUS_CLUSTER],
    }
}
