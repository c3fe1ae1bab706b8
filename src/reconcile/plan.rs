//! One-way planning for one folder: base x source now x target now -> a change set.
//!
//! The rules, one per case of a base instance (source UID `s`, target UID `t`):
//!
//! | in source | in target | action |
//! |---|---|---|
//! | yes | yes | flags: make the target's storable flags equal to the source's |
//! | yes | no  | place again (restore): matched by identity first, uploaded only if absent |
//! | no  | yes | remove `t` from the target, unless the removal guard holds it |
//! | no  | no  | forget the instance |
//!
//! A source message without a base instance is placed (adopted by identity when the target
//! already holds it, else uploaded). A target message no base instance points to is
//! target-only: never removed, reported, and a candidate for adoption.
//!
//! Whether a removal is applied or held is not decided here but for the whole pass, by the
//! removal budget ([`super::budget`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::mailstore::MessageMeta;
use crate::model::{Flag, FlagSet, FolderPath};
use crate::state::InstanceRecord;

/// What the user allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Apply removals even above the guard threshold.
    pub allow_deletions: bool,
}

/// Everything known about one folder at planning time.
pub struct FolderInput<'a> {
    pub folder: &'a FolderPath,
    /// Base instances by source UID (already reset by the engine when a UIDVALIDITY changed).
    pub base: &'a BTreeMap<u32, InstanceRecord>,
    /// The source folder now, sorted by UID.
    pub source: &'a [MessageMeta],
    /// The target folder now, sorted by UID.
    pub target: &'a [MessageMeta],
    /// Whether the target folder stores a flag (from PERMANENTFLAGS).
    pub storable: &'a dyn Fn(&Flag) -> bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementReason {
    /// New on the source.
    New,
    /// In the base, but its target copy is gone (or was never known).
    Restore,
}

/// A source message to place on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub source: MessageMeta,
    pub reason: PlacementReason,
}

/// Flags to change on one target message. Empty `add` and `remove` mean the sides already
/// agree and only the base must learn the new flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUpdate {
    pub source_uid: u32,
    pub target_uid: u32,
    pub add: FlagSet,
    pub remove: FlagSet,
    /// The source's flags, which the base records once applied.
    pub flags: FlagSet,
}

/// A target message to remove because its source instance was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub source_uid: u32,
    pub target_uid: u32,
}

/// The change set for one folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderPlan {
    pub placements: Vec<Placement>,
    pub flag_updates: Vec<FlagUpdate>,
    /// Removals the source asks for (the removal budget decides which are applied).
    pub removals: Vec<Removal>,
    /// Base instances gone from both sides.
    pub forget: Vec<u32>,
    /// Target UIDs no base instance points to (target-only, or left by an interrupted pass).
    pub unmapped_target: Vec<u32>,
}

impl FolderPlan {
    /// True when the plan writes nothing to the target (state-only updates aside).
    pub fn is_noop(&self) -> bool {
        self.placements.is_empty()
            && self.removals.is_empty()
            && self
                .flag_updates
                .iter()
                .all(|u| u.add.is_empty() && u.remove.is_empty())
    }
}

/// Plans one folder. Total and pure: every input gives a plan, conflicts are data.
///
/// Linear in the folder's size with no allocation per message that needs no action: a pass
/// plans every folder that changed, and a folder of thousands usually changed in a few.
pub fn plan_folder(input: &FolderInput<'_>) -> FolderPlan {
    let mut plan = FolderPlan::default();
    let source = by_uid(input.source);
    let target = by_uid(input.target);
    let find = |list: &[MessageMeta], uid: u32| list.binary_search_by_key(&uid, |m| m.uid).ok();
    let mut mapped_target = vec![false; target.len()];
    let mut removals = Vec::new();

    for (&suid, base) in input.base {
        let tgt = base.target_uid.and_then(|t| find(&target, t));
        if let Some(at) = tgt {
            mapped_target[at] = true;
        }
        match (find(&source, suid), tgt.map(|at| &target[at])) {
            (Some(src), Some(tgt)) => {
                if let Some(update) = flag_update(suid, &source[src], tgt, base, input.storable) {
                    plan.flag_updates.push(update);
                }
            }
            (Some(src), None) => plan.placements.push(Placement {
                source: source[src].clone(),
                reason: PlacementReason::Restore,
            }),
            (None, Some(tgt)) => removals.push(Removal {
                source_uid: suid,
                target_uid: tgt.uid,
            }),
            (None, None) => plan.forget.push(suid),
        }
    }
    for src in source.iter() {
        if !input.base.contains_key(&src.uid) {
            plan.placements.push(Placement {
                source: src.clone(),
                reason: PlacementReason::New,
            });
        }
    }
    plan.placements.sort_by_key(|p| p.source.uid);
    plan.unmapped_target = target
        .iter()
        .zip(&mapped_target)
        .filter(|(_, mapped)| !**mapped)
        .map(|(t, _)| t.uid)
        .collect();

    plan.removals = removals;
    plan
}

