//! Folders of a pass worked on concurrently: one worker per connection pair, all in one task
//! (their I/O overlaps; their shared state lives in `RefCell`s that are never borrowed across
//! an await), pulling folders from one queue, largest first.
//!
//! The first worker uses the pass's own connections; more pairs are opened through a
//! [`Connector`] when there are more folders to work on than workers, up to
//! `SyncOptions::connections` per side (DESIGN.md: 4 one-shot). A pair that cannot be opened
//! is not an error: the pass goes on with fewer workers. The first error that is not about a
//! single folder stops every worker after the folder it is on.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};

use super::events::EventSink;
use super::summary::SyncSummary;
use super::sync::{folder_local, notice, sync_or_create, SyncOptions, TargetIndex};
use super::EngineError;
use crate::mailstore::MailStore;
use crate::model::FolderPath;
use crate::reconcile::budget::FolderRemovals;
use crate::state::StateFile;

/// Opens more connection pairs (source, target) for concurrent folder work.
#[allow(async_fn_in_trait)]
pub trait Connector<S, T> {
    /// A new pair, or `None` when none can be opened (the pass goes on with fewer workers).
    async fn connect_pair(&self) -> Option<(S, T)>;
}

/// Opens nothing: every folder on the pass's own connections.
pub struct NoConnector;

impl<S, T> Connector<S, T> for NoConnector {
    async fn connect_pair(&self) -> Option<(S, T)> {
        None
    }
}

/// One folder to work on.
#[derive(Debug, Clone)]
pub(crate) struct FolderJob {
    pub path: FolderPath,
    /// The target has the folder already.
    pub exists: bool,
    /// `\Trash` or `\Junk`: its removals are budgeted apart.
    pub exempt: bool,
    /// No removal of the folder is held (so it may be read from changes only).
    pub none_held: bool,
    /// Messages in the source folder, when the listing said (for the largest-first order).
    pub messages: u32,
    /// An estimate of the messages to place: how far UIDNEXT moved since the last pass.
    pub arrived: u32,
    /// The source folder holds fewer messages than at the last pass: it may be where moved
    /// messages came from, so it goes first (see `run_jobs`).
    pub shrunk: bool,
    /// The special-use to create the folder with, when the target has no folder with it yet.
    pub create_use: Option<String>,
}

/// What the folders of one pass share.
pub(crate) struct PassShared<'a> {
    pub state: &'a StateFile,
    pub options: &'a SyncOptions,
    pub events: &'a dyn EventSink,
    /// Removals found, decided by the removal budget after every folder.
    pub pending: RefCell<Vec<FolderRemovals>>,
    pub index: RefCell<TargetIndex>,
    /// Folders complete once their removals are applied.
    pub awaiting_removals: RefCell<HashSet<String>>,
    /// Folders of which only these source UIDs are copied (Gmail's All Mail: the messages no
    /// other folder holds, see all_mail.rs).
    pub only_uids: RefCell<HashMap<String, HashSet<u32>>>,
}

/// Folders, and messages to place, that make an extra connection pair worth opening: a pair
/// costs a login on each side (at Dovecot a new server process each), which a small pass
/// does not win back. Measured on the 1 % re-sync of scripts/bench (10 folders, 200 new
/// messages): 2 workers take a tenth less time than 4, with a fifth less CPU on the machine.
const FOLDERS_PER_PAIR: usize = 8;
const MESSAGES_PER_PAIR: u64 = 1000;

/// How many workers a pass with these folders uses: at most `connections`, one per folder at
/// most, and one more per [`FOLDERS_PER_PAIR`] folders and per [`MESSAGES_PER_PAIR`] new
/// messages (how far UIDNEXT moved; all of a new folder).
fn worker_count(jobs: &[FolderJob], connections: usize) -> usize {
    let arrived: u64 = jobs.iter().map(|j| u64::from(j.arrived)).sum();
    let by_work = 1 + jobs.len() / FOLDERS_PER_PAIR + (arrived / MESSAGES_PER_PAIR) as usize;
    by_work.min(connections.max(1)).min(jobs.len().max(1))
}

