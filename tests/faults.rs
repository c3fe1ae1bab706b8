//! Network faults and concurrent runs against the real Dovecot servers:
//!
//! * a sync whose target connections are cut at random points (exponentially distributed byte
//!   counts, mean 300 KB) completes with `--retries`, giving up at most the one message too
//!   large to get through (`gave_up`, exit 3);
//! * a second sync on a state in use fails fast (exit 75, naming the holder's pid), and the
//!   lock of a killed run is taken over silently;
//! * `--rebuild-state` after a full sync rebuilds the state by identity and uploads nothing.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::mr::{account, assert_same_accounts, mailreplica, mailreplica_env, sync, verify, Run};
use crate::support::corpus::big_message;
use crate::support::imap_client::TestImap;
use crate::support::proxy::{FaultPlan, Proxy};
use crate::support::servers::{ca_file, fresh_user, TestServer};

/// A text message of exactly `size` bytes (CRLF lines).
fn sized_message(tag: &str, i: usize, size: usize) -> Vec<u8> {
    let head = format!(
        "From: Sender {i} <s{i}@example.org>\r\nTo: r@example.net\r\nSubject: {tag} {i}\r\n\
         Message-ID: <{tag}-{i}@faults.mailreplica.test>\r\n\r\n"
    );
    let mut out = head.into_bytes();
    let mut line = 0;
    while out.len() + 80 <= size {
        out.extend_from_slice(format!("{tag} {i} line {line:05} ").as_bytes());
        while out.len() % 80 != 78 {
            out.push(b'a' + (line % 26) as u8);
        }
        out.extend_from_slice(b"\r\n");
        line += 1;
    }
    while out.len() + 2 < size {
        out.push(b'z');
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn sync_args<'a>(source: &'a str, target: &'a str, state: &'a str) -> Vec<&'a str> {
    vec![
        "sync", "--source", source, "--target", target, "--state", state, "--json",
    ]
}

fn fast_retry_env() -> [(&'static str, &'static str); 3] {
    [
        ("MAILREPLICA_SOURCE_PASSWORD", "test"),
        ("MAILREPLICA_TARGET_PASSWORD", "test"),
        ("MAILREPLICA_BACKOFF_MS", "10"),
    ]
}

