//! Prometheus remote-write 2.0 messages (`io.prometheus.write.v2`) as prost-derive structs.
//!
//! The reference definition of the 2.0 wire format (`prompb/io/prometheus/write/v2/types.proto`,
//! gogoproto options dropped, field numbers kept). As with [`crate::proto`], the receiver does not
//! decode with these structs ([`crate::decode::v2`] walks the bytes in place); tests, benchmarks and
//! load generators use them to encode requests, and the decoder is property-tested against them.

use std::collections::HashMap;

use crate::proto;

/// `io.prometheus.write.v2.Request`. Fields 1–3 are reserved, so a 1.0 body decodes as empty.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// The symbol table: every string the series refer to. `symbols[0]` must be `""`.
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    /// The series.
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeries>,
}

/// `io.prometheus.write.v2.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Label pairs as `(name_ref, value_ref)` indexes into [`Request::symbols`].
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// Float samples, in timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histogram samples (rejected by Strata: not supported).
    #[prost(message, repeated, tag = "3")]
    pub histograms: Vec<Histogram>,
    /// Exemplars.
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<Exemplar>,
    /// The series' metric metadata.
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
    /// The series' created timestamp (ms; 0 = unset), as senders before `Sample.start_timestamp` sent it.
    #[prost(int64, tag = "6")]
    pub created_timestamp: i64,
}

/// `io.prometheus.write.v2.Sample`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
    /// Start (created) timestamp of the counter this sample belongs to (ms; 0 = unset).
    #[prost(int64, tag = "3")]
    pub start_timestamp: i64,
}

/// `io.prometheus.write.v2.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// Label pairs as symbol references.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// The value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `io.prometheus.write.v2.Metadata`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Metadata {
    /// The metric type (same numbers as [`proto::MetricType`]; 0 = unspecified).
    #[prost(enumeration = "proto::MetricType", tag = "1")]
    pub r#type: i32,
    /// Help text as a symbol reference.
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    /// Unit as a symbol reference.
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

/// `io.prometheus.write.v2.Histogram`: 1.0's `Histogram` (the same field numbers and oneofs) plus
/// `start_timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Observation count (integer or float histogram).
    #[prost(oneof = "crate::proto::histogram::Count", tags = "1, 2")]
    pub count: Option<crate::proto::histogram::Count>,
    /// Sum of observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Bucket resolution schema.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Width of the zero bucket.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    #[prost(oneof = "crate::proto::histogram::ZeroCount", tags = "6, 7")]
    pub zero_count: Option<crate::proto::histogram::ZeroCount>,
    /// Negative bucket spans.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<crate::proto::BucketSpan>,
    /// Negative bucket counts as deltas (integer histograms).
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Negative bucket counts (float histograms).
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Positive bucket spans.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<crate::proto::BucketSpan>,
    /// Positive bucket counts as deltas (integer histograms).
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Positive bucket counts (float histograms).
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// Counter reset hint (`RESET_HINT_*`, numbered as 1.0's).
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Custom bucket bounds (schema -53).
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
    /// Start (created) timestamp (ms; 0 = unset).
    #[prost(int64, tag = "17")]
    pub start_timestamp: i64,
}

impl Histogram {
    /// The 2.0 message carrying 1.0 histogram `h` (same fields), with `start_timestamp`.
    pub fn from_v1(h: crate::proto::Histogram, start_timestamp: i64) -> Histogram {
        Histogram {
            count: h.count,
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: h.zero_count,
            negative_spans: h.negative_spans,
            negative_deltas: h.negative_deltas,
            negative_counts: h.negative_counts,
            positive_spans: h.positive_spans,
            positive_deltas: h.positive_deltas,
            positive_counts: h.positive_counts,
            reset_hint: h.reset_hint,
            timestamp: h.timestamp,
            custom_values: h.custom_values,
            start_timestamp,
        }
    }
}

/// Builds a [`Request`]'s symbol table: [`SymbolTable::intern`] returns a string's index, adding it
/// once; index 0 is `""`.
#[derive(Debug, Clone)]
pub struct SymbolTable {
    symbols: Vec<String>,
    index: HashMap<String, u32>,
}

impl Default for SymbolTable {
    fn default() -> Self {
        SymbolTable { symbols: vec![String::new()], index: HashMap::from([(String::new(), 0)]) }
    }
}

impl SymbolTable {
    /// The index of `s`, added if new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = u32::try_from(self.symbols.len()).unwrap_or(u32::MAX);
        self.symbols.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }

    /// The references of label pairs, in the order given.
    pub fn label_refs<'a>(&mut self, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u32> {
        let mut refs = Vec::new();
        for (n, v) in labels {
            refs.push(self.intern(n));
            refs.push(self.intern(v));
        }
        refs
    }

    /// The table, for [`Request::symbols`].
    pub fn into_symbols(self) -> Vec<String> {
        self.symbols
    }
}

impl Request {
    /// The 2.0 form of a 1.0 request: the same series, samples, histograms and exemplars.
    /// 1.0 metadata, keyed by family name, is attached to series of that name.
    pub fn from_v1(req: &proto::WriteRequest) -> Request {
        let mut table = SymbolTable::default();
        let meta: HashMap<&str, &proto::MetricMetadata> =
            req.metadata.iter().map(|m| (m.metric_family_name.as_str(), m)).collect();
        let mut timeseries = Vec::with_capacity(req.timeseries.len());
        for ts in &req.timeseries {
            let labels_refs = table.label_refs(ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
            let name = ts.labels.iter().find(|l| l.name == "__name__").map_or("", |l| l.value.as_str());
            let metadata = meta.get(name).map(|m| Metadata {
                r#type: m.r#type,
                help_ref: table.intern(&m.help),
                unit_ref: table.intern(&m.unit),
            });
            let samples = ts
                .samples
                .iter()
                .map(|s| Sample { value: s.value, timestamp: s.timestamp, start_timestamp: 0 })
                .collect();
            let exemplars = ts
                .exemplars
                .iter()
                .map(|e| Exemplar {
                    labels_refs: table.label_refs(e.labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))),
                    value: e.value,
                    timestamp: e.timestamp,
                })
                .collect();
            timeseries.push(TimeSeries {
                labels_refs,
                samples,
                histograms: ts.histograms.iter().map(|h| Histogram::from_v1(h.clone(), 0)).collect(),
                exemplars,
                metadata,
                created_timestamp: 0,
            });
        }
        Request { symbols: table.into_symbols(), timeseries }
    }
}
