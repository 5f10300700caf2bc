//! The `tombstones` file: deleted time intervals per series.
//!
//! ```text
//! magic u32 = 0x0130BA30 | version u8 = 1 | (series_ref uvarint64 | mint varint64 | maxt varint64)* | crc32c u32
//! ```
//! The CRC covers the entries only. An empty file is 9 bytes. A missing file reads as empty.
#![warn(clippy::indexing_slicing)]

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::encoding::{crc32c, put_uvarint, put_varint, Dec};
use super::error::{BlockError, Corrupt, Result};

/// File name of the tombstones file.
pub const TOMBSTONES_FILENAME: &str = "tombstones";
/// Magic number of the tombstones file.
pub const MAGIC_TOMBSTONE: u32 = 0x0130_BA30;
/// Tombstones format version.
pub const TOMBSTONES_FORMAT_V1: u8 = 1;

/// A deleted interval of one series: samples with `min_t <= t <= max_t` are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tombstone {
    /// Index series reference.
    pub series_ref: u64,
    /// First deleted timestamp.
    pub min_t: i64,
    /// Last deleted timestamp (inclusive).
    pub max_t: i64,
}

/// Encodes tombstones exactly like Prometheus (entries in the given order).
pub fn encode(stones: &[Tombstone]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + stones.len() * 8);
    out.extend_from_slice(&MAGIC_TOMBSTONE.to_be_bytes());
    out.push(TOMBSTONES_FORMAT_V1);
    for s in stones {
        put_uvarint(&mut out, s.series_ref);
        put_varint(&mut out, s.min_t);
        put_varint(&mut out, s.max_t);
    }
    let crc = crc32c(out.get(5..).unwrap_or_default());
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a tombstones file.
pub(crate) fn decode(b: &[u8]) -> std::result::Result<Vec<Tombstone>, Corrupt> {
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
    let mut out = Vec::new();
    while d.remaining() > 0 {
        let series_ref = d.uvarint()?;
        let min_t = d.varint()?;
        let max_t = d.varint()?;
        out.push(Tombstone { series_ref, min_t, max_t });
    }
    out.sort();
    Ok(out)
}

/// Writes `<dir>/tombstones` and fsyncs it (the caller fsyncs `dir`).
pub fn write(dir: &Path, stones: &[Tombstone]) -> Result<()> {
    let path = dir.join(TOMBSTONES_FILENAME);
    let mut f = File::create(&path).map_err(BlockError::io("create", &path))?;
    f.write_all(&encode(stones)).map_err(BlockError::io("write", &path))?;
    f.sync_all().map_err(BlockError::io("fsync", &path))
}

/// Reads `<dir>/tombstones`, sorted by series ref then time; a missing file is empty.
pub fn read(dir: &Path) -> Result<Vec<Tombstone>> {
    let path = dir.join(TOMBSTONES_FILENAME);
    match fs::read(&path) {
        Ok(b) => decode(&b).map_err(|c| BlockError::corrupt(&path, c)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(BlockError::Io { op: "read", path, source: e }),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_prometheus_bytes() {
        assert_eq!(encode(&[]), [0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0]);
        assert_eq!(decode(&encode(&[])).unwrap(), []);
    }

    #[test]
    fn round_trip_and_damage() {
        let stones = vec![
            Tombstone { series_ref: 1, min_t: -5, max_t: 10 },
            Tombstone { series_ref: 1, min_t: 20, max_t: 30 },
            Tombstone { series_ref: 77, min_t: i64::MIN, max_t: i64::MAX },
        ];
        let b = encode(&stones);
        assert_eq!(decode(&b).unwrap(), stones);
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "cut {cut}");
        }
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(decode(&c).is_err(), "flip {i}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), []);
        write(dir.path(), &stones).unwrap();
        assert_eq!(read(dir.path()).unwrap(), stones);
    }
}
