//! Native histograms through the real binary: remote-write 1.0 and 2.0, integer and float
//! histograms, read back through the HTTP API exactly as Prometheus 2.42 answers for the same
//! writes; invalid histograms rejected alone with a 400 naming the series; out-of-order histograms
//! merged (first wins); a `kill -9` after the 204 loses none, nor any exemplar; head compaction
//! writes blocks that `promtool tsdb dump` and Prometheus 2.42 read with the same answers; and a
//! Prometheus 2.42 agent scraping a protobuf native-histogram target delivers them to Strata.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ingest::proto::{self, histogram, BucketSpan, Exemplar, Label, TimeSeries, WriteRequest};
use ingest::proto_v2::{self as v2, SymbolTable};
use serde_json::Value;

use crate::util::exposition::NativeHistogramTarget;
use crate::util::{block_dirs, copy_dir, format_time, prometheus, promtool, KillOnDrop, PromServer, Server};

const STEP: i64 = 15_000;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn labels(name: &str, extra: &[(&str, &str)]) -> Vec<Label> {
    let mut ls = vec![Label { name: "__name__".into(), value: name.into() }];
    ls.extend(extra.iter().map(|(n, v)| Label { name: (*n).into(), value: (*v).into() }));
    ls
}

/// Spans as `(offset, length)`.
type Spans = Vec<(i32, u32)>;

/// Integer histogram `i` of layout `layout` (0..4): zero bucket, positive and negative buckets,
/// several schemas and span shapes; counts grow with `i` (a counter).
fn int_hist(layout: usize, i: i64, t: i64) -> proto::Histogram {
    let n = i as u64 + 1;
    let (schema, pos_spans, pos_abs, neg_spans, neg_abs): (i32, Spans, Vec<u64>, Spans, Vec<u64>) = match layout {
        0 => (0, vec![(0, 2)], vec![n, 2 * n], vec![], vec![]),
        1 => (3, vec![(-2, 2), (3, 1)], vec![n, 1, 3 * n], vec![(1, 1)], vec![n]),
        2 => (-1, vec![(1, 3)], vec![n, n, n], vec![(0, 2)], vec![2 * n, n]),
        _ => (8, vec![(100, 1)], vec![n], vec![], vec![]),
    };
    let zero = n / 2;
    let count = zero + pos_abs.iter().sum::<u64>() + neg_abs.iter().sum::<u64>();
    let deltas = |abs: &[u64]| -> Vec<i64> {
        abs.iter().scan(0i64, |prev, &a| Some(a as i64 - std::mem::replace(prev, a as i64))).collect()
    };
    let spans = |s: &[(i32, u32)]| s.iter().map(|&(offset, length)| BucketSpan { offset, length }).collect();
    proto::Histogram {
        count: Some(histogram::Count::CountInt(count)),
        sum: 1.25 * n as f64,
        schema,
        zero_threshold: 0.001,
        zero_count: Some(histogram::ZeroCount::ZeroCountInt(zero)),
        negative_spans: spans(&neg_spans),
        negative_deltas: deltas(&neg_abs),
        positive_spans: spans(&pos_spans),
        positive_deltas: deltas(&pos_abs),
        timestamp: t,
        ..Default::default()
    }
}

/// The float histogram with the same counts as integer histogram `h`.
fn as_float(h: &proto::Histogram) -> proto::Histogram {
    let abs = |d: &[i64]| -> Vec<f64> {
        d.iter()
            .scan(0i64, |c, &x| {
                *c += x;
                Some(*c as f64)
            })
            .collect()
    };
    let Some(histogram::Count::CountInt(count)) = h.count else { unreachable!() };
    let Some(histogram::ZeroCount::ZeroCountInt(zero)) = h.zero_count else { unreachable!() };
    proto::Histogram {
        count: Some(histogram::Count::CountFloat(count as f64)),
        zero_count: Some(histogram::ZeroCount::ZeroCountFloat(zero as f64)),
        negative_counts: abs(&h.negative_deltas),
        negative_deltas: Vec::new(),
        positive_counts: abs(&h.positive_deltas),
        positive_deltas: Vec::new(),
        ..h.clone()
    }
}

