//! Read-only memory maps of block files. The only module of the crate with `unsafe`.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::error::{BlockError, Result};

/// A whole file mapped read-only. Zero-length files are not mapped (that fails on most systems) and
/// read as an empty slice. Share it as `Arc<MappedFile>`: slices borrowed from it live as long as the `Arc`.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<Mmap>,
    path: PathBuf,
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<Arc<MappedFile>> {
        let file = File::open(path).map_err(BlockError::io("open", path))?;
        let len = file.metadata().map_err(BlockError::io("stat", path))?.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: a mapped file must not change or shrink while mapped, or reads would see torn data or
            // fault. Strata only maps files of blocks: they are immutable once their directory has been
            // renamed from `<ulid>.tmp-for-creation` into place, they are never truncated or rewritten while
            // mapped, and a block directory is deleted only after the last reader (the last `Arc` of this
            // map) has dropped. Files are opened read-only and the map is never written through.
            Some(unsafe { Mmap::map(&file) }.map_err(BlockError::io("mmap", path))?)
        };
        Ok(Arc::new(MappedFile { map, path: path.to_path_buf() }))
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }

    /// The file's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// True for a zero-length file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mapped file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A byte range of a mapped file that keeps the map alive: a block's chunk handed to a reader without
/// copying it. Cloning is one reference count.
#[derive(Debug, Clone)]
pub struct MappedSlice {
    file: Arc<MappedFile>,
    start: usize,
    len: usize,
}

impl MappedSlice {
    /// The bytes `range` of `file`; `None` when the range is not inside the file.
    pub fn new(file: &Arc<MappedFile>, range: std::ops::Range<usize>) -> Option<MappedSlice> {
        file.bytes().get(range.clone())?;
        Some(MappedSlice { file: Arc::clone(file), start: range.start, len: range.len() })
    }

    /// The bytes (empty if the range were ever outside the file, which [`MappedSlice::new`] rules out).
    pub fn as_slice(&self) -> &[u8] {
        self.file.bytes().get(self.start..self.start + self.len).unwrap_or_default()
    }

    /// The mapped file the bytes are in.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_files_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let m = MappedFile::open(&p).unwrap();
        assert_eq!(m.bytes(), b"hello");
        assert_eq!(m.path(), p);
        let e = dir.path().join("e");
        std::fs::write(&e, b"").unwrap();
        let m = MappedFile::open(&e).unwrap();
        assert!(m.is_empty());
        assert!(MappedFile::open(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn slices_outlive_their_other_handles() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello world").unwrap();
        let m = MappedFile::open(&p).unwrap();
        let s = MappedSlice::new(&m, 6..11).unwrap();
        assert!(MappedSlice::new(&m, 6..12).is_none());
        drop(m);
        assert_eq!(s.as_slice(), b"world");
    }
}
