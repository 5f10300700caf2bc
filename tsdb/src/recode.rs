//! Re-encoding the samples of a series' chunks into new chunks, cut as Prometheus cuts them: the
//! block writer (chunks merged, cut by the block range or with deleted samples) and the streamed
//! remote read (runs of overlapping chunks) both use [`recode`].
//!
//! Float samples go into XOR chunks, integer and float histograms into their histogram chunks. A new
//! chunk starts at [`SAMPLES_PER_CHUNK`] samples, where the kind changes, and where the histogram
//! encoder asks for one (a counter reset, a layout change, a gauge/counter switch), with the
//! counter-reset header the encoder names (a chunk cut for its size gets "no reset", or "reset"
//! when the next histogram is one, as Prometheus's head sets it).

use crate::chunk::{ChunkMeta, DecodeError, SAMPLES_PER_CHUNK};
use crate::chunkenc::{AppendError, CounterResetHeader, Encoding, FloatHistogramChunk, HistogramChunk, XorChunk};
use crate::histogram::{FloatHistogram, Histogram, HistogramValue};

/// An encoded chunk and its time range.
#[derive(Debug, Clone)]
pub struct EncodedChunk {
    /// First timestamp.
    pub min_t: i64,
    /// Last timestamp.
    pub max_t: i64,
    /// Number of samples.
    pub samples: u64,
    /// XOR, integer or float histogram.
    pub encoding: Encoding,
    /// The chunk's bytes as Prometheus stores them (after the encoding byte).
    pub bytes: Vec<u8>,
}

/// Why samples could not be re-encoded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecodeError {
    /// An input chunk could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A histogram could not be appended to a new chunk (its spans and buckets disagree).
    #[error("histogram at {t}: {source}")]
    Histogram {
        /// Its timestamp.
        t: i64,
        /// What the encoder said.
        source: AppendError,
    },
}

/// The samples of `chunks` inside `[mint, maxt]` (deleted ones left out), merged in time order with
/// one per timestamp — the first-listed chunk's sample wins a tie, whatever its kind — and encoded
/// into new chunks sorted by time (see the module documentation for where they are cut). A single
/// histogram chunk re-encoded from its first sample keeps its counter-reset header.
pub fn recode<'a>(
    chunks: impl IntoIterator<Item = &'a ChunkMeta>,
    mint: i64,
    maxt: i64,
) -> Result<Vec<EncodedChunk>, RecodeError> {
    let mut all: Vec<(i64, usize, Value)> = Vec::new();
    let mut only: Option<&ChunkMeta> = None;
    for (rank, c) in chunks.into_iter().enumerate() {
        // `only` stays set when there is exactly one chunk.
        only = if rank == 0 { Some(c) } else { None };
        decode_into(c, rank, mint, maxt, &mut all)?;
    }
    let sorted = all.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0));
    if !sorted {
        // Stable within a timestamp by rank; the first of each run is kept.
        all.sort_by_key(|(t, rank, _)| (*t, *rank));
        all.dedup_by_key(|(t, _, _)| *t);
    }
    let header = match (only, all.first()) {
        (Some(c), Some((t, ..))) if *t == c.min_t => c.data.counter_reset_header(),
        _ => CounterResetHeader::Unknown,
    };
    let mut out = Vec::new();
    encode_values(&all, header, &mut out)?;
    Ok(out)
}

/// Float samples, sorted by time with unique timestamps, as XOR chunks of up to
/// [`SAMPLES_PER_CHUNK`], appended to `out`.
pub fn encode_floats(samples: &[(i64, f64)], out: &mut Vec<EncodedChunk>) {
    for part in samples.chunks(SAMPLES_PER_CHUNK) {
        let (Some(first), Some(last)) = (part.first(), part.last()) else { continue };
        let mut c = XorChunk::with_capacity(part.len() * 2 + 16);
        for &(t, v) in part {
            c.push(t, v);
        }
        out.push(EncodedChunk {
            min_t: first.0,
            max_t: last.0,
            samples: part.len() as u64,
            encoding: Encoding::Xor,
            bytes: c.into_bytes(),
        });
    }
}

/// One decoded sample of any kind.
enum Value {
    Float(f64),
    Histogram(HistogramValue),
}

/// The kind of chunk a sample goes into: a new chunk starts where it changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    IntHistogram,
    FloatHistogram,
}

