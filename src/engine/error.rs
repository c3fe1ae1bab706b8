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
    /// The pair is frozen: the source went back in time (restored from a backup?). Nothing was
    /// changed on the target.
    #[error("{0}")]
    Frozen(Frozen),
    /// The pair is failed over (see [`super::failover`]): one-way passes refuse until failback.
    #[error("{0}")]
    FailedOver(super::failover::FailedOver),
}

/// Why a pair is frozen, as stored in the state and shown by `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frozen {
    pub folder: String,
    pub detail: String,
    /// Unix seconds.
    pub since: u64,
}

impl Frozen {
    /// Reads the reason as the state stores it; an unreadable one still reads as frozen.
    pub fn from_raw(raw: &[u8]) -> Frozen {
        serde_json::from_slice(raw).unwrap_or_else(|_| Frozen {
            folder: "?".into(),
            detail: "the reason stored in the state is unreadable".into(),
            since: 0,
        })
    }
}

impl std::fmt::Display for Frozen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the pair is frozen: the primary went back in time in folder {} ({}); nothing is removed or changed on the target until you confirm. Check the primary (restored from a backup?), then run sync with --accept-regression: its messages are matched again by identity and new mail is replicated; nothing is deleted on the target",
            self.folder, self.detail
        )
    }
}

impl EngineError {
    /// True when a new pass after a pause may succeed: the connection dropped or timed out, the
    /// server was unavailable or throttling. A pass is incremental, so retrying resumes.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Store(e) => e.is_retryable() || matches!(e, StoreError::Protocol { .. }),
            EngineError::State(_) | EngineError::Frozen(_) | EngineError::FailedOver(_) => false,
        }
    }
}
