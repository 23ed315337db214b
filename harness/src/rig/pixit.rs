//! The PIXIT (`[dut.pixit]`): the implementation-specific values a DUT declares (PIN, timers,
//! limits), their defaults and their checks. The PICS are [`Pics`](crate::pics::Pics).

use super::source::{Seg, Source};
use super::RigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `[dut.pixit]`: parameters the suite needs to exercise the DUT. Every key has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pixit {
    /// The pairing PIN the DUT expects: exactly 6 ASCII digits, as a string.
    pub pin: String,
    /// Latency bound for timed cases, in milliseconds (default 20).
    pub latency_bound_ms: u64,
    /// How long one step may wait for the DUT, in milliseconds (default 5000).
    pub step_timeout_ms: u64,
    /// How long the DUT's permission prompt waits before timing out, in ms (default 10000).
    pub prompt_timeout_ms: u64,
    /// The DUT's heartbeat interval, in milliseconds (default 1000).
    pub heartbeat_interval_ms: u64,
    /// How many samples latency cases take (default 200).
    pub latency_samples: u32,
    /// How long one case may use the DUT's links in all, in milliseconds (default 300000): a
    /// case past it ends INCONC and the run goes on.
    pub case_timeout_ms: u64,
    /// How long the DUT locks pairing out after too many wrong PINs, in ms (default 30000).
    pub lockout_ms: u64,
    /// Capability kinds the DUT offers (e.g. "camera", "speaker").
    pub capabilities: Vec<String>,
    /// Service names the DUT accepts sessions for.
    pub services: Vec<String>,
    /// Bridged capabilities (spec 10.3) whose legacy device is unreachable during the run
    /// (powered off, out of range, or an address nobody has): the suite checks that their uses
    /// fail with INTERNAL. Empty (the default) leaves that check INCONC.
    pub bridge_unreachable: Vec<String>,
    /// Line speed of the serial link behind the DUT (its Zigbee coordinator), bits/s: latency
    /// cases over that link report its UART wire time as the physical floor. None: not stated.
    pub serial_baud: Option<u32>,
    /// Latency bounds that replace `latency_bound_ms` on one transport, in ms, by transport
    /// name (`{ zigbee = 150 }`): a link whose physical floor is above the general bound is
    /// judged against its own. Empty by default.
    pub transport_latency_bound_ms: BTreeMap<String, u64>,
    /// The BLE connection interval the DUT's link runs at, in microseconds (7500 for 7.5 ms):
    /// BLE latency cases report it as the physical floor (a central cannot read it from
    /// BlueZ). None: not stated.
    pub ble_connection_interval_us: Option<u64>,
    /// The largest error bound of a clock offset estimate the DUT may report (spec 17.3), µs
    /// (default 2000).
    pub time_error_bound_us: u64,
    /// Error bounds that replace `time_error_bound_us` on one transport, µs, by transport name:
    /// a slow link's round trip bounds how well a clock can be learnt over it.
    pub transport_time_error_bound_us: BTreeMap<String, u64>,
    /// Another `[[dut]]` of this rig that presents the same timed stream as this DUT, so that
    /// SB-TIME-007 can measure how far apart two devices present one message (spec 17.4). It
    /// needs `[dut.udp]` and a control channel. None (the default): that case is NA.
    pub time_partner: Option<String>,
}

impl Default for Pixit {
    fn default() -> Self {
        Pixit {
            pin: "123456".to_owned(),
            latency_bound_ms: 20,
            step_timeout_ms: 5000,
            prompt_timeout_ms: 10_000,
            heartbeat_interval_ms: 1000,
            latency_samples: 200,
            case_timeout_ms: 300_000,
            lockout_ms: 30_000,
            capabilities: Vec::new(),
            services: Vec::new(),
            bridge_unreachable: Vec::new(),
            serial_baud: None,
            transport_latency_bound_ms: BTreeMap::new(),
            ble_connection_interval_us: None,
            time_error_bound_us: 2000,
            transport_time_error_bound_us: BTreeMap::new(),
            time_partner: None,
        }
    }
}

impl Pixit {
    /// [`Pixit::latency_bound_ms`] as a duration.
    pub fn latency_bound(&self) -> Duration {
        Duration::from_millis(self.latency_bound_ms)
    }
    /// The latency bound on `transport` (`udp`, `zigbee`, ...): its own if the PIXIT gives
    /// one, else [`Pixit::latency_bound`].
    pub fn latency_bound_on(&self, transport: &str) -> Duration {
        self.transport_latency_bound_ms
            .get(transport)
            .map_or(self.latency_bound(), |ms| Duration::from_millis(*ms))
    }
    /// The time error bound on `transport`, µs: its own if the PIXIT gives one, else
    /// [`Pixit::time_error_bound_us`].
    pub fn time_error_bound_us_on(&self, transport: &str) -> u64 {
        self.transport_time_error_bound_us
            .get(transport)
            .copied()
            .unwrap_or(self.time_error_bound_us)
    }
    /// [`Pixit::step_timeout_ms`] as a duration.
    pub fn step_timeout(&self) -> Duration {
        Duration::from_millis(self.step_timeout_ms)
    }
    /// [`Pixit::prompt_timeout_ms`] as a duration.
    pub fn prompt_timeout(&self) -> Duration {
        Duration::from_millis(self.prompt_timeout_ms)
    }
    /// [`Pixit::heartbeat_interval_ms`] as a duration.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
    /// [`Pixit::lockout_ms`] as a duration.
    pub fn lockout(&self) -> Duration {
        Duration::from_millis(self.lockout_ms)
    }
}

