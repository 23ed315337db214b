//! BlueZ's D-Bus vocabulary, shared by the core and the objects: interface names, the errors
//! BlueZ answers with, and the encodings of the values and signals both emit. It depends on
//! neither, so the core can name what it emits without knowing the zbus interfaces.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Value;

/// `org.bluez.Adapter1`.
pub const ADAPTER1: &str = "org.bluez.Adapter1";
/// `org.bluez.Device1`.
pub const DEVICE1: &str = "org.bluez.Device1";
/// `org.bluez.GattCharacteristic1`.
pub const CHARACTERISTIC1: &str = "org.bluez.GattCharacteristic1";

/// BlueZ's D-Bus errors (`src/error.c`), the ones vbluez can answer with.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.bluez.Error")]
pub enum BluezError {
    /// A D-Bus level failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// `org.bluez.Error.Failed`.
    Failed(String),
    /// `org.bluez.Error.InProgress`.
    InProgress(String),
    /// `org.bluez.Error.NotConnected`.
    NotConnected(String),
    /// `org.bluez.Error.NotPermitted`.
    NotPermitted(String),
    /// `org.bluez.Error.NotSupported`.
    NotSupported(String),
    /// `org.bluez.Error.NotReady`.
    NotReady(String),
    /// `org.bluez.Error.InvalidArguments`.
    InvalidArguments(String),
    /// `org.bluez.Error.InvalidValueLength`.
    InvalidValueLength(String),
    /// `org.bluez.Error.DoesNotExist`.
    DoesNotExist(String),
}

/// Emits `PropertiesChanged` for `props` of `iface` at `path` (one signal, as BlueZ batches).
pub async fn emit_changed(
    conn: &zbus::Connection,
    path: &str,
    iface: &'static str,
    props: Vec<(&'static str, Value<'static>)>,
) {
    let Ok(emitter) = SignalEmitter::new(conn, path.to_owned()) else {
        return;
    };
    let changed: HashMap<&str, Value<'_>> = props.into_iter().collect();
    let _ = zbus::fdo::Properties::properties_changed(
        &emitter,
        InterfaceName::from_static_str_unchecked(iface),
        changed,
        Cow::Borrowed(&[]),
    )
    .await;
}

/// ServiceData as a D-Bus value (`a{sv}` of byte arrays).
pub fn service_data_value(data: &BTreeMap<String, Vec<u8>>) -> Value<'static> {
    let map: HashMap<String, Value<'static>> = data
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    Value::from(map)
}

/// A 16- or 32-bit UUID in full form, lower case (BlueZ accepts all three in filters).
pub fn full_uuid(u: &str) -> String {
    let u = u.to_ascii_lowercase();
    match u.len() {
        4 => format!("0000{u}-0000-1000-8000-00805f9b34fb"),
        8 => format!("{u}-0000-1000-8000-00805f9b34fb"),
        _ => u,
    }
}
