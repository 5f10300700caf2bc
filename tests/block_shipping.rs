//! Built-in block shipping (`--storage.tsdb.upload.config`) against a real S3-compatible server
//! (`moto_server`, PyPI `moto[server]`) and a FILESYSTEM bucket: blocks in Thanos's layout with the
//! `thanos` section in meta.json, meta.json uploaded last, the state file, late blocks shipped as
//! level-1 blocks before local compaction merges them, an interrupted upload redone after `kill -9`,
//! retention holding blocks until they are uploaded, and the bucket's blocks served by Prometheus 2.42
//! with the same answers as Strata.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{block_dirs, format_time, prometheus, request, series, PromServer, Server};

/// 2h-aligned start.
const T0: i64 = 1_699_999_200_000;
const H: i64 = 3_600_000;
const STEP: i64 = 60_000;
const SERIES: usize = 4;
const BUCKET: &str = "strata-blocks";

/// A `moto_server` on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

fn moto_installed() -> bool {
    let ok = Command::new("moto_server").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if ok.is_ok_and(|s| s.success()) {
        return true;
    }
    assert!(std::env::var("CI").is_err(), "moto_server is required in CI (pip install 'moto[server]')");
    eprintln!("skipping: moto_server not installed (pip install 'moto[server]')");
    false
}

impl Moto {
    /// Starts moto on `port` (0: a free one) and creates the bucket.
    fn start(port: u16) -> Moto {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        } else {
            port
        };
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        // moto accepts unsigned requests: a plain PUT creates the bucket.
        while ureq::put(&moto.url("")).call().is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn url(&self, key: &str) -> String {
        format!("http://127.0.0.1:{}/{BUCKET}/{key}", self.port)
    }

