//! The open-file limit: raised at startup from the soft limit to the hard limit, as Prometheus does.
//!
//! Every connection, WAL segment and mapped block holds a file descriptor. The usual default soft
//! limit (1,024) lets about a thousand idle sockets make `accept` fail for everyone, while the hard
//! limit (often 524,288 or more) is what the administrator allows; raising the soft limit up to it
//! needs no privilege.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The soft and hard limit before and the soft limit after raising (`None` = unlimited).
#[derive(Debug, Clone, Copy)]
pub struct NofileLimits {
    pub soft_before: Option<u64>,
    pub hard: Option<u64>,
    pub soft_after: Option<u64>,
}

/// Raises `RLIMIT_NOFILE`'s soft limit to its hard limit. On failure the limits are unchanged and
/// the error is returned with the values read.
pub fn raise_nofile() -> Result<NofileLimits, (NofileLimits, std::io::Error)> {
    let before = getrlimit(Resource::Nofile);
    let mut limits = NofileLimits { soft_before: before.current, hard: before.maximum, soft_after: before.current };
    if before.current == before.maximum {
        return Ok(limits);
    }
    match setrlimit(Resource::Nofile, Rlimit { current: before.maximum, maximum: before.maximum }) {
        Ok(()) => {
            limits.soft_after = getrlimit(Resource::Nofile).current;
            Ok(limits)
        }
        Err(e) => Err((limits, e.into())),
    }
}
