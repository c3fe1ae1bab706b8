//! Servers that do not keep what they are given (issue 3): Cyrus in its default configuration
//! ("stock": 8-bit header bytes munged to `X`, at most 10 identical messages per folder), and
//! NUL bytes, which Cyrus takes only in a literal8 (BINARY APPEND).

use crate::mr::{sync, verify};
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
