//! `mailreplica watch`: one agent (tokio task) per pair until SIGTERM/SIGINT, or one pass of
//! each pair with `--once`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::args::WatchArgs;
use super::exit::ExitCode;
use crate::config::SideConfig;
use crate::engine::mapped::{folder_map, Mapped};
use crate::engine::paced::{Paced, Pacing};
use crate::engine::sync::SyncOptions;
use crate::engine::watch::{Agent, Link, WatchSettings};
use crate::mailstore::any::AnyStore;
use crate::mailstore::imap::ImapStore;
use crate::mailstore::jmap::push::{PushOptions, PushOutcome};
use crate::mailstore::jmap::JmapStore;
use crate::mailstore::{Access, MailStore, StoreError};
use crate::model::FolderPath;
use crate::reconcile::Policy;
use crate::state::StateFile;

/// How long the process waits for its agents after the stop signal (the promise is 5 s).
const STOP_DEADLINE: Duration = Duration::from_millis(4500);

/// The poll interval of a pair whose primary is JMAP, unless one is configured.
const JMAP_POLL: Duration = Duration::from_secs(5);

/// The ping interval asked of a JMAP primary's event stream.
const JMAP_PUSH_PING: Duration = Duration::from_secs(30);

pub struct WatchCommand {
    pub args: WatchArgs,
}

/// One pair, resolved and ready to run.
pub struct PairPlan {
    /// The pair's name in logs and `status` (the config's name, or the pair id).
    pub name: String,
    pub id: String,
    pub source: SideConfig,
    pub target: SideConfig,
    /// The servers' names in the configuration file (connection limits are per server).
    pub source_server: Option<String>,
    pub target_server: Option<String>,
    pub state: PathBuf,
    pub allow_deletions: bool,
}

/// Connection budgets of the servers of a configuration file: half of `max_connections` (at
/// least one) for IDLE, the rest for passes. Pairs wait for a pass permit in turn (the
/// semaphore is fair), so a busy or failing pair cannot starve the others.
#[derive(Default)]
struct Budgets {
    idle: BTreeMap<String, Arc<Semaphore>>,
    pass: BTreeMap<String, Arc<Semaphore>>,
}

impl Budgets {
    fn new(max: &BTreeMap<String, u32>) -> Budgets {
        let mut b = Budgets::default();
        for (server, &n) in max {
            let idle = (n / 2).max(1) as usize;
            let pass = (n as usize).saturating_sub(idle).max(1);
            b.idle
                .insert(server.clone(), Arc::new(Semaphore::new(idle)));
            b.pass
                .insert(server.clone(), Arc::new(Semaphore::new(pass)));
        }
        b
    }
}

