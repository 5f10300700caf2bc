//! Prometheus's integer histogram chunk (encoding 2): an appendable [`HistogramChunk`] and a
//! decoding [`HistogramIter`].
//!
//! Bytes: a big-endian `u16` sample count, a flag byte whose top two bits are the
//! [`CounterResetHeader`], then an MSB-first bit stream. Sample 0: the layout (see
//! `histogram_meta`), the timestamp (varbit int), count and zero count (varbit uint), the sum
//! (64 raw bits), and each bucket's delta (varbit int). Later samples: delta-of-deltas (varbit int)
//! of the timestamp, count and zero count, the sum as an XOR block, and for each bucket the
//! delta-of-delta of its delta-encoded value. A stale marker sample writes no buckets and zero
//! count/zero-count delta-of-deltas.
//!
//! Every sample of a chunk has the chunk's layout. When a histogram's layout differs, the
//! appender reports [`AppendError::Cut`] and the caller starts a new chunk; Prometheus instead
//! recodes the chunk to merged spans when buckets are only added (not implemented here).
//! Reading reduces schemas 9..=52 to 8, as Prometheus's iterator does.

use super::bstream::{Reader, Writer};
use super::histogram_meta::{
    buckets_reset, put_varbit_int, put_varbit_uint, read_header, read_layout, read_varbit_int, read_varbit_uint,
    same_buckets, set_header, write_layout, AppendError, CounterResetHeader, CutReason, Layout, XorState, HEADER_BYTES,
};
use super::ChunkError;
use crate::histogram::{
    count_spans, is_custom_buckets_schema, is_known_schema, CounterResetHint, Histogram, Span, EXPONENTIAL_SCHEMA_MAX,
};

/// An appendable integer histogram chunk.
///
/// Invariant: `bytes()` is always a complete Prometheus histogram chunk of `num_samples()`
/// samples and the appender fields describe its last sample.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramChunk {
    stream: Writer,
    num_samples: u16,
    layout: Layout,
    t: i64,
    cnt: u64,
    zcnt: u64,
    t_delta: i64,
    cnt_delta: i64,
    zcnt_delta: i64,
    /// Delta-encoded bucket values of the last sample (positive, then negative).
    p_buckets: Vec<i64>,
    n_buckets: Vec<i64>,
    p_deltas: Vec<i64>,
    n_deltas: Vec<i64>,
    sum: XorState,
}

impl Default for HistogramChunk {
    fn default() -> Self {
        Self::new(CounterResetHeader::Unknown)
    }
}

/// Checks that spans and buckets agree in number, so that the bytes stay decodable.
pub(crate) fn check_lengths(side: &'static str, spans: &[Span], buckets: usize) -> Result<(), AppendError> {
    let n = count_spans(spans);
    if n != buckets as u64 {
        return Err(AppendError::BucketsMismatch { side, spans: n, buckets });
    }
    Ok(())
}

impl HistogramChunk {
    /// An empty chunk whose counter-reset header is `header` (the first sample's hint may
    /// override it: a gauge or counter-reset hint sets the header to match, as in Prometheus).
    pub fn new(header: CounterResetHeader) -> Self {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&[0; HEADER_BYTES]);
        set_header(&mut bytes, header);
        Self {
            stream: Writer::new(bytes),
            num_samples: 0,
            layout: Layout::default(),
            t: 0,
            cnt: 0,
            zcnt: 0,
            t_delta: 0,
            cnt_delta: 0,
            zcnt_delta: 0,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
            p_deltas: Vec::new(),
            n_deltas: Vec::new(),
            sum: XorState::new(0),
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
    pub fn iter(&self) -> HistogramIter<'_> {
        HistogramIter::new(self.bytes())
    }

