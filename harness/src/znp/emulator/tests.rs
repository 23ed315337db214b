//! Tests of the virtual network: NV layout, the MT dispatch, the radio model between sticks and
//! the PTY emulator end to end.

use super::coordinator::Coordinator;
use super::device::temperature_centi;
use super::network::Network;
use super::node::{node_identities, reserved_nwk, valid_node_name};
use super::nv::{assoc_entry, nib, osal, NV_ITEM_LEGACY};
use super::pty::Emulator;
use super::*;
use softbus::link::zigbee::APS_PAYLOAD_MAX;
use softbus::link::znp::commands::{
    device_state, logical_type, rpc_error, status, AfDataConfirm, AfDataRequestReq,
    AfDataRequestRsp, AfIncomingMsg, AfRegisterReq, AfRegisterRsp, Payload, RpcErrorRsp,
    SysPingRsp, SysResetInd, UtilGetDeviceInfoRsp, ZdoActiveEpCallback, ZdoActiveEpReq,
    ZdoMgmtLqiCallback, ZdoMgmtLqiReq, ZdoSimpleDescCallback, ZdoSimpleDescReq, ZdoStateChangeInd,
};
use softbus::link::znp::commands::{SysPingReq, SysResetReq, UtilAssocFindDeviceReq};
use softbus::link::znp::frame::{CommandHeader, CommandType, FrameRepr, Subsystem};
use softbus::link::znp::zcl;
use std::time::{Duration, Instant};

#[test]
fn nib_has_zstack_330_aligned_size() {
    assert_eq!(
        nib(
            &EmulatorConfig::default(),
            &Network::new(EmulatorConfig::default(), Instant::now()).sticks[0].id
        )
        .len(),
        116
    );
    assert_eq!(assoc_entry(SENSOR_NWK, 1, 120).len(), 36);
}

#[test]
fn answers_ping_and_refuses_unknown_sreq() {
    let t0 = Instant::now();
    let mut c = Coordinator::new(EmulatorConfig::default(), t0);
    c.handle_frame(&SysPingReq {}.to_frame().expect("frame"), t0);
    let unknown = FrameRepr::new(
        CommandHeader::new(CommandType::Sreq, Subsystem::Mac, 9),
        vec![],
    )
    .expect("frame");
    c.handle_frame(&unknown, t0);
    c.handle_frame(
        &UtilAssocFindDeviceReq { index: 0 }
            .to_frame()
            .expect("frame"),
        t0,
    );
    let later = t0 + Duration::from_secs(1);
    let ping = c.poll_transmit(later).expect("ping answer");
    assert_eq!(ping.header, SysPingRsp::HEADER);
    let err = RpcErrorRsp::from_payload(&c.poll_transmit(later).expect("rpc error").payload);
    assert_eq!(err.map(|e| e.error_code), Ok(rpc_error::INVALID_SUBSYSTEM));
    assert!(c.poll_transmit(later).is_some());
    assert!(c.poll_transmit(later).is_none());
}

#[test]
fn neighbour_table_pages_and_unknown_addresses_stay_silent() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(1);
    let mut c = Coordinator::new(EmulatorConfig::default(), t0);
    let answers = |c: &mut Coordinator, req: FrameRepr| {
        c.handle_frame(&req, t0);
        std::iter::from_fn(|| c.poll_transmit(later)).collect::<Vec<_>>()
    };
    let page = |start_index| {
        ZdoMgmtLqiReq {
            dst_addr: 0x0000,
            start_index,
        }
        .to_frame()
        .expect("frame")
    };
    let out = answers(&mut c, page(0));
    assert_eq!(out.len(), 2, "SRSP and callback");
    let table = ZdoMgmtLqiCallback::from_payload(&out[1].payload).expect("callback");
    assert_eq!(
        (table.neighbor_table_entries, table.neighbors.len()),
        (2, 2)
    );
    let out = answers(&mut c, page(2));
    let rest = ZdoMgmtLqiCallback::from_payload(&out[1].payload).expect("callback");
    assert_eq!((rest.start_index, rest.neighbors.len()), (2, 0));
    let nobody = ZdoActiveEpReq {
        dst_addr: 0x1234,
        nwk_addr_of_interest: 0x1234,
    };
    let out = answers(&mut c, nobody.to_frame().expect("frame"));
    assert_eq!(out.len(), 1, "only the SRSP: {out:?}");
}

