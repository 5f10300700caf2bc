//! The one way samples of several chunks of a series become one sorted stream with one sample per
//! timestamp: [`Chain`] for chunks that do not overlap (decoded one after the other) and [`Merge`]
//! for chunks that may (a streaming k-way merge). Readers, head compaction, the block writer and
//! block merging all use them.
//!
//! Ties are decided by the caller's order: at a timestamp held by several chunks, the sample of the
//! chunk listed first wins ("first wins": in-order data before out-of-order data, earlier blocks before
//! later ones). Samples left out at a tie with a different value are counted ([`Merge::shadowed`]).
//!
//! Both stop at the first chunk that cannot be decoded and say so through `error()`; a caller must
//! check it after the last sample, or it would answer with part of a series.
//!
//! Both read float samples only (a histogram chunk yields nothing, undecoded); [`merge_histograms`]
//! is the same merge, with the same tie rule, for the native histogram chunks of a series.

use crate::chunk::{ChunkIter, ChunkMeta, DecodeError};
use crate::histogram::{FloatHistogram, HistogramValue};

/// Samples of chunks sorted by time that do not overlap, inside `[mint, maxt]`, one chunk decoded at
/// a time; chunks outside the range are skipped without decoding.
pub struct Chain<'a> {
    chunks: std::slice::Iter<'a, ChunkMeta>,
    cur: Option<(&'a ChunkMeta, ChunkIter<'a>)>,
    mint: i64,
    maxt: i64,
    error: Option<DecodeError>,
}

impl<'a> Chain<'a> {
    /// The samples of `chunks` (sorted by time, not overlapping) in `[mint, maxt]`.
    pub fn new(chunks: &'a [ChunkMeta], mint: i64, maxt: i64) -> Chain<'a> {
        Chain { chunks: chunks.iter(), cur: None, mint, maxt, error: None }
    }

    /// Why the chain ended early, if it did.
    pub fn error(&self) -> Option<&DecodeError> {
        self.error.as_ref()
    }
}

impl Iterator for Chain<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        loop {
            if let Some((c, it)) = &mut self.cur {
                if let Some(s) = it.next() {
                    return Some(s);
                }
                if let Some(e) = it.error() {
                    self.error = Some(DecodeError::new(c, e.clone()));
                    self.chunks = [].iter();
                    self.cur = None;
                    return None;
                }
                self.cur = None;
            }
            let c = self.chunks.next()?;
            if c.max_t < self.mint {
                continue;
            }
            if c.min_t > self.maxt {
                self.chunks = [].iter();
                return None;
            }
            self.cur = Some((c, c.iter(self.mint, self.maxt)));
        }
    }
}

/// A chunk being read by a [`Merge`]: its next sample and the rest.
struct Source<'a> {
    /// Position of the chunk in the caller's list: lower wins a tie.
    rank: usize,
    next: (i64, f64),
    chunk: &'a ChunkMeta,
    rest: ChunkIter<'a>,
}

/// The samples of chunks that may overlap, inside `[mint, maxt]`, merged in time order with one per
/// timestamp (the first-listed chunk's wins). A chunk is decoded only from when its time range starts
/// to matter, so a series with a few late chunks costs a comparison or two per sample, not a sort.
pub struct Merge<'a> {
    /// Chunks not started, sorted so that the one with the smallest `min_t` is last.
    pending: Vec<(usize, &'a ChunkMeta)>,
    active: Vec<Source<'a>>,
    mint: i64,
    maxt: i64,
    shadowed: u64,
    error: Option<DecodeError>,
}

