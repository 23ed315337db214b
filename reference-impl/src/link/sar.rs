//! Link segmentation and reassembly (spec section 16.1): how a SoftBus datagram crosses a link
//! whose packets are smaller than the datagram (a Zigbee APS payload, an ATT value).
//!
//! Every link packet is one *segment*:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | flags: bit 7 `START`, bit 6 `END`, bits 5..0 datagram counter (mod 64) |
//! | 1 | segment index, 0 for the `START` segment, then 1, 2, ... |
//! | 2 | total datagram length, big-endian (`START` segments only) |
//! | n | the next bytes of the datagram |
//!
//! A datagram that fits in one segment is a single segment with both `START` and `END`. The
//! sender uses one counter per link and increments it per datagram, so a receiver can tell a
//! lost `START` from a continuation. Reassembly is strict: a segment that does not continue the
//! datagram in progress (other counter, index out of order, too many bytes) discards the partial
//! datagram, and so does a `START` arriving before the previous datagram ended. A partial
//! datagram older than the reassembly timeout is discarded too. Nothing here panics on input;
//! the core above sees whole datagrams only, exactly as on UDP, and its reliability layer deals
//! with what a link loses.
//!
//! [`Reassembler`] is sans-IO (it takes `now`); [`segment`] is a pure function.

use std::time::{Duration, Instant};

/// Bytes of header on every segment.
pub const HEADER_LEN: usize = 2;
/// Extra bytes on a `START` segment (the total length).
pub const START_EXTRA: usize = 2;
/// Flag: first segment of a datagram.
pub const FLAG_START: u8 = 0x80;
/// Flag: last segment of a datagram.
pub const FLAG_END: u8 = 0x40;
/// Mask of the datagram counter.
pub const COUNTER_MASK: u8 = 0x3F;
/// Most segments one datagram may take (the index is one byte).
pub const MAX_SEGMENTS: usize = 256;
/// Smallest segment size that carries data in every segment.
pub const MIN_SEGMENT: usize = HEADER_LEN + START_EXTRA + 1;
/// How long a partial datagram is kept by default (spec LINK-5).
pub const DEFAULT_REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(2);

/// A datagram cannot be segmented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The link's packets are too small to carry a segment.
    #[error("segment size {0} is below the minimum of {MIN_SEGMENT} bytes")]
    SegmentTooSmall(usize),
    /// The datagram is empty.
    #[error("an empty datagram cannot be sent")]
    Empty,
    /// The datagram needs more than 256 segments, or is longer than 65535 bytes.
    #[error("a {len}-byte datagram does not fit in {MAX_SEGMENTS} segments of {segment} bytes")]
    TooLong {
        /// Datagram length.
        len: usize,
        /// Segment size.
        segment: usize,
    },
}

/// The largest datagram [`segment`] accepts for a segment size.
pub fn max_datagram(segment_size: usize) -> usize {
    if segment_size < MIN_SEGMENT {
        return 0;
    }
    let per = segment_size - HEADER_LEN;
    (per - START_EXTRA + per * (MAX_SEGMENTS - 1)).min(usize::from(u16::MAX))
}

/// Splits `datagram` into segments of at most `segment_size` bytes, tagged with `counter`.
pub fn segment(
    datagram: &[u8],
    counter: u8,
    segment_size: usize,
) -> Result<Vec<Vec<u8>>, SegmentError> {
    if segment_size < MIN_SEGMENT {
        return Err(SegmentError::SegmentTooSmall(segment_size));
    }
    if datagram.is_empty() {
        return Err(SegmentError::Empty);
    }
    if datagram.len() > max_datagram(segment_size) {
        return Err(SegmentError::TooLong {
            len: datagram.len(),
            segment: segment_size,
        });
    }
    let counter = counter & COUNTER_MASK;
    let mut out = Vec::new();
    let first = (segment_size - HEADER_LEN - START_EXTRA).min(datagram.len());
    let total = u16::try_from(datagram.len()).unwrap_or(u16::MAX);
    let mut seg = Vec::with_capacity(HEADER_LEN + START_EXTRA + first);
    seg.push(FLAG_START | counter);
    seg.push(0);
    seg.extend_from_slice(&total.to_be_bytes());
    seg.extend_from_slice(&datagram[..first]);
    out.push(seg);
    let mut rest = &datagram[first..];
    let mut index: u8 = 0;
    while !rest.is_empty() {
        index = index.wrapping_add(1);
        let n = (segment_size - HEADER_LEN).min(rest.len());
        let mut seg = Vec::with_capacity(HEADER_LEN + n);
        seg.push(counter);
        seg.push(index);
        seg.extend_from_slice(&rest[..n]);
        out.push(seg);
        rest = &rest[n..];
    }
    if let Some(last) = out.last_mut() {
        last[0] |= FLAG_END;
    }
    Ok(out)
}

