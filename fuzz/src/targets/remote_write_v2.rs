//! `remote-write-v2`: the remote-write 2.0 walk ([`ingest::decode::v2::walk`]) and its appender path
//! ([`ingest::convert_v2::append_request_unsynced`], with metadata and exemplar storage on).
//!
//! Input: a protobuf payload (an `io.prometheus.write.v2.Request`). Besides never panicking, the walk
//! must agree with prost: every payload prost decodes whose `symbols[0]` is empty is walked without
//! error into the same series (label references resolved; a series with a reference out of range or
//! an odd number of references flagged, not failed) and samples. Every payload that walks is appended
//! to a memory-only head, which must not call it malformed; the head is replaced every
//! [`HEAD_RESET_INPUTS`] payloads so its memory stays bounded.

use ingest::decode::v2;
use ingest::proto_v2::{self as pv2, SymbolTable};
use prost::Message;
use std::sync::Arc;
use tsdb::exemplars::ExemplarStore;
use tsdb::metadata::MetadataStore;

use super::{scratch_dir, SetupError, Target};

const NAME: &str = "remote-write-v2";

/// Payloads appended to one head before it is replaced.
const HEAD_RESET_INPUTS: u64 = 1_000;

pub(crate) struct RemoteWriteV2 {
    dir: tempfile::TempDir,
    head: std::sync::Arc<tsdb::Head>,
    metadata: MetadataStore,
    appended: u64,
}

/// A head without a WAL in `dir/head` (emptied first).
fn new_head(dir: &std::path::Path) -> Result<std::sync::Arc<tsdb::Head>, SetupError> {
    let dir = dir.join("head");
    let _ = std::fs::remove_dir_all(&dir);
    let opts = tsdb::Options {
        ooo_time_window_ms: 3_600_000,
        creation_grace_period_ms: None,
        wal: None,
        exemplars: Some(Arc::new(ExemplarStore::new(1000))),
        ..Default::default()
    };
    tsdb::Head::open(&dir, opts).map_err(|e| SetupError::Build { target: NAME, msg: e.to_string() })
}

impl RemoteWriteV2 {
    pub(crate) fn new() -> Result<RemoteWriteV2, SetupError> {
        let dir = scratch_dir(NAME)?;
        Ok(RemoteWriteV2 { head: new_head(dir.path())?, dir, metadata: MetadataStore::in_memory(), appended: 0 })
    }
}

/// Per series: label pairs, samples (t, value bits), and whether it is flagged invalid.
type Decoded = Vec<(Vec<(Vec<u8>, Vec<u8>)>, Vec<(i64, u64)>, bool)>;

fn walk(payload: &[u8]) -> Option<Decoded> {
    let (mut symbols, mut labels) = (Vec::new(), Vec::new());
    let mut out: Decoded = Vec::new();
    v2::walk(payload, &mut symbols, &mut labels, |pairs, s, _| {
        let pairs = pairs.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        let samples: Vec<(i64, u64)> = s.view.samples().map(|(t, v)| (t, v.to_bits())).collect();
        assert_eq!(samples.len() as u64, s.view.num_samples, "walked samples differ from the series' count");
        out.push((pairs, samples, s.invalid.is_some()));
    })
    .ok()?;
    Some(out)
}

/// What the walk must yield for a request prost decoded.
fn expected(req: &pv2::Request) -> Decoded {
    let sym = |r: u32| req.symbols.get(r as usize).map(|s| s.clone().into_bytes());
    req.timeseries
        .iter()
        .map(|ts| {
            let in_range = ts.labels_refs.iter().all(|&r| sym(r).is_some())
                && ts.exemplars.iter().flat_map(|e| &e.labels_refs).all(|&r| sym(r).is_some())
                && ts.metadata.is_none_or(|m| {
                    (m.r#type == 0 && m.help_ref == 0 && m.unit_ref == 0)
                        || (sym(m.help_ref).is_some() && sym(m.unit_ref).is_some())
                });
            let invalid = !in_range || ts.labels_refs.len() % 2 == 1;
            let pairs = ts
                .labels_refs
                .chunks_exact(2)
                .map(|p| (sym(p[0]).unwrap_or_default(), sym(p[1]).unwrap_or_default()))
                .collect();
            (pairs, ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect(), invalid)
        })
        .collect()
}

fn check_against_prost(payload: &[u8]) -> bool {
    let walked = walk(payload);
    let Ok(req) = pv2::Request::decode(payload) else {
        return walked.is_some();
    };
    if req.symbols.first().is_some_and(|s| !s.is_empty()) {
        assert!(walked.is_none(), "a request whose symbols[0] is not empty was walked");
        return false;
    }
    let mut walked = walked.unwrap_or_else(|| panic!("the walk refused a payload prost decodes"));
    let mut want = expected(&req);
    // An invalid series' labels are unspecified (resolved up to the bad reference).
    for s in walked.iter_mut().chain(want.iter_mut()) {
        if s.2 {
            s.0.clear();
        }
    }
    assert_eq!(walked, want, "walk disagrees with prost on a payload prost decodes");
    true
}

fn requests() -> Vec<pv2::Request> {
    let mut t = SymbolTable::default();
    let series = |t: &mut SymbolTable, name: &str, n: i64| pv2::TimeSeries {
        labels_refs: t.label_refs([("__name__", name), ("job", "node"), ("instance", "a:9100")]),
        samples: (0..n)
            .map(|i| pv2::Sample { value: i as f64, timestamp: 1_700_000_000_000 + i * 15_000, start_timestamp: 0 })
            .collect(),
        ..Default::default()
    };
    let mut a = series(&mut t, "up", 3);
    a.metadata = Some(pv2::Metadata { r#type: 1, help_ref: t.intern("Help."), unit_ref: t.intern("seconds") });
    a.exemplars = vec![pv2::Exemplar {
        labels_refs: t.label_refs([("trace_id", "x")]),
        value: 1.0,
        timestamp: 1_700_000_000_000,
    }];
    a.created_timestamp = 1_699_999_999_000;
    let mut b = series(&mut t, "hist", 0);
    b.histograms = vec![pv2::Histogram {
        count: Some(ingest::proto::histogram::Count::CountInt(2)),
        zero_count: Some(ingest::proto::histogram::ZeroCount::ZeroCountInt(1)),
        positive_spans: vec![ingest::proto::BucketSpan { offset: 0, length: 1 }],
        positive_deltas: vec![1],
        sum: 1.0,
        schema: 1,
        timestamp: 5,
        ..Default::default()
    }];
    let mut c = series(&mut t, "bad", 1);
    c.labels_refs.push(1);
    vec![pv2::Request { timeseries: vec![a, b, c], symbols: t.into_symbols() }, pv2::Request::default()]
}

impl Target for RemoteWriteV2 {
    fn name(&self) -> &'static str {
        NAME
    }

    fn corpus(&mut self) -> Vec<Vec<u8>> {
        requests().iter().map(Message::encode_to_vec).collect()
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let walked = check_against_prost(input);
        if walked {
            let opts =
                ingest::convert_v2::Options { created_timestamp_zero_ingestion: true, metadata: Some(&self.metadata) };
            let result = ingest::convert_v2::append_request_unsynced(&self.head, input, opts);
            assert!(
                !matches!(result, Err(ingest::Error::ProtobufV2(_))),
                "a walked payload is malformed for the appender"
            );
            self.appended += 1;
            if self.appended.is_multiple_of(HEAD_RESET_INPUTS) {
                let _ = self.head.close();
                if let Ok(h) = new_head(self.dir.path()) {
                    self.head = h;
                }
            }
        }
        walked
    }
}
