//! [`ZnpPort`]: the host side of the MT protocol over a serial port.
//!
//! MT allows one outstanding SREQ at a time: the host writes it and the device answers with
//! exactly one SRSP carrying the same subsystem and command ID (or an RPC error SRSP if it does
//! not know the command). AREQs — indications and callbacks such as `AF_INCOMING_MSG` — can
//! arrive at any moment, including between an SREQ and its SRSP; the port queues them, in
//! order, for [`ZnpPort::wait_for`] and [`ZnpPort::take_areqs`].
//!
//! The port is blocking and owns its serial line ([`crate::link::serial`]: a local device, or
//! one an access server such as ser2net shares over `tcp://` or `rfc2217://`); every wait has a
//! deadline. Bytes that are not
//! frames (noise, a bootloader's probe bytes) and frames with a bad FCS are dropped by the
//! [`Decoder`] and counted; so are SRSPs nobody waits for (a late answer to a request that
//! timed out), which can therefore never be mistaken for the answer to the next one.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use serialport::SerialPort;

use super::commands::{
    CommandError, Payload, Request, RpcErrorRsp, SysPingReq, SysPingRsp, SysVersionReq,
    SysVersionRsp, UtilGetDeviceInfoReq, UtilGetDeviceInfoRsp,
};
use super::decoder::{Decoder, DecoderStats, IDLE_GAP};
use super::frame::{CommandHeader, CommandType, FrameRepr};
use crate::link::serial::{self, Line, OpenError, PortLine, SerialAddr};

/// How long [`ZnpPort::call`] waits for an SRSP unless told otherwise. Z-Stack answers within
/// milliseconds; zigpy-znp allows 15 s for slow NV operations.
pub const DEFAULT_SREQ_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong talking to a ZNP device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// The serial port could not be opened.
    #[error(
        "cannot open serial port {path} at {baud} baud: {source}; check the configured serial \
         path, that the device is plugged in, and that no other program holds the port"
    )]
    Open {
        /// The port path.
        path: String,
        /// The baud rate.
        baud: u32,
        /// The serialport error.
        source: serialport::Error,
    },
    /// A serial port on the network (`tcp://`, `rfc2217://`), or its address, failed.
    #[error("cannot open serial port {path} at {baud} baud: {source}")]
    OpenRemote {
        /// The address as configured.
        path: String,
        /// The baud rate.
        baud: u32,
        /// Why (boxed: it is large, and rare).
        source: Box<OpenError>,
    },
    /// Reading or writing failed.
    #[error("serial I/O on {port} failed: {source}")]
    Io {
        /// The port name.
        port: String,
        /// The I/O error.
        source: io::Error,
    },
    /// No answer in time.
    #[error("no {waiting_for} from {port} within {timeout:?}")]
    Timeout {
        /// The port name.
        port: String,
        /// What was awaited.
        waiting_for: String,
        /// How long.
        timeout: Duration,
    },
    /// The device answered with an RPC error: it does not implement the command.
    #[error("{port} does not recognise {request} (RPC error code {error_code:#04x})")]
    NotRecognized {
        /// The port name.
        port: String,
        /// The refused request.
        request: CommandHeader,
        /// [`super::commands::rpc_error`] code.
        error_code: u8,
    },
    /// The device's answer has the right header but a malformed payload.
    #[error("malformed answer from {port}: {source}")]
    Malformed {
        /// The port name.
        port: String,
        /// Why.
        source: CommandError,
    },
    /// A command to send does not encode (a field or the payload too long).
    #[error("cannot encode command: {0}")]
    Encode(CommandError),
}

/// Counters beyond the decoder's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// The decoder's counters (frames, bad FCS, skipped bytes...).
    pub decoder: DecoderStats,
    /// SRSPs that arrived when no SREQ with their header was waiting.
    pub stray_srsp: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

/// A ZNP device on a serial port. See the module docs.
pub struct ZnpPort {
    port: Box<dyn Line>,
    name: String,
    decoder: Decoder,
    areqs: VecDeque<FrameRepr>,
    timeout: Duration,
    stats: PortStats,
    /// When the last byte arrived: a partial frame older than [`IDLE_GAP`] is a fragment.
    last_byte: Instant,
}

