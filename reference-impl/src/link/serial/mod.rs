//! Serial lines, local or over the network: what the Z-Stack host driver
//! ([`crate::link::znp::ZnpPort`]) reads and writes.
//!
//! - [`addr`]: [`SerialAddr`], a device path, `tcp://host:port` or `rfc2217://host:port`;
//! - [`rfc2217`]: the sans-IO Telnet COM-PORT-OPTION client (RFC 2217);
//! - here: [`Line`], the byte pipe with a read deadline, and [`open`], which opens one for an
//!   address: a TTY (8N1, exclusive), a raw TCP connection (the access server sets the line),
//!   or a Telnet connection whose line settings are set and acknowledged before it is handed
//!   over.
//!
//! The bytes a [`Line`] carries are the serial line's bytes, whatever the transport: Telnet's
//! escaping is undone below it, so the MT framing and its idle-gap rule above are unchanged.

pub mod addr;
pub mod rfc2217;

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};

pub use addr::{AddrError, SerialAddr};
use rfc2217::{encode_data, LineSettings, Rfc2217Client, Rfc2217Error};

/// How long connecting to an access server and setting its line may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A serial line: bytes in and out, and a read that waits at most a given time.
pub trait Line: Send {
    /// Reads what has arrived, waiting at most `timeout`: `Ok(n)` with `n > 0` bytes, an
    /// error of kind [`io::ErrorKind::TimedOut`] when nothing came, `Ok(0)` when a local device
    /// reports end of file (a PTY whose other end closed; not fatal by itself). A network line
    /// whose server closed the connection is an error of kind [`io::ErrorKind::UnexpectedEof`].
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;
    /// Writes all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Discards what has arrived and not been read (best effort).
    fn clear_input(&mut self);
}

/// Opening a line failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The address does not parse.
    #[error("{0}")]
    Address(#[from] AddrError),
    /// The local device could not be opened.
    #[error("{0}")]
    Device(#[from] serialport::Error),
    /// The access server could not be reached.
    #[error("cannot connect to {addr}: {source}; check that ser2net (or the access server) runs there and serves this port")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The access server would not set the line.
    #[error("{addr}: {source}")]
    Rfc2217 {
        /// The address.
        addr: String,
        /// Why.
        source: Rfc2217Error,
    },
    /// The access server did not acknowledge the line settings in time.
    #[error(
        "{addr}: no acknowledgement of the line settings within {timeout:?}; is the port served \
         with RFC 2217 (ser2net: accepter \"telnet(rfc2217),tcp,PORT\")?"
    )]
    NotAcknowledged {
        /// The address.
        addr: String,
        /// How long it waited.
        timeout: Duration,
    },
}

/// A local TTY, with a second handle to leave exclusive mode when dropped: on a PTY (whose
/// other end stays open) the flag would otherwise outlive the line and lock every later
/// opener but root out with EBUSY.
struct Tty {
    port: TTYPort,
    exclusive: Option<TTYPort>,
}

impl Drop for Tty {
    fn drop(&mut self) {
        if let Some(tty) = self.exclusive.as_mut() {
            let _ = tty.set_exclusive(false);
        }
    }
}

impl Line for Tty {
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.port.set_timeout(timeout).map_err(io::Error::from)?;
        self.port.read(buf)
    }
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        Write::write_all(&mut self.port, bytes)
    }
    fn clear_input(&mut self) {
        // A PTY may refuse: harmless, the decoder skips stale bytes anyway.
        let _ = self.port.clear(serialport::ClearBuffer::Input);
    }
}

/// Wraps any `serialport` port (a test's PTY end, say) as a line.
pub struct PortLine(pub Box<dyn SerialPort>);

impl Line for PortLine {
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.0.set_timeout(timeout).map_err(io::Error::from)?;
        self.0.read(buf)
    }
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        Write::write_all(&mut self.0, bytes)
    }
    fn clear_input(&mut self) {
        let _ = self.0.clear(serialport::ClearBuffer::Input);
    }
}

/// Reads a socket with a deadline, mapping its timeouts and its end to the [`Line`] contract.
fn read_socket(sock: &mut TcpStream, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
    // A zero read timeout means "block forever" to the OS.
    sock.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    match sock.read(buf) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the serial server closed the connection",
        )),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"))
        }
        Err(e) => Err(e),
    }
}

/// Reads and drops whatever the socket holds now.
fn drain_socket(sock: &mut TcpStream) -> Vec<u8> {
    let mut dropped = Vec::new();
    if sock.set_nonblocking(true).is_ok() {
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = sock.read(&mut buf) {
            dropped.extend_from_slice(&buf[..n]);
        }
        let _ = sock.set_nonblocking(false);
    }
    dropped
}

