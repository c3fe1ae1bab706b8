//! An in-memory [`MailStore`] with IMAP semantics, for fast engine tests.
//!
//! [`MemoryStore`] behaves like one IMAP account seen through the adapter: folders with
//! UIDVALIDITY and UIDNEXT, UIDs that only grow, an open folder that message calls act on, APPEND
//! that answers APPENDUID only with UIDPLUS, a COPY that keeps flags and INTERNALDATE and answers
//! COPYUID only with UIDPLUS, STORE, COPY and EXPUNGE that refuse on a read-only side exactly like
//! [`super::imap::ImapStore`], and an EXPUNGE that removes exactly the given UIDs.
//!
//! Tests set it up and inspect it with plain methods ([`MemoryStore::add_message`],
//! [`MemoryStore::messages`], [`MemoryStore::reset_uidvalidity`], ...), count what the engine
//! did ([`MemoryStore::appends`], [`MemoryStore::stores`], [`MemoryStore::copies`],
//! [`MemoryStore::expunges`]), and make an operation fail ([`MemoryStore::fail_after`],
//! [`MemoryStore::fail_next`]).
//!
//! What counts as an *operation* is what would reach the wire: every trait call except
//! `endpoint`, `capabilities` and `logout`, with one operation per message of an APPEND batch
//! (IMAP sends one APPEND command each), and nothing for calls the adapter answers without the
//! server (a STORE of no flags or no UIDs, a COPY or an EXPUNGE of no UIDs, a write on a read-only
//! side). A COPY is one operation whatever the number of messages (one `UID COPY` command).

use std::collections::{BTreeMap, BTreeSet};

use super::{
    Access, AppendRequest, Capabilities, FetchedBody, FlagChange, FolderInfo, FolderStatus,
    MailStore, MessageMeta, PermanentFlags, StoreError,
};
use crate::model::{FlagSet, FolderPath, InternalDate};

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub flags: FlagSet,
    pub internaldate: InternalDate,
    pub bytes: Vec<u8>,
}

/// One folder of a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryFolder {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: BTreeMap<u32, StoredMessage>,
    pub special_use: Option<String>,
    /// False for a `\Noselect` folder: listed, never opened.
    pub selectable: bool,
    pub subscribed: bool,
    /// What SELECT answers as PERMANENTFLAGS; `None` sends none (every flag storable). Flags
    /// outside it are dropped by APPEND and STORE, as a server keeps them only for the session.
    pub permanent_flags: Option<PermanentFlags>,
}

/// Which trait call an operation is, for [`MemoryStore::fail_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    ListFolders,
    CreateFolder,
    RenameFolder,
    DeleteFolder,
    OpenFolder,
    ListMessages,
    FetchBodies,
    Append,
    StoreFlags,
    Copy,
    Expunge,
    Subscribe,
}

impl OpKind {
    fn command(self) -> &'static str {
        match self {
            OpKind::ListFolders => "LIST",
            OpKind::CreateFolder => "CREATE",
            OpKind::RenameFolder => "RENAME",
            OpKind::DeleteFolder => "DELETE",
            OpKind::OpenFolder => "SELECT",
            OpKind::ListMessages => "UID FETCH",
            OpKind::FetchBodies => "UID FETCH",
            OpKind::Append => "APPEND",
            OpKind::StoreFlags => "UID STORE",
            OpKind::Copy => "UID COPY",
            OpKind::Expunge => "UID EXPUNGE",
            OpKind::Subscribe => "SUBSCRIBE",
        }
    }
}

/// How an injected failure looks to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection drops before the command reaches the server: nothing happens, the call
    /// fails with [`StoreError::ConnectionLost`], and the store stays dead until
    /// [`MemoryStore::reconnect`].
    LostBefore,
    /// The server carries the command out, then the connection drops before its answer: the
    /// effect is there, the caller sees [`StoreError::ConnectionLost`], and the store stays dead
    /// until [`MemoryStore::reconnect`].
    LostAfter,
    /// No answer in time ([`StoreError::Timeout`]); nothing happens and the store is dead.
    Timeout,
    /// The server says NO to this one operation; the connection stays usable. On APPEND it is
    /// that message's refusal (an inner error), as the adapter reports it.
    No,
    /// Like `No`, but the server asks to slow down (`NO [THROTTLED]`): the same command
    /// succeeds when sent again.
    Throttled,
}

#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// The operation with this index (see [`MemoryStore::operations`]).
    At(u64),
    /// The next operation of this kind.
    Next(OpKind),
}

/// What happens to the operation being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Proceed,
    Fail(Fault),
}

/// How many things were done, counted since the store was made (or [`MemoryStore::reset_counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Operations started (see the module documentation), failed ones included.
    pub operations: u64,
    /// Messages appended.
    pub appends: u64,
    /// STORE commands carried out (one per `store_flags` call with UIDs and flags).
    pub stores: u64,
    /// Messages whose flags a STORE touched (UIDs per STORE, summed).
    pub stored_messages: u64,
    /// COPY commands carried out (one per `copy` call with UIDs).
    pub copy_commands: u64,
    /// Messages copied (copies made, over all COPY commands).
    pub copies: u64,
    /// Messages expunged.
    pub expunges: u64,
    /// Folders created.
    pub creates: u64,
    /// RENAME commands carried out.
    pub renames: u64,
    /// Folders deleted.
    pub deletes: u64,
    /// Bodies fetched.
    pub fetched: u64,
}

