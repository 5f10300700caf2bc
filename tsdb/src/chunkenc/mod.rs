//! Chunk encodings, bit-compatible with Prometheus: XOR (float samples), and the integer and float
//! native histogram chunks.
//!
//! This module owns the bytes of a chunk (`data` in Prometheus's chunk file records) and nothing
//! else: no I/O, no locks, no chunk cutting policy. See Prometheus's
//! `tsdb/docs/format/chunks.md` and `tsdb/chunkenc/xor.go`.

pub mod bstream;
pub mod float_histogram;
pub mod histogram;
pub mod histogram_meta;
pub mod xor;

pub use float_histogram::{FloatHistogramChunk, FloatHistogramIter};
pub use histogram::{HistogramChunk, HistogramIter};
pub use histogram_meta::{AppendError, CounterResetHeader, CutChunk, CutReason};
pub use xor::{num_samples, XorChunk, XorIter};

/// The encoding byte stored before a chunk's data in Prometheus chunk files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// Float samples, XOR (Gorilla) encoded.
    Xor = 1,
    /// Integer native histograms ([`HistogramChunk`]).
    Histogram = 2,
    /// Float native histograms ([`FloatHistogramChunk`]).
    FloatHistogram = 3,
}

/// Prometheus's encoding byte for integer native histograms.
pub const ENCODING_HISTOGRAM: u8 = Encoding::Histogram as u8;
/// Prometheus's encoding byte for float native histograms.
pub const ENCODING_FLOAT_HISTOGRAM: u8 = Encoding::FloatHistogram as u8;

impl From<Encoding> for u8 {
    fn from(e: Encoding) -> u8 {
        e as u8
    }
}

impl TryFrom<u8> for Encoding {
    type Error = ChunkError;

    fn try_from(byte: u8) -> Result<Self, ChunkError> {
        match byte {
            1 => Ok(Self::Xor),
            2 => Ok(Self::Histogram),
            3 => Ok(Self::FloatHistogram),
            _ => Err(ChunkError::UnknownEncoding { encoding: byte }),
        }
    }
}

/// Why chunk bytes could not be decoded. Cheap to build: no allocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs, reason = "each variant's doc says what its fields are")]
pub enum ChunkError {
    /// Fewer than the 2 header bytes.
    #[error("chunk is {len} bytes, shorter than its 2-byte header")]
    TooShort { len: usize },
    /// The bit stream ended before sample `sample` (0-based) was complete.
    #[error("chunk data ends inside sample {sample}")]
    Truncated { sample: u16 },
    /// The varint timestamp (sample 0) or uvarint delta (sample 1) overflows 64 bits.
    #[error("malformed varint timestamp in sample {sample}")]
    BadVarint { sample: u16 },
    /// A value block declares more than 64 leading + significant bits.
    #[error("value of sample {sample} has {leading} leading zeros and {significant} significant bits")]
    BadValueWindow { sample: u16, leading: u8, significant: u8 },
    /// A histogram chunk's layout has a schema no histogram can have.
    #[error("histogram chunk has unknown schema {schema}")]
    UnknownSchema { schema: i32 },
    /// A histogram chunk's spans declare more buckets than the remaining bits could hold.
    #[error("histogram chunk declares {buckets} buckets with only {bits_left} bits left")]
    TooManyBuckets { buckets: u64, bits_left: u64 },
    /// A histogram of a schema above 8, reduced to schema 8 when read as Prometheus does, has a
    /// span after the first with a negative offset.
    #[error("histogram sample {sample} of schema {schema} cannot be reduced to schema 8: negative span offset")]
    IrreducibleSchema { sample: u16, schema: i32 },
    /// Not a Prometheus chunk encoding.
    #[error("unknown chunk encoding {encoding}")]
    UnknownEncoding { encoding: u8 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_byte() {
        assert_eq!(Encoding::try_from(1), Ok(Encoding::Xor));
        assert_eq!(u8::from(Encoding::Xor), 1);
        assert_eq!(Encoding::try_from(2), Ok(Encoding::Histogram));
        assert_eq!(Encoding::try_from(3), Ok(Encoding::FloatHistogram));
        assert_eq!(u8::from(Encoding::Histogram), 2);
        assert_eq!(u8::from(Encoding::FloatHistogram), 3);
        for b in [0u8, 4, 0x81, 255] {
            assert_eq!(Encoding::try_from(b), Err(ChunkError::UnknownEncoding { encoding: b }));
        }
    }
}

#[cfg(test)]
mod histogram_tests;
#[cfg(test)]
mod xor_tests;
