//! SoftBus conformance harness: the machinery a conformance case stands on.
//!
//! - [`rig`]: rig files (which DUTs, how to reach them, their PICS and PIXIT);
//! - [`pics`]: PICS feature maps and the boolean expressions that gate cases;
//! - [`verdict`]: ISO/IEC 9646 verdicts and the per-case outcome accumulator;
//! - [`timing`]: a log-linear latency histogram;
//! - [`report`]: the versioned run report and its JSON, JUnit, HTML and JSONL writers;
//! - [`capture`]: packet capture to pcap files, and UDP payload extraction;
//! - [`znp`]: the TI Z-Stack MT protocol over serial: codec, host driver and a virtual
//!   coordinator, through which the harness reaches Zigbee devices.
//!
//! **Architecture Invariant:** nothing here knows the SoftBus protocol; the harness judges bytes
//! on the wire and never calls the reference implementation's state machines.

pub mod capture;
pub mod pics;
pub mod report;
pub mod rig;
pub mod timing;
pub mod verdict;
pub mod znp;
