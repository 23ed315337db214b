//! TI Z-Stack Monitor-and-Test (MT) over a serial line: the protocol a ZNP coordinator
//! (CC2652, CC2531, CC1352...) speaks to its host, which is how a SoftBus device reaches Zigbee.
//!
//! - [`frame`]: the MT frame (`SOF`, length, `CMD0`, `CMD1`, payload, XOR `FCS`) as a zero-copy
//!   view and an owned repr with `parse`/`emit`/`buffer_len`;
//! - [`decoder`]: a streaming decoder that finds frames in a byte stream and resynchronises after
//!   line noise, counting what it dropped;
//! - [`commands`]: typed SYS, UTIL, ZDO, AF and APP_CNF commands, byte-for-byte as Z-Stack 3.x
//!   sends them and as zigpy-znp reads them;
//! - [`zcl`]: the few Zigbee Cluster Library frames exchanged with legacy devices (read
//!   attributes, on/off);
//! - [`port`]: [`ZnpPort`], the blocking host driver over a serial port (SREQ/SRSP with a
//!   timeout, AREQs queued).
//!
//! The conformance harness's virtual coordinator (`softbus_harness::znp::emulator`) speaks the
//! device side of the same codec.
//!
//! **Architecture Invariant:** parsing never panics, whatever the bytes. The codec and the
//! decoder take byte slices only; serial I/O lives in [`port`] alone.

pub mod codec;
pub mod commands;
pub mod decoder;
pub mod frame;
pub mod port;
pub mod start;
pub mod zcl;

pub use commands::Command;
pub use decoder::{Decoder, DecoderStats};
pub use frame::{CommandHeader, CommandType, Frame, FrameError, FrameRepr, Subsystem};
pub use port::{PortError, ZnpPort};
