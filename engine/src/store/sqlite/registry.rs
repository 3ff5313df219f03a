//! The emulated server's in-memory state: clients, transactions (snapshot,
//! status, what they wrote, what they hold, what they wait for), the row and
//! advisory lock tables, and the wait-for graph. Nothing here touches SQLite or
//! awaits; `server.rs` owns it behind one mutex.
//!
//! PostgreSQL behaviours emulated here: the snapshot fixed at the first
//! statement (F1) together with `now()` (F13); locks held to transaction end
//! and freed at once on abort, disconnect included (F4, F11, F12); waits on a
//! row lock or on another transaction's end (a unique-key wait, F9) that join
//! one wait-for graph, searched for a cycle through the waiter (F7).

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::watch;

use super::locks::{Acquire, AdvisoryLocks, LockMode, RowLocks};
use super::mvcc::{RowKey, Seq, Table, TxId, View};
use super::ClientId;
use crate::store::{StoreError, StoreResult};
use crate::time::Timestamp;

/// What a blocked statement waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// To be granted a row lock (queued in the lock table).
    Row { key: RowKey },
    /// For another transaction to end (a unique-key conflict, F9).
    TxEnd { other: TxId },
}

/// How a waiting statement stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitState {
    Waiting,
    /// Granted, or the awaited transaction ended.
    Done,
    /// The transaction was aborted (or its client disconnected) meanwhile.
    Gone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Active,
    /// Aborted by an error, a cancel or a deadlock; the handle still exists and
    /// answers `TransactionAborted` (F8) until it is rolled back or dropped.
    Aborted,
}

#[derive(Debug)]
struct TxEntry {
    client: ClientId,
    snapshot: Option<(Seq, Timestamp)>,
    status: Status,
    wrote: BTreeSet<Table>,
    rows: BTreeSet<RowKey>,
    advisory: BTreeSet<i64>,
    waiting: Option<Wait>,
    wake: watch::Sender<u64>,
}

impl TxEntry {
    fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[derive(Debug)]
pub struct Registry {
    /// The commit counter: the number of the last commit that wrote.
    pub commit_seq: Seq,
    /// Commits since the last automatic vacuum.
    pub commits_since_vacuum: u64,
    /// The last commit that wrote into each table.
    pub table_seq: BTreeMap<Table, Seq>,
    next_tx: TxId,
    next_client: u64,
    clients: BTreeMap<ClientId, bool>,
    txs: BTreeMap<TxId, TxEntry>,
    rows: RowLocks,
    advisory: AdvisoryLocks,
    /// Aborted transactions whose versions are still on disk.
    aborted_pending: BTreeSet<TxId>,
    /// Transactions whose connection the server dropped (a database restart):
    /// their later statements see the connection lost.
    severed: BTreeSet<TxId>,
}

impl Registry {
    pub fn new(commit_seq: Seq, max_tx: TxId) -> Self {
        Registry {
            commit_seq,
            commits_since_vacuum: 0,
            table_seq: BTreeMap::new(),
            next_tx: max_tx.saturating_add(1),
            next_client: 1,
            clients: BTreeMap::new(),
            txs: BTreeMap::new(),
            rows: RowLocks::default(),
            advisory: AdvisoryLocks::default(),
            aborted_pending: BTreeSet::new(),
            severed: BTreeSet::new(),
        }
    }

    // ---- clients ----------------------------------------------------------------

    pub fn new_client(&mut self) -> ClientId {
        let id = ClientId(self.next_client);
        self.next_client += 1;
        self.clients.insert(id, true);
        id
    }

    pub fn is_connected(&self, client: ClientId) -> bool {
        self.clients.get(&client).copied().unwrap_or(false)
    }

    /// F12: every open transaction of `client` rolls back at once, its locks go,
    /// its waiters wake; the client stays dead.
    /// A database restart: every open transaction of every client rolls back
    /// at once; clients stay connected for new transactions.
    pub fn sever_all(&mut self) {
        let txs: Vec<TxId> = self.txs.keys().copied().collect();
        for tx in txs {
            self.abort(tx);
            self.remove(tx);
            self.severed.insert(tx);
        }
    }

