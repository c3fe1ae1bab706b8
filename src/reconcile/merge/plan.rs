//! What the three-way merge returns: actions per side, conflicts, held items, the merged state.

use std::fmt;

use super::input::{side_name, FolderKey, Handle, HeldItem, HeldKind, Identity, InstanceKey};
use crate::model::{FlagSet, FolderPath, Side};

/// Where a placed message's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceSource {
    /// COPY of an instance the side itself holds (no bytes cross the wire).
    Copy { folder: FolderPath, handle: Handle },
    /// APPEND of the bytes fetched from the other side's instance.
    Upload {
        from: Side,
        folder: FolderPath,
        handle: Handle,
    },
}

/// One object-level action on one side, in the order the engine applies them: folders
/// created and renamed, messages placed, moved, flagged, removed, then folders deleted.
/// Paths of message actions are the paths after the folder actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeAction {
    CreateFolder {
        path: FolderPath,
        special_use: Option<String>,
    },
    RenameFolder {
        from: FolderPath,
        to: FolderPath,
    },
    Place {
        folder: FolderPath,
        identity: Identity,
        flags: FlagSet,
        source: PlaceSource,
    },
    Move {
        handle: Handle,
        from: FolderPath,
        to: FolderPath,
    },
    SetFlags {
        folder: FolderPath,
        handle: Handle,
        add: FlagSet,
        remove: FlagSet,
    },
    Remove {
        folder: FolderPath,
        handle: Handle,
        identity: Identity,
    },
    DeleteFolder {
        path: FolderPath,
    },
}

impl MergeAction {
    /// The folder the action is listed under in `--dry-run` (a move under its destination).
    pub fn folder(&self) -> &FolderPath {
        match self {
            MergeAction::CreateFolder { path, .. } | MergeAction::DeleteFolder { path } => path,
            MergeAction::RenameFolder { to, .. } | MergeAction::Move { to, .. } => to,
            MergeAction::Place { folder, .. }
            | MergeAction::SetFlags { folder, .. }
            | MergeAction::Remove { folder, .. } => folder,
        }
    }
}

impl fmt::Display for MergeAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeAction::CreateFolder { path, special_use } => {
                write!(f, "create folder {path}")?;
                match special_use {
                    Some(use_) => write!(f, " ({use_})"),
                    None => Ok(()),
                }
            }
            MergeAction::RenameFolder { from, to } => write!(f, "rename folder {from} -> {to}"),
            MergeAction::Place {
                folder,
                identity,
                flags,
                source,
            } => {
                write!(f, "place {identity} {flags} in {folder}: ")?;
                match source {
                    PlaceSource::Copy { folder, handle } => {
                        write!(f, "copy of {handle} in {folder}")
                    }
                    PlaceSource::Upload {
                        from,
                        folder,
                        handle,
                    } => write!(
                        f,
                        "upload of {handle} in {folder} on the {}",
                        side_name(*from)
                    ),
                }
            }
            MergeAction::Move { handle, from, to } => {
                write!(f, "move {handle} from {from} to {to}")
            }
            MergeAction::SetFlags {
                folder,
                handle,
                add,
                remove,
            } => {
                write!(f, "set flags of {handle} in {folder}:")?;
                if !add.is_empty() {
                    write!(f, " +{add}")?;
                }
                if !remove.is_empty() {
                    write!(f, " -{remove}")?;
                }
                Ok(())
            }
            MergeAction::Remove {
                folder,
                handle,
                identity,
            } => write!(f, "remove {handle} ({identity}) from {folder}"),
            MergeAction::DeleteFolder { path } => write!(f, "delete folder {path}"),
        }
    }
}

/// What a conflict is about, so a caller (and the no-lost-intent law) can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictSubject {
    Folder(FolderKey),
    Instance(InstanceKey),
    Path(FolderPath),
}

/// How a message was removed on a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedBy {
    Expunged,
    FlaggedDeleted,
}

