//! Ingest CPU on one thread without HTTP or fsync: the harness's payloads (100k series by default)
//! decoded and appended to a head with a WAL (never fsynced) and head chunk files, as the server's
//! pool threads do. Requests of the shards are interleaved round-robin, as concurrent connections
//! deliver them. Prints thread CPU-seconds per million samples for each half of the run.
//!
//! `cargo run --release -p strata-benches --example ingest_cpu -- [ooo_fraction] [series] [rounds]`
//! (defaults 0.2, 100000, 120 one-minute rounds).
//!
//! What it is for: A/B comparisons of the append path, which at 100k series is bound by waits for
//! main memory (20% late samples raise the cost ~1.1× at 5k series, which fit the caches, and
//! ~1.2–1.4× at 100k). Run-to-run noise on a shared VM is ±10–20%: alternate the binaries being
//! compared several times and compare medians.

use strata_benches::payload::build_all;
use strata_benches::sys::thread_cpu_time;
use strata_benches::workload::Spec;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ooo: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0.2);
    let series: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: i64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(120);
    let interval_ms = 60_000;
    let now = 1_790_000_000_000i64;
    let spec = Spec {
        metrics: 100,
        series_per_metric: series / 100,
        interval_ms,
        span_ms: rounds * interval_ms,
        churn: 0.0,
        ooo_fraction: ooo,
        ooo_max_lag_ms: 600_000,
        start_ms: (now / interval_ms - rounds) * interval_ms,
        jitter_ms: 5,
        seed: 1,
        histograms: false,
    };
    let shards = build_all(&spec, 4, 2000, &|_| {});
    let mut order = Vec::new();
    let longest = shards.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for s in &shards {
            if let Some(p) = s.get(i) {
                order.push(p);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let opts = tsdb::head::Options {
        ooo_time_window_ms: if ooo > 0.0 { 32 * 60_000 } else { 0 },
        wal: Some(wal::Options { sync: wal::SyncPolicy::Never, ..wal::Options::default() }),
        ..tsdb::head::Options::default()
    };
    let head = tsdb::Head::open(dir.path(), opts).unwrap_or_else(|e| panic!("open: {e}"));
    let mut dec = snap::raw::Decoder::new();
    let mut buf = Vec::new();
    let half = order.len() / 2;
    for (part, ps) in [&order[..half], &order[half..]].into_iter().enumerate() {
        let t0 = thread_cpu_time();
        let mut n = 0u64;
        for p in ps {
            buf.resize(snap::raw::decompress_len(&p.body).unwrap_or(0), 0);
            let len = dec.decompress(&p.body, &mut buf).unwrap_or_else(|e| panic!("snappy: {e}"));
            let (out, _) =
                ingest::convert::append_request_unsynced(&head, &buf[..len]).unwrap_or_else(|e| panic!("append: {e}"));
            n += out.accepted;
        }
        let cpu = (thread_cpu_time() - t0).as_secs_f64();
        println!("part {part}: {n} samples, {:.3} CPU-s per 1M", cpu / (n as f64 / 1e6));
    }
}
