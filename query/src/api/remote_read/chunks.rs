//! A series' chunks as a streamed remote-read answer (`STREAMED_XOR_CHUNKS`) sends them: XOR, integer
//! and float histogram chunks (chunk types 1, 2 and 3, as Prometheus sends them) in start-time order
//! that do not overlap, with one sample per timestamp.
//!
//! A series snapshot may hold chunks that overlap (out-of-order head chunks beside in-order ones,
//! blocks that overlap). The chunks are grouped into runs whose time ranges touch; a run of one
//! encoded chunk without deleted samples is passed on as its bytes are stored, and every other run
//! (overlapping chunks, a chunk with deleted samples, or decoded samples such as a copy of the head's
//! open out-of-order buffer) is merged — first wins at a timestamp held twice, as everywhere in
//! Strata — and encoded into new chunks: a run of float chunks with [`tsdb::merge::Merge`] into XOR
//! chunks of [`tsdb::chunk::SAMPLES_PER_CHUNK`] samples, a run with histogram chunks with
//! [`tsdb::recode::recode`] (also cut where the kind changes or the histogram encoder asks for it).
//! A client decoding the chunks therefore reads exactly the samples `/api/v1/query_range` reads.

use ingest::proto;
use tsdb::chunk::{ChunkData, ChunkMeta, SAMPLES_PER_CHUNK};
use tsdb::chunkenc::{Encoding, XorChunk};
use tsdb::merge::Merge;
use tsdb::recode::{recode, RecodeError};

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
    // A chunk with deleted samples (tombstones) is re-encoded without them.
    if let [(_, c)] = run.as_slice() {
        let stored = match &c.data {
            ChunkData::Xor(b) => Some((Encoding::Xor, b)),
            ChunkData::Histogram(b) => Some((Encoding::Histogram, b)),
            ChunkData::FloatHistogram(b) => Some((Encoding::FloatHistogram, b)),
            ChunkData::Raw(_) | ChunkData::RawHistograms(_) => None,
        };
        if let (Some((encoding, bytes)), None) = (stored, &c.deleted) {
            out.push(chunk(c.min_t, c.max_t, encoding, bytes.to_vec()));
            run.clear();
            return Ok(());
        }
    }
    run.sort_unstable_by_key(|&(rank, _)| rank);
    if run.iter().any(|(_, c)| c.data.is_histogram()) {
        let chunks = recode(run.iter().map(|&(_, c)| c), mint, maxt).map_err(|e| match e {
            RecodeError::Decode(d) => tsdb::Error::Decode(d),
            // Stored histograms that cannot be re-encoded: their chunk is not what it claims to be.
            RecodeError::Histogram { .. } => {
                tsdb::Error::Corruption { what: "histogram chunk".into(), reason: e.to_string() }
            }
        })?;
        out.extend(chunks.into_iter().map(|c| chunk(c.min_t, c.max_t, c.encoding, c.bytes)));
        run.clear();
        return Ok(());
    }
    let mut merged = Merge::new(run.iter().map(|&(_, c)| c), mint, maxt);
    let mut xor = XorChunk::new();
    let mut first = 0;
    let mut last = 0;
    for (t, v) in merged.by_ref() {
        if xor.is_empty() {
            first = t;
        }
        xor.push(t, v);
        last = t;
        if usize::from(xor.num_samples()) >= SAMPLES_PER_CHUNK {
            out.push(chunk(first, last, Encoding::Xor, std::mem::take(&mut xor).into_bytes()));
        }
    }
    if let Some(e) = merged.error() {
        return Err(tsdb::Error::Decode(e.clone()));
    }
    if !xor.is_empty() {
        out.push(chunk(first, last, Encoding::Xor, xor.into_bytes()));
    }
    run.clear();
    Ok(())
}

