//! Tail repair at open: finds unreadable records in the WAL and cuts them.
//!
//! - A torn tail: nothing readable follows the damage up to the end of its segment (no page after
//!   it starts with a valid record). This is what a crash during a write, or a write that failed
//!   (full disk, I/O error) before the writer moved on to a new segment, leaves behind. Only the
//!   tail of that segment is cut; later segments are kept and scanned in turn.
//! - Damage with valid records after it in the same segment: like Prometheus's `wlog.Repair`,
//!   that segment is cut at the damage and every later segment deleted, because records after the
//!   damage may refer to what was lost.
//!
//! It only ever removes bytes after the last complete valid record; it never rewrites a valid
//! record. The loss is reported in a [`RepairReport`] and logged with fields.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use tracing::{error, warn};

use crate::error::{Error, Result};
use crate::reader::SegmentScanner;
use crate::record::{decode_fragment, Fragment, FragmentType, PAGE_SIZE_BYTES};
use crate::segment::{self, SegmentIndex};

/// What [`Wal::open`](crate::Wal::open) cut off while repairing. All zero / `None` when the WAL
/// was intact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The segment that was truncated, if any.
    pub segment: Option<SegmentIndex>,
    /// The length that segment was truncated to: the start of the first unreadable record, i.e.
    /// the end of the last valid record (plus any valid zero padding after it).
    pub offset: u64,
    /// Total bytes removed: the cut tail of `segment` plus the sizes of removed segments.
    pub bytes_dropped: u64,
    /// Number of whole segments deleted because they came after the damage.
    pub segments_removed: usize,
    /// Torn tails cut from segments that were followed by newer segments (kept), as
    /// `(segment, offset cut at)`.
    pub torn_tails: Vec<(SegmentIndex, u64)>,
}

impl RepairReport {
    /// Whether anything was cut.
    pub fn is_clean(&self) -> bool {
        self.segment.is_none() && self.torn_tails.is_empty()
    }
}

/// Scans every segment of `dir`; at the first corruption, truncates that segment to the start
/// of the unreadable record and deletes all later segments.
pub(crate) fn repair(dir: &Path) -> Result<RepairReport> {
    let segments = segment::list(dir)?;
    let mut record = Vec::new();
    let mut torn_tails = Vec::new();
    let mut torn_bytes = 0;
    for (i, &index) in segments.iter().enumerate() {
        let mut scanner = SegmentScanner::open(dir, index)?;
        let (offset, reason) = loop {
            match scanner.next_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break (None, String::new()),
                Err(Error::Corruption { offset, reason, .. }) => break (Some(offset), reason),
                Err(e) => return Err(e),
            }
        };
        drop(scanner);
        let Some(offset) = offset else { continue };
        let later = segments.get(i + 1..).unwrap_or(&[]);
        if !later.is_empty() && !readable_after(dir, index, offset)? {
            let size = segment::size(dir, index)?;
            segment::truncate(dir, index, offset)?;
            warn!(
                path = %segment::segment_path(dir, index).display(),
                offset,
                bytes_dropped = size.saturating_sub(offset),
                reason,
                "wal torn tail before newer segments (an interrupted or failed write): cut it, kept the later segments"
            );
            torn_bytes += size.saturating_sub(offset);
            torn_tails.push((index, offset));
            continue;
        }
        let mut report = cut(dir, index, offset, later, &reason)?;
        report.bytes_dropped += torn_bytes;
        report.torn_tails = torn_tails;
        return Ok(report);
    }
    if !torn_tails.is_empty() {
        segment::sync_dir(dir)?;
    }
    Ok(RepairReport { bytes_dropped: torn_bytes, torn_tails, ..RepairReport::default() })
}

/// Whether any page of segment `index` after the one holding `offset` starts with a valid record
/// fragment: then the damage at `offset` is not a torn tail.
fn readable_after(dir: &Path, index: SegmentIndex, offset: u64) -> Result<bool> {
    let path = segment::segment_path(dir, index);
    let io = |e| Error::io(&path, e);
    let mut file = File::open(&path).map_err(io)?;
    let page = PAGE_SIZE_BYTES as u64;
    let mut at = (offset / page + 1) * page;
    let mut buf = vec![0; PAGE_SIZE_BYTES];
    loop {
        file.seek(SeekFrom::Start(at)).map_err(io)?;
        let mut len = 0;
        while len < buf.len() {
            let Some(dst) = buf.get_mut(len..) else { break };
            match file.read(dst) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        if len == 0 {
            return Ok(false);
        }
        let starts_record = matches!(
            decode_fragment(buf.get(..len).unwrap_or(&[])),
            Ok((Fragment::Data { kind: FragmentType::Full | FragmentType::First, .. }, _))
        );
        if starts_record {
            return Ok(true);
        }
        at += page;
    }
}

fn cut(dir: &Path, index: SegmentIndex, offset: u64, later: &[SegmentIndex], reason: &str) -> Result<RepairReport> {
    let size = segment::size(dir, index)?;
    let mut bytes_dropped = size.saturating_sub(offset);
    // Delete from the newest backwards, so a crash midway still leaves a contiguous prefix.
    for &l in later.iter().rev() {
        bytes_dropped += segment::size(dir, l)?;
        segment::remove(dir, l)?;
    }
    segment::truncate(dir, index, offset)?;
    segment::sync_dir(dir)?;
    let report = RepairReport {
        segment: Some(index),
        offset,
        bytes_dropped,
        segments_removed: later.len(),
        ..Default::default()
    };
    if later.is_empty() {
        warn!(
            segment = index.0,
            offset, bytes_dropped, reason, "wal tail repaired: truncated torn or corrupt tail of the last segment"
        );
    } else {
        error!(
            segment = index.0,
            offset,
            bytes_dropped,
            segments_removed = later.len(),
            reason,
            "wal corruption before the last segment: DATA LOSS, truncated and removed all later segments"
        );
    }
    Ok(report)
}
