//! A scrape target serving one native histogram in Prometheus's protobuf exposition format
//! (`io.prometheus.client.MetricFamily`, varint-length-delimited), for tests where a real Prometheus
//! scrapes native histograms. Scrape `n` (from 1) serves [`NativeHistogramTarget::histogram`]`(n)`.
//! The server thread stops when the target is dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prost::Message;

/// The exposition format's content type Prometheus asks for with native histograms enabled.
const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

#[derive(Clone, PartialEq, prost::Message)]
struct MetricFamily {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    help: String,
    #[prost(int32, tag = "3")]
    r#type: i32,
    #[prost(message, repeated, tag = "4")]
    metric: Vec<Metric>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Metric {
    #[prost(message, repeated, tag = "1")]
    label: Vec<LabelPair>,
    #[prost(message, optional, tag = "7")]
    histogram: Option<Histogram>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LabelPair {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Histogram {
    #[prost(uint64, tag = "1")]
    sample_count: u64,
    #[prost(double, tag = "2")]
    sample_sum: f64,
    #[prost(sint32, tag = "5")]
    schema: i32,
    #[prost(double, tag = "6")]
    zero_threshold: f64,
    #[prost(uint64, tag = "7")]
    zero_count: u64,
    #[prost(message, repeated, tag = "9")]
    negative_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "10")]
    negative_delta: Vec<i64>,
    #[prost(message, repeated, tag = "12")]
    positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "13")]
    positive_delta: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BucketSpan {
    #[prost(sint32, tag = "1")]
    offset: i32,
    #[prost(uint32, tag = "2")]
    length: u32,
}

/// What scrape `n` serves: schema 0, zero bucket `[-0.001, 0.001]` holding `n`, positive buckets
/// `(0.5, 1]` = `n` and `(1, 2]` = `n + 1`, negative bucket `[-2, -1)` = `n`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expected {
    pub count: u64,
    pub sum: f64,
    pub zero: u64,
    pub positive: [u64; 2],
    pub negative: u64,
}

/// A running target; see the module doc.
pub struct NativeHistogramTarget {
    pub addr: String,
    scrapes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NativeHistogramTarget {
    /// The metric family's name.
    pub const NAME: &'static str = "test_native_histogram_seconds";

    /// Starts serving on a free port of 127.0.0.1.
    pub fn start() -> NativeHistogramTarget {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (scrapes, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (s, st) = (Arc::clone(&scrapes), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => serve(conn, &s),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        NativeHistogramTarget { addr, scrapes, stop, thread: Some(thread) }
    }

    /// Scrapes served so far.
    pub fn scrapes(&self) -> u64 {
        self.scrapes.load(Ordering::Relaxed)
    }

    /// The histogram of scrape `n`.
    pub fn histogram(n: u64) -> Expected {
        Expected { count: 4 * n + 1, sum: 2.5 * n as f64, zero: n, positive: [n, n + 1], negative: n }
    }
}

impl Drop for NativeHistogramTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one HTTP request on `conn` with the next scrape's body (one request per connection).
fn serve(mut conn: TcpStream, scrapes: &AtomicU64) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 64 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let n = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
    let e = NativeHistogramTarget::histogram(n);
    let family = MetricFamily {
        name: NativeHistogramTarget::NAME.to_owned(),
        help: "A native histogram for tests.".to_owned(),
        r#type: 4, // HISTOGRAM
        metric: vec![Metric {
            label: vec![LabelPair { name: "path".to_owned(), value: "/api".to_owned() }],
            histogram: Some(Histogram {
                sample_count: e.count,
                sample_sum: e.sum,
                schema: 0,
                zero_threshold: 0.001,
                zero_count: e.zero,
                // Index 1 is [-2, -1) on the negative side.
                negative_span: vec![BucketSpan { offset: 1, length: 1 }],
                negative_delta: vec![e.negative as i64],
                // Indexes 0 and 1: (0.5, 1] and (1, 2].
                positive_span: vec![BucketSpan { offset: 0, length: 2 }],
                positive_delta: vec![e.positive[0] as i64, e.positive[1] as i64 - e.positive[0] as i64],
            }),
        }],
    };
    let body = family.encode_length_delimited_to_vec();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body);
}
