//! Every bound and default of the engine, in one place, with its unit in its name.
//!
//! Settings a deployment may change live in [`crate::settings::Settings`] (their
//! defaults are here); the rest are fixed bounds the semantics pin down.

use crate::time::Span;

// ---- lifecycle (semantics/lifecycle.md §2) ---------------------------------------

pub const LIFECYCLE_INTERVAL_DEFAULT: Span = Span::from_mins(1);
pub const PROVISIONER_STALE_AFTER_DEFAULT: Span = Span::from_secs(90);
/// Lifecycle workers are `min(max, max(1, floor(pool / divisor)))`.
pub const LIFECYCLE_WORKERS_MAX: usize = 10;
pub const LIFECYCLE_WORKERS_POOL_DIVISOR: usize = 4;
/// Workspaces read per page of the lifecycle scan.
pub const LIFECYCLE_SCAN_PAGE_MAX: u32 = 500;
/// After a failed delete, auto-delete retries only this long after it finished.
pub const AUTODELETE_FAILED_RETRY_AFTER: Span = Span::from_hours(24);
/// Owners used within `min(this, activity_bump / 2)` are active (§6).
pub const REMINDER_ACTIVE_OWNER_MAX: Span = Span::from_mins(15);
/// Leeway and buffer of the max-deadline computation (§5.2).
pub const MAX_DEADLINE_LEEWAY: Span = Span::from_hours(2);
pub const MAX_DEADLINE_BUFFER: Span = Span::from_mins(15);
/// A user's extension must reach at least this far ahead (§5.3).
pub const EXTEND_AHEAD_MIN: Span = Span::from_mins(29);
/// A requirement change floors a recomputed max deadline at now + this (§5.3).
pub const REQUIREMENT_CHANGE_FLOOR: Span = Span::from_hours(2);
/// `next_allowed_autostart` tests activations up to `at + this` (§4 rule 2).
pub const AUTOSTART_SEARCH_HORIZON: Span = Span::from_days(7);
/// Hard cap on activations tested by one autostart search (a schedule firing
/// every minute for a week is 10,080 activations).
pub const AUTOSTART_SEARCH_STEPS_MAX: u32 = 10_081;
/// Bounds of a workspace ttl (§1).
pub const WORKSPACE_TTL_MIN: Span = Span::from_mins(1);
pub const WORKSPACE_TTL_MAX: Span = Span::from_days(30);
/// Bounds of `autostop_requirement.weeks`.
pub const AUTOSTOP_REQUIREMENT_WEEKS_MAX: u8 = 16;
/// Minimum non-zero `time_til_autostop_notify`.
pub const AUTOSTOP_NOTIFY_MIN: Span = Span::from_mins(1);

// ---- usage tracking (§7) ------------------------------------------------------

pub const USAGE_FLUSH_INTERVAL_DEFAULT: Span = Span::from_mins(1);
/// One flush statement gives up after this long.
pub const USAGE_FLUSH_TIMEOUT: Span = Span::from_secs(10);
/// Workspaces written per flush statement.
pub const USAGE_FLUSH_BATCH_MAX: usize = 1_000;

// ---- notifications (§8) ---------------------------------------------------------

pub const NOTIFICATION_POLL_INTERVAL_DEFAULT: Span = Span::from_secs(5);
pub const NOTIFICATION_RETRY_DEFAULT: Span = Span::from_mins(1);
/// Outbox rows claimed per delivery pass.
pub const NOTIFICATIONS_PER_POLL_MAX: u32 = 50;

// ---- shutdown and the pool ------------------------------------------------------

pub const SHUTDOWN_TIMEOUT_DEFAULT: Span = Span::from_secs(10);
pub const DB_POOL_SIZE_DEFAULT: u32 = 10;
/// The connection budgets of DESIGN.md need at least this many connections.
pub const DB_POOL_SIZE_MIN: u32 = 5;
pub const DB_ACQUIRE_TIMEOUT_DEFAULT: Span = Span::from_secs(5);

// ---- the SQLite emulation of PostgreSQL ----------------------------------------

/// A lock waiter looks for a deadlock cycle after this long (PostgreSQL's default).
pub const DEADLOCK_TIMEOUT: Span = Span::from_secs(1);
/// Commits between vacuum passes of the emulated versions.
pub const VACUUM_EVERY_COMMITS: u64 = 256;
/// Dead versions removed per vacuum pass and table.
pub const VACUUM_BATCH_MAX: u32 = 2_000;

// ---- provisioners -----------------------------------------------------------------

/// Unfinished jobs read per call.
pub const JOBS_PER_READ_MAX: u32 = 1_000;
/// The longest wait a provisioner may ask of a long-polling acquire (the
/// daemon's `?wait=`).
pub const ACQUIRE_WAIT_MAX: Span = Span::from_secs(30);

// ---- pubsub (semantics/lifecycle.md §2 step 5, prebuilds.md §2) -----------------

/// Notices waiting for the publishing task; one more is dropped ("a queue of 10").
pub const PUBSUB_PUBLISH_QUEUE_MAX: usize = 10;
/// Notices a subscriber may fall behind before it loses the oldest (and is told).
pub const PUBSUB_SUBSCRIBER_BUFFER_MAX: usize = 64;
/// The longest payload (PostgreSQL's `NOTIFY` refuses 8000 bytes and more).
pub const PUBSUB_PAYLOAD_BYTES_MAX: usize = 7_999;
/// A broken listening connection is retried after this, doubling up to the max.
pub const PUBSUB_RECONNECT_BACKOFF_MIN: Span = Span::from_millis(100);
pub const PUBSUB_RECONNECT_BACKOFF_MAX: Span = Span::from_secs(10);
/// TCP keepalives of the listening connection: probes start after this much
/// silence, so a dead peer is noticed after about a minute (after + interval *
/// retries), not after the OS's two hours.
pub const PUBSUB_LISTEN_KEEPALIVE_AFTER: Span = Span::from_secs(30);
pub const PUBSUB_LISTEN_KEEPALIVE_INTERVAL: Span = Span::from_secs(10);
pub const PUBSUB_LISTEN_KEEPALIVE_RETRIES_COUNT: u32 = 3;
