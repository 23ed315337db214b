//! The sans-IO network of sticks, the simulated NWK/APS layer: frames between sticks and to the
//! devices cross the modelled 802.15.4 radio, and each stick's ZDO answers the others'.

use super::device::{DeviceKind, DeviceSummary, SimDevice};
use super::node::{node_identities, Identity, NodeSummary, Role};
use super::stick::Stick;
use super::{
    air, mac_timestamp, EmulatorConfig, StickId, AF_ACK_REQUEST, AIR_BYTE, BROADCAST_MIN,
    COORDINATOR, CSMA, DEVICE_ENDPOINT, DEVICE_PROCESSING, LIGHT_IEEE, LIGHT_NWK, MAC_ACK_BYTES,
    MAC_ACK_WAIT, MAC_ATTEMPTS, MT_TURNAROUND, NODE_LQI, NWK_INVALID_REQUEST,
    ROUTE_DISCOVERY_TIMEOUT, SENSOR_IEEE, SENSOR_NWK, TURNAROUND,
};
use softbus::link::zigbee::APS_PAYLOAD_MAX;
use softbus::link::znp::commands::{
    logical_type, rpc_error, status, zdo_status, AfDataConfirm, AfDataRequestReq, AfDataRequestRsp,
    AfIncomingMsg, Command, Neighbor, Payload, ZdoActiveEpCallback, ZdoActiveEpReq, ZdoActiveEpRsp,
    ZdoMgmtLqiCallback, ZdoMgmtLqiReq, ZdoMgmtLqiRsp, ZdoSimpleDescCallback, ZdoSimpleDescReq,
    ZdoSimpleDescRsp,
};
use softbus::link::znp::frame::{CommandType, FrameRepr};
use std::time::Instant;

/// Neighbour table entries per `ZDO_MGMT_LQI_RSP` (Z-Stack's `ZDO_MAX_LQI_ITEMS`).
pub(super) const LQI_PAGE: usize = 3;

/// The sans-IO simulated network: the coordinator stick, the router node sticks, and the
/// legacy ZCL devices, sharing one modelled radio channel. See the module docs.
///
/// Each stick has its own serial line: [`Network::handle_frame`] takes a frame a stick's host
/// sent and the instant its last byte arrived; [`Network::poll_transmit`] gives the frames a
/// stick has for its host whose time has come; [`Network::poll_timeout`] says when a stick's
/// next one is due.
#[derive(Debug)]
pub struct Network {
    pub(super) config: EmulatorConfig,
    pub(super) boot: Instant,
    pub(super) devices: Vec<SimDevice>,
    /// [`COORDINATOR`] first, then the nodes in [`EmulatorConfig::nodes`] order.
    pub(super) sticks: Vec<Stick>,
}

impl Network {
    /// A network whose sticks have all just powered up at `now`, each with the network in NV
    /// (formed by the coordinator, joined by the routers) but not started, as Z-Stack 3 waits
    /// for its host. Node names are taken as given (see [`valid_node_name`](super::valid_node_name)); of duplicates,
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

    /// A stick's ZDO device state ([`device_state`](softbus::link::znp::commands::device_state)).
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

    pub(super) fn handle_sreq(&mut self, s: StickId, frame: &FrameRepr, now: Instant) {
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

    pub(super) fn zdo_srsp<P: Payload>(&mut self, s: StickId, t: Instant, srsp: P) {
        self.sticks[s].send_at(t, srsp);
    }

    /// The stick with network address `nwk`, other than `not`.
    pub(super) fn stick_at(&self, nwk: u16, not: StickId) -> Option<StickId> {
        (0..self.sticks.len()).find(|&i| i != not && self.sticks[i].id.nwk == nwk)
    }

    /// When a ZDO answer from `dst` reaches stick `s`'s host, for a request of `req_len` ZDP
    /// bytes and an answer of `rsp_len`: at once from the stick itself, after a radio round trip
    /// from a device or another stick that is on the air, never from an address nobody has.
    pub(super) fn zdo_answer_at(
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
    pub(super) fn neighbour_table(&self, nwk: u16) -> Option<Vec<Neighbor>> {
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

    pub(super) fn zdo_mgmt_lqi(&mut self, s: StickId, req: ZdoMgmtLqiReq, t: Instant) {
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
    pub(super) fn stick_with(&self, nwk: u16) -> Option<&Stick> {
        self.sticks.iter().find(|k| k.id.nwk == nwk)
    }

    pub(super) fn zdo_active_ep(&mut self, s: StickId, req: ZdoActiveEpReq, t: Instant) {
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

    pub(super) fn zdo_simple_desc(&mut self, s: StickId, req: ZdoSimpleDescReq, t: Instant) {
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

    pub(super) fn af_data_request(&mut self, s: StickId, req: AfDataRequestReq, t: Instant) {
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
    pub(super) fn deliver_to_devices(
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
    pub(super) fn deliver_to_sticks(
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
