//! The bridge's Z-Stack host: the blocking side of the protocol converter, on a
//! [`ZnpPort`].
//!
//! [`Host::start`] brings the coordinator up the way Z-Stack 3.x hosts (zigpy-znp, Zigbee2MQTT)
//! do ([`start_stick`], which the Zigbee link shares): ping it, soft-reset it (which also forgets endpoints a previous host registered), start
//! the network it has in NV and wait until it is the coordinator, then register the bridge's own
//! endpoint. [`Host::discover`] walks the network with ZDO: the neighbour tables of the
//! coordinator and of every router it learns of (`ZDO_MGMT_LQI_REQ`), then each node's active
//! endpoints and their simple descriptors. [`Host::execute`] carries out one operation: each ZCL
//! request goes out in an `AF_DATA_REQUEST` with APS acknowledgement, its delivery is confirmed
//! by `AF_DATA_CONFIRM`, and its answer arrives in an `AF_INCOMING_MSG`; every wait has a
//! deadline.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::link::znp::commands::{
    device_state, logical_type, status, zdo_status, AfDataConfirm, AfDataRequestReq, AfIncomingMsg,
    AfRegisterReq, ZdoActiveEpCallback, ZdoActiveEpReq, ZdoMgmtLqiCallback, ZdoMgmtLqiReq,
    ZdoSimpleDescCallback, ZdoSimpleDescReq,
};
pub use crate::link::znp::start::{start_stick, StartError};
use crate::link::znp::zcl::{self, ZclFrame};
use crate::link::znp::{PortError, ZnpPort};

use super::ops::{BridgedDevice, BridgedKind, Discovered, Failure, Operation, Reply};

/// The endpoint the bridge registers on the coordinator and sends from.
pub const BRIDGE_ENDPOINT: u8 = 1;
/// Home Automation device ID the bridge registers as: a Combined Interface.
const HA_COMBINED_INTERFACE: u16 = 0x0007;
/// `AF_DATA_REQUEST` option: ask for an APS acknowledgement.
const AF_ACK_REQUEST: u8 = 0x10;
/// `AF_DATA_REQUEST` radius (maximum hops).
const AF_RADIUS: u8 = 30;
/// How many nodes discovery visits at most (it stops there rather than loop on a bad table).
const MAX_NODES: usize = 64;

/// A running coordinator, ready for ZCL exchanges.
#[derive(Debug)]
pub struct Host {
    port: ZnpPort,
    timeout: Duration,
    tsn: u8,
    trans_id: u8,
}

impl Host {
    /// Opens the coordinator at `path` and brings it up (see the module docs). `timeout` bounds
    /// each SREQ and each wait; starting the network may take up to ten times as long.
    pub fn start(path: &str, baud: u32, timeout: Duration) -> Result<Host, StartError> {
        let port = start_stick(
            path,
            baud,
            timeout,
            &[device_state::STARTED_AS_COORDINATOR],
            &AfRegisterReq {
                endpoint: BRIDGE_ENDPOINT,
                profile_id: zcl::PROFILE_HA,
                device_id: HA_COMBINED_INTERFACE,
                device_version: 0,
                latency_req: 0,
                input_clusters: vec![zcl::CLUSTER_BASIC],
                output_clusters: vec![zcl::CLUSTER_ON_OFF, zcl::CLUSTER_TEMPERATURE],
            },
        )?;
        Ok(Host {
            port,
            timeout,
            tsn: 0,
            trans_id: 0,
        })
    }

    /// The serial port's name.
    pub fn port_name(&self) -> &str {
        self.port.name()
    }

