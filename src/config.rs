//! Command-line flags (named like Prometheus's, including the ones Prometheus deployments pass that
//! Strata has no use for) and the YAML config file ([`crate::config_file`]), turned into the
//! libraries' option structs. Everything is checked once, here, at startup.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

/// Strata: a Prometheus-compatible time-series database with out-of-order ingestion.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
pub struct Flags {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Base path for metrics storage (WAL and blocks).
    #[arg(long = "storage.tsdb.path", default_value = "data/")]
    pub tsdb_path: PathBuf,

    /// Address to listen on for the API, remote-write and health endpoints.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    pub listen_address: SocketAddr,

    /// Optional Prometheus-style YAML configuration file: `global.external_labels` and
    /// `storage.tsdb.out_of_order_time_window` are read; re-read on SIGHUP and `POST /-/reload`.
    #[arg(long = "config.file")]
    pub config_file: Option<PathBuf>,

    /// Enable `POST /-/reload` and `POST /-/quit`.
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,

    /// Enable the TSDB admin API (snapshot, delete_series, clean_tombstones).
    #[arg(long = "web.enable-admin-api")]
    pub enable_admin_api: bool,

    /// The URL under which Strata is reached from outside (recorded; Strata generates no links).
    #[arg(long = "web.external-url")]
    pub external_url: Option<String>,

    /// Prefix of the HTTP endpoints' paths (Prometheus's flag). Strata serves at `/`; any other
    /// prefix is refused rather than silently ignored.
    #[arg(long = "web.route-prefix")]
    pub route_prefix: Option<String>,

    /// Accepted for Prometheus compatibility: Strata's remote-write receiver is always on.
    #[arg(long = "web.enable-remote-write-receiver")]
    pub enable_remote_write_receiver: bool,

    /// Prometheus feature flags, comma separated. Strata logs which of them it implements anyway and
    /// warns about unknown ones.
    #[arg(long = "enable-feature", value_delimiter = ',')]
    pub enable_feature: Vec<String>,

    /// Accepted for Prometheus compatibility (Strata takes no lock file).
    #[arg(long = "storage.tsdb.no-lockfile")]
    pub no_lockfile: bool,

    /// Regex of the origins API responses allow (`Access-Control-Allow-Origin`), anchored at both ends.
    #[arg(long = "web.cors.origin", default_value = crate::cors::DEFAULT_ORIGIN)]
    pub cors_origin: String,

    /// Accepted for Prometheus compatibility (Strata has no consoles).
    #[arg(long = "web.console.templates")]
    pub console_templates: Option<String>,

    /// Accepted for Prometheus compatibility (Strata has no consoles).
    #[arg(long = "web.console.libraries")]
    pub console_libraries: Option<String>,

    /// The name the web UI's pages show (default "Strata").
    #[arg(long = "web.page-title")]
    pub page_title: Option<String>,

    /// Prometheus's web configuration file (exporter-toolkit format): TLS (`tls_server_config`),
    /// basic authentication (`basic_auth_users`, bcrypt hashes) and response headers. Re-read, with
    /// the certificate files it names, when they change.
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,

    /// Accepted for Prometheus compatibility (Strata does not evaluate rules).
    #[arg(long = "rules.alert.for-outage-tolerance")]
    pub rules_alert_for_outage_tolerance: Option<String>,

    /// Accepted for Prometheus compatibility (Strata does not evaluate rules).
    #[arg(long = "rules.alert.for-grace-period")]
    pub rules_alert_for_grace_period: Option<String>,

    /// Accepted for Prometheus compatibility (Strata does not evaluate rules).
    #[arg(long = "rules.alert.resend-delay")]
    pub rules_alert_resend_delay: Option<String>,

    /// Accepted for Prometheus compatibility (Strata sends no alerts).
    #[arg(long = "alertmanager.notification-queue-capacity")]
    pub alertmanager_queue_capacity: Option<String>,

