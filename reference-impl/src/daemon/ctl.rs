//! The tester control channel's transport (spec 14.1): the TCP listener, one task per client,
//! and the line framing. What a request does is [`crate::control`]'s business; this module only
//! turns bytes into requests and answers into lines, and runs the one op that is network I/O of
//! its own (`discover`, a CoAP probe on a socket of its own).
//!
//! Every line gets exactly one answer ([CTRL-1]): a line that is not UTF-8 is a `BAD_REQUEST`
//! like any other line that is not JSON ([CTRL-2]), and a line longer than [`MAX_LINE`] is
//! answered `BAD_REQUEST` as soon as it passes the bound and then discarded up to its line feed
//! without being buffered ([CTRL-18], [CTRL-19], [CTRL-20]), so a client cannot make the daemon hold more than one
//! bounded line.

use std::net::SocketAddrV4;
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use crate::control::{self, ControlError, Request};
use crate::Fault;

/// The longest request line the reference accepts: [CTRL-5] asks for 1 MiB, and more for bytes
/// sessions, whose largest message (16 MiB) is a 32 MiB `data_hex`; 64 KiB covers the rest of
/// the request.
pub const MAX_LINE: usize = 32 * 1024 * 1024 + 64 * 1024;

/// A line's buffer is given back to the allocator after a line longer than this.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// A command from a control client, with the channel for its answer.
pub(super) struct ControlCmd {
    pub(super) req: Request,
    pub(super) reply: oneshot::Sender<Result<Value, ControlError>>,
}

/// How a control client treats lines that cannot be requests: as the spec says, or with one of
/// the self-test's faults.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Framing {
    /// [`Fault::CtrlNonUtf8Hangup`].
    pub(super) hangup_non_utf8: bool,
    /// [`Fault::CtrlLongLineHangup`].
    pub(super) hangup_long_line: bool,
}

impl Framing {
    pub(super) fn new(faults: &[Fault]) -> Framing {
        Framing {
            hangup_non_utf8: faults.contains(&Fault::CtrlNonUtf8Hangup),
            hangup_long_line: faults.contains(&Fault::CtrlLongLineHangup),
        }
    }
}

