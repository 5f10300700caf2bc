//! Prometheus remote-write 1.0 receiver.
#![forbid(unsafe_code)]
