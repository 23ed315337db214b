//! The air between the virtual central and a virtual peripheral, one connection at a time
//! (sans-IO: time comes in as `now`, randomness from a seed).
//!
//! What is modelled: connection events every connection interval from the connection's anchor;
//! at each event the central transmits first, then the peripheral, each at most
//! `pdus_per_event` PDUs, in order. A PDU queued at `t` can go at the first event strictly after
//! `t`. Each transmission is lost with probability `loss`; the link layer then retransmits it
//! at the next event, and nothing behind it in that direction overtakes it (LL acknowledgement
//! is in order). A peer that vanishes (powered off) is noticed after the supervision timeout.
//!
//! What is left out: one ATT PDU is taken to fit one LL PDU (Data Length Extension in use),
//! so no LL fragmentation; the two directions lose PDUs independently (in a real event a lost
//! central PDU also silences the peripheral's answer); no controller buffer limits, so a
//! queue never refuses a PDU; no channel map, no connection parameter updates, no PHY changes.
//!
//! Inputs: [`Air::enqueue`], [`Air::handle_timeout`], [`Air::peer_gone`]. Outputs:
//! [`Air::poll_event`] (call after each input until it returns `None`) and
//! [`Air::poll_timeout`] (when to call [`Air::handle_timeout`] next).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The link parameters the air model applies to every connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AirParams {
    /// Connection interval (7.5 ms to 4 s in BLE; any positive value here).
    pub interval: Duration,
    /// Most PDUs per direction in one connection event.
    pub pdus_per_event: usize,
    /// Probability that one transmission of a PDU is lost, in `[0, 1)`.
    pub loss: f64,
    /// How long after the peer vanished the connection is declared lost.
    pub supervision_timeout: Duration,
}

impl Default for AirParams {
    fn default() -> AirParams {
        AirParams {
            interval: Duration::from_micros(7_500),
            pdus_per_event: 4,
            loss: 0.0,
            // BlueZ's default LE supervision timeout (0x002a × 10 ms).
            supervision_timeout: Duration::from_millis(420),
        }
    }
}

/// Which way a PDU travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Central (the tester, through vbluez) to peripheral.
    Up,
    /// Peripheral to central.
    Down,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Up => 0,
            Dir::Down => 1,
        }
    }
}

/// What the air did.
#[derive(Debug, PartialEq, Eq)]
pub enum AirEvent<T> {
    /// A PDU arrived at the other side at connection event `at`.
    Delivered {
        /// Direction.
        dir: Dir,
        /// The PDU.
        pdu: T,
        /// The connection event it crossed in.
        at: Instant,
    },
    /// The peer vanished and the supervision timeout expired at `at`; queued PDUs are dropped.
    SupervisionTimeout {
        /// When the connection was declared lost.
        at: Instant,
    },
}

/// Counters of one connection's air.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AirStats {
    /// Connection events that carried at least one transmission.
    pub busy_events: u64,
    /// PDUs delivered, up and down.
    pub delivered: [u64; 2],
    /// Transmissions lost (and retransmitted), up and down.
    pub lost: [u64; 2],
}

#[derive(Debug)]
struct Queued<T> {
    pdu: T,
    queued_at: Instant,
}

/// One connection's air (see the module docs).
#[derive(Debug)]
pub struct Air<T> {
    params: AirParams,
    anchor: Instant,
    rng: ChaCha8Rng,
    queues: [VecDeque<Queued<T>>; 2],
    out: VecDeque<AirEvent<T>>,
    /// Index of the first connection event not yet run.
    next_index: u64,
    gone_at: Option<Instant>,
    timed_out: bool,
    stats: AirStats,
}

impl<T> Air<T> {
    /// A connection whose event 0 is at `anchor` (events at `anchor + k × interval`).
    ///
    /// # Panics
    ///
    /// If the interval is zero or `pdus_per_event` is zero (the CLI rejects both).
    pub fn new(params: AirParams, seed: u64, anchor: Instant) -> Air<T> {
        assert!(
            !params.interval.is_zero(),
            "connection interval must be positive"
        );
        assert!(params.pdus_per_event > 0, "pdus_per_event must be positive");
        Air {
            params,
            anchor,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queues: [VecDeque::new(), VecDeque::new()],
            out: VecDeque::new(),
            next_index: 1,
            gone_at: None,
            timed_out: false,
            stats: AirStats::default(),
        }
    }

    /// The parameters.
    pub fn params(&self) -> &AirParams {
        &self.params
    }

    /// Counters so far.
    pub fn stats(&self) -> AirStats {
        self.stats
    }

