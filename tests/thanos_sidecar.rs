//! Strata under an unmodified Thanos sidecar, whose calls are made here the way the sidecar (v0.41+)
//! makes them (Thanos itself is not run): the flag check it does before shipping blocks, buildinfo,
//! the lowest timestamp from `/metrics`, the external labels from `status/config`, and the StoreAPI
//! calls it forwards (series, label names and values with `match[]`, float-second times and `limit`;
//! rules, targets, metadata, exemplars, TSDB status). Remote read (`/api/v1/read`) is not covered.
//!
//! And the shipper's side of the data directory: with `--storage.tsdb.delay-compact-file.path`,
//! level-1 blocks (out-of-order ones included) are compacted only once `thanos.shipper.json` lists
//! them as uploaded, and the sidecar's files in the data directory survive a restart untouched.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{block_dirs, prometheus, promtool, request, series, PromServer, Server};

/// The sidecar's `promclient.Flags`: the fields it decodes from `status/flags`.
#[derive(Debug, PartialEq)]
struct SidecarFlags {
    tsdb_path: String,
    min_block_ms: i64,
    max_block_ms: i64,
    delay_compact_path: String,
}

/// Go's `model.ParseDuration`: `0`, or units y w d h m s ms in that order, each at most once; an
/// empty string is an error ("empty duration string").
fn go_parse_duration(s: &str) -> Result<i64, String> {
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    if s == "0" {
        return Ok(0);
    }
    let units: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1000),
    ];
    let order = ["y", "w", "d", "h", "m", "s", "ms"];
    let (mut rest, mut ms, mut last) = (s, 0i64, None::<usize>);
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: i64 = rest[..digits].parse().map_err(|_| format!("not a valid duration string: {s:?}"))?;
        rest = &rest[digits..];
        let (unit, size) = units
            .iter()
            .find(|(u, _)| rest.starts_with(u))
            .ok_or_else(|| format!("not a valid duration string: {s:?}"))?;
        let pos = order.iter().position(|o| o == unit).unwrap();
        if last.is_some_and(|l| pos <= l) {
            return Err(format!("not a valid duration string: {s:?}"));
        }
        last = Some(pos);
        ms += n * size;
        rest = &rest[unit.len()..];
    }
    Ok(ms)
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

/// The sidecar's decode of `status/flags` (`promclient.Flags.UnmarshalJSON`): a present duration or
/// switch that does not parse fails the whole answer; absent keys are fine.
fn sidecar_decode_flags(data: &Value) -> Result<SidecarFlags, String> {
    let obj = data.as_object().ok_or("data is not an object")?;
    let text = |k: &str| obj.get(k).map(|v| v.as_str().map(str::to_owned).ok_or(format!("{k} is not a string")));
    for k in ["storage.tsdb.retention"] {
        if let Some(v) = text(k) {
            go_parse_duration(&v?).map_err(|e| format!("{k}: {e}"))?;
        }
    }
    for k in ["web.enable-admin-api", "web.enable-lifecycle"] {
        if let Some(v) = text(k) {
            go_parse_bool(&v?).map_err(|e| format!("{k}: {e}"))?;
        }
    }
    let duration = |k: &str| -> Result<i64, String> {
        match text(k) {
            Some(v) => go_parse_duration(&v?).map_err(|e| format!("{k}: {e}")),
            None => Ok(0),
        }
    };
    Ok(SidecarFlags {
        tsdb_path: text("storage.tsdb.path").transpose()?.unwrap_or_default(),
        min_block_ms: duration("storage.tsdb.min-block-duration")?,
        max_block_ms: duration("storage.tsdb.max-block-duration")?,
        delay_compact_path: text("storage.tsdb.delay-compact-file.path").transpose()?.unwrap_or_default(),
    })
}

