//! One-way sync pass: make the target match the source, incrementally from the base.
//!
//! Per folder, in this order: open both sides and list them (a failed listing aborts the pass,
//! so a broken connection can never read as "everything was deleted"); reset the base when a
//! UIDVALIDITY changed; plan; then on the target: flag updates, guarded removals, placements in
//! source UID order, each step committed to the state right after it succeeded.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use super::events::{Event, EventSink};
use super::folders;
use super::keywords;
use super::readback;
use super::recover::{journal_entry, resolve_journal};
use super::rekey;
use super::snapshot::{list_side, since_tokens, tokens_after_writes, View};
use super::summary::{FolderReport, SyncSummary};
use super::workers::{run_jobs, run_on_targets, Connector, FolderJob, NoConnector, PassShared};
use super::{EngineError, Frozen};
use crate::crashpoint;
use crate::mailstore::{
    AppendRequest, FlagChange, FolderInfo, FolderStatus, FolderTokens, MailStore, MessageMeta,
    StoreError,
};
use crate::model::fingerprint::normalize_line_endings;
use crate::model::message_id::message_id;
use crate::model::tolerant_key::{tolerant_key, TolerantKey};
use crate::model::{ContentSha1, Fingerprint, FlagSet, FolderPath};
use crate::reconcile::budget::{decide, BudgetContext, FolderRemovals, HoldReason};
use crate::reconcile::fidelity::{classify, FidelityClass};
use crate::reconcile::identity::{adopt, Identified};
use crate::reconcile::validate::{validate, Expectation, Verdict};
use crate::reconcile::{plan_folder, Action, FolderInput, FolderPlan, Placement, Policy, Removal};
use crate::state::store::{ContentMap, InstanceChange};
use crate::state::{
    FolderRecord, HeldRemoval, InstanceRecord, Intent, JournalOp, Quarantined, Refused, StateFile,
};

/// Failed uploads of one message after which it is given up and reported. Five, not fewer: on a
/// link that drops every few hundred kilobytes a small message can be the one in flight at a cut
/// two or three times by bad luck.
pub const MAX_ATTEMPTS: u32 = 5;

/// A message the target refused is tried again this long after (seconds).
pub const RETRY_REFUSED_AFTER: u64 = 24 * 3600;

/// Knobs of a pass.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub dry_run: bool,
    pub policy: Policy,
    /// Upper bound of message bytes fetched and appended per batch.
    pub batch_bytes: u64,
    /// Upper bound of messages per batch.
    pub batch_messages: usize,
    /// Block structurally damaged messages instead of replicating them once they settled.
    pub strict_validation: bool,
    /// Upload messages that fail validation anyway (migrations of old, odd mail).
    pub accept_invalid: bool,
    /// How long a structurally damaged message must stay unchanged before it is replicated.
    pub settle_secs: u64,
    /// Connections per side for working on folders concurrently (DESIGN.md: at most 4 in a
    /// one-shot sync); 1 works on one folder at a time.
    pub connections: usize,
    /// Go on after the source went back in time (see [`super::Frozen`]): the regressed
    /// folders are matched again by identity.
    pub accept_regression: bool,
    /// Journal each upload batch (always, except to measure what the journal costs:
    /// `MAILREPLICA_BENCH_NO_JOURNAL=1`, used by scripts/bench).
    pub journal: bool,
    /// Seconds after which a message the target refused is tried again (a day; 0 with
    /// `--retry-refused`).
    pub retry_refused_after: u64,
    /// Which folders and messages are copied (`migrate`; `sync` copies everything).
    pub selection: crate::reconcile::selection::Selection,
    /// Never remove a message from the target (`migrate`: a copy, not a mirror).
    pub keep_target_messages: bool,
    /// Explicit folder renames (`migrate --map/--subfolder`), applied by the caller's folder
    /// mapping (see `engine::mapped`).
    pub folder_rules: crate::reconcile::folder_map::Rules,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            dry_run: false,
            policy: Policy::default(),
            batch_bytes: 16 << 20,
            batch_messages: 200,
            strict_validation: false,
            accept_invalid: false,
            settle_secs: 600,
            accept_regression: false,
            connections: 4,
            journal: std::env::var_os("MAILREPLICA_BENCH_NO_JOURNAL").is_none(),
            retry_refused_after: RETRY_REFUSED_AFTER,
            selection: crate::reconcile::selection::Selection::default(),
            keep_target_messages: false,
            folder_rules: Default::default(),
        }
    }
}

/// Runs one pass. The source is only read; the target is written unless `dry_run`.
pub async fn sync<S: MailStore, T: MailStore>(
    source: &mut S,
    target: &mut T,
    state: &StateFile,
    options: &SyncOptions,
    events: &dyn EventSink,
) -> Result<SyncSummary, EngineError> {
    let mut summary = SyncSummary::default();
    sync_into(source, target, state, options, events, &mut summary).await?;
    Ok(summary)
}

/// Runs one pass and adds what it did to `summary`, also when it fails half way: a caller that
/// retries after a lost connection keeps one summary for the whole run.
pub async fn sync_into<S: MailStore, T: MailStore>(
    source: &mut S,
    target: &mut T,
    state: &StateFile,
    options: &SyncOptions,
    events: &dyn EventSink,
    summary: &mut SyncSummary,
) -> Result<(), EngineError> {
    sync_into_with(
        source,
        target,
        &NoConnector,
        state,
        options,
        events,
        summary,
    )
    .await
}

/// Like [`sync_into`], working on several folders at once over more connection pairs opened
/// through `connector` (see workers.rs).
pub async fn sync_into_with<S: MailStore, T: MailStore, C: Connector<S, T>>(
    source: &mut S,
    target: &mut T,
    connector: &C,
    state: &StateFile,
    options: &SyncOptions,
    events: &dyn EventSink,
    summary: &mut SyncSummary,
) -> Result<(), EngineError> {
    let started = Instant::now();
    summary.source = source.endpoint().to_string();
    summary.target = target.endpoint().to_string();
    summary.state_file = state.path().display().to_string();
    summary.dry_run = options.dry_run;
    // Per-pass facts; counters add up over retries.
    summary.folders = 0;
    summary.folders_unchanged = 0;
    summary.folders_incremental = 0;
    summary.target_only = 0;
    summary.removals_held = 0;
    summary.refused_waiting = 0;
    summary.folders_excluded = 0;
    summary.skipped_by_selection = 0;
    summary.skipped.clear();
    summary.folder_reports.clear();
    summary.notices.clear();
    summary.refused.clear();
    summary.refused_messages = 0;
    summary.fidelity_notes.clear();
    summary.gave_up.clear();
    summary.quarantined.clear();
    summary.folder_errors.clear();
    summary.actions.clear();
    let result = sync_pass(source, target, connector, state, options, events, summary).await;
    // Most commits of a pass are lazy (see StateFile::begin_lazy_write): one fsync makes them
    // durable, also after a failed pass.
    let flushed = state.flush();
    summary.seconds += started.elapsed().as_secs_f64();
    result?;
    Ok(flushed?)
}

async fn sync_pass<S: MailStore, T: MailStore, C: Connector<S, T>>(
    source: &mut S,
    target: &mut T,
    connector: &C,
    state: &StateFile,
    options: &SyncOptions,
    events: &dyn EventSink,
    summary: &mut SyncSummary,
) -> Result<(), EngineError> {
    // A failed-over pair is two-way until failback: nothing one-way may write (failover.rs).
    super::failover::refuse_if_failed_over(state)?;
    if let Some(frozen) = frozen(state)? {
        if !options.accept_regression {
            return Err(EngineError::Frozen(frozen));
        }
        // Confirmed: the regressed folders are matched again by identity below (their stored
        // tokens still show the regression).
        if !options.dry_run {
            state.set_frozen(None)?;
        }
    }
    let clock = Instant::now();
    let mut source_folders = source.list_folders().await?;
    let gmail = options.folder_rules.gmail;
    if gmail {
        crate::reconcile::gmail::annotate(&mut source_folders);
    }
    let mut target_folders = target.list_folders().await?;
    tracing::debug!(
        ms = clock.elapsed().as_millis() as u64,
        "pass: folders listed"
    );
    let mut records = state.folders()?;
    regression_check(state, options, &source_folders, &records)?;
    // Folders renamed or deleted on the source (see folders.rs).
    let moves = folders::detect(source, &source_folders, &records).await?;
    tracing::debug!(
        ms = clock.elapsed().as_millis() as u64,
        "pass: renames and deletions detected"
    );
    if !moves.renames.is_empty() {
        folders::apply_renames(
            target,
            state,
            options.dry_run,
            events,
            summary,
            &moves.renames,
            &target_folders,
        )
        .await?;
        if !options.dry_run {
            target_folders = target.list_folders().await?;
            records = state.folders()?;
        }
    }
    let target_tokens: HashMap<&FolderPath, FolderTokens> = target_folders
        .iter()
        .filter_map(|f| Some((&f.path, f.tokens?)))
        .collect();
    let held_in: HashSet<String> = state.held()?.into_keys().map(|(f, _)| f).collect();
    let on_target: HashSet<FolderPath> = target_folders
        .iter()
        .filter(|f| f.selectable)
        .map(|f| f.path.clone())
        .collect();
    let on_source: HashSet<FolderPath> = source_folders
        .iter()
        .filter(|f| f.selectable)
        .map(|f| f.path.clone())
        .collect();

    // Batches are smaller when several workers hold them at once (memory stays bounded).
    let worker_options = SyncOptions {
        // Two batches per worker are in memory at once (one appended, the next fetched).
        batch_bytes: (options.batch_bytes / (2 * options.connections.max(1) as u64)).max(2 << 20),
        ..options.clone()
    };
    let shared = PassShared {
        state,
        options: &worker_options,
        events,
        pending: RefCell::new(Vec::new()),
        index: RefCell::new(TargetIndex::default()),
        awaiting_removals: RefCell::new(HashSet::new()),
        only_uids: RefCell::new(HashMap::new()),
    };
    // Messages of folders skipped as unchanged still count in the account's removal budget.
    let mut unchanged_messages: usize = 0;
    // A deleted folder's messages leave through the budget; registered first, so that one the
    // source moved elsewhere before deleting the folder is moved on the target too.
    let deleted: &[String] = if options.keep_target_messages {
        &[]
    } else {
        &moves.deleted
    };
    for removals in folders::deletion_removals(state, deleted, &on_target)? {
        shared
            .index
            .borrow_mut()
            .expect_removals(&removals.folder.to_string(), &removals.removals);
        shared.pending.borrow_mut().push(removals);
    }
    let target_uses: HashSet<&str> = target_folders
        .iter()
        .filter_map(|f| f.special_use.as_deref())
        .collect();
    let subscriptions = subscription_changes(&source_folders, &target_folders);
    let mut jobs = Vec::new();
    // Gmail (`--preset gmail`): All Mail is worked on last, for what no other folder holds.
    let mut all_mail: Option<FolderJob> = None;
    let mut copied_folders: Vec<FolderPath> = Vec::new();
    for folder in source_folders.iter().filter(|f| f.selectable) {
        let path = &folder.path;
        if !options.selection.folder_selected(path) {
            summary.folders_excluded += 1;
            continue;
        }
        let name = path.to_string();
        if gmail
            && (crate::reconcile::gmail::is_view(folder.special_use.as_deref())
                || crate::reconcile::gmail::is_container(path))
        {
            notice(
                events,
                summary,
                format!("{name}: a Gmail view (its messages are in other folders), not copied"),
            );
            summary.folders_excluded += 1;
            continue;
        }
        summary.folders += 1;
        // All Mail is never skipped as unchanged: what it copies depends on the other folders.
        let is_all_mail =
            gmail && folder.special_use.as_deref() == Some(crate::reconcile::gmail::ALL);
        if !is_all_mail {
            copied_folders.push(path.clone());
        }
        // Unchanged on both sides since a pass that left it complete: not even opened.
        if let (false, Some(record), Some(src), Some(tgt)) = (
            is_all_mail,
            records.get(&name),
            folder.tokens,
            target_tokens.get(path),
        ) {
            let unchanged = (record.complete || record.settled)
                && record
                    .source_tokens
                    .is_some_and(|t| src.proves_unchanged(&t))
                && record
                    .target_tokens
                    .is_some_and(|t| tgt.proves_unchanged(&t))
                && !held_in.contains(&name)
                && nothing_pending(state, &name)?;
            if unchanged {
                unchanged_messages += src.messages as usize;
                summary.folders_unchanged += 1;
                summary.target_only += u64::from(record.target_only);
                continue;
            }
        }
        let job = FolderJob {
            path: path.clone(),
            exists: on_target.contains(path),
            exempt: matches!(folder.special_use.as_deref(), Some("\\Trash" | "\\Junk")),
            none_held: !held_in.contains(&name),
            messages: folder.tokens.map_or(0, |t| t.messages),
            // Mail that arrived since the last pass (UIDNEXT moved), or all of a new folder.
            arrived: match (
                records.get(&name).and_then(|r| r.source_tokens),
                folder.tokens,
            ) {
                (Some(before), Some(now)) if before.uidvalidity == now.uidvalidity => {
                    now.uidnext.saturating_sub(before.uidnext)
                }
                (_, now) => now.map_or(0, |t| t.messages),
            },
            shrunk: match (
                records.get(&name).and_then(|r| r.source_tokens),
                folder.tokens,
            ) {
                (Some(before), Some(now)) => now.messages < before.messages,
                _ => false,
            },
            create_use: folder
                .special_use
                .as_deref()
                // Gmail's All Mail lands in the target's archive folder.
                .map(|u| if is_all_mail { "\\Archive" } else { u })
                .filter(|u| !target_uses.contains(u))
                .map(str::to_string),
        };
        if is_all_mail {
            all_mail = Some(job);
        } else {
            jobs.push(job);
        }
    }
    tracing::debug!(
        ms = clock.elapsed().as_millis() as u64,
        jobs = jobs.len(),
        "pass: folders to work on chosen"
    );
    // Mail arrived somewhere: its placement will look up the target's contents.
    if !options.dry_run && jobs.iter().chain(&all_mail).any(|j| j.arrived > 0) {
        TargetIndex::start(&shared.index, state);
    }
    // The extra connection pairs of the folder workers stay open for the removals.
    let mut spare = Vec::new();
    let mut result = run_jobs(
        source, target, connector, &shared, jobs, summary, &mut spare,
    )
    .await;
    if let (Ok(()), Some(job)) = (&result, all_mail) {
        result = async {
            let only = super::all_mail::unlabelled(source, state, &job.path, &copied_folders).await?;
            let total = job.messages as usize;
            notice(events, summary, format!(
                "{}: {} archived message(s) (in no other folder) go to the target's archive folder; the other {} are in their label folders",
                job.path, only.len(), total.saturating_sub(only.len())
            ));
            shared.only_uids.borrow_mut().insert(job.path.to_string(), only);
            run_jobs(source, target, connector, &shared, vec![job], summary, &mut spare).await
        }
        .await;
    }
    let result = match result {
        Ok(()) => {
            finish_pass(
                target,
                &mut spare,
                shared,
                unchanged_messages,
                &moves.deleted,
                &on_target,
                &on_source,
                &subscriptions,
                summary,
            )
            .await
        }
        Err(e) => Err(e),
    };
    // Every spare connection says goodbye at once.
    futures::future::join_all(spare.iter_mut().map(|(s, t)| async move {
        futures::future::join(s.logout(), t.logout()).await;
    }))
    .await;
    tracing::debug!(ms = clock.elapsed().as_millis() as u64, "pass: done");
    result
}

