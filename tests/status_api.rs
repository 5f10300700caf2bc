//! The status side of the API and the operational surface, driven through the real binary:
//! `status/*`, `format_query`, the empty rule/alert/target answers, `buildinfo`, gzip-compressed
//! answers, logfmt and JSON log lines, and `/metrics` as `promtool check metrics` reads it. Where
//! Prometheus 2.42 is installed, each answer's JSON shape is compared with what it answers to the
//! same request.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{prometheus, promtool, request, series, PromServer, Server};

/// The JSON's shape: every string, number and boolean replaced by its type name, arrays by the
/// shapes of their elements.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// Endpoints whose answer a Prometheus without rules, targets or Alertmanagers gives, as
/// Prometheus 2.42 answers them.
const EMPTY_ANSWERS: [(&str, &str); 5] = [
    ("/api/v1/rules", r#"{"status":"success","data":{"groups":[]}}"#),
    ("/api/v1/alerts", r#"{"status":"success","data":{"alerts":[]}}"#),
    ("/api/v1/targets", r#"{"status":"success","data":{"activeTargets":[],"droppedTargets":[]}}"#),
    ("/api/v1/alertmanagers", r#"{"status":"success","data":{"activeAlertmanagers":[],"droppedAlertmanagers":[]}}"#),
    ("/api/v1/targets/metadata", r#"{"status":"success","data":[]}"#),
];

fn start_with_config(dir: &std::path::Path, yaml: &str) -> Server {
    let cfg = dir.join("strata.yml");
    std::fs::write(&cfg, yaml).unwrap();
    Server::start(&dir.join("data"), &[&format!("--config.file={}", cfg.display()), "--query.timeout=90s"])
}

#[test]
fn status_endpoints_answer_prometheus_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "storage:\n  tsdb:\n    out_of_order_time_window: 30m\n";
    let srv = start_with_config(dir.path(), yaml);
    let prom_dir = tempfile::tempdir().unwrap();
    let prom = prometheus().map(|bin| PromServer::start(&bin, &prom_dir.path().join("data"), &[]));

    for (path, want) in EMPTY_ANSWERS {
        let (code, got) = srv.get_json(path, &[]);
        assert_eq!(code, 200, "{path}");
        assert_eq!(got, serde_json::from_str::<Value>(want).unwrap(), "{path}");
        if let Some(p) = &prom {
            assert_eq!(got, p.get_json(path, &[]), "{path}: Prometheus answers differently");
        }
    }

    let (code, cfg) = srv.get_json("/api/v1/status/config", &[]);
    assert_eq!(code, 200);
    assert_eq!(cfg, json!({"status": "success", "data": {"yaml": yaml}}));

    let (_, flags) = srv.get_json("/api/v1/status/flags", &[]);
    let flags = flags["data"].as_object().unwrap();
    assert!(flags.values().all(Value::is_string), "flag values are strings: {flags:?}");
    assert_eq!(flags["query.timeout"], "90s", "a flag given");
    assert_eq!(flags["storage.tsdb.retention.time"], "15d", "a default");
    assert_eq!(flags["config.file"], json!(dir.path().join("strata.yml").display().to_string()));
    assert!(!flags.contains_key("help"));

    let (_, rt) = srv.get_json("/api/v1/status/runtimeinfo", &[]);
    let rt = &rt["data"];
    assert_eq!(rt["CWD"], json!(std::env::current_dir().unwrap().display().to_string()));
    assert_eq!(rt["reloadConfigSuccess"], true);
    assert_eq!(rt["corruptionCount"], 0);
    assert!(rt["goroutineCount"].as_u64().unwrap() >= 2, "threads of the process: {rt}");
    assert!(rt["GOMAXPROCS"].as_u64().unwrap() >= 1);
    assert_eq!(rt["storageRetention"], "15d");
    let start = rt["startTime"].as_str().unwrap();
    assert!(start.len() >= 20 && start.ends_with('Z') && &start[10..11] == "T", "RFC 3339: {start}");
    let want_runtime = json!({
        "startTime": "string", "CWD": "string", "reloadConfigSuccess": "bool", "lastConfigTime": "string",
        "corruptionCount": "number", "goroutineCount": "number", "GOMAXPROCS": "number", "GOGC": "string",
        "GODEBUG": "string", "storageRetention": "string",
    });
    assert_eq!(shape(rt), want_runtime);

    let (_, wal) = srv.get_json("/api/v1/status/walreplay", &[]);
    assert_eq!(shape(&wal["data"]), json!({"min": "number", "max": "number", "current": "number"}));
    assert_eq!(wal["data"]["current"], wal["data"]["max"]);

    let (_, bi) = srv.get_json("/api/v1/status/buildinfo", &[]);
    assert_eq!(bi["data"]["strataVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(bi["data"]["version"], "2.42.0", "the Prometheus API version Grafana reads");

    if let Some(p) = &prom {
        for path in ["/api/v1/status/runtimeinfo", "/api/v1/status/walreplay", "/api/v1/status/buildinfo"] {
            let (ours, theirs) = (raw_text(&srv.url(path)), raw_text(&format!("http://{}{path}", p.addr)));
            let their_keys = key_order(&theirs);
            assert!(their_keys.len() >= 3, "{theirs}");
            let our_keys: Vec<String> = key_order(&ours).into_iter().filter(|k| k != "strataVersion").collect();
            assert_eq!(their_keys, our_keys, "{path}: field order");
        }
        for path in ["/api/v1/status/runtimeinfo", "/api/v1/status/walreplay"] {
            assert_eq!(shape(&srv.get_json(path, &[]).1), shape(&p.get_json(path, &[])), "{path}");
        }
        let theirs = p.get_json("/api/v1/status/buildinfo", &[]);
        for (k, v) in theirs["data"].as_object().unwrap() {
            assert_eq!(shape(&bi["data"][k]), shape(v), "buildinfo field {k}");
        }
        let their_flags = p.get_json("/api/v1/status/flags", &[]);
        assert_eq!(shape(&their_flags["status"]), shape(&json!("success")));
        assert!(their_flags["data"].as_object().unwrap().values().all(Value::is_string));
        // Flags both servers have, with defaults both apply.
        for name in ["query.lookback-delta", "query.max-samples", "query.max-concurrency", "log.level"] {
            assert_eq!(flags[name], their_flags["data"][name], "flag {name}");
        }
    }
}

fn raw_text(url: &str) -> String {
    ureq::get(url).call().unwrap().into_string().unwrap()
}

/// The keys of a flat `data` object in the order the answer's text lists them.
fn key_order(text: &str) -> Vec<String> {
    let body = &text[text.find("\"data\":{").expect("a data object") + 8..];
    let mut keys = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '}' => break,
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => s.extend(chars.next()),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                if chars.peek() == Some(&':') {
                    keys.push(s);
                }
            }
            _ => {}
        }
    }
    keys
}

/// Queries `format_query` is compared on: promql-parser's printer answers what Prometheus 2.42 does.
const FORMAT_QUERIES: [(&str, &str); 8] = [
    ("sum(rate(x[5m]))by(job)", "sum by (job) (rate(x[5m]))"),
    ("a + on(job) group_left(x) b", "a + on (job) group_left (x) b"),
    ("(a+b)*c", "(a + b) * c"),
    ("x > bool 3", "x > bool 3"),
    ("max_over_time(rate(x[1m])[10m:1m])", "max_over_time(rate(x[1m])[10m:1m])"),
    ("x @ 100", "x @ 100.000"),
    ("1e3", "1000"),
    (
        r#"sum without (instance) (rate(node_cpu_seconds_total{mode!="idle",job="node",instance=~"host-.*"}[5m])) / on(job) group_left sum by (job) (rate(node_cpu_seconds_total{job="node"}[5m]))"#,
        "  sum without (instance) (\n    rate(node_cpu_seconds_total{instance=~\"host-.*\",job=\"node\",mode!=\"idle\"}[5m])\n  )\n/ on (job) group_left ()\n  sum by (job) (rate(node_cpu_seconds_total{job=\"node\"}[5m]))",
    ),
];

#[test]
fn format_query_prints_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &[]);
    let prom_dir = tempfile::tempdir().unwrap();
    let prom = prometheus().map(|bin| PromServer::start(&bin, &prom_dir.path().join("data"), &[]));
    for (q, want) in FORMAT_QUERIES {
        let (code, got) = srv.get_json("/api/v1/format_query", &[("query", q)]);
        assert_eq!(code, 200, "{q}: {got}");
        assert_eq!(got["data"], want, "{q}");
        let (code, posted) = srv.post_form_json("/api/v1/format_query", &[("query", q)]);
        assert_eq!((code, &posted), (200, &got), "POST {q}");
        if let Some(p) = &prom {
            assert_eq!(got, p.get_json("/api/v1/format_query", &[("query", q)]), "{q}: Prometheus prints differently");
        }
    }
    let (code, bad) = srv.get_json("/api/v1/format_query", &[("query", "sum(")]);
    assert_eq!(code, 400);
    assert_eq!(bad["errorType"], "bad_data");
    assert!(bad["error"].as_str().unwrap().contains("query"), "{bad}");
}

/// GET `path` with `Accept-Encoding: gzip` when `gzip`; returns the `Content-Encoding` and the body
/// as received.
fn get_raw(srv: &Server, path: &str, gzip: bool) -> (Option<String>, Vec<u8>) {
    let mut req = ureq::get(&srv.url(path));
    if gzip {
        req = req.set("Accept-Encoding", "gzip");
    }
    let resp = req.call().unwrap();
    let enc = resp.header("Content-Encoding").map(str::to_owned);
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    (enc, body)
}

fn gunzip(b: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(b).read_to_string(&mut out).unwrap();
    out
}

#[test]
fn answers_are_gzip_compressed_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &[]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let ts: Vec<_> = (0..50).map(|i| series("gz", &[("i", &i.to_string())], &[(now - 1000, f64::from(i))])).collect();
    assert_eq!(srv.write(&request(ts)).0, 204);

    let path = &format!("/api/v1/query?query=gz&time={}", now / 1000);
    let (enc, plain) = get_raw(&srv, path, false);
    assert_eq!(enc, None);
    let (enc, zipped) = get_raw(&srv, path, true);
    assert_eq!(enc.as_deref(), Some("gzip"));
    assert!(zipped.len() < plain.len(), "{} compressed bytes vs {} plain", zipped.len(), plain.len());
    let unzipped: Value = serde_json::from_str(&gunzip(&zipped)).unwrap();
    assert_eq!(unzipped, serde_json::from_slice::<Value>(&plain).unwrap());
    assert_eq!(unzipped["data"]["result"].as_array().unwrap().len(), 50);

    let (enc, zipped) = get_raw(&srv, "/metrics", true);
    assert_eq!(enc.as_deref(), Some("gzip"));
    assert!(gunzip(&zipped).contains("# TYPE strata_http_requests_total counter"));
}

