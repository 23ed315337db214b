//! vbluez's state and behaviour: the adapter, the devices the virtual radio knows, and one
//! connection driver per connected device that runs its [`Air`] against the clock.
//!
//! The D-Bus objects ([`super::objects`], which the core reaches only through [`Export`]) and
//! the radio sessions ([`super::radio`]) are thin: they call into [`Core`], which keeps
//! everything under one mutex (never held across an `.await`) and emits the signals BlueZ
//! would, in BlueZ's order.
//!
//! Procedures are modelled as ATT round trips on the air: connection (established at the first
//! connection event), MTU exchange plus primary service, characteristic and descriptor
//! discovery (4 round trips, then the GATT objects appear and `ServicesResolved` turns true),
//! CCCD writes for StartNotify/StopNotify (1), write requests (1; long writes 1 per Prepare
//! Write plus the Execute Write), reads (1), and LL termination (the terminating PDU crossing).
//! Write commands and notifications are one PDU each.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use softbus::link::ble::radio::{GattService as RadioService, RadioMsg};
use tokio::sync::{mpsc, oneshot, Notify};
use zbus::zvariant::Value;

use super::air::{Air, AirEvent, AirParams, Dir};
use super::bluez::{service_data_value, BluezError, ADAPTER1, CHARACTERISTIC1, DEVICE1};

/// The Client Characteristic Configuration descriptor.
pub const CCCD_UUID: &str = "00002902-0000-1000-8000-00805f9b34fb";
/// How long a device nobody is connected to stays on the bus after its peripheral vanished
/// (BlueZ's `TemporaryTimeout` default).
pub const TEMPORARY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest attribute value (Core spec Vol 3 Part F 3.2.9): a long write beyond it fails.
pub const MAX_ATTRIBUTE_LEN: usize = 512;
/// Round trips from connection to `ServicesResolved`: MTU exchange, primary services,
/// characteristics, descriptors.
const DISCOVERY_ROUND_TRIPS: u32 = 4;
/// The RSSI every virtual device is heard at.
pub const RSSI: i16 = -50;

/// What the adapter and its link layer are configured with.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Adapter name (`hci0`).
    pub adapter: String,
    /// Adapter address (public).
    pub address: String,
    /// ATT MTU after the exchange.
    pub mtu: u16,
    /// The air model's parameters.
    pub air: AirParams,
    /// Seed of the air's loss draws (each connection derives its own from it).
    pub seed: u64,
    /// Log radio messages and deliveries to stderr.
    pub trace: bool,
}

/// A discovery filter (SetDiscoveryFilter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Lower-case 128-bit UUIDs; a device must advertise one of them (empty: any).
    pub uuids: Vec<String>,
    /// Least RSSI.
    pub rssi: Option<i16>,
    /// Address or name prefix.
    pub pattern: Option<String>,
}

impl Filter {
    fn matches(&self, d: &Device) -> bool {
        let uuid_ok = self.uuids.is_empty()
            || d.uuids
                .iter()
                .chain(d.service_data.keys())
                .any(|u| self.uuids.contains(&u.to_ascii_lowercase()));
        let rssi_ok = self.rssi.is_none_or(|r| RSSI >= r);
        let pattern_ok = self.pattern.as_deref().is_none_or(|p| {
            p.is_empty() || d.address.starts_with(&p.to_ascii_uppercase()) || d.name.starts_with(p)
        });
        uuid_ok && rssi_ok && pattern_ok
    }
}

/// What a peripheral advertises (normalised: upper-case address, lower-case UUIDs).
#[derive(Debug, Clone)]
pub struct Advert {
    /// Device address.
    pub address: String,
    /// Local name.
    pub name: String,
    /// Service UUIDs.
    pub uuids: Vec<String>,
    /// Service data by UUID.
    pub service_data: BTreeMap<String, Vec<u8>>,
    /// The GATT database served once connected.
    pub services: Vec<RadioService>,
}

/// A PDU on the air.
#[derive(Debug)]
pub enum Pdu {
    /// ATT Write Command (central → peripheral).
    Command {
        /// Characteristic.
        char_uuid: String,
        /// Value.
        data: Vec<u8>,
    },
    /// An ATT request (central → peripheral): `left` more round trips follow this one; the
    /// last request delivers `on_last` to the peripheral.
    Request(Transaction),
    /// The answer to a [`Pdu::Request`] (peripheral → central).
    Response(Transaction),
    /// ATT Handle Value Notification (peripheral → central).
    Notification {
        /// Characteristic.
        char_uuid: String,
        /// Value.
        data: Vec<u8>,
    },
    /// LL_TERMINATE_IND.
    Terminate,
}

/// A chain of request/response round trips.
#[derive(Debug)]
pub struct Transaction {
    left: u32,
    on_last: Option<RadioMsg>,
    done: Option<oneshot::Sender<()>>,
}

/// One connection: its air and the driver's wake-up.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    air: Mutex<Air<Pdu>>,
    wake: Notify,
    disconnect_waiters: Mutex<Vec<oneshot::Sender<()>>>,
}

