//! Reachability probes shared by `rig check` and `certify`'s pre-flight: is the DUT's frame port
//! answering a SoftBus handshake, is its control channel answering `hello`. `certify` runs them
//! before its first case so that an unreachable DUT costs one clear message, not a hundred
//! identical ERRORs.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use softbus::wire::frame::{Body, Frame};
use softbus_harness::link::{DatagramLink, Transport};

use crate::tester::dut::DutHandle;

/// A Noise HANDSHAKE_1 from a throwaway key over `link` must be answered (with anything that
/// parses: a HANDSHAKE_REJECT is an answer too).
pub fn frame_probe(link: &dyn DatagramLink) -> Result<String, String> {
    let id = softbus::Identity::from_secret([0x42; 32]);
    let mut hs = softbus::crypto::noise_builder(&id)
        .build_initiator()
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 256];
    let n = hs.write_message(&[], &mut buf).map_err(|e| e.to_string())?;
    let f = Frame {
        conn_id: 0,
        body: Body::Handshake1 {
            sender_conn_id: 0x7e57_0001,
            noise: buf[..n].to_vec(),
        },
    };
    let peer = link.peer();
    link.send(&f.to_vec()).map_err(|e| e.to_string())?;
    let answer = link
        .recv(Duration::from_secs(2))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no answer from {peer} to a HANDSHAKE_1 within 2 s"))?;
    match Frame::parse(&answer) {
        Ok(Frame {
            body: Body::Handshake2 { .. },
            ..
        }) => Ok(format!("{peer} answers HANDSHAKE_1")),
        Ok(other) => Ok(format!("{peer} answers with {:?}", other.frame_type())),
        Err(e) => Err(format!("{peer} answered with a malformed frame: {e}")),
    }
}

/// The local address to bind for talking to `dut` (loopback for a DUT on loopback).
pub fn local_for(dut: SocketAddr) -> SocketAddr {
    if dut.ip().is_loopback() {
        ([127, 0, 0, 1], 0).into()
    } else {
        ([0, 0, 0, 0], 0).into()
    }
}

/// Whether the DUT can be reached at all: its control channel (when it has one) answers
/// `hello`, and its UDP frame port answers a HANDSHAKE_1. The error names what did not answer
/// and what to check.
pub fn reachable(handle: &mut DutHandle) -> Result<(), String> {
    if handle.has_control() {
        handle
            .upper(Duration::from_secs(3))
            .and_then(|mut u| u.call(json!({"op": "hello"})))
            .map_err(|e| {
                format!("its control channel does not answer `hello` ({e}); check [dut.control]")
            })?;
    }
    let udp = handle.udp;
    let link = handle
        .link(Transport::Udp, local_for(udp), Duration::from_secs(2))
        .map_err(|e| format!("its UDP frame port {udp} cannot be opened ({e}); check [dut.udp]"))?;
    frame_probe(&*link).map(|_| ()).map_err(|e| {
        format!("its UDP frame port does not answer a SoftBus handshake ({e}); check [dut.udp]")
    })
}
