//! Blocks in Prometheus's format: head compaction (with out-of-order data merged, so no overlaps are
//! left), checked with promtool and Prometheus 2.42; Prometheus-written blocks read by Strata; crashes
//! at every compaction phase lose and duplicate nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{block_dirs, copy_dir, format_time, prometheus, promtool, request, series, PromServer, Server};

/// 2h-aligned start.
const T0: i64 = 1_699_999_200_000;
const H: i64 = 3_600_000;
const STEP: i64 = 15_000;
const SERIES: usize = 6;

type Samples = BTreeMap<(usize, i64), f64>;

fn value(s: usize, t: i64) -> f64 {
    (s * 100_000) as f64 + ((t - T0) / STEP) as f64
}

/// Sends steps in `[from, to)` for all series, skipping held-back steps (every 10th) unless
/// `held_back` is set, in which case only those are sent. Returns what was acknowledged; every
/// request must succeed.
fn send(srv: &Server, from: i64, to: i64, held_back: bool) -> Samples {
    let (acked, all) = try_send_filtered(srv, from, to, held_back);
    assert!(all, "a remote-write request failed\n{}", srv.log_text());
    acked
}

fn metas(data: &Path) -> Vec<(i64, i64)> {
    let mut v: Vec<(i64, i64)> = block_dirs(data)
        .iter()
        .map(|d| {
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).unwrap()).unwrap();
            (m["minTime"].as_i64().unwrap(), m["maxTime"].as_i64().unwrap())
        })
        .collect();
    v.sort();
    v
}

