//! `xor-chunk`: [`tsdb::chunkenc::XorIter`] over arbitrary chunk bytes, iterated to the end and
//! sought. The input is the chunk's bytes (two-byte sample count, then the bit stream).
//!
//! Besides never panicking: a seek on a fresh iterator must return the first sample, in iteration
//! order, whose timestamp is at or after the target, and [`tsdb::chunkenc::XorChunk::from_bytes`]
//! must accept exactly what can be appended to.

use tsdb::chunkenc::{XorChunk as Chunk, XorIter};

use super::Target;

pub(crate) struct XorChunk;

fn chunk(samples: impl IntoIterator<Item = (i64, f64)>) -> Vec<u8> {
    let mut c = Chunk::new();
    for (t, v) in samples {
        c.push(t, v);
    }
    c.into_bytes()
}

impl Target for XorChunk {
    fn name(&self) -> &'static str {
        "xor-chunk"
    }

    fn corpus(&mut self) -> Vec<Vec<u8>> {
        vec![
            chunk((0..120).map(|i| (1_700_000_000_000 + i * 15_000, 100.0 + (i % 7) as f64))),
            chunk((0..50).map(|i| (i * i * 37 - 500, (i as f64).sqrt() * -3.25))),
            chunk([(i64::MIN, f64::NAN), (0, f64::INFINITY), (i64::MAX, -0.0)]),
            chunk([(5, 1.0)]),
            chunk([(1, 1.0), (2, 1.0), (3, 1.0), (1_000_000, f64::from_bits(1))]),
            chunk(std::iter::empty()),
        ]
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let mut it = XorIter::new(input);
        let all: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        let failed = it.error().is_some();
        assert!(it.next().is_none(), "iterator yields after its end");

        // Seek targets: before everything, each of a few sampled timestamps and one past them, after everything.
        let mut targets = vec![i64::MIN, i64::MAX];
        for &(t, _) in all.iter().step_by(all.len() / 4 + 1) {
            targets.push(t);
            targets.push(t.saturating_add(1));
        }
        for t in targets {
            let got = XorIter::new(input).seek(t).map(|(t, v)| (t, v.to_bits()));
            let want = all.iter().copied().find(|&(ts, _)| ts >= t);
            assert_eq!(got, want, "seek({t}) disagrees with iteration");
        }

        // A chunk that decodes without error can be reopened for appending and extended.
        if let Ok(mut c) = Chunk::from_bytes(input.to_vec()) {
            let next_t = all.last().map_or(Some(0), |&(t, _)| t.checked_add(1));
            if let (false, true, Some(t)) = (failed, c.num_samples() < u16::MAX, next_t) {
                c.push(t, 1.0);
                let mut want = all.clone();
                want.push((t, 1f64.to_bits()));
                let got: Vec<(i64, u64)> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
                assert!(
                    got == want,
                    "a reopened chunk reads back {} samples after one append to {}",
                    got.len(),
                    all.len()
                );
            }
        }
        !failed
    }
}
