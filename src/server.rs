//! Wiring: the HTTP listener, readiness gating during WAL replay, the ingest and query routers, the
//! lifecycle endpoints and SIGHUP reloads, and ordered shutdown (stop accepting → finish or cut
//! requests within the grace period → sync and close the WAL).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceExt;

use crate::config::Config;
use crate::http::ConnectionStats;
use crate::metrics::{self, Metrics};
use crate::reload::Reloader;

/// Largest form body of a query API request (a long PromQL expression or many `match[]`s).
pub const QUERY_MAX_BODY_BYTES: usize = 2 << 20;

/// Set once the WAL is replayed: the router serving everything but the health endpoints, and the
/// database (for readiness).
type Ready = Arc<OnceLock<(Router, Arc<tsdb::Db>)>>;

/// Serves until SIGTERM/SIGINT. `status` is what the status endpoints report; whoever holds it may
/// update its config part (a reload).
pub async fn run(mut cfg: Config, status: Arc<query::status::ServerStatus>) -> anyhow::Result<()> {
    let listener = listen(cfg.listen_address).with_context(|| format!("binding {}", cfg.listen_address))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let web = cfg.web.take();
    let tls = web.as_ref().is_some_and(|w| w.tls());
    if let Some(w) = &web {
        tracing::info!(settings = %w.summary(), "web config in force");
    }
    let bcrypt_concurrency = std::thread::available_parallelism().map_or(1, |n| n.get() / 2);
    let auth = crate::http::auth::Authenticator::new(bcrypt_concurrency)
        .map_err(|_| anyhow::anyhow!("cannot draw a random key for the password cache"))?;
    let (security, watcher) = crate::http::security::Security::new(web, auth);
    let security = Arc::new(security);
    if let Some(w) = watcher {
        tokio::spawn(w.run());
    }
    tracing::info!(address = %addr, tls, data_dir = %cfg.data_dir.display(), "listening");

    // Installed before the WAL replay so that a SIGHUP then does not end the process; handled once
    // the storage is open.
    let hangups = hangup_signals();
    let quit = Arc::new(tokio::sync::Notify::new());
    let ready: Ready = Arc::new(OnceLock::new());
    let lifecycle = Lifecycle { enabled: cfg.enable_lifecycle, quit: Arc::clone(&quit) };
    let app = Router::new()
        .route("/-/healthy", get(|| async { "Strata is Healthy.\n" }))
        .route("/-/ready", get(ready_handler))
        .route("/-/quit", post(quit_handler).put(quit_handler).with_state(lifecycle.clone()))
        .fallback(forward)
        .with_state(Arc::clone(&ready));
    let connections = Arc::new(ConnectionStats::default());
    let server = tokio::spawn(crate::http::serve(
        listener,
        app,
        cfg.http.clone(),
        Arc::clone(&security),
        Arc::clone(&connections),
        shutdown_signal(quit),
    ));

    let started = Instant::now();
    let data_dir = cfg.data_dir.clone();
    // The head writes committed exemplars to the WAL and replays them into the store at startup.
    let exemplars = Arc::new(tsdb::exemplars::ExemplarStore::new(cfg.exemplars_limit));
    let mut db_opts = cfg.db.clone();
    db_opts.head.exemplars = Some(Arc::clone(&exemplars));
    let db = tokio::task::spawn_blocking(move || tsdb::Db::open(&data_dir, db_opts))
        .await
        .context("WAL replay task failed")?
        .with_context(|| format!("opening the TSDB in {}", cfg.data_dir.display()))?;
    let replay_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        series = db.head().num_series(),
        blocks = db.blocks().len(),
        duration_secs = replay_seconds,
        out_of_order_time_window_ms = cfg.db.head.ooo_time_window_ms,
        "TSDB ready"
    );
    db.start_background();
    let metadata_dir = cfg.data_dir.clone();
    let metadata = tokio::task::spawn_blocking(move || tsdb::metadata::MetadataStore::open(&metadata_dir))
        .await
        .context("metadata load task failed")?
        .context("loading the metric metadata")?;
    let metadata = Arc::new(metadata);
    metadata.start_flusher();
    let ingest_state = ingest::IngestState::new(Arc::clone(db.head()), cfg.ingest)
        .context("cannot start the ingest threads")?
        .with_metadata(Arc::clone(&metadata))
        .with_created_timestamp_zero_ingestion(cfg.created_timestamp_zero_ingestion);
    let ready_db = Arc::clone(&db);
    let reloader = Arc::new(Reloader::new(Arc::clone(db.head()), cfg.reloadable.clone(), Arc::clone(&status)));
    if let Some(hangups) = hangups {
        tokio::spawn(reload_on_hangup(hangups, Arc::clone(&reloader)));
    }
    let labels_source = Arc::clone(&reloader);
    let external_labels: query::api::remote_read::ExternalLabels = Arc::new(move || labels_source.external_labels());
    let read_state = query::api::remote_read::RemoteReadState::new(Arc::clone(&db), cfg.remote_read, external_labels);
    let mut metrics = Metrics::new(Arc::clone(&db), Arc::clone(ingest_state.metrics()), connections, replay_seconds);
    metrics.register_collector(reloader.collector());
    metrics.register_collector(security.collector());
    metrics.register_collector(Box::new(crate::metrics::ReceiverStoresCollector {
        metadata: Arc::clone(&metadata),
        exemplars: Arc::clone(&exemplars),
    }));
    let shipper = cfg.upload.take().map(|(bucket, interval)| {
        let shipper = crate::shipper::Shipper::new(bucket, Arc::clone(&db), Arc::clone(&reloader), interval);
        metrics.register_collector(shipper.collector());
        tokio::spawn(shipper.run())
    });
    metrics.register_collector(Box::new(metrics::RemoteReadCollector(Arc::clone(read_state.metrics()))));
    let metrics = Arc::new(metrics);
    // The concurrency limits count requests whose bodies are already read (`http` reads them first):
    // a slow sender never holds a permit.
    let api = ingest::router(ingest_state)
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(cfg.max_concurrent_writes))
        .merge(
            query::router(query::QueryState { db: Arc::clone(&db), opts: cfg.engine })
                .layer(DefaultBodyLimit::max(QUERY_MAX_BODY_BYTES))
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(cfg.max_concurrent_queries)),
        )
        .merge(query::api::metadata::router(Arc::clone(&metadata)))
        .merge(query::api::exemplars::router(exemplars))
        .merge(query::api::remote_read::router(read_state))
        .merge(crate::admin::router(Arc::clone(&db), cfg.enable_admin_api))
        .merge(query::status::router(query::status::StatusState { db: Arc::clone(&db), server: status }))
        .route("/metrics", get(metrics::handler).with_state(Arc::clone(&metrics)))
        .merge(crate::ui::router(cfg.page_title.as_deref()))
        .route("/-/reload", post(reload_handler).put(reload_handler).with_state((lifecycle, Arc::clone(&reloader))))
        .route_layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
        .layer(axum::middleware::from_fn(crate::http::gzip::compress));
    // Around the whole router (not each route), so that a preflight `OPTIONS` answer is not given the
    // `Allow` header of a method the route lacks.
    let cors = axum::middleware::from_fn_with_state(Arc::new(cfg.cors.clone()), crate::cors::layer);
    let api = Router::new().fallback_service(tower::Layer::layer(&cors, api));
    // Only this task sets it; a failure would mean a second initialisation, which cannot happen.
    let _ = ready.set((api, ready_db));

    server.await.context("HTTP server task failed")?;
    if let Some(shipper) = shipper {
        // An upload cut short here is redone after the restart: the state file lists a block only
        // once its meta.json is in the bucket.
        shipper.abort();
        let _ = shipper.await;
    }
    tracing::info!("HTTP server stopped; syncing the WAL");
    let closed = tokio::task::spawn_blocking(move || {
        if let Err(e) = metadata.close() {
            tracing::error!(error = %e, "cannot save the metric metadata");
        }
        db.close()
    })
    .await
    .context("WAL close task failed")?;
    closed.context("closing the TSDB")?;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Connections the kernel queues for `accept` (it caps this at `net.core.somaxconn`). Beyond
