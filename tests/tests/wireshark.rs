//! The Wireshark dissector `tools/wireshark/softbus.lua` against real SoftBus traffic.
//!
//! Three reference endpoints (sans IO, virtual time) pair, connect, open an echo session, move
//! known payloads, query capabilities, take a permission through grant, use and revocation,
//! rekey, close, and have a stranger's handshake rejected. Their datagrams are written into pcap
//! files (UDP on the default port 5700, UDP on another port, TCP with length prefixes) together
//! with a key log in the harness's `keys.log` format, and `tshark` dissects them with the Lua
//! script. Every RECORD that the dissector decrypts is checked against the reference codec.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use softbus::capability::{Capability, Metrics};
use softbus::crypto::RecordKey;
use softbus::endpoint::{Config, Endpoint, Event, LinkAddr, PromptPolicy};
use softbus::trust::TrustStore;
use softbus::wire::frame::{Body, Frame};
use softbus::wire::msg::{ChannelKind, Message, MsgBody, PermResult, Qos, Scope};
use softbus::wire::Code;
use softbus::{DeviceId, Identity};
use softbus_e2e::{output_within, require_debian_tool, workspace_root, PcapWriter};

const PAYLOAD_1: &str = "hello wireshark, this is softbus";
const PAYLOAD_2: &str = "after the rekey";
/// The port the dissector registers by default.
const DEFAULT_PORT: u16 = 5700;

fn config(name: &str, pin: Option<&str>) -> Config {
    Config {
        name: name.into(),
        hb_interval: Duration::from_millis(200),
        pin: pin.map(str::to_owned),
        prompt_policy: PromptPolicy::Approve,
        prompt_timeout: Duration::from_millis(500),
        lockout: Duration::from_secs(3),
        capabilities: vec![Capability {
            name: "speaker.main".into(),
            kind: "speaker".into(),
            metrics: Metrics::default(),
        }],
        ..Config::default()
    }
}

/// One datagram as it crossed the (virtual) wire.
#[derive(Clone)]
struct Datagram {
    at: Duration,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    data: Vec<u8>,
}

/// Endpoints joined in memory; every datagram is recorded.
struct Net {
    start: Instant,
    now: Instant,
    nodes: Vec<(SocketAddrV4, Endpoint, Vec<Event>)>,
    wire: Vec<Datagram>,
}

impl Net {
    fn new() -> Net {
        let now = Instant::now();
        Net {
            start: now,
            now,
            nodes: Vec::new(),
            wire: Vec::new(),
        }
    }

    fn add(&mut self, cfg: Config, seed: u8, port: u16) -> usize {
        let ep = Endpoint::new(
            cfg,
            Identity::from_secret([seed; 32]),
            TrustStore::new(),
            [seed; 32],
            self.now,
            1_700_000_000,
        );
        self.nodes.push((
            SocketAddrV4::new([127, 0, 0, 1].into(), port),
            ep,
            Vec::new(),
        ));
        self.nodes.len() - 1
    }

    fn addr(&self, i: usize) -> LinkAddr {
        LinkAddr::Ip(SocketAddr::V4(self.nodes[i].0))
    }

    fn id(&self, i: usize) -> DeviceId {
        self.nodes[i].1.identity().device_id()
    }

    fn ep(&mut self, i: usize) -> &mut Endpoint {
        &mut self.nodes[i].1
    }

    /// Move datagrams and fire timers for `limit` of virtual time.
    fn drive_for(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].1.poll_transmit() {
                    progressed = true;
                    let LinkAddr::Ip(SocketAddr::V4(dst)) = t.dst else {
                        panic!("unexpected destination {:?}", t.dst);
                    };
                    self.wire.push(Datagram {
                        at: self.now - self.start,
                        src: self.nodes[i].0,
                        dst,
                        data: t.data.clone(),
                    });
                    let from = LinkAddr::Ip(SocketAddr::V4(self.nodes[i].0));
                    if let Some(j) = self.nodes.iter().position(|n| n.0 == dst) {
                        let now = self.now;
                        self.nodes[j].1.handle_datagram(now, from, &t.data);
                    }
                }
                while let Some(e) = self.nodes[i].1.poll_event() {
                    self.nodes[i].2.push(e);
                }
            }
            if progressed {
                continue;
            }
            let next = self.nodes.iter().filter_map(|n| n.1.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for n in &mut self.nodes {
                        n.1.handle_timeout(now);
                    }
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
    }

    fn drive(&mut self) {
        self.drive_for(Duration::from_millis(50));
    }

    fn events(&mut self, i: usize) -> Vec<Event> {
        std::mem::take(&mut self.nodes[i].2)
    }
}