    pub fn disconnect(&mut self, client: ClientId) {
        self.clients.insert(client, false);
        let txs: Vec<TxId> = self.txs.iter().filter(|(_, e)| e.client == client).map(|(id, _)| *id).collect();
        for tx in txs {
            self.abort(tx);
            self.remove(tx);
        }
    }

    // ---- transactions -----------------------------------------------------------

    pub fn begin(&mut self, client: ClientId) -> StoreResult<TxId> {
        if !self.is_connected(client) {
            return Err(StoreError::connection_lost("client disconnected"));
        }
        let tx = self.next_tx;
        self.next_tx += 1;
        let (wake, _) = watch::channel(0);
        self.txs.insert(
            tx,
            TxEntry {
                client,
                snapshot: None,
                status: Status::Active,
                wrote: BTreeSet::new(),
                rows: BTreeSet::new(),
                advisory: BTreeSet::new(),
                waiting: None,
                wake,
            },
        );
        Ok(tx)
    }

    /// May `tx` (of `client`) run a statement? Lost client: `ConnectionLost`;
    /// aborted or ended: `TransactionAborted` (F8).
    pub fn check(&self, client: ClientId, tx: TxId) -> StoreResult<()> {
        if !self.is_connected(client) {
            return Err(StoreError::connection_lost("client disconnected"));
        }
        if self.severed.contains(&tx) {
            return Err(StoreError::connection_lost("the server closed the connection"));
        }
        match self.txs.get(&tx) {
            Some(entry) if entry.status == Status::Active => Ok(()),
            _ => Err(StoreError::TransactionAborted),
        }
    }

    pub fn is_active(&self, tx: TxId) -> bool {
        self.txs.get(&tx).is_some_and(|e| e.status == Status::Active)
    }

    /// F1/F13: the snapshot and `now()` are fixed by the first statement.
    pub fn snapshot(&mut self, tx: TxId, now: Timestamp) -> Option<(Seq, Timestamp)> {
        let seq = self.commit_seq;
        let entry = self.txs.get_mut(&tx)?;
        Some(*entry.snapshot.get_or_insert((seq, now)))
    }

    pub fn view(&self, tx: TxId) -> StoreResult<View> {
        let entry = self.txs.get(&tx).ok_or(StoreError::TransactionAborted)?;
        let (snapshot, _) =
            entry.snapshot.ok_or_else(|| StoreError::Backend { detail: "statement without a snapshot".into() })?;
        Ok(View { tx, snapshot })
    }

    /// Records that `tx` wrote versions into `table` (commit stamps it).
    pub fn touch(&mut self, tx: TxId, table: Table) {
        if let Some(entry) = self.txs.get_mut(&tx) {
            entry.wrote.insert(table);
        }
    }

    pub fn tables_written(&self, tx: TxId) -> Vec<Table> {
        self.txs.get(&tx).map(|e| e.wrote.iter().copied().collect()).unwrap_or_default()
    }

    /// Aborts `tx` in memory: frees its locks, withdraws its wait, wakes whoever
    /// waited on it; its versions become garbage for [`Registry::take_aborted`].
    pub fn abort(&mut self, tx: TxId) {
        let Some(entry) = self.txs.get_mut(&tx) else { return };
        if entry.status == Status::Aborted {
            return;
        }
        entry.status = Status::Aborted;
        entry.snapshot = None;
        if !entry.wrote.is_empty() {
            self.aborted_pending.insert(tx);
        }
        self.release(tx);
    }

    /// Commit's in-memory half (after its versions were stamped): free and forget.
    pub fn end_committed(&mut self, tx: TxId) {
        self.release(tx);
        self.txs.remove(&tx);
    }

    /// Forgets an ended transaction's entry (abort it first).
    pub fn remove(&mut self, tx: TxId) {
        self.txs.remove(&tx);
    }

    fn release(&mut self, tx: TxId) {
        let Some(entry) = self.txs.get_mut(&tx) else { return };
        let waiting = entry.waiting.take();
        let rows = std::mem::take(&mut entry.rows);
        let advisory = std::mem::take(&mut entry.advisory);
        entry.wake();
        if let Some(Wait::Row { key }) = waiting {
            let granted = self.rows.withdraw(&key, tx);
            self.apply_grants(&key, granted);
        }
        for key in rows {
            let granted = self.rows.release(&key, tx);
            self.apply_grants(&key, granted);
        }
        for key in advisory {
            self.advisory.release(key, tx);
        }
        for entry in self.txs.values_mut() {
            if entry.waiting == Some(Wait::TxEnd { other: tx }) {
                entry.waiting = None;
                entry.wake();
            }
        }
    }