    /// Accepted for Prometheus compatibility (Strata does not scrape).
    #[arg(long = "scrape.timestamp-tolerance")]
    pub scrape_timestamp_tolerance: Option<String>,

    /// Accepted for Prometheus compatibility (Strata has no remote-write client).
    #[arg(long = "storage.remote.flush-deadline")]
    pub remote_flush_deadline: Option<String>,

    /// Accepted for Prometheus compatibility (the web UI serves only its embedded files).
    #[arg(long = "web.user-assets")]
    pub user_assets: Option<String>,

    /// Accepted for Prometheus compatibility (Strata does not compress the WAL).
    #[arg(long = "storage.tsdb.wal-compression")]
    pub wal_compression: bool,

    /// Accepted for Prometheus compatibility (Strata always handles overlapping blocks).
    #[arg(long = "storage.tsdb.allow-overlapping-blocks")]
    pub allow_overlapping_blocks: bool,

    /// Accept samples up to this far behind the newest sample in the head (e.g. 30m). Overrides the
    /// config file's `storage.tsdb.out_of_order_time_window`. 0s disables out-of-order ingestion.
    #[arg(long = "storage.tsdb.out-of-order-time-window")]
    pub ooo_time_window: Option<String>,

    /// Samples further ahead of the wall clock than this are rejected (400): a sender with a clock far
    /// ahead would otherwise push the head's time forward and make every other sample too old.
    /// Also applied to the WAL at startup. 0 disables the bound.
    #[arg(long = "storage.tsdb.creation-grace-period", default_value = "10m")]
    pub creation_grace_period: String,

    /// Samples in an open out-of-order chunk before it is cut (Prometheus's out_of_order_cap_max).
    #[arg(long = "storage.tsdb.out-of-order-cap-max", default_value_t = 32)]
    pub ooo_cap_max: usize,

    /// Block and chunk range.
    #[arg(long = "storage.tsdb.min-block-duration", default_value = "2h")]
    pub min_block_duration: String,

    /// How long to keep blocks (Prometheus's `--storage.tsdb.retention.time`). 0 keeps them forever.
    #[arg(long = "storage.tsdb.retention.time", default_value = "15d")]
    pub retention_time: String,

    /// Maximum bytes of blocks (and WAL) to keep, e.g. `512MB`, `10GB`; oldest blocks go first. 0 = no limit.
    #[arg(long = "storage.tsdb.retention.size", default_value = "0")]
    pub retention_size: String,

    /// Largest block compaction produces (default: 10% of the retention time, at most 31d).
    #[arg(long = "storage.tsdb.max-block-duration")]
    pub max_block_duration: Option<String>,

    /// JSON file in which a block shipper lists the blocks it has uploaded (the Thanos sidecar's
    /// `<storage.tsdb.path>/thanos.shipper.json`). When set, compaction (merging overlapping blocks
    /// included) leaves a level-1 block, and every block created after it, alone until the file lists
    /// it as uploaded; an unreadable or missing file lists nothing.
    #[arg(long = "storage.tsdb.delay-compact-file.path")]
    pub delay_compact_file: Option<PathBuf>,

    /// Bucket configuration file in Thanos's objstore format (`type: S3|GCS|AZURE|FILESYSTEM`,
    /// `config: {...}`, `prefix`). When set, every new level-1 block is uploaded in Thanos's layout
    /// with the external labels of the config file, recorded in `<storage.tsdb.path>/thanos.shipper.json`,
    /// and neither compacted nor deleted by retention before it is uploaded.
    #[arg(long = "storage.tsdb.upload.config")]
    pub upload_config: Option<PathBuf>,

    /// How often the block shipper looks for blocks to upload.
    #[arg(long = "storage.tsdb.upload.interval", default_value = "30s")]
    pub upload_interval: String,

    /// How often background compaction looks for work.
    #[arg(long = "storage.tsdb.compaction-interval", default_value = "1m", hide = true)]
    pub compaction_interval: String,