    /// Finds the on/off and temperature endpoints on the network (see the module docs). A node
    /// that does not answer is logged and skipped; only a failure of the coordinator itself is
    /// an error.
    pub fn discover(&mut self) -> Result<Vec<Discovered>, Failure> {
        // Breadth-first over routers, starting at the coordinator (0x0000).
        let mut nodes: BTreeMap<u16, (crate::link::znp::commands::Eui64, u8)> = BTreeMap::new();
        let mut visited: BTreeSet<u16> = BTreeSet::new();
        let mut queue: VecDeque<u16> = VecDeque::from([0x0000]);
        while let Some(router) = queue.pop_front() {
            if !visited.insert(router) || visited.len() > MAX_NODES {
                continue;
            }
            let table = match self.neighbour_table(router) {
                Ok(t) => t,
                Err(e) => {
                    if router == 0x0000 {
                        return Err(e);
                    }
                    tracing::warn!(router = format!("{router:#06x}"), %e, "bridge: no neighbour table");
                    continue;
                }
            };
            for n in table {
                if n.nwk == 0x0000 || n.nwk >= 0xFFF8 || nodes.len() >= MAX_NODES {
                    continue;
                }
                nodes.entry(n.nwk).or_insert((n.ieee, n.device_type));
                if n.device_type == logical_type::ROUTER && !visited.contains(&n.nwk) {
                    queue.push_back(n.nwk);
                }
            }
        }
        let mut found = Vec::new();
        for (nwk, (ieee, _)) in nodes {
            let endpoints = match self.active_endpoints(nwk) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(nwk = format!("{nwk:#06x}"), %e, "bridge: no active endpoints");
                    continue;
                }
            };
            for endpoint in endpoints {
                match self.simple_descriptor(nwk, endpoint) {
                    Ok(clusters) => {
                        for kind in BridgedKind::from_clusters(&clusters) {
                            found.push(Discovered {
                                nwk,
                                ieee,
                                endpoint,
                                kind,
                            });
                        }
                    }
                    Err(e) => tracing::warn!(
                        nwk = format!("{nwk:#06x}"),
                        endpoint,
                        %e,
                        "bridge: no simple descriptor"
                    ),
                }
            }
        }
        Ok(found)
    }

    fn neighbour_table(
        &mut self,
        router: u16,
    ) -> Result<Vec<crate::link::znp::commands::Neighbor>, Failure> {
        let mut out = Vec::new();
        loop {
            let start_index = u8::try_from(out.len()).unwrap_or(u8::MAX);
            let sent = self.port.call(&ZdoMgmtLqiReq {
                dst_addr: router,
                start_index,
            });
            self.zdo_sent("ZDO_MGMT_LQI_REQ", sent.map(|r| r.status))?;
            let page = self
                .port
                .wait_for::<ZdoMgmtLqiCallback>(self.timeout, |c| {
                    c.src_addr == router && c.start_index == start_index
                })
                .map_err(|e| self.failure(e))?;
            if page.status != zdo_status::SUCCESS {
                return Err(Failure::Malformed(format!(
                    "ZDO_MGMT_LQI_RSP from {router:#06x} with ZDO status {:#04x}",
                    page.status
                )));
            }
            let more = !page.neighbors.is_empty();
            out.extend(page.neighbors);
            if !more || out.len() >= usize::from(page.neighbor_table_entries) || out.len() >= 255 {
                return Ok(out);
            }
        }
    }

    fn active_endpoints(&mut self, nwk: u16) -> Result<Vec<u8>, Failure> {
        let sent = self.port.call(&ZdoActiveEpReq {
            dst_addr: nwk,
            nwk_addr_of_interest: nwk,
        });
        self.zdo_sent("ZDO_ACTIVE_EP_REQ", sent.map(|r| r.status))?;
        let rsp = self
            .port
            .wait_for::<ZdoActiveEpCallback>(self.timeout, |c| {
                c.src_addr == nwk && c.nwk_addr == nwk
            })
            .map_err(|e| self.failure(e))?;
        if rsp.status != zdo_status::SUCCESS {
            return Err(Failure::Malformed(format!(
                "ZDO_ACTIVE_EP_RSP with ZDO status {:#04x}",
                rsp.status
            )));
        }
        Ok(rsp.active_endpoints)
    }

    fn simple_descriptor(&mut self, nwk: u16, endpoint: u8) -> Result<Vec<u16>, Failure> {
        let sent = self.port.call(&ZdoSimpleDescReq {
            dst_addr: nwk,
            nwk_addr_of_interest: nwk,
            endpoint,
        });
        self.zdo_sent("ZDO_SIMPLE_DESC_REQ", sent.map(|r| r.status))?;
        let rsp = self
            .port
            .wait_for::<ZdoSimpleDescCallback>(self.timeout, |c| {
                c.src_addr == nwk
                    && c.nwk_addr == nwk
                    && c.descriptor.as_ref().is_none_or(|d| d.endpoint == endpoint)
            })
            .map_err(|e| self.failure(e))?;
        match rsp.descriptor {
            Some(d) if rsp.status == zdo_status::SUCCESS => Ok(d.input_clusters),
            _ => Err(Failure::Malformed(format!(
                "ZDO_SIMPLE_DESC_RSP for endpoint {endpoint} with ZDO status {:#04x}",
                rsp.status
            ))),
        }
    }

    fn zdo_sent(&self, what: &'static str, srsp: Result<u8, PortError>) -> Result<(), Failure> {
        match srsp {
            Ok(status::SUCCESS) => Ok(()),
            Ok(status) => Err(Failure::Delivery { what, status }),
            Err(e) => Err(self.failure(e)),
        }
    }

    /// Carries out `op` on `device`: the operation's ZCL requests one after the other, and the
    /// CAP_RESULT text once all succeeded.
    pub fn execute(&mut self, device: &BridgedDevice, op: Operation) -> Result<String, Failure> {
        let mut read = None;
        for request in op.requests(device.kind) {
            if let Some(v) = self.exchange(device, *request)? {
                read = Some(v);
            }
        }
        op.result(device.kind, read.as_ref())
    }

    /// One ZCL request and its answer.
    fn exchange(
        &mut self,
        device: &BridgedDevice,
        request: super::ops::ZclRequest,
    ) -> Result<Option<zcl::Value>, Failure> {
        // AREQs nobody waits for (late answers to requests that timed out, reports) would
        // otherwise pile up in the port's queue.
        let stale = self
            .port
            .take_areqs(Duration::ZERO)
            .map_err(|e| self.failure(e))?;
        if !stale.is_empty() {
            tracing::debug!(
                count = stale.len(),
                "bridge: dropped unsolicited MT indications"
            );
        }
        self.tsn = self.tsn.wrapping_add(1);
        self.trans_id = self.trans_id.wrapping_add(1);
        let (tsn, trans_id) = (self.tsn, self.trans_id);
        let cluster = device.kind.cluster();
        let deadline = Instant::now() + self.timeout;
        let rsp = self
            .port
            .call(&AfDataRequestReq {
                dst_addr: device.nwk,
                dst_endpoint: device.endpoint,
                src_endpoint: BRIDGE_ENDPOINT,
                cluster_id: cluster,
                trans_id,
                options: AF_ACK_REQUEST,
                radius: AF_RADIUS,
                data: request.frame(tsn).to_bytes(),
            })
            .map_err(|e| self.failure(e))?;
        if rsp.status != status::SUCCESS {
            return Err(Failure::Delivery {
                what: "AF_DATA_REQUEST",
                status: rsp.status,
            });
        }
        let confirm = self
            .port
            .wait_for::<AfDataConfirm>(remaining(deadline), |c| {
                c.trans_id == trans_id && c.endpoint == BRIDGE_ENDPOINT
            })
            .map_err(|e| self.failure(e))?;
        if confirm.status != status::SUCCESS {
            return Err(Failure::Delivery {
                what: "AF_DATA_CONFIRM",
                status: confirm.status,
            });
        }
        loop {
            let msg = self
                .port
                .wait_for::<AfIncomingMsg>(remaining(deadline), |m| {
                    m.src_addr == device.nwk
                        && m.src_endpoint == device.endpoint
                        && m.dst_endpoint == BRIDGE_ENDPOINT
                        && m.cluster_id == cluster
                })
                .map_err(|e| match e {
                    PortError::Timeout { .. } => Failure::Timeout {
                        waiting_for: format!("answer to {}", request.name()),
                        timeout_ms: self.timeout.as_millis() as u64,
                    },
                    other => self.failure(other),
                })?;
            let Ok(frame) = ZclFrame::parse(&msg.data) else {
                continue; // not ZCL: not the answer
            };
            match request.interpret(tsn, &frame) {
                Reply::NotOurs => continue,
                Reply::Done(v) => return Ok(v),
                Reply::Failed(f) => return Err(f),
            }
        }
    }

    fn failure(&self, e: PortError) -> Failure {
        match e {
            PortError::Timeout { waiting_for, .. } => Failure::Timeout {
                waiting_for,
                timeout_ms: self.timeout.as_millis() as u64,
            },
            e @ (PortError::Malformed { .. } | PortError::Encode(_)) => {
                Failure::Malformed(e.to_string())
            }
            other => Failure::Coordinator(other.to_string()),
        }
    }
}

/// Time left until `deadline` (zero once passed: a wait then reads what is already there).
fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Whether a failure means the coordinator itself is gone (the port must be reopened).
pub fn is_fatal(f: &Failure) -> bool {
    matches!(f, Failure::Coordinator(_))
}
