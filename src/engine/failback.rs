//! Failback: list both sides, link them to the frozen base, merge three ways, apply the plan.
//!
//! # Snapshot and links ([`snapshot`])
//!
//! Both sides are listed in full (every selectable folder with its UIDVALIDITY, every message
//! with UID, flags, size, INTERNALDATE). A folder descends from the base folder whose
//! UIDVALIDITY it kept (`FolderRecord::source_uidvalidity` on the primary,
//! `target_uidvalidity` on the recovery side; Dovecot keeps it across RENAME); a message from
//! the base instance whose UID it has there (source UID on the primary, `target_uid` on the
//! recovery side). Only messages without such a link have their bodies fetched, for their
//! fingerprint. Then the move rule of "Change detection": on one side, a base instance that
//! is gone from its folder and a new message with the same fingerprint elsewhere are one
//! message, moved (paired in handle order, one to one). A folder at a base folder's path
//! whose base folder has no descendant by UIDVALIDITY on that side (deleted and recreated,
//! e.g. by an earlier failback that kept it for mail moved into it) continues that base
//! folder, but its UIDs are not the base's: its messages are linked by identity only.
//!
//! Base instances the recovery side cannot be linked to (no `target_uid` recorded, e.g. a pass
//! that stopped early) are left out of the base: their primary copy reads as new and is
//! placed, never as removed on the recovery side. When in doubt, keep mail.
//!
//! # Apply ([`apply_plan`]), and why in this order
//!
//! 1. Folders, on both sides: creations, then renames. A child rename an earlier parent
//!    RENAME already did is skipped (IMAP RENAME moves the children).
//! 2. Placements, on both sides, before anything is moved or removed anywhere: an upload
//!    reads the other side's message where it was listed (its folder renamed at most), a copy
//!    reads this side's.
//! 3. Flags (before moves: a message keeps its flags when moved, and its UID is still the
//!    listed one), moves (UID MOVE), removals (UID EXPUNGE of exactly the listed UIDs), then
//!    folder deletions, deepest first, and only of folders found empty.
//!
//! # Crash safety
//!
//! Nothing here writes the state: the base stays frozen until the plan is fully applied, so
//! a failback killed anywhere is simply run again. The re-run lists both sides anew and merges
//! against the same base, and whatever was applied reads as done on both sides: a message
//! uploaded to one side is now new on both (counted once), a removal made on the other side
//! is removed on both, a flag set on both is equal, a folder renamed on both is the same
//! rename. The only non-atomic step is a move on a server without MOVE (copy, then expunge):
//! killed between the two, the re-run sees the copy as new and may keep one extra instance.
//!
//! # Removal budget
//!
//! The plan is applied whole or not at all: when a side would lose more messages than the
//! removal budget allows for an account of its size (max(50, 5 %)), nothing is applied
//! without `allow_deletions`, so a failback never half-applies a mass deletion.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::events::{Event, EventSink};
use super::EngineError;
use crate::crashpoint;
use crate::mailstore::{AppendRequest, FlagChange, MailStore, MessageMeta, StoreError};
use crate::model::fingerprint::normalize_line_endings;
use crate::model::{Fingerprint, FlagSet, FolderPath, Side};
use crate::reconcile::merge::{
    Base, BaseFolder, BaseMessage, FolderKey, Handle, HeldItem, HeldKind, Identity, InstanceKey,
    MergeAction, MergePlan, PlaceSource, SideFolder, SideMessage, SideState,
};
use crate::state::StateFile;

/// Upper bounds of one batch of bodies fetched (for fingerprints or uploads).
const BATCH_MESSAGES: usize = 100;
const BATCH_BYTES: u64 = 8 << 20;

/// Where one listed message is on its side, and its metadata.
#[derive(Debug, Clone)]
pub struct Located {
    pub folder: FolderPath,
    pub meta: MessageMeta,
}

