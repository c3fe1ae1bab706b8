//! Folder-level changes on the source, propagated to the target: renames (one RENAME, no
//! message uploaded again) and deletions (the folder's messages leave through the removal
//! budget; the folder goes once it is empty).
//!
//! A folder the state knows but the source no longer lists was renamed when exactly one folder
//! the state does not know has its UIDVALIDITY (servers keep it across RENAME: Dovecot, Cyrus);
//! otherwise it was deleted. A parent renamed with its children is one RENAME of the parent:
//! renames run parents first, and a child the target already shows under its new name only
//! moves in the state.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::events::EventSink;
use super::summary::SyncSummary;
use super::EngineError;
use crate::mailstore::{FolderInfo, MailStore, StoreError};
use crate::model::FolderPath;
use crate::reconcile::budget::FolderRemovals;
use crate::reconcile::Removal;
use crate::state::{FolderRecord, StateFile};

/// What happened to the folders the state knows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct FolderMoves {
    /// (old name, new path), parents before children.
    pub renames: Vec<(String, FolderPath)>,
    /// Folders gone from the source without a new name.
    pub deleted: Vec<String>,
}

/// Pairs folders gone from the source with new ones by UIDVALIDITY; only unique matches count.
pub(crate) fn match_renames(gone: &[(String, u32)], new: &[(FolderPath, u32)]) -> FolderMoves {
    let count = |v: u32, list: &mut HashMap<u32, usize>| *list.entry(v).or_default() += 1;
    let mut gone_by: HashMap<u32, usize> = HashMap::new();
    let mut new_by: HashMap<u32, usize> = HashMap::new();
    for (_, v) in gone {
        count(*v, &mut gone_by);
    }
    for (_, v) in new {
        count(*v, &mut new_by);
    }
    let mut moves = FolderMoves::default();
    for (name, v) in gone {
        let unique = gone_by.get(v) == Some(&1) && new_by.get(v) == Some(&1);
        match new.iter().find(|(_, nv)| nv == v) {
            Some((path, _)) if unique => moves.renames.push((name.clone(), path.clone())),
            _ => moves.deleted.push(name.clone()),
        }
    }
    moves
        .renames
        .sort_by_key(|(old, _)| FolderPath::from_display(old).components().len());
    moves.deleted.sort();
    moves
}

/// Finds renamed and deleted folders. New folders without tokens in the listing are opened
/// once for their UIDVALIDITY, and only when some known folder is gone.
pub(crate) async fn detect<S: MailStore>(
    source: &mut S,
    source_folders: &[FolderInfo],
    records: &BTreeMap<String, FolderRecord>,
) -> Result<FolderMoves, EngineError> {
    let listed: HashSet<String> = source_folders
        .iter()
        .filter(|f| f.selectable)
        .map(|f| f.path.to_string())
        .collect();
    let gone: Vec<(String, u32)> = records
        .iter()
        .filter(|(name, _)| !listed.contains(*name))
        .map(|(name, r)| (name.clone(), r.source_uidvalidity))
        .collect();
    if gone.is_empty() {
        return Ok(FolderMoves::default());
    }
    let mut new = Vec::new();
    for f in source_folders
        .iter()
        .filter(|f| f.selectable && !records.contains_key(&f.path.to_string()))
    {
        let uidvalidity = match f.tokens {
            Some(t) => t.uidvalidity,
            None => match source.open_folder(&f.path).await {
                Ok(status) => status.uidvalidity,
                // Gone meanwhile or refused: it is no rename target.
                Err(StoreError::No { .. }) | Err(StoreError::NoSuchFolder { .. }) => continue,
                Err(e) => return Err(e.into()),
            },
        };
        new.push((f.path.clone(), uidvalidity));
    }
    Ok(match_renames(&gone, &new))
}

