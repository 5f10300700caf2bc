//! Segment files: names (zero-padded 8-digit index), listing, creation, fsync of files and of
//! the directory. Knows nothing about what is inside a segment.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::PAGE_SIZE_BYTES;

/// Number of a segment file; the file is named with this number zero-padded to 8 digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SegmentIndex(pub u32);

impl fmt::Display for SegmentIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08}", self.0)
    }
}

impl SegmentIndex {
    /// The following segment index (saturating; 8 digits are never exhausted in practice).
    pub fn next(self) -> SegmentIndex {
        SegmentIndex(self.0.saturating_add(1))
    }
}

/// File name of segment `index` (`00000042`).
pub(crate) fn segment_name(index: SegmentIndex) -> String {
    index.to_string()
}

/// Path of segment `index` inside `dir`.
pub(crate) fn segment_path(dir: &Path, index: SegmentIndex) -> PathBuf {
    dir.join(segment_name(index))
}

/// Parses a segment file name: exactly 8 ASCII digits.
pub(crate) fn parse_name(name: &str) -> Option<SegmentIndex> {
    if name.len() != 8 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok().map(SegmentIndex)
}

/// Lists the segments in `dir`, sorted, checking that they are consecutive. Other entries
/// (checkpoint directories, temporary files) are ignored. A missing directory has no segments.
pub(crate) fn list(dir: &Path) -> Result<Vec<SegmentIndex>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let Some(index) = entry.file_name().to_str().and_then(parse_name) else {
            continue;
        };
        let is_file = entry.file_type().map_err(|e| Error::io(entry.path(), e))?.is_file();
        if is_file {
            out.push(index);
        }
    }
    out.sort_unstable();
    for pair in out.windows(2) {
        if let [a, b] = pair {
            if b.0 != a.0.saturating_add(1) {
                return Err(Error::NonSequentialSegments { dir: dir.to_path_buf(), previous: a.0, next: b.0 });
            }
        }
    }
    Ok(out)
}

/// Creates a new, empty segment file for appending. Fails if it already exists.
/// The caller must fsync the directory (see [`sync_dir`]) before relying on the file existing.
pub(crate) fn create(dir: &Path, index: SegmentIndex) -> Result<File> {
    let path = segment_path(dir, index);
    OpenOptions::new().append(true).create_new(true).open(&path).map_err(|e| Error::io(path, e))
}

/// Opens an existing segment for reading.
pub(crate) fn open_read(dir: &Path, index: SegmentIndex) -> Result<File> {
    let path = segment_path(dir, index);
    File::open(&path).map_err(|e| Error::io(path, e))
}

/// Size of segment `index` in bytes.
pub(crate) fn size(dir: &Path, index: SegmentIndex) -> Result<u64> {
    let path = segment_path(dir, index);
    fs::metadata(&path).map(|m| m.len()).map_err(|e| Error::io(path, e))
}

/// Truncates segment `index` to `len` bytes and fsyncs it.
pub(crate) fn truncate(dir: &Path, index: SegmentIndex, len: u64) -> Result<()> {
    let path = segment_path(dir, index);
    let file = OpenOptions::new().write(true).open(&path).map_err(|e| Error::io(&path, e))?;
    file.set_len(len).map_err(|e| Error::io(&path, e))?;
    file.sync_all().map_err(|e| Error::io(&path, e))
}

/// Total size in bytes of the segment files in `dir` (0 for a missing directory).
pub(crate) fn total_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for index in list(dir)? {
        total += size(dir, index)?;
    }
    Ok(total)
}

/// Name of the file [`probe_write`] writes and deletes; never a segment name.
const PROBE_NAME: &str = "write-probe.tmp";

/// Checks that the file system takes a page of new data: writes [`PAGE_SIZE_BYTES`] to a probe
/// file in `dir`, fsyncs it and deletes it (also a leftover of an interrupted probe). Truncating
/// or fsyncing a segment needs no free space; this does.
pub(crate) fn probe_write(dir: &Path) -> Result<()> {
    let path = dir.join(PROBE_NAME);
    let written = File::create(&path).and_then(|mut f| {
        f.write_all(&[0u8; PAGE_SIZE_BYTES])?;
        f.sync_data()
    });
    let removed = fs::remove_file(&path);
    written.map_err(|e| Error::io(&path, e))?;
    removed.map_err(|e| Error::io(&path, e))
}

/// Deletes segment `index`.
pub(crate) fn remove(dir: &Path, index: SegmentIndex) -> Result<()> {
    let path = segment_path(dir, index);
    fs::remove_file(&path).map_err(|e| Error::io(path, e))
}

/// Fsyncs the directory itself so that created, renamed and removed entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_eight_digits() {
        assert_eq!(segment_name(SegmentIndex(0)), "00000000");
        assert_eq!(segment_name(SegmentIndex(42)), "00000042");
        assert_eq!(parse_name("00000042"), Some(SegmentIndex(42)));
        assert_eq!(parse_name("0000042"), None);
        assert_eq!(parse_name("checkpoint.00000001"), None);
        assert_eq!(parse_name("0000004a"), None);
    }

    #[test]
    fn list_sorts_ignores_others_and_rejects_gaps() {
        let dir = tempfile::tempdir().unwrap();
        for i in [2, 0, 1] {
            create(dir.path(), SegmentIndex(i)).unwrap();
        }
        fs::create_dir(dir.path().join("checkpoint.00000001")).unwrap();
        fs::write(dir.path().join("00000003.tmp"), b"x").unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![SegmentIndex(0), SegmentIndex(1), SegmentIndex(2)]);
        assert!(create(dir.path(), SegmentIndex(1)).is_err(), "create_new");
        create(dir.path(), SegmentIndex(5)).unwrap();
        assert!(matches!(list(dir.path()), Err(Error::NonSequentialSegments { previous: 2, next: 5, .. })));
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
    }
}