    /// Every object as key → (size, last modified text), listed with ListObjectsV2.
    fn list(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = ureq::get(&self.url("")).query("list-type", "2");
            if let Some(t) = &token {
                req = req.query("continuation-token", t);
            }
            let xml = req.call().unwrap().into_string().unwrap();
            for item in xml.split("<Contents>").skip(1) {
                let key = between(item, "<Key>", "</Key>").to_string();
                let size: u64 = between(item, "<Size>", "</Size>").parse().unwrap();
                out.insert(key, size);
            }
            if xml.contains("<IsTruncated>true</IsTruncated>") {
                token = Some(between(&xml, "<NextContinuationToken>", "</NextContinuationToken>").to_string());
            } else {
                return out;
            }
        }
    }

    /// Downloads every object under `prefix` into `to` (keys without the prefix as paths), with
    /// boto3 (moto's dependency): moto refuses unsigned GETs of objects.
    fn download(&self, prefix: &str, to: &Path) {
        let script = format!(
            "import boto3, os\n\
             s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', aws_access_key_id='test',\n\
             \x20   aws_secret_access_key='test', region_name='us-east-1')\n\
             for page in s3.get_paginator('list_objects_v2').paginate(Bucket='{BUCKET}', Prefix='{prefix}'):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       dst = os.path.join('{to}', o['Key'][len('{prefix}'):])\n\
             \x20       os.makedirs(os.path.dirname(dst), exist_ok=True)\n\
             \x20       s3.download_file('{BUCKET}', o['Key'], dst)\n",
            port = self.port,
            to = to.display(),
        );
        let out = Command::new("python3").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "download: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    }

    fn bucket_config(&self, dir: &Path, prefix: &str) -> PathBuf {
        let path = dir.join(format!("bucket-{}.yml", self.port));
        std::fs::write(
            &path,
            format!(
                "type: S3\nconfig:\n  bucket: {BUCKET}\n  endpoint: 127.0.0.1:{}\n  access_key: test\n  \
                 secret_key: test\n  insecure: true\n  region: us-east-1\n  bucket_lookup_type: path\nprefix: {prefix}\n",
                self.port
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    s.split(open).nth(1).and_then(|r| r.split(close).next()).unwrap_or_default()
}

fn config_file(dir: &Path) -> PathBuf {
    let path = dir.join("strata.yml");
    std::fs::write(&path, "global:\n  external_labels:\n    cluster: eu-1\n    replica: a\n").unwrap();
    path
}

fn value(s: usize, t: i64) -> f64 {
    (s * 100_000) as f64 + ((t - T0) / STEP) as f64
}

/// Sends every `STEP` in `[from, to)` for all series whose step index satisfies `keep`.
fn send(srv: &Server, from: i64, to: i64, keep: impl Fn(i64) -> bool) {
    let mut t = from;
    while t < to {
        let end = (t + 30 * STEP).min(to);
        let mut ts = Vec::new();
        for s in 0..SERIES {
            let samples: Vec<(i64, f64)> = (0..)
                .map(|i| t + i * STEP)
                .take_while(|x| *x < end)
                .filter(|x| keep(*x))
                .map(|x| (x, value(s, x)))
                .collect();
            if !samples.is_empty() {
                ts.push(series("ship", &[("s", &s.to_string())], &samples));
            }
        }
        if !ts.is_empty() {
            let (code, body) = srv.write(&request(ts));
            assert_eq!(code, 204, "{body}\n{}", srv.log_text());
        }
        t = end;
    }
}

fn local_meta(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap()
}

fn state_file(data: &Path) -> BTreeSet<String> {
    let Ok(text) = std::fs::read_to_string(data.join("thanos.shipper.json")) else { return BTreeSet::new() };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], 1);
    v["uploaded"].as_array().map(|a| a.iter().map(|u| u.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

fn wait_until(what: &str, srv: &Server, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}\n{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ULIDs with a meta.json in the bucket listing (keys under `prefix`).
fn shipped(objects: &BTreeMap<String, u64>, prefix: &str) -> BTreeSet<String> {
    objects.keys().filter_map(|k| k.strip_prefix(prefix)?.strip_suffix("/meta.json").map(str::to_string)).collect()
}

/// Checks one uploaded block against the local one: every file present with its size, meta.json
/// with the thanos section.
fn check_layout(objects: &BTreeMap<String, u64>, prefix: &str, ulid: &str, meta: &serde_json::Value) {
    let t = &meta["thanos"];
    assert_eq!(t["labels"], serde_json::json!({"cluster": "eu-1", "replica": "a"}), "{meta}");
    assert_eq!(t["downsample"]["resolution"], 0);
    assert_eq!(t["source"], "sidecar");
    assert_eq!(meta["ulid"], ulid);
    assert_eq!(meta["compaction"]["level"], 1, "only level-1 blocks are shipped");
    assert!(meta.get("strata").is_none());
    let files = t["files"].as_array().unwrap();
    let segments: Vec<&str> = t["segment_files"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(!segments.is_empty());
    for f in files {
        let rel = f["rel_path"].as_str().unwrap();
        let key = format!("{prefix}{ulid}/{rel}");
        let size = objects.get(&key).unwrap_or_else(|| panic!("{key} missing from the bucket"));
        if rel != "meta.json" {
            assert_eq!(f["size_bytes"].as_u64(), Some(*size), "{rel}");
        }
    }
    let mut want: Vec<String> = segments.iter().map(|s| format!("chunks/{s}")).collect();
    want.extend(["index".to_string(), "meta.json".to_string()]);
    let got: Vec<&str> = files.iter().map(|f| f["rel_path"].as_str().unwrap()).collect();
    assert_eq!(got, want);
    let in_bucket: Vec<&String> = objects.keys().filter(|k| k.starts_with(&format!("{prefix}{ulid}/"))).collect();
    assert_eq!(in_bucket.len(), want.len(), "no other objects: {in_bucket:?}");
}

/// (a) layout, thanos section, state file, metrics; late data shipped as a level-1 block before it
/// is merged locally; (c) the bucket's blocks downloaded into an empty directory answer queries in
/// Prometheus 2.42 as Strata does.
#[test]
fn blocks_reach_an_s3_bucket_in_thanos_layout_and_prometheus_serves_them() {
    if !moto_installed() {
        return;
    }
    let prom = prometheus();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let moto = Moto::start(0);
    let bucket = moto.bucket_config(dir.path(), "tenant-a");
    let cfg = config_file(dir.path());
    let args = [
        format!("--config.file={}", cfg.display()),
        format!("--storage.tsdb.upload.config={}", bucket.display()),
        "--storage.tsdb.upload.interval=200ms".to_string(),
        "--storage.tsdb.compaction-interval=200ms".to_string(),
        "--storage.tsdb.out-of-order-time-window=12h".to_string(),
        "--storage.tsdb.max-block-duration=6h".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let srv = Server::start(&data, &args);
    let started = Instant::now();
    // Every 10th step held back, sent late below.
    let late = |t: i64| (t - T0) / STEP % 10 == 3;
    send(&srv, T0, T0 + 8 * H, |t| !late(t));
    // Head compaction writes [T0, +2h), [+2h, +4h) and [+4h, +6h) while the head spans over 3h.
    wait_until("three blocks uploaded", &srv, Duration::from_secs(120), || state_file(&data).len() >= 3);
    let first_round = started.elapsed();
    let objects = moto.list();
    let before_late = shipped(&objects, "tenant-a/");
    assert_eq!(before_late.len(), 3, "{objects:?}");
    // The late samples land in blocks of their own, overlapping the shipped ones.
    send(&srv, T0, T0 + 6 * H, late);
    wait_until("the late blocks uploaded and merged locally", &srv, Duration::from_secs(120), || {
        shipped(&moto.list(), "tenant-a/").len() >= 6
            && block_dirs(&data).iter().all(|d| local_meta(d)["compaction"]["level"].as_u64() > Some(1))
    });
    let objects = moto.list();
    let ulids = shipped(&objects, "tenant-a/");
    assert_eq!(ulids.len(), 6, "three blocks and three late blocks: {ulids:?}");
    assert!(objects.keys().all(|k| k.starts_with("tenant-a/")), "{objects:?}");
    let copy = dir.path().join("from-bucket");
    std::fs::create_dir_all(copy.join("wal")).unwrap();
    moto.download("tenant-a/", &copy);
    let mut ranges = Vec::new();
    let mut total_bytes = 0;
    for u in &ulids {
        let meta = local_meta(&copy.join(u));
        check_layout(&objects, "tenant-a/", u, &meta);
        ranges.push((meta["minTime"].as_i64().unwrap(), meta["maxTime"].as_i64().unwrap()));
        total_bytes +=
            objects.iter().filter(|(k, _)| k.starts_with(&format!("tenant-a/{u}/"))).map(|(_, s)| s).sum::<u64>();
    }
    ranges.sort();
    assert_eq!(
        ranges,
        vec![
            (T0, T0 + 2 * H),
            (T0, T0 + 2 * H),
            (T0 + 2 * H, T0 + 4 * H),
            (T0 + 2 * H, T0 + 4 * H),
            (T0 + 4 * H, T0 + 6 * H),
            (T0 + 4 * H, T0 + 6 * H)
        ],
        "each range twice: the block and its late block, both level 1"
    );
    // Locally the late blocks were merged once uploaded: nothing overlaps, nothing is level 1.
    for d in block_dirs(&data) {
        let m = local_meta(&d);
        assert!(m.get("thanos").is_none(), "the local meta.json stays as written");
    }
    assert_eq!(srv.metric("strata_shipper_uploads_total"), Some(6.0));
    assert_eq!(srv.metric("strata_shipper_upload_failures_total"), Some(0.0));
    assert_eq!(srv.metric("strata_shipper_uploaded_bytes_total"), Some(total_bytes as f64));
    assert_eq!(srv.metric("strata_shipper_oldest_block_not_uploaded_timestamp_seconds"), Some(0.0));
    eprintln!(
        "shipped 6 blocks, {total_bytes} bytes; first three blocks in the bucket {:.1}s after the first write",
        first_round.as_secs_f64()
    );

    // (c) The bucket's blocks, downloaded, in Prometheus 2.42.
    let Some(prom) = prom else { return };
    let p = PromServer::start(&prom, &copy, &[]);
    let end = T0 + 6 * H - STEP;
    let queries = ["ship", "sum(ship)", "rate(ship[10m])", "count_over_time(ship[1h])", "max by (s) (ship)"];
    for q in queries {
        let params = [("query", q), ("start", &format_time(T0)), ("end", &format_time(end)), ("step", "300")];
        let mut params: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, v.to_string())).collect();
        params.truncate(4);
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let want = p.get_json("/api/v1/query_range", &pairs);
        let (code, got) = srv.get_json("/api/v1/query_range", &pairs);
        assert_eq!(code, 200, "{got}");
        assert_eq!(want["status"], "success", "{q}: {want}");
        assert!(!want["data"]["result"].as_array().unwrap().is_empty(), "{q}: Prometheus found nothing");
        assert_eq!(sorted_result(&got), sorted_result(&want), "{q}");
    }
}

fn sorted_result(v: &serde_json::Value) -> Vec<String> {
    let mut r: Vec<String> = v["data"]["result"].as_array().unwrap().iter().map(|s| s.to_string()).collect();
    r.sort();
    r
}

/// (b) The bucket is down: uploads fail and are retried, retention keeps the blocks not uploaded,
/// `/-/ready` stays 200, and SIGTERM still ends the process cleanly. A crash (abort, as `kill -9`)
/// in the middle of an upload (after the data files, before meta.json) leaves a block without
/// meta.json in the bucket and out of the state file; after a restart it is uploaded completely,
/// each block once, and retention then deletes the old blocks.
#[test]
fn an_upload_cut_by_a_crash_is_redone_and_retention_waits_for_it() {
    if !moto_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let moto = Moto::start(0);
    let port = moto.port;
    let bucket = moto.bucket_config(dir.path(), "");
    drop(moto);
    let cfg = config_file(dir.path());
    let args = [
        format!("--config.file={}", cfg.display()),
        format!("--storage.tsdb.upload.config={}", bucket.display()),
        "--storage.tsdb.upload.interval=200ms".to_string(),
        "--storage.tsdb.compaction-interval=200ms".to_string(),
        // Blocks ending 2h before the newest block's end are beyond retention.
        "--storage.tsdb.retention.time=2h".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut srv = Server::start(&data, &args);
    send(&srv, T0, T0 + 8 * H, |_| true);
    wait_until("three blocks written and two failed rounds", &srv, Duration::from_secs(120), || {
        block_dirs(&data).len() >= 3 && srv.metric("strata_shipper_upload_failures_total").unwrap_or(0.0) >= 2.0
    });
    let oldest = srv.metric("strata_shipper_oldest_block_not_uploaded_timestamp_seconds").unwrap();
    assert!(oldest > 0.0, "{oldest}");
    assert_eq!(srv.metric("strata_shipper_blocks_not_uploaded"), Some(3.0));
    let r = srv.request("GET", "/-/ready").call().unwrap();
    assert_eq!(r.status(), 200, "uploads are not a readiness concern");
    // Two of the three blocks are beyond the 2h retention, but not uploaded: kept.
    std::thread::sleep(Duration::from_millis(600));
    let local: Vec<String> =
        block_dirs(&data).iter().map(|d| d.file_name().unwrap().to_str().unwrap().to_string()).collect();
    assert_eq!(local.len(), 3, "{}", srv.log_text());
    assert!(srv.log_text().contains("block beyond retention kept: not uploaded yet"));
    assert!(state_file(&data).is_empty());
    // Shutdown does not wait for the failing uploads.
    assert!(srv.sigterm().success(), "{}", srv.log_text());

    // The bucket is back (empty); the first upload is cut short after the data files.
    let moto = Moto::start(port);
    // Started directly: it may abort before it would be seen ready.
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .args(&args)
        .env("STRATA_CRASH_AT", "shipper-before-meta")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("strata did not reach the crash point");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{status:?}");
    let objects = moto.list();
    assert!(shipped(&objects, "").is_empty(), "meta.json is uploaded last: {objects:?}");
    let partial: BTreeSet<String> = objects.keys().map(|k| k.split('/').next().unwrap().to_string()).collect();
    assert_eq!(partial.len(), 1, "{objects:?}");
    let first = partial.iter().next().unwrap().clone();
    assert!(objects.contains_key(&format!("{first}/index")), "{objects:?}");
    assert!(objects.contains_key(&format!("{first}/chunks/000001")), "{objects:?}");
    assert_eq!(first, local[0], "the oldest block goes first");
    assert!(state_file(&data).is_empty(), "nothing is recorded before meta.json is in the bucket");

    // Restarted normally: everything uploaded, then the old blocks leave by retention.
    let srv = Server::start(&data, &args);
    wait_until("all three blocks uploaded", &srv, Duration::from_secs(60), || shipped(&moto.list(), "").len() == 3);
    wait_until("retention after the upload", &srv, Duration::from_secs(60), || block_dirs(&data).len() == 1);
    let objects = moto.list();
    let ulids = shipped(&objects, "");
    assert_eq!(ulids, local.iter().cloned().collect::<BTreeSet<_>>(), "{objects:?}");
    let copy = dir.path().join("from-bucket");
    moto.download("", &copy);
    for u in &ulids {
        check_layout(&objects, "", u, &local_meta(&copy.join(u)));
    }
    assert_eq!(srv.metric("strata_shipper_uploads_total"), Some(3.0), "each block uploaded once by this process");
    assert_eq!(srv.metric("strata_shipper_upload_failures_total"), Some(0.0));
    assert_eq!(srv.metric("strata_shipper_blocks_not_uploaded"), Some(0.0));
    assert!(srv.log_text().contains("deleting block beyond retention"));
}

/// FILESYSTEM bucket: the same layout under a directory, with a prefix; a restart does not upload
/// again.
#[test]
fn blocks_reach_a_filesystem_bucket_and_a_restart_does_not_upload_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = dir.path().join("bucket");
    let bucket = dir.path().join("bucket.yml");
    std::fs::write(&bucket, format!("type: filesystem\nconfig:\n  directory: {}\nprefix: p/q\n", root.display()))
        .unwrap();
    let cfg = config_file(dir.path());
    let args = [
        format!("--config.file={}", cfg.display()),
        format!("--storage.tsdb.upload.config={}", bucket.display()),
        "--storage.tsdb.upload.interval=200ms".to_string(),
        "--storage.tsdb.compaction-interval=200ms".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut srv = Server::start(&data, &args);
    send(&srv, T0, T0 + 6 * H, |_| true);
    wait_until("two blocks uploaded", &srv, Duration::from_secs(120), || state_file(&data).len() == 2);
    let mut objects = BTreeMap::new();
    walk(&root, &root, &mut objects);
    let ulids = shipped(&objects, "p/q/");
    assert_eq!(ulids, state_file(&data));
    for u in &ulids {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("p/q").join(u).join("meta.json")).unwrap()).unwrap();
        check_layout(&objects, "p/q/", u, &meta);
        let local = local_meta(&data.join(u));
        assert_eq!(meta["stats"], local["stats"]);
        assert_eq!(meta["compaction"], local["compaction"]);
    }
    // The status API reports the state file as the delay-compact file.
    let (_, flags) = srv.get_json("/api/v1/status/flags", &[]);
    assert_eq!(
        flags["data"]["storage.tsdb.delay-compact-file.path"].as_str(),
        Some(data.join("thanos.shipper.json").to_str().unwrap())
    );
    srv.sigterm();
    let srv = Server::start(&data, &args);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(srv.metric("strata_shipper_uploads_total"), Some(0.0), "{}", srv.log_text());
    assert_eq!(state_file(&data), ulids);
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            out.insert(rel, e.metadata().unwrap().len());
        }
    }
}

/// Bad bucket files stop the start with a message naming the problem.
#[test]
fn bad_bucket_configs_are_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let no_labels = dir.path().join("empty.yml");
    std::fs::write(&no_labels, "global: {}\n").unwrap();
    let cases = [
        ("type: SWIFT\nconfig: {}\n", &cfg, "is not supported by Strata"),
        ("type: S3\nconfig:\n  bucket: b\n  endpoint: http://x:9000\n", &cfg, "without a scheme"),
        ("type: S3\nconfig:\n  bucket: b\n  endpoint: x:9000\n  sse_config: {}\n", &cfg, "not implemented"),
        ("type: FILESYSTEM\nconfig:\n  directory: /tmp/x\n", &no_labels, "needs global.external_labels"),
    ];
    for (text, config, want) in cases {
        let bucket = dir.path().join("bucket.yml");
        std::fs::write(&bucket, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.upload.config={}", bucket.display()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
    }
}
