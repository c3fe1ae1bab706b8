//! `mailreplica watch` against the real Dovecots: the binary runs in the background on one or
//! three pairs; changes made on the primaries (APPEND, flags, expunge, move) must show up on the
//! recovery sides (polled with a deadline: no assertion about speed); SIGTERM ends it with 0,
//! a restart goes on without duplicates; killed connections, and a primary Dovecot killed for
//! 30 s (a private instance), do not kill it; time travel freezes a pair under a running watch;
//! `--once` and the state lock; `status --config`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::mr::{account, assert_same_accounts, mailreplica_env, on_pair, Key, PASSWORDS};
use crate::support::imap_client::{TestImap, TestMessage};
use crate::support::private_dovecot::PrivateDovecot;
use crate::support::proxy::{FaultPlan, Proxy};
use crate::support::servers::{ca_file, fresh_user, TestServer};
use crate::support::watcher::{self, Account, Watch};

/// How long a change may take to show up before the test fails (a deadline, not a measure).
const DEADLINE: Duration = Duration::from_secs(20);

fn message(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "From: sender{i}@example.org\r\nTo: user@example.org\r\nSubject: {tag} {i}\r\nMessage-ID: <{tag}-{i}@watch.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody of {tag} {i}\r\n"
    )
    .into_bytes()
}

/// One primary account and its recovery account.
struct TestPair {
    src: String,
    dst: String,
    /// The primary's server: the shared primary Dovecot, or a test's private one.
    server: TestServer,
    /// The shared recovery Dovecot.
    recovery_server: TestServer,
}

impl TestPair {
    fn new(prefix: &str) -> TestPair {
        TestPair::on(TestServer::dovecot_primary(), prefix)
    }
    /// A pair whose primary account lives on `server`.
    fn on(server: TestServer, prefix: &str) -> TestPair {
        TestPair {
            src: fresh_user(&format!("{prefix}s")),
            dst: fresh_user(&format!("{prefix}d")),
            server,
            recovery_server: TestServer::dovecot_recovery(),
        }
    }
    fn source_url(&self) -> String {
        self.server.url(&self.src)
    }
    fn target_url(&self) -> String {
        self.recovery_server.url(&self.dst)
    }
    fn primary_account(&self) -> Account<'_> {
        Account {
            server: &self.server,
            user: &self.src,
        }
    }
    fn recovery_account(&self) -> Account<'_> {
        Account {
            server: &self.recovery_server,
            user: &self.dst,
        }
    }
    async fn primary(&self) -> TestImap {
        self.primary_account().connect().await
    }
    async fn recovery(&self) -> TestImap {
        self.recovery_account().connect().await
    }
    /// The recovery account as it is now.
    async fn recovery_now(&self) -> BTreeMap<String, Vec<Key>> {
        let mut r = self.recovery().await;
        let now = account(&mut r).await;
        r.logout().await;
        now
    }
    /// The recovery side's INBOX as it is now.
    async fn recovery_inbox(&self) -> Vec<TestMessage> {
        let mut r = self.recovery().await;
        let inbox = r.messages("INBOX").await;
        r.logout().await;
        inbox
    }
}

/// Polls until the pair's recovery account equals its primary account, or fails after
/// [`DEADLINE`].
async fn wait_in_step(pair: &TestPair, watch: &mut Watch, what: &str) {
    watcher::wait_in_step(
        pair.primary_account(),
        pair.recovery_account(),
        watch,
        what,
        DEADLINE,
    )
    .await
}

async fn seed(pair: &TestPair, tag: &str) {
    let mut p = pair.primary().await;
    p.create("Archive").await;
    for i in 0..4 {
        let flags: &[&str] = if i == 0 { &["\\Seen"] } else { &[] };
        p.append(
            "INBOX",
            flags,
            Some("01-Jan-2024 10:00:00 +0000"),
            &message(tag, i),
        )
        .await;
    }
    p.append(
        "Archive",
        &[],
        Some("01-Jan-2024 10:00:00 +0000"),
        &message(tag, 100),
    )
    .await;
    p.logout().await;
}

/// Every kind of change on one primary: an APPEND, a flag change, an expunge and a move.
async fn change_everything(pair: &TestPair, tag: &str) {
    let mut p = pair.primary().await;
    p.append(
        "INBOX",
        &[],
        Some("02-Jan-2024 10:00:00 +0000"),
        &message(tag, 50),
    )
    .await;
    let inbox = p.messages("INBOX").await;
    let uids: Vec<u32> = inbox.iter().map(|m| m.uid).collect();
    p.set_flags("INBOX", uids[1], &["\\Flagged", "$Important"], &[])
        .await;
    p.expunge_uids("INBOX", &[uids[2]]).await;
    p.move_uids("INBOX", &[uids[3]], "Archive").await;
    p.logout().await;
}

