//! The TCP binding's framing: SB-ERR-010 (length prefixes, frames too short or past the MTU
//! skipped) and SB-ERR-011 (10,000 generated malformed frames on one TCP link).

use super::fuzz::{malformed_count, mutate, ops, sample};
use super::*;
pub(super) fn tcp_framing(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    // The link MTU is one value for UDP and TCP (2.3): learnt from the DUT's HELLO max_frame on
    // a first connection, which stays idle while a second TCP connection is probed.
    let (mut lt, c) = ctx.connected()?;
    let mtu = usize::from(c.dut_hello.max_frame).max(256);
    ctx.note(format!(
        "link MTU taken from the DUT's HELLO max_frame: {mtu}"
    ));
    let t = ctx.timeout();
    let addr = dut_tcp_addr(ctx)?;
    let mut s = TcpStream::connect_timeout(&addr, t)?;
    s.set_read_timeout(Some(t))?;
    s.set_nodelay(true)?;
    // A well-formed HANDSHAKE_1, length-prefixed: a length-prefixed HANDSHAKE_2 comes back.
    let id = lt.random_u32();
    s.write_all(&tcp_hs1(&mut lt, id))?;
    let first = read_tcp_frame(&mut s);
    ctx.check(
        "FRAME-2",
        matches!(&first, Ok(Frame { conn_id, body: Body::Handshake2 { .. } }) if *conn_id == id),
        format!("a length-prefixed HANDSHAKE_2 to conn_id {id:#010x} on the TCP connection"),
        format!("{first:?}"),
    );
    let before = must_counters(ctx)?;
    // Two frames whose length is below 6 and one longer than the MTU (when a 16-bit length
    // prefix can say so): skipped, then another HANDSHAKE_1.
    s.write_all(&[0, 3, 1, 2, 3])?;
    s.write_all(&[0, 5, 1, 0x10, 0, 0, 0])?;
    let big = u16::try_from(mtu + 1).ok();
    match big {
        Some(big) => {
            let mut long = big.to_be_bytes().to_vec();
            long.resize(2 + usize::from(big), 0x5A);
            s.write_all(&long)?;
        }
        None => ctx.note(format!(
            "no TCP frame is longer than the MTU {mtu} (16-bit length): oversized_frames not probed"
        )),
    }
    let id2 = lt.random_u32();
    s.write_all(&tcp_hs1(&mut lt, id2))?;
    let second = read_tcp_frame(&mut s);
    ctx.check(
        "FRAME-3",
        matches!(&second, Ok(Frame { conn_id, body: Body::Handshake2 { .. } }) if *conn_id == id2),
        format!("a HANDSHAKE_2 to conn_id {id2:#010x} after the skipped frames"),
        format!("{second:?}"),
    );
    if let Some(mid) = check_delta(
        ctx,
        "FRAME-3",
        &before,
        "malformed_frames",
        2..=2,
        "the two length prefixes below 6",
    )? {
        if let (Some(big), Some(b), Some(a)) = (
            big,
            before.get("oversized_frames"),
            mid.get("oversized_frames"),
        ) {
            ctx.check(
                "FRAME-3",
                a == b + 1,
                format!("`oversized_frames` up by 1 (the {big}-byte frame)"),
                format!("up by {}", i128::from(a) - i128::from(b)),
            );
        }
    }
    drop(c);
    ctx.pass();
    Ok(())
}

/// Frames per batch of SB-ERR-011; between batches the link must still answer a handshake.
const TCP_BATCH: usize = 1_000;

