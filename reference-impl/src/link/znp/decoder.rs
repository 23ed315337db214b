//! A streaming MT frame decoder for a byte stream that may carry noise.
//!
//! Bytes go in with [`Decoder::push`] in whatever chunks the serial port returns; whole frames
//! come out of [`Decoder::next_frame`]. The decoder resynchronises the way Z-Stack hosts do:
//!
//! - bytes before a start-of-frame (0xFE) are skipped (a CC253x bootloader's 0xEF probe bytes,
//!   line noise, the tail of a frame cut in half);
//! - a length byte above 250 cannot start a frame: that 0xFE is dropped and the search goes on;
//! - a frame whose FCS does not match is dropped, and the search restarts at the byte after its
//!   0xFE, so a real frame that starts inside the bad one is still found;
//! - a frame still incomplete when the line has gone quiet ([`Decoder::line_idle`], the
//!   caller's idle timeout, as Z-Stack's MT UART has one) is a fragment: a frame whose start
//!   was flushed or lost, or a 0xFE inside such a tail read as a start byte with a length that
//!   would swallow the next real frames. It is dropped the same way, so the frames after it
//!   are found without waiting for bytes that will never come.
//!
//! Every dropped byte and frame is counted in [`DecoderStats`]. Noise outside a frame is never
//! buffered; the buffer holds what was pushed and not yet decoded, so call
//! [`Decoder::next_frame`] until it returns `None` after each push. Nothing here panics.

use super::frame::{Frame, FrameRepr, MAX_FRAME, MAX_PAYLOAD, OVERHEAD, SOF};

/// What the decoder has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Good frames returned.
    pub frames: u64,
    /// Frames dropped because their FCS did not match.
    pub bad_fcs: u64,
    /// Start bytes dropped because the length byte after them exceeded 250.
    pub bad_length: u64,
    /// Bytes skipped while looking for a start byte (not counting the two cases above).
    pub skipped_bytes: u64,
    /// Start bytes dropped because their frame was still incomplete when the line went quiet.
    pub fragments: u64,
}

/// How long a line must be silent before a partial frame counts as a fragment: far above the
/// gap between two bytes of one frame on a UART (a byte time), a USB-serial adapter's latency
/// timer (16 ms on FTDI) and a loaded host's scheduling delay.
pub const IDLE_GAP: std::time::Duration = std::time::Duration::from_millis(50);

