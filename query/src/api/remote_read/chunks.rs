//! A series' chunks as a streamed remote-read answer sends them: XOR chunks in start-time order that
//! do not overlap, with one sample per timestamp.
//!
//! A series snapshot may hold chunks that overlap (out-of-order head chunks beside in-order ones,
//! blocks that overlap). The chunks are grouped into runs whose time ranges touch; a run of one XOR
//! chunk without deleted samples (tombstones) is passed on as its bytes are stored, and every other run (overlapping chunks, or decoded
//! samples such as a copy of the head's open out-of-order buffer) is merged with [`tsdb::merge::Merge`]
//! — first wins at a timestamp held twice, as everywhere in Strata — and encoded into new XOR chunks
//! of [`tsdb::chunk::SAMPLES_PER_CHUNK`] samples. A client decoding the chunks therefore reads exactly
//! the samples `/api/v1/query_range` reads.

use ingest::proto;
use tsdb::chunk::{ChunkData, ChunkMeta, SAMPLES_PER_CHUNK};
use tsdb::chunkenc::XorChunk;
use tsdb::merge::Merge;

/// The chunks of `series` overlapping `[mint, maxt]`, ready to send: sorted by start time, not
/// overlapping. Chunks passed on whole may hold samples outside the range (as Prometheus sends
/// them); merged ones hold only samples inside it. Fails on a chunk that cannot be decoded.
pub fn xor_chunks(series: &tsdb::Series, mint: i64, maxt: i64) -> Result<Vec<proto::Chunk>, tsdb::Error> {
    // The listing order is the tie-break order of the merge: in-order chunks before out-of-order ones.
    let all: Vec<&ChunkMeta> =
        series.chunks.iter().chain(&series.ooo_chunks).filter(|c| c.overlaps(mint, maxt)).collect();
    let mut by_start: Vec<(usize, &ChunkMeta)> = all.into_iter().enumerate().collect();
    by_start.sort_by_key(|&(rank, c)| (c.min_t, rank));
    let mut out = Vec::with_capacity(by_start.len());
    let mut run: Vec<(usize, &ChunkMeta)> = Vec::new();
    let mut run_max = i64::MIN;
    for (rank, c) in by_start {
        if !run.is_empty() && c.min_t > run_max {
            emit_run(&mut run, mint, maxt, &mut out)?;
        }
        run_max = if run.is_empty() { c.max_t } else { run_max.max(c.max_t) };
        run.push((rank, c));
    }
    emit_run(&mut run, mint, maxt, &mut out)?;
    Ok(out)
}

/// Appends the chunks of one run of touching chunks to `out` and empties the run.
fn emit_run(
    run: &mut Vec<(usize, &ChunkMeta)>,
    mint: i64,
    maxt: i64,
    out: &mut Vec<proto::Chunk>,
) -> Result<(), tsdb::Error> {
    if let [(_, c)] = run.as_slice() {
        // A chunk with deleted samples in it is re-encoded without them.
        if let (ChunkData::Xor(bytes), None) = (&c.data, &c.deleted) {
            out.push(xor_chunk(c.min_t, c.max_t, bytes.to_vec()));
            run.clear();
            return Ok(());
        }
    }
    run.sort_unstable_by_key(|&(rank, _)| rank);
    let mut merged = Merge::new(run.iter().map(|&(_, c)| c), mint, maxt);
    let mut chunk = XorChunk::new();
    let mut first = 0;
    let mut last = 0;
    for (t, v) in merged.by_ref() {
        if chunk.is_empty() {
            first = t;
        }
        chunk.push(t, v);
        last = t;
        if usize::from(chunk.num_samples()) >= SAMPLES_PER_CHUNK {
            out.push(xor_chunk(first, last, std::mem::take(&mut chunk).into_bytes()));
        }
    }
    if let Some(e) = merged.error() {
        return Err(tsdb::Error::Decode(e.clone()));
    }
    if !chunk.is_empty() {
        out.push(xor_chunk(first, last, chunk.into_bytes()));
    }
    run.clear();
    Ok(())
}

