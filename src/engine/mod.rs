//! Drives the pipeline: snapshot both sides, plan (pure), apply to the target, commit the state.
//! Progress leaves the engine as [`events::Event`]s; it never prints.

mod all_mail;
pub mod error;
pub mod events;
pub mod failback;
pub mod failover;
mod folders;
pub mod keywords;
pub mod mapped;
pub mod paced;
pub mod pair;
pub mod probe;
pub mod readback;
pub mod recover;
mod rekey;
mod snapshot;
pub mod summary;
pub mod sync;
pub mod throttle;
pub mod verify;
pub mod watch;
pub mod workers;

pub use error::{EngineError, Frozen};
pub use events::{Event, EventSink};
pub use summary::SyncSummary;

#[cfg(test)]
mod tests;
