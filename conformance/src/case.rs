//! What a conformance case is, and the context it runs in.
//!
//! A case has an ID (`SB-PERM-004`), a title that reads as a requirement, the spec requirement
//! IDs it checks, a PICS expression that must hold for it to run, and a body. The body drives the
//! DUT through the lower tester (the wire) and the upper tester (the control channel), and
//! records verdicts in its [`Ctx`]. A verdict only gets worse as the case runs.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use softbus::wire::msg::Qos;
use softbus_harness::link::budget::Budgeted;
use softbus_harness::link::impair::Impaired;
use softbus_harness::link::Transport;
use softbus_harness::pics::Pics;
use softbus_harness::rig::Pixit;
use softbus_harness::timing::Histogram;
use softbus_harness::verdict::CaseOutcome;

use crate::tester::dut::DutHandle;
use crate::tester::lower::{LowerTester, SecureConn, StepError};
use crate::tester::upper::Upper;

/// The body of a case.
pub type CaseFn = fn(&mut Ctx<'_>) -> Result<(), StepError>;

/// One conformance case.
#[derive(Clone)]
pub struct Case {
    /// Stable ID, e.g. `SB-REC-003`.
    pub id: &'static str,
    /// What the DUT must do, as a sentence.
    pub title: &'static str,
    /// Requirement IDs from the spec this case checks.
    pub requirements: &'static [&'static str],
    /// PICS expression that must hold for the case to run.
    pub pics: &'static str,
    /// PIXIT parameters the case reads.
    pub pixit: &'static [&'static str],
    /// Transport the case runs over: `udp`, `tcp`, `zigbee`, `ble`, or a combination such as
    /// `udp+zigbee` (the tester's link first).
    pub transport: &'static str,
    /// The body.
    pub run: CaseFn,
}

impl Case {
    /// The transport the lower tester uses (the first of a combination).
    pub fn tester_transport(&self) -> Transport {
        match self.transport.split('+').next().unwrap_or("udp") {
            "tcp" => Transport::Tcp,
            "zigbee" => Transport::Zigbee,
            "ble" => Transport::Ble,
            _ => Transport::Udp,
        }
    }

    /// This case run over another link: ID `<ID>@<transport>`, gated by the transport's PICS
    /// (`TRANSPORT_ZIGBEE`, `TRANSPORT_BLE`) on top of its own.
    pub fn over(&self, t: Transport) -> Case {
        // Cases live for the whole process (a static catalogue), so the few strings built
        // here are leaked once rather than threading lifetimes through every report.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        Case {
            id: leak(format!("{}@{t}", self.id)),
            pics: leak(format!(
                "({}) && TRANSPORT_{}",
                self.pics,
                t.as_str().to_ascii_uppercase()
            )),
            transport: t.as_str(),
            ..self.clone()
        }
    }
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .field("title", &self.title)
            .finish()
    }
}

/// Latency measured by a case.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The samples.
    pub histogram: Histogram,
    /// The bound the case judged against.
    pub bound: Duration,
    /// The physical floor of the link, where known.
    pub floor: Option<Duration>,
}

/// Everything a running case can use.
pub struct Ctx<'a> {
    /// The DUT.
    pub dut: &'a mut DutHandle,
    upper: Option<Upper>,
    /// PIXIT of the DUT.
    pub pixit: Pixit,
    /// PICS of the DUT.
    pub pics: Pics,
    /// Seed for every random choice of this case (logged in the report).
    pub seed: u64,
    /// The verdict so far.
    pub outcome: CaseOutcome,
    /// Harness log lines for the evidence.
    pub log: Vec<String>,
    /// Latency figures, if the case measures any.
    pub measured: Option<Measured>,
    /// Session keys of the connections the case opened: (conn id, tx key hex, rx key hex).
    pub keys: Vec<(u32, String, String)>,
    /// Address the lower tester binds to (IP links).
    pub local: SocketAddr,
    /// The link lower testers use.
    pub transport: Transport,
    /// When the case's time budget (PIXIT `case_timeout_ms`) runs out.
    pub deadline: std::time::Instant,
    counter: u64,
    /// The impaired links of this case's lower testers (for [`Ctx::path_losses`]).
    impaired_links: Vec<std::sync::Arc<Impaired>>,
}

