//! Segmented write-ahead log. Knows nothing of the TSDB: records are opaque byte strings.
#![forbid(unsafe_code)]