impl Pixit {
    pub(super) fn validate(
        &self,
        src: &Source<'_>,
        at: &dyn Fn(&[&str]) -> Vec<Seg>,
    ) -> Result<(), RigError> {
        if self.pin.len() != 6 || !self.pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(src.invalid(
                &at(&["pixit", "pin"]),
                format!(
                    "PIN {:?} is not 6 digits; write it as a quoted string, e.g. pin = \"123456\"",
                    self.pin
                ),
            ));
        }
        for (k, v) in [
            ("latency_bound_ms", self.latency_bound_ms),
            ("step_timeout_ms", self.step_timeout_ms),
            ("prompt_timeout_ms", self.prompt_timeout_ms),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("lockout_ms", self.lockout_ms),
            ("latency_samples", u64::from(self.latency_samples)),
        ] {
            if v == 0 {
                return Err(src.invalid(
                    &at(&["pixit", k]),
                    format!("{k} must be greater than 0; remove it to use the default"),
                ));
            }
        }
        const HOUR_MS: u64 = 3_600_000;
        for (k, v) in [
            ("latency_bound_ms", self.latency_bound_ms),
            ("step_timeout_ms", self.step_timeout_ms),
            ("prompt_timeout_ms", self.prompt_timeout_ms),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("lockout_ms", self.lockout_ms),
        ] {
            if v > HOUR_MS {
                return Err(src.invalid(
                    &at(&["pixit", k]),
                    format!("{k} = {v} is over an hour; the value is in milliseconds"),
                ));
            }
        }
        if self.case_timeout_ms < 1_000 {
            return Err(src.invalid(
                &at(&["pixit", "case_timeout_ms"]),
                "case_timeout_ms under 1000 leaves a case no time; give milliseconds (default 300000)",
            ));
        }
        if self.latency_samples > 1_000_000 {
            return Err(src.invalid(
                &at(&["pixit", "latency_samples"]),
                "latency_samples is over 1000000; a few hundred give stable percentiles",
            ));
        }
        if self.time_error_bound_us == 0 {
            return Err(src.invalid(
                &at(&["pixit", "time_error_bound_us"]),
                "a time error bound of 0 µs cannot be met; give microseconds (default 2000)",
            ));
        }
        for (t, us) in &self.transport_time_error_bound_us {
            if !["udp", "tcp", "zigbee", "ble"].contains(&t.as_str()) {
                return Err(src.invalid(
                    &at(&["pixit", "transport_time_error_bound_us", t]),
                    format!("unknown transport {t:?}; one of udp, tcp, zigbee, ble"),
                ));
            }
            if *us == 0 {
                return Err(src.invalid(
                    &at(&["pixit", "transport_time_error_bound_us", t]),
                    "a time error bound of 0 µs cannot be met; give microseconds",
                ));
            }
        }
        for (t, ms) in &self.transport_latency_bound_ms {
            if !["udp", "tcp", "zigbee", "ble"].contains(&t.as_str()) {
                return Err(src.invalid(
                    &at(&["pixit", "transport_latency_bound_ms", t]),
                    format!("unknown transport {t:?}; one of udp, tcp, zigbee, ble"),
                ));
            }
            if *ms == 0 {
                return Err(src.invalid(
                    &at(&["pixit", "transport_latency_bound_ms", t]),
                    "a latency bound of 0 ms cannot be met; give milliseconds",
                ));
            }
        }
        if self
            .ble_connection_interval_us
            .is_some_and(|i| !(7_500..=4_000_000).contains(&i) || i % 1250 != 0)
        {
            return Err(src.invalid(
                &at(&["pixit", "ble_connection_interval_us"]),
                "a BLE connection interval is a multiple of 1250 µs from 7500 to 4000000",
            ));
        }
        if self.serial_baud == Some(0) {
            return Err(src.invalid(
                &at(&["pixit", "serial_baud"]),
                "serial_baud is 0; give the line speed in bits/s (e.g. 115200) or leave it out",
            ));
        }
        for (list, items) in [
            ("capabilities", &self.capabilities),
            ("services", &self.services),
            ("bridge_unreachable", &self.bridge_unreachable),
        ] {
            for (i, item) in items.iter().enumerate() {
                if item.trim().is_empty() {
                    let mut p = at(&["pixit", list]);
                    p.push(Seg::Index(i));
                    return Err(src.invalid(&p, format!("empty entry in {list}; remove it")));
                }
            }
        }
        Ok(())
    }
}
