//! Self-monitoring: `GET /metrics` in the Prometheus text format, rendered by `prometheus-client`.
//!
//! Components keep their own counters (the head's `HeadStats`, the WAL's fsync histogram, the
//! ingest crate's `IngestMetrics`); a [`Collector`] reads them at scrape time. HTTP request counts and
//! durations are recorded here by a middleware, labelled by route and status code. The `process_*`
//! metrics come from [`crate::process`].
//!
//! `prometheus-client` writes OpenMetrics; `/metrics` answers Prometheus's text format 0.0.4, which
//! names a counter family with its `_total` suffix in `# HELP`/`# TYPE` and has no `# EOF`
//! ([`to_text_format`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::http::ConnectionStats;

/// Everything `/metrics` renders.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<Vec<(String, String)>, Counter>,
    http_duration: Family<Vec<(String, String)>, Histogram>,
}

/// Reads the storage and ingest counters at scrape time.
struct StorageCollector {
    db: Arc<tsdb::Db>,
    ingest: Arc<ingest::IngestMetrics>,
    connections: Arc<ConnectionStats>,
    replay_seconds: f64,
}

impl std::fmt::Debug for StorageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageCollector").field("dir", &self.db.dir()).finish_non_exhaustive()
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// The metadata and exemplar stores the remote-write receiver fills.
#[derive(Debug)]
pub struct ReceiverStoresCollector {
    pub metadata: Arc<tsdb::metadata::MetadataStore>,
    pub exemplars: Arc<tsdb::exemplars::ExemplarStore>,
}

impl Collector for ReceiverStoresCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = &self.metadata;
        gauge(&mut e, "strata_metadata_families", "Metric families with metadata held.", m.len() as f64)?;
        counter(
            &mut e,
            "strata_metadata_dropped",
            "Metadata entries dropped (not UTF-8, over-long names, or over the family limit).",
            m.dropped(),
        )?;
        let x = &self.exemplars;
        let (appended, refused) = x.counts();
        gauge(&mut e, "strata_exemplars_in_storage", "Exemplars held in memory.", x.len() as f64)?;
        gauge(
            &mut e,
            "strata_exemplars_max",
            "Most exemplars held (--storage.exemplars.exemplars-limit).",
            x.capacity() as f64,
        )?;
        counter(&mut e, "strata_exemplars_appended", "Exemplars stored.", appended)?;
        counter(
            &mut e,
            "strata_exemplars_refused",
            "Exemplars not stored (out of order, duplicate, labels too long, or storage off).",
            refused,
        )
    }
}

/// The remote-read endpoint's counters.
#[derive(Debug)]
pub struct RemoteReadCollector(pub Arc<query::api::remote_read::ReadMetrics>);

impl Collector for RemoteReadCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        gauge(
            &mut e,
            "strata_remote_read_queries",
            "Remote-read requests being served or waiting for their turn.",
            self.0.queries() as f64,
        )?;
        counter(
            &mut e,
            "strata_remote_read_cancelled",
            "Remote-read requests whose client went away before the answer was complete.",
            self.0.cancelled(),
        )
    }
}

