//! Remote-write in order and out of order, read back over the query API.

use std::collections::BTreeMap;

use crate::util::{request, series, value_string, Server};

const T0: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;

#[test]
fn in_order_and_out_of_order_batches_read_back_sorted_and_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--storage.tsdb.out-of-order-time-window=1h"]);

    let mut want: BTreeMap<i64, f64> = BTreeMap::new();
    // Batch 1: in order, every minute for 60 minutes, skipping every third minute.
    let batch1: Vec<(i64, f64)> = (0..60).filter(|i| i % 3 != 0).map(|i| (T0 + i * MIN, i as f64)).collect();
    // Batch 2: the skipped minutes arrive late (out of order), in reverse.
    let batch2: Vec<(i64, f64)> =
        (0..60).rev().filter(|i| i % 3 == 0).map(|i| (T0 + i * MIN, i as f64 + 0.5)).collect();
    want.extend(batch1.iter().copied());
    want.extend(batch2.iter().copied());

    let (code, body) = srv.write(&request(vec![series("ooo_test", &[("job", "a")], &batch1)]));
    assert_eq!(code, 204, "{body}");
    let (code, body) = srv.write(&request(vec![series("ooo_test", &[("job", "a")], &batch2)]));
    assert_eq!(code, 204, "{body}");
    // A sender's retry of both batches changes nothing and is acknowledged.
    let (code, body) = srv.write(&request(vec![
        series("ooo_test", &[("job", "a")], &batch1),
        series("ooo_test", &[("job", "a")], &batch2),
    ]));
    assert_eq!(code, 204, "{body}");

    let end = T0 + 59 * MIN;
    let got = srv.raw_samples(r#"ooo_test{job="a"}"#, "2h", end);
    assert_eq!(got.len(), 1, "{got:?}");
    let expected: Vec<(i64, String)> = want.iter().map(|(&t, &v)| (t, value_string(v))).collect();
    assert_eq!(got[0].1, expected);
    assert!(got[0].0.contains(r#""__name__":"ooo_test""#) && got[0].0.contains(r#""job":"a""#));

    // Instant vector selector: the newest sample within the 5m lookback.
    let (code, json) =
        srv.get_json("/api/v1/query", &[("query", "ooo_test"), ("time", &crate::util::format_time(end + 2 * MIN))]);
    assert_eq!(code, 200);
    assert_eq!(json["data"]["resultType"], "vector");
    assert_eq!(json["data"]["result"][0]["value"][1], "59");
    // Past the lookback: nothing.
    let (_, json) =
        srv.get_json("/api/v1/query", &[("query", "ooo_test"), ("time", &crate::util::format_time(end + 6 * MIN))]);
    assert_eq!(json["data"]["result"].as_array().map(Vec::len), Some(0), "{json}");

    // Range query at 1m steps returns each minute's sample, including the late ones.
    let (code, json) = srv.get_json(
        "/api/v1/query_range",
        &[
            ("query", "ooo_test"),
            ("start", &crate::util::format_time(T0)),
            ("end", &crate::util::format_time(end)),
            ("step", "60"),
        ],
    );
    assert_eq!(code, 200, "{json}");
    let values = json["data"]["result"][0]["values"].as_array().expect("values");
    assert_eq!(values.len(), 60);
    assert_eq!(values[3][1], "3.5");
    assert_eq!(values[4][1], "4");

    // Metadata endpoints.
    let (_, json) = srv.get_json("/api/v1/series", &[("match[]", "ooo_test")]);
    assert_eq!(json["data"], serde_json::json!([{"__name__": "ooo_test", "job": "a"}]));
    let (_, json) = srv.get_json("/api/v1/labels", &[]);
    assert_eq!(json["data"], serde_json::json!(["__name__", "job"]));
    let (_, json) = srv.get_json("/api/v1/label/job/values", &[]);
    assert_eq!(json["data"], serde_json::json!(["a"]));
}

#[test]
fn window_zero_rejects_out_of_order_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    let (code, body) = srv.write(&request(vec![series("w0", &[], &[(T0, 1.0), (T0 + MIN, 2.0)])]));
    assert_eq!(code, 204, "{body}");
    let (code, body) = srv.write(&request(vec![series("w0", &[], &[(T0 + 30_000, 9.0)])]));
    assert_eq!(code, 400);
    assert!(body.contains("out of order sample"), "{body}");
    let got = srv.raw_samples("w0", "1h", T0 + MIN);
    assert_eq!(got[0].1, vec![(T0, "1".to_string()), (T0 + MIN, "2".to_string())]);
}

#[test]
fn config_file_sets_the_out_of_order_window() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.yml");
    std::fs::write(&cfg, "storage:\n  tsdb:\n    out_of_order_time_window: 30m\n").unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &[&format!("--config.file={}", cfg.display())]);
    let now = T0 + 120 * MIN;
    assert_eq!(srv.write(&request(vec![series("cfg", &[], &[(now, 1.0)])])).0, 204);
    // 20 minutes late: inside the window.
    let (code, body) = srv.write(&request(vec![series("cfg", &[], &[(now - 20 * MIN, 2.0)])]));
    assert_eq!(code, 204, "{body}");
    // 40 minutes late: too old.
    let (code, body) = srv.write(&request(vec![series("cfg", &[], &[(now - 40 * MIN, 3.0)])]));
    assert_eq!(code, 400);
    assert!(body.contains("too old sample"), "{body}");
    let got = srv.raw_samples("cfg", "1h", now);
    assert_eq!(got[0].1, vec![(now - 20 * MIN, "2".to_string()), (now, "1".to_string())]);
}

