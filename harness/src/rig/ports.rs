//! Port allocation for virtual DUTs: port 0 in the rig becomes a free port, found by binding
//! real sockets (so it lives apart from the schema, which does no I/O).

use super::schema::{ControlEndpoint, Dut, DutKind};
use super::RigError;
use std::net::{TcpListener, UdpSocket};

impl Dut {
    /// A copy with every port 0 (on a virtual DUT) replaced by a currently free port:
    /// `udp.port` and `discovery.port` from UDP, `tcp.port` and the control address from TCP.
    /// All are distinct. An external DUT is returned unchanged.
    ///
    /// There is a window between allocation and the DUT binding the port in which another
    /// process could take it; launch the DUT promptly.
    pub fn allocate_ports(&self) -> Result<Dut, RigError> {
        let mut out = self.clone();
        if self.kind != DutKind::Virtual {
            return Ok(out);
        }
        // Keep every probe socket open until all are chosen so the ports are distinct.
        let mut held_udp: Vec<UdpSocket> = Vec::new();
        let mut held_tcp: Vec<TcpListener> = Vec::new();
        let err = |key: &str, host: &str, source| RigError::PortAllocation {
            dut: self.name.clone(),
            key: key.to_owned(),
            host: host.to_owned(),
            source,
        };
        if let Some(udp) = out.udp.as_mut().filter(|e| e.port == 0) {
            let s = UdpSocket::bind((udp.host.as_str(), 0))
                .map_err(|e| err("udp.port", &udp.host, e))?;
            udp.port = s
                .local_addr()
                .map_err(|e| err("udp.port", &udp.host, e))?
                .port();
            held_udp.push(s);
        }
        if let Some(tcp) = out.tcp.as_mut().filter(|e| e.port == 0) {
            let s = TcpListener::bind((tcp.host.as_str(), 0))
                .map_err(|e| err("tcp.port", &tcp.host, e))?;
            tcp.port = s
                .local_addr()
                .map_err(|e| err("tcp.port", &tcp.host, e))?
                .port();
            held_tcp.push(s);
        }
        if let Some(disc) = out.discovery.as_mut().filter(|d| d.port == 0) {
            let s =
                UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| err("discovery.port", "0.0.0.0", e))?;
            disc.port = s
                .local_addr()
                .map_err(|e| err("discovery.port", "0.0.0.0", e))?
                .port();
            held_udp.push(s);
        }
        if let Ok(ControlEndpoint::Tcp(mut ep)) = out.control.endpoint() {
            if ep.port == 0 {
                let s = TcpListener::bind((ep.host.as_str(), 0))
                    .map_err(|e| err("control.address", &ep.host, e))?;
                ep.port = s
                    .local_addr()
                    .map_err(|e| err("control.address", &ep.host, e))?
                    .port();
                held_tcp.push(s);
                out.control.address = Some(ep.to_string());
            }
        }
        drop(held_udp);
        drop(held_tcp);
        Ok(out)
    }
}
