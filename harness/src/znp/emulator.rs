//! A virtual Zigbee coordinator: a CC2652 running Z-Stack 3.30 coordinator firmware, as its
//! host sees it over a serial line, with a small network of legacy ZCL devices behind it.
//!
//! Two layers:
//!
//! - [`Coordinator`] is the sans-IO device. [`Coordinator::handle_frame`] takes a frame and the
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
//! - [`Emulator`] puts it on a PTY pair (`serialport::TTYPort::pair`) and paces the line like a
//!   real UART: each byte it writes is released only once it would have finished crossing an
//!   8N1 line at the configured baud (10 bits per byte), and each frame it reads counts as
//!   received only when its last byte would have arrived. Latency measured through it therefore
//!   includes the wire time a USB-serial coordinator stick would add.
//!
//! The network behind it:
//!
//! | device | NWK | IEEE | endpoint | clusters |
//! |---|---|---|---|---|
//! | on/off light (router) | [`LIGHT_NWK`] | [`LIGHT_IEEE`] | 1 | Basic, On/Off (0x0006: Off, On, Toggle; attribute OnOff) |
//! | temperature sensor (end device, rx on when idle) | [`SENSOR_NWK`] | [`SENSOR_IEEE`] | 1 | Basic, Temperature Measurement (0x0402: MeasuredValue about 21.5 °C) |
//!
//! Both are children of the coordinator, so its neighbour table lists them; the light's table
//! lists the coordinator as its parent; the sensor, an end device, keeps no table.
//!
//! Radio timing is a fixed model (no randomness, so runs replay): 2.4 GHz O-QPSK at 250 kbit/s
//! (32 µs per byte), 51 bytes of PHY/MAC/NWK(secured)/APS overhead per frame, the mean CSMA-CA
//! backoff, a MAC ACK after the 192 µs turnaround, and 2 ms for a device to process a ZCL frame.
//!
//! Limits, on purpose: one network, already formed (NV says so, as on a stick that has been used
//! before), which BDB formation or `ZDO_STARTUP_FROM_APP` restores; the emulator does not form
//! new networks, join devices, or model loss; of ZDO it answers only the three discovery
//! requests above (a request for an address nobody has gets its SRSP and then silence). A malformed SREQ gets an RPC
//! error (invalid length), an unknown address `NWK_NO_ROUTE` after route discovery gives up.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

