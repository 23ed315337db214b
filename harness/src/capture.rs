//! Packet capture for per-case evidence, and reading UDP payloads back out of it.
//!
//! [`Capture::start`] opens a live capture with libpcap and runs it on a background thread that
//! writes every packet to a pcap file (for Wireshark and the SoftBus dissector) and keeps a copy
//! in memory; [`Capture::stop`] returns the packets. The handle is **non-blocking** (immediate
//! mode, 50 ms timeout, and `setnonblock`), so an idle link never holds the thread and `stop`
//! returns promptly.
//!
//! Capturing needs root or `CAP_NET_RAW`; without it [`Capture::start`] returns
//! [`CaptureError::NoPermission`], which a case turns into INCONC rather than ERROR.
//!
//! [`udp_datagrams`] and [`parse_udp`] decode Ethernet (with VLAN tags), BSD loopback
//! (`DLT_NULL`/`DLT_LOOP`), Linux cooked (`SLL`, `SLL2`) and raw IP frames, IPv4 and IPv6.
//! Parsing never panics: malformed or truncated frames are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Read timeout handed to libpcap, in milliseconds.
const READ_TIMEOUT_MS: i32 = 50;
/// How long the capture thread sleeps when no packet is waiting.
const IDLE_SLEEP: Duration = Duration::from_millis(2);
/// Bytes captured per packet (whole frames).
const SNAPLEN: i32 = 65_535;

/// Everything that can go wrong capturing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The process may not capture (not root, no `CAP_NET_RAW`). Cases should be INCONC.
    #[error(
        "no permission to capture on '{interface}': {message}; run as root or grant \
         CAP_NET_RAW (e.g. `sudo setcap cap_net_raw,cap_net_admin=eip <binary>`)"
    )]
    NoPermission {
        /// The interface.
        interface: String,
        /// libpcap's message.
        message: String,
    },
    /// No such interface.
    #[error(
        "cannot capture on '{interface}': no such interface ({message}); check \
         [dut.capture] interface in the rig (`ip link` lists them)"
    )]
    NoSuchInterface {
        /// The interface.
        interface: String,
        /// libpcap's message.
        message: String,
    },
    /// The BPF filter does not compile.
    #[error("invalid capture filter {filter:?} on '{interface}': {message}")]
    BadFilter {
        /// The interface.
        interface: String,
        /// The filter expression.
        filter: String,
        /// libpcap's message.
        message: String,
    },
    /// The pcap file could not be created or written.
    #[error("cannot write capture file {}: {message}", path.display())]
    File {
        /// The pcap file.
        path: PathBuf,
        /// The error.
        message: String,
    },
    /// Any other libpcap failure.
    #[error("capture on '{interface}' failed: {message}")]
    Pcap {
        /// The interface.
        interface: String,
        /// libpcap's message.
        message: String,
    },
    /// The capture thread could not be started, or died.
    #[error("capture thread on '{interface}': {message}")]
    Thread {
        /// The interface.
        interface: String,
        /// What happened.
        message: String,
    },
}

impl CaptureError {
    /// Whether this is [`CaptureError::NoPermission`] (the case should be INCONC, not ERROR).
    pub fn is_no_permission(&self) -> bool {
        matches!(self, CaptureError::NoPermission { .. })
    }
}

fn classify_open_error(interface: &str, err: pcap::Error) -> CaptureError {
    let message = err.to_string();
    let lower = message.to_ascii_lowercase();
    if lower.contains("permission") || lower.contains("not permitted") {
        CaptureError::NoPermission {
            interface: interface.to_owned(),
            message,
        }
    } else if lower.contains("no such device") || lower.contains("doesn't exist") {
        CaptureError::NoSuchInterface {
            interface: interface.to_owned(),
            message,
        }
    } else {
        CaptureError::Pcap {
            interface: interface.to_owned(),
            message,
        }
    }
}

