//! Metric metadata: the latest type, help and unit per metric family, as remote-write senders report
//! them (1.0 `WriteRequest.metadata`, 2.0 per-series `Metadata`), for `GET /api/v1/metadata`.
//!
//! Held in memory in one map under a mutex (writers update a whole request's entries under one lock,
//! and only entries that changed allocate), bounded by [`MAX_FAMILIES`] families (further new
//! families are dropped and counted) and [`HELP_MAX_BYTES`] bytes of help text per family.
//!
//! Persistence: the map is written to `<data dir>/metadata.json` (JSON, see [`FILE_NAME`]) by a
//! background thread at most every [`FLUSH_INTERVAL`] while it has unsaved changes, and once more by
//! [`MetadataStore::close`]. Each write goes to a temporary file that is fsynced and renamed over the
//! old one (then the directory is fsynced), so the file is always a complete earlier state. A clean
//! shutdown keeps everything; a crash loses at most the changes of the last [`FLUSH_INTERVAL`]
//! (senders re-send metadata periodically, and 2.0 senders with every series). Metadata is not in
//! the WAL and is not part of blocks or snapshots.
//!
//! This module must not know about HTTP or protobuf: callers pass decoded bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{io_error, Error, Result};

/// The file in the data directory that holds the metadata.
pub const FILE_NAME: &str = "metadata.json";
/// Most metric families held; metadata of further new families is dropped (counted).
pub const MAX_FAMILIES: usize = 100_000;
/// Longest help text kept, in bytes (longer help is cut at a character boundary).
pub const HELP_MAX_BYTES: usize = 4096;
/// Longest family name or unit kept, in bytes (longer ones are dropped, counted).
pub const NAME_MAX_BYTES: usize = 1024;
/// How often the background thread writes unsaved changes.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);
const FILE_VERSION: u32 = 1;

/// A metric type, as Prometheus names them in `/api/v1/metadata`. The discriminants are the
/// remote-write protobuf enum values (1.0 `MetricMetadata.type`, 2.0 `Metadata.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// 0: unknown (1.0) or unspecified (2.0).
    Unknown = 0,
    /// 1.
    Counter = 1,
    /// 2.
    Gauge = 2,
    /// 3.
    Histogram = 3,
    /// 4.
    GaugeHistogram = 4,
    /// 5.
    Summary = 5,
    /// 6.
    Info = 6,
    /// 7.
    StateSet = 7,
}

impl MetricType {
    /// The type for a protobuf enum value; values this version does not know are `Unknown`.
    pub fn from_proto(v: u64) -> MetricType {
        match v {
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::GaugeHistogram,
            5 => MetricType::Summary,
            6 => MetricType::Info,
            7 => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }

    /// Prometheus's name of the type (`model.MetricType`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }

    /// The metric family a series name belongs to: the name without the suffix a classic histogram
    /// or summary adds to its series (`_bucket`, `_sum`, `_count`), as Prometheus keys metadata.
    pub fn family_name(self, series_name: &[u8]) -> &[u8] {
        let suffixes: &[&[u8]] = match self {
            MetricType::Histogram | MetricType::GaugeHistogram => &[b"_bucket", b"_sum", b"_count"],
            MetricType::Summary => &[b"_sum", b"_count"],
            _ => &[],
        };
        for s in suffixes {
            if let Some(base) = series_name.strip_suffix(*s) {
                if !base.is_empty() {
                    return base;
                }
            }
        }
        series_name
    }
}

/// The metadata of one metric family.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    /// The metric type.
    #[serde(rename = "type")]
    pub kind: MetricType,
    /// Help text.
    pub help: String,
    /// Unit (may be empty).
    pub unit: String,
}

/// One update as decoded from a request (borrowed bytes, not yet checked for UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update<'a> {
    /// The metric family name.
    pub family: &'a [u8],
    /// The metric type.
    pub kind: MetricType,
    /// Help text.
    pub help: &'a [u8],
    /// Unit.
    pub unit: &'a [u8],
}

/// What [`MetadataStore::update`] did with a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpdateStats {
    /// Entries that added or changed a family.
    pub changed: u64,
    /// Entries dropped: not UTF-8, empty or over-long name, or no room for a new family.
    pub dropped: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FileContents {
    version: u32,
    metrics: BTreeMap<String, Metadata>,
}

