//! `mailreplica migrate` from a Courier-style Dovecot (`.` separator, `INBOX.` prefix) to a `/`
//! Dovecot: expected names, special-use folders into the target's, folder excludes and the
//! size limit applied and reported, the source unchanged byte for byte and flag for flag,
//! nothing copied twice, nothing ever removed from the target.

use crate::mr::{account, mailreplica};
use crate::support::imap_client::TestImap;
use crate::support::servers::{fresh_user, TestServer};

fn message(folder: &str, i: usize, pad: usize) -> Vec<u8> {
    format!(
        "From: a{i}@example.org\r\nSubject: {folder} {i}\r\nMessage-ID: <{i}.{}@migrate.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody {folder} {i}\r\n{}\r\n",
        folder.replace('/', "-"),
        "x".repeat(pad)
    )
    .into_bytes()
}

#[tokio::test]
async fn migrate_copies_the_selection_and_never_touches_the_source() {
    let dotted = TestServer::dovecot_dotted();
    let slash = TestServer::dovecot_recovery();
    dotted.require();
    slash.require();
    let (src_user, dst_user) = (fresh_user("migsrc"), fresh_user("migdst"));
    let mut d = TestImap::connect(&dotted, &src_user).await;
    for folder in ["INBOX.Sent Messages", "INBOX.Projects.A", "INBOX.Old"] {
        d.run(&format!("CREATE \"{folder}\""), |_| {})
            .await
            .unwrap();
    }
    for folder in [
        "INBOX",
        "INBOX/Sent Messages",
        "INBOX/Projects/A",
        "INBOX/Old",
    ] {
        for i in 0..3 {
            let flags: &[&str] = if i == 0 { &["\\Seen", "$Label1"] } else { &[] };
            d.append(
                folder,
                flags,
                Some("02-Jan-2024 10:00:00 +0000"),
                &message(folder, i, 0),
            )
            .await;
        }
    }
    // One message over the size limit.
    d.append("INBOX", &[], None, &message("INBOX", 9, 5000))
        .await;
    let before = account(&mut d).await;
    let mut s = TestImap::connect(&slash, &dst_user).await;
    s.create("Sent").await;

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("m.redb").to_string_lossy().into_owned();
    let (src, dst) = (dotted.url(&src_user), slash.url(&dst_user));
    let migrate = |extra: &[&str]| {
        let mut args = vec![
            "migrate",
            "--source",
            &src,
            "--target",
            &dst,
            "--state",
            &state,
            "--exclude",
            "^Old$",
            "--max-size",
            "2000",
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            mailreplica(&refs).await
        }
    };

    let dry = migrate(&["--dry-run"]).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(
        s.folders().await,
        ["INBOX", "Sent"],
        "a dry run changes nothing"
    );

    let run = migrate(&[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("larger than --max-size")
            && run
                .stdout
                .contains("left out by the selection: 1 folder(s), 1 message(s)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Sent Messages maps onto the target's Sent"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("verify skipped"), "{}", run.stdout);
    assert!(
        run.stdout.contains("  INBOX: 4 / 3 / 1 / 0 / 3"),
        "{}",
        run.stdout
    );
    assert_eq!(s.folders().await, ["INBOX", "Projects/A", "Sent"]);
    assert_eq!(s.messages("INBOX").await.len(), 3);
    assert_eq!(s.messages("Sent").await.len(), 3);
    // The source is as it was, byte for byte and flag for flag.
    assert_eq!(account(&mut d).await, before);

    // Again: nothing copied. A message the source loses stays on the target.
    let again = migrate(&["--json"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    let uid = d.messages("INBOX/Projects/A").await[0].uid;
    d.expunge_uids("INBOX/Projects/A", &[uid]).await;
    let after = migrate(&["--json"]).await;
    assert_eq!(after.code, 0, "{after:?}");
    let json = after.json();
    assert_eq!(
        (json["copied"].as_u64(), json["removed"].as_u64()),
        (Some(0), Some(0)),
        "{json}"
    );
    assert_eq!(
        s.messages("Projects/A").await.len(),
        3,
        "migrate never removes on the target"
    );
    // The per-folder report of the folders this run worked on.
    let reports = json["folder_reports"].as_array().expect("folder reports");
    let a = reports
        .iter()
        .find(|r| r["folder"] == "Projects/A")
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(
        (&a["source"], &a["copied"], &a["on_target"]),
        (
            &serde_json::json!(2),
            &serde_json::json!(0),
            &serde_json::json!(3)
        ),
        "{json:#}"
    );
}

/// `--map` renames folders by regex (the first matching rule, `$1` from its groups) and
/// `--subfolder` puts everything below one folder; the mapping is printed, verify at the end
/// compares through it, a re-run copies nothing, and rules that would merge two folders are
/// refused before anything is written.
#[tokio::test]
async fn migrate_renames_folders_by_rules_and_into_a_subfolder() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let src_user = fresh_user("maprsrc");
    let mut p = TestImap::connect(&primary, &src_user).await;
    for folder in ["Old", "Old/2019", "Work"] {
        p.create(folder).await;
    }
    for folder in ["INBOX", "Old", "Old/2019", "Work"] {
        for i in 0..2 {
            p.append(folder, &[], None, &message(folder, i, 0)).await;
        }
    }
    let before = account(&mut p).await;
    let src = primary.url(&src_user);
    let dir = tempfile::tempdir().unwrap();
    let run = |dst: String, state: &str, extra: &[&str]| {
        let state = dir.path().join(state).to_string_lossy().into_owned();
        let mut args: Vec<String> = [
            "migrate", "--source", &src, "--target", &dst, "--state", &state,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            mailreplica(&refs).await
        }
    };

    let dst_user = fresh_user("maprdst");
    let dst = recovery.url(&dst_user);
    let rules = ["--map", "^Old/(.*)=>Archive/$1", "--map", "^Old$=>Archive"];
    let first = run(dst.clone(), "map.redb", &rules).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first
            .stdout
            .contains("folder Old/2019 goes to the target's Archive/2019 (folder rules)"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("in sync"),
        "verify ran: {}",
        first.stdout
    );
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_eq!(
        r.folders().await,
        ["Archive", "Archive/2019", "INBOX", "Work"]
    );
    assert_eq!(r.messages("Archive/2019").await.len(), 2);
    let again = run(dst.clone(), "map.redb", &[&rules[..], &["--json"]].concat()).await;
    // --json: the copy's summary, then verify's report.
    assert_eq!(again.code, 0, "{again:?}");
    let summary: serde_json::Value =
        serde_json::from_str(again.stdout.lines().next().unwrap_or("{}")).unwrap();
    assert_eq!(summary["copied"], 0, "{}", again.stdout);
    assert_eq!(account(&mut p).await, before, "the source is untouched");

    let sub_user = fresh_user("mapsdst");
    let sub = run(
        recovery.url(&sub_user),
        "sub.redb",
        &["--subfolder", "Imported"],
    )
    .await;
    assert_eq!(sub.code, 0, "{sub:?}");
    let mut r = TestImap::connect(&recovery, &sub_user).await;
    let folders = r.folders().await;
    for f in [
        "Imported/INBOX",
        "Imported/Old",
        "Imported/Old/2019",
        "Imported/Work",
    ] {
        assert!(folders.iter().any(|x| x == f), "{f} in {folders:?}");
    }
    assert_eq!(r.messages("Imported/INBOX").await.len(), 2);

    // The same rules from a file.
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        "[[migrate.map]]\nfrom = \"^Old/(.*)\"\nto = \"Archive/$1\"\n[[migrate.map]]\nfrom = \"^Old$\"\nto = \"Archive\"\n",
    )
    .unwrap();
    let file_user = fresh_user("mapfdst");
    let by_file = run(
        recovery.url(&file_user),
        "file.redb",
        &["--rules", &file.to_string_lossy()],
    )
    .await;
    assert_eq!(by_file.code, 0, "{by_file:?}");
    let mut r = TestImap::connect(&recovery, &file_user).await;
    assert_eq!(
        r.folders().await,
        ["Archive", "Archive/2019", "INBOX", "Work"]
    );

    let merge_user = fresh_user("mapmdst");
    let merge = run(
        recovery.url(&merge_user),
        "merge.redb",
        &["--map", "^(Old|Work)$=>Kept"],
    )
    .await;
    assert_ne!(merge.code, 0, "{merge:?}");
    assert!(merge.stderr.contains("both into Kept"), "{merge:?}");
    let mut r = TestImap::connect(&recovery, &merge_user).await;
    assert_eq!(r.folders().await, ["INBOX"], "nothing written");
}

/// A Gmail-like source (`--preset gmail`): `[Gmail]/All Mail` holds every message (Spam
/// excepted), label folders hold copies, some messages are only in All Mail (archived), and
/// Important and Starred are views. Each message is uploaded once (APPENDs counted at a proxy
/// in front of the target), labels become folders filled by copies on the target, archived
/// mail lands in the target's Archive, nothing is lost, the source is unchanged, a re-run
/// copies nothing, and a message archived later (its label removed) reaches Archive by a copy
/// on the target, not a second upload.
#[tokio::test]
async fn migrate_from_a_gmail_like_source_uploads_each_message_once_and_keeps_archived_mail() {
    use crate::support::proxy::{FaultPlan, Proxy};
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    primary.require();
    recovery.require();
    let (src_user, dst_user) = (fresh_user("gmsrc"), fresh_user("gmdst"));
    let mut g = TestImap::connect(&primary, &src_user).await;
    let labels = [
        "[Gmail]/All Mail",
        "[Gmail]/Sent Mail",
        "[Gmail]/Starred",
        "[Gmail]/Important",
        "[Gmail]/Spam",
        "Work",
        "Travel/2024",
    ];
    for folder in labels {
        g.create(folder).await;
    }
    // Message i: where Gmail shows it (All Mail added below unless in Spam).
    let places: [&[&str]; 13] = [
        &["INBOX"],
        &["INBOX", "Work"],
        &["INBOX", "[Gmail]/Important"],
        &["Work"],
        &["Work", "Travel/2024", "[Gmail]/Starred"],
        &["Travel/2024"],
        &["[Gmail]/Sent Mail"],
        &["[Gmail]/Spam"],
        &[],
        &["[Gmail]/Starred"],
        &[],
        &[],
        &["INBOX"],
    ];
    let body = |i: usize| -> Vec<u8> {
        // 11 and 12 have no Message-ID.
        let id = if i >= 11 {
            String::new()
        } else {
            format!("Message-ID: <{i}@gmail.test>\r\n")
        };
        format!(
            "From: g{i}@example.org\r\nSubject: gmail {i}\r\n{id}Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody {i}\r\n"
        )
        .into_bytes()
    };
    for (i, at) in places.iter().enumerate() {
        let flags: &[&str] = if at.contains(&"[Gmail]/Starred") {
            &["\\Seen", "\\Flagged"]
        } else {
            &["\\Seen"]
        };
        let mut folders: Vec<&str> = at.to_vec();
        if !at.contains(&"[Gmail]/Spam") {
            folders.push("[Gmail]/All Mail");
        }
        for folder in folders {
            g.append(folder, flags, Some("02-Jan-2024 10:00:00 +0000"), &body(i))
                .await;
        }
    }
    let before = account(&mut g).await;

    let proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("g.redb").to_string_lossy().into_owned();
    let (src, dst) = (
        primary.url(&src_user),
        format!("imap+plain://{dst_user}@127.0.0.1:{}", proxy.port()),
    );
    let migrate = |extra: &[&str]| {
        let mut args = vec![
            "migrate", "--source", &src, "--target", &dst, "--state", &state, "--preset", "gmail",
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            mailreplica(&refs).await
        }
    };

    let run = migrate(&[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // Verify ran at the end and passed: All Mail compared for its archived mail only.
    assert!(
        run.stdout
            .contains("Gmail's All Mail: 4 archived message(s) compared; 8 held by other folders"),
        "{}",
        run.stdout
    );
    assert_eq!(
        proxy.appended(),
        13,
        "each message uploaded once: {:?}",
        proxy.commands()
    );
    assert!(
        run.stdout.contains("4 archived message(s)"),
        "{}",
        run.stdout
    );
    let mut t = TestImap::connect(&recovery, &dst_user).await;
    assert_eq!(
        t.folders().await,
        // Travel: the source's parent of Travel/2024 (Dovecot lists it as a folder).
        [
            "Archive",
            "INBOX",
            "Junk",
            "Sent",
            "Travel",
            "Travel/2024",
            "Work"
        ],
        "{}",
        run.stdout
    );
    let sha = |i: usize| crate::support::imap_client::sha256_hex(&body(i));
    let subjects = |msgs: Vec<crate::support::imap_client::TestMessage>| -> Vec<String> {
        let mut s: Vec<String> = msgs.into_iter().map(|m| m.sha256).collect();
        s.sort();
        s
    };
    let want = |ids: &[usize]| -> Vec<String> {
        let mut s: Vec<String> = ids.iter().map(|i| sha(*i)).collect();
        s.sort();
        s
    };
    for (folder, ids) in [
        ("INBOX", &[0, 1, 2, 12][..]),
        ("Work", &[1, 3, 4]),
        ("Travel/2024", &[4, 5]),
        ("Sent", &[6]),
        ("Junk", &[7]),
        ("Archive", &[8, 9, 10, 11]),
    ] {
        assert_eq!(subjects(t.messages(folder).await), want(ids), "{folder}");
    }
    // The starred archived message is flagged in Archive.
    let archived = t.messages("Archive").await;
    let nine = archived
        .iter()
        .find(|m| m.sha256 == sha(9))
        .expect("message 9 in Archive");
    assert!(nine.flags.iter().any(|f| f == "\\Flagged"), "{nine:?}");
    assert_eq!(account(&mut g).await, before, "the source is unchanged");

    // Again: nothing copied.
    let again = migrate(&["--json"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["copied"].as_u64(), Some(0), "{}", again.stdout);
    // One JSON document: the copy's summary, verify's report inside.
    assert_eq!(
        again.json()["verify"]["differences"],
        serde_json::json!([]),
        "{}",
        again.stdout
    );
    assert_eq!(proxy.appended(), 13, "{:?}", proxy.commands());

    // Message 3 loses its only label: archived now, it reaches Archive by a copy.
    let work = g.messages("Work").await;
    let three = work
        .iter()
        .find(|m| m.sha256 == sha(3))
        .expect("message 3 in Work")
        .uid;
    g.expunge_uids("Work", &[three]).await;
    // (verify would count Work's copy of message 3, which the source no longer holds.)
    let later = migrate(&["--no-verify"]).await;
    assert_eq!(later.code, 0, "{later:?}");
    assert_eq!(proxy.appended(), 13, "{:?}", proxy.commands());
    assert_eq!(
        subjects(t.messages("Archive").await),
        want(&[3, 8, 9, 10, 11])
    );
    assert_eq!(
        subjects(t.messages("Work").await),
        want(&[1, 3, 4]),
        "migrate never removes on the target"
    );
}

/// A target that advertises `APPENDLIMIT=n` (RFC 7889; added here by the proxy in front of
/// Dovecot) never gets a larger message: it is reported as not copied, the others are copied,
/// and the run succeeds.
#[tokio::test]
async fn migrate_respects_the_targets_appendlimit_and_reports_what_it_leaves_out() {
    use crate::support::proxy::{FaultPlan, Proxy};
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    primary.require();
    recovery.require();
    let (src_user, dst_user) = (fresh_user("alsrc"), fresh_user("aldst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    for i in 0..2 {
        p.append("INBOX", &[], None, &message("INBOX", i, 0)).await;
    }
    p.append("INBOX", &[], None, &message("INBOX", 2, 5000))
        .await;
    let proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    proxy.add_capability("APPENDLIMIT=2000");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("a.redb").to_string_lossy().into_owned();
    let dst = format!("imap+plain://{dst_user}@127.0.0.1:{}", proxy.port());
    let run = mailreplica(&[
        "migrate",
        "--source",
        &primary.url(&src_user),
        "--target",
        &dst,
        "--state",
        &state,
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("larger than the target's APPENDLIMIT (2000 bytes), not copied"),
        "{}",
        run.stdout
    );
    assert_eq!(proxy.appended(), 2, "{:?}", proxy.commands());
    let mut t = TestImap::connect(&recovery, &dst_user).await;
    assert_eq!(t.messages("INBOX").await.len(), 2);
}
