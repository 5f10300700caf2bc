//! Tests of [`XorChunk`] and [`XorIter`]: golden Prometheus bytes, round trips, corrupt input, seek.

use super::*;
use proptest::prelude::*;

const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

fn encode(samples: &[(i64, f64)]) -> XorChunk {
    let mut c = XorChunk::new();
    for &(t, v) in samples {
        c.push(t, v);
    }
    c
}

/// Samples as (t, value bits), for bit-exact comparisons (NaN != NaN otherwise).
fn bits(samples: impl IntoIterator<Item = (i64, f64)>) -> Vec<(i64, u64)> {
    samples.into_iter().map(|(t, v)| (t, v.to_bits())).collect()
}

/// Hand derivation of Prometheus's bytes for (1000, 1.0), (2000, 1.0), (3000, 2.0), (4005, 2.5),
/// following `xorAppender.Append` / `writeVDelta` in `tsdb/chunkenc/xor.go`:
///
/// ```text
/// header           00 04                      4 samples, u16 big-endian
/// s0 t=1000        d0 0f                      varint: zigzag(1000) = 2000 = 0b1111_1010000
///                                             -> 0xd0 (0x50|0x80), 0x0f
/// s0 v=1.0         3f f0 00 00 00 00 00 00    64 raw bits of 0x3ff0000000000000
/// s1 Δ=1000        e8 07                      uvarint(1000): 0x68|0x80, 0x07
/// s1 v=1.0         0                          xor = 0
/// s2 Δ=1000        0                          dod = 0
/// s2 v=2.0         11 00001 001011 11111111111
///                                             xor = 0x3ff0.. ^ 0x4000.. = 0x7ff0000000000000,
///                                             no window yet -> '11', leading 1 (5 bits),
///                                             sig = 64-1-52 = 11 (6 bits), x>>52 = 0x7ff (11 bits)
/// s3 Δ=1005        10 00000000000101          dod = 5 fits 14 bits -> '10' + 5 in 14 bits
/// s3 v=2.5         11 01101 000001 1          xor = 0x4000.. ^ 0x4004.. = 0x0004000000000000:
///                                             leading 13 >= 1 but trailing 50 < 52, so a new
///                                             window: '11', 13, sig = 1, the bit '1'
/// ```
/// Stream bits after `e8 07` (56 bits, no padding needed):
/// `0011_0000 1001_0111 1111_1111 1110_0000 0000_0001 0111_0110 1000_0011`
/// = `30 97 ff e0 01 76 83`. The same prefix appears in the promtool-made chunk below.
#[test]
fn golden_hand_derived() {
    let samples = [(1000, 1.0), (2000, 1.0), (3000, 2.0), (4005, 2.5)];
    let expected: &[u8] = &[
        0x00, 0x04, // header
        0xd0, 0x0f, // t0
        0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // v0
        0xe8, 0x07, // Δ1
        0x30, 0x97, 0xff, 0xe0, 0x01, 0x76, 0x83,
    ];
    let c = encode(&samples);
    assert_eq!(c.bytes(), expected);
    assert_eq!(bits(XorIter::new(expected)), bits(samples));
}

/// Chunk `data` written by Prometheus 2.42's promtool, read out of `chunks/000001` after
/// ```text
/// printf '# TYPE m gauge\nm 1.0 1\nm 1.0 2\nm 2.0 3\nm 2.5 4.005\nm 0.1 5.005\nm -7.25 100.0\nm +Inf 101\n# EOF\n' > in.om
/// promtool tsdb create-blocks-from openmetrics in.om out
/// ```
/// (segment header 8 bytes, then uvarint length 56, encoding 1, these 56 bytes, CRC32C).
const PROMTOOL_CHUNK: &[u8] = &[
    0x00, 0x07, 0xd0, 0x0f, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe8, 0x07, 0x30, 0x97, 0xff, 0xe0, 0x01,
    0x76, 0x83, 0xbf, 0xfb, 0xc3, 0xf7, 0xfb, 0xd9, 0x99, 0x99, 0x99, 0x99, 0x99, 0xbc, 0x2d, 0xe5, 0x78, 0x3f, 0xff,
    0xa4, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9b, 0xdd, 0x21, 0xab, 0x5f, 0xf6, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
];
const PROMTOOL_SAMPLES: [(i64, f64); 7] =
    [(1000, 1.0), (2000, 1.0), (3000, 2.0), (4005, 2.5), (5005, 0.1), (100_000, -7.25), (101_000, f64::INFINITY)];

