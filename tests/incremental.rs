//! Incremental change detection against real Dovecot: what a pass costs on the wire when nothing
//! changed, every kind of change propagating with QRESYNC, with CONDSTORE only and without
//! either (commands counted at proxies on both sides), and time travel freezing the pair.

use std::path::Path;

use crate::mr::{
    account, assert_same_accounts, mailreplica, on_pair, sync, verify, Run, PASSWORDS,
};
use crate::support::imap_client::TestImap;
use crate::support::proxy::{FaultPlan, Proxy};
use crate::support::servers::{dovecot_mail_dir, fresh_user, TestServer};

const FOLDERS: [(&str, usize); 3] = [("INBOX", 20), ("Work", 15), ("Lists", 10)];

fn message(folder: &str, i: usize) -> Vec<u8> {
    format!(
        "From: sender{i}@example.org\r\nTo: user@example.org\r\nSubject: {folder} message {i}\r\nMessage-ID: <{folder}-{i}@incremental.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody of {folder} message {i}\r\n"
    )
    .into_bytes()
}

async fn seed(p: &mut TestImap) {
    for (folder, n) in FOLDERS {
        if folder != "INBOX" {
            p.create(folder).await;
        }
        for i in 0..n {
            let flags: &[&str] = if i % 3 == 0 { &["\\Seen"] } else { &[] };
            p.append(
                folder,
                flags,
                Some("01-Jan-2024 10:00:00 +0000"),
                &message(folder, i),
            )
            .await;
        }
    }
}

/// `sync --json` with both passwords and `env`.
async fn sync_env(source: &str, target: &str, state: &Path, env: &[(&str, &str)]) -> Run {
    let mut all = PASSWORDS.to_vec();
    all.extend_from_slice(env);
    on_pair("sync", source, target, state, &["--json"], &all).await
}

/// Commands that name or touch single messages, or list a folder.
fn per_message(commands: &[String]) -> Vec<String> {
    commands
        .iter()
        .filter(|c| {
            let upper = c.to_ascii_uppercase();
            [
                "FETCH", "STORE", "APPEND", "EXPUNGE", "COPY", "MOVE", "SEARCH",
            ]
            .iter()
            .any(|v| upper.contains(v))
        })
        .cloned()
        .collect()
}

/// Which change detection the source offers in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detection {
    Qresync,
    CondstoreOnly,
    Rescan,
}

