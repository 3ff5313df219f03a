//! The typed scenario: what a loaded, validated scenario file says, with every
//! default applied and the source position of everything the runner may need to
//! blame later (names, timeline entries, expectations).
//!
//! Points in time are offsets from `start` ([`Point`]); ranges stay ranges
//! ([`DurationRange`]) for the runner to draw from the seed. Values the engine
//! derives at world load (a workspace's `next_start_at`, a build's `deadline`
//! and `max_deadline`) are [`Derived::Computed`] unless the file set them: the
//! world builder computes them with the engine's own rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use engine::model::{
    AutomaticUpdates, BuildReason, ChatStatus, JobStatus, NotificationKind, PresetStatus, Roles, Transition,
    UserStatus, WeekdaySet,
};
use engine::time::{Span, Timestamp};

pub use super::error::{Origin, Spanned};
pub use super::values::{Checkable, CrashRate, DurationRange, Point, Window};

/// Declares a fieldless enum of the scenario format with its one name per
/// variant (`as_str`, `ALL`, `Display`, [`Named`]).
macro_rules! format_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Named for $name {
            const NAMES: &'static [&'static str] = &[$($text),+];
            fn from_name(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
            fn name(self) -> &'static str { self.as_str() }
        }
    };
}

/// An enum whose values are written by name in scenario files.
pub trait Named: Sized + Copy {
    const NAMES: &'static [&'static str];
    fn from_name(text: &str) -> Option<Self>;
    fn name(self) -> &'static str;
}

macro_rules! named_engine_enum {
    ($($name:ty),+ $(,)?) => {$(
        impl Named for $name {
            const NAMES: &'static [&'static str] = {
                const N: usize = <$name>::ALL.len();
                const fn names() -> [&'static str; N] {
                    let mut out = [""; N];
                    let mut i = 0;
                    while i < N {
                        out[i] = <$name>::ALL[i].as_str();
                        i += 1;
                    }
                    out
                }
                &names()
            };
            fn from_name(text: &str) -> Option<Self> {
                <$name>::ALL.iter().copied().find(|v| v.as_str() == text)
            }
            fn name(self) -> &'static str { self.as_str() }
        }
    )+};
}

named_engine_enum!(
    Transition,
    BuildReason,
    JobStatus,
    UserStatus,
    AutomaticUpdates,
    NotificationKind,
    ChatStatus,
    PresetStatus,
    engine::model::Weekday,
);

format_enum!(
    /// A workspace's agent at world load.
    AgentState { Ready = "ready", NotReady = "not_ready" }
);

format_enum!(
    /// A workspace's status as expectations see it, derived from its latest build.
    WorkspaceStatus {
        New = "new",
        Pending = "pending",
        Starting = "starting",
        Stopping = "stopping",
        Deleting = "deleting",
        Running = "running",
        Stopped = "stopped",
        Deleted = "deleted",
        Failed = "failed",
        Canceling = "canceling",
        Canceled = "canceled",
    }
);

format_enum!(
    /// A user's role.
    Role { Admin = "admin", TemplateAdmin = "template_admin" }
);

format_enum!(
    /// What a `chat` action does.
    ChatOp { Create = "create", Message = "message", Interrupt = "interrupt", Archive = "archive", Unarchive = "unarchive" }
);

format_enum!(
    /// How a scripted chat turn ends.
    TurnOutcome { Finish = "finish", Error = "error" }
);

format_enum!(
    /// Kinds of `store_fault`.
    StoreFaultKind {
        Error = "error",
        Serialization = "serialization",
        Latency = "latency",
        Hang = "hang",
        Disconnect = "disconnect",
        CommitUnknown = "commit_unknown",
        Restart = "restart",
    }
);

format_enum!(
    /// Statement classes a `store_fault` picks (each statement is in exactly one).
    StoreOp { Lease = "lease", Lock = "lock", Commit = "commit", Write = "write", Read = "read" }
);

format_enum!(
    /// Kinds of `pubsub_fault`.
    PubsubFaultKind { Drop = "drop", Delay = "delay", Reorder = "reorder" }
);

/// The owner name that makes a workspace a prebuild.
pub const PREBUILDS_OWNER: &str = "prebuilds";