    /// Reopens a chunk's bytes for appending: decodes every sample to restore the appender's
    /// state and drops bytes after the last sample's padding.
    pub fn from_bytes(mut bytes: Vec<u8>) -> Result<Self, ChunkError> {
        let mut it = HistogramIter::new(&bytes);
        if let Some(Err(e)) = it.by_ref().find(Result::is_err) {
            return Err(e);
        }
        let bits = it.r.bits_read();
        let (num_samples, layout, sum) = (it.read, it.layout, it.sum);
        let (t, cnt, zcnt, t_delta, cnt_delta, zcnt_delta) =
            (it.t, it.cnt, it.zcnt, it.t_delta, it.cnt_delta, it.zcnt_delta);
        let (p_buckets, n_buckets, p_deltas, n_deltas) = (it.p_buckets, it.n_buckets, it.p_deltas, it.n_deltas);
        bytes.truncate(HEADER_BYTES + bits.div_ceil(8));
        // `(8 - bits % 8) % 8` is at most 7.
        let free = ((8 - bits % 8) % 8) as u32;
        Ok(Self {
            stream: Writer::with_free_bits(bytes, free),
            num_samples,
            layout,
            t,
            cnt,
            zcnt,
            t_delta,
            cnt_delta,
            zcnt_delta,
            p_buckets,
            n_buckets,
            p_deltas,
            n_deltas,
            sum,
        })
    }

