//! The lifecycle tick (lifecycle.md §2): scan for candidates, then one
//! REPEATABLE READ transaction per workspace under its advisory try-lock, on a
//! bounded set of workers; the rules decide, this writes what they decided with
//! its outbox rows, and commits.

use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};

use crate::builds::{insert_next_build, BuildRequest};
use crate::events::{BuildOrigin, Event, SharedEvents, TickStats, WorkspaceOutcome};
use crate::hash::LockKey;
use crate::ids::{SharedIds, WorkspaceId};
use crate::limits;
use crate::model::{DedupeKey, NewNotification, NotificationKind, NotificationPayload, Workspace};
use crate::mutations::{self, Mutation};
use crate::notify;
use crate::pubsub::{publish_committed, SharedPublisher};
use crate::rules::lifecycle::{evaluate, Action, DormancyMark, LifecycleView, RuleError};
use crate::rules::reminder::ReminderDecision;
use crate::runtime::ShutdownSignal;
use crate::settings::Settings;
use crate::store::{LifecycleCursor, Store, StoreError, StoreResult, Subsystem, Tx, TxOptions};
use crate::time::Timestamp;

/// Runs lifecycle ticks against one store (one replica's pool).
pub struct LifecycleExecutor<S: Store> {
    store: Arc<S>,
    settings: Settings,
    ids: SharedIds,
    events: SharedEvents,
    publisher: SharedPublisher,
}

/// What to do with the transaction after the rules ran.
enum Finish {
    Commit(WorkspaceOutcome, Vec<Event>),
    /// Only under the `reminder_enqueued_after_commit` mutation: commit, then
    /// write the reminder in a second transaction (the reference's old design).
    CommitThenEnqueue(WorkspaceOutcome, NewNotification),
    Rollback(WorkspaceOutcome),
}

impl<S: Store> LifecycleExecutor<S> {
    pub fn new(
        store: Arc<S>,
        settings: Settings,
        ids: SharedIds,
        events: SharedEvents,
        publisher: SharedPublisher,
    ) -> Self {
        LifecycleExecutor { store, settings, ids, events, publisher }
    }

