//! WAL append: records/s, samples/s and bytes/s of realistic tsdb sample records (one record per
//! remote-write request of 2000 samples, as `Appender::commit` writes it), without fsync
//! (`SyncPolicy::Never`) and with fsync on every batch (`Always`), the latter from 1 and from 4
//! threads (group commit: one fsync covers every writer waiting on it).
//!
//! One iteration is one record. `wal_append_samples` reports samples/s, `wal_append_bytes` MB/s;
//! the time per iteration is the time per record.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata_benches::workload::{bench_spec, shard_stream};
use tsdb::record::{RefSample, SamplesRecord};
use wal::{SyncPolicy, Wal};

const SAMPLES_PER_RECORD: usize = 2000;

/// One samples record of 2000 samples of 1000 series (two scrapes).
fn record() -> Vec<u8> {
    let spec = bench_spec(1000, 2, 0.0);
    let mut rec = SamplesRecord::with_capacity(SAMPLES_PER_RECORD);
    let mut n = 0;
    shard_stream(&spec, 0, 1, |e| {
        if n < SAMPLES_PER_RECORD {
            rec.push(RefSample { sref: u64::from(e.slot) + 1, t: e.t, v: e.v });
            n += 1;
        }
    });
    assert_eq!(n, SAMPLES_PER_RECORD);
    rec.as_bytes().to_vec()
}

fn open(dir: &std::path::Path, sync: SyncPolicy) -> Wal {
    match Wal::open(dir, wal::Options { segment_size_bytes: wal::DEFAULT_SEGMENT_SIZE_BYTES, sync }) {
        Ok((w, _)) => w,
        Err(e) => panic!("open wal: {e}"),
    }
}

/// Logs `iters` records from `threads` threads; returns the wall time.
fn run(wal: &Wal, rec: &[u8], iters: u64, threads: u64) -> Duration {
    let per_thread = iters.div_ceil(threads);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    let applied = wal.log(&[rec], || true);
                    assert!(matches!(applied, Ok(true)));
                }
            });
        }
    });
    let took = t0.elapsed();
    // Keep the disk footprint bounded: drop every segment but the current one (not timed).
    let _ = wal.truncate_before(wal.current_segment());
    took
}

fn bench(c: &mut Criterion) {
    let rec = record();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let variants: [(&str, SyncPolicy, u64); 3] = [
        ("never", SyncPolicy::Never, 1),
        ("always_1_thread", SyncPolicy::Always, 1),
        ("always_4_threads", SyncPolicy::Always, 4),
    ];
    for (group, throughput) in [
        ("wal_append_samples", Throughput::Elements(SAMPLES_PER_RECORD as u64)),
        ("wal_append_bytes", Throughput::Bytes(rec.len() as u64)),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(throughput);
        for (name, sync, threads) in variants {
            if sync == SyncPolicy::Never {
                g.sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
            } else {
                // fsync-bound: keep it short.
                g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
            }
            let wal = open(&tmp.path().join(format!("{group}-{name}")), sync);
            g.bench_function(BenchmarkId::new(name, format!("{}B", rec.len())), |b| {
                b.iter_custom(|iters| run(&wal, &rec, iters, threads))
            });
            let _ = wal.close();
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
