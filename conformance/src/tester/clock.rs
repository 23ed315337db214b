//! The lower tester's timebase for TIME cases (spec 17): a monotonic microsecond count that the
//! tester can run at a chosen offset from its own clock, so a case knows the true offset the DUT
//! should find.

use std::time::Instant;

/// Where every tester timebase starts counting, so that an offset back in time stays positive:
/// 2^41 µs, about 25 days.
pub const BASE_US: u64 = 1 << 41;

/// A tester timebase: `BASE_US + offset_us` at `epoch`, then running with the tester's clock.
#[derive(Debug, Clone, Copy)]
pub struct TesterClock {
    epoch: Instant,
    offset_us: i64,
}

impl TesterClock {
    /// A timebase `offset_us` ahead of the plain one (negative: behind).
    pub fn new(offset_us: i64) -> TesterClock {
        TesterClock {
            epoch: Instant::now(),
            offset_us,
        }
    }

    /// The timebase at `t`.
    pub fn at(&self, t: Instant) -> u64 {
        let since = if t >= self.epoch {
            t.duration_since(self.epoch).as_micros() as i128
        } else {
            -(self.epoch.duration_since(t).as_micros() as i128)
        };
        (BASE_US as i128 + self.offset_us as i128 + since).max(0) as u64
    }

    /// The timebase now.
    pub fn now_us(&self) -> u64 {
        self.at(Instant::now())
    }
}
