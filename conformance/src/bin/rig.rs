//! `rig check FILE`: probe every device a rig names and say what is missing and how to fix it.
//! Usually invoked as `cargo xtask rig check rigs/<rig>.toml`. Exit 0 when every probe passes,
//! 1 when one fails, 2 on a usage or rig-file error.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use softbus_conformance::tester::dut::DutHandle;
use softbus_conformance::tester::probe::frame_probe;
use softbus_harness::capture::{Capture, CaptureError};
use softbus_harness::link::Transport;
use softbus_harness::rig::{ControlKind, DutKind, Rig};

struct Probe {
    dut: String,
    what: String,
    ok: bool,
    detail: String,
}

fn usage() -> ExitCode {
    eprintln!("usage: rig check FILE\n\nProbes each DUT of the rig: launch (virtual), control channel, SoftBus frame port,\nCoAP discovery, packet capture, serial ports and BLE adapters it names.");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cmd), Some(file)) = (args.first(), args.get(1)) else {
        return usage();
    };
    if cmd != "check" {
        return usage();
    }
    let path = PathBuf::from(file);
    let rig = match Rig::load(&path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rig: {e}");
            return ExitCode::from(2);
        }
    };
    let mut probes = Vec::new();
    let tmp = std::env::temp_dir().join(format!("softbus-rig-check-{}", std::process::id()));
    for d in &rig.duts {
        let mut add = |what: &str, ok: bool, detail: String| {
            probes.push(Probe {
                dut: d.name.clone(),
                what: what.into(),
                ok,
                detail,
            })
        };
        match rig.require_pics(&d.name) {
            Ok(p) => add("pics", true, format!("{} features declared", p.len())),
            Err(e) => add("pics", false, e.to_string()),
        }
        let mut handle = match DutHandle::new(d, None, &tmp.join(&d.name)) {
            Ok(h) => h,
            Err(e) => {
                add("setup", false, e);
                continue;
            }
        };
        if d.kind == DutKind::Virtual {
            match handle.ensure_running() {
                Ok(()) => add("launch", true, "virtual DUT started".into()),
                Err(e) => {
                    add(
                        "launch",
                        false,
                        format!("{e} (is softbusd built? `cargo build -p softbus`)"),
                    );
                    continue;
                }
            }
        }
        // Control channel.
        match d.control.kind {
            ControlKind::Tcp | ControlKind::Serial => match handle.upper(Duration::from_secs(3)).and_then(|mut u| u.call(json!({"op": "hello"}))) {
                Ok(h) => add("control", true, format!("hello: device {} spec {}", h["device_id"], h["spec"])),
                Err(e) => add("control", false, format!("{e}; check [dut.control] address and that the test build runs the control server")),
            },
            ControlKind::None => add("control", true, "none declared: cases needing it ask the operator or are INCONC".into()),
            other => add("control", false, format!("{other:?} control channels are not supported by this harness version; use kind = \"tcp\"")),
        }
        // Frame port: a Noise HANDSHAKE_1 from a throwaway key must be answered.
        let udp = handle.udp;
        let local: SocketAddr = if udp.ip().is_loopback() {
            ([127, 0, 0, 1], 0).into()
        } else {
            ([0, 0, 0, 0], 0).into()
        };
        match handle
            .link(Transport::Udp, local, Duration::from_secs(2))
            .map_err(|e| e.to_string())
            .and_then(|l| frame_probe(&*l))
        {
            Ok(d) => add("frames", true, d),
            Err(e) => add("frames", false, format!("{e}; check [dut.udp]")),
        }
        // Discovery.
        if let Some(disc) = handle.dut.discovery.clone().as_ref() {
            let s = UdpSocket::bind(SocketAddr::new(
                if udp.ip().is_loopback() {
                    [127, 0, 0, 1].into()
                } else {
                    [0, 0, 0, 0].into()
                },
                0,
            ));
            match s {
                Ok(s) => {
                    let probe = softbus::discovery::Probe::new(1, [1, 2, 3, 4], None);
                    let target = SocketAddr::new(disc.group.into(), disc.port);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(800)));
                    let iface = if udp.ip().is_loopback() {
                        Some(std::net::Ipv4Addr::LOCALHOST)
                    } else {
                        None
                    };
                    if let Some(i) = iface {
                        let _ = socket2::SockRef::from(&s).set_multicast_if_v4(&i);
                    }
                    let mut buf = [0u8; 2048];
                    let ok = probe.is_ok_and(|p| {
                        s.send_to(&p.to_bytes(), target).is_ok()
                            && s.recv_from(&mut buf)
                                .is_ok_and(|(n, _)| p.parse_response(&buf[..n]).is_ok())
                    });
                    add(
                        "discovery",
                        ok,
                        if ok {
                            format!("advert received for a multicast probe to {target}")
                        } else {
                            format!("no advert for a multicast probe to {target}; check [dut.discovery] and multicast routing on the interface")
                        },
                    );
                }
                Err(e) => add("discovery", false, e.to_string()),
            }
        }
        // Capture rights.
        if let Some(c) = &d.capture {
            let f = tmp.join("probe.pcap");
            match Capture::start(&c.interface, "udp", &f).and_then(|c| c.stop()) {
                Ok(_) => add("capture", true, format!("can capture on {}", c.interface)),
                Err(CaptureError::NoPermission { .. }) => add(
                    "capture",
                    false,
                    format!("no permission to capture on {}: run as root or `sudo setcap cap_net_raw,cap_net_admin=eip <certify binary>`; cases needing capture will be INCONC", c.interface),
                ),
                Err(e) => add("capture", false, e.to_string()),
            }
        }
        if let Some(s) = &d.serial {
            let path = s.path.display().to_string();
            // A port ser2net shares (tcp://, rfc2217://) is probed by opening it; a local one
            // must exist first.
            let remote =
                softbus::link::serial::SerialAddr::parse(&path).is_ok_and(|a| a.is_remote());
            if !remote && std::fs::metadata(&s.path).is_err() {
                add(
                    "serial",
                    false,
                    format!(
                        "{path} does not exist: plug in the coordinator or fix [dut.serial] path"
                    ),
                );
            } else {
                // The coordinator must answer Z-Stack MT: SYS_PING, then SYS_VERSION.
                let probe =
                    softbus::link::znp::ZnpPort::open(&path, s.baud).and_then(|mut port| {
                        port.set_timeout(Duration::from_secs(2));
                        port.ping()?;
                        port.version()
                    });
                match probe {
                    Ok(v) => add(
                        "serial",
                        true,
                        format!(
                            "coordinator on {path} at {} baud answers: Z-Stack {}.{}.{} (product {})",
                            s.baud, v.major_rel, v.minor_rel, v.maint_rel, v.product_id
                        ),
                    ),
                    Err(e) => add(
                        "serial",
                        false,
                        format!("{path} opens but no Z-Stack coordinator answers SYS_PING at {} baud ({e}); check the baud rate and the stick's firmware", s.baud),
                    ),
                }
            }
        }
        // The non-IP links: open them as the cases do (the tester's radio comes up and joins,
        // the BLE central finds, connects and subscribes), then a handshake probe across.
        for (t, what, fix) in [
            (
                Transport::Zigbee,
                "zigbee",
                "check [dut.zigbee] radio (the tester's stick), baud and address (the DUT's)",
            ),
            (
                Transport::Ble,
                "ble",
                "check [dut.ble] address or name, the adapter, and that bluetoothd runs (or dbus names the virtual BlueZ)",
            ),
        ] {
            let declared = match t {
                Transport::Zigbee => d.zigbee.is_some(),
                _ => d.ble.is_some(),
            };
            if !declared {
                continue;
            }
            match handle.link(t, local, Duration::from_secs(3)) {
                Ok(link) => match frame_probe(&*link) {
                    Ok(detail) => add(what, true, detail),
                    Err(e) => add(what, false, format!("link up, but {e}; {fix}")),
                },
                Err(e) => add(what, false, format!("{e}; {fix}")),
            }
        }
        handle.stop();
    }
    let _ = std::fs::remove_dir_all(&tmp);
    println!("rig {} ({})", rig.rig.name, path.display());
    let w = probes.iter().map(|p| p.dut.len()).max().unwrap_or(3).max(3);
    println!("  {:<w$}  {:<10} {:<7} detail", "dut", "probe", "status");
    for p in &probes {
        println!(
            "  {:<w$}  {:<10} {:<7} {}",
            p.dut,
            p.what,
            if p.ok { "ok" } else { "MISSING" },
            p.detail
        );
    }
    if probes.iter().all(|p| p.ok) {
        println!("all probes passed");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
