//! Row locks and advisory locks, as pure in-memory tables (no SQLite, no
//! awaiting): who holds what, who queues behind whom, and who is granted when a
//! holder leaves.
//!
//! Row locks emulate PostgreSQL's four tuple lock modes with their fixed
//! conflict table (F4): `FOR KEY SHARE` < `FOR SHARE` < `FOR NO KEY UPDATE` <
//! `FOR UPDATE`, each conflicting with a superset of what the weaker one
//! conflicts with, so a holder keeps only its strongest mode. Locks are
//! re-entrant and upgradable when no other holder conflicts. A request that
//! conflicts with a holder, or with an earlier waiter while the requester holds
//! nothing on the row, queues FIFO; a release grants waiters in queue order,
//! each one if it conflicts neither with the holders nor with the waiters still
//! queued ahead of it (PostgreSQL's `ProcLockWakeup`). Advisory transaction
//! locks (F11) are a key → (holder, count) map.

use std::collections::{BTreeMap, VecDeque};

use super::mvcc::{RowKey, TxId};

/// PostgreSQL's row-level lock modes, weakest first (F4).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum LockMode {
    /// `FOR KEY SHARE` (foreign-key checks; no statement takes it yet).
    #[allow(dead_code)] // part of F4's table; kept so the conflict rules stay whole
    KeyShare,
    /// `FOR SHARE` (no statement takes it yet).
    #[allow(dead_code)] // part of F4's table; kept so the conflict rules stay whole
    Share,
    /// `FOR NO KEY UPDATE`: what an `UPDATE` of non-key columns takes.
    NoKeyUpdate,
    /// `FOR UPDATE`: `SELECT … FOR UPDATE`, `DELETE`, `SKIP LOCKED` claims.
    Update,
}

impl LockMode {
    /// PostgreSQL's "Conflicting Row-Level Locks" table.
    pub fn conflicts_with(self, other: LockMode) -> bool {
        use LockMode::*;
        match (self, other) {
            (Update, _) | (_, Update) => true,
            (NoKeyUpdate, KeyShare) | (KeyShare, NoKeyUpdate) => false,
            (NoKeyUpdate, _) | (_, NoKeyUpdate) => true,
            (Share, Share) | (Share, KeyShare) | (KeyShare, Share) | (KeyShare, KeyShare) => false,
        }
    }
}

/// What a lock request gets at once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Acquire {
    Granted,
    /// Queued (for a waiting request) or refused (for a try).
    Blocked,
}

#[derive(Debug, Default)]
struct LockEntry {
    holders: BTreeMap<TxId, LockMode>,
    queue: VecDeque<(TxId, LockMode)>,
}

impl LockEntry {
    fn conflicts_with_holders(&self, tx: TxId, mode: LockMode) -> bool {
        self.holders.iter().any(|(holder, held)| *holder != tx && held.conflicts_with(mode))
    }

    fn is_empty(&self) -> bool {
        self.holders.is_empty() && self.queue.is_empty()
    }
}

/// The row lock table: `(table, id)` → holders and a FIFO of waiters.
#[derive(Debug, Default)]
pub struct RowLocks {
    entries: BTreeMap<RowKey, LockEntry>,
}

impl RowLocks {
    /// Whether `tx` holds `mode` or stronger on `key`.
    pub fn holds(&self, key: &RowKey, tx: TxId, mode: LockMode) -> bool {
        self.entries.get(key).and_then(|entry| entry.holders.get(&tx)).is_some_and(|held| *held >= mode)
    }

    /// Takes the lock if it can be had at once. With `queue`, a blocked request
    /// joins the FIFO (the caller then waits to be granted); without, it leaves
    /// no trace (`NOWAIT` / `SKIP LOCKED`).
    pub fn acquire(&mut self, key: &RowKey, tx: TxId, mode: LockMode, queue: bool) -> Acquire {
        let entry = self.entries.entry(key.clone()).or_default();
        let held = entry.holders.get(&tx).copied();
        if held.is_some_and(|held| held >= mode) {
            return Acquire::Granted;
        }
        let blocked_by_holder = entry.conflicts_with_holders(tx, mode);
        // A request may not jump a conflicting waiter unless it already holds
        // something here (jumping then avoids a needless deadlock, as in PostgreSQL).
        let blocked_by_queue =
            held.is_none() && entry.queue.iter().any(|(waiter, waiting)| *waiter != tx && waiting.conflicts_with(mode));
        if !blocked_by_holder && !blocked_by_queue {
            entry.holders.insert(tx, mode);
            return Acquire::Granted;
        }
        if queue {
            entry.queue.push_back((tx, mode));
        } else if entry.is_empty() {
            self.entries.remove(key);
        }
        Acquire::Blocked
    }

    /// Grants queued requests that can now be had, in queue order; returns them.
    fn grant_waiters(&mut self, key: &RowKey) -> Vec<(TxId, LockMode)> {
        let Some(entry) = self.entries.get_mut(key) else { return Vec::new() };
        let mut granted = Vec::new();
        let mut ahead: Vec<LockMode> = Vec::new();
        let mut remaining = VecDeque::new();
        while let Some((tx, mode)) = entry.queue.pop_front() {
            let blocked = entry.conflicts_with_holders(tx, mode) || ahead.iter().any(|m| m.conflicts_with(mode));
            if blocked {
                ahead.push(mode);
                remaining.push_back((tx, mode));
            } else {
                let slot = entry.holders.entry(tx).or_insert(mode);
                *slot = (*slot).max(mode);
                granted.push((tx, mode));
            }
        }
        entry.queue = remaining;
        if entry.is_empty() {
            self.entries.remove(key);
        }
        granted
    }

