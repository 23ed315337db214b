//! A virtual Zigbee network: a CC2652 running Z-Stack 3.30 coordinator firmware, as its host
//! sees it over a serial line, with a small network of legacy ZCL devices behind it, and
//! optionally more CC2652 sticks running Z-Stack 3.30 as routers on the same network, each with
//! its own host on its own serial line (how two SoftBus devices talk over Zigbee, spec "Zigbee
//! link binding").
//!
//! Three layers:
//!
//! - [`Network`] is the sans-IO network of sticks: [`Network::handle_frame`],
//!   [`Network::poll_transmit`] and [`Network::poll_timeout`] take the [`StickId`] whose serial
//!   line the frame is on ([`COORDINATOR`], then the nodes). A node stick answers what the
//!   coordinator does where a router makes sense (SYS, NV, `UTIL_GET_DEVICE_INFO` with its own
//!   addresses, `AF_REGISTER`, `ZDO_STARTUP_FROM_APP` and BDB start ending in `DEV_ROUTER`,
//!   the ZDO discovery requests, the RPC error for the rest). An `AF_DATA_REQUEST` on any stick
//!   to another stick's network address crosses the modelled radio and comes out of that stick
//!   as an `AF_INCOMING_MSG`, if its host registered the destination endpoint in the same
//!   profile. A stick's ZDO also answers requests from the other sticks (`ZDO_MGMT_LQI_REQ`
//!   with the coordinator as parent, `ZDO_ACTIVE_EP_REQ` with the endpoints its host
//!   registered, `ZDO_SIMPLE_DESC_REQ`), so a host walking the network finds the nodes (and
//!   nothing it would bridge on them).
//! - [`Coordinator`] is the coordinator stick of such a network, as its one host sees it. [`Coordinator::handle_frame`] takes a frame and the
//!   instant its last byte arrived; [`Coordinator::poll_transmit`] gives frames whose time has
//!   come; [`Coordinator::poll_timeout`] says when the next one is due. It answers what
//!   zigpy-znp's startup asks (`SYS_PING`, `UTIL_ASSOC_FIND_DEVICE` for struct alignment, NV
//!   length and reads of the network parameters, `SYS_VERSION`, `UTIL_GET_DEVICE_INFO`, BDB
//!   commissioning), keeps an NV store holding a formed network, registers endpoints, and
//!   carries `AF_DATA_REQUEST`s (unicast, or broadcast to every device) over a modelled
//!   802.15.4 radio to the simulated devices, whose ZCL answers come back as `AF_INCOMING_MSG`
//!   after the `AF_DATA_CONFIRM`. It answers the ZDO requests a host uses to find what is on
//!   the network (`ZDO_MGMT_LQI_REQ` for neighbour tables, `ZDO_ACTIVE_EP_REQ`,
//!   `ZDO_SIMPLE_DESC_REQ`) for itself and for the devices, over the same radio model. SREQs it
//!   does not implement get the RPC error SRSP real firmware sends, so a host sees "not
//!   recognised", never silence.
//! - [`Emulator`] puts each stick on its own PTY pair (`serialport::TTYPort::pair`) and paces
//!   each line like a real UART: each byte it writes is released only once it would have finished crossing an
//!   8N1 line at the configured baud (10 bits per byte), and each frame it reads counts as
//!   received only when its last byte would have arrived. Latency measured through it therefore
//!   includes the wire time a USB-serial coordinator stick would add. With nodes, every stick
//!   has a reader and a writer thread sharing the one network, so one line's pacing never holds
//!   up another's; the coordinator alone keeps a single loop.
//!
//! The network:
//!
//! | device | NWK | IEEE | endpoint | clusters |
//! |---|---|---|---|---|
//! | coordinator stick | 0x0000 | [`EmulatorConfig::ieee`] | what its host registers | what its host registers |
//! | on/off light (router) | [`LIGHT_NWK`] | [`LIGHT_IEEE`] | 1 | Basic, On/Off (0x0006: Off, On, Toggle; attribute OnOff) |
//! | temperature sensor (end device, rx on when idle) | [`SENSOR_NWK`] | [`SENSOR_IEEE`] | 1 | Basic, Temperature Measurement (0x0402: MeasuredValue about 21.5 °C) |
//! | router stick per node ([`EmulatorConfig::nodes`], `--node NAME`) | from the name | 00:12:4b:00 + from the name | what its host registers (SoftBus: 0x5B) | what its host registers |
//!
//! A node's addresses are an FNV-1a hash of its name (so stable across runs and whatever other
//! nodes there are), stepped past the coordinator's, the devices', 0x6B0D (the rig's absent
//! light), broadcasts and earlier nodes': `dut` is 0x2F42 / 00:12:4b:00:d7:30:f8:72, `harness`
//! 0xF4F1 / 00:12:4b:00:b5:1a:41:eb. [`Network::nodes`] and the announcement say which.
//!
//! The light, the sensor and the router sticks that are up are children of the coordinator, so
//! its neighbour table lists them (devices first); the light's and each stick's table lists the
//! coordinator as its parent; the sensor, an end device, keeps no table.
//!
//! Between sticks: an `AF_DATA_REQUEST` gets its SRSP after the MT turnaround; the frame is on
//! the air from then for the CSMA backoff and 51 + payload bytes, and comes out of the
//! destination stick as an `AF_INCOMING_MSG` (group 0, the cluster, the sender's NWK address
//! and endpoint, was_broadcast 0, LQI 200, security 0, the MAC timestamp, the sender's APS
//! counter, the payload) when it has been received; the sender's `AF_DATA_CONFIRM` follows the
//! MAC ACK, or, with option 0x10, the destination's APS ACK. A stick's radio sends its frames
//! to other sticks one at a time, so frames from one stick to another arrive in the order sent.
//! As in Z-Stack, the APS layer acknowledges a frame before AF looks for the endpoint, and
//! `afIncomingData` drops a frame for an endpoint the destination's host did not register (or
//! registered in another profile): the sender's confirm says SUCCESS and the destination's host
//! sees nothing. A payload longer than the APS limit
//! ([`softbus::link::zigbee::APS_PAYLOAD_MAX`], 80 bytes) is refused the way `AF_DataRequest`
//! refuses one without APS fragmentation: SRSP `afInvalidParameter` (0x02), no confirm,
//! nothing on the air; on every stick. A router stick whose host has not started it is off the
//! air: its own requests get SRSP `ZNwkInvalidRequest` (0xC2), frames for it end in
//! `AF_DATA_CONFIRM` `MAC_NO_ACK` (0xE9) after four unacknowledged transmissions, it answers no
//! ZDO, and the coordinator's neighbour table leaves it out.
//!
//! Radio timing is a fixed model (no randomness, so runs replay): 2.4 GHz O-QPSK at 250 kbit/s
//! (32 µs per byte), 51 bytes of PHY/MAC/NWK(secured)/APS overhead per frame, the mean CSMA-CA
//! backoff, a MAC ACK after the 192 µs turnaround, and 2 ms for a device to process a ZCL frame.
//!
//! Limits, on purpose: one network, already formed (NV says so, as on a stick that has been used
//! before), which BDB formation or `ZDO_STARTUP_FROM_APP` restores (a node's BDB steering or
//! formation restores its joined network); the emulator does not form new networks, join or
//! leave devices, or model loss, interference, multi-hop routing (every stick hears every
//! other directly), APS retries or APS fragmentation; of ZDO it answers only the three
//! discovery requests above (a request for an address nobody has gets its SRSP and then
//! silence). Frames to the light and sensor keep their own timing (they do not queue behind
//! frames between sticks); broadcasts also reach the other sticks that are up. A malformed SREQ
//! gets an RPC error (invalid length), an unknown address `NWK_NO_ROUTE` after route discovery
//! gives up.
//!
//! The files, bottom up: `node` (who the sticks are), `nv` (a formed network's NV items),
//! `device` (the light and the sensor), `stick` (one stick's MT dispatch), `network` (the
//! sticks and devices on the modelled radio: NWK/APS, ZDO), `coordinator` (the one-host view),
//! `uart` (line pacing and PTY I/O) and `pty` (the serving threads); each uses only those
//! before it.

