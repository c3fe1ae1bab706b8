//! Servers that do not keep what they are given (issue 3): Cyrus in its default configuration
//! ("stock": 8-bit header bytes munged to `X`, at most 10 identical messages per folder), and
//! NUL bytes, which Cyrus takes only in a literal8 (BINARY APPEND).

use crate::mr::{mailreplica, sync, verify, Run};
use crate::support::imap_client::TestImap;
use crate::support::proxy::{FaultPlan, Proxy};
use crate::support::servers::{fresh_user, TestServer};

fn plain_url(user: &str, port: u16) -> String {
    format!("imap+plain://{user}@127.0.0.1:{port}")
}

const NUL_MESSAGE: &[u8] = b"From: a@example.com\r\nSubject: nul\r\nMessage-ID: <nul@example.com>\r\n\r\nbefore\0after\r\n";
const PLAIN_MESSAGE: &[u8] =
    b"From: a@example.com\r\nSubject: plain\r\nMessage-ID: <plain@example.com>\r\n\r\nplain\r\n";

/// A Cyrus source holding a message with a NUL byte (Cyrus serves it as a literal8, which the
/// IMAP parser does not know: the transport turns it into a literal). Returns (source URL,
/// source user).
async fn cyrus_source_with_nul(prefix: &str) -> (String, String) {
    let cyrus = TestServer::cyrus();
    cyrus.require();
    let user = fresh_user(prefix);
    cyrus.ensure_user(&user);
    let mut c = TestImap::connect(&cyrus, &user).await;
    c.append_binary("INBOX", NUL_MESSAGE).await;
    c.append("INBOX", &[], None, PLAIN_MESSAGE).await;
    (plain_url(&user, cyrus.port), user)
}

