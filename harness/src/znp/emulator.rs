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

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};

use softbus::link::znp::commands::{
    bdb, capabilities, device_state, rpc_error, status, AfDataConfirm, AfDataRequestReq,
    AfDataRequestRsp, AfIncomingMsg, AfRegisterReq, AfRegisterRsp,
    AppCnfBdbCommissioningNotification, AppCnfBdbSetChannelReq, AppCnfBdbSetChannelRsp,
    AppCnfBdbStartCommissioningReq, AppCnfBdbStartCommissioningRsp, Command, Eui64, Payload,
    RpcErrorRsp, SysNvLengthReq, SysNvLengthRsp, SysNvReadReq, SysNvReadRsp, SysNvWriteReq,
    SysNvWriteRsp, SysOsalNvDeleteReq, SysOsalNvDeleteRsp, SysOsalNvItemInitReq,
    SysOsalNvItemInitRsp, SysOsalNvLengthReq, SysOsalNvLengthRsp, SysOsalNvReadExtRsp,
    SysOsalNvReadRsp, SysOsalNvWriteExtRsp, SysOsalNvWriteRsp, SysPingRsp, SysResetInd,
    SysVersionRsp, UtilAssocFindDeviceRsp, UtilGetDeviceInfoRsp, ZdoStartupFromAppRsp,
    ZdoStateChangeInd,
};
use softbus::link::znp::commands::{
    logical_type, zdo_status, Neighbor, SimpleDescriptor, ZdoActiveEpCallback, ZdoActiveEpReq,
    ZdoActiveEpRsp, ZdoMgmtLqiCallback, ZdoMgmtLqiReq, ZdoMgmtLqiRsp, ZdoSimpleDescCallback,
    ZdoSimpleDescReq, ZdoSimpleDescRsp,
};
use softbus::link::znp::decoder::Decoder;
use softbus::link::znp::frame::{CommandHeader, CommandType, FrameRepr, Subsystem};
use softbus::link::znp::zcl::{self, FrameType, ReadAttributeRecord, Value, ZclFrame};

use softbus::link::zigbee::APS_PAYLOAD_MAX;

use super::wire_time;

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
/// Home Automation device ID of an On/Off Light.
const HA_ON_OFF_LIGHT: u16 = 0x0100;
/// Home Automation device ID of a Temperature Sensor.
const HA_TEMPERATURE_SENSOR: u16 = 0x0302;
/// Neighbour table entries per `ZDO_MGMT_LQI_RSP` (Z-Stack's `ZDO_MAX_LQI_ITEMS`).
const LQI_PAGE: usize = 3;

/// Z-Stack NV system ID of Z-Stack's own items.
const NV_SYS_ZSTACK: u8 = 1;
/// Extended NV item that holds the legacy OSAL items (sub-ID = OSAL ID).
const NV_ITEM_LEGACY: u16 = 0x0000;
/// Extended NV item: network security material table.
const NV_ITEM_NWK_SEC_MATERIAL_TABLE: u16 = 0x0007;
/// Largest value an NV read SRSP carries (250 minus status and length bytes).
const NV_READ_MAX: usize = 248;

/// OSAL NV IDs the emulator stores.
mod osal {
    pub const EXTADDR: u16 = 0x0001;
    pub const STARTUP_OPTION: u16 = 0x0003;
    pub const NIB: u16 = 0x0021;
    pub const EXTENDED_PAN_ID: u16 = 0x002D;
    pub const NWK_ACTIVE_KEY_INFO: u16 = 0x003A;
    pub const BDBNODEISONANETWORK: u16 = 0x0055;
    pub const PRECFGKEY: u16 = 0x0062;
    pub const PRECFGKEYS_ENABLE: u16 = 0x0063;
    pub const PANID: u16 = 0x0083;
    pub const CHANLIST: u16 = 0x0084;
    pub const LOGICAL_TYPE: u16 = 0x0087;
    pub const TCLK_SEED: u16 = 0x0101;
}

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

/// Lays out a C struct the way the CC2652's compiler does (natural alignment), as Z-Stack
/// writes its structs to NV and to `UTIL_ASSOC_FIND_DEVICE` byte for byte.
/// Padding bytes are whatever memory held: `pad` says what to write there.
#[derive(Debug)]
struct CStruct {
    buf: Vec<u8>,
    align: usize,
    pad: u8,
}

impl CStruct {
    fn new(pad: u8) -> CStruct {
        CStruct {
            buf: Vec::new(),
            align: 1,
            pad,
        }
    }
    fn pad_to(&mut self, align: usize) {
        let pad = (align - self.buf.len() % align) % align;
        self.buf.resize(self.buf.len() + pad, self.pad);
    }
    /// A nested struct: aligned as its most aligned member, padded to its own size.
    fn nested(self, inner: CStruct) -> CStruct {
        let align = inner.align;
        self.field(&inner.finish(), align)
    }
    fn field(mut self, bytes: &[u8], align: usize) -> CStruct {
        self.pad_to(align);
        self.align = self.align.max(align);
        self.buf.extend_from_slice(bytes);
        self
    }
    fn u8(self, v: u8) -> CStruct {
        self.field(&[v], 1)
    }
    fn u16(self, v: u16) -> CStruct {
        self.field(&v.to_le_bytes(), 2)
    }
    fn u32(self, v: u32) -> CStruct {
        self.field(&v.to_le_bytes(), 4)
    }
    fn bytes(self, v: &[u8]) -> CStruct {
        self.field(v, 1)
    }
    fn finish(mut self) -> Vec<u8> {
        self.pad_to(self.align);
        self.buf
    }
}

/// The network information base (`nwkIB_t`) of stick `id` on `config`'s network: the
/// coordinator that formed it, or a router that joined it as the coordinator's child.
fn nib(config: &EmulatorConfig, id: &Identity) -> Vec<u8> {
    let router = id.role == Role::Router;
    let parent_ieee = if router { config.ieee.0 } else { 0 };
    let no_key = [0u8; 17];
    CStruct::new(0x00)
        .u8(0) // SequenceNum
        .u8(5) // PassiveAckTimeout
        .u8(2) // MaxBroadcastRetries
        .u8(0) // MaxChildren
        .u8(20) // MaxDepth
        .u8(0) // MaxRouters
        .u8(0) // dummyNeighborTable
        .u8(30) // BroadcastDeliveryTime
        .u8(0) // ReportConstantCost
        .u8(0) // RouteDiscRetries
        .u8(0) // dummyRoutingTable
        .u8(1) // SecureAllFrames
        .u8(5) // SecurityLevel
        .u8(1) // SymLink
        .u8(if router { 0x8E } else { 0x8F }) // CapabilityFlags (0x01: alternate PAN coordinator)
        .u16(7) // TransactionPersistenceTime
        .u8(2) // nwkProtocolVersion
        .u8(5) // RouteDiscoveryTime
        .u8(30) // RouteExpiryTime
        .u16(id.nwk) // nwkDevAddress
        .u8(config.channel) // nwkLogicalChannel
        .u16(0x0000) // nwkCoordAddress: the parent (a router's is the coordinator)
        .bytes(&parent_ieee.to_le_bytes()) // nwkCoordExtAddress
        .u16(config.pan_id) // nwkPanId
        .u16(8) // nwkState: NWK_ROUTER (a started coordinator)
        .u32(1u32.checked_shl(u32::from(config.channel)).unwrap_or(0)) // channelList
        .u8(15) // beaconOrder
        .u8(15) // superFrameOrder
        .u8(0) // scanDuration
        .u8(0) // battLifeExt
        .u32(1) // allocatedRouterAddresses
        .u32(1) // allocatedEndDeviceAddresses
        .u8(u8::from(router)) // nodeDepth
        .bytes(&config.extended_pan_id.0.to_le_bytes()) // extendedPANID
        .u8(1) // nwkKeyLoaded
        .bytes(&no_key) // spare1
        .bytes(&no_key) // spare2
        .u8(0) // spare3
        .u8(0) // spare4
        .u8(60) // nwkLinkStatusPeriod
        .u8(3) // nwkRouterAgeLimit
        .u8(0) // nwkUseMultiCast
        .u8(u8::from(!router)) // nwkIsConcentrator
        .u8(120) // nwkConcentratorDiscoveryTime
        .u8(10) // nwkConcentratorRadius
        .u8(1) // nwkAllFresh
        .u16(0x0000) // nwkManagerAddr
        .u16(0) // nwkTotalTransmissions
        .u8(0) // nwkUpdateId
        .finish()
}

/// An `associated_devices_t` entry (Z-Stack 3.30, aligned: 36 bytes) for a child.
fn assoc_entry(nwk: u16, index: u16, rx_lqi: u8) -> Vec<u8> {
    let link_info = CStruct::new(0xFF)
        .u8(0) // txCounter
        .u8(1) // txCost
        .u8(rx_lqi) // rxLqi
        .u8(0) // inKeySeqNum
        .u32(0) // inFrmCntr
        .u16(0); // txFailure
    let end_dev = CStruct::new(0xFF)
        .u8(0) // endDevCfg
        .u32(0); // deviceTimeout
    CStruct::new(0xFF)
        .u16(nwk) // shortAddr
        .u16(index) // addrIdx
        .u8(2) // nodeRelation: CHILD_RFD_RX_IDLE
        .u8(1) // devStatus: DEV_SEC_AUTH_STATUS
        .u8(0) // assocCnt
        .u8(0) // age
        .nested(link_info)
        .nested(end_dev)
        .u32(0) // timeoutCounter
        .u8(0) // keepaliveRcv
        .u8(0) // ctrl
        .finish()
}

/// The NV store of stick `id`, on `config`'s network (formed by the coordinator, joined by a
/// router).
fn formed_nv(config: &EmulatorConfig, id: &Identity) -> BTreeMap<(u16, u16), Vec<u8>> {
    let mut nv = BTreeMap::new();
    let mut legacy = |id: u16, v: Vec<u8>| {
        nv.insert((NV_ITEM_LEGACY, id), v);
    };
    legacy(osal::EXTADDR, id.ieee.0.to_le_bytes().to_vec());
    legacy(osal::STARTUP_OPTION, vec![0]);
    legacy(osal::NIB, nib(config, id));
    legacy(
        osal::EXTENDED_PAN_ID,
        config.extended_pan_id.0.to_le_bytes().to_vec(),
    );
    let mut key_info = vec![0u8];
    key_info.extend_from_slice(&config.network_key);
    legacy(osal::NWK_ACTIVE_KEY_INFO, key_info);
    legacy(osal::BDBNODEISONANETWORK, vec![1]);
    legacy(osal::PRECFGKEY, config.network_key.to_vec());
    legacy(osal::PRECFGKEYS_ENABLE, vec![0]);
    legacy(osal::PANID, config.pan_id.to_le_bytes().to_vec());
    legacy(
        osal::CHANLIST,
        1u32.checked_shl(u32::from(config.channel))
            .unwrap_or(0)
            .to_le_bytes()
            .to_vec(),
    );
    let logical = match id.role {
        Role::Coordinator => logical_type::COORDINATOR,
        Role::Router => logical_type::ROUTER,
    };
    legacy(osal::LOGICAL_TYPE, vec![logical]);
    legacy(
        osal::TCLK_SEED,
        (0u8..16).map(|i| i.wrapping_mul(17) ^ 0x5A).collect(),
    );
    // nwkSecMaterialDesc_t: the frame counter for this network, then the global entry.
    let mut ours = 2_500u32.to_le_bytes().to_vec();
    ours.extend_from_slice(&config.extended_pan_id.0.to_le_bytes());
    nv.insert((NV_ITEM_NWK_SEC_MATERIAL_TABLE, 0), ours);
    nv.insert((NV_ITEM_NWK_SEC_MATERIAL_TABLE, 1), [0xFF; 12].to_vec());
    nv
}

/// A simulated device as a host addresses it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceSummary {
    /// `light` or `temperature`.
    pub name: &'static str,
    /// Network address.
    pub nwk: u16,
    /// IEEE address, as Zigbee tools print it.
    pub ieee: String,
    /// The endpoint its clusters are on.
    pub endpoint: u8,
    /// Server clusters.
    pub clusters: Vec<u16>,
}

/// What a simulated device is.
#[derive(Debug, Clone, PartialEq)]
enum DeviceKind {
    Light { on: bool },
    TemperatureSensor,
}

/// A legacy ZCL device in the simulated network.
#[derive(Debug, Clone, PartialEq)]
struct SimDevice {
    name: &'static str,
    model: &'static str,
    nwk: u16,
    ieee: Eui64,
    endpoint: u8,
    lqi: u8,
    kind: DeviceKind,
}

