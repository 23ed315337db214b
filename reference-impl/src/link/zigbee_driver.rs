//! The Zigbee link driver: SoftBus datagrams over a serial-attached Z-Stack 3.x stick (spec
//! 16.2), for `softbusd`'s `[zigbee]` section.
//!
//! Two parts, kept apart:
//!
//! - [`ZigbeeSar`] is sans-IO: which `AF_INCOMING_MSG`s are SoftBus segments (endpoint
//!   [`SOFTBUS_ENDPOINT`] at both ends, cluster [`SOFTBUS_CLUSTER`]), one [`Reassembler`] per
//!   source network address, and one datagram counter per destination for [`segment`];
//! - [`ZigbeeLink`] runs the blocking [`ZnpPort`] on a thread of its own. It brings the stick up
//!   with the bridge's routine ([`start_stick`]: ping, reset, start the network in NV, wait until
//!   it is a router (`DEV_ROUTER`) or the coordinator, `AF_REGISTER` the SoftBus endpoint), learns
//!   its own network address (`UTIL_GET_DEVICE_INFO`), then serves both directions from one
//!   loop: queued outbound datagrams go out one segment per `AF_DATA_REQUEST` with APS
//!   acknowledgement, each `AF_DATA_CONFIRM` awaited (within the configured timeout) before the
//!   next segment, and between datagrams, and every few milliseconds when idle, the port's
//!   queued AREQs are read, so inbound segments wait at most one datagram's sending.
//!
//! Nothing a peer sends can stop the link: frames that are not SoftBus segments and segments
//! reassembly refuses are counted ([`ZigbeeStats`]) and dropped; a delivery that fails (refused
//! request, failed or missing confirmation) is logged and counted, and the rest of that datagram
//! is not sent (the receiver would discard it); the SoftBus reliability layer above retransmits.
//! If the serial port itself fails (the stick was unplugged), the thread brings the stick up
//! again, backing off up to 5 s between attempts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::sar::{
    max_datagram, segment, Reassembled, Reassembler, ReassemblyError, SegmentError,
    DEFAULT_REASSEMBLY_TIMEOUT,
};
use super::zigbee::{APS_PAYLOAD_MAX, RADIUS, SOFTBUS_CLUSTER, SOFTBUS_ENDPOINT};
use super::znp::commands::{
    status, AfDataConfirm, AfDataRequestReq, AfIncomingMsg, Payload, ZdoStateChangeInd,
};
use super::znp::{FrameRepr, PortError, ZnpPort};
use crate::bridge::host::{start_stick, StartError};

/// `AF_DATA_REQUEST` option: ask for an APS acknowledgement.
const AF_ACK_REQUEST: u8 = 0x10;
/// How long the port loop listens for inbound frames between looks at the outbound queue.
const POLL: Duration = Duration::from_millis(5);
/// Outbound datagrams queued for the port thread at most; more are dropped (and counted).
const QUEUE: usize = 256;
/// Sources with a reassembler kept at most; idle ones are forgotten beyond it.
const MAX_PEERS: usize = 256;
/// Longest pause between attempts to bring a failed stick up again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

use super::zigbee::{register_request, STARTED};

/// Where the stick is and how patient to be with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZigbeeLinkConfig {
    /// Serial port (`/dev/ttyACM0`, `/dev/pts/3`...).
    pub port: String,
    /// Baud rate.
    pub baud: u32,
    /// Bound on each SREQ, and on each wait for an `AF_DATA_CONFIRM`; bringing the stick up may
    /// take ten times as long.
    pub timeout: Duration,
}

/// Counters of the Zigbee link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ZigbeeStats {
    /// Whole datagrams handed to the core.
    pub datagrams_in: u64,
    /// Datagrams whose every segment was confirmed delivered.
    pub datagrams_out: u64,
    /// SoftBus segments received.
    pub segments_in: u64,
    /// Segments confirmed delivered.
    pub segments_out: u64,
    /// Segments reassembly discarded (out of sequence, truncated, length lies, timed out).
    pub bad_segments: u64,
    /// `AF_INCOMING_MSG`s that were not SoftBus segments (other endpoint or cluster) or did not
    /// parse.
    pub foreign_frames: u64,
    /// Segments the stick refused, or whose delivery failed or was not confirmed in time.
    pub send_failures: u64,
    /// Datagrams not sent at all: too long to segment, or the outbound queue was full.
    pub dropped_out: u64,
    /// Times the stick was brought up again after the serial port failed.
    pub restarts: u64,
}

