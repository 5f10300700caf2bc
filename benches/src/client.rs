//! HTTP side of the harness: the bounded remote-write load over keep-alive connections, and
//! Prometheus-API queries.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::payload::ShardPayloads;

/// An agent holding (at most) one keep-alive connection.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .max_idle_connections_per_host(1)
        .build()
}

/// Limits of one load run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// A shard waits while its next payload is more than this many scrape rounds ahead of the
    /// slowest shard (a real sender's shards advance together with the clock).
    pub max_skew_rounds: u32,
    /// The load stops (skipping what is left) after this long.
    pub max_duration: Duration,
    /// Retries of a payload after a transport error, 5xx or 429.
    pub retries: u32,
    /// Remote-write protocol of the payloads (their `Content-Type`).
    pub protocol: Protocol,
}

/// The remote-write protocol a load is sent in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// 1.0: `prometheus.WriteRequest`.
    #[default]
    V1,
    /// 2.0: `io.prometheus.write.v2.Request`.
    V2,
}

impl Protocol {
    /// The request `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::V1 => "application/x-protobuf",
            Protocol::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// The `X-Prometheus-Remote-Write-Version` header.
    pub fn version(self) -> &'static str {
        match self {
            Protocol::V1 => "0.1.0",
            Protocol::V2 => "2.0.0",
        }
    }
}

/// What a load run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadResult {
    /// Wall time of the whole load.
    pub wall_s: f64,
    /// Samples in requests answered 2xx.
    pub samples_ok: u64,
    /// Samples in requests answered 4xx (rejected; a 400 may still have stored part of them).
    pub samples_rejected: u64,
    /// Samples in requests that failed after every retry, or were skipped at the deadline.
    pub samples_failed: u64,
    /// Requests sent (retries included).
    pub requests: u64,
    /// The first error answers seen (at most 5).
    pub errors: Vec<String>,
}

/// Sends every shard's payloads, in order, each shard on its own connection; returns when all
/// are sent or `max_duration` passed.
pub fn send_load(url: &str, shards: &[ShardPayloads], opts: &LoadOptions, bar: &ProgressBar) -> LoadResult {
    let progress: Vec<AtomicU32> = shards.iter().map(|_| AtomicU32::new(0)).collect();
    let (ok, rejected, failed, requests) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let errors = Mutex::new(Vec::new());
    let t0 = Instant::now();
    let deadline = t0 + opts.max_duration;
    std::thread::scope(|s| {
        for (i, payloads) in shards.iter().enumerate() {
            let (progress, ok, rejected, failed, requests, errors) =
                (&progress, &ok, &rejected, &failed, &requests, &errors);
            s.spawn(move || {
                let agent = agent();
                for p in payloads {
                    let n = u64::from(p.samples);
                    if Instant::now() > deadline {
                        failed.fetch_add(n, Ordering::Relaxed);
                        continue;
                    }
                    wait_for_slowest(progress, i, p.round, opts.max_skew_rounds, deadline);
                    let mut attempt = 0;
                    loop {
                        requests.fetch_add(1, Ordering::Relaxed);
                        let r = agent
                            .post(url)
                            .set("Content-Type", opts.protocol.content_type())
                            .set("Content-Encoding", "snappy")
                            .set("X-Prometheus-Remote-Write-Version", opts.protocol.version())
                            .send_bytes(&p.body);
                        let retry = match r {
                            Ok(resp) => {
                                let _ = resp.into_string();
                                ok.fetch_add(n, Ordering::Relaxed);
                                false
                            }
                            Err(ureq::Error::Status(code, resp)) if code != 429 && code < 500 => {
                                note(errors, format!("{code}: {}", resp.into_string().unwrap_or_default()));
                                rejected.fetch_add(n, Ordering::Relaxed);
                                false
                            }
                            Err(e) => {
                                note(errors, e.to_string());
                                true
                            }
                        };
                        if !retry {
                            break;
                        }
                        attempt += 1;
                        if attempt > opts.retries || Instant::now() > deadline {
                            failed.fetch_add(n, Ordering::Relaxed);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100 << attempt.min(6)));
                    }
                    progress[i].store(p.round, Ordering::Release);
                    bar.inc(n);
                }
                progress[i].store(u32::MAX, Ordering::Release);
            });
        }
    });
    LoadResult {
        wall_s: t0.elapsed().as_secs_f64(),
        samples_ok: ok.into_inner(),
        samples_rejected: rejected.into_inner(),
        samples_failed: failed.into_inner(),
        requests: requests.into_inner(),
        errors: errors.into_inner().unwrap_or_default(),
    }
}

fn note(errors: &Mutex<Vec<String>>, e: String) {
    if let Ok(mut v) = errors.lock() {
        if v.len() < 5 {
            let mut e = e;
            e.truncate(300);
            v.push(e);
        }
    }
}

/// Blocks while `round` is more than `skew` rounds ahead of the slowest other shard (at most 30 s,
/// so a stuck shard cannot stall the others forever).
fn wait_for_slowest(progress: &[AtomicU32], me: usize, round: u32, skew: u32, deadline: Instant) {
    let give_up = (Instant::now() + Duration::from_secs(30)).min(deadline);
    loop {
        let slowest = progress
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != me)
            .map(|(_, r)| r.load(Ordering::Acquire))
            .min()
            .unwrap_or(u32::MAX);
        if round <= slowest.saturating_add(skew) || Instant::now() > give_up {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A Prometheus-API query: `/api/v1/query` (instant, `range == None`) or `/api/v1/query_range`.
#[derive(Debug, Clone, Serialize)]
pub struct Query {
    /// Short name for tables.
    pub name: String,
    /// PromQL.
    pub promql: String,
    /// Evaluation time (instant) or end (range), ms.
    pub time_ms: i64,
    /// `(start_ms, step_ms)` for a range query.
    pub range: Option<(i64, i64)>,
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Runs `q` once; returns its latency and the parsed JSON answer (an error unless `status` is `success`).
pub fn run_query(agent: &ureq::Agent, base: &str, q: &Query) -> Result<(Duration, serde_json::Value)> {
    let req = match q.range {
        None => agent.get(&format!("{base}/api/v1/query")).query("query", &q.promql).query("time", &secs(q.time_ms)),
        Some((start, step)) => agent
            .get(&format!("{base}/api/v1/query_range"))
            .query("query", &q.promql)
            .query("start", &secs(start))
            .query("end", &secs(q.time_ms))
            .query("step", &secs(step)),
    };
    let t0 = Instant::now();
    let body = match req.call() {
        Ok(r) => r.into_string()?,
        Err(ureq::Error::Status(code, r)) => {
            bail!("{code}: {}", r.into_string().unwrap_or_default())
        }
        Err(e) => return Err(e.into()),
    };
    let took = t0.elapsed();
    let v: serde_json::Value = serde_json::from_str(&body)?;
    if v.get("status").and_then(|s| s.as_str()) != Some("success") {
        bail!("query failed: {}", body.chars().take(300).collect::<String>());
    }
    Ok((took, v))
}

/// The single number of a one-element vector or scalar answer.
pub fn single_value(v: &serde_json::Value) -> Option<f64> {
    let data = v.get("data")?;
    let result = data.get("result")?;
    let pair = match data.get("resultType")?.as_str()? {
        "scalar" => result,
        "vector" => result.as_array()?.first()?.get("value")?,
        _ => return None,
    };
    pair.get(1)?.as_str()?.parse().ok()
}
