//! SoftBus conformance harness: the machinery a conformance case stands on.
//!
//! - [`rig`]: rig files (which DUTs, how to reach them, their PICS and PIXIT);
//! - [`pics`]: PICS feature maps and the boolean expressions that gate cases;
//! - [`verdict`]: ISO/IEC 9646 verdicts and the per-case outcome accumulator;
//! - [`timing`]: a log-linear latency histogram;
//! - [`report`]: the versioned run report and its JSON, JUnit, HTML and JSONL writers;
//! - [`capture`]: packet capture to pcap files, and UDP payload extraction;
//! - [`link`]: the tester's side of a DUT's links (UDP, Zigbee through a ZNP radio, BLE as a
//!   central), one datagram interface over all of them;
//! - [`znp`]: a virtual Z-Stack coordinator on a PTY with legacy ZCL devices behind it (it
//!   speaks the MT codec of `softbus::link::znp`), which a rig can launch beside a DUT;
//! - [`ble`]: `vbluez`, a virtual BlueZ on D-Bus with a modelled BLE air, so the BLE central
//!   (btleplug) runs unchanged against virtual peripheral DUTs.
//!
//! **Architecture Invariant:** nothing here knows the SoftBus protocol; the harness judges bytes
//! on the wire and never calls the reference implementation's state machines. It borrows only
//! the reference's protocol-neutral Zigbee codec (`softbus::link::znp`), so the emulator and the
//! bridge read the same bytes the same way.

pub mod ble;
pub mod capture;
pub mod link;
pub mod pics;
pub mod report;
pub mod rig;
pub mod timing;
pub mod verdict;
pub mod znp;
