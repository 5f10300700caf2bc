//! Pure request decoding: header checks, size limits, snappy, and a borrowing protobuf walk.
//!
//! Nothing here touches storage or async. [`check_content_type`] picks the protocol; [`v2`] walks
//! 2.0 requests, [`metadata`] reads the metadata of 1.0 ones and [`exemplars`] the exemplars of
//! either. The walk ([`walk`]) reads a `prometheus.WriteRequest`
//! straight from the decompressed buffer and hands out, per `TimeSeries`, borrowed `(&[u8], &[u8])`
//! label pairs (in a caller-reused `Vec`) and an iterator of `(t, v)` samples — no label `String`s, no
//! per-sample allocation. It accepts every byte string that prost accepts for [`crate::proto::WriteRequest`]
//! and yields the same series and samples (property-tested), with two deliberate leniencies:
//! label bytes are not checked for UTF-8 here (the storage checks them only for a label set it does not
//! hold yet, so a series that is not UTF-8 is rejected on its own instead of failing the request), and
//! the contents of exemplars and metadata are only length-checked (they are read by a second pass,
//! [`exemplars`] and [`metadata`], when they are stored). Native histograms are read whole by the
//! walk and again, as [`histogram::Histograms`], when they are appended.
//!
//! Every read is bounds-checked; the only recursion (skipping nested groups of unknown fields) is
//! limited to prost's depth of 100. Any input yields `Ok` or `Err`, never a panic.
#![deny(clippy::indexing_slicing)]

use std::fmt;

use crate::error::Error;

/// The media type of remote-write bodies (1.0 and 2.0).
pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";
/// The `proto` parameter that names remote-write 1.0's message.
pub const PROTO_WRITE_REQUEST_V1: &str = "prometheus.WriteRequest";
/// The only supported `Content-Encoding`.
pub const CONTENT_ENCODING_SNAPPY: &str = "snappy";

/// Prost's recursion limit, kept so that both decoders accept and reject the same nesting.
const RECURSION_LIMIT: u32 = 100;

/// The remote-write protocol a request is in, chosen by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Remote-write 1.0: `prometheus.WriteRequest`.
    V1,
    /// Remote-write 2.0: `io.prometheus.write.v2.Request`.
    V2,
}

/// Picks the protocol from `Content-Type`: absent/empty or `application/x-protobuf` without a
/// `proto` parameter, or with `proto=prometheus.WriteRequest`, is 1.0; with
/// `proto=io.prometheus.write.v2.Request` it is 2.0 (other parameters are ignored). Anything else
/// is refused (415).
pub fn check_content_type(value: Option<&str>) -> std::result::Result<Protocol, Error> {
    let Some(raw) = value else { return Ok(Protocol::V1) };
    if raw.trim().is_empty() {
        return Ok(Protocol::V1);
    }
    let unsupported = || Error::UnsupportedContentType { value: tsdb::labels::clip(raw).into_owned() };
    let mut parts = raw.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(CONTENT_TYPE_PROTOBUF) {
        return Err(unsupported());
    }
    for param in parts {
        let Some((key, val)) = param.split_once('=') else {
            continue;
        };
        if key.trim().eq_ignore_ascii_case("proto") {
            return match val.trim().trim_matches('"') {
                PROTO_WRITE_REQUEST_V1 => Ok(Protocol::V1),
                v2::PROTO_REQUEST_V2 => Ok(Protocol::V2),
                _ => Err(unsupported()),
            };
        }
    }
    Ok(Protocol::V1)
}

/// Checks `Content-Encoding`: absent/empty (assumed snappy, as Prometheus does) or `snappy`.
pub fn check_content_encoding(value: Option<&str>) -> std::result::Result<(), Error> {
    match value.map(str::trim) {
        None | Some("") => Ok(()),
        Some(v) if v.eq_ignore_ascii_case(CONTENT_ENCODING_SNAPPY) => Ok(()),
        Some(v) => Err(Error::UnsupportedContentEncoding { value: tsdb::labels::clip(v).into_owned() }),
    }
}

