//! The domain model: users, templates, versions, presets, workspaces, builds,
//! provisioner jobs, notifications and chats, as plain data.
//!
//! States and reasons are enums with one stable lower-case name each (the name
//! the scenarios, the trace and both stores use); nothing here compares strings
//! for a state. Records are what a store returns; the rules read them and never
//! write them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{
    BuildId, ChatId, JobId, NotificationId, PresetId, ProvisionerId, TemplateId, UserId, VersionId, WorkspaceId,
    PREBUILDS_USER_ID,
};
use crate::time::{Span, Timestamp};

/// Declares a fieldless enum with one canonical name per variant, plus
/// `as_str`, `ALL`, `Display` and `FromStr` from those names.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
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

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(text: &str) -> Result<Self, UnknownName> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        kind: stringify!($name),
                        value: text.to_owned(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}

/// A name that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`, expected one of: {}", expected.join(", "))]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

named_enum!(
    /// A user's account status.
    UserStatus { Active = "active", Suspended = "suspended", Dormant = "dormant" }
);

named_enum!(
    /// What a build does to its workspace.
    Transition { Start = "start", Stop = "stop", Delete = "delete" }
);

named_enum!(
    /// Why a build was made.
    BuildReason {
        Initiator = "initiator",
        Autostart = "autostart",
        Autostop = "autostop",
        Failedstop = "failedstop",
        Dormancy = "dormancy",
        Autodelete = "autodelete",
        Prebuild = "prebuild",
        Claim = "claim",
    }
);

impl BuildReason {
    /// Reasons of builds the engine makes on its own, whose failure notifies the owner.
    pub const fn is_autobuild(self) -> bool {
        matches!(
            self,
            BuildReason::Autostart
                | BuildReason::Autostop
                | BuildReason::Failedstop
                | BuildReason::Dormancy
                | BuildReason::Autodelete
        )
    }
}

named_enum!(
    /// A provisioner job's status.
    JobStatus {
        Pending = "pending",
        Running = "running",
        Canceling = "canceling",
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
    }
);

impl JobStatus {
    /// Succeeded, failed and canceled jobs are finished.
    pub const fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled)
    }
}

named_enum!(
    /// Whether autostart moves a workspace to the template's active version.
    AutomaticUpdates { Never = "never", Always = "always" }
);

named_enum!(
    /// Notification kinds; each has its own dedupe key (see [`DedupeKey`]).
    NotificationKind {
        AutostopReminder = "autostop_reminder",
        WorkspaceDormant = "workspace_dormant",
        WorkspaceMarkedForDeletion = "workspace_marked_for_deletion",
        WorkspaceDeleted = "workspace_deleted",
        AutobuildFailed = "autobuild_failed",
        WorkspaceAutoUpdated = "workspace_auto_updated",
        PrebuildFailureLimit = "prebuild_failure_limit",
        PrebuildResourceReplaced = "prebuild_resource_replaced",
        ChatArchiveDigest = "chat_archive_digest",
    }
);

named_enum!(
    /// A chat's stored status. `running` and `pending` differ only by whether a
    /// live lease exists, which the chat engine derives.
    ChatStatus {
        Pending = "pending",
        Running = "running",
        Waiting = "waiting",
        Completed = "completed",
        Error = "error",
        Archived = "archived",
    }
);

named_enum!(
    /// A preset's stored reconcile status.
    PresetStatus { Healthy = "healthy", HardLimited = "hard_limited", ValidationFailed = "validation_failed" }
);

named_enum!(
    /// Days of the week, Monday first (ISO order).
    Weekday { Mon = "mon", Tue = "tue", Wed = "wed", Thu = "thu", Fri = "fri", Sat = "sat", Sun = "sun" }
);

impl Weekday {
    pub fn from_chrono(day: chrono::Weekday) -> Weekday {
        Weekday::ALL[day.num_days_from_monday() as usize]
    }
    pub fn to_chrono(self) -> chrono::Weekday {
        match self {
            Weekday::Mon => chrono::Weekday::Mon,
            Weekday::Tue => chrono::Weekday::Tue,
            Weekday::Wed => chrono::Weekday::Wed,
            Weekday::Thu => chrono::Weekday::Thu,
            Weekday::Fri => chrono::Weekday::Fri,
            Weekday::Sat => chrono::Weekday::Sat,
            Weekday::Sun => chrono::Weekday::Sun,
        }
    }
    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of weekdays, stored as a bit mask (bit 0 = Monday).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WeekdaySet(u8);

impl WeekdaySet {
    pub const EMPTY: WeekdaySet = WeekdaySet(0);
    pub const ALL: WeekdaySet = WeekdaySet(0x7f);

