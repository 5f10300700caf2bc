//! The `tombstones` file: deleted time intervals per series of a block ([`Tombstones`]).
//!
//! ```text
//! magic u32 BE = 0x0130BA30 | version u8 = 1 | (series_ref uvarint64 | min_t varint64 | max_t varint64)* | crc32c u32 BE
//! ```
//! One entry per interval, `max_t` absolute (not a delta), as Prometheus's `tombstones.Encode`; the
//! CRC (Castagnoli) covers the entries only, not the version byte. Prometheus writes entries in
//! map order; Strata writes them sorted by series ref then time, and on read merges the intervals
//! of a series (overlapping or touching ones become one). An empty file is 9 bytes; a missing file
//! reads as empty. The file is replaced atomically: written to `tombstones.tmp`, fsynced, renamed.
#![warn(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::encoding::{crc32c, put_uvarint, put_varint, Dec};
use super::error::{BlockError, Corrupt, Result};
use crate::intervals::{Interval, Intervals};

/// File name of the tombstones file.
pub const TOMBSTONES_FILENAME: &str = "tombstones";
/// Magic number of the tombstones file.
pub const MAGIC_TOMBSTONE: u32 = 0x0130_BA30;
/// Tombstones format version.
pub const TOMBSTONES_FORMAT_V1: u8 = 1;

/// The deleted intervals of a block's series, by index series reference. Each series' intervals
/// are shared (`Arc`) with the chunks readers get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tombstones(BTreeMap<u64, Arc<Intervals>>);

impl Tombstones {
    /// No tombstones.
    pub fn new() -> Tombstones {
        Tombstones::default()
    }

    /// The deleted intervals of series `series_ref`.
    pub fn get(&self, series_ref: u64) -> Option<&Arc<Intervals>> {
        self.0.get(&series_ref)
    }

    /// Deletes `iv` of series `series_ref` (merged with what it already has).
    pub fn add(&mut self, series_ref: u64, iv: Interval) {
        Arc::make_mut(self.0.entry(series_ref).or_default()).add(iv);
    }

    /// Number of intervals over all series (`meta.json`'s `numTombstones`).
    pub fn total(&self) -> u64 {
        self.0.values().map(|i| i.len() as u64).sum()
    }

    /// True if nothing is deleted.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Every series' intervals, by ascending reference.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Arc<Intervals>)> {
        self.0.iter().map(|(r, i)| (*r, i))
    }
}

/// Encodes tombstones in Prometheus's format (series by ascending reference).
pub fn encode(stones: &Tombstones) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + stones.total() as usize * 12);
    out.extend_from_slice(&MAGIC_TOMBSTONE.to_be_bytes());
    out.push(TOMBSTONES_FORMAT_V1);
    for (series_ref, ivs) in stones.iter() {
        for iv in ivs.as_slice() {
            put_uvarint(&mut out, series_ref);
            put_varint(&mut out, iv.min_t);
            put_varint(&mut out, iv.max_t);
        }
    }
    let crc = crc32c(out.get(5..).unwrap_or_default());
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a tombstones file.
pub(crate) fn decode(b: &[u8]) -> std::result::Result<Tombstones, Corrupt> {
    if b.len() < 9 {
        return Err(Corrupt::at(0, "tombstones file shorter than 9 bytes"));
    }
    let mut d = Dec::new(b, 0);
    if d.be32()? != MAGIC_TOMBSTONE {
        return Err(Corrupt::at(0, "invalid tombstones magic"));
    }
    if d.u8()? != TOMBSTONES_FORMAT_V1 {
        return Err(Corrupt::at(4, "unsupported tombstones version"));
    }
    let entries = b.get(5..b.len() - 4).ok_or(Corrupt::at(5, "tombstones truncated"))?;
    let crc = Dec::new(b.get(b.len() - 4..).unwrap_or_default(), b.len() - 4).be32()?;
    if crc32c(entries) != crc {
        return Err(Corrupt::at(b.len() - 4, "tombstones checksum mismatch"));
    }
    let mut d = Dec::new(entries, 5);
    let mut out = Tombstones::new();
    while d.remaining() > 0 {
        let series_ref = d.uvarint()?;
        let min_t = d.varint()?;
        let max_t = d.varint()?;
        out.add(series_ref, Interval::new(min_t, max_t));
    }
    Ok(out)
}