/// The sidecar's `validatePrometheus` for `--tsdb.path=tsdb_path` and the default shipper meta file
/// name: a delay-compact path must be `<tsdb.path>/thanos.shipper.json`; without one the block
/// durations must be equal.
fn sidecar_validate(flags: &SidecarFlags, tsdb_path: &Path) -> Result<(), String> {
    let want = tsdb_path.join("thanos.shipper.json");
    if !flags.delay_compact_path.is_empty() {
        if Path::new(&flags.delay_compact_path) != want {
            return Err(format!("delay compact file path {} is not {}", flags.delay_compact_path, want.display()));
        }
        return Ok(());
    }
    if flags.min_block_ms != flags.max_block_ms {
        return Err(
            "Compaction needs to be disabled (storage.tsdb.min-block-duration = storage.tsdb.max-block-duration)"
                .into(),
        );
    }
    Ok(())
}

/// GET with the sidecar's parameters; the answer must be 2xx with `"status":"success"` and a `data`
/// (`get2xxResultWithGRPCErrors`). Returns `data`.
fn sidecar_get(srv: &Server, path: &str, params: &[(&str, &str)]) -> Value {
    let (code, json) = srv.get_json(path, params);
    assert!((200..300).contains(&code), "{path} {params:?}: {code} {json}");
    assert_eq!(json["status"], "success", "{path} {params:?}: {json}");
    assert!(!json["data"].is_null(), "{path} {params:?}: data is null: {json}");
    json["data"].clone()
}

/// `formatTime` of the sidecar: `strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)`.
fn sidecar_time(ms: i64) -> String {
    let s = format!("{}", ms as f64 / 1000.0);
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

/// A family's type and first sample value in the text format, as `expfmt.TextParser` reads them.
fn text_format_gauge(text: &str, name: &str) -> Option<(String, f64)> {
    let typ = text.lines().find_map(|l| l.strip_prefix(&format!("# TYPE {name} ")))?.to_owned();
    let value = text.lines().find_map(|l| l.strip_prefix(&format!("{name} ")))?.trim().parse().ok()?;
    Some((typ, value))
}

fn start_with_labels(dir: &Path, extra: &[&str]) -> Server {
    let cfg = dir.join("strata.yml");
    std::fs::write(&cfg, "global:\n  external_labels:\n    cluster: eu-1\n    replica: a\n").unwrap();
    let mut args = vec![format!("--config.file={}", cfg.display())];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&dir.join("data"), &args)
}

