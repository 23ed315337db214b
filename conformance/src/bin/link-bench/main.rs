//! `link-bench`: SoftBus round trips over each link of the virtual rig (UDP, Zigbee, BLE), each
//! next to a baseline measured on the same kind of link in the same run without SoftBus, and
//! next to the link's physical floor. Usually run by `cargo xtask bench` after the loopback
//! benchmark of the reference (`reference-impl/examples/bench.rs`).
//!
//! It launches the rig once (`rigs/virtual.toml`: `softbusd`, the emulated Zigbee network with
//! the DUT's and the tester's router sticks, the virtual BlueZ) and, per link:
//!
//! * **SoftBus**: the lower tester pairs with the PIXIT PIN, completes the Noise handshake,
//!   opens a message session to the DUT's `echo` service and times `--samples` 64-byte
//!   messages, each sent after the echo of the previous one (after `--warmup` untimed ones),
//!   exactly as the latency cases (SB-LAT-001 and its `@zigbee`, `@ble` variants) do, so the
//!   figures match what `certify` reports;
//! * **baseline**: the same 64 bytes echoed on the same kind of link with no SoftBus on it,
//!   timed through the same tester-side link driver:
//!   - UDP: `UdpLink` to an echo socket on a thread of this process;
//!   - Zigbee: `ZigbeeLink` on router stick `a` of a second `znp-emulator --node a --node b`
//!     (same baud), whose stick `b` is driven by a thread here that sends every
//!     `AF_INCOMING_MSG` payload straight back in an `AF_DATA_REQUEST` (APS acknowledged,
//!     waiting for its `AF_DATA_CONFIRM`, as the DUT's Zigbee driver does);
//!   - BLE: `BleLink` to a second scripted peripheral, `bench-echo`, on the radio socket of the
//!     rig's own vbluez (same air, same connection interval and MTU), which notifies every
//!     reassembled write back. libdbus reads the bus address once per process, so the
//!     baseline has to use the rig's vbluez rather than a second one;
//! * **physical floor**: computed as SB-LAT's: Zigbee, the UART wire time of the MT frames
//!   that carry the frame's segments through both sticks plus their 802.15.4 air time, each
//!   way; BLE, one connection interval (PIXIT `ble_connection_interval_us`); UDP, none;
//! * the ratios SoftBus / baseline and SoftBus / floor, at p50 and p99.
//!
//! Then, with `--time-rounds` above 0 (the default 10), the TIME figures of each link (see
//! `time.rs`): the DUT's offset estimate against the truth, the presentation error, and on UDP
//! the two-device skew when the rig names a time partner.
//!
//! Progress goes to stderr, the tables to stdout. Any failure (the rig does not launch, a
//! pairing or an echo does not complete) exits 2 with what failed and where the DUT's log is.
//!
//! ```text
//! link-bench [--rig rigs/virtual.toml] [--samples 200] [--warmup 10] [--links udp,zigbee,ble]
//!            [--time-rounds 10] [--timed-messages 40]
//! ```

mod time;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, ValueEnum};
use softbus::link::ble::radio::{softbus_service, RadioMsg};
use softbus::link::ble::{AdvertData, SERVICE_UUID, TX_CHAR_UUID};
use softbus::link::sar::{self, Reassembled, Reassembler};
use softbus::link::zigbee::{register_request, RADIUS, SOFTBUS_CLUSTER, SOFTBUS_ENDPOINT, STARTED};
use softbus::link::znp::commands::{status, AfDataConfirm, AfDataRequestReq, AfIncomingMsg};
use softbus::link::znp::start::start_stick;
use softbus::link::znp::{PortError, ZnpPort};
use softbus::wire::msg::{ChannelKind, Message, MsgBody};
use softbus_conformance::case::Ctx;
use softbus_conformance::run::workspace_root;
use softbus_conformance::tester::dut::{locate_znp_emulator, DutHandle};
use softbus_harness::link::ble::BleLink;
use softbus_harness::link::udp::UdpLink;
use softbus_harness::link::zigbee::{wire_time, ZigbeeLink};
use softbus_harness::link::{DatagramLink, Transport};
use softbus_harness::rig::{BleTarget, DutKind, Rig};

