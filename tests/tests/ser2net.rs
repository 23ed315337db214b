//! Zigbee sticks served over the network by a real ser2net (Debian package `ser2net`), as a
//! lab shares them: the virtual Z-Stack network (`znp-emulator --node a --node b`) puts two
//! router sticks on PTYs, and ser2net serves stick `a` as a raw TCP port (`tcp://`) and stick
//! `b` as Telnet with RFC 2217 port control (`rfc2217://`, which sets 8N1 at 115200 baud when
//! the port opens and escapes 0xFF as `IAC IAC`). Through each URL the test pings the stick
//! (`SYS_PING`), then brings both sticks up as the harness's Zigbee link and sends datagrams
//! each way between them, with 0xFF bytes in them so the escaping is exercised in both
//! directions; and `softbusd` brings its Zigbee link up through `rfc2217://` and pairs by PIN
//! with an in-memory SoftBus endpoint whose frames the harness's link carries over `tcp://`.
//! Everything the tests start (the emulator, ser2net, the daemon) is killed on drop, also when
//! they fail.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use serde_json::Value;
use softbus::endpoint::{Config, Endpoint, Event, LinkAddr};
use softbus::link::znp::commands::capabilities;
use softbus::link::znp::ZnpPort;
use softbus::trust::TrustStore;
use softbus::Identity;
use softbus_e2e::{binary, require_debian_tool, Daemon};
use softbus_harness::link::zigbee::ZigbeeLink;
use softbus_harness::link::DatagramLink;

const BAUD: u32 = 115_200;
const T: Duration = Duration::from_secs(3);

/// A child process killed (and reaped) on drop.
struct Killed(Child, &'static str);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    /// Fails if the process has already exited (ser2net refusing its configuration, say).
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.0.try_wait()? {
            bail!("{} exited early with {status}", self.1);
        }
        Ok(())
    }
}