/// The scenario's default `start`: Monday 2026-01-05T00:00:00Z.
pub const START_DEFAULT: Timestamp = Timestamp::from_micros(1_767_571_200_000_000);
pub const SETTLE_DEFAULT: Span = Span::from_mins(10);

/// A loaded and validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The path used in messages (as given to the loader).
    pub file: String,
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub seed: u64,
    pub start: Timestamp,
    pub run_for: Span,
    pub settle: Span,
    pub replicas: u32,
    pub settings: Settings,
    pub world: World,
    pub provisioners: Provisioners,
    pub chaos: Chaos,
    /// In file order (entries with equal `at` start in this order).
    pub timeline: Vec<TimelineEntry>,
    pub expect: Vec<Expectation>,
}

/// Engine settings (the table of SCENARIOS.md), defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub lifecycle_interval: Span,
    pub reconcile_interval: Span,
    pub reconcile_paused: bool,
    pub prebuild_failure_hard_limit: u32,
    pub prebuild_backoff: Span,
    pub prebuild_backoff_lookback: Span,
    pub usage_flush_interval: Span,
    pub chat_heartbeat_interval: Span,
    pub chat_stale_after: Span,
    pub chat_acquire_interval: Span,
    pub chat_acquire_batch: u32,
    pub chat_step_max: Span,
    pub chat_archive_after: Span,
    pub chat_retention: Span,
    pub notification_poll_interval: Span,
    pub notification_retry: Span,
    pub shutdown_timeout: Span,
    pub db_pool_size: u32,
    pub db_acquire_timeout: Span,
    pub provisioner_stale_after: Span,
    pub db_latency: DurationRange,
    pub chat_turn_duration: DurationRange,
    pub agent_ready_after: Span,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lifecycle_interval: Span::from_mins(1),
            reconcile_interval: Span::from_mins(1),
            reconcile_paused: false,
            prebuild_failure_hard_limit: 3,
            prebuild_backoff: Span::from_secs(15),
            prebuild_backoff_lookback: Span::from_hours(1),
            usage_flush_interval: Span::from_mins(1),
            chat_heartbeat_interval: Span::from_secs(30),
            chat_stale_after: Span::from_mins(5),
            chat_acquire_interval: Span::from_secs(1),
            chat_acquire_batch: 10,
            chat_step_max: Span::from_mins(1),
            chat_archive_after: Span::ZERO,
            chat_retention: Span::from_days(30),
            notification_poll_interval: Span::from_secs(5),
            notification_retry: Span::from_mins(1),
            shutdown_timeout: Span::from_secs(10),
            db_pool_size: 10,
            db_acquire_timeout: Span::from_secs(5),
            provisioner_stale_after: Span::from_secs(90),
            db_latency: DurationRange::new(Span::from_millis(1), Span::from_millis(5)),
            chat_turn_duration: DurationRange::new(Span::from_secs(5), Span::from_mins(1)),
            agent_ready_after: Span::from_secs(5),
        }
    }
}

impl Settings {
    /// The production settings the engine has built so far, from these.
    pub fn engine(&self) -> engine::settings::Settings {
        engine::settings::Settings {
            lifecycle_interval: self.lifecycle_interval,
            usage_flush_interval: self.usage_flush_interval,
            notification_poll_interval: self.notification_poll_interval,
            notification_retry: self.notification_retry,
            shutdown_timeout: self.shutdown_timeout,
            db_pool_size: self.db_pool_size,
            db_acquire_timeout: self.db_acquire_timeout,
            provisioner_stale_after: self.provisioner_stale_after,
        }
    }
}

/// The initial database contents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct World {
    pub users: Vec<User>,
    pub templates: Vec<Template>,
    pub workspaces: Vec<Workspace>,
    pub chats: Vec<Chat>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub origin: Origin,
    pub name: Spanned<String>,
    pub status: UserStatus,
    pub roles: Roles,
    /// A daily cron with optional `CRON_TZ=`.
    pub quiet_hours: Checkable<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub origin: Origin,
    pub name: Spanned<String>,
    pub settings: TemplateSettings,
    /// At least one; the last is the active version.
    pub versions: Vec<Version>,
    pub presets: Vec<Preset>,
}

impl Template {
    pub fn active_version(&self) -> Option<&Version> {
        self.versions.last()
    }
}

