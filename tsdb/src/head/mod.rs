//! The head block: the in-memory, writable part of the database.
//!
//! [`Head`] is a thin coordinator over the series maps ([`series`]), the postings ([`postings`]), the
//! WAL and the head's time range. Appends go through an [`Appender`] transaction ([`append`]); startup
//! goes through WAL replay ([`replay`]); a series' chunks are read through a snapshot (`read`), which
//! [`crate::querier::Querier`] merges with the blocks'; deleted intervals live on the series
//! ([`tombstones`]); a series' native histograms live apart from its floats ([`histograms`]).
//!
//! Durability: [`Appender::commit`] writes the batch to the WAL and applies it to memory in WAL order
//! under the WAL's writer lock, then waits for the fsync the WAL's sync policy requires. When commit
//! returns `Ok`, every accepted sample is in the WAL.

pub mod append;
pub mod checkpoint;
pub mod chunk_file;
pub mod compact;
pub mod gc;
pub mod histograms;
pub mod in_order;
pub mod ooo;
pub mod placement;
pub mod postings;
mod read;
pub mod replay;
pub mod series;
pub mod series_table;
pub mod tombstones;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

pub use append::{Appender, CommitStats, PreparedSeries, SeriesHandle};
pub use compact::RangeSnapshot;
pub use series::{Applied, SeriesRef};

use crate::error::{Error, Result};
use crate::labels::NameValidation;
use postings::MemPostings;
use series::MemSeries;
use series_table::StripeSeries;

/// Default block / chunk range: 2h in ms.
pub const DEFAULT_CHUNK_RANGE_MS: i64 = 2 * 3_600_000;
/// Default capacity of an open out-of-order chunk (Prometheus's `out_of_order_cap_max`).
pub const DEFAULT_OOO_CAP_MAX: usize = 32;
/// Default number of stripes of the series maps: few enough that their locks stay in cache (4096
/// cost ~15% more CPU per sample at 100k series), plenty for the writers of 2–32 cores.
pub const DEFAULT_STRIPE_SIZE: usize = 64;

/// Default creation grace period: samples up to 10 minutes ahead of the wall clock are accepted.
pub const DEFAULT_CREATION_GRACE_PERIOD_MS: i64 = 10 * 60_000;

/// Head configuration. Plain values, checked by the caller.
#[derive(Debug, Clone)]
pub struct Options {
    /// Chunk / block range in ms (Prometheus's `--storage.tsdb.min-block-duration`, 2h).
    pub chunk_range_ms: i64,
    /// `out_of_order_time_window` in ms; 0 = out-of-order samples are rejected as in Prometheus.
    pub ooo_time_window_ms: i64,
    /// Samples in an open out-of-order chunk before it is cut into an immutable XOR chunk.
    pub ooo_cap_max: usize,
    /// Stripes of the series maps.
    pub stripe_size: usize,
    /// How far past the wall clock a sample may be, in ms (Mimir's `creation_grace_period`); `None`:
    /// no bound. Also applied at startup to samples replayed from the WAL, so a head poisoned by a
    /// far-future sample recovers.
    pub creation_grace_period_ms: Option<i64>,
    /// WAL options; `None` runs without a WAL (tests, benchmarks of the in-memory path).
    pub wal: Option<wal::Options>,
    /// Where committed exemplars go ([`Appender::append_exemplar`]) and where WAL replay puts the
    /// exemplars of the WAL; `None`: exemplars are refused.
    pub exemplars: Option<Arc<crate::exemplars::ExemplarStore>>,
    /// Which metric and label names new series may have (`global.metric_name_validation_scheme`).
    pub name_validation: NameValidation,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chunk_range_ms: DEFAULT_CHUNK_RANGE_MS,
            ooo_time_window_ms: 0,
            ooo_cap_max: DEFAULT_OOO_CAP_MAX,
            stripe_size: DEFAULT_STRIPE_SIZE,
            creation_grace_period_ms: Some(DEFAULT_CREATION_GRACE_PERIOD_MS),
            wal: Some(wal::Options::default()),
            exemplars: None,
            name_validation: NameValidation::Utf8,
        }
    }
}

