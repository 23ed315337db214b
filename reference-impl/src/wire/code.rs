//! The error and close code table (spec section 13), shared by HANDSHAKE_REJECT, PAIR_RESULT,
//! CLOSE, ERROR, SESSION_REJECT, SESSION_CLOSE and CAP_RESULT.

use std::fmt;

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr, $wire:literal;)*) => {
        /// An error or close code as it appears on the wire (u16).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($(#[$doc])* $name,)*
            /// A value not in the table; receivers treat it as PROTOCOL_VIOLATION.
            Unassigned(u16),
        }

        impl Code {
            /// Every assigned code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$name,)*];

            /// The wire value.
            pub fn to_u16(self) -> u16 {
                match self {
                    $(Code::$name => $value,)*
                    Code::Unassigned(v) => v,
                }
            }

            /// Decode a wire value (never fails: unknown values are kept as `Unassigned`).
            pub fn from_u16(v: u16) -> Code {
                match v {
                    $($value => Code::$name,)*
                    other => Code::Unassigned(other),
                }
            }

            /// The name used in the spec, e.g. `UNKNOWN_PEER`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Code::$name => $wire,)*
                    Code::Unassigned(_) => "UNASSIGNED",
                }
            }

            /// Parse a spec name such as `NORMAL_CLOSE` (used by the control protocol).
            pub fn from_name(name: &str) -> Option<Code> {
                match name {
                    $($wire => Some(Code::$name),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// Success.
    Ok = 0, "OK";
    /// The peer broke a protocol rule.
    ProtocolViolation = 1, "PROTOCOL_VIOLATION";
    /// A message could not be parsed.
    Malformed = 2, "MALFORMED";
    /// The protocol version is not supported.
    UnsupportedVersion = 3, "UNSUPPORTED_VERSION";
    /// The peer's static key is not pinned in the trust store.
    UnknownPeer = 4, "UNKNOWN_PEER";
    /// PIN pairing failed (wrong PIN or bad confirmation).
    PairingFailed = 5, "PAIRING_FAILED";
    /// Too many failed pairing attempts; locked out.
    RateLimited = 6, "RATE_LIMITED";
    /// No such service.
    UnknownService = 7, "UNKNOWN_SERVICE";
    /// A message exceeded the channel's size limit.
    MessageTooLarge = 8, "MESSAGE_TOO_LARGE";
    /// The capability use is not covered by a valid grant.
    PermissionDenied = 9, "PERMISSION_DENIED";
    /// The user did not answer the permission prompt in time.
    PromptTimeout = 10, "PROMPT_TIMEOUT";
    /// No such capability.
    UnknownCapability = 11, "UNKNOWN_CAPABILITY";
    /// The grant was revoked.
    GrantRevoked = 12, "GRANT_REVOKED";
    /// The grant expired.
    GrantExpired = 13, "GRANT_EXPIRED";
    /// The peer stopped answering.
    PeerLost = 14, "PEER_LOST";
    /// Orderly close by the application.
    NormalClose = 15, "NORMAL_CLOSE";
    /// The per-connection session limit was reached.
    TooManySessions = 16, "TOO_MANY_SESSIONS";
    /// The session ID is not open.
    UnknownSession = 17, "UNKNOWN_SESSION";
    /// The device failed internally.
    Internal = 18, "INTERNAL";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Code::Unassigned(v) => write!(f, "UNASSIGNED({v})"),
            c => write!(f, "{}({})", c.name(), c.to_u16()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_by_value_and_name() {
        for &c in Code::ALL {
            assert_eq!(Code::from_u16(c.to_u16()), c);
            assert_eq!(Code::from_name(c.name()), Some(c));
        }
        assert_eq!(Code::from_u16(999), Code::Unassigned(999));
        assert_eq!(Code::ALL.len(), 19);
    }
}