/// Size of every echoed payload.
const SAMPLE_BYTES: usize = 64;

/// The baseline peripheral's name and address on the rig's virtual air.
const ECHO_NAME: &str = "bench-echo";
const ECHO_ADDRESS: &str = "C2:BE:4C:00:00:01";

/// `AF_DATA_REQUEST` option: ask for an APS acknowledgement (as the SoftBus Zigbee binding).
const AF_ACK_REQUEST: u8 = 0x10;

/// SoftBus round trips over each link of the virtual rig, next to a baseline on the same link
/// without SoftBus and the link's physical floor.
#[derive(Debug, Parser)]
#[command(name = "link-bench")]
struct Args {
    /// The rig to launch (its DUT must be virtual).
    #[arg(long)]
    rig: Option<PathBuf>,
    /// The DUT of the rig (default: its only one).
    #[arg(long)]
    dut: Option<String>,
    /// Round trips timed per link and measurement (after the warm-up).
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Round trips sent before timing.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// The links to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Link::Udp, Link::Zigbee, Link::Ble])]
    links: Vec<Link>,
    /// TIME: clock estimates taken per link, one per synchronization round (1 s apart); 0
    /// leaves the TIME figures out.
    #[arg(long, default_value_t = 10)]
    time_rounds: u32,
    /// TIME: timed stream messages presented per link.
    #[arg(long, default_value_t = 40)]
    timed_messages: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Link {
    Udp,
    Zigbee,
    Ble,
}

impl Link {
    fn transport(self) -> Transport {
        match self {
            Link::Udp => Transport::Udp,
            Link::Zigbee => Transport::Zigbee,
            Link::Ble => Transport::Ble,
        }
    }
}

/// What one link measured.
struct Row {
    link: Transport,
    softbus: Vec<Duration>,
    /// The SoftBus frame carrying one sample, bytes.
    frame_len: usize,
    baseline: Vec<Duration>,
    baseline_what: String,
    /// The floor of the SoftBus frame and of the baseline's datagram, with how it is computed.
    floor: Option<Floor>,
}

/// A link's physical floor for one round trip.
struct Floor {
    softbus: Duration,
    baseline: Duration,
    how: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let tmp = std::env::temp_dir().join(format!("softbus-link-bench-{}", std::process::id()));
    match run(&args, &tmp) {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&tmp);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("link-bench: error: {e:#}");
            let log = tmp.join("dut.log");
            if log.exists() {
                eprintln!(
                    "link-bench: the logs of the DUT and its helpers are kept in {}",
                    tmp.display()
                );
            } else {
                let _ = std::fs::remove_dir_all(tmp);
            }
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args, tmp: &Path) -> anyhow::Result<()> {
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let rig_path = args
        .rig
        .clone()
        .unwrap_or_else(|| workspace_root().join("rigs/virtual.toml"));
    let rig = Rig::load(&rig_path)?;
    let dut = rig.select_dut(args.dut.as_deref())?.clone();
    if dut.kind != DutKind::Virtual {
        bail!(
            "DUT '{}' in {} is external: link-bench launches a virtual rig (its baselines use the rig's virtual radios); use rigs/virtual.toml",
            dut.name,
            rig_path.display()
        );
    }
    let pics = rig.require_pics(&dut.name)?;
    std::fs::create_dir_all(tmp).with_context(|| tmp.display().to_string())?;
    eprintln!(
        "link-bench: launching DUT '{}' of {} ...",
        dut.name,
        rig_path.display()
    );
    let mut handle = DutHandle::new(&dut, None, tmp).map_err(|e| anyhow!(e))?;
    handle
        .ensure_running()
        .map_err(|e| anyhow!("launching the rig: {e}"))?;
    handle.partner = match &dut.pixit.time_partner {
        Some(name) => Some(rig.dut(name)?.clone()),
        None => None,
    };
    let mut rows = Vec::new();
    let mut time_rows = Vec::new();
    for &link in &args.links {
        let t = link.transport();
        let r = measure(&mut handle, &pics, link, args, tmp).with_context(|| format!("{t}"))?;
        if args.time_rounds > 0 {
            eprintln!(
                "link-bench: {t}: TIME: {} estimates, {} timed messages ...",
                args.time_rounds, args.timed_messages
            );
            // Half the shortest round trip: what path asymmetry alone can cost an estimate.
            let floor = r.softbus.iter().min().map(|d| *d / 2);
            let tr = time::measure(
                &mut handle,
                &pics,
                t,
                args.time_rounds,
                args.timed_messages,
                floor,
            )
            .with_context(|| format!("{t}: TIME"))?;
            time_rows.push(tr);
        }
        rows.push(r);
    }
    let skew = if args.time_rounds > 0 && args.links.contains(&Link::Udp) {
        eprintln!("link-bench: udp: TIME: two devices (SB-TIME-007) ...");
        time::skew(&mut handle, &pics).context("udp: two-device skew")?
    } else {
        None
    };
    handle.stop();
    print_table(&rows, args, &rig_path, &dut.name);
    if args.time_rounds > 0 {
        time::print(&time_rows, skew.as_ref());
    }
    Ok(())
}

fn measure(
    handle: &mut DutHandle,
    pics: &softbus_harness::pics::Pics,
    link: Link,
    args: &Args,
    tmp: &Path,
) -> anyhow::Result<Row> {
    let t = link.transport();
    let n = args.warmup + args.samples;
    eprintln!("link-bench: {t}: SoftBus: pairing, handshake, echo session, {n} round trips ...");
    let started = Instant::now();
    let (softbus, frame_len) = softbus_echo(handle, pics, t, args)?;
    eprintln!(
        "link-bench: {t}: SoftBus done in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let timeout = handle.dut.pixit.step_timeout();
    let (baseline, baseline_what) = match link {
        Link::Udp => {
            eprintln!("link-bench: udp: baseline: raw UDP echo, {n} round trips ...");
            (
                udp_baseline(args)?,
                "raw UDP echo by a thread of the bench".to_string(),
            )
        }
        Link::Zigbee => {
            let baud = handle
                .zigbee
                .as_ref()
                .map(|z| z.baud)
                .context("the rig has no [dut.zigbee]")?;
            eprintln!("link-bench: zigbee: baseline: raw APS echo between two router sticks of a second znp-emulator at {baud} baud, {n} round trips ...");
            (
                zigbee_baseline(baud, timeout, args, tmp)?,
                format!("raw APS echo stick a -> b -> a, separate znp-emulator at {baud} baud"),
            )
        }
        Link::Ble => {
            eprintln!(
                "link-bench: ble: baseline: raw GATT echo by peripheral '{ECHO_NAME}' on the rig's vbluez, {n} round trips ..."
            );
            (
                ble_baseline(handle, timeout, args, tmp)?,
                format!("raw GATT echo by peripheral '{ECHO_NAME}' on the rig's vbluez"),
            )
        }
    };
    eprintln!(
        "link-bench: {t}: baseline done in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let floor = match link {
        Link::Udp => None,
        Link::Zigbee => handle
            .zigbee
            .as_ref()
            .and_then(|z| zigbee_floor(frame_len, SAMPLE_BYTES, z.baud)),
        Link::Ble => handle.dut.pixit.ble_connection_interval_us.map(|us| {
            let d = Duration::from_micros(us);
            Floor {
                softbus: d,
                baseline: d,
                how: format!(
                    "one BLE connection interval, {:.2} ms (PIXIT ble_connection_interval_us)",
                    d.as_secs_f64() * 1e3
                ),
            }
        }),
    };
    Ok(Row {
        link: t,
        softbus,
        frame_len,
        baseline,
        baseline_what,
        floor,
    })
}

/// A sample's payload: its number, padded to 64 bytes (as the latency cases send).
fn sample(n: usize) -> Vec<u8> {
    let mut p = format!("latency sample {n:08} ").into_bytes();
    p.resize(SAMPLE_BYTES, b'.');
    p
}

/// SoftBus round trips through the DUT's `echo` service on a message session over `t`, timed
/// as SB-LAT-001 times them; also the length of the frame carrying one sample.
fn softbus_echo(
    handle: &mut DutHandle,
    pics: &softbus_harness::pics::Pics,
    t: Transport,
    args: &Args,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut ctx = Ctx::new(handle, pics.clone(), 1, t);
    let timeout = ctx.timeout();
    let (_lt, mut c, sid) = ctx
        .session("echo", ChannelKind::Message)
        .context("preamble (reset, pair with the PIXIT PIN, handshake, open an echo session)")?;
    let probe = Message {
        rseq: 0,
        body: MsgBody::Data {
            session_id: sid,
            msg_id: 0,
            frag_index: 0,
            frag_count: 1,
            payload: sample(0),
        },
    };
    let frame_len = c.seal_at(&probe, 0).len();
    let mut rtt = Vec::with_capacity(args.samples);
    for n in 1..=args.warmup + args.samples {
        let payload = sample(n);
        let t0 = Instant::now();
        c.send_data(sid, n as u32, &payload, ChannelKind::Message)
            .with_context(|| format!("sending sample {n}"))?;
        c.expect(timeout, "the echo", |b| {
            matches!(b, MsgBody::Data { session_id, payload: p, .. } if *session_id == sid && *p == payload)
        })
        .with_context(|| format!("the echo of sample {n}"))?;
        if n > args.warmup {
            rtt.push(t0.elapsed());
        }
    }
    Ok((rtt, frame_len))
}

/// Times `warmup + samples` 64-byte echoes over `link`, each datagram checked.
fn echo_over(
    link: &dyn DatagramLink,
    args: &Args,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let mut rtt = Vec::with_capacity(args.samples);
    for n in 1..=args.warmup + args.samples {
        let payload = sample(n);
        let t0 = Instant::now();
        link.send(&payload)
            .with_context(|| format!("sending baseline sample {n}"))?;
        loop {
            match link.recv(timeout)? {
                Some(d) if d == payload => break,
                // An echo of an earlier sample that came late: not this one.
                Some(_) => continue,
                None => bail!(
                    "no echo of baseline sample {n} within {timeout:?} from {}",
                    link.peer()
                ),
            }
        }
        if n > args.warmup {
            rtt.push(t0.elapsed());
        }
    }
    Ok(rtt)
}

/// A background thread and the flag that stops it.
struct Echoer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Echoer {
    fn spawn(
        name: &str,
        body: impl FnOnce(Arc<AtomicBool>) -> anyhow::Result<()> + Send + 'static,
    ) -> anyhow::Result<Echoer> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(flag))?;
        Ok(Echoer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and returns its error, if it failed.
    fn finish(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("the echo thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Echoer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Raw UDP: 64-byte datagrams through `UdpLink` to an echo socket on a thread.
fn udp_baseline(args: &Args) -> anyhow::Result<Vec<Duration>> {
    let sock = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let addr = sock.local_addr()?;
    let echoer = Echoer::spawn("udp-echo", move |stop| {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    sock.send_to(&buf[..n], from)?;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e).context("echo socket"),
            }
        }
        Ok(())
    })?;
    let link = UdpLink::bind(SocketAddr::from(([127, 0, 0, 1], 0)), addr)?;
    let rtt = echo_over(&link, args, Duration::from_secs(2));
    echoer.finish()?;
    rtt
}

/// Starts `argv` with piped stdin (so `--exit-on-stdin-eof` ends it with us) and returns it
/// with its first stdout line, parsed as JSON.
fn spawn_announcing(
    prog: &Path,
    argv: &[&str],
    log: &Path,
) -> anyhow::Result<(Child, serde_json::Value)> {
    let log_file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)?;
    let mut child = Command::new(prog)
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start {}", prog.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Keep draining, so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let v = serde_json::from_str(line.trim()).with_context(|| {
        format!(
            "{} announced {:?}, not a JSON object",
            prog.display(),
            line.trim()
        )
    })?;
    Ok((child, v))
}