/// The traffic of the scenario and the key log lines for it.
struct Traffic {
    wire: Vec<Datagram>,
    /// Receiver conn_id -> epoch-0 key, as logged.
    keys: BTreeMap<u32, [u8; 32]>,
    /// Index in `wire` of a RECORD copy whose ciphertext was tampered with.
    tampered: usize,
}

impl Traffic {
    fn keylog(&self) -> String {
        self.keys
            .iter()
            .map(|(id, k)| format!("SOFTBUS_KEY {id:08x} {}\n", hex(k)))
            .collect()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn scenario() -> Traffic {
    let mut net = Net::new();
    let a = net.add(config("alpha", None), 1, 40001);
    let b = net.add(config("bravo", Some("123456")), 2, DEFAULT_PORT);
    let c = net.add(config("stranger", None), 3, 40003);
    let (ida, idb) = (net.id(a), net.id(b));
    let b_addr = net.addr(b);

    // Pairing, then the Noise handshake.
    let now = net.now;
    net.ep(a).pair(now, b_addr.clone(), "123456").expect("pair");
    net.drive();
    let now = net.now;
    net.ep(a).connect(now, b_addr.clone());
    net.drive();
    assert!(
        net.events(a)
            .iter()
            .any(|e| matches!(e, Event::Connected { .. })),
        "alpha did not connect"
    );

    // The key log, taken at epoch 0 as the harness does: one line per direction.
    let mut keys = BTreeMap::new();
    for (local, remote, tx, rx) in net.ep(a).session_keys() {
        keys.insert(remote, unhex(&tx).try_into().expect("32-byte key"));
        keys.insert(local, unhex(&rx).try_into().expect("32-byte key"));
    }
    assert_eq!(keys.len(), 2, "one established connection expected");

    // Echo session with a known payload.
    let now = net.now;
    let sid = net
        .ep(a)
        .open_session(now, idb, "echo", ChannelKind::Message, Qos::Interactive)
        .expect("open_session");
    net.drive();
    let now = net.now;
    net.ep(a)
        .send(now, idb, sid, PAYLOAD_1.as_bytes())
        .expect("send");
    net.drive();
    let echoed: Vec<Vec<u8>> = net
        .events(a)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { data, .. } => Some(data),
            _ => None,
        })
        .collect();
    assert_eq!(echoed, vec![PAYLOAD_1.as_bytes().to_vec()]);

    // Capabilities and a permission: grant, use, revoke.
    let now = net.now;
    net.ep(a).query_capabilities(now, idb).expect("query");
    net.drive();
    let now = net.now;
    net.ep(a)
        .request_permission(now, idb, "speaker.main", Scope::UntilRevoked, 0)
        .expect("request_permission");
    net.drive();
    let grant = net
        .events(a)
        .into_iter()
        .find_map(|e| match e {
            Event::PermissionResult {
                result: PermResult::Granted,
                grant_id,
                ..
            } => Some(grant_id),
            _ => None,
        })
        .expect("granted");
    let now = net.now;
    net.ep(a)
        .invoke(now, idb, "speaker.main", grant, b"play")
        .expect("invoke");
    net.drive();
    let now = net.now;
    net.ep(b).revoke(now, grant).expect("revoke");
    net.drive();