/// Link-layer header type of captured frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// `DLT_NULL`: 4-byte address family in host byte order (BSD loopback).
    Null,
    /// `DLT_EN10MB`: Ethernet (Linux `lo` uses it with zero MACs).
    Ethernet,
    /// `DLT_RAW` / `LINKTYPE_RAW`: bare IPv4 or IPv6.
    Raw,
    /// `DLT_LOOP`: like `Null`, network byte order (OpenBSD).
    Loop,
    /// `DLT_LINUX_SLL`: Linux cooked capture v1 (the "any" device).
    LinuxSll,
    /// `DLT_LINUX_SLL2`: Linux cooked capture v2.
    LinuxSll2,
    /// Anything else (the number is the DLT).
    Other(i32),
}

impl LinkType {
    /// From a libpcap DLT number.
    pub fn from_dlt(dlt: i32) -> LinkType {
        match dlt {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    /// Kernel timestamp of the capture.
    pub ts: SystemTime,
    /// The frame bytes as captured (link-layer header included).
    pub data: Vec<u8>,
    /// The frame's length on the wire (more than `data.len()` if truncated by the snap length).
    pub orig_len: u32,
    /// How to read the link-layer header.
    pub link: LinkType,
}

#[derive(Debug)]
struct Worker {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<Vec<CapturedPacket>, CaptureError>>,
}

/// A running capture (see the module docs). Dropping it stops the thread and finishes the file.
#[derive(Debug)]
pub struct Capture {
    interface: String,
    pcap_path: PathBuf,
    link: LinkType,
    worker: Option<Worker>,
}

impl Capture {
    /// Starts capturing on `interface` (e.g. "lo", "eth0", "any"), keeping packets that match
    /// `bpf_filter` (empty: everything), writing them to `pcap_path` (parent directories are
    /// created). Returns once the capture is live, so packets sent afterwards are seen.
    pub fn start(
        interface: &str,
        bpf_filter: &str,
        pcap_path: impl AsRef<Path>,
    ) -> Result<Capture, CaptureError> {
        let pcap_path = pcap_path.as_ref().to_owned();
        let open_err = |e| classify_open_error(interface, e);
        let inactive = pcap::Capture::from_device(interface).map_err(open_err)?;
        let mut active = inactive
            .promisc(false)
            .snaplen(SNAPLEN)
            .immediate_mode(true)
            .timeout(READ_TIMEOUT_MS)
            .open()
            .map_err(open_err)?
            .setnonblock()
            .map_err(open_err)?;
        if !bpf_filter.trim().is_empty() {
            active
                .filter(bpf_filter, true)
                .map_err(|e| CaptureError::BadFilter {
                    interface: interface.to_owned(),
                    filter: bpf_filter.to_owned(),
                    message: e.to_string(),
                })?;
        }
        let link = LinkType::from_dlt(active.get_datalink().0);
        if let Some(parent) = pcap_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| CaptureError::File {
                path: pcap_path.clone(),
                message: e.to_string(),
            })?;
        }
        let savefile = active
            .savefile(&pcap_path)
            .map_err(|e| CaptureError::File {
                path: pcap_path.clone(),
                message: e.to_string(),
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread_iface = interface.to_owned();
        let thread_path = pcap_path.clone();
        let handle = std::thread::Builder::new()
            .name(format!("capture-{interface}"))
            .spawn(move || {
                capture_loop(
                    active,
                    savefile,
                    &thread_stop,
                    link,
                    &thread_iface,
                    &thread_path,
                )
            })
            .map_err(|e| CaptureError::Thread {
                interface: interface.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Capture {
            interface: interface.to_owned(),
            pcap_path,
            link,
            worker: Some(Worker { stop, handle }),
        })
    }

    /// The interface captured on.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The pcap file being written.
    pub fn pcap_path(&self) -> &Path {
        &self.pcap_path
    }

    /// The link-layer type of the captured frames.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// Stops capturing after draining what the kernel already holds, flushes the pcap file,
    /// and returns every captured packet in order.
    pub fn stop(mut self) -> Result<Vec<CapturedPacket>, CaptureError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<Vec<CapturedPacket>, CaptureError> {
        let Some(worker) = self.worker.take() else {
            return Ok(Vec::new());
        };
        worker.stop.store(true, Ordering::Release);
        match worker.handle.join() {
            Ok(result) => result,
            Err(_) => Err(CaptureError::Thread {
                interface: self.interface.clone(),
                message: "the capture thread panicked".into(),
            }),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!("stopping capture on {}: {e}", self.interface);
        }
    }
}

// `time_t` and `suseconds_t` are i64 here but i32 on some targets: keep the casts.
#[allow(clippy::unnecessary_cast)]
fn to_system_time(header: &pcap::PacketHeader) -> SystemTime {
    let secs = header.ts.tv_sec as i64;
    let micros = header.ts.tv_usec as i64;
    let total_us = secs.saturating_mul(1_000_000).saturating_add(micros);
    if total_us >= 0 {
        UNIX_EPOCH + Duration::from_micros(total_us as u64)
    } else {
        UNIX_EPOCH
    }
}

fn capture_loop(
    mut cap: pcap::Capture<pcap::Active>,
    mut savefile: pcap::Savefile,
    stop: &AtomicBool,
    link: LinkType,
    interface: &str,
    path: &Path,
) -> Result<Vec<CapturedPacket>, CaptureError> {
    let mut packets = Vec::new();
    loop {
        // Read the flag before draining, so packets that arrived before stop() was called are
        // always read by one more full drain.
        let stopping = stop.load(Ordering::Acquire);
        loop {
            match cap.next_packet() {
                Ok(packet) => {
                    savefile.write(&packet);
                    packets.push(CapturedPacket {
                        ts: to_system_time(packet.header),
                        data: packet.data.to_vec(),
                        orig_len: packet.header.len,
                        link,
                    });
                }
                Err(pcap::Error::TimeoutExpired) => break,
                Err(e) => {
                    let _ = savefile.flush();
                    return Err(CaptureError::Pcap {
                        interface: interface.to_owned(),
                        message: e.to_string(),
                    });
                }
            }
        }
        if stopping {
            break;
        }
        std::thread::sleep(IDLE_SLEEP);
    }
    savefile.flush().map_err(|e| CaptureError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(packets)
}

/// A UDP datagram read out of a captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    /// Capture timestamp.
    pub ts: SystemTime,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The UDP payload (truncated if the capture was).
    pub payload: Vec<u8>,
}

/// Every UDP datagram sent to or from `port`, in capture order. Frames that are not UDP, are
/// IP fragments, or are malformed are skipped.
pub fn udp_datagrams(packets: &[CapturedPacket], port: u16) -> Vec<UdpDatagram> {
    packets
        .iter()
        .filter_map(|p| parse_udp(p.link, &p.data, p.ts))
        .filter(|d| d.src.port() == port || d.dst.port() == port)
        .collect()
}

/// Decodes one frame as UDP over IPv4 or IPv6; `None` when it is anything else or malformed.
pub fn parse_udp(link: LinkType, frame: &[u8], ts: SystemTime) -> Option<UdpDatagram> {
    let (ethertype, ip) = match link {
        LinkType::Ethernet => {
            let mut ethertype = be16(frame, 12)?;
            let mut offset = 14;
            // 802.1Q / 802.1ad tags, possibly stacked.
            while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
                ethertype = be16(frame, offset + 2)?;
                offset += 4;
            }
            (Some(ethertype), frame.get(offset..)?)
        }
        LinkType::Null | LinkType::Loop => {
            let bytes: [u8; 4] = frame.get(..4)?.try_into().ok()?;
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(bytes)
            } else {
                // Host byte order of the capturing machine: accept either.
                let le = u32::from_le_bytes(bytes);
                if le < 256 {
                    le
                } else {
                    u32::from_be_bytes(bytes)
                }
            };
            let ethertype = match family {
                2 => 0x0800,
                10 | 24 | 28 | 30 => 0x86dd,
                _ => return None,
            };
            (Some(ethertype), frame.get(4..)?)
        }
        LinkType::LinuxSll => (Some(be16(frame, 14)?), frame.get(16..)?),
        LinkType::LinuxSll2 => (Some(be16(frame, 0)?), frame.get(20..)?),
        LinkType::Raw => (None, frame),
        LinkType::Other(_) => return None,
    };
    let version = ip.first()? >> 4;
    match (ethertype, version) {
        (Some(0x0800) | None, 4) => parse_ipv4_udp(ip, ts),
        (Some(0x86dd) | None, 6) => parse_ipv6_udp(ip, ts),
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn parse_ipv4_udp(ip: &[u8], ts: SystemTime) -> Option<UdpDatagram> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ihl < 20 || ip.len() < ihl {
        return None;
    }
    let total_len = usize::from(be16(ip, 2)?);
    let flags_frag = be16(ip, 6)?;
    let more_fragments = flags_frag & 0x2000 != 0;
    let frag_offset = flags_frag & 0x1fff;
    if more_fragments || frag_offset != 0 || *ip.get(9)? != 17 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    // Trust the IP length over the frame length (Ethernet pads short frames), but tolerate a
    // capture truncated by the snap length.
    let end = total_len.clamp(ihl, ip.len());
    parse_udp_header(&ip[ihl..end], IpAddr::V4(src), IpAddr::V4(dst), ts)
}

fn parse_ipv6_udp(ip: &[u8], ts: SystemTime) -> Option<UdpDatagram> {
    let header: &[u8; 40] = ip.get(..40)?.try_into().ok()?;
    let payload_len = usize::from(be16(ip, 4)?);
    let mut next = header[6];
    let src_bytes: [u8; 16] = header[8..24].try_into().ok()?;
    let dst_bytes: [u8; 16] = header[24..40].try_into().ok()?;
    let end = (40 + payload_len).min(ip.len());
    let mut offset = 40;
    // Walk extension headers (bounded: each step advances at least 8 bytes).
    loop {
        match next {
            17 => break,
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => {
                next = *ip.get(offset)?;
                let len = (usize::from(*ip.get(offset + 1)?) + 1) * 8;
                offset += len;
            }
            // Fragment header: only an unfragmented ("atomic") fragment carries a whole UDP
            // header we can trust.
            44 => {
                next = *ip.get(offset)?;
                let frag = be16(ip, offset + 2)?;
                if frag & 0xfff9 != 0 {
                    return None;
                }
                offset += 8;
            }
            // Authentication header: length in 4-byte units, minus 2.
            51 => {
                next = *ip.get(offset)?;
                let len = (usize::from(*ip.get(offset + 1)?) + 2) * 4;
                offset += len;
            }
            _ => return None,
        }
        if offset > end {
            return None;
        }
    }
    parse_udp_header(
        ip.get(offset..end)?,
        IpAddr::V6(Ipv6Addr::from(src_bytes)),
        IpAddr::V6(Ipv6Addr::from(dst_bytes)),
        ts,
    )
}

fn parse_udp_header(udp: &[u8], src: IpAddr, dst: IpAddr, ts: SystemTime) -> Option<UdpDatagram> {
    let sport = be16(udp, 0)?;
    let dport = be16(udp, 2)?;
    let len = usize::from(be16(udp, 4)?);
    if len < 8 {
        return None;
    }
    let end = len.min(udp.len());
    Some(UdpDatagram {
        ts,
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        payload: udp.get(8..end)?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn udp_bytes(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    fn ipv4(udp: &[u8]) -> Vec<u8> {
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let total = (20 + udp.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(udp);
        ip
    }

    fn ipv6(udp: &[u8], ext: &[u8], first_next: u8) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&((ext.len() + udp.len()) as u16).to_be_bytes());
        ip.push(first_next);
        ip.push(64);
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(ext);
        ip.extend_from_slice(udp);
        ip
    }

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn check(link: LinkType, frame: &[u8], sport: u16, dport: u16, payload: &[u8]) {
        let d = parse_udp(link, frame, UNIX_EPOCH).unwrap_or_else(|| panic!("{link:?}"));
        assert_eq!(d.src.port(), sport);
        assert_eq!(d.dst.port(), dport);
        assert_eq!(d.payload, payload);
    }

    #[test]
    fn parses_every_link_type() {
        let udp = udp_bytes(5683, 40000, b"hello");
        let v4 = ipv4(&udp);
        let v6 = ipv6(&udp, &[], 17);
        check(
            LinkType::Ethernet,
            &ethernet(0x0800, &v4),
            5683,
            40000,
            b"hello",
        );
        check(
            LinkType::Ethernet,
            &ethernet(0x86dd, &v6),
            5683,
            40000,
            b"hello",
        );
        // Ethernet padding after a short IPv4 packet is ignored.
        let mut padded = ethernet(0x0800, &v4);
        padded.extend_from_slice(&[0xee; 20]);
        check(LinkType::Ethernet, &padded, 5683, 40000, b"hello");
        // VLAN tagged.
        let mut tagged = vec![0u8; 12];
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07, 0x08, 0x00]);
        tagged.extend_from_slice(&v4);
        check(LinkType::Ethernet, &tagged, 5683, 40000, b"hello");
        // DLT_NULL in either byte order, IPv4 and IPv6 (Linux/BSD/macOS family numbers).
        for (fam, ip) in [(2u32, &v4), (30, &v6), (24, &v6), (10, &v6)] {
            let mut le = fam.to_le_bytes().to_vec();
            le.extend_from_slice(ip);
            check(LinkType::Null, &le, 5683, 40000, b"hello");
            let mut be = fam.to_be_bytes().to_vec();
            be.extend_from_slice(ip);
            check(LinkType::Null, &be, 5683, 40000, b"hello");
            check(LinkType::Loop, &be, 5683, 40000, b"hello");
        }
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&0x0800u16.to_be_bytes());
        sll.extend_from_slice(&v4);
        check(LinkType::LinuxSll, &sll, 5683, 40000, b"hello");
        let mut sll2 = 0x86ddu16.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&v6);
        check(LinkType::LinuxSll2, &sll2, 5683, 40000, b"hello");
        check(LinkType::Raw, &v4, 5683, 40000, b"hello");
        check(LinkType::Raw, &v6, 5683, 40000, b"hello");
    }