/// An in-memory IMAP account. `Clone` copies everything, counters and pending faults included,
/// so a test can set a scenario up once and run it many times.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    endpoint: String,
    caps: Capabilities,
    access: Access,
    folders: BTreeMap<FolderPath, MemoryFolder>,
    selected: Option<FolderPath>,
    next_uidvalidity: u32,
    counters: Counters,
    fault: Option<(Trigger, Fault)>,
    /// Set by a lost connection; every operation fails until [`MemoryStore::reconnect`].
    dead: bool,
    /// The folder the operation in progress names (for error messages).
    acting_on: Option<FolderPath>,
    /// A folder recreated by another client right before it is opened for the nth time from
    /// now (see [`MemoryStore::reset_uidvalidity_on_open`]).
    reset_on_open: Option<(FolderPath, u32)>,
}

/// Anything that names a folder in the test helpers: a [`FolderPath`] or its display form
/// (`"Archive/2024"`).
pub trait IntoFolderPath {
    fn into_folder_path(self) -> FolderPath;
}

impl IntoFolderPath for FolderPath {
    fn into_folder_path(self) -> FolderPath {
        self
    }
}
impl IntoFolderPath for &FolderPath {
    fn into_folder_path(self) -> FolderPath {
        self.clone()
    }
}
impl IntoFolderPath for &str {
    fn into_folder_path(self) -> FolderPath {
        FolderPath::from_display(self)
    }
}
impl IntoFolderPath for &String {
    fn into_folder_path(self) -> FolderPath {
        FolderPath::from_display(self)
    }
}
impl IntoFolderPath for String {
    fn into_folder_path(self) -> FolderPath {
        FolderPath::from_display(&self)
    }
}

impl MemoryStore {
    /// An account `memory://<name>` holding an empty INBOX, with UIDPLUS, LITERAL+, MOVE,
    /// SPECIAL-USE and IDLE.
    pub fn new(name: &str, access: Access) -> MemoryStore {
        // Distinct stores start their UIDVALIDITYs apart, so a mix-up of sides shows.
        let seed = name
            .bytes()
            .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
        let mut store = MemoryStore {
            endpoint: format!("memory://{name}"),
            caps: Capabilities::from_atoms([
                "IMAP4rev1",
                "UIDPLUS",
                "LITERAL+",
                "MOVE",
                "SPECIAL-USE",
                "IDLE",
            ]),
            access,
            folders: BTreeMap::new(),
            selected: None,
            next_uidvalidity: 1000 + seed % 100_000 * 10,
            counters: Counters::default(),
            fault: None,
            dead: false,
            acting_on: None,
            reset_on_open: None,
        };
        store.add_folder("INBOX");
        store
    }

    /// Replaces the advertised capabilities.
    pub fn set_capabilities(&mut self, caps: Capabilities) {
        self.caps = caps;
    }

    /// The advertised capabilities, to change one (`store.capabilities_mut().uidplus = false`).
    pub fn capabilities_mut(&mut self) -> &mut Capabilities {
        &mut self.caps
    }

    pub fn access(&self) -> Access {
        self.access
    }

    fn new_uidvalidity(&mut self) -> u32 {
        let v = self.next_uidvalidity;
        self.next_uidvalidity = self.next_uidvalidity.wrapping_add(1).max(1);
        v
    }

    /// Adds a selectable folder (no-op when it exists). Ancestors are not created.
    pub fn add_folder(&mut self, path: impl IntoFolderPath) -> &mut MemoryFolder {
        let path = path.into_folder_path();
        if !self.folders.contains_key(&path) {
            let uidvalidity = self.new_uidvalidity();
            self.folders.insert(
                path.clone(),
                MemoryFolder {
                    uidvalidity,
                    uidnext: 1,
                    messages: BTreeMap::new(),
                    special_use: None,
                    selectable: true,
                    subscribed: false,
                    permanent_flags: None,
                },
            );
        }
        self.folders.get_mut(&path).expect("just inserted")
    }

    /// Adds a `\Noselect` folder (a hierarchy node without messages).
    pub fn add_noselect_folder(&mut self, path: impl IntoFolderPath) {
        self.add_folder(path).selectable = false;
    }

    /// Gives a folder a special-use attribute (`\Sent`, ...).
    pub fn set_special_use(&mut self, path: impl IntoFolderPath, attr: &str) {
        self.folder_mut(path).special_use = Some(attr.to_string());
    }

    /// Sets what SELECT answers as PERMANENTFLAGS (`None`: every flag is storable).
    pub fn set_permanent_flags(
        &mut self,
        path: impl IntoFolderPath,
        flags: Option<PermanentFlags>,
    ) {
        self.folder_mut(path).permanent_flags = flags;
    }

    /// Removes a folder with its messages.
    pub fn remove_folder(&mut self, path: impl IntoFolderPath) {
        let path = path.into_folder_path();
        self.folders.remove(&path);
        if self.selected.as_ref() == Some(&path) {
            self.selected = None;
        }
    }

    /// A folder, for inspection.
    pub fn folder(&self, path: impl IntoFolderPath) -> Option<&MemoryFolder> {
        self.folders.get(&path.into_folder_path())
    }

