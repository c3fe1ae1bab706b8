//! The watch agent of one pair: a pass at start, then a pass whenever the primary reports a
//! change (IDLE) or the poll interval elapses, until told to stop.
//!
//! - **Passes** are the one-shot sync pass (`sync_into_with`) over one connection per side,
//!   kept open between passes. It is cheap when nothing changed: LIST-STATUS tokens skip every
//!   unchanged folder.
//! - **Debounce** is leading-edge: the first change notice starts a pass at once; notices that
//!   arrive while it runs are coalesced into one more pass right after it (a `Notify` holds at
//!   most one permit).
//! - **Connections** on the primary: the IDLE connection plus the pass's one (DESIGN.md: 2 in
//!   watch).
//! - **Outages**: a failed connect or pass drops the pass connections and retries with
//!   exponential backoff (capped); an IDLE connection that fails is reopened the same way. The
//!   outage is logged once when it starts and once when it ends; nothing ends the agent but
//!   the stop signal.
//! - **Frozen** (the primary went back in time): the agent stops passing and idling, says why,
//!   and waits for the user's confirmation or the stop signal; the rest of the process goes on.
//!   `sync --accept-regression` cannot open the state the watch holds, so it leaves the
//!   confirmation beside it ([`accept_request_path`]); the agent takes it, runs its next pass
//!   accepting the regression (the folder is matched again by identity, nothing is removed on
//!   the target) and goes back to watching. Like failover's request, a file needs no listener.
//! - **Stop**: a running pass gets `grace` to finish, then is dropped. Dropping it is safe at
//!   any await point: an upload batch is journaled before it is sent and resolved by the next
//!   pass (engine::recover); the state is flushed before the agent returns.
//!
//! What the agent knows about itself (last successful pass, last error, outage) is kept in
//! the state's meta table under [`WATCH_META`], and copied after every pass to a small JSON
//! file beside the state ([`status_path`]): the running watch holds the state file, so
//! `status` reads that copy while it runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::events::NoEvents;
use super::summary::SyncSummary;
use super::sync::{sync_into_with, SyncOptions};
use super::workers::NoConnector;
use super::EngineError;
use crate::mailstore::{MailStore, StoreError};
use crate::state::StateFile;

/// Meta key of the agent's record ([`WatchRecord`]).
pub const WATCH_META: &str = "watch";

/// Timing of an agent.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// A full (cheap) pass at least this often, IDLE or not.
    pub poll: Duration,
    /// IDLE is ended and started again this often (RFC 2177: at most 29 min).
    pub idle_renew: Duration,
    /// First retry delay after a failure; doubled per consecutive failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_cap: Duration,
    /// How long a running pass may go on after the stop signal before it is dropped.
    pub grace: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            poll: Duration::from_secs(60),
            idle_renew: Duration::from_secs(600),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            grace: Duration::from_secs(3),
        }
    }
}

/// How an agent reaches its two sides. The CLI implements it over IMAP; the engine only
/// decides when to use it.
#[allow(async_fn_in_trait)]
pub trait Link {
    type Source: MailStore;
    type Target: MailStore;
    /// Opens one connection to each side for passes.
    async fn connect(&self) -> Result<(Self::Source, Self::Target), StoreError>;
    /// Whether pass connections stay open between passes (else closed after each).
    fn keep_open(&self) -> bool {
        true
    }
    /// Called when the pass connections are closed or dropped.
    fn release(&self) {}
    /// Opens a connection to the primary and waits there for changes (IDLE), calling
    /// `on_change` once when it starts listening (changes made while nobody listened are
    /// found by a pass) and then for each change, until `stop` completes (`Ok(true)`).
    /// `Ok(false)`: the primary cannot notify (no IDLE, or no connection to spare; the link
    /// says why in the log); the agent polls only. `Err`: the connection failed.
    async fn watch_changes(
        &self,
        on_change: &dyn Fn(),
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<bool, StoreError>;
}

/// How an agent ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEnd {
    /// Stopped by the signal.
    Stopped,
}

