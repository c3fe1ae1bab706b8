//! Engine tests on [`MemoryStore`] with a real [`StateFile`]: a first copy, incremental passes,
//! the removal guard, interrupts at every operation (after mbsync's interrupt-at-every-step
//! test), a lost state, UIDVALIDITY resets, dry runs, and a property test over random mailboxes.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use proptest::prelude::*;

use super::events::NoEvents;
use super::sync::{sync, SyncOptions};
use super::verify::{verify, Difference};
use super::{EngineError, SyncSummary};
use crate::mailstore::memory::{Fault, MemoryStore, OpKind};
use crate::mailstore::{Access, PermanentFlags};
use crate::model::fingerprint::normalize_line_endings;
use crate::model::{FlagSet, FolderPath};
use crate::reconcile::Policy;
use crate::state::{FolderRecord, InstanceRecord, StateFile};

const PAIR: &str = "memory-test-pair";

fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Small batches, so a pass has several of them.
fn opts() -> SyncOptions {
    SyncOptions {
        batch_messages: 4,
        ..SyncOptions::default()
    }
}

fn allow_deletions() -> SyncOptions {
    SyncOptions {
        policy: Policy {
            allow_deletions: true,
        },
        ..opts()
    }
}

fn dry_run() -> SyncOptions {
    SyncOptions {
        dry_run: true,
        ..opts()
    }
}

/// A state directory; on tmpfs when there is one, since every commit is durable (fsync).
fn state_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("mailreplica-test")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// A source, a target and the pair's state file.
struct Harness {
    _dir: tempfile::TempDir,
    path: PathBuf,
    state: Option<StateFile>,
    source: MemoryStore,
    target: MemoryStore,
}

impl Harness {
    fn new(source: MemoryStore) -> Harness {
        Harness::with_target(source, MemoryStore::new("target", Access::ReadWrite))
    }

    fn with_target(source: MemoryStore, target: MemoryStore) -> Harness {
        let dir = state_dir();
        let path = dir.path().join("state.redb");
        let state = StateFile::open(&path, PAIR).expect("open state");
        Harness {
            _dir: dir,
            path,
            state: Some(state),
            source,
            target,
        }
    }

    fn state(&self) -> &StateFile {
        self.state.as_ref().expect("state open")
    }

    fn try_sync(&mut self, options: &SyncOptions) -> Result<SyncSummary, EngineError> {
        let state = self.state.as_ref().expect("state open");
        block(sync(
            &mut self.source,
            &mut self.target,
            state,
            options,
            &NoEvents,
        ))
    }

    fn sync(&mut self, options: &SyncOptions) -> SyncSummary {
        self.try_sync(options).expect("sync pass")
    }

    fn differences(&mut self) -> Vec<Difference> {
        block(verify(&mut self.source, &mut self.target, 1 << 20))
            .expect("verify")
            .differences
    }

    fn assert_verified(&mut self) {
        let diffs = self.differences();
        assert!(diffs.is_empty(), "verify found differences: {diffs:#?}");
    }

    /// Deletes the state file and starts a new one.
    fn lose_state(&mut self) {
        drop(self.state.take());
        std::fs::remove_file(&self.path).expect("remove state");
        self.state = Some(StateFile::open(&self.path, PAIR).expect("reopen state"));
    }

    /// An independent copy: both stores and the state file.
    fn fork(&mut self) -> Harness {
        drop(self.state.take());
        let dir = state_dir();
        let path = dir.path().join("state.redb");
        std::fs::copy(&self.path, &path).expect("copy state");
        self.state = Some(StateFile::open(&self.path, PAIR).expect("reopen state"));
        Harness {
            _dir: dir,
            state: Some(StateFile::open(&path, PAIR).expect("open copy")),
            path,
            source: self.source.clone(),
            target: self.target.clone(),
        }
    }

    fn reset_counters(&mut self) {
        self.source.reset_counters();
        self.target.reset_counters();
    }

    fn store_mut(&mut self, side: Which) -> &mut MemoryStore {
        match side {
            Which::Source => &mut self.source,
            Which::Target => &mut self.target,
        }
    }

    fn assert_mirrored(&self) {
        assert_same(&self.source, &self.target, "");
    }

    /// Asserts the last pass wrote nothing to the target.
    fn assert_target_untouched(&self) {
        let c = self.target.counters();
        assert_eq!(
            (c.appends, c.stores, c.expunges, c.creates),
            (0, 0, 0, 0),
            "the pass wrote to the target: {c:?}"
        );
    }

    fn state_dump(&self) -> StateDump {
        let state = self.state();
        let folders = state.folders().expect("folders");
        let mut names: Vec<String> = folders.keys().cloned().collect();
        names.extend(self.source.folder_paths().iter().map(ToString::to_string));
        names.extend(self.target.folder_paths().iter().map(ToString::to_string));
        names.sort();
        names.dedup();
        let instances = names
            .into_iter()
            .map(|n| {
                let i = state.instances(&n).expect("instances");
                (n, i)
            })
            .filter(|(_, i)| !i.is_empty())
            .collect();
        (folders, instances)
    }
}

type StateDump = (
    BTreeMap<String, FolderRecord>,
    BTreeMap<String, BTreeMap<u32, InstanceRecord>>,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Source,
    Target,
}