/// The server's name in a test configuration: `primary` for the shared primary, else
/// `primary<port>`.
fn server_name(server: &TestServer) -> String {
    if *server == TestServer::dovecot_primary() {
        "primary".into()
    } else {
        format!("primary{}", server.port)
    }
}

fn config_file(dir: &Path, pairs: &[&TestPair], extra: &str) -> PathBuf {
    let recovery = TestServer::dovecot_recovery();
    let ca = ca_file();
    let pw_file = dir.join("recovery.pw");
    std::fs::write(&pw_file, "test\n").unwrap();
    let mut text = format!(
        "# test configuration\n[watch]\nstate_dir = {state:?}\n{extra}\n\n[servers.recovery]\nurl = \"imap://127.0.0.1:{rp}\"\nca_file = {ca:?}\n",
        state = dir.join("state").display().to_string(),
        rp = recovery.port,
        ca = ca.display().to_string(),
    );
    let mut primaries: Vec<&TestServer> = Vec::new();
    for pair in pairs {
        if !primaries.contains(&&pair.server) {
            primaries.push(&pair.server);
        }
    }
    for server in primaries {
        text.push_str(&format!(
            "\n[servers.{name}]\nurl = \"imap://127.0.0.1:{port}\"\nca_file = {ca:?}\nmax_connections = 20\n",
            name = server_name(server),
            port = server.port,
            ca = ca.display().to_string(),
        ));
    }
    for (i, pair) in pairs.iter().enumerate() {
        // The three password sources, one per pair.
        let recovery_secret = match i % 3 {
            0 => "password_env = \"MR_WATCH_TEST_PASSWORD\"".to_string(),
            1 => format!("password_file = {:?}", pw_file.display().to_string()),
            _ => format!(
                "password_command = [\"cat\", {:?}]",
                pw_file.display().to_string()
            ),
        };
        text.push_str(&format!(
            "\n[accounts.p{i}]\nserver = \"{server}\"\nuser = \"{src}\"\npassword_env = \"MR_WATCH_TEST_PASSWORD\"\n\n[accounts.r{i}]\nserver = \"recovery\"\nuser = \"{dst}\"\n{recovery_secret}\n\n[[pairs]]\nname = \"pair{i}\"\nprimary = \"p{i}\"\nrecovery = \"r{i}\"\n",
            server = server_name(&pair.server),
            src = pair.src,
            dst = pair.dst,
        ));
    }
    let path = dir.join("mailreplica.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_one_pair_replicates_changes_and_stops_on_sigterm() {
    TestServer::dovecot_primary().require();
    TestServer::dovecot_recovery().require();
    let pair = TestPair::new("w1");
    seed(&pair, "one").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pair.redb");
    let (source, target) = (pair.source_url(), pair.target_url());
    let spawn = |log: &str| {
        Watch::spawn_pair(
            &source,
            &target,
            &state,
            &["--poll-interval", "30"],
            &dir.path().join(log),
        )
    };
    let mut watch = spawn("watch.log");
    wait_in_step(&pair, &mut watch, "the first pass").await;
    change_everything(&pair, "one").await;
    wait_in_step(&pair, &mut watch, "the changes").await;

    // A second watch on the same pair is refused at once: the state is locked.
    let second = on_pair("watch", &source, &target, &state, &["--once"], &PASSWORDS).await;
    assert_eq!(second.code, 75, "{second:?}");
    assert!(second.stderr.contains("in use by"), "{}", second.stderr);

    let code = watch.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "log:\n{}", watch.log());

    // New mail while stopped; a restart catches up without duplicates.
    let mut p = pair.primary().await;
    p.append(
        "INBOX",
        &[],
        Some("03-Jan-2024 10:00:00 +0000"),
        &message("one", 60),
    )
    .await;
    p.logout().await;
    let mut watch = spawn("watch2.log");
    wait_in_step(&pair, &mut watch, "catching up after a restart").await;
    let code = watch.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "log:\n{}", watch.log());
}