fn hist_series(
    name: &str,
    layout: usize,
    ts: &[i64],
    make: impl Fn(&proto::Histogram) -> proto::Histogram,
) -> TimeSeries {
    TimeSeries {
        labels: labels(name, &[("layout", &layout.to_string())]),
        histograms: ts.iter().enumerate().map(|(i, &t)| make(&int_hist(layout, i as i64, t))).collect(),
        ..Default::default()
    }
}

fn write_v1(srv: &Server, ts: Vec<TimeSeries>) -> (u16, String) {
    srv.write(&WriteRequest { timeseries: ts, ..Default::default() })
}

fn write_v2(srv: &Server, req: &v2::Request) -> (u16, [Option<u64>; 3], String) {
    let a = srv.post_v2(req);
    (a.status, a.written, a.body)
}

/// The 2.0 request carrying the 1.0 series `ts` (labels interned, histograms as they are).
fn to_v2(ts: &[TimeSeries]) -> v2::Request {
    let mut t = SymbolTable::default();
    let timeseries = ts
        .iter()
        .map(|s| v2::TimeSeries {
            labels_refs: t.label_refs(s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))),
            histograms: s.histograms.iter().map(|h| v2::Histogram::from_v1(h.clone(), 0)).collect(),
            ..Default::default()
        })
        .collect();
    v2::Request { timeseries, symbols: t.into_symbols() }
}

/// `query_range` data of `q` (the result sorted by labels), from Strata.
fn range(srv: &Server, q: &str, start: i64, end: i64, step: i64) -> Value {
    let (code, json) = srv.get_json(
        "/api/v1/query_range",
        &[("query", q), ("start", &format_time(start)), ("end", &format_time(end)), ("step", &format_time(step))],
    );
    assert_eq!(code, 200, "{q}: {json}");
    sorted(json["data"].clone())
}

/// Instant query data of `q` at `t`, from Strata.
fn instant(srv: &Server, q: &str, t: i64) -> Value {
    let (code, json) = srv.get_json("/api/v1/query", &[("query", q), ("time", &format_time(t))]);
    assert_eq!(code, 200, "{q}: {json}");
    sorted(json["data"].clone())
}

fn prom_range(p: &PromServer, q: &str, start: i64, end: i64, step: i64) -> Value {
    let json = p.get_json(
        "/api/v1/query_range",
        &[("query", q), ("start", &format_time(start)), ("end", &format_time(end)), ("step", &format_time(step))],
    );
    assert_eq!(json["status"], "success", "{q}: {json}");
    sorted(json["data"].clone())
}

fn prom_instant(p: &PromServer, q: &str, t: i64) -> Value {
    let json = p.get_json("/api/v1/query", &[("query", q), ("time", &format_time(t))]);
    assert_eq!(json["status"], "success", "{q}: {json}");
    sorted(json["data"].clone())
}

/// The data with its result sorted by the labels' JSON (the API's series order is unspecified).
fn sorted(mut data: Value) -> Value {
    if let Some(r) = data["result"].as_array_mut() {
        r.sort_by_key(|s| s["metric"].to_string());
    }
    data
}

/// Where two JSON values first differ (a path and both sides), for readable failures.
fn first_difference(a: &Value, b: &Value, path: &str, ulps: u64) -> Option<String> {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_difference(p, q, &format!("{path}[{i}]"), ulps) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{path}: {} vs {} elements", x.len(), y.len()))
        }
        (Value::Object(x), Value::Object(y)) => {
            for (k, p) in x {
                match y.get(k) {
                    Some(q) => {
                        if let Some(d) = first_difference(p, q, &format!("{path}.{k}"), ulps) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{path}.{k}: only left has it: {p}")),
                }
            }
            y.keys().find(|k| !x.contains_key(*k)).map(|k| format!("{path}.{k}: only right has it"))
        }
        _ if a != b && is_bucket_bound(path) && close(a, b, 1) => None,
        _ if a != b && close(a, b, ulps) => None,
        _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
    }
}

