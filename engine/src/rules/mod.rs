//! Pure rules: every decision of the engine as a function of plain data and
//! `now`, returning a decision value (never a `Result`).
//!
//! **Boundary:** nothing here awaits, reads a clock, or names a store type. The
//! drivers load data, call a rule, and write what it decided.

pub mod bump;
pub mod deadline;
pub mod eligibility;
pub mod lifecycle;
pub mod reminder;
pub mod schedule;

#[cfg(test)]
mod catalogue;
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod properties;