/// `doveadm kick USER` on the primary instance: the server closes every connection of the user.
fn kick_on_primary(user: &str) {
    let dir = std::env::var_os("MAILREPLICA_SERVERS_DIR")
        .or_else(|| std::env::var_os("MR_SERVERS_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/mailreplica-servers"));
    let conf = dir.join("dovecot-primary/dovecot.conf");
    let out = Command::new("doveadm")
        .arg("-c")
        .arg(&conf)
        .args(["kick", user])
        .output()
        .expect("running doveadm kick");
    assert!(
        out.status.success(),
        "doveadm kick {user}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn status_json(config: &Path) -> serde_json::Value {
    let config = config.display().to_string();
    let run = mailreplica_env(&["status", "--config", &config, "--json"], &[]).await;
    assert!(run.code == 0 || run.code == 3, "{run:?}");
    run.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_three_pairs_from_a_config_file() {
    TestServer::dovecot_primary().require();
    TestServer::dovecot_recovery().require();
    let pairs = [
        TestPair::new("w3a"),
        TestPair::new("w3b"),
        TestPair::new("w3c"),
    ];
    for (i, pair) in pairs.iter().enumerate() {
        seed(pair, &format!("three{i}")).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let refs: Vec<&TestPair> = pairs.iter().collect();
    let config = config_file(dir.path(), &refs, "poll_interval = 5");
    let config_arg = config.display().to_string();
    let mut watch = Watch::spawn(&["--config", &config_arg], &dir.path().join("watch.log"));
    for pair in &pairs {
        wait_in_step(pair, &mut watch, "the first pass").await;
    }
    for (i, pair) in pairs.iter().enumerate() {
        change_everything(pair, &format!("three{i}")).await;
    }
    for pair in &pairs {
        wait_in_step(pair, &mut watch, "the changes").await;
    }

    // While it runs, status reads what each agent last recorded.
    let status = status_json(&config).await;
    let entries = status.as_array().expect("one entry per pair");
    assert_eq!(entries.len(), 3, "{status}");
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry["name"], format!("pair{i}"), "{entry}");
        assert!(entry["running"].is_string(), "{entry}");
        assert!(entry["watch"]["last_success"].is_u64(), "{entry}");
        assert!(entry["watch"]["lag_seconds"].is_u64(), "{entry}");
    }

    // The server drops every connection of one primary user: the process survives, the
    // agent reconnects and goes on replicating.
    kick_on_primary(&pairs[0].src);
    let mut p = pairs[0].primary().await;
    p.append(
        "INBOX",
        &[],
        Some("04-Jan-2024 10:00:00 +0000"),
        &message("kicked", 1),
    )
    .await;
    p.logout().await;
    wait_in_step(
        &pairs[0],
        &mut watch,
        "a change after the connections were killed",
    )
    .await;
    assert!(watch.is_running(), "log:\n{}", watch.log());

    let code = watch.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "log:\n{}", watch.log());
    let log = watch.log();
    assert!(log.contains("pass applied changes"), "log:\n{log}");

    // Stopped: status reads the states themselves.
    let status = status_json(&config).await;
    for entry in status.as_array().unwrap() {
        assert!(entry["running"].is_null(), "{entry}");
        assert!(entry["watch"]["last_success"].is_u64(), "{entry}");
        assert!(entry["watch"]["last_error"].is_null(), "{entry}");
    }

    // --once (cron): one pass of every pair, exit 0 when all are in step.
    let mut p = pairs[1].primary().await;
    p.append(
        "Archive",
        &["\\Seen"],
        Some("05-Jan-2024 10:00:00 +0000"),
        &message("once", 1),
    )
    .await;
    p.logout().await;
    let once = mailreplica_env(
        &[
            "watch",
            "--config",
            &config_arg,
            "--once",
            "--log-format",
            "json",
        ],
        &[("MR_WATCH_TEST_PASSWORD", "test")],
    )
    .await;
    assert_eq!(once.code, 0, "{once:?}");
    // One JSON object per log line; the pass that changed something names its pair.
    let applied: Vec<serde_json::Value> = once
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v: &serde_json::Value| v["message"] == "pass applied changes")
        .collect();
    assert_eq!(applied.len(), 1, "{}", once.stderr);
    assert_eq!(applied[0]["pair"], "pair1", "{}", once.stderr);
    assert_eq!(applied[0]["uploaded"], 1, "{}", once.stderr);
    let mut p = pairs[1].primary().await;
    let mut r = pairs[1].recovery().await;
    assert_same_accounts(&account(&mut p).await, &account(&mut r).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[servers.a]\nurl = \"imap://127.0.0.1:1\"\n[[pairs]]\nname = \"x\"\nprimary = \"nobody\"\nrecovery = \"nobody\"\n",
    )
    .unwrap();
    let arg = path.display().to_string();
    let run = mailreplica_env(&["watch", "--config", &arg, "--once"], &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("\"nobody\" is not defined"),
        "{}",
        run.stderr
    );
    let run = mailreplica_env(&["watch", "--once"], &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
}