/// `--web.max-connections` new connections wait here. `TcpListener::bind` asks for 128, like the
/// standard library; a full queue drops connection attempts, which clients retry only after a second
/// or more (with 1,000 clients connecting at once, some waited 11 s before their first byte).
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// 200 once the WAL is replayed and while it accepts writes; 503 with the reason otherwise.
async fn ready_handler(State(ready): State<Ready>) -> Response {
    let Some((_, db)) = ready.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: replaying the WAL\n").into_response();
    };
    match db.head().wal().and_then(|w| w.failure()) {
        None => (StatusCode::OK, "Strata is Ready.\n").into_response(),
        Some(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("Service Unavailable: the WAL cannot accept writes: {reason}\n"))
                .into_response()
        }
    }
}

/// Routes a request to the API once replay is done; 503 before.
async fn forward(State(ready): State<Ready>, req: Request) -> Response {
    match ready.get() {
        Some((api, _)) => match api.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
        None => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response(),
    }
}

/// What the lifecycle endpoints need.
#[derive(Clone)]
struct Lifecycle {
    /// `--web.enable-lifecycle`.
    enabled: bool,
    /// Notified by `POST /-/quit`; ends the server like SIGTERM.
    quit: Arc<tokio::sync::Notify>,
}

fn lifecycle_disabled() -> Response {
    (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.").into_response()
}

/// `POST /-/quit`: graceful shutdown, like SIGTERM (with `--web.enable-lifecycle` only).
async fn quit_handler(State(lifecycle): State<Lifecycle>) -> Response {
    if !lifecycle.enabled {
        return lifecycle_disabled();
    }
    tracing::info!("shutdown requested by POST /-/quit");
    lifecycle.quit.notify_one();
    (StatusCode::OK, "Requesting termination... Goodbye!").into_response()
}

/// `POST /-/reload`: reloads the config file; 500 with the reason if the new one is refused (with
/// `--web.enable-lifecycle` only).
async fn reload_handler(State((lifecycle, reloader)): State<(Lifecycle, Arc<Reloader>)>) -> Response {
    if !lifecycle.enabled {
        return lifecycle_disabled();
    }
    match reloader.reload().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("failed to reload config: {e}")).into_response(),
    }
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

/// Listens for SIGHUP; `None` (logged) if that is not possible.
fn hangup_signals() -> Option<Hangups> {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; reload with POST /-/reload");
            None
        }
    }
    #[cfg(not(unix))]
    None
}

async fn reload_on_hangup(mut hangups: Hangups, reloader: Arc<Reloader>) {
    #[cfg(unix)]
    while hangups.recv().await.is_some() {
        tracing::info!("received SIGHUP, reloading the configuration");
        // A failure is logged and counted by the reloader.
        let _ = reloader.reload().await;
    }
    #[cfg(not(unix))]
    let _ = (hangups, reloader);
}

async fn shutdown_signal(quit: Arc<tokio::sync::Notify>) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT, shutting down"),
        () = term => tracing::info!("received SIGTERM, shutting down"),
        () = quit.notified() => tracing::info!("shutting down on request"),
    }
}
