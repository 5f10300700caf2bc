//! PromQL evaluation over an in-memory Db (head only, no WAL): the query shapes of the query issue.
//! Data is loaded once, outside the timed loop; each iteration checks the result size.
#![allow(clippy::expect_used, reason = "bench setup: a failure is a broken bench")]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use query::engine::QueryValue;
use query::storage::TsdbStorage;
use query::{Engine, EngineOptions};

const STEP: i64 = 15_000;
const T_END: i64 = 1_700_000_000_000;

/// Loads `series` series of metric `name` with 8 labels, one sample every 15s over `span_ms`.
fn load(db: &tsdb::Db, name: &str, series: usize, span_ms: i64) {
    let jobs = ["api", "web", "db", "cache", "queue"];
    let instances: Vec<String> = (0..series).map(|i| format!("10.0.{}.{}:9100", i / 250, i % 250)).collect();
    let ids: Vec<String> = (0..series).map(|i| i.to_string()).collect();
    let start = T_END - span_ms;
    let mut app = db.head().appender();
    let mut pending = 0;
    let mut t = start;
    while t <= T_END {
        for i in 0..series {
            let job = jobs[i % jobs.len()];
            let labels = [
                ("__name__", name),
                ("job", job),
                ("instance", instances[i].as_str()),
                ("id", ids[i].as_str()),
                ("env", "prod"),
                ("region", if i % 2 == 0 { "eu" } else { "us" }),
                ("team", "core"),
                ("service", job),
            ];
            let v = ((t - start) / STEP) as f64 * (1.0 + (i % 7) as f64);
            app.append_pairs(&labels, t, v).expect("append");
            pending += 1;
            if pending >= 100_000 {
                app.commit().expect("commit");
                app = db.head().appender();
                pending = 0;
            }
        }
        t += STEP;
    }
    app.commit().expect("commit");
}

fn bench_queries(c: &mut Criterion) {
    let (_dir, db) = tsdb::testing::temp_db(tsdb::testing::memory_options(0));
    load(&db, "one_series", 1, 24 * 3_600_000);
    load(&db, "ten_k", 10_000, 3_600_000);
    load(&db, "hundred_k", 100_000, 5 * 60_000);
    let storage = TsdbStorage::new(Arc::clone(&db));
    let engine = Engine::new(EngineOptions::default());
    let mut g = c.benchmark_group("query");
    g.sample_size(10);

    let expr = query::parser::parse("one_series").expect("parse");
    g.throughput(Throughput::Elements(24 * 3600 / 15));
    g.bench_function("selector_1_series_24h_step_15s", |b| {
        b.iter(|| {
            let v = engine.range(&storage, &expr, T_END - 24 * 3_600_000, T_END, STEP, None).expect("eval");
            assert!(matches!(v, QueryValue::Matrix(ref m) if m.len() == 1));
        })
    });

    let expr = query::parser::parse("sum by (job) (rate(ten_k[5m]))").expect("parse");
    g.throughput(Throughput::Elements(10_000 * 3600 / 15));
    g.bench_function("sum_by_job_rate_10k_series_1h_step_15s", |b| {
        b.iter(|| {
            let v = engine.range(&storage, &expr, T_END - 3_600_000, T_END, STEP, None).expect("eval");
            assert!(matches!(v, QueryValue::Matrix(ref m) if m.len() == 5));
        })
    });

    let expr = query::parser::parse("topk(10, hundred_k)").expect("parse");
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("topk_10_instant_100k_series", |b| {
        b.iter(|| {
            let v = engine.instant(&storage, &expr, T_END, None).expect("eval");
            assert!(matches!(v, QueryValue::Vector { ref samples, .. } if samples.len() == 10));
        })
    });

    let expr = query::parser::parse(r#"count({__name__=~".+"})"#).expect("parse");
    g.throughput(Throughput::Elements(110_001));
    g.bench_function("count_all_series_instant", |b| {
        b.iter(|| {
            let v = engine.instant(&storage, &expr, T_END, None).expect("eval");
            assert!(matches!(v, QueryValue::Vector { ref samples, .. } if samples.len() == 1));
        })
    });
    g.finish();
}

criterion_group!(benches, bench_queries);
criterion_main!(benches);
