//! Scenario tables (base / primary / recovery -> expected): the parser, the checker, and the
//! test that runs every `fixtures/scenarios/*.txt`. The format is described at the top of
//! each fixture file.

use std::collections::BTreeSet;
use std::path::Path;

use super::*;
use crate::model::{FlagSet, FolderPath};

/// A parsed scenario: the merge input and what must come out.
pub(super) struct Scenario {
    pub base: Base,
    pub sides: [SideState; 2],
    pub held: Vec<HeldItem>,
    pub policy: MergePolicy,
    pub expected_messages: Vec<String>,
    pub expected_folders: Option<BTreeSet<String>>,
    pub expected_conflicts: Option<usize>,
    /// (side, must contain?, text): an action line of that side contains (or no line contains) it.
    pub action_checks: Vec<(Side, bool, String)>,
}

fn cell(raw: &str) -> Result<Option<(FolderPath, FlagSet)>, String> {
    if raw == "-" {
        return Ok(None);
    }
    let (folder, rest) = raw
        .split_once('(')
        .ok_or(format!("cell {raw:?}: expected Folder(flags)"))?;
    let flags = rest
        .strip_suffix(')')
        .ok_or(format!("cell {raw:?}: missing ')'"))?;
    Ok(Some((
        FolderPath::from_display(folder),
        FlagSet::from_raw(flags.split(',').filter(|f| !f.is_empty())),
    )))
}

fn side_of(word: &str) -> Result<Side, String> {
    match word {
        "primary" => Ok(Side::Source),
        "recovery" => Ok(Side::Target),
        _ => Err(format!("unknown side {word:?}")),
    }
}

/// One line of a multiset: `folder identity flags`.
pub(super) fn line(folder: &FolderPath, identity: &Identity, flags: &FlagSet) -> String {
    format!(
        "{folder} {identity} {}",
        flags.to_imap_list().to_ascii_lowercase()
    )
}

pub(super) fn parse(text: &str) -> Result<Scenario, String> {
    let mut sc = Scenario {
        base: Base::default(),
        sides: [SideState::default(), SideState::default()],
        held: Vec::new(),
        policy: MergePolicy::default(),
        expected_messages: Vec::new(),
        expected_folders: None,
        expected_conflicts: None,
        action_checks: Vec::new(),
    };
    let mut section = "";
    for (n, raw) in text.lines().enumerate() {
        let row = n + 1;
        let line_text = raw.split('#').next().unwrap_or("").trim();
        if line_text.is_empty() {
            continue;
        }
        if line_text.starts_with('[') {
            section = line_text;
            continue;
        }
        let words: Vec<&str> = line_text.split_whitespace().collect();
        let err = |e: String| format!("line {row}: {e}");
        match section {
            "[folders]" => {
                let [b, p, r] = words[..] else {
                    return Err(err("a folder row is: base primary recovery".into()));
                };
                let key = (b != "-").then(|| FolderKey(b.to_string()));
                if let Some(k) = &key {
                    sc.base.folders.push(BaseFolder {
                        key: k.clone(),
                        path: FolderPath::from_display(b),
                        special_use: None,
                    });
                }
                for (s, path) in [p, r].into_iter().enumerate() {
                    if path != "-" {
                        sc.sides[s].folders.push(SideFolder {
                            path: FolderPath::from_display(path),
                            special_use: None,
                            base: key.clone(),
                        });
                    }
                }
            }
            "[messages]" => {
                let arrow = words
                    .iter()
                    .position(|w| *w == "=>")
                    .ok_or(err("missing =>".into()))?;
                let [id, b, p, r] = words[..arrow] else {
                    return Err(err(
                        "a message row is: identity base primary recovery => expected".into(),
                    ));
                };
                let held = id.starts_with('!');
                let identity = Identity(id.trim_start_matches('!').to_string());
                let base_cell = cell(b).map_err(err)?;
                let key = base_cell.as_ref().map(|(folder, _)| InstanceKey {
                    folder: FolderKey(folder.to_string()),
                    source_uid: row as u32,
                });
                if let (Some((folder, flags)), Some(k)) = (&base_cell, &key) {
                    sc.base.messages.push(BaseMessage {
                        key: k.clone(),
                        identity: identity.clone(),
                        flags: flags.clone(),
                    });
                    if held {
                        sc.held.push(HeldItem {
                            kind: HeldKind::Removal,
                            folder: folder.clone(),
                            identity: Some(identity.clone()),
                            reason: "the scenario holds it".into(),
                            base: Some(k.clone()),
                            handles: Vec::new(),
                        });
                    }
                }
                for (s, c) in [p, r].into_iter().enumerate() {
                    if let Some((folder, flags)) = cell(c).map_err(err)? {
                        sc.sides[s].messages.push(SideMessage {
                            handle: Handle(format!("{folder}:{row}")),
                            folder,
                            identity: identity.clone(),
                            flags,
                            base: key.clone(),
                        });
                    }
                }
                if !held {
                    for c in &words[arrow + 1..] {
                        if let Some((folder, flags)) = cell(c).map_err(err)? {
                            sc.expected_messages.push(line(&folder, &identity, &flags));
                        }
                    }
                }
            }
            "[expect]" => match words[..] {
                ["folders", ref rest @ ..] => {
                    sc.expected_folders = Some(rest.iter().map(|s| s.to_string()).collect())
                }
                ["conflicts", count] => {
                    sc.expected_conflicts =
                        Some(count.parse().map_err(|_| err("bad count".into()))?)
                }
                ["policy", "read_beats_delete"] => sc.policy.read_beats_delete = true,
                [side, verb @ ("has" | "lacks"), ..] => {
                    let text = line_text
                        .splitn(3, ' ')
                        .nth(2)
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    sc.action_checks
                        .push((side_of(side).map_err(err)?, verb == "has", text));
                }
                _ => return Err(err(format!("unknown expectation {line_text:?}"))),
            },
            _ => return Err(err(format!("row outside a section: {line_text:?}"))),
        }
    }
    sc.expected_messages.sort();
    Ok(sc)
}