/// ~300 messages (~3 MB, 5 to 20 KB each, plus one 2 MB message) synced to the recovery through a
/// proxy that cuts every connection after an exponentially distributed number of bytes (mean
/// 300 KB): the sync completes; only the 2 MB message may be given up.
#[tokio::test(flavor = "multi_thread")]
async fn random_connection_drops_are_survived() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("dropsrc"), fresh_user("dropdst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    p.create("Archive").await;
    let mut total_bytes = 0;
    let n = 300;
    for i in 0..n {
        let folder = if i % 3 == 0 { "Archive" } else { "INBOX" };
        let size = 5_000 + (i * 7919) % 15_000;
        let bytes = sized_message("drop", i, size);
        total_bytes += bytes.len();
        let flags: &[&str] = match i % 4 {
            0 => &[],
            1 => &["\\Seen"],
            2 => &["\\Seen", "\\Flagged"],
            _ => &["$Label1"],
        };
        let date = format!("{:02}-Mar-2024 10:{:02}:00 +0000", 1 + i % 28, i % 60);
        p.append(folder, flags, Some(&date), &bytes).await;
    }
    let big = big_message(2 << 20);
    total_bytes += big.len();
    let big_uid = p
        .append(
            "INBOX",
            &["\\Seen"],
            Some("15-Mar-2024 12:00:00 +0000"),
            &big,
        )
        .await
        .expect("Dovecot answers APPENDUID");
    let expected = account(&mut p).await;
    p.logout().await;
    assert!(total_bytes > 3 << 20, "{total_bytes} bytes");

    let proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    proxy.set_plan_always(FaultPlan::DropRandomly {
        mean_bytes: 300_000,
        seed: 20240315,
    });
    let source = primary.url(&src_user);
    let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.redb").to_string_lossy().into_owned();
    let mut args = sync_args(&source, &target, &state);
    args.extend(["--retries", "100"]);
    let run = mailreplica_env(&args, &fast_retry_env()).await;
    let drops = proxy.faults_fired();
    let connections = proxy.connections();
    drop(proxy);
    eprintln!(
        "faults: {drops} connections cut out of {connections}; exit {}; {}",
        run.code, run.stdout
    );
    assert!(drops > 0, "the proxy never cut a connection");
    let json = run.json();
    let gave_up: Vec<String> = match &json["gave_up"] {
        serde_json::Value::Null => Vec::new(),
        v => v
            .as_array()
            .unwrap_or_else(|| panic!("gave_up is not an array: {json}"))
            .iter()
            .map(|g| g.as_str().expect("gave_up holds strings").to_string())
            .collect(),
    };
    assert_eq!(json["refused"], serde_json::json!([]), "{json}");

    let mut r = TestImap::connect(&recovery, &dst_user).await;
    let got = account(&mut r).await;
    r.logout().await;
    eprintln!(
        "faults: the target holds {} of {} messages; {} given up",
        got.values().map(Vec::len).sum::<usize>(),
        expected.values().map(Vec::len).sum::<usize>(),
        gave_up.len()
    );
    let verify_json = mailreplica(&[
        "verify",
        "--source",
        &source,
        "--target",
        &recovery.url(&dst_user),
        "--json",
    ])
    .await;
    if gave_up.is_empty() {
        assert_eq!(run.code, 0, "{run:?}");
        assert_same_accounts(&expected, &got);
        assert_eq!(verify_json.code, 0, "{verify_json:?}");
    } else {
        assert_eq!(run.code, 3, "a message was given up: {run:?}");
        assert_eq!(
            gave_up.len(),
            1,
            "only the 2 MB message may be given up: {gave_up:?}"
        );
        assert!(
            gave_up[0].contains("INBOX") && gave_up[0].contains(&big_uid.to_string()),
            "gave_up must name the folder and the source uid {big_uid}: {gave_up:?}"
        );
        // Everything else arrived, exactly once.
        let big_sha = crate::support::imap_client::sha256_hex(&big);
        let mut without_big = expected.clone();
        let inbox = without_big.get_mut("INBOX").unwrap();
        let pos = inbox.iter().position(|k| k.0 == big_sha).unwrap();
        inbox.remove(pos);
        assert_same_accounts(&without_big, &got);
        assert_eq!(verify_json.code, 1, "{verify_json:?}");
        let diffs = verify_json.json()["differences"].clone();
        let diffs = diffs.as_array().expect("differences");
        assert_eq!(
            diffs.len(),
            1,
            "only the given-up message may differ: {diffs:?}"
        );
        assert_eq!(diffs[0]["folder"], "INBOX", "{diffs:?}");
    }
}

/// Runs `sync` in the background (through `target`), returning the child.
fn spawn_sync(source: &str, target: &str, state: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_mailreplica"))
        .args(sync_args(source, target, state))
        .arg("--ca-file")
        .arg(ca_file())
        .env("MAILREPLICA_SOURCE_PASSWORD", "test")
        .env("MAILREPLICA_TARGET_PASSWORD", "test")
        .env_remove("MAILREPLICA_CRASH_AT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mailreplica")
}

