//! The bucket blocks are shipped to: Thanos's objstore configuration file
//! (`--storage.tsdb.upload.config`, the file `thanos sidecar --objstore.config-file` reads), checked
//! key by key like Thanos's strict YAML decoding, and the `object_store` client built from it.
//!
//! Types: `S3`, `GCS`, `AZURE` and `FILESYSTEM` (case-insensitive); Thanos's other types and the
//! per-type options Strata does not implement (`sse_config`, `http_config`, `trace`, …) are errors
//! naming the key, so a file relying on them is not silently taken for something else. `prefix`
//! puts every object under a path inside the bucket, as Thanos's `prefix` does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use saphyr::{Scalar, YamlData};

use crate::config_file::{load_yaml, scalar_text, ConfigFileError, Entries, Walk};

/// Thanos's bucket types that Strata does not ship to.
const UNSUPPORTED_TYPES: &[&str] = &["SWIFT", "COS", "ALIYUNOSS", "BOS", "OCI", "OBS"];

/// Thanos's S3 options Strata does not implement.
const S3_NOT_IMPLEMENTED: &[&str] = &[
    "aws_sdk_auth",
    "signature_version2",
    "disable_dualstack",
    "put_user_metadata",
    "http_config",
    "trace",
    "list_objects_version",
    "send_content_md5",
    "disable_multipart",
    "part_size",
    "sse_config",
    "sts_endpoint",
    "max_retries",
];
const S3_KEYS: &[&str] =
    &["bucket", "endpoint", "region", "access_key", "secret_key", "session_token", "insecure", "bucket_lookup_type"];
const GCS_NOT_IMPLEMENTED: &[&str] =
    &["use_grpc", "grpc_conn_pool_size", "http_config", "chunk_size_bytes", "max_retries"];
const GCS_KEYS: &[&str] = &["bucket", "service_account"];
const AZURE_NOT_IMPLEMENTED: &[&str] = &[
    "storage_connection_string",
    "storage_create_container",
    "user_assigned_id",
    "az_tenant_id",
    "client_id",
    "client_secret",
    "http_config",
    "max_retries",
    "reader_config",
    "pipeline_config",
    "msi_resource",
];
const AZURE_KEYS: &[&str] = &["storage_account", "storage_account_key", "container", "endpoint"];
const DEFAULT_AZURE_ENDPOINT: &str = "blob.core.windows.net";

/// How a request to the bucket is retried before the upload counts as failed (the shipper then
/// retries the block with its own backoff).
const REQUEST_MAX_RETRIES: usize = 3;
const REQUEST_RETRY_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A bucket configuration file that cannot be used, or a client that cannot be built from it.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error(transparent)]
    File(#[from] ConfigFileError),
    #[error("{path}: bucket type {kind:?} is not supported by Strata (supported: S3, GCS, AZURE, FILESYSTEM)")]
    UnsupportedType { path: String, kind: String },
    #[error("{path}: {what}")]
    Missing { path: String, what: String },
    #[error("{path}: FILESYSTEM directory {dir}: {source}")]
    Directory { path: String, dir: PathBuf, source: std::io::Error },
    #[error("{path}: cannot build the {kind} client: {source}")]
    Client { path: String, kind: &'static str, source: object_store::Error },
}

/// `bucket_lookup_type` of an S3 bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupType {
    /// Virtual-hosted style for AWS's endpoints, path style for any other (what minio-go does).
    Auto,
    VirtualHosted,
    Path,
}

/// An S3 bucket, with Thanos's key names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct S3 {
    pub bucket: String,
    /// `host[:port]`, no scheme.
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub session_token: String,
    /// Plain HTTP.
    pub insecure: bool,
    pub lookup: Option<LookupType>,
}

/// What the configuration file describes.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    S3(S3),
    Gcs { bucket: String, service_account: String },
    Azure { account: String, key: String, container: String, endpoint: String },
    Filesystem { directory: PathBuf },
}

/// The checked configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketConfig {
    pub kind: Kind,
    /// Path inside the bucket under which blocks go, without leading or trailing `/`.
    pub prefix: String,
}

/// A bucket client and the prefix of its objects.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// For logs: type and bucket name (no credentials).
    description: String,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("bucket", &self.description).finish_non_exhaustive()
    }
}

