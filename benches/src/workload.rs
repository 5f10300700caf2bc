//! Avalanche-like workloads with node-exporter-like series.
//!
//! A workload has `metrics × series_per_metric` series *slots*. Every slot is scraped once per
//! `interval` for `span`; its timestamps sit at a per-host offset inside the interval plus a few ms
//! of jitter (as Prometheus scrapes do). Half the metric names are counters (monotonic, integer
//! increments at a per-series rate), half gauges (a bounded random walk with 2 decimals).
//!
//! Each series has 8 labels: `__name__`, `cpu`, `env`, `instance`, `job`, `pod`, `region`, `zone`.
//! With `churn > 0` a fixed fraction of the slots gets a new `pod` (a new series) every hour.
//!
//! With `histograms`, every series is instead an integer native histogram (exponential schema 3,
//! as a Prometheus client's default bucket factor of 1.1 gives) of request durations: each scrape
//! adds observations to a per-series band of 10–19 buckets, bell-shaped around its centre, and
//! empty buckets are sent only inside gaps of at most two (as client_golang does).
//!
//! Out of order: with `ooo_fraction > 0`, that fraction of samples is *held back* and sent after
//! newer samples of the same series, between one interval and `ooo_max_lag` later.
//!
//! Everything is a pure function of the [`Spec`] (including its seed), so every target of a
//! comparison, and every run, sees the same samples.

use std::collections::BTreeMap;

use ingest::proto::histogram::{Count, ResetHint, ZeroCount};
use ingest::proto::{BucketSpan, Histogram};

use crate::rng::{mix, Rng};

/// Counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic, integer increments.
    Counter,
    /// A bounded random walk.
    Gauge,
    /// An integer native histogram (a counter of observations per bucket).
    Histogram,
}

/// Metric names, alternating counter / gauge (so metric 0 is a counter and metric 1 a gauge).
const METRICS: &[(&str, Kind)] = &[
    ("node_cpu_seconds_total", Kind::Counter),
    ("node_memory_MemAvailable_bytes", Kind::Gauge),
    ("node_network_receive_bytes_total", Kind::Counter),
    ("node_filesystem_avail_bytes", Kind::Gauge),
    ("node_disk_read_bytes_total", Kind::Counter),
    ("node_load1", Kind::Gauge),
    ("node_network_transmit_bytes_total", Kind::Counter),
    ("node_memory_Cached_bytes", Kind::Gauge),
    ("node_disk_io_time_seconds_total", Kind::Counter),
    ("node_filefd_allocated", Kind::Gauge),
    ("node_context_switches_total", Kind::Counter),
    ("node_procs_running", Kind::Gauge),
];

/// Metric names of the histogram workload.
const HISTOGRAM_METRICS: &[&str] = &[
    "http_request_duration_seconds",
    "grpc_server_handling_seconds",
    "db_query_duration_seconds",
    "rpc_client_duration_seconds",
];

/// Schema of the generated histograms (bucket boundaries at powers of 2^(1/8)).
const HISTOGRAM_SCHEMA: i32 = 3;

const JOBS: &[&str] = &["node", "kubelet", "api", "db"];
const ENVS: &[&str] = &["prod", "staging"];
const REGIONS: &[&str] = &["eu-west-1", "us-east-1", "ap-south-1"];
/// Series per host and metric (the `cpu` label).
const CPUS_PER_HOST: usize = 4;
const HOUR_MS: i64 = 3_600_000;

/// Name and kind of metric `k`. Beyond the list, names repeat with a `_<n>` suffix.
pub fn metric(k: usize) -> (String, Kind) {
    let (base, kind) = METRICS[k % METRICS.len()];
    let round = k / METRICS.len();
    if round == 0 {
        (base.to_string(), kind)
    } else {
        (format!("{base}_{round}"), kind)
    }
}

/// The parameters of a workload.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    /// Distinct metric names.
    pub metrics: usize,
    /// Series per metric name.
    pub series_per_metric: usize,
    /// Scrape interval, ms.
    pub interval_ms: i64,
    /// Time covered, ms (`span / interval` scrapes per series).
    pub span_ms: i64,
    /// Fraction of slots that get a new series every hour (0 = no churn).
    pub churn: f64,
    /// Fraction of samples sent late (out of order).
    pub ooo_fraction: f64,
    /// Maximum lag of a late sample behind the newest sample of its series, ms.
    pub ooo_max_lag_ms: i64,
    /// Timestamp of the first scrape round, ms since the epoch.
    pub start_ms: i64,
    /// Maximum timestamp jitter either side of a series' scrape offset, ms.
    pub jitter_ms: i64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Every series is an integer native histogram instead of a float counter or gauge.
    #[serde(default)]
    pub histograms: bool,
}

