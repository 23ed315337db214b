//! The coordinator stick of a [`Network`] as its one host sees it: the sans-IO face the
//! single-line emulator and the tests drive.

use super::device::DeviceSummary;
use super::network::Network;
use super::{EmulatorConfig, COORDINATOR};
use softbus::link::znp::frame::FrameRepr;
use std::time::Instant;

/// The sans-IO virtual coordinator: the coordinator stick of a [`Network`], as its host sees
/// it. See the module docs.
#[derive(Debug)]
pub struct Coordinator {
    pub(super) net: Network,
}

impl Coordinator {
    /// A coordinator that has just powered up at `now`, with its network formed in NV but not
    /// started (as Z-Stack 3 waits for the host to start commissioning). The nodes of `config`
    /// are on its network too ([`Coordinator::network`]).
    pub fn new(config: EmulatorConfig, now: Instant) -> Coordinator {
        Coordinator {
            net: Network::new(config, now),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EmulatorConfig {
        self.net.config()
    }

    /// The ZDO device state ([`device_state`](softbus::link::znp::commands::device_state)).
    pub fn state(&self) -> u8 {
        self.net.state(COORDINATOR)
    }

    /// The simulated devices.
    pub fn devices(&self) -> Vec<DeviceSummary> {
        self.net.devices()
    }

    /// The whole network, router nodes included.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The whole network, to drive the nodes' sticks too.
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.net
    }

    /// When the next scheduled frame is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.net.poll_timeout(COORDINATOR)
    }

    /// The next frame due at or before `now`, in schedule order.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<FrameRepr> {
        self.net.poll_transmit(COORDINATOR, now)
    }

    /// Handles a frame from the host whose last byte arrived at `now`.
    pub fn handle_frame(&mut self, frame: &FrameRepr, now: Instant) {
        self.net.handle_frame(COORDINATOR, frame, now);
    }
}