/// Replaces `<dir>/tombstones` atomically (written aside, fsynced, renamed); the caller fsyncs `dir`.
pub fn write(dir: &Path, stones: &Tombstones) -> Result<()> {
    let path = dir.join(TOMBSTONES_FILENAME);
    let tmp = dir.join(format!("{TOMBSTONES_FILENAME}.tmp"));
    let mut f = File::create(&tmp).map_err(BlockError::io("create", &tmp))?;
    f.write_all(&encode(stones)).map_err(BlockError::io("write", &tmp))?;
    f.sync_all().map_err(BlockError::io("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(BlockError::io("rename", &tmp))
}

/// Reads `<dir>/tombstones`; a missing file is empty.
pub fn read(dir: &Path) -> Result<Tombstones> {
    let path = dir.join(TOMBSTONES_FILENAME);
    match fs::read(&path) {
        Ok(b) => decode(&b).map_err(|c| BlockError::corrupt(&path, c)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Tombstones::new()),
        Err(e) => Err(BlockError::Io { op: "read", path, source: e }),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn stones(v: &[(u64, i64, i64)]) -> Tombstones {
        let mut t = Tombstones::new();
        for &(r, a, b) in v {
            t.add(r, Interval::new(a, b));
        }
        t
    }

    #[test]
    fn empty_file_is_prometheus_bytes() {
        assert_eq!(encode(&Tombstones::new()), [0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0]);
        assert_eq!(decode(&encode(&Tombstones::new())).unwrap(), Tombstones::new());
    }

    /// Bytes as Prometheus 2.42's `tombstones.WriteFile` lays them out, built by hand from the
    /// format (series 5 then 3, in Go's map order; absolute max times; CRC over the entries).
    #[test]
    fn decodes_prometheus_layout() {
        let mut entries = vec![TOMBSTONES_FORMAT_V1];
        for (r, a, b) in [(5u64, 1_699_999_200_000i64, 1_699_999_800_000i64), (3, 1_699_999_200_000, 1_700_006_340_000)]
        {
            put_uvarint(&mut entries, r);
            put_varint(&mut entries, a);
            put_varint(&mut entries, b);
        }
        let mut file = MAGIC_TOMBSTONE.to_be_bytes().to_vec();
        file.extend_from_slice(&entries);
        file.extend_from_slice(&crc32c(&entries[1..]).to_be_bytes());
        // The file Prometheus 2.42 wrote for these two deletions.
        assert_eq!(
            file,
            vec![
                0x01, 0x30, 0xba, 0x30, 0x01, 0x05, 0x80, 0xcc, 0xc9, 0xfd, 0xf9, 0x62, 0x80, 0xeb, 0x92, 0xfe, 0xf9,
                0x62, 0x03, 0x80, 0xcc, 0xc9, 0xfd, 0xf9, 0x62, 0xc0, 0x96, 0xb1, 0x84, 0xfa, 0x62, 0xd1, 0xfd, 0xc7,
                0xad,
            ],
            "{file:02x?}",
        );
        let got = decode(&file).unwrap();
        assert_eq!(
            got,
            stones(&[(3, 1_699_999_200_000, 1_700_006_340_000), (5, 1_699_999_200_000, 1_699_999_800_000)])
        );
        assert_eq!(got.total(), 2);
    }

    #[test]
    fn round_trip_and_damage() {
        let t = stones(&[(1, -5, 10), (1, 20, 30), (77, i64::MIN, i64::MAX), (1, 11, 12)]);
        assert_eq!(t.get(1).unwrap().as_slice(), [Interval::new(-5, 12), Interval::new(20, 30)]);
        let b = encode(&t);
        assert_eq!(decode(&b).unwrap(), t);
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "cut {cut}");
        }
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(decode(&c).is_err(), "flip {i}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), Tombstones::new());
        write(dir.path(), &t).unwrap();
        assert_eq!(read(dir.path()).unwrap(), t);
        assert!(!dir.path().join("tombstones.tmp").exists());
    }

    proptest! {
        #[test]
        fn round_trip(v in prop::collection::vec((0u64..1000, any::<i64>(), 0i64..1_000_000), 0..50)) {
            let t = stones(&v.iter().map(|&(r, a, l)| (r, a, a.saturating_add(l))).collect::<Vec<_>>());
            prop_assert_eq!(decode(&encode(&t)).unwrap(), t);
        }

        #[test]
        fn decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&b);
        }
    }
}
