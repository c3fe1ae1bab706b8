//! Where a source folder lives on the target when the two name it differently: a special-use
//! folder goes onto the target's folder of the same use (`Sent Items` (`\Sent`) onto `Sent`
//! (`\Sent`)), with everything below it. Every other folder keeps its path. Pure.
//!
//! A mapping is made only when it is unambiguous: exactly one folder with that use on each
//! side, not INBOX, neither path inside the other, and neither side already holding a folder
//! at the other side's path (which would make two folders one). Otherwise the folder is
//! replicated under its own name, as before.
//!
//! `migrate` adds explicit rules ([`Rules`]): `--map 'REGEX=>TEMPLATE'` renames the source
//! folders the first matching rule matches (`$1`... from its groups), and `--subfolder NAME`
//! puts every folder below `NAME/`. A folder an explicit rule names is not mapped by
//! special-use. Two folders renamed onto one are refused before anything is written.

use regex::Regex;

use crate::mailstore::FolderInfo;
use crate::model::FolderPath;

/// A `--subfolder` name without surrounding separators; `None` when nothing is left.
fn folder_name(s: &str) -> Option<String> {
    Some(s.trim_matches('/').to_string()).filter(|s| !s.is_empty())
}

/// Explicit folder renames for a migration.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// (pattern, template), tried in order on the folder's path as `sync` prints it.
    pub map: Vec<(Regex, String)>,
    /// Every folder goes below this one.
    pub subfolder: Option<String>,
    /// The source is Gmail (`--preset gmail`): its system folders go to the target's folders
    /// of their use (see gmail.rs), after the `map` rules.
    pub gmail: bool,
}

impl Rules {
    /// Parses `REGEX=>TEMPLATE` rules; the error names the rule and what to do.
    pub fn parse(rules: &[String], subfolder: Option<String>) -> Result<Rules, String> {
        let mut map = Vec::new();
        for rule in rules {
            let Some((from, to)) = rule.split_once("=>") else {
                return Err(format!(
                    "folder rule {rule:?} has no \"=>\": write it as 'REGEX=>TEMPLATE', e.g. '^Old/(.*)=>Archive/$1'"
                ));
            };
            let re = Regex::new(from).map_err(|e| {
                format!("folder rule {rule:?}: {from:?} is not a valid regular expression: {e}")
            })?;
            map.push((re, to.to_string()));
        }
        Ok(Rules {
            map,
            subfolder: subfolder.as_deref().and_then(folder_name),
            gmail: false,
        })
    }

    /// Rules from a TOML file's `[migrate]` section (`subfolder = "NAME"`, and `[[migrate.map]]`
    /// tables with `from` (regex) and `to` (template)), after the command line's: the command
    /// line's `--map` rules are tried first, its `--subfolder` wins.
    pub fn with_file(mut self, text: &str, file: &str) -> Result<Rules, String> {
        #[derive(serde::Deserialize)]
        struct FileRules {
            #[serde(default)]
            migrate: Section,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct Section {
            #[serde(default)]
            subfolder: Option<String>,
            #[serde(default)]
            map: Vec<MapEntry>,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct MapEntry {
            from: String,
            to: String,
        }
        let parsed: FileRules =
            toml::from_str(text).map_err(|e| format!("{file}: not a valid rules file: {e}"))?;
        for entry in parsed.migrate.map {
            let re = Regex::new(&entry.from).map_err(|e| {
                format!(
                    "{file}: [[migrate.map]] from = {:?} is not a valid regular expression: {e}",
                    entry.from
                )
            })?;
            self.map.push((re, entry.to));
        }
        if self.subfolder.is_none() {
            self.subfolder = parsed.migrate.subfolder.as_deref().and_then(folder_name);
        }
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.subfolder.is_none() && !self.gmail
    }

    /// The target path the rules give a source path, if they change it; `preset` is where a
    /// provider preset puts it, if anywhere (the `map` rules come first).
    fn apply(&self, path: &FolderPath, preset: Option<&FolderPath>) -> Option<FolderPath> {
        let name = path.to_string();
        let mut renamed = self
            .map
            .iter()
            .find(|(re, _)| re.is_match(&name))
            .map(|(re, to)| re.replace(&name, to.as_str()).into_owned())
            .or_else(|| preset.map(FolderPath::to_string))
            .unwrap_or_else(|| name.clone());
        if let Some(sub) = &self.subfolder {
            renamed = format!("{sub}/{renamed}");
        }
        (renamed != name).then(|| FolderPath::from_display(&renamed))
    }
}

/// The special-uses mapped onto the target's folder of the same use. `\All` and `\Flagged`
/// are virtual on the servers that have them, so they are left out.
const MAPPED_USES: [&str; 5] = ["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"];

/// Source folder → target folder, by root: a path below a root moves with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderMap {
    roots: Vec<Root>,
    /// Folders renamed by explicit rules: (source, target), exact paths.
    explicit: Vec<(FolderPath, FolderPath)>,
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
        FolderMap {
            roots: keep,
            explicit: Vec::new(),
        }
    }

