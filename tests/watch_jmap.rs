//! `mailreplica watch` with a JMAP primary (Cyrus 3.6) and a Dovecot recovery side: Cyrus
//! answers 204 on its eventSourceUrl, so the agent says once that the primary does not push
//! and polls every 5 s by default; behind [`JmapPushProxy`] the same Cyrus gets an event
//! stream the test drives, and one StateChange brings a change long before a 600 s poll; an
//! event source that answers 500 is said once and polling carries the changes. Outcomes are
//! read on the recovery side over IMAP and in the log; the deadlines bound waits, they do not
//! measure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::imap_client::TestImap;
use crate::support::jmap_push_proxy::{JmapPushProxy, PushMode};
use crate::support::servers::{ca_file, cyrus_http_port, fresh_user, TestServer};
use crate::support::watcher::Watch;

/// What a pass (a poll, or one a change notice asked for) leaves in the debug log.
const PASS_LINES: [&str; 2] = ["pass applied changes", "pass: nothing changed"];

fn message(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "From: sender{i}@example.org\r\nTo: user@example.org\r\nSubject: {tag} {i}\r\nMessage-ID: <{tag}-{i}@watch-jmap.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody of {tag} {i}\r\n"
    )
    .into_bytes()
}

/// A Cyrus primary account (read by the agent over JMAP, changed by the test over Cyrus's
/// IMAP) and a Dovecot recovery account.
struct JmapPair {
    tag: String,
    src: String,
    dst: String,
    cyrus: TestServer,
    recovery: TestServer,
}

impl JmapPair {
    /// Fresh accounts; the primary's INBOX gets three messages, the first one seen.
    async fn seeded(tag: &str) -> JmapPair {
        let cyrus = TestServer::cyrus();
        let recovery = TestServer::dovecot_recovery();
        recovery.require();
        let src = fresh_user(&format!("{tag}s"));
        cyrus.ensure_user(&src);
        let pair = JmapPair {
            tag: tag.to_string(),
            src,
            dst: fresh_user(&format!("{tag}d")),
            cyrus,
            recovery,
        };
        let mut p = TestImap::connect(&pair.cyrus, &pair.src).await;
        for i in 0..3 {
            let flags: &[&str] = if i == 0 { &["\\Seen"] } else { &[] };
            p.append(
                "INBOX",
                flags,
                Some("01-Jan-2024 10:00:00 +0000"),
                &message(tag, i),
            )
            .await;
        }
        p.logout().await;
        pair
    }

    fn target_url(&self) -> String {
        self.recovery.url(&self.dst)
    }

    /// A new message in the primary's INBOX (`i` makes it unique) and `\Flagged` on its
    /// second message: the two kinds of change a watch must carry.
    async fn change(&self, i: usize) {
        let mut p = TestImap::connect(&self.cyrus, &self.src).await;
        p.append(
            "INBOX",
            &[],
            Some("02-Jan-2024 10:00:00 +0000"),
            &message(&self.tag, i),
        )
        .await;
        let second = p.messages("INBOX").await[1].uid;
        p.set_flags("INBOX", second, &["\\Flagged"], &[]).await;
        p.logout().await;
    }

    /// Polls until the recovery INBOX equals the primary's (by Message-ID: content and
    /// flags), or fails with both and the log after `deadline`.
    async fn wait_in_step(&self, watch: &mut Watch, what: &str, deadline: Duration) {
        watch
            .poll(what, deadline, async |_: &Watch| {
                let primary = inbox(&self.cyrus, &self.src).await;
                let recovery = inbox(&self.recovery, &self.dst).await;
                if primary == recovery {
                    Ok(())
                } else {
                    Err(format!("primary {primary:?}; recovery {recovery:?}"))
                }
            })
            .await
    }
}

/// Message-ID -> (SHA-256 of the content, flags lowercased). `\Recent` is left out by the
/// witness client; Cyrus's own `$hasattachment` is not a user's flag.
type Inbox = BTreeMap<String, (String, BTreeSet<String>)>;

async fn inbox(server: &TestServer, user: &str) -> Inbox {
    let Ok(mut imap) = TestImap::try_connect(server, user).await else {
        // The recovery account exists once the agent has logged in.
        return Inbox::new();
    };
    let messages = imap.try_messages("INBOX").await.unwrap_or_default();
    imap.logout().await;
    messages
        .into_iter()
        .map(|m| {
            let flags = m
                .flags
                .iter()
                .map(|f| f.to_ascii_lowercase())
                .filter(|f| f != "$hasattachment")
                .collect();
            (m.message_id.unwrap_or_default(), (m.sha256, flags))
        })
        .collect()
}