#[test]
fn temperature_stays_plausible() {
    for s in (0..1200).step_by(7) {
        let v = temperature_centi(Duration::from_secs(s));
        assert!((2_125..=2_175).contains(&v), "{v}");
    }
}
// ---- the network of sticks -------------------------------------------------------------

use softbus::link::zigbee::{SOFTBUS_CLUSTER, SOFTBUS_ENDPOINT, SOFTBUS_PROFILE};
use softbus::link::znp::commands::{UtilGetDeviceInfoReq, ZdoStartupFromAppReq};

type Out = Vec<(StickId, Instant, FrameRepr)>;

/// Runs the network in virtual time up to `until`: every stick's frames, each at the
/// instant it is due.
fn advance(net: &mut Network, until: Instant) -> Out {
    let mut out = Vec::new();
    while let Some(at) = net.next_timeout().filter(|&at| at <= until) {
        for stick in 0..net.stick_count() {
            while let Some(frame) = net.poll_transmit(stick, at) {
                out.push((stick, at, frame));
            }
        }
    }
    out
}

/// The payloads of type `P` stick `stick` got, with when.
fn got<P: Payload>(out: &Out, stick: StickId) -> Vec<(Instant, P)> {
    out.iter()
        .filter(|(s, _, f)| *s == stick && f.header == P::HEADER)
        .map(|(_, at, f)| (*at, P::from_payload(&f.payload).expect("payload")))
        .collect()
}

fn frame<P: Payload>(p: P) -> FrameRepr {
    p.to_frame().expect("frame")
}

fn softbus_endpoint() -> AfRegisterReq {
    AfRegisterReq {
        endpoint: SOFTBUS_ENDPOINT,
        profile_id: SOFTBUS_PROFILE,
        device_id: 0,
        device_version: 0,
        latency_req: 0,
        input_clusters: vec![SOFTBUS_CLUSTER],
        output_clusters: vec![SOFTBUS_CLUSTER],
    }
}

fn softbus_frame(dst_addr: u16, trans_id: u8, data: Vec<u8>) -> AfDataRequestReq {
    AfDataRequestReq {
        dst_addr,
        dst_endpoint: SOFTBUS_ENDPOINT,
        src_endpoint: SOFTBUS_ENDPOINT,
        cluster_id: SOFTBUS_CLUSTER,
        trans_id,
        options: AF_ACK_REQUEST,
        radius: 30,
        data,
    }
}

/// A network with nodes `a` and `b`, both started (and `register`ing endpoint 0x5B), and
/// the instant everything settled.
fn two_nodes(register: [bool; 2]) -> (Network, Instant) {
    let t0 = Instant::now();
    let config = EmulatorConfig {
        nodes: vec!["a".into(), "b".into()],
        ..EmulatorConfig::default()
    };
    let mut net = Network::new(config, t0);
    for (stick, register) in [(1, register[0]), (2, register[1])] {
        net.handle_frame(stick, &frame(ZdoStartupFromAppReq { start_delay: 0 }), t0);
        if register {
            net.handle_frame(stick, &frame(softbus_endpoint()), t0);
        }
    }
    let settled = t0 + Duration::from_millis(500);
    let out = advance(&mut net, settled);
    for stick in [1, 2] {
        let states: Vec<u8> = got::<ZdoStateChangeInd>(&out, stick)
            .into_iter()
            .map(|(_, i)| i.state)
            .collect();
        assert_eq!(states, [device_state::STARTED_AS_ROUTER], "stick {stick}");
        let regs = got::<AfRegisterRsp>(&out, stick);
        assert!(regs.iter().all(|(_, r)| r.status == status::SUCCESS));
    }
    (net, settled)
}

