//! The protocol converter (spec 10.3): legacy Zigbee Cluster Library devices behind a Z-Stack
//! coordinator, exposed as SoftBus capabilities (`light.onoff`, `sensor.temperature`).
//!
//! - [`ops`] (sans-IO): capability names and kinds, the operations args name, the ZCL requests
//!   each takes, how the answers become a CAP_RESULT, how discovered devices are named;
//! - [`host`]: the blocking Z-Stack host on a serial port: start the coordinator, find the
//!   devices with ZDO, carry out operations with timeouts;
//! - [`Bridge`]: the host on a thread of its own, which the daemon hands uses to and which
//!   reports each one's outcome.
//!
//! The bridge never decides who may use a device. The endpoint checks every CAP_INVOKE as
//! spec 11.4 says and hands the bridge only the uses that passed (as
//! [`crate::Event::CapabilityRequest`]); the daemon passes the bridge's answer back with
//! [`crate::Endpoint::complete_invoke`]. A use is answered OK with the operation's result,
//! MALFORMED when its args are not an operation of the capability, and INTERNAL with a
//! diagnostic text when the device or the coordinator did not carry it out.

pub mod host;
pub mod ops;

use std::sync::mpsc;
use std::time::Duration;

pub use ops::{
    BridgedDevice, BridgedKind, Discovered, Failure, Operation, LIGHT_ONOFF, SENSOR_TEMPERATURE,
};

use crate::capability::{Capability, Metrics};
use crate::wire::Code;
use host::Host;

/// What the bridge needs to know (from `[bridge]` in the daemon's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The coordinator's serial port.
    pub port: String,
    /// Its baud rate.
    pub baud: u32,
    /// How long one exchange with the coordinator or a device may take.
    pub timeout: Duration,
    /// Whether to expose the devices ZDO discovery finds.
    pub discover: bool,
    /// Devices to expose whatever discovery finds.
    pub devices: Vec<BridgedDevice>,
}

impl BridgeConfig {
    /// How long the endpoint lets one use take before answering INTERNAL itself: a use is
    /// at most two exchanges (`toggle`), and may wait behind one other use.
    pub fn backend_timeout(&self) -> Duration {
        self.timeout * 4 + Duration::from_secs(1)
    }
}

/// The bridge could not start; the message names the `[bridge]` key to look at. Each message
/// includes its cause, so the causes are not repeated as `source`s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The coordinator did not come up.
    #[error("bridge.znp: cannot start the coordinator on {port}: {cause}")]
    Start {
        /// The serial port.
        port: String,
        /// Why.
        cause: host::StartError,
    },
    /// Discovery failed at the coordinator itself.
    #[error("bridge.discover: cannot read the network from the coordinator on {port}: {cause}")]
    Discover {
        /// The serial port.
        port: String,
        /// Why.
        cause: Failure,
    },
    /// The bridge's thread could not be started.
    #[error("bridge: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// The outcome of one use, for [`crate::Endpoint::complete_invoke`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The handle of the [`crate::Event::CapabilityRequest`].
    pub handle: u64,
    /// OK, MALFORMED or INTERNAL.
    pub status: Code,
    /// The operation's result, or a diagnostic.
    pub result: Vec<u8>,
}

struct Job {
    handle: u64,
    capability: String,
    args: Vec<u8>,
}

/// The running bridge: a thread that owns the coordinator and serves uses one at a time, in
/// the order they were submitted. Dropping it lets the thread finish its current use and end.
#[derive(Debug)]
pub struct Bridge {
    jobs: mpsc::Sender<Job>,
    devices: Vec<BridgedDevice>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("handle", &self.handle)
            .field("capability", &self.capability)
            .finish()
    }
}

