//! Every fuzz target for a fixed number of iterations with a fixed seed: fails on any panic, so the
//! workspace's tests run the decoders on a few thousand mutated inputs each.

use strata_fuzz::runner::{self, Limit, Options};
use strata_fuzz::targets;

const ITERATIONS: u64 = 2_000;
/// About a fifth of remote-write inputs reach the head: enough inputs to replay its WAL once.
const REMOTE_WRITE_ITERATIONS: u64 = 8_000;
const SEED: u64 = 0x5742_4154_4146_555A;

#[allow(clippy::expect_used, reason = "a test helper: a failed setup fails the test")]
fn smoke(name: &'static str, iterations: u64) {
    let summary = strata_fuzz::on_fuzz_thread(move || {
        let mut t = targets::by_name(name).expect("target set up");
        let opts = Options { seed: SEED, limit: Limit::Iterations(iterations), out_dir: None };
        runner::run(t.as_mut(), &opts, |_| {}, |_, _| {})
    })
    .expect("fuzz thread started");
    assert_eq!(summary.iterations, iterations);
    let report: Vec<String> = summary.findings.iter().map(ToString::to_string).collect();
    assert!(report.is_empty(), "{name}: {} panics:\n{}", summary.panics, report.join("\n"));
}

#[test]
fn remote_write() {
    smoke("remote-write", REMOTE_WRITE_ITERATIONS);
}

#[test]
fn remote_write_v2() {
    smoke("remote-write-v2", REMOTE_WRITE_ITERATIONS);
}

#[test]
fn remote_read() {
    smoke("remote-read", ITERATIONS);
}

#[test]
fn wal_record() {
    smoke("wal-record", ITERATIONS);
}

#[test]
fn xor_chunk() {
    smoke("xor-chunk", ITERATIONS);
}

#[test]
fn histogram_chunk() {
    smoke("histogram-chunk", ITERATIONS);
}

#[test]
fn block() {
    smoke("block", ITERATIONS);
}

#[test]
fn promql() {
    smoke("promql", ITERATIONS);
}
