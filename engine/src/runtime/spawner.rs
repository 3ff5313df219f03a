//! Starting tasks: through the runtime handle the host gives the engine, so the
//! simulator can count live tasks and prove none outlives shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Starts the engine's tasks.
pub trait Spawner: Send + Sync + 'static {
    fn spawn(&self, name: &'static str, task: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) -> TaskHandle;
}

pub type SharedSpawner = Arc<dyn Spawner>;

/// A started task; awaiting [`TaskHandle::join`] waits for it to end.
#[derive(Debug)]
pub struct TaskHandle {
    inner: tokio::task::JoinHandle<()>,
}

impl TaskHandle {
    pub fn from_join_handle(inner: tokio::task::JoinHandle<()>) -> Self {
        TaskHandle { inner }
    }

    /// Waits for the task; a panic or abort is reported as `false`.
    pub async fn join(self) -> bool {
        self.inner.await.is_ok()
    }

    pub fn abort(&self) {
        self.inner.abort();
    }

    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

/// Spawns onto the current tokio runtime (madsim's node under `--cfg madsim`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioSpawner;

impl Spawner for TokioSpawner {
    #[allow(clippy::disallowed_methods)] // the runtime edge
    fn spawn(&self, _name: &'static str, task: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) -> TaskHandle {
        TaskHandle::from_join_handle(tokio::spawn(task))
    }
}
