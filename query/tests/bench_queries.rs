//! Timing harness for the strata-bench query shapes (100k series, 8 labels, 4h at 60s, in the head).
//! Run in release: `cargo test --release -p query --test bench_queries -- --ignored --nocapture`.
//! `BENCH_SERIES` overrides the total series count (default 100 000), `BENCH_ITERS` the timed runs per
//! query (10), and `BENCH_QUERY` keeps only the queries containing it.
//!
//! The counting global allocator below is the only unsafe code here; it is confined to this ignored
//! benchmark and forwards every call to the system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Counts live heap bytes and their high-water mark, to measure a query's peak allocation.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

use query::engine::{Engine, EngineOptions, QueryValue};
use query::storage::TsdbStorage;

const T0: i64 = 1_700_000_000_000;
const STEP: i64 = 60_000;
const POINTS: i64 = 240; // 4h

fn load(total: usize) -> (tempfile::TempDir, Arc<tsdb::Db>) {
    let (dir, db) = tsdb::testing::temp_db(tsdb::testing::memory_options(0));
    // 1000 series for each of the named metrics, the rest spread over filler metrics of 1000.
    let named = ["node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "G"];
    let mut series: Vec<Vec<(String, String)>> = Vec::with_capacity(total);
    for i in 0..total {
        let m = i / 1000;
        let name = named.get(m).map_or_else(|| format!("filler_metric_{m}"), |s| s.to_string());
        let j = i % 1000;
        series.push(vec![
            ("__name__".into(), name),
            ("job".into(), format!("job-{}", j % 10)),
            ("instance".into(), format!("host-{}:9100", j / 10)),
            ("region".into(), format!("region-{}", j % 4)),
            ("cpu".into(), format!("{}", j % 8)),
            ("mode".into(), ["user", "system", "idle", "iowait"][j % 4].into()),
            ("env".into(), ["prod", "staging"][j % 2].into()),
            ("dc".into(), format!("dc-{}", j % 3)),
        ]);
    }
    let started = Instant::now();
    for k in 0..POINTS {
        let t = T0 + k * STEP;
        let mut app = db.head().appender();
        for (i, s) in series.iter().enumerate() {
            let pairs: Vec<(&str, &str)> = s.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let v = if i < 1000 {
                (k as f64) * 60.0 * ((i % 7) as f64 + 1.0) + (i as f64)
            } else {
                ((i as f64) * 0.37 + (k as f64) * 1.3).sin() * 1e9 + 2e9
            };
            app.append_pairs(&pairs, t, v).unwrap_or_else(|e| panic!("append: {e}"));
        }
        app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
    }
    eprintln!("loaded {total} series x {POINTS} points in {:?}", started.elapsed());
    (dir, db)
}

fn vm_hwm_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn vm_rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn summarize(v: &QueryValue) -> String {
    match v {
        QueryValue::Vector { samples, .. } => {
            let sum: f64 = samples.iter().map(|s| s.v).sum();
            format!("vector len={} sum={sum:.6e}", samples.len())
        }
        QueryValue::Matrix(m) => {
            let pts: usize = m.iter().map(|s| s.points.len()).sum();
            let sum: f64 = m.iter().flat_map(|s| s.points.iter().map(|p| p.1)).sum();
            format!("matrix series={} points={pts} sum={sum:.6e}", m.len())
        }
        QueryValue::Scalar { v, .. } => format!("scalar {v}"),
        QueryValue::String { s, .. } => format!("string {s}"),
    }
}

#[test]
#[ignore]
fn bench_strata_queries() {
    let total = std::env::var("BENCH_SERIES").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let iters: usize = std::env::var("BENCH_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let (_dir, db) = load(total);
    let st = TsdbStorage::new(Arc::clone(&db));
    let engine = Engine::new(EngineOptions::default());
    let end = T0 + (POINTS - 1) * STEP;
    let queries: [(&str, bool); 4] = [
        ("sum by (job) (rate(node_cpu_seconds_total[5m]))", true),
        ("topk(10, node_memory_MemAvailable_bytes)", false),
        ("count({__name__=~\".+\"})", false),
        ("avg by (region) (avg_over_time(G[1h]))", false),
    ];
    let only = std::env::var("BENCH_QUERY").unwrap_or_default();
    for (q, range) in queries.into_iter().filter(|(q, _)| q.contains(only.as_str())) {
        let expr = query::parser::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let run = || {
            if range {
                engine.range(&st, &expr, end - 3_600_000, end, 15_000, None)
            } else {
                engine.instant(&st, &expr, end, None)
            }
            .unwrap_or_else(|e| panic!("{q}: {e}"))
        };
        let rss_before = vm_rss_kb();
        reset_hwm();
        let live_before = LIVE.load(Ordering::Relaxed);
        PEAK.store(live_before, Ordering::Relaxed);
        let first = run();
        let heap_peak = (PEAK.load(Ordering::Relaxed) - live_before) / 1024;
        let peak = vm_hwm_kb().saturating_sub(rss_before);
        let summary = summarize(&first);
        drop(first);
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            let r = run();
            times.push(t.elapsed());
            drop(r);
        }
        times.sort();
        let median = times[times.len() / 2];
        eprintln!(
            "{q:<55} min {:>9.2?} median {:>9.2?} heap peak +{:>7} KiB rss +{:>7} KiB  {summary}",
            times[0], median, heap_peak, peak
        );
    }
}
