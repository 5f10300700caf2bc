//! `meta.json`: a block's identity, time range, statistics and compaction lineage, in Prometheus's exact
//! JSON shape (tab-indented, empty/zero optional fields omitted, `version: 1`).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{BlockError, Result};
use super::ulid::Ulid;

/// File name of the block meta.
pub const META_FILENAME: &str = "meta.json";
/// The only meta format version.
pub const META_VERSION: u32 = 1;
/// Compaction hint Prometheus sets on blocks written from out-of-order data.
pub const HINT_FROM_OUT_OF_ORDER: &str = "from-out-of-order";

/// The contents of `meta.json`. Unknown fields are ignored on read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    /// The block's ULID (= directory name).
    pub ulid: Ulid,
    /// Inclusive lower bound of sample timestamps (ms).
    pub min_time: i64,
    /// Exclusive upper bound of sample timestamps (ms).
    pub max_time: i64,
    /// Counts.
    #[serde(default)]
    pub stats: BlockStats,
    /// Lineage.
    pub compaction: Compaction,
    /// Meta format version, always [`META_VERSION`].
    pub version: u32,
    /// Strata-specific data; Prometheus ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strata: Option<StrataMeta>,
}

/// `stats` of `meta.json`; as in Prometheus each count is omitted when 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    /// Samples in the block.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    /// Series in the block.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    /// Chunks in the block.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    /// Tombstone intervals.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

/// `compaction` of `meta.json` (field order as Prometheus's `BlockMetaCompaction`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compaction {
    /// 1 for a block cut from the head; max(parent levels) + 1 for a merge.
    pub level: u32,
    /// ULIDs of all level-1 ancestors, sorted; a level-1 block lists itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Ulid>,
    /// Marked for deletion after a compaction.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    /// Direct inputs of a merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    /// The compaction producing this block failed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    /// Hints such as [`HINT_FROM_OUT_OF_ORDER`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// A parent block in [`Compaction::parents`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDesc {
    /// The parent's ULID.
    pub ulid: Ulid,
    /// The parent's minTime.
    pub min_time: i64,
    /// The parent's maxTime.
    pub max_time: i64,
}

/// The top-level `"strata"` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrataMeta {
    /// The WAL segment the head was cut at when this block was written (used by head compaction).
    pub wal_segment_cut: u32,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl BlockMeta {
    /// Serialises like Go's `json.MarshalIndent(meta, "", "\t")`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let mut ser =
            serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"\t"));
        // Serialising plain structs of numbers and strings into a Vec cannot fail.
        if self.serialize(&mut ser).is_err() {
            out.clear();
        }
        out
    }

    /// Parses `meta.json` bytes and checks the version.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<BlockMeta> {
        let meta: BlockMeta =
            serde_json::from_slice(bytes).map_err(|source| BlockError::Meta { path: path.to_path_buf(), source })?;
        if meta.version != META_VERSION {
            return Err(BlockError::Corruption {
                path: path.to_path_buf(),
                offset: 0,
                reason: format!("unexpected meta file version {}", meta.version).into(),
            });
        }
        Ok(meta)
    }

    /// Reads `<dir>/meta.json`.
    pub fn read(dir: &Path) -> Result<BlockMeta> {
        let path = dir.join(META_FILENAME);
        let bytes = fs::read(&path).map_err(BlockError::io("read", &path))?;
        BlockMeta::from_json(&bytes, &path)
    }

    /// Writes `<dir>/meta.json` via `meta.json.tmp`, fsync and rename. The caller fsyncs `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("meta.json.tmp");
        let path = dir.join(META_FILENAME);
        let mut f = File::create(&tmp).map_err(BlockError::io("create", &tmp))?;
        f.write_all(&self.to_json()).map_err(BlockError::io("write", &tmp))?;
        f.sync_all().map_err(BlockError::io("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(BlockError::io("rename", &tmp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BlockMeta {
        let u: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        BlockMeta {
            ulid: u,
            min_time: 0,
            max_time: 7_200_000,
            stats: BlockStats { num_samples: 10, num_series: 2, num_chunks: 3, num_tombstones: 0 },
            compaction: Compaction { level: 1, sources: vec![u], ..Default::default() },
            version: 1,
            strata: None,
        }
    }

    #[test]
    fn json_shape_matches_prometheus() {
        let json = String::from_utf8(sample().to_json()).unwrap();
        let want = "{\n\t\"ulid\": \"01ARZ3NDEKTSV4RRFFQ69G5FAV\",\n\t\"minTime\": 0,\n\t\"maxTime\": 7200000,\n\t\"stats\": {\n\t\t\"numSamples\": 10,\n\t\t\"numSeries\": 2,\n\t\t\"numChunks\": 3\n\t},\n\t\"compaction\": {\n\t\t\"level\": 1,\n\t\t\"sources\": [\n\t\t\t\"01ARZ3NDEKTSV4RRFFQ69G5FAV\"\n\t\t]\n\t},\n\t\"version\": 1\n}";
        assert_eq!(json, want);
        assert_eq!(BlockMeta::from_json(json.as_bytes(), Path::new("m")).unwrap(), sample());
    }

    #[test]
    fn optional_fields() {
        let mut m = sample();
        m.compaction.parents = vec![BlockDesc { ulid: Ulid(0), min_time: 0, max_time: 0 }];
        m.compaction.hints = vec![HINT_FROM_OUT_OF_ORDER.into()];
        m.compaction.deletable = true;
        m.stats.num_tombstones = 4;
        m.strata = Some(StrataMeta { wal_segment_cut: 7 });
        let json = String::from_utf8(m.to_json()).unwrap();
        for s in [
            "\"parents\": [",
            "\"hints\": [",
            "\"deletable\": true",
            "\"numTombstones\": 4",
            "\"strata\": {\n\t\t\"walSegmentCut\": 7\n\t}",
        ] {
            assert!(json.contains(s), "{s} missing in {json}");
        }
        assert!(!json.contains("failed"));
        assert_eq!(BlockMeta::from_json(json.as_bytes(), Path::new("m")).unwrap(), m);
    }

    #[test]
    fn read_rules() {
        let p = Path::new("m");
        // Unknown fields (e.g. Thanos's) are ignored; missing stats are zero.
        let ok = br#"{"ulid":"01ARZ3NDEKTSV4RRFFQ69G5FAV","minTime":1,"maxTime":2,"compaction":{"level":2},"version":1,"thanos":{"labels":{}}}"#;
        let m = BlockMeta::from_json(ok, p).unwrap();
        assert_eq!((m.min_time, m.max_time, m.compaction.level, m.stats.num_samples), (1, 2, 2, 0));
        let v2 =
            br#"{"ulid":"01ARZ3NDEKTSV4RRFFQ69G5FAV","minTime":1,"maxTime":2,"compaction":{"level":2},"version":2}"#;
        assert!(BlockMeta::from_json(v2, p).unwrap_err().is_corruption());
        assert!(BlockMeta::from_json(b"{", p).is_err());
        assert!(BlockMeta::from_json(
            br#"{"ulid":"bad","minTime":1,"maxTime":2,"compaction":{"level":1},"version":1}"#,
            p
        )
        .is_err());
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        sample().write(dir.path()).unwrap();
        assert!(!dir.path().join("meta.json.tmp").exists());
        assert_eq!(BlockMeta::read(dir.path()).unwrap(), sample());
    }
}