    /// Write a WAL checkpoint (the head's chunks) when the WAL segments since the last one exceed this
    /// size, e.g. `64MB`; bounds the samples a restart after a crash replays one by one. 0 = only after
    /// compaction and at shutdown.
    #[arg(long = "storage.tsdb.wal-checkpoint-size", default_value = "64MB")]
    pub wal_checkpoint_size: String,

    /// WAL segment size in bytes.
    #[arg(long = "storage.tsdb.wal-segment-size", default_value_t = 128 << 20)]
    pub wal_segment_size: u64,

    /// When the WAL is fsynced: `always` (before every remote-write acknowledgement, with group
    /// commit), a duration such as `1s` (periodically; a machine crash can lose up to that much
    /// acknowledged data, a process crash loses nothing), or `never` (only at shutdown).
    #[arg(long = "storage.tsdb.wal-fsync", default_value = "always")]
    pub wal_fsync: String,

    /// Exemplars kept in memory (a circular buffer over all series; 0 turns exemplar storage off).
    #[arg(long = "storage.exemplars.exemplars-limit", default_value_t = tsdb::exemplars::DEFAULT_CAPACITY)]
    pub exemplars_limit: usize,

    /// Largest accepted compressed remote-write body, in bytes.
    #[arg(long = "storage.remote.write.max-compressed-bytes", default_value_t = 32 << 20)]
    pub max_compressed_bytes: usize,

    /// Largest accepted decompressed remote-write body, in bytes.
    #[arg(long = "storage.remote.write.max-decompressed-bytes", default_value_t = 256 << 20)]
    pub max_decompressed_bytes: usize,

    /// Most samples one remote-read query may return in a `SAMPLES` answer; 0 for no limit.
    #[arg(long = "storage.remote.read-sample-limit", default_value_t = query::api::remote_read::DEFAULT_SAMPLE_LIMIT)]
    pub remote_read_sample_limit: usize,

    /// Remote-read requests served at once (more wait); 0 for no limit.
    #[arg(long = "storage.remote.read-concurrent-limit", default_value_t = query::api::remote_read::DEFAULT_CONCURRENT_LIMIT)]
    pub remote_read_concurrent_limit: usize,

    /// Bytes of chunks after which a streamed remote-read frame is cut (a frame may exceed it by one chunk).
    #[arg(long = "storage.remote.read-max-bytes-in-frame", default_value_t = query::api::remote_read::DEFAULT_MAX_BYTES_IN_FRAME)]
    pub remote_read_max_bytes_in_frame: usize,

    /// Remote-write requests processed at once; more wait their turn (bounds memory and threads).
    #[arg(long = "storage.remote.write.max-concurrent-requests", default_value_t = 32)]
    pub max_concurrent_writes: usize,

    /// How far back a PromQL instant selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m")]
    pub lookback_delta: String,

    /// Maximum time a query may take before it is aborted.
    #[arg(long = "query.timeout", default_value = "2m")]
    pub query_timeout: String,

    /// Maximum number of queries executed concurrently (Prometheus's `--query.max-concurrency`).
    #[arg(long = "query.max-concurrency", default_value_t = 20)]
    pub query_max_concurrency: usize,

    /// Maximum number of samples a single query can load into memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    pub query_max_samples: usize,

    /// Maximum number of simultaneous connections; more wait in the listen backlog until one closes.
    #[arg(long = "web.max-connections", default_value_t = 512)]
    pub max_connections: usize,

    /// Time a client has to send a request's headers, from their first byte (for a connection's first
    /// request, from connecting).
    #[arg(long = "web.read-header-timeout", default_value = "10s")]
    pub read_header_timeout: String,

    /// Longest pause allowed within a request body; a longer one is answered 408 and the connection
    /// closed.
    #[arg(long = "web.body-stall-timeout", default_value = "1m")]
    pub body_stall_timeout: String,

    /// Time a client has to send a request's body after its headers (408 and close after that).
    #[arg(long = "web.read-timeout", default_value = "5m")]
    pub read_timeout: String,