impl Collector for StorageCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let head = self.db.head();
        let st = head.stats();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        {
            let mut m = e.encode_descriptor(
                "strata_head_samples_appended",
                "Samples stored in the head, by placement.",
                None,
                MetricType::Counter,
            )?;
            for (placement, v) in
                [("in_order", load(&st.samples_in_order)), ("out_of_order", load(&st.samples_out_of_order))]
            {
                ConstCounter::new(v).encode(m.encode_family(&[("placement", placement)])?)?;
            }
        }
        counter(
            &mut e,
            "strata_head_samples_deduplicated",
            "Samples identical to the series' newest, to a stored late sample or to one queued before in the request: accepted, stored once.",
            load(&st.samples_deduplicated),
        )?;
        counter(
            &mut e,
            "strata_head_samples_conflicting",
            "Accepted samples not stored because a different late or newest value was stored first at their timestamp.",
            load(&st.commit_conflicts),
        )?;
        counter(
            &mut e,
            "strata_head_samples_shadowed",
            "Late samples left out when the head was compacted because an in-order sample at their timestamp has another value.",
            load(&st.samples_shadowed),
        )?;
        {
            let mut m = e.encode_descriptor(
                "strata_head_samples_rejected",
                "Samples rejected by the head, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, v) in [
                ("out_of_bounds", load(&st.rejected_out_of_bounds)),
                ("out_of_order", load(&st.rejected_out_of_order)),
                ("too_old", load(&st.rejected_too_old)),
                ("duplicate", load(&st.rejected_duplicate)),
                ("too_far_in_future", load(&st.rejected_too_far_in_future)),
                ("invalid", load(&st.rejected_invalid)),
            ] {
                ConstCounter::new(v).encode(m.encode_family(&[("reason", reason)])?)?;
            }
        }
        let hs = &st.histograms;
        {
            let mut m = e.encode_descriptor(
                "strata_head_histograms_appended",
                "Native histogram samples stored in the head, by placement.",
                None,
                MetricType::Counter,
            )?;
            for (placement, v) in [("in_order", load(&hs.in_order)), ("out_of_order", load(&hs.out_of_order))] {
                ConstCounter::new(v).encode(m.encode_family(&[("placement", placement)])?)?;
            }
        }
        counter(
            &mut e,
            "strata_head_histograms_deduplicated",
            "Native histogram samples identical to a stored or queued one: accepted, stored once.",
            load(&hs.deduplicated),
        )?;
        counter(
            &mut e,
            "strata_head_histograms_conflicting",
            "Accepted native histogram samples not stored because a different one was stored first at their timestamp.",
            load(&hs.conflicts),
        )?;
        {
            let mut m = e.encode_descriptor(
                "strata_head_histograms_rejected",
                "Native histogram samples rejected by the head, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, v) in [
                ("out_of_bounds", load(&hs.rejected_out_of_bounds)),
                ("out_of_order", load(&hs.rejected_out_of_order)),
                ("too_old", load(&hs.rejected_too_old)),
                ("duplicate", load(&hs.rejected_duplicate)),
                ("too_far_in_future", load(&hs.rejected_too_far_in_future)),
                ("invalid", load(&hs.rejected_invalid)),
            ] {
                ConstCounter::new(v).encode(m.encode_family(&[("reason", reason)])?)?;
            }
        }
        counter(&mut e, "strata_head_series_created", "Series created in the head.", load(&st.series_created))?;
        counter(
            &mut e,
            "strata_head_series_removed",
            "Series removed from the head after their samples went into blocks.",
            load(&st.series_removed),
        )?;
        gauge(&mut e, "strata_head_series", "Series in the head.", head.num_series() as f64)?;
        gauge(
            &mut e,
            "strata_head_out_of_order_time_window_seconds",
            "The out-of-order time window in effect: how far behind its series' newest sample a sample is accepted.",
            head.ooo_time_window_ms() as f64 / 1000.0,
        )?;
        gauge(
            &mut e,
            "strata_head_chunks",
            "Chunks in the head (in-order and out-of-order).",
            head.num_chunks() as f64,
        )?;
        gauge(&mut e, "strata_head_min_time_seconds", "Oldest sample in the head.", time_gauge(head.min_time()))?;
        gauge(&mut e, "strata_head_max_time_seconds", "Newest sample in the head.", time_gauge(head.max_time()))?;
        let blocks = self.db.blocks();
        gauge(&mut e, "strata_blocks_loaded", "Persisted blocks.", blocks.len() as f64)?;
        gauge(
            &mut e,
            "strata_blocks_awaiting_upload",
            "Blocks the last compaction left alone because the delay-compact file does not list them as uploaded (a level-1 block and every block created after it).",
            self.db.blocks_awaiting_upload() as f64,
        )?;
        // Prometheus's own names and values (whole seconds, from ms by integer division; an empty
        // head reports ±MaxInt64/1000), which the Thanos sidecar reads.
        let lowest = blocks.first().map_or_else(|| head.min_time(), |b| b.meta().min_time);
        gauge(
            &mut e,
            "prometheus_tsdb_lowest_timestamp_seconds",
            "Lowest timestamp value stored in the database.",
            (lowest / 1000) as f64,
        )?;
        gauge(
            &mut e,
            "prometheus_tsdb_head_min_time_seconds",
            "Minimum time bound of the head block.",
            (head.min_time() / 1000) as f64,
        )?;
        gauge(
            &mut e,
            "prometheus_tsdb_head_max_time_seconds",
            "Maximum timestamp of the head block.",
            (head.max_time() / 1000) as f64,
        )?;
        counter(
            &mut e,
            "strata_storage_read_errors",
            "Reads that failed: a block's index or chunks, a head chunk file, an undecodable chunk. Each failed its query, or was left out of a partial_response answer with a warning.",
            tsdb::querier::read_errors_total(),
        )?;
        gauge(
            &mut e,
            "strata_blocks_quarantined",
            "Blocks found damaged (unreadable, or a checksum mismatch in the index or a chunk) and set aside as <ulid>.corrupted at startup.",
            self.db.quarantined_blocks() as f64,
        )?;
        gauge(&mut e, "strata_wal_replay_duration_seconds", "Time the last WAL replay took.", self.replay_seconds)?;
        if let Some(wal) = head.wal() {
            counter(&mut e, "strata_wal_written_bytes", "Bytes written to the WAL since start.", wal.bytes_written())?;
            gauge(
                &mut e,
                "strata_wal_writable",
                "1 while the WAL accepts writes, 0 after a failed write or fsync until it recovers.",
                if wal.failure().is_none() { 1.0 } else { 0.0 },
            )?;
            counter(
                &mut e,
                "strata_wal_failures",
                "Failed WAL writes, fsyncs and recovery attempts since start.",
                wal.failures(),
            )?;
            let h = wal.fsync_durations();
            // prometheus-client wants per-bucket counts; the snapshot is cumulative.
            let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(h.buckets.len() + 1);
            let mut prev = 0;
            for &(le, cum) in &h.buckets {
                buckets.push((le, cum.saturating_sub(prev)));
                prev = cum;
            }
            buckets.push((f64::INFINITY, h.count.saturating_sub(prev)));
            let mut m = e.encode_descriptor(
                "strata_wal_fsync_duration_seconds",
                "Duration of WAL fsync rounds (one round covers every writer waiting: group commit).",
                None,
                MetricType::Histogram,
            )?;
            m.encode_histogram::<Vec<(String, String)>>(h.sum_seconds, h.count, &buckets, None)?;
        }
        let s = self.ingest.snapshot();
        counter(&mut e, "strata_remote_write_requests", "Remote-write requests received.", s.requests)?;
        counter(
            &mut e,
            "strata_remote_write_received_bytes",
            "Compressed remote-write bytes received.",
            s.bytes_received,
        )?;
        counter(
            &mut e,
            "strata_remote_write_samples_received",
            "Float samples received by remote-write.",
            s.samples_received,
        )?;
        counter(
            &mut e,
            "strata_remote_write_samples_accepted",
            "Float samples accepted by remote-write.",
            s.samples_accepted,
        )?;
        counter(
            &mut e,
            "strata_remote_write_histograms_received",
            "Native histogram samples received by remote-write.",
            s.histograms_received,
        )?;
        counter(
            &mut e,
            "strata_remote_write_histograms_accepted",
            "Native histogram samples accepted by remote-write.",
            s.histograms_accepted,
        )?;
        {
            let mut m = e.encode_descriptor(
                "strata_remote_write_samples_rejected",
                "Samples (and native histograms) rejected by remote-write, by reason.",
                None,
                MetricType::Counter,
            )?;
            for reason in ingest::Reason::ALL {
                let v = s.rejected.get(reason.index()).copied().unwrap_or(0);
                ConstCounter::new(v).encode(m.encode_family(&[("reason", reason.as_str())])?)?;
            }
        }
        counter(
            &mut e,
            "strata_remote_write_exemplars_received",
            "Exemplars received by remote-write.",
            s.exemplars_received,
        )?;
        counter(
            &mut e,
            "strata_remote_write_metadata_received",
            "Metric metadata entries received (1.0 metadata entries, 2.0 series carrying metadata).",
            s.metadata_received,
        )?;
        encode_process(&mut e, &crate::process::ProcessStats::read())?;
        let c = &self.connections;
        gauge(&mut e, "strata_http_connections_open", "HTTP connections open.", c.open() as f64)?;
        counter(&mut e, "strata_http_connections", "HTTP connections accepted.", c.accepted())?;
        counter(
            &mut e,
            "strata_http_accept_errors",
            "Failed accepts of HTTP connections (e.g. out of file descriptors).",
            c.accept_errors(),
        )?;
        {
            let mut m = e.encode_descriptor(
                "strata_http_connections_closed",
                "HTTP connections closed, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, v) in c.closed() {
                ConstCounter::new(v).encode(m.encode_family(&[("reason", reason.as_str())])?)?;
            }
        }
        Ok(())
    }
}

