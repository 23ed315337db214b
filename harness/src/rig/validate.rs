//! Loading and validating a rig: every check that can be made without touching hardware, each
//! failure an error naming the file, line, key path, the problem and what to write instead.

use super::launch::{valid_helper_name, LaunchVars};
use super::schema::{
    Control, ControlEndpoint, ControlKind, Dut, DutKind, IntOrTemplate, IpEndpoint, Launch, Rig,
    SerialLink,
};
use super::source::{key, parse_simple_path, Seg, Source};
use super::{RigError, DEFAULT_BAUD};
use crate::pics::Pics;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

impl Control {
    /// Parses the address for the kind. Errors say what is wrong and what to write instead;
    /// a loaded [`Rig`] has already passed this check.
    pub fn endpoint(&self) -> Result<ControlEndpoint, String> {
        match self.kind {
            ControlKind::Tcp => {
                let Some(addr) = &self.address else {
                    return Err(
                        "kind \"tcp\" needs `address = \"host:port\"`, e.g. \"127.0.0.1:7000\""
                            .into(),
                    );
                };
                if self.baud.is_some() {
                    return Err("`baud` only applies to kind \"serial\"; remove it".into());
                }
                parse_host_port(addr).map(ControlEndpoint::Tcp)
            }
            ControlKind::Serial => {
                let Some(addr) = self.address.as_deref().filter(|a| !a.trim().is_empty()) else {
                    return Err(
                        "kind \"serial\" needs `address` = a device path, e.g. \"/dev/ttyUSB1\""
                            .into(),
                    );
                };
                let baud = self.baud.unwrap_or(DEFAULT_BAUD);
                check_baud(baud)?;
                Ok(ControlEndpoint::Serial(SerialLink {
                    path: PathBuf::from(addr),
                    baud,
                }))
            }
            ControlKind::Stdio | ControlKind::None => {
                if self.address.is_some() || self.baud.is_some() {
                    return Err(format!(
                        "kind \"{}\" takes no `address` or `baud`; remove them",
                        if self.kind == ControlKind::Stdio {
                            "stdio"
                        } else {
                            "none"
                        }
                    ));
                }
                Ok(if self.kind == ControlKind::Stdio {
                    ControlEndpoint::Stdio
                } else {
                    ControlEndpoint::None
                })
            }
        }
    }
}

