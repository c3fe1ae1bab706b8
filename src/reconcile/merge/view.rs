//! Each side indexed for the merge: folders by path and base link, messages by base instance.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::input::{
    Base, BaseFolder, BaseMessage, FolderKey, Handle, HeldItem, InstanceKey, SideFolder,
    SideMessage, SideState,
};
use crate::model::{FolderPath, Side};

/// The base, indexed; held base instances are set aside.
pub(super) struct BaseView<'a> {
    pub folders: BTreeMap<&'a FolderKey, &'a BaseFolder>,
    pub messages: Vec<&'a BaseMessage>,
}

impl<'a> BaseView<'a> {
    pub fn new(base: &'a Base, held: &[HeldItem]) -> BaseView<'a> {
        let held_keys: HashSet<&InstanceKey> =
            held.iter().filter_map(|h| h.base.as_ref()).collect();
        let folders: BTreeMap<&FolderKey, &BaseFolder> =
            base.folders.iter().map(|f| (&f.key, f)).collect();
        let mut seen = HashSet::new();
        let mut messages: Vec<&BaseMessage> = base
            .messages
            .iter()
            .filter(|m| folders.contains_key(&m.key.folder))
            .filter(|m| !held_keys.contains(&m.key))
            .filter(|m| seen.insert(&m.key))
            .collect();
        messages.sort_by(|a, b| a.key.cmp(&b.key));
        BaseView { folders, messages }
    }
}

/// One side, indexed. Messages a held item names are left out (never acted on), but the
/// folders holding them are remembered so they are never deleted.
pub(super) struct SideView<'a> {
    pub side: Side,
    /// Listed folders, plus one per path a message names that the listing lacks.
    pub folders: Vec<SideFolder>,
    pub folder_at: HashMap<FolderPath, usize>,
    /// The base folder each folder descends from (checked against the base, one folder each).
    pub folder_base: Vec<Option<FolderKey>>,
    pub messages: Vec<&'a SideMessage>,
    pub message_folder: Vec<usize>,
    /// Base instance -> the message descending from it (the first, if several claim it).
    pub descendant: HashMap<InstanceKey, usize>,
    /// Messages new since the failover.
    pub new: Vec<usize>,
    /// Folders that hold a held message.
    pub holds_held: HashSet<usize>,
}

impl<'a> SideView<'a> {
    pub fn new(
        side: Side,
        state: &'a SideState,
        base: &BaseView<'_>,
        held: &[HeldItem],
    ) -> SideView<'a> {
        let mut folders: Vec<SideFolder> = Vec::new();
        let mut folder_at: HashMap<FolderPath, usize> = HashMap::new();
        for f in &state.folders {
            if !folder_at.contains_key(&f.path) {
                folder_at.insert(f.path.clone(), folders.len());
                folders.push(f.clone());
            }
        }
        for m in &state.messages {
            if !folder_at.contains_key(&m.folder) {
                folder_at.insert(m.folder.clone(), folders.len());
                folders.push(SideFolder {
                    path: m.folder.clone(),
                    special_use: None,
                    base: None,
                });
            }
        }
        // A base folder claimed by two folders stays with the one still at its base path.
        let mut claimed: HashMap<FolderKey, usize> = HashMap::new();
        let mut order: Vec<usize> = (0..folders.len()).collect();
        order.sort_by_key(|&i| {
            let at_base_path = folders[i]
                .base
                .as_ref()
                .and_then(|k| base.folders.get(k))
                .is_some_and(|b| b.path == folders[i].path);
            (!at_base_path, folders[i].path.clone())
        });
        for i in order {
            if let Some(k) = &folders[i].base {
                if base.folders.contains_key(k) && !claimed.contains_key(k) {
                    claimed.insert(k.clone(), i);
                }
            }
        }
        let mut folder_base = vec![None; folders.len()];
        for (k, i) in claimed {
            folder_base[i] = Some(k);
        }

        let held_handles: HashSet<&Handle> = held
            .iter()
            .flat_map(|h| h.handles.iter())
            .filter(|(s, _)| *s == side)
            .map(|(_, h)| h)
            .collect();
        let held_keys: HashSet<&InstanceKey> =
            held.iter().filter_map(|h| h.base.as_ref()).collect();
        let base_keys: HashSet<&InstanceKey> = base.messages.iter().map(|m| &m.key).collect();

        let mut sorted: Vec<&SideMessage> = state.messages.iter().collect();
        sorted.sort_by(|a, b| a.handle.cmp(&b.handle));
        let mut view = SideView {
            side,
            folders,
            folder_at,
            folder_base,
            messages: Vec::new(),
            message_folder: Vec::new(),
            descendant: HashMap::new(),
            new: Vec::new(),
            holds_held: HashSet::new(),
        };
        for m in sorted {
            let folder = view.folder_at.get(&m.folder).copied().unwrap_or_default();
            let is_held = held_handles.contains(&m.handle)
                || m.base.as_ref().is_some_and(|k| held_keys.contains(k));
            if is_held {
                view.holds_held.insert(folder);
                continue;
            }
            let i = view.messages.len();
            view.messages.push(m);
            view.message_folder.push(folder);
            match m.base.as_ref().filter(|k| base_keys.contains(k)) {
                Some(k) if !view.descendant.contains_key(k) => {
                    view.descendant.insert(k.clone(), i);
                }
                _ => view.new.push(i),
            }
        }
        view
    }

    /// The folder descending from a base folder, if this side still has it.
    pub fn folder_of_base(&self, key: &FolderKey) -> Option<usize> {
        self.folder_base
            .iter()
            .position(|b| b.as_ref() == Some(key))
    }
}
