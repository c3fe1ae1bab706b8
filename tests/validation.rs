//! Validation against real Dovecot: odd-but-valid mail replicates byte-identical; mail broken as
//! stored is held until it settles (or blocked, or let through on request) and reported.

use std::path::PathBuf;

use crate::mr::{account, assert_same_accounts, mailreplica, sync};
use crate::support::imap_client::{sha256_hex, TestImap};
use crate::support::servers::{fresh_user, manifest_dir, TestServer};

fn fixtures(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = manifest_dir().join("fixtures").join(dir);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_but_valid_mail_replicates_byte_identical() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("oddsrc"), fresh_user("odddst"));
    let odd = fixtures("odd");
    assert!(odd.len() >= 30, "{} odd fixtures", odd.len());
    let mut p = TestImap::connect(&primary, &src_user).await;
    p.create("Odd").await;
    for (_, bytes) in &odd {
        p.append("Odd", &["\\Seen"], None, bytes).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = sync(
        &primary.url(&src_user),
        &recovery.url(&dst_user),
        &dir.path().join("s.redb"),
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.count("copied"), odd.len() as u64, "{}", run.stdout);
    assert!(
        run.json()["quarantined"].as_array().unwrap().is_empty(),
        "{}",
        run.stdout
    );
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&account(&mut p).await, &account(&mut r).await);
    let mut got: Vec<String> = r
        .messages("Odd")
        .await
        .into_iter()
        .map(|m| m.sha256)
        .collect();
    let mut want: Vec<String> = odd.iter().map(|(_, b)| sha256_hex(b)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "a fixture was not stored byte-identical");
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_broken_as_stored_settles_then_replicates_as_it_is() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("brksrc"), fresh_user("brkdst"));
    let broken: Vec<(String, Vec<u8>)> = fixtures("broken")
        .into_iter()
        .filter(|(name, _)| name.starts_with("01-") || name.starts_with("04-"))
        .collect();
    assert_eq!(broken.len(), 2);
    let mut p = TestImap::connect(&primary, &src_user).await;
    for (_, bytes) in &broken {
        p.append("INBOX", &[], None, bytes).await;
    }
    p.append("INBOX", &[], None, b"Subject: fine\r\n\r\nfine\r\n")
        .await;
    let (source, target) = (primary.url(&src_user), recovery.url(&dst_user));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.redb");
    let mut r = TestImap::connect(&recovery, &dst_user).await;

    // --strict-validation blocks them; the valid message goes through.
    let strict = sync(
        &source,
        &target,
        &state,
        &["--strict-validation", "--settle", "0"],
    )
    .await;
    assert_eq!((strict.code, strict.count("copied")), (3, 1), "{strict:?}");
    assert_eq!(strict.json()["quarantined"].as_array().unwrap().len(), 2);
    assert!(
        strict.stdout.contains("strict-validation"),
        "{}",
        strict.stdout
    );
    let status = mailreplica(&["status", "--state", state.to_str().unwrap(), "--json"]).await;
    assert_eq!(status.code, 3, "{status:?}");
    let q = &status.json()["quarantined"];
    assert_eq!(q.as_array().unwrap().len(), 2, "{q}");
    assert!(q[0]["reason"].as_str().unwrap().len() > 5, "{q}");

    // Without it: held for the settle time (first sighting), then replicated byte-identical.
    let first = sync(&source, &target, &state, &["--settle", "2"]).await;
    assert_eq!((first.code, first.count("copied")), (3, 0), "{first:?}");
    assert_eq!(r.messages("INBOX").await.len(), 1);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let settled = sync(&source, &target, &state, &["--settle", "2"]).await;
    assert_eq!(
        (settled.code, settled.count("copied")),
        (0, 2),
        "{settled:?}"
    );
    let mut got: Vec<String> = r
        .messages("INBOX")
        .await
        .into_iter()
        .map(|m| m.sha256)
        .collect();
    let mut want: Vec<String> = broken.iter().map(|(_, b)| sha256_hex(b)).collect();
    want.push(sha256_hex(b"Subject: fine\r\n\r\nfine\r\n"));
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let status = mailreplica(&["status", "--state", state.to_str().unwrap(), "--json"]).await;
    assert_eq!(status.code, 0, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn accept_invalid_lets_quarantined_mail_through() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("accsrc"), fresh_user("accdst"));
    let broken = fixtures("broken");
    let mut p = TestImap::connect(&primary, &src_user).await;
    for (_, bytes) in &broken {
        p.append("INBOX", &[], None, bytes).await;
    }
    let (source, target) = (primary.url(&src_user), recovery.url(&dst_user));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.redb");
    let held = sync(&source, &target, &state, &[]).await;
    assert_eq!((held.code, held.count("copied")), (3, 0), "{held:?}");
    let run = sync(&source, &target, &state, &["--accept-invalid"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        (run.count("copied"), run.count("accepted_invalid")),
        (broken.len() as u64, broken.len() as u64)
    );
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&account(&mut p).await, &account(&mut r).await);
}