impl<'a> Ctx<'a> {
    /// A context for one case run.
    pub fn new(dut: &'a mut DutHandle, pics: Pics, seed: u64, transport: Transport) -> Ctx<'a> {
        let pixit = dut.dut.pixit.clone();
        let case_timeout_ms = pixit.case_timeout_ms;
        let local = if dut.udp.ip().is_loopback() {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        Ctx {
            dut,
            upper: None,
            pixit,
            pics,
            seed,
            outcome: CaseOutcome::new(),
            log: Vec::new(),
            measured: None,
            keys: Vec::new(),
            local,
            transport,
            deadline: std::time::Instant::now() + Duration::from_millis(case_timeout_ms),
            counter: 0,
            impaired_links: Vec::new(),
        }
    }

    /// The per-step timeout (PIXIT `step_timeout_ms`).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.pixit.step_timeout_ms)
    }

    /// A note for the harness log.
    pub fn note(&mut self, line: impl Into<String>) {
        self.log.push(line.into());
    }

    /// The upper tester (connected on first use).
    pub fn upper(&mut self) -> Result<&mut Upper, StepError> {
        if self.upper.is_none() {
            let t = self.timeout();
            self.upper = Some(self.dut.upper(t)?);
        }
        match self.upper.as_mut() {
            Some(u) => Ok(u),
            None => Err(StepError::Io("no control channel".into())),
        }
    }

    /// The control transcript so far.
    pub fn control_transcript(&self) -> Vec<String> {
        self.upper
            .as_ref()
            .map(|u| u.transcript.clone())
            .unwrap_or_default()
    }

    /// Reset the DUT and give it the PIXIT PIN and an approving prompt policy.
    pub fn fresh_dut(&mut self) -> Result<(), StepError> {
        let pin = self.pixit.pin.clone();
        if !self.dut.has_control() {
            // No upper tester: a human does it, or the case cannot run.
            return self.operator(&format!(
                "reset the DUT (forget pairings and grants), set its pairing PIN to {pin} and make it approve permission prompts"
            ));
        }
        let u = self.upper()?;
        u.reset()?;
        u.call(json!({"op": "set_pin", "pin": pin}))?;
        u.call(json!({"op": "set_prompt_policy", "policy": "approve"}))?;
        Ok(())
    }

    /// Set the DUT's prompt policy.
    pub fn prompt_policy(&mut self, policy: &str) -> Result<(), StepError> {
        self.upper()?
            .call(json!({"op": "set_prompt_policy", "policy": policy}))?;
        Ok(())
    }

    /// A lower tester with a fresh identity.
    pub fn lower(&mut self) -> Result<LowerTester, StepError> {
        self.counter += 1;
        let seed = self.seed.wrapping_mul(31).wrapping_add(self.counter);
        let mut rng_seed = [0u8; 32];
        rng_seed[..8].copy_from_slice(&seed.to_le_bytes());
        let timeout = self.timeout();
        let transport = if self.transport == Transport::Tcp {
            Transport::Udp // TCP cases open their own streams; their helpers speak UDP
        } else {
            self.transport
        };
        let mut link = self.dut.link(transport, self.local, timeout)?;
        if let Some(profile) = &self.dut.impair {
            let impaired = std::sync::Arc::new(Impaired::new(link, profile.clone(), seed));
            self.impaired_links.push(impaired.clone());
            link = impaired;
        }
        let budget = Duration::from_millis(self.pixit.case_timeout_ms);
        let link = std::sync::Arc::new(Budgeted::new(link, self.deadline, budget));
        let mut lt = LowerTester::over(
            link,
            softbus::Identity::from_secret(rng_seed),
            seed,
            timeout,
        );
        lt.identity = lt.random_identity();
        lt.lossy = self.dut.impair.is_some();
        Ok(lt)
    }

    /// The impairment on the tester's links (`certify --impair`), if any.
    pub fn impaired(&self) -> Option<&softbus_harness::link::impair::Profile> {
        self.dut.impair.as_ref()
    }

    /// Datagrams the impairment of this case's links has lost so far, both directions (0 on a
    /// clean link): a case can tell whether a stimulus or an answer may have been lost.
    pub fn path_losses(&self) -> u64 {
        self.impaired_links
            .iter()
            .map(|l| {
                let (a, b) = l.shaper_stats();
                a.lost + a.too_long + b.lost + b.too_long
            })
            .sum()
    }

    /// Datagrams the impairment of this case's links has lost, reordered or duplicated so far,
    /// both directions (0 on a clean link).
    pub fn path_disturbances(&self) -> u64 {
        self.impaired_links
            .iter()
            .map(|l| {
                let (a, b) = l.shaper_stats();
                [a, b]
                    .iter()
                    .map(|s| s.lost + s.too_long + s.reordered + s.duplicated)
                    .sum::<u64>()
            })
            .sum()
    }

    /// Preamble: pair `lt` with the DUT using the PIXIT PIN.
    pub fn pair(&mut self, lt: &mut LowerTester) -> Result<(), StepError> {
        let pin = self.pixit.pin.clone();
        let out = lt.pair(&pin, false)?;
        if out.status != softbus::wire::Code::Ok {
            return Err(StepError::Unexpected(format!(
                "preamble: pairing with the PIXIT PIN failed: {}",
                out.status
            )));
        }
        Ok(())
    }

    /// Record a connection's keys for the Wireshark key log.
    pub fn keep_keys(&mut self, c: &SecureConn) {
        self.keys.push((
            c.remote_id,
            hex::encode(c.tx.raw()),
            hex::encode(c.rx.raw()),
        ));
        self.keys
            .push((c.local_id, hex::encode(c.rx.raw()), hex::encode(c.tx.raw())));
    }

    /// Preamble: fresh DUT, a new lower tester paired and connected.
    pub fn connected(&mut self) -> Result<(LowerTester, SecureConn), StepError> {
        self.fresh_dut()?;
        let mut lt = self.lower()?;
        self.pair(&mut lt)?;
        let conn = lt.handshake()?;
        self.keep_keys(&conn);
        Ok((lt, conn))
    }

    /// Preamble: connected, and a session to `service` open.
    pub fn session(
        &mut self,
        service: &str,
        kind: softbus::wire::msg::ChannelKind,
    ) -> Result<(LowerTester, SecureConn, u32), StepError> {
        let (lt, mut c) = self.connected()?;
        match c.open_session(service, kind, Qos::Interactive)? {
            Ok(id) => {
                // The SESSION_OPEN's ACK may legally come after the SESSION_ACCEPT ([REL-6]):
                // wait for it, so the case's first stimulus is not answered by it.
                let t = self.timeout();
                c.settle(t)?;
                Ok((lt, c, id))
            }
            Err(code) => Err(StepError::Unexpected(format!(
                "preamble: session to '{service}' rejected with {code}"
            ))),
        }
    }

    /// The DUT's time partner (PIXIT `time_partner`), launched for this case if it is virtual:
    /// NA when the DUT names none, INCONC when it cannot be started. Dropping the handle stops
    /// it; its log is under `partner/` of the run directory (noted in the harness log).
    pub fn partner(&mut self) -> Result<DutHandle, StepError> {
        match self.dut.launch_partner() {
            None => Err(StepError::NotApplicable(
                "the DUT's PIXIT names no time_partner (a second device presenting the same                  stream)"
                    .into(),
            )),
            Some(Err(e)) => Err(StepError::Unexpected(format!("preamble: {e}"))),
            Some(Ok(h)) => {
                self.note(format!(
                    "time partner '{}' (its log: {})",
                    h.dut.name,
                    h.log_path.display()
                ));
                Ok(h)
            }
        }
    }

    /// The first capability the DUT lists in CAP_LIST (preamble for permission cases).
    pub fn some_capability(&mut self, c: &mut SecureConn) -> Result<String, StepError> {
        use softbus::wire::msg::MsgBody;
        c.send_reliable(MsgBody::CapQuery { req_id: 77 })?;
        let t = self.timeout();
        let m = c.expect(t, "CAP_LIST", |b| {
            matches!(b, MsgBody::CapList { req_id: 77, .. })
        })?;
        let MsgBody::CapList { cbor, .. } = m.body else {
            return Err(StepError::Unexpected("not a CAP_LIST".into()));
        };
        let caps = softbus::capability::decode_list(&cbor)
            .map_err(|e| StepError::Unexpected(e.to_string()))?;
        caps.first()
            .map(|c| c.name.clone())
            .ok_or_else(|| StepError::Unexpected("preamble: the DUT lists no capability".into()))
    }

    /// Check a condition: FAIL naming `requirement` when it does not hold.
    pub fn check(
        &mut self,
        requirement: &str,
        ok: bool,
        expected: impl Into<String>,
        observed: impl Into<String>,
    ) -> bool {
        if !ok {
            self.outcome.fail(requirement, expected, observed);
        }
        ok
    }

    /// A step the DUT must complete: on error, FAIL naming `requirement`.
    pub fn must<T>(
        &mut self,
        requirement: &str,
        expected: &str,
        r: Result<T, StepError>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(StepError::Io(e)) => {
                self.outcome.error(format!("harness I/O error: {e}"));
                None
            }
            Err(e) => {
                self.outcome.fail(requirement, expected, e.to_string());
                None
            }
        }
    }