/// True for the path of a bucket's lower or upper bound (`…buckets[i][1]` or `…buckets[i][2]`).
fn is_bucket_bound(path: &str) -> bool {
    path.contains(".buckets[") && (path.ends_with("][1]") || path.ends_with("][2]"))
}

/// Whether two number strings are at most `ulps` apart. Bucket bounds of exponential schemas above
/// 0 come from a table in Prometheus whose entries are not all the correctly rounded powers of two
/// Strata computes: they may differ in the last bit.
fn close(a: &Value, b: &Value, ulps: u64) -> bool {
    let parse = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.signum() == y.signum() && x.to_bits().abs_diff(y.to_bits()) <= ulps,
        _ => false,
    }
}

/// Asserts two answers are equal, naming where they first differ. `histogram_quantile` values may
/// differ from Prometheus 2.42's in the last bits: Strata sums the buckets from the far end for
/// quantiles above 0.5, as Prometheus 3 does, where 2.42 always starts at the lowest bucket.
fn assert_same(strata: &Value, prometheus: &Value, what: &str) {
    let ulps = if what.contains("histogram_quantile") { 4 } else { 0 };
    if let Some(d) = first_difference(strata, prometheus, "", ulps) {
        panic!("{what}: Strata and Prometheus differ at {d}");
    }
}

/// The data with `__name__` of every series replaced by `name`.
fn renamed(mut data: Value, name: &str) -> Value {
    if let Some(r) = data["result"].as_array_mut() {
        for s in r {
            s["metric"]["__name__"] = Value::from(name);
        }
    }
    sorted(data)
}

fn start_prometheus_receiver(dir: &std::path::Path) -> Option<PromServer> {
    let prom = prometheus()?;
    Some(PromServer::start(
        &prom,
        &dir.join("prom"),
        &["--web.enable-remote-write-receiver", "--enable-feature=native-histograms"],
    ))
}

