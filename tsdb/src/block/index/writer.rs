//! Index writer. Builds the whole index in one pass over sorted series.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{IndexChunk, Toc, FORMAT_V2, MAGIC_INDEX};
use crate::block::encoding::{crc32c, put_be32, put_uvarint, put_uvarint_str, put_varint};
use crate::block::error::{BlockError, Result};
use crate::labels::Labels;

/// Largest index Prometheus accepts: series refs are u32 multiples of 16.
const MAX_INDEX_SIZE: u64 = 16 * u32::MAX as u64;

struct Out<W: Write> {
    w: W,
    pos: u64,
    path: PathBuf,
}

impl<W: Write> Out<W> {
    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.w.write_all(b).map_err(BlockError::io("write", &self.path))?;
        self.pos += b.len() as u64;
        if self.pos > MAX_INDEX_SIZE {
            return Err(BlockError::invalid("index exceeds 64 GiB"));
        }
        Ok(())
    }

    fn pad(&mut self, align: u64) -> Result<()> {
        let rem = self.pos % align;
        if rem != 0 {
            self.write(&vec![0u8; (align - rem) as usize])?;
        }
        Ok(())
    }

    /// Writes `len u32 | payload | crc32c(payload)`.
    fn section(&mut self, payload: &[u8]) -> Result<()> {
        let len = u32::try_from(payload.len()).map_err(|_| BlockError::invalid("index section exceeds 4 GiB"))?;
        self.write(&len.to_be_bytes())?;
        self.write(payload)?;
        self.write(&crc32c(payload).to_be_bytes())
    }
}

