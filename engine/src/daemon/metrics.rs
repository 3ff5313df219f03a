//! Prometheus metrics of one daemon: counters fed by the engine's events
//! ([`MetricsEvents`], an [`EventSink`] that counts and then logs through
//! [`TracingEvents`], idle ticks at debug), and pool gauges read from the store at each scrape.
//!
//! Every metric is named `engine_…`; the list, with types and labels, is in
//! `engine/API.md` ("Metrics"). The prebuild reconciler and the chat workers
//! are not built yet: their metrics (reconcile durations, preset status, chat
//! ownership) are not exported until they are.

use std::sync::Mutex;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::events::{BuildOrigin, Event, EventSink, TracingEvents, WorkspaceOutcome};
use crate::runtime::SharedClock;
use crate::store::sqlite::PoolStats;
use crate::store::Subsystem;
use crate::time::Timestamp;

/// Every subsystem a pool counts, so each has a gauge even at zero.
const SUBSYSTEMS: [Subsystem; 11] = [
    Subsystem::Lifecycle,
    Subsystem::Activity,
    Subsystem::Usage,
    Subsystem::Notifications,
    Subsystem::Provisioner,
    Subsystem::Api,
    Subsystem::Reconciler,
    Subsystem::Chat,
    Subsystem::ChatLease,
    Subsystem::Admin,
    Subsystem::Pubsub,
];

