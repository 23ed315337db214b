//! The BLE central path end to end: `BleLink` (btleplug → libdbus → D-Bus) against the
//! `vbluez` binary (a virtual BlueZ on a private dbus-daemon), with a scripted peripheral on
//! vbluez's radio socket that echoes every reassembled datagram back as notifications.
//!
//! btleplug finds its bus through `DBUS_SYSTEM_BUS_ADDRESS`, which libdbus reads once per
//! process, so every vbluez here serves a bus at the same socket path, and the tests take a
//! lock and run one at a time.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use softbus::link::ble::radio::{softbus_service, RadioMsg};
use softbus::link::ble::{AdvertData, RX_CHAR_UUID, SERVICE_UUID};
use softbus::link::sar::{self, Reassembled, Reassembler};
use softbus_harness::link::ble::BleLink;
use softbus_harness::link::{DatagramLink, LinkError};
use softbus_harness::rig::BleTarget;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const ADDRESS: &str = "C1:02:03:04:05:06";
const NAME: &str = "softbus-test";
const ADVERT: AdvertData = AdvertData {
    version: 1,
    pairable: true,
    device_hash: [0xde, 0xad, 0xbe, 0xef],
    capabilities: 0x0105,
};

fn require_dbus_daemon() {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("dbus-daemon").is_file()))
        .unwrap_or(false);
    assert!(found, "install dbus-daemon: apt-get install dbus-daemon");
}

/// A running `vbluez` and its announcement.
struct Vbluez {
    child: Child,
    ann: serde_json::Value,
    /// Holds the bus socket; removed when the instance is dropped (tests run one at a time).
    dir: std::path::PathBuf,
}

impl Vbluez {
    fn start(args: &[&str]) -> Vbluez {
        require_dbus_daemon();
        // One path per process: libdbus reads the bus address once (see BleLink::connect).
        let dir = std::env::temp_dir().join(format!("ble-vbluez-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test bus directory");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vbluez"))
            .arg("--bus-socket")
            .arg(dir.join("bus"))
            .args(args)
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn vbluez");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read announcement");
        let ann: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("vbluez announcement {line:?}: {e}"));
        Vbluez { child, ann, dir }
    }

    fn field(&self, k: &str) -> String {
        self.ann[k]
            .as_str()
            .unwrap_or_else(|| panic!("no {k} in {}", self.ann))
            .to_owned()
    }

    fn target(&self) -> BleTarget {
        BleTarget {
            address: Some(ADDRESS.into()),
            name: Some(NAME.into()),
            dbus: Some(self.field("dbus")),
            adapter: None,
        }
    }
}