    pub const fn from_bits(bits: u8) -> Self {
        WeekdaySet(bits & 0x7f)
    }
    pub const fn bits(self) -> u8 {
        self.0
    }
    pub const fn contains(self, day: Weekday) -> bool {
        self.0 & day.bit() != 0
    }
    pub fn insert(&mut self, day: Weekday) {
        self.0 |= day.bit();
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Weekday> {
        Weekday::ALL.iter().copied().filter(move |d| self.contains(*d))
    }
}

impl FromIterator<Weekday> for WeekdaySet {
    fn from_iter<I: IntoIterator<Item = Weekday>>(iter: I) -> Self {
        let mut set = WeekdaySet::EMPTY;
        for day in iter {
            set.insert(day);
        }
        set
    }
}

impl fmt::Debug for WeekdaySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A user's roles.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize)]
pub struct Roles {
    /// May act on any workspace, prebuilds too.
    pub admin: bool,
    /// Receives the template admins' notifications.
    pub template_admin: bool,
}

impl Roles {
    pub const fn bits(self) -> u8 {
        (self.admin as u8) | ((self.template_admin as u8) << 1)
    }
    pub const fn from_bits(bits: u8) -> Roles {
        Roles { admin: bits & 1 != 0, template_admin: bits & 2 != 0 }
    }
}

/// The default quiet-hours schedule (midnight UTC), as in the reference.
pub const QUIET_HOURS_DEFAULT: &str = "CRON_TZ=UTC 0 0 * * *";

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub status: UserStatus,
    pub roles: Roles,
    /// A daily cron with optional `CRON_TZ=`; empty means [`QUIET_HOURS_DEFAULT`].
    pub quiet_hours: String,
    pub created_at: Timestamp,
}

impl User {
    /// An active user with no roles and the default quiet hours.
    pub fn new(id: UserId, name: impl Into<String>, created_at: Timestamp) -> User {
        User {
            id,
            name: name.into(),
            status: UserStatus::Active,
            roles: Roles::default(),
            quiet_hours: String::new(),
            created_at,
        }
    }

    pub fn is_prebuilds(&self) -> bool {
        self.id == PREBUILDS_USER_ID
    }
    pub fn quiet_hours_or_default(&self) -> &str {
        if self.quiet_hours.trim().is_empty() {
            QUIET_HOURS_DEFAULT
        } else {
            &self.quiet_hours
        }
    }
}

/// The template's autostop requirement: days on which a running workspace must
/// stop within the owner's quiet hours, every `weeks` weeks.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AutostopRequirement {
    pub days: WeekdaySet,
    /// 1..=16; 0 is read as 1.
    pub weeks: u8,
}

impl Default for AutostopRequirement {
    fn default() -> Self {
        AutostopRequirement { days: WeekdaySet::EMPTY, weeks: 1 }
    }
}

