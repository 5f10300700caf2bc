//! `strata-bench compare`: the same pre-encoded load, one server after another, and what each
//! one cost.
//!
//! Per target: start on an empty data dir → bounded load → flush and wait until the data is
//! queryable → query latencies and answers → SIGTERM → disk usage → restart (ready, queryable) →
//! `kill -9` → restart (ready, queryable) → SIGTERM. CPU is the server's utime+stime over the load
//! (until its data is queryable); peak RSS is `VmHWM` after the queries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::client::{self, LoadOptions, LoadResult, Query};
use crate::parse::{self, ParseBound};
use crate::payload::{self, ShardPayloads};
use crate::sys;
use crate::target::{Kind, Server, Target};
use crate::workload::Spec;

/// Everything `compare` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The workload.
    pub spec: Spec,
    /// Connections (= sender shards).
    pub connections: usize,
    /// Samples per request.
    pub batch: usize,
    /// Servers, in run order.
    pub targets: Vec<Target>,
    /// Where results, logs and (temporary) data dirs go.
    pub out_dir: PathBuf,
    /// Runs of each query (the median is reported).
    pub query_runs: usize,
    /// Load limits.
    pub load: LoadOptions,
    /// Timeout for ready / queryable / shutdown waits.
    pub wait_timeout: Duration,
    /// Keep the data dirs after the run.
    pub keep_data: bool,
}

/// A restart measurement.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Restart {
    /// Seconds from spawn to the ready endpoint answering 200.
    pub ready_s: Option<f64>,
    /// Seconds from spawn until the probe query sees every series of the probe metric.
    pub queryable_s: Option<f64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Figures of one target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetResult {
    /// Server name.
    pub name: String,
    /// Version line of its binary.
    pub version: String,
    /// Skipped (binary missing) or failed, and why.
    pub error: Option<String>,
    /// Seconds from spawn to ready on an empty dir.
    pub startup_s: f64,
    /// The load.
    pub load: LoadResult,
    /// Samples per second the load achieved (wall clock, client side).
    pub samples_per_s: f64,
    /// Server CPU seconds over the load.
    pub cpu_s: f64,
    /// Server CPU seconds per million samples sent.
    pub cpu_s_per_m_samples: f64,
    /// Seconds after the load until the probe query saw all data.
    pub settle_s: Option<f64>,
    /// `VmHWM` after load and queries.
    pub peak_rss_bytes: u64,
    /// Peak RSS per distinct series.
    pub rss_bytes_per_series: f64,
    /// Seconds from SIGTERM to exit.
    pub shutdown_s: Option<f64>,
    /// Data dir after a clean shutdown, as `du` counts it (allocated blocks).
    pub disk_bytes: u64,
    /// Data dir after a clean shutdown, apparent file sizes.
    pub disk_apparent_bytes: u64,
    /// `disk_bytes` per sample sent.
    pub disk_bytes_per_sample: f64,
    /// Restart after SIGTERM.
    pub restart_clean: Restart,
    /// Restart after `kill -9`.
    pub restart_kill9: Restart,
    /// Median latency of each query, ms.
    pub query_median_ms: BTreeMap<String, f64>,
    /// Query errors.
    pub query_errors: BTreeMap<String, String>,
    /// Answers differing from the reference target, per query (up to a few descriptions).
    pub mismatches: BTreeMap<String, Vec<String>>,
    /// The answers (first run of each query), for the comparison.
    #[serde(skip)]
    pub answers: BTreeMap<String, serde_json::Value>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The workload.
    pub spec: Spec,
    /// Distinct series over the span.
    pub distinct_series: u64,
    /// Samples per target.
    pub samples: u64,
    /// Connections.
    pub connections: usize,
    /// Samples per request.
    pub batch: usize,
    /// Requests.
    pub requests: usize,
    /// Compressed bytes of all requests.
    pub payload_bytes: u64,
    /// Uncompressed protobuf bytes of all requests.
    pub payload_raw_bytes: u64,
    /// Seconds to build the payloads (not timed against any server).
    pub encode_s: f64,
    /// The parse bound.
    pub parse_bound: ParseBound,
    /// The queries.
    pub queries: Vec<Query>,
    /// Reference target of the answer comparison.
    pub reference: Option<String>,
    /// Per target.
    pub targets: Vec<TargetResult>,
    /// Host facts: cores, load average at start, kernel.
    pub host: BTreeMap<String, String>,
}