    fn folder_mut(&mut self, path: impl IntoFolderPath) -> &mut MemoryFolder {
        let path = path.into_folder_path();
        let endpoint = self.endpoint.clone();
        self.folders
            .get_mut(&path)
            .unwrap_or_else(|| panic!("{endpoint}: no folder {path}"))
    }

    /// Every folder path, selectable or not, sorted.
    pub fn folder_paths(&self) -> Vec<FolderPath> {
        self.folders.keys().cloned().collect()
    }

    /// The UIDVALIDITY of a folder.
    pub fn uidvalidity(&self, path: impl IntoFolderPath) -> u32 {
        self.folder_ref(path).uidvalidity
    }

    fn folder_ref(&self, path: impl IntoFolderPath) -> &MemoryFolder {
        let path = path.into_folder_path();
        self.folders
            .get(&path)
            .unwrap_or_else(|| panic!("{}: no folder {path}", self.endpoint))
    }

    /// Adds a message as another client would (the folder must exist) and returns its UID.
    /// `flags` are raw flag atoms (`\Seen`, `$Label1`); `date` is an IMAP date-time
    /// (`01-Jan-2024 10:00:00 +0000`); the bytes are kept exactly as given.
    pub fn add_message(
        &mut self,
        path: impl IntoFolderPath,
        flags: &[&str],
        date: &str,
        bytes: &[u8],
    ) -> u32 {
        let internaldate =
            InternalDate::parse(date).unwrap_or_else(|| panic!("bad INTERNALDATE {date:?}"));
        self.insert_message(
            path,
            FlagSet::from_raw(flags.iter().copied()),
            internaldate,
            bytes.to_vec(),
        )
    }

    /// [`MemoryStore::add_message`] with typed values.
    pub fn insert_message(
        &mut self,
        path: impl IntoFolderPath,
        flags: FlagSet,
        internaldate: InternalDate,
        bytes: Vec<u8>,
    ) -> u32 {
        let folder = self.folder_mut(path);
        let uid = folder.uidnext;
        folder.uidnext += 1;
        folder.messages.insert(
            uid,
            StoredMessage {
                flags,
                internaldate,
                bytes,
            },
        );
        uid
    }

    /// Replaces a message's flags, as another client would.
    pub fn set_flags(&mut self, path: impl IntoFolderPath, uid: u32, flags: &[&str]) {
        let path = path.into_folder_path();
        let msg = self
            .folder_mut(&path)
            .messages
            .get_mut(&uid)
            .unwrap_or_else(|| panic!("no message {uid} in {path}"));
        msg.flags = FlagSet::from_raw(flags.iter().copied());
    }

    /// Expunges one message, as another client would. Returns whether it was there.
    pub fn remove_message(&mut self, path: impl IntoFolderPath, uid: u32) -> bool {
        self.folder_mut(path).messages.remove(&uid).is_some()
    }

    /// A folder's messages by UID (empty when the folder does not exist).
    pub fn messages(&self, path: impl IntoFolderPath) -> Vec<(u32, StoredMessage)> {
        self.folders
            .get(&path.into_folder_path())
            .map(|f| f.messages.iter().map(|(u, m)| (*u, m.clone())).collect())
            .unwrap_or_default()
    }

    /// A new UIDVALIDITY for the folder, its messages renumbered from 1 in their current order
    /// (what a server does when it rebuilds its index). Returns the new UIDVALIDITY.
    pub fn reset_uidvalidity(&mut self, path: impl IntoFolderPath) -> u32 {
        let uidvalidity = self.new_uidvalidity();
        let folder = self.folder_mut(path);
        let old = std::mem::take(&mut folder.messages);
        folder.messages = old
            .into_values()
            .enumerate()
            .map(|(i, m)| (i as u32 + 1, m))
            .collect();
        folder.uidnext = folder.messages.len() as u32 + 1;
        folder.uidvalidity = uidvalidity;
        uidvalidity
    }

    /// [`MemoryStore::reset_uidvalidity`] of the folder right before it is opened for the
    /// `nth` time from now (1: the next opening): another client recreating it in the middle of
    /// a pass.
    pub fn reset_uidvalidity_on_open(&mut self, path: impl IntoFolderPath, nth: u32) {
        self.reset_on_open = Some((path.into_folder_path(), nth.max(1)));
    }

    /// Everything counted so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Operations started so far (the index the next operation gets).
    pub fn operations(&self) -> u64 {
        self.counters.operations
    }

    pub fn appends(&self) -> u64 {
        self.counters.appends
    }

    pub fn stores(&self) -> u64 {
        self.counters.stores
    }

    /// Messages copied by COPY (see [`Counters::copies`]).
    pub fn copies(&self) -> u64 {
        self.counters.copies
    }

    pub fn expunges(&self) -> u64 {
        self.counters.expunges
    }

    /// Zeroes the counters (operation indexes start again at 0) and drops a pending fault.
    pub fn reset_counters(&mut self) {
        self.counters = Counters::default();
        self.fault = None;
    }

    /// Makes the operation `n` operations from now fail (0: the next one). Replaces any pending
    /// fault.
    pub fn fail_after(&mut self, n: u64, fault: Fault) {
        self.fault = Some((Trigger::At(self.counters.operations + n), fault));
    }

    /// Makes the next operation of this kind fail. Replaces any pending fault.
    pub fn fail_next(&mut self, kind: OpKind, fault: Fault) {
        self.fault = Some((Trigger::Next(kind), fault));
    }

