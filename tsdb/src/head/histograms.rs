//! A series' native histogram samples in the head: [`HistData`], its in-order histogram chunks
//! (Prometheus's integer and float histogram encodings), its newest in-order histogram, and its
//! late histograms; how a histogram sample already in the WAL is stored ([`HistData::apply`]).
//!
//! A series' histograms live apart from its float samples (`SeriesData::hist`, allocated with the
//! first histogram), so the float path neither reads nor grows for them. A series may hold both
//! kinds: their timestamps are judged independently (a float and a histogram at one timestamp are
//! both kept, each checked only against samples of its own kind), as two series would be.
//!
//! In-order chunks are cut at [`SAMPLES_PER_CHUNK`] samples, at the end of each chunk range (as
//! float chunks are), when the kind changes (integer ↔ float counts), and when the encoder asks for
//! a new chunk (counter reset, other schema, zero threshold or spans, after a stale marker), with
//! the counter-reset header the encoder gives. Sealed histogram chunks stay in memory: they are not
//! moved to the head chunk files, which hold XOR chunks only. Late histograms are a map sorted by
//! timestamp with one sample per timestamp (the first stored wins, an identical one is stored
//! once), each kept encoded as its WAL entry until head compaction takes them.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::in_order::{push_exact, range_for_timestamp};
use super::placement::{histogram_placement, Limits, Placement};
use super::series::Applied;
use crate::chunk::{ChunkData, ChunkMeta, SAMPLES_PER_CHUNK};
use crate::chunkenc::{AppendError as ChunkAppendError, CounterResetHeader, FloatHistogramChunk, HistogramChunk};
use crate::histogram::{CounterResetHint, FloatHistogram, Histogram, HistogramValue, Span};
use crate::record;