pub(super) fn parse_host_port(addr: &str) -> Result<IpEndpoint, String> {
    let bad = || {
        format!("address {addr:?} is not `host:port` (e.g. \"127.0.0.1:7000\" or \"[::1]:7000\")")
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').ok_or_else(bad)?
    } else if host.contains(':') {
        return Err(bad());
    } else {
        host
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok(IpEndpoint {
        host: host.to_owned(),
        port,
    })
}

pub(super) fn check_baud(baud: u32) -> Result<(), String> {
    if baud == 0 || baud > 12_000_000 {
        return Err(format!(
            "baud {baud} is not a usable rate; use the device's rate, e.g. 115200"
        ));
    }
    Ok(())
}

impl Rig {
    /// Reads, parses and validates a rig file.
    pub fn load(path: impl AsRef<Path>) -> Result<Rig, RigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| RigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Rig::parse(&text, path)
    }

    /// Parses and validates rig text; `path` is used in messages and [`Rig::path`].
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Rig, RigError> {
        let path = path.as_ref();
        let source = Source::new(path, text);
        let mut rig: Rig = toml::from_str(text).map_err(|e| source.invalid_from_toml(&e))?;
        rig.path = path.to_owned();
        rig.validate(&source)?;
        Ok(rig)
    }

    /// The file the rig was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The DUT called `name`.
    pub fn dut(&self, name: &str) -> Result<&Dut, RigError> {
        self.duts
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| RigError::UnknownDut {
                path: self.path.clone(),
                name: Some(name.to_owned()),
                known: self.dut_names(),
            })
    }

    /// The DUT called `name`; when `name` is `None`, the only DUT, or the only one that is not
    /// another's `time_partner` (PIXIT).
    pub fn select_dut(&self, name: Option<&str>) -> Result<&Dut, RigError> {
        match (name, self.duts.as_slice()) {
            (Some(n), _) => self.dut(n),
            (None, [only]) => Ok(only),
            // A DUT that is only there as another's time partner is not what a run certifies.
            (None, duts) => match duts
                .iter()
                .filter(|d| {
                    !duts
                        .iter()
                        .any(|o| o.pixit.time_partner.as_deref() == Some(d.name.as_str()))
                })
                .collect::<Vec<_>>()
                .as_slice()
            {
                [only] => Ok(only),
                _ => Err(RigError::UnknownDut {
                    path: self.path.clone(),
                    name: None,
                    known: self.dut_names(),
                }),
            },
        }
    }

    pub(super) fn dut_names(&self) -> Vec<String> {
        self.duts.iter().map(|d| d.name.clone()).collect()
    }

    /// The PICS of DUT `dut`, refusing (with [`RigError::NoPics`]) when it has none: a run must
    /// not start against a DUT that claims nothing.
    pub fn require_pics(&self, dut: &str) -> Result<Pics, RigError> {
        let d = self.dut(dut)?;
        match &d.pics {
            Some(p) if !p.is_empty() => Ok(p.clone()),
            other => Err(RigError::NoPics {
                path: self.path.clone(),
                dut: d.name.clone(),
                empty: other.is_some(),
            }),
        }
    }

    /// SHA-256 (lower-case hex) of the canonical serialisation (compact JSON of the parsed rig):
    /// comments, key order and formatting do not change it; any value does.
    pub fn hash(&self) -> String {
        // The rig is plain data (strings, numbers, maps): serialising cannot fail.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }

    pub(super) fn validate(&self, src: &Source<'_>) -> Result<(), RigError> {
        if self.rig.name.trim().is_empty() {
            return Err(src.invalid(
                &[key("rig"), key("name")],
                "the rig name is empty; give it a short name, e.g. \"lab-bench-3\"",
            ));
        }
        if self.duts.is_empty() {
            return Err(src.invalid(
                &[key("rig")],
                "the rig has no [[dut]] entries; add one (see rigs/example-lab.toml)",
            ));
        }
        let mut seen = BTreeMap::new();
        for (i, dut) in self.duts.iter().enumerate() {
            let at = |rest: &[&str]| {
                let mut p = vec![key("dut"), Seg::Index(i)];
                p.extend(rest.iter().map(|k| key(k)));
                p
            };
            if let Some(first) = seen.insert(dut.name.as_str(), i) {
                return Err(src.invalid(
                    &at(&["name"]),
                    format!(
                        "DUT name '{}' is already used by dut[{first}]; names must be unique",
                        dut.name
                    ),
                ));
            }
            dut.validate(src, &at)?;
        }
        for (i, dut) in self.duts.iter().enumerate() {
            let Some(partner) = &dut.pixit.time_partner else {
                continue;
            };
            let path = [key("dut"), Seg::Index(i), key("pixit"), key("time_partner")];
            let problem = match self.duts.iter().find(|d| &d.name == partner) {
                _ if partner == &dut.name => Some(
                    "names this DUT itself; name another [[dut]] of the rig that presents the                      same stream"
                        .to_owned(),
                ),
                None => Some(format!(
                    "names '{partner}', which is not a DUT of this rig (it has {})",
                    self.dut_names().join(", ")
                )),
                Some(p) if p.udp.is_none() => Some(format!(
                    "names '{partner}', which has no [dut.udp]: the tester reaches the partner                      over UDP"
                )),
                Some(p) if p.control.kind == ControlKind::None => Some(format!(
                    "names '{partner}', which has no control channel: the tester reads the                      partner's presentation events through it"
                )),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                return Err(src.invalid(&path, format!("time_partner {problem}")));
            }
        }
        Ok(())
    }
}

