//! The tsdb's own WAL payloads: the only code that gives WAL bytes meaning.
//!
//! ```text
//! series record:  0x01 | (uvarint ref | uvarint n | n × (uvarint len | name | uvarint len | value))…
//! samples record: 0x04 | (varint Δref | varint Δt | 8-byte LE f64 bits)…
//!                 Δ = difference to the previous entry's ref / timestamp (the first entry's to 0)
//! old samples:    0x02 | (uvarint ref | varint t | 8-byte LE f64 bits)…  (read only, never written)
//! chunks record:  0x03 | (uvarint ref | varint next_at | 8-byte LE last value bits |
//!                         uvarint n | n × chunk | u8 has_open | [chunk] |
//!                         uvarint n | n × chunk | uvarint n | n × (varint t | 8-byte LE f64 bits))…
//!                 chunk = varint min_t | varint max_t | uvarint len | XOR chunk bytes
//! tombstones:     0x05 | (uvarint ref | varint min_t | varint max_t)…   deleted [min_t, max_t] of a series
//! histograms:     0x06 | (varint Δref | varint Δt | u8 flags | histogram)…   Δ as in samples records
//!                 flags: bits 0-1 counter-reset hint (0 unknown, 1 reset, 2 not reset, 3 gauge),
//!                        bit 2 set for float counts; other bits zero
//!                 integer histogram = varint schema | 8-byte LE zero threshold | uvarint zero count |
//!                                     uvarint count | 8-byte LE sum | spans (positive) | spans (negative) |
//!                                     uvarint n | n × varint delta-encoded bucket (positive) |
//!                                     uvarint n | n × varint delta-encoded bucket (negative) |
//!                                     uvarint n | n × 8-byte LE custom bound
//!                 float histogram   = the same with zero count, count and every bucket as 8-byte LE f64
//!                 spans = uvarint n | n × (varint offset | uvarint length)
//! exemplars:      0x07 | (varint Δref | varint Δt | 8-byte LE value | uvarint n |
//!                         n × (uvarint len | name | uvarint len | value))…   Δ as in samples records
//! histogram chunks: 0x08 | (uvarint ref | uvarint n | n × (u8 encoding | varint min_t | varint max_t |
//!                          uvarint len | chunk bytes))…   encoding 2 integer, 3 float histogram chunk
//! ```
//! Histogram records hold a batch's integer and float histograms in one record, in the order they
//! were queued (a series' two kinds share its histogram state, so their order matters). Exemplars
//! records carry a batch's exemplars, replayed into the exemplar store.
//! Chunks records (in-order sealed chunks, the open chunk, out-of-order sealed chunks, the open
//! out-of-order samples of a series) and histogram chunks records (a series' sealed in-order
//! histogram chunks, Prometheus's encodings; its open chunk and late histograms follow as
//! histograms records) appear only in checkpoints, so a restart loads chunks instead of
//! re-appending every sample. Tombstones records are written by `delete_series` and again in
//! every checkpoint for the series that still have deleted intervals.
//! Several series and samples share one record, so one remote-write request is one WAL batch.
//! Decoding never trusts a length: every read is bounds-checked and failures are typed.

use crate::exemplars::Exemplar;
use crate::histogram::{CounterResetHint, FloatHistogram, Histogram, HistogramValue, Span};
use crate::intervals::Interval;
use crate::labels::Labels;
use crate::varint::{put_uvarint, put_varint, take_uvarint as get_uvarint, take_varint as get_varint};

/// Record type tags (first byte of a record). Pinned: these are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// New series: ref and labels.
    Series = 1,
    /// Float samples with absolute refs and timestamps (written before delta records; still read).
    Samples = 2,
    /// A series' chunks (checkpoints only).
    Chunks = 3,
    /// Float samples, refs and timestamps as differences to the previous entry: a remote-write batch
    /// holds runs of neighbouring refs and near-equal timestamps, so an entry takes ~11 bytes instead
    /// of ~17, and the WAL (what is written, fsynced, replayed and checkpointed) shrinks with it.
    SampleDeltas = 4,
    /// Deleted intervals of series (Prometheus's record type 3, `tombstones`, in Strata's numbering).
    Tombstones = 5,
    /// Native histogram samples, integer and float, refs and timestamps as differences.
    Histograms = 6,
    /// Exemplars with their series reference.
    Exemplars = 7,
    /// A series' sealed in-order histogram chunks (checkpoints only).
    HistogramChunks = 8,
}

impl TryFrom<u8> for RecordType {
    type Error = DecodeError;
    fn try_from(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(RecordType::Series),
            2 => Ok(RecordType::Samples),
            3 => Ok(RecordType::Chunks),
            4 => Ok(RecordType::SampleDeltas),
            5 => Ok(RecordType::Tombstones),
            6 => Ok(RecordType::Histograms),
            7 => Ok(RecordType::Exemplars),
            8 => Ok(RecordType::HistogramChunks),
            other => Err(DecodeError::UnknownType(other)),
        }
    }
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is empty.
    #[error("empty record")]
    Empty,
    /// The first byte is not a known record type.
    #[error("unknown record type {0}")]
    UnknownType(u8),
    /// The record ends in the middle of an entry.
    #[error("record truncated at byte {0}")]
    Truncated(usize),
    /// A label name or value is not UTF-8.
    #[error("label bytes are not UTF-8 at byte {0}")]
    NotUtf8(usize),
    /// A field holds a value its type does not allow (unknown flag bits, a schema beyond 32 bits).
    #[error("invalid field value at byte {0}")]
    BadValue(usize),
}