    /// Whether a fault is still pending (it did not fire yet).
    pub fn fault_pending(&self) -> bool {
        self.fault.is_some()
    }

    /// Whether a lost connection left the store unusable.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// A new session after a lost connection: no pending fault, no open folder.
    pub fn reconnect(&mut self) {
        self.dead = false;
        self.fault = None;
        self.selected = None;
    }

    fn lost(&self, kind: OpKind, detail: &str) -> StoreError {
        StoreError::ConnectionLost {
            endpoint: self.endpoint.clone(),
            command: kind.command().to_string(),
            detail: detail.to_string(),
        }
    }

    fn fault_error(&self, kind: OpKind, fault: Fault) -> StoreError {
        match fault {
            Fault::LostBefore | Fault::LostAfter => self.lost(kind, "injected fault"),
            Fault::Timeout => StoreError::Timeout {
                endpoint: self.endpoint.clone(),
                command: kind.command().to_string(),
                seconds: 60,
            },
            Fault::Throttled => StoreError::No {
                endpoint: self.endpoint.clone(),
                command: kind.command().to_string(),
                folder: String::new(),
                text: "[THROTTLED] Too many requests, slow down (injected)".into(),
                code: Some("THROTTLED".into()),
            },
            Fault::No => StoreError::No {
                endpoint: self.endpoint.clone(),
                command: kind.command().to_string(),
                folder: self
                    .acting_on
                    .as_ref()
                    .or(self.selected.as_ref())
                    .map(|p| format!(" {p}"))
                    .unwrap_or_default(),
                text: "injected refusal".into(),
                code: None,
            },
        }
    }

    /// Starts one operation: counts it and decides whether it fails. A dead store fails every
    /// operation.
    fn begin(&mut self, kind: OpKind, on: Option<&FolderPath>) -> Result<Verdict, StoreError> {
        self.acting_on = on.cloned();
        if self.dead {
            return Err(self.lost(kind, "the connection was lost earlier"));
        }
        let index = self.counters.operations;
        self.counters.operations += 1;
        let fire = match self.fault {
            Some((Trigger::At(at), fault)) if at == index => Some(fault),
            Some((Trigger::Next(k), fault)) if k == kind => Some(fault),
            _ => None,
        };
        let Some(fault) = fire else {
            return Ok(Verdict::Proceed);
        };
        self.fault = None;
        if matches!(fault, Fault::LostBefore | Fault::LostAfter | Fault::Timeout) {
            self.dead = true;
        }
        match fault {
            Fault::LostAfter => Ok(Verdict::Fail(fault)),
            Fault::No | Fault::Throttled if kind == OpKind::Append => Ok(Verdict::Fail(fault)),
            _ => Err(self.fault_error(kind, fault)),
        }
    }

    /// Runs `op` unless the operation fails first; a `LostAfter` fault runs it, then fails.
    fn run<R>(
        &mut self,
        kind: OpKind,
        on: Option<&FolderPath>,
        op: impl FnOnce(&mut Self) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let verdict = self.begin(kind, on)?;
        let result = op(self);
        match verdict {
            Verdict::Proceed => result,
            Verdict::Fail(fault) => Err(self.fault_error(kind, fault)),
        }
    }

    fn require_write(&self, command: &str) -> Result<(), StoreError> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(StoreError::ReadOnly {
                endpoint: self.endpoint.clone(),
                command: command.to_string(),
            }),
        }
    }

    fn no(&self, command: &str, folder: &FolderPath, text: &str, code: Option<&str>) -> StoreError {
        StoreError::No {
            endpoint: self.endpoint.clone(),
            command: command.to_string(),
            folder: format!(" {folder}"),
            text: text.to_string(),
            code: code.map(str::to_string),
        }
    }

    fn selected_folder(&mut self, kind: OpKind) -> Result<&mut MemoryFolder, StoreError> {
        let Some(path) = self.selected.clone() else {
            return Err(StoreError::Protocol {
                endpoint: self.endpoint.clone(),
                command: kind.command().to_string(),
                detail: "no folder is open (a mailreplica bug)".into(),
            });
        };
        match self.folders.get_mut(&path) {
            Some(f) => Ok(f),
            None => Err(StoreError::NoSuchFolder {
                endpoint: self.endpoint.clone(),
                folder: path.to_string(),
            }),
        }
    }
}

/// Keeps the flags a folder stores permanently.
fn storable(flags: &FlagSet, permanent: &Option<PermanentFlags>) -> FlagSet {
    match permanent {
        None => flags.clone(),
        Some(p) => flags.filtered(|f| p.flags.contains(f) || (!f.is_system() && p.any_keyword)),
    }
}

impl MailStore for MemoryStore {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, StoreError> {
        self.run(OpKind::ListFolders, None, |s| {
            Ok(s.folders
                .iter()
                .map(|(path, f)| FolderInfo {
                    path: path.clone(),
                    selectable: f.selectable,
                    special_use: f.special_use.clone(),
                    tokens: None,
                    subscribed: f.subscribed,
                })
                .collect())
        })
    }

    async fn create_folder(
        &mut self,
        path: &FolderPath,
        special_use: Option<&str>,
    ) -> Result<(), StoreError> {
        self.require_write("CREATE")?;
        let special_use = special_use
            .filter(|_| self.caps.has("CREATE-SPECIAL-USE"))
            .map(str::to_string);
        self.run(OpKind::CreateFolder, Some(path), |s| {
            // Like the adapter: a folder that already exists is not an error.
            if !s.folders.contains_key(path) {
                s.add_folder(path).special_use = special_use;
                s.counters.creates += 1;
            }
            Ok(())
        })
    }

