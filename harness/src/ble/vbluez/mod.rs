//! `vbluez`: a virtual BlueZ, so the suite's BLE central code (btleplug over D-Bus) runs
//! unchanged in CI, where there is no Bluetooth controller.
//!
//! vbluez owns `org.bluez` on a bus (a private `dbus-daemon` it starts, or one it is given),
//! serves the subset of BlueZ's object tree that btleplug 0.11 (through bluez-async 0.8) uses
//! ([`objects`]), and plays the air between that central and virtual peripherals that reach it
//! over a Unix socket with the virtual radio protocol (`softbus::link::ble::radio`, served by
//! [`radio`]). The link layer is modelled by [`air`]: connection events every connection
//! interval, a cap of PDUs per event and direction, loss with link-layer retransmission at the
//! next event, and the supervision timeout; ATT procedures (discovery, write requests, CCCD
//! writes) take their round trips on it ([`core`]). So latencies measured through vbluez carry
//! BLE's physical floor, the connection interval, and are deterministic for a seed.
//!
//! What is left out: scanning timing (adverts are heard as soon as discovery starts),
//! advertising intervals and RSSI variation, pairing and bonding (the SoftBus binding needs
//! neither), BR/EDR, more than one adapter, connection parameter updates, and controller
//! buffer limits (write commands queue without bound). See each module for its own limits.

pub mod air;
pub mod bluez;
pub mod bus;
pub mod core;
pub mod objects;
pub mod radio;

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;

use self::air::AirParams;
use self::bus::PrivateBus;
use self::core::{Core, CoreConfig};

/// How to run vbluez.
#[derive(Debug, Clone)]
pub struct Config {
    /// An existing bus to serve on; `None` starts a private `dbus-daemon`.
    pub bus: Option<String>,
    /// Where the private `dbus-daemon` listens; `None` puts the socket in vbluez's temporary
    /// directory. A fixed path keeps the bus address the same across restarts, which matters
    /// because libdbus (so btleplug) reads `DBUS_SYSTEM_BUS_ADDRESS` once per process.
    pub bus_socket: Option<PathBuf>,
    /// The radio socket's path; `None` puts it in vbluez's temporary directory.
    pub radio: Option<PathBuf>,
    /// Adapter name.
    pub adapter: String,
    /// Adapter address.
    pub address: String,
    /// ATT MTU after the exchange (23..=517).
    pub mtu: u16,
    /// Air model parameters.
    pub air: AirParams,
    /// Seed of the loss draws.
    pub seed: u64,
    /// Log radio traffic to stderr.
    pub trace: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bus: None,
            bus_socket: None,
            radio: None,
            adapter: "hci0".into(),
            address: "00:1A:7D:DA:71:01".into(),
            mtu: 247,
            air: AirParams::default(),
            seed: 1,
            trace: false,
        }
    }
}

/// vbluez failed to start.
#[derive(Debug, thiserror::Error)]
pub enum VbluezError {
    /// The bus could not be started or reached.
    #[error("D-Bus: {0}")]
    Bus(String),
    /// The radio socket or the temporary directory.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running vbluez (dropping it stops its bus).
#[derive(Debug)]
pub struct Vbluez {
    config: Config,
    dbus: String,
    radio: PathBuf,
    core: Arc<Core>,
    conn: zbus::Connection,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    // Dropped last: the bus goes before its socket directory.
    _bus: Option<PrivateBus>,
    _dir: tempfile::TempDir,
}

impl Vbluez {
    /// Starts the bus (unless given), owns `org.bluez` on it and listens on the radio socket.
    /// Must run inside a tokio runtime.
    pub async fn start(mut config: Config) -> Result<Vbluez, VbluezError> {
        config.mtu = config.mtu.clamp(23, 517);
        let dir = tempfile::Builder::new().prefix("vbluez-").tempdir()?;
        let (bus, dbus) = match &config.bus {
            Some(addr) => (None, addr.clone()),
            None => {
                let socket = config
                    .bus_socket
                    .clone()
                    .unwrap_or_else(|| dir.path().join("bus"));
                let bus = PrivateBus::start(dir.path(), &socket)?;
                let addr = bus.address().to_owned();
                (Some(bus), addr)
            }
        };
        let radio_path = config
            .radio
            .clone()
            .unwrap_or_else(|| dir.path().join("radio.sock"));
        let _ = std::fs::remove_file(&radio_path);
        let listener = tokio::net::UnixListener::bind(&radio_path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("radio socket {}: {e}", radio_path.display()),
            )
        })?;
        let core = Core::new(CoreConfig {
            adapter: config.adapter.clone(),
            address: config.address.to_ascii_uppercase(),
            mtu: config.mtu,
            air: config.air,
            seed: config.seed,
            trace: config.trace,
        });
        let bus_err = |e: zbus::Error| VbluezError::Bus(format!("{dbus}: {e}"));
        let conn = zbus::connection::Builder::address(dbus.as_str())
            .map_err(bus_err)?
            .serve_at("/", zbus::fdo::ObjectManager)
            .map_err(bus_err)?
            .serve_at(
                core.adapter_path.as_str(),
                objects::Adapter1::new(Arc::clone(&core)),
            )
            .map_err(bus_err)?
            .name("org.bluez")
            .map_err(bus_err)?
            .build()
            .await
            .map_err(bus_err)?;
        core.set_bus(Box::new(objects::Exporter { conn: conn.clone() }));
        let mut tasks = vec![tokio::spawn(radio::serve(Arc::clone(&core), listener))];
        // BlueZ ends a client's discovery and notify sessions when it leaves the bus.
        let proxy = zbus::fdo::DBusProxy::new(&conn).await.map_err(bus_err)?;
        let mut gone = proxy.receive_name_owner_changed().await.map_err(bus_err)?;
        let watcher = Arc::clone(&core);
        tasks.push(tokio::spawn(async move {
            while let Some(sig) = gone.next().await {
                let Ok(args) = sig.args() else { continue };
                if args.new_owner().is_none() && args.name().starts_with(':') {
                    watcher.client_gone(args.name().as_str()).await;
                }
            }
        }));
        Ok(Vbluez {
            config,
            dbus,
            radio: radio_path,
            core,
            conn,
            tasks,
            _bus: bus,
            _dir: dir,
        })
    }

    /// The bus address btleplug must use (`DBUS_SYSTEM_BUS_ADDRESS`).
    pub fn dbus_address(&self) -> &str {
        &self.dbus
    }

    /// The radio socket peripherals connect to.
    pub fn radio_path(&self) -> &std::path::Path {
        &self.radio
    }

    /// The one-line announcement (top-level scalars only, so a rig can use each field as a
    /// placeholder: `{vbluez_dbus}`, `{vbluez_radio}`, ...).
    pub fn announcement(&self) -> serde_json::Value {
        serde_json::json!({
            "dbus": self.dbus,
            "radio": self.radio.display().to_string(),
            "adapter": self.config.adapter,
            "address": self.core.cfg.address,
            "mtu": self.config.mtu,
            "interval_ms": self.config.air.interval.as_secs_f64() * 1000.0,
            "pdus_per_event": self.config.air.pdus_per_event,
            "loss": self.config.air.loss,
            "seed": self.config.seed,
            "supervision_timeout_ms": self.config.air.supervision_timeout.as_millis() as u64,
        })
    }

    /// Stops serving (the private bus stops when this is dropped).
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.conn.release_name("org.bluez").await;
        let _ = std::fs::remove_file(&self.radio);
    }
}