/// The end of a pass, once every folder was worked on: moves completed, removals through the
/// budget, deleted folders removed, target-only folders reported.
#[allow(clippy::too_many_arguments)]
async fn finish_pass<S: MailStore, T: MailStore>(
    target: &mut T,
    spare: &mut [(S, T)],
    shared: PassShared<'_>,
    unchanged_messages: usize,
    deleted: &[String],
    on_target: &HashSet<FolderPath>,
    on_source: &HashSet<FolderPath>,
    subscriptions: &[(FolderPath, bool)],
    summary: &mut SyncSummary,
) -> Result<(), EngineError> {
    let (state, options, events) = (shared.state, shared.options, shared.events);
    let clock = Instant::now();
    let index = shared.index.into_inner();
    let mut pending = shared.pending.into_inner();
    let awaiting_removals = shared.awaiting_removals.into_inner();

    complete_moves(
        target,
        state,
        summary,
        &index,
        &mut pending,
        &awaiting_removals,
    )
    .await?;
    tracing::debug!(
        ms = clock.elapsed().as_millis() as u64,
        "pass: moves completed"
    );
    apply_removal_budget(
        target,
        spare,
        state,
        options,
        events,
        summary,
        &pending,
        unchanged_messages,
        &awaiting_removals,
    )
    .await?;

    folders::finish_deletions(
        target,
        state,
        options.dry_run,
        events,
        summary,
        deleted,
        on_target,
    )
    .await?;
    tracing::debug!(
        ms = clock.elapsed().as_millis() as u64,
        "pass: removals applied"
    );
    apply_subscriptions(target, options.dry_run, subscriptions, summary).await?;
    let state_folders = state.folders()?;
    for path in on_target
        .iter()
        .filter(|p| !on_source.contains(p) && !state_folders.contains_key(&p.to_string()))
    {
        summary.notices.push(format!(
            "folder {path} exists only on the target; left alone"
        ));
    }
    Ok(())
}

/// The target's subscriptions follow the source's, for every folder the source lists as
/// selectable (a folder the target does not have yet is unsubscribed there).
fn subscription_changes(source: &[FolderInfo], target: &[FolderInfo]) -> Vec<(FolderPath, bool)> {
    let subscribed_on_target: HashMap<&FolderPath, bool> =
        target.iter().map(|f| (&f.path, f.subscribed)).collect();
    source
        .iter()
        .filter(|f| f.selectable)
        .filter(|f| subscribed_on_target.get(&f.path).copied().unwrap_or(false) != f.subscribed)
        .map(|f| (f.path.clone(), f.subscribed))
        .collect()
}

