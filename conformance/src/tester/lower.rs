//! The lower tester: a SoftBus peer built only from the wire codec and crypto primitives, with
//! every knob a conformance case needs to misbehave on purpose.
//!
//! It never uses the reference implementation's state machines (`softbus::endpoint`): a case
//! must judge the DUT by what crosses the wire, and a bug shared by the tester and the reference
//! would otherwise hide itself. Everything is blocking with a timeout on every step.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use softbus::crypto::{self, ct_eq, PairingTranscript, RecordKey, ReplayVerdict, ReplayWindow};
use softbus::wire::frame::{Body, Frame, RECORD_OVERHEAD, SPAKE2_MSG_LEN};
use softbus::wire::hello::Hello;
use softbus::wire::msg::{ChannelKind, Message, MsgBody, PermResult, Qos, Scope, DATA_OVERHEAD};
use softbus::wire::Code;
use softbus::{DeviceId, Identity};
use softbus_harness::link::udp::UdpLink;
use softbus_harness::link::{DatagramLink, LinkError, Transport};

/// A step did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Nothing (matching) arrived in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// The DUT answered something else than the step expects.
    #[error("{0}")]
    Unexpected(String),
    /// A socket, serial port or D-Bus call failed (a rig problem, not the DUT's).
    #[error("I/O error: {0}")]
    Io(String),
    /// What the DUT announced makes the case inapplicable on this connection (a legal choice,
    /// such as a CAP_LIST cut at a small MTU by [CAP-12]): the case is NA with this reason.
    #[error("not applicable: {0}")]
    NotApplicable(String),
}

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> StepError {
        StepError::Io(e.to_string())
    }
}

impl From<LinkError> for StepError {
    fn from(e: LinkError) -> StepError {
        match e {
            // The DUT dropping its link is the DUT's doing: a step that cannot complete.
            LinkError::Disconnected(_) | LinkError::Peer(_) | LinkError::OverBudget(_) => {
                StepError::Unexpected(e.to_string())
            }
            _ => StepError::Io(e.to_string()),
        }
    }
}

/// One frame seen by the lower tester, for evidence and for checks across records.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Sent by the tester (`true`) or received from the DUT.
    pub outbound: bool,
    /// The raw frame.
    pub bytes: Vec<u8>,
    /// When.
    pub at: Instant,
}

/// The tester's endpoint towards one DUT, over any of its links.
pub struct LowerTester {
    link: Arc<dyn DatagramLink>,
    /// The tester's static identity.
    pub identity: Identity,
    rng: ChaCha20Rng,
    /// Default per-step timeout.
    pub timeout: Duration,
    /// Every frame sent and received, in order.
    pub trace: Vec<Seen>,
    /// Link MTU used for fragmentation.
    pub mtu: usize,
    /// The link may lose frames (`certify --impair`): the tester then retransmits its pairing
    /// and handshake messages as a peer on a datagram link must ([HS-10], [HS-17], 5.5), so
    /// that a lost stimulus is not charged to the DUT. Off on a clean link, where a DUT that
    /// needs a second copy to answer is a DUT that missed the first.
    pub lossy: bool,
}

/// The intervals after which the tester repeats a handshake or pairing message that has not
/// been answered on a lossy link: [HS-10]'s 500 ms, doubling.
pub fn resend_intervals() -> impl Iterator<Item = Duration> {
    (0..).map(|i: u32| Duration::from_millis(500) * 2u32.pow(i.min(4)))
}

/// Outcome of a pairing attempt as initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairOutcome {
    /// PAIR_RESULT status, or the status we concluded.
    pub status: Code,
    /// Whether the DUT's PAIR_RESPONSE confirmation matched our PIN.
    pub responder_confirm_ok: bool,
    /// The DUT's static key from PAIR_RESPONSE.
    pub dut_static: Option<[u8; 32]>,
    /// Whether the PAIR_RESULT MAC verified (OK results only).
    pub result_mac_ok: bool,
}

impl LowerTester {
    /// Bind a UDP socket on `local` (use port 0) to talk to `dut`.
    pub fn new(
        local: SocketAddr,
        dut: SocketAddr,
        identity: Identity,
        seed: u64,
        timeout: Duration,
    ) -> Result<LowerTester, StepError> {
        let link = Arc::new(UdpLink::bind(local, dut)?);
        Ok(LowerTester::over(link, identity, seed, timeout))
    }

    /// A tester over an open link.
    pub fn over(
        link: Arc<dyn DatagramLink>,
        identity: Identity,
        seed: u64,
        timeout: Duration,
    ) -> LowerTester {
        LowerTester {
            mtu: link.max_datagram().min(1400),
            link,
            identity,
            rng: ChaCha20Rng::seed_from_u64(seed),
            timeout,
            trace: Vec::new(),
            lossy: false,
        }
    }

    /// The transport this tester uses.
    pub fn transport(&self) -> Transport {
        self.link.transport()
    }

    /// The DUT's IP address (IP links only).
    pub fn dut_ip(&self) -> Option<SocketAddr> {
        self.link.peer_ip_addr()
    }

    /// The link (to open a second conversation on the same one).
    pub fn link(&self) -> Arc<dyn DatagramLink> {
        self.link.clone()
    }

    /// A fresh random identity from the tester's seeded RNG.
    pub fn random_identity(&mut self) -> Identity {
        Identity::generate(&mut self.rng)
    }

    /// The tester's local address (IP links; `0.0.0.0:0` on others).
    pub fn local_addr(&self) -> SocketAddr {
        self.link
            .local_ip_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Random u32 (non-zero).
    pub fn random_u32(&mut self) -> u32 {
        self.rng.gen_range(1..=u32::MAX)
    }

    /// Random bytes.
    pub fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    /// Send raw bytes to the DUT.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), StepError> {
        self.link.send(bytes)?;
        self.trace.push(Seen {
            outbound: true,
            bytes: bytes.to_vec(),
            at: Instant::now(),
        });
        Ok(())
    }