#[test]
fn remote_written_histograms_read_back_as_prometheus_answers() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &[]);
    let t0 = (now_ms() - 30 * 60_000) / 1000 * 1000;
    let ts: Vec<i64> = (0..20).map(|i| t0 + i * STEP).collect();
    let end = ts[ts.len() - 1];
    let ints: Vec<TimeSeries> = (0..4).map(|l| hist_series("nh_int", l, &ts, Clone::clone)).collect();
    let floats: Vec<TimeSeries> = (0..4).map(|l| hist_series("nh_float", l, &ts, as_float)).collect();
    let v2_ints: Vec<TimeSeries> = (0..4).map(|l| hist_series("nh_v2", l, &ts, Clone::clone)).collect();

    let (code, body) = write_v1(&srv, ints.clone());
    assert_eq!(code, 204, "{body}");
    let (code, body) = write_v1(&srv, floats);
    assert_eq!(code, 204, "{body}");
    let (code, written, body) = write_v2(&srv, &to_v2(&v2_ints));
    assert_eq!(code, 204, "{body}");
    assert_eq!(written, [Some(0), Some(80), Some(0)]);

    let queries = [
        "nh_int",
        "rate(nh_int[1m])",
        "increase(nh_int[2m])",
        "sum(nh_int)",
        "sum by (layout) (rate(nh_int[1m]))",
        "histogram_count(nh_int)",
        "histogram_sum(rate(nh_int[1m]))",
        "histogram_quantile(0.9, nh_int)",
        "histogram_fraction(0, 2, nh_int)",
    ];
    // Floats and 2.0 read back exactly as the 1.0 integer histograms.
    let want = range(&srv, "nh_int", t0, end, STEP);
    assert_eq!(want["resultType"], "matrix");
    assert_eq!(want["result"].as_array().map(Vec::len), Some(4), "{want}");
    assert!(want["result"][0]["histograms"].as_array().is_some_and(|h| h.len() == 20), "{want}");
    assert_eq!(renamed(range(&srv, "nh_float", t0, end, STEP), "nh_int"), want);
    assert_eq!(renamed(range(&srv, "nh_v2", t0, end, STEP), "nh_int"), want);

    // Arithmetic with scalars (which Prometheus 2.42 leaves undone, returning the histogram as it
    // is; Prometheus 3 scales it): checked against sums of histograms.
    assert_eq!(range(&srv, "nh_int * 2", t0, end, STEP), range(&srv, "nh_int + nh_int", t0, end, STEP));
    assert_eq!(range(&srv, "nh_int / 0.5", t0, end, STEP), range(&srv, "2 * nh_int", t0, end, STEP));

    // Custom buckets (schema -53, Prometheus 3's NHCB), over 2.0: bounds 0.1, 0.5 and 1 make four
    // buckets, the first from -Inf and the last to +Inf.
    let nhcb = |t: i64, n: u64| proto::Histogram {
        count: Some(histogram::Count::CountInt(10 * n)),
        sum: 4.0 * n as f64,
        schema: -53,
        positive_spans: vec![BucketSpan { offset: 0, length: 4 }],
        positive_deltas: vec![n as i64, n as i64, 2 * n as i64, -(n as i64)],
        custom_values: vec![0.1, 0.5, 1.0],
        timestamp: t,
        ..Default::default()
    };
    let custom = TimeSeries {
        labels: labels("nh_custom", &[]),
        histograms: vec![nhcb(t0, 1), nhcb(t0 + STEP, 2)],
        ..Default::default()
    };
    let (code, written, body) = write_v2(&srv, &to_v2(&[custom]));
    assert_eq!((code, written), (204, [Some(0), Some(2), Some(0)]), "{body}");
    let got = instant(&srv, "nh_custom", t0 + STEP);
    assert_eq!(
        got["result"][0]["histogram"][1],
        serde_json::json!({
            "count": "20", "sum": "8",
            "buckets": [[0, "-Inf", "0.1", "2"], [0, "0.1", "0.5", "4"], [0, "0.5", "1", "8"], [0, "1", "+Inf", "6"]],
        }),
        "{got}"
    );
    let q = instant(&srv, "histogram_quantile(0.5, nh_custom)", t0 + STEP);
    assert_eq!(q["result"][0]["value"][1], "0.75", "{q}");

    // The same writes to Prometheus 2.42 give the same answers.
    let Some(prom) = start_prometheus_receiver(dir.path()) else { return };
    prom.write(&WriteRequest { timeseries: ints, ..Default::default() });
    for q in queries {
        assert_same(&range(&srv, q, t0, end, STEP), &prom_range(&prom, q, t0, end, STEP), &format!("range {q}"));
        let at = t0 + 7 * STEP + 500;
        assert_same(&instant(&srv, q, at), &prom_instant(&prom, q, at), &format!("instant {q}"));
    }
}

