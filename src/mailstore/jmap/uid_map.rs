//! The IMAP-shaped view of a JMAP account's identities: per mailbox a UIDVALIDITY, and UIDs
//! given to emails in the order they are first seen there, kept in a small redb file beside
//! the pair's state.
//!
//! JMAP names an email by an account-wide string id, in one or more mailboxes; the engine and
//! the state speak (folder, UIDVALIDITY, UID), as every IMAP server does. Dovecot bridges the
//! same gap between maildir file names and UIDs with its `dovecot-uidlist`; this is that list
//! for a JMAP side, so the whole pipeline (planning, journal, recovery, verify, failback) runs
//! unchanged over JMAP. The rules that make the view a faithful IMAP folder:
//!
//! - A UID is given once per (mailbox, email) and never reused in that mailbox: an email that
//!   leaves a mailbox and comes back gets a new UID, as an IMAP message copied back would.
//! - UIDs only grow: new emails of a listing get UIDs above every earlier one, in the listing's
//!   order (arrival, then id).
//! - A mailbox first seen (or seen again after the map was lost) gets a new UIDVALIDITY, so the
//!   engine rebuilds the mapping by identity instead of trusting UIDs it cannot know.
//! - Every change is durable before the caller learns the UID, so a UID the state records is
//!   never given to another email after a crash.
//!
//! - Each mailbox has a change counter, its HIGHESTMODSEQ: the store counts every change
//!   `Email/changes` reports since the saved `Email` state in the mailboxes the email was and
//!   is in, so a pass skips unchanged folders as it does on a CONDSTORE server.
//!
//! One map per side and process, shared by every connection to that side ([`UidMap::open`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::mailstore::StoreError;
use crate::model::FolderTokens;

/// Key: mailbox id. Value: (UIDVALIDITY, UIDNEXT).
const MAILBOXES: TableDefinition<&str, (u32, u32)> = TableDefinition::new("mailboxes");
/// Key: (mailbox id, UID). Value: email id.
const UIDS: TableDefinition<(&str, u32), &str> = TableDefinition::new("uids");
/// Key: (mailbox id, UID). Value: the keywords this process last wrote for that instance,
/// space-separated, then a newline and the keywords of identical copies refused in its
/// mailbox and merged into the email (see [`UidMap::instance_keywords`]).
const WANTED: TableDefinition<(&str, u32), &str> = TableDefinition::new("wanted");
/// Key: `next_uidvalidity`.
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
/// Key: mailbox id. Value: the mailbox's change counter, its HIGHESTMODSEQ.
const MODSEQ: TableDefinition<&str, u64> = TableDefinition::new("modseq");
/// Key: `email`. Value: the account's `Email` state the counters have seen every change up to.
const STATES: TableDefinition<&str, &str> = TableDefinition::new("states");

/// One mailbox's UIDs.
#[derive(Debug, Clone, Default)]
struct MailboxUids {
    uidvalidity: u32,
    uidnext: u32,
    by_uid: BTreeMap<u32, String>,
    by_email: HashMap<String, u32>,
    /// Per UID, the keywords last written for this instance.
    wanted: HashMap<u32, Wanted>,
}

/// The keywords one instance asks of its email.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Wanted {
    /// Written for the instance itself: what it shows.
    own: BTreeSet<String>,
    /// Of identical copies the mailbox could not hold apart: part of the email's union only.
    merged: BTreeSet<String>,
}

impl Wanted {
    fn encode(&self) -> String {
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(" ");
        format!("{}\n{}", join(&self.own), join(&self.merged))
    }

