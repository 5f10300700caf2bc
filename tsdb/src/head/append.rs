//! [`Appender`]: one append transaction (typically one remote-write request).
//!
//! `append` judges each sample (the one decision, [`placement`]) against the series' committed state
//! plus every sample the transaction already queued for that series — a series may appear any number
//! of times in a request, adjacent or not, and always gets the same handle. `commit` writes every
//! queued sample — and a series record for every series whose record is not yet in the WAL — as one
//! WAL batch, applies the batch to memory while still holding the WAL's writer lock (so memory and WAL
//! agree on order, and replay rebuilds the same state), then waits for the fsync the sync policy
//! requires. Applying rejects nothing: it only stores (see `SeriesData::apply`).
//!
//! Native histograms ([`Appender::append_histogram`]) follow the same rules against the series'
//! histograms (a series' floats and histograms are judged apart) and go into one histograms record
//! of the same batch, applied after the float samples under the same lock. Exemplars
//! ([`Appender::append_exemplar`]) go into one exemplars record of the batch and, once it is
//! written, to the head's exemplar store.
//!
//! Two transactions appending to one series at once are each judged against the state they saw; the
//! one that commits second has its samples stored where the state then says (a sample another commit
//! overtook is stored as late), never dropped, since it is already in the WAL.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::histograms::identical;
use super::placement::{histogram_placement, placement, Limits, Placement, SeriesTail};
use super::series::{Applied, MemSeries, SeriesRef};
use super::series_table::BuildIntHasher;
use super::Head;
use crate::error::{AppendError, Error, RejectReason, Result};
use crate::exemplars::{Exemplar, ExemplarError};
use crate::histogram::{FloatHistogram, Histogram, HistogramValue};
use crate::labels::{hash_packed, pack_sorted, validate, LabelError, Labels, NameValidation};
use crate::record::{self, RefSample};

/// Bits of Prometheus's stale marker (`value.StaleNaN`).
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Handle to a series within one [`Appender`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesHandle(usize);

/// What a commit did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// Samples appended in order.
    pub in_order: u64,
    /// Samples inserted out of order.
    pub out_of_order: u64,
    /// Samples identical to the series' newest, to a stored late sample or to one queued before in
    /// the transaction (accepted, not stored twice).
    pub deduplicated: u64,
    /// Samples not stored because a different value was stored first at the same timestamp: a late
    /// sample meeting an earlier late one, one at the newest timestamp of a series whose newest sample
    /// is older than the head's in-order range (placed as late), or a writer racing another to the
    /// same newest timestamp. A late sample at a timestamp only the in-order chunks hold is stored and
    /// shadowed on read, not counted here.
    pub conflicts: u64,
    /// Series created by this transaction.
    pub series_created: u64,
    /// Native histogram samples appended in order.
    pub histograms_in_order: u64,
    /// Native histogram samples inserted out of order.
    pub histograms_out_of_order: u64,
    /// Native histogram samples identical to a stored or queued one (accepted, not stored twice).
    pub histograms_deduplicated: u64,
    /// Native histogram samples not stored because a different histogram was stored first at their
    /// timestamp (as [`CommitStats::conflicts`] for floats).
    pub histograms_conflicts: u64,
    /// Exemplars the exemplar store took at commit.
    pub exemplars_stored: u64,
    /// Exemplars the exemplar store refused at commit (out of order, duplicate, labels too long,
    /// storage off).
    pub exemplars_refused: u64,
}

/// The histogram samples an [`Appender`] queued, with what judging the next one needs.
#[derive(Default)]
struct HistQueue {
    /// Queued samples in request order.
    samples: Vec<(SeriesHandle, i64, HistogramValue)>,
    /// Per handle: the index in `samples` of its newest queued in-order histogram.
    tails: HashMap<usize, usize, BuildIntHasher>,
    /// Per (handle, timestamp): the index in `samples` of the histogram queued there.
    at: HashMap<(usize, i64), usize, BuildIntHasher>,
}

