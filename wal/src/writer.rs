//! The write side: [`Wal`] appends batches of records to the current segment, rotates
//! segments, and makes writes durable according to the [`SyncPolicy`] with group commit.
//!
//! Buffering: a batch is encoded in memory (fragments, page padding) into one buffer and handed
//! to the OS with a single `write(2)` before `log` returns, so no acknowledged byte is ever left
//! only in process memory. Pages are not rewritten: a partial last page simply continues with
//! the next batch.
//!
//! Failure and recovery: a failed `write(2)` or fsync (`ENOSPC`, `EIO`) puts the WAL in a failed
//! state; the call that hit it and every batch waiting for an fsync get an error. The next write
//! (or [`Wal::recover`]) tries to leave that state: it cuts the tail of every segment back to the
//! end of the last batch written whole (so a batch whose write failed is never replayed), fsyncs
//! what is left, checks that the disk takes a page of new data (a probe file written, fsynced and
//! deleted), and starts a new segment after the failed one. Batches written but not fsynced
//! when the failure came are never reported durable afterwards: their callers already got the
//! error. If any recovery step fails the WAL stays failed, and the next write tries again.
//!
//! Locking: `Shared::writer` (the writer lock) serializes appends and rotation; it is never
//! held across an fsync. `Shared::sync` (the sync state) is only ever taken briefly, and may be
//! taken while holding the writer lock, never the other way round. At most one thread fsyncs at a
//! time (`SyncState::syncing`); the others wait on `Shared::synced` and are woken when an fsync
//! that covers their batch has completed.

use std::fs::File;
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use std::io::Write;

use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::record::{encode_record, encoded_len, PAGE_SIZE_BYTES};
use crate::repair::{self, RepairReport};
use crate::segment::{self, SegmentIndex};

/// Default segment size: 128 MiB, as in Prometheus.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 128 * 1024 * 1024;

/// When written bytes are made durable with fsync.
///
/// Whatever the policy, when [`Wal::log`] returns `Ok` the batch has been handed to the OS with
/// `write(2)`: killing the process (even with `kill -9`) afterwards loses nothing. The policies
/// differ in what survives a machine crash or power loss:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// `log` returns only after an fsync covering the batch (its segment file, any earlier
    /// segment it touched, and the directory entry of a newly created segment) has completed.
    /// Every acknowledged batch survives a machine crash. Concurrent writers share fsyncs
    /// (group commit): one thread fsyncs while the others whose batches it covers wait.
    #[default]
    Always,
    /// `log` returns after `write(2)`; a background thread owned by the [`Wal`] fsyncs every
    /// interval (and segments are fsynced when they are cut). A machine crash can lose the
    /// batches acknowledged during roughly the last interval (plus the duration of one fsync).
    Periodic(Duration),
    /// `log` returns after `write(2)`; fsync happens only when a segment is cut, on
    /// [`Wal::sync`] and on [`Wal::close`]. A machine crash can lose anything written since.
    Never,
}

/// Configuration of a [`Wal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Target size of a segment file; a multiple of the 32 KiB page size. A record is never split
    /// across segments: when it does not fit, a new segment is started first. A record larger
    /// than a whole segment gets a segment of its own, which is then larger than this.
    pub segment_size_bytes: u64,
    /// Durability policy.
    pub sync: SyncPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Options { segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES, sync: SyncPolicy::Always }
    }
}

impl Options {
    fn validate(&self) -> Result<()> {
        let page = PAGE_SIZE_BYTES as u64;
        if self.segment_size_bytes < page || !self.segment_size_bytes.is_multiple_of(page) {
            return Err(Error::InvalidOptions(
                "segment_size_bytes must be a non-zero multiple of the 32 KiB page size",
            ));
        }
        if let SyncPolicy::Periodic(d) = self.sync {
            if d.is_zero() {
                return Err(Error::InvalidOptions("SyncPolicy::Periodic needs a non-zero interval"));
            }
        }
        Ok(())
    }
}

