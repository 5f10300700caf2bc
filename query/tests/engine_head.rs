//! Evaluator tests over a real head for what the Prometheus suite covers poorly: staleness with
//! out-of-order writes, lookback and range edges, chunk boundaries, and head-vs-model agreement.

use std::sync::Arc;

use query::engine::mem::MemStorage;
use query::engine::{Engine, Labels, QueryValue, Storage};
use query::storage::TsdbStorage;

const STALE: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

fn head() -> (tempfile::TempDir, Arc<tsdb::Db>) {
    tsdb::testing::temp_db(tsdb::testing::memory_options(3_600_000))
}

fn append(db: &tsdb::Db, name: &str, samples: &[(i64, f64)]) {
    let mut app = db.head().appender();
    for &(t, v) in samples {
        app.append_pairs(&[("__name__", name), ("job", "a")], t, v).unwrap_or_else(|e| panic!("append {t}: {e}"));
    }
    app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
}

fn instant(st: &dyn Storage, q: &str, t: i64) -> Vec<(String, f64)> {
    let expr = query::parser::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    match Engine::default().instant(st, &expr, t, None).unwrap_or_else(|e| panic!("{q}: {e}")) {
        QueryValue::Vector { samples, .. } => samples.into_iter().map(|s| (s.labels.to_string(), s.v)).collect(),
        QueryValue::Scalar { v, .. } => vec![(String::new(), v)],
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn stale_marker_hides_series_until_a_later_out_of_order_sample() {
    let (_d, head) = head();
    append(&head, "m", &[(0, 1.0), (60_000, 2.0), (120_000, STALE), (300_000, 5.0)]);
    let st = TsdbStorage::new(Arc::clone(&head));
    assert_eq!(instant(&st, "m", 90_000), vec![("{__name__=\"m\", job=\"a\"}".into(), 2.0)]);
    assert!(instant(&st, "m", 150_000).is_empty(), "stale marker must hide the series");
    // An out-of-order sample before the marker does not resurrect the series after it …
    append(&head, "m", &[(100_000, 3.0)]);
    assert!(instant(&st, "m", 150_000).is_empty());
    assert_eq!(instant(&st, "m", 110_000)[0].1, 3.0);
    // … but one after the marker does.
    append(&head, "m", &[(130_000, 4.0)]);
    assert_eq!(instant(&st, "m", 150_000)[0].1, 4.0);
    // Range selectors drop stale markers.
    assert_eq!(instant(&st, "count_over_time(m[5m])", 299_000)[0].1, 4.0);
}

#[test]
fn lookback_and_ranges_include_both_ends() {
    let (_d, head) = head();
    append(&head, "m", &[(0, 1.0), (600_000, 2.0)]);
    let st = TsdbStorage::new(Arc::clone(&head));
    assert_eq!(instant(&st, "m", 300_000).len(), 1, "sample exactly 5m old is within the lookback");
    assert!(instant(&st, "m", 300_001).is_empty());
    assert_eq!(instant(&st, "count_over_time(m[10m])", 600_000)[0].1, 2.0);
    assert_eq!(instant(&st, "count_over_time(m[10m])", 600_001)[0].1, 1.0);
    assert_eq!(instant(&st, "m offset 5m", 600_000)[0].1, 1.0);
    assert_eq!(instant(&st, "m @ 600", 0)[0].1, 2.0);
}

#[test]
fn head_and_model_agree_across_chunk_boundaries() {
    let (_d, head) = head();
    let mut mem = MemStorage::default();
    // 1000 samples at 1s (several XOR chunks), a counter with a reset, then an out-of-order batch.
    let mut samples: Vec<(i64, f64)> =
        (0..1000).map(|i| (i * 1000, if i < 600 { i as f64 } else { (i - 600) as f64 })).collect();
    append(&head, "c", &samples);
    let ooo: Vec<(i64, f64)> = (0..50).map(|i| (i * 1000 + 500, i as f64 + 0.5)).collect();
    append(&head, "c", &ooo);
    samples.extend(ooo);
    let labels = Labels::from_pairs(&[("__name__", "c"), ("job", "a")]);
    for (t, v) in samples {
        mem.add(labels.clone(), t, v);
    }
    let st = TsdbStorage::new(Arc::clone(&head));
    for q in [
        "c",
        "rate(c[1m])",
        "increase(c[2m])",
        "resets(c[10m])",
        "max_over_time(c[5m])",
        "deriv(c[30s])",
        "sum_over_time(c[1m:10s])",
    ] {
        for t in [30_000, 119_500, 120_000, 600_000, 700_000, 999_000, 1_200_000] {
            assert_eq!(instant(&st, q, t), instant(&mem, q, t), "{q} at {t}");
        }
        let expr = query::parser::parse(q).unwrap_or_else(|e| panic!("{e}"));
        let a = Engine::default().range(&st, &expr, 0, 1_300_000, 7_000, None).unwrap_or_else(|e| panic!("{e}"));
        let b = Engine::default().range(&mem, &expr, 0, 1_300_000, 7_000, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{q} range");
    }
}

#[test]
fn limits_give_prometheus_errors() {
    let (_d, head) = head();
    append(&head, "m", &(0..100).map(|i| (i * 1000, i as f64)).collect::<Vec<_>>());
    let st = TsdbStorage::new(Arc::clone(&head));
    let engine = Engine::new(query::EngineOptions { max_samples: 10, ..Default::default() });
    let expr = query::parser::parse("m[1m]").unwrap_or_else(|e| panic!("{e}"));
    let err = engine.instant(&st, &expr, 99_000, None).err().map(|e| (e.error_type(), e.to_string()));
    assert_eq!(
        err,
        Some(("execution", "query processing would load too many samples into memory in query execution".to_string()))
    );
    // A subquery with absurdly many steps fails with the sample limit instead of allocating them.
    let expr = query::parser::parse("max_over_time(m[100y:1ms])").unwrap_or_else(|e| panic!("{e}"));
    let err = Engine::default().instant(&st, &expr, 99_000, None).err().map(|e| e.error_type());
    assert_eq!(err, Some("execution"));
    let expr = query::parser::parse("foo_unsupported_fn").unwrap_or_else(|e| panic!("{e}"));
    assert!(Engine::default().instant(&st, &expr, 0, None).is_ok());
    let expr = query::parser::parse("sort_by_label(m, \"job\")").unwrap_or_else(|e| panic!("{e}"));
    let err = Engine::default().instant(&st, &expr, 0, None).err().map(|e| (e.error_type(), e.to_string()));
    assert_eq!(err, Some(("bad_data", "not supported: function sort_by_label()".to_string())));
}
