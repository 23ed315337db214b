//! One stick's firmware as its host sees it over MT: the SREQ dispatch (SYS, NV, UTIL, AF, ZDO
//! and BDB start), its commissioning state and the frames it has scheduled for its host.

use super::node::{Identity, Role};
use super::nv::{assoc_entry, formed_nv, NV_ITEM_LEGACY, NV_READ_MAX, NV_SYS_ZSTACK};
use super::{EmulatorConfig, APS_DUPLICATE_ENTRY, NETWORK_RESTORE_TIME, RESET_TIME, SENSOR_NWK};
use softbus::link::znp::commands::{
    bdb, capabilities, device_state, rpc_error, status, AfRegisterReq, AfRegisterRsp,
    AppCnfBdbCommissioningNotification, AppCnfBdbSetChannelReq, AppCnfBdbSetChannelRsp,
    AppCnfBdbStartCommissioningReq, AppCnfBdbStartCommissioningRsp, Command, Payload, RpcErrorRsp,
    SimpleDescriptor, SysNvLengthReq, SysNvLengthRsp, SysNvReadReq, SysNvReadRsp, SysNvWriteReq,
    SysNvWriteRsp, SysOsalNvDeleteReq, SysOsalNvDeleteRsp, SysOsalNvItemInitReq,
    SysOsalNvItemInitRsp, SysOsalNvLengthReq, SysOsalNvLengthRsp, SysOsalNvReadExtRsp,
    SysOsalNvReadRsp, SysOsalNvWriteExtRsp, SysOsalNvWriteRsp, SysPingRsp, SysResetInd,
    SysVersionRsp, UtilAssocFindDeviceRsp, UtilGetDeviceInfoRsp, ZdoStartupFromAppRsp,
    ZdoStateChangeInd,
};
use softbus::link::znp::frame::{CommandHeader, FrameRepr, Subsystem};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::time::Instant;

/// Something a stick will do at a given instant.
#[derive(Debug, Clone)]
pub(super) enum Scheduled {
    Send(FrameRepr),
    /// Enter a ZDO state and announce it with `ZDO_STATE_CHANGE_IND`.
    State(u8),
}

/// One CC2652 running Z-Stack 3.30 (ZNP) as its host sees it: the firmware state that belongs
/// to the stick, not to the radio network (see [`Network`] for that).
#[derive(Debug)]
pub(super) struct Stick {
    pub(super) name: String,
    pub(super) id: Identity,
    /// The LQI the coordinator hears it at (and it hears the coordinator at).
    pub(super) lqi: u8,
    pub(super) nv: BTreeMap<(u16, u16), Vec<u8>>,
    pub(super) state: u8,
    pub(super) endpoints: BTreeMap<u8, AfRegisterReq>,
    pub(super) queue: BTreeMap<(Instant, u64), Scheduled>,
    pub(super) seq: u64,
    pub(super) aps_counter: u8,
    pub(super) primary_channels: u32,
    /// When its radio has finished with the frames to other sticks it queued so far.
    pub(super) radio_free: Instant,
}

impl Stick {
    pub(super) fn new(
        name: &str,
        id: Identity,
        lqi: u8,
        config: &EmulatorConfig,
        now: Instant,
    ) -> Stick {
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
    pub(super) fn started_state(&self) -> u8 {
        match self.id.role {
            Role::Coordinator => device_state::STARTED_AS_COORDINATOR,
            Role::Router => device_state::STARTED_AS_ROUTER,
        }
    }

    /// Whether its network is up, so that its radio takes part in the network.
    pub(super) fn on_air(&self) -> bool {
        self.state == self.started_state()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    pub(super) fn poll_transmit(&mut self, now: Instant) -> Option<FrameRepr> {
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
    pub(super) fn catch_up(&mut self, now: Instant) {
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

    pub(super) fn at(&mut self, when: Instant, what: Scheduled) {
        self.seq += 1;
        self.queue.insert((when, self.seq), what);
    }

    pub(super) fn send_at<P: Payload>(&mut self, when: Instant, payload: P) {
        if let Ok(frame) = payload.to_frame() {
            self.at(when, Scheduled::Send(frame));
        }
    }

    pub(super) fn handle_areq(&mut self, frame: &FrameRepr, now: Instant) {
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
    pub(super) fn handle_local(
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

    pub(super) fn rpc_error(&mut self, t: Instant, request: CommandHeader, error_code: u8) {
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
    pub(super) fn start_network(&mut self, t: Instant) -> Instant {
        let up = t + NETWORK_RESTORE_TIME;
        if !self.on_air() {
            if self.id.role == Role::Coordinator {
                self.at(t, Scheduled::State(device_state::STARTING_AS_COORDINATOR));
            }
            self.at(up, Scheduled::State(self.started_state()));
        }
        up
    }

    pub(super) fn nv_read(&self, item: u16, sub: u16, offset: usize, max: usize) -> (u8, Vec<u8>) {
        match self.nv.get(&(item, sub)) {
            None => (status::INVALID_PARAMETER, Vec::new()),
            Some(v) if offset > v.len() => (status::INVALID_PARAMETER, Vec::new()),
            Some(v) => {
                let end = v.len().min(offset.saturating_add(max));
                (status::SUCCESS, v[offset..end].to_vec())
            }
        }
    }

    pub(super) fn nv_write(&mut self, item: u16, sub: u16, offset: usize, value: &[u8]) -> u8 {
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
    pub(super) fn simple_descriptor(&self, endpoint: u8) -> Option<SimpleDescriptor> {
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
    pub(super) fn accepts(&self, endpoint: u8, profile: u16) -> bool {
        self.endpoints.get(&endpoint).is_some_and(|reg| {
            reg.profile_id == profile || reg.profile_id == 0xFFFF || profile == 0xFFFF
        })
    }
}