fn xor_chunk(min_time_ms: i64, max_time_ms: i64, data: Vec<u8>) -> proto::Chunk {
    proto::Chunk { min_time_ms, max_time_ms, r#type: proto::chunk::Encoding::Xor as i32, data }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use tsdb::chunkenc::XorIter;

    use super::*;

    fn xor(samples: &[(i64, f64)]) -> ChunkMeta {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.push(t, v);
        }
        ChunkMeta::new(samples[0].0, samples[samples.len() - 1].0, ChunkData::Xor(c.into_bytes().into()))
    }

    fn decode(chunks: &[proto::Chunk]) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for c in chunks {
            assert_eq!(c.r#type, proto::chunk::Encoding::Xor as i32);
            let mut it = XorIter::new(&c.data);
            let samples: Vec<(i64, f64)> = it.by_ref().collect();
            assert!(it.error().is_none());
            assert_eq!((samples[0].0, samples[samples.len() - 1].0), (c.min_time_ms, c.max_time_ms));
            out.extend(samples);
        }
        out
    }

    #[test]
    fn a_lone_xor_chunk_is_passed_on_as_stored() {
        let c = xor(&[(10, 1.0), (20, 2.0), (30, 3.0)]);
        let ChunkData::Xor(bytes) = &c.data else { unreachable!() };
        let s = tsdb::Series { labels: tsdb::Labels::empty(), chunks: vec![c.clone()], ooo_chunks: Vec::new() };
        // Even when the range cuts it: the client filters by time, as with Prometheus's own chunks.
        let out = xor_chunks(&s, 15, 25).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, bytes.to_vec());
        assert_eq!((out[0].min_time_ms, out[0].max_time_ms), (10, 30));
    }

    #[test]
    fn a_lone_chunk_with_deleted_samples_is_sent_without_them() {
        let mut deleted = tsdb::intervals::Intervals::new();
        deleted.add(tsdb::intervals::Interval::new(20, 20));
        let c = xor(&[(10, 1.0), (20, 2.0), (30, 3.0)]).without_deleted(Some(&std::sync::Arc::new(deleted))).unwrap();
        let s = tsdb::Series { labels: tsdb::Labels::empty(), chunks: vec![c], ooo_chunks: Vec::new() };
        assert_eq!(decode(&xor_chunks(&s, 0, 100).unwrap()), [(10, 1.0), (30, 3.0)]);
    }

    #[test]
    fn overlapping_chunks_are_merged_first_wins() {
        let in_order = xor(&[(10, 1.0), (20, 2.0), (30, 3.0)]);
        let late = ChunkMeta::raw(&[(15, 15.0), (20, 99.0), (25, 25.0)]).unwrap();
        let far = xor(&[(100, 7.0)]);
        let s = tsdb::Series { labels: tsdb::Labels::empty(), chunks: vec![in_order, far], ooo_chunks: vec![late] };
        let out = xor_chunks(&s, 0, 1000).unwrap();
        assert_eq!(out.len(), 2, "the merged run, then the lone chunk");
        assert_eq!(decode(&out), [(10, 1.0), (15, 15.0), (20, 2.0), (25, 25.0), (30, 3.0), (100, 7.0)]);
    }

    proptest! {
        /// Whatever the chunks, the answer decodes to the merged samples of the range (the lone
        /// chunks whole), in time order, one per timestamp, the first-listed chunk's at a tie.
        #[test]
        fn chunks_decode_to_the_merged_samples(
            parts in proptest::collection::vec(
                (proptest::collection::btree_map(0i64..400, -5i32..5, 1..150), any::<bool>()), 1..6),
            mint in 0i64..200, len in 0i64..400,
        ) {
            let maxt = mint + len;
            let mut chunks = Vec::new();
            for (samples, as_xor) in &parts {
                let samples: Vec<(i64, f64)> = samples.iter().map(|(&t, &v)| (t, f64::from(v))).collect();
                chunks.push(if *as_xor { xor(&samples) } else { ChunkMeta::raw(&samples).unwrap() });
            }
            let mut model: BTreeMap<i64, f64> = BTreeMap::new();
            for c in &chunks {
                for (t, v) in c.iter(i64::MIN, i64::MAX) {
                    model.entry(t).or_insert(v);
                }
            }
            let s = tsdb::Series { labels: tsdb::Labels::empty(), chunks: Vec::new(), ooo_chunks: chunks };
            let out = xor_chunks(&s, mint, maxt).unwrap();
            prop_assert!(out.windows(2).all(|w| w[0].max_time_ms < w[1].min_time_ms));
            let got: Vec<(i64, f64)> = decode(&out).into_iter().filter(|&(t, _)| t >= mint && t <= maxt).collect();
            let want: Vec<(i64, f64)> = model.range(mint..=maxt).map(|(&t, &v)| (t, v)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