/// A remote-read chunk: the chunk type is the stored encoding byte (Prometheus's `chunkenc.Encoding`).
fn chunk(min_time_ms: i64, max_time_ms: i64, encoding: Encoding, data: Vec<u8>) -> proto::Chunk {
    proto::Chunk { min_time_ms, max_time_ms, r#type: i32::from(u8::from(encoding)), data }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use tsdb::chunkenc::{FloatHistogramIter, HistogramIter, XorIter};

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
    fn deleted_samples_are_not_sent() {
        let mut deleted = tsdb::intervals::Intervals::new();
        deleted.add(tsdb::intervals::Interval::new(15, 20));
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

    fn int_hist(count: u64) -> tsdb::histogram::Histogram {
        tsdb::histogram::Histogram { count, zero_count: count, ..Default::default() }
    }

    /// The histograms (as (t, count)) and floats of chunks of any type, checking their bounds.
    fn decode_any(chunks: &[proto::Chunk]) -> Vec<(i64, i32, f64)> {
        let mut out = Vec::new();
        for c in chunks {
            let samples: Vec<(i64, f64)> = match c.r#type {
                1 => XorIter::new(&c.data).collect(),
                2 => HistogramIter::new(&c.data).map(|r| r.map(|(t, h)| (t, h.count as f64)).unwrap()).collect(),
                3 => FloatHistogramIter::new(&c.data).map(|r| r.map(|(t, h)| (t, h.count)).unwrap()).collect(),
                t => panic!("chunk type {t}"),
            };
            assert_eq!((samples[0].0, samples[samples.len() - 1].0), (c.min_time_ms, c.max_time_ms));
            out.extend(samples.into_iter().map(|(t, v)| (t, c.r#type, v)));
        }
        out
    }

    #[test]
    fn histogram_chunks_are_sent_with_their_type() {
        use tsdb::chunkenc::{CounterResetHeader, FloatHistogramChunk, HistogramChunk};
        let mut ih = HistogramChunk::new(CounterResetHeader::Unknown);
        ih.append(10, &int_hist(1)).unwrap();
        ih.append(20, &int_hist(2)).unwrap();
        let mut fh = FloatHistogramChunk::new(CounterResetHeader::Unknown);
        fh.append(30, &int_hist(3).to_float()).unwrap();
        let chunks = vec![
            ChunkMeta::new(10, 20, ChunkData::Histogram(ih.bytes().into())),
            ChunkMeta::new(30, 30, ChunkData::FloatHistogram(fh.bytes().into())),
        ];
        let s = tsdb::Series { labels: tsdb::Labels::empty(), chunks, ooo_chunks: Vec::new() };
        let out = xor_chunks(&s, 0, 100).unwrap();
        assert_eq!(out.iter().map(|c| c.r#type).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(out[0].data, ih.bytes());
        assert_eq!(out[1].data, fh.bytes());
    }

    #[test]
    fn overlapping_histogram_and_float_chunks_are_merged_first_wins() {
        let mut ih = tsdb::chunkenc::HistogramChunk::default();
        for (t, c) in [(10, 1), (20, 2), (30, 3)] {
            ih.append(t, &int_hist(c)).unwrap();
        }
        let in_order = ChunkMeta::new(10, 30, ChunkData::Histogram(ih.bytes().into()));
        let late = ChunkMeta::raw_histograms(&[
            (15, tsdb::histogram::HistogramValue::Float(int_hist(15).to_float())),
            (20, tsdb::histogram::HistogramValue::Int(int_hist(99))),
        ])
        .unwrap();
        let late_float = ChunkMeta::raw(&[(25, 25.0), (30, 99.0)]).unwrap();
        let s =
            tsdb::Series { labels: tsdb::Labels::empty(), chunks: vec![in_order], ooo_chunks: vec![late, late_float] };
        let out = xor_chunks(&s, 0, 100).unwrap();
        assert!(out.windows(2).all(|w| w[0].max_time_ms < w[1].min_time_ms));
        assert_eq!(decode_any(&out), [(10, 2, 1.0), (15, 3, 15.0), (20, 2, 2.0), (25, 1, 25.0), (30, 2, 3.0)]);
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
