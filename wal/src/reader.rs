//! Reading records back: [`Reader`] iterates every record of every segment in order, and the
//! crate-internal [`SegmentScanner`] does the work for one segment (shared with repair).
//!
//! Reads stream one page at a time; no length read from disk is trusted and no byte sequence
//! can make it panic. A damaged fragment ends the iteration with [`Error::Corruption`] carrying
//! the segment and the offset of the record that could not be read.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::{decode_fragment, Fragment, FragmentType, PAGE_SIZE_BYTES};
use crate::segment::{self, SegmentIndex};

/// Streams the records of one segment file.
pub(crate) struct SegmentScanner {
    index: SegmentIndex,
    path: PathBuf,
    file: File,
    /// Current page; `page_len` bytes are valid (fewer than a page only at end of file).
    page: Vec<u8>,
    page_len: usize,
    /// Position inside the current page of the next fragment.
    pos: usize,
    /// File offset of the first byte of the current page.
    page_offset: u64,
    /// End of file reached (the current page is the last one).
    eof: bool,
}

impl SegmentScanner {
    /// Opens segment `index` of `dir`.
    pub(crate) fn open(dir: &Path, index: SegmentIndex) -> Result<SegmentScanner> {
        let file = segment::open_read(dir, index)?;
        Ok(SegmentScanner {
            index,
            path: segment::segment_path(dir, index),
            file,
            page: vec![0; PAGE_SIZE_BYTES],
            page_len: 0,
            pos: 0,
            page_offset: 0,
            eof: false,
        })
    }

    /// File offset of the next fragment to read.
    pub(crate) fn offset(&self) -> u64 {
        self.page_offset + self.pos as u64
    }

    /// Loads the next page. Returns false at end of file.
    fn next_page(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.page_offset += self.page_len as u64;
        self.pos = 0;
        self.page_len = 0;
        while self.page_len < PAGE_SIZE_BYTES {
            let Some(dst) = self.page.get_mut(self.page_len..) else {
                break;
            };
            match self.file.read(dst) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.page_len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        Ok(self.page_len > 0)
    }

    fn corruption(&self, offset: u64, reason: String) -> Error {
        Error::Corruption { path: self.path.clone(), segment: self.index.0, offset, reason }
    }

    /// Reads the next record into `rec` (cleared first). Returns `Ok(true)` when a record was
    /// read, `Ok(false)` at a clean end of the segment, and [`Error::Corruption`] (with the
    /// offset where the unreadable record starts) for anything else.
    pub(crate) fn next_record(&mut self, rec: &mut Vec<u8>) -> Result<bool> {
        rec.clear();
        // Offset of the record being assembled, once its First fragment was seen.
        let mut start: Option<u64> = None;
        loop {
            if self.pos >= self.page_len && !self.next_page()? {
                return match start {
                    None => Ok(false),
                    Some(s) => Err(self.corruption(s, "segment ends inside a record".into())),
                };
            }
            let frag_offset = self.offset();
            let rest = self.page.get(self.pos..self.page_len).unwrap_or(&[]);
            let (frag, used) = match decode_fragment(rest) {
                Ok(ok) => ok,
                Err(e) => {
                    let at = start.unwrap_or(frag_offset);
                    return Err(self.corruption(at, format!("{e} (fragment at offset {frag_offset})")));
                }
            };
            let kind = match frag {
                // Padding may also sit between the fragments of one record.
                Fragment::Padding => {
                    self.pos += used;
                    continue;
                }
                Fragment::Data { kind, payload } => {
                    rec.extend_from_slice(payload);
                    kind
                }
            };
            let unexpected = match (kind, start.is_some()) {
                (FragmentType::Full | FragmentType::First, false) => None,
                (FragmentType::Middle | FragmentType::Last, true) => None,
                (FragmentType::Full, true) => Some("unexpected full fragment inside a record"),
                (FragmentType::First, true) => Some("unexpected first fragment inside a record"),
                (FragmentType::Middle, false) => Some("unexpected middle fragment"),
                (FragmentType::Last, false) => Some("unexpected last fragment"),
                (FragmentType::Padding, _) => Some("padding decoded as data"),
            };
            if let Some(reason) = unexpected {
                let at = start.unwrap_or(frag_offset);
                return Err(self.corruption(at, format!("{reason} (fragment at offset {frag_offset})")));
            }
            self.pos += used;
            match kind {
                FragmentType::Full | FragmentType::Last => return Ok(true),
                _ => {
                    start.get_or_insert(frag_offset);
                }
            }
        }
    }
}

/// Reads every record of every segment in a WAL directory, in order, segment by segment.
///
/// Use it for replay after [`Wal::open`](crate::Wal::open) has repaired the tail. A damaged
/// record yields one `Err` ([`Error::Corruption`] with segment and offset, or [`Error::Io`]) and
/// then the reader is finished: it never skips over damage and never panics.
pub struct Reader {
    dir: PathBuf,
    segments: Vec<SegmentIndex>,
    /// Index into `segments` of the segment being read (or to be read next).
    current: usize,
    scanner: Option<SegmentScanner>,
    record: Vec<u8>,
    done: bool,
}

impl Reader {
    /// Reads all segments in `dir`.
    pub fn open(dir: &Path) -> Result<Reader> {
        Reader::open_range(dir, SegmentIndex(0))
    }

    /// Reads the segments in `dir` whose index is `>= from`.
    pub fn open_range(dir: &Path, from: SegmentIndex) -> Result<Reader> {
        let segments = segment::list(dir)?.into_iter().filter(|s| *s >= from).collect();
        Ok(Reader { dir: dir.to_path_buf(), segments, current: 0, scanner: None, record: Vec::new(), done: false })
    }

    /// The next record, or `None` at the end (or after an error was returned). The slice
    /// borrows the reader's buffer and is valid until the next call.
    pub fn next_record(&mut self) -> Option<Result<&[u8]>> {
        self.next_record_in_segment().map(|r| r.map(|(_, rec)| rec))
    }

    /// Like [`Reader::next_record`], with the index of the segment the record was read from.
    pub fn next_record_in_segment(&mut self) -> Option<Result<(SegmentIndex, &[u8])>> {
        loop {
            if self.done {
                return None;
            }
            let scanner = match &mut self.scanner {
                Some(s) => s,
                None => {
                    let Some(&index) = self.segments.get(self.current) else {
                        self.done = true;
                        return None;
                    };
                    match SegmentScanner::open(&self.dir, index) {
                        Ok(s) => self.scanner.insert(s),
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    }
                }
            };
            match scanner.next_record(&mut self.record) {
                Ok(true) => return Some(Ok((scanner.index, &self.record))),
                Ok(false) => {
                    self.scanner = None;
                    self.current += 1;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Segment and offset of the next record to be read (after the end: the last segment and
    /// its length, or `(0, 0)` for an empty directory).
    pub fn position(&self) -> (SegmentIndex, u64) {
        if let Some(s) = &self.scanner {
            return (s.index, s.offset());
        }
        match self.segments.get(self.current) {
            Some(&index) => (index, 0),
            None => match self.segments.last() {
                Some(&last) => (last, segment::size(&self.dir, last).unwrap_or(0)),
                None => (SegmentIndex(0), 0),
            },
        }
    }

    /// Number of segments this reader covers.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// 1-based number of the segment being read, for "segment i/n" progress logs.
    pub fn current_segment_number(&self) -> usize {
        (self.current + 1).min(self.segments.len())
    }
}