/// Both sides and the base as the merge reads them, plus what applying needs to find each
/// side's messages again.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub base: Base,
    /// Primary first.
    pub sides: [SideState; 2],
    pub held: Vec<HeldItem>,
    /// Per side, each handle's folder (as listed) and metadata.
    pub located: [HashMap<Handle, Located>; 2],
    /// Per side, how many messages it holds (for the removal budget).
    pub messages: [usize; 2],
    /// Per side, messages whose bodies were fetched to learn their identity.
    pub fetched: [usize; 2],
}

/// One side's listing: folders with UIDVALIDITY and messages.
struct Listed {
    folder: FolderPath,
    special_use: Option<String>,
    uidvalidity: u32,
    messages: Vec<MessageMeta>,
}

fn ix(side: Side) -> usize {
    match side {
        Side::Source => 0,
        Side::Target => 1,
    }
}

fn handle_of(folder: &FolderPath, uid: u32) -> Handle {
    Handle(format!("{folder}:{uid}"))
}

/// Lists both sides in full and links them to the base of `state` (see the module docs).
pub async fn snapshot<A: MailStore, B: MailStore>(
    primary: &mut A,
    recovery: &mut B,
    state: &StateFile,
    events: &dyn EventSink,
) -> Result<Snapshot, EngineError> {
    let records = state.folders()?;
    let instances = state.all_instances()?;
    let listed = [list_all(primary).await?, list_all(recovery).await?];

    // The base: every folder record, every instance the recovery side can be linked to.
    let mut base = Base::default();
    let primary_by_validity: HashMap<u32, &Listed> =
        listed[0].iter().map(|l| (l.uidvalidity, l)).collect();
    for (name, rec) in &records {
        let path = FolderPath::from_display(name);
        let special_use = primary_by_validity
            .get(&rec.source_uidvalidity)
            .and_then(|l| l.special_use.clone());
        base.folders.push(BaseFolder {
            key: FolderKey(name.clone()),
            path,
            special_use,
        });
    }
    // (folder key, target UID) -> source UID, for linking the recovery side.
    let mut by_target: HashMap<(&str, u32), u32> = HashMap::new();
    let mut identity_of: HashMap<InstanceKey, Identity> = HashMap::new();
    for (folder, uid, rec) in &instances {
        let Some(tuid) = rec.target_uid else { continue };
        if !records.contains_key(folder) {
            continue;
        }
        let identity = match &rec.fingerprint {
            Some(fp) => Identity::of_fingerprint(fp),
            // Matched by cheap keys while rebuilding: no fingerprint; its descendants are
            // linked by UID, so this identity only has to be stable and distinct.
            None => Identity(format!("cheap-{}-{}", rec.size, rec.internaldate.epoch())),
        };
        let key = InstanceKey {
            folder: FolderKey(folder.clone()),
            source_uid: *uid,
        };
        by_target.insert((folder.as_str(), tuid), *uid);
        identity_of.insert(key.clone(), identity.clone());
        base.messages.push(BaseMessage {
            key,
            identity,
            flags: rec.flags.clone(),
        });
    }

    let mut snap = Snapshot {
        base,
        ..Snapshot::default()
    };
    for side in [Side::Source, Side::Target] {
        let s = ix(side);
        let validity_of = |rec: &crate::state::FolderRecord| match side {
            Side::Source => Some(rec.source_uidvalidity),
            Side::Target => rec.target_uidvalidity,
        };
        let mut by_validity: HashMap<u32, Vec<&String>> = HashMap::new();
        for (name, rec) in &records {
            if let Some(v) = validity_of(rec) {
                by_validity.entry(v).or_default().push(name);
            }
        }
        let mut out = SideState::default();
        let mut unlinked: Vec<(usize, &Listed)> = Vec::new();
        let mut claimed: HashSet<String> = HashSet::new();
        for l in &listed[s] {
            let name = l.folder.to_string();
            // Linked by UIDVALIDITY: the folder and its UIDs are the base's.
            let key = match by_validity.get(&l.uidvalidity).map(Vec::as_slice) {
                Some([one]) => Some((*one).clone()),
                Some(several) if !several.is_empty() => several
                    .iter()
                    .find(|n| **n == &name)
                    .or(several.first())
                    .map(|n| (*n).clone()),
                _ => None,
            };
            if let Some(k) = &key {
                claimed.insert(k.clone());
            }
            out.folders.push(SideFolder {
                path: l.folder.clone(),
                special_use: l.special_use.clone(),
                base: key.clone().map(FolderKey),
            });
            for m in &l.messages {
                let link = key.as_deref().and_then(|k| {
                    let source_uid = match side {
                        Side::Source => m.uid,
                        Side::Target => *by_target.get(&(k, m.uid))?,
                    };
                    let key = InstanceKey {
                        folder: FolderKey(k.to_string()),
                        source_uid,
                    };
                    identity_of.contains_key(&key).then_some(key)
                });
                let handle = handle_of(&l.folder, m.uid);
                snap.located[s].insert(
                    handle.clone(),
                    Located {
                        folder: l.folder.clone(),
                        meta: m.clone(),
                    },
                );
                let identity = match &link {
                    Some(k) => identity_of
                        .get(k)
                        .cloned()
                        .unwrap_or_else(|| Identity(String::new())),
                    None => {
                        unlinked.push((out.messages.len(), l));
                        Identity(String::new())
                    }
                };
                out.messages.push(SideMessage {
                    handle,
                    folder: l.folder.clone(),
                    identity,
                    flags: m.flags.clone(),
                    base: link,
                });
            }
        }
        // A folder at a base folder's path, where that base folder has no descendant by
        // UIDVALIDITY on this side, continues it (recreated after a delete, or never linked
        // under a UIDVALIDITY): the same folder for the merge, but its UIDs mean nothing,
        // so its messages stay unlinked (identity, then the move rule, link them).
        for f in out.folders.iter_mut().filter(|f| f.base.is_none()) {
            let name = f.path.to_string();
            if records.contains_key(&name) && !claimed.contains(&name) {
                claimed.insert(name.clone());
                f.base = Some(FolderKey(name));
            }
        }
        snap.messages[s] = out.messages.len();
        snap.fetched[s] = unlinked.len();
        snap.sides[s] = out;
        // Identities of the unlinked messages, fetched per folder in bounded batches.
        match side {
            Side::Source => fingerprint_unlinked(primary, &mut snap.sides[s], &unlinked).await?,
            Side::Target => fingerprint_unlinked(recovery, &mut snap.sides[s], &unlinked).await?,
        }
        link_moves(&mut snap.sides[s], &snap.base);
        events.event(Event::Notice(format!(
            "{}: {} folder(s), {} message(s), {} new since the failover (bodies fetched)",
            crate::reconcile::merge::side_name(side),
            snap.sides[s].folders.len(),
            snap.messages[s],
            snap.fetched[s]
        )));
    }

    // Held removals and quarantined messages: listed, never merged.
    for ((folder, uid), h) in state.held()? {
        let key = InstanceKey {
            folder: FolderKey(folder.clone()),
            source_uid: uid,
        };
        snap.held.push(HeldItem {
            kind: HeldKind::Removal,
            folder: FolderPath::from_display(&folder),
            identity: identity_of.get(&key).cloned(),
            reason: h.reason,
            base: Some(key),
            handles: Vec::new(),
        });
    }
    for ((folder, uid), q) in state.quarantine(None)? {
        let path = FolderPath::from_display(&folder);
        snap.held.push(HeldItem {
            kind: HeldKind::Quarantined,
            identity: Some(Identity::of_fingerprint(&q.fingerprint)),
            reason: format!("{} damage: {}", q.class, q.reason),
            base: None,
            handles: vec![(Side::Source, handle_of(&path, uid))],
            folder: path,
        });
    }
    Ok(snap)
}

