//! The `org.bluez` D-Bus objects vbluez serves, with BlueZ's interface, member, property and
//! error names (BlueZ 5.66's `doc/adapter-api.txt`, `device-api.txt`, `gatt-api.txt`).
//!
//! Implemented: `org.bluez.Adapter1` (StartDiscovery, StopDiscovery, SetDiscoveryFilter,
//! GetDiscoveryFilters, RemoveDevice; Address, AddressType, Name, Alias, Class, Powered,
//! PowerState, Discoverable, DiscoverableTimeout, Pairable, PairableTimeout, Discovering, UUIDs,
//! Modalias, Roles), `org.bluez.Device1` (Connect, Disconnect, and Pair/CancelPairing/
//! ConnectProfile/DisconnectProfile refused; Address, AddressType, Name, Alias, Paired, Bonded,
//! Trusted, Blocked, LegacyPairing, RSSI, Connected, UUIDs, Adapter, ServiceData,
//! ManufacturerData, ServicesResolved, AdvertisingFlags), `org.bluez.GattService1` (UUID,
//! Primary, Device, Includes, Handle), `org.bluez.GattCharacteristic1` (ReadValue, WriteValue,
//! StartNotify, StopNotify; AcquireWrite/AcquireNotify refused; UUID, Service, Value,
//! Notifying, Flags, MTU, Handle) and `org.bluez.GattDescriptor1` for CCCDs (ReadValue,
//! WriteValue refused as BlueZ does; UUID, Characteristic, Value, Flags, Handle), plus
//! `org.freedesktop.DBus.ObjectManager` at `/` (zbus's, which emits InterfacesAdded/Removed).
//!
//! Left out: AgentManager1, ProfileManager1, LEAdvertisingManager1, GattManager1 (btleplug as
//! a central calls none of them), pairing and bonding, BR/EDR, TxPower and Appearance (the
//! virtual adverts carry neither).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

use super::bluez::{emit_changed, full_uuid, BluezError};
use super::core::{Chr, Core, Export, Filter, Svc, CCCD_UUID, RSSI};

/// The core's [`Export`] over a zbus connection: the objects of this module on the bus and off.
#[derive(Debug)]
pub struct Exporter {
    /// The connection whose object server holds the objects.
    pub conn: zbus::Connection,
}

impl Export for Exporter {
    fn device<'a>(
        &'a self,
        core: &'a Arc<Core>,
        addr: &'a str,
        path: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let iface = Device1::new(Arc::clone(core), addr.to_owned());
            if let Err(e) = self.conn.object_server().at(path, iface).await {
                eprintln!("vbluez: cannot export {path}: {e}");
            }
        })
    }

    fn remove_device<'a>(&'a self, path: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = self.conn.object_server().remove::<Device1, _>(path).await;
        })
    }

    fn gatt<'a>(
        &'a self,
        core: &'a Arc<Core>,
        addr: &'a str,
        device_path: &'a str,
        services: &'a [Svc],
        chrs: &'a [Chr],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let server = self.conn.object_server();
            for s in services {
                let iface = GattService1::new(
                    Arc::clone(core),
                    addr.to_owned(),
                    s.clone(),
                    device_path.to_owned(),
                );
                let _ = server.at(s.path.as_str(), iface).await;
            }
            for c in chrs {
                let iface =
                    GattCharacteristic1::new(Arc::clone(core), addr.to_owned(), c.path.clone());
                let _ = server.at(c.path.as_str(), iface).await;
                if let Some((dpath, _)) = &c.cccd {
                    let iface =
                        GattDescriptor1::new(Arc::clone(core), addr.to_owned(), c.path.clone());
                    let _ = server.at(dpath.as_str(), iface).await;
                }
            }
        })
    }

    fn remove_gatt<'a>(&'a self, services: &'a [Svc], chrs: &'a [Chr]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let server = self.conn.object_server();
            for chr in chrs.iter().rev() {
                if let Some((dpath, _)) = &chr.cccd {
                    let _ = server.remove::<GattDescriptor1, _>(dpath.as_str()).await;
                }
                let _ = server
                    .remove::<GattCharacteristic1, _>(chr.path.as_str())
                    .await;
            }
            for s in services.iter().rev() {
                let _ = server.remove::<GattService1, _>(s.path.as_str()).await;
            }
        })
    }

    fn changed<'a>(
        &'a self,
        path: &'a str,
        iface: &'static str,
        props: Vec<(&'static str, Value<'static>)>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(emit_changed(&self.conn, path, iface, props))
    }
}

