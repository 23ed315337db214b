//! Typed MT commands: the SYS, UTIL, ZDO, AF and APP_CNF commands a Zigbee coordinator host
//! needs to start a Z-Stack 3.x coordinator and talk to devices behind it.
//!
//! Layouts follow TI's *Z-Stack Monitor and Test API* and, where firmware differs from the
//! document, what Z-Stack 3.30 sends and zigpy-znp reads: `SYS_VERSION`'s optional code and
//! bootloader revisions, `AF_INCOMING_MSG`'s undocumented trailing MAC source and radius, and
//! `SYS_OSAL_NV_WRITE_EXT`'s 16-bit offset and 16-bit value length. All integers are
//! little-endian; "short bytes" carry a one-byte length prefix, "long bytes" a two-byte one.
//!
//! Every payload type implements [`Payload`] (its header, `encode`, `decode`); each SREQ also
//! implements [`Request`], which names its SRSP type so [`crate::link::znp::ZnpPort::call`] is typed.
//! [`Command`] is the sum of them all plus [`Command::Other`] for frames this module does not
//! model, so [`Command::from_frame`] is total on well-formed frames and fails only on a known
//! header with a malformed payload. Decoding never panics and rejects trailing bytes.

use std::fmt;

use super::frame::{CommandHeader, CommandType, FrameRepr, Subsystem};

pub use super::codec::*;

const fn hdr(kind: CommandType, subsystem: Subsystem, id: u8) -> CommandHeader {
    CommandHeader::new(kind, subsystem, id)
}

use CommandType::{Areq, Sreq, Srsp};
use Subsystem::{Af, AppCnf, RpcError, Sys, Util, Zdo};