/// Every selectable folder of a side with its UIDVALIDITY and messages. A failed listing
/// fails the failback: it must never read as "empty".
async fn list_all<S: MailStore>(store: &mut S) -> Result<Vec<Listed>, EngineError> {
    let mut out = Vec::new();
    for f in store.list_folders().await? {
        if !f.selectable {
            continue;
        }
        let status = store.open_folder(&f.path).await?;
        let messages = store.list_messages().await?;
        out.push(Listed {
            folder: f.path,
            special_use: f.special_use,
            uidvalidity: status.uidvalidity,
            messages,
        });
    }
    store.close_folder().await?;
    Ok(out)
}

/// Fetches the bodies of unlinked messages (index into `side.messages`) and sets their
/// identity to their fingerprint.
async fn fingerprint_unlinked<S: MailStore>(
    store: &mut S,
    side: &mut SideState,
    unlinked: &[(usize, &Listed)],
) -> Result<(), EngineError> {
    let mut by_folder: BTreeMap<&FolderPath, Vec<usize>> = BTreeMap::new();
    for (i, l) in unlinked {
        by_folder.entry(&l.folder).or_default().push(*i);
    }
    for (folder, idx) in by_folder {
        store.open_folder(folder).await?;
        let uid_of = |i: usize| -> Option<u32> {
            let h = &side.messages[i].handle.0;
            h.rsplit_once(':').and_then(|(_, u)| u.parse().ok())
        };
        let mut by_uid: HashMap<u32, usize> = HashMap::new();
        for &i in &idx {
            if let Some(uid) = uid_of(i) {
                by_uid.insert(uid, i);
            }
        }
        let uids: Vec<u32> = by_uid.keys().copied().collect();
        for chunk in uids.chunks(BATCH_MESSAGES) {
            for body in store.fetch_bodies(chunk).await? {
                if let Some(&i) = by_uid.get(&body.uid) {
                    side.messages[i].identity =
                        Identity::of_fingerprint(&Fingerprint::of(body.bytes()));
                }
            }
        }
    }
    // A message expunged between the listing and the fetch has no identity: it is gone.
    side.messages.retain(|m| !m.identity.0.is_empty());
    store.close_folder().await?;
    Ok(())
}

