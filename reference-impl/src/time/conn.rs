//! The TIME state of one connection: the synchronization this device runs with the peer (if
//! any), the answers it gives the peer's requests, and the timed stream messages waiting for
//! their presentation instant. The connection hands it the TIME messages and asks it for timers;
//! it never sees keys or sessions.

use std::time::Instant;

use super::filter::{instant_at, micros_since, Estimate};
use super::present::{Dropped, Presenter};
use super::sync::{Accuracy, Period, Requester, ResponseError};
use crate::wire::msg::MsgBody;

/// A complete timed message waiting for its instant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Waiting {
    session_id: u32,
    msg_id: u32,
    data: Vec<u8>,
}

/// A timed message presented now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// Its session.
    pub session_id: u32,
    /// Its msg_id.
    pub msg_id: u32,
    /// The sender's presentation time, µs in the sender's timebase.
    pub pts_us: u64,
    /// When it was presented, µs in our timebase.
    pub at_us: u64,
    /// The message.
    pub data: Vec<u8>,
}

/// What `state` shows of a synchronization in progress (spec 17.5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimeSnapshot {
    /// The peer's timebase minus ours, µs (null before the first sample).
    pub offset_us: Option<i64>,
    /// The error bound of the offset, µs.
    pub error_us: Option<u64>,
    /// The delay of the sample used, µs.
    pub delay_us: Option<u64>,
    /// Samples in the filter.
    pub samples: usize,
    /// The level's accuracy.
    pub accuracy: Accuracy,
    /// The level's period.
    pub period: Period,
}

/// The TIME state of one connection.
#[derive(Debug, Default)]
pub struct ConnTime {
    requester: Option<Requester>,
    presenter: Presenter<Waiting>,
}

impl ConnTime {
    /// No synchronization, nothing waiting.
    pub fn new() -> ConnTime {
        ConnTime::default()
    }

    /// The TIME_RESPONSE to a TIME_REQUEST received at `t2_us` and answered at `t3_us`.
    pub fn respond(sync_id: u32, t1: u64, t2_us: u64, t3_us: u64) -> MsgBody {
        MsgBody::TimeResponse {
            sync_id,
            t1,
            t2: t2_us,
            t3: t3_us,
        }
    }

    /// Start synchronizing with the peer, or change the level of the synchronization running.
    pub fn start(&mut self, now: Instant, accuracy: Accuracy, period: Period) {
        match &mut self.requester {
            Some(r) => r.set_level(now, accuracy, period),
            None => self.requester = Some(Requester::new(now, accuracy, period)),
        }
    }

    /// Stop synchronizing and forget the samples.
    pub fn stop(&mut self) {
        self.requester = None;
    }

    /// The level of the synchronization running.
    pub fn level(&self) -> Option<(Accuracy, Period)> {
        self.requester.as_ref().map(Requester::level)
    }

    /// Whether a synchronization runs.
    pub fn is_syncing(&self) -> bool {
        self.requester.is_some()
    }

    /// A TIME_RESPONSE arrived at `now` (`t4` in our timebase).
    pub fn handle_response(
        &mut self,
        now: Instant,
        t4: u64,
        sync_id: u32,
        t1: u64,
        t2: u64,
        t3: u64,
    ) -> Result<(), ResponseError> {
        match &mut self.requester {
            Some(r) => r.handle_response(now, t4, sync_id, t1, t2, t3).map(|_| ()),
            None => Err(ResponseError::Unmatched { sync_id, t1 }),
        }
    }

    /// The current estimate of the peer's offset.
    pub fn estimate(&self, now: Instant) -> Option<Estimate> {
        self.requester.as_ref()?.estimate(now)
    }

    /// What `state` shows.
    pub fn snapshot(&self, now: Instant) -> Option<TimeSnapshot> {
        let r = self.requester.as_ref()?;
        let e = r.estimate(now);
        let (accuracy, period) = r.level();
        Some(TimeSnapshot {
            offset_us: e.map(|e| e.offset_us),
            error_us: e.map(|e| e.error_us),
            delay_us: e.map(|e| e.delay_us),
            samples: e.map_or(0, |e| e.samples),
            accuracy,
            period,
        })
    }