/// Parses a logfmt line into its pairs; `None` when it is not logfmt.
fn parse_logfmt(line: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        loop {
            match chars.next()? {
                '=' => break,
                ' ' | '"' => return None,
                c => key.push(c),
            }
        }
        if key.is_empty() {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(match chars.next()? {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        c => c,
                    }),
                    c => value.push(c),
                }
            }
            if !matches!(chars.peek(), None | Some(' ')) {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                if c == '"' || c == '=' {
                    return None;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key, value);
    }
}

#[test]
fn log_lines_are_logfmt() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &["--log.format=logfmt"]);
    let log = srv.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        let pairs = parse_logfmt(line).unwrap_or_else(|| panic!("not logfmt: {line}"));
        for key in ["ts", "caller", "level", "msg"] {
            assert!(pairs.contains_key(key), "no {key}: {line}");
        }
        assert!(["debug", "info", "warn", "error"].contains(&pairs["level"].as_str()), "{line}");
    }
    let ready = lines.iter().filter_map(|l| parse_logfmt(l)).find(|p| p["msg"] == "TSDB ready").expect("TSDB ready");
    assert_eq!(ready["series"], "0");
    assert!(parse_logfmt(r#"a="unterminated"#).is_none() && parse_logfmt("a=b c").is_none(), "the parser rejects");
}

#[test]
fn log_lines_are_flat_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .args(["--web.listen-address=127.0.0.1:0", "--log.format=json"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let done = line.contains("TSDB ready");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.last().is_some_and(|l| l.contains("TSDB ready")), "{lines:?}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {line}"));
        assert!(obj.values().all(Value::is_string), "flat: {line}");
        for key in ["ts", "caller", "level", "msg"] {
            assert!(obj.contains_key(key), "no {key}: {line}");
        }
    }
}

#[test]
fn metrics_pass_promtool_check_metrics() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &[]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert_eq!(srv.write(&request(vec![series("m", &[], &[(now, 1.0)])])).0, 204);
    let _ = srv.get_json("/api/v1/query", &[("query", "m")]);
    let _ = srv.get_json("/api/v1/query", &[("query", "sum(")]);
    let (_, body) = get_raw(&srv, "/metrics", false);
    let text = String::from_utf8(body).unwrap();

    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}\n---\n{text}");

    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
    ] {
        let v = srv.metric(name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert!(v >= 0.0, "{name} = {v}");
    }
    assert!(srv.metric("process_resident_memory_bytes").unwrap() > 0.0);
    let start = srv.metric("process_start_time_seconds").unwrap();
    assert!((start - now as f64 / 1000.0).abs() < 3600.0, "start time {start} near now");
    assert!(text.contains("# TYPE strata_http_requests_total counter\n"), "{text}");
    assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
    assert!(
        text.contains(r#"strata_http_request_duration_seconds_bucket{le="+Inf",handler="/api/v1/query"}"#),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
}
