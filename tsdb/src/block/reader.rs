//! Opening a persisted block and selecting series from it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use croaring::Bitmap;

use super::chunks::{sync_dir, ChunkReader};
use super::error::{BlockError, Result};
use super::index::{IndexReader, INDEX_FILENAME};
use super::meta::BlockMeta;
use super::tombstones::{self, Tombstones};
use crate::chunk::{ChunkBytes, ChunkData, ChunkMeta};
use crate::chunkenc::Encoding;
use crate::intervals::Interval;
use crate::labels::{Labels, MatchType, Matcher};

/// An open block: its meta, mapped index and chunk files, and tombstones.
///
/// Tombstones are applied by [`Block::select`]: a chunk a deleted interval covers whole is left out,
/// one it overlaps is handed out as it is, marked with the series' intervals, and its reader skips
/// the deleted samples ([`crate::chunk::ChunkIter`]); nothing is decoded or copied up front. Label
/// names and values ignore tombstones, as in Prometheus (its index still lists the series).
#[derive(Debug)]
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
    tombstones: Tombstones,
    size_bytes: u64,
}

impl Block {
    /// Opens the block in `dir`: reads meta.json, maps and checks the index (header, TOC, symbols,
    /// postings offset table) and the chunk segment headers, and reads the tombstones.
    pub fn open(dir: &Path) -> Result<Block> {
        let meta = BlockMeta::read(dir)?;
        let index = IndexReader::open(&dir.join(INDEX_FILENAME))?;
        let chunks = ChunkReader::open(&dir.join("chunks"))?;
        let tombstones = tombstones::read(dir)?;
        let size_bytes = dir_size(dir);
        Ok(Block { dir: dir.to_path_buf(), meta, index, chunks, tombstones, size_bytes })
    }

