//! Checkpoint directories inside a WAL directory: `checkpoint.NNNNNNNN/` holds what the segments
//! before `NNNNNNNN` held (it is itself a WAL, written with [`Wal`](crate::Wal) and read with
//! [`Reader`](crate::Reader); what its records mean is the caller's business).
//!
//! This module owns the names and the moves between them:
//!
//! - `checkpoint.NNNNNNNN.tmp/` — one being written ([`tmp_dir`]); [`commit`] renames it into place
//!   and fsyncs the WAL directory, so a crash leaves either the old checkpoint or the new one.
//! - `checkpoint.NNNNNNNN/` — a complete checkpoint ([`list`], [`newest`], [`remove_before`]).
//! - `checkpoint.NNNNNNNN.corrupted/` — one that could not be read, set aside ([`set_aside`]) and
//!   never read again; kept for inspection.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::segment::{self, SegmentIndex};

const PREFIX: &str = "checkpoint.";
const TMP_SUFFIX: &str = ".tmp";
const CORRUPTED_SUFFIX: &str = ".corrupted";

/// A complete checkpoint: the segment it stands in front of, and its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Segments before this index are covered by the checkpoint.
    pub index: SegmentIndex,
    /// `<wal>/checkpoint.NNNNNNNN`.
    pub dir: PathBuf,
}

fn name(index: SegmentIndex) -> String {
    format!("{PREFIX}{index}")
}

/// The directory a new checkpoint for `index` is written into before [`commit`]. A leftover one
/// from an interrupted attempt is removed first; the directory itself is not created.
pub fn tmp_dir(wal_dir: &Path, index: SegmentIndex) -> Result<PathBuf> {
    let tmp = wal_dir.join(format!("{}{TMP_SUFFIX}", name(index)));
    match fs::remove_dir_all(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&tmp, e)),
    }
    Ok(tmp)
}

/// Moves the finished [`tmp_dir`] of `index` into place and fsyncs the WAL directory.
pub fn commit(wal_dir: &Path, index: SegmentIndex) -> Result<Checkpoint> {
    let tmp = wal_dir.join(format!("{}{TMP_SUFFIX}", name(index)));
    let dir = wal_dir.join(name(index));
    fs::rename(&tmp, &dir).map_err(|e| Error::io(&tmp, e))?;
    segment::sync_dir(wal_dir)?;
    Ok(Checkpoint { index, dir })
}

/// The complete checkpoints in `wal_dir`, oldest first. A missing directory has none.
pub fn list(wal_dir: &Path) -> Result<Vec<Checkpoint>> {
    let entries = match fs::read_dir(wal_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(wal_dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(wal_dir, e))?;
        let file_name = entry.file_name();
        let Some(index) = file_name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(segment::parse_name) else {
            continue;
        };
        out.push(Checkpoint { index, dir: entry.path() });
    }
    out.sort_by_key(|c| c.index);
    Ok(out)
}

/// The newest complete checkpoint in `wal_dir`.
pub fn newest(wal_dir: &Path) -> Result<Option<Checkpoint>> {
    Ok(list(wal_dir)?.pop())
}

/// Deletes the complete checkpoints older than `index`; returns how many.
pub fn remove_before(wal_dir: &Path, index: SegmentIndex) -> Result<usize> {
    let mut removed = 0;
    for c in list(wal_dir)? {
        if c.index < index {
            fs::remove_dir_all(&c.dir).map_err(|e| Error::io(&c.dir, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        segment::sync_dir(wal_dir)?;
    }
    Ok(removed)
}

/// Renames a checkpoint that cannot be read to `checkpoint.NNNNNNNN.corrupted` (replacing an
/// older one of that name) so that it is never read again; returns the new path.
pub fn set_aside(wal_dir: &Path, checkpoint: &Checkpoint) -> Result<PathBuf> {
    let aside = wal_dir.join(format!("{}{CORRUPTED_SUFFIX}", name(checkpoint.index)));
    match fs::remove_dir_all(&aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&aside, e)),
    }
    fs::rename(&checkpoint.dir, &aside).map_err(|e| Error::io(&checkpoint.dir, e))?;
    segment::sync_dir(wal_dir)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_listing_commit_set_aside_and_removal() {
        let wal = tempfile::tempdir().unwrap();
        let w = wal.path();
        assert_eq!(newest(w).unwrap(), None);
        for i in [3u32, 7] {
            let tmp = tmp_dir(w, SegmentIndex(i)).unwrap();
            assert!(tmp.ends_with(format!("checkpoint.{i:08}.tmp")));
            fs::create_dir(&tmp).unwrap();
            let c = commit(w, SegmentIndex(i)).unwrap();
            assert!(c.dir.ends_with(format!("checkpoint.{i:08}")) && c.dir.is_dir());
        }
        // Unfinished, set aside, and segment files are not checkpoints.
        fs::create_dir(w.join("checkpoint.00000009.tmp")).unwrap();
        fs::write(w.join("00000007"), b"").unwrap();
        let newest7 = newest(w).unwrap().unwrap();
        assert_eq!(newest7.index, SegmentIndex(7));
        let aside = set_aside(w, &newest7).unwrap();
        assert!(aside.ends_with("checkpoint.00000007.corrupted") && aside.is_dir());
        assert_eq!(newest(w).unwrap().map(|c| c.index), Some(SegmentIndex(3)));
        // A leftover temporary directory is removed when the next attempt starts.
        assert!(!tmp_dir(w, SegmentIndex(9)).unwrap().exists());
        assert_eq!(remove_before(w, SegmentIndex(4)).unwrap(), 1);
        assert!(list(w).unwrap().is_empty());
        assert!(aside.is_dir(), "a set-aside checkpoint is kept");
    }
}