/// One sample as stored in the WAL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    /// Series reference.
    pub sref: u64,
    /// Timestamp, ms.
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// Appends a series entry to a series record buffer (which must start with [`RecordType::Series`]).
pub fn encode_series(buf: &mut Vec<u8>, sref: u64, labels: &Labels) {
    if buf.is_empty() {
        buf.push(RecordType::Series as u8);
    }
    put_uvarint(buf, sref);
    put_uvarint(buf, labels.len() as u64);
    for (n, v) in labels.iter() {
        put_uvarint(buf, n.len() as u64);
        buf.extend_from_slice(n.as_bytes());
        put_uvarint(buf, v.len() as u64);
        buf.extend_from_slice(v.as_bytes());
    }
}

/// Builds one samples record ([`RecordType::SampleDeltas`]) entry by entry.
#[derive(Debug, Default, Clone)]
pub struct SamplesRecord {
    buf: Vec<u8>,
    prev_ref: u64,
    prev_t: i64,
}

impl SamplesRecord {
    /// An empty record with room for about `samples` entries.
    pub fn with_capacity(samples: usize) -> SamplesRecord {
        SamplesRecord { buf: Vec::with_capacity(1 + samples * 12), prev_ref: 0, prev_t: 0 }
    }

    /// Appends an entry.
    pub fn push(&mut self, s: RefSample) {
        if self.buf.is_empty() {
            self.buf.push(RecordType::SampleDeltas as u8);
        }
        // Wrapping differences, undone by wrapping additions when decoding: any ref and timestamp
        // round-trips.
        put_varint(&mut self.buf, s.sref.wrapping_sub(self.prev_ref) as i64);
        put_varint(&mut self.buf, s.t.wrapping_sub(self.prev_t));
        self.buf.extend_from_slice(&s.v.to_bits().to_le_bytes());
        self.prev_ref = s.sref;
        self.prev_t = s.t;
    }

    /// True if no entry was pushed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The record's bytes (empty if no entry was pushed).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Appends a tombstones entry (series `sref` deleted in `iv`) to a tombstones record buffer.
pub fn encode_tombstone(buf: &mut Vec<u8>, sref: u64, iv: Interval) {
    if buf.is_empty() {
        buf.push(RecordType::Tombstones as u8);
    }
    put_uvarint(buf, sref);
    put_varint(buf, iv.min_t);
    put_varint(buf, iv.max_t);
}

/// A chunk as stored in a chunks record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk<'a> {
    /// First timestamp.
    pub min_t: i64,
    /// Last timestamp.
    pub max_t: i64,
    /// XOR chunk bytes.
    pub bytes: &'a [u8],
}

/// One series' entry of a chunks record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeriesChunks<'a> {
    /// Series reference.
    pub sref: u64,
    /// When the open chunk is cut (Prometheus's `nextAt`).
    pub next_at: i64,
    /// Last in-order value.
    pub last_value: f64,
    /// Sealed in-order chunks.
    pub sealed: Vec<StoredChunk<'a>>,
    /// The open in-order chunk.
    pub open: Option<StoredChunk<'a>>,
    /// Sealed out-of-order chunks.
    pub ooo_sealed: Vec<StoredChunk<'a>>,
    /// Open out-of-order samples, sorted.
    pub ooo_open: Vec<(i64, f64)>,
}

/// Appends one series' chunks to a chunks record buffer.
pub fn encode_chunks(buf: &mut Vec<u8>, c: &SeriesChunks<'_>) {
    if buf.is_empty() {
        buf.push(RecordType::Chunks as u8);
    }
    let put_chunk = |buf: &mut Vec<u8>, ch: &StoredChunk<'_>| {
        put_varint(buf, ch.min_t);
        put_varint(buf, ch.max_t);
        put_uvarint(buf, ch.bytes.len() as u64);
        buf.extend_from_slice(ch.bytes);
    };
    put_uvarint(buf, c.sref);
    put_varint(buf, c.next_at);
    buf.extend_from_slice(&c.last_value.to_bits().to_le_bytes());
    put_uvarint(buf, c.sealed.len() as u64);
    for ch in &c.sealed {
        put_chunk(buf, ch);
    }
    match &c.open {
        Some(ch) => {
            buf.push(1);
            put_chunk(buf, ch);
        }
        None => buf.push(0),
    }
    put_uvarint(buf, c.ooo_sealed.len() as u64);
    for ch in &c.ooo_sealed {
        put_chunk(buf, ch);
    }
    put_uvarint(buf, c.ooo_open.len() as u64);
    for &(t, v) in &c.ooo_open {
        put_varint(buf, t);
        buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

/// One sealed histogram chunk of a histogram chunks record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredHistogramChunk<'a> {
    /// Float histogram chunk (encoding 3) rather than integer (encoding 2).
    pub float: bool,
    /// First timestamp.
    pub min_t: i64,
    /// Last timestamp.
    pub max_t: i64,
    /// The chunk bytes.
    pub bytes: &'a [u8],
}

/// One series' entry of a histogram chunks record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeriesHistogramChunks<'a> {
    /// Series reference.
    pub sref: u64,
    /// Sealed in-order histogram chunks, oldest first.
    pub chunks: Vec<StoredHistogramChunk<'a>>,
}

/// Chunk encodings of histogram chunks records (Prometheus's numbers).
const ENCODING_HISTOGRAM: u8 = 2;
const ENCODING_FLOAT_HISTOGRAM: u8 = 3;

/// Appends one series' sealed histogram chunks to a histogram chunks record buffer.
pub fn encode_histogram_chunks(buf: &mut Vec<u8>, c: &SeriesHistogramChunks<'_>) {
    if buf.is_empty() {
        buf.push(RecordType::HistogramChunks as u8);
    }
    put_uvarint(buf, c.sref);
    put_uvarint(buf, c.chunks.len() as u64);
    for ch in &c.chunks {
        buf.push(if ch.float { ENCODING_FLOAT_HISTOGRAM } else { ENCODING_HISTOGRAM });
        put_varint(buf, ch.min_t);
        put_varint(buf, ch.max_t);
        put_uvarint(buf, ch.bytes.len() as u64);
        buf.extend_from_slice(ch.bytes);
    }
}

