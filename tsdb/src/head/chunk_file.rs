//! Sealed head chunks moved out of memory: appended to files in `<data>/strata_head_chunks/` and read
//! back with positioned reads, so the head's memory holds only open chunks, labels and indexes. The
//! files are a cache, not durable state: checkpoints and the WAL hold the data, the directory is
//! emptied at startup, and a file is deleted when no chunk refers to it any more.
//!
//! Writes go through a buffer of [`WRITE_BUFFER_BYTES`] (as Prometheus's chunk disk mapper does):
//! one `pwrite` per few thousand chunks instead of one per chunk, and the most recently sealed
//! chunks — the ones late samples and last-hour queries look up — are read from memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{io_error, Result};

/// Directory of the chunk files, inside the data directory.
pub const DIR_NAME: &str = "strata_head_chunks";
/// A new file is started past this size.
const MAX_FILE_BYTES: u64 = 256 << 20;
/// Chunk bytes gathered before they are written out (Prometheus's default write buffer size).
pub const WRITE_BUFFER_BYTES: usize = 4 << 20;

/// One chunk file; deleted from disk when the last reference goes away.
#[derive(Debug)]
pub struct ChunkFile {
    file: File,
    path: PathBuf,
    /// Bytes before this offset are in the file. Only grows, and only after the write completed.
    flushed: AtomicU64,
    /// The bytes from `flushed` on, not yet written.
    tail: Mutex<Tail>,
}

#[derive(Debug, Default)]
struct Tail {
    buf: Vec<u8>,
    /// A write failed: the buffer is kept (its chunks are read from it) and never written.
    failed: bool,
}

impl ChunkFile {
    fn tail(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the buffered bytes out. The caller holds `tail`.
    fn flush_locked(&self, tail: &mut Tail) -> Result<()> {
        if tail.failed || tail.buf.is_empty() {
            return Ok(());
        }
        let at = self.flushed.load(Ordering::Acquire);
        if let Err(e) = self.file.write_all_at(&tail.buf, at) {
            tail.failed = true;
            return Err(io_error("write head chunks", &self.path)(e));
        }
        self.flushed.store(at + tail.buf.len() as u64, Ordering::Release);
        tail.buf.clear();
        Ok(())
    }
}

impl Drop for ChunkFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove head chunk file");
        }
    }
}

/// Where a chunk was written.
#[derive(Debug, Clone)]
pub struct DiskChunk {
    file: Arc<ChunkFile>,
    offset: u64,
    len: u32,
}

impl DiskChunk {
    /// Reads the chunk's bytes, from the write buffer if they are not written out yet.
    pub fn read(&self) -> Result<Arc<[u8]>> {
        let mut buf = Vec::with_capacity(self.len as usize);
        self.read_into(&mut buf)?;
        Ok(buf.into())
    }

    /// Appends the chunk's bytes to `out` (see [`DiskChunk::read`]); on error `out` is unchanged.
    pub fn read_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let end = self.offset + u64::from(self.len);
        if end > self.file.flushed.load(Ordering::Acquire) {
            let tail = self.file.tail();
            // Checked again under the lock: a flush may have written the bytes out meanwhile.
            let flushed = self.file.flushed.load(Ordering::Acquire);
            if end > flushed {
                let start = usize::try_from(self.offset.saturating_sub(flushed)).unwrap_or(usize::MAX);
                return match tail.buf.get(start..start.saturating_add(self.len as usize)) {
                    Some(b) if self.offset >= flushed => {
                        out.extend_from_slice(b);
                        Ok(())
                    }
                    _ => Err(crate::error::Error::Corruption {
                        what: format!("head chunk file {}", self.file.path.display()),
                        reason: format!("chunk at {}+{} is neither written nor buffered", self.offset, self.len),
                    }),
                };
            }
        }
        let at = out.len();
        out.resize(at + self.len as usize, 0);
        let read = out.get_mut(at..).map_or(Ok(()), |dst| self.file.file.read_exact_at(dst, self.offset));
        if let Err(e) = read {
            out.truncate(at);
            return Err(io_error("read head chunk", &self.file.path)(e));
        }
        Ok(())
    }
}

/// The writer side: appends chunks to the current file.
#[derive(Debug)]
pub struct HeadChunks {
    dir: PathBuf,
    /// A new file is started past this size ([`MAX_FILE_BYTES`]; smaller in tests).
    max_file_bytes: u64,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    file: Option<Arc<ChunkFile>>,
    size: u64,
    next_index: u32,
    /// Set after a write failure: chunks stay in memory from then on.
    failed: bool,
}