#[test]
fn every_sidecar_call_gets_what_the_sidecar_needs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shipper_file = data.join("thanos.shipper.json");
    let srv =
        start_with_labels(dir.path(), &[&format!("--storage.tsdb.delay-compact-file.path={}", shipper_file.display())]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // Ten minutes ago, at a fraction of a second.
    let t0 = now / 1000 * 1000 - 600_000 + 123;
    let mut ts = Vec::new();
    for (job, instance) in [("api", "a:1"), ("api", "b:1"), ("db", "c:1")] {
        let samples: Vec<(i64, f64)> = (0..10).map(|i| (t0 + i * 60_000, i as f64)).collect();
        ts.push(series("up", &[("job", job), ("instance", instance)], &samples));
        ts.push(series("http_requests_total", &[("job", job), ("instance", instance)], &samples));
    }
    let (code, body) = srv.write(&request(ts));
    assert_eq!(code, 204, "{body}");

    // 1. status/flags: decodes, and passes the check because the delay-compact file is the sidecar's.
    let flags = sidecar_decode_flags(&sidecar_get(&srv, "/api/v1/status/flags", &[])).unwrap();
    assert_eq!(flags.tsdb_path, data.display().to_string());
    assert_eq!(flags.min_block_ms, 2 * 3_600_000);
    assert_eq!(flags.max_block_ms, 36 * 3_600_000, "the computed default, 10% of the 15d retention");
    assert_eq!(flags.delay_compact_path, shipper_file.display().to_string());
    sidecar_validate(&flags, &data).unwrap();
    assert!(
        sidecar_validate(&SidecarFlags { delay_compact_path: String::new(), ..flags }, &data).is_err(),
        "without the delay-compact file the unequal block durations are refused"
    );

    // 2. buildinfo: a version of at least 2.24.0, so label calls carry match[].
    let version = sidecar_get(&srv, "/api/v1/status/buildinfo", &[])["version"].as_str().unwrap().to_owned();
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap()).collect();
    assert!(parts.len() == 3 && (parts[0], parts[1]) >= (2, 24), "version {version}");

    // 3. /metrics: the lowest timestamp as a gauge (whole seconds), and text Go's parser reads.
    let text = ureq::get(&srv.url("/metrics")).call().unwrap().into_string().unwrap();
    let (typ, lowest) = text_format_gauge(&text, "prometheus_tsdb_lowest_timestamp_seconds").expect(&text);
    assert_eq!(typ, "gauge");
    assert_eq!(lowest, (t0 / 1000) as f64, "the oldest sample's second");
    let (typ, head_max) = text_format_gauge(&text, "prometheus_tsdb_head_max_time_seconds").expect(&text);
    assert_eq!((typ.as_str(), head_max), ("gauge", ((t0 + 9 * 60_000) / 1000) as f64));
    assert_eq!(text_format_gauge(&text, "prometheus_tsdb_head_min_time_seconds").unwrap().1, lowest);
    if let Some(promtool) = promtool() {
        let mut check = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(out.status.success(), "promtool check metrics: {}", String::from_utf8_lossy(&out.stdout));
    }

    // 4. status/config: global.external_labels from the YAML text.
    let yaml = sidecar_get(&srv, "/api/v1/status/config", &[])["yaml"].as_str().unwrap().to_owned();
    let docs = <saphyr::Yaml as saphyr::LoadableYamlNode>::load_from_str(&yaml).unwrap();
    let labels: BTreeMap<String, String> = docs[0]
        .as_mapping_get("global")
        .and_then(|g| g.as_mapping_get("external_labels"))
        .and_then(|l| l.as_mapping())
        .expect(&yaml)
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(labels, BTreeMap::from([("cluster".into(), "eu-1".into()), ("replica".into(), "a".into())]));

    // 5. StoreAPI Series without chunks → /api/v1/series, times as the sidecar formats them: from the
    // lowest timestamp (or MinInt64) to MaxInt64 milliseconds.
    let start = sidecar_time(t0);
    assert!(start.contains('.'), "a fractional second: {start}");
    for (start, end) in [(start.as_str(), sidecar_time(i64::MAX)), ("-9223372036854776", sidecar_time(i64::MAX))] {
        let got = sidecar_get(&srv, "/api/v1/series", &[("match[]", "{job=\"api\"}"), ("start", start), ("end", &end)]);
        let got: Vec<BTreeMap<String, String>> = serde_json::from_value(got).unwrap();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got.iter().all(|s| s["job"] == "api"));
    }
    let end = sidecar_time(now);
    let got = sidecar_get(
        &srv,
        "/api/v1/series",
        &[("match[]", "{__name__=\"up\",job=\"api\"}"), ("start", &start), ("end", &end), ("limit", "1")],
    );
    assert_eq!(got.as_array().unwrap().len(), 1, "limit: {got}");
    // A window after the data holds nothing.
    let later = sidecar_time(t0 + 3_600_000);
    let got = sidecar_get(&srv, "/api/v1/series", &[("match[]", "{job=\"api\"}"), ("start", &later), ("end", &later)]);
    assert_eq!(got, serde_json::json!([]));

    // 6. LabelNames and LabelValues with match[] (buildinfo ≥ 2.24).
    let names = sidecar_get(&srv, "/api/v1/labels", &[("match[]", "{job=\"db\"}"), ("start", &start), ("end", &end)]);
    assert_eq!(names, serde_json::json!(["__name__", "instance", "job"]));
    let names = sidecar_get(&srv, "/api/v1/labels", &[("start", &start), ("end", &end), ("limit", "2")]);
    assert_eq!(names, serde_json::json!(["__name__", "instance"]));
    let values = sidecar_get(
        &srv,
        "/api/v1/label/instance/values",
        &[("match[]", "{job=\"api\"}"), ("start", &start), ("end", &end)],
    );
    assert_eq!(values, serde_json::json!(["a:1", "b:1"]));
    let values = sidecar_get(&srv, "/api/v1/label/job/values", &[("start", &start), ("end", &end), ("limit", "1")]);
    assert_eq!(values, serde_json::json!(["api"]));

    // 7. Rules, targets, metadata, exemplars and TSDB status: success with the data the sidecar decodes.
    for params in [&[][..], &[("type", "alert")][..], &[("type", "record")][..]] {
        let rules = sidecar_get(&srv, "/api/v1/rules", params);
        assert!(rules["groups"].is_array(), "{rules}");
    }
    let targets = sidecar_get(&srv, "/api/v1/targets", &[("state", "active")]);
    assert!(targets["activeTargets"].is_array() && targets["droppedTargets"].is_array(), "{targets}");
    let meta = sidecar_get(&srv, "/api/v1/metadata", &[("metric", "up"), ("limit", "10")]);
    assert!(meta.is_object(), "{meta}");
    let exemplars =
        sidecar_get(&srv, "/api/v1/query_exemplars", &[("query", "up{job=\"api\"}"), ("start", &start), ("end", &end)]);
    assert!(exemplars.is_array(), "{exemplars}");
    let tsdb = sidecar_get(&srv, "/api/v1/status/tsdb", &[("limit", "5")]);
    assert_eq!(tsdb["headStats"]["numSeries"], 6, "{tsdb}");
    assert!(tsdb["seriesCountByMetricName"].as_array().is_some_and(|a| a.len() == 2), "{tsdb}");
}

