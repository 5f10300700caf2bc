//! The block `index` file, format v2 (see Prometheus's
//! `tsdb/docs/format/index.md` and `tsdb/index/index.go`).
//!
//! ```text
//! header  := magic u32 = 0xBAAAD700 | version u8 = 2
//! body    := symbols | series (16-byte aligned) | label indices | postings (4-byte aligned)
//!            | label offset table | postings offset table
//! trailer := TOC: six u64 section offsets | crc32c u32
//! ```

mod reader;
mod writer;

pub use reader::IndexReader;
pub use writer::{encode_index, write_index};

/// Magic number at the start of the index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// The index format version written and read.
pub const FORMAT_V2: u8 = 2;
/// Bytes of the header.
pub const HEADER_LEN: usize = 5;
/// Bytes of the TOC trailer.
pub const TOC_LEN: usize = 6 * 8 + 4;
/// File name of the index.
pub const INDEX_FILENAME: &str = "index";

/// A chunk as the index records it: time range and chunk reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexChunk {
    /// First sample timestamp.
    pub min_t: i64,
    /// Last sample timestamp (inclusive).
    pub max_t: i64,
    /// `(segment << 32) | offset` in the block's chunk files.
    pub chunk_ref: u64,
}

/// The table of contents: absolute offsets of the sections (0 = absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Toc {
    /// Symbol table.
    pub symbols: u64,
    /// First series entry.
    pub series: u64,
    /// First label index (legacy).
    pub label_indices: u64,
    /// Label offset table (legacy).
    pub label_indices_table: u64,
    /// First postings list.
    pub postings: u64,
    /// Postings offset table.
    pub postings_table: u64,
}

impl Toc {
    /// The 52 TOC bytes: offsets then their CRC.
    pub fn encode(&self) -> [u8; TOC_LEN] {
        let mut b = Vec::with_capacity(TOC_LEN);
        for v in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let crc = super::encoding::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        let mut out = [0u8; TOC_LEN];
        out.copy_from_slice(&b);
        out
    }
}

#[cfg(test)]
mod tests;