/// One message as compared between the sides: CRLF-normalised bytes, flags (lower-cased IMAP
/// list), INTERNALDATE instant.
type Item = (Vec<u8>, String, i64);

/// Every selectable folder's messages as a sorted multiset.
fn contents(store: &MemoryStore) -> BTreeMap<String, Vec<Item>> {
    store
        .folder_paths()
        .into_iter()
        .filter(|p| store.folder(p).is_some_and(|f| f.selectable))
        .map(|p| {
            let mut items: Vec<Item> = store
                .messages(&p)
                .into_iter()
                .map(|(_, m)| {
                    (
                        normalize_line_endings(&m.bytes).into_owned(),
                        m.flags.to_imap_list().to_ascii_lowercase(),
                        m.internaldate.epoch(),
                    )
                })
                .collect();
            items.sort();
            (p.to_string(), items)
        })
        .collect()
}

/// A short readable name for a message: its Subject, else its length.
fn describe((bytes, flags, date): &Item) -> String {
    let text = String::from_utf8_lossy(bytes);
    let subject = text
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} bytes", bytes.len()));
    format!("{subject:?} {flags} @{date}")
}

/// Asserts the target holds exactly the source's messages (as multisets per folder), and says
/// what differs when it does not.
fn assert_same(source: &MemoryStore, target: &MemoryStore, ctx: &str) {
    let (a, b) = (contents(source), contents(target));
    if a == b {
        return;
    }
    let mut report = Vec::new();
    let folders: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for folder in folders {
        let (mut left, mut right) = (
            a.get(folder).cloned().unwrap_or_default(),
            b.get(folder).cloned().unwrap_or_default(),
        );
        left.retain(|item| match right.iter().position(|r| r == item) {
            Some(pos) => {
                right.remove(pos);
                false
            }
            None => true,
        });
        for item in &left {
            report.push(format!("{folder}: only on the source: {}", describe(item)));
        }
        for item in &right {
            report.push(format!("{folder}: only on the target: {}", describe(item)));
        }
        if !a.contains_key(folder) || !b.contains_key(folder) {
            report.push(format!("{folder}: folder on one side only"));
        }
    }
    panic!(
        "{ctx}: the target is not a copy of the source:\n{}",
        report.join("\n")
    );
}

/// Messages by identity only (folder, bytes, INTERNALDATE), counted.
fn identities(store: &MemoryStore) -> BTreeMap<(String, Vec<u8>, i64), usize> {
    let mut out = BTreeMap::new();
    for (folder, items) in contents(store) {
        for (bytes, _, date) in items {
            *out.entry((folder.clone(), bytes, date)).or_default() += 1;
        }
    }
    out
}

/// Asserts `after` still holds every message of `before` that `source` holds too: a pass may
/// remove from the target only what the source no longer has.
fn assert_nothing_wrongly_removed(before: &MemoryStore, source: &MemoryStore, after: &MemoryStore) {
    let src = identities(source);
    let now = identities(after);
    for (key, &count) in &identities(before) {
        let kept = count.min(src.get(key).copied().unwrap_or(0));
        let have = now.get(key).copied().unwrap_or(0);
        assert!(
            have >= kept,
            "{}: a message the source still has was removed from the target ({have} of {kept} left)",
            key.0
        );
    }
}

fn total_messages(store: &MemoryStore) -> u64 {
    contents(store).values().map(|v| v.len() as u64).sum()
}

fn date(n: u32) -> String {
    format!(
        "{:02}-Mar-2024 {:02}:{:02}:{:02} +0100",
        1 + n % 28,
        n / 60 % 24,
        n % 60,
        n % 7
    )
}

fn body(tag: &str, n: u32) -> Vec<u8> {
    format!(
        "From: Someone <someone@example.org>\r\nTo: me@example.org\r\nSubject: {tag} {n}\r\n\
         Message-ID: <{tag}.{n}@example.org>\r\n\r\nHello number {n}.\r\n"
    )
    .into_bytes()
}

const BIG: &str = "Big";
const BIG_SIZE: u32 = 40;