/// Regression: a pass connection kept open with INBOX selected read INBOX's LIST-STATUS from
/// its session's stale view, so a change to INBOX alone was never replicated. Also: IDLE
/// renewed every second keeps reporting changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_repeated_changes_to_the_only_folder() {
    TestServer::dovecot_primary().require();
    TestServer::dovecot_recovery().require();
    let pair = TestPair::new("wst");
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::spawn_pair(
        &pair.source_url(),
        &pair.target_url(),
        &dir.path().join("pair.redb"),
        &["--poll-interval", "600", "--idle-renew", "1"],
        &dir.path().join("watch.log"),
    );
    // With polling every 10 minutes only IDLE can bring the changes in time; renewed every
    // second, it goes through a few DONE/IDLE rounds first.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for i in 0..3 {
        let mut p = pair.primary().await;
        p.append("INBOX", &[], None, &message("stale", i)).await;
        p.logout().await;
        wait_in_step(&pair, &mut watch, &format!("append {i} to INBOX")).await;
    }
    let mut p = pair.primary().await;
    let uid = p.messages("INBOX").await[0].uid;
    p.set_flags("INBOX", uid, &["\\Seen"], &[]).await;
    p.logout().await;
    wait_in_step(&pair, &mut watch, "a flag change in INBOX").await;
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);
    let log = watch.log();
    assert!(
        !log.contains("(IDLE) on the primary lost"),
        "log:
{log}"
    );
}

/// The primary goes away (its proxy is dropped: connections cut, new ones refused) while the
/// watch runs and new mail arrives meanwhile: the agent reports the outage, keeps retrying,
/// and catches up when the primary is back on the same port; the process never stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_a_primary_outage_and_catches_up() {
    let primary = TestServer::dovecot_primary();
    primary.require();
    TestServer::dovecot_recovery().require();
    let pair = TestPair::new("wout");
    seed(&pair, "outage").await;
    let proxy = Proxy::start(primary.addr(), FaultPlan::None);
    let port = proxy.port();
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::spawn_pair(
        &format!("imap+plain://{}@127.0.0.1:{port}", pair.src),
        &pair.target_url(),
        &dir.path().join("pair.redb"),
        &["--poll-interval", "2"],
        &dir.path().join("watch.log"),
    );
    wait_in_step(&pair, &mut watch, "the first pass").await;

    drop(proxy);
    let mut p = pair.primary().await;
    for i in 0..3 {
        p.append("INBOX", &[], None, &message("during-outage", i))
            .await;
    }
    p.logout().await;
    // Several failed attempts (backoff 200 ms doubling) while the primary is away.
    watch
        .wait_until("an outage report", DEADLINE, |w| {
            w.log().contains("pass failed")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(watch.is_running(), "log:\n{}", watch.log());

    let _back = Proxy::start_on(port, primary.addr(), FaultPlan::None);
    wait_in_step(&pair, &mut watch, "catching up after the outage").await;
    watch
        .wait_until("a recovery report", DEADLINE, |w| {
            w.log().contains("recovered after")
        })
        .await;
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);
}

/// How long the primary Dovecot stays down in [`watch_survives_a_killed_primary_dovecot`].
const OUTAGE: Duration = Duration::from_secs(30);

