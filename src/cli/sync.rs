//! `mailreplica sync`: one one-way pass from the source to the target, resumed after
//! connection failures.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::args::SyncArgs;
use super::exit::ExitCode;
use super::handover::{hand_to_watch, report, Untaken, WAIT};
use super::pair::{connect, Pair};
use super::progress::{human_bytes, Progress};
use crate::engine::mapped::{folder_map, Mapped};
use crate::engine::paced::{Paced, Pacing};
use crate::engine::summary::PaceReport;
use crate::engine::sync::{sync_into_with, SyncOptions};
use crate::engine::throttle::{RateLimits, Throttle};
use crate::engine::watch::{accept_request_path, status_path, write_accept_request, StatusCopy};
use crate::engine::workers::Connector;
use crate::engine::{EngineError, SyncSummary};
use crate::mailstore::any::AnyStore;
use crate::mailstore::{Access, MailStore};
use crate::reconcile::folder_map::FolderMap;
use crate::reconcile::selection::Selection;
use crate::reconcile::Policy;
use crate::state::{StateError, StateFile};

pub struct SyncCommand {
    pub args: SyncArgs,
    /// What is copied (`migrate`); everything for `sync`.
    pub selection: Selection,
    /// Never remove from the target (`migrate`).
    pub keep_target_messages: bool,
    /// Explicit folder renames (`migrate`); none for `sync`.
    pub folder_rules: crate::reconcile::folder_map::Rules,
    /// With `--json`: where the summary goes instead of stdout (see `cli::JsonSink`).
    pub json_sink: Option<super::JsonSink>,
}

impl SyncCommand {
    pub async fn execute(self) -> ExitCode {
        let args = self.args;
        if args.accept_regression && !args.dry_run && !args.rebuild_state {
            if let Some(code) = confirm_to_running_watch(&args).await {
                return code;
            }
        }
        let (pair, id, state_path) = match args.pair.resolve_with_state(args.state.as_deref()) {
            Ok(r) => r,
            Err(code) => return code,
        };
        let state = match open_state(&state_path, &id, args.rebuild_state) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::of_state(&e);
            }
        };
        tracing::debug!("state file opened");
        let progress = Progress::new(args.json);
        let limits = RateLimits {
            bytes_per_second: args.max_bytes_per_second,
            messages_per_second: args.max_messages_per_second,
        };
        // One pacing per account for the whole run (every connection, every retried pass):
        // the limit's budget and the servers' back-off episodes carry over.
        let pacing = Pacings {
            source: Pacing::unlimited(),
            target: Pacing::limited(Throttle::new(limits)),
        };
        if !limits.is_unlimited() && !args.dry_run {
            progress.line(&format!(
                "rate limit on the target: at most {}, shared by every connection",
                limits.describe()
            ));
        }
        let mut options = SyncOptions {
            dry_run: args.dry_run,
            policy: Policy {
                allow_deletions: args.allow_deletions,
            },
            strict_validation: args.strict_validation,
            accept_invalid: args.accept_invalid,
            settle_secs: args.settle,
            accept_regression: args.accept_regression,
            connections: usize::from(args.connections),
            retry_refused_after: if args.retry_refused {
                0
            } else {
                crate::engine::sync::RETRY_REFUSED_AFTER
            },
            selection: self.selection,
            keep_target_messages: self.keep_target_messages,
            folder_rules: self.folder_rules,
            ..SyncOptions::default()
        };
        fit_batches_to_limits(&mut options, &limits);
        let mut summary = SyncSummary::default();
        // Retries count consecutive failed passes that made no progress: a flaky link that
        // drops every few hundred kilobytes still converges, a dead one gives up.
        let mut attempt = 0;
        loop {
            let before = progress_marker(&summary);
            let result = run_pass(&pair, &pacing, &state, &options, &progress, &mut summary).await;
            if result.is_err() && progress_marker(&summary) > before {
                attempt = 0;
            }
            match result {
                Ok(()) => break,
                Err(Failure::Connect(code))
                    if !matches!(code, ExitCode::Unavailable | ExitCode::TempFail)
                        || attempt >= args.retries =>
                {
                    return code
                }
                Err(Failure::Engine(e)) if !e.is_retryable() || attempt >= args.retries => {
                    eprintln!("error: {e}");
                    if !matches!(e, EngineError::FailedOver(_)) {
                        eprintln!(
                            "nothing already synced was lost; run the same command again to resume"
                        );
                    }
                    return ExitCode::of_engine(&e);
                }
                Err(failure) => {
                    attempt += 1;
                    let delay = backoff(attempt);
                    let what = match &failure {
                        Failure::Engine(e) => e.to_string(),
                        Failure::Connect(_) => "a server is unavailable".to_string(),
                    };
                    progress.line(&format!(
                        "retrying in {:.1} s (attempt {attempt} of {}): {what}",
                        delay.as_secs_f64(),
                        args.retries
                    ));
                    tokio::time::sleep(delay).await;
                }
            }
        }
        summary.pace = pacing.report(&limits);
        summary.finished_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if let Ok(json) = serde_json::to_vec(&summary) {
            let _ = state.set_meta("last_pass", &json);
        }
        if args.json {
            super::emit_json(&summary, self.json_sink.as_ref());
        } else {
            print_summary(&summary);
        }
        if summary.needs_attention() {
            ExitCode::Attention
        } else {
            ExitCode::InSync
        }
    }
}

