//! A side after a plan's actions: the pure model of applying them, for tests and dry-run checks.

use super::input::{Handle, SideFolder, SideMessage, SideState};
use super::plan::MergeAction;

/// The side as it is once `actions` ran in order; new messages get handles `placed-<n>`.
/// Actions naming a folder or message the side lacks change nothing (the engine re-plans).
pub fn apply(actions: &[MergeAction], side: &SideState) -> SideState {
    let mut out = side.clone();
    let mut placed = 0usize;
    for action in actions {
        match action {
            MergeAction::CreateFolder { path, special_use } => {
                if !out.folders.iter().any(|f| &f.path == path) {
                    out.folders.push(SideFolder {
                        path: path.clone(),
                        special_use: special_use.clone(),
                        base: None,
                    });
                }
            }
            MergeAction::RenameFolder { from, to } => {
                if out.folders.iter().any(|f| &f.path == to) {
                    continue;
                }
                for f in out.folders.iter_mut().filter(|f| &f.path == from) {
                    f.path = to.clone();
                }
                for m in out.messages.iter_mut().filter(|m| &m.folder == from) {
                    m.folder = to.clone();
                }
            }
            MergeAction::Place {
                folder,
                identity,
                flags,
                ..
            } => {
                let handle = loop {
                    placed += 1;
                    let h = Handle(format!("placed-{placed}"));
                    if !out.messages.iter().any(|m| m.handle == h) {
                        break h;
                    }
                };
                out.messages.push(SideMessage {
                    handle,
                    folder: folder.clone(),
                    identity: identity.clone(),
                    flags: flags.clone(),
                    base: None,
                });
            }
            MergeAction::Move { handle, to, .. } => {
                for m in out.messages.iter_mut().filter(|m| &m.handle == handle) {
                    m.folder = to.clone();
                }
            }
            MergeAction::SetFlags {
                handle,
                add,
                remove,
                ..
            } => {
                for m in out.messages.iter_mut().filter(|m| &m.handle == handle) {
                    m.flags = m
                        .flags
                        .minus(remove)
                        .iter()
                        .chain(add.iter())
                        .cloned()
                        .collect();
                }
            }
            MergeAction::Remove { handle, .. } => out.messages.retain(|m| &m.handle != handle),
            MergeAction::DeleteFolder { path } => {
                out.folders.retain(|f| &f.path != path);
                out.messages.retain(|m| &m.folder != path);
            }
        }
    }
    out
}
