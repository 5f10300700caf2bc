//! The TSDB admin API's `delete_series` and `clean_tombstones`: refused like Prometheus without
//! `--web.enable-admin-api` and on bad parameters; deleted samples (in blocks and in the head) are
//! left out of every read, also after a restart and a `kill -9` right after the 204; promtool's
//! dump of the blocks leaves them out too; `clean_tombstones` rewrites the blocks without them
//! (also when a crash interrupts it); a Prometheus 2.42 block with tombstones is read correctly.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{block_dirs, copy_dir, prometheus, promtool, request, series, PromServer, Server};

/// 2h-aligned start.
const T0: i64 = 1_699_999_200_000;
const H: i64 = 3_600_000;
const MIN: i64 = 60_000;
const SERIES: usize = 3;

type Samples = BTreeMap<(usize, i64), f64>;

/// Sends one sample per minute in `[from, to)` for every series.
fn send(srv: &Server, from: i64, to: i64) -> Samples {
    let mut sent = Samples::new();
    let mut t = from;
    while t < to {
        let end = (t + H).min(to);
        let mut ts = Vec::new();
        for s in 0..SERIES {
            let samples: Vec<(i64, f64)> =
                (t..end).step_by(MIN as usize).map(|x| (x, (s * 100_000) as f64 + ((x - T0) / MIN) as f64)).collect();
            sent.extend(samples.iter().map(|&(x, v)| ((s, x), v)));
            ts.push(series("tomb", &[("s", &s.to_string())], &samples));
        }
        let (code, body) = srv.write(&request(ts));
        assert_eq!(code, 204, "{body}\n{}", srv.log_text());
        t = end;
    }
    sent
}

/// Every sample of `tomb` via a range selector; fails on a repeated timestamp.
fn query_all(srv: &Server, end: i64) -> Samples {
    let mut out = Samples::new();
    for (metric, values) in srv.raw_samples("tomb", "2d", end) {
        let m: serde_json::Value = serde_json::from_str(&metric).unwrap();
        let s: usize = m["s"].as_str().unwrap().parse().unwrap();
        for (t, v) in values {
            assert!(out.insert((s, t), v.parse().unwrap()).is_none(), "duplicate sample {s} {t}");
        }
    }
    out
}

