//! The emulator on PTYs: one pair per stick, the serving loops (a single loop for the
//! coordinator alone, a reader and a writer thread per stick with nodes) and the handle that
//! stops them.

use super::coordinator::Coordinator;
use super::network::Network;
use super::node::valid_node_name;
use super::uart::{
    idle, read_master, receive, transmit, EmulatorError, Port, ReadOutcome, Tracer, IDLE_WAIT,
};
use super::{EmulatorConfig, COORDINATOR};
use softbus::link::znp::frame::FrameRepr;
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

/// The virtual network on PTYs: the coordinator's, and one per router node. See the module
/// docs.
pub struct Emulator {
    /// The coordinator's line, then the nodes' in [`StickId`] order.
    pub(super) ports: Vec<Port>,
    pub(super) coordinator: Coordinator,
    pub(super) started: Instant,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("pty", &self.ports[0].path)
            .field("baud", &self.ports[0].tx.baud)
            .field("nodes", &self.node_ptys())
            .finish()
    }
}

impl Emulator {
    /// Creates a PTY pair for the coordinator and one per node, and the network behind them.
    pub fn new(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let mut seen = std::collections::BTreeSet::new();
        for name in &config.nodes {
            if !valid_node_name(name) {
                return Err(EmulatorError::Config(format!(
                    "node name {name:?} is not usable: use 1 to 32 ASCII letters, digits or `_` \
                     (it becomes part of placeholders such as {{znp_node_{name}_pty}})"
                )));
            }
            if name == "coordinator" || !seen.insert(name.as_str()) {
                return Err(EmulatorError::Config(format!(
                    "node name {name:?} is already taken; give each node its own name"
                )));
            }
        }
        let now = Instant::now();
        let ports = (0..=config.nodes.len())
            .map(|_| Port::open(config.baud, now))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Emulator {
            ports,
            coordinator: Coordinator::new(config, now),
            started: now,
        })
    }

    /// The path the coordinator's host opens (`/dev/pts/N`).
    pub fn pty_path(&self) -> &str {
        &self.ports[0].path
    }

    /// The path the host of node `name` opens.
    pub fn node_pty(&self, name: &str) -> Option<&str> {
        let stick = self.coordinator.network().stick(name)?;
        (stick != COORDINATOR).then(|| self.ports[stick].path.as_str())
    }

    pub(super) fn node_ptys(&self) -> BTreeMap<String, String> {
        let net = self.coordinator.network();
        (1..net.stick_count())
            .map(|i| (net.stick_name(i).to_owned(), self.ports[i].path.clone()))
            .collect()
    }

    /// The baud rate output is paced at.
    pub fn baud(&self) -> u32 {
        self.ports[0].tx.baud
    }

    /// The coordinator.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// The network: the coordinator, the nodes, the devices.
    pub fn network(&self) -> &Network {
        self.coordinator.network()
    }

    /// What the emulator prints on start: `{"pty", "baud", "ieee", "network": {"channel",
    /// "pan_id", "extended_pan_id"}, "devices": [{"name", "nwk", "endpoint", "clusters"}],
    /// "nodes": {NAME: {"pty", "nwk", "ieee"}}}`, and for each node the same flattened to the
    /// top level (`"node_NAME_pty"`, `"node_NAME_nwk"`, `"node_NAME_ieee"`), so that a rig can
    /// name them as `{znp_node_NAME_pty}` (`{znp_nodes_NAME_pty}` works too).
    pub fn announcement(&self) -> serde_json::Value {
        let devices = self.coordinator.devices();
        let config = self.coordinator.config();
        let mut nodes = serde_json::Map::new();
        let mut flat = Vec::new();
        for (i, node) in self.network().nodes().into_iter().enumerate() {
            let pty = &self.ports[i + 1].path;
            let ieee = node.ieee.to_string();
            nodes.insert(
                node.name.clone(),
                serde_json::json!({"pty": pty, "nwk": node.nwk, "ieee": ieee}),
            );
            let name = &node.name;
            flat.push((format!("node_{name}_pty"), serde_json::json!(pty)));
            flat.push((format!("node_{name}_nwk"), serde_json::json!(node.nwk)));
            flat.push((format!("node_{name}_ieee"), serde_json::json!(ieee)));
        }
        let mut out = serde_json::json!({
            "pty": self.ports[0].path,
            "baud": self.ports[0].tx.baud,
            "ieee": config.ieee.to_string(),
            "network": {
                "channel": config.channel,
                "pan_id": config.pan_id,
                "extended_pan_id": config.extended_pan_id.to_string(),
            },
            "devices": devices,
            "nodes": nodes,
        });
        if let Some(map) = out.as_object_mut() {
            map.extend(flat);
        }
        out
    }

    pub(super) fn tracer(&self) -> Tracer {
        Tracer {
            on: self.coordinator.config().trace,
            started: self.started,
        }
    }

    /// Serves the hosts until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), EmulatorError> {
        if self.ports.len() == 1 {
            self.run_coordinator(stop)
        } else {
            self.run_network(stop)
        }
    }

    /// The coordinator alone: one loop reads its line and writes what is due.
    pub(super) fn run_coordinator(&mut self, stop: &AtomicBool) -> Result<(), EmulatorError> {
        let tracer = self.tracer();
        let net = &mut self.coordinator.net;
        let port = &mut self.ports[0];
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            while let Some(frame) = net.poll_transmit(COORDINATOR, Instant::now()) {
                tracer.trace("coordinator", "->", &frame);
                transmit(&mut port.master, &mut port.tx, &frame.to_bytes())?;
            }
            let now = Instant::now();
            let wait = net
                .poll_timeout(COORDINATOR)
                .map_or(IDLE_WAIT, |t| t.saturating_duration_since(now))
                .min(IDLE_WAIT);
            let deliver = |frame: FrameRepr, arrived| {
                tracer.trace("coordinator", "<-", &frame);
                net.handle_frame(COORDINATOR, &frame, arrived);
            };
            match read_master(&mut port.master, &mut buf, wait)? {
                ReadOutcome::Bytes(n) => receive(
                    &mut port.decoder,
                    &mut port.rx,
                    &buf[..n],
                    Instant::now(),
                    deliver,
                ),
                ReadOutcome::Idle => idle(&mut port.decoder, &port.rx, Instant::now(), deliver),
            }
        }
        Ok(())
    }

    /// Several sticks: each has a reader thread (its host's frames into the shared network)
    /// and a writer thread (its frames out, paced, when due), so one line's pacing never holds
    /// up another's. A reader wakes the writers whenever it changed the network.
    pub(super) fn run_network(&mut self, stop: &AtomicBool) -> Result<(), EmulatorError> {
        let tracer = self.tracer();
        let names: Vec<String> = (0..self.ports.len())
            .map(|i| self.coordinator.net.stick_name(i).to_owned())
            .collect();
        let mut readers = Vec::new();
        for port in &self.ports {
            readers.push(
                port.master
                    .try_clone_native()
                    .map_err(|e| EmulatorError::Io(e.into()))?,
            );
        }
        let net = Mutex::new(&mut self.coordinator.net);
        let changed = Condvar::new();
        let failed = AtomicBool::new(false);
        let (net, changed, failed, names) = (&net, &changed, &failed, &names);
        let halt = move || stop.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed);
        let results: Vec<Result<(), EmulatorError>> = std::thread::scope(|scope| {
            let mut threads = Vec::new();
            for (i, (port, mut reader)) in self.ports.iter_mut().zip(readers).enumerate() {
                let Port {
                    master,
                    decoder,
                    tx,
                    rx,
                    ..
                } = port;
                let name = names[i].as_str();
                threads.push(scope.spawn(move || {
                    let mut buf = [0u8; 512];
                    let served = (|| {
                        while !halt() {
                            let outcome = read_master(&mut reader, &mut buf, IDLE_WAIT)?;
                            if matches!(outcome, ReadOutcome::Idle) && decoder.buffered() == 0 {
                                continue;
                            }
                            let mut net = net.lock().unwrap_or_else(PoisonError::into_inner);
                            let deliver = |frame: FrameRepr, at| {
                                tracer.trace(name, "<-", &frame);
                                net.handle_frame(i, &frame, at);
                            };
                            match outcome {
                                ReadOutcome::Bytes(n) => {
                                    receive(decoder, rx, &buf[..n], Instant::now(), deliver)
                                }
                                ReadOutcome::Idle => idle(decoder, rx, Instant::now(), deliver),
                            }
                            drop(net);
                            changed.notify_all();
                        }
                        Ok(())
                    })();
                    if served.is_err() {
                        failed.store(true, Ordering::Relaxed);
                        changed.notify_all();
                    }
                    served
                }));
                threads.push(scope.spawn(move || {
                    let served = (|| loop {
                        let frame = {
                            let mut guard = net.lock().unwrap_or_else(PoisonError::into_inner);
                            loop {
                                if halt() {
                                    return Ok(());
                                }
                                let now = Instant::now();
                                if let Some(frame) = guard.poll_transmit(i, now) {
                                    break frame;
                                }
                                let wait = guard
                                    .poll_timeout(i)
                                    .map_or(IDLE_WAIT, |t| t.saturating_duration_since(now))
                                    .min(IDLE_WAIT);
                                guard = match changed.wait_timeout(guard, wait) {
                                    Ok((g, _)) => g,
                                    Err(poisoned) => poisoned.into_inner().0,
                                };
                            }
                        };
                        tracer.trace(name, "->", &frame);
                        transmit(master, tx, &frame.to_bytes())?;
                    })();
                    if served.is_err() {
                        failed.store(true, Ordering::Relaxed);
                        changed.notify_all();
                    }
                    served
                }));
            }
            threads
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| {
                        Err(EmulatorError::Io(io::Error::other(
                            "emulator thread panicked",
                        )))
                    })
                })
                .collect()
        });
        results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
    }

    /// Runs on a background thread until the handle is dropped.
    pub fn spawn(mut self) -> EmulatorHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let path = self.pty_path().to_owned();
        let baud = self.baud();
        let nodes = self.node_ptys();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || self.run(&flag));
        EmulatorHandle {
            stop,
            thread: Some(thread),
            path,
            baud,
            nodes,
        }
    }
}

/// An [`Emulator`] running on a background thread; dropping the handle stops it.
#[derive(Debug)]
pub struct EmulatorHandle {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: Option<JoinHandle<Result<(), EmulatorError>>>,
    pub(super) path: String,
    pub(super) baud: u32,
    pub(super) nodes: BTreeMap<String, String>,
}

impl EmulatorHandle {
    /// The PTY path for the coordinator's host.
    pub fn pty_path(&self) -> &str {
        &self.path
    }

    /// The PTY path for the host of node `name`.
    pub fn node_pty(&self, name: &str) -> Option<&str> {
        self.nodes.get(name).map(String::as_str)
    }

    /// The paced baud rate.
    pub fn baud(&self) -> u32 {
        self.baud
    }

    /// Stops the emulator and returns how its loop ended.
    pub fn stop(mut self) -> Result<(), EmulatorError> {
        self.stop_inner()
    }

    pub(super) fn stop_inner(&mut self) -> Result<(), EmulatorError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(EmulatorError::Io(io::Error::other(
                "emulator thread panicked",
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}