impl Conn {
    fn air(&self) -> MutexGuard<'_, Air<Pdu>> {
        self.air.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue(&self, dir: Dir, pdu: Pdu) {
        self.air().enqueue(dir, pdu, Instant::now());
        self.wake.notify_one();
    }

    /// Starts `round_trips` ATT round trips; resolves when the last response arrived (an
    /// error when the connection ended first).
    fn transaction(&self, round_trips: u32, on_last: Option<RadioMsg>) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(
            Dir::Up,
            Pdu::Request(Transaction {
                left: round_trips.saturating_sub(1),
                on_last,
                done: Some(tx),
            }),
        );
        rx
    }
}

/// A device's link state.
#[derive(Debug, Clone, Default)]
pub enum Link {
    /// Not connected.
    #[default]
    Idle,
    /// Connect() in progress.
    Connecting,
    /// Connected.
    Connected(Arc<Conn>),
    /// Disconnect() in progress.
    Disconnecting(Arc<Conn>),
}

impl Link {
    fn conn(&self) -> Option<&Arc<Conn>> {
        match self {
            Link::Connected(c) | Link::Disconnecting(c) => Some(c),
            _ => None,
        }
    }
}

/// The radio session of a powered peripheral.
#[derive(Debug, Clone)]
pub struct Radio {
    session: u64,
    tx: mpsc::UnboundedSender<RadioMsg>,
}

/// A GATT characteristic as the central sees it after discovery.
#[derive(Debug, Clone)]
pub struct Chr {
    /// Object path (`.../service000a/char000b`).
    pub path: String,
    /// UUID, lower case.
    pub uuid: String,
    /// The service's object path.
    pub service_path: String,
    /// BlueZ flags.
    pub flags: Vec<String>,
    /// Declaration handle.
    pub handle: u16,
    /// Last value read or notified.
    pub value: Vec<u8>,
    /// D-Bus clients with a notify session.
    pub notify_clients: BTreeSet<String>,
    /// The CCCD's object path and handle, for notify/indicate characteristics.
    pub cccd: Option<(String, u16)>,
}

impl Chr {
    /// Whether notifications are on.
    pub fn notifying(&self) -> bool {
        !self.notify_clients.is_empty()
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// A discovered GATT service.
#[derive(Debug, Clone)]
pub struct Svc {
    /// Object path.
    pub path: String,
    /// UUID, lower case.
    pub uuid: String,
    /// Handle.
    pub handle: u16,
}

/// A remote device (a virtual peripheral, powered or recently so).
#[derive(Debug, Clone)]
pub struct Device {
    /// `AA:BB:CC:DD:EE:FF`.
    pub address: String,
    /// Object path.
    pub path: String,
    /// Advertised name.
    pub name: String,
    /// Alias (the name unless set).
    pub alias: Option<String>,
    /// Advertised service UUIDs.
    pub uuids: Vec<String>,
    /// Advertised service data.
    pub service_data: BTreeMap<String, Vec<u8>>,
    /// The peripheral's GATT database.
    pub services: Vec<RadioService>,
    /// Its radio session while powered.
    pub radio: Option<Radio>,
    /// Whether its Device1 object is on the bus.
    pub exported: bool,
    /// Trusted property.
    pub trusted: bool,
    /// Blocked property.
    pub blocked: bool,
    /// Link state.
    pub link: Link,
    /// ServicesResolved property.
    pub services_resolved: bool,
    /// Discovered services (while resolved).
    pub gatt_services: Vec<Svc>,
    /// Discovered characteristics (while resolved).
    pub gatt: Vec<Chr>,
}

impl Device {
    fn new(address: &str, adapter_path: &str) -> Device {
        Device {
            address: address.to_owned(),
            path: format!("{adapter_path}/dev_{}", address.replace(':', "_")),
            name: String::new(),
            alias: None,
            uuids: Vec::new(),
            service_data: BTreeMap::new(),
            services: Vec::new(),
            radio: None,
            exported: false,
            trusted: false,
            blocked: false,
            link: Link::Idle,
            services_resolved: false,
            gatt_services: Vec::new(),
            gatt: Vec::new(),
        }
    }

    /// Whether the LE link is up.
    pub fn connected(&self) -> bool {
        matches!(self.link, Link::Connected(_) | Link::Disconnecting(_))
    }

    /// The Alias property.
    pub fn alias(&self) -> String {
        self.alias.clone().unwrap_or_else(|| {
            if self.name.is_empty() {
                self.address.replace(':', "-")
            } else {
                self.name.clone()
            }
        })
    }

    fn chr(&self, path: &str) -> Option<&Chr> {
        self.gatt.iter().find(|c| c.path == path)
    }

    fn chr_mut(&mut self, path: &str) -> Option<&mut Chr> {
        self.gatt.iter_mut().find(|c| c.path == path)
    }

    fn chr_by_uuid_mut(&mut self, uuid: &str) -> Option<&mut Chr> {
        let uuid = uuid.to_ascii_lowercase();
        self.gatt.iter_mut().find(|c| c.uuid == uuid)
    }
}

/// Everything vbluez knows.
#[derive(Debug)]
pub struct State {
    /// Adapter Powered.
    pub powered: bool,
    /// Adapter Alias (its name unless set).
    pub alias: Option<String>,
    /// Discovery sessions, by D-Bus client.
    pub discovery: BTreeMap<String, Filter>,
    /// Filters set with SetDiscoveryFilter, by D-Bus client.
    pub filters: BTreeMap<String, Filter>,
    /// Devices, by address.
    pub devices: BTreeMap<String, Device>,
}

impl State {
    /// Adapter Discovering.
    pub fn discovering(&self) -> bool {
        !self.discovery.is_empty()
    }

    fn visible(&self, d: &Device) -> bool {
        self.powered
            && d.radio.is_some()
            && !d.blocked
            && self.discovery.values().any(|f| f.matches(d))
    }
}

/// The D-Bus side the core drives: a device's objects on the bus and off, and property
/// signals. The core decides when; [`super::objects::Exporter`] knows what the objects are, so
/// the core does not depend on the objects that call it.
pub trait Export: Send + Sync + std::fmt::Debug {
    /// Puts the `Device1` object for `addr` at `path`.
    fn device<'a>(&'a self, core: &'a Arc<Core>, addr: &'a str, path: &'a str)
        -> BoxFuture<'a, ()>;
    /// Takes the `Device1` object at `path` off the bus.
    fn remove_device<'a>(&'a self, path: &'a str) -> BoxFuture<'a, ()>;
    /// Puts the GATT objects of a resolved device on the bus, services first.
    fn gatt<'a>(
        &'a self,
        core: &'a Arc<Core>,
        addr: &'a str,
        device_path: &'a str,
        services: &'a [Svc],
        chrs: &'a [Chr],
    ) -> BoxFuture<'a, ()>;
    /// Takes them off, in the reverse order.
    fn remove_gatt<'a>(&'a self, services: &'a [Svc], chrs: &'a [Chr]) -> BoxFuture<'a, ()>;
    /// Emits `PropertiesChanged` for `props` of `iface` at `path`.
    fn changed<'a>(
        &'a self,
        path: &'a str,
        iface: &'static str,
        props: Vec<(&'static str, Value<'static>)>,
    ) -> BoxFuture<'a, ()>;
}