/// A batch written by [`Wal::log_unsynced`] that is durable once [`Wal::wait_synced`] returns `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the batch is not durable until the ticket is waited for"]
pub struct SyncTicket {
    /// Batch sequence number.
    seq: u64,
}

/// A segmented write-ahead log open for appending. `Send + Sync`: share it behind an `Arc`.
pub struct Wal {
    shared: Arc<Shared>,
    /// The Periodic background syncer, if any.
    syncer: Mutex<Option<JoinHandle<()>>>,
}

/// State shared with the background syncer thread.
struct Shared {
    dir: PathBuf,
    opts: Options,
    /// The writer lock.
    writer: Mutex<Writer>,
    /// Group-commit state; see the module docs for lock order.
    sync: Mutex<SyncState>,
    /// Signalled whenever a sync round ends (successfully or not).
    synced: Condvar,
    /// Set (under the writer lock) by close; later `log` calls fail with [`Error::Closed`].
    closed: AtomicBool,
    bytes_written: AtomicU64,
    fsync_count: AtomicU64,
    fsync_durations: crate::histogram::DurationHistogram,
    /// Number of failed writes, fsyncs and recovery attempts since open.
    failures: AtomicU64,
    /// Stop flag for the background syncer.
    stop: Mutex<bool>,
    stop_signal: Condvar,
    /// Test hook: make the next fsync fail.
    #[cfg(test)]
    fail_next_fsync: AtomicBool,
    /// Test hook: the n-th next `write(2)` (1 = the next) writes half its bytes, then fails like
    /// a full disk; 0 = off.
    #[cfg(test)]
    fail_write_in: AtomicU64,
}

/// Everything guarded by the writer lock.
struct Writer {
    segment: SegmentIndex,
    file: Arc<File>,
    path: PathBuf,
    /// Bytes written to the current segment file.
    segment_bytes: u64,
    /// Number of write events (batches and segment cuts) so far; the group-commit sequence.
    seq: u64,
    /// Reused buffer holding the encoded batch before the `write(2)`.
    buf: Vec<u8>,
    /// Segment and length at the end of the last batch written whole: where recovery cuts.
    good: (SegmentIndex, u64),
    /// Set by a recovery until the next write succeeds (logged then as recovered) or fails (then
    /// the disk still refuses writes and the failure is not logged again).
    recovered_from: Option<String>,
}

impl SyncState {
    fn is_doubtful(&self, seq: u64) -> bool {
        seq > self.doubtful.0 && seq <= self.doubtful.1
    }
}

