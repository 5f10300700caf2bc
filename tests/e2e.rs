//! End-to-end tests: start the real `strata` binary on a temp dir.
