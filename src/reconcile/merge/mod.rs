//! Failback's three-way merge: base x primary now x recovery now -> a plan per side. Pure.
//!
//! Folders are merged first (by folder id), then messages are placed against the merged
//! folder tree; location and flags of an instance merge independently. Each rule is one
//! sentence at the code that implements it:
//!
//! - folders: `folders::merge_folders` (renames, creations), `folders::decide_deletions` (a
//!   deletion removes the messages; the folder goes only if nothing kept remains) and
//!   `folders::merge_collisions`;
//! - messages: `messages::fate` (what counts as a removal or a change), [`merge_flags`] (the
//!   flag formula), `messages::outcome` (removal against change), `messages::merge_new` (the
//!   same content new on both sides counts once);
//! - one side's actions, from the merged state: `diff::side_actions`.
//!
//! # Readings chosen where DESIGN.md is silent (each keeps mail)
//!
//! - `\Deleted` added on one side, the other side untouched: the merged instance keeps
//!   `\Deleted` on both sides (the intent travels; the expunge stays the user's). Expunging it
//!   would make `merge(base, A, A)` plan removals, against stability.
//! - A message kept and restored against a removal loses a `\Deleted` added since the base.
//! - A `\Seen`-only change losing to a removal is not reported (the rule says it loses).
//! - "The same content new on both sides counts once" counts instances without a base link,
//!   per merged folder and identity; moves are followed by their base link instead.
//! - A folder renamed on one side and deleted on the other, with nothing in it changed, is
//!   deleted and reported. Different folders ending with one path are merged, reported.
//! - Paths merge whole: a parent renamed on one side while a child is renamed on the other
//!   reads as the child renamed differently on both (both names kept, reported).
//! - A merged folder is carried by the side's folder already at its path, whichever it was,
//!   so renames never land on a path in use (swapped names become moves of the messages).
//!   Each renamed folder gets its own `RenameFolder`; the engine skips one a parent's IMAP
//!   RENAME already did. [`apply`] renames one folder per action.
//!
//! The result is the plan (actions per side, conflicts, held items) and the merged state it
//! leads to, which is also the fresh base the engine records after failback.
//!
//! # Filling the input (notes for the engine)
//!
//! - [`Base`]: one [`BaseFolder`] per `state::FOLDERS` entry, key = the state's folder key
//!   (the path in display form), path and special-use as at failover; one [`BaseMessage`] per
//!   `state::InstanceRecord`, key = (folder key, source UID), identity =
//!   [`Identity::of_fingerprint`] of `fingerprint` (an instance without one, matched by cheap
//!   keys, gets its tolerant key), flags = `InstanceRecord::flags` (the flags last made equal
//!   on both sides, which is exactly the base of the flag formula).
//! - [`SideState`] per side from its listing (`mailstore::FolderInfo`, then
//!   `mailstore::MessageMeta` per selectable folder): a folder's `base` is the base folder
//!   whose id it has (UIDVALIDITY kept, or MAILBOXID / JMAP id; a `FolderRecord` holds
//!   `source_uidvalidity` for the primary and `target_uidvalidity` for the recovery), `None`
//!   otherwise. A message's `base` is the instance whose UID it has on that side (source UID on
//!   the primary, `target_uid` on the recovery) in a folder that kept its UIDVALIDITY; a
//!   message found in another folder is linked to its base instance when the engine matched
//!   the move (EMAILID, X-GM-MSGID, or the move rule of "Change detection"); unmatched, it
//!   reads as removed + new, which merges to the same state with a copy instead of a move.
//!   Identity of a message without a base link: its fingerprint, fetched for new messages only.
//!   `handle` is anything unique on that side (`<folder>:<uid>`, the Email id).
//! - [`HeldItem`]: one per `state::HELD` entry (its base instance) and per `state::QUARANTINE`
//!   entry (the primary's handle); the merge leaves them alone and lists them.
//! - Flags a side cannot store (fidelity notes) should be left out of both the base and that
//!   side's listing before merging, as one-way planning does.

mod apply;
mod diff;
mod folders;
mod input;
mod messages;
mod plan;
mod render;
mod view;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod tests;

pub use apply::apply;
pub use input::{
    side_name, Base, BaseFolder, BaseMessage, FolderKey, Handle, HeldItem, HeldKind, Identity,
    InstanceKey, MergeInput, MergePolicy, SideFolder, SideMessage, SideState,
};
pub use messages::merge_flags;
pub use plan::{
    Conflict, ConflictKind, ConflictSubject, MergeAction, MergePlan, MergedFolder, MergedMessage,
    MergedState, PlaceSource, RemovedBy,
};
pub use render::{flags_diff, folder_listing, listing_diff};

use crate::model::Side;
use view::{BaseView, SideView};

/// Merges the base, the primary and the recovery side into one plan. Total and pure:
/// every input gives a plan; conflicts are data.
pub fn merge(input: &MergeInput<'_>) -> MergePlan {
    let base = BaseView::new(input.base, input.held);
    let views = [
        SideView::new(Side::Source, input.primary, &base, input.held),
        SideView::new(Side::Target, input.recovery, &base, input.held),
    ];
    let mut conflicts = Vec::new();
    let mut tree = folders::merge_folders(&base, &views, &mut conflicts);
    let mut placed = messages::merge_messages(&base, &views, &tree, input.policy, &mut conflicts);
    let mut per_slot = vec![0usize; tree.slots.len()];
    for p in &placed {
        per_slot[p.slot] += 1;
    }
    folders::decide_deletions(&mut tree, &per_slot, &views, &mut conflicts);
    let into = folders::merge_collisions(&mut tree, &mut conflicts);
    for p in placed.iter_mut() {
        p.slot = into[p.slot];
    }
    let actions = [0, 1].map(|s| diff::side_actions(s, &views, &tree, &placed));

    let merged = MergedState {
        folders: tree
            .slots
            .iter()
            .filter(|sl| sl.alive)
            .map(|sl| MergedFolder {
                path: sl.path.clone(),
                special_use: sl.special_use.clone(),
                origin: sl.origin.clone(),
                members: [0, 1].map(|s| {
                    sl.members[s]
                        .iter()
                        .map(|&f| views[s].folders[f].path.clone())
                        .collect()
                }),
            })
            .collect(),
        messages: placed
            .iter()
            .filter(|p| tree.slots[p.slot].alive)
            .map(|p| MergedMessage {
                folder: tree.slots[p.slot].path.clone(),
                identity: p.identity.clone(),
                flags: p.flags.clone(),
                base: p.base.clone(),
                from: [0, 1].map(|s| p.from[s].map(|m| views[s].messages[m].handle.clone())),
            })
            .collect(),
    };
    MergePlan {
        actions,
        conflicts,
        held: input.held.to_vec(),
        merged,
    }
}