/// The move rule: a base instance gone from this side and a new message with the same
/// identity on it are one message, moved. Paired one to one, in key and handle order.
fn link_moves(side: &mut SideState, base: &Base) {
    let present: HashSet<&InstanceKey> = side
        .messages
        .iter()
        .filter_map(|m| m.base.as_ref())
        .collect();
    let mut gone: BTreeMap<&Identity, Vec<&InstanceKey>> = BTreeMap::new();
    for m in &base.messages {
        if !present.contains(&m.key) && !m.identity.0.starts_with("cheap-") {
            gone.entry(&m.identity).or_default().push(&m.key);
        }
    }
    for list in gone.values_mut() {
        list.sort();
        list.reverse(); // popped from the end: lowest key first
    }
    let mut new: Vec<usize> = (0..side.messages.len())
        .filter(|&i| side.messages[i].base.is_none())
        .collect();
    new.sort_by(|&a, &b| side.messages[a].handle.cmp(&side.messages[b].handle));
    let mut links = Vec::new();
    for i in new {
        if let Some(list) = gone.get_mut(&side.messages[i].identity) {
            if let Some(key) = list.pop() {
                links.push((i, key.clone()));
            }
        }
    }
    for (i, key) in links {
        side.messages[i].base = Some(key);
    }
}

/// What applying a plan did, per side (primary first).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub folders_created: [u64; 2],
    pub folders_renamed: [u64; 2],
    pub folders_deleted: [u64; 2],
    pub uploaded: [u64; 2],
    pub copied: [u64; 2],
    pub moved: [u64; 2],
    pub flags_set: [u64; 2],
    pub removed: [u64; 2],
    /// Actions left undone, with why (a folder not empty, a message gone meanwhile...).
    pub skipped: Vec<String>,
}

/// Removals the plan makes on a side: messages removed plus messages of deleted folders.
pub fn removals(plan: &MergePlan, side: Side) -> usize {
    plan.actions(side)
        .iter()
        .filter(|a| matches!(a, MergeAction::Remove { .. }))
        .count()
}

/// Where each listed folder of a side is now: listed path -> current path.
#[derive(Debug, Clone, Default)]
struct Paths(HashMap<FolderPath, FolderPath>);

