//! Synchronized playout (spec 17.4): a bounded queue of stream messages waiting for their
//! presentation instant, translated into the receiver's clock.
//!
//! A message is due at the local instant whose timestamp is `pts - offset` (the sender's
//! presentation time, less how far the sender's clock is ahead of ours). One that is already
//! later than its due instant plus [`LATE_TOLERANCE`] when it arrives is dropped, never presented
//! late ([TIME-10]); one due further ahead than [`MAX_AHEAD`] is dropped too, so an absurd
//! presentation time cannot hold memory ([TIME-11]); the queue holds at most [`MAX_QUEUED`].

use std::time::{Duration, Instant};

/// How late after its due instant a message may still be presented.
pub const LATE_TOLERANCE: Duration = Duration::from_millis(10);

/// The furthest ahead a presentation time may lie.
pub const MAX_AHEAD: Duration = Duration::from_secs(10);

/// Messages waiting per receiver at most.
pub const MAX_QUEUED: usize = 256;

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// It arrived after its due instant plus the tolerance.
    #[error("arrived {late_us} µs after its presentation time")]
    Late {
        /// How late, µs.
        late_us: u64,
    },
    /// Its presentation time is more than [`MAX_AHEAD`] away.
    #[error("presentation time {ahead_us} µs ahead")]
    TooFarAhead {
        /// How far ahead, µs.
        ahead_us: u64,
    },
    /// [`MAX_QUEUED`] messages are already waiting.
    #[error("presentation queue full")]
    QueueFull,
    /// No clock estimate for the sender yet, so no due instant can be computed.
    #[error("no clock estimate for the sender")]
    Unsynchronized,
}

/// One message waiting for its instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due<T> {
    /// When to present it (our clock).
    pub at: Instant,
    /// The sender's presentation time, µs in its timebase.
    pub pts_us: u64,
    /// The message.
    pub item: T,
}

/// Messages waiting for their presentation instant, earliest first.
#[derive(Debug, Clone)]
pub struct Presenter<T> {
    queue: Vec<Due<T>>,
}

impl<T> Default for Presenter<T> {
    fn default() -> Self {
        Presenter { queue: Vec::new() }
    }
}

impl<T> Presenter<T> {
    /// An empty queue.
    pub fn new() -> Presenter<T> {
        Presenter::default()
    }

    /// Queue `item`, due `at`, arriving `now`.
    pub fn push(&mut self, now: Instant, at: Instant, pts_us: u64, item: T) -> Result<(), Dropped> {
        if now > at + LATE_TOLERANCE {
            return Err(Dropped::Late {
                late_us: now.duration_since(at).as_micros() as u64,
            });
        }
        if at > now + MAX_AHEAD {
            return Err(Dropped::TooFarAhead {
                ahead_us: at.duration_since(now).as_micros() as u64,
            });
        }
        if self.queue.len() >= MAX_QUEUED {
            return Err(Dropped::QueueFull);
        }
        let pos = self.queue.partition_point(|d| d.at <= at);
        self.queue.insert(pos, Due { at, pts_us, item });
        Ok(())
    }

    /// The earliest due instant.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.first().map(|d| d.at)
    }

    /// The next message due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Due<T>> {
        if self.queue.first().is_some_and(|d| d.at <= now) {
            Some(self.queue.remove(0))
        } else {
            None
        }
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Drop everything (the session closed).
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Keep only the messages for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.queue.retain(|d| keep(&d.item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presents_in_due_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut p = Presenter::new();
        let ms = Duration::from_millis;
        p.push(t0, t0 + ms(30), 30, "c").unwrap();
        p.push(t0, t0 + ms(10), 10, "a").unwrap();
        p.push(t0, t0 + ms(20), 20, "b").unwrap();
        assert_eq!(p.poll_timeout(), Some(t0 + ms(10)));
        assert!(p.pop_due(t0 + ms(9)).is_none());
        assert_eq!(p.pop_due(t0 + ms(25)).unwrap().item, "a");
        assert_eq!(p.pop_due(t0 + ms(25)).unwrap().item, "b");
        assert!(p.pop_due(t0 + ms(25)).is_none());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn late_far_and_overflowing_messages_are_dropped() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut p = Presenter::new();
        // Just inside the tolerance is kept, just outside dropped.
        assert!(p.push(t0, t0 - LATE_TOLERANCE, 0, 0).is_ok());
        assert!(matches!(
            p.push(t0, t0 - LATE_TOLERANCE - Duration::from_micros(1), 0, 1),
            Err(Dropped::Late { .. })
        ));
        assert!(p.push(t0, t0 + MAX_AHEAD, 0, 2).is_ok());
        assert!(matches!(
            p.push(t0, t0 + MAX_AHEAD + Duration::from_micros(1), 0, 3),
            Err(Dropped::TooFarAhead { .. })
        ));
        while p.len() < MAX_QUEUED {
            p.push(t0, t0 + Duration::from_millis(1), 0, 4).unwrap();
        }
        assert_eq!(p.push(t0, t0, 0, 5), Err(Dropped::QueueFull));
    }
}