    fn apply_grants(&mut self, key: &RowKey, granted: Vec<(TxId, LockMode)>) {
        for (tx, _) in granted {
            if let Some(entry) = self.txs.get_mut(&tx) {
                entry.rows.insert(key.clone());
                entry.waiting = None;
                entry.wake();
            }
        }
    }

    // ---- locks and waits ----------------------------------------------------------

    pub fn holds_row(&self, tx: TxId, key: &RowKey, mode: LockMode) -> bool {
        self.rows.holds(key, tx, mode)
    }

    /// Requests a row lock, queueing if it cannot be had at once. On `Blocked`
    /// the caller waits with [`Registry::subscribe`] until [`Registry::wait_state`]
    /// leaves `Waiting`.
    pub fn lock_row(&mut self, tx: TxId, key: &RowKey, mode: LockMode) -> Acquire {
        let outcome = self.rows.acquire(key, tx, mode, true);
        if let Some(entry) = self.txs.get_mut(&tx) {
            match outcome {
                Acquire::Granted => {
                    entry.rows.insert(key.clone());
                }
                Acquire::Blocked => entry.waiting = Some(Wait::Row { key: key.clone() }),
            }
        }
        outcome
    }

    /// `NOWAIT` / `SKIP LOCKED`: the lock at once, or false with no trace (F5).
    pub fn try_lock_row(&mut self, tx: TxId, key: &RowKey, mode: LockMode) -> bool {
        let granted = self.rows.acquire(key, tx, mode, false) == Acquire::Granted;
        if granted {
            if let Some(entry) = self.txs.get_mut(&tx) {
                entry.rows.insert(key.clone());
            }
        }
        granted
    }

    /// F9: `tx` waits for `other` to end. False when `other` already ended.
    pub fn wait_for_tx(&mut self, tx: TxId, other: TxId) -> bool {
        if !self.is_active(other) || other == tx {
            return false;
        }
        match self.txs.get_mut(&tx) {
            Some(entry) => {
                entry.waiting = Some(Wait::TxEnd { other });
                true
            }
            None => false,
        }
    }

    pub fn subscribe(&self, tx: TxId) -> Option<watch::Receiver<u64>> {
        self.txs.get(&tx).map(|e| e.wake.subscribe())
    }

    pub fn wait_state(&self, tx: TxId) -> WaitState {
        match self.txs.get(&tx) {
            Some(entry) if entry.status == Status::Active => {
                if entry.waiting.is_some() {
                    WaitState::Waiting
                } else {
                    WaitState::Done
                }
            }
            _ => WaitState::Gone,
        }
    }

    /// A wait abandoned by its caller: leave the queue, wake who that unblocks.
    pub fn cancel_wait(&mut self, tx: TxId) {
        let Some(entry) = self.txs.get_mut(&tx) else { return };
        if let Some(Wait::Row { key }) = entry.waiting.take() {
            let granted = self.rows.withdraw(&key, tx);
            self.apply_grants(&key, granted);
        }
    }

    /// `pg_try_advisory_xact_lock` (F11).
    pub fn try_advisory(&mut self, tx: TxId, key: i64) -> bool {
        let granted = self.advisory.try_lock(key, tx);
        if granted {
            if let Some(entry) = self.txs.get_mut(&tx) {
                entry.advisory.insert(key);
            }
        }
        granted
    }

    /// Transactions `tx` waits for directly (its wait-for edges).
    fn blockers(&self, tx: TxId) -> Vec<TxId> {
        match self.txs.get(&tx).and_then(|e| e.waiting.as_ref()) {
            Some(Wait::Row { key }) => self.rows.blockers(key, tx),
            Some(Wait::TxEnd { other }) => vec![*other],
            None => Vec::new(),
        }
    }