impl Spec {
    /// Series slots (series active at any one time).
    pub fn slots(&self) -> usize {
        self.metrics * self.series_per_metric
    }

    /// Scrape rounds.
    pub fn rounds(&self) -> u32 {
        u32::try_from((self.span_ms / self.interval_ms).max(1)).unwrap_or(u32::MAX)
    }

    /// Total samples.
    pub fn total_samples(&self) -> u64 {
        self.slots() as u64 * u64::from(self.rounds())
    }

    /// Whether `slot` is one of the churning slots.
    pub fn churns(&self, slot: usize) -> bool {
        self.churn > 0.0 && (mix(self.seed ^ 0xC4_u64 ^ slot as u64) % 1_000_000) < (self.churn * 1_000_000.0) as u64
    }

    /// The incarnation (`pod` generation) of `slot` at `round`.
    pub fn incarnation(&self, slot: usize, round: u32) -> u32 {
        if self.churns(slot) {
            u32::try_from(i64::from(round) * self.interval_ms / HOUR_MS).unwrap_or(u32::MAX)
        } else {
            0
        }
    }

    /// Distinct series over the whole span.
    pub fn distinct_series(&self) -> u64 {
        let last = self.rounds() - 1;
        (0..self.slots()).map(|s| u64::from(self.incarnation(s, last)) + 1).sum()
    }

    /// Name and kind of metric `k` of this workload.
    fn metric(&self, k: usize) -> (String, Kind) {
        if !self.histograms {
            return metric(k);
        }
        let base = HISTOGRAM_METRICS[k % HISTOGRAM_METRICS.len()];
        match k / HISTOGRAM_METRICS.len() {
            0 => (base.to_string(), Kind::Histogram),
            round => (format!("{base}_{round}"), Kind::Histogram),
        }
    }

    /// Labels of `slot` in `incarnation`, sorted by name.
    pub fn labels(&self, slot: usize, incarnation: u32) -> Vec<(String, String)> {
        let (name, _) = self.metric(slot / self.series_per_metric);
        let j = slot % self.series_per_metric;
        let host = j / CPUS_PER_HOST;
        let cpu = j % CPUS_PER_HOST;
        let job = JOBS[host % JOBS.len()];
        let region = REGIONS[host % REGIONS.len()];
        vec![
            ("__name__".into(), name),
            ("cpu".into(), cpu.to_string()),
            ("env".into(), ENVS[(host / 7) % ENVS.len()].into()),
            ("instance".into(), instance(host)),
            ("job".into(), job.into()),
            ("pod".into(), format!("{job}-{host:06x}-{incarnation}")),
            ("region".into(), region.into()),
            ("zone".into(), format!("{region}{}", ['a', 'b', 'c'][(host / 3) % 3])),
        ]
    }

    /// The kind of the metric of `slot`.
    pub fn kind(&self, slot: usize) -> Kind {
        self.metric(slot / self.series_per_metric).1
    }

    /// Name of the counter (or, with histograms, first histogram) metric used by queries (metric 0).
    pub fn counter_metric(&self) -> String {
        self.metric(0).0
    }

    /// Name of the gauge (or second histogram) metric used by queries (metric 1, or metric 0 if there is only one).
    pub fn gauge_metric(&self) -> String {
        self.metric(usize::from(self.metrics > 1)).0
    }

    /// A time at which every slot's newest sample is at most one interval old: the end of the last round.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + i64::from(self.rounds()) * self.interval_ms - 1
    }

    /// `instance` label of one series (`host` 0, cpu 0): used by single-series queries.
    pub fn probe_instance(&self) -> String {
        instance(0)
    }
}

fn instance(host: usize) -> String {
    format!("10.{}.{}.{}:9100", (host >> 16) & 255, (host >> 8) & 255, host & 255)
}

/// One generated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// Series slot.
    pub slot: u32,
    /// Incarnation of the slot (see [`Spec::incarnation`]).
    pub incarnation: u32,
    /// Timestamp, ms.
    pub t: i64,
    /// Value (with histograms: the observation count).
    pub v: f64,
    /// The native histogram, in the histogram workload (its timestamp is `t`).
    pub histogram: Option<Box<Histogram>>,
    /// The scrape round in which it is sent (later than its own round if held back).
    pub send_round: u32,
}

