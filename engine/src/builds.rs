//! Build insertion, shared by the lifecycle executor and the API: the next build
//! number, the pending job, and `next_start_at` recomputed from the new build's
//! `created_at` (lifecycle.md §4 rule 2), all in the caller's transaction.

use crate::ids::{BuildId, JobId, PresetId, SharedIds, UserId, VersionId};
use crate::model::{Build, BuildReason, BuildWithJob, Job, JobStatus, Parameters, Template, Transition, Workspace};
use crate::mutations::{self, Mutation};
use crate::rules::lifecycle::next_start_at_after_build;
use crate::store::{StoreResult, Tx};
use crate::time::Timestamp;

/// A build to insert.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub transition: Transition,
    pub reason: BuildReason,
    pub initiator: UserId,
    pub version_id: VersionId,
    pub parameters: Parameters,
    pub preset_id: Option<PresetId>,
}

/// Inserts the build after `latest` with its pending job. The number comes from
/// the caller's snapshot, so a concurrent insert surfaces as a unique violation
/// (the "lost race"). Returns the build and the workspace's new `next_start_at`
/// (the caller writes it with whatever else it changes on the workspace).
pub async fn insert_next_build<T: Tx>(
    tx: &mut T,
    ids: &SharedIds,
    workspace: &Workspace,
    template: &Template,
    latest: Option<&BuildWithJob>,
    request: BuildRequest,
    now: Timestamp,
) -> StoreResult<(Build, Option<Timestamp>)> {
    let build_id: BuildId = ids.next();
    let job_id: JobId = ids.next();
    let mut number = latest.map_or(1, |l| l.build.number.saturating_add(1));
    if mutations::is_on(Mutation::NoWorkspaceLockNoUniqueBuild) {
        // Without a unique number two replicas' builds for one trigger both land.
        number = number.saturating_add(i32::from(build_id.as_bytes()[0]));
    }
    let build = Build {
        id: build_id,
        workspace_id: workspace.id,
        number,
        transition: request.transition,
        reason: request.reason,
        initiator_id: request.initiator,
        version_id: request.version_id,
        job_id,
        preset_id: request.preset_id,
        parameters: request.parameters,
        created_at: now,
        deadline: None,
        max_deadline: None,
        notified_autostop_deadline: None,
        agent_ready_at: None,
    };
    let job = Job {
        id: job_id,
        build_id,
        workspace_id: workspace.id,
        template_id: workspace.template_id,
        version_id: request.version_id,
        status: JobStatus::Pending,
        is_prebuild: workspace.is_prebuild(),
        created_at: now,
        started_at: None,
        completed_at: None,
        canceled_at: None,
        worker_id: None,
        error: None,
    };
    tx.insert_build(&build, &job).await?;
    let next_start_at = next_start_at_after_build(workspace, template, now);
    Ok((build, next_start_at))
}
