//! Block shipping (`--storage.tsdb.upload.config`): uploads every new level-1 block to object
//! storage in Thanos's layout, as the Thanos sidecar's shipper does, so that Thanos's store gateway
//! and compactor (or anything reading Thanos buckets) serve and compact Strata's blocks.
//!
//! The shipper is one task on the async runtime; file reads and the state file's writes run on the
//! blocking pool, and it holds no lock of the database, so ingestion and queries never wait for it.
//! Every `--storage.tsdb.upload.interval` it takes the database's blocks, oldest first, and uploads
//! each level-1 block its state file ([`state`], `thanos.shipper.json`) does not list, recording it
//! there once its `meta.json` is in the bucket. That file is the database's delay-compact file, so
//! compaction never merges, and retention never deletes, a level-1 block before it is uploaded: late
//! samples reach the bucket as level-1 blocks overlapping older ones (for Thanos's vertical
//! compaction), and higher-level blocks, made only of uploaded blocks, are not uploaded.
//!
//! A failed upload stops the round (later blocks wait, as in Thanos) and is retried after a backoff
//! doubling from [`FIRST_RETRY`] to [`MAX_RETRY`]; failures are counted on `/metrics` and do not
//! affect readiness. An upload cut short (shutdown, crash) leaves objects without `meta.json` in the
//! bucket, which readers ignore; since the state file does not list the block, the next round
//! uploads it again. Before uploading, a block whose `meta.json` already is in the bucket (uploaded
//! just before a crash) is recorded without a second upload.

pub mod bucket;
pub mod state;
pub mod upload;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tsdb::block::{Block, Ulid};

use crate::reload::Reloader;
use bucket::Bucket;
use upload::UploadError;

/// First wait after a failed round.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between failed rounds.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// The shipper's counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ShipperStats {
    uploads: AtomicU64,
    failures: AtomicU64,
    bytes: AtomicU64,
    /// Creation time (ms, from the ULID) of the oldest level-1 block not uploaded; 0: none.
    oldest_pending_ms: AtomicU64,
    pending: AtomicU64,
}

/// Uploads the database's blocks to a bucket.
pub struct Shipper {
    bucket: Bucket,
    db: Arc<tsdb::Db>,
    reloader: Arc<Reloader>,
    state_path: PathBuf,
    interval: Duration,
    stats: Arc<ShipperStats>,
}

impl Shipper {
    /// A shipper of `db`'s blocks to `bucket`, recording them in `<data dir>/thanos.shipper.json`.
    pub fn new(bucket: Bucket, db: Arc<tsdb::Db>, reloader: Arc<Reloader>, interval: Duration) -> Shipper {
        let state_path = db.dir().join(state::FILE_NAME);
        Shipper { bucket, db, reloader, state_path, interval, stats: Arc::default() }
    }

