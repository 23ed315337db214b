//! SoftBus over Zigbee (spec 16.2) from the tester's side: the harness's own Zigbee radio, a
//! Z-Stack stick on a serial port (ZNP/MT), sending SoftBus segments as APS payloads to the
//! DUT's network address and reassembling what the DUT sends back.
//!
//! On a lab rig the stick is real hardware (a CC2652 on `/dev/ttyUSB0`, or one a serial server
//! shares: `rfc2217://lab-host:3001`, `tcp://lab-host:3002`, see `softbus::link::serial`); on the
//! virtual rig it is one node of the emulated network (`znp-emulator --node tester`). Nothing
//! here differs between them: the same MT frames cross the same kind of serial line.
//!
//! Each segment goes out in an `AF_DATA_REQUEST` with APS acknowledgement; the next waits for
//! the previous one's `AF_DATA_CONFIRM`, so segments arrive in order. A delivery that fails
//! (the DUT is gone, no route) loses the datagram, as on any datagram link: it is counted
//! ([`ZigbeeLink::failed_deliveries`]) and logged, not an error, because the DUT's reliability
//! layer is what a case judges.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use softbus::link::sar::{self, Reassembled, Reassembler};
use softbus::link::zigbee::{
    register_request, APS_PAYLOAD_MAX, RADIUS, SOFTBUS_CLUSTER, SOFTBUS_ENDPOINT, STARTED,
};
use softbus::link::znp::commands::{
    status, AfDataConfirm, AfDataRequestReq, AfIncomingMsg, Payload,
};
use softbus::link::znp::start::start_stick;
use softbus::link::znp::{PortError, ZnpPort};

use super::trace::{Direction, LinkTrace, Traced};
use super::{DatagramLink, LinkError, LinkStats, Transport};

/// `AF_DATA_REQUEST` option: ask for an APS acknowledgement.
const AF_ACK_REQUEST: u8 = 0x10;
/// Largest SoftBus datagram the link carries (spec ZB-3).
pub const MAX_DATAGRAM: usize = 1400;

struct Inner {
    port: ZnpPort,
    reassembler: Reassembler,
    ready: VecDeque<Vec<u8>>,
    counter: u8,
    trans_id: u8,
    failed: u64,
    packets_in: u64,
    largest_in: usize,
}

/// The harness's Zigbee radio, talking to one DUT network address.
pub struct ZigbeeLink {
    inner: Mutex<Inner>,
    trace: LinkTrace,
    dut: u16,
    own_nwk: u16,
    port_name: String,
}

impl std::fmt::Debug for ZigbeeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZigbeeLink")
            .field("port", &self.port_name)
            .field("own_nwk", &self.own_nwk)
            .field("dut", &self.dut)
            .finish()
    }
}

fn radio(step: &str, path: &str) -> impl FnOnce(PortError) -> LinkError {
    let what = format!("Zigbee radio {path}: {step}");
    move |e| LinkError::Radio(format!("{what}: {e}"))
}

impl ZigbeeLink {
    /// Opens the radio at `path`, brings it onto its network and registers the SoftBus
    /// endpoint; datagrams then go to the DUT at network address `dut`. `timeout` bounds each
    /// request to the stick.
    pub fn open(
        path: &str,
        baud: u32,
        dut: u16,
        timeout: Duration,
    ) -> Result<ZigbeeLink, LinkError> {
        let mut port =
            start_stick(path, baud, timeout, STARTED, &register_request()).map_err(|e| {
                LinkError::Radio(format!(
                    "Zigbee radio {path}: {e} (is a Z-Stack stick on this port, at {baud} baud?)"
                ))
            })?;
        let info = port
            .device_info()
            .map_err(radio("UTIL_GET_DEVICE_INFO", path))?;
        tracing::info!(port = path, own_nwk = info.nwk, dut, "zigbee link up");
        Ok(ZigbeeLink {
            inner: Mutex::new(Inner {
                port,
                reassembler: Reassembler::new(MAX_DATAGRAM, sar::DEFAULT_REASSEMBLY_TIMEOUT),
                ready: VecDeque::new(),
                counter: 0,
                trans_id: 0,
                failed: 0,
                packets_in: 0,
                largest_in: 0,
            }),
            trace: LinkTrace::default(),
            dut,
            own_nwk: info.nwk,
            port_name: path.to_string(),
        })
    }

    /// The radio's own network address.
    pub fn own_nwk(&self) -> u16 {
        self.own_nwk
    }

