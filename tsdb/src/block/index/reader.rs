//! Index reader over a mapped (or in-memory) index file. Checks the header, TOC, symbol table and postings
//! offset table when opened; series entries and postings lists are CRC-checked when read. Never panics
//! on any content: every offset and length is bounds-checked.
#![warn(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use croaring::Bitmap;

use super::{IndexChunk, Toc, FORMAT_V2, HEADER_LEN, MAGIC_INDEX, TOC_LEN};
use crate::block::encoding::{crc32c, crc_section, Dec};
use crate::block::error::{BlockError, Corrupt, Result};
use crate::block::mmap::MappedFile;
use crate::labels::Labels;

#[derive(Debug)]
enum Source {
    Mapped(Arc<MappedFile>),
    Owned(Vec<u8>),
}

/// A read-only view of one index file.
///
/// The postings offset table is held in memory in full (name → sorted values with their list offsets);
/// Prometheus keeps only every 32nd entry, which matters only for very large indexes.
#[derive(Debug)]
pub struct IndexReader {
    src: Source,
    path: PathBuf,
    toc: Toc,
    /// Absolute offset of each symbol's uvarint length, by symbol number.
    symbols: Vec<u32>,
    postings: BTreeMap<String, Vec<(String, u64)>>,
}

impl IndexReader {
    /// Maps and checks the index file at `path`.
    pub fn open(path: &Path) -> Result<IndexReader> {
        let m = MappedFile::open(path)?;
        IndexReader::new(Source::Mapped(m), path.to_path_buf())
    }

