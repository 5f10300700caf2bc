//! Pieces shared by the histogram chunk encodings (Prometheus's `histogram_meta.go` and
//! `varbit.go`): the 3-byte header with its counter-reset bits, varbit integers, the layout
//! written with the first sample (zero threshold, schema, spans, custom bounds), the XOR value
//! block, and the check that decides whether a histogram may join a chunk or needs a new one.

use super::bstream::{Reader, Writer};
use super::ChunkError;
use crate::histogram::{is_custom_buckets_schema, Span};

/// Header bytes: a big-endian `u16` sample count, then the flag byte.
pub(crate) const HEADER_BYTES: usize = 3;
/// Position of the flag byte holding the counter-reset bits.
pub(crate) const FLAG_POS: usize = 2;
/// The counter-reset bits of the flag byte.
const COUNTER_RESET_MASK: u8 = 0b1100_0000;
/// Bits of Prometheus's stale marker, a NaN.
pub(crate) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// `leading` value meaning "no XOR window yet".
pub(crate) const NO_WINDOW: u8 = 0xff;

/// Whether `v` is the stale marker (bit-exact).
pub(crate) fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The counter-reset bits in a histogram chunk's flag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CounterResetHeader {
    /// Nothing is known about the first sample relative to the previous chunk.
    #[default]
    Unknown,
    /// The chunk starts with a counter reset.
    CounterReset,
    /// The chunk continues the previous one without a reset.
    NotCounterReset,
    /// The chunk holds gauge histograms.
    Gauge,
}

impl CounterResetHeader {
    /// The header's bits in the flag byte.
    pub fn bits(self) -> u8 {
        match self {
            Self::Unknown => 0b0000_0000,
            Self::CounterReset => 0b1000_0000,
            Self::NotCounterReset => 0b0100_0000,
            Self::Gauge => 0b1100_0000,
        }
    }

    /// Reads the header from a flag byte (other bits ignored).
    pub fn from_flag(flag: u8) -> Self {
        match flag & COUNTER_RESET_MASK {
            0b1000_0000 => Self::CounterReset,
            0b0100_0000 => Self::NotCounterReset,
            0b1100_0000 => Self::Gauge,
            _ => Self::Unknown,
        }
    }
}

/// Why a histogram cannot join the current chunk. The caller starts a new chunk with
/// `header` as its counter-reset header and appends the histogram there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutChunk {
    /// What differs.
    pub reason: CutReason,
    /// The counter-reset header for the new chunk, as Prometheus would set it.
    pub header: CounterResetHeader,
}

/// What makes a histogram incompatible with the current chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CutReason {
    /// The chunk already holds `u16::MAX` samples.
    #[error("chunk is full")]
    Full,
    /// Schema, zero threshold or custom bounds differ from the chunk's layout.
    #[error("histogram layout changed (schema, zero threshold or custom bounds)")]
    LayoutChanged,
    /// Same schema, but other buckets. Prometheus recodes the chunk to the merged spans
    /// instead; Strata cuts a new chunk.
    #[error("histogram bucket spans changed")]
    SpansChanged,
    /// A counter reset was detected (or hinted).
    #[error("histogram counter reset")]
    CounterReset,
    /// The previous sample was a stale marker.
    #[error("previous histogram sample is stale")]
    AfterStale,
    /// A gauge histogram for a counter chunk or the reverse.
    #[error("histogram switched between gauge and counter")]
    KindChanged,
}

/// Why a histogram cannot be appended at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// It needs a new chunk.
    #[error("cut a new chunk: {}", .0.reason)]
    Cut(CutChunk),
    /// Its spans describe a different number of buckets than it has (`side` names which).
    #[error("{side} spans describe {spans} buckets, histogram has {buckets}")]
    BucketsMismatch {
        /// "positive" or "negative".
        side: &'static str,
        /// Buckets the spans describe.
        spans: u64,
        /// Buckets present.
        buckets: usize,
    },
}