    /// Like [`build`](Self::build), with explicit rules first. Fails when the rules would put
    /// two source folders into one target folder.
    pub fn build_with(
        source: &[FolderInfo],
        target: &[FolderInfo],
        rules: &Rules,
    ) -> Result<FolderMap, String> {
        let annotated;
        let source = if rules.gmail {
            let mut list = source.to_vec();
            super::gmail::annotate(&mut list);
            annotated = list;
            &annotated[..]
        } else {
            source
        };
        let mut map = FolderMap::build(source, target);
        if rules.is_empty() {
            return Ok(map);
        }
        let preset = if rules.gmail {
            super::gmail::system_folders(source, target)
        } else {
            Vec::new()
        };
        let mut explicit: Vec<(FolderPath, FolderPath)> = Vec::new();
        for f in source {
            let by_preset = preset.iter().find(|(s, _)| *s == f.path).map(|(_, t)| t);
            if let Some(to) = rules.apply(&f.path, by_preset) {
                explicit.push((f.path.clone(), to));
            }
        }
        // Where every source folder lands: two in one place would merge them.
        let mut seen: std::collections::BTreeMap<FolderPath, &FolderPath> = Default::default();
        for f in source {
            let to = explicit
                .iter()
                .find(|(s, _)| *s == f.path)
                .map_or(&f.path, |(_, t)| t);
            if let Some(other) = seen.insert(to.clone(), &f.path) {
                return Err(format!(
                    "the folder rules put {other} and {} both into {to}: change --map or --subfolder so that each folder gets a name of its own",
                    f.path
                ));
            }
        }
        map.roots.retain(|r| {
            !explicit
                .iter()
                .any(|(s, _)| r.source.renamed(s, s).is_some())
        });
        map.explicit = explicit;
        Ok(map)
    }

    /// The target's path of a source path.
    pub fn to_target(&self, path: &FolderPath) -> FolderPath {
        if let Some((_, t)) = self.explicit.iter().find(|(s, _)| s == path) {
            return t.clone();
        }
        self.roots
            .iter()
            .find_map(|r| path.renamed(&r.source, &r.target))
            .unwrap_or_else(|| path.clone())
    }

    /// The source's path of a target path (the inverse of [`to_target`](Self::to_target)).
    pub fn to_source(&self, path: &FolderPath) -> FolderPath {
        if let Some((s, _)) = self.explicit.iter().find(|(_, t)| t == path) {
            return s.clone();
        }
        self.roots
            .iter()
            .find_map(|r| path.renamed(&r.target, &r.source))
            .unwrap_or_else(|| path.clone())
    }

    /// A target folder the mapping leaves out of the target's listing: it has the name of a
    /// source folder the rules send elsewhere (the target's own INBOX under `--subfolder`), so
    /// in source terms it would pose as that folder.
    pub fn hides(&self, target_path: &FolderPath) -> bool {
        self.explicit.iter().any(|(s, _)| s == target_path)
            && !self.explicit.iter().any(|(_, t)| t == target_path)
    }