    /// Ask a human at the terminal to act on the DUT, waiting up to the PIXIT step timeout
    /// (at least 60 s). Without a terminal the step fails at once with "needs operator", which
    /// makes the case INCONC: a run never hangs waiting for a person who is not there.
    pub fn operator(&mut self, action: &str) -> Result<(), StepError> {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            self.note(format!("needs operator: {action}"));
            return Err(StepError::Unexpected(format!(
                "needs operator: the DUT has no control channel and no terminal is attached to {action}"
            )));
        }
        let wait = self.timeout().max(Duration::from_secs(60));
        println!(
            "\n>>> OPERATOR: please {action}, then press Enter (within {} s)",
            wait.as_secs()
        );
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            let _ = tx.send(());
        });
        match rx.recv_timeout(wait) {
            Ok(()) => {
                self.note(format!("operator confirmed: {action}"));
                Ok(())
            }
            Err(_) => Err(StepError::Timeout(
                wait,
                format!("the operator to {action}"),
            )),
        }
    }

    /// The case does not apply to this DUT after all, for a reason only the run can see (the
    /// control channel's transport, say). Replaces any outcome so far.
    pub fn not_applicable(&mut self, reason: impl Into<String>) {
        self.outcome = CaseOutcome::not_applicable(reason);
    }

    /// Mark the case passed (if nothing worse happened).
    pub fn pass(&mut self) {
        self.outcome.pass();
    }
}