impl SimDevice {
    /// The Zigbee logical type: lights are routers, the sensor an end device.
    fn logical_type(&self) -> u8 {
        match self.kind {
            DeviceKind::Light { .. } => logical_type::ROUTER,
            DeviceKind::TemperatureSensor => logical_type::END_DEVICE,
        }
    }

    /// The simple descriptor of its endpoint.
    fn simple_descriptor(&self) -> SimpleDescriptor {
        SimpleDescriptor {
            endpoint: self.endpoint,
            profile_id: zcl::PROFILE_HA,
            device_id: match self.kind {
                DeviceKind::Light { .. } => HA_ON_OFF_LIGHT,
                DeviceKind::TemperatureSensor => HA_TEMPERATURE_SENSOR,
            },
            device_version: 1,
            input_clusters: self.clusters().to_vec(),
            output_clusters: Vec::new(),
        }
    }

    fn clusters(&self) -> [u16; 2] {
        match self.kind {
            DeviceKind::Light { .. } => [zcl::CLUSTER_BASIC, zcl::CLUSTER_ON_OFF],
            DeviceKind::TemperatureSensor => [zcl::CLUSTER_BASIC, zcl::CLUSTER_TEMPERATURE],
        }
    }

    /// An attribute's value, or the ZCL status why not. `uptime` drives the sensor's reading.
    fn attribute(&self, cluster: u16, attribute: u16, uptime: Duration) -> Result<Value, u8> {
        match (cluster, attribute, &self.kind) {
            (zcl::CLUSTER_BASIC, 0x0000, _) => Ok(Value::U8(8)), // ZCLVersion
            (zcl::CLUSTER_BASIC, 0x0004, _) => Ok(Value::String("SoftBus".into())),
            (zcl::CLUSTER_BASIC, 0x0005, _) => Ok(Value::String(self.model.into())),
            (zcl::CLUSTER_BASIC, 0x0007, DeviceKind::Light { .. }) => Ok(Value::Enum8(0x01)),
            (zcl::CLUSTER_BASIC, 0x0007, _) => Ok(Value::Enum8(0x03)), // battery
            (zcl::CLUSTER_ON_OFF, zcl::ATTR_ON_OFF, DeviceKind::Light { on }) => {
                Ok(Value::Bool(*on))
            }
            (zcl::CLUSTER_TEMPERATURE, zcl::ATTR_MEASURED_VALUE, DeviceKind::TemperatureSensor) => {
                Ok(Value::I16(temperature_centi(uptime)))
            }
            (
                zcl::CLUSTER_TEMPERATURE,
                zcl::ATTR_MIN_MEASURED_VALUE,
                DeviceKind::TemperatureSensor,
            ) => Ok(Value::I16(-4_000)),
            (
                zcl::CLUSTER_TEMPERATURE,
                zcl::ATTR_MAX_MEASURED_VALUE,
                DeviceKind::TemperatureSensor,
            ) => Ok(Value::I16(12_500)),
            _ => Err(zcl::status::UNSUPPORTED_ATTRIBUTE),
        }
    }

    /// Acts on the ZCL frame an `AF_DATA_REQUEST` carries; the answer, if one is due. No
    /// Default Response answers a broadcast (ZCL forbids it); a Read Attributes Response does.
    fn handle(
        &mut self,
        af: &AfDataRequestReq,
        broadcast: bool,
        uptime: Duration,
    ) -> Option<ZclFrame> {
        if af.dst_endpoint != self.endpoint && af.dst_endpoint != 0xFF {
            return None; // no such endpoint: the APS layer drops it
        }
        let (cluster, data) = (af.cluster_id, &af.data);
        let req = ZclFrame::parse(data).ok()?;
        if req.direction != zcl::Direction::ClientToServer || req.manufacturer.is_some() {
            return None;
        }
        let default_rsp = |st: u8| {
            if broadcast {
                return None;
            }
            Some(ZclFrame::response_to(
                &req,
                FrameType::Global,
                zcl::CMD_DEFAULT_RSP,
                zcl::default_rsp_payload(req.command, st),
            ))
        };
        if !self.clusters().contains(&cluster) {
            return default_rsp(zcl::status::UNSUPPORTED_CLUSTER);
        }
        match (req.frame_type, req.command) {
            (FrameType::Global, zcl::CMD_READ_ATTRIBUTES) => {
                let Ok(ids) = zcl::parse_read_attributes(&req.payload) else {
                    return default_rsp(zcl::status::MALFORMED_COMMAND);
                };
                let records: Vec<ReadAttributeRecord> = ids
                    .into_iter()
                    .map(|a| ReadAttributeRecord {
                        attribute: a,
                        result: self.attribute(cluster, a, uptime),
                    })
                    .collect();
                Some(ZclFrame::response_to(
                    &req,
                    FrameType::Global,
                    zcl::CMD_READ_ATTRIBUTES_RSP,
                    zcl::read_attributes_rsp_payload(&records),
                ))
            }
            (FrameType::Global, _) => default_rsp(zcl::status::UNSUP_COMMAND),
            (FrameType::ClusterSpecific, cmd) => match (&mut self.kind, cluster) {
                (DeviceKind::Light { on }, zcl::CLUSTER_ON_OFF) if cmd <= zcl::CMD_TOGGLE => {
                    *on = match cmd {
                        zcl::CMD_OFF => false,
                        zcl::CMD_ON => true,
                        _ => !*on,
                    };
                    if req.disable_default_response {
                        None
                    } else {
                        default_rsp(zcl::status::SUCCESS)
                    }
                }
                _ => default_rsp(zcl::status::UNSUP_COMMAND),
            },
        }
    }
}

/// The sensor's reading in 0.01 °C: 21.50 °C with a slow ±0.25 °C swing (10-minute period).
fn temperature_centi(uptime: Duration) -> i16 {
    let phase = uptime.as_secs_f64() / 600.0 * std::f64::consts::TAU;
    (2_150.0 + 25.0 * phase.sin()).round() as i16
}

/// Something a stick will do at a given instant.
#[derive(Debug, Clone)]
enum Scheduled {
    Send(FrameRepr),
    /// Enter a ZDO state and announce it with `ZDO_STATE_CHANGE_IND`.
    State(u8),
}

/// What a stick's firmware is configured as (NV `LOGICAL_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Coordinator,
    Router,
}

/// Who a stick is on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    ieee: Eui64,
    nwk: u16,
    role: Role,
}

/// Identifies a stick of a [`Network`]: [`COORDINATOR`], then the router nodes, numbered from 1
/// in [`EmulatorConfig::nodes`] order.
pub type StickId = usize;

/// The coordinator's [`StickId`].
pub const COORDINATOR: StickId = 0;

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
fn reserved_nwk(nwk: u16) -> bool {
    matches!(nwk, 0x0000 | LIGHT_NWK | SENSOR_NWK | ABSENT_NWK) || nwk >= BROADCAST_MIN
}

