//! Queries answered while compaction runs are complete: while the head compacts its oldest range into
//! blocks (and drops it from memory) and late samples for ranges already in blocks are written as
//! blocks and merged with the existing ones, every `/api/v1/query` answer holds every sample
//! acknowledged before the query was sent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use crate::util::{block_dirs, request, series, Server};

/// 2h-aligned start.
const T0: i64 = 1_699_999_200_000;
const H: i64 = 3_600_000;
const STEP: i64 = 60_000;
const SERIES: usize = 40;
/// Hours written; the reads cover all of them.
const HOURS: i64 = 14;
/// Late samples are sent this many hours after their in-order neighbours: their range is in a block.
const LATE_HOURS: i64 = 5;

fn value(s: usize, t: i64) -> f64 {
    (s * 1_000_000) as f64 + ((t - T0) / STEP) as f64
}

/// Every 10th step is held back and sent `LATE_HOURS` later.
fn held_back(t: i64) -> bool {
    ((t - T0) / STEP) % 10 == 7
}

/// The steps acknowledged once hour `h` (0-based) is acknowledged: hours `0..=h` in order, and the
/// held-back steps of hours `0..=h - LATE_HOURS`.
fn acknowledged_steps(h: i64) -> Vec<i64> {
    (T0..T0 + (h + 1) * H)
        .step_by(STEP as usize)
        .filter(|&t| !held_back(t) || t < T0 + (h + 1 - LATE_HOURS) * H)
        .collect()
}

fn send(srv: &Server, steps: &[i64]) {
    for chunk in steps.chunks(60) {
        let ts = (0..SERIES)
            .map(|s| {
                let samples: Vec<(i64, f64)> = chunk.iter().map(|&t| (t, value(s, t))).collect();
                series("rc", &[("s", &s.to_string())], &samples)
            })
            .collect();
        let (code, body) = srv.write(&request(ts));
        assert_eq!(code, 204, "remote write: {body}");
    }
}

#[test]
fn queries_during_head_compaction_and_block_merges_are_complete() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(
        &dir.path().join("data"),
        &["--storage.tsdb.out-of-order-time-window=12h", "--storage.tsdb.compaction-interval=50ms"],
    );
    // The newest hour acknowledged whole (in order and its due late samples); -1: none.
    let acked = AtomicI64::new(-1);
    let done = AtomicBool::new(false);
    let end = T0 + HOURS * H;
    let mut reads = 0u32;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for h in 0..HOURS {
                let in_order: Vec<i64> =
                    (T0 + h * H..T0 + (h + 1) * H).step_by(STEP as usize).filter(|&t| !held_back(t)).collect();
                send(&srv, &in_order);
                if h >= LATE_HOURS {
                    let from = T0 + (h - LATE_HOURS) * H;
                    let late: Vec<i64> = (from..from + H).step_by(STEP as usize).filter(|&t| held_back(t)).collect();
                    send(&srv, &late);
                }
                acked.store(h, Ordering::Release);
                // Compaction passes run between the hours (and during them).
                std::thread::sleep(Duration::from_millis(150));
            }
            done.store(true, Ordering::Release);
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the writes did not finish\n{}", srv.log_text());
            let h = acked.load(Ordering::Acquire);
            let want = if h < 0 { Vec::new() } else { acknowledged_steps(h) };
            let mut got: BTreeMap<usize, Vec<(i64, String)>> = BTreeMap::new();
            for (metric, values) in srv.raw_samples("rc", "1d", end) {
                let m: serde_json::Value = serde_json::from_str(&metric).unwrap();
                got.insert(m["s"].as_str().unwrap().parse().unwrap(), values);
            }
            for s in 0..SERIES {
                let values = got.get(&s).map(Vec::as_slice).unwrap_or_default();
                let have: BTreeMap<i64, &str> = values.iter().map(|(t, v)| (*t, v.as_str())).collect();
                for &(t, ref v) in values {
                    assert_eq!(v.parse::<f64>().unwrap(), value(s, t), "read {reads}: series {s} at {t}");
                }
                let missing: Vec<i64> = want.iter().copied().filter(|t| !have.contains_key(t)).collect();
                assert!(
                    missing.is_empty(),
                    "read {reads}: series {s} lacks {} of {} acknowledged samples (minutes {}..={} after T0); \
                     blocks: {:?}\n{}",
                    missing.len(),
                    want.len(),
                    (missing[0] - T0) / STEP,
                    (missing[missing.len() - 1] - T0) / STEP,
                    block_dirs(&srv.dir).len(),
                    srv.log_text()
                );
            }
            reads += 1;
        }
    });
    assert!(reads > 0, "no read ran during the writes");
    let log = srv.log_text();
    assert!(log.contains("head compacted into a block"), "no head compaction ran\n{log}");
    assert!(log.contains("blocks merged"), "no late-data block was merged\n{log}");
}
