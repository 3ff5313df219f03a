//! Shared helpers of the criterion benchmarks in `benches/benches/`: seeded
//! fleets on the in-memory SQLite store.

pub mod fleet;
