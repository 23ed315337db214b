//! Bringing a Z-Stack stick up the way Z-Stack 3.x hosts (zigpy-znp, Zigbee2MQTT) do: ping it,
//! soft-reset it (which also forgets endpoints a previous host registered), start the network it
//! has in NV, wait until it is on it, then register the host's endpoint. Protocol-neutral: the
//! bridge, the reference's Zigbee link and the harness's Zigbee radio all start their sticks so.

use std::time::Duration;

use super::commands::{
    status, AfRegisterReq, SysResetInd, SysResetReq, ZdoStartupFromAppReq, ZdoStateChangeInd,
};
use super::{PortError, ZnpPort};

/// `AF_REGISTER` status for an endpoint that is already registered.
const APS_DUPLICATE_ENTRY: u8 = 0xB8;

/// A Z-Stack stick could not be brought up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Talking to it failed.
    #[error("{step}: {cause}")]
    Port {
        /// What was being done.
        step: &'static str,
        /// Why it failed (part of the message, so not a separate `source`).
        cause: PortError,
    },
    /// It refused the endpoint.
    #[error("AF_REGISTER of endpoint {endpoint} refused with status {status:#04x}")]
    Register {
        /// The endpoint.
        endpoint: u8,
        /// Z-Stack's status.
        status: u8,
    },
}

/// Opens the Z-Stack stick at `path` and brings it up the way Z-Stack 3.x hosts do (see the
/// module docs): ping it (thrice at most), soft-reset it, start the network it has in NV, wait
/// for a `ZDO_STATE_CHANGE_IND` to one of `started` (the coordinator's state for the bridge; a
/// router's or the coordinator's for the Zigbee link), then register `endpoint`. `timeout`
/// bounds each SREQ and each wait; the reset may take five times as long and starting the
/// network ten times. AREQs that arrived meanwhile are dropped. Shared by the bridge's
/// the bridge's `Host` and the Zigbee link (`crate::link::zigbee_driver`), and the harness's Zigbee link.
pub fn start_stick(
    path: &str,
    baud: u32,
    timeout: Duration,
    started: &[u8],
    endpoint: &AfRegisterReq,
) -> Result<ZnpPort, StartError> {
    let step = |step| move |cause| StartError::Port { step, cause };
    let mut port = ZnpPort::open(path, baud).map_err(step("opening the port"))?;
    port.set_timeout(timeout);
    // A stick that has just been plugged in can take a moment to answer: ping up to thrice.
    // (A fragment of an earlier session's output ahead of the SRSP is the decoder's business:
    // it drops it once the line goes quiet, see `decoder::IDLE_GAP`.)
    let mut ping = port.ping();
    for _ in 0..2 {
        if ping.is_ok() {
            break;
        }
        ping = port.ping();
    }
    ping.map_err(step("SYS_PING"))?;
    port.send(&SysResetReq { reset_type: 1 })
        .map_err(step("SYS_RESET_REQ"))?;
    port.wait_for::<SysResetInd>(timeout * 5, |_| true)
        .map_err(step("waiting for SYS_RESET_IND after the reset"))?;
    let version = port.version().map_err(step("SYS_VERSION"))?;
    tracing::info!(
        stick = path,
        product = version.product_id,
        build = ?version.code_revision,
        "Z-Stack stick reset"
    );
    port.call(&ZdoStartupFromAppReq { start_delay: 100 })
        .map_err(step("ZDO_STARTUP_FROM_APP"))?;
    port.wait_for::<ZdoStateChangeInd>(timeout * 10, |i| started.contains(&i.state))
        .map_err(step("waiting for the network to start"))?;
    let reg = port.call(endpoint).map_err(step("AF_REGISTER"))?;
    if reg.status != status::SUCCESS && reg.status != APS_DUPLICATE_ENTRY {
        return Err(StartError::Register {
            endpoint: endpoint.endpoint,
            status: reg.status,
        });
    }
    // Whatever arrived meanwhile (state changes, commissioning notices) is history.
    let _ = port.take_areqs(Duration::ZERO);
    Ok(port)
}