impl Value {
    fn kind(&self) -> Kind {
        match self {
            Value::Float(_) => Kind::Float,
            Value::Histogram(HistogramValue::Int(_)) => Kind::IntHistogram,
            Value::Histogram(HistogramValue::Float(_)) => Kind::FloatHistogram,
        }
    }
}

/// Appends the samples of `c` in `[mint, maxt]` (without its deleted ones) to `out`, tagged `rank`.
fn decode_into(
    c: &ChunkMeta,
    rank: usize,
    mint: i64,
    maxt: i64,
    out: &mut Vec<(i64, usize, Value)>,
) -> Result<(), DecodeError> {
    if !c.overlaps(mint, maxt) {
        return Ok(());
    }
    let err = if c.data.is_histogram() {
        let mut it = c.histograms(mint, maxt);
        out.extend(it.by_ref().map(|(t, h)| (t, rank, Value::Histogram(h))));
        it.error().cloned()
    } else {
        let mut it = c.iter(mint, maxt);
        out.extend(it.by_ref().map(|(t, v)| (t, rank, Value::Float(v))));
        it.error().cloned()
    };
    match err {
        Some(e) => Err(DecodeError::new(c, e)),
        None => Ok(()),
    }
}

/// Encodes samples sorted by time with unique timestamps: a new chunk at each change of kind, at
/// [`SAMPLES_PER_CHUNK`] samples, and where the histogram encoder reports a cut. `header` is the
/// counter-reset header of the first histogram chunk, unless the encoder sets another.
fn encode_values(
    samples: &[(i64, usize, Value)],
    header: CounterResetHeader,
    out: &mut Vec<EncodedChunk>,
) -> Result<(), RecodeError> {
    let mut rest = samples;
    while let Some((first, _)) = rest.split_first() {
        let kind = first.2.kind();
        let len = rest.iter().position(|s| s.2.kind() != kind).unwrap_or(rest.len());
        let (run, tail) = rest.split_at(len);
        rest = tail;
        match kind {
            Kind::Float => {
                let floats: Vec<(i64, f64)> = run
                    .iter()
                    .filter_map(|(t, _, v)| match v {
                        Value::Float(f) => Some((*t, *f)),
                        Value::Histogram(_) => None,
                    })
                    .collect();
                encode_floats(&floats, out);
            }
            Kind::IntHistogram => {
                let hs = run.iter().filter_map(|(t, _, v)| match v {
                    Value::Histogram(HistogramValue::Int(h)) => Some((*t, h)),
                    _ => None,
                });
                encode_histograms::<IntEncoder>(hs, header, out)?;
            }
            Kind::FloatHistogram => {
                let hs = run.iter().filter_map(|(t, _, v)| match v {
                    Value::Histogram(HistogramValue::Float(h)) => Some((*t, h)),
                    _ => None,
                });
                encode_histograms::<FloatEncoder>(hs, header, out)?;
            }
        }
    }
    Ok(())
}

/// The integer and float histogram chunk encoders, for one cutting loop over both.
trait HistogramEncoder {
    type Sample;
    const ENCODING: Encoding;
    fn new(header: CounterResetHeader) -> Self;
    fn append(&mut self, t: i64, h: &Self::Sample) -> std::result::Result<(), AppendError>;
    fn next_chunk_header(&self, h: &Self::Sample) -> CounterResetHeader;
    fn num_samples(&self) -> u16;
    fn bytes(&self) -> &[u8];
}

struct IntEncoder(HistogramChunk);
struct FloatEncoder(FloatHistogramChunk);

impl HistogramEncoder for IntEncoder {
    type Sample = Histogram;
    const ENCODING: Encoding = Encoding::Histogram;
    fn new(header: CounterResetHeader) -> Self {
        IntEncoder(HistogramChunk::new(header))
    }
    fn append(&mut self, t: i64, h: &Histogram) -> std::result::Result<(), AppendError> {
        self.0.append(t, h)
    }
    fn next_chunk_header(&self, h: &Histogram) -> CounterResetHeader {
        self.0.next_chunk_header(h)
    }
    fn num_samples(&self) -> u16 {
        self.0.num_samples()
    }
    fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl HistogramEncoder for FloatEncoder {
    type Sample = FloatHistogram;
    const ENCODING: Encoding = Encoding::FloatHistogram;
    fn new(header: CounterResetHeader) -> Self {
        FloatEncoder(FloatHistogramChunk::new(header))
    }
    fn append(&mut self, t: i64, h: &FloatHistogram) -> std::result::Result<(), AppendError> {
        self.0.append(t, h)
    }
    fn next_chunk_header(&self, h: &FloatHistogram) -> CounterResetHeader {
        self.0.next_chunk_header(h)
    }
    fn num_samples(&self) -> u16 {
        self.0.num_samples()
    }
    fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }
}

