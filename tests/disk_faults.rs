//! A full disk: the data directory is a small tmpfs filled up with a filler file. Writes fail with
//! 5xx, `/-/ready` answers 503 and `/metrics` shows the WAL as not writable; once the filler is
//! deleted writes succeed again without a restart, every acknowledged sample is readable, no
//! sample of a failed write is, and the same holds after `kill -9` and a restart. A `kill -9` while
//! the disk is still full (the WAL's last segment ends in a half-written batch) loses no
//! acknowledged sample either.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{request, series, Server};

const T0: i64 = 1_700_000_000_000;
const SERIES: usize = 10;
const SAMPLES_PER_BATCH: i64 = 5;
/// Upper bound on the writes sent while waiting for the full disk to refuse one.
const MAX_WRITES_UNTIL_FULL: i64 = 200;

/// A tmpfs mounted on a temporary directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `32m`). `None` when mounting is not possible here (not root,
    /// no mount permission); under `CI=true` that is a failure instead.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must be able to mount a tmpfs: {why}");
                eprintln!("skipping: cannot mount a tmpfs ({why})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `path` with it: 1 MiB writes, then 4 KiB writes, until refused.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    for size in [1 << 20, 4096] {
        let buf = vec![0xA5u8; size];
        while f.write_all(&buf).is_ok() {
            written += size as u64;
        }
    }
    written
}

/// The timestamps of batch `b` (the same for every series).
fn batch_times(b: i64) -> Vec<i64> {
    (0..SAMPLES_PER_BATCH).map(|i| T0 + (b * SAMPLES_PER_BATCH + i) * 1000).collect()
}

fn write_batch(srv: &Server, b: i64) -> u16 {
    let ts = (0..SERIES)
        .map(|s| {
            let samples: Vec<(i64, f64)> = batch_times(b).into_iter().map(|t| (t, (t - T0) as f64)).collect();
            series("disk_fault_test", &[("s", &s.to_string())], &samples)
        })
        .collect();
    srv.write(&request(ts)).0
}

/// Every stored `(series, t)`, checking each value is the one written.
fn stored(srv: &Server) -> BTreeSet<(String, i64)> {
    let mut out = BTreeSet::new();
    for (metric, values) in srv.raw_samples("disk_fault_test", "1d", T0 + 3_600_000) {
        for (t, v) in values {
            assert_eq!(v, ((t - T0) as f64).to_string(), "{metric} at {t}");
            out.insert((metric.clone(), t));
        }
    }
    out
}

fn expected(batches: &BTreeSet<i64>) -> BTreeSet<(String, i64)> {
    let mut out = BTreeSet::new();
    for s in 0..SERIES {
        let metric = format!(r#"{{"__name__":"disk_fault_test","s":"{s}"}}"#);
        for &b in batches {
            out.extend(batch_times(b).into_iter().map(|t| (metric.clone(), t)));
        }
    }
    out
}

fn ready(srv: &Server) -> (u16, String) {
    match ureq::get(&srv.url("/-/ready")).call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("GET /-/ready: {e}"),
    }
}

#[test]
fn a_full_disk_fails_writes_and_they_resume_once_space_returns() {
    let Some(fs) = Tmpfs::mount("32m") else { return };
    let data: PathBuf = fs.path().join("data");
    let filler = fs.path().join("filler");
    let mut srv = Server::start(&data, &[]);

    let mut acked = BTreeSet::new();
    let mut failed = BTreeSet::new();
    let mut b = 0;
    for _ in 0..20 {
        assert_eq!(write_batch(&srv, b), 204);
        acked.insert(b);
        b += 1;
    }
    assert_eq!(srv.metric("strata_wal_writable"), Some(1.0));

    let filled = fill(&filler);
    assert!(filled > 0);
    // The WAL's last page may still take a small write or two; then the disk refuses.
    let first_failure = loop {
        assert!(b < MAX_WRITES_UNTIL_FULL, "writes still succeed on a full disk");
        let code = write_batch(&srv, b);
        if code == 204 {
            acked.insert(b);
            b += 1;
            continue;
        }
        failed.insert(b);
        b += 1;
        break code;
    };
    assert!((500..600).contains(&first_failure), "status {first_failure}");
    // Still failing while the disk is full: each write tries to recover and cannot.
    let code = write_batch(&srv, b);
    assert!((500..600).contains(&code), "status {code}");
    failed.insert(b);
    b += 1;
    let (code, body) = ready(&srv);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("WAL cannot accept writes"), "{body}");
    assert_eq!(srv.metric("strata_wal_writable"), Some(0.0));
    // The background recovery attempts (every 2 s) find the disk still full.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(ready(&srv).0, 503);
    assert_eq!(srv.metric("strata_wal_writable"), Some(0.0));
    assert!(srv.metric("strata_wal_failures_total").unwrap_or(0.0) >= 2.0);
    // Reads go on.
    assert_eq!(stored(&srv), expected(&acked));

    std::fs::remove_file(&filler).unwrap();
    for _ in 0..20 {
        assert_eq!(write_batch(&srv, b), 204, "log:\n{}", srv.log_text());
        acked.insert(b);
        b += 1;
    }
    let (code, body) = ready(&srv);
    assert_eq!(code, 200, "{body}");
    assert_eq!(srv.metric("strata_wal_writable"), Some(1.0));
    assert_eq!(stored(&srv), expected(&acked), "acknowledged and only acknowledged samples");
    let log = srv.log_text();
    assert!(log.contains("wal recovered: accepting writes again"), "log:\n{log}");
    assert!(log.contains("No space left on device"), "the failure is logged with its cause:\n{log}");

    srv.kill9();
    let srv = Server::start(&data, &[]);
    assert_eq!(stored(&srv), expected(&acked), "after kill -9: acknowledged and only acknowledged samples");
    assert!(!failed.is_empty());
    drop(srv);
}

/// Sends batches from `b` on until one fails; returns the first batch not acknowledged.
fn write_until_refused(srv: &Server, mut b: i64, acked: &mut BTreeSet<i64>) -> i64 {
    loop {
        assert!(b < MAX_WRITES_UNTIL_FULL, "writes still succeed on a full disk");
        let code = write_batch(srv, b);
        if code != 204 {
            assert!((500..600).contains(&code), "status {code}");
            return b;
        }
        acked.insert(b);
        b += 1;
    }
}

#[test]
fn a_kill_while_the_disk_is_full_loses_no_acknowledged_sample() {
    let Some(fs) = Tmpfs::mount("32m") else { return };
    let data: PathBuf = fs.path().join("data");
    let filler = fs.path().join("filler");
    let mut srv = Server::start(&data, &[]);
    let mut acked = BTreeSet::new();
    for b in 0..10 {
        assert_eq!(write_batch(&srv, b), 204);
        acked.insert(b);
    }
    fill(&filler);
    let refused = write_until_refused(&srv, 10, &mut acked);
    assert_eq!(srv.metric("strata_wal_writable"), Some(0.0));
    srv.kill9();

    std::fs::remove_file(&filler).unwrap();
    let srv = Server::start(&data, &[]);
    assert_eq!(stored(&srv), expected(&acked), "acknowledged and only acknowledged samples");
    assert_eq!(write_batch(&srv, refused + 1), 204);
    acked.insert(refused + 1);
    assert_eq!(stored(&srv), expected(&acked));
}