/// Accept control clients on `l` until the owner goes away; transient accept errors back off.
pub(super) fn serve(l: TcpListener, tx: mpsc::Sender<ControlCmd>, framing: Framing) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(10);
        loop {
            match l.accept().await {
                Ok((stream, _)) => {
                    backoff = Duration::from_millis(10);
                    tokio::spawn(client(stream, tx.clone(), framing));
                }
                Err(e) => {
                    tracing::warn!(%e, retry_in = ?backoff, "control: accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
}

/// One unit read from a control connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its line feed (and without a carriage return before it).
    Text(Vec<u8>),
    /// A line passed the bound; the rest of it, up to its line feed, will be skipped.
    TooLong,
}

/// Line framing with a bound: at most `max` bytes of one line are ever buffered.
pub struct LineReader<R> {
    r: R,
    buf: Vec<u8>,
    max: usize,
    skipping: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Frame lines of at most `max` bytes from `r`.
    pub fn new(r: R, max: usize) -> LineReader<R> {
        LineReader {
            r,
            buf: Vec::new(),
            max,
            skipping: false,
        }
    }

    /// The next line; `None` at end of stream (a partial last line is dropped: it has no end,
    /// so it is no request).
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        self.buf.clear();
        loop {
            let chunk = self.r.fill_buf().await?;
            if chunk.is_empty() {
                return Ok(None);
            }
            let (part, end) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            let took = end.unwrap_or(part.len());
            if self.skipping {
                self.r.consume(took);
                if end.is_some() {
                    self.skipping = false;
                }
                continue;
            }
            if self.buf.len() + part.len() > self.max {
                self.buf = Vec::new();
                self.skipping = end.is_none();
                self.r.consume(took);
                return Ok(Some(Line::TooLong));
            }
            let need = self.buf.len() + part.len();
            if need > self.buf.capacity() {
                // Grow by doubling, but never past the bound (plain doubling would reserve 64 MiB
                // for a line of 33).
                let want = (self.buf.capacity() * 2).max(need).min(self.max);
                self.buf.reserve_exact(want - self.buf.len());
            }
            self.buf.extend_from_slice(part);
            self.r.consume(took);
            if end.is_some() {
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
                return Ok(Some(Line::Text(std::mem::take(&mut self.buf))));
            }
        }
    }
}

/// The text of `line`, or the answer to a line that cannot be a request.
fn text(line: &Line) -> Result<&str, (Value, ControlError)> {
    let bad = |m: String| (Value::Null, ControlError::new("BAD_REQUEST", m));
    match line {
        Line::TooLong => Err(bad(format!(
            "line longer than {MAX_LINE} bytes; discarded up to its line feed"
        ))),
        Line::Text(bytes) => std::str::from_utf8(bytes)
            .map_err(|e| bad(format!("the line is not UTF-8 (byte {})", e.valid_up_to()))),
    }
}

/// Serve one control client: JSON lines in, JSON lines out, in order.
async fn client(stream: TcpStream, tx: mpsc::Sender<ControlCmd>, framing: Framing) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut lines = LineReader::new(BufReader::new(r), MAX_LINE);
    while let Ok(Some(line)) = lines.next().await {
        let hangup = match &line {
            Line::TooLong => framing.hangup_long_line,
            Line::Text(b) => framing.hangup_non_utf8 && std::str::from_utf8(b).is_err(),
        };
        if hangup {
            return;
        }
        let parsed = match text(&line) {
            Ok(t) if t.trim().is_empty() => continue,
            Ok(t) => control::parse_request(t),
            Err(e) => Err(e),
        };
        let response = match parsed {
            Ok(req) => {
                let id = req.id.clone();
                let (reply_tx, reply_rx) = oneshot::channel();
                let cmd = ControlCmd {
                    req,
                    reply: reply_tx,
                };
                if tx.send(cmd).await.is_err() {
                    return;
                }
                match reply_rx.await {
                    Ok(r) => control::response(id, r),
                    Err(_) => return,
                }
            }
            Err((id, e)) => control::response(id, Err(e)),
        };
        let mut out = response.to_string();
        out.push('\n');
        if w.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The `discover` control op: send a CoAP multicast probe and collect adverts for `timeout_ms`.
pub(super) async fn discover(
    d: &crate::config::DiscoverySection,
    req: &Request,
) -> Result<Value, ControlError> {
    use crate::discovery::Probe;
    let timeout = Duration::from_millis(
        control::opt_u64(req, "timeout_ms")?
            .unwrap_or(1000)
            .min(30_000),
    );
    let cap = req.args.get("cap").and_then(Value::as_str);
    let internal = |e: std::io::Error| ControlError::new("INTERNAL", format!("discover: {e}"));
    let sock = UdpSocket::bind(SocketAddrV4::new(d.interface, 0))
        .await
        .map_err(internal)?;
    if !d.interface.is_unspecified() {
        let s2 = socket2::SockRef::from(&sock);
        s2.set_multicast_if_v4(&d.interface).map_err(internal)?;
    }
    sock.set_multicast_loop_v4(true).map_err(internal)?;
    let token: [u8; 4] = rand::thread_rng().gen();
    let probe = Probe::new(rand::thread_rng().gen(), token, cap)
        .map_err(|e| ControlError::new("INVALID_ARGS", format!("discover: {e}")))?;
    sock.send_to(&probe.to_bytes(), SocketAddrV4::new(d.group, d.port))
        .await
        .map_err(internal)?;
    let end = tokio::time::Instant::now() + timeout;
    let mut found = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok((n, from))) = tokio::time::timeout_at(end, sock.recv_from(&mut buf)).await {
        match probe.parse_response(&buf[..n]) {
            Ok(a) => found.push(json!({
                "from": from.to_string(),
                "id": hex::encode(a.id),
                "name": a.name,
                "type": a.device_type,
                "pk": hex::encode(a.pk),
                "caps": a.caps,
                "port": a.port,
                "hb": a.hb,
                "pt": a.pt,
                "pair": a.pair,
            })),
            Err(e) => tracing::debug!(%from, %e, "ignored discovery response"),
        }
    }
    Ok(json!({ "devices": found }))
}