/// What the agent records about itself in the state, for `status`. Unix seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchRecord {
    /// The end of the last pass that succeeded.
    pub last_success: Option<u64>,
    /// The start of the last pass that succeeded: every change on the primary before it is
    /// on the recovery side (the lag is measured from here).
    pub last_success_started: Option<u64>,
    /// The last error, cleared by the next successful pass.
    pub last_error: Option<String>,
    /// When the current outage began (first failure since the last success).
    pub outage_since: Option<u64>,
    /// Consecutive failed passes.
    pub failures: u32,
    /// Passes this process ran for the pair, and how many changed something.
    pub passes: u64,
    pub passes_with_changes: u64,
    /// The pid of the watch that wrote this record.
    pub pid: u32,
}

/// What `status` reads while a watch holds the state: `<state>.status.json`.
pub fn status_path(state: &std::path::Path) -> std::path::PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".status.json");
    std::path::PathBuf::from(name)
}

/// The status file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusCopy {
    pub pair: String,
    pub watch: WatchRecord,
    /// The last successful pass's summary, as `sync --json` prints it.
    pub last_pass: Option<serde_json::Value>,
    /// Why the pair is frozen, when it is.
    pub frozen: Option<String>,
    /// Unix seconds when this file was written.
    pub written_at: u64,
}

/// One pair's agent.
pub struct Agent<L: Link> {
    /// The pair's name in logs.
    pub name: String,
    pub link: L,
    /// The pair's state, open (and locked) for the agent's lifetime.
    pub state: StateFile,
    pub options: SyncOptions,
    pub settings: WatchSettings,
}

/// Waits until the channel says `true` (or its sender is gone).
pub async fn until_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Exponential backoff with +-25 % jitter: `base` doubled per consecutive failure, at most `cap`.
pub fn backoff(failures: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(cap);
    let ms = exp.as_millis() as u64;
    let jitter = ms / 4;
    if jitter == 0 {
        return exp;
    }
    static SEED: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0)
        .wrapping_add(SEED.fetch_add(7919, Ordering::Relaxed));
    Duration::from_millis(ms - jitter + nanos % (2 * jitter + 1))
}

