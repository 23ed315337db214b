//! Launching a DUT and its helpers: the placeholders of launch commands and config templates,
//! and rendering them from the run's [`LaunchVars`] and the helpers' announcements.

use super::schema::{
    BleResolved, ControlEndpoint, Dut, Helper, IntOrTemplate, Launch, ZigbeeResolved,
};
use super::source::display_key;
use super::{RigError, PLACEHOLDERS};
use crate::pics::Pics;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Whether `name` is usable as a helper name (and so as a placeholder prefix).
pub(super) fn valid_helper_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// The placeholders a helper's announcement defines: `{<helper>_<field>}` for each scalar
/// field, nested objects joined with `_`; arrays and nulls define none.
pub fn helper_placeholders(
    helper: &str,
    announcement: &serde_json::Value,
) -> BTreeMap<String, HelperValue> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, HelperValue>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    walk(&format!("{prefix}_{k}"), v, out);
                }
            }
            serde_json::Value::String(s) => {
                out.insert(prefix.to_owned(), HelperValue::Text(s.clone()));
            }
            serde_json::Value::Number(n) => {
                let value = match n.as_u64() {
                    Some(u) => HelperValue::Int(u),
                    None => HelperValue::Text(n.to_string()),
                };
                out.insert(prefix.to_owned(), value);
            }
            serde_json::Value::Bool(b) => {
                out.insert(prefix.to_owned(), HelperValue::Text(b.to_string()));
            }
            serde_json::Value::Array(_) | serde_json::Value::Null => {}
        }
    }
    let mut out = BTreeMap::new();
    walk(helper, announcement, &mut out);
    out
}

/// A value a helper announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperValue {
    /// Text (strings, and numbers that are not unsigned integers).
    Text(String),
    /// An unsigned integer: a string that is exactly this placeholder becomes a TOML integer.
    Int(u64),
}

/// Values for the launch placeholders that come from the run rather than the rig.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LaunchVars {
    /// Path of the `softbusd` binary (`{softbusd}`).
    pub softbusd: PathBuf,
    /// Path of the `znp-emulator` binary (`{znp_emulator}`).
    pub znp_emulator: PathBuf,
    /// Path of the harness's virtual BlueZ, `vbluez` (`{vbluez}`).
    pub vbluez: PathBuf,
    /// The helpers started so far, by name, with the placeholders their announcements define
    /// ([`helper_placeholders`]); `None` for a helper that is declared but not started (when a
    /// rig is checked at load, where any field of it renders as a stand-in).
    pub helpers: BTreeMap<String, Option<BTreeMap<String, HelperValue>>>,
    /// Path the rendered config is written to (`{config}`).
    pub config: PathBuf,
    /// The named fault to inject (`{fault}`), if any.
    pub fault: Option<String>,
    /// The DUT's working directory for this run (`{workdir}`).
    pub workdir: PathBuf,
    /// Settings laid over the rendered `[dut.launch.config]`, as dotted keys
    /// (`device.mtu` = 1024): a legal variant of the DUT's behaviour for this run.
    pub overrides: Vec<(String, toml::Value)>,
}

/// What a placeholder expands to.
pub(super) enum Subst {
    Text(String),
    /// A number: a string that is exactly this placeholder becomes a TOML integer.
    Int(u64),
    /// `{fault}` with no fault selected.
    Absent,
}

impl Dut {
    /// The DUT's PICS, empty when the table is absent.
    pub fn pics(&self) -> Pics {
        self.pics.clone().unwrap_or_default()
    }

    /// The validated control endpoint.
    pub fn control_endpoint(&self) -> Result<ControlEndpoint, RigError> {
        self.control
            .endpoint()
            .map_err(|problem| RigError::Template {
                dut: self.name.clone(),
                key: "control".into(),
                problem,
            })
    }

