//! What crossed a non-IP link, kept as evidence: every whole datagram a link sent or received,
//! with its time and direction, written as a pcap file the Wireshark dissector reads
//! (`tools/wireshark/softbus.lua` registers for the link type).
//!
//! Packet capture cannot see a serial line's APS payloads or a BLE connection's ATT values, so
//! the tester's link records what it carried instead. Each record is one SoftBus datagram with
//! a one-byte direction prefix ([`Direction`]) under `LINKTYPE_USER0` (147), the link type
//! pcap reserves for private use.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// `LINKTYPE_USER0`: private use (SoftBus datagrams with a direction byte).
pub const LINKTYPE_SOFTBUS: u32 = 147;
/// Records kept at most (older ones are dropped first and counted).
pub const TRACE_LIMIT: usize = 50_000;

/// Which way a datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// From the tester to the DUT.
    ToDut = 0,
    /// From the DUT to the tester.
    FromDut = 1,
}

/// One datagram seen on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced {
    /// When the link sent or delivered it.
    pub at: SystemTime,
    /// Which way.
    pub direction: Direction,
    /// The datagram.
    pub data: Vec<u8>,
}

/// A bounded, shareable record of a link's datagrams.
#[derive(Debug, Default)]
pub struct LinkTrace {
    records: Mutex<(Vec<Traced>, u64)>,
}

impl LinkTrace {
    /// Records one datagram now.
    pub fn record(&self, direction: Direction, data: &[u8]) {
        let mut g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.len() >= TRACE_LIMIT {
            g.0.remove(0);
            g.1 += 1;
        }
        g.0.push(Traced {
            at: SystemTime::now(),
            direction,
            data: data.to_vec(),
        });
    }

    /// Everything recorded since the last call, and how many older records were dropped.
    pub fn take(&self) -> (Vec<Traced>, u64) {
        let mut g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = std::mem::take(&mut g.1);
        (std::mem::take(&mut g.0), dropped)
    }
}

/// Writes `records` as a classic pcap file of link type [`LINKTYPE_SOFTBUS`].
pub fn write_pcap(path: &Path, records: &[Traced]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(24 + records.iter().map(|r| 17 + r.data.len()).sum::<usize>());
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microsecond timestamps
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&LINKTYPE_SOFTBUS.to_le_bytes());
    for r in records {
        let t = r.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let len = u32::try_from(r.data.len() + 1).unwrap_or(u32::MAX);
        out.extend_from_slice(&u32::try_from(t.as_secs()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&t.subsec_micros().to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.push(r.direction as u8);
        out.extend_from_slice(&r.data);
    }
    std::fs::File::create(path)?.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_has_the_user0_link_type_and_one_record_per_datagram() {
        let t = LinkTrace::default();
        t.record(Direction::ToDut, &[1, 2, 3]);
        t.record(Direction::FromDut, &[4]);
        let (records, dropped) = t.take();
        assert_eq!((records.len(), dropped), (2, 0));
        assert!(t.take().0.is_empty(), "take empties the trace");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("link.pcap");
        write_pcap(&p, &records).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(&b[20..24], &147u32.to_le_bytes());
        // First record: header 16 bytes, then direction 0 and the datagram.
        assert_eq!(&b[32..36], &4u32.to_le_bytes());
        assert_eq!(&b[40..44], &[0, 1, 2, 3]);
        assert_eq!(&b[60..62], &[1, 4]);
        assert_eq!(b.len(), 24 + 16 + 4 + 16 + 2);
    }
}
