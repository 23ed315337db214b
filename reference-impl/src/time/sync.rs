//! The requester side of clock synchronization with one peer (spec 17.2, 17.3): when to send a
//! TIME_REQUEST, which response belongs to which request, and the clock filter they feed.
//!
//! Sans-IO: the connection calls [`Requester::handle_timeout`] at [`Requester::poll_timeout`]
//! and sends the request it returns, and hands every TIME_RESPONSE to
//! [`Requester::handle_response`] with its own receive timestamp.

use std::time::{Duration, Instant};

use super::filter::{ClockFilter, Estimate, Exchange, Sample, SampleError};

/// How long a request waits for its response before it is abandoned ([TIME-5]); a new request
/// (with a new sync_id) replaces it, so a late sample never joins the filter.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Spacing of the requests of one round.
pub const ROUND_SPACING: Duration = Duration::from_millis(10);

/// Accuracy levels, named as OpenHarmony's `StartTimeSync` names them: each is a number of
/// exchanges per round (more exchanges, a better chance of one with a short delay) and the error
/// bound the level aims at on a link whose round trip allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accuracy {
    /// 1 exchange per round; aims at 10 ms.
    Low,
    /// 4 exchanges per round; aims at 1 ms.
    Normal,
    /// 8 exchanges per round; aims at 100 µs.
    High,
    /// 16 exchanges per round; aims at 10 µs.
    SuperHigh,
}

impl Accuracy {
    /// Exchanges per round.
    pub fn exchanges(self) -> u8 {
        match self {
            Accuracy::Low => 1,
            Accuracy::Normal => 4,
            Accuracy::High => 8,
            Accuracy::SuperHigh => 16,
        }
    }

    /// The error bound the level aims at, µs.
    pub fn target_us(self) -> u64 {
        match self {
            Accuracy::Low => 10_000,
            Accuracy::Normal => 1_000,
            Accuracy::High => 100,
            Accuracy::SuperHigh => 10,
        }
    }

    /// Parse the control protocol's name.
    pub fn from_name(s: &str) -> Option<Accuracy> {
        Some(match s {
            "low" => Accuracy::Low,
            "normal" => Accuracy::Normal,
            "high" => Accuracy::High,
            "super-high" => Accuracy::SuperHigh,
            _ => return None,
        })
    }
}

/// Re-synchronization periods, as OpenHarmony's `StartTimeSync` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Period {
    /// A round every second.
    Short,
    /// A round every 10 s.
    Normal,
    /// A round every 60 s.
    Long,
}

impl Period {
    /// Time from the start of one round to the start of the next.
    pub fn interval(self) -> Duration {
        match self {
            Period::Short => Duration::from_secs(1),
            Period::Normal => Duration::from_secs(10),
            Period::Long => Duration::from_secs(60),
        }
    }

    /// Parse the control protocol's name.
    pub fn from_name(s: &str) -> Option<Period> {
        Some(match s {
            "short" => Period::Short,
            "normal" => Period::Normal,
            "long" => Period::Long,
            _ => return None,
        })
    }
}

/// Why a TIME_RESPONSE did not become a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// No outstanding request has this sync_id and t1 ([TIME-5]).
    #[error("no outstanding TIME_REQUEST with sync_id {sync_id} and t1 {t1}")]
    Unmatched {
        /// The response's sync_id.
        sync_id: u32,
        /// The response's t1.
        t1: u64,
    },
    /// The timestamps are inconsistent ([TIME-6]).
    #[error(transparent)]
    Inconsistent(#[from] SampleError),
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    sync_id: u32,
    t1: u64,
    deadline: Instant,
}

/// Clock synchronization with one peer, as the requester.
#[derive(Debug, Clone)]
pub struct Requester {
    accuracy: Accuracy,
    period: Period,
    filter: ClockFilter,
    round_start: Instant,
    next_send: Instant,
    left_in_round: u8,
    outstanding: Option<Outstanding>,
    next_id: u32,
}

impl Requester {
    /// Start synchronizing now: the first request goes at once.
    pub fn new(now: Instant, accuracy: Accuracy, period: Period) -> Requester {
        Requester {
            accuracy,
            period,
            filter: ClockFilter::new(),
            round_start: now,
            next_send: now,
            left_in_round: accuracy.exchanges(),
            outstanding: None,
            next_id: 1,
        }
    }

    /// The level.
    pub fn level(&self) -> (Accuracy, Period) {
        (self.accuracy, self.period)
    }

    /// Change the level, keeping the samples; a new round starts at once.
    pub fn set_level(&mut self, now: Instant, accuracy: Accuracy, period: Period) {
        self.accuracy = accuracy;
        self.period = period;
        self.left_in_round = accuracy.exchanges();
        self.round_start = now;
        if self.outstanding.is_none() {
            self.next_send = now;
        }
    }