/// A side's messages as a sorted multiset, leaving out the held ones.
pub(super) fn side_lines(state: &SideState, held: &[HeldItem], side: Side) -> Vec<String> {
    let mut out: Vec<String> = state
        .messages
        .iter()
        .filter(|m| {
            !held.iter().any(|h| {
                m.base.is_some() && h.base == m.base
                    || h.handles
                        .iter()
                        .any(|(s, hd)| *s == side && *hd == m.handle)
            })
        })
        .map(|m| line(&m.folder, &m.identity, &m.flags))
        .collect();
    out.sort();
    out
}

pub(super) fn merged_lines(merged: &MergedState) -> Vec<String> {
    let mut out: Vec<String> = merged
        .messages
        .iter()
        .map(|m| line(&m.folder, &m.identity, &m.flags))
        .collect();
    out.sort();
    out
}

fn folder_set(state: &SideState) -> BTreeSet<String> {
    state.folders.iter().map(|f| f.path.to_string()).collect()
}

fn diff_lines(expected: &[String], actual: &[String]) -> String {
    let text = |v: &[String]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
    similar::TextDiff::from_lines(text(expected), text(actual))
        .unified_diff()
        .header("expected", "actual")
        .to_string()
}

/// Merges a scenario and returns every way the result differs from what it expects.
pub(super) fn check(sc: &Scenario) -> (MergePlan, Vec<String>) {
    let plan = merge(&MergeInput {
        base: &sc.base,
        primary: &sc.sides[0],
        recovery: &sc.sides[1],
        held: &sc.held,
        policy: sc.policy,
    });
    let mut problems = Vec::new();
    let merged = merged_lines(&plan.merged);
    if merged != sc.expected_messages {
        problems.push(format!(
            "merged state:\n{}",
            diff_lines(&sc.expected_messages, &merged)
        ));
    }
    for side in [Side::Source, Side::Target] {
        let s = super::input::ix(side);
        let after = apply(plan.actions(side), &sc.sides[s]);
        let got = side_lines(&after, &sc.held, side);
        if got != sc.expected_messages {
            problems.push(format!(
                "{} side after the plan:\n{}",
                side_name(side),
                diff_lines(&sc.expected_messages, &got)
            ));
        }
        if let Some(folders) = &sc.expected_folders {
            if &folder_set(&after) != folders {
                problems.push(format!(
                    "{} folders after the plan: {:?}, expected {folders:?}",
                    side_name(side),
                    folder_set(&after)
                ));
            }
        }
    }
    if let Some(count) = sc.expected_conflicts {
        if plan.conflicts.len() != count {
            problems.push(format!(
                "{} conflict(s), expected {count}",
                plan.conflicts.len()
            ));
        }
    }
    for (side, must, text) in &sc.action_checks {
        let found = plan
            .actions(*side)
            .iter()
            .any(|a| a.to_string().contains(text.as_str()));
        if found != *must {
            problems.push(format!(
                "{} side: expected {} action containing {text:?}",
                side_name(*side),
                if *must { "an" } else { "no" }
            ));
        }
    }
    (plan, problems)
}

/// Parses and checks an inline scenario; panics with the plan and the problems.
pub(super) fn assert_scenario(text: &str) -> MergePlan {
    let sc = parse(text).unwrap_or_else(|e| panic!("scenario: {e}"));
    let (plan, problems) = check(&sc);
    assert!(
        problems.is_empty(),
        "{}\nplan:\n{plan}",
        problems.join("\n")
    );
    plan
}

#[test]
fn every_fixture_scenario_merges_as_its_table_says() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 11, "only {} scenario files", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("scenario file");
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        match parse(&text) {
            Err(e) => failures.push(format!("{name}: {e}")),
            Ok(sc) => {
                assert!(
                    !sc.expected_messages.is_empty() || sc.expected_folders.is_some(),
                    "{name} checks nothing"
                );
                let (plan, problems) = check(&sc);
                if !problems.is_empty() {
                    failures.push(format!("{name}:\n{}\nplan:\n{plan}", problems.join("\n")));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
