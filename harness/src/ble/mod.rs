//! Bluetooth LE machinery of the harness that is not a link: [`vbluez`], the virtual BlueZ
//! the virtual rig runs in place of bluetoothd and a controller. The tester's BLE central
//! itself is `crate::link::ble::BleLink`, which talks to vbluez and to the real BlueZ alike.

pub mod vbluez;
