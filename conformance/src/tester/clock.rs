//! The lower tester's timebase for TIME cases (spec 17): a monotonic microsecond count that the
//! tester can run at a chosen offset from its own clock, so a case knows the true offset the DUT
//! should find. Also the tester's own measurement of the DUT's clock, the reference the cases
//! judge the DUT's estimate and presentation against.

use std::time::{Duration, Instant};

use softbus::time::{ClockFilter, Estimate, Exchange};
use softbus::wire::msg::MsgBody;

use super::lower::{SecureConn, StepError};

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

/// The tester's own measurement of the DUT's clock: `n` exchanges with the tester as requester,
/// in the tester's timebase `clock`. The estimate's offset is the DUT's timebase minus the
/// tester's; its error bound holds whatever the DUT does, if the DUT's timestamps are honest
/// (which SB-TIME-001 checks).
pub fn measure_dut(
    c: &mut SecureConn,
    clock: &TesterClock,
    n: u32,
    timeout: Duration,
) -> Result<Estimate, StepError> {
    let mut filter = ClockFilter::new();
    let mut refused = Vec::new();
    for i in 0..n {
        let (id, t1) = (0x7100_0000 + i, clock.now_us());
        c.send(MsgBody::TimeRequest { sync_id: id, t1 }, false)?;
        let (at, body) = c.expect_time_response(timeout, id)?;
        let MsgBody::TimeResponse { t2, t3, .. } = body else {
            continue;
        };
        let ex = Exchange {
            t1,
            t2,
            t3,
            t4: clock.at(at),
        };
        if let Err(e) = filter.add(ex, at) {
            refused.push(e.to_string());
        }
    }
    filter.estimate(Instant::now()).ok_or_else(|| {
        StepError::Unexpected(format!(
            "no usable TIME_RESPONSE from the DUT in {n} exchanges: {}",
            refused.join("; ")
        ))
    })
}
