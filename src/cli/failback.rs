//! `mailreplica failback`: merge both sides three ways, print the plan, apply it, resume sync.
//!
//! Steps: list and link both sides (`engine::failback::snapshot`), merge (pure), print the
//! plan; with `--dry-run` stop there. Else check the removal budget, apply the plan to both
//! sides, list and merge again to prove both sides converged (the plan must now be empty),
//! then replace the base: mark the pair `rebuilding`, empty the state, clear the mark, and
//! run one one-way pass, which adopts by identity what the target already holds (nothing is
//! uploaded again). A stop anywhere before the mark changes leaves the old base frozen and
//! the command is simply run again; a stop after it is finished by `failback` (rebuilding)
//! or by the next `sync` (once the mark is cleared, the empty base is rebuilt by identity).

use serde::Serialize;

use super::args::FailbackArgs;
use super::exit::ExitCode;
use super::pair::{connect, Pair};
use super::progress::Progress;
use crate::engine::failback::{apply_plan, removals, snapshot, ApplyReport, Snapshot};
use crate::engine::failover::{
    clear_failed_over, failed_over, format_utc, set_failed_over, take_request, FailedOver, Phase,
};
use crate::engine::sync::{sync_into, SyncOptions};
use crate::engine::{EngineError, SyncSummary};
use crate::mailstore::any::AnyStore;
use crate::mailstore::{Access, MailStore};
use crate::model::Side;
use crate::reconcile::budget::budget;
use crate::reconcile::merge::{
    flags_diff, listing_diff, merge, side_name, ConflictKind, MergeAction, MergeInput, MergePlan,
    MergePolicy, PlaceSource,
};
use crate::state::StateFile;

pub struct FailbackCommand {
    pub args: FailbackArgs,
}

#[derive(Debug, Serialize)]
struct ActionJson {
    kind: &'static str,
    /// The folder the action is listed under (a move under its destination).
    folder: String,
    text: String,
    /// The full identity (SHA-256 of the CRLF-normalised bytes) of a message action.
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    handle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
}

#[derive(Debug, Serialize)]
struct ConflictJson {
    folder: String,
    text: String,
    /// A unified diff (`similar`) of the folder's listing or the message's flags, primary
    /// (`---`) against recovery (`+++`); empty when they show no difference.
    diff: String,
}

#[derive(Debug, Serialize)]
struct Actions {
    primary: Vec<ActionJson>,
    recovery: Vec<ActionJson>,
}

#[derive(Debug, Serialize)]
struct Outcome {
    primary: String,
    recovery: String,
    dry_run: bool,
    failed_over_since: u64,
    actions: Actions,
    conflicts: Vec<ConflictJson>,
    held: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<ApplyReport>,
    /// Actions a second merge after applying still found (0 when both sides converged).
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining: Option<usize>,
    /// That second plan, as text, when it is not empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining_plan: Option<String>,
    /// The one-way pass that rebuilt the base.
    #[serde(skip_serializing_if = "Option::is_none")]
    resumed: Option<SyncSummary>,
    /// One line saying how it ended and what to do next.
    message: String,
}

