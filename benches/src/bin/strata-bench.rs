//! `strata-bench`: end-to-end benchmarks of Strata against Prometheus and VictoriaMetrics.
//!
//! - `compare`: the same pre-encoded remote-write load into each server, one after another, on
//!   loopback; CPU, memory, disk, restart and query figures; answers cross-checked.
//! - `load`: the same bounded load against an already running receiver URL.
//! - `parse`: only the parse bound of a workload's payloads.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use strata_benches::client::{LoadOptions, Protocol};
use strata_benches::compare::{self, Options};
use strata_benches::target::{Kind, Target};
use strata_benches::workload::Spec;
use strata_benches::{parse, report};

#[derive(Parser)]
#[command(name = "strata-bench", about = "End-to-end benchmarks: Strata vs Prometheus vs VictoriaMetrics")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the same load against Strata, Prometheus and VictoriaMetrics and compare.
    Compare(CompareArgs),
    /// Send the load to a running remote-write receiver.
    Load(LoadArgs),
    /// Measure only the parse bound (snappy + protobuf decode on one core).
    Parse(WorkloadArgs),
}

/// Parses a Prometheus duration (`500ms`, `15s`, `5m`, `4h`, `1d`, `1h30m`).
fn duration(s: &str) -> Result<Duration, String> {
    query::api::params::parse_prom_duration(s.trim())
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
        .ok_or_else(|| format!("bad duration {s:?} (e.g. 500ms, 15s, 5m, 4h, 1d)"))
}

#[derive(Args, Clone)]
struct WorkloadArgs {
    /// Preset for smoke tests: 20 metrics × 100 series, 1h at 60s (~1 minute in all).
    #[arg(long)]
    quick: bool,
    /// Metric names.
    #[arg(long, default_value_t = 100)]
    metrics: usize,
    /// Series per metric name (total series = metrics × series-per-metric).
    #[arg(long, default_value_t = 1000)]
    series_per_metric: usize,
    /// Scrape interval.
    #[arg(long, default_value = "60s", value_parser = duration)]
    interval: Duration,
    /// Time covered; the data ends now.
    #[arg(long, default_value = "4h", value_parser = duration)]
    span: Duration,
    /// Fraction of series replaced by new ones every hour.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Fraction of samples held back and sent after newer samples of their series.
    #[arg(long, default_value_t = 0.0)]
    ooo_fraction: f64,
    /// Maximum lag of a held-back sample.
    #[arg(long, default_value = "10m", value_parser = duration)]
    ooo_max_lag: Duration,
    /// Timestamp jitter either side of a target's scrape offset.
    #[arg(long, default_value = "5ms", value_parser = duration)]
    jitter: Duration,
    /// Seed of the workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Every series an integer native histogram (schema 3, 10–19 buckets) instead of floats;
    /// Prometheus runs with `--enable-feature=native-histograms`, VictoriaMetrics is skipped.
    #[arg(long)]
    histograms: bool,
    /// Connections (sender shards).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Samples per request.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
}

impl WorkloadArgs {
    fn spec(&self) -> Result<Spec> {
        let mut a = self.clone();
        if a.quick {
            a.metrics = 20;
            a.series_per_metric = 100;
            a.interval = Duration::from_secs(60);
            a.span = Duration::from_secs(3600);
        }
        let interval_ms = i64::try_from(a.interval.as_millis())?;
        let span_ms = i64::try_from(a.span.as_millis())?;
        if interval_ms <= 0 || span_ms < interval_ms {
            bail!("need 0 < interval <= span");
        }
        if interval_ms > 300_000 {
            eprintln!("warning: interval above 5m: instant queries at the end see fewer series (5m lookback)");
        }
        if !(0.0..=1.0).contains(&a.churn) || !(0.0..1.0).contains(&a.ooo_fraction) {
            bail!("churn must be in [0, 1] and ooo-fraction in [0, 1)");
        }
        if a.metrics == 0 || a.series_per_metric == 0 || a.connections == 0 || a.batch == 0 {
            bail!("metrics, series-per-metric, connections and batch must be positive");
        }
        let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
        let rounds = span_ms / interval_ms;
        let start_ms = (now / interval_ms - rounds) * interval_ms;
        Ok(Spec {
            metrics: a.metrics,
            series_per_metric: a.series_per_metric,
            interval_ms,
            span_ms: rounds * interval_ms,
            churn: a.churn,
            ooo_fraction: a.ooo_fraction,
            ooo_max_lag_ms: i64::try_from(a.ooo_max_lag.as_millis())?.max(interval_ms),
            start_ms,
            jitter_ms: i64::try_from(a.jitter.as_millis())?,
            seed: a.seed,
            histograms: a.histograms,
        })
    }