    /// The next instant [`ConnTime::poll_request`] or [`ConnTime::poll_presented`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let r = self.requester.as_ref().map(|r| r.poll_timeout());
        match (r, self.presenter.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The TIME_REQUEST to send at `now`, if one is due (`epoch` starts our timebase).
    pub fn poll_request(&mut self, now: Instant, epoch: Instant) -> Option<MsgBody> {
        let (sync_id, t1) = self
            .requester
            .as_mut()?
            .handle_timeout(now, micros_since(epoch, now))?;
        Some(MsgBody::TimeRequest { sync_id, t1 })
    }

    /// A complete timed message arrived at `now`: queue it for its presentation instant.
    pub fn timed_message(
        &mut self,
        now: Instant,
        epoch: Instant,
        session_id: u32,
        msg_id: u32,
        pts_us: u64,
        data: Vec<u8>,
    ) -> Result<(), Dropped> {
        let e = self.estimate(now).ok_or(Dropped::Unsynchronized)?;
        // Our timebase at the presentation instant: pts − θ.
        let local = i128::from(pts_us) - i128::from(e.offset_us);
        let now_us = micros_since(epoch, now);
        let at = if local < 0 {
            // Before our epoch: as late as can be.
            return Err(Dropped::Late {
                late_us: now_us.saturating_add(local.unsigned_abs().min(u64::MAX as u128) as u64),
            });
        } else if local > i128::from(u64::MAX / 2) {
            return Err(Dropped::TooFarAhead { ahead_us: u64::MAX });
        } else {
            instant_at(epoch, local as u64)
        };
        self.presenter.push(
            now,
            at,
            pts_us,
            Waiting {
                session_id,
                msg_id,
                data,
            },
        )
    }

    /// The next message due at `now`.
    pub fn poll_presented(&mut self, now: Instant, epoch: Instant) -> Option<Presented> {
        let d = self.presenter.pop_due(now)?;
        Some(Presented {
            session_id: d.item.session_id,
            msg_id: d.item.msg_id,
            pts_us: d.pts_us,
            at_us: micros_since(epoch, now),
            data: d.item.data,
        })
    }

    /// Drop the waiting messages of a session that closed.
    pub fn session_closed(&mut self, session_id: u32) {
        self.presenter.retain(|w| w.session_id != session_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn presents_at_pts_translated_through_the_estimate() {
        let epoch = Instant::now();
        let mut t = ConnTime::new();
        let now = epoch + Duration::from_secs(1);
        assert_eq!(
            t.timed_message(now, epoch, 1, 1, 0, vec![]),
            Err(Dropped::Unsynchronized)
        );
        t.start(now, Accuracy::Low, Period::Short);
        let Some(MsgBody::TimeRequest { sync_id, t1 }) = t.poll_request(now, epoch) else {
            panic!("a request is due")
        };
        // The peer is 500 ms ahead; a 100 µs round trip.
        let t2 = t1 + 500_000 + 50;
        let later = now + Duration::from_micros(100);
        t.handle_response(later, micros_since(epoch, later), sync_id, t1, t2, t2)
            .unwrap();
        // pts 20 ms after now in the peer's timebase.
        let pts = micros_since(epoch, later) + 500_000 + 20_000;
        t.timed_message(later, epoch, 3, 7, pts, b"frame".to_vec())
            .unwrap();
        let due = t.poll_timeout().unwrap();
        assert_eq!(due, later + Duration::from_millis(20));
        assert!(t
            .poll_presented(due - Duration::from_micros(1), epoch)
            .is_none());
        let p = t.poll_presented(due, epoch).unwrap();
        assert_eq!((p.session_id, p.msg_id, p.pts_us), (3, 7, pts));
        assert_eq!(p.at_us, pts - 500_000);
    }

    #[test]
    fn a_response_without_a_synchronization_is_unmatched() {
        let mut t = ConnTime::new();
        assert!(matches!(
            t.handle_response(Instant::now(), 5, 1, 1, 2, 3),
            Err(ResponseError::Unmatched { .. })
        ));
    }
}
