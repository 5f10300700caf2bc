//! Writing a block: chunks, index, tombstones and meta.json into `<ulid>.tmp-for-creation/`, every file
//! and directory fsynced, then renamed to `<ulid>/` and the parent fsynced. A crash at any moment leaves
//! either no block directory or a complete one (plus possibly a `.tmp-for-creation` leftover that readers
//! ignore and startup deletes).

use std::fs;
use std::path::{Path, PathBuf};

use super::chunks::{sync_dir, ChunkWriter, DEFAULT_MAX_SEGMENT_SIZE};
use super::error::{BlockError, Result};
use super::index::{write_index, IndexChunk, INDEX_FILENAME};
use super::meta::{BlockMeta, BlockStats, Compaction, StrataMeta, META_VERSION};
use super::tombstones;
use crate::chunk::{ChunkData, ChunkMeta};
use crate::chunkenc::Encoding;
use crate::labels::Labels;
use crate::merge::{Chain, Merge};
use crate::recode::{encode_floats, recode, EncodedChunk, RecodeError};
/// Suffix of a block directory that is still being written.
pub const TMP_FOR_CREATION_SUFFIX: &str = ".tmp-for-creation";

/// Tunables of [`write_block_with`].
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Maximum size of one chunk segment file (Prometheus's default: 512 MiB).
    pub max_chunk_segment_size: u64,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { max_chunk_segment_size: DEFAULT_MAX_SEGMENT_SIZE }
    }
}

/// Writes a block of `series` covering `[min_t, max_t_exclusive)` into a new `<ulid>/` under `parent_dir`.
///
/// - `series` must be sorted strictly by labels (Prometheus's order); otherwise an `InvalidInput` error.
/// - A series may hold float and native histogram chunks. Chunks of a series should be sorted by `min_t`
///   and not overlap; if they do overlap they are merged (the earlier chunk's sample wins a timestamp tie,
///   whatever the kinds) and re-encoded. `ChunkData::Raw` chunks are encoded into XOR chunks of up to
///   [`SAMPLES_PER_CHUNK`](crate::chunk::SAMPLES_PER_CHUNK) samples, `ChunkData::RawHistograms` into integer or float histogram chunks of
///   up to as many, also cut where the kind changes or the histogram encoder asks for a new chunk (with
///   the counter-reset header it names). Chunks are written with their encoding byte (1, 2 or 3), and
///   `numSamples` counts float and histogram samples, as Prometheus 2.42 does. Samples outside the block's range are dropped
///   (chunks crossing the range are re-encoded), and so are deleted samples (chunks marked with deleted
///   intervals are re-encoded without them). Series left without samples are not written.
/// - `compaction.sources` empty means "this block is its own source" (a head block): it is set to the new
///   ULID.
///
/// Returns `None` and writes nothing when there are no samples.
pub fn write_block(
    parent_dir: &Path,
    series: impl IntoIterator<Item = (Labels, Vec<ChunkMeta>)>,
    min_t: i64,
    max_t_exclusive: i64,
    compaction: Compaction,
    strata_wal_cut: Option<u32>,
) -> Result<Option<BlockMeta>> {
    write_block_with(parent_dir, series, min_t, max_t_exclusive, compaction, strata_wal_cut, WriteOptions::default())
}

/// [`write_block`] with explicit [`WriteOptions`].
pub fn write_block_with(
    parent_dir: &Path,
    series: impl IntoIterator<Item = (Labels, Vec<ChunkMeta>)>,
    min_t: i64,
    max_t_exclusive: i64,
    compaction: Compaction,
    strata_wal_cut: Option<u32>,
    opts: WriteOptions,
) -> Result<Option<BlockMeta>> {
    let series = series.into_iter().map(Ok);
    write_block_fallible(parent_dir, series, min_t, max_t_exclusive, compaction, strata_wal_cut, opts)
}