/// Counters kept by the head (read by the server's `/metrics`).
#[derive(Debug, Default)]
pub struct HeadStats {
    /// Samples appended in order.
    pub samples_in_order: AtomicU64,
    /// Samples appended out of order.
    pub samples_out_of_order: AtomicU64,
    /// Identical samples accepted without storing them again.
    pub samples_deduplicated: AtomicU64,
    /// Samples rejected as out of bounds.
    pub rejected_out_of_bounds: AtomicU64,
    /// Samples rejected as out of order (window 0).
    pub rejected_out_of_order: AtomicU64,
    /// Samples rejected as too old (window > 0).
    pub rejected_too_old: AtomicU64,
    /// Samples rejected as duplicate timestamps with a different value.
    pub rejected_duplicate: AtomicU64,
    /// Samples rejected for a timestamp beyond the wall clock plus the creation grace period.
    pub rejected_too_far_in_future: AtomicU64,
    /// Samples rejected for invalid labels.
    pub rejected_invalid: AtomicU64,
    /// Accepted samples not stored because a different value was stored first at their timestamp
    /// (see [`CommitStats::conflicts`]; kept in the WAL, the first stored value wins in
    /// memory and on replay).
    pub commit_conflicts: AtomicU64,
    /// Late samples left out when the head was compacted into a block because a sample stored
    /// earlier at their timestamp (in order) has another value: acknowledged, never read.
    pub samples_shadowed: AtomicU64,
    /// Series created.
    pub series_created: AtomicU64,
    /// Series removed after their samples went into blocks.
    pub series_removed: AtomicU64,
    /// The same counts for native histogram samples.
    pub histograms: HistogramStats,
}

/// Counters of native histogram samples kept by the head, beside the float ones of [`HeadStats`].
#[derive(Debug, Default)]
pub struct HistogramStats {
    /// Histograms appended in order.
    pub in_order: AtomicU64,
    /// Histograms appended out of order.
    pub out_of_order: AtomicU64,
    /// Identical histograms accepted without storing them again.
    pub deduplicated: AtomicU64,
    /// Accepted histograms not stored because a different one was stored first at their timestamp.
    pub conflicts: AtomicU64,
    /// Rejected as out of bounds.
    pub rejected_out_of_bounds: AtomicU64,
    /// Rejected as out of order (window 0).
    pub rejected_out_of_order: AtomicU64,
    /// Rejected as too old (window > 0).
    pub rejected_too_old: AtomicU64,
    /// Rejected: a different histogram at the timestamp.
    pub rejected_duplicate: AtomicU64,
    /// Rejected for a timestamp beyond the wall clock plus the creation grace period.
    pub rejected_too_far_in_future: AtomicU64,
    /// Rejected as invalid histograms.
    pub rejected_invalid: AtomicU64,
}

impl HistogramStats {
    /// The counter of rejections for `reason`.
    pub fn rejected(&self, reason: crate::error::RejectReason) -> &AtomicU64 {
        use crate::error::RejectReason as R;
        match reason {
            R::OutOfBounds => &self.rejected_out_of_bounds,
            R::OutOfOrder => &self.rejected_out_of_order,
            R::TooOld => &self.rejected_too_old,
            R::Duplicate => &self.rejected_duplicate,
            R::TooFarInFuture => &self.rejected_too_far_in_future,
            R::Invalid | R::InvalidHistogram => &self.rejected_invalid,
        }
    }
}

/// What the blocks on disk tell the head when it opens.
#[derive(Debug, Clone, Default)]
pub struct OpenHints {
    /// Samples already persisted in blocks whose WAL was not yet checkpointed (a crash between writing
    /// a block and checkpointing): replay skips them.
    pub skips: Vec<ReplaySkip>,
    /// Newest block max time: in-order appends below it are out of bounds (Prometheus's minValidTime).
    pub min_valid_floor: i64,
}

/// Samples read from WAL positions before `before_segment` with `mint <= t < maxt` are in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySkip {
    /// The WAL segment cut when the block's snapshot was taken.
    pub before_segment: u32,
    /// Block min time (inclusive).
    pub mint: i64,
    /// Block max time (exclusive).
    pub maxt: i64,
}

/// The in-memory head block.
pub struct Head {
    opts: Options,
    dir: PathBuf,
    series: StripeSeries,
    postings: MemPostings,
    wal: Option<Arc<wal::Wal>>,
    /// Where sealed in-order chunks go (with a WAL only; without one they stay in memory).
    chunks: Option<chunk_file::HeadChunks>,
    next_ref: AtomicU64,
    min_t: AtomicI64,
    max_t: AtomicI64,
    /// In-order appends must not be older than this (the newest block's max time).
    min_valid_floor: AtomicI64,
    num_series: AtomicU64,
    /// Bytes of series records in the last checkpoint written: about what re-logging every series
    /// after its cut adds to the WAL (see `Head::relog_series`).
    relog_bytes: AtomicU64,
    /// The out-of-order time window appends use, in ms: starts as `Options::ooo_time_window_ms` and
    /// changes at runtime with [`Head::set_ooo_time_window_ms`] (a configuration reload).
    ooo_window_ms: AtomicI64,
    /// Whether new series are checked against the legacy name rules ([`NameValidation::Legacy`]) rather
    /// than UTF-8: starts from `Options::name_validation`, changes with [`Head::set_name_validation`].
    legacy_names: AtomicBool,
    stats: HeadStats,
}

