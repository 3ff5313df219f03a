//! The two-stage shutdown signal every loop of the engine watches: *stop*
//! (dispatch nothing new, let in-flight work finish) and *cancel* (the
//! shutdown budget is spent: drop in-flight work, whose transactions roll back).

use std::sync::Arc;

use tokio::sync::watch;

/// The sending half, held by the engine (or the host).
#[derive(Debug, Clone)]
pub struct Shutdown {
    stop: Arc<watch::Sender<bool>>,
    cancel: Arc<watch::Sender<bool>>,
}

/// The receiving half, cloned into every loop. It keeps the senders alive, so a
/// dropped [`Shutdown`] never reads as a signal.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    stop: watch::Receiver<bool>,
    cancel: watch::Receiver<bool>,
    _owner: Shutdown,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (stop, _) = watch::channel(false);
        let (cancel, _) = watch::channel(false);
        Shutdown { stop: Arc::new(stop), cancel: Arc::new(cancel) }
    }

    /// Stage one: stop starting new work.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Stage two: cancel work still in flight (implies stop).
    pub fn cancel(&self) {
        self.stop.send_replace(true);
        self.cancel.send_replace(true);
    }

    pub fn subscribe(&self) -> ShutdownSignal {
        ShutdownSignal { stop: self.stop.subscribe(), cancel: self.cancel.subscribe(), _owner: self.clone() }
    }

    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

impl ShutdownSignal {
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Completes once stop is signalled (at once if it already was).
    pub async fn stopped(&mut self) {
        // The receiver owns a sender, so `wait_for` cannot fail.
        let _ = self.stop.wait_for(|stopping| *stopping).await;
    }

    /// Completes once cancel is signalled.
    pub async fn cancelled(&mut self) {
        let _ = self.cancel.wait_for(|cancelled| *cancelled).await;
    }

    /// A signal that never fires, for one-off calls outside the engine's loops.
    pub fn never() -> ShutdownSignal {
        Shutdown::new().subscribe()
    }
}
