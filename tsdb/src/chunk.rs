//! The chunks of a series as readers get them, from the head or from a block: [`ChunkMeta`] (a
//! time range and its samples) over [`ChunkData`] (XOR or native histogram bytes, or decoded
//! samples), the bytes
//! themselves as [`ChunkBytes`] (shared heap memory, or a slice of a block's mapped chunk file kept
//! alive by the block's map, never copied), [`ChunkIter`] and [`HistogramChunkIter`], which decode
//! one chunk's float or histogram samples inside a time range (leaving out deleted samples), and
//! [`DecodeError`], a chunk that could not be decoded and where it is.
//!
//! A series may hold float and histogram chunks side by side: [`ChunkMeta::iter`] yields nothing
//! for a histogram chunk and [`ChunkMeta::histograms`] nothing for a float chunk.
//!
//! [`SAMPLES_PER_CHUNK`] is the one size every writer of chunks aims at: the head's in-order cut,
//! head compaction, the block writer and block merging.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::block::MappedSlice;
use crate::chunkenc::{ChunkError, CounterResetHeader, FloatHistogramIter, HistogramIter, XorIter};
use crate::histogram::HistogramValue;
use crate::intervals::{Interval, Intervals};

/// Prometheus's target number of samples per chunk.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Bytes of one chunk: shared heap memory, or a slice of a mapped block file. Cloning is cheap
/// (one reference count).
#[derive(Debug, Clone)]
pub enum ChunkBytes {
    /// Heap bytes (a head chunk, or a copy of an open chunk).
    Shared(Arc<[u8]>),
    /// A slice of a block's mapped chunk segment; the map lives as long as the slice.
    Mapped(MappedSlice),
}

impl ChunkBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            ChunkBytes::Shared(b) => b,
            ChunkBytes::Mapped(m) => m.as_slice(),
        }
    }
}

impl ChunkBytes {
    /// The block file the bytes are mapped from; `None` for heap bytes.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ChunkBytes::Shared(_) => None,
            ChunkBytes::Mapped(m) => Some(m.path()),
        }
    }
}

impl std::ops::Deref for ChunkBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Arc<[u8]>> for ChunkBytes {
    fn from(b: Arc<[u8]>) -> ChunkBytes {
        ChunkBytes::Shared(b)
    }
}

impl From<Vec<u8>> for ChunkBytes {
    fn from(b: Vec<u8>) -> ChunkBytes {
        ChunkBytes::Shared(b.into())
    }
}

impl From<&[u8]> for ChunkBytes {
    fn from(b: &[u8]) -> ChunkBytes {
        ChunkBytes::Shared(b.into())
    }
}

/// One source of samples of a series.
#[derive(Debug, Clone)]
pub enum ChunkData {
    /// XOR chunk bytes (sealed, a copy of the open chunk, or a block's chunk in place).
    Xor(ChunkBytes),
    /// Uncompressed samples sorted by time with unique timestamps (a part of an open chunk, of the
    /// open out-of-order buffer, or a merge's output).
    Raw(Arc<[(i64, f64)]>),
    /// Integer native histogram chunk bytes (Prometheus's encoding 2).
    Histogram(ChunkBytes),
    /// Float native histogram chunk bytes (Prometheus's encoding 3).
    FloatHistogram(ChunkBytes),
    /// Decoded histogram samples sorted by time with unique timestamps (out-of-order histograms,
    /// or a merge's output).
    RawHistograms(Arc<[(i64, HistogramValue)]>),
}

impl ChunkData {
    /// True for native histogram chunks.
    pub fn is_histogram(&self) -> bool {
        matches!(self, ChunkData::Histogram(_) | ChunkData::FloatHistogram(_) | ChunkData::RawHistograms(_))
    }

    /// A histogram chunk's counter-reset header; `Unknown` for other kinds.
    pub fn counter_reset_header(&self) -> CounterResetHeader {
        match self {
            ChunkData::Histogram(b) => HistogramIter::new(b).counter_reset_header(),
            ChunkData::FloatHistogram(b) => FloatHistogramIter::new(b).counter_reset_header(),
            _ => CounterResetHeader::Unknown,
        }
    }

    /// The stored bytes, for encoded chunks.
    pub fn bytes(&self) -> Option<&ChunkBytes> {
        match self {
            ChunkData::Xor(b) | ChunkData::Histogram(b) | ChunkData::FloatHistogram(b) => Some(b),
            ChunkData::Raw(_) | ChunkData::RawHistograms(_) => None,
        }
    }
}