    /// F7: whether the wait-for graph has a cycle through `tx`.
    pub fn in_deadlock(&self, tx: TxId) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = self.blockers(tx);
        while let Some(next) = stack.pop() {
            if next == tx {
                return true;
            }
            if seen.insert(next) {
                stack.extend(self.blockers(next));
            }
        }
        false
    }

    /// Transactions blocked in a lock or unique-key wait, by id.
    pub fn waiting(&self) -> Vec<TxId> {
        self.txs.iter().filter(|(_, e)| e.status == Status::Active && e.waiting.is_some()).map(|(id, _)| *id).collect()
    }

    // ---- garbage --------------------------------------------------------------------

    /// Aborted transactions whose versions await removal.
    pub fn aborted_pending(&self) -> Vec<TxId> {
        self.aborted_pending.iter().copied().collect()
    }

    pub fn clear_aborted(&mut self, done: &[TxId]) {
        for tx in done {
            self.aborted_pending.remove(tx);
        }
    }

    /// The vacuum horizon: the oldest snapshot still in use, else the counter.
    pub fn horizon(&self) -> Seq {
        self.txs
            .values()
            .filter(|e| e.status == Status::Active)
            .filter_map(|e| e.snapshot.map(|(seq, _)| seq))
            .min()
            .unwrap_or(self.commit_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::super::mvcc::RowId;
    use super::*;

    fn key(n: u8) -> RowKey {
        RowKey { table: Table::Workspaces, id: RowId::Uuid([n; 16]) }
    }

    #[test]
    fn opposite_order_locks_form_a_cycle() {
        let mut reg = Registry::new(0, 0);
        let client = reg.new_client();
        let a = reg.begin(client).unwrap();
        let b = reg.begin(client).unwrap();
        assert_eq!(reg.lock_row(a, &key(1), LockMode::NoKeyUpdate), Acquire::Granted);
        assert_eq!(reg.lock_row(b, &key(2), LockMode::NoKeyUpdate), Acquire::Granted);
        assert_eq!(reg.lock_row(a, &key(2), LockMode::NoKeyUpdate), Acquire::Blocked);
        assert!(!reg.in_deadlock(a), "a waits for b, b waits for nothing");
        assert_eq!(reg.lock_row(b, &key(1), LockMode::NoKeyUpdate), Acquire::Blocked);
        assert!(reg.in_deadlock(a) && reg.in_deadlock(b));
        assert_eq!(reg.waiting(), vec![a, b]);
        reg.abort(a);
        assert_eq!(reg.wait_state(b), WaitState::Done, "b granted key 1 when a aborted");
        assert!(reg.holds_row(b, &key(1), LockMode::NoKeyUpdate));
        assert_eq!(reg.wait_state(a), WaitState::Gone);
    }

    #[test]
    fn unique_wait_joins_the_graph_and_ends_with_the_other() {
        let mut reg = Registry::new(0, 0);
        let client = reg.new_client();
        let a = reg.begin(client).unwrap();
        let b = reg.begin(client).unwrap();
        assert_eq!(reg.lock_row(a, &key(1), LockMode::Update), Acquire::Granted);
        assert!(reg.wait_for_tx(a, b));
        assert_eq!(reg.lock_row(b, &key(1), LockMode::Update), Acquire::Blocked);
        assert!(reg.in_deadlock(b));
        reg.abort(b);
        reg.remove(b);
        assert_eq!(reg.wait_state(a), WaitState::Done);
    }

    #[test]
    fn disconnect_aborts_every_transaction_of_the_client() {
        let mut reg = Registry::new(5, 9);
        let dead = reg.new_client();
        let live = reg.new_client();
        let a = reg.begin(dead).unwrap();
        assert_eq!(a, 10, "ids continue above what the tables name");
        let b = reg.begin(live).unwrap();
        reg.snapshot(a, Timestamp::from_micros(1));
        assert!(reg.try_advisory(a, 42));
        assert!(!reg.try_advisory(b, 42));
        reg.disconnect(dead);
        assert!(reg.try_advisory(b, 42));
        assert_eq!(reg.check(dead, a), Err(StoreError::connection_lost("client disconnected")));
        assert!(reg.begin(dead).is_err());
        assert_eq!(reg.horizon(), 5);
    }
}