    fn decode(text: &str) -> Wanted {
        let split = |s: &str| -> BTreeSet<String> {
            s.split(' ')
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect()
        };
        let (own, merged) = text.split_once('\n').unwrap_or((text, ""));
        Wanted {
            own: split(own),
            merged: split(merged),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    next_uidvalidity: u32,
    mailboxes: HashMap<String, MailboxUids>,
    /// Per mailbox, its change counter (absent: [`FIRST_MODSEQ`]).
    modseq: HashMap<String, u64>,
    /// The `Email` state every change up to which has been counted.
    email_state: Option<String>,
}

/// The change counter of a mailbox no change was counted for yet.
const FIRST_MODSEQ: u64 = 1;

/// What a mailbox's listing looks like through the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// The UID of each listed email, in the listing's order.
    pub uids: Vec<u32>,
}

/// The UIDs of one JMAP side; see the module documentation.
pub struct UidMap {
    inner: Mutex<Inner>,
    /// `None`: kept in memory only (commands that keep no state, such as `verify`).
    db: Option<redb::Database>,
    path: Option<PathBuf>,
}

/// Changes to write in one transaction.
#[derive(Default)]
struct Delta {
    mailboxes: Vec<(String, u32, u32)>,
    put: Vec<(String, u32, String)>,
    removed: Vec<(String, u32)>,
    wanted: Vec<(String, u32, String)>,
    next_uidvalidity: Option<u32>,
    modseq: Vec<(String, u64)>,
    email_state: Option<String>,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<UidMap>>> {
    static MAPS: OnceLock<Mutex<HashMap<PathBuf, Weak<UidMap>>>> = OnceLock::new();
    MAPS.get_or_init(Default::default)
}

fn unix_seconds() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
        .max(1)
}

impl UidMap {
    /// A map that lives as long as the process: every mailbox gets a fresh UIDVALIDITY.
    pub fn in_memory() -> Arc<UidMap> {
        Arc::new(UidMap {
            inner: Mutex::new(Inner {
                next_uidvalidity: unix_seconds(),
                ..Inner::default()
            }),
            db: None,
            path: None,
        })
    }

    /// The map kept in `path` (created when missing), shared with every other connection of
    /// this process that opened the same file.
    pub fn open(path: &Path) -> Result<Arc<UidMap>, StoreError> {
        let mut maps = registry()
            .lock()
            .map_err(|_| map_error(path, "the map registry was poisoned".into()))?;
        if let Some(map) = maps.get(path).and_then(Weak::upgrade) {
            return Ok(map);
        }
        let map = Arc::new(UidMap::load(path)?);
        maps.insert(path.to_path_buf(), Arc::downgrade(&map));
        Ok(map)
    }

    fn load(path: &Path) -> Result<UidMap, StoreError> {
        let err = |e: &dyn std::fmt::Display| map_error(path, e.to_string());
        let db = redb::Database::create(path).map_err(|e| err(&e))?;
        let mut inner = Inner::default();
        {
            let txn = db.begin_write().map_err(|e| err(&e))?;
            txn.open_table(MAILBOXES).map_err(|e| err(&e))?;
            txn.open_table(UIDS).map_err(|e| err(&e))?;
            txn.open_table(WANTED).map_err(|e| err(&e))?;
            txn.open_table(MODSEQ).map_err(|e| err(&e))?;
            txn.open_table(STATES).map_err(|e| err(&e))?;
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            let next = meta
                .get("next_uidvalidity")
                .map_err(|e| err(&e))?
                .map(|v| v.value());
            inner.next_uidvalidity = match next {
                Some(n) => n,
                None => {
                    let seed = unix_seconds();
                    meta.insert("next_uidvalidity", seed).map_err(|e| err(&e))?;
                    seed
                }
            };
            drop(meta);
            txn.commit().map_err(|e| err(&e))?;
        }
        let txn = db.begin_read().map_err(|e| err(&e))?;
        let mailboxes = txn.open_table(MAILBOXES).map_err(|e| err(&e))?;
        for row in mailboxes.iter().map_err(|e| err(&e))? {
            let (id, value) = row.map_err(|e| err(&e))?;
            let (uidvalidity, uidnext) = value.value();
            inner.mailboxes.insert(
                id.value().to_string(),
                MailboxUids {
                    uidvalidity,
                    uidnext,
                    ..MailboxUids::default()
                },
            );
        }
        let uids = txn.open_table(UIDS).map_err(|e| err(&e))?;
        for row in uids.iter().map_err(|e| err(&e))? {
            let (key, email) = row.map_err(|e| err(&e))?;
            let (mailbox, uid) = key.value();
            let email = email.value().to_string();
            if let Some(m) = inner.mailboxes.get_mut(mailbox) {
                m.by_email.insert(email.clone(), uid);
                m.by_uid.insert(uid, email);
            }
        }
        let wanted = txn.open_table(WANTED).map_err(|e| err(&e))?;
        for row in wanted.iter().map_err(|e| err(&e))? {
            let (key, keywords) = row.map_err(|e| err(&e))?;
            let (mailbox, uid) = key.value();
            if let Some(m) = inner.mailboxes.get_mut(mailbox) {
                m.wanted.insert(uid, Wanted::decode(keywords.value()));
            }
        }
        let modseq = txn.open_table(MODSEQ).map_err(|e| err(&e))?;
        for row in modseq.iter().map_err(|e| err(&e))? {
            let (id, n) = row.map_err(|e| err(&e))?;
            inner.modseq.insert(id.value().to_string(), n.value());
        }
        let states = txn.open_table(STATES).map_err(|e| err(&e))?;
        inner.email_state = states
            .get("email")
            .map_err(|e| err(&e))?
            .map(|v| v.value().to_string());
        drop((mailboxes, uids, wanted, modseq, states, txn));
        Ok(UidMap {
            inner: Mutex::new(inner),
            db: Some(db),
            path: Some(path.to_path_buf()),
        })
    }