/// The evolving state of one slot.
#[derive(Debug, Clone)]
struct SlotState {
    rng: Rng,
    kind: Kind,
    /// Scrape offset inside the interval, ms (per host, like a scrape target).
    offset_ms: i64,
    incarnation: u32,
    value: f64,
    /// Counter: mean increment per scrape. Gauge: level around which it walks. Histogram: mean
    /// observations per scrape in its busiest bucket.
    scale: f64,
    /// Histogram: cumulative counts of the buckets `first_bucket..first_bucket + len`.
    buckets: Vec<u64>,
    first_bucket: i32,
    /// Histogram: sum of the observations.
    sum: f64,
}

impl SlotState {
    fn new(spec: &Spec, slot: usize) -> Self {
        let mut rng = Rng::new(mix(spec.seed ^ (slot as u64).wrapping_mul(0x9E37)));
        let host = (slot % spec.series_per_metric) / CPUS_PER_HOST;
        let offset_ms = (mix(spec.seed ^ 0x05 ^ host as u64) % spec.interval_ms.max(1) as u64) as i64;
        let kind = spec.kind(slot);
        let scale = match kind {
            Kind::Counter => 10f64.powf(rng.f64() * 5.0),
            Kind::Gauge => 10f64.powf(1.0 + rng.f64() * 8.0),
            Kind::Histogram => 10f64.powf(rng.f64() * 2.5),
        };
        let value = match kind {
            Kind::Counter => (rng.f64() * scale * 1000.0).round(),
            Kind::Gauge => scale,
            Kind::Histogram => 0.0,
        };
        let (first_bucket, buckets) = if kind == Kind::Histogram {
            // Centred between ~1 ms and ~1 s (bucket index 8·log2(seconds) at schema 3).
            let first = rng.range_i64(-85, -10) as i32;
            (first, vec![0; rng.range_i64(10, 19) as usize])
        } else {
            (0, Vec::new())
        };
        SlotState { rng, kind, offset_ms, incarnation: 0, value, scale, buckets, first_bucket, sum: 0.0 }
    }

    /// Adds one scrape's observations to the histogram state and returns it as sent.
    fn observe(&mut self, t: i64) -> Histogram {
        let len = self.buckets.len() as f64;
        let centre = (len - 1.0) / 2.0;
        for (i, b) in self.buckets.iter_mut().enumerate() {
            let z = (i as f64 - centre) / (len / 4.0);
            let n = (self.scale * (-z * z).exp() * 2.0 * self.rng.f64()).round();
            *b += n as u64;
            // Observations sit at the bucket's geometric middle.
            let index = f64::from(self.first_bucket) + i as f64;
            self.sum += n * ((index - 0.5) / 8.0).exp2();
        }
        let mut spans: Vec<BucketSpan> = Vec::new();
        let mut deltas = Vec::new();
        let (mut prev, mut last_index) = (0i64, None::<i32>);
        let mut i = 0;
        while i < self.buckets.len() {
            if self.buckets[i] == 0 {
                i += 1;
                continue;
            }
            let index = self.first_bucket + i as i32;
            let gap = last_index.map(|l| index - l - 1);
            match (gap, spans.last_mut()) {
                // Up to two empty buckets are cheaper sent than a new span.
                (Some(g), Some(span)) if g <= 2 => {
                    for _ in 0..g {
                        deltas.push(-prev);
                        prev = 0;
                    }
                    span.length += g as u32 + 1;
                }
                (Some(g), _) => spans.push(BucketSpan { offset: g, length: 1 }),
                (None, _) => spans.push(BucketSpan { offset: index, length: 1 }),
            }
            let c = self.buckets[i] as i64;
            deltas.push(c - prev);
            prev = c;
            last_index = Some(index);
            i += 1;
        }
        let count: u64 = self.buckets.iter().sum();
        self.value = count as f64;
        Histogram {
            count: Some(Count::CountInt(count)),
            sum: self.sum,
            schema: HISTOGRAM_SCHEMA,
            zero_threshold: 2f64.powi(-128),
            zero_count: Some(ZeroCount::ZeroCountInt(0)),
            positive_spans: spans,
            positive_deltas: deltas,
            reset_hint: ResetHint::Unknown as i32,
            timestamp: t,
            ..Default::default()
        }
    }