/// A source with nested and non-ASCII folders, an empty one, a `\Noselect` parent, a
/// special-use folder, keywords, UID holes, two byte-identical messages with different flags,
/// and a 40-message folder.
fn sample_source() -> MemoryStore {
    let mut s = MemoryStore::new("source", Access::ReadOnly);
    let twin = body("twin", 0);
    s.add_message("INBOX", &["\\Seen"], &date(1), &body("inbox", 1));
    s.add_message(
        "INBOX",
        &["\\Seen", "$Label1", "Work"],
        &date(2),
        &body("inbox", 2),
    );
    s.add_message("INBOX", &["\\Flagged"], &date(3), &twin);
    let gone = s.add_message("INBOX", &[], &date(4), &body("inbox", 4));
    s.add_message("INBOX", &["\\Seen", "\\Answered"], &date(3), &twin);
    s.add_message(
        "INBOX",
        &["\\Draft", "\\Deleted"],
        &date(5),
        &body("inbox", 5),
    );
    s.add_message("INBOX", &["$Forwarded"], &date(6), &body("inbox", 6));
    s.remove_message("INBOX", gone);

    s.add_folder("Archive");
    s.add_message("Archive", &["\\Seen"], &date(10), &body("archive", 10));
    s.add_folder("Archive/2024");
    for n in 11..15 {
        s.add_message("Archive/2024", &["\\Seen"], &date(n), &body("archive", n));
    }
    s.add_noselect_folder("Parent");
    s.add_folder("Parent/Child");
    s.add_message("Parent/Child", &[], &date(20), &body("child", 20));
    s.add_folder("Données/Été");
    s.add_message("Données/Été", &["\\Seen"], &date(21), &body("été", 21));
    s.add_message("Données/Été", &[], &date(22), &body("été", 22));
    s.add_folder("日本語");
    s.add_message("日本語", &["Work"], &date(23), &body("nihongo", 23));
    s.add_folder("Empty");
    s.add_folder("Sent");
    s.set_special_use("Sent", "\\Sent");
    s.add_message("Sent", &["\\Seen"], &date(24), &body("sent", 24));

    s.add_folder(BIG);
    for n in 0..BIG_SIZE {
        let flags: &[&str] = match n % 4 {
            0 => &[],
            1 => &["\\Seen"],
            2 => &["\\Seen", "\\Flagged"],
            _ => &["\\Answered", "todo"],
        };
        s.add_message(BIG, flags, &date(100 + n), &body("big", n));
    }
    s
}

/// Changes on the source after a first pass: new messages (one a new byte-identical copy), two
/// flag changes, one removal in the 40-message folder (below the guard), a new folder.
/// Returns (appends, STOREs, removals) the next pass must do.
fn change_source(s: &mut MemoryStore) -> (u64, u64, u64) {
    s.add_message("INBOX", &["\\Seen"], &date(30), &body("inbox", 30));
    s.add_message("INBOX", &[], &date(3), &body("twin", 0));
    s.add_message(BIG, &[], &date(200), &body("big", 200));
    // +\Seen on one message: one STORE.
    s.set_flags("INBOX", 3, &["\\Flagged", "\\Seen"]);
    // -$Label1 +\Flagged on another: two STOREs.
    s.set_flags("INBOX", 2, &["\\Seen", "Work", "\\Flagged"]);
    assert!(s.remove_message(BIG, 7));
    s.add_folder("Projects");
    s.add_message("Projects", &["\\Seen"], &date(40), &body("projects", 40));
    s.add_message("Projects", &[], &date(41), &body("projects", 41));
    (5, 3, 1)
}

#[test]
fn first_sync_copies_everything_and_a_second_pass_is_a_noop() {
    let mut h = Harness::new(sample_source());
    let total = total_messages(&h.source);
    let s = h.sync(&opts());
    assert_eq!(s.copied, total);
    assert_eq!(s.adopted, 0);
    assert_eq!(h.target.appends(), total);
    // Every selectable folder but INBOX is created; the \Noselect parent is not needed.
    assert_eq!(s.folders, 9);
    assert_eq!(s.folders_created, 8);
    assert!(s.refused.is_empty() && !s.needs_attention());
    h.assert_mirrored();
    for name in [
        "Archive/2024",
        "Données/Été",
        "日本語",
        "Empty",
        "Parent/Child",
    ] {
        assert!(h.target.folder(name).is_some(), "{name} missing");
    }
    assert!(h.target.messages("Empty").is_empty());
    let c = h.source.counters();
    assert_eq!((c.appends, c.stores, c.expunges, c.creates), (0, 0, 0, 0));

    let report = block(verify(&mut h.source, &mut h.target, 1 << 20)).unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    assert_eq!(report.folders, 9);
    assert_eq!(report.messages, total);

    h.reset_counters();
    let s = h.sync(&opts());
    h.assert_target_untouched();
    assert_eq!(
        (
            s.copied,
            s.adopted,
            s.flags_updated,
            s.removed,
            s.folders_created
        ),
        (0, 0, 0, 0, 0)
    );
    h.assert_mirrored();
}

#[test]
fn first_sync_without_uidplus_converges_and_learns_the_uids() {
    let mut target = MemoryStore::new("target", Access::ReadWrite);
    target.capabilities_mut().uidplus = false;
    let mut h = Harness::with_target(sample_source(), target);
    let total = total_messages(&h.source);
    let s = h.sync(&opts());
    assert_eq!(s.copied, total);
    h.assert_mirrored();
    h.assert_verified();

    // Without APPENDUID the first pass learned the copies' UIDs by identity: the second
    // pass has nothing to upload or adopt.
    h.reset_counters();
    let s = h.sync(&opts());
    h.assert_target_untouched();
    assert_eq!((s.copied, s.adopted), (0, 0));

    h.reset_counters();
    let s = h.sync(&opts());
    h.assert_target_untouched();
    assert_eq!((s.copied, s.adopted), (0, 0));
    h.assert_verified();
}