    async fn rename_folder(
        &mut self,
        from: &FolderPath,
        to: &FolderPath,
    ) -> Result<(), StoreError> {
        self.require_write("RENAME")?;
        self.run(OpKind::RenameFolder, Some(from), |s| {
            if !s.folders.contains_key(from) {
                return Err(StoreError::NoSuchFolder {
                    endpoint: s.endpoint.clone(),
                    folder: from.to_string(),
                });
            }
            if s.folders.contains_key(to) {
                return Err(s.no(
                    "RENAME",
                    to,
                    "Mailbox already exists",
                    Some("ALREADYEXISTS"),
                ));
            }
            let moving: Vec<(FolderPath, FolderPath)> = s
                .folders
                .keys()
                .filter_map(|p| Some((p.clone(), p.renamed(from, to)?)))
                .collect();
            for (old, new) in moving {
                if let Some(f) = s.folders.remove(&old) {
                    s.folders.insert(new, f);
                }
            }
            s.counters.renames += 1;
            Ok(())
        })
    }

    async fn delete_folder(&mut self, path: &FolderPath) -> Result<(), StoreError> {
        self.require_write("DELETE")?;
        self.run(OpKind::DeleteFolder, Some(path), |s| {
            match s.folders.remove(path) {
                Some(_) => {
                    s.counters.deletes += 1;
                    Ok(())
                }
                None => Err(StoreError::NoSuchFolder {
                    endpoint: s.endpoint.clone(),
                    folder: path.to_string(),
                }),
            }
        })
    }

    async fn set_subscribed(&mut self, path: &FolderPath, on: bool) -> Result<(), StoreError> {
        self.require_write("SUBSCRIBE")?;
        self.run(OpKind::Subscribe, Some(path), |s| {
            match s.folders.get_mut(path) {
                Some(f) => {
                    f.subscribed = on;
                    Ok(())
                }
                None => Err(StoreError::NoSuchFolder {
                    endpoint: s.endpoint.clone(),
                    folder: path.to_string(),
                }),
            }
        })
    }

    async fn open_folder(&mut self, path: &FolderPath) -> Result<FolderStatus, StoreError> {
        if let Some((folder, nth)) = self.reset_on_open.as_mut().filter(|(f, _)| f == path) {
            *nth -= 1;
            if *nth == 0 {
                let folder = folder.clone();
                self.reset_on_open = None;
                self.reset_uidvalidity(&folder);
            }
        }
        self.run(OpKind::OpenFolder, Some(path), |s| {
            s.selected = None;
            let Some(f) = s.folders.get(path) else {
                return Err(StoreError::NoSuchFolder {
                    endpoint: s.endpoint.clone(),
                    folder: path.to_string(),
                });
            };
            if !f.selectable {
                return Err(s.no("SELECT", path, "Mailbox is not selectable", None));
            }
            let status = FolderStatus {
                uidvalidity: f.uidvalidity,
                uidnext: Some(f.uidnext),
                exists: f.messages.len() as u32,
                permanent_flags: f.permanent_flags.clone(),
                highest_modseq: None,
            };
            s.selected = Some(path.clone());
            Ok(status)
        })
    }