/// Group-commit state.
struct SyncState {
    /// Highest sequence whose bytes have been written (mirrors `Writer::seq`).
    written_seq: u64,
    /// Highest sequence known to be durable.
    synced_seq: u64,
    /// A thread is currently fsyncing (outside this lock).
    syncing: bool,
    /// The segment being written.
    current: (Arc<File>, PathBuf),
    /// Earlier segments with writes not yet fsynced.
    pending: Vec<(Arc<File>, PathBuf)>,
    /// A segment was created since the directory was last fsynced.
    dir_dirty: bool,
    /// Set when a write or fsync failed: the WAL refuses writes until a recovery succeeds.
    failed: Option<String>,
    /// Batches `(after, upto]` were written before a failure and not fsynced: never reported
    /// durable, even once a later fsync covers them (their callers were told they failed).
    doubtful: (u64, u64),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its state consistent before running code that could panic
    // (the caller's `apply` runs after all writer updates), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`, repairing a torn or corrupt tail first (see
    /// [`RepairReport`]). New writes go to a fresh segment after the last existing one, like
    /// Prometheus.
    pub fn open(dir: &Path, opts: Options) -> Result<(Wal, RepairReport)> {
        opts.validate()?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let report = repair::repair(dir)?;
        let next = segment::list(dir)?.last().map_or(SegmentIndex(0), |s| s.next());
        let file = Arc::new(segment::create(dir, next)?);
        segment::sync_dir(dir)?;
        let path = segment::segment_path(dir, next);
        info!(dir = %dir.display(), segment = next.0, "wal opened");

        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            writer: Mutex::new(Writer {
                segment: next,
                file: Arc::clone(&file),
                path: path.clone(),
                segment_bytes: 0,
                seq: 0,
                buf: Vec::new(),
                good: (next, 0),
                recovered_from: None,
            }),
            sync: Mutex::new(SyncState {
                written_seq: 0,
                synced_seq: 0,
                syncing: false,
                current: (file, path),
                pending: Vec::new(),
                dir_dirty: false,
                failed: None,
                doubtful: (0, 0),
            }),
            synced: Condvar::new(),
            closed: AtomicBool::new(false),
            bytes_written: AtomicU64::new(0),
            fsync_count: AtomicU64::new(0),
            fsync_durations: crate::histogram::DurationHistogram::default(),
            failures: AtomicU64::new(0),
            stop: Mutex::new(false),
            stop_signal: Condvar::new(),
            #[cfg(test)]
            fail_next_fsync: AtomicBool::new(false),
            #[cfg(test)]
            fail_write_in: AtomicU64::new(0),
        });
        let syncer = match opts.sync {
            SyncPolicy::Periodic(interval) => {
                let shared = Arc::clone(&shared);
                let handle = std::thread::Builder::new()
                    .name("wal-syncer".into())
                    .spawn(move || shared.run_syncer(interval))
                    .map_err(|e| Error::io(dir, e))?;
                Some(handle)
            }
            SyncPolicy::Always | SyncPolicy::Never => None,
        };
        Ok((Wal { shared, syncer: Mutex::new(syncer) }, report))
    }

    /// Appends `records` as one batch (each element one record, in order), rotating segments
    /// as needed.
    ///
    /// While still holding the writer lock, after the bytes were written with `write(2)` (not
    /// necessarily fsynced), calls `apply` and returns its output: use it to apply the batch to
    /// memory in exactly WAL order. Under [`SyncPolicy::Always`] it then waits for an fsync
    /// covering the batch (group commit). If that fsync fails, `apply` has already run but the
    /// error is returned and the WAL is failed: the caller must treat the batch as not durable.
    ///
    /// If a write or fsync fails, the WAL enters a failed state (see the module docs); each later
    /// call first tries to recover and, while that fails, returns [`Error::Failed`] without
    /// calling `apply`.
    pub fn log<R>(&self, records: &[&[u8]], apply: impl FnOnce() -> R) -> Result<R> {
        let (out, ticket) = self.log_unsynced(records, apply)?;
        if let Some(t) = ticket {
            self.wait_synced(t)?;
        }
        Ok(out)
    }

    /// [`Wal::log`] without the wait: returns `apply`'s output and, when the sync policy asks for
    /// an fsync before the batch counts as durable, the ticket to pass to [`Wal::wait_synced`].
    /// Lets a caller write from one thread and wait for the fsync on another.
    pub fn log_unsynced<R>(&self, records: &[&[u8]], apply: impl FnOnce() -> R) -> Result<(R, Option<SyncTicket>)> {
        let s = &*self.shared;
        let (out, seq, rotated) = {
            let mut w = lock(&s.writer);
            if s.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            w.recover_if_failed(s)?;
            let rotated = w.write_batch(s, records)?;
            (apply(), w.seq, rotated)
        };
        let wait = match s.opts.sync {
            _ if records.is_empty() => false,
            SyncPolicy::Always => true,
            // Like Prometheus: a finished segment is fsynced when it is cut.
            SyncPolicy::Periodic(_) | SyncPolicy::Never => rotated,
        };
        Ok((out, wait.then_some(SyncTicket { seq })))
    }

    /// Waits until the batch of `ticket` is fsynced, fsyncing it (and everything written before it)
    /// if no other thread is: group commit. An error means the batch is not durable and the WAL
    /// is failed.
    pub fn wait_synced(&self, ticket: SyncTicket) -> Result<()> {
        self.shared.wait_synced(ticket.seq)
    }

    /// True if the batch of `ticket` is already fsynced ([`Wal::wait_synced`] would return at once).
    pub fn is_synced(&self, ticket: SyncTicket) -> bool {
        let st = lock(&self.shared.sync);
        st.failed.is_none() && st.synced_seq >= ticket.seq && !st.is_doubtful(ticket.seq)
    }

    /// Why the WAL cannot accept writes right now, or `None` when it can.
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.sync).failed.clone()
    }

    /// Number of failed writes, fsyncs and recovery attempts since open.
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// Leaves the failed state if the disk lets it (see the module docs); does nothing when the
    /// WAL is not failed. Writes do the same on their own; this lets a caller recover without one.
    pub fn recover(&self) -> Result<()> {
        let s = &*self.shared;
        let mut w = lock(&s.writer);
        if s.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        w.recover_if_failed(s)
    }

    /// Fsyncs everything written so far (the current segment, any unsynced earlier segment and
    /// the directory). Writes are never buffered past `log`, so there is nothing to flush first.
    pub fn sync(&self) -> Result<()> {
        self.shared.sync()
    }

    /// Closes the current segment and starts a new one; returns the index of the new segment.
    /// The old segment and the directory are fsynced before returning.
    pub fn cut_segment(&self) -> Result<SegmentIndex> {
        let s = &*self.shared;
        let (index, seq) = {
            let mut w = lock(&s.writer);
            if s.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            w.recover_if_failed(s)?;
            w.rotate(s)?;
            (w.segment, w.seq)
        };
        s.wait_synced(seq)?;
        Ok(index)
    }

    /// Like [`Wal::cut_segment`], and runs `f` with the new segment's index while still holding the
    /// writer lock: `f` sees exactly the state of every batch in the segments before the new one, and
    /// no batch of the new segment. Used to take a consistent snapshot for compaction.
    pub fn cut_segment_with<R>(&self, f: impl FnOnce(SegmentIndex) -> R) -> Result<(SegmentIndex, R)> {
        let s = &*self.shared;
        let (index, seq, out) = {
            let mut w = lock(&s.writer);
            if s.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            w.recover_if_failed(s)?;
            w.rotate(s)?;
            let out = f(w.segment);
            (w.segment, w.seq, out)
        };
        s.wait_synced(seq)?;
        Ok((index, out))
    }

    /// Deletes all segments with index `< before`, but never the current one. Returns how many
    /// were deleted.
    pub fn truncate_before(&self, before: SegmentIndex) -> Result<usize> {
        let s = &*self.shared;
        let current = lock(&s.writer).segment;
        let limit = before.min(current);
        let mut removed = 0;
        for index in segment::list(&s.dir)? {
            if index >= limit {
                break;
            }
            segment::remove(&s.dir, index)?;
            removed += 1;
        }
        if removed > 0 {
            segment::sync_dir(&s.dir)?;
            info!(before = limit.0, removed, "wal segments truncated");
        }
        Ok(removed)
    }

    /// `(first, last)` segment indexes currently on disk, or `None` if there are none.
    pub fn segment_range(&self) -> Result<Option<(SegmentIndex, SegmentIndex)>> {
        let segments = segment::list(&self.shared.dir)?;
        Ok(segments.first().copied().zip(segments.last().copied()))
    }

    /// Total size in bytes of the segment files on disk (checkpoints not included): what a
    /// restart would replay record by record.
    pub fn segments_bytes(&self) -> Result<u64> {
        segment::total_size(&self.shared.dir)
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Index of the segment currently written to.
    pub fn current_segment(&self) -> SegmentIndex {
        lock(&self.shared.writer).segment
    }

    /// Total bytes written (including padding) since open.
    pub fn bytes_written(&self) -> u64 {
        self.shared.bytes_written.load(Ordering::Relaxed)
    }

    /// Durations of the fsync rounds so far.
    pub fn fsync_durations(&self) -> crate::histogram::HistogramSnapshot {
        self.shared.fsync_durations.snapshot()
    }

    /// Number of fsync rounds since open (each round fsyncs the segment files and, when needed,
    /// the directory). With group commit this is usually below the number of `log` calls.
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsync_count.load(Ordering::Relaxed)
    }

    /// Syncs and marks the WAL closed: later `log` calls return [`Error::Closed`]. Stops the
    /// background syncer. Idempotent.
    pub fn close(&self) -> Result<()> {
        let already = {
            let _w = lock(&self.shared.writer);
            self.shared.closed.swap(true, Ordering::AcqRel)
        };
        self.stop_syncer();
        if already {
            return Ok(());
        }
        let res = self.shared.sync();
        info!(dir = %self.shared.dir.display(), ok = res.is_ok(), "wal closed");
        res
    }

    fn stop_syncer(&self) {
        let handle = lock(&self.syncer).take();
        if let Some(handle) = handle {
            *lock(&self.shared.stop) = true;
            self.shared.stop_signal.notify_all();
            if handle.join().is_err() {
                warn!("wal background syncer panicked");
            }
        }
    }

    /// Test hook: the next fsync fails with an injected I/O error.
    #[cfg(test)]
    pub(crate) fn fail_next_fsync(&self) {
        self.shared.fail_next_fsync.store(true, Ordering::SeqCst);
    }

    /// Test hook: the `n`-th next `write(2)` (1 = the next) writes half its bytes, then fails
    /// with `ENOSPC`.
    #[cfg(test)]
    pub(crate) fn fail_write_in(&self, n: u64) {
        self.shared.fail_write_in.store(n, Ordering::SeqCst);
    }

    /// Whether the background syncer thread is running.
    #[cfg(test)]
    pub(crate) fn has_syncer(&self) -> bool {
        lock(&self.syncer).is_some()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            warn!(error = %e, "wal close on drop failed");
        }
    }
}

