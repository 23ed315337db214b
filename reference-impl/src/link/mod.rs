//! Link drivers and link bindings below the SoftBus core.
//!
//! The core sees a link only as a [`crate::LinkAddr`] and datagrams (one link abstraction);
//! what it takes to reach a medium lives here:
//!
//! - [`sar`]: the segmentation every non-IP link uses to carry datagrams bigger than its
//!   packets (spec 16.1);
//! - [`znp`]: the TI Z-Stack Monitor-and-Test protocol a host speaks to a serial-attached Zigbee
//!   radio, which the protocol converter ([`crate::bridge`]) and the Zigbee link use;
//! - [`serial`]: serial lines for [`znp`], local or shared over the network by an access
//!   server such as ser2net (`tcp://host:port`, `rfc2217://host:port`: RFC 2217 client);
//! - [`zigbee`]: the Zigbee binding (spec 16.2): SoftBus datagrams as APS payloads;
//! - [`ble`]: the Bluetooth LE binding (spec 16.3): GATT layout, advert, and the virtual radio
//!   a peripheral reaches the virtual BlueZ through;
//! - [`zigbee_driver`]: `softbusd`'s Zigbee link over a serial Z-Stack stick;
//! - [`ble_peripheral`]: `softbusd`'s BLE peripheral on the virtual radio.

pub mod ble;
pub mod ble_peripheral;
pub mod sar;
pub mod serial;
pub mod zigbee;
pub mod zigbee_driver;
pub mod znp;
