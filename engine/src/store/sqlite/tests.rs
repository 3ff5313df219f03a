//! Unit tests of the SQLite store that need its internals.
