//! SoftBus over UDP: one socket, datagrams from anyone but the DUT ignored.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{DatagramLink, LinkError, Transport};

/// Largest UDP payload over IPv4.
const UDP_MAX: usize = 65_507;

/// A UDP socket towards one DUT address.
#[derive(Debug)]
pub struct UdpLink {
    sock: UdpSocket,
    dut: SocketAddr,
    buf: Mutex<Vec<u8>>,
}

impl UdpLink {
    /// Binds `local` (port 0 for any) to talk to `dut`.
    pub fn bind(local: SocketAddr, dut: SocketAddr) -> Result<UdpLink, LinkError> {
        Ok(UdpLink {
            sock: UdpSocket::bind(local)?,
            dut,
            buf: Mutex::new(vec![0u8; 65_536]),
        })
    }

    /// The DUT's address.
    pub fn dut(&self) -> SocketAddr {
        self.dut
    }
}

impl DatagramLink for UdpLink {
    fn send(&self, datagram: &[u8]) -> Result<(), LinkError> {
        self.sock.send_to(datagram, self.dut)?;
        Ok(())
    }

    fn recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>, LinkError> {
        let end = Instant::now() + timeout;
        let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let left = end.saturating_duration_since(Instant::now());
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) if from == self.dut => return Ok(Some(buf[..n].to_vec())),
                Ok(_) if Instant::now() < end => continue,
                Ok(_) => return Ok(None),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn max_datagram(&self) -> usize {
        UDP_MAX
    }

    fn transport(&self) -> Transport {
        Transport::Udp
    }

    fn peer(&self) -> String {
        self.dut.to_string()
    }

    fn local_ip_addr(&self) -> Option<SocketAddr> {
        self.sock.local_addr().ok()
    }

    fn peer_ip_addr(&self) -> Option<SocketAddr> {
        Some(self.dut)
    }
}
