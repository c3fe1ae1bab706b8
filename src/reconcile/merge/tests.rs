//! One named test per merge rule of DESIGN.md "Failback: three-way merge", as inline tables.

use super::scenarios::assert_scenario;
use super::*;
use crate::model::{FlagSet, FolderPath};

#[test]
fn flags_merge_by_the_set_formula_case_insensitively() {
    let base = FlagSet::from_raw(["\\Seen", "$Old", "Both"]);
    let primary = FlagSet::from_raw(["\\seen", "$new", "BOTH"]);
    let recovery = FlagSet::from_raw(["\\Seen", "$Old", "\\Flagged", "both"]);
    // (A ∩ B) = {\Seen, Both}; A − base = {$new}; B − base = {\Flagged}; $Old removed by A.
    // In the table, m1's \Seen was cleared on the recovery side: the clearing wins.
    assert_eq!(
        merge_flags(&base, &primary, &recovery),
        FlagSet::from_raw(["\\Seen", "Both", "$New", "\\Flagged"])
    );
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         [messages]
         m1 INBOX(\\Seen,$Old) INBOX(\\SEEN,$Work) INBOX($old,\\Flagged) => INBOX($Work,\\Flagged)
         m2 INBOX(\\Seen) INBOX(\\SEEN,$Work) INBOX(\\seen) => INBOX(\\Seen,$work)
         [expect]
         conflicts 0",
    );
}

#[test]
fn folder_renamed_on_one_side_is_renamed_on_the_other() {
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         F     G     F
         [messages]
         m1 F() G() F(\\Seen) => G(\\Seen)
         [expect]
         folders INBOX G
         recovery has rename folder F -> G
         conflicts 0",
    );
}

#[test]
fn folder_created_on_one_side_is_created_on_the_other() {
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         -     -     Later
         [messages]
         m1 - - Later() => Later()
         [expect]
         folders INBOX Later
         primary has create folder Later",
    );
}

#[test]
fn folder_created_on_both_sides_is_one_folder() {
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         -     New   -
         -     -     New
         [messages]
         m1 - New() - => New()
         m2 - - New(\\Seen) => New(\\Seen)
         [expect]
         folders INBOX New
         primary lacks create folder
         recovery lacks create folder
         conflicts 0",
    );
}

#[test]
fn folder_renamed_differently_on_both_keeps_both_names_with_copies() {
    let plan = assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         F     P     R
         [messages]
         m1 F() P(\\Seen) R($x) => P(\\Seen,$x) R(\\Seen,$x)
         [expect]
         folders INBOX P R
         primary has create folder R
         recovery has create folder P
         conflicts 1",
    );
    assert!(matches!(
        plan.conflicts[0].kind,
        ConflictKind::RenamedDifferently { .. }
    ));
}

#[test]
fn folder_deleted_with_nothing_changed_inside_goes_on_both_sides() {
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         Old   -     Old
         [messages]
         m1 Old() - Old(\\Seen) => -
         m2 Old() - Old() => -
         [expect]
         folders INBOX
         recovery has delete folder Old
         conflicts 0",
    );
}

#[test]
fn folder_deleted_but_holding_a_changed_message_is_kept_and_reported() {
    let plan = assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         F     -     F
         [messages]
         m1 F() - F(\\Flagged) => F(\\Flagged)
         m2 F() - F() => -
         [expect]
         folders INBOX F
         primary has create folder F
         conflicts 2",
    );
    assert!(plan.conflicts.iter().any(|c| matches!(
        c.kind,
        ConflictKind::DeletedButKept {
            deleted_on: Side::Source,
            ..
        }
    )));
}

#[test]
fn folder_deleted_keeps_a_parent_whose_child_remains() {
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         P     -     P
         P/C   P/C   P/C
         [messages]
         m1 P/C() P/C() P/C() => P/C()
         [expect]
         folders INBOX P P/C
         conflicts 1",
    );
}

#[test]
fn a_folder_deleted_where_the_other_side_moved_mail_is_kept() {
    // Must-pass: A deletes a folder into which B moved mail.
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         F     -     F
         [messages]
         m1 INBOX() INBOX() F() => F()
         m2 F() - F() => -
         [expect]
         folders INBOX F
         primary has create folder F
         primary has move
         conflicts 1",
    );
}

#[test]
fn a_rename_is_told_apart_from_delete_and_create_of_the_same_content() {
    // Must-pass. Same folder id: a rename; a new id with the same messages: delete + create.
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         F     G     F
         [messages]
         m1 F() G() F() => G()
         [expect]
         folders INBOX G
         recovery has rename folder F -> G
         recovery lacks delete folder",
    );
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         F     -     F
         -     G     -
         [messages]
         m1 F() - F() => -
         m1 - G() - => G()
         [expect]
         folders INBOX G
         recovery lacks rename folder
         recovery has create folder G
         recovery has move F:
         recovery has delete folder F",
    );
}

#[test]
fn a_message_moved_into_a_folder_the_other_side_renamed_follows_the_rename() {
    // Must-pass: A renames folder F while B moves a message into F.
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         F     G     F
         [messages]
         m1 INBOX() INBOX() F() => G()
         m2 F() G() F() => G()
         [expect]
         folders INBOX G
         primary has move INBOX:5 from INBOX to G
         recovery has rename folder F -> G
         conflicts 0",
    );
}

#[test]
fn new_message_on_one_side_is_placed_on_the_other() {
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         [messages]
         m1 - - INBOX(\\Seen) => INBOX(\\Seen)
         [expect]
         primary has place m1 (\\Seen) in INBOX: upload of INBOX:4 in INBOX on the recovery",
    );
}