    /// Drops `tx`'s hold on `key` and grants whoever can now proceed.
    pub fn release(&mut self, key: &RowKey, tx: TxId) -> Vec<(TxId, LockMode)> {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.holders.remove(&tx);
        }
        self.grant_waiters(key)
    }

    /// Removes `tx`'s queued request on `key` (a cancelled or aborted wait) and
    /// grants whoever that unblocks.
    pub fn withdraw(&mut self, key: &RowKey, tx: TxId) -> Vec<(TxId, LockMode)> {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.queue.retain(|(waiter, _)| *waiter != tx);
        }
        self.grant_waiters(key)
    }

    /// Transactions `tx` waits for on `key`: conflicting holders, and conflicting
    /// waiters queued ahead of it (the wait-for graph's edges, F7).
    pub fn blockers(&self, key: &RowKey, tx: TxId) -> Vec<TxId> {
        let Some(entry) = self.entries.get(key) else { return Vec::new() };
        let Some(position) = entry.queue.iter().position(|(waiter, _)| *waiter == tx) else { return Vec::new() };
        let mode = entry.queue[position].1;
        let mut out: Vec<TxId> = entry
            .holders
            .iter()
            .filter(|(holder, held)| **holder != tx && held.conflicts_with(mode))
            .map(|(holder, _)| *holder)
            .collect();
        out.extend(
            entry.queue.iter().take(position).filter(|(w, m)| *w != tx && m.conflicts_with(mode)).map(|(w, _)| *w),
        );
        out.sort_unstable();
        out.dedup();
        out
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Advisory transaction-level locks (F11): key → (holder, times taken).
#[derive(Debug, Default)]
pub struct AdvisoryLocks {
    held: BTreeMap<i64, (TxId, u32)>,
}

impl AdvisoryLocks {
    /// `pg_try_advisory_xact_lock`: true at once (re-entrant) or false, never a wait.
    pub fn try_lock(&mut self, key: i64, tx: TxId) -> bool {
        match self.held.get_mut(&key) {
            Some((holder, count)) if *holder == tx => {
                *count = count.saturating_add(1);
                true
            }
            Some(_) => false,
            None => {
                self.held.insert(key, (tx, 1));
                true
            }
        }
    }

    /// Frees `key` if `tx` holds it (at transaction end, whatever the count).
    pub fn release(&mut self, key: i64, tx: TxId) {
        if self.held.get(&key).is_some_and(|(holder, _)| *holder == tx) {
            self.held.remove(&key);
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::mvcc::{RowId, Table};
    use super::*;

    fn key(n: u8) -> RowKey {
        RowKey { table: Table::Workspaces, id: RowId::Uuid([n; 16]) }
    }

    #[test]
    fn conflict_table_matches_postgres() {
        use LockMode::*;
        let modes = [KeyShare, Share, NoKeyUpdate, Update];
        // Rows: requested; columns: held. PostgreSQL docs, table 13.3.
        let expected = [
            [false, false, false, true],
            [false, false, true, true],
            [false, true, true, true],
            [true, true, true, true],
        ];
        for (i, a) in modes.iter().enumerate() {
            for (j, b) in modes.iter().enumerate() {
                assert_eq!(a.conflicts_with(*b), expected[i][j], "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn reentrant_upgrade_and_fifo_grant() {
        let mut locks = RowLocks::default();
        assert_eq!(locks.acquire(&key(1), 1, LockMode::Share, true), Acquire::Granted);
        assert_eq!(locks.acquire(&key(1), 1, LockMode::Update, true), Acquire::Granted, "sole holder upgrades");
        assert_eq!(locks.acquire(&key(1), 2, LockMode::KeyShare, true), Acquire::Blocked);
        assert_eq!(locks.acquire(&key(1), 3, LockMode::NoKeyUpdate, true), Acquire::Blocked);
        assert_eq!(locks.blockers(&key(1), 3), vec![1]);
        // Tx 2 (key share) and tx 3 (no key update) do not conflict: both granted.
        assert_eq!(locks.release(&key(1), 1), vec![(2, LockMode::KeyShare), (3, LockMode::NoKeyUpdate)]);
        assert!(locks.holds(&key(1), 3, LockMode::NoKeyUpdate));
        assert!(!locks.holds(&key(1), 3, LockMode::Update));
    }

    #[test]
    fn queue_is_not_jumped_and_try_leaves_no_trace() {
        let mut locks = RowLocks::default();
        assert_eq!(locks.acquire(&key(1), 1, LockMode::NoKeyUpdate, true), Acquire::Granted);
        assert_eq!(locks.acquire(&key(1), 2, LockMode::Update, true), Acquire::Blocked);
        // KeyShare does not conflict with the holder but does with waiter 2.
        assert_eq!(locks.acquire(&key(1), 3, LockMode::KeyShare, false), Acquire::Blocked);
        assert_eq!(locks.blockers(&key(1), 2), vec![1]);
        assert_eq!(locks.withdraw(&key(1), 2), vec![]);
        assert_eq!(locks.acquire(&key(1), 3, LockMode::KeyShare, false), Acquire::Granted);
        assert_eq!(locks.release(&key(1), 1), vec![]);
        assert_eq!(locks.release(&key(1), 3), vec![]);
        assert!(locks.is_empty());
    }

    #[test]
    fn advisory_try_lock_is_reentrant() {
        let mut locks = AdvisoryLocks::default();
        assert!(locks.try_lock(7, 1));
        assert!(!locks.try_lock(7, 2));
        assert!(locks.try_lock(7, 1));
        locks.release(7, 2);
        assert!(!locks.try_lock(7, 2));
        locks.release(7, 1);
        assert!(locks.try_lock(7, 2));
        locks.release(7, 2);
        assert!(locks.is_empty());
    }
}