#[test]
fn a_late_value_at_a_stored_timestamp_is_acknowledged_and_the_first_stored_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--storage.tsdb.out-of-order-time-window=1h"];
    let mut srv = Server::start(dir.path(), &args);
    let in_order: Vec<(i64, f64)> = (0..10).filter(|i| i % 2 == 0).map(|i| (T0 + i * MIN, i as f64)).collect();
    assert_eq!(srv.write(&request(vec![series("late_conflict", &[], &in_order)])).0, 204);
    // Late: a new timestamp, then other values at it and at a stored in-order timestamp. Prometheus
    // 2.42 acknowledges all of these too; Strata reads the value stored first.
    let (code, body) = srv.write(&request(vec![series("late_conflict", &[], &[(T0 + 3 * MIN, 3.0)])]));
    assert_eq!(code, 204, "{body}");
    let (code, body) = srv.write(&request(vec![series(
        "late_conflict",
        &[],
        &[(T0 + 2 * MIN, -2.0), (T0 + 3 * MIN, -3.0), (T0 + 5 * MIN, 5.0)],
    )]));
    assert_eq!(code, 204, "{body}");
    // Only -3 is counted: it met the late 3. The -2 is stored beside the in-order 2 (not compared)
    // and shadowed on read; it is counted once compaction drops it.
    assert_eq!(srv.metric("strata_head_samples_conflicting_total"), Some(1.0));
    assert_eq!(srv.metric("strata_head_samples_shadowed_total"), Some(0.0));
    // Within one request, a second value at a timestamp is still an error naming it.
    let (code, body) =
        srv.write(&request(vec![series("late_conflict", &[], &[(T0 + 7 * MIN, 7.0), (T0 + 7 * MIN, -7.0)])]));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("duplicate sample for timestamp"), "{body}");

    let want: Vec<(i64, String)> = [(0, "0"), (2, "2"), (3, "3"), (4, "4"), (5, "5"), (6, "6"), (7, "7"), (8, "8")]
        .iter()
        .map(|&(i, v)| (T0 + i * MIN, v.to_string()))
        .collect();
    assert_eq!(srv.raw_samples("late_conflict", "1h", T0 + 9 * MIN)[0].1, want);
    // The WAL replays to the same answer.
    srv.kill9();
    let srv = Server::start(dir.path(), &args);
    assert_eq!(srv.raw_samples("late_conflict", "1h", T0 + 9 * MIN)[0].1, want);
}