/// Why a segment was discarded (for counters and logs; the link carries on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReassemblyError {
    /// Shorter than a header (or a `START` without its length).
    #[error("segment shorter than its header")]
    Truncated,
    /// A continuation without a datagram in progress.
    #[error("continuation segment with no datagram in progress")]
    Orphan,
    /// Counter or index does not continue the datagram in progress.
    #[error("segment out of sequence")]
    OutOfSequence,
    /// More bytes than the `START` announced, or `END` before all of them.
    #[error("segment lengths disagree with the announced datagram length")]
    LengthMismatch,
    /// Announced length beyond the receiver's limit, or zero.
    #[error("announced datagram length out of bounds")]
    BadLength,
}

/// What a segment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reassembled {
    /// A whole datagram is ready.
    Datagram(Vec<u8>),
    /// The segment was taken; more are needed.
    Pending,
    /// The segment was discarded (and with it any partial datagram).
    Discarded(ReassemblyError),
}

#[derive(Debug, Clone)]
struct Partial {
    counter: u8,
    next_index: u8,
    expected: usize,
    buf: Vec<u8>,
    started: Instant,
}

/// Reassembles one peer's segments on one link (sans-IO).
#[derive(Debug, Clone)]
pub struct Reassembler {
    partial: Option<Partial>,
    max_len: usize,
    timeout: Duration,
    discarded: u64,
}

impl Reassembler {
    /// A reassembler accepting datagrams up to `max_len` bytes, dropping partial ones older
    /// than `timeout`.
    pub fn new(max_len: usize, timeout: Duration) -> Reassembler {
        Reassembler {
            partial: None,
            max_len,
            timeout,
            discarded: 0,
        }
    }

    /// Segments discarded so far (including partial datagrams that timed out).
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Whether a datagram is in progress.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Takes one segment that arrived at `now`.
    pub fn handle(&mut self, now: Instant, seg: &[u8]) -> Reassembled {
        if let Some(p) = &self.partial {
            if now.saturating_duration_since(p.started) > self.timeout {
                self.partial = None;
                self.discarded += 1;
            }
        }
        match self.take(now, seg) {
            Ok(r) => r,
            Err(e) => {
                self.partial = None;
                self.discarded += 1;
                Reassembled::Discarded(e)
            }
        }
    }

    fn take(&mut self, now: Instant, seg: &[u8]) -> Result<Reassembled, ReassemblyError> {
        if seg.len() < HEADER_LEN {
            return Err(ReassemblyError::Truncated);
        }
        let flags = seg[0];
        let counter = flags & COUNTER_MASK;
        let index = seg[1];
        let end = flags & FLAG_END != 0;
        if flags & FLAG_START != 0 {
            if self.partial.take().is_some() {
                // The previous datagram never ended: it is lost.
                self.discarded += 1;
            }
            if seg.len() < HEADER_LEN + START_EXTRA || index != 0 {
                return Err(ReassemblyError::Truncated);
            }
            let expected = usize::from(u16::from_be_bytes([seg[2], seg[3]]));
            if expected == 0 || expected > self.max_len {
                return Err(ReassemblyError::BadLength);
            }
            let data = &seg[HEADER_LEN + START_EXTRA..];
            let p = Partial {
                counter,
                next_index: 0,
                expected,
                buf: Vec::with_capacity(expected),
                started: now,
            };
            self.partial = Some(p);
            return self.append(data, end);
        }
        match &self.partial {
            None => Err(ReassemblyError::Orphan),
            Some(p) if p.counter != counter || p.next_index != index || index == 0 => {
                Err(ReassemblyError::OutOfSequence)
            }
            Some(_) => self.append(&seg[HEADER_LEN..], end),
        }
    }