    // Rekeys: alpha once, bravo twice; then the second payload goes round the echo service.
    net.ep(a).rekey(idb).expect("rekey");
    net.ep(b).rekey(ida).expect("rekey");
    net.ep(b).rekey(ida).expect("rekey");
    let now = net.now;
    net.ep(a)
        .send(now, idb, sid, PAYLOAD_2.as_bytes())
        .expect("send");
    net.drive();
    let now = net.now;
    net.ep(a)
        .close_session(now, idb, sid, Code::NormalClose)
        .expect("close_session");
    net.drive();
    let now = net.now;
    net.ep(a)
        .disconnect(now, idb, Code::NormalClose)
        .expect("disconnect");
    net.drive();

    // A stranger that never paired: its handshake with bravo is rejected (UNKNOWN_PEER).
    let now = net.now;
    net.ep(c).connect(now, b_addr);
    net.drive();
    assert!(
        net.events(c).iter().any(|e| matches!(
            e,
            Event::HandshakeFailed {
                code: Code::UnknownPeer,
                ..
            }
        )),
        "the stranger's handshake was not rejected"
    );

    // A tampered copy of alpha's first DATA record: the tag check must fail.
    let mut wire = net.wire;
    let first_record = wire
        .iter()
        .position(|d| d.src.port() == 40001 && d.data.len() > 60 && d.data[1] == 0x20)
        .expect("a record from alpha");
    let mut bad = wire[first_record].clone();
    bad.data[20] ^= 0x01;
    bad.at = wire.last().map(|d| d.at).unwrap_or_default() + Duration::from_millis(1);
    wire.push(bad);
    let tampered = wire.len() - 1;
    Traffic {
        wire,
        keys,
        tampered,
    }
}

/// What the reference codec says a datagram is: frame type, and for a RECORD the inner message
/// (decrypted with the logged key, rekeyed to the record's epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    frame_type: u8,
    inner: Option<Message>,
}

fn expected(t: &Traffic, d: &Datagram) -> Expected {
    let frame = Frame::parse(&d.data).expect("the endpoints send well-formed frames");
    let frame_type = frame.frame_type() as u8;
    let inner = match &frame.body {
        Body::Record {
            epoch,
            seq,
            ciphertext,
        } => t.keys.get(&frame.conn_id).and_then(|k| {
            let mut key = RecordKey::new(*k);
            for _ in 0..*epoch {
                key = key.rekeyed();
            }
            key.open(frame.conn_id, *seq, ciphertext)
                .ok()
                .map(|pt| Message::parse(&pt).expect("well-formed inner message"))
        }),
        _ => None,
    };
    Expected { frame_type, inner }
}

/// Make sure `tshark` is there (installing it as root), or fail with the command to run.
fn tshark() -> PathBuf {
    require_debian_tool("tshark", "tshark").unwrap_or_else(|e| panic!("{e:#}"))
}

fn lua_script() -> PathBuf {
    workspace_root().join("tools/wireshark/softbus.lua")
}

/// One row of `tshark -T fields` output per packet, by field name.
type Row = HashMap<String, String>;

const FIELDS: [&str; 12] = [
    "frame.number",
    "softbus.frame_type",
    "softbus.conn_id",
    "softbus.epoch",
    "softbus.tag_status",
    "softbus.msg.type",
    "softbus.msg.rseq",
    "softbus.reject_code",
    "softbus.data.text",
    "softbus.session.service",
    "softbus.cap.name",
    "_ws.col.Info",
];

