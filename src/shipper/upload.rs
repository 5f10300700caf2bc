//! Uploads one block in Thanos's bucket layout: `<ulid>/chunks/000001…`, `<ulid>/index`, then
//! `<ulid>/meta.json` last, so a block directory without `meta.json` in the bucket is an unfinished
//! upload (Thanos's readers skip it; the shipper uploads the block again). The uploaded `meta.json`
//! is the local one plus Thanos's `thanos` section (external labels, resolution 0, source
//! `sidecar`, the chunk segment files and every file's size), without Strata's local `strata`
//! section; the local file is not changed. `tombstones` is not uploaded (Thanos does not either).
//!
//! File reads run on the blocking pool; a file larger than [`PART_BYTES`] is sent as a multipart
//! upload one part at a time, so at most one part is in memory.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use object_store::{PutPayload, WriteMultipart};
use serde_json::{json, Map, Value};

use super::bucket::Bucket;

/// Files up to this size are sent in one PUT; larger ones in parts of this size.
pub const PART_BYTES: u64 = 16 << 20;

/// Why a block was not uploaded.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path}: not a block meta.json: {reason}")]
    Meta { path: PathBuf, reason: String },
    #[error("uploading {object}: {source}")]
    Bucket { object: String, source: object_store::Error },
    #[error(
        "the global.external_labels of the config file are empty: a bucket reader tells block streams apart by them"
    )]
    NoExternalLabels,
    #[error("a blocking file read failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One file of a block, relative to the block directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFile {
    /// `chunks/000001`, `index`.
    pub rel_path: String,
    pub size_bytes: u64,
}

/// The block's data files in upload order: the chunk segments (sorted), then the index.
pub fn data_files(dir: &Path) -> Result<Vec<BlockFile>, UploadError> {
    let io = |op: &'static str, p: &Path| {
        let path = p.to_owned();
        move |source| UploadError::Io { op, path, source }
    };
    let chunks = dir.join("chunks");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&chunks).map_err(io("list", &chunks))? {
        let entry = entry.map_err(io("list", &chunks))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata().map_err(io("stat", &entry.path()))?;
        if meta.is_file() {
            files.push(BlockFile { rel_path: format!("chunks/{name}"), size_bytes: meta.len() });
        }
    }
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    let index = dir.join("index");
    let size = std::fs::metadata(&index).map_err(io("stat", &index))?.len();
    files.push(BlockFile { rel_path: "index".into(), size_bytes: size });
    Ok(files)
}

