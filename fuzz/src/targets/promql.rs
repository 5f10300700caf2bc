//! `promql`: the PromQL parser ([`query::parser::parse`]) on mutated query texts and, for those
//! that parse, evaluation by [`query::Engine`] (instant and range) over an in-memory data set, with
//! a short timeout and a small sample limit so that every run is bounded.
//!
//! Input: the query text (bytes that are not UTF-8 are replaced, as the HTTP API would reject them).
//! The runner calls targets on a thread with [`query::complexity::EVAL_STACK_BYTES`] of stack, as
//! the server's query threads have.

use std::time::Duration;

use query::engine::mem::MemStorage;
use query::engine::Labels;
use query::{Engine, EngineOptions};

use super::Target;

/// Longest query text evaluated (queries are short; longer inputs only slow the run down).
const MAX_QUERY_BYTES: usize = 4096;
/// Evaluation time of the instant queries and end of the range queries (ms).
const END_MS: i64 = 1_700_000_600_000;
/// Range queries cover the 10 minutes before [`END_MS`].
const RANGE_MS: i64 = 600_000;
const STEP_MS: i64 = 30_000;
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub(crate) struct Promql {
    storage: MemStorage,
    engine: Engine,
}

impl Promql {
    pub(crate) fn new() -> Promql {
        let mut storage = MemStorage::default();
        let start = END_MS - 2 * RANGE_MS;
        for (i, (job, inst, code)) in
            [("api", "a:1", "200"), ("api", "a:1", "500"), ("api", "b:1", "200"), ("db", "c:1", "200")]
                .into_iter()
                .enumerate()
        {
            let counter = Labels::from_pairs(&[
                ("__name__", "http_requests_total"),
                ("job", job),
                ("instance", inst),
                ("code", code),
            ]);
            let gauge = Labels::from_pairs(&[("__name__", "temperature"), ("job", job), ("instance", inst)]);
            let bucket = |le: &str| {
                Labels::from_pairs(&[("__name__", "latency_bucket"), ("job", job), ("instance", inst), ("le", le)])
            };
            for k in 0..80i64 {
                let t = start + k * 15_000;
                // A counter reset in the middle of one series.
                let reset = if i == 1 && k > 40 { 40.0 } else { 0.0 };
                storage.add(counter.clone(), t, (k as f64) * (i as f64 + 1.0) - reset * (i as f64 + 1.0));
                storage.add(gauge.clone(), t, 20.0 + (k as f64 / 7.0).sin() * 5.0 + i as f64);
                for (j, le) in ["0.1", "1", "+Inf"].iter().enumerate() {
                    storage.add(bucket(le), t, (k * (j as i64 + 1)) as f64);
                }
            }
        }
        let gone = Labels::from_pairs(&[("__name__", "temperature"), ("job", "old"), ("instance", "z:1")]);
        storage.add(gone.clone(), END_MS - RANGE_MS, 1.0);
        storage.add(gone, END_MS - RANGE_MS + 15_000, f64::from_bits(STALE_NAN_BITS));
        let opts = EngineOptions {
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_millis(250),
            max_samples: 20_000,
            max_points_per_series: 200,
            per_step_stats: false,
        };
        Promql { storage, engine: Engine::new(opts) }
    }
}

