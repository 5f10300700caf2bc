//! Prometheus's float histogram chunk (encoding 3): an appendable [`FloatHistogramChunk`] and a
//! decoding [`FloatHistogramIter`].
//!
//! Bytes: the 3-byte header of the integer histogram chunk, then an MSB-first bit stream.
//! Sample 0: the layout (see `histogram_meta`), the timestamp (varbit int), then count, zero
//! count, sum and each bucket's absolute count as 64 raw float bits. Later samples: the
//! timestamp's delta-of-delta (varbit int), then count, zero count, sum and each bucket as an XOR
//! block against its own previous value (each with its own window). A stale marker sample
//! writes zero count and zero-count blocks against 0 and no buckets.
//!
//! As for integer histograms, a histogram with another layout is reported as
//! [`AppendError::Cut`]; Prometheus's recoding to merged spans is not implemented. Reading
//! reduces schemas 9..=52 to 8, as Prometheus's iterator does.

use super::bstream::{Reader, Writer};
use super::histogram::{check_lengths, decoded_hint};
use super::histogram_meta::{
    buckets_reset, is_stale, put_varbit_int, read_header, read_layout, read_varbit_int, same_buckets, set_header,
    write_layout, AppendError, CounterResetHeader, CutReason, Layout, XorState, HEADER_BYTES,
};
use super::ChunkError;
use crate::histogram::{
    count_spans, is_custom_buckets_schema, is_known_schema, CounterResetHint, FloatHistogram, EXPONENTIAL_SCHEMA_MAX,
};

/// An appendable float histogram chunk.
///
/// Invariant: `bytes()` is always a complete Prometheus float histogram chunk of
/// `num_samples()` samples and the appender fields describe its last sample.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatHistogramChunk {
    stream: Writer,
    num_samples: u16,
    layout: Layout,
    t: i64,
    t_delta: i64,
    cnt: XorState,
    zcnt: XorState,
    sum: XorState,
    p_buckets: Vec<XorState>,
    n_buckets: Vec<XorState>,
}

impl Default for FloatHistogramChunk {
    fn default() -> Self {
        Self::new(CounterResetHeader::Unknown)
    }
}

