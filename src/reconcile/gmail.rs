//! Gmail as a migration source (`migrate --preset gmail`): which of its folders are views
//! rather than folders, and where its special folders go on the target. Pure.
//!
//! Gmail shows labels as IMAP folders. `[Gmail]/All Mail` (`\All`) holds every message, so it
//! is not copied as a folder of duplicates: only its messages that no other copied folder
//! holds (archived mail, no label) go to the target's `\Archive` folder (engine/all_mail.rs
//! finds them). `[Gmail]/Important` and `[Gmail]/Starred` (`\Flagged`) are views: not copied
//! (a starred message carries `\Flagged` wherever it is). Sent, Drafts, Trash and Spam go to
//! the target's folders of the same use, or to `Sent`, `Drafts`, `Trash`, `Junk` when it has
//! none. Folders are recognised by their special-use attribute, and, where a server (or a
//! test's simulation) does not give one, by Gmail's English names below `[Gmail]/` or
//! `[Google Mail]/`.

use crate::mailstore::FolderInfo;
use crate::model::FolderPath;

/// The special-use of Gmail's message-holding view of everything.
pub const ALL: &str = "\\All";
/// Special-uses of the views that are not copied.
pub const VIEWS: [&str; 2] = ["\\Important", "\\Flagged"];

/// Gmail's English names of its system folders, by special-use.
const NAMES: [(&str, &str); 9] = [
    ("All Mail", "\\All"),
    ("Important", "\\Important"),
    ("Starred", "\\Flagged"),
    ("Sent Mail", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Bin", "\\Trash"),
    ("Spam", "\\Junk"),
    ("Chats", "\\Chats"),
];

/// Where a system folder goes on a target that has no folder of its use.
const TARGET_NAMES: [(&str, &str); 5] = [
    ("\\All", "Archive"),
    ("\\Sent", "Sent"),
    ("\\Drafts", "Drafts"),
    ("\\Trash", "Trash"),
    ("\\Junk", "Junk"),
];

/// The special-use a Gmail folder has by its name, for listings that do not say.
fn use_by_name(path: &FolderPath) -> Option<&'static str> {
    let name = path.to_string();
    let rest = name
        .strip_prefix("[Gmail]/")
        .or_else(|| name.strip_prefix("[Google Mail]/"))?;
    NAMES.iter().find(|(n, _)| *n == rest).map(|(_, u)| *u)
}

/// Gives the folders of a Gmail listing their special-use where the listing did not.
pub fn annotate(source: &mut [FolderInfo]) {
    for f in source.iter_mut().filter(|f| f.special_use.is_none()) {
        f.special_use = use_by_name(&f.path).map(str::to_string);
    }
}

/// The special-use a folder of an annotated Gmail listing was given, if any (so the same
/// folder is recognised on every later listing).
pub fn special_uses(source: &[FolderInfo]) -> Vec<(FolderPath, String)> {
    source
        .iter()
        .filter_map(|f| Some((f.path.clone(), f.special_use.clone()?)))
        .collect()
}

/// A view that is not copied: Important, Starred (and Chats, which holds no mail to keep).
pub fn is_view(special_use: Option<&str>) -> bool {
    special_use.is_some_and(|u| VIEWS.contains(&u) || u == "\\Chats")
}

/// `[Gmail]` or `[Google Mail]` itself: a container of the system folders, holding no mail.
pub fn is_container(path: &FolderPath) -> bool {
    let name = path.to_string();
    name == "[Gmail]" || name == "[Google Mail]"
}

/// Source system folder -> target folder: the target's folder of the same use (All Mail: the
/// target's `\Archive`) when it has exactly one, else the usual name, unless the source
/// already has a folder of that name. Both listings as the servers gave them, the source's
/// annotated.
pub fn system_folders(
    source: &[FolderInfo],
    target: &[FolderInfo],
) -> Vec<(FolderPath, FolderPath)> {
    let mut out = Vec::new();
    for (target_use, default) in TARGET_NAMES {
        let source_use = target_use;
        let target_use = if target_use == ALL {
            "\\Archive"
        } else {
            target_use
        };
        let on_source: Vec<&FolderInfo> = source
            .iter()
            .filter(|f| f.special_use.as_deref() == Some(source_use))
            .collect();
        let [from] = on_source.as_slice() else {
            continue;
        };
        let on_target: Vec<&FolderInfo> = target
            .iter()
            .filter(|f| {
                f.special_use
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(target_use))
            })
            .collect();
        let to = match on_target.as_slice() {
            [t] => t.path.clone(),
            _ => FolderPath::from_display(default),
        };
        let taken = source.iter().any(|f| f.path == to);
        if to != from.path && !taken {
            out.push((from.path.clone(), to));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(path: &str, special_use: Option<&str>) -> FolderInfo {
        FolderInfo::for_test(path, special_use)
    }

    #[test]
    fn names_give_uses_where_the_listing_does_not() {
        let mut list = vec![
            folder("INBOX", None),
            folder("[Gmail]/All Mail", None),
            folder("[Google Mail]/Bin", None),
            folder("[Gmail]/Starred", None),
            folder("[Gmail]/Tous les messages", Some("\\All")),
            folder("Work/[Gmail]/All Mail", None),
        ];
        annotate(&mut list);
        let uses: Vec<Option<&str>> = list.iter().map(|f| f.special_use.as_deref()).collect();
        assert_eq!(
            uses,
            [
                None,
                Some("\\All"),
                Some("\\Trash"),
                Some("\\Flagged"),
                Some("\\All"),
                None
            ]
        );
        assert!(is_view(list[3].special_use.as_deref()));
        assert!(!is_view(list[1].special_use.as_deref()));
    }

    #[test]
    fn system_folders_go_to_the_targets_folders_of_their_use_or_usual_names() {
        let mut source = vec![
            folder("INBOX", None),
            folder("[Gmail]/All Mail", None),
            folder("[Gmail]/Sent Mail", None),
            folder("[Gmail]/Spam", None),
            folder("[Gmail]/Drafts", None),
            folder("Trash", None),
            folder("[Gmail]/Trash", None),
        ];
        annotate(&mut source);
        let target = vec![
            folder("INBOX", None),
            folder("Sent Items", Some("\\Sent")),
            folder("Archives", Some("\\Archive")),
        ];
        let map = system_folders(&source, &target);
        let shown: Vec<(String, String)> = map
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(
            shown,
            [
                ("[Gmail]/All Mail".to_string(), "Archives".to_string()),
                ("[Gmail]/Sent Mail".to_string(), "Sent Items".to_string()),
                ("[Gmail]/Drafts".to_string(), "Drafts".to_string()),
                // A label called Trash keeps its name; Gmail's Trash stays where it is.
                ("[Gmail]/Spam".to_string(), "Junk".to_string()),
            ]
        );
    }
}
