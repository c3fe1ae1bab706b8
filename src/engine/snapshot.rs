//! Listing one side of a folder: in full, or as the base plus what changed since the tokens of
//! the last pass (DESIGN.md "Change detection").
//!
//! The planner always gets a complete listing sorted by UID; where it comes from is decided
//! here. A listing is built from changes only when the last pass left the folder *complete*
//! (every source message had an instance with a target UID): then the base describes each side
//! as it was at the stored tokens, and applying the changes gives the side as it is now. When
//! in doubt (no tokens, another UIDVALIDITY, an unfinished journal, quarantined or refused
//! messages), the folder is listed in full.

use std::collections::{BTreeMap, HashMap};

use crate::mailstore::{FolderChanges, FolderTokens, MailStore, MessageMeta, StoreError};
use crate::model::FlagSet;
use crate::state::{FolderRecord, InstanceRecord};

/// Which side's view of the base to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Source,
    Target,
}

/// What the base says a side held below `uidnext`, as a listing sorted by UID. The target's
/// view uses each instance's target UID and the flags last made equal.
pub(crate) fn base_view(
    base: &BTreeMap<u32, InstanceRecord>,
    view: View,
    uidnext: u32,
) -> Vec<MessageMeta> {
    let mut out: Vec<MessageMeta> = base
        .iter()
        .filter_map(|(uid, inst)| {
            let uid = match view {
                View::Source => *uid,
                View::Target => inst.target_uid?,
            };
            (uid < uidnext).then(|| MessageMeta {
                uid,
                flags: inst.flags.clone(),
                internaldate: inst.internaldate.clone(),
                size: inst.size,
            })
        })
        .collect();
    out.sort_by_key(|m| m.uid);
    out
}

/// The listing now: the old listing without what is gone, with changed flags, plus what is new.
/// Flag changes for UIDs the old listing does not have are dropped (nothing to attach them to).
pub(crate) fn apply_changes(old: Vec<MessageMeta>, changes: FolderChanges) -> Vec<MessageMeta> {
    let flags: HashMap<u32, FlagSet> = changes.flags.into_iter().collect();
    let mut out: Vec<MessageMeta> = old
        .into_iter()
        .filter(|m| !changes.gone.removes(m.uid))
        .map(|mut m| {
            if let Some(f) = flags.get(&m.uid) {
                m.flags = f.clone();
            }
            m
        })
        .collect();
    out.extend(changes.new);
    out.sort_by_key(|m| m.uid);
    out.dedup_by_key(|m| m.uid);
    out
}

/// The tokens a side's listing may start from, when the last pass left the folder complete
/// under the same UIDVALIDITY; `None` means list in full.
pub(crate) fn since_tokens(
    record: Option<&FolderRecord>,
    view: View,
    now: &FolderTokens,
    nothing_pending: bool,
) -> Option<FolderTokens> {
    let record = record?;
    if !record.complete || !nothing_pending {
        return None;
    }
    let since = match view {
        View::Source => record.source_tokens?,
        View::Target => record.target_tokens?,
    };
    (since.uidvalidity == now.uidvalidity).then_some(since)
}

/// Lists the open folder of `store`: from `since` and the base when given, else in full.
pub(crate) async fn list_side<M: MailStore>(
    store: &mut M,
    base: &BTreeMap<u32, InstanceRecord>,
    view: View,
    since: Option<&FolderTokens>,
) -> Result<Vec<MessageMeta>, StoreError> {
    match since {
        None => store.list_messages().await,
        Some(since) => {
            let old = base_view(base, view, since.uidnext);
            let changes = store.list_changes(since, old.len() as u32).await?;
            Ok(apply_changes(old, changes))
        }
    }
}