#[test]
fn the_same_new_message_on_both_sides_counts_once() {
    // Must-pass: the same new message delivered to both sides; copies add up as max(a, b).
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         [messages]
         m1 - INBOX() INBOX(\\Seen) => INBOX(\\Seen)
         m2 - INBOX() - => INBOX()
         m2 - INBOX() INBOX() => INBOX()
         [expect]
         primary lacks place m1
         recovery lacks place m1
         conflicts 0",
    );
}

#[test]
fn removed_on_one_side_and_unchanged_on_the_other_is_removed() {
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         [messages]
         m1 INBOX(\\Seen) - INBOX(\\Seen) => -
         [expect]
         recovery has remove INBOX:4 (m1) from INBOX
         conflicts 0",
    );
}

#[test]
fn removed_on_one_side_and_changed_on_the_other_is_kept_restored_and_reported() {
    let plan = assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         [messages]
         m1 INBOX() INBOX($Work) - => INBOX($Work)
         [expect]
         recovery has place m1
         conflicts 1",
    );
    assert!(matches!(
        plan.conflicts[0].kind,
        ConflictKind::RemovedButChanged {
            removed_on: Side::Target,
            how: RemovedBy::Expunged,
            ..
        }
    ));
}

#[test]
fn adding_deleted_is_a_removal_intent_not_a_change() {
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         [messages]
         m1 INBOX() INBOX(\\Deleted,$Work) - => -
         m2 INBOX() INBOX(\\Deleted) INBOX($Work) => INBOX($Work)
         m3 INBOX() INBOX(\\Deleted) INBOX() => INBOX(\\Deleted)
         [expect]
         primary has remove INBOX:4 (m1)
         conflicts 1",
    );
}

#[test]
fn adding_only_seen_does_not_beat_a_removal() {
    // Must-pass: A deletes a message that B only read.
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         [messages]
         m1 INBOX() - INBOX(\\Seen) => -
         [expect]
         conflicts 0",
    );
    assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         [messages]
         m1 INBOX() - INBOX(\\Seen) => INBOX(\\Seen)
         [expect]
         policy read_beats_delete
         conflicts 1",
    );
}

#[test]
fn moved_on_one_side_is_moved_on_the_other() {
    assert_scenario(
        "[folders]
         INBOX   INBOX   INBOX
         Archive Archive Archive
         [messages]
         m1 INBOX() Archive() INBOX(\\Seen) => Archive(\\Seen)
         [expect]
         recovery has move INBOX:5 from INBOX to Archive
         conflicts 0",
    );
}

#[test]
fn moved_to_different_folders_on_both_is_kept_in_both_with_flags_merged() {
    let plan = assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         A     A     A
         B     B     B
         [messages]
         m1 INBOX() A(\\Seen) B($Work) => A(\\Seen,$Work) B(\\Seen,$Work)
         [expect]
         primary has place m1
         primary has copy of
         conflicts 1",
    );
    assert!(matches!(
        plan.conflicts[0].kind,
        ConflictKind::MovedApart { .. }
    ));
}

#[test]
fn held_items_pass_through_and_are_left_alone() {
    let plan = assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         [messages]
         !m1 INBOX() - INBOX() => -
         m2 INBOX() - INBOX() => -
         [expect]
         recovery lacks (m1)
         recovery has (m2)",
    );
    assert_eq!(plan.held.len(), 1);
    assert!(plan.to_string().contains("held removal in INBOX (m1)"));
}

#[test]
fn the_plan_prints_actions_grouped_by_folder_then_conflicts_and_held() {
    let plan = assert_scenario(
        "[folders]
         INBOX INBOX INBOX
         F     G     F
         [messages]
         m1 - INBOX() - => INBOX()
         m2 F() G() F(\\Seen) => G(\\Seen)
         m3 - - F() => G()",
    );
    let text = plan.to_string();
    assert!(text.contains("primary side: 2 action(s)\n  G\n"), "{text}");
    assert!(text.contains("recovery side:"), "{text}");
    assert!(text.contains("    rename folder F -> G\n"), "{text}");
    assert!(text.contains("conflicts: 0\nheld: 0\n"), "{text}");
}

#[test]
fn conflicting_listings_and_flags_render_as_unified_diffs() {
    let d = flags_diff(
        &Identity("m1".into()),
        &FlagSet::from_raw(["\\Seen"]),
        &FlagSet::from_raw(["\\Seen", "$Work"]),
    );
    assert!(d.starts_with("--- primary/m1\n+++ recovery/m1\n"), "{d}");
    assert!(d.contains("+$Work\n"), "{d}");
    let side = |flags: &[&str]| SideState {
        folders: vec![],
        messages: vec![SideMessage {
            handle: Handle("1".into()),
            folder: FolderPath::inbox(),
            identity: Identity("m1".into()),
            flags: FlagSet::from_raw(flags.iter().copied()),
            base: None,
        }],
    };
    let d = listing_diff(&FolderPath::inbox(), &side(&[]), &side(&["\\Seen"]));
    assert!(d.contains("-m1 ()\n+m1 (\\Seen)\n"), "{d}");
    assert!(listing_diff(&FolderPath::inbox(), &side(&[]), &side(&[])).is_empty());
}

#[test]
fn long_identities_print_shortened() {
    let id = Identity::of_fingerprint(&crate::model::Fingerprint::of(b"x"));
    assert_eq!(id.to_string().len(), 16);
}