/// Buckets of the lifecycle tick duration, in seconds.
const TICK_SECONDS_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A metric could not be registered (a duplicate name: a bug).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// The daemon's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    pub ticks: IntCounter,
    pub tick_seconds: Histogram,
    pub tick_candidates: IntCounter,
    pub scan_failures: IntCounter,
    pub transitions: IntCounterVec,
    pub marks: IntCounter,
    pub reminders: IntCounter,
    pub errors: IntCounterVec,
    pub lock_busy: IntCounter,
    pub lost_races: IntCounter,
    pub conflicts: IntCounter,
    pub no_provisioner: IntCounter,
    pub builds: IntCounterVec,
    pub notifications_enqueued: IntCounterVec,
    pub notifications_delivered: IntCounterVec,
    pub notifications_failed: IntCounterVec,
    pub usage_flushes: IntCounterVec,
    pub usage_flushed_workspaces: IntCounter,
    pub activity_bumps: IntCounter,
    pub jobs_acquired: IntCounter,
    pub jobs_completed: IntCounterVec,
    pub api_refusals: IntCounterVec,
    pub loop_errors: IntCounterVec,
    pub pool_size: IntGauge,
    pub pool_in_use: IntGauge,
    pub pool_waiting: IntGauge,
    pub pool_in_use_by: IntGaugeVec,
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let metric = IntCounter::new(name, help)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let metric = IntGauge::new(name, help)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let r = Registry::new();
        let tick_seconds = Histogram::with_opts(
            HistogramOpts::new("engine_lifecycle_tick_duration_seconds", "Wall time of one lifecycle tick.")
                .buckets(TICK_SECONDS_BUCKETS.to_vec()),
        )?;
        r.register(Box::new(tick_seconds.clone()))?;
        let pool_in_use_by = IntGaugeVec::new(
            Opts::new("engine_db_pool_in_use_by", "Connections held now, by the subsystem holding them."),
            &["subsystem"],
        )?;
        r.register(Box::new(pool_in_use_by.clone()))?;
        Ok(Metrics {
            ticks: counter(&r, "engine_lifecycle_ticks_total", "Lifecycle ticks finished.")?,
            tick_seconds,
            tick_candidates: counter(&r, "engine_lifecycle_candidates_total", "Workspaces the lifecycle scans found.")?,
            scan_failures: counter(
                &r,
                "engine_lifecycle_scan_failures_total",
                "Ticks whose scan failed (nothing done).",
            )?,
            transitions: counter_vec(
                &r,
                "engine_lifecycle_transitions_total",
                "Builds the lifecycle tick inserted, by transition and reason.",
                &["transition", "reason"],
            )?,
            marks: counter(
                &r,
                "engine_lifecycle_marks_total",
                "Dormancy marks without a build (a dormancy stop counts as a transition).",
            )?,
            reminders: counter(&r, "engine_lifecycle_reminders_total", "Autostop reminders committed by the tick.")?,
            errors: counter_vec(
                &r,
                "engine_lifecycle_errors_total",
                "Per-workspace errors of the tick, by kind.",
                &["kind"],
            )?,
            lock_busy: counter(
                &r,
                "engine_lifecycle_lock_busy_total",
                "Workspaces skipped: another replica held the lock.",
            )?,
            lost_races: counter(&r, "engine_lifecycle_lost_races_total", "Builds not inserted: someone built first.")?,
            conflicts: counter(&r, "engine_lifecycle_conflicts_total", "Serialization failures (retried next tick).")?,
            no_provisioner: counter(
                &r,
                "engine_lifecycle_no_provisioner_total",
                "Due builds not inserted: no provisioner seen recently.",
            )?,
            builds: counter_vec(
                &r,
                "engine_builds_inserted_total",
                "Builds inserted, by origin (lifecycle or api), transition and reason.",
                &["origin", "transition", "reason"],
            )?,
            notifications_enqueued: counter_vec(
                &r,
                "engine_notifications_enqueued_total",
                "Outbox rows written (a key already present writes none), by kind.",
                &["kind"],
            )?,
            notifications_delivered: counter_vec(
                &r,
                "engine_notifications_delivered_total",
                "Notifications the sink accepted, by kind.",
                &["kind"],
            )?,
            notifications_failed: counter_vec(
                &r,
                "engine_notifications_failed_total",
                "Failed delivery attempts (retried later), by kind.",
                &["kind"],
            )?,
            usage_flushes: counter_vec(
                &r,
                "engine_usage_flushes_total",
                "Usage flushes with at least one workspace, by result (ok or failed).",
                &["result"],
            )?,
            usage_flushed_workspaces: counter(
                &r,
                "engine_usage_flushed_workspaces_total",
                "Workspaces in successful usage flushes.",
            )?,
            activity_bumps: counter(&r, "engine_activity_bumps_total", "Deadlines moved by activity.")?,
            jobs_acquired: counter(&r, "engine_jobs_acquired_total", "Provisioner jobs handed out.")?,
            jobs_completed: counter_vec(
                &r,
                "engine_jobs_completed_total",
                "Provisioner jobs completed, by final status.",
                &["status"],
            )?,
            api_refusals: counter_vec(
                &r,
                "engine_api_refusals_total",
                "API requests refused, by action.",
                &["action"],
            )?,
            loop_errors: counter_vec(
                &r,
                "engine_loop_errors_total",
                "Errors of the engine's loops, by loop.",
                &["loop"],
            )?,
            pool_size: gauge(&r, "engine_db_pool_size", "Connections the pool may hold.")?,
            pool_in_use: gauge(&r, "engine_db_pool_in_use", "Connections held now.")?,
            pool_waiting: gauge(&r, "engine_db_pool_waiting", "Callers waiting for a connection now.")?,
            pool_in_use_by,
            registry: r,
        })
    }

    /// Sets the pool gauges from a fresh reading (at each scrape).
    pub fn observe_pool(&self, stats: &PoolStats) {
        self.pool_size.set(i64::from(stats.size));
        self.pool_in_use.set(i64::from(stats.in_use));
        self.pool_waiting.set(i64::from(stats.waiting));
        for subsystem in SUBSYSTEMS {
            let held = stats.in_use_by.get(&subsystem).copied().unwrap_or(0);
            self.pool_in_use_by.with_label_values(&[subsystem.as_str()]).set(i64::from(held));
        }
    }

    /// The text exposition format (what `/metrics` answers).
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into memory fails only on a malformed family: render what we have.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Counts one event.
    pub fn count(&self, event: &Event) {
        match event {
            Event::TickStarted { .. } => {}
            Event::TickFinished { stats } => {
                self.ticks.inc();
                self.tick_candidates.inc_by(u64::from(stats.candidates));
                if stats.scan_failed {
                    self.scan_failures.inc();
                }
            }
            Event::Workspace { outcome, .. } => match outcome {
                WorkspaceOutcome::Transition { transition, reason, .. } => {
                    self.transitions.with_label_values(&[transition.as_str(), reason.as_str()]).inc();
                }
                WorkspaceOutcome::MarkedDormant => self.marks.inc(),
                WorkspaceOutcome::Reminded { .. } => self.reminders.inc(),
                WorkspaceOutcome::LockBusy => self.lock_busy.inc(),
                WorkspaceOutcome::LostRace => self.lost_races.inc(),
                WorkspaceOutcome::Conflict => self.conflicts.inc(),
                WorkspaceOutcome::NoProvisioner => self.no_provisioner.inc(),
                WorkspaceOutcome::Error { kind, .. } => self.errors.with_label_values(&[kind.as_str()]).inc(),
                WorkspaceOutcome::Waiting | WorkspaceOutcome::Nothing | WorkspaceOutcome::Gone => {}
            },
            Event::BuildInserted { transition, reason, origin, .. } => {
                let origin = match origin {
                    BuildOrigin::Lifecycle => "lifecycle",
                    BuildOrigin::Api => "api",
                };
                self.builds.with_label_values(&[origin, transition.as_str(), reason.as_str()]).inc();
            }
            Event::NotificationEnqueued { kind, inserted, .. } => {
                if *inserted {
                    self.notifications_enqueued.with_label_values(&[kind.as_str()]).inc();
                }
            }
            Event::NotificationDelivered { kind, .. } => {
                self.notifications_delivered.with_label_values(&[kind.as_str()]).inc();
            }
            Event::NotificationDeliveryFailed { kind, .. } => {
                self.notifications_failed.with_label_values(&[kind.as_str()]).inc();
            }
            Event::ActivityBumped { .. } => self.activity_bumps.inc(),
            Event::UsageFlushed { workspaces, .. } => {
                self.usage_flushes.with_label_values(&["ok"]).inc();
                self.usage_flushed_workspaces.inc_by(u64::from(*workspaces));
            }
            Event::UsageFlushFailed { .. } => self.usage_flushes.with_label_values(&["failed"]).inc(),
            Event::JobAcquired { .. } => self.jobs_acquired.inc(),
            Event::JobCompleted { status, .. } => self.jobs_completed.with_label_values(&[status.as_str()]).inc(),
            Event::Refused { action, .. } => self.api_refusals.with_label_values(&[action]).inc(),
            Event::LoopError { loop_name, .. } => self.loop_errors.with_label_values(&[loop_name]).inc(),
            Event::ShutdownStarted | Event::ShutdownFinished { .. } => {}
        }
    }
}