impl Bridge {
    /// Brings the coordinator up, finds the devices to expose (discovered ones are named so
    /// as not to clash with `taken`, the device's other capability names), and starts serving.
    /// Blocks for as long as that takes (a second or two on a small network). Each completed
    /// use is passed to `notify`, from the bridge's thread.
    pub fn start(
        config: BridgeConfig,
        taken: &[String],
        notify: impl FnMut(Completion) + Send + 'static,
    ) -> Result<Bridge, BridgeError> {
        let mut host = Host::start(&config.port, config.baud, config.timeout).map_err(|cause| {
            BridgeError::Start {
                port: config.port.clone(),
                cause,
            }
        })?;
        let discovered = if config.discover {
            host.discover().map_err(|cause| BridgeError::Discover {
                port: config.port.clone(),
                cause,
            })?
        } else {
            Vec::new()
        };
        let devices = ops::assign_names(&config.devices, discovered, taken);
        for d in &devices {
            tracing::info!(device = %d, ieee = ?d.ieee.map(|i| i.to_string()), "bridge: exposing");
        }
        let (jobs, rx) = mpsc::channel::<Job>();
        let worker = Worker {
            host: Some(host),
            config,
            devices: devices.clone(),
        };
        std::thread::Builder::new()
            .name("softbus-bridge".into())
            .spawn(move || worker.run(rx, notify))
            .map_err(BridgeError::Thread)?;
        Ok(Bridge { jobs, devices })
    }

    /// The devices exposed, sorted by capability name.
    pub fn devices(&self) -> &[BridgedDevice] {
        &self.devices
    }

    /// The capabilities to offer, one per device.
    pub fn capabilities(&self) -> Vec<Capability> {
        capabilities(&self.devices)
    }

    /// Queues a use that passed the permission checks. Errors (with the use back) when the
    /// bridge's thread has ended; the caller then answers the use itself.
    pub fn submit(&self, handle: u64, capability: String, args: Vec<u8>) -> Result<(), u64> {
        self.jobs
            .send(Job {
                handle,
                capability,
                args,
            })
            .map_err(|e| e.0.handle)
    }
}

/// The capability descriptors of bridged devices: name, kind (`light`, `sensor`), mains
/// powered metrics.
pub fn capabilities(devices: &[BridgedDevice]) -> Vec<Capability> {
    devices
        .iter()
        .map(|d| Capability {
            name: d.capability.clone(),
            kind: d.kind.capability_kind().to_string(),
            metrics: Metrics::default(),
        })
        .collect()
}

/// The bridge's thread.
struct Worker {
    /// `None` after the coordinator failed; the next use reopens it.
    host: Option<Host>,
    config: BridgeConfig,
    devices: Vec<BridgedDevice>,
}

impl Worker {
    fn run(mut self, jobs: mpsc::Receiver<Job>, mut notify: impl FnMut(Completion)) {
        while let Ok(job) = jobs.recv() {
            let (status, result) = self.serve(&job);
            if status != Code::Ok {
                tracing::warn!(capability = %job.capability, %status, result = %String::from_utf8_lossy(&result), "bridge: use failed");
            }
            notify(Completion {
                handle: job.handle,
                status,
                result,
            });
        }
    }

    fn serve(&mut self, job: &Job) -> (Code, Vec<u8>) {
        let Some(device) = self.devices.iter().find(|d| d.capability == job.capability) else {
            let why = format!("bridge: {} is not a bridged capability", job.capability);
            return (Code::Internal, why.into_bytes());
        };
        let op = match Operation::parse(device.kind, &device.capability, &job.args) {
            Ok(op) => op,
            Err(e) => return (Code::Malformed, e.to_string().into_bytes()),
        };
        let host = match self.host.as_mut() {
            Some(h) => h,
            None => match Host::start(&self.config.port, self.config.baud, self.config.timeout) {
                Ok(h) => self.host.insert(h),
                Err(e) => {
                    let why = format!(
                        "bridge: {device}: coordinator {} unavailable: {e}",
                        self.config.port
                    );
                    return (Code::Internal, why.into_bytes());
                }
            },
        };
        match host.execute(device, op) {
            Ok(text) => (Code::Ok, text.into_bytes()),
            Err(f) => {
                if host::is_fatal(&f) {
                    self.host = None;
                }
                (
                    Code::Internal,
                    format!("bridge: {device}: {f}").into_bytes(),
                )
            }
        }
    }
}
