//! The clock filter (spec 17.3): NTP's on-wire calculation per sample, and a minimum-delay
//! filter over the recent samples of one peer, as NTP's clock filter and chrony's do.
//!
//! Times are microseconds, each in its own device's monotonic timebase. A sample's offset θ says
//! how far the peer's clock is ahead of ours: `peer_time = local_time + θ`. Whatever the path's
//! asymmetry, the true offset at the time of a sample lies within θ ± δ/2, where δ is the round
//! trip minus the responder's hold time; so half the delay of a sample, plus what the two clocks
//! may have drifted apart since, bounds the error of using it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Samples kept per peer (NTP's clock filter keeps 8).
pub const FILTER_LEN: usize = 8;

/// The largest rate difference between two conforming clocks the error bound allows for, in parts
/// per million ([TIME-7]: each device's clock within 100 ppm of true rate, so 200 ppm apart).
pub const MAX_DRIFT_PPM: u64 = 200;

/// The resolution of a timestamp: one microsecond, added to every bound for the rounding of the
/// four timestamps.
pub const STAMP_RESOLUTION_US: u64 = 1;

/// One exchange's four timestamps, µs: requester send, responder receive, responder send,
/// requester receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// Requester's send time (requester's timebase).
    pub t1: u64,
    /// Responder's receive time (responder's timebase).
    pub t2: u64,
    /// Responder's send time (responder's timebase).
    pub t3: u64,
    /// Requester's receive time (requester's timebase).
    pub t4: u64,
}

/// Why an exchange cannot be a sample ([TIME-6]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// The responder says it sent before it received.
    #[error("responder send time t3 {t3} is before its receive time t2 {t2}")]
    SendBeforeReceive {
        /// Receive.
        t2: u64,
        /// Send.
        t3: u64,
    },
    /// Our own receive time is before our send time.
    #[error("receive time t4 {t4} is before send time t1 {t1}")]
    ReceiveBeforeSend {
        /// Send.
        t1: u64,
        /// Receive.
        t4: u64,
    },
    /// The responder held the request longer than the whole round trip took.
    #[error("responder hold t3 - t2 = {hold} µs exceeds the round trip t4 - t1 = {rtt} µs")]
    HoldExceedsRoundTrip {
        /// t3 − t2.
        hold: u64,
        /// t4 − t1.
        rtt: u64,
    },
}

impl Exchange {
    /// The round trip less the responder's hold time (δ), µs.
    pub fn delay_us(&self) -> Result<u64, SampleError> {
        if self.t3 < self.t2 {
            return Err(SampleError::SendBeforeReceive {
                t2: self.t2,
                t3: self.t3,
            });
        }
        if self.t4 < self.t1 {
            return Err(SampleError::ReceiveBeforeSend {
                t1: self.t1,
                t4: self.t4,
            });
        }
        let (rtt, hold) = (self.t4 - self.t1, self.t3 - self.t2);
        if hold > rtt {
            return Err(SampleError::HoldExceedsRoundTrip { hold, rtt });
        }
        Ok(rtt - hold)
    }

    /// The offset of the responder's clock from the requester's (θ), µs.
    pub fn offset_us(&self) -> i64 {
        // ((t2 - t1) + (t3 - t4)) / 2, in i128 so no timebase can overflow it.
        let th = (i128::from(self.t2) - i128::from(self.t1) + i128::from(self.t3)
            - i128::from(self.t4))
            / 2;
        th.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

/// A sample the filter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// θ, µs.
    pub offset_us: i64,
    /// δ, µs.
    pub delay_us: u64,
    /// When we took it (our receive instant).
    pub at: Instant,
}

impl Sample {
    /// The error bound of using this sample at `now`: δ/2 plus drift since, plus resolution.
    pub fn error_us(&self, now: Instant) -> u64 {
        let age_us = now.saturating_duration_since(self.at).as_micros() as u64;
        self.delay_us.div_ceil(2)
            + (age_us * MAX_DRIFT_PPM).div_ceil(1_000_000)
            + STAMP_RESOLUTION_US
    }
}

/// The requester's current belief about one peer's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Estimate {
    /// θ of the best sample: the peer's clock minus ours, µs.
    pub offset_us: i64,
    /// A bound on |θ − true offset| now, µs.
    pub error_us: u64,
    /// δ of the best sample, µs.
    pub delay_us: u64,
    /// Samples in the filter.
    pub samples: usize,
}

