//! The pair's state in a redb file: what was synced, by message instance, per folder.
//!
//! Layout (schema version in [`schema`]): `meta` holds the schema version and the pair id (a
//! state file belongs to exactly one source/target pair); `folders` maps a folder path to its
//! UIDVALIDITY on each side; `instances` maps (folder, source UID) to the instance synced from
//! it: fingerprint, ordinal, target UID, the flags last made equal, INTERNALDATE and size.
//!
//! Order of operations, and why it is safe: the engine writes to the target first and commits
//! the outcome here after (one durable transaction per batch, no per-message fsync). A crash
//! between the two leaves messages on the target that the state does not map; the next pass
//! finds them as unmapped target messages and adopts them by identity (same size and
//! INTERNALDATE, then same fingerprint) instead of uploading again, so nothing is duplicated.
//! Removals are derived only from a complete source listing compared with this base: a
//! failed or partial listing aborts the pass, so it can never turn into deletions.

pub mod error;
pub mod schema;
pub mod store;

pub use error::StateError;
pub use schema::{FolderRecord, InstanceRecord};
pub use store::StateFile;
