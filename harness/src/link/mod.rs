//! The tester's side of a DUT's links: one datagram interface over every medium.
//!
//! A conformance case talks to a DUT through a [`DatagramLink`]: whole SoftBus datagrams in
//! and out, whatever carries them. [`udp::UdpLink`] is a UDP socket; [`zigbee::ZigbeeLink`]
//! drives the harness's own Zigbee radio (a ZNP stick on a serial port) and carries datagrams
//! as APS payloads (spec 16.2); [`ble::BleLink`] is a BLE central (btleplug, over BlueZ or the
//! virtual BlueZ) writing to the DUT's RX characteristic and subscribed to its TX
//! characteristic (spec 16.3). Segmentation to the medium's packet size
//! (`softbus::link::sar`) happens inside the link, so a case sees the same datagrams on every
//! transport, as the reference's core does (one link abstraction).
//!
//! Links are shared (`Arc<dyn DatagramLink>`) between the objects of one case, so every method
//! takes `&self`; a case is single-threaded, so nothing more than interior mutability is needed.

pub mod ble;
pub mod budget;
pub mod impair;
pub mod trace;
pub mod udp;
pub mod zigbee;

use std::net::SocketAddr;
use std::time::Duration;

/// A transport as a case result names it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// SoftBus over UDP/IP.
    Udp,
    /// SoftBus over TCP/IP.
    Tcp,
    /// SoftBus over Zigbee APS through a ZNP radio on a serial port.
    Zigbee,
    /// SoftBus over BLE GATT.
    Ble,
}

impl Transport {
    /// Lowercase name, as in reports and PICS (`TRANSPORT_<NAME>` upper-cased).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Zigbee => "zigbee",
            Transport::Ble => "ble",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A link failed (a rig or harness problem unless the DUT dropped the connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// An OS-level failure (socket, serial port, D-Bus).
    #[error("{0}")]
    Io(String),
    /// The medium's radio or adapter misbehaved or refused.
    #[error("{0}")]
    Radio(String),
    /// The DUT dropped the link (BLE disconnect); it may come back.
    #[error("the DUT dropped the link: {0}")]
    Disconnected(String),
    /// The DUT does not do what the link binding requires (no SoftBus advert, a missing GATT
    /// characteristic): the DUT's fault, not the rig's.
    #[error("{0}")]
    Peer(String),
    /// The case using the link ran past its time budget.
    #[error("{0}")]
    OverBudget(String),
    /// The datagram cannot cross this link (too long).
    #[error("{0}")]
    TooLong(String),
}

impl From<std::io::Error> for LinkError {
    fn from(e: std::io::Error) -> LinkError {
        LinkError::Io(e.to_string())
    }
}

/// Whole SoftBus datagrams to and from one DUT over one medium.
pub trait DatagramLink: Send + Sync {
    /// Sends one datagram to the DUT.
    fn send(&self, datagram: &[u8]) -> Result<(), LinkError>;
    /// The next datagram from the DUT, waiting up to `timeout` (`None` when nothing came).
    fn recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>, LinkError>;
    /// Largest datagram this link carries.
    fn max_datagram(&self) -> usize;
    /// Which transport this is.
    fn transport(&self) -> Transport;
    /// Where the DUT is on this link, for logs and verdicts (`127.0.0.1:4000`,
    /// `zigbee:0x1a2b`, `ble:C1:02:03:04:05:06`).
    fn peer(&self) -> String;
    /// The local IP address, on IP links.
    fn local_ip_addr(&self) -> Option<SocketAddr> {
        None
    }
    /// The DUT's IP address, on IP links.
    fn peer_ip_addr(&self) -> Option<SocketAddr> {
        None
    }
    /// Segments or packets the link discarded on receive (reassembly failures), if it counts.
    fn discarded(&self) -> u64 {
        0
    }
    /// Sends one raw link packet (a segment on segmented links, a datagram on UDP), for cases
    /// that break the segmentation on purpose.
    fn send_packet(&self, packet: &[u8]) -> Result<(), LinkError> {
        self.send(packet)
    }
    /// Sends one packet addressed outside the link binding, which the DUT must ignore (Zigbee:
    /// the SoftBus endpoint with another cluster). `Ok(false)` where the link has no such
    /// addressing.
    fn send_misaddressed(&self, _packet: &[u8]) -> Result<bool, LinkError> {
        Ok(false)
    }
    /// What the link saw of the DUT's packets so far.
    fn stats(&self) -> LinkStats {
        LinkStats {
            discarded: self.discarded(),
            ..LinkStats::default()
        }
    }
    /// The DUT's SoftBus advert data as the link found it (BLE service data), if any.
    fn advert(&self) -> Option<Vec<u8>> {
        None
    }
    /// The datagrams the link carried since the last call, for evidence (links that packet
    /// capture cannot see keep a [`trace::LinkTrace`]; IP links return nothing).
    fn take_trace(&self) -> Vec<trace::Traced> {
        Vec::new()
    }
}

/// Counters of what a link received from the DUT, for cases that judge the link binding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets received from the DUT.
    pub packets_in: u64,
    /// The longest of them, in bytes.
    pub largest_packet_in: usize,
    /// The most a packet may carry on this link (0: no limit below the datagram size).
    pub packet_limit: usize,
    /// Packets discarded by reassembly.
    pub discarded: u64,
}
