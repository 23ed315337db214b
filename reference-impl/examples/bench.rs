//! Loopback benchmark of the reference implementation, each figure next to raw UDP doing the
//! same work on the same kind of setup (two threads, blocking std `UdpSocket`s on 127.0.0.1).
//!
//! * **round trip**: a 64-byte message through an encrypted `echo` session (message channel)
//!   and back, against a raw 64-byte UDP echo; p50 and p99 over N samples after a warm-up;
//! * **handshake**: Noise XX from `connect()` to `Connected` at the initiator, median over
//!   repeated connections (pairing happens once, before, and is not timed);
//! * **bulk**: one 16 MiB message over an encrypted `bytes` channel to the `sink` service,
//!   against raw UDP datagrams of the same size (the endpoint's MTU) with the same flow control
//!   (64 datagrams in flight, every datagram acknowledged), counted at the receiver.
//!
//! Each endpoint is driven by its own thread: flush `poll_transmit`, block in `recv_from`
//! (2 ms read timeout), `handle_datagram`, fire `handle_timeout` when due, drain `poll_event`.
//!
//! ```text
//! cargo xtask bench                      # = cargo run --release -p softbus --example bench
//! cargo xtask bench -- --samples 5000 --bulk-mib 64
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use softbus::endpoint::{Config, Endpoint, Event, LinkAddr, PromptPolicy};
use softbus::trust::TrustStore;
use softbus::wire::msg::{ChannelKind, Qos};
use softbus::wire::Code;
use softbus::{DeviceId, Identity};

/// Latency and throughput of the SoftBus reference over loopback UDP, next to raw UDP.
#[derive(Debug, Clone, Parser)]
#[command(name = "bench")]
struct Args {
    /// Round trips measured (after the warm-up).
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Round trips run before measuring.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Size of the round-trip message, bytes.
    #[arg(long, default_value_t = 64)]
    message_size: usize,
    /// Handshakes timed.
    #[arg(long, default_value_t = 50)]
    handshakes: usize,
    /// Size of the bulk transfer, MiB (at most 16: the bytes channel's message limit).
    #[arg(long, default_value_t = 16)]
    bulk_mib: usize,
    /// Datagram size (the endpoint's MTU), bytes.
    #[arg(long, default_value_t = 1400)]
    datagram: usize,
    /// A `znp-emulator` binary (built by `cargo xtask bench`): also measure the serial Zigbee
    /// link (Z-Stack MT SYS_PING round trips over a PTY paced at `--baud`) next to its wire time.
    #[arg(long, value_name = "PATH")]
    znp_emulator: Option<std::path::PathBuf>,
    /// Line speed of the emulated coordinator, bits/s.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// SYS_PING round trips measured on the serial link.
    #[arg(long, default_value_t = 200)]
    serial_samples: usize,
}

/// SYS_PING round trips to a coordinator on a PTY, and the wire time of one exchange.
struct SerialResults {
    rtt: Vec<Duration>,
    wire: Duration,
    bytes: usize,
    pty: String,
}