    /// The next instant [`Requester::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Instant {
        match self.outstanding {
            Some(o) => o.deadline,
            None => self.next_send,
        }
    }

    /// At `now` (whose timestamp in our timebase is `local_us`): the `(sync_id, t1)` of a
    /// TIME_REQUEST to send, if one is due.
    pub fn handle_timeout(&mut self, now: Instant, local_us: u64) -> Option<(u32, u64)> {
        if let Some(o) = self.outstanding {
            if now < o.deadline {
                return None;
            }
            // Abandoned: the response, if it ever comes, no longer matches.
            self.outstanding = None;
            self.schedule_next(now);
        }
        if now < self.next_send {
            return None;
        }
        let sync_id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.outstanding = Some(Outstanding {
            sync_id,
            t1: local_us,
            deadline: now + RESPONSE_TIMEOUT,
        });
        Some((sync_id, local_us))
    }

    fn schedule_next(&mut self, now: Instant) {
        self.left_in_round = self.left_in_round.saturating_sub(1);
        if self.left_in_round == 0 {
            self.left_in_round = self.accuracy.exchanges();
            self.round_start = (self.round_start + self.period.interval()).max(now);
            self.next_send = self.round_start;
        } else {
            self.next_send = now + ROUND_SPACING;
        }
    }

    /// A TIME_RESPONSE arrived at `now`, which is `t4` in our timebase.
    pub fn handle_response(
        &mut self,
        now: Instant,
        t4: u64,
        sync_id: u32,
        t1: u64,
        t2: u64,
        t3: u64,
    ) -> Result<Sample, ResponseError> {
        match self.outstanding {
            Some(o) if o.sync_id == sync_id && o.t1 == t1 => {}
            _ => return Err(ResponseError::Unmatched { sync_id, t1 }),
        }
        self.outstanding = None;
        self.schedule_next(now);
        Ok(self.filter.add(Exchange { t1, t2, t3, t4 }, now)?)
    }

    /// The estimate at `now`, once a sample has been taken.
    pub fn estimate(&self, now: Instant) -> Option<Estimate> {
        self.filter.estimate(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_of_exchanges_then_the_period() {
        let t0 = Instant::now();
        let us = |t: Instant| t.duration_since(t0).as_micros() as u64;
        let mut r = Requester::new(t0, Accuracy::Normal, Period::Short);
        let mut now = t0;
        let mut sent = Vec::new();
        for _ in 0..5 {
            now = now.max(r.poll_timeout());
            let (id, t1) = r.handle_timeout(now, us(now)).expect("a request is due");
            sent.push(now);
            // The peer is 5 ms ahead; 50 µs each way.
            let t2 = t1 + 5_000 + 50;
            now += Duration::from_micros(100);
            r.handle_response(now, us(now), id, t1, t2, t2).unwrap();
        }
        assert_eq!(
            sent[1] - sent[0],
            ROUND_SPACING + Duration::from_micros(100)
        );
        // Four exchanges, then the next round a period after the first.
        assert_eq!(sent[4], t0 + Period::Short.interval());
        let e = r.estimate(now).unwrap();
        assert_eq!(e.offset_us, 5_000);
        assert!(e.error_us <= 52);
    }

    #[test]
    fn unmatched_and_abandoned_responses_are_refused() {
        let t0 = Instant::now();
        let mut r = Requester::new(t0, Accuracy::Low, Period::Short);
        let (id, t1) = r.handle_timeout(t0, 0).unwrap();
        assert!(matches!(
            r.handle_response(t0, 10, id + 1, t1, 5, 5),
            Err(ResponseError::Unmatched { .. })
        ));
        assert!(matches!(
            r.handle_response(t0, 10, id, t1 + 1, 5, 5),
            Err(ResponseError::Unmatched { .. })
        ));
        // Past the timeout the request is abandoned for a new one, and the old response no
        // longer matches.
        let late = t0 + RESPONSE_TIMEOUT;
        let (id2, _) = r.handle_timeout(late, 1_000_000).unwrap();
        assert_ne!(id2, id);
        assert!(r.handle_response(late, 1_000_001, id, t1, 5, 5).is_err());
        assert!(r.estimate(late).is_none());
    }

    #[test]
    fn inconsistent_timestamps_are_refused_and_the_next_request_goes_out() {
        let t0 = Instant::now();
        let mut r = Requester::new(t0, Accuracy::Normal, Period::Short);
        let (id, t1) = r.handle_timeout(t0, 0).unwrap();
        assert!(matches!(
            r.handle_response(t0, 100, id, t1, 50, 40),
            Err(ResponseError::Inconsistent(_))
        ));
        assert!(r.estimate(t0).is_none());
        assert_eq!(r.poll_timeout(), t0 + ROUND_SPACING);
    }
}