#[test]
fn golden_promtool_chunk() {
    let mut it = XorIter::new(PROMTOOL_CHUNK);
    assert_eq!(bits(it.by_ref()), bits(PROMTOOL_SAMPLES));
    assert_eq!(it.error(), None);
    assert_eq!(encode(&PROMTOOL_SAMPLES).bytes(), PROMTOOL_CHUNK);
    let c = XorChunk::from_bytes(PROMTOOL_CHUNK.to_vec()).map_err(|e| e.to_string());
    assert_eq!(c, Ok(encode(&PROMTOOL_SAMPLES)));
}

#[test]
fn empty_chunk() {
    let c = XorChunk::new();
    assert_eq!(c.bytes(), &[0, 0]);
    assert_eq!(c.num_samples(), 0);
    assert!(c.is_empty());
    assert_eq!(c.first_time(), None);
    assert_eq!(c.last_time(), None);
    assert_eq!(c.iter().next(), None);
    assert_eq!(XorChunk::from_bytes(vec![0, 0]), Ok(XorChunk::new()));
    assert_eq!(XorChunk::with_capacity(0).into_bytes(), vec![0, 0]);
}

#[test]
fn accessors() {
    let c = encode(&[(-5, 1.0), (7, 2.0), (9, 3.0)]);
    assert_eq!(c.num_samples(), 3);
    assert_eq!(c.first_time(), Some(-5));
    assert_eq!(c.last_time(), Some(9));
    let bytes = c.bytes().to_vec();
    assert_eq!(c.into_bytes(), bytes);
}

#[test]
fn special_values_round_trip() {
    let values = [
        f64::from_bits(STALE_NAN_BITS),
        f64::NAN,
        f64::from_bits(0x7ff8_0000_0000_0001), // Go's math.NaN()
        f64::from_bits(0xfff0_0000_dead_beef),
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::MAX,
        f64::MIN,
        f64::from_bits(STALE_NAN_BITS),
    ];
    let samples: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, &v)| (i as i64 * 15_000, v)).collect();
    let c = encode(&samples);
    assert_eq!(bits(c.iter()), bits(samples));
}

#[test]
fn extreme_timestamps_round_trip() {
    let cases: [&[i64]; 5] = [
        &[i64::MIN, i64::MAX],
        &[i64::MIN, 0, i64::MAX],
        &[i64::MIN, i64::MIN + 1, i64::MAX - 1, i64::MAX],
        &[-1, 0, 1 << 40, (1 << 40) + 1, (1 << 41) - 3],
        &[-1_700_000_000_000, -1_699_999_985_000, -15_000, 0, 8192, 16385, 16385 + 8193 + 8192],
    ];
    for ts in cases {
        let samples: Vec<(i64, f64)> = ts.iter().map(|&t| (t, t as f64)).collect();
        let c = encode(&samples);
        assert_eq!(bits(c.iter()), bits(samples.clone()), "{ts:?}");
        assert_eq!(XorChunk::from_bytes(c.bytes().to_vec()), Ok(c));
    }
}

