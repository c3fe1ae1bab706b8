//! The merge laws of DESIGN.md, property-tested on the merged state: symmetry, convergence,
//! stability, no lost intent, termination. Cases are small: up to 5 folders, 6 base messages.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;

use super::scenarios::{line, merged_lines, side_lines};
use super::*;
use crate::model::{FlagSet, FolderPath};

const FOLDER_NAMES: [&str; 8] = ["INBOX", "A", "B", "C", "D", "E", "F", "G"];
const IDENTITIES: [&str; 3] = ["m1", "m2", "m3"];
const FLAG_NAMES: [&str; 4] = ["\\Seen", "\\Flagged", "\\Deleted", "$Work"];

/// Turns random bytes into choices; runs out into zeros (the "do nothing" choice).
struct Choices<'a>(std::slice::Iter<'a, u8>);

impl Choices<'_> {
    fn pick(&mut self, n: usize) -> usize {
        self.0.next().map_or(0, |b| *b as usize % n.max(1))
    }
    fn flags(&mut self) -> FlagSet {
        let mask = self.pick(16);
        FlagSet::from_raw(
            (0..4)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| FLAG_NAMES[i]),
        )
    }
}

#[derive(Debug, Clone)]
struct Case {
    base: Base,
    primary: SideState,
    recovery: SideState,
    held: Vec<HeldItem>,
}

fn path(name: &str) -> FolderPath {
    FolderPath::from_display(name)
}

fn gen_base(c: &mut Choices<'_>) -> (Base, Vec<HeldItem>) {
    let mut base = Base::default();
    for name in FOLDER_NAMES.iter().take(5) {
        if *name == "INBOX" || c.pick(2) == 1 {
            base.folders.push(BaseFolder {
                key: FolderKey(name.to_string()),
                path: path(name),
                special_use: None,
            });
        }
    }
    for uid in 0..c.pick(7) as u32 {
        let folder = base.folders[c.pick(base.folders.len())].key.clone();
        base.messages.push(BaseMessage {
            key: InstanceKey {
                folder,
                source_uid: uid,
            },
            identity: Identity(IDENTITIES[c.pick(3)].to_string()),
            flags: c.flags(),
        });
    }
    let mut held = Vec::new();
    if !base.messages.is_empty() && c.pick(5) == 0 {
        let m = &base.messages[c.pick(base.messages.len())];
        held.push(HeldItem {
            kind: HeldKind::Removal,
            folder: path(&m.key.folder.0),
            identity: Some(m.identity.clone()),
            reason: "generated".into(),
            base: Some(m.key.clone()),
            handles: Vec::new(),
        });
    }
    (base, held)
}

/// One side derived from the base by random edits that a real mailbox could show.
fn gen_side(c: &mut Choices<'_>, base: &Base, held: &[HeldItem], side: Side) -> SideState {
    let mut folders: Vec<SideFolder> = Vec::new();
    let mut renames = Vec::new();
    for bf in &base.folders {
        let choice = if bf.path.is_inbox() { 0 } else { c.pick(5) };
        match choice {
            3 => renames.push(bf),
            4 => {}
            _ => folders.push(SideFolder {
                path: bf.path.clone(),
                special_use: None,
                base: Some(bf.key.clone()),
            }),
        }
    }
    let unused = |folders: &Vec<SideFolder>| -> Vec<&str> {
        FOLDER_NAMES
            .iter()
            .copied()
            .filter(|n| !folders.iter().any(|f| f.path == path(n)))
            .collect()
    };
    for bf in renames {
        let free = unused(&folders);
        let name = free[c.pick(free.len())];
        folders.push(SideFolder {
            path: path(name),
            special_use: None,
            base: Some(bf.key.clone()),
        });
    }
    if c.pick(3) == 0 {
        let free = unused(&folders);
        let name = free[c.pick(free.len())];
        folders.push(SideFolder {
            path: path(name),
            special_use: None,
            base: None,
        });
    }
    let tag = if side == Side::Source { "p" } else { "r" };
    let mut messages = Vec::new();
    let handle = |n: usize| Handle(format!("{tag}{n}"));
    for (n, bm) in base.messages.iter().enumerate() {
        let is_held = held.iter().any(|h| h.base.as_ref() == Some(&bm.key));
        let at = folders
            .iter()
            .find(|f| f.base.as_ref() == Some(&bm.key.folder))
            .map(|f| f.path.clone());
        let choice = match (is_held, &at) {
            // A held removal: gone from the primary, still on the recovery side.
            (true, _) if side == Side::Source => continue,
            (true, _) => 0,
            (false, None) => {
                if c.pick(3) == 0 {
                    2
                } else {
                    continue;
                }
            }
            (false, Some(_)) => c.pick(6),
        };
        let mut folder = at.unwrap_or_else(FolderPath::inbox);
        let mut flags = bm.flags.clone();
        match choice {
            1 => continue,
            2 => folder = folders[c.pick(folders.len())].path.clone(),
            3 => flags = c.flags(),
            4 => {
                flags = flags
                    .iter()
                    .cloned()
                    .chain(FlagSet::from_raw(["\\Deleted"]).iter().cloned())
                    .collect()
            }
            5 => {
                flags = flags
                    .iter()
                    .cloned()
                    .chain(FlagSet::from_raw(["\\Seen"]).iter().cloned())
                    .collect()
            }
            _ => {}
        }
        messages.push(SideMessage {
            handle: handle(n),
            folder,
            identity: bm.identity.clone(),
            flags,
            base: Some(bm.key.clone()),
        });
    }
    for n in 0..c.pick(4) {
        messages.push(SideMessage {
            handle: handle(100 + n),
            folder: folders[c.pick(folders.len())].path.clone(),
            identity: Identity(IDENTITIES[c.pick(3)].to_string()),
            flags: c.flags(),
            base: None,
        });
    }
    SideState { folders, messages }
}

