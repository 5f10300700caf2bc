//! A block Strata writes with integer and float native histogram chunks, put into the data
//! directory of Prometheus 2.42 (`--enable-feature=native-histograms`): Prometheus must answer
//! `/api/v1/query` (a range selector: the raw samples) and `/api/v1/query_range` with exactly the
//! histograms written (count, sum and every non-empty bucket with its boundaries), including where
//! the block writer merged overlapping chunks first-wins and cut chunks at a counter reset and at
//! a schema change.
//!
//! Skipped with a message when `prometheus` is not installed; a failure under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "test code")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tsdb::block::{write_block, Compaction};
use tsdb::chunk::{ChunkData, ChunkMeta};
use tsdb::chunkenc::{CounterResetHeader, HistogramChunk};
use tsdb::histogram::{CounterResetHint, FloatHistogram, Histogram, HistogramValue, Span};
use tsdb::labels::Labels;

/// Start of the block: a multiple of 2h, as Prometheus aligns blocks.
const T0: i64 = 1_700_006_400_000;
const BLOCK_MS: i64 = 7_200_000;
const STEP_MS: i64 = 15_000;
const N: i64 = 40;

fn prometheus() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("prometheus")).find(|p| p.is_file()));
    if found.is_none() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "prometheus is required under CI=true");
        eprintln!("skipping: prometheus is not installed (the Debian package `prometheus` has 2.42)");
    }
    found
}

