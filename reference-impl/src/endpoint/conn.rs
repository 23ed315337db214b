//! Per-connection state: the handshake typestate ([`ConnState`]), the keys, replay window and
//! reliable-delivery state of an established connection ([`Secure`]), and its sessions.

use super::*;

pub(super) enum ConnState {
    /// Initiator sent HANDSHAKE_1.
    AwaitHs2 {
        hs: Box<snow::HandshakeState>,
        hs1: Vec<u8>,
        tries: u32,
        retry_at: Instant,
    },
    /// Responder sent HANDSHAKE_2.
    AwaitHs3 {
        hs: Box<snow::HandshakeState>,
        hs2: Vec<u8>,
        deadline: Instant,
    },
    /// Keys are split; records flow.
    Established(Box<Secure>),
}

pub(super) struct Secure {
    pub(super) peer: DeviceId,
    pub(super) peer_hb: Duration,
    /// The largest frame the peer accepts (its HELLO max_frame).
    pub(super) peer_max_frame: usize,
    pub(super) tx: RecordKey,
    pub(super) rx: RecordKey,
    pub(super) rx_prev: Option<(RecordKey, Instant)>,
    pub(super) tx_seq: u64,
    pub(super) replay: ReplayWindow,
    /// The initiator repeats HANDSHAKE_3 until the first record arrives from the responder.
    pub(super) hs3: Option<Vec<u8>>,
    pub(super) next_rseq: u32,
    pub(super) unacked: BTreeMap<u32, Pending>,
    pub(super) queue: BTreeMap<std::cmp::Reverse<Qos>, VecDeque<MsgBody>>,
    pub(super) rx_next: u32,
    pub(super) rx_buf: BTreeMap<u32, MsgBody>,
    /// ACKs waiting for their time ([`Timing::ack_delay`]): when, and the next_expected they
    /// carry (the value after handling their message).
    pub(super) acks_due: VecDeque<(Instant, u32)>,
    pub(super) sessions: BTreeMap<u32, Session>,
    pub(super) next_session: u32,
    /// Clock synchronization with the peer and timed messages waiting (spec 17).
    pub(super) time: ConnTime,
}

pub(super) struct Pending {
    pub(super) plaintext: Vec<u8>,
    pub(super) next_send: Instant,
    pub(super) rto: Duration,
    pub(super) tries: u32,
}

pub(super) struct Conn {
    pub(super) local_id: u32,
    pub(super) remote_id: u32,
    pub(super) addr: LinkAddr,
    pub(super) initiator: bool,
    pub(super) state: ConnState,
    pub(super) last_tx: Instant,
    pub(super) last_rx: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SessionState {
    Opening,
    Open,
}

pub(super) struct Session {
    /// The peer opened it: we provide the service.
    pub(super) inbound: bool,
    /// The max_message the peer announced in SESSION_ACCEPT (sessions we opened).
    pub(super) peer_max_message: Option<usize>,
    /// The largest message we take on it: the max_message we announced when we accepted it,
    /// the kind's limit when we opened it ([SESS-13], [SESS-14]).
    pub(super) max_message: usize,
    pub(super) kind: ChannelKind,
    pub(super) qos: Qos,
    pub(super) service: String,
    pub(super) state: SessionState,
    pub(super) next_msg_id: u32,
    pub(super) reassembly: BTreeMap<u32, Reassembly>,
    pub(super) last_stream_delivered: Option<u32>,
}

pub(super) struct Reassembly {
    pub(super) frag_count: u16,
    pub(super) parts: BTreeMap<u16, Vec<u8>>,
    pub(super) size: usize,
}