impl Writer {
    /// Encodes and writes one batch, cutting a new segment before any record that does not fit
    /// in the current one. Returns whether a segment was cut. Any failure fails the WAL.
    fn write_batch(&mut self, s: &Shared, records: &[&[u8]]) -> Result<bool> {
        if records.is_empty() {
            return Ok(false);
        }
        let mut rotated = false;
        self.buf.clear();
        for rec in records {
            let pos = self.segment_bytes + self.buf.len() as u64;
            let page_pos = (pos % PAGE_SIZE_BYTES as u64) as usize;
            let need = encoded_len(page_pos, rec.len()) as u64;
            if pos > 0 && pos + need > s.opts.segment_size_bytes {
                self.flush(s)?;
                self.rotate(s)?;
                rotated = true;
                encode_record(&mut self.buf, 0, rec);
            } else {
                encode_record(&mut self.buf, page_pos, rec);
            }
        }
        self.flush(s)?;
        self.seq += 1;
        self.good = (self.segment, self.segment_bytes);
        lock(&s.sync).written_seq = self.seq;
        if let Some(reason) = self.recovered_from.take() {
            info!(segment = self.segment.0, error = %reason, "wal recovered: accepting writes again");
        }
        Ok(rotated)
    }

    /// Writes the buffered bytes to the current segment with `write(2)`.
    fn flush(&mut self, s: &Shared) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        #[cfg(test)]
        if s.fail_write_in.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) == Ok(1) {
            let half = self.buf.get(..self.buf.len() / 2).unwrap_or_default();
            let source = match (&*self.file).write_all(half) {
                Ok(()) => std::io::Error::from_raw_os_error(28),
                Err(e) => e,
            };
            let err = Error::io(&self.path, source);
            self.fail(s, &err);
            return Err(err);
        }
        if let Err(e) = (&*self.file).write_all(&self.buf) {
            let err = Error::io(&self.path, e);
            self.fail(s, &err);
            return Err(err);
        }
        self.segment_bytes += self.buf.len() as u64;
        s.bytes_written.fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        self.buf.clear();
        Ok(())
    }

    /// Starts the next segment. The old one is handed to the sync state to be fsynced by the
    /// next sync round, together with the directory.
    fn rotate(&mut self, s: &Shared) -> Result<()> {
        let next = self.segment.next();
        let file = match segment::create(&s.dir, next) {
            Ok(f) => Arc::new(f),
            Err(err) => {
                self.fail(s, &err);
                return Err(err);
            }
        };
        let path = segment::segment_path(&s.dir, next);
        let old = (mem::replace(&mut self.file, Arc::clone(&file)), mem::replace(&mut self.path, path.clone()));
        let old_index = mem::replace(&mut self.segment, next);
        let old_bytes = mem::replace(&mut self.segment_bytes, 0);
        if self.good.0 == old_index && self.good.1 == old_bytes {
            self.good = (next, 0);
        }
        self.seq += 1;
        {
            let mut st = lock(&s.sync);
            st.current = (file, path);
            st.pending.push(old);
            st.dir_dirty = true;
            st.written_seq = self.seq;
        }
        info!(segment = next.0, previous = old_index.0, previous_bytes = old_bytes, "wal segment cut");
        Ok(())
    }
}

