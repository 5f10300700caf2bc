//! Remote-write 1.0 payloads (snappy-compressed `WriteRequest`s) built from a workload before any
//! timing starts, and their 2.0 form ([`to_v2`]). A histogram workload's samples go in the
//! `histograms` field (4) of their `TimeSeries`.
//!
//! Like a Prometheus (agent) queue shard, each batch holds up to `batch` samples, one `TimeSeries`
//! per sample, and every series always goes to the same shard (connection), so per-series order is
//! kept on the wire. Labels are encoded once per series with prost and the bytes reused; a test
//! checks the result is byte-identical to encoding the [`ingest::proto`] structs.

use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

use ingest::proto::{Label, Sample, TimeSeries, WriteRequest};

use crate::workload::{shard_stream, Emitted, Spec};

/// One request body.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Snappy-compressed protobuf.
    pub body: Vec<u8>,
    /// Samples in it.
    pub samples: u32,
    /// Highest send round of its samples (for keeping shards in step).
    pub round: u32,
    /// Uncompressed size, bytes.
    pub raw_bytes: u32,
}

/// The payloads of one shard, in send order.
pub type ShardPayloads = Vec<Payload>;

/// The `labels` field bytes (each `Label` as field 1 of `TimeSeries`) of one series.
pub fn encode_labels(labels: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(labels.len() * 32);
    for (name, value) in labels {
        let l = Label { name: name.clone(), value: value.clone() };
        prost::encoding::message::encode(1, &l, &mut out);
    }
    out
}

/// Incremental `WriteRequest` builder over pre-encoded label bytes.
#[derive(Default)]
struct Builder {
    raw: Vec<u8>,
    ts: Vec<u8>,
    samples: u32,
    round: u32,
}

impl Builder {
    fn push(&mut self, labels: &[u8], e: &Emitted) {
        self.ts.clear();
        self.ts.extend_from_slice(labels);
        match &e.histogram {
            Some(h) => prost::encoding::message::encode(4, h.as_ref(), &mut self.ts),
            None => prost::encoding::message::encode(2, &Sample { value: e.v, timestamp: e.t }, &mut self.ts),
        }
        encode_key(1, WireType::LengthDelimited, &mut self.raw);
        encode_varint(self.ts.len() as u64, &mut self.raw);
        self.raw.extend_from_slice(&self.ts);
        self.samples += 1;
        self.round = self.round.max(e.send_round);
    }

    fn finish(&mut self, enc: &mut snap::raw::Encoder) -> Payload {
        let body = enc.compress_vec(&self.raw).unwrap_or_default();
        let p = Payload { body, samples: self.samples, round: self.round, raw_bytes: self.raw.len() as u32 };
        self.raw.clear();
        self.samples = 0;
        self.round = 0;
        p
    }
}

/// Builds the payloads of `shard` of `shards`, `batch` samples per request.
pub fn build_shard(
    spec: &Spec,
    shard: usize,
    shards: usize,
    batch: usize,
    mut progress: impl FnMut(u64),
) -> ShardPayloads {
    let mut labels: Vec<Option<(u32, Vec<u8>)>> = vec![None; spec.slots()];
    let mut out = Vec::new();
    let mut b = Builder::default();
    let mut enc = snap::raw::Encoder::new();
    shard_stream(spec, shard, shards, |e| {
        let cached = &mut labels[e.slot as usize];
        if cached.as_ref().is_none_or(|(inc, _)| *inc != e.incarnation) {
            *cached = Some((e.incarnation, encode_labels(&spec.labels(e.slot as usize, e.incarnation))));
        }
        if let Some((_, bytes)) = cached {
            b.push(bytes, &e);
        }
        if b.samples as usize >= batch {
            let p = b.finish(&mut enc);
            progress(u64::from(p.samples));
            out.push(p);
        }
    });
    if b.samples > 0 {
        let p = b.finish(&mut enc);
        progress(u64::from(p.samples));
        out.push(p);
    }
    out
}

/// Builds all shards, one thread per shard up to `threads` at a time.
pub fn build_all(spec: &Spec, shards: usize, batch: usize, progress: &(dyn Fn(u64) + Sync)) -> Vec<ShardPayloads> {
    let mut result: Vec<ShardPayloads> = Vec::with_capacity(shards);
    std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..shards).map(|shard| s.spawn(move || build_shard(spec, shard, shards, batch, progress))).collect();
        for h in handles {
            result.push(h.join().unwrap_or_default());
        }
    });
    result
}

