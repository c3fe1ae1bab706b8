//! From the merged tree to one side's actions: what that side must do to hold the merged state.

use std::collections::{HashMap, HashSet};

use super::folders::FolderMerge;
use super::messages::Placed;
use super::plan::{MergeAction, PlaceSource};
use super::view::SideView;
use crate::model::FolderPath;

/// The actions that turn one side (`views[s]`) into the merged state.
pub(super) fn side_actions(
    s: usize,
    views: &[SideView<'_>; 2],
    fm: &FolderMerge,
    placed: &[Placed],
) -> Vec<MergeAction> {
    let view = &views[s];
    let other = &views[1 - s];
    let mut alive: Vec<usize> = (0..fm.slots.len()).filter(|&j| fm.slots[j].alive).collect();
    alive.sort_by(|&a, &b| fm.slots[a].path.cmp(&fm.slots[b].path));

    // Each merged folder is carried by the side's folder already at its path (whichever base
    // folder that was), else by one of its own folders, renamed; else it is created. So a
    // rename never lands on a path still in use, and swapped names need no temporary name.
    let mut carrier: HashMap<usize, usize> = HashMap::new();
    let mut carried: HashMap<usize, usize> = HashMap::new();
    for &j in &alive {
        if let Some(&f) = view.folder_at.get(&fm.slots[j].path) {
            carrier.insert(j, f);
            carried.insert(f, j);
        }
    }
    for &j in &alive {
        if carrier.contains_key(&j) {
            continue;
        }
        let mut members = fm.slots[j].members[s].clone();
        members.sort_by(|&a, &b| view.folders[a].path.cmp(&view.folders[b].path));
        if let Some(&f) = members.iter().find(|f| !carried.contains_key(f)) {
            carrier.insert(j, f);
            carried.insert(f, j);
        }
    }
    // Where each of the side's folders is once the folder actions ran.
    let path_after = |f: usize| -> FolderPath {
        match carried.get(&f) {
            Some(&j) => fm.slots[j].path.clone(),
            None => view.folders[f].path.clone(),
        }
    };

    let mut creates = Vec::new();
    let mut renames = Vec::new();
    for &j in &alive {
        let slot = &fm.slots[j];
        match carrier.get(&j) {
            None => creates.push(MergeAction::CreateFolder {
                path: slot.path.clone(),
                special_use: slot.special_use.clone(),
            }),
            Some(&f) if view.folders[f].path != slot.path => {
                renames.push(MergeAction::RenameFolder {
                    from: view.folders[f].path.clone(),
                    to: slot.path.clone(),
                })
            }
            Some(_) => {}
        }
    }
    creates.sort_by_key(|a| a.folder().components().len());

    let mut ordered: Vec<&Placed> = placed.iter().filter(|p| fm.slots[p.slot].alive).collect();
    ordered.sort_by(|a, b| {
        (&fm.slots[a.slot].path, &a.identity, &a.base).cmp(&(
            &fm.slots[b.slot].path,
            &b.identity,
            &b.base,
        ))
    });
    let kept: HashSet<usize> = ordered.iter().filter_map(|p| p.from[s]).collect();
    // Messages of this side no merged instance is: removed, unless a placement takes them.
    let mut removable: Vec<usize> = (0..view.messages.len())
        .filter(|m| !kept.contains(m))
        .collect();
    removable.sort_by(|&a, &b| view.messages[a].handle.cmp(&view.messages[b].handle));
    let mut taken: HashSet<usize> = HashSet::new();

    let mut places = Vec::new();
    let mut moves = Vec::new();
    let mut flag_sets = Vec::new();
    for p in &ordered {
        let to = fm.slots[p.slot].path.clone();
        // A message is moved only when the same plan removes it from its folder.
        let existing = p.from[s].or_else(|| {
            let m = removable
                .iter()
                .copied()
                .find(|m| !taken.contains(m) && view.messages[*m].identity == p.identity)?;
            taken.insert(m);
            Some(m)
        });
        match existing {
            Some(m) => {
                let f = view.message_folder[m];
                let msg = view.messages[m];
                if carrier.get(&p.slot) != Some(&f) {
                    moves.push(MergeAction::Move {
                        handle: msg.handle.clone(),
                        from: path_after(f),
                        to: to.clone(),
                    });
                }
                let add = p.flags.minus(&msg.flags);
                let remove = msg.flags.minus(&p.flags);
                if !add.is_empty() || !remove.is_empty() {
                    flag_sets.push(MergeAction::SetFlags {
                        folder: to,
                        handle: msg.handle.clone(),
                        add,
                        remove,
                    });
                }
            }
            None => {
                let same = |v: &SideView<'_>, m: usize| v.messages[m].identity == p.identity;
                let copy = (0..view.messages.len()).find(|&m| same(view, m));
                let source = match copy {
                    Some(m) => PlaceSource::Copy {
                        folder: path_after(view.message_folder[m]),
                        handle: view.messages[m].handle.clone(),
                    },
                    None => {
                        let Some(m) = p.from[1 - s]
                            .or_else(|| (0..other.messages.len()).find(|&m| same(other, m)))
                        else {
                            continue;
                        };
                        PlaceSource::Upload {
                            from: other.side,
                            folder: other.folders[other.message_folder[m]].path.clone(),
                            handle: other.messages[m].handle.clone(),
                        }
                    }
                };
                places.push(MergeAction::Place {
                    folder: to,
                    identity: p.identity.clone(),
                    flags: p.flags.clone(),
                    source,
                });
            }
        }
    }
    let removes = removable
        .iter()
        .filter(|m| !taken.contains(m))
        .map(|&m| MergeAction::Remove {
            folder: path_after(view.message_folder[m]),
            handle: view.messages[m].handle.clone(),
            identity: view.messages[m].identity.clone(),
        });

    // A folder no merged folder keeps is deleted last, once emptied; never one holding a held
    // message.
    let mut deletes: Vec<&FolderPath> = (0..view.folders.len())
        .filter(|f| !carried.contains_key(f) && !view.holds_held.contains(f))
        .map(|f| &view.folders[f].path)
        .collect();
    deletes.sort_by_key(|p| std::cmp::Reverse(p.components().len()));

    let mut actions = creates;
    actions.extend(renames);
    actions.extend(places);
    actions.extend(moves);
    actions.extend(flag_sets);
    actions.extend(removes);
    actions.extend(
        deletes
            .into_iter()
            .map(|path| MergeAction::DeleteFolder { path: path.clone() }),
    );
    actions
}