mod coordinator;
mod device;
mod network;
mod node;
mod nv;
mod pty;
mod stick;
mod uart;

pub use coordinator::Coordinator;
pub use device::DeviceSummary;
pub use network::Network;
pub use node::{valid_node_name, NodeSummary};
pub use pty::{Emulator, EmulatorHandle};
pub use uart::EmulatorError;

use softbus::link::znp::commands::Eui64;
use std::time::Duration;

/// Network address of the simulated on/off light.
pub const LIGHT_NWK: u16 = 0x4F21;

/// Network address of the simulated temperature sensor.
pub const SENSOR_NWK: u16 = 0x7A3C;

/// The endpoint both devices serve their clusters on.
pub const DEVICE_ENDPOINT: u8 = 1;

/// IEEE address of the simulated on/off light.
pub const LIGHT_IEEE: Eui64 = Eui64(0x0017_8801_0B4F_2101);

/// IEEE address of the simulated temperature sensor.
pub const SENSOR_IEEE: Eui64 = Eui64(0x0015_8D00_077A_3C01);

/// SREQ processing time inside the CC2652 before its SRSP starts.
const MT_TURNAROUND: Duration = Duration::from_micros(300);

/// From `SYS_RESET_REQ` to `SYS_RESET_IND`.
const RESET_TIME: Duration = Duration::from_millis(150);

