//! Named, switchable bugs: the one list of mutations the simulator must catch.
//!
//! Each mutation puts back a known bug (from the reference's history or our
//! own) at the place it lived. They exist only in builds with the `mutations`
//! cargo feature, which production builds never enable; without it
//! [`is_on`] is a constant `false` and the checks compile away. The switch is
//! per thread: the simulator runs one seed per process on one thread, and each
//! test runs on its own thread, so switching one on never leaks into another run.

use std::fmt;

/// A known bug that can be switched back on.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Mutation {
    /// The reference's first reminder design (seed 000): stamp the marker in the
    /// transaction, write the reminder in a second transaction after commit, so
    /// a crash or shutdown between the two loses it.
    ReminderEnqueuedAfterCommit,
    /// Reminders ignore the marker and the outbox key: one per tick in the window.
    ReminderNoDedupe,
    /// The activity bump forgets to cap the deadline at the max deadline.
    BumpIgnoresMaxDeadline,
    /// The usage flush writes `last_used_at` even when the stored value is newer.
    UsageFlushOverwritesNewer,
    /// No per-workspace advisory lock and no unique build number: two replicas
    /// can both build for one trigger.
    NoWorkspaceLockNoUniqueBuild,
}

impl Mutation {
    pub const ALL: &'static [Mutation] = &[
        Mutation::ReminderEnqueuedAfterCommit,
        Mutation::ReminderNoDedupe,
        Mutation::BumpIgnoresMaxDeadline,
        Mutation::UsageFlushOverwritesNewer,
        Mutation::NoWorkspaceLockNoUniqueBuild,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Mutation::ReminderEnqueuedAfterCommit => "reminder_enqueued_after_commit",
            Mutation::ReminderNoDedupe => "reminder_no_dedupe",
            Mutation::BumpIgnoresMaxDeadline => "bump_ignores_max_deadline",
            Mutation::UsageFlushOverwritesNewer => "usage_flush_overwrites_newer",
            Mutation::NoWorkspaceLockNoUniqueBuild => "no_workspace_lock_no_unique_build",
        }
    }

    pub fn from_name(name: &str) -> Option<Mutation> {
        Mutation::ALL.iter().copied().find(|m| m.name() == name)
    }

    #[cfg(feature = "mutations")]
    const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(feature = "mutations")]
thread_local! {
    static ACTIVE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether `mutation` is switched on for this thread.
#[inline]
pub fn is_on(mutation: Mutation) -> bool {
    #[cfg(feature = "mutations")]
    {
        ACTIVE.with(|active| active.get() & mutation.bit() != 0)
    }
    #[cfg(not(feature = "mutations"))]
    {
        let _ = mutation;
        false
    }
}

/// Switches `mutation` on or off for this thread.
#[cfg(feature = "mutations")]
pub fn set(mutation: Mutation, on: bool) {
    ACTIVE.with(|active| {
        let bits = active.get();
        active.set(if on { bits | mutation.bit() } else { bits & !mutation.bit() });
    });
}

/// Whether this build can switch mutations on at all.
pub const fn available() -> bool {
    cfg!(feature = "mutations")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_default_off() {
        for mutation in Mutation::ALL {
            assert_eq!(Mutation::from_name(mutation.name()), Some(*mutation));
            assert!(!is_on(*mutation));
        }
        assert_eq!(Mutation::from_name("nope"), None);
    }

    #[cfg(feature = "mutations")]
    #[test]
    fn switch_is_per_thread() {
        set(Mutation::ReminderNoDedupe, true);
        assert!(is_on(Mutation::ReminderNoDedupe));
        let other = std::thread::Builder::new()
            .spawn(|| is_on(Mutation::ReminderNoDedupe))
            .expect("thread")
            .join()
            .expect("join");
        assert!(!other);
        set(Mutation::ReminderNoDedupe, false);
        assert!(!is_on(Mutation::ReminderNoDedupe));
    }
}