#[test]
fn equal_block_durations_pass_the_sidecar_check_without_the_delay_compact_file() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_with_labels(
        dir.path(),
        &["--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h"],
    );
    let flags = sidecar_decode_flags(&sidecar_get(&srv, "/api/v1/status/flags", &[])).unwrap();
    assert_eq!((flags.min_block_ms, flags.max_block_ms), (7_200_000, 7_200_000));
    assert_eq!(flags.delay_compact_path, "");
    sidecar_validate(&flags, &dir.path().join("data")).unwrap();
    // Nothing is in the head or in blocks: the lowest timestamp is MaxInt64 ms in seconds, as in Prometheus.
    let text = ureq::get(&srv.url("/metrics")).call().unwrap().into_string().unwrap();
    assert_eq!(
        text_format_gauge(&text, "prometheus_tsdb_lowest_timestamp_seconds"),
        Some(("gauge".to_owned(), (i64::MAX / 1000) as f64))
    );
}

#[test]
fn flags_read_as_the_kinds_prometheus_reports() {
    let Some(bin) = prometheus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &[]);
    let prom = PromServer::start(&bin, &dir.path().join("prom"), &[]);
    let ours = sidecar_get(&srv, "/api/v1/status/flags", &[]);
    let theirs = prom.get_json("/api/v1/status/flags", &[])["data"].clone();
    let mut compared = Vec::new();
    for (name, their) in theirs.as_object().unwrap() {
        let (Some(our), Some(their)) = (ours.get(name).and_then(Value::as_str), their.as_str()) else { continue };
        if go_parse_bool(their).is_ok() && their.parse::<i64>().is_err() {
            assert!(go_parse_bool(our).is_ok(), "{name}: Prometheus reports a switch ({their:?}), Strata {our:?}");
        } else if their != "0" && go_parse_duration(their).is_ok() {
            assert!(
                go_parse_duration(our).is_ok(),
                "{name}: Prometheus reports a duration ({their:?}), Strata {our:?}"
            );
        } else {
            continue;
        }
        compared.push(name.clone());
    }
    for name in ["storage.tsdb.max-block-duration", "rules.alert.resend-delay", "web.enable-lifecycle"] {
        assert!(compared.iter().any(|c| c == name), "{name} compared: {compared:?}");
    }
    // Both compute the default max block duration the same way (10% of the 15d retention).
    assert_eq!(ours["storage.tsdb.max-block-duration"], theirs["storage.tsdb.max-block-duration"]);
    assert_eq!(ours["web.route-prefix"], theirs["web.route-prefix"]);
}