/// The `meta.json` to upload: `local` (the block's own file) with the `thanos` section added.
pub fn bucket_meta(
    local: &[u8],
    path: &Path,
    labels: &BTreeMap<String, String>,
    files: &[BlockFile],
) -> Result<Vec<u8>, UploadError> {
    let bad = |reason: String| UploadError::Meta { path: path.to_owned(), reason };
    let mut meta: Map<String, Value> = serde_json::from_slice(local).map_err(|e| bad(e.to_string()))?;
    if meta.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(bad("\"version\" is not 1".into()));
    }
    meta.remove("strata");
    let segment_files: Vec<&str> = files.iter().filter_map(|f| f.rel_path.strip_prefix("chunks/")).collect();
    let mut listed: Vec<Value> =
        files.iter().map(|f| json!({"rel_path": f.rel_path, "size_bytes": f.size_bytes})).collect();
    listed.push(json!({"rel_path": "meta.json"}));
    meta.insert(
        "thanos".into(),
        json!({
            "version": 1,
            "labels": labels,
            "downsample": {"resolution": 0},
            "source": "sidecar",
            "segment_files": segment_files,
            "files": listed,
        }),
    );
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    serde::Serialize::serialize(&meta, &mut ser).map_err(|e| bad(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// What an upload sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Uploaded {
    pub bytes: u64,
    pub files: usize,
}

/// Uploads the block in `dir` (named by its ULID) with `labels` as its external labels.
pub async fn upload_block(
    bucket: &Bucket,
    dir: &Path,
    ulid: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Uploaded, UploadError> {
    if labels.is_empty() {
        return Err(UploadError::NoExternalLabels);
    }
    let d = dir.to_owned();
    let (files, local_meta) = tokio::task::spawn_blocking(move || -> Result<_, UploadError> {
        let files = data_files(&d)?;
        let meta_path = d.join("meta.json");
        let meta =
            std::fs::read(&meta_path).map_err(|source| UploadError::Io { op: "read", path: meta_path, source })?;
        Ok((files, meta))
    })
    .await??;
    let meta = bucket_meta(&local_meta, &dir.join("meta.json"), labels, &files)?;
    let mut sent = Uploaded::default();
    for f in &files {
        upload_file(bucket, &dir.join(&f.rel_path), &format!("{ulid}/{}", f.rel_path), f.size_bytes).await?;
        sent.bytes += f.size_bytes;
        sent.files += 1;
    }
    tsdb::db::crash_point("shipper-before-meta");
    let object = bucket.path(&format!("{ulid}/meta.json"));
    sent.bytes += meta.len() as u64;
    bucket
        .store()
        .put(&object, PutPayload::from(meta))
        .await
        .map_err(|source| UploadError::Bucket { object: object.to_string(), source })?;
    sent.files += 1;
    Ok(sent)
}

async fn upload_file(bucket: &Bucket, path: &Path, rel: &str, size: u64) -> Result<(), UploadError> {
    let object = bucket.path(rel);
    let bucket_err = |source| UploadError::Bucket { object: object.to_string(), source };
    if size <= PART_BYTES {
        let p = path.to_owned();
        let bytes = tokio::task::spawn_blocking(move || {
            std::fs::read(&p).map_err(|source| UploadError::Io { op: "read", path: p, source })
        })
        .await??;
        bucket.store().put(&object, PutPayload::from(bytes)).await.map_err(bucket_err)?;
        return Ok(());
    }
    let upload = bucket.store().put_multipart(&object).await.map_err(bucket_err)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES as usize);
    let mut offset = 0u64;
    while offset < size {
        let p = path.to_owned();
        let part = tokio::task::spawn_blocking(move || read_part(&p, offset)).await??;
        if part.is_empty() {
            writer.abort().await.map_err(bucket_err)?;
            return Err(UploadError::Io {
                op: "read",
                path: path.to_owned(),
                source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            });
        }
        offset += part.len() as u64;
        // One part in flight at a time: memory stays at about two parts.
        writer.wait_for_capacity(1).await.map_err(bucket_err)?;
        writer.write(&part);
    }
    writer.finish().await.map_err(bucket_err)?;
    Ok(())
}

fn read_part(path: &Path, offset: u64) -> Result<Vec<u8>, UploadError> {
    let io = |op| move |source| UploadError::Io { op, path: path.to_owned(), source };
    let mut f = std::fs::File::open(path).map_err(io("open"))?;
    f.seek(SeekFrom::Start(offset)).map_err(io("seek"))?;
    let mut buf = Vec::with_capacity(PART_BYTES as usize);
    f.take(PART_BYTES).read_to_end(&mut buf).map_err(io("read"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_meta_adds_the_thanos_section() {
        let local = br#"{"ulid":"01ARZ3NDEKTSV4RRFFQ69G5FAV","minTime":0,"maxTime":10,"stats":{"numSamples":3},
            "compaction":{"level":1,"sources":["01ARZ3NDEKTSV4RRFFQ69G5FAV"]},"version":1,"strata":{"walSegmentCut":7}}"#;
        let labels: BTreeMap<String, String> = [("cluster".to_string(), "eu-1".to_string())].into();
        let files = vec![
            BlockFile { rel_path: "chunks/000001".into(), size_bytes: 100 },
            BlockFile { rel_path: "index".into(), size_bytes: 50 },
        ];
        let out = bucket_meta(local, Path::new("m"), &labels, &files).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["ulid"], "01ARZ3NDEKTSV4RRFFQ69G5FAV");
        assert_eq!(v["stats"]["numSamples"], 3);
        assert!(v.get("strata").is_none());
        let t = &v["thanos"];
        assert_eq!(t["labels"], json!({"cluster": "eu-1"}));
        assert_eq!(t["downsample"], json!({"resolution": 0}));
        assert_eq!(t["source"], "sidecar");
        assert_eq!(t["segment_files"], json!(["000001"]));
        assert_eq!(
            t["files"],
            json!([{"rel_path": "chunks/000001", "size_bytes": 100}, {"rel_path": "index", "size_bytes": 50},
                   {"rel_path": "meta.json"}])
        );
        assert!(bucket_meta(b"{\"version\": 2}", Path::new("m"), &labels, &files).is_err());
        assert!(bucket_meta(b"[", Path::new("m"), &labels, &files).is_err());
    }

    /// A chunk file larger than a part goes up as a multipart upload and arrives byte for byte.
    #[tokio::test]
    async fn large_files_are_uploaded_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
        let block = dir.path().join(ulid);
        std::fs::create_dir_all(block.join("chunks")).unwrap();
        let big: Vec<u8> = (0..(2 * PART_BYTES + 12_345)).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(block.join("chunks/000001"), &big).unwrap();
        std::fs::write(block.join("chunks/000002"), b"small").unwrap();
        std::fs::write(block.join("index"), b"index bytes").unwrap();
        std::fs::write(block.join("meta.json"), format!("{{\"ulid\":\"{ulid}\",\"version\":1}}")).unwrap();
        let root = dir.path().join("bucket");
        let text = format!("type: FILESYSTEM\nconfig:\n  directory: {}\n", root.display());
        let bucket = super::super::bucket::parse("b.yml", &text).unwrap().build("b.yml").unwrap();
        let labels: BTreeMap<String, String> = [("a".to_string(), "b".to_string())].into();
        let sent = upload_block(&bucket, &block, ulid, &labels).await.unwrap();
        assert_eq!(sent.files, 4);
        assert_eq!(std::fs::read(root.join(ulid).join("chunks/000001")).unwrap(), big);
        assert_eq!(std::fs::read(root.join(ulid).join("chunks/000002")).unwrap(), b"small");
        let meta: Value = serde_json::from_slice(&std::fs::read(root.join(ulid).join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta["thanos"]["segment_files"], json!(["000001", "000002"]));
        assert_eq!(meta["thanos"]["files"][0]["size_bytes"], big.len() as u64);
        let empty = BTreeMap::new();
        assert!(matches!(upload_block(&bucket, &block, ulid, &empty).await, Err(UploadError::NoExternalLabels)));
    }
}
