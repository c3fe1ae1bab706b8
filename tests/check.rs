//! `mailreplica check` against the real servers: what it reports, the fidelity class each probe
//! finds, and that the probe leaves nothing behind but its result in the state.

use std::path::Path;

use crate::mr::{mailreplica, mailreplica_env, Run};
use crate::support::imap_client::TestImap;
use crate::support::servers::{fresh_user, TestServer};

const PROBE_FOLDER: &str = "mailreplica-probe";

async fn check(source: &str, target: &str, state: &Path, extra: &[&str]) -> Run {
    let state = state.to_string_lossy().into_owned();
    let mut args = vec![
        "check", "--source", source, "--target", target, "--state", &state, "--json",
    ];
    args.extend_from_slice(extra);
    mailreplica(&args).await
}

/// Folders and every message's (folder, uid, sha256) of an account: what the probe must not
/// change.
async fn snapshot(imap: &mut TestImap) -> Vec<(String, u32, String)> {
    let mut out = Vec::new();
    for folder in imap.folders().await {
        out.push((folder.clone(), 0, String::new()));
        for m in imap.messages(&folder).await {
            out.push((folder.clone(), m.uid, m.sha256));
        }
    }
    out
}

fn mapping_status(json: &serde_json::Value, target: &str) -> String {
    json["mapping"]
        .as_array()
        .unwrap_or_else(|| panic!("no mapping in {json}"))
        .iter()
        .find(|row| row["target"] == target)
        .map(|row| row["status"].as_str().unwrap_or("?").to_string())
        .unwrap_or_else(|| panic!("{target} not in the mapping: {}", json["mapping"]))
}

#[tokio::test(flavor = "multi_thread")]
async fn dovecot_recovery_target_is_exact_and_left_as_it_was() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("chksrc"), fresh_user("chkdst"));
    let mut p = TestImap::connect(&primary, &src_user).await;
    p.create("Archive/2024").await;
    p.append("INBOX", &[], None, b"Subject: s\r\n\r\nsource\r\n")
        .await;
    let mut r = TestImap::connect(&recovery, &dst_user).await;
    r.create("OnlyHere").await;
    r.append(
        "INBOX",
        &["\\Deleted"],
        None,
        b"Subject: t\r\n\r\ntarget\r\n",
    )
    .await;
    let (source_before, target_before) = (snapshot(&mut p).await, snapshot(&mut r).await);

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("check.redb");
    let run = check(
        &primary.url(&src_user),
        &recovery.url(&dst_user),
        &state,
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let (source, target) = (&json["source"], &json["target"]);
    assert_eq!(source["login"], true, "{json}");
    assert_eq!(target["login"], true, "{json}");
    for cap in [
        "UIDPLUS",
        "LITERAL+",
        "MOVE",
        "CONDSTORE",
        "QRESYNC",
        "SPECIAL-USE",
    ] {
        assert_eq!(target["capabilities"][cap], true, "{cap}: {json}");
    }
    assert_eq!(target["separator"], "/");
    assert_eq!(source["folders"], 3, "INBOX, Archive, Archive/2024: {json}");
    assert_eq!(target["connection_cap"], 4);

    assert_eq!(target["fidelity"]["status"], "probed", "{json}");
    assert_eq!(target["fidelity"]["class"], "exact", "{json}");
    assert_eq!(target["fidelity"]["cleanup"]["clean"], true, "{json}");
    assert!(
        target["fidelity"]["cleanup"]["detail"]
            .as_str()
            .unwrap()
            .contains("deleted folder mailreplica-probe"),
        "{json}"
    );
    assert_eq!(source["fidelity"]["status"], "not_probed", "{json}");

    assert_eq!(mapping_status(&json, "INBOX"), "both");
    assert_eq!(mapping_status(&json, "Archive/2024"), "create");
    assert_eq!(mapping_status(&json, "OnlyHere"), "target_only");

    // Nothing changed on either side: no probe folder, no message, the other client's
    // \Deleted message still there.
    assert_eq!(snapshot(&mut r).await, target_before);
    assert_eq!(snapshot(&mut p).await, source_before);
    assert!(!r.folders().await.iter().any(|f| f == PROBE_FOLDER));

    assert_eq!(json["stored"], serde_json::json!(["fidelity:target"]));
    let status = mailreplica(&["status", "--state", &state.to_string_lossy(), "--json"]).await;
    assert_eq!(status.code, 0, "{status:?}");
    let s = status.json();
    assert_eq!(s["fidelity"]["target"]["class"], "exact", "{s}");
    assert_eq!(
        s["fidelity"]["target"]["endpoint"],
        recovery.url(&dst_user).as_str()
    );
    let human = mailreplica(&["status", "--state", &state.to_string_lossy()]).await;
    assert!(
        human.stdout.contains("fidelity of the target") && human.stdout.contains("exact"),
        "{human:?}"
    );

    // The human form says the same things.
    let text = mailreplica(&[
        "check",
        "--source",
        &primary.url(&src_user),
        "--target",
        &recovery.url(&dst_user),
        "--state",
        &state.to_string_lossy(),
    ])
    .await;
    assert_eq!(text.code, 0, "{text:?}");
    for needle in [
        "login: ok",
        "fidelity: exact",
        "Archive/2024 -> Archive/2024 (would be created)",
        "OnlyHere (only on the target; left alone)",
        "at most 4",
    ] {
        assert!(text.stdout.contains(needle), "{needle}: {}", text.stdout);
    }
    p.logout().await;
    r.logout().await;
}