    /// The `/metrics` collector of this shipper's counters.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(StatsCollector(Arc::clone(&self.stats)))
    }

    /// Uploads until the task is aborted (at shutdown): a round every interval, or after the backoff
    /// when a round failed.
    pub async fn run(self) {
        tracing::info!(bucket = %self.bucket.description(), interval = ?self.interval, "block shipper started");
        let path = self.state_path.clone();
        let mut uploaded = match tokio::task::spawn_blocking(move || state::read(&path)).await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the shipper state; block shipping stopped");
                return;
            }
        };
        let mut failed_rounds: u32 = 0;
        let mut first = true;
        loop {
            let wait = match self.round(&mut uploaded, first).await {
                Ok(()) => {
                    failed_rounds = 0;
                    first = false;
                    self.interval
                }
                Err(e) => {
                    failed_rounds = failed_rounds.saturating_add(1);
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let wait = FIRST_RETRY.saturating_mul(1 << failed_rounds.min(16).saturating_sub(1)).min(MAX_RETRY);
                    tracing::warn!(error = %e, failed_rounds, retry_in = ?wait, "block upload failed");
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One round: uploads the pending level-1 blocks oldest first, stopping at the first failure.
    async fn round(&self, uploaded: &mut Vec<Ulid>, first: bool) -> Result<(), RoundError> {
        let blocks = self.db.blocks();
        let present: HashSet<Ulid> = blocks.iter().map(|b| b.meta().ulid).collect();
        let before = uploaded.len();
        // The list names blocks still in the data directory (as Thanos's shipper keeps it).
        uploaded.retain(|u| present.contains(u));
        let mut changed = first || uploaded.len() != before;
        let pending: Vec<Arc<Block>> = blocks
            .iter()
            .filter(|b| b.meta().compaction.level <= 1 && !uploaded.contains(&b.meta().ulid))
            .cloned()
            .collect();
        self.set_pending(&pending);
        let mut result = Ok(());
        for (i, b) in pending.iter().enumerate() {
            match self.ship(b).await {
                Ok(()) => {
                    uploaded.push(b.meta().ulid);
                    self.write_state(uploaded).await?;
                    changed = false;
                    self.set_pending(pending.get(i + 1..).unwrap_or_default());
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if changed {
            self.write_state(uploaded).await?;
        }
        result
    }

    /// Uploads one block unless there is nothing to ship or its `meta.json` is already in the bucket.
    async fn ship(&self, b: &Block) -> Result<(), RoundError> {
        let meta = b.meta();
        let ulid = meta.ulid.to_string();
        if meta.stats.num_samples == 0 {
            tracing::info!(ulid, "block without samples: recorded, not uploaded");
            return Ok(());
        }
        let meta_object = self.bucket.path(&format!("{ulid}/meta.json"));
        match self.bucket.store().head(&meta_object).await {
            Ok(_) => {
                tracing::info!(ulid, "block already in the bucket: recorded as uploaded");
                return Ok(());
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(UploadError::Bucket { object: meta_object.to_string(), source }.into());
            }
        }
        let started = Instant::now();
        let labels = self.reloader.external_labels();
        let sent = upload::upload_block(&self.bucket, b.dir(), &ulid, &labels).await?;
        self.stats.uploads.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(sent.bytes, Ordering::Relaxed);
        tracing::info!(
            ulid,
            mint = meta.min_time,
            maxt = meta.max_time,
            files = sent.files,
            bytes = sent.bytes,
            duration_secs = started.elapsed().as_secs_f64(),
            "block uploaded"
        );
        Ok(())
    }

    async fn write_state(&self, uploaded: &[Ulid]) -> Result<(), RoundError> {
        let (path, list) = (self.state_path.clone(), uploaded.to_vec());
        tokio::task::spawn_blocking(move || state::write(&path, &list))
            .await
            .map_err(UploadError::from)?
            .map_err(RoundError::State)
    }

    fn set_pending(&self, pending: &[Arc<Block>]) {
        let oldest = pending.iter().map(|b| b.meta().ulid.timestamp_ms()).min().unwrap_or(0);
        self.stats.oldest_pending_ms.store(oldest, Ordering::Relaxed);
        self.stats.pending.store(pending.len() as u64, Ordering::Relaxed);
    }
}

/// Why a round stopped.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("writing the shipper state: {0}")]
    State(state::WriteError),
}

#[derive(Debug)]
struct StatsCollector(Arc<ShipperStats>);

impl Collector for StatsCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        for (name, help, v) in [
            ("strata_shipper_uploads", "Blocks uploaded to the bucket.", s.uploads.load(Ordering::Relaxed)),
            (
                "strata_shipper_upload_failures",
                "Upload rounds that failed (each is retried after a backoff).",
                s.failures.load(Ordering::Relaxed),
            ),
            (
                "strata_shipper_uploaded_bytes",
                "Bytes of block files uploaded, meta.json included.",
                s.bytes.load(Ordering::Relaxed),
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        for (name, help, v) in [
            (
                "strata_shipper_oldest_block_not_uploaded_timestamp_seconds",
                "Creation time of the oldest level-1 block not uploaded yet; 0 when every block is uploaded.",
                s.oldest_pending_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "strata_shipper_blocks_not_uploaded",
                "Level-1 blocks not uploaded yet (as of the shipper's last round).",
                s.pending.load(Ordering::Relaxed) as f64,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}