pub(super) fn tcp_fuzzed_input(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let total = malformed_count(Transport::Tcp);
    let t = ctx.timeout();
    let addr = dut_tcp_addr(ctx)?;
    let mut lt = ctx.lower()?;
    let mut s = TcpStream::connect_timeout(&addr, t)?;
    s.set_nodelay(true)?;
    let before = must_counters(ctx)?;
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&ctx.seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        PtConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    ctx.note(format!(
        "proptest ChaCha runner seeded from the case seed {:#018x}",
        ctx.seed
    ));
    // Valid frames to mutate: a HANDSHAKE_1, a record header for an unknown connection, a
    // PAIR_REQUEST-shaped frame; each keeps its length prefix true, so every frame reaches the
    // DUT's frame parser (a wrong prefix would only desynchronise the stream).
    let seeds: Vec<Vec<u8>> = vec![
        tcp_hs1(&mut lt, 1)[2..].to_vec(),
        {
            let mut r = vec![1u8, 0x10];
            r.extend_from_slice(&lt.random_u32().to_be_bytes());
            r.extend_from_slice(&[0u8; 40]);
            r
        },
        {
            let mut p = vec![1u8, 0x01, 0, 0, 0, 0];
            p.extend_from_slice(&[0x55u8; 65]);
            p
        },
    ];
    let frames = prop_oneof![
        3 => (0..seeds.len(), ops()).prop_map(move |(i, o)| mutate(&seeds[i], &o)),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (any::<u8>(), any::<u8>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..200)).prop_map(|(v, ty, id, body)| {
            let mut f = vec![v, ty];
            f.extend_from_slice(&id.to_be_bytes());
            f.extend_from_slice(&body);
            f
        }),
    ];
    // The DUT's answers (to mutated HANDSHAKE_1s, say) are read as they come, so neither side's
    // buffers fill; the probe after each batch looks for its own HANDSHAKE_2 among them.
    let reader = s.try_clone()?;
    // Ends the reader thread however the case ends (its clone would keep the link open).
    struct Hangup(TcpStream);
    impl Drop for Hangup {
        fn drop(&mut self) {
            let _ = self.0.shutdown(std::net::Shutdown::Both);
        }
    }
    let _hangup = Hangup(s.try_clone()?);
    let (tx, rx) = std::sync::mpsc::channel::<Frame>();
    std::thread::spawn(move || {
        let mut r = reader;
        while let Ok(f) = read_tcp_frame_or_skip(&mut r) {
            if let Some(f) = f {
                if tx.send(f).is_err() {
                    return;
                }
            }
        }
    });
    let started = Instant::now();
    let mut sent = 0;
    let mut batches_served = 0;
    while sent < total {
        for _ in 0..TCP_BATCH.min(total - sent) {
            let f = sample(&mut runner, &frames)?;
            let mut framed = (f.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&f);
            if let Err(e) = s.write_all(&framed) {
                ctx.check(
                    "ERR-6",
                    false,
                    "the DUT keeps the TCP link open through malformed frames",
                    format!("after {sent} frames the write failed: {e}"),
                );
                return Ok(());
            }
            sent += 1;
        }
        if crashed(ctx, "ERR-6", &format!("{sent} malformed frames on TCP")) {
            return Ok(());
        }
        // Still serving this link: a fresh, well-formed HANDSHAKE_1 gets its HANDSHAKE_2.
        let id = lt.random_u32();
        s.write_all(&tcp_hs1(&mut lt, id))?;
        let end = Instant::now() + t;
        let mut answered = false;
        while !answered && Instant::now() < end {
            if let Ok(f) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                answered = f.conn_id == id && matches!(f.body, Body::Handshake2 { .. });
            }
        }
        ctx.check(
            "ERR-6",
            answered,
            format!("a HANDSHAKE_2 to conn_id {id:#010x} on the same TCP link after {sent} malformed frames"),
            format!("none within {t:?}"),
        );
        if !answered {
            return Ok(());
        }
        batches_served += 1;
    }
    ctx.note(format!(
        "sent {sent} frames on TCP in {:?}; the link answered a handshake after each of {batches_served} batches",
        started.elapsed()
    ));
    if let Some(after) = counters(ctx)? {
        let sum = |c: &Counters| {
            c.get("malformed_frames").unwrap_or(0)
                + c.get("oversized_frames").unwrap_or(0)
                + c.get("unknown_connection").unwrap_or(0)
                + c.get("handshakes_rejected").unwrap_or(0)
        };
        ctx.check(
            "ERR-7",
            sum(&after) > sum(&before),
            "the malformed frames counted (`malformed_frames`, `unknown_connection`, ...)",
            format!("{} -> {}", sum(&before), sum(&after)),
        );
    }
    ctx.pass();
    Ok(())
}

/// Read one length-prefixed frame; `None` for one that does not parse (the DUT only ever sends
/// well-formed frames, but the reader must not stop on one).
fn read_tcp_frame_or_skip(s: &mut TcpStream) -> std::io::Result<Option<Frame>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut f = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut f)?;
    Ok(Frame::parse(&f).ok())
}

/// The DUT's TCP frame address from the rig.
pub(super) fn dut_tcp_addr(ctx: &Ctx<'_>) -> Result<SocketAddr, StepError> {
    let Some(ep) = ctx.dut.dut.tcp.clone() else {
        return Err(StepError::Unexpected(
            "the rig names no [dut.tcp] endpoint although the PICS claim TCP".into(),
        ));
    };
    ep.socket_addrs()?.into_iter().next().ok_or_else(|| {
        StepError::Unexpected(format!("{}:{} resolves to nothing", ep.host, ep.port))
    })
}

/// A length-prefixed HANDSHAKE_1 with sender conn_id `id`.
fn tcp_hs1(lt: &mut LowerTester, id: u32) -> Vec<u8> {
    let hs1 = Frame {
        conn_id: 0,
        body: Body::Handshake1 {
            sender_conn_id: id,
            noise: lt.random_identity().public().to_vec(),
        },
    }
    .to_vec();
    let mut framed = (hs1.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&hs1);
    framed
}

/// Read one length-prefixed frame from a TCP link.
fn read_tcp_frame(s: &mut TcpStream) -> Result<Frame, String> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)
        .map_err(|e| format!("no frame: {e}"))?;
    let mut f = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut f)
        .map_err(|e| format!("truncated frame: {e}"))?;
    Frame::parse(&f).map_err(|e| format!("{} bytes that do not parse: {e}", f.len()))
}
