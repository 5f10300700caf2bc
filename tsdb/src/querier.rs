//! Reading back: [`Querier`] selects series by matchers over a time range and hands out [`Series`]
//! snapshots whose samples are merged from in-order and out-of-order chunks, sorted and deduplicated.
//!
//! A snapshot holds `Arc`s of sealed chunks and copies of the open ones, so readers never block
//! writers for longer than one series' snapshot, and never see a chunk change under them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::block::Block;
use crate::chunk::ChunkMeta;
use crate::error::{Error, Result};
use crate::head::Head;
use crate::histogram::{FloatHistogram, HistogramValue};
use crate::labels::{Labels, Matcher};
use crate::merge::{merge_histogram_values, merge_histograms, Chain, Merge, Samples};
use crate::pending_reads::PendingRead;

/// Reads that failed (a block's index or chunks, a head chunk file, an undecodable chunk), since
/// the process started.
static READ_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Number of reads that failed since the process started (`strata_storage_read_errors_total`).
pub fn read_errors_total() -> u64 {
    READ_ERRORS.load(Ordering::Relaxed)
}

pub(crate) fn count_read_error(e: Error) -> Error {
    READ_ERRORS.fetch_add(1, Ordering::Relaxed);
    e
}

/// The warnings of a read that was asked to leave out what it cannot read (`partial_response`)
/// instead of failing. Shared by everything one request reads.
#[derive(Debug, Default)]
pub struct ReadWarnings(Mutex<Vec<String>>);

impl ReadWarnings {
    /// Records that `e` left something out of the answer.
    pub fn add(&self, e: &Error) {
        self.add_message(e.to_string());
    }

    /// Records a warning (each text once).
    pub fn add_message(&self, msg: String) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !w.contains(&msg) {
            w.push(msg);
        }
    }

    /// The warnings so far, each once.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A series snapshot: labels and the chunks overlapping the querier's range.
#[derive(Debug, Clone)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// In-order chunks: sorted by time, not overlapping.
    pub chunks: Vec<ChunkMeta>,
    /// Out-of-order chunks: may overlap each other and the in-order chunks.
    pub ooo_chunks: Vec<ChunkMeta>,
}

impl Series {
    /// Adds chunks from another source (a block). They stay on the fast, non-overlapping path when
    /// they don't overlap what the series already has.
    pub fn add_chunks(&mut self, mut more: Vec<ChunkMeta>) {
        more.sort_by_key(|c| c.min_t);
        let overlap = |a: &ChunkMeta, b: &ChunkMeta| a.min_t <= b.max_t && b.min_t <= a.max_t;
        let clash = more.windows(2).any(|w| overlap(&w[0], &w[1]))
            || self.chunks.iter().any(|a| more.iter().any(|b| overlap(a, b)));
        if clash {
            self.ooo_chunks.extend(more);
        } else {
            self.chunks.extend(more);
            self.chunks.sort_by_key(|c| c.min_t);
        }
    }

    /// All samples with `mint <= t <= maxt`, sorted by time, one per timestamp: at a timestamp held by
    /// several chunks, the one listed first wins (in-order chunks before out-of-order ones, so an
    /// in-order sample wins over a late one, which the head stores without comparing them). Check
    /// [`Samples::error`] after the last sample.
    pub fn samples(&self, mint: i64, maxt: i64) -> Samples<'_> {
        if self.ooo_chunks.is_empty() {
            return Samples::Chain(Chain::new(&self.chunks, mint, maxt));
        }
        Samples::Merge(Merge::new(self.chunks.iter().chain(&self.ooo_chunks), mint, maxt))
    }

    /// Appends [`Series::samples`] to `out`; an undecodable chunk is an error.
    pub fn read_samples(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> Result<()> {
        let mut it = self.samples(mint, maxt);
        out.extend(it.by_ref());
        match it.error() {
            Some(e) => Err(count_read_error(Error::Decode(e.clone()))),
            None => Ok(()),
        }
    }

    /// Appends the series' native histogram samples with `mint <= t <= maxt` to `out` as float
    /// histograms, sorted by time, one per timestamp, with the tie rule of [`Series::samples`]
    /// (in-order chunks before out-of-order ones, each list in its order); an undecodable chunk is
    /// an error. Float chunks are skipped.
    pub fn read_histograms(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, FloatHistogram)>) -> Result<()> {
        merge_histograms(self.chunks.iter().chain(&self.ooo_chunks), mint, maxt, out)
            .map_err(|e| count_read_error(Error::Decode(e)))
    }

    /// [`Series::read_histograms`] with each histogram of the kind it is stored as (integer or
    /// float counts).
    pub fn read_histogram_values(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, HistogramValue)>) -> Result<()> {
        merge_histogram_values(self.chunks.iter().chain(&self.ooo_chunks), mint, maxt, out)
            .map_err(|e| count_read_error(Error::Decode(e)))
    }
}