/// Start the emulator, ping it over the real serial-port code path, and time each exchange.
fn bench_serial(path: &std::path::Path, args: &Args) -> anyhow::Result<SerialResults> {
    use softbus::link::znp::commands::{Payload, SysPingReq, SysPingRsp};
    use softbus::link::znp::ZnpPort;
    use std::io::BufRead;
    let mut child = std::process::Command::new(path)
        .args(["--baud", &args.baud.to_string(), "--exit-on-stdin-eof"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", path.display()))?;
    let stdout = child.stdout.take().context("emulator stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let info: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("emulator start line {line:?}"))?;
    let pty = info["pty"]
        .as_str()
        .context("emulator reported no pty")?
        .to_string();
    let result = (|| -> anyhow::Result<SerialResults> {
        let mut port = ZnpPort::open(&pty, args.baud)?;
        port.set_timeout(Duration::from_secs(2));
        for _ in 0..10 {
            port.ping()?;
        }
        let mut rtt = Vec::with_capacity(args.serial_samples);
        for _ in 0..args.serial_samples {
            let t = Instant::now();
            port.ping()?;
            rtt.push(t.elapsed());
        }
        // The physical floor: every byte of request and answer crosses the UART as 10 bits
        // (start, 8 data, stop) at the configured baud.
        let bytes = SysPingReq {}.to_frame()?.buffer_len()
            + SysPingRsp { capabilities: 0 }.to_frame()?.buffer_len();
        let wire = Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(args.baud));
        Ok(SerialResults {
            rtt,
            wire,
            bytes,
            pty: pty.clone(),
        })
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// How long any one step may take before the bench gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// The read timeout of every socket: how often a driver loop wakes without traffic.
const TICK: Duration = Duration::from_millis(2);
/// Datagrams in flight in the raw UDP bulk transfer (the endpoint's send window).
const RAW_WINDOW: u64 = 64;
/// Socket buffer sizes, the same for both sides of both comparisons.
const SOCKET_BUFFER: usize = 4 << 20;

fn socket() -> anyhow::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Larger buffers keep a burst of a full window from being dropped on either side.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(TICK))?;
    Ok(s)
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

// ------------------------------------------------------------------ the reference, driven

/// One endpoint with its socket, driven by the thread that owns it.
struct Node {
    ep: Endpoint,
    sock: UdpSocket,
    buf: Vec<u8>,
}

impl Node {
    fn new(name: &str, seed: u8, pin: Option<&str>, mtu: usize) -> anyhow::Result<Node> {
        let cfg = Config {
            name: name.into(),
            mtu,
            pin: pin.map(str::to_owned),
            prompt_policy: PromptPolicy::Approve,
            ..Config::default()
        };
        let now = Instant::now();
        let ep = Endpoint::new(
            cfg,
            Identity::from_secret([seed; 32]),
            TrustStore::new(),
            [seed ^ 0x5A; 32],
            now,
            0,
        );
        Ok(Node {
            ep,
            sock: socket()?,
            buf: vec![0u8; 65536],
        })
    }

    fn addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.sock.local_addr()?)
    }

    /// One turn of the driver loop; events go to `on_event`.
    fn turn(&mut self, on_event: &mut dyn FnMut(Event)) -> anyhow::Result<()> {
        while let Some(t) = self.ep.poll_transmit() {
            if let LinkAddr::Ip(dst) = t.dst {
                self.sock.send_to(&t.data, dst).context("send_to")?;
            }
        }
        match self.sock.recv_from(&mut self.buf) {
            Ok((n, from)) => {
                self.ep
                    .handle_datagram(Instant::now(), LinkAddr::Ip(from), &self.buf[..n])
            }
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(e).context("recv_from"),
        }
        let now = Instant::now();
        if self.ep.poll_timeout().is_some_and(|t| t <= now) {
            self.ep.handle_timeout(now);
        }
        while let Some(t) = self.ep.poll_transmit() {
            if let LinkAddr::Ip(dst) = t.dst {
                self.sock.send_to(&t.data, dst).context("send_to")?;
            }
        }
        while let Some(e) = self.ep.poll_event() {
            on_event(e);
        }
        Ok(())
    }

    /// Drive until `pick` returns a value for some event, or fail after [`STEP_TIMEOUT`].
    fn until<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut found = None;
        while found.is_none() {
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            self.turn(&mut |e| {
                if found.is_none() {
                    found = pick(&e);
                }
            })?;
        }
        found.context("unreachable: loop ends when found")
    }
}

/// What the receiving endpoint reports to the sender's thread.
struct Arrival {
    at: Instant,
    len: usize,
}

/// The responder's thread: serve until `stop`, reporting every complete message.
fn serve(
    mut node: Node,
    stop: Arc<AtomicBool>,
    arrivals: mpsc::Sender<Arrival>,
) -> anyhow::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        node.turn(&mut |e| {
            if let Event::Message { data, .. } = e {
                let _ = arrivals.send(Arrival {
                    at: Instant::now(),
                    len: data.len(),
                });
            }
        })?;
    }
    Ok(())
}

struct ReferenceResults {
    rtt: Vec<Duration>,
    handshakes: Vec<Duration>,
    bulk: Duration,
}

