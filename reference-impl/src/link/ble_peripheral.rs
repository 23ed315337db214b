//! The BLE peripheral driver: `softbusd`'s Bluetooth LE link (spec 16.3) on the virtual radio
//! ([`super::ble::radio`]), for the `[ble]` section.
//!
//! Only the virtual radio is supported: the daemon connects to the Unix socket of the harness's
//! virtual BlueZ (`vbluez`) and says what it would have put on the air. Driving a real
//! controller as a peripheral (BlueZ's `LEAdvertisingManager1` and `GattManager1` over D-Bus)
//! is out of scope for the reference implementation; a vendor's device does that in firmware.
//!
//! Two parts, kept apart:
//!
//! - [`Peripheral`] is sans-IO: radio messages and outbound datagrams in, radio messages and
//!   whole inbound datagrams out. It advertises ([`AdvertData`], the SoftBus service and the
//!   GATT database), and again when the advert changes (pairable follows the PIN, as the CoAP
//!   advert's `pair` does); it serves one central at a time: its writes to the RX
//!   characteristic are reassembled ([`Reassembler`]) into datagrams from
//!   `LinkAddr::Ble(central)`; datagrams to that central are segmented to ATT_MTU − 3 bytes and
//!   notified on the TX characteristic while the central is subscribed (queued, at most
//!   [`QUEUE`] datagrams, until it subscribes). A disconnection resets the reassembly and the
//!   queue.
//! - [`BleLink::spawn`] runs it in a tokio task over the socket, connecting again with backoff
//!   when the socket closes (vbluez restarts with the DUT, so the radio may come and go).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::ble::radio::{softbus_service, RadioMsg};
use super::ble::{
    segment_size, AdvertData, DEFAULT_ATT_MTU, RX_CHAR_UUID, SERVICE_UUID, TX_CHAR_UUID,
};
use super::sar::{max_datagram, segment, Reassembled, Reassembler, DEFAULT_REASSEMBLY_TIMEOUT};
use crate::endpoint::LinkAddr;

/// Datagrams kept for a central that has not subscribed yet; older ones are dropped beyond.
pub const QUEUE: usize = 64;
/// Longest pause between attempts to reach the radio.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The advert's capability bits (spec BLE-5): bit n for kind n of the spec's kind list
/// ([`crate::capability::KINDS`]); unknown kinds set nothing.
pub fn capability_bits<'a>(kinds: impl IntoIterator<Item = &'a str>) -> u16 {
    kinds
        .into_iter()
        .filter_map(|k| crate::capability::KINDS.iter().position(|s| *s == k))
        .filter(|&i| i < 16)
        .fold(0, |bits, i| bits | 1 << i)
}

/// Counters of the BLE link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BleStats {
    /// Whole datagrams handed to the core.
    pub datagrams_in: u64,
    /// Datagrams notified.
    pub datagrams_out: u64,
    /// Segments reassembly discarded.
    pub bad_segments: u64,
    /// Radio lines that did not parse, or writes that were not hex or not to RX.
    pub bad_messages: u64,
    /// Datagrams dropped: no such central, queue full, too long, or lost with the connection.
    pub dropped_out: u64,
    /// Connections from centrals.
    pub connections: u64,
}

/// The connected central.
#[derive(Debug)]
struct Conn {
    central: String,
    segment: usize,
    subscribed: bool,
    reassembler: Reassembler,
    counter: u8,
    queue: VecDeque<Vec<u8>>,
}

/// The sans-IO peripheral (see the module docs).
#[derive(Debug)]
pub struct Peripheral {
    address: String,
    name: String,
    advert: AdvertData,
    radio_up: bool,
    conn: Option<Conn>,
    out: VecDeque<RadioMsg>,
    delivered: VecDeque<(String, Vec<u8>)>,
    stats: BleStats,
}

impl Peripheral {
    /// A peripheral at `address` named `name`, advertising `advert` once the radio is up.
    pub fn new(address: String, name: String, advert: AdvertData) -> Peripheral {
        Peripheral {
            address,
            name,
            advert,
            radio_up: false,
            conn: None,
            out: VecDeque::new(),
            delivered: VecDeque::new(),
            stats: BleStats::default(),
        }
    }

    /// The device address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The current advert data.
    pub fn advert(&self) -> AdvertData {
        self.advert
    }

    /// The connected central, and whether it is subscribed to TX.
    pub fn central(&self) -> Option<(&str, bool)> {
        self.conn
            .as_ref()
            .map(|c| (c.central.as_str(), c.subscribed))
    }

    /// The counters.
    pub fn stats(&self) -> BleStats {
        self.stats
    }