/// The daemon's [`EventSink`]: counts each event, times ticks on the
/// replica's clock, then logs the event with [`TracingEvents`].
pub struct MetricsEvents {
    metrics: std::sync::Arc<Metrics>,
    clock: SharedClock,
    /// When the running tick started (one lifecycle loop per replica, never
    /// overlapping itself).
    tick_started_at: Mutex<Option<Timestamp>>,
    log: TracingEvents,
}

impl MetricsEvents {
    pub fn new(metrics: std::sync::Arc<Metrics>, clock: SharedClock) -> Self {
        MetricsEvents { metrics, clock, tick_started_at: Mutex::new(None), log: TracingEvents }
    }

    fn tick_started(&self) -> std::sync::MutexGuard<'_, Option<Timestamp>> {
        self.tick_started_at.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

impl EventSink for MetricsEvents {
    fn emit(&self, event: Event) {
        match &event {
            Event::TickStarted { .. } => *self.tick_started() = Some(self.clock.now()),
            Event::TickFinished { .. } => {
                if let Some(started_at) = self.tick_started().take() {
                    let elapsed = self.clock.now().since(started_at);
                    self.metrics.tick_seconds.observe(elapsed.as_micros() as f64 / 1e6);
                }
            }
            _ => {}
        }
        self.metrics.count(&event);
        // Idle ticks every interval would drown the log: they go to debug.
        let idle = match &event {
            Event::TickStarted { .. } => true,
            Event::TickFinished { stats } => stats.candidates == 0 && !stats.scan_failed,
            _ => false,
        };
        if idle {
            tracing::debug!(?event, "engine event");
        } else {
            self.log.emit(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::TickStats;
    use crate::ids::{BuildId, WorkspaceId};
    use crate::model::{BuildReason, Transition};

    #[test]
    fn events_count_into_labelled_series() {
        let metrics = Metrics::new().unwrap();
        let workspace = WorkspaceId::from_bytes([1; 16]);
        let tick_at = Timestamp::from_micros(0);
        for _ in 0..2 {
            metrics.count(&Event::Workspace {
                workspace,
                tick_at,
                outcome: WorkspaceOutcome::Transition {
                    transition: Transition::Stop,
                    reason: BuildReason::Autostop,
                    build: BuildId::from_bytes([2; 16]),
                },
            });
        }
        metrics.count(&Event::Workspace { workspace, tick_at, outcome: WorkspaceOutcome::LockBusy });
        metrics.count(&Event::TickFinished { stats: TickStats { candidates: 3, ..TickStats::default() } });
        metrics.observe_pool(&PoolStats { size: 10, in_use: 1, ..PoolStats::default() });
        let text = metrics.render();
        assert!(
            text.contains("engine_lifecycle_transitions_total{reason=\"autostop\",transition=\"stop\"} 2"),
            "{text}"
        );
        assert!(text.contains("engine_lifecycle_lock_busy_total 1"), "{text}");
        assert!(text.contains("engine_lifecycle_ticks_total 1"), "{text}");
        assert!(text.contains("engine_lifecycle_candidates_total 3"), "{text}");
        assert!(text.contains("engine_db_pool_size 10"), "{text}");
        assert!(text.contains("engine_db_pool_in_use_by{subsystem=\"lifecycle\"} 0"), "{text}");
    }
}