/// True if two histogram values are the same sample: same kind, and every field equal, floats
/// compared by their bits (so two stale markers are identical and `-0.0` differs from `0.0`). The
/// counter-reset hint is not compared, as Prometheus's `Equals` does not.
pub fn identical(a: &HistogramValue, b: &HistogramValue) -> bool {
    match (a, b) {
        (HistogramValue::Int(a), HistogramValue::Int(b)) => identical_int(a, b),
        (HistogramValue::Float(a), HistogramValue::Float(b)) => identical_float(a, b),
        _ => false,
    }
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn same_layout(a_schema: i32, b_schema: i32, a_spans: [&[Span]; 2], b_spans: [&[Span]; 2]) -> bool {
    a_schema == b_schema && a_spans == b_spans
}

fn identical_int(a: &Histogram, b: &Histogram) -> bool {
    same_layout(a.schema, b.schema, [&a.positive_spans, &a.negative_spans], [&b.positive_spans, &b.negative_spans])
        && a.zero_threshold.to_bits() == b.zero_threshold.to_bits()
        && a.zero_count == b.zero_count
        && a.count == b.count
        && a.sum.to_bits() == b.sum.to_bits()
        && a.positive_buckets == b.positive_buckets
        && a.negative_buckets == b.negative_buckets
        && same_bits(&a.custom_values, &b.custom_values)
}

fn identical_float(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    same_layout(a.schema, b.schema, [&a.positive_spans, &a.negative_spans], [&b.positive_spans, &b.negative_spans])
        && a.zero_threshold.to_bits() == b.zero_threshold.to_bits()
        && a.zero_count.to_bits() == b.zero_count.to_bits()
        && a.count.to_bits() == b.count.to_bits()
        && a.sum.to_bits() == b.sum.to_bits()
        && same_bits(&a.positive_buckets, &b.positive_buckets)
        && same_bits(&a.negative_buckets, &b.negative_buckets)
        && same_bits(&a.custom_values, &b.custom_values)
}

/// The open histogram chunk: integer or float counts.
#[derive(Debug)]
pub(crate) enum OpenHistChunk {
    /// Integer histograms.
    Int(HistogramChunk),
    /// Float histograms.
    Float(FloatHistogramChunk),
}

impl OpenHistChunk {
    fn new(v: &HistogramValue, header: CounterResetHeader) -> OpenHistChunk {
        match v {
            HistogramValue::Int(_) => OpenHistChunk::Int(HistogramChunk::new(header)),
            HistogramValue::Float(_) => OpenHistChunk::Float(FloatHistogramChunk::new(header)),
        }
    }

    fn num_samples(&self) -> u16 {
        match self {
            OpenHistChunk::Int(c) => c.num_samples(),
            OpenHistChunk::Float(c) => c.num_samples(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            OpenHistChunk::Int(c) => c.bytes(),
            OpenHistChunk::Float(c) => c.bytes(),
        }
    }

    fn same_kind(&self, v: &HistogramValue) -> bool {
        matches!(
            (self, v),
            (OpenHistChunk::Int(_), HistogramValue::Int(_)) | (OpenHistChunk::Float(_), HistogramValue::Float(_))
        )
    }

    /// Appends `v` at `t`; the chunk stays unchanged on error.
    fn append(&mut self, t: i64, v: &HistogramValue) -> Result<(), ChunkAppendError> {
        match (self, v) {
            (OpenHistChunk::Int(c), HistogramValue::Int(h)) => c.append(t, h),
            (OpenHistChunk::Float(c), HistogramValue::Float(h)) => c.append(t, h),
            // Callers cut a new chunk on a kind change first.
            _ => Err(ChunkAppendError::cut(crate::chunkenc::CutReason::KindChanged, CounterResetHeader::Unknown)),
        }
    }

    /// The chunk's bytes as a [`ChunkData`] of its kind.
    fn data(&self) -> ChunkData {
        let bytes: Arc<[u8]> = self.bytes().into();
        match self {
            OpenHistChunk::Int(_) => ChunkData::Histogram(bytes.into()),
            OpenHistChunk::Float(_) => ChunkData::FloatHistogram(bytes.into()),
        }
    }
}

/// The open chunk with its time range.
#[derive(Debug)]
pub(crate) struct OpenHist {
    pub(crate) chunk: OpenHistChunk,
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
}

impl OpenHist {
    /// The open chunk as a [`ChunkMeta`] (a copy of its bytes).
    pub(crate) fn meta(&self) -> ChunkMeta {
        ChunkMeta::new(self.min_t, self.max_t, self.chunk.data())
    }
}

/// A late histogram as it waits for head compaction: encoded as a WAL histograms record entry
/// encodes it ([`record::encode_histogram_value`]), a fraction of its decoded size (its spans and
/// buckets are vectors), and decoded when read.
#[derive(Debug, Clone)]
pub(crate) struct LateHistogram(Box<[u8]>);

impl LateHistogram {
    fn new(v: &HistogramValue) -> LateHistogram {
        let mut buf = Vec::new();
        record::encode_histogram_value(&mut buf, v);
        LateHistogram(buf.into_boxed_slice())
    }

    /// The histogram. `None` only if the bytes, which this type alone writes, could not be read
    /// back: that histogram is then left out of reads rather than failing them.
    pub(crate) fn value(&self) -> Option<HistogramValue> {
        match record::decode_histogram_value(&self.0) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "a late histogram held in memory could not be decoded");
                None
            }
        }
    }
}

/// Every histogram of chunk `c`, oldest first, the first carrying the
/// [`CounterResetHint::CounterReset`] hint when the chunk's header says counter reset, so that
/// appending them again (as a checkpoint's replay does) keeps the header.
pub(crate) fn reappendable(c: &ChunkMeta) -> Result<Vec<(i64, HistogramValue)>, crate::chunk::DecodeError> {
    let mut it = c.histograms(i64::MIN, i64::MAX);
    let mut out: Vec<_> = it.by_ref().collect();
    if let Some(e) = it.error() {
        return Err(crate::chunk::DecodeError::new(c, e.clone()));
    }
    if c.data.counter_reset_header() == CounterResetHeader::CounterReset {
        match out.first_mut() {
            Some((_, HistogramValue::Int(h))) => h.counter_reset_hint = CounterResetHint::CounterReset,
            Some((_, HistogramValue::Float(h))) => h.counter_reset_hint = CounterResetHint::CounterReset,
            None => {}
        }
    }
    Ok(out)
}