    /// How long a keep-alive connection may wait for its next request before it is closed.
    #[arg(long = "web.idle-timeout", default_value = "2m")]
    pub idle_timeout: String,

    /// On SIGTERM/SIGINT, how long requests in flight may still run before their connections are
    /// closed and the storage is shut down.
    #[arg(long = "web.shutdown-grace-period", default_value = "10s")]
    pub shutdown_grace_period: String,

    /// Log level: debug, info, warn, error.
    #[arg(long = "log.level", default_value = "info")]
    pub log_level: String,

    /// Log format: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt")]
    pub log_format: String,
}

/// Subcommands; without one, `strata` runs the server.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check without starting the server.
    Check {
        #[command(subcommand)]
        what: CheckCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum CheckCommand {
    /// Check configuration files: exit 0 if all are valid, 1 with the first error of each otherwise.
    Config {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check web configuration files (`--web.config.file`), including the certificates they name.
    WebConfig {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Feature names of Prometheus's `--enable-feature` and what Strata does about each.
const FEATURES: &[(&str, &str)] = &[
    ("memory-snapshot-on-shutdown", "Strata writes a WAL checkpoint at shutdown instead"),
    ("exemplar-storage", "always on in Strata (--storage.exemplars.exemplars-limit)"),
    ("native-histograms", "Strata does not store native histograms"),
    ("expand-external-labels", "external labels are used as written"),
    ("promql-at-modifier", "always on in Strata"),
    ("promql-negative-offset", "always on in Strata"),
    ("remote-write-receiver", "always on in Strata"),
    ("new-service-discovery-manager", "Strata does not scrape"),
    ("agent", "Strata has no agent mode"),
    ("extra-scrape-metrics", "Strata does not scrape"),
    ("auto-gomaxprocs", "not applicable to Strata"),
    ("no-default-scrape-port", "Strata does not scrape"),
    ("otlp-write-receiver", "Strata has no OTLP receiver"),
    (
        "created-timestamp-zero-ingestion",
        "remote-write 2.0 created timestamps add a zero sample before a series' first sample",
    ),
    ("concurrent-rule-eval", "Strata does not evaluate rules"),
    ("promql-experimental-functions", "Strata implements the standard PromQL functions"),
    ("promql-per-step-stats", "stats=all reports the queryable samples of each step"),
];

/// Everything the server needs, checked.
#[derive(Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen_address: SocketAddr,
    pub db: tsdb::DbOptions,
    pub ingest: ingest::Limits,
    /// `--storage.exemplars.exemplars-limit`: exemplars held in memory (0: none).
    pub exemplars_limit: usize,
    /// `--enable-feature=created-timestamp-zero-ingestion` (remote-write 2.0 created timestamps).
    pub created_timestamp_zero_ingestion: bool,
    pub max_concurrent_writes: usize,
    pub max_concurrent_queries: usize,
    pub remote_read: query::api::remote_read::Options,
    pub engine: query::EngineOptions,
    pub http: crate::http::Options,
    /// What can change at runtime, and where to re-read it from.
    pub reloadable: Reloadable,
    /// `--web.enable-lifecycle`: `POST /-/reload` and `POST /-/quit` work.
    pub enable_lifecycle: bool,
    /// `--web.cors.origin`.
    pub cors: crate::cors::Cors,
    /// `--web.config.file`, read and checked.
    pub web: Option<crate::http::security::Loaded>,
    /// `--web.enable-admin-api`: the TSDB admin endpoints (snapshot, delete_series,
    /// clean_tombstones) work.
    pub enable_admin_api: bool,
    /// `--web.external-url`.
    #[allow(dead_code, reason = "recorded for generated links")]
    pub external_url: Option<String>,
    /// `--web.page-title`.
    pub page_title: Option<String>,
    /// One line each about flags and file keys accepted without effect, logged at startup.
    pub notes: Vec<String>,
    /// `--storage.tsdb.upload.config`: the bucket blocks are shipped to, and how often.
    pub upload: Option<(crate::shipper::bucket::Bucket, Duration)>,
}

/// The configuration a reload can change, and how to produce it again.
#[derive(Debug, Clone)]
pub struct Reloadable {
    /// The file to re-read (`--config.file`).
    pub file: Option<PathBuf>,
    /// `--storage.tsdb.out-of-order-time-window`, which wins over the file's window.
    pub window_flag: Option<Duration>,
    /// The file's contents as last loaded.
    pub current: crate::config_file::FileConfig,
}

impl Reloadable {
    /// The out-of-order window in effect: the flag's, else the file's, else 0.
    pub fn window(&self) -> Duration {
        self.window_flag.or(self.current.ooo_time_window).unwrap_or(Duration::ZERO)
    }
}

impl Flags {
    /// Reads the config file (if any) and checks every value.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let file = match &self.config_file {
            Some(path) => crate::config_file::load(path)?,
            None => crate::config_file::FileConfig::default(),
        };
        let window_flag = match &self.ooo_time_window {
            Some(w) => Some(parse_duration(w).context("--storage.tsdb.out-of-order-time-window")?),
            None => None,
        };
        let mut notes: Vec<String> = file
            .ignored
            .iter()
            .map(|(key, line)| format!("config file line {line}: {key} has no effect in Strata"))
            .collect();
        notes.extend(self.compat_notes()?);
        let reloadable = Reloadable { file: self.config_file.clone(), window_flag, current: file };
        let window = reloadable.window();
        let block = parse_duration(&self.min_block_duration).context("--storage.tsdb.min-block-duration")?;
        if block < Duration::from_secs(60) {
            bail!("--storage.tsdb.min-block-duration must be at least 1m, got {}", self.min_block_duration);
        }
        let sync = match self.wal_fsync.as_str() {
            "always" => wal::SyncPolicy::Always,
            "never" => wal::SyncPolicy::Never,
            other => {
                let d = parse_duration(other).context("--storage.tsdb.wal-fsync (always, never or a duration)")?;
                if d.is_zero() {
                    wal::SyncPolicy::Always
                } else {
                    wal::SyncPolicy::Periodic(d)
                }
            }
        };
        if self.wal_segment_size < (1 << 20) {
            bail!("--storage.tsdb.wal-segment-size must be at least 1 MiB");
        }
        if self.query_max_concurrency == 0 {
            bail!("--query.max-concurrency must be at least 1");
        }
        if self.remote_read_max_bytes_in_frame == 0 {
            bail!("--storage.remote.read-max-bytes-in-frame must be at least 1");
        }
        if self.max_concurrent_writes == 0 {
            bail!("--storage.remote.write.max-concurrent-requests must be at least 1");
        }
        if self.ooo_cap_max == 0 || self.ooo_cap_max > 255 {
            bail!("--storage.tsdb.out-of-order-cap-max must be between 1 and 255");
        }
        if self.max_connections == 0 {
            bail!("--web.max-connections must be at least 1");
        }
        let positive = |text: &str, flag: &str| -> anyhow::Result<Duration> {
            let d = parse_duration(text).with_context(|| flag.to_owned())?;
            if d.is_zero() {
                bail!("{flag} must be more than 0");
            }
            Ok(d)
        };
        let http = crate::http::Options {
            max_connections: self.max_connections,
            read_header_timeout: positive(&self.read_header_timeout, "--web.read-header-timeout")?,
            body_stall_timeout: positive(&self.body_stall_timeout, "--web.body-stall-timeout")?,
            request_read_timeout: positive(&self.read_timeout, "--web.read-timeout")?,
            idle_timeout: positive(&self.idle_timeout, "--web.idle-timeout")?,
            shutdown_grace_period: parse_duration(&self.shutdown_grace_period)
                .context("--web.shutdown-grace-period")?,
            max_body_bytes: self.max_compressed_bytes.max(crate::server::QUERY_MAX_BODY_BYTES),
        };
        let grace = parse_duration(&self.creation_grace_period).context("--storage.tsdb.creation-grace-period")?;
        let head = tsdb::Options {
            chunk_range_ms: duration_ms(block),
            creation_grace_period_ms: (!grace.is_zero()).then(|| duration_ms(grace)),
            ooo_time_window_ms: duration_ms(window),
            ooo_cap_max: self.ooo_cap_max,
            wal: Some(wal::Options { segment_size_bytes: self.wal_segment_size, sync }),
            name_validation: reloadable.current.name_validation,
            ..tsdb::Options::default()
        };
        let retention = parse_duration(&self.retention_time).context("--storage.tsdb.retention.time")?;
        let retention_ms = duration_ms(retention);
        let max_block_duration_ms = match &self.max_block_duration {
            Some(d) => duration_ms(parse_duration(d).context("--storage.tsdb.max-block-duration")?),
            None => tsdb::db::default_max_block_duration(retention_ms),
        }
        .max(head.chunk_range_ms);
        let compaction_interval = parse_duration(&self.compaction_interval)
            .context("--storage.tsdb.compaction-interval")?
            .max(Duration::from_millis(100));
        let upload = match &self.upload_config {
            Some(path) => {
                let state = self.tsdb_path.join(crate::shipper::state::FILE_NAME);
                if self.delay_compact_file.as_ref().is_some_and(|d| *d != state) {
                    bail!(
                        "--storage.tsdb.delay-compact-file.path must be {} (or unset) with --storage.tsdb.upload.config: \
                         the built-in shipper records its uploads there",
                        state.display()
                    );
                }
                if reloadable.current.external_labels.is_empty() {
                    bail!(
                        "--storage.tsdb.upload.config needs global.external_labels in --config.file: \
                         Thanos's store and compactor tell block streams apart by them"
                    );
                }
                let bucket = crate::shipper::bucket::Bucket::open(path).context("--storage.tsdb.upload.config")?;
                let interval = positive(&self.upload_interval, "--storage.tsdb.upload.interval")?;
                Some((bucket, interval, state))
            }
            None => None,
        };
        let db = tsdb::DbOptions {
            head,
            retention_ms,
            retention_bytes: parse_bytes(&self.retention_size).context("--storage.tsdb.retention.size")?,
            max_block_duration_ms,
            compaction_interval,
            checkpoint_wal_bytes: parse_bytes(&self.wal_checkpoint_size)
                .context("--storage.tsdb.wal-checkpoint-size")?,
            delay_compact_file: match &upload {
                Some((_, _, state)) => Some(state.clone()),
                None => self.delay_compact_file.clone(),
            },
        };
        let engine = query::EngineOptions {
            lookback_delta: parse_duration(&self.lookback_delta).context("--query.lookback-delta")?,
            timeout: parse_duration(&self.query_timeout).context("--query.timeout")?,
            max_samples: self.query_max_samples,
            per_step_stats: self.enable_feature.iter().any(|f| f.trim() == "promql-per-step-stats"),
            ..query::EngineOptions::default()
        };
        let ingest = ingest::Limits {
            max_compressed_bytes: self.max_compressed_bytes,
            max_decompressed_bytes: self.max_decompressed_bytes,
        };
        Ok(Config {
            data_dir: self.tsdb_path,
            listen_address: self.listen_address,
            db,
            ingest,
            remote_read: query::api::remote_read::Options {
                sample_limit: self.remote_read_sample_limit,
                concurrent_limit: self.remote_read_concurrent_limit,
                max_bytes_in_frame: self.remote_read_max_bytes_in_frame,
                body: ingest,
            },
            exemplars_limit: self.exemplars_limit,
            created_timestamp_zero_ingestion: self
                .enable_feature
                .iter()
                .any(|f| f.trim() == "created-timestamp-zero-ingestion"),
            max_concurrent_writes: self.max_concurrent_writes,
            max_concurrent_queries: self.query_max_concurrency,
            engine,
            http,
            reloadable,
            enable_lifecycle: self.enable_lifecycle,
            cors: crate::cors::Cors::new(&self.cors_origin)?,
            web: match &self.web_config_file {
                Some(path) => Some(crate::http::security::Loaded::load(path).context("--web.config.file")?),
                None => None,
            },
            enable_admin_api: self.enable_admin_api,
            page_title: self.page_title.clone(),
            external_url: self.external_url,
            notes,
            upload: upload.map(|(bucket, interval, _)| (bucket, interval)),
        })
    }

    /// One line for each Prometheus flag given that has no effect in Strata; an error for a route
    /// prefix Strata cannot serve under.
    fn compat_notes(&self) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        if let Some(prefix) = &self.route_prefix {
            if !prefix.trim_matches('/').is_empty() {
                bail!("--web.route-prefix={prefix:?}: Strata serves its endpoints at \"/\" only");
            }
        }
        let flag = |on: bool, name: &str, why: &str, notes: &mut Vec<String>| {
            if on {
                notes.push(format!("{name} has no effect: {why}"));
            }
        };
        flag(
            self.enable_remote_write_receiver,
            "--web.enable-remote-write-receiver",
            "the receiver is always on",
            &mut notes,
        );
        flag(self.no_lockfile, "--storage.tsdb.no-lockfile", "Strata takes no lock file", &mut notes);
        flag(self.console_templates.is_some(), "--web.console.templates", "Strata has no consoles", &mut notes);
        flag(self.console_libraries.is_some(), "--web.console.libraries", "Strata has no consoles", &mut notes);
        flag(self.wal_compression, "--storage.tsdb.wal-compression", "Strata does not compress the WAL", &mut notes);
        flag(
            self.allow_overlapping_blocks,
            "--storage.tsdb.allow-overlapping-blocks",
            "Strata always handles overlapping blocks",
            &mut notes,
        );
        flag(
            self.rules_alert_for_outage_tolerance.is_some(),
            "--rules.alert.for-outage-tolerance",
            "Strata does not evaluate rules",
            &mut notes,
        );
        flag(
            self.rules_alert_for_grace_period.is_some(),
            "--rules.alert.for-grace-period",
            "Strata does not evaluate rules",
            &mut notes,
        );
        flag(
            self.rules_alert_resend_delay.is_some(),
            "--rules.alert.resend-delay",
            "Strata does not evaluate rules",
            &mut notes,
        );
        flag(
            self.alertmanager_queue_capacity.is_some(),
            "--alertmanager.notification-queue-capacity",
            "Strata sends no alerts",
            &mut notes,
        );
        flag(
            self.scrape_timestamp_tolerance.is_some(),
            "--scrape.timestamp-tolerance",
            "Strata does not scrape",
            &mut notes,
        );
        flag(
            self.remote_flush_deadline.is_some(),
            "--storage.remote.flush-deadline",
            "Strata has no remote-write client",
            &mut notes,
        );
        flag(self.user_assets.is_some(), "--web.user-assets", "the web UI serves only its embedded files", &mut notes);
        for feature in self.enable_feature.iter().map(|f| f.trim()).filter(|f| !f.is_empty()) {
            match FEATURES.iter().find(|(name, _)| *name == feature) {
                Some((name, what)) => notes.push(format!("--enable-feature={name}: {what}")),
                None => notes.push(format!("--enable-feature={feature}: unknown feature, ignored")),
            }
        }
        Ok(notes)
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Parses a Prometheus duration such as `30m`, `1h30m`, `90s`, `0`, `1d`, `2w`, `1y`: whole numbers,
/// units in decreasing order, each at most once (the same grammar the query API accepts).
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let ms = query::api::params::parse_prom_duration(s.trim())
        .and_then(|ms| u64::try_from(ms).ok())
        .ok_or_else(|| anyhow::anyhow!("not a valid duration string: {s:?}"))?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration as Prometheus writes one (`model.Duration`): the largest units first, years and
/// weeks only when they divide it exactly (`2h`, `1d12h`, `31d`, `2w`, `1s500ms`; `0s` for zero).
pub fn format_duration(d: Duration) -> String {
    const UNITS: [(&str, u128, bool); 7] = [
        ("y", 365 * 86_400_000, true),
        ("w", 7 * 86_400_000, true),
        ("d", 86_400_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1000, false),
        ("ms", 1, false),
    ];
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size, exact) in UNITS {
        if exact && !ms.is_multiple_of(size) {
            continue;
        }
        let n = ms / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            ms -= n * size;
        }
    }
    out
}