    /// Brings a mailbox's UIDs in line with a complete listing of its emails (ids in the
    /// listing's order): emails still there keep their UIDs, new ones get UIDs above every
    /// earlier one, emails gone are forgotten.
    pub fn observe(&self, mailbox: &str, emails: &[&str]) -> Result<Observed, StoreError> {
        self.change(|inner, delta| {
            let m = inner.mailbox(mailbox, delta);
            let listed: std::collections::HashSet<&str> = emails.iter().copied().collect();
            let gone: Vec<(u32, String)> = m
                .by_uid
                .iter()
                .filter(|(_, e)| !listed.contains(e.as_str()))
                .map(|(u, e)| (*u, e.clone()))
                .collect();
            for (uid, email) in gone {
                m.by_uid.remove(&uid);
                m.by_email.remove(&email);
                m.wanted.remove(&uid);
                delta.removed.push((mailbox.to_string(), uid));
            }
            let uids = emails.iter().map(|e| m.give(mailbox, e, delta)).collect();
            Observed {
                uidvalidity: m.uidvalidity,
                uidnext: m.uidnext,
                uids,
            }
        })
    }

    /// The UIDs of emails this process placed in a mailbox (import, copy, move): a UID each,
    /// new unless the email had one there already.
    pub fn place(&self, mailbox: &str, emails: &[&str]) -> Result<Vec<u32>, StoreError> {
        self.change(|inner, delta| {
            let m = inner.mailbox(mailbox, delta);
            emails.iter().map(|e| m.give(mailbox, e, delta)).collect()
        })
    }

    /// Forgets emails that left a mailbox.
    pub fn forget(&self, mailbox: &str, emails: &[&str]) -> Result<(), StoreError> {
        self.change(|inner, delta| {
            if let Some(m) = inner.mailboxes.get_mut(mailbox) {
                for e in emails {
                    if let Some(uid) = m.by_email.remove(*e) {
                        m.by_uid.remove(&uid);
                        m.wanted.remove(&uid);
                        delta.removed.push((mailbox.to_string(), uid));
                    }
                }
            }
        })
    }

    /// A mailbox's (UIDVALIDITY, UIDNEXT), giving it a UIDVALIDITY when first seen.
    pub fn status(&self, mailbox: &str) -> Result<(u32, u32), StoreError> {
        self.change(|inner, delta| {
            let m = inner.mailbox(mailbox, delta);
            (m.uidvalidity, m.uidnext)
        })
    }

    /// The `Email` state up to which every change has been counted ([`UidMap::advance`]).
    pub fn email_state(&self) -> Option<String> {
        self.inner.lock().ok()?.email_state.clone()
    }

