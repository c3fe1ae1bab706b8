//! The plan as `failback --dry-run` prints it, and unified diffs of conflicting listings and flags.

use std::collections::BTreeMap;
use std::fmt;

use similar::{Algorithm, TextDiff};

use super::input::{side_name, Identity, SideState, SIDES};
use super::plan::{MergeAction, MergePlan};
use crate::model::{FlagSet, FolderPath};

/// Per side, the actions grouped by folder (in path order, each group in apply order), then
/// the conflicts and the held items.
impl fmt::Display for MergePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for side in SIDES {
            let actions = self.actions(side);
            writeln!(f, "{} side: {} action(s)", side_name(side), actions.len())?;
            let mut by_folder: BTreeMap<&FolderPath, Vec<&MergeAction>> = BTreeMap::new();
            for a in actions {
                by_folder.entry(a.folder()).or_default().push(a);
            }
            for (folder, actions) in by_folder {
                writeln!(f, "  {folder}")?;
                for a in actions {
                    writeln!(f, "    {a}")?;
                }
            }
        }
        writeln!(f, "conflicts: {}", self.conflicts.len())?;
        for c in &self.conflicts {
            writeln!(f, "  - {c}")?;
        }
        writeln!(f, "held: {}", self.held.len())?;
        for h in &self.held {
            writeln!(f, "  - {h}")?;
        }
        Ok(())
    }
}

/// One folder of a side as text, one message a line (`identity flags`), sorted: the input of
/// [`listing_diff`].
pub fn folder_listing(state: &SideState, folder: &FolderPath) -> String {
    let mut lines: Vec<String> = state
        .messages
        .iter()
        .filter(|m| &m.folder == folder)
        .map(|m| format!("{} {}\n", m.identity, m.flags))
        .collect();
    lines.sort();
    lines.concat()
}

/// A unified diff of one folder's listing on the primary (`---`) and the recovery (`+++`)
/// side; empty when they agree.
pub fn listing_diff(folder: &FolderPath, primary: &SideState, recovery: &SideState) -> String {
    unified(
        &folder_listing(primary, folder),
        &folder_listing(recovery, folder),
        &format!("primary/{folder}"),
        &format!("recovery/{folder}"),
    )
}

/// A unified diff of one message's flags on both sides, one flag a line; empty when equal.
pub fn flags_diff(identity: &Identity, primary: &FlagSet, recovery: &FlagSet) -> String {
    let lines = |flags: &FlagSet| -> String { flags.iter().map(|f| format!("{f}\n")).collect() };
    unified(
        &lines(primary),
        &lines(recovery),
        &format!("primary/{identity}"),
        &format!("recovery/{identity}"),
    )
}

fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .diff_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}