#[test]
fn nodes_have_stable_distinct_addresses_clear_of_the_rest() {
    let names: Vec<String> = ["dut", "harness", "a", "b", "c"]
        .into_iter()
        .map(String::from)
        .collect();
    let config = EmulatorConfig::default();
    let ids = node_identities(&config, &names);
    assert_eq!(ids, node_identities(&config, &names), "deterministic");
    // A name's addresses do not depend on the other nodes.
    assert_eq!(node_identities(&config, &names[1..2])[0], ids[1]);
    for (i, id) in ids.iter().enumerate() {
        assert!(!reserved_nwk(id.nwk), "{:#06x}", id.nwk);
        assert_ne!(id.nwk, 0x6B0D);
        assert_eq!(id.ieee.0 >> 32, 0x0012_4B00, "TI OUI");
        assert_ne!(id.ieee, config.ieee);
        assert!(ids[..i]
            .iter()
            .all(|o| o.nwk != id.nwk && o.ieee != id.ieee));
    }
    assert!(valid_node_name("dut_1") && !valid_node_name("") && !valid_node_name("a-b"));
}

#[test]
fn node_sticks_answer_like_routers() {
    let t0 = Instant::now();
    let config = EmulatorConfig {
        nodes: vec!["dut".into()],
        ..EmulatorConfig::default()
    };
    let mut net = Network::new(config, t0);
    let node = net.stick("dut").expect("node");
    let nwk = net.nodes()[0].nwk;
    net.handle_frame(node, &frame(SysPingReq {}), t0);
    net.handle_frame(node, &frame(UtilGetDeviceInfoReq {}), t0);
    net.handle_frame(node, &frame(ZdoStartupFromAppReq { start_delay: 0 }), t0);
    let t1 = t0 + Duration::from_millis(100);
    net.handle_frame(node, &frame(UtilGetDeviceInfoReq {}), t1);
    let unknown = FrameRepr::new(
        CommandHeader::new(CommandType::Sreq, Subsystem::Zdo, 0x7E),
        vec![],
    )
    .expect("frame");
    net.handle_frame(node, &unknown, t1);
    let out = advance(&mut net, t1 + Duration::from_millis(10));
    assert!(
        out.iter().all(|(s, _, _)| *s == node),
        "nothing for the coordinator"
    );
    assert_eq!(got::<SysPingRsp>(&out, node).len(), 1);
    let infos = got::<UtilGetDeviceInfoRsp>(&out, node);
    assert_eq!(
        (infos[0].1.nwk, infos[0].1.device_state),
        (0xFFFE, device_state::INITIALIZED_NOT_STARTED)
    );
    assert_eq!(
        (infos[1].1.nwk, infos[1].1.device_state, infos[1].1.ieee),
        (nwk, device_state::STARTED_AS_ROUTER, net.nodes()[0].ieee)
    );
    assert!(infos[1].1.assoc_devices.is_empty());
    let err = got::<RpcErrorRsp>(&out, node);
    assert_eq!(err[0].1.error_code, rpc_error::INVALID_COMMAND_ID);
    // Its NV says router, at its own address.
    assert_eq!(
        net.sticks[node].nv[&(NV_ITEM_LEGACY, osal::LOGICAL_TYPE)],
        [1]
    );
    assert_eq!(net.state(node), device_state::STARTED_AS_ROUTER);
    // A reset takes it off the network until its host starts it again.
    net.handle_frame(node, &frame(SysResetReq { reset_type: 1 }), t1);
    let out = advance(&mut net, t1 + Duration::from_secs(1));
    assert_eq!(got::<SysResetInd>(&out, node).len(), 1);
    assert_eq!(net.state(node), device_state::INITIALIZED_NOT_STARTED);
}