/// The fixed query set, over the workload's metric names, ending at the end of the data.
pub fn queries(spec: &Spec) -> Vec<Query> {
    if spec.histograms {
        return histogram_queries(spec);
    }
    let end = spec.end_ms();
    let c = spec.counter_metric();
    let g = spec.gauge_metric();
    let hour_start = (end - 3_600_000).max(spec.start_ms);
    let span_step = (spec.span_ms / 10_000).max(spec.interval_ms);
    vec![
        Query {
            name: "sum_rate_by_job_1h".into(),
            promql: format!("sum by (job) (rate({c}[5m]))"),
            time_ms: end,
            range: Some((hour_start, 15_000)),
        },
        Query {
            name: "one_series_span".into(),
            promql: format!("{c}{{instance=\"{}\",cpu=\"0\"}}", spec.probe_instance()),
            time_ms: end,
            range: Some((spec.start_ms, span_step)),
        },
        Query { name: "count_all".into(), promql: "count({__name__=~\".+\"})".into(), time_ms: end, range: None },
        Query { name: "topk10_gauge".into(), promql: format!("topk(10, {g})"), time_ms: end, range: None },
        Query {
            name: "avg_by_region_1h".into(),
            promql: format!("avg by (region) (avg_over_time({g}[1h]))"),
            time_ms: end,
            range: None,
        },
    ]
}

/// The query set of the histogram workload: quantiles and sums of rates, raw histograms, the
/// count, sum and fraction functions.
fn histogram_queries(spec: &Spec) -> Vec<Query> {
    let end = spec.end_ms();
    let h = spec.counter_metric();
    let h2 = spec.gauge_metric();
    let hour_start = (end - 3_600_000).max(spec.start_ms);
    let span_step = (spec.span_ms / 10_000).max(spec.interval_ms);
    vec![
        Query {
            name: "quantile_by_job_1h".into(),
            promql: format!("histogram_quantile(0.9, sum by (job) (rate({h}[5m])))"),
            time_ms: end,
            range: Some((hour_start, 15_000)),
        },
        Query {
            name: "one_series_span".into(),
            promql: format!("{h}{{instance=\"{}\",cpu=\"0\"}}", spec.probe_instance()),
            time_ms: end,
            range: Some((spec.start_ms, span_step)),
        },
        Query { name: "count_all".into(), promql: "count({__name__=~\".+\"})".into(), time_ms: end, range: None },
        Query {
            name: "sum_rate_by_region".into(),
            promql: format!("sum by (region) (rate({h2}[1h]))"),
            time_ms: end,
            range: None,
        },
        Query {
            name: "count_sum_fraction".into(),
            promql: format!(
                "sum(histogram_count(increase({h}[1h]))) + sum(histogram_sum(increase({h}[1h]))) \
                 + histogram_fraction(0, 0.01, sum(rate({h}[1h])))"
            ),
            time_ms: end,
            range: None,
        },
    ]
}

/// The probe: `count(<counter metric>)` at the end of the data must equal the series per metric.
fn probe(spec: &Spec) -> Query {
    Query {
        name: "probe".into(),
        promql: format!("count({})", spec.counter_metric()),
        time_ms: spec.end_ms(),
        range: None,
    }
}

fn bar(len: u64, prefix: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>16} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})",
    ) {
        b.set_style(style);
    }
    b.set_prefix(prefix.to_string());
    b
}

/// Encodes the workload's payloads with a progress bar.
pub fn encode(spec: &Spec, connections: usize, batch: usize) -> (Vec<ShardPayloads>, f64) {
    let b = bar(spec.total_samples(), "encode");
    let t0 = Instant::now();
    let shards = payload::build_all(spec, connections, batch, &|n| b.inc(n));
    b.finish_and_clear();
    (shards, t0.elapsed().as_secs_f64())
}