    /// The `Advertise` message for the current advert.
    pub fn advertise_msg(&self) -> RadioMsg {
        RadioMsg::Advertise {
            address: self.address.clone(),
            name: self.name.clone(),
            service_uuids: vec![SERVICE_UUID.into()],
            service_data: [(SERVICE_UUID.to_string(), hex::encode(self.advert.emit()))]
                .into_iter()
                .collect(),
            services: vec![softbus_service()],
        }
    }

    /// The radio is reachable (the socket connected): advertise.
    pub fn radio_up(&mut self) {
        self.radio_up = true;
        self.conn = None;
        self.out.clear();
        self.out.push_back(self.advertise_msg());
    }

    /// The radio is gone (the socket closed): the connection is lost with it.
    pub fn radio_down(&mut self) {
        self.radio_up = false;
        self.drop_conn();
        self.out.clear();
    }

    /// Changes the advert; advertises again if it changed and the radio is up.
    pub fn set_advert(&mut self, advert: AdvertData) {
        if advert != self.advert {
            self.advert = advert;
            if self.radio_up {
                self.out.push_back(self.advertise_msg());
            }
        }
    }

    fn drop_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            self.stats.dropped_out += c.queue.len() as u64;
        }
    }

    /// Takes one message from the radio that arrived at `now`.
    pub fn handle(&mut self, now: Instant, msg: RadioMsg) {
        match msg {
            RadioMsg::Connected { central, mtu } => {
                self.drop_conn();
                // An MTU below the default is a radio bug; ATT never goes below 23.
                let segment = segment_size(mtu.max(DEFAULT_ATT_MTU));
                tracing::info!(%central, mtu, "ble: central connected");
                self.stats.connections += 1;
                self.conn = Some(Conn {
                    central,
                    segment,
                    subscribed: false,
                    reassembler: Reassembler::new(
                        max_datagram(segment),
                        DEFAULT_REASSEMBLY_TIMEOUT,
                    ),
                    counter: 0,
                    queue: VecDeque::new(),
                });
            }
            RadioMsg::Disconnected { reason } => {
                tracing::info!(%reason, "ble: central disconnected");
                self.drop_conn();
            }
            RadioMsg::Subscribed { char_uuid } if char_uuid.eq_ignore_ascii_case(TX_CHAR_UUID) => {
                if let Some(c) = self.conn.as_mut() {
                    c.subscribed = true;
                    let queued: Vec<Vec<u8>> = c.queue.drain(..).collect();
                    for d in queued {
                        self.notify(&d);
                    }
                }
            }
            RadioMsg::Unsubscribed { char_uuid }
                if char_uuid.eq_ignore_ascii_case(TX_CHAR_UUID) =>
            {
                if let Some(c) = self.conn.as_mut() {
                    c.subscribed = false;
                }
            }
            RadioMsg::Write { char_uuid, data } if char_uuid.eq_ignore_ascii_case(RX_CHAR_UUID) => {
                let (Some(c), Ok(seg)) = (self.conn.as_mut(), hex::decode(&data)) else {
                    self.stats.bad_messages += 1;
                    return;
                };
                match c.reassembler.handle(now, &seg) {
                    Reassembled::Datagram(d) => {
                        self.stats.datagrams_in += 1;
                        self.delivered.push_back((c.central.clone(), d));
                    }
                    Reassembled::Pending => {}
                    Reassembled::Discarded(e) => {
                        tracing::debug!(%e, "ble: segment discarded");
                        self.stats.bad_segments += 1;
                    }
                }
            }
            other => {
                tracing::debug!(msg = ?other, "ble: radio message ignored");
                self.stats.bad_messages += 1;
            }
        }
    }

    /// Sends `datagram` to `central`: notified now if it is connected and subscribed, queued
    /// if it is connected but not subscribed yet, dropped otherwise.
    pub fn send(&mut self, central: &str, datagram: &[u8]) {
        let Some(c) = self.conn.as_mut().filter(|c| c.central == central) else {
            tracing::debug!(%central, "ble: no such central connected; datagram dropped");
            self.stats.dropped_out += 1;
            return;
        };
        if c.subscribed {
            self.notify(datagram);
        } else {
            if c.queue.len() >= QUEUE {
                c.queue.pop_front();
                self.stats.dropped_out += 1;
            }
            c.queue.push_back(datagram.to_vec());
        }
    }

    fn notify(&mut self, datagram: &[u8]) {
        let Some(c) = self.conn.as_mut() else {
            return;
        };
        match segment(datagram, c.counter, c.segment) {
            Ok(segs) => {
                c.counter = c.counter.wrapping_add(1);
                self.stats.datagrams_out += 1;
                for s in segs {
                    self.out.push_back(RadioMsg::Notify {
                        char_uuid: TX_CHAR_UUID.into(),
                        data: hex::encode(s),
                    });
                }
            }
            Err(e) => {
                tracing::warn!(%e, "ble: datagram not sent");
                self.stats.dropped_out += 1;
            }
        }
    }

    /// The next message for the radio.
    pub fn poll_radio(&mut self) -> Option<RadioMsg> {
        self.out.pop_front()
    }

    /// The next whole datagram, with the central it came from.
    pub fn poll_datagram(&mut self) -> Option<(String, Vec<u8>)> {
        self.delivered.pop_front()
    }
}

