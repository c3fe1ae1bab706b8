//! The narrow adapter trait every protocol implements, with the types that cross it.
//!
//! The engine talks to a side only through [`MailStore`]; the IMAP adapter lives in [`imap`],
//! the JMAP one in [`jmap`], [`any::AnyStore`] is either (by the URL's scheme), and an
//! in-memory implementation for fast tests is in [`memory`].

pub mod any;
pub mod error;
pub mod imap;
pub mod jmap;
pub mod memory;

pub use crate::model::FolderTokens;
use crate::model::{ContentSha1, FlagSet, FolderPath, InternalDate};
pub use error::{StoreError, Throttling};

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

    /// The largest message the server accepts (`APPENDLIMIT=n`, RFC 7889), when it says.
    pub fn append_limit(&self) -> Option<u32> {
        self.raw.iter().find_map(|a| {
            let n = a.strip_prefix("APPENDLIMIT=")?;
            // Larger than a message can be (u32 sizes): no limit in practice.
            Some(n.parse::<u64>().ok()?.min(u64::from(u32::MAX)) as u32)
        })
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
    /// The folder's change tokens, when the listing carried them (LIST-STATUS).
    pub tokens: Option<FolderTokens>,
    /// The account subscribes to the folder (what mail clients show).
    pub subscribed: bool,
}

#[cfg(test)]
impl FolderInfo {
    /// A selectable, unsubscribed folder without tokens, for tests of folder logic.
    pub fn for_test(path: &str, special_use: Option<&str>) -> FolderInfo {
        FolderInfo {
            path: FolderPath::from_display(path),
            selectable: true,
            special_use: special_use.map(str::to_string),
            tokens: None,
            subscribed: false,
        }
    }
}

/// What changed in the open folder since some tokens: see [`MailStore::list_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderChanges {
    /// Every message with a UID at or above the old UIDNEXT, sorted by UID.
    pub new: Vec<MessageMeta>,
    /// Flags of messages below the old UIDNEXT that changed (or of all of them, on a rescan).
    pub flags: Vec<(u32, FlagSet)>,
    /// Which messages below the old UIDNEXT are gone.
    pub gone: Gone,
}

/// How a change listing says which old messages are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// Exactly those in these ranges (VANISHED; ranges may cover UIDs never seen).
    Ranges(Vec<std::ops::RangeInclusive<u32>>),
    /// Every old message not in this complete, sorted list of the old UIDs still present.
    AllBut(Vec<u32>),
}

impl Gone {
    /// Whether the message with this UID (below the old UIDNEXT) is gone.
    pub fn removes(&self, uid: u32) -> bool {
        match self {
            Gone::Ranges(ranges) => ranges.iter().any(|r| r.contains(&uid)),
            Gone::AllBut(present) => present.binary_search(&uid).is_err(),
        }
    }
}