impl<'a> Merge<'a> {
    /// The merged samples of `chunks` in `[mint, maxt]`; at equal timestamps the chunk that comes
    /// first in `chunks` wins.
    pub fn new(chunks: impl IntoIterator<Item = &'a ChunkMeta>, mint: i64, maxt: i64) -> Merge<'a> {
        let mut pending: Vec<(usize, &ChunkMeta)> =
            chunks.into_iter().enumerate().filter(|(_, c)| c.overlaps(mint, maxt)).collect();
        pending.sort_unstable_by_key(|&(rank, c)| std::cmp::Reverse((c.min_t, rank)));
        Merge { pending, active: Vec::new(), mint, maxt, shadowed: 0, error: None }
    }

    /// Samples left out so far because an earlier-listed chunk had another value at their timestamp.
    pub fn shadowed(&self) -> u64 {
        self.shadowed
    }

    /// Why the merge ended early, if it did.
    pub fn error(&self) -> Option<&DecodeError> {
        self.error.as_ref()
    }

    /// Starts every pending chunk that may hold a sample at or before the active chunks' next one.
    fn activate(&mut self) {
        let mut lo = self.active.iter().map(|s| s.next.0).min();
        while let Some(&(rank, chunk)) = self.pending.last() {
            if lo.is_some_and(|lo| chunk.min_t > lo) {
                break;
            }
            self.pending.pop();
            let mut rest = chunk.iter(self.mint, self.maxt);
            match rest.next() {
                Some(next) => {
                    lo = Some(lo.map_or(next.0, |lo| lo.min(next.0)));
                    self.active.push(Source { rank, next, chunk, rest });
                }
                None => {
                    if let Some(e) = rest.error() {
                        self.fail(DecodeError::new(chunk, e.clone()));
                        return;
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: DecodeError) {
        self.error = Some(e);
        self.pending.clear();
        self.active.clear();
    }

    /// Moves source `i` to its next sample; drops it when it has none.
    fn advance(&mut self, i: usize) -> bool {
        let Some(s) = self.active.get_mut(i) else { return false };
        if let Some(next) = s.rest.next() {
            s.next = next;
            return true;
        }
        if let Some(e) = s.rest.error() {
            let e = DecodeError::new(s.chunk, e.clone());
            self.fail(e);
            return false;
        }
        self.active.swap_remove(i);
        false
    }
}

impl Iterator for Merge<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        // One chunk being read and none due to start before its next sample: no comparison needed
        // (the usual case between the late samples of a series).
        if let [only] = self.active.as_slice() {
            let out = only.next;
            if self.pending.last().is_none_or(|(_, c)| c.min_t > out.0) {
                self.advance(0);
                return if self.error.is_some() { None } else { Some(out) };
            }
        }
        self.activate();
        let (out, win_rank) = self.active.iter().min_by_key(|s| (s.next.0, s.rank)).map(|s| (s.next, s.rank))?;
        // Every other source at the same timestamp loses its sample there.
        let mut i = 0;
        while i < self.active.len() {
            let at_tie = self.active.get(i).is_some_and(|s| s.next.0 == out.0);
            if !at_tie {
                i += 1;
                continue;
            }
            if self.active.get(i).is_some_and(|s| s.rank != win_rank && s.next.1.to_bits() != out.1.to_bits()) {
                self.shadowed += 1;
            }
            let kept = self.advance(i);
            if self.error.is_some() {
                return None;
            }
            // A dropped source was swapped with the last one: look at position `i` again.
            if kept {
                i += 1;
            }
        }
        Some(out)
    }
}

/// The samples of one series: a [`Chain`] when its chunks do not overlap, else a [`Merge`].
pub enum Samples<'a> {
    /// Non-overlapping chunks.
    Chain(Chain<'a>),
    /// Overlapping chunks.
    Merge(Merge<'a>),
}

impl Samples<'_> {
    /// Why the samples ended early, if they did.
    pub fn error(&self) -> Option<&DecodeError> {
        match self {
            Samples::Chain(c) => c.error(),
            Samples::Merge(m) => m.error(),
        }
    }

    /// Samples left out at a timestamp tie with a different value (always 0 for a chain).
    pub fn shadowed(&self) -> u64 {
        match self {
            Samples::Chain(_) => 0,
            Samples::Merge(m) => m.shadowed(),
        }
    }
}

impl Iterator for Samples<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        match self {
            Samples::Chain(c) => c.next(),
            Samples::Merge(m) => m.next(),
        }
    }
}

/// Appends the native histogram samples of `chunks` inside `[mint, maxt]` to `out` as float
/// histograms, in time order with one per timestamp: at a timestamp held by several chunks, the
/// sample of the chunk listed first wins, as in [`Merge`]. Float chunks are skipped without being
/// decoded. Fails at the first chunk that cannot be decoded; `out` is then left as it was.
pub fn merge_histograms<'a>(
    chunks: impl IntoIterator<Item = &'a ChunkMeta>,
    mint: i64,
    maxt: i64,
    out: &mut Vec<(i64, FloatHistogram)>,
) -> Result<(), DecodeError> {
    let mut values = Vec::new();
    merge_histogram_values(chunks, mint, maxt, &mut values)?;
    out.reserve(values.len());
    out.extend(values.into_iter().map(|(t, h)| match h {
        HistogramValue::Int(h) => (t, h.to_float()),
        HistogramValue::Float(h) => (t, h),
    }));
    Ok(())
}

