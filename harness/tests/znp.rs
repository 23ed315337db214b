//! Zigbee through ZNP (Z-Stack Monitor and Test): the reference's frame codec and typed
//! commands (`softbus::link::znp`) round-trip, the streaming decoder survives any bytes and
//! resynchronises after noise, the `ZnpPort` driver talks to the `znp-emulator` binary over a
//! real PTY (ping, version, device info, starting the network, toggling the light and reading it
//! back, reading the temperature sensor, ZDO discovery), the protocol converter
//! (`softbus::bridge`) finds and drives the emulated devices, and the emulator's output never
//! beats the physical wire time of the baud rate it claims.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value as Json;
use serialport::{SerialPort, TTYPort};
use softbus::bridge::{Bridge, BridgeConfig, BridgedDevice, BridgedKind, Completion};
use softbus::link::znp::commands::{
    bdb, capabilities, device_state, logical_type, status, zdo_status, AfDataConfirm,
    AfDataRequestReq, AfIncomingMsg, AfRegisterReq, AppCnfBdbStartCommissioningReq, Eui64,
    Neighbor, Payload, SimpleDescriptor, SysOsalNvReadExtReq, SysPingReq, SysPingRsp, SysResetInd,
    SysResetReq, SysVersionRsp, ZdoActiveEpCallback, ZdoActiveEpReq, ZdoMgmtLqiCallback,
    ZdoMgmtLqiReq, ZdoSimpleDescCallback, ZdoSimpleDescReq, ZdoStateChangeInd,
};
use softbus::link::znp::frame::{Frame, MAX_PAYLOAD};
use softbus::link::znp::zcl::{self, FrameType, Value, ZclFrame};
use softbus::link::znp::{
    Command, CommandHeader, Decoder, FrameError, FrameRepr, PortError, ZnpPort,
};
use softbus::wire::Code;
use softbus_harness::znp::emulator::{
    Emulator as EmulatorRunner, EmulatorConfig, DEVICE_ENDPOINT, LIGHT_IEEE, LIGHT_NWK, SENSOR_NWK,
};
use softbus_harness::znp::wire_time;

const T: Duration = Duration::from_secs(5);

// ---- codec ---------------------------------------------------------------------------------

fn arb_frame() -> impl Strategy<Value = FrameRepr> {
    (
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..=MAX_PAYLOAD),
    )
        .prop_map(|(cmd0, cmd1, payload)| FrameRepr {
            header: CommandHeader::from_bytes(cmd0, cmd1),
            payload,
        })
}

fn arb_command() -> impl Strategy<Value = Command> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..=80);
    prop_oneof![
        any::<u16>().prop_map(|capabilities| Command::from(SysPingRsp { capabilities })),
        (
            any::<[u8; 5]>(),
            any::<Option<(u32, Option<(u8, Option<u32>)>)>>()
        )
            .prop_map(|(v, tail)| {
                let (code, rest) = tail.unzip();
                let (build, rev) = rest.flatten().unzip();
                Command::from(SysVersionRsp {
                    transport_rev: v[0],
                    product_id: v[1],
                    major_rel: v[2],
                    minor_rel: v[3],
                    maint_rel: v[4],
                    code_revision: code,
                    bootloader_build_type: build,
                    bootloader_revision: rev.flatten(),
                })
            }),
        (any::<u16>(), any::<[u8; 6]>(), any::<u16>(), bytes()).prop_map(
            |(addr, b, cluster, data)| {
                Command::from(AfDataRequestReq {
                    dst_addr: addr,
                    dst_endpoint: b[0],
                    src_endpoint: b[1],
                    cluster_id: cluster,
                    trans_id: b[2],
                    options: b[3],
                    radius: b[4],
                    data,
                })
            }
        ),
        (
            any::<[u16; 3]>(),
            any::<[u8; 6]>(),
            any::<u32>(),
            bytes(),
            any::<Option<(u16, Option<u8>)>>()
        )
            .prop_map(|(w, b, timestamp, data, tail)| {
                let (mac, radius) = tail.unzip();
                Command::from(AfIncomingMsg {
                    group_id: w[0],
                    cluster_id: w[1],
                    src_addr: w[2],
                    src_endpoint: b[0],
                    dst_endpoint: b[1],
                    was_broadcast: b[2],
                    lqi: b[3],
                    security_use: b[4],
                    timestamp,
                    trans_seq: b[5],
                    data,
                    mac_src_addr: mac,
                    msg_result_radius: radius.flatten(),
                })
            }),
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            proptest::collection::vec(any::<u16>(), 0..20)
        )
            .prop_map(
                |(endpoint, profile_id, device_id, device_version, clusters)| {
                    Command::from(AfRegisterReq {
                        endpoint,
                        profile_id,
                        device_id,
                        device_version,
                        latency_req: 0,
                        input_clusters: clusters.clone(),
                        output_clusters: clusters.into_iter().rev().collect(),
                    })
                }
            ),
        any::<u8>().prop_map(|state| Command::from(ZdoStateChangeInd { state })),
        (any::<[u16; 2]>(), any::<u8>(), bytes()).prop_map(|(w, status, eps)| {
            Command::from(ZdoActiveEpCallback {
                src_addr: w[0],
                status,
                nwk_addr: w[1],
                active_endpoints: eps,
            })
        }),
        (
            any::<[u16; 4]>(),
            any::<[u8; 2]>(),
            proptest::option::of(proptest::collection::vec(any::<u16>(), 0..30))
        )
            .prop_map(|(w, b, clusters)| {
                Command::from(ZdoSimpleDescCallback {
                    src_addr: w[0],
                    status: b[0],
                    nwk_addr: w[1],
                    descriptor: clusters.map(|c| SimpleDescriptor {
                        endpoint: b[1],
                        profile_id: w[2],
                        device_id: w[3],
                        device_version: b[0],
                        input_clusters: c.clone(),
                        output_clusters: c.into_iter().rev().collect(),
                    }),
                })
            }),
        (
            any::<[u8; 3]>(),
            proptest::collection::vec((any::<[u64; 2]>(), any::<u16>(), any::<[u8; 4]>()), 0..10)
        )
            .prop_map(|(b, entries)| {
                Command::from(ZdoMgmtLqiCallback {
                    src_addr: u16::from(b[0]),
                    status: b[1],
                    neighbor_table_entries: b[2],
                    start_index: 0,
                    neighbors: entries
                        .into_iter()
                        .map(|(ids, nwk, f)| Neighbor {
                            extended_pan_id: Eui64(ids[0]),
                            ieee: Eui64(ids[1]),
                            nwk,
                            device_type: f[0] & 0x03,
                            rx_on_when_idle: (f[0] >> 2) & 0x03,
                            relationship: (f[0] >> 4) & 0x07,
                            permit_joining: f[1] & 0x03,
                            depth: f[2],
                            lqi: f[3],
                        })
                        .collect(),
                })
            }),
    ]
}