async fn changes_propagate(detection: Detection) {
    let primary = match detection {
        Detection::Rescan => TestServer::dovecot_nocondstore(),
        _ => TestServer::dovecot_primary(),
    };
    let recovery = TestServer::dovecot_recovery();
    let env: &[(&str, &str)] = match detection {
        Detection::CondstoreOnly => &[("MAILREPLICA_TEST_NO_QRESYNC", "1")],
        _ => &[],
    };
    let src_user = fresh_user("incsrc");
    let dst_user = fresh_user("incdst");
    let mut p = TestImap::connect(&primary, &src_user).await;
    seed(&mut p).await;

    let src_proxy = Proxy::start(primary.addr(), FaultPlan::None);
    let dst_proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    let source = format!("imap+plain://{src_user}@127.0.0.1:{}", src_proxy.port());
    let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", dst_proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pair.redb");

    let first = sync_env(&source, &target, &state, env).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.count("copied"), 45);
    // The second pass sees the target as the first left it (its own writes): it reads only
    // that, and from then on an unchanged account costs no per-message command at all.
    let second = sync_env(&source, &target, &state, env).await;
    assert_eq!(second.code, 0, "{second:?}");
    src_proxy.reset_counts();
    dst_proxy.reset_counts();
    let noop = sync_env(&source, &target, &state, env).await;
    assert_eq!(noop.code, 0, "{noop:?}");
    assert_eq!(
        (
            noop.count("copied"),
            noop.count("flags_updated"),
            noop.count("removed")
        ),
        (0, 0, 0)
    );
    assert!(
        per_message(&dst_proxy.commands()).is_empty(),
        "target: {:?}",
        dst_proxy.commands()
    );
    match detection {
        Detection::Rescan => {
            // Without HIGHESTMODSEQ nothing proves a folder unchanged: flags are rescanned,
            // but sizes and dates are not fetched again.
            assert_eq!(noop.count("folders_unchanged"), 0, "{noop:?}");
            assert!(
                src_proxy
                    .commands()
                    .iter()
                    .all(|c| !c.contains("INTERNALDATE")),
                "source: {:?}",
                src_proxy.commands()
            );
        }
        _ => {
            assert_eq!(noop.count("folders_unchanged"), 3, "{noop:?}");
            let src = src_proxy.commands();
            assert!(per_message(&src).is_empty(), "source: {src:?}");
            assert!(
                src.iter()
                    .all(|c| !c.contains("SELECT") && !c.contains("EXAMINE")),
                "source: {src:?}"
            );
            assert_eq!(src_proxy.count("LIST"), 2, "source: {src:?}");
        }
    }

    // Every kind of change: new mail in two folders, flags set and cleared, expunges.
    for i in 0..2 {
        p.append(
            "INBOX",
            &["$New"],
            Some("02-Feb-2024 10:00:00 +0000"),
            &message("new", i),
        )
        .await;
    }
    p.append(
        "Work",
        &[],
        Some("02-Feb-2024 10:00:00 +0000"),
        &message("new", 9),
    )
    .await;
    let inbox = p.messages("INBOX").await;
    p.set_flags("INBOX", inbox[1].uid, &["\\Flagged", "$Later"], &[])
        .await;
    p.set_flags("INBOX", inbox[3].uid, &[], &["\\Seen"]).await;
    let work = p.messages("Work").await;
    p.set_flags("Work", work[4].uid, &["\\Answered"], &[]).await;
    let lists = p.messages("Lists").await;
    p.expunge_uids("Lists", &[lists[2].uid, lists[7].uid]).await;
    let expected = account(&mut p).await;

    src_proxy.reset_counts();
    dst_proxy.reset_counts();
    let changed = sync_env(&source, &target, &state, env).await;
    assert_eq!(changed.code, 0, "{changed:?}");
    assert_eq!(
        (
            changed.count("copied"),
            changed.count("flags_updated"),
            changed.count("removed")
        ),
        (3, 3, 2),
        "{changed:?}"
    );
    // Read incrementally: never the full metadata of old messages.
    let src = src_proxy.commands();
    assert!(
        src.iter()
            .all(|c| !c.contains("UID FETCH 1:* (UID FLAGS INTERNALDATE")),
        "source: {src:?}"
    );
    if detection != Detection::Rescan {
        assert!(
            src.iter().any(|c| c.contains("CHANGEDSINCE")),
            "source: {src:?}"
        );
        // Lists lost messages: QRESYNC names them, CONDSTORE alone needs one SEARCH.
        let searches = src_proxy.count("SEARCH");
        match detection {
            Detection::Qresync => assert_eq!(searches, 0, "source: {src:?}"),
            _ => assert_eq!(searches, 1, "source: {src:?}"),
        }
    }
    assert_eq!(dst_proxy.appended(), 3, "{:?}", dst_proxy.commands());

    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&expected, &account(&mut r).await);
    let v = verify(&primary.url(&src_user), &recovery.url(&dst_user)).await;
    assert_eq!(v.code, 0, "{v:?}");

    // Settled again: nothing to do, nothing written.
    let after = sync_env(&source, &target, &state, env).await;
    assert_eq!(after.code, 0, "{after:?}");
    dst_proxy.reset_counts();
    let settled = sync_env(&source, &target, &state, env).await;
    assert_eq!(
        (
            settled.count("copied"),
            settled.count("flags_updated"),
            settled.count("removed")
        ),
        (0, 0, 0)
    );
    assert!(
        per_message(&dst_proxy.commands()).is_empty(),
        "{:?}",
        dst_proxy.commands()
    );
    assert_same_accounts(&expected, &account(&mut r).await);
    r.logout().await;
    p.logout().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_propagate_with_qresync() {
    changes_propagate(Detection::Qresync).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_propagate_with_condstore_only() {
    changes_propagate(Detection::CondstoreOnly).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_propagate_without_condstore() {
    changes_propagate(Detection::Rescan).await;
}

fn copy_tree(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "cp -a {from:?} {to:?}: {out:?}");
}

/// A primary restored from an older backup ("time travel"): UIDs the pair already replicated
/// come back with other messages behind them. The pair freezes, nothing on the target is
/// removed or changed, `status` says why; after `--accept-regression` the new mail arrives and
/// nothing the target held is lost.
#[tokio::test(flavor = "multi_thread")]
async fn time_travel_freezes_the_pair_until_accepted() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let src_user = fresh_user("ttsrc");
    let dst_user = fresh_user("ttdst");
    let mut p = TestImap::connect(&primary, &src_user).await;
    for i in 0..5 {
        p.append(
            "INBOX",
            &[],
            Some("01-Jan-2024 10:00:00 +0000"),
            &message("old", i),
        )
        .await;
    }
    p.logout().await;
    let source = primary.url(&src_user);
    let target = recovery.url(&dst_user);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pair.redb");
    let state_arg = state.to_string_lossy().into_owned();
    let run = |extra: &'static [&'static str]| {
        let (source, target, state_arg) = (source.clone(), target.clone(), state_arg.clone());
        async move {
            let mut args = vec![
                "sync", "--source", &source, "--target", &target, "--state", &state_arg, "--json",
            ];
            args.extend_from_slice(extra);
            mailreplica(&args).await
        }
    };
    assert_eq!(run(&[]).await.code, 0);

    // The backup is taken, then two more messages arrive and are replicated.
    let home = dovecot_mail_dir("primary", &src_user);
    let backup = dir.path().join("backup");
    copy_tree(&home, &backup);
    let mut p = TestImap::connect(&primary, &src_user).await;
    for i in 5..7 {
        p.append(
            "INBOX",
            &[],
            Some("01-Jan-2024 10:00:00 +0000"),
            &message("old", i),
        )
        .await;
    }
    p.logout().await;
    let replicated = run(&[]).await;
    assert_eq!(replicated.count("copied"), 2, "{replicated:?}");
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    let before = account(&mut r).await;
    assert_eq!(before["INBOX"].len(), 7);

    // The primary is restored from the backup (no session is open on it), then new mail
    // arrives: it gets a UID the pair already knows for another message.
    std::fs::remove_dir_all(&home).unwrap();
    copy_tree(&backup, &home);
    let mut p = TestImap::connect(&primary, &src_user).await;
    p.append(
        "INBOX",
        &["\\Flagged"],
        Some("03-Mar-2024 10:00:00 +0000"),
        &message("after", 1),
    )
    .await;
    assert_eq!(p.messages("INBOX").await.len(), 6);

    let frozen = run(&[]).await;
    assert_eq!(frozen.code, 3, "{frozen:?}");
    assert!(frozen.stderr.contains("went back in time"), "{frozen:?}");
    assert!(frozen.stderr.contains("--accept-regression"), "{frozen:?}");
    assert_eq!(
        account(&mut r).await,
        before,
        "a frozen pass changed the target"
    );
    // Still frozen on the next run; `status` says why.
    let again = run(&[]).await;
    assert_eq!(again.code, 3, "{again:?}");
    let status = mailreplica(&["status", "--state", &state_arg]).await;
    assert_eq!(status.code, 3, "{status:?}");
    assert!(status.stdout.contains("FROZEN"), "{status:?}");
    assert!(status.stdout.contains("went back in time"), "{status:?}");

    let accepted = run(&["--accept-regression"]).await;
    assert_eq!(accepted.code, 0, "{accepted:?}");
    assert_eq!(accepted.count("copied"), 1, "{accepted:?}");
    assert_eq!(accepted.count("removed"), 0, "{accepted:?}");
    let after = account(&mut r).await;
    // Everything the target held is still there, plus the new message, nothing twice.
    let inbox = &after["INBOX"];
    assert_eq!(inbox.len(), 8, "{inbox:?}");
    for key in &before["INBOX"] {
        assert!(inbox.iter().any(|k| k.0 == key.0), "lost {key:?}");
    }
    let source_now = account(&mut p).await;
    for key in &source_now["INBOX"] {
        assert!(inbox.contains(key), "missing on the target: {key:?}");
    }
    let status = mailreplica(&["status", "--state", &state_arg]).await;
    assert!(!status.stdout.contains("FROZEN"), "{status:?}");
    // And the pair goes on replicating.
    p.append(
        "INBOX",
        &[],
        Some("04-Apr-2024 10:00:00 +0000"),
        &message("after", 2),
    )
    .await;
    let next = run(&[]).await;
    assert_eq!((next.code, next.count("copied")), (0, 1), "{next:?}");
    r.logout().await;
    p.logout().await;
}