/// 2h-aligned start.
const T0: i64 = 1_699_999_200_000;
const H: i64 = 3_600_000;
const STEP: i64 = 60_000;

/// A block as its meta.json says.
#[derive(Debug, Clone, PartialEq)]
struct BlockMeta {
    ulid: String,
    min_time: i64,
    max_time: i64,
    level: u64,
}

fn metas(data: &Path) -> Vec<BlockMeta> {
    block_dirs(data)
        .iter()
        .filter_map(|d| {
            // A block being deleted may vanish between the listing and the read.
            let m: Value = serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).ok()?).ok()?;
            Some(BlockMeta {
                ulid: m["ulid"].as_str()?.to_owned(),
                min_time: m["minTime"].as_i64()?,
                max_time: m["maxTime"].as_i64()?,
                level: m["compaction"]["level"].as_u64()?,
            })
        })
        .collect()
}

/// Sends `m{s="0"|"1"}` at every step in `[from, to)` offset by `offset`; returns what was sent.
fn send(srv: &Server, from: i64, to: i64, offset: i64) -> BTreeMap<(usize, i64), f64> {
    let mut sent = BTreeMap::new();
    let steps: Vec<i64> = (from..to).step_by(STEP as usize).map(|t| t + offset).collect();
    for chunk in steps.chunks(60) {
        let mut ts = Vec::new();
        for s in 0..2usize {
            let samples: Vec<(i64, f64)> =
                chunk.iter().map(|&t| (t, (s as i64 * 1_000_000 + (t - T0) / 1000) as f64)).collect();
            sent.extend(samples.iter().map(|&(t, v)| ((s, t), v)));
            ts.push(series("m", &[("s", &s.to_string())], &samples));
        }
        let (code, body) = srv.write(&request(ts));
        assert_eq!(code, 204, "{body}");
    }
    sent
}

fn query_all(srv: &Server) -> BTreeMap<(usize, i64), f64> {
    let mut out = BTreeMap::new();
    for (metric, values) in srv.raw_samples("m", "1d", T0 + 12 * H) {
        let m: Value = serde_json::from_str(&metric).unwrap();
        let s: usize = m["s"].as_str().unwrap().parse().unwrap();
        for (t, v) in values {
            assert!(out.insert((s, t), v.parse().unwrap()).is_none(), "sample {s}@{t} read twice");
        }
    }
    out
}