/// What a checkpoint takes of a series' histograms ([`HistData::checkpoint_parts`]).
pub(crate) struct CheckpointParts<'a> {
    /// The sealed in-order chunks, as they are.
    pub(crate) sealed: &'a [ChunkMeta],
    /// The open chunk's histograms, oldest first.
    pub(crate) open: Vec<(i64, HistogramValue)>,
    /// The late histograms, oldest first, as they are held (encoded as a histograms record entry).
    pub(crate) late: Vec<(i64, &'a [u8])>,
}

/// A series' native histograms (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct HistData {
    /// Sealed in-order chunks, oldest first, not overlapping ([`ChunkData::Histogram`] or
    /// [`ChunkData::FloatHistogram`], in memory).
    pub(crate) sealed: Vec<ChunkMeta>,
    /// The chunk being appended to.
    pub(crate) open: Option<OpenHist>,
    /// The open chunk is cut at the first sample at or after this (the end of its chunk range).
    next_at: i64,
    /// The newest in-order histogram: its timestamp and value (for the duplicate check).
    pub(crate) last: Option<(i64, HistogramValue)>,
    /// Late histograms by timestamp, one per timestamp: a map, so that storing one costs
    /// O(log n) in whatever order a sender delivers them; each kept encoded.
    pub(crate) ooo: BTreeMap<i64, LateHistogram>,
}

impl HistData {
    /// The newest in-order histogram.
    pub(crate) fn tail(&self) -> Option<(i64, &HistogramValue)> {
        self.last.as_ref().map(|(t, v)| (*t, v))
    }

