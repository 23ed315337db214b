//! The legacy ZCL devices behind the coordinator (an on/off light and a temperature sensor):
//! what each answers to the ZCL frames an `AF_DATA_REQUEST` carries to it.

use softbus::link::znp::commands::{logical_type, AfDataRequestReq, Eui64, SimpleDescriptor};
use softbus::link::znp::zcl::{self, FrameType, ReadAttributeRecord, Value, ZclFrame};
use std::time::Duration;

/// Home Automation device ID of an On/Off Light.
pub(super) const HA_ON_OFF_LIGHT: u16 = 0x0100;

/// Home Automation device ID of a Temperature Sensor.
pub(super) const HA_TEMPERATURE_SENSOR: u16 = 0x0302;

/// A simulated device as a host addresses it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceSummary {
    /// `light` or `temperature`.
    pub name: &'static str,
    /// Network address.
    pub nwk: u16,
    /// IEEE address, as Zigbee tools print it.
    pub ieee: String,
    /// The endpoint its clusters are on.
    pub endpoint: u8,
    /// Server clusters.
    pub clusters: Vec<u16>,
}

/// What a simulated device is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum DeviceKind {
    Light { on: bool },
    TemperatureSensor,
}

/// A legacy ZCL device in the simulated network.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SimDevice {
    pub(super) name: &'static str,
    pub(super) model: &'static str,
    pub(super) nwk: u16,
    pub(super) ieee: Eui64,
    pub(super) endpoint: u8,
    pub(super) lqi: u8,
    pub(super) kind: DeviceKind,
}

impl SimDevice {
    /// The Zigbee logical type: lights are routers, the sensor an end device.
    pub(super) fn logical_type(&self) -> u8 {
        match self.kind {
            DeviceKind::Light { .. } => logical_type::ROUTER,
            DeviceKind::TemperatureSensor => logical_type::END_DEVICE,
        }
    }

    /// The simple descriptor of its endpoint.
    pub(super) fn simple_descriptor(&self) -> SimpleDescriptor {
        SimpleDescriptor {
            endpoint: self.endpoint,
            profile_id: zcl::PROFILE_HA,
            device_id: match self.kind {
                DeviceKind::Light { .. } => HA_ON_OFF_LIGHT,
                DeviceKind::TemperatureSensor => HA_TEMPERATURE_SENSOR,
            },
            device_version: 1,
            input_clusters: self.clusters().to_vec(),
            output_clusters: Vec::new(),
        }
    }

    pub(super) fn clusters(&self) -> [u16; 2] {
        match self.kind {
            DeviceKind::Light { .. } => [zcl::CLUSTER_BASIC, zcl::CLUSTER_ON_OFF],
            DeviceKind::TemperatureSensor => [zcl::CLUSTER_BASIC, zcl::CLUSTER_TEMPERATURE],
        }
    }

    /// An attribute's value, or the ZCL status why not. `uptime` drives the sensor's reading.
    pub(super) fn attribute(
        &self,
        cluster: u16,
        attribute: u16,
        uptime: Duration,
    ) -> Result<Value, u8> {
        match (cluster, attribute, &self.kind) {
            (zcl::CLUSTER_BASIC, 0x0000, _) => Ok(Value::U8(8)), // ZCLVersion
            (zcl::CLUSTER_BASIC, 0x0004, _) => Ok(Value::String("SoftBus".into())),
            (zcl::CLUSTER_BASIC, 0x0005, _) => Ok(Value::String(self.model.into())),
            (zcl::CLUSTER_BASIC, 0x0007, DeviceKind::Light { .. }) => Ok(Value::Enum8(0x01)),
            (zcl::CLUSTER_BASIC, 0x0007, _) => Ok(Value::Enum8(0x03)), // battery
            (zcl::CLUSTER_ON_OFF, zcl::ATTR_ON_OFF, DeviceKind::Light { on }) => {
                Ok(Value::Bool(*on))
            }
            (zcl::CLUSTER_TEMPERATURE, zcl::ATTR_MEASURED_VALUE, DeviceKind::TemperatureSensor) => {
                Ok(Value::I16(temperature_centi(uptime)))
            }
            (
                zcl::CLUSTER_TEMPERATURE,
                zcl::ATTR_MIN_MEASURED_VALUE,
                DeviceKind::TemperatureSensor,
            ) => Ok(Value::I16(-4_000)),
            (
                zcl::CLUSTER_TEMPERATURE,
                zcl::ATTR_MAX_MEASURED_VALUE,
                DeviceKind::TemperatureSensor,
            ) => Ok(Value::I16(12_500)),
            _ => Err(zcl::status::UNSUPPORTED_ATTRIBUTE),
        }
    }

    /// Acts on the ZCL frame an `AF_DATA_REQUEST` carries; the answer, if one is due. No
    /// Default Response answers a broadcast (ZCL forbids it); a Read Attributes Response does.
    pub(super) fn handle(
        &mut self,
        af: &AfDataRequestReq,
        broadcast: bool,
        uptime: Duration,
    ) -> Option<ZclFrame> {
        if af.dst_endpoint != self.endpoint && af.dst_endpoint != 0xFF {
            return None; // no such endpoint: the APS layer drops it
        }
        let (cluster, data) = (af.cluster_id, &af.data);
        let req = ZclFrame::parse(data).ok()?;
        if req.direction != zcl::Direction::ClientToServer || req.manufacturer.is_some() {
            return None;
        }
        let default_rsp = |st: u8| {
            if broadcast {
                return None;
            }
            Some(ZclFrame::response_to(
                &req,
                FrameType::Global,
                zcl::CMD_DEFAULT_RSP,
                zcl::default_rsp_payload(req.command, st),
            ))
        };
        if !self.clusters().contains(&cluster) {
            return default_rsp(zcl::status::UNSUPPORTED_CLUSTER);
        }
        match (req.frame_type, req.command) {
            (FrameType::Global, zcl::CMD_READ_ATTRIBUTES) => {
                let Ok(ids) = zcl::parse_read_attributes(&req.payload) else {
                    return default_rsp(zcl::status::MALFORMED_COMMAND);
                };
                let records: Vec<ReadAttributeRecord> = ids
                    .into_iter()
                    .map(|a| ReadAttributeRecord {
                        attribute: a,
                        result: self.attribute(cluster, a, uptime),
                    })
                    .collect();
                Some(ZclFrame::response_to(
                    &req,
                    FrameType::Global,
                    zcl::CMD_READ_ATTRIBUTES_RSP,
                    zcl::read_attributes_rsp_payload(&records),
                ))
            }
            (FrameType::Global, _) => default_rsp(zcl::status::UNSUP_COMMAND),
            (FrameType::ClusterSpecific, cmd) => match (&mut self.kind, cluster) {
                (DeviceKind::Light { on }, zcl::CLUSTER_ON_OFF) if cmd <= zcl::CMD_TOGGLE => {
                    *on = match cmd {
                        zcl::CMD_OFF => false,
                        zcl::CMD_ON => true,
                        _ => !*on,
                    };
                    if req.disable_default_response {
                        None
                    } else {
                        default_rsp(zcl::status::SUCCESS)
                    }
                }
                _ => default_rsp(zcl::status::UNSUP_COMMAND),
            },
        }
    }
}

/// The sensor's reading in 0.01 °C: 21.50 °C with a slow ±0.25 °C swing (10-minute period).
pub(super) fn temperature_centi(uptime: Duration) -> i16 {
    let phase = uptime.as_secs_f64() / 600.0 * std::f64::consts::TAU;
    (2_150.0 + 25.0 * phase.sin()).round() as i16
}
