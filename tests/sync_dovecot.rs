//! One-way sync between two real Dovecot servers: the acceptance scenario of the walking
//! skeleton (corpus of 500+ messages, incremental passes, APPENDs counted on the wire).

use crate::mr::{account, assert_same_accounts, sync, verify};
use crate::support::corpus::{big_message, Corpus};
use crate::support::imap_client::TestImap;
use crate::support::proxy::{FaultPlan, Proxy};
use crate::support::servers::{fresh_user, TestServer};

#[tokio::test(flavor = "multi_thread")]
async fn corpus_replicates_exactly_then_incrementally() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let src_user = fresh_user("accsrc");
    let dst_user = fresh_user("accdst");
    let corpus = Corpus::load();
    let mut p = TestImap::connect(&primary, &src_user).await;
    corpus.seed(&mut p).await;
    p.append(
        "INBOX",
        &["\\Seen", "$Big"],
        Some("01-Feb-2024 10:00:00 +0100"),
        &big_message(6 << 20),
    )
    .await;

    let before = account(&mut p).await;
    let total: usize = before.values().map(Vec::len).sum();
    assert!(
        total >= 500 && before.len() >= 6,
        "{total} messages in {} folders",
        before.len()
    );
    assert!(before.contains_key("Données/Été") && before["Empty"].is_empty());

    // The target goes through a counting proxy, in plaintext so the proxy sees the commands.
    let proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    let source = primary.url(&src_user);
    let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pair.redb");

    let first = sync(&source, &target, &state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    // The corpus holds the same file in several folders: those are placed by COPY.
    assert_eq!(
        first.count("copied") + first.count("copied_on_target"),
        total as u64
    );
    assert_eq!(
        proxy.count("COPY"),
        first.count("copied_on_target") as usize
    );
    assert_eq!(proxy.appended(), first.count("copied") as usize);

    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&before, &account(&mut r).await);
    let v = verify(&source, &recovery.url(&dst_user)).await;
    assert_eq!(v.code, 0, "{v:?}");

    // A second pass right after transfers nothing and writes nothing.
    proxy.reset_counts();
    let second = sync(&source, &target, &state, &[]).await;
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(
        (
            second.count("copied"),
            second.count("flags_updated"),
            second.count("removed")
        ),
        (0, 0, 0)
    );
    assert_eq!(
        proxy.count("APPEND") + proxy.count("STORE") + proxy.count("EXPUNGE"),
        0,
        "{:?}",
        proxy.commands()
    );

    // Change the primary: 3 new messages, 4 flag changes, 2 expunges in a 120-message folder.
    for i in 0..3 {
        let body = format!(
            "From: a@example.org\r\nSubject: new {i}\r\nMessage-ID: <new{i}@x>\r\n\r\nnew {i}\r\n"
        );
        p.append(
            if i == 0 { "Sent" } else { "INBOX" },
            &["$New"],
            Some("02-Feb-2024 10:00:00 +0000"),
            body.as_bytes(),
        )
        .await;
    }
    let inbox = p.messages("INBOX").await;
    p.set_flags("INBOX", inbox[0].uid, &["\\Flagged", "$Mr1"], &[])
        .await;
    if inbox[1].flags.contains("\\Seen") {
        p.set_flags("INBOX", inbox[1].uid, &[], &["\\Seen"]).await;
    } else {
        p.set_flags("INBOX", inbox[1].uid, &["\\Seen"], &[]).await;
    }
    p.set_flags("INBOX", inbox[2].uid, &["$Label2", "\\Answered"], &[])
        .await;
    let notes = p.messages("Projects/Alpha/Notes").await;
    p.set_flags(
        "Projects/Alpha/Notes",
        notes[0].uid,
        &["Work-Item", "$Mr4"],
        &[],
    )
    .await;
    let archive = p.messages("Archive/2024").await;
    assert!(archive.len() > 40);
    p.expunge_uids("Archive/2024", &[archive[3].uid, archive[10].uid])
        .await;
    let changed = account(&mut p).await;

    proxy.reset_counts();
    let third = sync(&source, &target, &state, &[]).await;
    assert_eq!(third.code, 0, "{third:?}");
    assert_eq!(
        (
            third.count("copied"),
            third.count("flags_updated"),
            third.count("removed")
        ),
        (3, 4, 2),
        "{}",
        third.stdout
    );
    assert_eq!(proxy.appended(), 3);
    assert_same_accounts(&changed, &account(&mut r).await);
    let v = verify(&source, &recovery.url(&dst_user)).await;
    assert_eq!(v.code, 0, "{v:?}");

    // The sync never changed the primary: flags as before, and a message delivered while no
    // client had INBOX selected is still \Recent for the next client after a sync read it.
    assert_same_accounts(&changed, &account(&mut p).await);
    p.logout().await;
    let mut q = TestImap::connect(&primary, &src_user).await;
    let late = q
        .append("INBOX", &[], None, b"Subject: late\r\n\r\nlate\r\n")
        .await
        .expect("Dovecot answers APPENDUID");
    q.logout().await;
    let fourth = sync(&source, &target, &state, &[]).await;
    assert_eq!((fourth.code, fourth.count("copied")), (0, 1), "{fourth:?}");
    let mut z = TestImap::connect(&primary, &src_user).await;
    let recent = z.recent_flags("INBOX").await;
    assert!(
        recent.contains(&(late, true)),
        "uid {late} lost \\Recent: {recent:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_changes_nothing() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("drysrc"), fresh_user("drydst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    p.create("Folder").await;
    p.append("Folder", &["\\Seen"], None, b"Subject: x\r\n\r\nbody\r\n")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.redb");
    let run = sync(
        &primary.url(&src_user),
        &recovery.url(&dst_user),
        &state,
        &["--dry-run"],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let actions = run.json()["actions"].to_string();
    assert!(
        actions.contains("create folder Folder") && actions.contains("copy Folder"),
        "{actions}"
    );
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert!(!r.folders().await.contains(&"Folder".to_string()));
    assert!(r.messages("INBOX").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_state_adopts_instead_of_duplicating() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("lostsrc"), fresh_user("lostdst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    let body = b"From: a@example.org\r\nSubject: twin\r\n\r\nsame bytes\r\n";
    p.append(
        "INBOX",
        &["\\Seen"],
        Some("01-Jan-2024 00:00:00 +0000"),
        body,
    )
    .await;
    p.append(
        "INBOX",
        &["\\Flagged"],
        Some("01-Jan-2024 00:00:00 +0000"),
        body,
    )
    .await;
    p.append("INBOX", &[], None, b"Subject: other\r\n\r\nx\r\n")
        .await;
    let (source, target) = (primary.url(&src_user), recovery.url(&dst_user));
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        sync(&source, &target, &dir.path().join("a.redb"), &[])
            .await
            .code,
        0
    );
    let again = sync(&source, &target, &dir.path().join("fresh.redb"), &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        (again.count("copied"), again.count("adopted")),
        (0, 3),
        "{}",
        again.stdout
    );
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&account(&mut p).await, &account(&mut r).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emptied_inbox_is_held_until_allowed() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("holdsrc"), fresh_user("holddst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    for i in 0..200 {
        p.append(
            "INBOX",
            &[],
            None,
            format!("Subject: m{i}\r\n\r\n{i}\r\n").as_bytes(),
        )
        .await;
    }
    let (source, target) = (primary.url(&src_user), recovery.url(&dst_user));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.redb");
    assert_eq!(sync(&source, &target, &state, &[]).await.code, 0);
    let uids: Vec<u32> = p.messages("INBOX").await.iter().map(|m| m.uid).collect();
    p.expunge_uids("INBOX", &uids).await;
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    // The primary's INBOX reads empty: held, and still held by a later pass.
    for _ in 0..2 {
        let held = sync(&source, &target, &state, &[]).await;
        assert_eq!(held.code, 3, "{held:?}");
        assert_eq!(
            (held.count("removed"), held.count("removals_held")),
            (0, 200)
        );
        assert!(held.stdout.contains("reads empty"), "{}", held.stdout);
        assert_eq!(r.messages("INBOX").await.len(), 200);
    }
    let status_args = ["status", "--state", state.to_str().unwrap()];
    let status = crate::mr::mailreplica(&status_args).await;
    assert_eq!(status.code, 3, "{status:?}");
    assert!(
        status.stdout.contains("held removals: 200") && status.stdout.contains("INBOX: 200"),
        "{}",
        status.stdout
    );
    let allowed = sync(&source, &target, &state, &["--allow-deletions"]).await;
    assert_eq!(
        (allowed.code, allowed.count("removed")),
        (0, 200),
        "{allowed:?}"
    );
    assert!(r.messages("INBOX").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuilding_the_state_reads_bodies_only_for_ambiguous_messages() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("rbsrc"), fresh_user("rbdst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    let corpus = Corpus::load();
    corpus.seed(&mut p).await;
    let corpus_bytes: u64 = corpus.messages.iter().map(|m| m.bytes.len() as u64).sum();

    // Both sides through proxies in plaintext, so bytes and commands can be counted.
    let src_proxy = Proxy::start(primary.addr(), FaultPlan::None);
    let dst_proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    let source = format!("imap+plain://{src_user}@127.0.0.1:{}", src_proxy.port());
    let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", dst_proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.redb");
    assert_eq!(sync(&source, &target, &state, &[]).await.code, 0);

    src_proxy.reset_counts();
    dst_proxy.reset_counts();
    let rebuilt = sync(&source, &target, &state, &["--rebuild-state"]).await;
    assert_eq!(rebuilt.code, 0, "{rebuilt:?}");
    assert_eq!(rebuilt.count("copied"), 0, "{}", rebuilt.stdout);
    assert_eq!(
        rebuilt.count("adopted"),
        corpus.messages.len() as u64,
        "{}",
        rebuilt.stdout
    );
    assert_eq!(dst_proxy.count("APPEND"), 0);
    // Unambiguous messages (unique size and INTERNALDATE, same Message-ID) are matched from
    // headers; only the ambiguous ones (identical copies, no Message-ID) are read whole.
    let (from_source, _) = src_proxy.bytes();
    let (from_target, _) = dst_proxy.bytes();
    assert!(
        from_source < corpus_bytes / 10,
        "read {from_source} bytes from the source for a {corpus_bytes}-byte corpus"
    );
    assert!(
        from_target < corpus_bytes / 10,
        "read {from_target} bytes from the target for a {corpus_bytes}-byte corpus"
    );

    // The rebuilt state is complete: the next pass does nothing.
    dst_proxy.reset_counts();
    let again = sync(&source, &target, &state, &[]).await;
    assert_eq!(
        (again.code, again.count("copied"), again.count("adopted")),
        (0, 0, 0),
        "{again:?}"
    );
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&account(&mut p).await, &account(&mut r).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_in_five_folders_is_uploaded_once() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("fivesrc"), fresh_user("fivedst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    let big = big_message(400_000);
    let folders = ["INBOX", "A", "B", "C", "D"];
    for (i, f) in folders.iter().enumerate() {
        if *f != "INBOX" {
            p.create(f).await;
        }
        let flags: &[&str] = if i % 2 == 0 {
            &["\\Seen"]
        } else {
            &["$Label1"]
        };
        p.append(f, flags, Some("05-May-2024 10:00:00 +0000"), &big)
            .await;
    }
    let proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    let source = primary.url(&src_user);
    let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let run = sync(&source, &target, &dir.path().join("a.redb"), &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        (run.count("copied"), run.count("copied_on_target")),
        (1, 4),
        "{}",
        run.stdout
    );
    assert_eq!(proxy.appended(), 1);
    let (_, to_server) = proxy.bytes();
    assert!(
        to_server < big.len() as u64 * 11 / 10,
        "{to_server} bytes sent for one {}-byte message",
        big.len()
    );
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&account(&mut p).await, &account(&mut r).await);

    // A lost state: nothing is uploaded again.
    proxy.reset_counts();
    let again = sync(&source, &target, &dir.path().join("fresh.redb"), &[]).await;
    assert_eq!(
        (again.code, again.count("copied"), again.count("adopted")),
        (0, 0, 5),
        "{again:?}"
    );
    assert_eq!(proxy.count("APPEND") + proxy.count("COPY"), 0);
}
