//! TCP links (spec 2.1): the listener, one reader and one writer task per link, and the table
//! the owner routes transmits through.
//!
//! A link is registered with the owner before its reader starts, so its first frame always finds
//! its writer (an answer must leave on the link the request came in on, spec FRAME-2). When the
//! peer closes, the reader reports it and the owner drops the link, which ends the writer and
//! closes the socket: nothing stays in CLOSE-WAIT. The number of links is bounded by
//! [`MAX_TCP_LINKS`]; a connection past the bound is closed at once and counted. Writes go
//! through a bounded queue per link, so a peer that stops reading loses frames (which the
//! reliable layer retransmits) instead of stalling the owner.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::control::ControlError;

/// The most TCP links (inbound and outbound together) the reference keeps at once. Each costs
/// two tasks, a socket and up to 256 queued frames; 256 is far above what a device
/// needs (one link per peer) and far below a process's default descriptor limit (1024).
pub const MAX_TCP_LINKS: usize = 256;

/// How long the `connect` op waits for a TCP link to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames queued for one link's writer before further frames are dropped.
const WRITE_QUEUE: usize = 256;

/// The longest wait between two `accept` attempts after an error (EMFILE, ECONNABORTED, ...).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the TCP tasks tell the owner.
pub(super) enum TcpEvent {
    /// The listener accepted a link (within the bound).
    Accepted {
        peer: SocketAddr,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
    },
    /// A whole frame arrived on a link.
    Frame { peer: SocketAddr, data: Vec<u8> },
    /// A link's reader ended: the peer closed it, or it failed.
    Closed { peer: SocketAddr, link: u64 },
}

/// One registered link. Dropping it ends both tasks and so closes the socket.
struct Link {
    id: u64,
    out: mpsc::Sender<Vec<u8>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// The owner's table of TCP links, keyed by the peer's address.
pub(super) struct TcpLinks {
    links: HashMap<SocketAddr, Link>,
    events: mpsc::Sender<TcpEvent>,
    limit: Arc<Semaphore>,
    refused: Arc<AtomicU64>,
    closed: u64,
    next_id: u64,
}

impl TcpLinks {
    /// An empty table; tasks report on `events`.
    pub(super) fn new(events: mpsc::Sender<TcpEvent>) -> TcpLinks {
        TcpLinks {
            links: HashMap::new(),
            events,
            limit: Arc::new(Semaphore::new(MAX_TCP_LINKS)),
            refused: Arc::new(AtomicU64::new(0)),
            closed: 0,
            next_id: 0,
        }
    }

    /// Accept links on `l` until the owner goes away. Transient errors (out of descriptors, a
    /// connection aborted before it was accepted) are logged and retried with back-off: the
    /// port must never stop serving.
    pub(super) fn serve(&self, l: TcpListener) {
        let events = self.events.clone();
        let limit = self.limit.clone();
        let refused = self.refused.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(10);
            loop {
                match l.accept().await {
                    Ok((stream, peer)) => {
                        backoff = Duration::from_millis(10);
                        let Ok(permit) = limit.clone().try_acquire_owned() else {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%peer, max = MAX_TCP_LINKS, "tcp: link bound reached; connection closed");
                            continue;
                        };
                        let ev = TcpEvent::Accepted {
                            peer,
                            stream,
                            permit,
                        };
                        if events.send(ev).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%e, retry_in = ?backoff, "tcp: accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    }
                }
                if events.is_closed() {
                    return;
                }
            }
        });
    }

    /// Register an accepted link and start its tasks.
    pub(super) fn add(
        &mut self,
        peer: SocketAddr,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
    ) {
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        self.next_id += 1;
        let id = self.next_id;
        let (out, out_rx) = mpsc::channel(WRITE_QUEUE);
        let link = Link {
            id,
            out,
            reader: tokio::spawn(read_frames(r, peer, id, self.events.clone())),
            writer: tokio::spawn(write_frames(w, peer, out_rx)),
            _permit: permit,
        };
        // A link from the same address replaces the old one (its socket closes here).
        if self.links.insert(peer, link).is_some() {
            self.closed += 1;
        }
    }

    /// Register a link this device opened (the `connect` op), within the same bound.
    fn add_outbound(&mut self, peer: SocketAddr, stream: TcpStream) -> Result<(), String> {
        let permit = self.limit.clone().try_acquire_owned().map_err(|_| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            format!("the device already has {MAX_TCP_LINKS} TCP links, its bound")
        })?;
        self.add(peer, stream, permit);
        Ok(())
    }

    /// Open a TCP link to `peer` (the `connect` op over TCP), within 5 s and within the bound.
    pub(super) async fn connect(&mut self, peer: SocketAddr) -> Result<(), ControlError> {
        let why = |e: String| {
            ControlError::new(
                "NOT_CONNECTED",
                format!("cannot open TCP link to {peer}: {e}"),
            )
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await {
            Ok(Ok(stream)) => self.add_outbound(peer, stream).map_err(why),
            Ok(Err(e)) => Err(why(e.to_string())),
            Err(_) => Err(ControlError::new(
                "TIMEOUT",
                format!(
                    "TCP link to {peer} not up within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    /// A reader ended: drop its link, unless a newer link from the same address replaced it.
    pub(super) fn closed(&mut self, peer: SocketAddr, link: u64) {
        if self.links.get(&peer).is_some_and(|l| l.id == link) {
            self.links.remove(&peer);
            self.closed += 1;
        }
    }

    /// Queue `frame` on the link to `peer`, or give it back when there is no such link (it goes
    /// out on UDP instead). A full queue drops the frame; a dead writer drops the link.
    pub(super) fn send(&mut self, peer: SocketAddr, frame: Vec<u8>) -> Option<Vec<u8>> {
        let Some(link) = self.links.get(&peer) else {
            return Some(frame);
        };
        match link.out.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(%peer, "tcp: write queue full; frame dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.links.remove(&peer);
                self.closed += 1;
            }
        }
        None
    }

    /// The `tcp` member of the `state` op's `links`.
    pub(super) fn status(&self) -> Value {
        json!({
            "links": self.links.len(),
            "max": MAX_TCP_LINKS,
            "closed": self.closed,
            "refused": self.refused.load(Ordering::Relaxed),
        })
    }
}

/// Read u16-length-prefixed frames from a TCP link. A length above the MTU is still read (and
/// handed to the core, which counts it) so the stream stays in sync.
async fn read_frames(
    mut r: OwnedReadHalf,
    peer: SocketAddr,
    link: u64,
    tx: mpsc::Sender<TcpEvent>,
) {
    loop {
        let mut len = [0u8; 2];
        if r.read_exact(&mut len).await.is_err() {
            break;
        }
        let mut data = vec![0u8; u16::from_be_bytes(len) as usize];
        if r.read_exact(&mut data).await.is_err() {
            break;
        }
        if tx.send(TcpEvent::Frame { peer, data }).await.is_err() {
            return;
        }
    }
    let _ = tx.send(TcpEvent::Closed { peer, link }).await;
}

/// Write queued frames to a TCP link, each behind its u16 length.
async fn write_frames(mut w: OwnedWriteHalf, peer: SocketAddr, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(data) = rx.recv().await {
        let mut framed = Vec::with_capacity(2 + data.len());
        framed.extend_from_slice(&(data.len() as u16).to_be_bytes());
        framed.extend_from_slice(&data);
        if let Err(e) = w.write_all(&framed).await {
            tracing::debug!(%peer, %e, "tcp: write failed");
            return;
        }
    }
}