/// Brings the stick on `path` onto its network with the SoftBus endpoint registered, as the
/// SoftBus Zigbee binding does.
fn stick_up(path: &str, baud: u32, timeout: Duration) -> anyhow::Result<ZnpPort> {
    start_stick(path, baud, timeout, STARTED, &register_request())
        .map_err(|e| anyhow!("stick {path}: {e}"))
}

/// Raw APS: `ZigbeeLink` on stick `a` of a second emulator to stick `b`, whose host (a thread
/// here) sends every payload back unchanged.
fn zigbee_baseline(
    baud: u32,
    timeout: Duration,
    args: &Args,
    tmp: &Path,
) -> anyhow::Result<Vec<Duration>> {
    let emulator = locate_znp_emulator().map_err(|e| anyhow!(e))?;
    let baud_arg = baud.to_string();
    let (mut child, ann) = spawn_announcing(
        &emulator,
        &[
            "--baud",
            &baud_arg,
            "--node",
            "a",
            "--node",
            "b",
            "--exit-on-stdin-eof",
        ],
        &tmp.join("baseline-znp.log"),
    )?;
    let result = (|| {
        let field = |k: &str| {
            ann.get(k)
                .cloned()
                .with_context(|| format!("znp-emulator announced no {k}: {ann}"))
        };
        let pty = |k: &str| -> anyhow::Result<String> {
            field(k)?
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{k} is not a path"))
        };
        let nwk = |k: &str| -> anyhow::Result<u16> {
            field(k)?
                .as_u64()
                .and_then(|v| u16::try_from(v).ok())
                .with_context(|| format!("{k} is not a network address"))
        };
        let (a_pty, a_nwk) = (pty("node_a_pty")?, nwk("node_a_nwk")?);
        let (b_pty, b_nwk) = (pty("node_b_pty")?, nwk("node_b_nwk")?);
        let mut b = stick_up(&b_pty, baud, timeout)?;
        let echoer = Echoer::spawn("aps-echo", move |stop| {
            let mut trans_id = 0u8;
            while !stop.load(Ordering::Relaxed) {
                let m = match b.wait_for::<AfIncomingMsg>(Duration::from_millis(50), |m| {
                    m.dst_endpoint == SOFTBUS_ENDPOINT && m.cluster_id == SOFTBUS_CLUSTER
                }) {
                    Ok(m) => m,
                    Err(PortError::Timeout { .. }) => continue,
                    Err(e) => bail!("stick b: {e}"),
                };
                trans_id = trans_id.wrapping_add(1);
                let rsp = b.call(&AfDataRequestReq {
                    dst_addr: m.src_addr,
                    dst_endpoint: m.src_endpoint,
                    src_endpoint: SOFTBUS_ENDPOINT,
                    cluster_id: SOFTBUS_CLUSTER,
                    trans_id,
                    options: AF_ACK_REQUEST,
                    radius: RADIUS,
                    data: m.data,
                })?;
                if rsp.status != status::SUCCESS {
                    bail!("stick b: AF_DATA_REQUEST refused with {:#04x}", rsp.status);
                }
                let c = b.wait_for::<AfDataConfirm>(timeout * 3, |c| c.trans_id == trans_id)?;
                if c.status != status::SUCCESS {
                    bail!(
                        "stick b: echo not delivered: AF_DATA_CONFIRM {:#04x}",
                        c.status
                    );
                }
            }
            Ok(())
        })?;
        let link =
            ZigbeeLink::open(&a_pty, baud, b_nwk, timeout).context("stick a (the timing side)")?;
        if link.own_nwk() != a_nwk {
            bail!(
                "stick a says it is {:#06x}, the emulator announced {a_nwk:#06x}",
                link.own_nwk()
            );
        }
        let rtt = echo_over(&link, args, timeout * 3);
        drop(link);
        let echoed = echoer.finish();
        let rtt = rtt?;
        echoed?;
        Ok(rtt)
    })();
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The radio socket of the rig's vbluez, from the `[ble] radio` key of the config the rig
/// wrote for the DUT (`{workdir}/softbusd.toml`; `{vbluez_radio}` in rigs/virtual.toml).
fn vbluez_radio(tmp: &Path) -> anyhow::Result<String> {
    let path = tmp.join("dut").join("softbusd.toml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut in_ble = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_ble = line == "[ble]";
        } else if in_ble {
            if let Some(v) = line.strip_prefix("radio") {
                let v = v.trim_start().trim_start_matches('=').trim();
                return Ok(v.trim_matches('"').to_owned());
            }
        }
    }
    bail!(
        "{} has no [ble] radio: the rig's DUT is not a BLE peripheral on a vbluez radio",
        path.display()
    )
}

