//! The pair's state in a redb file: what was synced, by message instance, per folder.
//!
//! Layout (schema version in [`schema`]): `meta` holds the schema version and the pair id (a
//! state file belongs to exactly one source/target pair); `folders` maps a folder path to its
//! UIDVALIDITY on each side; `instances` maps (folder, source UID) to the instance synced from
//! it: fingerprint, ordinal, target UID, the flags last made equal, INTERNALDATE and size.
//!
//! Further tables: `journal` holds, per folder, the batch of uploads under way; `attempts` counts
//! failed uploads per source message (given up after a few, and reported).
//!
//! # Order of operations, and why it is safe
//!
//! For each batch of uploads in a folder:
//!
//! 1. **Journal** (one durable commit): the batch's intents (source UID, fingerprint, size sent,
//!    INTERNALDATE, flags) and the target folder's UIDVALIDITY and UIDNEXT as seen when the folder
//!    was opened, a lower bound of every UID the batch's copies can get.
//! 2. **Act**: APPEND the batch (pipelined with LITERAL+).
//! 3. **Commit** (one durable commit): the new instances with their target UIDs (APPENDUID), and
//!    the journal entry removed, atomically. No per-message fsync.
//!
//! A pass that stops between 1 and 3 (crash, SIGKILL, lost connection) leaves the journal entry.
//! The next pass resolves it before planning the folder (`engine::recover`): target messages at or
//! above the recorded UIDNEXT that no instance maps and whose size and INTERNALDATE match an intent
//! are the only candidates; their bodies are fetched and a copy is adopted when its fingerprint
//! matches. The rest are counted as failed attempts and uploaded again. So a message is never
//! uploaded twice and never lost: either its copy is found, or it was not stored.
//!
//! Flag updates and removals are written to the target first and committed here after; a stop in
//! between leaves the target already right, and the next pass only updates the base. Removals are
//! derived only from a complete source listing compared with this base: a failed or partial
//! listing aborts the pass, so it can never turn into deletions. The folder record (both
//! UIDVALIDITYs) is committed before the first instance of a pass, so instances are never
//! interpreted under another UIDVALIDITY. Without a journal the generic adoption (unmapped target
//! messages with the same INTERNALDATE and fingerprint) still prevents duplicates; the journal makes
//! recovery cheap (no source bodies, only candidates' bodies).
//!
//! Durability: every commit uses redb's default, `Durability::Immediate` (fsync), which survives
//! power loss. A second process is kept out by a lock file holding the owner's pid ([`lock`]).

pub mod error;
pub mod instance_codec;
pub mod lock;
pub mod schema;
pub mod store;

pub use error::StateError;
pub use schema::{
    Attempts, FidelityNote, FolderRecord, HeldRemoval, InstanceRecord, Intent, JournalEntry,
    Quarantined, Refused,
};
pub use store::StateFile;
pub use store::{InstanceChange, JournalOp};