    /// PDUs waiting in direction `dir`.
    pub fn queued(&self, dir: Dir) -> usize {
        self.queues[dir.index()].len()
    }

    /// The time of connection event `k`.
    pub fn event_time(&self, k: u64) -> Instant {
        self.anchor + mul(self.params.interval, k)
    }

    /// The first connection event strictly after `t` (and not before any event already run).
    pub fn next_event_after(&self, t: Instant) -> Instant {
        self.event_time(self.next_index_after(t))
    }

    fn next_index_after(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.anchor);
        let k = (since.as_nanos() / self.params.interval.as_nanos().max(1)) as u64 + 1;
        k.max(self.next_index)
    }

    /// Queues `pdu` in direction `dir` at `now`; it goes at the first event after `now`, behind
    /// everything already queued that way.
    pub fn enqueue(&mut self, dir: Dir, pdu: T, now: Instant) {
        if self.timed_out {
            return;
        }
        self.queues[dir.index()].push_back(Queued {
            pdu,
            queued_at: now,
        });
    }

    /// The peer stopped answering at `now` (powered off): nothing crosses any more, and the
    /// connection is lost one supervision timeout later.
    pub fn peer_gone(&mut self, now: Instant) {
        if self.gone_at.is_none() {
            self.gone_at = Some(now);
        }
    }

    /// Whether the connection was declared lost (or closed).
    pub fn is_lost(&self) -> bool {
        self.timed_out
    }

    /// The connection ended (terminated by either side): drops whatever is still queued, and
    /// nothing more crosses.
    pub fn close(&mut self) {
        self.timed_out = true;
        self.queues.iter_mut().for_each(VecDeque::clear);
    }

    /// When [`Air::handle_timeout`] has something to do (`None`: idle until the next input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.timed_out {
            return None;
        }
        if let Some(gone) = self.gone_at {
            return Some(gone + self.params.supervision_timeout);
        }
        self.next_due().map(|(_, at)| at)
    }

    /// The next connection event with something to send: its index and time.
    fn next_due(&self) -> Option<(u64, Instant)> {
        let earliest = self
            .queues
            .iter()
            .filter_map(|q| q.front().map(|f| f.queued_at))
            .min()?;
        let k = self.next_index_after(earliest);
        Some((k, self.event_time(k)))
    }

    /// Runs every connection event (and the supervision timeout) due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timed_out {
            return;
        }
        if let Some(gone) = self.gone_at {
            let deadline = gone + self.params.supervision_timeout;
            if now >= deadline {
                self.timed_out = true;
                self.queues.iter_mut().for_each(VecDeque::clear);
                self.out
                    .push_back(AirEvent::SupervisionTimeout { at: deadline });
            }
            return;
        }
        while let Some((k, at)) = self.next_due() {
            if at > now {
                break;
            }
            self.run_event(at);
            self.next_index = k + 1;
        }
    }

    fn run_event(&mut self, at: Instant) {
        let mut busy = false;
        for dir in [Dir::Up, Dir::Down] {
            let q = dir.index();
            let mut sent = 0;
            while sent < self.params.pdus_per_event {
                match self.queues[q].front() {
                    Some(f) if f.queued_at < at => {}
                    _ => break,
                }
                sent += 1;
                busy = true;
                if self.params.loss > 0.0 && self.rng.gen::<f64>() < self.params.loss {
                    // Not acknowledged: retransmitted at the next event, nothing overtakes it.
                    self.stats.lost[q] += 1;
                    break;
                }
                if let Some(f) = self.queues[q].pop_front() {
                    self.stats.delivered[q] += 1;
                    self.out.push_back(AirEvent::Delivered {
                        dir,
                        pdu: f.pdu,
                        at,
                    });
                }
            }
        }
        if busy {
            self.stats.busy_events += 1;
        }
    }

    /// The next thing the air did, oldest first.
    pub fn poll_event(&mut self) -> Option<AirEvent<T>> {
        self.out.pop_front()
    }
}

