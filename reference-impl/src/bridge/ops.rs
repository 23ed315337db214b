//! What bridged capabilities mean, without I/O: capability names and kinds, the operations a
//! CAP_INVOKE's args name, the ZCL requests each operation takes, how the device's answers
//! become a CAP_RESULT, and how discovered devices get their capability names (spec 10.3).
//!
//! | capability | kind | cluster | args | ZCL requests | result |
//! |---|---|---|---|---|---|
//! | `light.onoff[.LABEL]` | light | On/Off 0x0006 | `on`, `off` | On, Off | `on`, `off` |
//! | | | | `toggle` | Toggle, then read OnOff (0x0000) | the new state |
//! | | | | `read` | read OnOff (0x0000) | `on`, `off` |
//! | `sensor.temperature[.LABEL]` | sensor | Temperature Measurement 0x0402 | `read` | read MeasuredValue (0x0000) | °C with two decimals, `21.50` |
//!
//! Nothing here panics on any answer a device (or the line) produces: every unexpected frame
//! is either not the answer awaited ([`Reply::NotOurs`]) or a [`Failure`] with a diagnostic.

use std::fmt;

use crate::link::znp::commands::Eui64;
use crate::link::znp::zcl::{self, FrameType, Value, ZclFrame};

/// Base name of the capability of an on/off light.
pub const LIGHT_ONOFF: &str = "light.onoff";
/// Base name of the capability of a temperature sensor.
pub const SENSOR_TEMPERATURE: &str = "sensor.temperature";

/// The types of legacy device the bridge converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BridgedKind {
    /// A ZCL On/Off server (cluster 0x0006): lights, plugs.
    OnOffLight,
    /// A ZCL Temperature Measurement server (cluster 0x0402).
    TemperatureSensor,
}

impl BridgedKind {
    /// Every kind, in the order discovered devices are named.
    pub const ALL: [BridgedKind; 2] = [BridgedKind::OnOffLight, BridgedKind::TemperatureSensor];

    /// The capability name of the first device of this kind (`light.onoff`).
    pub fn base_name(self) -> &'static str {
        match self {
            BridgedKind::OnOffLight => LIGHT_ONOFF,
            BridgedKind::TemperatureSensor => SENSOR_TEMPERATURE,
        }
    }

    /// The capability kind listed in CAP_LIST (spec 3.2): `light` or `sensor`.
    pub fn capability_kind(self) -> &'static str {
        match self {
            BridgedKind::OnOffLight => "light",
            BridgedKind::TemperatureSensor => "sensor",
        }
    }

    /// The ZCL cluster the device is driven through.
    pub fn cluster(self) -> u16 {
        match self {
            BridgedKind::OnOffLight => zcl::CLUSTER_ON_OFF,
            BridgedKind::TemperatureSensor => zcl::CLUSTER_TEMPERATURE,
        }
    }

    /// The kind a capability name belongs to: a base name, or a base name followed by `.` and
    /// a non-empty label (`light.onoff.porch`). `None` for anything else.
    pub fn from_capability_name(name: &str) -> Option<BridgedKind> {
        BridgedKind::ALL.into_iter().find(|k| {
            let base = k.base_name();
            name == base
                || name
                    .strip_prefix(base)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|label| !label.is_empty())
        })
    }

    /// The kinds a node's endpoint serves, from the server clusters of its simple descriptor.
    pub fn from_clusters(input_clusters: &[u16]) -> Vec<BridgedKind> {
        BridgedKind::ALL
            .into_iter()
            .filter(|k| input_clusters.contains(&k.cluster()))
            .collect()
    }
}

/// What a CAP_INVOKE asks of a bridged device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Switch on (`on`).
    On,
    /// Switch off (`off`).
    Off,
    /// Switch over (`toggle`).
    Toggle,
    /// Report the state or the measurement (`read`).
    Read,
}

/// Args that are not an operation of the capability: the CAP_RESULT is MALFORMED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{capability} takes {expected}, not {got:?}")]
pub struct BadArgs {
    /// The capability.
    pub capability: String,
    /// The operations it takes, for the message.
    pub expected: &'static str,
    /// The args received (lossy UTF-8).
    pub got: String,
}