/// Most bytes one compressed byte of a snappy block can stand for, as a fraction
/// (`SNAPPY_MAX_EXPANSION_NUM / SNAPPY_MAX_EXPANSION_DEN`).
///
/// A block is a varint (the decompressed length) followed by elements, each starting with a tag byte:
/// - a literal (tag `00`) is the tag, 0–4 length bytes and the `n` bytes it produces: under 1 byte
///   out per byte in;
/// - a copy with a 1-byte offset (tag `01`) is 2 bytes producing 4–11 bytes: at most 5.5 per byte;
/// - a copy with a 2-byte offset (tag `10`) is 3 bytes producing 1–64 bytes: at most 64/3 per byte;
/// - a copy with a 4-byte offset (tag `11`) is 5 bytes producing 1–64 bytes: at most 12.8 per byte.
///
/// So no block of `c` bytes decompresses to more than `c * 64 / 3` bytes (counting the length
/// varint as elements only loosens the bound), and a run of one repeated byte, which snappy
/// compresses into 2-byte-offset copies of 64, comes close to it.
pub const SNAPPY_MAX_EXPANSION_NUM: u64 = 64;
/// See [`SNAPPY_MAX_EXPANSION_NUM`].
pub const SNAPPY_MAX_EXPANSION_DEN: u64 = 3;

/// Most bytes a snappy block of `compressed_len` bytes can decompress to ([`SNAPPY_MAX_EXPANSION_NUM`]).
pub fn snappy_max_decompressed_len(compressed_len: usize) -> u64 {
    (compressed_len as u64).saturating_mul(SNAPPY_MAX_EXPANSION_NUM) / SNAPPY_MAX_EXPANSION_DEN
}

/// Decompresses a snappy block into `out` (replacing its contents). The length the block declares is
/// checked before anything is allocated: against what the block's size can possibly expand to (a
/// block claiming more is malformed, however small the claim) and against `max_decompressed_bytes`.
/// A reused `out` is only zero-filled where it has to grow.
pub fn decompress(body: &[u8], max_decompressed_bytes: usize, out: &mut Vec<u8>) -> std::result::Result<(), Error> {
    let declared = snap::raw::decompress_len(body).map_err(Error::Snappy)?;
    let possible = snappy_max_decompressed_len(body.len());
    if declared as u64 > possible {
        out.clear();
        return Err(Error::SnappyLengthImpossible { declared, compressed: body.len(), possible });
    }
    if declared > max_decompressed_bytes {
        out.clear();
        return Err(Error::DecompressedTooLarge { declared, limit: max_decompressed_bytes });
    }
    out.resize(declared, 0);
    let written = snap::raw::Decoder::new().decompress(body, out).map_err(Error::Snappy)?;
    out.truncate(written);
    Ok(())
}

/// What is wrong with a protobuf payload, and where (byte offset in the decompressed payload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct ProtoError {
    /// Offset of the element that could not be read.
    pub offset: usize,
    /// What was wrong.
    pub kind: ProtoErrorKind,
}

/// The kinds of [`ProtoError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoErrorKind {
    /// A varint is truncated or longer than 10 bytes / overflows 64 bits.
    InvalidVarint,
    /// A field key does not fit 32 bits.
    InvalidKey,
    /// Wire type 6 or 7.
    InvalidWireType(u8),
    /// Field number 0.
    TagZero,
    /// A length or fixed-size value runs past the end of its message.
    Truncated,
    /// An end-group tag without its start, or for another field.
    UnexpectedEndGroup,
    /// A known field carries the wrong wire type.
    WrongWireType {
        /// The message.
        message: &'static str,
        /// The field number.
        field: u32,
        /// The wire type found.
        found: u8,
    },
    /// Groups nested deeper than 100.
    RecursionLimit,
}

impl fmt::Display for ProtoErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoErrorKind::InvalidVarint => f.write_str("invalid varint"),
            ProtoErrorKind::InvalidKey => f.write_str("invalid field key"),
            ProtoErrorKind::InvalidWireType(w) => write!(f, "invalid wire type {w}"),
            ProtoErrorKind::TagZero => f.write_str("invalid field number 0"),
            ProtoErrorKind::Truncated => f.write_str("truncated field (length runs past the end of its message)"),
            ProtoErrorKind::UnexpectedEndGroup => f.write_str("unexpected end-group tag"),
            ProtoErrorKind::WrongWireType { message, field, found } => {
                write!(f, "wrong wire type {found} for {message} field {field}")
            }
            ProtoErrorKind::RecursionLimit => f.write_str("nesting exceeds the recursion limit"),
        }
    }
}

