//! Chunk segment files `chunks/000001`, `000002`, …: Prometheus's block chunk format.
//!
//! ```text
//! segment := magic u32 = 0x85BD40DD | version u8 = 1 | 3 zero bytes | chunk*
//! chunk   := len uvarint (bytes of data) | encoding u8 | data | crc32c(encoding + data) u32
//! ```
//! A chunk reference is `(segment position << 32) | offset of the chunk's len`, where the position is
//! 0-based in the sorted list of segment files (`000001` → 0).
#![warn(clippy::indexing_slicing)]

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::encoding::{crc32c, put_uvarint, uvarint, Dec};
use super::error::{BlockError, Corrupt, Result};
use super::mmap::{MappedFile, MappedSlice};

/// Magic number at the start of each segment.
pub const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
/// Segment format version.
pub const CHUNKS_FORMAT_V1: u8 = 1;
/// Bytes of the segment header (magic, version, padding).
pub const SEGMENT_HEADER_SIZE: usize = 8;
/// Prometheus's default maximum segment size (512 MiB).
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;

/// Packs a segment position and offset into a chunk reference.
pub fn chunk_ref(segment: u32, offset: u32) -> u64 {
    (u64::from(segment) << 32) | u64::from(offset)
}

/// Name of the `n`-th (1-based) segment file.
pub fn segment_name(n: usize) -> String {
    format!("{n:06}")
}

/// Writes chunks into consecutive segment files of one directory.
pub struct ChunkWriter {
    dir: PathBuf,
    max_segment_size: u64,
    /// Finished segments (already flushed, to be fsynced by `finish`).
    done: Vec<(PathBuf, File)>,
    cur: Option<(PathBuf, BufWriter<File>)>,
    /// Bytes in the current segment.
    pos: u64,
    buf: Vec<u8>,
}

impl ChunkWriter {
    /// A writer into `dir` (created if missing) cutting segments at `max_segment_size` bytes (a chunk
    /// larger than that gets a segment of its own).
    pub fn new(dir: &Path, max_segment_size: u64) -> Result<ChunkWriter> {
        fs::create_dir_all(dir).map_err(BlockError::io("create dir", dir))?;
        Ok(ChunkWriter {
            dir: dir.to_path_buf(),
            max_segment_size,
            done: Vec::new(),
            cur: None,
            pos: 0,
            buf: Vec::new(),
        })
    }

    fn cut(&mut self) -> Result<()> {
        if let Some((path, w)) = self.cur.take() {
            let f = w.into_inner().map_err(|e| BlockError::Io {
                op: "write",
                path: path.clone(),
                source: e.into_error(),
            })?;
            self.done.push((path, f));
        }
        let path = self.dir.join(segment_name(self.done.len() + 1));
        let f = File::create(&path).map_err(BlockError::io("create", &path))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut header = [0u8; SEGMENT_HEADER_SIZE];
        header[..4].copy_from_slice(&MAGIC_CHUNKS.to_be_bytes());
        header[4] = CHUNKS_FORMAT_V1;
        w.write_all(&header).map_err(BlockError::io("write", &path))?;
        self.cur = Some((path, w));
        self.pos = SEGMENT_HEADER_SIZE as u64;
        Ok(())
    }

    /// Appends one chunk and returns its reference.
    pub fn write(&mut self, encoding: u8, data: &[u8]) -> Result<u64> {
        self.buf.clear();
        put_uvarint(&mut self.buf, data.len() as u64);
        self.buf.push(encoding);
        let size = (self.buf.len() + data.len() + 4) as u64;
        if self.cur.is_none() || (self.pos > SEGMENT_HEADER_SIZE as u64 && self.pos + size > self.max_segment_size) {
            self.cut()?;
        }
        let offset = u32::try_from(self.pos).map_err(|_| BlockError::invalid("chunk segment exceeds 4 GiB"))?;
        let segment = self.done.len() as u32;
        let crc = crc32c::crc32c_append(crc32c(&[encoding]), data);
        let Some((path, w)) = self.cur.as_mut() else {
            return Err(BlockError::invalid("no open chunk segment"));
        };
        w.write_all(&self.buf).map_err(BlockError::io("write", &*path))?;
        w.write_all(data).map_err(BlockError::io("write", &*path))?;
        w.write_all(&crc.to_be_bytes()).map_err(BlockError::io("write", &*path))?;
        self.pos += size;
        Ok(chunk_ref(segment, offset))
    }