/// vbluez's core (see the module docs).
#[derive(Debug)]
pub struct Core {
    /// Configuration.
    pub cfg: CoreConfig,
    /// `/org/bluez/<adapter>`.
    pub adapter_path: String,
    st: Mutex<State>,
    bus: OnceLock<Box<dyn Export>>,
    next_id: AtomicU64,
}

type Reply<T = ()> = Result<T, BluezError>;

impl Core {
    /// A core with no devices, adapter powered.
    pub fn new(cfg: CoreConfig) -> Arc<Core> {
        Arc::new(Core {
            adapter_path: format!("/org/bluez/{}", cfg.adapter),
            cfg,
            st: Mutex::new(State {
                powered: true,
                alias: None,
                discovery: BTreeMap::new(),
                filters: BTreeMap::new(),
                devices: BTreeMap::new(),
            }),
            bus: OnceLock::new(),
            next_id: AtomicU64::new(1),
        })
    }

    /// Hands the core its D-Bus side (once, right after the connection is built).
    pub fn set_bus(&self, bus: Box<dyn Export>) {
        let _ = self.bus.set(bus);
    }

    /// The state, locked. Never held across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh id (radio sessions, connections).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.cfg.trace {
            eprintln!("vbluez: {}", what());
        }
    }

    async fn changed(
        &self,
        path: &str,
        iface: &'static str,
        props: Vec<(&'static str, Value<'static>)>,
    ) {
        if let Some(bus) = self.bus.get() {
            bus.changed(path, iface, props).await;
        }
    }

    // ----- adapter -----

    /// Adapter1.StartDiscovery.
    pub async fn start_discovery(self: &Arc<Self>, sender: String) -> Reply {
        let was = {
            let mut st = self.state();
            if !st.powered {
                return Err(BluezError::NotReady("Resource Not Ready".into()));
            }
            if st.discovery.contains_key(&sender) {
                return Err(BluezError::InProgress(
                    "Operation already in progress".into(),
                ));
            }
            let was = st.discovering();
            let filter = st.filters.get(&sender).cloned().unwrap_or_default();
            st.discovery.insert(sender, filter);
            was
        };
        if !was {
            self.changed(
                &self.adapter_path,
                ADAPTER1,
                vec![("Discovering", true.into())],
            )
            .await;
        }
        // Adverts are heard after the reply, as from a real scan.
        let core = Arc::clone(self);
        tokio::spawn(async move { core.export_visible().await });
        Ok(())
    }

    /// Adapter1.StopDiscovery.
    pub async fn stop_discovery(&self, sender: &str) -> Reply {
        let now_idle = {
            let mut st = self.state();
            if st.discovery.remove(sender).is_none() {
                return Err(BluezError::Failed("No discovery started".into()));
            }
            st.filters.remove(sender);
            !st.discovering()
        };
        if now_idle {
            self.changed(
                &self.adapter_path,
                ADAPTER1,
                vec![("Discovering", false.into())],
            )
            .await;
        }
        Ok(())
    }

    /// Adapter1.SetDiscoveryFilter (`None` clears it).
    pub fn set_filter(&self, sender: String, filter: Option<Filter>) {
        let mut st = self.state();
        match filter {
            Some(f) => st.filters.insert(sender, f),
            None => st.filters.remove(&sender),
        };
    }

    /// A D-Bus client left the bus: its discovery and notify sessions end, as in BlueZ.
    pub async fn client_gone(self: &Arc<Self>, sender: &str) {
        if self.state().discovery.contains_key(sender) {
            let _ = self.stop_discovery(sender).await;
        }
        self.state().filters.remove(sender);
        let subscribed: Vec<(String, String)> = {
            let st = self.state();
            st.devices
                .values()
                .flat_map(|d| {
                    d.gatt
                        .iter()
                        .filter(|c| c.notify_clients.contains(sender))
                        .map(|c| (d.address.clone(), c.path.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (addr, path) in subscribed {
            let _ = self.stop_notify(&addr, &path, sender).await;
        }
    }

    /// Adapter1.Powered set.
    pub async fn set_powered(self: &Arc<Self>, on: bool) {
        let (changed, connected, stopped) = {
            let mut st = self.state();
            let changed = st.powered != on;
            st.powered = on;
            let stopped = !on && st.discovering();
            if !on {
                st.discovery.clear();
            }
            let connected: Vec<String> = if on {
                Vec::new()
            } else {
                st.devices
                    .values()
                    .filter(|d| d.connected())
                    .map(|d| d.address.clone())
                    .collect()
            };
            (changed, connected, stopped)
        };
        for addr in connected {
            let _ = self.disconnect(&addr).await;
        }
        if changed {
            let state = if on { "on" } else { "off" };
            self.changed(
                &self.adapter_path,
                ADAPTER1,
                vec![("Powered", on.into()), ("PowerState", state.into())],
            )
            .await;
        }
        if stopped {
            self.changed(
                &self.adapter_path,
                ADAPTER1,
                vec![("Discovering", false.into())],
            )
            .await;
        }
    }

    /// Adapter1.RemoveDevice.
    pub async fn remove_device(self: &Arc<Self>, path: &str) -> Reply {
        let addr = {
            let st = self.state();
            st.devices
                .values()
                .find(|d| d.path == path && d.exported)
                .map(|d| d.address.clone())
                .ok_or_else(|| BluezError::DoesNotExist("Does Not Exist".into()))?
        };
        if self
            .state()
            .devices
            .get(&addr)
            .is_some_and(Device::connected)
        {
            let _ = self.disconnect(&addr).await;
        }
        self.unexport_device(&addr).await;
        Ok(())
    }

    async fn export_visible(self: &Arc<Self>) {
        let addrs: Vec<String> = {
            let st = self.state();
            st.devices
                .values()
                .filter(|d| !d.exported && st.visible(d))
                .map(|d| d.address.clone())
                .collect()
        };
        for addr in addrs {
            self.export_device(&addr).await;
        }
    }

    async fn export_device(self: &Arc<Self>, addr: &str) {
        let path = {
            let mut st = self.state();
            let Some(d) = st.devices.get_mut(addr) else {
                return;
            };
            if d.exported {
                return;
            }
            d.exported = true;
            d.path.clone()
        };
        self.trace(|| format!("device {addr} discovered"));
        if let Some(bus) = self.bus.get() {
            bus.device(self, addr, &path).await;
        }
    }

    async fn unexport_device(&self, addr: &str) {
        let path = {
            let mut st = self.state();
            let Some(d) = st.devices.get_mut(addr) else {
                return;
            };
            if !d.exported {
                return;
            }
            d.exported = false;
            let path = d.path.clone();
            if d.radio.is_none() {
                st.devices.remove(addr);
            }
            path
        };
        self.trace(|| format!("device {addr} removed"));
        if let Some(bus) = self.bus.get() {
            bus.remove_device(&path).await;
        }
    }

    fn schedule_expiry(self: &Arc<Self>, addr: String) {
        let core = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(TEMPORARY_TIMEOUT).await;
            let expired = core
                .state()
                .devices
                .get(&addr)
                .is_some_and(|d| d.radio.is_none() && !d.connected());
            if expired {
                core.unexport_device(&addr).await;
            }
        });
    }

    // ----- radio side -----

    /// A peripheral (re)advertises.
    pub async fn advertise(
        self: &Arc<Self>,
        session: u64,
        tx: &mpsc::UnboundedSender<RadioMsg>,
        advert: Advert,
    ) {
        let Advert {
            address,
            name,
            uuids,
            service_data,
            services,
        } = advert;
        let address = address.as_str();
        let (export, changed_path) = {
            let mut st = self.state();
            let adapter_path = self.adapter_path.clone();
            let d = st
                .devices
                .entry(address.to_owned())
                .or_insert_with(|| Device::new(address, &adapter_path));
            let changed = d.name != name || d.uuids != uuids || d.service_data != service_data;
            d.name = name;
            d.uuids = uuids;
            d.service_data = service_data;
            d.services = services;
            d.radio = Some(Radio {
                session,
                tx: tx.clone(),
            });
            let d = &st.devices[address];
            let export = !d.exported && st.visible(d);
            let changed_path = (d.exported && changed).then(|| d.path.clone());
            (export, changed_path)
        };
        if export {
            self.export_device(address).await;
        }
        if let Some(path) = changed_path {
            let props = self.advert_props(address);
            self.changed(&path, DEVICE1, props).await;
        }
    }

    fn advert_props(&self, addr: &str) -> Vec<(&'static str, Value<'static>)> {
        let st = self.state();
        let Some(d) = st.devices.get(addr) else {
            return Vec::new();
        };
        vec![
            ("Name", d.name.clone().into()),
            ("Alias", d.alias().into()),
            ("UUIDs", d.uuids.clone().into()),
            ("ServiceData", service_data_value(&d.service_data)),
            ("RSSI", RSSI.into()),
        ]
    }

    fn session_conn(&self, session: u64, addr: &str) -> Option<Arc<Conn>> {
        let st = self.state();
        let d = st.devices.get(addr)?;
        if d.radio.as_ref()?.session != session {
            return None;
        }
        d.link.conn().cloned()
    }

    /// A peripheral notifies a characteristic.
    pub fn peripheral_notify(
        &self,
        session: u64,
        addr: &str,
        char_uuid: String,
        mut data: Vec<u8>,
    ) {
        let Some(conn) = self.session_conn(session, addr) else {
            self.trace(|| format!("{addr}: notification while not connected, dropped"));
            return;
        };
        let max = usize::from(self.cfg.mtu).saturating_sub(3);
        if data.len() > max {
            eprintln!(
                "vbluez: {addr}: a {}-byte notification does not fit ATT MTU {}; truncated to {max}",
                data.len(),
                self.cfg.mtu
            );
            data.truncate(max);
        }
        conn.enqueue(Dir::Down, Pdu::Notification { char_uuid, data });
    }

    /// A peripheral drops the connection (LL_TERMINATE_IND from the peripheral).
    pub fn peripheral_disconnect(&self, session: u64, addr: &str) {
        if let Some(conn) = self.session_conn(session, addr) {
            conn.enqueue(Dir::Down, Pdu::Terminate);
        }
    }

    /// A peripheral's radio session ended: it powered off.
    pub fn power_off(self: &Arc<Self>, session: u64, addr: &str) {
        let conn = {
            let mut st = self.state();
            let Some(d) = st.devices.get_mut(addr) else {
                return;
            };
            if d.radio.as_ref().is_none_or(|r| r.session != session) {
                return;
            }
            d.radio = None;
            if !d.exported && !d.connected() {
                st.devices.remove(addr);
                return;
            }
            d.link.conn().cloned()
        };
        self.trace(|| format!("{addr} powered off"));
        match conn {
            Some(conn) => {
                conn.air().peer_gone(Instant::now());
                conn.wake.notify_one();
            }
            None => self.schedule_expiry(addr.to_owned()),
        }
    }

    // ----- device -----

    /// Device1.Connect.
    pub async fn connect(self: &Arc<Self>, addr: &str) -> Reply {
        let (conn, first_event) = {
            let mut st = self.state();
            if !st.powered {
                return Err(BluezError::NotReady("Resource Not Ready".into()));
            }
            let d = st
                .devices
                .get_mut(addr)
                .ok_or_else(|| BluezError::DoesNotExist("Does Not Exist".into()))?;
            match d.link {
                Link::Connected(_) => return Ok(()),
                Link::Connecting | Link::Disconnecting(_) => {
                    return Err(BluezError::InProgress("In Progress".into()))
                }
                Link::Idle => {}
            }
            if d.radio.is_none() {
                // BlueZ would wait for the page to time out; nothing answers here either.
                return Err(BluezError::Failed("le-connection-abort-by-local".into()));
            }
            d.link = Link::Connecting;
            let id = self.next_id();
            let now = Instant::now();
            let air = Air::new(
                self.cfg.air,
                self.cfg.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                now,
            );
            let first = air.next_event_after(now);
            let conn = Arc::new(Conn {
                id,
                air: Mutex::new(air),
                wake: Notify::new(),
                disconnect_waiters: Mutex::new(Vec::new()),
            });
            (conn, first)
        };
        tokio::time::sleep_until(first_event.into()).await;
        let (radio, path) = {
            let mut st = self.state();
            let Some(d) = st.devices.get_mut(addr) else {
                return Err(BluezError::Failed("le-connection-abort-by-local".into()));
            };
            let Some(radio) = d.radio.clone() else {
                d.link = Link::Idle;
                return Err(BluezError::Failed("le-connection-abort-by-local".into()));
            };
            d.link = Link::Connected(Arc::clone(&conn));
            (radio, d.path.clone())
        };
        self.trace(|| format!("{addr} connected (conn {})", conn.id));
        let _ = radio.tx.send(RadioMsg::Connected {
            central: self.cfg.address.clone(),
            mtu: self.cfg.mtu,
        });
        tokio::spawn(Arc::clone(self).drive(addr.to_owned(), Arc::clone(&conn), radio));
        self.changed(&path, DEVICE1, vec![("Connected", true.into())])
            .await;
        let core = Arc::clone(self);
        let addr = addr.to_owned();
        tokio::spawn(async move {
            let done = conn.transaction(DISCOVERY_ROUND_TRIPS, None);
            if done.await.is_ok() {
                core.resolve_services(&addr, conn.id).await;
            }
        });
        Ok(())
    }

    /// Device1.Disconnect.
    pub async fn disconnect(&self, addr: &str) -> Reply {
        let (conn, first) = {
            let mut st = self.state();
            let d = st
                .devices
                .get_mut(addr)
                .ok_or_else(|| BluezError::DoesNotExist("Does Not Exist".into()))?;
            match d.link.clone() {
                Link::Connected(c) => {
                    d.link = Link::Disconnecting(Arc::clone(&c));
                    (c, true)
                }
                Link::Disconnecting(c) => (c, false),
                Link::Connecting => return Err(BluezError::InProgress("In Progress".into())),
                Link::Idle => return Err(BluezError::NotConnected("Not Connected".into())),
            }
        };
        let (tx, rx) = oneshot::channel();
        conn.disconnect_waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        if first {
            conn.enqueue(Dir::Up, Pdu::Terminate);
        }
        let _ = rx.await;
        Ok(())
    }

    async fn resolve_services(self: &Arc<Self>, addr: &str, conn_id: u64) {
        let (path, services, chrs) = {
            let mut st = self.state();
            let Some(d) = st.devices.get_mut(addr) else {
                return;
            };
            if d.link.conn().is_none_or(|c| c.id != conn_id) {
                return;
            }
            // Handles as a real database would number them: 1..9 for GAP and GATT, then per
            // service its declaration, per characteristic declaration and value, and a CCCD
            // for notify/indicate ones.
            let mut handle: u16 = 0x000a;
            let mut svcs = Vec::new();
            let mut chrs = Vec::new();
            for s in &d.services {
                let spath = format!("{}/service{handle:04x}", d.path);
                svcs.push(Svc {
                    path: spath.clone(),
                    uuid: s.uuid.to_ascii_lowercase(),
                    handle,
                });
                handle += 1;
                for c in &s.characteristics {
                    let cpath = format!("{spath}/char{handle:04x}");
                    let chandle = handle;
                    handle += 2;
                    let cccd = c
                        .flags
                        .iter()
                        .any(|f| f == "notify" || f == "indicate")
                        .then(|| {
                            let h = handle;
                            handle += 1;
                            (format!("{cpath}/desc{h:04x}"), h)
                        });
                    chrs.push(Chr {
                        path: cpath,
                        uuid: c.uuid.to_ascii_lowercase(),
                        service_path: spath.clone(),
                        flags: c.flags.clone(),
                        handle: chandle,
                        value: Vec::new(),
                        notify_clients: BTreeSet::new(),
                        cccd,
                    });
                }
            }
            d.gatt_services = svcs.clone();
            d.gatt = chrs.clone();
            (d.path.clone(), svcs, chrs)
        };
        if let Some(bus) = self.bus.get() {
            bus.gatt(self, addr, &path, &services, &chrs).await;
        }
        let still = {
            let mut st = self.state();
            match st.devices.get_mut(addr) {
                Some(d) if d.link.conn().is_some_and(|c| c.id == conn_id) => {
                    d.services_resolved = true;
                    true
                }
                _ => false,
            }
        };
        if still {
            self.trace(|| format!("{addr} services resolved"));
            self.changed(&path, DEVICE1, vec![("ServicesResolved", true.into())])
                .await;
        }
    }

    fn connected_chr(&self, addr: &str, path: &str) -> Reply<(Arc<Conn>, Chr)> {
        let st = self.state();
        let d = st
            .devices
            .get(addr)
            .ok_or_else(|| BluezError::Failed("Not connected".into()))?;
        let conn = match &d.link {
            Link::Connected(c) if d.services_resolved => Arc::clone(c),
            _ => return Err(BluezError::Failed("Not connected".into())),
        };
        let chr = d
            .chr(path)
            .cloned()
            .ok_or_else(|| BluezError::Failed("Not connected".into()))?;
        Ok((conn, chr))
    }

    // ----- characteristic -----

    /// GattCharacteristic1.WriteValue. `kind` is the `type` option.
    pub async fn write_value(
        &self,
        addr: &str,
        path: &str,
        value: Vec<u8>,
        kind: Option<&str>,
    ) -> Reply {
        let (conn, chr) = self.connected_chr(addr, path)?;
        let payload = usize::from(self.cfg.mtu) - 3;
        let request = match kind {
            Some("request") => true,
            Some("command") => false,
            Some("reliable") => {
                return Err(BluezError::NotSupported(
                    "reliable writes are not modelled".into(),
                ))
            }
            Some(other) => {
                return Err(BluezError::InvalidArguments(format!(
                    "Invalid write type {other:?}"
                )))
            }
            None => chr.has("write") || !chr.has("write-without-response"),
        };
        if request {
            let msg = RadioMsg::Write {
                char_uuid: chr.uuid.clone(),
                data: hex::encode(&value),
            };
            if !chr.has("write") {
                return Err(BluezError::NotSupported(
                    "Operation is not supported".into(),
                ));
            }
            if value.len() > MAX_ATTRIBUTE_LEN {
                return Err(BluezError::InvalidValueLength(
                    "Invalid Value Length".into(),
                ));
            }
            // A value over MTU - 3 is a long write: Prepare Writes of MTU - 5 bytes, then
            // Execute Write, one round trip each, as BlueZ's gatt-client does.
            let round_trips = if value.len() <= payload {
                1
            } else {
                let per = usize::from(self.cfg.mtu) - 5;
                u32::try_from(value.len().div_ceil(per) + 1).unwrap_or(u32::MAX)
            };
            conn.transaction(round_trips, Some(msg))
                .await
                .map_err(|_| BluezError::Failed("Not connected".into()))
        } else {
            if !chr.has("write-without-response") {
                return Err(BluezError::NotSupported(
                    "Operation is not supported".into(),
                ));
            }
            if value.len() > payload {
                return Err(BluezError::InvalidValueLength(format!(
                    "Invalid Value Length: {} bytes, ATT MTU {} carries {payload} in a write command",
                    value.len(),
                    self.cfg.mtu
                )));
            }
            conn.enqueue(
                Dir::Up,
                Pdu::Command {
                    char_uuid: chr.uuid,
                    data: value,
                },
            );
            Ok(())
        }
    }

    /// GattCharacteristic1.ReadValue: one round trip; the value is the last one notified (the
    /// radio protocol carries no reads).
    pub async fn read_value(&self, addr: &str, path: &str) -> Reply<Vec<u8>> {
        let (conn, chr) = self.connected_chr(addr, path)?;
        conn.transaction(1, None)
            .await
            .map_err(|_| BluezError::Failed("Not connected".into()))?;
        if !chr.has("read") {
            return Err(BluezError::NotPermitted("Read not permitted".into()));
        }
        Ok(self
            .state()
            .devices
            .get(addr)
            .and_then(|d| d.chr(path))
            .map(|c| c.value.clone())
            .unwrap_or_default())
    }

    /// GattCharacteristic1.StartNotify.
    pub async fn start_notify(&self, addr: &str, path: &str, sender: &str) -> Reply {
        let (conn, chr) = self.connected_chr(addr, path)?;
        if !chr.has("notify") && !chr.has("indicate") {
            return Err(BluezError::NotSupported(
                "Operation is not supported".into(),
            ));
        }
        if chr.notify_clients.contains(sender) {
            return Ok(());
        }
        if chr.notifying() {
            self.add_notify_client(addr, path, sender);
            return Ok(());
        }
        let msg = RadioMsg::Subscribed {
            char_uuid: chr.uuid.clone(),
        };
        conn.transaction(1, Some(msg))
            .await
            .map_err(|_| BluezError::Failed("Not connected".into()))?;
        if self.add_notify_client(addr, path, sender) {
            self.changed(path, CHARACTERISTIC1, vec![("Notifying", true.into())])
                .await;
        }
        Ok(())
    }

    /// Adds a notify client; whether notifications just turned on.
    fn add_notify_client(&self, addr: &str, path: &str, sender: &str) -> bool {
        let mut st = self.state();
        match st.devices.get_mut(addr).and_then(|d| d.chr_mut(path)) {
            Some(c) => {
                let was = c.notifying();
                c.notify_clients.insert(sender.to_owned());
                !was
            }
            None => false,
        }
    }

    /// GattCharacteristic1.StopNotify.
    pub async fn stop_notify(&self, addr: &str, path: &str, sender: &str) -> Reply {
        let (conn, chr) = self.connected_chr(addr, path)?;
        if !chr.notify_clients.contains(sender) {
            return Err(BluezError::Failed("No notify session started".into()));
        }
        let now_off = {
            let mut st = self.state();
            match st.devices.get_mut(addr).and_then(|d| d.chr_mut(path)) {
                Some(c) => {
                    c.notify_clients.remove(sender);
                    !c.notifying()
                }
                None => false,
            }
        };
        if now_off {
            self.changed(path, CHARACTERISTIC1, vec![("Notifying", false.into())])
                .await;
            let msg = RadioMsg::Unsubscribed {
                char_uuid: chr.uuid.clone(),
            };
            let _ = conn.transaction(1, Some(msg)).await;
        }
        Ok(())
    }

    /// GattDescriptor1.ReadValue (the CCCD): one round trip.
    pub async fn read_cccd(&self, addr: &str, chr_path: &str) -> Reply<Vec<u8>> {
        let (conn, chr) = self.connected_chr(addr, chr_path)?;
        conn.transaction(1, None)
            .await
            .map_err(|_| BluezError::Failed("Not connected".into()))?;
        Ok(vec![u8::from(chr.notifying()), 0])
    }

    // ----- the connection driver -----

    /// Runs one connection's air until the connection ends.
    async fn drive(self: Arc<Self>, addr: String, conn: Arc<Conn>, radio: Radio) {
        loop {
            let deadline = conn.air().poll_timeout();
            match deadline {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t.into()) => {}
                        _ = conn.wake.notified() => {}
                    }
                }
                None => conn.wake.notified().await,
            }
            // Run due events one at a time, so that what a delivery triggers (a response) is
            // queued at that event's time however late this task woke up.
            let mut effects = Vec::new();
            loop {
                let mut air = conn.air();
                let Some(t) = air.poll_timeout() else { break };
                if t > Instant::now() {
                    break;
                }
                air.handle_timeout(t);
                while let Some(ev) = air.poll_event() {
                    on_air_event(ev, &mut air, &mut effects);
                }
            }
            for effect in effects {
                match effect {
                    Effect::Radio(msg) => {
                        self.trace(|| format!("air -> {addr}: {}", msg.to_line().trim_end()));
                        let _ = radio.tx.send(msg);
                    }
                    Effect::Done(tx) => {
                        let _ = tx.send(());
                    }
                    Effect::Notification { char_uuid, data } => {
                        self.deliver_notification(&addr, &char_uuid, data).await;
                    }
                    Effect::Ended {
                        reason,
                        tell_peripheral,
                    } => {
                        conn.air().close();
                        if tell_peripheral {
                            let _ = radio.tx.send(RadioMsg::Disconnected {
                                reason: reason.into(),
                            });
                        }
                        self.ended(&addr, &conn, reason).await;
                        return;
                    }
                }
            }
        }
    }

    async fn deliver_notification(&self, addr: &str, char_uuid: &str, data: Vec<u8>) {
        let path = {
            let mut st = self.state();
            let Some(c) = st
                .devices
                .get_mut(addr)
                .and_then(|d| d.chr_by_uuid_mut(char_uuid))
            else {
                return;
            };
            if !c.notifying() {
                return;
            }
            c.value = data.clone();
            c.path.clone()
        };
        self.changed(&path, CHARACTERISTIC1, vec![("Value", data.into())])
            .await;
    }

    /// The connection ended: BlueZ's order of signals, GATT objects gone (the device is not
    /// bonded, so its database is not cached), Disconnect() callers answered.
    async fn ended(self: &Arc<Self>, addr: &str, conn: &Arc<Conn>, reason: &str) {
        self.trace(|| format!("{addr} disconnected ({reason})"));
        let (path, svcs, chrs, gone) = {
            let mut st = self.state();
            let Some(d) = st.devices.get_mut(addr) else {
                return;
            };
            if d.link.conn().is_some_and(|c| c.id == conn.id) {
                d.link = Link::Idle;
            }
            d.services_resolved = false;
            let svcs = std::mem::take(&mut d.gatt_services);
            let chrs = std::mem::take(&mut d.gatt);
            (d.path.clone(), svcs, chrs, d.radio.is_none())
        };
        self.changed(&path, DEVICE1, vec![("ServicesResolved", false.into())])
            .await;
        if let Some(bus) = self.bus.get() {
            bus.remove_gatt(&svcs, &chrs).await;
        }
        self.changed(&path, DEVICE1, vec![("Connected", false.into())])
            .await;
        for w in conn
            .disconnect_waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = w.send(());
        }
        if gone {
            self.schedule_expiry(addr.to_owned());
        }
    }
}

