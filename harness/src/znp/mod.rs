//! The harness's side of Zigbee: a virtual Z-Stack network (a coordinator and router sticks)
//! to test against.
//!
//! The MT codec, the ZCL frames and the host driver ([`softbus::link::znp`]) belong to the
//! reference implementation, whose protocol converter talks to real coordinators through them;
//! the harness adds what only a test rig needs:
//!
//! - [`emulator`]: a virtual CC2652 coordinator on a PTY, with a light and a temperature sensor
//!   behind it, and optional router sticks on the same network, each on its own PTY (two
//!   SoftBus devices' Zigbee radios), whose output is paced at the configured baud rate;
//! - [`wire_time`]: how long bytes occupy an 8N1 serial line, the physics the pacing follows.

pub mod emulator;

/// Bits on the wire per byte of an 8N1 UART: one start bit, eight data bits, one stop bit.
pub const BITS_PER_BYTE: u64 = 10;

/// The time `bytes` bytes occupy an 8N1 serial line at `baud` bits per second.
///
/// A `baud` of 0 means "unpaced" and gives zero.
pub fn wire_time(bytes: usize, baud: u32) -> std::time::Duration {
    if baud == 0 {
        return std::time::Duration::ZERO;
    }
    let bits = (bytes as u128) * u128::from(BITS_PER_BYTE);
    let nanos = bits * 1_000_000_000 / u128::from(baud);
    std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}