/// A second sync on a state file in use fails fast with exit 75 and names the holder; once the
/// holder is killed, its stale lock is taken over silently.
#[tokio::test(flavor = "multi_thread")]
async fn second_sync_on_a_state_in_use_fails_fast() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("locksrc"), fresh_user("lockdst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    for i in 0..5 {
        p.append("INBOX", &[], None, &sized_message("lock", i, 2000))
            .await;
    }
    let expected = account(&mut p).await;
    p.logout().await;

    // The first sync hangs on its first APPEND (the proxy stalls it).
    let proxy = Proxy::start(recovery.addr(), FaultPlan::stall_on("APPEND", 1));
    let source = primary.url(&src_user);
    let stalled_target = format!("imap+plain://{dst_user}@127.0.0.1:{}", proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.redb").to_string_lossy().into_owned();
    let mut first = spawn_sync(&source, &stalled_target, &state);
    let pid = first.id();
    let stalled = {
        let proxy = &proxy;
        tokio::task::block_in_place(|| proxy.wait_faults_fired(1, Duration::from_secs(60)))
    };
    if !stalled {
        let _ = first.kill();
        let out = first.wait_with_output().unwrap();
        panic!(
            "the first sync never reached its first APPEND: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first sync must still be running"
    );

    // Same state and pair: refused while the first one runs (the lock is taken before any
    // connection is made).
    let second = mailreplica_env(
        &sync_args(&source, &stalled_target, &state),
        &fast_retry_env(),
    )
    .await;
    let still_running = first.try_wait().unwrap().is_none();
    first.kill().unwrap();
    let status = first.wait().unwrap();
    assert!(still_running, "the first sync ended early: {status}");
    assert_eq!(status.signal(), Some(9), "{status}");
    assert_eq!(second.code, 75, "{second:?}");
    assert!(
        second.stderr.contains("in use by mailreplica process")
            && second.stderr.contains(&pid.to_string()),
        "stderr must name the holder (pid {pid}): {second:?}"
    );
    assert!(second.stdout.trim().is_empty(), "{second:?}");

    // The killed holder left its lock behind: the next sync (same pair, the proxy no longer
    // stalls) takes it over silently and completes.
    proxy.set_plan(FaultPlan::None);
    proxy.close_connections();
    let third = mailreplica_env(
        &sync_args(&source, &stalled_target, &state),
        &fast_retry_env(),
    )
    .await;
    assert_eq!(third.code, 0, "{third:?}");
    assert!(
        !third.stderr.contains("in use"),
        "a stale lock is taken over silently: {third:?}"
    );
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&expected, &account(&mut r).await);
}

/// `--rebuild-state` after a full sync: the state is rebuilt by identity (duplicates included),
/// nothing is uploaded, and the next pass has nothing to do.
#[tokio::test(flavor = "multi_thread")]
async fn rebuild_state_uploads_nothing() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("rebsrc"), fresh_user("rebdst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    p.create("Archive/2024").await;
    for i in 0..30 {
        let folder = if i % 2 == 0 { "INBOX" } else { "Archive/2024" };
        let flags: &[&str] = if i % 3 == 0 { &["\\Seen"] } else { &[] };
        let date = format!("{:02}-Apr-2024 08:00:00 +0200", 1 + i % 28);
        let bytes = sized_message("rebuild", i % 25, 3000); // 5 byte-identical pairs across folders
        p.append(folder, flags, Some(&date), &bytes).await;
    }
    let twin = sized_message("twin", 0, 1500);
    for flags in [&["\\Flagged"][..], &[][..]] {
        p.append("INBOX", flags, Some("01-Jan-2024 00:00:00 +0000"), &twin)
            .await;
    }
    let expected = account(&mut p).await;
    p.logout().await;

    let proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    let source = primary.url(&src_user);
    let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.redb");
    let first = sync(&source, &target, &state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(proxy.appended(), 32);

    proxy.reset_counts();
    let rebuilt: Run = sync(&source, &target, &state, &["--rebuild-state"]).await;
    assert_eq!(rebuilt.code, 0, "{rebuilt:?}");
    assert_eq!(
        proxy.count("APPEND"),
        0,
        "--rebuild-state uploaded: {:?}",
        proxy.commands()
    );
    assert_eq!(rebuilt.count("copied"), 0, "{}", rebuilt.stdout);
    assert_eq!(rebuilt.count("adopted"), 32, "{}", rebuilt.stdout);

    // The rebuilt state is complete: the next pass changes nothing.
    proxy.reset_counts();
    let next = sync(&source, &target, &state, &[]).await;
    assert_eq!(next.code, 0, "{next:?}");
    assert_eq!(
        proxy.count("APPEND") + proxy.count("STORE") + proxy.count("EXPUNGE"),
        0,
        "{:?}",
        proxy.commands()
    );
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&expected, &account(&mut r).await);
    let v = verify(&source, &recovery.url(&dst_user)).await;
    assert_eq!(v.code, 0, "{v:?}");
}

