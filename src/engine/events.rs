//! Progress events the engine emits; the CLI renders them as bars, lines or nothing.

use crate::model::FolderPath;

#[derive(Debug, Clone)]
pub enum Event {
    /// A folder's pass begins; `messages`/`bytes` are what it will place on the target.
    FolderStarted {
        folder: FolderPath,
        messages: u64,
        bytes: u64,
    },
    /// Messages placed (copied or adopted) on the target, with their bytes.
    Placed {
        folder: FolderPath,
        messages: u64,
        bytes: u64,
    },
    FolderFinished {
        folder: FolderPath,
    },
    /// Something the user should know that does not stop the pass.
    Notice(String),
}

pub trait EventSink {
    fn event(&self, event: Event);
}

/// Discards events (tests, `--json` without progress).
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _event: Event) {}
}