fn owned(v: Value<'_>) -> OwnedValue {
    v.try_to_owned().unwrap_or_else(|_| OwnedValue::from(0u8))
}

fn object_path(p: &str) -> OwnedObjectPath {
    ObjectPath::try_from(p.to_owned())
        .map(OwnedObjectPath::from)
        .unwrap_or_else(|_| OwnedObjectPath::from(ObjectPath::from_static_str_unchecked("/")))
}

fn sender(hdr: &Header<'_>) -> String {
    hdr.sender().map(|s| s.to_string()).unwrap_or_default()
}

fn parse_filter(dict: HashMap<String, OwnedValue>) -> Result<Option<Filter>, BluezError> {
    if dict.is_empty() {
        return Ok(None);
    }
    let bad =
        |k: &str| BluezError::InvalidArguments(format!("Invalid arguments in method call: {k}"));
    let mut f = Filter::default();
    for (k, v) in dict {
        match k.as_str() {
            "UUIDs" => {
                let uuids = Vec::<String>::try_from(v).map_err(|_| bad("UUIDs"))?;
                f.uuids = uuids.iter().map(|u| full_uuid(u)).collect();
            }
            "RSSI" => f.rssi = Some(i16::try_from(v).map_err(|_| bad("RSSI"))?),
            "Pathloss" => {
                u16::try_from(v).map_err(|_| bad("Pathloss"))?;
            }
            "Transport" => {
                let t = String::try_from(v).map_err(|_| bad("Transport"))?;
                if !matches!(t.as_str(), "auto" | "bredr" | "le") {
                    return Err(bad("Transport"));
                }
            }
            "DuplicateData" | "Discoverable" => {
                bool::try_from(v).map_err(|_| bad(&k))?;
            }
            "Pattern" => f.pattern = Some(String::try_from(v).map_err(|_| bad("Pattern"))?),
            _ => return Err(bad(&k)),
        }
    }
    Ok(Some(f))
}

/// `/org/bluez/hci0`: `org.bluez.Adapter1`.
#[derive(Debug)]
pub struct Adapter1 {
    core: Arc<Core>,
}

impl Adapter1 {
    /// The adapter of `core`.
    pub fn new(core: Arc<Core>) -> Adapter1 {
        Adapter1 { core }
    }
}

#[zbus::interface(name = "org.bluez.Adapter1")]
impl Adapter1 {
    async fn start_discovery(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), BluezError> {
        self.core.start_discovery(sender(&hdr)).await
    }

    async fn stop_discovery(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), BluezError> {
        self.core.stop_discovery(&sender(&hdr)).await
    }

    async fn set_discovery_filter(
        &self,
        filter: HashMap<String, OwnedValue>,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), BluezError> {
        let f = parse_filter(filter)?;
        self.core.set_filter(sender(&hdr), f);
        Ok(())
    }