    /// Flushes and fsyncs every segment, then the directory. Returns the segment paths.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        if let Some((path, w)) = self.cur.take() {
            let f = w.into_inner().map_err(|e| BlockError::Io {
                op: "write",
                path: path.clone(),
                source: e.into_error(),
            })?;
            self.done.push((path, f));
        }
        let mut paths = Vec::with_capacity(self.done.len());
        for (path, f) in self.done {
            f.sync_all().map_err(BlockError::io("fsync", &path))?;
            paths.push(path);
        }
        sync_dir(&self.dir)?;
        Ok(paths)
    }
}

/// Fsyncs a directory so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(BlockError::io("fsync dir", dir))
}

/// Reads chunks from the mapped segment files of a block.
#[derive(Debug, Clone)]
pub struct ChunkReader {
    segments: Vec<Arc<MappedFile>>,
}

impl ChunkReader {
    /// Maps every segment file of `dir` (names of digits only, sorted) and checks their headers.
    pub fn open(dir: &Path) -> Result<ChunkReader> {
        let mut names = Vec::new();
        for e in fs::read_dir(dir).map_err(BlockError::io("read dir", dir))? {
            let e = e.map_err(BlockError::io("read dir", dir))?;
            let name = e.file_name();
            if let Some(n) = name.to_str().filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
                if let Ok(seq) = n.parse::<u64>() {
                    names.push((seq, e.path()));
                }
            }
        }
        names.sort();
        let mut segments = Vec::with_capacity(names.len());
        for (_, path) in names {
            let m = MappedFile::open(&path)?;
            let mut d = Dec::new(m.bytes(), 0);
            let magic =
                d.be32().map_err(|_| BlockError::corrupt(&path, Corrupt::at(0, "segment shorter than its header")))?;
            if magic != MAGIC_CHUNKS {
                return Err(BlockError::corrupt(&path, Corrupt::at(0, "invalid chunk segment magic")));
            }
            let version = d.u8().map_err(|c| BlockError::corrupt(&path, c))?;
            if version != CHUNKS_FORMAT_V1 {
                return Err(BlockError::corrupt(&path, Corrupt::at(4, "unsupported chunk segment version")));
            }
            if m.len() < SEGMENT_HEADER_SIZE {
                return Err(BlockError::corrupt(&path, Corrupt::at(5, "segment shorter than its header")));
            }
            segments.push(m);
        }
        Ok(ChunkReader { segments })
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The chunk at `chunk_ref`: its encoding byte and data (CRC verified).
    pub fn chunk(&self, chunk_ref: u64) -> Result<(u8, &[u8])> {
        let (m, enc, range) = self.locate(chunk_ref)?;
        let data = m.bytes().get(range).ok_or_else(|| outside(m, chunk_ref))?;
        Ok((enc, data))
    }

    /// [`ChunkReader::chunk`] with the data as a slice of the mapped segment that stays valid after the
    /// reader is gone: what a query holds of a block chunk is a reference count, not a copy.
    pub fn chunk_slice(&self, chunk_ref: u64) -> Result<(u8, MappedSlice)> {
        let (m, enc, range) = self.locate(chunk_ref)?;
        let data = MappedSlice::new(m, range).ok_or_else(|| outside(m, chunk_ref))?;
        Ok((enc, data))
    }

