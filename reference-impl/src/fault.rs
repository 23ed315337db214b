//! Named defects for the suite's self-test (`softbusd --fault NAME`).
//!
//! Each fault breaks exactly one behaviour the spec requires and names the requirement IDs it
//! violates. Certifying the reference with a fault switched on must FAIL, and the failing cases
//! must trace one of those IDs: that is how the suite proves it can catch the defect.

use std::fmt;
use std::str::FromStr;

macro_rules! faults {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $reqs:literal, $desc:literal;)*) => {
        /// One named defect.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Fault {
            $($(#[$doc])* $variant,)*
        }

        impl Fault {
            /// The whole catalogue, in `--fault list` order.
            pub const ALL: &'static [Fault] = &[$(Fault::$variant,)*];

            /// The name given to `--fault`.
            pub fn name(self) -> &'static str {
                match self { $(Fault::$variant => $name,)* }
            }

            /// The requirement IDs this fault violates, comma-separated.
            pub fn requirements(self) -> &'static str {
                match self { $(Fault::$variant => $reqs,)* }
            }

            /// One-line description.
            pub fn description(self) -> &'static str {
                match self { $(Fault::$variant => $desc,)* }
            }
        }
    };
}

faults! {
    /// The replay window is not consulted.
    AcceptReplay = "accept-replay", "REC-6", "accepts a replayed record (anti-replay window disabled)";
    /// The handshake completes with a static key that is not pinned.
    AcceptUnpinned = "accept-unpinned", "HS-5,HS-6", "completes a handshake with an unpinned static key";
    /// Each record sequence number is used twice.
    NonceReuse = "nonce-reuse", "REC-4", "reuses every AES-GCM nonce (record seq) twice";
    /// DATA payloads leave unencrypted.
    PlaintextData = "plaintext-data", "REC-1,REC-3", "sends session data in plaintext with a zero tag";
    /// PERM_REQUEST is granted without asking the user.
    GrantWithoutPrompt = "grant-without-prompt", "PERM-3,PERM-2", "grants every permission request without asking the prompt policy";
    /// Revoked grants keep working.
    IgnoreRevocation = "ignore-revocation", "PERM-15", "keeps honouring a grant after it was revoked";
    /// Expired grants keep working.
    IgnoreExpiry = "ignore-expiry", "PERM-14", "keeps honouring a grant after it expired";
    /// A grant can be used by any paired peer.
    GrantNotBound = "grant-not-bound", "PERM-19", "honours a grant presented by a peer other than its holder";
    /// No heartbeats are sent.
    SkipHeartbeat = "skip-heartbeat", "LIVE-1", "never sends heartbeats";
    /// Peers are never declared lost.
    NoDeviceLoss = "no-device-loss", "LIVE-2", "never declares a silent peer lost";
    /// Wrong PINs are never rate-limited.
    NoPinRateLimit = "no-pin-rate-limit", "PAIR-11", "never rate-limits wrong PIN attempts";
    /// A repeated PAIR_CONFIRM whose PAIR_RESULT was lost is dropped, not answered again.
    PairConfirmRepeatDropped = "pair-confirm-repeat-dropped", "PAIR-17", "drops a repeat of the PAIR_CONFIRM that ended its last pairing instead of repeating the PAIR_RESULT";
    /// The initiator's key confirmation is not checked.
    AcceptWrongPin = "accept-wrong-pin", "PAIR-7,PAIR-9", "pairs even when the initiator's confirmation (PIN) is wrong";
    /// A frame larger than the link MTU crashes the daemon.
    OversizedCrash = "oversized-crash", "FRAME-4,ERR-6", "crashes on a frame larger than the link MTU";
    /// One capability fewer in CAP_LIST than fits.
    CapListDropsLast = "cap-list-drops-last", "CAP-12,CAP-2", "leaves the last capability out of every CAP_LIST, though it fits";
    /// Messages over the channel limit are accepted.
    AcceptOversizedMessage = "accept-oversized-message", "SESS-14,SESS-13", "accepts a message larger than the channel's size limit";
    /// Sessions to services that do not exist are accepted.
    AcceptUnknownService = "accept-unknown-service", "SESS-3", "accepts a session for a service it does not offer";
    /// Reliable messages are delivered in arrival order.
    UnorderedDelivery = "unordered-delivery", "REL-2", "delivers reliable messages in arrival order instead of rseq order";
    /// The advert's device ID does not match its key.
    AdvertMismatch = "advert-mismatch", "ID-2", "advertises a device ID that does not derive from its public key";
    /// TIME_RESPONSE claims the request was held 5 ms longer than it was.
    TimeHoldStamp = "time-hold-stamp", "TIME-4", "stamps its TIME_RESPONSE send time 5 ms after the real one";
    /// The offset estimate has the wrong sign.
    TimeOffsetSign = "time-offset-sign", "TIME-7,TIME-10", "reports and uses the negated offset of each peer's clock";
    /// Timed stream messages are presented however late they arrive.
    PresentLate = "present-late", "TIME-11", "presents timed stream messages that arrive after their presentation time";
    /// TIME_REQUESTs go unanswered.
    TimeNoResponse = "time-no-response", "TIME-3", "never answers a TIME_REQUEST";
    /// Each TIME_RESPONSE is stamped earlier than the one before.
    TimeClockBackwards = "time-clock-backwards", "TIME-1,TIME-4", "stamps each TIME_RESPONSE 20 ms earlier than the previous one";
    /// Requests go out back to back, whatever the level.
    TimeSyncFlood = "time-sync-flood", "TIME-9,TIME-16", "starts a new round of TIME_REQUESTs after every response, ignoring the period";
    /// Only the first round of a synchronization is ever sent.
    TimeNoResync = "time-no-resync", "TIME-17", "sends the first round of TIME_REQUESTs and never re-synchronizes";
    /// Bad TIME input and dropped timed messages are not counted.
    TimeUncounted = "time-uncounted", "TIME-5,TIME-6,TIME-12", "counts no unmatched or inconsistent TIME_RESPONSE and no dropped timed message";
    /// A control line that is not UTF-8 ends the control connection.
    CtrlNonUtf8Hangup = "ctrl-non-utf8-hangup", "CTRL-2,CTRL-1", "closes the control connection, unanswered, on a line that is not UTF-8";
    /// A control line past the bound ends the control connection.
    CtrlLongLineHangup = "ctrl-long-line-hangup", "CTRL-18", "closes the control connection, unanswered, on a line longer than it accepts";
    /// Several cap= filters match when any one kind is there.
    DiscAnyCap = "disc-any-cap", "DISC-5,DISC-6", "answers a discovery request naming several cap= kinds when it has any one of them, not every one";
    /// A lockout refuses only the address that caused it.
    LockoutPerAddress = "lockout-per-address", "PAIR-11", "refuses during a lockout only the PAIR_REQUESTs from the address whose failures caused it";
    /// Every lockout lasts as long as the first.
    LockoutNoDoubling = "lockout-no-doubling", "PAIR-11", "makes each further lockout as long as the first instead of twice the previous one";
    /// Failures count toward a lockout for 5 s only.
    PairFailureWindow5s = "pair-failure-window-5s", "PAIR-11", "enters a lockout only for three failures within 5 s, not within 60 s";
    /// A pending pairing that times out is not a failure.
    PendingTimeoutUncounted = "pending-timeout-uncounted", "PAIR-8,PAIR-11", "counts no failure for a pending pairing abandoned because its 10 s passed";
    /// TIMED_DATA is taken on any session.
    TimedDataAnywhere = "timed-data-anywhere", "TIME-14", "delivers TIMED_DATA on a message session as an ordinary message";
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--fault` named no fault in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault '{0}'; run `softbusd --fault list` for the catalogue")]
pub struct UnknownFault(pub String);

impl FromStr for Fault {
    type Err = UnknownFault;
    fn from_str(s: &str) -> Result<Fault, UnknownFault> {
        Fault::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFault(s.to_string()))
    }
}

/// The catalogue as `softbusd --fault list` prints it: `NAME<TAB>IDS<TAB>description` per line.
pub fn catalogue() -> String {
    Fault::ALL
        .iter()
        .map(|f| format!("{}\t{}\t{}\n", f.name(), f.requirements(), f.description()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_unique_names_and_parses_back() {
        assert!(Fault::ALL.len() >= 12);
        for f in Fault::ALL {
            assert_eq!(f.name().parse::<Fault>(), Ok(*f));
        }
        let lines: Vec<_> = catalogue().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), Fault::ALL.len());
        assert!(lines.iter().all(|l| l.split('\t').count() == 3));
        assert!("no-such".parse::<Fault>().is_err());
    }
}