#[test]
fn invalid_histograms_are_rejected_alone_naming_the_series() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    let t0 = (now_ms() - 60_000) / 1000 * 1000;
    let good = hist_series("nh_good", 0, &[t0, t0 + STEP], Clone::clone);
    let mut bad = hist_series("nh_bad", 0, &[t0], Clone::clone);
    bad.histograms[0].count = Some(histogram::Count::CountInt(1000));
    let mut bad_spans = hist_series("nh_bad_spans", 1, &[t0], Clone::clone);
    bad_spans.histograms[0].positive_spans[0].length = 7;
    let (code, body) = write_v1(&srv, vec![bad.clone(), good.clone(), bad_spans.clone()]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains(r#"{__name__="nh_bad", layout="0"}"#), "{body}");
    assert!(body.contains("but the Count field is 1000"), "{body}");
    assert!(body.contains(r#"{__name__="nh_bad_spans", layout="1"}"#), "{body}");
    assert!(body.contains("spans need 8 buckets"), "{body}");
    let got = range(&srv, "nh_good", t0, t0 + STEP, STEP);
    assert_eq!(got["result"][0]["histograms"].as_array().map(Vec::len), Some(2), "{got}");
    assert_eq!(range(&srv, "nh_bad", t0, t0 + STEP, STEP)["result"], serde_json::json!([]));

    // 2.0: the Written headers count what was stored.
    let (code, written, body) = write_v2(&srv, &to_v2(&[bad, hist_series("nh_good2", 0, &[t0], Clone::clone)]));
    assert_eq!(code, 400, "{body}");
    assert_eq!(written, [Some(0), Some(1), Some(0)]);
}

#[test]
fn late_histograms_merge_first_wins_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--storage.tsdb.out-of-order-time-window=1h"];
    let mut srv = Server::start(&data, &args);
    let t0 = (now_ms() - 30 * 60_000) / 1000 * 1000;
    let ts: Vec<i64> = (0..20).map(|i| t0 + i * STEP).collect();
    let end = ts[19];
    // Reference: everything in order.
    let all: Vec<TimeSeries> = (0..2).map(|l| hist_series("nh_ordered", l, &ts, as_float)).collect();
    let (code, body) = write_v1(&srv, all);
    assert_eq!(code, 204, "{body}");
    // The same histograms, the second half first, then the first half late.
    for l in 0..2 {
        let s = hist_series("nh_late", l, &ts, as_float);
        let (late, recent) = s.histograms.split_at(10);
        let (code, body) = write_v1(&srv, vec![TimeSeries { histograms: recent.to_vec(), ..s.clone() }]);
        assert_eq!(code, 204, "{body}");
        let (code, body) = write_v1(&srv, vec![TimeSeries { histograms: late.to_vec(), ..s.clone() }]);
        assert_eq!(code, 204, "late histograms: {body}");
        // A different histogram at a late timestamp already stored: the first one stays.
        let mut other = late[3].clone();
        other.sum += 1000.0;
        let _ = write_v1(&srv, vec![TimeSeries { histograms: vec![other], ..s.clone() }]);
    }
    let want = range(&srv, "nh_ordered", t0, end, STEP);
    assert_eq!(want["result"].as_array().map(Vec::len), Some(2), "{want}");
    // Self-monitoring: 40 in order (reference), 20 in order and 20 late, one conflicting late one
    // per series.
    let metrics = srv.request("GET", "/metrics").call().unwrap().into_string().unwrap();
    for line in [
        r#"strata_head_histograms_appended_total{placement="in_order"} 60"#,
        r#"strata_head_histograms_appended_total{placement="out_of_order"} 20"#,
        "strata_head_histograms_conflicting_total 2",
        "strata_remote_write_histograms_received_total 82",
        "strata_remote_write_histograms_accepted_total 82",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
    assert_eq!(renamed(range(&srv, "nh_late", t0, end, STEP), "nh_ordered"), want);
    let rate_want = range(&srv, "rate(nh_ordered[1m])", t0, end, STEP);

    // Exemplars ride along and survive too.
    let ex = TimeSeries {
        labels: labels("nh_ex", &[]),
        histograms: vec![int_hist(0, 0, end)],
        exemplars: vec![Exemplar {
            labels: vec![Label { name: "trace_id".into(), value: "abc".into() }],
            value: 0.75,
            timestamp: end,
        }],
        ..Default::default()
    };
    let (code, body) = write_v1(&srv, vec![ex]);
    assert_eq!(code, 204, "{body}");

    srv.kill9();
    let srv = Server::start(&data, &args);
    assert_eq!(renamed(range(&srv, "nh_late", t0, end, STEP), "nh_ordered"), want);
    assert_eq!(range(&srv, "nh_ordered", t0, end, STEP), want);
    // rate drops the metric name: the answers are equal as they are.
    assert_eq!(range(&srv, "rate(nh_late[1m])", t0, end, STEP), rate_want);
    let (code, json) = srv.get_json(
        "/api/v1/query_exemplars",
        &[("query", "nh_ex"), ("start", &format_time(t0)), ("end", &format_time(end))],
    );
    assert_eq!(code, 200, "{json}");
    assert_eq!(json["data"][0]["exemplars"][0]["labels"]["trace_id"], "abc", "{json}");
    assert_eq!(json["data"][0]["exemplars"][0]["value"], "0.75", "{json}");
}

/// 2h-aligned start, far enough back for blocks to be cut at once.
const T0: i64 = 1_699_999_200_000;
const H: i64 = 3_600_000;

/// The blocks' `(minTime, maxTime)`, sorted.
fn block_ranges(data: &std::path::Path) -> Vec<(i64, i64)> {
    let mut v: Vec<(i64, i64)> = block_dirs(data)
        .iter()
        .map(|d| {
            let m: Value = serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).unwrap()).unwrap();
            (m["minTime"].as_i64().unwrap(), m["maxTime"].as_i64().unwrap())
        })
        .collect();
    v.sort();
    v
}

/// Sends the histograms of `series` with timestamps `keep` accepts, in requests of one hour.
fn send_hours(srv: &Server, series: &[TimeSeries], keep: impl Fn(&str, i64) -> bool) {
    let name_of = |s: &TimeSeries| s.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect::<String>();
    let mut hours: Vec<i64> = series
        .iter()
        .flat_map(|s| s.histograms.iter().filter(|h| keep(&name_of(s), h.timestamp)).map(|h| (h.timestamp - T0) / H))
        .collect();
    hours.sort_unstable();
    hours.dedup();
    for hour in hours {
        let part: Vec<TimeSeries> = series
            .iter()
            .map(|s| TimeSeries {
                histograms: s
                    .histograms
                    .iter()
                    .filter(|h| (h.timestamp - T0) / H == hour && keep(&name_of(s), h.timestamp))
                    .cloned()
                    .collect(),
                ..s.clone()
            })
            .filter(|s| !s.histograms.is_empty())
            .collect();
        let (code, body) = write_v1(srv, part);
        assert_eq!(code, 204, "{body}");
    }
}

#[test]
fn compacted_histogram_blocks_read_by_promtool_and_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--storage.tsdb.compaction-interval=200ms", "--storage.tsdb.out-of-order-time-window=6h"];
    let srv = Server::start(&data, &args);
    // Six hours of one-minute histograms (both kinds) and a float series (the head keeps 1.5 block
    // ranges, so two blocks are cut). Every 10th histogram of one series in the first two hours is
    // held back and sent once that range is in a block.
    let ts: Vec<i64> = (0..360).map(|i| T0 + i * 60_000).collect();
    let mut series: Vec<TimeSeries> = (0..2).map(|l| hist_series("nh_block", l, &ts, Clone::clone)).collect();
    series.push(hist_series("nh_block_float", 2, &ts, as_float));
    let late = |name: &str, t: i64| name.contains("layout=1") && t < T0 + 2 * H && (t - T0) / 60_000 % 10 == 3;
    send_hours(&srv, &series, |name, t| t < T0 + 7 * H / 2 && !late(name, t));
    let floats: Vec<(i64, f64)> = ts.iter().map(|&t| (t, ((t - T0) / 60_000) as f64)).collect();
    let send_floats = |from: i64, to: i64| {
        let part: Vec<(i64, f64)> = floats.iter().copied().filter(|&(t, _)| t >= from && t < to).collect();
        let (code, body) = srv.write(&crate::util::request(vec![crate::util::series("nh_block_up", &[], &part)]));
        assert_eq!(code, 204, "{body}");
    };
    send_floats(T0, T0 + 7 * H / 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while block_dirs(&data).is_empty() {
        assert!(Instant::now() < deadline, "no block was written\n{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The late histograms, for a range already in a block; then the rest in order.
    send_hours(&srv, &series, late);
    send_hours(&srv, &series, |_, t| t >= T0 + 7 * H / 2);
    send_floats(T0 + 7 * H / 2, T0 + 6 * H);

    // Settled: blocks cover [T0, T0 + 4h) without overlaps, unchanged over several compaction runs.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut last, mut stable) = (Vec::new(), 0);
    while stable < 5 {
        let m = block_ranges(&data);
        let head_min = srv.metric("strata_head_min_time_seconds").map(|v| (v * 1000.0) as i64);
        let settled = m.first().is_some_and(|b| b.0 == T0)
            && m.iter().map(|b| b.1).max() == Some(T0 + 4 * H)
            && m.windows(2).all(|w| w[0].1 <= w[1].0)
            && head_min.is_some_and(|t| t >= T0 + 4 * H);
        stable = if settled && m == last { stable + 1 } else { 0 };
        assert!(Instant::now() < deadline, "compaction did not settle: {m:?}\n{}", srv.log_text());
        last = m;
        std::thread::sleep(Duration::from_millis(200));
    }

    let end = T0 + 4 * H - 60_000;
    let queries =
        ["nh_block", "nh_block_float", "rate(nh_block[5m])", "histogram_count(nh_block_float)", "nh_block_up"];
    let want: Vec<Value> = queries.iter().map(|q| range(&srv, q, T0, end, 60_000)).collect();
    for s in want[0]["result"].as_array().unwrap() {
        // The late histograms are there: every minute of both series.
        assert_eq!(s["histograms"].as_array().map(Vec::len), Some(240), "{}", s["metric"]);
    }

    let copy = dir.path().join("copy");
    // An empty WAL beside the blocks, as promtool and Prometheus expect.
    std::fs::create_dir_all(copy.join("wal")).unwrap();
    for b in block_dirs(&data) {
        copy_dir(&b, &copy.join(b.file_name().unwrap()));
    }
    if let Some(promtool) = promtool() {
        // promtool 2.42 dumps float samples only (a histogram series prints nothing): the float
        // series must come out whole from the blocks holding histogram chunks.
        let out = Command::new(promtool).args(["tsdb", "dump"]).arg(&copy).output().unwrap();
        assert!(out.status.success(), "promtool tsdb dump: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let up: Vec<&str> = text.lines().filter(|l| l.starts_with("{__name__=\"nh_block_up\"}")).collect();
        assert_eq!(up.len(), 240, "{text}");
        assert_eq!(up[0], format!("{{__name__=\"nh_block_up\"}} 0 {T0}"));
    }
    let Some(prom) = prometheus() else { return };
    let p = PromServer::start(&prom, &copy, &["--enable-feature=native-histograms"]);
    for (q, want) in queries.iter().zip(&want) {
        assert_same(want, &prom_range(&p, q, T0, end, 60_000), q);
    }
}

#[test]
fn prometheus_agent_delivers_scraped_native_histograms() {
    let Some(prom) = prometheus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &[]);
    let target = NativeHistogramTarget::start();
    let cfg = dir.path().join("agent.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hist\n    static_configs:\n      - targets: ['{target}']\n\
             remote_write:\n  - url: http://{addr}/api/v1/write\n    send_native_histograms: true\n    queue_config:\n      batch_send_deadline: 1s\n",
            target = target.addr,
            addr = srv.addr
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _agent = KillOnDrop(
        Command::new(prom)
            .arg("--enable-feature=agent,native-histograms")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.agent.path={}", dir.path().join("agent").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let name = NativeHistogramTarget::NAME;
    let deadline = Instant::now() + Duration::from_secs(90);
    let got = loop {
        let (_, json) = srv.get_json("/api/v1/query", &[("query", name)]);
        if let Some(h) = json["data"]["result"][0]["histogram"].as_array() {
            if target.scrapes() >= 3 {
                break (json["data"]["result"][0]["metric"].clone(), h[1].clone());
            }
        }
        assert!(
            Instant::now() < deadline,
            "no native histogram arrived ({} scrapes): {json}\n{}",
            target.scrapes(),
            srv.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let (metric, h) = got;
    assert_eq!(metric["job"], "hist", "{metric}");
    assert_eq!(metric["path"], "/api", "{metric}");
    // Which scrape it is: the sum says, and every count must agree with it.
    let sum: f64 = h["sum"].as_str().unwrap().parse().unwrap();
    let n = (sum / 2.5).round() as u64;
    let e = NativeHistogramTarget::histogram(n);
    assert_eq!(h["count"], e.count.to_string(), "{h}");
    let s = |v: u64| v.to_string();
    assert_eq!(
        h["buckets"],
        serde_json::json!([
            [1, "-2", "-1", s(e.negative)],
            [3, "-0.001", "0.001", s(e.zero)],
            [0, "0.5", "1", s(e.positive[0])],
            [0, "1", "2", s(e.positive[1])],
        ]),
        "{h}"
    );
    // And PromQL over them.
    let (_, json) = srv.get_json("/api/v1/query", &[("query", &format!("histogram_count({name})"))]);
    let count: f64 = json["data"]["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(count >= e.count as f64, "{json}");
}