impl FloatHistogramChunk {
    /// An empty chunk whose counter-reset header is `header` (a gauge or counter-reset hint on
    /// the first sample overrides it, as in Prometheus).
    pub fn new(header: CounterResetHeader) -> Self {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&[0; HEADER_BYTES]);
        set_header(&mut bytes, header);
        Self {
            stream: Writer::new(bytes),
            num_samples: 0,
            layout: Layout::default(),
            t: 0,
            t_delta: 0,
            cnt: XorState::new(0),
            zcnt: XorState::new(0),
            sum: XorState::new(0),
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
        }
    }

    /// The chunk's counter-reset header.
    pub fn counter_reset_header(&self) -> CounterResetHeader {
        read_header(self.bytes()).map(|(_, h)| h).unwrap_or_default()
    }

    /// Number of samples.
    pub fn num_samples(&self) -> u16 {
        self.num_samples
    }

    /// The chunk's bytes as Prometheus stores them.
    pub fn bytes(&self) -> &[u8] {
        self.stream.bytes()
    }

    /// Iterates over the samples.
    pub fn iter(&self) -> FloatHistogramIter<'_> {
        FloatHistogramIter::new(self.bytes())
    }

    /// Reopens a chunk's bytes for appending: decodes every sample to restore the appender's
    /// state and drops bytes after the last sample's padding.
    pub fn from_bytes(mut bytes: Vec<u8>) -> Result<Self, ChunkError> {
        let mut it = FloatHistogramIter::new(&bytes);
        if let Some(Err(e)) = it.by_ref().find(Result::is_err) {
            return Err(e);
        }
        let bits = it.r.bits_read();
        let FloatHistogramIter { read, layout, t, t_delta, cnt, zcnt, sum, p_buckets, n_buckets, .. } = it;
        bytes.truncate(HEADER_BYTES + bits.div_ceil(8));
        // `(8 - bits % 8) % 8` is at most 7.
        let free = ((8 - bits % 8) % 8) as u32;
        Ok(Self {
            stream: Writer::with_free_bits(bytes, free),
            num_samples: read,
            layout,
            t,
            t_delta,
            cnt,
            zcnt,
            sum,
            p_buckets,
            n_buckets,
        })
    }

    fn same_spans(&self, h: &FloatHistogram) -> bool {
        (h.positive_spans == self.layout.positive_spans || same_buckets(&h.positive_spans, &self.layout.positive_spans))
            && (h.negative_spans == self.layout.negative_spans
                || same_buckets(&h.negative_spans, &self.layout.negative_spans))
    }

    /// Whether `h` may join this chunk, as Prometheus's `appendable`/`appendableGauge` decide.
    fn appendable(&self, h: &FloatHistogram) -> Result<(), AppendError> {
        use CounterResetHeader as H;
        let header = self.counter_reset_header();
        let prev_stale = is_stale(f64::from_bits(self.sum.value));
        let same_layout = h.schema == self.layout.schema && h.zero_threshold == self.layout.zero_threshold;
        let bounds_match = !is_custom_buckets_schema(h.schema) || h.custom_values == self.layout.custom_values;
        if h.counter_reset_hint == CounterResetHint::Gauge {
            if header != H::Gauge {
                return Err(AppendError::cut(CutReason::KindChanged, H::Gauge));
            }
            if is_stale(h.sum) {
                return Ok(());
            }
            if prev_stale {
                return Err(AppendError::cut(CutReason::AfterStale, H::Gauge));
            }
            if !same_layout || !bounds_match {
                return Err(AppendError::cut(CutReason::LayoutChanged, H::Gauge));
            }
            if !self.same_spans(h) {
                return Err(AppendError::cut(CutReason::SpansChanged, H::Gauge));
            }
            return Ok(());
        }
        if header == H::Gauge {
            return Err(AppendError::cut(CutReason::KindChanged, H::Unknown));
        }
        if h.counter_reset_hint == CounterResetHint::CounterReset {
            return Err(AppendError::cut(CutReason::CounterReset, H::CounterReset));
        }
        if is_stale(h.sum) {
            return Ok(());
        }
        if prev_stale {
            return Err(AppendError::cut(CutReason::AfterStale, H::Unknown));
        }
        if h.count < f64::from_bits(self.cnt.value) {
            return Err(AppendError::cut(CutReason::CounterReset, H::CounterReset));
        }
        if !same_layout {
            return Err(AppendError::cut(CutReason::LayoutChanged, H::Unknown));
        }
        if !bounds_match {
            return Err(AppendError::cut(CutReason::CounterReset, H::CounterReset));
        }
        if h.zero_count < f64::from_bits(self.zcnt.value) {
            return Err(AppendError::cut(CutReason::CounterReset, H::CounterReset));
        }
        if buckets_reset(
            &self.layout.positive_spans,
            bucket_values(&self.p_buckets),
            &h.positive_spans,
            h.positive_buckets.iter().copied(),
        ) || buckets_reset(
            &self.layout.negative_spans,
            bucket_values(&self.n_buckets),
            &h.negative_spans,
            h.negative_buckets.iter().copied(),
        ) {
            return Err(AppendError::cut(CutReason::CounterReset, H::CounterReset));
        }
        if !self.same_spans(h) {
            return Err(AppendError::cut(CutReason::SpansChanged, H::NotCounterReset));
        }
        Ok(())
    }

    /// The counter-reset header Prometheus gives a chunk cut before `h` although `h` could join
    /// this one (a chunk cut for its size): `h`'s relation to this chunk's last sample, as for
    /// a cut [`Self::append`] reports. `Unknown` for an empty chunk.
    pub fn next_chunk_header(&self, h: &FloatHistogram) -> CounterResetHeader {
        if self.num_samples == 0 {
            return CounterResetHeader::Unknown;
        }
        match self.appendable(h) {
            Ok(()) if self.counter_reset_header() == CounterResetHeader::Gauge => CounterResetHeader::Gauge,
            Ok(()) => CounterResetHeader::NotCounterReset,
            Err(AppendError::Cut(cut)) => cut.header,
            Err(AppendError::BucketsMismatch { .. }) => CounterResetHeader::Unknown,
        }
    }

    /// Appends `h` at `t` (the caller keeps timestamps increasing). Fails, leaving the chunk
    /// unchanged, when the spans and buckets of `h` disagree in number or when `h` needs a new
    /// chunk.
    pub fn append(&mut self, t: i64, h: &FloatHistogram) -> Result<(), AppendError> {
        let stale = is_stale(h.sum);
        if !stale {
            check_lengths("positive", &h.positive_spans, h.positive_buckets.len())?;
            check_lengths("negative", &h.negative_spans, h.negative_buckets.len())?;
        }
        if self.num_samples == u16::MAX {
            // The next chunk's header says how `h` relates to this chunk's last sample.
            self.appendable(h)?;
            let header = if self.counter_reset_header() == CounterResetHeader::Gauge {
                CounterResetHeader::Gauge
            } else {
                CounterResetHeader::NotCounterReset
            };
            return Err(AppendError::cut(CutReason::Full, header));
        }
        if self.num_samples == 0 {
            match h.counter_reset_hint {
                CounterResetHint::Gauge => set_header(self.stream.bytes_mut(), CounterResetHeader::Gauge),
                CounterResetHint::CounterReset => set_header(self.stream.bytes_mut(), CounterResetHeader::CounterReset),
                _ => {}
            }
        } else {
            self.appendable(h)?;
        }
        let empty;
        let h = if stale {
            empty = FloatHistogram { sum: h.sum, ..FloatHistogram::default() };
            &empty
        } else {
            h
        };
        self.write(t, h);
        Ok(())
    }

    fn write(&mut self, t: i64, h: &FloatHistogram) {
        let w = &mut self.stream;
        let mut t_delta = 0i64;
        if self.num_samples == 0 {
            self.layout = Layout {
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                positive_spans: h.positive_spans.clone(),
                negative_spans: h.negative_spans.clone(),
                custom_values: h.custom_values.clone(),
            };
            write_layout(w, &self.layout);
            put_varbit_int(w, t);
            for v in [h.count, h.zero_count, h.sum] {
                w.write_bits(v.to_bits(), 64);
            }
            self.cnt = XorState::new(h.count.to_bits());
            self.zcnt = XorState::new(h.zero_count.to_bits());
            self.sum = XorState::new(h.sum.to_bits());
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                w.write_bits(b.to_bits(), 64);
            }
            self.p_buckets = h.positive_buckets.iter().map(|b| XorState::new(b.to_bits())).collect();
            self.n_buckets = h.negative_buckets.iter().map(|b| XorState::new(b.to_bits())).collect();
        } else {
            t_delta = t.wrapping_sub(self.t);
            put_varbit_int(w, t_delta.wrapping_sub(self.t_delta));
            self.cnt.write(w, h.count.to_bits());
            self.zcnt.write(w, h.zero_count.to_bits());
            self.sum.write(w, h.sum.to_bits());
            for (state, b) in self.p_buckets.iter_mut().zip(&h.positive_buckets) {
                state.write(w, b.to_bits());
            }
            for (state, b) in self.n_buckets.iter_mut().zip(&h.negative_buckets) {
                state.write(w, b.to_bits());
            }
        }
        self.t = t;
        self.t_delta = t_delta;
        self.num_samples += 1;
        if let Some(count) = self.stream.bytes_mut().get_mut(..2) {
            count.copy_from_slice(&self.num_samples.to_be_bytes());
        }
    }
}

