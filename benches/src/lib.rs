//! Workload generators shared by the criterion benches and the strata-bench harness.