/// A template's schedule settings (also what `update_template` may change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSettings {
    pub default_ttl: Checkable<Span>,
    pub activity_bump: Checkable<Span>,
    pub time_til_autostop_notify: Checkable<Span>,
    pub failure_ttl: Checkable<Span>,
    pub time_til_dormant: Checkable<Span>,
    pub time_til_dormant_autodelete: Checkable<Span>,
    pub allow_user_autostart: bool,
    pub allow_user_autostop: bool,
    pub autostart_days: WeekdaySet,
    pub autostop_requirement: AutostopRequirement,
    pub require_active_version: bool,
    pub deprecated: bool,
}

impl Default for TemplateSettings {
    fn default() -> Self {
        TemplateSettings {
            default_ttl: Checkable::checked(Span::ZERO),
            activity_bump: Checkable::checked(Span::from_hours(1)),
            time_til_autostop_notify: Checkable::checked(Span::ZERO),
            failure_ttl: Checkable::checked(Span::ZERO),
            time_til_dormant: Checkable::checked(Span::ZERO),
            time_til_dormant_autodelete: Checkable::checked(Span::ZERO),
            allow_user_autostart: true,
            allow_user_autostop: true,
            autostart_days: WeekdaySet::ALL,
            autostop_requirement: AutostopRequirement::default(),
            require_active_version: false,
            deprecated: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutostopRequirement {
    /// No days: no requirement.
    pub days: WeekdaySet,
    /// 0..=16 (0 is read as 1) unless unchecked.
    pub weeks: Checkable<u8>,
}

impl Default for AutostopRequirement {
    fn default() -> Self {
        AutostopRequirement { days: WeekdaySet::EMPTY, weeks: Checkable::checked(1) }
    }
}

/// A change of template settings: only the fields written are `Some`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateChanges {
    pub default_ttl: Option<Checkable<Span>>,
    pub activity_bump: Option<Checkable<Span>>,
    pub time_til_autostop_notify: Option<Checkable<Span>>,
    pub failure_ttl: Option<Checkable<Span>>,
    pub time_til_dormant: Option<Checkable<Span>>,
    pub time_til_dormant_autodelete: Option<Checkable<Span>>,
    pub allow_user_autostart: Option<bool>,
    pub allow_user_autostop: Option<bool>,
    pub autostart_days: Option<WeekdaySet>,
    /// `days` and `weeks` may be changed separately.
    pub autostop_requirement_days: Option<WeekdaySet>,
    pub autostop_requirement_weeks: Option<Checkable<u8>>,
    pub require_active_version: Option<bool>,
    pub deprecated: Option<bool>,
}

impl TemplateChanges {
    pub fn is_empty(&self) -> bool {
        *self == TemplateChanges::default()
    }

    /// Applies the changes to `settings`.
    pub fn apply(&self, settings: &mut TemplateSettings) {
        macro_rules! set {
            ($($field:ident),+) => {$(
                if let Some(value) = &self.$field {
                    settings.$field = value.clone();
                }
            )+};
        }
        set!(
            default_ttl,
            activity_bump,
            time_til_autostop_notify,
            failure_ttl,
            time_til_dormant,
            time_til_dormant_autodelete,
            allow_user_autostart,
            allow_user_autostop,
            autostart_days,
            require_active_version,
            deprecated
        );
        if let Some(days) = self.autostop_requirement_days {
            settings.autostop_requirement.days = days;
        }
        if let Some(weeks) = &self.autostop_requirement_weeks {
            settings.autostop_requirement.weeks = weeks.clone();
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub origin: Origin,
    pub name: Spanned<String>,
    pub parameters: Vec<ParameterSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterSpec {
    pub name: Spanned<String>,
    pub required: bool,
    pub default: Option<String>,
}

/// Parameter values by name.
pub type Parameters = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preset {
    pub origin: Origin,
    pub name: Spanned<String>,
    /// The version it belongs to (defaulted to the active version at load).
    pub version: Spanned<String>,
    pub parameters: Parameters,
    /// Desired prebuilds; 0 = none.
    pub instances: u32,
    /// 0 = never expire.
    pub expiration_ttl: Checkable<Span>,
    pub schedules: Option<PresetSchedules>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresetSchedules {
    /// IANA zone (default `UTC`).
    pub timezone: Checkable<String>,
    pub rules: Vec<ScheduleRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleRule {
    /// `* HOUR DOM MONTH DOW`.
    pub cron: Checkable<String>,
    pub instances: u32,
}

/// A workspace owner: a declared user, or the prebuilds system user.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    User(String),
    Prebuilds,
}

impl Owner {
    pub fn parse(text: &str) -> Owner {
        if text == PREBUILDS_OWNER {
            Owner::Prebuilds
        } else {
            Owner::User(text.to_owned())
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Owner::User(name) => name,
            Owner::Prebuilds => PREBUILDS_OWNER,
        }
    }
}

/// A value the file may leave to the engine's own derivation at world load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Derived<T> {
    /// Not written: computed as the semantics say.
    Computed,
    Given(T),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    pub origin: Origin,
    pub name: Spanned<String>,
    pub owner: Spanned<Owner>,
    pub template: Spanned<String>,
    /// Defaulted to the template's active version at load.
    pub version: Spanned<String>,
    pub preset: Option<Spanned<String>>,
    pub parameters: Parameters,
    pub created: Point,
    /// A weekly cron with optional `CRON_TZ=`; `None`: no autostart.
    pub autostart: Option<Checkable<String>>,
    /// Copied from the template's `default_ttl` when not written; 0 = no autostop.
    pub ttl: Checkable<Span>,
    pub automatic_updates: AutomaticUpdates,
    pub last_used: Point,
    pub dormant_at: Option<Point>,
    pub deleting_at: Option<Point>,
    /// `Computed` only with a checked `autostart`; otherwise none unless written.
    pub next_start_at: Derived<Option<Point>>,
    pub agent: AgentState,
    pub latest_build: Option<SeedBuild>,
}

impl Workspace {
    /// Seeded as deleted: the latest build is a succeeded delete.
    pub fn is_deleted(&self) -> bool {
        self.latest_build
            .as_ref()
            .is_some_and(|b| b.transition == Transition::Delete && b.status == JobStatus::Succeeded)
    }
    pub fn is_prebuild(&self) -> bool {
        self.owner.value == Owner::Prebuilds
    }
}

/// The latest build a workspace is seeded with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedBuild {
    pub origin: Origin,
    pub transition: Transition,
    pub status: JobStatus,
    pub reason: BuildReason,
    pub created: Point,
    /// `None` while the job is unfinished (pending or running).
    pub completed: Option<Point>,
    /// Only succeeded start builds carry deadlines: others are `Given(none)`.
    pub deadline: Derived<Checkable<Option<Point>>>,
    pub max_deadline: Derived<Checkable<Option<Point>>>,
}

impl SeedBuild {
    pub fn is_succeeded_start(&self) -> bool {
        self.transition == Transition::Start && self.status == JobStatus::Succeeded
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chat {
    pub origin: Origin,
    pub name: Spanned<String>,
    pub owner: Spanned<String>,
    pub workspace: Option<Spanned<String>>,
    pub status: ChatStatus,
    pub last_activity: Point,
    pub created: Point,
    /// For `running` chats only: when the lease of a worker that no longer
    /// exists was last renewed.
    pub heartbeat: Option<Point>,
}

/// The simulated build workers.
#[derive(Clone, Debug, PartialEq)]
pub struct Provisioners {
    pub count: u32,
    pub build_duration: DurationRange,
    pub failure_rate: f64,
    /// Per-template overrides, by template name.
    pub templates: BTreeMap<String, ProvisionerOverride>,
}

impl Default for Provisioners {
    fn default() -> Self {
        Provisioners {
            count: 2,
            build_duration: DurationRange::new(Span::from_secs(10), Span::from_mins(1)),
            failure_rate: 0.0,
            templates: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProvisionerOverride {
    /// Where the template's name was written.
    pub origin: Origin,
    pub failure_rate: Option<f64>,
    pub build_duration: Option<DurationRange>,
}

/// Random faults drawn from the seed until `run_for` ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Chaos {
    pub store_error_rate: f64,
    pub serialization_failure_rate: f64,
    pub commit_unknown_rate: f64,
    /// Replaces `db_latency` while chaos is on.
    pub store_latency: Option<DurationRange>,
    pub pubsub_drop_rate: f64,
    pub pubsub_delay: Option<DurationRange>,
    pub notification_failure_rate: f64,
    pub replica_crash_rate: CrashRate,
    pub replica_restart_after: DurationRange,
    /// Each replica's skew, drawn once; signed endpoints (SCENARIOS.md: "either sign").
    pub clock_skew: Option<DurationRange>,
}

impl Default for Chaos {
    fn default() -> Self {
        Chaos {
            store_error_rate: 0.0,
            serialization_failure_rate: 0.0,
            commit_unknown_rate: 0.0,
            store_latency: None,
            pubsub_drop_rate: 0.0,
            pubsub_delay: None,
            notification_failure_rate: 0.0,
            replica_crash_rate: CrashRate::default(),
            replica_restart_after: DurationRange::new(Span::from_secs(10), Span::from_mins(5)),
            clock_skew: None,
        }
    }
}

impl Chaos {
    /// No knob set: nothing random happens.
    pub fn is_off(&self) -> bool {
        let default = Chaos::default();
        Chaos { replica_restart_after: default.replica_restart_after, ..self.clone() } == default
    }
}

/// Which replica an action or fault concerns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReplicaTarget {
    /// `0 .. replicas-1`.
    Index(u32),
    /// `owner:c1`: the replica whose worker holds chat `c1`'s lease at that instant.
    ChatOwner(String),
}

pub type ReplicaRef = Spanned<ReplicaTarget>;

#[derive(Clone, Debug, PartialEq)]
pub struct TimelineEntry {
    pub origin: Origin,
    /// Offset from `start`, within `0..=run_for`.
    pub at: Span,
    /// Where the action key was written.
    pub action_origin: Origin,
    pub action: Action,
}

/// `start`, `stop` and `delete`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildAction {
    pub workspace: Spanned<String>,
    /// Default: the workspace's owner.
    pub user: Option<Spanned<String>>,
    /// Default: the lowest live replica.
    pub replica: Option<ReplicaRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateWorkspace {
    pub name: Spanned<String>,
    pub owner: Spanned<String>,
    pub template: Spanned<String>,
    /// Default: the template's active version at that instant.
    pub version: Option<Spanned<String>>,
    pub preset: Option<Spanned<String>>,
    pub parameters: Parameters,
    /// Default: the template's `default_ttl` at that instant.
    pub ttl: Option<Checkable<Span>>,
    pub autostart: Option<Checkable<String>>,
    pub automatic_updates: Option<AutomaticUpdates>,
    pub replica: Option<ReplicaRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateWorkspace {
    pub name: Spanned<String>,
    /// `0` (or `none`): no autostop.
    pub ttl: Option<Checkable<Span>>,
    /// `Some(None)`: remove the schedule (`none`).
    pub autostart: Option<Option<Checkable<String>>>,
    pub automatic_updates: Option<AutomaticUpdates>,
    pub dormant: Option<bool>,
    pub user: Option<Spanned<String>>,
    pub replica: Option<ReplicaRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateTemplate {
    pub name: Spanned<String>,
    pub changes: TemplateChanges,
    pub deleted: bool,
    pub replica: Option<ReplicaRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishVersion {
    pub template: Spanned<String>,
    pub version: Version,
    /// Their `version` is the published one.
    pub presets: Vec<Preset>,
    pub replica: Option<ReplicaRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetUser {
    pub name: Spanned<String>,
    pub status: Option<UserStatus>,
    pub roles: Option<Roles>,
    pub replica: Option<ReplicaRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatAction {
    pub name: Spanned<String>,
    pub op: ChatOp,
    /// `create` only (required there).
    pub owner: Option<Spanned<String>>,
    /// `create` only.
    pub workspace: Option<Spanned<String>>,
    /// `create` and `message` only; unscripted turns last `chat_turn_duration` and finish.
    pub turn: Option<Turn>,
    pub replica: Option<ReplicaRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    /// `None`: drawn from `settings.chat_turn_duration`.
    pub duration: Option<DurationRange>,
    pub outcome: TurnOutcome,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoreFault {
    pub kind: StoreFaultKind,
    /// Empty never: all classes when not written.
    pub ops: BTreeSet<StoreOp>,
    pub rate: f64,
    /// `latency` kind only (required there).
    pub latency: Option<DurationRange>,
    /// `None`: every replica (and always for `restart`).
    pub replica: Option<ReplicaRef>,
    /// `for`, resolved: default until the end of `run_for` (1s for `restart`).
    pub duration: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProvisionerFault {
    /// `None`: every template (always with `offline`).
    pub template: Option<Spanned<String>>,
    pub failure_rate: Option<f64>,
    pub build_duration: Option<DurationRange>,
    pub offline: bool,
    pub duration: Span,
}

/// What a timeline entry does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Activity { workspace: Spanned<String>, replica: Option<ReplicaRef> },
    Start(BuildAction),
    Stop(BuildAction),
    Delete(BuildAction),
    Extend { workspace: Spanned<String>, deadline: Point, user: Option<Spanned<String>>, replica: Option<ReplicaRef> },
    CreateWorkspace(CreateWorkspace),
    UpdateWorkspace(UpdateWorkspace),
    UpdateTemplate(UpdateTemplate),
    PublishVersion(PublishVersion),
    SetUser(SetUser),
    SetSetting { reconcile_paused: bool, replica: Option<ReplicaRef> },
    Chat(ChatAction),
    StoreFault(StoreFault),
    PoolHog { replica: ReplicaRef, connections: u32, duration: Span },
    PubsubFault { kind: PubsubFaultKind, rate: f64, delay: Option<DurationRange>, duration: Span },
    NotificationFault { rate: f64, duration: Span },
    ProvisionerFault(ProvisionerFault),
    Shutdown { replica: ReplicaRef },
    Crash { replica: ReplicaRef, restart_after: Option<DurationRange> },
    Restart { replica: ReplicaRef },
    ClockSkew { replica: ReplicaRef, offset: Span },
}

impl Action {
    /// Every action key, in the order of SCENARIOS.md's table.
    pub const NAMES: &'static [&'static str] = &[
        "activity",
        "start",
        "stop",
        "delete",
        "extend",
        "create_workspace",
        "update_workspace",
        "update_template",
        "publish_version",
        "set_user",
        "set_setting",
        "chat",
        "store_fault",
        "pool_hog",
        "pubsub_fault",
        "notification_fault",
        "provisioner_fault",
        "shutdown",
        "crash",
        "restart",
        "clock_skew",
    ];

    /// The action's key in the file.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Activity { .. } => "activity",
            Action::Start(_) => "start",
            Action::Stop(_) => "stop",
            Action::Delete(_) => "delete",
            Action::Extend { .. } => "extend",
            Action::CreateWorkspace(_) => "create_workspace",
            Action::UpdateWorkspace(_) => "update_workspace",
            Action::UpdateTemplate(_) => "update_template",
            Action::PublishVersion(_) => "publish_version",
            Action::SetUser(_) => "set_user",
            Action::SetSetting { .. } => "set_setting",
            Action::Chat(_) => "chat",
            Action::StoreFault(_) => "store_fault",
            Action::PoolHog { .. } => "pool_hog",
            Action::PubsubFault { .. } => "pubsub_fault",
            Action::NotificationFault { .. } => "notification_fault",
            Action::ProvisionerFault(_) => "provisioner_fault",
            Action::Shutdown { .. } => "shutdown",
            Action::Crash { .. } => "crash",
            Action::Restart { .. } => "restart",
            Action::ClockSkew { .. } => "clock_skew",
        }
    }

    /// A fault (removed during `settle`), as opposed to a user action or a
    /// replica operation.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Action::StoreFault(_)
                | Action::PoolHog { .. }
                | Action::PubsubFault { .. }
                | Action::NotificationFault { .. }
                | Action::ProvisionerFault(_)
        )
    }

    /// The replica the action names, if any.
    pub fn replica(&self) -> Option<&ReplicaRef> {
        match self {
            Action::Activity { replica, .. }
            | Action::Extend { replica, .. }
            | Action::SetSetting { replica, .. }
            | Action::Start(BuildAction { replica, .. })
            | Action::Stop(BuildAction { replica, .. })
            | Action::Delete(BuildAction { replica, .. })
            | Action::CreateWorkspace(CreateWorkspace { replica, .. })
            | Action::UpdateWorkspace(UpdateWorkspace { replica, .. })
            | Action::UpdateTemplate(UpdateTemplate { replica, .. })
            | Action::PublishVersion(PublishVersion { replica, .. })
            | Action::SetUser(SetUser { replica, .. })
            | Action::Chat(ChatAction { replica, .. })
            | Action::StoreFault(StoreFault { replica, .. }) => replica.as_ref(),
            Action::PoolHog { replica, .. }
            | Action::Shutdown { replica }
            | Action::Crash { replica, .. }
            | Action::Restart { replica }
            | Action::ClockSkew { replica, .. } => Some(replica),
            Action::PubsubFault { .. } | Action::NotificationFault { .. } | Action::ProvisionerFault(_) => None,
        }
    }
}

/// `count` (exact), or `at_least` and/or `at_most`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Exactly(u64),
    Within { at_least: Option<u64>, at_most: Option<u64> },
}

impl Count {
    pub fn accepts(&self, n: u64) -> bool {
        match *self {
            Count::Exactly(count) => n == count,
            Count::Within { at_least, at_most } => {
                at_least.is_none_or(|min| n >= min) && at_most.is_none_or(|max| n <= max)
            }
        }
    }
}

/// What a point-valued field of an expectation must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointExpect {
    /// `none`: unset.
    None,
    /// Set, any value (`dormant: true`).
    Set,
    At(Point),
    Within(Window),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    /// Where the kind key was written.
    pub origin: Origin,
    /// Offset from `start`; `None`: the end of the run (`run_for + settle`).
    pub at: Option<Span>,
    pub kind: Expect,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    Builds(BuildsExpect),
    Notifications(NotificationsExpect),
    Workspace(WorkspaceExpect),
    Prebuilds(PrebuildsExpect),
    Preset(PresetExpect),
    Chat(ChatExpect),
    /// `violations: 0`.
    Violations,
}

impl Expect {
    pub const NAMES: &'static [&'static str] =
        &["builds", "notifications", "workspace", "prebuilds", "preset", "chat", "violations"];

    pub fn name(&self) -> &'static str {
        match self {
            Expect::Builds(_) => "builds",
            Expect::Notifications(_) => "notifications",
            Expect::Workspace(_) => "workspace",
            Expect::Prebuilds(_) => "prebuilds",
            Expect::Preset(_) => "preset",
            Expect::Chat(_) => "chat",
            Expect::Violations => "violations",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BuildsExpect {
    /// Its current name at `at`.
    pub workspace: Option<Spanned<String>>,
    pub transition: Option<Transition>,
    pub reason: Option<BuildReason>,
    pub status: Option<JobStatus>,
    pub version: Option<Spanned<String>>,
    /// On the true simulated time the build was created.
    pub between: Option<Window>,
    pub count: Count,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NotificationsExpect {
    pub kind: Option<NotificationKind>,
    pub workspace: Option<Spanned<String>>,
    /// The recipient.
    pub user: Option<Spanned<String>>,
    pub between: Option<Window>,
    pub count: Count,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkspaceExpect {
    pub name: Spanned<String>,
    pub status: Option<WorkspaceStatus>,
    pub owner: Option<Spanned<Owner>>,
    pub version: Option<Spanned<String>>,
    pub deadline: Option<PointExpect>,
    pub max_deadline: Option<PointExpect>,
    /// `dormant: true/false` is stored here as `Set`/`None`.
    pub dormant_at: Option<PointExpect>,
    pub deleting_at: Option<PointExpect>,
    pub last_used: Option<PointExpect>,
    pub next_start_at: Option<PointExpect>,
    pub agent: Option<AgentState>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PrebuildsExpect {
    pub template: Option<Spanned<String>>,
    pub version: Option<Spanned<String>>,
    pub preset: Option<Spanned<String>>,
    pub ready: Option<u64>,
    pub building: Option<u64>,
    pub total: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PresetExpect {
    pub template: Option<Spanned<String>>,
    pub version: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub status: PresetStatus,
}

/// Which replica holds a chat's current lease, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatOwnerExpect {
    Replica(u32),
    None,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatExpect {
    pub name: Spanned<String>,
    pub status: Option<ChatStatus>,
    pub owner: Option<ChatOwnerExpect>,
    pub turns: Option<u64>,
}

/// Which subsystems a scenario uses: the runner starts only those loops, and
/// reports a scenario needing an unbuilt subsystem as `unsupported`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Any preset anywhere (world or published): SCENARIOS.md starts the
    /// reconciler then ("no presets anywhere: no reconciler").
    pub presets: bool,
    /// The scenario exercises prebuilds: a preset with instances or schedules,
    /// a seeded prebuild, `set_setting`, or a prebuild expectation (`prebuilds`,
    /// `preset`, builds of reason `prebuild`/`claim`, prebuild notifications).
    pub prebuilds: bool,
    /// Chats in the world, a `chat` action, a replica named `owner:<chat>`, or
    /// a chat expectation or notification.
    pub chats: bool,
}

impl Scenario {
    /// `file:line:col` of a position in this scenario's file.
    pub fn locate(&self, origin: Origin) -> String {
        format!("{}:{}:{}", self.file, origin.line, origin.col)
    }

    /// An error at a position of this scenario's file, for mistakes found at
    /// run time (a reference that resolves to nothing at its instant).
    pub fn error_at(&self, origin: Origin, message: impl Into<String>) -> super::error::LoadError {
        super::error::LoadError::at(&self.file, origin, message)
    }

    /// The whole run: `run_for` then `settle`.
    pub fn run_end(&self) -> Span {
        self.run_for + self.settle
    }

    /// Every preset, world and published, in declaration order, with its template.
    pub fn all_presets(&self) -> impl Iterator<Item = (&str, &Preset)> {
        let world = self.world.templates.iter().flat_map(|t| t.presets.iter().map(move |p| (t.name.as_str(), p)));
        let published = self.timeline.iter().filter_map(|entry| match &entry.action {
            Action::PublishVersion(publish) => Some(publish),
            _ => None,
        });
        world.chain(published.flat_map(|p| p.presets.iter().map(move |preset| (p.template.as_str(), preset))))
    }

    pub fn uses_prebuilds(&self) -> bool {
        self.capabilities().prebuilds
    }

    pub fn uses_chats(&self) -> bool {
        self.capabilities().chats
    }

    pub fn capabilities(&self) -> Capabilities {
        let presets = self.all_presets().next().is_some();
        let prebuilds = self.all_presets().any(|(_, p)| p.instances > 0 || p.schedules.is_some())
            || self.world.workspaces.iter().any(Workspace::is_prebuild)
            || self.timeline.iter().any(|e| matches!(e.action, Action::SetSetting { .. }))
            || self.expect.iter().any(|e| match &e.kind {
                Expect::Prebuilds(_) | Expect::Preset(_) => true,
                Expect::Builds(b) => matches!(b.reason, Some(BuildReason::Prebuild | BuildReason::Claim)),
                Expect::Notifications(n) => matches!(
                    n.kind,
                    Some(NotificationKind::PrebuildFailureLimit | NotificationKind::PrebuildResourceReplaced)
                ),
                Expect::Workspace(w) => w.owner.as_ref().is_some_and(|o| o.value == Owner::Prebuilds),
                _ => false,
            });
        let chat_replica = |entry: &TimelineEntry| {
            entry.action.replica().is_some_and(|r| matches!(r.value, ReplicaTarget::ChatOwner(_)))
        };
        let chats = !self.world.chats.is_empty()
            || self.timeline.iter().any(|e| matches!(e.action, Action::Chat(_)) || chat_replica(e))
            || self.expect.iter().any(|e| match &e.kind {
                Expect::Chat(_) => true,
                Expect::Notifications(n) => n.kind == Some(NotificationKind::ChatArchiveDigest),
                _ => false,
            });
        Capabilities { presets, prebuilds, chats }
    }

    /// The longest build duration any provisioner may be assigned (base,
    /// per-template overrides, `provisioner_fault`s).
    pub fn build_duration_max(&self) -> Span {
        let overrides = self.provisioners.templates.values().filter_map(|o| o.build_duration.map(|d| d.max));
        let faults = self.timeline.iter().filter_map(|e| match &e.action {
            Action::ProvisionerFault(fault) => fault.build_duration.map(|d| d.max),
            _ => None,
        });
        overrides.chain(faults).fold(self.provisioners.build_duration.max, Span::max)
    }

    /// The shortest `settle` the settings allow (SCENARIOS.md, settings validity).
    pub fn settle_min(&self) -> Span {
        let interval = self.settings.lifecycle_interval.max(self.settings.reconcile_interval);
        let mut min = interval.saturating_mul(2) + self.build_duration_max() + Span::from_mins(1);
        if self.uses_chats() {
            min = min.max(self.settings.chat_stale_after + Span::from_mins(1));
        }
        min
    }
}
