//! `engined provision`: a simple provisioner for trying the daemon out. It
//! talks to a daemon only through the HTTP API, as a real provisioner daemon
//! would: it reports itself alive every `heartbeat_interval`, asks for a job
//! with a long poll (`acquire?wait=`: the daemon answers as soon as a "job
//! available" notice brings one, or after `wait` with none), "builds" for
//! `build_duration` (it runs nothing), and completes the job as succeeded;
//! with `agent_ready` it also reports the workspace's agent ready after a
//! start. A long poll never runs past the next heartbeat, and asks are at
//! least `poll_interval` apart unless one took that long (with `wait` 0 it
//! is plain polling every `poll_interval`).
//!
//! On its stop signal it abandons a long poll that has not answered and
//! finishes the job in hand (at most one build duration), then returns: a
//! job left running would never finish.

use std::future::Future;

use serde::Deserialize;

use crate::ids::{IdGen, JobId, ProvisionerId, WorkspaceId};
use crate::limits;
use crate::runtime::SharedClock;
use crate::time::Span;

/// Limit of one request to the daemon.
const REQUEST_TIMEOUT: Span = Span::from_secs(10);
/// Attempts to report one job's completion (a job left running never ends).
const COMPLETE_ATTEMPTS_MAX: u32 = 5;

/// How the provisioner runs.
#[derive(Clone, Debug)]
pub struct ProvisionerOptions {
    /// The daemon's base URL (`http://127.0.0.1:8080`).
    pub api: String,
    /// Its name; the provisioner id is derived from it, so a restart keeps it.
    pub name: String,
    pub build_duration: Span,
    pub poll_interval: Span,
    /// How long one acquire may wait for a job (0: no long poll); at most
    /// [`limits::ACQUIRE_WAIT_MAX`].
    pub wait: Span,
    pub heartbeat_interval: Span,
    pub agent_ready: bool,
}

impl ProvisionerOptions {
    /// The provisioner id of a name.
    pub fn id(&self) -> ProvisionerId {
        IdGen::for_purpose(0, &format!("provisioner:{}", self.name)).next_id()
    }
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProvisionerStats {
    pub jobs_completed: u64,
    pub request_errors: u64,
}

/// A request to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionerError {
    #[error("building the http client: {0}")]
    Client(String),
}

#[derive(Deserialize)]
struct Acquired {
    job: Option<AcquiredJob>,
}

#[derive(Deserialize)]
struct AcquiredJob {
    id: JobId,
    workspace_id: WorkspaceId,
    transition: Option<String>,
}

struct Client {
    http: reqwest::Client,
    base: String,
    id: ProvisionerId,
    name: String,
}

impl Client {
    async fn post(&self, path: &str, body: serde_json::Value) -> Result<reqwest::Response, String> {
        let url = format!("{}{path}", self.base);
        let response = self.http.post(&url).json(&body).send().await.map_err(|e| format!("POST {url}: {e}"))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            Err(format!("POST {url}: {status}: {text}"))
        }
    }

    async fn heartbeat(&self) -> Result<(), String> {
        self.post(&format!("/api/v1/provisioners/{}/heartbeat", self.id), serde_json::json!({ "name": self.name }))
            .await
            .map(|_| ())
    }

    /// One acquire, waiting up to `wait` on the daemon for a job.
    async fn acquire(&self, wait: Span) -> Result<Option<AcquiredJob>, String> {
        let mut url = format!("{}/api/v1/provisioners/{}/acquire", self.base, self.id);
        if !wait.is_zero() {
            url.push_str(&format!("?wait={}ms", wait.as_millis()));
        }
        let response = self
            .http
            .post(&url)
            .timeout((REQUEST_TIMEOUT + wait).to_std())
            .json(&serde_json::json!({}))
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(format!("POST {url}: {status}: {text}"));
        }
        let acquired: Acquired = response.json().await.map_err(|e| format!("acquire: {e}"))?;
        Ok(acquired.job)
    }

    async fn complete(&self, job: JobId) -> Result<(), String> {
        self.post(&format!("/api/v1/jobs/{job}/complete"), serde_json::json!({ "status": "succeeded" }))
            .await
            .map(|_| ())
    }

    async fn agent_ready(&self, workspace: WorkspaceId) -> Result<(), String> {
        self.post(&format!("/api/v1/workspaces/{workspace}/agent/ready"), serde_json::json!({})).await.map(|_| ())
    }
}