fn connected_to(e: &Event, peer: DeviceId) -> Option<()> {
    matches!(e, Event::Connected { peer: p, initiator: true, .. } if *p == peer).then_some(())
}

fn opened(e: &Event, sid: u32) -> Option<()> {
    matches!(e, Event::SessionOpened { session_id, .. } if *session_id == sid).then_some(())
}

/// The initiator's thread: pair, time handshakes, round trips and the bulk transfer.
fn client(
    mut a: Node,
    b_addr: SocketAddr,
    b_id: DeviceId,
    args: &Args,
    arrivals: mpsc::Receiver<Arrival>,
) -> anyhow::Result<ReferenceResults> {
    let b = LinkAddr::Ip(b_addr);
    a.ep.pair(Instant::now(), b.clone(), "123456")?;
    a.until("pairing", |e| match e {
        Event::Paired { .. } => Some(Ok(())),
        Event::PairingFailed { code, .. } => Some(Err(*code)),
        _ => None,
    })?
    .map_err(|code| anyhow::anyhow!("pairing failed: {code}"))?;

    let mut handshakes = Vec::with_capacity(args.handshakes);
    for i in 0..args.handshakes.max(1) {
        let t0 = Instant::now();
        a.ep.connect(t0, b.clone());
        a.until("Connected", |e| connected_to(e, b_id))?;
        handshakes.push(t0.elapsed());
        if i + 1 < args.handshakes.max(1) {
            a.ep.disconnect(Instant::now(), b_id, Code::NormalClose)?;
            a.turn(&mut |_| {})?;
        }
    }

    let sid = a.ep.open_session(
        Instant::now(),
        b_id,
        "echo",
        ChannelKind::Message,
        Qos::Interactive,
    )?;
    a.until("the echo session", |e| opened(e, sid))?;
    let payload = vec![0x42u8; args.message_size];
    let mut rtt = Vec::with_capacity(args.samples);
    for i in 0..args.warmup + args.samples {
        let t0 = Instant::now();
        a.ep.send(t0, b_id, sid, &payload)?;
        a.until("the echo", |e| {
            matches!(e, Event::Message { session_id, data, .. } if *session_id == sid && data.len() == payload.len()).then_some(())
        })?;
        if i >= args.warmup {
            rtt.push(t0.elapsed());
        }
    }

    let bulk_sid = a.ep.open_session(
        Instant::now(),
        b_id,
        "sink",
        ChannelKind::Bytes,
        Qos::Background,
    )?;
    a.until("the sink session", |e| opened(e, bulk_sid))?;
    // Forget what the responder reported for the echo messages.
    while arrivals.try_recv().is_ok() {}
    let size = args.bulk_mib << 20;
    let data = vec![0x17u8; size];
    let t0 = Instant::now();
    a.ep.send(t0, b_id, bulk_sid, &data)?;
    let deadline = t0 + STEP_TIMEOUT;
    let arrived = loop {
        if let Ok(arrival) = arrivals.try_recv() {
            if arrival.len == size {
                break arrival.at;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "timed out sending {} MiB over the bytes channel",
                args.bulk_mib
            );
        }
        a.turn(&mut |_| {})?;
    };
    Ok(ReferenceResults {
        rtt,
        handshakes,
        bulk: arrived.duration_since(t0),
    })
}

fn bench_reference(args: &Args) -> anyhow::Result<ReferenceResults> {
    let a = Node::new("bench-a", 1, None, args.datagram)?;
    let b = Node::new("bench-b", 2, Some("123456"), args.datagram)?;
    let b_addr = b.addr()?;
    let b_id = b.ep.identity().device_id();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let server = {
        let stop = stop.clone();
        thread::Builder::new()
            .name("reference-b".into())
            .spawn(move || serve(b, stop, tx))?
    };
    let client_args = args.clone();
    let client = thread::Builder::new()
        .name("reference-a".into())
        .spawn(move || client(a, b_addr, b_id, &client_args, rx))?;
    let result = client
        .join()
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))?;
    stop.store(true, Ordering::Relaxed);
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    result
}

// ------------------------------------------------------------------ raw UDP, same shape

const RAW_ECHO: u8 = 1;
const RAW_DATA: u8 = 2;
const RAW_FIN: u8 = 3;