/// A series selected by [`Querier::select_lazy`]: the head series (read when a snapshot is taken)
/// and the chunks of each block that has it. Two words: a selector over every series of a large
/// head holds one per series while it is evaluated.
pub enum LazySeries {
    /// A series only the head has.
    Head(Arc<crate::head::series::MemSeries>),
    /// A series one or more blocks have (and maybe the head).
    Blocks(Box<BlockPart>),
}

/// A [`LazySeries`] that blocks have.
pub struct BlockPart {
    /// The series' labels.
    labels: Labels,
    head: Option<Arc<crate::head::series::MemSeries>>,
    /// Chunks per block, in the querier's block order, each overlapping the querier's range.
    chunks: Vec<Vec<ChunkMeta>>,
}

impl LazySeries {
    /// The series' labels.
    pub fn labels(&self) -> &Labels {
        match self {
            LazySeries::Head(s) => &s.labels,
            LazySeries::Blocks(b) => &b.labels,
        }
    }

    /// Hints the CPU to fetch the head series' state and labels, for a caller about to snapshot
    /// this series after a few others: a selector over many head series otherwise waits for main
    /// memory at each one in turn.
    pub fn prefetch(&self) {
        if let Some(s) = self.head() {
            s.prefetch_for_read();
        }
    }

    /// The second step after [`LazySeries::prefetch`]: fetches what the head series' state points
    /// to (its open chunk, its out-of-order data).
    pub fn prefetch_chunks(&self) {
        if let Some(s) = self.head() {
            s.prefetch_chunks();
        }
    }

    /// The head's series, if the head has it.
    fn head(&self) -> Option<&Arc<crate::head::series::MemSeries>> {
        match self {
            LazySeries::Head(s) => Some(s),
            LazySeries::Blocks(b) => b.head.as_ref(),
        }
    }

    /// Adds one block's chunks of the series.
    fn add_block_chunks(&mut self, chunks: Vec<ChunkMeta>) {
        match self {
            LazySeries::Blocks(b) => b.chunks.push(chunks),
            LazySeries::Head(h) => {
                let part = BlockPart { labels: h.labels.clone(), head: Some(Arc::clone(h)), chunks: vec![chunks] };
                *self = LazySeries::Blocks(Box::new(part));
            }
        }
    }

    /// A snapshot of the chunks overlapping `[mint, maxt]` (normally the querier's range; block
    /// chunks were already limited to that); `None` if there are none. Fails when a head chunk
    /// cannot be read from its file.
    pub fn snapshot(&self, mint: i64, maxt: i64) -> Result<Option<Series>> {
        let b = match self {
            LazySeries::Head(s) => return s.snapshot(mint, maxt),
            LazySeries::Blocks(b) => b,
        };
        let head = match &b.head {
            Some(h) => h.snapshot(mint, maxt)?,
            None => None,
        };
        let mut series =
            head.unwrap_or_else(|| Series { labels: b.labels.clone(), chunks: Vec::new(), ooo_chunks: Vec::new() });
        for chunks in &b.chunks {
            series.add_chunks(chunks.clone());
        }
        Ok(Some(series))
    }

