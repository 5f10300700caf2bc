//! `block`: a persisted block read back ([`tsdb::block::Block::open`], the index reader, the chunk
//! reader, tombstones, meta.json) after one of its files was replaced by mutated bytes.
//!
//! A small valid block (a few series, several chunks each, tombstones on two series) is written
//! once into a scratch directory. Input: a byte choosing the file (bits 0–1: index, chunk segment,
//! meta.json, tombstones) and whether to recompute its checksums (bit 2; see [`super::crc`]), then
//! that file's contents. Each run writes the file, opens the block, lists label names and values,
//! selects all series and a regex-matched subset, and iterates every sample of every chunk; then it
//! restores the file.

use std::path::{Path, PathBuf};

use tsdb::block::tombstones::{self, Tombstones};
use tsdb::block::{write_block, Block, Compaction};
use tsdb::chunk::ChunkMeta;
use tsdb::intervals::Interval;
use tsdb::{Labels, MatchType, Matcher};

use super::crc::{self, Section};
use super::{scratch_dir, SetupError, Target};

const NAME: &str = "block";

/// Files of the block, by the input's selector byte.
const FILES: [&str; 4] = ["index", "chunks/000001", "meta.json", "tombstones"];

pub(crate) struct BlockFiles {
    _scratch: tempfile::TempDir,
    block_dir: PathBuf,
    /// The valid contents of each of [`FILES`].
    pristine: Vec<Vec<u8>>,
    /// Checksummed sections of the pristine index and chunk segment.
    index_sections: Vec<Section>,
    chunk_sections: Vec<Section>,
    matchers: Vec<Matcher>,
}

fn build_err(e: impl std::fmt::Display) -> SetupError {
    SetupError::Build { target: NAME, msg: e.to_string() }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io { target: NAME, path: path.to_path_buf(), source }
}

impl BlockFiles {
    pub(crate) fn new() -> Result<BlockFiles, SetupError> {
        let scratch = scratch_dir(NAME)?;
        let mut series = Vec::new();
        for i in 0..12i64 {
            let name = format!("metric_{}", i % 3);
            let inst = format!("host-{i:02}");
            let job = ["api", "web", "db"][(i % 3) as usize];
            let labels = Labels::from_pairs(&[("__name__", name.as_str()), ("instance", &inst), ("job", job)])
                .map_err(build_err)?;
            let samples: Vec<(i64, f64)> =
                (0..(30 + i * 25)).map(|j| (j * 15_000 + i, (i as f64) * 1.5 + (j as f64).sin() * 1000.0)).collect();
            series.push((labels, ChunkMeta::raw_chunks(&samples)));
        }
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let compaction = Compaction { level: 1, ..Default::default() };
        let meta = write_block(scratch.path(), series, 0, 7_200_000, compaction, None)
            .map_err(build_err)?
            .ok_or_else(|| build_err("the block has no samples"))?;
        let block_dir = scratch.path().join(meta.ulid.to_string());
        let refs: Vec<u32> =
            Block::open(&block_dir).and_then(|b| b.select_refs(&[])).map_err(build_err)?.iter().collect();
        let mut stones = Tombstones::new();
        for &r in refs.iter().step_by(5) {
            stones.add(u64::from(r), Interval::new(30_000, 120_000));
        }
        tombstones::write(&block_dir, &stones).map_err(build_err)?;
        let mut pristine = Vec::new();
        for f in FILES {
            let path = block_dir.join(f);
            pristine.push(std::fs::read(&path).map_err(io_err(&path))?);
        }
        let matchers = vec![
            Matcher::new(MatchType::Regex, "job", "a.*|db").map_err(build_err)?,
            Matcher::new(MatchType::NotEqual, "instance", "host-03").map_err(build_err)?,
        ];
        let index_sections = crc::index_sections(&pristine[0]);
        let chunk_sections = crc::chunk_sections(&pristine[1]);
        Ok(BlockFiles { _scratch: scratch, block_dir, pristine, index_sections, chunk_sections, matchers })
    }

    /// Reads everything; true if every read succeeded.
    fn read_block(&self) -> bool {
        let Ok(block) = Block::open(&self.block_dir) else {
            return false;
        };
        let mut ok = true;
        let _ = block.series_count();
        if let Ok(names) = block.label_names(&[]) {
            for n in &names {
                let _ = block.label_values(n, &[]);
                let _ = block.label_values(n, &self.matchers);
            }
        }
        let _ = block.label_names(&self.matchers);
        for ms in [&[][..], &self.matchers[..]] {
            let Ok(series) = block.select(ms) else {
                ok = false;
                continue;
            };
            for (_labels, chunks) in &series {
                for c in chunks {
                    let mut it = c.iter(i64::MIN, i64::MAX);
                    for _ in it.by_ref() {}
                    ok &= it.error().is_none();
                    let mut it = c.iter(c.min_t.saturating_add(1), c.max_t.saturating_sub(1));
                    for _ in it.by_ref() {}
                }
            }
        }
        ok
    }
}

impl Target for BlockFiles {
    fn name(&self) -> &'static str {
        NAME
    }

    fn corpus(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for fix in [0u8, 4] {
            for (i, bytes) in (0u8..).zip(&self.pristine) {
                let mut v = vec![i | fix];
                v.extend_from_slice(bytes);
                out.push(v);
            }
        }
        out
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[b"\xBA\xAA\xD7\x00", b"\x85\xBD\x40\xDD", b"\x01\x30\xBA\x30", b"\"version\"", b"\"minTime\"", b"null", b"-1"]
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let Some((&which, bytes)) = input.split_first() else {
            return false;
        };
        let (fix, which) = (which & 4 != 0, usize::from(which) % FILES.len());
        let path = self.block_dir.join(FILES[which]);
        let mut bytes = bytes.to_vec();
        if fix {
            let same_len = bytes.len() == self.pristine[which].len();
            match which {
                0 if same_len => crc::fix(&mut bytes, &self.index_sections),
                1 if same_len => crc::fix(&mut bytes, &self.chunk_sections),
                3 => crc::fix_tombstones(&mut bytes),
                _ => {}
            }
        }
        if std::fs::write(&path, &bytes).is_err() {
            return false;
        }
        // Restore the file even when reading panics, so that later runs start from a valid block.
        struct Restore<'a>(&'a Path, &'a [u8]);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                let _ = std::fs::write(self.0, self.1);
            }
        }
        let _restore = Restore(&path, &self.pristine[which]);
        self.read_block()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_sections_are_found_and_fixed() {
        let b = BlockFiles::new().unwrap();
        // Symbols, series entries, postings lists, the postings offset table, the TOC.
        assert!(b.index_sections.len() > 12 + 4, "{} index sections", b.index_sections.len());
        assert!(!b.chunk_sections.is_empty());
        for (which, sections) in [(0, &b.index_sections), (1, &b.chunk_sections)] {
            let pristine = &b.pristine[which];
            let mut zeroed = pristine.clone();
            for s in sections.iter() {
                zeroed[s.crc_at..s.crc_at + 4].fill(0);
            }
            assert_ne!(&zeroed, pristine);
            crc::fix(&mut zeroed, sections);
            assert_eq!(&zeroed, pristine, "file {which}");
        }
        let mut t = b.pristine[3].clone();
        let n = t.len();
        t[n - 1] ^= 1;
        crc::fix_tombstones(&mut t);
        assert_eq!(t, b.pristine[3]);
    }
}