/// Runs until `stop` completes. Request errors are logged and retried at
/// the next poll; they never end the run.
pub async fn run_provisioner(
    options: ProvisionerOptions,
    clock: SharedClock,
    stop: impl Future<Output = ()>,
) -> Result<ProvisionerStats, ProvisionerError> {
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT.to_std())
        .build()
        .map_err(|e| ProvisionerError::Client(e.to_string()))?;
    let client = Client {
        http,
        base: options.api.trim_end_matches('/').to_owned(),
        id: options.id(),
        name: options.name.clone(),
    };
    tracing::info!(id = %client.id, name = %client.name, api = %client.base, "provisioner started");
    let mut stop = std::pin::pin!(stop);
    let mut stats = ProvisionerStats::default();
    let mut heartbeat_at = clock.now();
    let mut poll_at = clock.now();
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = clock.sleep_until(poll_at.min(heartbeat_at)) => {}
        }
        let now = clock.now();
        if now >= heartbeat_at {
            if let Err(error) = client.heartbeat().await {
                stats.request_errors += 1;
                tracing::warn!(%error, "heartbeat failed");
            }
            heartbeat_at = now + options.heartbeat_interval;
        }
        if now < poll_at {
            continue;
        }
        // Back before the next heartbeat is due.
        let wait = options.wait.min(heartbeat_at.since(now)).min(limits::ACQUIRE_WAIT_MAX).max(Span::ZERO);
        let acquired = tokio::select! {
            biased;
            // Nothing was handed over yet (a job claimed at this very instant
            // would be left running, as with any request cut short).
            _ = &mut stop => break,
            acquired = client.acquire(wait) => acquired,
        };
        match acquired {
            Ok(Some(job)) => {
                tracing::info!(job = %job.id, workspace = %job.workspace_id, transition = ?job.transition, "building");
                clock.sleep_until(clock.now() + options.build_duration).await;
                let mut completed = client.complete(job.id).await;
                for _ in 1..COMPLETE_ATTEMPTS_MAX {
                    let Err(error) = &completed else { break };
                    stats.request_errors += 1;
                    tracing::warn!(%error, job = %job.id, "completing the job failed; retrying");
                    clock.sleep_until(clock.now() + options.poll_interval).await;
                    completed = client.complete(job.id).await;
                }
                match completed {
                    Ok(()) => {
                        stats.jobs_completed += 1;
                        tracing::info!(job = %job.id, "job completed");
                        if options.agent_ready && job.transition.as_deref() == Some("start") {
                            if let Err(error) = client.agent_ready(job.workspace_id).await {
                                stats.request_errors += 1;
                                tracing::warn!(%error, "agent ready failed");
                            }
                        }
                    }
                    Err(error) => {
                        stats.request_errors += 1;
                        tracing::warn!(%error, job = %job.id, "completing the job failed");
                    }
                }
                // Look for the next job at once.
                poll_at = clock.now();
            }
            // A long poll that took `poll_interval` or more asks again at once.
            Ok(None) => poll_at = now + options.poll_interval,
            Err(error) => {
                stats.request_errors += 1;
                tracing::warn!(%error, "acquire failed");
                poll_at = now + options.poll_interval;
            }
        }
    }
    tracing::info!(jobs_completed = stats.jobs_completed, "provisioner stopped");
    Ok(stats)
}