    /// Appends the series' samples in `[mint, maxt]` to `out`: sorted, one per timestamp. A chunk
    /// that cannot be read or decoded is an error, never a shorter answer.
    pub fn read_samples(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> Result<()> {
        match self.snapshot(mint, maxt)? {
            Some(s) => s.read_samples(mint, maxt, out),
            None => Ok(()),
        }
    }

    /// Appends the series' native histogram samples in `[mint, maxt]` to `out` as float histograms:
    /// head, block and out-of-order chunks merged in time order, one per timestamp, with the tie
    /// rule of [`LazySeries::read_samples`]. A chunk that cannot be read or decoded is an error,
    /// never a shorter answer.
    pub fn read_histograms(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, FloatHistogram)>) -> Result<()> {
        match self.snapshot(mint, maxt)? {
            Some(s) => s.read_histograms(mint, maxt, out),
            None => Ok(()),
        }
    }
    /// [`LazySeries::read_samples`] and [`LazySeries::read_histograms`] from one snapshot.
    pub fn read_all(
        &self,
        mint: i64,
        maxt: i64,
        floats: &mut Vec<(i64, f64)>,
        hists: &mut Vec<(i64, FloatHistogram)>,
    ) -> Result<()> {
        match self.snapshot(mint, maxt)? {
            Some(s) => {
                s.read_samples(mint, maxt, floats)?;
                if s.chunks.iter().chain(&s.ooo_chunks).any(|c| c.data.is_histogram()) {
                    s.read_histograms(mint, maxt, hists)?;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// Reads series from the head and the blocks over `[mint, maxt]` (ms, inclusive), merging series with
/// equal labels across them.
///
/// What cannot be read fails the read (an answer without it would look complete), unless the querier
/// was made [`Querier::partial`]: then a block that cannot be read is left out and a warning says so.
pub struct Querier {
    head: Arc<Head>,
    blocks: Vec<Arc<Block>>,
    mint: i64,
    maxt: i64,
    partial: Option<Arc<ReadWarnings>>,
    /// Keeps head compaction from dropping from memory what this querier's block list lacks, as long
    /// as the querier or a [`Selection`] of it lives ([`crate::pending_reads`]).
    pending: Option<PendingRead>,
}

/// The series a [`Querier::select_lazy`] selected. Holds the querier's registration as a pending
/// read, so the head keeps every range the querier's block list lacks until the selection is
/// dropped, also when the querier is dropped first.
pub struct Selection {
    series: Vec<LazySeries>,
    pending: Option<PendingRead>,
}

impl std::ops::Deref for Selection {
    type Target = [LazySeries];
    fn deref(&self) -> &[LazySeries] {
        &self.series
    }
}

impl IntoIterator for Selection {
    type Item = LazySeries;
    type IntoIter = SelectionIter;
    fn into_iter(self) -> SelectionIter {
        SelectionIter { series: self.series.into_iter(), _pending: self.pending }
    }
}

/// The series of a [`Selection`] by value; holds its pending read until dropped.
pub struct SelectionIter {
    series: std::vec::IntoIter<LazySeries>,
    _pending: Option<PendingRead>,
}

impl Iterator for SelectionIter {
    type Item = LazySeries;
    fn next(&mut self) -> Option<LazySeries> {
        self.series.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.series.size_hint()
    }
}

impl Querier {
    /// A querier over the head only.
    pub fn new(head: Arc<Head>, mint: i64, maxt: i64) -> Querier {
        Querier { head, blocks: Vec::new(), mint, maxt, partial: None, pending: None }
    }

    /// A querier over the head and the blocks overlapping the range.
    pub fn with_blocks(head: Arc<Head>, blocks: &[Arc<Block>], mint: i64, maxt: i64) -> Querier {
        let blocks = blocks.iter().filter(|b| b.meta().min_time <= maxt && b.meta().max_time > mint).cloned().collect();
        Querier { head, blocks, mint, maxt, partial: None, pending: None }
    }

    /// This querier registered as `pending` for as long as it or a selection of it lives.
    pub(crate) fn with_pending(mut self, pending: PendingRead) -> Querier {
        self.pending = Some(pending);
        self
    }

    /// This querier leaving out blocks it cannot read, with a warning in `warnings` for each.
    pub fn partial(mut self, warnings: Arc<ReadWarnings>) -> Querier {
        self.partial = Some(warnings);
        self
    }

    /// Start of the range.
    pub fn mint(&self) -> i64 {
        self.mint
    }

    /// End of the range.
    pub fn maxt(&self) -> i64 {
        self.maxt
    }

    /// What a block read that failed with `e` does: fails the read, or (partial) leaves the block out.
    fn block_failed(&self, b: &Block, e: crate::block::BlockError) -> Result<()> {
        let e = count_read_error(Error::from(e));
        tracing::warn!(block = %b.meta().ulid, error = %e, partial = self.partial.is_some(), "block read failed");
        match &self.partial {
            Some(w) => {
                w.add(&e);
                Ok(())
            }
            None => Err(e),
        }
    }

    /// Series matching all matchers that have samples in the range, sorted by labels.
    pub fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>> {
        let mut out = Vec::new();
        for s in self.select_lazy(matchers)? {
            out.extend(s.snapshot(self.mint, self.maxt)?);
        }
        Ok(out)
    }

    /// Series matching all matchers, sorted by labels, without reading their samples: a head series
    /// is snapshotted only when [`LazySeries::snapshot`] is called, so a caller that reads one series
    /// at a time holds one snapshot at a time. Unlike [`Querier::select`], head series without samples
    /// in the range are included (their snapshot is `None`).
    pub fn select_lazy(&self, matchers: &[Matcher]) -> Result<Selection> {
        self.select_lazy_sorted(matchers, true)
    }

    /// [`Querier::select_lazy`] in no particular order: with the head alone, the series are not
    /// sorted (on 100k series, sorting is most of the selection's time: cache misses on labels).
    pub fn select_lazy_unordered(&self, matchers: &[Matcher]) -> Result<Selection> {
        self.select_lazy_sorted(matchers, false)
    }

    fn select_lazy_sorted(&self, matchers: &[Matcher], sort: bool) -> Result<Selection> {
        Ok(Selection { series: self.select_series(matchers, sort)?, pending: self.pending.clone() })
    }

    fn select_series(&self, matchers: &[Matcher], sort: bool) -> Result<Vec<LazySeries>> {
        let refs = self.head.postings().select(matchers);
        let maps = self.head.series_maps();
        let mut out: Vec<LazySeries> = refs
            .iter()
            .filter_map(|r| maps.get_by_ref(crate::head::SeriesRef(u64::from(r))))
            .map(LazySeries::Head)
            .collect();
        if self.blocks.is_empty() {
            if sort {
                out.sort_unstable_by(|a, b| a.labels().cmp(b.labels()));
            }
            return Ok(out);
        }
        let mut merged: BTreeMap<Labels, LazySeries> = out.into_iter().map(|s| (s.labels().clone(), s)).collect();
        for b in &self.blocks {
            let found = match b.select(matchers) {
                Ok(f) => f,
                Err(e) => {
                    self.block_failed(b, e)?;
                    continue;
                }
            };
            for (labels, chunks) in found {
                let chunks: Vec<ChunkMeta> =
                    chunks.into_iter().filter(|c| c.min_t <= self.maxt && c.max_t >= self.mint).collect();
                if chunks.is_empty() {
                    continue;
                }
                match merged.get_mut(&labels) {
                    Some(existing) => existing.add_block_chunks(chunks),
                    None => {
                        let part = BlockPart { labels: labels.clone(), head: None, chunks: vec![chunks] };
                        merged.insert(labels, LazySeries::Blocks(Box::new(part)));
                    }
                }
            }
        }
        Ok(merged.into_values().collect())
    }

    /// Label sets of the series matching the matchers with data in the range, sorted. A series
    /// whose chunks in the range are all deleted whole is left out, as Prometheus does.
    pub fn series_labels(&self, matchers: &[Matcher]) -> Result<Vec<Labels>> {
        let refs = self.head.postings().select(matchers);
        let maps = self.head.series_maps();
        let mut out: BTreeSet<Labels> = refs
            .iter()
            .filter_map(|r| maps.get_by_ref(crate::head::SeriesRef(u64::from(r))))
            .filter(|s| s.lock().has_chunk_in(self.mint, self.maxt))
            .map(|s| s.labels.clone())
            .collect();
        for b in &self.blocks {
            match b.select(matchers) {
                Ok(found) => out.extend(
                    found
                        .into_iter()
                        .filter(|(_, cs)| cs.iter().any(|c| c.min_t <= self.maxt && c.max_t >= self.mint))
                        .map(|(l, _)| l),
                ),
                Err(e) => self.block_failed(b, e)?,
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Label names of series matching the matchers (all series when `matchers` is empty), sorted.
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        let postings = self.head.postings();
        let mut out: BTreeSet<String> = if matchers.is_empty() {
            postings.label_names(None).into_iter().collect()
        } else {
            postings.label_names(Some(&postings.select(matchers))).into_iter().collect()
        };
        for b in &self.blocks {
            match b.label_names(matchers) {
                Ok(names) => out.extend(names),
                Err(e) => self.block_failed(b, e)?,
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Values of label `name` among series matching the matchers (all when empty), sorted.
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        let postings = self.head.postings();
        let mut out: BTreeSet<String> = if matchers.is_empty() {
            postings.label_values(name, None).into_iter().collect()
        } else {
            postings.label_values(name, Some(&postings.select(matchers))).into_iter().collect()
        };
        for b in &self.blocks {
            match b.label_values(name, matchers) {
                Ok(values) => out.extend(values),
                Err(e) => self.block_failed(b, e)?,
            }
        }
        Ok(out.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selected_series_is_two_words() {
        // A selector over every series holds one per series until it is evaluated.
        assert_eq!(std::mem::size_of::<LazySeries>(), 2 * std::mem::size_of::<usize>());
    }

    /// Snapshots over any window (instant lookbacks at the end, ranges over sealed chunks) hold
    /// exactly the window's samples, also where the snapshot skips the sealed chunk lists.
    #[test]
    fn head_snapshots_keep_exactly_the_window() {
        const MIN: i64 = 60_000;
        let (_d, head) = crate::testing::temp_head(crate::testing::memory_options(6 * 60 * MIN));
        let mut all = std::collections::BTreeMap::new();
        let mut app = head.appender();
        // Six hours in order (several sealed chunks), every fifth minute left out ...
        for i in (0..360i64).filter(|i| i % 5 != 0) {
            app.append_pairs(&[("__name__", "m")], i * MIN, i as f64).unwrap();
            all.insert(i * MIN, i as f64);
        }
        app.commit().unwrap();
        // ... and sent late, newest first (sealed out-of-order chunks and an open buffer).
        let mut app = head.appender();
        for i in (0..360i64).filter(|i| i % 5 == 0).rev() {
            app.append_pairs(&[("__name__", "m")], i * MIN, -(i as f64)).unwrap();
            all.insert(i * MIN, -(i as f64));
        }
        app.commit().unwrap();
        let end = 359 * MIN;
        for (mint, maxt) in [
            (end - 5 * MIN, end),
            (end - 60 * MIN, end),
            (end - 200 * MIN, end - 100 * MIN),
            (0, 10 * MIN),
            (-MIN, end + MIN),
            (7 * MIN + 1, 7 * MIN + 2),
            (end + 1, end + MIN),
        ] {
            let q = Querier::new(std::sync::Arc::clone(&head), mint, maxt);
            let got: Vec<(i64, f64)> = q
                .select(&[Matcher::equal("__name__", "m")])
                .unwrap()
                .iter()
                .flat_map(|s| s.samples(mint, maxt).collect::<Vec<_>>())
                .collect();
            let want: Vec<(i64, f64)> = all.range(mint..=maxt).map(|(&t, &v)| (t, v)).collect();
            assert_eq!(got, want, "[{mint}, {maxt}]");
        }
    }
}
