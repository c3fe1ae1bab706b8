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