    /// The segment holding `chunk_ref`, the chunk's encoding and the byte range of its data (CRC verified).
    fn locate(&self, chunk_ref: u64) -> Result<(&Arc<MappedFile>, u8, std::ops::Range<usize>)> {
        let seg = (chunk_ref >> 32) as usize;
        let off = (chunk_ref & 0xFFFF_FFFF) as usize;
        let Some(m) = self.segments.get(seg) else {
            return Err(BlockError::Corruption {
                path: self.segments.first().map(|m| m.path().to_path_buf()).unwrap_or_default(),
                offset: chunk_ref,
                reason: "chunk reference names a missing segment".into(),
            });
        };
        let (enc, range) = read_chunk(m.bytes(), off).map_err(|c| BlockError::corrupt(m.path(), c))?;
        Ok((m, enc, range))
    }
}

fn outside(m: &MappedFile, chunk_ref: u64) -> BlockError {
    BlockError::Corruption {
        path: m.path().to_path_buf(),
        offset: chunk_ref,
        reason: "chunk outside its segment".into(),
    }
}

/// The encoding and data range of the chunk at `off` of segment bytes `b`, its CRC verified.
fn read_chunk(b: &[u8], off: usize) -> std::result::Result<(u8, std::ops::Range<usize>), Corrupt> {
    if off < SEGMENT_HEADER_SIZE {
        return Err(Corrupt::at(off, "chunk offset inside the segment header"));
    }
    let rest = b.get(off..).ok_or(Corrupt::at(off, "chunk offset beyond end of segment"))?;
    let (len, n) = uvarint(rest).ok_or(Corrupt::at(off, "malformed chunk length"))?;
    let len = usize::try_from(len).map_err(|_| Corrupt::at(off, "chunk length overflows"))?;
    let mut d = Dec::new(rest, off);
    d.skip(n)?;
    let enc_and_data = d.bytes(len.checked_add(1).ok_or(Corrupt::at(off, "chunk length overflows"))?)?;
    let crc = d.be32()?;
    if crc32c(enc_and_data) != crc {
        return Err(Corrupt::at(off, "chunk checksum mismatch"));
    }
    let enc = *enc_and_data.first().ok_or(Corrupt::at(off, "empty chunk"))?;
    let start = off + n + 1;
    Ok((enc, start..start + len))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_cut_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ChunkWriter::new(dir.path(), 64).unwrap();
        let mut refs = Vec::new();
        for i in 0..20u8 {
            let data = vec![i; 10 + i as usize];
            refs.push((w.write(1, &data).unwrap(), data));
        }
        let files = w.finish().unwrap();
        assert!(files.len() > 5);
        assert_eq!(refs[0].0, chunk_ref(0, 8));
        let bytes = fs::read(&files[0]).unwrap();
        assert_eq!(&bytes[..8], &[0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0]);
        // First chunk: len 10, encoding 1, ten zero bytes, crc of [1, 0 × 10].
        assert_eq!(bytes[8], 10);
        assert_eq!(bytes[9], 1);
        let mut crc_in = vec![1u8];
        crc_in.extend_from_slice(&[0; 10]);
        assert_eq!(&bytes[20..24], &crc32c(&crc_in).to_be_bytes());
        let r = ChunkReader::open(dir.path()).unwrap();
        assert_eq!(r.segment_count(), files.len());
        for (rf, data) in &refs {
            assert_eq!(r.chunk(*rf).unwrap(), (1, &data[..]));
        }
        assert!(r.chunk(chunk_ref(999, 8)).is_err());
        assert!(r.chunk(chunk_ref(0, 3)).is_err());
        assert!(r.chunk(chunk_ref(0, 9)).is_err());
        assert!(r.chunk(chunk_ref(0, 1 << 31)).is_err());
    }

    #[test]
    fn bad_headers_are_rejected() {
        for (bytes, ok) in [
            (vec![0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0], true),
            (vec![0x85, 0xBD, 0x40, 0xDD, 2, 0, 0, 0], false),
            (vec![0x85, 0xBD, 0x40, 0xDE, 1, 0, 0, 0], false),
            (vec![0x85, 0xBD, 0x40, 0xDD, 1, 0], false),
            (vec![], false),
        ] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join("000001"), &bytes).unwrap();
            assert_eq!(ChunkReader::open(dir.path()).is_ok(), ok, "{bytes:?}");
        }
    }
}