impl Default for Gone {
    fn default() -> Self {
        Gone::Ranges(Vec::new())
    }
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

impl FolderStatus {
    /// The change tokens this opening showed. A server without UIDNEXT gets EXISTS + 1 as a
    /// stand-in lower bound, which can only make a folder look changed.
    pub fn tokens(&self) -> FolderTokens {
        FolderTokens {
            uidvalidity: self.uidvalidity,
            uidnext: self.uidnext.unwrap_or(0),
            messages: self.exists,
            highest_modseq: self.highest_modseq,
        }
    }
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
    /// Creates a folder; with a special-use (`\Sent`), also marks it so where the server
    /// offers CREATE-SPECIAL-USE (RFC 6154).
    async fn create_folder(
        &mut self,
        path: &FolderPath,
        special_use: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Renames a folder and, as IMAP RENAME does, every folder below it.
    async fn rename_folder(&mut self, from: &FolderPath, to: &FolderPath)
        -> Result<(), StoreError>;
    /// Deletes one folder (not its children). Callers empty it first.
    async fn delete_folder(&mut self, path: &FolderPath) -> Result<(), StoreError>;
    /// SUBSCRIBE (`true`) or UNSUBSCRIBE (`false`) a folder.
    async fn set_subscribed(&mut self, path: &FolderPath, on: bool) -> Result<(), StoreError>;
    /// Opens a folder (EXAMINE on a read-only side). Later message calls act on it.
    async fn open_folder(&mut self, path: &FolderPath) -> Result<FolderStatus, StoreError>;
    /// Metadata of every message in the open folder, sorted by UID.
    async fn list_messages(&mut self) -> Result<Vec<MessageMeta>, StoreError>;
    /// What changed in the open folder since `since` (tokens of an earlier opening under the
    /// same UIDVALIDITY). `old_known` is how many messages below `since.uidnext` the caller
    /// believes present: when the folder holds exactly that many still, none is gone and no
    /// listing of old UIDs is needed. The default lists everything and reports every old
    /// message's flags: always right, never cheap.
    async fn list_changes(
        &mut self,
        since: &FolderTokens,
        old_known: u32,
    ) -> Result<FolderChanges, StoreError> {
        let _ = old_known;
        let all = self.list_messages().await?;
        Ok(changes_from_listing(all, since.uidnext))
    }
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
    /// The most message bytes to send in one command that carries several messages (IMAP
    /// MULTIAPPEND, which the server stores all or nothing): a connection that drops every
    /// few hundred kilobytes needs commands that fit (see `engine::paced`). A side that sends
    /// one message per command ignores it.
    fn set_append_group_limit(&mut self, _bytes: u64) {}
    /// Adds or removes flags on UIDs of the open folder.
    async fn store_flags(
        &mut self,
        uids: &[u32],
        change: FlagChange,
        flags: &FlagSet,
    ) -> Result<(), StoreError>;
    /// Several flag changes on the open folder, each with its own outcome: the outer error
    /// means the connection failed, an inner one that the server refused that change. IMAP
    /// sends them all before reading any answer (one round trip); by default one by one.
    async fn store_flags_many(
        &mut self,
        changes: &[(&[u32], FlagChange, &FlagSet)],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut out = Vec::with_capacity(changes.len());
        for (uids, change, flags) in changes {
            match self.store_flags(uids, *change, flags).await {
                Ok(()) => out.push(Ok(())),
                Err(e @ StoreError::No { .. }) => out.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
    /// Copies messages of the open folder into another folder of the same side (UID COPY), in
    /// one command. Returns, per source UID in input order, the new UID when the server says
    /// (COPYUID, UIDPLUS), else `None` (also for a UID the folder no longer holds). A read-only
    /// side refuses with [`StoreError::ReadOnly`] before the wire.
    async fn copy(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError>;
    /// Moves messages of the open folder into another folder of the same side, returning like
    /// [`MailStore::copy`]. The default copies, then removes exactly these UIDs; the IMAP
    /// adapter sends one `UID MOVE` where the server offers MOVE.
    async fn move_messages(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        let copied = self.copy(uids, to).await?;
        let done: Vec<u32> = copied
            .iter()
            .filter(|(_, new)| new.is_some())
            .map(|(uid, _)| *uid)
            .collect();
        self.expunge(&done).await?;
        Ok(copied)
    }
    /// Leaves the open folder without expunging anything (IMAP UNSELECT where offered; else
    /// nothing happens and the folder stays open). Dovecot closes the session when the selected
    /// folder is deleted, so callers leave a folder before deleting it.
    async fn close_folder(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether the server names each message's content by the SHA-1 of its bytes
    /// ([`MailStore::content_sha1`]).
    fn names_content_by_sha1(&self) -> bool {
        false
    }
    /// The SHA-1 of the bytes of these messages of the open folder, where the server names
    /// content by it (Cyrus's JMAP blobId is `G` + that SHA-1), read from the listing: no body
    /// crosses the wire. Empty where the server does not; UIDs it does not hold are absent.
    async fn content_sha1(&mut self, uids: &[u32]) -> Result<Vec<(u32, ContentSha1)>, StoreError> {
        let _ = uids;
        Ok(Vec::new())
    }
    /// Removes exactly these UIDs from the open folder, never others.
    async fn expunge(&mut self, uids: &[u32]) -> Result<(), StoreError>;
    /// Ends the session politely; errors are ignored.
    async fn logout(&mut self);
}

/// A complete listing seen as changes since a UIDNEXT: every old message's flags, and the
/// old UIDs present.
pub fn changes_from_listing(all: Vec<MessageMeta>, uidnext: u32) -> FolderChanges {
    let (mut old, new): (Vec<MessageMeta>, Vec<MessageMeta>) =
        all.into_iter().partition(|m| m.uid < uidnext);
    old.sort_by_key(|m| m.uid);
    FolderChanges {
        new,
        gone: Gone::AllBut(old.iter().map(|m| m.uid).collect()),
        flags: old.into_iter().map(|m| (m.uid, m.flags)).collect(),
    }
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

    #[test]
    fn append_limit_is_read_from_the_capabilities() {
        let caps = |atoms: &[&str]| Capabilities::from_atoms(atoms.iter().copied());
        assert_eq!(
            caps(&["IMAP4rev1", "AppendLimit=35882577"]).append_limit(),
            Some(35882577)
        );
        assert_eq!(caps(&["IMAP4rev1", "APPENDLIMIT"]).append_limit(), None);
        assert_eq!(
            caps(&["APPENDLIMIT=99999999999"]).append_limit(),
            Some(u32::MAX)
        );
        assert_eq!(caps(&["APPENDLIMIT=x"]).append_limit(), None);
    }
}