/// One native histogram sample as stored in the WAL.
#[derive(Debug, Clone, PartialEq)]
pub struct RefHistogram {
    /// Series reference.
    pub sref: u64,
    /// Timestamp, ms.
    pub t: i64,
    /// The histogram.
    pub v: HistogramValue,
}

/// One exemplar as stored in the WAL.
#[derive(Debug, Clone, PartialEq)]
pub struct RefExemplar {
    /// Series reference.
    pub sref: u64,
    /// The exemplar.
    pub exemplar: Exemplar,
}

/// Builds one histograms record ([`RecordType::Histograms`]) entry by entry.
#[derive(Debug, Default, Clone)]
pub struct HistogramsRecord {
    buf: Vec<u8>,
    prev_ref: u64,
    prev_t: i64,
}

const FLAG_FLOAT: u8 = 0b100;
const FLAG_HINT_MASK: u8 = 0b11;

fn hint_bits(h: CounterResetHint) -> u8 {
    match h {
        CounterResetHint::Unknown => 0,
        CounterResetHint::CounterReset => 1,
        CounterResetHint::NotCounterReset => 2,
        CounterResetHint::Gauge => 3,
    }
}

fn hint_from_bits(b: u8) -> CounterResetHint {
    match b & FLAG_HINT_MASK {
        1 => CounterResetHint::CounterReset,
        2 => CounterResetHint::NotCounterReset,
        3 => CounterResetHint::Gauge,
        _ => CounterResetHint::Unknown,
    }
}

fn put_f64(buf: &mut Vec<u8>, v: f64) {
    buf.extend_from_slice(&v.to_bits().to_le_bytes());
}

fn put_spans(buf: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(buf, spans.len() as u64);
    for s in spans {
        put_varint(buf, i64::from(s.offset));
        put_uvarint(buf, u64::from(s.length));
    }
}

fn put_floats(buf: &mut Vec<u8>, vs: &[f64]) {
    put_uvarint(buf, vs.len() as u64);
    for &v in vs {
        put_f64(buf, v);
    }
}

impl HistogramsRecord {
    /// Appends an entry.
    pub fn push(&mut self, sref: u64, t: i64, v: &HistogramValue) {
        encode_histogram_value(self.start_entry(sref, t), v);
    }

    /// Appends an entry whose histogram is already encoded by [`encode_histogram_value`].
    pub fn push_encoded(&mut self, sref: u64, t: i64, value: &[u8]) {
        self.start_entry(sref, t).extend_from_slice(value);
    }

    /// Writes an entry's reference and timestamp deltas; the histogram follows in the buffer returned.
    fn start_entry(&mut self, sref: u64, t: i64) -> &mut Vec<u8> {
        let buf = &mut self.buf;
        if buf.is_empty() {
            buf.push(RecordType::Histograms as u8);
        }
        put_varint(buf, sref.wrapping_sub(self.prev_ref) as i64);
        put_varint(buf, t.wrapping_sub(self.prev_t));
        self.prev_ref = sref;
        self.prev_t = t;
        buf
    }

    /// True if no entry was pushed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The record's bytes (empty if no entry was pushed).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Appends one histogram as a histograms record entry encodes it (flags byte and fields, see the
/// module docs); [`decode_histogram_value`] reads it back.
pub fn encode_histogram_value(buf: &mut Vec<u8>, v: &HistogramValue) {
    match v {
        HistogramValue::Int(h) => {
            buf.push(hint_bits(h.counter_reset_hint));
            put_varint(buf, i64::from(h.schema));
            put_f64(buf, h.zero_threshold);
            put_uvarint(buf, h.zero_count);
            put_uvarint(buf, h.count);
            put_f64(buf, h.sum);
            put_spans(buf, &h.positive_spans);
            put_spans(buf, &h.negative_spans);
            for side in [&h.positive_buckets, &h.negative_buckets] {
                put_uvarint(buf, side.len() as u64);
                for &b in side {
                    put_varint(buf, b);
                }
            }
            put_floats(buf, &h.custom_values);
        }
        HistogramValue::Float(h) => {
            buf.push(hint_bits(h.counter_reset_hint) | FLAG_FLOAT);
            put_varint(buf, i64::from(h.schema));
            put_f64(buf, h.zero_threshold);
            put_f64(buf, h.zero_count);
            put_f64(buf, h.count);
            put_f64(buf, h.sum);
            put_spans(buf, &h.positive_spans);
            put_spans(buf, &h.negative_spans);
            put_floats(buf, &h.positive_buckets);
            put_floats(buf, &h.negative_buckets);
            put_floats(buf, &h.custom_values);
        }
    }
}

/// Reads one histogram written by [`encode_histogram_value`]; all of `bytes` must be that one.
pub fn decode_histogram_value(bytes: &[u8]) -> Result<HistogramValue, DecodeError> {
    let mut rest = bytes;
    let v = decode_histogram(&mut rest, bytes.len())?;
    if rest.is_empty() {
        Ok(v)
    } else {
        Err(DecodeError::BadValue(bytes.len() - rest.len()))
    }
}

/// Builds one exemplars record ([`RecordType::Exemplars`]) entry by entry.
#[derive(Debug, Default, Clone)]
pub struct ExemplarsRecord {
    buf: Vec<u8>,
    prev_ref: u64,
    prev_t: i64,
}

impl ExemplarsRecord {
    /// Appends an entry.
    pub fn push(&mut self, sref: u64, e: &Exemplar) {
        let buf = &mut self.buf;
        if buf.is_empty() {
            buf.push(RecordType::Exemplars as u8);
        }
        put_varint(buf, sref.wrapping_sub(self.prev_ref) as i64);
        put_varint(buf, e.t.wrapping_sub(self.prev_t));
        self.prev_ref = sref;
        self.prev_t = e.t;
        put_f64(buf, e.value);
        put_uvarint(buf, e.labels.len() as u64);
        for (n, v) in &e.labels {
            put_uvarint(buf, n.len() as u64);
            buf.extend_from_slice(n.as_bytes());
            put_uvarint(buf, v.len() as u64);
            buf.extend_from_slice(v.as_bytes());
        }
    }

