//! Message merge: each base instance's fate and location, then the instances new on either side.

use std::collections::BTreeMap;

use super::folders::FolderMerge;
use super::input::{Identity, InstanceKey, MergePolicy, SIDES};
use super::plan::{Conflict, ConflictKind, ConflictSubject, RemovedBy};
use super::view::{BaseView, SideView};
use crate::model::{Flag, FlagSet, FolderPath, Side};

/// A message of the merged state while slots are still being decided.
#[derive(Debug, Clone)]
pub(super) struct Placed {
    pub slot: usize,
    pub identity: Identity,
    pub flags: FlagSet,
    pub base: Option<InstanceKey>,
    /// Per side, the view message that already is this instance.
    pub from: [Option<usize>; 2],
}

/// What one side did to a base instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Expunged,
    /// Still there with `\Deleted` added since the base.
    FlaggedDeleted,
    Changed,
    Unchanged,
}

fn is_deleted(flag: &Flag) -> bool {
    flag.as_str().eq_ignore_ascii_case("\\Deleted")
}

fn is_seen(flag: &Flag) -> bool {
    flag.as_str().eq_ignore_ascii_case("\\Seen")
}

/// Flags per instance: `(A ∩ B) ∪ (A − base) ∪ (B − base)`, compared case-insensitively.
pub fn merge_flags(base: &FlagSet, primary: &FlagSet, recovery: &FlagSet) -> FlagSet {
    let both = primary.minus(&primary.minus(recovery));
    both.iter()
        .chain(primary.minus(base).iter())
        .chain(recovery.minus(base).iter())
        .cloned()
        .collect()
}

/// Adding `\Deleted` is a removal intent, not a change; adding only `\Seen` is not a change
/// that beats a removal unless `read_beats_delete`; a move or any other flag change is a change.
pub(super) fn fate(base: &FlagSet, now: Option<(&FlagSet, bool)>, policy: MergePolicy) -> Fate {
    let Some((flags, moved)) = now else {
        return Fate::Expunged;
    };
    if flags.iter().any(is_deleted) && !base.iter().any(is_deleted) {
        return Fate::FlaggedDeleted;
    }
    let added = flags.minus(base);
    let removed = base.minus(flags);
    let only_read = removed.is_empty() && added.len() == 1 && added.iter().all(is_seen);
    let flags_changed =
        !(added.is_empty() && removed.is_empty()) && (policy.read_beats_delete || !only_read);
    if moved || flags_changed {
        Fate::Changed
    } else {
        Fate::Unchanged
    }
}

/// What the merge does with a base instance, given each side's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Gone,
    Kept,
    /// Removed on `Side` but changed on the other: kept, `\Deleted` cleared, reported.
    Restored(Side, RemovedBy),
}

/// Removed on one side and unchanged on the other -> removed on the other; removed on one side
/// and changed on the other -> kept and restored, reported; `\Deleted` added on one side and
/// the other unchanged -> kept with `\Deleted` on both (the intent travels, the expunge stays
/// the user's), which keeps `merge(base, A, A)` empty.
fn outcome(fates: [Fate; 2]) -> Outcome {
    use Fate::*;
    match fates {
        [Expunged, Expunged | FlaggedDeleted | Unchanged]
        | [FlaggedDeleted | Unchanged, Expunged] => Outcome::Gone,
        [Expunged, Changed] => Outcome::Restored(Side::Source, RemovedBy::Expunged),
        [Changed, Expunged] => Outcome::Restored(Side::Target, RemovedBy::Expunged),
        [FlaggedDeleted, Changed] => Outcome::Restored(Side::Source, RemovedBy::FlaggedDeleted),
        [Changed, FlaggedDeleted] => Outcome::Restored(Side::Target, RemovedBy::FlaggedDeleted),
        _ => Outcome::Kept,
    }
}

