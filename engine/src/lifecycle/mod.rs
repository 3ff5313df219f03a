//! The workspace lifecycle drivers: the executor's tick (lifecycle.md §2) and
//! the batched `last_used_at` tracker (§7). Decisions live in `crate::rules`;
//! these load, lock, write and commit.

mod executor;
mod usage;

pub use executor::LifecycleExecutor;
pub use usage::{FlushOutcome, UsageTracker};
