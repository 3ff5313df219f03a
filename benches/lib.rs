//! Shared helpers of the criterion benchmarks in `benches/benches/`.