type Result<T> = std::result::Result<T, ProtoError>;

const WT_VARINT: u8 = 0;
const WT_FIXED64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_START_GROUP: u8 = 3;
const WT_END_GROUP: u8 = 4;
const WT_FIXED32: u8 = 5;

/// A window `[pos, end)` of the payload. Offsets stay absolute, so errors can say where they are.
#[derive(Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, end: buf.len() }
    }

    fn has_more(&self) -> bool {
        self.pos < self.end
    }

    fn err(&self, offset: usize, kind: ProtoErrorKind) -> ProtoError {
        ProtoError { offset, kind }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64> {
        // Keys, lengths and most timestamps' first bytes: one byte, no loop.
        if self.pos < self.end {
            if let Some(&b) = self.buf.get(self.pos) {
                if b < 0x80 {
                    self.pos += 1;
                    return Ok(u64::from(b));
                }
            }
        }
        self.varint_slow()
    }

    fn varint_slow(&mut self) -> Result<u64> {
        let start = self.pos;
        let mut value = 0u64;
        for count in 0..10u32 {
            let b = match self.buf.get(self.pos) {
                Some(&b) if self.pos < self.end => b,
                _ => return Err(self.err(start, ProtoErrorKind::InvalidVarint)),
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (count * 7);
            if b < 0x80 {
                if count == 9 && b >= 0x02 {
                    return Err(self.err(start, ProtoErrorKind::InvalidVarint));
                }
                return Ok(value);
            }
        }
        Err(self.err(start, ProtoErrorKind::InvalidVarint))
    }

    /// Reads a field key: `(field number, wire type)`, checked as prost checks it.
    #[inline]
    fn key(&mut self) -> Result<(u32, u8)> {
        let start = self.pos;
        let key = self.varint()?;
        let Ok(key) = u32::try_from(key) else {
            return Err(self.err(start, ProtoErrorKind::InvalidKey));
        };
        let wt = (key & 7) as u8;
        if wt > WT_FIXED32 {
            return Err(self.err(start, ProtoErrorKind::InvalidWireType(wt)));
        }
        let field = key >> 3;
        if field == 0 {
            return Err(self.err(start, ProtoErrorKind::TagZero));
        }
        Ok((field, wt))
    }

    /// Advances over `n` bytes, returning the window they occupy.
    fn take(&mut self, n: u64, at: usize) -> Result<Reader<'a>> {
        let remaining = self.end.saturating_sub(self.pos);
        match usize::try_from(n) {
            Ok(n) if n <= remaining => {
                let sub = Reader { buf: self.buf, pos: self.pos, end: self.pos + n };
                self.pos += n;
                Ok(sub)
            }
            _ => Err(self.err(at, ProtoErrorKind::Truncated)),
        }
    }

    fn len_delimited(&mut self) -> Result<Reader<'a>> {
        let at = self.pos;
        let len = self.varint()?;
        self.take(len, at)
    }

    fn fixed64(&mut self) -> Result<u64> {
        let at = self.pos;
        let sub = self.take(8, at)?;
        let bytes: [u8; 8] = sub.bytes().try_into().map_err(|_| self.err(at, ProtoErrorKind::Truncated))?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn bytes(&self) -> &'a [u8] {
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    /// Skips one field of an unknown number, as prost's `skip_field` does (groups included).
    fn skip(&mut self, wt: u8, field: u32, depth: u32) -> Result<()> {
        let at = self.pos;
        if depth == 0 {
            return Err(self.err(at, ProtoErrorKind::RecursionLimit));
        }
        match wt {
            WT_VARINT => self.varint().map(drop),
            WT_FIXED64 => self.take(8, at).map(drop),
            WT_LEN => self.len_delimited().map(drop),
            WT_FIXED32 => self.take(4, at).map(drop),
            WT_START_GROUP => loop {
                let key_at = self.pos;
                let (inner, inner_wt) = self.key()?;
                if inner_wt == WT_END_GROUP {
                    if inner != field {
                        return Err(self.err(key_at, ProtoErrorKind::UnexpectedEndGroup));
                    }
                    return Ok(());
                }
                self.skip(inner_wt, inner, depth - 1)?;
            },
            _ => Err(self.err(at, ProtoErrorKind::UnexpectedEndGroup)),
        }
    }

    fn expect_wt(&self, at: usize, message: &'static str, field: u32, found: u8, want: u8) -> Result<()> {
        if found == want {
            Ok(())
        } else {
            Err(self.err(at, ProtoErrorKind::WrongWireType { message, field, found }))
        }
    }

    /// Enters a nested message as prost does: checks the depth budget, returns the inner budget.
    fn enter(&self, at: usize, depth: u32) -> Result<u32> {
        if depth == 0 {
            Err(self.err(at, ProtoErrorKind::RecursionLimit))
        } else {
            Ok(depth - 1)
        }
    }
}