/// The kinds of conflict the merge resolves and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictKind {
    /// Renamed differently on both sides: both names kept, each with a copy of the messages.
    RenamedDifferently {
        primary: FolderPath,
        recovery: FolderPath,
    },
    /// Deleted on one side, but a message the other side changed or added (or a child folder,
    /// or a held message) still needs it: kept and recreated.
    DeletedButKept {
        deleted_on: Side,
        messages: usize,
        children: usize,
        held: usize,
    },
    /// Renamed on one side and deleted on the other with nothing in it changed: deleted.
    RenamedButDeleted { renamed_on: Side, to: FolderPath },
    /// Several different folders end up with one path: merged into one.
    NamesCollide { folders: usize },
    /// Removed on one side and changed on the other: kept and restored on both.
    RemovedButChanged {
        identity: Identity,
        removed_on: Side,
        how: RemovedBy,
    },
    /// Moved to different folders on both sides: kept in both.
    MovedApart {
        identity: Identity,
        primary: FolderPath,
        recovery: FolderPath,
    },
}

/// A conflict the merge resolved by a rule that keeps mail, with the folder it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The folder as it was at the base (or the path, for folders without a base).
    pub folder: FolderPath,
    pub subject: ConflictSubject,
    pub kind: ConflictKind,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let folder = &self.folder;
        match &self.kind {
            ConflictKind::RenamedDifferently { primary, recovery } => write!(
                f,
                "folder {folder} was renamed to {primary} on the primary and to {recovery} on the recovery side: both names are kept, each with a copy of its messages"
            ),
            ConflictKind::DeletedButKept {
                deleted_on,
                messages,
                children,
                held,
            } => write!(
                f,
                "folder {folder} was deleted on the {} side, but {messages} message(s) changed or added on the other side, {children} subfolder(s) and {held} held message(s) still need it: it is kept and recreated",
                side_name(*deleted_on)
            ),
            ConflictKind::RenamedButDeleted { renamed_on, to } => write!(
                f,
                "folder {folder} was renamed to {to} on the {} side and deleted on the other, with nothing in it changed: it is deleted",
                side_name(*renamed_on)
            ),
            ConflictKind::NamesCollide { folders } => write!(
                f,
                "{folders} different folders end up named {folder}: they are merged into one"
            ),
            ConflictKind::RemovedButChanged {
                identity,
                removed_on,
                how,
            } => write!(
                f,
                "message {identity} in {folder} was {} on the {} side but changed on the {} side: it is kept and restored on both",
                match how {
                    RemovedBy::Expunged => "removed",
                    RemovedBy::FlaggedDeleted => "flagged \\Deleted",
                },
                side_name(*removed_on),
                side_name(removed_on.other())
            ),
            ConflictKind::MovedApart {
                identity,
                primary,
                recovery,
            } => write!(
                f,
                "message {identity} was moved from {folder} to {primary} on the primary and to {recovery} on the recovery side: it is kept in both, flags merged"
            ),
        }
    }
}

impl fmt::Display for HeldItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            HeldKind::Removal => "held removal",
            HeldKind::Quarantined => "quarantined message",
        };
        write!(f, "{what} in {}", self.folder)?;
        if let Some(identity) = &self.identity {
            write!(f, " ({identity})")?;
        }
        write!(
            f,
            ": {}; left as it is on both sides, for the user to decide",
            self.reason
        )
    }
}

/// A folder of the merged tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedFolder {
    pub path: FolderPath,
    pub special_use: Option<String>,
    /// The base folders it continues (none for a folder created since the failover).
    pub origin: Vec<FolderKey>,
    /// Per side (primary first), the side's folders, by their path now, that become this one.
    pub members: [Vec<FolderPath>; 2],
}

/// A message instance of the merged state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedMessage {
    pub folder: FolderPath,
    pub identity: Identity,
    pub flags: FlagSet,
    pub base: Option<InstanceKey>,
    /// Per side (primary first), the side's message that already is this instance.
    pub from: [Option<Handle>; 2],
}

/// The state both sides hold once the plan is applied (held items aside): what the engine
/// records as the fresh base after failback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedState {
    pub folders: Vec<MergedFolder>,
    pub messages: Vec<MergedMessage>,
}

/// The failback plan: actions per side, conflicts, held items, and the state it leads to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergePlan {
    /// Per side (primary first), in the order the engine applies them.
    pub actions: [Vec<MergeAction>; 2],
    pub conflicts: Vec<Conflict>,
    pub held: Vec<HeldItem>,
    pub merged: MergedState,
}

impl MergePlan {
    pub fn actions(&self, side: Side) -> &[MergeAction] {
        &self.actions[super::input::ix(side)]
    }

    /// True when neither side has anything to do.
    pub fn is_empty(&self) -> bool {
        self.actions.iter().all(Vec::is_empty)
    }
}