/// A chunk with its time range.
#[derive(Debug, Clone)]
pub struct ChunkMeta {
    /// First timestamp.
    pub min_t: i64,
    /// Last timestamp.
    pub max_t: i64,
    /// The samples.
    pub data: ChunkData,
    /// Deleted intervals (tombstones) overlapping the chunk: its samples there are not read. The
    /// time range stays that of the stored chunk, a bound rather than the first and last sample.
    pub deleted: Option<Arc<Intervals>>,
}

impl ChunkMeta {
    /// A chunk without deleted samples.
    pub fn new(min_t: i64, max_t: i64, data: ChunkData) -> ChunkMeta {
        ChunkMeta { min_t, max_t, data, deleted: None }
    }

    /// Decoded samples, sorted by time, as a chunk; `None` if there are none.
    pub fn raw(samples: &[(i64, f64)]) -> Option<ChunkMeta> {
        let (first, last) = (samples.first()?.0, samples.last()?.0);
        Some(ChunkMeta::new(first, last, ChunkData::Raw(samples.into())))
    }

    /// The chunk with the series' deleted intervals applied: `None` when they cover it whole (it is
    /// not read at all), the chunk marked with them when some overlap it, else the chunk as it is.
    pub fn without_deleted(mut self, deleted: Option<&Arc<Intervals>>) -> Option<ChunkMeta> {
        let Some(d) = deleted else { return Some(self) };
        if d.covers(self.min_t, self.max_t) {
            return None;
        }
        if d.overlaps(self.min_t, self.max_t) {
            self.deleted = Some(Arc::clone(d));
        }
        Some(self)
    }

    /// Decoded histogram samples, sorted by time, as a chunk; `None` if there are none.
    pub fn raw_histograms(samples: &[(i64, HistogramValue)]) -> Option<ChunkMeta> {
        let (first, last) = (samples.first()?.0, samples.last()?.0);
        Some(ChunkMeta::new(first, last, ChunkData::RawHistograms(samples.into())))
    }

    /// Sorted samples cut into raw chunks of [`SAMPLES_PER_CHUNK`].
    pub fn raw_chunks(samples: &[(i64, f64)]) -> Vec<ChunkMeta> {
        samples.chunks(SAMPLES_PER_CHUNK).filter_map(ChunkMeta::raw).collect()
    }

    /// True if the chunk holds samples in `[mint, maxt]` by its time range.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.min_t <= maxt && self.max_t >= mint
    }

    /// The chunk's float samples with `mint <= t <= maxt` (none for a histogram chunk).
    pub fn iter(&self, mint: i64, maxt: i64) -> ChunkIter<'_> {
        ChunkIter::new(self, mint, maxt)
    }

    /// The chunk's histogram samples with `mint <= t <= maxt` (none for a float chunk).
    pub fn histograms(&self, mint: i64, maxt: i64) -> HistogramChunkIter<'_> {
        HistogramChunkIter::new(self, mint, maxt)
    }
}

/// A chunk whose bytes could not be decoded: its time range, the block file it is in (if any) and why.
#[derive(Debug, Clone, thiserror::Error)]
pub struct DecodeError {
    /// First timestamp of the chunk.
    pub min_t: i64,
    /// Last timestamp of the chunk.
    pub max_t: i64,
    /// The block chunk file, for a chunk read from a block.
    pub file: Option<PathBuf>,
    /// What was wrong with the bytes.
    #[source]
    pub source: ChunkError,
}

impl DecodeError {
    /// The error of chunk `c` failing with `source`.
    pub fn new(c: &ChunkMeta, source: ChunkError) -> DecodeError {
        let file = c.data.bytes().and_then(ChunkBytes::file).map(Path::to_path_buf);
        DecodeError { min_t: c.min_t, max_t: c.max_t, file, source }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot decode the chunk of [{}, {}]", self.min_t, self.max_t)?;
        if let Some(p) = &self.file {
            write!(f, " in {}", p.display())?;
        }
        write!(f, ": {}", self.source)
    }
}

/// True if `t` is in the first of the sorted `deleted` intervals that does not end before it;
/// passes (drops from the slice) the intervals that end before `t`, since timestamps only increase.
fn is_deleted(deleted: &mut &[Interval], t: i64) -> bool {
    while let Some((first, rest)) = deleted.split_first() {
        if first.max_t >= t {
            return first.min_t <= t;
        }
        *deleted = rest;
    }
    false
}

/// The samples of one chunk inside `[mint, maxt]`, in time order. An XOR chunk that cannot be
/// decoded ends early; [`ChunkIter::error`] then says why.
pub struct ChunkIter<'a> {
    inner: Inner<'a>,
    maxt: i64,
    /// Deleted intervals not yet passed (empty for most chunks: one branch per sample).
    deleted: &'a [Interval],
}