impl Writer {
    /// If the WAL is failed, tries to recover (see the module docs). Called with the writer lock
    /// held, so no batch is written meanwhile.
    fn recover_if_failed(&mut self, s: &Shared) -> Result<()> {
        let mut st = lock(&s.sync);
        if st.failed.is_none() {
            return Ok(());
        }
        // A sync round that started before the failure may still be running on its files.
        while st.syncing {
            st = s.synced.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        let mut files = mem::take(&mut st.pending);
        drop(st);
        files.push((Arc::clone(&self.file), self.path.clone()));
        let result = self.cut_back_and_sync(s, &files);
        let mut st = lock(&s.sync);
        if let Err(err) = result {
            // Keep the files for the next attempt.
            files.pop();
            st.pending.extend(files);
            let reason = err.to_string();
            drop(st);
            s.failures.fetch_add(1, Ordering::Relaxed);
            debug!(error = %reason, "wal recovery failed; still refusing writes");
            return Err(Error::Failed { reason });
        }
        // Everything written is on disk now except what was not fsynced before the failure: those
        // batches' callers got an error and must not see them as durable later.
        let lost_from = st.synced_seq;
        st.doubtful = (lost_from, st.written_seq.max(lost_from));
        st.synced_seq = st.written_seq;
        st.dir_dirty = false;
        let reason = st.failed.take().unwrap_or_default();
        drop(st);
        let (failed_segment, kept_bytes) = (self.segment, self.segment_bytes);
        // Later writes go to a new segment; an empty segment is reused as it is.
        if self.segment_bytes > 0 {
            self.rotate(s)?;
        }
        if self.recovered_from.is_none() {
            info!(
                failed_segment = failed_segment.0,
                kept_bytes,
                segment = self.segment.0,
                "wal cut back to the last batch written whole after a failure; trying writes again"
            );
        }
        self.recovered_from = Some(reason);
        Ok(())
    }

    /// Truncates the segments back to the end of the last whole batch and fsyncs `files` and the
    /// directory.
    fn cut_back_and_sync(&mut self, s: &Shared, files: &[(Arc<File>, PathBuf)]) -> Result<()> {
        let (good_segment, good_len) = self.good;
        for index in segment::list(&s.dir)? {
            if index == good_segment {
                segment::truncate(&s.dir, index, good_len)?;
            } else if index > good_segment {
                segment::truncate(&s.dir, index, 0)?;
            }
        }
        self.segment_bytes = if self.segment == good_segment { good_len } else { 0 };
        s.fsync_files(files, true)?;
        segment::probe_write(&s.dir)
    }
}

impl Writer {
    /// Fails the WAL after a failed write. Right after a recovery, the disk still refusing is
    /// logged at debug level only: the failure was logged when it first happened.
    fn fail(&mut self, s: &Shared, err: &Error) {
        if self.recovered_from.is_some() {
            s.failures.fetch_add(1, Ordering::Relaxed);
            debug!(error = %err, "wal write failed again after recovery");
            lock(&s.sync).failed.get_or_insert_with(|| err.to_string());
            s.synced.notify_all();
            return;
        }
        s.fail(err);
    }
}

impl Shared {
    fn fail(&self, err: &Error) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut st = lock(&self.sync);
        if st.failed.is_none() {
            warn!(error = %err, "wal failed: refusing writes until the disk accepts them again");
            st.failed = Some(err.to_string());
        }
        drop(st);
        self.synced.notify_all();
    }

