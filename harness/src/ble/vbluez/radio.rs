//! The radio socket: one Unix stream connection per virtual peripheral, speaking
//! `softbus::link::ble::radio` (JSON lines). A session's messages go to [`Core`]; closing the
//! socket is powering the peripheral off.

use std::collections::BTreeMap;
use std::sync::Arc;

use softbus::link::ble::radio::RadioMsg;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use super::core::{Advert, Core};

/// Accepts peripherals until the listener fails.
pub async fn serve(core: Arc<Core>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(session(Arc::clone(&core), stream));
            }
            Err(e) => {
                eprintln!("vbluez: radio socket: {e}");
                return;
            }
        }
    }
}

fn unhex(what: &str, s: &str) -> Option<Vec<u8>> {
    match hex::decode(s) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("vbluez: radio: {what} is not hex ({e}): {s:?}");
            None
        }
    }
}

async fn session(core: Arc<Core>, stream: UnixStream) {
    let id = core.next_id();
    let (r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<RadioMsg>();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if w.write_all(m.to_line().as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(r).lines();
    let mut addr: Option<String> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let msg = match RadioMsg::from_line(&line) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("vbluez: radio session {id}: {e}");
                continue;
            }
        };
        if core.cfg.trace {
            eprintln!("vbluez: radio {id} -> air: {}", line.trim());
        }
        match msg {
            RadioMsg::Advertise {
                address,
                name,
                service_uuids,
                service_data,
                services,
            } => {
                let address = address.to_ascii_uppercase();
                if let Some(old) = addr.as_ref().filter(|a| **a != address) {
                    core.power_off(id, old);
                }
                let mut data = BTreeMap::new();
                for (uuid, hexdata) in service_data {
                    if let Some(b) = unhex("service data", &hexdata) {
                        data.insert(uuid.to_ascii_lowercase(), b);
                    }
                }
                let uuids = service_uuids
                    .iter()
                    .map(|u| u.to_ascii_lowercase())
                    .collect();
                let advert = Advert {
                    address: address.clone(),
                    name,
                    uuids,
                    service_data: data,
                    services,
                };
                core.advertise(id, &tx, advert).await;
                addr = Some(address);
            }
            RadioMsg::Notify { char_uuid, data } => match (&addr, unhex("notification", &data)) {
                (Some(a), Some(b)) => core.peripheral_notify(id, a, char_uuid, b),
                (None, _) => eprintln!("vbluez: radio session {id}: notify before advertise"),
                _ => {}
            },
            RadioMsg::Disconnect => {
                if let Some(a) = &addr {
                    core.peripheral_disconnect(id, a);
                }
            }
            other => eprintln!(
                "vbluez: radio session {id}: {:?} is a radio-to-peripheral message; ignored",
                other
            ),
        }
    }
    if let Some(a) = addr {
        core.power_off(id, &a);
    }
    writer.abort();
}