/// A raw TCP port: the socket's bytes are the line's.
struct RawTcp {
    sock: TcpStream,
}

impl Line for RawTcp {
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        read_socket(&mut self.sock, buf, timeout)
    }
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }
    fn clear_input(&mut self) {
        drain_socket(&mut self.sock);
    }
}

/// A Telnet connection with COM-PORT-OPTION: data unescaped on the way in, escaped on the
/// way out, negotiation answered as it comes.
struct Telnet {
    sock: TcpStream,
    client: Rfc2217Client,
    /// Data decoded but not yet read.
    pending: Vec<u8>,
}

impl Telnet {
    fn flush_protocol(&mut self) -> io::Result<()> {
        if let Some(tx) = self.client.poll_transmit() {
            self.sock.write_all(&tx)?;
        }
        Ok(())
    }
}

impl Line for Telnet {
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut raw = [0u8; 512];
        while self.pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
            }
            let n = read_socket(&mut self.sock, &mut raw, left)?;
            let data = self.client.handle_input(&raw[..n]);
            self.pending.extend(data);
            self.flush_protocol()?;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(&encode_data(bytes))
    }
    fn clear_input(&mut self) {
        self.pending.clear();
        self.client.purge_input();
        let _ = self.flush_protocol();
        let dropped = drain_socket(&mut self.sock);
        // Commands among the dropped bytes still count; only their data goes.
        self.client.handle_input(&dropped);
        let _ = self.flush_protocol();
    }
}

fn connect(addr: &SerialAddr) -> Result<TcpStream, OpenError> {
    let name = addr.to_string();
    let err = |source| OpenError::Connect {
        addr: name.clone(),
        source,
    };
    let target = addr.host_port().unwrap_or_default();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name resolves to nothing");
    for sa in target.to_socket_addrs().map_err(err)? {
        match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
            Ok(sock) => {
                // MT frames are small and timed: no Nagle delay on them.
                sock.set_nodelay(true).map_err(err)?;
                return Ok(sock);
            }
            Err(e) => last = e,
        }
    }
    Err(err(last))
}

/// Opens the line at `addr` for 8N1 at `baud` without flow control: a local device in
/// exclusive mode (no other program can open it while the line lives), a raw TCP port as the
/// server has set it, or an RFC 2217 port after the server acknowledged every setting. What was
/// already waiting is discarded.
pub fn open(addr: &SerialAddr, baud: u32) -> Result<Box<dyn Line>, OpenError> {
    let mut line: Box<dyn Line> = match addr {
        SerialAddr::Local(path) => {
            let port = serialport::new(path, baud)
                .timeout(Duration::from_millis(100))
                .exclusive(true)
                .open_native()?;
            let exclusive = port.try_clone_native().ok();
            Box::new(Tty { port, exclusive })
        }
        SerialAddr::Tcp { .. } => Box::new(RawTcp {
            sock: connect(addr)?,
        }),
        SerialAddr::Rfc2217 { .. } => Box::new(open_rfc2217(addr, baud)?),
    };
    line.clear_input();
    Ok(line)
}

fn open_rfc2217(addr: &SerialAddr, baud: u32) -> Result<Telnet, OpenError> {
    let name = addr.to_string();
    let mut t = Telnet {
        sock: connect(addr)?,
        client: Rfc2217Client::new(LineSettings::n81(baud)),
        pending: Vec::new(),
    };
    let io_err = |source| OpenError::Connect {
        addr: name.clone(),
        source,
    };
    t.flush_protocol().map_err(io_err)?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut raw = [0u8; 512];
    loop {
        match t.client.configured() {
            Ok(true) => break,
            Ok(false) => {}
            Err(source) => {
                return Err(OpenError::Rfc2217 {
                    addr: name.clone(),
                    source,
                })
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OpenError::NotAcknowledged {
                addr: name.clone(),
                timeout: CONNECT_TIMEOUT,
            });
        }
        match read_socket(&mut t.sock, &mut raw, left) {
            Ok(n) => {
                // Data before the line is set was sent at an unknown rate: dropped.
                t.client.handle_input(&raw[..n]);
                t.flush_protocol().map_err(io_err)?;
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    if t.client.binary() != (true, true) {
        tracing::warn!(
            port = %name,
            "the serial server refused Telnet BINARY; a CR in the data may be translated"
        );
    }
    Ok(t)
}
