//! The NV store of a stick that has a formed network: the items Z-Stack 3.30 keeps, laid out
//! byte for byte as the CC2652's compiler lays out its C structs.

use super::node::{Identity, Role};
use super::EmulatorConfig;
use softbus::link::znp::commands::logical_type;
use std::collections::BTreeMap;

/// Z-Stack NV system ID of Z-Stack's own items.
pub(super) const NV_SYS_ZSTACK: u8 = 1;

/// Extended NV item that holds the legacy OSAL items (sub-ID = OSAL ID).
pub(super) const NV_ITEM_LEGACY: u16 = 0x0000;

/// Extended NV item: network security material table.
pub(super) const NV_ITEM_NWK_SEC_MATERIAL_TABLE: u16 = 0x0007;

/// Largest value an NV read SRSP carries (250 minus status and length bytes).
pub(super) const NV_READ_MAX: usize = 248;

/// OSAL NV IDs the emulator stores.
pub(super) mod osal {
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

/// Lays out a C struct the way the CC2652's compiler does (natural alignment), as Z-Stack
/// writes its structs to NV and to `UTIL_ASSOC_FIND_DEVICE` byte for byte.
/// Padding bytes are whatever memory held: `pad` says what to write there.
#[derive(Debug)]
pub(super) struct CStruct {
    pub(super) buf: Vec<u8>,
    pub(super) align: usize,
    pub(super) pad: u8,
}

impl CStruct {
    pub(super) fn new(pad: u8) -> CStruct {
        CStruct {
            buf: Vec::new(),
            align: 1,
            pad,
        }
    }
    pub(super) fn pad_to(&mut self, align: usize) {
        let pad = (align - self.buf.len() % align) % align;
        self.buf.resize(self.buf.len() + pad, self.pad);
    }
    /// A nested struct: aligned as its most aligned member, padded to its own size.
    pub(super) fn nested(self, inner: CStruct) -> CStruct {
        let align = inner.align;
        self.field(&inner.finish(), align)
    }
    pub(super) fn field(mut self, bytes: &[u8], align: usize) -> CStruct {
        self.pad_to(align);
        self.align = self.align.max(align);
        self.buf.extend_from_slice(bytes);
        self
    }
    pub(super) fn u8(self, v: u8) -> CStruct {
        self.field(&[v], 1)
    }
    pub(super) fn u16(self, v: u16) -> CStruct {
        self.field(&v.to_le_bytes(), 2)
    }
    pub(super) fn u32(self, v: u32) -> CStruct {
        self.field(&v.to_le_bytes(), 4)
    }
    pub(super) fn bytes(self, v: &[u8]) -> CStruct {
        self.field(v, 1)
    }
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.pad_to(self.align);
        self.buf
    }
}

/// The network information base (`nwkIB_t`) of stick `id` on `config`'s network: the
/// coordinator that formed it, or a router that joined it as the coordinator's child.
pub(super) fn nib(config: &EmulatorConfig, id: &Identity) -> Vec<u8> {
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
pub(super) fn assoc_entry(nwk: u16, index: u16, rx_lqi: u8) -> Vec<u8> {
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
pub(super) fn formed_nv(config: &EmulatorConfig, id: &Identity) -> BTreeMap<(u16, u16), Vec<u8>> {
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