impl Bucket {
    /// Reads the configuration file at `path` and builds the client (no request is made).
    pub fn open(path: &Path) -> Result<Bucket, BucketError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: shown.clone(), source })?;
        parse(&shown, &text)?.build(&shown)
    }

    /// The client.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object at `rel` (e.g. `<ulid>/meta.json`) under the prefix.
    pub fn path(&self, rel: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// Type, bucket and prefix, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// Checks the YAML `text`; `path` is only used in messages.
pub fn parse(path: &str, text: &str) -> Result<BucketConfig, BucketError> {
    let docs = load_yaml(path, text)?;
    let mut walk = Walk { path, out: Parsed::default() };
    let Some(root) = docs.first() else {
        return Err(BucketError::Missing { path: path.to_owned(), what: "empty file: no bucket \"type\"".into() });
    };
    if docs.len() > 1 {
        return Err(walk.bad(&docs[1], "", "more than one YAML document").into());
    }
    let mut config_node = None;
    for (key, value, line) in walk.mapping(root, "")? {
        match key.as_str() {
            "type" => {
                let Some(t) = scalar_text(value) else {
                    return Err(walk.bad(value, "type", "expected a string").into());
                };
                walk.out.kind = Some(t.to_ascii_uppercase());
            }
            "config" => config_node = Some(value),
            "prefix" if matches!(value.data, YamlData::Value(Scalar::Null)) => {}
            "prefix" => {
                let Some(p) = scalar_text(value) else {
                    return Err(walk.bad(value, "prefix", "expected a string").into());
                };
                walk.out.prefix = p.trim_matches('/').to_owned();
            }
            _ => return Err(walk.unknown(key, line, &["type", "config", "prefix"]).into()),
        }
    }
    let Some(kind) = walk.out.kind.clone() else {
        return Err(BucketError::Missing { path: path.to_owned(), what: "no bucket \"type\"".into() });
    };
    let config = match config_node {
        Some(node) => walk.mapping(node, "config")?,
        None => Vec::new(),
    };
    let kind = match kind.as_str() {
        "S3" => Kind::S3(walk.s3(&config)?),
        "GCS" => {
            let v = walk.strings(&config, GCS_KEYS, GCS_NOT_IMPLEMENTED)?;
            Kind::Gcs { bucket: required(path, &v, "bucket", "GCS")?, service_account: get(&v, "service_account") }
        }
        "AZURE" => {
            let v = walk.strings(&config, AZURE_KEYS, AZURE_NOT_IMPLEMENTED)?;
            Kind::Azure {
                account: required(path, &v, "storage_account", "AZURE")?,
                key: get(&v, "storage_account_key"),
                container: required(path, &v, "container", "AZURE")?,
                endpoint: get(&v, "endpoint"),
            }
        }
        "FILESYSTEM" => {
            let v = walk.strings(&config, &["directory"], &[])?;
            Kind::Filesystem { directory: PathBuf::from(required(path, &v, "directory", "FILESYSTEM")?) }
        }
        other if UNSUPPORTED_TYPES.contains(&other) => {
            return Err(BucketError::UnsupportedType { path: path.to_owned(), kind: other.to_owned() })
        }
        other => return Err(BucketError::UnsupportedType { path: path.to_owned(), kind: other.to_owned() }),
    };
    Ok(BucketConfig { kind, prefix: walk.out.prefix })
}

#[derive(Default)]
struct Parsed {
    kind: Option<String>,
    prefix: String,
}

fn get(values: &[(String, String)], key: &str) -> String {
    values.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
}

fn required(path: &str, values: &[(String, String)], key: &str, kind: &str) -> Result<String, BucketError> {
    let v = get(values, key);
    if v.is_empty() {
        return Err(BucketError::Missing {
            path: path.to_owned(),
            what: format!("config.{key} is required for {kind}"),
        });
    }
    Ok(v)
}

impl Walk<'_, Parsed> {
    /// The string values of `config`, keys without the `config.` prefix; keys in `not_implemented`
    /// and unknown keys are errors.
    fn strings(
        &self,
        config: &Entries<'_, '_>,
        known: &[&str],
        not_implemented: &[&str],
    ) -> Result<Vec<(String, String)>, ConfigFileError> {
        let mut out = Vec::new();
        for (key, value, line) in config {
            let (key, line) = (key.clone(), *line);
            let name = key.trim_start_matches("config.");
            if not_implemented.contains(&name) {
                return Err(self.not_implemented(key, line));
            }
            if !known.contains(&name) {
                return Err(self.unknown(key, line, known));
            }
            match &value.data {
                YamlData::Value(Scalar::Null) => {}
                YamlData::Mapping(_) | YamlData::Sequence(_) => return Err(self.bad(value, &key, "expected a scalar")),
                _ => out.push((name.to_owned(), scalar_text(value).unwrap_or_default())),
            }
        }
        Ok(out)
    }

    fn s3(&self, config: &Entries<'_, '_>) -> Result<S3, BucketError> {
        let mut s3 = S3::default();
        for (key, value, line) in config {
            let (key, line) = (key.clone(), *line);
            let name = key.trim_start_matches("config.");
            let text = || scalar_text(value).ok_or_else(|| self.bad(value, &key, "expected a string"));
            match name {
                "bucket" => s3.bucket = text()?,
                "endpoint" => s3.endpoint = text()?,
                "region" => s3.region = text()?,
                "access_key" => s3.access_key = text()?,
                "secret_key" => s3.secret_key = text()?,
                "session_token" => s3.session_token = text()?,
                "insecure" => match &value.data {
                    YamlData::Value(Scalar::Boolean(b)) => s3.insecure = *b,
                    _ => return Err(self.bad(value, &key, "expected true or false").into()),
                },
                "bucket_lookup_type" => {
                    s3.lookup = Some(match text()?.as_str() {
                        "auto" => LookupType::Auto,
                        "virtual-hosted" => LookupType::VirtualHosted,
                        "path" => LookupType::Path,
                        _ => return Err(self.bad(value, &key, "expected auto, virtual-hosted or path").into()),
                    })
                }
                n if S3_NOT_IMPLEMENTED.contains(&n) => return Err(self.not_implemented(key, line).into()),
                _ => return Err(self.unknown(key, line, S3_KEYS).into()),
            }
        }
        let missing = |what: &str| BucketError::Missing { path: self.path.to_owned(), what: what.to_owned() };
        if s3.bucket.is_empty() {
            return Err(missing("config.bucket is required for S3"));
        }
        if s3.endpoint.is_empty() {
            return Err(missing("config.endpoint is required for S3 (host[:port], no scheme)"));
        }
        if s3.endpoint.contains("://") {
            return Err(missing("config.endpoint must be host[:port] without a scheme (set insecure: true for HTTP)"));
        }
        if s3.access_key.is_empty() != s3.secret_key.is_empty() {
            return Err(missing("config.access_key and config.secret_key must be set together"));
        }
        Ok(s3)
    }
}