/// The streaming decoder. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    stats: DecoderStats,
    /// No bytes have arrived since [`Decoder::line_idle`].
    idle: bool,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Decoder {
        Decoder {
            buf: Vec::with_capacity(MAX_FRAME),
            stats: DecoderStats::default(),
            idle: false,
        }
    }

    /// Appends bytes from the line. Call [`Decoder::next_frame`] until it returns `None`.
    pub fn push(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.idle = false;
        }
        for &b in bytes {
            // Outside a frame, only a start byte is worth keeping: this bounds the buffer.
            if self.buf.is_empty() && b != SOF {
                self.stats.skipped_bytes += 1;
                continue;
            }
            self.buf.push(b);
        }
    }

    /// The next whole, valid frame, if the bytes pushed so far hold one.
    pub fn next_frame(&mut self) -> Option<FrameRepr> {
        loop {
            match self.step() {
                Step::Frame(f) => return Some(f),
                Step::NeedMore => return None,
                Step::Resynced => continue,
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Says that the line has been quiet for [`IDLE_GAP`] (or the caller's own idle timeout):
    /// until more bytes are pushed, a frame that is still incomplete is a fragment, and
    /// [`Decoder::next_frame`] drops its start byte and looks for frames in the bytes after
    /// it. Call [`Decoder::next_frame`] until it returns `None` afterwards.
    pub fn line_idle(&mut self) {
        self.idle = true;
    }

    /// Forgets any partial frame (counted as skipped bytes).
    pub fn clear(&mut self) {
        self.stats.skipped_bytes += self.buf.len() as u64;
        self.buf.clear();
    }

    fn step(&mut self) -> Step {
        match self.classify() {
            Head::Incomplete if self.idle && !self.buf.is_empty() => {
                self.stats.fragments += 1;
                self.resync_after_sof();
                if self.buf.is_empty() {
                    Step::NeedMore
                } else {
                    Step::Resynced
                }
            }
            Head::Incomplete => Step::NeedMore,
            Head::Drop(n) => {
                self.drop_head(n);
                if self.buf.is_empty() {
                    Step::NeedMore
                } else {
                    Step::Resynced
                }
            }
            Head::Complete(len) => {
                let repr = FrameRepr::parse(&Frame::new_unchecked(&self.buf[..len]));
                match repr {
                    Ok(repr) => {
                        self.buf.drain(..len);
                        self.stats.frames += 1;
                        Step::Frame(repr)
                    }
                    // classify() vetted SOF, length and size, so only the FCS can be wrong.
                    Err(_) => {
                        self.stats.bad_fcs += 1;
                        self.resync_after_sof();
                        Step::Resynced
                    }
                }
            }
        }
    }

    fn classify(&mut self) -> Head {
        let Some(&first) = self.buf.first() else {
            return Head::Incomplete;
        };
        if first != SOF {
            let n = self
                .buf
                .iter()
                .position(|&b| b == SOF)
                .unwrap_or(self.buf.len());
            self.stats.skipped_bytes += n as u64;
            return Head::Drop(n);
        }
        let Some(&len) = self.buf.get(1) else {
            return Head::Incomplete;
        };
        if usize::from(len) > MAX_PAYLOAD {
            self.stats.bad_length += 1;
            return Head::Drop(1);
        }
        let total = usize::from(len) + OVERHEAD;
        if self.buf.len() < total {
            return Head::Incomplete;
        }
        Head::Complete(total)
    }

    /// Drops the start byte at the head and everything up to the next start byte.
    fn resync_after_sof(&mut self) {
        let next = self
            .buf
            .iter()
            .skip(1)
            .position(|&b| b == SOF)
            .map(|p| p + 1);
        let n = next.unwrap_or(self.buf.len());
        // The bad frame's SOF is accounted for in bad_fcs; the rest are skipped bytes.
        self.stats.skipped_bytes += n.saturating_sub(1) as u64;
        self.drop_head(n);
    }

    fn drop_head(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.drain(..n);
    }
}

enum Head {
    /// A whole frame of this many bytes (SOF, length and size checked; FCS not yet).
    Complete(usize),
    /// Wait for more bytes.
    Incomplete,
    /// Drop this many bytes from the head (already counted).
    Drop(usize),
}

enum Step {
    Frame(FrameRepr),
    NeedMore,
    Resynced,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: [u8; 5] = [0xFE, 0x00, 0x21, 0x01, 0x20];

    #[test]
    fn finds_frames_split_across_pushes() {
        let mut d = Decoder::new();
        d.push(&PING[..2]);
        assert!(d.next_frame().is_none());
        d.push(&PING[2..]);
        assert!(d.next_frame().is_some());
        assert_eq!(d.stats().frames, 1);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn bad_fcs_frame_is_dropped_and_following_frame_found() {
        let mut d = Decoder::new();
        let mut bad = PING;
        bad[4] ^= 0xFF;
        d.push(&bad);
        d.push(&PING);
        assert!(d.next_frame().is_some());
        assert!(d.next_frame().is_none());
        assert_eq!(d.stats().bad_fcs, 1);
    }

    /// What a host saw after reopening a stick whose output had been flushed mid-frame: the
    /// tail of a frame, holding a 0xFE whose "length" would swallow the next 200 bytes, then
    /// the one SRSP the host waits for, then silence.
    #[test]
    fn a_fragment_left_when_the_line_goes_quiet_gives_way_to_the_frames_after_it() {
        let srsp = [0xFE, 0x02, 0x61, 0x01, 0x79, 0x07, 0x1C];
        let mut d = Decoder::new();
        d.push(&[0x12, 0x34, 0xFE, 200, 0x44, 0x81, 0x00]);
        d.push(&srsp);
        assert!(d.next_frame().is_none(), "waits for the 200 bytes promised");
        d.line_idle();
        let f = d.next_frame().expect("the SRSP after the fragment");
        assert_eq!(f.to_bytes(), srsp);
        assert!(d.next_frame().is_none());
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.stats().fragments, 1);
        assert_eq!(d.stats().frames, 1);
    }

    /// A frame arriving in pieces is not cut short by a quiet spell noticed before it began,
    /// only by one after its bytes stopped.
    #[test]
    fn bytes_after_an_idle_spell_start_a_frame_normally() {
        let mut d = Decoder::new();
        d.line_idle();
        d.push(&PING[..2]);
        assert!(d.next_frame().is_none());
        d.push(&PING[2..]);
        assert!(d.next_frame().is_some());
        d.push(&PING[..3]);
        d.line_idle();
        assert!(d.next_frame().is_none());
        assert_eq!((d.buffered(), d.stats().fragments), (0, 1));
    }
}