fn gen_case(bytes: &[u8]) -> Case {
    let mut c = Choices(bytes.iter());
    let (base, held) = gen_base(&mut c);
    let primary = gen_side(&mut c, &base, &held, Side::Source);
    let recovery = gen_side(&mut c, &base, &held, Side::Target);
    Case {
        base,
        primary,
        recovery,
        held,
    }
}

fn run(case: &Case, primary: &SideState, recovery: &SideState) -> MergePlan {
    merge(&MergeInput {
        base: &case.base,
        primary,
        recovery,
        held: &case.held,
        policy: MergePolicy::default(),
    })
}

fn merged_folders(plan: &MergePlan) -> BTreeSet<String> {
    plan.merged
        .folders
        .iter()
        .map(|f| f.path.to_string())
        .collect()
}

/// Folder paths, leaving out those that hold a held message on either side (such a folder
/// is never deleted, so the sides may differ there).
fn without_held_folders(paths: BTreeSet<String>, case: &Case) -> BTreeSet<String> {
    let holding: BTreeSet<String> = [&case.primary, &case.recovery]
        .iter()
        .flat_map(|side| side.messages.iter())
        .filter(|m| m.base.is_some() && case.held.iter().any(|h| h.base == m.base))
        .map(|m| m.folder.to_string())
        .collect();
    paths.into_iter().filter(|p| !holding.contains(p)).collect()
}

fn folder_set(state: &SideState) -> BTreeSet<String> {
    state.folders.iter().map(|f| f.path.to_string()).collect()
}

/// A converged state as a new base with both sides descending from it: what the engine
/// records after failback.
fn rebase(primary: &SideState, recovery: &SideState) -> (Base, SideState, SideState) {
    let mut base = Base::default();
    let mut sides = [primary.clone(), recovery.clone()];
    for f in &primary.folders {
        base.folders.push(BaseFolder {
            key: FolderKey(f.path.to_string()),
            path: f.path.clone(),
            special_use: None,
        });
    }
    for side in sides.iter_mut() {
        for f in side.folders.iter_mut() {
            f.base = Some(FolderKey(f.path.to_string()));
        }
    }
    let mut free: HashMap<String, Vec<InstanceKey>> = HashMap::new();
    for (n, m) in primary.messages.iter().enumerate() {
        let key = InstanceKey {
            folder: FolderKey(m.folder.to_string()),
            source_uid: n as u32,
        };
        base.messages.push(BaseMessage {
            key: key.clone(),
            identity: m.identity.clone(),
            flags: m.flags.clone(),
        });
        sides[0].messages[n].base = Some(key.clone());
        free.entry(line(&m.folder, &m.identity, &m.flags))
            .or_default()
            .push(key);
    }
    for m in sides[1].messages.iter_mut() {
        m.base = free
            .get_mut(&line(&m.folder, &m.identity, &m.flags))
            .and_then(|keys| keys.pop());
    }
    let [p, r] = sides;
    (base, p, r)
}