/// An append transaction. Not shared between threads; many may run at once.
pub struct Appender<'h> {
    head: &'h Head,
    limits: Limits,
    /// The name validation scheme new series are checked against, fixed when the appender opens.
    names: NameValidation,
    series: Vec<Arc<MemSeries>>,
    /// Handle of each series in `series`, by reference: a series repeated anywhere in the request
    /// gets the handle (and so the queued tail) it got first.
    handles: HashMap<SeriesRef, usize, BuildIntHasher>,
    /// Newest queued in-order sample per series handle (parallel to `series`).
    pending_tails: Vec<Option<SeriesTail>>,
    /// Per handle: where its open chunk's next append lands, seen under the lock in `append`. Only a
    /// prefetch hint for the commit (the chunk may have moved by then).
    append_addrs: Vec<usize>,
    /// Per handle: how many of its samples are queued. A late sample of a series with none queued
    /// cannot meet a queued one, so the index below is not needed for it.
    queued: Vec<u32>,
    pending: Vec<(SeriesHandle, i64, f64)>,
    /// Queued values by (handle, t); built only once a queued sample is out of order within this
    /// transaction, so in-order requests never pay for it.
    pending_index: Option<HashMap<(usize, i64), f64, BuildIntHasher>>,
    /// Reused buffer for the packed labels of the series being looked up.
    packed: Vec<u8>,
    /// Queued native histogram samples.
    hist: HistQueue,
    /// Queued exemplars, for the WAL and the head's exemplar store.
    exemplars: Vec<(SeriesHandle, Exemplar)>,
    stats: CommitStats,
}

impl<'h> Appender<'h> {
    pub(crate) fn new(head: &'h Head) -> Appender<'h> {
        let limits = Limits {
            head_max_t: head.max_time(),
            min_valid_t: head.min_valid_time(),
            ooo_window: head.ooo_time_window_ms(),
            max_future_t: head.max_future_time(),
        };
        Appender {
            head,
            limits,
            names: head.name_validation(),
            series: Vec::new(),
            handles: HashMap::default(),
            pending_tails: Vec::new(),
            append_addrs: Vec::new(),
            queued: Vec::new(),
            pending: Vec::new(),
            pending_index: None,
            packed: Vec::new(),
            hist: HistQueue::default(),
            exemplars: Vec::new(),
            stats: CommitStats::default(),
        }
    }

    /// Finds or creates the series with these label pairs (any order). The slice is validated and sorted
    /// in place, so callers can reuse one buffer; an existing series is found without allocating.
    pub fn series<'a>(&mut self, pairs: &mut [(&'a str, &'a str)]) -> std::result::Result<SeriesHandle, LabelError> {
        // Fast path: senders send sorted, complete label sets. If the pairs as given pack to the bytes
        // of a stored series, they are that (valid, sorted) label set: no validation needed.
        match self.find_as_given(pairs) {
            Some(s) => Ok(self.handle_for(s)),
            None => self.find_or_create_checked(pairs),
        }
    }

    /// [`Appender::series`] for label pairs as raw bytes, straight from a request. An existing series is
    /// found by comparing bytes, without a UTF-8 check: bytes equal to a stored label set are valid. Only
    /// a label set that is not stored as given is checked for UTF-8, validated and sorted.
    pub fn series_bytes(&mut self, pairs: &[(&[u8], &[u8])]) -> std::result::Result<SeriesHandle, LabelError> {
        if let Some(s) = self.find_as_given(pairs) {
            return Ok(self.handle_for(s));
        }
        self.create_from_bytes(pairs)
    }

    /// Packs and hashes `pairs` into `out` for a later [`Appender::series_prepared`], and hints the CPU
    /// to fetch the series map's slot meanwhile. A caller that prepares the next series before it
    /// appends the current one hides most of the lookup's wait for main memory.
    pub fn prepare_series(&self, pairs: &[(&[u8], &[u8])], out: &mut PreparedSeries) {
        pack_sorted(&mut out.packed, pairs);
        out.hash = hash_packed(&out.packed);
        self.head.series_maps().prefetch(out.hash);
    }