fn progress_marker(s: &SyncSummary) -> u64 {
    s.copied + s.adopted + s.flags_updated + s.removed + s.folders_created
}

enum Failure {
    /// Could not connect or log in; the error was printed.
    Connect(ExitCode),
    Engine(EngineError),
}

/// The pacing of each side's connections (see engine::paced): back-off on both, the rate
/// limits on the target.
struct Pacings {
    source: Arc<Pacing>,
    target: Arc<Pacing>,
}

impl Pacings {
    /// What the summary says about the run's pace; nothing when there was no limit and no
    /// server asked to slow down.
    fn report(&self, limits: &RateLimits) -> Option<PaceReport> {
        let (s_count, s_wait) = self.source.backoffs();
        let (t_count, t_wait) = self.target.backoffs();
        let waited = self
            .target
            .throttle()
            .map_or(Duration::ZERO, Throttle::waited);
        if limits.is_unlimited() && s_count + t_count == 0 {
            return None;
        }
        Some(PaceReport {
            limit: (!limits.is_unlimited()).then(|| limits.describe()),
            max_bytes_per_second: limits.bytes_per_second,
            max_messages_per_second: limits.messages_per_second,
            limit_wait_seconds: waited.as_secs_f64(),
            server_backoffs: s_count + t_count,
            server_backoff_seconds: (s_wait + t_wait).as_secs_f64(),
        })
    }
}

/// Under a rate limit, a batch is about a second of the limit: progress (and the bar's ETA)
/// moves every second or so instead of jumping once per large batch.
fn fit_batches_to_limits(options: &mut SyncOptions, limits: &RateLimits) {
    if let Some(bytes) = limits.bytes_per_second {
        options.batch_bytes = options.batch_bytes.min(bytes.max(1));
    }
    if let Some(messages) = limits.messages_per_second {
        let per_worker = (messages / options.connections.max(1) as f64).ceil() as usize;
        options.batch_messages = options.batch_messages.min(per_worker.max(1));
    }
}

/// Connects both sides and runs one pass, adding to `summary`.
async fn run_pass(
    pair: &Pair,
    pacing: &Pacings,
    state: &StateFile,
    options: &SyncOptions,
    progress: &Progress,
    summary: &mut SyncSummary,
) -> Result<(), Failure> {
    let target_access = if options.dry_run {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    // Both logins at once.
    let (source, target) = tokio::join!(
        connect(&pair.source, Access::ReadOnly, "source"),
        connect(&pair.target, target_access, "target")
    );
    let (mut source, mut target) = match (source, target) {
        // Paced below the folder mapping: every command, the first listing too, waits when
        // a server asks to slow down.
        (Ok(s), Ok(t)) => (
            Paced::new(s, pacing.source.clone()),
            Paced::new(t, pacing.target.clone()),
        ),
        (Err(code), Ok(mut t)) => {
            t.logout().await;
            return Err(Failure::Connect(code));
        }
        (Ok(mut s), Err(code)) => {
            s.logout().await;
            return Err(Failure::Connect(code));
        }
        (Err(code), Err(_)) => return Err(Failure::Connect(code)),
    };
    tracing::debug!("both sides connected");
    // Special-use folders named differently on the target are written under its names.
    let (map, source_list, target_list) =
        match folder_map(&mut source, &mut target, &options.folder_rules).await {
            Ok((map, s, t)) => (Arc::new(map), s, t),
            Err(e) => {
                source.logout().await;
                target.logout().await;
                return Err(Failure::Engine(e.into()));
            }
        };
    // The pass starts from these listings (no second LIST).
    let identity = Arc::new(FolderMap::identity());
    let mut source = Mapped::with_listing(source, identity.clone(), source_list);
    let mut target = Mapped::with_listing(target, map.clone(), target_list);
    let more = MoreConnections {
        pair,
        target_access,
        map: map.clone(),
        identity,
        pacing,
    };
    let result = sync_into_with(
        &mut source,
        &mut target,
        &more,
        state,
        options,
        progress,
        summary,
    )
    .await;
    tokio::join!(source.logout(), target.logout());
    summary.notices.extend(map.describe());
    result.map_err(Failure::Engine)
}

/// Opens the extra connection pairs the engine asks for to work on folders concurrently. A
/// pair that cannot be opened (a per-user connection limit, say) just means fewer workers.
struct MoreConnections<'a> {
    pair: &'a Pair,
    target_access: Access,
    map: Arc<FolderMap>,
    identity: Arc<FolderMap>,
    pacing: &'a Pacings,
}