    /// The mailboxes in which an email has a UID.
    pub fn mailboxes_of(&self, email: &str) -> Vec<String> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        inner
            .mailboxes
            .iter()
            .filter(|(_, m)| m.by_email.contains_key(email))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Counts one change in each `touched` mailbox (in every mailbox the map knows as well,
    /// with `all`: the changes could not be told), and records that every change up to
    /// `email_state` is counted; one durable write. A saved state older than one saved before
    /// only makes the next changes reach further back.
    pub fn advance(
        &self,
        email_state: &str,
        touched: &BTreeSet<String>,
        all: bool,
    ) -> Result<(), StoreError> {
        self.change(|inner, delta| {
            let mut ids: BTreeSet<String> = touched.clone();
            if all {
                ids.extend(inner.mailboxes.keys().cloned());
                ids.extend(inner.modseq.keys().cloned());
            }
            for id in ids {
                let n = inner.modseq.entry(id.clone()).or_insert(FIRST_MODSEQ);
                *n += 1;
                delta.modseq.push((id, *n));
            }
            inner.email_state = Some(email_state.to_string());
            delta.email_state = Some(email_state.to_string());
        })
    }

    /// A mailbox's tokens as an IMAP folder's, when the map knows the mailbox: its
    /// UIDVALIDITY, UIDNEXT, how many emails it held when last seen, and its change counter
    /// as HIGHESTMODSEQ. Read the counter before listing the mailbox: a change counted after
    /// the listing then shows as a higher counter.
    pub fn tokens(&self, mailbox: &str) -> Option<FolderTokens> {
        let inner = self.inner.lock().ok()?;
        let m = inner.mailboxes.get(mailbox)?;
        Some(FolderTokens {
            uidvalidity: m.uidvalidity,
            uidnext: m.uidnext,
            messages: m.by_uid.len() as u32,
            highest_modseq: Some(inner.modseq(mailbox)),
        })
    }

    /// A mailbox's change counter.
    pub fn modseq(&self, mailbox: &str) -> u64 {
        self.inner
            .lock()
            .map(|inner| inner.modseq(mailbox))
            .unwrap_or(FIRST_MODSEQ)
    }

    /// The email with this UID in a mailbox.
    pub fn email(&self, mailbox: &str, uid: u32) -> Option<String> {
        let inner = self.inner.lock().ok()?;
        inner.mailboxes.get(mailbox)?.by_uid.get(&uid).cloned()
    }

    /// The keywords last written for an instance.
    pub fn wanted(&self, mailbox: &str, uid: u32) -> Option<BTreeSet<String>> {
        let inner = self.inner.lock().ok()?;
        Some(inner.mailboxes.get(mailbox)?.wanted.get(&uid)?.own.clone())
    }

    /// The UID of an email in a mailbox.
    pub fn uid(&self, mailbox: &str, email: &str) -> Option<u32> {
        let inner = self.inner.lock().ok()?;
        inner.mailboxes.get(mailbox)?.by_email.get(email).copied()
    }

    /// Records the keywords written for one instance, and returns what the email's keywords
    /// must be: the union over its instances of what was written for each (JMAP keeps one
    /// keyword set per email; DESIGN.md "Flags").
    pub fn want(
        &self,
        mailbox: &str,
        uid: u32,
        email: &str,
        keywords: BTreeSet<String>,
    ) -> Result<BTreeSet<String>, StoreError> {
        self.change(|inner, delta| {
            if let Some(m) = inner.mailboxes.get_mut(mailbox) {
                let w = m.wanted.entry(uid).or_default();
                w.own = keywords;
                delta.wanted.push((mailbox.to_string(), uid, w.encode()));
            }
            inner.union(email).0
        })
    }

    /// Adds the keywords of an identical copy refused in `mailbox` to what the instance `uid`
    /// (the copy kept) asks of its email, without changing what the instance shows. Returns
    /// the keywords the email lacks for it.
    pub fn merge(
        &self,
        mailbox: &str,
        uid: u32,
        keywords: &BTreeSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        self.change(|inner, delta| {
            let Some(m) = inner.mailboxes.get_mut(mailbox) else {
                return Vec::new();
            };
            let w = m.wanted.entry(uid).or_default();
            let new: Vec<String> = keywords
                .iter()
                .filter(|k| !w.own.contains(*k) && !w.merged.contains(*k))
                .cloned()
                .collect();
            if !new.is_empty() {
                w.merged.extend(new.iter().cloned());
                delta.wanted.push((mailbox.to_string(), uid, w.encode()));
            }
            new
        })
    }

    /// The keywords one instance shows: what was last written for it, while the email's
    /// keywords are still exactly the union of what was written for each of its instances;
    /// else (changed by someone else, or never written) the email's own keywords.
    pub fn instance_keywords(
        &self,
        mailbox: &str,
        uid: u32,
        email: &str,
        actual: &BTreeMap<String, bool>,
    ) -> BTreeMap<String, bool> {
        let Ok(inner) = self.inner.lock() else {
            return actual.clone();
        };
        let own = inner
            .mailboxes
            .get(mailbox)
            .and_then(|m| m.wanted.get(&uid));
        let (union, complete) = inner.union(email);
        let actual_set: BTreeSet<String> = actual
            .iter()
            .filter(|(_, v)| **v)
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect();
        match own {
            Some(w) if complete && union == actual_set => {
                w.own.iter().map(|k| (k.clone(), true)).collect()
            }
            _ => actual.clone(),
        }
    }

    /// Applies `f` to the map and makes what it changed durable before returning its result.
    fn change<T>(&self, f: impl FnOnce(&mut Inner, &mut Delta) -> T) -> Result<T, StoreError> {
        let where_ = || self.path.clone().unwrap_or_default();
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| map_error(&where_(), "a thread panicked while holding it".into()))?;
        let mut delta = Delta::default();
        let out = f(&mut inner, &mut delta);
        if let Some(db) = &self.db {
            self.write(db, &delta)
                .map_err(|e| map_error(&where_(), e))?;
        }
        Ok(out)
    }