/// Renames on the target (unless dry-run) and in the state. Returns how many RENAMEs the target
/// got.
pub(crate) async fn apply_renames<T: MailStore>(
    target: &mut T,
    state: &StateFile,
    dry_run: bool,
    events: &dyn EventSink,
    summary: &mut SyncSummary,
    renames: &[(String, FolderPath)],
    target_folders: &[FolderInfo],
) -> Result<(), EngineError> {
    let mut on_target: HashSet<FolderPath> =
        target_folders.iter().map(|f| f.path.clone()).collect();
    for (old, new) in renames {
        let old_path = FolderPath::from_display(old);
        if dry_run {
            summary
                .actions
                .push(format!("rename folder {old} -> {new}"));
            continue;
        }
        if on_target.contains(&old_path) && !on_target.contains(new) {
            target.rename_folder(&old_path, new).await?;
            // The folders below moved along.
            on_target = on_target
                .into_iter()
                .map(|p| p.renamed(&old_path, new).unwrap_or(p))
                .collect();
            summary.folders_renamed += 1;
        }
        state.rename_folder(old, &new.to_string())?;
        super::sync::notice(
            events,
            summary,
            format!("folder {old} was renamed to {new} on the source; renamed on the target"),
        );
    }
    Ok(())
}

/// The removals that empty deleted folders on the target, for the removal budget.
pub(crate) fn deletion_removals(
    state: &StateFile,
    deleted: &[String],
    on_target: &HashSet<FolderPath>,
) -> Result<Vec<FolderRemovals>, EngineError> {
    let mut out = Vec::new();
    for name in deleted {
        let path = FolderPath::from_display(name);
        if !on_target.contains(&path) {
            continue;
        }
        let base = state.instances(name)?;
        out.push(FolderRemovals {
            folder: path,
            exempt: false,
            base_count: base.len(),
            source_count: 0,
            removals: base
                .iter()
                .filter_map(|(uid, i)| {
                    Some(Removal {
                        source_uid: *uid,
                        target_uid: i.target_uid?,
                    })
                })
                .collect(),
        });
    }
    Ok(out)
}

/// After the removals: a deleted folder whose messages all left is deleted on the target when
/// it holds nothing else, and forgotten; one with held removals or messages only the target has
/// is kept, with a notice.
pub(crate) async fn finish_deletions<T: MailStore>(
    target: &mut T,
    state: &StateFile,
    dry_run: bool,
    events: &dyn EventSink,
    summary: &mut SyncSummary,
    deleted: &[String],
    on_target: &HashSet<FolderPath>,
) -> Result<(), EngineError> {
    let held: HashSet<String> = state.held()?.into_keys().map(|(f, _)| f).collect();
    for name in deleted {
        let path = FolderPath::from_display(name);
        if dry_run {
            summary.actions.push(format!(
                "delete folder {name} once its messages are removed"
            ));
            continue;
        }
        if held.contains(name) {
            continue;
        }
        if !on_target.contains(&path) {
            state.forget_folder(name)?;
            continue;
        }
        let left = state.instances(name)?.len();
        let status = target.open_folder(&path).await?;
        if left == 0 && status.exists == 0 {
            target.delete_folder(&path).await?;
            state.forget_folder(name)?;
            summary.folders_deleted += 1;
            super::sync::notice(
                events,
                summary,
                format!("folder {name} was deleted on the source; deleted on the target"),
            );
        } else if left == 0 {
            state.forget_folder(name)?;
            super::sync::notice(events, summary, format!(
                "folder {name} was deleted on the source; kept on the target, which holds {} message(s) the source never had",
                status.exists
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> FolderPath {
        FolderPath::from_display(s)
    }

    #[test]
    fn a_unique_uidvalidity_is_a_rename_parents_first() {
        let m = match_renames(
            &[
                ("Projects/A".into(), 11),
                ("Projects".into(), 10),
                ("Old".into(), 12),
            ],
            &[
                (p("Work/Projects"), 10),
                (p("Work/Projects/A"), 11),
                (p("Fresh"), 99),
            ],
        );
        assert_eq!(
            m.renames,
            vec![
                ("Projects".to_string(), p("Work/Projects")),
                ("Projects/A".to_string(), p("Work/Projects/A")),
            ]
        );
        assert_eq!(m.deleted, vec!["Old".to_string()]);
    }

    #[test]
    fn an_ambiguous_uidvalidity_is_no_rename() {
        let m = match_renames(&[("A".into(), 5)], &[(p("B"), 5), (p("C"), 5)]);
        assert!(m.renames.is_empty());
        assert_eq!(m.deleted, vec!["A".to_string()]);
        let m = match_renames(&[("A".into(), 5), ("B".into(), 5)], &[(p("C"), 5)]);
        assert!(m.renames.is_empty());
        assert_eq!(m.deleted.len(), 2);
    }
}