/// Messages moved between folders on the primary are moved on the target: no upload, one
/// UID MOVE or UID COPY per group (a COPY and the removal of the originals when the pass reaches
/// the destination first), and never held by the removal budget however many move.
#[tokio::test(flavor = "multi_thread")]
async fn moves_are_moves_on_the_target() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let src_user = fresh_user("mvsrc");
    let dst_user = fresh_user("mvdst");
    let mut p = TestImap::connect(&primary, &src_user).await;
    seed(&mut p).await;
    let dst_proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    let source = primary.url(&src_user);
    let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", dst_proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pair.redb");
    assert_eq!(sync_env(&source, &target, &state, &[]).await.code, 0);

    // 12 of INBOX's 20 go to Work (far over the removal budget were they deletions), 3 of
    // Lists come to INBOX (INBOX is reached first: its copies come from Lists).
    let inbox = p.messages("INBOX").await;
    let out: Vec<u32> = inbox.iter().take(12).map(|m| m.uid).collect();
    p.move_uids("INBOX", &out, "Work").await;
    let lists = p.messages("Lists").await;
    let back: Vec<u32> = lists.iter().skip(4).take(3).map(|m| m.uid).collect();
    p.move_uids("Lists", &back, "INBOX").await;
    let expected = account(&mut p).await;

    dst_proxy.reset_counts();
    let moved = sync_env(&source, &target, &state, &[]).await;
    assert_eq!(moved.code, 0, "{moved:?}");
    assert_eq!(
        (
            moved.count("moved"),
            moved.count("copied"),
            moved.count("removed"),
            moved.count("removals_held")
        ),
        (15, 0, 0, 0),
        "{moved:?}"
    );
    let cmds = dst_proxy.commands();
    assert_eq!(dst_proxy.count("APPEND"), 0, "{cmds:?}");
    // One UID MOVE when the folder the messages left is read first, else a UID COPY and the
    // removal of the originals (folders are worked on concurrently, largest first): never
    // more than one command per group.
    assert_eq!(
        dst_proxy.count("MOVE") + dst_proxy.count("COPY"),
        2,
        "{cmds:?}"
    );
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&expected, &account(&mut r).await);
    let v = verify(&source, &recovery.url(&dst_user)).await;
    assert_eq!(v.code, 0, "{v:?}");
    // And it settles.
    sync_env(&source, &target, &state, &[]).await;
    dst_proxy.reset_counts();
    let settled = sync_env(&source, &target, &state, &[]).await;
    assert_eq!(settled.count("folders_unchanged"), 3, "{settled:?}");
    assert!(per_message(&dst_proxy.commands()).is_empty());
    r.logout().await;
    p.logout().await;
}