#[test]
fn aps_payload_crosses_between_nodes_after_the_air_time() {
    let (mut net, t) = two_nodes([true, true]);
    let (a, b) = (1, 2);
    let (a_nwk, b_nwk) = (net.nodes()[0].nwk, net.nodes()[1].nwk);
    let payload: Vec<u8> = (0u8..40).collect();
    net.handle_frame(a, &frame(softbus_frame(b_nwk, 9, payload.clone())), t);
    let out = advance(&mut net, t + Duration::from_secs(1));
    let srsp = got::<AfDataRequestRsp>(&out, a);
    assert_eq!(srsp.len(), 1);
    assert_eq!(
        srsp[0],
        (
            t + MT_TURNAROUND,
            AfDataRequestRsp {
                status: status::SUCCESS
            }
        )
    );
    let on_air = t + MT_TURNAROUND + CSMA + air(40);
    let incoming = got::<AfIncomingMsg>(&out, b);
    assert_eq!(incoming.len(), 1, "{out:?}");
    let (at, msg) = &incoming[0];
    assert_eq!(*at, on_air);
    assert_eq!(
        (
            msg.group_id,
            msg.cluster_id,
            msg.src_addr,
            msg.src_endpoint,
            msg.dst_endpoint
        ),
        (
            0,
            SOFTBUS_CLUSTER,
            a_nwk,
            SOFTBUS_ENDPOINT,
            SOFTBUS_ENDPOINT
        )
    );
    assert_eq!(
        (msg.was_broadcast, msg.lqi, msg.security_use),
        (0, NODE_LQI, 0)
    );
    assert_eq!(msg.data, payload);
    assert_eq!(msg.mac_src_addr, Some(a_nwk));
    assert_eq!(
        msg.timestamp,
        mac_timestamp(on_air.duration_since(t - Duration::from_millis(500)))
    );
    // The sender hears of it once the APS ACK is back.
    let confirm = got::<AfDataConfirm>(&out, a);
    let aps_acked = on_air
        + TURNAROUND
        + AIR_BYTE * MAC_ACK_BYTES
        + CSMA
        + air(0)
        + TURNAROUND
        + AIR_BYTE * MAC_ACK_BYTES;
    assert_eq!(
        confirm,
        [(
            aps_acked,
            AfDataConfirm {
                status: status::SUCCESS,
                endpoint: SOFTBUS_ENDPOINT,
                trans_id: 9
            }
        )]
    );
    // 40 bytes + 51 of overhead at 32 µs, the CSMA backoff and the MT turnaround.
    assert_eq!(on_air - t, Duration::from_micros(300 + 1_248 + 91 * 32));
    assert!(got::<AfIncomingMsg>(&out, COORDINATOR).is_empty());
}

#[test]
fn over_long_aps_payload_is_refused_without_going_on_air() {
    let (mut net, t) = two_nodes([true, true]);
    let b_nwk = net.nodes()[1].nwk;
    let too_long = vec![0xAB; APS_PAYLOAD_MAX + 1];
    net.handle_frame(1, &frame(softbus_frame(b_nwk, 1, too_long)), t);
    net.handle_frame(
        1,
        &frame(softbus_frame(b_nwk, 2, vec![0xCD; APS_PAYLOAD_MAX])),
        t,
    );
    let out = advance(&mut net, t + Duration::from_secs(1));
    let srsps: Vec<u8> = got::<AfDataRequestRsp>(&out, 1)
        .iter()
        .map(|(_, r)| r.status)
        .collect();
    assert_eq!(srsps, [status::INVALID_PARAMETER, status::SUCCESS]);
    let confirms: Vec<u8> = got::<AfDataConfirm>(&out, 1)
        .iter()
        .map(|(_, c)| c.trans_id)
        .collect();
    assert_eq!(confirms, [2], "no confirm for a refused request");
    let incoming = got::<AfIncomingMsg>(&out, 2);
    assert_eq!(incoming.len(), 1);
    assert_eq!(incoming[0].1.data.len(), APS_PAYLOAD_MAX);
}

