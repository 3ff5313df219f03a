//! The deterministic simulator of the engine. So far: the scenario loader
//! ([`scenario`]), which reads and validates the YAML scenario files that drive it.

pub mod scenario;