impl Paths {
    fn new(side: &SideState) -> Paths {
        Paths(
            side.folders
                .iter()
                .map(|f| (f.path.clone(), f.path.clone()))
                .collect(),
        )
    }

    fn now(&self, listed: &FolderPath) -> FolderPath {
        self.0
            .get(listed)
            .cloned()
            .unwrap_or_else(|| listed.clone())
    }

    /// A RENAME of `from` (current path) to `to` moved it and every folder below it.
    fn renamed(&mut self, from: &FolderPath, to: &FolderPath) {
        for cur in self.0.values_mut() {
            if let Some(new) = cur.renamed(from, to) {
                *cur = new;
            }
        }
    }
}

/// Applies both sides' actions in the order of the module docs. Placements and flags are
/// written as the merge decided them; a message or folder that changed since the listing is
/// skipped and reported (the next failback would see it), never forced.
pub async fn apply_plan<A: MailStore, B: MailStore>(
    primary: &mut A,
    recovery: &mut B,
    plan: &MergePlan,
    snap: &Snapshot,
    events: &dyn EventSink,
) -> Result<ApplyReport, EngineError> {
    let mut report = ApplyReport::default();
    let mut paths = [Paths::new(&snap.sides[0]), Paths::new(&snap.sides[1])];

    folder_phase(primary, Side::Source, plan, &mut paths[0], &mut report).await?;
    folder_phase(recovery, Side::Target, plan, &mut paths[1], &mut report).await?;
    crashpoint::hit("failback_after_folders");

    let [p0, p1] = &paths;
    place_phase(
        primary,
        recovery,
        Side::Source,
        plan,
        snap,
        p0,
        p1,
        &mut report,
        events,
    )
    .await?;
    place_phase(
        recovery,
        primary,
        Side::Target,
        plan,
        snap,
        p1,
        p0,
        &mut report,
        events,
    )
    .await?;
    crashpoint::hit("failback_after_places");

    finish_phase(primary, Side::Source, plan, snap, p0, &mut report).await?;
    crashpoint::hit("failback_after_primary");
    finish_phase(recovery, Side::Target, plan, snap, p1, &mut report).await?;
    Ok(report)
}

