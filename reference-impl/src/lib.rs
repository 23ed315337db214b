//! # softbus: the SoftBus v1 reference implementation
//!
//! A distributed soft bus in the style of OpenHarmony's: devices discover each other over CoAP
//! multicast, pair once with a 6-digit PIN (SPAKE2), then open Noise XX secure connections that
//! carry sessions, capability queries and permission-checked capability use.
//!
//! The crate is layered so the protocol can be tested without I/O:
//!
//! * [`wire`]: the codec for every frame and message (parse / emit / buffer_len; never panics);
//! * [`crypto`]: identity, device IDs, pairing confirmations, record keys, the replay window;
//! * [`endpoint`]: the sans-IO state machine (`handle_*` in, `poll_*` out, time and RNG injected);
//! * [`time`]: clock synchronization and synchronized playout (spec 17), sans-IO;
//! * [`discovery`]: the sans-IO CoAP responder and probe;
//! * [`link`]: link drivers below the core; today the Z-Stack MT codec and serial host driver
//!   ([`link::znp`]) through which a device reaches a Zigbee coordinator;
//! * [`bridge`]: the protocol converter that exposes legacy ZCL devices behind a Zigbee
//!   coordinator as capabilities (its operation mapping is sans-IO, its host task is not);
//! * [`daemon`], [`control`], [`config`]: the tokio driver, the tester control protocol server
//!   and the `softbusd` configuration file, which with `link::znp::port` and the bridge's host
//!   task are the only parts that touch the OS.
//!
//! **Architecture invariant:** nothing under `wire`, `crypto`, `endpoint`, `time`, `discovery`,
//! `capability` or `fault` performs I/O, reads a clock or draws OS randomness.

pub mod bridge;
pub mod capability;
pub mod config;
pub mod control;
pub mod crypto;
pub mod daemon;
pub mod discovery;
pub mod endpoint;
pub mod fault;
pub mod link;
pub mod time;
pub mod trust;
pub mod wire;

pub use crypto::{DeviceId, Identity};
pub use endpoint::{Config, Endpoint, Event, LinkAddr, PromptPolicy, Transmit};
pub use fault::Fault;