proptest! {
    // Failures print their minimal input and seed; no regression files beside the sources.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn frame_round_trips_through_bytes_and_view(repr in arb_frame()) {
        let bytes = repr.to_bytes();
        prop_assert_eq!(bytes.len(), repr.buffer_len());
        prop_assert_eq!(FrameRepr::parse_bytes(&bytes), Ok(repr.clone()));
        let mut buf = vec![0u8; repr.buffer_len() + 3];
        repr.emit(&mut Frame::new_unchecked(&mut buf[..])).expect("buffer is large enough");
        prop_assert_eq!(&buf[..bytes.len()], &bytes[..]);
    }

    #[test]
    fn typed_commands_round_trip(command in arb_command()) {
        let frame = command.to_frame().expect("encodes");
        let again = FrameRepr::parse_bytes(&frame.to_bytes()).expect("parses");
        prop_assert_eq!(Command::from_frame(&again), Ok(command));
    }

    #[test]
    fn known_headers_never_panic_on_arbitrary_payloads(
        cmd0 in prop::sample::select(vec![0x21u8, 0x41, 0x61, 0x24, 0x44, 0x64, 0x25, 0x45, 0x65, 0x27, 0x67, 0x2F, 0x4F, 0x6F, 0x60]),
        cmd1 in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..=MAX_PAYLOAD),
    ) {
        let frame = FrameRepr { header: CommandHeader::from_bytes(cmd0, cmd1), payload };
        let _ = Command::from_frame(&frame);
        let _ = ZclFrame::parse(&frame.payload);
        let _ = zcl::parse_read_attributes_rsp(&frame.payload);
    }

    #[test]
    fn decoder_never_panics_and_only_returns_valid_frames(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        chunk in 1usize..64,
    ) {
        let mut d = Decoder::new();
        let mut frames = Vec::new();
        for c in bytes.chunks(chunk) {
            d.push(c);
            while let Some(f) = d.next_frame() {
                frames.push(f);
            }
        }
        for f in &frames {
            let again = FrameRepr::parse_bytes(&f.to_bytes());
            prop_assert_eq!(again.as_ref(), Ok(f));
        }
        let s = d.stats();
        prop_assert_eq!(s.frames, frames.len() as u64);
        // Every byte is accounted for: in a frame, dropped, or still buffered.
        let in_frames: usize = frames.iter().map(FrameRepr::buffer_len).sum();
        prop_assert_eq!(
            in_frames as u64 + s.skipped_bytes + s.bad_fcs + s.bad_length + d.buffered() as u64,
            bytes.len() as u64
        );
    }

    #[test]
    fn decoder_recovers_every_frame_after_noise_without_start_bytes(
        noise in proptest::collection::vec(any::<u8>().prop_filter("not SOF", |b| *b != 0xFE), 0..600),
        frames in proptest::collection::vec(arb_frame(), 1..6),
        chunk in 1usize..300,
    ) {
        let mut line = noise.clone();
        for f in &frames {
            line.extend(f.to_bytes());
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for c in line.chunks(chunk) {
            d.push(c);
            while let Some(f) = d.next_frame() {
                got.push(f);
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(d.stats().skipped_bytes, noise.len() as u64);
    }

    #[test]
    fn decoder_resyncs_after_arbitrary_noise(
        noise in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        // 60 pings (300 bytes) after the noise. A false frame started inside the noise can
        // swallow at most 255 bytes (51 pings); a ping holds no 0xFE but its start byte, so the
        // decoder is back in step by then and must deliver the rest, the last one included.
        let ping = SysPingReq {}.to_frame().expect("frame");
        let mut line = noise;
        for _ in 0..60 {
            line.extend(ping.to_bytes());
        }
        let mut d = Decoder::new();
        d.push(&line);
        let mut pings = 0;
        let mut last = None;
        while let Some(f) = d.next_frame() {
            if f == ping {
                pings += 1;
            }
            last = Some(f);
        }
        prop_assert!(pings >= 9, "only {} of 60 pings recovered", pings);
        prop_assert_eq!(last, Some(ping));
        prop_assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn decoder_counts_what_it_drops() {
    let ping = SysPingReq {}.to_frame().expect("frame").to_bytes();
    let mut bad_fcs = ping.clone();
    bad_fcs[4] ^= 0x55;
    let mut line = vec![0xEF; 16]; // a CC253x bootloader's skip bytes
    line.extend([0xFE, 0xFF]); // length 255 > 250: not a frame
    line.extend(&bad_fcs);
    line.extend(&ping);
    let mut d = Decoder::new();
    d.push(&line);
    assert!(d.next_frame().is_some());
    assert!(d.next_frame().is_none());
    let s = d.stats();
    assert_eq!((s.frames, s.bad_fcs, s.bad_length), (1, 1, 1));
    assert_eq!(s.skipped_bytes, 16 + 1 + 4, "{s:?}");
}

#[test]
fn emit_rejects_oversized_payload() {
    let header = SysPingReq::HEADER;
    assert_eq!(
        FrameRepr::new(header, vec![0; 251]),
        Err(FrameError::PayloadTooLong(251))
    );
    let too_long = AfDataRequestReq {
        data: vec![0; 300],
        ..AfDataRequestReq::default()
    };
    assert!(too_long.to_frame().is_err());
    let fits_prefix_not_frame = AfDataRequestReq {
        data: vec![0; 245],
        ..AfDataRequestReq::default()
    };
    assert!(fits_prefix_not_frame.to_frame().is_err());
}

// ---- the driver over a real PTY -------------------------------------------------------------

#[test]
fn driver_resyncs_after_garbage_and_skips_stray_responses() {
    // The test plays the device on the PTY master; the driver opens the slave like a real port.
    let (mut master, slave) = TTYPort::pair().expect("PTY pair");
    let path = slave.name().expect("slave path");
    let mut port = ZnpPort::open(&path, 115_200).expect("open slave");
    let device = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        master.set_timeout(Duration::from_secs(5)).expect("timeout");
        while got.len() < 5 {
            let n = master.read(&mut buf).expect("request");
            got.extend_from_slice(&buf[..n]);
        }
        let mut line = vec![0x00, 0xFE, 0x03, 0x61, 0x01]; // noise and a frame cut short
        line.extend(
            SysVersionRsp::default()
                .to_frame()
                .expect("frame")
                .to_bytes(),
        ); // stray SRSP
        line.extend([0xFE, 0x02, 0x61, 0x01, 0x59, 0x06, 0x00]); // right header, bad FCS
        line.extend(
            SysPingRsp {
                capabilities: 0x0659,
            }
            .to_frame()
            .expect("frame")
            .to_bytes(),
        );
        master.write_all(&line).expect("answer");
        std::thread::sleep(Duration::from_millis(300));
        got
    });
    let rsp = port.ping().expect("ping answered after garbage");
    assert_eq!(rsp.capabilities, 0x0659);
    let sent = device.join().expect("device thread");
    assert_eq!(sent, SysPingReq {}.to_frame().expect("frame").to_bytes());
    let stats = port.stats();
    assert_eq!(stats.decoder.frames, 2, "{stats:?}");
    assert_eq!(stats.stray_srsp, 1, "{stats:?}");
    assert!(stats.decoder.bad_fcs >= 1, "{stats:?}");
}

/// A host that reopens a stick whose output was cut mid-frame reads the frame's tail first; a
/// 0xFE in that tail looks like a start byte whose length would swallow the SRSP behind it.
/// Once the line is quiet the driver drops that fragment and takes the SRSP, well inside the
/// timeout, instead of waiting for 200 bytes that never come.
#[test]
fn driver_drops_a_fragment_once_the_line_is_quiet_and_takes_the_srsp_behind_it() {
    let (mut master, slave) = TTYPort::pair().expect("PTY pair");
    let path = slave.name().expect("slave path");
    let mut port = ZnpPort::open(&path, 115_200).expect("open slave");
    port.set_timeout(Duration::from_secs(3));
    let device = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        master.set_timeout(Duration::from_secs(5)).expect("timeout");
        while got.len() < 5 {
            let n = master.read(&mut buf).expect("request");
            got.extend_from_slice(&buf[..n]);
        }
        let mut line = vec![0x3C, 0x91, 0xFE, 200, 0x44, 0x81, 0x00, 0x5B]; // a tail
        line.extend(
            SysPingRsp {
                capabilities: 0x0659,
            }
            .to_frame()
            .expect("frame")
            .to_bytes(),
        );
        master.write_all(&line).expect("answer");
        // Quiet from here on, as a stick is once it has answered; keep the line open.
        std::thread::sleep(Duration::from_secs(4));
    });
    let rsp = port.ping().expect("the SRSP behind the fragment");
    assert_eq!(rsp.capabilities, 0x0659);
    let stats = port.stats();
    assert_eq!(
        (stats.decoder.fragments, stats.decoder.frames),
        (1, 1),
        "{stats:?}"
    );
    drop(port);
    device.join().expect("device thread");
}