/// Every base->side delta is applied in the merged state or listed as a conflict. The one
/// exception is the rule itself: a `\Seen`-only change loses to a removal, silently.
fn lost_intents(case: &Case, plan: &MergePlan) -> Vec<String> {
    let mut lost = Vec::new();
    let conflicted_instance = |k: &InstanceKey| {
        plan.conflicts
            .iter()
            .any(|c| c.subject == ConflictSubject::Instance(k.clone()))
    };
    let conflicted_folder = |k: &FolderKey| {
        plan.conflicts
            .iter()
            .any(|c| c.subject == ConflictSubject::Folder(k.clone()))
    };
    let folder_of_member = |s: usize, p: &FolderPath| -> Option<&FolderPath> {
        plan.merged
            .folders
            .iter()
            .find(|f| f.members[s].contains(p))
            .map(|f| &f.path)
    };
    for (s, side) in [&case.primary, &case.recovery].into_iter().enumerate() {
        for bf in &case.base.folders {
            let now = side
                .folders
                .iter()
                .find(|f| f.base.as_ref() == Some(&bf.key));
            let merged_has = |p: &FolderPath| plan.merged.folders.iter().any(|f| &f.path == p);
            match now {
                None if plan
                    .merged
                    .folders
                    .iter()
                    .any(|f| f.origin.contains(&bf.key))
                    && !conflicted_folder(&bf.key) =>
                {
                    lost.push(format!("side {s}: deletion of {} lost", bf.path))
                }
                Some(f)
                    if f.path != bf.path && !merged_has(&f.path) && !conflicted_folder(&bf.key) =>
                {
                    lost.push(format!("side {s}: rename {} -> {} lost", bf.path, f.path))
                }
                _ => {}
            }
        }
        for f in side.folders.iter().filter(|f| f.base.is_none()) {
            if !plan.merged.folders.iter().any(|m| m.path == f.path) {
                lost.push(format!("side {s}: creation of {} lost", f.path));
            }
        }
        for bm in &case.base.messages {
            if case.held.iter().any(|h| h.base.as_ref() == Some(&bm.key))
                || conflicted_instance(&bm.key)
            {
                continue;
            }
            let kept: Vec<&MergedMessage> = plan
                .merged
                .messages
                .iter()
                .filter(|m| m.base.as_ref() == Some(&bm.key))
                .collect();
            let Some(d) = side
                .messages
                .iter()
                .find(|m| m.base.as_ref() == Some(&bm.key))
            else {
                if !kept.is_empty() {
                    lost.push(format!("side {s}: removal of {} lost", bm.key));
                }
                continue;
            };
            let added = d.flags.minus(&bm.flags);
            let removed = bm.flags.minus(&d.flags);
            for m in &kept {
                if !added.minus(&m.flags).is_empty() || removed.iter().any(|f| m.flags.contains(f))
                {
                    lost.push(format!(
                        "side {s}: flags of {} lost ({} vs {})",
                        bm.key, d.flags, m.flags
                    ));
                }
            }
            let base_folder = side
                .folders
                .iter()
                .find(|f| f.base.as_ref() == Some(&bm.key.folder));
            let moved = base_folder.map(|f| &f.path) != Some(&d.folder);
            let only_read = removed.is_empty() && added.iter().all(|f| f.as_str() == "\\Seen");
            if (moved || !only_read)
                && kept.is_empty()
                && !added.iter().any(|f| f.as_str() == "\\Deleted")
            {
                lost.push(format!("side {s}: change of {} lost to a removal", bm.key));
            }
            if moved && !kept.is_empty() {
                let to = folder_of_member(s, &d.folder);
                if !kept.iter().any(|m| Some(&m.folder) == to) {
                    lost.push(format!("side {s}: move of {} to {} lost", bm.key, d.folder));
                }
            }
        }
        let mut new_counts: HashMap<(FolderPath, Identity), usize> = HashMap::new();
        for m in side.messages.iter().filter(|m| m.base.is_none()) {
            *new_counts
                .entry((m.folder.clone(), m.identity.clone()))
                .or_default() += 1;
        }
        for ((folder, identity), count) in new_counts {
            let to = folder_of_member(s, &folder);
            let merged = plan
                .merged
                .messages
                .iter()
                .filter(|m| m.base.is_none() && m.identity == identity && Some(&m.folder) == to)
                .count();
            if merged < count {
                lost.push(format!(
                    "side {s}: {count} new {identity} in {folder}, {merged} kept"
                ));
            }
        }
    }
    lost
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn convergence_both_sides_end_equal_to_the_merged_state(b in bytes()) {
        let case = gen_case(&b);
        let plan = run(&case, &case.primary, &case.recovery);
        let after_p = apply(plan.actions(Side::Source), &case.primary);
        let after_r = apply(plan.actions(Side::Target), &case.recovery);
        let merged = merged_lines(&plan.merged);
        prop_assert_eq!(&side_lines(&after_p, &case.held, Side::Source), &merged, "{}", plan);
        prop_assert_eq!(&side_lines(&after_r, &case.held, Side::Target), &merged, "{}", plan);
        let folders = without_held_folders(merged_folders(&plan), &case);
        prop_assert_eq!(&without_held_folders(folder_set(&after_p), &case), &folders, "{}", plan);
        prop_assert_eq!(&without_held_folders(folder_set(&after_r), &case), &folders, "{}", plan);
    }

    #[test]
    fn symmetry_swapping_the_sides_swaps_the_result(b in bytes()) {
        let case = gen_case(&b);
        let plan = run(&case, &case.primary, &case.recovery);
        let swapped = run(&case, &case.recovery, &case.primary);
        prop_assert_eq!(merged_lines(&plan.merged), merged_lines(&swapped.merged));
        prop_assert_eq!(merged_folders(&plan), merged_folders(&swapped));
        prop_assert_eq!(plan.conflicts.len(), swapped.conflicts.len());
        let a1 = apply(plan.actions(Side::Source), &case.primary);
        let a2 = apply(swapped.actions(Side::Target), &case.primary);
        prop_assert_eq!(side_lines(&a1, &case.held, Side::Source), side_lines(&a2, &case.held, Side::Source));
    }

    #[test]
    fn stability_merging_a_side_with_itself_plans_nothing(b in bytes()) {
        let case = gen_case(&b);
        for side in [&case.primary, &case.recovery] {
            let plan = run(&case, side, side);
            prop_assert!(plan.is_empty(), "{}", plan);
            prop_assert!(plan.conflicts.is_empty(), "{}", plan);
        }
    }

    #[test]
    fn no_lost_intent_every_delta_is_applied_or_reported(b in bytes()) {
        let case = gen_case(&b);
        let plan = run(&case, &case.primary, &case.recovery);
        let lost = lost_intents(&case, &plan);
        prop_assert!(lost.is_empty(), "{:?}\n{}", lost, plan);
    }

    #[test]
    fn termination_merging_again_after_applying_plans_nothing(b in bytes()) {
        let mut case = gen_case(&b);
        case.held.clear();
        let plan = run(&case, &case.primary, &case.recovery);
        let after_p = apply(plan.actions(Side::Source), &case.primary);
        let after_r = apply(plan.actions(Side::Target), &case.recovery);
        let (base, p, r) = rebase(&after_p, &after_r);
        let again = merge(&MergeInput { base: &base, primary: &p, recovery: &r, held: &[], policy: MergePolicy::default() });
        prop_assert!(again.is_empty(), "first plan:\n{}\nsecond plan:\n{}", plan, again);
    }
}