/// The primary Dovecot itself dies (SIGKILL to every process of a private instance: no BYE,
/// every connection cut, the port closed) for 30 s while the watch runs, just after new mail
/// arrived. The agent reports the outage (log, and `status --json`: last error, outage start,
/// failed attempts), keeps retrying the whole time, and catches up once the server is back on
/// the same port with its mail; the process never stops, nothing is removed on the recovery
/// side meanwhile, and nothing arrives twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_a_killed_primary_dovecot() {
    TestServer::dovecot_recovery().require();
    let dovecot = PrivateDovecot::start();
    let pair = TestPair::on(dovecot.server(), "wkill");
    seed(&pair, "kill").await;
    let dir = tempfile::tempdir().unwrap();
    // Polling at its default (60 s): after the outage, the retries and IDLE bring the changes.
    let config = config_file(dir.path(), &[&pair], "poll_interval = 60");
    let config_arg = config.display().to_string();
    // Retries at most 2 s apart (60 s by default): the catch-up after the restart is then
    // quick, and 30 s of outage hold a dozen attempts.
    let mut watch = Watch::spawn_with(
        &["--config", &config_arg],
        &dir.path().join("watch.log"),
        &[("MAILREPLICA_BACKOFF_CAP_MS", "2000")],
    );
    wait_in_step(&pair, &mut watch, "the first pass").await;

    // New mail, then the crash at once: the watch may or may not have copied it.
    let mut p = pair.primary().await;
    for i in 0..2 {
        p.append("INBOX", &[], None, &message("before-kill", i))
            .await;
    }
    p.logout().await;
    let down_at = Instant::now();
    dovecot.kill();
    assert!(!dovecot.server().is_reachable());
    let at_kill = pair.recovery_now().await;

    // The outage is reported: in the log and in `status` (within the deadline of the kill).
    let reported = watch
        .poll(
            "an outage report",
            DEADLINE.saturating_sub(down_at.elapsed()),
            async |w: &Watch| {
                let status = status_json(&config).await;
                let watch_record = status[0]["watch"].clone();
                if watch_record["last_error"].is_string() && w.log().contains("pass failed") {
                    Ok(watch_record)
                } else {
                    Err(format!("status: {status}"))
                }
            },
        )
        .await;
    let error = reported["last_error"].as_str().unwrap();
    assert!(
        error.contains(&dovecot.imap_port.to_string()),
        "the error names the server: {error}"
    );
    assert!(reported["outage_since"].is_u64(), "{reported}");

    // Down for 30 s: the process stays up and keeps trying.
    while down_at.elapsed() < OUTAGE {
        assert!(watch.is_running(), "log:\n{}", watch.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = status_json(&config).await;
    let during = &status[0]["watch"];
    assert!(
        during["failures"].as_u64().unwrap() >= 5,
        "one attempt at most every 2 s over 30 s: {during}\nlog:\n{}",
        watch.log()
    );
    assert!(during["last_error"].is_string(), "{during}");
    assert_eq!(during["outage_since"], reported["outage_since"], "{during}");
    assert_eq!(
        pair.recovery_now().await,
        at_kill,
        "the recovery side changed while the primary was down"
    );

    // Back on the same port, with its mail; more mail arrives.
    dovecot.restart();
    let mut p = pair.primary().await;
    for i in 0..2 {
        p.append("INBOX", &[], None, &message("after-restart", i))
            .await;
    }
    p.logout().await;
    wait_in_step(&pair, &mut watch, "catching up after the restart").await;
    watch
        .wait_until("a recovery report", DEADLINE, |w| {
            w.log().contains("recovered after")
        })
        .await;
    let status = status_json(&config).await;
    let after = &status[0]["watch"];
    assert!(after["last_error"].is_null(), "{after}");
    assert!(after["outage_since"].is_null(), "{after}");
    assert_eq!(after["failures"], 0, "{after}");

    // Everything exactly once: 4 seeded + 2 before the kill + 2 after the restart.
    let inbox = pair.recovery_inbox().await;
    each_once(&inbox, 8);
    assert!(watch.is_running(), "log:\n{}", watch.log());
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);
}

/// Asserts that `messages` are `n`, none twice (by Message-ID); their Message-IDs.
fn each_once(messages: &[TestMessage], n: usize) -> BTreeSet<&str> {
    let ids: BTreeSet<&str> = messages
        .iter()
        .filter_map(|m| m.message_id.as_deref())
        .collect();
    assert_eq!(messages.len(), n, "{messages:?}");
    assert_eq!(ids.len(), n, "duplicates: {messages:?}");
    ids
}

/// SIGTERM while a pass is stuck in the middle of an upload batch (the recovery server stops
/// answering at the 5th APPEND, MULTIAPPEND hidden so that there is one per message; then again
/// at the first APPEND, a MULTIAPPEND of the whole batch): the process exits 0 well within
/// 10 s, and a restart resolves the interrupted batch and goes on without duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_pass_exits_zero_and_a_restart_has_no_duplicates() {
    for (nth, multiappend) in [(5, false), (1, true)] {
        sigterm_during_an_upload(nth, multiappend).await;
    }
}

async fn sigterm_during_an_upload(nth: usize, multiappend: bool) {
    let recovery = TestServer::dovecot_recovery();
    TestServer::dovecot_primary().require();
    recovery.require();
    let pair = TestPair::new("wterm");
    let mut p = pair.primary().await;
    for i in 0..30 {
        p.append(
            "INBOX",
            &[],
            Some("01-Jan-2024 10:00:00 +0000"),
            &message("term", i),
        )
        .await;
    }
    p.logout().await;
    let proxy = Proxy::start(recovery.addr(), FaultPlan::stall_on("APPEND", nth));
    if !multiappend {
        proxy.hide_capability("MULTIAPPEND");
    }
    let dir = tempfile::tempdir().unwrap();
    let source = pair.source_url();
    let stalled_target = format!("imap+plain://{}@127.0.0.1:{}", pair.dst, proxy.port());
    let spawn = |log: &str| {
        Watch::spawn_pair(
            &source,
            &stalled_target,
            &dir.path().join("pair.redb"),
            &[],
            &dir.path().join(log),
        )
    };
    let mut watch = spawn("watch.log");
    assert!(
        proxy.wait_faults_fired(1, DEADLINE),
        "the pass never reached APPEND number {nth}; log:\n{}",
        watch.log()
    );
    let code = watch.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "log:\n{}", watch.log());
    assert!(
        watch.log().contains("stopped in the middle of a pass"),
        "log:\n{}",
        watch.log()
    );
    let port = proxy.port();
    drop(proxy);

    // The restart: the same pair (the same URLs), the recovery server answering again.
    let _healthy = Proxy::start_on(port, recovery.addr(), FaultPlan::None);
    let mut watch = spawn("watch2.log");
    wait_in_step(&pair, &mut watch, "the restart after SIGTERM").await;
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);
}