/// Passes the agent has finished so far, by its log.
fn passes(log: &str) -> usize {
    PASS_LINES.iter().map(|l| log.matches(l).count()).sum()
}

/// Waits until the agent has finished `n` more passes than it had when called.
async fn wait_for_more_passes(watch: &mut Watch, n: usize, deadline: Duration) {
    let before = passes(&watch.log());
    watch
        .wait_until(&format!("{n} more passes"), deadline, |w| {
            passes(&w.log()) >= before + n
        })
        .await
}

/// Waits until the passes of the start are over, so that a change made next is brought by
/// a poll. The agent passes at once, and once more when it has tried to listen (that second
/// pass may fold into the first); the first pass applies the seeded messages, so the first
/// pass with nothing to do is the second one or a poll, and every pass after it is a poll.
async fn wait_for_start_passes(watch: &mut Watch) {
    watch
        .wait_until("a pass with nothing to do", Duration::from_secs(20), |w| {
            w.log().contains("pass: nothing changed")
        })
        .await
}

/// A configuration file with one pair, Cyrus (JMAP) to the recovery Dovecot, and no
/// `poll_interval`: the default applies.
fn config_file(dir: &Path, pair: &JmapPair) -> PathBuf {
    let text = format!(
        "[watch]\nstate_dir = {state:?}\n\n\
         [servers.cyrus]\nurl = \"jmap+http://127.0.0.1:{http}\"\n\n\
         [servers.recovery]\nurl = \"imap://127.0.0.1:{rp}\"\nca_file = {ca:?}\n\n\
         [accounts.p]\nserver = \"cyrus\"\nuser = \"{src}\"\npassword_env = \"MR_WATCH_TEST_PASSWORD\"\n\n\
         [accounts.r]\nserver = \"recovery\"\nuser = \"{dst}\"\npassword_env = \"MR_WATCH_TEST_PASSWORD\"\n\n\
         [[pairs]]\nname = \"cyrusjmap\"\nprimary = \"p\"\nrecovery = \"r\"\n",
        state = dir.join("state").display().to_string(),
        http = cyrus_http_port(),
        rp = pair.recovery.port,
        ca = ca_file().display().to_string(),
        src = pair.src,
        dst = pair.dst,
    );
    let path = dir.join("mailreplica.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Cyrus's event source answers 204: the agent says so once, at info, and polls every 5 s
/// (the JMAP default, nothing configured); a new message and a flag reach the recovery side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_jmap_cyrus_without_push_polls_every_5_s() {
    let pair = JmapPair::seeded("wjpoll").await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &pair);
    let config = config.display().to_string();
    let mut watch = Watch::spawn(&["--config", &config], &dir.path().join("watch.log"));
    pair.wait_in_step(&mut watch, "the first pass", Duration::from_secs(30))
        .await;
    wait_for_start_passes(&mut watch).await;

    pair.change(10).await;
    // Only a poll can bring it now. One poll interval (5 s) and the pass, with a wide margin: a deadline, not a measure.
    pair.wait_in_step(
        &mut watch,
        "a new message and a flag",
        Duration::from_secs(25),
    )
    .await;
    // Several more poll cycles, over which "does not push" must not be said again.
    wait_for_more_passes(&mut watch, 2, Duration::from_secs(25)).await;
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);

    let log = watch.log();
    let no_push: Vec<&str> = log.lines().filter(|l| l.contains("no JMAP push")).collect();
    assert_eq!(no_push.len(), 1, "said once; log:\n{log}");
    let line = no_push[0];
    assert!(line.contains("INFO"), "at info: {line}");
    assert!(line.contains("204 No Content"), "{line}");
    assert!(line.contains("/jmap/eventsource/"), "{line}");
    assert!(line.contains("polling every 5 s instead"), "{line}");
    assert_eq!(
        log.matches("no change notification: polling every 5 s")
            .count(),
        1,
        "log:\n{log}"
    );
    assert!(passes(&log) >= 4, "log:\n{log}");
    assert!(
        !log.contains("JMAP push) on the primary lost"),
        "log:\n{log}"
    );
}

