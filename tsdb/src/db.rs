//! [`Db`]: the database directory as a whole — the head, the persisted blocks beside its WAL, and the
//! background work that keeps them in shape (head compaction, merging overlapping blocks, level
//! compaction, retention).
//!
//! Crash safety of head compaction, step by step (a `kill -9` may land between any two):
//! 1. snapshot `[mint, maxt)` under the WAL writer lock, right after cutting WAL segment `S`;
//! 2. write the block into `<ulid>.tmp-for-creation`, fsync, rename to `<ulid>` (meta.json records `S`);
//! 3. drop the snapshotted samples from memory;
//! 4. write `wal/checkpoint.S` (all series and samples still in memory) and delete segments `< S`.
//!
//! After a crash between 2 and 4, replay skips samples from WAL positions before `S` inside the
//! block's range (the block holds exactly those), then step 4 is redone at open. Before 2 the old WAL
//! is intact and no block exists. Merges write the new block before deleting its parents; a parent
//! left behind by a crash is recognised at open (its ULID is in a newer block's `parents`) and deleted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::block::{self, Block, Compaction};
use crate::delay_compact::Uploaded;
use crate::error::{io_error, Error, Result};
use crate::head::{self, Head, OpenHints, ReplaySkip};
use crate::labels::{MatchType, Matcher};
use crate::pending_reads::PendingReads;
use crate::querier::Querier;

/// Database options.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Head options; `head.chunk_range_ms` is also the smallest block range.
    pub head: head::Options,
    /// Blocks whose data is entirely older than the newest block's end minus this are deleted
    /// (`--storage.tsdb.retention.time`, 15d). 0 disables time retention.
    pub retention_ms: i64,
    /// Blocks are deleted oldest first while all blocks together are larger than this
    /// (`--storage.tsdb.retention.size`). 0 disables size retention.
    pub retention_bytes: u64,
    /// Largest block range for level compaction (10% of retention, at most 31d).
    pub max_block_duration_ms: i64,
    /// How often the background thread looks for compaction work.
    pub compaction_interval: Duration,
    /// A checkpoint is written when the WAL segments (what a restart replays sample by sample) grow
    /// past this many bytes. 0 disables size-triggered checkpoints.
    pub checkpoint_wal_bytes: u64,
    /// A block shipper's list of uploaded blocks (`--storage.tsdb.delay-compact-file.path`): when
    /// set, compaction leaves level-1 blocks alone until the file lists them ([`crate::delay_compact`]),
    /// and retention does not delete a level-1 block the file does not list.
    pub delay_compact_file: Option<PathBuf>,
}

/// Default for [`DbOptions::checkpoint_wal_bytes`]: about 4.5M samples to replay at most.
pub const DEFAULT_CHECKPOINT_WAL_BYTES: u64 = 64 << 20;
/// How often the background thread checks the WAL size.
const WAL_SIZE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

impl Default for DbOptions {
    fn default() -> Self {
        let retention_ms = 15 * 86_400_000;
        DbOptions {
            head: head::Options::default(),
            retention_ms,
            retention_bytes: 0,
            max_block_duration_ms: default_max_block_duration(retention_ms),
            compaction_interval: Duration::from_secs(60),
            checkpoint_wal_bytes: DEFAULT_CHECKPOINT_WAL_BYTES,
            delay_compact_file: None,
        }
    }
}

/// Prometheus's default max block duration: 10% of retention, at most 31d, at least the block range.
pub fn default_max_block_duration(retention_ms: i64) -> i64 {
    let r = if retention_ms > 0 { retention_ms / 10 } else { 31 * 86_400_000 };
    r.min(31 * 86_400_000)
}

/// The database.
pub struct Db {
    dir: PathBuf,
    opts: DbOptions,
    head: Arc<Head>,
    /// Persisted blocks, sorted by (min time, ulid). Readers clone the Arcs. Every change replaces
    /// blocks in one write: a reader sees the inputs of a merge or its output, never neither.
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Queriers still reading, and which block list each took: head truncation waits for those that
    /// lack the new block.
    pending_reads: Arc<PendingReads>,
    /// Serialises compactions.
    compacting: Mutex<()>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    background: Mutex<Option<JoinHandle<()>>>,
    /// Blocks set aside as damaged when the database was opened.
    quarantined: u64,
    /// Blocks the last compaction left alone because the delay-compact file does not list them.
    awaiting_upload: AtomicU64,
    /// Held for the Db's lifetime: one process per data directory.
    _lock: std::fs::File,
}

/// Takes an exclusive lock on `<dir>/lock` (released when the file is closed, also on a crash).
fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Io {
            op: "lock (is another strata using this data directory?)",
            path,
            source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Io { op: "lock", path, source }),
    }
}

/// Kills the process at a named point when `STRATA_CRASH_AT` names it: fault injection for the crash
/// tests (public for the binary's own points, e.g. its block shipper). Compiled only with the
/// `crash-points` feature, which only test builds enable.
#[cfg(feature = "crash-points")]
pub fn crash_point(name: &str) {
    if std::env::var("STRATA_CRASH_AT").is_ok_and(|v| v == name) {
        tracing::warn!(point = name, "STRATA_CRASH_AT: aborting");
        std::process::abort();
    }
}

/// Without the `crash-points` feature the named points compile to nothing.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn crash_point(_name: &str) {}

impl Db {
    /// Opens the database in `dir`: sets corrupt blocks aside, opens the others, replays the WAL.
    pub fn open(dir: &Path, opts: DbOptions) -> Result<Arc<Db>> {
        std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
        let lock = lock_dir(dir)?;
        let (mut blocks, quarantined) = open_blocks(dir)?;
        remove_merged_parents(dir, &mut blocks)?;
        let hints = OpenHints {
            skips: blocks
                .iter()
                .filter_map(|b| {
                    let m = b.meta();
                    m.strata.map(|s| ReplaySkip {
                        before_segment: s.wal_segment_cut,
                        mint: m.min_time,
                        maxt: m.max_time,
                    })
                })
                .collect(),
            min_valid_floor: blocks.iter().map(|b| b.meta().max_time).max().unwrap_or(i64::MIN),
        };
        let newest_cut = hints.skips.iter().map(|s| s.before_segment).max();
        let head = Head::open_with(dir, opts.head.clone(), hints)?;
        // Finish a checkpoint that a crash interrupted (step 4 above).
        if let (Some(cut), Some(wal)) = (newest_cut, head.wal()) {
            if wal.segment_range()?.is_some_and(|(first, _)| first.0 < cut) {
                tracing::info!(checkpoint = cut, "finishing an interrupted WAL checkpoint");
                head.checkpoint(cut)?;
            }
        }
        tracing::info!(blocks = blocks.len(), head_series = head.num_series(), "database open");
        Ok(Arc::new(Db {
            dir: dir.to_owned(),
            opts,
            head,
            blocks: RwLock::new(blocks),
            pending_reads: Arc::default(),
            compacting: Mutex::new(()),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            background: Mutex::new(None),
            quarantined,
            awaiting_upload: AtomicU64::new(0),
            _lock: lock,
        }))
    }

