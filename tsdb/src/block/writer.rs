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
use crate::chunk::{ChunkData, ChunkMeta, DecodeError, SAMPLES_PER_CHUNK};
use crate::chunkenc::{
    AppendError, CounterResetHeader, Encoding, FloatHistogramChunk, FloatHistogramIter, HistogramChunk, HistogramIter,
    XorChunk,
};
use crate::histogram::{FloatHistogram, Histogram, HistogramValue};
use crate::labels::Labels;
use crate::merge::{Chain, Merge};
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
///   [`SAMPLES_PER_CHUNK`] samples, `ChunkData::RawHistograms` into integer or float histogram chunks of
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

/// A chunk ready to be written.
struct OutChunk {
    min_t: i64,
    max_t: i64,
    samples: u64,
    encoding: Encoding,
    bytes: Vec<u8>,
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

fn encode_samples(samples: &[(i64, f64)], out: &mut Vec<OutChunk>) {
    for part in samples.chunks(SAMPLES_PER_CHUNK) {
        let (Some(first), Some(last)) = (part.first(), part.last()) else { continue };
        let mut c = XorChunk::with_capacity(part.len() * 2 + 16);
        for &(t, v) in part {
            c.push(t, v);
        }
        out.push(OutChunk {
            min_t: first.0,
            max_t: last.0,
            samples: part.len() as u64,
            encoding: Encoding::Xor,
            bytes: c.into_bytes(),
        });
    }
}

/// Turns a series' float chunks into XOR chunks inside `[min_t, max_t_excl)`, sorted and not overlapping
/// (a series with histogram chunks goes to [`prepare_mixed_chunks`]):
/// XOR chunks inside the range without deleted samples as they are, the rest decoded and re-encoded
/// without the deleted samples; overlapping chunks are
/// merged (the earlier-listed chunk's sample wins a timestamp tie).
fn prepare_chunks(labels: &Labels, chunks: &[ChunkMeta], min_t: i64, max_t_excl: i64) -> Result<Vec<OutChunk>> {
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
    let mut out: Vec<OutChunk> = Vec::with_capacity(chunks.len());
    let disjoint = chunks.windows(2).all(|w| matches!(w, [a, b] if a.max_t < b.min_t));
    if !disjoint {
        let mut merged = Merge::new(chunks, min_t, maxt);
        let samples: Vec<(i64, f64)> = merged.by_ref().collect();
        if let Some(e) = merged.error() {
            return Err(BlockError::invalid(format!("series {labels}: {e}")));
        }
        encode_samples(&samples, &mut out);
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
                out.push(OutChunk {
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
        encode_samples(&samples, &mut out);
    }
    Ok(out)
}

/// One decoded sample of a series that has float and histogram chunks.
enum Value {
    Float(f64),
    Histogram(HistogramValue),
}

/// The kind of chunk a sample goes into: a new chunk starts where it changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    IntHistogram,
    FloatHistogram,
}

impl Value {
    fn kind(&self) -> Kind {
        match self {
            Value::Float(_) => Kind::Float,
            Value::Histogram(HistogramValue::Int(_)) => Kind::IntHistogram,
            Value::Histogram(HistogramValue::Float(_)) => Kind::FloatHistogram,
        }
    }
}

/// [`prepare_chunks`] for a series with histogram chunks (and maybe float chunks). Encoded chunks
/// (XOR, integer or float histogram) that do not overlap another chunk, lie inside the range and have
/// no deleted samples are kept as they are. The rest is decoded and re-encoded: a chunk alone (cut by
/// the range or with deleted samples), or, when chunks overlap, all of the series' samples merged in
/// time order with one per timestamp (the earlier-listed chunk's sample wins a tie, whatever its kind).
/// Re-encoded samples are cut into a new chunk at [`SAMPLES_PER_CHUNK`] samples, where the kind
/// changes (float, integer histogram, float histogram) and where the histogram encoder asks for one
/// (counter reset, layout change, ...), with the counter-reset header Prometheus gives it.
fn prepare_mixed_chunks(labels: &Labels, chunks: &[ChunkMeta], min_t: i64, max_t_excl: i64) -> Result<Vec<OutChunk>> {
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
    let mut out: Vec<OutChunk> = Vec::with_capacity(chunks.len());
    let disjoint = chunks.windows(2).all(|w| matches!(w, [a, b] if a.max_t < b.min_t));
    if !disjoint {
        let mut all: Vec<(i64, usize, Value)> = Vec::new();
        for (rank, c) in chunks.iter().enumerate() {
            decode_into(labels, c, rank, min_t, maxt, &mut all)?;
        }
        // Stable: a timestamp's samples stay in chunk order, and the first of each run is kept.
        all.sort_by_key(|(t, rank, _)| (*t, *rank));
        all.dedup_by_key(|(t, _, _)| *t);
        encode_values(labels, &all, CounterResetHeader::Unknown, &mut out)?;
        return Ok(out);
    }
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
                out.push(OutChunk {
                    min_t: c.min_t,
                    max_t: c.max_t,
                    samples: u64::from(n),
                    encoding,
                    bytes: b.to_vec(),
                });
                continue;
            }
        }
        let mut samples = Vec::new();
        decode_into(labels, c, 0, min_t, maxt, &mut samples)?;
        // A chunk re-encoded from its first sample keeps its counter-reset header.
        let header = match (&c.data, samples.first()) {
            (ChunkData::Histogram(b), Some((t, ..))) if *t == c.min_t => HistogramIter::new(b).counter_reset_header(),
            (ChunkData::FloatHistogram(b), Some((t, ..))) if *t == c.min_t => {
                FloatHistogramIter::new(b).counter_reset_header()
            }
            _ => CounterResetHeader::Unknown,
        };
        encode_values(labels, &samples, header, &mut out)?;
    }
    Ok(out)
}