/// (status, body) of a request with a form body (may be empty).
fn call(srv: &Server, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    match ureq::request(method, &srv.url(path)).send_form(form) {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

fn delete(srv: &Server, form: &[(&str, &str)]) {
    let (code, body) = call(srv, "POST", "/api/v1/admin/tsdb/delete_series", form);
    assert_eq!((code, body.as_str()), (204, ""), "{}", srv.log_text());
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn forget(want: &mut Samples, s: usize, from: i64, to: i64) {
    want.retain(|&(ss, t), _| ss != s || t < from || t > to);
}

/// (ulid, numTombstones, parents) of every block.
fn block_list(data: &Path) -> Vec<(String, u64, Vec<String>)> {
    block_dirs(data)
        .iter()
        .map(|d| {
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).unwrap()).unwrap();
            let parents = m["compaction"]["parents"]
                .as_array()
                .map(|a| a.iter().map(|p| p["ulid"].as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            (m["ulid"].as_str().unwrap().to_string(), m["stats"]["numTombstones"].as_u64().unwrap_or(0), parents)
        })
        .collect()
}

/// What `promtool tsdb dump` shows of `tomb` in a copy of `data`'s blocks (with an empty WAL).
fn promtool_dump(promtool: &Path, data: &Path, copy: &Path) -> Samples {
    std::fs::create_dir_all(copy).unwrap();
    for b in block_dirs(data) {
        copy_dir(&b, &copy.join(b.file_name().unwrap()));
    }
    std::fs::create_dir_all(copy.join("wal")).unwrap();
    let out = Command::new(promtool).args(["tsdb", "dump"]).arg(copy).output().unwrap();
    assert!(out.status.success(), "promtool tsdb dump: {}", String::from_utf8_lossy(&out.stderr));
    let mut dumped = Samples::new();
    for line in String::from_utf8(out.stdout).unwrap().lines().filter(|l| l.starts_with("{__name__=\"tomb\"")) {
        // {__name__="tomb", s="1"} 100012 1699999380000
        let (labels, rest) = line.rsplit_once('}').unwrap();
        let mut parts = rest.split_whitespace();
        let v: f64 = parts.next().unwrap().parse().unwrap();
        let t: i64 = parts.next().unwrap().parse().unwrap();
        let s: usize = labels.split("s=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!(dumped.insert((s, t), v).is_none(), "promtool shows {s}@{t} twice");
    }
    dumped
}

#[test]
fn delete_series_refused_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &[]);
    for p in ["delete_series?match[]=up", "clean_tombstones"] {
        for method in ["POST", "PUT"] {
            let (code, body) = call(&srv, method, &format!("/api/v1/admin/tsdb/{p}"), &[]);
            assert_eq!(code, 500, "{method} {p}: {body}");
            assert_eq!(body, r#"{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}"#);
        }
        assert_eq!(call(&srv, "GET", &format!("/api/v1/admin/tsdb/{p}"), &[]).0, 405, "{p}");
    }
    drop(srv);

    let srv = Server::start(&dir.path().join("data2"), &["--web.enable-admin-api"]);
    let path = "/api/v1/admin/tsdb/delete_series";
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], r#"{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}"#),
        (
            &[("match[]", "up"), ("start", "abc")],
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"start\": Invalid time value for 'start': cannot parse \"abc\" to a valid timestamp"}"#,
        ),
        (
            &[("match[]", "up"), ("end", "abc")],
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"end\": Invalid time value for 'end': cannot parse \"abc\" to a valid timestamp"}"#,
        ),
        (&[("match[]", "up{")], r#"invalid parameter \"match[]\": "#),
        (&[("match[]", "up"), ("match[]", "rate(up[5m])")], r#"invalid parameter \"match[]\": "#),
    ];
    for (form, want) in cases {
        for method in ["POST", "PUT"] {
            let (code, body) = call(&srv, method, path, form);
            assert_eq!(code, 400, "{method} {form:?}: {body}");
            assert!(body.starts_with(r#"{"status":"error","errorType":"bad_data","error":"#), "{body}");
            assert!(body.contains(want), "{method} {form:?}: {body}");
        }
    }
    // Nothing matches, or the range is empty: nothing to do, still 204.
    assert_eq!(call(&srv, "POST", path, &[("match[]", "nothing_here")]).0, 204);
    assert_eq!(call(&srv, "PUT", path, &[("match[]", "up"), ("start", "100"), ("end", "50")]).0, 204);
    assert_eq!(call(&srv, "PUT", "/api/v1/admin/tsdb/clean_tombstones", &[]).0, 204);
}

#[test]
fn deleted_samples_stay_deleted_in_blocks_head_restarts_and_clean_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--web.enable-admin-api", "--storage.tsdb.compaction-interval=200ms"];
    let mut srv = Server::start(&data, &args);
    // 7h of data: the oldest ranges are compacted into blocks, the rest stays in the head.
    let end = T0 + 7 * H;
    let mut want = send(&srv, T0, end);
    let deadline = Instant::now() + Duration::from_secs(120);
    while block_dirs(&data).len() < 2 {
        assert!(Instant::now() < deadline, "no blocks were cut\n{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(query_all(&srv, end), want);
    let blocks_end = T0 + 4 * H;

    // Series 0 whole (blocks and head); series 1 inside the first block (form body); series 2 in
    // the head and across the end of the blocks (URL parameters, PUT).
    delete(&srv, &[("match[]", r#"tomb{s="0"}"#)]);
    forget(&mut want, 0, i64::MIN, i64::MAX);
    let (a, b) = (T0 + 30 * MIN, T0 + 90 * MIN);
    delete(&srv, &[("match[]", r#"tomb{s="1"}"#), ("start", &secs(a)), ("end", &secs(b))]);
    forget(&mut want, 1, a, b);
    let (c, d) = (blocks_end - 10 * MIN, T0 + 6 * H);
    let url =
        format!("/api/v1/admin/tsdb/delete_series?match[]=tomb%7Bs%3D%222%22%7D&start={}&end={}", secs(c), secs(d));
    assert_eq!(call(&srv, "PUT", &url, &[]).0, 204);
    forget(&mut want, 2, c, d);
    assert_eq!(query_all(&srv, end), want, "reads after delete_series");
    assert!(want.keys().any(|k| k.0 == 1) && want.keys().any(|k| k.0 == 2));

    // The blocks carry tombstones files in Prometheus's format, counted in meta.json.
    let stones: u64 = block_list(&data).iter().map(|b| b.1).sum();
    assert!(stones >= 3, "{:?}", block_list(&data));
    // /api/v1/series leaves out the wholly deleted series; label values still list it, as in Prometheus.
    let (code, json) = srv.get_json("/api/v1/series", &[("match[]", "tomb")]);
    assert_eq!(code, 200, "{json}");
    let listed: Vec<&str> = json["data"].as_array().unwrap().iter().map(|l| l["s"].as_str().unwrap()).collect();
    assert_eq!(listed, ["1", "2"], "{json}");
    let (_, json) = srv.get_json("/api/v1/label/s/values", &[]);
    assert_eq!(json["data"], serde_json::json!(["0", "1", "2"]));
    // Instant queries and aggregations see the deletion too.
    let (_, json) = srv.get_json("/api/v1/query", &[("query", "count(tomb)"), ("time", &secs(T0 + 6 * H - MIN))]);
    assert_eq!(json["data"]["result"][0]["value"][1], "1", "only series 1 has a sample at 6h-1m: {json}");

    // kill -9 right after a head deletion's 204: the deletion is in the WAL.
    let (e, f) = (T0 + 6 * H + 10 * MIN, T0 + 6 * H + 20 * MIN);
    delete(&srv, &[("match[]", r#"tomb{s="1"}"#), ("start", &secs(e)), ("end", &secs(f))]);
    forget(&mut want, 1, e, f);
    srv.kill9();
    drop(srv);
    let mut srv = Server::start(&data, &args);
    assert_eq!(query_all(&srv, end), want, "after kill -9");
    // A clean restart (checkpoint at shutdown) keeps them too.
    srv.sigterm();
    drop(srv);
    let srv = Server::start(&data, &args);
    assert_eq!(query_all(&srv, end), want, "after a clean restart");

    // promtool applies the blocks' tombstones.
    let in_blocks = |want: &Samples, blocks: &Path| -> Samples {
        let max: i64 = block_dirs(blocks)
            .iter()
            .map(|d| {
                let m: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).unwrap()).unwrap();
                m["maxTime"].as_i64().unwrap()
            })
            .max()
            .unwrap();
        want.iter().filter(|((_, t), _)| *t < max).map(|(k, v)| (*k, *v)).collect()
    };
    let promtool = promtool();
    if let Some(p) = &promtool {
        let dumped = promtool_dump(p, &data, &dir.path().join("dump1"));
        assert_eq!(dumped, in_blocks(&want, &data), "promtool tsdb dump of blocks with tombstones");
    }

    // clean_tombstones rewrites every block with tombstones; the old ones are gone.
    let before = block_list(&data);
    let (code, body) = call(&srv, "POST", "/api/v1/admin/tsdb/clean_tombstones", &[]);
    assert_eq!((code, body.as_str()), (204, ""), "{}", srv.log_text());
    let after = block_list(&data);
    assert!(after.iter().all(|b| b.1 == 0), "tombstones left: {after:?}");
    for (ulid, stones, _) in &before {
        let gone = !after.iter().any(|b| &b.0 == ulid);
        assert_eq!(gone, *stones > 0, "{ulid}: {before:?} → {after:?}");
        if *stones > 0 {
            assert!(after.iter().any(|b| b.2.contains(ulid)), "no block names {ulid} as parent: {after:?}");
        }
    }
    assert_eq!(query_all(&srv, end), want, "after clean_tombstones");
    if let Some(p) = &promtool {
        let dumped = promtool_dump(p, &data, &dir.path().join("dump2"));
        assert_eq!(dumped, in_blocks(&want, &data), "promtool tsdb dump of the rewritten blocks");
    }
    drop(srv);

    // A crash between writing a rewritten block and deleting the old one: the old one is deleted
    // at the next start and nothing is read twice.
    let srv = Server::start(&data, &args);
    let (g, h) = (T0 + 150 * MIN, T0 + 160 * MIN);
    delete(&srv, &[("match[]", r#"tomb{s="2"}"#), ("start", &secs(g)), ("end", &secs(h))]);
    forget(&mut want, 2, g, h);
    drop(srv);
    let mut srv = Server::start_with_env(&data, &args, &[("STRATA_CRASH_AT", "after-clean-tombstones-write")]);
    let r = ureq::post(&srv.url("/api/v1/admin/tsdb/clean_tombstones")).send_string("");
    assert!(!matches!(r, Ok(ref resp) if resp.status() == 204), "the crash point was not reached: {r:?}");
    srv.wait_exit(Duration::from_secs(30));
    let with_both = block_list(&data);
    assert!(with_both.iter().any(|b| b.1 > 0), "the old block is gone already: {with_both:?}");
    drop(srv);
    let srv = Server::start(&data, &args);
    let reopened = block_list(&data);
    assert!(reopened.iter().all(|b| b.1 == 0), "the old block was kept: {reopened:?}");
    assert_eq!(reopened.len() + 1, with_both.len());
    assert_eq!(query_all(&srv, end), want, "after the interrupted clean_tombstones");
}

#[test]
fn prometheus_blocks_with_tombstones_are_read() {
    let (Some(promtool), Some(prom)) = (promtool(), prometheus()) else { return };
    let dir = tempfile::tempdir().unwrap();
    // A block written by promtool, then tombstones written by Prometheus 2.42's delete_series.
    let mut om = String::from("# TYPE tomb gauge\n");
    let mut want = Samples::new();
    for s in 0..SERIES {
        for i in 0..120 {
            let t = T0 + i * MIN;
            let v = (s * 1000 + i as usize) as f64;
            om.push_str(&format!("tomb{{s=\"{s}\"}} {v} {}\n", t / 1000));
            want.insert((s, t), v);
        }
    }
    om.push_str("# EOF\n");
    let input = dir.path().join("input.om");
    std::fs::write(&input, om).unwrap();
    let prom_data = dir.path().join("prom");
    std::fs::create_dir_all(&prom_data).unwrap();
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&prom_data)
        .output()
        .unwrap();
    assert!(out.status.success(), "promtool create-blocks-from: {}", String::from_utf8_lossy(&out.stderr));
    let p = PromServer::start(&prom, &prom_data, &["--web.enable-admin-api", "--storage.tsdb.retention.time=100y"]);
    for form in [
        vec![("match[]", r#"tomb{s="0"}"#.to_string())],
        vec![("match[]", r#"tomb{s="1"}"#.to_string()), ("start", secs(T0 + 10 * MIN)), ("end", secs(T0 + 20 * MIN))],
        vec![("match[]", r#"tomb{s="1"}"#.to_string()), ("start", secs(T0 + 50 * MIN)), ("end", secs(T0 + 50 * MIN))],
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = ureq::post(&format!("http://{}/api/v1/admin/tsdb/delete_series", p.addr)).send_form(&form);
        assert_eq!(r.map(|r| r.status()).ok(), Some(204), "Prometheus delete_series {form:?}");
    }
    forget(&mut want, 0, i64::MIN, i64::MAX);
    forget(&mut want, 1, T0 + 10 * MIN, T0 + 20 * MIN);
    forget(&mut want, 1, T0 + 50 * MIN, T0 + 50 * MIN);
    let blocks = block_dirs(&prom_data);
    assert_eq!(blocks.len(), 1);
    let stones = std::fs::read(blocks[0].join("tombstones")).unwrap();
    assert!(stones.len() > 9, "Prometheus wrote no tombstones");

    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    copy_dir(&blocks[0], &data.join(blocks[0].file_name().unwrap()));
    let srv = Server::start(&data, &["--web.enable-admin-api", "--storage.tsdb.retention.time=100y"]);
    assert_eq!(query_all(&srv, T0 + 3 * H), want, "Strata reads Prometheus's tombstones");
    // Both answer the same for the series, label values and a range query over the deletions.
    let range = [("query", "tomb"), ("start", &secs(T0) as &str), ("end", &secs(T0 + 2 * H)), ("step", "60")];
    let checks: [(&str, &[(&str, &str)]); 4] = [
        ("/api/v1/series", &[("match[]", "tomb")]),
        ("/api/v1/series", &[("match[]", "tomb"), ("start", &secs(T0 + 10 * MIN)), ("end", &secs(T0 + 20 * MIN))]),
        ("/api/v1/label/s/values", &[]),
        ("/api/v1/query_range", &range),
    ];
    for (path, params) in checks {
        let (code, ours) = srv.get_json(path, params);
        assert_eq!(code, 200, "{path}: {ours}");
        assert_eq!(ours["data"], p.get_json(path, params)["data"], "{path} {params:?} differs from Prometheus");
    }
    drop(p);
    let (code, _) = call(&srv, "POST", "/api/v1/admin/tsdb/clean_tombstones", &[]);
    assert_eq!(code, 204);
    assert!(block_list(&data).iter().all(|b| b.1 == 0));
    assert_eq!(query_all(&srv, T0 + 3 * H), want, "after clean_tombstones");
}