    /// Oldest and newest histogram timestamps held, in order and late.
    pub(crate) fn time_range(&self) -> Option<(i64, i64)> {
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        let spans = self
            .sealed
            .iter()
            .map(|c| (c.min_t, c.max_t))
            .chain(self.open.as_ref().map(|c| (c.min_t, c.max_t)))
            .chain(self.ooo.first_key_value().zip(self.ooo.last_key_value()).map(|(a, b)| (*a.0, *b.0)));
        for (a, b) in spans {
            lo = lo.min(a);
            hi = hi.max(b);
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// Number of chunks (late histograms count as one).
    pub(crate) fn chunk_count(&self) -> usize {
        self.sealed.len() + usize::from(self.open.is_some()) + usize::from(!self.ooo.is_empty())
    }

    /// The late histogram stored at exactly `t`.
    #[cfg(test)]
    pub(crate) fn ooo_at(&self, t: i64) -> Option<HistogramValue> {
        self.ooo.get(&t).and_then(LateHistogram::value)
    }

    /// Appends `(t, v)` to the in-order chunks, cutting a new chunk where needed (see the module
    /// docs). The caller guarantees `t` is newer than the newest in-order histogram. False (nothing
    /// stored) if the encoder refuses the histogram even in a new chunk: spans and buckets that
    /// disagree in number, which validation refuses before a histogram reaches the WAL.
    pub(crate) fn append_in_order(&mut self, t: i64, v: HistogramValue, chunk_range: i64) -> bool {
        let cut = match &self.open {
            None => true,
            Some(c) => {
                t >= self.next_at || usize::from(c.chunk.num_samples()) >= SAMPLES_PER_CHUNK || !c.chunk.same_kind(&v)
            }
        };
        if cut {
            self.start_chunk(t, &v, CounterResetHeader::Unknown, chunk_range);
        }
        let Some(open) = &mut self.open else { return false };
        match open.chunk.append(t, &v) {
            Ok(()) => {}
            Err(ChunkAppendError::Cut(c)) => {
                self.start_chunk(t, &v, c.header, chunk_range);
                let Some(open) = &mut self.open else { return false };
                if open.chunk.append(t, &v).is_err() {
                    self.open = None;
                    return false;
                }
            }
            Err(ChunkAppendError::BucketsMismatch { .. }) => {
                if open.chunk.num_samples() == 0 {
                    self.open = None;
                }
                return false;
            }
        }
        if let Some(open) = &mut self.open {
            open.max_t = t;
        }
        self.last = Some((t, v));
        true
    }

    /// Seals the open chunk (if any) and opens an empty one for `v`'s kind starting at `t`.
    fn start_chunk(&mut self, t: i64, v: &HistogramValue, header: CounterResetHeader, chunk_range: i64) {
        self.seal_open();
        self.open = Some(OpenHist { chunk: OpenHistChunk::new(v, header), min_t: t, max_t: t });
        self.next_at = range_for_timestamp(t, chunk_range.max(1));
    }

    /// Moves the open chunk (if it holds samples) to the sealed ones.
    fn seal_open(&mut self) {
        if let Some(old) = self.open.take() {
            if old.chunk.num_samples() > 0 {
                push_exact(&mut self.sealed, old.meta());
            }
        }
    }

    /// Stores a histogram already in the WAL (from a commit or from WAL replay) where
    /// [`histogram_placement`] with [`Limits::accept_all`] puts it, with the rules of floats
    /// (`SeriesData::apply`): at the newest in-order timestamp and among late histograms the first
    /// stored stays (identical: stored once; different: a conflict, not stored); a late histogram is
    /// not compared with the in-order chunks.
    pub(crate) fn apply(&mut self, t: i64, v: HistogramValue, min_valid_t: i64, chunk_range: i64) -> Applied {
        match histogram_placement(t, &v, self.tail(), Limits::accept_all(min_valid_t)) {
            Ok(Placement::InOrder) => {
                if self.append_in_order(t, v, chunk_range) {
                    Applied::InOrder
                } else {
                    Applied::Conflict
                }
            }
            Ok(Placement::Duplicate) => Applied::AlreadyStored,
            Ok(Placement::OutOfOrder) => match self.ooo.entry(t) {
                Entry::Occupied(existing) if existing.get().value().is_some_and(|e| identical(&e, &v)) => {
                    Applied::AlreadyStored
                }
                Entry::Occupied(_) => Applied::Conflict,
                Entry::Vacant(slot) => {
                    slot.insert(LateHistogram::new(&v));
                    Applied::OutOfOrder
                }
            },
            // Only a different histogram at the newest in-order timestamp is refused by these limits.
            Err(_) => Applied::Conflict,
        }
    }

    /// The in-order chunks overlapping `[mint, maxt]`: sealed ones shared, the open one copied.
    pub(crate) fn in_order_chunks(&self, mint: i64, maxt: i64) -> impl Iterator<Item = ChunkMeta> + '_ {
        self.sealed
            .iter()
            .filter(move |c| c.overlaps(mint, maxt))
            .cloned()
            .chain(self.open.as_ref().filter(|c| c.min_t <= maxt && c.max_t >= mint).map(OpenHist::meta))
    }

    /// A checkpoint's share of the histograms: the sealed in-order chunks as they are, the open
    /// chunk's histograms ([`reappendable`]) and the late ones as held, both re-appended on replay
    /// after [`HistData::install_sealed`].
    pub(crate) fn checkpoint_parts(&self) -> crate::error::Result<CheckpointParts<'_>> {
        let open = match &self.open {
            Some(open) => reappendable(&open.meta())?,
            None => Vec::new(),
        };
        let late = self.ooo.iter().map(|(t, v)| (*t, &*v.0)).collect();
        Ok(CheckpointParts { sealed: &self.sealed, open, late })
    }