/// Dovecot allows 10 connections per user and IP by default; with the user's own 6 open (and
/// this test's 2 checking ones) the watch's 2 still fit: it is never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_fits_beside_a_users_own_connections() {
    TestServer::dovecot_primary().require();
    TestServer::dovecot_recovery().require();
    let pair = TestPair::new("wcap");
    seed(&pair, "cap").await;
    let mut own = Vec::new();
    for _ in 0..6 {
        own.push(pair.primary().await);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::spawn_pair(
        &pair.source_url(),
        &pair.target_url(),
        &dir.path().join("pair.redb"),
        &[],
        &dir.path().join("watch.log"),
    );
    wait_in_step(&pair, &mut watch, "the first pass").await;
    change_everything(&pair, "cap").await;
    wait_in_step(&pair, &mut watch, "the changes").await;
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);
    let log = watch.log();
    assert!(
        !log.to_ascii_lowercase()
            .contains("maximum number of connections")
            && !log.contains("pass failed")
            && !log.contains("IDLE) on the primary lost"),
        "log:\n{log}"
    );
    for c in own {
        c.logout().await;
    }
}

/// Time travel under a running watch. The primary of one pair is a private Dovecot; the admin
/// stops it, puts back an older copy of the user's mail directory (sdbox files and Dovecot's
/// index: the index is what makes UIDNEXT and HIGHESTMODSEQ go back) and starts it again, all
/// while the watch runs; then new mail arrives and takes a UID the pair already replicated for
/// another message. The pair freezes: `status` says why and names the folder, nothing on its
/// recovery side changes (nothing removed, nothing added), the process stays up and the other
/// pair (on the shared primary) goes on. `sync --accept-regression` reaches the running watch
/// (no password needed): the pair thaws, the new mail arrives, nothing the recovery side held
/// is removed, nothing twice, and the pair replicates again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_under_watch_freezes_the_pair_and_the_process_stays_up() {
    TestServer::dovecot_primary().require();
    TestServer::dovecot_recovery().require();
    let dovecot = PrivateDovecot::start();
    let pair = TestPair::on(dovecot.server(), "wtt");
    let other = TestPair::new("wtto");
    let mut p = pair.primary().await;
    for i in 0..5 {
        p.append("INBOX", &[], None, &message("tt", i)).await;
    }
    p.logout().await;
    seed(&other, "tto").await;
    let dir = tempfile::tempdir().unwrap();
    // Polling at its default (60 s): changes arrive by IDLE, and after the server's restarts by
    // the agent's retries.
    let config = config_file(dir.path(), &[&pair, &other], "poll_interval = 60");
    let config_arg = config.display().to_string();
    let state = dir.path().join("state/pair0.redb");
    let home = dovecot.mail_dir(&pair.src);
    let backup = dir.path().join("backup");
    let mut watch = Watch::spawn_with(
        &["--config", &config_arg],
        &dir.path().join("watch.log"),
        &[("MAILREPLICA_BACKOFF_CAP_MS", "1000")],
    );
    wait_in_step(&pair, &mut watch, "the first pass").await;
    wait_in_step(&other, &mut watch, "the first pass of the other pair").await;

    // The backup, taken with the server stopped (a consistent copy); then two more messages.
    dovecot.stop();
    copy_tree(&home, &backup);
    dovecot.restart();
    let mut p = pair.primary().await;
    for i in 5..7 {
        p.append("INBOX", &[], None, &message("tt", i)).await;
    }
    p.logout().await;
    wait_in_step(&pair, &mut watch, "two more messages").await;
    let before = pair.recovery_now().await;
    assert_eq!(before["INBOX"].len(), 7);
    // Not frozen yet: nothing to confirm, and nothing is left beside the state.
    let early = confirm_regression(&pair, &state).await;
    assert_eq!(early.code, 0, "{early:?}");
    assert!(early.stdout.contains("nothing to confirm"), "{early:?}");
    let mut leftover = state.as_os_str().to_owned();
    leftover.push(".accept-regression");
    assert!(!Path::new(&leftover).exists());

    // The restore, under the running watch; then new mail takes UID 6 again.
    dovecot.stop();
    std::fs::remove_dir_all(&home).unwrap();
    copy_tree(&backup, &home);
    dovecot.restart();
    let mut p = pair.primary().await;
    p.append("INBOX", &["\\Flagged"], None, &message("tt-new", 0))
        .await;
    assert_eq!(p.messages("INBOX").await.len(), 6);
    p.logout().await;

    // Frozen: `status` says why, with the folder.
    let frozen = watch
        .poll("the pair frozen", DEADLINE, async |_: &Watch| {
            let status = status_json(&config).await;
            match status[0]["frozen"]["message"].as_str() {
                Some(m) => Ok(m.to_string()),
                None => Err(format!("status: {status}")),
            }
        })
        .await;
    assert!(
        frozen.contains("went back in time") && frozen.contains("folder INBOX"),
        "{frozen}"
    );
    assert!(watch.log().contains("went back in time"), "{}", watch.log());
    // The other pair goes on meanwhile (several poll intervals of the frozen one).
    let mut o = other.primary().await;
    o.append("INBOX", &[], None, &message("tto-during", 1))
        .await;
    o.logout().await;
    wait_in_step(&other, &mut watch, "the other pair while one is frozen").await;
    assert!(watch.is_running(), "log:\n{}", watch.log());
    assert_eq!(
        pair.recovery_now().await,
        before,
        "the frozen pair's recovery side changed"
    );
    let status = status_json(&config).await;
    assert!(status[0]["frozen"]["message"].is_string(), "{status}");
    assert!(
        status[0]["watch"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("went back in time")),
        "{status}"
    );

    // The confirmation reaches the running watch.
    let confirm = confirm_regression(&pair, &state).await;
    assert_eq!(confirm.code, 0, "{confirm:?}\nlog:\n{}", watch.log());
    assert!(
        confirm.stdout.contains("took the confirmation"),
        "{confirm:?}"
    );
    let inbox = watch
        .poll(
            "the new mail after the confirmation",
            DEADLINE,
            async |_: &Watch| {
                let inbox = pair.recovery_inbox().await;
                if inbox.len() >= 8 {
                    Ok(inbox)
                } else {
                    Err(format!("{} messages", inbox.len()))
                }
            },
        )
        .await;
    // Everything the recovery side held is still there, plus the new message, nothing twice.
    let ids = each_once(&inbox, 8);
    assert!(ids.contains("<tt-new-0@watch.test>"), "{ids:?}");
    for i in 0..7 {
        assert!(
            ids.contains(format!("<tt-{i}@watch.test>").as_str()),
            "lost tt {i}: {ids:?}"
        );
    }
    let after = pair.recovery_now().await;
    for key in &before["INBOX"] {
        assert!(after["INBOX"].contains(key), "changed or lost: {key:?}");
    }
    let status = status_json(&config).await;
    assert!(status[0]["frozen"].is_null(), "{status}");
    assert!(status[0]["watch"]["last_error"].is_null(), "{status}");

    // Thawed for good: the next message is replicated too (IDLE is back).
    let mut p = pair.primary().await;
    p.append("INBOX", &[], None, &message("tt-new", 1)).await;
    p.logout().await;
    watch
        .poll("the next message", DEADLINE, async |w: &Watch| {
            let n = pair.recovery_inbox().await.len();
            assert!(n == 8 || n == 9, "{n} messages; log:\n{}", w.log());
            if n == 9 {
                Ok(())
            } else {
                Err(format!("{n} messages"))
            }
        })
        .await;
    assert!(watch.is_running(), "log:\n{}", watch.log());
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);
}