#[test]
fn source_changes_are_applied_exactly() {
    let mut h = Harness::new(sample_source());
    h.sync(&opts());
    let (appends, stores, removals) = change_source(&mut h.source);
    h.reset_counters();
    let s = h.sync(&opts());
    // Content the target already held is placed by UID COPY (and its flags set) instead.
    assert_eq!(h.target.appends() + h.target.copies(), appends);
    assert_eq!(h.target.stores(), stores + h.target.copies());
    assert_eq!(h.target.counters().stored_messages, 3 + h.target.copies());
    assert_eq!(h.target.expunges(), removals);
    assert_eq!(h.target.counters().creates, 1);
    assert_eq!(
        (
            s.copied + s.copied_on_target,
            s.adopted,
            s.flags_updated,
            s.removed,
            s.removals_held
        ),
        (appends, 0, 2, removals, 0)
    );
    h.assert_mirrored();
    h.assert_verified();

    h.reset_counters();
    h.sync(&opts());
    h.assert_target_untouched();
}

#[test]
fn removals_within_the_budget_are_applied() {
    let mut h = Harness::new(sample_source());
    h.sync(&opts());
    h.source.remove_message(BIG, 3);
    h.source.remove_message(BIG, 30);
    h.reset_counters();
    let s = h.sync(&opts());
    assert_eq!((s.removed, s.removals_held), (2, 0));
    assert_eq!(h.target.expunges(), 2);
    h.assert_mirrored();
    h.assert_verified();
}

/// Another client recreates the target folder (new UIDVALIDITY, its messages renumbered)
/// between the folder's work in a pass and that pass's removals: the recorded target UIDs no
/// longer name those messages, so the removals wait; nothing is expunged under the new UIDs.
#[test]
fn removals_wait_when_the_target_folder_is_recreated_during_the_pass() {
    let mut h = Harness::new(sample_source());
    h.sync(&opts());
    let before = h.target.messages(BIG).len();
    h.source.remove_message(BIG, 3);
    h.source.remove_message(BIG, 30);
    // The pass opens the folder on the target once for its work, once for its removals.
    h.target.reset_uidvalidity_on_open(BIG, 2);
    h.reset_counters();
    let s = h.sync(&opts());
    assert_eq!(s.removed, 0, "{s:?}");
    assert_eq!(h.target.expunges(), 0);
    assert_eq!(h.target.messages(BIG).len(), before);
    // The next pass sees the new UIDVALIDITY and matches the folder again by identity: every
    // message the source holds is still there once, nothing was uploaded again.
    h.reset_counters();
    h.sync(&opts());
    assert_eq!(h.target.appends(), 0);
    assert!(h.target.messages(BIG).len() >= h.source.messages(BIG).len());
}

#[test]
fn held_removals_stay_held_until_released() {
    let mut h = Harness::new(sample_source());
    h.sync(&opts());
    for (uid, _) in h.source.messages(BIG) {
        h.source.remove_message(BIG, uid);
    }
    // Held, and still held by later passes: only the user releases them.
    for _ in 0..2 {
        h.reset_counters();
        let s = h.sync(&opts());
        assert_eq!((s.removed, s.removals_held), (0, BIG_SIZE as u64));
        assert!(s.needs_attention());
        assert!(
            s.notices.iter().any(|n| n.contains("reads empty")),
            "{:?}",
            s.notices
        );
        h.assert_target_untouched();
        assert_eq!(h.target.messages(BIG).len(), BIG_SIZE as usize);
    }
    assert_eq!(h.state().release(None).unwrap(), BIG_SIZE as usize);
    h.reset_counters();
    let s = h.sync(&opts());
    assert_eq!((s.removed, s.removals_held), (BIG_SIZE as u64, 0));
    h.assert_mirrored();
    h.assert_verified();
}

#[test]
fn an_emptied_source_folder_removes_nothing() {
    let mut h = Harness::new(sample_source());
    h.sync(&opts());
    for (uid, _) in h.source.messages(BIG) {
        h.source.remove_message(BIG, uid);
    }
    h.reset_counters();
    let s = h.sync(&opts());
    assert_eq!(s.removals_held, BIG_SIZE as u64);
    h.assert_target_untouched();
    assert_eq!(h.target.messages(BIG).len(), BIG_SIZE as usize);
}

#[test]
fn a_failing_source_never_removes_anything() {
    let mut base = Harness::new(sample_source());
    base.sync(&opts());
    change_source(&mut base.source);
    for kind in [
        OpKind::ListFolders,
        OpKind::OpenFolder,
        OpKind::ListMessages,
        OpKind::FetchBodies,
    ] {
        for fault in [Fault::LostBefore, Fault::Timeout, Fault::No] {
            let mut h = base.fork();
            let before = h.target.clone();
            h.source.fail_next(kind, fault);
            let r = h.try_sync(&opts());
            // A lost connection stops the pass; a NO about one folder skips that folder.
            match (&r, fault) {
                (Ok(s), Fault::No) => assert_eq!(s.folder_errors.len(), 1, "{s:?}"),
                (Ok(s), _) => panic!("{kind:?} {fault:?}: the pass went on: {s:?}"),
                (Err(_), _) => {}
            }
            assert!(!h.source.fault_pending(), "{kind:?} {fault:?} never fired");
            assert_nothing_wrongly_removed(&before, &h.source, &h.target);
            h.source.reconnect();
            h.sync(&opts());
            h.assert_mirrored();
            h.assert_verified();
        }
    }
}

