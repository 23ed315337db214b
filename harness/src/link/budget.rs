//! A time budget for everything one case does on a link.
//!
//! Every step of a case has its own timeout, but a DUT that answers just slowly enough, or a
//! link that crawls, can make a case's many steps add up to hours. [`Budgeted`] wraps the link a
//! case uses: once the case's deadline has passed, every send and receive fails with
//! [`LinkError::OverBudget`], the case ends (INCONC, naming the budget) and the run goes on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::trace::Traced;
use super::{DatagramLink, LinkError, LinkStats, Transport};

/// A link whose use ends at a deadline.
pub struct Budgeted {
    inner: Arc<dyn DatagramLink>,
    deadline: Instant,
    budget: Duration,
}

impl Budgeted {
    /// `inner`, usable until `deadline`; `budget` is what the deadline was set from (for the
    /// error message).
    pub fn new(inner: Arc<dyn DatagramLink>, deadline: Instant, budget: Duration) -> Budgeted {
        Budgeted {
            inner,
            deadline,
            budget,
        }
    }

    fn check(&self) -> Result<Duration, LinkError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LinkError::OverBudget(format!(
                "the case used up its time budget of {:?} (PIXIT case_timeout_ms)",
                self.budget
            )));
        }
        Ok(left)
    }
}

impl DatagramLink for Budgeted {
    fn send(&self, datagram: &[u8]) -> Result<(), LinkError> {
        self.check()?;
        self.inner.send(datagram)
    }

    fn recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>, LinkError> {
        let left = self.check()?;
        self.inner.recv(timeout.min(left))
    }

    fn max_datagram(&self) -> usize {
        self.inner.max_datagram()
    }

    fn transport(&self) -> Transport {
        self.inner.transport()
    }

    fn peer(&self) -> String {
        self.inner.peer()
    }

    fn local_ip_addr(&self) -> Option<SocketAddr> {
        self.inner.local_ip_addr()
    }

    fn peer_ip_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_ip_addr()
    }

    fn discarded(&self) -> u64 {
        self.inner.discarded()
    }

    fn send_packet(&self, packet: &[u8]) -> Result<(), LinkError> {
        self.check()?;
        self.inner.send_packet(packet)
    }

    fn send_misaddressed(&self, packet: &[u8]) -> Result<bool, LinkError> {
        self.check()?;
        self.inner.send_misaddressed(packet)
    }

    fn stats(&self) -> LinkStats {
        self.inner.stats()
    }

    fn advert(&self) -> Option<Vec<u8>> {
        self.inner.advert()
    }

    fn take_trace(&self) -> Vec<Traced> {
        self.inner.take_trace()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::udp::UdpLink;

    #[test]
    fn a_spent_budget_fails_every_step_and_a_live_one_caps_waits() {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inner: Arc<dyn DatagramLink> = Arc::new(
            UdpLink::bind("127.0.0.1:0".parse().unwrap(), peer.local_addr().unwrap()).unwrap(),
        );
        let live = Budgeted::new(
            inner.clone(),
            Instant::now() + Duration::from_millis(50),
            Duration::from_millis(50),
        );
        live.send(b"x").unwrap();
        let started = Instant::now();
        assert_eq!(live.recv(Duration::from_secs(30)).unwrap(), None);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the wait was capped"
        );
        let spent = Budgeted::new(inner, Instant::now(), Duration::from_secs(1));
        assert!(matches!(spent.send(b"x"), Err(LinkError::OverBudget(_))));
        assert!(matches!(
            spent.recv(Duration::from_millis(1)),
            Err(LinkError::OverBudget(_))
        ));
    }
}