/// Appends the samples of `c` in `[mint, maxt]` (without its deleted ones) to `out`, tagged `rank`.
fn decode_into(
    labels: &Labels,
    c: &ChunkMeta,
    rank: usize,
    mint: i64,
    maxt: i64,
    out: &mut Vec<(i64, usize, Value)>,
) -> Result<()> {
    if !c.overlaps(mint, maxt) {
        return Ok(());
    }
    let err = if c.data.is_histogram() {
        let mut it = c.histograms(mint, maxt);
        out.extend(it.by_ref().map(|(t, h)| (t, rank, Value::Histogram(h))));
        it.error().cloned()
    } else {
        let mut it = c.iter(mint, maxt);
        out.extend(it.by_ref().map(|(t, v)| (t, rank, Value::Float(v))));
        it.error().cloned()
    };
    match err {
        Some(e) => Err(BlockError::invalid(format!("series {labels}: {}", DecodeError::new(c, e)))),
        None => Ok(()),
    }
}

/// Encodes samples sorted by time with unique timestamps: a new chunk at each change of kind, at
/// [`SAMPLES_PER_CHUNK`] samples, and where the histogram encoder reports a cut. `header` is the
/// counter-reset header of the first histogram chunk, unless the encoder sets another.
fn encode_values(
    labels: &Labels,
    samples: &[(i64, usize, Value)],
    header: CounterResetHeader,
    out: &mut Vec<OutChunk>,
) -> Result<()> {
    let mut rest = samples;
    while let Some((first, _)) = rest.split_first() {
        let kind = first.2.kind();
        let len = rest.iter().position(|s| s.2.kind() != kind).unwrap_or(rest.len());
        let (run, tail) = rest.split_at(len);
        rest = tail;
        match kind {
            Kind::Float => {
                let floats: Vec<(i64, f64)> = run
                    .iter()
                    .filter_map(|(t, _, v)| match v {
                        Value::Float(f) => Some((*t, *f)),
                        Value::Histogram(_) => None,
                    })
                    .collect();
                encode_samples(&floats, out);
            }
            Kind::IntHistogram => {
                let hs = run.iter().filter_map(|(t, _, v)| match v {
                    Value::Histogram(HistogramValue::Int(h)) => Some((*t, h)),
                    _ => None,
                });
                encode_histograms::<IntEncoder>(labels, hs, header, out)?;
            }
            Kind::FloatHistogram => {
                let hs = run.iter().filter_map(|(t, _, v)| match v {
                    Value::Histogram(HistogramValue::Float(h)) => Some((*t, h)),
                    _ => None,
                });
                encode_histograms::<FloatEncoder>(labels, hs, header, out)?;
            }
        }
    }
    Ok(())
}