enum Inner<'a> {
    /// The first sample (found by seeking) is yielded before the rest of the iterator.
    Xor(Option<(i64, f64)>, XorIter<'a>),
    Raw(std::slice::Iter<'a, (i64, f64)>),
    Done,
}

impl<'a> ChunkIter<'a> {
    fn new(c: &'a ChunkMeta, mint: i64, maxt: i64) -> ChunkIter<'a> {
        if !c.overlaps(mint, maxt) {
            return ChunkIter { inner: Inner::Done, maxt, deleted: &[] };
        }
        let inner = match &c.data {
            ChunkData::Xor(b) => {
                let mut it = XorIter::new(b);
                let first = if c.min_t < mint { it.seek(mint) } else { it.next() };
                Inner::Xor(first, it)
            }
            ChunkData::Raw(s) => {
                let start = s.partition_point(|&(t, _)| t < mint);
                Inner::Raw(s.get(start..).unwrap_or_default().iter())
            }
            ChunkData::Histogram(_) | ChunkData::FloatHistogram(_) | ChunkData::RawHistograms(_) => Inner::Done,
        };
        let deleted = c.deleted.as_deref().map_or(&[][..], Intervals::as_slice);
        ChunkIter { inner, maxt, deleted }
    }

    /// True if `t` is deleted (see [`is_deleted`]).
    #[cold]
    fn is_deleted(&mut self, t: i64) -> bool {
        is_deleted(&mut self.deleted, t)
    }

    /// Why an XOR chunk ended early, if it did.
    pub fn error(&self) -> Option<&ChunkError> {
        match &self.inner {
            Inner::Xor(_, it) => it.error(),
            _ => None,
        }
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        loop {
            let s = match &mut self.inner {
                Inner::Xor(first, it) => first.take().or_else(|| it.next()),
                Inner::Raw(it) => it.next().copied(),
                Inner::Done => None,
            };
            match s {
                Some(s) if s.0 <= self.maxt => {
                    if !self.deleted.is_empty() && self.is_deleted(s.0) {
                        continue;
                    }
                    return Some(s);
                }
                _ => {
                    // Keep an XOR iterator's error readable after the end.
                    if !matches!(self.inner, Inner::Xor(..)) {
                        self.inner = Inner::Done;
                    }
                    return None;
                }
            }
        }
    }
}

/// The histogram samples of one chunk inside `[mint, maxt]`, in time order. A chunk that cannot be
/// decoded ends early; [`HistogramChunkIter::error`] then says why.
pub struct HistogramChunkIter<'a> {
    inner: HistInner<'a>,
    mint: i64,
    maxt: i64,
    deleted: &'a [Interval],
    error: Option<ChunkError>,
}

enum HistInner<'a> {
    Int(HistogramIter<'a>),
    Float(FloatHistogramIter<'a>),
    Raw(std::slice::Iter<'a, (i64, HistogramValue)>),
    Done,
}

impl<'a> HistogramChunkIter<'a> {
    fn new(c: &'a ChunkMeta, mint: i64, maxt: i64) -> HistogramChunkIter<'a> {
        let inner = if !c.overlaps(mint, maxt) {
            HistInner::Done
        } else {
            match &c.data {
                ChunkData::Histogram(b) => HistInner::Int(HistogramIter::new(b)),
                ChunkData::FloatHistogram(b) => HistInner::Float(FloatHistogramIter::new(b)),
                ChunkData::RawHistograms(s) => {
                    let start = s.partition_point(|(t, _)| *t < mint);
                    HistInner::Raw(s.get(start..).unwrap_or_default().iter())
                }
                ChunkData::Xor(_) | ChunkData::Raw(_) => HistInner::Done,
            }
        };
        let deleted = c.deleted.as_deref().map_or(&[][..], Intervals::as_slice);
        HistogramChunkIter { inner, mint, maxt, deleted, error: None }
    }

    /// Why the chunk ended early, if it did.
    pub fn error(&self) -> Option<&ChunkError> {
        self.error.as_ref()
    }
}

impl Iterator for HistogramChunkIter<'_> {
    type Item = (i64, HistogramValue);

    fn next(&mut self) -> Option<(i64, HistogramValue)> {
        loop {
            let s = match &mut self.inner {
                HistInner::Int(it) => it.next().map(|r| r.map(|(t, h)| (t, HistogramValue::Int(h)))),
                HistInner::Float(it) => it.next().map(|r| r.map(|(t, h)| (t, HistogramValue::Float(h)))),
                HistInner::Raw(it) => it.next().cloned().map(Ok),
                HistInner::Done => None,
            };
            match s {
                Some(Ok(s)) if s.0 < self.mint => continue,
                Some(Ok(s)) if s.0 <= self.maxt => {
                    if !self.deleted.is_empty() && is_deleted(&mut self.deleted, s.0) {
                        continue;
                    }
                    return Some(s);
                }
                Some(Err(e)) => {
                    self.error = Some(e);
                    self.inner = HistInner::Done;
                    return None;
                }
                _ => {
                    self.inner = HistInner::Done;
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::XorChunk;

    #[test]
    fn iter_keeps_exactly_the_range() {
        let mut c = XorChunk::new();
        let all: Vec<(i64, f64)> = (0..100i64).map(|t| (t * 10, t as f64)).collect();
        for &(t, v) in &all {
            c.push(t, v);
        }
        let xor = ChunkMeta::new(0, 990, ChunkData::Xor(c.bytes().into()));
        let raw = ChunkMeta::raw(&all).unwrap();
        for (mint, maxt) in [(0, 990), (-5, 2000), (500, 990), (505, 600), (985, 2000), (991, 2000), (-10, -1), (0, 0)]
        {
            let want: Vec<(i64, f64)> = all.iter().copied().filter(|&(t, _)| t >= mint && t <= maxt).collect();
            assert_eq!(xor.iter(mint, maxt).collect::<Vec<_>>(), want, "xor [{mint}, {maxt}]");
            assert_eq!(raw.iter(mint, maxt).collect::<Vec<_>>(), want, "raw [{mint}, {maxt}]");
        }
    }

    #[test]
    fn deleted_samples_are_left_out() {
        let mut c = XorChunk::new();
        let all: Vec<(i64, f64)> = (0..100i64).map(|t| (t * 10, t as f64)).collect();
        for &(t, v) in &all {
            c.push(t, v);
        }
        let mut d = Intervals::new();
        for (a, b) in [(-100, 5), (100, 250), (555, 555), (900, 10_000)] {
            d.add(Interval::new(a, b));
        }
        let d = Arc::new(d);
        let xor = ChunkMeta::new(0, 990, ChunkData::Xor(c.bytes().into())).without_deleted(Some(&d)).unwrap();
        let raw = ChunkMeta::raw(&all).unwrap().without_deleted(Some(&d)).unwrap();
        for (mint, maxt) in [(0, 990), (-5, 2000), (240, 600), (555, 555), (0, 0)] {
            let want: Vec<(i64, f64)> =
                all.iter().copied().filter(|&(t, _)| t >= mint && t <= maxt && !d.contains(t)).collect();
            assert_eq!(xor.iter(mint, maxt).collect::<Vec<_>>(), want, "xor [{mint}, {maxt}]");
            assert_eq!(raw.iter(mint, maxt).collect::<Vec<_>>(), want, "raw [{mint}, {maxt}]");
        }
        let mut whole = Intervals::new();
        whole.add(Interval::new(-1, 990));
        assert!(ChunkMeta::raw(&all).unwrap().without_deleted(Some(&Arc::new(whole))).is_none());
    }

    #[test]
    fn undecodable_chunk_reports_its_error() {
        let c = ChunkMeta::new(0, 10, ChunkData::Xor(ChunkBytes::from(&[0u8][..])));
        let mut it = c.iter(0, 10);
        assert_eq!(it.next(), None);
        assert!(it.error().is_some());
    }

    #[test]
    fn histogram_iter_keeps_the_range_and_skips_floats() {
        use crate::chunkenc::{CounterResetHeader, HistogramChunk};
        use crate::histogram::Histogram;
        let mut c = HistogramChunk::new(CounterResetHeader::Unknown);
        let hs: Vec<(i64, Histogram)> = (0..10i64)
            .map(|t| (t * 10, Histogram { count: t as u64, zero_count: t as u64, ..Histogram::default() }))
            .collect();
        for (t, h) in &hs {
            c.append(*t, h).unwrap();
        }
        let enc = ChunkMeta::new(0, 90, ChunkData::Histogram(c.bytes().into()));
        let raw: Vec<(i64, HistogramValue)> = hs.iter().map(|(t, h)| (*t, HistogramValue::Int(h.clone()))).collect();
        let raw = ChunkMeta::raw_histograms(&raw).unwrap();
        for (mint, maxt) in [(0, 90), (15, 45), (90, 100), (91, 100), (-5, 0)] {
            let want: Vec<i64> = hs.iter().map(|(t, _)| *t).filter(|t| (mint..=maxt).contains(t)).collect();
            let got: Vec<i64> = enc.histograms(mint, maxt).map(|(t, _)| t).collect();
            assert_eq!(got, want, "encoded [{mint}, {maxt}]");
            let got: Vec<i64> = raw.histograms(mint, maxt).map(|(t, _)| t).collect();
            assert_eq!(got, want, "raw [{mint}, {maxt}]");
            assert_eq!(enc.iter(mint, maxt).count(), 0);
        }
        assert_eq!(ChunkMeta::raw(&[(1, 1.0)]).unwrap().histograms(0, 10).count(), 0);
    }
}