enum Effect {
    Radio(RadioMsg),
    Done(oneshot::Sender<()>),
    Notification {
        char_uuid: String,
        data: Vec<u8>,
    },
    Ended {
        reason: &'static str,
        tell_peripheral: bool,
    },
}

/// What one air event does (synchronously, with the air locked, so follow-ups are queued at
/// the event's time).
fn on_air_event(ev: AirEvent<Pdu>, air: &mut Air<Pdu>, effects: &mut Vec<Effect>) {
    match ev {
        AirEvent::Delivered {
            dir: Dir::Up,
            pdu,
            at,
        } => match pdu {
            Pdu::Command { char_uuid, data } => effects.push(Effect::Radio(RadioMsg::Write {
                char_uuid,
                data: hex::encode(data),
            })),
            Pdu::Request(mut t) => {
                if t.left == 0 {
                    if let Some(m) = t.on_last.take() {
                        effects.push(Effect::Radio(m));
                    }
                }
                air.enqueue(Dir::Down, Pdu::Response(t), at);
            }
            Pdu::Terminate => effects.push(Effect::Ended {
                reason: "central",
                tell_peripheral: true,
            }),
            Pdu::Response(_) | Pdu::Notification { .. } => {}
        },
        AirEvent::Delivered {
            dir: Dir::Down,
            pdu,
            at,
        } => match pdu {
            Pdu::Response(mut t) => {
                if t.left > 0 {
                    t.left -= 1;
                    air.enqueue(Dir::Up, Pdu::Request(t), at);
                } else if let Some(done) = t.done.take() {
                    effects.push(Effect::Done(done));
                }
            }
            Pdu::Notification { char_uuid, data } => {
                effects.push(Effect::Notification { char_uuid, data })
            }
            Pdu::Terminate => effects.push(Effect::Ended {
                reason: "peripheral",
                tell_peripheral: true,
            }),
            Pdu::Command { .. } | Pdu::Request(_) => {}
        },
        AirEvent::SupervisionTimeout { .. } => effects.push(Effect::Ended {
            reason: "supervision timeout",
            tell_peripheral: false,
        }),
    }
}