/// `sync --accept-regression` on `pair` with its state, no password (a running watch holds
/// the state: the command only hands the confirmation over).
async fn confirm_regression(pair: &TestPair, state: &Path) -> crate::mr::Run {
    on_pair(
        "sync",
        &pair.source_url(),
        &pair.target_url(),
        state,
        &["--accept-regression"],
        &[],
    )
    .await
}

fn copy_tree(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "cp -a {from:?} {to:?}: {out:?}");
}

/// 200 messages moved from INBOX to another folder on the primary arrive on the recovery side
/// as moves: no APPEND and no UID COPY reaches the recovery server (counted at a proxy), the
/// copies are placed by UID MOVE (the folder that lost messages is worked on first), nothing
/// is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_200_messages_is_replicated_as_moves() {
    let recovery = TestServer::dovecot_recovery();
    TestServer::dovecot_primary().require();
    recovery.require();
    let pair = TestPair::new("wmove");
    let mut p = pair.primary().await;
    p.create("Archive").await;
    for i in 0..200 {
        p.append(
            "INBOX",
            &[],
            Some("01-Jan-2024 10:00:00 +0000"),
            &message("move", i),
        )
        .await;
    }
    p.logout().await;
    let proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pair.redb").display().to_string();
    let mut watch = Watch::spawn_pair(
        &pair.source_url(),
        &format!("imap+plain://{}@127.0.0.1:{}", pair.dst, proxy.port()),
        Path::new(&state),
        &["--poll-interval", "5"],
        &dir.path().join("watch.log"),
    );
    wait_in_step(&pair, &mut watch, "the first pass").await;
    proxy.reset_counts();
    let mut p = pair.primary().await;
    let uids: Vec<u32> = p.messages("INBOX").await.iter().map(|m| m.uid).collect();
    p.move_uids("INBOX", &uids, "Archive").await;
    p.logout().await;
    wait_in_step(&pair, &mut watch, "the moves").await;
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);
    assert_eq!(proxy.count("APPEND"), 0, "{:?}", proxy.commands());
    // The folder that lost messages is worked on first, so the moves are UID MOVEs.
    let commands = proxy.commands();
    assert!(
        commands.iter().any(|c| c.contains("UID MOVE"))
            && !commands.iter().any(|c| c.contains("UID COPY")),
        "{commands:?}"
    );
    let log = watch.log();
    assert!(!log.contains("attention"), "removals held? log:\n{log}");
    let status = mailreplica_env(&["status", "--state", &state, "--json"], &[]).await;
    assert_eq!(status.code, 0, "{status:?}");
    assert_eq!(status.json()["held_removals"], serde_json::json!([]));
}