/// Decodes a float histogram chunk. Yields `Err` once and then ends on corrupt bytes.
#[derive(Debug, Clone)]
pub struct FloatHistogramIter<'a> {
    r: Reader<'a>,
    total: u16,
    read: u16,
    header: CounterResetHeader,
    err: Option<ChunkError>,
    layout: Layout,
    t: i64,
    t_delta: i64,
    cnt: XorState,
    zcnt: XorState,
    sum: XorState,
    p_buckets: Vec<XorState>,
    n_buckets: Vec<XorState>,
}

impl<'a> FloatHistogramIter<'a> {
    /// Decodes `bytes` (header included).
    pub fn new(bytes: &'a [u8]) -> Self {
        let (total, header, err, data) = match read_header(bytes) {
            Ok((n, h)) => (n, h, None, bytes.get(HEADER_BYTES..).unwrap_or_default()),
            Err(e) => (0, CounterResetHeader::Unknown, Some(e), &[][..]),
        };
        Self {
            r: Reader::new(data),
            total,
            read: 0,
            header,
            err,
            layout: Layout::default(),
            t: 0,
            t_delta: 0,
            cnt: XorState::new(0),
            zcnt: XorState::new(0),
            sum: XorState::new(0),
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
        }
    }

    /// The chunk's counter-reset header.
    pub fn counter_reset_header(&self) -> CounterResetHeader {
        self.header
    }