pub(super) fn valid_dut_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub(super) fn valid_ble_address(a: &str) -> bool {
    let parts: Vec<&str> = a.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

impl Dut {
    pub(super) fn validate(
        &self,
        src: &Source<'_>,
        at: &dyn Fn(&[&str]) -> Vec<Seg>,
    ) -> Result<(), RigError> {
        let virt = self.kind == DutKind::Virtual;
        if let Some(pics) = &self.pics {
            if let Some((name, _)) = pics.iter().find(|(n, _)| !crate::pics::is_known(n)) {
                let hint = match crate::pics::nearest_known(name) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => format!(
                        "the suite knows {}",
                        crate::pics::KNOWN
                            .iter()
                            .map(|(k, _)| *k)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                return Err(src.invalid(
                    &at(&["pics", name]),
                    format!(
                        "unknown PICS name `{name}`: no case would ever consult it, so the \
                         feature it means would be judged as not declared; {hint}"
                    ),
                ));
            }
        }
        if !valid_dut_name(&self.name) {
            return Err(src.invalid(
                &at(&["name"]),
                format!(
                    "DUT name {:?} is not usable in file names; use letters, digits, '.', '_' \
                     and '-' (at most 64)",
                    self.name
                ),
            ));
        }
        match (&self.launch, virt) {
            (None, true) => {
                return Err(src.invalid(
                    &at(&["kind"]),
                    "a virtual DUT needs [dut.launch] with `command = [...]`; \
                     or set kind = \"external\" for a device that is already running",
                ))
            }
            (Some(_), false) => {
                return Err(src.invalid(
                    &at(&["launch"]),
                    "[dut.launch] is only for kind = \"virtual\"; the harness does not \
                     start external devices: remove it",
                ))
            }
            _ => {}
        }
        let zero_port = |path: Vec<Seg>| {
            src.invalid(
                &path,
                "port 0 (\"pick a free port\") is only allowed on a virtual DUT; \
                 set the port the device listens on",
            )
        };
        for (table, ep) in [("udp", &self.udp), ("tcp", &self.tcp)] {
            if let Some(ep) = ep {
                if ep.host.trim().is_empty() {
                    return Err(src.invalid(
                        &at(&[table, "host"]),
                        "host is empty; give the DUT's IP address or host name",
                    ));
                }
                if ep.port == 0 && !virt {
                    return Err(zero_port(at(&[table, "port"])));
                }
            }
        }
        if let Some(d) = &self.discovery {
            if !d.group.is_multicast() {
                return Err(src.invalid(
                    &at(&["discovery", "group"]),
                    format!(
                        "{} is not an IPv4 multicast address; use the default 224.0.1.187",
                        d.group
                    ),
                ));
            }
            if !d.group_v6.is_multicast() {
                return Err(src.invalid(
                    &at(&["discovery", "group_v6"]),
                    format!(
                        "{} is not an IPv6 multicast address; use the default ff02::fd",
                        d.group_v6
                    ),
                ));
            }
            if d.port == 0 && !virt {
                return Err(zero_port(at(&["discovery", "port"])));
            }
            if d.interface.as_deref().is_some_and(|i| i.trim().is_empty()) {
                return Err(src.invalid(
                    &at(&["discovery", "interface"]),
                    "interface is empty; name one (e.g. \"eth0\") or remove the key",
                ));
            }
        }
        if let Some(s) = &self.serial {
            if s.path.as_os_str().is_empty() {
                return Err(src.invalid(
                    &at(&["serial", "path"]),
                    "serial path is empty; give the device, e.g. \"/dev/ttyUSB0\"",
                ));
            }
            softbus::link::serial::SerialAddr::parse(&s.path.to_string_lossy())
                .map_err(|e| src.invalid(&at(&["serial", "path"]), e.to_string()))?;
            check_baud(s.baud).map_err(|p| src.invalid(&at(&["serial", "baud"]), p))?;
        }
        if let Some(b) = &self.ble {
            match (&b.address, &b.name) {
                (None, None) => {
                    return Err(src.invalid(
                        &at(&["ble"]),
                        "[dut.ble] needs `address = \"AA:BB:CC:DD:EE:FF\"` or `name = \"...\"`",
                    ))
                }
                (Some(a), _) if !valid_ble_address(a) => {
                    return Err(src.invalid(
                        &at(&["ble", "address"]),
                        format!(
                            "BLE address {a:?} is not six hex pairs separated by ':', \
                             e.g. \"C0:FF:EE:12:34:56\""
                        ),
                    ))
                }
                (_, Some(n)) if n.trim().is_empty() => {
                    return Err(src.invalid(
                        &at(&["ble", "name"]),
                        "BLE name is empty; give the advertised name or remove the key",
                    ))
                }
                _ => {}
            }
        }
        match self.control.endpoint() {
            Err(problem) => {
                let k = if self.control.address.is_some() {
                    "address"
                } else {
                    "kind"
                };
                return Err(src.invalid(&at(&["control", k]), problem));
            }
            Ok(ControlEndpoint::Tcp(ep)) if ep.port == 0 && !virt => {
                return Err(zero_port(at(&["control", "address"])))
            }
            Ok(ControlEndpoint::Stdio) if !virt => {
                return Err(src.invalid(
                    &at(&["control", "kind"]),
                    "kind = \"stdio\" needs a process the harness launches (a virtual DUT); \
                     use \"tcp\" or \"serial\" for an external device",
                ))
            }
            Ok(_) => {}
        }
        if let Some(c) = &self.capture {
            if c.interface.trim().is_empty() {
                return Err(src.invalid(
                    &at(&["capture", "interface"]),
                    "capture interface is empty; name one (e.g. \"eth0\", \"lo\") \
                     or remove [dut.capture]",
                ));
            }
        }
        if let Some(z) = &self.zigbee {
            if z.radio.trim().is_empty() {
                return Err(src.invalid(
                    &at(&["zigbee", "radio"]),
                    "radio is empty; give the tester's Zigbee stick, e.g. \"/dev/ttyUSB0\"",
                ));
            }
            if !z.radio.contains('{') {
                softbus::link::serial::SerialAddr::parse(&z.radio)
                    .map_err(|e| src.invalid(&at(&["zigbee", "radio"]), e.to_string()))?;
            }
            check_baud(z.baud).map_err(|p| src.invalid(&at(&["zigbee", "baud"]), p))?;
            if !z.address.is_template() {
                match z.address.parse_literal() {
                    Ok(n) if n <= 0xFFF7 => {}
                    Ok(n) => {
                        return Err(src.invalid(
                            &at(&["zigbee", "address"]),
                            format!(
                                "{n:#x} is not a unicast Zigbee network address (0x0000..=0xFFF7)"
                            ),
                        ))
                    }
                    Err(p) => return Err(src.invalid(&at(&["zigbee", "address"]), p)),
                }
            }
        }
        if self.udp.is_none()
            && self.tcp.is_none()
            && self.serial.is_none()
            && self.ble.is_none()
            && self.zigbee.is_none()
        {
            return Err(src.invalid(
                &at(&["name"]),
                format!(
                    "DUT '{}' has no transport; add [dut.udp], [dut.tcp], [dut.zigbee], [dut.serial] or [dut.ble]",
                    self.name
                ),
            ));
        }
        self.pixit.validate(src, at)?;
        if let Some(launch) = &self.launch {
            self.validate_launch(launch, src, at)?;
        }
        Ok(())
    }

    pub(super) fn validate_launch(
        &self,
        launch: &Launch,
        src: &Source<'_>,
        at: &dyn Fn(&[&str]) -> Vec<Seg>,
    ) -> Result<(), RigError> {
        if launch.command.first().is_none_or(|c| c.trim().is_empty()) {
            return Err(src.invalid(
                &at(&["launch", "command"]),
                "the launch command is empty; give the program and its arguments, \
                 e.g. [\"{softbusd}\", \"--config\", \"{config}\"]",
            ));
        }
        let mut names = BTreeMap::new();
        for (i, h) in launch.before.iter().enumerate() {
            let idx = |k: &str| {
                let mut p = at(&["launch", "before"]);
                p.push(Seg::Index(i));
                p.push(key(k));
                p
            };
            if !valid_helper_name(&h.name) {
                return Err(src.invalid(
                    &idx("name"),
                    format!(
                        "helper name {:?} is not usable as a placeholder prefix; use lower-case \
                         letters and digits, starting with a letter (e.g. \"znp\")",
                        h.name
                    ),
                ));
            }
            if let Some(first) = names.insert(h.name.as_str(), i) {
                return Err(src.invalid(
                    &idx("name"),
                    format!(
                        "helper name '{}' is already used by launch.before[{first}]; names must \
                         be unique",
                        h.name
                    ),
                ));
            }
            if h.command.first().is_none_or(|c| c.trim().is_empty()) {
                return Err(src.invalid(
                    &idx("command"),
                    "the helper's command is empty; give the program and its arguments, e.g. \
                     [\"{znp_emulator}\", \"--exit-on-stdin-eof\"]",
                ));
            }
        }
        // Render with stand-in values: this checks placeholders (names, availability, syntax)
        // both with and without a fault, each helper seeing only the helpers before it.
        for fault in [Some("stand-in".to_owned()), None] {
            let mut vars = LaunchVars {
                softbusd: PathBuf::from("softbusd"),
                znp_emulator: PathBuf::from("znp-emulator"),
                vbluez: PathBuf::from("vbluez"),
                config: PathBuf::from("config.toml"),
                fault,
                workdir: PathBuf::from("work"),
                helpers: BTreeMap::new(),
                overrides: Vec::new(),
            };
            for (i, h) in launch.before.iter().enumerate() {
                if let Err(RigError::Template {
                    key: k, problem, ..
                }) = self.helper_command(i, &vars)
                {
                    let mut p = at(&[]);
                    p.extend(parse_simple_path(&k));
                    return Err(src.invalid(&p, problem));
                }
                vars.helpers.insert(h.name.clone(), None);
            }
            for (i, arg) in launch.command.iter().enumerate() {
                if let Err(problem) = self.render_str(arg, &vars) {
                    let mut p = at(&["launch", "command"]);
                    p.push(Seg::Index(i));
                    return Err(src.invalid(&p, problem));
                }
            }
            if let Err(RigError::Template {
                key: k, problem, ..
            }) = self.launch_config(&vars)
            {
                let mut p = at(&[]);
                p.extend(parse_simple_path(&k));
                return Err(src.invalid(&p, problem));
            }
            // Link settings may name what helpers announce; the names must exist.
            let mut templates: Vec<(&[&str], &str)> = Vec::new();
            if let Some(z) = &self.zigbee {
                templates.push((&["zigbee", "radio"], &z.radio));
                if let IntOrTemplate::Text(t) = &z.address {
                    templates.push((&["zigbee", "address"], t));
                }
            }
            if let Some(b) = &self.ble {
                for (k, v) in [("name", &b.name), ("dbus", &b.dbus)] {
                    if let Some(v) = v {
                        templates.push((
                            if k == "name" {
                                &["ble", "name"]
                            } else {
                                &["ble", "dbus"]
                            },
                            v,
                        ));
                    }
                }
            }
            for (path, t) in templates {
                if let Err(problem) = self.render_str(t, &vars) {
                    return Err(src.invalid(&at(path), problem));
                }
            }
        }
        Ok(())
    }
}