    /// Receive one datagram from the DUT within `timeout` (`None` on timeout).
    pub fn recv_raw(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, StepError> {
        let got = self.link.recv(timeout)?;
        if let Some(b) = &got {
            self.trace.push(Seen {
                outbound: false,
                bytes: b.clone(),
                at: Instant::now(),
            });
        }
        Ok(got)
    }

    /// Wait for a frame that parses and satisfies `pred`; other frames are skipped.
    pub fn expect_frame(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Frame) -> bool,
    ) -> Result<Frame, StepError> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let Some(raw) = self.recv_raw(left)? else {
                return Err(StepError::Timeout(timeout, what.to_string()));
            };
            if let Ok(f) = Frame::parse(&raw) {
                if pred(&f) {
                    return Ok(f);
                }
            }
        }
    }

    /// Send a frame.
    pub fn send_frame(&mut self, f: &Frame) -> Result<(), StepError> {
        self.send_raw(&f.to_vec())
    }

    /// Send `f` and wait up to `timeout` for a frame satisfying `pred`. On a [lossy](Self::lossy)
    /// link, `f` is repeated byte for byte after [`resend_intervals`] while nothing matching has
    /// arrived; on a clean link it is sent once.
    pub fn exchange(
        &mut self,
        f: &Frame,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Frame) -> bool,
    ) -> Result<Frame, StepError> {
        let bytes = f.to_vec();
        self.send_raw(&bytes)?;
        if !self.lossy {
            return self.expect_frame(timeout, what, pred);
        }
        let end = Instant::now() + timeout;
        let mut intervals = resend_intervals();
        loop {
            let now = Instant::now();
            let resend_at = now + intervals.next().unwrap_or(timeout);
            let wait = resend_at.min(end).saturating_duration_since(now);
            match self.expect_frame(wait, what, &pred) {
                Ok(f) => return Ok(f),
                Err(StepError::Timeout(..)) if Instant::now() < end => {
                    self.send_raw(&bytes)?;
                }
                Err(StepError::Timeout(..)) => {
                    return Err(StepError::Timeout(timeout, what.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
    }

    // ------------------------------------------------------------------ pairing

    /// Pair as initiator with `pin`. With `confirm_anyway`, a PAIR_CONFIRM is sent even when the
    /// DUT's confirmation did not match (to make the DUT judge a wrong PIN).
    pub fn pair(&mut self, pin: &str, confirm_anyway: bool) -> Result<PairOutcome, StepError> {
        let pairing_id = self.random_u32();
        let (spake, msg_a) = crypto::spake2_start_a(pin, &mut self.rng);
        let Ok(spake_msg) = <[u8; SPAKE2_MSG_LEN]>::try_from(msg_a.as_slice()) else {
            return Err(StepError::Unexpected(
                "SPAKE2 message is not 33 bytes".into(),
            ));
        };
        let request = Frame {
            conn_id: 0,
            body: Body::PairRequest {
                pairing_id,
                static_key: *self.identity.public(),
                spake_msg,
            },
        };
        let t = self.timeout;
        // A repeat of the PAIR_REQUEST is answered with the same PAIR_RESPONSE ([PAIR-10]).
        let resp = self.exchange(&request, t, "PAIR_RESPONSE or PAIR_RESULT", |f| {
            matches!(&f.body, Body::PairResponse { pairing_id: p, .. } | Body::PairResult { pairing_id: p, .. } if *p == pairing_id)
        })?;
        let (dut_static, msg_b, confirm_b) = match resp.body {
            Body::PairResult { status, .. } => {
                return Ok(PairOutcome {
                    status,
                    responder_confirm_ok: false,
                    dut_static: None,
                    result_mac_ok: false,
                })
            }
            Body::PairResponse {
                static_key,
                spake_msg,
                confirm,
                ..
            } => (static_key, spake_msg, confirm),
            _ => return Err(StepError::Unexpected("unexpected pairing frame".into())),
        };
        let key = spake.finish(&msg_b).map_err(|e| {
            StepError::Unexpected(format!("DUT's SPAKE2 message is invalid: {e:?}"))
        })?;
        let tr = PairingTranscript::new(key, self.identity.public(), &dut_static, &msg_a, &msg_b);
        let responder_confirm_ok = ct_eq(&tr.responder_confirm(), &confirm_b);
        if !responder_confirm_ok && !confirm_anyway {
            self.send_frame(&Frame {
                conn_id: 0,
                body: Body::PairResult {
                    pairing_id,
                    status: Code::PairingFailed,
                    mac: [0; 32],
                },
            })?;
            return Ok(PairOutcome {
                status: Code::PairingFailed,
                responder_confirm_ok,
                dut_static: Some(dut_static),
                result_mac_ok: false,
            });
        }
        // A repeat of the PAIR_CONFIRM is answered with the same PAIR_RESULT ([PAIR-17]).
        let confirm = Frame {
            conn_id: 0,
            body: Body::PairConfirm {
                pairing_id,
                confirm: tr.initiator_confirm(),
            },
        };
        let res = self.exchange(
            &confirm,
            t,
            "PAIR_RESULT",
            |f| matches!(&f.body, Body::PairResult { pairing_id: p, .. } if *p == pairing_id),
        )?;
        let Body::PairResult { status, mac, .. } = res.body else {
            return Err(StepError::Unexpected("not a PAIR_RESULT".into()));
        };
        Ok(PairOutcome {
            status,
            responder_confirm_ok,
            dut_static: Some(dut_static),
            result_mac_ok: status == Code::Ok && ct_eq(&tr.result_mac(0), &mac),
        })
    }

    // ------------------------------------------------------------------ handshake

    /// Run a Noise XX handshake as initiator. `prologue` overrides the spec's prologue (to test
    /// version binding); `tamper_hs3` flips a bit of HANDSHAKE_3.
    pub fn handshake_with(
        &mut self,
        prologue: Option<&[u8]>,
        tamper_hs3: bool,
    ) -> Result<Result<SecureConn, Code>, StepError> {
        self.handshake_opts(&HsOpts {
            prologue: prologue.map(<[u8]>::to_vec),
            tamper_hs3,
            ..HsOpts::default()
        })
    }

    /// Run a Noise XX handshake as initiator with every knob of [`HsOpts`]. `Ok(Err(code))` when
    /// the DUT answered with HANDSHAKE_REJECT; a timeout while waiting for the DUT's first
    /// RECORD is a [`StepError::Timeout`].
    pub fn handshake_opts(&mut self, o: &HsOpts) -> Result<Result<SecureConn, Code>, StepError> {
        let local_id = self.random_u32();
        let mut eph = [0u8; 32];
        self.rng.fill_bytes(&mut eph);
        let params = crypto::NOISE_PARAMS
            .parse()
            .map_err(|_| StepError::Unexpected("noise params".into()))?;
        let mut hs = snow::Builder::new(params)
            .local_private_key(self.identity.secret())
            .prologue(o.prologue.as_deref().unwrap_or(crypto::PROLOGUE))
            .fixed_ephemeral_key_for_testing_only(&eph)
            .build_initiator()
            .map_err(|e| StepError::Unexpected(format!("noise: {e}")))?;
        let mut buf = [0u8; 1024];
        let n = hs
            .write_message(&[], &mut buf)
            .map_err(|e| StepError::Unexpected(format!("noise: {e}")))?;
        let hs1 = Frame {
            conn_id: 0,
            body: Body::Handshake1 {
                sender_conn_id: local_id,
                noise: buf[..n].to_vec(),
            },
        };
        let t = self.timeout;
        let f = self.exchange(&hs1, t, "HANDSHAKE_2 or HANDSHAKE_REJECT", |f| {
            f.conn_id == local_id
                && matches!(
                    f.body,
                    Body::Handshake2 { .. } | Body::HandshakeReject { .. }
                )
        })?;
        let (remote_id, noise) = match f.body {
            Body::HandshakeReject { code } => return Ok(Err(code)),
            Body::Handshake2 {
                sender_conn_id,
                noise,
            } => (sender_conn_id, noise),
            _ => return Err(StepError::Unexpected("unreachable frame".into())),
        };
        if o.repeat_hs1 {
            // The DUT must answer a repeated HANDSHAKE_1 with the same HANDSHAKE_2 (the case
            // reads both from the trace); not getting one is for the case to judge.
            self.send_frame(&hs1)?;
            let _ = self.expect_frame(t, "a second HANDSHAKE_2", |f| {
                f.conn_id == local_id && matches!(f.body, Body::Handshake2 { .. })
            });
        }
        let mut payload = [0u8; 1024];
        let n = hs.read_message(&noise, &mut payload).map_err(|e| {
            StepError::Unexpected(format!("DUT's HANDSHAKE_2 does not verify: {e}"))
        })?;
        let hello = Hello::parse(&payload[..n]).map_err(|_| {
            StepError::Unexpected(format!(
                "DUT's HELLO is malformed: {}",
                hex::encode(&payload[..n])
            ))
        })?;
        let dut_static: [u8; 32] = hs
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| StepError::Unexpected("no remote static key".into()))?;
        let my_hello = o.hello.clone().unwrap_or_else(|| self.hello());
        let n = hs
            .write_message(&my_hello, &mut buf)
            .map_err(|e| StepError::Unexpected(format!("noise: {e}")))?;
        let mut hs3 = buf[..n].to_vec();
        if o.tamper_hs3 {
            if let Some(b) = hs3.last_mut() {
                *b ^= 0x01;
            }
        }
        let hs3_frame = Frame {
            conn_id: remote_id,
            body: Body::Handshake3 { noise: hs3 },
        };
        if let Some(d) = o.hs3_delay {
            std::thread::sleep(d);
        }
        if let Some(mut stray) = o.pre_hs3.clone() {
            if stray.len() >= 6 {
                stray[2..6].copy_from_slice(&remote_id.to_be_bytes());
            }
            self.send_raw(&stray)?;
        }
        // The responder answers a completed handshake with a HEARTBEAT record (or rejects it):
        // wait for either before calling the connection established. On a lossy link
        // HANDSHAKE_3 is repeated meanwhile, as [HS-17] has it repeated until a record arrives
        // (the responder drops repeats of one that completed the handshake, [HS-18]).
        let first = self.exchange(
            &hs3_frame,
            t,
            "the DUT's first RECORD or HANDSHAKE_REJECT after HANDSHAKE_3",
            |f| {
                f.conn_id == local_id
                    && matches!(f.body, Body::Record { .. } | Body::HandshakeReject { .. })
            },
        )?;
        if let Body::HandshakeReject { code } = first.body {
            return Ok(Err(code));
        }
        let (k_i2r, k_r2i) = hs.dangerously_get_raw_split();
        let mut conn = self.secure_conn(
            local_id,
            remote_id,
            RecordKey::new(k_i2r),
            RecordKey::new(k_r2i),
            dut_static,
            hello,
            2,
        )?;
        conn.preload.push_back(first.to_vec());
        conn.hs3 = Some(hs3_frame.to_vec());
        Ok(Ok(conn))
    }

    /// A normal handshake; a rejection is an error naming the code.
    pub fn handshake(&mut self) -> Result<SecureConn, StepError> {
        match self.handshake_with(None, false)? {
            Ok(c) => Ok(c),
            Err(code) => Err(StepError::Unexpected(format!(
                "DUT rejected the handshake with {code}"
            ))),
        }
    }

    /// The tester's own HELLO (heartbeat 1000 ms, `max_frame` = the tester's MTU).
    pub fn hello(&self) -> Vec<u8> {
        Hello {
            hb_ms: 1000,
            max_frame: self.mtu.min(u16::MAX as usize) as u16,
            name: "softbus-tester".into(),
        }
        .to_bytes()
    }

    /// Answer a handshake the DUT starts (after the control operation `connect`), as Noise
    /// responder with the tester's identity: wait for HANDSHAKE_1, answer HANDSHAKE_2 (or the
    /// rejection `o.reject_with`), then wait for HANDSHAKE_3 or HANDSHAKE_REJECT. Everything the
    /// DUT sent is in the returned [`Accepted`]; no HANDSHAKE_1 within `o.wait_hs1` is a
    /// [`StepError::Timeout`], while a DUT that stays silent after HANDSHAKE_2 is
    /// `Accepted { hs3: None, reject: None, .. }` for the case to judge.
    pub fn accept_handshake(&mut self, o: &AcceptOpts) -> Result<Accepted, StepError> {
        let f = self.expect_frame(o.wait_hs1, "the DUT's HANDSHAKE_1", |f| {
            matches!(f.body, Body::Handshake1 { .. })
        })?;
        let hs1 = f.to_vec();
        let hs1_at = Instant::now();
        let Body::Handshake1 {
            sender_conn_id,
            noise,
        } = f.body
        else {
            return Err(StepError::Unexpected("unreachable frame".into()));
        };
        let mut out = Accepted {
            hs1,
            hs1_at,
            dut_conn_id: sender_conn_id,
            local_id: 0,
            hs2: Vec::new(),
            hs3: None,
            hs3_at: None,
            reject: None,
            hello_raw: Vec::new(),
            conn: None,
        };
        if let Some(code) = o.reject_with {
            self.send_frame(&Frame {
                conn_id: sender_conn_id,
                body: Body::HandshakeReject { code },
            })?;
            return Ok(out);
        }
        let local_id = self.random_u32();
        out.local_id = local_id;
        let mut eph = [0u8; 32];
        self.rng.fill_bytes(&mut eph);
        let params = crypto::NOISE_PARAMS
            .parse()
            .map_err(|_| StepError::Unexpected("noise params".into()))?;
        let mut hs = snow::Builder::new(params)
            .local_private_key(self.identity.secret())
            .prologue(crypto::PROLOGUE)
            .fixed_ephemeral_key_for_testing_only(&eph)
            .build_responder()
            .map_err(|e| StepError::Unexpected(format!("noise: {e}")))?;
        let mut payload = [0u8; 1024];
        hs.read_message(&noise, &mut payload).map_err(|e| {
            StepError::Unexpected(format!(
                "DUT's HANDSHAKE_1 does not parse as Noise message 1: {e}"
            ))
        })?;
        let my_hello = o.hello.clone().unwrap_or_else(|| self.hello());
        let mut buf = [0u8; 1024];
        let n = hs
            .write_message(&my_hello, &mut buf)
            .map_err(|e| StepError::Unexpected(format!("noise: {e}")))?;
        let hs2 = Frame {
            conn_id: sender_conn_id,
            body: Body::Handshake2 {
                sender_conn_id: local_id,
                noise: buf[..n].to_vec(),
            },
        }
        .to_vec();
        out.hs2 = hs2.clone();
        if let Some(mut stray) = o.pre_hs2.clone() {
            if stray.len() >= 6 {
                stray[2..6].copy_from_slice(&sender_conn_id.to_be_bytes());
            }
            self.send_raw(&stray)?;
        }
        let mut sent = hs2;
        if o.tamper_hs2 {
            if let Some(b) = sent.last_mut() {
                *b ^= 0x01;
            }
        }
        self.send_raw(&sent)?;
        let Ok(f) = self.expect_frame(o.wait_hs3, "HANDSHAKE_3 or HANDSHAKE_REJECT", |f| {
            f.conn_id == local_id
                && matches!(
                    f.body,
                    Body::Handshake3 { .. } | Body::HandshakeReject { .. }
                )
        }) else {
            return Ok(out);
        };
        out.hs3_at = Some(Instant::now());
        let noise = match f.body {
            Body::HandshakeReject { code } => {
                out.reject = Some(code);
                return Ok(out);
            }
            Body::Handshake3 { ref noise } => noise.clone(),
            _ => return Err(StepError::Unexpected("unreachable frame".into())),
        };
        out.hs3 = Some(f.to_vec());
        if o.tamper_hs2 {
            // A DUT that answers a tampered HANDSHAKE_2 cannot be followed further.
            return Ok(out);
        }
        let n = hs.read_message(&noise, &mut payload).map_err(|e| {
            StepError::Unexpected(format!("DUT's HANDSHAKE_3 does not verify: {e}"))
        })?;
        out.hello_raw = payload[..n].to_vec();
        let hello = Hello::parse(&payload[..n]).unwrap_or(Hello {
            hb_ms: 0,
            max_frame: 0,
            name: String::new(),
        });
        let dut_static: [u8; 32] = hs
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| StepError::Unexpected("no remote static key".into()))?;
        let (k_i2r, k_r2i) = hs.dangerously_get_raw_split();
        let mut conn = self.secure_conn(
            local_id,
            sender_conn_id,
            RecordKey::new(k_r2i),
            RecordKey::new(k_i2r),
            dut_static,
            hello,
            1,
        )?;
        if o.first_record {
            conn.send(MsgBody::Heartbeat, false)?;
        }
        out.conn = Some(conn);
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn secure_conn(
        &self,
        local_id: u32,
        remote_id: u32,
        tx: RecordKey,
        rx: RecordKey,
        dut_static: [u8; 32],
        dut_hello: Hello,
        next_session: u32,
    ) -> Result<SecureConn, StepError> {
        Ok(SecureConn {
            last_sent: std::cell::Cell::new(None),
            preload: VecDeque::new(),
            clock: None,
            time_log: Vec::new(),
            link: self.link.clone(),
            local_id,
            remote_id,
            tx,
            rx,
            rx_prev: None,
            tx_seq: 0,
            replay: ReplayWindow::default(),
            next_rseq: 1,
            rx_next: 1,
            rx_buf: BTreeMap::new(),
            inbox: VecDeque::new(),
            unacked: BTreeMap::new(),
            records: Vec::new(),
            non_records: Vec::new(),
            dut_static,
            dut_hello,
            mtu: self.mtu,
            next_session,
            accepted: BTreeMap::new(),
            auto_ack: true,
            timeout: self.timeout,
            hs3: None,
        })
    }
}

/// Knobs of [`LowerTester::handshake_opts`] (the tester as initiator).
#[derive(Debug, Clone, Default)]
pub struct HsOpts {
    /// Noise prologue instead of the spec's `"SoftBus/1" || 0x01`.
    pub prologue: Option<Vec<u8>>,
    /// Flip a bit of the Noise message in HANDSHAKE_3.
    pub tamper_hs3: bool,
    /// HELLO payload (raw bytes, possibly malformed) instead of the tester's own.
    pub hello: Option<Vec<u8>>,
    /// Send HANDSHAKE_1 a second time, byte for byte, after the first HANDSHAKE_2.
    pub repeat_hs1: bool,
    /// Wait this long before sending HANDSHAKE_3.
    pub hs3_delay: Option<Duration>,
    /// A raw frame sent just before HANDSHAKE_3, its header conn_id (bytes 2..6) replaced by
    /// the responder's connection ID (a stray frame for the half-open handshake).
    pub pre_hs3: Option<Vec<u8>>,
}

/// Knobs of [`LowerTester::accept_handshake`] (the tester as responder).
#[derive(Debug, Clone)]
pub struct AcceptOpts {
    /// How long to wait for the DUT's HANDSHAKE_1.
    pub wait_hs1: Duration,
    /// How long to wait for HANDSHAKE_3 or HANDSHAKE_REJECT after HANDSHAKE_2.
    pub wait_hs3: Duration,
    /// HELLO payload (raw bytes, possibly malformed) instead of the tester's own.
    pub hello: Option<Vec<u8>>,
    /// Flip a bit of the Noise message in HANDSHAKE_2 (the genuine one is in [`Accepted::hs2`]).
    pub tamper_hs2: bool,
    /// Answer HANDSHAKE_1 with a HANDSHAKE_REJECT carrying this code instead of HANDSHAKE_2.
    pub reject_with: Option<Code>,
    /// Send the responder's first RECORD (a HEARTBEAT) once HANDSHAKE_3 verified.
    pub first_record: bool,
    /// A raw frame sent just before HANDSHAKE_2, its header conn_id (bytes 2..6) replaced by
    /// the DUT's connection ID (a stray frame for the handshake awaiting HANDSHAKE_2).
    pub pre_hs2: Option<Vec<u8>>,
}

impl Default for AcceptOpts {
    fn default() -> AcceptOpts {
        AcceptOpts {
            wait_hs1: Duration::from_secs(5),
            wait_hs3: Duration::from_secs(2),
            hello: None,
            tamper_hs2: false,
            reject_with: None,
            first_record: true,
            pre_hs2: None,
        }
    }
}

/// What happened in a handshake the DUT initiated ([`LowerTester::accept_handshake`]).
pub struct Accepted {
    /// The DUT's HANDSHAKE_1, raw.
    pub hs1: Vec<u8>,
    /// When it arrived.
    pub hs1_at: Instant,
    /// The DUT's connection ID (sender conn_id of HANDSHAKE_1).
    pub dut_conn_id: u32,
    /// The tester's connection ID (0 when the tester rejected HANDSHAKE_1).
    pub local_id: u32,
    /// The genuine HANDSHAKE_2 the tester built (raw; empty when it rejected HANDSHAKE_1).
    pub hs2: Vec<u8>,
    /// The DUT's HANDSHAKE_3, raw, if one came.
    pub hs3: Option<Vec<u8>>,
    /// When the DUT's HANDSHAKE_3 or HANDSHAKE_REJECT arrived.
    pub hs3_at: Option<Instant>,
    /// The code of the DUT's HANDSHAKE_REJECT, if it sent one.
    pub reject: Option<Code>,
    /// The DUT's HELLO (Noise payload of HANDSHAKE_3), raw.
    pub hello_raw: Vec<u8>,
    /// The connection, when HANDSHAKE_3 verified.
    pub conn: Option<SecureConn>,
}

/// One record as it crossed the wire, decrypted where possible.
#[derive(Debug, Clone)]
pub struct RecordSeen {
    /// Sent by the DUT.
    pub from_dut: bool,
    /// Epoch.
    pub epoch: u8,
    /// Sequence number (nonce).
    pub seq: u64,
    /// Raw frame.
    pub frame: Vec<u8>,
    /// Whether it authenticated.
    pub authentic: bool,
}

/// The latest a DUT may acknowledge a reliable message after receiving it ([REL-6]).
pub const ACK_BOUND: Duration = Duration::from_millis(100);

/// What [`SecureConn::settle`] allows the link on top of [`ACK_BOUND`]: the record's way to the
/// DUT and its ACK's way back.
pub const SETTLE_SLACK: Duration = Duration::from_millis(60);

/// An established secure connection between the lower tester and the DUT.
pub struct SecureConn {
    link: Arc<dyn DatagramLink>,
    /// Our connection ID (the DUT puts it in the header).
    pub local_id: u32,
    /// The DUT's connection ID.
    pub remote_id: u32,
    /// Our sending key.
    pub tx: RecordKey,
    /// Our receiving key.
    pub rx: RecordKey,
    rx_prev: Option<RecordKey>,
    /// Next record sequence number we send.
    pub tx_seq: u64,
    replay: ReplayWindow,
    /// Next reliable sequence number we send.
    pub next_rseq: u32,
    rx_next: u32,
    rx_buf: BTreeMap<u32, MsgBody>,
    inbox: VecDeque<Message>,
    unacked: BTreeMap<u32, (Vec<u8>, Instant)>,
    /// Every record received from the DUT (for nonce and plaintext checks).
    pub records: Vec<RecordSeen>,
    /// Every other datagram the DUT sent to the connection's socket (not a RECORD for this
    /// connection, or not a frame at all), raw: nothing but handshake frames belongs here.
    pub non_records: Vec<Vec<u8>>,
    /// The DUT's static key.
    pub dut_static: [u8; 32],
    /// The DUT's HELLO.
    pub dut_hello: Hello,
    mtu: usize,
    next_session: u32,
    /// The max_message the DUT announced in SESSION_ACCEPT, per session the tester opened.
    accepted: BTreeMap<u32, usize>,
    /// Acknowledge reliable messages automatically (switch off to watch retransmissions).
    pub auto_ack: bool,
    /// Default step timeout.
    pub timeout: Duration,
    hs3: Option<Vec<u8>>,
    /// Frames received before the connection object existed.
    preload: VecDeque<Vec<u8>>,
    /// When the tester last sent anything on the connection (see [`SecureConn::settle`]).
    last_sent: std::cell::Cell<Option<Instant>>,
    /// The tester's timebase (spec 17): while set, every TIME_REQUEST from the DUT is answered
    /// at once, stamped in it.
    pub clock: Option<super::clock::TesterClock>,
    /// Every TIME_REQUEST and TIME_RESPONSE the DUT sent, with the instant it arrived; TIME
    /// messages do not go to the inbox.
    pub time_log: Vec<(Instant, MsgBody)>,
}

impl SecureConn {
    /// The DUT's device ID.
    pub fn dut_id(&self) -> DeviceId {
        DeviceId::from_public_key(&self.dut_static)
    }

    /// Encrypt `msg` as the next record and return the frame bytes (not sent).
    pub fn seal(&mut self, msg: &Message) -> Vec<u8> {
        let seq = self.tx_seq;
        self.tx_seq += 1;
        self.seal_at(msg, seq)
    }

    /// Encrypt `msg` with an explicit sequence number.
    pub fn seal_at(&self, msg: &Message, seq: u64) -> Vec<u8> {
        let ct = self.tx.seal(self.remote_id, seq, &msg.to_vec());
        Frame {
            conn_id: self.remote_id,
            body: Body::Record {
                epoch: self.tx.epoch,
                seq,
                ciphertext: ct,
            },
        }
        .to_vec()
    }

    /// Send raw bytes to the DUT.
    pub fn send_raw(&self, bytes: &[u8]) -> Result<(), StepError> {
        self.link.send(bytes)?;
        self.last_sent.set(Some(Instant::now()));
        Ok(())
    }

    /// Wait until the DUT owes the tester no ACK, so that what arrives next answers what the
    /// tester sends next: every reliable message sent with [`SecureConn::send`] is acknowledged,
    /// and the DUT's ACK bound for anything sent otherwise (a raw or replayed record, [REL-6]:
    /// 100 ms) has passed since the last frame the tester sent, with [`SETTLE_SLACK`] for the
    /// link. Returns the messages that arrived meanwhile (heartbeats left out); an ACK sent late
    /// but legally is not mistaken for an answer to a later stimulus.
    pub fn settle(&mut self, timeout: Duration) -> Result<Vec<Message>, StepError> {
        let end = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            let quiet_at = self
                .last_sent
                .get()
                .map_or(now, |t| t + ACK_BOUND + SETTLE_SLACK);
            if self.unacked.is_empty() && now >= quiet_at {
                break;
            }
            if now >= end {
                return Err(StepError::Timeout(
                    timeout,
                    format!(
                        "ACKs of the tester's reliable messages {:?}",
                        self.unacked.keys().collect::<Vec<_>>()
                    ),
                ));
            }
            let wait = if self.unacked.is_empty() {
                quiet_at.saturating_duration_since(now)
            } else {
                end.saturating_duration_since(now)
            };
            self.pump(wait.max(Duration::from_millis(1)))?;
        }
        Ok(self
            .inbox
            .drain(..)
            .filter(|m| !matches!(m.body, MsgBody::Heartbeat))
            .collect())
    }

    /// Send a message; reliable bodies get the next rseq (returned), others rseq 0.
    pub fn send(&mut self, body: MsgBody, reliable: bool) -> Result<u32, StepError> {
        let rseq = if reliable {
            let r = self.next_rseq;
            self.next_rseq += 1;
            r
        } else {
            0
        };
        let msg = Message { rseq, body };
        let frame = self.seal(&msg);
        self.send_raw(&frame)?;
        if rseq > 0 {
            self.unacked.insert(rseq, (msg.to_vec(), Instant::now()));
        }
        Ok(rseq)
    }

    /// Send a message with a chosen rseq (for ordering tests); not retransmitted.
    pub fn send_with_rseq(&mut self, rseq: u32, body: MsgBody) -> Result<(), StepError> {
        let frame = self.seal(&Message { rseq, body });
        self.send_raw(&frame)
    }

    /// Send a reliable message (control messages are always reliable).
    pub fn send_reliable(&mut self, body: MsgBody) -> Result<u32, StepError> {
        self.send(body, true)
    }

    fn retransmit_due(&mut self) -> Result<(), StepError> {
        let now = Instant::now();
        let due: Vec<u32> = self
            .unacked
            .iter()
            .filter(|(_, (_, t))| now.duration_since(*t) > Duration::from_millis(300))
            .map(|(r, _)| *r)
            .collect();
        for r in due {
            if let Some((pt, t)) = self.unacked.get_mut(&r) {
                *t = now;
                let pt = pt.clone();
                let seq = self.tx_seq;
                self.tx_seq += 1;
                let ct = self.tx.seal(self.remote_id, seq, &pt);
                let f = Frame {
                    conn_id: self.remote_id,
                    body: Body::Record {
                        epoch: self.tx.epoch,
                        seq,
                        ciphertext: ct,
                    },
                }
                .to_vec();
                if let Some(hs3) = self.hs3.clone() {
                    self.send_raw(&hs3)?;
                }
                self.send_raw(&f)?;
            }
        }
        Ok(())
    }

    /// Receive the next raw frame from the DUT (`None` on timeout).
    pub fn recv_raw(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, StepError> {
        if let Some(f) = self.preload.pop_front() {
            return Ok(Some(f));
        }
        Ok(self.link.recv(timeout)?)
    }

    /// Pump the socket for up to `timeout`: decrypt records, acknowledge and order reliable
    /// messages, and queue every message (heartbeats and ACKs included) in the inbox.
    /// Returns whether anything arrived.
    pub fn pump(&mut self, timeout: Duration) -> Result<bool, StepError> {
        self.retransmit_due()?;
        let Some(raw) = self.recv_raw(timeout.min(Duration::from_millis(100)))? else {
            return Ok(false);
        };
        let arrived = Instant::now();
        let Ok(frame) = Frame::parse(&raw) else {
            self.non_records.push(raw);
            return Ok(true);
        };
        let Body::Record {
            epoch,
            seq,
            ciphertext,
        } = &frame.body
        else {
            self.non_records.push(raw);
            return Ok(true);
        };
        if frame.conn_id != self.local_id {
            self.non_records.push(raw);
            return Ok(true);
        }
        let key = if *epoch == self.rx.epoch {
            Some(self.rx.clone())
        } else if *epoch == self.rx.epoch.wrapping_add(1) {
            Some(self.rx.rekeyed())
        } else {
            self.rx_prev.clone().filter(|k| k.epoch == *epoch)
        };
        let opened = key
            .as_ref()
            .and_then(|k| k.open(self.local_id, *seq, ciphertext).ok());
        self.records.push(RecordSeen {
            from_dut: true,
            epoch: *epoch,
            seq: *seq,
            frame: raw.clone(),
            authentic: opened.is_some(),
        });
        let Some(pt) = opened else {
            return Ok(true);
        };
        if let Some(k) = key {
            if k.epoch != self.rx.epoch && k.epoch == self.rx.epoch.wrapping_add(1) {
                self.rx_prev = Some(std::mem::replace(&mut self.rx, k));
            }
        }
        self.hs3 = None;
        if self.replay.check(*seq) != ReplayVerdict::Fresh {
            return Ok(true); // the DUT repeated a nonce; checks read `records`
        }
        self.replay.commit(*seq);
        let Ok(msg) = Message::parse(&pt) else {
            return Ok(true);
        };
        if let MsgBody::Ack { next_expected } = msg.body {
            self.unacked.retain(|r, _| *r >= next_expected);
        }
        if let MsgBody::TimeRequest { sync_id, t1 } = msg.body {
            if let Some(clock) = self.clock {
                let t2 = clock.at(arrived);
                let t3 = clock.now_us();
                self.send(
                    MsgBody::TimeResponse {
                        sync_id,
                        t1,
                        t2,
                        t3,
                    },
                    false,
                )?;
            }
        }
        if matches!(
            msg.body,
            MsgBody::TimeRequest { .. } | MsgBody::TimeResponse { .. }
        ) {
            self.time_log.push((arrived, msg.body));
            return Ok(true);
        }
        if msg.rseq == 0 {
            self.inbox.push_back(msg);
            return Ok(true);
        }
        // Reliable: order and acknowledge.
        if msg.rseq == self.rx_next {
            self.inbox.push_back(msg);
            self.rx_next += 1;
            while let Some(b) = self.rx_buf.remove(&self.rx_next) {
                self.inbox.push_back(Message {
                    rseq: self.rx_next,
                    body: b,
                });
                self.rx_next += 1;
            }
        } else if msg.rseq > self.rx_next {
            self.rx_buf.insert(msg.rseq, msg.body);
        }
        if self.auto_ack {
            let ack = self.rx_next;
            self.send(MsgBody::Ack { next_expected: ack }, false)?;
        }
        Ok(true)
    }

    /// Wait for a message whose body satisfies `pred`; others stay in the inbox for later
    /// `expect` calls (heartbeats and ACKs are discarded).
    pub fn expect(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&MsgBody) -> bool,
    ) -> Result<Message, StepError> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(i) = self.inbox.iter().position(|m| pred(&m.body)) {
                if let Some(m) = self.inbox.remove(i) {
                    return Ok(m);
                }
            }
            self.inbox
                .retain(|m| !matches!(m.body, MsgBody::Heartbeat | MsgBody::Ack { .. }));
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StepError::Timeout(timeout, what.to_string()));
            }
            self.pump(left)?;
        }
    }

    /// Wait for the DUT's TIME_RESPONSE with `sync_id`; returns when it arrived and the body.
    pub fn expect_time_response(
        &mut self,
        timeout: Duration,
        sync_id: u32,
    ) -> Result<(Instant, MsgBody), StepError> {
        let end = Instant::now() + timeout;
        loop {
            let hit = self.time_log.iter().position(
                |(_, b)| matches!(b, MsgBody::TimeResponse { sync_id: s, .. } if *s == sync_id),
            );
            if let Some(i) = hit {
                return Ok(self.time_log.remove(i));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StepError::Timeout(
                    timeout,
                    format!("TIME_RESPONSE to sync_id {sync_id}"),
                ));
            }
            self.pump(left)?;
        }
    }

    /// Wait for anything for `dur` and return every message that arrived (heartbeats included).
    pub fn collect(&mut self, dur: Duration) -> Result<Vec<(Instant, Message)>, StepError> {
        let end = Instant::now() + dur;
        let mut out = Vec::new();
        loop {
            while let Some(m) = self.inbox.pop_front() {
                out.push((Instant::now(), m));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(out);
            }
            self.pump(left)?;
        }
    }

    /// Keep the connection alive (answer nothing) while waiting `dur`: sends heartbeats every
    /// `every` so the DUT does not declare us lost.
    pub fn idle(&mut self, dur: Duration, every: Duration) -> Result<(), StepError> {
        let end = Instant::now() + dur;
        let mut next_hb = Instant::now();
        while Instant::now() < end {
            if Instant::now() >= next_hb {
                self.send(MsgBody::Heartbeat, false)?;
                next_hb = Instant::now() + every;
            }
            let left = end.saturating_duration_since(Instant::now()).min(every);
            self.pump(left)?;
        }
        Ok(())
    }

    /// Open a session; `Ok(Ok(id))` when accepted, `Ok(Err(code))` when rejected.
    pub fn open_session(
        &mut self,
        service: &str,
        kind: ChannelKind,
        qos: Qos,
    ) -> Result<Result<u32, Code>, StepError> {
        let id = self.next_session;
        self.next_session += 2;
        self.send_reliable(MsgBody::SessionOpen {
            session_id: id,
            kind,
            qos,
            service: service.to_string(),
        })?;
        let t = self.timeout;
        let m = self.expect(t, "SESSION_ACCEPT or SESSION_REJECT", |b| {
            matches!(b, MsgBody::SessionAccept { session_id, .. } | MsgBody::SessionReject { session_id, .. } if *session_id == id)
        })?;
        Ok(match m.body {
            MsgBody::SessionReject { code, .. } => Err(code),
            MsgBody::SessionAccept { max_message, .. } => {
                self.accepted.insert(id, max_message as usize);
                Ok(id)
            }
            _ => Ok(id),
        })
    }

    /// The largest message the tester may send on session `session_id` ([SESS-13]): the
    /// max_message the DUT announced when it accepted the session, capped by the kind's limit
    /// (a DUT may announce more; [SESS-8] bounds what it may announce, SB-SESS cases judge it),
    /// or the kind's limit for a session the DUT opened.
    pub fn max_message(&self, session_id: u32, kind: ChannelKind) -> usize {
        self.accepted
            .get(&session_id)
            .map_or(kind.max_message(), |m| (*m).min(kind.max_message()))
    }

    /// The largest frame the tester may send on this connection ([FRAME-5]): its own link MTU,
    /// and not more than the `max_frame` the DUT announced in its HELLO.
    pub fn max_frame(&self) -> usize {
        let announced = usize::from(self.dut_hello.max_frame);
        if announced == 0 {
            self.mtu
        } else {
            self.mtu.min(announced)
        }
    }

    /// Largest DATA payload per record, so that the record fits [`SecureConn::max_frame`].
    pub fn max_fragment(&self) -> usize {
        self.max_frame()
            .saturating_sub(RECORD_OVERHEAD + DATA_OVERHEAD)
            .max(1)
    }

    /// Send one message on a session, fragmented; reliable unless `kind` is stream.
    pub fn send_data(
        &mut self,
        session_id: u32,
        msg_id: u32,
        data: &[u8],
        kind: ChannelKind,
    ) -> Result<(), StepError> {
        let max = self.max_fragment();
        let count = data.len().div_ceil(max).max(1);
        let count = u16::try_from(count)
            .map_err(|_| StepError::Unexpected("message too large to fragment".into()))?;
        for i in 0..count {
            if kind.is_reliable() {
                self.make_room()?;
            }
            let s = i as usize * max;
            let e = (s + max).min(data.len());
            self.send(
                MsgBody::Data {
                    session_id,
                    msg_id,
                    frag_index: i,
                    frag_count: count,
                    payload: data[s..e].to_vec(),
                },
                kind.is_reliable(),
            )?;
        }
        Ok(())
    }

    /// Stay within the DUT's 64-message receive window ([REL-3]): with 48 reliable messages
    /// unacknowledged, wait (up to the step timeout) until fewer than 16 are. A measurement
    /// calls it before its clock starts, so the wait for ACKs (which may legally come 100 ms
    /// after their message) is never counted in a round trip.
    pub fn make_room(&mut self) -> Result<(), StepError> {
        if self.unacked.len() < 48 {
            return Ok(());
        }
        let end = Instant::now() + self.timeout;
        while self.unacked.len() >= 16 && Instant::now() < end {
            self.pump(Duration::from_millis(50))?;
        }
        Ok(())
    }

    /// Receive one complete message on `session_id` (reassembling fragments).
    pub fn recv_data(&mut self, session_id: u32, timeout: Duration) -> Result<Vec<u8>, StepError> {
        let end = Instant::now() + timeout;
        let mut parts: BTreeMap<(u32, u16), Vec<u8>> = BTreeMap::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let m = self.expect(
                left,
                "DATA",
                |b| matches!(b, MsgBody::Data { session_id: s, .. } if *s == session_id),
            )?;
            if let MsgBody::Data {
                msg_id,
                frag_index,
                frag_count,
                payload,
                ..
            } = m.body
            {
                parts.insert((msg_id, frag_index), payload);
                let have = parts.keys().filter(|(id, _)| *id == msg_id).count();
                if have == frag_count as usize {
                    let data: Vec<u8> = parts
                        .iter()
                        .filter(|((id, _), _)| *id == msg_id)
                        .flat_map(|(_, p)| p.clone())
                        .collect();
                    return Ok(data);
                }
            }
        }
    }

    /// Ask for a permission; returns `(result, grant_id, expires_in_ms)`.
    pub fn request_permission(
        &mut self,
        capability: &str,
        scope: Scope,
        duration_s: u32,
        timeout: Duration,
    ) -> Result<(PermResult, u32, u32), StepError> {
        let req_id = self.next_rseq.wrapping_mul(7919);
        self.send_reliable(MsgBody::PermRequest {
            req_id,
            scope,
            duration_s,
            capability: capability.to_string(),
        })?;
        let m = self.expect(
            timeout,
            "PERM_RESPONSE",
            |b| matches!(b, MsgBody::PermResponse { req_id: r, .. } if *r == req_id),
        )?;
        match m.body {
            MsgBody::PermResponse {
                result,
                grant_id,
                expires_in_ms,
                ..
            } => Ok((result, grant_id, expires_in_ms)),
            _ => Err(StepError::Unexpected("not a PERM_RESPONSE".into())),
        }
    }

    /// Use a capability; returns `(status, result)`.
    pub fn invoke(
        &mut self,
        capability: &str,
        grant_id: u32,
        args: &[u8],
    ) -> Result<(Code, Vec<u8>), StepError> {
        let req_id = self.next_rseq.wrapping_mul(104729);
        self.send_reliable(MsgBody::CapInvoke {
            req_id,
            grant_id,
            capability: capability.to_string(),
            args: args.to_vec(),
        })?;
        let t = self.timeout;
        let m = self.expect(
            t,
            "CAP_RESULT",
            |b| matches!(b, MsgBody::CapResult { req_id: r, .. } if *r == req_id),
        )?;
        match m.body {
            MsgBody::CapResult { status, result, .. } => Ok((status, result)),
            _ => Err(StepError::Unexpected("not a CAP_RESULT".into())),
        }
    }

    /// Rotate our sending key (Noise REKEY).
    pub fn rekey(&mut self) {
        self.tx = self.tx.rekeyed();
    }

    /// Move the connection to a new UDP socket bound to `local` (port 0: any), as a peer that
    /// changes address or link does (spec 12.4); frames still queued on the old socket are lost.
    /// Returns the new local address.
    pub fn rebind(&mut self, local: SocketAddr) -> Result<SocketAddr, StepError> {
        let dut = self.link.peer_ip_addr().ok_or_else(|| {
            StepError::Io(format!("cannot rebind a {} link", self.link.transport()))
        })?;
        let link = UdpLink::bind(local, dut)?;
        let addr = link
            .local_ip_addr()
            .ok_or_else(|| StepError::Io("the new socket has no address".into()))?;
        self.link = Arc::new(link);
        Ok(addr)
    }

    /// Messages still waiting in the inbox.
    pub fn inbox(&self) -> impl Iterator<Item = &Message> {
        self.inbox.iter()
    }

    /// The next reliable sequence number the tester expects from the DUT.
    pub fn rx_next(&self) -> u32 {
        self.rx_next
    }

    /// Acknowledge everything received in order so far (for cases that set `auto_ack` off);
    /// returns the `next_expected` sent.
    pub fn ack_now(&mut self) -> Result<u32, StepError> {
        let ack = self.rx_next;
        self.send(MsgBody::Ack { next_expected: ack }, false)?;
        Ok(ack)
    }

    /// The tester's local address of this connection.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.link.local_ip_addr()
    }
}