impl Operation {
    /// The operation `args` name for a capability of `kind` called `capability`.
    pub fn parse(kind: BridgedKind, capability: &str, args: &[u8]) -> Result<Operation, BadArgs> {
        let op = match (kind, args) {
            (BridgedKind::OnOffLight, b"on") => Some(Operation::On),
            (BridgedKind::OnOffLight, b"off") => Some(Operation::Off),
            (BridgedKind::OnOffLight, b"toggle") => Some(Operation::Toggle),
            (_, b"read") => Some(Operation::Read),
            _ => None,
        };
        op.ok_or_else(|| BadArgs {
            capability: capability.to_string(),
            expected: match kind {
                BridgedKind::OnOffLight => "\"on\", \"off\", \"toggle\" or \"read\"",
                BridgedKind::TemperatureSensor => "\"read\"",
            },
            got: String::from_utf8_lossy(&args[..args.len().min(64)]).into_owned(),
        })
    }

    /// The ZCL requests that carry the operation out, in order.
    pub fn requests(self, kind: BridgedKind) -> &'static [ZclRequest] {
        use ZclRequest::{Command, ReadAttribute};
        match (kind, self) {
            (BridgedKind::OnOffLight, Operation::On) => &[Command(zcl::CMD_ON)],
            (BridgedKind::OnOffLight, Operation::Off) => &[Command(zcl::CMD_OFF)],
            (BridgedKind::OnOffLight, Operation::Toggle) => {
                &[Command(zcl::CMD_TOGGLE), ReadAttribute(zcl::ATTR_ON_OFF)]
            }
            (BridgedKind::OnOffLight, Operation::Read) => &[ReadAttribute(zcl::ATTR_ON_OFF)],
            (BridgedKind::TemperatureSensor, _) => &[ReadAttribute(zcl::ATTR_MEASURED_VALUE)],
        }
    }

    /// The CAP_RESULT text once every request succeeded; `read` is the value of the last
    /// attribute read, if the operation read one.
    pub fn result(self, kind: BridgedKind, read: Option<&Value>) -> Result<String, Failure> {
        match (kind, self, read) {
            (BridgedKind::OnOffLight, Operation::On, _) => Ok("on".into()),
            (BridgedKind::OnOffLight, Operation::Off, _) => Ok("off".into()),
            (BridgedKind::OnOffLight, _, Some(Value::Bool(on))) => {
                Ok(if *on { "on" } else { "off" }.into())
            }
            (BridgedKind::TemperatureSensor, _, Some(Value::I16(centi))) => {
                temperature_text(*centi)
            }
            (_, _, Some(other)) => Err(Failure::Malformed(format!(
                "the attribute read is of ZCL type {:#04x}, not the type the cluster defines",
                other.type_id()
            ))),
            (_, _, None) => Err(Failure::Malformed("no attribute value was read".into())),
        }
    }
}

/// A temperature in 0.01 °C (ZCL MeasuredValue) as text with two decimals: `21.50`, `-3.05`.
/// 0x8000 means "no valid measurement" and is a failure.
pub fn temperature_text(centi: i16) -> Result<String, Failure> {
    if centi == i16::MIN {
        return Err(Failure::Malformed(
            "the sensor reports no valid measurement (MeasuredValue 0x8000)".into(),
        ));
    }
    let sign = if centi < 0 { "-" } else { "" };
    let abs = i32::from(centi).abs();
    Ok(format!("{sign}{}.{:02}", abs / 100, abs % 100))
}

/// One ZCL request to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZclRequest {
    /// A cluster-specific command without payload (On 0x01, Off 0x00, Toggle 0x02).
    Command(u8),
    /// Read Attributes of one attribute.
    ReadAttribute(u16),
}

impl ZclRequest {
    /// The ZCL frame with transaction sequence number `tsn`. A Default Response is asked for,
    /// so that a command's outcome is known.
    pub fn frame(self, tsn: u8) -> ZclFrame {
        match self {
            ZclRequest::Command(cmd) => {
                ZclFrame::request(FrameType::ClusterSpecific, tsn, cmd, Vec::new())
            }
            ZclRequest::ReadAttribute(attr) => ZclFrame::request(
                FrameType::Global,
                tsn,
                zcl::CMD_READ_ATTRIBUTES,
                zcl::read_attributes_payload(&[attr]),
            ),
        }
    }

