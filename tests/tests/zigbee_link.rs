//! `softbusd` over its Zigbee link: the virtual Z-Stack network (`znp-emulator --node dut --node
//! tester`) gives the daemon one router stick (`[zigbee] znp`) and the test another, driven by
//! the harness's Zigbee link (`AF_REGISTER` of the SoftBus endpoint, `AF_DATA_REQUEST` per
//! segment, `AF_INCOMING_MSG` back), carrying the frames of an in-memory SoftBus endpoint. That
//! endpoint pairs with the daemon by PIN; then the daemon, told over the control channel to
//! `connect` to `zigbee:0x....`, runs the Noise handshake to it. Every frame crosses the emulated
//! radio as 80-byte APS segments.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use softbus::endpoint::{Config, Endpoint, Event, LinkAddr};
use softbus::link::zigbee::APS_PAYLOAD_MAX;
use softbus::trust::TrustStore;
use softbus::Identity;
use softbus_e2e::{binary, Daemon};
use softbus_harness::link::zigbee::ZigbeeLink;
use softbus_harness::link::DatagramLink;

const PIN: &str = "864213";
const T: Duration = Duration::from_secs(15);

/// The emulator process, killed on drop.
struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tester's stick (the harness's Zigbee link) and the SoftBus endpoint whose frames it
/// carries.
struct Tester {
    link: ZigbeeLink,
    ep: Endpoint,
    dut_nwk: u16,
    events: VecDeque<Event>,
    /// Frame types (first header byte) of the whole datagrams the DUT sent.
    received: Vec<u8>,
}

impl Tester {
    /// Moves frames both ways and fires timers until an event satisfies `done`.
    fn drive_until(&mut self, done: impl Fn(&Event) -> bool) -> anyhow::Result<Event> {
        let end = Instant::now() + T;
        loop {
            while let Some(t) = self.ep.poll_transmit() {
                assert_eq!(t.dst, LinkAddr::Zigbee(self.dut_nwk));
                self.link.send(&t.data)?;
            }
            while let Some(e) = self.ep.poll_event() {
                if done(&e) {
                    return Ok(e);
                }
                self.events.push_back(e);
            }
            if Instant::now() > end {
                bail!("timed out; tester events: {:?}", self.events);
            }
            if let Some(d) = self.link.recv(Duration::from_millis(20))? {
                self.received.push(d.first().copied().unwrap_or(0));
                let from = LinkAddr::Zigbee(self.dut_nwk);
                self.ep.handle_datagram(Instant::now(), from, &d);
            }
            self.ep.handle_timeout(Instant::now());
        }
    }
}

#[test]
fn daemon_pairs_and_connects_over_the_zigbee_link() -> anyhow::Result<()> {
    let mut child = Command::new(binary("softbus-harness", "znp-emulator")?)
        .args(["--node", "dut", "--node", "tester", "--exit-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning znp-emulator")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let emulator = Emulator(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let announced: Value =
        serde_json::from_str(&line).with_context(|| format!("emulator line {line:?}"))?;
    let node = |name: &str| -> anyhow::Result<(String, u16)> {
        let n = &announced["nodes"][name];
        let pty = n["pty"].as_str().context("node pty")?.to_string();
        let nwk = n["nwk"].as_u64().context("node nwk")? as u16;
        Ok((pty, nwk))
    };
    let (dut_pty, dut_nwk) = node("dut")?;
    let (tester_pty, tester_nwk) = node("tester")?;

    let daemon = Daemon::spawn(
        &format!(
            r#"[device]
name = "zb-dut"
identity_key = "identity.key"
trust_store = "trust.json"
pin = "{PIN}"
prompt_policy = "approve"
heartbeat_interval_ms = 500

[[capability]]
name = "speaker.main"
kind = "speaker"

[listen]
udp = "127.0.0.1:0"

[discovery]
enabled = false

[control]
tcp = "127.0.0.1:0"

[zigbee]
znp = "{dut_pty}"
timeout_ms = 2000
"#
        ),
        None,
    )?;
    assert_eq!(daemon.bound["zigbee"], json!(dut_nwk), "{}", daemon.bound);
    let dut_id = daemon.bound["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut control = daemon.control()?;

    let mut tester = Tester {
        link: ZigbeeLink::open(&tester_pty, 115_200, dut_nwk, Duration::from_secs(2))?,
        ep: Endpoint::new(
            Config {
                name: "zb-tester".into(),
                hb_interval: Duration::from_millis(500),
                ..Config::default()
            },
            Identity::from_secret([0x5B; 32]),
            TrustStore::new(),
            [0x5B; 32],
            Instant::now(),
            1_700_000_000,
        ),
        dut_nwk,
        events: VecDeque::new(),
        received: Vec::new(),
    };
    let tester_id = tester.ep.identity().device_id().to_hex();

    // The tester pairs: PAIR_INIT out, the DUT's pairing answers back over Zigbee.
    tester
        .ep
        .pair(Instant::now(), LinkAddr::Zigbee(dut_nwk), PIN)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let paired =
        tester.drive_until(|e| matches!(e, Event::Paired { .. } | Event::PairingFailed { .. }))?;
    match &paired {
        Event::Paired { peer, .. } if peer.to_hex() == dut_id => {}
        other => bail!("pairing over Zigbee: {other:?}"),
    }
    assert!(!tester.received.is_empty(), "the DUT never answered");
    control.wait_event(T, |e| {
        e["type"] == json!("paired") && e["peer"] == json!(tester_id)
    })?;

    // The DUT initiates the handshake over Zigbee, addressed as the control protocol says.
    control.call(json!({"op": "connect", "addr": format!("zigbee:{tester_nwk:#06x}")}))?;
    let connected = tester
        .drive_until(|e| matches!(e, Event::Connected { .. } | Event::HandshakeFailed { .. }))?;
    match &connected {
        Event::Connected {
            peer, initiator, ..
        } if peer.to_hex() == dut_id && !initiator => {}
        other => bail!("handshake over Zigbee: {other:?}"),
    }
    let e = control.wait_event(T, |e| {
        e["type"] == json!("connected") && e["peer"] == json!(tester_id)
    })?;
    assert_eq!(
        e["addr"],
        json!({"link": "zigbee", "addr": tester_nwk}),
        "{e}"
    );

    let state = control.call(json!({"op": "state"}))?;
    let z = &state["links"]["zigbee"];
    assert_eq!(z["up"], json!(true), "{state}");
    assert_eq!(z["nwk"], json!(dut_nwk), "{state}");
    assert!(
        z["stats"]["datagrams_in"].as_u64().unwrap_or(0) >= 2,
        "{state}"
    );
    assert!(
        z["stats"]["datagrams_out"].as_u64().unwrap_or(0) >= 2,
        "{state}"
    );
    assert_eq!(z["stats"]["send_failures"], json!(0), "{state}");
    assert_eq!(z["stats"]["bad_segments"], json!(0), "{state}");
    // What the DUT sent: on the SoftBus endpoint and cluster (the link takes nothing else),
    // within the APS limit, every segment continuing its datagram.
    let seen = tester.link.stats();
    assert!(seen.packets_in > 0, "{seen:?}");
    assert!(seen.largest_packet_in <= APS_PAYLOAD_MAX, "{seen:?}");
    assert_eq!(seen.discarded, 0, "{seen:?}");
    drop(daemon);
    drop(emulator);
    Ok(())
}