    /// Datagrams whose delivery the radio reported failed.
    pub fn failed_deliveries(&self) -> u64 {
        self.lock().failed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Files an `AF_INCOMING_MSG` from the DUT into the reassembler.
    fn file(&mut self, dut: u16, frame: &softbus::link::znp::FrameRepr) {
        if frame.header != AfIncomingMsg::HEADER {
            return;
        }
        let Ok(msg) = AfIncomingMsg::from_payload(&frame.payload) else {
            return;
        };
        if msg.src_addr != dut
            || msg.dst_endpoint != SOFTBUS_ENDPOINT
            || msg.cluster_id != SOFTBUS_CLUSTER
        {
            return;
        }
        self.packets_in += 1;
        self.largest_in = self.largest_in.max(msg.data.len());
        if let Reassembled::Datagram(d) = self.reassembler.handle(Instant::now(), &msg.data) {
            self.ready.push_back(d);
        }
    }
}

impl ZigbeeLink {
    /// One APS frame to the DUT, waiting for its confirmation; `false` when delivery failed.
    fn send_aps(&self, inner: &mut Inner, cluster: u16, seg: Vec<u8>) -> Result<bool, LinkError> {
        let timeout = inner.port.timeout();
        inner.trans_id = inner.trans_id.wrapping_add(1);
        let trans_id = inner.trans_id;
        let rsp = inner
            .port
            .call(&AfDataRequestReq {
                dst_addr: self.dut,
                dst_endpoint: SOFTBUS_ENDPOINT,
                src_endpoint: SOFTBUS_ENDPOINT,
                cluster_id: cluster,
                trans_id,
                options: AF_ACK_REQUEST,
                radius: RADIUS,
                data: seg,
            })
            .map_err(|e| LinkError::Radio(format!("{}: AF_DATA_REQUEST: {e}", self.port_name)))?;
        if rsp.status != status::SUCCESS {
            inner.failed += 1;
            tracing::debug!(status = rsp.status, "zigbee: AF_DATA_REQUEST refused");
            return Ok(false);
        }
        let confirm = inner
            .port
            .wait_for::<AfDataConfirm>(timeout * 3, |c| c.trans_id == trans_id)
            .map_err(|e| LinkError::Radio(format!("{}: AF_DATA_CONFIRM: {e}", self.port_name)))?;
        if confirm.status != status::SUCCESS {
            inner.failed += 1;
            tracing::debug!(status = confirm.status, "zigbee: delivery failed");
            return Ok(false);
        }
        Ok(true)
    }
}

impl DatagramLink for ZigbeeLink {
    fn send(&self, datagram: &[u8]) -> Result<(), LinkError> {
        self.trace.record(Direction::ToDut, datagram);
        let mut inner = self.lock();
        let counter = inner.counter;
        inner.counter = inner.counter.wrapping_add(1);
        let segments = sar::segment(datagram, counter, APS_PAYLOAD_MAX)
            .map_err(|e| LinkError::TooLong(format!("zigbee: {e}")))?;
        for seg in segments {
            if !self.send_aps(&mut inner, SOFTBUS_CLUSTER, seg)? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn send_packet(&self, packet: &[u8]) -> Result<(), LinkError> {
        let mut inner = self.lock();
        self.send_aps(&mut inner, SOFTBUS_CLUSTER, packet.to_vec())
            .map(|_| ())
    }

    fn send_misaddressed(&self, packet: &[u8]) -> Result<bool, LinkError> {
        let mut inner = self.lock();
        self.send_aps(&mut inner, SOFTBUS_CLUSTER + 1, packet.to_vec())?;
        Ok(true)
    }

    fn take_trace(&self) -> Vec<Traced> {
        self.trace.take().0
    }

    fn stats(&self) -> LinkStats {
        let inner = self.lock();
        LinkStats {
            packets_in: inner.packets_in,
            largest_packet_in: inner.largest_in,
            packet_limit: APS_PAYLOAD_MAX,
            discarded: inner.reassembler.discarded(),
        }
    }

    fn recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>, LinkError> {
        let end = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            if let Some(d) = inner.ready.pop_front() {
                self.trace.record(Direction::FromDut, &d);
                return Ok(Some(d));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Short slices, so a datagram is handed over as soon as its last segment is in.
            let frames = inner
                .port
                .take_areqs(left.min(Duration::from_millis(2)))
                .map_err(|e| LinkError::Radio(format!("{}: {e}", self.port_name)))?;
            for f in &frames {
                inner.file(self.dut, f);
            }
        }
    }

    fn max_datagram(&self) -> usize {
        MAX_DATAGRAM
    }

    fn transport(&self) -> Transport {
        Transport::Zigbee
    }

    fn peer(&self) -> String {
        format!("zigbee:{:#06x}", self.dut)
    }

    fn discarded(&self) -> u64 {
        self.lock().reassembler.discarded()
    }
}

/// What one SoftBus datagram costs on the Zigbee link's physical layers, one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireTime {
    /// Link segments the datagram takes.
    pub segments: usize,
    /// Bytes of MT frames on the two serial lines (sender's host out, receiver's host in).
    pub uart_bytes: usize,
    /// Bytes on the 802.15.4 air, overhead included.
    pub air_bytes: usize,
    /// Their time: 10 bits a byte at the baud rate, 32 µs a byte on air.
    pub time: Duration,
}

/// The physical floor of a `len`-byte datagram crossing the Zigbee link one way, with both
/// radios' hosts at `baud`: per segment, `AF_DATA_REQUEST` out of the sender's host (SOF,
/// length, 2 command bytes, 10 fixed fields, FCS) and `AF_INCOMING_MSG` into the receiver's
/// host (SOF, length, 2 command bytes, 17 fixed fields, 2 trailing, FCS), and on air the segment
/// plus 51 bytes of PHY/MAC/NWK(secured)/APS overhead at 250 kbit/s. Confirmations, CSMA
/// backoff and processing are left out: this is a floor, not a model.
pub fn wire_time(len: usize, baud: u32) -> Option<WireTime> {
    let segments = sar::segment(&vec![0u8; len], 0, APS_PAYLOAD_MAX).ok()?;
    let (mut uart_bytes, mut air_bytes) = (0usize, 0usize);
    for s in &segments {
        uart_bytes += 5 + 10 + s.len() + 5 + 19 + s.len();
        air_bytes += 51 + s.len();
    }
    let time = Duration::from_secs_f64(uart_bytes as f64 * 10.0 / f64::from(baud.max(1)))
        + Duration::from_micros(32 * air_bytes as u64);
    Some(WireTime {
        segments: segments.len(),
        uart_bytes,
        air_bytes,
        time,
    })
}