    /// The sample of `round` (rounds must be visited in order).
    fn sample(&mut self, spec: &Spec, slot: usize, round: u32) -> (u32, i64, f64, Option<Box<Histogram>>) {
        let inc = spec.incarnation(slot, round);
        if inc != self.incarnation {
            self.incarnation = inc;
            self.value = match self.kind {
                Kind::Counter | Kind::Histogram => 0.0,
                Kind::Gauge => self.scale,
            };
            self.buckets.iter_mut().for_each(|b| *b = 0);
            self.sum = 0.0;
        }
        let jitter = self.rng.range_i64(-spec.jitter_ms, spec.jitter_ms);
        // Keep every sample inside its own interval so per-series order is strict.
        let within = (self.offset_ms + jitter).clamp(0, spec.interval_ms - 1);
        let t = spec.start_ms + i64::from(round) * spec.interval_ms + within;
        if self.kind == Kind::Histogram {
            let h = self.observe(t);
            return (inc, t, self.value, Some(Box::new(h)));
        }
        let u = self.rng.f64();
        self.value = match self.kind {
            Kind::Counter => self.value + (self.scale * 2.0 * u).round(),
            Kind::Gauge => {
                let next = self.value + self.scale * 0.02 * (u - 0.5);
                (next.clamp(self.scale * 0.5, self.scale * 1.5) * 100.0).round() / 100.0
            }
            Kind::Histogram => self.value,
        };
        (inc, t, self.value, None)
    }
}

/// The shard (connection) that sends `slot`'s samples, as Prometheus shards by series.
pub fn shard_of(spec: &Spec, slot: usize, shards: usize) -> usize {
    (mix(spec.seed ^ 0x5A_u64 ^ slot as u64) % shards.max(1) as u64) as usize
}

/// Calls `f` for every sample of shard `shard` (of `shards`), in send order: round by round, the
/// round's own samples first, then the held-back samples due in that round. Samples of one series
/// are in timestamp order except the held-back ones.
pub fn shard_stream(spec: &Spec, shard: usize, shards: usize, mut f: impl FnMut(Emitted)) {
    let slots: Vec<usize> = (0..spec.slots()).filter(|&s| shard_of(spec, s, shards) == shard).collect();
    let mut states: Vec<SlotState> = slots.iter().map(|&s| SlotState::new(spec, s)).collect();
    let mut ooo_rng = Rng::new(mix(spec.seed ^ 0x00F_u64 ^ shard as u64));
    let max_lag_rounds = u32::try_from((spec.ooo_max_lag_ms / spec.interval_ms).max(1)).unwrap_or(1);
    let mut held: BTreeMap<u32, Vec<Emitted>> = BTreeMap::new();
    for round in 0..spec.rounds() {
        for (i, &slot) in slots.iter().enumerate() {
            let (incarnation, t, v, histogram) = states[i].sample(spec, slot, round);
            let e = Emitted { slot: slot as u32, incarnation, t, v, histogram, send_round: round };
            if spec.ooo_fraction > 0.0 && ooo_rng.f64() < spec.ooo_fraction {
                let lag = ooo_rng.range_i64(1, i64::from(max_lag_rounds)) as u32;
                held.entry(round + lag).or_default().push(Emitted { send_round: round + lag, ..e });
            } else {
                f(e);
            }
        }
        if let Some(due) = held.remove(&round) {
            due.into_iter().for_each(&mut f);
        }
    }
    // Held-back samples due after the last round go out at the end, in due order.
    for (_, due) in held {
        due.into_iter().for_each(&mut f);
    }
}

/// A compact spec for component benchmarks: `series` series (10 per metric name... or fewer), 15 s
/// scrapes starting at a fixed time, 5 ms jitter.
pub fn bench_spec(series: usize, rounds: u32, ooo_fraction: f64) -> Spec {
    let series_per_metric = series.div_ceil(10).max(1);
    Spec {
        metrics: series.div_ceil(series_per_metric),
        series_per_metric,
        interval_ms: 15_000,
        span_ms: 15_000 * i64::from(rounds),
        churn: 0.0,
        ooo_fraction,
        ooo_max_lag_ms: 10 * 60_000,
        start_ms: 1_700_000_000_000,
        jitter_ms: 5,
        seed: 42,
        histograms: false,
    }
}