impl Head {
    /// Opens the head in `dir` (the data directory; the WAL lives in `dir/wal`), repairing and replaying
    /// the WAL. Returns when replay is done.
    pub fn open(dir: &Path, opts: Options) -> Result<Arc<Head>> {
        Head::open_with(dir, opts, OpenHints { min_valid_floor: i64::MIN, ..OpenHints::default() })
    }

    /// Like [`Head::open`], with what the blocks on disk say.
    pub fn open_with(dir: &Path, opts: Options, hints: OpenHints) -> Result<Arc<Head>> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            op: "create directory",
            path: dir.to_owned(),
            source,
        })?;
        let wal_dir = dir.join("wal");
        let wal = match &opts.wal {
            Some(wopts) => {
                let (wal, report) = wal::Wal::open(&wal_dir, wopts.clone())?;
                if report.bytes_dropped > 0 || report.segments_removed > 0 {
                    tracing::warn!(
                        segment = ?report.segment.map(|s| s.0),
                        offset = report.offset,
                        bytes_dropped = report.bytes_dropped,
                        segments_removed = report.segments_removed,
                        torn_tails_before_newer_segments = report.torn_tails.len(),
                        "wal repaired: dropped a torn or corrupt tail"
                    );
                }
                Some(Arc::new(wal))
            }
            None => None,
        };
        let chunks = match &wal {
            Some(_) => Some(chunk_file::HeadChunks::open(dir)?),
            None => None,
        };
        let head = Arc::new(Head {
            chunks,
            series: StripeSeries::new(opts.stripe_size),
            postings: MemPostings::default(),
            wal,
            next_ref: AtomicU64::new(1),
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
            min_valid_floor: AtomicI64::new(hints.min_valid_floor),
            num_series: AtomicU64::new(0),
            relog_bytes: AtomicU64::new(0),
            ooo_window_ms: AtomicI64::new(opts.ooo_time_window_ms),
            legacy_names: AtomicBool::new(opts.name_validation == NameValidation::Legacy),
            stats: HeadStats::default(),
            dir: dir.to_owned(),
            opts,
        });
        if head.wal.is_some() {
            replay::replay(&head, &wal_dir, &hints.skips)?;
            head.relog_series();
            // Series whose samples all went into blocks before a crash that came ahead of the
            // checkpoint are back from the WAL, empty: the checkpoint written next leaves them out.
            head.gc_series();
        }
        Ok(head)
    }

    /// A querier over `[mint, maxt]` (ms, inclusive).
    pub fn querier(self: &Arc<Self>, mint: i64, maxt: i64) -> crate::querier::Querier {
        crate::querier::Querier::new(Arc::clone(self), mint, maxt)
    }

    /// Starts an append transaction.
    pub fn appender(&self) -> Appender<'_> {
        Appender::new(self)
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Oldest timestamp in the head (`i64::MAX` if empty).
    pub fn min_time(&self) -> i64 {
        self.min_t.load(Ordering::Acquire)
    }

    /// Newest timestamp in the head (`i64::MIN` if empty).
    pub fn max_time(&self) -> i64 {
        self.max_t.load(Ordering::Acquire)
    }

    /// Number of series.
    pub fn num_series(&self) -> u64 {
        self.num_series.load(Ordering::Relaxed)
    }

    /// The out-of-order time window appends use now, in ms (0: out-of-order samples are rejected).
    pub fn ooo_time_window_ms(&self) -> i64 {
        self.ooo_window_ms.load(Ordering::Relaxed)
    }

    /// Changes the out-of-order time window. Appenders created afterwards use the new window; one
    /// already open keeps the window it started with, so a batch is judged by a single window.
    /// Samples already in the head stay where they are.
    pub fn set_ooo_time_window_ms(&self, ms: i64) {
        self.ooo_window_ms.store(ms.max(0), Ordering::Relaxed);
    }

    /// The name validation scheme appends check new series against.
    pub fn name_validation(&self) -> NameValidation {
        if self.legacy_names.load(Ordering::Relaxed) {
            NameValidation::Legacy
        } else {
            NameValidation::Utf8
        }
    }

    /// Changes the name validation scheme for appenders created afterwards. It applies to label sets
    /// not yet in the head: series already stored (from earlier writes or the WAL) keep being appended
    /// to.
    pub fn set_name_validation(&self, scheme: NameValidation) {
        self.legacy_names.store(scheme == NameValidation::Legacy, Ordering::Relaxed);
    }

    /// Counters.
    pub fn stats(&self) -> &HeadStats {
        &self.stats
    }

    /// The exemplar store committed exemplars go to, if any ([`Options::exemplars`]).
    pub fn exemplar_store(&self) -> Option<&Arc<crate::exemplars::ExemplarStore>> {
        self.opts.exemplars.as_ref()
    }

    /// The WAL, if any.
    pub fn wal(&self) -> Option<&wal::Wal> {
        self.wal.as_deref()
    }

    /// The WAL as a shared handle, for a [`wal::SyncWaiter`] (which holds it weakly).
    pub fn shared_wal(&self) -> Option<&Arc<wal::Wal>> {
        self.wal.as_ref()
    }

    /// Waits until a commit's WAL batch is fsynced (see [`Appender::commit_unsynced`]). Blocking.
    /// `Err`: the batch is not durable and must not be acknowledged.
    pub fn wait_synced(&self, ticket: wal::SyncTicket) -> Result<()> {
        match &self.wal {
            Some(w) => w.wait_synced(ticket).map_err(Into::into),
            None => Ok(()),
        }
    }

    /// True if a commit's WAL batch is already fsynced: [`Head::wait_synced`] would not block.
    pub fn is_synced(&self, ticket: wal::SyncTicket) -> bool {
        self.wal.as_ref().is_none_or(|w| w.is_synced(ticket))
    }

    /// Total chunks held (for metrics).
    pub fn num_chunks(&self) -> u64 {
        let mut n = 0u64;
        self.series.for_each(|s| n += s.lock().chunk_count() as u64);
        n
    }

    /// Label-pair and label-name cardinality.
    pub fn postings_cardinality(&self) -> (usize, usize) {
        self.postings.cardinality()
    }

    /// Syncs and closes the WAL. Later commits fail with a WAL error.
    pub fn close(&self) -> Result<()> {
        if let Some(w) = &self.wal {
            w.close()?;
        }
        Ok(())
    }

    /// Newest timestamp a sample may carry now: the wall clock plus the creation grace period
    /// (`i64::MAX` when unbounded).
    pub(crate) fn max_future_time(&self) -> i64 {
        match self.opts.creation_grace_period_ms {
            Some(grace) => now_ms().saturating_add(grace),
            None => i64::MAX,
        }
    }

    /// Oldest timestamp an in-order append may carry: head max time minus half the chunk range.
    pub(crate) fn min_valid_time(&self) -> i64 {
        let floor = self.min_valid_floor.load(Ordering::Acquire);
        let max = self.max_time();
        if max == i64::MIN {
            return floor;
        }
        max.saturating_sub(self.opts.chunk_range_ms / 2).max(floor)
    }

    /// Limits and chunk destination for applying a batch of samples.
    pub(crate) fn apply_ctx(&self) -> series::ApplyCtx<'_> {
        series::ApplyCtx {
            min_valid_t: self.min_valid_time(),
            chunk_range: self.opts.chunk_range_ms,
            ooo_cap: self.opts.ooo_cap_max,
            chunks: self.chunks.as_ref(),
        }
    }

    pub(crate) fn head_chunks(&self) -> Option<&chunk_file::HeadChunks> {
        self.chunks.as_ref()
    }

    /// The floor for in-order appends: the newest block's max time.
    pub(crate) fn min_valid_floor(&self) -> i64 {
        self.min_valid_floor.load(Ordering::Acquire)
    }

    /// Raises the floor for in-order appends (after a block up to `t` was written).
    pub(crate) fn raise_min_valid_floor(&self, t: i64) {
        self.min_valid_floor.fetch_max(t, Ordering::AcqRel);
    }

    pub(crate) fn observe_time(&self, t: i64) {
        self.max_t.fetch_max(t, Ordering::AcqRel);
        self.min_t.fetch_min(t, Ordering::AcqRel);
    }

    /// Allocates a new series reference. References stay below 2^32 so postings can use 32-bit bitmaps.
    fn alloc_ref(&self) -> Option<SeriesRef> {
        let r = self.next_ref.fetch_add(1, Ordering::Relaxed);
        (r <= u64::from(u32::MAX)).then_some(SeriesRef(r))
    }

    fn register(&self, s: &Arc<MemSeries>) {
        // alloc_ref keeps references within u32.
        self.postings.add(s.sref.0 as u32, &s.labels);
        self.num_series.fetch_add(1, Ordering::Relaxed);
        self.stats.series_created.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn series_maps(&self) -> &StripeSeries {
        &self.series
    }

    pub(crate) fn postings(&self) -> &MemPostings {
        &self.postings
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_histograms;

/// The wall clock in ms since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