/// The target's tokens after this pass wrote to the folder, when they provably show only this
/// pass's writes: the folder is opened again, what changed since `before` is read, and the
/// result must be exactly what the base now says the target holds (flags compared where the
/// folder keeps them). Then the next pass need not read the target's own writes back; any
/// other change found keeps `before`, so the next pass reads it.
pub(crate) async fn tokens_after_writes<M: MailStore>(
    store: &mut M,
    path: &crate::model::FolderPath,
    base: &BTreeMap<u32, InstanceRecord>,
    before: FolderTokens,
) -> Result<FolderTokens, StoreError> {
    let status = store.open_folder(path).await?;
    let after = status.tokens();
    if after.uidvalidity != before.uidvalidity || after.highest_modseq.is_none() {
        return Ok(before);
    }
    let old_known = base
        .values()
        .filter(|i| i.target_uid.is_some_and(|u| u < before.uidnext))
        .count() as u32;
    let changes = store.list_changes(&before, old_known).await?;
    let storable = |flags: &FlagSet| flags.filtered(|f| status.can_store(f));
    Ok(
        if only_base_changes(base, before.uidnext, &changes, &storable) {
            after
        } else {
            before
        },
    )
}

/// Whether the listing `changes` (since a UIDNEXT of `uidnext`) turns the base's view of the
/// target below `uidnext` into exactly the base's view of it now: nothing gone, the new UIDs
/// exactly the base's, every flag as the base says (as `storable` keeps it). Works in the size
/// of the changes plus one pass over the base, with nothing copied.
fn only_base_changes(
    base: &BTreeMap<u32, InstanceRecord>,
    uidnext: u32,
    changes: &crate::mailstore::FolderChanges,
    storable: &dyn Fn(&FlagSet) -> FlagSet,
) -> bool {
    let new: HashMap<u32, &FlagSet> = changes.new.iter().map(|m| (m.uid, &m.flags)).collect();
    let flags: HashMap<u32, &FlagSet> = changes.flags.iter().map(|(u, f)| (*u, f)).collect();
    let mut expected_new = 0usize;
    for inst in base.values() {
        let Some(uid) = inst.target_uid else {
            continue;
        };
        let served = if uid >= uidnext {
            expected_new += 1;
            match new.get(&uid) {
                Some(f) => *f,
                None => return false,
            }
        } else {
            if changes.gone.removes(uid) {
                return false;
            }
            match flags.get(&uid) {
                Some(f) => *f,
                None => continue,
            }
        };
        if storable(served) != storable(&inst.flags) {
            return false;
        }
    }
    expected_new == new.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailstore::{changes_from_listing, Gone};
    use crate::model::InternalDate;
    use proptest::prelude::*;

    fn date() -> InternalDate {
        InternalDate::parse("01-Jan-2024 00:00:00 +0000").unwrap_or_else(|| unreachable!())
    }

    fn meta(uid: u32, flags: &[&str]) -> MessageMeta {
        MessageMeta {
            uid,
            flags: FlagSet::from_raw(flags.iter().copied()),
            internaldate: date(),
            size: 100 + uid,
        }
    }

    #[test]
    fn vanished_ranges_may_cover_uids_never_seen() {
        let old = vec![meta(1, &[]), meta(5, &[]), meta(9, &[])];
        let changes = FolderChanges {
            new: vec![meta(12, &["\\Seen"])],
            flags: vec![
                (9, FlagSet::from_raw(["\\Flagged"])),
                (7, FlagSet::default()),
            ],
            gone: Gone::Ranges(vec![2..=6]),
        };
        let now = apply_changes(old, changes);
        assert_eq!(
            now,
            vec![meta(1, &[]), meta(9, &["\\Flagged"]), meta(12, &["\\Seen"])]
        );
    }

    #[test]
    fn a_complete_list_of_present_uids_removes_the_rest() {
        let old = vec![meta(1, &[]), meta(2, &[]), meta(3, &[])];
        let changes = FolderChanges {
            new: vec![],
            flags: vec![],
            gone: Gone::AllBut(vec![1, 3]),
        };
        assert_eq!(
            apply_changes(old, changes),
            vec![meta(1, &[]), meta(3, &[])]
        );
    }

    #[test]
    fn the_target_view_uses_target_uids_and_skips_unmapped_instances() {
        let mut base = BTreeMap::new();
        let rec = |t: Option<u32>| InstanceRecord {
            fingerprint: None,
            ordinal: 0,
            target_uid: t,
            flags: FlagSet::default(),
            internaldate: date(),
            size: 10,
        };
        base.insert(4, rec(Some(40)));
        base.insert(5, rec(None));
        base.insert(6, rec(Some(41)));
        let v = base_view(&base, View::Target, 41);
        assert_eq!(v.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![40]);
        let s = base_view(&base, View::Source, 100);
        assert_eq!(s.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![4, 5, 6]);
    }

    fn listing() -> impl Strategy<Value = Vec<MessageMeta>> {
        proptest::collection::btree_map(1u32..60, proptest::bool::ANY, 0..30).prop_map(|m| {
            m.into_iter()
                .map(|(uid, seen)| meta(uid, if seen { &["\\Seen"] } else { &[] }))
                .collect()
        })
    }

    proptest! {
        /// Whatever happened between two listings, the old listing plus the changes a full
        /// rescan reports is the new listing (UIDs only grow: new ones are above the old
        /// UIDNEXT).
        #[test]
        fn old_plus_rescan_changes_is_the_new_listing(
            before in listing(),
            keep in proptest::collection::vec(proptest::bool::ANY, 30),
            reflag in proptest::collection::vec(proptest::bool::ANY, 30),
            added in proptest::collection::btree_set(60u32..90, 0..10),
        ) {
            let uidnext = 60;
            let mut after: Vec<MessageMeta> = before
                .iter()
                .enumerate()
                .filter(|(i, _)| keep[*i])
                .map(|(i, m)| {
                    let mut m = m.clone();
                    if reflag[i] {
                        m.flags = FlagSet::from_raw(["$Changed"]);
                    }
                    m
                })
                .collect();
            after.extend(added.iter().map(|u| meta(*u, &[])));
            let changes = changes_from_listing(after.clone(), uidnext);
            prop_assert_eq!(apply_changes(before, changes), after);
        }
    }

    proptest! {
        /// The cheap check of the target after this pass's writes decides as comparing the
        /// whole listing (the old listing plus the changes) with the base's view would.
        #[test]
        fn only_base_changes_agrees_with_comparing_listings(
            targets in proptest::collection::btree_map(1u32..40, proptest::bool::ANY, 0..15),
            gone in proptest::collection::btree_set(1u32..40, 0..4),
            reflag in proptest::collection::btree_map(1u32..40, proptest::bool::ANY, 0..4),
            extra_new in proptest::collection::btree_set(20u32..45, 0..3),
        ) {
            let uidnext = 20;
            let flags = |seen: bool| {
                if seen { FlagSet::from_raw(["\\Seen"]) } else { FlagSet::default() }
            };
            let mut base = BTreeMap::new();
            for (i, (t, seen)) in targets.iter().enumerate() {
                base.insert(i as u32 + 1, InstanceRecord {
                    fingerprint: None,
                    ordinal: 0,
                    target_uid: Some(*t),
                    flags: flags(*seen),
                    internaldate: date(),
                    size: 10,
                });
            }
            // What the server reports: the base's new messages (some with other flags), a few
            // unknown ones, flag changes and removals below UIDNEXT.
            let mut new: Vec<MessageMeta> = targets
                .iter()
                .filter(|(t, _)| **t >= uidnext)
                .map(|(t, seen)| MessageMeta {
                    flags: flags(reflag.get(t).copied().unwrap_or(*seen)),
                    ..meta(*t, &[])
                })
                .collect();
            new.extend(extra_new.iter().filter(|u| !targets.contains_key(u)).map(|u| meta(*u, &[])));
            new.sort_by_key(|m| m.uid);
            let changes = FolderChanges {
                new,
                flags: reflag.iter().filter(|(u, _)| **u < uidnext).map(|(u, s)| (*u, flags(*s))).collect(),
                gone: Gone::Ranges(gone.iter().filter(|u| **u < uidnext).map(|u| *u..=*u).collect()),
            };
            let listed = apply_changes(base_view(&base, View::Target, uidnext), changes.clone());
            let expected = base_view(&base, View::Target, u32::MAX);
            let reference = listed.len() == expected.len()
                && listed.iter().zip(&expected).all(|(a, b)| a.uid == b.uid && a.flags == b.flags);
            prop_assert_eq!(only_base_changes(&base, uidnext, &changes, &|f| f.clone()), reference);
        }
    }
}