/// A transfer from the source cut in the middle of a message's literal is never uploaded
/// truncated: the pass fails, is retried, and the message arrives whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_transfer_cut_mid_literal_is_never_uploaded_truncated() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("cutsrc"), fresh_user("cutdst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    let big = big_message(1 << 20);
    p.append(
        "INBOX",
        &["\\Seen"],
        Some("15-Mar-2024 12:00:00 +0000"),
        &big,
    )
    .await;
    let expected = account(&mut p).await;
    // The first connection to the source is cut 300 KB into the answers, inside the literal.
    let proxy = Proxy::start(primary.addr(), FaultPlan::DropAfterServerBytes(300_000));
    let source = format!("imap+plain://{src_user}@127.0.0.1:{}", proxy.port());
    let target = recovery.url(&dst_user);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.redb").to_string_lossy().into_owned();
    let mut args = sync_args(&source, &target, &state);
    args.extend(["--retries", "3"]);
    let run = mailreplica_env(&args, &fast_retry_env()).await;
    assert!(
        proxy.faults_fired() >= 1,
        "the proxy never cut the transfer"
    );
    assert_eq!(run.code, 0, "{run:?}");
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&expected, &account(&mut r).await);
}

/// The target answers one APPEND "slow down" (as Gmail, Office 365 or a RFC 5530 server
/// would): the message (or, in a MULTIAPPEND, every message of the command) is sent again
/// after the back-off and arrives exactly once, the run succeeds, nothing is reported
/// refused, and the summary counts the back-off. Each answer is tried with one message per
/// APPEND (MULTIAPPEND hidden; the 5th APPEND refused) and with MULTIAPPEND (the first one
/// refused).
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_append_is_sent_again_and_arrives_once() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    for (n, (answer, multiappend)) in [
        "[THROTTLED] Account exceeded command or bandwidth limits",
        "[LIMIT] Too many commands, slow down",
        "Request is throttled. Suggested Backoff Time: 200 milliseconds",
    ]
    .into_iter()
    .flat_map(|answer| [(answer, false), (answer, true)])
    .enumerate()
    {
        let (src_user, dst_user) = (fresh_user("thrsrc"), fresh_user("thrdst"));
        let mut p = TestImap::connect(&primary, &src_user).await;
        p.create("Archive").await;
        for i in 0..12 {
            let folder = if i % 3 == 0 { "Archive" } else { "INBOX" };
            let date = format!("{:02}-May-2024 09:00:00 +0000", 1 + i);
            p.append(
                folder,
                &["\\Seen"],
                Some(&date),
                &sized_message("thr", i, 3000),
            )
            .await;
        }
        let expected = account(&mut p).await;
        p.logout().await;

        let nth = if multiappend { 1 } else { 5 };
        let proxy = Proxy::start(recovery.addr(), FaultPlan::refuse("APPEND", nth, answer));
        if !multiappend {
            proxy.hide_capability("MULTIAPPEND");
        }
        let source = primary.url(&src_user);
        let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", proxy.port());
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.redb").to_string_lossy().into_owned();
        let args = [
            "migrate",
            "--source",
            &source,
            "--target",
            &target,
            "--state",
            &state,
            "--json",
            "--no-verify",
        ];
        let run = mailreplica_env(&args, &fast_retry_env()).await;
        assert_eq!(run.code, 0, "case {n} ({answer}): {run:?}");
        assert_eq!(
            proxy.faults_fired(),
            1,
            "case {n}: the proxy refused nothing"
        );
        assert_eq!(proxy.faulted_commands().len(), 1);
        // Every message got through once (the refused ones in a command sent again).
        assert_eq!(proxy.appended(), 12, "case {n}: {:?}", proxy.commands());
        let json = run.json();
        assert_eq!(json["refused"], serde_json::json!([]), "case {n}: {json}");
        assert_eq!(json["copied"], 12, "case {n}: {json}");
        assert_eq!(json["pace"]["server_backoffs"], 1, "case {n}: {json}");
        drop(proxy);
        let mut r = TestImap::connect(&recovery, &dst_user).await;
        assert_same_accounts(&expected, &account(&mut r).await);
        r.logout().await;
    }
}

