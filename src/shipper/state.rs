//! The shipper's state file, `<data dir>/thanos.shipper.json`, in the Thanos sidecar's format:
//! `{"version": 1, "uploaded": ["<ulid>", …]}` (tab-indented). It lists the blocks whose `meta.json`
//! is in the bucket; compaction reads it as its delay-compact file ([`tsdb::delay_compact`]), so a
//! level-1 block is merged, and deleted by retention, only once it is listed. It is written to
//! `thanos.shipper.json.tmp`, fsynced and renamed over the old one, and the directory fsynced, so a
//! crash leaves the old or the new list.

use std::io::Write;
use std::path::{Path, PathBuf};

use tsdb::block::Ulid;

/// File name inside the data directory (the Thanos sidecar's).
pub const FILE_NAME: &str = "thanos.shipper.json";
const VERSION: u64 = 1;

/// The state file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct WriteError {
    op: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct StateFile {
    version: u64,
    #[serde(default)]
    uploaded: Option<Vec<String>>,
}

/// Reads the list; a missing, unparsable or other-version file is an empty list (as Thanos reads
/// it: the shipper then asks the bucket whether each block's `meta.json` is there).
pub fn read(path: &Path) -> Vec<Ulid> {
    let Ok(bytes) = std::fs::read(path) else { return Vec::new() };
    match serde_json::from_slice::<StateFile>(&bytes) {
        Ok(f) if f.version == VERSION => {
            f.uploaded.unwrap_or_default().iter().filter_map(|s| Ulid::from_string(s).ok()).collect()
        }
        Ok(f) => {
            tracing::warn!(path = %path.display(), version = f.version, "unknown shipper state version; starting from an empty list");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable shipper state; starting from an empty list");
            Vec::new()
        }
    }
}

/// Replaces the file with `uploaded` (atomically, durably).
pub fn write(path: &Path, uploaded: &[Ulid]) -> Result<(), WriteError> {
    let file = StateFile { version: VERSION, uploaded: Some(uploaded.iter().map(Ulid::to_string).collect()) };
    let mut text = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut text, serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    serde::Serialize::serialize(&file, &mut ser).map_err(|e| WriteError {
        op: "encode",
        path: path.to_owned(),
        source: e.into(),
    })?;
    text.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    let err = |op: &'static str, p: &Path| {
        let path = p.to_owned();
        move |source| WriteError { op, path, source }
    };
    let mut f = std::fs::File::create(&tmp).map_err(err("create", &tmp))?;
    f.write_all(&text).map_err(err("write", &tmp))?;
    f.sync_all().map_err(err("fsync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err("rename", &tmp))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err("fsync", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_the_sidecar_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(read(&path).is_empty());
        let u = Ulid::from_string("01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap();
        write(&path, &[u]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"01ARZ3NDEKTSV4RRFFQ69G5FAV\"\n\t]\n}\n");
        assert_eq!(read(&path), vec![u]);
        // What compaction reads.
        assert!(tsdb::delay_compact::Uploaded::read(&path).unwrap().contains(&u));
        std::fs::write(&path, "{\"version\": 2, \"uploaded\": [\"01ARZ3NDEKTSV4RRFFQ69G5FAV\"]}").unwrap();
        assert!(read(&path).is_empty());
        std::fs::write(&path, "{\"vers").unwrap();
        assert!(read(&path).is_empty());
    }
}
