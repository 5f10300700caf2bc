//! PromQL evaluation and the Prometheus HTTP query API.
#![forbid(unsafe_code)]
