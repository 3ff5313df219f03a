//! The graceful-shutdown signal every loop of the engine watches.

use tokio::sync::watch;

/// The sending half: the host (or the simulator) calls [`Shutdown::signal`].
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

/// The receiving half, cloned into every loop.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(false);
        Shutdown { tx: std::sync::Arc::new(tx) }
    }

    pub fn signal(&self) {
        self.tx.send_replace(true);
    }

    pub fn subscribe(&self) -> ShutdownSignal {
        ShutdownSignal { rx: self.tx.subscribe() }
    }

    pub fn is_signalled(&self) -> bool {
        *self.tx.borrow()
    }
}

impl ShutdownSignal {
    pub fn is_signalled(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once shutdown is signalled (at once if it already was).
    pub async fn wait(&mut self) {
        // An error means every sender is gone, which can only happen when the
        // engine is being torn down: treat it as a signal too.
        let _ = self.rx.wait_for(|signalled| *signalled).await;
    }

    /// A signal that never fires (for one-off calls outside the engine's loops).
    pub fn never() -> ShutdownSignal {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive for the life of the process so `wait` never returns.
        std::mem::forget(tx);
        ShutdownSignal { rx }
    }
}