/// [`merge_histograms`] keeping each sample's kind (integer or float counts), for answers that
/// send histograms as stored (remote read).
pub fn merge_histogram_values<'a>(
    chunks: impl IntoIterator<Item = &'a ChunkMeta>,
    mint: i64,
    maxt: i64,
    out: &mut Vec<(i64, HistogramValue)>,
) -> Result<(), DecodeError> {
    let mut all: Vec<(i64, usize, HistogramValue)> = Vec::new();
    let mut sorted = true;
    for (rank, c) in chunks.into_iter().enumerate() {
        if !c.data.is_histogram() || !c.overlaps(mint, maxt) {
            continue;
        }
        let mut it = c.histograms(mint, maxt);
        for (t, h) in it.by_ref() {
            sorted &= all.last().is_none_or(|last| last.0 < t);
            all.push((t, rank, h));
        }
        if let Some(e) = it.error() {
            return Err(DecodeError::new(c, e.clone()));
        }
    }
    if !sorted {
        // Stable order within a timestamp by rank; the first of each run wins.
        all.sort_by_key(|(t, rank, _)| (*t, *rank));
        all.dedup_by_key(|(t, _, _)| *t);
    }
    out.reserve(all.len());
    out.extend(all.into_iter().map(|(t, _, h)| (t, h)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::chunk::{ChunkBytes, ChunkData};
    use crate::chunkenc::XorChunk;

    fn xor(samples: &[(i64, f64)]) -> ChunkMeta {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.push(t, v);
        }
        ChunkMeta::new(
            samples.first().map_or(0, |s| s.0),
            samples.last().map_or(0, |s| s.0),
            ChunkData::Xor(ChunkBytes::from(c.bytes())),
        )
    }

    /// Chunks of strictly increasing timestamps, as XOR or raw.
    fn chunks() -> impl Strategy<Value = Vec<ChunkMeta>> {
        let chunk =
            (prop::collection::btree_map(-50i64..250, -3i8..3, 1..40), any::<bool>()).prop_map(|(m, as_xor)| {
                let s: Vec<(i64, f64)> = m.into_iter().map(|(t, v)| (t, f64::from(v))).collect();
                if as_xor {
                    xor(&s)
                } else {
                    ChunkMeta::raw(&s).unwrap()
                }
            });
        prop::collection::vec(chunk, 0..8)
    }

    fn model(chunks: &[ChunkMeta], mint: i64, maxt: i64) -> (Vec<(i64, f64)>, u64) {
        let mut first: BTreeMap<i64, f64> = BTreeMap::new();
        let mut shadowed = 0;
        for c in chunks {
            for (t, v) in c.iter(i64::MIN, i64::MAX) {
                if t < mint || t > maxt {
                    continue;
                }
                match first.get(&t) {
                    Some(w) if w.to_bits() != v.to_bits() => shadowed += 1,
                    Some(_) => {}
                    None => {
                        first.insert(t, v);
                    }
                }
            }
        }
        (first.into_iter().collect(), shadowed)
    }

    proptest! {
        /// The merge equals "the first-listed chunk's sample wins" on any chunks and any range.
        #[test]
        fn merge_keeps_the_first_listed_sample(cs in chunks(), mint in -60i64..260, len in 0i64..320) {
            let maxt = mint + len;
            let mut m = Merge::new(&cs, mint, maxt);
            let got: Vec<(i64, f64)> = m.by_ref().collect();
            prop_assert!(m.error().is_none());
            let (want, shadowed) = model(&cs, mint, maxt);
            prop_assert_eq!(got, want);
            prop_assert_eq!(m.shadowed(), shadowed);
        }

        /// On chunks that do not overlap, the chain equals the merge.
        #[test]
        fn chain_equals_merge_without_overlaps(cs in chunks(), mint in -60i64..260, len in 0i64..320) {
            let mut cs = cs;
            cs.sort_by_key(|c| c.min_t);
            let mut disjoint: Vec<ChunkMeta> = Vec::new();
            for c in cs {
                if disjoint.last().is_none_or(|l| l.max_t < c.min_t) {
                    disjoint.push(c);
                }
            }
            let maxt = mint + len;
            let chain: Vec<_> = Chain::new(&disjoint, mint, maxt).collect();
            let merge: Vec<_> = Merge::new(&disjoint, mint, maxt).collect();
            prop_assert_eq!(chain, merge);
        }
    }

    /// Histogram chunks (integer or float, encoded or raw) and float chunks between them, at any
    /// times: each histogram sample has its own counts, so a wrong winner shows.
    fn histogram_chunks() -> impl Strategy<Value = Vec<ChunkMeta>> {
        use crate::chunkenc::{CounterResetHeader, FloatHistogramChunk, HistogramChunk};
        use crate::histogram::{FloatHistogram, Histogram, HistogramValue};
        let chunk =
            (prop::collection::btree_set(-50i64..250, 1..30), 0u8..5, any::<u8>()).prop_map(|(ts, kind, id)| {
                let ts: Vec<i64> = ts.into_iter().collect();
                // Counts grow along the chunk (no cut in an encoded chunk); `id` tells chunks apart.
                let int = |i: usize| Histogram { count: (i * 256) as u64 + u64::from(id), ..Histogram::default() };
                let float = |i: usize| FloatHistogram { count: (i * 256) as f64 + f64::from(id), ..Default::default() };
                let (first, last) = (ts[0], ts[ts.len() - 1]);
                let data = match kind {
                    0 => {
                        let mut c = HistogramChunk::new(CounterResetHeader::Unknown);
                        ts.iter().enumerate().for_each(|(i, &t)| c.append(t, &int(i)).unwrap());
                        ChunkData::Histogram(ChunkBytes::from(c.bytes()))
                    }
                    1 => {
                        let mut c = FloatHistogramChunk::new(CounterResetHeader::Unknown);
                        ts.iter().enumerate().for_each(|(i, &t)| c.append(t, &float(i)).unwrap());
                        ChunkData::FloatHistogram(ChunkBytes::from(c.bytes()))
                    }
                    2 => ChunkData::RawHistograms(
                        ts.iter().enumerate().map(|(i, &t)| (t, HistogramValue::Int(int(i)))).collect(),
                    ),
                    3 => ChunkData::RawHistograms(
                        ts.iter().enumerate().map(|(i, &t)| (t, HistogramValue::Float(float(i)))).collect(),
                    ),
                    _ => ChunkData::Raw(ts.iter().map(|&t| (t, f64::from(id))).collect()),
                };
                ChunkMeta::new(first, last, data)
            });
        prop::collection::vec(chunk, 0..8)
    }

    proptest! {
        /// The histogram merge equals "the first-listed histogram chunk's sample wins" on any chunks
        /// and any range; float chunks add nothing to it, and histogram chunks nothing to the float
        /// merge.
        #[test]
        fn histogram_merge_keeps_the_first_listed_sample(
            cs in histogram_chunks(),
            mint in -60i64..260,
            len in 0i64..320,
        ) {
            let maxt = mint + len;
            let mut got = Vec::new();
            merge_histograms(&cs, mint, maxt, &mut got).unwrap();
            let mut want: BTreeMap<i64, FloatHistogram> = BTreeMap::new();
            for c in &cs {
                for (t, h) in c.histograms(i64::MIN, i64::MAX) {
                    if (mint..=maxt).contains(&t) {
                        want.entry(t).or_insert_with(|| h.to_float());
                    }
                }
            }
            let strip = |v: Vec<(i64, FloatHistogram)>| -> Vec<(i64, u64)> {
                v.into_iter().map(|(t, h)| (t, h.count.to_bits())).collect()
            };
            prop_assert_eq!(strip(got), strip(want.into_iter().collect()));
            let floats: Vec<(i64, f64)> = Merge::new(&cs, mint, maxt).collect();
            let float_chunks: Vec<ChunkMeta> = cs.iter().filter(|c| !c.data.is_histogram()).cloned().collect();
            prop_assert_eq!(floats, Merge::new(&float_chunks, mint, maxt).collect::<Vec<_>>());
        }
    }

    #[test]
    fn an_undecodable_chunk_ends_the_stream_with_its_error() {
        let good = xor(&[(1, 1.0), (2, 2.0)]);
        let bad = ChunkMeta::new(3, 9, ChunkData::Xor(ChunkBytes::from(&[0u8, 5, 1][..])));
        let cs = vec![good.clone(), bad.clone()];
        let mut chain = Chain::new(&cs, 0, 10);
        assert_eq!(chain.by_ref().count(), 2);
        assert!(chain.error().is_some());
        let cs = vec![good, bad];
        let mut merge = Merge::new(&cs, 0, 10);
        merge.by_ref().count();
        let e = merge.error().map(ToString::to_string).unwrap_or_default();
        assert!(e.contains("[3, 9]"), "{e}");
    }
}
