//! Where a block file's CRC32C checksums sit, so that the `block` target can recompute them after a
//! mutation: a mutated file whose checksums still match reaches the decoders behind them (labels,
//! chunk references, postings, XOR chunks) instead of stopping at "checksum mismatch".
//!
//! The sections are found in the valid file: in an index, every offset where a length (4-byte
//! big-endian, or a uvarint for series entries) is followed by that many bytes and their checksum,
//! plus the table of contents; in a chunk segment, the chunks walked from the header. A mutation that
//! keeps the file's length keeps these positions, so their checksums can be recomputed.

use std::ops::Range;

/// One checksummed range and where its big-endian CRC32C is stored.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub(crate) content: Range<usize>,
    pub(crate) crc_at: usize,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

fn section_if_valid(b: &[u8], content: Range<usize>) -> Option<Section> {
    let crc_at = content.end;
    let stored = be32(b, crc_at)?;
    (crc32c::crc32c(b.get(content.clone())?) == stored).then_some(Section { content, crc_at })
}

/// Checksummed sections of a valid index file.
pub(crate) fn index_sections(b: &[u8]) -> Vec<Section> {
    const TOC_LEN: usize = 52;
    let mut out = Vec::new();
    for off in 0..b.len() {
        if let Some(len) = be32(b, off) {
            let start = off + 4;
            if let Some(s) = start.checked_add(len as usize).and_then(|end| section_if_valid(b, start..end)) {
                out.push(s);
            }
        }
        if let Some((len, n)) = b.get(off..).and_then(uvarint) {
            let start = off + n;
            let end = usize::try_from(len).ok().and_then(|l| start.checked_add(l));
            if let Some(s) = end.filter(|&e| e > start).and_then(|e| section_if_valid(b, start..e)) {
                out.push(s);
            }
        }
    }
    if let Some(toc) = b.len().checked_sub(TOC_LEN) {
        out.extend(section_if_valid(b, toc..toc + 48));
    }
    // A section inside another's content is fixed first.
    out.sort_by_key(|s| s.content.len());
    out
}

/// Checksummed chunks of a valid chunk segment (8-byte header, then `len, encoding, data, crc`).
pub(crate) fn chunk_sections(b: &[u8]) -> Vec<Section> {
    let mut out = Vec::new();
    let mut off = 8;
    while let Some((len, n)) = b.get(off..).and_then(uvarint) {
        let start = off + n;
        let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l + 1)) else {
            break;
        };
        let Some(s) = section_if_valid(b, start..end) else {
            break;
        };
        off = s.crc_at + 4;
        out.push(s);
    }
    out
}

/// Recomputes the checksums of `sections` in `b` (which must have the length they were found in).
pub(crate) fn fix(b: &mut [u8], sections: &[Section]) {
    for s in sections {
        let Some(content) = b.get(s.content.clone()) else {
            continue;
        };
        let crc = crc32c::crc32c(content).to_be_bytes();
        if let Some(dst) = b.get_mut(s.crc_at..s.crc_at + 4) {
            dst.copy_from_slice(&crc);
        }
    }
}

/// Recomputes a tombstones file's checksum (over everything between the 5-byte header and itself).
pub(crate) fn fix_tombstones(b: &mut [u8]) {
    let Some(crc_at) = b.len().checked_sub(4).filter(|&at| at >= 5) else {
        return;
    };
    let crc = crc32c::crc32c(&b[5..crc_at]).to_be_bytes();
    b[crc_at..].copy_from_slice(&crc);
}