/// A host that died mid-write leaves the stick's parser holding a frame's first bytes. After
/// the line has been quiet, the stick (as Z-Stack's MT UART idle timeout does) drops them, so
/// the next host's first SYS_PING is answered.
#[test]
fn emulator_drops_a_host_fragment_once_the_line_is_quiet() {
    let emu = Emulator::start(115_200);
    let mut first = emu.port();
    first
        .write_raw(&[0xFE, 250, 0x24, 0x01, 0x00, 0x00])
        .expect("a frame's first bytes");
    drop(first);
    std::thread::sleep(Duration::from_millis(200));
    let mut second = emu.port();
    second.set_timeout(Duration::from_secs(2));
    second.ping().expect("the first ping after the fragment");
}

/// A running `znp-emulator` process; killed when dropped.
struct Emulator {
    child: Child,
    announced: Json,
}

impl Emulator {
    fn start(baud: u32) -> Emulator {
        let mut child = Process::new(env!("CARGO_BIN_EXE_znp-emulator"))
            .args(["--baud", &baud.to_string(), "--exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn znp-emulator");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("announcement");
        let announced: Json = serde_json::from_str(&line).expect("JSON announcement");
        Emulator { child, announced }
    }

    fn path(&self) -> String {
        self.announced["pty"]
            .as_str()
            .expect("pty path")
            .to_string()
    }

    fn port(&self) -> ZnpPort {
        ZnpPort::open(&self.path(), 115_200).expect("open emulator PTY")
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn emulator_announces_its_pty_baud_and_devices() {
    let emu = Emulator::start(57_600);
    assert!(emu.path().starts_with("/dev/pts/"), "{}", emu.announced);
    assert_eq!(emu.announced["baud"], 57_600);
    let devices = emu.announced["devices"].as_array().expect("devices");
    let light = devices
        .iter()
        .find(|d| d["name"] == "light")
        .expect("light");
    assert_eq!(light["nwk"], u64::from(LIGHT_NWK));
    assert!(light["clusters"]
        .as_array()
        .expect("clusters")
        .contains(&Json::from(6)));
}

#[test]
fn driver_pings_reads_version_and_device_info() {
    let emu = Emulator::start(115_200);
    let mut port = emu.port();
    let ping = port.ping().expect("ping");
    for cap in [
        capabilities::SYS,
        capabilities::AF,
        capabilities::ZDO,
        capabilities::UTIL,
        capabilities::APP_CNF,
    ] {
        assert_ne!(
            ping.capabilities & cap,
            0,
            "capabilities {:#06x}",
            ping.capabilities
        );
    }
    let v = port.version().expect("version");
    assert_eq!(
        (
            v.transport_rev,
            v.product_id,
            v.major_rel,
            v.minor_rel,
            v.maint_rel
        ),
        (2, 1, 2, 7, 1)
    );
    assert!(v.code_revision.is_some_and(|c| c >= 20_200_000), "{v:?}");
    let info = port.device_info().expect("device info");
    assert_eq!(info.status, status::SUCCESS);
    assert_eq!(
        info.ieee.to_string(),
        emu.announced["ieee"].as_str().expect("ieee")
    );
    assert_eq!(info.device_state, device_state::INITIALIZED_NOT_STARTED);
    assert_eq!(info.nwk, 0xFFFE);

    // Noise on the line does not derail the emulator either.
    port.write_raw(&[0xEF; 32]).expect("bootloader skip bytes");
    port.write_raw(&[0xFE, 0x03, 0x21]).expect("a cut frame");
    port.write_raw(&[0x00; 8]).expect("zeros");
    assert_eq!(
        port.ping().expect("ping after noise").capabilities,
        ping.capabilities
    );

    // A command the firmware lacks is refused with an RPC error, not silence.
    let unknown = FrameRepr::new(CommandHeader::from_bytes(0x22, 0x77), vec![]).expect("frame");
    match port.call_frame(&unknown, T) {
        Err(PortError::NotRecognized { error_code, .. }) => assert_eq!(error_code, 0x01),
        other => panic!("expected an RPC error, got {other:?}"),
    }

    // A reset answers with SYS_RESET_IND.
    port.send(&SysResetReq { reset_type: 1 }).expect("reset");
    let ind = port
        .wait_for::<SysResetInd>(T, |_| true)
        .expect("reset indication");
    assert_eq!((ind.major_rel, ind.minor_rel), (2, 7));
}

#[test]
fn in_process_emulator_serves_a_pty_until_stopped() {
    let config = EmulatorConfig {
        baud: 0,
        ..EmulatorConfig::default()
    };
    let handle = EmulatorRunner::new(config).expect("PTY pair").spawn();
    let mut port = ZnpPort::open(handle.pty_path(), 115_200).expect("open");
    assert_eq!(
        port.ping().expect("ping").capabilities & capabilities::APP_CNF,
        capabilities::APP_CNF
    );
    drop(port);
    handle.stop().expect("clean stop");
}

#[test]
fn port_can_be_reopened_after_drop() {
    let emu = Emulator::start(115_200);
    let mut first = emu.port();
    first.ping().expect("ping");
    drop(first);
    // Exclusive mode is left on drop, so the next host (not only root) can open the PTY.
    let mut second = emu.port();
    second.ping().expect("ping on reopened port");
}

/// Starts the network and registers endpoint 1: what a host does before talking to devices.
fn start_network(port: &mut ZnpPort) {
    let rsp = port
        .call(&AppCnfBdbStartCommissioningReq {
            mode: bdb::MODE_NWK_FORMATION,
        })
        .expect("BDB start");
    assert_eq!(rsp.status, status::SUCCESS);
    port.wait_for::<ZdoStateChangeInd>(T, |i| i.state == device_state::STARTED_AS_COORDINATOR)
        .expect("started as coordinator");
    let info = port.device_info().expect("device info");
    assert_eq!(
        (info.nwk, info.device_state),
        (0x0000, device_state::STARTED_AS_COORDINATOR)
    );
    let reg = port
        .call(&AfRegisterReq {
            endpoint: 1,
            profile_id: zcl::PROFILE_HA,
            device_id: 0x0005,
            device_version: 0,
            latency_req: 0,
            input_clusters: vec![],
            output_clusters: vec![zcl::CLUSTER_ON_OFF, zcl::CLUSTER_TEMPERATURE],
        })
        .expect("AF register");
    assert_eq!(reg.status, status::SUCCESS);
}

/// Sends a ZCL frame to a device and returns its answer (after checking the data confirm).
fn zcl_exchange(
    port: &mut ZnpPort,
    nwk: u16,
    cluster: u16,
    frame: &ZclFrame,
    trans_id: u8,
) -> ZclFrame {
    let rsp = port
        .call(&AfDataRequestReq {
            dst_addr: nwk,
            dst_endpoint: DEVICE_ENDPOINT,
            src_endpoint: 1,
            cluster_id: cluster,
            trans_id,
            options: 0x10,
            radius: 30,
            data: frame.to_bytes(),
        })
        .expect("AF data request");
    assert_eq!(rsp.status, status::SUCCESS);
    let confirm = port
        .wait_for::<AfDataConfirm>(T, |c| c.trans_id == trans_id)
        .expect("data confirm");
    assert_eq!(confirm.status, status::SUCCESS);
    let msg = port
        .wait_for::<AfIncomingMsg>(T, |m| m.src_addr == nwk && m.cluster_id == cluster)
        .expect("device answer");
    assert_eq!((msg.src_endpoint, msg.dst_endpoint), (DEVICE_ENDPOINT, 1));
    let answer = ZclFrame::parse(&msg.data).expect("ZCL answer");
    assert_eq!(answer.tsn, frame.tsn);
    assert_eq!(answer.direction, zcl::Direction::ServerToClient);
    answer
}

fn read_attribute(port: &mut ZnpPort, nwk: u16, cluster: u16, attribute: u16, tsn: u8) -> Value {
    let req = ZclFrame::request(
        FrameType::Global,
        tsn,
        zcl::CMD_READ_ATTRIBUTES,
        zcl::read_attributes_payload(&[attribute]),
    );
    let rsp = zcl_exchange(port, nwk, cluster, &req, tsn);
    assert_eq!(rsp.command, zcl::CMD_READ_ATTRIBUTES_RSP);
    let records = zcl::parse_read_attributes_rsp(&rsp.payload).expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].attribute, attribute);
    records[0].result.clone().expect("attribute read")
}

#[test]
fn driver_toggles_the_light_and_reads_it_back() {
    let emu = Emulator::start(115_200);
    let mut port = emu.port();
    start_network(&mut port);
    assert_eq!(
        read_attribute(
            &mut port,
            LIGHT_NWK,
            zcl::CLUSTER_ON_OFF,
            zcl::ATTR_ON_OFF,
            1
        ),
        Value::Bool(false)
    );

    let toggle = ZclFrame::request(FrameType::ClusterSpecific, 2, zcl::CMD_TOGGLE, vec![]);
    let rsp = zcl_exchange(&mut port, LIGHT_NWK, zcl::CLUSTER_ON_OFF, &toggle, 2);
    assert_eq!(rsp.command, zcl::CMD_DEFAULT_RSP);
    assert_eq!(rsp.payload, [zcl::CMD_TOGGLE, zcl::status::SUCCESS]);
    assert_eq!(
        read_attribute(
            &mut port,
            LIGHT_NWK,
            zcl::CLUSTER_ON_OFF,
            zcl::ATTR_ON_OFF,
            3
        ),
        Value::Bool(true)
    );

    let off = ZclFrame::request(FrameType::ClusterSpecific, 4, zcl::CMD_OFF, vec![]);
    zcl_exchange(&mut port, LIGHT_NWK, zcl::CLUSTER_ON_OFF, &off, 4);
    assert_eq!(
        read_attribute(
            &mut port,
            LIGHT_NWK,
            zcl::CLUSTER_ON_OFF,
            zcl::ATTR_ON_OFF,
            5
        ),
        Value::Bool(false)
    );

    // A cluster the light lacks: Default Response UNSUPPORTED_CLUSTER.
    let read = ZclFrame::request(
        FrameType::Global,
        6,
        zcl::CMD_READ_ATTRIBUTES,
        zcl::read_attributes_payload(&[0]),
    );
    let rsp = zcl_exchange(&mut port, LIGHT_NWK, zcl::CLUSTER_TEMPERATURE, &read, 6);
    assert_eq!(
        rsp.payload,
        [zcl::CMD_READ_ATTRIBUTES, zcl::status::UNSUPPORTED_CLUSTER]
    );
}

#[test]
fn driver_reads_a_plausible_temperature() {
    let emu = Emulator::start(115_200);
    let mut port = emu.port();
    start_network(&mut port);
    let Value::I16(centi) = read_attribute(
        &mut port,
        SENSOR_NWK,
        zcl::CLUSTER_TEMPERATURE,
        zcl::ATTR_MEASURED_VALUE,
        9,
    ) else {
        panic!("MeasuredValue is not an int16");
    };
    assert!(
        (1_000..=3_500).contains(&centi),
        "indoor temperature, got {} °C",
        f64::from(centi) / 100.0
    );
    let Value::I16(min) = read_attribute(
        &mut port,
        SENSOR_NWK,
        zcl::CLUSTER_TEMPERATURE,
        zcl::ATTR_MIN_MEASURED_VALUE,
        10,
    ) else {
        panic!("MinMeasuredValue is not an int16");
    };
    assert!(min < centi);
}

#[test]
fn data_requests_fail_like_zstack_without_an_endpoint_or_a_route() {
    let emu = Emulator::start(115_200);
    let mut port = emu.port();
    let req = AfDataRequestReq {
        dst_addr: LIGHT_NWK,
        dst_endpoint: 1,
        src_endpoint: 1,
        cluster_id: zcl::CLUSTER_ON_OFF,
        trans_id: 1,
        options: 0,
        radius: 30,
        data: vec![0x01, 0x01, zcl::CMD_TOGGLE],
    };
    assert_eq!(
        port.call(&req).expect("SRSP").status,
        status::INVALID_PARAMETER,
        "unregistered source endpoint"
    );
    start_network(&mut port);
    let nowhere = AfDataRequestReq {
        dst_addr: 0x1234,
        trans_id: 2,
        ..req
    };
    assert_eq!(port.call(&nowhere).expect("SRSP").status, status::SUCCESS);
    let confirm = port
        .wait_for::<AfDataConfirm>(T, |c| c.trans_id == 2)
        .expect("confirm");
    assert_eq!(confirm.status, status::NWK_NO_ROUTE);
}

#[test]
fn broadcast_read_reaches_every_device() {
    let emu = Emulator::start(115_200);
    let mut port = emu.port();
    start_network(&mut port);
    let read = ZclFrame::request(
        FrameType::Global,
        7,
        zcl::CMD_READ_ATTRIBUTES,
        zcl::read_attributes_payload(&[0x0005]), // Basic: ModelIdentifier
    );
    let rsp = port
        .call(&AfDataRequestReq {
            dst_addr: 0xFFFF,
            dst_endpoint: 0xFF,
            src_endpoint: 1,
            cluster_id: zcl::CLUSTER_BASIC,
            trans_id: 7,
            options: 0,
            radius: 30,
            data: read.to_bytes(),
        })
        .expect("AF data request");
    assert_eq!(rsp.status, status::SUCCESS);
    let mut models = Vec::new();
    for _ in 0..2 {
        let msg = port
            .wait_for::<AfIncomingMsg>(T, |m| m.cluster_id == zcl::CLUSTER_BASIC)
            .expect("an answer per device");
        let answer = ZclFrame::parse(&msg.data).expect("ZCL");
        let records = zcl::parse_read_attributes_rsp(&answer.payload).expect("records");
        models.push((msg.src_addr, records[0].result.clone()));
    }
    models.sort_by_key(|(nwk, _)| *nwk);
    assert_eq!(
        models,
        [
            (LIGHT_NWK, Ok(Value::String("VirtualLight".into()))),
            (SENSOR_NWK, Ok(Value::String("VirtualTempSensor".into()))),
        ]
    );
}

#[test]
fn zdo_discovery_finds_both_devices_and_their_clusters() {
    let emu = Emulator::start(115_200);
    let mut port = emu.port();
    start_network(&mut port);
    let sent = port
        .call(&ZdoMgmtLqiReq {
            dst_addr: 0x0000,
            start_index: 0,
        })
        .expect("SRSP");
    assert_eq!(sent.status, status::SUCCESS);
    let table = port
        .wait_for::<ZdoMgmtLqiCallback>(T, |c| c.src_addr == 0x0000)
        .expect("the coordinator's neighbour table");
    assert_eq!(
        (table.status, table.neighbor_table_entries),
        (zdo_status::SUCCESS, 2)
    );
    let mut found: Vec<(u16, u8)> = table
        .neighbors
        .iter()
        .map(|n| (n.nwk, n.device_type))
        .collect();
    found.sort_unstable();
    assert_eq!(
        found,
        [
            (LIGHT_NWK, logical_type::ROUTER),
            (SENSOR_NWK, logical_type::END_DEVICE)
        ]
    );
    let light_ieee = table
        .neighbors
        .iter()
        .find(|n| n.nwk == LIGHT_NWK)
        .map(|n| n.ieee);
    assert_eq!(light_ieee, Some(LIGHT_IEEE));

    // The light (a router) lists its parent; the sensor (an end device) keeps no table.
    port.call(&ZdoMgmtLqiReq {
        dst_addr: LIGHT_NWK,
        start_index: 0,
    })
    .expect("SRSP");
    let light_table = port
        .wait_for::<ZdoMgmtLqiCallback>(T, |c| c.src_addr == LIGHT_NWK)
        .expect("the light's table");
    assert_eq!(light_table.neighbors.first().map(|n| n.nwk), Some(0x0000));
    port.call(&ZdoMgmtLqiReq {
        dst_addr: SENSOR_NWK,
        start_index: 0,
    })
    .expect("SRSP");
    let sensor_table = port
        .wait_for::<ZdoMgmtLqiCallback>(T, |c| c.src_addr == SENSOR_NWK)
        .expect("the sensor's answer");
    assert_eq!(sensor_table.status, zdo_status::NOT_SUPPORTED);

    for (nwk, cluster) in [
        (LIGHT_NWK, zcl::CLUSTER_ON_OFF),
        (SENSOR_NWK, zcl::CLUSTER_TEMPERATURE),
    ] {
        port.call(&ZdoActiveEpReq {
            dst_addr: nwk,
            nwk_addr_of_interest: nwk,
        })
        .expect("SRSP");
        let eps = port
            .wait_for::<ZdoActiveEpCallback>(T, |c| c.src_addr == nwk)
            .expect("active endpoints");
        assert_eq!(eps.active_endpoints, [DEVICE_ENDPOINT]);
        port.call(&ZdoSimpleDescReq {
            dst_addr: nwk,
            nwk_addr_of_interest: nwk,
            endpoint: DEVICE_ENDPOINT,
        })
        .expect("SRSP");
        let desc = port
            .wait_for::<ZdoSimpleDescCallback>(T, |c| c.src_addr == nwk)
            .expect("simple descriptor")
            .descriptor
            .expect("a descriptor");
        assert_eq!(desc.profile_id, zcl::PROFILE_HA);
        assert!(desc.input_clusters.contains(&cluster), "{desc:?}");
    }
    // An endpoint the light does not have, and an address nobody has (no answer at all).
    port.call(&ZdoSimpleDescReq {
        dst_addr: LIGHT_NWK,
        nwk_addr_of_interest: LIGHT_NWK,
        endpoint: 9,
    })
    .expect("SRSP");
    let none = port
        .wait_for::<ZdoSimpleDescCallback>(T, |c| c.src_addr == LIGHT_NWK)
        .expect("a refusal");
    assert_eq!(
        (none.status, none.descriptor),
        (zdo_status::NOT_ACTIVE, None)
    );
    port.call(&ZdoActiveEpReq {
        dst_addr: 0x1234,
        nwk_addr_of_interest: 0x1234,
    })
    .expect("SRSP");
    assert!(port
        .wait_for::<ZdoActiveEpCallback>(Duration::from_millis(500), |_| true)
        .is_err());
}

/// Starts a bridge on the emulator; its completions arrive on the returned channel.
fn bridge(
    emu: &Emulator,
    devices: Vec<BridgedDevice>,
) -> (Bridge, std::sync::mpsc::Receiver<Completion>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let config = BridgeConfig {
        port: emu.path(),
        baud: 115_200,
        timeout: Duration::from_secs(2),
        discover: true,
        devices,
    };
    let bridge = Bridge::start(config, &["speaker.main".to_string()], move |c| {
        let _ = tx.send(c);
    })
    .expect("bridge starts");
    (bridge, rx)
}

fn use_cap(
    bridge: &Bridge,
    rx: &std::sync::mpsc::Receiver<Completion>,
    handle: u64,
    cap: &str,
    args: &str,
) -> (Code, String) {
    bridge
        .submit(handle, cap.to_string(), args.as_bytes().to_vec())
        .expect("bridge running");
    let done = rx.recv_timeout(T).expect("a completion");
    assert_eq!(done.handle, handle);
    (
        done.status,
        String::from_utf8_lossy(&done.result).into_owned(),
    )
}

#[test]
fn bridge_discovers_and_drives_the_emulated_devices() {
    let emu = Emulator::start(115_200);
    let porch = BridgedDevice {
        capability: "light.onoff.porch".into(),
        kind: BridgedKind::OnOffLight,
        nwk: 0x6B0D, // nobody: a light that has left the network
        endpoint: 1,
        ieee: None,
    };
    let (bridge, rx) = bridge(&emu, vec![porch]);
    let caps: Vec<(String, String)> = bridge
        .capabilities()
        .into_iter()
        .map(|c| (c.name, c.kind))
        .collect();
    assert_eq!(
        caps,
        [
            ("light.onoff".to_string(), "light".to_string()),
            ("light.onoff.porch".to_string(), "light".to_string()),
            ("sensor.temperature".to_string(), "sensor".to_string()),
        ]
    );
    let light = bridge
        .devices()
        .iter()
        .find(|d| d.capability == "light.onoff")
        .cloned();
    assert_eq!(
        light.map(|d| (d.nwk, d.ieee)),
        Some((LIGHT_NWK, Some(LIGHT_IEEE)))
    );

    let ok = |s: &str| (Code::Ok, s.to_string());
    assert_eq!(use_cap(&bridge, &rx, 1, "light.onoff", "read"), ok("off"));
    assert_eq!(use_cap(&bridge, &rx, 2, "light.onoff", "on"), ok("on"));
    assert_eq!(use_cap(&bridge, &rx, 3, "light.onoff", "read"), ok("on"));
    assert_eq!(use_cap(&bridge, &rx, 4, "light.onoff", "toggle"), ok("off"));
    assert_eq!(use_cap(&bridge, &rx, 5, "light.onoff", "toggle"), ok("on"));
    assert_eq!(use_cap(&bridge, &rx, 6, "light.onoff", "off"), ok("off"));
    assert_eq!(use_cap(&bridge, &rx, 7, "light.onoff", "read"), ok("off"));

    let (status, text) = use_cap(&bridge, &rx, 8, "sensor.temperature", "read");
    assert_eq!(status, Code::Ok);
    let celsius: f64 = text
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"));
    assert!((10.0..=35.0).contains(&celsius), "{text}");
    assert!(
        text.split_once('.').is_some_and(|(_, d)| d.len() == 2),
        "{text}"
    );

    let (status, text) = use_cap(&bridge, &rx, 9, "sensor.temperature", "on");
    assert_eq!(status, Code::Malformed, "{text}");
    let (status, text) = use_cap(&bridge, &rx, 10, "light.onoff", "conformance");
    assert_eq!(status, Code::Malformed, "{text}");

    let started = Instant::now();
    let (status, text) = use_cap(&bridge, &rx, 11, "light.onoff.porch", "on");
    assert_eq!(status, Code::Internal);
    assert!(
        text.contains("light.onoff.porch") && text.contains("NWK_NO_ROUTE"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a failed route is reported at once"
    );
    // The bridge keeps serving after a failure.
    assert_eq!(use_cap(&bridge, &rx, 12, "light.onoff", "read"), ok("off"));
}

#[test]
fn bridge_start_names_the_key_when_the_coordinator_is_missing() {
    let config = BridgeConfig {
        port: "/dev/nonexistent-coordinator".into(),
        baud: 115_200,
        timeout: Duration::from_millis(200),
        discover: true,
        devices: vec![],
    };
    let e = Bridge::start(config, &[], |_| {}).expect_err("no coordinator there");
    let msg = e.to_string();
    assert!(
        msg.starts_with("bridge.znp:") && msg.contains("/dev/nonexistent-coordinator"),
        "{msg}"
    );
}

// ---- pacing ----------------------------------------------------------------------------------

/// Reads the one frame expected from a raw port, noting when its first and last bytes arrived.
fn read_frame_timed(port: &mut TTYPort) -> (Vec<u8>, Instant, Instant) {
    let mut d = Decoder::new();
    let mut buf = [0u8; 256];
    let mut first = None;
    loop {
        let n = port.read(&mut buf).expect("read");
        let now = Instant::now();
        first.get_or_insert(now);
        d.push(&buf[..n]);
        if let Some(f) = d.next_frame() {
            return (f.to_bytes(), first.unwrap_or(now), now);
        }
    }
}

#[test]
fn emulator_output_takes_at_least_the_wire_time() {
    const BAUD: u32 = 9_600;
    let emu = Emulator::start(BAUD);
    let mut port = serialport::new(emu.path(), BAUD)
        .timeout(Duration::from_secs(5))
        .open_native()
        .expect("open emulator PTY");

    // One large answer: the NIB (116 bytes) through SYS_OSAL_NV_READ_EXT.
    let req = SysOsalNvReadExtReq {
        id: 0x0021,
        offset: 0,
    }
    .to_frame()
    .expect("frame")
    .to_bytes();
    let sent = Instant::now();
    port.write_all(&req).expect("request");
    let (rsp, first, last) = read_frame_timed(&mut port);
    let round_trip = last - sent;
    let span = last - first;
    let wire_round_trip = wire_time(req.len() + rsp.len(), BAUD);
    let wire_span = wire_time(rsp.len() - 1, BAUD);
    println!(
        "pacing at {BAUD} baud: request {} B + answer {} B; round trip {:?} (wire {:?}); \
         answer first-to-last byte {:?} (wire {:?})",
        req.len(),
        rsp.len(),
        round_trip,
        wire_round_trip,
        span,
        wire_span
    );
    assert!(
        round_trip >= wire_round_trip,
        "round trip {round_trip:?} beat the wire {wire_round_trip:?}"
    );
    assert!(
        span >= wire_span,
        "answer took {span:?} from first to last byte, wire needs {wire_span:?}"
    );

    // A burst: 20 pings written at once. The answers share one line, so the last can arrive no
    // sooner than all request and answer bytes take on the wire.
    let ping = SysPingReq {}.to_frame().expect("frame").to_bytes();
    let burst: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 20).collect();
    let sent = Instant::now();
    port.write_all(&burst).expect("burst");
    // One decoder for the whole burst: a read may end inside the next answer.
    let mut d = Decoder::new();
    let mut buf = [0u8; 256];
    let mut answers = 0;
    let mut answer_bytes = 0;
    let mut last = sent;
    while answers < 20 {
        let n = port.read(&mut buf).expect("read");
        last = Instant::now();
        d.push(&buf[..n]);
        while let Some(f) = d.next_frame() {
            assert_eq!(f.header, SysPingRsp::HEADER);
            answers += 1;
            answer_bytes += f.buffer_len();
        }
    }
    let elapsed = last - sent;
    // The first request must arrive before anything is answered, and all answers share the line.
    let wire = wire_time(ping.len() + answer_bytes, BAUD);
    println!(
        "pacing burst at {BAUD} baud: 20 pings ({} B) and 20 answers ({answer_bytes} B) in {elapsed:?} \
         (wire lower bound {wire:?}); effective {:.0} bit/s out",
        burst.len(),
        answer_bytes as f64 * 10.0 / elapsed.as_secs_f64()
    );
    assert!(
        elapsed >= wire,
        "burst took {elapsed:?}, wire needs {wire:?}"
    );
}

#[test]
fn wire_time_is_ten_bits_per_byte() {
    assert_eq!(wire_time(96, 9_600), Duration::from_millis(100));
    assert_eq!(wire_time(0, 115_200), Duration::ZERO);
    assert_eq!(wire_time(10, 0), Duration::ZERO);
    assert_eq!(
        Eui64(0x0012_4B00_0102_0304).to_string(),
        "00:12:4b:00:01:02:03:04"
    );
}
