//! The tables of the state file and the records stored in them (serialized as JSON).

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::model::{Fingerprint, FlagSet, InternalDate};

/// Bumped on any incompatible change; a file with a higher version is refused.
pub const SCHEMA_VERSION: u32 = 1;

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const FOLDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("folders");
/// Key: (folder path, source UID).
pub const INSTANCES: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("instances");

/// Per folder: the UIDVALIDITY the mapping was made under, on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRecord {
    pub source_uidvalidity: u32,
    pub target_uidvalidity: Option<u32>,
}

/// One synced message instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub fingerprint: Fingerprint,
    /// Rank among instances with the same fingerprint in this folder, by source UID.
    pub ordinal: u32,
    /// The target's UID, when known (APPENDUID, or adopted by identity).
    pub target_uid: Option<u32>,
    /// The flags last made equal on both sides.
    pub flags: FlagSet,
    pub internaldate: InternalDate,
    pub size: u32,
}