/// A NUL byte crosses by BINARY APPEND where the target offers BINARY: byte for byte, and
/// `verify` (which fetches both sides' literal8s) agrees.
#[tokio::test(flavor = "multi_thread")]
async fn a_nul_byte_replicates_by_binary_append() {
    let stock = TestServer::cyrus_stock();
    stock.require();
    let (source, _) = cyrus_source_with_nul("nulsrc").await;
    let dst = fresh_user("nuldst");
    stock.ensure_user(&dst);
    let proxy = Proxy::start(stock.addr(), FaultPlan::None);
    let target = plain_url(&dst, proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nul.redb");

    let first = sync(&source, &target, &state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.count("copied"), 2, "{}", first.stdout);
    assert!(first.json()["refused"].as_array().unwrap().is_empty());
    let v = verify(&source, &plain_url(&dst, stock.port)).await;
    assert_eq!(v.code, 0, "{v:?}");
    let (_, _, messages) = TestImap::connect(&stock, &dst).await.status("INBOX").await;
    assert_eq!(messages, 2);

    proxy.reset_counts();
    let again = sync(&source, &target, &state, &[]).await;
    assert_eq!((again.code, again.count("copied")), (0, 0), "{again:?}");
    assert_eq!(proxy.count("APPEND"), 0);
}

/// Without BINARY on the target (hidden by a proxy), Cyrus refuses the NUL message: it is
/// reported once with the server's words, the rest replicates, and a re-run does not try it
/// again.
#[tokio::test(flavor = "multi_thread")]
async fn a_nul_byte_without_binary_is_reported_refused_once() {
    let stock = TestServer::cyrus_stock();
    stock.require();
    let (source, _) = cyrus_source_with_nul("nulsrc2").await;
    let dst = fresh_user("nuldst2");
    stock.ensure_user(&dst);
    let proxy = Proxy::start(stock.addr(), FaultPlan::None);
    proxy.hide_capability("BINARY");
    let target = plain_url(&dst, proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nul.redb");

    let first = sync(&source, &target, &state, &[]).await;
    assert_eq!(first.code, 3, "{first:?}");
    assert_eq!(first.count("copied"), 1, "{}", first.stdout);
    let refused = first.json()["refused"].as_array().unwrap().clone();
    assert_eq!(refused.len(), 1, "{}", first.stdout);
    let text = refused[0].as_str().unwrap();
    assert!(text.contains("NUL"), "the server's words: {text}");

    proxy.reset_counts();
    let again = sync(&source, &target, &state, &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.count("refused_waiting"), 1, "{}", again.stdout);
    assert_eq!(proxy.count("APPEND"), 0, "{:?}", proxy.commands());
}

/// Cyrus keeps at most 10 identical messages per folder (`conversations_max_guidinfolder`):
/// a folder holding 15 replicates up to that limit, the rest is one refusal report (not five),
/// and a re-run neither tries again nor uploads anything.
#[tokio::test(flavor = "multi_thread")]
async fn identical_messages_beyond_cyruss_limit_are_one_refusal() {
    let stock = TestServer::cyrus_stock();
    stock.require();
    let primary = TestServer::dovecot_primary();
    let src = fresh_user("dupsrc");
    let dst = fresh_user("dupdst");
    stock.ensure_user(&dst);
    let mut p = TestImap::connect(&primary, &src).await;
    p.create("Dups").await;
    for _ in 0..15 {
        p.append("Dups", &[], None, PLAIN_MESSAGE).await;
    }
    p.append("INBOX", &[], None, NUL_MESSAGE).await;
    let proxy = Proxy::start(stock.addr(), FaultPlan::None);
    let source = primary.url(&src);
    let target = plain_url(&dst, proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("dups.redb");

    let first = sync(&source, &target, &state, &[]).await;
    assert_eq!(first.code, 3, "{first:?}");
    let json = first.json();
    let refused = json["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{json:#}");
    assert!(
        refused[0].as_str().unwrap().contains("5 identical"),
        "{json:#}"
    );
    let mut c = TestImap::connect(&stock, &dst).await;
    assert_eq!(c.status("Dups").await.2, 10);
    assert_eq!(c.status("INBOX").await.2, 1);

    proxy.reset_counts();
    let again = sync(&source, &target, &state, &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.count("copied"), 0);
    assert_eq!(again.count("refused_waiting"), 5, "{}", again.stdout);
    assert_eq!(
        proxy.count("APPEND") + proxy.count("COPY"),
        0,
        "{:?}",
        proxy.commands()
    );
    assert_eq!(c.status("Dups").await.2, 10);

    // verify accepts the copies over the limit through the state's notes, and says so.
    let v = verify_with_state(&source, &target, &state).await;
    assert_eq!(v.code, 0, "{v:?}");
    assert_eq!(notes_saying(&v, "identical messages"), 5, "{}", v.stdout);
}

fn notes_saying(run: &Run, what: &str) -> usize {
    run.json()["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["what"].as_str().unwrap().contains(what))
        .count()
}

async fn verify_with_state(source: &str, target: &str, state: &std::path::Path) -> Run {
    let state = state.to_string_lossy().into_owned();
    mailreplica(&[
        "verify", "--source", source, "--target", target, "--state", &state, "--json",
    ])
    .await
}

fn eight_bit(i: usize) -> Vec<u8> {
    format!(
        "From: Jürgen Müller <j{i}@example.com>\r\nSubject: Grüße {i} aus Köln\r\nDate: Mon, 1 Jan 2024 10:00:0{i} +0000\r\nMessage-ID: <eight-{i}@example.com>\r\n\r\nbody é {i}\r\n"
    )
    .into_bytes()
}

/// Cyrus in its default configuration replaces 8-bit header bytes with `X` (munge8bit): such
/// messages get a fidelity note (learned by reading the copy back), the target's class becomes
/// `normalising`, `verify` matches them by the tolerant key, and a re-run uploads nothing and
/// leaves no duplicate at the server.
#[tokio::test(flavor = "multi_thread")]
async fn munged_8bit_headers_are_a_fidelity_note_verify_accepts() {
    let stock = TestServer::cyrus_stock();
    stock.require();
    let primary = TestServer::dovecot_primary();
    let src = fresh_user("eightsrc");
    let dst = fresh_user("eightdst");
    stock.ensure_user(&dst);
    let mut p = TestImap::connect(&primary, &src).await;
    for i in 0..3 {
        p.append("INBOX", &["\\Seen"], None, &eight_bit(i)).await;
    }
    p.append("INBOX", &[], None, PLAIN_MESSAGE).await;
    p.create("Other").await;
    p.append("Other", &[], None, &eight_bit(7)).await;
    let proxy = Proxy::start(stock.addr(), FaultPlan::None);
    let source = primary.url(&src);
    let target = plain_url(&dst, proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("eight.redb");

    let first = sync(&source, &target, &state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.count("copied"), 5);
    let notes = first.json()["fidelity_notes"].as_array().unwrap().clone();
    assert_eq!(notes.len(), 2, "one line per folder: {notes:?}");
    assert!(
        notes[0]
            .as_str()
            .unwrap()
            .contains("8-bit header bytes replaced"),
        "{notes:?}"
    );
    // The stock Cyrus did munge: only the plain message is byte-identical to the primary's.
    let mut c = TestImap::connect(&stock, &dst).await;
    let sent: std::collections::BTreeSet<String> = p
        .messages("INBOX")
        .await
        .into_iter()
        .map(|m| m.sha256)
        .collect();
    let same = c
        .messages("INBOX")
        .await
        .iter()
        .filter(|m| sent.contains(&m.sha256))
        .count();
    assert_eq!(same, 1);

    let status = mailreplica(&["status", "--state", &state.to_string_lossy(), "--json"]).await;
    let status = status.json();
    assert_eq!(
        status["fidelity"]["target"]["class"], "normalising",
        "{status:#}"
    );
    let counted: u64 = status["fidelity_notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 4, "{status:#}");

    let v = verify_with_state(&source, &target, &state).await;
    assert_eq!(v.code, 0, "{v:?}");
    assert_eq!(notes_saying(&v, "tolerant key"), 4, "{}", v.stdout);
    // Cyrus's own folders (Sent, Drafts, ...) are only on the target: notes, unless --strict.
    assert_eq!(notes_saying(&v, "only on the target"), 5, "{}", v.stdout);
    let state_arg = state.to_string_lossy().into_owned();
    let strict = mailreplica(&[
        "verify", "--source", &source, "--target", &target, "--state", &state_arg, "--strict",
    ])
    .await;
    assert_eq!(strict.code, 1, "{strict:?}");
    assert!(
        strict
            .stdout
            .contains("Drafts: folder exists only on the target"),
        "{strict:?}"
    );
    // Without the pair's state, nothing says the target rewrites: the bytes differ.
    let blind = verify(&source, &plain_url(&dst, stock.port)).await;
    assert_ne!(blind.code, 0, "{blind:?}");

    proxy.reset_counts();
    let again = sync(&source, &target, &state, &[]).await;
    assert_eq!((again.code, again.count("copied")), (0, 0), "{again:?}");
    assert!(again.json()["fidelity_notes"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(proxy.count("APPEND"), 0);
    assert_eq!(c.status("INBOX").await.2, 4);
    assert_eq!(c.status("Other").await.2, 1);

    // A lost state file: the copies are found again (same size, date and Message-ID: munging
    // keeps the size), not uploaded twice.
    std::fs::remove_file(&state).unwrap();
    proxy.reset_counts();
    let rebuilt = sync(&source, &target, &state, &[]).await;
    assert_eq!(rebuilt.code, 0, "{rebuilt:?}");
    assert_eq!(rebuilt.count("copied"), 0, "{}", rebuilt.stdout);
    assert_eq!(proxy.count("APPEND"), 0);
    assert_eq!(c.status("INBOX").await.2, 4);
    assert_eq!(c.status("Other").await.2, 1);
    // The rebuilt state knows the notes again: verify passes.
    let v = verify_with_state(&source, &target, &state).await;
    assert_eq!(v.code, 0, "{v:?}");
}