fn run_tshark(pcap: &Path, extra: &[String]) -> Vec<Row> {
    let mut cmd = Command::new(tshark());
    cmd.arg("-r")
        .arg(pcap)
        .arg("-X")
        .arg(format!("lua_script:{}", lua_script().display()))
        .args(extra)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
        ]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = output_within(&mut cmd, Duration::from_secs(120)).expect("running tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {stderr}");
    assert!(
        !stderr.contains("Lua: Error"),
        "the Lua dissector failed: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            FIELDS
                .iter()
                .zip(l.split('\t').chain(std::iter::repeat("")))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn run_tshark_verbose(pcap: &Path, extra: &[String]) -> String {
    let mut cmd = Command::new(tshark());
    cmd.arg("-r")
        .arg(pcap)
        .arg("-X")
        .arg(format!("lua_script:{}", lua_script().display()))
        .args(extra)
        .arg("-V");
    let out = output_within(&mut cmd, Duration::from_secs(120)).expect("running tshark");
    assert!(
        out.status.success(),
        "tshark -V failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parse a numeric field as tshark prints it (decimal, or 0x-prefixed hex).
fn num(s: &str) -> Option<u64> {
    let s = s.split('|').next()?.trim();
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

fn keylog_pref(path: &Path) -> Vec<String> {
    vec![
        "-o".into(),
        format!("softbus.keylog_file:{}", path.display()),
    ]
}

struct Files {
    pcap: PathBuf,
    keys: PathBuf,
}

/// A directory for one test's capture and key log, left in place (under `target/tmp/`) so a
/// failure can be looked at in Wireshark.
fn evidence_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("wireshark")
        .join(test);
    std::fs::create_dir_all(&dir).expect("creating the evidence directory");
    dir
}

fn write_udp(t: &Traffic, test: &str, port_map: impl Fn(u16) -> u16) -> Files {
    let dir = evidence_dir(test);
    let mut w = PcapWriter::new();
    let base = Duration::from_secs(1_700_000_000);
    for d in &t.wire {
        let src = SocketAddrV4::new(*d.src.ip(), port_map(d.src.port()));
        let dst = SocketAddrV4::new(*d.dst.ip(), port_map(d.dst.port()));
        w.udp(base + d.at, src, dst, &d.data);
    }
    let pcap = dir.join("capture.pcap");
    w.write(&pcap).expect("writing pcap");
    let keys = dir.join("keys.log");
    std::fs::write(&keys, t.keylog()).expect("writing keys.log");
    Files { pcap, keys }
}

/// Check every packet's dissection against the reference codec.
fn check_rows(t: &Traffic, rows: &[Row], decrypting: bool) {
    assert_eq!(rows.len(), t.wire.len(), "one line per packet");
    for (i, (row, d)) in rows.iter().zip(&t.wire).enumerate() {
        let e = expected(t, d);
        let info = &row["_ws.col.Info"];
        assert_eq!(
            num(&row["softbus.frame_type"]),
            Some(u64::from(e.frame_type)),
            "packet {}: frame type ({info})",
            i + 1
        );
        if e.frame_type != 0x20 {
            continue;
        }
        if i == t.tampered {
            let want = if decrypting { 2 } else { 0 };
            assert_eq!(
                num(&row["softbus.tag_status"]),
                Some(want),
                "packet {}: tampered record ({info})",
                i + 1
            );
            assert!(
                row["softbus.msg.type"].is_empty(),
                "packet {}: a tampered record was dissected",
                i + 1
            );
            continue;
        }
        if !decrypting {
            assert_eq!(
                num(&row["softbus.tag_status"]),
                Some(0),
                "packet {}: no key ({info})",
                i + 1
            );
            assert!(row["softbus.msg.type"].is_empty());
            continue;
        }
        let m = e
            .inner
            .expect("the reference decrypts every untampered record");
        assert_eq!(
            num(&row["softbus.tag_status"]),
            Some(1),
            "packet {}: tag verified ({info})",
            i + 1
        );
        assert_eq!(
            num(&row["softbus.msg.type"]),
            Some(u64::from(m.body.msg_type() as u8)),
            "packet {}: inner type ({info})",
            i + 1
        );
        assert_eq!(
            num(&row["softbus.msg.rseq"]),
            Some(u64::from(m.rseq)),
            "packet {}: rseq",
            i + 1
        );
        match &m.body {
            MsgBody::Data { payload, .. } => {
                assert_eq!(
                    row["softbus.data.text"].as_bytes(),
                    payload.as_slice(),
                    "packet {}: DATA payload",
                    i + 1
                )
            }
            MsgBody::SessionOpen { service, .. } => {
                assert_eq!(&row["softbus.session.service"], service)
            }
            MsgBody::PermRequest { capability, .. } | MsgBody::CapInvoke { capability, .. } => {
                assert_eq!(&row["softbus.cap.name"], capability)
            }
            _ => {}
        }
    }
}

#[test]
fn dissects_and_decrypts_udp_on_the_default_port() {
    tshark(); // fail fast, with the install command, when it is missing
    let t = scenario();
    let f = write_udp(&t, "udp_default_port", |p| p);
    let rows = run_tshark(&f.pcap, &keylog_pref(&f.keys));
    check_rows(&t, &rows, true);

    let types: Vec<u64> = rows
        .iter()
        .filter_map(|r| num(&r["softbus.frame_type"]))
        .collect();
    assert_eq!(
        &types[..8],
        &[0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x20],
        "pairing, handshake, first record"
    );
    let reject: Vec<&Row> = rows
        .iter()
        .filter(|r| num(&r["softbus.frame_type"]) == Some(0x1f))
        .collect();
    assert!(!reject.is_empty(), "no HANDSHAKE_REJECT dissected");
    assert!(reject
        .iter()
        .all(|r| num(&r["softbus.reject_code"]) == Some(4)));
    assert!(reject
        .iter()
        .all(|r| r["_ws.col.Info"].contains("UNKNOWN_PEER")));

    // Every inner message type the scenario produces was decrypted and named.
    let inner: BTreeSet<u64> = rows
        .iter()
        .filter_map(|r| num(&r["softbus.msg.type"]))
        .collect();
    for ty in [
        0x01, 0x02, 0x03, 0x10, 0x11, 0x13, 0x14, 0x20, 0x21, 0x30, 0x31, 0x32, 0x33, 0x34,
    ] {
        assert!(
            inner.contains(&ty),
            "inner type {ty:#04x} missing from {inner:?}"
        );
    }
    // The known payloads, each sent and echoed; the second under rekeyed epochs 1 and 2.
    let texts: Vec<(&str, u64)> = rows
        .iter()
        .filter(|r| !r["softbus.data.text"].is_empty())
        .map(|r| {
            (
                r["softbus.data.text"].as_str(),
                num(&r["softbus.epoch"]).unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            (PAYLOAD_1, 0),
            (PAYLOAD_1, 0),
            (PAYLOAD_2, 1),
            (PAYLOAD_2, 2)
        ],
        "{texts:?}"
    );
    let info = |r: &Row| r["_ws.col.Info"].clone();
    assert!(
        rows.iter()
            .map(info)
            .any(|i| i.contains(&format!("DATA rseq=2 sid=2 msg=1 frag=1/1 \"{PAYLOAD_1}\""))),
        "Info column of the first DATA"
    );

    // Without tag checks every record decrypts (the tampered one to a corrupted message), and
    // is marked as not verified.
    let mut args = keylog_pref(&f.keys);
    args.extend(["-o".to_string(), "softbus.verify_tag:FALSE".to_string()]);
    let unverified = run_tshark(&f.pcap, &args);
    for (i, (row, d)) in unverified.iter().zip(&t.wire).enumerate() {
        if d.data[1] == 0x20 {
            assert_eq!(num(&row["softbus.tag_status"]), Some(3), "packet {}", i + 1);
            assert!(!row["softbus.msg.type"].is_empty(), "packet {}", i + 1);
        }
    }
    assert_eq!(
        unverified
            .iter()
            .filter(|r| r["softbus.data.text"] == PAYLOAD_2)
            .count(),
        2
    );

    // The full tree names fields, codes and the decryption outcome.
    let v = run_tshark_verbose(&f.pcap, &keylog_pref(&f.keys));
    assert!(!v.contains("Lua Error"), "the dissector threw");
    assert!(
        !v.contains("Error/Malformed"),
        "well-formed traffic reported as malformed"
    );
    for needle in [
        "SoftBus v1",
        "Frame type: PAIR_REQUEST (0x01)",
        "Side: A (initiator) (0x41)",
        "Status: OK (0)",
        "Noise message 1 (-> e), 32 bytes",
        "Reject code: UNKNOWN_PEER (4)",
        "Tag: verified (1)",
        "Tag: FAILED (wrong key, tampered or corrupted) (2)",
        "Inner message: DATA",
        "Service: echo",
        "Kind: message (1)",
        "QoS: interactive (2)",
        "Scope: until-revoked (3)",
        "Result: granted (0)",
        "Code: NORMAL_CLOSE (15)",
        "Direction: initiator -> responder",
        "Direction: responder -> initiator",
        "Rekeys applied to the logged key: 2",
        "Payload (text): hello wireshark, this is softbus",
    ] {
        assert!(v.contains(needle), "tshark -V lacks {needle:?}");
    }
}

/// A Zigbee or BLE case's `link.pcap` (the harness's link trace, LINKTYPE_USER0 with a
/// direction byte) dissects and decrypts like a UDP capture, and names the direction.
#[test]
fn dissects_and_decrypts_a_link_trace() {
    use softbus_harness::link::trace::{write_pcap, Direction, Traced};
    tshark(); // fail fast, with the install command, when it is missing
    let t = scenario();
    let dir = evidence_dir("link_trace");
    let first = t.wire.first().map(|d| d.src).expect("traffic");
    let base = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let records: Vec<Traced> = t
        .wire
        .iter()
        .map(|d| Traced {
            at: base + d.at,
            direction: if d.src == first {
                Direction::ToDut
            } else {
                Direction::FromDut
            },
            data: d.data.clone(),
        })
        .collect();
    let pcap = dir.join("link.pcap");
    write_pcap(&pcap, &records).expect("writing link.pcap");
    let keys = dir.join("keys.log");
    std::fs::write(&keys, t.keylog()).expect("writing keys.log");
    let rows = run_tshark(&pcap, &keylog_pref(&keys));
    check_rows(&t, &rows, true);
    let verbose = run_tshark_verbose(&pcap, &keylog_pref(&keys));
    assert!(
        verbose.contains("Direction: tester to DUT (0)"),
        "{verbose}"
    );
    assert!(
        verbose.contains("Direction: DUT to tester (1)"),
        "{verbose}"
    );
}

#[test]
fn heuristic_and_decode_as_find_softbus_on_other_ports() {
    tshark(); // fail fast, with the install command, when it is missing
    let t = scenario();
    // Move bravo off the registered port.
    let f = write_udp(&t, "udp_other_port", |p| {
        if p == DEFAULT_PORT {
            47123
        } else {
            p
        }
    });

    // The heuristic recognises every frame; without a key log, RECORDs stay encrypted.
    let rows = run_tshark(&f.pcap, &[]);
    check_rows(&t, &rows, false);

    // With the heuristic off nothing is dissected...
    let off = vec!["--disable-heuristic".to_string(), "softbus_udp".to_string()];
    let rows = run_tshark(&f.pcap, &off);
    assert!(
        rows.iter().all(|r| r["softbus.frame_type"].is_empty()),
        "dissected without the heuristic"
    );

    // ...until Decode As names the port; and the key log decrypts.
    let mut args = off;
    args.extend(["-d".to_string(), "udp.port==47123,softbus".to_string()]);
    args.extend(keylog_pref(&f.keys));
    let rows = run_tshark(&f.pcap, &args);
    check_rows(&t, &rows, true);

    // The port preference moves the registration too.
    let mut args = vec!["--disable-heuristic".to_string(), "softbus_udp".to_string()];
    args.extend(["-o".to_string(), "softbus.ports:47123".to_string()]);
    args.extend(keylog_pref(&f.keys));
    let rows = run_tshark(&f.pcap, &args);
    check_rows(&t, &rows, true);
}

/// The alpha-bravo traffic as TCP: each direction is one byte stream of u16-length-prefixed
/// frames, cut into segments of 97 bytes so that frames straddle segments and segments carry
/// several frames. Bravo listens on `bravo_port`. Returns the files and the frames in order.
fn write_tcp<'a>(t: &'a Traffic, test: &str, bravo_port: u16) -> (Files, Vec<&'a Datagram>) {
    let dir = evidence_dir(test);
    let base = Duration::from_secs(1_700_000_000);
    let mut w = PcapWriter::new();
    let map = |a: SocketAddrV4| {
        let port = if a.port() == DEFAULT_PORT {
            bravo_port
        } else {
            a.port()
        };
        SocketAddrV4::new(*a.ip(), port)
    };
    // The stranger's handshake is left out: it would be a connection of its own.
    let alpha_bravo: Vec<&Datagram> = t
        .wire
        .iter()
        .filter(|d| d.src.port() != 40003 && d.dst.port() != 40003)
        .collect();
    let mut pending: Vec<u8> = Vec::new();
    let mut last: Option<(SocketAddrV4, SocketAddrV4)> = None;
    let flush = |w: &mut PcapWriter,
                 dir: (SocketAddrV4, SocketAddrV4),
                 bytes: &mut Vec<u8>,
                 at: Duration| {
        for chunk in bytes.chunks(97) {
            w.tcp(base + at, map(dir.0), map(dir.1), chunk);
        }
        bytes.clear();
    };
    for d in &alpha_bravo {
        let dir = (d.src, d.dst);
        if let Some(l) = last.filter(|l| *l != dir) {
            flush(&mut w, l, &mut pending, d.at);
        }
        last = Some(dir);
        pending.extend_from_slice(&(d.data.len() as u16).to_be_bytes());
        pending.extend_from_slice(&d.data);
    }
    if let Some(l) = last {
        flush(&mut w, l, &mut pending, Duration::from_secs(60));
    }
    let pcap = dir.join("capture.pcap");
    w.write(&pcap).expect("writing pcap");
    let keys = dir.join("keys.log");
    std::fs::write(&keys, t.keylog()).expect("writing keys.log");
    (Files { pcap, keys }, alpha_bravo)
}

/// All values of `field` over all rows, in order (several frames can share a TCP segment).
fn all(rows: &[Row], field: &str) -> Vec<String> {
    rows.iter()
        .flat_map(|r| {
            r[field]
                .split('|')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn check_tcp(rows: &[Row], frames: &[&Datagram]) {
    let types: Vec<u64> = all(rows, "softbus.frame_type")
        .iter()
        .filter_map(|v| num(v))
        .collect();
    let want: Vec<u64> = frames.iter().map(|d| u64::from(d.data[1])).collect();
    assert_eq!(types, want, "every frame reassembled once, in order");
    let statuses: Vec<u64> = all(rows, "softbus.tag_status")
        .iter()
        .filter_map(|v| num(v))
        .collect();
    let records = want.iter().filter(|&&ty| ty == 0x20).count();
    assert_eq!(statuses.len(), records);
    // The tampered copy of alpha's record is part of this stream, and the only one to fail.
    let bad = statuses.iter().filter(|&&s| s == 2).count();
    assert_eq!(bad, 1, "only the tampered record fails: {statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 1).count(), records - bad);
    assert_eq!(
        all(rows, "softbus.data.text"),
        vec![PAYLOAD_1, PAYLOAD_1, PAYLOAD_2, PAYLOAD_2]
    );
}

#[test]
fn reassembles_length_prefixed_frames_over_tcp() {
    tshark(); // fail fast, with the install command, when it is missing
    let t = scenario();

    // On the registered port.
    let (f, frames) = write_tcp(&t, "tcp_default_port", DEFAULT_PORT);
    check_tcp(&run_tshark(&f.pcap, &keylog_pref(&f.keys)), &frames);

    // On another port, found by the TCP heuristic; and nothing once it is off.
    let (f, frames) = write_tcp(&t, "tcp_other_port", 47124);
    check_tcp(&run_tshark(&f.pcap, &keylog_pref(&f.keys)), &frames);
    let off = vec![
        "--disable-heuristic".to_string(),
        "softbus_tcp_tcp".to_string(),
    ];
    let rows = run_tshark(&f.pcap, &off);
    assert!(
        rows.iter().all(|r| r["softbus.frame_type"].is_empty()),
        "dissected without the heuristic"
    );
}

#[test]
fn survives_truncated_garbage_and_malformed_inner_messages() {
    tshark(); // fail fast, with the install command, when it is missing
    let t = scenario();
    let dir = evidence_dir("malformed");
    let base = Duration::from_secs(1_700_000_000);
    let mut w = PcapWriter::new();
    let alpha = SocketAddrV4::new([127, 0, 0, 1].into(), 40001);
    let bravo = SocketAddrV4::new([127, 0, 0, 1].into(), DEFAULT_PORT);
    let mut packets = 0usize;
    let mut short_inner = 0usize;

    // Every frame cut short at several lengths, plus other versions and unknown types: all on
    // the registered port, so the dissector sees them whatever they look like.
    for d in &t.wire {
        for cut in [0, 1, 2, 5, 6, 7, 10, 15, 24, d.data.len().saturating_sub(1)] {
            if cut < d.data.len() {
                w.udp(base + d.at, alpha, bravo, &d.data[..cut]);
                packets += 1;
            }
        }
    }
    for garbage in [
        &b"\x02\x10\0\0\0\0abcd"[..],
        b"\x01\x33\0\0\0\0",
        b"\x01\x20\0\0\0\x01",
        &[0xffu8; 300],
    ] {
        w.udp(base, alpha, bravo, garbage);
        packets += 1;
    }

    // Every inner message of the scenario, truncated to each length and sealed again under the
    // logged key, so the dissector decrypts it and must then cope with the short body.
    let mut seq = 1_000_000u64;
    for d in &t.wire {
        let Ok(frame) = Frame::parse(&d.data) else {
            continue;
        };
        let (
            Body::Record {
                epoch,
                seq: s,
                ciphertext,
            },
            Some(k),
        ) = (&frame.body, t.keys.get(&frame.conn_id))
        else {
            continue;
        };
        let mut key = RecordKey::new(*k);
        for _ in 0..*epoch {
            key = key.rekeyed();
        }
        let Ok(plain) = key.open(frame.conn_id, *s, ciphertext) else {
            continue;
        };
        let plain = if plain.len() > 40 {
            plain[..40].to_vec()
        } else {
            plain
        };
        let epoch0 = RecordKey::new(*k);
        for cut in 0..plain.len() {
            let mut pt = plain[..cut].to_vec();
            if cut == 1 {
                pt = vec![0x7f, 0, 0, 0, 0]; // unknown inner type
            }
            short_inner += usize::from(pt.len() < 5);
            let sealed = Frame {
                conn_id: frame.conn_id,
                body: Body::Record {
                    epoch: 0,
                    seq,
                    ciphertext: epoch0.seal(frame.conn_id, seq, &pt),
                },
            };
            w.udp(base + d.at, alpha, bravo, &sealed.to_vec());
            packets += 1;
            seq += 1;
        }
    }
    let pcap = dir.join("capture.pcap");
    w.write(&pcap).expect("writing pcap");
    let keys = dir.join("keys.log");
    std::fs::write(&keys, t.keylog()).expect("writing keys.log");

    let rows = run_tshark(&pcap, &keylog_pref(&keys));
    assert_eq!(rows.len(), packets);
    let resealed: Vec<&Row> = rows
        .iter()
        .filter(|r| r["_ws.col.Info"].contains("seq=1000"))
        .collect();
    assert!(!resealed.is_empty());
    assert!(
        resealed
            .iter()
            .all(|r| num(&r["softbus.tag_status"]) == Some(1)),
        "every resealed record decrypts"
    );
    let flagged = resealed
        .iter()
        .filter(|r| r["_ws.col.Info"].contains("malformed inner message"))
        .count();
    assert_eq!(
        flagged, short_inner,
        "plaintexts under 5 bytes are reported as malformed"
    );

    let v = run_tshark_verbose(&pcap, &keylog_pref(&keys));
    assert!(
        !v.contains("Lua Error"),
        "the dissector threw: {}",
        v.lines().find(|l| l.contains("Lua Error")).unwrap_or("")
    );
    assert!(
        v.contains("Expert Info (Error/Malformed): body of 0 bytes; PAIR_REQUEST allows 69..69")
    );
    assert!(v.contains("unknown inner message type"));
}