    async fn list_messages(&mut self) -> Result<Vec<MessageMeta>, StoreError> {
        self.run(OpKind::ListMessages, None, |s| {
            let f = s.selected_folder(OpKind::ListMessages)?;
            Ok(f.messages
                .iter()
                .map(|(uid, m)| MessageMeta {
                    uid: *uid,
                    flags: m.flags.clone(),
                    internaldate: m.internaldate.clone(),
                    size: m.bytes.len() as u32,
                })
                .collect())
        })
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<FetchedBody>, StoreError> {
        self.run(OpKind::FetchBodies, None, |s| {
            let wanted: BTreeSet<u32> = uids.iter().copied().collect();
            let f = s.selected_folder(OpKind::FetchBodies)?;
            let bodies: Vec<FetchedBody> = wanted
                .iter()
                .filter_map(|uid| {
                    f.messages
                        .get(uid)
                        .map(|m| FetchedBody::owned(*uid, m.bytes.clone()))
                })
                .collect();
            s.counters.fetched += bodies.len() as u64;
            Ok(bodies)
        })
    }

    async fn fetch_message_ids(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Option<String>)>, StoreError> {
        self.run(OpKind::FetchBodies, None, |s| {
            let wanted: BTreeSet<u32> = uids.iter().copied().collect();
            let f = s.selected_folder(OpKind::FetchBodies)?;
            Ok(wanted
                .iter()
                .filter_map(|uid| {
                    f.messages.get(uid).map(|m| {
                        let end = m
                            .bytes
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .unwrap_or(m.bytes.len());
                        (*uid, crate::model::message_id::message_id(&m.bytes[..end]))
                    })
                })
                .collect())
        })
    }

    async fn append(
        &mut self,
        path: &FolderPath,
        messages: &[AppendRequest<'_>],
    ) -> Result<Vec<Result<Option<u32>, StoreError>>, StoreError> {
        self.require_write("APPEND")?;
        let mut results = Vec::with_capacity(messages.len());
        for m in messages {
            let verdict = self.begin(OpKind::Append, Some(path))?;
            if let Verdict::Fail(fault @ (Fault::No | Fault::Throttled)) = verdict {
                results.push(Err(self.fault_error(OpKind::Append, fault)));
                continue;
            }
            let uidplus = self.caps.uidplus;
            let outcome = match self.folders.get_mut(path) {
                None => Err(self.no("APPEND", path, "Mailbox doesn't exist", Some("TRYCREATE"))),
                Some(f) => {
                    let uid = f.uidnext;
                    f.uidnext += 1;
                    let flags = storable(m.flags, &f.permanent_flags);
                    f.messages.insert(
                        uid,
                        StoredMessage {
                            flags,
                            internaldate: m.internaldate.clone(),
                            bytes: m.bytes.to_vec(),
                        },
                    );
                    self.counters.appends += 1;
                    Ok(uidplus.then_some(uid))
                }
            };
            if let Verdict::Fail(fault) = verdict {
                return Err(self.fault_error(OpKind::Append, fault));
            }
            results.push(outcome);
        }
        Ok(results)
    }

    async fn store_flags(
        &mut self,
        uids: &[u32],
        change: FlagChange,
        flags: &FlagSet,
    ) -> Result<(), StoreError> {
        self.require_write("STORE")?;
        if uids.is_empty() || (flags.is_empty() && change != FlagChange::Replace) {
            return Ok(());
        }
        self.run(OpKind::StoreFlags, None, |s| {
            let f = s.selected_folder(OpKind::StoreFlags)?;
            let flags = storable(flags, &f.permanent_flags);
            for uid in uids {
                if let Some(m) = f.messages.get_mut(uid) {
                    m.flags = match change {
                        FlagChange::Add => m.flags.iter().chain(flags.iter()).cloned().collect(),
                        FlagChange::Remove => m.flags.minus(&flags),
                        FlagChange::Replace => flags.clone(),
                    };
                }
            }
            s.counters.stores += 1;
            s.counters.stored_messages += uids.len() as u64;
            Ok(())
        })
    }

    async fn copy(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        self.require_write("COPY")?;
        if uids.is_empty() {
            // Like the adapter: answered without the server, but never by a dead connection.
            if self.dead {
                return Err(self.lost(OpKind::Copy, "the connection was lost earlier"));
            }
            self.selected_folder(OpKind::Copy)?;
            return Ok(Vec::new());
        }
        self.run(OpKind::Copy, Some(to), |s| {
            // The server copies each message once, in UID order; vanished UIDs are skipped.
            let wanted: BTreeSet<u32> = uids.iter().copied().collect();
            let source = s.selected_folder(OpKind::Copy)?;
            let originals: Vec<(u32, StoredMessage)> = wanted
                .iter()
                .filter_map(|uid| source.messages.get(uid).map(|m| (*uid, m.clone())))
                .collect();
            let uidplus = s.caps.uidplus;
            let Some(dest) = s.folders.get_mut(to) else {
                return Err(s.no("COPY", to, "Mailbox doesn't exist", Some("TRYCREATE")));
            };
            let mut new_uids = BTreeMap::new();
            for (uid, m) in originals {
                let new_uid = dest.uidnext;
                dest.uidnext += 1;
                let flags = storable(&m.flags, &dest.permanent_flags);
                dest.messages.insert(
                    new_uid,
                    StoredMessage {
                        flags,
                        internaldate: m.internaldate,
                        bytes: m.bytes,
                    },
                );
                new_uids.insert(uid, new_uid);
            }
            s.counters.copy_commands += 1;
            s.counters.copies += new_uids.len() as u64;
            Ok(uids
                .iter()
                .map(|u| (*u, new_uids.get(u).copied().filter(|_| uidplus)))
                .collect())
        })
    }

    async fn expunge(&mut self, uids: &[u32]) -> Result<(), StoreError> {
        self.require_write("EXPUNGE")?;
        if uids.is_empty() {
            return Ok(());
        }
        self.run(OpKind::Expunge, None, |s| {
            let f = s.selected_folder(OpKind::Expunge)?;
            let removed = uids
                .iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|uid| f.messages.remove(uid).is_some())
                .count();
            s.counters.expunges += removed as u64;
            Ok(())
        })
    }

    async fn logout(&mut self) {
        self.selected = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "01-Jan-2024 10:00:00 +0000";

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn request<'a>(
        flags: &'a FlagSet,
        date: &'a InternalDate,
        bytes: &'a [u8],
    ) -> AppendRequest<'a> {
        AppendRequest {
            flags,
            internaldate: date,
            bytes,
        }
    }

    #[test]
    fn append_answers_a_uid_only_with_uidplus() {
        block(async {
            let inbox = FolderPath::inbox();
            let flags = FlagSet::from_raw(["\\Seen"]);
            let date = InternalDate::parse(DATE).unwrap();
            let mut s = MemoryStore::new("t", Access::ReadWrite);
            let r = s
                .append(&inbox, &[request(&flags, &date, b"a")])
                .await
                .unwrap();
            assert_eq!(r[0].as_ref().unwrap(), &Some(1));
            s.capabilities_mut().uidplus = false;
            let r = s
                .append(&inbox, &[request(&flags, &date, b"b")])
                .await
                .unwrap();
            assert_eq!(r[0].as_ref().unwrap(), &None);
            assert_eq!(s.messages("INBOX").len(), 2);
            assert_eq!(s.appends(), 2);
            let missing = FolderPath::from_display("Nope");
            let r = s
                .append(&missing, &[request(&flags, &date, b"c")])
                .await
                .unwrap();
            assert!(matches!(&r[0], Err(StoreError::No { code: Some(c), .. }) if c == "TRYCREATE"));
        });
    }