    /// Deletes the samples of `[mint, maxt]` of the series matching `matchers`, as Prometheus's
    /// `Block.Delete`: each matching series with a chunk in the range gets the interval clamped to
    /// its own first and last timestamps. Writes the new `tombstones` file and `meta.json` (its
    /// `numTombstones`), each replaced atomically, fsyncs the directory and returns the block opened
    /// again with them and the number of series that got the interval; `None` (nothing written)
    /// when no series has samples in the range. Readers of this `Block` keep the tombstones they
    /// started with.
    pub fn delete(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Option<(Block, u64)>> {
        let mut stones = self.tombstones.clone();
        let mut added = 0u64;
        for sref in self.select_refs(matchers)?.iter() {
            let (_, metas) = self.index.series(sref)?;
            if !metas.iter().any(|m| m.min_t <= maxt && m.max_t >= mint) {
                continue;
            }
            let (Some(first), Some(last)) = (metas.first(), metas.last()) else { continue };
            stones.add(u64::from(sref), Interval::new(mint.max(first.min_t), maxt.min(last.max_t)));
            added += 1;
        }
        if added == 0 {
            return Ok(None);
        }
        tombstones::write(&self.dir, &stones)?;
        let mut meta = self.meta.clone();
        meta.stats.num_tombstones = stones.total();
        meta.write(&self.dir)?;
        sync_dir(&self.dir)?;
        Ok(Some((Block::open(&self.dir)?, added)))
    }

    /// Reads every checksummed part of the block once: the postings list of every label pair, every
    /// series entry, and every chunk a series refers to (CRC32C each, and a known encoding: XOR,
    /// integer or float histogram; the TOC, symbol table and
    /// postings offset table are checked by [`Block::open`]). The first damage found is returned
    /// with its file and offset. Reads the whole block: meant for open time, not per query.
    pub fn verify(&self) -> Result<()> {
        let all = self.index.all_postings()?;
        for name in self.index.label_names() {
            for value in self.index.label_values(name) {
                let refs = self.index.postings(name, value)?;
                if !refs.is_subset(&all) {
                    return Err(BlockError::Corruption {
                        path: self.dir.join(INDEX_FILENAME),
                        offset: 0,
                        reason: format!("postings of {name}={value:?} name series missing from the index").into(),
                    });
                }
            }
        }
        for sref in all.iter() {
            let (_, metas) = self.index.series(sref)?;
            for m in metas {
                let (enc, _) = self.chunks.chunk(m.chunk_ref)?;
                self.encoding(enc, m.chunk_ref)?;
            }
        }
        Ok(())
    }

    /// The block's meta.json.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// Bytes of all files of the block, measured at open (for size-based retention).
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The block directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index reader.
    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    /// The chunk reader.
    pub fn chunk_reader(&self) -> &ChunkReader {
        &self.chunks
    }

    /// The deleted intervals of the block's series.
    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// Number of series in the index.
    pub fn series_count(&self) -> Result<u64> {
        Ok(self.index.all_postings()?.cardinality())
    }

    /// Refs of the series matching all `matchers` (no matchers: every series), with Prometheus's semantics:
    /// a matcher that matches `""` also selects series without the label.
    pub fn select_refs(&self, matchers: &[Matcher]) -> Result<Bitmap> {
        let mut acc: Option<Bitmap> = None;
        let mut minus: Vec<Bitmap> = Vec::new();
        for m in matchers {
            if m.matches_empty() {
                // Remove series whose (non-empty) value does not match.
                let mut b = Bitmap::new();
                for v in self.index.label_values(&m.name) {
                    if !m.matches(v) {
                        b.or_inplace(&self.index.postings(&m.name, v)?);
                    }
                }
                minus.push(b);
            } else {
                let b = if m.kind == MatchType::Equal {
                    self.index.postings(&m.name, &m.value)?
                } else {
                    let mut b = Bitmap::new();
                    for v in self.index.label_values(&m.name) {
                        if m.matches(v) {
                            b.or_inplace(&self.index.postings(&m.name, v)?);
                        }
                    }
                    b
                };
                acc = Some(match acc {
                    None => b,
                    Some(mut a) => {
                        a.and_inplace(&b);
                        a
                    }
                });
            }
        }
        let mut res = match acc {
            Some(a) => a,
            None => self.index.all_postings()?,
        };
        for b in &minus {
            res.andnot_inplace(b);
        }
        Ok(res)
    }

    /// The series matching `matchers`, sorted by labels, with their chunks: slices of the mapped chunk
    /// files (CRC verified), not copies, as [`ChunkData::Xor`], [`ChunkData::Histogram`] or
    /// [`ChunkData::FloatHistogram`] by their encoding byte.
    /// A series whose chunks the block's tombstones cover whole is left out (Prometheus's rule).
    pub fn select(&self, matchers: &[Matcher]) -> Result<Vec<(Labels, Vec<ChunkMeta>)>> {
        let refs = self.select_refs(matchers)?;
        let mut out = Vec::with_capacity(refs.cardinality() as usize);
        for sref in refs.iter() {
            let (labels, metas) = self.index.series(sref)?;
            let deleted = self.tombstones.get(u64::from(sref));
            let mut chunks = Vec::with_capacity(metas.len());
            for m in metas {
                if deleted.is_some_and(|d| d.covers(m.min_t, m.max_t)) {
                    continue;
                }
                let (enc, data) = self.chunks.chunk_slice(m.chunk_ref)?;
                let data = ChunkBytes::Mapped(data);
                let data = match self.encoding(enc, m.chunk_ref)? {
                    Encoding::Xor => ChunkData::Xor(data),
                    Encoding::Histogram => ChunkData::Histogram(data),
                    Encoding::FloatHistogram => ChunkData::FloatHistogram(data),
                };
                let chunk = ChunkMeta::new(m.min_t, m.max_t, data);
                chunks.extend(chunk.without_deleted(deleted));
            }
            if deleted.is_none() || !chunks.is_empty() {
                out.push((labels, chunks));
            }
        }
        Ok(out)
    }

    /// The encoding of the chunk at `chunk_ref` from its stored byte: XOR floats or native
    /// histograms; any other byte is corruption.
    fn encoding(&self, byte: u8, chunk_ref: u64) -> Result<Encoding> {
        Encoding::try_from(byte).map_err(|e| BlockError::Corruption {
            path: self.dir.join("chunks"),
            offset: chunk_ref,
            reason: e.to_string().into(),
        })
    }

    /// Label names of the series matching `matchers` (all names if none), sorted.
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        if matchers.is_empty() {
            return Ok(self.index.label_names().into_iter().map(str::to_string).collect());
        }
        let mut names = BTreeSet::new();
        for sref in self.select_refs(matchers)?.iter() {
            let (labels, _) = self.index.series(sref)?;
            names.extend(labels.iter().map(|(n, _)| n.to_string()));
        }
        Ok(names.into_iter().collect())
    }

    /// Values of label `name` among the series matching `matchers` (all values if none), sorted.
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        let values = self.index.label_values(name);
        if matchers.is_empty() {
            return Ok(values.into_iter().map(str::to_string).collect());
        }
        let refs = self.select_refs(matchers)?;
        let mut out = Vec::new();
        for v in values {
            if self.index.postings(name, v)?.intersect(&refs) {
                out.push(v.to_string());
            }
        }
        Ok(out)
    }
}

/// Total size of the files below `dir` (0 for what cannot be read).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
