//! Byte-level helpers shared by the block file formats: Go-compatible varints, big-endian integers and
//! a bounds-checked decoding cursor that never panics.
#![warn(clippy::indexing_slicing)]

use super::error::Corrupt;

/// CRC-32C (Castagnoli), as every Prometheus file format uses.
pub(crate) fn crc32c(b: &[u8]) -> u32 {
    crc32c::crc32c(b)
}

pub(crate) use crate::varint::{put_uvarint, put_varint, uvarint};

pub(crate) fn put_uvarint_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_be32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A cursor over untrusted bytes. Every read is bounds-checked and reports the absolute file offset
/// (`base + position`) on failure.
#[derive(Debug, Clone)]
pub(crate) struct Dec<'a> {
    b: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Dec<'a> {
    /// A cursor over `b`, whose first byte is at file offset `base`.
    pub(crate) fn new(b: &'a [u8], base: usize) -> Self {
        Dec { b, pos: 0, base }
    }

    /// Absolute file offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    pub(crate) fn err(&self, reason: &'static str) -> Corrupt {
        Corrupt::at(self.offset(), reason)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.err("length overflows"))?;
        let s = self.b.get(self.pos..end).ok_or_else(|| self.err("unexpected end of data"))?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Corrupt> {
        self.bytes(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Corrupt> {
        let b = self.bytes(1)?;
        b.first().copied().ok_or_else(|| self.err("unexpected end of data"))
    }

    pub(crate) fn be32(&mut self) -> Result<u32, Corrupt> {
        let b = self.bytes(4)?;
        let a: [u8; 4] = b.try_into().map_err(|_| self.err("unexpected end of data"))?;
        Ok(u32::from_be_bytes(a))
    }

    pub(crate) fn be64(&mut self) -> Result<u64, Corrupt> {
        let b = self.bytes(8)?;
        let a: [u8; 8] = b.try_into().map_err(|_| self.err("unexpected end of data"))?;
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, Corrupt> {
        let rest = self.b.get(self.pos..).unwrap_or_default();
        let (v, n) = uvarint(rest).ok_or_else(|| self.err("malformed uvarint"))?;
        self.pos += n;
        Ok(v)
    }

    /// A uvarint that must fit in `usize` and be at most the remaining bytes (used for lengths and counts).
    pub(crate) fn uvarint_len(&mut self) -> Result<usize, Corrupt> {
        let v = self.uvarint()?;
        usize::try_from(v).ok().filter(|&n| n <= self.remaining()).ok_or_else(|| self.err("length exceeds data"))
    }

    pub(crate) fn uvarint32(&mut self) -> Result<u32, Corrupt> {
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| self.err("uvarint exceeds 32 bits"))
    }

    pub(crate) fn varint(&mut self) -> Result<i64, Corrupt> {
        let u = self.uvarint()?;
        Ok(crate::varint::unzigzag(u))
    }

    pub(crate) fn uvarint_bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.uvarint_len()?;
        self.bytes(n)
    }

    pub(crate) fn uvarint_str(&mut self) -> Result<&'a str, Corrupt> {
        let at = self.offset();
        let b = self.uvarint_bytes()?;
        std::str::from_utf8(b).map_err(|_| Corrupt::at(at, "string is not UTF-8"))
    }
}

/// Reads a `len u32 | payload[len] | crc32c(payload) u32` section at `off` of `file`, verifies the CRC and
/// returns the payload (a cursor positioned at the payload's first byte).
pub(crate) fn crc_section(file: &[u8], off: usize) -> Result<Dec<'_>, Corrupt> {
    let head = file.get(off..).ok_or(Corrupt::at(off, "section offset beyond end of file"))?;
    let mut d = Dec::new(head, off);
    let len = d.be32()? as usize;
    let payload = d.bytes(len)?;
    let crc = d.be32()?;
    if crc32c(payload) != crc {
        return Err(Corrupt::at(off, "checksum mismatch"));
    }
    Ok(Dec::new(payload, off + 4))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_like_go() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(uvarint(&b), Some((v, b.len())));
        }
        for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Dec::new(&b, 0).varint(), Ok(v));
        }
        // Go: PutVarint(-1) = 0x01, PutVarint(1) = 0x02.
        let mut b = Vec::new();
        put_varint(&mut b, -1);
        put_varint(&mut b, 1);
        assert_eq!(b, [1, 2]);
        assert_eq!(uvarint(&[0xff; 10]), None);
        assert_eq!(uvarint(&[0x80]), None);
        assert_eq!(uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), None);
    }

    #[test]
    fn cursor_never_reads_past_end() {
        let mut d = Dec::new(&[0, 5, 1], 10);
        assert!(d.be32().is_err());
        assert_eq!(d.u8(), Ok(0));
        assert_eq!(d.uvarint_bytes().unwrap_err().offset, 12);
        assert_eq!(Dec::new(&[0], 0).uvarint_bytes(), Ok(&[][..]));
        assert!(Dec::new(&[5, b'a'], 0).uvarint_str().is_err());
        assert!(Dec::new(&[1, 0xff], 0).uvarint_str().is_err());
    }

    #[test]
    fn crc_section_checks() {
        let mut f = vec![9u8; 3];
        put_be32(&mut f, 2);
        f.extend_from_slice(b"ab");
        put_be32(&mut f, crc32c(b"ab"));
        assert_eq!(crc_section(&f, 3).unwrap().bytes(2).unwrap(), b"ab");
        assert!(crc_section(&f, 4).is_err());
        assert!(crc_section(&f, 100).is_err());
        f[7] = b'x';
        assert!(crc_section(&f, 3).is_err());
    }
}
