//! The web config in force ([`Policy`]: TLS acceptor, basic-auth users, response headers) and its
//! [`Watcher`], which re-reads the web config file and the PEM files it names every
//! [`RECHECK_INTERVAL`] on a blocking thread. When their bytes change, a new policy is built and
//! published: new connections get the new certificate (a rotated certificate is served without a
//! restart) and every request after that is checked against the new users, as Prometheus re-reads
//! the file per connection and request. A file that fails its checks, or a certificate and key that
//! do not match (say, half-way through a rotation), keeps the policy in force and is logged once.
//! Whether TLS is on at all is fixed at startup: a change that turns it on or off is refused.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::auth::Authenticator;
use super::tls::{self, Material, TlsError};
use crate::config_file::ConfigFileError;
use crate::web_config::{self, WebConfig};

/// How often the web config file and its PEM files are read again.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Why a web config cannot be put in force.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    #[error("{path}: {source}")]
    Tls { path: String, source: TlsError },
    #[error("{path}: http_server_config.headers.{name}: {msg}")]
    Header { path: String, name: String, msg: String },
    #[error("{path}: TLS was {was} at startup; turning it {to} needs a restart")]
    TlsSwitch { path: String, was: &'static str, to: &'static str },
}

/// One version of the web config, as applied to connections and requests.
pub struct Policy {
    /// Handshakes new connections when TLS is configured.
    pub tls: Option<TlsAcceptor>,
    /// User → bcrypt hash; empty: no authentication.
    pub users: std::collections::BTreeMap<String, String>,
    /// Set on every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.len())
            .field("headers", &self.headers)
            .finish()
    }
}

impl Policy {
    /// No TLS, no users, no headers: what Strata does without `--web.config.file`.
    pub fn open() -> Policy {
        Policy { tls: None, users: Default::default(), headers: Vec::new() }
    }
}

/// The bytes a policy was built from; equal bytes mean nothing to rebuild.
#[derive(PartialEq, Eq)]
struct Inputs {
    text: String,
    material: Option<Material>,
}

impl std::fmt::Debug for Inputs {
    /// The file's size only: it may hold an inline key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs").field("text_bytes", &self.text.len()).field("material", &self.material).finish()
    }
}

/// A web config file read and checked at startup (blocking), ready to be put in force.
#[derive(Debug)]
pub struct Loaded {
    path: PathBuf,
    inputs: Inputs,
    policy: Policy,
}

impl Loaded {
    /// Reads `path` and the files it names, and builds the policy; any fault is an error naming it.
    pub fn load(path: &Path) -> Result<Loaded, SecurityError> {
        let (inputs, config) = read(path)?;
        let policy = build(path, &config, inputs.material.as_ref())?;
        Ok(Loaded { path: path.to_owned(), inputs, policy })
    }

    /// Whether the file configures TLS.
    pub fn tls(&self) -> bool {
        self.policy.tls.is_some()
    }

    /// One line on what the file configures, for the startup log.
    pub fn summary(&self) -> String {
        format!(
            "tls={} basic_auth_users={} headers={}",
            self.policy.tls.is_some(),
            self.policy.users.len(),
            self.policy.headers.len()
        )
    }
}

/// What connections and requests read the policy in force from; cheap to share.
#[derive(Debug)]
pub struct Security {
    current: watch::Receiver<Arc<Policy>>,
    /// Checks passwords against the users of the policy in force.
    pub auth: Authenticator,
}

impl Security {
    /// The policy in force, and the watcher that keeps it current (`None` without a web config file).
    pub fn new(loaded: Option<Loaded>, auth: Authenticator) -> (Security, Option<Watcher>) {
        match loaded {
            None => {
                let (_, current) = watch::channel(Arc::new(Policy::open()));
                (Security { current, auth }, None)
            }
            Some(l) => {
                let tls = l.policy.tls.is_some();
                let (tx, current) = watch::channel(Arc::new(l.policy));
                let watcher = Watcher { path: l.path, inputs: l.inputs, tls, tx, last_error: None };
                (Security { current, auth }, Some(watcher))
            }
        }
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        Arc::clone(&self.current.borrow())
    }

    /// Renders the authentication counters on `/metrics`.
    pub fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        Box::new(AuthCollector(Arc::clone(self)))
    }
}