    /// Whether `h` may join this chunk, as Prometheus's `appendable`/`appendableGauge` decide;
    /// `Err` says why not and which header the new chunk gets.
    fn appendable(&self, h: &Histogram) -> Result<(), AppendError> {
        use CounterResetHeader as H;
        let header = self.counter_reset_header();
        let stale = super::histogram_meta::is_stale(h.sum);
        let prev_stale = super::histogram_meta::is_stale(f64::from_bits(self.sum.value));
        let same_layout = h.schema == self.layout.schema && h.zero_threshold == self.layout.zero_threshold;
        let bounds_match = !is_custom_buckets_schema(h.schema) || h.custom_values == self.layout.custom_values;
        if h.counter_reset_hint == CounterResetHint::Gauge {
            if header != H::Gauge {
                return Err(AppendError::cut(CutReason::KindChanged, H::Gauge));
            }
            if stale {
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
            return Err(AppendError::cut(CutReason::KindChanged, H::NotCounterReset));
        }
        if h.counter_reset_hint == CounterResetHint::CounterReset {
            return Err(AppendError::cut(CutReason::CounterReset, H::CounterReset));
        }
        if stale {
            return Ok(());
        }
        if prev_stale {
            return Err(AppendError::cut(CutReason::AfterStale, H::Unknown));
        }
        if h.count < self.cnt {
            return Err(AppendError::cut(CutReason::CounterReset, H::CounterReset));
        }
        if !same_layout {
            return Err(AppendError::cut(CutReason::LayoutChanged, H::Unknown));
        }
        if !bounds_match {
            return Err(AppendError::cut(CutReason::CounterReset, H::CounterReset));
        }
        if h.zero_count < self.zcnt {
            return Err(AppendError::cut(CutReason::CounterReset, H::CounterReset));
        }
        if buckets_reset(
            &self.layout.positive_spans,
            absolute(&self.p_buckets),
            &h.positive_spans,
            absolute(&h.positive_buckets),
        ) || buckets_reset(
            &self.layout.negative_spans,
            absolute(&self.n_buckets),
            &h.negative_spans,
            absolute(&h.negative_buckets),
        ) {
            return Err(AppendError::cut(CutReason::CounterReset, H::CounterReset));
        }
        if !self.same_spans(h) {
            return Err(AppendError::cut(CutReason::SpansChanged, H::NotCounterReset));
        }
        Ok(())
    }

    fn same_spans(&self, h: &Histogram) -> bool {
        (h.positive_spans == self.layout.positive_spans || same_buckets(&h.positive_spans, &self.layout.positive_spans))
            && (h.negative_spans == self.layout.negative_spans
                || same_buckets(&h.negative_spans, &self.layout.negative_spans))
    }

    /// The counter-reset header Prometheus gives a chunk cut before `h` although `h` could join
    /// this one (a chunk cut for its size): `h`'s relation to this chunk's last sample, as for
    /// a cut [`Self::append`] reports. `Unknown` for an empty chunk.
    pub fn next_chunk_header(&self, h: &Histogram) -> CounterResetHeader {
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
    pub fn append(&mut self, t: i64, h: &Histogram) -> Result<(), AppendError> {
        let stale = super::histogram_meta::is_stale(h.sum);
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
        // A stale marker is written as an empty histogram carrying only the sum.
        let empty;
        let h = if stale {
            empty = Histogram { sum: h.sum, ..Histogram::default() };
            &empty
        } else {
            h
        };
        self.write(t, h);
        Ok(())
    }

    fn write(&mut self, t: i64, h: &Histogram) {
        let w = &mut self.stream;
        let (mut t_delta, mut cnt_delta, mut zcnt_delta) = (0i64, 0i64, 0i64);
        if self.num_samples == 0 {
            self.layout = Layout {
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                positive_spans: h.positive_spans.clone(),
                negative_spans: h.negative_spans.clone(),
                custom_values: h.custom_values.clone(),
            };
            write_layout(w, &self.layout);
            self.p_buckets = vec![0; h.positive_buckets.len()];
            self.n_buckets = vec![0; h.negative_buckets.len()];
            self.p_deltas = vec![0; h.positive_buckets.len()];
            self.n_deltas = vec![0; h.negative_buckets.len()];
            put_varbit_int(w, t);
            put_varbit_uint(w, h.count);
            put_varbit_uint(w, h.zero_count);
            w.write_bits(h.sum.to_bits(), 64);
            self.sum = XorState::new(h.sum.to_bits());
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                put_varbit_int(w, b);
            }
        } else {
            t_delta = t.wrapping_sub(self.t);
            cnt_delta = (h.count as i64).wrapping_sub(self.cnt as i64);
            zcnt_delta = (h.zero_count as i64).wrapping_sub(self.zcnt as i64);
            let mut cnt_dod = cnt_delta.wrapping_sub(self.cnt_delta);
            let mut zcnt_dod = zcnt_delta.wrapping_sub(self.zcnt_delta);
            if super::histogram_meta::is_stale(h.sum) {
                (cnt_dod, zcnt_dod) = (0, 0);
            }
            put_varbit_int(w, t_delta.wrapping_sub(self.t_delta));
            put_varbit_int(w, cnt_dod);
            put_varbit_int(w, zcnt_dod);
            self.sum.write(w, h.sum.to_bits());
            for (new, (old, delta)) in
                h.positive_buckets.iter().zip(self.p_buckets.iter().zip(self.p_deltas.iter_mut()))
            {
                let d = new.wrapping_sub(*old);
                put_varbit_int(w, d.wrapping_sub(*delta));
                *delta = d;
            }
            for (new, (old, delta)) in
                h.negative_buckets.iter().zip(self.n_buckets.iter().zip(self.n_deltas.iter_mut()))
            {
                let d = new.wrapping_sub(*old);
                put_varbit_int(w, d.wrapping_sub(*delta));
                *delta = d;
            }
        }
        self.t = t;
        self.cnt = h.count;
        self.zcnt = h.zero_count;
        self.t_delta = t_delta;
        self.cnt_delta = cnt_delta;
        self.zcnt_delta = zcnt_delta;
        for (dst, src) in self.p_buckets.iter_mut().zip(&h.positive_buckets) {
            *dst = *src;
        }
        for (dst, src) in self.n_buckets.iter_mut().zip(&h.negative_buckets) {
            *dst = *src;
        }
        self.sum.value = h.sum.to_bits();
        self.num_samples += 1;
        if let Some(count) = self.stream.bytes_mut().get_mut(..2) {
            count.copy_from_slice(&self.num_samples.to_be_bytes());
        }
    }
}

/// The counter-reset hint of a decoded sample, as Prometheus's iterator reports it: gauge in a
/// gauge chunk, "no reset" from the second sample on, else unknown.
pub(crate) fn decoded_hint(header: CounterResetHeader, index: u16) -> CounterResetHint {
    match header {
        CounterResetHeader::Gauge => CounterResetHint::Gauge,
        _ if index > 0 => CounterResetHint::NotCounterReset,
        _ => CounterResetHint::Unknown,
    }
}

/// Decodes an integer histogram chunk. Yields `Err` once and then ends on corrupt bytes.
#[derive(Debug, Clone)]
pub struct HistogramIter<'a> {
    r: Reader<'a>,
    total: u16,
    read: u16,
    header: CounterResetHeader,
    err: Option<ChunkError>,
    layout: Layout,
    t: i64,
    cnt: u64,
    zcnt: u64,
    t_delta: i64,
    cnt_delta: i64,
    zcnt_delta: i64,
    p_buckets: Vec<i64>,
    n_buckets: Vec<i64>,
    p_deltas: Vec<i64>,
    n_deltas: Vec<i64>,
    sum: XorState,
}