impl AppendError {
    pub(crate) fn cut(reason: CutReason, header: CounterResetHeader) -> Self {
        Self::Cut(CutChunk { reason, header })
    }
}

/// The varbit prefixes after `0` (zero) and before `11111111` (64 bits): `(prefix, prefix bits,
/// value bits)`.
const VARBIT_PREFIXES: [(u64, u32, u32); 7] = [
    (0b10, 2, 3),
    (0b110, 3, 6),
    (0b1110, 4, 9),
    (0b11110, 5, 12),
    (0b111110, 6, 18),
    (0b1111110, 7, 25),
    (0b11111110, 8, 56),
];

/// Writes a varbit signed integer (prefix `0`, `10`+3, `110`+6, `1110`+9, `11110`+12,
/// `111110`+18, `1111110`+25, `11111110`+56, `11111111`+64 bits).
pub(crate) fn put_varbit_int(w: &mut Writer, v: i64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (prefix, plen, n) in VARBIT_PREFIXES {
        if super::xor::bit_range(v, n) {
            w.write_bits(prefix, plen);
            w.write_bits(v as u64, n);
            return;
        }
    }
    w.write_bits(0xff, 8);
    w.write_bits(v as u64, 64);
}

/// Writes a varbit unsigned integer (the prefixes of [`put_varbit_int`]).
pub(crate) fn put_varbit_uint(w: &mut Writer, v: u64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (prefix, plen, n) in VARBIT_PREFIXES {
        if v.leading_zeros() >= 64 - n {
            w.write_bits(prefix, plen);
            w.write_bits(v, n);
            return;
        }
    }
    w.write_bits(0xff, 8);
    w.write_bits(v, 64);
}

/// Reads a varbit prefix: the number of value bits that follow.
fn read_varbit_width(r: &mut Reader<'_>) -> Option<u32> {
    let mut ones = 0;
    while ones < 8 && r.read_bit()? {
        ones += 1;
    }
    Some([0, 3, 6, 9, 12, 18, 25, 56, 64][ones])
}

/// Reads a varbit signed integer; `None` if the stream ends.
pub(crate) fn read_varbit_int(r: &mut Reader<'_>) -> Option<i64> {
    let n = read_varbit_width(r)?;
    let bits = r.read_bits(n)?;
    if n == 0 || n == 64 {
        return Some(bits as i64);
    }
    // Values above half the range are negative (two's complement in `n` bits).
    if bits > (1u64 << (n - 1)) {
        Some(bits.wrapping_sub(1u64 << n) as i64)
    } else {
        Some(bits as i64)
    }
}

/// Reads a varbit unsigned integer; `None` if the stream ends.
pub(crate) fn read_varbit_uint(r: &mut Reader<'_>) -> Option<u64> {
    let n = read_varbit_width(r)?;
    r.read_bits(n)
}

/// The part of a histogram fixed for a whole chunk, written with its first sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Layout {
    pub schema: i32,
    pub zero_threshold: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    pub custom_values: Vec<f64>,
}

/// Writes the layout: zero threshold, schema, positive spans, negative spans, custom bounds
/// (schema -53 only).
pub(crate) fn write_layout(w: &mut Writer, l: &Layout) {
    put_zero_threshold(w, l.zero_threshold);
    put_varbit_int(w, i64::from(l.schema));
    put_spans(w, &l.positive_spans);
    put_spans(w, &l.negative_spans);
    if is_custom_buckets_schema(l.schema) {
        put_varbit_uint(w, l.custom_values.len() as u64);
        for &b in &l.custom_values {
            put_custom_bound(w, b);
        }
    }
}

/// Reads a layout; `None` if the stream ends. Lengths are read as Go reads them (truncating casts).
pub(crate) fn read_layout(r: &mut Reader<'_>) -> Option<Layout> {
    let zero_threshold = read_zero_threshold(r)?;
    let schema = read_varbit_int(r)? as i32;
    let positive_spans = read_spans(r)?;
    let negative_spans = read_spans(r)?;
    let mut custom_values = Vec::new();
    if is_custom_buckets_schema(schema) {
        let n = read_varbit_uint(r)?;
        // Each bound takes at least one bit, so the loop ends with the stream.
        for _ in 0..n {
            custom_values.push(read_custom_bound(r)?);
        }
    }
    Some(Layout { schema, zero_threshold, positive_spans, negative_spans, custom_values })
}

