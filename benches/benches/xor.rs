//! XOR chunk encode and decode, samples/s, on 120-sample chunks (Prometheus's target chunk size)
//! of realistic counters and gauges: 15 s scrapes with ±5 ms jitter.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_benches::workload::{chunk_inputs, Kind};
use tsdb::chunkenc::{XorChunk, XorIter};

const CHUNKS: usize = 200;
const SAMPLES_PER_CHUNK: u32 = tsdb::chunk::SAMPLES_PER_CHUNK as u32;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("xor");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for (name, kind) in [("counter", Kind::Counter), ("gauge", Kind::Gauge)] {
        let inputs = chunk_inputs(CHUNKS, SAMPLES_PER_CHUNK, Some(kind));
        let total: u64 = inputs.iter().map(|s| s.len() as u64).sum();
        assert_eq!(total, CHUNKS as u64 * u64::from(SAMPLES_PER_CHUNK));
        g.throughput(Throughput::Elements(total));

        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                for series in &inputs {
                    let mut chunk = XorChunk::new();
                    for &(t, v) in series {
                        chunk.push(t, v);
                    }
                    assert_eq!(chunk.num_samples() as u32, SAMPLES_PER_CHUNK);
                    bytes += chunk.bytes().len();
                }
                black_box(bytes)
            })
        });

        let encoded: Vec<Vec<u8>> = inputs
            .iter()
            .map(|series| {
                let mut chunk = XorChunk::new();
                series.iter().for_each(|&(t, v)| chunk.push(t, v));
                chunk.into_bytes()
            })
            .collect();
        let bytes: usize = encoded.iter().map(Vec::len).sum();
        eprintln!("xor/{name}: {:.2} bytes/sample", bytes as f64 / total as f64);
        let want_last: i64 = inputs.iter().map(|s| s.last().map_or(0, |p| p.0)).sum();
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| {
                let (mut n, mut last) = (0u64, 0i64);
                for bytes in &encoded {
                    let mut it = XorIter::new(black_box(bytes));
                    let mut t_last = 0;
                    for (t, _) in &mut it {
                        n += 1;
                        t_last = t;
                    }
                    assert!(it.error().is_none());
                    last += t_last;
                }
                assert_eq!((n, last), (total, want_last));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
