//! Opening, checking and updating the state file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use redb::{
    Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};

use super::instance_codec;
use super::lock::StateLock;
use super::schema::{
    Attempts, FidelityNote, FolderRecord, HeldRemoval, InstanceRecord, JournalEntry, Quarantined,
    Refused, ATTEMPTS, CONTENT_SHA1, FOLDERS, HELD, INSTANCES, JOURNAL, META, NOTES, QUARANTINE,
    REFUSED, REMOVAL_LOG, SCHEMA_VERSION,
};
use super::StateError;
use crate::model::{ContentSha1, Fingerprint};

/// An open state file, bound to one pair.
pub struct StateFile {
    db: Db,
    path: PathBuf,
    _lock: Option<StateLock>,
    /// A lazy commit is not on disk yet (see [`StateFile::flush`]).
    unflushed: std::sync::atomic::AtomicBool,
    /// Per folder being worked on, the instance changes committed since [`StateFile::track`]
    /// (see [`Tracked`]).
    tracked: std::sync::Mutex<HashMap<String, Vec<InstanceChange>>>,
}

/// Writable for the one process that syncs; read-only for `status`.
enum Db {
    Writable(Database),
    ReadOnly(ReadOnlyDatabase),
}

/// What a commit does to the folder's journal entry.
#[derive(Debug, Clone, Copy)]
pub enum JournalOp<'a> {
    Keep,
    Set(&'a JournalEntry),
    Clear,
}

/// One change to a folder's instances, applied atomically with others.
#[derive(Debug, Clone)]
pub enum InstanceChange {
    Put(u32, InstanceRecord),
    Delete(u32),
}