    /// Installs a checkpoint's sealed in-order chunks (oldest first, not overlapping) into an empty
    /// `HistData`, and their newest histogram as the newest in-order one, so that what is appended
    /// next is judged against it. Fails, changing nothing, if the newest chunk cannot be decoded.
    pub(crate) fn install_sealed(&mut self, chunks: Vec<ChunkMeta>) -> Result<(), crate::chunk::DecodeError> {
        let last = chunks.last().map(reappendable).transpose()?.and_then(|mut all| all.pop());
        self.sealed = chunks;
        self.last = last;
        Ok(())
    }

    /// True if an in-order chunk overlaps `[mint, maxt]`.
    pub(crate) fn in_order_chunks_overlap(&self, mint: i64, maxt: i64) -> bool {
        self.sealed.iter().any(|c| c.overlaps(mint, maxt))
            || self.open.as_ref().is_some_and(|c| c.min_t <= maxt && c.max_t >= mint)
    }

    /// The late histograms in `[mint, maxt]`, cloned.
    pub(crate) fn ooo_part(&self, mint: i64, maxt: i64) -> Vec<(i64, HistogramValue)> {
        if mint > maxt {
            return Vec::new();
        }
        self.ooo.range(mint..=maxt).filter_map(|(t, v)| Some((*t, v.value()?))).collect()
    }

    /// Drops the in-order chunks overlapping `[mint, maxt)` (they went into a block; chunks never
    /// cross a chunk-range boundary). Keeps `last`: later appends are still judged against it.
    pub(crate) fn drop_in_order(&mut self, mint: i64, maxt: i64) {
        self.sealed.retain(|c| !(c.min_t < maxt && c.max_t >= mint));
        if self.open.as_ref().is_some_and(|c| c.min_t < maxt && c.max_t >= mint) {
            self.open = None;
        }
    }

