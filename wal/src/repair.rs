//! Tail repair at open: finds the first unreadable record in the WAL and cuts everything from
//! there on (the rest of that segment and all later segments), like Prometheus's `wlog.Repair`.
//!
//! It only ever removes bytes after the last complete valid record; it never rewrites a valid
//! record. The loss is reported in a [`RepairReport`] and logged with fields.

use std::path::Path;

use tracing::{error, warn};

use crate::error::{Error, Result};
use crate::reader::SegmentScanner;
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
}

impl RepairReport {
    /// Whether anything was cut.
    pub fn is_clean(&self) -> bool {
        self.segment.is_none()
    }
}

/// Scans every segment of `dir`; at the first corruption, truncates that segment to the start
/// of the unreadable record and deletes all later segments.
pub(crate) fn repair(dir: &Path) -> Result<RepairReport> {
    let segments = segment::list(dir)?;
    let mut record = Vec::new();
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
        return cut(dir, index, offset, later, &reason);
    }
    Ok(RepairReport::default())
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
    let report = RepairReport { segment: Some(index), offset, bytes_dropped, segments_removed: later.len() };
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
