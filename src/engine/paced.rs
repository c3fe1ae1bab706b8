//! A store that keeps to a provider's pace: writes admitted by the run's rate limits
//! ([`super::throttle`]), and every command a server answers with "slow down" (`[THROTTLED]`,
//! `[LIMIT]`, a suggested back-off time: [`StoreError::throttling`]) sent again after a wait.
//! This is the one place where a throttled command is retried; the engine above never sees
//! one unless the server kept refusing for long.
//!
//! The wait: the server's suggested time when it gives one, else 1 s doubled per attempt up
//! to a minute (`MAILREPLICA_BACKOFF_MS` sets the first step, for tests). `[THROTTLED]` is
//! tried again for up to 15 minutes of waiting per command; `[LIMIT]`, which may also be a
//! fixed limit, three times. What is still refused then goes up as it came: a limited APPEND
//! as that message's refusal; a throttled APPEND fails the whole call (a throttled message is
//! never recorded as refused; its batch is journaled, so the next pass resolves it).
//!
//! An APPEND answered "slow down" for some messages of a pipelined batch sends those again,
//! after the others: their order on the target may differ from the source's. Each episode
//! (from the first "slow down" until a retried command succeeds) is logged once at info, with
//! the server and the folder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::throttle::Throttle;
use crate::mailstore::{
    AppendRequest, Capabilities, FetchedBody, FlagChange, FolderChanges, FolderInfo, FolderStatus,
    FolderTokens, MailStore, MessageMeta, StoreError, Throttling,
};
use crate::model::{ContentSha1, FlagSet, FolderPath};

/// Waiting for one command ends after this much in total (then the error goes up).
const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);
/// Longest wait between two attempts when the server suggests none.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Attempts after a `[LIMIT]` answer.
const LIMIT_RETRIES: u32 = 3;

/// What the connections to one account share: the rate limiter (target only) and the
/// back-off episode, with counts for the summary.
#[derive(Debug, Default)]
pub struct Pacing {
    throttle: Option<Throttle>,
    /// Since when the server is asking to slow down (one log line per episode).
    episode: Mutex<Option<Instant>>,
    backoffs: AtomicU64,
    backoff_ms: AtomicU64,
    /// The most message bytes per multi-message APPEND command (`u64::MAX`: a whole batch),
    /// cut down each time a connection drops during one (see [`Pacing::append_lost`]).
    append_group_bytes: AtomicU64,
}

impl Pacing {
    /// Back-off only (the source, or a target without limits).
    pub fn unlimited() -> Arc<Pacing> {
        Pacing::limited(None)
    }

    /// Back-off and, when `throttle` is given, the rate limits.
    pub fn limited(throttle: Option<Throttle>) -> Arc<Pacing> {
        Arc::new(Pacing {
            throttle,
            append_group_bytes: AtomicU64::new(u64::MAX),
            ..Pacing::default()
        })
    }

    /// The most message bytes one multi-message APPEND command may carry now.
    pub fn append_group_bytes(&self) -> u64 {
        self.append_group_bytes.load(Ordering::Relaxed)
    }

