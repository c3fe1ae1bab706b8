//! The tables of the state file and the records stored in them (serialized as JSON).

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::model::{Fingerprint, FlagSet, FolderTokens, InternalDate};

/// Bumped on any incompatible change; a file with a higher version is refused. 2: instance
/// records in a compact binary form (`instance_codec`; version 1's JSON records are still read,
/// and a version 1 file is marked 2 when opened for writing, so an older mailreplica refuses
/// it rather than misread it).
pub const SCHEMA_VERSION: u32 = 2;

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const FOLDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("folders");
/// Key: (folder path, source UID).
pub const INSTANCES: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("instances");

/// Key: folder path. The batch of uploads under way in that folder (at most one).
pub const JOURNAL: TableDefinition<&str, &[u8]> = TableDefinition::new("journal");
/// Key: (folder path, source UID). Uploads of that message that did not complete.
pub const ATTEMPTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("attempts");

/// Key: (folder path, source UID). Removals held for the user.
pub const HELD: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("held");
/// Key: unix time in milliseconds. Removals applied then (for the rolling 24 h budget).
pub const REMOVAL_LOG: TableDefinition<u64, u64> = TableDefinition::new("removal_log");

/// Key: (folder path, source UID). Messages not uploaded because validation failed.
pub const QUARANTINE: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("quarantine");

/// Key: (folder path, source UID). Messages the target refused: reported once, tried again a
/// day later (DESIGN.md "Validation, quarantine"). A table added after version 1: absent in
/// older files, which reads as empty.
pub const REFUSED: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("refused");

/// Key: (folder path, source UID). Fidelity notes: messages the target stores otherwise than
/// sent (8-bit header bytes replaced, ...), recorded once when learned. Absent in older files.
pub const NOTES: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("notes");
/// Fingerprint (32 bytes) -> the SHA-1 of the same normalised bytes (20 bytes), for contents
/// placed on a target that names content by SHA-1 (Cyrus): rebuilding against it then reads no
/// body.
pub const CONTENT_SHA1: TableDefinition<&[u8], &[u8]> = TableDefinition::new("content_sha1");

/// A message the target keeps, but not byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FidelityNote {
    /// Unix seconds when it was learned.
    pub since: u64,
    /// What the target changed, readable as is.
    pub note: String,
    /// The fingerprint of the copy as the target serves it.
    pub target_fingerprint: Fingerprint,
}

/// A message the target refused, in the server's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// Unix seconds of the refusal.
    pub since: u64,
    pub size: u32,
    pub error: String,
    /// The content refused (files written before it was recorded have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// A copy of content the target holds in that folder, refused as over its limit on
    /// identical messages: a fidelity note `verify` accepts.
    #[serde(default)]
    pub identical_copy: bool,
    /// Refused because the target keeps one email per content (JMAP's `alreadyExists` in a
    /// mailbox holding it): it can never succeed, so it does not keep the folder incomplete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_design: bool,
}

/// A quarantined message: why, since when, and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub message_id: Option<String>,
    pub size: u32,
    /// `transport` (damaged in transit, retried), `structural` (broken as stored: replicated
    /// after it settles, unless --strict-validation) .
    pub class: String,
    pub reason: String,
    pub fingerprint: Fingerprint,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
    pub attempts: u32,
}

/// A removal the budget held: the target copy stays until the user releases it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRemoval {
    pub target_uid: u32,
    /// Unix seconds when it was first held.
    pub since: u64,
    pub reason: String,
    /// Released by `mailreplica release`: the next pass applies it.
    pub released: bool,
}

/// A batch of uploads, journaled before the first APPEND is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub target_uidvalidity: u32,
    /// A lower bound of the first UID the batch's copies can get (the target's UIDNEXT when the
    /// folder was opened).
    pub target_uidnext: u32,
    pub intents: Vec<Intent>,
}

/// One message the batch is about to upload, with what recovery needs to recognise its copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub source_uid: u32,
    pub fingerprint: Fingerprint,
    /// Bytes actually sent (CRLF-normalised), the copy's size on an exact target.
    pub sent_size: u32,
    pub size: u32,
    pub flags: FlagSet,
    pub internaldate: InternalDate,
}

/// Failed uploads of one source message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempts {
    pub count: u32,
    pub last_error: String,
}

/// Per folder: the UIDVALIDITY the mapping was made under, on each side, and the tokens each
/// side showed when the folder was last synced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRecord {
    pub source_uidvalidity: u32,
    pub target_uidvalidity: Option<u32>,
    /// The source's tokens when it was opened for the last finished pass of this folder (also
    /// what a regression is measured against).
    #[serde(default)]
    pub source_tokens: Option<FolderTokens>,
    /// The target's tokens when it was opened for that pass (before that pass's own writes).
    #[serde(default)]
    pub target_tokens: Option<FolderTokens>,
    /// After that pass every source message below `source_tokens.uidnext` had an instance
    /// with a target UID and nothing was held: the next pass may read only what changed.
    #[serde(default)]
    pub complete: bool,
    /// Complete but for copies the target can never take (`Refused::by_design`): the next
    /// pass may skip the folder when neither side changed, but reads it in full when one did
    /// (those copies are in no instance, so only a full listing sees them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settled: bool,
    /// Messages on the target that the source does not have, as last counted.
    #[serde(default)]
    pub target_only: u32,
}

/// One synced message instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// `None` when the copy was matched by cheap keys (size, INTERNALDATE, Message-ID) while
    /// rebuilding, without reading the body.
    pub fingerprint: Option<Fingerprint>,
    /// Rank among instances with the same fingerprint in this folder, by source UID.
    pub ordinal: u32,
    /// The target's UID, when known (APPENDUID, or adopted by identity).
    pub target_uid: Option<u32>,
    /// The flags last made equal on both sides.
    pub flags: FlagSet,
    pub internaldate: InternalDate,
    pub size: u32,
}