async fn folder_phase<S: MailStore>(
    store: &mut S,
    side: Side,
    plan: &MergePlan,
    paths: &mut Paths,
    report: &mut ApplyReport,
) -> Result<(), EngineError> {
    let s = ix(side);
    store.close_folder().await?;
    for action in plan.actions(side) {
        match action {
            MergeAction::CreateFolder { path, special_use } => {
                // Created by an earlier, interrupted failback, or by a parent's creation.
                match store.create_folder(path, special_use.as_deref()).await {
                    Ok(()) => report.folders_created[s] += 1,
                    Err(e) if already_exists(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            MergeAction::RenameFolder { from, to } => {
                let cur = paths.now(from);
                if &cur == to {
                    continue; // a parent's RENAME already moved it
                }
                store.rename_folder(&cur, to).await?;
                paths.renamed(&cur, to);
                report.folders_renamed[s] += 1;
            }
            _ => {}
        }
    }
    Ok(())
}

fn already_exists(e: &StoreError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("alreadyexists") || text.contains("already exists")
}

fn uid_in(snap: &Snapshot, side: Side, handle: &Handle) -> Option<(FolderPath, MessageMeta)> {
    snap.located[ix(side)]
        .get(handle)
        .map(|l| (l.folder.clone(), l.meta.clone()))
}

/// (folder now, destination): one group of copies, uploads or moves.
type FromTo = (FolderPath, FolderPath);
/// Flags to add and remove on these UIDs.
type FlagGroup = (FlagSet, FlagSet, Vec<u32>);

/// Placements on `side`: copies of what it holds, uploads of what only `other` holds.
#[allow(clippy::too_many_arguments)]
async fn place_phase<S: MailStore, O: MailStore>(
    store: &mut S,
    other: &mut O,
    side: Side,
    plan: &MergePlan,
    snap: &Snapshot,
    paths: &Paths,
    other_paths: &Paths,
    report: &mut ApplyReport,
    events: &dyn EventSink,
) -> Result<(), EngineError> {
    let s = ix(side);
    // (source folder now, destination) -> [(uid, flags)]
    let mut copies: BTreeMap<(FolderPath, FolderPath), Vec<(u32, FlagSet)>> = BTreeMap::new();
    // (other side's folder now, destination) -> [(uid, flags)]
    let mut uploads: BTreeMap<FromTo, Vec<(u32, FlagSet, MessageMeta)>> = BTreeMap::new();
    for action in plan.actions(side) {
        let MergeAction::Place {
            folder,
            flags,
            source,
            ..
        } = action
        else {
            continue;
        };
        match source {
            PlaceSource::Copy { handle, .. } => match uid_in(snap, side, handle) {
                Some((listed, meta)) => copies
                    .entry((paths.now(&listed), folder.clone()))
                    .or_default()
                    .push((meta.uid, flags.clone())),
                None => report.skipped.push(format!("{action}: {handle} not found")),
            },
            PlaceSource::Upload { from, handle, .. } => match uid_in(snap, *from, handle) {
                Some((listed, meta)) => uploads
                    .entry((other_paths.now(&listed), folder.clone()))
                    .or_default()
                    .push((meta.uid, flags.clone(), meta)),
                None => report.skipped.push(format!("{action}: {handle} not found")),
            },
        }
    }

    for ((from, to), items) in copies {
        store.open_folder(&from).await?;
        let uids: Vec<u32> = items.iter().map(|(u, _)| *u).collect();
        let result = store.copy(&uids, &to).await?;
        let new_uid: HashMap<u32, Option<u32>> = result.into_iter().collect();
        store.open_folder(&to).await?;
        for (uid, flags) in &items {
            match new_uid.get(uid).copied().flatten() {
                Some(n) => {
                    store.store_flags(&[n], FlagChange::Replace, flags).await?;
                    report.copied[s] += 1;
                }
                None => report.skipped.push(format!(
                    "copy of {from}:{uid} into {to}: the server gave no new UID (gone, or no UIDPLUS); its flags were not set"
                )),
            }
        }
    }

    for ((from, to), items) in uploads {
        let mut start = 0;
        while start < items.len() {
            let mut end = start;
            let mut bytes = 0u64;
            while end < items.len()
                && end - start < BATCH_MESSAGES
                && (end == start || bytes + u64::from(items[end].2.size) <= BATCH_BYTES)
            {
                bytes += u64::from(items[end].2.size);
                end += 1;
            }
            let batch = &items[start..end];
            start = end;
            other.open_folder(&from).await?;
            let uids: Vec<u32> = batch.iter().map(|(u, _, _)| *u).collect();
            let bodies = other.fetch_bodies(&uids).await?;
            let by_uid: HashMap<u32, &crate::mailstore::FetchedBody> =
                bodies.iter().map(|b| (b.uid, b)).collect();
            let mut sent = Vec::new();
            let mut normalized = Vec::new();
            for (uid, flags, meta) in batch {
                match by_uid.get(uid) {
                    Some(b) => {
                        normalized.push(normalize_line_endings(b.bytes()).into_owned());
                        sent.push((flags, meta));
                    }
                    None => report.skipped.push(format!(
                        "upload of {from}:{uid} from the {} into {to}: gone since the listing",
                        crate::reconcile::merge::side_name(side.other())
                    )),
                }
            }
            let requests: Vec<AppendRequest<'_>> = sent
                .iter()
                .zip(&normalized)
                .map(|((flags, meta), bytes)| AppendRequest {
                    flags,
                    internaldate: &meta.internaldate,
                    bytes,
                })
                .collect();
            if requests.is_empty() {
                continue;
            }
            let results = store.append(&to, &requests).await?;
            for (r, (_, meta)) in results.into_iter().zip(&sent) {
                match r {
                    Ok(_) => report.uploaded[s] += 1,
                    Err(e) => report.skipped.push(format!(
                        "upload of {from}:{} into {to} on the {} side was refused: {e}",
                        meta.uid,
                        crate::reconcile::merge::side_name(side)
                    )),
                }
            }
            crashpoint::hit("failback_after_upload_batch");
            events.event(Event::Placed {
                folder: to.clone(),
                messages: requests.len() as u64,
                bytes,
            });
        }
    }
    other.close_folder().await?;
    store.close_folder().await?;
    Ok(())
}

/// Flags, moves, removals and folder deletions on one side.
async fn finish_phase<S: MailStore>(
    store: &mut S,
    side: Side,
    plan: &MergePlan,
    snap: &Snapshot,
    paths: &Paths,
    report: &mut ApplyReport,
) -> Result<(), EngineError> {
    let s = ix(side);
    // Flags, grouped by (folder now, add, remove) so one STORE covers many messages.
    let mut flag_groups: BTreeMap<(FolderPath, String, String), FlagGroup> = BTreeMap::new();
    let mut moves: BTreeMap<(FolderPath, FolderPath), Vec<u32>> = BTreeMap::new();
    let mut removes: BTreeMap<FolderPath, Vec<u32>> = BTreeMap::new();
    let mut deletes: Vec<FolderPath> = Vec::new();
    for action in plan.actions(side) {
        let find = |handle: &Handle| uid_in(snap, side, handle);
        match action {
            MergeAction::SetFlags {
                handle,
                add,
                remove,
                ..
            } => match find(handle) {
                Some((listed, meta)) => {
                    let e = flag_groups
                        .entry((paths.now(&listed), add.to_string(), remove.to_string()))
                        .or_insert_with(|| (add.clone(), remove.clone(), Vec::new()));
                    e.2.push(meta.uid);
                }
                None => report.skipped.push(format!("{action}: not found")),
            },
            MergeAction::Move { handle, to, .. } => match find(handle) {
                Some((listed, meta)) => moves
                    .entry((paths.now(&listed), to.clone()))
                    .or_default()
                    .push(meta.uid),
                None => report.skipped.push(format!("{action}: not found")),
            },
            MergeAction::Remove { handle, .. } => match find(handle) {
                Some((listed, meta)) => removes
                    .entry(paths.now(&listed))
                    .or_default()
                    .push(meta.uid),
                None => report.skipped.push(format!("{action}: not found")),
            },
            MergeAction::DeleteFolder { path } => deletes.push(paths.now(path)),
            _ => {}
        }
    }
    for ((folder, _, _), (add, remove, uids)) in flag_groups {
        store.open_folder(&folder).await?;
        if !add.is_empty() {
            store.store_flags(&uids, FlagChange::Add, &add).await?;
        }
        if !remove.is_empty() {
            store
                .store_flags(&uids, FlagChange::Remove, &remove)
                .await?;
        }
        report.flags_set[s] += uids.len() as u64;
    }
    for ((from, to), uids) in moves {
        store.open_folder(&from).await?;
        let done = store.move_messages(&uids, &to).await?;
        report.moved[s] += done.iter().filter(|(_, n)| n.is_some()).count() as u64;
    }
    for (folder, uids) in removes {
        store.open_folder(&folder).await?;
        store.expunge(&uids).await?;
        report.removed[s] += uids.len() as u64;
        crashpoint::hit("failback_after_remove");
    }
    deletes.sort_by_key(|p| std::cmp::Reverse(p.components().len()));
    for path in deletes {
        // Never DELETE a folder that still holds mail (delivered since the listing, say):
        // Dovecot would delete the messages with it.
        let status = match store.open_folder(&path).await {
            Ok(st) => st,
            Err(StoreError::NoSuchFolder { .. }) => continue, // deleted by an earlier run
            Err(e) => return Err(e.into()),
        };
        store.close_folder().await?;
        if status.exists > 0 {
            report.skipped.push(format!(
                "delete folder {path} on the {} side: it still holds {} message(s); left in place",
                crate::reconcile::merge::side_name(side),
                status.exists
            ));
            continue;
        }
        store.delete_folder(&path).await?;
        report.folders_deleted[s] += 1;
    }
    store.close_folder().await?;
    Ok(())
}