/// The generator is not vacuous: over a fixed set of cases it reaches every conflict kind and
/// every action kind the properties speak about.
#[test]
fn generated_cases_reach_every_conflict_and_action_kind() {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut state = 0x2545_f491_u64;
    for _ in 0..3000 {
        let bytes: Vec<u8> = (0..80)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                (state >> 33) as u8
            })
            .collect();
        let case = gen_case(&bytes);
        let plan = run(&case, &case.primary, &case.recovery);
        for c in &plan.conflicts {
            let kind = format!("{:?}", c.kind);
            seen.insert(kind.split([' ', '{']).next().unwrap_or("").to_string());
        }
        for a in plan.actions.iter().flatten() {
            let kind = format!("{a:?}");
            seen.insert(kind.split([' ', '{']).next().unwrap_or("").to_string());
        }
    }
    for kind in [
        "RenamedDifferently",
        "DeletedButKept",
        "RenamedButDeleted",
        "NamesCollide",
        "RemovedButChanged",
        "MovedApart",
        "CreateFolder",
        "RenameFolder",
        "DeleteFolder",
        "Place",
        "Move",
        "SetFlags",
        "Remove",
    ] {
        assert!(
            seen.contains(kind),
            "no generated case reaches {kind}: {seen:?}"
        );
    }
}