    /// A connection dropped while `bytes` of messages were being appended in commands that
    /// carry several messages each. Such a command is stored all or nothing, and on a link
    /// that drops every few hundred kilobytes a large one may never get through, while
    /// smaller ones are each kept as they complete: from now on, for every connection to
    /// this account, a quarter of what was lost at most (down to one message per command).
    fn append_lost(&self, endpoint: &str, bytes: u64) {
        let before = self.append_group_bytes();
        let now = before.min(bytes) / 4;
        if self
            .append_group_bytes
            .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(
                endpoint,
                "connection lost during an APPEND of several messages ({} KiB); sending at most {} KiB per APPEND command from now on",
                bytes / 1024,
                now / 1024
            );
        }
    }

    pub fn throttle(&self) -> Option<&Throttle> {
        self.throttle.as_ref()
    }

    /// How often a server asked to slow down, and the time waited for it (summed over the
    /// connections).
    pub fn backoffs(&self) -> (u64, Duration) {
        (
            self.backoffs.load(Ordering::Relaxed),
            Duration::from_millis(self.backoff_ms.load(Ordering::Relaxed)),
        )
    }

    fn episode(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.episode.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits before sending a throttled command again; the first wait of an episode is logged.
    async fn back_off(&self, endpoint: &str, error: &StoreError, wait: Duration) {
        self.backoffs.fetch_add(1, Ordering::Relaxed);
        self.backoff_ms
            .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
        let (command, folder, text) = match error {
            StoreError::No {
                command,
                folder,
                text,
                ..
            } => (command.as_str(), folder.as_str(), text.as_str()),
            _ => ("", "", ""),
        };
        let folder = folder.trim().trim_start_matches("on folder ");
        let first = {
            let mut since = self.episode();
            let first = since.is_none();
            since.get_or_insert_with(Instant::now);
            first
        };
        if first {
            tracing::info!(
                server = endpoint,
                folder,
                command,
                wait_ms = wait.as_millis() as u64,
                answer = text,
                "the server asks to slow down: waiting, then sending the command again"
            );
        } else {
            tracing::debug!(
                server = endpoint,
                folder,
                command,
                wait_ms = wait.as_millis() as u64,
                answer = text,
                "still asked to slow down"
            );
        }
        tokio::time::sleep(wait).await;
    }

    /// A command that was throttled went through: the episode is over.
    fn recovered(&self, endpoint: &str) {
        if let Some(since) = self.episode().take() {
            tracing::info!(
                server = endpoint,
                seconds = since.elapsed().as_secs_f64(),
                "the server takes commands again"
            );
        }
    }
}

/// The waits of one command's attempts.
#[derive(Debug)]
struct Backoff {
    attempts: u32,
    waited: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            attempts: 0,
            waited: Duration::ZERO,
        }
    }

    /// The wait before the next attempt, or `None` to give up.
    fn next(&mut self, throttling: Throttling) -> Option<Duration> {
        let exponential = first_step()
            .saturating_mul(1 << self.attempts.min(16))
            .min(MAX_WAIT);
        let wait = match throttling {
            Throttling::Limit if self.attempts >= LIMIT_RETRIES => return None,
            Throttling::Limit | Throttling::Throttled { suggested: None } => exponential,
            // A suggestion of nothing still waits a little, so a busy server is not hammered.
            Throttling::Throttled { suggested: Some(s) } => s.max(Duration::from_millis(10)),
        };
        if self.waited >= GIVE_UP_AFTER {
            return None;
        }
        self.attempts += 1;
        self.waited += wait;
        Some(wait)
    }

    fn retried(&self) -> bool {
        self.attempts > 0
    }
}