/// The integer and float histogram chunk encoders, for one cutting loop over both.
trait HistogramEncoder {
    type Sample;
    const ENCODING: Encoding;
    fn new(header: CounterResetHeader) -> Self;
    fn append(&mut self, t: i64, h: &Self::Sample) -> std::result::Result<(), AppendError>;
    fn next_chunk_header(&self, h: &Self::Sample) -> CounterResetHeader;
    fn num_samples(&self) -> u16;
    fn bytes(&self) -> &[u8];
}

struct IntEncoder(HistogramChunk);
struct FloatEncoder(FloatHistogramChunk);

impl HistogramEncoder for IntEncoder {
    type Sample = Histogram;
    const ENCODING: Encoding = Encoding::Histogram;
    fn new(header: CounterResetHeader) -> Self {
        IntEncoder(HistogramChunk::new(header))
    }
    fn append(&mut self, t: i64, h: &Histogram) -> std::result::Result<(), AppendError> {
        self.0.append(t, h)
    }
    fn next_chunk_header(&self, h: &Histogram) -> CounterResetHeader {
        self.0.next_chunk_header(h)
    }
    fn num_samples(&self) -> u16 {
        self.0.num_samples()
    }
    fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl HistogramEncoder for FloatEncoder {
    type Sample = FloatHistogram;
    const ENCODING: Encoding = Encoding::FloatHistogram;
    fn new(header: CounterResetHeader) -> Self {
        FloatEncoder(FloatHistogramChunk::new(header))
    }
    fn append(&mut self, t: i64, h: &FloatHistogram) -> std::result::Result<(), AppendError> {
        self.0.append(t, h)
    }
    fn next_chunk_header(&self, h: &FloatHistogram) -> CounterResetHeader {
        self.0.next_chunk_header(h)
    }
    fn num_samples(&self) -> u16 {
        self.0.num_samples()
    }
    fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }
}

/// Encodes histograms of one kind (sorted by time) into chunks of up to [`SAMPLES_PER_CHUNK`],
/// cutting where the encoder asks to, each new chunk with the header the encoder names.
fn encode_histograms<'a, E: HistogramEncoder>(
    labels: &Labels,
    samples: impl Iterator<Item = (i64, &'a E::Sample)>,
    header: CounterResetHeader,
    out: &mut Vec<OutChunk>,
) -> Result<()>
where
    E::Sample: 'a,
{
    let mut cur = E::new(header);
    let (mut first_t, mut last_t) = (0i64, 0i64);
    let flush = |c: &E, first_t: i64, last_t: i64, out: &mut Vec<OutChunk>| {
        if c.num_samples() > 0 {
            out.push(OutChunk {
                min_t: first_t,
                max_t: last_t,
                samples: u64::from(c.num_samples()),
                encoding: E::ENCODING,
                bytes: c.bytes().to_vec(),
            });
        }
    };
    for (t, h) in samples {
        if usize::from(cur.num_samples()) >= SAMPLES_PER_CHUNK {
            let next = E::new(cur.next_chunk_header(h));
            flush(&cur, first_t, last_t, out);
            cur = next;
        }
        if cur.num_samples() == 0 {
            first_t = t;
        }
        match cur.append(t, h) {
            Ok(()) => {}
            Err(AppendError::Cut(cut)) => {
                flush(&cur, first_t, last_t, out);
                cur = E::new(cut.header);
                first_t = t;
                cur.append(t, h).map_err(|e| BlockError::invalid(format!("series {labels}: histogram at {t}: {e}")))?;
            }
            Err(e) => return Err(BlockError::invalid(format!("series {labels}: histogram at {t}: {e}"))),
        }
        last_t = t;
    }
    flush(&cur, first_t, last_t, out);
    Ok(())
}
