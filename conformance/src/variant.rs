//! Legal variants: the reference certified with the choices the spec leaves to a device.
//!
//! A conformance suite is only as good as its verdicts. The reference makes one choice wherever
//! the spec gives a device a range (a link MTU of 1400, the largest max_message), and a suite
//! tuned against those choices would fail a correct device that chose differently. So every
//! freedom the spec grants is a [`Knob`]: a `softbusd` config key, the requirement that grants
//! the freedom, and its legal range. `certify --variant V` launches the virtual DUT with the
//! knobs set, and every case must still PASS: a variant that makes a case fail is a suite or
//! spec bug, never the DUT's.
//!
//! `V` is a named variant ([`NAMED`]: the corners of every range), `random` (each knob drawn
//! from its range with the run's seed, so `--seed` replays it), or explicit settings
//! (`device.mtu=1024,device.max_message=2048`), which are checked against the knobs' ranges.

use rand::{Rng, SeedableRng};

/// One freedom the spec grants a device, as a `softbusd` config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knob {
    /// The dotted config key (`device.mtu`).
    pub key: &'static str,
    /// The requirements that grant the freedom.
    pub spec: &'static str,
    /// The least legal value.
    pub min: i64,
    /// The greatest legal value on the links the virtual rig runs.
    pub max: i64,
    /// Why the range is what it is.
    pub why: &'static str,
}

/// Every knob, with its range.
pub const KNOBS: [Knob; 5] = [
    Knob {
        key: "device.mtu",
        spec: "FRAME-4, FRAME-5, HS-13 (section 2.2)",
        min: 256,
        max: 65_507,
        why: "the link MTU for UDP and TCP, never below 256; 65,507 is the largest UDP payload",
    },
    Knob {
        key: "device.max_message",
        spec: "SESS-8, SESS-13",
        min: 1024,
        max: 65_536,
        why: "the max_message announced in SESSION_ACCEPT: at least 1024, at most the kind's \
              limit (64 KiB for message and stream sessions; bytes sessions are capped at theirs)",
    },
    Knob {
        key: "timing.ack_delay_ms",
        spec: "REL-6",
        min: 0,
        max: 80,
        why: "an ACK may follow its message by up to 100 ms, and so after the message's own \
              response; 20 ms are left for the virtual DUT's scheduling on a loaded machine",
    },
    Knob {
        key: "timing.retransmit_late_ms",
        spec: "REL-8, REL-9",
        min: 0,
        max: 80,
        why: "a retransmission may be up to 100 ms past its RTO (the loss is then declared later \
              too); 20 ms are left for the virtual DUT's scheduling",
    },
    Knob {
        key: "timing.prev_epoch_grace_ms",
        spec: "REC-12",
        min: 2000,
        max: 2400,
        why: "the previous receive epoch is kept at least 2 s and dropped by 2.5 s; 100 ms are \
              left for scheduling",
    },
];

/// The named variants: the corners of the ranges, and a few values vendors choose.
pub const NAMED: [(&str, &[(&str, i64)]); 8] = [
    (
        "smallest",
        &[("device.mtu", 256), ("device.max_message", 1024)],
    ),
    (
        "largest",
        &[("device.mtu", 65_507), ("device.max_message", 65_536)],
    ),
    (
        "slowest",
        &[
            ("timing.ack_delay_ms", 80),
            ("timing.retransmit_late_ms", 80),
            ("timing.prev_epoch_grace_ms", 2400),
        ],
    ),
    ("mtu-256", &[("device.mtu", 256)]),
    ("mtu-1024", &[("device.mtu", 1024)]),
    ("mtu-4096", &[("device.mtu", 4096)]),
    ("max-message-1024", &[("device.max_message", 1024)]),
    ("ack-late", &[("timing.ack_delay_ms", 80)]),
];

/// A variant: a name for the report and the settings laid over the virtual DUT's config.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// `smallest`, `random`, or the settings as given.
    pub name: String,
    /// Dotted config key and value.
    pub settings: Vec<(String, i64)>,
}

