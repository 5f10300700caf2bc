//! `remote-write`: ingest's request decoding — snappy ([`ingest::decode::decompress`]) and the
//! borrowing protobuf walk ([`ingest::decode::walk`]).
//!
//! Input: a mode byte, then the bytes. Mode bit 0 clear: the bytes are a protobuf payload, which is
//! snappy-compressed and sent through both steps (mutations land in the protobuf, where they reach
//! the walk). Bit 0 set: the bytes are the request body itself (mutations land in the snappy block).
//! Besides never panicking, the walk must agree with prost: every payload prost decodes is walked
//! without error into the same series, labels and samples.
//!
//! Every payload that walks is also appended to a head ([`ingest::convert::append_request_unsynced`]:
//! label checks, series creation, in-order and out-of-order appends, the WAL), which must not call it
//! malformed. Every [`HEAD_RESET_INPUTS`] appended payloads the head is closed and reopened from its WAL (the
//! replay must succeed), then started afresh so that its memory stays bounded.

use ingest::decode;
use ingest::proto::{self, Exemplar, Histogram, Label, MetricMetadata, Sample, TimeSeries, WriteRequest};
use prost::Message;

use super::{scratch_dir, SetupError, Target};

const NAME: &str = "remote-write";

/// Payloads appended to one head before it is replayed and replaced.
const HEAD_RESET_INPUTS: u64 = 1_000;

/// Decompressed-size limit of the fuzzed requests (the server's default is larger; a smaller one
/// keeps iterations fast and still exercises the check).
const MAX_DECOMPRESSED_BYTES: usize = 4 << 20;

pub(crate) struct RemoteWrite {
    buf: Vec<u8>,
    dir: tempfile::TempDir,
    head: Option<std::sync::Arc<tsdb::Head>>,
    appended: u64,
}

fn head_options() -> tsdb::Options {
    tsdb::Options {
        ooo_time_window_ms: 3_600_000,
        creation_grace_period_ms: None,
        wal: Some(wal::Options { segment_size_bytes: 4 << 20, sync: wal::SyncPolicy::Never }),
        ..tsdb::Options::default()
    }
}

impl RemoteWrite {
    pub(crate) fn new() -> Result<RemoteWrite, SetupError> {
        let dir = scratch_dir(NAME)?;
        let head = tsdb::Head::open(&dir.path().join("head"), head_options())
            .map_err(|e| SetupError::Build { target: NAME, msg: e.to_string() })?;
        Ok(RemoteWrite { buf: Vec::new(), dir, head: Some(head), appended: 0 })
    }

    /// Appends a payload that walked without error to the head.
    fn append(&mut self, payload: &[u8]) {
        let Some(head) = &self.head else {
            return;
        };
        let result = ingest::convert::append_request_unsynced(head, payload);
        assert!(!matches!(result, Err(ingest::Error::Protobuf(_))), "a walked payload is malformed for the appender");
        self.appended += 1;
        if self.appended.is_multiple_of(HEAD_RESET_INPUTS) {
            self.reset_head();
        }
    }

    /// Replays the head's WAL into a new head (which must succeed), then starts an empty one.
    fn reset_head(&mut self) {
        let dir = self.dir.path().join("head");
        if let Some(head) = self.head.take() {
            let _ = head.close();
            drop(head);
            let replayed = tsdb::Head::open(&dir, head_options());
            assert!(replayed.is_ok(), "replaying the WAL the head wrote failed: {:?}", replayed.err());
        }
        let _ = std::fs::remove_dir_all(&dir);
        self.head = tsdb::Head::open(&dir, head_options()).ok();
    }
}

fn label(name: &str, value: &str) -> Label {
    Label { name: name.into(), value: value.into() }
}