impl Drop for Vbluez {
    fn drop(&mut self) {
        // Closing stdin lets vbluez stop its dbus-daemon; kill it only if it hangs.
        drop(self.child.stdin.take());
        let end = Instant::now() + Duration::from_secs(3);
        let mut exited = false;
        while !exited && Instant::now() < end {
            exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if !exited {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A peripheral on the radio socket: advertises the SoftBus service, echoes datagrams.
struct Peripheral {
    stream: UnixStream,
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<JoinHandle<()>>,
}

fn send(stream: &Mutex<UnixStream>, msg: &RadioMsg) {
    let _ = stream
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .write_all(msg.to_line().as_bytes());
}

impl Peripheral {
    fn start(radio: &str) -> Peripheral {
        let stream = UnixStream::connect(radio).expect("connect to the radio socket");
        let writer = Arc::new(Mutex::new(stream.try_clone().expect("clone")));
        let mut service_data = BTreeMap::new();
        service_data.insert(SERVICE_UUID.to_owned(), hex::encode(ADVERT.emit()));
        send(
            &writer,
            &RadioMsg::Advertise {
                address: ADDRESS.into(),
                name: NAME.into(),
                service_uuids: vec![SERVICE_UUID.into()],
                service_data,
                services: vec![softbus_service()],
            },
        );
        let writes = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&writes);
        let reader = stream.try_clone().expect("clone");
        let thread = std::thread::spawn(move || {
            let mut seg = 20;
            let mut counter = 0u8;
            let mut reasm = Reassembler::new(65_535, Duration::from_secs(2));
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                match RadioMsg::from_line(&line) {
                    Ok(RadioMsg::Connected { mtu, .. }) => seg = usize::from(mtu) - 3,
                    Ok(RadioMsg::Write { data, .. }) => {
                        let data = hex::decode(data).expect("hex");
                        log.lock().unwrap().push(data.clone());
                        if let Reassembled::Datagram(d) = reasm.handle(Instant::now(), &data) {
                            for s in sar::segment(&d, counter, seg).expect("segment") {
                                send(
                                    &writer,
                                    &RadioMsg::Notify {
                                        char_uuid: softbus::link::ble::TX_CHAR_UUID.into(),
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
        });
        Peripheral {
            stream,
            writes,
            thread: Some(thread),
        }
    }

    fn disconnect(&self) {
        let _ = (&self.stream).write_all(RadioMsg::Disconnect.to_line().as_bytes());
    }

    fn power_off(mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn echo(link: &BleLink, datagram: &[u8]) -> Duration {
    let t0 = Instant::now();
    link.send(datagram).expect("send");
    let back = link
        .recv(Duration::from_secs(10))
        .expect("recv")
        .expect("the echo within 10 s");
    let rtt = t0.elapsed();
    assert_eq!(back, datagram, "the echo differs");
    rtt
}

fn echoes_1000_bytes_at(mtu: u16) {
    let _g = serial();
    let vb = Vbluez::start(&["--mtu", &mtu.to_string()]);
    let p = Peripheral::start(&vb.field("radio"));
    let link = BleLink::connect(&vb.target(), Duration::from_secs(10)).expect("BleLink::connect");
    assert_eq!(link.advert(), ADVERT);
    assert_eq!(link.mtu(), mtu, "MTU read from the RX characteristic");
    assert_eq!(link.peer(), format!("ble:{ADDRESS}"));
    assert!(link.max_datagram() >= 1000);
    echo(&link, &pattern(1000));
    // Every write fitted ATT_MTU - 3.
    let writes = p.writes.lock().unwrap().clone();
    assert!(writes.iter().all(|w| w.len() <= usize::from(mtu) - 3));
    assert_eq!(
        writes.len(),
        sar::segment(&pattern(1000), 0, usize::from(mtu) - 3)
            .unwrap()
            .len()
    );
    drop(link);
    p.power_off();
}

#[test]
fn echoes_a_1000_byte_datagram_at_mtu_247() {
    echoes_1000_bytes_at(247);
}

#[test]
fn echoes_a_1000_byte_datagram_at_mtu_23() {
    echoes_1000_bytes_at(23);
}

#[test]
fn a_disconnect_by_the_peripheral_is_link_disconnected() {
    let _g = serial();
    let vb = Vbluez::start(&[]);
    let p = Peripheral::start(&vb.field("radio"));
    let link = BleLink::connect(&vb.target(), Duration::from_secs(10)).expect("connect");
    echo(&link, b"before");
    p.disconnect();
    match link.recv(Duration::from_secs(5)) {
        Err(LinkError::Disconnected(why)) => assert!(why.contains(ADDRESS), "{why}"),
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(matches!(
        link.send(b"after"),
        Err(LinkError::Disconnected(_))
    ));
    p.power_off();
}

#[test]
fn a_peripheral_powering_off_is_link_disconnected_after_the_supervision_timeout() {
    let _g = serial();
    let vb = Vbluez::start(&["--supervision-timeout-ms", "300"]);
    let p = Peripheral::start(&vb.field("radio"));
    let link = BleLink::connect(&vb.target(), Duration::from_secs(10)).expect("connect");
    let t0 = Instant::now();
    p.power_off();
    match link.recv(Duration::from_secs(5)) {
        Err(LinkError::Disconnected(_)) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "not before the supervision timeout"
    );
}

#[test]
fn a_write_command_longer_than_mtu_minus_3_is_invalid_value_length() {
    let _g = serial();
    let vb = Vbluez::start(&["--mtu", "100"]);
    let p = Peripheral::start(&vb.field("radio"));
    let link = BleLink::connect(&vb.target(), Duration::from_secs(10)).expect("connect");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = zbus::connection::Builder::address(vb.field("dbus").as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let om = zbus::fdo::ObjectManagerProxy::builder(&conn)
            .destination("org.bluez")
            .unwrap()
            .path("/")
            .unwrap()
            .build()
            .await
            .unwrap();
        let objects = om.get_managed_objects().await.unwrap();
        let rx = objects
            .iter()
            .find(|(_, ifaces)| {
                ifaces
                    .get("org.bluez.GattCharacteristic1")
                    .and_then(|p| p.get("UUID"))
                    .and_then(|u| <&str>::try_from(u).ok().map(|u| u == RX_CHAR_UUID))
                    .unwrap_or(false)
            })
            .map(|(path, _)| path.clone())
            .expect("the RX characteristic on the bus");
        let call = |len: usize, kind: &'static str| {
            let conn = conn.clone();
            let rx = rx.clone();
            async move {
                let mut opts = std::collections::HashMap::new();
                opts.insert("type", zbus::zvariant::Value::from(kind));
                conn.call_method(
                    Some("org.bluez"),
                    rx.as_str(),
                    Some("org.bluez.GattCharacteristic1"),
                    "WriteValue",
                    &(vec![0xC0u8; len], opts),
                )
                .await
            }
        };
        call(97, "command")
            .await
            .expect("MTU - 3 bytes fit a write command");
        match call(98, "command").await {
            Err(zbus::Error::MethodError(name, _, _)) => {
                assert_eq!(name.as_str(), "org.bluez.Error.InvalidValueLength")
            }
            other => panic!("expected InvalidValueLength, got {other:?}"),
        }
        // A write request that long is a long write (prepare + execute), as in BlueZ.
        call(300, "request").await.expect("long write");
        match call(513, "request").await {
            Err(zbus::Error::MethodError(name, _, _)) => {
                assert_eq!(name.as_str(), "org.bluez.Error.InvalidValueLength")
            }
            other => panic!("expected InvalidValueLength past 512 bytes, got {other:?}"),
        }
    });
    let writes = p.writes.lock().unwrap().clone();
    assert!(
        writes.iter().any(|w| w.len() == 300),
        "the long write reached the peripheral whole"
    );
    drop(link);
    p.power_off();
}

#[test]
fn a_round_trip_takes_at_least_one_connection_interval() {
    let _g = serial();
    let vb = Vbluez::start(&["--interval-ms", "30"]);
    let p = Peripheral::start(&vb.field("radio"));
    let link = BleLink::connect(&vb.target(), Duration::from_secs(10)).expect("connect");
    for _ in 0..5 {
        let rtt = echo(&link, &pattern(64));
        // The write crosses at one event, the echo at a later one.
        assert!(
            rtt >= Duration::from_millis(30),
            "round trip {rtt:?} under one interval"
        );
    }
    drop(link);
    p.power_off();
}

#[test]
fn round_trip_of_64_bytes_at_the_default_link_parameters() {
    let _g = serial();
    let vb = Vbluez::start(&[]);
    let p = Peripheral::start(&vb.field("radio"));
    let link = BleLink::connect(&vb.target(), Duration::from_secs(10)).expect("connect");
    let mut rtts: Vec<Duration> = (0..20).map(|_| echo(&link, &pattern(64))).collect();
    rtts.sort();
    eprintln!(
        "64-byte round trip at 7.5 ms / MTU 247: min {:?}, median {:?}, max {:?}",
        rtts[0],
        rtts[rtts.len() / 2],
        rtts[rtts.len() - 1]
    );
    assert!(rtts[0] >= Duration::from_micros(7_500));
    drop(link);
    p.power_off();
}

#[test]
fn no_such_device_is_a_clear_error() {
    let _g = serial();
    let vb = Vbluez::start(&[]);
    let p = Peripheral::start(&vb.field("radio"));
    let mut target = vb.target();
    target.address = None;
    target.name = Some("nobody".into());
    let err = BleLink::connect(&target, Duration::from_secs(1)).expect_err("nobody is there");
    assert!(
        err.to_string()
            .contains("no SoftBus advert from name \"nobody\""),
        "{err}"
    );
    p.power_off();
}

#[test]
fn a_lossy_air_still_delivers_every_segment_in_order() {
    let _g = serial();
    let vb = Vbluez::start(&["--mtu", "23", "--loss", "0.3", "--seed", "7"]);
    let p = Peripheral::start(&vb.field("radio"));
    let link = BleLink::connect(&vb.target(), Duration::from_secs(10)).expect("connect");
    echo(&link, &pattern(500));
    assert_eq!(
        link.discarded(),
        0,
        "link-layer retransmission hides the loss"
    );
    drop(link);
    p.power_off();
}