/// The `[ble]` settings the task needs.
#[derive(Debug, Clone)]
pub struct BleLinkConfig {
    /// The virtual radio's Unix socket.
    pub radio: PathBuf,
    /// The device address ([`super::ble::static_address`] of the device ID).
    pub address: String,
    /// The advertised name.
    pub name: String,
    /// The first advert.
    pub advert: AdvertData,
}

/// What the task shares with the handle.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BleStatus {
    /// Whether the radio socket is connected.
    pub radio_up: bool,
    /// The connected central.
    pub central: Option<String>,
    /// Whether it is subscribed to TX.
    pub subscribed: bool,
    /// The counters.
    pub stats: BleStats,
}

enum Cmd {
    Send(String, Vec<u8>),
    Advert(AdvertData),
}

/// A running BLE peripheral task. Dropping it ends the task.
#[derive(Debug)]
pub struct BleLink {
    tx: mpsc::UnboundedSender<Cmd>,
    status: Arc<Mutex<BleStatus>>,
    address: String,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Send(c, d) => write!(f, "Send({c}, {} bytes)", d.len()),
            Cmd::Advert(a) => write!(f, "Advert({a:?})"),
        }
    }
}

impl BleLink {
    /// Starts the peripheral task (on the current tokio runtime); whole inbound datagrams go to
    /// `inbound` as `(LinkAddr::Ble(central), bytes)`.
    pub fn spawn(config: BleLinkConfig, inbound: mpsc::Sender<(LinkAddr, Vec<u8>)>) -> BleLink {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(BleStatus::default()));
        let address = config.address.clone();
        tokio::spawn(run(config, rx, inbound, Arc::clone(&status)));
        BleLink {
            tx,
            status,
            address,
        }
    }

    /// The device address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends a datagram to `central` (see [`Peripheral::send`]).
    pub fn send(&self, central: String, datagram: Vec<u8>) {
        let _ = self.tx.send(Cmd::Send(central, datagram));
    }

    /// Changes the advert.
    pub fn set_advert(&self, advert: AdvertData) {
        let _ = self.tx.send(Cmd::Advert(advert));
    }

    /// Whether the radio is up, the central, and the counters.
    pub fn status(&self) -> BleStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn publish(p: &Peripheral, up: bool, status: &Mutex<BleStatus>) {
    if let Ok(mut s) = status.lock() {
        s.radio_up = up;
        s.central = p.central().map(|(c, _)| c.to_string());
        s.subscribed = p.central().is_some_and(|(_, sub)| sub);
        s.stats = p.stats();
    }
}

fn apply(p: &mut Peripheral, cmd: Cmd) {
    match cmd {
        Cmd::Send(central, data) => p.send(&central, &data),
        Cmd::Advert(a) => p.set_advert(a),
    }
}