/// Interrupts a pass at every operation of one side, for each fault, then runs a clean pass and
/// checks: nothing the source still has was removed, the target mirrors the source without
/// duplicates, verify is clean, and one more pass writes nothing.
fn interrupt_at_every_operation(base: &mut Harness, side: Which, faults: &[Fault]) {
    let mut clean = base.fork();
    clean.reset_counters();
    clean.sync(&opts());
    let n = clean.store_mut(side).operations();
    assert!(n > 0);
    for &fault in faults {
        for i in 0..=n {
            let ctx = format!("{side:?} {fault:?} at operation {i} of {n}");
            let mut h = base.fork();
            h.reset_counters();
            let before = h.target.clone();
            h.store_mut(side).fail_after(i, fault);
            let first = h.try_sync(&opts());
            let fired = !h.store_mut(side).fault_pending();
            assert_eq!(fired, i < n, "{ctx}: the fault did not fire where expected");
            if fired && fault != Fault::No {
                assert!(first.is_err(), "{ctx}: the pass did not fail");
            }
            assert_nothing_wrongly_removed(&before, &h.source, &h.target);

            h.source.reconnect();
            h.target.reconnect();
            // A NO to an APPEND reads as a refusal, tried again a day later: here, at once.
            let clean_pass = SyncOptions {
                retry_refused_after: 0,
                ..opts()
            };
            if let Err(e) = h.try_sync(&clean_pass) {
                panic!("{ctx}: the clean pass failed: {e}");
            }
            assert_same(&h.source, &h.target, &ctx);
            let diffs = h.differences();
            assert!(diffs.is_empty(), "{ctx}: {diffs:#?}");
            h.reset_counters();
            h.sync(&opts());
            let c = h.target.counters();
            assert_eq!(
                (c.appends, c.stores, c.expunges),
                (0, 0, 0),
                "{ctx}: the pass after convergence wrote to the target"
            );
        }
    }
}

const TARGET_FAULTS: [Fault; 3] = [Fault::LostBefore, Fault::LostAfter, Fault::No];
const SOURCE_FAULTS: [Fault; 2] = [Fault::LostBefore, Fault::No];

#[test]
fn an_interrupted_first_pass_converges_without_duplicates() {
    let mut base = Harness::new(sample_source());
    interrupt_at_every_operation(&mut base, Which::Target, &TARGET_FAULTS);
    interrupt_at_every_operation(&mut base, Which::Source, &SOURCE_FAULTS);
}

#[test]
fn an_interrupted_first_pass_without_uidplus_converges_without_duplicates() {
    let mut target = MemoryStore::new("target", Access::ReadWrite);
    target.capabilities_mut().uidplus = false;
    let mut base = Harness::with_target(sample_source(), target);
    interrupt_at_every_operation(&mut base, Which::Target, &TARGET_FAULTS);
}

#[test]
fn an_interrupted_incremental_pass_converges_without_duplicates() {
    let mut base = Harness::new(sample_source());
    base.sync(&opts());
    change_source(&mut base.source);
    interrupt_at_every_operation(&mut base, Which::Target, &TARGET_FAULTS);
    interrupt_at_every_operation(&mut base, Which::Source, &SOURCE_FAULTS);
}

#[test]
fn an_interrupted_pass_releasing_held_removals_converges() {
    let mut base = Harness::new(sample_source());
    base.sync(&opts());
    for uid in [2, 9, 17, 33] {
        base.source.remove_message(BIG, uid);
    }
    base.source.set_flags(BIG, 4, &["\\Seen", "later"]);
    let mut clean = base.fork();
    clean.reset_counters();
    clean.sync(&allow_deletions());
    assert_eq!(clean.target.expunges(), 4);
    let n = clean.target.operations();
    for i in 0..=n {
        for fault in TARGET_FAULTS {
            let mut h = base.fork();
            h.reset_counters();
            h.target.fail_after(i, fault);
            let _ = h.try_sync(&allow_deletions());
            h.target.reconnect();
            // A NO to an APPEND reads as a refusal, tried again a day later: here, at once.
            h.sync(&SyncOptions {
                retry_refused_after: 0,
                ..allow_deletions()
            });
            h.assert_mirrored();
            h.assert_verified();
        }
    }
}

#[test]
fn a_lost_state_is_rebuilt_by_identity_without_uploads() {
    let mut h = Harness::new(sample_source());
    let total = total_messages(&h.source);
    h.sync(&opts());
    h.lose_state();
    h.reset_counters();
    let s = h.sync(&opts());
    h.assert_target_untouched();
    assert_eq!((s.copied, s.adopted, s.removed), (0, total, 0));
    h.assert_mirrored();
    h.assert_verified();

    // The rebuilt state maps everything: removals and flag changes work again.
    h.source.set_flags(BIG, 5, &["\\Flagged"]);
    h.source.remove_message(BIG, 6);
    h.reset_counters();
    let s = h.sync(&opts());
    assert_eq!((s.copied, s.adopted, s.removed), (0, 0, 1));
    assert_eq!(h.target.appends(), 0);
    h.assert_mirrored();
    h.assert_verified();
}

#[test]
fn a_lost_state_with_changed_flags_fixes_the_flags_of_adopted_copies() {
    let mut h = Harness::new(sample_source());
    h.sync(&opts());
    h.lose_state();
    h.source.set_flags("Archive", 1, &["\\Seen", "\\Flagged"]);
    h.reset_counters();
    let s = h.sync(&opts());
    assert_eq!(h.target.appends(), 0);
    assert_eq!(h.target.stores(), 1);
    assert_eq!(s.flags_updated, 1);
    h.assert_mirrored();
    h.assert_verified();
}