/// The same payloads as remote-write 2.0 requests (same series and samples, in the same order;
/// each request with its own symbol table, as Prometheus's queue builds them).
pub fn to_v2(shards: &[ShardPayloads]) -> Vec<ShardPayloads> {
    let mut enc = snap::raw::Encoder::new();
    shards
        .iter()
        .map(|payloads| {
            payloads
                .iter()
                .map(|p| {
                    let raw = snap::raw::Decoder::new().decompress_vec(&p.body).unwrap_or_default();
                    let req = WriteRequest::decode(raw.as_slice()).unwrap_or_default();
                    let v2 = ingest::proto_v2::Request::from_v1(&req).encode_to_vec();
                    let body = enc.compress_vec(&v2).unwrap_or_default();
                    Payload { body, samples: p.samples, round: p.round, raw_bytes: v2.len() as u32 }
                })
                .collect()
        })
        .collect()
}

/// The same request built from the [`ingest::proto`] structs (reference for tests).
pub fn encode_with_structs(spec: &Spec, samples: &[Emitted]) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: samples
            .iter()
            .map(|e| TimeSeries {
                labels: spec
                    .labels(e.slot as usize, e.incarnation)
                    .into_iter()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                samples: match e.histogram {
                    Some(_) => vec![],
                    None => vec![Sample { value: e.v, timestamp: e.t }],
                },
                exemplars: vec![],
                histograms: e.histogram.iter().map(|h| h.as_ref().clone()).collect(),
            })
            .collect(),
        metadata: vec![],
    };
    req.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::bench_spec;

    #[test]
    fn payloads_match_struct_encoding_and_cover_every_sample() {
        let spec = bench_spec(100, 20, 0.1);
        let shards = build_all(&spec, 3, 250, &|_| {});
        let total: u64 = shards.iter().flatten().map(|p| u64::from(p.samples)).sum();
        assert_eq!(total, spec.total_samples());
        // Rebuild shard 1's first payload from the structs.
        let mut first = Vec::new();
        shard_stream(&spec, 1, 3, |e| {
            if first.len() < 250 {
                first.push(e)
            }
        });
        let raw = snap::raw::Decoder::new().decompress_vec(&shards[1][0].body).unwrap_or_default();
        assert_eq!(raw, encode_with_structs(&spec, &first));
        let req = WriteRequest::decode(raw.as_slice()).map_err(|e| e.to_string());
        assert_eq!(req.map(|r| r.timeseries.len()), Ok(250));
    }

    #[test]
    fn histogram_payloads_match_struct_encoding_in_both_protocols() {
        let spec = Spec { histograms: true, ..bench_spec(40, 6, 0.0) };
        let shards = build_all(&spec, 1, 100, &|_| {});
        let mut first = Vec::new();
        shard_stream(&spec, 0, 1, |e| {
            if first.len() < 100 {
                first.push(e)
            }
        });
        let raw = snap::raw::Decoder::new().decompress_vec(&shards[0][0].body).unwrap_or_default();
        assert_eq!(raw, encode_with_structs(&spec, &first));
        let req = WriteRequest::decode(raw.as_slice()).unwrap_or_default();
        assert!(req.timeseries.iter().all(|t| t.samples.is_empty() && t.histograms.len() == 1));
        let v2 = to_v2(&shards);
        let raw = snap::raw::Decoder::new().decompress_vec(&v2[0][0].body).unwrap_or_default();
        let req2 = ingest::proto_v2::Request::decode(raw.as_slice()).unwrap_or_default();
        let n: usize = req2.timeseries.iter().map(|t| t.histograms.len()).sum();
        assert_eq!(n, 100);
        let bound = crate::parse::measure(&shards).map(|b| b.samples).map_err(|e| e.to_string());
        assert_eq!(bound, Ok(spec.total_samples()), "the parse bound decodes every histogram sample");
    }

    #[test]
    fn v2_payloads_hold_the_same_samples() {
        let spec = bench_spec(50, 4, 0.0);
        let shards = build_all(&spec, 2, 100, &|_| {});
        let v2 = to_v2(&shards);
        for (a, b) in shards.iter().flatten().zip(v2.iter().flatten()) {
            assert_eq!((a.samples, a.round), (b.samples, b.round));
            let raw = snap::raw::Decoder::new().decompress_vec(&b.body).unwrap_or_default();
            let req = ingest::proto_v2::Request::decode(raw.as_slice()).unwrap_or_default();
            let n: usize = req.timeseries.iter().map(|t| t.samples.len()).sum();
            assert_eq!(n, a.samples as usize);
        }
    }
}
