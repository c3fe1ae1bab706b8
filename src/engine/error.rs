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