/// A scripted peripheral on a vbluez radio socket: advertises the SoftBus service as
/// [`ECHO_NAME`] and notifies every reassembled write back.
struct EchoPeripheral {
    stream: UnixStream,
    thread: Option<JoinHandle<()>>,
}

fn radio_send(stream: &Mutex<UnixStream>, msg: &RadioMsg) -> std::io::Result<()> {
    stream
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .write_all(msg.to_line().as_bytes())
}

impl EchoPeripheral {
    fn start(radio: &str) -> anyhow::Result<EchoPeripheral> {
        let stream = UnixStream::connect(radio)
            .with_context(|| format!("connecting to the vbluez radio socket {radio}"))?;
        let writer = Mutex::new(stream.try_clone()?);
        let advert = AdvertData {
            version: 1,
            pairable: true,
            device_hash: [0xbe, 0x4c, 0xec, 0x40],
            capabilities: 0,
        };
        let mut service_data = std::collections::BTreeMap::new();
        service_data.insert(SERVICE_UUID.to_owned(), hex::encode(advert.emit()));
        radio_send(
            &writer,
            &RadioMsg::Advertise {
                address: ECHO_ADDRESS.into(),
                name: ECHO_NAME.into(),
                service_uuids: vec![SERVICE_UUID.into()],
                service_data,
                services: vec![softbus_service()],
            },
        )?;
        let reader = stream.try_clone()?;
        let thread = std::thread::Builder::new()
            .name("gatt-echo".into())
            .spawn(move || {
                let mut seg = 20;
                let mut counter = 0u8;
                let mut reasm = Reassembler::new(65_535, Duration::from_secs(2));
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    match RadioMsg::from_line(&line) {
                        Ok(RadioMsg::Connected { mtu, .. }) => seg = usize::from(mtu) - 3,
                        Ok(RadioMsg::Write { data, .. }) => {
                            let Ok(data) = hex::decode(data) else {
                                continue;
                            };
                            if let Reassembled::Datagram(d) = reasm.handle(Instant::now(), &data) {
                                for s in sar::segment(&d, counter, seg).unwrap_or_default() {
                                    let _ = radio_send(
                                        &writer,
                                        &RadioMsg::Notify {
                                            char_uuid: TX_CHAR_UUID.into(),
                                            data: hex::encode(s),
                                        },
                                    );
                                }
                                counter = counter.wrapping_add(1);
                            }
                        }
                        _ => {}
                    }
                }
            })?;
        Ok(EchoPeripheral {
            stream,
            thread: Some(thread),
        })
    }
}

