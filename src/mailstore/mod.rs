//! The narrow adapter trait every protocol implements, with the types that cross it.
//!
//! The engine talks to a side only through [`MailStore`]; the IMAP adapter lives in [`imap`],
//! an in-memory implementation for fast tests in [`memory`].

pub mod error;
pub mod imap;
pub mod jmap;
pub mod memory;

use crate::model::{FlagSet, FolderPath, InternalDate};
pub use error::StoreError;

/// What a side may do. A read-only side is opened with EXAMINE, read with PEEK, and refuses every
/// write command before it reaches the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// The capabilities the engine cares about, as the server advertised them after login.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Capabilities {
    pub uidplus: bool,
    pub literal_plus: bool,
    pub move_: bool,
    pub condstore: bool,
    pub qresync: bool,
    pub special_use: bool,
    pub binary: bool,
    pub multiappend: bool,
    pub idle: bool,
    /// Everything the server advertised, upper-cased.
    pub raw: Vec<String>,
}

impl Capabilities {
    pub fn from_atoms<'a>(atoms: impl IntoIterator<Item = &'a str>) -> Capabilities {
        let raw: Vec<String> = atoms.into_iter().map(|a| a.to_ascii_uppercase()).collect();
        let has = |name: &str| raw.iter().any(|a| a == name);
        Capabilities {
            uidplus: has("UIDPLUS"),
            literal_plus: has("LITERAL+"),
            move_: has("MOVE"),
            condstore: has("CONDSTORE"),
            qresync: has("QRESYNC"),
            special_use: has("SPECIAL-USE"),
            binary: has("BINARY"),
            multiappend: has("MULTIAPPEND"),
            idle: has("IDLE"),
            raw,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.raw.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// A folder as listed by a side.
#[derive(Debug, Clone)]
pub struct FolderInfo {
    pub path: FolderPath,
    /// False for `\Noselect` and `\NonExistent` entries: never selected.
    pub selectable: bool,
    /// The special-use attribute (`\Sent`, `\Trash`, ...), if any.
    pub special_use: Option<String>,
}

/// What opening a folder tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderStatus {
    pub uidvalidity: u32,
    pub uidnext: Option<u32>,
    pub exists: u32,
    /// `None` when the server sent no PERMANENTFLAGS (then every flag is assumed storable).
    pub permanent_flags: Option<PermanentFlags>,
    pub highest_modseq: Option<u64>,
}

/// The flags a folder stores permanently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermanentFlags {
    pub flags: FlagSet,
    /// `\*`: new keywords may be created.
    pub any_keyword: bool,
}

impl FolderStatus {
    /// Whether a flag set on a message in this folder would stick.
    pub fn can_store(&self, flag: &crate::model::Flag) -> bool {
        match &self.permanent_flags {
            None => true,
            Some(p) => p.flags.contains(flag) || (!flag.is_system() && p.any_keyword),
        }
    }
}

/// One message's metadata, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    pub flags: FlagSet,
    pub internaldate: InternalDate,
    pub size: u32,
}

/// A message body as fetched. Bodies fetched over IMAP stay inside the response buffer they
/// arrived in, so a large message is held in memory once.
pub struct FetchedBody {
    pub uid: u32,
    body: BodyBytes,
}

enum BodyBytes {
    Owned(Vec<u8>),
    Imap(imap::connection::ImapResponse),
}

impl FetchedBody {
    pub fn owned(uid: u32, bytes: Vec<u8>) -> FetchedBody {
        FetchedBody {
            uid,
            body: BodyBytes::Owned(bytes),
        }
    }

    pub(crate) fn imap(uid: u32, response: imap::connection::ImapResponse) -> FetchedBody {
        FetchedBody {
            uid,
            body: BodyBytes::Imap(response),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.body {
            BodyBytes::Owned(v) => v,
            BodyBytes::Imap(r) => imap::fetch::body_section(r).unwrap_or(&[]),
        }
    }
}

impl std::fmt::Debug for FetchedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FetchedBody(uid {}, {} bytes)",
            self.uid,
            self.bytes().len()
        )
    }
}

/// One message to append.
#[derive(Debug, Clone, Copy)]
pub struct AppendRequest<'a> {
    pub flags: &'a FlagSet,
    pub internaldate: &'a InternalDate,
    /// CRLF-normalised bytes.
    pub bytes: &'a [u8],
}

/// How a STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagChange {
    Add,
    Remove,
    /// Make the flags exactly these (an empty set clears them).
    Replace,
}

/// One side of a pair, reached over some protocol. Every method is one logical operation with
/// its own timeout; an error leaves the store unusable only if it says so
/// ([`StoreError::is_connection_lost`]).
#[allow(async_fn_in_trait)]
pub trait MailStore {
    /// `imap://user@host:port`, for messages. Never contains a secret.
    fn endpoint(&self) -> &str;
    fn capabilities(&self) -> &Capabilities;
    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, StoreError>;
    async fn create_folder(&mut self, path: &FolderPath) -> Result<(), StoreError>;
    /// Opens a folder (EXAMINE on a read-only side). Later message calls act on it.
    async fn open_folder(&mut self, path: &FolderPath) -> Result<FolderStatus, StoreError>;
    /// Metadata of every message in the open folder, sorted by UID.
    async fn list_messages(&mut self) -> Result<Vec<MessageMeta>, StoreError>;
    /// Bodies of the given UIDs of the open folder (missing ones are simply absent), without
    /// setting `\Seen`.
    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<FetchedBody>, StoreError>;
    /// The Message-ID of the given UIDs of the open folder (a header fetch, no bodies), for
    /// matching by cheap keys. Missing UIDs are absent; a message without one gives `None`.
    async fn fetch_message_ids(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Option<String>)>, StoreError>;
    /// Appends messages to a folder, in order. The outer error means the connection failed (the
    /// outcome of the batch is unknown); inner errors are per-message refusals.
    async fn append(
        &mut self,
        path: &FolderPath,
        messages: &[AppendRequest<'_>],
    ) -> Result<Vec<Result<Option<u32>, StoreError>>, StoreError>;
    /// Adds or removes flags on UIDs of the open folder.
    async fn store_flags(
        &mut self,
        uids: &[u32],
        change: FlagChange,
        flags: &FlagSet,
    ) -> Result<(), StoreError>;
    /// Copies messages of the open folder into another folder of the same side (UID COPY), in
    /// one command. Returns, per source UID in input order, the new UID when the server says
    /// (COPYUID, UIDPLUS), else `None` (also for a UID the folder no longer holds). A read-only
    /// side refuses with [`StoreError::ReadOnly`] before the wire.
    async fn copy(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError>;
    /// Removes exactly these UIDs from the open folder, never others.
    async fn expunge(&mut self, uids: &[u32]) -> Result<(), StoreError>;
    /// Ends the session politely; errors are ignored.
    async fn logout(&mut self);
}

/// Formats UIDs as a compact IMAP sequence set (`1:5,9,12:13`). The input need not be sorted.
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted: Vec<u32> = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 9, 12, 13, 3]), "1:3,5,9,12:13");
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[]), "");
    }
}