    /// The second step ahead of a lookup, after [`Appender::prepare_series`] and before
    /// [`Appender::series_prepared`]: hints the CPU to fetch the labels the lookup compares and the
    /// series state it reads, found through the slot the first step fetched.
    pub fn probe_series(&self, prepared: &PreparedSeries) {
        self.head.series_maps().probe(prepared.hash);
    }

    /// [`Appender::series_bytes`] for pairs already passed to [`Appender::prepare_series`].
    pub fn series_prepared(
        &mut self,
        prepared: &PreparedSeries,
        pairs: &[(&[u8], &[u8])],
    ) -> std::result::Result<SeriesHandle, LabelError> {
        if let Some(s) = self.head.series_maps().get_by_packed(prepared.hash, &prepared.packed) {
            return Ok(self.handle_for(s));
        }
        self.create_from_bytes(pairs)
    }

    /// The slow path of [`Appender::series_bytes`]: UTF-8 check, validation, sorting, creation.
    fn create_from_bytes(&mut self, pairs: &[(&[u8], &[u8])]) -> std::result::Result<SeriesHandle, LabelError> {
        let mut strs: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
        for (n, v) in pairs {
            match (std::str::from_utf8(n), std::str::from_utf8(v)) {
                (Ok(n), Ok(v)) => strs.push((n, v)),
                _ => {
                    self.head.stats.rejected_invalid.fetch_add(1, Ordering::Relaxed);
                    return Err(LabelError::InvalidUtf8);
                }
            }
        }
        self.find_or_create_checked(&mut strs)
    }