/// Behind the proxy Cyrus has an event stream. Polling every 600 s, only a StateChange can
/// bring a change within the deadline: the test makes the change, checks that no pass has
/// looked at the primary since, pushes the event, and the change arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_jmap_push_event_triggers_a_pass_before_the_poll() {
    let pair = JmapPair::seeded("wjpush").await;
    let proxy =
        JmapPushProxy::start(([127, 0, 0, 1], cyrus_http_port()).into(), PushMode::Stream).await;
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::spawn_pair(
        &proxy.url(&pair.src),
        &pair.target_url(),
        &dir.path().join("pair.redb"),
        &["--poll-interval", "600"],
        &dir.path().join("watch.log"),
    );
    pair.wait_in_step(&mut watch, "the first pass", Duration::from_secs(30))
        .await;
    // Listening, and settled: the passes of the start (one at once, one when listening
    // began) are over once the API has been quiet for a while.
    watch
        .poll(
            "a listening, quiet agent",
            Duration::from_secs(20),
            async |_: &Watch| {
                let last_call = proxy.api_calls().last().map(|r| r.at);
                let quiet = last_call.is_some_and(|t| t.elapsed() > Duration::from_millis(1500));
                if proxy.open_streams() >= 1 && quiet {
                    Ok(())
                } else {
                    Err(format!(
                        "{} open stream(s), last API call {:?} ago",
                        proxy.open_streams(),
                        last_call.map(|t| t.elapsed())
                    ))
                }
            },
        )
        .await;
    assert_eq!(proxy.account_id().as_deref(), Some(pair.src.as_str()));

    let calls = proxy.api_calls().len();
    pair.change(10).await;
    assert_eq!(
        proxy.api_calls().len(),
        calls,
        "a pass ran while the change was made, so it would not show that push brought it; log:\n{}",
        watch.log()
    );
    proxy.push_change();
    pair.wait_in_step(&mut watch, "the pushed change", Duration::from_secs(30))
        .await;
    // After a change, the agent listens again.
    watch
        .wait_until("listening again", Duration::from_secs(20), |_| {
            proxy.event_source_requests().len() >= 2 && proxy.open_streams() >= 1
        })
        .await;
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);

    let gets = proxy.event_source_requests();
    for get in &gets {
        assert_eq!(get.method, "GET", "{get:?}");
        assert_eq!(get.header("accept"), Some("text/event-stream"), "{get:?}");
        assert!(
            get.path.contains("types=Email%2CMailbox") && get.path.contains("closeafter=state"),
            "{get:?}"
        );
    }
    let log = watch.log();
    assert!(log.contains("JMAP push: changed"), "log:\n{log}");
    assert!(!log.contains("no JMAP push"), "log:\n{log}");
    assert!(!log.contains("no change notification"), "log:\n{log}");
}

/// The event source answers HTTP 500: said once (the agent does not ask again), and polling
/// every 2 s carries a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_jmap_push_error_falls_back_to_polling_logged_once() {
    let pair = JmapPair::seeded("wjerr").await;
    let proxy = JmapPushProxy::start(
        ([127, 0, 0, 1], cyrus_http_port()).into(),
        PushMode::Status(500),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::spawn_pair(
        &proxy.url(&pair.src),
        &pair.target_url(),
        &dir.path().join("pair.redb"),
        &["--poll-interval", "2"],
        &dir.path().join("watch.log"),
    );
    pair.wait_in_step(&mut watch, "the first pass", Duration::from_secs(30))
        .await;
    wait_for_start_passes(&mut watch).await;
    pair.change(10).await;
    pair.wait_in_step(&mut watch, "a change, by polling", Duration::from_secs(20))
        .await;
    wait_for_more_passes(&mut watch, 3, Duration::from_secs(20)).await;
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);

    let log = watch.log();
    let no_push: Vec<&str> = log.lines().filter(|l| l.contains("no JMAP push")).collect();
    assert_eq!(no_push.len(), 1, "said once; log:\n{log}");
    assert!(no_push[0].contains("HTTP 500"), "{}", no_push[0]);
    assert!(
        no_push[0].contains("polling every 2 s instead"),
        "{}",
        no_push[0]
    );
    assert_eq!(
        log.matches("no change notification: polling every 2 s")
            .count(),
        1,
        "log:\n{log}"
    );
    // Asked once: an event source that fails is not hammered.
    let gets = proxy.event_source_requests();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].header("accept"), Some("text/event-stream"));
}