/// Delta-of-delta bucket edges: each range is `-(2^(k-1) - 1) ..= 2^(k-1)`.
#[test]
fn dod_bucket_edges() {
    for dod in [
        0i64,
        1,
        -1,
        8191,
        8192,
        -8191,
        -8192,
        8193,
        65535,
        65536,
        65537,
        -65535,
        -65536,
        524_287,
        524_288,
        524_289,
        -524_287,
        -524_288,
        1 << 40,
        -(1 << 40),
        i64::MAX / 4,
    ] {
        let base = 1_000_000_000_000i64;
        let d1 = 1i64 << 42;
        let samples = [(0, 1.0), (d1, 2.0), (2 * d1 + dod, 3.0), (3 * d1 + 2 * dod, 4.0)];
        let samples = samples.map(|(t, v)| (base + t, v));
        let c = encode(&samples);
        assert_eq!(bits(c.iter()), bits(samples), "dod {dod}");
    }
    // Bucket choice: the dod block of the third sample starts at byte 14 (header 2, varint t0 1,
    // v0 8, uvarint Δ1 3) after the 1-bit value block of the second sample.
    let prefix_ones = |dod: i64| {
        let c = encode(&[(0, 0.0), (1_000_000, 0.0), (2_000_000 + dod, 0.0)]);
        let mut r = bstream::Reader::new(c.bytes().get(14..).unwrap_or_default());
        assert_eq!(r.read_bit(), Some(false));
        let mut ones = 0;
        while ones < 4 && r.read_bit() == Some(true) {
            ones += 1;
        }
        ones
    };
    let expected = [
        (0, 0),
        (1, 1),
        (8192, 1),
        (-8191, 1),
        (-8192, 2),
        (8193, 2),
        (65536, 2),
        (-65535, 2),
        (-65536, 3),
        (524_288, 3),
        (-524_287, 3),
        (-524_288, 4),
        (524_289, 4),
    ];
    for (dod, ones) in expected {
        assert_eq!(prefix_ones(dod), ones, "dod {dod}");
    }
}

#[test]
fn leading_zeros_are_capped_at_31() {
    // xor = 1: 63 leading zeros, written as 31 with 33 significant bits.
    let samples = [(1, f64::from_bits(0)), (2, f64::from_bits(1)), (3, f64::from_bits(3))];
    let c = encode(&samples);
    assert_eq!(bits(c.iter()), bits(samples));
    // Stream after header(2) + varint(1) + v0(8) + Δ(1): '1 1 11111 100001' + 33 bits ...
    assert_eq!(c.bytes().get(12).copied(), Some(0b1111_1111));
    assert_eq!(c.bytes().get(13).copied(), Some(0b0000_1000));
}

#[test]
fn header_shorter_than_two_bytes() {
    for bytes in [&[][..], &[1][..]] {
        let mut it = XorIter::new(bytes);
        assert_eq!(it.next(), None);
        assert_eq!(it.error(), Some(&ChunkError::TooShort { len: bytes.len() }));
        assert_eq!(XorChunk::from_bytes(bytes.to_vec()), Err(ChunkError::TooShort { len: bytes.len() }));
    }
}

#[test]
fn truncated_and_bad_bytes() {
    // Header claims 2 samples, only one present.
    let mut bytes = encode(&[(1, 1.0)]).into_bytes();
    bytes[1] = 2;
    let mut it = XorIter::new(&bytes);
    assert_eq!(it.next(), Some((1, 1.0)));
    assert_eq!(it.next(), None);
    assert_eq!(it.error(), Some(&ChunkError::Truncated { sample: 1 }));
    assert_eq!(XorChunk::from_bytes(bytes), Err(ChunkError::Truncated { sample: 1 }));

    // Eleven continuation bytes: varint overflow.
    let bytes = [&[0, 1][..], &[0xff; 11]].concat();
    let mut it = XorIter::new(&bytes);
    assert_eq!(it.next(), None);
    assert_eq!(it.error(), Some(&ChunkError::BadVarint { sample: 0 }));

    // A window of 31 leading zeros and 40 significant bits does not fit 64 bits.
    let mut w = bstream::Writer::new(vec![0, 2]);
    w.write_byte(0);
    w.write_bits(0, 64);
    w.write_byte(1);
    w.write_bits(0b11, 2);
    w.write_bits(31, 5);
    w.write_bits(40, 6);
    w.write_bits(0, 40);
    let bytes = w.into_bytes();
    let mut it = XorIter::new(&bytes);
    assert_eq!(it.by_ref().count(), 1);
    assert_eq!(it.error(), Some(&ChunkError::BadValueWindow { sample: 1, leading: 31, significant: 40 }));
}

