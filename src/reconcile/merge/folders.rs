//! Folder merge: base folders by id, then new folders by path, into the merged tree's slots.

use std::collections::{BTreeMap, HashMap};

use super::input::{FolderKey, SIDES};
use super::plan::{Conflict, ConflictKind, ConflictSubject};
use super::view::{BaseView, SideView};
use crate::model::{FolderPath, Side};

/// A folder of the merged tree while it is being decided.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub path: FolderPath,
    pub special_use: Option<String>,
    pub origin: Vec<FolderKey>,
    /// Per side, the side's folders (view indices) that become this folder.
    pub members: [Vec<usize>; 2],
    /// Deleted on this side and kept on the other: goes unless something still needs it.
    pub deleted_on: Option<Side>,
    /// The base path, for reports.
    pub base_path: Option<FolderPath>,
    pub alive: bool,
}

/// The merged tree before messages are placed in it.
pub(super) struct FolderMerge {
    pub slots: Vec<Slot>,
    /// Per side, view folder -> slot.
    pub slot_of: [Vec<usize>; 2],
    /// Base folder -> the slots where its messages stay when neither side moved them.
    pub home: HashMap<FolderKey, Vec<usize>>,
}

/// The special-use a folder keeps: a side's change wins over the base, and when both changed
/// it differently the smaller one (so that the merge does not depend on which side is which).
fn merged_special_use(
    base: &Option<String>,
    primary: &Option<String>,
    recovery: &Option<String>,
) -> Option<String> {
    match (primary != base, recovery != base) {
        (true, true) => std::cmp::min(primary, recovery).clone(),
        (true, false) => primary.clone(),
        (false, _) => recovery.clone(),
    }
}

/// Builds the slots: one per base folder (two when it was renamed differently on both
/// sides), one per path of a folder created since the failover.
pub(super) fn merge_folders(
    base: &BaseView<'_>,
    views: &[SideView<'_>; 2],
    conflicts: &mut Vec<Conflict>,
) -> FolderMerge {
    let mut slots: Vec<Slot> = Vec::new();
    let mut home: HashMap<FolderKey, Vec<usize>> = HashMap::new();
    let mut slot_of: [Vec<usize>; 2] = [
        vec![usize::MAX; views[0].folders.len()],
        vec![usize::MAX; views[1].folders.len()],
    ];
    for (key, bf) in &base.folders {
        let at = [views[0].folder_of_base(key), views[1].folder_of_base(key)];
        let path_on = |s: usize, i: usize| views[s].folders[i].path.clone();
        let mut slot = |path: FolderPath, members: [Vec<usize>; 2], deleted_on, special_use| {
            slots.push(Slot {
                path,
                special_use,
                origin: vec![(*key).clone()],
                members,
                deleted_on,
                base_path: Some(bf.path.clone()),
                alive: true,
            });
            slots.len() - 1
        };
        match at {
            [Some(a), Some(b)] => {
                let (pa, pb) = (path_on(0, a), path_on(1, b));
                let special_use = merged_special_use(
                    &bf.special_use,
                    &views[0].folders[a].special_use,
                    &views[1].folders[b].special_use,
                );
                if pa == bf.path || pb == bf.path || pa == pb {
                    // Renamed on one side -> the same on the other.
                    let path = if pa != bf.path { pa } else { pb };
                    let i = slot(path, [vec![a], vec![b]], None, special_use);
                    home.insert((*key).clone(), vec![i]);
                } else {
                    // Renamed differently on both -> both names kept (copy), reported.
                    let i = slot(pa.clone(), [vec![a], vec![]], None, special_use.clone());
                    let j = slot(pb.clone(), [vec![], vec![b]], None, special_use);
                    home.insert((*key).clone(), vec![i, j]);
                    conflicts.push(Conflict {
                        folder: bf.path.clone(),
                        subject: ConflictSubject::Folder((*key).clone()),
                        kind: ConflictKind::RenamedDifferently {
                            primary: pa,
                            recovery: pb,
                        },
                    });
                }
            }
            [Some(a), None] => {
                let f = &views[0].folders[a];
                let i = slot(
                    f.path.clone(),
                    [vec![a], vec![]],
                    Some(Side::Target),
                    f.special_use.clone(),
                );
                home.insert((*key).clone(), vec![i]);
            }
            [None, Some(b)] => {
                let f = &views[1].folders[b];
                let i = slot(
                    f.path.clone(),
                    [vec![], vec![b]],
                    Some(Side::Source),
                    f.special_use.clone(),
                );
                home.insert((*key).clone(), vec![i]);
            }
            [None, None] => {
                home.insert((*key).clone(), Vec::new());
            }
        }
    }
    for (s, view) in views.iter().enumerate() {
        for (i, _) in view
            .folder_base
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_none())
        {
            let f = &view.folders[i];
            // Created on one side -> the same on the other; created on both -> one folder.
            let existing = slots
                .iter()
                .position(|sl| sl.origin.is_empty() && sl.path == f.path);
            match existing {
                Some(j) => slots[j].members[s].push(i),
                None => {
                    let mut members = [vec![], vec![]];
                    members[s].push(i);
                    slots.push(Slot {
                        path: f.path.clone(),
                        special_use: f.special_use.clone(),
                        origin: Vec::new(),
                        members,
                        deleted_on: None,
                        base_path: None,
                        alive: true,
                    });
                }
            }
        }
    }
    for (j, sl) in slots.iter().enumerate() {
        for (of_side, members) in slot_of.iter_mut().zip(&sl.members) {
            for &i in members {
                of_side[i] = j;
            }
        }
    }
    FolderMerge {
        slots,
        slot_of,
        home,
    }
}