    #[test]
    fn read_only_refuses_every_write_without_counting_it() {
        block(async {
            let mut s = MemoryStore::new("ro", Access::ReadOnly);
            let uid = s.add_message("INBOX", &["\\Seen"], DATE, b"x");
            let inbox = FolderPath::inbox();
            let flags = FlagSet::from_raw(["\\Flagged"]);
            let date = InternalDate::parse(DATE).unwrap();
            s.open_folder(&inbox).await.unwrap();
            let before = s.operations();
            let ro = |r: Result<_, StoreError>| matches!(r, Err(StoreError::ReadOnly { .. }));
            assert!(ro(s
                .create_folder(&FolderPath::from_display("X"), None)
                .await));
            assert!(ro(s
                .append(&inbox, &[request(&flags, &date, b"y")])
                .await
                .map(|_| ())));
            assert!(ro(s.store_flags(&[uid], FlagChange::Add, &flags).await));
            assert!(ro(s.expunge(&[uid]).await));
            assert!(ro(s
                .copy(&[uid], &FolderPath::from_display("X"))
                .await
                .map(|_| ())));
            assert_eq!(s.operations(), before);
            assert_eq!(s.messages("INBOX").len(), 1);
        });
    }

    #[test]
    fn expunge_removes_exactly_the_given_uids() {
        block(async {
            let mut s = MemoryStore::new("t", Access::ReadWrite);
            for i in 0..5 {
                s.add_message("INBOX", &["\\Deleted"], DATE, format!("m{i}").as_bytes());
            }
            s.open_folder(&FolderPath::inbox()).await.unwrap();
            s.expunge(&[2, 4, 9]).await.unwrap();
            let left: Vec<u32> = s.messages("INBOX").iter().map(|(u, _)| *u).collect();
            assert_eq!(left, [1, 3, 5]);
            assert_eq!(s.expunges(), 2);
        });
    }

    #[test]
    fn message_calls_need_an_open_folder_and_fetch_skips_missing_uids() {
        block(async {
            let mut s = MemoryStore::new("t", Access::ReadWrite);
            s.add_message("INBOX", &[], DATE, b"one");
            assert!(matches!(
                s.list_messages().await,
                Err(StoreError::Protocol { .. })
            ));
            s.open_folder(&FolderPath::inbox()).await.unwrap();
            let bodies = s.fetch_bodies(&[7, 1]).await.unwrap();
            assert_eq!(bodies.len(), 1);
            assert_eq!((bodies[0].uid, bodies[0].bytes()), (1, &b"one"[..]));
            let missing = s.open_folder(&FolderPath::from_display("Nope")).await;
            assert!(matches!(missing, Err(StoreError::NoSuchFolder { .. })));
        });
    }

    #[test]
    fn store_keeps_only_permanent_flags() {
        block(async {
            let mut s = MemoryStore::new("t", Access::ReadWrite);
            let uid = s.add_message("INBOX", &[], DATE, b"x");
            s.set_permanent_flags(
                "INBOX",
                Some(PermanentFlags {
                    flags: FlagSet::from_raw(["\\Seen"]),
                    any_keyword: false,
                }),
            );
            s.open_folder(&FolderPath::inbox()).await.unwrap();
            let flags = FlagSet::from_raw(["\\Seen", "Work"]);
            s.store_flags(&[uid], FlagChange::Add, &flags)
                .await
                .unwrap();
            assert_eq!(
                s.messages("INBOX")[0].1.flags,
                FlagSet::from_raw(["\\Seen"])
            );
        });
    }

    #[test]
    fn faults_fire_at_the_given_operation_and_kill_the_connection() {
        block(async {
            let inbox = FolderPath::inbox();
            let flags = FlagSet::new();
            let date = InternalDate::parse(DATE).unwrap();
            let mut s = MemoryStore::new("t", Access::ReadWrite);
            s.fail_after(2, Fault::LostBefore);
            s.list_folders().await.unwrap();
            s.open_folder(&inbox).await.unwrap();
            let batch = [request(&flags, &date, b"a"), request(&flags, &date, b"b")];
            assert!(s
                .append(&inbox, &batch)
                .await
                .unwrap_err()
                .is_connection_lost());
            assert!(s.is_dead());
            assert!(s.list_folders().await.is_err());
            assert!(s.messages("INBOX").is_empty());
            s.reconnect();

            // Lost after the first message of a batch was stored: it is there, the call failed.
            s.fail_after(0, Fault::LostAfter);
            assert!(s.append(&inbox, &batch).await.is_err());
            assert_eq!(s.messages("INBOX").len(), 1);
            s.reconnect();

            // A NO on one message is that message's refusal.
            s.fail_after(1, Fault::No);
            let r = s.append(&inbox, &batch).await.unwrap();
            assert!(r[0].is_ok() && r[1].is_err());
            assert!(!s.is_dead());

            s.fail_next(OpKind::ListMessages, Fault::Timeout);
            s.open_folder(&inbox).await.unwrap();
            assert!(matches!(
                s.list_messages().await,
                Err(StoreError::Timeout { .. })
            ));
        });
    }

