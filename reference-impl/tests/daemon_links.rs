//! `softbusd`'s links other than IP, against the real binary.
//!
//! The BLE peripheral on the virtual radio, with the test as the radio and the central:
//! the daemon (the real binary) connects to the test's Unix socket and advertises; the test
//! checks the advert bytes, connects at the default ATT MTU (23: 20-byte segments), subscribes,
//! and runs a second, in-memory SoftBus endpoint as the central's application over the
//! segmented GATT link: PIN pairing, then the Noise handshake, until both sides are connected.
//! The advert's pairable flag follows the PIN set over the control channel, and the daemon
//! comes back to a radio that went away. A Zigbee stick that cannot be opened leaves the daemon
//! serving IP, and says so.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use softbus::endpoint::{Config, Endpoint, Event, LinkAddr};
use softbus::link::ble::radio::{softbus_service, RadioMsg};
use softbus::link::ble::{static_address, AdvertData, RX_CHAR_UUID, SERVICE_UUID, TX_CHAR_UUID};
use softbus::link::sar::{segment, Reassembled, Reassembler, DEFAULT_REASSEMBLY_TIMEOUT};
use softbus::trust::TrustStore;
use softbus::Identity;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UnixListener};
use tokio::process::Command;

const PIN: &str = "135790";
const CENTRAL: &str = "11:22:33:44:55:66";
const T: Duration = Duration::from_secs(10);

/// The test's side of the radio socket.
struct Radio {
    lines: Lines<BufReader<OwnedReadHalf>>,
    w: OwnedWriteHalf,
}

impl Radio {
    async fn send(&mut self, m: RadioMsg) {
        self.w.write_all(m.to_line().as_bytes()).await.unwrap();
    }

    async fn recv(&mut self, wait: Duration) -> Option<RadioMsg> {
        match tokio::time::timeout(wait, self.lines.next_line()).await {
            Ok(Ok(Some(l))) => Some(RadioMsg::from_line(&l).expect("a radio message")),
            Ok(_) => panic!("the daemon closed the radio socket"),
            Err(_) => None,
        }
    }
}