/// A folder deletion is the removal of each of its messages plus the folder: the folder goes
/// only if no kept message, child folder or held message remains, else it is kept (recreated
/// on the side that deleted it) and reported.
pub(super) fn decide_deletions(
    fm: &mut FolderMerge,
    messages_per_slot: &[usize],
    views: &[SideView<'_>; 2],
    conflicts: &mut Vec<Conflict>,
) {
    let mut pending: Vec<usize> = (0..fm.slots.len())
        .filter(|&j| fm.slots[j].deleted_on.is_some())
        .collect();
    // Deepest first, so that a kept child keeps its parent.
    pending.sort_by_key(|&j| std::cmp::Reverse(fm.slots[j].path.components().len()));
    for j in pending {
        let path = fm.slots[j].path.clone();
        let children = fm
            .slots
            .iter()
            .filter(|c| c.alive && c.path != path && c.path.ancestors().any(|a| a == path))
            .count();
        let held: usize = SIDES
            .iter()
            .map(|&side| {
                let s = super::input::ix(side);
                fm.slots[j].members[s]
                    .iter()
                    .filter(|&&i| views[s].holds_held.contains(&i))
                    .count()
            })
            .sum();
        let slot = &mut fm.slots[j];
        let (Some(deleted_on), Some(base_path)) = (slot.deleted_on, slot.base_path.clone()) else {
            continue;
        };
        let subject = ConflictSubject::Folder(
            slot.origin
                .first()
                .cloned()
                .unwrap_or_else(|| FolderKey(base_path.to_string())),
        );
        let messages = messages_per_slot.get(j).copied().unwrap_or(0);
        if messages + children + held > 0 {
            conflicts.push(Conflict {
                folder: base_path,
                subject,
                kind: ConflictKind::DeletedButKept {
                    deleted_on,
                    messages,
                    children,
                    held,
                },
            });
        } else {
            slot.alive = false;
            if slot.path != base_path {
                // The rename is an intent too: say that it lost to the deletion.
                conflicts.push(Conflict {
                    folder: base_path,
                    subject,
                    kind: ConflictKind::RenamedButDeleted {
                        renamed_on: deleted_on.other(),
                        to: slot.path.clone(),
                    },
                });
            }
        }
    }
}

/// Different folders that end up with one path are merged into one, reported; returns, per
/// slot, the slot it was merged into.
pub(super) fn merge_collisions(fm: &mut FolderMerge, conflicts: &mut Vec<Conflict>) -> Vec<usize> {
    let mut by_path: BTreeMap<FolderPath, Vec<usize>> = BTreeMap::new();
    for (j, sl) in fm.slots.iter().enumerate().filter(|(_, sl)| sl.alive) {
        by_path.entry(sl.path.clone()).or_default().push(j);
    }
    let mut into: Vec<usize> = (0..fm.slots.len()).collect();
    for (path, group) in by_path {
        let Some((&first, rest)) = group.split_first() else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        for &j in rest {
            into[j] = first;
            let other = fm.slots[j].clone();
            fm.slots[j].alive = false;
            let keep = &mut fm.slots[first];
            keep.origin.extend(other.origin);
            for s in 0..2 {
                keep.members[s].extend(other.members[s].iter().copied());
            }
            if keep.special_use.is_none() {
                keep.special_use = other.special_use;
            }
        }
        conflicts.push(Conflict {
            folder: path.clone(),
            subject: ConflictSubject::Path(path),
            kind: ConflictKind::NamesCollide {
                folders: group.len(),
            },
        });
    }
    for s in 0..2 {
        for j in fm.slot_of[s].iter_mut() {
            if let Some(&k) = into.get(*j) {
                *j = k;
            }
        }
    }
    into
}
