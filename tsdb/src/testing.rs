//! Helpers for tests and benchmarks of this and other crates (feature `testing`).

use std::sync::Arc;

use crate::head::{Head, Options};

/// A head in a fresh temporary directory, removed when the returned guard drops.
pub fn temp_head(opts: Options) -> (tempfile::TempDir, Arc<Head>) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create temp dir: {e}"),
    };
    let head = match Head::open(dir.path(), opts) {
        Ok(h) => h,
        Err(e) => panic!("cannot open head: {e}"),
    };
    (dir, head)
}

/// Options for an in-memory head (no WAL) with the given out-of-order window.
pub fn memory_options(ooo_window_ms: i64) -> Options {
    Options { ooo_time_window_ms: ooo_window_ms, wal: None, ..Options::default() }
}

/// A database (head and blocks, no background compaction) in a fresh temporary directory.
pub fn temp_db(head: Options) -> (tempfile::TempDir, Arc<crate::Db>) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create temp dir: {e}"),
    };
    let opts = crate::DbOptions { head, ..crate::DbOptions::default() };
    let db = match crate::Db::open(dir.path(), opts) {
        Ok(d) => d,
        Err(e) => panic!("cannot open db: {e}"),
    };
    (dir, db)
}