#[test]
fn unregistered_endpoint_is_acked_then_dropped_and_absent_nodes_fail() {
    // b is up but its host registered nothing: APS acknowledges, AF drops the frame.
    let (mut net, t) = two_nodes([true, false]);
    let b_nwk = net.nodes()[1].nwk;
    net.handle_frame(1, &frame(softbus_frame(b_nwk, 1, vec![1, 2, 3])), t);
    // A registered endpoint in another profile drops it as well.
    let other_profile = AfRegisterReq {
        endpoint: SOFTBUS_ENDPOINT,
        profile_id: zcl::PROFILE_HA,
        ..softbus_endpoint()
    };
    let out = advance(&mut net, t + Duration::from_secs(1));
    assert_eq!(got::<AfDataConfirm>(&out, 1)[0].1.status, status::SUCCESS);
    assert!(got::<AfIncomingMsg>(&out, 2).is_empty(), "{out:?}");
    let t = t + Duration::from_secs(1);
    net.handle_frame(2, &frame(other_profile), t);
    net.handle_frame(1, &frame(softbus_frame(b_nwk, 2, vec![4])), t);
    let out = advance(&mut net, t + Duration::from_secs(1));
    assert_eq!(got::<AfDataConfirm>(&out, 1)[0].1.status, status::SUCCESS);
    assert!(got::<AfIncomingMsg>(&out, 2).is_empty(), "{out:?}");

    // b reset (off the air): the MAC gives up; nobody at all: route discovery gives up.
    let t = t + Duration::from_secs(1);
    net.handle_frame(2, &frame(SysResetReq { reset_type: 1 }), t);
    net.handle_frame(1, &frame(softbus_frame(b_nwk, 3, vec![5])), t);
    net.handle_frame(1, &frame(softbus_frame(0x1234, 4, vec![6])), t);
    let out = advance(&mut net, t + Duration::from_secs(1));
    let confirms: Vec<(u8, u8)> = got::<AfDataConfirm>(&out, 1)
        .iter()
        .map(|(_, c)| (c.trans_id, c.status))
        .collect();
    assert_eq!(
        confirms,
        [(3, status::MAC_NO_ACK), (4, status::NWK_NO_ROUTE)]
    );
    // b's host, its stick not started, cannot send at all.
    let t = t + Duration::from_secs(1);
    net.handle_frame(2, &frame(softbus_endpoint()), t);
    net.handle_frame(2, &frame(softbus_frame(0x0000, 5, vec![7])), t);
    let out = advance(&mut net, t + Duration::from_secs(1));
    let srsp = got::<AfDataRequestRsp>(&out, 2);
    assert_eq!(srsp[0].1.status, NWK_INVALID_REQUEST);
}

#[test]
fn frames_between_two_sticks_arrive_in_the_order_sent() {
    let (mut net, t) = two_nodes([true, true]);
    let b_nwk = net.nodes()[1].nwk;
    // Sent back to back, longest first: the short ones must not overtake.
    for i in 0u8..6 {
        let len = usize::from(80 - i * 15);
        net.handle_frame(1, &frame(softbus_frame(b_nwk, i, vec![i; len])), t);
    }
    let out = advance(&mut net, t + Duration::from_secs(1));
    let incoming = got::<AfIncomingMsg>(&out, 2);
    let order: Vec<u8> = incoming.iter().map(|(_, m)| m.data[0]).collect();
    assert_eq!(order, [0, 1, 2, 3, 4, 5]);
    assert!(
        incoming.windows(2).all(|w| w[0].0 < w[1].0),
        "one at a time on the air"
    );
    assert!(incoming
        .windows(2)
        .all(|w| w[1].1.trans_seq == w[0].1.trans_seq.wrapping_add(1)));
    let confirms: Vec<u8> = got::<AfDataConfirm>(&out, 1)
        .iter()
        .map(|(_, c)| c.trans_id)
        .collect();
    assert_eq!(confirms, [0, 1, 2, 3, 4, 5]);
}

