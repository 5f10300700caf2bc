//! Series garbage collection: after a head compaction has dropped a block range from memory, the
//! series left without any sample are removed from the series maps and the postings (Prometheus's
//! `Head.gc`), so that series which stopped receiving samples (pods that went away, renamed
//! targets) do not keep their memory and their place in every checkpoint forever.
//!
//! A series an appender still holds is left alone: its samples may be on their way to the WAL (see
//! [`super::series::StripeSeries::remove_if_unused`]); the next collection takes it if it stays
//! empty. A removed series' reference is never given to another series while this process runs; after
//! a restart it may be, once no WAL record still names it (see `replay`).

use std::sync::atomic::Ordering;

use super::series::SeriesRef;
use super::Head;
use crate::labels::Labels;

impl Head {
    /// Removes every series that holds no samples and that no appender holds; returns how many.
    pub fn gc_series(&self) -> u64 {
        let mut empty: Vec<(SeriesRef, Labels)> = Vec::new();
        self.series_maps().for_each(|s| {
            if s.lock().time_range().is_none() {
                empty.push((s.sref, s.labels.clone()));
            }
        });
        let mut removed = 0u64;
        for (r, labels) in empty {
            let Some(s) = self.series_maps().remove_if_unused(labels.stable_hash(), r, &labels) else { continue };
            // References are allocated below 2^32 (see `Head::alloc_ref`).
            self.postings().remove(s.sref.0 as u32, &s.labels);
            removed += 1;
        }
        if removed > 0 {
            self.num_series.fetch_sub(removed, Ordering::Relaxed);
            self.stats.series_removed.fetch_add(removed, Ordering::Relaxed);
            tracing::info!(removed, remaining = self.num_series(), "removed series without samples from the head");
        }
        removed
    }
}
