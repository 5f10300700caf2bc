//! The TSDB admin API's snapshot: refused like Prometheus without `--web.enable-admin-api`; with it,
//! a snapshot holds hard links of the blocks plus the head (in-order and late samples) as a block, and
//! a Strata started on a copy of it, and promtool, read back exactly the samples the original serves.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{block_dirs, copy_dir, format_time, prometheus, promtool, request, series, PromServer, Server};

/// 2h-aligned start.
const T0: i64 = 1_699_999_200_000;
const H: i64 = 3_600_000;
const STEP: i64 = 60_000;
const SERIES: usize = 4;

type Samples = BTreeMap<(usize, i64), f64>;

/// Sends every step in `[from, to)` for all series; `late` selects only the held-back steps (every
/// 10th after `T0 + H`), otherwise they are left out.
fn send(srv: &Server, from: i64, to: i64, late: bool) -> Samples {
    let mut sent = Samples::new();
    let mut t = from;
    while t < to {
        let end = (t + H).min(to);
        let mut ts = Vec::new();
        for s in 0..SERIES {
            let samples: Vec<(i64, f64)> = (t..end)
                .step_by(STEP as usize)
                .filter(|&x| (x >= T0 + H && (x - T0) / STEP % 10 == 0) == late)
                .map(|x| (x, (s * 100_000) as f64 + ((x - T0) / STEP) as f64 + 0.5))
                .collect();
            sent.extend(samples.iter().map(|&(x, v)| ((s, x), v)));
            ts.push(series("snap", &[("s", &s.to_string())], &samples));
        }
        let (code, body) = srv.write(&request(ts));
        assert_eq!(code, 204, "{body}\n{}", srv.log_text());
        t = end;
    }
    sent
}

/// Every sample of `snap` via the API; fails on a repeated timestamp.
fn query_all(srv: &Server) -> Samples {
    let mut out = Samples::new();
    for (metric, values) in srv.raw_samples("snap", "2d", T0 + 10 * H) {
        let m: serde_json::Value = serde_json::from_str(&metric).unwrap();
        let s: usize = m["s"].as_str().unwrap().parse().unwrap();
        for (t, v) in values {
            assert!(out.insert((s, t), v.parse().unwrap()).is_none(), "duplicate sample {s} {t}");
        }
    }
    out
}