    /// True if no entry was pushed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The record's bytes (empty if no entry was pushed).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// A decoded record.
#[derive(Debug)]
pub enum Record<'a> {
    /// Series entries.
    Series(Vec<(u64, Labels)>),
    /// Sample entries (written into the caller's buffer).
    Samples,
    /// Chunk entries, borrowing the record's bytes.
    Chunks(Vec<SeriesChunks<'a>>),
    /// Deleted intervals by series reference.
    Tombstones(Vec<(u64, Interval)>),
    /// Native histogram samples, in record order.
    Histograms(Vec<RefHistogram>),
    /// Exemplars, in record order.
    Exemplars(Vec<RefExemplar>),
    /// Sealed histogram chunks by series, borrowing the record's bytes.
    HistogramChunks(Vec<SeriesHistogramChunks<'a>>),
}

/// Decodes one record; samples go into `samples_out` (reused by the caller). Labels are rebuilt
/// without re-validation beyond UTF-8 and sort order repair.
pub fn decode<'a>(rec: &'a [u8], samples_out: &mut Vec<RefSample>) -> Result<Record<'a>, DecodeError> {
    let (&tag, mut rest) = rec.split_first().ok_or(DecodeError::Empty)?;
    let start_len = rec.len();
    let pos = |rest: &[u8]| start_len - rest.len();
    match RecordType::try_from(tag)? {
        RecordType::Chunks => {
            let mut out = Vec::new();
            while !rest.is_empty() {
                out.push(decode_series_chunks(&mut rest, start_len)?);
            }
            Ok(Record::Chunks(out))
        }
        RecordType::HistogramChunks => {
            let mut out = Vec::new();
            while !rest.is_empty() {
                out.push(decode_series_histogram_chunks(&mut rest, start_len)?);
            }
            Ok(Record::HistogramChunks(out))
        }
        RecordType::Tombstones => {
            let mut out = Vec::new();
            while !rest.is_empty() {
                let sref = get_uvarint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let min_t = get_varint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let max_t = get_varint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                out.push((sref, Interval::new(min_t, max_t)));
            }
            Ok(Record::Tombstones(out))
        }
        RecordType::Histograms => {
            let (mut sref, mut t) = (0u64, 0i64);
            let mut out = Vec::new();
            while !rest.is_empty() {
                let dref = get_varint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let dt = get_varint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                sref = sref.wrapping_add(dref as u64);
                t = t.wrapping_add(dt);
                let v = decode_histogram(&mut rest, start_len)?;
                out.push(RefHistogram { sref, t, v });
            }
            Ok(Record::Histograms(out))
        }
        RecordType::Exemplars => {
            let (mut sref, mut t) = (0u64, 0i64);
            let mut out = Vec::new();
            while !rest.is_empty() {
                let dref = get_varint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let dt = get_varint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                sref = sref.wrapping_add(dref as u64);
                t = t.wrapping_add(dt);
                let value = take_f64(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let n = take_count(&mut rest, start_len)?;
                let mut labels = Vec::new();
                for _ in 0..n {
                    let name = get_str(&mut rest, start_len)?;
                    let value = get_str(&mut rest, start_len)?;
                    labels.push((name.to_owned(), value.to_owned()));
                }
                out.push(RefExemplar { sref, exemplar: Exemplar { labels, value, t } });
            }
            Ok(Record::Exemplars(out))
        }
        RecordType::SampleDeltas => {
            let (mut sref, mut t) = (0u64, 0i64);
            while !rest.is_empty() {
                let dref = get_varint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let dt = get_varint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let v = take_f64(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                sref = sref.wrapping_add(dref as u64);
                t = t.wrapping_add(dt);
                samples_out.push(RefSample { sref, t, v });
            }
            Ok(Record::Samples)
        }
        RecordType::Samples => {
            while !rest.is_empty() {
                let sref = get_uvarint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let t = get_varint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let v = take_f64(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                samples_out.push(RefSample { sref, t, v });
            }
            Ok(Record::Samples)
        }
        RecordType::Series => {
            let mut out = Vec::new();
            let mut pairs: Vec<(&str, &str)> = Vec::new();
            while !rest.is_empty() {
                let sref = get_uvarint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let n = get_uvarint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                pairs.clear();
                for _ in 0..n {
                    let name = get_str(&mut rest, start_len)?;
                    let value = get_str(&mut rest, start_len)?;
                    pairs.push((name, value));
                }
                pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
                pairs.dedup_by(|a, b| a.0 == b.0);
                pairs.retain(|p| !p.1.is_empty());
                out.push((sref, Labels::from_sorted_unchecked(&pairs)));
            }
            Ok(Record::Series(out))
        }
    }
}

/// Takes a count of entries that each take at least one byte: more than the bytes left is an error
/// (a count from disk never sizes an allocation beyond what the record can hold).
fn take_count(rest: &mut &[u8], start_len: usize) -> Result<usize, DecodeError> {
    let at = start_len - rest.len();
    let n = get_uvarint(rest).and_then(|n| usize::try_from(n).ok()).ok_or(DecodeError::Truncated(at))?;
    if n > rest.len() {
        return Err(DecodeError::Truncated(at));
    }
    Ok(n)
}

fn take_spans(rest: &mut &[u8], start_len: usize) -> Result<Vec<Span>, DecodeError> {
    let n = take_count(rest, start_len)?;
    let mut spans = Vec::with_capacity(n);
    for _ in 0..n {
        let at = start_len - rest.len();
        let offset = get_varint(rest).ok_or(DecodeError::Truncated(at))?;
        let length = get_uvarint(rest).ok_or(DecodeError::Truncated(at))?;
        let (Ok(offset), Ok(length)) = (i32::try_from(offset), u32::try_from(length)) else {
            return Err(DecodeError::BadValue(at));
        };
        spans.push(Span { offset, length });
    }
    Ok(spans)
}

fn take_floats(rest: &mut &[u8], start_len: usize) -> Result<Vec<f64>, DecodeError> {
    let n = take_count(rest, start_len)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(take_f64(rest).ok_or(DecodeError::Truncated(start_len - rest.len()))?);
    }
    Ok(out)
}

/// Decodes one histogram entry's flags and body.
fn decode_histogram(rest: &mut &[u8], start_len: usize) -> Result<HistogramValue, DecodeError> {
    let trunc = |rest: &[u8]| DecodeError::Truncated(start_len - rest.len());
    let (&flags, after) = rest.split_first().ok_or_else(|| trunc(rest))?;
    if flags & !(FLAG_FLOAT | FLAG_HINT_MASK) != 0 {
        return Err(DecodeError::BadValue(start_len - rest.len()));
    }
    *rest = after;
    let counter_reset_hint = hint_from_bits(flags);
    let at = start_len - rest.len();
    let schema = get_varint(rest).ok_or_else(|| trunc(rest))?;
    let schema = i32::try_from(schema).map_err(|_| DecodeError::BadValue(at))?;
    let zero_threshold = take_f64(rest).ok_or_else(|| trunc(rest))?;
    if flags & FLAG_FLOAT == 0 {
        let zero_count = get_uvarint(rest).ok_or_else(|| trunc(rest))?;
        let count = get_uvarint(rest).ok_or_else(|| trunc(rest))?;
        let sum = take_f64(rest).ok_or_else(|| trunc(rest))?;
        let positive_spans = take_spans(rest, start_len)?;
        let negative_spans = take_spans(rest, start_len)?;
        let mut sides = [Vec::new(), Vec::new()];
        for side in &mut sides {
            let n = take_count(rest, start_len)?;
            side.reserve(n);
            for _ in 0..n {
                side.push(get_varint(rest).ok_or_else(|| trunc(rest))?);
            }
        }
        let [positive_buckets, negative_buckets] = sides;
        let custom_values = take_floats(rest, start_len)?;
        Ok(HistogramValue::Int(Histogram {
            counter_reset_hint,
            schema,
            zero_threshold,
            zero_count,
            count,
            sum,
            positive_spans,
            negative_spans,
            positive_buckets,
            negative_buckets,
            custom_values,
        }))
    } else {
        let zero_count = take_f64(rest).ok_or_else(|| trunc(rest))?;
        let count = take_f64(rest).ok_or_else(|| trunc(rest))?;
        let sum = take_f64(rest).ok_or_else(|| trunc(rest))?;
        let positive_spans = take_spans(rest, start_len)?;
        let negative_spans = take_spans(rest, start_len)?;
        let positive_buckets = take_floats(rest, start_len)?;
        let negative_buckets = take_floats(rest, start_len)?;
        let custom_values = take_floats(rest, start_len)?;
        Ok(HistogramValue::Float(FloatHistogram {
            counter_reset_hint,
            schema,
            zero_threshold,
            zero_count,
            count,
            sum,
            positive_spans,
            negative_spans,
            positive_buckets,
            negative_buckets,
            custom_values,
        }))
    }
}

/// Takes an 8-byte little-endian `f64`; `None` (nothing taken) if fewer than 8 bytes are left.
fn take_f64(rest: &mut &[u8]) -> Option<f64> {
    let (bits, tail) = rest.split_first_chunk::<8>()?;
    *rest = tail;
    Some(f64::from_bits(u64::from_le_bytes(*bits)))
}

fn decode_series_chunks<'a>(rest: &mut &'a [u8], start_len: usize) -> Result<SeriesChunks<'a>, DecodeError> {
    let trunc = |rest: &[u8]| DecodeError::Truncated(start_len - rest.len());
    let chunk = |rest: &mut &'a [u8]| -> Result<StoredChunk<'a>, DecodeError> {
        let min_t = get_varint(rest).ok_or_else(|| trunc(rest))?;
        let max_t = get_varint(rest).ok_or_else(|| trunc(rest))?;
        let len = get_uvarint(rest).and_then(|l| usize::try_from(l).ok()).ok_or_else(|| trunc(rest))?;
        let bytes = rest.get(..len).ok_or_else(|| trunc(rest))?;
        *rest = rest.get(len..).unwrap_or_default();
        Ok(StoredChunk { min_t, max_t, bytes })
    };
    let f64_le = |rest: &mut &'a [u8]| -> Result<f64, DecodeError> { take_f64(rest).ok_or_else(|| trunc(rest)) };
    // Counts come from disk: never pre-allocate from them beyond what the bytes can hold.
    let count = |rest: &mut &'a [u8]| -> Result<usize, DecodeError> {
        let n = get_uvarint(rest).and_then(|n| usize::try_from(n).ok()).ok_or_else(|| trunc(rest))?;
        if n > rest.len() {
            return Err(trunc(rest));
        }
        Ok(n)
    };
    let sref = get_uvarint(rest).ok_or_else(|| trunc(rest))?;
    let next_at = get_varint(rest).ok_or_else(|| trunc(rest))?;
    let last_value = f64_le(rest)?;
    let mut c = SeriesChunks { sref, next_at, last_value, ..SeriesChunks::default() };
    for _ in 0..count(rest)? {
        c.sealed.push(chunk(rest)?);
    }
    let (&has_open, after) = rest.split_first().ok_or_else(|| trunc(rest))?;
    *rest = after;
    if has_open == 1 {
        c.open = Some(chunk(rest)?);
    }
    for _ in 0..count(rest)? {
        c.ooo_sealed.push(chunk(rest)?);
    }
    for _ in 0..count(rest)? {
        let t = get_varint(rest).ok_or_else(|| trunc(rest))?;
        c.ooo_open.push((t, f64_le(rest)?));
    }
    Ok(c)
}