/// SUBSCRIBE/UNSUBSCRIBE on the target. A folder the pass could not create is skipped (its
/// error is reported already); the subscription follows on a later pass.
async fn apply_subscriptions<T: MailStore>(
    target: &mut T,
    dry_run: bool,
    changes: &[(FolderPath, bool)],
    summary: &mut SyncSummary,
) -> Result<(), EngineError> {
    for (path, on) in changes {
        let verb = if *on { "subscribe" } else { "unsubscribe" };
        if dry_run {
            summary.actions.push(format!("{verb} folder {path}"));
            continue;
        }
        match target.set_subscribed(path, *on).await {
            Ok(()) => summary.subscriptions += 1,
            Err(e) if folder_local(&e) && !e.is_connection_lost() => {
                tracing::debug!(folder = %path, error = %e, "subscription not changed");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(super) async fn sync_or_create<S: MailStore, T: MailStore>(
    source: &mut S,
    target: &mut T,
    shared: &PassShared<'_>,
    job: &FolderJob,
    summary: &mut SyncSummary,
) -> Result<(), EngineError> {
    let path = &job.path;
    if !job.exists {
        if shared.options.dry_run {
            summary.actions.push(format!("create folder {path}"));
        } else {
            target
                .create_folder(path, job.create_use.as_deref())
                .await?;
        }
        summary.folders_created += 1;
    }
    sync_folder(source, target, shared, job, summary).await
}

async fn sync_folder<S: MailStore, T: MailStore>(
    source: &mut S,
    target: &mut T,
    shared: &PassShared<'_>,
    job: &FolderJob,
    summary: &mut SyncSummary,
) -> Result<(), EngineError> {
    let (state, options, events) = (shared.state, shared.options, shared.events);
    let path = &job.path;
    let target_exists = job.exists;
    let none_held = job.none_held;
    let name = path.to_string();
    let mut record = state.folder(&name)?;
    // What this pass commits to the folder is recorded, so the instances it leaves need not
    // be read again (tracking starts first: a change committed meanwhile is applied twice,
    // which changes nothing).
    let tracked = state.track(&name);
    let clock = Instant::now();
    // The base is read on a blocking thread while the source opens the folder.
    let reading = state.instances_snapshot()?;
    let folder_name = name.clone();
    let (base, source_status) = tokio::join!(
        read_state_aside(state, move || reading.folder(&folder_name)),
        source.open_folder(path)
    );
    let mut base = base?;
    let source_status = source_status?;
    let source_now = source_status.tokens();
    if let Some(detail) = record
        .as_ref()
        .and_then(|r| r.source_tokens)
        .and_then(|earlier| source_now.regression_from(&earlier))
    {
        if !options.accept_regression {
            return Err(freeze(state, options, &name, detail));
        }
        notice(events, summary, format!(
            "{name}: the source went back in time ({detail}); accepted: its messages are matched again by identity, nothing is removed on the target"
        ));
        base.clear();
        record = None;
        if !options.dry_run {
            state.clear_folder(&name)?;
        }
    }

    // Both sides are read from what changed since the last pass when it left the folder
    // complete; otherwise in full (see snapshot.rs).
    // A folder copied only in part (Gmail's All Mail) is listed in full every time: what it
    // should copy depends on the other folders, not only on its own changes.
    let partial = shared.only_uids.borrow().contains_key(&name);
    let pending_free = none_held && !partial && nothing_pending(state, &name)?;
    let source_since = since_tokens(record.as_ref(), View::Source, &source_now, pending_free);
    // The two sides are read at once (two connections; nothing is written yet).
    let source_listing = list_side(source, &base, View::Source, source_since.as_ref());
    let target_listing = async {
        if !target_exists && options.dry_run {
            return Ok((None, Vec::new()));
        }
        let status = target.open_folder(path).await?;
        let since = source_since
            .and_then(|_| since_tokens(record.as_ref(), View::Target, &status.tokens(), true));
        let msgs = list_side(target, &base, View::Target, since.as_ref()).await?;
        Ok::<_, StoreError>((Some(status), msgs))
    };
    let (source_msgs, target_listing) = tokio::join!(source_listing, target_listing);
    let source_msgs = source_msgs?;
    let (target_status, target_msgs) = target_listing?;
    if source_since.is_some() {
        summary.folders_incremental += 1;
    }

    if let (Some(rec), Some(tstatus)) = (&record, &target_status) {
        if rec.source_uidvalidity != source_status.uidvalidity {
            notice(events, summary, format!(
                "{name}: UIDVALIDITY changed on the source ({} -> {}); its messages are matched again by identity, nothing is removed",
                rec.source_uidvalidity, source_status.uidvalidity
            ));
            match rekey::rekey_by_content_sha1(source, state, &base, &source_msgs).await? {
                Some(r) => {
                    notice(events, summary, format!(
                        "{name}: {} of {} message(s) matched by the SHA-1 the source names them by, no body read",
                        r.base.len(),
                        source_msgs.len()
                    ));
                    if !options.dry_run {
                        state.commit(&name, None, &r.changes)?;
                    }
                    base = r.base;
                }
                None => {
                    base.clear();
                    if !options.dry_run {
                        state.clear_folder(&name)?;
                    }
                }
            }
        } else if rec.target_uidvalidity != Some(tstatus.uidvalidity) {
            notice(events, summary, format!(
                "{name}: UIDVALIDITY changed on the target; its messages are matched again by identity"
            ));
            let mut changes = Vec::new();
            for (uid, inst) in base.iter_mut() {
                inst.target_uid = None;
                changes.push(InstanceChange::Put(*uid, inst.clone()));
            }
            // Copies refused by design (one email per content) are offered again: the
            // target's answer merges their flags into the email it holds, which a target
            // that lost its UIDs forgot.
            let by_design: Vec<u32> = refused_by_design(state, &name)?.into_iter().collect();
            if !options.dry_run {
                state.commit(&name, None, &changes)?;
                state.update_refused(&name, &[], &by_design)?;
            }
        }
    }

    // The folder record goes in before any instance of this pass, so an interrupted first
    // pass still knows which UIDVALIDITYs its instances were recorded under.
    if let (Some(tstatus), false) = (&target_status, options.dry_run) {
        let same = record.as_ref().is_some_and(|r| {
            r.source_uidvalidity == source_status.uidvalidity
                && r.target_uidvalidity == Some(tstatus.uidvalidity)
        });
        // Written only when it changed: a no-op pass commits nothing.
        if !same {
            let now = FolderRecord {
                source_uidvalidity: source_status.uidvalidity,
                target_uidvalidity: Some(tstatus.uidvalidity),
                source_tokens: None,
                target_tokens: None,
                complete: false,
                settled: false,
                target_only: 0,
            };
            state.commit(&name, Some(&now), &[])?;
        }
    }

    if let (Some(tstatus), false) = (&target_status, options.dry_run) {
        let r = resolve_journal(
            target,
            state,
            &name,
            &mut base,
            &target_msgs,
            tstatus,
            options.batch_messages,
        )
        .await?;
        // Copies found count as adopted: they are on the target, nothing was uploaded now.
        summary.adopted += r.found as u64;
        if r.found + r.missing > 0 {
            notice(events, summary, format!(
                "{name}: resumed an interrupted batch: {} copy(ies) found on the target, {} to upload again",
                r.found, r.missing
            ));
        }
    }

    // Keywords the target refused earlier are a fidelity note: never compared, never written.
    let refused_keywords = keywords::refused(state)?;
    let storable = |f: &crate::model::Flag| {
        target_status.as_ref().is_none_or(|s| s.can_store(f))
            && !keywords::is_refused(&refused_keywords, f)
    };
    let listed_at = clock.elapsed();
    let mut plan = plan_folder(&FolderInput {
        folder: path,
        base: &base,
        source: &source_msgs,
        target: &target_msgs,
        storable: &storable,
    });
    let attempts = state.attempts(&name)?;
    plan.placements.retain(|p| match attempts.get(&p.source.uid) {
        Some(a) if a.count >= MAX_ATTEMPTS => {
            summary.gave_up.push(format!(
                "{name}: source uid {} ({} bytes): gave up after {} failed uploads ({}); run with --rebuild-state to try again",
                p.source.uid, p.source.size, a.count, a.last_error
            ));
            false
        }
        _ => true,
    });
    // Messages outside the selection (migrate's size and date limits) are not copied.
    let mut skipped_here = 0u64;
    if partial {
        let only = shared.only_uids.borrow();
        let held = only.get(&name);
        plan.placements.retain(|p| {
            let keep = held.is_none_or(|h| h.contains(&p.source.uid));
            skipped_here += u64::from(!keep);
            keep
        });
    }
    // Messages over the target's APPENDLIMIT would be refused: like those outside the
    // selection, not sent; the too large ones are reported.
    let append_limit = target.capabilities().append_limit();
    plan.placements.retain(|p| {
        let size = p.source.size;
        let too_large = match (append_limit, options.selection.skip(&p.source)) {
            (Some(limit), _) if size > limit => Some(format!(
                "larger than the target's APPENDLIMIT ({limit} bytes)"
            )),
            (_, None) => return true,
            (_, Some(crate::reconcile::selection::Skip::TooLarge)) => {
                Some("larger than --max-size".to_string())
            }
            (_, Some(_)) => None,
        };
        skipped_here += 1;
        summary.skipped_by_selection += 1;
        if let Some(why) = too_large {
            summary.skipped.push(format!(
                "{name}: source uid {} ({size} bytes): {why}, not copied",
                p.source.uid
            ));
        }
        false
    });
    // A target that cannot store \Deleted (JMAP: RFC 8621 has no keyword for it, such a
    // message is gone) is not sent messages the source marks \Deleted: they are on their way
    // out, and arrive if the mark is taken off.
    if let Some(deleted) = crate::model::Flag::parse("\\Deleted")
        .filter(|d| target_status.as_ref().is_some_and(|s| !s.can_store(d)))
    {
        let before = plan.placements.len();
        plan.placements
            .retain(|p| !p.source.flags.contains(&deleted));
        let left_out = before - plan.placements.len();
        if left_out > 0 {
            skipped_here += left_out as u64;
            notice(events, summary, format!(
                "{name}: {left_out} message(s) marked \\Deleted on the source not copied: the target has no \\Deleted (a JMAP email so marked is gone)"
            ));
        }
    }
    if options.keep_target_messages {
        plan.removals.clear();
    }
    // A message the target refused was reported then; it is tried again a day later, not on
    // every pass (the server's answer will not change by itself).
    let refused: BTreeMap<u32, Refused> = state
        .refused(Some(&name))?
        .into_iter()
        .map(|((_, uid), r)| (uid, r))
        .collect();
    let now = unix_now();
    plan.placements
        .retain(|p| match refused.get(&p.source.uid) {
            Some(r) if now < r.since.saturating_add(options.retry_refused_after) => {
                summary.refused_waiting += 1;
                false
            }
            _ => true,
        });
    if !options.dry_run {
        // Quarantine and refusal records of messages the source no longer has are dropped.
        let present: HashSet<u32> = source_msgs.iter().map(|m| m.uid).collect();
        let stale: Vec<u32> = state
            .quarantine(Some(&name))?
            .into_keys()
            .map(|(_, uid)| uid)
            .filter(|uid| !present.contains(uid))
            .collect();
        state.update_quarantine(&name, &[], &stale)?;
        let gone: Vec<u32> = refused
            .keys()
            .copied()
            .filter(|uid| !present.contains(uid))
            .collect();
        state.update_refused(&name, &[], &gone)?;
    }

    // Removals are decided for the whole pass by the removal budget, after every folder.
    shared.pending.borrow_mut().push(FolderRemovals {
        folder: path.clone(),
        exempt: job.exempt,
        base_count: base.len(),
        source_count: source_msgs.len(),
        removals: plan.removals.clone(),
    });
    shared
        .index
        .borrow_mut()
        .expect_removals(&name, &plan.removals);

    if options.dry_run {
        summary
            .actions
            .extend(plan.actions(path).iter().map(ToString::to_string));
        summary.copied += plan.placements.len() as u64;
        summary.flags_updated += plan
            .flag_updates
            .iter()
            .filter(|u| !u.add.is_empty() || !u.remove.is_empty())
            .count() as u64;
        return Ok(());
    }
    let Some(target_status) = target_status else {
        return Ok(());
    };

    let planned_at = clock.elapsed();
    let (placed_before, refused_before) = (placed_count(summary), summary.refused_messages);
    // The flags are stored on the target while the first bodies to place come from the source.
    let (flagged, first) = tokio::join!(
        apply_flag_updates(target, state, &name, &base, &plan, events, summary),
        FirstBatch::fetch(source, &plan, options)
    );
    flagged?;
    let flagged_at = clock.elapsed();
    if !plan.forget.is_empty() {
        let changes: Vec<InstanceChange> = plan
            .forget
            .iter()
            .map(|u| InstanceChange::Delete(*u))
            .collect();
        state.commit(&name, None, &changes)?;
    }
    let adopted = Placer {
        source,
        target,
        state,
        options,
        events,
        path,
        name: &name,
        summary,
        index: &shared.index,
        refused_keywords: &refused_keywords,
        refused: &refused,
    }
    .place(&plan, &base, &target_msgs, &target_status, first)
    .await?;
    let target_only = plan.unmapped_target.len().saturating_sub(adopted) as u32;
    summary.target_only += u64::from(target_only);
    // After writing, the target's tokens are taken again when they show only this pass's
    // writes, so the next pass does not read them back (target-only messages make that
    // unprovable: the base does not list them).
    let wrote = !plan.placements.is_empty()
        || plan
            .flag_updates
            .iter()
            .any(|u| !u.add.is_empty() || !u.remove.is_empty());
    let placed_at = clock.elapsed();
    // The instances as this pass leaves them, read once for both checks below.
    let after = tracked.apply(base)?;
    // Not when this pass removes messages here at its end: that changes the tokens again, and
    // the next pass reads the folder's changes anyway.
    let target_tokens = if wrote && target_only == 0 && plan.removals.is_empty() {
        tokens_after_writes(target, path, &after, target_status.tokens()).await?
    } else {
        target_status.tokens()
    };
    let complete = record_tokens(
        state,
        &name,
        &after,
        &source_msgs,
        source_now,
        target_tokens,
        target_only,
        !plan.removals.is_empty(),
    )?;
    if complete == Completeness::OnceRemoved {
        shared.awaiting_removals.borrow_mut().insert(name.clone());
    }
    if options.keep_target_messages {
        summary.folder_reports.push(FolderReport {
            folder: name.clone(),
            source: source_msgs.len() as u64,
            copied: placed_count(summary) - placed_before,
            skipped: skipped_here,
            refused: summary.refused_messages - refused_before,
            on_target: after.values().filter(|i| i.target_uid.is_some()).count() as u64,
        });
    }
    tracing::debug!(
        folder = %name,
        incremental = source_since.is_some(),
        placements = plan.placements.len(),
        flag_updates = plan.flag_updates.len(),
        removals = plan.removals.len(),
        listed_ms = listed_at.as_millis() as u64,
        planned_ms = planned_at.as_millis() as u64,
        flagged_ms = flagged_at.as_millis() as u64,
        placed_ms = placed_at.as_millis() as u64,
        done_ms = clock.elapsed().as_millis() as u64,
        "folder synced"
    );
    events.event(Event::FolderFinished {
        folder: path.clone(),
    });
    Ok(())
}

/// Time travel is looked for in every folder before anything is written.
fn regression_check(
    state: &StateFile,
    options: &SyncOptions,
    source_folders: &[crate::mailstore::FolderInfo],
    records: &BTreeMap<String, FolderRecord>,
) -> Result<(), EngineError> {
    if options.accept_regression {
        return Ok(());
    }
    for folder in source_folders {
        let name = folder.path.to_string();
        let earlier = records.get(&name).and_then(|r| r.source_tokens);
        if let (Some(now), Some(earlier)) = (folder.tokens, earlier) {
            if let Some(detail) = now.regression_from(&earlier) {
                return Err(freeze(state, options, &name, detail));
            }
        }
    }
    Ok(())
}

/// After a finished pass of a folder: the tokens both sides showed when opened, and whether the
/// folder is complete (every source message listed has an instance with a target UID, every
/// instance has a target UID), which lets the next pass read only changes.
/// Removals are applied after every folder, so a folder with removals is complete only once
/// they are (see [`mark_complete`]): until then the base still holds what the source lost.
#[allow(clippy::too_many_arguments)]
fn record_tokens(
    state: &StateFile,
    name: &str,
    after: &BTreeMap<u32, InstanceRecord>,
    source_msgs: &[MessageMeta],
    source: FolderTokens,
    target: FolderTokens,
    target_only: u32,
    removals: bool,
) -> Result<Completeness, EngineError> {
    let on_target = |uid: &u32| after.get(uid).is_some_and(|i| i.target_uid.is_some());
    let all_instances = after.values().all(|i| i.target_uid.is_some());
    let placed = all_instances && source_msgs.iter().all(|m| on_target(&m.uid));
    // A copy the target can never take (it keeps one email per content, and the folder holds
    // this one) is a fidelity note, not a reason to read an unchanged folder every pass.
    let settled = !placed && !removals && all_instances && {
        let never = refused_by_design(state, name)?;
        source_msgs
            .iter()
            .all(|m| on_target(&m.uid) || never.contains(&m.uid))
    };
    let completeness = match (placed, removals) {
        (false, _) => Completeness::No,
        (true, true) => Completeness::OnceRemoved,
        (true, false) => Completeness::Yes,
    };
    let complete = completeness == Completeness::Yes;
    let record = FolderRecord {
        source_uidvalidity: source.uidvalidity,
        target_uidvalidity: Some(target.uidvalidity),
        source_tokens: Some(source),
        target_tokens: Some(target),
        complete,
        settled,
        target_only,
    };
    if state.folder(name)?.as_ref() != Some(&record) {
        state.commit(name, Some(&record), &[])?;
    }
    Ok(completeness)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completeness {
    No,
    /// Complete as soon as this pass's removals in the folder are applied.
    OnceRemoved,
    Yes,
}

/// The folder's removals were all applied: the base again says exactly what the source held.
fn mark_complete(state: &StateFile, name: &str) -> Result<(), EngineError> {
    if let Some(mut record) = state.folder(name)? {
        if record.source_tokens.is_some() && !record.complete {
            record.complete = true;
            state.commit(name, Some(&record), &[])?;
        }
    }
    Ok(())
}

/// The folder's source UIDs the target refused by design (`Refused::by_design`).
fn refused_by_design(
    state: &StateFile,
    name: &str,
) -> Result<std::collections::BTreeSet<u32>, EngineError> {
    Ok(state
        .refused(Some(name))?
        .into_iter()
        .filter(|(_, r)| r.by_design)
        .map(|((_, uid), _)| uid)
        .collect())
}

/// No unfinished batch, failed upload or quarantined message in the folder: what the base
/// says about it is all there is (held removals are checked by the caller, once per pass).
fn nothing_pending(state: &StateFile, name: &str) -> Result<bool, EngineError> {
    Ok(state.journal(name)?.is_none()
        && state.attempts(name)?.is_empty()
        && state.quarantine(Some(name))?.is_empty())
}

/// Why the pair is frozen, from the state.
pub fn frozen(state: &StateFile) -> Result<Option<Frozen>, EngineError> {
    Ok(state.frozen()?.map(|raw| Frozen::from_raw(&raw)))
}

/// Freezes the pair (unless dry-run) and returns the error that stops the pass.
fn freeze(state: &StateFile, options: &SyncOptions, folder: &str, detail: String) -> EngineError {
    let frozen = Frozen {
        folder: folder.to_string(),
        detail,
        since: unix_now(),
    };
    if !options.dry_run {
        let raw = serde_json::to_vec(&frozen).unwrap_or_default();
        if let Err(e) = state.set_frozen(Some(&raw)) {
            return e.into();
        }
    }
    EngineError::Frozen(frozen)
}

/// Consecutive placements in batches bounded in messages and bytes (at least one message
/// each).
fn batch_ranges(placements: &[Placement], options: &SyncOptions) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < placements.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < placements.len()
            && end - start < options.batch_messages
            && (end == start || bytes + placements[end].source.size as u64 <= options.batch_bytes)
        {
            bytes += placements[end].source.size as u64;
            end += 1;
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// The bodies of a folder's first batch of placements, fetched from the source while the
/// flag changes go to the target (never in a dry run: that returns before). Only when no
/// target message is unmapped: then nothing can be adopted instead, and the first batch is
/// known before placing starts.
struct FirstBatch {
    uids: Vec<u32>,
    bodies: Result<Vec<crate::mailstore::FetchedBody>, StoreError>,
}

impl FirstBatch {
    async fn fetch<S: MailStore>(
        source: &mut S,
        plan: &FolderPlan,
        options: &SyncOptions,
    ) -> Option<FirstBatch> {
        if !plan.unmapped_target.is_empty() {
            return None;
        }
        let first = batch_ranges(&plan.placements, options).into_iter().next()?;
        let uids: Vec<u32> = plan.placements[first]
            .iter()
            .map(|p| p.source.uid)
            .collect();
        let bodies = source.fetch_bodies(&uids).await;
        Some(FirstBatch { uids, bodies })
    }
}

/// A read of the state running on the blocking pool.
type StateRead<R> = tokio::task::JoinHandle<Result<R, crate::state::StateError>>;

/// Runs a read of the state on the blocking pool, so that this thread keeps every connection
/// moving meanwhile.
async fn read_state_aside<R: Send + 'static>(
    state: &StateFile,
    read: impl FnOnce() -> Result<R, crate::state::StateError> + Send + 'static,
) -> Result<R, EngineError> {
    join_state_read(state, tokio::task::spawn_blocking(read)).await
}

/// The outcome of a read started on the blocking pool (a panic in it is raised here).
async fn join_state_read<R>(state: &StateFile, read: StateRead<R>) -> Result<R, EngineError> {
    match read.await {
        Ok(result) => Ok(result?),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(EngineError::State(crate::state::StateError::Io {
            path: state.path().to_path_buf(),
            detail: format!("reading the state failed: {e}"),
        })),
    }
}

/// The CPU-heavy look at a fetched body.
struct Digest {
    /// The CRLF-normalised bytes, when they differ from the body.
    normalized: Option<Vec<u8>>,
    fingerprint: Fingerprint,
    /// The validation verdict against the listed size, when asked for.
    verdict: Option<Verdict>,
}

/// Normalises, fingerprints and (with `validate_all`) validates bodies on the blocking pool;
/// the bodies come back with their digests by UID.
async fn digest_bodies(
    bodies: Vec<crate::mailstore::FetchedBody>,
    sizes: HashMap<u32, u32>,
    validate_all: bool,
) -> (Vec<crate::mailstore::FetchedBody>, HashMap<u32, Digest>) {
    let work = move || {
        let digests = bodies
            .iter()
            .map(|b| {
                let bytes = normalize_line_endings(b.bytes());
                let fingerprint = Fingerprint::of_normalized(&bytes);
                let verdict = validate_all.then(|| {
                    validate(
                        b.bytes(),
                        &Expectation::exact(sizes.get(&b.uid).copied().unwrap_or(0)),
                    )
                });
                let normalized = match bytes {
                    std::borrow::Cow::Owned(v) => Some(v),
                    std::borrow::Cow::Borrowed(_) => None,
                };
                (
                    b.uid,
                    Digest {
                        normalized,
                        fingerprint,
                        verdict,
                    },
                )
            })
            .collect();
        (bodies, digests)
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        // A panic in there is a bug: raise it here as if it had happened inline.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Where the target holds each content, from the state: fingerprint -> (folder, target UID,
/// INTERNALDATE, flags). Built once per pass on first use, then kept up to date.
#[derive(Default)]
pub(crate) struct TargetIndex {
    built: bool,
    /// A worker is building it (see `ensure_built`).
    building: bool,
    /// Changes learned while it was being built, applied once it is.
    queued: Vec<(String, Vec<InstanceChange>)>,
    /// The read of the state started early (see [`TargetIndex::start`]), not awaited yet.
    reading: Option<StateRead<ContentMap>>,
    /// Content -> its target copies: (folder, target UID, INTERNALDATE instant).
    map: ContentMap,
    /// Removals this pass found, by the target copy they would remove: (folder, target UID)
    /// -> source UID of the instance.
    removals: HashMap<(String, u32), u32>,
    /// Target copies moved into another folder this pass (their removal is done).
    moved: HashSet<(String, u32)>,
    /// Target copies copied into another folder this pass: should the source have lost them,
    /// the source moved them, and their removal completes a move.
    copied_out: HashSet<(String, u32)>,
    /// Contents (with their INTERNALDATE instant) a worker is uploading right now: another
    /// worker about to place the same content waits and copies it on the target instead of
    /// uploading it a second time (one message in several folders, worked on at once).
    uploading: HashMap<(Fingerprint, i64), usize>,
}

/// A worker's claim on the contents it is uploading (see `TargetIndex::uploading`), given
/// back when dropped, also when the upload failed.
struct UploadClaim<'a> {
    index: &'a RefCell<TargetIndex>,
    keys: Vec<(Fingerprint, i64)>,
}

impl<'a> UploadClaim<'a> {
    fn take(index: &'a RefCell<TargetIndex>, keys: Vec<(Fingerprint, i64)>) -> UploadClaim<'a> {
        let mut ix = index.borrow_mut();
        for k in &keys {
            *ix.uploading.entry(*k).or_default() += 1;
        }
        UploadClaim { index, keys }
    }
}

impl Drop for UploadClaim<'_> {
    fn drop(&mut self) {
        let mut ix = self.index.borrow_mut();
        for k in &self.keys {
            if let Some(n) = ix.uploading.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    ix.uploading.remove(k);
                }
            }
        }
    }
}

impl TargetIndex {
    fn expect_removals(&mut self, folder: &str, removals: &[Removal]) {
        for r in removals {
            self.removals
                .insert((folder.to_string(), r.target_uid), r.source_uid);
        }
    }

    /// Starts reading the state for the index on a blocking thread now, when a pass knows
    /// early that it will place messages: the read (milliseconds per 10 000 instances) then
    /// overlaps the opening and listing of the first folders instead of delaying their first
    /// placement. Changes committed meanwhile are learned as during any build.
    fn start(index: &RefCell<TargetIndex>, state: &StateFile) {
        let mut ix = index.borrow_mut();
        if ix.built || ix.building || ix.reading.is_some() {
            return;
        }
        // A state that cannot be read now is reported by the build that needs it.
        ix.reading = TargetIndex::read(state).ok();
    }

    /// Starts reading what the index is built from (the map itself is built there too), on
    /// the blocking pool.
    fn read(state: &StateFile) -> Result<StateRead<ContentMap>, crate::state::StateError> {
        let snapshot = state.instances_snapshot()?;
        Ok(tokio::task::spawn_blocking(move || snapshot.content_map()))
    }

    /// Builds the index on first use from the state as it is then (or as it was when
    /// [`TargetIndex::start`] began reading it). The decoding (tens of milliseconds for
    /// 20 000 instances) runs on a blocking thread, so the other folder workers of the pass go
    /// on meanwhile; a worker that needs the index while another builds it waits for that
    /// build.
    async fn ensure_built(
        index: &RefCell<TargetIndex>,
        state: &StateFile,
    ) -> Result<(), EngineError> {
        let reading = loop {
            {
                let mut ix = index.borrow_mut();
                if ix.built {
                    return Ok(());
                }
                if !ix.building {
                    ix.building = true;
                    break ix.reading.take();
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        };
        let clock = Instant::now();
        let map = match reading.map_or_else(|| TargetIndex::read(state), Ok) {
            Ok(read) => join_state_read(state, read).await,
            Err(e) => Err(e.into()),
        };
        let mut ix = index.borrow_mut();
        ix.building = false;
        ix.map = map?;
        ix.built = true;
        // Changes learned while the index was being read (the snapshot predates them).
        for (folder, changes) in std::mem::take(&mut ix.queued) {
            ix.learn(&folder, &changes);
        }
        tracing::debug!(
            ms = clock.elapsed().as_millis() as u64,
            copies = ix.map.len(),
            "content index of the target built"
        );
        Ok(())
    }

    fn learn(&mut self, folder: &str, changes: &[InstanceChange]) {
        if !self.built {
            if self.building || self.reading.is_some() {
                self.queued.push((folder.to_string(), changes.to_vec()));
            }
            return;
        }
        for c in changes {
            if let InstanceChange::Put(_, rec) = c {
                if let (Some(fp), Some(tuid)) = (rec.fingerprint, rec.target_uid) {
                    self.map
                        .add(fp, folder.into(), tuid, rec.internaldate.epoch());
                }
            }
        }
    }

    /// Waits while another worker uploads any of these contents, so that what it uploads is
    /// found here afterwards. The waiting worker holds no claim, so two never wait on each
    /// other.
    async fn wait_for_uploads(index: &RefCell<TargetIndex>, keys: &[(Fingerprint, i64)]) {
        while keys
            .iter()
            .any(|k| index.borrow().uploading.contains_key(k))
        {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Target copies of this content with this INTERNALDATE: (folder, UID).
    fn find(&self, fp: &Fingerprint, date: i64) -> Vec<(String, u32)> {
        self.map
            .copies(fp)
            .filter(|h| h.2 == date)
            .map(|h| (h.0.to_string(), h.1))
            .collect()
    }
}

/// Quarantine changes of a folder, committed with each batch.
struct QuarantineUpdate {
    known: BTreeMap<(String, u32), Quarantined>,
    put: Vec<(u32, Quarantined)>,
    remove: Vec<u32>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Errors that concern one folder only, after which the connection is still in step.
pub(super) fn folder_local(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::No { .. } | StoreError::Refused { .. } | StoreError::NoSuchFolder { .. }
    )
}

pub(super) fn notice(events: &dyn EventSink, summary: &mut SyncSummary, text: String) {
    events.event(Event::Notice(text.clone()));
    summary.notices.push(text);
}

/// Stores flag deltas, one STORE per distinct (add, remove) pair, then records the new flags.
async fn apply_flag_updates<T: MailStore>(
    target: &mut T,
    state: &StateFile,
    name: &str,
    base: &BTreeMap<u32, InstanceRecord>,
    plan: &FolderPlan,
    events: &dyn EventSink,
    summary: &mut SyncSummary,
) -> Result<(), EngineError> {
    if plan.flag_updates.is_empty() {
        return Ok(());
    }
    let mut groups: BTreeMap<(String, String), (FlagSet, FlagSet, Vec<u32>)> = BTreeMap::new();
    for u in &plan.flag_updates {
        if u.add.is_empty() && u.remove.is_empty() {
            continue;
        }
        groups
            .entry((u.add.to_imap_list(), u.remove.to_imap_list()))
            .or_insert_with(|| (u.add.clone(), u.remove.clone(), Vec::new()))
            .2
            .push(u.target_uid);
    }
    // Every change in one round trip (they touch disjoint flags or UIDs: order does not matter).
    let mut changes: Vec<(&[u32], FlagChange, &FlagSet)> = Vec::new();
    for (add, remove, uids) in groups.values() {
        changes.push((uids, FlagChange::Add, add));
        changes.push((uids, FlagChange::Remove, remove));
    }
    let results = target.store_flags_many(&changes).await?;
    let mut outcomes = results.into_iter();
    for (add, _, uids) in groups.values() {
        let (Some(added), Some(removed)) = (outcomes.next(), outcomes.next()) else {
            break;
        };
        match added {
            Ok(()) => {}
            // A keyword the target refuses: the rest of the change is stored without it.
            Err(e) if keywords::is_keyword_refusal(&e) => {
                let why = refusal_text(&e);
                let mut stored = false;
                for (fewer, dropped) in keywords::fallbacks(add) {
                    if target
                        .store_flags(uids, FlagChange::Add, &fewer)
                        .await
                        .is_ok()
                    {
                        for k in keywords::note_refused(state, &dropped, &why)? {
                            notice(events, summary, keyword_note(&k, &why));
                        }
                        stored = true;
                        break;
                    }
                }
                if !stored {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
        removed?;
        crashpoint::hit("after_store");
        summary.flags_updated += uids.len() as u64;
    }
    let changes: Vec<InstanceChange> = plan
        .flag_updates
        .iter()
        .filter_map(|u| {
            let mut rec = base.get(&u.source_uid)?.clone();
            rec.flags = u.flags.clone();
            Some(InstanceChange::Put(u.source_uid, rec))
        })
        .collect();
    state.commit(name, None, &changes)?;
    Ok(())
}

/// Decides the pass's removals with the removal budget, expunges exactly the target copies of
/// the removals it applies, and records the ones it holds (they stay in the base and on the
/// target until the user releases them).
/// Removals that are the other half of a move leave the budget: those already moved (UID MOVE)
/// are done; those whose target copy was copied into the folder the source moved it to are
/// removed now, as a move, whatever the budget (the content stays on the target).
async fn complete_moves<T: MailStore>(
    target: &mut T,
    state: &StateFile,
    summary: &mut SyncSummary,
    index: &TargetIndex,
    pending: &mut [FolderRemovals],
    awaiting_removals: &HashSet<String>,
) -> Result<(), EngineError> {
    for f in pending.iter_mut() {
        let name = f.folder.to_string();
        let mut rest: Vec<Removal> = Vec::new();
        f.removals.retain(|r| {
            let key = (name.clone(), r.target_uid);
            if index.moved.contains(&key) {
                false
            } else if index.copied_out.contains(&key) {
                rest.push(r.clone());
                false
            } else {
                true
            }
        });
        if !rest.is_empty() {
            let uids: Vec<u32> = rest.iter().map(|r| r.target_uid).collect();
            target.open_folder(&f.folder).await?;
            target.expunge(&uids).await?;
            crashpoint::hit("after_expunge");
            let changes: Vec<InstanceChange> = rest
                .iter()
                .map(|r| InstanceChange::Delete(r.source_uid))
                .collect();
            state.commit(&name, None, &changes)?;
            summary.moved += rest.len() as u64;
            // Each was counted as a copy when its new copy was placed; it is one move.
            summary.copied_on_target = summary.copied_on_target.saturating_sub(rest.len() as u64);
        }
        if f.removals.is_empty() && awaiting_removals.contains(&name) {
            mark_complete(state, &name)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn apply_removal_budget<S, T: MailStore>(
    target: &mut T,
    spare: &mut [(S, T)],
    state: &StateFile,
    options: &SyncOptions,
    events: &dyn EventSink,
    summary: &mut SyncSummary,
    pending: &[FolderRemovals],
    unchanged_messages: usize,
    awaiting_removals: &HashSet<String>,
) -> Result<(), EngineError> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let held_before = state.held()?;
    let ctx = BudgetContext {
        account_size: pending.iter().map(|f| f.base_count).sum::<usize>() + unchanged_messages,
        removed_in_window: state.removed_since(now_ms.saturating_sub(24 * 3600 * 1000))?,
        held: held_before
            .iter()
            .filter(|(_, h)| !h.released)
            .map(|(k, _)| k.clone())
            .collect(),
        released: held_before
            .iter()
            .filter(|(_, h)| h.released)
            .map(|(k, _)| k.clone())
            .collect(),
        allow_deletions: options.policy.allow_deletions,
    };
    let decision = decide(pending, &ctx);
    summary.removals_held = decision.held_count() as u64;
    // A removal held again keeps the reason it was first held for.
    let reason_of = |folder: &FolderPath, r: &Removal, reason: &HoldReason| match reason {
        HoldReason::StillHeld => held_before
            .get(&(folder.to_string(), r.source_uid))
            .map_or_else(
                || reason.to_string(),
                |h| format!("{} (held by an earlier pass)", h.reason),
            ),
        other => other.to_string(),
    };
    for (folder, removals, reason) in &decision.hold {
        let first = removals
            .first()
            .map(|r| reason_of(folder, r, reason))
            .unwrap_or_default();
        let action = Action::HoldRemovals {
            folder: folder.clone(),
            count: removals.len(),
            reason: first,
        };
        notice(events, summary, action.to_string());
    }
    if options.dry_run {
        for (folder, removals) in &decision.apply {
            for r in removals {
                let action = Action::Remove {
                    folder: folder.clone(),
                    source_uid: r.source_uid,
                    target_uid: r.target_uid,
                };
                summary.actions.push(action.to_string());
            }
            summary.removed += removals.len() as u64;
        }
        return Ok(());
    }
    // Folders expunge concurrently; a folder's removals leave the state once the target
    // expunged them.
    let removed = Cell::new(0u64);
    let task = async |target: &mut T, (folder, removals): &(FolderPath, Vec<Removal>)| {
        let name = folder.to_string();
        let uids: Vec<u32> = removals.iter().map(|r| r.target_uid).collect();
        let status = target.open_folder(folder).await?;
        // The target UIDs name these messages only under the UIDVALIDITY they were recorded
        // with: a folder recreated on the target since its work in this pass keeps its
        // messages, and the next pass matches them again by identity.
        let recorded = state.folder(&name)?.and_then(|r| r.target_uidvalidity);
        if recorded != Some(status.uidvalidity) {
            tracing::warn!(
                folder = %name,
                "UIDVALIDITY of the target folder changed during the pass; its removals wait for the next pass"
            );
            return Ok(());
        }
        target.expunge(&uids).await?;
        crashpoint::hit("after_expunge");
        let changes: Vec<InstanceChange> = removals
            .iter()
            .map(|r| InstanceChange::Delete(r.source_uid))
            .collect();
        state.commit(&name, None, &changes)?;
        let exempt = pending.iter().any(|f| &f.folder == folder && f.exempt);
        if !exempt {
            state.log_removals(now_ms, uids.len() as u64)?;
        }
        removed.set(removed.get() + uids.len() as u64);
        if awaiting_removals.contains(&name) && !decision.hold.iter().any(|(f, _, _)| f == folder) {
            mark_complete(state, &name)?;
        }
        Ok(())
    };
    let applied = run_on_targets(target, spare, decision.apply.iter().collect(), task).await;
    summary.removed += removed.get();
    applied?;
    // The held set of every folder this pass looked at is exactly what it holds now.
    let now_s = now_ms / 1000;
    for f in pending {
        let name = f.folder.to_string();
        let held: Vec<(u32, HeldRemoval)> = decision
            .hold
            .iter()
            .filter(|(folder, _, _)| folder == &f.folder)
            .flat_map(|(_, removals, reason)| removals.iter().map(move |r| (r, reason)))
            .map(|(r, reason)| {
                let before = held_before.get(&(name.clone(), r.source_uid));
                let since = before.map_or(now_s, |h| h.since);
                let reason = before.map_or_else(|| reason.to_string(), |h| h.reason.clone());
                (
                    r.source_uid,
                    HeldRemoval {
                        target_uid: r.target_uid,
                        since,
                        reason,
                        released: false,
                    },
                )
            })
            .collect();
        let held_here_before = held_before.keys().any(|(folder, _)| *folder == name);
        if held_here_before || !held.is_empty() {
            state.set_held(&name, &held)?;
        }
    }
    Ok(())
}

/// Places source messages on the target: adopted when the target already holds the same
/// content (an interrupted pass, a lost state), uploaded otherwise.
struct Placer<'a, S, T> {
    source: &'a mut S,
    target: &'a mut T,
    state: &'a StateFile,
    options: &'a SyncOptions,
    events: &'a dyn EventSink,
    path: &'a FolderPath,
    name: &'a str,
    summary: &'a mut SyncSummary,
    /// Where the target already holds each content (for placing by COPY); shared by the
    /// workers of a pass, never borrowed across an await.
    index: &'a RefCell<TargetIndex>,
    /// Keywords the target refuses (see keywords.rs): not sent.
    refused_keywords: &'a BTreeMap<String, String>,
    /// Messages of this folder the target refused before (forgotten once placed).
    refused: &'a BTreeMap<u32, Refused>,
}

impl<S: MailStore, T: MailStore> Placer<'_, S, T> {
    /// `first`: the bodies of the first batch when they were fetched early (see
    /// [`FirstBatch`]); used when that batch is still the first.
    async fn place(
        mut self,
        plan: &FolderPlan,
        base: &BTreeMap<u32, InstanceRecord>,
        target_msgs: &[MessageMeta],
        target_status: &FolderStatus,
        first: Option<FirstBatch>,
    ) -> Result<usize, EngineError> {
        if plan.placements.is_empty() {
            return Ok(0);
        }
        let mut adopted = 0;
        let total_bytes: u64 = plan.placements.iter().map(|p| p.source.size as u64).sum();
        self.events.event(Event::FolderStarted {
            folder: self.path.clone(),
            messages: plan.placements.len() as u64,
            bytes: total_bytes,
        });

        let (placements, unmapped) = self
            .adopt_by_content_sha1(
                &plan.placements,
                &plan.unmapped_target,
                base,
                target_msgs,
                target_status,
            )
            .await?;
        let (placements, unmapped) = self
            .adopt_by_cheap_keys(&placements, &unmapped, target_msgs, target_status)
            .await?;
        adopted += plan.placements.len() - placements.len();
        let mut candidates = self
            .adoption_candidates(&placements, &unmapped, target_msgs)
            .await?;
        let mut ordinals: HashMap<Fingerprint, u32> = HashMap::new();
        for fp in base.values().filter_map(|i| i.fingerprint) {
            *ordinals.entry(fp).or_default() += 1;
        }

        let mut quarantine = QuarantineUpdate {
            known: self.state.quarantine(Some(self.name))?,
            put: Vec::new(),
            remove: Vec::new(),
        };
        // Batches bounded in messages and bytes. The bodies of the next batch are fetched from
        // the source while this one is appended to the target: each side waits for the other
        // only when it is the slower one.
        let ranges = batch_ranges(&placements, self.options);
        let uids_of = |k: usize| -> Vec<u32> {
            ranges
                .get(k)
                .map(|r| placements[r.clone()].iter().map(|p| p.source.uid).collect())
                .unwrap_or_default()
        };
        // Set when a copy's target UID is unknown (no UIDPLUS, or an earlier pass): learned at
        // the end.
        let mut unknown_uids = base.values().any(|i| i.target_uid.is_none());
        let mut prefetched = Some(match first {
            Some(early) if early.uids == uids_of(0) => early.bodies,
            _ => self.source.fetch_bodies(&uids_of(0)).await,
        });
        for k in 0..ranges.len() {
            let batch_clock = Instant::now();
            let batch = &placements[ranges[k].clone()];
            let bodies = match prefetched.take() {
                Some(result) => result?,
                None => self.source.fetch_bodies(&uids_of(k)).await?,
            };
            let fetched_at = batch_clock.elapsed();
            let next_uids = uids_of(k + 1);
            // Hashing and validating are the CPU-heavy part of a copy: done on the blocking
            // pool, so that this thread keeps every connection moving meanwhile.
            let sizes: HashMap<u32, u32> = batch
                .iter()
                .map(|p| (p.source.uid, p.source.size))
                .collect();
            let (bodies, mut digests) = digest_bodies(bodies, sizes, candidates.is_empty()).await;
            // A source that names content by SHA-1 says it with the listing: kept, so that a
            // source that loses its UIDs is matched again without reading bodies.
            if self.source.names_content_by_sha1() {
                let uids: Vec<u32> = digests.keys().copied().collect();
                let named: HashMap<u32, ContentSha1> =
                    self.source.content_sha1(&uids).await?.into_iter().collect();
                let pairs: Vec<(Fingerprint, ContentSha1)> = digests
                    .iter()
                    .filter_map(|(uid, d)| Some((d.fingerprint, *named.get(uid)?)))
                    .collect();
                self.state.record_content_sha1(&pairs)?;
            }
            let digested_at = batch_clock.elapsed();
            let by_uid: HashMap<u32, &crate::mailstore::FetchedBody> =
                bodies.iter().map(|b| (b.uid, b)).collect();

            let mut changes = Vec::new();
            let mut claim: Option<UploadClaim<'_>> = None;
            let mut to_append: Vec<(usize, std::borrow::Cow<'_, [u8]>, Fingerprint)> = Vec::new();
            let mut placed_bytes = 0u64;
            let mut placed = 0u64;
            for (i, p) in batch.iter().enumerate() {
                let Some(body) = by_uid.get(&p.source.uid) else {
                    continue; // expunged since the listing: the next pass sees it gone
                };
                let Some(digest) = digests.remove(&p.source.uid) else {
                    continue;
                };
                let bytes = match digest.normalized {
                    Some(owned) => std::borrow::Cow::Owned(owned),
                    None => std::borrow::Cow::Borrowed(body.bytes()),
                };
                let fingerprint = digest.fingerprint;
                let me = [Identified {
                    uid: p.source.uid,
                    fingerprint,
                    internaldate: &p.source.internaldate,
                }];
                let cands: Vec<Identified<'_>> = candidates
                    .iter()
                    .map(|(m, fp, _)| Identified {
                        uid: m.uid,
                        fingerprint: *fp,
                        internaldate: &m.internaldate,
                    })
                    .collect();
                let found = match adopt(&me, &cands)[0] {
                    Some(tuid) => Some(tuid),
                    None => self.adopt_rewritten(&bytes, p, &candidates).await?,
                };
                if let Some(tuid) = found {
                    let Some(pos) = candidates.iter().position(|(m, _, _)| m.uid == tuid) else {
                        continue;
                    };
                    let (tmeta, _, _) = candidates.remove(pos);
                    self.fix_flags(&tmeta, &p.source.flags, target_status)
                        .await?;
                    changes.push(self.record(
                        &mut ordinals,
                        p.source.clone(),
                        fingerprint,
                        Some(tuid),
                    ));
                    self.summary.adopted += 1;
                    adopted += 1;
                    placed += 1;
                    placed_bytes += p.source.size as u64;
                } else if self.admit(
                    p,
                    body.bytes(),
                    fingerprint,
                    digest.verdict,
                    &mut quarantine,
                ) {
                    to_append.push((i, bytes, fingerprint));
                }
            }
            if !to_append.is_empty() {
                // Journal the batch durably (with the adoptions so far) before the first
                // APPEND: a pass that stops inside it is resolved by the next one.
                let intents = to_append
                    .iter()
                    .map(|(i, bytes, fingerprint)| {
                        let src = &batch[*i].source;
                        Intent {
                            source_uid: src.uid,
                            fingerprint: *fingerprint,
                            sent_size: bytes.len() as u32,
                            size: src.size,
                            flags: src.flags.clone(),
                            internaldate: src.internaldate.clone(),
                        }
                    })
                    .collect();
                if self.options.journal {
                    let entry = journal_entry(target_status, intents);
                    self.state
                        .commit_with(self.name, None, &changes, JournalOp::Set(&entry))?;
                    changes.clear();
                }
                crashpoint::hit("after_journal");
                // Bytes cross the wire once: content the target already holds (this pass or
                // earlier, any folder, same INTERNALDATE) is placed with UID COPY there. Content
                // another worker is uploading right now is waited for, then copied.
                let key = |(i, _, fp): &(usize, _, Fingerprint)| {
                    (*fp, batch[*i].source.internaldate.epoch())
                };
                let keys: Vec<_> = to_append.iter().map(key).collect();
                if self.target.capabilities().uidplus {
                    TargetIndex::wait_for_uploads(self.index, &keys).await;
                }
                // Claimed in the same step as the check (no await between), so no other
                // worker can start uploading the same content in between.
                claim = Some(UploadClaim::take(self.index, keys));
                let copied = self
                    .place_by_copy(batch, &to_append, &mut ordinals, &mut changes)
                    .await?;
                to_append.retain(|(i, _, _)| !copied.contains(&batch[*i].source.uid));
                placed += copied.len() as u64;
                placed_bytes += batch
                    .iter()
                    .filter(|p| copied.contains(&p.source.uid))
                    .map(|p| p.source.size as u64)
                    .sum::<u64>();
                let send_flags: Vec<FlagSet> = to_append
                    .iter()
                    .map(|(i, _, _)| {
                        batch[*i]
                            .source
                            .flags
                            .filtered(|f| !keywords::is_refused(self.refused_keywords, f))
                    })
                    .collect();
                let requests: Vec<AppendRequest<'_>> = to_append
                    .iter()
                    .zip(&send_flags)
                    .map(|((i, bytes, _), flags)| AppendRequest {
                        flags,
                        internaldate: &batch[*i].source.internaldate,
                        bytes,
                    })
                    .collect();
                let fetch_next = async {
                    if next_uids.is_empty() {
                        None
                    } else {
                        Some(self.source.fetch_bodies(&next_uids).await)
                    }
                };
                let (results, next) = if requests.is_empty() {
                    (Ok(Vec::new()), fetch_next.await)
                } else {
                    tokio::join!(self.target.append(self.path, &requests), fetch_next)
                };
                prefetched = next;
                let results = results?;
                tracing::debug!(
                    folder = %self.name,
                    messages = batch.len(),
                    fetched_ms = fetched_at.as_secs_f64() * 1e3,
                    digested_ms = digested_at.as_secs_f64() * 1e3,
                    appended_ms = batch_clock.elapsed().as_secs_f64() * 1e3,
                    "batch placed"
                );
                // Refusals grouped by content and the server's words: copies of one message
                // over a server's identical-message limit are one report.
                let mut refusals: BTreeMap<(Fingerprint, String), Vec<&MessageMeta>> =
                    BTreeMap::new();
                let mut placed_fps: HashSet<Fingerprint> = HashSet::new();
                // Refused because a JMAP mailbox holds the content already (one email per
                // content): a fidelity note by design, not a problem to look at.
                let mut one_per_content: HashSet<Fingerprint> = HashSet::new();
                // Copies with 8-bit header bytes, read back to learn how the target keeps them.
                let mut uploaded_8bit: Vec<readback::Uploaded<'_>> = Vec::new();
                // A target that names content by SHA-1 is told it, for rebuilding without bodies.
                let name_by_sha1 = self.target.names_content_by_sha1();
                let mut sha1s: Vec<(Fingerprint, ContentSha1)> = Vec::new();
                for (((i, bytes, fingerprint), result), flags) in
                    to_append.iter().zip(results).zip(&send_flags)
                {
                    let src = &batch[*i].source;
                    // Refused for a keyword: written again without it, never left behind.
                    let result = match result {
                        Err(e) if keywords::is_keyword_refusal(&e) => {
                            let date = &src.internaldate;
                            self.append_without_keywords(flags, date, bytes, e).await?
                        }
                        other => other,
                    };
                    match result {
                        Ok(tuid) => {
                            if self.refused.contains_key(&src.uid) {
                                self.state.update_refused(self.name, &[], &[src.uid])?;
                            }
                            changes.push(self.record(
                                &mut ordinals,
                                src.clone(),
                                *fingerprint,
                                tuid,
                            ));
                            placed_fps.insert(*fingerprint);
                            if name_by_sha1 {
                                sha1s.push((*fingerprint, ContentSha1::of_normalized(bytes)));
                            }
                            if let Some(target_uid) =
                                tuid.filter(|_| readback::has_8bit_header(bytes))
                            {
                                uploaded_8bit.push(readback::Uploaded {
                                    source_uid: src.uid,
                                    target_uid,
                                    sent: bytes,
                                });
                            }
                            self.summary.copied += 1;
                            self.summary.bytes_uploaded += bytes.len() as u64;
                            placed += 1;
                            placed_bytes += src.size as u64;
                        }
                        Err(e) => {
                            self.summary.refused_messages += 1;
                            if is_one_email_per_content(&e) {
                                one_per_content.insert(*fingerprint);
                            }
                            let text = refusal_text(&e);
                            refusals.entry((*fingerprint, text)).or_default().push(src);
                        }
                    }
                }
                self.state.record_content_sha1(&sha1s)?;
                for ((fingerprint, text), messages) in refusals {
                    // Refused while copies of the same content were taken, or several alike:
                    // the server's limit on identical messages, a fidelity note verify accepts.
                    let by_design = one_per_content.contains(&fingerprint);
                    let identical =
                        by_design || messages.len() > 1 || placed_fps.contains(&fingerprint);
                    let records: Vec<(u32, Refused)> = messages
                        .iter()
                        .map(|m| {
                            let record = Refused {
                                since: unix_now(),
                                size: m.size,
                                error: text.clone(),
                                fingerprint: Some(fingerprint),
                                identical_copy: identical,
                                by_design,
                            };
                            (m.uid, record)
                        })
                        .collect();
                    self.state.update_refused(self.name, &records, &[])?;
                    let report = refusal_report(self.name, &messages, &text, identical);
                    if by_design {
                        self.summary.fidelity_notes.push(report);
                    } else {
                        self.summary.refused.push(report);
                    }
                }
                if !uploaded_8bit.is_empty() && readback::needed(self.state)? {
                    let notes = readback::read_back(
                        self.target,
                        self.state,
                        self.name,
                        &uploaded_8bit,
                        unix_now(),
                    )
                    .await?;
                    self.summary.fidelity_notes.extend(notes);
                }
            }
            unknown_uids |= changes
                .iter()
                .any(|c| matches!(c, InstanceChange::Put(_, r) if r.target_uid.is_none()));
            self.state
                .commit_with(self.name, None, &changes, JournalOp::Clear)?;
            self.index.borrow_mut().learn(self.name, &changes);
            // What this batch uploaded is in the index now: workers waiting for it copy it.
            drop(claim);
            self.state
                .update_quarantine(self.name, &quarantine.put, &quarantine.remove)?;
            quarantine.put.clear();
            quarantine.remove.clear();
            crashpoint::hit("after_commit");
            self.summary.bytes_placed += placed_bytes;
            self.events.event(Event::Placed {
                folder: self.path.clone(),
                messages: placed,
                bytes: placed_bytes,
            });
        }
        if unknown_uids {
            self.learn_unknown_uids().await?;
        }
        Ok(adopted)
    }

    /// APPENDs one message again with fewer keywords (see keywords.rs) after `refusal`; the
    /// keywords left out of the attempt that works become a fidelity note. The last refusal
    /// when none works.
    async fn append_without_keywords(
        &mut self,
        flags: &FlagSet,
        internaldate: &crate::model::InternalDate,
        bytes: &[u8],
        refusal: StoreError,
    ) -> Result<Result<Option<u32>, StoreError>, EngineError> {
        let why = refusal_text(&refusal);
        let mut last = Err(refusal);
        for (fewer, dropped) in keywords::fallbacks(flags) {
            let request = AppendRequest {
                flags: &fewer,
                internaldate,
                bytes,
            };
            let mut results = self.target.append(self.path, &[request]).await?;
            last = results.pop().unwrap_or(Ok(None));
            if last.is_ok() {
                for k in keywords::note_refused(self.state, &dropped, &why)? {
                    notice(self.events, self.summary, keyword_note(&k, &why));
                }
                break;
            }
        }
        Ok(last)
    }

    /// Without UIDPLUS an APPEND does not say which UID the copy got. Learn it now, by identity
    /// among the target messages no instance points to, so that a later removal on the source
    /// can find the copy.
    async fn learn_unknown_uids(&mut self) -> Result<(), EngineError> {
        let instances = self.state.instances(self.name)?;
        // Instances appended in this pass without APPENDUID (they always have a fingerprint).
        let unknown: Vec<(&u32, &InstanceRecord, Fingerprint)> = instances
            .iter()
            .filter(|(_, i)| i.target_uid.is_none())
            .filter_map(|(u, i)| Some((u, i, i.fingerprint?)))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mapped: HashSet<u32> = instances.values().filter_map(|i| i.target_uid).collect();
        // Open again: the folder's message count changed with our APPENDs.
        self.target.open_folder(self.path).await?;
        let dates: HashSet<i64> = unknown
            .iter()
            .map(|(_, i, _)| i.internaldate.epoch())
            .collect();
        let wanted: Vec<MessageMeta> = self
            .target
            .list_messages()
            .await?
            .into_iter()
            .filter(|m| !mapped.contains(&m.uid) && dates.contains(&m.internaldate.epoch()))
            .collect();
        let mut candidates = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(self.options.batch_messages.max(1)) {
            let uids: Vec<u32> = chunk.iter().map(|m| m.uid).collect();
            for body in self.target.fetch_bodies(&uids).await? {
                if let Some(m) = chunk.iter().find(|m| m.uid == body.uid) {
                    candidates.push((m.uid, Fingerprint::of(body.bytes()), m.internaldate.clone()));
                }
            }
        }
        let sources: Vec<Identified<'_>> = unknown
            .iter()
            .map(|(uid, i, fingerprint)| Identified {
                uid: **uid,
                fingerprint: *fingerprint,
                internaldate: &i.internaldate,
            })
            .collect();
        let cands: Vec<Identified<'_>> = candidates
            .iter()
            .map(|(uid, fingerprint, date)| Identified {
                uid: *uid,
                fingerprint: *fingerprint,
                internaldate: date,
            })
            .collect();
        let changes: Vec<InstanceChange> = adopt(&sources, &cands)
            .into_iter()
            .zip(&unknown)
            .filter_map(|(tuid, (suid, inst, _))| {
                let mut rec = (*inst).clone();
                rec.target_uid = Some(tuid?);
                Some(InstanceChange::Put(**suid, rec))
            })
            .collect();
        self.state.commit(self.name, None, &changes)?;
        Ok(())
    }

    /// Rebuilding against a target that names content by SHA-1 (Cyrus over JMAP): a message the
    /// base knows by fingerprint, whose SHA-1 the state recorded when it was uploaded, is the
    /// unmapped target message named by that SHA-1. Neither side's body is read. Returns what
    /// is left to place and the unmapped rest.
    async fn adopt_by_content_sha1(
        &mut self,
        placements: &[Placement],
        unmapped: &[u32],
        base: &BTreeMap<u32, InstanceRecord>,
        target_msgs: &[MessageMeta],
        target_status: &FolderStatus,
    ) -> Result<(Vec<Placement>, Vec<u32>), EngineError> {
        if unmapped.is_empty() || !self.target.names_content_by_sha1() {
            return Ok((placements.to_vec(), unmapped.to_vec()));
        }
        let known: Vec<Fingerprint> = placements
            .iter()
            .filter_map(|p| base.get(&p.source.uid)?.fingerprint)
            .collect();
        let sha1_of = self.state.content_sha1(known)?;
        if sha1_of.is_empty() {
            return Ok((placements.to_vec(), unmapped.to_vec()));
        }
        let mut by_sha1: HashMap<ContentSha1, Vec<u32>> = HashMap::new();
        for (uid, sha) in self.target.content_sha1(unmapped).await? {
            by_sha1.entry(sha).or_default().push(uid);
        }
        let metas: HashMap<u32, &MessageMeta> = target_msgs.iter().map(|m| (m.uid, m)).collect();
        let mut changes = Vec::new();
        let mut left = Vec::new();
        let mut taken: HashSet<u32> = HashSet::new();
        let mut bytes = 0u64;
        for p in placements {
            let found = base.get(&p.source.uid).and_then(|inst| {
                let fp = inst.fingerprint?;
                let tuid = by_sha1.get_mut(sha1_of.get(&fp)?)?.pop()?;
                Some((inst, fp, tuid))
            });
            let Some((inst, fp, tuid)) = found else {
                left.push(p.clone());
                continue;
            };
            if let Some(t) = metas.get(&tuid) {
                self.fix_flags(t, &p.source.flags, target_status).await?;
            }
            changes.push(InstanceChange::Put(
                p.source.uid,
                InstanceRecord {
                    fingerprint: Some(fp),
                    ordinal: inst.ordinal,
                    target_uid: Some(tuid),
                    flags: p.source.flags.clone(),
                    internaldate: p.source.internaldate.clone(),
                    size: p.source.size,
                },
            ));
            taken.insert(tuid);
            bytes += p.source.size as u64;
        }
        self.state.commit(self.name, None, &changes)?;
        self.summary.adopted += changes.len() as u64;
        self.summary.bytes_placed += bytes;
        self.events.event(Event::Placed {
            folder: self.path.clone(),
            messages: changes.len() as u64,
            bytes,
        });
        let unmapped = unmapped
            .iter()
            .copied()
            .filter(|u| !taken.contains(u))
            .collect();
        Ok((left, unmapped))
    }

    /// Rebuilding (a lost state, a target filled by an earlier tool): a source message and an
    /// unmapped target message that are the only ones with their size and INTERNALDATE, and
    /// carry the same Message-ID, are the same message. They are mapped from one header fetch
    /// per side, without reading either body; ambiguous keys and messages without a Message-ID
    /// go on to the fingerprint. Returns what is left to place and the unmapped rest.
    async fn adopt_by_cheap_keys(
        &mut self,
        placements: &[Placement],
        unmapped: &[u32],
        target_msgs: &[MessageMeta],
        target_status: &FolderStatus,
    ) -> Result<(Vec<Placement>, Vec<u32>), EngineError> {
        let key = |m: &MessageMeta| (m.size, m.internaldate.epoch());
        let unmapped_set: HashSet<u32> = unmapped.iter().copied().collect();
        let mut sources: HashMap<(u32, i64), Vec<&Placement>> = HashMap::new();
        for p in placements {
            sources.entry(key(&p.source)).or_default().push(p);
        }
        let mut targets: HashMap<(u32, i64), Vec<&MessageMeta>> = HashMap::new();
        for m in target_msgs.iter().filter(|m| unmapped_set.contains(&m.uid)) {
            targets.entry(key(m)).or_default().push(m);
        }
        let pairs: Vec<(&Placement, &MessageMeta)> = sources
            .iter()
            .filter_map(
                |(k, ps)| match (ps.as_slice(), targets.get(k).map(Vec::as_slice)) {
                    ([p], Some([t])) => Some((*p, *t)),
                    _ => None,
                },
            )
            .collect();
        if pairs.is_empty() {
            return Ok((placements.to_vec(), unmapped.to_vec()));
        }
        let src_uids: Vec<u32> = pairs.iter().map(|(p, _)| p.source.uid).collect();
        let tgt_uids: Vec<u32> = pairs.iter().map(|(_, t)| t.uid).collect();
        let src_ids: HashMap<u32, Option<String>> = self
            .source
            .fetch_message_ids(&src_uids)
            .await?
            .into_iter()
            .collect();
        let tgt_ids: HashMap<u32, Option<String>> = self
            .target
            .fetch_message_ids(&tgt_uids)
            .await?
            .into_iter()
            .collect();
        let mut changes = Vec::new();
        let mut taken_src: HashSet<u32> = HashSet::new();
        let mut taken_tgt: HashSet<u32> = HashSet::new();
        for (p, t) in pairs {
            let (Some(Some(a)), Some(Some(b))) = (src_ids.get(&p.source.uid), tgt_ids.get(&t.uid))
            else {
                continue;
            };
            if a != b {
                continue;
            }
            self.fix_flags(t, &p.source.flags, target_status).await?;
            changes.push(InstanceChange::Put(
                p.source.uid,
                InstanceRecord {
                    fingerprint: None,
                    ordinal: 0,
                    target_uid: Some(t.uid),
                    flags: p.source.flags.clone(),
                    internaldate: p.source.internaldate.clone(),
                    size: p.source.size,
                },
            ));
            taken_src.insert(p.source.uid);
            taken_tgt.insert(t.uid);
        }
        self.state.commit(self.name, None, &changes)?;
        self.summary.adopted += changes.len() as u64;
        let bytes: u64 = placements
            .iter()
            .filter(|p| taken_src.contains(&p.source.uid))
            .map(|p| p.source.size as u64)
            .sum();
        self.summary.bytes_placed += bytes;
        self.events.event(Event::Placed {
            folder: self.path.clone(),
            messages: changes.len() as u64,
            bytes,
        });
        Ok((
            placements
                .iter()
                .filter(|p| !taken_src.contains(&p.source.uid))
                .cloned()
                .collect(),
            unmapped
                .iter()
                .copied()
                .filter(|u| !taken_tgt.contains(u))
                .collect(),
        ))
    }

    /// Unmapped target messages that could be copies of what is to be placed: same size and
    /// INTERNALDATE (cheap keys), then fingerprinted. Bodies are fetched only for these.
    async fn adoption_candidates(
        &mut self,
        placements: &[Placement],
        unmapped: &[u32],
        target_msgs: &[MessageMeta],
    ) -> Result<Vec<(MessageMeta, Fingerprint, TolerantKey)>, EngineError> {
        if unmapped.is_empty() {
            return Ok(Vec::new());
        }
        // Keyed by INTERNALDATE and a lower bound of the size: the copy may be larger than
        // the source served it, since bare LFs were sent as CRLF.
        let mut keys: HashMap<i64, u32> = HashMap::new();
        for p in placements {
            let min = keys
                .entry(p.source.internaldate.epoch())
                .or_insert(u32::MAX);
            *min = (*min).min(p.source.size);
        }
        let unmapped: HashSet<u32> = unmapped.iter().copied().collect();
        let wanted: Vec<&MessageMeta> = target_msgs
            .iter()
            .filter(|m| {
                unmapped.contains(&m.uid)
                    && keys
                        .get(&m.internaldate.epoch())
                        .is_some_and(|min| m.size >= *min)
            })
            .collect();
        let mut out = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(self.options.batch_messages.max(1)) {
            let uids: Vec<u32> = chunk.iter().map(|m| m.uid).collect();
            let bodies = self.target.fetch_bodies(&uids).await?;
            for body in bodies {
                if let Some(m) = chunk.iter().find(|m| m.uid == body.uid) {
                    let tolerant = tolerant_key(body.bytes(), m.internaldate.epoch());
                    out.push(((*m).clone(), Fingerprint::of(body.bytes()), tolerant));
                }
            }
        }
        Ok(out)
    }

    /// A candidate that is the source message as the target rewrote it: the same tolerant key,
    /// and bytes that differ from what would be sent only by known transforms (Cyrus's
    /// munge8bit, refolding). Read again to compare; only for messages no fingerprint matched.
    async fn adopt_rewritten(
        &mut self,
        sent: &[u8],
        p: &Placement,
        candidates: &[(MessageMeta, Fingerprint, TolerantKey)],
    ) -> Result<Option<u32>, EngineError> {
        // Most uploads have no candidate of their date: no key to compute.
        if !candidates
            .iter()
            .any(|(m, _, _)| m.internaldate == p.source.internaldate)
        {
            return Ok(None);
        }
        let want = tolerant_key(sent, p.source.internaldate.epoch());
        let uids: Vec<u32> = candidates
            .iter()
            .filter(|(m, _, k)| *k == want && m.internaldate == p.source.internaldate)
            .map(|(m, _, _)| m.uid)
            .collect();
        if uids.is_empty() {
            return Ok(None);
        }
        for body in self.target.fetch_bodies(&uids).await? {
            let verdict = classify(sent, body.bytes(), body.bytes().len() as u64);
            if verdict.class == FidelityClass::Normalising {
                let now = unix_now();
                let note = readback::note(&readback::describe(&verdict), body.bytes(), now);
                let endpoint = self.target.endpoint().to_string();
                let notes = [(p.source.uid, note)];
                readback::record(self.state, self.name, &notes, &verdict, &endpoint, now)?;
                return Ok(Some(body.uid));
            }
        }
        Ok(None)
    }

    /// Places messages whose content the target already holds by UID COPY from there, one
    /// command per source folder, then sets the copies' flags. Returns the source UIDs placed.
    async fn place_by_copy(
        &mut self,
        batch: &[Placement],
        to_append: &[(usize, std::borrow::Cow<'_, [u8]>, Fingerprint)],
        ordinals: &mut HashMap<Fingerprint, u32>,
        changes: &mut Vec<InstanceChange>,
    ) -> Result<HashSet<u32>, EngineError> {
        let mut placed = HashSet::new();
        // Without UIDPLUS a copy's UID is unknown, so its flags could not be set: upload.
        if to_append.is_empty() || !self.target.capabilities().uidplus {
            return Ok(placed);
        }
        TargetIndex::ensure_built(self.index, self.state).await?;
        // By folder holding the content: (target UID there, the placement, fingerprint).
        let mut by_folder: BTreeMap<String, Vec<(u32, &Placement, Fingerprint)>> = BTreeMap::new();
        let mut used: HashSet<(String, u32)> = HashSet::new();
        for (i, _, fp) in to_append {
            let p = &batch[*i];
            let found = self
                .index
                .borrow()
                .find(fp, p.source.internaldate.epoch())
                .into_iter()
                .find(|h| !used.contains(&(h.0.clone(), h.1)));
            if let Some((folder, uid)) = found {
                used.insert((folder.clone(), uid));
                by_folder.entry(folder).or_default().push((uid, p, *fp));
            }
        }
        if by_folder.is_empty() {
            return Ok(placed);
        }
        for (folder, items) in by_folder {
            // A copy whose original this pass removes anyway is moved: the source moved it.
            let (moves, copies): (Vec<_>, Vec<_>) = items.into_iter().partition(|(uid, ..)| {
                self.index
                    .borrow()
                    .removals
                    .contains_key(&(folder.clone(), *uid))
            });
            for (items, is_move) in [(moves, true), (copies, false)] {
                if !items.is_empty() {
                    self.copy_group(&folder, items, is_move, ordinals, changes, &mut placed)
                        .await?;
                }
            }
        }
        Ok(placed)
    }

    /// Places one group of placements from copies in `folder` on the target, by UID MOVE (the
    /// source moved them) or UID COPY, then sets the copies' flags to the source's.
    async fn copy_group(
        &mut self,
        folder: &str,
        items: Vec<(u32, &Placement, Fingerprint)>,
        is_move: bool,
        ordinals: &mut HashMap<Fingerprint, u32>,
        changes: &mut Vec<InstanceChange>,
        placed: &mut HashSet<u32>,
    ) -> Result<(), EngineError> {
        let from = FolderPath::from_display(folder);
        let uids: Vec<u32> = items.iter().map(|(u, _, _)| *u).collect();
        let result = async {
            self.target.open_folder(&from).await?;
            if is_move {
                self.target.move_messages(&uids, self.path).await
            } else {
                self.target.copy(&uids, self.path).await
            }
        }
        .await;
        self.target.open_folder(self.path).await?;
        let results = match result {
            Ok(r) => r,
            // The folder holding the content is gone or refuses: upload instead.
            Err(StoreError::No { .. }) | Err(StoreError::NoSuchFolder { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // The copies exist, their flags are not set yet: a crash here must heal too.
        crashpoint::hit("after_copy");
        let new_uids: HashMap<u32, Option<u32>> = results.into_iter().collect();
        if is_move {
            // The originals are gone from `folder`: so are their instances there.
            let gone: Vec<InstanceChange> = uids
                .iter()
                .filter_map(|u| {
                    let key = (folder.to_string(), *u);
                    let source_uid = self.index.borrow().removals.get(&key).copied()?;
                    self.index.borrow_mut().moved.insert(key);
                    Some(InstanceChange::Delete(source_uid))
                })
                .collect();
            self.state.commit(folder, None, &gone)?;
        }
        let mut set_flags: BTreeMap<String, (FlagSet, Vec<u32>)> = BTreeMap::new();
        for (uid, p, fp) in items {
            let Some(new_uid) = new_uids.get(&uid).copied() else {
                continue;
            };
            // The copy carries the original's flags: make them the source's, grouped so
            // that copies with the same flags take one STORE.
            if let Some(tuid) = new_uid {
                set_flags
                    .entry(p.source.flags.to_imap_list())
                    .or_insert_with(|| (p.source.flags.clone(), Vec::new()))
                    .1
                    .push(tuid);
            }
            changes.push(self.record(ordinals, p.source.clone(), fp, new_uid));
            if is_move {
                self.summary.moved += 1;
            } else {
                self.index
                    .borrow_mut()
                    .copied_out
                    .insert((folder.to_string(), uid));
                self.summary.copied_on_target += 1;
            }
            placed.insert(p.source.uid);
        }
        for (flags, uids) in set_flags.values() {
            self.target
                .store_flags(uids, FlagChange::Replace, flags)
                .await?;
        }
        Ok(())
    }

    /// Validation gate before an upload (DESIGN.md "Validation, quarantine"): transport damage
    /// is quarantined and retried by later passes; structural damage is replicated as it is once
    /// it has been seen unchanged for `settle` (or blocked with --strict-validation); with
    /// --accept-invalid everything goes through, counted.
    fn admit(
        &mut self,
        p: &Placement,
        raw: &[u8],
        fingerprint: Fingerprint,
        verdict: Option<Verdict>,
        q: &mut QuarantineUpdate,
    ) -> bool {
        let uid = p.source.uid;
        let key = (self.name.to_string(), uid);
        let verdict = verdict.unwrap_or_else(|| validate(raw, &Expectation::exact(p.source.size)));
        let (class, reason) = match &verdict {
            Verdict::Valid => {
                if q.known.contains_key(&key) {
                    q.remove.push(uid);
                }
                return true;
            }
            Verdict::Transport(r) => ("transport", r.clone()),
            Verdict::Structural(r) => ("structural", r.clone()),
        };
        let what = format!(
            "{}: source uid {} ({} bytes): {reason}",
            self.name, uid, p.source.size
        );
        if self.options.accept_invalid {
            self.summary.accepted_invalid += 1;
            self.summary
                .notices
                .push(format!("{what}; uploaded anyway (--accept-invalid)"));
            q.remove.push(uid);
            return true;
        }
        let now = unix_now();
        let known = q
            .known
            .get(&key)
            .filter(|k| k.fingerprint == fingerprint && k.class == class);
        if class == "structural" && !self.options.strict_validation {
            if let Some(k) = known {
                if now.saturating_sub(k.first_seen) >= self.options.settle_secs {
                    self.summary.notices.push(format!(
                        "{what}; unchanged since it was first seen, replicated as it is"
                    ));
                    q.remove.push(uid);
                    return true;
                }
            }
        }
        let header_end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len());
        let record = Quarantined {
            message_id: message_id(&raw[..header_end]),
            size: p.source.size,
            class: class.to_string(),
            reason: reason.clone(),
            fingerprint,
            first_seen: known.map_or(now, |k| k.first_seen),
            last_seen: now,
            attempts: known.map_or(1, |k| k.attempts + 1),
        };
        let why = match (class, self.options.strict_validation) {
            ("transport", _) => "damaged in transit, fetched again next run".to_string(),
            (_, true) => "blocked by --strict-validation".to_string(),
            _ => format!(
                "held until it has been seen unchanged for {} s, then replicated as it is",
                self.options.settle_secs
            ),
        };
        self.summary.quarantined.push(format!("{what} ({why})"));
        q.put.push((uid, record));
        false
    }

    async fn fix_flags(
        &mut self,
        tmeta: &MessageMeta,
        want: &FlagSet,
        status: &FolderStatus,
    ) -> Result<(), StoreError> {
        let want = want.filtered(|f| status.can_store(f));
        let have = tmeta.flags.filtered(|f| status.can_store(f));
        let add = want.minus(&have);
        let remove = have.minus(&want);
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        self.target
            .store_flags(&[tmeta.uid], FlagChange::Add, &add)
            .await?;
        self.target
            .store_flags(&[tmeta.uid], FlagChange::Remove, &remove)
            .await?;
        self.summary.flags_updated += 1;
        Ok(())
    }

    fn record(
        &self,
        ordinals: &mut HashMap<Fingerprint, u32>,
        src: MessageMeta,
        fingerprint: Fingerprint,
        target_uid: Option<u32>,
    ) -> InstanceChange {
        let ordinal = ordinals.entry(fingerprint).or_default();
        let rec = InstanceRecord {
            fingerprint: Some(fingerprint),
            ordinal: *ordinal,
            target_uid,
            flags: src.flags,
            internaldate: src.internaldate,
            size: src.size,
        };
        *ordinal += 1;
        InstanceChange::Put(src.uid, rec)
    }
}

/// Messages placed on the target so far, however (uploaded, copied, moved or adopted).
fn placed_count(s: &SyncSummary) -> u64 {
    s.copied + s.copied_on_target + s.moved + s.adopted
}

/// The fidelity note of a keyword the target refuses, reported once.
fn keyword_note(keyword: &str, why: &str) -> String {
    format!(
        "keyword {keyword} is not kept by the target ({why}); messages are replicated without it, and it is left out of later passes and of verify"
    )
}

/// A JMAP target's refusal of a second copy of a content in one mailbox (it keeps one email
/// per content, DESIGN.md "Identity and fidelity").
fn is_one_email_per_content(e: &StoreError) -> bool {
    matches!(e, StoreError::No { code: Some(c), .. } if c == crate::mailstore::jmap::store::ALREADY_EXISTS)
}

fn refusal_text(e: &StoreError) -> String {
    match e {
        StoreError::No { text, .. } => format!("the target refused it: {text}"),
        other => other.to_string(),
    }
}

/// One line for messages of a folder the target refused with the same words: a single message
/// by its UID, several identical copies (a server's identical-message limit) as one report.
fn refusal_report(folder: &str, messages: &[&MessageMeta], text: &str, identical: bool) -> String {
    let retry = "tried again in 24 h (or now with --retry-refused)";
    match messages {
        [m] if identical => format!(
            "{folder}: source uid {} ({} bytes), a copy of a message the target holds, was not kept: {text}; a server limit on identical messages is a fidelity note; {retry}",
            m.uid, m.size
        ),
        [m] => format!(
            "{folder}: source uid {} ({} bytes): {text}; {retry}",
            m.uid, m.size
        ),
        _ => {
            let uids: Vec<String> = messages.iter().map(|m| m.uid.to_string()).collect();
            format!(
                "{folder}: {} identical copies of one message (source uids {}, {} bytes each) were not kept: {text}; the target holds the copies it accepted (a server limit on identical messages is a fidelity note); {retry}",
                messages.len(),
                uids.join(","),
                messages[0].size
            )
        }
    }
}
