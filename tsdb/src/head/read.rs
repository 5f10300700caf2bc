//! The head's read side: a snapshot of one series' chunks over a time range, taken under the series'
//! lock and read after it is released. Sealed chunks are shared (`Arc`) or read from the head chunk
//! file; the open chunk and the open out-of-order buffer are copied, or only the part of them the
//! range needs (an instant query reads the last minutes of a chunk of up to two hours). Native
//! histograms come as histogram chunks: in-order ones ([`ChunkData::Histogram`],
//! [`ChunkData::FloatHistogram`]) after the float chunks in `chunks`, the late ones as one
//! [`ChunkData::RawHistograms`] in `ooo_chunks`.

use super::in_order::SealedChunk;
use super::ooo::OooChunk;
use super::series::{MemSeries, SeriesData};
use crate::chunk::{ChunkData, ChunkMeta};
use crate::chunkenc::XorIter;
use crate::error::Result;
use crate::labels::Labels;
use crate::querier::{count_read_error, Series};

impl MemSeries {
    /// A snapshot of the series' chunks overlapping `[mint, maxt]`; `None` if none does. Fails when
    /// a sealed chunk cannot be read from the head chunk file.
    pub fn snapshot(&self, mint: i64, maxt: i64) -> Result<Option<Series>> {
        snapshot(&self.labels, &self.lock(), mint, maxt)
    }
}

/// The snapshot of series `labels` with state `d` over `[mint, maxt]`.
fn snapshot(labels: &Labels, d: &SeriesData, mint: i64, maxt: i64) -> Result<Option<Series>> {
    let overlaps = |a: i64, b: i64| a <= maxt && b >= mint;
    // Sealed in-order chunks are older than the open one: when it starts by `mint` (an instant
    // query's lookback, a range ending at the head's end), their list is not read at all. A head
    // selector reads every series' state from memory, most of it cold.
    let sealed: &[SealedChunk] = if d.open.as_ref().is_some_and(|c| c.min_t() <= mint) { &[] } else { &d.sealed };
    // Deleted intervals: chunks they cover whole are not read, others are marked with them.
    let deleted = d.deleted();
    let live = |c: &&SealedChunk| overlaps(c.min_t, c.max_t) && deleted.is_none_or(|d| !d.covers(c.min_t, c.max_t));
    let mut chunks: Vec<ChunkMeta> = Vec::new();
    for c in sealed.iter().filter(live) {
        chunks.extend(sealed_meta(c)?.without_deleted(deleted));
    }
    if let Some(c) = &d.open {
        if overlaps(c.min_t(), c.max_t) {
            chunks.extend(
                open_chunk_part(c.chunk.bytes(), c.min_t(), c.max_t, mint, maxt)
                    .and_then(|m| m.without_deleted(deleted)),
            );
        }
    }
    let mut ooo_chunks = Vec::new();
    if let Some(o) = &d.ooo {
        for c in o.sealed_overlapping(mint, maxt).filter(live) {
            ooo_chunks.extend(sealed_meta(c)?.without_deleted(deleted));
        }
        ooo_chunks.extend(ooo_open_part(&o.open, mint, maxt).and_then(|m| m.without_deleted(deleted)));
    }
    // Native histograms after the float chunks: each kind's chunks are sorted and do not overlap
    // each other, though a series holding both kinds may have a float and a histogram chunk over
    // the same time (float reads skip histogram chunks and the reverse).
    if let Some(h) = d.hist() {
        chunks.extend(h.in_order_chunks(mint, maxt).filter_map(|m| m.without_deleted(deleted)));
        ooo_chunks.extend(ChunkMeta::raw_histograms(&h.ooo_part(mint, maxt)).and_then(|m| m.without_deleted(deleted)));
    }
    if chunks.is_empty() && ooo_chunks.is_empty() {
        return Ok(None);
    }
    Ok(Some(Series { labels: labels.clone(), chunks, ooo_chunks }))
}