/// The target refuses a whole MULTIAPPEND for a reason that may belong to one message (here a
/// NO for an invalid message): its messages are sent again one per APPEND, each gets its
/// own answer, and every one arrives exactly once, with nothing reported refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_multiappend_is_sent_again_one_message_per_append() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("mapsrc"), fresh_user("mapdst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    for i in 0..8 {
        let date = format!("{:02}-May-2024 09:00:00 +0000", 1 + i);
        p.append(
            "INBOX",
            &["\\Seen"],
            Some(&date),
            &sized_message("map", i, 3000),
        )
        .await;
    }
    let expected = account(&mut p).await;
    p.logout().await;

    let proxy = Proxy::start(
        recovery.addr(),
        FaultPlan::refuse("APPEND", 1, "Invalid message header"),
    );
    let source = primary.url(&src_user);
    let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.redb");
    let run = sync(&source, &target, &state, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let refused = proxy.faulted_commands();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].literals.len(), 8, "one MULTIAPPEND: {refused:?}");
    let appends: Vec<_> = proxy
        .commands_detailed()
        .into_iter()
        .filter(|c| c.verb == "APPEND")
        .collect();
    assert_eq!(appends.len(), 8, "one APPEND per message: {appends:?}");
    assert!(appends.iter().all(|c| c.literals.len() == 1), "{appends:?}");
    assert_eq!(run.count("copied"), 8, "{}", run.stdout);
    assert_eq!(
        run.json()["refused"],
        serde_json::json!([]),
        "{}",
        run.stdout
    );
    drop(proxy);
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&expected, &account(&mut r).await);
}

/// A rate-limited migration through the CLI: the limit is said (one line on stderr, and in
/// the JSON summary) and everything arrives. Speed itself is measured by
/// scripts/bench-throttle, not asserted here.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_migration_says_its_limit_and_copies_everything() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("ratesrc"), fresh_user("ratedst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    for i in 0..20 {
        p.append("INBOX", &[], None, &sized_message("rate", i, 2000))
            .await;
    }
    let expected = account(&mut p).await;
    p.logout().await;
    let (source, target) = (primary.url(&src_user), recovery.url(&dst_user));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.redb").to_string_lossy().into_owned();
    let json = mailreplica(&[
        "migrate",
        "--source",
        &source,
        "--target",
        &target,
        "--state",
        &state,
        "--json",
        "--no-verify",
        "--max-messages-per-second",
        "40",
        "--max-bytes-per-second",
        "1M",
    ])
    .await;
    assert_eq!(json.code, 0, "{json:?}");
    let summary = json.json();
    assert_eq!(
        summary["pace"]["limit"], "1 MiB/s and 40 messages/s",
        "{summary}"
    );
    assert_eq!(summary["pace"]["max_messages_per_second"], 40.0);
    assert_eq!(summary["pace"]["max_bytes_per_second"], 1 << 20);
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&expected, &account(&mut r).await);
    r.logout().await;
    // Without --json the limit in effect is one line on stderr and one in the summary.
    let text = mailreplica(&[
        "sync",
        "--source",
        &source,
        "--target",
        &target,
        "--state",
        &state,
        "--max-messages-per-second",
        "0.5",
    ])
    .await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stderr.contains(
            "rate limit on the target: at most 0.5 messages/s, shared by every connection"
        ),
        "{text:?}"
    );
    assert!(
        text.stdout
            .contains("rate limit on the target: 0.5 messages/s"),
        "{text:?}"
    );
}