/// Totals of one walked request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalkSummary {
    /// `TimeSeries` messages.
    pub series: u64,
    /// Float samples.
    pub samples: u64,
    /// Native histogram samples.
    pub histograms: u64,
    /// Exemplars (ignored).
    pub exemplars: u64,
    /// Metadata entries (ignored).
    pub metadata: u64,
}

/// One `TimeSeries` of a request, borrowed from the payload. Its labels are passed beside it.
#[derive(Clone, Copy)]
pub struct SeriesView<'a> {
    /// The series' message from its first sample on (the whole message if it has none).
    msg: Reader<'a>,
    /// The whole series message (exemplars are read from it, see [`exemplars`]).
    whole: Reader<'a>,
    depth: u32,
    /// Float samples in the series.
    pub num_samples: u64,
    /// Native histogram samples in the series.
    pub num_histograms: u64,
    /// Exemplars in the series.
    pub num_exemplars: u64,
    /// Timestamp of the first native histogram sample, if it could be read.
    pub first_histogram_t: Option<i64>,
    /// The series' message from its first histogram on, and the histograms' field number.
    hist: histogram::Histograms<'a>,
}

impl<'a> SeriesView<'a> {
    /// The float samples `(t_ms, v)` in wire order.
    pub fn samples(&self) -> Samples<'a> {
        Samples { msg: self.msg, depth: self.depth }
    }

    /// True if the series carries float samples or native histograms (so it is looked up).
    pub fn has_samples(&self) -> bool {
        self.num_samples + self.num_histograms > 0
    }

    /// The native histogram samples in wire order.
    pub fn histograms(&self) -> histogram::Histograms<'a> {
        self.hist
    }

    /// A view of series message `msg` with nothing counted yet; `version` says how its histograms
    /// are numbered.
    fn new(msg: Reader<'a>, depth: u32, version: histogram::Version) -> SeriesView<'a> {
        let field = match version {
            histogram::Version::V1 => 4,
            histogram::Version::V2 => 3,
        };
        SeriesView {
            msg,
            whole: msg,
            depth,
            num_samples: 0,
            num_histograms: 0,
            num_exemplars: 0,
            first_histogram_t: None,
            hist: histogram::Histograms { msg, depth, field, version },
        }
    }

    /// Checks the histogram message at `at` (`sub`), counting it.
    fn add_histogram(&mut self, at: usize, sub: Reader<'a>, depth: u32) -> Result<()> {
        let t = histogram::check(sub, depth, self.hist.version)?;
        if self.num_histograms == 0 {
            self.first_histogram_t = Some(t);
            self.hist.msg.pos = at;
        }
        self.num_histograms += 1;
        Ok(())
    }
}

/// Iterator over a series' float samples. The series was fully checked before it was handed out,
/// so iteration cannot fail; should it meet bad bytes anyway, it stops.
#[derive(Clone, Copy)]
pub struct Samples<'a> {
    msg: Reader<'a>,
    depth: u32,
}

impl Iterator for Samples<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        while self.msg.has_more() {
            let (field, wt) = self.msg.key().ok()?;
            if field == 2 && wt == WT_LEN {
                let sub = self.msg.len_delimited().ok()?;
                return parse_sample(sub, self.depth).ok();
            }
            self.msg.skip(wt, field, self.depth).ok()?;
        }
        None
    }
}