/// [`write_block_with`] for series that are read while the block is written: the first `Err` aborts the
/// write (nothing is left on disk) and comes back as [`BlockError::Input`].
pub fn write_block_fallible(
    parent_dir: &Path,
    series: impl IntoIterator<Item = crate::Result<(Labels, Vec<ChunkMeta>)>>,
    min_t: i64,
    max_t_exclusive: i64,
    compaction: Compaction,
    strata_wal_cut: Option<u32>,
    opts: WriteOptions,
) -> Result<Option<BlockMeta>> {
    if min_t >= max_t_exclusive {
        return Err(BlockError::invalid(format!("empty block range [{min_t}, {max_t_exclusive})")));
    }
    let ulid = super::ulid::new_ulid();
    let tmp = parent_dir.join(format!("{ulid}{TMP_FOR_CREATION_SUFFIX}"));
    let mut w = Writer { tmp: tmp.clone(), chunks: None, opts, index: Vec::new(), stats: BlockStats::default() };
    let res = w.write_all(series, min_t, max_t_exclusive).and_then(|()| {
        if w.stats.num_samples == 0 {
            return Ok(None);
        }
        let mut compaction = compaction;
        if compaction.sources.is_empty() {
            compaction.sources = vec![ulid];
        }
        compaction.sources.sort();
        let meta = BlockMeta {
            ulid,
            min_time: min_t,
            max_time: max_t_exclusive,
            stats: w.stats,
            compaction,
            version: META_VERSION,
            strata: strata_wal_cut.map(|wal_segment_cut| StrataMeta { wal_segment_cut }),
        };
        w.finish(&meta)?;
        let dir = parent_dir.join(ulid.to_string());
        fs::rename(&tmp, &dir).map_err(BlockError::io("rename", &tmp))?;
        sync_dir(parent_dir)?;
        Ok(Some(meta))
    });
    if !matches!(res, Ok(Some(_))) && tmp.exists() {
        let _ = fs::remove_dir_all(&tmp);
    }
    res
}

struct Writer {
    tmp: PathBuf,
    chunks: Option<ChunkWriter>,
    opts: WriteOptions,
    index: Vec<(Labels, Vec<IndexChunk>)>,
    stats: BlockStats,
}

impl Writer {
    fn write_all(
        &mut self,
        series: impl IntoIterator<Item = crate::Result<(Labels, Vec<ChunkMeta>)>>,
        min_t: i64,
        max_t_excl: i64,
    ) -> Result<()> {
        let mut prev: Option<Labels> = None;
        for item in series {
            let (labels, chunks) = item.map_err(|e| BlockError::Input { source: Box::new(e) })?;
            if let Some(p) = &prev {
                if *p >= labels {
                    return Err(BlockError::invalid(format!("series {labels} is not sorted after {p}")));
                }
            }
            let out = prepare_chunks(&labels, &chunks, min_t, max_t_excl)?;
            prev = Some(labels.clone());
            if out.is_empty() {
                continue;
            }
            if self.chunks.is_none() {
                if self.tmp.exists() {
                    fs::remove_dir_all(&self.tmp).map_err(BlockError::io("remove", &self.tmp))?;
                }
                fs::create_dir_all(&self.tmp).map_err(BlockError::io("create dir", &self.tmp))?;
                self.chunks = Some(ChunkWriter::new(&self.tmp.join("chunks"), self.opts.max_chunk_segment_size)?);
            }
            let Some(cw) = self.chunks.as_mut() else { continue };
            let mut metas = Vec::with_capacity(out.len());
            for c in out {
                let chunk_ref = cw.write(c.encoding.into(), &c.bytes)?;
                metas.push(IndexChunk { min_t: c.min_t, max_t: c.max_t, chunk_ref });
                self.stats.num_samples += c.samples;
                self.stats.num_chunks += 1;
            }
            self.stats.num_series += 1;
            self.index.push((labels, metas));
        }
        Ok(())
    }

    fn finish(&mut self, meta: &BlockMeta) -> Result<()> {
        if let Some(cw) = self.chunks.take() {
            cw.finish()?;
        }
        write_index(&self.tmp.join(INDEX_FILENAME), &self.index)?;
        tombstones::write(&self.tmp, &tombstones::Tombstones::new())?;
        meta.write(&self.tmp)?;
        sync_dir(&self.tmp)
    }
}

/// The sample count in the first two bytes of an XOR or histogram chunk.
fn sample_count(b: &[u8]) -> Option<u16> {
    b.first_chunk::<2>().map(|h| u16::from_be_bytes(*h))
}