    pub(super) fn lookup(&self, name: &str, vars: &LaunchVars) -> Result<Subst, String> {
        let need = |what: &str, table: &str| {
            format!("placeholder {{{name}}} needs {what}, but the DUT has no {table}")
        };
        Ok(match name {
            "softbusd" => Subst::Text(vars.softbusd.display().to_string()),
            "znp_emulator" => Subst::Text(vars.znp_emulator.display().to_string()),
            "vbluez" => Subst::Text(vars.vbluez.display().to_string()),
            "config" => Subst::Text(vars.config.display().to_string()),
            "workdir" => Subst::Text(vars.workdir.display().to_string()),
            "fault" => match &vars.fault {
                Some(f) => Subst::Text(f.clone()),
                None => Subst::Absent,
            },
            "name" => Subst::Text(self.name.clone()),
            "heartbeat_interval_ms" => Subst::Int(self.pixit.heartbeat_interval_ms),
            "prompt_timeout_ms" => Subst::Int(self.pixit.prompt_timeout_ms),
            "lockout_ms" => Subst::Int(self.pixit.lockout_ms),
            "pin" => Subst::Text(self.pixit.pin.clone()),
            "udp_host" | "udp_port" => {
                let udp = self
                    .udp
                    .as_ref()
                    .ok_or_else(|| need("a UDP endpoint", "[dut.udp]"))?;
                if name == "udp_host" {
                    Subst::Text(udp.host.clone())
                } else {
                    Subst::Int(udp.port.into())
                }
            }
            "tcp_host" | "tcp_port" => {
                let tcp = self
                    .tcp
                    .as_ref()
                    .ok_or_else(|| need("a TCP endpoint", "[dut.tcp]"))?;
                if name == "tcp_host" {
                    Subst::Text(tcp.host.clone())
                } else {
                    Subst::Int(tcp.port.into())
                }
            }
            "discovery_port" => Subst::Int(
                self.discovery
                    .as_ref()
                    .ok_or_else(|| need("discovery", "[dut.discovery]"))?
                    .port
                    .into(),
            ),
            "control_host" | "control_port" => match self.control.endpoint() {
                Ok(ControlEndpoint::Tcp(ep)) => {
                    if name == "control_host" {
                        Subst::Text(ep.host)
                    } else {
                        Subst::Int(ep.port.into())
                    }
                }
                _ => {
                    return Err(need(
                        "a TCP control channel",
                        "[dut.control] with kind = \"tcp\"",
                    ))
                }
            },
            other => {
                if let Some(v) = Self::helper_lookup(other, vars)? {
                    return Ok(v);
                }
                return Err(format!(
                    "unknown placeholder {{{other}}}; known: {}, and {{<helper>_<field>}} for the \
                     fields a [[dut.launch.before]] helper announces; write {{{{ and }}}} for literal braces",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        })
    }

    /// A helper's placeholder (`{znp_pty}`), when `name` starts with the name of a helper in
    /// `vars`.
    pub(super) fn helper_lookup(name: &str, vars: &LaunchVars) -> Result<Option<Subst>, String> {
        for (helper, fields) in &vars.helpers {
            if !name
                .strip_prefix(helper.as_str())
                .is_some_and(|rest| rest.starts_with('_') && rest.len() > 1)
            {
                continue;
            }
            let Some(fields) = fields else {
                return Ok(Some(Subst::Text(format!("<{name}>"))));
            };
            return match fields.get(name) {
                Some(HelperValue::Text(t)) => Ok(Some(Subst::Text(t.clone()))),
                Some(HelperValue::Int(n)) => Ok(Some(Subst::Int(*n))),
                None => Err(format!(
                    "placeholder {{{name}}}: helper '{helper}' announced no such field; it \
                     announced {}",
                    if fields.is_empty() {
                        "none".to_owned()
                    } else {
                        fields
                            .keys()
                            .map(|k| format!("{{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )),
            };
        }
        Ok(None)
    }

    /// The helpers to start before the DUT, in order (empty without `[dut.launch]`).
    pub fn helpers(&self) -> &[Helper] {
        self.launch.as_ref().map_or(&[], |l| l.before.as_slice())
    }

    /// The command of helper `index` with placeholders substituted, as for
    /// [`Dut::launch_command`]. `vars` must hold the announcements of the helpers before it.
    pub fn helper_command(&self, index: usize, vars: &LaunchVars) -> Result<Vec<String>, RigError> {
        let helper = self
            .helpers()
            .get(index)
            .ok_or_else(|| RigError::Template {
                dut: self.name.clone(),
                key: format!("launch.before[{index}]"),
                problem: "no such helper".into(),
            })?;
        self.render_argv(
            &helper.command,
            &format!("launch.before[{index}].command"),
            vars,
        )
    }

    /// Renders one template string. `Ok(None)` when it is exactly `{fault}` and no fault is set.
    pub(super) fn render_str(
        &self,
        template: &str,
        vars: &LaunchVars,
    ) -> Result<Option<Subst>, String> {
        let pieces = split_template(template)?;
        if let [Piece::Placeholder(p)] = pieces.as_slice() {
            return match self.lookup(p, vars)? {
                Subst::Absent => Ok(None),
                other => Ok(Some(other)),
            };
        }
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Literal(l) => out.push_str(&l),
                Piece::Placeholder(p) => match self.lookup(&p, vars)? {
                    Subst::Text(t) => out.push_str(&t),
                    Subst::Int(n) => out.push_str(&n.to_string()),
                    Subst::Absent => return Ok(None),
                },
            }
        }
        Ok(Some(Subst::Text(out)))
    }

    /// The launch command with placeholders substituted (see [`Launch::command`]).
    /// Errors if the DUT has no `[dut.launch]`.
    pub fn launch_command(&self, vars: &LaunchVars) -> Result<Vec<String>, RigError> {
        let launch = self.launch_or_err()?;
        self.render_argv(&launch.command, "launch.command", vars)
    }

    /// One string of the rig with its placeholders filled in (`key` names it in errors).
    pub fn render_text(
        &self,
        template: &str,
        key: &str,
        vars: &LaunchVars,
    ) -> Result<String, RigError> {
        match self.render_str(template, vars) {
            Ok(Some(Subst::Text(t))) => Ok(t),
            Ok(Some(Subst::Int(n))) => Ok(n.to_string()),
            Ok(None | Some(Subst::Absent)) => Err(RigError::Template {
                dut: self.name.clone(),
                key: key.to_owned(),
                problem: format!("{template:?} renders to nothing"),
            }),
            Err(problem) => Err(RigError::Template {
                dut: self.name.clone(),
                key: key.to_owned(),
                problem,
            }),
        }
    }

    /// `[dut.zigbee]` with placeholders filled in from `vars` (after the helpers started).
    pub fn zigbee_resolved(&self, vars: &LaunchVars) -> Result<Option<ZigbeeResolved>, RigError> {
        let Some(z) = &self.zigbee else {
            return Ok(None);
        };
        let radio = self.render_text(&z.radio, "zigbee.radio", vars)?;
        let address = match &z.address {
            IntOrTemplate::Int(n) => IntOrTemplate::Int(*n),
            IntOrTemplate::Text(t) => {
                IntOrTemplate::Text(self.render_text(t, "zigbee.address", vars)?)
            }
        };
        let address = address
            .parse_literal()
            .ok()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n <= 0xFFF7)
            .ok_or_else(|| RigError::Template {
                dut: self.name.clone(),
                key: "zigbee.address".into(),
                problem: format!("{address:?} is not a unicast Zigbee network address"),
            })?;
        Ok(Some(ZigbeeResolved {
            radio,
            baud: z.baud,
            address,
        }))
    }

    /// `[dut.ble]` with placeholders filled in from `vars` (after the helpers started).
    pub fn ble_resolved(&self, vars: &LaunchVars) -> Result<Option<BleResolved>, RigError> {
        let Some(b) = &self.ble else {
            return Ok(None);
        };
        let r = |v: &Option<String>, key: &str| -> Result<Option<String>, RigError> {
            v.as_deref()
                .map(|t| self.render_text(t, key, vars))
                .transpose()
        };
        Ok(Some(BleResolved {
            address: b.address.clone(),
            name: r(&b.name, "ble.name")?,
            dbus: r(&b.dbus, "ble.dbus")?,
            adapter: b.adapter.clone(),
        }))
    }

    pub(super) fn render_argv(
        &self,
        command: &[String],
        key: &str,
        vars: &LaunchVars,
    ) -> Result<Vec<String>, RigError> {
        let mut out: Vec<String> = Vec::with_capacity(command.len());
        let mut prev_was_literal_option = false;
        for (i, arg) in command.iter().enumerate() {
            let rendered = self
                .render_str(arg, vars)
                .map_err(|problem| RigError::Template {
                    dut: self.name.clone(),
                    key: format!("{key}[{i}]"),
                    problem,
                })?;
            match rendered {
                Some(Subst::Text(t)) => {
                    prev_was_literal_option = t.starts_with('-') && !t.contains('=');
                    out.push(t);
                }
                Some(Subst::Int(n)) => {
                    prev_was_literal_option = false;
                    out.push(n.to_string());
                }
                Some(Subst::Absent) | None => {
                    if arg == "{fault}" && prev_was_literal_option {
                        out.pop();
                    }
                    prev_was_literal_option = false;
                }
            }
        }
        Ok(out)
    }

    /// The config file text (TOML) rendered from `[dut.launch.config]`, or `None` when the DUT
    /// has no config template.
    pub fn launch_config(&self, vars: &LaunchVars) -> Result<Option<String>, RigError> {
        let launch = self.launch_or_err()?;
        let Some(template) = &launch.config else {
            return Ok(None);
        };
        let mut rendered = self.render_table(template, vars, "launch.config")?;
        for (key, value) in &vars.overrides {
            set_dotted(&mut rendered, key, value.clone()).map_err(|problem| {
                RigError::Template {
                    dut: self.name.clone(),
                    key: format!("launch.config.{key}"),
                    problem,
                }
            })?;
        }
        toml::to_string(&rendered)
            .map(Some)
            .map_err(|e| RigError::Template {
                dut: self.name.clone(),
                key: "launch.config".into(),
                problem: format!("cannot write the rendered config as TOML: {e}"),
            })
    }

    pub(super) fn launch_or_err(&self) -> Result<&Launch, RigError> {
        self.launch.as_ref().ok_or_else(|| RigError::Template {
            dut: self.name.clone(),
            key: "launch".into(),
            problem: "the DUT has no [dut.launch] table; only virtual DUTs are launched".into(),
        })
    }

    pub(super) fn render_table(
        &self,
        table: &toml::Table,
        vars: &LaunchVars,
        key: &str,
    ) -> Result<toml::Table, RigError> {
        let mut out = toml::Table::new();
        for (k, v) in table {
            let child_key = format!("{key}.{}", display_key(k));
            if let Some(v) = self.render_value(v, vars, &child_key)? {
                out.insert(k.clone(), v);
            }
        }
        Ok(out)
    }

    pub(super) fn render_value(
        &self,
        value: &toml::Value,
        vars: &LaunchVars,
        key: &str,
    ) -> Result<Option<toml::Value>, RigError> {
        Ok(match value {
            toml::Value::String(s) => {
                match self
                    .render_str(s, vars)
                    .map_err(|problem| RigError::Template {
                        dut: self.name.clone(),
                        key: key.to_owned(),
                        problem,
                    })? {
                    None | Some(Subst::Absent) => None,
                    Some(Subst::Text(t)) => Some(toml::Value::String(t)),
                    Some(Subst::Int(n)) => {
                        Some(toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)))
                    }
                }
            }
            toml::Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(v) = self.render_value(item, vars, &format!("{key}[{i}]"))? {
                        out.push(v);
                    }
                }
                Some(toml::Value::Array(out))
            }
            toml::Value::Table(t) => Some(toml::Value::Table(self.render_table(t, vars, key)?)),
            other => Some(other.clone()),
        })
    }
}

pub(super) enum Piece {
    Literal(String),
    Placeholder(String),
}

pub(super) fn split_template(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                        _ => {
                            return Err(format!(
                                "unclosed or malformed placeholder in {s:?}; \
                                 write {{name}}, or {{{{ for a literal brace"
                            ))
                        }
                    }
                }
                if !lit.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Placeholder(name));
            }
            '}' => {
                return Err(format!(
                    "stray `}}` in {s:?}; write }}}} for a literal brace"
                ))
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Literal(lit));
    }
    Ok(pieces)
}

/// Sets `value` at the dotted `key` of `table`, creating the tables on the way.
fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|p| !p.is_empty())
        .ok_or("an empty key")?;
    let mut here = table;
    for part in parts {
        let entry = here
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        here = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a table, so `{key}` cannot be set"))?;
    }
    here.insert(last.to_owned(), value);
    Ok(())
}