    fn append(&mut self, data: &[u8], end: bool) -> Result<Reassembled, ReassemblyError> {
        let Some(p) = self.partial.as_mut() else {
            return Err(ReassemblyError::Orphan);
        };
        if p.buf.len() + data.len() > p.expected {
            return Err(ReassemblyError::LengthMismatch);
        }
        p.buf.extend_from_slice(data);
        p.next_index = p.next_index.wrapping_add(1);
        let complete = p.buf.len() == p.expected;
        match (complete, end) {
            (true, true) => {
                let p = self.partial.take().ok_or(ReassemblyError::Orphan)?;
                Ok(Reassembled::Datagram(p.buf))
            }
            (false, false) => Ok(Reassembled::Pending),
            _ => Err(ReassemblyError::LengthMismatch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed(r: &mut Reassembler, segs: &[Vec<u8>]) -> Vec<Reassembled> {
        let now = Instant::now();
        segs.iter().map(|s| r.handle(now, s)).collect()
    }

    #[test]
    fn single_segment_carries_start_end_and_length() {
        let segs = segment(b"hello", 5, 20).unwrap();
        assert_eq!(
            segs,
            vec![vec![0xC5, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']]
        );
    }

    #[test]
    fn segments_fill_to_the_size_and_number_from_one() {
        let data: Vec<u8> = (0..40).collect();
        let segs = segment(&data, 1, 20).unwrap();
        assert_eq!(segs.len(), 3); // 16 + 18 + 6
        assert_eq!(&segs[0][..4], &[0x81, 0, 0, 40]);
        assert_eq!(&segs[1][..2], &[0x01, 1]);
        assert_eq!(&segs[2][..2], &[0x41, 2]);
        assert!(segs.iter().all(|s| s.len() <= 20));
    }

    #[test]
    fn refuses_what_cannot_be_segmented() {
        assert_eq!(segment(b"x", 0, 4), Err(SegmentError::SegmentTooSmall(4)));
        assert_eq!(segment(b"", 0, 20), Err(SegmentError::Empty));
        let big = vec![0u8; max_datagram(20) + 1];
        assert!(matches!(
            segment(&big, 0, 20),
            Err(SegmentError::TooLong { .. })
        ));
        assert!(segment(&big[..max_datagram(20)], 0, 20).is_ok());
    }

    #[test]
    fn lost_middle_segment_discards_the_datagram_and_the_next_one_arrives() {
        let a: Vec<u8> = (0..70).collect(); // 16 + 18 + 18 + 18
        let b: Vec<u8> = (100..130).collect();
        let mut sa = segment(&a, 1, 20).unwrap();
        sa.remove(1);
        let sb = segment(&b, 2, 20).unwrap();
        let mut r = Reassembler::new(1500, DEFAULT_REASSEMBLY_TIMEOUT);
        let out = feed(&mut r, &sa);
        assert_eq!(
            out[1],
            Reassembled::Discarded(ReassemblyError::OutOfSequence)
        );
        assert_eq!(out[2], Reassembled::Discarded(ReassemblyError::Orphan));
        let out = feed(&mut r, &sb);
        assert_eq!(out.last(), Some(&Reassembled::Datagram(b)));
        assert_eq!(r.discarded(), 2);
    }

    #[test]
    fn start_before_end_drops_the_partial_datagram() {
        let a: Vec<u8> = (0..50).collect();
        let sa = segment(&a, 1, 20).unwrap();
        let mut r = Reassembler::new(1500, DEFAULT_REASSEMBLY_TIMEOUT);
        assert_eq!(r.handle(Instant::now(), &sa[0]), Reassembled::Pending);
        let out = feed(&mut r, &sa);
        assert_eq!(out.last(), Some(&Reassembled::Datagram(a)));
        assert_eq!(r.discarded(), 1);
    }

    #[test]
    fn stale_partial_datagram_times_out() {
        let a: Vec<u8> = (0..50).collect();
        let sa = segment(&a, 1, 20).unwrap();
        let mut r = Reassembler::new(1500, Duration::from_millis(100));
        let t0 = Instant::now();
        assert_eq!(r.handle(t0, &sa[0]), Reassembled::Pending);
        let late = t0 + Duration::from_millis(101);
        assert_eq!(
            r.handle(late, &sa[1]),
            Reassembled::Discarded(ReassemblyError::Orphan)
        );
        assert!(!r.in_progress());
    }

    #[test]
    fn length_lies_are_caught() {
        let mut r = Reassembler::new(1500, DEFAULT_REASSEMBLY_TIMEOUT);
        let now = Instant::now();
        // Announces 3 bytes, carries 4.
        assert_eq!(
            r.handle(now, &[0xC0, 0, 0, 3, 1, 2, 3, 4]),
            Reassembled::Discarded(ReassemblyError::LengthMismatch)
        );
        // END before all bytes arrived.
        assert_eq!(
            r.handle(now, &[0xC0, 0, 0, 9, 1]),
            Reassembled::Discarded(ReassemblyError::LengthMismatch)
        );
        // Beyond the receiver's limit, and zero.
        let mut small = Reassembler::new(8, DEFAULT_REASSEMBLY_TIMEOUT);
        assert_eq!(
            small.handle(now, &[0x80, 0, 0, 9, 1]),
            Reassembled::Discarded(ReassemblyError::BadLength)
        );
        assert_eq!(
            small.handle(now, &[0xC0, 0, 0, 0]),
            Reassembled::Discarded(ReassemblyError::BadLength)
        );
        assert_eq!(
            small.handle(now, &[0x80]),
            Reassembled::Discarded(ReassemblyError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(any::<u8>(), 1..3000),
                       size in MIN_SEGMENT..300usize, counter in any::<u8>()) {
            prop_assume!(data.len() <= max_datagram(size));
            let segs = segment(&data, counter, size).unwrap();
            prop_assert!(segs.iter().all(|s| s.len() <= size));
            let mut r = Reassembler::new(65535, DEFAULT_REASSEMBLY_TIMEOUT);
            let out = feed(&mut r, &segs);
            prop_assert_eq!(out.last().cloned(), Some(Reassembled::Datagram(data)));
            prop_assert!(out[..out.len() - 1].iter().all(|o| *o == Reassembled::Pending));
        }

        #[test]
        fn never_panics_on_garbage(segs in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40), 0..40)) {
            let mut r = Reassembler::new(600, DEFAULT_REASSEMBLY_TIMEOUT);
            for s in &segs {
                if let Reassembled::Datagram(d) = r.handle(Instant::now(), s) {
                    prop_assert!(!d.is_empty() && d.len() <= 600);
                }
            }
        }
    }
}