type Side = Mapped<Paced<AnyStore>>;

impl Connector<Side, Side> for MoreConnections<'_> {
    async fn connect_pair(&self) -> Option<(Side, Side)> {
        // Both logins at once: the pair's worker starts a round trip sooner.
        let (source, target) = tokio::join!(
            AnyStore::connect(&self.pair.source, Access::ReadOnly),
            AnyStore::connect(&self.pair.target, self.target_access)
        );
        match (source, target) {
            (Ok(s), Ok(t)) => Some((
                Mapped::new(
                    Paced::new(s, self.pacing.source.clone()),
                    self.identity.clone(),
                ),
                Mapped::new(Paced::new(t, self.pacing.target.clone()), self.map.clone()),
            )),
            (source, target) => {
                for (side, result) in [("source", source), ("target", target)] {
                    match result {
                        Ok(mut store) => store.logout().await,
                        Err(e) => tracing::debug!("no extra {side} connection: {e}"),
                    }
                }
                None
            }
        }
    }
}

/// What `sync --accept-regression` says when a running watch holds the state (`--json`).
#[derive(Debug, serde::Serialize)]
struct Handover {
    state_file: String,
    holder: String,
    /// The running watch took the confirmation.
    taken: bool,
    message: String,
}

/// `sync --accept-regression` while a `watch` holds the pair's state: the confirmation is left
/// beside the state for the running agent (see engine::watch), which thaws the pair and
/// replicates it again; no server is reached from here, so no password is needed. `None` when
/// no other process holds the state: the ordinary sync runs.
async fn confirm_to_running_watch(args: &SyncArgs) -> Option<ExitCode> {
    let (id, path) = match args.pair.state_only(args.state.as_deref()) {
        Ok(r) => r,
        Err(code) => return Some(code),
    };
    if !path.is_file() {
        return None;
    }
    let holder = match StateFile::open(&path, &id) {
        Err(StateError::Locked { holder, .. }) => holder,
        // Free (closed again at once), or an error the ordinary sync reports.
        _ => return None,
    };
    let shown = path.display();
    // What the running watch last recorded: a pair that is not frozen has nothing to confirm.
    let copy: Option<StatusCopy> = std::fs::read(status_path(&path))
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok());
    if copy.is_some_and(|c| c.frozen.is_none()) {
        return Some(handover(
            Handover {
                state_file: shown.to_string(),
                message: format!("nothing to confirm: {holder} replicates this pair and it is not frozen (see `mailreplica status --state {shown}`)"),
                holder,
                taken: false,
            },
            args.json,
        ));
    }
    // Not taken in time: withdrawn, so that it cannot confirm a later regression.
    let taken = match hand_to_watch(
        &accept_request_path(&path),
        || write_accept_request(&path),
        Untaken::Withdraw,
    )
    .await
    {
        Ok(taken) => taken,
        Err(e) => {
            eprintln!(
                "error: {holder} holds {shown} and the confirmation could not be written beside it ({e}); stop that process, run this command again, then start it again"
            );
            return Some(ExitCode::TempFail);
        }
    };
    if !taken {
        eprintln!(
            "error: {holder} holds {shown} but did not take the confirmation within {} s (a running watch takes it only while the pair is frozen: see `mailreplica status --state {shown}`); stop that process, run this command again, then start it again",
            WAIT.as_secs()
        );
        return Some(ExitCode::TempFail);
    }
    Some(handover(
        Handover {
            state_file: shown.to_string(),
            message: format!("{holder} took the confirmation: the pair is thawed; its next pass matches the folder's messages again by identity and replicates new mail; nothing is removed on the target (`mailreplica status --state {shown}` shows the pass)"),
            holder,
            taken: true,
        },
        args.json,
    ))
}

fn handover(out: Handover, json: bool) -> ExitCode {
    report(&out, &out.message, json)
}

/// Opens the state; with `rebuild`, empties it, or moves a damaged file aside and starts anew.
fn open_state(path: &Path, pair_id: &str, rebuild: bool) -> Result<StateFile, StateError> {
    match StateFile::open(path, pair_id) {
        Ok(state) => {
            if rebuild {
                state.reset()?;
            }
            Ok(state)
        }
        Err(StateError::Corrupt { .. }) if rebuild => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut aside = path.as_os_str().to_owned();
            aside.push(format!(".damaged-{secs}"));
            std::fs::rename(path, &aside).map_err(|e| StateError::Io {
                path: path.to_path_buf(),
                detail: format!("cannot move the damaged file aside: {e}"),
            })?;
            eprintln!(
                "note: moved the damaged state file to {}",
                Path::new(&aside).display()
            );
            StateFile::open(path, pair_id)
        }
        Err(e) => Err(e),
    }
}