fn encode_process(e: &mut DescriptorEncoder, p: &crate::process::ProcessStats) -> std::fmt::Result {
    if let Some(v) = p.cpu_seconds {
        let c = ConstCounter::new(v);
        c.encode(e.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            c.metric_type(),
        )?)?;
    }
    for (name, help, v) in [
        ("process_open_fds", "Number of open file descriptors.", p.open_fds),
        ("process_max_fds", "Maximum number of open file descriptors.", p.max_fds),
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", p.virtual_memory_bytes),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", p.resident_memory_bytes),
        ("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", p.start_time_seconds),
        ("process_threads", "Number of OS threads in the process.", p.threads),
    ] {
        if let Some(v) = v {
            gauge(e, name, help, v)?;
        }
    }
    Ok(())
}

/// Rewrites `prometheus-client`'s OpenMetrics output into the text format 0.0.4: a counter family's
/// `# HELP` and `# TYPE` lines carry the `_total` name of its samples, and the `# EOF` line goes.
fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .filter(|name| !name.ends_with("_total"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + counters.len() * 12);
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn time_gauge(ms: i64) -> f64 {
    if ms == i64::MIN || ms == i64::MAX {
        f64::NAN
    } else {
        ms as f64 / 1000.0
    }
}

impl Metrics {
    pub fn new(
        db: Arc<tsdb::Db>,
        ingest: Arc<ingest::IngestMetrics>,
        connections: Arc<ConnectionStats>,
        replay_seconds: f64,
    ) -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<Vec<(String, String)>, Counter>::default();
        let http_duration = Family::<Vec<(String, String)>, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0].into_iter())
        });
        registry.register("strata_http_requests", "HTTP requests by handler and status code", http_requests.clone());
        registry.register(
            "strata_http_request_duration_seconds",
            "HTTP request durations by handler (query handlers measure query evaluation)",
            http_duration.clone(),
        );
        registry.register_collector(Box::new(StorageCollector { db, ingest, connections, replay_seconds }));
        Metrics { registry, http_requests, http_duration }
    }

    /// Adds a collector owned elsewhere (the configuration reload's outcome).
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(to_text_format(&out))
    }
}

/// `GET /metrics`.
pub async fn handler(State(m): State<Arc<Metrics>>) -> Response {
    match m.render() {
        Ok(body) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics").into_response(),
    }
}

/// Middleware recording request counts and durations by matched route and status.
pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let resp = next.run(req).await;
    let code = resp.status().as_u16().to_string();
    m.http_requests.get_or_create(&vec![("handler".to_owned(), route.clone()), ("code".to_owned(), code)]).inc();
    m.http_duration.get_or_create(&vec![("handler".to_owned(), route)]).observe(started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_are_named_with_total_and_eof_is_dropped() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 3\n\
                  # HELP b Gauge.\n# TYPE b gauge\nb 1\n# EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n\
             # HELP b Gauge.\n# TYPE b gauge\nb 1\n"
        );
    }
}