impl WatchCommand {
    pub async fn execute(self) -> ExitCode {
        let args = &self.args;
        let (plans, file, max_connections) = match self.plans() {
            Ok(p) => p,
            Err(code) => return code,
        };
        let poll_interval = args.poll_interval.or(file.poll_interval);
        let settings = WatchSettings {
            poll: Duration::from_secs(poll_interval.unwrap_or(60)),
            idle_renew: Duration::from_secs(args.idle_renew.or(file.idle_renew).unwrap_or(600)),
            backoff_base: backoff_base(),
            backoff_cap: backoff_cap(),
            ..WatchSettings::default()
        };
        let idle = !args.no_idle && file.idle.unwrap_or(true);
        let budgets = Budgets::new(&max_connections);
        let budget = |server: &Option<String>, of: &BTreeMap<String, Arc<Semaphore>>| {
            server.as_ref().and_then(|s| of.get(s)).cloned()
        };
        // Every state is opened, so locked, before anything runs: an overlapping run stops
        // here with the holder's pid.
        let mut agents = Vec::with_capacity(plans.len());
        for plan in plans {
            let state = match StateFile::open(&plan.state, &plan.id) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: pair {}: {e}", plan.name);
                    return ExitCode::of_state(&e);
                }
            };
            // Polling a JMAP primary is cheap (Mailbox/get and Email/changes when nothing
            // changed), so it is done often unless told otherwise.
            let poll = match poll_interval {
                None if plan.source.endpoint.scheme.is_jmap() => JMAP_POLL,
                _ => settings.poll,
            };
            agents.push(Agent {
                name: plan.name,
                link: ImapLink {
                    idle_budget: budget(&plan.source_server, &budgets.idle),
                    pass_budgets: [
                        (
                            plan.source_server.clone(),
                            budget(&plan.source_server, &budgets.pass),
                        ),
                        (
                            plan.target_server.clone(),
                            budget(&plan.target_server, &budgets.pass),
                        ),
                    ],
                    held: RefCell::new(Vec::new()),
                    pacing: [Pacing::unlimited(), Pacing::unlimited()],
                    source: plan.source,
                    target: plan.target,
                    idle,
                    renew: settings.idle_renew,
                    poll,
                },
                state,
                options: SyncOptions {
                    policy: Policy {
                        allow_deletions: plan.allow_deletions,
                    },
                    // The primary's cap in watch is 2: the IDLE connection and this one.
                    connections: 1,
                    ..SyncOptions::default()
                },
                settings: WatchSettings {
                    poll,
                    ..settings.clone()
                },
            });
        }
        if args.once {
            run_once(agents).await
        } else {
            run_until_stopped(agents).await
        }
    }

    /// The pairs, the file's [watch] settings and its connection limits.
    #[allow(clippy::type_complexity)]
    fn plans(
        &self,
    ) -> Result<
        (
            Vec<PairPlan>,
            crate::config::WatchSection,
            BTreeMap<String, u32>,
        ),
        ExitCode,
    > {
        let args = &self.args;
        if let Some(path) = &args.config {
            let planned = super::watch_config::plans(path, true)?;
            return Ok((planned.pairs, planned.watch, planned.max_connections));
        }
        let Some(pair) = &args.pair else {
            eprintln!(
                "error: watch needs --config FILE, or --source URL and --target URL for one pair"
            );
            return Err(ExitCode::Usage);
        };
        let (resolved, id, state) = pair.resolve_with_state(args.state.as_deref())?;
        let plan = PairPlan {
            name: id.clone(),
            id,
            source: resolved.source,
            target: resolved.target,
            source_server: None,
            target_server: None,
            state,
            allow_deletions: args.allow_deletions,
        };
        Ok((vec![plan], Default::default(), BTreeMap::new()))
    }
}

/// `MAILREPLICA_BACKOFF_MS` (tests) or 1 s.
fn backoff_base() -> Duration {
    env_ms("MAILREPLICA_BACKOFF_MS").unwrap_or(Duration::from_secs(1))
}

/// `MAILREPLICA_BACKOFF_CAP_MS` (tests: an outage of a few seconds is caught up at once) or
/// the default (60 s).
fn backoff_cap() -> Duration {
    env_ms("MAILREPLICA_BACKOFF_CAP_MS").unwrap_or(WatchSettings::default().backoff_cap)
}