/// Turns a series' float chunks into XOR chunks inside `[min_t, max_t_excl)`, sorted and not overlapping
/// (a series with histogram chunks goes to [`prepare_mixed_chunks`]):
/// XOR chunks inside the range without deleted samples as they are, the rest decoded and re-encoded
/// without the deleted samples; overlapping chunks are
/// merged (the earlier-listed chunk's sample wins a timestamp tie).
fn prepare_chunks(labels: &Labels, chunks: &[ChunkMeta], min_t: i64, max_t_excl: i64) -> Result<Vec<EncodedChunk>> {
    if chunks.iter().any(|c| c.data.is_histogram()) {
        return prepare_mixed_chunks(labels, chunks, min_t, max_t_excl);
    }
    for c in chunks {
        if let ChunkData::Raw(s) = &c.data {
            if s.windows(2).any(|w| matches!(w, [a, b] if a.0 >= b.0)) {
                return Err(BlockError::invalid(format!("series {labels}: raw chunk samples not strictly increasing")));
            }
        }
    }
    let maxt = max_t_excl - 1;
    let mut out: Vec<EncodedChunk> = Vec::with_capacity(chunks.len());
    let disjoint = chunks.windows(2).all(|w| matches!(w, [a, b] if a.max_t < b.min_t));
    if !disjoint {
        let mut merged = Merge::new(chunks, min_t, maxt);
        let samples: Vec<(i64, f64)> = merged.by_ref().collect();
        if let Some(e) = merged.error() {
            return Err(BlockError::invalid(format!("series {labels}: {e}")));
        }
        encode_floats(&samples, &mut out);
        return Ok(out);
    }
    for c in chunks {
        if !c.overlaps(min_t, maxt) {
            continue;
        }
        if let (ChunkData::Xor(b), None) = (&c.data, &c.deleted) {
            let n = sample_count(b)
                .ok_or_else(|| BlockError::invalid(format!("series {labels}: XOR chunk shorter than its header")))?;
            if n == 0 {
                continue;
            }
            if c.min_t >= min_t && c.max_t <= maxt && c.min_t <= c.max_t {
                out.push(EncodedChunk {
                    min_t: c.min_t,
                    max_t: c.max_t,
                    samples: u64::from(n),
                    encoding: Encoding::Xor,
                    bytes: b.to_vec(),
                });
                continue;
            }
        }
        let mut it = Chain::new(std::slice::from_ref(c), min_t, maxt);
        let samples: Vec<(i64, f64)> = it.by_ref().collect();
        if let Some(e) = it.error() {
            return Err(BlockError::invalid(format!("series {labels}: {e}")));
        }
        encode_floats(&samples, &mut out);
    }
    Ok(out)
}

/// [`prepare_chunks`] for a series with histogram chunks (and maybe float chunks). Encoded chunks
/// (XOR, integer or float histogram) that do not overlap another chunk, lie inside the range and have
/// no deleted samples are kept as they are. The rest is re-encoded by [`recode`]: a chunk alone (cut
/// by the range or with deleted samples), or, when chunks overlap, all of the series' chunks merged
/// (the earlier-listed chunk's sample wins a tie, whatever its kind).
fn prepare_mixed_chunks(
    labels: &Labels,
    chunks: &[ChunkMeta],
    min_t: i64,
    max_t_excl: i64,
) -> Result<Vec<EncodedChunk>> {
    for c in chunks {
        let increasing = match &c.data {
            ChunkData::Raw(s) => s.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)),
            ChunkData::RawHistograms(s) => s.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)),
            _ => true,
        };
        if !increasing {
            return Err(BlockError::invalid(format!("series {labels}: raw chunk samples not strictly increasing")));
        }
    }
    let maxt = max_t_excl - 1;
    let fail = |e: RecodeError| BlockError::invalid(format!("series {labels}: {e}"));
    let disjoint = chunks.windows(2).all(|w| matches!(w, [a, b] if a.max_t < b.min_t));
    if !disjoint {
        return recode(chunks, min_t, maxt).map_err(fail);
    }
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        if !c.overlaps(min_t, maxt) {
            continue;
        }
        let encoding = match &c.data {
            ChunkData::Xor(_) => Some(Encoding::Xor),
            ChunkData::Histogram(_) => Some(Encoding::Histogram),
            ChunkData::FloatHistogram(_) => Some(Encoding::FloatHistogram),
            ChunkData::Raw(_) | ChunkData::RawHistograms(_) => None,
        };
        if let (Some(encoding), Some(b), None) = (encoding, c.data.bytes(), &c.deleted) {
            let n = sample_count(b)
                .ok_or_else(|| BlockError::invalid(format!("series {labels}: chunk shorter than its header")))?;
            if n == 0 {
                continue;
            }
            if c.min_t >= min_t && c.max_t <= maxt && c.min_t <= c.max_t {
                out.push(EncodedChunk {
                    min_t: c.min_t,
                    max_t: c.max_t,
                    samples: u64::from(n),
                    encoding,
                    bytes: b.to_vec(),
                });
                continue;
            }
        }
        out.extend(recode(std::slice::from_ref(c), min_t, maxt).map_err(fail)?);
    }
    Ok(out)
}