/// The samples of `series` chunks of `samples_per_chunk` samples each, one `Vec<(t, v)>` per series,
/// for the XOR benchmarks: counters only, gauges only, or both (`kind == None`).
pub fn chunk_inputs(series: usize, samples_per_chunk: u32, kind: Option<Kind>) -> Vec<Vec<(i64, f64)>> {
    let spec = bench_spec(series * 2, samples_per_chunk, 0.0);
    let mut per_slot: Vec<Vec<(i64, f64)>> = vec![Vec::new(); spec.slots()];
    shard_stream(&spec, 0, 1, |e| per_slot[e.slot as usize].push((e.t, e.v)));
    per_slot
        .into_iter()
        .enumerate()
        .filter(|(slot, _)| kind.is_none_or(|k| spec.kind(*slot) == k))
        .map(|(_, v)| v)
        .take(series)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(churn: f64, ooo: f64) -> Spec {
        Spec {
            metrics: 3,
            series_per_metric: 50,
            interval_ms: 60_000,
            span_ms: 3 * HOUR_MS,
            churn,
            ooo_fraction: ooo,
            ooo_max_lag_ms: 10 * 60_000,
            start_ms: 1_700_000_000_000,
            jitter_ms: 5,
            seed: 7,
            histograms: false,
        }
    }

    #[test]
    fn every_sample_once_and_series_in_order_without_ooo() {
        let s = spec(0.1, 0.0);
        let mut n = 0u64;
        let mut last: std::collections::HashMap<(u32, u32), i64> = Default::default();
        for shard in 0..4 {
            shard_stream(&s, shard, 4, |e| {
                n += 1;
                let prev = last.insert((e.slot, e.incarnation), e.t);
                assert!(prev.is_none_or(|p| p < e.t));
            });
        }
        assert_eq!(n, s.total_samples());
        assert_eq!(last.len() as u64, s.distinct_series());
        assert!(s.distinct_series() > s.slots() as u64);
    }

    #[test]
    fn held_back_samples_lag_at_most_max_lag() {
        let s = spec(0.0, 0.2);
        let mut newest: std::collections::HashMap<u32, i64> = Default::default();
        let (mut n, mut late) = (0u64, 0u64);
        shard_stream(&s, 0, 1, |e| {
            n += 1;
            let m = newest.entry(e.slot).or_insert(i64::MIN);
            if e.t < *m {
                late += 1;
                assert!(*m - e.t <= s.ooo_max_lag_ms + 2 * s.jitter_ms);
            }
            *m = (*m).max(e.t);
        });
        assert_eq!(n, s.total_samples());
        let frac = late as f64 / n as f64;
        assert!((0.15..0.25).contains(&frac), "{frac}");
    }

    /// Bucket counts of an integer histogram by bucket index, from its spans and deltas.
    fn buckets(h: &Histogram) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        let (mut index, mut count, mut deltas) = (0i32, 0i64, h.positive_deltas.iter());
        for span in &h.positive_spans {
            index += span.offset;
            for _ in 0..span.length {
                count += deltas.next().copied().unwrap_or(i64::MIN / 2);
                out.push((index, count));
                index += 1;
            }
        }
        assert!(deltas.next().is_none(), "more deltas than spans cover");
        out
    }

    #[test]
    fn histograms_are_valid_cumulative_and_sparse() {
        let s = Spec { histograms: true, ..spec(0.1, 0.0) };
        assert_eq!(s.kind(3), Kind::Histogram);
        assert_eq!(s.counter_metric(), "http_request_duration_seconds");
        // Per series: its last buckets and sum.
        type Last = (Vec<(i32, i64)>, f64);
        let mut last: std::collections::HashMap<(u32, u32), Last> = Default::default();
        let mut grew = 0;
        shard_stream(&s, 0, 1, |e| {
            let Some(h) = e.histogram.as_deref() else { panic!("float sample in a histogram workload") };
            assert_eq!((h.timestamp, h.schema), (e.t, HISTOGRAM_SCHEMA));
            let b = buckets(h);
            assert!(b.iter().all(|&(_, c)| c >= 0), "{b:?}");
            assert!(b.windows(2).all(|w| w[0].0 < w[1].0));
            let total: i64 = b.iter().map(|&(_, c)| c).sum();
            assert_eq!(h.count, Some(Count::CountInt(total as u64)));
            assert_eq!(e.v, total as f64);
            // Counters: every bucket and the sum only grow within one series.
            if let Some((prev, sum)) = last.get(&(e.slot, e.incarnation)) {
                assert!(h.sum >= *sum);
                assert!(b.len() >= prev.len());
                grew += usize::from(b.len() > prev.len());
                for (i, c) in prev {
                    let now = b.iter().find(|(j, _)| j == i).map_or(0, |&(_, c)| c);
                    assert!(now >= *c, "bucket {i} fell from {c} to {now}");
                }
            }
            last.insert((e.slot, e.incarnation), (b, h.sum));
        });
        assert!(grew > 0, "empty buckets are left out, so a series' first histograms have fewer buckets");
    }

    #[test]
    fn counters_grow_and_labels_are_sorted() {
        let s = spec(0.0, 0.0);
        let l = s.labels(5, 0);
        assert_eq!(l.len(), 8);
        assert!(l.windows(2).all(|w| w[0].0 < w[1].0));
        let c = chunk_inputs(4, 120, Some(Kind::Counter));
        assert_eq!(c.len(), 4);
        assert!(c.iter().all(|v| v.len() == 120 && v.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0)));
    }
}