#[test]
fn coordinator_and_nodes_reach_each_other_and_zdo_finds_the_nodes() {
    let (mut net, t) = two_nodes([true, true]);
    let a_nwk = net.nodes()[0].nwk;
    net.handle_frame(
        COORDINATOR,
        &frame(ZdoStartupFromAppReq { start_delay: 0 }),
        t,
    );
    net.handle_frame(COORDINATOR, &frame(softbus_endpoint()), t);
    let t = t + Duration::from_millis(100);
    advance(&mut net, t);
    net.handle_frame(1, &frame(softbus_frame(0x0000, 1, b"up".to_vec())), t);
    net.handle_frame(
        COORDINATOR,
        &frame(softbus_frame(a_nwk, 2, b"down".to_vec())),
        t,
    );
    net.handle_frame(
        COORDINATOR,
        &frame(ZdoMgmtLqiReq {
            dst_addr: 0x0000,
            start_index: 3,
        }),
        t,
    );
    net.handle_frame(
        COORDINATOR,
        &frame(ZdoMgmtLqiReq {
            dst_addr: a_nwk,
            start_index: 0,
        }),
        t,
    );
    net.handle_frame(
        COORDINATOR,
        &frame(ZdoActiveEpReq {
            dst_addr: a_nwk,
            nwk_addr_of_interest: a_nwk,
        }),
        t,
    );
    net.handle_frame(
        COORDINATOR,
        &frame(ZdoSimpleDescReq {
            dst_addr: a_nwk,
            nwk_addr_of_interest: a_nwk,
            endpoint: SOFTBUS_ENDPOINT,
        }),
        t,
    );
    let out = advance(&mut net, t + Duration::from_secs(1));
    let up = got::<AfIncomingMsg>(&out, COORDINATOR);
    assert_eq!(
        (up[0].1.src_addr, up[0].1.data.as_slice()),
        (a_nwk, &b"up"[..])
    );
    let down = got::<AfIncomingMsg>(&out, 1);
    assert_eq!(
        (down[0].1.src_addr, down[0].1.data.as_slice()),
        (0x0000, &b"down"[..])
    );
    assert!(got::<AfIncomingMsg>(&out, 2).is_empty());

    let tables = got::<ZdoMgmtLqiCallback>(&out, COORDINATOR);
    let coord = &tables
        .iter()
        .find(|(_, c)| c.src_addr == 0x0000)
        .expect("own table")
        .1;
    // Light and sensor first (pages 0), then the two routers.
    assert_eq!(
        (coord.neighbor_table_entries, coord.neighbors.len()),
        (4, 1)
    );
    let nodes = net.nodes();
    let page1 = &coord.neighbors[0];
    assert_eq!(
        (page1.nwk, page1.ieee, page1.device_type, page1.relationship),
        (nodes[1].nwk, nodes[1].ieee, logical_type::ROUTER, 1)
    );
    let (at, node_table) = tables
        .iter()
        .find(|(_, c)| c.src_addr == a_nwk)
        .expect("node's");
    assert!(*at > t + CSMA, "over the radio");
    assert_eq!(node_table.neighbors.len(), 1);
    assert_eq!(
        (
            node_table.neighbors[0].nwk,
            node_table.neighbors[0].relationship
        ),
        (0x0000, 0)
    );
    let eps = got::<ZdoActiveEpCallback>(&out, COORDINATOR);
    assert_eq!(eps[0].1.active_endpoints, [SOFTBUS_ENDPOINT]);
    let desc = got::<ZdoSimpleDescCallback>(&out, COORDINATOR);
    let d = desc[0].1.descriptor.as_ref().expect("descriptor");
    assert_eq!(
        (d.profile_id, d.input_clusters.as_slice()),
        (SOFTBUS_PROFILE, &[SOFTBUS_CLUSTER][..])
    );
}

#[test]
fn announcement_names_each_node_for_rig_placeholders() {
    let emu = Emulator::new(EmulatorConfig {
        nodes: vec!["dut".into(), "harness".into()],
        ..EmulatorConfig::default()
    })
    .expect("PTY pairs");
    let a = emu.announcement();
    let nodes = emu.network().nodes();
    let p = crate::rig::helper_placeholders("znp", &a);
    use crate::rig::HelperValue;
    for node in &nodes {
        let pty = emu.node_pty(&node.name).expect("pty");
        assert_ne!(pty, emu.pty_path());
        assert_eq!(
            p.get(&format!("znp_node_{}_pty", node.name)),
            Some(&HelperValue::Text(pty.to_owned()))
        );
        assert_eq!(
            p.get(&format!("znp_node_{}_nwk", node.name)),
            Some(&HelperValue::Int(u64::from(node.nwk)))
        );
        assert_eq!(
            p.get(&format!("znp_nodes_{}_ieee", node.name)),
            Some(&HelperValue::Text(node.ieee.to_string()))
        );
    }
    // The coordinator's fields are as they were.
    assert_eq!(
        p.get("znp_pty"),
        Some(&HelperValue::Text(emu.pty_path().to_owned()))
    );
    assert_eq!(p.get("znp_baud"), Some(&HelperValue::Int(115_200)));
    assert!(a["devices"].as_array().is_some_and(|d| d.len() == 2));
    assert!(Emulator::new(EmulatorConfig {
        nodes: vec!["x".into(), "x".into()],
        ..EmulatorConfig::default()
    })
    .is_err());
}