/// Exponential backoff with jitter: base (MAILREPLICA_BACKOFF_MS, default 1 s) doubled per
/// attempt, at most a minute, +-25 %.
fn backoff(attempt: u32) -> Duration {
    let base_ms: u64 = std::env::var("MAILREPLICA_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let exp = base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(16))
        .min(60_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let jitter = exp / 4;
    let spread = if jitter == 0 {
        0
    } else {
        nanos % (2 * jitter + 1)
    };
    Duration::from_millis(exp - jitter + spread)
}

/// The one line about the run's pace: the limit in effect and what waiting it cost, and how
/// often a server asked to slow down.
fn pace_line(p: &PaceReport) -> String {
    let limit = p.limit.as_ref().map(|l| {
        format!(
            "rate limit on the target: {l}; uploads waited {:.1} s for it (summed over connections)",
            p.limit_wait_seconds
        )
    });
    let backoff = (p.server_backoffs > 0).then(|| {
        format!(
            "the servers asked to slow down {} time(s): waited {:.1} s and sent the commands again",
            p.server_backoffs, p.server_backoff_seconds
        )
    });
    match (limit, backoff) {
        (Some(l), Some(b)) => format!("{l}; {b}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => "no rate limit".into(),
    }
}

fn print_summary(s: &SyncSummary) {
    for action in &s.actions {
        println!("would {action}");
    }
    let verb = if s.dry_run { "dry run" } else { "synced" };
    println!(
        "{verb} {} -> {}: {} folder(s) ({} unchanged), {} created, {} renamed, {} deleted; {} message(s) uploaded ({} of {} placed), {} copied on the target, {} moved, {} adopted, {} flag update(s), {} removed, {} removal(s) held; {:.1} s",
        s.source,
        s.target,
        s.folders,
        s.folders_unchanged,
        s.folders_created,
        s.folders_renamed,
        s.folders_deleted,
        s.copied,
        human_bytes(s.bytes_uploaded),
        human_bytes(s.bytes_placed),
        s.copied_on_target,
        s.moved,
        s.adopted,
        s.flags_updated,
        s.removed,
        s.removals_held,
        s.seconds
    );
    if s.target_only > 0 {
        println!(
            "{} message(s) exist only on the target and were left alone",
            s.target_only
        );
    }
    if let Some(pace) = &s.pace {
        println!("{}", pace_line(pace));
    }
    for note in &s.notices {
        println!("note: {note}");
    }
    if s.refused_waiting > 0 {
        println!(
            "{} message(s) refused by the target earlier are not tried again before a day has passed (`mailreplica status` lists them)",
            s.refused_waiting
        );
    }
    if !s.folder_reports.is_empty() {
        println!("folder: on the source / copied now / skipped / refused / on the target");
        for r in &s.folder_reports {
            println!(
                "  {}: {} / {} / {} / {} / {}",
                r.folder, r.source, r.copied, r.skipped, r.refused, r.on_target
            );
        }
    }
    for k in &s.skipped {
        println!("skipped: {k}");
    }
    if s.folders_excluded > 0 || s.skipped_by_selection > 0 {
        println!(
            "left out by the selection: {} folder(s), {} message(s)",
            s.folders_excluded, s.skipped_by_selection
        );
    }
    for r in &s.refused {
        println!("refused: {r}");
    }
    for n in &s.fidelity_notes {
        println!("fidelity note: {n}");
    }
    for g in &s.gave_up {
        println!("gave up: {g}");
    }
    for q in &s.quarantined {
        println!("quarantined: {q}");
    }
    if s.accepted_invalid > 0 {
        println!(
            "{} message(s) failed validation and were uploaded anyway (--accept-invalid)",
            s.accepted_invalid
        );
    }
    if s.removals_held > 0 {
        println!("attention: removals were held; check the source, then run again with --allow-deletions to apply them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        std::env::remove_var("MAILREPLICA_BACKOFF_MS");
        let first = backoff(1);
        assert!(
            first >= Duration::from_millis(750) && first <= Duration::from_millis(1250),
            "{first:?}"
        );
        let third = backoff(3);
        assert!(
            third >= Duration::from_millis(3000) && third <= Duration::from_millis(5000),
            "{third:?}"
        );
        assert!(backoff(40) <= Duration::from_millis(75_000));
    }
}