    fn write(&self, db: &redb::Database, delta: &Delta) -> Result<(), String> {
        if delta.mailboxes.is_empty()
            && delta.put.is_empty()
            && delta.removed.is_empty()
            && delta.wanted.is_empty()
            && delta.next_uidvalidity.is_none()
            && delta.modseq.is_empty()
            && delta.email_state.is_none()
        {
            return Ok(());
        }
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let txn = db.begin_write().map_err(|x| e(&x))?;
        {
            let mut mailboxes = txn.open_table(MAILBOXES).map_err(|x| e(&x))?;
            for (id, uidvalidity, uidnext) in &delta.mailboxes {
                mailboxes
                    .insert(id.as_str(), (*uidvalidity, *uidnext))
                    .map_err(|x| e(&x))?;
            }
            let mut uids = txn.open_table(UIDS).map_err(|x| e(&x))?;
            for (mailbox, uid) in &delta.removed {
                uids.remove((mailbox.as_str(), *uid)).map_err(|x| e(&x))?;
            }
            for (mailbox, uid, email) in &delta.put {
                uids.insert((mailbox.as_str(), *uid), email.as_str())
                    .map_err(|x| e(&x))?;
            }
            let mut wanted = txn.open_table(WANTED).map_err(|x| e(&x))?;
            for (mailbox, uid) in &delta.removed {
                wanted.remove((mailbox.as_str(), *uid)).map_err(|x| e(&x))?;
            }
            for (mailbox, uid, keywords) in &delta.wanted {
                wanted
                    .insert((mailbox.as_str(), *uid), keywords.as_str())
                    .map_err(|x| e(&x))?;
            }
            let mut modseq = txn.open_table(MODSEQ).map_err(|x| e(&x))?;
            for (id, n) in &delta.modseq {
                modseq.insert(id.as_str(), *n).map_err(|x| e(&x))?;
            }
            if let Some(state) = &delta.email_state {
                let mut states = txn.open_table(STATES).map_err(|x| e(&x))?;
                states.insert("email", state.as_str()).map_err(|x| e(&x))?;
            }
            if let Some(next) = delta.next_uidvalidity {
                let mut meta = txn.open_table(META).map_err(|x| e(&x))?;
                meta.insert("next_uidvalidity", next).map_err(|x| e(&x))?;
            }
        }
        txn.commit().map_err(|x| e(&x))
    }
}

impl Inner {
    fn modseq(&self, mailbox: &str) -> u64 {
        self.modseq.get(mailbox).copied().unwrap_or(FIRST_MODSEQ)
    }