/// A listing sorted by UID with each UID once, as the listings promise; one that breaks the
/// promise is sorted here, the last of a repeated UID kept.
fn by_uid(list: &[MessageMeta]) -> Cow<'_, [MessageMeta]> {
    if list.windows(2).all(|w| w[0].uid < w[1].uid) {
        return Cow::Borrowed(list);
    }
    let mut sorted: Vec<MessageMeta> = list.iter().rev().cloned().collect();
    // Stable: of a repeated UID, the one listed last comes first and is the one kept.
    sorted.sort_by_key(|m| m.uid);
    sorted.dedup_by_key(|m| m.uid);
    Cow::Owned(sorted)
}

fn flag_update(
    suid: u32,
    src: &MessageMeta,
    tgt: &MessageMeta,
    base: &InstanceRecord,
    storable: &dyn Fn(&Flag) -> bool,
) -> Option<FlagUpdate> {
    // The common case, settled without building a set: nothing changed anywhere.
    if src.flags == tgt.flags && base.flags == src.flags {
        return None;
    }
    let want = src.flags.filtered(storable);
    let have = tgt.flags.filtered(storable);
    let add = want.minus(&have);
    let remove = have.minus(&want);
    if add.is_empty() && remove.is_empty() && base.flags == src.flags {
        return None;
    }
    Some(FlagUpdate {
        source_uid: suid,
        target_uid: tgt.uid,
        add,
        remove,
        flags: src.flags.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fingerprint, InternalDate};

    fn meta(uid: u32, flags: &[&str]) -> MessageMeta {
        MessageMeta {
            uid,
            flags: FlagSet::from_raw(flags.iter().copied()),
            internaldate: InternalDate::parse("01-Jan-2024 10:00:00 +0000").unwrap(),
            size: 100 + uid,
        }
    }

    fn base(target_uid: Option<u32>, flags: &[&str]) -> InstanceRecord {
        InstanceRecord {
            fingerprint: Some(Fingerprint::of(b"x")),
            ordinal: 0,
            target_uid,
            flags: FlagSet::from_raw(flags.iter().copied()),
            internaldate: InternalDate::parse("01-Jan-2024 10:00:00 +0000").unwrap(),
            size: 100,
        }
    }

    fn run(
        base: &BTreeMap<u32, InstanceRecord>,
        source: &[MessageMeta],
        target: &[MessageMeta],
        _allow: bool,
    ) -> FolderPlan {
        let folder = FolderPath::inbox();
        let all = |_: &Flag| true;
        plan_folder(&FolderInput {
            folder: &folder,
            base,
            source,
            target,
            storable: &all,
        })
    }

    #[test]
    fn empty_everything_plans_nothing() {
        let plan = run(&BTreeMap::new(), &[], &[], false);
        assert_eq!(plan, FolderPlan::default());
        assert!(plan.is_noop());
    }

    #[test]
    fn listings_out_of_order_or_repeated_plan_as_sorted_ones() {
        let b: BTreeMap<u32, InstanceRecord> = [
            (1, base(Some(11), &["\\Seen"])),
            (2, base(Some(12), &[])),
            (3, base(Some(13), &[])),
        ]
        .into_iter()
        .collect();
        let source = [
            meta(3, &[]),
            meta(1, &[]),
            meta(4, &[]),
            meta(1, &["\\Flagged"]),
        ];
        let target = [
            meta(13, &[]),
            meta(11, &["\\Seen"]),
            meta(12, &[]),
            meta(20, &[]),
        ];
        let sorted_source = [meta(1, &["\\Flagged"]), meta(3, &[]), meta(4, &[])];
        let mut sorted_target = target.clone();
        sorted_target.sort_by_key(|m| m.uid);
        let plan = run(&b, &source, &target, false);
        assert_eq!(plan, run(&b, &sorted_source, &sorted_target, false));
        // The last listing of UID 1 counts: \Seen off, \Flagged on.
        assert_eq!(plan.flag_updates.len(), 1);
        assert_eq!(plan.flag_updates[0].add.to_imap_list(), "(\\Flagged)");
        assert_eq!(
            plan.removals,
            [Removal {
                source_uid: 2,
                target_uid: 12
            }]
        );
        assert_eq!(plan.unmapped_target, [20]);
    }

    #[test]
    fn new_source_messages_are_placed_in_uid_order() {
        let plan = run(
            &BTreeMap::new(),
            &[meta(3, &[]), meta(1, &["\\Seen"])],
            &[],
            false,
        );
        let uids: Vec<u32> = plan.placements.iter().map(|p| p.source.uid).collect();
        assert_eq!(uids, [1, 3]);
        assert!(plan
            .placements
            .iter()
            .all(|p| p.reason == PlacementReason::New));
    }

    #[test]
    fn synced_and_unchanged_is_a_noop() {
        let b = BTreeMap::from([(1, base(Some(10), &["\\Seen"]))]);
        let plan = run(&b, &[meta(1, &["\\Seen"])], &[meta(10, &["\\seen"])], false);
        assert!(plan.is_noop());
        assert!(plan.flag_updates.is_empty());
        assert!(plan.unmapped_target.is_empty());
    }

    #[test]
    fn flag_change_on_source_is_stored_as_a_minimal_delta() {
        let b = BTreeMap::from([(1, base(Some(10), &["\\Seen"]))]);
        let plan = run(
            &b,
            &[meta(1, &["\\Flagged", "Work"])],
            &[meta(10, &["\\Seen"])],
            false,
        );
        assert_eq!(plan.flag_updates.len(), 1);
        let u = &plan.flag_updates[0];
        assert_eq!(
            (u.target_uid, u.add.to_imap_list(), u.remove.to_imap_list()),
            (10, "(\\Flagged Work)".into(), "(\\Seen)".into())
        );
    }

    #[test]
    fn flags_equal_on_both_sides_but_not_in_base_only_update_the_base() {
        let b = BTreeMap::from([(1, base(Some(10), &[]))]);
        let plan = run(&b, &[meta(1, &["\\Seen"])], &[meta(10, &["\\Seen"])], false);
        assert!(plan.is_noop());
        assert_eq!(plan.flag_updates.len(), 1);
    }

    #[test]
    fn unstorable_flags_are_left_out() {
        let b = BTreeMap::from([(1, base(Some(10), &[]))]);
        let folder = FolderPath::inbox();
        let only_system = |f: &Flag| f.is_system();
        let source = [meta(1, &["Keyword"])];
        let target = [meta(10, &[])];
        let plan = plan_folder(&FolderInput {
            folder: &folder,
            base: &b,
            source: &source,
            target: &target,
            storable: &only_system,
        });
        assert!(plan.is_noop());
    }

    #[test]
    fn target_copy_gone_is_restored() {
        let b = BTreeMap::from([(1, base(Some(10), &[])), (2, base(None, &[]))]);
        let plan = run(&b, &[meta(1, &[]), meta(2, &[])], &[], false);
        assert_eq!(plan.placements.len(), 2);
        assert!(plan
            .placements
            .iter()
            .all(|p| p.reason == PlacementReason::Restore));
    }

    #[test]
    fn removed_on_source_is_removed_on_target_within_the_guard() {
        let mut b = BTreeMap::new();
        let mut src = Vec::new();
        let mut tgt = Vec::new();
        for uid in 1..=40 {
            b.insert(uid, base(Some(uid + 100), &[]));
            if uid != 7 {
                src.push(meta(uid, &[]));
            }
            tgt.push(meta(uid + 100, &[]));
        }
        let plan = run(&b, &src, &tgt, false);
        assert_eq!(
            plan.removals,
            vec![Removal {
                source_uid: 7,
                target_uid: 107
            }]
        );
    }

    #[test]
    fn gone_on_both_sides_is_forgotten() {
        let b = BTreeMap::from([(1, base(Some(10), &[]))]);
        let plan = run(&b, &[], &[], false);
        assert_eq!(plan.forget, vec![1]);
        assert!(plan.is_noop());
    }

    #[test]
    fn target_only_messages_are_unmapped_and_kept() {
        let plan = run(&BTreeMap::new(), &[], &[meta(5, &[]), meta(6, &[])], true);
        assert_eq!(plan.unmapped_target, vec![5, 6]);
        assert!(plan.removals.is_empty());
    }
}