    /// Drops the late histograms at the given timestamps (sorted).
    pub(crate) fn drop_ooo(&mut self, ts: &[i64]) {
        self.ooo.retain(|t, _| ts.binary_search(t).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::{FloatHistogramIter, HistogramIter};

    const H2: i64 = 2 * 3_600_000;

    pub(crate) fn hist(count: u64) -> HistogramValue {
        HistogramValue::Int(Histogram {
            schema: 0,
            count,
            sum: count as f64,
            zero_count: count,
            positive_spans: vec![Span { offset: 0, length: 0 }],
            ..Histogram::default()
        })
    }

    fn decoded(c: &ChunkMeta) -> Vec<i64> {
        match &c.data {
            ChunkData::Histogram(b) => HistogramIter::new(b).map(|r| r.unwrap().0).collect(),
            ChunkData::FloatHistogram(b) => FloatHistogramIter::new(b).map(|r| r.unwrap().0).collect(),
            other => panic!("not a histogram chunk: {other:?}"),
        }
    }

    #[test]
    fn late_histograms_are_kept_encoded_and_read_back_whole() {
        let float = HistogramValue::Float(FloatHistogram {
            counter_reset_hint: CounterResetHint::Gauge,
            schema: -53,
            count: 3.5,
            sum: -0.0,
            positive_spans: vec![Span { offset: 0, length: 2 }],
            positive_buckets: vec![1.5, 2.0],
            custom_values: vec![0.1, 1.0],
            ..FloatHistogram::default()
        });
        for v in [hist(7), float] {
            let late = LateHistogram::new(&v);
            let back = late.value().unwrap();
            assert!(identical(&back, &v), "{back:?} vs {v:?}");
            assert_eq!(back, v, "the counter-reset hint too");
        }
        let mut bytes = LateHistogram::new(&hist(1)).0.into_vec();
        bytes.push(0);
        assert!(record::decode_histogram_value(&bytes).is_err(), "trailing bytes are refused");
    }

    #[test]
    fn cuts_at_120_samples_at_range_ends_on_kind_change_and_on_reset() {
        let mut d = HistData::default();
        // 300 samples 15s apart from a range start: cuts at 120, 240, and at the range end.
        for i in 0..300i64 {
            assert!(d.append_in_order(H2 + i * 15_000, hist(i as u64), H2));
        }
        let sizes: Vec<usize> = d.sealed.iter().map(|c| decoded(c).len()).collect();
        assert_eq!(sizes, vec![120, 120]);
        assert_eq!(d.open.as_ref().map(|c| c.chunk.num_samples()), Some(60));
        // The range ends at 2*H2: the next sample starts a new chunk.
        assert!(d.append_in_order(2 * H2, hist(1000), H2));
        assert_eq!(d.sealed.len(), 3);
        // A counter reset: a new chunk with the counter-reset header.
        assert!(d.append_in_order(2 * H2 + 1, hist(1), H2));
        assert_eq!(d.sealed.len(), 4);
        let open = d.open.as_ref().unwrap();
        assert_eq!(
            crate::chunkenc::HistogramIter::new(open.chunk.bytes()).counter_reset_header(),
            CounterResetHeader::CounterReset
        );
        // Integer → float: a float histogram chunk.
        assert!(d.append_in_order(
            2 * H2 + 2,
            HistogramValue::Float(FloatHistogram { count: 1.0, ..FloatHistogram::default() }),
            H2
        ));
        assert_eq!(d.sealed.len(), 5);
        assert!(matches!(d.open.as_ref().unwrap().chunk, OpenHistChunk::Float(_)));
        // No chunk crosses a range boundary, none overlaps the next.
        assert!(d.sealed.iter().all(|c| c.min_t / H2 == c.max_t / H2));
        assert!(d.sealed.windows(2).all(|w| w[0].max_t < w[1].min_t));
    }

    #[test]
    fn apply_dedupes_and_routes() {
        let mut d = HistData::default();
        assert_eq!(d.apply(100, hist(1), i64::MIN, H2), Applied::InOrder);
        assert_eq!(d.apply(200, hist(2), i64::MIN, H2), Applied::InOrder);
        assert_eq!(d.apply(200, hist(2), i64::MIN, H2), Applied::AlreadyStored);
        assert_eq!(d.apply(200, hist(3), i64::MIN, H2), Applied::Conflict);
        assert_eq!(d.apply(150, hist(5), i64::MIN, H2), Applied::OutOfOrder);
        assert_eq!(d.apply(150, hist(5), i64::MIN, H2), Applied::AlreadyStored);
        assert_eq!(d.apply(150, hist(6), i64::MIN, H2), Applied::Conflict);
        assert_eq!(d.ooo_at(150), Some(hist(5)));
        // A late histogram at an in-order timestamp is stored beside it (reads keep the in-order one).
        assert_eq!(d.apply(100, hist(9), i64::MIN, H2), Applied::OutOfOrder);
        assert_eq!(d.time_range(), Some((100, 200)));
    }

    #[test]
    fn stale_markers_are_stored_and_cut_the_next_chunk() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut d = HistData::default();
        assert!(d.append_in_order(1, hist(1), H2));
        let marker = HistogramValue::Int(Histogram { sum: stale, ..Histogram::default() });
        assert!(d.append_in_order(2, marker.clone(), H2));
        assert_eq!(d.apply(2, marker, i64::MIN, H2), Applied::AlreadyStored, "two stale markers are identical");
        assert!(d.append_in_order(3, hist(1), H2));
        assert_eq!(d.sealed.len(), 1, "the sample after a stale marker starts a new chunk");
        let sums: Vec<u64> = match &d.sealed[0].data {
            ChunkData::Histogram(b) => HistogramIter::new(b).map(|r| r.unwrap().1.sum.to_bits()).collect(),
            _ => panic!(),
        };
        assert_eq!(sums, vec![1f64.to_bits(), stale.to_bits()]);
    }

    #[test]
    fn identical_compares_bits_and_kinds() {
        assert!(identical(&hist(1), &hist(1)));
        assert!(!identical(&hist(1), &hist(2)));
        let f = HistogramValue::Float(FloatHistogram::default());
        assert!(!identical(&hist(0), &f));
        let nan = HistogramValue::Float(FloatHistogram { sum: f64::NAN, ..FloatHistogram::default() });
        assert!(identical(&nan, &nan.clone()));
    }
}
