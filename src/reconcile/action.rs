//! Actions in their printable form: what `--dry-run` shows and logs record.

use std::fmt;

use super::plan::{FolderPlan, PlacementReason};
use crate::model::{FlagSet, FolderPath};

/// One object-level action on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CreateFolder {
        folder: FolderPath,
    },
    Place {
        folder: FolderPath,
        source_uid: u32,
        size: u32,
        flags: FlagSet,
        restore: bool,
    },
    SetFlags {
        folder: FolderPath,
        target_uid: u32,
        add: FlagSet,
        remove: FlagSet,
    },
    Remove {
        folder: FolderPath,
        source_uid: u32,
        target_uid: u32,
    },
    HoldRemovals {
        folder: FolderPath,
        count: usize,
        reason: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateFolder { folder } => write!(f, "create folder {folder}"),
            Action::Place { folder, source_uid, size, flags, restore } => write!(
                f,
                "{} {folder}: source uid {source_uid} ({size} bytes, flags {flags})",
                if *restore { "restore" } else { "copy" }
            ),
            Action::SetFlags { folder, target_uid, add, remove } => {
                write!(f, "set flags {folder}: target uid {target_uid}")?;
                if !add.is_empty() {
                    write!(f, " +{add}")?;
                }
                if !remove.is_empty() {
                    write!(f, " -{remove}")?;
                }
                Ok(())
            }
            Action::Remove { folder, source_uid, target_uid } => {
                write!(f, "remove {folder}: target uid {target_uid} (source uid {source_uid} was expunged)")
            }
            Action::HoldRemovals { folder, count, reason } => write!(
                f,
                "hold {count} removal(s) in {folder}: {reason}; check the source, then run with --allow-deletions or `mailreplica release` to apply them"
            ),
        }
    }
}

impl FolderPlan {
    /// The plan as printable actions, in the order the engine applies them. Removals are
    /// listed by the removal budget, which decides them for the whole pass.
    pub fn actions(&self, folder: &FolderPath) -> Vec<Action> {
        let mut out = Vec::new();
        for u in &self.flag_updates {
            if !u.add.is_empty() || !u.remove.is_empty() {
                out.push(Action::SetFlags {
                    folder: folder.clone(),
                    target_uid: u.target_uid,
                    add: u.add.clone(),
                    remove: u.remove.clone(),
                });
            }
        }
        for p in &self.placements {
            out.push(Action::Place {
                folder: folder.clone(),
                source_uid: p.source.uid,
                size: p.source.size,
                flags: p.source.flags.clone(),
                restore: p.reason == PlacementReason::Restore,
            });
        }
        out
    }
}
