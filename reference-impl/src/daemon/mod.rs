//! The tokio driver behind `softbusd`: sockets, timers, the trust-store file, CoAP discovery and
//! the tester control channel around one sans-IO [`Endpoint`].
//!
//! One task owns the endpoint and serialises everything that touches it (datagrams, timer
//! expiries, control commands, bridge completions), so the core needs no locks. TCP links
//! (`tcp`: a reader and a writer task each, at most [`MAX_TCP_LINKS`]) and control clients
//! (`ctl`: a task each, lines bounded by [`MAX_LINE`]) talk to the owner through channels, so
//! no peer can stall it or make it buffer without bound. With a `[bridge]`,
//! the protocol converter runs on a thread of its own ([`crate::bridge::Bridge`]): the owner
//! hands it the uses of bridged capabilities the endpoint let through
//! ([`Event::CapabilityRequest`]) and completes them when it reports back.
//!
//! Links other than IP have drivers under [`crate::link`]: with `[zigbee]`, a thread on the
//! serial Z-Stack stick ([`ZigbeeLink`]); with `[ble]`, a peripheral task on the virtual radio
//! ([`BleLink`]). Both hand whole inbound datagrams to the owner on one channel as
//! `(LinkAddr, bytes)`; the owner routes each transmit by its `LinkAddr` variant. A link that
//! cannot start is logged, reported (`link_errors` in the start line, `links` in the `state`
//! op) and left out; IP service goes on. The BLE advert's pairable flag follows the PIN, as the
//! CoAP advert's `pair` does.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rand::{Rng, RngCore};
use serde_json::{json, Value};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use crate::bridge::{Bridge, Completion};
use crate::config::DaemonConfig;
use crate::control;
use crate::discovery::{Advert, Responder};
use crate::endpoint::{Endpoint, Event, LinkAddr};
use crate::link::ble::{static_address, AdvertData};
use crate::link::ble_peripheral::{capability_bits, BleLink, BleLinkConfig};
use crate::link::zigbee_driver::ZigbeeLink;
use crate::trust::TrustStore;
use crate::wire::Code;
use crate::{Fault, Identity};

mod ctl;
mod tcp;

pub use ctl::{Line, LineReader, MAX_LINE};
pub use tcp::MAX_TCP_LINKS;

use ctl::ControlCmd;
use tcp::{TcpEvent, TcpLinks};

/// How many events the control channel's `events` op can look back over.
const EVENT_HISTORY: usize = 10_000;

/// Load or create the identity key file (hex X25519 secret, mode 0600).
pub fn load_identity(path: &Path) -> anyhow::Result<Identity> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let raw = hex::decode(text.trim())
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .with_context(|| {
                    format!(
                        "{}: identity key must be 64 hex digits (a 32-byte X25519 secret)",
                        path.display()
                    )
                })?;
            Ok(Identity::from_secret(raw))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity::generate(&mut rand::rngs::OsRng);
            crate::trust::write_private(path, hex::encode(id.secret()).as_bytes())
                .with_context(|| format!("{}: cannot create identity key", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("{}: cannot read identity key", path.display())),
    }
}

pub use crate::control::Bound;

/// Inbound datagrams from the non-IP link drivers, queued for the owner at most.
const LINK_QUEUE: usize = 1024;

/// The BLE advert for the endpoint's current state (spec BLE-5).
fn ble_advert(ep: &Endpoint) -> AdvertData {
    let id = ep.identity().device_id();
    AdvertData {
        version: 1,
        pairable: ep.has_pin(),
        device_hash: [id.0[0], id.0[1], id.0[2], id.0[3]],
        capabilities: capability_bits(ep.config().capabilities.iter().map(|c| c.kind.as_str())),
    }
}

fn multicast_socket(group: Ipv4Addr, port: u16, iface: Ipv4Addr) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddrV4::new(group, port).into())
        .with_context(|| format!("discovery: cannot bind {group}:{port}"))?;
    s.join_multicast_v4(&group, &iface)
        .with_context(|| format!("discovery: cannot join {group} on interface {iface}"))?;
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s.into())?)
}