fn mul(d: Duration, k: u64) -> Duration {
    Duration::from_nanos(
        (d.as_nanos().saturating_mul(u128::from(k))).min(u128::from(u64::MAX)) as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn params(interval_ms: u64, per_event: usize, loss: f64) -> AirParams {
        AirParams {
            interval: ms(interval_ms),
            pdus_per_event: per_event,
            loss,
            supervision_timeout: ms(420),
        }
    }

    /// Runs the air until idle; returns (dir, pdu, ms after t0) per delivery.
    fn drain(air: &mut Air<u32>, t0: Instant) -> Vec<(Dir, u32, u64)> {
        let mut got = Vec::new();
        while let Some(t) = air.poll_timeout() {
            air.handle_timeout(t);
            while let Some(e) = air.poll_event() {
                match e {
                    AirEvent::Delivered { dir, pdu, at } => {
                        got.push((dir, pdu, (at - t0).as_millis() as u64))
                    }
                    AirEvent::SupervisionTimeout { .. } => return got,
                }
            }
        }
        got
    }

    #[test]
    fn a_pdu_goes_at_the_first_event_after_it_was_queued() {
        let t0 = Instant::now();
        let mut air = Air::new(params(10, 4, 0.0), 1, t0);
        air.enqueue(Dir::Up, 1, t0 + ms(3));
        assert_eq!(air.poll_timeout(), Some(t0 + ms(10)));
        // Queued exactly at an event time: that event has gone, the next one carries it.
        air.enqueue(Dir::Down, 2, t0 + ms(10));
        assert_eq!(
            drain(&mut air, t0),
            vec![(Dir::Up, 1, 10), (Dir::Down, 2, 20)]
        );
        assert_eq!(air.poll_timeout(), None);
    }

    #[test]
    fn each_direction_is_capped_per_event_and_stays_in_order() {
        let t0 = Instant::now();
        let mut air = Air::new(params(10, 3, 0.0), 1, t0);
        for i in 0..7 {
            air.enqueue(Dir::Up, i, t0 + ms(1));
        }
        for i in 100..102 {
            air.enqueue(Dir::Down, i, t0 + ms(1));
        }
        let got = drain(&mut air, t0);
        let up: Vec<_> = got
            .iter()
            .filter(|g| g.0 == Dir::Up)
            .map(|g| (g.1, g.2))
            .collect();
        assert_eq!(
            up,
            vec![
                (0, 10),
                (1, 10),
                (2, 10),
                (3, 20),
                (4, 20),
                (5, 20),
                (6, 30)
            ]
        );
        let down: Vec<_> = got
            .iter()
            .filter(|g| g.0 == Dir::Down)
            .map(|g| (g.1, g.2))
            .collect();
        assert_eq!(down, vec![(100, 10), (101, 10)]);
        assert_eq!(air.stats().busy_events, 3);
    }

    #[test]
    fn idle_events_are_skipped_without_drift() {
        let t0 = Instant::now();
        let mut air = Air::new(params(10, 4, 0.0), 1, t0);
        air.enqueue(Dir::Up, 1, t0 + ms(1));
        assert_eq!(drain(&mut air, t0), vec![(Dir::Up, 1, 10)]);
        air.enqueue(Dir::Up, 2, t0 + ms(1_234));
        assert_eq!(drain(&mut air, t0), vec![(Dir::Up, 2, 1_240)]);
    }

    #[test]
    fn a_lost_pdu_is_retransmitted_at_the_next_event_and_nothing_overtakes_it() {
        let t0 = Instant::now();
        let mut air = Air::new(params(10, 4, 0.5), 7, t0);
        for i in 0..50 {
            air.enqueue(Dir::Up, i, t0 + ms(1));
        }
        let got = drain(&mut air, t0);
        let order: Vec<u32> = got.iter().map(|g| g.1).collect();
        assert_eq!(order, (0..50).collect::<Vec<_>>(), "in order, none dropped");
        let stats = air.stats();
        assert!(stats.lost[0] > 0, "some transmissions lost at p=0.5");
        assert_eq!(stats.delivered[0], 50);
        // Every event either delivers up to the cap or stops at a loss, so it takes longer
        // than the lossless 13 events.
        assert!(got.last().map(|g| g.2).unwrap_or(0) > 130);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let run = |seed| {
            let t0 = Instant::now();
            let mut air = Air::new(params(10, 2, 0.3), seed, t0);
            for i in 0..40 {
                air.enqueue(
                    if i % 3 == 0 { Dir::Down } else { Dir::Up },
                    i,
                    t0 + ms(u64::from(i)),
                );
            }
            drain(&mut air, t0)
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn a_vanished_peer_is_lost_after_the_supervision_timeout() {
        let t0 = Instant::now();
        let mut air = Air::new(params(10, 4, 0.0), 1, t0);
        air.enqueue(Dir::Up, 1, t0 + ms(1));
        air.peer_gone(t0 + ms(5));
        assert_eq!(air.poll_timeout(), Some(t0 + ms(425)));
        air.handle_timeout(t0 + ms(424));
        assert_eq!(air.poll_event(), None);
        air.handle_timeout(t0 + ms(425));
        assert_eq!(
            air.poll_event(),
            Some(AirEvent::SupervisionTimeout { at: t0 + ms(425) })
        );
        assert!(air.is_lost());
        assert_eq!(air.poll_timeout(), None);
    }
}