/// Declares payload structs: fields in wire order with their codec.
macro_rules! payload {
    (
        $(#[$meta:meta])*
        $name:ident = $kind:ident $sub:ident $id:literal, $text:literal {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $codec:ident ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Payload for $name {
            const HEADER: CommandHeader = hdr($kind, $sub, $id);
            const NAME: &'static str = $text;
            #[allow(unused_variables)]
            fn encode(&self, w: &mut Writer) {
                $( payload!(@enc w, self.$field, $codec, stringify!($field)); )*
            }
            #[allow(unused_variables)]
            fn decode(r: &mut Reader<'_>) -> Result<Self, CommandError> {
                Ok($name { $( $field: payload!(@dec r, $codec, stringify!($field)), )* })
            }
        }
    };
    (@enc $w:ident, $v:expr, u8, $f:expr) => { $w.u8($v) };
    (@enc $w:ident, $v:expr, u16, $f:expr) => { $w.u16($v) };
    (@enc $w:ident, $v:expr, u32, $f:expr) => { $w.u32($v) };
    (@enc $w:ident, $v:expr, eui64, $f:expr) => { $w.eui64($v) };
    (@enc $w:ident, $v:expr, short_bytes, $f:expr) => { $w.short_bytes($f, &$v) };
    (@enc $w:ident, $v:expr, long_bytes, $f:expr) => { $w.long_bytes($f, &$v) };
    (@enc $w:ident, $v:expr, u16_list, $f:expr) => { $w.u16_list($f, &$v) };
    (@enc $w:ident, $v:expr, rest, $f:expr) => { $w.bytes(&$v) };
    (@dec $r:ident, u8, $f:expr) => { $r.u8($f)? };
    (@dec $r:ident, u16, $f:expr) => { $r.u16($f)? };
    (@dec $r:ident, u32, $f:expr) => { $r.u32($f)? };
    (@dec $r:ident, eui64, $f:expr) => { $r.eui64($f)? };
    (@dec $r:ident, short_bytes, $f:expr) => { $r.short_bytes($f)? };
    (@dec $r:ident, long_bytes, $f:expr) => { $r.long_bytes($f)? };
    (@dec $r:ident, u16_list, $f:expr) => { $r.u16_list($f)? };
    (@dec $r:ident, rest, $f:expr) => { $r.rest() };
}

macro_rules! request {
    ($req:ident => $rsp:ident) => {
        impl Request for $req {
            type Response = $rsp;
        }
    };
}

// ---- SYS ---------------------------------------------------------------------------------

payload! {
    /// `SYS_RESET_REQ` (AREQ): reset the device; it answers with [`SysResetInd`].
    SysResetReq = Areq Sys 0x00, "SYS_RESET_REQ" {
        /// 0 hard (watchdog) reset, 1 soft reset.
        reset_type: u8 => u8,
    }
}

payload! {
    /// `SYS_PING` (SREQ): is the device alive, and which subsystems does it serve.
    SysPingReq = Sreq Sys 0x01, "SYS_PING" {}
}

payload! {
    /// `SYS_PING` (SRSP).
    SysPingRsp = Srsp Sys 0x01, "SYS_PING_SRSP" {
        /// [`capabilities`] bits.
        capabilities: u16 => u16,
    }
}
request!(SysPingReq => SysPingRsp);

payload! {
    /// `SYS_VERSION` (SREQ).
    SysVersionReq = Sreq Sys 0x02, "SYS_VERSION" {}
}

/// `SYS_VERSION` (SRSP). Z-Stack 3.x appends the code revision (a build date such as
/// 20220219) and the bootloader build type and revision; older firmware stops after
/// `maint_rel`, so those are optional (all or none of the last three are written).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SysVersionRsp {
    /// MT transport revision (2).
    pub transport_rev: u8,
    /// Product ID: 0 Z-Stack 1.2, 1 Z-Stack 3.x on CC26xx/CC13xx, 2 Z-Stack 3.0.x.
    pub product_id: u8,
    /// Major release.
    pub major_rel: u8,
    /// Minor release.
    pub minor_rel: u8,
    /// Maintenance release.
    pub maint_rel: u8,
    /// Code revision (firmware build).
    pub code_revision: Option<u32>,
    /// Bootloader build type: 0 none, 1 built as binary, 2 built as hex.
    pub bootloader_build_type: Option<u8>,
    /// Bootloader revision (0xFFFFFFFF: not supported).
    pub bootloader_revision: Option<u32>,
}

impl Payload for SysVersionRsp {
    const HEADER: CommandHeader = hdr(Srsp, Sys, 0x02);
    const NAME: &'static str = "SYS_VERSION_SRSP";
    fn encode(&self, w: &mut Writer) {
        w.u8(self.transport_rev);
        w.u8(self.product_id);
        w.u8(self.major_rel);
        w.u8(self.minor_rel);
        w.u8(self.maint_rel);
        if let Some(c) = self.code_revision {
            w.u32(c);
            if let Some(t) = self.bootloader_build_type {
                w.u8(t);
                if let Some(r) = self.bootloader_revision {
                    w.u32(r);
                }
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, CommandError> {
        let mut v = SysVersionRsp {
            transport_rev: r.u8("transport_rev")?,
            product_id: r.u8("product_id")?,
            major_rel: r.u8("major_rel")?,
            minor_rel: r.u8("minor_rel")?,
            maint_rel: r.u8("maint_rel")?,
            ..SysVersionRsp::default()
        };
        if !r.is_empty() {
            v.code_revision = Some(r.u32("code_revision")?);
        }
        if !r.is_empty() {
            v.bootloader_build_type = Some(r.u8("bootloader_build_type")?);
        }
        if !r.is_empty() {
            v.bootloader_revision = Some(r.u32("bootloader_revision")?);
        }
        Ok(v)
    }
}
request!(SysVersionReq => SysVersionRsp);

payload! {
    /// `SYS_OSAL_NV_ITEM_INIT` (SREQ): create an NV item.
    SysOsalNvItemInitReq = Sreq Sys 0x07, "SYS_OSAL_NV_ITEM_INIT" {
        /// Item ID.
        id: u16 => u16,
        /// Item length.
        item_len: u16 => u16,
        /// Initial value (at most `item_len` bytes).
        value: Vec<u8> => short_bytes,
    }
}

payload! {
    /// `SYS_OSAL_NV_ITEM_INIT` (SRSP): [`status::NV_ITEM_UNINIT`] when created.
    SysOsalNvItemInitRsp = Srsp Sys 0x07, "SYS_OSAL_NV_ITEM_INIT_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(SysOsalNvItemInitReq => SysOsalNvItemInitRsp);

payload! {
    /// `SYS_OSAL_NV_READ` (SREQ): read a legacy NV item from an 8-bit offset.
    SysOsalNvReadReq = Sreq Sys 0x08, "SYS_OSAL_NV_READ" {
        /// Item ID.
        id: u16 => u16,
        /// Offset.
        offset: u8 => u8,
    }
}

payload! {
    /// `SYS_OSAL_NV_READ` (SRSP).
    SysOsalNvReadRsp = Srsp Sys 0x08, "SYS_OSAL_NV_READ_SRSP" {
        /// Status.
        status: u8 => u8,
        /// Value from the offset (at most 248 bytes).
        value: Vec<u8> => short_bytes,
    }
}
request!(SysOsalNvReadReq => SysOsalNvReadRsp);

payload! {
    /// `SYS_OSAL_NV_WRITE` (SREQ): write a legacy NV item at an 8-bit offset.
    SysOsalNvWriteReq = Sreq Sys 0x09, "SYS_OSAL_NV_WRITE" {
        /// Item ID.
        id: u16 => u16,
        /// Offset.
        offset: u8 => u8,
        /// Bytes to write.
        value: Vec<u8> => short_bytes,
    }
}

payload! {
    /// `SYS_OSAL_NV_WRITE` (SRSP).
    SysOsalNvWriteRsp = Srsp Sys 0x09, "SYS_OSAL_NV_WRITE_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(SysOsalNvWriteReq => SysOsalNvWriteRsp);

payload! {
    /// `SYS_OSAL_NV_DELETE` (SREQ): delete a legacy NV item (the length must match).
    SysOsalNvDeleteReq = Sreq Sys 0x12, "SYS_OSAL_NV_DELETE" {
        /// Item ID.
        id: u16 => u16,
        /// The item's length.
        item_len: u16 => u16,
    }
}

payload! {
    /// `SYS_OSAL_NV_DELETE` (SRSP).
    SysOsalNvDeleteRsp = Srsp Sys 0x12, "SYS_OSAL_NV_DELETE_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(SysOsalNvDeleteReq => SysOsalNvDeleteRsp);

payload! {
    /// `SYS_OSAL_NV_LENGTH` (SREQ).
    SysOsalNvLengthReq = Sreq Sys 0x13, "SYS_OSAL_NV_LENGTH" {
        /// Item ID.
        id: u16 => u16,
    }
}

payload! {
    /// `SYS_OSAL_NV_LENGTH` (SRSP): 0 when the item does not exist.
    SysOsalNvLengthRsp = Srsp Sys 0x13, "SYS_OSAL_NV_LENGTH_SRSP" {
        /// Item length.
        item_len: u16 => u16,
    }
}
request!(SysOsalNvLengthReq => SysOsalNvLengthRsp);

payload! {
    /// `SYS_OSAL_NV_READ_EXT` (SREQ): as `SYS_OSAL_NV_READ` with a 16-bit offset.
    SysOsalNvReadExtReq = Sreq Sys 0x1C, "SYS_OSAL_NV_READ_EXT" {
        /// Item ID.
        id: u16 => u16,
        /// Offset.
        offset: u16 => u16,
    }
}

payload! {
    /// `SYS_OSAL_NV_READ_EXT` (SRSP).
    SysOsalNvReadExtRsp = Srsp Sys 0x1C, "SYS_OSAL_NV_READ_EXT_SRSP" {
        /// Status.
        status: u8 => u8,
        /// Value from the offset (at most 248 bytes).
        value: Vec<u8> => short_bytes,
    }
}
request!(SysOsalNvReadExtReq => SysOsalNvReadExtRsp);

payload! {
    /// `SYS_OSAL_NV_WRITE_EXT` (SREQ): 16-bit offset and 16-bit value length.
    SysOsalNvWriteExtReq = Sreq Sys 0x1D, "SYS_OSAL_NV_WRITE_EXT" {
        /// Item ID.
        id: u16 => u16,
        /// Offset.
        offset: u16 => u16,
        /// Bytes to write.
        value: Vec<u8> => long_bytes,
    }
}

payload! {
    /// `SYS_OSAL_NV_WRITE_EXT` (SRSP).
    SysOsalNvWriteExtRsp = Srsp Sys 0x1D, "SYS_OSAL_NV_WRITE_EXT_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(SysOsalNvWriteExtReq => SysOsalNvWriteExtRsp);

payload! {
    /// `SYS_NV_LENGTH` (SREQ): the length of an item in Z-Stack 3.30's extended NV
    /// (system ID, item ID, sub-ID). Legacy OSAL items are item 0, sub-ID = OSAL ID.
    SysNvLengthReq = Sreq Sys 0x32, "SYS_NV_LENGTH" {
        /// System ID (1: Z-Stack).
        sys_id: u8 => u8,
        /// Item ID.
        item_id: u16 => u16,
        /// Sub-ID.
        sub_id: u16 => u16,
    }
}

payload! {
    /// `SYS_NV_LENGTH` (SRSP): 0 when the item does not exist.
    SysNvLengthRsp = Srsp Sys 0x32, "SYS_NV_LENGTH_SRSP" {
        /// Length.
        length: u32 => u32,
    }
}
request!(SysNvLengthReq => SysNvLengthRsp);

payload! {
    /// `SYS_NV_READ` (SREQ).
    SysNvReadReq = Sreq Sys 0x33, "SYS_NV_READ" {
        /// System ID.
        sys_id: u8 => u8,
        /// Item ID.
        item_id: u16 => u16,
        /// Sub-ID.
        sub_id: u16 => u16,
        /// Offset.
        offset: u16 => u16,
        /// Bytes wanted.
        length: u8 => u8,
    }
}

payload! {
    /// `SYS_NV_READ` (SRSP).
    SysNvReadRsp = Srsp Sys 0x33, "SYS_NV_READ_SRSP" {
        /// Status.
        status: u8 => u8,
        /// Value.
        value: Vec<u8> => short_bytes,
    }
}
request!(SysNvReadReq => SysNvReadRsp);

payload! {
    /// `SYS_NV_WRITE` (SREQ).
    SysNvWriteReq = Sreq Sys 0x34, "SYS_NV_WRITE" {
        /// System ID.
        sys_id: u8 => u8,
        /// Item ID.
        item_id: u16 => u16,
        /// Sub-ID.
        sub_id: u16 => u16,
        /// Offset.
        offset: u16 => u16,
        /// Bytes to write.
        value: Vec<u8> => short_bytes,
    }
}

payload! {
    /// `SYS_NV_WRITE` (SRSP).
    SysNvWriteRsp = Srsp Sys 0x34, "SYS_NV_WRITE_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(SysNvWriteReq => SysNvWriteRsp);

payload! {
    /// `SYS_RESET_IND` (AREQ): the device (re)started.
    SysResetInd = Areq Sys 0x80, "SYS_RESET_IND" {
        /// 0 power-up, 1 external, 2 watchdog.
        reason: u8 => u8,
        /// MT transport revision.
        transport_rev: u8 => u8,
        /// Product ID.
        product_id: u8 => u8,
        /// Major release.
        major_rel: u8 => u8,
        /// Minor release.
        minor_rel: u8 => u8,
        /// Maintenance release.
        maint_rel: u8 => u8,
    }
}

// ---- UTIL --------------------------------------------------------------------------------

payload! {
    /// `UTIL_GET_DEVICE_INFO` (SREQ).
    UtilGetDeviceInfoReq = Sreq Util 0x00, "UTIL_GET_DEVICE_INFO" {}
}

payload! {
    /// `UTIL_GET_DEVICE_INFO` (SRSP).
    UtilGetDeviceInfoRsp = Srsp Util 0x00, "UTIL_GET_DEVICE_INFO_SRSP" {
        /// Status.
        status: u8 => u8,
        /// The device's IEEE address.
        ieee: Eui64 => eui64,
        /// Its network address (0xFFFE until it is on a network; 0x0000 for a coordinator).
        nwk: u16 => u16,
        /// Device types the firmware can act as (bit 0 coordinator, 1 router, 2 end device).
        device_type: u8 => u8,
        /// [`device_state`].
        device_state: u8 => u8,
        /// Network addresses of associated reduced-function devices.
        assoc_devices: Vec<u16> => u16_list,
    }
}
request!(UtilGetDeviceInfoReq => UtilGetDeviceInfoRsp);

payload! {
    /// `UTIL_ASSOC_FIND_DEVICE` (SREQ): the Nth entry of the association table.
    UtilAssocFindDeviceReq = Sreq Util 0x49, "UTIL_ASSOC_FIND_DEVICE" {
        /// Index.
        index: u8 => u8,
    }
}

payload! {
    /// `UTIL_ASSOC_FIND_DEVICE` (SRSP): the raw in-memory `associated_devices_t`, whose
    /// size (28 bytes packed, 36 aligned) tells hosts how the firmware lays out structs.
    UtilAssocFindDeviceRsp = Srsp Util 0x49, "UTIL_ASSOC_FIND_DEVICE_SRSP" {
        /// The struct's bytes.
        device: Vec<u8> => rest,
    }
}
request!(UtilAssocFindDeviceReq => UtilAssocFindDeviceRsp);

// ---- ZDO ---------------------------------------------------------------------------------

payload! {
    /// `ZDO_STARTUP_FROM_APP` (SREQ): start the network stack.
    ZdoStartupFromAppReq = Sreq Zdo 0x40, "ZDO_STARTUP_FROM_APP" {
        /// Delay before starting, ms.
        start_delay: u16 => u16,
    }
}

payload! {
    /// `ZDO_STARTUP_FROM_APP` (SRSP): 0 restored network, 1 new network, 2 not started.
    ZdoStartupFromAppRsp = Srsp Zdo 0x40, "ZDO_STARTUP_FROM_APP_SRSP" {
        /// Startup state.
        state: u8 => u8,
    }
}
request!(ZdoStartupFromAppReq => ZdoStartupFromAppRsp);

payload! {
    /// `ZDO_STATE_CHANGE_IND` (AREQ).
    ZdoStateChangeInd = Areq Zdo 0xC0, "ZDO_STATE_CHANGE_IND" {
        /// New [`device_state`].
        state: u8 => u8,
    }
}

// ZDO requests to (remote) nodes: the SRSP only says the request was queued; the node's answer
// comes later as an AREQ callback whose `src_addr` is the node that answered.

payload! {
    /// `ZDO_SIMPLE_DESC_REQ` (SREQ): ask a node for the simple descriptor of one endpoint.
    ZdoSimpleDescReq = Sreq Zdo 0x04, "ZDO_SIMPLE_DESC_REQ" {
        /// The node to ask.
        dst_addr: u16 => u16,
        /// The node the question is about (normally `dst_addr`).
        nwk_addr_of_interest: u16 => u16,
        /// The endpoint.
        endpoint: u8 => u8,
    }
}

payload! {
    /// `ZDO_SIMPLE_DESC_REQ` (SRSP): the request was sent (or why not).
    ZdoSimpleDescRsp = Srsp Zdo 0x04, "ZDO_SIMPLE_DESC_REQ_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(ZdoSimpleDescReq => ZdoSimpleDescRsp);

payload! {
    /// `ZDO_ACTIVE_EP_REQ` (SREQ): ask a node which endpoints it serves.
    ZdoActiveEpReq = Sreq Zdo 0x05, "ZDO_ACTIVE_EP_REQ" {
        /// The node to ask.
        dst_addr: u16 => u16,
        /// The node the question is about (normally `dst_addr`).
        nwk_addr_of_interest: u16 => u16,
    }
}

payload! {
    /// `ZDO_ACTIVE_EP_REQ` (SRSP).
    ZdoActiveEpRsp = Srsp Zdo 0x05, "ZDO_ACTIVE_EP_REQ_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(ZdoActiveEpReq => ZdoActiveEpRsp);

payload! {
    /// `ZDO_MGMT_LQI_REQ` (SREQ): ask a router (or the coordinator itself, 0x0000) for its
    /// neighbour table, from `start_index` on.
    ZdoMgmtLqiReq = Sreq Zdo 0x31, "ZDO_MGMT_LQI_REQ" {
        /// The router to ask.
        dst_addr: u16 => u16,
        /// The first table entry wanted.
        start_index: u8 => u8,
    }
}

payload! {
    /// `ZDO_MGMT_LQI_REQ` (SRSP).
    ZdoMgmtLqiRsp = Srsp Zdo 0x31, "ZDO_MGMT_LQI_REQ_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(ZdoMgmtLqiReq => ZdoMgmtLqiRsp);

/// A node's simple descriptor for one endpoint: its profile, device type and clusters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimpleDescriptor {
    /// The endpoint (1..=240).
    pub endpoint: u8,
    /// Application profile (0x0104 Home Automation).
    pub profile_id: u16,
    /// Device ID within the profile (0x0100 On/Off Light, 0x0302 Temperature Sensor...).
    pub device_id: u16,
    /// Device version.
    pub device_version: u8,
    /// Server clusters.
    pub input_clusters: Vec<u16>,
    /// Client clusters.
    pub output_clusters: Vec<u16>,
}

/// `ZDO_SIMPLE_DESC_RSP` (AREQ): a node's answer to [`ZdoSimpleDescReq`]. The descriptor is
/// preceded by its length, which is 0 (and the descriptor absent) when `status` is not success.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ZdoSimpleDescCallback {
    /// The node that answered.
    pub src_addr: u16,
    /// [`zdo_status`].
    pub status: u8,
    /// The node the answer is about.
    pub nwk_addr: u16,
    /// The descriptor, when there is one.
    pub descriptor: Option<SimpleDescriptor>,
}

impl Payload for ZdoSimpleDescCallback {
    const HEADER: CommandHeader = hdr(Areq, Zdo, 0x84);
    const NAME: &'static str = "ZDO_SIMPLE_DESC_RSP";
    fn encode(&self, w: &mut Writer) {
        w.u16(self.src_addr);
        w.u8(self.status);
        w.u16(self.nwk_addr);
        let mut d = Writer::new(Self::NAME);
        if let Some(desc) = &self.descriptor {
            d.u8(desc.endpoint);
            d.u16(desc.profile_id);
            d.u16(desc.device_id);
            d.u8(desc.device_version);
            d.u16_list("input_clusters", &desc.input_clusters);
            d.u16_list("output_clusters", &desc.output_clusters);
        }
        match d.finish() {
            Ok(bytes) => w.short_bytes("simple_descriptor", &bytes),
            Err(CommandError::FieldTooLong { field, len, .. }) => w.fail(field, len),
            Err(_) => w.fail("simple_descriptor", 0),
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, CommandError> {
        let src_addr = r.u16("src_addr")?;
        let status = r.u8("status")?;
        let nwk_addr = r.u16("nwk_addr")?;
        let bytes = r.short_bytes("simple_descriptor")?;
        let descriptor = if bytes.is_empty() {
            None
        } else {
            let mut d = Reader::new(&bytes, Self::NAME);
            let desc = SimpleDescriptor {
                endpoint: d.u8("endpoint")?,
                profile_id: d.u16("profile_id")?,
                device_id: d.u16("device_id")?,
                device_version: d.u8("device_version")?,
                input_clusters: d.u16_list("input_clusters")?,
                output_clusters: d.u16_list("output_clusters")?,
            };
            d.finish()?;
            Some(desc)
        };
        Ok(ZdoSimpleDescCallback {
            src_addr,
            status,
            nwk_addr,
            descriptor,
        })
    }
}

payload! {
    /// `ZDO_ACTIVE_EP_RSP` (AREQ): a node's answer to [`ZdoActiveEpReq`].
    ZdoActiveEpCallback = Areq Zdo 0x85, "ZDO_ACTIVE_EP_RSP" {
        /// The node that answered.
        src_addr: u16 => u16,
        /// [`zdo_status`].
        status: u8 => u8,
        /// The node the answer is about.
        nwk_addr: u16 => u16,
        /// Its active endpoints.
        active_endpoints: Vec<u8> => short_bytes,
    }
}

/// One entry of a neighbour table (`ZDO_MGMT_LQI_RSP`): 22 bytes on the wire, the device
/// type, receiver-on-when-idle and relationship packed into one byte.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Neighbor {
    /// The neighbour's network's extended PAN ID.
    pub extended_pan_id: Eui64,
    /// Its IEEE address.
    pub ieee: Eui64,
    /// Its network address.
    pub nwk: u16,
    /// [`logical_type`] (2 bits).
    pub device_type: u8,
    /// 0 off, 1 on, 2 unknown (2 bits).
    pub rx_on_when_idle: u8,
    /// 0 parent, 1 child, 2 sibling, 3 none, 4 previous child (3 bits).
    pub relationship: u8,
    /// 0 not accepting joins, 1 accepting, 2 unknown (2 bits).
    pub permit_joining: u8,
    /// Its depth in the network tree.
    pub depth: u8,
    /// Link quality of the link to it.
    pub lqi: u8,
}

/// The size of one [`Neighbor`] on the wire.
pub const NEIGHBOR_LEN: usize = 22;

/// `ZDO_MGMT_LQI_RSP` (AREQ): a router's answer to [`ZdoMgmtLqiReq`], one page of its
/// neighbour table (Z-Stack sends at most three entries per page).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ZdoMgmtLqiCallback {
    /// The router that answered.
    pub src_addr: u16,
    /// [`zdo_status`].
    pub status: u8,
    /// How many entries the whole table has.
    pub neighbor_table_entries: u8,
    /// The index of the first entry in this page.
    pub start_index: u8,
    /// The entries of this page.
    pub neighbors: Vec<Neighbor>,
}

impl Payload for ZdoMgmtLqiCallback {
    const HEADER: CommandHeader = hdr(Areq, Zdo, 0xB1);
    const NAME: &'static str = "ZDO_MGMT_LQI_RSP";
    fn encode(&self, w: &mut Writer) {
        w.u16(self.src_addr);
        w.u8(self.status);
        w.u8(self.neighbor_table_entries);
        w.u8(self.start_index);
        match u8::try_from(self.neighbors.len()) {
            Ok(n) => w.u8(n),
            Err(_) => return w.fail("neighbors", self.neighbors.len()),
        }
        for n in &self.neighbors {
            w.eui64(n.extended_pan_id);
            w.eui64(n.ieee);
            w.u16(n.nwk);
            w.u8((n.device_type & 0x03)
                | (n.rx_on_when_idle & 0x03) << 2
                | (n.relationship & 0x07) << 4);
            w.u8(n.permit_joining & 0x03);
            w.u8(n.depth);
            w.u8(n.lqi);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, CommandError> {
        let src_addr = r.u16("src_addr")?;
        let status = r.u8("status")?;
        let neighbor_table_entries = r.u8("neighbor_table_entries")?;
        let start_index = r.u8("start_index")?;
        let count = r.u8("neighbor_count")?;
        let mut neighbors = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let extended_pan_id = r.eui64("extended_pan_id")?;
            let ieee = r.eui64("ieee")?;
            let nwk = r.u16("nwk")?;
            let packed = r.u8("device_type")?;
            let permit_joining = r.u8("permit_joining")? & 0x03;
            neighbors.push(Neighbor {
                extended_pan_id,
                ieee,
                nwk,
                device_type: packed & 0x03,
                rx_on_when_idle: (packed >> 2) & 0x03,
                relationship: (packed >> 4) & 0x07,
                permit_joining,
                depth: r.u8("depth")?,
                lqi: r.u8("lqi")?,
            });
        }
        Ok(ZdoMgmtLqiCallback {
            src_addr,
            status,
            neighbor_table_entries,
            start_index,
            neighbors,
        })
    }
}

// ---- AF ----------------------------------------------------------------------------------

payload! {
    /// `AF_REGISTER` (SREQ): register a local endpoint.
    AfRegisterReq = Sreq Af 0x00, "AF_REGISTER" {
        /// Endpoint (1..=240).
        endpoint: u8 => u8,
        /// Application profile (0x0104 Home Automation).
        profile_id: u16 => u16,
        /// Device ID.
        device_id: u16 => u16,
        /// Device version.
        device_version: u8 => u8,
        /// Latency requirement (0 none).
        latency_req: u8 => u8,
        /// Server clusters.
        input_clusters: Vec<u16> => u16_list,
        /// Client clusters.
        output_clusters: Vec<u16> => u16_list,
    }
}

payload! {
    /// `AF_REGISTER` (SRSP).
    AfRegisterRsp = Srsp Af 0x00, "AF_REGISTER_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(AfRegisterReq => AfRegisterRsp);

payload! {
    /// `AF_DATA_REQUEST` (SREQ): send an APS frame to a short address.
    AfDataRequestReq = Sreq Af 0x01, "AF_DATA_REQUEST" {
        /// Destination network address.
        dst_addr: u16 => u16,
        /// Destination endpoint.
        dst_endpoint: u8 => u8,
        /// Source (local, registered) endpoint.
        src_endpoint: u8 => u8,
        /// Cluster.
        cluster_id: u16 => u16,
        /// AF transaction ID, echoed in [`AfDataConfirm`].
        trans_id: u8 => u8,
        /// Transmit options (0x10 APS ack).
        options: u8 => u8,
        /// Maximum hops.
        radius: u8 => u8,
        /// The APS payload (a ZCL frame).
        data: Vec<u8> => short_bytes,
    }
}

payload! {
    /// `AF_DATA_REQUEST` (SRSP): the request was queued (or why not).
    AfDataRequestRsp = Srsp Af 0x01, "AF_DATA_REQUEST_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(AfDataRequestReq => AfDataRequestRsp);

payload! {
    /// `AF_DATA_CONFIRM` (AREQ): the outcome of an `AF_DATA_REQUEST`.
    AfDataConfirm = Areq Af 0x80, "AF_DATA_CONFIRM" {
        /// Status.
        status: u8 => u8,
        /// The request's source endpoint.
        endpoint: u8 => u8,
        /// The request's transaction ID.
        trans_id: u8 => u8,
    }
}

/// `AF_INCOMING_MSG` (AREQ): an APS frame for a local endpoint.
///
/// Z-Stack appends two bytes TI's document omits (the MAC source address and the message's
/// remaining radius); zigpy-znp requires them, so they are written when present and read when
/// there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AfIncomingMsg {
    /// Group ID (0 if not a group message).
    pub group_id: u16,
    /// Cluster.
    pub cluster_id: u16,
    /// Sender's network address.
    pub src_addr: u16,
    /// Sender's endpoint.
    pub src_endpoint: u8,
    /// Local endpoint.
    pub dst_endpoint: u8,
    /// Whether it was broadcast.
    pub was_broadcast: u8,
    /// Link quality.
    pub lqi: u8,
    /// Whether APS security was used.
    pub security_use: u8,
    /// Receive timestamp (MAC symbol counter).
    pub timestamp: u32,
    /// APS transaction sequence number.
    pub trans_seq: u8,
    /// The APS payload (a ZCL frame).
    pub data: Vec<u8>,
    /// MAC-layer source (last hop).
    pub mac_src_addr: Option<u16>,
    /// Radius left.
    pub msg_result_radius: Option<u8>,
}

impl Payload for AfIncomingMsg {
    const HEADER: CommandHeader = hdr(Areq, Af, 0x81);
    const NAME: &'static str = "AF_INCOMING_MSG";
    fn encode(&self, w: &mut Writer) {
        w.u16(self.group_id);
        w.u16(self.cluster_id);
        w.u16(self.src_addr);
        w.u8(self.src_endpoint);
        w.u8(self.dst_endpoint);
        w.u8(self.was_broadcast);
        w.u8(self.lqi);
        w.u8(self.security_use);
        w.u32(self.timestamp);
        w.u8(self.trans_seq);
        w.short_bytes("data", &self.data);
        if let Some(mac) = self.mac_src_addr {
            w.u16(mac);
            if let Some(radius) = self.msg_result_radius {
                w.u8(radius);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, CommandError> {
        let mut v = AfIncomingMsg {
            group_id: r.u16("group_id")?,
            cluster_id: r.u16("cluster_id")?,
            src_addr: r.u16("src_addr")?,
            src_endpoint: r.u8("src_endpoint")?,
            dst_endpoint: r.u8("dst_endpoint")?,
            was_broadcast: r.u8("was_broadcast")?,
            lqi: r.u8("lqi")?,
            security_use: r.u8("security_use")?,
            timestamp: r.u32("timestamp")?,
            trans_seq: r.u8("trans_seq")?,
            data: r.short_bytes("data")?,
            ..AfIncomingMsg::default()
        };
        if !r.is_empty() {
            v.mac_src_addr = Some(r.u16("mac_src_addr")?);
        }
        if !r.is_empty() {
            v.msg_result_radius = Some(r.u8("msg_result_radius")?);
        }
        Ok(v)
    }
}

// ---- APP_CNF -----------------------------------------------------------------------------

payload! {
    /// `APP_CNF_BDB_START_COMMISSIONING` (SREQ).
    AppCnfBdbStartCommissioningReq = Sreq AppCnf 0x05, "APP_CNF_BDB_START_COMMISSIONING" {
        /// [`bdb`] mode bits.
        mode: u8 => u8,
    }
}

payload! {
    /// `APP_CNF_BDB_START_COMMISSIONING` (SRSP).
    AppCnfBdbStartCommissioningRsp = Srsp AppCnf 0x05, "APP_CNF_BDB_START_COMMISSIONING_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(AppCnfBdbStartCommissioningReq => AppCnfBdbStartCommissioningRsp);

payload! {
    /// `APP_CNF_BDB_SET_CHANNEL` (SREQ).
    AppCnfBdbSetChannelReq = Sreq AppCnf 0x08, "APP_CNF_BDB_SET_CHANNEL" {
        /// 1 primary, 0 secondary channel set.
        is_primary: u8 => u8,
        /// Channel mask (bit N = channel N).
        channels: u32 => u32,
    }
}

payload! {
    /// `APP_CNF_BDB_SET_CHANNEL` (SRSP).
    AppCnfBdbSetChannelRsp = Srsp AppCnf 0x08, "APP_CNF_BDB_SET_CHANNEL_SRSP" {
        /// Status.
        status: u8 => u8,
    }
}
request!(AppCnfBdbSetChannelReq => AppCnfBdbSetChannelRsp);

payload! {
    /// `APP_CNF_BDB_COMMISSIONING_NOTIFICATION` (AREQ).
    AppCnfBdbCommissioningNotification = Areq AppCnf 0x80,
        "APP_CNF_BDB_COMMISSIONING_NOTIFICATION" {
        /// [`bdb`] status.
        status: u8 => u8,
        /// The mode the status is about.
        mode: u8 => u8,
        /// Modes still to run.
        remaining_modes: u8 => u8,
    }
}

// ---- RPC error ---------------------------------------------------------------------------

payload! {
    /// The SRSP a device sends for an SREQ it does not recognise.
    RpcErrorRsp = Srsp RpcError 0x00, "RPC_ERROR" {
        /// [`rpc_error`] code.
        error_code: u8 => u8,
        /// The request's `CMD0`.
        req_cmd0: u8 => u8,
        /// The request's `CMD1`.
        req_cmd1: u8 => u8,
    }
}

impl RpcErrorRsp {
    /// The header of the request that was refused (as an SREQ).
    pub fn request_header(&self) -> CommandHeader {
        CommandHeader::from_bytes(self.req_cmd0, self.req_cmd1)
    }
}

macro_rules! commands {
    ($( $variant:ident ),* $(,)?) => {
        /// Any MT command this module models, or the raw frame of one it does not.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Command {
            $(
                #[doc = concat!("[`", stringify!($variant), "`].")]
                $variant($variant),
            )*
            /// A well-formed frame with a header this module does not model.
            Other(FrameRepr),
        }

        impl Command {
            /// Decodes a frame. Unknown headers give [`Command::Other`]; a known header with
            /// a malformed payload is an error.
            pub fn from_frame(frame: &FrameRepr) -> Result<Command, CommandError> {
                $(
                    if frame.header == <$variant as Payload>::HEADER {
                        return $variant::from_payload(&frame.payload).map(Command::$variant);
                    }
                )*
                Ok(Command::Other(frame.clone()))
            }

            /// The frame for this command.
            pub fn to_frame(&self) -> Result<FrameRepr, CommandError> {
                match self {
                    $( Command::$variant(c) => c.to_frame(), )*
                    Command::Other(f) => Ok(f.clone()),
                }
            }

            /// The header.
            pub fn header(&self) -> CommandHeader {
                match self {
                    $( Command::$variant(_) => <$variant as Payload>::HEADER, )*
                    Command::Other(f) => f.header,
                }
            }

            /// The name as in TI's documentation (`"OTHER"` for [`Command::Other`]).
            pub fn name(&self) -> &'static str {
                match self {
                    $( Command::$variant(_) => <$variant as Payload>::NAME, )*
                    Command::Other(_) => "OTHER",
                }
            }
        }

        $(
            impl From<$variant> for Command {
                fn from(v: $variant) -> Command {
                    Command::$variant(v)
                }
            }
        )*
    };
}

commands! {
    SysResetReq,
    SysPingReq,
    SysPingRsp,
    SysVersionReq,
    SysVersionRsp,
    SysOsalNvItemInitReq,
    SysOsalNvItemInitRsp,
    SysOsalNvReadReq,
    SysOsalNvReadRsp,
    SysOsalNvWriteReq,
    SysOsalNvWriteRsp,
    SysOsalNvDeleteReq,
    SysOsalNvDeleteRsp,
    SysOsalNvLengthReq,
    SysOsalNvLengthRsp,
    SysOsalNvReadExtReq,
    SysOsalNvReadExtRsp,
    SysOsalNvWriteExtReq,
    SysOsalNvWriteExtRsp,
    SysNvLengthReq,
    SysNvLengthRsp,
    SysNvReadReq,
    SysNvReadRsp,
    SysNvWriteReq,
    SysNvWriteRsp,
    SysResetInd,
    UtilGetDeviceInfoReq,
    UtilGetDeviceInfoRsp,
    UtilAssocFindDeviceReq,
    UtilAssocFindDeviceRsp,
    ZdoStartupFromAppReq,
    ZdoStartupFromAppRsp,
    ZdoStateChangeInd,
    ZdoSimpleDescReq,
    ZdoSimpleDescRsp,
    ZdoActiveEpReq,
    ZdoActiveEpRsp,
    ZdoMgmtLqiReq,
    ZdoMgmtLqiRsp,
    ZdoSimpleDescCallback,
    ZdoActiveEpCallback,
    ZdoMgmtLqiCallback,
    AfRegisterReq,
    AfRegisterRsp,
    AfDataRequestReq,
    AfDataRequestRsp,
    AfDataConfirm,
    AfIncomingMsg,
    AppCnfBdbStartCommissioningReq,
    AppCnfBdbStartCommissioningRsp,
    AppCnfBdbSetChannelReq,
    AppCnfBdbSetChannelRsp,
    AppCnfBdbCommissioningNotification,
    RpcErrorRsp,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Other(frame) => write!(f, "{frame}"),
            other => write!(f, "{} {other:?}", other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_response_matches_zstack_330_bytes() {
        // What a CC26X2R1 on Z-Stack 3.30 build 20220219 answers (zigpy-znp's test device).
        let rsp = SysVersionRsp {
            transport_rev: 2,
            product_id: 1,
            major_rel: 2,
            minor_rel: 7,
            maint_rel: 1,
            code_revision: Some(20_220_219),
            bootloader_build_type: Some(0),
            bootloader_revision: Some(0xFFFF_FFFF),
        };
        let payload = rsp.to_payload().expect("encodes");
        assert_eq!(
            payload,
            [0x02, 0x01, 0x02, 0x07, 0x01, 0x3B, 0x89, 0x34, 0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(SysVersionRsp::from_payload(&payload), Ok(rsp));
    }

    #[test]
    fn zdo_callbacks_match_zstack_layout() {
        let lqi = ZdoMgmtLqiCallback {
            src_addr: 0x0000,
            status: zdo_status::SUCCESS,
            neighbor_table_entries: 1,
            start_index: 0,
            neighbors: vec![Neighbor {
                extended_pan_id: Eui64(0xDDDD_DDDD_DDDD_DDDD),
                ieee: Eui64(0x0017_8801_0203_0405),
                nwk: 0x4F21,
                device_type: logical_type::ROUTER,
                rx_on_when_idle: 1,
                relationship: 1,
                permit_joining: 0,
                depth: 1,
                lqi: 180,
            }],
        };
        let payload = lqi.to_payload().expect("encodes");
        assert_eq!(payload.len(), 6 + NEIGHBOR_LEN);
        // Router (1) | rx on (1 << 2) | child (1 << 4).
        assert_eq!(&payload[6 + 18..], [0x15, 0x00, 0x01, 180]);
        assert_eq!(ZdoMgmtLqiCallback::from_payload(&payload), Ok(lqi));
        assert!(ZdoMgmtLqiCallback::from_payload(&payload[..payload.len() - 1]).is_err());

        let desc = ZdoSimpleDescCallback {
            src_addr: 0x4F21,
            status: zdo_status::SUCCESS,
            nwk_addr: 0x4F21,
            descriptor: Some(SimpleDescriptor {
                endpoint: 1,
                profile_id: 0x0104,
                device_id: 0x0100,
                device_version: 1,
                input_clusters: vec![0x0000, 0x0006],
                output_clusters: vec![],
            }),
        };
        let payload = desc.to_payload().expect("encodes");
        assert_eq!(
            payload,
            [0x21, 0x4F, 0x00, 0x21, 0x4F, 12, 1, 0x04, 0x01, 0x00, 0x01, 1, 2, 0, 0, 6, 0, 0]
        );
        assert_eq!(ZdoSimpleDescCallback::from_payload(&payload), Ok(desc));
        let refused = [0x21, 0x4F, zdo_status::NOT_ACTIVE, 0x21, 0x4F, 0];
        assert_eq!(
            ZdoSimpleDescCallback::from_payload(&refused).map(|d| d.descriptor),
            Ok(None)
        );
        // A descriptor length that overstates what follows is an error, not a panic.
        assert!(ZdoSimpleDescCallback::from_payload(&[0, 0, 0, 0, 0, 9, 1]).is_err());
    }

    #[test]
    fn unknown_header_is_other_and_bad_payload_is_error() {
        let other = FrameRepr::new(hdr(Sreq, Subsystem::Mac, 0x42), vec![1, 2]).expect("frame");
        assert_eq!(
            Command::from_frame(&other),
            Ok(Command::Other(other.clone()))
        );
        let short = FrameRepr::new(SysPingRsp::HEADER, vec![1]).expect("frame");
        assert!(matches!(
            Command::from_frame(&short),
            Err(CommandError::Truncated { .. })
        ));
        let long = FrameRepr::new(SysPingReq::HEADER, vec![1]).expect("frame");
        assert!(matches!(
            Command::from_frame(&long),
            Err(CommandError::TrailingBytes { .. })
        ));
    }
}