    /// What the request is called in diagnostics.
    pub fn name(self) -> String {
        match self {
            ZclRequest::Command(zcl::CMD_OFF) => "Off".into(),
            ZclRequest::Command(zcl::CMD_ON) => "On".into(),
            ZclRequest::Command(zcl::CMD_TOGGLE) => "Toggle".into(),
            ZclRequest::Command(other) => format!("command {other:#04x}"),
            ZclRequest::ReadAttribute(a) => format!("Read Attributes {a:#06x}"),
        }
    }

    /// Judges a ZCL frame that came from the device on the request's cluster.
    pub fn interpret(self, tsn: u8, answer: &ZclFrame) -> Reply {
        if answer.tsn != tsn
            || answer.direction != zcl::Direction::ServerToClient
            || answer.manufacturer.is_some()
            || answer.frame_type != FrameType::Global
        {
            return Reply::NotOurs;
        }
        match (self, answer.command) {
            (_, zcl::CMD_DEFAULT_RSP) => match answer.payload.as_slice() {
                [_, status] if *status == zcl::status::SUCCESS => match self {
                    ZclRequest::Command(_) => Reply::Done(None),
                    // Success without the attribute is not an answer to a read.
                    ZclRequest::ReadAttribute(_) => Reply::Failed(Failure::Malformed(
                        "a Default Response with SUCCESS instead of the attribute".into(),
                    )),
                },
                [_, status] => Reply::Failed(Failure::ZclStatus {
                    request: self.name(),
                    status: *status,
                }),
                other => Reply::Failed(Failure::Malformed(format!(
                    "a Default Response of {} bytes (2 expected)",
                    other.len()
                ))),
            },
            (ZclRequest::ReadAttribute(attr), zcl::CMD_READ_ATTRIBUTES_RSP) => {
                match zcl::parse_read_attributes_rsp(&answer.payload) {
                    Err(e) => Reply::Failed(Failure::Malformed(e.to_string())),
                    Ok(records) => match records.into_iter().find(|r| r.attribute == attr) {
                        None => Reply::Failed(Failure::Malformed(format!(
                            "a Read Attributes Response without attribute {attr:#06x}"
                        ))),
                        Some(r) => match r.result {
                            Ok(v) => Reply::Done(Some(v)),
                            Err(status) => Reply::Failed(Failure::ZclStatus {
                                request: self.name(),
                                status,
                            }),
                        },
                    },
                }
            }
            _ => Reply::NotOurs,
        }
    }
}

/// How a frame from the device relates to the request awaited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Another transaction's frame (a late answer, a report): keep waiting.
    NotOurs,
    /// The request succeeded, with the attribute value for a read.
    Done(Option<Value>),
    /// The device refused or answered nonsense.
    Failed(Failure),
}

/// Why a bridged operation was not carried out: the CAP_RESULT is INTERNAL with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// Nothing came back in time.
    #[error("no {waiting_for} within {timeout_ms} ms")]
    Timeout {
        /// What was awaited.
        waiting_for: String,
        /// The bridge's timeout.
        timeout_ms: u64,
    },
    /// The device answered with a ZCL status other than SUCCESS.
    #[error("the device answered {request} with ZCL status {status:#04x} ({})", zcl_status_name(*status))]
    ZclStatus {
        /// The request it refused.
        request: String,
        /// The ZCL status.
        status: u8,
    },
    /// The coordinator could not deliver the request.
    #[error("the coordinator could not deliver the request: {what} status {status:#04x} ({})", af_status_name(*status))]
    Delivery {
        /// Which answer said so (`AF_DATA_REQUEST`, `AF_DATA_CONFIRM`).
        what: &'static str,
        /// The Z-Stack status.
        status: u8,
    },
    /// The device's answer does not make sense.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The coordinator or its serial line failed.
    #[error("coordinator: {0}")]
    Coordinator(String),
}