/// What one `AF_INCOMING_MSG` amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole datagram from network address `src`.
    Datagram {
        /// Sender's network address.
        src: u16,
        /// The datagram.
        data: Vec<u8>,
    },
    /// A segment was taken; more are needed.
    Pending,
    /// Not a SoftBus segment (other endpoint or cluster).
    NotOurs,
    /// A segment reassembly refused.
    Discarded(ReassemblyError),
}

/// The sans-IO half of the link: reassembly per source, datagram counters per destination.
#[derive(Debug, Clone)]
pub struct ZigbeeSar {
    reassemblers: HashMap<u16, Reassembler>,
    counters: HashMap<u16, u8>,
    max_len: usize,
    timeout: Duration,
}

impl Default for ZigbeeSar {
    fn default() -> Self {
        ZigbeeSar::new()
    }
}

impl ZigbeeSar {
    /// Accepts datagrams as long as [`APS_PAYLOAD_MAX`] segments can carry, dropping partial
    /// ones after the default reassembly timeout.
    pub fn new() -> ZigbeeSar {
        ZigbeeSar {
            reassemblers: HashMap::new(),
            counters: HashMap::new(),
            max_len: max_datagram(APS_PAYLOAD_MAX),
            timeout: DEFAULT_REASSEMBLY_TIMEOUT,
        }
    }

    /// Takes one `AF_INCOMING_MSG` that arrived at `now`.
    pub fn incoming(&mut self, now: Instant, msg: &AfIncomingMsg) -> Incoming {
        if msg.dst_endpoint != SOFTBUS_ENDPOINT
            || msg.src_endpoint != SOFTBUS_ENDPOINT
            || msg.cluster_id != SOFTBUS_CLUSTER
        {
            return Incoming::NotOurs;
        }
        if !self.reassemblers.contains_key(&msg.src_addr) && self.reassemblers.len() >= MAX_PEERS {
            self.reassemblers.retain(|_, r| r.in_progress());
        }
        let (max_len, timeout) = (self.max_len, self.timeout);
        let r = self
            .reassemblers
            .entry(msg.src_addr)
            .or_insert_with(|| Reassembler::new(max_len, timeout));
        match r.handle(now, &msg.data) {
            Reassembled::Datagram(data) => Incoming::Datagram {
                src: msg.src_addr,
                data,
            },
            Reassembled::Pending => Incoming::Pending,
            Reassembled::Discarded(e) => Incoming::Discarded(e),
        }
    }

    /// The segments of `datagram` for `dst`, tagged with `dst`'s next datagram counter.
    pub fn outgoing(&mut self, dst: u16, datagram: &[u8]) -> Result<Vec<Vec<u8>>, SegmentError> {
        let counter = self.counters.entry(dst).or_insert(0);
        let segs = segment(datagram, *counter, APS_PAYLOAD_MAX)?;
        *counter = counter.wrapping_add(1);
        Ok(segs)
    }
}

/// The `AF_DATA_REQUEST` carrying one SoftBus segment to `dst`.
pub fn data_request(dst: u16, trans_id: u8, segment: Vec<u8>) -> AfDataRequestReq {
    AfDataRequestReq {
        dst_addr: dst,
        dst_endpoint: SOFTBUS_ENDPOINT,
        src_endpoint: SOFTBUS_ENDPOINT,
        cluster_id: SOFTBUS_CLUSTER,
        trans_id,
        options: AF_ACK_REQUEST,
        radius: RADIUS,
        data: segment,
    }
}

/// What the port thread shares with the handle.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ZigbeeStatus {
    /// Whether the stick is up (false while it is being brought up again).
    pub up: bool,
    /// The stick's own network address.
    pub nwk: Option<u16>,
    /// The counters.
    pub stats: ZigbeeStats,
    /// The last failure of the serial port, while it is being recovered from.
    pub error: Option<String>,
}

/// A running Zigbee link: the port thread and the queue to it. Dropping it stops the thread.
#[derive(Debug)]
pub struct ZigbeeLink {
    tx: SyncSender<(u16, Vec<u8>)>,
    status: Arc<Mutex<ZigbeeStatus>>,
    stop: Arc<AtomicBool>,
    nwk: u16,
}