/// A minimal control client.
struct Control {
    lines: Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Control {
    async fn call(&mut self, req: Value) -> Value {
        let mut line = req.to_string();
        line.push('\n');
        self.w.write_all(line.as_bytes()).await.unwrap();
        let rsp = self.lines.next_line().await.unwrap().unwrap();
        let v: Value = serde_json::from_str(&rsp).unwrap();
        assert_eq!(v["ok"], json!(true), "{req} -> {v}");
        v["result"].clone()
    }
}

/// The central's SoftBus endpoint, wired to the radio through segmentation.
struct Central {
    ep: Endpoint,
    dut: LinkAddr,
    counter: u8,
    reassembler: Reassembler,
    events: VecDeque<Event>,
}

impl Central {
    /// Moves datagrams both ways and fires timers until `done` holds for an event.
    async fn drive_until(&mut self, radio: &mut Radio, done: impl Fn(&Event) -> bool) -> Event {
        let end = Instant::now() + T;
        loop {
            while let Some(t) = self.ep.poll_transmit() {
                assert_eq!(t.dst, self.dut);
                for seg in segment(&t.data, self.counter, 20).unwrap() {
                    radio
                        .send(RadioMsg::Write {
                            char_uuid: RX_CHAR_UUID.into(),
                            data: hex::encode(seg),
                        })
                        .await;
                }
                self.counter = self.counter.wrapping_add(1);
            }
            while let Some(e) = self.ep.poll_event() {
                if done(&e) {
                    return e;
                }
                self.events.push_back(e);
            }
            let now = Instant::now();
            assert!(
                now < end,
                "timed out; central events so far: {:?}",
                self.events
            );
            let wake = self
                .ep
                .poll_timeout()
                .unwrap_or(end)
                .min(now + Duration::from_millis(50));
            match radio.recv(wake.saturating_duration_since(now)).await {
                Some(RadioMsg::Notify { char_uuid, data }) => {
                    assert_eq!(char_uuid, TX_CHAR_UUID);
                    let seg = hex::decode(data).unwrap();
                    assert!(seg.len() <= 20, "segment of {} bytes at MTU 23", seg.len());
                    match self.reassembler.handle(Instant::now(), &seg) {
                        Reassembled::Datagram(d) => {
                            self.ep
                                .handle_datagram(Instant::now(), self.dut.clone(), &d)
                        }
                        Reassembled::Pending => {}
                        Reassembled::Discarded(e) => panic!("bad segment from the DUT: {e}"),
                    }
                }
                Some(other) => panic!("unexpected radio message {other:?}"),
                None => self.ep.handle_timeout(Instant::now()),
            }
        }
    }
}

fn advert_data(m: &RadioMsg) -> AdvertData {
    let RadioMsg::Advertise { service_data, .. } = m else {
        panic!("not an advert: {m:?}");
    };
    AdvertData::parse(&hex::decode(&service_data[SERVICE_UUID]).unwrap()).unwrap()
}

#[tokio::test]
async fn ble_peripheral_advertises_pairs_and_connects_over_segments() {
    let dir = tempfile::tempdir().unwrap();
    let secret = [7u8; 32];
    std::fs::write(dir.path().join("id.key"), hex::encode(secret)).unwrap();
    let dut_id = Identity::from_secret(secret).device_id();
    let listener = UnixListener::bind(dir.path().join("radio.sock")).unwrap();
    let cfg = dir.path().join("d.toml");
    std::fs::write(
        &cfg,
        r#"
[device]
name = "ble-dut"
identity_key = "id.key"
trust_store = "trust.json"
prompt_policy = "approve"

[[capability]]
name = "speaker.main"
kind = "speaker"

[[capability]]
name = "light.hall"
kind = "light"

[listen]
udp = "127.0.0.1:0"

[discovery]
enabled = false

[control]
tcp = "127.0.0.1:0"

[ble]
radio = "radio.sock"
"#,
    )
    .unwrap();
    let (mut daemon, _out, bound) = spawn_softbusd(&cfg).await;
    let address = static_address(&dut_id.0);
    assert_eq!(bound["ble"], json!(address), "{bound}");
    assert!(bound.get("zigbee").is_none(), "{bound}");

    // The advert: address, name, service UUID, service data, GATT database.
    let (stream, _) = tokio::time::timeout(T, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let (r, w) = stream.into_split();
    let mut radio = Radio {
        lines: BufReader::new(r).lines(),
        w,
    };
    let first = radio.recv(T).await.expect("an advert");
    let RadioMsg::Advertise {
        address: adv_addr,
        name,
        service_uuids,
        services,
        ..
    } = &first
    else {
        panic!("not an advert: {first:?}");
    };
    assert_eq!(adv_addr, &address);
    assert_eq!(name, "ble-dut");
    assert_eq!(service_uuids, &vec![SERVICE_UUID.to_string()]);
    assert_eq!(services, &vec![softbus_service()]);
    let expected = AdvertData {
        version: 1,
        pairable: false,
        device_hash: [dut_id.0[0], dut_id.0[1], dut_id.0[2], dut_id.0[3]],
        capabilities: (1 << 2) | (1 << 7), // speaker, light
    };
    assert_eq!(advert_data(&first), expected);

    // Setting a PIN makes it pairable, and it says so on the air.
    let ctl = TcpStream::connect(bound["control"].as_str().unwrap())
        .await
        .unwrap();
    let (cr, cw) = ctl.into_split();
    let mut control = Control {
        lines: BufReader::new(cr).lines(),
        w: cw,
    };
    control.call(json!({"op": "set_pin", "pin": PIN})).await;
    let again = radio.recv(T).await.expect("a new advert");
    assert_eq!(
        advert_data(&again),
        AdvertData {
            pairable: true,
            ..expected
        }
    );

    // A central connects at the default MTU and subscribes to TX.
    radio
        .send(RadioMsg::Connected {
            central: CENTRAL.into(),
            mtu: 23,
        })
        .await;
    radio
        .send(RadioMsg::Subscribed {
            char_uuid: TX_CHAR_UUID.into(),
        })
        .await;

    // Its application pairs with the PIN, then connects, all through 20-byte segments.
    let dut = LinkAddr::Ble(address.clone());
    let mut central = Central {
        ep: Endpoint::new(
            Config {
                name: "central".into(),
                ..Config::default()
            },
            Identity::from_secret([9; 32]),
            TrustStore::new(),
            [9; 32],
            Instant::now(),
            1_700_000_000,
        ),
        dut: dut.clone(),
        counter: 0,
        reassembler: Reassembler::new(4096, DEFAULT_REASSEMBLY_TIMEOUT),
        events: VecDeque::new(),
    };
    central.ep.pair(Instant::now(), dut.clone(), PIN).unwrap();
    let paired = central
        .drive_until(&mut radio, |e| {
            matches!(e, Event::Paired { .. } | Event::PairingFailed { .. })
        })
        .await;
    assert!(
        matches!(&paired, Event::Paired { peer, .. } if *peer == dut_id),
        "{paired:?}"
    );
    central.ep.connect(Instant::now(), dut.clone());
    let connected = central
        .drive_until(&mut radio, |e| {
            matches!(e, Event::Connected { .. } | Event::HandshakeFailed { .. })
        })
        .await;
    assert!(
        matches!(&connected, Event::Connected { peer, .. } if *peer == dut_id),
        "{connected:?}"
    );

    // The DUT saw the same, from the central's BLE address.
    let central_id = Identity::from_secret([9; 32]).device_id().to_hex();
    let deadline = Instant::now() + T;
    loop {
        let evs = control.call(json!({"op": "events"})).await;
        let list = evs["events"].as_array().cloned().unwrap_or_default();
        if list.iter().any(|e| {
            e["type"] == json!("connected")
                && e["peer"] == json!(central_id)
                && e["addr"] == json!({"link": "ble", "addr": CENTRAL})
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "DUT events: {evs}");
        // Keep the central's side of the link served while waiting.
        let _ = tokio::time::timeout(Duration::from_millis(50), async {
            central.drive_until(&mut radio, |_| false).await
        })
        .await;
    }
    let state = control.call(json!({"op": "state"})).await;
    let ble = &state["links"]["ble"];
    assert_eq!(ble["central"], json!(CENTRAL), "{state}");
    assert_eq!(ble["subscribed"], json!(true), "{state}");
    assert!(
        ble["stats"]["datagrams_in"].as_u64().unwrap_or(0) >= 3,
        "{state}"
    );
    assert_eq!(ble["stats"]["bad_segments"], json!(0), "{state}");

    // The radio goes away (vbluez restarting): the daemon comes back and advertises again.
    drop(radio);
    let (stream, _) = tokio::time::timeout(T, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let (r, w) = stream.into_split();
    let mut radio = Radio {
        lines: BufReader::new(r).lines(),
        w,
    };
    let back = radio.recv(T).await.expect("an advert after reconnecting");
    assert_eq!(
        advert_data(&back),
        AdvertData {
            pairable: true,
            ..expected
        }
    );
    let _ = daemon.kill().await;
}

#[tokio::test]
async fn a_zigbee_link_that_cannot_start_leaves_ip_service_running() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("d.toml");
    let missing = dir.path().join("no-such-stick");
    std::fs::write(
        &cfg,
        format!(
            r#"
[device]
name = "zb-dut"
identity_key = "id.key"
trust_store = "trust.json"

[listen]
udp = "127.0.0.1:0"

[discovery]
enabled = false

[control]
tcp = "127.0.0.1:0"

[zigbee]
znp = "{}"
timeout_ms = 200
"#,
            missing.display()
        ),
    )
    .unwrap();
    let (mut daemon, _out, bound) = spawn_softbusd(&cfg).await;
    assert!(bound.get("zigbee").is_none(), "{bound}");
    let errors = bound["link_errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors.len() == 1 && errors[0].as_str().unwrap_or("").contains("no-such-stick"),
        "{bound}"
    );
    let ctl = TcpStream::connect(bound["control"].as_str().unwrap())
        .await
        .unwrap();
    let (cr, cw) = ctl.into_split();
    let mut control = Control {
        lines: BufReader::new(cr).lines(),
        w: cw,
    };
    let hello = control.call(json!({"op": "hello"})).await;
    assert_eq!(hello["zigbee"], Value::Null, "{hello}");
    let state = control.call(json!({"op": "state"})).await;
    assert_eq!(state["links"]["errors"], json!(errors), "{state}");
    // Frames to a Zigbee address go nowhere, without harm.
    control
        .call(json!({"op": "connect", "addr": "zigbee:0x1234"}))
        .await;
    control.call(json!({"op": "state"})).await;
    assert!(daemon.try_wait().unwrap().is_none(), "softbusd exited");
    let _ = daemon.kill().await;
}

/// Starts `softbusd` on `cfg` and reads the JSON line it prints with what it bound; the rest of
/// its stdout stays readable.
async fn spawn_softbusd(
    cfg: &std::path::Path,
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    Value,
) {
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_softbusd"))
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(daemon.stdout.take().unwrap()).lines();
    let bound: Value = serde_json::from_str(
        &tokio::time::timeout(T, out.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    (daemon, out, bound)
}