/// The spec name of a ZCL status, for diagnostics.
pub fn zcl_status_name(status: u8) -> &'static str {
    match status {
        zcl::status::SUCCESS => "SUCCESS",
        0x01 => "FAILURE",
        0x7E => "NOT_AUTHORIZED",
        zcl::status::MALFORMED_COMMAND => "MALFORMED_COMMAND",
        zcl::status::UNSUP_COMMAND => "UNSUP_COMMAND",
        0x85 => "INVALID_FIELD",
        zcl::status::UNSUPPORTED_ATTRIBUTE => "UNSUPPORTED_ATTRIBUTE",
        0x87 => "INVALID_VALUE",
        0x89 => "INSUFFICIENT_SPACE",
        0x8B => "NOT_FOUND",
        0x94 => "TIMEOUT",
        zcl::status::UNSUPPORTED_CLUSTER => "UNSUPPORTED_CLUSTER",
        _ => "unknown status",
    }
}

/// The name of a Z-Stack AF/NWK/MAC status, for diagnostics.
pub fn af_status_name(status: u8) -> &'static str {
    use crate::link::znp::commands::status;
    match status {
        status::SUCCESS => "SUCCESS",
        status::FAILURE => "FAILURE",
        status::INVALID_PARAMETER => "INVALID_PARAMETER",
        0x10 => "MEM_ERROR",
        0xA7 => "APS_NO_ACK",
        0xB7 => "APS_NOT_AUTHENTICATED",
        0xC2 => "NWK_INVALID_REQUEST",
        status::NWK_NO_ROUTE => "NWK_NO_ROUTE",
        status::MAC_NO_ACK => "MAC_NO_ACK",
        0xF0 => "MAC_TRANSACTION_EXPIRED",
        _ => "unknown status",
    }
}

/// A device the bridge exposes as a capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgedDevice {
    /// The capability name.
    pub capability: String,
    /// What it is.
    pub kind: BridgedKind,
    /// Its network address.
    pub nwk: u16,
    /// The endpoint serving the cluster.
    pub endpoint: u8,
    /// Its IEEE address, when discovery found it.
    pub ieee: Option<Eui64>,
}

impl fmt::Display for BridgedDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:#06x} endpoint {})",
            self.capability, self.nwk, self.endpoint
        )
    }
}

/// A device endpoint that ZDO discovery found, before it is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Network address.
    pub nwk: u16,
    /// IEEE address from the neighbour table.
    pub ieee: Eui64,
    /// The endpoint.
    pub endpoint: u8,
    /// What it serves.
    pub kind: BridgedKind,
}