impl AutostopRequirement {
    pub fn weeks_effective(&self) -> u8 {
        self.weeks.max(1)
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Template {
    pub id: TemplateId,
    pub name: String,
    pub active_version_id: VersionId,
    /// Zero: no autostop by default.
    pub default_ttl: Span,
    /// Zero: activity never moves the deadline.
    pub activity_bump: Span,
    /// `time_til_autostop_notify`; zero: no reminder.
    pub autostop_notify: Span,
    pub failure_ttl: Span,
    pub time_til_dormant: Span,
    pub time_til_dormant_autodelete: Span,
    pub allow_user_autostart: bool,
    pub allow_user_autostop: bool,
    pub autostart_days: WeekdaySet,
    pub autostop_requirement: AutostopRequirement,
    pub require_active_version: bool,
    pub deprecated: bool,
    pub deleted: bool,
    pub created_at: Timestamp,
}

impl Template {
    /// A template with the documented defaults (SCENARIOS.md's `world.templates`):
    /// no default ttl, a 1h activity bump, no reminder, no failure ttl, no
    /// dormancy or auto-delete, user autostart and autostop allowed every day,
    /// no autostop requirement.
    pub fn new(
        id: TemplateId,
        name: impl Into<String>,
        active_version_id: VersionId,
        created_at: Timestamp,
    ) -> Template {
        Template {
            id,
            name: name.into(),
            active_version_id,
            default_ttl: Span::ZERO,
            activity_bump: Span::from_hours(1),
            autostop_notify: Span::ZERO,
            failure_ttl: Span::ZERO,
            time_til_dormant: Span::ZERO,
            time_til_dormant_autodelete: Span::ZERO,
            allow_user_autostart: true,
            allow_user_autostop: true,
            autostart_days: WeekdaySet::ALL,
            autostop_requirement: AutostopRequirement::default(),
            require_active_version: false,
            deprecated: false,
            deleted: false,
            created_at,
        }
    }
}

/// A parameter a template version declares.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ParameterSpec {
    pub name: String,
    pub required: bool,
    pub default: Option<String>,
}

/// Parameter values by name.
pub type Parameters = BTreeMap<String, String>;

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TemplateVersion {
    pub id: VersionId,
    pub template_id: TemplateId,
    pub name: String,
    pub parameters: Vec<ParameterSpec>,
    pub created_at: Timestamp,
}

/// One scheduled autoscaling rule of a preset.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PresetScheduleRule {
    pub cron: String,
    pub instances: u32,
}

#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct PresetSchedules {
    /// IANA zone; empty means UTC.
    pub timezone: String,
    pub rules: Vec<PresetScheduleRule>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Preset {
    pub id: PresetId,
    pub version_id: VersionId,
    pub name: String,
    pub parameters: Parameters,
    /// Desired prebuilds; `None` only in production data (ignored).
    pub instances: Option<u32>,
    pub expiration_ttl: Span,
    pub schedules: Option<PresetSchedules>,
    pub last_invalidated_at: Option<Timestamp>,
    pub status: PresetStatus,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub owner_id: UserId,
    pub template_id: TemplateId,
    pub name: String,
    /// `None`: no autostop of its own.
    pub ttl: Option<Span>,
    /// The weekly autostart cron, as stored (may be invalid: stored data is not trusted).
    pub autostart: Option<String>,
    pub automatic_updates: AutomaticUpdates,
    pub last_used_at: Timestamp,
    pub dormant_at: Option<Timestamp>,
    pub deleting_at: Option<Timestamp>,
    pub next_start_at: Option<Timestamp>,
    pub deleted: bool,
    pub created_at: Timestamp,
}