/// From a BDB start to the network being restored from NV.
const NETWORK_RESTORE_TIME: Duration = Duration::from_millis(60);

/// 802.15.4 at 2.4 GHz: 250 kbit/s, so 32 µs per byte.
const AIR_BYTE: Duration = Duration::from_micros(32);

/// PHY (6) + MAC header and FCS (11) + NWK header (8) + NWK security (18) + APS header (8).
const AIR_OVERHEAD_BYTES: u32 = 51;

/// A MAC acknowledgement: PHY (6) + 5.
const MAC_ACK_BYTES: u32 = 11;

/// RX-to-TX turnaround (12 symbols).
const TURNAROUND: Duration = Duration::from_micros(192);

/// Mean CSMA-CA backoff (3.5 unit backoff periods of 320 µs) plus the CCA (128 µs).
const CSMA: Duration = Duration::from_micros(1_248);

/// Time a device takes to act on a ZCL frame and build its answer.
const DEVICE_PROCESSING: Duration = Duration::from_millis(2);

/// Time route discovery takes to give up on an address nobody answers for.
const ROUTE_DISCOVERY_TIMEOUT: Duration = Duration::from_millis(300);

/// Network addresses from here up are broadcast addresses (0xFFFC routers, 0xFFFD rx-on-when-idle,
/// 0xFFFF all).
const BROADCAST_MIN: u16 = 0xFFF8;

/// `AF_DATA_REQUEST` option bit: request an APS acknowledgement.
const AF_ACK_REQUEST: u8 = 0x10;

/// Status of `AF_REGISTER` for an endpoint that is already registered (`ZApsDuplicateEntry`).
const APS_DUPLICATE_ENTRY: u8 = 0xB8;

/// Status of an `AF_DATA_REQUEST` on a router that is on no network (`ZNwkInvalidRequest`).
const NWK_INVALID_REQUEST: u8 = 0xC2;

/// `macAckWaitDuration`: how long the MAC waits for an ACK (54 symbols).
const MAC_ACK_WAIT: Duration = Duration::from_micros(864);

/// Transmissions of an unacknowledged MAC frame: the first and `macMaxFrameRetries` (3).
const MAC_ATTEMPTS: u32 = 4;

/// The LQI the coordinator and the router nodes hear each other at.
const NODE_LQI: u8 = 200;

/// An address the virtual rig configures as a light that is switched off (rigs/virtual.toml):
/// no node takes it.
const ABSENT_NWK: u16 = 0x6B0D;

fn air(payload_bytes: usize) -> Duration {
    let bytes = AIR_OVERHEAD_BYTES + u32::try_from(payload_bytes).unwrap_or(u32::MAX / 64);
    AIR_BYTE * bytes
}

/// What the virtual coordinator is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorConfig {
    /// Line speed that output is paced at; 0 disables pacing.
    pub baud: u32,
    /// The coordinator's IEEE address (TI OUI 00:12:4b).
    pub ieee: Eui64,
    /// PAN ID of the formed network.
    pub pan_id: u16,
    /// Extended PAN ID.
    pub extended_pan_id: Eui64,
    /// Channel (11..=26).
    pub channel: u8,
    /// Network key.
    pub network_key: [u8; 16],
    /// `SYS_VERSION` code revision (the firmware build date).
    pub code_revision: u32,
    /// Log every frame in and out to stderr.
    pub trace: bool,
    /// Router node sticks on the same network, by name (see [`valid_node_name`]); each gets
    /// its own PTY.
    pub nodes: Vec<String>,
}

impl Default for EmulatorConfig {
    fn default() -> EmulatorConfig {
        EmulatorConfig {
            baud: 115_200,
            ieee: Eui64(0x0012_4B00_2A5E_C001),
            pan_id: 0x1A62,
            extended_pan_id: Eui64(0xDDDD_DDDD_DDDD_DDDD),
            channel: 15,
            network_key: [
                0x01, 0x03, 0x05, 0x07, 0x09, 0x0B, 0x0D, 0x0F, 0x00, 0x02, 0x04, 0x06, 0x08, 0x0A,
                0x0C, 0x0D,
            ],
            code_revision: 20_230_507,
            trace: false,
            nodes: Vec::new(),
        }
    }
}

/// Identifies a stick of a [`Network`]: [`COORDINATOR`], then the router nodes, numbered from 1
/// in [`EmulatorConfig::nodes`] order.
pub type StickId = usize;

/// The coordinator's [`StickId`].
pub const COORDINATOR: StickId = 0;

/// A MAC receive timestamp, in 16 µs units since power-up.
fn mac_timestamp(since_boot: Duration) -> u32 {
    (since_boot.as_micros() / 16) as u32
}

#[cfg(test)]
mod tests;