/// Run the daemon until `shutdown` resolves. Prints one JSON line describing what it bound.
pub async fn run(
    cfg: DaemonConfig,
    faults: Vec<Fault>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let identity = load_identity(&cfg.device.identity_key)?;
    let trust = TrustStore::load(&cfg.device.trust_store)?;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    // The protocol converter comes up first: the devices it finds are capabilities too.
    let mut ep_cfg = cfg.endpoint_config(faults.clone());
    let (bridge_tx, mut bridge_rx) = mpsc::unbounded_channel::<Completion>();
    let bridge = match &cfg.bridge {
        Some(section) => {
            let bc = section.bridge_config();
            ep_cfg.backend_timeout = bc.backend_timeout();
            let taken: Vec<String> = cfg.capabilities.iter().map(|c| c.name.clone()).collect();
            let tx = bridge_tx.clone();
            let bridge = tokio::task::spawn_blocking(move || {
                Bridge::start(bc, &taken, move |c| {
                    let _ = tx.send(c);
                })
            })
            .await
            .context("bridge: the start-up task failed")??;
            ep_cfg.capabilities.extend(bridge.capabilities());
            ep_cfg.external_capabilities = bridge
                .devices()
                .iter()
                .map(|d| d.capability.clone())
                .collect();
            Some(bridge)
        }
        None => None,
    };
    drop(bridge_tx);

    let mut ep = Endpoint::new(ep_cfg, identity.clone(), trust, seed, Instant::now(), unix);

    // Links below the core other than IP: whole datagrams in on one channel.
    let (link_tx, mut link_rx) = mpsc::channel::<(LinkAddr, Vec<u8>)>(LINK_QUEUE);
    let mut link_errors = Vec::new();
    let zigbee = match &cfg.zigbee {
        Some(section) => {
            let lc = section.link_config();
            let port = lc.port.clone();
            let tx = link_tx.clone();
            let started = tokio::task::spawn_blocking(move || {
                ZigbeeLink::start(lc, move |src, data| {
                    tx.blocking_send((LinkAddr::Zigbee(src), data)).is_ok()
                })
            })
            .await;
            match started {
                Ok(Ok(link)) => Some(link),
                Ok(Err(e)) => {
                    tracing::error!(%port, %e, "zigbee: the link cannot start; running without it");
                    link_errors.push(format!("zigbee: {port}: {e}"));
                    None
                }
                Err(e) => {
                    tracing::error!(%e, "zigbee: the start-up task failed; running without it");
                    link_errors.push(format!("zigbee: start-up task failed: {e}"));
                    None
                }
            }
        }
        None => None,
    };
    let mut ble_advertised = ble_advert(&ep);
    let ble = cfg.ble.as_ref().map(|section| {
        BleLink::spawn(
            BleLinkConfig {
                radio: section.radio.clone(),
                address: static_address(&identity.device_id().0),
                name: cfg.device.name.clone(),
                advert: ble_advertised,
            },
            link_tx.clone(),
        )
    });
    drop(link_tx);

    let udp = Arc::new(
        UdpSocket::bind(cfg.listen.udp)
            .await
            .with_context(|| format!("listen.udp: cannot bind {}", cfg.listen.udp))?,
    );
    let udp_addr = udp.local_addr()?;

    // TCP links: a listener, and a reader and a writer task per link (see `tcp`).
    let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpEvent>(1024);
    let mut tcp = TcpLinks::new(tcp_tx);
    let tcp_addr = match cfg.listen.tcp {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen.tcp: cannot bind {addr}"))?;
            let local = l.local_addr()?;
            tcp.serve(l);
            Some(local)
        }
        None => None,
    };

    // Discovery.
    let advert_port = udp_addr.port();
    let mut advert = Advert::new(
        *identity.public(),
        cfg.device.name.clone(),
        cfg.device.device_type.clone(),
        advert_port,
    );
    advert.caps = {
        let mut kinds: Vec<String> = ep
            .config()
            .capabilities
            .iter()
            .map(|c| c.kind.clone())
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    };
    advert.hb = cfg.device.heartbeat_interval_ms.min(u32::MAX as u64) as u32;
    advert.pt = cfg.device.prompt_timeout_ms.min(u32::MAX as u64) as u32;
    advert.pair = cfg.device.pin.is_some();
    if faults.contains(&Fault::AdvertMismatch) {
        advert.id[0] ^= 0xff;
    }
    let mut responder = Responder::new(advert).with_first_message_id(rand::thread_rng().gen());
    if faults.contains(&Fault::DiscAnyCap) {
        responder = responder.with_any_cap_matching();
    }
    let (coap_mc, coap_uc) = if cfg.discovery.enabled {
        let d = &cfg.discovery;
        let mc = multicast_socket(d.group, d.port, d.interface)?;
        let uc_ip = if d.interface.is_unspecified() {
            Ipv4Addr::UNSPECIFIED
        } else {
            d.interface
        };
        let uc = UdpSocket::bind(SocketAddrV4::new(uc_ip, d.unicast_port))
            .await
            .with_context(|| {
                format!(
                    "discovery.unicast_port: cannot bind {uc_ip}:{}",
                    d.unicast_port
                )
            })?;
        (Some(mc), Some(Arc::new(uc)))
    } else {
        (None, None)
    };

    // Control channel.
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlCmd>(64);
    let control_addr = match cfg.control.tcp {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("control.tcp: cannot bind {addr}"))?;
            let local = l.local_addr()?;
            ctl::serve(l, ctl_tx, ctl::Framing::new(&faults));
            Some(local)
        }
        None => None,
    };

    let bound = Bound {
        device_id: identity.device_id().to_hex(),
        udp: udp_addr,
        tcp: tcp_addr,
        coap: coap_uc.as_ref().and_then(|s| s.local_addr().ok()),
        control: control_addr,
        zigbee: zigbee.as_ref().map(ZigbeeLink::nwk),
        ble: ble.as_ref().map(|b| b.address().to_string()),
        link_errors,
    };
    println!("{}", serde_json::to_string(&bound)?);
    tracing::info!(device = %identity.device_id(), udp = %udp_addr, ?tcp_addr, ?control_addr, "softbusd running");

    let mut events: VecDeque<(u64, Value)> = VecDeque::new();
    let mut event_seq: u64 = 0;
    let mut pending_coap: Vec<(Instant, SocketAddr, Vec<u8>)> = Vec::new();
    let mut udp_buf = vec![0u8; 65536];
    let mut mc_buf = vec![0u8; 2048];
    let mut uc_buf = vec![0u8; 2048];
    let trust_path = cfg.device.trust_store.clone();
    tokio::pin!(shutdown);

    loop {
        // Outputs first: transmit, then events, then timers.
        while let Some(t) = ep.poll_transmit() {
            match t.dst {
                LinkAddr::Ip(addr) => {
                    let Some(data) = tcp.send(addr, t.data) else {
                        continue;
                    };
                    if let Err(e) = udp.send_to(&data, addr).await {
                        tracing::debug!(%addr, %e, "udp send failed");
                    }
                }
                LinkAddr::Zigbee(nwk) => match &zigbee {
                    Some(z) => z.send(nwk, t.data),
                    None => tracing::debug!(dst = %t.dst, "no Zigbee link; frame dropped"),
                },
                LinkAddr::Ble(central) => match &ble {
                    Some(b) => b.send(central, t.data),
                    None => tracing::debug!(%central, "no BLE link; frame dropped"),
                },
            }
        }
        let mut completed_now = false;
        while let Some(ev) = ep.poll_event() {
            if let Event::CapabilityRequest {
                handle,
                capability,
                args,
                ..
            } = ev
            {
                // For the bridge, not the control channel's event list.
                tracing::debug!(handle, %capability, "capability request");
                let refused = match &bridge {
                    Some(b) => b.submit(handle, capability, args).err(),
                    None => Some(handle),
                };
                if let Some(h) = refused {
                    let why = b"no backend serves this capability (the bridge has stopped)";
                    let _ = ep.complete_invoke(Instant::now(), h, Code::Internal, why);
                    completed_now = true;
                }
                continue;
            }
            if matches!(ev, Event::TrustStoreChanged) {
                if let Err(e) = ep.trust_store().save(&trust_path) {
                    tracing::error!(%e, "cannot persist trust store");
                }
            }
            tracing::info!(event = ?ev, "event");
            event_seq += 1;
            let mut v = serde_json::to_value(&ev).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("seq".into(), json!(event_seq));
            }
            events.push_back((event_seq, v));
            if events.len() > EVENT_HISTORY {
                events.pop_front();
            }
        }
        if completed_now {
            continue; // send the CAP_RESULT before waiting
        }
        let now = Instant::now();
        let mut i = 0;
        while i < pending_coap.len() {
            if pending_coap[i].0 <= now {
                let (_, to, data) = pending_coap.swap_remove(i);
                if let Some(uc) = &coap_uc {
                    let _ = uc.send_to(&data, to).await;
                }
            } else {
                i += 1;
            }
        }
        let deadline = [ep.poll_timeout(), pending_coap.iter().map(|p| p.0).min()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(3600));

        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return Ok(());
            }
            r = udp.recv_from(&mut udp_buf) => {
                if let Ok((n, from)) = r {
                    ep.handle_datagram(Instant::now(), LinkAddr::Ip(from), &udp_buf[..n]);
                }
            }
            Some((from, data)) = link_rx.recv() => {
                ep.handle_datagram(Instant::now(), from, &data);
            }
            Some(done) = bridge_rx.recv() => {
                if let Err(e) = ep.complete_invoke(Instant::now(), done.handle, done.status, &done.result) {
                    // Its connection ended, or the endpoint already answered INTERNAL.
                    tracing::debug!(handle = done.handle, %e, "late bridge completion dropped");
                }
            }
            Some(ev) = tcp_rx.recv() => match ev {
                TcpEvent::Accepted { peer, stream, permit } => tcp.add(peer, stream, permit),
                TcpEvent::Frame { peer, data } => {
                    ep.handle_datagram(Instant::now(), LinkAddr::Ip(peer), &data);
                }
                TcpEvent::Closed { peer, link } => tcp.closed(peer, link),
            },
            r = recv_opt(coap_mc.as_ref(), &mut mc_buf) => {
                if let Ok((n, from)) = r {
                    let leisure = Duration::from_millis(rand::thread_rng().gen_range(0..=100));
                    if let Some(out) = responder.handle_request(Instant::now(), from, &mc_buf[..n], true, leisure) {
                        pending_coap.push((out.send_at, out.to, out.datagram));
                    }
                }
            }
            r = recv_opt(coap_uc.as_deref(), &mut uc_buf) => {
                if let Ok((n, from)) = r {
                    if let Some(out) = responder.handle_request(Instant::now(), from, &uc_buf[..n], false, Duration::ZERO) {
                        pending_coap.push((out.send_at, out.to, out.datagram));
                    }
                }
            }
            Some(cmd) = ctl_rx.recv() => {
                let now = Instant::now();
                let result = match &cmd.req.op[..] {
                    "events" => control::events_since(&events, &cmd.req),
                    "connect" if control::arg_addr(&cmd.req, "addr").is_ok_and(|(l, _)| l == control::Link::Tcp) => {
                        let addr = control::arg_addr(&cmd.req, "addr").map(|(_, a)| a).unwrap_or_else(|_| bound.udp);
                        tcp.connect(addr).await.map(|()| {
                            ep.connect(now, LinkAddr::Ip(addr));
                            json!({})
                        })
                    }
                    "discover" => {
                        // Runs in its own task so the device keeps serving while it listens.
                        let d = cfg.discovery.clone();
                        let req = cmd.req.clone();
                        tokio::spawn(async move {
                            let _ = cmd.reply.send(ctl::discover(&d, &req).await);
                        });
                        continue;
                    }
                    "state" => control::execute(&mut ep, now, &cmd.req, &bound, responder.malformed_count()).map(|mut v| {
                        if let Value::Object(m) = &mut v {
                            m.insert("links".into(), links_state(&bound, &tcp, zigbee.as_ref(), ble.as_ref()));
                        }
                        v
                    }),
                    _ => control::execute(&mut ep, now, &cmd.req, &bound, responder.malformed_count()),
                };
                // The advert's `pair` follows the PIN (spec DISC-15).
                if responder.advert().pair != ep.has_pin() {
                    let mut a = responder.advert().clone();
                    a.pair = ep.has_pin();
                    responder.set_advert(a);
                }
                // So does the BLE advert's pairable flag.
                if let Some(b) = &ble {
                    let a = ble_advert(&ep);
                    if a != ble_advertised {
                        b.set_advert(a);
                        ble_advertised = a;
                    }
                }
                let _ = cmd.reply.send(result);
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                ep.handle_timeout(Instant::now());
            }
        }
    }
}

/// The `links` member of the `state` op: the TCP links' table, each non-IP link, whether it is
/// up, and its counters.
fn links_state(
    bound: &Bound,
    tcp: &TcpLinks,
    zigbee: Option<&ZigbeeLink>,
    ble: Option<&BleLink>,
) -> Value {
    let mut m = serde_json::Map::new();
    if bound.tcp.is_some() {
        m.insert("tcp".into(), tcp.status());
    }
    if let Some(z) = zigbee {
        m.insert("zigbee".into(), json!(z.status()));
    }
    if let Some(b) = ble {
        let mut v = json!(b.status());
        v["address"] = json!(b.address());
        m.insert("ble".into(), v);
    }
    if !bound.link_errors.is_empty() {
        m.insert("errors".into(), json!(bound.link_errors));
    }
    Value::Object(m)
}

async fn recv_opt(
    sock: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}