/// Writes the index for `series` (sorted strictly by labels, chunk refs non-decreasing) to `path` and fsyncs it.
pub fn write_index(path: &Path, series: &[(Labels, Vec<IndexChunk>)]) -> Result<()> {
    let f = File::create(path).map_err(BlockError::io("create", path))?;
    let mut out = Out { w: BufWriter::with_capacity(1 << 20, f), pos: 0, path: path.to_path_buf() };
    write_to(&mut out, series)?;
    let f = out.w.into_inner().map_err(|e| BlockError::Io {
        op: "write",
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    f.sync_all().map_err(BlockError::io("fsync", path))
}

/// The index bytes for `series`, in memory (tests, small indexes).
pub fn encode_index(series: &[(Labels, Vec<IndexChunk>)]) -> Result<Vec<u8>> {
    let mut out = Out { w: Vec::new(), pos: 0, path: PathBuf::from("<memory>") };
    write_to(&mut out, series)?;
    Ok(out.w)
}

fn write_to<W: Write>(out: &mut Out<W>, series: &[(Labels, Vec<IndexChunk>)]) -> Result<()> {
    // Check the input the way Prometheus's Writer.AddSeries does.
    let mut last_ref = 0u64;
    for (i, (labels, chunks)) in series.iter().enumerate() {
        if i > 0 && series.get(i - 1).is_some_and(|(prev, _)| prev >= labels) {
            return Err(BlockError::invalid(format!("series {labels} not sorted after its predecessor")));
        }
        for c in chunks {
            if c.chunk_ref < last_ref {
                return Err(BlockError::invalid(format!("chunk refs of {labels} decrease")));
            }
            last_ref = c.chunk_ref;
        }
    }

    // Symbols: every label name and value, sorted byte-wise, plus "" (the all-postings key): Prometheus's
    // head and compactor take symbols from the postings, so its indexes always contain "" as symbol 0.
    let mut symbol_set: BTreeSet<&str> = BTreeSet::new();
    symbol_set.insert("");
    for (labels, _) in series {
        for (n, v) in labels.iter() {
            symbol_set.insert(n);
            symbol_set.insert(v);
        }
    }
    let symbols: HashMap<&str, u32> = symbol_set.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
    let sym = |s: &str| symbols.get(s).copied().unwrap_or(0);

    let mut toc = Toc::default();
    let mut hdr = Vec::with_capacity(5);
    put_be32(&mut hdr, MAGIC_INDEX);
    hdr.push(FORMAT_V2);
    out.write(&hdr)?;

    toc.symbols = out.pos;
    let mut buf = Vec::new();
    put_be32(&mut buf, symbol_set.len() as u32);
    for s in &symbol_set {
        put_uvarint_str(&mut buf, s);
    }
    out.section(&buf)?;

    // Series, each at a multiple of 16; ref = offset / 16. Postings keyed by (name symbol, value symbol),
    // which sorts like (name, value) because symbol numbers follow string order.
    toc.series = out.pos;
    let mut refs = Vec::with_capacity(series.len());
    let mut postings: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    for (labels, chunks) in series {
        out.pad(16)?;
        let sref = u32::try_from(out.pos / 16).map_err(|_| BlockError::invalid("series section exceeds 64 GiB"))?;
        refs.push(sref);
        buf.clear();
        put_uvarint(&mut buf, labels.len() as u64);
        for (n, v) in labels.iter() {
            put_uvarint(&mut buf, u64::from(sym(n)));
            put_uvarint(&mut buf, u64::from(sym(v)));
            postings.entry((sym(n), sym(v))).or_default().push(sref);
        }
        put_uvarint(&mut buf, chunks.len() as u64);
        if let Some((first, rest)) = chunks.split_first() {
            put_varint(&mut buf, first.min_t);
            put_uvarint(&mut buf, first.max_t.wrapping_sub(first.min_t) as u64);
            put_uvarint(&mut buf, first.chunk_ref);
            let (mut t0, mut ref0) = (first.max_t, first.chunk_ref as i64);
            for c in rest {
                put_uvarint(&mut buf, c.min_t.wrapping_sub(t0) as u64);
                put_uvarint(&mut buf, c.max_t.wrapping_sub(c.min_t) as u64);
                t0 = c.max_t;
                put_varint(&mut buf, (c.chunk_ref as i64).wrapping_sub(ref0));
                ref0 = c.chunk_ref as i64;
            }
        }
        let mut len = Vec::with_capacity(5);
        put_uvarint(&mut len, buf.len() as u64);
        out.write(&len)?;
        out.write(&buf)?;
        out.write(&crc32c(&buf).to_be_bytes())?;
    }

    // Legacy label indices: one per label name, 4-byte aligned, listing its value symbols in order.
    toc.label_indices = out.pos;
    let mut by_name: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(n, v) in postings.keys() {
        by_name.entry(n).or_default().push(v);
    }
    let mut label_index_offsets = Vec::with_capacity(by_name.len());
    for (name, values) in &by_name {
        out.pad(4)?;
        label_index_offsets.push((*name, out.pos));
        buf.clear();
        put_be32(&mut buf, 1);
        put_be32(&mut buf, values.len() as u32);
        for v in values {
            put_be32(&mut buf, *v);
        }
        out.section(&buf)?;
    }

    // Postings: the all-postings list ("", "") first, then every label pair in order; 4-byte aligned.
    toc.postings = out.pos;
    let mut postings_table = Vec::new();
    let mut table_entries = 0u32;
    let mut write_postings = |out: &mut Out<W>, name: &str, value: &str, list: &[u32]| -> Result<()> {
        out.pad(4)?;
        put_uvarint(&mut postings_table, 2);
        put_uvarint_str(&mut postings_table, name);
        put_uvarint_str(&mut postings_table, value);
        put_uvarint(&mut postings_table, out.pos);
        table_entries += 1;
        let mut b = Vec::with_capacity(4 + 4 * list.len());
        put_be32(&mut b, list.len() as u32);
        for r in list {
            put_be32(&mut b, *r);
        }
        out.section(&b)
    };
    write_postings(out, "", "", &refs)?;
    let names: Vec<&str> = symbol_set.iter().copied().collect();
    let name_of = |id: u32| names.get(id as usize).copied().unwrap_or("");
    for ((n, v), list) in &postings {
        write_postings(out, name_of(*n), name_of(*v), list)?;
    }

    toc.label_indices_table = out.pos;
    buf.clear();
    put_be32(&mut buf, label_index_offsets.len() as u32);
    for (name, off) in &label_index_offsets {
        put_uvarint(&mut buf, 1);
        put_uvarint_str(&mut buf, name_of(*name));
        put_uvarint(&mut buf, *off);
    }
    out.section(&buf)?;

    toc.postings_table = out.pos;
    let mut table = Vec::with_capacity(4 + postings_table.len());
    put_be32(&mut table, table_entries);
    table.extend_from_slice(&postings_table);
    out.section(&table)?;

    out.write(&toc.encode())?;
    out.w.flush().map_err(BlockError::io("flush", &out.path))
}