fn env_ms(var: &str) -> Option<Duration> {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

/// One pass of every pair, concurrently; the exit code of the worst outcome.
async fn run_once(agents: Vec<Agent<ImapLink>>) -> ExitCode {
    let results = futures::future::join_all(agents.iter().map(|a| a.run_once())).await;
    let mut code = ExitCode::InSync;
    for (agent, result) in agents.iter().zip(results) {
        match result {
            Ok(summary) => {
                println!(
                    "{}: {} folder(s), {} unchanged; {} uploaded, {} copied on the target, {} moved, {} flag update(s), {} removed, {} removal(s) held; {:.1} s",
                    agent.name,
                    summary.folders,
                    summary.folders_unchanged,
                    summary.copied,
                    summary.copied_on_target,
                    summary.moved,
                    summary.flags_updated,
                    summary.removed,
                    summary.removals_held,
                    summary.seconds
                );
                if summary.needs_attention() && code == ExitCode::InSync {
                    code = ExitCode::Attention;
                }
            }
            Err(e) => {
                eprintln!("error: pair {}: {e}", agent.name);
                let this = ExitCode::of_engine(&e);
                // An error outranks "needs attention"; the first error decides.
                if matches!(code, ExitCode::InSync | ExitCode::Attention) {
                    code = this;
                }
            }
        }
    }
    code
}

/// Runs every agent until SIGTERM or SIGINT, then stops them within the deadline.
async fn run_until_stopped(agents: Vec<Agent<ImapLink>>) -> ExitCode {
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = match StopSignals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen for SIGTERM/SIGINT: {e}");
            return ExitCode::TempFail;
        }
    };
    tracing::info!(pairs = agents.len(), "watch started");
    let local = tokio::task::LocalSet::new();
    let handles: Vec<_> = agents
        .into_iter()
        .map(|agent| {
            let stop = stop_rx.clone();
            // The sync pass shares per-pass state in RefCells, so agents are local tasks: one
            // thread, overlapping I/O.
            local.spawn_local(agent.run(stop))
        })
        .collect();
    local
        .run_until(async move {
            let which = signals.wait().await;
            tracing::info!("{which} received: stopping");
            let _ = stop_tx.send(true);
            let all = futures::future::join_all(handles);
            if tokio::time::timeout(STOP_DEADLINE, all).await.is_err() {
                tracing::warn!("some agents did not stop in time; their passes are abandoned (resolved by the next run)");
            }
        })
        .await;
    // Agents still running are dropped with the LocalSet: their states are flushed on drop.
    drop(local);
    tracing::info!("watch stopped");
    ExitCode::InSync
}

struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// A pair over IMAP or JMAP: pass connections, and IDLE on the primary's INBOX (IMAP) or
/// its event stream (JMAP push).
pub struct ImapLink {
    pub source: SideConfig,
    pub target: SideConfig,
    /// IDLE where the primary offers it (off: polling only).
    pub idle: bool,
    pub renew: Duration,
    /// The pair's poll interval (named in the log when a JMAP primary does not push).
    pub poll: Duration,
    /// The primary server's IDLE budget, when it has a limit.
    idle_budget: Option<Arc<Semaphore>>,
    /// Each side's server and its pass budget, when it has a limit.
    pass_budgets: [(Option<String>, Option<Arc<Semaphore>>); 2],
    /// Pass permits held while the pass connections are open.
    held: RefCell<Vec<OwnedSemaphorePermit>>,
    /// Back-off when a server asks to slow down (source, target); no rate limit in watch.
    pacing: [Arc<Pacing>; 2],
}

impl ImapLink {
    /// Takes a pass permit on each limited server, in server-name order so that two pairs
    /// crossing the same two servers cannot each hold one and wait for the other.
    async fn take_pass_permits(&self) {
        let mut wanted: Vec<(&String, &Arc<Semaphore>)> = self
            .pass_budgets
            .iter()
            .filter_map(|(name, sem)| Some((name.as_ref()?, sem.as_ref()?)))
            .collect();
        wanted.sort_by(|a, b| a.0.cmp(b.0));
        let mut permits = Vec::new();
        // Both sides on one server: its two permits are taken at once, never one by one.
        let same = wanted.len() == 2 && wanted[0].0 == wanted[1].0;
        if same {
            if let Ok(p) = wanted[0].1.clone().acquire_many_owned(2).await {
                permits.push(p);
            }
        } else {
            for (_, sem) in wanted {
                if let Ok(p) = sem.clone().acquire_owned().await {
                    permits.push(p);
                }
            }
        }
        *self.held.borrow_mut() = permits;
    }
}