/// A sealed head chunk as a [`ChunkMeta`] (its bytes are read from the head chunk file when the
/// chunk has been written there).
fn sealed_meta(c: &SealedChunk) -> Result<ChunkMeta> {
    let bytes = c.bytes().map_err(count_read_error)?;
    Ok(ChunkMeta::new(c.min_t, c.max_t, ChunkData::Xor(bytes.into())))
}

/// What a snapshot keeps of the open chunk `bytes` spanning `[min_t, max_t]` for a read of
/// `[mint, maxt]`: a copy of the bytes when the read needs the whole chunk, else the needed samples
/// decoded (an instant query needs the last few minutes of a chunk of up to two hours), unless they
/// would take more memory than the copy. `None` when no sample falls in the range.
fn open_chunk_part(bytes: &[u8], min_t: i64, max_t: i64, mint: i64, maxt: i64) -> Option<ChunkMeta> {
    if mint <= min_t && max_t <= maxt {
        return Some(ChunkMeta::new(min_t, max_t, ChunkData::Xor(bytes.into())));
    }
    let limit = bytes.len() / std::mem::size_of::<(i64, f64)>();
    let mut it = XorIter::new(bytes);
    let mut part: Vec<(i64, f64)> = Vec::new();
    let mut next = it.seek(mint);
    while let Some(s) = next {
        if s.0 > maxt {
            break;
        }
        if part.len() >= limit {
            return Some(ChunkMeta::new(min_t, max_t, ChunkData::Xor(bytes.into())));
        }
        part.push(s);
        next = it.next();
    }
    ChunkMeta::raw(&part)
}

/// The samples of the open out-of-order buffer that fall in `[mint, maxt]` (an instant query over
/// every series copies a few minutes of each buffer, not all of it). `None` when none do.
fn ooo_open_part(open: &OooChunk, mint: i64, maxt: i64) -> Option<ChunkMeta> {
    if open.newest() < mint {
        return None;
    }
    let part: Vec<(i64, f64)> = open.samples().skip_while(|&(t, _)| t < mint).take_while(|&(t, _)| t <= maxt).collect();
    ChunkMeta::raw(&part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::ooo::Insert;

    #[test]
    fn open_chunk_part_keeps_exactly_the_range() {
        let mut c = crate::chunkenc::XorChunk::new();
        for t in 0..100i64 {
            c.push(t * 10, t as f64);
        }
        let all: Vec<(i64, f64)> = XorIter::new(c.bytes()).collect();
        for (mint, maxt) in [(0, 990), (-5, 2000), (500, 990), (505, 600), (985, 2000), (991, 2000), (-10, -1), (0, 0)]
        {
            let got: Vec<(i64, f64)> = match open_chunk_part(c.bytes(), 0, 990, mint, maxt) {
                None => Vec::new(),
                Some(m) => m.iter(mint, maxt).collect(),
            };
            let want: Vec<(i64, f64)> = all.iter().copied().filter(|&(t, _)| t >= mint && t <= maxt).collect();
            assert_eq!(got, want, "[{mint}, {maxt}]");
        }
    }

    #[test]
    fn ooo_open_part_keeps_exactly_the_range() {
        let mut o = OooChunk::default();
        for t in (0..32i64).rev() {
            assert_eq!(o.insert(t * 10, t as f64), Insert::Added);
        }
        let all: Vec<(i64, f64)> = o.samples().collect();
        for (mint, maxt) in
            [(0, 310), (-5, 2000), (100, 310), (105, 200), (305, 2000), (311, 2000), (-10, -1), (0, 0), (150, 150)]
        {
            let part = ooo_open_part(&o, mint, maxt);
            let got: Vec<(i64, f64)> = match &part {
                Some(ChunkMeta { data: ChunkData::Raw(s), .. }) => s.to_vec(),
                Some(_) => panic!("not raw"),
                None => Vec::new(),
            };
            let want: Vec<(i64, f64)> = all.iter().copied().filter(|&(t, _)| t >= mint && t <= maxt).collect();
            assert_eq!(got, want, "[{mint}, {maxt}]");
            assert_eq!(part.map(|m| (m.min_t, m.max_t)), want.first().zip(want.last()).map(|(a, b)| (a.0, b.0)));
        }
    }
}