impl BucketConfig {
    /// Builds the client; a FILESYSTEM directory is created if missing.
    pub fn build(&self, path: &str) -> Result<Bucket, BucketError> {
        let retry = object_store::RetryConfig {
            max_retries: REQUEST_MAX_RETRIES,
            retry_timeout: REQUEST_RETRY_TIMEOUT,
            ..object_store::RetryConfig::default()
        };
        let client =
            object_store::ClientOptions::new().with_timeout(REQUEST_TIMEOUT).with_connect_timeout(CONNECT_TIMEOUT);
        let client_err = |kind| move |source| BucketError::Client { path: path.to_owned(), kind, source };
        let (store, description): (Arc<dyn ObjectStore>, String) = match &self.kind {
            Kind::S3(s3) => {
                let scheme = if s3.insecure { "http" } else { "https" };
                let aws_host = s3.endpoint.ends_with("amazonaws.com") || s3.endpoint.ends_with("amazonaws.com.cn");
                let virtual_hosted = match s3.lookup.unwrap_or(LookupType::Auto) {
                    LookupType::Auto => aws_host,
                    LookupType::VirtualHosted => true,
                    LookupType::Path => false,
                };
                let endpoint = if virtual_hosted {
                    format!("{scheme}://{}.{}", s3.bucket, s3.endpoint)
                } else {
                    format!("{scheme}://{}", s3.endpoint)
                };
                let mut b = if s3.access_key.is_empty() {
                    object_store::aws::AmazonS3Builder::from_env()
                } else {
                    object_store::aws::AmazonS3Builder::new()
                        .with_access_key_id(&s3.access_key)
                        .with_secret_access_key(&s3.secret_key)
                };
                if !s3.session_token.is_empty() {
                    b = b.with_token(&s3.session_token);
                }
                let region = if s3.region.is_empty() { "us-east-1" } else { &s3.region };
                let store = b
                    .with_bucket_name(&s3.bucket)
                    .with_endpoint(&endpoint)
                    .with_region(region)
                    .with_virtual_hosted_style_request(virtual_hosted)
                    .with_client_options(client.with_allow_http(s3.insecure))
                    .with_retry(retry)
                    .build()
                    .map_err(client_err("S3"))?;
                (Arc::new(store), format!("S3 {endpoint}/{}", s3.bucket))
            }
            Kind::Gcs { bucket, service_account } => {
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
                if !service_account.is_empty() {
                    b = b.with_service_account_key(service_account);
                }
                let store = b.with_client_options(client).with_retry(retry).build().map_err(client_err("GCS"))?;
                (Arc::new(store), format!("GCS {bucket}"))
            }
            Kind::Azure { account, key, container, endpoint } => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_account(account)
                    .with_container_name(container);
                if !key.is_empty() {
                    b = b.with_access_key(key);
                }
                if !endpoint.is_empty() && endpoint != DEFAULT_AZURE_ENDPOINT {
                    b = b.with_endpoint(format!("https://{account}.{endpoint}"));
                }
                let store = b.with_client_options(client).with_retry(retry).build().map_err(client_err("AZURE"))?;
                (Arc::new(store), format!("AZURE {account}/{container}"))
            }
            Kind::Filesystem { directory } => {
                let dir_err = |source| BucketError::Directory { path: path.to_owned(), dir: directory.clone(), source };
                std::fs::create_dir_all(directory).map_err(dir_err)?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(directory)
                    .map_err(client_err("FILESYSTEM"))?;
                (Arc::new(store), format!("FILESYSTEM {}", directory.display()))
            }
        };
        let description =
            if self.prefix.is_empty() { description } else { format!("{description} prefix {}", self.prefix) };
        Ok(Bucket { store, prefix: self.prefix.clone(), description })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_thanos_s3_and_filesystem_files() {
        let c = parse(
            "b.yml",
            "type: s3\nconfig:\n  bucket: thanos\n  endpoint: minio:9000\n  access_key: a\n  secret_key: s\n  \
             insecure: true\n  bucket_lookup_type: path\nprefix: /strata/\n",
        )
        .unwrap();
        let Kind::S3(s3) = &c.kind else { panic!("{c:?}") };
        assert_eq!((s3.bucket.as_str(), s3.endpoint.as_str(), s3.insecure), ("thanos", "minio:9000", true));
        assert_eq!(s3.lookup, Some(LookupType::Path));
        assert_eq!(c.prefix, "strata");
        let b = c.build("b.yml").unwrap();
        assert_eq!(b.path("01ARZ3NDEKTSV4RRFFQ69G5FAV/index").as_ref(), "strata/01ARZ3NDEKTSV4RRFFQ69G5FAV/index");

        let dir = tempfile::tempdir().unwrap();
        let text = format!("type: FILESYSTEM\nconfig:\n  directory: {}\n", dir.path().join("bucket").display());
        let c = parse("b.yml", &text).unwrap();
        assert_eq!(c.kind, Kind::Filesystem { directory: dir.path().join("bucket") });
        c.build("b.yml").unwrap();
        assert!(dir.path().join("bucket").is_dir());
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let cases = [
            ("type: SWIFT\nconfig: {}\n", "\"SWIFT\" is not supported"),
            ("type: S3\nconfig:\n  endpoint: e:9000\n", "config.bucket is required"),
            ("type: S3\nconfig:\n  bucket: b\n", "config.endpoint is required"),
            ("type: S3\nconfig:\n  bucket: b\n  endpoint: http://e:9000\n", "without a scheme"),
            ("type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  access_key: a\n", "set together"),
            (
                "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  sse_config: {type: SSE-S3}\n",
                "line 5: \"config.sse_config\" is not implemented",
            ),
            ("type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  bukket: x\n", "unknown key \"config.bukket\""),
            ("type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  insecure: yes please\n", "expected true or false"),
            ("type: FILESYSTEM\nconfig: {}\n", "config.directory is required"),
            ("config:\n  directory: /x\n", "no bucket \"type\""),
            ("type: FILESYSTEM\nconfig:\n  directory: /x\nextra: 1\n", "unknown key \"extra\""),
            ("type: GCS\nconfig:\n  service_account: x\n", "config.bucket is required for GCS"),
            ("type: AZURE\nconfig:\n  storage_account: a\n", "config.container is required for AZURE"),
        ];
        for (text, want) in cases {
            let err = parse("b.yml", text).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("b.yml"), "{text:?}: {err}");
        }
    }
}