impl Workspace {
    pub fn is_prebuild(&self) -> bool {
        self.owner_id == PREBUILDS_USER_ID
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Build {
    pub id: BuildId,
    pub workspace_id: WorkspaceId,
    /// Unique per workspace; the latest build has the highest number.
    pub number: i32,
    pub transition: Transition,
    pub reason: BuildReason,
    pub initiator_id: UserId,
    pub version_id: VersionId,
    pub job_id: JobId,
    pub preset_id: Option<PresetId>,
    pub parameters: Parameters,
    pub created_at: Timestamp,
    pub deadline: Option<Timestamp>,
    pub max_deadline: Option<Timestamp>,
    /// The announced stop time of the last reminder (the reminder marker).
    pub notified_autostop_deadline: Option<Timestamp>,
    /// When the build's agent reported ready.
    pub agent_ready_at: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub build_id: BuildId,
    pub workspace_id: WorkspaceId,
    pub template_id: TemplateId,
    pub version_id: VersionId,
    pub status: JobStatus,
    /// Jobs of prebuilds are taken after users' jobs.
    pub is_prebuild: bool,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub canceled_at: Option<Timestamp>,
    pub worker_id: Option<ProvisionerId>,
    pub error: Option<String>,
}

impl Job {
    /// When the job finished: completion, else cancellation.
    pub fn finished_at(&self) -> Option<Timestamp> {
        self.completed_at.or(self.canceled_at)
    }
}

/// A build with its job.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BuildWithJob {
    pub build: Build,
    pub job: Job,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ProvisionerDaemon {
    pub id: ProvisionerId,
    pub name: String,
    pub last_seen_at: Timestamp,
}

/// The dedupe key of a notification (per recipient): the event it reports.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DedupeKey(pub String);

impl DedupeKey {
    pub fn autostop_reminder(workspace: WorkspaceId, stop_at: Timestamp) -> Self {
        DedupeKey(format!("autostop_reminder:{workspace}:{}", stop_at.as_micros()))
    }
    pub fn workspace_dormant(workspace: WorkspaceId, dormant_at: Timestamp) -> Self {
        DedupeKey(format!("workspace_dormant:{workspace}:{}", dormant_at.as_micros()))
    }
    pub fn workspace_marked_for_deletion(workspace: WorkspaceId, deleting_at: Timestamp) -> Self {
        DedupeKey(format!("workspace_marked_for_deletion:{workspace}:{}", deleting_at.as_micros()))
    }
    pub fn workspace_deleted(workspace: WorkspaceId) -> Self {
        DedupeKey(format!("workspace_deleted:{workspace}"))
    }
    pub fn autobuild_failed(build: BuildId) -> Self {
        DedupeKey(format!("autobuild_failed:{build}"))
    }
    pub fn workspace_auto_updated(build: BuildId) -> Self {
        DedupeKey(format!("workspace_auto_updated:{build}"))
    }
    pub fn prebuild_failure_limit(preset: PresetId, entry: u32) -> Self {
        DedupeKey(format!("prebuild_failure_limit:{preset}:{entry}"))
    }
    pub fn prebuild_resource_replaced(claim_build: BuildId) -> Self {
        DedupeKey(format!("prebuild_resource_replaced:{claim_build}"))
    }
    pub fn chat_archive_digest(owner: UserId, pass_at: Timestamp) -> Self {
        DedupeKey(format!("chat_archive_digest:{owner}:{}", pass_at.as_micros()))
    }
}

/// What a notification says. Instants are absolute; wording is the sink's job.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NotificationPayload {
    AutostopReminder {
        workspace: String,
        stop_at: Timestamp,
    },
    WorkspaceDormant {
        workspace: String,
        reason: String,
        deleting_at: Option<Timestamp>,
    },
    WorkspaceMarkedForDeletion {
        workspace: String,
        deleting_at: Timestamp,
    },
    WorkspaceDeleted {
        workspace: String,
        reason: String,
    },
    AutobuildFailed {
        workspace: String,
        build_number: i32,
        reason: BuildReason,
    },
    WorkspaceAutoUpdated {
        workspace: String,
        old_version: String,
        new_version: String,
        message: String,
        reason: BuildReason,
    },
    PrebuildFailureLimit {
        template: String,
        preset: String,
    },
    PrebuildResourceReplaced {
        workspace: String,
        preset: String,
    },
    ChatArchiveDigest {
        chats: Vec<String>,
    },
}

/// A notification to write to the outbox.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NewNotification {
    pub kind: NotificationKind,
    pub user_id: UserId,
    pub dedupe_key: DedupeKey,
    pub workspace_id: Option<WorkspaceId>,
    pub payload: NotificationPayload,
}

/// An outbox row.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Notification {
    pub id: NotificationId,
    pub kind: NotificationKind,
    pub user_id: UserId,
    pub dedupe_key: DedupeKey,
    pub workspace_id: Option<WorkspaceId>,
    pub payload: NotificationPayload,
    pub created_at: Timestamp,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Chat {
    pub id: ChatId,
    pub owner_id: UserId,
    pub name: String,
    pub workspace_id: Option<WorkspaceId>,
    pub status: ChatStatus,
    pub created_at: Timestamp,
    pub last_activity_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for reason in BuildReason::ALL {
            assert_eq!(reason.as_str().parse::<BuildReason>().unwrap(), *reason);
        }
        let err = "autostrat".parse::<BuildReason>().unwrap_err();
        assert!(err.to_string().contains("expected one of: initiator, autostart"), "{err}");
    }

    #[test]
    fn weekday_set_bits() {
        let set: WeekdaySet = [Weekday::Mon, Weekday::Sun].into_iter().collect();
        assert!(set.contains(Weekday::Mon) && set.contains(Weekday::Sun));
        assert!(!set.contains(Weekday::Tue));
        assert_eq!(WeekdaySet::from_bits(set.bits()), set);
        assert_eq!(Weekday::from_chrono(chrono::Weekday::Sun), Weekday::Sun);
    }
}