/// Runs the comparison and returns the report (also printing progress lines to stderr).
pub fn run(opts: &Options) -> Result<Report> {
    std::fs::create_dir_all(&opts.out_dir)?;
    let spec = &opts.spec;
    eprintln!(
        "workload: {} series slots ({} distinct), {} samples, {} connections, batch {}",
        spec.slots(),
        spec.distinct_series(),
        spec.total_samples(),
        opts.connections,
        opts.batch
    );
    let (shards, encode_s) = encode(spec, opts.connections, opts.batch);
    let requests = shards.iter().map(Vec::len).sum();
    let payload_bytes = shards.iter().flatten().map(|p| p.body.len() as u64).sum();
    let payload_raw_bytes = shards.iter().flatten().map(|p| u64::from(p.raw_bytes)).sum();
    eprintln!("encoded {requests} requests, {payload_bytes} bytes snappy ({payload_raw_bytes} raw) in {encode_s:.1}s");
    let parse_bound = parse::measure(&shards)?;
    eprintln!(
        "parse bound (1 core): snappy {:.3}, +prost {:.3}, +strata walk {:.3} CPU-s per 1M samples",
        parse_bound.snappy_cpu_s_per_m, parse_bound.snappy_prost_cpu_s_per_m, parse_bound.snappy_walk_cpu_s_per_m
    );
    if spec.ooo_fraction > 0.0 {
        eprintln!("out-of-order window given to the targets: {} ms", ooo_window(spec, &opts.load));
    }
    let qs = queries(spec);
    let mut results = Vec::new();
    for t in &opts.targets {
        let mut r = TargetResult { name: t.kind.name().into(), ..Default::default() };
        if spec.histograms && t.kind == Kind::VictoriaMetrics {
            let msg = "no native histograms in VictoriaMetrics 1.79: skipped".to_string();
            eprintln!("{}: {msg}", r.name);
            r.error = Some(msg);
            results.push(r);
            continue;
        }
        if !t.bin.is_file() {
            let msg = format!("binary {} not found: skipped", t.bin.display());
            eprintln!("{}: {msg}", r.name);
            r.error = Some(msg);
            results.push(r);
            continue;
        }
        r.version = t.version();
        eprintln!("== {} ({})", r.name, r.version);
        if let Err(e) = run_target(opts, t, &shards, &qs, &mut r) {
            eprintln!("{}: failed: {e:#}", r.name);
            r.error = Some(format!("{e:#}"));
        }
        results.push(r);
    }
    let reference = results
        .iter()
        .find(|r| r.name == Kind::Prometheus.name() && !r.answers.is_empty())
        .or_else(|| results.iter().find(|r| !r.answers.is_empty()))
        .map(|r| r.name.clone());
    if let Some(ref_name) = &reference {
        let ref_answers = results.iter().find(|r| &r.name == ref_name).map(|r| r.answers.clone()).unwrap_or_default();
        for r in results.iter_mut().filter(|r| &r.name != ref_name) {
            for q in &qs {
                let (Some(a), Some(b)) = (ref_answers.get(&q.name), r.answers.get(&q.name)) else {
                    continue;
                };
                let diffs = diff_answers(a, b);
                if !diffs.is_empty() {
                    eprintln!("{} differs from {ref_name} on {}: {}", r.name, q.name, diffs.join("; "));
                    r.mismatches.insert(q.name.clone(), diffs);
                }
            }
        }
    }
    Ok(Report {
        spec: spec.clone(),
        distinct_series: spec.distinct_series(),
        samples: spec.total_samples(),
        connections: opts.connections,
        batch: opts.batch,
        requests,
        payload_bytes,
        payload_raw_bytes,
        encode_s,
        parse_bound,
        queries: qs,
        reference,
        targets: results,
        host: host_facts(),
    })
}

fn host_facts() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("cores".into(), std::thread::available_parallelism().map(|n| n.get().to_string()).unwrap_or_default());
    m.insert("loadavg".into(), std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string());
    m.insert(
        "kernel".into(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
    );
    if let Ok(cpu) = std::fs::read_to_string("/proc/cpuinfo") {
        if let Some(model) = cpu.lines().find_map(|l| l.strip_prefix("model name")) {
            m.insert("cpu".into(), model.trim_start_matches([' ', '\t', ':']).to_string());
        }
    }
    m
}

