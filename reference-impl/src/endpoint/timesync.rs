//! The endpoint's glue for TIME (spec 17): starting and stopping a clock synchronization,
//! timed sends and presentation at the receiver. The state machines live in [`crate::time`].

use super::*;

impl Endpoint {
    /// Our timebase at `now`, µs (spec 17.1): microseconds since the endpoint was created.
    pub fn clock_us(&self, now: Instant) -> u64 {
        crate::time::filter::micros_since(self.epoch_instant, now)
    }

    /// Start (or re-level) clock synchronization with `peer` (spec 17.3, control op `time_sync`).
    pub fn start_time_sync(
        &mut self,
        now: Instant,
        peer: DeviceId,
        accuracy: Accuracy,
        period: Period,
    ) -> Result<(), ApiError> {
        let s = self.secure_mut(peer)?;
        s.time.start(now, accuracy, period);
        Ok(())
    }

    /// Stop clock synchronization with `peer` and forget its samples.
    pub fn stop_time_sync(&mut self, peer: DeviceId) -> Result<(), ApiError> {
        self.secure_mut(peer)?.time.stop();
        Ok(())
    }

    /// Send one message on an open stream session as TIMED_DATA, to be presented at `pts_us` of
    /// our timebase ([`Endpoint::clock_us`]; spec 17.4).
    pub fn send_timed(
        &mut self,
        now: Instant,
        peer: DeviceId,
        session_id: u32,
        data: &[u8],
        pts_us: u64,
    ) -> Result<(), ApiError> {
        self.send_message(now, peer, session_id, data, Some(pts_us))
    }

    /// Queue a complete timed message for its presentation instant (spec 17.4).
    pub(super) fn present_later(
        &mut self,
        now: Instant,
        local_id: u32,
        session_id: u32,
        msg_id: u32,
        pts: u64,
        data: Vec<u8>,
    ) {
        let epoch = self.epoch_instant;
        let negate = self.has(Fault::TimeOffsetSign);
        let present_late = self.has(Fault::PresentLate);
        let uncounted = self.has(Fault::TimeUncounted);
        let Some(Conn {
            state: ConnState::Established(s),
            ..
        }) = self.conns.get_mut(&local_id)
        else {
            return;
        };
        // The faulty offset sign: translate with −θ instead of θ, i.e. pts + 2θ with θ.
        let pts_used = match (negate, s.time.estimate(now)) {
            (true, Some(e)) => (i128::from(pts) + 2 * i128::from(e.offset_us)).max(0) as u64,
            _ => pts,
        };
        match s
            .time
            .timed_message(now, epoch, session_id, msg_id, pts_used, data)
        {
            Ok(()) => {}
            Err(crate::time::Dropped::Late { .. }) if present_late => {
                let peer = s.peer;
                let data = Vec::new();
                self.events.push_back(Event::Presented {
                    peer,
                    session_id,
                    msg_id,
                    pts_us: pts,
                    at_us: self.clock_us(now),
                    data,
                });
            }
            Err(crate::time::Dropped::Late { .. }) => self.counters.presentation_late += 1,
            Err(crate::time::Dropped::Unsynchronized) => {
                if !uncounted {
                    self.counters.presentation_dropped += 1;
                }
                // [TIME-13]: learn the sender's clock so its next messages can be presented.
                s.time.start(now, Accuracy::Normal, Period::Normal);
            }
            Err(_) if uncounted => {}
            Err(_) => self.counters.presentation_dropped += 1,
        }
    }
}