/// The metadata of every metric family seen (see the module docs).
pub struct MetadataStore {
    /// The persisted file; `None` for an in-memory store.
    path: Option<PathBuf>,
    /// Families by name (sorted, so answers and the file are in a stable order).
    map: Mutex<BTreeMap<String, Metadata>>,
    /// Changes not written to the file yet.
    dirty: AtomicBool,
    /// Serialises file writes (the flusher and `close`).
    writing: Mutex<()>,
    dropped: AtomicU64,
    stop: Arc<(Mutex<bool>, Condvar)>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for MetadataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataStore").field("path", &self.path).field("families", &self.len()).finish()
    }
}

impl MetadataStore {
    /// A store that is never persisted.
    pub fn in_memory() -> MetadataStore {
        MetadataStore::with(None, BTreeMap::new())
    }

    fn with(path: Option<PathBuf>, map: BTreeMap<String, Metadata>) -> MetadataStore {
        MetadataStore {
            path,
            map: Mutex::new(map),
            dirty: AtomicBool::new(false),
            writing: Mutex::new(()),
            dropped: AtomicU64::new(0),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            flusher: Mutex::new(None),
        }
    }

    /// Opens the store persisted in `dir` ([`FILE_NAME`]). A missing file is an empty store; a file
    /// that cannot be parsed is logged and set aside as `metadata.json.corrupt` (metadata is re-sent
    /// by senders, so it is not worth refusing to start for); an unreadable one is an error. Blocking.
    pub fn open(dir: &Path) -> Result<MetadataStore> {
        let path = dir.join(FILE_NAME);
        let map = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<FileContents>(&bytes) {
                Ok(c) if c.version == FILE_VERSION => c.metrics,
                Ok(c) => {
                    tracing::warn!(path = %path.display(), version = c.version, "unknown metadata file version; starting without metadata");
                    set_aside(&path);
                    BTreeMap::new()
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot parse the metadata file; starting without metadata");
                    set_aside(&path);
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::Io { op: "read", path, source: e }),
        };
        tracing::info!(families = map.len(), "metric metadata loaded");
        Ok(MetadataStore::with(Some(path), map))
    }