async fn run(
    config: BleLinkConfig,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    inbound: mpsc::Sender<(LinkAddr, Vec<u8>)>,
    status: Arc<Mutex<BleStatus>>,
) {
    let mut p = Peripheral::new(config.address.clone(), config.name.clone(), config.advert);
    let mut backoff = Duration::from_millis(50);
    let mut warned = false;
    loop {
        let stream = match UnixStream::connect(&config.radio).await {
            Ok(s) => s,
            Err(e) => {
                if !warned {
                    tracing::warn!(radio = %config.radio.display(), %e, "ble: cannot reach the radio; retrying");
                    warned = true;
                }
                // Keep taking commands (adverts change, datagrams are dropped) while waiting.
                let pause = tokio::time::sleep(backoff);
                tokio::pin!(pause);
                loop {
                    tokio::select! {
                        _ = &mut pause => break,
                        cmd = rx.recv() => match cmd {
                            Some(c) => apply(&mut p, c),
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::info!(radio = %config.radio.display(), address = %p.address(), "ble: radio up, advertising");
        warned = false;
        backoff = Duration::from_millis(50);
        p.radio_up();
        publish(&p, true, &status);
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        'conn: loop {
            while let Some(m) = p.poll_radio() {
                if w.write_all(m.to_line().as_bytes()).await.is_err() {
                    break 'conn;
                }
            }
            while let Some((central, d)) = p.poll_datagram() {
                if inbound.send((LinkAddr::Ble(central), d)).await.is_err() {
                    return;
                }
            }
            publish(&p, true, &status);
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(l)) if l.trim().is_empty() => {}
                    Ok(Some(l)) => match RadioMsg::from_line(&l) {
                        Ok(m) => p.handle(Instant::now(), m),
                        Err(e) => {
                            tracing::debug!(%e, "ble: bad radio line");
                            p.stats.bad_messages += 1;
                        }
                    },
                    _ => break 'conn,
                },
                cmd = rx.recv() => match cmd {
                    Some(c) => apply(&mut p, c),
                    None => return,
                },
            }
        }
        tracing::warn!(radio = %config.radio.display(), "ble: radio socket closed; reconnecting");
        p.radio_down();
        publish(&p, false, &status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(pairable: bool) -> AdvertData {
        AdvertData {
            version: 1,
            pairable,
            device_hash: [1, 2, 3, 4],
            capabilities: capability_bits(["speaker", "light"]),
        }
    }

    fn peripheral() -> Peripheral {
        let mut p = Peripheral::new("C1:02:03:04:05:06".into(), "spk".into(), advert(true));
        p.radio_up();
        p
    }

    #[test]
    fn capability_bits_follow_the_kind_list() {
        assert_eq!(capability_bits(["camera"]), 1);
        assert_eq!(capability_bits(["speaker", "light", "bogus"]), 0b1000_0100);
    }

    #[test]
    fn advertises_at_radio_up_and_again_when_the_advert_changes() {
        let mut p = peripheral();
        let Some(RadioMsg::Advertise { service_data, .. }) = p.poll_radio() else {
            panic!("no advert");
        };
        assert_eq!(
            service_data[SERVICE_UUID],
            "010101020304".to_string() + "0084"
        );
        p.set_advert(advert(true));
        assert_eq!(p.poll_radio(), None);
        p.set_advert(advert(false));
        assert!(matches!(p.poll_radio(), Some(RadioMsg::Advertise { .. })));
    }

    #[test]
    fn queues_until_subscribed_and_resets_on_disconnect() {
        let mut p = peripheral();
        p.poll_radio();
        let now = Instant::now();
        p.send("AA:AA:AA:AA:AA:AA", b"nobody");
        assert_eq!(p.stats().dropped_out, 1);
        p.handle(
            now,
            RadioMsg::Connected {
                central: "AA:AA:AA:AA:AA:AA".into(),
                mtu: 23,
            },
        );
        let d: Vec<u8> = (0..50).collect();
        p.send("AA:AA:AA:AA:AA:AA", &d);
        assert_eq!(p.poll_radio(), None);
        p.handle(
            now,
            RadioMsg::Subscribed {
                char_uuid: TX_CHAR_UUID.into(),
            },
        );
        let mut r = Reassembler::new(1000, DEFAULT_REASSEMBLY_TIMEOUT);
        let mut got = None;
        while let Some(RadioMsg::Notify { data, .. }) = p.poll_radio() {
            let seg = hex::decode(data).unwrap();
            assert!(seg.len() <= 20);
            if let Reassembled::Datagram(x) = r.handle(now, &seg) {
                got = Some(x);
            }
        }
        assert_eq!(got, Some(d.clone()));
        // Central to peripheral, and a disconnection mid-datagram.
        let segs = segment(&d, 0, 20).unwrap();
        let write = |s: &Vec<u8>| RadioMsg::Write {
            char_uuid: RX_CHAR_UUID.into(),
            data: hex::encode(s),
        };
        p.handle(now, write(&segs[0]));
        p.handle(
            now,
            RadioMsg::Disconnected {
                reason: "central".into(),
            },
        );
        p.handle(
            now,
            RadioMsg::Connected {
                central: "AA:AA:AA:AA:AA:AA".into(),
                mtu: 23,
            },
        );
        p.handle(now, write(&segs[1]));
        assert_eq!(p.poll_datagram(), None);
        for s in &segs {
            p.handle(now, write(s));
        }
        assert_eq!(p.poll_datagram(), Some(("AA:AA:AA:AA:AA:AA".into(), d)));
        p.handle(
            now,
            RadioMsg::Write {
                char_uuid: RX_CHAR_UUID.into(),
                data: "zz".into(),
            },
        );
        assert_eq!(p.stats().bad_messages, 1);
    }
}