#[test]
fn trailing_garbage_is_ignored_and_dropped_by_from_bytes() {
    let c = encode(&PROMTOOL_SAMPLES[..3]);
    let mut bytes = c.bytes().to_vec();
    // Set the padding bits of the last byte and append a byte.
    if let Some(last) = bytes.last_mut() {
        *last |= 0x0f;
    }
    bytes.push(0xaa);
    assert_eq!(bits(XorIter::new(&bytes)), bits(PROMTOOL_SAMPLES[..3].iter().copied()));
    let mut reopened = XorChunk::from_bytes(bytes).map_err(|e| e.to_string());
    assert_eq!(reopened.as_ref().map(XorChunk::bytes), Ok(c.bytes()));
    if let Ok(r) = reopened.as_mut() {
        r.push(10_000, 4.0);
    }
    let mut all = PROMTOOL_SAMPLES[..3].to_vec();
    all.push((10_000, 4.0));
    assert_eq!(reopened, Ok(encode(&all)));
}

/// A reuse-window block before any window exists: Prometheus's reader uses (0, 0), so 64 bits.
#[test]
fn reuse_without_window_reads_64_bits() {
    let mut w = bstream::Writer::new(vec![0, 2]);
    w.write_byte(0); // t0 = 0
    w.write_bits(0, 64);
    w.write_byte(1); // Δ = 1
    w.write_bits(0b10, 2);
    w.write_bits(STALE_NAN_BITS, 64);
    let bytes = w.into_bytes();
    assert_eq!(bits(XorIter::new(&bytes)), vec![(0, 0), (1, STALE_NAN_BITS)]);
}

fn seek_chunk() -> XorChunk {
    encode(&[(10, 1.0), (20, 2.0), (30, 3.0), (40, 4.0)])
}

#[test]
fn seek() {
    let c = seek_chunk();
    assert_eq!(c.iter().seek(i64::MIN), Some((10, 1.0)));
    assert_eq!(c.iter().seek(10), Some((10, 1.0)));
    assert_eq!(c.iter().seek(11), Some((20, 2.0)));
    assert_eq!(c.iter().seek(40), Some((40, 4.0)));
    assert_eq!(c.iter().seek(41), None);

    let mut it = c.iter();
    assert_eq!(it.seek(25), Some((30, 3.0)));
    // Never backwards: the current sample satisfies an earlier target.
    assert_eq!(it.seek(5), Some((30, 3.0)));
    assert_eq!(it.seek(30), Some((30, 3.0)));
    assert_eq!(it.next(), Some((40, 4.0)));
    assert_eq!(it.seek(40), Some((40, 4.0)));
    assert_eq!(it.next(), None);
    assert_eq!(it.seek(50), None);

    let mut it = c.iter();
    assert_eq!(it.next(), Some((10, 1.0)));
    assert_eq!(it.seek(20), Some((20, 2.0)));
    assert_eq!(it.next(), Some((30, 3.0)));

    assert_eq!(XorChunk::new().iter().seek(0), None);
    assert_eq!(XorIter::new(&[]).seek(0), None);
}

// ---- property tests ----

fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<u64>().prop_map(f64::from_bits),
        2 => (-3i32..4).prop_map(f64::from),
        2 => (0u32..1000).prop_map(|x| f64::from(x) * 0.25),
        1 => prop::sample::select(vec![
            f64::from_bits(STALE_NAN_BITS),
            f64::NAN,
            f64::from_bits(0x7ff8_0000_0000_0001),
            f64::from_bits(0xfff8_dead_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
        ]),
    ]
}

fn step_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1i64..100,
        4 => 14_000i64..16_000,
        2 => 1i64..1 << 20,
        1 => 1i64..1 << 40,
        1 => 1i64..i64::MAX / 2,
    ]
}

fn start_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -2_000_000_000_000i64..2_000_000_000_000,
        Just(i64::MIN),
        (i64::MAX - (1 << 30))..=i64::MAX,
    ]
}