/// Places every message against the merged folder tree; location and flags merge
/// independently.
pub(super) fn merge_messages(
    base: &BaseView<'_>,
    views: &[SideView<'_>; 2],
    fm: &FolderMerge,
    policy: MergePolicy,
    conflicts: &mut Vec<Conflict>,
) -> Vec<Placed> {
    let mut placed = Vec::new();
    for bm in &base.messages {
        let folder_key = &bm.key.folder;
        let present: [Option<usize>; 2] = [
            views[0].descendant.get(&bm.key).copied(),
            views[1].descendant.get(&bm.key).copied(),
        ];
        let folder_of = |s: usize, m: usize| views[s].message_folder[m];
        let moved =
            |s: usize, m: usize| views[s].folder_base[folder_of(s, m)].as_ref() != Some(folder_key);
        let fates = [0, 1].map(|s| {
            fate(
                &bm.flags,
                present[s].map(|m| (&views[s].messages[m].flags, moved(s, m))),
                policy,
            )
        });
        let outcome = outcome(fates);
        if outcome == Outcome::Gone {
            continue;
        }
        let flags_on = |s: usize| present[s].map(|m| &views[s].messages[m].flags);
        let mut flags = match (flags_on(0), flags_on(1)) {
            (Some(a), Some(b)) => merge_flags(&bm.flags, a, b),
            (Some(only), None) | (None, Some(only)) => only.clone(),
            (None, None) => continue,
        };
        let base_folder_path = base
            .folders
            .get(folder_key)
            .map(|f| f.path.clone())
            .unwrap_or_else(FolderPath::inbox);
        if let Outcome::Restored(removed_on, how) = outcome {
            flags = flags.filtered(|f| !is_deleted(f) || bm.flags.contains(f));
            conflicts.push(Conflict {
                folder: base_folder_path.clone(),
                subject: ConflictSubject::Instance(bm.key.clone()),
                kind: ConflictKind::RemovedButChanged {
                    identity: bm.identity.clone(),
                    removed_on,
                    how,
                },
            });
        }
        // Moved on one side -> moved on the other; moved apart on both -> kept in both.
        let mut slots: Vec<usize> = Vec::new();
        for (s, m) in present.iter().enumerate() {
            if let Some(m) = m.filter(|&m| moved(s, m)) {
                let slot = fm.slot_of[s][folder_of(s, m)];
                if !slots.contains(&slot) {
                    slots.push(slot);
                }
            }
        }
        if slots.len() == 2 {
            conflicts.push(Conflict {
                folder: base_folder_path.clone(),
                subject: ConflictSubject::Instance(bm.key.clone()),
                kind: ConflictKind::MovedApart {
                    identity: bm.identity.clone(),
                    primary: fm.slots[slots[0]].path.clone(),
                    recovery: fm.slots[slots[1]].path.clone(),
                },
            });
        }
        if slots.is_empty() {
            slots = fm.home.get(folder_key).cloned().unwrap_or_default();
        }
        for slot in slots {
            let from =
                [0, 1].map(|s| present[s].filter(|&m| fm.slot_of[s][folder_of(s, m)] == slot));
            placed.push(Placed {
                slot,
                identity: bm.identity.clone(),
                flags: flags.clone(),
                base: Some(bm.key.clone()),
                from,
            });
        }
    }
    placed.extend(merge_new(views, fm));
    placed
}

/// New on one side -> placed on the other; the same content new on both sides counts once:
/// per (folder, identity) the instances added are `max(a − base, b − base, 0)`, paired in
/// flag order, each pair's flags the union of both.
fn merge_new(views: &[SideView<'_>; 2], fm: &FolderMerge) -> Vec<Placed> {
    let mut groups: BTreeMap<(usize, &Identity), [Vec<usize>; 2]> = BTreeMap::new();
    for side in SIDES {
        let s = super::input::ix(side);
        for &m in &views[s].new {
            let slot = fm.slot_of[s][views[s].message_folder[m]];
            let identity = &views[s].messages[m].identity;
            groups.entry((slot, identity)).or_default()[s].push(m);
        }
    }
    let mut placed = Vec::new();
    for ((slot, identity), mut per_side) in groups {
        for (s, list) in per_side.iter_mut().enumerate() {
            list.sort_by_key(|&m| {
                let msg = views[s].messages[m];
                (
                    msg.flags.to_imap_list().to_ascii_lowercase(),
                    msg.handle.clone(),
                )
            });
        }
        let count = per_side[0].len().max(per_side[1].len());
        for n in 0..count {
            let from = [per_side[0].get(n).copied(), per_side[1].get(n).copied()];
            let flags: FlagSet = (0..2)
                .filter_map(|s| from[s].map(|m| &views[s].messages[m].flags))
                .flat_map(|f| f.iter().cloned())
                .collect();
            placed.push(Placed {
                slot,
                identity: identity.clone(),
                flags,
                base: None,
                from,
            });
        }
    }
    placed
}
