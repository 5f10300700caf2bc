//! Chunk encodings. Only XOR (float samples) for now, bit-compatible with Prometheus.