    /// Number of metric families held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if no family is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Updates dropped so far (see [`UpdateStats::dropped`]).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Metadata>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a batch of updates under one lock; the last update of a family wins. An entry equal
    /// to the one held allocates nothing and changes nothing.
    pub fn update<'a>(&self, updates: impl IntoIterator<Item = Update<'a>>) -> UpdateStats {
        let mut stats = UpdateStats::default();
        let mut map = self.lock();
        for u in updates {
            let (Ok(family), Ok(help), Ok(unit)) =
                (std::str::from_utf8(u.family), std::str::from_utf8(u.help), std::str::from_utf8(u.unit))
            else {
                stats.dropped += 1;
                continue;
            };
            if family.is_empty() || family.len() > NAME_MAX_BYTES || unit.len() > NAME_MAX_BYTES {
                stats.dropped += 1;
                continue;
            }
            let help = cut(help, HELP_MAX_BYTES);
            let full = map.len() >= MAX_FAMILIES;
            match map.get_mut(family) {
                Some(m) => {
                    if m.kind != u.kind || m.help != help || m.unit != unit {
                        m.kind = u.kind;
                        help.clone_into(&mut m.help);
                        unit.clone_into(&mut m.unit);
                        stats.changed += 1;
                    }
                }
                None if full => stats.dropped += 1,
                None => {
                    let m = Metadata { kind: u.kind, help: help.to_owned(), unit: unit.to_owned() };
                    map.insert(family.to_owned(), m);
                    stats.changed += 1;
                }
            }
        }
        drop(map);
        if stats.changed > 0 {
            self.dirty.store(true, Ordering::Release);
        }
        if stats.dropped > 0 {
            self.dropped.fetch_add(stats.dropped, Ordering::Relaxed);
        }
        stats
    }

    /// Copies the families, sorted by name: all of them, or only `metric`'s.
    pub fn list(&self, metric: Option<&str>) -> Vec<(String, Metadata)> {
        let map = self.lock();
        match metric {
            Some(name) => map.get(name).map(|m| vec![(name.to_owned(), m.clone())]).unwrap_or_default(),
            None => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// Writes the file if there are unsaved changes. Blocking.
    pub fn flush(&self) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let contents = FileContents { version: FILE_VERSION, metrics: self.lock().clone() };
        let written = write_atomically(path, &contents);
        if written.is_err() {
            // Try again next time.
            self.dirty.store(true, Ordering::Release);
        }
        written
    }

    /// Starts the thread that writes changes every [`FLUSH_INTERVAL`]. Without a file, does nothing.
    pub fn start_flusher(self: &Arc<Self>) {
        if self.path.is_none() {
            return;
        }
        let store = Arc::clone(self);
        let stop = Arc::clone(&self.stop);
        let spawned = std::thread::Builder::new().name("strata-metadata".into()).spawn(move || loop {
            {
                let (lock, cv) = &*stop;
                let stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                let (stopped, _) = cv.wait_timeout(stopped, FLUSH_INTERVAL).unwrap_or_else(|e| e.into_inner());
                if *stopped {
                    return;
                }
            }
            if let Err(e) = store.flush() {
                tracing::error!(error = %e, "cannot write the metadata file; will retry");
            }
        });
        match spawned {
            Ok(h) => *self.flusher.lock().unwrap_or_else(|e| e.into_inner()) = Some(h),
            Err(e) => tracing::error!(error = %e, "cannot start the metadata flusher; metadata is saved at shutdown"),
        }
    }

    /// Stops the flusher and writes unsaved changes. Blocking.
    pub fn close(&self) -> Result<()> {
        {
            let (lock, cv) = &*self.stop;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(h) = self.flusher.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        self.flush()
    }
}

/// `s` cut to at most `max_bytes` bytes at a character boundary.
fn cut(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn set_aside(path: &Path) {
    let aside = path.with_extension("json.corrupt");
    if let Err(e) = std::fs::rename(path, &aside) {
        tracing::warn!(path = %path.display(), error = %e, "cannot set the metadata file aside");
    }
}

/// Writes `contents` to `<path>.tmp`, fsyncs it, renames it over `path` and fsyncs the directory.
fn write_atomically(path: &Path, contents: &FileContents) -> Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(contents)
        .map_err(|e| Error::Corruption { what: path.display().to_string(), reason: e.to_string() })?;
    let mut f = std::fs::File::create(&tmp).map_err(io_error("create", &tmp))?;
    f.write_all(&bytes).map_err(io_error("write", &tmp))?;
    f.sync_all().map_err(io_error("fsync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_error("rename", &tmp))?;
    if let Some(dir) = path.parent() {
        let d = std::fs::File::open(dir).map_err(io_error("open", dir))?;
        d.sync_all().map_err(io_error("fsync", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up<'a>(family: &'a str, kind: MetricType, help: &'a str) -> Update<'a> {
        Update { family: family.as_bytes(), kind, help: help.as_bytes(), unit: b"" }
    }

    #[test]
    fn latest_wins_and_equal_updates_change_nothing() {
        let s = MetadataStore::in_memory();
        let st = s.update([up("a", MetricType::Counter, "x"), up("b", MetricType::Gauge, "y")]);
        assert_eq!(st, UpdateStats { changed: 2, dropped: 0 });
        assert_eq!(s.update([up("a", MetricType::Counter, "x")]).changed, 0);
        assert_eq!(s.update([up("a", MetricType::Gauge, "z")]).changed, 1);
        let l = s.list(None);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].0, "a");
        assert_eq!(l[0].1, Metadata { kind: MetricType::Gauge, help: "z".into(), unit: String::new() });
        assert_eq!(s.list(Some("b")).len(), 1);
        assert!(s.list(Some("c")).is_empty());
    }

    #[test]
    fn drops_bad_entries() {
        let s = MetadataStore::in_memory();
        let bad = Update { family: b"\xff", kind: MetricType::Counter, help: b"", unit: b"" };
        let st = s.update([bad, up("", MetricType::Counter, "")]);
        assert_eq!(st, UpdateStats { changed: 0, dropped: 2 });
        assert_eq!(s.dropped(), 2);
        let long = "h".repeat(HELP_MAX_BYTES + 10);
        s.update([up("a", MetricType::Counter, &long)]);
        assert_eq!(s.list(Some("a"))[0].1.help.len(), HELP_MAX_BYTES);
    }

    #[test]
    fn family_names_drop_histogram_and_summary_suffixes() {
        assert_eq!(MetricType::Histogram.family_name(b"rq_bucket"), b"rq");
        assert_eq!(MetricType::Summary.family_name(b"rq_count"), b"rq");
        assert_eq!(MetricType::Summary.family_name(b"rq_bucket"), b"rq_bucket");
        assert_eq!(MetricType::Counter.family_name(b"rq_count"), b"rq_count");
        assert_eq!(MetricType::Histogram.family_name(b"_sum"), b"_sum");
    }

    #[test]
    fn survives_close_and_reopen_and_sets_aside_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(MetadataStore::open(dir.path()).unwrap());
        s.start_flusher();
        s.update([up("a", MetricType::Counter, "help a")]);
        s.close().unwrap();
        let s = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(s.list(None)[0].1.help, "help a");
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let s = MetadataStore::open(dir.path()).unwrap();
        assert!(s.is_empty());
        assert!(dir.path().join("metadata.json.corrupt").exists());
    }
}