/// Walks a `WriteRequest`, calling `on_series(labels, series)` for every `TimeSeries` once that series has
/// been checked. `labels` is cleared and refilled for each series (reuse one `Vec` per request); the
/// callback may reorder it (the tsdb appender sorts it in place).
///
/// On `Err` the payload is malformed and the callback may already have seen earlier series: the caller
/// must discard what it did with them (roll back), since the request as a whole is invalid.
pub fn walk<'a, F>(payload: &'a [u8], labels: &mut Vec<(&'a [u8], &'a [u8])>, mut on_series: F) -> Result<WalkSummary>
where
    F: FnMut(&mut Vec<(&'a [u8], &'a [u8])>, &SeriesView<'a>),
{
    let mut r = Reader::new(payload);
    let mut summary = WalkSummary::default();
    let depth = RECURSION_LIMIT;
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect_wt(at, "WriteRequest", field, wt, WT_LEN)?;
                let msg = r.len_delimited()?;
                let inner = r.enter(at, depth)?;
                let view = parse_series(msg, inner, labels)?;
                summary.series += 1;
                summary.samples += view.num_samples;
                summary.histograms += view.num_histograms;
                summary.exemplars += view.num_exemplars;
                on_series(labels, &view);
            }
            3 => {
                r.expect_wt(at, "WriteRequest", field, wt, WT_LEN)?;
                r.len_delimited()?;
                r.enter(at, depth)?;
                summary.metadata += 1;
            }
            _ => r.skip(wt, field, depth)?,
        }
    }
    Ok(summary)
}

fn parse_series<'a>(msg: Reader<'a>, depth: u32, labels: &mut Vec<(&'a [u8], &'a [u8])>) -> Result<SeriesView<'a>> {
    labels.clear();
    let mut view = SeriesView::new(msg, depth, histogram::Version::V1);
    let mut r = msg;
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect_wt(at, "TimeSeries", field, wt, WT_LEN)?;
                let sub = r.len_delimited()?;
                let inner = r.enter(at, depth)?;
                labels.push(parse_label(sub, inner)?);
            }
            2 => {
                r.expect_wt(at, "TimeSeries", field, wt, WT_LEN)?;
                let sub = r.len_delimited()?;
                let inner = r.enter(at, depth)?;
                parse_sample(sub, inner)?;
                if view.num_samples == 0 {
                    // Iterating the samples later starts here, not at the labels.
                    view.msg.pos = at;
                }
                view.num_samples += 1;
            }
            3 => {
                r.expect_wt(at, "TimeSeries", field, wt, WT_LEN)?;
                r.len_delimited()?;
                r.enter(at, depth)?;
                view.num_exemplars += 1;
            }
            4 => {
                r.expect_wt(at, "TimeSeries", field, wt, WT_LEN)?;
                let sub = r.len_delimited()?;
                let inner = r.enter(at, depth)?;
                view.add_histogram(at, sub, inner)?;
            }
            _ => r.skip(wt, field, depth)?,
        }
    }
    Ok(view)
}

/// Reads a `Label` as `(name, value)` bytes. The last occurrence of a field wins.
fn parse_label<'a>(mut r: Reader<'a>, depth: u32) -> Result<(&'a [u8], &'a [u8])> {
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            1 | 2 => {
                r.expect_wt(at, "Label", field, wt, WT_LEN)?;
                let b = r.len_delimited()?.bytes();
                if field == 1 {
                    name = b;
                } else {
                    value = b;
                }
            }
            _ => r.skip(wt, field, depth)?,
        }
    }
    Ok((name, value))
}

fn parse_sample(mut r: Reader<'_>, depth: u32) -> Result<(i64, f64)> {
    let (mut t, mut v) = (0i64, 0f64);
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect_wt(at, "Sample", field, wt, WT_FIXED64)?;
                v = f64::from_bits(r.fixed64()?);
            }
            2 => {
                r.expect_wt(at, "Sample", field, wt, WT_VARINT)?;
                t = r.varint()? as i64;
            }
            _ => r.skip(wt, field, depth)?,
        }
    }
    Ok((t, v))
}

pub mod exemplars;
pub mod histogram;
pub mod metadata;
pub mod v2;

#[cfg(test)]
mod tests;