/// A folder renamed on the primary (with its child) is one RENAME on the target, nothing
/// uploaded or copied again; deleted folders leave through the removal budget: a small one
/// goes at once, one of 12 messages waits for --allow-deletions.
#[tokio::test(flavor = "multi_thread")]
async fn renames_are_renames_and_deletions_go_through_the_budget() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let src_user = fresh_user("rnsrc");
    let dst_user = fresh_user("rndst");
    let mut p = TestImap::connect(&primary, &src_user).await;
    seed(&mut p).await;
    for (folder, n) in [
        ("Projects", 5),
        ("Projects/A", 4),
        ("Small", 3),
        ("Big", 12),
    ] {
        p.create(folder).await;
        for i in 0..n {
            p.append(
                folder,
                &[],
                Some("05-May-2024 10:00:00 +0000"),
                &message(folder, i),
            )
            .await;
        }
    }
    let dst_proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    let source = primary.url(&src_user);
    let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", dst_proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pair.redb");
    assert_eq!(sync_env(&source, &target, &state, &[]).await.code, 0);
    assert_eq!(sync_env(&source, &target, &state, &[]).await.code, 0);

    p.rename_folder("Projects", "Done").await;
    p.delete_folder("Small").await;
    p.delete_folder("Big").await;
    let expected = account(&mut p).await;

    dst_proxy.reset_counts();
    let first = sync_env(&source, &target, &state, &[]).await;
    let cmds = dst_proxy.commands();
    assert_eq!(first.code, 3, "the 12 removals of Big are held: {first:?}");
    assert_eq!(
        (
            first.count("folders_renamed"),
            first.count("folders_deleted"),
            first.count("removed"),
            first.count("removals_held"),
            first.count("copied"),
            first.count("copied_on_target"),
        ),
        (1, 1, 3, 12, 0, 0),
        "{first:?}"
    );
    assert_eq!(dst_proxy.count("RENAME"), 1, "{cmds:?}");
    assert_eq!(
        dst_proxy.count("APPEND") + dst_proxy.count("COPY"),
        0,
        "{cmds:?}"
    );
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    let mut got = account(&mut r).await;
    assert_eq!(got.remove("Big").map(|v| v.len()), Some(12), "Big is kept");
    assert_same_accounts(&expected, &got);

    let released = sync_env(&source, &target, &state, &[]).await;
    assert_eq!(
        released.code, 3,
        "still held without --allow-deletions: {released:?}"
    );
    let allowed = sync(&source, &target, &state, &["--allow-deletions"]).await;
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert_eq!(
        (allowed.count("removed"), allowed.count("folders_deleted")),
        (12, 1),
        "{allowed:?}"
    );
    assert_same_accounts(&expected, &account(&mut r).await);
    let folders = r.folders().await;
    assert!(
        !folders
            .iter()
            .any(|f| f == "Big" || f == "Small" || f.starts_with("Projects")),
        "{folders:?}"
    );
    let v = verify(&source, &recovery.url(&dst_user)).await;
    assert_eq!(v.code, 0, "{v:?}");
    r.logout().await;
    p.logout().await;
}