impl<'a> HistogramIter<'a> {
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
            cnt: 0,
            zcnt: 0,
            t_delta: 0,
            cnt_delta: 0,
            zcnt_delta: 0,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
            p_deltas: Vec::new(),
            n_deltas: Vec::new(),
            sum: XorState::new(0),
        }
    }

    /// The chunk's counter-reset header.
    pub fn counter_reset_header(&self) -> CounterResetHeader {
        self.header
    }

    fn decode(&mut self) -> Result<(), ChunkError> {
        let sample = self.read;
        let trunc = ChunkError::Truncated { sample };
        let r = &mut self.r;
        if self.read == 0 {
            self.layout = read_layout(r).ok_or(trunc.clone())?;
            if !is_known_schema(self.layout.schema) {
                return Err(ChunkError::UnknownSchema { schema: self.layout.schema });
            }
            let p = count_spans(&self.layout.positive_spans);
            let n = count_spans(&self.layout.negative_spans);
            // Every bucket takes at least one bit: more buckets than bits left is corruption,
            // caught before allocating.
            let bits_left = (r.bits_left()) as u64;
            if p.saturating_add(n) > bits_left {
                return Err(ChunkError::TooManyBuckets { buckets: p.saturating_add(n), bits_left });
            }
            self.t = read_varbit_int(r).ok_or(trunc.clone())?;
            self.cnt = read_varbit_uint(r).ok_or(trunc.clone())?;
            self.zcnt = read_varbit_uint(r).ok_or(trunc.clone())?;
            self.sum = XorState::new(r.read_bits(64).ok_or(trunc.clone())?);
            self.p_buckets = (0..p).map(|_| read_varbit_int(r).ok_or(trunc.clone())).collect::<Result<_, _>>()?;
            self.n_buckets = (0..n).map(|_| read_varbit_int(r).ok_or(trunc.clone())).collect::<Result<_, _>>()?;
            self.p_deltas = vec![0; self.p_buckets.len()];
            self.n_deltas = vec![0; self.n_buckets.len()];
            return Ok(());
        }
        self.t_delta = self.t_delta.wrapping_add(read_varbit_int(r).ok_or(trunc.clone())?);
        self.t = self.t.wrapping_add(self.t_delta);
        self.cnt_delta = self.cnt_delta.wrapping_add(read_varbit_int(r).ok_or(trunc.clone())?);
        self.cnt = (self.cnt as i64).wrapping_add(self.cnt_delta) as u64;
        self.zcnt_delta = self.zcnt_delta.wrapping_add(read_varbit_int(r).ok_or(trunc.clone())?);
        self.zcnt = (self.zcnt as i64).wrapping_add(self.zcnt_delta) as u64;
        self.sum.read(r).ok_or(trunc.clone())?;
        if super::histogram_meta::is_stale(f64::from_bits(self.sum.value)) {
            return Ok(());
        }
        for (b, d) in self
            .p_buckets
            .iter_mut()
            .zip(self.p_deltas.iter_mut())
            .chain(self.n_buckets.iter_mut().zip(self.n_deltas.iter_mut()))
        {
            *d = d.wrapping_add(read_varbit_int(r).ok_or(trunc.clone())?);
            *b = b.wrapping_add(*d);
        }
        Ok(())
    }

    /// The decoded sample; schemas above 8 are reduced to 8, as Prometheus's iterators do.
    fn current(&self) -> Result<Histogram, ChunkError> {
        let sum = f64::from_bits(self.sum.value);
        if super::histogram_meta::is_stale(sum) {
            return Ok(Histogram { sum, ..Histogram::default() });
        }
        let mut h = Histogram {
            counter_reset_hint: decoded_hint(self.header, self.read),
            schema: self.layout.schema,
            zero_threshold: self.layout.zero_threshold,
            zero_count: self.zcnt,
            count: self.cnt,
            sum,
            positive_spans: self.layout.positive_spans.clone(),
            negative_spans: self.layout.negative_spans.clone(),
            positive_buckets: self.p_buckets.clone(),
            negative_buckets: self.n_buckets.clone(),
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

impl Iterator for HistogramIter<'_> {
    type Item = Result<(i64, Histogram), ChunkError>;

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

impl std::iter::FusedIterator for HistogramIter<'_> {}

/// The absolute counts of delta-encoded buckets.
fn absolute(deltas: &[i64]) -> impl Iterator<Item = f64> + '_ {
    deltas.iter().scan(0i64, |c, &d| {
        *c = c.wrapping_add(d);
        Some(*c as f64)
    })
}