/// Works through `jobs` with the given pair and up to `connections - 1` more from `connector`.
/// Every worker's summary is added to `summary`, also when one failed; the first error is
/// returned. The extra pairs whose worker ended well are left in `spare` for the rest of the
/// pass (its removals, see [`run_on_targets`]); the caller logs them out.
pub(crate) async fn run_jobs<S: MailStore, T: MailStore, C: Connector<S, T>>(
    source: &mut S,
    target: &mut T,
    connector: &C,
    shared: &PassShared<'_>,
    mut jobs: Vec<FolderJob>,
    summary: &mut SyncSummary,
    spare: &mut Vec<(S, T)>,
) -> Result<(), EngineError> {
    // Largest first: the long folders start early and the short ones fill the gaps.
    // Folders that lost messages go first: their removals are known before the folders that
    // gained messages place them, so a message moved on the source is moved on the target
    // (UID MOVE) rather than copied and then removed. Then the largest first.
    // Among those, the most new mail first (the longest work), then the largest.
    jobs.sort_by(|a, b| {
        (b.shrunk, b.arrived, b.messages)
            .cmp(&(a.shrunk, a.arrived, a.messages))
            .then(a.path.cmp(&b.path))
    });
    let workers = if shared.options.dry_run {
        1
    } else {
        worker_count(&jobs, shared.options.connections)
    };
    let queue = RefCell::new(VecDeque::from(jobs));
    let stop = Cell::new(false);
    let extra = (1..workers).map(|_| async {
        let Some((mut s, mut t)) = connector.connect_pair().await else {
            return (SyncSummary::default(), Ok(()), None);
        };
        let mut own = SyncSummary::default();
        let result = work(&mut s, &mut t, shared, &queue, &stop, &mut own).await;
        if result.is_ok() {
            return (own, result, Some((s, t)));
        }
        s.logout().await;
        t.logout().await;
        (own, result, None)
    });
    let mut own = SyncSummary::default();
    let (first, others) = futures::future::join(
        work(source, target, shared, &queue, &stop, &mut own),
        futures::future::join_all(extra),
    )
    .await;
    summary.absorb(own);
    let mut result = first;
    for (s, r, pair) in others {
        summary.absorb(s);
        spare.extend(pair);
        if result.is_ok() {
            result = r;
        }
    }
    result
}

/// Runs `task` on each item, concurrently over the pass's own target connection and the spare
/// pairs' (Dovecot, for one, spends milliseconds per expunged message: folders in parallel
/// use the server's cores). Items are taken in order; the first error stops the workers after
/// their current item and is returned.
pub(crate) async fn run_on_targets<S, T, I, F>(
    target: &mut T,
    spare: &mut [(S, T)],
    items: Vec<I>,
    task: F,
) -> Result<(), EngineError>
where
    T: MailStore,
    F: AsyncFn(&mut T, I) -> Result<(), EngineError>,
{
    let queue = RefCell::new(VecDeque::from(items));
    let stop = Cell::new(false);
    let worker = async |t: &mut T| -> Result<(), EngineError> {
        while !stop.get() {
            let Some(item) = queue.borrow_mut().pop_front() else {
                break;
            };
            if let Err(e) = task(t, item).await {
                stop.set(true);
                return Err(e);
            }
        }
        Ok(())
    };
    let others = spare.iter_mut().map(|(_, t)| worker(t));
    let (first, others) =
        futures::future::join(worker(target), futures::future::join_all(others)).await;
    others.into_iter().fold(first, Result::and)
}

/// One worker: folders from the queue until it is empty or some worker failed.
async fn work<S: MailStore, T: MailStore>(
    source: &mut S,
    target: &mut T,
    shared: &PassShared<'_>,
    queue: &RefCell<VecDeque<FolderJob>>,
    stop: &Cell<bool>,
    summary: &mut SyncSummary,
) -> Result<(), EngineError> {
    loop {
        if stop.get() {
            return Ok(());
        }
        let Some(job) = queue.borrow_mut().pop_front() else {
            return Ok(());
        };
        match sync_or_create(source, target, shared, &job, summary).await {
            Ok(()) => {}
            // A refusal about this folder (a name the target cannot hold, a NO on SELECT)
            // skips the folder; a broken connection or state stops the pass.
            Err(EngineError::Store(e))
                if !e.is_connection_lost() && !e.is_retryable() && folder_local(&e) =>
            {
                let path = &job.path;
                notice(shared.events, summary, format!("{path}: skipped: {e}"));
                summary.folder_errors.push(format!("{path}: {e}"));
            }
            Err(e) => {
                stop.set(true);
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(arrived: u32) -> FolderJob {
        FolderJob {
            path: FolderPath::from_display("F"),
            exists: true,
            exempt: false,
            none_held: true,
            messages: 2000,
            arrived,
            shrunk: false,
            create_use: None,
        }
    }

    #[test]
    fn extra_connections_only_for_enough_work() {
        // The 1 % re-sync: 10 folders, 20 new messages each.
        assert_eq!(worker_count(&vec![job(20); 10], 4), 2);
        // An initial copy: everything is new.
        assert_eq!(worker_count(&vec![job(2000); 10], 4), 4);
        // Many folders with a message each.
        assert_eq!(worker_count(&vec![job(1); 40], 4), 4);
        // Never more than asked, nor more than the folders.
        assert_eq!(worker_count(&vec![job(5000); 10], 1), 1);
        assert_eq!(worker_count(&[job(5000)], 4), 1);
        assert_eq!(worker_count(&[], 4), 1);
    }
}