#[derive(Debug)]
struct AuthCollector(Arc<Security>);

impl Collector for AuthCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = self.0.auth.stats();
        let mut m = e.encode_descriptor(
            "strata_http_basic_auth_requests",
            "Requests checked against basic_auth_users, by outcome.",
            None,
            MetricType::Counter,
        )?;
        for (outcome, c) in [("allowed", &s.allowed), ("denied", &s.denied), ("busy", &s.busy)] {
            ConstCounter::new(c.load(Ordering::Relaxed)).encode(m.encode_family(&[("outcome", outcome)])?)?;
        }
        let c = ConstCounter::new(s.bcrypt_checks.load(Ordering::Relaxed));
        c.encode(e.encode_descriptor(
            "strata_http_basic_auth_bcrypt_checks",
            "Passwords compared with bcrypt (not answered from the cache of verified credentials).",
            None,
            c.metric_type(),
        )?)
    }
}

/// Re-reads the web config every [`RECHECK_INTERVAL`] and publishes a changed policy.
pub struct Watcher {
    path: PathBuf,
    inputs: Inputs,
    tls: bool,
    tx: watch::Sender<Arc<Policy>>,
    last_error: Option<String>,
}

impl Watcher {
    /// Runs until every [`Security`] is dropped.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(RECHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.tx.closed() => return,
                _ = tick.tick() => {}
            }
            let path = self.path.clone();
            let Ok(result) = tokio::task::spawn_blocking(move || read(&path)).await else { continue };
            let outcome = result.and_then(|(inputs, config)| {
                if inputs == self.inputs {
                    return Ok(None);
                }
                let policy = build(&self.path, &config, inputs.material.as_ref())?;
                if policy.tls.is_some() != self.tls {
                    let name = |on: bool| if on { "on" } else { "off" };
                    return Err(SecurityError::TlsSwitch {
                        path: self.path.display().to_string(),
                        was: name(self.tls),
                        to: name(policy.tls.is_some()),
                    });
                }
                Ok(Some((inputs, policy)))
            });
            match outcome {
                Ok(None) => self.last_error = None,
                Ok(Some((inputs, policy))) => {
                    tracing::info!(
                        file = %self.path.display(),
                        tls = policy.tls.is_some(),
                        basic_auth_users = policy.users.len(),
                        headers = policy.headers.len(),
                        "web config changed; in force for new connections and requests"
                    );
                    self.inputs = inputs;
                    self.last_error = None;
                    self.tx.send_replace(Arc::new(policy));
                }
                Err(e) => {
                    let msg = e.to_string();
                    if self.last_error.as_deref() != Some(msg.as_str()) {
                        tracing::error!(error = %msg, "web config not applied; the previous one stays in force");
                        self.last_error = Some(msg);
                    }
                }
            }
        }
    }
}

/// Reads and checks the web config file and reads the PEM files it names (blocking).
fn read(path: &Path) -> Result<(Inputs, WebConfig), SecurityError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: shown.clone(), source })?;
    let config = web_config::parse(&shown, path.parent().unwrap_or(Path::new(".")), &text)?;
    let material = match &config.tls {
        Some(t) => Some(Material::read(t).map_err(|source| SecurityError::Tls { path: shown.clone(), source })?),
        None => None,
    };
    Ok((Inputs { text, material }, config))
}

fn build(path: &Path, config: &WebConfig, material: Option<&Material>) -> Result<Policy, SecurityError> {
    let shown = || path.display().to_string();
    let tls = match (&config.tls, material) {
        (Some(settings), Some(m)) => Some(TlsAcceptor::from(
            tls::server_config(settings, m).map_err(|source| SecurityError::Tls { path: shown(), source })?,
        )),
        _ => None,
    };
    let headers = config
        .headers
        .iter()
        .map(|(name, value)| {
            let bad = |msg: String| SecurityError::Header { path: shown(), name: name.clone(), msg };
            Ok((
                HeaderName::try_from(name.as_str()).map_err(|e| bad(e.to_string()))?,
                HeaderValue::try_from(value.as_str()).map_err(|e| bad(e.to_string()))?,
            ))
        })
        .collect::<Result<_, SecurityError>>()?;
    Ok(Policy { tls, users: config.users.clone(), headers })
}