/// (status, body) of a request to an admin path.
fn call(srv: &Server, method: &str, path: &str) -> (u16, String) {
    match ureq::request(method, &srv.url(path)).send_string("") {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// Takes a snapshot; returns its directory.
fn snapshot(srv: &Server, query: &str) -> std::path::PathBuf {
    let (code, body) = call(srv, "POST", &format!("/api/v1/admin/tsdb/snapshot{query}"));
    assert_eq!(code, 200, "{body}\n{}", srv.log_text());
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "success", "{body}");
    let name = json["data"]["name"].as_str().unwrap();
    // <YYYYMMDDTHHMMSSZ>-<16 hex digits>
    let (stamp, rand) = name.split_once('-').unwrap();
    assert!(stamp.len() == 16 && stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z'), "{name}");
    assert!(rand.len() == 16 && rand.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    let dir = srv.dir.join("snapshots").join(name);
    assert!(dir.is_dir(), "{dir:?} missing");
    dir
}

#[test]
fn snapshot_disabled_answers_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &[]);
    for q in ["", "?skip_head=true", "?skip_head=bad"] {
        for method in ["POST", "PUT"] {
            let (code, body) = call(&srv, method, &format!("/api/v1/admin/tsdb/snapshot{q}"));
            assert_eq!(code, 500, "{method} {q}: {body}");
            assert_eq!(body, r#"{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}"#);
        }
    }
    assert_eq!(call(&srv, "GET", "/api/v1/admin/tsdb/snapshot").0, 405);
    assert!(!srv.dir.join("snapshots").exists());
}

#[test]
fn snapshot_holds_blocks_and_head_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "--web.enable-admin-api",
        "--storage.tsdb.out-of-order-time-window=8h",
        "--storage.tsdb.compaction-interval=200ms",
    ];
    let srv = Server::start(&data, &args);
    let (code, body) = call(&srv, "POST", "/api/v1/admin/tsdb/snapshot?skip_head=yes");
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body,
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"skip_head\": unable to parse boolean: strconv.ParseBool: parsing \"yes\": invalid syntax"}"#
    );
    // A form body's value wins over the URL's, as in Prometheus.
    let r = ureq::post(&srv.url("/api/v1/admin/tsdb/snapshot?skip_head=true")).send_form(&[("skip_head", "no")]);
    let Err(ureq::Error::Status(code, _)) = r else { panic!("a bad skip_head in the body was accepted: {r:?}") };
    assert_eq!(code, 400);

    // In-order data over 7h: the oldest ranges are compacted into blocks, the rest stays in the head.
    let mut sent = send(&srv, T0, T0 + 7 * H, false);
    let deadline = Instant::now() + Duration::from_secs(120);
    while block_dirs(&data).len() < 2 {
        assert!(Instant::now() < deadline, "no blocks were cut\n{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Late samples, both for the blocks' ranges and inside the head's range.
    sent.extend(send(&srv, T0, T0 + 7 * H, true));
    assert_eq!(query_all(&srv), sent, "the original does not answer what was sent");

    let names = |d: &Path| block_dirs(d).iter().map(|b| b.file_name().unwrap().to_owned()).collect::<Vec<_>>();
    // Compaction of the late data may merge blocks while the snapshots are taken: a snapshot's block
    // came from the data directory if it was there before or after them.
    let mut data_blocks: std::collections::HashSet<_> = names(&data).into_iter().collect();
    let full = snapshot(&srv, "");
    let only_blocks = snapshot(&srv, "?skip_head=true");
    assert_ne!(full, only_blocks);
    data_blocks.extend(names(&data));
    // Blocks of the data directory are hard links (compaction may have added blocks in between).
    for snap in [&full, &only_blocks] {
        for b in block_dirs(snap) {
            let orig = data.join(b.file_name().unwrap());
            if orig.exists() {
                let (a, o) =
                    (std::fs::metadata(b.join("index")).unwrap(), std::fs::metadata(orig.join("index")).unwrap());
                assert_eq!((a.dev(), a.ino()), (o.dev(), o.ino()), "{b:?} is not a hard link");
                assert!(a.nlink() >= 2);
            }
        }
    }
    let head_blocks: Vec<_> = names(&full).into_iter().filter(|n| !data_blocks.contains(n)).collect();
    assert_eq!(head_blocks.len(), 1, "the full snapshot holds one block for the head: {:?}", names(&full));
    assert!(names(&only_blocks).iter().all(|n| data_blocks.contains(n)), "skip_head wrote a head block");

    // The original still answers everything, and takes in-order samples after the head's end.
    assert_eq!(query_all(&srv), sent);
    sent.extend(send(&srv, T0 + 7 * H, T0 + 7 * H + 10 * STEP, false));
    assert_eq!(query_all(&srv), sent);
    let want: Samples = sent.iter().filter(|((_, t), _)| *t < T0 + 7 * H).map(|(k, v)| (*k, *v)).collect();

    // A Strata started on a copy of the snapshot (with an empty WAL) answers the same samples.
    let copy = dir.path().join("copy");
    copy_dir(&full, &copy);
    std::fs::create_dir_all(copy.join("wal")).unwrap();
    {
        let second = Server::start(&copy, &["--storage.tsdb.retention.time=100y"]);
        assert_eq!(query_all(&second), want, "a Strata on the snapshot answers differently");
    }

    // promtool reads the snapshot (a fresh copy: the server above wrote its own WAL and lock).
    let Some(promtool) = promtool() else { return };
    let copy2 = dir.path().join("copy2");
    copy_dir(&full, &copy2);
    std::fs::create_dir_all(copy2.join("wal")).unwrap();
    let list = Command::new(&promtool).args(["tsdb", "list"]).arg(&copy2).output().unwrap();
    assert!(list.status.success(), "promtool tsdb list: {}", String::from_utf8_lossy(&list.stderr));
    let out = Command::new(&promtool).args(["tsdb", "dump"]).arg(&copy2).output().unwrap();
    assert!(out.status.success(), "promtool tsdb dump: {}", String::from_utf8_lossy(&out.stderr));
    let mut dumped = Samples::new();
    for line in String::from_utf8(out.stdout).unwrap().lines().filter(|l| l.starts_with('{')) {
        // {__name__="snap", s="3"} 300012.5 1699999380000
        let (labels, rest) = line.rsplit_once('}').unwrap();
        let mut parts = rest.split_whitespace();
        let v: f64 = parts.next().unwrap().parse().unwrap();
        let t: i64 = parts.next().unwrap().parse().unwrap();
        let s: usize = labels.split("s=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        // Overlapping blocks (late data) are merged by `dump` only per block: keep one per (s, t).
        if let Some(old) = dumped.insert((s, t), v) {
            assert_eq!(old, v, "promtool shows two values for {s}@{t}");
        }
    }
    assert_eq!(dumped, want, "promtool tsdb dump differs from what was sent");

    // Prometheus 2.42 started on another copy answers what the original answers for the same window.
    let Some(prom) = prometheus() else { return };
    let copy3 = dir.path().join("copy3");
    copy_dir(&full, &copy3);
    std::fs::create_dir_all(copy3.join("wal")).unwrap();
    let prom_srv = PromServer::start(&prom, &copy3, &["--storage.tsdb.retention.time=100y"]);
    let params = [("query", "snap[2d]"), ("time", &format_time(T0 + 7 * H - 1) as &str)];
    let (_, ours) = srv.get_json("/api/v1/query", &params);
    let theirs = prom_srv.get_json("/api/v1/query", &params);
    assert_eq!(ours["status"], "success", "{ours}");
    assert_eq!(ours["data"], theirs["data"], "Prometheus on the snapshot answers differently");
}