    /// The union of the keywords written for each instance of an email, and whether every
    /// instance has some written.
    fn union(&self, email: &str) -> (BTreeSet<String>, bool) {
        let mut union = BTreeSet::new();
        let mut complete = true;
        for m in self.mailboxes.values() {
            if let Some(uid) = m.by_email.get(email) {
                match m.wanted.get(uid) {
                    Some(w) => union.extend(w.own.iter().chain(&w.merged).cloned()),
                    None => complete = false,
                }
            }
        }
        (union, complete)
    }

    /// The mailbox's UIDs, created with a new UIDVALIDITY when unknown.
    fn mailbox(&mut self, id: &str, delta: &mut Delta) -> &mut MailboxUids {
        if !self.mailboxes.contains_key(id) {
            let uidvalidity = self.next_uidvalidity.max(1);
            self.next_uidvalidity = uidvalidity.wrapping_add(1).max(1);
            delta.next_uidvalidity = Some(self.next_uidvalidity);
            delta.mailboxes.push((id.to_string(), uidvalidity, 1));
            self.mailboxes.insert(
                id.to_string(),
                MailboxUids {
                    uidvalidity,
                    uidnext: 1,
                    ..MailboxUids::default()
                },
            );
        }
        // Present: inserted above when missing.
        self.mailboxes.entry(id.to_string()).or_default()
    }
}

impl MailboxUids {
    /// The email's UID here, given now when it has none.
    fn give(&mut self, mailbox: &str, email: &str, delta: &mut Delta) -> u32 {
        if let Some(uid) = self.by_email.get(email) {
            return *uid;
        }
        let uid = self.uidnext;
        self.uidnext += 1;
        self.by_uid.insert(uid, email.to_string());
        self.by_email.insert(email.to_string(), uid);
        delta
            .put
            .push((mailbox.to_string(), uid, email.to_string()));
        delta.mailboxes.retain(|(id, ..)| id != mailbox);
        delta
            .mailboxes
            .push((mailbox.to_string(), self.uidvalidity, self.uidnext));
        uid
    }
}

fn map_error(path: &Path, detail: String) -> StoreError {
    StoreError::Refused {
        endpoint: format!("JMAP UID map {}", path.display()),
        detail: format!(
            "{detail}. The file gives UIDs to the JMAP side's emails; if another mailreplica uses this pair, wait for it; if the file is damaged, remove it (the next pass matches messages again by content)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_grow_and_are_never_reused() {
        let map = UidMap::in_memory();
        let first = map.observe("m1", &["a", "b"]).unwrap();
        assert_eq!(first.uids, vec![1, 2]);
        assert_eq!(first.uidnext, 3);
        // b leaves, c arrives, b comes back: b gets a new UID.
        assert_eq!(map.observe("m1", &["a", "c"]).unwrap().uids, vec![1, 3]);
        let again = map.observe("m1", &["a", "c", "b"]).unwrap();
        assert_eq!(again.uids, vec![1, 3, 4]);
        assert_eq!(again.uidvalidity, first.uidvalidity);
        assert_eq!(map.email("m1", 4).as_deref(), Some("b"));
        assert_eq!(map.uid("m1", "c"), Some(3));
        assert_eq!(map.email("m1", 2), None);
    }

    #[test]
    fn placing_gives_a_uid_once_and_mailboxes_have_their_own_validity() {
        let map = UidMap::in_memory();
        assert_eq!(map.place("m1", &["a", "a", "b"]).unwrap(), vec![1, 1, 2]);
        let (v1, next) = map.status("m1").unwrap();
        let (v2, _) = map.status("m2").unwrap();
        assert_eq!(next, 3);
        assert_ne!(v1, v2);
        map.forget("m1", &["a"]).unwrap();
        assert_eq!(map.uid("m1", "a"), None);
        assert_eq!(map.place("m1", &["a"]).unwrap(), vec![3]);
    }

    #[test]
    fn the_file_keeps_uids_and_validities_across_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        let (validity, uids) = {
            let map = UidMap::load(&path).unwrap();
            let seen = map.observe("m1", &["a", "b", "c"]).unwrap();
            map.forget("m1", &["b"]).unwrap();
            map.want("m1", seen.uids[0], "a", ["$seen".to_string()].into())
                .unwrap();
            map.status("m2").unwrap();
            (seen.uidvalidity, seen.uids)
        };
        let map = UidMap::load(&path).unwrap();
        let seen = map.observe("m1", &["a", "c", "d"]).unwrap();
        assert_eq!(seen.uidvalidity, validity);
        assert_eq!(seen.uids, vec![uids[0], uids[2], 4]);
        let seen_kw: BTreeMap<String, bool> = [("$seen".to_string(), true)].into();
        assert_eq!(map.instance_keywords("m1", uids[0], "a", &seen_kw), seen_kw);
        assert_eq!(
            map.inner.lock().unwrap().union("a"),
            (["$seen".to_string()].into(), true)
        );
        // A mailbox new to the file gets a validity no earlier mailbox had.
        let (v3, _) = map.status("m3").unwrap();
        assert!(v3 > map.status("m2").unwrap().0);
    }

    #[test]
    fn an_email_in_two_mailboxes_has_the_union_of_its_instances_keywords() {
        let map = UidMap::in_memory();
        let set = |k: &[&str]| -> BTreeSet<String> { k.iter().map(|s| s.to_string()).collect() };
        let obj = |k: &[&str]| -> BTreeMap<String, bool> {
            k.iter().map(|s| (s.to_string(), true)).collect()
        };
        let a = map.place("m1", &["e"]).unwrap()[0];
        let b = map.place("m2", &["e"]).unwrap()[0];
        map.want("m1", a, "e", set(&["$seen"])).unwrap();
        let union = map.want("m2", b, "e", set(&["$flagged"])).unwrap();
        assert_eq!(union, set(&["$flagged", "$seen"]));
        // While the email holds exactly the union, each instance shows its own.
        let actual = obj(&["$flagged", "$seen"]);
        assert_eq!(
            map.instance_keywords("m1", a, "e", &actual),
            obj(&["$seen"])
        );
        assert_eq!(
            map.instance_keywords("m2", b, "e", &actual),
            obj(&["$flagged"])
        );
        // Someone else changed the keywords: every instance shows the email's.
        let changed = obj(&["$seen"]);
        assert_eq!(map.instance_keywords("m2", b, "e", &changed), changed);
        // A refused identical copy's keywords join the email's, not the instance's view.
        assert_eq!(
            map.merge("m1", a, &set(&["$draft", "$seen"])).unwrap(),
            vec!["$draft"]
        );
        let actual = obj(&["$draft", "$flagged", "$seen"]);
        assert_eq!(
            map.instance_keywords("m1", a, "e", &actual),
            obj(&["$seen"])
        );
        assert_eq!(map.wanted("m1", a), Some(set(&["$seen"])));
        map.forget("m1", &["e"]).unwrap();
        let a = map.place("m1", &["e"]).unwrap()[0];
        map.want("m1", a, "e", set(&["$seen"])).unwrap();
        // The instance in m2 goes: the union is m1's alone.
        map.forget("m2", &["e"]).unwrap();
        assert_eq!(
            map.want("m1", a, "e", set(&["$seen"])).unwrap(),
            set(&["$seen"])
        );
    }

    #[test]
    fn one_process_shares_one_map_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        let a = UidMap::open(&path).unwrap();
        let b = UidMap::open(&path).unwrap();
        a.place("m", &["x"]).unwrap();
        assert_eq!(b.uid("m", "x"), Some(1));
    }
}