/// The raw server: echo `RAW_ECHO`, count and acknowledge `RAW_DATA`, report on `RAW_FIN`.
fn raw_server(
    sock: UdpSocket,
    stop: Arc<AtomicBool>,
    report: mpsc::Sender<(Instant, u64)>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 65536];
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(e).context("recv_from"),
        };
        match buf[0] {
            RAW_ECHO => {
                sock.send_to(&buf[..n], from)?;
            }
            RAW_DATA => {
                count += 1;
                bytes += n as u64;
                last = Instant::now();
                sock.send_to(&count.to_be_bytes(), from)?;
            }
            RAW_FIN => {
                let _ = report.send((last, bytes));
                count = 0;
                bytes = 0;
            }
            _ => {}
        }
    }
    Ok(())
}

struct RawResults {
    rtt: Vec<Duration>,
    bulk: Duration,
    bulk_bytes: u64,
}

fn raw_client(
    sock: UdpSocket,
    server: SocketAddr,
    args: &Args,
    report: mpsc::Receiver<(Instant, u64)>,
) -> anyhow::Result<RawResults> {
    let mut buf = vec![0u8; 65536];
    let mut request = vec![0x42u8; args.message_size.max(1)];
    request[0] = RAW_ECHO;
    let mut rtt = Vec::with_capacity(args.samples);
    for i in 0..args.warmup + args.samples {
        let t0 = Instant::now();
        sock.send_to(&request, server)?;
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) if n == request.len() && buf[0] == RAW_ECHO => break,
                Ok(_) => {}
                // Lost on loopback (rare): ask again.
                Err(e) if would_block(&e) => {
                    if t0.elapsed() > STEP_TIMEOUT {
                        bail!("raw UDP echo timed out");
                    }
                    sock.send_to(&request, server)?;
                }
                Err(e) => return Err(e).context("recv_from"),
            }
        }
        if i >= args.warmup {
            rtt.push(t0.elapsed());
        }
    }

    // Bulk: as many full datagrams as the reference needs for the same payload.
    let size = (args.bulk_mib << 20) as u64;
    let mut datagram = vec![0x17u8; args.datagram];
    datagram[0] = RAW_DATA;
    let total = size.div_ceil(args.datagram as u64);
    let (mut sent, mut acked, mut lost_base) = (0u64, 0u64, 0u64);
    let mut last_progress = Instant::now();
    let t0 = Instant::now();
    while acked + lost_base < total {
        // Keep the window full; anything not acknowledged within 20 ms counts as lost.
        while sent < total && sent.saturating_sub(acked + lost_base) < RAW_WINDOW {
            sock.send_to(&datagram, server)?;
            sent += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok((8, _)) => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&buf[..8]);
                acked = acked.max(u64::from_be_bytes(n));
                last_progress = Instant::now();
            }
            Ok(_) => {}
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(e).context("recv_from"),
        }
        if last_progress.elapsed() > Duration::from_millis(20) {
            lost_base = sent.saturating_sub(acked);
            last_progress = Instant::now();
        }
        if t0.elapsed() > STEP_TIMEOUT {
            bail!("raw UDP bulk transfer timed out");
        }
    }
    sock.send_to(&[RAW_FIN], server)?;
    let (last, bytes) = report
        .recv_timeout(STEP_TIMEOUT)
        .context("raw UDP server report")?;
    Ok(RawResults {
        rtt,
        bulk: last.duration_since(t0),
        bulk_bytes: bytes,
    })
}

fn bench_raw(args: &Args) -> anyhow::Result<RawResults> {
    let server_sock = socket()?;
    let server_addr = server_sock.local_addr()?;
    let client_sock = socket()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let server = {
        let stop = stop.clone();
        thread::Builder::new()
            .name("raw-b".into())
            .spawn(move || raw_server(server_sock, stop, tx))?
    };
    let client_args = args.clone();
    let client = thread::Builder::new()
        .name("raw-a".into())
        .spawn(move || raw_client(client_sock, server_addr, &client_args, rx))?;
    let result = client
        .join()
        .map_err(|_| anyhow::anyhow!("the raw client thread panicked"))?;
    stop.store(true, Ordering::Relaxed);
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the raw server thread panicked"))??;
    result
}

