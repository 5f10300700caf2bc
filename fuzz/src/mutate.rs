//! Byte-level mutations of valid inputs: bit flips, interesting byte and word values, truncation,
//! splicing two inputs, inserting, deleting and duplicating runs, extreme varints, and a target's
//! dictionary tokens (format keywords, PromQL syntax).

use crate::rng::Rng;

/// Bytes that sit at the edges of signed and unsigned ranges.
const INTERESTING_BYTES: [u8; 6] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0x40];

/// 32-bit values at edges: lengths, counts and offsets are often 32-bit big-endian on disk.
const INTERESTING_WORDS: [u32; 9] = [0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF];

/// Largest input a mutation may produce (mutations that would grow past it are skipped).
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// Varint encodings at the edges: `u64::MAX`, an eleven-byte (overlong) varint, a ten-byte varint
/// whose last byte overflows 64 bits, an unterminated run, zero in two bytes, `i64::MIN` and
/// `i64::MAX` zig-zag encoded, `u32::MAX + 1`, and 2^63.
fn extreme_varint(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let put = |out: &mut Vec<u8>, mut v: u64| {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    match rng.below(9) {
        0 => put(&mut out, u64::MAX),
        1 => out.extend_from_slice(&[0xFF; 10]),
        2 => {
            out.extend_from_slice(&[0xFF; 9]);
            out.push(0x7F);
        }
        3 => out.extend_from_slice(&[0x80; 12]),
        4 => out.extend_from_slice(&[0x80, 0x00]),
        5 => put(&mut out, u64::MAX),     // zig-zag of i64::MIN
        6 => put(&mut out, u64::MAX - 1), // zig-zag of i64::MAX
        7 => put(&mut out, u64::from(u32::MAX) + 1),
        _ => put(&mut out, 1 << 63),
    }
    out
}

/// Mutates inputs taken from a corpus.
#[derive(Debug)]
pub struct Mutator<'a> {
    corpus: &'a [Vec<u8>],
    dictionary: &'a [&'a [u8]],
}

impl<'a> Mutator<'a> {
    /// A mutator splicing from `corpus` and inserting tokens of `dictionary`.
    pub fn new(corpus: &'a [Vec<u8>], dictionary: &'a [&'a [u8]]) -> Mutator<'a> {
        Mutator { corpus, dictionary }
    }

    /// Applies between one and eight mutations (fewer more often) to `data`.
    pub fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        let max = 1 + rng.below(8);
        let rounds = 1 + rng.below(max);
        for _ in 0..rounds {
            self.mutate_once(rng, data);
        }
        data.truncate(MAX_INPUT_BYTES);
    }

    fn mutate_once(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        let len = data.len();
        match rng.below(13) {
            // Flip one bit.
            0 | 1 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            // Set a byte to an edge value.
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
            }
            // Set a byte to a random value.
            3 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.byte();
            }
            // Truncate.
            4 => data.truncate(rng.below(len + 1)),
            // Splice: a prefix of this input and a suffix of another corpus entry.
            5 => {
                if let Some(other) = rng.pick(self.corpus) {
                    let cut = rng.below(len + 1);
                    let from = rng.below(other.len() + 1);
                    data.truncate(cut);
                    data.extend_from_slice(&other[from..]);
                }
            }
            // Insert a run of random or repeated bytes.
            6 => {
                let at = rng.below(len + 1);
                let max = if rng.one_in(8) { 4096 } else { 16 };
                let n = 1 + rng.below(max);
                let run: Vec<u8> =
                    if rng.one_in(2) { vec![rng.byte(); n] } else { (0..n).map(|_| rng.byte()).collect() };
                data.splice(at..at, run);
            }
            // Delete a run.
            7 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                data.drain(at..at + n);
            }
            // Duplicate a run elsewhere.
            8 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(256));
                let run = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, run);
            }
            // Overwrite or insert an extreme varint.
            9 => {
                let v = extreme_varint(rng);
                let at = rng.below(len + 1);
                if rng.one_in(2) {
                    data.splice(at..at, v);
                } else {
                    let end = (at + v.len()).min(len);
                    data.splice(at..end, v);
                }
            }
            // Overwrite a 32-bit field with an edge value, big- or little-endian.
            10 if len >= 4 => {
                let at = rng.below(len - 3);
                let w = INTERESTING_WORDS[rng.below(INTERESTING_WORDS.len())];
                let bytes = if rng.one_in(2) { w.to_be_bytes() } else { w.to_le_bytes() };
                data[at..at + 4].copy_from_slice(&bytes);
            }
            // Add or subtract a small amount to a byte (lengths and counts off by a little).
            11 if len > 0 => {
                let i = rng.below(len);
                let delta = 1 + rng.below(16) as u8;
                data[i] = if rng.one_in(2) { data[i].wrapping_add(delta) } else { data[i].wrapping_sub(delta) };
            }
            // Insert or overwrite with a dictionary token.
            12 => {
                if let Some(tok) = rng.pick(self.dictionary) {
                    let at = rng.below(len + 1);
                    if rng.one_in(2) {
                        data.splice(at..at, tok.iter().copied());
                    } else {
                        let end = (at + tok.len()).min(len);
                        data.splice(at..end, tok.iter().copied());
                    }
                }
            }
            _ => {
                if len > 0 {
                    let i = rng.below(len);
                    data[i] ^= 0xFF;
                } else {
                    data.push(rng.byte());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_inputs_and_stay_bounded() {
        let corpus = vec![b"hello world".to_vec(), vec![0u8; 100]];
        let dict: [&[u8]; 1] = [b"token"];
        let m = Mutator::new(&corpus, &dict);
        let mut rng = Rng::new(1);
        let mut changed = 0;
        for i in 0..5000 {
            let mut d = corpus[i % 2].clone();
            m.mutate(&mut rng, &mut d);
            assert!(d.len() <= MAX_INPUT_BYTES);
            if d != corpus[i % 2] {
                changed += 1;
            }
        }
        assert!(changed > 4000, "only {changed} of 5000 mutations changed the input");
    }
}