const QUERIES: &[&str] = &[
    "http_requests_total",
    "http_requests_total{job=\"api\",code!=\"500\"}",
    "{__name__=~\"http.*|temp.*\", instance!~\"b:.*\"}",
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total[1m]))",
    "sum without (instance, code) (increase(http_requests_total[2m] offset 1m))",
    "topk(2, temperature) or bottomk(1, temperature)",
    "avg_over_time(temperature[5m:30s])",
    "max_over_time(rate(http_requests_total[1m])[5m:1m] @ end())",
    "histogram_quantile(0.9, sum by (le, job) (rate(latency_bucket[5m])))",
    "temperature > on (job, instance) group_left temperature * 0.5",
    "http_requests_total / ignoring (code) group_left sum by (job, instance) (http_requests_total)",
    "count_values(\"value\", round(temperature))",
    "quantile(0.5, temperature) - stddev(temperature) + stdvar(temperature)",
    "label_replace(temperature, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "label_join(temperature, \"foo\", \",\", \"job\", \"instance\")",
    "absent(nonexistent{job=\"x\"})",
    "absent_over_time(temperature[1m])",
    "predict_linear(temperature[5m], 3600) and deriv(temperature[5m]) unless temperature < 0",
    "holt_winters(temperature[5m], 0.5, 0.5)",
    "clamp(temperature, 10, 20) % 3 ^ 2",
    "-temperature atan2 temperature",
    "time() - timestamp(temperature)",
    "vector(1) + scalar(sum(temperature))",
    "sort_desc(changes(temperature[5m]) + resets(http_requests_total[5m]))",
    "irate(http_requests_total[1m]) == bool 0",
    "delta(temperature[2m]) != 1 or idelta(temperature[2m])",
    "quantile_over_time(0.99, temperature[5m]) / count_over_time(temperature[5m])",
    "last_over_time(temperature[1m]) >= present_over_time(temperature[1m])",
    "sgn(exp(ln(abs(temperature)))) * sqrt(log2(temperature)) + log10(ceil(floor(temperature)))",
    "day_of_month() + days_in_month(vector(time())) + hour(temperature) + minute() + month() + year()",
    "group by (job) (temperature) * on() group_right vector(2)",
    "limitk(1, temperature)",
    "sum(temperature) by (job) [5m:1m]",
    "1 + 2 * 3 / 4 % 5 ^ 6",
    "\"a string\"",
    "NaN + Inf - -Inf",
    "0x1F + 1e3 + 5m",
    "rate(http_requests_total[1m] @ 1700000300 offset -1m)",
    "(((temperature)))",
];

impl Target for Promql {
    fn name(&self) -> &'static str {
        "promql"
    }

    fn corpus(&mut self) -> Vec<Vec<u8>> {
        QUERIES.iter().map(|q| q.as_bytes().to_vec()).collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"(",
            b")",
            b"[",
            b"]",
            b"{",
            b"}",
            b",",
            b"[5m]",
            b"[1m:15s]",
            b"[0s]",
            b"[1y]",
            b" offset -1h",
            b" offset 1h",
            b" @ start()",
            b" @ end()",
            b" @ -1e300",
            b"sum",
            b"avg",
            b"count",
            b"by (job)",
            b"without ()",
            b"on ()",
            b"ignoring (le)",
            b"group_left",
            b"group_right",
            b" and ",
            b" or ",
            b" unless ",
            b"+",
            b"-",
            b"*",
            b"/",
            b"%",
            b"^",
            b"==",
            b"!=",
            b"<=",
            b">",
            b" bool ",
            b"=~",
            b"!~",
            b"\".*\"",
            b"\"(\"",
            b"\"\"",
            b"rate(",
            b"histogram_quantile(",
            b"quantile(",
            b"topk(",
            b"count_values(",
            b"label_replace(",
            b"scalar(",
            b"vector(",
            b"absent(",
            b"sort(",
            b"timestamp(",
            b"predict_linear(",
            b"NaN",
            b"Inf",
            b"-Inf",
            b"1e308",
            b"-0",
            b"9223372036854775807",
            b"0x",
            b"__name__",
            b"le",
            b"temperature",
            b"http_requests_total",
            b"latency_bucket",
        ]
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let text = String::from_utf8_lossy(&input[..input.len().min(MAX_QUERY_BYTES)]);
        let Ok(expr) = query::parser::parse(&text) else {
            return false;
        };
        let instant = self.engine.instant(&self.storage, &expr, END_MS, None);
        let range = self.engine.range(&self.storage, &expr, END_MS - RANGE_MS, END_MS, STEP_MS, None);
        instant.is_ok() && range.is_ok()
    }
}
