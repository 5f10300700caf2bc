//! Compaction held back for a block shipper (Prometheus's `--storage.tsdb.delay-compact-file.path`).
//!
//! A shipper such as Thanos's sidecar uploads level-1 blocks from the data directory and records the
//! ones it has uploaded in a JSON file, `{"version": 1, "uploaded": ["<ulid>", …]}`
//! (`thanos.shipper.json`). It skips blocks of a higher level, so a level-1 block merged away before
//! it was uploaded never reaches the bucket. This module reads that file and tells compaction which
//! blocks it may take as inputs: in ULID (creation) order, every block before the first level-1 block
//! not listed as uploaded. That block and all blocks created after it wait (Prometheus's
//! `LeveledCompactor.Plan` stops at the same block, so that compaction never leaves a gap of
//! uncompacted blocks behind it). Blocks of level 2 and above never hold compaction back.
//!
//! A file that cannot be read or parsed counts as listing nothing, so level-1 blocks wait rather
//! than being merged before the shipper has seen them (Prometheus compacts in that case).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::block::{Block, Ulid};

/// The ULIDs a shipper's meta file lists as uploaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploaded(HashSet<Ulid>);

/// Why the shipper's meta file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read (missing before the shipper's first run, permissions).
    #[error("read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a JSON object with an `uploaded` list of strings.
    #[error("parse {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: serde_json::Error,
    },
}

#[derive(serde::Deserialize)]
struct MetaFile {
    /// `null` when the shipper has uploaded nothing (Go's nil slice).
    #[serde(default)]
    uploaded: Option<Vec<String>>,
}

impl Uploaded {
    /// Reads the shipper's meta file. Entries that are not ULIDs are ignored (they match no block).
    pub fn read(path: &Path) -> Result<Uploaded, ReadError> {
        let bytes = std::fs::read(path).map_err(|source| ReadError::Io { path: path.to_owned(), source })?;
        let meta: MetaFile =
            serde_json::from_slice(&bytes).map_err(|source| ReadError::Parse { path: path.to_owned(), source })?;
        Ok(Uploaded(meta.uploaded.unwrap_or_default().iter().filter_map(|s| Ulid::from_string(s).ok()).collect()))
    }

    /// Whether the file lists `ulid`.
    pub fn contains(&self, ulid: &Ulid) -> bool {
        self.0.contains(ulid)
    }

    /// The blocks compaction may use, in the order given: those created before the first level-1
    /// block not listed as uploaded.
    pub fn compactable(&self, blocks: &[Arc<Block>]) -> Vec<Arc<Block>> {
        let first_pending = blocks
            .iter()
            .map(|b| b.meta())
            .filter(|m| m.compaction.level <= 1 && !self.contains(&m.ulid))
            .map(|m| m.ulid)
            .min();
        match first_pending {
            None => blocks.to_vec(),
            Some(first) => blocks.iter().filter(|b| b.meta().ulid < first).cloned().collect(),
        }
    }
}