/// Sleeps `delay` unless stopped first; true when stopped.
async fn sleep_or_stop(delay: Duration, stop: &watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = until_true(stop.clone()) => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

impl<L: Link> Agent<L> {
    /// Runs until `stop` says true. Never returns an error: failures are logged, recorded in
    /// the state and retried.
    pub async fn run(self, stop: watch::Receiver<bool>) -> AgentEnd {
        let changed = Notify::new();
        // Set when the agent must stop idling before the stop signal (a frozen pair).
        let (idle_off_tx, idle_off) = watch::channel(false);
        let passes = self.pass_loop(&changed, &stop, &idle_off_tx);
        let idle = self.idle_loop(&changed, &stop, idle_off);
        let (end, ()) = futures::future::join(passes, idle).await;
        end
    }

    async fn idle_loop(
        &self,
        changed: &Notify,
        stop: &watch::Receiver<bool>,
        idle_off: watch::Receiver<bool>,
    ) {
        let name = &self.name;
        let mut failures: u32 = 0;
        let halted = || {
            let stop = stop.clone();
            let idle_off = idle_off.clone();
            async move {
                tokio::select! {
                    _ = until_true(stop) => {},
                    _ = until_true(idle_off) => {},
                }
            }
        };
        loop {
            if *stop.borrow() {
                return;
            }
            if *idle_off.borrow() {
                // Paused (a frozen pair): idle again once the pair is thawed.
                let mut off = idle_off.clone();
                tokio::select! {
                    _ = until_true(stop.clone()) => return,
                    _ = off.wait_for(|v| !*v) => {}
                }
                failures = 0;
                continue;
            }
            let heard = std::cell::Cell::new(false);
            let on_change = || {
                heard.set(true);
                changed.notify_one();
            };
            let began = Instant::now();
            match self.link.watch_changes(&on_change, halted()).await {
                // Stopped or paused: the top of the loop tells which.
                Ok(true) => continue,
                Ok(false) => {
                    tracing::info!(
                        pair = %name,
                        "no change notification: polling every {} s",
                        self.settings.poll.as_secs()
                    );
                    halted().await;
                    continue;
                }
                Err(e) => {
                    // A session that worked (reported a change, or lasted longer than the
                    // longest delay) starts the count again.
                    if heard.get() || began.elapsed() > self.settings.backoff_cap {
                        failures = 0;
                    }
                    failures += 1;
                    let delay = backoff(
                        failures,
                        self.settings.backoff_base,
                        self.settings.backoff_cap,
                    );
                    if failures == 1 {
                        tracing::warn!(
                            pair = %name,
                            "change notification (IDLE or JMAP push) on the primary lost: {e}; reconnecting in {:.1} s (polling goes on)",
                            delay.as_secs_f64()
                        );
                    } else {
                        tracing::info!(
                            pair = %name,
                            failures,
                            "change notification (IDLE or JMAP push) still unavailable: {e}; reconnecting in {:.1} s",
                            delay.as_secs_f64()
                        );
                    }
                    // Changes made while the link was down are only found by a pass.
                    changed.notify_one();
                    tokio::select! {
                        // Stopped or paused: the top of the loop tells which.
                        _ = halted() => {},
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn pass_loop(
        &self,
        changed: &Notify,
        stop: &watch::Receiver<bool>,
        idle_off: &watch::Sender<bool>,
    ) -> AgentEnd {
        let name = &self.name;
        let mut conns: Option<(L::Source, L::Target)> = None;
        let mut record = self.load_record();
        let mut next_poll = Instant::now();
        let request = super::failover::request_path(self.state.path());
        // Passes after the user confirmed a regression accept it, until one succeeds.
        let thawing = SyncOptions {
            accept_regression: true,
            ..self.options.clone()
        };
        let mut accept = false;
        loop {
            tokio::select! {
                biased;
                _ = until_true(stop.clone()) => break,
                _ = changed.notified() => {},
                _ = tokio::time::sleep_until(next_poll) => {},
                _ = appears(&request) => {},
            }
            // A failover (requested by `failover` beside the state, or recorded) stops the
            // pair before anything is connected: the primary may well be down.
            if let Err(EngineError::FailedOver(mark)) =
                super::failover::refuse_if_failed_over(&self.state)
            {
                tracing::warn!(pair = %name, "{mark}. This pair is no longer replicated; other pairs go on");
                record.last_error = Some(mark.to_string());
                self.save(&record);
                let _ = idle_off.send(true);
                self.close(conns.take()).await;
                until_true(stop.clone()).await;
                break;
            }
            let started = Instant::now();
            let started_unix = now_secs();
            next_poll = started + self.settings.poll;
            if conns.is_none() {
                let connected = tokio::select! {
                    _ = until_true(stop.clone()) => break,
                    c = self.link.connect() => c,
                };
                match connected {
                    Ok(c) => conns = Some(c),
                    Err(e) => {
                        if self.failed(&mut record, &e.to_string(), stop).await {
                            break;
                        }
                        next_poll = Instant::now();
                        continue;
                    }
                }
            }
            let Some((source, target)) = conns.as_mut() else {
                continue;
            };
            let mut summary = SyncSummary::default();
            let outcome = {
                let pass = sync_into_with(
                    source,
                    target,
                    &NoConnector,
                    &self.state,
                    if accept { &thawing } else { &self.options },
                    &NoEvents,
                    &mut summary,
                );
                tokio::pin!(pass);
                let first = tokio::select! {
                    r = &mut pass => Some(r),
                    _ = until_true(stop.clone()) => None,
                };
                match first {
                    Some(r) => Some(r),
                    None => tokio::time::timeout(self.settings.grace, &mut pass)
                        .await
                        .ok(),
                }
            };
            let Some(result) = outcome else {
                tracing::info!(
                    pair = %name,
                    "stopped in the middle of a pass; the next run resolves the batch it left"
                );
                break;
            };
            match result {
                Ok(()) => {
                    accept = false;
                    let ms = started.elapsed().as_millis();
                    self.succeeded(&mut record, &mut summary, started_unix, ms);
                    if !self.link.keep_open() || !leave_folders(conns.as_mut()).await {
                        self.close(conns.take()).await;
                    }
                }
                Err(EngineError::Frozen(frozen)) => {
                    tracing::error!(
                        pair = %name,
                        "{frozen}. This pair is no longer replicated until you confirm (`mailreplica sync --accept-regression` with this pair's --source, --target and --state {} reaches this running watch); other pairs go on",
                        self.state.path().display()
                    );
                    record.last_error = Some(frozen.to_string());
                    self.save(&record);
                    let _ = idle_off.send(true);
                    self.close(conns.take()).await;
                    match self.wait_while_frozen(stop, &request).await {
                        WhileFrozen::Stopped => break,
                        WhileFrozen::Confirmed => {
                            tracing::warn!(
                                pair = %name,
                                "regression confirmed: the next pass matches the folder's messages again by identity and replicates new mail; nothing is removed on the target"
                            );
                            accept = true;
                            let _ = idle_off.send(false);
                        }
                        // Taken at the top of the loop, before anything is connected.
                        WhileFrozen::FailoverRequested => {}
                    }
                    next_poll = Instant::now();
                }
                Err(e) => {
                    // Out of step or dead after an error: dropped, never reused.
                    conns = None;
                    self.link.release();
                    if self.failed(&mut record, &e.to_string(), stop).await {
                        break;
                    }
                    next_poll = Instant::now();
                }
            }
        }
        self.close(conns.take()).await;
        if let Err(e) = self.state.flush() {
            tracing::error!(pair = %name, "cannot flush the state: {e}");
        }
        AgentEnd::Stopped
    }

    /// A frozen pair waits here for the user: a confirmation left by `sync
    /// --accept-regression`, a failover request, or the stop signal.
    async fn wait_while_frozen(
        &self,
        stop: &watch::Receiver<bool>,
        failover: &std::path::Path,
    ) -> WhileFrozen {
        let confirmation = accept_request_path(self.state.path());
        loop {
            tokio::select! {
                biased;
                _ = until_true(stop.clone()) => return WhileFrozen::Stopped,
                _ = appears(failover) => return WhileFrozen::FailoverRequested,
                _ = appears(&confirmation) => {}
            }
            match take_accept_request(&confirmation) {
                Ok(()) => return WhileFrozen::Confirmed,
                Err(Ignored { why, removed: true }) => {
                    tracing::warn!(pair = %self.name, "ignored {}: {why}", confirmation.display());
                }
                Err(Ignored {
                    why,
                    removed: false,
                }) => {
                    tracing::error!(
                        pair = %self.name,
                        "ignored {}: {why}; confirmations are not taken until this watch is restarted",
                        confirmation.display()
                    );
                    tokio::select! {
                        biased;
                        _ = until_true(stop.clone()) => return WhileFrozen::Stopped,
                        _ = appears(failover) => return WhileFrozen::FailoverRequested,
                    }
                }
            }
        }
    }

    /// Logs out of the pass connections (briefly: the server needs no goodbye) and gives
    /// their permits back.
    async fn close(&self, conns: Option<(L::Source, L::Target)>) {
        if let Some((mut s, mut t)) = conns {
            let bye = async {
                s.logout().await;
                t.logout().await;
            };
            let _ = tokio::time::timeout(Duration::from_millis(500), bye).await;
        }
        self.link.release();
    }

    /// One pass (`watch --once`): connect, sync, record the outcome like a watch pass would.
    pub async fn run_once(&self) -> Result<SyncSummary, EngineError> {
        let mut record = self.load_record();
        let started = Instant::now();
        let started_unix = now_secs();
        let (mut source, mut target) = match self.link.connect().await {
            Ok(c) => c,
            Err(e) => {
                self.record_failure(&mut record, &e.to_string());
                return Err(e.into());
            }
        };
        let mut summary = SyncSummary::default();
        let result = sync_into_with(
            &mut source,
            &mut target,
            &NoConnector,
            &self.state,
            &self.options,
            &NoEvents,
            &mut summary,
        )
        .await;
        self.close(Some((source, target))).await;
        match result {
            Ok(()) => {
                let ms = started.elapsed().as_millis();
                self.succeeded(&mut record, &mut summary, started_unix, ms);
                Ok(summary)
            }
            Err(e) => {
                self.record_failure(&mut record, &e.to_string());
                Err(e)
            }
        }
    }

    fn load_record(&self) -> WatchRecord {
        WatchRecord {
            pid: std::process::id(),
            ..self
                .state
                .meta(WATCH_META)
                .ok()
                .flatten()
                .and_then(|raw| serde_json::from_slice(&raw).ok())
                .unwrap_or_default()
        }
    }

    fn record_failure(&self, record: &mut WatchRecord, error: &str) {
        record.failures += 1;
        record.last_error = Some(error.to_string());
        if record.outage_since.is_none() {
            record.outage_since = Some(now_secs());
        }
        self.save(record);
    }

    /// Records a failure, logs the start of an outage, and waits out the backoff. True when
    /// stopped while waiting.
    async fn failed(
        &self,
        record: &mut WatchRecord,
        error: &str,
        stop: &watch::Receiver<bool>,
    ) -> bool {
        self.record_failure(record, error);
        let delay = backoff(
            record.failures,
            self.settings.backoff_base,
            self.settings.backoff_cap,
        );
        if record.failures == 1 {
            tracing::warn!(pair = %self.name, "pass failed: {error}; retrying in {:.1} s, then with growing delays (at most {} s)", delay.as_secs_f64(), self.settings.backoff_cap.as_secs());
        } else {
            tracing::info!(pair = %self.name, failures = record.failures, "pass failed again: {error}; retrying in {:.1} s", delay.as_secs_f64());
        }
        sleep_or_stop(delay, stop).await
    }

    fn succeeded(
        &self,
        record: &mut WatchRecord,
        summary: &mut SyncSummary,
        started: u64,
        ms: u128,
    ) {
        let name = &self.name;
        if let Some(since) = record.outage_since.take() {
            tracing::warn!(
                pair = %name,
                "recovered after {} failed attempt(s) over {} s",
                record.failures,
                now_secs().saturating_sub(since)
            );
        }
        record.failures = 0;
        record.last_error = None;
        record.last_success = Some(now_secs());
        record.last_success_started = Some(started);
        record.passes += 1;
        summary.finished_at = now_secs();
        if changed_something(summary) {
            record.passes_with_changes += 1;
            tracing::info!(
                pair = %name,
                folders = summary.folders - summary.folders_unchanged,
                uploaded = summary.copied,
                copied_on_target = summary.copied_on_target,
                moved = summary.moved,
                adopted = summary.adopted,
                flags = summary.flags_updated,
                removed = summary.removed,
                held = summary.removals_held,
                folders_created = summary.folders_created,
                folders_renamed = summary.folders_renamed,
                folders_deleted = summary.folders_deleted,
                ms = ms as u64,
                "pass applied changes"
            );
        } else {
            tracing::debug!(pair = %name, ms = ms as u64, "pass: nothing changed");
        }
        for note in &summary.notices {
            tracing::info!(pair = %name, "{note}");
        }
        if summary.needs_attention() {
            tracing::warn!(
                pair = %name,
                held = summary.removals_held,
                quarantined = summary.quarantined.len(),
                refused = summary.refused.len(),
                gave_up = summary.gave_up.len(),
                "attention: held removals or messages not replicated; see `mailreplica status`"
            );
        }
        if let Ok(json) = serde_json::to_vec(&*summary) {
            if let Err(e) = self.state.set_meta("last_pass", &json) {
                tracing::error!(pair = %name, "cannot record the pass in the state: {e}");
            }
        }
        self.save(record);
    }

    fn save(&self, record: &WatchRecord) {
        if let Ok(json) = serde_json::to_vec(record) {
            if let Err(e) = self.state.set_meta(WATCH_META, &json) {
                tracing::error!(pair = %self.name, "cannot record the agent's status in the state: {e}");
            }
        }
        let copy = StatusCopy {
            pair: self.name.clone(),
            watch: record.clone(),
            last_pass: self
                .state
                .meta("last_pass")
                .ok()
                .flatten()
                .and_then(|raw| serde_json::from_slice(&raw).ok()),
            frozen: self
                .state
                .frozen()
                .ok()
                .flatten()
                .map(|raw| super::Frozen::from_raw(&raw).to_string()),
            written_at: now_secs(),
        };
        let path = status_path(self.state.path());
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let written = serde_json::to_vec_pretty(&copy)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&tmp, json))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(pair = %self.name, "cannot write {}: {e}", path.display());
        }
    }
}

/// Leaves the folders the pass connections have open. A server answers STATUS (so
/// LIST-STATUS) for the selected folder from the session's own view, which only a command on
/// that folder refreshes (Dovecot does): a kept connection with INBOX selected would read INBOX
/// as unchanged pass after pass. False when the connections cannot leave their folders (no
/// UNSELECT, or an error): they must not be reused.
async fn leave_folders<S: MailStore, T: MailStore>(conns: Option<&mut (S, T)>) -> bool {
    let Some((source, target)) = conns else {
        return false;
    };
    if !(source.capabilities().has("UNSELECT") && target.capabilities().has("UNSELECT")) {
        return false;
    }
    source.close_folder().await.is_ok() && target.close_folder().await.is_ok()
}

/// True when a pass wrote anything to the target or held something back.
pub fn changed_something(s: &SyncSummary) -> bool {
    s.copied
        + s.copied_on_target
        + s.moved
        + s.adopted
        + s.flags_updated
        + s.removed
        + s.removals_held
        + s.folders_created
        + s.folders_renamed
        + s.folders_deleted
        > 0
}

/// What ended the wait of a frozen pair.
enum WhileFrozen {
    Stopped,
    Confirmed,
    FailoverRequested,
}

/// The confirmation of a regression that `sync --accept-regression` leaves beside a state a
/// running watch holds: `<state>.accept-regression`.
pub fn accept_request_path(state: &std::path::Path) -> std::path::PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".accept-regression");
    std::path::PathBuf::from(name)
}

/// How long a confirmation stays valid, in seconds. The command that leaves it waits far less
/// and removes it when the agent did not take it: an older one was left by a command that
/// died, and must not confirm a regression nobody has looked at yet.
pub const ACCEPT_REQUEST_TTL: u64 = 120;

/// The confirmation file's content.
#[derive(Debug, Serialize, Deserialize)]
struct AcceptRequest {
    /// Unix seconds.
    requested_at: u64,
    /// The pid of the command that left it.
    pid: u32,
}

/// Leaves a confirmation for the agent holding the state (written whole, then renamed).
pub fn write_accept_request(state: &std::path::Path) -> std::io::Result<()> {
    let path = accept_request_path(state);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let raw = serde_json::to_vec(&AcceptRequest {
        requested_at: now_secs(),
        pid: std::process::id(),
    })
    .map_err(std::io::Error::other)?;
    std::fs::write(&tmp, raw)?;
    std::fs::rename(&tmp, &path)
}

/// A confirmation file that does not count, and why.
struct Ignored {
    why: String,
    /// False when it could not be removed (it would be found again and again).
    removed: bool,
}

/// Takes (removes) a confirmation; `Err` when it does not count: unreadable, too old, or it
/// cannot be removed (it would then confirm again later).
fn take_accept_request(path: &std::path::Path) -> Result<(), Ignored> {
    let read = std::fs::read(path);
    if let Err(e) = std::fs::remove_file(path) {
        return Err(Ignored {
            why: format!("cannot remove it ({e}); remove it by hand"),
            removed: false,
        });
    }
    let ignored = |why: String| Ignored { why, removed: true };
    let raw = read.map_err(|e| ignored(format!("cannot read it: {e}")))?;
    let request: AcceptRequest = serde_json::from_slice(&raw)
        .map_err(|e| ignored(format!("not a confirmation left by mailreplica ({e})")))?;
    let age = now_secs().saturating_sub(request.requested_at);
    if age > ACCEPT_REQUEST_TTL {
        return Err(ignored(format!(
            "left {age} s ago by process {}, which did not wait for it; run `mailreplica sync --accept-regression` again to confirm",
            request.pid
        )));
    }
    Ok(())
}

/// Completes once `path` exists (checked twice a second).
async fn appears(path: &std::path::Path) {
    loop {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_is_taken_once_and_only_while_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("pair.redb");
        let path = accept_request_path(&state);
        assert!(path
            .display()
            .to_string()
            .ends_with("pair.redb.accept-regression"));
        write_accept_request(&state).unwrap();
        assert!(take_accept_request(&path).is_ok());
        assert!(!path.exists(), "taken once");
        // Left long ago by a command that died: removed, not taken.
        let old = AcceptRequest {
            requested_at: now_secs() - ACCEPT_REQUEST_TTL - 10,
            pid: 1,
        };
        std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
        let ignored = take_accept_request(&path).unwrap_err();
        assert!(
            ignored.removed && ignored.why.contains("again"),
            "{}",
            ignored.why
        );
        assert!(!path.exists());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(take_accept_request(&path).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        let first = backoff(1, base, cap);
        assert!(first >= Duration::from_millis(750) && first <= Duration::from_millis(1250));
        let fourth = backoff(4, base, cap);
        assert!(fourth >= Duration::from_secs(6) && fourth <= Duration::from_secs(10));
        assert!(backoff(30, base, cap) <= Duration::from_secs(75));
        assert!(backoff(30, base, cap) >= Duration::from_secs(45));
    }
}
