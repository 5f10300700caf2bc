#![allow(clippy::indexing_slicing)]

use std::path::Path;

use super::*;
use crate::block::encoding::{crc32c, Dec};
use crate::labels::Labels;

fn ls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_sorted_unchecked(pairs)
}

fn sample() -> Vec<(Labels, Vec<IndexChunk>)> {
    vec![
        (ls(&[("__name__", "up"), ("job", "api")]), vec![IndexChunk { min_t: -100, max_t: 50, chunk_ref: 8 }]),
        (
            ls(&[("__name__", "up"), ("job", "web")]),
            vec![
                IndexChunk { min_t: 0, max_t: 10, chunk_ref: 30 },
                IndexChunk { min_t: 11, max_t: 7_200_000, chunk_ref: 60 },
                IndexChunk { min_t: 7_200_001, max_t: i64::MAX, chunk_ref: (1 << 32) | 8 },
            ],
        ),
        (ls(&[("a", "x")]), vec![]),
    ]
}

fn read_all(r: &IndexReader) -> Result<Vec<(Labels, Vec<IndexChunk>)>, crate::block::BlockError> {
    let mut out = Vec::new();
    for sref in r.all_postings()?.iter() {
        out.push(r.series(sref)?);
    }
    for n in r.label_names() {
        for v in r.label_values(n) {
            r.postings(n, v)?;
        }
    }
    Ok(out)
}

#[test]
fn toc_bytes() {
    let toc = Toc {
        symbols: 5,
        series: 32,
        label_indices: 100,
        label_indices_table: 200,
        postings: 150,
        postings_table: 250,
    };
    let b = toc.encode();
    assert_eq!(&b[..8], &5u64.to_be_bytes());
    assert_eq!(&b[40..48], &250u64.to_be_bytes());
    assert_eq!(&b[48..], &crc32c(&b[..48]).to_be_bytes());
}

#[test]
fn header_and_symbol_table_layout() {
    let b = encode_index(&sample()).unwrap();
    assert_eq!(&b[..5], &[0xBA, 0xAA, 0xD7, 0x00, 2]);
    let r = IndexReader::from_bytes(b.clone(), Path::new("index")).unwrap();
    assert_eq!(r.toc().symbols, 5);
    let syms: Vec<&str> = (0..r.symbol_count() as u32).map(|i| r.symbol(i).unwrap()).collect();
    assert_eq!(syms, ["", "__name__", "a", "api", "job", "up", "web", "x"]);
    assert!(r.symbol(8).is_err());
    // len | count | strings | crc
    let mut d = Dec::new(&b[5..], 5);
    let len = d.be32().unwrap() as usize;
    assert_eq!(d.be32().unwrap(), 8);
    assert_eq!(d.uvarint_str().unwrap(), "");
    assert_eq!(d.uvarint_str().unwrap(), "__name__");
    assert_eq!(&b[9 + len..13 + len], &crc32c(&b[9..9 + len]).to_be_bytes());
}

#[test]
fn series_round_trip_alignment_and_chunk_deltas() {
    let input = sample();
    let b = encode_index(&input).unwrap();
    let r = IndexReader::from_bytes(b.clone(), Path::new("index")).unwrap();
    let refs: Vec<u32> = r.all_postings().unwrap().iter().collect();
    assert_eq!(refs.len(), 3);
    assert!(refs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(u64::from(refs[0]) * 16, r.toc().series.next_multiple_of(16));
    assert_eq!(read_all(&r).unwrap(), input);
    // The first series' body: 2 labels (symbols 1,5 and 4,3), 1 chunk: varint(-100), uvarint(150), uvarint(8).
    let off = refs[0] as usize * 16;
    let len = b[off] as usize;
    assert_eq!(&b[off + 1..off + 1 + len], &[2, 1, 5, 4, 3, 1, 199, 1, 150, 1, 8]);
    // Any other 16-byte position (padding, inside an entry, outside the section) is an error.
    for sref in 0..(b.len() / 16) as u32 + 2 {
        if !refs.contains(&sref) {
            assert!(r.series(sref).is_err(), "ref {sref}");
        }
    }
    assert!(r.series(u32::MAX).is_err());
}

#[test]
fn postings_and_label_values() {
    let r = IndexReader::from_bytes(encode_index(&sample()).unwrap(), Path::new("index")).unwrap();
    let all: Vec<u32> = r.all_postings().unwrap().iter().collect();
    assert_eq!(r.postings("__name__", "up").unwrap().iter().collect::<Vec<_>>(), &all[..2]);
    assert_eq!(r.postings("job", "web").unwrap().iter().collect::<Vec<_>>(), &all[1..2]);
    assert!(r.postings("job", "nope").unwrap().is_empty());
    assert!(r.postings("nope", "x").unwrap().is_empty());
    assert_eq!(r.label_names(), ["__name__", "a", "job"]);
    assert_eq!(r.label_values("job"), ["api", "web"]);
    assert!(r.label_values("").is_empty());
    // Postings lists are 4-byte aligned, their offsets recorded in the table.
    assert_eq!(r.toc().postings % 4, 0);
}

#[test]
fn empty_index() {
    let r = IndexReader::from_bytes(encode_index(&[]).unwrap(), Path::new("index")).unwrap();
    assert!(r.all_postings().unwrap().is_empty());
    assert!(r.label_names().is_empty());
}

#[test]
fn writer_rejects_bad_input() {
    let mut s = sample();
    s.swap(0, 1);
    assert!(encode_index(&s).is_err());
    let mut s = sample();
    s.push(s[0].clone());
    assert!(encode_index(&s).is_err());
    let mut s = sample();
    s[1].1[1].chunk_ref = 1;
    assert!(encode_index(&s).is_err());
}

#[test]
fn damage_never_panics_and_is_detected() {
    let input = sample();
    let b = encode_index(&input).unwrap();
    let toc = IndexReader::from_bytes(b.clone(), Path::new("i")).unwrap().toc();
    for cut in 0..b.len() {
        assert!(IndexReader::from_bytes(b[..cut].to_vec(), Path::new("i")).is_err(), "cut {cut}");
    }
    for i in 0..b.len() {
        for bit in [0x01u8, 0x80] {
            let mut c = b.clone();
            c[i] ^= bit;
            let res = IndexReader::from_bytes(c, Path::new("i")).and_then(|r| read_all(&r));
            // Only padding and the legacy label indices (which readers ignore) may change unnoticed.
            let ignored = (i as u64) >= toc.label_indices && (i as u64) < toc.postings;
            match res {
                Ok(got) => assert!(ignored || got == input, "flip {i}:{bit} changed the result silently"),
                Err(e) => assert!(e.is_corruption(), "{e}"),
            }
        }
    }
}
