//! Damaged files on disk are contained: a WAL checkpoint with a flipped byte is set aside and the
//! server starts with the blocks and the WAL segments after it; a block with a flipped byte in its
//! index or in a chunk is set aside at open (counted on `/metrics`) and the other blocks are served.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::{request, series, Server};

/// 2h-aligned start.
const T0: i64 = 1_699_999_200_000;
const H: i64 = 3_600_000;
const STEP: i64 = 60_000;
const SERIES: usize = 3;
/// Sent before the first shutdown: three 2h blocks are compacted, [6h, 9h) stays in the head and
/// goes into the checkpoint written at shutdown.
const FIRST_END: i64 = T0 + 9 * H;
/// Sent after the restart: only in the WAL segments after that checkpoint.
const SECOND_END: i64 = T0 + 9 * H + H / 2;

type Samples = BTreeMap<(String, i64), String>;

fn send(srv: &Server, from: i64, to: i64) {
    let mut t = from;
    while t < to {
        let end = (t + H / 2).min(to);
        let ts = (0..SERIES)
            .map(|s| {
                let samples: Vec<(i64, f64)> = (t..end).step_by(STEP as usize).map(|t| (t, value(s, t))).collect();
                series("cor", &[("s", &s.to_string())], &samples)
            })
            .collect();
        let (code, body) = srv.write(&request(ts));
        assert_eq!(code, 204, "{body}");
        t = end;
    }
}

fn value(s: usize, t: i64) -> f64 {
    (s * 100_000) as f64 + ((t - T0) / STEP) as f64
}

fn sent(from: i64, to: i64) -> Samples {
    let mut out = Samples::new();
    for s in 0..SERIES {
        for t in (from..to).step_by(STEP as usize) {
            out.insert((s.to_string(), t), value(s, t).to_string());
        }
    }
    out
}

/// What the server returns in `[from, to)`.
fn stored(srv: &Server, from: i64, to: i64) -> Samples {
    let mut out = Samples::new();
    for (metric, values) in srv.raw_samples("cor", "1d", SECOND_END) {
        let m: serde_json::Value = serde_json::from_str(&metric).unwrap();
        let s = m["s"].as_str().unwrap().to_string();
        for (t, v) in values.into_iter().filter(|(t, _)| (from..to).contains(t)) {
            assert!(out.insert((s.clone(), t), v).is_none(), "duplicate sample {s} {t}");
        }
    }
    out
}

/// The block directories, oldest data first.
fn block_dirs(data: &Path) -> Vec<PathBuf> {
    let mut out = crate::util::block_dirs(data);
    out.sort_by_key(|p| {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("meta.json")).unwrap()).unwrap();
        m["minTime"].as_i64().unwrap()
    });
    out
}

/// Three blocks ([0, 2h), [2h, 4h), [4h, 6h) from T0), a checkpoint holding [6h, 9h), and WAL
/// segments after it holding [9h, 9.5h).
fn prepare(data: &Path) {
    // 2h blocks only: no level compaction merges them.
    let args = ["--storage.tsdb.compaction-interval=200ms", "--storage.tsdb.max-block-duration=2h"];
    let mut srv = Server::start(data, &args);
    send(&srv, T0, FIRST_END);
    let deadline = Instant::now() + Duration::from_secs(120);
    while block_dirs(data).len() < 3
        || srv.metric("strata_head_min_time_seconds").unwrap_or(0.0) * 1000.0 < (T0 + 6 * H) as f64
    {
        assert!(Instant::now() < deadline, "no blocks compacted\n{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(srv.sigterm().success());
    // Compaction every minute (the default): none comes before the kill.
    let mut srv = Server::start(data, &[]);
    send(&srv, FIRST_END, SECOND_END);
    srv.kill9();
    assert_eq!(block_dirs(data).len(), 3);
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x20;
    std::fs::write(path, &b).unwrap();
}

#[test]
fn a_damaged_checkpoint_is_set_aside_and_blocks_and_segments_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    prepare(&data);
    let checkpoints: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("checkpoint."))
        .collect();
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    let checkpoint = &checkpoints[0];
    flip(&checkpoint.join("00000000"), 40);

    let srv = Server::start(&data, &[]);
    let log = srv.log_text();
    assert!(log.contains(&checkpoint.display().to_string()), "the log names the checkpoint:\n{log}");
    assert!(log.contains("set aside"), "{log}");
    let aside = PathBuf::from(format!("{}.corrupted", checkpoint.display()));
    assert!(aside.is_dir() && !checkpoint.exists());
    assert_eq!(stored(&srv, T0, T0 + 6 * H), sent(T0, T0 + 6 * H), "the blocks");
    assert_eq!(stored(&srv, FIRST_END, SECOND_END), sent(FIRST_END, SECOND_END), "the segments after the checkpoint");
    // Writes go on.
    send(&srv, SECOND_END, SECOND_END + 10 * STEP);
}

#[test]
fn blocks_with_a_damaged_index_or_chunk_are_set_aside_and_the_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    prepare(&data);
    let blocks = block_dirs(&data);
    // A byte inside the first series entry of the first block's index (16-byte aligned, at the
    // offset the TOC's second entry gives).
    let index = blocks[0].join("index");
    let bytes = std::fs::read(&index).unwrap();
    let toc = bytes.len() - 52;
    let series = u64::from_be_bytes(bytes[toc + 8..toc + 16].try_into().unwrap()) as usize;
    flip(&index, series.next_multiple_of(16) + 3);
    // A data byte of the last chunk of the second block (the file ends with the chunk's CRC).
    let chunks = blocks[1].join("chunks").join("000001");
    let len = std::fs::metadata(&chunks).unwrap().len() as usize;
    flip(&chunks, len - 8);

    let srv = Server::start(&data, &[]);
    assert_eq!(srv.metric("strata_blocks_quarantined"), Some(2.0));
    assert_eq!(srv.metric("strata_blocks_loaded"), Some(1.0));
    let log = srv.log_text();
    for b in &blocks[..2] {
        assert!(PathBuf::from(format!("{}.corrupted", b.display())).is_dir());
    }
    assert!(log.contains(&index.display().to_string()), "the log names the damaged index:\n{log}");
    assert!(log.contains(&chunks.display().to_string()), "the log names the damaged chunk file:\n{log}");
    assert!(stored(&srv, T0, T0 + 4 * H).is_empty());
    assert_eq!(stored(&srv, T0 + 4 * H, SECOND_END), sent(T0 + 4 * H, SECOND_END), "the third block and the head");
}
