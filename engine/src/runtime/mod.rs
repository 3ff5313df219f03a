//! The runtime edge: the engine's only view of time ([`Clock`]), its only way to
//! start tasks ([`Spawner`]), and the shutdown signal ([`Shutdown`]).
//!
//! Everything that would otherwise read the wall clock, sleep or spawn goes
//! through here, so the simulator can own all three. The tokio used here is
//! `madsim-tokio`: plain tokio in normal builds, madsim's simulated runtime under
//! `--cfg madsim`. Rules and drivers never name either.

mod clock;
mod fixed_rate;
mod shutdown;
mod spawner;

pub use clock::{Clock, MonotonicClock, SharedClock, SystemClock};
pub use fixed_rate::FixedRate;
pub use shutdown::{Shutdown, ShutdownSignal};
pub use spawner::{SharedSpawner, Spawner, TaskHandle, TokioSpawner};