/// The first back-off step: 1 s, or `MAILREPLICA_BACKOFF_MS` (tests).
fn first_step() -> Duration {
    let ms = std::env::var("MAILREPLICA_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000u64);
    Duration::from_millis(ms.max(1))
}

/// `inner`, paced (see the module docs).
pub struct Paced<T> {
    inner: T,
    pacing: Arc<Pacing>,
}

impl<T: MailStore> Paced<T> {
    pub fn new(inner: T, pacing: Arc<Pacing>) -> Paced<T> {
        Paced { inner, pacing }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }

    /// Runs `op` until it is not throttled, or the back-off gives up.
    async fn retrying<R>(
        &mut self,
        mut op: impl AsyncFnMut(&mut T) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut backoff = Backoff::new();
        loop {
            match op(&mut self.inner).await {
                Err(e) => match e.throttling().and_then(|t| backoff.next(t)) {
                    Some(wait) => self.pacing.back_off(self.inner.endpoint(), &e, wait).await,
                    None => return Err(e),
                },
                Ok(r) => {
                    if backoff.retried() {
                        self.pacing.recovered(self.inner.endpoint());
                    }
                    return Ok(r);
                }
            }
        }
    }

    /// Runs `op` on `items` (a call with one outcome per item), then again on the items it
    /// throttled, until none is or the back-off gives up. A throttled item still refused then
    /// fails the call when `throttled_fails_call`; a limited one stays its item's refusal.
    async fn retrying_items<I: Copy, R>(
        &mut self,
        items: &[I],
        throttled_fails_call: bool,
        mut op: impl AsyncFnMut(&mut T, &[I]) -> Result<Vec<Result<R, StoreError>>, StoreError>,
    ) -> Result<Vec<Result<R, StoreError>>, StoreError> {
        let mut out: Vec<Option<Result<R, StoreError>>> = items.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut backoff = Backoff::new();
        while !pending.is_empty() {
            let batch: Vec<I> = pending.iter().map(|&i| items[i]).collect();
            let results = op(&mut self.inner, &batch).await?;
            if results.len() != batch.len() {
                return Err(StoreError::Protocol {
                    endpoint: self.inner.endpoint().to_string(),
                    command: "a batch".into(),
                    detail: format!(
                        "{} outcomes for {} commands (a mailreplica bug)",
                        results.len(),
                        batch.len()
                    ),
                });
            }
            let mut again = Vec::new();
            let mut reason: Option<(Throttling, StoreError)> = None;
            for (&i, result) in pending.iter().zip(results) {
                match result {
                    Err(e) => match e.throttling() {
                        Some(t) => {
                            again.push(i);
                            if reason.is_none() {
                                reason = Some((t, e));
                            } else {
                                out[i] = Some(Err(e));
                            }
                        }
                        None => out[i] = Some(Err(e)),
                    },
                    ok => out[i] = Some(ok),
                }
            }
            let Some((throttling, error)) = reason else {
                if backoff.retried() {
                    self.pacing.recovered(self.inner.endpoint());
                }
                break;
            };
            match backoff.next(throttling) {
                Some(wait) => {
                    self.pacing
                        .back_off(self.inner.endpoint(), &error, wait)
                        .await;
                    pending = again;
                }
                None if throttled_fails_call
                    && matches!(throttling, Throttling::Throttled { .. }) =>
                {
                    return Err(error);
                }
                None => {
                    // The first throttled item's own error goes back in its slot.
                    if let Some(&first) = again.first() {
                        out[first] = Some(Err(error));
                    }
                    break;
                }
            }
        }
        // Every slot is filled: each round fills those it does not send again.
        Ok(out.into_iter().flatten().collect())
    }
}

/// Appends `messages` in chunks the limits admit: the first message of a chunk waits for its
/// turn, the next ones join it while they need not wait, and each chunk is one pipelined call.
async fn append_within_limits<T: MailStore>(
    store: &mut T,
    throttle: Option<&Throttle>,
    path: &FolderPath,
    messages: &[AppendRequest<'_>],
) -> Result<Vec<Result<Option<u32>, StoreError>>, StoreError> {
    let Some(throttle) = throttle else {
        return store.append(path, messages).await;
    };
    let mut results = Vec::with_capacity(messages.len());
    let mut start = 0;
    while start < messages.len() {
        throttle.admit(1, messages[start].bytes.len() as u64).await;
        let mut end = start + 1;
        while end < messages.len() && throttle.try_admit(1, messages[end].bytes.len() as u64) {
            end += 1;
        }
        results.extend(store.append(path, &messages[start..end]).await?);
        start = end;
    }
    Ok(results)
}

impl<T: MailStore> MailStore for Paced<T> {
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, StoreError> {
        self.retrying(async |s: &mut T| s.list_folders().await)
            .await
    }

    async fn create_folder(
        &mut self,
        path: &FolderPath,
        special_use: Option<&str>,
    ) -> Result<(), StoreError> {
        self.retrying(async |s: &mut T| s.create_folder(path, special_use).await)
            .await
    }

    async fn rename_folder(
        &mut self,
        from: &FolderPath,
        to: &FolderPath,
    ) -> Result<(), StoreError> {
        self.retrying(async |s: &mut T| s.rename_folder(from, to).await)
            .await
    }

    async fn delete_folder(&mut self, path: &FolderPath) -> Result<(), StoreError> {
        self.retrying(async |s: &mut T| s.delete_folder(path).await)
            .await
    }

    async fn set_subscribed(&mut self, path: &FolderPath, on: bool) -> Result<(), StoreError> {
        self.retrying(async |s: &mut T| s.set_subscribed(path, on).await)
            .await
    }

    async fn open_folder(&mut self, path: &FolderPath) -> Result<FolderStatus, StoreError> {
        self.retrying(async |s: &mut T| s.open_folder(path).await)
            .await
    }

    async fn list_messages(&mut self) -> Result<Vec<MessageMeta>, StoreError> {
        self.retrying(async |s: &mut T| s.list_messages().await)
            .await
    }

    async fn list_changes(
        &mut self,
        since: &FolderTokens,
        old_known: u32,
    ) -> Result<FolderChanges, StoreError> {
        self.retrying(async |s: &mut T| s.list_changes(since, old_known).await)
            .await
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<FetchedBody>, StoreError> {
        self.retrying(async |s: &mut T| s.fetch_bodies(uids).await)
            .await
    }

    async fn fetch_message_ids(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Option<String>)>, StoreError> {
        self.retrying(async |s: &mut T| s.fetch_message_ids(uids).await)
            .await
    }

    async fn append(
        &mut self,
        path: &FolderPath,
        messages: &[AppendRequest<'_>],
    ) -> Result<Vec<Result<Option<u32>, StoreError>>, StoreError> {
        let pacing = self.pacing.clone();
        self.inner
            .set_append_group_limit(pacing.append_group_bytes());
        let result = self
            .retrying_items(
                messages,
                true,
                async |s: &mut T, batch: &[AppendRequest<'_>]| {
                    append_within_limits(s, pacing.throttle(), path, batch).await
                },
            )
            .await;
        if let Err(e) = &result {
            if e.is_connection_lost() && messages.len() > 1 && self.inner.capabilities().multiappend
            {
                let bytes = messages.iter().map(|m| m.bytes.len() as u64).sum();
                pacing.append_lost(self.inner.endpoint(), bytes);
            }
        }
        result
    }

    async fn store_flags(
        &mut self,
        uids: &[u32],
        change: FlagChange,
        flags: &FlagSet,
    ) -> Result<(), StoreError> {
        self.retrying(async |s: &mut T| s.store_flags(uids, change, flags).await)
            .await
    }

    async fn store_flags_many(
        &mut self,
        changes: &[(&[u32], FlagChange, &FlagSet)],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.retrying_items(
            changes,
            false,
            async |s: &mut T, batch: &[(&[u32], FlagChange, &FlagSet)]| {
                s.store_flags_many(batch).await
            },
        )
        .await
    }

    async fn copy(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        if let Some(t) = self.pacing.throttle() {
            t.admit(uids.len() as u64, 0).await;
        }
        self.retrying(async |s: &mut T| s.copy(uids, to).await)
            .await
    }

    async fn move_messages(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        if let Some(t) = self.pacing.throttle() {
            t.admit(uids.len() as u64, 0).await;
        }
        self.retrying(async |s: &mut T| s.move_messages(uids, to).await)
            .await
    }

    async fn close_folder(&mut self) -> Result<(), StoreError> {
        self.retrying(async |s: &mut T| s.close_folder().await)
            .await
    }

    fn names_content_by_sha1(&self) -> bool {
        self.inner.names_content_by_sha1()
    }

    async fn content_sha1(&mut self, uids: &[u32]) -> Result<Vec<(u32, ContentSha1)>, StoreError> {
        self.retrying(async |s: &mut T| s.content_sha1(uids).await)
            .await
    }

    async fn expunge(&mut self, uids: &[u32]) -> Result<(), StoreError> {
        self.retrying(async |s: &mut T| s.expunge(uids).await).await
    }

    async fn logout(&mut self) {
        self.inner.logout().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::NoEvents;
    use crate::engine::sync::{sync, SyncOptions};
    use crate::engine::throttle::RateLimits;
    use crate::mailstore::memory::{Fault, MemoryStore, OpKind};
    use crate::mailstore::Access;
    use crate::model::InternalDate;
    use crate::state::StateFile;

    fn message(i: usize, size: usize) -> Vec<u8> {
        let mut m = format!("Subject: m{i}\r\nMessage-ID: <m{i}@paced.test>\r\n\r\n").into_bytes();
        m.resize(size.max(m.len() + 2), b'x');
        m.extend_from_slice(b"\r\n");
        m
    }

    fn source(n: usize, size: usize) -> MemoryStore {
        let mut s = MemoryStore::new("source", Access::ReadOnly);
        for i in 0..n {
            s.add_message(
                "INBOX",
                &["\\Seen"],
                "01-Jan-2024 10:00:00 +0000",
                &message(i, size),
            );
        }
        s
    }

    #[test]
    fn a_lost_append_shrinks_the_commands_for_the_rest_of_the_run() {
        let pacing = Pacing::unlimited();
        assert_eq!(pacing.append_group_bytes(), u64::MAX);
        pacing.append_lost("imap://x", 2 << 20);
        assert_eq!(pacing.append_group_bytes(), (2 << 20) / 4);
        // A later loss shrinks from what is allowed now, never back up.
        pacing.append_lost("imap://x", 8 << 20);
        assert_eq!(pacing.append_group_bytes(), (2 << 20) / 16);
        pacing.append_lost("imap://x", 100);
        assert_eq!(pacing.append_group_bytes(), 25);
    }

    #[test]
    fn backoff_follows_the_server_then_gives_up() {
        std::env::remove_var("MAILREPLICA_BACKOFF_MS");
        let throttled = Throttling::Throttled { suggested: None };
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..8)
            .map(|_| b.next(throttled).expect("retried").as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        // The server's suggestion wins over the schedule.
        let suggested = Throttling::Throttled {
            suggested: Some(Duration::from_millis(1234)),
        };
        assert_eq!(b.next(suggested), Some(Duration::from_millis(1234)));
        // Up to 15 minutes of waiting per command, then the error goes up.
        let mut b = Backoff::new();
        let total: Duration = std::iter::from_fn(|| b.next(throttled)).sum();
        assert!(
            total >= GIVE_UP_AFTER && total < GIVE_UP_AFTER + MAX_WAIT,
            "{total:?}"
        );
        // [LIMIT] may be a fixed limit: three more tries.
        let mut b = Backoff::new();
        assert_eq!(std::iter::from_fn(|| b.next(Throttling::Limit)).count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_append_is_sent_again_and_arrives_once() {
        let pacing = Pacing::unlimited();
        let mut target = Paced::new(
            MemoryStore::new("target", Access::ReadWrite),
            pacing.clone(),
        );
        let date = InternalDate::parse("01-Jan-2024 10:00:00 +0000").expect("date");
        let flags = FlagSet::default();
        let bodies: Vec<Vec<u8>> = (0..3).map(|i| message(i, 100)).collect();
        let requests: Vec<AppendRequest<'_>> = bodies
            .iter()
            .map(|b| AppendRequest {
                flags: &flags,
                internaldate: &date,
                bytes: b,
            })
            .collect();
        // The second message of the batch is answered NO [THROTTLED].
        target.inner.fail_after(1, Fault::Throttled);
        let inbox = FolderPath::from_display("INBOX");
        let results = target.append(&inbox, &requests).await.expect("append");
        assert_eq!(results.len(), 3);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(target.inner.messages("INBOX").len(), 3);
        assert_eq!(pacing.backoffs().0, 1);
        // Every slot holds its own message's UID.
        let uids: Vec<u32> = results
            .into_iter()
            .map(|r| r.ok().flatten().expect("uid"))
            .collect();
        for (uid, body) in uids.iter().zip(&bodies) {
            let stored = target.inner.messages("INBOX");
            let (_, m) = stored.iter().find(|(u, _)| u == uid).expect("stored");
            assert_eq!(&m.bytes, body);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_copy_is_sent_again() {
        let pacing = Pacing::unlimited();
        let mut store = MemoryStore::new("target", Access::ReadWrite);
        store.add_folder("Archive");
        store.add_message("INBOX", &[], "01-Jan-2024 10:00:00 +0000", &message(1, 100));
        let mut target = Paced::new(store, pacing.clone());
        target
            .open_folder(&FolderPath::from_display("INBOX"))
            .await
            .expect("open");
        target.inner.fail_next(OpKind::Copy, Fault::Throttled);
        let copied = target
            .copy(&[1], &FolderPath::from_display("Archive"))
            .await
            .expect("copied after the back-off");
        assert_eq!(copied.len(), 1);
        assert_eq!(target.inner.messages("Archive").len(), 1);
        assert_eq!(pacing.backoffs().0, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn other_refusals_are_not_retried() {
        let pacing = Pacing::unlimited();
        let mut target = Paced::new(
            MemoryStore::new("target", Access::ReadWrite),
            pacing.clone(),
        );
        target.inner.fail_next(OpKind::Copy, Fault::No);
        target
            .open_folder(&FolderPath::from_display("INBOX"))
            .await
            .expect("open");
        let e = target
            .copy(&[1], &FolderPath::from_display("INBOX"))
            .await
            .expect_err("refused");
        assert!(matches!(e, StoreError::No { .. }), "{e}");
        assert_eq!(pacing.backoffs().0, 0);
    }

    /// A whole pass over a paced target: the throttled APPEND is not a refusal, every
    /// message arrives once, and the pass keeps to the limit.
    #[tokio::test(start_paused = true)]
    async fn a_pass_survives_throttling_and_keeps_to_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateFile::open(&dir.path().join("s.redb"), "paced").expect("state");
        let mut source = source(40, 10_000);
        let mut store = MemoryStore::new("target", Access::ReadWrite);
        store.fail_next(OpKind::Append, Fault::Throttled);
        let limits = RateLimits {
            bytes_per_second: Some(100_000),
            messages_per_second: None,
        };
        let pacing = Pacing::limited(Throttle::new(limits));
        let mut target = Paced::new(store, pacing.clone());
        let options = SyncOptions {
            batch_messages: 8,
            ..SyncOptions::default()
        };
        let start = Instant::now();
        let summary = sync(&mut source, &mut target, &state, &options, &NoEvents)
            .await
            .expect("pass");
        let took = start.elapsed().as_secs_f64();
        assert!(summary.refused.is_empty(), "{summary:?}");
        assert_eq!(summary.copied, 40);
        assert_eq!(target.inner.messages("INBOX").len(), 40);
        assert_eq!(pacing.backoffs().0, 1);
        // 40 messages of about 10 KB at 100 KB/s: about 4 s, plus the one back-off.
        let bytes: usize = target
            .inner
            .messages("INBOX")
            .iter()
            .map(|(_, m)| m.bytes.len())
            .sum();
        let at_limit = bytes as f64 / 100_000.0;
        assert!(
            took >= at_limit - 0.2 && took <= at_limit + 1.5,
            "{took} s for {at_limit} s"
        );
    }
}
