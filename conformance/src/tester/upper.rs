//! The upper tester: a client of the tester control protocol (spec section 14), through which
//! the harness drives the DUT (reset, set PIN, prompt policy, open sessions, revoke, state).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::lower::StepError;

/// A connected control client (JSON lines over TCP, blocking, with timeouts).
pub struct Upper {
    reader: BufReader<Box<dyn Read + Send>>,
    writer: Box<dyn Write + Send>,
    /// The TCP stream, when the channel is TCP, to adjust read timeouts.
    tcp: Option<TcpStream>,
    next_id: u64,
    last_event: u64,
    /// Every request and response, for the case's harness log.
    pub transcript: Vec<String>,
}

impl Upper {
    /// Connect, retrying until `timeout` (the DUT may still be starting).
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Upper, StepError> {
        let end = Instant::now() + timeout;
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10)))?;
                    s.set_nodelay(true)?;
                    let mut u = Upper::over(Box::new(s.try_clone()?), Box::new(s.try_clone()?));
                    u.tcp = Some(s);
                    return Ok(u);
                }
                Err(e) if Instant::now() >= end => {
                    return Err(StepError::Io(format!(
                        "control channel {addr} does not answer: {e}"
                    )))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// A client over any byte stream (TCP, a serial port, a child's stdio).
    pub fn over(reader: Box<dyn Read + Send>, writer: Box<dyn Write + Send>) -> Upper {
        Upper {
            reader: BufReader::new(reader),
            writer,
            tcp: None,
            next_id: 1,
            last_event: 0,
            transcript: Vec::new(),
        }
    }

    /// A client over a serial port (the control channel of firmware test builds).
    pub fn serial(path: &Path, baud: u32) -> Result<Upper, StepError> {
        let port = serialport::new(path.to_string_lossy(), baud)
            .timeout(Duration::from_secs(10))
            .open()
            .map_err(|e| StepError::Io(format!("control channel {}: {e}", path.display())))?;
        let reader = port
            .try_clone()
            .map_err(|e| StepError::Io(format!("control channel {}: {e}", path.display())))?;
        Ok(Upper::over(Box::new(reader), Box::new(port)))
    }

    /// Send a request and return the whole response object.
    pub fn raw(&mut self, mut req: Value) -> Result<Value, StepError> {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        let line = req.to_string();
        self.transcript.push(format!("-> {line}"));
        writeln!(self.writer, "{line}")?;
        self.writer.flush()?;
        let mut resp = String::new();
        let n = self.reader.read_line(&mut resp)?;
        if n == 0 {
            return Err(StepError::Io("control channel closed by the DUT".into()));
        }
        self.transcript.push(format!("<- {}", resp.trim_end()));
        serde_json::from_str(&resp).map_err(|e| {
            StepError::Unexpected(format!("control response is not JSON ({e}): {resp:?}"))
        })
    }

    /// Send a request; an error response becomes `StepError::Unexpected`.
    pub fn call(&mut self, req: Value) -> Result<Value, StepError> {
        let op = req["op"].clone();
        let r = self.raw(req)?;
        if r["ok"] != json!(true) {
            return Err(StepError::Unexpected(format!(
                "control op {op} failed: {}",
                r["error"]
            )));
        }
        Ok(r["result"].clone())
    }

    /// Reset the DUT and mark every earlier event as seen.
    pub fn reset(&mut self) -> Result<(), StepError> {
        self.call(json!({"op": "reset"}))?;
        self.skip_events()
    }

    /// Forget events so far.
    pub fn skip_events(&mut self) -> Result<(), StepError> {
        let r = self.call(json!({"op": "events", "after": self.last_event}))?;
        if let Some(l) = r["last"].as_u64() {
            self.last_event = l;
        }
        Ok(())
    }

    /// Wait for an event matching `pred` (events before it are consumed).
    pub fn wait_event(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, StepError> {
        let end = Instant::now() + timeout;
        loop {
            let r = self.call(json!({"op": "events", "after": self.last_event}))?;
            for e in r["events"].as_array().cloned().unwrap_or_default() {
                self.last_event = e["seq"].as_u64().unwrap_or(self.last_event);
                if pred(&e) {
                    return Ok(e);
                }
            }
            if Instant::now() >= end {
                return Err(StepError::Timeout(timeout, format!("DUT event {what}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every event not seen yet (consumed: later calls and [`Upper::wait_event`] skip them).
    pub fn poll_events(&mut self) -> Result<Vec<Value>, StepError> {
        let r = self.call(json!({"op": "events", "after": self.last_event}))?;
        let evs = r["events"].as_array().cloned().unwrap_or_default();
        for e in &evs {
            self.last_event = e["seq"].as_u64().unwrap_or(self.last_event);
        }
        Ok(evs)
    }

    /// Send one raw line (a line feed is appended), for tests of the control protocol itself.
    pub fn write_line(&mut self, line: &str) -> Result<(), StepError> {
        self.transcript.push(format!("-> {line}"));
        writeln!(self.writer, "{line}")?;
        self.writer.flush()?;
        Ok(())
    }

    /// Send raw bytes as they are (no line feed added), for tests of the control protocol's own
    /// framing; the transcript records how many bytes and the first few, not all of them.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), StepError> {
        let head: String = String::from_utf8_lossy(&bytes[..bytes.len().min(32)]).into();
        self.transcript
            .push(format!("-> ({} raw bytes) {head:?}...", bytes.len()));
        self.writer.write_all(bytes)?;
        self.writer.flush()?;
        Ok(())
    }

    /// Whether the channel is a TCP connection (a serial control line is too slow for a line of
    /// many MiB).
    pub fn is_tcp(&self) -> bool {
        self.tcp.is_some()
    }

    /// Read one response line within `timeout` (`None` when nothing complete arrived in time).
    pub fn read_line(&mut self, timeout: Duration) -> Result<Option<String>, StepError> {
        self.set_read_timeout(timeout.max(Duration::from_millis(1)))?;
        let mut line = String::new();
        let r = self.reader.read_line(&mut line);
        self.set_read_timeout(Duration::from_secs(10))?;
        match r {
            Ok(0) => Err(StepError::Io("control channel closed by the DUT".into())),
            Ok(_) => {
                self.transcript.push(format!("<- {}", line.trim_end()));
                Ok(Some(line))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Set the read timeout (TCP channels; a serial port keeps the timeout it was opened with).
    fn set_read_timeout(&self, t: Duration) -> std::io::Result<()> {
        match &self.tcp {
            Some(s) => s.set_read_timeout(Some(t)),
            None => Ok(()),
        }
    }

    /// The DUT's state snapshot.
    pub fn state(&mut self) -> Result<Value, StepError> {
        self.call(json!({"op": "state"}))
    }
}