    /// Makes everything written so far durable.
    fn sync(&self) -> Result<()> {
        let seq = lock(&self.sync).written_seq;
        self.wait_synced(seq)
    }

    /// Returns once sequence `seq` is durable: either another thread's fsync covered it, or this
    /// thread ran a sync round itself (outside every lock).
    fn wait_synced(&self, seq: u64) -> Result<()> {
        let mut st = lock(&self.sync);
        loop {
            if let Some(reason) = &st.failed {
                return Err(Error::Failed { reason: reason.clone() });
            }
            if st.is_doubtful(seq) {
                return Err(Error::Failed { reason: "the batch was written before an earlier failure".into() });
            }
            if st.synced_seq >= seq {
                return Ok(());
            }
            if st.syncing {
                st = self.synced.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Become the syncer for everything written so far.
            st.syncing = true;
            let target = st.written_seq;
            let mut files = mem::take(&mut st.pending);
            files.push((Arc::clone(&st.current.0), st.current.1.clone()));
            let dir_dirty = mem::replace(&mut st.dir_dirty, false);
            drop(st);

            let res = self.fsync_round(&files, dir_dirty);

            st = lock(&self.sync);
            st.syncing = false;
            match res {
                Ok(()) => st.synced_seq = st.synced_seq.max(target),
                Err(err) => {
                    // The files go back to be fsynced by the recovery.
                    files.pop();
                    st.pending.extend(files);
                    st.dir_dirty |= dir_dirty;
                    drop(st);
                    self.fail(&err);
                    return Err(err);
                }
            }
            self.synced.notify_all();
        }
    }

    fn fsync_round(&self, files: &[(Arc<File>, PathBuf)], dir_dirty: bool) -> Result<()> {
        self.fsync_count.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = self.fsync_files(files, dir_dirty);
        self.fsync_durations.observe(started.elapsed());
        result
    }

    fn fsync_files(&self, files: &[(Arc<File>, PathBuf)], dir_dirty: bool) -> Result<()> {
        for (file, path) in files {
            #[cfg(test)]
            if self.fail_next_fsync.swap(false, Ordering::SeqCst) {
                return Err(Error::io(path, std::io::Error::other("injected fsync failure")));
            }
            file.sync_data().map_err(|e| Error::io(path, e))?;
        }
        if dir_dirty {
            segment::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn run_syncer(&self, interval: Duration) {
        debug!(?interval, "wal background syncer started");
        loop {
            {
                let stop = lock(&self.stop);
                let (stop, _) = self
                    .stop_signal
                    .wait_timeout_while(stop, interval, |stopped| !*stopped)
                    .unwrap_or_else(PoisonError::into_inner);
                if *stop {
                    break;
                }
            }
            // While the WAL is failed there is nothing to sync; the next write recovers it.
            if lock(&self.sync).failed.is_some() {
                continue;
            }
            if let Err(e) = self.sync() {
                warn!(error = %e, "wal periodic sync failed");
            }
        }
        debug!("wal background syncer stopped");
    }
}
