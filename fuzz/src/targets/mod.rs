//! The fuzz targets: each builds a corpus of valid inputs in code and feeds an input to one of
//! Strata's decoders. A target may check properties of what it decoded with `assert!`: like a
//! panic of the decoder itself, a failed assertion is a finding.

mod block;
mod crc;
mod histogram_chunk;
mod promql;
mod remote_read;
mod remote_write;
mod remote_write_v2;
mod wal_record;
mod xor_chunk;

use std::path::PathBuf;

/// One fuzz target.
pub trait Target {
    /// The name given on the command line.
    fn name(&self) -> &'static str;

    /// Valid inputs the mutations start from.
    fn corpus(&mut self) -> Vec<Vec<u8>>;

    /// Tokens the mutator inserts (format keywords, syntax); empty by default.
    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[]
    }

    /// Runs the code under test on `input`. Returning normally means the input was handled; the
    /// result says whether it was accepted (decoded without error all the way), which the runner
    /// counts to show how far mutated inputs get. A panic is a finding.
    fn run(&mut self, input: &[u8]) -> bool;
}

/// Names of all targets, in the order `list` prints them.
pub const NAMES: [&str; 8] =
    ["remote-write", "remote-write-v2", "remote-read", "wal-record", "xor-chunk", "histogram-chunk", "block", "promql"];

/// An error setting a target up (its temp directory, its valid block).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No target of that name.
    #[error("unknown target {0:?} (targets: {names})", names = NAMES.join(", "))]
    Unknown(String),
    /// Creating or writing the target's scratch files failed.
    #[error("setting up {target}: {path}: {source}")]
    Io {
        /// The target.
        target: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Building the valid input failed.
    #[error("setting up {target}: {msg}")]
    Build {
        /// The target.
        target: &'static str,
        /// What failed.
        msg: String,
    },
}

/// The target named `name`.
pub fn by_name(name: &str) -> Result<Box<dyn Target>, SetupError> {
    Ok(match name {
        "remote-write" => Box::new(remote_write::RemoteWrite::new()?),
        "remote-write-v2" => Box::new(remote_write_v2::RemoteWriteV2::new()?),
        "remote-read" => Box::new(remote_read::RemoteRead::new()),
        "wal-record" => Box::new(wal_record::WalRecord::new()?),
        "xor-chunk" => Box::new(xor_chunk::XorChunk),
        "histogram-chunk" => Box::new(histogram_chunk::HistogramChunkTarget),
        "block" => Box::new(block::BlockFiles::new()?),
        "promql" => Box::new(promql::Promql::new()),
        other => return Err(SetupError::Unknown(other.to_string())),
    })
}

/// A scratch directory, on tmpfs when the system has one (the targets write files on every
/// iteration), removed on drop.
pub(crate) fn scratch_dir(target: &'static str) -> Result<tempfile::TempDir, SetupError> {
    let mut b = tempfile::Builder::new();
    b.prefix("strata-fuzz-");
    b.tempdir_in("/dev/shm").or_else(|_| b.tempdir()).map_err(|source| SetupError::Io {
        target,
        path: std::env::temp_dir(),
        source,
    })
}
