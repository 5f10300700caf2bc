//! Deleting samples from the head (the head's side of `delete_series`): the deleted intervals are
//! logged in the WAL (a tombstones record) and kept on each series ([`SeriesData::deleted`]); reads
//! and head compaction leave those samples out, replay and checkpoints carry the intervals, and
//! compaction forgets them once the data they covered has gone into blocks. The chunks themselves
//! are not touched.
//!
//! As in Prometheus's `Head.Delete`, each interval is clamped to the series' samples at the time
//! of the deletion, so a sample appended later past the series' end is kept, while a late sample
//! inside the interval is hidden like the others.
//!
//! [`SeriesData::deleted`]: super::series::SeriesData::deleted

use std::sync::Arc;

use super::series::{MemSeries, SeriesRef};
use super::Head;
use crate::error::{Error, Result};
use crate::intervals::Interval;
use crate::labels::Matcher;
use crate::record;

impl Head {
    /// Deletes the samples in `[mint, maxt]` (ms, inclusive) of the series matching `matchers`;
    /// returns how many series had samples there. The deletion is in the WAL (fsynced as the WAL's
    /// sync policy asks of a commit) before it shows in memory; a WAL failure deletes nothing.
    pub fn delete(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<u64> {
        if mint > maxt {
            return Ok(0);
        }
        let refs = self.postings().select(matchers);
        let maps = self.series_maps();
        let mut stones: Vec<(Arc<MemSeries>, Interval)> = Vec::new();
        for r in refs.iter() {
            let Some(s) = maps.get_by_ref(SeriesRef(u64::from(r))) else { continue };
            let Some((lo, hi)) = s.lock().time_range() else { continue };
            if lo > maxt || hi < mint {
                continue;
            }
            stones.push((s, Interval::new(mint.max(lo), maxt.min(hi))));
        }
        if stones.is_empty() {
            return Ok(0);
        }
        let Some(wal) = self.wal() else {
            for (s, iv) in &stones {
                s.lock().add_deleted(*iv);
            }
            return Ok(stones.len() as u64);
        };
        // Series not yet named in the segments since the last checkpoint are named first, so a
        // replay without that checkpoint still knows them.
        let mut series_rec = Vec::new();
        let mut stones_rec = Vec::new();
        let mut named = Vec::new();
        for (s, iv) in &stones {
            if !s.is_logged() {
                record::encode_series(&mut series_rec, s.sref.0, &s.labels);
                named.push(s);
            }
            record::encode_tombstone(&mut stones_rec, s.sref.0, *iv);
        }
        let apply = || {
            for s in &named {
                s.set_logged();
            }
            for (s, iv) in &stones {
                s.lock().add_deleted(*iv);
            }
        };
        let recs: Vec<&[u8]> =
            [series_rec.as_slice(), stones_rec.as_slice()].into_iter().filter(|r| !r.is_empty()).collect();
        wal.log(&recs, apply).map_err(Error::from)?;
        tracing::info!(series = stones.len(), mint, maxt, "deleted samples from the head");
        Ok(stones.len() as u64)
    }
}
