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