/// A GET over HTTP/1.0 (the answer ends at connection close, never chunked): (status, body).
fn get(addr: &str, path_and_query: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Prom {
    child: Child,
    addr: String,
}

impl Prom {
    fn start(bin: &Path, data: &Path) -> Prom {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = data.with_extension("yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(["--enable-feature=native-histograms", "--storage.tsdb.retention.time=100y"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Prom { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(&p.addr, "/-/ready").map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn query(&self, path: &str, params: &[(&str, String)]) -> serde_json::Value {
        let qs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        let (status, body) = get(&self.addr, &format!("{path}?{}", qs.join("&"))).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Delta-encodes absolute bucket counts.
fn deltas(abs: &[i64]) -> Vec<i64> {
    abs.iter().scan(0, |prev, &a| Some(a - std::mem::replace(prev, a))).collect()
}

const POS_SPANS: [Span; 2] = [Span { offset: 0, length: 2 }, Span { offset: 1, length: 1 }];
const NEG_SPANS: [Span; 1] = [Span { offset: 1, length: 1 }];

/// Integer histogram `i` of the series: counts grow, fall back at 15 (a counter reset), and the
/// schema and zero threshold change at 25 (a new chunk layout). `v` tells two versions apart.
fn int_hist(i: i64, v: i64) -> Histogram {
    let c = if i < 15 { i } else { i - 15 } + v;
    let (schema, zt) = if i < 25 { (0, 0.001) } else { (-1, 0.5) };
    let pos = [c, 2 * c + 1, 0];
    let neg = c + 3;
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema,
        zero_threshold: zt,
        zero_count: c as u64,
        count: (c + pos.iter().sum::<i64>() + neg) as u64,
        sum: c as f64 * 1.25 - 3.5,
        positive_spans: POS_SPANS.to_vec(),
        positive_buckets: deltas(&pos),
        negative_spans: NEG_SPANS.to_vec(),
        negative_buckets: vec![neg],
        custom_values: Vec::new(),
    }
}

fn float_hist(i: i64) -> FloatHistogram {
    let c = i as f64 * 0.25;
    let pos = vec![c, c + 0.5, 1.75];
    let neg = vec![c * 3.0];
    FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 0,
        zero_threshold: 0.001,
        zero_count: 0.0,
        count: pos.iter().sum::<f64>() + neg.iter().sum::<f64>(),
        sum: -c,
        positive_spans: POS_SPANS.to_vec(),
        positive_buckets: pos,
        negative_spans: NEG_SPANS.to_vec(),
        negative_buckets: neg,
        custom_values: Vec::new(),
    }
}

/// A histogram as the query API's JSON shows it: (count, sum, [(boundary rule, lower, upper, count)]).
type JsonHistogram = (f64, f64, Vec<(i64, f64, f64, f64)>);

/// The upper bound of bucket `idx` for a schema <= 0 (powers of 2^(2^-schema)).
fn bound(idx: i32, schema: i32) -> f64 {
    2f64.powi(idx << -schema)
}

/// What Prometheus 2.42's JSON shows for `h`: (count, sum, [(boundary rule, lower, upper, count)])
/// of the non-empty buckets, negative ones first (highest first), then the zero bucket, then the
/// positive ones, each clamped to the zero bucket.
fn expected(h: &FloatHistogram) -> JsonHistogram {
    let expand = |spans: &[Span]| -> Vec<i32> {
        let mut idx = 0;
        let mut out = Vec::new();
        for s in spans {
            idx += s.offset;
            for _ in 0..s.length {
                out.push(idx);
                idx += 1;
            }
        }
        out
    };
    let mut buckets = Vec::new();
    let neg: Vec<(i32, f64)> = expand(&h.negative_spans).into_iter().zip(h.negative_buckets.iter().copied()).collect();
    for &(i, c) in neg.iter().rev() {
        let upper = (-bound(i - 1, h.schema)).min(-h.zero_threshold);
        buckets.push((1, -bound(i, h.schema), upper, c));
    }
    if h.zero_count > 0.0 {
        buckets.push((3, -h.zero_threshold, h.zero_threshold, h.zero_count));
    }
    for (i, c) in expand(&h.positive_spans).into_iter().zip(h.positive_buckets.iter().copied()) {
        buckets.push((0, bound(i - 1, h.schema).max(h.zero_threshold), bound(i, h.schema), c));
    }
    buckets.retain(|b| b.3 != 0.0);
    (h.count, h.sum, buckets)
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

/// A JSON histogram as `expected` shapes it.
fn parse(h: &serde_json::Value) -> JsonHistogram {
    let buckets = h["buckets"]
        .as_array()
        .map(|bs| bs.iter().map(|b| (b[0].as_i64().unwrap(), num(&b[1]), num(&b[2]), num(&b[3]))).collect())
        .unwrap_or_default();
    (num(&h["count"]), num(&h["sum"]), buckets)
}

fn labels(name: &str) -> Labels {
    Labels::from_pairs(&[("__name__", name), ("job", "hist")]).unwrap()
}

#[test]
fn prometheus_answers_the_histograms_of_our_block() {
    let Some(bin) = prometheus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let t = |i: i64| T0 + i * STEP_MS;

    // Integer histograms: an encoded chunk of the first 12 samples, then a raw chunk of samples
    // 8..40 that overlaps it with other values (the encoded chunk, listed first, wins 8..11).
    let mut first = HistogramChunk::new(CounterResetHeader::Unknown);
    for i in 0..12 {
        first.append(t(i), &int_hist(i, 0)).unwrap();
    }
    let first = ChunkMeta::new(t(0), t(11), ChunkData::Histogram(first.bytes().into()));
    let rest: Vec<(i64, HistogramValue)> =
        (8..N).map(|i| (t(i), HistogramValue::Int(int_hist(i, 100 * i64::from(i < 12))))).collect();
    let ints = vec![first, ChunkMeta::raw_histograms(&rest).unwrap()];
    let floats: Vec<(i64, HistogramValue)> = (0..N).map(|i| (t(i), HistogramValue::Float(float_hist(i)))).collect();
    let series = vec![(labels("h_float"), vec![ChunkMeta::raw_histograms(&floats).unwrap()]), (labels("h_int"), ints)];
    let level1 = Compaction { level: 1, ..Compaction::default() };
    let meta = write_block(&data, series, T0, T0 + BLOCK_MS, level1, None).unwrap().unwrap();
    assert_eq!(meta.stats.num_samples, 2 * N as u64);

    let want_int: Vec<(i64, FloatHistogram)> = (0..N).map(|i| (t(i), int_hist(i, 0).to_float())).collect();
    let want_float: Vec<(i64, FloatHistogram)> = (0..N).map(|i| (t(i), float_hist(i))).collect();

    let prom = Prom::start(&bin, &data);
    let last = (t(N - 1) as f64 / 1000.0).to_string();
    for (name, want) in [("h_int", &want_int), ("h_float", &want_float)] {
        // The raw samples.
        let r = prom.query("/api/v1/query", &[("query", format!("{name}[15m]")), ("time", last.clone())]);
        assert_eq!(r["status"], "success", "{r}");
        let result = r["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{r}");
        assert!(result[0].get("values").is_none(), "float samples: {r}");
        let got: Vec<(i64, JsonHistogram)> = result[0]["histograms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, parse(&p[1])))
            .collect();
        let want_json: Vec<_> = want.iter().map(|(t, h)| (*t, expected(h))).collect();
        assert_eq!(got, want_json, "{name}");
        // Evaluated at each sample's timestamp: the sample itself.
        let params = [
            ("query", name.to_string()),
            ("start", (t(0) as f64 / 1000.0).to_string()),
            ("end", last.clone()),
            ("step", "15".to_string()),
        ];
        let r = prom.query("/api/v1/query_range", &params);
        let got: Vec<_> = r["data"]["result"][0]["histograms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, parse(&p[1])))
            .collect();
        assert_eq!(got, want_json, "{name} query_range");
    }
}