/// A minimum-delay clock filter over the last [`FILTER_LEN`] samples of one peer.
#[derive(Debug, Clone, Default)]
pub struct ClockFilter {
    samples: VecDeque<Sample>,
}

impl ClockFilter {
    /// An empty filter.
    pub fn new() -> ClockFilter {
        ClockFilter::default()
    }

    /// Add the exchange completed at `now`; a bad one is refused and leaves the filter unchanged.
    pub fn add(&mut self, ex: Exchange, now: Instant) -> Result<Sample, SampleError> {
        let delay_us = ex.delay_us()?;
        let s = Sample {
            offset_us: ex.offset_us(),
            delay_us,
            at: now,
        };
        if self.samples.len() == FILTER_LEN {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
        Ok(s)
    }

    /// The sample with the smallest error bound at `now`, and that bound.
    pub fn estimate(&self, now: Instant) -> Option<Estimate> {
        let best = self
            .samples
            .iter()
            .min_by_key(|s| (s.error_us(now), s.at))?;
        Some(Estimate {
            offset_us: best.offset_us,
            error_us: best.error_us(now),
            delay_us: best.delay_us,
            samples: self.samples.len(),
        })
    }

    /// Forget every sample (the peer's timebase may have restarted).
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

/// `t` µs in a timebase that started at `epoch`.
pub fn micros_since(epoch: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(epoch).as_micros() as u64
}

/// The instant that is `us` µs into a timebase that started at `epoch`.
pub fn instant_at(epoch: Instant, us: u64) -> Instant {
    epoch + Duration::from_micros(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(t1: u64, t2: u64, t3: u64, t4: u64) -> Exchange {
        Exchange { t1, t2, t3, t4 }
    }

    #[test]
    fn ntp_offset_and_delay() {
        // Peer 1000 µs ahead, 100 µs each way, 10 µs hold.
        let e = ex(0, 1100, 1110, 210);
        assert_eq!(e.offset_us(), 1000);
        assert_eq!(e.delay_us(), Ok(200));
        // Asymmetric path: 30 out, 170 back: θ is off by 70, within δ/2 = 100.
        let e = ex(0, 1030, 1040, 210);
        assert_eq!(e.delay_us(), Ok(200));
        assert!((e.offset_us() - 1000).unsigned_abs() <= 100);
    }

    #[test]
    fn inconsistent_exchanges_are_refused() {
        assert!(matches!(
            ex(0, 10, 5, 20).delay_us(),
            Err(SampleError::SendBeforeReceive { .. })
        ));
        assert!(matches!(
            ex(20, 10, 15, 5).delay_us(),
            Err(SampleError::ReceiveBeforeSend { .. })
        ));
        assert!(matches!(
            ex(0, 10, 500, 20).delay_us(),
            Err(SampleError::HoldExceedsRoundTrip { .. })
        ));
    }

    #[test]
    fn filter_picks_the_least_delayed_sample_and_bound_grows_with_age() {
        let t0 = Instant::now();
        let mut f = ClockFilter::new();
        f.add(ex(0, 1500, 1500, 1000), t0).unwrap(); // δ 1000, θ 1000
        f.add(ex(2000, 3100, 3100, 2200), t0).unwrap(); // δ 200, θ 1000
        let e = f.estimate(t0).unwrap();
        assert_eq!((e.delay_us, e.error_us), (200, 101));
        let later = f.estimate(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(later.error_us, 101 + 2000);
        // The filter is bounded.
        for i in 0..20 {
            f.add(ex(i, i + 5, i + 5, i + 10), t0).unwrap();
        }
        assert_eq!(f.estimate(t0).unwrap().samples, FILTER_LEN);
    }

    #[test]
    fn extreme_timebases_do_not_overflow() {
        let e = ex(0, u64::MAX, u64::MAX, 0);
        assert_eq!(e.offset_us(), i64::MAX);
        let e = ex(u64::MAX - 10, 0, 0, u64::MAX);
        assert!(e.offset_us() < 0);
    }
}
