//! The lifecycle scan's filter (lifecycle.md §3), stated over loaded data: the
//! store's scan query must return every workspace this accepts (tests compare
//! the two), and this must accept every workspace a rule or the reminder check
//! would act on (never stricter than §4).

use crate::rules::lifecycle::LifecycleView;
use crate::time::Timestamp;

/// Which arm of §3 admitted a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arm {
    /// A: rule 1 (autostop).
    Autostop,
    /// B: rule 2 without permission and schedule validity.
    Autostart,
    /// C: rule 4 (dormancy).
    Dormancy,
    /// D: rule 5 without the failed-delete delay.
    Autodelete,
    /// E: rule 3 (failed-build stop).
    FailedStop,
    /// F: the reminder window.
    Reminder,
}

/// The arms that admit `view` at `tick_at` (empty: not a candidate).
pub fn candidate_arms(view: &LifecycleView, tick_at: Timestamp) -> Vec<Arm> {
    let _ = (view, tick_at);
    todo!()
}

pub fn is_candidate(view: &LifecycleView, tick_at: Timestamp) -> bool {
    !candidate_arms(view, tick_at).is_empty()
}
