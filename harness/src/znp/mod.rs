//! TI Z-Stack Monitor-and-Test (MT) over a serial line: the protocol a ZNP coordinator
//! (CC2652, CC2531, CC1352...) speaks to its host, which is how the harness reaches Zigbee.
//!
//! - [`frame`]: the MT frame (`SOF`, length, `CMD0`, `CMD1`, payload, XOR `FCS`) as a zero-copy
//!   view and an owned repr with `parse`/`emit`/`buffer_len`;
//! - [`decoder`]: a streaming decoder that finds frames in a byte stream and resynchronises after
//!   line noise, counting what it dropped;
//! - [`commands`]: typed SYS, UTIL, ZDO, AF and APP_CNF commands, byte-for-byte as Z-Stack 3.x
//!   sends them and as zigpy-znp reads them;
//! - [`zcl`]: the few Zigbee Cluster Library frames the harness and the emulator exchange with
//!   legacy devices (read attributes, on/off);
//! - [`port`]: [`ZnpPort`], the blocking host driver over a serial port (SREQ/SRSP with a
//!   timeout, AREQs queued);
//! - [`emulator`]: a virtual CC2652 coordinator on a PTY, with a light and a temperature sensor
//!   behind it, whose output is paced at the configured baud rate.
//!
//! **Architecture Invariant:** parsing never panics, whatever the bytes. The codec and the
//! decoder take byte slices only; serial I/O lives in [`port`] and [`emulator`].

pub mod commands;
pub mod decoder;
pub mod emulator;
pub mod frame;
pub mod port;
pub mod zcl;

pub use commands::Command;
pub use decoder::{Decoder, DecoderStats};
pub use frame::{CommandHeader, CommandType, Frame, FrameError, FrameRepr, Subsystem};
pub use port::{PortError, ZnpPort};

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
