//! The embedded SQLite store (placeholder until the emulation layer lands).