impl HeadChunks {
    /// Empties (or creates) `<data_dir>/strata_head_chunks`.
    pub fn open(data_dir: &Path) -> Result<HeadChunks> {
        let dir = data_dir.join(DIR_NAME);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_error("remove", &dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        Ok(HeadChunks {
            dir,
            max_file_bytes: MAX_FILE_BYTES,
            current: Mutex::new(Current { file: None, size: 0, next_index: 1, failed: false }),
        })
    }

    /// Appends `bytes`; None if writing failed (the caller keeps the chunk in memory).
    pub fn write(&self, bytes: &[u8]) -> Option<DiskChunk> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if cur.failed {
            return None;
        }
        match self.write_locked(&mut cur, bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot write head chunks to disk; keeping them in memory");
                cur.failed = true;
                None
            }
        }
    }

    fn write_locked(&self, cur: &mut Current, bytes: &[u8]) -> Result<DiskChunk> {
        let len = u32::try_from(bytes.len()).map_err(|_| crate::error::Error::Corruption {
            what: "head chunk".into(),
            reason: format!("chunk of {} bytes", bytes.len()),
        })?;
        let file = match &cur.file {
            Some(f) if cur.size + u64::from(len) <= self.max_file_bytes => Arc::clone(f),
            _ => {
                if let Some(old) = &cur.file {
                    // The old file takes no more chunks: write out its buffer and free it (the
                    // file lives on as long as chunks refer to it).
                    let mut tail = old.tail();
                    old.flush_locked(&mut tail)?;
                    tail.buf = Vec::new();
                }
                let path = self.dir.join(format!("{:06}", cur.next_index));
                cur.next_index += 1;
                let file = File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_error("create head chunk file", &path))?;
                let f =
                    Arc::new(ChunkFile { file, path, flushed: AtomicU64::new(0), tail: Mutex::new(Tail::default()) });
                cur.file = Some(Arc::clone(&f));
                cur.size = 0;
                f
            }
        };
        let mut tail = file.tail();
        if tail.buf.len() + bytes.len() > WRITE_BUFFER_BYTES {
            file.flush_locked(&mut tail)?;
        }
        if tail.buf.capacity() == 0 {
            tail.buf.reserve_exact(WRITE_BUFFER_BYTES);
        }
        tail.buf.extend_from_slice(bytes);
        drop(tail);
        let c = DiskChunk { file, offset: cur.size, len };
        cur.size += u64::from(len);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_chunks_read_the_same_before_and_after_they_are_written_out() {
        let dir = tempfile::tempdir().unwrap();
        let hc = HeadChunks::open(dir.path()).unwrap();
        let chunk = |i: usize| -> Vec<u8> { (0..100 + i % 200).map(|j| (i * 31 + j) as u8).collect() };
        let mut written = Vec::new();
        let mut i = 0;
        // Enough chunks to fill the write buffer twice.
        let mut total = 0;
        while total < 2 * WRITE_BUFFER_BYTES + 1000 {
            let c = chunk(i);
            total += c.len();
            let d = hc.write(&c).unwrap();
            // Readable at once, from the buffer.
            assert_eq!(&*d.read().unwrap(), &c[..]);
            written.push(d);
            i += 1;
        }
        let file = Arc::clone(&written[0].file);
        let flushed = file.flushed.load(Ordering::Acquire);
        assert!(flushed > WRITE_BUFFER_BYTES as u64 && flushed <= 2 * WRITE_BUFFER_BYTES as u64, "{flushed}");
        assert!(!file.tail().buf.is_empty());
        assert_eq!(std::fs::metadata(&file.path).unwrap().len(), flushed, "only whole buffers are written");
        for (i, d) in written.iter().enumerate() {
            assert_eq!(&*d.read().unwrap(), &chunk(i)[..], "chunk {i}");
        }
        // Appended into one buffer, written-out and buffered chunks alike, after what it held.
        let mut all = vec![7u8];
        for d in &written {
            d.read_into(&mut all).unwrap();
        }
        let want: Vec<u8> = std::iter::once(7u8).chain((0..written.len()).flat_map(chunk)).collect();
        assert!(all == want);
    }

    #[test]
    fn a_full_file_is_written_out_and_its_buffer_freed_when_the_next_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut hc = HeadChunks::open(dir.path()).unwrap();
        hc.max_file_bytes = 10_000;
        let written: Vec<(DiskChunk, Vec<u8>)> = (0..100usize)
            .map(|i| {
                let c: Vec<u8> = (0..150 + i).map(|j| (i * 7 + j) as u8).collect();
                (hc.write(&c).unwrap(), c)
            })
            .collect();
        let files: Vec<_> = written.iter().map(|(d, _)| Arc::as_ptr(&d.file)).collect();
        let mut distinct = files.clone();
        distinct.dedup();
        assert!(distinct.len() > 1, "several files");
        for (d, c) in &written {
            assert_eq!(&*d.read().unwrap(), &c[..]);
            let last = Arc::ptr_eq(&d.file, &written[written.len() - 1].0.file);
            let tail = d.file.tail();
            assert_eq!(tail.buf.capacity() == 0, !last, "only the current file keeps a buffer");
            if !last {
                assert_eq!(std::fs::metadata(&d.file.path).unwrap().len(), d.file.flushed.load(Ordering::Acquire));
            }
        }
    }

    #[test]
    fn write_read_and_delete_when_unreferenced() {
        let dir = tempfile::tempdir().unwrap();
        let hc = HeadChunks::open(dir.path()).unwrap();
        let a = hc.write(b"hello").unwrap();
        let b = hc.write(&[7u8; 1000]).unwrap();
        assert_eq!(&*a.read().unwrap(), b"hello");
        assert_eq!(&*b.read().unwrap(), &[7u8; 1000][..]);
        let path = a.file.path.clone();
        drop((a, b));
        assert!(path.exists(), "the writer still holds the current file");
        drop(hc);
        assert!(!path.exists());
        // Reopening empties the directory.
        std::fs::write(dir.path().join(DIR_NAME).join("000009"), b"x").unwrap();
        let _hc = HeadChunks::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join(DIR_NAME)).unwrap().count(), 0);
    }
}
