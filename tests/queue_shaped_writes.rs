//! Requests shaped like a Prometheus remote-write queue's — one `TimeSeries` per sample, series
//! interleaved and repeated, retries, conflicts, late and too-old samples — checked sample by sample
//! against the write model (`tsdb::testing::WriteModel`), with the out-of-order window off and on,
//! and again after a `kill -9`.

use std::collections::HashMap;

use tsdb::testing::WriteModel;

use crate::util::{request, series, value_string, Server};

const MIN: i64 = 60_000;
const SERIES: usize = 25;
const CHUNK_RANGE: i64 = 2 * 60 * MIN;

/// A deterministic generator (xorshift), so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Counts per reason from the first line of a 400 body: `rejected N of M samples (a: 1, b: 2); …`.
fn reasons(body: &str) -> HashMap<String, u64> {
    let first = body.lines().next().unwrap_or_default();
    let inner = first.split_once('(').and_then(|(_, r)| r.split_once(')')).map(|(i, _)| i).unwrap_or_default();
    inner
        .split(", ")
        .filter_map(|kv| kv.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
        .collect()
}

fn reason_name(e: &tsdb::AppendError) -> &'static str {
    match e {
        tsdb::AppendError::OutOfBounds => "out_of_bounds",
        tsdb::AppendError::OutOfOrder => "out_of_order",
        tsdb::AppendError::TooOld => "too_old",
        tsdb::AppendError::Duplicate { .. } => "duplicate",
        other => panic!("the model does not produce {other:?}"),
    }
}

fn run(window_flag: &str, window: i64, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let args = [window_flag];
    let mut srv = Server::start(dir.path(), &args);
    let mut model = WriteModel::new(window, CHUNK_RANGE);
    let mut rng = Rng(seed);
    // Recent enough for the creation grace period, old enough that late samples stay in the past.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let base = now - 6 * 60 * MIN;
    let mut sent_before: Vec<Vec<(usize, i64, f64)>> = Vec::new();
    let mut total = 0;
    for r in 0..20 {
        let cursor = base + r * 10 * MIN;
        let samples: Vec<(usize, i64, f64)> = if r % 7 == 6 {
            // A retry of an earlier request, as a queue resends after a timeout.
            sent_before[rng.below(sent_before.len() as u64) as usize].clone()
        } else {
            (0..100)
                .map(|_| {
                    let s = rng.below(SERIES as u64) as usize;
                    // Mostly new samples; some late by up to 2h (inside or beyond a 1h window), some
                    // at a timestamp just sent with a possibly different value.
                    let t = match rng.below(10) {
                        0..=5 => cursor + rng.below(10) as i64 * MIN,
                        6 | 7 => cursor - rng.below(120) as i64 * MIN,
                        _ => cursor + rng.below(3) as i64 * MIN,
                    };
                    (s, t, rng.below(3) as f64 + 0.5)
                })
                .collect()
        };
        total += samples.len();
        let want = model.request(&samples);
        let ts = samples
            .iter()
            .map(|&(s, t, v)| series("queue_shaped", &[("instance", &format!("i{s:02}"))], &[(t, v)]))
            .collect();
        let (code, body) = srv.write(&request(ts));
        let mut want_reasons: HashMap<String, u64> = HashMap::new();
        for e in want.iter().filter_map(|r| r.as_ref().err()) {
            *want_reasons.entry(reason_name(e).to_string()).or_default() += 1;
        }
        if want_reasons.is_empty() {
            assert_eq!(code, 204, "request {r}: {body}");
        } else {
            assert_eq!(code, 400, "request {r}: {body}");
            assert_eq!(reasons(&body), want_reasons, "request {r}: {body}");
        }
        sent_before.push(samples);
        if r == 12 {
            // A crash right after an acknowledgement loses nothing and duplicates nothing.
            srv.kill9();
            srv = Server::start(dir.path(), &args);
        }
    }
    assert!(total >= 2000);
    let end = base + 20 * 10 * MIN + 60 * MIN;
    let got = srv.raw_samples("queue_shaped", "12h", end);
    let by_instance: HashMap<String, Vec<(i64, String)>> = got.into_iter().collect();
    for s in 0..SERIES {
        let want: Vec<(i64, String)> =
            model.stored(s).into_iter().map(|(t, b)| (t, value_string(f64::from_bits(b)))).collect();
        let key = by_instance.keys().find(|k| k.contains(&format!("\"i{s:02}\""))).cloned();
        let got = key.and_then(|k| by_instance.get(&k).cloned()).unwrap_or_default();
        assert_eq!(got, want, "series i{s:02}");
    }
}

#[test]
fn queue_shaped_requests_match_the_model_with_the_window_off() {
    run("--storage.tsdb.out-of-order-time-window=0s", 0, 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn queue_shaped_requests_match_the_model_with_a_1h_window() {
    run("--storage.tsdb.out-of-order-time-window=1h", 60 * MIN, 0x2545_f491_4f6c_dd1d);
}