fn put_spans(w: &mut Writer, spans: &[Span]) {
    put_varbit_uint(w, spans.len() as u64);
    for s in spans {
        put_varbit_uint(w, u64::from(s.length));
        put_varbit_int(w, i64::from(s.offset));
    }
}

fn read_spans(r: &mut Reader<'_>) -> Option<Vec<Span>> {
    let n = read_varbit_uint(r)?;
    let mut spans = Vec::new();
    // Each span takes at least two bits, so the loop ends with the stream.
    for _ in 0..n {
        let length = read_varbit_uint(r)? as u32;
        let offset = read_varbit_int(r)? as i32;
        spans.push(Span { offset, length });
    }
    Some(spans)
}

/// Zero threshold: byte 0 for 0; byte `exp + 243` for a power of two `0.5 * 2^exp` with
/// `exp` in -242..=11; else byte 255 and the 64 float bits.
fn put_zero_threshold(w: &mut Writer, t: f64) {
    if t == 0.0 {
        w.write_byte(0);
        return;
    }
    match frexp(t) {
        (frac, exp) if frac == 0.5 && (-242..=11).contains(&exp) => w.write_byte((exp + 243) as u8),
        _ => {
            w.write_byte(255);
            w.write_bits(t.to_bits(), 64);
        }
    }
}

fn read_zero_threshold(r: &mut Reader<'_>) -> Option<f64> {
    match r.read_byte()? {
        0 => Some(0.0),
        255 => Some(f64::from_bits(r.read_bits(64)?)),
        b => Some(0.5 * 2f64.powi(i32::from(b) - 243)),
    }
}

/// Go's `math.Frexp`: `f = frac * 2^exp` with `|frac|` in [0.5, 1); zero, infinities and NaN
/// are returned unchanged with exponent 0.
pub(crate) fn frexp(f: f64) -> (f64, i32) {
    if f == 0.0 || f.is_nan() || f.is_infinite() {
        return (f, 0);
    }
    let (mut f, mut exp) = (f, 0i32);
    if f.abs() < f64::MIN_POSITIVE {
        // Subnormal: scale into the normal range first.
        f *= (1u64 << 52) as f64;
        exp = -52;
    }
    let bits = f.to_bits();
    exp += ((bits >> 52) & 0x7ff) as i32 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

/// Custom bound: if `b * 1000` is a whole number in 0..=33554430, varbit uint of it plus one;
/// else varbit uint 0 and the 64 float bits.
fn put_custom_bound(w: &mut Writer, b: f64) {
    let tf = b * 1000.0;
    if !(0.0..=33_554_430.0).contains(&tf) || !whole_when_multiplied(b) {
        w.write_bit(false);
        w.write_bits(b.to_bits(), 64);
        return;
    }
    put_varbit_uint(w, tf.round() as u64 + 1);
}

/// Prometheus's `isWholeWhenMultiplied`: `round(b * 1000) / 1000 == b`.
fn whole_when_multiplied(b: f64) -> bool {
    let i = (b * 1000.0).round() as u64;
    i as f64 / 1000.0 == b
}

fn read_custom_bound(r: &mut Reader<'_>) -> Option<f64> {
    match read_varbit_uint(r)? {
        0 => Some(f64::from_bits(r.read_bits(64)?)),
        n => Some((n - 1) as f64 / 1000.0),
    }
}

/// An XOR-compressed float: the last value's bits and the current (leading, trailing) window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct XorState {
    pub value: u64,
    pub leading: u8,
    pub trailing: u8,
}

impl XorState {
    pub fn new(value: u64) -> Self {
        Self { value, leading: NO_WINDOW, trailing: 0 }
    }