/// Valid requests: plain series, many samples, empty label values, exemplars, a histogram, metadata.
fn requests() -> Vec<WriteRequest> {
    let series = |name: &str, n: i64| TimeSeries {
        labels: vec![label("__name__", name), label("instance", "a:9100"), label("job", "node")],
        samples: (0..n).map(|i| Sample { value: i as f64 * 1.5, timestamp: 1_700_000_000_000 + i * 15_000 }).collect(),
        ..Default::default()
    };
    vec![
        WriteRequest { timeseries: vec![series("up", 1)], metadata: vec![] },
        WriteRequest { timeseries: (0..5).map(|i| series(&format!("m{i}"), 20)).collect(), metadata: vec![] },
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("__name__", "x"), label("e", "")],
                samples: vec![
                    Sample { value: f64::NAN, timestamp: i64::MIN },
                    Sample { value: f64::INFINITY, timestamp: i64::MAX },
                    Sample { value: -0.0, timestamp: -1 },
                ],
                exemplars: vec![Exemplar { labels: vec![label("trace_id", "abc")], value: 1.0, timestamp: 5 }],
                histograms: vec![Histogram { sum: 3.0, schema: 3, timestamp: 7, ..Default::default() }],
            }],
            metadata: vec![MetricMetadata {
                r#type: proto::MetricType::Counter as i32,
                metric_family_name: "x".into(),
                help: "help".into(),
                unit: "s".into(),
            }],
        },
        WriteRequest::default(),
    ]
}

/// A decoded request in a comparable form: per series, label pairs and samples (t, value bits).
type Decoded = Vec<(Vec<(Vec<u8>, Vec<u8>)>, Vec<(i64, u64)>)>;

fn walk(payload: &[u8]) -> Option<Decoded> {
    let mut labels = Vec::new();
    let mut out: Decoded = Vec::new();
    let summary = decode::walk(payload, &mut labels, |pairs, s| {
        let pairs = pairs.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        let samples: Vec<(i64, u64)> = s.samples().map(|(t, v)| (t, v.to_bits())).collect();
        assert_eq!(samples.len() as u64, s.num_samples, "walked samples differ from the series' count");
        out.push((pairs, samples));
    })
    .ok()?;
    assert_eq!(summary.series, out.len() as u64, "summary counts differ from the series walked");
    Some(out)
}

/// Walks `payload`, checks the walk against prost; true if the walk succeeded.
fn check_against_prost(payload: &[u8]) -> bool {
    let walked = walk(payload);
    let Ok(req) = WriteRequest::decode(payload) else {
        return walked.is_some();
    };
    let expected: Decoded = req
        .timeseries
        .iter()
        .map(|ts| {
            (
                ts.labels.iter().map(|l| (l.name.clone().into_bytes(), l.value.clone().into_bytes())).collect(),
                ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect(),
            )
        })
        .collect();
    assert_eq!(walked.as_ref(), Some(&expected), "walk disagrees with prost on a payload prost decodes");
    true
}

impl Target for RemoteWrite {
    fn name(&self) -> &'static str {
        NAME
    }

    fn corpus(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for req in requests() {
            let payload = req.encode_to_vec();
            let mut as_payload = vec![0u8];
            as_payload.extend_from_slice(&payload);
            out.push(as_payload);
            let mut as_body = vec![1u8];
            as_body.extend_from_slice(&snap::raw::Encoder::new().compress_vec(&payload).unwrap_or_default());
            out.push(as_body);
        }
        out
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let Some((&mode, bytes)) = input.split_first() else {
            return false;
        };
        if mode & 1 == 0 {
            let walked = check_against_prost(bytes);
            if walked {
                self.append(bytes);
            }
            let Ok(body) = snap::raw::Encoder::new().compress_vec(bytes) else {
                return false;
            };
            match decode::decompress(&body, MAX_DECOMPRESSED_BYTES, &mut self.buf) {
                Ok(()) => assert_eq!(self.buf, bytes, "snappy round trip changed the payload"),
                Err(e) => assert!(bytes.len() > MAX_DECOMPRESSED_BYTES, "valid snappy body rejected: {e}"),
            }
            walked
        } else if decode::decompress(bytes, MAX_DECOMPRESSED_BYTES, &mut self.buf).is_ok() {
            let payload = std::mem::take(&mut self.buf);
            let walked = check_against_prost(&payload);
            if walked {
                self.append(&payload);
            }
            self.buf = payload;
            walked
        } else {
            false
        }
    }
}
