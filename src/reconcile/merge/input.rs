//! What the three-way merge reads: the base frozen at failover, each side now, held items, policy.

use std::fmt;

use crate::model::{Fingerprint, FlagSet, FolderPath, Side};

/// A base folder's key: the state's folder key (its path at the base, in display form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderKey(pub String);

/// A base instance's key: the state's instance key (base folder, source UID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub folder: FolderKey,
    pub source_uid: u32,
}

/// A message's id on one side, unique on that side: `<folder>:<uid>` over IMAP, the Email id
/// over JMAP. The merge never parses it; it only hands it back in actions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub String);

/// A message's content identity: the fingerprint in hex on exact sides, else the tolerant key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(pub String);

impl Identity {
    pub fn of_fingerprint(fingerprint: &Fingerprint) -> Identity {
        Identity(fingerprint.to_hex())
    }
}

impl fmt::Display for FolderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.folder, self.source_uid)
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Long identities (a SHA-256 in hex) are shortened to 16 characters, like [`Fingerprint`].
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.get(..16) {
            Some(short) if self.0.len() > 16 => f.write_str(short),
            _ => f.write_str(&self.0),
        }
    }
}

/// A folder both sides agreed on at failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseFolder {
    pub key: FolderKey,
    pub path: FolderPath,
    pub special_use: Option<String>,
}

/// A message instance both sides agreed on at failover; its folder is `key.folder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseMessage {
    pub key: InstanceKey,
    pub identity: Identity,
    pub flags: FlagSet,
}

/// The last state both sides agreed on, frozen by `failover`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Base {
    pub folders: Vec<BaseFolder>,
    pub messages: Vec<BaseMessage>,
}

/// A folder as one side lists it now; `base` names the base folder it descends from (same
/// folder id, whatever its path now), `None` for a folder created since the failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideFolder {
    pub path: FolderPath,
    pub special_use: Option<String>,
    pub base: Option<FolderKey>,
}

/// A message as one side lists it now; `base` names the base instance it descends from
/// (recorded UID or email id, followed through moves), `None` for a message new since the
/// failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideMessage {
    pub handle: Handle,
    pub folder: FolderPath,
    pub identity: Identity,
    pub flags: FlagSet,
    pub base: Option<InstanceKey>,
}

/// One side now: every folder (paths unique) and every message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideState {
    pub folders: Vec<SideFolder>,
    pub messages: Vec<SideMessage>,
}

/// Why an item is held out of the merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldKind {
    /// A removal the removal budget held: it stays until the user releases it.
    Removal,
    /// A message validation quarantined: never replicated, so never merged.
    Quarantined,
}

/// A held removal or a quarantined message: the merge leaves it as it is on both sides and
/// lists it in the plan's held section, never deciding it silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldItem {
    pub kind: HeldKind,
    pub folder: FolderPath,
    pub identity: Option<Identity>,
    pub reason: String,
    /// The base instance it concerns, if any: its descendants on both sides are left alone.
    pub base: Option<InstanceKey>,
    /// Side messages it concerns (a quarantined message on the primary): left alone.
    pub handles: Vec<(Side, Handle)>,
}

/// The choices the merge leaves to configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergePolicy {
    /// Whether adding only `\Seen` counts as a change that beats a removal (DESIGN: false).
    pub read_beats_delete: bool,
}

/// Everything the merge reads. The primary is [`Side::Source`], the recovery [`Side::Target`].
#[derive(Debug, Clone, Copy)]
pub struct MergeInput<'a> {
    pub base: &'a Base,
    pub primary: &'a SideState,
    pub recovery: &'a SideState,
    pub held: &'a [HeldItem],
    pub policy: MergePolicy,
}

impl<'a> MergeInput<'a> {
    pub fn side(&self, side: Side) -> &'a SideState {
        match side {
            Side::Source => self.primary,
            Side::Target => self.recovery,
        }
    }
}

/// Index of a side in `[_; 2]` arrays: primary 0, recovery 1.
pub(crate) fn ix(side: Side) -> usize {
    match side {
        Side::Source => 0,
        Side::Target => 1,
    }
}

/// Both sides, primary first.
pub(crate) const SIDES: [Side; 2] = [Side::Source, Side::Target];

/// The word a failback plan uses for a side.
pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Source => "primary",
        Side::Target => "recovery",
    }
}