/// FNV-1a (32 bits): a stable hash, so a node's addresses depend on its name only.
fn fnv1a(name: &str) -> u32 {
    name.bytes().fold(0x811C_9DC5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The addresses of the router nodes named `names`, in order: a hash of the name, stepped past
/// reserved addresses and those of earlier nodes (so a name keeps its addresses whatever other
/// nodes there are, unless two names collide).
fn node_identities(config: &EmulatorConfig, names: &[String]) -> Vec<Identity> {
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

/// One CC2652 running Z-Stack 3.30 (ZNP) as its host sees it: the firmware state that belongs
/// to the stick, not to the radio network (see [`Network`] for that).
#[derive(Debug)]
struct Stick {
    name: String,
    id: Identity,
    /// The LQI the coordinator hears it at (and it hears the coordinator at).
    lqi: u8,
    nv: BTreeMap<(u16, u16), Vec<u8>>,
    state: u8,
    endpoints: BTreeMap<u8, AfRegisterReq>,
    queue: BTreeMap<(Instant, u64), Scheduled>,
    seq: u64,
    aps_counter: u8,
    primary_channels: u32,
    /// When its radio has finished with the frames to other sticks it queued so far.
    radio_free: Instant,
}

impl Stick {
    fn new(name: &str, id: Identity, lqi: u8, config: &EmulatorConfig, now: Instant) -> Stick {
        Stick {
            name: name.to_owned(),
            nv: formed_nv(config, &id),
            id,
            lqi,
            state: device_state::INITIALIZED_NOT_STARTED,
            endpoints: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            aps_counter: 0,
            primary_channels: 1u32.checked_shl(u32::from(config.channel)).unwrap_or(0),
            radio_free: now,
        }
    }

    /// The state the stick reports once its network is up.
    fn started_state(&self) -> u8 {
        match self.id.role {
            Role::Coordinator => device_state::STARTED_AS_COORDINATOR,
            Role::Router => device_state::STARTED_AS_ROUTER,
        }
    }

    /// Whether its network is up, so that its radio takes part in the network.
    fn on_air(&self) -> bool {
        self.state == self.started_state()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<FrameRepr> {
        loop {
            let key = *self.queue.keys().next()?;
            if key.0 > now {
                return None;
            }
            match self.queue.remove(&key)? {
                Scheduled::Send(frame) => return Some(frame),
                Scheduled::State(state) => {
                    self.state = state;
                    if let Ok(frame) = (ZdoStateChangeInd { state }).to_frame() {
                        return Some(frame);
                    }
                }
            }
        }
    }

    /// Enters the states due by `now` (their indications stay queued for the host), so that
    /// what happens at `now` sees the stick as it then is, polled or not.
    fn catch_up(&mut self, now: Instant) {
        for ((at, _), what) in self.queue.iter_mut() {
            if *at > now {
                break;
            }
            if let Scheduled::State(state) = *what {
                self.state = state;
                if let Ok(frame) = (ZdoStateChangeInd { state }).to_frame() {
                    *what = Scheduled::Send(frame);
                }
            }
        }
    }

    fn at(&mut self, when: Instant, what: Scheduled) {
        self.seq += 1;
        self.queue.insert((when, self.seq), what);
    }

    fn send_at<P: Payload>(&mut self, when: Instant, payload: P) {
        if let Ok(frame) = payload.to_frame() {
            self.at(when, Scheduled::Send(frame));
        }
    }

    fn handle_areq(&mut self, frame: &FrameRepr, now: Instant) {
        if let Ok(Command::SysResetReq(_)) = Command::from_frame(frame) {
            // A reset forgets everything but NV; the device says hello when it is back.
            self.queue.clear();
            self.endpoints.clear();
            self.state = device_state::INITIALIZED_NOT_STARTED;
            let ind = SysResetInd {
                reason: 0x00, // power-up
                transport_rev: 2,
                product_id: 1,
                major_rel: 2,
                minor_rel: 7,
                maint_rel: 1,
            };
            self.send_at(now + RESET_TIME, ind);
        }
    }

    /// The SREQs a stick answers by itself, without the radio: SYS, NV, UTIL, APP_CNF,
    /// `AF_REGISTER`, `ZDO_STARTUP_FROM_APP`; anything else gets the RPC error.
    fn handle_local(
        &mut self,
        command: Command,
        header: CommandHeader,
        t: Instant,
        config: &EmulatorConfig,
    ) {
        match command {
            Command::SysPingReq(_) => self.send_at(
                t,
                SysPingRsp {
                    capabilities: capabilities::SYS
                        | capabilities::AF
                        | capabilities::ZDO
                        | capabilities::UTIL
                        | capabilities::GP
                        | capabilities::APP_CNF,
                },
            ),
            Command::SysVersionReq(_) => self.send_at(
                t,
                SysVersionRsp {
                    transport_rev: 2,
                    product_id: 1,
                    major_rel: 2,
                    minor_rel: 7,
                    maint_rel: 1,
                    code_revision: Some(config.code_revision),
                    bootloader_build_type: Some(0),
                    bootloader_revision: Some(0xFFFF_FFFF),
                },
            ),
            Command::SysOsalNvLengthReq(SysOsalNvLengthReq { id }) => {
                let len = self.nv.get(&(NV_ITEM_LEGACY, id)).map_or(0, Vec::len);
                self.send_at(
                    t,
                    SysOsalNvLengthRsp {
                        item_len: u16::try_from(len).unwrap_or(u16::MAX),
                    },
                );
            }
            Command::SysOsalNvReadReq(r) => {
                let (status, value) =
                    self.nv_read(NV_ITEM_LEGACY, r.id, usize::from(r.offset), NV_READ_MAX);
                self.send_at(t, SysOsalNvReadRsp { status, value });
            }
            Command::SysOsalNvReadExtReq(r) => {
                let (status, value) =
                    self.nv_read(NV_ITEM_LEGACY, r.id, usize::from(r.offset), NV_READ_MAX);
                self.send_at(t, SysOsalNvReadExtRsp { status, value });
            }
            Command::SysOsalNvWriteReq(w) => {
                let status = self.nv_write(NV_ITEM_LEGACY, w.id, usize::from(w.offset), &w.value);
                self.send_at(t, SysOsalNvWriteRsp { status });
            }
            Command::SysOsalNvWriteExtReq(w) => {
                let status = self.nv_write(NV_ITEM_LEGACY, w.id, usize::from(w.offset), &w.value);
                self.send_at(t, SysOsalNvWriteExtRsp { status });
            }
            Command::SysOsalNvItemInitReq(SysOsalNvItemInitReq {
                id,
                item_len,
                value,
            }) => {
                let status = match self.nv.entry((NV_ITEM_LEGACY, id)) {
                    Entry::Occupied(_) => status::SUCCESS,
                    Entry::Vacant(_) if value.len() > usize::from(item_len) => {
                        status::INVALID_PARAMETER
                    }
                    Entry::Vacant(slot) => {
                        let mut v = value;
                        v.resize(usize::from(item_len), 0xFF);
                        slot.insert(v);
                        status::NV_ITEM_UNINIT
                    }
                };
                self.send_at(t, SysOsalNvItemInitRsp { status });
            }
            Command::SysOsalNvDeleteReq(SysOsalNvDeleteReq { id, item_len }) => {
                let status = match self.nv.get(&(NV_ITEM_LEGACY, id)) {
                    None => status::INVALID_PARAMETER,
                    Some(v) if v.len() != usize::from(item_len) => status::NV_BAD_ITEM_LEN,
                    Some(_) => {
                        self.nv.remove(&(NV_ITEM_LEGACY, id));
                        status::SUCCESS
                    }
                };
                self.send_at(t, SysOsalNvDeleteRsp { status });
            }
            Command::SysNvLengthReq(SysNvLengthReq {
                sys_id,
                item_id,
                sub_id,
            }) => {
                let len = if sys_id == NV_SYS_ZSTACK {
                    self.nv.get(&(item_id, sub_id)).map_or(0, Vec::len)
                } else {
                    0
                };
                self.send_at(
                    t,
                    SysNvLengthRsp {
                        length: u32::try_from(len).unwrap_or(u32::MAX),
                    },
                );
            }
            Command::SysNvReadReq(SysNvReadReq {
                sys_id,
                item_id,
                sub_id,
                offset,
                length,
            }) => {
                let (status, value) = if sys_id == NV_SYS_ZSTACK {
                    self.nv_read(
                        item_id,
                        sub_id,
                        usize::from(offset),
                        usize::from(length).min(NV_READ_MAX),
                    )
                } else {
                    (status::FAILURE, Vec::new())
                };
                let status = if status == status::SUCCESS {
                    status
                } else {
                    status::FAILURE
                };
                self.send_at(t, SysNvReadRsp { status, value });
            }
            Command::SysNvWriteReq(SysNvWriteReq {
                sys_id,
                item_id,
                sub_id,
                offset,
                value,
            }) => {
                let status = if sys_id == NV_SYS_ZSTACK {
                    self.nv_write(item_id, sub_id, usize::from(offset), &value)
                } else {
                    status::FAILURE
                };
                self.send_at(t, SysNvWriteRsp { status });
            }
            Command::UtilGetDeviceInfoReq(_) => {
                let started = self.on_air();
                let rsp = UtilGetDeviceInfoRsp {
                    status: status::SUCCESS,
                    ieee: self.id.ieee,
                    nwk: if started { self.id.nwk } else { 0xFFFE },
                    // The ZNP image can be any of coordinator, router and end device; NV says
                    // which it is.
                    device_type: 0x07,
                    device_state: self.state,
                    assoc_devices: if started && self.id.role == Role::Coordinator {
                        vec![SENSOR_NWK]
                    } else {
                        Vec::new()
                    },
                };
                self.send_at(t, rsp);
            }
            Command::UtilAssocFindDeviceReq(r) => {
                // Z-Stack copies the in-memory struct whatever the index: a free slot is all
                // 0xFF. Hosts size it to learn the firmware's struct alignment. Only the
                // coordinator has a child (the sensor) in its association table.
                let device = match r.index {
                    0 if self.id.role == Role::Coordinator => assoc_entry(SENSOR_NWK, 1, 120),
                    _ => vec![0xFF; 36],
                };
                self.send_at(t, UtilAssocFindDeviceRsp { device });
            }
            Command::ZdoStartupFromAppReq(_) => {
                // 0: restored network state (NV holds a formed or joined network).
                self.send_at(t, ZdoStartupFromAppRsp { state: 0 });
                self.start_network(t);
            }
            Command::AppCnfBdbStartCommissioningReq(AppCnfBdbStartCommissioningReq { mode }) => {
                self.send_at(
                    t,
                    AppCnfBdbStartCommissioningRsp {
                        status: status::SUCCESS,
                    },
                );
                // A coordinator forms (here: restores) its network; a router that is already
                // on one restores it whether asked to form or to steer.
                let starting = match self.id.role {
                    Role::Coordinator => mode & bdb::MODE_NWK_FORMATION,
                    Role::Router => mode & (bdb::MODE_NWK_FORMATION | bdb::MODE_NWK_STEERING),
                };
                if starting != 0 {
                    let done = self.start_network(t);
                    self.send_at(
                        done,
                        AppCnfBdbCommissioningNotification {
                            status: bdb::STATUS_NETWORK_RESTORED,
                            mode: bdb::MODE_NONE,
                            remaining_modes: starting,
                        },
                    );
                    self.send_at(
                        done,
                        AppCnfBdbCommissioningNotification {
                            status: bdb::STATUS_SUCCESS,
                            mode: starting,
                            remaining_modes: bdb::MODE_NONE,
                        },
                    );
                } else {
                    self.send_at(
                        t,
                        AppCnfBdbCommissioningNotification {
                            status: bdb::STATUS_SUCCESS,
                            mode,
                            remaining_modes: bdb::MODE_NONE,
                        },
                    );
                }
            }
            Command::AppCnfBdbSetChannelReq(AppCnfBdbSetChannelReq {
                is_primary,
                channels,
            }) => {
                if is_primary != 0 {
                    self.primary_channels = channels;
                }
                self.send_at(
                    t,
                    AppCnfBdbSetChannelRsp {
                        status: status::SUCCESS,
                    },
                );
            }
            Command::AfRegisterReq(reg) => {
                let status = match self.endpoints.entry(reg.endpoint) {
                    _ if reg.endpoint == 0 || reg.endpoint > 240 => status::INVALID_PARAMETER,
                    Entry::Occupied(_) => APS_DUPLICATE_ENTRY,
                    Entry::Vacant(slot) => {
                        slot.insert(reg);
                        status::SUCCESS
                    }
                };
                self.send_at(t, AfRegisterRsp { status });
            }
            _ => {
                let code = match header.subsystem {
                    Subsystem::Sys
                    | Subsystem::Af
                    | Subsystem::Zdo
                    | Subsystem::Util
                    | Subsystem::AppCnf
                    | Subsystem::Zgp => rpc_error::INVALID_COMMAND_ID,
                    _ => rpc_error::INVALID_SUBSYSTEM,
                };
                self.rpc_error(t, header, code);
            }
        }
    }

    fn rpc_error(&mut self, t: Instant, request: CommandHeader, error_code: u8) {
        self.send_at(
            t,
            RpcErrorRsp {
                error_code,
                req_cmd0: request.cmd0(),
                req_cmd1: request.cmd1(),
            },
        );
    }

    /// Starts the network from NV (if not started); returns when it will be up. A coordinator
    /// passes through `DEV_COORD_STARTING`; a router reports `DEV_ROUTER` once its
    /// start-router request is confirmed.
    fn start_network(&mut self, t: Instant) -> Instant {
        let up = t + NETWORK_RESTORE_TIME;
        if !self.on_air() {
            if self.id.role == Role::Coordinator {
                self.at(t, Scheduled::State(device_state::STARTING_AS_COORDINATOR));
            }
            self.at(up, Scheduled::State(self.started_state()));
        }
        up
    }

    fn nv_read(&self, item: u16, sub: u16, offset: usize, max: usize) -> (u8, Vec<u8>) {
        match self.nv.get(&(item, sub)) {
            None => (status::INVALID_PARAMETER, Vec::new()),
            Some(v) if offset > v.len() => (status::INVALID_PARAMETER, Vec::new()),
            Some(v) => {
                let end = v.len().min(offset.saturating_add(max));
                (status::SUCCESS, v[offset..end].to_vec())
            }
        }
    }

    fn nv_write(&mut self, item: u16, sub: u16, offset: usize, value: &[u8]) -> u8 {
        match self.nv.get_mut(&(item, sub)) {
            None => status::INVALID_PARAMETER,
            Some(v) if offset.saturating_add(value.len()) > v.len() => status::NV_BAD_ITEM_LEN,
            Some(v) => {
                v[offset..offset + value.len()].copy_from_slice(value);
                status::SUCCESS
            }
        }
    }

    /// The simple descriptor of a registered endpoint.
    fn simple_descriptor(&self, endpoint: u8) -> Option<SimpleDescriptor> {
        self.endpoints.get(&endpoint).map(|reg| SimpleDescriptor {
            endpoint: reg.endpoint,
            profile_id: reg.profile_id,
            device_id: reg.device_id,
            device_version: reg.device_version,
            input_clusters: reg.input_clusters.clone(),
            output_clusters: reg.output_clusters.clone(),
        })
    }

    /// Whether its AF hands an APS frame for `endpoint` in `profile` up to the host. Z-Stack's
    /// `afIncomingData` drops a frame for an endpoint nobody registered, or whose profile is
    /// neither the frame's nor the wildcard.
    fn accepts(&self, endpoint: u8, profile: u16) -> bool {
        self.endpoints.get(&endpoint).is_some_and(|reg| {
            reg.profile_id == profile || reg.profile_id == 0xFFFF || profile == 0xFFFF
        })
    }
}

/// The sans-IO simulated network: the coordinator stick, the router node sticks, and the
/// legacy ZCL devices, sharing one modelled radio channel. See the module docs.
///
/// Each stick has its own serial line: [`Network::handle_frame`] takes a frame a stick's host
/// sent and the instant its last byte arrived; [`Network::poll_transmit`] gives the frames a
/// stick has for its host whose time has come; [`Network::poll_timeout`] says when a stick's
/// next one is due.
#[derive(Debug)]
pub struct Network {
    config: EmulatorConfig,
    boot: Instant,
    devices: Vec<SimDevice>,
    /// [`COORDINATOR`] first, then the nodes in [`EmulatorConfig::nodes`] order.
    sticks: Vec<Stick>,
}

impl Network {
    /// A network whose sticks have all just powered up at `now`, each with the network in NV
    /// (formed by the coordinator, joined by the routers) but not started, as Z-Stack 3 waits
    /// for its host. Node names are taken as given (see [`valid_node_name`]); of duplicates,
    /// [`Network::stick`] finds the first.
    pub fn new(config: EmulatorConfig, now: Instant) -> Network {
        let coordinator = Identity {
            ieee: config.ieee,
            nwk: 0x0000,
            role: Role::Coordinator,
        };
        let mut sticks = vec![Stick::new("coordinator", coordinator, 255, &config, now)];
        for (name, id) in config
            .nodes
            .iter()
            .zip(node_identities(&config, &config.nodes))
        {
            sticks.push(Stick::new(name, id, NODE_LQI, &config, now));
        }
        Network {
            boot: now,
            devices: vec![
                SimDevice {
                    name: "light",
                    model: "VirtualLight",
                    nwk: LIGHT_NWK,
                    ieee: LIGHT_IEEE,
                    endpoint: DEVICE_ENDPOINT,
                    lqi: 180,
                    kind: DeviceKind::Light { on: false },
                },
                SimDevice {
                    name: "temperature",
                    model: "VirtualTempSensor",
                    nwk: SENSOR_NWK,
                    ieee: SENSOR_IEEE,
                    endpoint: DEVICE_ENDPOINT,
                    lqi: 120,
                    kind: DeviceKind::TemperatureSensor,
                },
            ],
            sticks,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// How many sticks there are (the coordinator and the nodes).
    pub fn stick_count(&self) -> usize {
        self.sticks.len()
    }

    /// The stick of the node called `name` (`"coordinator"` is [`COORDINATOR`]).
    pub fn stick(&self, name: &str) -> Option<StickId> {
        self.sticks.iter().position(|s| s.name == name)
    }

    /// A stick's name: `coordinator`, or the node's name.
    ///
    /// # Panics
    /// If there is no such stick.
    pub fn stick_name(&self, stick: StickId) -> &str {
        &self.sticks[stick].name
    }

    /// The router nodes, in [`StickId`] order (the first is stick 1).
    pub fn nodes(&self) -> Vec<NodeSummary> {
        self.sticks[1..]
            .iter()
            .map(|s| NodeSummary {
                name: s.name.clone(),
                nwk: s.id.nwk,
                ieee: s.id.ieee,
            })
            .collect()
    }

    /// The simulated ZCL devices.
    pub fn devices(&self) -> Vec<DeviceSummary> {
        self.devices
            .iter()
            .map(|d| DeviceSummary {
                name: d.name,
                nwk: d.nwk,
                ieee: d.ieee.to_string(),
                endpoint: d.endpoint,
                clusters: d.clusters().to_vec(),
            })
            .collect()
    }

    /// A stick's ZDO device state ([`device_state`]).
    ///
    /// # Panics
    /// If there is no such stick.
    pub fn state(&self, stick: StickId) -> u8 {
        self.sticks[stick].state
    }

    /// When `stick`'s next frame for its host is due.
    ///
    /// # Panics
    /// If there is no such stick.
    pub fn poll_timeout(&self, stick: StickId) -> Option<Instant> {
        self.sticks[stick].poll_timeout()
    }

    /// When the next frame of any stick is due.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.sticks.iter().filter_map(Stick::poll_timeout).min()
    }

    /// `stick`'s next frame for its host due at or before `now`, in schedule order.
    ///
    /// # Panics
    /// If there is no such stick.
    pub fn poll_transmit(&mut self, stick: StickId, now: Instant) -> Option<FrameRepr> {
        self.sticks[stick].poll_transmit(now)
    }

    /// Handles a frame from `stick`'s host whose last byte arrived at `now`.
    ///
    /// # Panics
    /// If there is no such stick.
    pub fn handle_frame(&mut self, stick: StickId, frame: &FrameRepr, now: Instant) {
        for s in &mut self.sticks {
            s.catch_up(now);
        }
        match frame.header.kind {
            CommandType::Sreq => self.handle_sreq(stick, frame, now),
            CommandType::Areq => self.sticks[stick].handle_areq(frame, now),
            // A host never sends SRSPs or polls over UART: ignore, as firmware does.
            _ => {}
        }
    }

    fn handle_sreq(&mut self, s: StickId, frame: &FrameRepr, now: Instant) {
        let t = now + MT_TURNAROUND;
        let command = match Command::from_frame(frame) {
            Ok(c) => c,
            Err(_) => return self.sticks[s].rpc_error(t, frame.header, rpc_error::INVALID_LENGTH),
        };
        match command {
            Command::AfDataRequestReq(req) => self.af_data_request(s, req, t),
            Command::ZdoMgmtLqiReq(req) => {
                self.zdo_srsp(
                    s,
                    t,
                    ZdoMgmtLqiRsp {
                        status: status::SUCCESS,
                    },
                );
                self.zdo_mgmt_lqi(s, req, t);
            }
            Command::ZdoActiveEpReq(req) => {
                self.zdo_srsp(
                    s,
                    t,
                    ZdoActiveEpRsp {
                        status: status::SUCCESS,
                    },
                );
                self.zdo_active_ep(s, req, t);
            }
            Command::ZdoSimpleDescReq(req) => {
                self.zdo_srsp(
                    s,
                    t,
                    ZdoSimpleDescRsp {
                        status: status::SUCCESS,
                    },
                );
                self.zdo_simple_desc(s, req, t);
            }
            other => {
                let Network { config, sticks, .. } = self;
                sticks[s].handle_local(other, frame.header, t, config);
            }
        }
    }

    fn zdo_srsp<P: Payload>(&mut self, s: StickId, t: Instant, srsp: P) {
        self.sticks[s].send_at(t, srsp);
    }

    /// The stick with network address `nwk`, other than `not`.
    fn stick_at(&self, nwk: u16, not: StickId) -> Option<StickId> {
        (0..self.sticks.len()).find(|&i| i != not && self.sticks[i].id.nwk == nwk)
    }

    /// When a ZDO answer from `dst` reaches stick `s`'s host, for a request of `req_len` ZDP
    /// bytes and an answer of `rsp_len`: at once from the stick itself, after a radio round trip
    /// from a device or another stick that is on the air, never from an address nobody has.
    fn zdo_answer_at(
        &self,
        s: StickId,
        dst: u16,
        t: Instant,
        req_len: usize,
        rsp_len: usize,
    ) -> Option<Instant> {
        if dst == self.sticks[s].id.nwk {
            return Some(t);
        }
        let reachable = self.devices.iter().any(|d| d.nwk == dst)
            || self
                .stick_at(dst, s)
                .is_some_and(|i| self.sticks[i].on_air());
        reachable.then(|| {
            t + CSMA
                + air(req_len)
                + TURNAROUND
                + AIR_BYTE * MAC_ACK_BYTES
                + DEVICE_PROCESSING
                + CSMA
                + air(rsp_len)
        })
    }

    /// The neighbour table of the node at `nwk`: the coordinator's lists the devices and the
    /// router sticks on the air (all its children); a router's lists the coordinator, its
    /// parent; an end device keeps none.
    fn neighbour_table(&self, nwk: u16) -> Option<Vec<Neighbor>> {
        let ext_pan = self.config.extended_pan_id;
        let coordinator = &self.sticks[COORDINATOR];
        let parent = |lqi: u8| Neighbor {
            extended_pan_id: ext_pan,
            ieee: coordinator.id.ieee,
            nwk: coordinator.id.nwk,
            device_type: logical_type::COORDINATOR,
            rx_on_when_idle: 1,
            relationship: 0, // parent
            permit_joining: 0,
            depth: 0,
            lqi,
        };
        if nwk == coordinator.id.nwk {
            let devices = self
                .devices
                .iter()
                .map(|d| (d.ieee, d.nwk, d.logical_type(), d.lqi));
            let nodes = self.sticks[1..]
                .iter()
                .filter(|s| s.on_air())
                .map(|s| (s.id.ieee, s.id.nwk, logical_type::ROUTER, s.lqi));
            return Some(
                devices
                    .chain(nodes)
                    .map(|(ieee, nwk, device_type, lqi)| Neighbor {
                        extended_pan_id: ext_pan,
                        ieee,
                        nwk,
                        device_type,
                        rx_on_when_idle: 1,
                        relationship: 1, // child
                        permit_joining: 0,
                        depth: 1,
                        lqi,
                    })
                    .collect(),
            );
        }
        if let Some(i) = self.stick_at(nwk, COORDINATOR) {
            return Some(vec![parent(self.sticks[i].lqi)]);
        }
        match self.devices.iter().find(|d| d.nwk == nwk) {
            Some(d) if d.logical_type() == logical_type::ROUTER => Some(vec![parent(d.lqi)]),
            _ => None, // an end device keeps no neighbour table
        }
    }

    fn zdo_mgmt_lqi(&mut self, s: StickId, req: ZdoMgmtLqiReq, t: Instant) {
        let rsp = match self.neighbour_table(req.dst_addr) {
            Some(all) => {
                let page: Vec<Neighbor> = all
                    .iter()
                    .skip(usize::from(req.start_index))
                    .take(LQI_PAGE)
                    .cloned()
                    .collect();
                ZdoMgmtLqiCallback {
                    src_addr: req.dst_addr,
                    status: zdo_status::SUCCESS,
                    neighbor_table_entries: u8::try_from(all.len()).unwrap_or(u8::MAX),
                    start_index: req.start_index,
                    neighbors: page,
                }
            }
            None => ZdoMgmtLqiCallback {
                src_addr: req.dst_addr,
                status: zdo_status::NOT_SUPPORTED,
                ..ZdoMgmtLqiCallback::default()
            },
        };
        let rsp_len = 4 + rsp.neighbors.len() * 22;
        if let Some(at) = self.zdo_answer_at(s, req.dst_addr, t, 2, rsp_len) {
            self.sticks[s].send_at(at, rsp);
        }
    }

    /// The stick with network address `nwk` (any stick, the asker included).
    fn stick_with(&self, nwk: u16) -> Option<&Stick> {
        self.sticks.iter().find(|k| k.id.nwk == nwk)
    }

    fn zdo_active_ep(&mut self, s: StickId, req: ZdoActiveEpReq, t: Instant) {
        let endpoints: Option<Vec<u8>> = if req.dst_addr != req.nwk_addr_of_interest {
            None
        } else if let Some(stick) = self.stick_with(req.dst_addr) {
            Some(stick.endpoints.keys().copied().collect())
        } else {
            self.devices
                .iter()
                .find(|d| d.nwk == req.dst_addr)
                .map(|d| vec![d.endpoint])
        };
        let rsp = ZdoActiveEpCallback {
            src_addr: req.dst_addr,
            status: if endpoints.is_some() {
                zdo_status::SUCCESS
            } else {
                zdo_status::DEVICE_NOT_FOUND
            },
            nwk_addr: req.nwk_addr_of_interest,
            active_endpoints: endpoints.unwrap_or_default(),
        };
        let rsp_len = 5 + rsp.active_endpoints.len();
        if let Some(at) = self.zdo_answer_at(s, req.dst_addr, t, 3, rsp_len) {
            self.sticks[s].send_at(at, rsp);
        }
    }

    fn zdo_simple_desc(&mut self, s: StickId, req: ZdoSimpleDescReq, t: Instant) {
        let (status, descriptor) = if req.endpoint == 0 || req.endpoint > 240 {
            (zdo_status::INVALID_EP, None)
        } else if req.dst_addr != req.nwk_addr_of_interest {
            (zdo_status::DEVICE_NOT_FOUND, None)
        } else if let Some(stick) = self.stick_with(req.dst_addr) {
            match stick.simple_descriptor(req.endpoint) {
                Some(d) => (zdo_status::SUCCESS, Some(d)),
                None => (zdo_status::NOT_ACTIVE, None),
            }
        } else {
            match self.devices.iter().find(|d| d.nwk == req.dst_addr) {
                Some(d) if d.endpoint == req.endpoint => {
                    (zdo_status::SUCCESS, Some(d.simple_descriptor()))
                }
                _ => (zdo_status::NOT_ACTIVE, None),
            }
        };
        let rsp = ZdoSimpleDescCallback {
            src_addr: req.dst_addr,
            status,
            nwk_addr: req.nwk_addr_of_interest,
            descriptor,
        };
        if let Some(at) = self.zdo_answer_at(s, req.dst_addr, t, 4, 20) {
            self.sticks[s].send_at(at, rsp);
        }
    }

    fn af_data_request(&mut self, s: StickId, req: AfDataRequestReq, t: Instant) {
        let sender = &self.sticks[s];
        let refuse = |status: u8| AfDataRequestRsp { status };
        let Some(profile) = sender
            .endpoints
            .get(&req.src_endpoint)
            .map(|r| r.profile_id)
        else {
            // Z-Stack's AF_DataRequest refuses a source endpoint that was never registered.
            return self.sticks[s].send_at(t, refuse(status::INVALID_PARAMETER));
        };
        if req.data.len() > APS_PAYLOAD_MAX {
            // Longer than the APS MTU, and ZNP registers no APS fragmentation:
            // AF_DataRequest returns afStatus_INVALID_PARAMETER, nothing goes on the air.
            return self.sticks[s].send_at(t, refuse(status::INVALID_PARAMETER));
        }
        if sender.id.role == Role::Router && !sender.on_air() {
            // A router whose network is not up has no NWK layer to hand the frame to.
            return self.sticks[s].send_at(t, refuse(NWK_INVALID_REQUEST));
        }
        self.sticks[s].send_at(t, refuse(status::SUCCESS));
        let broadcast = req.dst_addr >= BROADCAST_MIN;
        let devices: Vec<usize> = (0..self.devices.len())
            .filter(|&i| broadcast || self.devices[i].nwk == req.dst_addr)
            .collect();
        let sticks: Vec<StickId> = if broadcast {
            (0..self.sticks.len())
                .filter(|&i| i != s && self.sticks[i].on_air())
                .collect()
        } else {
            self.stick_at(req.dst_addr, s).into_iter().collect()
        };
        if devices.is_empty() && sticks.is_empty() {
            let confirm = AfDataConfirm {
                status: status::NWK_NO_ROUTE,
                endpoint: req.src_endpoint,
                trans_id: req.trans_id,
            };
            self.sticks[s].send_at(t + ROUTE_DISCOVERY_TIMEOUT, confirm);
            return;
        }
        let confirmed = if devices.is_empty() {
            None
        } else {
            Some(self.deliver_to_devices(s, &req, &devices, broadcast, t))
        };
        if !sticks.is_empty() {
            self.deliver_to_sticks(s, &req, profile, &sticks, broadcast, t, confirmed.is_none());
        }
    }

    /// Carries `req` from stick `s` to the simulated devices `targets`, whose ZCL answers come
    /// back to it; returns when the frame is confirmed.
    fn deliver_to_devices(
        &mut self,
        s: StickId,
        req: &AfDataRequestReq,
        targets: &[usize],
        broadcast: bool,
        t: Instant,
    ) -> Instant {
        let uptime = t.saturating_duration_since(self.boot);
        let delivered = t + CSMA + air(req.data.len());
        let mac_acked = delivered + TURNAROUND + AIR_BYTE * MAC_ACK_BYTES;
        let confirmed = if broadcast {
            delivered // broadcasts are neither MAC- nor APS-acknowledged
        } else if req.options & AF_ACK_REQUEST != 0 {
            // The device's APS ACK: its own frame with no payload, MAC-acked in turn.
            mac_acked + CSMA + air(0) + TURNAROUND + AIR_BYTE * MAC_ACK_BYTES
        } else {
            mac_acked
        };
        let sender = &mut self.sticks[s];
        sender.send_at(
            confirmed,
            AfDataConfirm {
                status: status::SUCCESS,
                endpoint: req.src_endpoint,
                trans_id: req.trans_id,
            },
        );
        let mut air_free = mac_acked;
        for &i in targets {
            let device = &mut self.devices[i];
            let answer = device.handle(req, broadcast, uptime);
            let (src_addr, src_endpoint, lqi) = (device.nwk, device.endpoint, device.lqi);
            let Some(zcl) = answer else { continue };
            let data = zcl.to_bytes();
            // Answers share the channel: each waits for the previous one to be on the air.
            let arrives = (air_free.max(mac_acked + DEVICE_PROCESSING) + CSMA + air(data.len()))
                .max(confirmed);
            air_free = arrives;
            let sender = &mut self.sticks[s];
            sender.aps_counter = sender.aps_counter.wrapping_add(1);
            let msg = AfIncomingMsg {
                group_id: 0,
                cluster_id: req.cluster_id,
                src_addr,
                src_endpoint,
                dst_endpoint: req.src_endpoint,
                was_broadcast: 0,
                lqi,
                security_use: 0,
                timestamp: mac_timestamp(arrives.saturating_duration_since(self.boot)),
                trans_seq: sender.aps_counter,
                data,
                mac_src_addr: Some(src_addr),
                msg_result_radius: Some(0x1D),
            };
            sender.send_at(arrives, msg);
        }
        confirmed
    }

    /// Carries `req` from stick `s` to the sticks `targets` over the radio: each arrives as an
    /// `AF_INCOMING_MSG` if its host registered the endpoint in the sender's profile. The
    /// sender's radio sends its frames to other sticks one after the other, so they arrive in
    /// the order sent. Confirms to the sender if `confirm`.
    #[allow(clippy::too_many_arguments)]
    fn deliver_to_sticks(
        &mut self,
        s: StickId,
        req: &AfDataRequestReq,
        profile: u16,
        targets: &[StickId],
        broadcast: bool,
        t: Instant,
        confirm: bool,
    ) {
        let start = t.max(self.sticks[s].radio_free);
        let frame_air = CSMA + air(req.data.len());
        let delivered = start + frame_air;
        let mac_acked = delivered + TURNAROUND + AIR_BYTE * MAC_ACK_BYTES;
        let on_air = targets.iter().any(|&i| self.sticks[i].on_air());
        let (status, confirmed, radio_free) = if broadcast {
            (status::SUCCESS, delivered, delivered)
        } else if !on_air {
            // A joined router that is not up: the MAC tries 1 + macMaxFrameRetries times,
            // waiting macAckWaitDuration for an ACK each time.
            let gave_up = start + (frame_air + MAC_ACK_WAIT) * MAC_ATTEMPTS;
            (status::MAC_NO_ACK, gave_up, gave_up)
        } else if req.options & AF_ACK_REQUEST != 0 {
            // The destination's APS ACK (sent by APS whether or not AF then finds the
            // endpoint), MAC-acked in turn.
            let acked = mac_acked + CSMA + air(0) + TURNAROUND + AIR_BYTE * MAC_ACK_BYTES;
            (status::SUCCESS, acked, mac_acked)
        } else {
            (status::SUCCESS, mac_acked, mac_acked)
        };
        let sender = &mut self.sticks[s];
        sender.radio_free = radio_free;
        sender.aps_counter = sender.aps_counter.wrapping_add(1);
        let (src_addr, trans_seq, sender_lqi) = (sender.id.nwk, sender.aps_counter, sender.lqi);
        if confirm {
            sender.send_at(
                confirmed,
                AfDataConfirm {
                    status,
                    endpoint: req.src_endpoint,
                    trans_id: req.trans_id,
                },
            );
        }
        if status != status::SUCCESS {
            return;
        }
        let timestamp = mac_timestamp(delivered.saturating_duration_since(self.boot));
        for &i in targets {
            let dst = &mut self.sticks[i];
            if !dst.on_air() {
                continue;
            }
            let endpoints: Vec<u8> = if req.dst_endpoint == 0xFF {
                dst.endpoints.keys().copied().collect()
            } else {
                vec![req.dst_endpoint]
            };
            for endpoint in endpoints {
                if !dst.accepts(endpoint, profile) {
                    continue; // AF drops it; the APS ACK (if asked for) went all the same
                }
                let msg = AfIncomingMsg {
                    group_id: 0,
                    cluster_id: req.cluster_id,
                    src_addr,
                    src_endpoint: req.src_endpoint,
                    dst_endpoint: endpoint,
                    was_broadcast: u8::from(broadcast),
                    // One hop: the weaker end of the link decides.
                    lqi: sender_lqi.min(dst.lqi),
                    security_use: 0,
                    timestamp,
                    trans_seq,
                    data: req.data.clone(),
                    mac_src_addr: Some(src_addr),
                    msg_result_radius: Some(req.radius.saturating_sub(1)),
                };
                dst.send_at(delivered, msg);
            }
        }
    }
}

/// A MAC receive timestamp, in 16 µs units since power-up.
fn mac_timestamp(since_boot: Duration) -> u32 {
    (since_boot.as_micros() / 16) as u32
}

/// The sans-IO virtual coordinator: the coordinator stick of a [`Network`], as its host sees
/// it. See the module docs.
#[derive(Debug)]
pub struct Coordinator {
    net: Network,
}

impl Coordinator {
    /// A coordinator that has just powered up at `now`, with its network formed in NV but not
    /// started (as Z-Stack 3 waits for the host to start commissioning). The nodes of `config`
    /// are on its network too ([`Coordinator::network`]).
    pub fn new(config: EmulatorConfig, now: Instant) -> Coordinator {
        Coordinator {
            net: Network::new(config, now),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EmulatorConfig {
        self.net.config()
    }

    /// The ZDO device state ([`device_state`]).
    pub fn state(&self) -> u8 {
        self.net.state(COORDINATOR)
    }

    /// The simulated devices.
    pub fn devices(&self) -> Vec<DeviceSummary> {
        self.net.devices()
    }

    /// The whole network, router nodes included.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The whole network, to drive the nodes' sticks too.
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.net
    }

    /// When the next scheduled frame is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.net.poll_timeout(COORDINATOR)
    }

    /// The next frame due at or before `now`, in schedule order.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<FrameRepr> {
        self.net.poll_transmit(COORDINATOR, now)
    }

    /// Handles a frame from the host whose last byte arrived at `now`.
    pub fn handle_frame(&mut self, frame: &FrameRepr, now: Instant) {
        self.net.handle_frame(COORDINATOR, frame, now);
    }
}

/// Why the emulator could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The PTY pair could not be created.
    #[error("cannot create a PTY pair: {0}; is /dev/ptmx available (devpts mounted)?")]
    Pty(serialport::Error),
    /// The PTY master failed.
    #[error("PTY I/O failed: {0}")]
    Io(io::Error),
    /// The configuration cannot be served (a bad or repeated node name).
    #[error("{0}")]
    Config(String),
}

/// The line pacing of one direction of an 8N1 UART.
#[derive(Debug)]
struct Line {
    baud: u32,
    free_at: Instant,
}

impl Line {
    fn new(baud: u32, now: Instant) -> Line {
        Line { baud, free_at: now }
    }

    /// When byte `i` (0-based) of a burst whose first bit starts at `start` has fully crossed.
    fn byte_done(&self, start: Instant, i: usize) -> Instant {
        start + wire_time(i + 1, self.baud)
    }
}

/// Logs frames to stderr when asked to.
#[derive(Debug, Clone, Copy)]
struct Tracer {
    on: bool,
    started: Instant,
}

impl Tracer {
    fn trace(&self, stick: &str, dir: &str, frame: &FrameRepr) {
        if !self.on {
            return;
        }
        let name = Command::from_frame(frame)
            .map(|c| c.name())
            .unwrap_or("MALFORMED");
        let ms = self.started.elapsed().as_secs_f64() * 1e3;
        if stick == "coordinator" {
            eprintln!("znp-emulator {ms:10.3} ms {dir} {name} {frame}");
        } else {
            eprintln!("znp-emulator {ms:10.3} ms [{stick}] {dir} {name} {frame}");
        }
    }
}

/// One stick's serial line: its PTY pair and the pacing of both directions.
struct Port {
    master: TTYPort,
    // Held open so the master never sees a hang-up between host sessions.
    _slave: TTYPort,
    path: String,
    decoder: Decoder,
    tx: Line,
    rx: Line,
}

impl Port {
    fn open(baud: u32, now: Instant) -> Result<Port, EmulatorError> {
        let (master, slave) = TTYPort::pair().map_err(EmulatorError::Pty)?;
        let path = slave.name().unwrap_or_default();
        Ok(Port {
            master,
            _slave: slave,
            path,
            decoder: Decoder::new(),
            tx: Line::new(baud, now),
            rx: Line::new(baud, now),
        })
    }
}

/// Feeds bytes a host wrote (read at `at`) to the decoder and gives each complete frame to
/// `deliver` with the instant its last byte arrived. The host's bytes left it at `at`; on a real
/// line byte k arrives (k+1) byte times after the line was free, so a frame is complete only
/// when its last byte would have arrived.
fn receive(
    decoder: &mut Decoder,
    rx: &mut Line,
    bytes: &[u8],
    at: Instant,
    mut deliver: impl FnMut(FrameRepr, Instant),
) {
    let start = at.max(rx.free_at);
    for (k, b) in bytes.iter().enumerate() {
        decoder.push(std::slice::from_ref(b));
        while let Some(frame) = decoder.next_frame() {
            deliver(frame, rx.byte_done(start, k));
        }
    }
    rx.free_at = start + wire_time(bytes.len(), rx.baud);
}

/// Writes a frame, releasing each byte only once it has crossed the modelled wire: byte `i`
/// of a frame whose first bit starts at `start` leaves at `start + (i + 1) × 10 / baud`.
fn transmit(master: &mut TTYPort, tx: &mut Line, bytes: &[u8]) -> Result<(), EmulatorError> {
    let mut start = Instant::now().max(tx.free_at);
    master
        .set_timeout(Duration::from_secs(1))
        .map_err(|e| EmulatorError::Io(e.into()))?;
    let mut sent = 0;
    while sent < bytes.len() {
        let now = Instant::now();
        let mut due = sent;
        while due < bytes.len() && tx.byte_done(start, due) <= now {
            due += 1;
        }
        if due == sent {
            std::thread::sleep(tx.byte_done(start, sent).saturating_duration_since(now));
            continue;
        }
        match master.write_all(&bytes[sent..due]) {
            Ok(()) => {
                if sent == 0 {
                    // Anchor the rest of the frame on when its first bytes really left:
                    // a late wake-up then delays the whole frame instead of letting later
                    // bytes catch up, so from its first byte to its last a frame takes at
                    // least the time a real UART needs.
                    let left = Instant::now();
                    if let Some(anchor) = left.checked_sub(wire_time(due, tx.baud)) {
                        start = start.max(anchor);
                    }
                }
                sent = due;
            }
            // Nobody is reading and the PTY buffer is full: the frame is lost, as it
            // would be on a real line with no host listening.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
            Err(e) => return Err(EmulatorError::Io(e)),
        }
    }
    tx.free_at = start + wire_time(bytes.len(), tx.baud);
    Ok(())
}

/// What a read from a PTY master means for the serving loop.
enum ReadOutcome {
    /// Bytes arrived.
    Bytes(usize),
    /// Nothing this time (timeout, interruption, no host has the port open).
    Idle,
}

/// Reads what a host wrote, waiting at most `wait`.
fn read_master(
    master: &mut TTYPort,
    buf: &mut [u8],
    wait: Duration,
) -> Result<ReadOutcome, EmulatorError> {
    master
        .set_timeout(wait)
        .map_err(|e| EmulatorError::Io(e.into()))?;
    match master.read(buf) {
        Ok(0) => {
            std::thread::sleep(Duration::from_millis(5));
            Ok(ReadOutcome::Idle)
        }
        Ok(n) => Ok(ReadOutcome::Bytes(n)),
        Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::Interrupted => {
            Ok(ReadOutcome::Idle)
        }
        // No host has the port open (the slave was hung up): wait for one.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(5) => {
            std::thread::sleep(Duration::from_millis(10));
            Ok(ReadOutcome::Idle)
        }
        Err(e) => Err(EmulatorError::Io(e)),
    }
}

/// The longest a serving loop sleeps before it looks at the stop flag again.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// The virtual network on PTYs: the coordinator's, and one per router node. See the module
/// docs.
pub struct Emulator {
    /// The coordinator's line, then the nodes' in [`StickId`] order.
    ports: Vec<Port>,
    coordinator: Coordinator,
    started: Instant,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("pty", &self.ports[0].path)
            .field("baud", &self.ports[0].tx.baud)
            .field("nodes", &self.node_ptys())
            .finish()
    }
}

impl Emulator {
    /// Creates a PTY pair for the coordinator and one per node, and the network behind them.
    pub fn new(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let mut seen = std::collections::BTreeSet::new();
        for name in &config.nodes {
            if !valid_node_name(name) {
                return Err(EmulatorError::Config(format!(
                    "node name {name:?} is not usable: use 1 to 32 ASCII letters, digits or `_` \
                     (it becomes part of placeholders such as {{znp_node_{name}_pty}})"
                )));
            }
            if name == "coordinator" || !seen.insert(name.as_str()) {
                return Err(EmulatorError::Config(format!(
                    "node name {name:?} is already taken; give each node its own name"
                )));
            }
        }
        let now = Instant::now();
        let ports = (0..=config.nodes.len())
            .map(|_| Port::open(config.baud, now))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Emulator {
            ports,
            coordinator: Coordinator::new(config, now),
            started: now,
        })
    }

    /// The path the coordinator's host opens (`/dev/pts/N`).
    pub fn pty_path(&self) -> &str {
        &self.ports[0].path
    }

    /// The path the host of node `name` opens.
    pub fn node_pty(&self, name: &str) -> Option<&str> {
        let stick = self.coordinator.network().stick(name)?;
        (stick != COORDINATOR).then(|| self.ports[stick].path.as_str())
    }

    fn node_ptys(&self) -> BTreeMap<String, String> {
        let net = self.coordinator.network();
        (1..net.stick_count())
            .map(|i| (net.stick_name(i).to_owned(), self.ports[i].path.clone()))
            .collect()
    }

    /// The baud rate output is paced at.
    pub fn baud(&self) -> u32 {
        self.ports[0].tx.baud
    }

    /// The coordinator.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// The network: the coordinator, the nodes, the devices.
    pub fn network(&self) -> &Network {
        self.coordinator.network()
    }

    /// What the emulator prints on start: `{"pty", "baud", "ieee", "network": {"channel",
    /// "pan_id", "extended_pan_id"}, "devices": [{"name", "nwk", "endpoint", "clusters"}],
    /// "nodes": {NAME: {"pty", "nwk", "ieee"}}}`, and for each node the same flattened to the
    /// top level (`"node_NAME_pty"`, `"node_NAME_nwk"`, `"node_NAME_ieee"`), so that a rig can
    /// name them as `{znp_node_NAME_pty}` (`{znp_nodes_NAME_pty}` works too).
    pub fn announcement(&self) -> serde_json::Value {
        let devices = self.coordinator.devices();
        let config = self.coordinator.config();
        let mut nodes = serde_json::Map::new();
        let mut flat = Vec::new();
        for (i, node) in self.network().nodes().into_iter().enumerate() {
            let pty = &self.ports[i + 1].path;
            let ieee = node.ieee.to_string();
            nodes.insert(
                node.name.clone(),
                serde_json::json!({"pty": pty, "nwk": node.nwk, "ieee": ieee}),
            );
            let name = &node.name;
            flat.push((format!("node_{name}_pty"), serde_json::json!(pty)));
            flat.push((format!("node_{name}_nwk"), serde_json::json!(node.nwk)));
            flat.push((format!("node_{name}_ieee"), serde_json::json!(ieee)));
        }
        let mut out = serde_json::json!({
            "pty": self.ports[0].path,
            "baud": self.ports[0].tx.baud,
            "ieee": config.ieee.to_string(),
            "network": {
                "channel": config.channel,
                "pan_id": config.pan_id,
                "extended_pan_id": config.extended_pan_id.to_string(),
            },
            "devices": devices,
            "nodes": nodes,
        });
        if let Some(map) = out.as_object_mut() {
            map.extend(flat);
        }
        out
    }

    fn tracer(&self) -> Tracer {
        Tracer {
            on: self.coordinator.config().trace,
            started: self.started,
        }
    }

    /// Serves the hosts until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), EmulatorError> {
        if self.ports.len() == 1 {
            self.run_coordinator(stop)
        } else {
            self.run_network(stop)
        }
    }

    /// The coordinator alone: one loop reads its line and writes what is due.
    fn run_coordinator(&mut self, stop: &AtomicBool) -> Result<(), EmulatorError> {
        let tracer = self.tracer();
        let net = &mut self.coordinator.net;
        let port = &mut self.ports[0];
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            while let Some(frame) = net.poll_transmit(COORDINATOR, Instant::now()) {
                tracer.trace("coordinator", "->", &frame);
                transmit(&mut port.master, &mut port.tx, &frame.to_bytes())?;
            }
            let now = Instant::now();
            let wait = net
                .poll_timeout(COORDINATOR)
                .map_or(IDLE_WAIT, |t| t.saturating_duration_since(now))
                .min(IDLE_WAIT);
            if let ReadOutcome::Bytes(n) = read_master(&mut port.master, &mut buf, wait)? {
                receive(
                    &mut port.decoder,
                    &mut port.rx,
                    &buf[..n],
                    Instant::now(),
                    |frame, arrived| {
                        tracer.trace("coordinator", "<-", &frame);
                        net.handle_frame(COORDINATOR, &frame, arrived);
                    },
                );
            }
        }
        Ok(())
    }

    /// Several sticks: each has a reader thread (its host's frames into the shared network)
    /// and a writer thread (its frames out, paced, when due), so one line's pacing never holds
    /// up another's. A reader wakes the writers whenever it changed the network.
    fn run_network(&mut self, stop: &AtomicBool) -> Result<(), EmulatorError> {
        let tracer = self.tracer();
        let names: Vec<String> = (0..self.ports.len())
            .map(|i| self.coordinator.net.stick_name(i).to_owned())
            .collect();
        let mut readers = Vec::new();
        for port in &self.ports {
            readers.push(
                port.master
                    .try_clone_native()
                    .map_err(|e| EmulatorError::Io(e.into()))?,
            );
        }
        let net = Mutex::new(&mut self.coordinator.net);
        let changed = Condvar::new();
        let failed = AtomicBool::new(false);
        let (net, changed, failed, names) = (&net, &changed, &failed, &names);
        let halt = move || stop.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed);
        let results: Vec<Result<(), EmulatorError>> = std::thread::scope(|scope| {
            let mut threads = Vec::new();
            for (i, (port, mut reader)) in self.ports.iter_mut().zip(readers).enumerate() {
                let Port {
                    master,
                    decoder,
                    tx,
                    rx,
                    ..
                } = port;
                let name = names[i].as_str();
                threads.push(scope.spawn(move || {
                    let mut buf = [0u8; 512];
                    let served = (|| {
                        while !halt() {
                            if let ReadOutcome::Bytes(n) =
                                read_master(&mut reader, &mut buf, IDLE_WAIT)?
                            {
                                let mut net = net.lock().unwrap_or_else(PoisonError::into_inner);
                                receive(decoder, rx, &buf[..n], Instant::now(), |frame, at| {
                                    tracer.trace(name, "<-", &frame);
                                    net.handle_frame(i, &frame, at);
                                });
                                drop(net);
                                changed.notify_all();
                            }
                        }
                        Ok(())
                    })();
                    if served.is_err() {
                        failed.store(true, Ordering::Relaxed);
                        changed.notify_all();
                    }
                    served
                }));
                threads.push(scope.spawn(move || {
                    let served = (|| loop {
                        let frame = {
                            let mut guard = net.lock().unwrap_or_else(PoisonError::into_inner);
                            loop {
                                if halt() {
                                    return Ok(());
                                }
                                let now = Instant::now();
                                if let Some(frame) = guard.poll_transmit(i, now) {
                                    break frame;
                                }
                                let wait = guard
                                    .poll_timeout(i)
                                    .map_or(IDLE_WAIT, |t| t.saturating_duration_since(now))
                                    .min(IDLE_WAIT);
                                guard = match changed.wait_timeout(guard, wait) {
                                    Ok((g, _)) => g,
                                    Err(poisoned) => poisoned.into_inner().0,
                                };
                            }
                        };
                        tracer.trace(name, "->", &frame);
                        transmit(master, tx, &frame.to_bytes())?;
                    })();
                    if served.is_err() {
                        failed.store(true, Ordering::Relaxed);
                        changed.notify_all();
                    }
                    served
                }));
            }
            threads
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| {
                        Err(EmulatorError::Io(io::Error::other(
                            "emulator thread panicked",
                        )))
                    })
                })
                .collect()
        });
        results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
    }

    /// Runs on a background thread until the handle is dropped.
    pub fn spawn(mut self) -> EmulatorHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let path = self.pty_path().to_owned();
        let baud = self.baud();
        let nodes = self.node_ptys();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || self.run(&flag));
        EmulatorHandle {
            stop,
            thread: Some(thread),
            path,
            baud,
            nodes,
        }
    }
}