    fn decode(&mut self) -> Result<(), ChunkError> {
        let trunc = ChunkError::Truncated { sample: self.read };
        let r = &mut self.r;
        if self.read == 0 {
            self.layout = read_layout(r).ok_or(trunc.clone())?;
            if !is_known_schema(self.layout.schema) {
                return Err(ChunkError::UnknownSchema { schema: self.layout.schema });
            }
            let p = count_spans(&self.layout.positive_spans);
            let n = count_spans(&self.layout.negative_spans);
            // Every bucket of the first sample takes 64 bits: more than fit is corruption,
            // caught before allocating.
            let bits_left = r.bits_left() as u64;
            if p.saturating_add(n).saturating_mul(64) > bits_left {
                return Err(ChunkError::TooManyBuckets { buckets: p.saturating_add(n), bits_left });
            }
            self.t = read_varbit_int(r).ok_or(trunc.clone())?;
            self.cnt = XorState::new(r.read_bits(64).ok_or(trunc.clone())?);
            self.zcnt = XorState::new(r.read_bits(64).ok_or(trunc.clone())?);
            self.sum = XorState::new(r.read_bits(64).ok_or(trunc.clone())?);
            let mut raw = |k: u64| -> Result<Vec<XorState>, ChunkError> {
                (0..k).map(|_| r.read_bits(64).map(XorState::new).ok_or(trunc.clone())).collect()
            };
            self.p_buckets = raw(p)?;
            self.n_buckets = raw(n)?;
            return Ok(());
        }
        self.t_delta = self.t_delta.wrapping_add(read_varbit_int(r).ok_or(trunc.clone())?);
        self.t = self.t.wrapping_add(self.t_delta);
        self.cnt.read(r).ok_or(trunc.clone())?;
        self.zcnt.read(r).ok_or(trunc.clone())?;
        self.sum.read(r).ok_or(trunc.clone())?;
        if is_stale(f64::from_bits(self.sum.value)) {
            return Ok(());
        }
        for state in self.p_buckets.iter_mut().chain(self.n_buckets.iter_mut()) {
            state.read(r).ok_or(trunc.clone())?;
        }
        Ok(())
    }

    /// The decoded sample; schemas above 8 are reduced to 8, as Prometheus's iterators do.
    fn current(&self) -> Result<FloatHistogram, ChunkError> {
        let sum = f64::from_bits(self.sum.value);
        if is_stale(sum) {
            return Ok(FloatHistogram { sum, ..FloatHistogram::default() });
        }
        let mut h = FloatHistogram {
            counter_reset_hint: decoded_hint(self.header, self.read),
            schema: self.layout.schema,
            zero_threshold: self.layout.zero_threshold,
            zero_count: f64::from_bits(self.zcnt.value),
            count: f64::from_bits(self.cnt.value),
            sum,
            positive_spans: self.layout.positive_spans.clone(),
            negative_spans: self.layout.negative_spans.clone(),
            positive_buckets: bucket_values(&self.p_buckets).collect(),
            negative_buckets: bucket_values(&self.n_buckets).collect(),
            custom_values: self.layout.custom_values.clone(),
        };
        if h.schema > EXPONENTIAL_SCHEMA_MAX {
            let (sample, schema) = (self.read, h.schema);
            h.reduce_resolution(EXPONENTIAL_SCHEMA_MAX)
                .map_err(|_| ChunkError::IrreducibleSchema { sample, schema })?;
        }
        Ok(h)
    }
}

impl Iterator for FloatHistogramIter<'_> {
    type Item = Result<(i64, FloatHistogram), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.err.take() {
            self.total = self.read;
            return Some(Err(e));
        }
        if self.read >= self.total {
            return None;
        }
        if let Err(e) = self.decode() {
            self.total = self.read;
            return Some(Err(e));
        }
        match self.current() {
            Ok(h) => {
                self.read += 1;
                Some(Ok((self.t, h)))
            }
            Err(e) => {
                self.total = self.read;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for FloatHistogramIter<'_> {}

/// The counts held in XOR bucket states.
fn bucket_values(states: &[XorState]) -> impl Iterator<Item = f64> + '_ {
    states.iter().map(|x| f64::from_bits(x.value))
}