impl FromIterator<Ulid> for Uploaded {
    fn from_iter<I: IntoIterator<Item = Ulid>>(iter: I) -> Self {
        Uploaded(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{self, Compaction};
    use crate::chunk::{ChunkData, ChunkMeta};
    use crate::labels::Labels;

    fn block(dir: &Path, mint: i64, level: u32) -> Arc<Block> {
        let labels = Labels::from_pairs(&[("__name__", "m")]).unwrap();
        let chunk = ChunkMeta::new(mint, mint, ChunkData::Raw(vec![(mint, 1.0)].into()));
        let compaction = Compaction { level, ..Compaction::default() };
        let meta =
            block::write_block(dir, [(labels, vec![chunk])], mint, mint + 10, compaction, None).unwrap().unwrap();
        Arc::new(Block::open(&dir.join(meta.ulid.to_string())).unwrap())
    }

    fn ulids(blocks: &[Arc<Block>]) -> Vec<Ulid> {
        blocks.iter().map(|b| b.meta().ulid).collect()
    }

    #[test]
    fn compaction_stops_at_the_first_level_one_block_not_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        // Created in this order: a, b (level 2), c, d; listed by min time: d, a, c, b.
        let a = block(dir.path(), 100, 1);
        let b = block(dir.path(), 300, 2);
        let c = block(dir.path(), 200, 1);
        let d = block(dir.path(), 0, 1);
        let by_min_time = vec![Arc::clone(&d), Arc::clone(&a), Arc::clone(&c), Arc::clone(&b)];
        let (ua, uc, ud) = (a.meta().ulid, c.meta().ulid, d.meta().ulid);

        assert_eq!(ulids(&Uploaded::default().compactable(&by_min_time)), Vec::<Ulid>::new());
        // a uploaded: a and the level-2 block b (not the shipper's business) precede c, which waits.
        let u: Uploaded = [ua].into_iter().collect();
        assert_eq!(ulids(&u.compactable(&by_min_time)), vec![ua, b.meta().ulid]);
        // c uploaded but not a: a is the first pending block, nothing created after it is used.
        let u: Uploaded = [uc, ud].into_iter().collect();
        assert_eq!(ulids(&u.compactable(&by_min_time)), Vec::<Ulid>::new());
        let u: Uploaded = [ua, uc].into_iter().collect();
        assert_eq!(ulids(&u.compactable(&by_min_time)), vec![ua, uc, b.meta().ulid]);
        let u: Uploaded = [ua, uc, ud].into_iter().collect();
        assert_eq!(ulids(&u.compactable(&by_min_time)), ulids(&by_min_time), "the order given is kept");
    }

    #[test]
    fn reads_the_thanos_shipper_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thanos.shipper.json");
        let err = Uploaded::read(&path).unwrap_err();
        assert!(matches!(err, ReadError::Io { .. }) && err.to_string().contains("thanos.shipper.json"), "{err}");
        std::fs::write(
            &path,
            "{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"01ARZ3NDEKTSV4RRFFQ69G5FAV\",\n\t\t\"not-a-ulid\"\n\t]\n}\n",
        )
        .unwrap();
        let u = Uploaded::read(&path).unwrap();
        assert!(u.contains(&Ulid::from_string("01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap()));
        assert_eq!(u.0.len(), 1);
        // The shipper writes `"uploaded": null` before its first upload.
        std::fs::write(&path, "{\"version\": 1, \"uploaded\": null}").unwrap();
        assert_eq!(Uploaded::read(&path).unwrap(), Uploaded::default());
        std::fs::write(&path, "{\"version\": 1}").unwrap();
        assert_eq!(Uploaded::read(&path).unwrap(), Uploaded::default());
        std::fs::write(&path, "{\"version\": 1, \"upl").unwrap();
        assert!(matches!(Uploaded::read(&path).unwrap_err(), ReadError::Parse { .. }));
    }

    /// Equal min and max block durations turn level compaction off, not the merge of overlapping
    /// blocks: without the file a late block is merged before a shipper could upload it.
    #[test]
    fn equal_block_durations_still_merge_overlapping_blocks() {
        let dir = tempfile::tempdir().unwrap();
        block(dir.path(), 0, 1);
        block(dir.path(), 5, 1);
        let opts = crate::DbOptions {
            head: crate::head::Options { wal: None, ..crate::head::Options::default() },
            max_block_duration_ms: crate::head::Options::default().chunk_range_ms,
            ..crate::DbOptions::default()
        };
        let db = crate::Db::open(dir.path(), opts).unwrap();
        db.compact().unwrap();
        let blocks = db.blocks();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].meta().compaction.level, 2);
        assert_eq!(db.blocks_awaiting_upload(), 0);
    }

    #[test]
    fn a_database_merges_overlapping_blocks_only_once_they_are_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = block(dir.path(), 0, 1);
        let late = block(dir.path(), 5, 1);
        let file = dir.path().join("thanos.shipper.json");
        let opts = crate::DbOptions {
            head: crate::head::Options { wal: None, ..crate::head::Options::default() },
            delay_compact_file: Some(file.clone()),
            ..crate::DbOptions::default()
        };
        let db = crate::Db::open(dir.path(), opts).unwrap();
        db.compact().unwrap();
        assert_eq!(db.blocks().len(), 2, "no file: nothing is uploaded, nothing merged");
        assert_eq!(db.blocks_awaiting_upload(), 2);
        let listed = |ulids: &[Ulid]| {
            let list: Vec<String> = ulids.iter().map(|u| format!("\"{u}\"")).collect();
            std::fs::write(&file, format!("{{\"version\": 1, \"uploaded\": [{}]}}", list.join(","))).unwrap();
        };
        listed(&[late.meta().ulid]);
        db.compact().unwrap();
        assert_eq!(db.blocks().len(), 2, "the older block is not uploaded yet");
        assert_eq!(db.blocks_awaiting_upload(), 2);
        listed(&[first.meta().ulid, late.meta().ulid]);
        db.compact().unwrap();
        let blocks = db.blocks();
        assert_eq!(blocks.len(), 1, "both uploaded: merged");
        assert_eq!(blocks[0].meta().compaction.level, 2);
        assert_eq!(db.blocks_awaiting_upload(), 0);
    }
}