// ------------------------------------------------------------------ report

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.bulk_mib == 0 || args.bulk_mib > 16 {
        bail!("--bulk-mib must be 1..=16 (a bytes channel carries messages up to 16 MiB)");
    }
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    eprintln!(
        "bench: reference endpoints (pairing, {} handshakes, {} round trips, {} MiB)...",
        args.handshakes,
        args.warmup + args.samples,
        args.bulk_mib
    );
    let mut reference = bench_reference(&args)?;
    eprintln!("bench: raw UDP...");
    let mut raw = bench_raw(&args)?;
    reference.rtt.sort();
    raw.rtt.sort();
    reference.handshakes.sort();

    let ref_p50 = percentile(&reference.rtt, 50);
    let ref_p99 = percentile(&reference.rtt, 99);
    let raw_p50 = percentile(&raw.rtt, 50);
    let raw_p99 = percentile(&raw.rtt, 99);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
    let ref_bytes = (args.bulk_mib << 20) as u64;
    let ref_tput = mib_per_s(ref_bytes, reference.bulk);
    let raw_tput = mib_per_s(raw.bulk_bytes, raw.bulk);

    println!();
    println!("SoftBus reference over loopback UDP, one thread per endpoint (release build)");
    println!();
    println!("| measurement | reference (encrypted) | raw UDP | reference / raw |");
    println!("|---|---:|---:|---:|");
    let n = args.samples;
    let size = args.message_size;
    println!(
        "| round trip {size} B, p50 (n={n}) | {} | {} | {:.2}x |",
        micros(ref_p50),
        micros(raw_p50),
        ratio(ref_p50, raw_p50)
    );
    println!(
        "| round trip {size} B, p99 (n={n}) | {} | {} | {:.2}x |",
        micros(ref_p99),
        micros(raw_p99),
        ratio(ref_p99, raw_p99)
    );
    println!(
        "| handshake connect() to Connected, median of {} | {} | - | - |",
        reference.handshakes.len(),
        micros(percentile(&reference.handshakes, 50))
    );
    println!(
        "| bulk {} MiB in {} B datagrams, throughput | {ref_tput:.1} MiB/s | {raw_tput:.1} MiB/s | {:.2}x |",
        args.bulk_mib,
        args.datagram,
        ref_tput / raw_tput.max(1e-9)
    );
    if let Some(path) = &args.znp_emulator {
        eprintln!(
            "bench: serial Zigbee link (emulated coordinator at {} baud)...",
            args.baud
        );
        let mut serial = bench_serial(path, &args)?;
        serial.rtt.sort();
        let (p50, p99) = (percentile(&serial.rtt, 50), percentile(&serial.rtt, 99));
        println!();
        println!(
            "Serial Zigbee link: Z-Stack MT SYS_PING over {} at {} baud, next to the UART wire time of its {} bytes",
            serial.pty, args.baud, serial.bytes
        );
        println!();
        println!("| measurement | measured | physical floor (wire time) | measured / floor |");
        println!("|---|---:|---:|---:|");
        let n = serial.rtt.len();
        println!(
            "| SYS_PING round trip, p50 (n={n}) | {} | {} | {:.2}x |",
            micros(p50),
            micros(serial.wire),
            ratio(p50, serial.wire)
        );
        println!(
            "| SYS_PING round trip, p99 (n={n}) | {} | {} | {:.2}x |",
            micros(p99),
            micros(serial.wire),
            ratio(p99, serial.wire)
        );
    }
    println!();
    println!(
        "reference bulk: {} MiB in {:.1} ms ({} B of payload per datagram); raw bulk: {:.1} MiB received in {:.1} ms",
        args.bulk_mib,
        reference.bulk.as_secs_f64() * 1e3,
        args.datagram - softbus::wire::frame::RECORD_OVERHEAD - softbus::wire::msg::DATA_OVERHEAD,
        raw.bulk_bytes as f64 / (1 << 20) as f64,
        raw.bulk.as_secs_f64() * 1e3
    );
    Ok(())
}