    /// The head.
    pub fn head(&self) -> &Arc<Head> {
        &self.head
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of blocks found damaged and set aside (`<ulid>.corrupted`) when the database was opened.
    pub fn quarantined_blocks(&self) -> u64 {
        self.quarantined
    }

    /// Blocks the last compaction left alone because the delay-compact file does not list them as
    /// uploaded (a level-1 block and every block created after it); 0 without the file.
    pub fn blocks_awaiting_upload(&self) -> u64 {
        self.awaiting_upload.load(Ordering::Relaxed)
    }

    /// The blocks, sorted by min time.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A querier over the head and the blocks for `[mint, maxt]`: a consistent view while it and the
    /// series it selects live. It takes the block list and registers as a pending read at once (under
    /// the list's lock), and head compaction drops a range from memory only after every reader whose
    /// list lacks the range's new block is done, so each sample is found in the head or in a block.
    pub fn querier(&self, mint: i64, maxt: i64) -> Querier {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        let pending = self.pending_reads.register(mint, maxt);
        Querier::with_blocks(Arc::clone(&self.head), &blocks, mint, maxt).with_pending(pending)
    }

    /// Starts the background thread: compaction every `compaction_interval`, a checkpoint whenever
    /// the WAL grows past `checkpoint_wal_bytes`, and recovery of a failed WAL.
    pub fn start_background(self: &Arc<Self>) {
        let db = Arc::clone(self);
        let stop = Arc::clone(&self.stop);
        let interval = self.opts.compaction_interval;
        let tick = interval.min(WAL_SIZE_CHECK_INTERVAL);
        let handle = std::thread::Builder::new().name("strata-compact".into()).spawn(move || {
            let mut last_compaction = std::time::Instant::now();
            loop {
                {
                    let (lock, cv) = &*stop;
                    let stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                    let (stopped, _) = cv.wait_timeout(stopped, tick).unwrap_or_else(|e| e.into_inner());
                    if *stopped {
                        return;
                    }
                }
                if last_compaction.elapsed() >= interval {
                    last_compaction = std::time::Instant::now();
                    if let Err(e) = db.compact() {
                        tracing::error!(error = %e, "compaction failed; will retry");
                    }
                }
                // A WAL failed by a full disk or an I/O error recovers here once the disk accepts
                // writes again, also when no write comes to recover it.
                if let Some(wal) = db.head.wal() {
                    if wal.failure().is_some() && wal.recover().is_ok() {
                        tracing::info!("wal accepts writes again");
                    }
                }
                if let Err(e) = db.checkpoint_if_large() {
                    tracing::error!(error = %e, "wal checkpoint failed; will retry");
                }
            }
        });
        match handle {
            Ok(h) => *self.background.lock().unwrap_or_else(|e| e.into_inner()) = Some(h),
            Err(e) => tracing::error!(error = %e, "cannot start the compaction thread"),
        }
    }

    /// Writes a checkpoint if the WAL segments since the last one exceed the configured size.
    pub fn checkpoint_if_large(&self) -> Result<()> {
        let limit = self.opts.checkpoint_wal_bytes;
        if limit == 0 || self.head.wal_bytes_since_checkpoint() < limit {
            return Ok(());
        }
        let _guard = self.compacting.lock().unwrap_or_else(|e| e.into_inner());
        self.head.checkpoint_now()
    }

    /// Stops background work, writes a checkpoint, and syncs and closes the WAL.
    pub fn close(&self) -> Result<()> {
        {
            let (lock, cv) = &*self.stop;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(h) = self.background.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        // A checkpoint at shutdown makes the next start load chunks instead of replaying samples.
        if self.head.wal_bytes_since_checkpoint() > 0 {
            let _guard = self.compacting.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = self.head.checkpoint_now() {
                tracing::error!(error = %e, "checkpoint at shutdown failed; the next start replays the WAL");
            }
        }
        self.head.close()
    }

    /// Creates a snapshot under `<data dir>/snapshots/` (see [`crate::snapshot`]): hard links of
    /// every block's files and, with `with_head`, the head's current data as one more block. The
    /// head and the WAL are left as they are. Returns the snapshot's directory name.
    pub fn snapshot(&self, with_head: bool) -> Result<String> {
        // Compaction and retention neither delete a block nor truncate the head meanwhile.
        let _guard = self.compacting.lock().unwrap_or_else(|e| e.into_inner());
        crate::snapshot::create(&self.dir, &self.blocks(), with_head.then_some(&*self.head))
    }

    /// Deletes the samples in `[mint, maxt]` (ms, inclusive) of the series matching `matchers`, as
    /// Prometheus's `DB.Delete`: every block overlapping the range gets tombstones (its
    /// `tombstones` file and `meta.json` replaced atomically, then the block is reopened), and the
    /// head logs them in the WAL and keeps them on its series. Runs under the compaction lock, so a
    /// head compaction never writes a block from a snapshot taken before the deletion. Returns the
    /// number of (block or head) series that got an interval.
    pub fn delete_series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<u64> {
        if mint > maxt {
            return Ok(0);
        }
        let _guard = self.compacting.lock().unwrap_or_else(|e| e.into_inner());
        let mut deleted = 0u64;
        for b in self.blocks() {
            let m = b.meta();
            if m.min_time > maxt || m.max_time <= mint {
                continue;
            }
            let before = b.tombstones().total();
            let Some((reopened, series)) = b.delete(matchers, mint, maxt)? else { continue };
            deleted += series;
            tracing::info!(
                block = %m.ulid,
                tombstones = reopened.tombstones().total(),
                series,
                tombstones_before = before,
                "tombstones written"
            );
            self.replace_block(&b, Arc::new(reopened));
        }
        deleted += self.head.delete(matchers, mint, maxt)?;
        Ok(deleted)
    }

    /// Rewrites every block that has tombstones into a new block without the deleted samples
    /// (Prometheus's `DB.CleanTombstones`): a new ULID, the same time range, level, sources and
    /// hints, and the old block as its one parent (Prometheus 2.42 writes level 1 with the new
    /// block as its only source; keeping them keeps the lineage that Thanos and Mimir read). The new block is complete and fsynced before
    /// the old one is deleted; a crash in between leaves both, and the next open deletes the old
    /// one (a newer block names it as a parent). Were both read, the first-wins merge of
    /// overlapping blocks would answer the same samples: the old one hides the same samples
    /// through its tombstones. A block whose samples are all deleted is removed without a
    /// successor. The head's tombstones are applied by head compaction. Returns the number of
    /// blocks rewritten.
    pub fn clean_tombstones(&self) -> Result<u64> {
        let _guard = self.compacting.lock().unwrap_or_else(|e| e.into_inner());
        let mut cleaned = 0u64;
        for b in self.blocks() {
            if b.tombstones().is_empty() {
                continue;
            }
            let started = std::time::Instant::now();
            let all = [Matcher::new(MatchType::Regex, "__name__", ".*")
                .map_err(|e| Error::Corruption { what: "matcher".into(), reason: e.to_string() })?];
            let m = b.meta();
            let compaction = Compaction {
                level: m.compaction.level,
                sources: m.compaction.sources.clone(),
                parents: vec![block::BlockDesc { ulid: m.ulid, min_time: m.min_time, max_time: m.max_time }],
                hints: m.compaction.hints.clone(),
                ..Compaction::default()
            };
            let series = b.select(&all).map_err(Error::from)?;
            let meta = block::write_block(
                &self.dir,
                series,
                m.min_time,
                m.max_time,
                compaction,
                m.strata.map(|s| s.wal_segment_cut),
            )?;
            crash_point("after-clean-tombstones-write");
            match &meta {
                Some(new) => self.replace_block(&b, Arc::new(Block::open(&self.dir.join(new.ulid.to_string()))?)),
                None => {
                    self.swap_blocks(std::slice::from_ref(&b), None);
                }
            }
            delete_block_dir(&self.dir, &m.ulid.to_string())?;
            tracing::info!(
                old = %m.ulid,
                new = meta.as_ref().map_or_else(|| "(all deleted)".to_string(), |n| n.ulid.to_string()),
                tombstones = b.tombstones().total(),
                samples_before = m.stats.num_samples,
                samples_after = meta.as_ref().map_or(0, |n| n.stats.num_samples),
                duration_secs = started.elapsed().as_secs_f64(),
                "block rewritten without its deleted samples"
            );
            cleaned += 1;
        }
        Ok(cleaned)
    }

    /// Puts `new` in place of `old` in the block list.
    fn replace_block(&self, old: &Arc<Block>, new: Arc<Block>) {
        self.swap_blocks(std::slice::from_ref(old), Some(new));
    }

    /// Does all compaction work that is due: head → blocks, overlapping blocks merged, level
    /// compaction, retention.
    pub fn compact(&self) -> Result<()> {
        let _guard = self.compacting.lock().unwrap_or_else(|e| e.into_inner());
        self.compact_head()?;
        let uploaded = self.uploaded_blocks();
        self.merge_overlapping(uploaded.as_ref())?;
        self.compact_levels(uploaded.as_ref())?;
        self.apply_retention(uploaded.as_ref())?;
        Ok(())
    }

    /// With a delay-compact file, the blocks it lists as uploaded (none when it cannot be read).
    fn uploaded_blocks(&self) -> Option<Uploaded> {
        let path = self.opts.delay_compact_file.as_ref()?;
        Some(Uploaded::read(path).unwrap_or_else(|e| {
            if !self.blocks().is_empty() {
                tracing::warn!(error = %e, "delay-compact file unusable: level-1 blocks are not compacted until it lists them");
            }
            Uploaded::default()
        }))
    }

    /// The blocks compaction may take as inputs: all of them, or those the delay-compact file allows.
    fn compaction_inputs(&self, uploaded: Option<&Uploaded>) -> Vec<Arc<Block>> {
        let blocks = self.blocks();
        let Some(uploaded) = uploaded else { return blocks };
        let inputs = uploaded.compactable(&blocks);
        self.awaiting_upload.store((blocks.len() - inputs.len()) as u64, Ordering::Relaxed);
        inputs
    }

    /// Writes the head's oldest block range to a block while the head spans more than 1.5 ranges.
    fn compact_head(&self) -> Result<()> {
        let r = self.opts.head.chunk_range_ms;
        loop {
            let (lo, hi) = (self.head.min_time(), self.head.max_time());
            if lo == i64::MAX || hi == i64::MIN || hi.saturating_sub(lo) <= r / 2 * 3 {
                return Ok(());
            }
            let mint = lo.div_euclid(r) * r;
            let maxt = mint + r;
            self.compact_head_range(mint, maxt)?;
        }
    }

    fn compact_head_range(&self, mint: i64, maxt: i64) -> Result<()> {
        let started = std::time::Instant::now();
        let snap = self.head.snapshot_range(mint, maxt)?;
        crash_point("after-snapshot");
        let overlaps_existing = self.blocks().iter().any(|b| b.meta().min_time < maxt && b.meta().max_time > mint);
        let hints = if overlaps_existing { vec!["from-out-of-order".to_string()] } else { Vec::new() };
        let compaction = Compaction { level: 1, hints, ..Compaction::default() };
        // Chunks are read from head chunk files series by series as the block is written; a read error
        // aborts the block (the head keeps everything).
        let series = snap.series_chunks();
        let meta =
            block::write_block_fallible(&self.dir, series, mint, maxt, compaction, snap.wal_cut, Default::default())?;
        crash_point("after-block-write");
        // Readers registered before this number may hold a block list without the new block.
        let mut epoch = self.pending_reads.epoch();
        if let Some(meta) = &meta {
            let b = Block::open(&self.dir.join(meta.ulid.to_string()))?;
            epoch = self.add_block(Arc::new(b));
            tracing::info!(
                ulid = %meta.ulid,
                mint,
                maxt,
                series = meta.stats.num_series,
                samples = meta.stats.num_samples,
                out_of_order_range = overlaps_existing,
                duration_secs = started.elapsed().as_secs_f64(),
                "head compacted into a block"
            );
        }
        let cut = snap.wal_cut;
        // The block is visible to every new reader; the head keeps the range until the readers that
        // took the list before it (and read the range) are done.
        self.pending_reads.wait_for(epoch, mint, maxt);
        self.head.truncate_snapshot(snap);
        crash_point("after-head-truncate");
        if let Some(cut) = cut {
            self.head.checkpoint(cut)?;
        }
        crash_point("after-checkpoint");
        Ok(())
    }

    /// Publishes `b`; returns the pending-read epoch from which on readers see it.
    fn add_block(&self, b: Arc<Block>) -> u64 {
        self.swap_blocks(&[], Some(b))
    }

    /// Removes `old` and adds `new` in one change of the block list, so no reader ever takes a list
    /// with neither. Returns the pending-read epoch from which on readers see the change.
    fn swap_blocks(&self, old: &[Arc<Block>], new: Option<Arc<Block>>) -> u64 {
        let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
        blocks.retain(|b| !old.iter().any(|o| o.meta().ulid == b.meta().ulid));
        blocks.extend(new);
        blocks.sort_by(|a, b| (a.meta().min_time, &a.meta().ulid).cmp(&(b.meta().min_time, &b.meta().ulid)));
        self.pending_reads.epoch()
    }

    /// Merges every group of overlapping blocks into one (vertical compaction), so the data directory
    /// handed to Thanos or Mimir has no overlaps; with a delay-compact file, only among the blocks it
    /// allows (the shipper's bucket then holds the overlaps, for Thanos's vertical compaction).
    fn merge_overlapping(&self, uploaded: Option<&Uploaded>) -> Result<()> {
        loop {
            let blocks = self.compaction_inputs(uploaded);
            let mut group: Vec<Arc<Block>> = Vec::new();
            let mut group_max = i64::MIN;
            for b in &blocks {
                let m = b.meta();
                if !group.is_empty() && m.min_time < group_max {
                    group.push(Arc::clone(b));
                    group_max = group_max.max(m.max_time);
                    continue;
                }
                if group.len() > 1 {
                    break;
                }
                group = vec![Arc::clone(b)];
                group_max = m.max_time;
            }
            if group.len() < 2 {
                return Ok(());
            }
            self.merge(&group, "vertical")?;
        }
    }

    /// Prometheus-style level compaction (`LeveledCompactor.selectDirs`): leaving out the newest block,
    /// blocks inside one aligned window of 3×, 9×, … the block range (up to the max block duration) are
    /// merged when they span the whole window or end before the newest block starts.
    fn compact_levels(&self, uploaded: Option<&Uploaded>) -> Result<()> {
        let base = self.opts.head.chunk_range_ms;
        let max = self.opts.max_block_duration_ms.max(base);
        while let Some(group) = Self::plan_level_compaction(self.compaction_inputs(uploaded), base, max) {
            self.merge(&group, "level")?;
        }
        Ok(())
    }

    fn plan_level_compaction(mut blocks: Vec<Arc<Block>>, base: i64, max: i64) -> Option<Vec<Arc<Block>>> {
        let newest = blocks.iter().map(|b| b.meta().min_time).max()?;
        let pos = blocks.iter().rposition(|b| b.meta().min_time == newest)?;
        blocks.remove(pos);
        let mut range = base.saturating_mul(3);
        while range <= max {
            let mut windows: std::collections::BTreeMap<i64, Vec<Arc<Block>>> = std::collections::BTreeMap::new();
            for b in &blocks {
                let w0 = b.meta().min_time.div_euclid(range) * range;
                if b.meta().max_time <= w0 + range {
                    windows.entry(w0).or_default().push(Arc::clone(b));
                }
            }
            for group in windows.into_values() {
                let (Some(first), Some(last)) = (group.first(), group.last()) else { continue };
                let (mint, maxt) = (first.meta().min_time, last.meta().max_time);
                if group.len() > 1 && (maxt - mint == range || maxt <= newest) {
                    return Some(group);
                }
            }
            range = range.saturating_mul(3);
        }
        None
    }

    /// Merges `inputs` into one block, then deletes them.
    fn merge(&self, inputs: &[Arc<Block>], kind: &str) -> Result<()> {
        let started = std::time::Instant::now();
        let mint = inputs.iter().map(|b| b.meta().min_time).min().unwrap_or(0);
        let maxt = inputs.iter().map(|b| b.meta().max_time).max().unwrap_or(0);
        let all = [Matcher::new(MatchType::Regex, "__name__", ".*")
            .map_err(|e| Error::Corruption { what: "matcher".into(), reason: e.to_string() })?];
        // Per series, the chunks of each input in input order: the block writer merges those that
        // overlap, and the earlier input's sample wins a timestamp tie.
        let mut series: std::collections::BTreeMap<crate::labels::Labels, Vec<crate::chunk::ChunkMeta>> =
            std::collections::BTreeMap::new();
        for b in inputs {
            for (labels, chunks) in b.select(&all).map_err(Error::from)? {
                series.entry(labels).or_default().extend(chunks);
            }
        }
        let mut sources: Vec<block::Ulid> = inputs.iter().flat_map(|b| b.meta().compaction.sources.clone()).collect();
        sources.sort();
        sources.dedup();
        let level = inputs.iter().map(|b| b.meta().compaction.level).max().unwrap_or(1) + 1;
        let parents = inputs
            .iter()
            .map(|b| block::BlockDesc { ulid: b.meta().ulid, min_time: b.meta().min_time, max_time: b.meta().max_time })
            .collect();
        let compaction = Compaction { level, sources, parents, ..Compaction::default() };
        let meta = block::write_block(&self.dir, series, mint, maxt, compaction, None)?;
        crash_point("after-merge-write");
        // Opened before the swap: readers see the inputs until the merged block replaces them. Readers
        // that took the inputs keep their files (open and mapped) after they are deleted.
        let merged = match &meta {
            Some(meta) => Some(Arc::new(Block::open(&self.dir.join(meta.ulid.to_string()))?)),
            None => None,
        };
        self.swap_blocks(inputs, merged);
        for b in inputs {
            delete_block_dir(&self.dir, &b.meta().ulid.to_string())?;
        }
        tracing::info!(
            kind,
            inputs = inputs.len(),
            ulid = meta.as_ref().map_or_else(|| "(empty)".to_string(), |m| m.ulid.to_string()),
            mint,
            maxt,
            duration_secs = started.elapsed().as_secs_f64(),
            "blocks merged"
        );
        Ok(())
    }

    /// Deletes blocks beyond the time or size retention; with a delay-compact file, never a level-1
    /// block the file does not list as uploaded (it is deleted once listed, if still beyond).
    fn apply_retention(&self, uploaded: Option<&Uploaded>) -> Result<()> {
        let blocks = self.blocks();
        let Some(newest_end) = blocks.iter().map(|b| b.meta().max_time).max() else { return Ok(()) };
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        if self.opts.retention_ms > 0 {
            doomed.extend(blocks.iter().filter(|b| b.meta().max_time <= newest_end - self.opts.retention_ms).cloned());
        }
        if self.opts.retention_bytes > 0 {
            let mut total: u64 = blocks.iter().map(|b| b.size_bytes()).sum();
            if let Some(w) = self.head.wal() {
                total += block::reader::dir_size(w.dir());
            }
            for b in &blocks {
                if total <= self.opts.retention_bytes {
                    break;
                }
                if !doomed.iter().any(|d| d.meta().ulid == b.meta().ulid) {
                    doomed.push(Arc::clone(b));
                }
                total = total.saturating_sub(b.size_bytes());
            }
        }
        if let Some(uploaded) = uploaded {
            doomed.retain(|b| {
                let m = b.meta();
                let pending = m.compaction.level <= 1 && !uploaded.contains(&m.ulid);
                if pending {
                    tracing::warn!(ulid = %m.ulid, mint = m.min_time, maxt = m.max_time, "block beyond retention kept: not uploaded yet");
                }
                !pending
            });
        }
        if doomed.is_empty() {
            return Ok(());
        }
        {
            let mut live = self.blocks.write().unwrap_or_else(|e| e.into_inner());
            live.retain(|b| !doomed.iter().any(|d| d.meta().ulid == b.meta().ulid));
        }
        for b in &doomed {
            tracing::info!(ulid = %b.meta().ulid, mint = b.meta().min_time, maxt = b.meta().max_time, "deleting block beyond retention");
            delete_block_dir(&self.dir, &b.meta().ulid.to_string())?;
        }
        Ok(())
    }
}

/// Renames a block out of the way, then removes it. Readers holding its files keep them until done.
fn delete_block_dir(dir: &Path, ulid: &str) -> Result<()> {
    let from = dir.join(ulid);
    let to = dir.join(format!("{ulid}.tmp-for-deletion"));
    std::fs::rename(&from, &to).map_err(io_error("rename", &from))?;
    std::fs::remove_dir_all(&to).map_err(io_error("remove", &to))?;
    Ok(())
}

/// Opens every block directory and checks its checksums ([`Block::verify`]); a block that fails
/// either is renamed `<ulid>.corrupted` and logged with the damaged file, and counted in the
/// returned number. Leftover temporary directories from an interrupted write or delete are removed.
fn open_blocks(dir: &Path) -> Result<(Vec<Arc<Block>>, u64)> {
    let mut blocks = Vec::new();
    let mut quarantined = 0;
    let started = std::time::Instant::now();
    let entries = std::fs::read_dir(dir).map_err(io_error("list", dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if name.ends_with(".tmp-for-creation") || name.ends_with(".tmp-for-deletion") {
            tracing::info!(dir = %path.display(), "removing leftover temporary block directory");
            std::fs::remove_dir_all(&path).map_err(io_error("remove", &path))?;
            continue;
        }
        if !path.is_dir() || block::ulid::parse_block_dir_name(&name).is_none() {
            continue;
        }
        match Block::open(&path).and_then(|b| b.verify().map(|()| b)) {
            Ok(b) => blocks.push(Arc::new(b)),
            Err(e) => {
                let aside = dir.join(format!("{name}.corrupted"));
                tracing::error!(block = %name, error = %e, moved_to = %aside.display(), "block is unreadable; set aside");
                std::fs::rename(&path, &aside).map_err(io_error("rename", &path))?;
                quarantined += 1;
            }
        }
    }
    blocks.sort_by(|a, b| (a.meta().min_time, &a.meta().ulid).cmp(&(b.meta().min_time, &b.meta().ulid)));
    tracing::info!(
        blocks = blocks.len(),
        bytes = blocks.iter().map(|b| b.size_bytes()).sum::<u64>(),
        quarantined,
        duration_secs = started.elapsed().as_secs_f64(),
        "blocks opened and their checksums verified"
    );
    Ok((blocks, quarantined))
}

/// Deletes blocks that a newer block lists as parents (a crash between writing a merge and deleting
/// its inputs).
fn remove_merged_parents(dir: &Path, blocks: &mut Vec<Arc<Block>>) -> Result<()> {
    let parents: Vec<block::Ulid> =
        blocks.iter().flat_map(|b| b.meta().compaction.parents.iter().map(|p| p.ulid)).collect();
    let (gone, keep): (Vec<_>, Vec<_>) = blocks.drain(..).partition(|b| parents.contains(&b.meta().ulid));
    *blocks = keep;
    for b in gone {
        tracing::info!(ulid = %b.meta().ulid, "deleting a block already merged into a newer one");
        delete_block_dir(dir, &b.meta().ulid.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{ChunkData, ChunkMeta};
    use crate::labels::Labels;

    const H2: i64 = 2 * 3_600_000;

    fn opts() -> DbOptions {
        DbOptions { head: head::Options { wal: None, ..head::Options::default() }, ..DbOptions::default() }
    }

    /// Writes a level-1 block with one series `m{s="x"}` holding the given samples.
    fn block_with(dir: &Path, mint: i64, maxt: i64, samples: &[(i64, f64)]) -> String {
        let labels = Labels::from_pairs(&[("__name__", "m"), ("s", "x")]).unwrap();
        let chunk =
            ChunkMeta::new(samples.first().unwrap().0, samples.last().unwrap().0, ChunkData::Raw(samples.into()));
        let meta = block::write_block(
            dir,
            [(labels, vec![chunk])],
            mint,
            maxt,
            Compaction { level: 1, ..Compaction::default() },
            None,
        )
        .unwrap()
        .unwrap();
        meta.ulid.to_string()
    }

    fn all_samples(db: &Db) -> Vec<(i64, f64)> {
        let q = db.querier(i64::MIN, i64::MAX);
        let s = q.select(&[Matcher::equal("__name__", "m")]).unwrap();
        s.first().map(|s| s.samples(i64::MIN, i64::MAX).collect()).unwrap_or_default()
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), opts()).unwrap();
        let err = Db::open(dir.path(), opts()).err().expect("second open must fail");
        assert!(err.to_string().contains("another strata"), "{err}");
        drop(db);
        assert!(Db::open(dir.path(), opts()).is_ok());
    }

    #[test]
    fn unreadable_block_is_set_aside_and_the_rest_served() {
        let dir = tempfile::tempdir().unwrap();
        block_with(dir.path(), 0, H2, &[(1000, 1.0)]);
        let bad = block_with(dir.path(), H2, 2 * H2, &[(H2 + 1000, 2.0)]);
        std::fs::write(dir.path().join(&bad).join("index"), b"garbage").unwrap();
        let db = Db::open(dir.path(), opts()).unwrap();
        assert_eq!(db.blocks().len(), 1);
        assert!(dir.path().join(format!("{bad}.corrupted")).is_dir());
        assert_eq!(all_samples(&db), vec![(1000, 1.0)]);
    }

    #[test]
    fn blocks_with_a_checksum_mismatch_in_a_chunk_or_series_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        block_with(dir.path(), 0, H2, &[(1000, 1.0)]);
        let samples: Vec<(i64, f64)> = (0..50).map(|i| (H2 + i * 1000, i as f64)).collect();
        let bad_chunk = block_with(dir.path(), H2, 2 * H2, &samples);
        let bad_series = block_with(dir.path(), 2 * H2, 3 * H2, &[(2 * H2 + 1000, 3.0)]);
        // A data byte of the chunk (the file ends with the chunk's 4-byte CRC).
        let chunk_file = dir.path().join(&bad_chunk).join("chunks").join("000001");
        let mut b = std::fs::read(&chunk_file).unwrap();
        let at = b.len() - 8;
        b[at] ^= 0x10;
        std::fs::write(&chunk_file, &b).unwrap();
        // A byte inside the first series entry of the index (its offset is the TOC's second entry).
        let index_file = dir.path().join(&bad_series).join("index");
        let mut b = std::fs::read(&index_file).unwrap();
        let toc = b.len() - 52;
        let series = u64::from_be_bytes(b[toc + 8..toc + 16].try_into().unwrap()) as usize;
        let series = series.next_multiple_of(16);
        b[series + 3] ^= 0x01;
        std::fs::write(&index_file, &b).unwrap();
        // Both still open: only the checksum pass finds the damage.
        for ulid in [&bad_series, &bad_chunk] {
            let block = Block::open(&dir.path().join(ulid)).unwrap();
            let err = block.verify().expect_err(ulid);
            assert!(err.to_string().contains(&**ulid), "the error names the file: {err}");
        }
        let db = Db::open(dir.path(), opts()).unwrap();
        assert_eq!(db.blocks().len(), 1);
        assert_eq!(db.quarantined_blocks(), 2);
        assert!(dir.path().join(format!("{bad_chunk}.corrupted")).is_dir());
        assert!(dir.path().join(format!("{bad_series}.corrupted")).is_dir());
        assert_eq!(all_samples(&db), vec![(1000, 1.0)]);
    }

    #[test]
    fn overlapping_blocks_are_merged_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        block_with(dir.path(), 0, H2, &[(1000, 1.0), (3000, 3.0)]);
        block_with(dir.path(), 0, H2, &[(2000, 2.0), (3000, 3.0)]);
        let db = Db::open(dir.path(), opts()).unwrap();
        assert_eq!(all_samples(&db), vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)]);
        db.compact().unwrap();
        let blocks = db.blocks();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].meta().compaction.level, 2);
        assert_eq!(blocks[0].meta().compaction.parents.len(), 2);
        assert_eq!(all_samples(&db), vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)]);
        // A crash after the merge left its parents: they are removed at open.
        drop(db);
        let db = Db::open(dir.path(), opts()).unwrap();
        assert_eq!(db.blocks().len(), 1);
    }

    /// Writes a level-1 block with one series `m{s="x"}` holding the given float and histogram chunks.
    fn block_with_chunks(dir: &Path, mint: i64, maxt: i64, chunks: Vec<ChunkMeta>) {
        let labels = Labels::from_pairs(&[("__name__", "m"), ("s", "x")]).unwrap();
        let level1 = Compaction { level: 1, ..Compaction::default() };
        block::write_block(dir, [(labels, chunks)], mint, maxt, level1, None).unwrap().unwrap();
    }

    /// The histograms of `m` as (t, count).
    fn all_histograms(db: &Db) -> Vec<(i64, f64)> {
        let q = db.querier(i64::MIN, i64::MAX);
        let mut out = Vec::new();
        for s in q.select_lazy(&[Matcher::equal("__name__", "m")]).unwrap().iter() {
            s.read_histograms(i64::MIN, i64::MAX, &mut out).unwrap();
        }
        out.into_iter().map(|(t, h)| (t, h.count)).collect()
    }

    #[test]
    fn histogram_blocks_survive_merges_compaction_and_deletion() {
        use crate::histogram::{FloatHistogram, Histogram, HistogramValue};
        let int =
            |t: i64, c: u64| (t, HistogramValue::Int(Histogram { count: c, zero_count: c, ..Histogram::default() }));
        let float = |t: i64, c: f64| {
            (t, HistogramValue::Float(FloatHistogram { count: c, zero_count: c, ..Default::default() }))
        };
        let dir = tempfile::tempdir().unwrap();
        // Two overlapping blocks: the first (earlier min time) wins the tie at 3000.
        block_with_chunks(
            dir.path(),
            0,
            H2,
            vec![
                ChunkMeta::raw_histograms(&[int(1000, 10), int(3000, 30)]).unwrap(),
                ChunkMeta::raw(&[(5000, 5.0)]).unwrap(),
            ],
        );
        block_with_chunks(
            dir.path(),
            1000,
            H2,
            vec![ChunkMeta::raw_histograms(&[float(2000, 2.0), float(3000, 99.0)]).unwrap()],
        );
        for i in 1..4 {
            block_with_chunks(
                dir.path(),
                i * H2,
                (i + 1) * H2,
                vec![ChunkMeta::raw_histograms(&[int(i * H2 + 1, i as u64)]).unwrap()],
            );
        }
        let want = vec![(1000, 10.0), (2000, 2.0), (3000, 30.0), (H2 + 1, 1.0), (2 * H2 + 1, 2.0), (3 * H2 + 1, 3.0)];
        let db = Db::open(dir.path(), opts()).unwrap();
        assert_eq!(all_histograms(&db), want);
        assert_eq!(all_samples(&db), vec![(5000, 5.0)]);
        // Vertical merge of the first two, then level compaction of the first window.
        db.compact().unwrap();
        let ranges: Vec<(i64, i64)> = db.blocks().iter().map(|b| (b.meta().min_time, b.meta().max_time)).collect();
        assert_eq!(ranges, vec![(0, 3 * H2), (3 * H2, 4 * H2)]);
        assert_eq!(db.blocks()[0].meta().stats.num_samples, 6);
        assert_eq!(all_histograms(&db), want);
        assert_eq!(all_samples(&db), vec![(5000, 5.0)]);
        // Deleted, then rewritten without the deleted samples.
        db.delete_series(&[Matcher::equal("__name__", "m")], 2000, H2 + 1).unwrap();
        let left = vec![(1000, 10.0), (2 * H2 + 1, 2.0), (3 * H2 + 1, 3.0)];
        assert_eq!(all_histograms(&db), left);
        assert_eq!(db.clean_tombstones().unwrap(), 1);
        assert_eq!(db.blocks()[0].meta().stats.num_samples, 2);
        assert_eq!(all_histograms(&db), left);
        assert_eq!(all_samples(&db), Vec::<(i64, f64)>::new());
    }

    #[test]
    fn level_compaction_merges_complete_windows() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..4 {
            block_with(dir.path(), i * H2, (i + 1) * H2, &[(i * H2 + 1, i as f64)]);
        }
        let db = Db::open(dir.path(), opts()).unwrap();
        db.compact().unwrap();
        let ranges: Vec<(i64, i64)> = db.blocks().iter().map(|b| (b.meta().min_time, b.meta().max_time)).collect();
        assert_eq!(ranges, vec![(0, 3 * H2), (3 * H2, 4 * H2)]);
        assert_eq!(all_samples(&db).len(), 4);
    }

    #[test]
    fn retention_by_time_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let day = 86_400_000;
        block_with(dir.path(), 0, H2, &[(1, 1.0)]);
        block_with(dir.path(), 10 * day, 10 * day + H2, &[(10 * day + 1, 2.0)]);
        block_with(dir.path(), 20 * day, 20 * day + H2, &[(20 * day + 1, 3.0)]);
        let o = DbOptions { retention_ms: 15 * day, max_block_duration_ms: H2, ..opts() };
        let db = Db::open(dir.path(), o.clone()).unwrap();
        db.compact().unwrap();
        assert_eq!(all_samples(&db), vec![(10 * day + 1, 2.0), (20 * day + 1, 3.0)]);
        drop(db);
        let one_block = block::reader::dir_size(
            &dir.path().join(Db::open(dir.path(), o.clone()).unwrap().blocks()[0].meta().ulid.to_string()),
        );
        let o = DbOptions { retention_bytes: one_block + one_block / 2, ..o };
        let db = Db::open(dir.path(), o).unwrap();
        db.compact().unwrap();
        assert_eq!(all_samples(&db), vec![(20 * day + 1, 3.0)]);
    }

    #[test]
    fn retention_keeps_level_one_blocks_not_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let day = 86_400_000;
        let old = block_with(dir.path(), 0, H2, &[(1, 1.0)]);
        let old2 = block_with(dir.path(), 2 * day, 2 * day + H2, &[(2 * day + 1, 2.0)]);
        block_with(dir.path(), 20 * day, 20 * day + H2, &[(20 * day + 1, 3.0)]);
        let file = dir.path().join("thanos.shipper.json");
        std::fs::write(&file, format!("{{\"version\": 1, \"uploaded\": [\"{old2}\"]}}")).unwrap();
        let o = DbOptions {
            retention_ms: 15 * day,
            max_block_duration_ms: H2,
            delay_compact_file: Some(file.clone()),
            ..opts()
        };
        let db = Db::open(dir.path(), o).unwrap();
        db.compact().unwrap();
        assert_eq!(all_samples(&db), vec![(1, 1.0), (20 * day + 1, 3.0)], "only the uploaded old block goes");
        std::fs::write(&file, format!("{{\"version\": 1, \"uploaded\": [\"{old}\"]}}")).unwrap();
        db.compact().unwrap();
        assert_eq!(all_samples(&db), vec![(20 * day + 1, 3.0)]);
    }

    #[test]
    fn head_compaction_writes_blocks_and_keeps_recent_data_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let o = DbOptions {
            head: head::Options { ooo_time_window_ms: 4 * H2, ..head::Options::default() },
            ..DbOptions::default()
        };
        let db = Db::open(dir.path(), o.clone()).unwrap();
        let mut want = Vec::new();
        let mut app = db.head().appender();
        for i in 0..(4 * H2 / 60_000) {
            let t = i * 60_000;
            app.append_pairs(&[("__name__", "m"), ("s", "x")], t, i as f64).unwrap();
            want.push((t, i as f64));
        }
        app.commit().unwrap();
        db.compact().unwrap();
        let ranges: Vec<(i64, i64)> = db.blocks().iter().map(|b| (b.meta().min_time, b.meta().max_time)).collect();
        // 8h in the head: [0,2h), [2h,4h), [4h,6h) are written (the head then spans less than 3h),
        // and the first two, older than the newest block, are merged by level compaction.
        assert_eq!(ranges, vec![(0, 2 * H2), (2 * H2, 3 * H2)]);
        assert_eq!(db.head().min_time(), 3 * H2);
        assert_eq!(all_samples(&db), want);
        // Restart: blocks + checkpoint + WAL give the same samples.
        db.close().unwrap();
        drop(db);
        let db = Db::open(dir.path(), o).unwrap();
        assert_eq!(all_samples(&db), want);
    }

    #[test]
    fn a_late_sample_never_replaces_the_value_stored_first() {
        let dir = tempfile::tempdir().unwrap();
        let o = DbOptions {
            head: head::Options { ooo_time_window_ms: 4 * H2, ..head::Options::default() },
            ..DbOptions::default()
        };
        let db = Db::open(dir.path(), o.clone()).unwrap();
        let mut app = db.head().appender();
        let mut want = Vec::new();
        for i in 0..(4 * H2 / 60_000) {
            let t = i * 60_000;
            app.append_pairs(&[("__name__", "m"), ("s", "x")], t, i as f64).unwrap();
            want.push((t, i as f64));
        }
        app.commit().unwrap();
        let late = |db: &Db| {
            // Late samples at stored timestamps, identical and different, in the head and in blocks.
            let mut app = db.head().appender();
            for t in [60_000, 3 * H2 + 60_000, 4 * H2 - 120_000] {
                app.append_pairs(&[("__name__", "m"), ("s", "x")], t, -1.0).unwrap();
            }
            let t = 3 * H2;
            app.append_pairs(&[("__name__", "m"), ("s", "x")], t, (t / 60_000) as f64).unwrap();
            app.commit().unwrap();
        };
        late(&db);
        assert_eq!(all_samples(&db), want);
        db.compact().unwrap();
        assert!(!db.blocks().is_empty());
        // [0, 2h) went into a block: its one late sample with another value is counted there.
        assert_eq!(db.head().stats().samples_shadowed.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(all_samples(&db), want, "after compaction");
        late(&db);
        assert_eq!(all_samples(&db), want, "late samples into blocks' ranges");
        db.compact().unwrap();
        assert_eq!(all_samples(&db), want, "after the second compaction");
        db.close().unwrap();
        drop(db);
        let db = Db::open(dir.path(), o).unwrap();
        late(&db);
        assert_eq!(all_samples(&db), want, "after restart");
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            if e.path().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn deleted_samples_stay_deleted_through_restart_compaction_and_clean_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let o = DbOptions {
            head: head::Options { ooo_time_window_ms: 4 * H2, ..head::Options::default() },
            ..DbOptions::default()
        };
        let min = 60_000;
        let db = Db::open(dir.path(), o.clone()).unwrap();
        let mut want = std::collections::BTreeMap::new();
        let mut app = db.head().appender();
        for i in 0..(4 * H2 / min) {
            app.append_pairs(&[("__name__", "m"), ("s", "x")], i * min, i as f64).unwrap();
            app.append_pairs(&[("__name__", "other"), ("s", "x")], i * min, i as f64).unwrap();
            want.insert(i * min, i as f64);
        }
        app.commit().unwrap();
        let forget =
            |want: &mut std::collections::BTreeMap<i64, f64>, a: i64, b: i64| want.retain(|&t, _| t < a || t > b);
        let check = |db: &Db, want: &std::collections::BTreeMap<i64, f64>, what: &str| {
            assert_eq!(all_samples(db), want.iter().map(|(&t, &v)| (t, v)).collect::<Vec<_>>(), "{what}");
            let q = db.querier(i64::MIN, i64::MAX);
            let other = q.select(&[Matcher::equal("__name__", "other")]).unwrap();
            assert_eq!(other[0].samples(i64::MIN, i64::MAX).count() as i64, 4 * H2 / min, "{what}: other series");
        };
        let m = [Matcher::equal("__name__", "m")];
        // In the head: [30m, 60m] and one single sample.
        assert_eq!(db.delete_series(&m, 30 * min, 60 * min).unwrap(), 1);
        assert_eq!(db.delete_series(&m, 100 * min, 100 * min).unwrap(), 1);
        assert_eq!(db.delete_series(&m, 10 * H2, 11 * H2).unwrap(), 0, "no samples there");
        forget(&mut want, 30 * min, 60 * min);
        forget(&mut want, 100 * min, 100 * min);
        check(&db, &want, "head");
        // A late sample inside a deleted interval is hidden too (as in Prometheus).
        let mut app = db.head().appender();
        app.append_pairs(&[("__name__", "m"), ("s", "x")], 45 * min + 1, -1.0).unwrap();
        app.commit().unwrap();
        check(&db, &want, "late sample");
        // Restart without a checkpoint: the WAL's tombstones record is replayed.
        drop(db);
        let db = Db::open(dir.path(), o.clone()).unwrap();
        check(&db, &want, "after WAL replay");
        // Restart from a checkpoint.
        db.close().unwrap();
        drop(db);
        let db = Db::open(dir.path(), o.clone()).unwrap();
        check(&db, &want, "after checkpoint");
        // Head compaction leaves the deleted samples out of the blocks.
        db.compact().unwrap();
        assert!(!db.blocks().is_empty());
        check(&db, &want, "after compaction");
        let in_blocks: u64 = db.blocks().iter().map(|b| b.meta().stats.num_samples).sum();
        let blocks_end = db.blocks().iter().map(|b| b.meta().max_time).max().unwrap();
        let m_in_blocks = want.keys().filter(|&&t| t < blocks_end).count() as u64;
        assert_eq!(in_blocks, m_in_blocks + (blocks_end / min) as u64, "deleted samples went into a block");
        // Deleting block data: tombstones, then clean_tombstones rewrites the block.
        assert_eq!(db.delete_series(&m, 10 * min, 20 * min).unwrap(), 1);
        forget(&mut want, 10 * min, 20 * min);
        check(&db, &want, "block tombstones");
        let old = db.blocks()[0].clone();
        assert_eq!(old.meta().stats.num_tombstones, 1);
        let saved = dir.path().join("saved");
        copy_dir(old.dir(), &saved);
        drop(db);
        let db = Db::open(dir.path(), o.clone()).unwrap();
        check(&db, &want, "block tombstones after restart");
        assert_eq!(db.clean_tombstones().unwrap(), 1);
        assert_eq!(db.clean_tombstones().unwrap(), 0, "nothing left to clean");
        check(&db, &want, "after clean_tombstones");
        let new = db.blocks()[0].clone();
        assert_ne!(new.meta().ulid, old.meta().ulid);
        assert!(new.tombstones().is_empty() && new.meta().stats.num_tombstones == 0);
        assert_eq!((new.meta().min_time, new.meta().max_time), (old.meta().min_time, old.meta().max_time));
        assert_eq!(new.meta().compaction.sources, old.meta().compaction.sources);
        assert_eq!(new.meta().compaction.level, old.meta().compaction.level);
        assert_eq!(new.meta().compaction.parents.iter().map(|p| p.ulid).collect::<Vec<_>>(), [old.meta().ulid]);
        assert_eq!(new.meta().stats.num_samples, old.meta().stats.num_samples - 11);
        assert!(!old.dir().exists());
        // A crash between writing the new block and deleting the old one leaves both: the old one
        // is deleted at open, and the two would answer the same anyway.
        let old_dir = dir.path().join(old.meta().ulid.to_string());
        copy_dir(&saved, &old_dir);
        {
            let both = vec![Arc::new(Block::open(&old_dir).unwrap()), Arc::new(Block::open(new.dir()).unwrap())];
            let q = Querier::with_blocks(Arc::clone(db.head()), &both, i64::MIN, old.meta().max_time - 1);
            let got: Vec<(i64, f64)> = q.select(&m).unwrap()[0].samples(i64::MIN, old.meta().max_time - 1).collect();
            let expect: Vec<(i64, f64)> =
                want.iter().filter(|(&t, _)| t < old.meta().max_time).map(|(&t, &v)| (t, v)).collect();
            assert_eq!(got, expect, "old and new block read together");
        }
        drop(db);
        let db = Db::open(dir.path(), o).unwrap();
        assert!(!old_dir.exists(), "the cleaned block's parent was not removed at open");
        check(&db, &want, "after the interrupted clean");
    }

    /// Every read sees every sample acknowledged before it started, while head compaction writes
    /// blocks and drops their ranges from memory and late samples for ranges already in blocks are
    /// written as blocks and merged with the existing ones. Readers pause between series, as a
    /// query evaluating series one by one does, so a compaction publishes and truncates meanwhile.
    #[test]
    fn reads_during_compaction_see_every_acknowledged_sample() {
        use std::sync::atomic::AtomicBool;
        const MIN: i64 = 60_000;
        const SERIES: usize = 4;
        const BATCHES: i64 = 150;
        const LATE_LAG: i64 = 24;
        // Batch `b` appends minutes [10b, 10b+10) in order except those ending in 9, which are sent
        // `LATE_LAG` batches later (4h late: their range is in a block by then).
        let expected = |batches: i64| -> Vec<i64> {
            (0..batches * 10).filter(|m| m % 10 != 9 || m / 10 + LATE_LAG < batches).map(|m| m * MIN).collect()
        };
        let value = |s: usize, t: i64| (t / MIN) as f64 * 10.0 + s as f64;
        let dir = tempfile::tempdir().unwrap();
        let o = DbOptions {
            head: head::Options { ooo_time_window_ms: 24 * H2, wal: None, ..head::Options::default() },
            ..DbOptions::default()
        };
        let db = Db::open(dir.path(), o).unwrap();
        let acked = AtomicU64::new(0);
        let passes = AtomicU64::new(0);
        let done = AtomicBool::new(false);
        let labels: Vec<String> = (0..SERIES).map(|s| s.to_string()).collect();
        // One reader pauses between series, one reads as fast as it can (a querier taken while a
        // merge swaps blocks).
        let read = |pause: bool| {
            let mut reads = 0;
            while !done.load(Ordering::Acquire) || reads == 0 {
                let batches = acked.load(Ordering::Acquire) as i64;
                let want = expected(batches);
                let q = db.querier(i64::MIN, i64::MAX);
                let selected = q.select_lazy(&[Matcher::equal("__name__", "m")]).unwrap();
                drop(q);
                let mut seen = 0;
                for series in selected.iter() {
                    if pause {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                    let s: usize = series.labels().get("s").unwrap().parse().unwrap();
                    let mut got = Vec::new();
                    series.read_samples(i64::MIN, i64::MAX, &mut got).unwrap();
                    for &(t, v) in &got {
                        assert_eq!(v, value(s, t), "series {s} at {t}");
                    }
                    let have: std::collections::HashSet<i64> = got.iter().map(|&(t, _)| t).collect();
                    let missing: Vec<i64> = want.iter().copied().filter(|t| !have.contains(t)).collect();
                    assert!(
                        missing.is_empty(),
                        "read {reads} (pause {pause}): series {s} lacks {} of {} acknowledged samples, \
                         first at minute {}, last at minute {}; blocks now: {:?}",
                        missing.len(),
                        want.len(),
                        missing[0] / MIN,
                        missing[missing.len() - 1] / MIN,
                        db.blocks()
                            .iter()
                            .map(|b| (b.meta().min_time / MIN, b.meta().max_time / MIN))
                            .collect::<Vec<_>>()
                    );
                    seen += 1;
                }
                assert!(batches == 0 || seen == SERIES, "read {reads}: {seen} series of {SERIES}");
                reads += 1;
            }
        };
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for b in 0..BATCHES {
                    let mut app = db.head().appender();
                    for (s, l) in labels.iter().enumerate() {
                        for m in (b * 10..b * 10 + 10).filter(|m| m % 10 != 9) {
                            app.append_pairs(&[("__name__", "m"), ("s", l)], m * MIN, value(s, m * MIN)).unwrap();
                        }
                        if b >= LATE_LAG {
                            let t = ((b - LATE_LAG) * 10 + 9) * MIN;
                            app.append_pairs(&[("__name__", "m"), ("s", l)], t, value(s, t)).unwrap();
                        }
                    }
                    app.commit().unwrap();
                    acked.store(b as u64 + 1, Ordering::Release);
                    // Every simulated hour, a whole compaction pass (head, merges) runs meanwhile.
                    if b % 6 == 5 {
                        let pass = passes.load(Ordering::Acquire);
                        while passes.load(Ordering::Acquire) < pass + 2 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                done.store(true, Ordering::Release);
            });
            scope.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    db.compact().unwrap();
                    passes.fetch_add(1, Ordering::Release);
                }
                db.compact().unwrap();
            });
            scope.spawn(|| read(true));
            read(false);
        });
        assert!(!db.blocks().is_empty(), "no compaction ran");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Appends, deletions of random ranges, compactions, tombstone cleaning and reopening in
        /// random order read back what a map with the deleted keys removed holds. Appends are in
        /// order, so no sample ever lands in an interval deleted before it arrived.
        #[test]
        fn deletions_at_random_points_match_a_model(
            ops in proptest::collection::vec((0u8..5, 0i64..(12 * 60), 0i64..(3 * 60)), 1..24),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let o = DbOptions {
                head: head::Options {
                    wal: Some(wal::Options { segment_size_bytes: 1 << 20, ..wal::Options::default() }),
                    ..head::Options::default()
                },
                ..DbOptions::default()
            };
            let mut db = Db::open(dir.path(), o.clone()).unwrap();
            let mut model = std::collections::BTreeMap::new();
            let mut next = 0i64;
            let m = [Matcher::equal("__name__", "m")];
            for &(op, a, len) in &ops {
                match op {
                    0 | 1 => {
                        let mut app = db.head().appender();
                        for _ in 0..=len {
                            app.append_pairs(&[("__name__", "m"), ("s", "x")], next * 60_000, next as f64).unwrap();
                            model.insert(next * 60_000, next as f64);
                            next += 1;
                        }
                        app.commit().unwrap();
                    }
                    2 => {
                        let (from, to) = (a * 60_000, (a + len) * 60_000);
                        db.delete_series(&m, from, to).unwrap();
                        model.retain(|&t, _| t < from || t > to);
                    }
                    3 => {
                        db.compact().unwrap();
                        db.clean_tombstones().unwrap();
                    }
                    _ => {
                        db.close().unwrap();
                        drop(db);
                        db = Db::open(dir.path(), o.clone()).unwrap();
                        db.compact().unwrap();
                    }
                }
                let want: Vec<(i64, f64)> = model.iter().map(|(&t, &v)| (t, v)).collect();
                proptest::prop_assert_eq!(all_samples(&db), want, "after op {}", op);
            }
        }

        /// Random in-order and out-of-order streams, compacted at random points (and reopened),
        /// read back equal to the sorted, deduplicated input.
        #[test]
        fn compaction_at_random_points_keeps_the_sorted_deduplicated_input(
            batches in proptest::collection::vec(
                (proptest::collection::vec((0i64..(12 * 60), 0u8..3), 1..60), proptest::bool::ANY, proptest::bool::ANY),
                1..12,
            ),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let o = DbOptions {
                head: head::Options {
                    ooo_time_window_ms: 24 * 3_600_000,
                    wal: Some(wal::Options { segment_size_bytes: 1 << 20, ..wal::Options::default() }),
                    ..head::Options::default()
                },
                ..DbOptions::default()
            };
            let mut db = Db::open(dir.path(), o.clone()).unwrap();
            let mut model = std::collections::BTreeMap::new();
            for (batch, compact, reopen) in &batches {
                let mut app = db.head().appender();
                for &(minute, v) in batch {
                    let t = minute * 60_000;
                    let v = f64::from(v);
                    if app.append_pairs(&[("__name__", "m"), ("s", "x")], t, v).is_ok() {
                        model.entry(t).or_insert(v);
                    }
                }
                app.commit().unwrap();
                if *compact {
                    db.compact().unwrap();
                }
                if *reopen {
                    db.close().unwrap();
                    drop(db);
                    db = Db::open(dir.path(), o.clone()).unwrap();
                }
                let want: Vec<(i64, f64)> = model.iter().map(|(&t, &v)| (t, v)).collect();
                proptest::prop_assert_eq!(all_samples(&db), want);
            }
            db.compact().unwrap();
            let blocks = db.blocks();
            proptest::prop_assert!(blocks.windows(2).all(|w| w[0].meta().max_time <= w[1].meta().min_time), "overlapping blocks left");
        }
    }
}