    /// Writes the XOR block of `v` (as the XOR chunk's value block) and makes it the last value.
    pub fn write(&mut self, w: &mut Writer, v: u64) {
        let x = v ^ self.value;
        self.value = v;
        if x == 0 {
            w.write_bit(false);
            return;
        }
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            w.write_bits(0b10, 2);
            w.write_bits(x >> self.trailing, 64 - u32::from(self.leading) - u32::from(self.trailing));
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        let sig = 64 - u32::from(leading) - u32::from(trailing);
        w.write_bits(0b11, 2);
        w.write_bits(u64::from(leading), 5);
        w.write_bits(u64::from(sig & 63), 6);
        w.write_bits(x >> trailing, sig);
    }

    /// Reads an XOR block into the last value. `None` if the stream ends or the window is
    /// impossible (more than 64 bits).
    pub fn read(&mut self, r: &mut Reader<'_>) -> Option<()> {
        if !r.read_bit()? {
            return Some(());
        }
        if r.read_bit()? {
            let leading = r.read_bits(5)? as u8;
            let mut sig = r.read_bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            self.leading = leading;
            self.trailing = 64u8.checked_sub(leading)?.checked_sub(sig)?;
        } else if self.leading == NO_WINDOW || u32::from(self.leading) + u32::from(self.trailing) > 64 {
            return None;
        }
        let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
        let bits = r.read_bits(sig)?;
        self.value ^= bits.checked_shl(u32::from(self.trailing)).unwrap_or(0);
        Some(())
    }
}

/// The chunk header of `bytes`: sample count and counter-reset header.
pub(crate) fn read_header(bytes: &[u8]) -> Result<(u16, CounterResetHeader), ChunkError> {
    match bytes.first_chunk::<HEADER_BYTES>() {
        Some(h) => Ok((u16::from_be_bytes([h[0], h[1]]), CounterResetHeader::from_flag(h[FLAG_POS]))),
        None => Err(ChunkError::TooShort { len: bytes.len() }),
    }
}

/// Writes the counter-reset bits into a chunk's flag byte, keeping the other bits.
pub(crate) fn set_header(bytes: &mut [u8], header: CounterResetHeader) {
    if let Some(flag) = bytes.get_mut(FLAG_POS) {
        *flag = (*flag & !COUNTER_RESET_MASK) | header.bits();
    }
}

/// The bucket indexes that spans describe, in order.
fn bucket_indexes(spans: &[Span]) -> impl Iterator<Item = i64> + '_ {
    // A later span starts `offset` buckets after the previous span's end.
    spans
        .iter()
        .scan(0i64, |next, s| {
            let first = next.saturating_add(i64::from(s.offset));
            *next = first.saturating_add(i64::from(s.length));
            Some(first..*next)
        })
        .flatten()
}

/// Whether going from `old` to `new` buckets is a counter reset: a bucket's count went down, or
/// a populated bucket disappeared (Prometheus's `expand*SpansAndBuckets` returning not ok).
/// Counts come as iterators of absolute counts, so that callers holding delta-encoded or
/// XOR-state buckets pass them without building a vector per append.
pub(crate) fn buckets_reset(
    old_spans: &[Span],
    old: impl IntoIterator<Item = f64>,
    new_spans: &[Span],
    new: impl IntoIterator<Item = f64>,
) -> bool {
    let mut n = bucket_indexes(new_spans).zip(new).peekable();
    for (idx, count) in bucket_indexes(old_spans).zip(old) {
        while n.next_if(|&(i, _)| i < idx).is_some() {}
        let reset = match n.peek() {
            Some(&(i, c)) if i == idx => count > c,
            _ => count != 0.0,
        };
        if reset {
            return true;
        }
    }
    false
}

/// Whether spans describe the same buckets (the same span list may be spelled differently, with
/// zero-length spans).
pub(crate) fn same_buckets(a: &[Span], b: &[Span]) -> bool {
    bucket_indexes(a).eq(bucket_indexes(b))
}
