//! A series' in-order chunks and where they are cut: [`SealedChunk`] (immutable, in memory or in the
//! head chunk file), [`OpenChunk`] (the one being appended to), and Prometheus's cut rules
//! ([`range_for_timestamp`], [`compute_chunk_end_time`]) with Strata's per-series stagger
//! ([`first_chunk_end`]).

use std::sync::Arc;

use super::chunk_file::{DiskChunk, HeadChunks};
use crate::chunkenc::XorChunk;
use crate::error::Result;

/// An immutable XOR chunk with its time range: in memory (shared with readers by `Arc`), or moved
/// to a head chunk file.
#[derive(Debug, Clone)]
pub struct SealedChunk {
    /// First timestamp.
    pub min_t: i64,
    /// Last timestamp.
    pub max_t: i64,
    /// Samples in the chunk (known without reading a chunk moved to disk).
    samples: u16,
    data: SealedData,
}

#[derive(Debug, Clone)]
enum SealedData {
    Memory(Arc<[u8]>),
    Disk(DiskChunk),
}

impl SealedChunk {
    /// A chunk kept in memory.
    pub fn in_memory(min_t: i64, max_t: i64, bytes: Arc<[u8]>) -> SealedChunk {
        SealedChunk { min_t, max_t, samples: crate::chunkenc::num_samples(&bytes), data: SealedData::Memory(bytes) }
    }

    /// Samples in the chunk.
    pub fn num_samples(&self) -> u16 {
        self.samples
    }

    /// A chunk written to `chunks` if given (and the write succeeds), else kept in memory.
    pub(crate) fn seal(min_t: i64, max_t: i64, bytes: &[u8], chunks: Option<&HeadChunks>) -> SealedChunk {
        match chunks.and_then(|c| c.write(bytes)) {
            Some(disk) => {
                SealedChunk { min_t, max_t, samples: crate::chunkenc::num_samples(bytes), data: SealedData::Disk(disk) }
            }
            None => SealedChunk::in_memory(min_t, max_t, bytes.into()),
        }
    }

    /// The Prometheus XOR chunk bytes (read from the chunk file if the chunk was moved there).
    pub fn bytes(&self) -> Result<Arc<[u8]>> {
        match &self.data {
            SealedData::Memory(b) => Ok(Arc::clone(b)),
            SealedData::Disk(d) => d.read(),
        }
    }

    /// Appends the chunk's bytes to `out` without allocating a buffer of their own (see
    /// [`SealedChunk::bytes`]); on error `out` is unchanged.
    pub fn read_into(&self, out: &mut Vec<u8>) -> Result<()> {
        match &self.data {
            SealedData::Memory(b) => {
                out.extend_from_slice(b);
                Ok(())
            }
            SealedData::Disk(d) => d.read_into(out),
        }
    }
}

/// The open in-order chunk.
pub(crate) struct OpenChunk {
    pub(super) chunk: XorChunk,
    pub(super) max_t: i64,
}

impl OpenChunk {
    /// Timestamp of the first sample (kept by the chunk itself rather than beside it: 8 bytes per
    /// series, which keep `MemSeries` in a smaller allocator size class).
    pub fn min_t(&self) -> i64 {
        self.chunk.first_time().unwrap_or(self.max_t)
    }
}

/// Pushes growing by a quarter instead of doubling: a series holds a handful of sealed chunks for
/// hours, and `Vec::push` would reserve room for four on the first one (~150 bytes per series).
pub(crate) fn push_exact<T>(v: &mut Vec<T>, item: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 4).max(1));
    }
    v.push(item);
}

/// Prometheus's `rangeForTimestamp`: the end of the chunk range `t` falls in.
pub fn range_for_timestamp(t: i64, width: i64) -> i64 {
    t.div_euclid(width).saturating_mul(width).saturating_add(width)
}

/// Where a chunk started at `t` ends at the latest: the end of `t`'s chunk range (Prometheus's
/// `rangeForTimestamp`), or, for a chunk started in the first part of the range, a point between a
/// quarter and three quarters into it chosen by `seed` (0: no such point).
///
/// Prometheus cuts every series' chunks at the same instants (range boundaries, and points spread
/// evenly between them), so every open chunk is full at once just before a boundary: the head's
/// memory peaks there at a full chunk per series, and every chunk is sealed in the same burst. A
/// second cut at a per-series offset makes the open chunks' fill uniform over series, so the peak
/// is about half as high, for one more (shorter) chunk per range. Chunks still never cross a range
/// boundary, so compaction still takes whole chunks into each block.
pub fn first_chunk_end(t: i64, width: i64, seed: u32) -> i64 {
    let end = range_for_timestamp(t, width);
    if seed == 0 || width < 4 {
        return end;
    }
    let start = end.saturating_sub(width);
    let cut = start.saturating_add(width / 4).saturating_add(i64::from(seed) % (width / 2).max(1));
    if t < cut {
        cut
    } else {
        end
    }
}

/// Prometheus's `computeChunkEndTime`: spread the rest of the range evenly over ~120-sample chunks.
pub fn compute_chunk_end_time(start: i64, cur: i64, max: i64) -> i64 {
    let denom = (cur.saturating_sub(start).saturating_add(1)).saturating_mul(4);
    if denom <= 0 {
        return max;
    }
    let n = max.saturating_sub(start) / denom;
    if n <= 1 {
        return max;
    }
    start + (max - start) / n
}

#[cfg(test)]
mod tests {
    use super::*;

    const H2: i64 = 2 * 3_600_000;

    #[test]
    fn first_chunk_end_stays_within_the_range() {
        assert_eq!(first_chunk_end(H2, H2, 0), 2 * H2);
        for seed in [1, 7, 12_345, u32::MAX] {
            let end = first_chunk_end(H2, H2, seed);
            assert!((H2 + H2 / 4..H2 + 3 * H2 / 4).contains(&end), "{seed}: {end}");
            // A chunk started after the offset runs to the range's end.
            assert_eq!(first_chunk_end(end, H2, seed), 2 * H2);
        }
        // Degenerate widths fall back to the range end without panicking.
        assert_eq!(first_chunk_end(5, 1, 9), range_for_timestamp(5, 1));
        assert_eq!(first_chunk_end(i64::MAX - 1, H2, 9), range_for_timestamp(i64::MAX - 1, H2));
    }

    #[test]
    fn chunk_end_time() {
        assert_eq!(range_for_timestamp(0, H2), H2);
        assert_eq!(range_for_timestamp(-1, H2), 0);
        assert_eq!(compute_chunk_end_time(0, 29 * 15_000, H2), H2 / 4);
    }
}
