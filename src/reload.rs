//! Configuration reloads (SIGHUP and `POST /-/reload`): re-reads the config file, and if it is valid
//! applies what can change at runtime — the head's out-of-order window and the external labels —
//! keeping the previous configuration otherwise. Reports the outcome as
//! `strata_config_last_reload_successful` and `strata_config_last_reload_success_timestamp_seconds`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::config::Reloadable;
use crate::config_file::{ConfigFileError, FileConfig};

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    File(#[from] ConfigFileError),
    #[error("the reload task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The runtime configuration and how to reload it; shared by the signal handler, the lifecycle
/// endpoint and `/metrics`.
pub struct Reloader {
    head: Arc<tsdb::Head>,
    /// What `status/config` and `status/runtimeinfo` report; updated by every reload.
    status: Arc<query::status::ServerStatus>,
    /// Serialises reloads; holds the configuration in effect.
    state: Mutex<Reloadable>,
    external_labels: RwLock<Arc<BTreeMap<String, String>>>,
    last_ok: AtomicBool,
    last_ok_seconds: AtomicI64,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").field("last_ok", &self.last_ok).finish_non_exhaustive()
    }
}

fn now_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Reloader {
    /// Starts from the configuration loaded at startup (already applied to the head).
    pub fn new(head: Arc<tsdb::Head>, initial: Reloadable, status: Arc<query::status::ServerStatus>) -> Reloader {
        let labels = Arc::new(initial.current.external_labels.clone());
        Reloader {
            head,
            status,
            state: Mutex::new(initial),
            external_labels: RwLock::new(labels),
            last_ok: AtomicBool::new(true),
            last_ok_seconds: AtomicI64::new(now_seconds()),
        }
    }

    /// The external labels in effect (`global.external_labels`).
    pub fn external_labels(&self) -> Arc<BTreeMap<String, String>> {
        match self.external_labels.read() {
            Ok(l) => Arc::clone(&l),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Re-reads the config file and applies it; on error keeps the configuration in effect.
    pub async fn reload(self: &Arc<Self>) -> Result<(), ReloadError> {
        let this = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || this.reload_blocking()).await.map_err(ReloadError::from);
        let result = result.and_then(|r| r);
        let mut shown = match self.status.config.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        shown.reload_success = result.is_ok();
        match result {
            Ok(yaml) => {
                self.last_ok.store(true, Ordering::Relaxed);
                self.last_ok_seconds.store(now_seconds(), Ordering::Relaxed);
                shown.yaml = yaml;
                shown.last_config_time = SystemTime::now();
                Ok(())
            }
            Err(e) => {
                self.last_ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "configuration reload failed; keeping the previous configuration");
                Err(e)
            }
        }
    }

    /// Applies the config file; returns its text for `status/config`.
    fn reload_blocking(&self) -> Result<String, ReloadError> {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (loaded, yaml) = match &state.file {
            // The text shown is read after the file was loaded: a write in between shows the newer text.
            Some(path) => (crate::config_file::load(path)?, std::fs::read_to_string(path).unwrap_or_default()),
            None => (FileConfig::default(), String::new()),
        };
        for (key, line) in &loaded.ignored {
            tracing::warn!(key, line, "config file key has no effect in Strata");
        }
        let before = state.window();
        state.current = loaded;
        let window = state.window();
        self.head.set_ooo_time_window_ms(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        self.head.set_name_validation(state.current.name_validation);
        if state.window_flag.is_some() && state.current.ooo_time_window.is_some_and(|w| w != window) {
            tracing::warn!(
                "--storage.tsdb.out-of-order-time-window overrides the config file's out_of_order_time_window"
            );
        }
        let labels = Arc::new(state.current.external_labels.clone());
        match self.external_labels.write() {
            Ok(mut l) => *l = labels,
            Err(poisoned) => *poisoned.into_inner() = labels,
        }
        tracing::info!(
            out_of_order_time_window = ?window,
            previous_out_of_order_time_window = ?before,
            external_labels = ?state.current.external_labels,
            metric_name_validation_scheme = state.current.name_validation.name(),
            "configuration reloaded"
        );
        Ok(yaml)
    }

    /// Makes `/metrics` report the last reload's outcome.
    pub fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        Box::new(ReloadCollector(Arc::clone(self)))
    }
}

#[derive(Debug)]
struct ReloadCollector(Arc<Reloader>);

impl Collector for ReloadCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let ok = ConstGauge::new(if self.0.last_ok.load(Ordering::Relaxed) { 1.0 } else { 0.0 });
        ok.encode(e.encode_descriptor(
            "strata_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or was refused (0).",
            None,
            ok.metric_type(),
        )?)?;
        let at = ConstGauge::new(self.0.last_ok_seconds.load(Ordering::Relaxed) as f64);
        at.encode(e.encode_descriptor(
            "strata_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (at startup or by a reload).",
            None,
            at.metric_type(),
        )?)
    }
}