    async fn get_discovery_filters(&self) -> Vec<String> {
        [
            "UUIDs",
            "RSSI",
            "Pathloss",
            "Transport",
            "DuplicateData",
            "Discoverable",
            "Pattern",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }

    async fn remove_device(&self, device: OwnedObjectPath) -> Result<(), BluezError> {
        self.core.remove_device(device.as_str()).await
    }

    #[zbus(property)]
    fn address(&self) -> String {
        self.core.cfg.address.clone()
    }

    #[zbus(property)]
    fn address_type(&self) -> String {
        "public".into()
    }

    #[zbus(property)]
    fn name(&self) -> String {
        "vbluez".into()
    }

    #[zbus(property)]
    fn alias(&self) -> String {
        self.core
            .state()
            .alias
            .clone()
            .unwrap_or_else(|| "vbluez".into())
    }

    #[zbus(property)]
    fn set_alias(&mut self, value: String) {
        self.core.state().alias = (!value.is_empty()).then_some(value);
    }

    #[zbus(property)]
    fn class(&self) -> u32 {
        0
    }

    #[zbus(property(emits_changed_signal = "false"))]
    fn powered(&self) -> bool {
        self.core.state().powered
    }

    #[zbus(property)]
    async fn set_powered(&mut self, value: bool) {
        self.core.set_powered(value).await;
    }

    #[zbus(property(emits_changed_signal = "false"))]
    fn power_state(&self) -> String {
        if self.core.state().powered {
            "on"
        } else {
            "off"
        }
        .into()
    }

    #[zbus(property)]
    fn discoverable(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn discoverable_timeout(&self) -> u32 {
        180
    }

    #[zbus(property)]
    fn pairable(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn pairable_timeout(&self) -> u32 {
        0
    }

    #[zbus(property(emits_changed_signal = "false"))]
    fn discovering(&self) -> bool {
        self.core.state().discovering()
    }

    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        Vec::new()
    }

    #[zbus(property)]
    fn modalias(&self) -> String {
        // Linux Foundation / BlueZ 5.66, as bluetoothd reports itself.
        "usb:v1D6Bp0246d0542".into()
    }

    #[zbus(property)]
    fn roles(&self) -> Vec<String> {
        vec!["central".into(), "peripheral".into()]
    }
}

/// `/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF`: `org.bluez.Device1`.
#[derive(Debug)]
pub struct Device1 {
    core: Arc<Core>,
    addr: String,
}

impl Device1 {
    /// The device at `addr`.
    pub fn new(core: Arc<Core>, addr: String) -> Device1 {
        Device1 { core, addr }
    }

    fn with<T: Default>(&self, f: impl FnOnce(&super::core::Device) -> T) -> T {
        self.core
            .state()
            .devices
            .get(&self.addr)
            .map(f)
            .unwrap_or_default()
    }
}

#[zbus::interface(name = "org.bluez.Device1")]
impl Device1 {
    async fn connect(&self) -> Result<(), BluezError> {
        self.core.connect(&self.addr).await
    }

    async fn disconnect(&self) -> Result<(), BluezError> {
        self.core.disconnect(&self.addr).await
    }

    async fn connect_profile(&self, _uuid: String) -> Result<(), BluezError> {
        Err(BluezError::NotSupported("profiles are not modelled".into()))
    }

    async fn disconnect_profile(&self, _uuid: String) -> Result<(), BluezError> {
        Err(BluezError::NotSupported("profiles are not modelled".into()))
    }

    async fn pair(&self) -> Result<(), BluezError> {
        Err(BluezError::NotSupported("pairing is not modelled".into()))
    }

    async fn cancel_pairing(&self) -> Result<(), BluezError> {
        Err(BluezError::DoesNotExist("Does Not Exist".into()))
    }

    #[zbus(property)]
    fn address(&self) -> String {
        self.addr.clone()
    }

    #[zbus(property)]
    fn address_type(&self) -> String {
        "random".into()
    }

    #[zbus(property(emits_changed_signal = "false"))]
    fn name(&self) -> String {
        self.with(|d| d.name.clone())
    }

    #[zbus(property)]
    fn alias(&self) -> String {
        self.with(|d| d.alias())
    }

    #[zbus(property)]
    fn set_alias(&mut self, value: String) {
        if let Some(d) = self.core.state().devices.get_mut(&self.addr) {
            d.alias = (!value.is_empty()).then_some(value);
        }
    }

    #[zbus(property)]
    fn paired(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn bonded(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn trusted(&self) -> bool {
        self.with(|d| d.trusted)
    }

    #[zbus(property)]
    fn set_trusted(&mut self, value: bool) {
        if let Some(d) = self.core.state().devices.get_mut(&self.addr) {
            d.trusted = value;
        }
    }

    #[zbus(property)]
    fn blocked(&self) -> bool {
        self.with(|d| d.blocked)
    }

    #[zbus(property)]
    fn set_blocked(&mut self, value: bool) {
        if let Some(d) = self.core.state().devices.get_mut(&self.addr) {
            d.blocked = value;
        }
    }

    #[zbus(property)]
    fn legacy_pairing(&self) -> bool {
        false
    }

    #[zbus(property(emits_changed_signal = "false"), name = "RSSI")]
    fn rssi(&self) -> i16 {
        RSSI
    }

    #[zbus(property(emits_changed_signal = "false"))]
    fn connected(&self) -> bool {
        self.with(|d| d.connected())
    }

    #[zbus(property(emits_changed_signal = "false"), name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        self.with(|d| d.uuids.clone())
    }

    #[zbus(property)]
    fn adapter(&self) -> OwnedObjectPath {
        object_path(&self.core.adapter_path)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    fn service_data(&self) -> HashMap<String, OwnedValue> {
        self.with(|d| {
            d.service_data
                .iter()
                .map(|(k, v)| (k.clone(), owned(Value::from(v.clone()))))
                .collect()
        })
    }

    #[zbus(property)]
    fn manufacturer_data(&self) -> HashMap<u16, OwnedValue> {
        HashMap::new()
    }

    #[zbus(property(emits_changed_signal = "false"))]
    fn services_resolved(&self) -> bool {
        self.with(|d| d.services_resolved)
    }

    #[zbus(property)]
    fn advertising_flags(&self) -> Vec<u8> {
        // LE General Discoverable, BR/EDR not supported.
        vec![0x06]
    }
}

/// `.../serviceXXXX`: `org.bluez.GattService1`.
#[derive(Debug)]
pub struct GattService1 {
    _core: Arc<Core>,
    _addr: String,
    svc: Svc,
    device_path: String,
}

impl GattService1 {
    /// Service `svc` of the device at `device_path`.
    pub fn new(core: Arc<Core>, addr: String, svc: Svc, device_path: String) -> GattService1 {
        GattService1 {
            _core: core,
            _addr: addr,
            svc,
            device_path,
        }
    }
}

#[zbus::interface(name = "org.bluez.GattService1")]
impl GattService1 {
    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.svc.uuid.clone()
    }

    #[zbus(property)]
    fn primary(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn device(&self) -> OwnedObjectPath {
        object_path(&self.device_path)
    }

    #[zbus(property)]
    fn includes(&self) -> Vec<OwnedObjectPath> {
        Vec::new()
    }

    #[zbus(property)]
    fn handle(&self) -> u16 {
        self.svc.handle
    }
}

fn write_type(options: &HashMap<String, OwnedValue>) -> Result<Option<String>, BluezError> {
    let bad =
        |k: &str| BluezError::InvalidArguments(format!("Invalid arguments in method call: {k}"));
    if let Some(v) = options.get("offset") {
        // BlueZ takes the offset as a uint16 ("q"); anything else is invalid.
        let offset =
            u16::try_from(v.try_clone().map_err(|_| bad("offset"))?).map_err(|_| bad("offset"))?;
        if offset != 0 {
            return Err(BluezError::NotSupported(
                "writes at an offset are not modelled".into(),
            ));
        }
    }
    match options.get("type") {
        Some(v) => Ok(Some(
            String::try_from(v.try_clone().map_err(|_| bad("type"))?).map_err(|_| bad("type"))?,
        )),
        None => Ok(None),
    }
}

/// `.../charXXXX`: `org.bluez.GattCharacteristic1`.
#[derive(Debug)]
pub struct GattCharacteristic1 {
    core: Arc<Core>,
    addr: String,
    path: String,
}

impl GattCharacteristic1 {
    /// The characteristic at `path` of the device at `addr`.
    pub fn new(core: Arc<Core>, addr: String, path: String) -> GattCharacteristic1 {
        GattCharacteristic1 { core, addr, path }
    }

    fn with<T: Default>(&self, f: impl FnOnce(&super::core::Chr) -> T) -> T {
        let st = self.core.state();
        st.devices
            .get(&self.addr)
            .and_then(|d| d.gatt.iter().find(|c| c.path == self.path))
            .map(f)
            .unwrap_or_default()
    }
}

#[zbus::interface(name = "org.bluez.GattCharacteristic1")]
impl GattCharacteristic1 {
    async fn read_value(
        &self,
        _options: HashMap<String, OwnedValue>,
    ) -> Result<Vec<u8>, BluezError> {
        self.core.read_value(&self.addr, &self.path).await
    }

    async fn write_value(
        &self,
        value: Vec<u8>,
        options: HashMap<String, OwnedValue>,
    ) -> Result<(), BluezError> {
        let kind = write_type(&options)?;
        self.core
            .write_value(&self.addr, &self.path, value, kind.as_deref())
            .await
    }

    async fn start_notify(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), BluezError> {
        self.core
            .start_notify(&self.addr, &self.path, &sender(&hdr))
            .await
    }

    async fn stop_notify(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), BluezError> {
        self.core
            .stop_notify(&self.addr, &self.path, &sender(&hdr))
            .await
    }

    async fn acquire_write(&self, _options: HashMap<String, OwnedValue>) -> Result<(), BluezError> {
        Err(BluezError::NotSupported(
            "AcquireWrite is not modelled".into(),
        ))
    }

    async fn acquire_notify(
        &self,
        _options: HashMap<String, OwnedValue>,
    ) -> Result<(), BluezError> {
        Err(BluezError::NotSupported(
            "AcquireNotify is not modelled".into(),
        ))
    }

    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.with(|c| c.uuid.clone())
    }

    #[zbus(property)]
    fn service(&self) -> OwnedObjectPath {
        object_path(&self.with(|c| c.service_path.clone()))
    }

    #[zbus(property(emits_changed_signal = "false"))]
    fn value(&self) -> Vec<u8> {
        self.with(|c| c.value.clone())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    fn notifying(&self) -> bool {
        self.with(|c| c.notifying())
    }

    #[zbus(property)]
    fn flags(&self) -> Vec<String> {
        self.with(|c| c.flags.clone())
    }

    #[zbus(property, name = "MTU")]
    fn mtu(&self) -> u16 {
        self.core.cfg.mtu
    }

    #[zbus(property)]
    fn handle(&self) -> u16 {
        self.with(|c| c.handle)
    }
}

/// `.../charXXXX/descYYYY`: `org.bluez.GattDescriptor1`, the CCCD of a characteristic.
#[derive(Debug)]
pub struct GattDescriptor1 {
    core: Arc<Core>,
    addr: String,
    chr_path: String,
}

impl GattDescriptor1 {
    /// The CCCD of the characteristic at `chr_path`.
    pub fn new(core: Arc<Core>, addr: String, chr_path: String) -> GattDescriptor1 {
        GattDescriptor1 {
            core,
            addr,
            chr_path,
        }
    }
}

#[zbus::interface(name = "org.bluez.GattDescriptor1")]
impl GattDescriptor1 {
    async fn read_value(
        &self,
        _options: HashMap<String, OwnedValue>,
    ) -> Result<Vec<u8>, BluezError> {
        self.core.read_cccd(&self.addr, &self.chr_path).await
    }

    async fn write_value(
        &self,
        _value: Vec<u8>,
        _options: HashMap<String, OwnedValue>,
    ) -> Result<(), BluezError> {
        // BlueZ keeps the CCCD to itself: StartNotify/StopNotify write it.
        Err(BluezError::NotPermitted("Write not permitted".into()))
    }

    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        CCCD_UUID.into()
    }

    #[zbus(property)]
    fn characteristic(&self) -> OwnedObjectPath {
        object_path(&self.chr_path)
    }

    #[zbus(property)]
    fn value(&self) -> Vec<u8> {
        let on = self
            .core
            .state()
            .devices
            .get(&self.addr)
            .and_then(|d| d.gatt.iter().find(|c| c.path == self.chr_path))
            .is_some_and(|c| c.notifying());
        vec![u8::from(on), 0]
    }

    #[zbus(property)]
    fn flags(&self) -> Vec<String> {
        vec!["read".into(), "write".into()]
    }

    #[zbus(property)]
    fn handle(&self) -> u16 {
        let st = self.core.state();
        st.devices
            .get(&self.addr)
            .and_then(|d| d.gatt.iter().find(|c| c.path == self.chr_path))
            .and_then(|c| c.cccd.as_ref().map(|(_, h)| *h))
            .unwrap_or(0)
    }
}