impl FailbackCommand {
    pub async fn execute(self) -> ExitCode {
        let args = self.args;
        let (pair, id, path) = match args.pair.resolve_with_state(args.state.as_deref()) {
            Ok(r) => r,
            Err(code) => return code,
        };
        if !path.is_file() {
            eprintln!(
                "error: no state file at {}: this pair was never synced or failed over; pass the --state FILE that sync and failover used",
                path.display()
            );
            return ExitCode::Usage;
        }
        let state = match StateFile::open(&path, &id) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::of_state(&e);
            }
        };
        // A failover request no agent took (the watch stopped first) counts as the failover.
        let mark = match take_request(&state).and_then(|()| failed_over(&state)) {
            Ok(Some(m)) => m,
            Ok(None) => {
                eprintln!(
                    "error: the pair is not failed over, so there is nothing to fail back; `mailreplica failover` freezes the base at switch-over, `mailreplica sync` replicates one way"
                );
                return ExitCode::Usage;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::of_engine(&e);
            }
        };
        let progress = Progress::new(args.json);
        let mut out = Outcome {
            primary: pair.source.endpoint.to_string(),
            recovery: pair.target.endpoint.to_string(),
            dry_run: args.dry_run,
            failed_over_since: mark.since,
            actions: Actions {
                primary: Vec::new(),
                recovery: Vec::new(),
            },
            conflicts: Vec::new(),
            held: Vec::new(),
            applied: None,
            remaining: None,
            remaining_plan: None,
            resumed: None,
            message: String::new(),
        };
        let code = match mark.phase {
            Phase::Frozen => self_merge(&args, &pair, &state, &mark, &progress, &mut out).await,
            // A failback applied everything and stopped while replacing the base.
            Phase::Rebuilding if args.dry_run => {
                out.message = "both sides were merged by an earlier failback; run failback without --dry-run to finish replacing the base".into();
                ExitCode::InSync
            }
            Phase::Rebuilding => ExitCode::InSync,
        };
        let code = match code {
            ExitCode::InSync if !args.dry_run => {
                resume(&pair, &state, &mark, &progress, &mut out).await
            }
            code => code,
        };
        print_outcome(&args, &out);
        code
    }
}