/// Three pairs on a primary server limited to 2 connections in all (`max_connections = 2`):
/// one pair idles, the others poll, passes take turns; every pair is kept in step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_share_a_servers_connection_limit() {
    TestServer::dovecot_primary().require();
    TestServer::dovecot_recovery().require();
    let pairs = [
        TestPair::new("wlima"),
        TestPair::new("wlimb"),
        TestPair::new("wlimc"),
    ];
    for (i, pair) in pairs.iter().enumerate() {
        seed(pair, &format!("limit{i}")).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let refs: Vec<&TestPair> = pairs.iter().collect();
    let config = config_file(dir.path(), &refs, "poll_interval = 1");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_connections = 20", "max_connections = 2");
    std::fs::write(&config, text).unwrap();
    let config_arg = config.display().to_string();
    let mut watch = Watch::spawn(&["--config", &config_arg], &dir.path().join("watch.log"));
    for pair in &pairs {
        wait_in_step(pair, &mut watch, "the first pass").await;
    }
    for (i, pair) in pairs.iter().enumerate() {
        change_everything(pair, &format!("limit{i}")).await;
    }
    for pair in &pairs {
        wait_in_step(pair, &mut watch, "the changes").await;
    }
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);
    let log = watch.log();
    assert!(
        log.contains("leaves no room for another IDLE"),
        "log:\n{log}"
    );
    assert!(!log.contains("pass failed"), "log:\n{log}");
}

/// `failover` while `watch` holds the pair's state: the request left beside the state is
/// taken by the running agent before anything else, replication stops (new primary mail stays
/// off the recovery side), the process stays up, and `status` says the pair is failed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_reaches_a_running_watch() {
    TestServer::dovecot_primary().require();
    TestServer::dovecot_recovery().require();
    let pair = TestPair::new("wfo");
    seed(&pair, "fo").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pair.redb");
    let (source, target) = (pair.source_url(), pair.target_url());
    let mut watch = Watch::spawn_pair(
        &source,
        &target,
        &state,
        &["--poll-interval", "30"],
        &dir.path().join("watch.log"),
    );
    wait_in_step(&pair, &mut watch, "the first pass").await;

    // No password: failover touches no server (the primary is down, its password may be out
    // of reach).
    let fo = on_pair("failover", &source, &target, &state, &[], &[]).await;
    assert_eq!(fo.code, 0, "{fo:?}");
    assert!(
        fo.stdout.contains("took the request"),
        "the running watch acknowledges within seconds: {}\nlog:\n{}",
        fo.stdout,
        watch.log()
    );
    // New mail on the primary is not replicated any more.
    let before = pair.recovery_inbox().await.len();
    let mut p = pair.primary().await;
    p.append("INBOX", &[], None, &message("fo", 99)).await;
    p.logout().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(watch.is_running(), "log:\n{}", watch.log());
    assert_eq!(pair.recovery_inbox().await.len(), before);
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);
    let state = state.display().to_string();
    let status = mailreplica_env(&["status", "--state", &state, "--json"], &[]).await;
    assert!(!status.json()["failed_over"].is_null(), "{}", status.stdout);
}
