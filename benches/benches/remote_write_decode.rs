//! Remote-write request decoding, samples/s: the same 2000-sample request (node-exporter-like
//! series with 8 labels, one `TimeSeries` per sample as Prometheus's queue sends them) as a 1.0
//! `WriteRequest` and as a 2.0 `io.prometheus.write.v2.Request`, walked in place by the receiver's
//! decoders with every sample read. Snappy decompression is included (`snappy+walk`) and left out
//! (`walk`). The payload sizes are printed once. The `histograms` cases send the same series as
//! integer native histograms (schema 3, 10–19 buckets each), every histogram parsed.
//!
//! `append`: the whole receiver path after snappy (walk, series lookup, append, commit) into a
//! memory-only head whose series already exist (a first request created them, untimed).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use prost::Message;
use strata_benches::payload::encode_with_structs;
use strata_benches::workload::{bench_spec, shard_stream, Spec};

const SAMPLES: usize = 2000;

/// The `n`th request of `SAMPLES` samples of the workload, as 1.0 and 2.0 payloads.
fn payloads(n: usize, histograms: bool) -> (Vec<u8>, Vec<u8>) {
    let spec = Spec { histograms, ..bench_spec(1000, 10, 0.0) };
    let mut samples = Vec::new();
    let mut i = 0usize;
    shard_stream(&spec, 0, 1, |e| {
        if i / SAMPLES == n {
            samples.push(e);
        }
        i += 1;
    });
    let v1 = encode_with_structs(&spec, &samples);
    let req = ingest::proto::WriteRequest::decode(v1.as_slice()).unwrap_or_else(|e| panic!("decode: {e}"));
    let v2 = ingest::proto_v2::Request::from_v1(&req).encode_to_vec();
    (v1, v2)
}

fn append(head: &tsdb::Head, payload: &[u8], v2: bool) -> u64 {
    let result = if v2 {
        ingest::convert_v2::append_request_unsynced(head, payload, ingest::convert_v2::Options::default())
    } else {
        ingest::convert::append_request_unsynced(head, payload)
    };
    let (outcome, _) = result.unwrap_or_else(|e| panic!("append: {e}"));
    outcome.accepted + outcome.histograms_accepted
}

fn walk_v1(payload: &[u8]) -> u64 {
    let mut labels = Vec::new();
    let mut n = 0u64;
    ingest::decode::walk(payload, &mut labels, |pairs, s| {
        n += (s.samples().count() + s.histograms().count()) as u64 + (pairs.len() as u64 >> 8);
    })
    .unwrap_or_else(|e| panic!("walk: {e}"));
    n
}

fn walk_v2(payload: &[u8]) -> u64 {
    let (mut symbols, mut labels) = (Vec::new(), Vec::new());
    let mut n = 0u64;
    ingest::decode::v2::walk(payload, &mut symbols, &mut labels, |pairs, s, _| {
        n += (s.view.samples().count() + s.view.histograms().count()) as u64 + (pairs.len() as u64 >> 8);
    })
    .unwrap_or_else(|e| panic!("walk: {e}"));
    n
}

fn bench(c: &mut Criterion) {
    for histograms in [false, true] {
        bench_kind(c, histograms);
    }
}

/// The decode and append groups over float samples, or over histograms (`_histograms` groups).
fn bench_kind(c: &mut Criterion, histograms: bool) {
    let suffix = if histograms { "_histograms" } else { "" };
    let (v1, v2) = payloads(0, histograms);
    let mut enc = snap::raw::Encoder::new();
    let (c1, c2) = (enc.compress_vec(&v1).unwrap_or_default(), enc.compress_vec(&v2).unwrap_or_default());
    println!(
        "remote_write_decode{suffix}: {SAMPLES} samples; 1.0: {} bytes ({} snappy), 2.0: {} bytes ({} snappy)",
        v1.len(),
        c1.len(),
        v2.len(),
        c2.len()
    );
    let mut g = c.benchmark_group(format!("remote_write_decode{suffix}"));
    g.sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(SAMPLES as u64));
    type Walk = fn(&[u8]) -> u64;
    for (proto, raw, compressed, walk) in [("1.0", &v1, &c1, walk_v1 as Walk), ("2.0", &v2, &c2, walk_v2 as Walk)] {
        g.bench_function(BenchmarkId::new("walk", proto), |b| {
            b.iter(|| assert_eq!(walk(raw), SAMPLES as u64));
        });
        let mut buf = Vec::new();
        g.bench_function(BenchmarkId::new("snappy+walk", proto), |b| {
            b.iter(|| {
                ingest::decode::decompress(compressed, usize::MAX, &mut buf).unwrap_or_else(|e| panic!("snappy: {e}"));
                assert_eq!(walk(&buf), SAMPLES as u64);
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("remote_write_append{suffix}"));
    g.sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(SAMPLES as u64));
    let (next_v1, next_v2) = payloads(1, histograms);
    for (proto, first, next, is_v2) in [("1.0", &v1, &next_v1, false), ("2.0", &v2, &next_v2, true)] {
        g.bench_function(BenchmarkId::new("append", proto), |b| {
            b.iter_batched(
                || {
                    let (dir, head) = tsdb::testing::temp_head(tsdb::testing::memory_options(0));
                    assert_eq!(append(&head, first, is_v2), SAMPLES as u64);
                    (dir, head)
                },
                |(dir, head)| {
                    assert_eq!(append(&head, next, is_v2), SAMPLES as u64);
                    (dir, head)
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