/// Strictly increasing samples, stopping before the timestamps would overflow.
fn samples_strategy() -> impl Strategy<Value = Vec<(i64, f64)>> {
    (start_strategy(), prop::collection::vec((step_strategy(), value_strategy()), 0..300)).prop_map(|(start, rest)| {
        let mut t = start;
        let mut out = Vec::with_capacity(rest.len());
        for (i, (step, v)) in rest.into_iter().enumerate() {
            if i > 0 {
                match t.checked_add(step) {
                    Some(next) => t = next,
                    None => break,
                }
            }
            out.push((t, v));
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip(samples in samples_strategy()) {
        let c = encode(&samples);
        prop_assert_eq!(usize::from(c.num_samples()), samples.len());
        let mut it = c.iter();
        prop_assert_eq!(bits(it.by_ref()), bits(samples.iter().copied()));
        prop_assert_eq!(it.error(), None);
        prop_assert_eq!(c.first_time(), samples.first().map(|s| s.0));
        prop_assert_eq!(c.last_time(), samples.last().map(|s| s.0));
    }

    #[test]
    fn reopen_then_push_equals_one_go(samples in samples_strategy(), split in any::<prop::sample::Index>()) {
        let k = split.index(samples.len() + 1);
        let (head, tail) = samples.split_at(k);
        let mut c = XorChunk::from_bytes(encode(head).into_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for &(t, v) in tail {
            c.push(t, v);
        }
        prop_assert_eq!(c, encode(&samples));
    }

    #[test]
    fn seek_finds_first_at_or_after(samples in samples_strategy(), target in any::<i64>(), pick in any::<prop::sample::Index>()) {
        let c = encode(&samples);
        // Seek both to a random target and to an existing timestamp.
        let targets = [target, samples.get(pick.index(samples.len().max(1))).map_or(0, |s| s.0)];
        for t in targets {
            let expected = samples.iter().position(|s| s.0 >= t);
            let mut it = c.iter();
            let got = it.seek(t).map(|(ts, v)| (ts, v.to_bits()));
            prop_assert_eq!(got, expected.map(|i| (samples[i].0, samples[i].1.to_bits())));
            let rest = bits(it);
            let want = expected.map_or(vec![], |i| bits(samples[i + 1..].iter().copied()));
            prop_assert_eq!(rest, want);
        }
    }

    #[test]
    fn truncation_yields_a_prefix(samples in samples_strategy(), cut in any::<prop::sample::Index>()) {
        let c = encode(&samples);
        let full = c.bytes();
        let len = cut.index(full.len() + 1);
        let mut it = XorIter::new(&full[..len]);
        let got = bits(it.by_ref());
        let want = bits(samples.iter().copied());
        prop_assert!(got.len() <= want.len());
        prop_assert_eq!(&got[..], &want[..got.len()]);
        if len < full.len() && !samples.is_empty() {
            prop_assert!(it.error().is_some());
        }
    }

    #[test]
    fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..400), small_count in any::<bool>(), target in any::<i64>()) {
        if small_count && bytes.len() >= 2 {
            bytes[0] = 0;
            bytes[1] %= 32;
        }
        let mut it = XorIter::new(&bytes);
        let n = it.by_ref().count();
        prop_assert!(n <= usize::from(u16::from_be_bytes([bytes.first().copied().unwrap_or(0), bytes.get(1).copied().unwrap_or(0)])));
        let _ = XorIter::new(&bytes).seek(target);
        if let Ok(mut c) = XorChunk::from_bytes(bytes.clone()) {
            // A reopened chunk keeps working: its samples plus one more decode cleanly.
            prop_assert_eq!(usize::from(c.num_samples()), n);
            let before = bits(c.iter());
            let t = c.last_time().map_or(0, |t| t.wrapping_add(1));
            if c.num_samples() < u16::MAX && c.last_time() != Some(i64::MAX) {
                c.push(t, 1.5);
                let after = bits(c.iter());
                prop_assert_eq!(&after[..before.len()], &before[..]);
                prop_assert_eq!(after.last().copied(), Some((t, 1.5f64.to_bits())));
            }
        }
    }

    #[test]
    fn flipped_bits_never_panic(samples in samples_strategy(), flips in prop::collection::vec(any::<prop::sample::Index>(), 1..4)) {
        let mut bytes = encode(&samples).into_bytes();
        for f in flips {
            let bit = f.index(bytes.len() * 8);
            bytes[bit / 8] ^= 0x80 >> (bit % 8);
        }
        let mut it = XorIter::new(&bytes);
        let n = it.by_ref().count();
        let _ = it.error();
        if let Ok(c) = XorChunk::from_bytes(bytes) {
            prop_assert_eq!(usize::from(c.num_samples()), n);
        }
    }
}
