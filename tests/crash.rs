//! `kill -9` in the middle of a concurrent remote-write load loses no acknowledged sample; SIGTERM
//! shuts down cleanly. Both restart on the same data directory and compare with what was sent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::util::{request, series, Server};

const T0: i64 = 1_700_000_000_000;
const STEP: i64 = 15_000;
const WRITERS: usize = 2;
const SERIES_PER_WRITER: usize = 20;
const MAX_BATCHES: usize = 200;
const SAMPLES_PER_BATCH: i64 = 10;

fn value(writer: usize, s: usize, k: i64) -> f64 {
    (writer * 1000 + s) as f64 + k as f64 / 4.0
}

/// The samples writer `w` sends in batch `b`: 10 new steps, with every 5th held back to the next batch
/// (so 20% arrive out of order).
fn batch_steps(b: i64) -> Vec<i64> {
    let mut ks: Vec<i64> = (b * SAMPLES_PER_BATCH..(b + 1) * SAMPLES_PER_BATCH).filter(|k| k % 5 != 0).collect();
    if b > 0 {
        ks.extend(((b - 1) * SAMPLES_PER_BATCH..b * SAMPLES_PER_BATCH).filter(|k| k % 5 == 0));
    }
    ks
}

type Acked = Arc<Mutex<BTreeMap<String, BTreeSet<i64>>>>;

/// Runs the writers until `stop_after` batches of writer 0 were acknowledged or a request fails.
fn load(srv: &Server, stop_after: usize, acked: &Acked, sent: &Acked) -> Arc<AtomicUsize> {
    let progress = Arc::new(AtomicUsize::new(0));
    let url_addr = srv.addr.clone();
    for w in 0..WRITERS {
        let acked = Arc::clone(acked);
        let sent = Arc::clone(sent);
        let progress = Arc::clone(&progress);
        let addr = url_addr.clone();
        std::thread::spawn(move || {
            for b in 0..MAX_BATCHES.min(stop_after * 4) as i64 {
                let ks = batch_steps(b);
                let ts: Vec<_> = (0..SERIES_PER_WRITER)
                    .map(|s| {
                        let samples: Vec<(i64, f64)> = ks.iter().map(|&k| (T0 + k * STEP, value(w, s, k))).collect();
                        series("crash_test", &[("writer", &w.to_string()), ("s", &s.to_string())], &samples)
                    })
                    .collect();
                {
                    let mut sent = sent.lock().unwrap();
                    for s in 0..SERIES_PER_WRITER {
                        sent.entry(key(w, s)).or_default().extend(ks.iter().map(|&k| T0 + k * STEP));
                    }
                }
                let body = {
                    use prost::Message;
                    snap::raw::Encoder::new().compress_vec(&request(ts).encode_to_vec()).unwrap()
                };
                let r = ureq::post(&format!("http://{addr}/api/v1/write"))
                    .set("Content-Encoding", "snappy")
                    .set("Content-Type", "application/x-protobuf")
                    .timeout(std::time::Duration::from_secs(30))
                    .send_bytes(&body);
                match r {
                    Ok(resp) if resp.status() == 204 => {
                        let mut acked = acked.lock().unwrap();
                        for s in 0..SERIES_PER_WRITER {
                            acked.entry(key(w, s)).or_default().extend(ks.iter().map(|&k| T0 + k * STEP));
                        }
                        if w == 0 {
                            progress.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(resp) => panic!("unexpected status {}", resp.status()),
                    Err(ureq::Error::Status(code, resp)) => {
                        panic!("unexpected status {code}: {}", resp.into_string().unwrap_or_default())
                    }
                    // The server was killed: stop.
                    Err(_) => return,
                }
            }
        });
    }
    progress
}

fn key(w: usize, s: usize) -> String {
    format!("{w}/{s}")
}

fn check_after_restart(srv: &Server, acked: &Acked, sent: &Acked) {
    let end = T0 + (MAX_BATCHES as i64 + 1) * SAMPLES_PER_BATCH * STEP;
    let got = srv.raw_samples("crash_test", "1d", end);
    let acked = acked.lock().unwrap();
    let sent = sent.lock().unwrap();
    let mut seen = 0;
    for (metric, samples) in &got {
        let m: serde_json::Value = serde_json::from_str(metric).unwrap();
        let w: usize = m["writer"].as_str().unwrap().parse().unwrap();
        let s: usize = m["s"].as_str().unwrap().parse().unwrap();
        let k = key(w, s);
        let ts: Vec<i64> = samples.iter().map(|p| p.0).collect();
        let unique: BTreeSet<i64> = ts.iter().copied().collect();
        assert_eq!(unique.len(), ts.len(), "series {k}: duplicated timestamps");
        for (t, v) in samples {
            let step = (t - T0) / STEP;
            assert_eq!(v, &format!("{}", value(w, s, step)), "series {k} at {t}");
        }
        let want = acked.get(&k).cloned().unwrap_or_default();
        let missing: Vec<_> = want.difference(&unique).collect();
        assert!(missing.is_empty(), "series {k}: acknowledged samples lost: {missing:?}");
        let allowed = sent.get(&k).cloned().unwrap_or_default();
        assert!(unique.is_subset(&allowed), "series {k}: samples that were never sent");
        seen += 1;
    }
    let with_acks = acked.values().filter(|v| !v.is_empty()).count();
    assert!(seen >= with_acks, "only {seen} series came back, {with_acks} had acknowledged samples");
}

fn wait_progress(progress: &AtomicUsize, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while progress.load(Ordering::SeqCst) < n {
        assert!(std::time::Instant::now() < deadline, "load made no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn kill_9_mid_load_loses_no_acknowledged_sample() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    let sent: Acked = Arc::default();
    for round in 0..2 {
        let mut srv = Server::start(dir.path(), &["--storage.tsdb.out-of-order-time-window=1h"]);
        if round > 0 {
            check_after_restart(&srv, &acked, &sent);
        }
        let progress = load(&srv, 30, &acked, &sent);
        wait_progress(&progress, 15 + round * 5);
        srv.kill9();
        // Let the writers observe the failure before reading their bookkeeping.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let srv = Server::start(dir.path(), &["--storage.tsdb.out-of-order-time-window=1h"]);
    check_after_restart(&srv, &acked, &sent);
    assert!(srv.log_text().contains("wal replay done"), "{}", srv.log_text());
}

#[test]
fn sigterm_syncs_and_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    let sent: Acked = Arc::default();
    let mut srv =
        Server::start(dir.path(), &["--storage.tsdb.out-of-order-time-window=1h", "--storage.tsdb.wal-fsync=10s"]);
    let progress = load(&srv, 5, &acked, &sent);
    wait_progress(&progress, 5);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = srv.sigterm();
    assert!(status.success(), "exit status {status:?}; log:\n{}", srv.log_text());
    assert!(srv.log_text().contains("shutdown complete"), "{}", srv.log_text());
    drop(srv);
    let srv = Server::start(dir.path(), &["--storage.tsdb.out-of-order-time-window=1h"]);
    check_after_restart(&srv, &acked, &sent);
}