impl Variant {
    /// Reads `--variant`: a name of [`NAMED`], `random` (drawn with `seed`), or
    /// `key=value[,key=value...]` with keys of [`KNOBS`] and values in their ranges.
    pub fn parse(spec: &str, seed: u64) -> Result<Variant, String> {
        let spec = spec.trim();
        if let Some((name, settings)) = NAMED.iter().find(|(n, _)| *n == spec) {
            return Ok(Variant {
                name: (*name).to_owned(),
                settings: settings
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect(),
            });
        }
        if spec == "random" {
            return Ok(Variant::random(seed));
        }
        if !spec.contains('=') {
            let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown variant {spec:?}: one of {}, random, or key=value settings",
                names.join(", ")
            ));
        }
        let mut settings = Vec::new();
        for item in spec.split(',') {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            let knob = KNOBS.iter().find(|k| k.key == key).ok_or_else(|| {
                let keys: Vec<&str> = KNOBS.iter().map(|k| k.key).collect();
                format!(
                    "{key:?} is not a variant knob; the knobs are {}",
                    keys.join(", ")
                )
            })?;
            let v: i64 = value
                .parse()
                .map_err(|_| format!("{key}: {value:?} is not an integer"))?;
            if !(knob.min..=knob.max).contains(&v) {
                return Err(format!(
                    "{key}: {v} is outside its legal range {}..={} ({})",
                    knob.min, knob.max, knob.spec
                ));
            }
            settings.push((key.to_owned(), v));
        }
        Ok(Variant {
            name: spec.to_owned(),
            settings,
        })
    }

    /// Every knob drawn from its range with `seed`. Sizes are drawn log-uniformly, so small
    /// values (where a suite that assumes the reference's choices breaks first) are as likely
    /// as large ones; times uniformly, with each end of the window drawn one time in four.
    pub fn random(seed: u64) -> Variant {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5641_5249_414e_5453);
        let settings = KNOBS
            .iter()
            .map(|k| {
                let v = if k.key.starts_with("timing.") {
                    match rng.gen_range(0..4) {
                        0 => k.min,
                        1 => k.max,
                        _ => rng.gen_range(k.min..=k.max),
                    }
                } else {
                    let (lo, hi) = ((k.min as f64).ln(), (k.max as f64).ln());
                    rng.gen_range(lo..=hi).exp().round() as i64
                };
                (k.key.to_owned(), v.clamp(k.min, k.max))
            })
            .collect();
        Variant {
            name: format!("random (seed {seed})"),
            settings,
        }
    }

    /// The settings as TOML values, for the launch.
    pub fn overrides(&self) -> Vec<(String, toml::Value)> {
        self.settings
            .iter()
            .map(|(k, v)| (k.clone(), toml::Value::Integer(*v)))
            .collect()
    }

    /// `device.mtu=1024, device.max_message=1024`.
    pub fn describe(&self) -> String {
        self.settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The knobs and the named variants, for `certify --variant list`.
pub fn catalogue() -> String {
    let mut out = String::from("knobs (softbusd config key, legal range, the spec's grant):\n");
    for k in KNOBS {
        out.push_str(&format!(
            "  {:<28} {:>5}..={:<6} {}: {}\n",
            k.key, k.min, k.max, k.spec, k.why
        ));
    }
    out.push_str("named variants:\n");
    for (name, settings) in NAMED {
        let s: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("  {name:<17} {}\n", s.join(", ")));
    }
    out.push_str("random: every knob drawn from its range with --seed\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_variants_stay_within_the_knobs_ranges() {
        for (name, settings) in NAMED {
            for (key, v) in settings {
                let k = KNOBS.iter().find(|k| k.key == *key).expect(key);
                assert!((k.min..=k.max).contains(v), "{name}: {key}={v}");
            }
            assert_eq!(Variant::parse(name, 0).unwrap().name, name);
        }
    }

    #[test]
    fn the_catalogue_lists_every_knob_and_named_variant() {
        let c = catalogue();
        for k in KNOBS {
            assert!(c.contains(k.key), "{c}");
        }
        for (name, _) in NAMED {
            assert!(c.contains(&format!("  {name} ")), "{c}");
        }
    }

    #[test]
    fn random_variants_are_seeded_and_legal() {
        assert_eq!(Variant::random(7), Variant::random(7));
        let mut small = 0;
        for seed in 0..200 {
            let v = Variant::random(seed);
            for (key, value) in &v.settings {
                let k = KNOBS.iter().find(|k| k.key == key).unwrap();
                assert!(
                    (k.min..=k.max).contains(value),
                    "seed {seed}: {key}={value}"
                );
                if key == "device.mtu" && *value < 1400 {
                    small += 1;
                }
            }
        }
        assert!(small > 40, "only {small} of 200 random MTUs below 1400");
    }

    #[test]
    fn explicit_settings_are_checked_against_the_ranges() {
        let v = Variant::parse("device.mtu=1024, device.max_message=2048", 0).unwrap();
        assert_eq!(v.describe(), "device.mtu=1024, device.max_message=2048");
        let e = Variant::parse("device.mtu=100", 0).unwrap_err();
        assert!(e.contains("outside its legal range 256..=65507"), "{e}");
        let e = Variant::parse("device.mut=1000", 0).unwrap_err();
        assert!(e.contains("not a variant knob"), "{e}");
        let e = Variant::parse("tiny", 0).unwrap_err();
        assert!(e.contains("unknown variant \"tiny\""), "{e}");
    }
}