    #[test]
    fn walks_ipv6_extension_headers() {
        let udp = udp_bytes(1, 2, b"x");
        // Hop-by-hop (8 bytes, next = fragment), atomic fragment (next = UDP).
        let mut ext = vec![44, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 1]);
        check(LinkType::Raw, &ipv6(&udp, &ext, 0), 1, 2, b"x");
        // A real (non-first) fragment is skipped.
        let frag = vec![17, 0, 0x00, 0x09, 0, 0, 0, 1];
        assert!(parse_udp(LinkType::Raw, &ipv6(&udp, &frag, 44), UNIX_EPOCH).is_none());
    }

    #[test]
    fn skips_non_udp_fragments_and_garbage_without_panicking() {
        let udp = udp_bytes(1, 2, b"payload");
        let mut tcp = ipv4(&udp);
        tcp[9] = 6;
        assert!(parse_udp(LinkType::Raw, &tcp, UNIX_EPOCH).is_none());
        let mut frag = ipv4(&udp);
        frag[6] = 0x20; // more fragments
        assert!(parse_udp(LinkType::Raw, &frag, UNIX_EPOCH).is_none());
        // Every truncation of every frame kind must be handled.
        let frames = [
            (LinkType::Ethernet, ethernet(0x0800, &ipv4(&udp))),
            (LinkType::Ethernet, ethernet(0x86dd, &ipv6(&udp, &[], 17))),
            (LinkType::LinuxSll2, {
                let mut f = 0x0800u16.to_be_bytes().to_vec();
                f.extend_from_slice(&[0u8; 18]);
                f.extend_from_slice(&ipv4(&udp));
                f
            }),
        ];
        for (link, frame) in &frames {
            for cut in 0..frame.len() {
                let _ = parse_udp(*link, &frame[..cut], UNIX_EPOCH);
            }
        }
        // Pseudo-random bytes.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let frame: Vec<u8> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            for link in [
                LinkType::Ethernet,
                LinkType::Null,
                LinkType::Raw,
                LinkType::LinuxSll,
            ] {
                let _ = parse_udp(link, &frame, UNIX_EPOCH);
            }
        }
        assert!(parse_udp(LinkType::Other(147), &ipv4(&udp), UNIX_EPOCH).is_none());
    }

    #[test]
    fn udp_datagrams_filters_by_port() {
        let mk = |s, d, p: &[u8]| CapturedPacket {
            ts: UNIX_EPOCH,
            data: ipv4(&udp_bytes(s, d, p)),
            orig_len: 0,
            link: LinkType::Raw,
        };
        let packets = vec![mk(1000, 5683, b"a"), mk(5683, 1000, b"b"), mk(7, 8, b"c")];
        let got: Vec<Vec<u8>> = udp_datagrams(&packets, 5683)
            .into_iter()
            .map(|d| d.payload)
            .collect();
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn captures_own_datagram_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let pcap_path = dir.path().join("cases/x/capture.pcap");
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let filter = format!("udp port {port}");
        let cap = match Capture::start("lo", &filter, &pcap_path) {
            Ok(c) => c,
            Err(e) if e.is_no_permission() => {
                println!("skipping loopback capture test: {e}");
                return;
            }
            Err(e) => panic!("capture on lo: {e}"),
        };
        assert_eq!(cap.link_type(), LinkType::Ethernet);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let payload = b"softbus capture self-test \x00\xff";
        tx.send_to(payload, ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], payload);
        // The kernel hands the frame to the capture socket synchronously on loopback, but give
        // the ring a moment anyway.
        std::thread::sleep(Duration::from_millis(20));
        let started = std::time::Instant::now();
        let packets = cap.stop().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "stop must not hang"
        );
        let found = udp_datagrams(&packets, port);
        assert_eq!(found.len(), 1, "{packets:?}");
        assert_eq!(found[0].payload, payload);
        assert_eq!(found[0].dst.port(), port);
        assert_eq!(found[0].src, tx.local_addr().unwrap());
        // The pcap file holds the frame too.
        let mut file = pcap::Capture::from_file(&pcap_path).unwrap();
        let frame = file.next_packet().unwrap();
        let d = parse_udp(LinkType::Ethernet, frame.data, UNIX_EPOCH).unwrap();
        assert_eq!(d.payload, payload);
    }

    #[test]
    fn idle_capture_stops_promptly_and_errors_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        match Capture::start("lo", "udp port 9", dir.path().join("idle.pcap")) {
            Ok(cap) => {
                std::thread::sleep(Duration::from_millis(120));
                let t = std::time::Instant::now();
                assert!(cap.stop().unwrap().is_empty());
                assert!(t.elapsed() < Duration::from_millis(500));
            }
            Err(e) if e.is_no_permission() => {
                println!("skipping idle capture test: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        }
        let e = Capture::start("lo", "this is not bpf", dir.path().join("bad.pcap")).unwrap_err();
        assert!(matches!(e, CaptureError::BadFilter { .. }), "{e}");
        let e = Capture::start("nosuchif0", "", dir.path().join("none.pcap")).unwrap_err();
        assert!(
            matches!(e, CaptureError::NoSuchInterface { .. }),
            "expected NoSuchInterface, got {e:?}"
        );
    }
}
