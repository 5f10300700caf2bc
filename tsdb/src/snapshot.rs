//! Snapshots of the data directory (Prometheus's `POST /api/v1/admin/tsdb/snapshot`): a directory
//! `snapshots/<YYYYMMDDTHHMMSSZ>-<16 hex digits>/` holding hard links of every block's files and,
//! optionally, the head written as one more block. The result is a data directory of its own: a
//! Prometheus or a Strata started on a copy of it serves the same samples.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::block::{self, Block, Compaction};
use crate::error::{io_error, Result};
use crate::head::Head;

/// Subdirectory of the data directory holding the snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// Creates a snapshot in `<data_dir>/snapshots/` and returns its directory name. The caller keeps
/// the blocks from being deleted and the head from being truncated until this returns.
pub(crate) fn create(data_dir: &Path, blocks: &[std::sync::Arc<Block>], head: Option<&Head>) -> Result<String> {
    let name = snapshot_name(SystemTime::now(), ulid::Ulid::new().random() as u64);
    let parent = data_dir.join(SNAPSHOTS_DIR);
    let dir = parent.join(&name);
    std::fs::create_dir_all(&dir).map_err(io_error("create snapshot directory", &dir))?;
    let res = fill(data_dir, &dir, blocks, head);
    if res.is_err() {
        // A partial snapshot is not left behind.
        let _ = std::fs::remove_dir_all(&dir);
    }
    res?;
    sync_dir(&dir)?;
    sync_dir(&parent)?;
    Ok(name)
}

fn fill(data_dir: &Path, dir: &Path, blocks: &[std::sync::Arc<Block>], head: Option<&Head>) -> Result<()> {
    for b in blocks {
        let ulid = b.meta().ulid.to_string();
        link_tree(&data_dir.join(&ulid), &dir.join(&ulid))?;
    }
    let Some(head) = head else { return Ok(()) };
    let Some(snap) = head.snapshot_all()? else { return Ok(()) };
    let compaction = Compaction { level: 1, ..Compaction::default() };
    block::write_block_fallible(dir, snap.series_chunks(), snap.mint, snap.maxt, compaction, None, Default::default())?;
    Ok(())
}

/// Recreates the directory tree `from` at `to` with every file hard-linked.
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir(to).map_err(io_error("create directory", to))?;
    for entry in std::fs::read_dir(from).map_err(io_error("read directory", from))? {
        let entry = entry.map_err(io_error("read directory", from))?;
        let src: PathBuf = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io_error("stat", &src))?;
        if kind.is_dir() {
            link_tree(&src, &dst)?;
        } else {
            std::fs::hard_link(&src, &dst).map_err(io_error("hard-link", &src))?;
        }
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io_error("sync directory", dir))
}

/// `<YYYYMMDDTHHMMSSZ>-<16 hex digits>`, UTC, like Prometheus's snapshot names.
fn snapshot_name(now: SystemTime, random: u64) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z-{random:016x}", s / 3600, s / 60 % 60, s % 60)
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_like_prometheus() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_796_609_564);
        assert_eq!(snapshot_name(t, 0x2a9ce9f86934f0f), "20261207T021244Z-02a9ce9f86934f0f");
        assert_eq!(snapshot_name(UNIX_EPOCH, u64::MAX), "19700101T000000Z-ffffffffffffffff");
    }

    fn samples(db: &crate::Db) -> Vec<(i64, f64)> {
        let q = db.querier(i64::MIN, i64::MAX);
        let s = q.select(&[crate::Matcher::equal("__name__", "m")]).unwrap();
        s.first().map(|s| s.samples(i64::MIN, i64::MAX).collect()).unwrap_or_default()
    }

    #[test]
    fn head_block_holds_in_order_and_late_samples_and_leaves_head_and_wal_alone() {
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::DbOptions {
            head: crate::head::Options { ooo_time_window_ms: 3_600_000, ..Default::default() },
            ..Default::default()
        };
        let db = crate::Db::open(dir.path(), opts).unwrap();
        let mut app = db.head().appender();
        for i in 10..100 {
            app.append_pairs(&[("__name__", "m")], i * 1000, i as f64).unwrap();
        }
        // Late: before the in-order samples and between them.
        for t in [1000, 55_500] {
            app.append_pairs(&[("__name__", "m")], t, -1.0).unwrap();
        }
        app.commit().unwrap();
        let before = samples(&db);
        assert_eq!(before.len(), 92);
        let wal_before = db.head().wal().unwrap().segment_range().unwrap();

        let name = db.snapshot(true).unwrap();
        let snap = dir.path().join(SNAPSHOTS_DIR).join(&name);
        assert_eq!(db.head().wal().unwrap().segment_range().unwrap(), wal_before, "the WAL was cut");
        assert!(db.blocks().is_empty(), "the snapshot added a block to the database");
        assert_eq!(samples(&db), before, "the head changed");
        // More in-order samples are still taken.
        let mut app = db.head().appender();
        app.append_pairs(&[("__name__", "m")], 100_000, 100.0).unwrap();
        app.commit().unwrap();

        let copy = crate::Db::open(&snap, crate::DbOptions::default()).unwrap();
        assert_eq!(copy.blocks().len(), 1);
        assert_eq!(samples(&copy), before);
        assert_eq!(copy.head().num_series(), 0);
    }
}
