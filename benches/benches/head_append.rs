//! Head append, samples/s: 1000 node-exporter-like series (8 labels), 15 s scrapes with jitter,
//! appended in transactions of 2000 samples (one remote-write request each, labels looked up per
//! sample as the ingest path does), in order and with 20% of samples held back up to 10 minutes
//! (out of order); on a memory-only head and on a head with a WAL that never fsyncs.
//!
//! Each iteration starts from a fresh head holding the first scrape (series creation is not
//! timed) and appends the next 60 scrapes: 60,000 samples.
//!
//! `head_append_histograms`: 20,000 native histograms (one bucket) of one series on a memory-only
//! head, in transactions of 1000: in order, and late newest-first (each older than the one before,
//! as a sender draining a buffer backwards delivers them), the worst order for storing late ones.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use strata_benches::workload::{bench_spec, shard_stream, Spec};
use tsdb::testing::{memory_options, temp_head};

const SERIES: usize = 1000;
const ROUNDS: u32 = 61;
const BATCH: usize = 2000;

/// The samples after the first scrape, cut into batches: `(slot, t, v)`.
/// Samples `(slot, t, v)` of one transaction.
type Batch = Vec<(usize, i64, f64)>;

fn batches(spec: &Spec) -> (Batch, Vec<Batch>) {
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    shard_stream(spec, 0, 1, |e| {
        if e.send_round == 0 {
            first.push((e.slot as usize, e.t, e.v));
        } else {
            rest.push((e.slot as usize, e.t, e.v));
        }
    });
    (first, rest.chunks(BATCH).map(<[_]>::to_vec).collect())
}

fn append_batch(head: &tsdb::Head, labels: &[Vec<(String, String)>], batch: &[(usize, i64, f64)]) -> u64 {
    let mut app = head.appender();
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(8);
    for &(slot, t, v) in batch {
        pairs.clear();
        pairs.extend(labels[slot].iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let h = app.series(&mut pairs).unwrap_or_else(|e| panic!("series: {e}"));
        app.append(h, t, v).unwrap_or_else(|e| panic!("append: {e}"));
    }
    let stats = app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
    stats.in_order + stats.out_of_order
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("head_append");
    g.sample_size(10).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for (order, ooo) in [("in_order", 0.0), ("ooo_20pct", 0.2)] {
        let spec = bench_spec(SERIES, ROUNDS, ooo);
        let labels: Vec<_> = (0..spec.slots()).map(|s| spec.labels(s, 0)).collect();
        let (first, batches) = batches(&spec);
        let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let first_total = first.len() as u64;
        g.throughput(Throughput::Elements(total));
        for storage in ["memory", "wal_never"] {
            let window = 3_600_000;
            g.bench_function(BenchmarkId::new(storage, order), |b| {
                b.iter_batched(
                    || {
                        let mut opts = memory_options(window);
                        if storage == "wal_never" {
                            opts.wal = Some(wal::Options { sync: wal::SyncPolicy::Never, ..wal::Options::default() });
                        }
                        let (dir, head) = temp_head(opts);
                        assert_eq!(append_batch(&head, &labels, &first), first_total);
                        (dir, head)
                    },
                    |(dir, head)| {
                        let stored: u64 = batches.iter().map(|b| append_batch(&head, &labels, b)).sum();
                        assert_eq!(stored, total);
                        (dir, head)
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
}

const HISTOGRAMS: i64 = 20_000;

fn one_bucket(count: u64) -> tsdb::histogram::HistogramValue {
    tsdb::histogram::HistogramValue::Int(tsdb::histogram::Histogram {
        count,
        positive_spans: vec![tsdb::histogram::Span { offset: 0, length: 1 }],
        positive_buckets: vec![count as i64],
        ..Default::default()
    })
}

/// Appends `HISTOGRAMS` histograms of series `h` at `t(i)`, 1000 per transaction.
fn append_histograms(head: &tsdb::Head, t: impl Fn(i64) -> i64) -> u64 {
    let mut stored = 0;
    for first in (0..HISTOGRAMS).step_by(1000) {
        let mut app = head.appender();
        for i in first..first + 1000 {
            let h = app.series(&mut [("__name__", "h")]).unwrap_or_else(|e| panic!("series: {e}"));
            app.append_histogram(h, t(i), one_bucket(i as u64 + 1)).unwrap_or_else(|e| panic!("append: {e}"));
        }
        let stats = app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
        stored += stats.histograms_in_order + stats.histograms_out_of_order;
    }
    stored
}

fn bench_histograms(c: &mut Criterion) {
    let mut g = c.benchmark_group("head_append_histograms");
    g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(HISTOGRAMS as u64));
    let base = 1_700_000_000_000i64;
    type Order = fn(i64, i64) -> i64;
    for (order, t) in [("in_order", (|base, i| base + 1 + i) as Order), ("late_newest_first", |base, i| base - 1 - i)] {
        g.bench_function(order, |b| {
            b.iter_batched(
                || {
                    // The series and its newest histogram, at `base`.
                    let (dir, head) = temp_head(memory_options(3_600_000));
                    let mut app = head.appender();
                    let h = app.series(&mut [("__name__", "h")]).unwrap_or_else(|e| panic!("series: {e}"));
                    app.append_histogram(h, base, one_bucket(1)).unwrap_or_else(|e| panic!("append: {e}"));
                    app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
                    (dir, head)
                },
                |(dir, head)| {
                    assert_eq!(append_histograms(&head, |i| t(base, i)), HISTOGRAMS as u64);
                    (dir, head)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_histograms);
criterion_main!(benches);