impl std::fmt::Debug for ZnpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZnpPort")
            .field("port", &self.name)
            .field("queued_areqs", &self.areqs.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl ZnpPort {
    /// Opens the port at `path` ([`SerialAddr`]: a device path, `tcp://HOST:PORT` or
    /// `rfc2217://HOST:PORT`) for 8N1 at `baud`, no flow control, and discards anything already
    /// waiting in the input buffer. A local device is opened in exclusive mode (no other
    /// program can open it until this port is dropped); over RFC 2217 the server sets the line
    /// and acknowledges it first; a raw TCP port runs at the rate its server set.
    pub fn open(path: &str, baud: u32) -> Result<ZnpPort, PortError> {
        let remote = |source| PortError::OpenRemote {
            path: path.to_string(),
            baud,
            source: Box::new(source),
        };
        let addr = SerialAddr::parse(path).map_err(|e| remote(e.into()))?;
        let line = serial::open(&addr, baud).map_err(|e| match e {
            OpenError::Device(source) => PortError::Open {
                path: path.to_string(),
                baud,
                source,
            },
            e => remote(e),
        })?;
        Ok(ZnpPort::from_line(line, path))
    }

    /// Wraps an already open port; `name` is used in error messages.
    pub fn from_port(port: Box<dyn SerialPort>, name: &str) -> ZnpPort {
        ZnpPort::from_line(Box::new(PortLine(port)), name)
    }

    /// Wraps an already open line; `name` is used in error messages.
    pub fn from_line(port: Box<dyn Line>, name: &str) -> ZnpPort {
        ZnpPort {
            port,
            name: name.to_string(),
            decoder: Decoder::new(),
            areqs: VecDeque::new(),
            timeout: DEFAULT_SREQ_TIMEOUT,
            stats: PortStats::default(),
            last_byte: Instant::now(),
        }
    }

    /// Sets how long [`ZnpPort::call`] waits for an SRSP.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The SRSP timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The counters.
    pub fn stats(&self) -> PortStats {
        PortStats {
            decoder: self.decoder.stats(),
            ..self.stats
        }
    }

    /// The port's name (its path when opened with [`ZnpPort::open`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes a frame as is.
    pub fn send_frame(&mut self, frame: &FrameRepr) -> Result<(), PortError> {
        self.write_raw(&frame.to_bytes())
    }

    /// Writes raw bytes (for tests that put noise on the line).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), PortError> {
        self.port
            .write_all(bytes)
            .map_err(|source| self.io(source))?;
        self.stats.bytes_written += bytes.len() as u64;
        Ok(())
    }

    /// Sends a command without waiting for anything (AREQs such as `SYS_RESET_REQ`).
    pub fn send<P: Payload>(&mut self, command: &P) -> Result<(), PortError> {
        let frame = command.to_frame().map_err(PortError::Encode)?;
        self.send_frame(&frame)
    }

    /// Sends an SREQ and returns its SRSP, waiting at most [`ZnpPort::timeout`].
    pub fn call<R: Request>(&mut self, request: &R) -> Result<R::Response, PortError> {
        let frame = request.to_frame().map_err(PortError::Encode)?;
        let rsp = self.call_frame(&frame, self.timeout)?;
        R::Response::from_payload(&rsp.payload).map_err(|source| PortError::Malformed {
            port: self.name.clone(),
            source,
        })
    }

    /// Sends an SREQ frame and returns the SRSP frame with the same subsystem and ID.
    pub fn call_frame(
        &mut self,
        request: &FrameRepr,
        timeout: Duration,
    ) -> Result<FrameRepr, PortError> {
        let want = request.header.with_kind(CommandType::Srsp);
        self.send_frame(request)?;
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(frame) = self.decoder.next_frame() {
                if frame.header == want {
                    return Ok(frame);
                }
                if frame.header == RpcErrorRsp::HEADER {
                    if let Ok(err) = RpcErrorRsp::from_payload(&frame.payload) {
                        if err.request_header() == request.header {
                            return Err(PortError::NotRecognized {
                                port: self.name.clone(),
                                request: request.header,
                                error_code: err.error_code,
                            });
                        }
                    }
                }
                self.file(frame);
            }
            if !self.fill(deadline)? {
                return Err(PortError::Timeout {
                    port: self.name.clone(),
                    waiting_for: format!("{want}"),
                    timeout,
                });
            }
        }
    }

    /// Waits for an AREQ of type `P` that satisfies `pred`, returning the first such one
    /// (queued or new). Other AREQs stay queued; a queued AREQ with `P`'s header but a
    /// malformed payload is dropped.
    pub fn wait_for<P: Payload>(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&P) -> bool,
    ) -> Result<P, PortError> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(frame) = self.decoder.next_frame() {
                self.file(frame);
            }
            let mut i = 0;
            while i < self.areqs.len() {
                if self.areqs[i].header == P::HEADER {
                    match P::from_payload(&self.areqs[i].payload) {
                        Ok(v) if pred(&v) => {
                            self.areqs.remove(i);
                            return Ok(v);
                        }
                        Ok(_) => i += 1,
                        Err(_) => {
                            self.areqs.remove(i);
                        }
                    }
                } else {
                    i += 1;
                }
            }
            if !self.fill(deadline)? {
                return Err(PortError::Timeout {
                    port: self.name.clone(),
                    waiting_for: P::NAME.to_string(),
                    timeout,
                });
            }
        }
    }

    /// Reads whatever arrives within `timeout` and returns every queued AREQ.
    pub fn take_areqs(&mut self, timeout: Duration) -> Result<Vec<FrameRepr>, PortError> {
        let deadline = Instant::now() + timeout;
        while self.fill(deadline)? {}
        while let Some(frame) = self.decoder.next_frame() {
            self.file(frame);
        }
        Ok(self.areqs.drain(..).collect())
    }

    /// `SYS_PING`.
    pub fn ping(&mut self) -> Result<SysPingRsp, PortError> {
        self.call(&SysPingReq {})
    }

    /// `SYS_VERSION`.
    pub fn version(&mut self) -> Result<SysVersionRsp, PortError> {
        self.call(&SysVersionReq {})
    }

    /// `UTIL_GET_DEVICE_INFO`.
    pub fn device_info(&mut self) -> Result<UtilGetDeviceInfoRsp, PortError> {
        self.call(&UtilGetDeviceInfoReq {})
    }

    /// Queues an AREQ; drops (and counts) an SRSP nobody is waiting for.
    fn file(&mut self, frame: FrameRepr) {
        match frame.header.kind {
            CommandType::Srsp => self.stats.stray_srsp += 1,
            _ => self.areqs.push_back(frame),
        }
    }

    /// Reads once, waiting until `deadline` at most. Returns false if the deadline passed
    /// with nothing read.
    fn fill(&mut self, deadline: Instant) -> Result<bool, PortError> {
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        // Read in short slices so that a deadline is honoured even if the driver rounds up.
        let wait = (deadline - now).min(Duration::from_millis(100));
        let mut buf = [0u8; 512];
        match self.port.read_timeout(&mut buf, wait) {
            // End of file: the other side hung up (a PTY whose master closed). Not fatal by
            // itself; the deadline decides.
            Ok(0) => std::thread::sleep(Duration::from_millis(10)),
            Ok(n) => {
                self.stats.bytes_read += n as u64;
                self.decoder.push(&buf[..n]);
                self.last_byte = Instant::now();
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
            Err(source) => return Err(self.io(source)),
        }
        // A partial frame the line has been quiet on since is a fragment (its start was lost
        // or flushed): let the decoder drop it and find the frames behind it now, rather than
        // wait for bytes that are not coming while the SRSP sits in its buffer.
        if self.decoder.buffered() > 0 && self.last_byte.elapsed() >= IDLE_GAP {
            self.decoder.line_idle();
            return Ok(true);
        }
        Ok(Instant::now() < deadline)
    }

    fn io(&self, source: io::Error) -> PortError {
        PortError::Io {
            port: self.name.clone(),
            source,
        }
    }
}