/// Encodes histograms of one kind (sorted by time) into chunks of up to [`SAMPLES_PER_CHUNK`],
/// cutting where the encoder asks to, each new chunk with the header the encoder names.
fn encode_histograms<'a, E: HistogramEncoder>(
    samples: impl Iterator<Item = (i64, &'a E::Sample)>,
    header: CounterResetHeader,
    out: &mut Vec<EncodedChunk>,
) -> Result<(), RecodeError>
where
    E::Sample: 'a,
{
    let mut cur = E::new(header);
    let (mut first_t, mut last_t) = (0i64, 0i64);
    let flush = |c: &E, first_t: i64, last_t: i64, out: &mut Vec<EncodedChunk>| {
        if c.num_samples() > 0 {
            out.push(EncodedChunk {
                min_t: first_t,
                max_t: last_t,
                samples: u64::from(c.num_samples()),
                encoding: E::ENCODING,
                bytes: c.bytes().to_vec(),
            });
        }
    };
    for (t, h) in samples {
        if usize::from(cur.num_samples()) >= SAMPLES_PER_CHUNK {
            let next = E::new(cur.next_chunk_header(h));
            flush(&cur, first_t, last_t, out);
            cur = next;
        }
        if cur.num_samples() == 0 {
            first_t = t;
        }
        match cur.append(t, h) {
            Ok(()) => {}
            Err(AppendError::Cut(cut)) => {
                flush(&cur, first_t, last_t, out);
                cur = E::new(cut.header);
                first_t = t;
                cur.append(t, h).map_err(|source| RecodeError::Histogram { t, source })?;
            }
            Err(source) => return Err(RecodeError::Histogram { t, source }),
        }
        last_t = t;
    }
    flush(&cur, first_t, last_t, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::HistogramIter;
    use crate::histogram::Span;

    fn int(count: u64) -> HistogramValue {
        HistogramValue::Int(Histogram { count, zero_count: count, ..Histogram::default() })
    }

    #[test]
    fn kinds_and_resets_cut_chunks_and_ties_keep_the_first() {
        let a = ChunkMeta::raw_histograms(&[(1, int(5)), (2, int(6)), (4, int(1))]).unwrap();
        let b = ChunkMeta::raw(&[(2, 99.0), (3, 3.0)]).unwrap();
        let out = recode([&a, &b], 0, 10).unwrap();
        let got: Vec<(i64, i64, Encoding, u64)> =
            out.iter().map(|c| (c.min_t, c.max_t, c.encoding, c.samples)).collect();
        // 1, 2 (the histogram wins the tie at 2) | the float at 3 | the reset at 4.
        assert_eq!(got, [(1, 2, Encoding::Histogram, 2), (3, 3, Encoding::Xor, 1), (4, 4, Encoding::Histogram, 1)]);
        assert_eq!(HistogramIter::new(&out[2].bytes).counter_reset_header(), CounterResetHeader::Unknown);
        // Without the float between them, the reset is a cut with the reset header.
        let out = recode([&a], 0, 10).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(HistogramIter::new(&out[1].bytes).counter_reset_header(), CounterResetHeader::CounterReset);
    }

    #[test]
    fn a_histogram_whose_spans_and_buckets_disagree_is_an_error() {
        let bad = Histogram {
            count: 1,
            positive_spans: vec![Span { offset: 0, length: 2 }],
            positive_buckets: vec![1],
            ..Histogram::default()
        };
        let c = ChunkMeta::raw_histograms(&[(7, HistogramValue::Int(bad))]).unwrap();
        match recode([&c], 0, 10) {
            Err(RecodeError::Histogram { t: 7, source: AppendError::BucketsMismatch { .. } }) => {}
            other => panic!("{other:?}"),
        }
    }
}
