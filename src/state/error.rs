//! Errors of the state file, each saying which file and what to do.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("state file {path}: {detail}. Check the path and permissions.")]
    Io { path: PathBuf, detail: String },

    #[error("state file {path} is damaged or not a mailreplica state file ({detail}). Move it aside and run again: the state is rebuilt by matching messages by identity (slower, nothing is duplicated).")]
    Corrupt { path: PathBuf, detail: String },

    #[error("state file {path} belongs to another pair ({found}), not to {expected}. Use --state to pick the right file, or another path for this pair.")]
    ForeignPair {
        path: PathBuf,
        found: String,
        expected: String,
    },

    #[error("state file {path} has schema version {found}; this mailreplica understands up to {supported}. Use a newer mailreplica.")]
    NewerVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("state file {path} is in use by {holder}. Wait for it to finish, or stop it.")]
    Locked { path: PathBuf, holder: String },
}
