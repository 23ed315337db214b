//! [`SerialAddr`]: where a serial device is, as a configuration names it: a local device path,
//! or a port an access server (ser2net) shares over TCP, raw (`tcp://host:port`) or with Telnet
//! and RFC 2217 port control (`rfc2217://host:port`).

use std::fmt;

/// A serial device's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SerialAddr {
    /// A local device (`/dev/ttyUSB0`, `/dev/pts/3`), used as written.
    Local(String),
    /// A raw TCP port whose bytes are the line's bytes (ser2net accepter `tcp,PORT`); the
    /// server sets the line, so the baud rate is the server's.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Telnet with COM-PORT-OPTION (ser2net accepter `telnet(rfc2217),tcp,PORT`): the client
    /// sets the baud rate, data bits, parity and stop bits when it opens the port.
    Rfc2217 {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
}

/// Why an address does not parse; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address:?} {problem}; write a device path (\"/dev/ttyUSB0\"), \"tcp://HOST:PORT\" or \"rfc2217://HOST:PORT\"")]
pub struct AddrError {
    /// The address as given.
    pub address: String,
    /// What is wrong with it.
    pub problem: String,
}

impl SerialAddr {
    /// Parses an address: `tcp://HOST:PORT`, `rfc2217://HOST:PORT` (an IPv6 host in brackets,
    /// `[::1]:2000`), or anything else without `://` as a local path.
    pub fn parse(address: &str) -> Result<SerialAddr, AddrError> {
        let err = |problem: &str| AddrError {
            address: address.to_string(),
            problem: problem.to_string(),
        };
        if address.trim().is_empty() {
            return Err(err("is empty"));
        }
        let Some((scheme, rest)) = address.split_once("://") else {
            return Ok(SerialAddr::Local(address.to_string()));
        };
        let remote = matches!(scheme, "tcp" | "rfc2217");
        if !remote {
            return Err(err(&format!("has an unknown scheme {scheme:?}")));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(err("has a path or query after HOST:PORT"));
        }
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| err("has no port (HOST:PORT)"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .ok_or_else(|| err("has an IPv6 host without its closing ']'"))?,
            None if host.contains(':') => {
                return Err(err("has an IPv6 host not in brackets (\"[::1]:2000\")"))
            }
            None => host,
        };
        if host.is_empty() {
            return Err(err("has no host"));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => {
                return Err(err(&format!(
                    "has port {port:?}, not a number in 1..=65535"
                )))
            }
        };
        let host = host.to_string();
        Ok(if scheme == "tcp" {
            SerialAddr::Tcp { host, port }
        } else {
            SerialAddr::Rfc2217 { host, port }
        })
    }

    /// Whether the device is reached over the network.
    pub fn is_remote(&self) -> bool {
        !matches!(self, SerialAddr::Local(_))
    }

    /// `host:port` for a remote address, in the form `ToSocketAddrs` takes.
    pub fn host_port(&self) -> Option<String> {
        match self {
            SerialAddr::Local(_) => None,
            SerialAddr::Tcp { host, port } | SerialAddr::Rfc2217 { host, port } => {
                Some(if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                })
            }
        }
    }
}

impl fmt::Display for SerialAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerialAddr::Local(path) => f.write_str(path),
            SerialAddr::Tcp { .. } => write!(f, "tcp://{}", self.host_port().unwrap_or_default()),
            SerialAddr::Rfc2217 { .. } => {
                write!(f, "rfc2217://{}", self.host_port().unwrap_or_default())
            }
        }
    }
}

impl std::str::FromStr for SerialAddr {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<SerialAddr, AddrError> {
        SerialAddr::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<SerialAddr, &str>) {
        let got = SerialAddr::parse(input);
        match expect {
            Ok(addr) => {
                assert_eq!(got, Ok(addr.clone()), "{input}");
                assert_eq!(addr.to_string(), input.trim_end_matches('/'), "round trip");
            }
            Err(problem) => assert_eq!(got.unwrap_err().problem, problem, "{input}"),
        }
    }

    #[test]
    fn parses_paths_and_both_url_forms() {
        check("/dev/ttyUSB0", Ok(SerialAddr::Local("/dev/ttyUSB0".into())));
        check("COM3", Ok(SerialAddr::Local("COM3".into())));
        let (host, port) = ("lab-host-3".to_string(), 3001);
        check("tcp://lab-host-3:3001", Ok(SerialAddr::Tcp { host, port }));
        let (host, port) = ("::1".to_string(), 2000);
        check(
            "rfc2217://[::1]:2000/",
            Ok(SerialAddr::Rfc2217 { host, port }),
        );
        let addr = SerialAddr::parse("rfc2217://10.0.0.7:4001").unwrap();
        assert!(addr.is_remote());
        assert_eq!(addr.host_port().as_deref(), Some("10.0.0.7:4001"));
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        check("", Err("is empty"));
        check("telnet://h:1", Err("has an unknown scheme \"telnet\""));
        check("tcp://host", Err("has no port (HOST:PORT)"));
        check("tcp://:2000", Err("has no host"));
        check(
            "tcp://h:0",
            Err("has port \"0\", not a number in 1..=65535"),
        );
        check(
            "tcp://h:70000",
            Err("has port \"70000\", not a number in 1..=65535"),
        );
        check(
            "rfc2217://::1:2000",
            Err("has an IPv6 host not in brackets (\"[::1]:2000\")"),
        );
        check(
            "rfc2217://[::1:2000",
            Err("has an IPv6 host without its closing ']'"),
        );
        check(
            "tcp://h:1/ttyUSB0",
            Err("has a path or query after HOST:PORT"),
        );
        let e = SerialAddr::parse("tcp://h").unwrap_err().to_string();
        assert!(
            e.contains("\"tcp://HOST:PORT\" or \"rfc2217://HOST:PORT\""),
            "{e}"
        );
    }
}