/// Names the devices to expose: the statically configured ones keep their names; each
/// discovered one that is not also configured gets the base name of its kind, or the base name
/// followed by `.2`, `.3`... when that is taken (by `taken`, a configured device or an earlier
/// discovered one). Discovered devices are named in order of kind, IEEE address and endpoint,
/// so names do not depend on the order the network answered in. The result is sorted by name.
pub fn assign_names(
    configured: &[BridgedDevice],
    mut discovered: Vec<Discovered>,
    taken: &[String],
) -> Vec<BridgedDevice> {
    let mut names: Vec<String> = taken.to_vec();
    names.extend(configured.iter().map(|d| d.capability.clone()));
    let mut out: Vec<BridgedDevice> = configured.to_vec();
    discovered.sort_by_key(|d| (d.kind, d.ieee, d.endpoint, d.nwk));
    discovered.dedup();
    for d in discovered {
        let same =
            |c: &BridgedDevice| c.nwk == d.nwk && c.endpoint == d.endpoint && c.kind == d.kind;
        if out.iter().any(same) {
            continue;
        }
        let base = d.kind.base_name();
        let name = std::iter::once(base.to_string())
            .chain((2u32..).map(|n| format!("{base}.{n}")))
            .find(|n| !names.contains(n))
            .unwrap_or_else(|| base.to_string());
        names.push(name.clone());
        out.push(BridgedDevice {
            capability: name,
            kind: d.kind,
            nwk: d.nwk,
            endpoint: d.endpoint,
            ieee: Some(d.ieee),
        });
    }
    out.sort_by(|a, b| a.capability.cmp(&b.capability));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::znp::zcl::{read_attributes_rsp_payload, ReadAttributeRecord};

    #[test]
    fn names_map_to_kinds() {
        let k = BridgedKind::from_capability_name;
        assert_eq!(k("light.onoff"), Some(BridgedKind::OnOffLight));
        assert_eq!(k("light.onoff.porch"), Some(BridgedKind::OnOffLight));
        assert_eq!(
            k("sensor.temperature.2"),
            Some(BridgedKind::TemperatureSensor)
        );
        for bad in [
            "light",
            "light.onoff.",
            "light.onoffx",
            "sensor.temp",
            "",
            "speaker.main",
        ] {
            assert_eq!(k(bad), None, "{bad}");
        }
        assert_eq!(BridgedKind::OnOffLight.capability_kind(), "light");
        assert_eq!(BridgedKind::TemperatureSensor.capability_kind(), "sensor");
        assert_eq!(
            BridgedKind::from_clusters(&[0x0000, 0x0402, 0x0006]),
            [BridgedKind::OnOffLight, BridgedKind::TemperatureSensor]
        );
    }

    #[test]
    fn args_parse_per_kind() {
        let light = |a: &[u8]| Operation::parse(BridgedKind::OnOffLight, "light.onoff", a);
        assert_eq!(light(b"on"), Ok(Operation::On));
        assert_eq!(light(b"off"), Ok(Operation::Off));
        assert_eq!(light(b"toggle"), Ok(Operation::Toggle));
        assert_eq!(light(b"read"), Ok(Operation::Read));
        for bad in [&b"ON"[..], b"on ", b"", b"conformance", &[0xFF, 0x00]] {
            let e = light(bad).unwrap_err();
            assert!(e.to_string().contains("light.onoff takes"), "{e}");
        }
        let sensor = |a: &[u8]| Operation::parse(BridgedKind::TemperatureSensor, "s", a);
        assert_eq!(sensor(b"read"), Ok(Operation::Read));
        assert!(sensor(b"on").is_err());
    }

    #[test]
    fn operations_map_to_zcl_requests() {
        use ZclRequest::{Command, ReadAttribute};
        let l = BridgedKind::OnOffLight;
        assert_eq!(Operation::On.requests(l), [Command(zcl::CMD_ON)]);
        assert_eq!(Operation::Off.requests(l), [Command(zcl::CMD_OFF)]);
        assert_eq!(
            Operation::Toggle.requests(l),
            [Command(zcl::CMD_TOGGLE), ReadAttribute(0x0000)]
        );
        assert_eq!(Operation::Read.requests(l), [ReadAttribute(0x0000)]);
        assert_eq!(
            Operation::Read.requests(BridgedKind::TemperatureSensor),
            [ReadAttribute(zcl::ATTR_MEASURED_VALUE)]
        );
        let on = Command(zcl::CMD_ON).frame(7);
        assert_eq!(on.to_bytes(), [0x01, 7, zcl::CMD_ON]);
        let read = ReadAttribute(0x0000).frame(8);
        assert_eq!(
            read.to_bytes(),
            [0x00, 8, zcl::CMD_READ_ATTRIBUTES, 0x00, 0x00]
        );
    }

    fn answer(req: &ZclFrame, frame_type: FrameType, command: u8, payload: Vec<u8>) -> ZclFrame {
        ZclFrame::response_to(req, frame_type, command, payload)
    }

    #[test]
    fn answers_are_judged() {
        let on = ZclRequest::Command(zcl::CMD_ON);
        let req = on.frame(3);
        let ok = answer(
            &req,
            FrameType::Global,
            zcl::CMD_DEFAULT_RSP,
            vec![zcl::CMD_ON, 0],
        );
        assert_eq!(on.interpret(3, &ok), Reply::Done(None));
        assert_eq!(on.interpret(4, &ok), Reply::NotOurs, "another TSN");
        let refused = answer(
            &req,
            FrameType::Global,
            zcl::CMD_DEFAULT_RSP,
            vec![zcl::CMD_ON, 0x81],
        );
        let Reply::Failed(f) = on.interpret(3, &refused) else {
            panic!("a refusal")
        };
        assert!(
            f.to_string()
                .contains("On with ZCL status 0x81 (UNSUP_COMMAND)"),
            "{f}"
        );
        let short = answer(&req, FrameType::Global, zcl::CMD_DEFAULT_RSP, vec![]);
        assert!(matches!(
            on.interpret(3, &short),
            Reply::Failed(Failure::Malformed(_))
        ));
        let mut echo = req.clone();
        echo.tsn = 3;
        assert_eq!(
            on.interpret(3, &echo),
            Reply::NotOurs,
            "a client-to-server frame"
        );

        let read = ZclRequest::ReadAttribute(0x0000);
        let req = read.frame(9);
        let rec = |result| {
            read_attributes_rsp_payload(&[ReadAttributeRecord {
                attribute: 0,
                result,
            }])
        };
        let v = answer(
            &req,
            FrameType::Global,
            zcl::CMD_READ_ATTRIBUTES_RSP,
            rec(Ok(Value::Bool(true))),
        );
        assert_eq!(read.interpret(9, &v), Reply::Done(Some(Value::Bool(true))));
        let unsup = answer(
            &req,
            FrameType::Global,
            zcl::CMD_READ_ATTRIBUTES_RSP,
            rec(Err(0x86)),
        );
        assert!(matches!(
            read.interpret(9, &unsup),
            Reply::Failed(Failure::ZclStatus { status: 0x86, .. })
        ));
        let garbage = answer(
            &req,
            FrameType::Global,
            zcl::CMD_READ_ATTRIBUTES_RSP,
            vec![0, 0, 0, 0xEE],
        );
        assert!(matches!(
            read.interpret(9, &garbage),
            Reply::Failed(Failure::Malformed(_))
        ));
        let cluster_default = answer(&req, FrameType::Global, zcl::CMD_DEFAULT_RSP, vec![0, 0xC3]);
        assert!(matches!(
            read.interpret(9, &cluster_default),
            Reply::Failed(Failure::ZclStatus { status: 0xC3, .. })
        ));
    }

    #[test]
    fn results_are_text() {
        let l = BridgedKind::OnOffLight;
        let t = BridgedKind::TemperatureSensor;
        assert_eq!(Operation::On.result(l, None), Ok("on".into()));
        assert_eq!(Operation::Off.result(l, None), Ok("off".into()));
        assert_eq!(
            Operation::Toggle.result(l, Some(&Value::Bool(false))),
            Ok("off".into())
        );
        assert_eq!(
            Operation::Read.result(l, Some(&Value::Bool(true))),
            Ok("on".into())
        );
        assert!(Operation::Read.result(l, Some(&Value::U8(1))).is_err());
        assert!(Operation::Read.result(l, None).is_err());
        assert_eq!(
            Operation::Read.result(t, Some(&Value::I16(2150))),
            Ok("21.50".into())
        );
        assert_eq!(temperature_text(-305), Ok("-3.05".into()));
        assert_eq!(temperature_text(-5), Ok("-0.05".into()));
        assert_eq!(temperature_text(0), Ok("0.00".into()));
        assert_eq!(temperature_text(i16::MAX), Ok("327.67".into()));
        assert!(temperature_text(i16::MIN).is_err());
    }

    #[test]
    fn discovered_devices_get_stable_distinct_names() {
        let found = |nwk, ieee, kind| Discovered {
            nwk,
            ieee: Eui64(ieee),
            endpoint: 1,
            kind,
        };
        let configured = vec![BridgedDevice {
            capability: "light.onoff.porch".into(),
            kind: BridgedKind::OnOffLight,
            nwk: 0x1111,
            endpoint: 1,
            ieee: None,
        }];
        let discovered = vec![
            found(0x3333, 0x30, BridgedKind::OnOffLight),
            found(0x2222, 0x20, BridgedKind::TemperatureSensor),
            found(0x1111, 0x10, BridgedKind::OnOffLight), // the configured one
            found(0x4444, 0x05, BridgedKind::OnOffLight),
        ];
        let names = |v: Vec<BridgedDevice>| {
            v.into_iter()
                .map(|d| (d.capability, d.nwk))
                .collect::<Vec<_>>()
        };
        let out = assign_names(
            &configured,
            discovered.clone(),
            &["light.onoff".to_string()],
        );
        assert_eq!(
            names(out),
            [
                ("light.onoff.2".to_string(), 0x4444),
                ("light.onoff.3".to_string(), 0x3333),
                ("light.onoff.porch".to_string(), 0x1111),
                ("sensor.temperature".to_string(), 0x2222),
            ]
        );
        let mut reversed = discovered;
        reversed.reverse();
        assert_eq!(
            names(assign_names(&[], reversed.clone(), &[])),
            names(assign_names(&[], reversed.into_iter().rev().collect(), &[]))
        );
    }
}