fn decode_series_histogram_chunks<'a>(
    rest: &mut &'a [u8],
    start_len: usize,
) -> Result<SeriesHistogramChunks<'a>, DecodeError> {
    let trunc = |rest: &[u8]| DecodeError::Truncated(start_len - rest.len());
    let sref = get_uvarint(rest).ok_or_else(|| trunc(rest))?;
    let n = get_uvarint(rest).and_then(|n| usize::try_from(n).ok()).ok_or_else(|| trunc(rest))?;
    // A count from disk: each chunk takes at least 4 bytes, so never more than the bytes can hold.
    if n > rest.len() {
        return Err(trunc(rest));
    }
    let mut chunks = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let at = start_len - rest.len();
        let (&encoding, after) = rest.split_first().ok_or_else(|| trunc(rest))?;
        *rest = after;
        let float = match encoding {
            ENCODING_HISTOGRAM => false,
            ENCODING_FLOAT_HISTOGRAM => true,
            _ => return Err(DecodeError::BadValue(at)),
        };
        let min_t = get_varint(rest).ok_or_else(|| trunc(rest))?;
        let max_t = get_varint(rest).ok_or_else(|| trunc(rest))?;
        let len = get_uvarint(rest).and_then(|l| usize::try_from(l).ok()).ok_or_else(|| trunc(rest))?;
        let bytes = rest.get(..len).ok_or_else(|| trunc(rest))?;
        *rest = rest.get(len..).unwrap_or_default();
        chunks.push(StoredHistogramChunk { float, min_t, max_t, bytes });
    }
    Ok(SeriesHistogramChunks { sref, chunks })
}