#[test]
fn a_source_uidvalidity_reset_duplicates_and_removes_nothing() {
    let mut h = Harness::new(sample_source());
    h.sync(&opts());
    // INBOX has a UID hole, so its UIDs change meaning.
    h.source.reset_uidvalidity("INBOX");
    h.source.reset_uidvalidity(BIG);
    h.reset_counters();
    let s = h.sync(&opts());
    h.assert_target_untouched();
    assert_eq!(s.copied, 0);
    assert!(
        s.notices
            .iter()
            .filter(|n| n.contains("UIDVALIDITY"))
            .count()
            == 2,
        "{:?}",
        s.notices
    );
    h.assert_mirrored();
    h.assert_verified();

    // The mapping is rebuilt under the new UIDs.
    h.source.remove_message(BIG, 1);
    h.source.set_flags("INBOX", 2, &[]);
    h.reset_counters();
    let s = h.sync(&opts());
    assert_eq!((s.removed, s.copied), (1, 0));
    assert_eq!(h.target.appends(), 0);
    h.assert_mirrored();
    h.assert_verified();
}

#[test]
fn a_target_uidvalidity_reset_duplicates_and_removes_nothing() {
    let mut h = Harness::new(sample_source());
    h.sync(&opts());
    // Give the target folder a UID hole, then renumber it.
    h.source.remove_message(BIG, 1);
    h.sync(&opts());
    h.target.reset_uidvalidity(BIG);
    h.reset_counters();
    let s = h.sync(&opts());
    h.assert_target_untouched();
    assert_eq!(s.copied, 0);
    h.assert_mirrored();
    h.assert_verified();

    h.source.set_flags(BIG, 10, &["\\Seen", "\\Answered"]);
    h.source.remove_message(BIG, 20);
    h.reset_counters();
    let s = h.sync(&opts());
    assert_eq!((s.removed, s.copied, s.flags_updated), (1, 0, 1));
    h.assert_mirrored();
    h.assert_verified();
}

#[test]
fn a_dry_run_changes_neither_the_target_nor_the_state() {
    // A fresh pair: nothing is created, copied or recorded.
    let mut h = Harness::new(sample_source());
    let total = total_messages(&h.source);
    let target_before = contents(&h.target);
    let s = h.sync(&dry_run());
    assert!(s.dry_run);
    assert_eq!(s.copied, total);
    assert_eq!(s.folders_created, 8);
    assert!(s.actions.iter().any(|a| a.starts_with("create folder")));
    h.assert_target_untouched();
    assert_eq!(contents(&h.target), target_before);
    assert_eq!(h.target.folder_paths(), vec![FolderPath::inbox()]);
    let (folders, instances) = h.state_dump();
    assert!(folders.is_empty() && instances.is_empty());

    // After a pass and changes on the source (removals held and not held, flags, a new folder).
    h.sync(&opts());
    change_source(&mut h.source);
    h.source.remove_message("Archive/2024", 1);
    h.source.remove_message("Archive/2024", 2);
    h.source.reset_uidvalidity("Sent");
    let target_before = h.target.clone();
    let state_before = h.state_dump();
    h.reset_counters();
    let s = h.sync(&dry_run());
    h.assert_target_untouched();
    assert_eq!(contents(&h.target), contents(&target_before));
    assert_eq!(h.target.folder_paths(), target_before.folder_paths());
    assert_eq!(h.state_dump(), state_before);
    // Sent's message counts as a copy: a dry run cannot fetch bodies to see it would be adopted.
    assert!(
        s.removed == 3 && s.removals_held == 0 && s.copied == 6,
        "{s:?}"
    );
    assert!(!s.actions.is_empty());

    // The real pass still does everything.
    let s = h.sync(&opts());
    assert_eq!(s.copied + s.copied_on_target, 5);
    h.sync(&allow_deletions());
    h.assert_mirrored();
    h.assert_verified();
}

#[test]
fn a_refused_message_is_reported_once_and_tried_again_a_day_later() {
    let mut h = Harness::new(sample_source());
    h.target.fail_next(OpKind::Append, Fault::No);
    let s = h.sync(&opts());
    assert_eq!(s.refused.len(), 1, "{:?}", s.refused);
    assert!(s.needs_attention());
    assert_eq!(s.copied, total_messages(&h.source) - 1);
    assert_eq!(h.state().refused(None).unwrap().len(), 1);
    // The next pass does not try again (the server's answer would be the same), nor report.
    h.reset_counters();
    let s = h.sync(&opts());
    assert_eq!((s.copied, s.refused_waiting), (0, 1));
    assert!(s.refused.is_empty() && !s.needs_attention());
    assert_eq!(h.target.appends(), 0);
    // A day later (here: asked for at once), it is tried again and placed.
    h.reset_counters();
    let retry = SyncOptions {
        retry_refused_after: 0,
        ..opts()
    };
    let s = h.sync(&retry);
    assert_eq!((s.copied, s.adopted), (1, 0));
    assert!(h.state().refused(None).unwrap().is_empty());
    assert!(s.refused.is_empty());
    h.assert_mirrored();
    h.assert_verified();
}