impl ImapLink {
    /// [`Link::watch_changes`] on a JMAP primary: its event stream, renewed every `renew`.
    /// A server that does not push (no `eventSourceUrl`, a 204 as Debian's Cyrus answers, an
    /// error status) is said once in the log, and the agent polls.
    async fn watch_jmap(
        &self,
        on_change: &dyn Fn(),
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<bool, StoreError> {
        tokio::pin!(stop);
        let store = tokio::select! {
            _ = &mut stop => return Ok(true),
            s = JmapStore::connect(&self.source, Access::ReadOnly) => s?,
        };
        let opts = PushOptions {
            ping: JMAP_PUSH_PING,
            max_wait: self.renew,
            poll_interval: self.poll,
        };
        // Listening from here on (see the IMAP case below).
        on_change();
        loop {
            let outcome = tokio::select! {
                _ = &mut stop => return Ok(true),
                r = store.wait_for_change(&opts) => r?,
            };
            match outcome {
                PushOutcome::Changed { .. } => on_change(),
                PushOutcome::Timeout => {}
                PushOutcome::Unavailable { reason } => {
                    tracing::info!(primary = %self.source.endpoint, "{reason}");
                    return Ok(false);
                }
            }
        }
    }
}

impl Link for ImapLink {
    type Source = Paced<AnyStore>;
    type Target = Mapped<Paced<AnyStore>>;

    async fn connect(&self) -> Result<(Self::Source, Self::Target), StoreError> {
        self.take_pass_permits().await;
        let opened = async {
            let source = AnyStore::connect(&self.source, Access::ReadOnly).await?;
            let mut source = Paced::new(source, self.pacing[0].clone());
            let mut target = match AnyStore::connect(&self.target, Access::ReadWrite).await {
                Ok(target) => Paced::new(target, self.pacing[1].clone()),
                Err(e) => {
                    source.logout().await;
                    return Err(e);
                }
            };
            // The folder mapping sync uses (special-use folders named apart), decided when
            // the pass connections open.
            match folder_map(&mut source, &mut target, &Default::default()).await {
                Ok((map, _, _)) => Ok((source, Mapped::new(target, Arc::new(map)))),
                Err(e) => {
                    source.logout().await;
                    target.logout().await;
                    Err(e)
                }
            }
        }
        .await;
        if opened.is_err() {
            self.release();
        }
        opened
    }

    fn keep_open(&self) -> bool {
        // On a server with a connection limit, pass connections are closed after each pass
        // so that the permits go round.
        self.pass_budgets.iter().all(|(_, sem)| sem.is_none())
    }

    fn release(&self) {
        self.held.borrow_mut().clear();
    }

    async fn watch_changes(
        &self,
        on_change: &dyn Fn(),
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<bool, StoreError> {
        if !self.idle {
            tracing::info!(primary = %self.source.endpoint, "IDLE is off: changes are found by polling");
            return Ok(false);
        }
        if self.source.endpoint.scheme.is_jmap() {
            return self.watch_jmap(on_change, stop).await;
        }
        // Held for as long as this IDLE session lasts.
        let _permit = match &self.idle_budget {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    tracing::info!(primary = %self.source.endpoint, "the server's connection limit (max_connections) leaves no room for another IDLE: changes are found by polling");
                    return Ok(false);
                }
            },
        };
        tokio::pin!(stop);
        let mut store = tokio::select! {
            _ = &mut stop => return Ok(true),
            s = ImapStore::connect(&self.source, Access::ReadOnly) => s?,
        };
        if !store.can_idle() {
            tracing::info!(primary = %self.source.endpoint, "the primary offers no IDLE: changes are found by polling");
            store.logout().await;
            return Ok(false);
        }
        let inbox = FolderPath::inbox();
        tokio::select! {
            _ = &mut stop => return Ok(true),
            r = store.open_folder(&inbox) => { r?; }
        }
        // Listening from here on. What changed before (after a lost connection: while nobody
        // listened, possibly after the pass that followed the loss) is found by one more pass.
        on_change();
        store.idle(self.renew, on_change, &mut stop).await?;
        let _ = tokio::time::timeout(Duration::from_millis(500), store.logout()).await;
        Ok(true)
    }
}
