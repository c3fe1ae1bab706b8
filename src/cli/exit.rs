//! The one exit code table (DESIGN.md), and the mapping from errors to it.

use crate::config::ConfigError;
use crate::engine::EngineError;
use crate::mailstore::StoreError;
use crate::state::StateError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    InSync = 0,
    Differences = 1,
    Usage = 2,
    Attention = 3,
    Unavailable = 69,
    TempFail = 75,
    AuthRefused = 77,
    ConfigRefused = 78,
}

impl ExitCode {
    pub fn of_store(e: &StoreError) -> ExitCode {
        match e {
            StoreError::Connect { .. } => ExitCode::Unavailable,
            StoreError::Auth { .. } => ExitCode::AuthRefused,
            StoreError::Tls { .. }
            | StoreError::Refused { .. }
            | StoreError::ReadOnly { .. }
            | StoreError::Bad { .. } => ExitCode::ConfigRefused,
            StoreError::NoSuchFolder { .. } => ExitCode::ConfigRefused,
            StoreError::No { .. } if e.is_retryable() => ExitCode::TempFail,
            StoreError::No { .. } => ExitCode::ConfigRefused,
            StoreError::Timeout { .. }
            | StoreError::ConnectionLost { .. }
            | StoreError::Protocol { .. } => ExitCode::TempFail,
        }
    }

    pub fn of_state(e: &StateError) -> ExitCode {
        match e {
            StateError::Locked { .. } => ExitCode::TempFail,
            _ => ExitCode::Usage,
        }
    }

    pub fn of_config(_e: &ConfigError) -> ExitCode {
        ExitCode::Usage
    }

    pub fn of_engine(e: &EngineError) -> ExitCode {
        match e {
            EngineError::Store(s) => ExitCode::of_store(s),
            EngineError::State(s) => ExitCode::of_state(s),
            EngineError::Frozen(_) | EngineError::FailedOver(_) => ExitCode::Attention,
        }
    }
}