#[test]
fn flags_the_target_cannot_store_are_not_stored_again_and_again() {
    let mut target = MemoryStore::new("target", Access::ReadWrite);
    target.set_permanent_flags(
        "INBOX",
        Some(PermanentFlags {
            flags: FlagSet::from_raw(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]),
            any_keyword: false,
        }),
    );
    let mut h = Harness::with_target(sample_source(), target);
    h.sync(&opts());
    assert!(h
        .target
        .messages("INBOX")
        .iter()
        .all(|(_, m)| m.flags.iter().all(|f| f.is_system())));
    h.reset_counters();
    let s = h.sync(&opts());
    h.assert_target_untouched();
    assert_eq!(s.flags_updated, 0);
}

// ---------------------------------------------------------------------------------------------
// Regressions for bugs these tests found (the last one is still open, see its reason).

#[test]
fn an_interrupted_first_pass_then_a_source_uidvalidity_reset_converges() {
    let mut h = Harness::new(sample_source());
    // Interrupt the first pass inside BIG's second append batch: its first batch is committed,
    // its folder record was committed before it.
    let mut index = None;
    let mut appended = 0;
    for i in 0..1000 {
        let mut t = h.fork();
        t.reset_counters();
        t.target.fail_after(i, Fault::LostBefore);
        if t.try_sync(&opts()).is_ok() {
            break;
        }
        if t.target.messages(BIG).len() > 4 {
            appended = t.target.messages(BIG).len();
            index = Some(i);
            break;
        }
    }
    let index = index.expect("an interrupt inside BIG");
    h.reset_counters();
    h.target.fail_after(index, Fault::LostBefore);
    assert!(h.try_sync(&opts()).is_err());
    assert_eq!(h.target.messages(BIG).len(), appended);
    assert!(
        h.state().folder(BIG).unwrap().is_some(),
        "the folder record is committed before its instances"
    );
    assert!(!h.state().instances(BIG).unwrap().is_empty());
    h.target.reconnect();

    // A UID hole, then a rebuilt index: every UID after the hole now names another message.
    h.source.remove_message(BIG, 2);
    h.source.reset_uidvalidity(BIG);
    h.sync(&opts());
    // After a source UIDVALIDITY change the base is rebuilt by identity and nothing is removed
    // (when in doubt, keep mail): every source message is on the target exactly once, and the
    // one removed meanwhile stays as a target-only copy.
    let (src, tgt) = (identities(&h.source), identities(&h.target));
    for (id, n) in &src {
        assert_eq!(tgt.get(id), Some(n), "{id:?} not copied exactly once");
    }
    let extra: Vec<_> = tgt.keys().filter(|id| !src.contains_key(*id)).collect();
    assert_eq!(extra.len(), 1, "{extra:?}");
}

#[test]
fn a_bare_lf_message_is_adopted_not_uploaded_again() {
    let mut source = MemoryStore::new("source", Access::ReadOnly);
    source.add_message(
        "INBOX",
        &["\\Seen"],
        &date(1),
        b"From: a@example.org\nSubject: bare LF\n\nbody\n",
    );
    let mut h = Harness::new(source);
    h.sync(&opts());
    h.assert_verified();
    h.lose_state();
    h.reset_counters();
    let s = h.sync(&opts());
    assert_eq!((s.copied, s.adopted), (0, 1));
    assert_eq!(h.target.appends(), 0);
    h.assert_mirrored();
    h.assert_verified();
}

#[test]
fn without_uidplus_a_removal_right_after_the_first_pass_is_applied() {
    let mut target = MemoryStore::new("target", Access::ReadWrite);
    target.capabilities_mut().uidplus = false;
    let mut h = Harness::with_target(sample_source(), target);
    h.sync(&opts());
    h.source.remove_message(BIG, 5);
    h.reset_counters();
    let s = h.sync(&opts());
    assert_eq!(s.removed, 1);
    h.assert_mirrored();
    h.assert_verified();
}

// ---------------------------------------------------------------------------------------------
// Property: random mailboxes are copied exactly, a second pass is a no-op, and random changes
// (optionally applied by an interrupted pass first) are copied exactly too.

const FOLDER_POOL: [&str; 5] = ["INBOX", "Archive", "Archive/Old", "Été", "Work/Ünïcode"];
const FLAG_POOL: [&str; 8] = [
    "\\Seen",
    "\\Answered",
    "\\Flagged",
    "\\Deleted",
    "\\Draft",
    "$Label1",
    "Work",
    "$Junk",
];

/// (body index, date index, flag bits).
type RandomMessage = (u8, u8, u8);
/// (index in [`FOLDER_POOL`], messages).
type RandomFolder = (usize, Vec<RandomMessage>);
/// (kind, folder index, pick, message).
type RandomChange = (u8, usize, usize, RandomMessage);

/// One random message: which body and date (small pools, so duplicates are frequent) and which
/// flags (a bit set over [`FLAG_POOL`]).
fn arb_message() -> impl Strategy<Value = RandomMessage> {
    (0u8..5, 0u8..3, any::<u8>())
}

fn flags_of(bits: u8) -> Vec<&'static str> {
    FLAG_POOL
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, f)| *f)
        .collect()
}

