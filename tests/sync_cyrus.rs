//! Dovecot (primary) to Cyrus (recovery): the same replication across two server families.

use crate::mr::{account, assert_same_accounts, sync, verify};
use crate::support::corpus::Corpus;
use crate::support::imap_client::TestImap;
use crate::support::proxy::{FaultPlan, Proxy};
use crate::support::servers::{fresh_user, TestServer};

#[tokio::test(flavor = "multi_thread")]
async fn dovecot_to_cyrus_replicates_the_corpus() {
    let primary = TestServer::dovecot_primary();
    let cyrus = TestServer::cyrus();
    let src_user = fresh_user("cysrc");
    let dst_user = fresh_user("cydst");
    cyrus.ensure_user(&dst_user);

    let mut p = TestImap::connect(&primary, &src_user).await;
    Corpus::load().seed(&mut p).await;
    // Cyrus creates these special-use folders for every new account; give the primary the
    // same, so that both accounts hold the same folders.
    let mut c = TestImap::connect(&cyrus, &dst_user).await;
    for folder in c.folders().await {
        p.create(&folder).await;
    }
    let before = account(&mut p).await;

    let proxy = Proxy::start(cyrus.addr(), FaultPlan::None);
    let source = primary.url(&src_user);
    let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", proxy.port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cyrus.redb");

    let first = sync(&source, &target, &state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let total: usize = before.values().map(Vec::len).sum();
    assert_eq!(
        first.count("copied") + first.count("copied_on_target"),
        total as u64,
        "{}",
        first.stdout
    );
    assert_same_accounts(&before, &account(&mut c).await);
    let v = verify(&source, &cyrus.url(&dst_user)).await;
    assert_eq!(v.code, 0, "{v:?}");

    proxy.reset_counts();
    let second = sync(&source, &target, &state, &[]).await;
    assert_eq!((second.code, second.count("copied")), (0, 0), "{second:?}");
    assert_eq!(proxy.count("APPEND"), 0);

    let inbox = p.messages("INBOX").await;
    p.set_flags("INBOX", inbox[5].uid, &["$Cyrus"], &[]).await;
    p.append(
        "Données/Été",
        &["\\Seen"],
        None,
        b"Subject: new\r\n\r\nnew\r\n",
    )
    .await;
    let third = sync(&source, &target, &state, &[]).await;
    assert_eq!(
        (
            third.code,
            third.count("copied"),
            third.count("flags_updated")
        ),
        (0, 1, 1),
        "{third:?}"
    );
    assert_same_accounts(&account(&mut p).await, &account(&mut c).await);
}
