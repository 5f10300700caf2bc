//! Prometheus remote-write 1.0 and remote-read messages as prost-derive structs (no protoc at build
//! time).
//!
//! This is the reference definition of the wire format (`prompb/remote.proto`, `prompb/types.proto`;
//! gogoproto options dropped, field numbers kept). The remote-write receiver does not decode requests
//! with these structs — [`crate::decode`] walks the same bytes without allocating label strings — but
//! tests, benchmarks and load generators use them to *encode* requests, and the decoder is
//! property-tested against them. The remote-read endpoint (in the `query` crate) decodes its small
//! requests and encodes its answers with them.

/// `prometheus.WriteRequest`. Field 2 is reserved (Cortex).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata (sent in separate requests in 1.0; accepted and ignored).
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`: one label set and its samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// The complete label set (sorted by name, as senders are asked to send it).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Float samples, in timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars (accepted and ignored).
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histogram samples: remote-read answers carry a series' histograms here (remote write
    /// 1.0 rejects them).
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: one float sample.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// Exemplar labels, e.g. a trace id.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// The metric type.
    #[prost(enumeration = "MetricType", tag = "1")]
    pub r#type: i32,
    /// The metric family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// `prometheus.MetricMetadata.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    /// Unknown.
    Unknown = 0,
    /// Counter.
    Counter = 1,
    /// Gauge.
    Gauge = 2,
    /// Classic histogram.
    Histogram = 3,
    /// Gauge histogram.
    Gaugehistogram = 4,
    /// Summary.
    Summary = 5,
    /// Info.
    Info = 6,
    /// Stateset.
    Stateset = 7,
}

/// `prometheus.Histogram`: one native histogram sample. All wire numbers as in `prompb/types.proto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Observation count (integer or float histogram).
    #[prost(oneof = "histogram::Count", tags = "1, 2")]
    pub count: Option<histogram::Count>,
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
    #[prost(oneof = "histogram::ZeroCount", tags = "6, 7")]
    pub zero_count: Option<histogram::ZeroCount>,
    /// Negative bucket spans.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Negative bucket counts as deltas (integer histograms).
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Negative bucket counts (float histograms).
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Positive bucket spans.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Positive bucket counts as deltas (integer histograms).
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Positive bucket counts (float histograms).
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// Counter reset hint.
    #[prost(enumeration = "histogram::ResetHint", tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Custom bucket bounds (schema -53).
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
}

/// Nested types of [`Histogram`].
pub mod histogram {
    /// `Histogram.count`.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Count {
        /// Integer histogram count.
        #[prost(uint64, tag = "1")]
        CountInt(u64),
        /// Float histogram count.
        #[prost(double, tag = "2")]
        CountFloat(f64),
    }

    /// `Histogram.zero_count`.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum ZeroCount {
        /// Integer zero-bucket count.
        #[prost(uint64, tag = "6")]
        ZeroCountInt(u64),
        /// Float zero-bucket count.
        #[prost(double, tag = "7")]
        ZeroCountFloat(f64),
    }

    /// `Histogram.ResetHint`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ResetHint {
        /// Unknown.
        Unknown = 0,
        /// Is a counter reset.
        Yes = 1,
        /// Is not a counter reset.
        No = 2,
        /// Gauge histogram.
        Gauge = 3,
    }
}

/// `prometheus.BucketSpan`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct BucketSpan {
    /// Gap to the previous span, or the starting index of the first span.
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Number of consecutive buckets.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// `prometheus.ReadRequest`: queries and the response types the client accepts, in preference order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    /// The queries, answered in this order.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// Accepted response types ([`read_request::ResponseType`]), most preferred first; none means
    /// `SAMPLES`.
    #[prost(enumeration = "read_request::ResponseType", repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// Nested types of [`ReadRequest`].
pub mod read_request {
    /// `ReadRequest.ResponseType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ResponseType {
        /// One snappy-compressed [`super::ReadResponse`] with raw samples.
        Samples = 0,
        /// A stream of framed [`super::ChunkedReadResponse`]s with XOR chunks.
        StreamedXorChunks = 1,
    }
}

/// `prometheus.ReadResponse`: one result per query, in the request's order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    /// The results.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prometheus.Query`: matchers over a time range (ms, inclusive).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    /// Start of the range.
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// End of the range.
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// Label matchers, all of which a series must match.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    /// What the client's query will do with the data.
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

/// `prometheus.QueryResult`: the series of one query, each with its samples in time order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.ChunkedReadResponse`: one frame of a streamed answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedReadResponse {
    /// The series of this frame (Prometheus sends one per frame).
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    /// Index of the query in [`ReadRequest::queries`] the chunks answer.
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

/// `prometheus.LabelMatcher`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LabelMatcher {
    /// How the value is compared.
    #[prost(enumeration = "label_matcher::Type", tag = "1")]
    pub r#type: i32,
    /// Label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Value or regular expression.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// Nested types of [`LabelMatcher`].
pub mod label_matcher {
    /// `LabelMatcher.Type`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Type {
        /// `=`.
        Eq = 0,
        /// `!=`.
        Neq = 1,
        /// `=~`.
        Re = 2,
        /// `!~`.
        Nre = 3,
    }
}

/// `prometheus.ReadHints`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadHints {
    /// Query step in milliseconds.
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    /// The function or aggregation around the selector.
    #[prost(string, tag = "2")]
    pub func: String,
    /// Start of the data the query needs, in milliseconds.
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    /// End of the data the query needs, in milliseconds.
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    /// Label names of the surrounding aggregation.
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    /// `by` (true) or `without` (false).
    #[prost(bool, tag = "6")]
    pub by: bool,
    /// Range of a range selector in milliseconds.
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}

/// `prometheus.Chunk`: one encoded chunk of a series.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// First timestamp in the chunk.
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    /// Last timestamp in the chunk.
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    /// The encoding of `data`.
    #[prost(enumeration = "chunk::Encoding", tag = "3")]
    pub r#type: i32,
    /// The chunk's bytes as the TSDB stores them.
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

/// Nested types of [`Chunk`].
pub mod chunk {
    /// `Chunk.Encoding` (Prometheus's `chunkenc.Encoding`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Encoding {
        /// Unknown.
        Unknown = 0,
        /// Gorilla XOR float chunk.
        Xor = 1,
        /// Integer native histogram chunk.
        Histogram = 2,
        /// Float native histogram chunk.
        FloatHistogram = 3,
    }
}

/// `prometheus.ChunkedSeries`: labels and chunks in start-time order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedSeries {
    /// Labels, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Chunks in start-time order.
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}