/// Polls the probe query until it sees all series of the probe metric; returns when (since `from`).
fn wait_queryable(agent: &ureq::Agent, s: &Server, spec: &Spec, from: Instant, timeout: Duration) -> Result<f64> {
    let q = probe(spec);
    let want = spec.series_per_metric as f64;
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match client::run_query(agent, &s.base_url(), &q) {
            Ok((_, v)) => match client::single_value(&v) {
                Some(n) if n == want => return Ok(from.elapsed().as_secs_f64()),
                other => last = format!("probe saw {other:?} series, want {want}"),
            },
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            anyhow::bail!("not queryable after {timeout:?}: {last}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// VictoriaMetrics keeps recent rows in memory for a few seconds; ask it to flush them.
fn force_flush(agent: &ureq::Agent, s: &Server) {
    if s.kind == Kind::VictoriaMetrics {
        let _ = agent.get(&format!("{}/internal/force_flush", s.base_url())).call().map(|r| r.into_string());
    }
}

fn restart(opts: &Options, t: &Target, data: &Path, agent: &ureq::Agent, run: usize) -> (Restart, Option<Server>) {
    let mut r = Restart::default();
    let mut s =
        match Server::start(t, data, &opts.out_dir, ooo_window(&opts.spec, &opts.load), opts.spec.histograms, run) {
            Ok(s) => s,
            Err(e) => {
                r.error = Some(format!("{e:#}"));
                return (r, None);
            }
        };
    match s.wait_ready(agent, opts.wait_timeout) {
        Ok(d) => r.ready_s = Some(d.as_secs_f64()),
        Err(e) => {
            r.error = Some(format!("{e:#}"));
            return (r, Some(s));
        }
    }
    let spawned = s.spawned;
    match wait_queryable(agent, &s, &opts.spec, spawned, opts.wait_timeout) {
        Ok(d) => r.queryable_s = Some(d),
        Err(e) => r.error = Some(format!("{e:#}")),
    }
    (r, Some(s))
}

/// The out-of-order window the targets get. A held-back sample can arrive when another shard is
/// already up to `max_skew_rounds` (plus one request) ahead, so the window is the workload's max lag
/// plus twice that skew in data time.
pub fn ooo_window(spec: &Spec, load: &LoadOptions) -> i64 {
    if spec.ooo_fraction > 0.0 {
        spec.ooo_max_lag_ms + 2 * (i64::from(load.max_skew_rounds) + 1) * spec.interval_ms
    } else {
        0
    }
}

fn run_target(opts: &Options, t: &Target, shards: &[ShardPayloads], qs: &[Query], r: &mut TargetResult) -> Result<()> {
    let spec = &opts.spec;
    let data = opts.out_dir.join(format!("data-{}", t.kind.name().to_lowercase()));
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("clear {}", data.display()))?;
    }
    let agent = client::agent();
    let mut s = Server::start(t, &data, &opts.out_dir, ooo_window(spec, &opts.load), spec.histograms, 0)?;
    r.startup_s = s.wait_ready(&agent, opts.wait_timeout)?.as_secs_f64();

    // Load.
    let pid = s.pid();
    let cpu0 = sys::process_cpu_seconds(pid)?;
    let b = bar(spec.total_samples(), &format!("{} write", t.kind.name()));
    let url = format!("{}/api/v1/write", s.base_url());
    r.load = client::send_load(&url, shards, &opts.load, &b);
    b.finish_and_clear();
    let after_load = Instant::now();
    force_flush(&agent, &s);
    r.samples_per_s = r.load.samples_ok as f64 / r.load.wall_s.max(1e-9);
    match wait_queryable(&agent, &s, spec, after_load, opts.wait_timeout) {
        Ok(d) => r.settle_s = Some(d),
        Err(e) => eprintln!("{}: after load: {e:#}", r.name),
    }
    r.cpu_s = sys::process_cpu_seconds(pid)? - cpu0;
    let sent = spec.total_samples() as f64;
    r.cpu_s_per_m_samples = r.cpu_s / (sent / 1e6);
    eprintln!(
        "{}: load {:.1}s, {:.0} samples/s, {} rejected, {} failed, server CPU {:.1}s ({:.3} s/1M samples){}",
        r.name,
        r.load.wall_s,
        r.samples_per_s,
        r.load.samples_rejected,
        r.load.samples_failed,
        r.cpu_s,
        r.cpu_s_per_m_samples,
        r.load.errors.first().map(|e| format!("; first error: {e}")).unwrap_or_default()
    );

    // Queries.
    for q in qs {
        let mut lat = Vec::new();
        for i in 0..opts.query_runs.max(1) {
            match client::run_query(&agent, &s.base_url(), q) {
                Ok((d, v)) => {
                    lat.push(d.as_secs_f64() * 1e3);
                    if i == 0 {
                        r.answers.insert(q.name.clone(), v);
                    }
                }
                Err(e) => {
                    r.query_errors.insert(q.name.clone(), format!("{e:#}"));
                    break;
                }
            }
        }
        if !lat.is_empty() {
            lat.sort_by(f64::total_cmp);
            r.query_median_ms.insert(q.name.clone(), lat[lat.len() / 2]);
        }
    }
    r.peak_rss_bytes = sys::status_bytes(pid, "VmHWM")?;
    r.rss_bytes_per_series = r.peak_rss_bytes as f64 / spec.distinct_series() as f64;
    eprintln!("{}: queries (median ms) {:?}; peak RSS {} MiB", r.name, r.query_median_ms, r.peak_rss_bytes >> 20);

    // Clean shutdown, disk usage.
    r.shutdown_s = match s.stop(opts.wait_timeout) {
        Ok(d) => Some(d.as_secs_f64()),
        Err(e) => {
            eprintln!("{}: {e:#}", r.name);
            None
        }
    };
    let (alloc, apparent) = sys::disk_usage(&data)?;
    r.disk_bytes = alloc;
    r.disk_apparent_bytes = apparent;
    r.disk_bytes_per_sample = alloc as f64 / sent;

    // Restart after SIGTERM, then after kill -9.
    let (clean, s) = restart(opts, t, &data, &agent, 1);
    r.restart_clean = clean;
    if let Some(s) = s {
        s.kill9()?;
    }
    let (crash, s) = restart(opts, t, &data, &agent, 2);
    r.restart_kill9 = crash;
    if let Some(s) = s {
        let _ = s.stop(opts.wait_timeout);
    }
    eprintln!(
        "{}: disk {:.2} bytes/sample; restart clean {:?}/{:?}s, after kill -9 {:?}/{:?}s (ready/queryable)",
        r.name,
        r.disk_bytes_per_sample,
        r.restart_clean.ready_s,
        r.restart_clean.queryable_s,
        r.restart_kill9.ready_s,
        r.restart_kill9.queryable_s
    );
    if !opts.keep_data {
        let _ = std::fs::remove_dir_all(&data);
    }
    Ok(())
}

/// Points of each series of an answer, keyed by its label set; a native histogram becomes the
/// points of its count, its sum and each of its buckets (keyed by the bucket's bounds, to 12
/// significant digits), so histograms are compared bucket by bucket.
type SeriesPoints = BTreeMap<String, Vec<(f64, f64)>>;

fn number(v: &serde_json::Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

/// Adds one `[t, value]` or `[t, histogram]` point of series `key` to `out`.
fn add_point(out: &mut SeriesPoints, key: &str, p: &serde_json::Value) -> Option<()> {
    let t = p.get(0)?.as_f64()?;
    let v = p.get(1)?;
    if v.is_string() {
        out.entry(key.to_string()).or_default().push((t, number(v)));
        return Some(());
    }
    out.entry(format!("{key} count")).or_default().push((t, number(v.get("count")?)));
    out.entry(format!("{key} sum")).or_default().push((t, number(v.get("sum")?)));
    for b in v.get("buckets").and_then(|b| b.as_array()).into_iter().flatten() {
        let (lo, hi) = (number(b.get(1)?), number(b.get(2)?));
        let bucket = format!("{key} bucket {}({lo:.11e},{hi:.11e})", b.get(0)?);
        out.entry(bucket).or_default().push((t, number(b.get(3)?)));
    }
    Some(())
}

fn points(v: &serde_json::Value) -> Option<(String, SeriesPoints)> {
    let data = v.get("data")?;
    let kind = data.get("resultType")?.as_str()?.to_string();
    let result = data.get("result")?;
    let mut out = BTreeMap::new();
    if kind == "scalar" {
        add_point(&mut out, "", result)?;
        return Some((kind, out));
    }
    for item in result.as_array()? {
        let metric: BTreeMap<String, String> = item
            .get("metric")
            .and_then(|m| m.as_object())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let key = format!("{metric:?}");
        for field in ["values", "histograms"] {
            for p in item.get(field).and_then(|v| v.as_array()).into_iter().flatten() {
                add_point(&mut out, &key, p);
            }
        }
        for field in ["value", "histogram"] {
            if let Some(p) = item.get(field) {
                add_point(&mut out, &key, p);
            }
        }
    }
    Some((kind, out))
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 + 1e-6 * a.abs().max(b.abs())
}

/// Describes how answer `b` differs from reference `a` (empty: same, within a small float tolerance).
pub fn diff_answers(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    const MAX: usize = 5;
    let (Some((ka, pa)), Some((kb, pb))) = (points(a), points(b)) else {
        return vec!["unparseable answer".into()];
    };
    let mut out = Vec::new();
    if ka != kb {
        out.push(format!("result type {kb}, reference {ka}"));
        return out;
    }
    let missing = pa.keys().filter(|k| !pb.contains_key(*k)).count();
    let extra = pb.keys().filter(|k| !pa.contains_key(*k)).count();
    if missing + extra > 0 {
        out.push(format!(
            "{} series vs {} in reference ({missing} missing, {extra} extra; e.g. {:?})",
            pb.len(),
            pa.len(),
            pa.keys().find(|k| !pb.contains_key(*k)).or_else(|| pb.keys().find(|k| !pa.contains_key(*k)))
        ));
    }
    let mut bad_points = 0;
    let mut total = 0;
    for (k, xa) in &pa {
        let Some(xb) = pb.get(k) else { continue };
        total += xa.len();
        if xa.len() != xb.len() && out.len() < MAX {
            out.push(format!("{k}: {} points vs {} in reference", xb.len(), xa.len()));
        }
        for (p, q) in xa.iter().zip(xb) {
            if (p.0 - q.0).abs() > 1e-3 || !close(p.1, q.1) {
                bad_points += 1;
                if out.len() < MAX {
                    out.push(format!("{k} at t={}: {} vs {} in reference", p.0, q.1, p.1));
                }
            }
        }
    }
    if bad_points > 0 {
        out.push(format!("{bad_points} of {total} points differ"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_value_and_series_differences() {
        let a: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1.5,"2"]},{"metric":{"job":"b"},"value":[1.5,"3"]}]}}"#,
        )
        .unwrap_or_default();
        assert!(diff_answers(&a, &a).is_empty());
        let b: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1.5,"2.0000000001"]},{"metric":{"job":"b"},"value":[1.5,"4"]}]}}"#,
        )
        .unwrap_or_default();
        let d = diff_answers(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
    }

    #[test]
    fn diff_compares_histograms_bucket_by_bucket() {
        let h = |count: &str, last: &str| -> serde_json::Value {
            let text = format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"histogram":[1.5,
                {{"count":"{count}","sum":"3.5","buckets":[[0,"1","1.0905077326652577","2"],[0,"1.0905077326652577","1.189207115002721","{last}"]]}}]}}]}}}}"#
            );
            serde_json::from_str(&text).unwrap_or_default()
        };
        assert!(diff_answers(&h("5", "3"), &h("5", "3")).is_empty());
        let d = diff_answers(&h("5", "3"), &h("5", "4"));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("bucket"), "{d:?}");
        let float: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"5"]}]}}"#,
        )
        .unwrap_or_default();
        assert!(!diff_answers(&h("5", "3"), &float).is_empty());
    }
}