    /// The stored series whose packed labels are exactly these pairs in this order.
    fn find_as_given<N: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, pairs: &[(N, V)]) -> Option<Arc<MemSeries>> {
        pack_sorted(&mut self.packed, pairs);
        self.head.series_maps().get_by_packed(hash_packed(&self.packed), &self.packed)
    }

    /// Validates and sorts `pairs` in place, then finds or creates their series.
    fn find_or_create_checked<'a>(
        &mut self,
        pairs: &mut [(&'a str, &'a str)],
    ) -> std::result::Result<SeriesHandle, LabelError> {
        let maps = self.head.series_maps();
        let sorted = match validate(pairs, true, self.names) {
            Ok(s) => s,
            Err(e) => {
                self.head.stats.rejected_invalid.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        pack_sorted(&mut self.packed, sorted);
        let hash = hash_packed(&self.packed);
        let s = match maps.get_by_packed(hash, &self.packed) {
            Some(s) => s,
            None => {
                let head = self.head;
                let Some(sref) = head.alloc_ref() else {
                    return Err(LabelError::SeriesRefsExhausted);
                };
                let packed = &self.packed;
                let (s, created) = maps.get_or_create(hash, packed, || {
                    Arc::new(MemSeries::new(sref, Labels::from_packed_unchecked(packed), false))
                });
                if created {
                    head.register(&s);
                    self.stats.series_created += 1;
                }
                s
            }
        };
        Ok(self.handle_for(s))
    }

    /// The handle of `s` in this transaction: the one it got first if it was looked up before.
    fn handle_for(&mut self, s: Arc<MemSeries>) -> SeriesHandle {
        // Consecutive lookups of the same series skip the map.
        if let Some(last) = self.series.last() {
            if Arc::ptr_eq(last, &s) {
                return SeriesHandle(self.series.len() - 1);
            }
        }
        let next = self.series.len();
        let h = *self.handles.entry(s.sref).or_insert(next);
        if h != next {
            return SeriesHandle(h);
        }
        self.series.push(s);
        self.pending_tails.push(None);
        self.append_addrs.push(0);
        self.queued.push(0);
        SeriesHandle(self.series.len() - 1)
    }

    /// Checks sample `(t, v)` for the series and queues it for commit. The check sees the committed
    /// state plus what this transaction already queued, so a request behaves as if applied in order:
    /// a sample at the newest stored or queued timestamp, or at a timestamp queued before, is accepted
    /// and not queued again if identical, rejected if its value differs. A late sample is not checked
    /// against the stored ones here (see `SeriesData::apply` for what the commit does with it).
    /// Rejections are counted in the head's stats. A stale marker for a series whose newest sample
    /// is a histogram is appended as a histogram stale marker (see [`Appender::append_histogram`]),
    /// as Prometheus's head does, so that it ends the histograms it follows.
    pub fn append(&mut self, h: SeriesHandle, t: i64, v: f64) -> std::result::Result<(), AppendError> {
        let (Some(s), Some(&queued_tail)) = (self.series.get(h.0), self.pending_tails.get(h.0)) else {
            return Err(AppendError::InvalidLabels(LabelError::Empty));
        };
        let decision = {
            let data = s.lock();
            if let Some(addr) = self.append_addrs.get_mut(h.0) {
                *addr = data.append_addr();
            }
            let tail = match (data.tail(), queued_tail) {
                (Some(c), Some(q)) => Some(if q.max_t > c.max_t { q } else { c }),
                (c, q) => c.or(q),
            };
            if v.to_bits() == STALE_NAN_BITS {
                if let Some(marker) = self.histogram_stale_marker(h, data.hist_tail(), tail.map(|s| s.max_t)) {
                    drop(data);
                    return self.append_histogram(h, t, marker);
                }
            }
            placement(t, v, tail, self.limits)
        };
        let decision = match decision {
            Ok(Placement::OutOfOrder) => match self.queued_value(h, t) {
                Some(existing) if existing.to_bits() == v.to_bits() => Ok(Placement::Duplicate),
                Some(existing) => Err(AppendError::Duplicate { t, existing, new: v }),
                None => Ok(Placement::OutOfOrder),
            },
            other => other,
        };
        match decision {
            Ok(Placement::Duplicate) => {
                self.stats.deduplicated += 1;
                self.head.stats.samples_deduplicated.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(placed) => {
                if placed == Placement::InOrder {
                    if let Some(slot) = self.pending_tails.get_mut(h.0) {
                        *slot = Some(SeriesTail { max_t: t, last_value: v });
                    }
                }
                if let Some(index) = &mut self.pending_index {
                    index.insert((h.0, t), v);
                }
                if let Some(n) = self.queued.get_mut(h.0) {
                    *n += 1;
                }
                self.pending.push((h, t, v));
                Ok(())
            }
            Err(e) => {
                let st = &self.head.stats;
                let counter = match e.reason() {
                    RejectReason::OutOfBounds => &st.rejected_out_of_bounds,
                    RejectReason::OutOfOrder => &st.rejected_out_of_order,
                    RejectReason::TooOld => &st.rejected_too_old,
                    RejectReason::Duplicate => &st.rejected_duplicate,
                    RejectReason::TooFarInFuture => &st.rejected_too_far_in_future,
                    RejectReason::Invalid | RejectReason::InvalidHistogram => &st.rejected_invalid,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// For a float stale marker: the histogram stale marker it becomes when the series' newest
    /// in-order sample (committed or queued) is a histogram, of that histogram's kind, as
    /// Prometheus's head converts it; `None` (stays a float) otherwise. `committed` is the series'
    /// newest committed histogram, `float_newest` the timestamp of its newest float, committed or
    /// queued.
    fn histogram_stale_marker(
        &self,
        h: SeriesHandle,
        committed: Option<(i64, &HistogramValue)>,
        float_newest: Option<i64>,
    ) -> Option<HistogramValue> {
        let q = &self.hist;
        let queued = q.tails.get(&h.0).and_then(|&i| q.samples.get(i)).map(|(_, qt, qv)| (*qt, qv));
        let newest = match (committed, queued) {
            (Some(c), Some(q)) => Some(if q.0 > c.0 { q } else { c }),
            (c, q) => c.or(q),
        };
        let (ht, hv) = newest?;
        if float_newest.is_some_and(|ft| ft >= ht) {
            return None;
        }
        let sum = f64::from_bits(STALE_NAN_BITS);
        Some(match hv {
            HistogramValue::Int(_) => HistogramValue::Int(Histogram { sum, ..Histogram::default() }),
            HistogramValue::Float(_) => HistogramValue::Float(FloatHistogram { sum, ..FloatHistogram::default() }),
        })
    }

    /// A value this transaction already queued for the series at `t`. Builds the index of queued
    /// samples on first use (the first out-of-order sample of the transaction whose series already
    /// has queued samples).
    fn queued_value(&mut self, h: SeriesHandle, t: i64) -> Option<f64> {
        if self.queued.get(h.0).is_none_or(|&n| n == 0) {
            return None;
        }
        let pending = &self.pending;
        let index =
            self.pending_index.get_or_insert_with(|| pending.iter().map(|&(ph, pt, pv)| ((ph.0, pt), pv)).collect());
        index.get(&(h.0, t)).copied()
    }

    /// Checks native histogram sample `(t, v)` for the series and queues it for commit: validation
    /// ([`HistogramValue::validate`], rejected as [`AppendError::InvalidHistogram`] naming what is
    /// wrong), then the decision floats get ([`histogram_placement`]) against the series' committed
    /// histograms plus the ones this transaction queued: in order; out of order inside the window
    /// (stored among the series' late histograms, the first one at a timestamp wins); identical to
    /// the newest or to a queued one (accepted, not queued again); a different histogram at the
    /// newest or a queued timestamp ([`AppendError::DuplicateHistogram`]); too old, out of bounds,
    /// too far in the future. A series' float samples are not consulted: both kinds may share a
    /// timestamp. Rejections are counted in the head's histogram stats.
    pub fn append_histogram(
        &mut self,
        h: SeriesHandle,
        t: i64,
        v: HistogramValue,
    ) -> std::result::Result<(), AppendError> {
        let decision = match v.validate() {
            Err(e) => Err(AppendError::InvalidHistogram(e)),
            Ok(()) => self.judge_histogram(h, t, &v),
        };
        let hs = &self.head.stats.histograms;
        match decision {
            Ok(Placement::Duplicate) => {
                self.stats.histograms_deduplicated += 1;
                hs.deduplicated.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(placed) => {
                let q = &mut self.hist;
                let i = q.samples.len();
                if placed == Placement::InOrder {
                    q.tails.insert(h.0, i);
                }
                q.at.insert((h.0, t), i);
                q.samples.push((h, t, v));
                Ok(())
            }
            Err(e) => {
                hs.rejected(e.reason()).fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// The placement of histogram `(t, v)` against the series' committed and queued histograms.
    fn judge_histogram(
        &self,
        h: SeriesHandle,
        t: i64,
        v: &HistogramValue,
    ) -> std::result::Result<Placement, AppendError> {
        let Some(s) = self.series.get(h.0) else {
            return Err(AppendError::InvalidLabels(LabelError::Empty));
        };
        let q = &self.hist;
        let queued = q.tails.get(&h.0).and_then(|&i| q.samples.get(i)).map(|(_, qt, qv)| (*qt, qv));
        let decision = {
            let data = s.lock();
            let tail = match (data.hist_tail(), queued) {
                (Some(c), Some(q)) => Some(if q.0 > c.0 { q } else { c }),
                (c, q) => c.or(q),
            };
            histogram_placement(t, v, tail, self.limits)
        };
        match decision {
            Ok(Placement::OutOfOrder) => match q.at.get(&(h.0, t)).and_then(|&i| q.samples.get(i)) {
                Some((_, _, existing)) if identical(existing, v) => Ok(Placement::Duplicate),
                Some(_) => Err(AppendError::DuplicateHistogram { t }),
                None => Ok(Placement::OutOfOrder),
            },
            other => other,
        }
    }

    /// Queues an exemplar of the series: at commit it is written to the WAL with the batch's
    /// samples and then given to the head's exemplar store ([`super::Options::exemplars`]), which
    /// checks it as it checks any exemplar (out of order, duplicate, labels too long); the commit's
    /// [`CommitStats::exemplars_stored`] and [`CommitStats::exemplars_refused`] count the outcome.
    /// Refused here, with the store's reason, when the store would refuse it now (or the head has
    /// no store: [`ExemplarError::Disabled`]); such an exemplar is not written to the WAL.
    pub fn append_exemplar(&mut self, h: SeriesHandle, e: Exemplar) -> std::result::Result<(), ExemplarError> {
        let Some(store) = self.head.exemplar_store() else { return Err(ExemplarError::Disabled) };
        let Some(s) = self.series.get(h.0) else { return Err(ExemplarError::Disabled) };
        store.check(&s.labels, &e)?;
        self.exemplars.push((h, e));
        Ok(())
    }

    /// The series' newest timestamp: committed, or queued in this transaction if newer. `None` for a
    /// series without samples.
    pub fn newest_t(&self, h: SeriesHandle) -> Option<i64> {
        let committed = self.series.get(h.0)?.lock().tail().map(|t| t.max_t);
        let queued = self.pending_tails.get(h.0).copied().flatten().map(|t| t.max_t);
        committed.max(queued)
    }

    /// Convenience for tests and loaders: series lookup plus append.
    pub fn append_pairs(&mut self, pairs: &[(&str, &str)], t: i64, v: f64) -> std::result::Result<(), AppendError> {
        let mut buf: Vec<(&str, &str)> = pairs.to_vec();
        let h = self.series(&mut buf)?;
        self.append(h, t, v)
    }

    /// Number of samples queued (float and histogram).
    pub fn pending(&self) -> usize {
        self.pending.len() + self.hist.samples.len()
    }

    /// Writes the queued samples to the WAL, applies them to memory, and waits for durability.
    /// On `Err` nothing is acknowledged (the caller answers 5xx, the sender retries).
    pub fn commit(self) -> Result<CommitStats> {
        let head = self.head;
        let (stats, ticket) = self.commit_unsynced()?;
        if let Some(t) = ticket {
            head.wait_synced(t)?;
        }
        Ok(stats)
    }

    /// [`Appender::commit`] without waiting for the fsync: the samples are written to the WAL and
    /// applied to memory, and are durable (may be acknowledged) once [`Head::wait_synced`] returns
    /// `Ok` for the ticket, if one is returned. Lets the caller wait on another thread.
    pub fn commit_unsynced(mut self) -> Result<(CommitStats, Option<wal::SyncTicket>)> {
        let head = self.head;
        let unlogged: Vec<usize> =
            (0..self.series.len()).filter(|&i| self.series.get(i).is_some_and(|s| !s.is_logged())).collect();
        if self.pending.is_empty() && self.hist.samples.is_empty() && self.exemplars.is_empty() && unlogged.is_empty() {
            return Ok((self.stats, None));
        }
        let Some(wal) = head.wal() else {
            self.apply();
            return Ok((self.stats, None));
        };
        let mut series_rec = Vec::new();
        for &i in &unlogged {
            if let Some(s) = self.series.get(i) {
                record::encode_series(&mut series_rec, s.sref.0, &s.labels);
            }
        }
        let mut samples_rec = record::SamplesRecord::with_capacity(self.pending.len());
        for &(h, t, v) in &self.pending {
            if let Some(s) = self.series.get(h.0) {
                samples_rec.push(RefSample { sref: s.sref.0, t, v });
            }
        }
        let mut hist_rec = record::HistogramsRecord::default();
        for (h, t, v) in &self.hist.samples {
            if let Some(s) = self.series.get(h.0) {
                hist_rec.push(s.sref.0, *t, v);
            }
        }
        let mut exemplars_rec = record::ExemplarsRecord::default();
        for (h, e) in &self.exemplars {
            if let Some(s) = self.series.get(h.0) {
                exemplars_rec.push(s.sref.0, e);
            }
        }
        let mut recs: Vec<&[u8]> = Vec::with_capacity(4);
        for rec in [series_rec.as_slice(), samples_rec.as_bytes(), hist_rec.as_bytes(), exemplars_rec.as_bytes()] {
            if !rec.is_empty() {
                recs.push(rec);
            }
        }
        let series = &self.series;
        let pending = std::mem::take(&mut self.pending);
        let hist = std::mem::take(&mut self.hist.samples);
        let exemplars = std::mem::take(&mut self.exemplars);
        let addrs = &self.append_addrs;
        let mut stats = self.stats;
        let ((), ticket) = wal
            .log_unsynced(&recs, || {
                for &i in &unlogged {
                    if let Some(s) = series.get(i) {
                        s.set_logged();
                    }
                }
                apply_pending(head, series, addrs, &pending, &mut stats);
                apply_histograms(head, series, hist, &mut stats);
            })
            .map_err(Error::from)?;
        // After the WAL's lock is released: a query scanning the exemplar store holds its lock, and
        // must not hold up every commit. Two commits racing on one series' exemplars may then reach
        // the store in another order than the WAL's (the store may refuse one that replay takes).
        store_exemplars(head, series, exemplars, &mut stats);
        Ok((stats, ticket))
    }

    /// Drops the queued samples. Series created meanwhile stay (empty) in the head.
    pub fn rollback(self) {}

    fn apply(&mut self) {
        for s in &self.series {
            s.set_logged();
        }
        let pending = std::mem::take(&mut self.pending);
        apply_pending(self.head, &self.series, &self.append_addrs, &pending, &mut self.stats);
        let hist = std::mem::take(&mut self.hist.samples);
        apply_histograms(self.head, &self.series, hist, &mut self.stats);
        let exemplars = std::mem::take(&mut self.exemplars);
        store_exemplars(self.head, &self.series, exemplars, &mut self.stats);
    }
}

/// Applies histogram samples to memory in queue order, locking each series once per run of
/// consecutive samples.
fn apply_histograms(
    head: &Head,
    series: &[Arc<MemSeries>],
    hist: Vec<(SeriesHandle, i64, HistogramValue)>,
    stats: &mut CommitStats,
) {
    if hist.is_empty() {
        return;
    }
    let ctx = head.apply_ctx();
    let mut counts = HistogramCounts::default();
    let mut it = hist.into_iter().peekable();
    while let Some((h, t, v)) = it.next() {
        let Some(s) = series.get(h.0) else { continue };
        let mut data = s.lock();
        counts.add(t, data.apply_histogram(t, v, &ctx));
        while let Some((_, t, v)) = it.next_if(|next| next.0 == h) {
            counts.add(t, data.apply_histogram(t, v, &ctx));
        }
    }
    counts.publish(head);
    stats.histograms_in_order += counts.in_order;
    stats.histograms_out_of_order += counts.out_of_order;
    stats.histograms_deduplicated += counts.deduplicated;
    stats.histograms_conflicts += counts.conflicts;
}

/// What applying a batch of histogram samples did, and their time range.
pub(crate) struct HistogramCounts {
    pub(crate) in_order: u64,
    pub(crate) out_of_order: u64,
    pub(crate) deduplicated: u64,
    pub(crate) conflicts: u64,
    min_t: i64,
    max_t: i64,
}

impl Default for HistogramCounts {
    fn default() -> Self {
        HistogramCounts {
            in_order: 0,
            out_of_order: 0,
            deduplicated: 0,
            conflicts: 0,
            min_t: i64::MAX,
            max_t: i64::MIN,
        }
    }
}

impl HistogramCounts {
    pub(crate) fn add(&mut self, t: i64, a: Applied) {
        match a {
            Applied::InOrder => self.in_order += 1,
            Applied::OutOfOrder => self.out_of_order += 1,
            Applied::AlreadyStored => self.deduplicated += 1,
            Applied::Conflict => self.conflicts += 1,
        }
        self.min_t = self.min_t.min(t);
        self.max_t = self.max_t.max(t);
    }

    /// Widens the head's time range and adds the counts to its histogram stats.
    pub(crate) fn publish(&self, head: &Head) {
        if self.max_t != i64::MIN {
            head.observe_time(self.max_t);
            head.observe_time(self.min_t);
        }
        let st = &head.stats.histograms;
        st.in_order.fetch_add(self.in_order, Ordering::Relaxed);
        st.out_of_order.fetch_add(self.out_of_order, Ordering::Relaxed);
        st.deduplicated.fetch_add(self.deduplicated, Ordering::Relaxed);
        st.conflicts.fetch_add(self.conflicts, Ordering::Relaxed);
    }
}

/// Gives the committed exemplars to the head's exemplar store, series by series in queue order.
fn store_exemplars(
    head: &Head,
    series: &[Arc<MemSeries>],
    exemplars: Vec<(SeriesHandle, Exemplar)>,
    stats: &mut CommitStats,
) {
    let Some(store) = head.exemplar_store() else { return };
    let mut it = exemplars.into_iter().peekable();
    while let Some((h, e)) = it.next() {
        let Some(s) = series.get(h.0) else { continue };
        let mut run = vec![e];
        while let Some((_, e)) = it.next_if(|next| next.0 == h) {
            run.push(e);
        }
        for r in store.append(&s.labels, run) {
            match r {
                Ok(()) => stats.exemplars_stored += 1,
                Err(_) => stats.exemplars_refused += 1,
            }
        }
    }
}

/// Label pairs packed and hashed ahead of their lookup (see [`Appender::prepare_series`]). Reusable.
#[derive(Debug, Default, Clone)]
pub struct PreparedSeries {
    packed: Vec<u8>,
    hash: u64,
}

/// How many queued samples ahead `apply_pending` hints the CPU to fetch.
const PREFETCH_AHEAD: usize = 4;

/// Applies samples to memory, locking each series once per run of consecutive samples.
fn apply_pending(
    head: &Head,
    series: &[Arc<MemSeries>],
    append_addrs: &[usize],
    pending: &[(SeriesHandle, i64, f64)],
    stats: &mut CommitStats,
) {
    // Once per batch, as replay computes it once per record: both place samples identically.
    let ctx = head.apply_ctx();
    let mut dedup = 0u64;
    let (in_order_before, ooo_before, conflicts_before) = (stats.in_order, stats.out_of_order, stats.conflicts);
    // The head's time range is widened once per batch: its atomics are shared by every writer.
    let mut max_t = i64::MIN;
    let mut min_t = i64::MAX;
    let mut i = 0;
    while i < pending.len() {
        let Some(&(h, _, _)) = pending.get(i) else { break };
        let Some(s) = series.get(h.0) else {
            i += 1;
            continue;
        };
        // Series follow each other in no order memory likes: fetch the next ones' state meanwhile.
        if let Some(&(ahead, _, _)) = pending.get(i + PREFETCH_AHEAD) {
            if let Some(a) = series.get(ahead.0) {
                a.prefetch();
            }
            if let Some(&addr) = append_addrs.get(ahead.0) {
                crate::prefetch::read(addr);
            }
        }
        let mut data = s.lock();
        while let Some(&(h2, t, v)) = pending.get(i) {
            if h2 != h {
                break;
            }
            match data.apply(t, v, &ctx, s.cut_seed) {
                Applied::InOrder => stats.in_order += 1,
                Applied::OutOfOrder => stats.out_of_order += 1,
                Applied::AlreadyStored => {
                    stats.deduplicated += 1;
                    dedup += 1;
                }
                Applied::Conflict => stats.conflicts += 1,
            }
            max_t = max_t.max(t);
            min_t = min_t.min(t);
            i += 1;
        }
        drop(data);
    }
    if max_t != i64::MIN {
        head.observe_time(max_t);
        head.observe_time(min_t);
    }
    let st = &head.stats;
    st.samples_in_order.fetch_add(stats.in_order - in_order_before, Ordering::Relaxed);
    st.samples_out_of_order.fetch_add(stats.out_of_order - ooo_before, Ordering::Relaxed);
    st.samples_deduplicated.fetch_add(dedup, Ordering::Relaxed);
    st.commit_conflicts.fetch_add(stats.conflicts - conflicts_before, Ordering::Relaxed);
}