    #[test]
    fn copy_keeps_flags_and_date_and_answers_uids_only_with_uidplus() {
        block(async {
            let mut s = MemoryStore::new("t", Access::ReadWrite);
            s.add_folder("Archive");
            s.add_message("Archive", &[], DATE, b"already there");
            let a = s.add_message("INBOX", &["\\Seen", "$Work"], DATE, b"a");
            let b = s.add_message("INBOX", &[], "02-Feb-2023 08:30:00 -0500", b"b");
            s.open_folder(&FolderPath::inbox()).await.unwrap();
            let archive = FolderPath::from_display("Archive");
            let before = s.operations();
            let r = s.copy(&[b, 99, a], &archive).await.unwrap();
            assert_eq!(r, [(b, Some(3)), (99, None), (a, Some(2))]);
            assert_eq!(s.operations(), before + 1);
            assert_eq!((s.copies(), s.counters().copy_commands), (2, 1));
            let inbox = s.messages("INBOX");
            let archived = s.messages("Archive");
            assert_eq!(archived.len(), 3);
            assert_eq!(archived[1].1, inbox[0].1);
            assert_eq!(archived[2].1, inbox[1].1);
            assert_eq!(inbox.len(), 2, "the source is untouched");

            s.capabilities_mut().uidplus = false;
            let r = s.copy(&[a], &archive).await.unwrap();
            assert_eq!(r, [(a, None)]);
            assert_eq!(s.messages("Archive").len(), 4);

            // Nothing to copy: no operation.
            let before = s.operations();
            assert!(s.copy(&[], &archive).await.unwrap().is_empty());
            assert_eq!(s.operations(), before);

            let missing = FolderPath::from_display("Nope");
            let r = s.copy(&[a], &missing).await;
            assert!(matches!(&r, Err(StoreError::No { code: Some(c), .. }) if c == "TRYCREATE"));
            assert_eq!(s.copies(), 3);
        });
    }

    #[test]
    fn copy_keeps_only_permanent_flags_of_the_destination() {
        block(async {
            let mut s = MemoryStore::new("t", Access::ReadWrite);
            s.add_folder("Strict");
            s.set_permanent_flags(
                "Strict",
                Some(PermanentFlags {
                    flags: FlagSet::from_raw(["\\Seen"]),
                    any_keyword: false,
                }),
            );
            let uid = s.add_message("INBOX", &["\\Seen", "Work"], DATE, b"x");
            s.open_folder(&FolderPath::inbox()).await.unwrap();
            s.copy(&[uid], &FolderPath::from_display("Strict"))
                .await
                .unwrap();
            assert_eq!(
                s.messages("Strict")[0].1.flags,
                FlagSet::from_raw(["\\Seen"])
            );
        });
    }

    #[test]
    fn copy_honours_injected_faults() {
        block(async {
            let mut s = MemoryStore::new("t", Access::ReadWrite);
            s.add_folder("Archive");
            let uid = s.add_message("INBOX", &[], DATE, b"x");
            let archive = FolderPath::from_display("Archive");
            s.open_folder(&FolderPath::inbox()).await.unwrap();

            s.fail_next(OpKind::Copy, Fault::No);
            assert!(matches!(
                s.copy(&[uid], &archive).await,
                Err(StoreError::No { .. })
            ));
            assert!(!s.is_dead());
            assert!(s.messages("Archive").is_empty());

            s.fail_next(OpKind::Copy, Fault::LostBefore);
            assert!(s
                .copy(&[uid], &archive)
                .await
                .unwrap_err()
                .is_connection_lost());
            assert!(s.messages("Archive").is_empty());
            // Dead: even an empty copy fails rather than answering "nothing".
            assert!(s.copy(&[], &archive).await.is_err());
            s.reconnect();

            s.open_folder(&FolderPath::inbox()).await.unwrap();
            s.fail_next(OpKind::Copy, Fault::LostAfter);
            assert!(s.copy(&[uid], &archive).await.is_err());
            assert_eq!(s.messages("Archive").len(), 1, "the copy happened");
            assert!(s.is_dead());
            s.reconnect();

            s.open_folder(&FolderPath::inbox()).await.unwrap();
            s.fail_next(OpKind::Copy, Fault::Timeout);
            assert!(matches!(
                s.copy(&[uid], &archive).await,
                Err(StoreError::Timeout { .. })
            ));
            assert_eq!(s.messages("Archive").len(), 1);
            assert_eq!(s.copies(), 1);
        });
    }

    #[test]
    fn reset_uidvalidity_renumbers_from_one() {
        let mut s = MemoryStore::new("t", Access::ReadWrite);
        for i in 0..4 {
            s.add_message("INBOX", &[], DATE, format!("m{i}").as_bytes());
        }
        s.remove_message("INBOX", 2);
        let old = s.uidvalidity("INBOX");
        let new = s.reset_uidvalidity("INBOX");
        assert_ne!(old, new);
        let msgs = s.messages("INBOX");
        let uids: Vec<u32> = msgs.iter().map(|(u, _)| *u).collect();
        assert_eq!(uids, [1, 2, 3]);
        assert_eq!(msgs[1].1.bytes, b"m2");
        assert_eq!(s.folder("INBOX").unwrap().uidnext, 4);
    }
}