impl Drop for EchoPeripheral {
    /// Powers the peripheral off (closes its radio socket).
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Raw GATT: `BleLink` to [`EchoPeripheral`] on the rig's own vbluez.
fn ble_baseline(
    handle: &DutHandle,
    timeout: Duration,
    args: &Args,
    tmp: &Path,
) -> anyhow::Result<Vec<Duration>> {
    let ble = handle.ble.as_ref().context("the rig has no [dut.ble]")?;
    let radio = vbluez_radio(tmp)?;
    let peripheral = EchoPeripheral::start(&radio)?;
    let target = BleTarget {
        address: Some(ECHO_ADDRESS.into()),
        name: Some(ECHO_NAME.into()),
        dbus: ble.dbus.clone(),
        adapter: ble.adapter.clone(),
    };
    let link = BleLink::connect(&target, timeout.max(Duration::from_secs(10)))
        .with_context(|| format!("connecting to the baseline peripheral '{ECHO_NAME}'"))?;
    let rtt = echo_over(&link, args, timeout);
    drop(link);
    drop(peripheral);
    rtt
}

/// The Zigbee round-trip floor of a `softbus_len`-byte and a `baseline_len`-byte datagram, as
/// SB-LAT reports it ([`wire_time`] both ways).
fn zigbee_floor(softbus_len: usize, baseline_len: usize, baud: u32) -> Option<Floor> {
    let sb = wire_time(softbus_len, baud)?;
    let base = wire_time(baseline_len, baud)?;
    Some(Floor {
        softbus: sb.time * 2,
        baseline: base.time * 2,
        how: format!(
            "UART wire time of the MT frames on both sticks at {baud} baud + 802.15.4 air time, both ways: \
             SoftBus frame {softbus_len} B = {} segment(s), {} B of MT frames and {} B on air per direction; \
             baseline {baseline_len} B = {} segment(s), {} B and {} B",
            sb.segments, sb.uart_bytes, sb.air_bytes, base.segments, base.uart_bytes, base.air_bytes
        ),
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// µs below a millisecond, ms above.
fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64().max(1e-12))
}

fn print_table(rows: &[Row], args: &Args, rig: &Path, dut: &str) {
    println!();
    println!(
        "SoftBus over each link of {} (DUT '{dut}', softbusd release build): {SAMPLE_BYTES}-byte echo on a message session, \
         n={} after {} warm-up, next to a baseline on the same link without SoftBus and the link's physical floor",
        rig.display(),
        args.samples,
        args.warmup
    );
    println!();
    println!("| link | percentile | SoftBus | baseline | SoftBus / baseline | physical floor | SoftBus / floor |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut notes = Vec::new();
    for r in rows {
        let mut s = r.softbus.clone();
        let mut b = r.baseline.clone();
        s.sort();
        b.sort();
        for p in [50, 99] {
            let (sp, bp) = (percentile(&s, p), percentile(&b, p));
            let (floor, vs_floor) = match &r.floor {
                Some(f) => (fmt(f.softbus), ratio(sp, f.softbus)),
                None => ("-".into(), "-".into()),
            };
            println!(
                "| {} | p{p} | {} | {} | {} | {floor} | {vs_floor} |",
                r.link,
                fmt(sp),
                fmt(bp),
                ratio(sp, bp),
            );
        }
        notes.push(format!(
            "{}: SoftBus frame {} B per sample; baseline: {} ({SAMPLE_BYTES} B datagrams)",
            r.link, r.frame_len, r.baseline_what
        ));
        match &r.floor {
            Some(f) => notes.push(format!(
                "{}: floor: {}; the baseline's floor is {} (baseline p50 / its floor {})",
                r.link,
                f.how,
                fmt(f.baseline),
                ratio(percentile(&b, 50), f.baseline)
            )),
            None => notes.push(format!(
                "{}: no physical floor (loopback has none to state)",
                r.link
            )),
        }
    }
    println!();
    for n in notes {
        println!("- {n}");
    }
}