impl StateFile {
    /// Opens or creates the state file for `pair_id`. The directory is created 0700 and the
    /// file 0600. A file of another pair, of a newer schema, or that is not a redb file is
    /// refused without being changed: an existing file is checked through a read-only handle
    /// before it is opened for writing.
    pub fn open(path: &Path, pair_id: &str) -> Result<StateFile, StateError> {
        let io = |detail: String| StateError::Io {
            path: path.to_path_buf(),
            detail,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                create_private_dir(dir)
                    .map_err(|e| io(format!("cannot create directory {}: {e}", dir.display())))?;
            }
        }
        if path.is_dir() {
            return Err(io("is a directory, not a file".into()));
        }
        let lock = StateLock::acquire(path)?;
        let existed = path.exists();
        if existed {
            if path.is_dir() {
                return Err(io("is a directory, not a file".into()));
            }
            std::fs::File::open(path).map_err(|e| io(e.to_string()))?;
            // A file that needs redb's repair cannot be opened read-only; the writable open
            // below repairs it and the check runs there.
            if let Ok(ro) = ReadOnlyDatabase::open(path) {
                let txn = ro.begin_read().map_err(|e| corrupt(path, e))?;
                check_meta(path, &txn, pair_id)?;
            }
        }
        // A small page cache: the state is read in range scans, once per folder and pass, and
        // the process must stay small next to a live mail server (redb's default is 1 GiB).
        let db = Database::builder()
            .set_cache_size(16 << 20)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StateError::Locked {
                    path: path.to_path_buf(),
                    holder: "another process".into(),
                },
                redb::DatabaseError::Storage(redb::StorageError::Io(e))
                    if e.kind() != std::io::ErrorKind::InvalidData =>
                {
                    io(e.to_string())
                }
                e => corrupt(path, e),
            })?;
        restrict_file(path).map_err(|e| io(format!("cannot set mode 0600: {e}")))?;
        let state = StateFile {
            unflushed: std::sync::atomic::AtomicBool::new(false),
            tracked: Default::default(),
            db: Db::Writable(db),
            path: path.to_path_buf(),
            _lock: Some(lock),
        };
        if existed {
            let txn = state.begin_read()?;
            let found = check_meta(path, &txn, pair_id)?;
            drop(txn);
            if found < SCHEMA_VERSION {
                state.set_meta("schema_version", &SCHEMA_VERSION.to_le_bytes())?;
            }
        } else {
            state.init(pair_id)?;
        }
        Ok(state)
    }

    /// Opens an existing state file of any pair for reading only (`status`): no lock, no
    /// writes. Fails while a sync holds the file.
    pub fn open_read_only(path: &Path) -> Result<StateFile, StateError> {
        if !path.is_file() {
            return Err(StateError::Io {
                path: path.to_path_buf(),
                detail: "no such state file".into(),
            });
        }
        let db = ReadOnlyDatabase::open(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                let holder = std::fs::read_to_string(lock_path(path))
                    .map(|pid| format!("mailreplica process {}", pid.trim()))
                    .unwrap_or_else(|_| "another process".into());
                StateError::Locked {
                    path: path.to_path_buf(),
                    holder,
                }
            }
            redb::DatabaseError::Storage(redb::StorageError::Io(e))
                if e.kind() != std::io::ErrorKind::InvalidData =>
            {
                StateError::Io {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                }
            }
            e => corrupt(path, e),
        })?;
        let state = StateFile {
            unflushed: std::sync::atomic::AtomicBool::new(false),
            tracked: Default::default(),
            db: Db::ReadOnly(db),
            path: path.to_path_buf(),
            _lock: None,
        };
        state
            .begin_read()?
            .open_table(META)
            .map_err(|e| corrupt(path, format!("not a mailreplica state file: {e}")))?;
        Ok(state)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a table for reading; `None` when a file written by an older version lacks it.
    fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        txn: &ReadTransaction,
        def: TableDefinition<K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, StateError> {
        match txn.open_table(def) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.corrupt(e)),
        }
    }

    /// The records of a table keyed by (folder, source UID): of one folder, or of all.
    fn keyed<T: serde::de::DeserializeOwned>(
        &self,
        def: TableDefinition<(&str, u32), &[u8]>,
        folder: Option<&str>,
    ) -> Result<BTreeMap<(String, u32), T>, StateError> {
        let txn = self.begin_read()?;
        let Some(table) = self.read_table(&txn, def)? else {
            return Ok(BTreeMap::new());
        };
        let range = match folder {
            Some(f) => table.range((f, 0u32)..=(f, u32::MAX)),
            None => table.range::<(&str, u32)>(..),
        };
        let mut out = BTreeMap::new();
        for entry in range.map_err(|e| self.corrupt(e))? {
            let (k, v) = entry.map_err(|e| self.corrupt(e))?;
            let (f, uid) = k.value();
            out.insert((f.to_string(), uid), self.decode(v.value())?);
        }
        Ok(out)
    }

    /// Decodes a stored JSON record.
    fn decode<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, StateError> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(e))
    }

    fn begin_read(&self) -> Result<ReadTransaction, StateError> {
        match &self.db {
            Db::Writable(db) => db.begin_read(),
            Db::ReadOnly(db) => db.begin_read(),
        }
        .map_err(|e| self.corrupt(e))
    }

    /// A write transaction that is durable only when `durable`: the others reach the disk with
    /// the next durable one (or [`StateFile::flush`]). Safe because losing a suffix of them in
    /// a crash is a crash at an earlier point: every server-side effect they record is resolved
    /// again by the next pass (journal entries, which must be on disk before the first APPEND,
    /// are always durable). Saves an fsync per commit: a pass commits per batch and per folder.
    fn begin_lazy_write(&self, durable: bool) -> Result<redb::WriteTransaction, StateError> {
        let mut txn = self.begin_write()?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| self.corrupt(e))?;
            self.unflushed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(txn)
    }

    /// Makes every earlier commit durable (one fsync, only when a lazy commit is pending).
    pub fn flush(&self) -> Result<(), StateError> {
        if !self
            .unflushed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let txn = self.begin_write()?;
        txn.commit().map_err(|e| self.corrupt(e))
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, StateError> {
        match &self.db {
            Db::Writable(db) => db.begin_write().map_err(|e| self.corrupt(e)),
            Db::ReadOnly(_) => Err(StateError::Io {
                path: self.path.clone(),
                detail: "opened read-only (a mailreplica bug)".into(),
            }),
        }
    }

    fn corrupt(&self, detail: impl ToString) -> StateError {
        corrupt(&self.path, detail)
    }

    fn init(&self, pair_id: &str) -> Result<(), StateError> {
        let txn = self.begin_write()?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.corrupt(e))?;
            meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())
                .map_err(|e| self.corrupt(e))?;
            meta.insert("pair_id", pair_id.as_bytes())
                .map_err(|e| self.corrupt(e))?;
            txn.open_table(FOLDERS).map_err(|e| self.corrupt(e))?;
            txn.open_table(INSTANCES).map_err(|e| self.corrupt(e))?;
            txn.open_table(JOURNAL).map_err(|e| self.corrupt(e))?;
            txn.open_table(ATTEMPTS).map_err(|e| self.corrupt(e))?;
            txn.open_table(HELD).map_err(|e| self.corrupt(e))?;
            txn.open_table(REMOVAL_LOG).map_err(|e| self.corrupt(e))?;
            txn.open_table(QUARANTINE).map_err(|e| self.corrupt(e))?;
        }
        txn.commit().map_err(|e| self.corrupt(e))
    }

    pub fn folder(&self, folder: &str) -> Result<Option<FolderRecord>, StateError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(FOLDERS).map_err(|e| self.corrupt(e))?;
        match table.get(folder).map_err(|e| self.corrupt(e))? {
            None => Ok(None),
            Some(v) => Ok(Some(self.decode(v.value())?)),
        }
    }

    /// Every folder the state knows, by path.
    pub fn folders(&self) -> Result<BTreeMap<String, FolderRecord>, StateError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(FOLDERS).map_err(|e| self.corrupt(e))?;
        let mut out = BTreeMap::new();
        for entry in table.iter().map_err(|e| self.corrupt(e))? {
            let (k, v) = entry.map_err(|e| self.corrupt(e))?;
            out.insert(k.value().to_string(), self.decode(v.value())?);
        }
        Ok(out)
    }

    /// The instances of one folder, by source UID (a range scan).
    pub fn instances(&self, folder: &str) -> Result<BTreeMap<u32, InstanceRecord>, StateError> {
        folder_instances(&self.begin_read()?, &self.path, folder)
    }

    /// Every instance of every folder, as (folder, source UID, record).
    /// A consistent view of every instance as the state holds them now, to be read on
    /// another thread ([`InstancesSnapshot::placed`]) while this one goes on.
    pub fn instances_snapshot(&self) -> Result<InstancesSnapshot, StateError> {
        Ok(InstancesSnapshot {
            txn: self.begin_read()?,
            path: self.path.clone(),
        })
    }

    pub fn all_instances(&self) -> Result<Vec<(String, u32, InstanceRecord)>, StateError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(INSTANCES).map_err(|e| self.corrupt(e))?;
        let mut out = Vec::new();
        let mut decoder = instance_codec::Decoder::default();
        for entry in table.iter().map_err(|e| self.corrupt(e))? {
            let (k, v) = entry.map_err(|e| self.corrupt(e))?;
            let (folder, uid) = k.value();
            let rec = decoder.decode(v.value()).map_err(|e| self.corrupt(e))?;
            out.push((folder.to_string(), uid, rec));
        }
        Ok(out)
    }

    /// Applies changes to a folder (and optionally its folder record) in one durable commit.
    pub fn commit(
        &self,
        folder: &str,
        record: Option<&FolderRecord>,
        changes: &[InstanceChange],
    ) -> Result<(), StateError> {
        self.commit_with(folder, record, changes, JournalOp::Keep)
    }

    /// Like [`StateFile::commit`], and in the same durable transaction sets or clears the
    /// folder's journal entry. Instances put here also forget their failed attempts.
    pub fn commit_with(
        &self,
        folder: &str,
        record: Option<&FolderRecord>,
        changes: &[InstanceChange],
        journal: JournalOp<'_>,
    ) -> Result<(), StateError> {
        let txn = self.begin_lazy_write(matches!(journal, JournalOp::Set(_)))?;
        {
            let mut attempts = txn.open_table(ATTEMPTS).map_err(|e| self.corrupt(e))?;
            for change in changes {
                if let InstanceChange::Put(uid, _) = change {
                    attempts
                        .remove((folder, *uid))
                        .map_err(|e| self.corrupt(e))?;
                }
            }
            let mut table = txn.open_table(JOURNAL).map_err(|e| self.corrupt(e))?;
            match journal {
                JournalOp::Keep => {}
                JournalOp::Set(entry) => {
                    let bytes = serde_json::to_vec(entry).map_err(|e| self.corrupt(e))?;
                    table
                        .insert(folder, bytes.as_slice())
                        .map_err(|e| self.corrupt(e))?;
                }
                JournalOp::Clear => {
                    table.remove(folder).map_err(|e| self.corrupt(e))?;
                }
            }
        }
        {
            let mut instances = txn.open_table(INSTANCES).map_err(|e| self.corrupt(e))?;
            for change in changes {
                match change {
                    InstanceChange::Put(uid, rec) => {
                        let bytes = instance_codec::encode(rec);
                        instances
                            .insert((folder, *uid), bytes.as_slice())
                            .map_err(|e| self.corrupt(e))?;
                    }
                    InstanceChange::Delete(uid) => {
                        instances
                            .remove((folder, *uid))
                            .map_err(|e| self.corrupt(e))?;
                    }
                }
            }
            // A removed instance takes its fidelity note along.
            if changes
                .iter()
                .any(|c| matches!(c, InstanceChange::Delete(_)))
            {
                let mut notes = txn.open_table(NOTES).map_err(|e| self.corrupt(e))?;
                for change in changes {
                    if let InstanceChange::Delete(uid) = change {
                        notes.remove((folder, *uid)).map_err(|e| self.corrupt(e))?;
                    }
                }
            }
            if let Some(record) = record {
                let mut folders = txn.open_table(FOLDERS).map_err(|e| self.corrupt(e))?;
                let bytes = serde_json::to_vec(record).map_err(|e| self.corrupt(e))?;
                folders
                    .insert(folder, bytes.as_slice())
                    .map_err(|e| self.corrupt(e))?;
            }
        }
        txn.commit().map_err(|e| self.corrupt(e))?;
        if let Some(log) = self.tracked_log().get_mut(folder) {
            log.extend(changes.iter().cloned());
        }
        Ok(())
    }

    fn tracked_log(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<InstanceChange>>> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts recording the instance changes committed to `folder`, so that a caller holding
    /// the folder's instances can bring them up to date without reading them all again
    /// ([`Tracked::apply`]). Recording stops when the guard is dropped.
    pub fn track(&self, folder: &str) -> Tracked<'_> {
        self.tracked_log().insert(folder.to_string(), Vec::new());
        Tracked {
            state: self,
            folder: folder.to_string(),
        }
    }

    /// The batch under way in a folder, if a previous pass stopped inside one.
    pub fn journal(&self, folder: &str) -> Result<Option<JournalEntry>, StateError> {
        let txn = self.begin_read()?;
        let Some(table) = self.read_table(&txn, JOURNAL)? else {
            return Ok(None);
        };
        match table.get(folder).map_err(|e| self.corrupt(e))? {
            None => Ok(None),
            Some(v) => Ok(Some(self.decode(v.value())?)),
        }
    }

    /// Failed upload attempts of a folder's source messages.
    pub fn attempts(&self, folder: &str) -> Result<BTreeMap<u32, Attempts>, StateError> {
        Ok(self
            .keyed(ATTEMPTS, Some(folder))?
            .into_iter()
            .map(|((_, uid), a)| (uid, a))
            .collect())
    }

    /// Counts one more failed upload for each source UID, and clears the folder's journal, in one
    /// durable transaction.
    pub fn record_failed_batch(
        &self,
        folder: &str,
        uids: &[u32],
        error: &str,
    ) -> Result<(), StateError> {
        let mut known = self.attempts(folder)?;
        let txn = self.begin_lazy_write(true)?;
        {
            let mut table = txn.open_table(ATTEMPTS).map_err(|e| self.corrupt(e))?;
            for uid in uids {
                let mut a = known.remove(uid).unwrap_or(Attempts {
                    count: 0,
                    last_error: String::new(),
                });
                a.count += 1;
                a.last_error = error.to_string();
                let bytes = serde_json::to_vec(&a).map_err(|e| self.corrupt(e))?;
                table
                    .insert((folder, *uid), bytes.as_slice())
                    .map_err(|e| self.corrupt(e))?;
            }
            let mut journal = txn.open_table(JOURNAL).map_err(|e| self.corrupt(e))?;
            journal.remove(folder).map_err(|e| self.corrupt(e))?;
        }
        txn.commit().map_err(|e| self.corrupt(e))
    }

    /// Forgets every instance of a folder and its journal (its UIDs no longer mean anything).
    pub fn clear_folder(&self, folder: &str) -> Result<(), StateError> {
        let uids: Vec<u32> = self.instances(folder)?.into_keys().collect();
        let changes: Vec<InstanceChange> = uids.into_iter().map(InstanceChange::Delete).collect();
        self.commit_with(folder, None, &changes, JournalOp::Clear)
    }

    /// The folder was renamed: everything the state holds under `old` moves to `new`, in one
    /// transaction (nothing under `new` is expected; what is there is overwritten).
    pub fn rename_folder(&self, old: &str, new: &str) -> Result<(), StateError> {
        self.move_folder(old, Some(new))
    }

    /// Forgets a folder entirely: its record, instances, journal, attempts, held removals and
    /// quarantine.
    pub fn forget_folder(&self, folder: &str) -> Result<(), StateError> {
        self.move_folder(folder, None)
    }

    fn move_folder(&self, old: &str, new: Option<&str>) -> Result<(), StateError> {
        // Whole-folder changes are not recorded: a tracked copy is read again instead.
        {
            let mut log = self.tracked_log();
            log.remove(old);
            if let Some(new) = new {
                log.remove(new);
            }
        }
        let txn = self.begin_lazy_write(false)?;
        for def in [INSTANCES, ATTEMPTS, HELD, QUARANTINE, REFUSED, NOTES] {
            let mut table = txn.open_table(def).map_err(|e| self.corrupt(e))?;
            let mut moved: Vec<(u32, Vec<u8>)> = Vec::new();
            for entry in table
                .range((old, 0u32)..=(old, u32::MAX))
                .map_err(|e| self.corrupt(e))?
            {
                let (k, v) = entry.map_err(|e| self.corrupt(e))?;
                moved.push((k.value().1, v.value().to_vec()));
            }
            for (uid, bytes) in &moved {
                table.remove((old, *uid)).map_err(|e| self.corrupt(e))?;
                if let Some(new) = new {
                    table
                        .insert((new, *uid), bytes.as_slice())
                        .map_err(|e| self.corrupt(e))?;
                }
            }
        }
        for def in [FOLDERS, JOURNAL] {
            let mut table = txn.open_table(def).map_err(|e| self.corrupt(e))?;
            let value = table
                .remove(old)
                .map_err(|e| self.corrupt(e))?
                .map(|v| v.value().to_vec());
            if let (Some(new), Some(bytes)) = (new, value) {
                table
                    .insert(new, bytes.as_slice())
                    .map_err(|e| self.corrupt(e))?;
            }
        }
        txn.commit().map_err(|e| self.corrupt(e))
    }

    /// Throws away everything synced (folders, instances, journal, attempts), keeping the pair
    /// id: the next pass rebuilds the mapping by identity.
    pub fn reset(&self) -> Result<(), StateError> {
        self.tracked_log().clear();
        let txn = self.begin_write()?;
        txn.delete_table(FOLDERS).map_err(|e| self.corrupt(e))?;
        txn.delete_table(INSTANCES).map_err(|e| self.corrupt(e))?;
        txn.delete_table(JOURNAL).map_err(|e| self.corrupt(e))?;
        txn.delete_table(ATTEMPTS).map_err(|e| self.corrupt(e))?;
        txn.delete_table(HELD).map_err(|e| self.corrupt(e))?;
        txn.delete_table(QUARANTINE).map_err(|e| self.corrupt(e))?;
        txn.delete_table(REFUSED).map_err(|e| self.corrupt(e))?;
        txn.delete_table(NOTES).map_err(|e| self.corrupt(e))?;
        txn.open_table(FOLDERS).map_err(|e| self.corrupt(e))?;
        txn.open_table(INSTANCES).map_err(|e| self.corrupt(e))?;
        txn.open_table(JOURNAL).map_err(|e| self.corrupt(e))?;
        txn.open_table(ATTEMPTS).map_err(|e| self.corrupt(e))?;
        txn.commit().map_err(|e| self.corrupt(e))
    }

    /// Every held removal, by (folder, source UID).
    pub fn held(&self) -> Result<BTreeMap<(String, u32), HeldRemoval>, StateError> {
        self.keyed(HELD, None)
    }

    /// Replaces the held removals of a folder.
    pub fn set_held(&self, folder: &str, held: &[(u32, HeldRemoval)]) -> Result<(), StateError> {
        let txn = self.begin_lazy_write(false)?;
        {
            let mut table = txn.open_table(HELD).map_err(|e| self.corrupt(e))?;
            let old: Vec<u32> = table
                .range((folder, 0u32)..=(folder, u32::MAX))
                .map_err(|e| self.corrupt(e))?
                .filter_map(|e| e.ok().map(|(k, _)| k.value().1))
                .collect();
            for uid in old {
                table.remove((folder, uid)).map_err(|e| self.corrupt(e))?;
            }
            for (uid, h) in held {
                let bytes = serde_json::to_vec(h).map_err(|e| self.corrupt(e))?;
                table
                    .insert((folder, *uid), bytes.as_slice())
                    .map_err(|e| self.corrupt(e))?;
            }
        }
        txn.commit().map_err(|e| self.corrupt(e))
    }

    /// Marks held removals released (all, or one folder's); the next pass applies them.
    pub fn release(&self, folder: Option<&str>) -> Result<usize, StateError> {
        let held = self.held()?;
        let txn = self.begin_write()?;
        let mut n = 0;
        {
            let mut table = txn.open_table(HELD).map_err(|e| self.corrupt(e))?;
            for ((f, uid), mut h) in held {
                if folder.is_some_and(|want| want != f) || h.released {
                    continue;
                }
                h.released = true;
                n += 1;
                let bytes = serde_json::to_vec(&h).map_err(|e| self.corrupt(e))?;
                table
                    .insert((f.as_str(), uid), bytes.as_slice())
                    .map_err(|e| self.corrupt(e))?;
            }
        }
        txn.commit().map_err(|e| self.corrupt(e))?;
        Ok(n)
    }

    /// Records `count` removals applied at `now_ms`.
    pub fn log_removals(&self, now_ms: u64, count: u64) -> Result<(), StateError> {
        let txn = self.begin_lazy_write(false)?;
        {
            let mut table = txn.open_table(REMOVAL_LOG).map_err(|e| self.corrupt(e))?;
            let before = table
                .get(now_ms)
                .map_err(|e| self.corrupt(e))?
                .map(|v| v.value())
                .unwrap_or(0);
            table
                .insert(now_ms, before + count)
                .map_err(|e| self.corrupt(e))?;
        }
        txn.commit().map_err(|e| self.corrupt(e))
    }

    /// Removals applied in the 24 hours before `now_ms`.
    pub fn removed_since(&self, since_ms: u64) -> Result<u64, StateError> {
        let txn = self.begin_read()?;
        let Some(table) = self.read_table(&txn, REMOVAL_LOG)? else {
            return Ok(0);
        };
        let mut sum = 0;
        for entry in table.range(since_ms..).map_err(|e| self.corrupt(e))? {
            let (_, v) = entry.map_err(|e| self.corrupt(e))?;
            sum += v.value();
        }
        Ok(sum)
    }

    /// Quarantined messages: of one folder, or of all (by (folder, source UID)).
    pub fn quarantine(
        &self,
        folder: Option<&str>,
    ) -> Result<BTreeMap<(String, u32), Quarantined>, StateError> {
        self.keyed(QUARANTINE, folder)
    }

    /// Records (or updates) quarantined messages and removes released ones, in one commit.
    pub fn update_quarantine(
        &self,
        folder: &str,
        put: &[(u32, Quarantined)],
        remove: &[u32],
    ) -> Result<(), StateError> {
        self.update_keyed(QUARANTINE, folder, put, remove)
    }

    /// Puts and removes records of a table keyed by (folder, source UID), in one lazy commit.
    fn update_keyed<T: serde::Serialize>(
        &self,
        def: TableDefinition<(&str, u32), &[u8]>,
        folder: &str,
        put: &[(u32, T)],
        remove: &[u32],
    ) -> Result<(), StateError> {
        if put.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let txn = self.begin_lazy_write(false)?;
        {
            let mut table = txn.open_table(def).map_err(|e| self.corrupt(e))?;
            for uid in remove {
                table.remove((folder, *uid)).map_err(|e| self.corrupt(e))?;
            }
            for (uid, record) in put {
                let bytes = serde_json::to_vec(record).map_err(|e| self.corrupt(e))?;
                table
                    .insert((folder, *uid), bytes.as_slice())
                    .map_err(|e| self.corrupt(e))?;
            }
        }
        txn.commit().map_err(|e| self.corrupt(e))
    }

    /// Messages the target refused, by (folder, source UID); one folder's or all.
    pub fn refused(
        &self,
        folder: Option<&str>,
    ) -> Result<BTreeMap<(String, u32), Refused>, StateError> {
        self.keyed(REFUSED, folder)
    }

    /// Records refusals and forgets others (placed since, or gone from the source).
    pub fn update_refused(
        &self,
        folder: &str,
        put: &[(u32, Refused)],
        remove: &[u32],
    ) -> Result<(), StateError> {
        self.update_keyed(REFUSED, folder, put, remove)
    }

    /// Fidelity notes, by (folder, source UID); one folder's or all.
    pub fn notes(
        &self,
        folder: Option<&str>,
    ) -> Result<BTreeMap<(String, u32), FidelityNote>, StateError> {
        self.keyed(NOTES, folder)
    }

    /// Records fidelity notes of a folder's messages.
    pub fn add_notes(&self, folder: &str, put: &[(u32, FidelityNote)]) -> Result<(), StateError> {
        self.update_keyed(NOTES, folder, put, &[])
    }

    /// Folders with an unfinished upload batch.
    pub fn journaled_folders(&self) -> Result<Vec<String>, StateError> {
        let txn = self.begin_read()?;
        let Some(table) = self.read_table(&txn, JOURNAL)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.corrupt(e))? {
            out.push(entry.map_err(|e| self.corrupt(e))?.0.value().to_string());
        }
        Ok(out)
    }

    /// Failed uploads of every folder, by (folder, source UID).
    pub fn all_attempts(&self) -> Result<BTreeMap<(String, u32), Attempts>, StateError> {
        self.keyed(ATTEMPTS, None)
    }

    /// The pair id this file belongs to.
    pub fn pair_id(&self) -> Result<String, StateError> {
        let raw = self.meta("pair_id")?.unwrap_or_default();
        String::from_utf8(raw).map_err(|e| self.corrupt(e))
    }

    /// Reads a small value from the meta table.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(META).map_err(|e| self.corrupt(e))?;
        Ok(table
            .get(key)
            .map_err(|e| self.corrupt(e))?
            .map(|v| v.value().to_vec()))
    }

    /// Why the pair is frozen, if it is (see `engine::Frozen`); the raw JSON.
    pub fn frozen(&self) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.meta("frozen")?.filter(|v| !v.is_empty()))
    }

    /// Freezes the pair with this reason (JSON), or thaws it with `None`.
    pub fn set_frozen(&self, reason: Option<&[u8]>) -> Result<(), StateError> {
        self.set_meta("frozen", reason.unwrap_or_default())
    }

    /// Records the SHA-1 of contents (see [`CONTENT_SHA1`]); a lazy write, flushed with the
    /// pass (a lost entry only means reading a body again when rebuilding).
    pub fn record_content_sha1(
        &self,
        entries: &[(Fingerprint, ContentSha1)],
    ) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        let txn = self.begin_lazy_write(false)?;
        {
            let mut table = txn.open_table(CONTENT_SHA1).map_err(|e| self.corrupt(e))?;
            for (fp, sha) in entries {
                table
                    .insert(fp.0.as_slice(), sha.0.as_slice())
                    .map_err(|e| self.corrupt(e))?;
            }
        }
        txn.commit().map_err(|e| self.corrupt(e))
    }

    /// The SHA-1 recorded for each of these contents, where one was.
    pub fn content_sha1(
        &self,
        fingerprints: impl IntoIterator<Item = Fingerprint>,
    ) -> Result<HashMap<Fingerprint, ContentSha1>, StateError> {
        let txn = self.begin_read()?;
        let Some(table) = self.read_table(&txn, CONTENT_SHA1)? else {
            return Ok(HashMap::new());
        };
        let mut out = HashMap::new();
        for fp in fingerprints {
            if let Some(v) = table.get(fp.0.as_slice()).map_err(|e| self.corrupt(e))? {
                if let Ok(bytes) = <[u8; 20]>::try_from(v.value()) {
                    out.insert(fp, ContentSha1(bytes));
                }
            }
        }
        Ok(out)
    }

    /// Stores a small value in the meta table (e.g. the last pass summary).
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        let txn = self.begin_write()?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.corrupt(e))?;
            meta.insert(key, value).map_err(|e| self.corrupt(e))?;
        }
        txn.commit().map_err(|e| self.corrupt(e))
    }
}