    /// One tick as of the replica's `now`. Dispatches nothing once shutdown is
    /// stopping; drops in-flight transactions (they roll back) once it is cancelled.
    pub async fn tick(&self, now: Timestamp, shutdown: &ShutdownSignal) -> TickStats {
        let tick_at = now.truncate(self.settings.lifecycle_interval);
        let mut stats = TickStats { tick_at: Some(tick_at), ..TickStats::default() };
        self.events.emit(Event::TickStarted { tick_at, now });
        let candidates = match self.scan(tick_at).await {
            Ok(candidates) => candidates,
            Err(error) => {
                stats.scan_failed = true;
                self.events.emit(Event::LoopError { loop_name: "lifecycle_scan", error: error.to_string() });
                self.events.emit(Event::TickFinished { stats: stats.clone() });
                return stats;
            }
        };
        stats.candidates = u32::try_from(candidates.len()).unwrap_or(u32::MAX);

        let workers = self.settings.lifecycle_workers();
        let mut queue = candidates.into_iter();
        let mut in_flight = FuturesUnordered::new();
        let mut cancel = shutdown.clone();
        loop {
            while in_flight.len() < workers && !shutdown.is_stopping() {
                let Some(workspace) = queue.next() else { break };
                in_flight.push(async move { (workspace, self.process(workspace, tick_at, now).await) });
            }
            if in_flight.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    stats.cancelled = u32::try_from(in_flight.len()).unwrap_or(u32::MAX);
                    break;
                }
                Some((workspace, outcome)) = in_flight.next() => {
                    stats.count(&outcome);
                    self.events.emit(Event::Workspace { workspace, tick_at, outcome });
                }
            }
        }
        // Dropping the stream drops cancelled transactions: they roll back.
        drop(in_flight);
        stats.skipped_for_shutdown = u32::try_from(queue.len()).unwrap_or(u32::MAX);
        self.events.emit(Event::TickFinished { stats: stats.clone() });
        stats
    }

    /// §2 step 2: every candidate id, keyset-paged, in one read-only snapshot.
    async fn scan(&self, tick_at: Timestamp) -> StoreResult<Vec<WorkspaceId>> {
        let mut tx = self.store.begin(TxOptions::read_only(Subsystem::Lifecycle)).await?;
        let mut ids = Vec::new();
        let mut after: Option<LifecycleCursor> = None;
        loop {
            let page = match tx.lifecycle_candidates(tick_at, after, limits::LIFECYCLE_SCAN_PAGE_MAX).await {
                Ok(page) => page,
                Err(error) => {
                    let _ = tx.rollback().await;
                    return Err(error);
                }
            };
            let full = page.len() as u32 == limits::LIFECYCLE_SCAN_PAGE_MAX;
            after = page.last().copied();
            ids.extend(page.into_iter().map(|(_, workspace)| workspace));
            if !full {
                break;
            }
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// §2 step 4 for one workspace.
    async fn process(&self, workspace: WorkspaceId, tick_at: Timestamp, now: Timestamp) -> WorkspaceOutcome {
        let mut tx = match self.store.begin(TxOptions::new(Subsystem::Lifecycle)).await {
            Ok(tx) => tx,
            Err(error) => return outcome_of_error(&error),
        };
        match self.decide_and_write(&mut tx, workspace, tick_at, now).await {
            Ok(Finish::Commit(outcome, events)) => match tx.commit().await {
                Ok(()) => {
                    // §2 step 5: "job available" only now, after the commit.
                    publish_committed(events, self.events.as_ref(), self.publisher.as_ref());
                    outcome
                }
                Err(error) => outcome_of_error(&error),
            },
            Ok(Finish::CommitThenEnqueue(outcome, reminder)) => {
                if let Err(error) = tx.commit().await {
                    return outcome_of_error(&error);
                }
                match self.enqueue_alone(&reminder, now).await {
                    Ok(()) => outcome,
                    Err(error) => outcome_of_error(&error),
                }
            }
            Ok(Finish::Rollback(outcome)) => {
                let _ = tx.rollback().await;
                outcome
            }
            Err(error) => {
                let _ = tx.rollback().await;
                outcome_of_error(&error)
            }
        }
    }

    /// The mutation's second transaction.
    async fn enqueue_alone(&self, notification: &NewNotification, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.store.begin(TxOptions::new(Subsystem::Lifecycle)).await?;
        let mut events = Vec::new();
        notify::enqueue(&mut tx, &self.ids, notification, now, &mut events).await?;
        tx.commit().await?;
        for event in events {
            self.events.emit(event);
        }
        Ok(())
    }

    async fn decide_and_write(
        &self,
        tx: &mut S::Tx,
        workspace_id: WorkspaceId,
        tick_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Finish> {
        // a. The lock is the first statement: it also fixes the snapshot.
        if !mutations::is_on(Mutation::NoWorkspaceLockNoUniqueBuild)
            && !tx.try_advisory_xact_lock(LockKey::lifecycle(workspace_id)).await?
        {
            return Ok(Finish::Rollback(WorkspaceOutcome::LockBusy));
        }
        // b. Re-read everything the rules need.
        let Some(workspace) = tx.workspace(workspace_id).await? else {
            return Ok(Finish::Rollback(WorkspaceOutcome::Gone));
        };
        if workspace.deleted {
            return Ok(Finish::Rollback(WorkspaceOutcome::Gone));
        }
        if workspace.is_prebuild() {
            // Prebuilds belong to the reconciler until claimed.
            return Ok(Finish::Rollback(WorkspaceOutcome::Nothing));
        }
        let owner = tx
            .user(workspace.owner_id)
            .await?
            .ok_or_else(|| StoreError::invalid_data("workspace", format!("owner {} missing", workspace.owner_id)))?;
        let template = tx.template(workspace.template_id).await?.ok_or_else(|| {
            StoreError::invalid_data("workspace", format!("template {} missing", workspace.template_id))
        })?;
        let latest = tx.latest_build(workspace_id).await?;
        let active_version = tx.version(template.active_version_id).await?;
        let has_live_chat = tx.workspace_has_live_chat(workspace_id).await?;
        let view = LifecycleView { workspace, owner, template, latest, active_version, has_live_chat };

        let outcome = evaluate(&view, tick_at, now);
        let mut workspace = view.workspace.clone();
        let mut wrote = false;
        // c. next_start_at computed from tick_at, written whatever happens next.
        if let Some(next_start_at) = outcome.next_start_at {
            tx.set_next_start_at(workspace_id, next_start_at).await?;
            workspace.next_start_at = next_start_at;
            wrote = true;
        }
        let rule_error = outcome.errors.first().map(rule_error_outcome);
        let quiet = |wrote: bool, outcome: WorkspaceOutcome| {
            if wrote {
                Finish::Commit(outcome, Vec::new())
            } else {
                Finish::Rollback(outcome)
            }
        };

        match outcome.action {
            Action::Wait => Ok(quiet(wrote, rule_error.unwrap_or(WorkspaceOutcome::Waiting))),
            Action::Reminder(ReminderDecision::None(_)) => {
                Ok(quiet(wrote, rule_error.unwrap_or(WorkspaceOutcome::Nothing)))
            }
            Action::Reminder(ReminderDecision::Remind { stop_at, notify }) => {
                let Some(latest) = view.latest.as_ref() else {
                    return Ok(quiet(wrote, WorkspaceOutcome::Nothing));
                };
                let mut build = latest.build.clone();
                build.notified_autostop_deadline = Some(stop_at);
                tx.update_build(&build).await?;
                let outcome = WorkspaceOutcome::Reminded { stop_at, notified: notify };
                if notify {
                    let mut dedupe_key = DedupeKey::autostop_reminder(workspace_id, stop_at);
                    if mutations::is_on(Mutation::ReminderNoDedupe) {
                        dedupe_key.0.push_str(&format!(":{}", self.ids.next::<crate::ids::NotificationId>()));
                    }
                    let reminder = NewNotification {
                        kind: NotificationKind::AutostopReminder,
                        user_id: workspace.owner_id,
                        dedupe_key,
                        workspace_id: Some(workspace_id),
                        payload: NotificationPayload::AutostopReminder { workspace: workspace.name.clone(), stop_at },
                    };
                    if mutations::is_on(Mutation::ReminderEnqueuedAfterCommit) {
                        return Ok(Finish::CommitThenEnqueue(outcome, reminder));
                    }
                    let mut events = Vec::new();
                    notify::enqueue(tx, &self.ids, &reminder, now, &mut events).await?;
                    return Ok(Finish::Commit(outcome, events));
                }
                Ok(Finish::Commit(outcome, Vec::new()))
            }
            Action::Mark(mark) => {
                let mut events = Vec::new();
                self.write_mark(tx, &mut workspace, mark, now, &mut events).await?;
                tx.update_workspace(&workspace).await?;
                Ok(Finish::Commit(WorkspaceOutcome::MarkedDormant, events))
            }
            Action::Build { build, mark } => {
                // e. The provisioner gate: someone must be able to take the job.
                let seen_since = now - self.settings.provisioner_stale_after;
                if !tx.provisioner_seen_since(seen_since).await? {
                    return Ok(quiet(wrote, WorkspaceOutcome::NoProvisioner));
                }
                // f. Build, mark, outbox rows.
                let request = BuildRequest {
                    transition: build.transition,
                    reason: build.reason,
                    initiator: workspace.owner_id,
                    version_id: build.version_id,
                    parameters: build.parameters.clone(),
                    preset_id: view.latest.as_ref().and_then(|l| l.build.preset_id),
                };
                let (inserted, next_start_at) =
                    insert_next_build(tx, &self.ids, &workspace, &view.template, view.latest.as_ref(), request, now)
                        .await?;
                let mut events = Vec::new();
                let before = workspace.clone();
                workspace.next_start_at = next_start_at;
                if let Some(mark) = mark {
                    self.write_mark(tx, &mut workspace, mark, now, &mut events).await?;
                }
                // Only a real change touches the workspace row: a needless write
                // would add a row conflict PostgreSQL would not have, hiding the
                // races the advisory lock and the build number guard against.
                if workspace != before {
                    tx.update_workspace(&workspace).await?;
                }
                if let Some((from, to)) = build.auto_update {
                    let from_name = match tx.version(from).await? {
                        Some(version) => version.name,
                        None => from.to_string(),
                    };
                    let to_name = match view.active_version.as_ref().filter(|v| v.id == to) {
                        Some(version) => version.name.clone(),
                        None => to.to_string(),
                    };
                    let updated = NewNotification {
                        kind: NotificationKind::WorkspaceAutoUpdated,
                        user_id: workspace.owner_id,
                        dedupe_key: DedupeKey::workspace_auto_updated(inserted.id),
                        workspace_id: Some(workspace_id),
                        payload: NotificationPayload::WorkspaceAutoUpdated {
                            workspace: workspace.name.clone(),
                            old_version: from_name,
                            new_version: to_name,
                            message: String::new(),
                            reason: build.reason,
                        },
                    };
                    notify::enqueue(tx, &self.ids, &updated, now, &mut events).await?;
                }
                events.push(Event::BuildInserted {
                    workspace: workspace_id,
                    build: inserted.id,
                    job: inserted.job_id,
                    number: inserted.number,
                    transition: inserted.transition,
                    reason: inserted.reason,
                    origin: BuildOrigin::Lifecycle,
                });
                let outcome = WorkspaceOutcome::Transition {
                    transition: inserted.transition,
                    reason: inserted.reason,
                    build: inserted.id,
                };
                Ok(Finish::Commit(outcome, events))
            }
        }
    }

    /// Rule 4's mark: dormant now, deleting after the template's delay, no
    /// autostart, and the owner told (keyed by workspace and `dormant_at`).
    async fn write_mark(
        &self,
        tx: &mut S::Tx,
        workspace: &mut Workspace,
        mark: DormancyMark,
        now: Timestamp,
        events: &mut Vec<Event>,
    ) -> StoreResult<()> {
        workspace.dormant_at = Some(mark.dormant_at);
        workspace.deleting_at = mark.deleting_at;
        workspace.next_start_at = None;
        let dormant = NewNotification {
            kind: NotificationKind::WorkspaceDormant,
            user_id: workspace.owner_id,
            dedupe_key: DedupeKey::workspace_dormant(workspace.id, mark.dormant_at),
            workspace_id: Some(workspace.id),
            payload: NotificationPayload::WorkspaceDormant {
                workspace: workspace.name.clone(),
                reason: "inactivity".to_owned(),
                deleting_at: mark.deleting_at,
            },
        };
        notify::enqueue(tx, &self.ids, &dormant, now, events).await?;
        Ok(())
    }
}

fn rule_error_outcome(error: &RuleError) -> WorkspaceOutcome {
    match error {
        RuleError::ScheduleInvalid(detail) => {
            WorkspaceOutcome::Error { kind: "schedule_invalid".to_owned(), detail: detail.to_string() }
        }
        RuleError::BuildInvalid { parameter } => WorkspaceOutcome::Error {
            kind: "build_invalid".to_owned(),
            detail: format!("parameter `{parameter}` is required by the new version"),
        },
    }
}

/// §2 step 6: a unique violation on the build number is a lost race, a
/// serialization failure a conflict (retried next tick); the rest are errors.
fn outcome_of_error(error: &StoreError) -> WorkspaceOutcome {
    match error {
        StoreError::UniqueViolation { .. } => WorkspaceOutcome::LostRace,
        StoreError::SerializationFailure { .. } | StoreError::Deadlock { .. } => WorkspaceOutcome::Conflict,
        other => WorkspaceOutcome::Error { kind: other.kind().to_owned(), detail: other.to_string() },
    }
}