fn get_str<'a>(rest: &mut &'a [u8], start_len: usize) -> Result<&'a str, DecodeError> {
    let at = start_len - rest.len();
    let len = get_uvarint(rest).ok_or(DecodeError::Truncated(at))?;
    let len = usize::try_from(len).map_err(|_| DecodeError::Truncated(at))?;
    let bytes = rest.get(..len).ok_or(DecodeError::Truncated(at))?;
    *rest = rest.get(len..).unwrap_or_default();
    std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "x")]).unwrap();
        let mut buf = Vec::new();
        encode_series(&mut buf, 7, &l);
        let mut samples = Vec::new();
        let Record::Series(series) = decode(&buf, &mut samples).unwrap() else { panic!("not a series record") };
        assert_eq!(series, vec![(7, l)]);
        let mut rec = SamplesRecord::default();
        rec.push(RefSample { sref: 7, t: -5, v: f64::NAN });
        rec.push(RefSample { sref: 9, t: i64::MAX, v: 1.5 });
        rec.push(RefSample { sref: 0, t: i64::MIN, v: -0.0 });
        rec.push(RefSample { sref: u64::MAX, t: 1, v: 2.0 });
        assert_eq!(rec.as_bytes()[0], RecordType::SampleDeltas as u8);
        assert!(matches!(decode(rec.as_bytes(), &mut samples).unwrap(), Record::Samples));
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].t, -5);
        assert!(samples[0].v.is_nan());
        assert_eq!(samples[1], RefSample { sref: 9, t: i64::MAX, v: 1.5 });
        assert_eq!((samples[2].sref, samples[2].t), (0, i64::MIN));
        assert!(samples[2].v == 0.0 && samples[2].v.is_sign_negative());
        assert_eq!(samples[3], RefSample { sref: u64::MAX, t: 1, v: 2.0 });
    }

    fn spans() -> impl Strategy<Value = Vec<Span>> {
        proptest::collection::vec(
            (any::<i32>(), any::<u32>()).prop_map(|(offset, length)| Span { offset, length }),
            0..4,
        )
    }

    fn floats(n: usize) -> impl Strategy<Value = Vec<f64>> {
        proptest::collection::vec(any::<u64>().prop_map(f64::from_bits), 0..n)
    }

    fn histogram_value() -> impl Strategy<Value = HistogramValue> {
        let hint = (0u8..4).prop_map(hint_from_bits);
        let int = (
            hint.clone(),
            any::<i32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            spans(),
            spans(),
            proptest::collection::vec(any::<i64>(), 0..6),
            proptest::collection::vec(any::<i64>(), 0..6),
            floats(4),
        )
            .prop_map(|(h, schema, zt, zc, c, sum, ps, ns, pb, nb, cv)| {
                HistogramValue::Int(Histogram {
                    counter_reset_hint: h,
                    schema,
                    zero_threshold: f64::from_bits(zt),
                    zero_count: zc,
                    count: c,
                    sum: f64::from_bits(sum),
                    positive_spans: ps,
                    negative_spans: ns,
                    positive_buckets: pb,
                    negative_buckets: nb,
                    custom_values: cv,
                })
            });
        let float = (
            hint,
            any::<i32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            spans(),
            spans(),
            floats(6),
            floats(6),
            floats(4),
        )
            .prop_map(|(h, schema, zt, zc, c, sum, ps, ns, pb, nb, cv)| {
                HistogramValue::Float(FloatHistogram {
                    counter_reset_hint: h,
                    schema,
                    zero_threshold: f64::from_bits(zt),
                    zero_count: f64::from_bits(zc),
                    count: f64::from_bits(c),
                    sum: f64::from_bits(sum),
                    positive_spans: ps,
                    negative_spans: ns,
                    positive_buckets: pb,
                    negative_buckets: nb,
                    custom_values: cv,
                })
            });
        prop_oneof![int, float]
    }

    /// Bit-exact equality, counter-reset hints included.
    fn same(a: &HistogramValue, b: &HistogramValue) -> bool {
        let hint = |v: &HistogramValue| match v {
            HistogramValue::Int(h) => h.counter_reset_hint,
            HistogramValue::Float(h) => h.counter_reset_hint,
        };
        crate::head::histograms::identical(a, b) && hint(a) == hint(b)
    }

    #[test]
    fn bad_histogram_flags_and_schemas_are_errors() {
        let mut rec = HistogramsRecord::default();
        rec.push(1, 2, &HistogramValue::Int(Histogram::default()));
        let mut bytes = rec.as_bytes().to_vec();
        // Tag, Δref, Δt, then the flags byte.
        bytes[3] = 0b1000;
        assert_eq!(decode(&bytes, &mut Vec::new()).unwrap_err(), DecodeError::BadValue(3));
        let mut bytes = rec.as_bytes().to_vec();
        bytes.truncate(4);
        put_varint(&mut bytes, i64::from(i32::MAX) + 1);
        assert!(matches!(decode(&bytes, &mut Vec::new()), Err(DecodeError::BadValue(4))));
        // A huge bucket count is refused before anything is allocated for it.
        let mut rec = HistogramsRecord::default();
        rec.push(1, 2, &HistogramValue::Float(FloatHistogram::default()));
        let good = rec.as_bytes().to_vec();
        let spans_at = good.len() - 5; // five empty lists (uvarint 0) end the entry
        let mut bytes = good[..spans_at].to_vec();
        put_uvarint(&mut bytes, u64::MAX);
        assert!(matches!(decode(&bytes, &mut Vec::new()), Err(DecodeError::Truncated(_))));
    }

    /// Records of type 2 (absolute refs and timestamps), as WALs written before delta records hold.
    fn encode_absolute(samples: &[RefSample]) -> Vec<u8> {
        let mut buf = vec![RecordType::Samples as u8];
        for s in samples {
            put_uvarint(&mut buf, s.sref);
            put_varint(&mut buf, s.t);
            buf.extend_from_slice(&s.v.to_bits().to_le_bytes());
        }
        buf
    }

    #[test]
    fn absolute_samples_records_are_still_read() {
        let want = vec![RefSample { sref: 3, t: 1_700_000_000_000, v: 1.0 }, RefSample { sref: 1, t: -1, v: 2.5 }];
        let mut got = Vec::new();
        assert!(matches!(decode(&encode_absolute(&want), &mut got).unwrap(), Record::Samples));
        assert_eq!(got, want);
    }

    #[test]
    fn a_scrape_batch_takes_about_eleven_bytes_per_sample() {
        // 2000 samples of neighbouring series scraped within a few ms of each other.
        let t0 = 1_790_000_000_000;
        let mut rec = SamplesRecord::with_capacity(2000);
        for i in 0..2000u64 {
            rec.push(RefSample { sref: 50_000 + i, t: t0 + (i as i64 % 7), v: i as f64 * 1.5 });
        }
        let per_sample = rec.as_bytes().len() as f64 / 2000.0;
        assert!(per_sample < 11.1, "{per_sample} bytes per sample");
        let old = encode_absolute(&[RefSample { sref: 50_000, t: t0, v: 0.0 }]).len() - 1;
        assert_eq!(old, 17, "the absolute encoding took 17");
    }

    #[test]
    fn chunks_round_trip() {
        let a = [1u8, 2, 3];
        let b = [9u8; 40];
        let c = SeriesChunks {
            sref: 3,
            next_at: 7_200_000,
            last_value: -2.5,
            sealed: vec![StoredChunk { min_t: -5, max_t: 100, bytes: &a }],
            open: Some(StoredChunk { min_t: 101, max_t: 200, bytes: &b }),
            ooo_sealed: vec![StoredChunk { min_t: 0, max_t: 1, bytes: &a }],
            ooo_open: vec![(3, 1.0), (4, f64::INFINITY)],
        };
        let empty = SeriesChunks { sref: 4, ..SeriesChunks::default() };
        let mut buf = Vec::new();
        encode_chunks(&mut buf, &c);
        encode_chunks(&mut buf, &empty);
        let Record::Chunks(got) = decode(&buf, &mut Vec::new()).unwrap() else { panic!("not a chunks record") };
        assert_eq!(got, vec![c, empty]);
        // A truncation is an error or (at the entry boundary) the first entry alone; never a panic.
        for cut in 1..buf.len() {
            match decode(&buf[..cut], &mut Vec::new()) {
                Err(_) => {}
                Ok(Record::Chunks(v)) => assert!(v.len() <= 1, "cut at {cut}"),
                Ok(other) => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn tombstones_round_trip(v in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 1..50)) {
            let mut buf = Vec::new();
            for &(r, a, b) in &v {
                encode_tombstone(&mut buf, r, Interval::new(a, b));
            }
            let Ok(Record::Tombstones(got)) = decode(&buf, &mut Vec::new()) else { panic!("not a tombstones record") };
            let want: Vec<(u64, Interval)> = v.iter().map(|&(r, a, b)| (r, Interval::new(a, b))).collect();
            prop_assert_eq!(&got, &want);
            for cut in 1..buf.len() {
                if let Ok(Record::Tombstones(part)) = decode(&buf[..cut], &mut Vec::new()) {
                    prop_assert_eq!(&part[..], &want[..part.len()]);
                }
            }
        }

        #[test]
        fn histogram_chunks_round_trip(
            series in proptest::collection::vec(
                (any::<u64>(), proptest::collection::vec((any::<bool>(), any::<i64>(), any::<i64>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..4)),
                1..20,
            ),
        ) {
            let want: Vec<SeriesHistogramChunks<'_>> = series
                .iter()
                .map(|(sref, chunks)| SeriesHistogramChunks {
                    sref: *sref,
                    chunks: chunks
                        .iter()
                        .map(|(float, min_t, max_t, bytes)| StoredHistogramChunk { float: *float, min_t: *min_t, max_t: *max_t, bytes })
                        .collect(),
                })
                .collect();
            let mut buf = Vec::new();
            for c in &want {
                encode_histogram_chunks(&mut buf, c);
            }
            let Ok(Record::HistogramChunks(got)) = decode(&buf, &mut Vec::new()) else { panic!("not a histogram chunks record") };
            prop_assert_eq!(&got, &want);
            for cut in 1..buf.len() {
                if let Ok(Record::HistogramChunks(part)) = decode(&buf[..cut], &mut Vec::new()) {
                    prop_assert_eq!(&part[..], &want[..part.len()]);
                }
            }
        }

        #[test]
        fn samples_round_trip(samples in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..100)) {
            let samples: Vec<RefSample> = samples.into_iter().map(|(sref, t, bits)| RefSample { sref, t, v: f64::from_bits(bits) }).collect();
            let mut rec = SamplesRecord::default();
            for &s in &samples {
                rec.push(s);
            }
            let mut got = Vec::new();
            if samples.is_empty() {
                prop_assert!(rec.is_empty());
            } else {
                prop_assert!(matches!(decode(rec.as_bytes(), &mut got), Ok(Record::Samples)));
            }
            let bits = |v: &[RefSample]| v.iter().map(|s| (s.sref, s.t, s.v.to_bits())).collect::<Vec<_>>();
            prop_assert_eq!(bits(&got), bits(&samples));
            // Any truncation is an error or a prefix, never a panic or a different sample.
            let bytes = rec.as_bytes();
            for cut in 1..bytes.len() {
                let mut part = Vec::new();
                if decode(&bytes[..cut], &mut part).is_ok() {
                    prop_assert_eq!(bits(&part), bits(&samples[..part.len()]));
                }
            }
        }

        #[test]
        fn histograms_round_trip(entries in proptest::collection::vec((any::<u64>(), any::<i64>(), histogram_value()), 1..8)) {
            let mut rec = HistogramsRecord::default();
            for (r, t, v) in &entries {
                rec.push(*r, *t, v);
            }
            let Ok(Record::Histograms(got)) = decode(rec.as_bytes(), &mut Vec::new()) else { panic!("not a histograms record") };
            prop_assert_eq!(got.len(), entries.len());
            for (g, (r, t, v)) in got.iter().zip(&entries) {
                prop_assert_eq!((g.sref, g.t), (*r, *t));
                prop_assert!(same(&g.v, v), "{:?} != {:?}", g.v, v);
            }
            // Any truncation is an error or a prefix, never a panic or a different entry.
            let bytes = rec.as_bytes();
            for cut in 1..bytes.len() {
                if let Ok(Record::Histograms(part)) = decode(&bytes[..cut], &mut Vec::new()) {
                    prop_assert!(part.len() < entries.len());
                    for (g, (r, t, v)) in part.iter().zip(&entries) {
                        prop_assert!(g.sref == *r && g.t == *t && same(&g.v, v));
                    }
                }
            }
        }

        #[test]
        fn exemplars_round_trip(entries in proptest::collection::vec(
            (any::<u64>(), any::<i64>(), any::<u64>(), proptest::collection::vec(("[a-z_]{0,8}", ".{0,8}"), 0..4)), 1..20)
        ) {
            let mut rec = ExemplarsRecord::default();
            let want: Vec<RefExemplar> = entries
                .into_iter()
                .map(|(sref, t, bits, labels)| RefExemplar { sref, exemplar: Exemplar { labels, value: f64::from_bits(bits), t } })
                .collect();
            for e in &want {
                rec.push(e.sref, &e.exemplar);
            }
            let Ok(Record::Exemplars(got)) = decode(rec.as_bytes(), &mut Vec::new()) else { panic!("not an exemplars record") };
            let bits = |v: &[RefExemplar]| {
                v.iter().map(|e| (e.sref, e.exemplar.t, e.exemplar.value.to_bits(), e.exemplar.labels.clone())).collect::<Vec<_>>()
            };
            prop_assert_eq!(bits(&got), bits(&want));
            let bytes = rec.as_bytes();
            for cut in 1..bytes.len() {
                if let Ok(Record::Exemplars(part)) = decode(&bytes[..cut], &mut Vec::new()) {
                    prop_assert_eq!(bits(&part), bits(&want[..part.len()]));
                }
            }
        }

        /// A valid histograms record with one byte changed: an error or entries, never a panic.
        #[test]
        fn damaged_histogram_records_never_panic(v in histogram_value(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut rec = HistogramsRecord::default();
            rec.push(3, 1_700_000_000_000, &v);
            rec.push(4, 1_700_000_015_000, &v);
            let mut bytes = rec.as_bytes().to_vec();
            let i = at.index(bytes.len() - 1) + 1;
            bytes[i] = byte;
            let _ = decode(&bytes, &mut Vec::new());
        }

        /// Histogram and exemplar records of random bytes: an error or entries, never a panic.
        #[test]
        fn histogram_and_exemplar_decoding_never_panics(tag in 6u8..8, bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut rec = vec![tag];
            rec.extend_from_slice(&bytes);
            let _ = decode(&rec, &mut Vec::new());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut samples = Vec::new();
            let _ = decode(&bytes, &mut samples);
        }
    }
}