impl Drop for ZigbeeLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl ZigbeeLink {
    /// Brings the stick up (blocking; see the module docs) and starts the port thread, which
    /// hands every whole inbound datagram to `deliver` with its source network address. The
    /// thread ends when `deliver` returns false or the link is dropped.
    pub fn start(
        config: ZigbeeLinkConfig,
        deliver: impl FnMut(u16, Vec<u8>) -> bool + Send + 'static,
    ) -> Result<ZigbeeLink, StartError> {
        let (port, nwk) = bring_up(&config)?;
        tracing::info!(
            port = %config.port,
            nwk = format!("{nwk:#06x}"),
            "zigbee: link up"
        );
        let status = Arc::new(Mutex::new(ZigbeeStatus {
            up: true,
            nwk: Some(nwk),
            ..ZigbeeStatus::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel(QUEUE);
        let mut worker = Worker {
            config,
            port,
            sar: ZigbeeSar::new(),
            trans_id: 0,
            status: Arc::clone(&status),
            stop: Arc::clone(&stop),
            deliver: Box::new(deliver),
        };
        std::thread::Builder::new()
            .name("zigbee-link".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| StartError::Port {
                step: "starting the link thread",
                cause: PortError::Io {
                    port: "zigbee".into(),
                    source: e,
                },
            })?;
        Ok(ZigbeeLink {
            tx,
            status,
            stop,
            nwk,
        })
    }

    /// The stick's network address when the link came up.
    pub fn nwk(&self) -> u16 {
        self.nwk
    }

    /// Queues `datagram` for `dst`. Never blocks: when the queue is full (the stick is slower
    /// than the core) the datagram is dropped and counted, as a radio would lose it.
    pub fn send(&self, dst: u16, datagram: Vec<u8>) {
        match self.tx.try_send((dst, datagram)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if let Ok(mut s) = self.status.lock() {
                    s.stats.dropped_out += 1;
                }
                tracing::debug!(dst = format!("{dst:#06x}"), "zigbee: outbound queue full");
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::debug!(dst = format!("{dst:#06x}"), "zigbee: link thread has ended");
            }
        }
    }

    /// Whether it is up, its address, and the counters.
    pub fn status(&self) -> ZigbeeStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Opens and starts the stick, registers the SoftBus endpoint and learns the stick's address.
fn bring_up(config: &ZigbeeLinkConfig) -> Result<(ZnpPort, u16), StartError> {
    let mut port = start_stick(
        &config.port,
        config.baud,
        config.timeout,
        STARTED,
        &register_request(),
    )?;
    let info = port.device_info().map_err(|cause| StartError::Port {
        step: "UTIL_GET_DEVICE_INFO",
        cause,
    })?;
    Ok((port, info.nwk))
}

/// The port thread.
struct Worker {
    config: ZigbeeLinkConfig,
    port: ZnpPort,
    sar: ZigbeeSar,
    trans_id: u8,
    status: Arc<Mutex<ZigbeeStatus>>,
    stop: Arc<AtomicBool>,
    deliver: Box<dyn FnMut(u16, Vec<u8>) -> bool + Send>,
}

/// Why the port loop stopped.
enum Stop {
    /// The daemon is gone.
    Done,
    /// The serial port failed.
    Port(PortError),
}

impl Worker {
    fn run(&mut self, rx: Receiver<(u16, Vec<u8>)>) {
        loop {
            match self.serve(&rx) {
                Stop::Done => return,
                Stop::Port(e) => {
                    tracing::error!(%e, "zigbee: the stick failed; bringing it up again");
                    self.set(|s| {
                        s.up = false;
                        s.error = Some(e.to_string());
                    });
                    if !self.recover() {
                        return;
                    }
                }
            }
        }
    }

    /// Brings the stick up again, backing off; false if the link was dropped meanwhile.
    fn recover(&mut self) -> bool {
        let mut backoff = Duration::from_millis(200);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(backoff);
            match bring_up(&self.config) {
                Ok((port, nwk)) => {
                    self.port = port;
                    self.sar = ZigbeeSar::new();
                    tracing::info!(nwk = format!("{nwk:#06x}"), "zigbee: link up again");
                    self.set(|s| {
                        s.up = true;
                        s.nwk = Some(nwk);
                        s.error = None;
                        s.stats.restarts += 1;
                    });
                    return true;
                }
                Err(e) => {
                    tracing::warn!(%e, "zigbee: cannot bring the stick up");
                    self.set(|s| s.error = Some(e.to_string()));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn set(&self, f: impl FnOnce(&mut ZigbeeStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    fn count(&self, f: impl FnOnce(&mut ZigbeeStats)) {
        self.set(|s| f(&mut s.stats));
    }

    /// Serves both directions until the daemon goes away or the port fails.
    fn serve(&mut self, rx: &Receiver<(u16, Vec<u8>)>) -> Stop {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Stop::Done;
            }
            let mut wait = POLL;
            match rx.try_recv() {
                Ok((dst, data)) => {
                    if let Err(e) = self.send_datagram(dst, &data) {
                        return Stop::Port(e);
                    }
                    // Read what is already queued, then come back for the next datagram.
                    wait = Duration::ZERO;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return Stop::Done,
            }
            let frames = match self.port.take_areqs(wait) {
                Ok(f) => f,
                Err(e) => return Stop::Port(e),
            };
            for f in frames {
                if !self.handle_areq(&f) {
                    return Stop::Done;
                }
            }
        }
    }

    /// One AREQ from the stick; false if the daemon is gone.
    fn handle_areq(&mut self, frame: &FrameRepr) -> bool {
        if frame.header == AfIncomingMsg::HEADER {
            let msg = match AfIncomingMsg::from_payload(&frame.payload) {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(%e, "zigbee: malformed AF_INCOMING_MSG");
                    self.count(|c| c.foreign_frames += 1);
                    return true;
                }
            };
            match self.sar.incoming(Instant::now(), &msg) {
                Incoming::Datagram { src, data } => {
                    self.count(|c| {
                        c.segments_in += 1;
                        c.datagrams_in += 1;
                    });
                    return (self.deliver)(src, data);
                }
                Incoming::Pending => self.count(|c| c.segments_in += 1),
                Incoming::NotOurs => {
                    tracing::debug!(
                        src = format!("{:#06x}", msg.src_addr),
                        endpoint = msg.dst_endpoint,
                        cluster = format!("{:#06x}", msg.cluster_id),
                        "zigbee: not a SoftBus frame"
                    );
                    self.count(|c| c.foreign_frames += 1);
                }
                Incoming::Discarded(e) => {
                    tracing::debug!(src = format!("{:#06x}", msg.src_addr), %e, "zigbee: segment discarded");
                    self.count(|c| {
                        c.segments_in += 1;
                        c.bad_segments += 1;
                    });
                }
            }
        } else if frame.header == ZdoStateChangeInd::HEADER {
            if let Ok(ind) = ZdoStateChangeInd::from_payload(&frame.payload) {
                tracing::info!(state = ind.state, "zigbee: stick changed state");
            }
        }
        // Anything else (late confirmations, other indications) is nobody's business here.
        true
    }

    /// Sends one datagram, segment by segment, each confirmed before the next. Only a failure
    /// of the serial port is an error; delivery failures are counted.
    fn send_datagram(&mut self, dst: u16, data: &[u8]) -> Result<(), PortError> {
        let segs = match self.sar.outgoing(dst, data) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(dst = format!("{dst:#06x}"), %e, "zigbee: datagram not sent");
                self.count(|c| c.dropped_out += 1);
                return Ok(());
            }
        };
        let total = segs.len();
        for (i, seg) in segs.into_iter().enumerate() {
            self.trans_id = self.trans_id.wrapping_add(1);
            let trans_id = self.trans_id;
            let failure = match self.port.call(&data_request(dst, trans_id, seg)) {
                Ok(r) if r.status == status::SUCCESS => {
                    match self
                        .port
                        .wait_for::<AfDataConfirm>(self.config.timeout, |c| {
                            c.trans_id == trans_id && c.endpoint == SOFTBUS_ENDPOINT
                        }) {
                        Ok(c) if c.status == status::SUCCESS => None,
                        Ok(c) => Some(format!("AF_DATA_CONFIRM status {:#04x}", c.status)),
                        Err(PortError::Timeout { .. }) => Some(format!(
                            "no AF_DATA_CONFIRM within {:?}",
                            self.config.timeout
                        )),
                        Err(e) => return Err(e),
                    }
                }
                Ok(r) => Some(format!(
                    "AF_DATA_REQUEST refused with status {:#04x}",
                    r.status
                )),
                Err(
                    e @ (PortError::Io { .. }
                    | PortError::Open { .. }
                    | PortError::OpenRemote { .. }),
                ) => return Err(e),
                Err(e) => Some(e.to_string()),
            };
            match failure {
                None => self.count(|c| c.segments_out += 1),
                Some(why) => {
                    tracing::warn!(
                        dst = format!("{dst:#06x}"),
                        segment = i,
                        of = total,
                        %why,
                        "zigbee: delivery failed; the rest of the datagram is dropped"
                    );
                    self.count(|c| c.send_failures += 1);
                    return Ok(());
                }
            }
        }
        self.count(|c| c.datagrams_out += 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(src: u16, data: Vec<u8>) -> AfIncomingMsg {
        AfIncomingMsg {
            cluster_id: SOFTBUS_CLUSTER,
            src_addr: src,
            src_endpoint: SOFTBUS_ENDPOINT,
            dst_endpoint: SOFTBUS_ENDPOINT,
            data,
            ..AfIncomingMsg::default()
        }
    }

    #[test]
    fn segments_fit_the_aps_payload_and_counters_are_per_destination() {
        let mut sar = ZigbeeSar::new();
        let d: Vec<u8> = (0..200).map(|i| i as u8).collect();
        let a1 = sar.outgoing(0x1234, &d).unwrap();
        let a2 = sar.outgoing(0x1234, &d).unwrap();
        let b1 = sar.outgoing(0x4321, &d).unwrap();
        assert!(a1.iter().all(|s| s.len() <= APS_PAYLOAD_MAX));
        assert_eq!(a1.len(), 3); // 76 + 78 + 46
        assert_eq!(a1[0][0] & 0x3F, 0);
        assert_eq!(a2[0][0] & 0x3F, 1);
        assert_eq!(b1[0][0] & 0x3F, 0);
    }

    #[test]
    fn reassembles_per_source_and_ignores_other_traffic() {
        let mut sar = ZigbeeSar::new();
        let now = Instant::now();
        let a: Vec<u8> = (0..150).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..100).map(|i| (i * 3) as u8).collect();
        let sa = ZigbeeSar::new().outgoing(1, &a).unwrap();
        let sb = ZigbeeSar::new().outgoing(2, &b).unwrap();
        // Interleaved sources do not disturb each other.
        assert_eq!(sar.incoming(now, &msg(1, sa[0].clone())), Incoming::Pending);
        assert_eq!(sar.incoming(now, &msg(2, sb[0].clone())), Incoming::Pending);
        assert_eq!(
            sar.incoming(now, &msg(2, sb[1].clone())),
            Incoming::Datagram { src: 2, data: b }
        );
        assert_eq!(
            sar.incoming(now, &msg(1, sa[1].clone())),
            Incoming::Datagram { src: 1, data: a }
        );
        let mut other = msg(1, sa[0].clone());
        other.cluster_id = 0x0006;
        assert_eq!(sar.incoming(now, &other), Incoming::NotOurs);
        let mut other = msg(1, sa[0].clone());
        other.dst_endpoint = 1;
        assert_eq!(sar.incoming(now, &other), Incoming::NotOurs);
        assert_eq!(
            sar.incoming(now, &msg(1, vec![0x01])),
            Incoming::Discarded(ReassemblyError::Truncated)
        );
    }

    #[test]
    fn the_endpoint_registration_and_requests_use_the_binding_numbers() {
        let r = register_request();
        assert_eq!((r.endpoint, r.profile_id), (0x5B, 0xC05B));
        assert_eq!(r.input_clusters, vec![0xFC5B]);
        let d = data_request(0x1234, 7, vec![0xC0, 0, 0, 1, 9]);
        assert_eq!(
            (d.dst_endpoint, d.src_endpoint, d.cluster_id),
            (0x5B, 0x5B, 0xFC5B)
        );
        assert_eq!(d.options & AF_ACK_REQUEST, AF_ACK_REQUEST);
        assert!(d.to_frame().is_ok());
    }
}
