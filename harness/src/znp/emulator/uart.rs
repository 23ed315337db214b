//! The serial side: an 8N1 line paced at the configured baud, frame tracing, and reading and
//! writing MT frames on a PTY master.

use crate::znp::wire_time;
use serialport::{SerialPort, TTYPort};
use softbus::link::znp::commands::Command;
use softbus::link::znp::decoder::{Decoder, IDLE_GAP};
use softbus::link::znp::frame::FrameRepr;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Why the emulator could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The PTY pair could not be created.
    #[error("cannot create a PTY pair: {0}; is /dev/ptmx available (devpts mounted)?")]
    Pty(serialport::Error),
    /// The PTY master failed.
    #[error("PTY I/O failed: {0}")]
    Io(io::Error),
    /// The configuration cannot be served (a bad or repeated node name).
    #[error("{0}")]
    Config(String),
}

/// The line pacing of one direction of an 8N1 UART.
#[derive(Debug)]
pub(super) struct Line {
    pub(super) baud: u32,
    pub(super) free_at: Instant,
}

impl Line {
    pub(super) fn new(baud: u32, now: Instant) -> Line {
        Line { baud, free_at: now }
    }

    /// When byte `i` (0-based) of a burst whose first bit starts at `start` has fully crossed.
    pub(super) fn byte_done(&self, start: Instant, i: usize) -> Instant {
        start + wire_time(i + 1, self.baud)
    }
}

/// Logs frames to stderr when asked to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tracer {
    pub(super) on: bool,
    pub(super) started: Instant,
}

impl Tracer {
    pub(super) fn trace(&self, stick: &str, dir: &str, frame: &FrameRepr) {
        if !self.on {
            return;
        }
        let name = Command::from_frame(frame)
            .map(|c| c.name())
            .unwrap_or("MALFORMED");
        let ms = self.started.elapsed().as_secs_f64() * 1e3;
        if stick == "coordinator" {
            eprintln!("znp-emulator {ms:10.3} ms {dir} {name} {frame}");
        } else {
            eprintln!("znp-emulator {ms:10.3} ms [{stick}] {dir} {name} {frame}");
        }
    }
}

/// One stick's serial line: its PTY pair and the pacing of both directions.
pub(super) struct Port {
    pub(super) master: TTYPort,
    // Held open so the master never sees a hang-up between host sessions.
    pub(super) _slave: TTYPort,
    pub(super) path: String,
    pub(super) decoder: Decoder,
    pub(super) tx: Line,
    pub(super) rx: Line,
}

impl Port {
    pub(super) fn open(baud: u32, now: Instant) -> Result<Port, EmulatorError> {
        let (master, slave) = TTYPort::pair().map_err(EmulatorError::Pty)?;
        let path = slave.name().unwrap_or_default();
        Ok(Port {
            master,
            _slave: slave,
            path,
            decoder: Decoder::new(),
            tx: Line::new(baud, now),
            rx: Line::new(baud, now),
        })
    }
}

/// Feeds bytes a host wrote (read at `at`) to the decoder and gives each complete frame to
/// `deliver` with the instant its last byte arrived. The host's bytes left it at `at`; on a real
/// line byte k arrives (k+1) byte times after the line was free, so a frame is complete only
/// when its last byte would have arrived.
pub(super) fn receive(
    decoder: &mut Decoder,
    rx: &mut Line,
    bytes: &[u8],
    at: Instant,
    mut deliver: impl FnMut(FrameRepr, Instant),
) {
    let start = at.max(rx.free_at);
    for (k, b) in bytes.iter().enumerate() {
        decoder.push(std::slice::from_ref(b));
        while let Some(frame) = decoder.next_frame() {
            deliver(frame, rx.byte_done(start, k));
        }
    }
    rx.free_at = start + wire_time(bytes.len(), rx.baud);
}

/// Called when a read found nothing: once the line has been quiet for
/// [`softbus::link::znp::decoder::IDLE_GAP`] after the last byte, a partial frame is a
/// fragment (a host that died or was stopped mid-write), as Z-Stack's MT UART idle timeout
/// decides. The decoder drops it and `deliver` gets any frame found in the bytes after it.
pub(super) fn idle(
    decoder: &mut Decoder,
    rx: &Line,
    now: Instant,
    mut deliver: impl FnMut(FrameRepr, Instant),
) {
    if decoder.buffered() == 0 || now < rx.free_at + IDLE_GAP {
        return;
    }
    decoder.line_idle();
    while let Some(frame) = decoder.next_frame() {
        deliver(frame, rx.free_at);
    }
}

/// Writes a frame, releasing each byte only once it has crossed the modelled wire: byte `i`
/// of a frame whose first bit starts at `start` leaves at `start + (i + 1) × 10 / baud`.
pub(super) fn transmit(
    master: &mut TTYPort,
    tx: &mut Line,
    bytes: &[u8],
) -> Result<(), EmulatorError> {
    let mut start = Instant::now().max(tx.free_at);
    master
        .set_timeout(Duration::from_secs(1))
        .map_err(|e| EmulatorError::Io(e.into()))?;
    let mut sent = 0;
    while sent < bytes.len() {
        let now = Instant::now();
        let mut due = sent;
        while due < bytes.len() && tx.byte_done(start, due) <= now {
            due += 1;
        }
        if due == sent {
            std::thread::sleep(tx.byte_done(start, sent).saturating_duration_since(now));
            continue;
        }
        match master.write_all(&bytes[sent..due]) {
            Ok(()) => {
                if sent == 0 {
                    // Anchor the rest of the frame on when its first bytes really left:
                    // a late wake-up then delays the whole frame instead of letting later
                    // bytes catch up, so from its first byte to its last a frame takes at
                    // least the time a real UART needs.
                    let left = Instant::now();
                    if let Some(anchor) = left.checked_sub(wire_time(due, tx.baud)) {
                        start = start.max(anchor);
                    }
                }
                sent = due;
            }
            // Nobody is reading and the PTY buffer is full: the frame is lost, as it
            // would be on a real line with no host listening.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
            Err(e) => return Err(EmulatorError::Io(e)),
        }
    }
    tx.free_at = start + wire_time(bytes.len(), tx.baud);
    Ok(())
}

/// What a read from a PTY master means for the serving loop.
pub(super) enum ReadOutcome {
    /// Bytes arrived.
    Bytes(usize),
    /// Nothing this time (timeout, interruption, no host has the port open).
    Idle,
}

/// Reads what a host wrote, waiting at most `wait`.
pub(super) fn read_master(
    master: &mut TTYPort,
    buf: &mut [u8],
    wait: Duration,
) -> Result<ReadOutcome, EmulatorError> {
    master
        .set_timeout(wait)
        .map_err(|e| EmulatorError::Io(e.into()))?;
    match master.read(buf) {
        Ok(0) => {
            std::thread::sleep(Duration::from_millis(5));
            Ok(ReadOutcome::Idle)
        }
        Ok(n) => Ok(ReadOutcome::Bytes(n)),
        Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::Interrupted => {
            Ok(ReadOutcome::Idle)
        }
        // No host has the port open (the slave was hung up): wait for one.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(5) => {
            std::thread::sleep(Duration::from_millis(10));
            Ok(ReadOutcome::Idle)
        }
        Err(e) => Err(EmulatorError::Io(e)),
    }
}

/// The longest a serving loop sleeps before it looks at the stop flag again.
pub(super) const IDLE_WAIT: Duration = Duration::from_millis(50);
