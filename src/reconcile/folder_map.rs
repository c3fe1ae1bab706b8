//! Where a source folder lives on the target when the two name it differently: a special-use
//! folder goes onto the target's folder of the same use (`Sent Items` (`\Sent`) onto `Sent`
//! (`\Sent`)), with everything below it. Every other folder keeps its path. Pure.
//!
//! A mapping is made only when it is unambiguous: exactly one folder with that use on each
//! side, not INBOX, neither path inside the other, and neither side already holding a folder
//! at the other side's path (which would make two folders one). Otherwise the folder is
//! replicated under its own name, as before.

use crate::mailstore::FolderInfo;
use crate::model::FolderPath;

/// The special-uses mapped onto the target's folder of the same use. `\All` and `\Flagged`
/// are virtual on the servers that have them, so they are left out.
const MAPPED_USES: [&str; 5] = ["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"];

/// Source folder → target folder, by root: a path below a root moves with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderMap {
    roots: Vec<Root>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Root {
    source: FolderPath,
    target: FolderPath,
    special_use: String,
}

impl FolderMap {
    /// Every folder under its own name.
    pub fn identity() -> FolderMap {
        FolderMap::default()
    }

    /// The mapping for these two listings (see the module docs for when a folder is mapped).
    pub fn build(source: &[FolderInfo], target: &[FolderInfo]) -> FolderMap {
        let with_use = |list: &[FolderInfo], u: &str| -> Vec<FolderPath> {
            list.iter()
                .filter(|f| {
                    f.special_use
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case(u))
                })
                .map(|f| f.path.clone())
                .collect()
        };
        // The list has a folder at `p` or below it.
        let holds = |list: &[FolderInfo], p: &FolderPath| {
            list.iter().any(|f| f.path.renamed(p, p).is_some())
        };
        let mut roots = Vec::new();
        for u in MAPPED_USES {
            let (s, t) = (with_use(source, u), with_use(target, u));
            let ([s], [t]) = (s.as_slice(), t.as_slice()) else {
                continue;
            };
            let nested = s.renamed(t, t).is_some() || t.renamed(s, s).is_some();
            if s == t || s.is_inbox() || t.is_inbox() || nested {
                continue;
            }
            if holds(source, t) || holds(target, s) {
                continue;
            }
            roots.push(Root {
                source: s.clone(),
                target: t.clone(),
                special_use: u.to_string(),
            });
        }
        // Two roots nested in each other would make the rewrite ambiguous: keep neither.
        let clash = |a: &Root, b: &Root| {
            a != b
                && (a.source.renamed(&b.source, &b.source).is_some()
                    || a.target.renamed(&b.target, &b.target).is_some())
        };
        let keep: Vec<Root> = roots
            .iter()
            .filter(|a| !roots.iter().any(|b| clash(a, b) || clash(b, a)))
            .cloned()
            .collect();
        FolderMap { roots: keep }
    }

    /// The target's path of a source path.
    pub fn to_target(&self, path: &FolderPath) -> FolderPath {
        self.roots
            .iter()
            .find_map(|r| path.renamed(&r.source, &r.target))
            .unwrap_or_else(|| path.clone())
    }

    /// The source's path of a target path (the inverse of [`to_target`](Self::to_target)).
    pub fn to_source(&self, path: &FolderPath) -> FolderPath {
        self.roots
            .iter()
            .find_map(|r| path.renamed(&r.target, &r.source))
            .unwrap_or_else(|| path.clone())
    }

    pub fn is_identity(&self) -> bool {
        self.roots.is_empty()
    }

    /// One line per mapped folder, for summaries and `check`.
    pub fn describe(&self) -> Vec<String> {
        self.roots
            .iter()
            .map(|r| {
                format!(
                    "folder {} maps onto the target's {} (both {})",
                    r.source, r.target, r.special_use
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(path: &str, special_use: Option<&str>) -> FolderInfo {
        FolderInfo {
            path: FolderPath::from_display(path),
            selectable: true,
            special_use: special_use.map(str::to_string),
            tokens: None,
            subscribed: false,
        }
    }

    fn p(s: &str) -> FolderPath {
        FolderPath::from_display(s)
    }

    #[test]
    fn a_special_use_folder_maps_onto_the_targets_with_its_children() {
        let source = [
            folder("INBOX", None),
            folder("Sent Items", Some("\\Sent")),
            folder("Sent Items/2023", None),
            folder("Work", None),
        ];
        let target = [folder("INBOX", None), folder("Sent", Some("\\Sent"))];
        let map = FolderMap::build(&source, &target);
        assert_eq!(map.to_target(&p("Sent Items")), p("Sent"));
        assert_eq!(map.to_target(&p("Sent Items/2023")), p("Sent/2023"));
        assert_eq!(map.to_target(&p("Work")), p("Work"));
        assert_eq!(map.to_source(&p("Sent")), p("Sent Items"));
        assert_eq!(map.to_source(&p("Sent/2023")), p("Sent Items/2023"));
        assert_eq!(map.to_source(&p("Sent Other")), p("Sent Other"));
        assert_eq!(
            map.describe(),
            ["folder Sent Items maps onto the target's Sent (both \\Sent)"]
        );
    }

    #[test]
    fn ambiguous_cases_keep_names() {
        let target = [folder("Sent", Some("\\Sent"))];
        // The source also has a folder named like the target's: two would become one.
        let both = [folder("Sent Items", Some("\\Sent")), folder("Sent", None)];
        assert!(FolderMap::build(&both, &target).is_identity());
        // Two source folders with the use.
        let two = [
            folder("Sent Items", Some("\\Sent")),
            folder("Gesendet", Some("\\Sent")),
        ];
        assert!(FolderMap::build(&two, &target).is_identity());
        // The target also has a folder at the source's name.
        let source = [folder("Sent Items", Some("\\Sent"))];
        let target2 = [folder("Sent", Some("\\Sent")), folder("Sent Items", None)];
        assert!(FolderMap::build(&source, &target2).is_identity());
        // Same name: nothing to map. Virtual uses: never.
        assert!(FolderMap::build(&[folder("Sent", Some("\\Sent"))], &target).is_identity());
        let all = [folder("All Mail", Some("\\All"))];
        assert!(FolderMap::build(&all, &[folder("Archive", Some("\\All"))]).is_identity());
        // Nested paths.
        let nested = [folder("Sent/Old", Some("\\Sent"))];
        assert!(FolderMap::build(&nested, &target).is_identity());
    }

    #[test]
    fn special_use_is_compared_case_insensitively() {
        let source = [folder("Papierkorb", Some("\\trash"))];
        let target = [folder("Trash", Some("\\Trash"))];
        let map = FolderMap::build(&source, &target);
        assert_eq!(map.to_target(&p("Papierkorb")), p("Trash"));
    }
}