#[test]
fn two_node_ptys_exchange_a_payload_through_znp_port() {
    use softbus::link::znp::port::ZnpPort;
    const T: Duration = Duration::from_secs(3);
    let handle = Emulator::new(EmulatorConfig {
        nodes: vec!["dut".into(), "harness".into()],
        ..EmulatorConfig::default()
    })
    .expect("PTY pairs")
    .spawn();
    let open = |name: &str| {
        let mut port = ZnpPort::open(handle.node_pty(name).expect("node"), 115_200).expect("open");
        port.set_timeout(T);
        let rsp = port
            .call(&ZdoStartupFromAppReq { start_delay: 0 })
            .expect("startup");
        assert_eq!(rsp.state, 0, "restored");
        port.wait_for::<ZdoStateChangeInd>(T, |i| i.state == device_state::STARTED_AS_ROUTER)
            .expect("router up");
        let reg = port.call(&softbus_endpoint()).expect("AF_REGISTER");
        assert_eq!(reg.status, status::SUCCESS);
        let info = port.device_info().expect("device info");
        (port, info.nwk, info.ieee)
    };
    let (mut dut, dut_nwk, dut_ieee) = open("dut");
    let (mut harness, harness_nwk, _) = open("harness");
    assert_ne!(dut_nwk, harness_nwk);
    assert_eq!(dut_ieee.0 >> 32, 0x0012_4B00);
    let payload: Vec<u8> = (0..APS_PAYLOAD_MAX as u8).collect();
    let sent = dut
        .call(&softbus_frame(harness_nwk, 42, payload.clone()))
        .expect("SRSP");
    assert_eq!(sent.status, status::SUCCESS);
    let msg = harness
        .wait_for::<AfIncomingMsg>(T, |m| m.cluster_id == SOFTBUS_CLUSTER)
        .expect("delivered");
    assert_eq!(
        (msg.src_addr, msg.src_endpoint, msg.dst_endpoint),
        (dut_nwk, SOFTBUS_ENDPOINT, SOFTBUS_ENDPOINT)
    );
    assert_eq!(msg.data, payload);
    let confirm = dut
        .wait_for::<AfDataConfirm>(T, |c| c.trans_id == 42)
        .expect("confirm");
    assert_eq!(confirm.status, status::SUCCESS);
    // And back, the other way.
    harness
        .call(&softbus_frame(dut_nwk, 7, b"pong".to_vec()))
        .expect("SRSP");
    let back = dut
        .wait_for::<AfIncomingMsg>(T, |_| true)
        .expect("delivered back");
    assert_eq!(
        (back.src_addr, back.data.as_slice()),
        (harness_nwk, &b"pong"[..])
    );
    drop((dut, harness));
    handle.stop().expect("clean stop");
}
#[test]
fn bridge_walking_the_network_still_finds_only_the_light_and_the_sensor() {
    use softbus::bridge::host::Host;
    use softbus::link::znp::port::ZnpPort;
    const T: Duration = Duration::from_secs(2);
    let handle = Emulator::new(EmulatorConfig {
        baud: 0,
        nodes: vec!["dut".into()],
        ..EmulatorConfig::default()
    })
    .expect("PTY pairs")
    .spawn();
    // The node is up, with the SoftBus endpoint: the bridge walks through it.
    let mut node = ZnpPort::open(handle.node_pty("dut").expect("node"), 115_200).expect("open");
    node.call(&ZdoStartupFromAppReq { start_delay: 0 })
        .expect("startup");
    node.wait_for::<ZdoStateChangeInd>(T, |i| i.state == device_state::STARTED_AS_ROUTER)
        .expect("router up");
    assert_eq!(
        node.call(&softbus_endpoint()).expect("register").status,
        status::SUCCESS
    );
    let mut host = Host::start(handle.pty_path(), 115_200, Duration::from_secs(1)).expect("bridge");
    let began = std::time::Instant::now();
    let mut found: Vec<u16> = host
        .discover()
        .expect("discover")
        .iter()
        .map(|d| d.nwk)
        .collect();
    found.sort_unstable();
    assert_eq!(found, [LIGHT_NWK, SENSOR_NWK]);
    assert!(
        began.elapsed() < Duration::from_millis(900),
        "no node timed out"
    );
    drop((host, node));
    handle.stop().expect("clean stop");
}
