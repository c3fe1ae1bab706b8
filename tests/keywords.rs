//! Keywords the target refuses (Dovecot: longer than 50 bytes) never hold a message back: it is
//! replicated without them, the keywords are noted once, verify accepts them through the note,
//! and a no-op pass sends no STORE for them.

use crate::mr::mailreplica;
use crate::support::imap_client::TestImap;
use crate::support::proxy::{FaultPlan, Proxy};
use crate::support::servers::{fresh_user, TestServer};

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nSubject: keywords {i}\r\nMessage-ID: <kw{i}@keywords.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody {i}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_keyword_the_target_refuses_is_noted_once_and_never_retried() {
    let cyrus = TestServer::cyrus();
    let dovecot = TestServer::dovecot_recovery();
    cyrus.require();
    dovecot.require();
    let (src_user, dst_user) = (fresh_user("kwsrc"), fresh_user("kwdst"));
    cyrus.ensure_user(&src_user);
    let long = format!("project{}", "x".repeat(60));
    let mut c = TestImap::connect(&cyrus, &src_user).await;
    c.append("INBOX", &["\\Seen", "$Forwarded", &long], None, &message(1))
        .await;
    c.append("INBOX", &["\\Flagged"], None, &message(2)).await;

    let proxy = Proxy::start(dovecot.addr(), FaultPlan::None);
    let source = format!("imap+plain://{src_user}@127.0.0.1:{}", cyrus.port);
    let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("kw.redb").to_string_lossy().into_owned();
    let args = [
        "sync", "--source", &source, "--target", &target, "--state", &state, "--json",
    ];
    let sync = || mailreplica(&args);

    let first = sync().await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.count("copied"), 2, "no message is left behind");
    let notes: Vec<String> = first.json()["notices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .filter(|n| n.contains("is not kept by the target"))
        .collect();
    assert_eq!(notes.len(), 1, "one note for the long keyword: {notes:?}");
    assert!(notes[0].contains(&long) && notes[0].contains("Keyword length too long"));
    // The other keywords of that message made it.
    let mut d = TestImap::connect(&dovecot, &dst_user).await;
    let msgs = d.messages("INBOX").await;
    let with_forwarded = msgs
        .iter()
        .filter(|m| m.flags.iter().any(|f| f == "$Forwarded"))
        .count();
    assert_eq!(with_forwarded, 1, "{msgs:?}");

    // verify accepts the note (read from the pair's state).
    let v = mailreplica(&[
        "verify", "--source", &source, "--target", &target, "--state", &state,
    ])
    .await;
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);

    // No-op: no STORE, no APPEND, no new note.
    proxy.reset_counts();
    let again = sync().await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        (proxy.count("STORE"), proxy.count("APPEND")),
        (0, 0),
        "{:?}",
        proxy.commands()
    );
    assert!(!again.stdout.contains("is not kept by the target"));

    // The source adds the refused keyword (and another) to the second message: the other one
    // is stored, the refused one is not tried again.
    c.set_flags("INBOX", 2, &[&long, "$Important"], &[]).await;
    proxy.reset_counts();
    let flags = sync().await;
    assert_eq!(flags.code, 0, "{flags:?}");
    assert_eq!(flags.count("flags_updated"), 1);
    assert!(
        !proxy.commands().iter().any(|c| c.contains(&long)),
        "{:?}",
        proxy.commands()
    );
    proxy.reset_counts();
    let quiet = sync().await;
    assert_eq!(quiet.code, 0);
    assert_eq!(proxy.count("STORE"), 0, "{:?}", proxy.commands());
}
