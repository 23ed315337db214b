//! Link drivers below the SoftBus core.
//!
//! The core sees a link only as a [`crate::LinkAddr`] and datagrams (one link abstraction);
//! what it takes to reach a medium lives here. Today that is [`znp`]: the TI Z-Stack
//! Monitor-and-Test protocol a host speaks to a serial-attached Zigbee coordinator, which the
//! protocol converter ([`crate::bridge`]) uses to reach legacy ZCL devices, and which the Zigbee
//! link binding builds on.

pub mod znp;