    /// Reads an index from bytes in memory; `path` is only used in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<IndexReader> {
        IndexReader::new(Source::Owned(bytes), path.to_path_buf())
    }

    fn new(src: Source, path: PathBuf) -> Result<IndexReader> {
        let mut r = IndexReader { src, path, toc: Toc::default(), symbols: Vec::new(), postings: BTreeMap::new() };
        r.load().map_err(|c| BlockError::corrupt(&r.path, c))?;
        Ok(r)
    }

    fn bytes(&self) -> &[u8] {
        match &self.src {
            Source::Mapped(m) => m.bytes(),
            Source::Owned(v) => v,
        }
    }

    fn corrupt(&self, c: Corrupt) -> BlockError {
        BlockError::corrupt(&self.path, c)
    }

    fn load(&mut self) -> std::result::Result<(), Corrupt> {
        let b = self.bytes();
        if b.len() < HEADER_LEN + TOC_LEN {
            return Err(Corrupt::at(0, "index shorter than header and TOC"));
        }
        let mut d = Dec::new(b, 0);
        if d.be32()? != MAGIC_INDEX {
            return Err(Corrupt::at(0, "invalid index magic"));
        }
        if d.u8()? != FORMAT_V2 {
            return Err(Corrupt::at(4, "unsupported index version (only v2 is read)"));
        }
        let toc_at = b.len() - TOC_LEN;
        let toc_bytes = b.get(toc_at..).ok_or(Corrupt::at(toc_at, "no TOC"))?;
        let mut d = Dec::new(toc_bytes, toc_at);
        let mut offs = [0u64; 6];
        for o in &mut offs {
            *o = d.be64()?;
        }
        let crc = d.be32()?;
        if crc32c(toc_bytes.get(..48).unwrap_or_default()) != crc {
            return Err(Corrupt::at(toc_at, "TOC checksum mismatch"));
        }
        let [symbols, series, label_indices, label_indices_table, postings, postings_table] = offs;
        let toc = Toc { symbols, series, label_indices, label_indices_table, postings, postings_table };
        if offs.iter().any(|&o| o > toc_at as u64) {
            return Err(Corrupt::at(toc_at, "TOC offset beyond the index body"));
        }

        // Symbols.
        let mut d = crc_section(b, toc.symbols as usize)?;
        let count = d.be32()? as usize;
        let mut symbols = Vec::with_capacity(count.min(d.remaining()));
        for _ in 0..count {
            symbols.push(d.offset() as u32);
            d.uvarint_str()?;
        }

        // Postings offset table.
        let mut d = crc_section(b, toc.postings_table as usize)?;
        let count = d.be32()?;
        let mut table: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for _ in 0..count {
            if d.uvarint()? != 2 {
                return Err(d.err("postings offset table entry without 2 keys"));
            }
            let name = d.uvarint_str()?;
            let value = d.uvarint_str()?;
            let off = d.uvarint()?;
            let values = table.entry(name.to_string()).or_default();
            if values.last().is_some_and(|(last, _)| last.as_str() >= value) {
                return Err(d.err("postings offset table not sorted"));
            }
            values.push((value.to_string(), off));
        }
        self.toc = toc;
        self.symbols = symbols;
        self.postings = table;
        Ok(())
    }

    /// The table of contents.
    pub fn toc(&self) -> Toc {
        self.toc
    }

    /// Number of symbols.
    pub fn symbol_count(&self) -> usize {
        self.symbols.len()
    }

    /// The symbol with number `id`.
    pub fn symbol(&self, id: u32) -> Result<&str> {
        let off =
            *self.symbols.get(id as usize).ok_or_else(|| self.corrupt(Corrupt::at(0, "unknown symbol number")))?;
        let b = self.bytes();
        let mut d = Dec::new(b.get(off as usize..).unwrap_or_default(), off as usize);
        d.uvarint_str().map_err(|c| self.corrupt(c))
    }

    /// All label names, sorted (the all-postings key `""` excluded).
    pub fn label_names(&self) -> Vec<&str> {
        self.postings.keys().map(String::as_str).filter(|n| !n.is_empty()).collect()
    }

    /// The values of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<&str> {
        if name.is_empty() {
            return Vec::new();
        }
        self.postings.get(name).map(|v| v.iter().map(|(v, _)| v.as_str()).collect()).unwrap_or_default()
    }

    /// The series refs of label pair `name=value` (empty if absent).
    pub fn postings(&self, name: &str, value: &str) -> Result<Bitmap> {
        let Some(values) = self.postings.get(name) else { return Ok(Bitmap::new()) };
        let Ok(i) = values.binary_search_by(|(v, _)| v.as_str().cmp(value)) else { return Ok(Bitmap::new()) };
        let off = values.get(i).map(|(_, o)| *o).unwrap_or(0);
        self.postings_at(off)
    }

    /// The refs of every series in the index.
    pub fn all_postings(&self) -> Result<Bitmap> {
        self.postings("", "")
    }

    fn postings_at(&self, off: u64) -> Result<Bitmap> {
        let off = usize::try_from(off).map_err(|_| self.corrupt(Corrupt::at(0, "postings offset overflows")))?;
        let decode = || -> std::result::Result<Bitmap, Corrupt> {
            let mut d = crc_section(self.bytes(), off)?;
            let n = d.be32()? as usize;
            if n.checked_mul(4) != Some(d.remaining()) {
                return Err(Corrupt::at(off, "postings list length does not match its count"));
            }
            let mut refs = Vec::with_capacity(n);
            for _ in 0..n {
                refs.push(d.be32()?);
            }
            Ok(Bitmap::of(&refs))
        };
        decode().map_err(|c| self.corrupt(c))
    }

    /// The labels and chunk metas of the series with reference `sref` (offset / 16).
    pub fn series(&self, sref: u32) -> Result<(Labels, Vec<IndexChunk>)> {
        self.decode_series(sref).map_err(|c| self.corrupt(c))
    }

    fn decode_series(&self, sref: u32) -> std::result::Result<(Labels, Vec<IndexChunk>), Corrupt> {
        let off = sref as usize * 16;
        let b = self.bytes();
        if off < self.toc.series as usize || off >= b.len().saturating_sub(TOC_LEN) {
            return Err(Corrupt::at(off, "series reference outside the series section"));
        }
        let mut d = Dec::new(b.get(off..).unwrap_or_default(), off);
        let len = d.uvarint_len()?;
        let body_at = d.offset();
        let body = d.bytes(len)?;
        if crc32c(body) != d.be32()? {
            return Err(Corrupt::at(off, "series checksum mismatch"));
        }
        let mut d = Dec::new(body, body_at);
        let nlabels = d.uvarint_len()?;
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(nlabels);
        for _ in 0..nlabels {
            let at = d.offset();
            let n = self.symbol(d.uvarint32()?).map_err(|_| Corrupt::at(at, "bad label name symbol"))?;
            let v = self.symbol(d.uvarint32()?).map_err(|_| Corrupt::at(at, "bad label value symbol"))?;
            if n.is_empty() || v.is_empty() || pairs.last().is_some_and(|(last, _)| *last >= n) {
                return Err(Corrupt::at(at, "series labels empty, unsorted or duplicated"));
            }
            pairs.push((n, v));
        }
        let nchunks = d.uvarint_len()?;
        let mut chunks = Vec::with_capacity(nchunks);
        let (mut t0, mut ref0) = (0i64, 0i64);
        for i in 0..nchunks {
            let (min_t, chunk_ref);
            if i == 0 {
                min_t = d.varint()?;
                let max_t = min_t.wrapping_add(d.uvarint()? as i64);
                chunk_ref = d.uvarint()? as i64;
                t0 = max_t;
            } else {
                min_t = t0.wrapping_add(d.uvarint()? as i64);
                t0 = min_t.wrapping_add(d.uvarint()? as i64);
                chunk_ref = ref0.wrapping_add(d.varint()?);
            }
            ref0 = chunk_ref;
            chunks.push(IndexChunk { min_t, max_t: t0, chunk_ref: chunk_ref as u64 });
        }
        Ok((Labels::from_sorted_unchecked(&pairs), chunks))
    }
}