fn arb_mailbox() -> impl Strategy<Value = Vec<RandomFolder>> {
    proptest::collection::vec(
        (
            0..FOLDER_POOL.len(),
            proptest::collection::vec(arb_message(), 0..10),
        ),
        1..4,
    )
}

/// A random change: add a message, change flags, or remove a message (by position).
fn arb_change() -> impl Strategy<Value = RandomChange> {
    (0u8..3, 0..FOLDER_POOL.len(), any::<usize>(), arb_message())
}

fn build_source(folders: &[RandomFolder]) -> MemoryStore {
    let mut s = MemoryStore::new("source", Access::ReadOnly);
    for (f, _) in folders {
        s.add_folder(FOLDER_POOL[*f]);
    }
    for (f, msgs) in folders {
        for &(b, d, bits) in msgs {
            let bytes = body("prop", b as u32);
            s.add_message(FOLDER_POOL[*f], &flags_of(bits), &date(d as u32), &bytes);
        }
    }
    s
}

fn apply_change(s: &mut MemoryStore, (kind, f, pick, (b, d, bits)): RandomChange) {
    let folder = FOLDER_POOL[f];
    if s.folder(folder).is_none() {
        return;
    }
    let uids: Vec<u32> = s.messages(folder).iter().map(|(u, _)| *u).collect();
    match kind {
        0 => {
            s.add_message(
                folder,
                &flags_of(bits),
                &date(d as u32),
                &body("prop", b as u32),
            );
        }
        1 if !uids.is_empty() => s.set_flags(folder, uids[pick % uids.len()], &flags_of(bits)),
        2 if !uids.is_empty() => {
            s.remove_message(folder, uids[pick % uids.len()]);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_mailboxes_are_copied_exactly(
        folders in arb_mailbox(),
        changes in proptest::collection::vec(arb_change(), 0..8),
        uidplus in any::<bool>(),
        batch in 1usize..6,
        interrupt in proptest::option::of((0u64..60, 0usize..3)),
    ) {
        let mut target = MemoryStore::new("target", Access::ReadWrite);
        target.capabilities_mut().uidplus = uidplus;
        let mut h = Harness::with_target(build_source(&folders), target);
        let options = SyncOptions { batch_messages: batch, ..SyncOptions::default() };
        h.sync(&options);
        prop_assert_eq!(contents(&h.source), contents(&h.target));
        prop_assert!(h.differences().is_empty());

        h.reset_counters();
        h.sync(&options);
        let c = h.target.counters();
        prop_assert_eq!((c.appends, c.stores, c.expunges, c.creates), (0, 0, 0, 0));

        for change in changes {
            apply_change(&mut h.source, change);
        }
        // A refusal (Fault::No) that hits an APPEND is reported and normally tried again a
        // day later; here at once, as with --retry-refused.
        let options = SyncOptions {
            policy: Policy { allow_deletions: true },
            retry_refused_after: 0,
            ..options
        };
        // Optionally a pass interrupted on the target first; it must not matter.
        if let Some((at, fault)) = interrupt {
            let before = h.target.clone();
            h.target.fail_after(at, TARGET_FAULTS[fault]);
            let _ = h.try_sync(&options);
            assert_nothing_wrongly_removed(&before, &h.source, &h.target);
            h.target.reconnect();
        }
        h.sync(&options);
        prop_assert_eq!(contents(&h.source), contents(&h.target));
        let diffs = h.differences();
        prop_assert!(diffs.is_empty(), "{:#?}", diffs);
        h.reset_counters();
        h.sync(&options);
        let c = h.target.counters();
        prop_assert_eq!((c.appends, c.stores, c.expunges, c.creates), (0, 0, 0, 0));
    }
}

#[test]
fn subscriptions_follow_the_source_and_special_use_is_created_where_offered() {
    let mut source = sample_source();
    source.add_folder("Archive/2024").subscribed = true;
    source.add_folder("INBOX").subscribed = true;
    source.add_folder("Sent Items").special_use = Some("\\Sent".into());
    let mut target = MemoryStore::new("target", Access::ReadWrite);
    target
        .capabilities_mut()
        .raw
        .push("CREATE-SPECIAL-USE".into());
    let mut h = Harness::with_target(source, target);
    let s = h.sync(&opts());
    assert_eq!(s.subscriptions, 2, "{s:?}");
    let sent = h.target.folder("Sent Items").expect("created");
    assert_eq!(sent.special_use.as_deref(), Some("\\Sent"));
    assert!(h.target.folder("Archive/2024").expect("created").subscribed);
    assert!(h.target.folder("INBOX").expect("inbox").subscribed);
    h.assert_verified();

    // Unsubscribed on the source: unsubscribed on the target, once.
    h.source.add_folder("Archive/2024").subscribed = false;
    let s = h.sync(&opts());
    assert_eq!(s.subscriptions, 1);
    assert!(!h.target.folder("Archive/2024").expect("kept").subscribed);
    assert_eq!(h.sync(&opts()).subscriptions, 0);
    h.assert_verified();

    // verify reports a subscription that differs.
    h.target.add_folder("INBOX").subscribed = false;
    let diffs = h.differences();
    assert!(
        diffs
            .iter()
            .any(|d| d.what.contains("subscribed on the source")),
        "{diffs:?}"
    );
}