/// An [`Emulator`] running on a background thread; dropping the handle stops it.
#[derive(Debug)]
pub struct EmulatorHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), EmulatorError>>>,
    path: String,
    baud: u32,
    nodes: BTreeMap<String, String>,
}

impl EmulatorHandle {
    /// The PTY path for the coordinator's host.
    pub fn pty_path(&self) -> &str {
        &self.path
    }

    /// The PTY path for the host of node `name`.
    pub fn node_pty(&self, name: &str) -> Option<&str> {
        self.nodes.get(name).map(String::as_str)
    }

    /// The paced baud rate.
    pub fn baud(&self) -> u32 {
        self.baud
    }

    /// Stops the emulator and returns how its loop ended.
    pub fn stop(mut self) -> Result<(), EmulatorError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), EmulatorError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(EmulatorError::Io(io::Error::other(
                "emulator thread panicked",
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softbus::link::znp::commands::{SysPingReq, SysResetReq, UtilAssocFindDeviceReq};

    #[test]
    fn nib_has_zstack_330_aligned_size() {
        assert_eq!(
            nib(
                &EmulatorConfig::default(),
                &Network::new(EmulatorConfig::default(), Instant::now()).sticks[0].id
            )
            .len(),
            116
        );
        assert_eq!(assoc_entry(SENSOR_NWK, 1, 120).len(), 36);
    }

    #[test]
    fn answers_ping_and_refuses_unknown_sreq() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(EmulatorConfig::default(), t0);
        c.handle_frame(&SysPingReq {}.to_frame().expect("frame"), t0);
        let unknown = FrameRepr::new(
            CommandHeader::new(CommandType::Sreq, Subsystem::Mac, 9),
            vec![],
        )
        .expect("frame");
        c.handle_frame(&unknown, t0);
        c.handle_frame(
            &UtilAssocFindDeviceReq { index: 0 }
                .to_frame()
                .expect("frame"),
            t0,
        );
        let later = t0 + Duration::from_secs(1);
        let ping = c.poll_transmit(later).expect("ping answer");
        assert_eq!(ping.header, SysPingRsp::HEADER);
        let err = RpcErrorRsp::from_payload(&c.poll_transmit(later).expect("rpc error").payload);
        assert_eq!(err.map(|e| e.error_code), Ok(rpc_error::INVALID_SUBSYSTEM));
        assert!(c.poll_transmit(later).is_some());
        assert!(c.poll_transmit(later).is_none());
    }

    #[test]
    fn neighbour_table_pages_and_unknown_addresses_stay_silent() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        let mut c = Coordinator::new(EmulatorConfig::default(), t0);
        let answers = |c: &mut Coordinator, req: FrameRepr| {
            c.handle_frame(&req, t0);
            std::iter::from_fn(|| c.poll_transmit(later)).collect::<Vec<_>>()
        };
        let page = |start_index| {
            ZdoMgmtLqiReq {
                dst_addr: 0x0000,
                start_index,
            }
            .to_frame()
            .expect("frame")
        };
        let out = answers(&mut c, page(0));
        assert_eq!(out.len(), 2, "SRSP and callback");
        let table = ZdoMgmtLqiCallback::from_payload(&out[1].payload).expect("callback");
        assert_eq!(
            (table.neighbor_table_entries, table.neighbors.len()),
            (2, 2)
        );
        let out = answers(&mut c, page(2));
        let rest = ZdoMgmtLqiCallback::from_payload(&out[1].payload).expect("callback");
        assert_eq!((rest.start_index, rest.neighbors.len()), (2, 0));
        let nobody = ZdoActiveEpReq {
            dst_addr: 0x1234,
            nwk_addr_of_interest: 0x1234,
        };
        let out = answers(&mut c, nobody.to_frame().expect("frame"));
        assert_eq!(out.len(), 1, "only the SRSP: {out:?}");
    }

    #[test]
    fn temperature_stays_plausible() {
        for s in (0..1200).step_by(7) {
            let v = temperature_centi(Duration::from_secs(s));
            assert!((2_125..=2_175).contains(&v), "{v}");
        }
    }
    // ---- the network of sticks -------------------------------------------------------------

    use softbus::link::zigbee::{SOFTBUS_CLUSTER, SOFTBUS_ENDPOINT, SOFTBUS_PROFILE};
    use softbus::link::znp::commands::{UtilGetDeviceInfoReq, ZdoStartupFromAppReq};

    type Out = Vec<(StickId, Instant, FrameRepr)>;

    /// Runs the network in virtual time up to `until`: every stick's frames, each at the
    /// instant it is due.
    fn advance(net: &mut Network, until: Instant) -> Out {
        let mut out = Vec::new();
        while let Some(at) = net.next_timeout().filter(|&at| at <= until) {
            for stick in 0..net.stick_count() {
                while let Some(frame) = net.poll_transmit(stick, at) {
                    out.push((stick, at, frame));
                }
            }
        }
        out
    }

    /// The payloads of type `P` stick `stick` got, with when.
    fn got<P: Payload>(out: &Out, stick: StickId) -> Vec<(Instant, P)> {
        out.iter()
            .filter(|(s, _, f)| *s == stick && f.header == P::HEADER)
            .map(|(_, at, f)| (*at, P::from_payload(&f.payload).expect("payload")))
            .collect()
    }

    fn frame<P: Payload>(p: P) -> FrameRepr {
        p.to_frame().expect("frame")
    }

    fn softbus_endpoint() -> AfRegisterReq {
        AfRegisterReq {
            endpoint: SOFTBUS_ENDPOINT,
            profile_id: SOFTBUS_PROFILE,
            device_id: 0,
            device_version: 0,
            latency_req: 0,
            input_clusters: vec![SOFTBUS_CLUSTER],
            output_clusters: vec![SOFTBUS_CLUSTER],
        }
    }

    fn softbus_frame(dst_addr: u16, trans_id: u8, data: Vec<u8>) -> AfDataRequestReq {
        AfDataRequestReq {
            dst_addr,
            dst_endpoint: SOFTBUS_ENDPOINT,
            src_endpoint: SOFTBUS_ENDPOINT,
            cluster_id: SOFTBUS_CLUSTER,
            trans_id,
            options: AF_ACK_REQUEST,
            radius: 30,
            data,
        }
    }

    /// A network with nodes `a` and `b`, both started (and `register`ing endpoint 0x5B), and
    /// the instant everything settled.
    fn two_nodes(register: [bool; 2]) -> (Network, Instant) {
        let t0 = Instant::now();
        let config = EmulatorConfig {
            nodes: vec!["a".into(), "b".into()],
            ..EmulatorConfig::default()
        };
        let mut net = Network::new(config, t0);
        for (stick, register) in [(1, register[0]), (2, register[1])] {
            net.handle_frame(stick, &frame(ZdoStartupFromAppReq { start_delay: 0 }), t0);
            if register {
                net.handle_frame(stick, &frame(softbus_endpoint()), t0);
            }
        }
        let settled = t0 + Duration::from_millis(500);
        let out = advance(&mut net, settled);
        for stick in [1, 2] {
            let states: Vec<u8> = got::<ZdoStateChangeInd>(&out, stick)
                .into_iter()
                .map(|(_, i)| i.state)
                .collect();
            assert_eq!(states, [device_state::STARTED_AS_ROUTER], "stick {stick}");
            let regs = got::<AfRegisterRsp>(&out, stick);
            assert!(regs.iter().all(|(_, r)| r.status == status::SUCCESS));
        }
        (net, settled)
    }

    #[test]
    fn nodes_have_stable_distinct_addresses_clear_of_the_rest() {
        let names: Vec<String> = ["dut", "harness", "a", "b", "c"]
            .into_iter()
            .map(String::from)
            .collect();
        let config = EmulatorConfig::default();
        let ids = node_identities(&config, &names);
        assert_eq!(ids, node_identities(&config, &names), "deterministic");
        // A name's addresses do not depend on the other nodes.
        assert_eq!(node_identities(&config, &names[1..2])[0], ids[1]);
        for (i, id) in ids.iter().enumerate() {
            assert!(!reserved_nwk(id.nwk), "{:#06x}", id.nwk);
            assert_ne!(id.nwk, 0x6B0D);
            assert_eq!(id.ieee.0 >> 32, 0x0012_4B00, "TI OUI");
            assert_ne!(id.ieee, config.ieee);
            assert!(ids[..i]
                .iter()
                .all(|o| o.nwk != id.nwk && o.ieee != id.ieee));
        }
        assert!(valid_node_name("dut_1") && !valid_node_name("") && !valid_node_name("a-b"));
    }

    #[test]
    fn node_sticks_answer_like_routers() {
        let t0 = Instant::now();
        let config = EmulatorConfig {
            nodes: vec!["dut".into()],
            ..EmulatorConfig::default()
        };
        let mut net = Network::new(config, t0);
        let node = net.stick("dut").expect("node");
        let nwk = net.nodes()[0].nwk;
        net.handle_frame(node, &frame(SysPingReq {}), t0);
        net.handle_frame(node, &frame(UtilGetDeviceInfoReq {}), t0);
        net.handle_frame(node, &frame(ZdoStartupFromAppReq { start_delay: 0 }), t0);
        let t1 = t0 + Duration::from_millis(100);
        net.handle_frame(node, &frame(UtilGetDeviceInfoReq {}), t1);
        let unknown = FrameRepr::new(
            CommandHeader::new(CommandType::Sreq, Subsystem::Zdo, 0x7E),
            vec![],
        )
        .expect("frame");
        net.handle_frame(node, &unknown, t1);
        let out = advance(&mut net, t1 + Duration::from_millis(10));
        assert!(
            out.iter().all(|(s, _, _)| *s == node),
            "nothing for the coordinator"
        );
        assert_eq!(got::<SysPingRsp>(&out, node).len(), 1);
        let infos = got::<UtilGetDeviceInfoRsp>(&out, node);
        assert_eq!(
            (infos[0].1.nwk, infos[0].1.device_state),
            (0xFFFE, device_state::INITIALIZED_NOT_STARTED)
        );
        assert_eq!(
            (infos[1].1.nwk, infos[1].1.device_state, infos[1].1.ieee),
            (nwk, device_state::STARTED_AS_ROUTER, net.nodes()[0].ieee)
        );
        assert!(infos[1].1.assoc_devices.is_empty());
        let err = got::<RpcErrorRsp>(&out, node);
        assert_eq!(err[0].1.error_code, rpc_error::INVALID_COMMAND_ID);
        // Its NV says router, at its own address.
        assert_eq!(
            net.sticks[node].nv[&(NV_ITEM_LEGACY, osal::LOGICAL_TYPE)],
            [1]
        );
        assert_eq!(net.state(node), device_state::STARTED_AS_ROUTER);
        // A reset takes it off the network until its host starts it again.
        net.handle_frame(node, &frame(SysResetReq { reset_type: 1 }), t1);
        let out = advance(&mut net, t1 + Duration::from_secs(1));
        assert_eq!(got::<SysResetInd>(&out, node).len(), 1);
        assert_eq!(net.state(node), device_state::INITIALIZED_NOT_STARTED);
    }

    #[test]
    fn aps_payload_crosses_between_nodes_after_the_air_time() {
        let (mut net, t) = two_nodes([true, true]);
        let (a, b) = (1, 2);
        let (a_nwk, b_nwk) = (net.nodes()[0].nwk, net.nodes()[1].nwk);
        let payload: Vec<u8> = (0u8..40).collect();
        net.handle_frame(a, &frame(softbus_frame(b_nwk, 9, payload.clone())), t);
        let out = advance(&mut net, t + Duration::from_secs(1));
        let srsp = got::<AfDataRequestRsp>(&out, a);
        assert_eq!(srsp.len(), 1);
        assert_eq!(
            srsp[0],
            (
                t + MT_TURNAROUND,
                AfDataRequestRsp {
                    status: status::SUCCESS
                }
            )
        );
        let on_air = t + MT_TURNAROUND + CSMA + air(40);
        let incoming = got::<AfIncomingMsg>(&out, b);
        assert_eq!(incoming.len(), 1, "{out:?}");
        let (at, msg) = &incoming[0];
        assert_eq!(*at, on_air);
        assert_eq!(
            (
                msg.group_id,
                msg.cluster_id,
                msg.src_addr,
                msg.src_endpoint,
                msg.dst_endpoint
            ),
            (
                0,
                SOFTBUS_CLUSTER,
                a_nwk,
                SOFTBUS_ENDPOINT,
                SOFTBUS_ENDPOINT
            )
        );
        assert_eq!(
            (msg.was_broadcast, msg.lqi, msg.security_use),
            (0, NODE_LQI, 0)
        );
        assert_eq!(msg.data, payload);
        assert_eq!(msg.mac_src_addr, Some(a_nwk));
        assert_eq!(
            msg.timestamp,
            mac_timestamp(on_air.duration_since(t - Duration::from_millis(500)))
        );
        // The sender hears of it once the APS ACK is back.
        let confirm = got::<AfDataConfirm>(&out, a);
        let aps_acked = on_air
            + TURNAROUND
            + AIR_BYTE * MAC_ACK_BYTES
            + CSMA
            + air(0)
            + TURNAROUND
            + AIR_BYTE * MAC_ACK_BYTES;
        assert_eq!(
            confirm,
            [(
                aps_acked,
                AfDataConfirm {
                    status: status::SUCCESS,
                    endpoint: SOFTBUS_ENDPOINT,
                    trans_id: 9
                }
            )]
        );
        // 40 bytes + 51 of overhead at 32 µs, the CSMA backoff and the MT turnaround.
        assert_eq!(on_air - t, Duration::from_micros(300 + 1_248 + 91 * 32));
        assert!(got::<AfIncomingMsg>(&out, COORDINATOR).is_empty());
    }

    #[test]
    fn over_long_aps_payload_is_refused_without_going_on_air() {
        let (mut net, t) = two_nodes([true, true]);
        let b_nwk = net.nodes()[1].nwk;
        let too_long = vec![0xAB; APS_PAYLOAD_MAX + 1];
        net.handle_frame(1, &frame(softbus_frame(b_nwk, 1, too_long)), t);
        net.handle_frame(
            1,
            &frame(softbus_frame(b_nwk, 2, vec![0xCD; APS_PAYLOAD_MAX])),
            t,
        );
        let out = advance(&mut net, t + Duration::from_secs(1));
        let srsps: Vec<u8> = got::<AfDataRequestRsp>(&out, 1)
            .iter()
            .map(|(_, r)| r.status)
            .collect();
        assert_eq!(srsps, [status::INVALID_PARAMETER, status::SUCCESS]);
        let confirms: Vec<u8> = got::<AfDataConfirm>(&out, 1)
            .iter()
            .map(|(_, c)| c.trans_id)
            .collect();
        assert_eq!(confirms, [2], "no confirm for a refused request");
        let incoming = got::<AfIncomingMsg>(&out, 2);
        assert_eq!(incoming.len(), 1);
        assert_eq!(incoming[0].1.data.len(), APS_PAYLOAD_MAX);
    }

    #[test]
    fn unregistered_endpoint_is_acked_then_dropped_and_absent_nodes_fail() {
        // b is up but its host registered nothing: APS acknowledges, AF drops the frame.
        let (mut net, t) = two_nodes([true, false]);
        let b_nwk = net.nodes()[1].nwk;
        net.handle_frame(1, &frame(softbus_frame(b_nwk, 1, vec![1, 2, 3])), t);
        // A registered endpoint in another profile drops it as well.
        let other_profile = AfRegisterReq {
            endpoint: SOFTBUS_ENDPOINT,
            profile_id: zcl::PROFILE_HA,
            ..softbus_endpoint()
        };
        let out = advance(&mut net, t + Duration::from_secs(1));
        assert_eq!(got::<AfDataConfirm>(&out, 1)[0].1.status, status::SUCCESS);
        assert!(got::<AfIncomingMsg>(&out, 2).is_empty(), "{out:?}");
        let t = t + Duration::from_secs(1);
        net.handle_frame(2, &frame(other_profile), t);
        net.handle_frame(1, &frame(softbus_frame(b_nwk, 2, vec![4])), t);
        let out = advance(&mut net, t + Duration::from_secs(1));
        assert_eq!(got::<AfDataConfirm>(&out, 1)[0].1.status, status::SUCCESS);
        assert!(got::<AfIncomingMsg>(&out, 2).is_empty(), "{out:?}");

        // b reset (off the air): the MAC gives up; nobody at all: route discovery gives up.
        let t = t + Duration::from_secs(1);
        net.handle_frame(2, &frame(SysResetReq { reset_type: 1 }), t);
        net.handle_frame(1, &frame(softbus_frame(b_nwk, 3, vec![5])), t);
        net.handle_frame(1, &frame(softbus_frame(0x1234, 4, vec![6])), t);
        let out = advance(&mut net, t + Duration::from_secs(1));
        let confirms: Vec<(u8, u8)> = got::<AfDataConfirm>(&out, 1)
            .iter()
            .map(|(_, c)| (c.trans_id, c.status))
            .collect();
        assert_eq!(
            confirms,
            [(3, status::MAC_NO_ACK), (4, status::NWK_NO_ROUTE)]
        );
        // b's host, its stick not started, cannot send at all.
        let t = t + Duration::from_secs(1);
        net.handle_frame(2, &frame(softbus_endpoint()), t);
        net.handle_frame(2, &frame(softbus_frame(0x0000, 5, vec![7])), t);
        let out = advance(&mut net, t + Duration::from_secs(1));
        let srsp = got::<AfDataRequestRsp>(&out, 2);
        assert_eq!(srsp[0].1.status, NWK_INVALID_REQUEST);
    }

    #[test]
    fn frames_between_two_sticks_arrive_in_the_order_sent() {
        let (mut net, t) = two_nodes([true, true]);
        let b_nwk = net.nodes()[1].nwk;
        // Sent back to back, longest first: the short ones must not overtake.
        for i in 0u8..6 {
            let len = usize::from(80 - i * 15);
            net.handle_frame(1, &frame(softbus_frame(b_nwk, i, vec![i; len])), t);
        }
        let out = advance(&mut net, t + Duration::from_secs(1));
        let incoming = got::<AfIncomingMsg>(&out, 2);
        let order: Vec<u8> = incoming.iter().map(|(_, m)| m.data[0]).collect();
        assert_eq!(order, [0, 1, 2, 3, 4, 5]);
        assert!(
            incoming.windows(2).all(|w| w[0].0 < w[1].0),
            "one at a time on the air"
        );
        assert!(incoming
            .windows(2)
            .all(|w| w[1].1.trans_seq == w[0].1.trans_seq.wrapping_add(1)));
        let confirms: Vec<u8> = got::<AfDataConfirm>(&out, 1)
            .iter()
            .map(|(_, c)| c.trans_id)
            .collect();
        assert_eq!(confirms, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn coordinator_and_nodes_reach_each_other_and_zdo_finds_the_nodes() {
        let (mut net, t) = two_nodes([true, true]);
        let a_nwk = net.nodes()[0].nwk;
        net.handle_frame(
            COORDINATOR,
            &frame(ZdoStartupFromAppReq { start_delay: 0 }),
            t,
        );
        net.handle_frame(COORDINATOR, &frame(softbus_endpoint()), t);
        let t = t + Duration::from_millis(100);
        advance(&mut net, t);
        net.handle_frame(1, &frame(softbus_frame(0x0000, 1, b"up".to_vec())), t);
        net.handle_frame(
            COORDINATOR,
            &frame(softbus_frame(a_nwk, 2, b"down".to_vec())),
            t,
        );
        net.handle_frame(
            COORDINATOR,
            &frame(ZdoMgmtLqiReq {
                dst_addr: 0x0000,
                start_index: 3,
            }),
            t,
        );
        net.handle_frame(
            COORDINATOR,
            &frame(ZdoMgmtLqiReq {
                dst_addr: a_nwk,
                start_index: 0,
            }),
            t,
        );
        net.handle_frame(
            COORDINATOR,
            &frame(ZdoActiveEpReq {
                dst_addr: a_nwk,
                nwk_addr_of_interest: a_nwk,
            }),
            t,
        );
        net.handle_frame(
            COORDINATOR,
            &frame(ZdoSimpleDescReq {
                dst_addr: a_nwk,
                nwk_addr_of_interest: a_nwk,
                endpoint: SOFTBUS_ENDPOINT,
            }),
            t,
        );
        let out = advance(&mut net, t + Duration::from_secs(1));
        let up = got::<AfIncomingMsg>(&out, COORDINATOR);
        assert_eq!(
            (up[0].1.src_addr, up[0].1.data.as_slice()),
            (a_nwk, &b"up"[..])
        );
        let down = got::<AfIncomingMsg>(&out, 1);
        assert_eq!(
            (down[0].1.src_addr, down[0].1.data.as_slice()),
            (0x0000, &b"down"[..])
        );
        assert!(got::<AfIncomingMsg>(&out, 2).is_empty());

        let tables = got::<ZdoMgmtLqiCallback>(&out, COORDINATOR);
        let coord = &tables
            .iter()
            .find(|(_, c)| c.src_addr == 0x0000)
            .expect("own table")
            .1;
        // Light and sensor first (pages 0), then the two routers.
        assert_eq!(
            (coord.neighbor_table_entries, coord.neighbors.len()),
            (4, 1)
        );
        let nodes = net.nodes();
        let page1 = &coord.neighbors[0];
        assert_eq!(
            (page1.nwk, page1.ieee, page1.device_type, page1.relationship),
            (nodes[1].nwk, nodes[1].ieee, logical_type::ROUTER, 1)
        );
        let (at, node_table) = tables
            .iter()
            .find(|(_, c)| c.src_addr == a_nwk)
            .expect("node's");
        assert!(*at > t + CSMA, "over the radio");
        assert_eq!(node_table.neighbors.len(), 1);
        assert_eq!(
            (
                node_table.neighbors[0].nwk,
                node_table.neighbors[0].relationship
            ),
            (0x0000, 0)
        );
        let eps = got::<ZdoActiveEpCallback>(&out, COORDINATOR);
        assert_eq!(eps[0].1.active_endpoints, [SOFTBUS_ENDPOINT]);
        let desc = got::<ZdoSimpleDescCallback>(&out, COORDINATOR);
        let d = desc[0].1.descriptor.as_ref().expect("descriptor");
        assert_eq!(
            (d.profile_id, d.input_clusters.as_slice()),
            (SOFTBUS_PROFILE, &[SOFTBUS_CLUSTER][..])
        );
    }

    #[test]
    fn announcement_names_each_node_for_rig_placeholders() {
        let emu = Emulator::new(EmulatorConfig {
            nodes: vec!["dut".into(), "harness".into()],
            ..EmulatorConfig::default()
        })
        .expect("PTY pairs");
        let a = emu.announcement();
        let nodes = emu.network().nodes();
        let p = crate::rig::helper_placeholders("znp", &a);
        use crate::rig::HelperValue;
        for node in &nodes {
            let pty = emu.node_pty(&node.name).expect("pty");
            assert_ne!(pty, emu.pty_path());
            assert_eq!(
                p.get(&format!("znp_node_{}_pty", node.name)),
                Some(&HelperValue::Text(pty.to_owned()))
            );
            assert_eq!(
                p.get(&format!("znp_node_{}_nwk", node.name)),
                Some(&HelperValue::Int(u64::from(node.nwk)))
            );
            assert_eq!(
                p.get(&format!("znp_nodes_{}_ieee", node.name)),
                Some(&HelperValue::Text(node.ieee.to_string()))
            );
        }
        // The coordinator's fields are as they were.
        assert_eq!(
            p.get("znp_pty"),
            Some(&HelperValue::Text(emu.pty_path().to_owned()))
        );
        assert_eq!(p.get("znp_baud"), Some(&HelperValue::Int(115_200)));
        assert!(a["devices"].as_array().is_some_and(|d| d.len() == 2));
        assert!(Emulator::new(EmulatorConfig {
            nodes: vec!["x".into(), "x".into()],
            ..EmulatorConfig::default()
        })
        .is_err());
    }

    #[test]
    fn two_node_ptys_exchange_a_payload_through_znp_port() {
        use softbus::link::znp::port::ZnpPort;
        const T: Duration = Duration::from_secs(3);
        let handle = Emulator::new(EmulatorConfig {
            nodes: vec!["dut".into(), "harness".into()],
            ..EmulatorConfig::default()
        })
        .expect("PTY pairs")
        .spawn();
        let open = |name: &str| {
            let mut port =
                ZnpPort::open(handle.node_pty(name).expect("node"), 115_200).expect("open");
            port.set_timeout(T);
            let rsp = port
                .call(&ZdoStartupFromAppReq { start_delay: 0 })
                .expect("startup");
            assert_eq!(rsp.state, 0, "restored");
            port.wait_for::<ZdoStateChangeInd>(T, |i| i.state == device_state::STARTED_AS_ROUTER)
                .expect("router up");
            let reg = port.call(&softbus_endpoint()).expect("AF_REGISTER");
            assert_eq!(reg.status, status::SUCCESS);
            let info = port.device_info().expect("device info");
            (port, info.nwk, info.ieee)
        };
        let (mut dut, dut_nwk, dut_ieee) = open("dut");
        let (mut harness, harness_nwk, _) = open("harness");
        assert_ne!(dut_nwk, harness_nwk);
        assert_eq!(dut_ieee.0 >> 32, 0x0012_4B00);
        let payload: Vec<u8> = (0..APS_PAYLOAD_MAX as u8).collect();
        let sent = dut
            .call(&softbus_frame(harness_nwk, 42, payload.clone()))
            .expect("SRSP");
        assert_eq!(sent.status, status::SUCCESS);
        let msg = harness
            .wait_for::<AfIncomingMsg>(T, |m| m.cluster_id == SOFTBUS_CLUSTER)
            .expect("delivered");
        assert_eq!(
            (msg.src_addr, msg.src_endpoint, msg.dst_endpoint),
            (dut_nwk, SOFTBUS_ENDPOINT, SOFTBUS_ENDPOINT)
        );
        assert_eq!(msg.data, payload);
        let confirm = dut
            .wait_for::<AfDataConfirm>(T, |c| c.trans_id == 42)
            .expect("confirm");
        assert_eq!(confirm.status, status::SUCCESS);
        // And back, the other way.
        harness
            .call(&softbus_frame(dut_nwk, 7, b"pong".to_vec()))
            .expect("SRSP");
        let back = dut
            .wait_for::<AfIncomingMsg>(T, |_| true)
            .expect("delivered back");
        assert_eq!(
            (back.src_addr, back.data.as_slice()),
            (harness_nwk, &b"pong"[..])
        );
        drop((dut, harness));
        handle.stop().expect("clean stop");
    }
    #[test]
    fn bridge_walking_the_network_still_finds_only_the_light_and_the_sensor() {
        use softbus::bridge::host::Host;
        use softbus::link::znp::port::ZnpPort;
        const T: Duration = Duration::from_secs(2);
        let handle = Emulator::new(EmulatorConfig {
            baud: 0,
            nodes: vec!["dut".into()],
            ..EmulatorConfig::default()
        })
        .expect("PTY pairs")
        .spawn();
        // The node is up, with the SoftBus endpoint: the bridge walks through it.
        let mut node = ZnpPort::open(handle.node_pty("dut").expect("node"), 115_200).expect("open");
        node.call(&ZdoStartupFromAppReq { start_delay: 0 })
            .expect("startup");
        node.wait_for::<ZdoStateChangeInd>(T, |i| i.state == device_state::STARTED_AS_ROUTER)
            .expect("router up");
        assert_eq!(
            node.call(&softbus_endpoint()).expect("register").status,
            status::SUCCESS
        );
        let mut host =
            Host::start(handle.pty_path(), 115_200, Duration::from_secs(1)).expect("bridge");
        let began = std::time::Instant::now();
        let mut found: Vec<u16> = host
            .discover()
            .expect("discover")
            .iter()
            .map(|d| d.nwk)
            .collect();
        found.sort_unstable();
        assert_eq!(found, [LIGHT_NWK, SENSOR_NWK]);
        assert!(
            began.elapsed() < Duration::from_millis(900),
            "no node timed out"
        );
        drop((host, node));
        handle.stop().expect("clean stop");
    }
}