/// Writes the shipper's meta file as the sidecar does (tab-indented, through a temporary file).
fn write_shipper_file(path: &Path, uploaded: &[&str]) {
    let list: Vec<String> = uploaded.iter().map(|u| format!("\t\t\"{u}\"")).collect();
    let text = format!("{{\n\t\"version\": 1,\n\t\"uploaded\": [\n{}\n\t]\n}}", list.join(",\n"));
    let tmp: PathBuf = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Polls until `done` holds for the blocks and the awaiting-upload gauge (a compaction that ran
/// after the blocks appeared sets the gauge, so a matching gauge means that run left them as they are).
fn wait_for(srv: &Server, what: &str, done: impl Fn(&[BlockMeta], f64) -> bool) -> Vec<BlockMeta> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = metas(&srv.dir);
        let awaiting = srv.metric("strata_blocks_awaiting_upload").unwrap_or(-1.0);
        if done(&m, awaiting) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what}: blocks {m:?}, awaiting {awaiting}\n{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn blocks_are_compacted_only_once_the_shipper_lists_them_as_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shipper_file = data.join("thanos.shipper.json");
    let srv = Server::start(
        &data,
        &[
            &format!("--storage.tsdb.delay-compact-file.path={}", shipper_file.display()),
            "--storage.tsdb.out-of-order-time-window=6h",
            "--storage.tsdb.compaction-interval=200ms",
        ],
    );
    // The sidecar's staging directory beside the blocks.
    std::fs::create_dir_all(data.join("thanos/upload")).unwrap();

    // 8h in order: the head writes [0,2h), [2h,4h), [4h,6h). Without the file, level compaction
    // would merge the first two; with nothing uploaded all three stay level 1.
    let mut sent = send(&srv, T0, T0 + 8 * H, 0);
    let first = wait_for(&srv, "three level-1 blocks", |m, awaiting| m.len() == 3 && awaiting == 3.0);
    assert!(first.iter().all(|b| b.level == 1), "{first:?}");
    let lowest = srv.metric("prometheus_tsdb_lowest_timestamp_seconds").unwrap();
    assert_eq!(lowest, (T0 / 1000) as f64, "the oldest block's start");

    // Late samples for [2h,4h): a level-1 block overlapping the second one, left as it is.
    sent.extend(send(&srv, T0 + 2 * H, T0 + 4 * H, 30_000));
    let second = wait_for(&srv, "an overlapping level-1 block", |m, awaiting| m.len() == 4 && awaiting == 4.0);
    assert!(second.iter().all(|b| b.level == 1), "{second:?}");
    assert!(first.iter().all(|b| second.contains(b)), "the first three blocks are untouched: {second:?}");
    let late = second.iter().find(|b| !first.contains(b)).unwrap().clone();
    assert_eq!((late.min_time, late.max_time), (T0 + 2 * H, T0 + 4 * H));
    assert!(data.join(&late.ulid).is_dir() && data.join(&first[1].ulid).is_dir(), "both directories remain");
    assert_eq!(query_all(&srv), sent, "overlapping blocks read as one");

    // The three in-order blocks uploaded, not the late one: the first two are merged (level
    // compaction); the late block, and the merged block created after it, wait.
    let (b1, b2, b3) = (&first[0].ulid, &first[1].ulid, &first[2].ulid);
    write_shipper_file(&shipper_file, &[b1, b2, b3]);
    let third = wait_for(&srv, "the uploaded blocks merged", |m, awaiting| m.len() == 3 && awaiting == 2.0);
    let merged = third.iter().find(|b| b.level == 2).unwrap_or_else(|| panic!("{third:?}"));
    assert_eq!((merged.min_time, merged.max_time), (T0, T0 + 4 * H));
    assert!(third.contains(&late) && third.contains(&first[2]), "{third:?}");
    assert!(!data.join(b1).exists() && !data.join(b2).exists());

    // The sidecar lists what it uploaded and is still there: the late block is merged now.
    write_shipper_file(&shipper_file, &[b3, &late.ulid]);
    let last = wait_for(&srv, "the late block merged", |m, awaiting| m.len() == 2 && awaiting == 0.0);
    let mut by_time = last.clone();
    by_time.sort_by_key(|b| b.min_time);
    assert!(by_time.windows(2).all(|w| w[0].max_time <= w[1].min_time), "no overlaps left: {last:?}");
    assert_eq!((by_time[0].min_time, by_time[0].max_time, by_time[0].level), (T0, T0 + 4 * H, 3), "{last:?}");
    assert!(!data.join(&late.ulid).exists());
    assert_eq!(query_all(&srv), sent);
    assert!(data.join("thanos/upload").is_dir(), "the sidecar's directory is left alone");

    // A restart in the middle of an upload: the sidecar's staging copy (hard links of a block's
    // files) and its half-written meta file are not blocks.
    let staged = data.join("thanos/upload").join(&last[0].ulid);
    std::fs::create_dir_all(staged.join("chunks")).unwrap();
    let block = data.join(&last[0].ulid);
    for f in ["index", "meta.json", "chunks/000001"] {
        std::fs::hard_link(block.join(f), staged.join(f)).unwrap();
    }
    std::fs::write(data.join("thanos.shipper.json.tmp"), "{\"version\": 1, \"upl").unwrap();
    let mut srv = srv;
    assert!(srv.sigterm().success());
    let srv = Server::start(&data, &[&format!("--storage.tsdb.delay-compact-file.path={}", shipper_file.display())]);
    assert_eq!(metas(&data), last, "the same blocks after a restart");
    assert_eq!(query_all(&srv), sent);
    assert!(staged.join("index").is_file(), "the staging copy is the sidecar's to remove");
}