    pub fn is_identity(&self) -> bool {
        self.roots.is_empty() && self.explicit.is_empty()
    }

    /// One line per mapped folder, for summaries and `check`.
    pub fn describe(&self) -> Vec<String> {
        let by_rule = self
            .explicit
            .iter()
            .map(|(s, t)| format!("folder {s} goes to the target's {t} (folder rules)"));
        self.roots
            .iter()
            .map(|r| {
                format!(
                    "folder {} maps onto the target's {} (both {})",
                    r.source, r.target, r.special_use
                )
            })
            .chain(by_rule)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(path: &str, special_use: Option<&str>) -> FolderInfo {
        FolderInfo::for_test(path, special_use)
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
    fn rules_rename_first_match_then_subfolder_and_refuse_merges() {
        let source = [
            folder("INBOX", None),
            folder("Old", None),
            folder("Old/2019", None),
            folder("Work", None),
            folder("Sent Items", Some("\\Sent")),
        ];
        let target = [folder("INBOX", None), folder("Sent", Some("\\Sent"))];
        let rules = Rules::parse(
            &["^Old/(.*)=>Archive/$1".into(), "^Old$=>Archive".into()],
            None,
        )
        .unwrap();
        let map = FolderMap::build_with(&source, &target, &rules).unwrap();
        assert_eq!(map.to_target(&p("Old/2019")), p("Archive/2019"));
        assert_eq!(map.to_target(&p("Old")), p("Archive"));
        assert_eq!(map.to_source(&p("Archive/2019")), p("Old/2019"));
        assert_eq!(map.to_target(&p("Work")), p("Work"));
        // Special-use mapping still applies where no rule names the folder.
        assert_eq!(map.to_target(&p("Sent Items")), p("Sent"));

        let sub = Rules::parse(&[], Some("Imported/".into())).unwrap();
        let map = FolderMap::build_with(&source, &target, &sub).unwrap();
        assert_eq!(map.to_target(&p("INBOX")), p("Imported/INBOX"));
        assert_eq!(map.to_target(&p("Sent Items")), p("Imported/Sent Items"));
        assert_eq!(map.to_source(&p("Imported/Work")), p("Work"));
        assert!(map.hides(&p("INBOX")) && !map.hides(&p("Imported/INBOX")));

        let merge = Rules::parse(&["^(Old|Work)$=>Kept".into()], None).unwrap();
        let err = FolderMap::build_with(&source, &target, &merge).unwrap_err();
        assert!(err.contains("both into Kept"), "{err}");
        assert!(Rules::parse(&["no arrow".into()], None).is_err());
        let file =
            "[migrate]\nsubfolder = \"Imp\"\n[[migrate.map]]\nfrom = \"^Old$\"\nto = \"Archive\"\n";
        let rules = Rules::parse(&["^Work$=>Jobs".into()], None)
            .unwrap()
            .with_file(file, "rules.toml")
            .unwrap();
        let map = FolderMap::build_with(&source, &target, &rules).unwrap();
        assert_eq!(map.to_target(&p("Old")), p("Imp/Archive"));
        assert_eq!(map.to_target(&p("Work")), p("Imp/Jobs"));
        let bad = Rules::default().with_file("[migrate]\nmapp = 1\n", "r.toml");
        assert!(bad
            .unwrap_err()
            .starts_with("r.toml: not a valid rules file"));
        assert!(Rules::parse(&["(=>x".into()], None).is_err());
    }

    #[test]
    fn special_use_is_compared_case_insensitively() {
        let source = [folder("Papierkorb", Some("\\trash"))];
        let target = [folder("Trash", Some("\\Trash"))];
        let map = FolderMap::build(&source, &target);
        assert_eq!(map.to_target(&p("Papierkorb")), p("Trash"));
    }
}
