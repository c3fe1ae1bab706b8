//! Errors of a pass: a side failed, or the state did.

use thiserror::Error;

use crate::mailstore::StoreError;
use crate::state::StateError;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    State(#[from] StateError),
}

impl EngineError {
    /// True when a new pass after a pause may succeed: the connection dropped or timed out, the
    /// server was unavailable or throttling. A pass is incremental, so retrying resumes.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Store(e) => e.is_retryable() || matches!(e, StoreError::Protocol { .. }),
            EngineError::State(_) => false,
        }
    }
}