/// The network information base (`nwkIB_t`) of a coordinator running `config`'s network.
fn nib(config: &EmulatorConfig) -> Vec<u8> {
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
        .u8(0x8F) // CapabilityFlags
        .u16(7) // TransactionPersistenceTime
        .u8(2) // nwkProtocolVersion
        .u8(5) // RouteDiscoveryTime
        .u8(30) // RouteExpiryTime
        .u16(0x0000) // nwkDevAddress: the coordinator
        .u8(config.channel) // nwkLogicalChannel
        .u16(0x0000) // nwkCoordAddress
        .bytes(&[0; 8]) // nwkCoordExtAddress
        .u16(config.pan_id) // nwkPanId
        .u16(8) // nwkState: NWK_ROUTER (a started coordinator)
        .u32(1u32.checked_shl(u32::from(config.channel)).unwrap_or(0)) // channelList
        .u8(15) // beaconOrder
        .u8(15) // superFrameOrder
        .u8(0) // scanDuration
        .u8(0) // battLifeExt
        .u32(1) // allocatedRouterAddresses
        .u32(1) // allocatedEndDeviceAddresses
        .u8(0) // nodeDepth
        .bytes(&config.extended_pan_id.0.to_le_bytes()) // extendedPANID
        .u8(1) // nwkKeyLoaded
        .bytes(&no_key) // spare1
        .bytes(&no_key) // spare2
        .u8(0) // spare3
        .u8(0) // spare4
        .u8(60) // nwkLinkStatusPeriod
        .u8(3) // nwkRouterAgeLimit
        .u8(0) // nwkUseMultiCast
        .u8(1) // nwkIsConcentrator
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

/// The NV store of a coordinator that has formed `config`'s network.
fn formed_nv(config: &EmulatorConfig) -> BTreeMap<(u16, u16), Vec<u8>> {
    let mut nv = BTreeMap::new();
    let mut legacy = |id: u16, v: Vec<u8>| {
        nv.insert((NV_ITEM_LEGACY, id), v);
    };
    legacy(osal::EXTADDR, config.ieee.0.to_le_bytes().to_vec());
    legacy(osal::STARTUP_OPTION, vec![0]);
    legacy(osal::NIB, nib(config));
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
    legacy(osal::LOGICAL_TYPE, vec![0]); // coordinator
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

/// Something the coordinator will do at a given instant.
#[derive(Debug, Clone)]
enum Scheduled {
    Send(FrameRepr),
    /// Enter a ZDO state and announce it with `ZDO_STATE_CHANGE_IND`.
    State(u8),
}

/// The sans-IO virtual coordinator. See the module docs.
#[derive(Debug)]
pub struct Coordinator {
    config: EmulatorConfig,
    boot: Instant,
    nv: BTreeMap<(u16, u16), Vec<u8>>,
    state: u8,
    endpoints: BTreeMap<u8, AfRegisterReq>,
    devices: Vec<SimDevice>,
    queue: BTreeMap<(Instant, u64), Scheduled>,
    seq: u64,
    aps_counter: u8,
    primary_channels: u32,
}

impl Coordinator {
    /// A coordinator that has just powered up at `now`, with its network formed in NV but not
    /// started (as Z-Stack 3 waits for the host to start commissioning).
    pub fn new(config: EmulatorConfig, now: Instant) -> Coordinator {
        let nv = formed_nv(&config);
        Coordinator {
            primary_channels: 1u32.checked_shl(u32::from(config.channel)).unwrap_or(0),
            config,
            boot: now,
            nv,
            state: device_state::INITIALIZED_NOT_STARTED,
            endpoints: BTreeMap::new(),
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
            queue: BTreeMap::new(),
            seq: 0,
            aps_counter: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// The ZDO device state ([`device_state`]).
    pub fn state(&self) -> u8 {
        self.state
    }

    /// The simulated devices.
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

    /// When the next scheduled frame is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// The next frame due at or before `now`, in schedule order.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<FrameRepr> {
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

    /// Handles a frame from the host whose last byte arrived at `now`.
    pub fn handle_frame(&mut self, frame: &FrameRepr, now: Instant) {
        match frame.header.kind {
            CommandType::Sreq => self.handle_sreq(frame, now),
            CommandType::Areq => self.handle_areq(frame, now),
            // A host never sends SRSPs or polls over UART: ignore, as firmware does.
            _ => {}
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

    fn handle_sreq(&mut self, frame: &FrameRepr, now: Instant) {
        let t = now + MT_TURNAROUND;
        let command = match Command::from_frame(frame) {
            Ok(c) => c,
            Err(_) => return self.rpc_error(t, frame.header, rpc_error::INVALID_LENGTH),
        };
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
                    code_revision: Some(self.config.code_revision),
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
                let started = self.state == device_state::STARTED_AS_COORDINATOR;
                let rsp = UtilGetDeviceInfoRsp {
                    status: status::SUCCESS,
                    ieee: self.config.ieee,
                    nwk: if started { 0x0000 } else { 0xFFFE },
                    device_type: 0x07, // coordinator, router and end device capable
                    device_state: self.state,
                    assoc_devices: if started {
                        vec![SENSOR_NWK]
                    } else {
                        Vec::new()
                    },
                };
                self.send_at(t, rsp);
            }
            Command::UtilAssocFindDeviceReq(r) => {
                // Z-Stack copies the in-memory struct whatever the index: a free slot is all
                // 0xFF. Hosts size it to learn the firmware's struct alignment.
                let device = match r.index {
                    0 => assoc_entry(SENSOR_NWK, 1, 120),
                    _ => vec![0xFF; 36],
                };
                self.send_at(t, UtilAssocFindDeviceRsp { device });
            }
            Command::ZdoStartupFromAppReq(_) => {
                // 0: restored network state (NV holds a formed network).
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
                if mode & bdb::MODE_NWK_FORMATION != 0 {
                    let done = self.start_network(t);
                    self.send_at(
                        done,
                        AppCnfBdbCommissioningNotification {
                            status: bdb::STATUS_NETWORK_RESTORED,
                            mode: bdb::MODE_NONE,
                            remaining_modes: bdb::MODE_NWK_FORMATION,
                        },
                    );
                    self.send_at(
                        done,
                        AppCnfBdbCommissioningNotification {
                            status: bdb::STATUS_SUCCESS,
                            mode: bdb::MODE_NWK_FORMATION,
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
            Command::AfDataRequestReq(req) => self.af_data_request(req, t),
            Command::ZdoMgmtLqiReq(req) => {
                self.send_at(
                    t,
                    ZdoMgmtLqiRsp {
                        status: status::SUCCESS,
                    },
                );
                self.zdo_mgmt_lqi(req, t);
            }
            Command::ZdoActiveEpReq(req) => {
                self.send_at(
                    t,
                    ZdoActiveEpRsp {
                        status: status::SUCCESS,
                    },
                );
                self.zdo_active_ep(req, t);
            }
            Command::ZdoSimpleDescReq(req) => {
                self.send_at(
                    t,
                    ZdoSimpleDescRsp {
                        status: status::SUCCESS,
                    },
                );
                self.zdo_simple_desc(req, t);
            }
            _ => {
                let code = match frame.header.subsystem {
                    Subsystem::Sys
                    | Subsystem::Af
                    | Subsystem::Zdo
                    | Subsystem::Util
                    | Subsystem::AppCnf
                    | Subsystem::Zgp => rpc_error::INVALID_COMMAND_ID,
                    _ => rpc_error::INVALID_SUBSYSTEM,
                };
                self.rpc_error(t, frame.header, code);
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

    /// Starts the network from NV (if not started); returns when it will be up.
    fn start_network(&mut self, t: Instant) -> Instant {
        let up = t + NETWORK_RESTORE_TIME;
        if self.state != device_state::STARTED_AS_COORDINATOR {
            self.at(t, Scheduled::State(device_state::STARTING_AS_COORDINATOR));
            self.at(up, Scheduled::State(device_state::STARTED_AS_COORDINATOR));
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

    /// When a ZDO answer from `dst` reaches the host, for a request of `req_len` ZDP bytes and
    /// an answer of `rsp_len`: at once from the coordinator itself, after a radio round trip
    /// from a device, never from an address nobody has.
    fn zdo_answer_at(
        &self,
        dst: u16,
        t: Instant,
        req_len: usize,
        rsp_len: usize,
    ) -> Option<Instant> {
        if dst == 0x0000 {
            return Some(t);
        }
        self.devices.iter().any(|d| d.nwk == dst).then(|| {
            t + CSMA
                + air(req_len)
                + TURNAROUND
                + AIR_BYTE * MAC_ACK_BYTES
                + DEVICE_PROCESSING
                + CSMA
                + air(rsp_len)
        })
    }

    fn zdo_mgmt_lqi(&mut self, req: ZdoMgmtLqiReq, t: Instant) {
        let ext_pan = self.config.extended_pan_id;
        let table: Option<Vec<Neighbor>> = if req.dst_addr == 0x0000 {
            Some(
                self.devices
                    .iter()
                    .map(|d| Neighbor {
                        extended_pan_id: ext_pan,
                        ieee: d.ieee,
                        nwk: d.nwk,
                        device_type: d.logical_type(),
                        rx_on_when_idle: 1,
                        relationship: 1, // child
                        permit_joining: 0,
                        depth: 1,
                        lqi: d.lqi,
                    })
                    .collect(),
            )
        } else {
            match self.devices.iter().find(|d| d.nwk == req.dst_addr) {
                Some(d) if d.logical_type() == logical_type::ROUTER => Some(vec![Neighbor {
                    extended_pan_id: ext_pan,
                    ieee: self.config.ieee,
                    nwk: 0x0000,
                    device_type: logical_type::COORDINATOR,
                    rx_on_when_idle: 1,
                    relationship: 0, // parent
                    permit_joining: 0,
                    depth: 0,
                    lqi: d.lqi,
                }]),
                _ => None, // an end device keeps no neighbour table
            }
        };
        let rsp = match table {
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
        if let Some(at) = self.zdo_answer_at(req.dst_addr, t, 2, rsp_len) {
            self.send_at(at, rsp);
        }
    }

    fn zdo_active_ep(&mut self, req: ZdoActiveEpReq, t: Instant) {
        let endpoints: Option<Vec<u8>> = if req.dst_addr != req.nwk_addr_of_interest {
            None
        } else if req.dst_addr == 0x0000 {
            Some(self.endpoints.keys().copied().collect())
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
        if let Some(at) = self.zdo_answer_at(req.dst_addr, t, 3, rsp_len) {
            self.send_at(at, rsp);
        }
    }

    fn zdo_simple_desc(&mut self, req: ZdoSimpleDescReq, t: Instant) {
        let (status, descriptor) = if req.endpoint == 0 || req.endpoint > 240 {
            (zdo_status::INVALID_EP, None)
        } else if req.dst_addr != req.nwk_addr_of_interest {
            (zdo_status::DEVICE_NOT_FOUND, None)
        } else if req.dst_addr == 0x0000 {
            match self.endpoints.get(&req.endpoint) {
                Some(reg) => (
                    zdo_status::SUCCESS,
                    Some(SimpleDescriptor {
                        endpoint: reg.endpoint,
                        profile_id: reg.profile_id,
                        device_id: reg.device_id,
                        device_version: reg.device_version,
                        input_clusters: reg.input_clusters.clone(),
                        output_clusters: reg.output_clusters.clone(),
                    }),
                ),
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
        if let Some(at) = self.zdo_answer_at(req.dst_addr, t, 4, 20) {
            self.send_at(at, rsp);
        }
    }

    fn af_data_request(&mut self, req: AfDataRequestReq, t: Instant) {
        if !self.endpoints.contains_key(&req.src_endpoint) {
            // Z-Stack's AF_DataRequest refuses a source endpoint that was never registered.
            self.send_at(
                t,
                AfDataRequestRsp {
                    status: status::INVALID_PARAMETER,
                },
            );
            return;
        }
        self.send_at(
            t,
            AfDataRequestRsp {
                status: status::SUCCESS,
            },
        );
        let confirm = |status: u8| AfDataConfirm {
            status,
            endpoint: req.src_endpoint,
            trans_id: req.trans_id,
        };
        let uptime = t.saturating_duration_since(self.boot);
        let broadcast = req.dst_addr >= BROADCAST_MIN;
        let targets: Vec<usize> = (0..self.devices.len())
            .filter(|&i| broadcast || self.devices[i].nwk == req.dst_addr)
            .collect();
        if targets.is_empty() {
            self.send_at(t + ROUTE_DISCOVERY_TIMEOUT, confirm(status::NWK_NO_ROUTE));
            return;
        }
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
        self.send_at(confirmed, confirm(status::SUCCESS));
        let mut air_free = mac_acked;
        for i in targets {
            let device = &mut self.devices[i];
            let answer = device.handle(&req, broadcast, uptime);
            let (src_addr, src_endpoint, lqi) = (device.nwk, device.endpoint, device.lqi);
            let Some(zcl) = answer else { continue };
            let data = zcl.to_bytes();
            // Answers share the channel: each waits for the previous one to be on the air.
            let arrives = (air_free.max(mac_acked + DEVICE_PROCESSING) + CSMA + air(data.len()))
                .max(confirmed);
            air_free = arrives;
            self.aps_counter = self.aps_counter.wrapping_add(1);
            let msg = AfIncomingMsg {
                group_id: 0,
                cluster_id: req.cluster_id,
                src_addr,
                src_endpoint,
                dst_endpoint: req.src_endpoint,
                was_broadcast: 0,
                lqi,
                security_use: 0,
                // The MAC receive timestamp, in 16 µs symbols.
                timestamp: (arrives.saturating_duration_since(self.boot).as_micros() / 16) as u32,
                trans_seq: self.aps_counter,
                data,
                mac_src_addr: Some(src_addr),
                msg_result_radius: Some(0x1D),
            };
            self.send_at(arrives, msg);
        }
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

/// The virtual coordinator on a PTY. See the module docs.
pub struct Emulator {
    master: TTYPort,
    // Held open so the master never sees a hang-up between host sessions.
    _slave: TTYPort,
    path: String,
    coordinator: Coordinator,
    decoder: Decoder,
    tx: Line,
    rx: Line,
    started: Instant,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("pty", &self.path)
            .field("baud", &self.tx.baud)
            .finish()
    }
}

impl Emulator {
    /// Creates the PTY pair and the coordinator behind it.
    pub fn new(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let (master, slave) = TTYPort::pair().map_err(EmulatorError::Pty)?;
        let path = slave.name().unwrap_or_default();
        let now = Instant::now();
        Ok(Emulator {
            master,
            _slave: slave,
            path,
            tx: Line::new(config.baud, now),
            rx: Line::new(config.baud, now),
            coordinator: Coordinator::new(config, now),
            decoder: Decoder::new(),
            started: now,
        })
    }

    /// The path a host opens (`/dev/pts/N`).
    pub fn pty_path(&self) -> &str {
        &self.path
    }

    /// The baud rate output is paced at.
    pub fn baud(&self) -> u32 {
        self.tx.baud
    }

    /// The coordinator.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// What the emulator prints on start: `{"pty", "baud", "ieee", "network": {"channel",
    /// "pan_id", "extended_pan_id"}, "devices": [{"name", "nwk", "endpoint", "clusters"}]}`.
    pub fn announcement(&self) -> serde_json::Value {
        let devices = self.coordinator.devices();
        let config = self.coordinator.config();
        serde_json::json!({
            "pty": self.path,
            "baud": self.tx.baud,
            "ieee": config.ieee.to_string(),
            "network": {
                "channel": config.channel,
                "pan_id": config.pan_id,
                "extended_pan_id": config.extended_pan_id.to_string(),
            },
            "devices": devices,
        })
    }

    /// Serves the host until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), EmulatorError> {
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            while let Some(frame) = self.coordinator.poll_transmit(Instant::now()) {
                self.transmit(&frame)?;
            }
            let now = Instant::now();
            let wait = self
                .coordinator
                .poll_timeout()
                .map_or(Duration::from_millis(50), |t| {
                    t.saturating_duration_since(now)
                })
                .min(Duration::from_millis(50));
            self.master
                .set_timeout(wait)
                .map_err(|e| EmulatorError::Io(e.into()))?;
            match self.master.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(n) => self.receive(&buf[..n], Instant::now()),
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::Interrupted => {}
                // No host has the port open (the slave was hung up): wait for one.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(5) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(EmulatorError::Io(e)),
            }
        }
        Ok(())
    }

    /// Runs on a background thread until the handle is dropped.
    pub fn spawn(mut self) -> EmulatorHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let path = self.path.clone();
        let baud = self.baud();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || self.run(&flag));
        EmulatorHandle {
            stop,
            thread: Some(thread),
            path,
            baud,
        }
    }

    fn receive(&mut self, bytes: &[u8], at: Instant) {
        // The host's bytes left it now; on a real line byte k arrives (k+1) byte times after the
        // line was free, so a frame is complete only when its last byte would have arrived.
        let start = at.max(self.rx.free_at);
        for (k, b) in bytes.iter().enumerate() {
            self.decoder.push(std::slice::from_ref(b));
            while let Some(frame) = self.decoder.next_frame() {
                let arrived = self.rx.byte_done(start, k);
                self.trace("<-", &frame);
                self.coordinator.handle_frame(&frame, arrived);
            }
        }
        self.rx.free_at = start + wire_time(bytes.len(), self.rx.baud);
    }

    /// Writes a frame, releasing each byte only once it has crossed the modelled wire: byte `i`
    /// of a frame whose first bit starts at `start` leaves at `start + (i + 1) × 10 / baud`.
    fn transmit(&mut self, frame: &FrameRepr) -> Result<(), EmulatorError> {
        self.trace("->", frame);
        let bytes = frame.to_bytes();
        let mut start = Instant::now().max(self.tx.free_at);
        self.master
            .set_timeout(Duration::from_secs(1))
            .map_err(|e| EmulatorError::Io(e.into()))?;
        let mut sent = 0;
        while sent < bytes.len() {
            let now = Instant::now();
            let mut due = sent;
            while due < bytes.len() && self.tx.byte_done(start, due) <= now {
                due += 1;
            }
            if due == sent {
                std::thread::sleep(
                    self.tx
                        .byte_done(start, sent)
                        .saturating_duration_since(now),
                );
                continue;
            }
            match self.master.write_all(&bytes[sent..due]) {
                Ok(()) => {
                    if sent == 0 {
                        // Anchor the rest of the frame on when its first bytes really left:
                        // a late wake-up then delays the whole frame instead of letting later
                        // bytes catch up, so from its first byte to its last a frame takes at
                        // least the time a real UART needs.
                        let left = Instant::now();
                        if let Some(anchor) = left.checked_sub(wire_time(due, self.tx.baud)) {
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
        self.tx.free_at = start + wire_time(bytes.len(), self.tx.baud);
        Ok(())
    }

    fn trace(&self, dir: &str, frame: &FrameRepr) {
        if self.coordinator.config.trace {
            let name = Command::from_frame(frame)
                .map(|c| c.name())
                .unwrap_or("MALFORMED");
            let ms = self.started.elapsed().as_secs_f64() * 1e3;
            eprintln!("znp-emulator {ms:10.3} ms {dir} {name} {frame}");
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
}

impl EmulatorHandle {
    /// The PTY path for the host.
    pub fn pty_path(&self) -> &str {
        &self.path
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
    use softbus::link::znp::commands::{SysPingReq, UtilAssocFindDeviceReq};

    #[test]
    fn nib_has_zstack_330_aligned_size() {
        assert_eq!(nib(&EmulatorConfig::default()).len(), 116);
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
}
