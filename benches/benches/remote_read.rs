//! Remote read, samples/s: encoding a `STREAMED_XOR_CHUNKS` answer for 1000 series of 2 hours of
//! 15 s samples (480 each, node-exporter-like labels): each series' chunks chosen
//! (`remote_read::chunks::xor_chunks`), its labels converted and its frames built
//! (`remote_read::frames`, 1 MiB frames). `in_order`: four stored XOR chunks per series, passed on
//! as they are. `ooo_20pct`: a fifth of the samples held back into an out-of-order chunk, so every
//! series is merged and re-encoded.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ingest::proto;
use query::api::remote_read::{chunks::xor_chunks, frames, DEFAULT_MAX_BYTES_IN_FRAME};
use tsdb::chunk::{ChunkData, ChunkMeta, SAMPLES_PER_CHUNK};
use tsdb::chunkenc::XorChunk;

const SERIES: usize = 1000;
const SAMPLES: i64 = 480;
const T0: i64 = 1_700_000_000_000;

fn xor_meta(samples: &[(i64, f64)]) -> Option<ChunkMeta> {
    let (first, last) = (samples.first()?.0, samples.last()?.0);
    let mut c = XorChunk::new();
    for &(t, v) in samples {
        c.push(t, v);
    }
    Some(ChunkMeta::new(first, last, ChunkData::Xor(c.into_bytes().into())))
}

/// One series: a counter with scrape jitter; `held_back` of its samples (every n-th) out of order.
fn series(i: usize, held_back_every: Option<i64>) -> tsdb::Series {
    let labels = tsdb::Labels::from_pairs(&[
        ("__name__", "node_cpu_seconds_total"),
        ("cpu", &(i % 16).to_string()),
        ("instance", &format!("host-{}.example.org:9100", i / 16)),
        ("job", "node"),
        ("mode", ["idle", "user", "system", "iowait"][i % 4]),
    ])
    .unwrap_or_else(|e| panic!("labels: {e}"));
    let mut in_order = Vec::new();
    let mut late = Vec::new();
    let mut v = (i * 1000) as f64;
    for k in 0..SAMPLES {
        let t = T0 + k * 15_000 + (k * 37 + i as i64) % 200;
        v += ((k + i as i64) % 13) as f64 * 0.25;
        match held_back_every {
            Some(n) if k % n == n - 1 => late.push((t, v)),
            _ => in_order.push((t, v)),
        }
    }
    tsdb::Series {
        labels,
        chunks: in_order.chunks(SAMPLES_PER_CHUNK).filter_map(xor_meta).collect(),
        ooo_chunks: ChunkMeta::raw(&late).into_iter().collect(),
    }
}

fn encode(all: &[tsdb::Series]) -> usize {
    let mut bytes = 0;
    for s in all {
        let chunks = xor_chunks(s, T0, T0 + SAMPLES * 15_000).unwrap_or_else(|e| panic!("chunks: {e}"));
        let labels: Vec<proto::Label> =
            s.labels.iter().map(|(n, v)| proto::Label { name: n.to_owned(), value: v.to_owned() }).collect();
        bytes += frames(0, &labels, chunks, DEFAULT_MAX_BYTES_IN_FRAME).iter().map(|f| f.len()).sum::<usize>();
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("remote_read_streamed");
    g.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(SERIES as u64 * SAMPLES as u64));
    for (name, held_back) in [("in_order", None), ("ooo_20pct", Some(5))] {
        let all: Vec<tsdb::Series> = (0..SERIES).map(|i| series(i, held_back)).collect();
        let expected = encode(&all);
        assert!(expected > SERIES * 100, "the answer is too small: {expected} bytes");
        g.bench_function(BenchmarkId::new("encode_1k_series", name), |b| {
            b.iter(|| assert_eq!(encode(&all), expected));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
