//! A fleet for benchmarks: `size` workspaces, half past their deadline (each
//! tick stops them), half inside their reminder window (each tick reminds).

use std::sync::Arc;

use engine::events::NoEvents;
use engine::ids::{IdGen, ProvisionerId, SharedIds};
use engine::lifecycle::LifecycleExecutor;
use engine::model::*;
use engine::pubsub::NoPubSub;
use engine::runtime::MonotonicClock;
use engine::settings::Settings;
use engine::store::sqlite::{PoolConfig, SqliteServer, SqliteStore};
use engine::store::{Store, Subsystem, Tx, TxOptions};
use engine::time::{Span, Timestamp};

pub struct Fleet {
    pub executor: LifecycleExecutor<SqliteStore>,
    pub tick_at: Timestamp,
    pub server: Arc<SqliteServer>,
}

pub async fn seed_fleet(size: u32) -> Fleet {
    let start = Timestamp::parse_rfc3339("2026-01-05T16:30:00Z").expect("instant");
    let clock = Arc::new(MonotonicClock::new(start));
    let server = SqliteServer::open_in_memory(clock).expect("database");
    let store =
        Arc::new(server.client(PoolConfig { size: 10, acquire_timeout: Span::from_secs(5), label: "bench".into() }));
    let ids = SharedIds::new(IdGen::from_seed(3));
    let mut tx = store.begin(TxOptions::new(Subsystem::Admin)).await.expect("begin");
    let owner = User::new(ids.next(), "alice", start);
    tx.insert_user(&owner).await.expect("user");
    let template_id = ids.next();
    let version =
        TemplateVersion { id: ids.next(), template_id, name: "v1".into(), parameters: Vec::new(), created_at: start };
    let template = Template {
        default_ttl: Span::from_hours(8),
        autostop_notify: Span::from_mins(30),
        ..Template::new(template_id, "dev", version.id, start)
    };
    tx.insert_template(&template).await.expect("template");
    tx.insert_version(&version).await.expect("version");
    tx.upsert_provisioner(&ProvisionerDaemon {
        id: ProvisionerId::from_bytes([1; 16]),
        name: "p".into(),
        last_seen_at: start,
    })
    .await
    .expect("provisioner");
    let morning = start - Span::from_hours(7);
    for i in 0..size {
        let workspace = Workspace {
            id: ids.next(),
            owner_id: owner.id,
            template_id,
            name: format!("w{i}"),
            ttl: Some(Span::from_hours(8)),
            autostart: None,
            automatic_updates: AutomaticUpdates::Never,
            last_used_at: morning,
            dormant_at: None,
            deleting_at: None,
            next_start_at: None,
            deleted: false,
            created_at: morning,
        };
        tx.insert_workspace(&workspace).await.expect("workspace");
        let deadline = if i % 2 == 0 { start - Span::from_mins(1) } else { start + Span::from_mins(20) };
        let build = Build {
            id: ids.next(),
            workspace_id: workspace.id,
            number: 1,
            transition: Transition::Start,
            reason: BuildReason::Initiator,
            initiator_id: owner.id,
            version_id: version.id,
            job_id: ids.next(),
            preset_id: None,
            parameters: Parameters::new(),
            created_at: morning,
            deadline: Some(deadline),
            max_deadline: None,
            notified_autostop_deadline: None,
            agent_ready_at: None,
        };
        let job = Job {
            id: build.job_id,
            build_id: build.id,
            workspace_id: workspace.id,
            template_id,
            version_id: version.id,
            status: JobStatus::Succeeded,
            is_prebuild: false,
            created_at: morning,
            started_at: Some(morning),
            completed_at: Some(morning),
            canceled_at: None,
            worker_id: None,
            error: None,
        };
        tx.insert_build(&build, &job).await.expect("build");
    }
    tx.commit().await.expect("commit");
    let executor = LifecycleExecutor::new(
        store,
        Settings::default(),
        SharedIds::new(IdGen::from_seed(4)),
        Arc::new(NoEvents),
        Arc::new(NoPubSub),
    );
    Fleet { executor, tick_at: start, server }
}