/// Parses a byte size like Prometheus's: a number with an optional unit B, KB, MB, GB, TB, PB, EB
/// (powers of 1024).
pub fn parse_bytes(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().with_context(|| format!("not a valid size: {s:?}"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KB" => 10,
        "MB" => 20,
        "GB" => 30,
        "TB" => 40,
        "PB" => 50,
        "EB" => 60,
        _ => bail!("not a valid size: {s:?} (units: B, KB, MB, GB, TB, PB, EB)"),
    };
    n.checked_mul(1u64 << shift).with_context(|| format!("size out of range: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(2 * 86400));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("30m1h").is_err());
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn durations_are_written_as_prometheus_writes_them() {
        let h = 3600;
        for (secs, want) in [
            (0, "0s"),
            (2 * h, "2h"),
            (36 * h, "1d12h"),
            (31 * 24 * h, "31d"),
            (14 * 24 * h, "2w"),
            (365 * 24 * h, "1y"),
            (90 * 24 * h, "90d"),
            (h + 61, "1h1m1s"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(format_duration(d), want);
            assert_eq!(parse_duration(want).unwrap(), d, "{want} reads back");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("0").unwrap(), 0);
        assert_eq!(parse_bytes("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("10GB").unwrap(), 10 << 30);
        assert!(parse_bytes("10XB").is_err());
        assert!(parse_bytes("MB").is_err());
    }

    #[test]
    fn http_flags() {
        let cfg = Flags::parse_from(["strata"]).into_config().unwrap();
        assert_eq!(cfg.http.max_connections, 512);
        assert_eq!(cfg.http.read_header_timeout, Duration::from_secs(10));
        assert_eq!(cfg.http.body_stall_timeout, Duration::from_secs(60));
        assert_eq!(cfg.http.request_read_timeout, Duration::from_secs(300));
        assert_eq!(cfg.http.idle_timeout, Duration::from_secs(120));
        assert_eq!(cfg.http.shutdown_grace_period, Duration::from_secs(10));
        assert_eq!(cfg.http.max_body_bytes, 32 << 20);
        for bad in [
            "--web.max-connections=0",
            "--web.read-header-timeout=0s",
            "--web.body-stall-timeout=0s",
            "--web.read-timeout=0s",
            "--web.idle-timeout=0s",
            "--web.shutdown-grace-period=soon",
        ] {
            let err = Flags::parse_from(["strata", bad]).into_config().unwrap_err();
            let flag = bad.split('=').next().unwrap();
            assert!(format!("{err:#}").contains(flag), "{bad}: {err:#}");
        }
        // A grace period of 0 cuts requests in flight at once.
        let cfg = Flags::parse_from(["strata", "--web.shutdown-grace-period=0s"]).into_config().unwrap();
        assert_eq!(cfg.http.shutdown_grace_period, Duration::ZERO);
    }

    #[test]
    fn config_file_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.yml");
        std::fs::write(&path, "storage:\n  tsdb:\n    out_of_order_time_window: 45m\n").unwrap();
        let flags = Flags::parse_from(["strata", "--config.file", path.to_str().unwrap()]);
        let cfg = flags.into_config().unwrap();
        assert_eq!(cfg.db.head.ooo_time_window_ms, 45 * 60_000);
        let flags = Flags::parse_from([
            "strata",
            "--config.file",
            path.to_str().unwrap(),
            "--storage.tsdb.out-of-order-time-window",
            "10m",
        ]);
        assert_eq!(flags.into_config().unwrap().db.head.ooo_time_window_ms, 10 * 60_000);
    }
}
