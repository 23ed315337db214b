//! Property tests of the TIME clock filter and presentation queue (spec 17) in virtual time: for
//! any true offset, any path asymmetry, any responder hold and any drift within [TIME-2], the
//! estimate lies within its own error bound of the truth ([TIME-7]), and the presentation queue
//! never presents early, never holds more than its bound, and drops exactly what is late.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use softbus::time::present::{Dropped, Presenter, LATE_TOLERANCE, MAX_QUEUED};
use softbus::time::{Accuracy, Period, Requester};

/// A responder clock: `offset_us` ahead of the requester at the start, running `ppm` fast.
#[derive(Debug, Clone, Copy)]
struct PeerClock {
    offset_us: i64,
    ppm: i64,
}

impl PeerClock {
    /// The peer's timebase at requester time `t_us`.
    fn at(&self, t_us: u64) -> u64 {
        let drift = (t_us as i128 * self.ppm as i128) / 1_000_000;
        (t_us as i128 + self.offset_us as i128 + drift) as u64
    }

    /// The true offset at requester time `t_us`.
    fn offset_at(&self, t_us: u64) -> i64 {
        self.at(t_us) as i64 - t_us as i64
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn estimate_lies_within_its_bound_of_the_truth(
        offset_us in -1_000_000_000_000i64..1_000_000_000_000,
        ppm in -200i64..=200,
        paths in proptest::collection::vec((0u64..50_000, 0u64..50_000, 0u64..2_000), 1..24),
        wait_after_ms in 0u64..30_000,
    ) {
        // Start the requester's timebase late enough that the peer's stays positive.
        let base_us = 2_000_000_000_000u64;
        let peer = PeerClock { offset_us, ppm: ppm / 2 };
        let t0 = Instant::now();
        let us = |t: Instant| base_us + t.duration_since(t0).as_micros() as u64;
        let mut r = Requester::new(t0, Accuracy::SuperHigh, Period::Short);
        let mut now = t0;
        for (out_us, back_us, hold_us) in paths {
            now = now.max(r.poll_timeout());
            let Some((id, t1)) = r.handle_timeout(now, us(now)) else { continue };
            let arrive = us(now) + out_us;
            let t2 = peer.at(arrive);
            let t3 = peer.at(arrive + hold_us);
            now += Duration::from_micros(out_us + hold_us + back_us);
            r.handle_response(now, us(now), id, t1, t2, t3).unwrap();
        }
        let later = now + Duration::from_millis(wait_after_ms);
        let e = r.estimate(later).expect("at least one sample");
        let truth = peer.offset_at(us(later));
        prop_assert!(
            (e.offset_us - truth).unsigned_abs() <= e.error_us,
            "estimate {} ± {} but the truth is {}", e.offset_us, e.error_us, truth
        );
    }

    #[test]
    fn presentation_is_never_early_and_late_ones_are_dropped(
        items in proptest::collection::vec((0u64..40_000, 0u64..40_000), 1..600),
    ) {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut p = Presenter::new();
        let mut now = t0;
        let mut queued = 0usize;
        for (i, (advance_us, due_in_us)) in items.into_iter().enumerate() {
            now += Duration::from_micros(advance_us / 8);
            // Due anywhere from 20 ms ago to 20 ms ahead.
            let at = now + Duration::from_micros(due_in_us) - Duration::from_millis(20);
            match p.push(now, at, i as u64, i) {
                Ok(()) => {
                    prop_assert!(now <= at + LATE_TOLERANCE);
                    queued += 1;
                }
                Err(Dropped::Late { .. }) => prop_assert!(now > at + LATE_TOLERANCE),
                Err(Dropped::QueueFull) => prop_assert_eq!(p.len(), MAX_QUEUED),
                Err(other) => prop_assert!(false, "unexpected drop {other:?}"),
            }
            prop_assert!(p.len() <= MAX_QUEUED);
            while let Some(d) = p.pop_due(now) {
                prop_assert!(d.at <= now, "presented before its instant");
                queued -= 1;
            }
        }
        prop_assert_eq!(queued, p.len());
    }
}
