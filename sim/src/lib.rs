//! The deterministic simulator (built with the simulator issue).