/// Waits until the blocks cover `[T0, until)` without overlaps and nothing older stays in the head.
fn wait_compacted(srv: &Server, until: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    // Head compaction writes the late data's blocks and a later pass merges them: the state counts as
    // settled once it holds, unchanged, over several compaction intervals.
    let (mut last, mut stable) = (Vec::new(), 0);
    loop {
        let m = metas(&srv.dir);
        let covered = m.first().is_some_and(|b| b.0 <= T0) && m.iter().map(|b| b.1).max().unwrap_or(0) >= until;
        let no_overlap = m.windows(2).all(|w| w[0].1 <= w[1].0);
        let head_min = srv.metric("strata_head_min_time_seconds");
        let head_ok = head_min.is_none_or(|v| v.is_nan() || (v * 1000.0) as i64 >= until);
        stable = if covered && no_overlap && head_ok && m == last { stable + 1 } else { 0 };
        if stable >= 5 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "compaction did not settle: blocks {m:?}, head min {head_min:?}\n{}",
            srv.log_text()
        );
        last = m;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every sample of `blk` via the API, as (series, t) → value; fails on a repeated timestamp.
fn query_all(srv: &Server, end: i64) -> Samples {
    let mut out = Samples::new();
    for (metric, values) in srv.raw_samples("blk", "1d", end) {
        let m: serde_json::Value = serde_json::from_str(&metric).unwrap();
        let s: usize = m["s"].as_str().unwrap().parse().unwrap();
        for (t, v) in values {
            assert!(out.insert((s, t), v.parse().unwrap()).is_none(), "duplicate sample {s} {t}");
        }
    }
    out
}

/// Copies only the block directories, with an empty `wal/` (promtool would otherwise try to read
/// Strata's WAL, whose format is Strata's own).
fn copy_blocks(data: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    std::fs::create_dir_all(to.join("wal")).unwrap();
    for b in block_dirs(data) {
        let dst = to.join(b.file_name().unwrap());
        copy_dir(&b, &dst);
    }
}

/// `promtool tsdb dump` of a directory of blocks, as (series, t) → value; fails on duplicates.
fn promtool_dump(promtool: &Path, dir: &Path) -> Samples {
    let out = Command::new(promtool).args(["tsdb", "dump"]).arg(dir).output().unwrap();
    assert!(out.status.success(), "promtool tsdb dump: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut samples = Samples::new();
    for line in text.lines().filter(|l| l.starts_with('{')) {
        // {__name__="blk", job="blocks", s="3"} 300012 1699999380000
        let (labels, rest) = line.rsplit_once('}').unwrap();
        let mut parts = rest.split_whitespace();
        let v: f64 = parts.next().unwrap().parse().unwrap();
        let t: i64 = parts.next().unwrap().parse().unwrap();
        let s: usize = labels.split("s=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!(samples.insert((s, t), v).is_none(), "promtool dump shows sample {s}@{t} twice:\n{line}");
    }
    samples
}

#[test]
fn compaction_writes_blocks_promtool_and_prometheus_read() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--storage.tsdb.out-of-order-time-window=6h", "--storage.tsdb.compaction-interval=200ms"];
    let srv = Server::start(&data, &args);
    let mut acked = send(&srv, T0, T0 + 8 * H, false);
    wait_compacted(&srv, T0 + 4 * H);
    // Late samples for ranges already in blocks (inside the 6h window): they go to new blocks that are
    // merged with the existing ones.
    acked.extend(send(&srv, T0 + 2 * H + STEP, T0 + 8 * H, true));
    let (code, body) =
        srv.write(&request(vec![series("blk", &[("s", "0"), ("job", "blocks")], &[(T0 + STEP * 7, 1.0)])]));
    assert_eq!(code, 400, "a sample older than the window must be refused: {body}");
    assert!(body.contains("too old"), "{body}");
    // More in-order data moves the head on and compacts the late data.
    acked.extend(send(&srv, T0 + 8 * H, T0 + 10 * H, false));
    wait_compacted(&srv, T0 + 6 * H);

    let end = T0 + 10 * H;
    assert_eq!(query_all(&srv, end), acked, "API answers differ from what was acknowledged");

    // promtool validates and dumps exactly the acknowledged samples of the blocks' range.
    let copy = dir.path().join("blocks");
    copy_blocks(&data, &copy);
    let metas = metas(&copy);
    assert!(metas.windows(2).all(|w| w[0].1 <= w[1].0), "overlapping blocks left: {metas:?}");
    let blocks_end = metas.iter().map(|b| b.1).max().unwrap();
    for b in block_dirs(&copy) {
        let out =
            Command::new(&promtool).args(["tsdb", "analyze"]).arg(&copy).arg(b.file_name().unwrap()).output().unwrap();
        assert!(out.status.success(), "promtool tsdb analyze {b:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let dumped = promtool_dump(&promtool, &copy);
    let want: Samples = acked.iter().filter(|((_, t), _)| *t < blocks_end).map(|(k, v)| (*k, *v)).collect();
    let missing: Vec<_> = want.keys().filter(|k| !dumped.contains_key(k)).take(5).collect();
    let extra: Vec<_> = dumped.keys().filter(|k| !want.contains_key(k)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "blocks {metas:?}: missing {missing:?}, extra {extra:?}\n{}",
        srv.log_text()
    );
    assert_eq!(dumped, want);

    // Prometheus 2.42 started on the copy answers what Strata answers.
    if let Some(prom) = prometheus() {
        let prom_srv = PromServer::start(&prom, &copy, &["--storage.tsdb.retention.time=100y"]);
        let q_end = format_time(blocks_end - STEP);
        for q in ["blk", "sum by (job) (rate(blk[5m]))", "count_over_time(blk[1h])"] {
            let params = [("query", q), ("start", &format_time(T0 + H) as &str), ("end", &q_end), ("step", "600")];
            let (_, ours) = srv.get_json("/api/v1/query_range", &params);
            let theirs = prom_srv.get_json("/api/v1/query_range", &params);
            assert_eq!(ours["status"], "success", "{q}: {ours}");
            assert_eq!(ours["data"], theirs["data"], "query {q}: Strata and Prometheus differ");
        }
    }
}

/// A series that stops receiving samples leaves the head once its samples are in a block (memory
/// stays bounded under churn), is still answered from the block, and comes back as a new series.
#[test]
fn series_that_stop_leave_the_head_once_in_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--storage.tsdb.compaction-interval=200ms"];
    let mut srv = Server::start(&data, &args);
    let minute = 60_000;
    let gone: Vec<(i64, f64)> = (0..60).map(|i| (T0 + i * minute, i as f64)).collect();
    let steady: Vec<(i64, f64)> = (0..300).map(|i| (T0 + i * minute, -(i as f64))).collect();
    for (g, s) in [(&gone[..], &steady[..60]), (&[][..], &steady[60..])] {
        let mut ts = vec![series("churn", &[("pod", "steady")], s)];
        if !g.is_empty() {
            ts.push(series("churn", &[("pod", "gone")], g));
        }
        let (code, body) = srv.write(&request(ts));
        assert_eq!(code, 204, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while srv.metric("strata_head_series_removed_total") != Some(1.0) {
        assert!(Instant::now() < deadline, "no series left the head\n{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(srv.metric("strata_head_series"), Some(1.0));
    let end = T0 + 300 * minute;
    let answered = |srv: &Server| -> BTreeMap<String, usize> {
        srv.raw_samples("churn", "1d", end).into_iter().map(|(m, v)| (m, v.len())).collect()
    };
    let want: BTreeMap<String, usize> = [
        (r#"{"__name__":"churn","pod":"gone"}"#.to_string(), 60),
        (r#"{"__name__":"churn","pod":"steady"}"#.to_string(), 300),
    ]
    .into();
    assert_eq!(answered(&srv), want, "the removed series is answered from its block");
    let (_, values) =
        srv.get_json("/api/v1/label/pod/values", &[("start", &format_time(T0)), ("end", &format_time(end))]);
    assert_eq!(values["data"], serde_json::json!(["gone", "steady"]));

    // After a restart the head still holds only the steady series.
    assert!(srv.sigterm().success());
    let srv = Server::start(&data, &args);
    assert_eq!(srv.metric("strata_head_series"), Some(1.0));
    assert_eq!(answered(&srv), want);
    // The same labels again: a new series in the head, one answer with both parts.
    let (code, body) = srv.write(&request(vec![series("churn", &[("pod", "gone")], &[(end, 7.0)])]));
    assert_eq!(code, 204, "{body}");
    assert_eq!(srv.metric("strata_head_series"), Some(2.0));
    let mut want = want;
    want.insert(r#"{"__name__":"churn","pod":"gone"}"#.to_string(), 61);
    assert_eq!(answered(&srv), want);
}

#[test]
fn strata_reads_blocks_written_by_prometheus() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    // OpenMetrics input: 3 series, 6h at 1m.
    let mut om = String::from("# TYPE om_test gauge\n");
    let mut want = Samples::new();
    for s in 0..3usize {
        for i in 0..360i64 {
            let t = T0 + i * 60_000;
            let v = (s * 1000) as f64 + i as f64 * 0.5;
            om.push_str(&format!("om_test{{s=\"{s}\"}} {v} {}\n", t / 1000));
            want.insert((s, t), v);
        }
    }
    om.push_str("# EOF\n");
    let input = dir.path().join("input.om");
    std::fs::write(&input, om).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "promtool create-blocks-from: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!block_dirs(&data).is_empty());

    let srv = Server::start(&data, &[]);
    let mut got = Samples::new();
    for (metric, values) in srv.raw_samples("om_test", "1d", T0 + 6 * H) {
        let m: serde_json::Value = serde_json::from_str(&metric).unwrap();
        let s: usize = m["s"].as_str().unwrap().parse().unwrap();
        for (t, v) in values {
            got.insert((s, t), v.parse().unwrap());
        }
    }
    assert_eq!(got, want);
    let (_, json) = srv.get_json(
        "/api/v1/series",
        &[("match[]", "om_test"), ("start", &format_time(T0)), ("end", &format_time(T0 + 6 * H))],
    );
    assert_eq!(json["data"].as_array().map(Vec::len), Some(3), "{json}");
    let (_, json) = srv.get_json("/api/v1/label/s/values", &[]);
    assert_eq!(json["data"], serde_json::json!(["0", "1", "2"]));
}

/// Kill the server at each compaction phase; after restart every acknowledged sample is there once,
/// in the API and, once compaction has settled, in the blocks.
#[test]
fn crash_at_every_compaction_phase_loses_and_duplicates_nothing() {
    let Some(promtool) = promtool() else { return };
    let args = ["--storage.tsdb.out-of-order-time-window=6h", "--storage.tsdb.compaction-interval=200ms"];
    for phase in ["after-snapshot", "after-block-write", "after-head-truncate", "after-checkpoint", "after-merge-write"]
    {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut acked;
        {
            let mut srv = Server::start_with_env(&data, &args, &[("STRATA_CRASH_AT", phase)]);
            // Before any compaction can start (span below 3h), then enough to trigger it.
            acked = send(&srv, T0, T0 + 3 * H, false);
            if phase == "after-merge-write" {
                // Merges need an overlap: write blocks first (crash point not reached by head
                // compaction), then late data for a compacted range.
                let mut rest = Samples::new();
                let mut sent_all = true;
                for (a, b) in [(3, 5), (5, 6)] {
                    let part = try_send(&srv, T0 + a * H, T0 + b * H);
                    sent_all &= part.1;
                    rest.extend(part.0);
                }
                acked.extend(rest);
                if sent_all {
                    let late = try_send_held(&srv, T0 + H, T0 + 2 * H);
                    acked.extend(late.0);
                    let more = try_send(&srv, T0 + 6 * H, T0 + 8 * H);
                    acked.extend(more.0);
                }
            } else {
                acked.extend(try_send(&srv, T0 + 3 * H, T0 + 6 * H).0);
            }
            let status = srv.wait_exit(Duration::from_secs(120));
            assert!(!status.success(), "phase {phase}: the server should have crashed; log:\n{}", srv.log_text());
        }
        let srv = Server::start(&data, &args);
        let end = T0 + 10 * H;
        let got = query_all(&srv, end);
        for (k, v) in &acked {
            assert_eq!(got.get(k), Some(v), "phase {phase}: acknowledged sample {k:?} lost");
        }
        // Let compaction finish, then check the blocks hold each sample once.
        let newest = got.keys().map(|k| k.1).max().unwrap();
        let settle_until = (newest - 3 * H).div_euclid(2 * H) * 2 * H;
        if settle_until > T0 {
            wait_compacted(&srv, settle_until);
        }
        let copy = dir.path().join("blocks");
        copy_blocks(&data, &copy);
        let dumped = promtool_dump(&promtool, &copy);
        for (k, v) in &dumped {
            assert_eq!(got.get(k), Some(v), "phase {phase}: block sample {k:?} not in the API answer");
        }
        assert_eq!(query_all(&srv, end), got, "phase {phase}: answers changed while compacting");
    }
}

/// Sends in-order steps, stopping at the first failure (the server crashed). Returns what was
/// acknowledged and whether everything was.
fn try_send(srv: &Server, from: i64, to: i64) -> (Samples, bool) {
    try_send_filtered(srv, from, to, false)
}

fn try_send_held(srv: &Server, from: i64, to: i64) -> (Samples, bool) {
    try_send_filtered(srv, from, to, true)
}

fn try_send_filtered(srv: &Server, from: i64, to: i64, held_back: bool) -> (Samples, bool) {
    let mut acked = Samples::new();
    let steps: Vec<i64> =
        (from..to).step_by(STEP as usize).filter(|t| (((t - T0) / STEP) % 10 == 7) == held_back).collect();
    for chunk in steps.chunks(100) {
        let ts = (0..SERIES)
            .map(|s| {
                let samples: Vec<(i64, f64)> = chunk.iter().map(|&t| (t, value(s, t))).collect();
                series("blk", &[("s", &s.to_string()), ("job", "blocks")], &samples)
            })
            .collect();
        let (code, _) = srv.write(&request(ts));
        if code != 204 {
            return (acked, false);
        }
        for s in 0..SERIES {
            for &t in chunk {
                acked.insert((s, t), value(s, t));
            }
        }
        // Give the compactor a chance to run between batches.
        std::thread::sleep(Duration::from_millis(5));
    }
    (acked, true)
}