    fn load_options(&self, spec: &Spec, max_duration: Duration) -> LoadOptions {
        // Shards stay within 10 minutes of data time of each other (and at least 2 requests' worth).
        let per_round = (spec.slots() / self.connections).max(1);
        let rounds_per_request = (self.batch / per_round + 1) as u32;
        let skew = ((600_000 / spec.interval_ms) as u32).max(2 * rounds_per_request + 2);
        LoadOptions { max_skew_rounds: skew, max_duration, retries: 5, protocol: Protocol::V1 }
    }
}

#[derive(Args)]
struct CompareArgs {
    #[command(flatten)]
    workload: WorkloadArgs,
    /// The strata binary [default: `strata` next to this executable, else target/release/strata of the workspace].
    #[arg(long)]
    strata_bin: Option<PathBuf>,
    /// The Prometheus binary.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: PathBuf,
    /// The VictoriaMetrics binary.
    #[arg(long, default_value = "/usr/bin/victoria-metrics")]
    victoria_metrics_bin: PathBuf,
    /// Targets to run, in order (comma-separated: strata, prometheus, victoriametrics).
    #[arg(long, default_value = "strata,prometheus,victoriametrics")]
    targets: String,
    /// Directory for results, server logs and the (temporary) data dirs.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Runs of each query; the median is reported.
    #[arg(long, default_value_t = 7)]
    query_runs: usize,
    /// Stop a target's load after this long (what is left counts as failed).
    #[arg(long, default_value = "30m", value_parser = duration)]
    max_load: Duration,
    /// Timeout of each wait for ready, queryable or exit.
    #[arg(long, default_value = "10m", value_parser = duration)]
    wait_timeout: Duration,
    /// Keep the servers' data dirs.
    #[arg(long)]
    keep_data: bool,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Remote-write URL, e.g. http://127.0.0.1:9090/api/v1/write (loopback only).
    #[arg(long)]
    url: String,
    /// Stop after this long.
    #[arg(long, default_value = "30m", value_parser = duration)]
    max_load: Duration,
    /// Remote-write protocol: 1 (`prometheus.WriteRequest`) or 2 (`io.prometheus.write.v2.Request`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    protocol: u8,
}

fn default_strata_bin() -> PathBuf {
    let next_to_me = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("strata")));
    match next_to_me {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/strata"),
    }
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Compare(a) => {
            let spec = a.workload.spec()?;
            let mut targets = Vec::new();
            for name in a.targets.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                targets.push(match name.to_ascii_lowercase().as_str() {
                    "strata" => {
                        Target { kind: Kind::Strata, bin: a.strata_bin.clone().unwrap_or_else(default_strata_bin) }
                    }
                    "prometheus" => Target { kind: Kind::Prometheus, bin: a.prometheus_bin.clone() },
                    "victoriametrics" | "vm" => {
                        Target { kind: Kind::VictoriaMetrics, bin: a.victoria_metrics_bin.clone() }
                    }
                    other => bail!("unknown target {other:?}"),
                });
            }
            let opts = Options {
                load: a.workload.load_options(&spec, a.max_load),
                spec,
                connections: a.workload.connections,
                batch: a.workload.batch,
                targets,
                out_dir: a.out.clone(),
                query_runs: a.query_runs,
                wait_timeout: a.wait_timeout,
                keep_data: a.keep_data,
            };
            let r = compare::run(&opts)?;
            let md = report::write_all(&r, &a.out).context("writing the report")?;
            println!("{md}");
            eprintln!("wrote {0}/compare.json, {0}/compare.md, {0}/compare.svg", a.out.display());
        }
        Cmd::Load(a) => {
            let host = a.url.trim_start_matches("http://").split(['/', ':']).next().unwrap_or_default();
            if !matches!(host, "127.0.0.1" | "localhost" | "[") && !host.starts_with("127.") {
                bail!("load is only sent to loopback addresses, not {host:?}");
            }
            let spec = a.workload.spec()?;
            let (mut shards, encode_s) = compare::encode(&spec, a.workload.connections, a.workload.batch);
            let mut load = a.workload.load_options(&spec, a.max_load);
            if a.protocol == 2 {
                shards = strata_benches::payload::to_v2(&shards);
                load.protocol = Protocol::V2;
            }
            eprintln!("encoded {} samples in {encode_s:.1}s", spec.total_samples());
            let bar = indicatif::ProgressBar::new(spec.total_samples());
            let r = strata_benches::client::send_load(&a.url, &shards, &load, &bar);
            bar.finish_and_clear();
            println!("{}", serde_json::to_string_pretty(&r)?);
            println!("samples/s: {:.0}", r.samples_ok as f64 / r.wall_s.max(1e-9));
        }
        Cmd::Parse(w) => {
            let spec = w.spec()?;
            let (shards, _) = compare::encode(&spec, w.connections, w.batch);
            println!("{}", serde_json::to_string_pretty(&parse::measure(&shards)?)?);
        }
    }
    Ok(())
}