/// The test Cyrus is configured to keep bytes (`munge8bit: no`): the probe finds it exact.
/// (Cyrus's default munges 8-bit header bytes on IMAP APPEND too: see the next test.)
#[tokio::test(flavor = "multi_thread")]
async fn cyrus_target_keeps_8bit_headers_on_append() {
    let primary = TestServer::dovecot_primary();
    let cyrus = TestServer::cyrus();
    let (src_user, dst_user) = (fresh_user("chkcysrc"), fresh_user("chkcydst"));
    cyrus.ensure_user(&dst_user);
    let mut c = TestImap::connect(&cyrus, &dst_user).await;
    let before = snapshot(&mut c).await;

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cyrus.redb");
    let run = check(&primary.url(&src_user), &cyrus.url(&dst_user), &state, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let target = &json["target"];
    assert_eq!(target["fidelity"]["class"], "exact", "{json}");
    assert_eq!(target["fidelity"]["cleanup"]["clean"], true, "{json}");
    assert_eq!(target["capabilities"]["OBJECTID"], true, "{json}");
    assert_eq!(target["capabilities"]["NOTIFY"], false, "{json}");
    // Cyrus creates the special-use folders at first login: the target lists them, the source
    // does not have them, sync leaves them alone.
    assert!(
        target["special_use"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["use"] == "\\Sent"),
        "{json}"
    );
    assert_eq!(mapping_status(&json, "Sent"), "target_only");
    assert_eq!(snapshot(&mut c).await, before);
    c.logout().await;
}

/// Cyrus in its default configuration (`munge8bit: 1`) replaces the probe's 8-bit header bytes
/// with `X`: `check` classes it `normalising`, names the transform, stores it and cleans up.
#[tokio::test(flavor = "multi_thread")]
async fn stock_cyrus_target_is_normalising() {
    let primary = TestServer::dovecot_primary();
    let stock = TestServer::cyrus_stock();
    stock.require();
    let (src_user, dst_user) = (fresh_user("chkstsrc"), fresh_user("chkstdst"));
    stock.ensure_user(&dst_user);
    let mut c = TestImap::connect(&stock, &dst_user).await;
    let before = snapshot(&mut c).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("stock.redb");
    let run = check(&primary.url(&src_user), &stock.url(&dst_user), &state, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let fidelity = &json["target"]["fidelity"];
    assert_eq!(fidelity["class"], "normalising", "{json}");
    assert_eq!(
        fidelity["transforms"][0]["kind"], "eight_bit_header_replaced",
        "{json}"
    );
    assert_eq!(fidelity["cleanup"]["clean"], true, "{json}");
    assert_eq!(snapshot(&mut c).await, before);
    // The same, for a person.
    let state_arg = state.to_string_lossy().into_owned();
    let human = mailreplica(&[
        "check",
        "--source",
        &primary.url(&src_user),
        "--target",
        &stock.url(&dst_user),
        "--state",
        &state_arg,
    ])
    .await;
    assert_eq!(human.code, 0, "{human:?}");
    assert!(
        human
            .stdout
            .contains("fidelity: normalising: 8-bit header bytes replaced with 'X'"),
        "{}",
        human.stdout
    );
    assert!(human
        .stdout
        .contains("Sent (only on the target; left alone)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn nocondstore_source_shows_its_capabilities_and_probe_source_cleans_up() {
    let nocond = TestServer::dovecot_nocondstore();
    let recovery = TestServer::dovecot_recovery();
    let (src_user, dst_user) = (fresh_user("chkncsrc"), fresh_user("chkncdst"));
    let mut s = TestImap::connect(&nocond, &src_user).await;
    s.append("INBOX", &["\\Seen"], None, b"Subject: keep\r\n\r\nkeep\r\n")
        .await;
    let before = snapshot(&mut s).await;

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nocond.redb");
    let run = check(
        &nocond.url(&src_user),
        &recovery.url(&dst_user),
        &state,
        &["--probe-source"],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let source = &json["source"];
    assert_eq!(source["capabilities"]["CONDSTORE"], false, "{json}");
    assert_eq!(source["capabilities"]["QRESYNC"], false, "{json}");
    assert_eq!(source["capabilities"]["UIDPLUS"], true, "{json}");
    assert!(
        !source["advertised"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "CONDSTORE"),
        "{json}"
    );
    assert_eq!(source["fidelity"]["class"], "exact", "{json}");
    assert_eq!(json["target"]["fidelity"]["class"], "exact", "{json}");
    assert_eq!(
        json["stored"],
        serde_json::json!(["fidelity:source", "fidelity:target"])
    );
    assert_eq!(snapshot(&mut s).await, before, "the source is as it was");
    s.logout().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_login_is_reported_per_side_without_the_password() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("refused.redb");
    let secret = "not-the-password-4711";
    let run = mailreplica_env(
        &[
            "check",
            "--source",
            &primary.url(&fresh_user("chkauth")),
            "--target",
            &recovery.url(&fresh_user("chkauth")),
            "--state",
            &state.to_string_lossy(),
            "--json",
        ],
        &[
            ("MAILREPLICA_SOURCE_PASSWORD", "test"),
            ("MAILREPLICA_TARGET_PASSWORD", secret),
        ],
    )
    .await;
    assert_eq!(run.code, 77, "{run:?}");
    let json = run.json();
    assert_eq!(json["source"]["login"], true, "{json}");
    assert_eq!(json["target"]["login"], false, "{json}");
    let error = json["target"]["error"].as_str().unwrap_or("");
    assert!(error.contains("login refused"), "{json}");
    assert_eq!(json["target"]["fidelity"]["status"], "not_probed");
    assert!(json["mapping"].is_null(), "{json}");
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
}

/// The Courier-style Dovecot: check shows its separator and namespace prefix, and the mapping
/// sync will use (the prefix left out, `Sent Messages` into the target's `Sent`).
#[tokio::test]
async fn dotted_source_shows_its_prefix_and_the_special_use_mapping() {
    let dotted = TestServer::dovecot_dotted();
    let recovery = TestServer::dovecot_recovery();
    dotted.require();
    let (src_user, dst_user) = (fresh_user("chkdot"), fresh_user("chkdotdst"));
    let mut d = TestImap::connect(&dotted, &src_user).await;
    for folder in ["INBOX.Sent Messages", "INBOX.Projects.A"] {
        d.run(&format!("CREATE \"{folder}\""), |_| {})
            .await
            .unwrap();
    }
    TestImap::connect(&recovery, &dst_user)
        .await
        .create("Sent")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let run = check(
        &dotted.url(&src_user),
        &recovery.url(&dst_user),
        &dir.path().join("check.redb"),
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    assert_eq!(json["source"]["separator"], ".", "{json:#}");
    assert_eq!(json["source"]["prefix"], "INBOX.", "{json:#}");
    let rows = json["mapping"].as_array().expect("mapping rows");
    let row = |source: &str| {
        rows.iter()
            .find(|r| r["source"] == source)
            .unwrap_or_else(|| panic!("no row for {source}: {json:#}"))
    };
    assert_eq!(row("Projects/A")["target"], "Projects/A");
    assert_eq!(row("Projects/A")["status"], "create");
    assert_eq!(row("Sent Messages")["target"], "Sent");
    assert_eq!(row("Sent Messages")["status"], "special_use");
}