/// A TCP port nobody listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The two emulated sticks: the process and each node's (PTY, network address).
fn start_emulator() -> anyhow::Result<(Killed, Value)> {
    let mut child = Command::new(binary("softbus-harness", "znp-emulator")?)
        .args(["--node", "a", "--node", "b", "--exit-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning znp-emulator")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let emulator = Killed(child, "znp-emulator");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let announced: Value =
        serde_json::from_str(&line).with_context(|| format!("emulator line {line:?}"))?;
    Ok((emulator, announced["nodes"].clone()))
}

/// ser2net's YAML configuration (ser2net.yaml(5)): `a_pty` on a raw TCP port, `b_pty` on a
/// Telnet port with RFC 2217, both on loopback. `local` ignores modem lines (a PTY has none).
fn ser2net_yaml(a_pty: &str, raw_port: u16, b_pty: &str, rfc2217_port: u16) -> String {
    format!(
        "%YAML 1.1\n---\n\
         connection: &stick-a\n  accepter: tcp,127.0.0.1,{raw_port}\n  \
         connector: serialdev,{a_pty},{BAUD}n81,local\n  options:\n    kickolduser: true\n\
         \n\
         connection: &stick-b\n  accepter: telnet(rfc2217),tcp,127.0.0.1,{rfc2217_port}\n  \
         connector: serialdev,{b_pty},{BAUD}n81,local\n  options:\n    kickolduser: true\n"
    )
}

/// Starts ser2net on `config` in the foreground and waits until both ports listen.
fn start_ser2net(dir: &Path, config: &str, ports: [u16; 2]) -> anyhow::Result<Killed> {
    // A daemon: in /usr/sbin, which is not on a Debian user's PATH.
    let ser2net = match Path::new("/usr/sbin/ser2net") {
        p if p.is_file() => p.to_path_buf(),
        _ => require_debian_tool("ser2net", "ser2net")?,
    };
    let file = dir.join("ser2net.yaml");
    std::fs::write(&file, config)?;
    let child = Command::new(ser2net)
        .arg("-n") // foreground
        .arg("-c")
        .arg(&file)
        .arg("-P")
        .arg(dir.join("ser2net.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning ser2net")?;
    let mut ser2net = Killed(child, "ser2net");
    let end = Instant::now() + Duration::from_secs(10);
    for port in ports {
        // A probe connection opens and closes the device: harmless, the next opener
        // clears what it finds.
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            ser2net.check_alive()?;
            if Instant::now() > end {
                bail!("ser2net does not listen on 127.0.0.1:{port} after 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(ser2net)
}

fn node(nodes: &Value, name: &str) -> anyhow::Result<(String, u16)> {
    let n = &nodes[name];
    let pty = n["pty"].as_str().context("node pty")?.to_string();
    let nwk = u16::try_from(n["nwk"].as_u64().context("node nwk")?)?;
    Ok((pty, nwk))
}

/// Sends `datagram` on `from` and waits for it on `to`.
fn carry(from: &ZigbeeLink, to: &ZigbeeLink, datagram: &[u8]) -> anyhow::Result<()> {
    from.send(datagram)?;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(got) = to.recv(Duration::from_millis(100))? {
            assert_eq!(got, datagram, "{} -> {}", from.peer(), to.peer());
            return Ok(());
        }
        if Instant::now() > end {
            bail!(
                "a {}-byte datagram sent to {} never arrived",
                datagram.len(),
                from.peer()
            );
        }
    }
}

#[test]
fn zigbee_sticks_served_by_ser2net_work_over_tcp_and_rfc2217() -> anyhow::Result<()> {
    let (mut emulator, nodes) = start_emulator()?;
    let (a_pty, a_nwk) = node(&nodes, "a")?;
    let (b_pty, b_nwk) = node(&nodes, "b")?;
    let dir = tempfile::tempdir()?;
    let (raw_port, rfc2217_port) = (free_port()?, free_port()?);
    let mut ser2net = start_ser2net(
        dir.path(),
        &ser2net_yaml(&a_pty, raw_port, &b_pty, rfc2217_port),
        [raw_port, rfc2217_port],
    )?;
    let raw = format!("tcp://127.0.0.1:{raw_port}");
    let telnet = format!("rfc2217://127.0.0.1:{rfc2217_port}");

    // SYS_PING through each form: the MT frames cross unchanged.
    for url in [&raw, &telnet] {
        let mut port = ZnpPort::open(url, BAUD).with_context(|| format!("opening {url}"))?;
        port.set_timeout(T);
        let rsp = port
            .ping()
            .with_context(|| format!("SYS_PING through {url}"))?;
        assert_ne!(rsp.capabilities & capabilities::AF, 0, "{url}: {rsp:?}");
        assert_eq!(port.stats().decoder.bad_fcs, 0, "{url}");
    }

    // Both sticks up as the harness's Zigbee link, each addressed to the other.
    let a = ZigbeeLink::open(&raw, BAUD, b_nwk, T).context("Zigbee link on tcp://")?;
    let b = ZigbeeLink::open(&telnet, BAUD, a_nwk, T).context("Zigbee link on rfc2217://")?;
    assert_eq!((a.own_nwk(), b.own_nwk()), (a_nwk, b_nwk));
    // 0xFF bytes (Telnet's IAC) in the data, one datagram that takes several APS segments.
    let small: Vec<u8> = vec![0xFF, 0x00, 0xFF, 0xFF, 0x0D, 0x0A, 0xFE, 0xFF];
    let large: Vec<u8> = (0..600u32).map(|i| (i * 37 % 256) as u8).collect();
    assert!(large.iter().filter(|&&x| x == 0xFF).count() > 1);
    for d in [&small, &large] {
        carry(&a, &b, d).context("tcp:// to rfc2217://")?;
        carry(&b, &a, d).context("rfc2217:// to tcp://")?;
    }
    assert_eq!((a.failed_deliveries(), b.failed_deliveries()), (0, 0));
    assert_eq!((a.discarded(), b.discarded()), (0, 0));
    ser2net.check_alive()?;
    emulator.check_alive()?;
    drop((a, b));
    Ok(())
}

#[test]
fn a_port_served_without_rfc2217_is_refused_with_what_to_do() -> anyhow::Result<()> {
    let (_emulator, nodes) = start_emulator()?;
    let (a_pty, _) = node(&nodes, "a")?;
    let (b_pty, _) = node(&nodes, "b")?;
    let dir = tempfile::tempdir()?;
    let (raw_port, rfc2217_port) = (free_port()?, free_port()?);
    let _ser2net = start_ser2net(
        dir.path(),
        &ser2net_yaml(&a_pty, raw_port, &b_pty, rfc2217_port),
        [raw_port, rfc2217_port],
    )?;
    // The raw port answers no Telnet negotiation: opening it as RFC 2217 times out, saying so.
    let url = format!("rfc2217://127.0.0.1:{raw_port}");
    let e = ZnpPort::open(&url, BAUD).unwrap_err().to_string();
    assert!(
        e.contains(&url) && e.contains("no acknowledgement of the line settings"),
        "{e}"
    );
    assert!(e.contains("telnet(rfc2217),tcp,PORT"), "{e}");
    Ok(())
}

#[test]
fn softbusd_brings_its_zigbee_link_up_through_rfc2217_and_pairs_over_it() -> anyhow::Result<()> {
    const PIN: &str = "531842";
    let (mut emulator, nodes) = start_emulator()?;
    let (a_pty, a_nwk) = node(&nodes, "a")?;
    let (b_pty, b_nwk) = node(&nodes, "b")?;
    let dir = tempfile::tempdir()?;
    let (raw_port, rfc2217_port) = (free_port()?, free_port()?);
    let mut ser2net = start_ser2net(
        dir.path(),
        &ser2net_yaml(&a_pty, raw_port, &b_pty, rfc2217_port),
        [raw_port, rfc2217_port],
    )?;
    let daemon = Daemon::spawn(
        &format!(
            r#"[device]
name = "zb-remote"
identity_key = "identity.key"
trust_store = "trust.json"
pin = "{PIN}"
prompt_policy = "approve"

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
znp = "rfc2217://127.0.0.1:{rfc2217_port}"
timeout_ms = 3000
"#
        ),
        None,
    )?;
    // The stick was pinged, reset, started and its endpoint registered through RFC 2217.
    assert_eq!(daemon.bound["zigbee"], json!(b_nwk), "{}", daemon.bound);
    let dut_id = daemon.bound["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let link = ZigbeeLink::open(&format!("tcp://127.0.0.1:{raw_port}"), BAUD, b_nwk, T)?;
    let mut ep = Endpoint::new(
        Config {
            name: "zb-tester".into(),
            ..Config::default()
        },
        Identity::from_secret([0x3C; 32]),
        TrustStore::new(),
        [0x3C; 32],
        Instant::now(),
        1_700_000_000,
    );
    ep.pair(Instant::now(), LinkAddr::Zigbee(b_nwk), PIN)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let end = Instant::now() + Duration::from_secs(20);
    let paired = 'drive: loop {
        while let Some(t) = ep.poll_transmit() {
            link.send(&t.data)?;
        }
        while let Some(e) = ep.poll_event() {
            if matches!(e, Event::Paired { .. } | Event::PairingFailed { .. }) {
                break 'drive e;
            }
        }
        if Instant::now() > end {
            bail!("no pairing result within 20 s over rfc2217:// and tcp://");
        }
        if let Some(d) = link.recv(Duration::from_millis(20))? {
            ep.handle_datagram(Instant::now(), LinkAddr::Zigbee(b_nwk), &d);
        }
        ep.handle_timeout(Instant::now());
    };
    match &paired {
        Event::Paired { peer, .. } if peer.to_hex() == dut_id => {}
        other => bail!("pairing through ser2net: {other:?}"),
    }
    let state = daemon.control()?.call(json!({"op": "state"}))?;
    let z = &state["links"]["zigbee"];
    assert_eq!(z["up"], json!(true), "{state}");
    assert_eq!(z["stats"]["bad_segments"], json!(0), "{state}");
    assert_eq!(link.own_nwk(), a_nwk);
    ser2net.check_alive()?;
    emulator.check_alive()?;
    drop(daemon);
    Ok(())
}