/// Lists, merges, prints (into `out`) and, without --dry-run, applies and checks convergence.
async fn self_merge(
    args: &FailbackArgs,
    pair: &Pair,
    state: &StateFile,
    mark: &FailedOver,
    progress: &Progress,
    out: &mut Outcome,
) -> ExitCode {
    let access = if args.dry_run {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let mut primary = match connect(&pair.source, access, "primary").await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut recovery = match connect(&pair.target, access, "recovery").await {
        Ok(s) => s,
        Err(code) => {
            primary.logout().await;
            return code;
        }
    };
    let code = merge_and_apply(
        args,
        &mut primary,
        &mut recovery,
        state,
        mark,
        progress,
        out,
    )
    .await;
    primary.logout().await;
    recovery.logout().await;
    code
}

async fn merge_and_apply(
    args: &FailbackArgs,
    primary: &mut AnyStore,
    recovery: &mut AnyStore,
    state: &StateFile,
    mark: &FailedOver,
    progress: &Progress,
    out: &mut Outcome,
) -> ExitCode {
    let failed = |e: &EngineError, out: &mut Outcome| {
        eprintln!("error: {e}");
        out.message = "failback stopped; the base is still frozen and nothing already applied is lost: run the same command again, it lists both sides anew and finishes the merge".into();
        ExitCode::of_engine(e)
    };
    let snap = match snapshot(primary, recovery, state, progress).await {
        Ok(s) => s,
        Err(e) => return failed(&e, out),
    };
    let plan = plan_of(&snap);
    describe(&plan, &snap, out);
    if !args.json {
        println!(
            "failback plan, against the base frozen at {}:",
            format_utc(mark.since)
        );
        print!("{plan}");
        for c in &out.conflicts {
            if !c.diff.is_empty() {
                println!("diff for: {}\n{}", c.text, c.diff.trim_end());
            }
        }
    }
    if args.dry_run {
        out.message = format!(
            "dry run: {} action(s) on the primary, {} on the recovery side, {} conflict(s), {} held item(s); nothing was changed",
            plan.actions(Side::Source).len(),
            plan.actions(Side::Target).len(),
            plan.conflicts.len(),
            plan.held.len()
        );
        return ExitCode::InSync;
    }
    for side in [Side::Source, Side::Target] {
        let n = removals(&plan, side);
        let limit = budget(snap.messages[if side == Side::Source { 0 } else { 1 }]);
        if n as u64 > limit && !args.allow_deletions {
            out.message = format!(
                "nothing applied: the plan removes {n} message(s) on the {} side, more than the removal budget ({limit}); check the plan, then run again with --allow-deletions",
                side_name(side)
            );
            return ExitCode::Attention;
        }
    }
    let report = match apply_plan(primary, recovery, &plan, &snap, progress).await {
        Ok(r) => r,
        Err(e) => return failed(&e, out),
    };
    out.applied = Some(report);
    // Termination: merging again after applying must plan nothing. Anything left (users kept
    // working, a refusal) keeps the base frozen; the next failback merges it.
    let again = match snapshot(primary, recovery, state, &crate::engine::events::NoEvents).await {
        Ok(s) => plan_of(&s),
        Err(e) => return failed(&e, out),
    };
    let remaining = again.actions.iter().map(Vec::len).sum::<usize>();
    out.remaining = Some(remaining);
    if remaining > 0 {
        out.remaining_plan = Some(again.to_string());
        if !args.json {
            println!("after applying, a new merge still plans:\n{again}");
        }
        out.message = format!(
            "applied, but {remaining} action(s) remain (changes made meanwhile, or actions a server refused: see applied.skipped); the base stays frozen: run failback again"
        );
        return ExitCode::Attention;
    }
    // Both sides hold the merged state: the old base is replaced (see resume()).
    let rebuilding = FailedOver {
        phase: Phase::Rebuilding,
        ..mark.clone()
    };
    if let Err(e) = set_failed_over(state, &rebuilding) {
        return failed(&e, out);
    }
    crate::crashpoint::hit("failback_after_apply");
    ExitCode::InSync
}

fn plan_of(snap: &Snapshot) -> MergePlan {
    merge(&MergeInput {
        base: &snap.base,
        primary: &snap.sides[0],
        recovery: &snap.sides[1],
        held: &snap.held,
        policy: MergePolicy::default(),
    })
}

/// The fresh base: the state is emptied (keeping the pair id and the mark's history in
/// `meta`), the mark cleared, and one one-way pass adopts by identity what both sides hold.
async fn resume(
    pair: &Pair,
    state: &StateFile,
    mark: &FailedOver,
    progress: &Progress,
    out: &mut Outcome,
) -> ExitCode {
    let steps = async {
        state.reset()?;
        crate::crashpoint::hit("failback_after_reset");
        clear_failed_over(state)?;
        Ok::<(), EngineError>(())
    };
    if let Err(e) = steps.await {
        eprintln!("error: {e}");
        out.message = "both sides are merged, but the base could not be replaced; run failback again to finish".into();
        return ExitCode::of_engine(&e);
    }
    let mut source = match connect(&pair.source, Access::ReadOnly, "primary").await {
        Ok(s) => s,
        Err(code) => {
            out.message = "both sides are merged and the pair is no longer failed over; the first sync rebuilds the base by identity".into();
            return code;
        }
    };
    let mut target = match connect(&pair.target, Access::ReadWrite, "recovery").await {
        Ok(s) => s,
        Err(code) => {
            source.logout().await;
            out.message = "both sides are merged and the pair is no longer failed over; the first sync rebuilds the base by identity".into();
            return code;
        }
    };
    let mut summary = SyncSummary::default();
    let result = sync_into(
        &mut source,
        &mut target,
        state,
        &SyncOptions::default(),
        progress,
        &mut summary,
    )
    .await;
    source.logout().await;
    target.logout().await;
    if let Ok(json) = serde_json::to_vec(&summary) {
        let _ = state.set_meta("last_pass", &json);
    }
    let code = match result {
        Ok(()) if summary.needs_attention() => ExitCode::Attention,
        Ok(()) => ExitCode::InSync,
        Err(e) => {
            eprintln!("error: {e}");
            out.message = "both sides are merged and the pair is no longer failed over, but the first one-way pass stopped; run `mailreplica sync` to finish rebuilding the base".into();
            out.resumed = Some(summary);
            return ExitCode::of_engine(&e);
        }
    };
    out.message = format!(
        "failback done: both sides merged; the pair (failed over since {}) is back to one-way replication from the primary with a fresh base ({} message(s) adopted, {} uploaded)",
        format_utc(mark.since),
        summary.adopted,
        summary.copied
    );
    out.resumed = Some(summary);
    code
}

/// Fills the plan's actions, conflicts (with diffs) and held items into `out`.
fn describe(plan: &MergePlan, snap: &Snapshot, out: &mut Outcome) {
    for side in [Side::Source, Side::Target] {
        let list: Vec<ActionJson> = plan.actions(side).iter().map(action_json).collect();
        match side {
            Side::Source => out.actions.primary = list,
            Side::Target => out.actions.recovery = list,
        }
    }
    for c in &plan.conflicts {
        let diff = match &c.kind {
            ConflictKind::MovedApart {
                identity,
                primary,
                recovery,
            } => {
                let flags = |s: usize, folder: &crate::model::FolderPath| {
                    snap.sides[s]
                        .messages
                        .iter()
                        .find(|m| &m.identity == identity && &m.folder == folder)
                        .map(|m| m.flags.clone())
                        .unwrap_or_default()
                };
                flags_diff(identity, &flags(0, primary), &flags(1, recovery))
            }
            _ => listing_diff(&c.folder, &snap.sides[0], &snap.sides[1]),
        };
        out.conflicts.push(ConflictJson {
            folder: c.folder.to_string(),
            text: c.to_string(),
            diff,
        });
    }
    out.held = plan.held.iter().map(ToString::to_string).collect();
}

fn action_json(a: &MergeAction) -> ActionJson {
    let (kind, identity, handle, from) = match a {
        MergeAction::CreateFolder { .. } => ("create_folder", None, None, None),
        MergeAction::RenameFolder { from, .. } => {
            ("rename_folder", None, None, Some(from.to_string()))
        }
        MergeAction::Place {
            identity, source, ..
        } => {
            let (kind, handle) = match source {
                PlaceSource::Copy { handle, .. } => ("place_copy", handle),
                PlaceSource::Upload { handle, .. } => ("place_upload", handle),
            };
            (kind, Some(identity.0.clone()), Some(handle.0.clone()), None)
        }
        MergeAction::Move { handle, from, .. } => {
            ("move", None, Some(handle.0.clone()), Some(from.to_string()))
        }
        MergeAction::SetFlags { handle, .. } => ("set_flags", None, Some(handle.0.clone()), None),
        MergeAction::Remove {
            handle, identity, ..
        } => (
            "remove",
            Some(identity.0.clone()),
            Some(handle.0.clone()),
            None,
        ),
        MergeAction::DeleteFolder { .. } => ("delete_folder", None, None, None),
    };
    ActionJson {
        kind,
        folder: a.folder().to_string(),
        text: a.to_string(),
        identity,
        handle,
        from,
    }
}

fn print_outcome(args: &FailbackArgs, out: &Outcome) {
    if args.json {
        println!(
            "{}",
            serde_json::to_string(out).unwrap_or_else(|_| "{}".into())
        );
        return;
    }
    if let Some(r) = &out.applied {
        for (s, name) in [(0, "primary"), (1, "recovery")] {
            println!(
                "applied on the {name} side: {} folder(s) created, {} renamed, {} deleted; {} message(s) uploaded, {} copied, {} moved, {} flag update(s), {} removed",
                r.folders_created[s],
                r.folders_renamed[s],
                r.folders_deleted[s],
                r.uploaded[s],
                r.copied[s],
                r.moved[s],
                r.flags_set[s],
                r.removed[s]
            );
        }
        for s in &r.skipped {
            println!("skipped: {s}");
        }
    }
    println!("{}", out.message);
}