impl Drop for StateFile {
    /// A lazy commit not yet flushed is made durable on the way out (errors cannot be reported
    /// here; the engine flushes at the end of every pass, so this is a safety net).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// `<state>.lock`, beside the state file.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn corrupt(path: &Path, detail: impl ToString) -> StateError {
    StateError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// Checks that a state file is ours: a known schema version and this pair's id. Returns the
/// file's schema version.
fn check_meta(path: &Path, txn: &ReadTransaction, pair_id: &str) -> Result<u32, StateError> {
    let meta = txn
        .open_table(META)
        .map_err(|e| corrupt(path, format!("no meta table: {e}")))?;
    let version = meta
        .get("schema_version")
        .map_err(|e| corrupt(path, e))?
        .ok_or_else(|| corrupt(path, "no schema version"))?;
    let found = u32::from_le_bytes(
        version
            .value()
            .try_into()
            .map_err(|_| corrupt(path, "bad schema version"))?,
    );
    if found > SCHEMA_VERSION {
        return Err(StateError::NewerVersion {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let stored = meta
        .get("pair_id")
        .map_err(|e| corrupt(path, e))?
        .map(|v| v.value().to_vec());
    let stored = String::from_utf8(stored.unwrap_or_default()).map_err(|e| corrupt(path, e))?;
    if stored != pair_id {
        return Err(StateError::ForeignPair {
            path: path.to_path_buf(),
            found: stored,
            expected: pair_id.to_string(),
        });
    }
    Ok(found)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(unix)]
fn restrict_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Recording of one folder's instance changes (see [`StateFile::track`]).
pub struct Tracked<'a> {
    state: &'a StateFile,
    folder: String,
}

impl Tracked<'_> {
    /// `instances` (the folder's instances when tracking started) with every change committed
    /// since; read again from the file when the record is incomplete (the folder was renamed,
    /// forgotten or the state reset meanwhile).
    pub fn apply(
        self,
        mut instances: BTreeMap<u32, InstanceRecord>,
    ) -> Result<BTreeMap<u32, InstanceRecord>, StateError> {
        let log = self.state.tracked_log().remove(&self.folder);
        let Some(log) = log else {
            return self.state.instances(&self.folder);
        };
        for change in log {
            match change {
                InstanceChange::Put(uid, rec) => {
                    instances.insert(uid, rec);
                }
                InstanceChange::Delete(uid) => {
                    instances.remove(&uid);
                }
            }
        }
        Ok(instances)
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.state.tracked_log().remove(&self.folder);
    }
}

/// A read transaction over the instances that can move to another thread.
pub struct InstancesSnapshot {
    txn: ReadTransaction,
    path: PathBuf,
}

/// Every placed content -> its target copies: (folder, target UID, INTERNALDATE instant). Read
/// from the state as one vector sorted by content, with no allocation or hashing per instance
/// (20 000 instances: 6-7 ms warm against 7-10 ms for a hash map of vectors; a cold read is
/// mostly redb's page reads either way); copies added afterwards go to a small map beside it.
/// A folder's name is one shared string.
#[derive(Debug, Default)]
pub struct ContentMap {
    /// (content, index in `folders`, target UID, INTERNALDATE instant), sorted.
    sorted: Vec<(Fingerprint, u32, u32, i64)>,
    folders: Vec<std::sync::Arc<str>>,
    added: HashMap<Fingerprint, Vec<(std::sync::Arc<str>, u32, i64)>>,
}

impl ContentMap {
    /// A copy of `fp` placed since the map was read.
    pub fn add(&mut self, fp: Fingerprint, folder: std::sync::Arc<str>, uid: u32, date: i64) {
        self.added.entry(fp).or_default().push((folder, uid, date));
    }

    /// The target copies of `fp`: those read from the state, in the state's order (folder,
    /// then source UID), then those added.
    pub fn copies<'a>(
        &'a self,
        fp: &'a Fingerprint,
    ) -> impl Iterator<Item = (&'a std::sync::Arc<str>, u32, i64)> + 'a {
        let start = self.sorted.partition_point(|e| e.0 < *fp);
        let read = self.sorted[start..]
            .iter()
            .take_while(move |e| e.0 == *fp)
            .map(|e| (&self.folders[e.1 as usize], e.2, e.3));
        let added = self
            .added
            .get(fp)
            .into_iter()
            .flatten()
            .map(|(f, uid, date)| (f, *uid, *date));
        read.chain(added)
    }

    /// How many target copies it knows.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.added.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A folder's instances by source UID, as `txn` sees them.
fn folder_instances(
    txn: &ReadTransaction,
    path: &Path,
    folder: &str,
) -> Result<BTreeMap<u32, InstanceRecord>, StateError> {
    let bad = |e: &dyn std::fmt::Display| corrupt(path, e.to_string());
    let table = txn.open_table(INSTANCES).map_err(|e| bad(&e))?;
    let mut out = BTreeMap::new();
    let mut decoder = instance_codec::Decoder::default();
    for entry in table
        .range((folder, 0u32)..=(folder, u32::MAX))
        .map_err(|e| bad(&e))?
    {
        let (k, v) = entry.map_err(|e| bad(&e))?;
        let rec = decoder.decode(v.value()).map_err(|e| bad(&e))?;
        out.insert(k.value().1, rec);
    }
    Ok(out)
}

impl InstancesSnapshot {
    /// One folder's instances by source UID ([`StateFile::instances`], on another thread).
    pub fn folder(self, folder: &str) -> Result<BTreeMap<u32, InstanceRecord>, StateError> {
        folder_instances(&self.txn, &self.path, folder)
    }

    /// Every instance with a fingerprint and a target UID, by content (see [`ContentMap`]).
    pub fn content_map(self) -> Result<ContentMap, StateError> {
        let bad = |e: &dyn std::fmt::Display| corrupt(&self.path, e.to_string());
        let table = self.txn.open_table(INSTANCES).map_err(|e| bad(&e))?;
        let mut out = ContentMap::default();
        for entry in table.iter().map_err(|e| bad(&e))? {
            let (k, v) = entry.map_err(|e| bad(&e))?;
            let Some((fp, tuid, date)) =
                instance_codec::decode_placed(v.value()).map_err(|e| bad(&e))?
            else {
                continue;
            };
            let name = k.value().0;
            if out.folders.last().is_none_or(|f| &**f != name) {
                out.folders.push(name.into());
            }
            let folder = (out.folders.len() - 1) as u32;
            out.sorted.push((fp, folder, tuid, date));
        }
        // Stable: the copies of one content stay in the table's (folder, source UID) order.
        out.sorted.sort_by_key(|e| e.0);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fingerprint, FlagSet, InternalDate};

    fn rec(uid: u32) -> InstanceRecord {
        InstanceRecord {
            fingerprint: Some(Fingerprint::of(format!("m{uid}").as_bytes())),
            ordinal: 0,
            target_uid: Some(uid + 100),
            flags: FlagSet::from_raw(["\\Seen"]),
            internaldate: InternalDate::parse("01-Jan-2024 00:00:00 +0000").unwrap(),
            size: 10,
        }
    }

    /// Every placed instance is found by its content, copies of one content in the table's
    /// order; unplaced instances are not; copies added later come after.
    #[test]
    fn the_content_map_finds_every_target_copy_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateFile::open(&dir.path().join("s.redb"), "pair").unwrap();
        let record = FolderRecord::default();
        let same = |uid: u32, tuid: u32| InstanceRecord {
            fingerprint: Some(Fingerprint::of(b"shared")),
            target_uid: Some(tuid),
            ..rec(uid)
        };
        let unplaced = InstanceRecord {
            target_uid: None,
            ..rec(9)
        };
        let puts = |v: Vec<(u32, InstanceRecord)>| {
            v.into_iter()
                .map(|(u, r)| InstanceChange::Put(u, r))
                .collect::<Vec<_>>()
        };
        let b = puts(vec![(1, same(1, 50)), (2, rec(2)), (3, same(3, 40))]);
        s.commit("B", Some(&record), &b).unwrap();
        let a = puts(vec![(7, same(7, 70)), (8, rec(8)), (9, unplaced)]);
        s.commit("A", Some(&record), &a).unwrap();
        let mut map = s.instances_snapshot().unwrap().content_map().unwrap();
        assert_eq!(map.len(), 5);
        let shared = Fingerprint::of(b"shared");
        let copies = |m: &ContentMap, fp: &Fingerprint| -> Vec<(String, u32)> {
            m.copies(fp).map(|(f, u, _)| (f.to_string(), u)).collect()
        };
        let own = |f: &str, u: u32| (f.to_string(), u);
        assert_eq!(
            copies(&map, &shared),
            vec![own("A", 70), own("B", 50), own("B", 40)]
        );
        assert_eq!(
            copies(&map, &rec(2).fingerprint.unwrap()),
            vec![own("B", 102)]
        );
        assert_eq!(
            copies(&map, &rec(8).fingerprint.unwrap()),
            vec![own("A", 108)]
        );
        assert!(copies(&map, &rec(9).fingerprint.unwrap()).is_empty());
        assert!(copies(&map, &Fingerprint::of(b"nowhere")).is_empty());
        map.add(shared, "C".into(), 5, 0);
        assert_eq!(copies(&map, &shared).last(), Some(&own("C", 5)));
        assert_eq!(map.len(), 6);
    }

    #[test]
    fn a_renamed_folder_keeps_everything_and_a_forgotten_one_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateFile::open(&dir.path().join("s.redb"), "pair").unwrap();
        let record = FolderRecord {
            source_uidvalidity: 3,
            ..FolderRecord::default()
        };
        s.commit("Old", Some(&record), &[InstanceChange::Put(1, rec(1))])
            .unwrap();
        s.commit("Other", Some(&record), &[InstanceChange::Put(2, rec(2))])
            .unwrap();
        s.rename_folder("Old", "New").unwrap();
        assert!(s.folder("Old").unwrap().is_none());
        assert_eq!(s.folder("New").unwrap(), Some(record.clone()));
        assert!(s.instances("Old").unwrap().is_empty());
        assert_eq!(s.instances("New").unwrap().get(&1), Some(&rec(1)));
        s.forget_folder("New").unwrap();
        assert!(s.folder("New").unwrap().is_none());
        assert!(s.instances("New").unwrap().is_empty());
        assert_eq!(s.instances("Other").unwrap().len(), 1);
    }

    #[test]
    fn round_trip_and_range_scan_per_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.redb");
        let s = StateFile::open(&path, "pair-a").unwrap();
        let fr = FolderRecord {
            source_uidvalidity: 7,
            target_uidvalidity: Some(9),
            ..FolderRecord::default()
        };
        s.commit(
            "INBOX",
            Some(&fr),
            &[
                InstanceChange::Put(1, rec(1)),
                InstanceChange::Put(2, rec(2)),
            ],
        )
        .unwrap();
        s.commit("INBOX/Sub", None, &[InstanceChange::Put(1, rec(5))])
            .unwrap();
        assert_eq!(s.instances("INBOX").unwrap().len(), 2);
        assert_eq!(s.instances("INBOX/Sub").unwrap()[&1], rec(5));
        assert_eq!(s.folder("INBOX").unwrap(), Some(fr));
        s.commit("INBOX", None, &[InstanceChange::Delete(1)])
            .unwrap();
        assert_eq!(
            s.instances("INBOX")
                .unwrap()
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            vec![2]
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }

    /// A version 1 file (JSON records) is read as it is, marked version 2 when opened for
    /// writing, and holds both forms side by side afterwards.
    #[test]
    fn a_version_1_file_is_read_and_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.redb");
        {
            let s = StateFile::open(&path, "pair").unwrap();
            let txn = s.begin_write().unwrap();
            {
                let mut t = txn.open_table(INSTANCES).unwrap();
                let json = serde_json::to_vec(&rec(1)).unwrap();
                t.insert(("INBOX", 1u32), json.as_slice()).unwrap();
            }
            txn.commit().unwrap();
            s.set_meta("schema_version", &1u32.to_le_bytes()).unwrap();
        }
        let s = StateFile::open(&path, "pair").unwrap();
        let version = s.meta("schema_version").unwrap().unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_le_bytes().to_vec());
        s.commit("INBOX", None, &[InstanceChange::Put(2, rec(2))])
            .unwrap();
        let all = s.instances("INBOX").unwrap();
        assert_eq!(all.get(&1), Some(&rec(1)));
        assert_eq!(all.get(&2), Some(&rec(2)));
    }

    #[test]
    fn foreign_pair_is_refused_and_garbage_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        drop(StateFile::open(&path, "pair-a").unwrap());
        assert!(matches!(
            StateFile::open(&path, "pair-b"),
            Err(StateError::ForeignPair { .. })
        ));
        let junk = dir.path().join("junk.redb");
        std::fs::write(&junk, b"this is not a database at all, just some text").unwrap();
        assert!(matches!(
            StateFile::open(&junk, "pair-a"),
            Err(StateError::Corrupt { .. })
        ));
    }
}
