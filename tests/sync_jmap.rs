//! Replication across protocols with the real Cyrus JMAP server: Dovecot (IMAP) to Cyrus
//! (JMAP), Cyrus (JMAP) to Dovecot (IMAP), and JMAP to JMAP between two Cyrus accounts, each
//! with the 529-message corpus in nested folders with keywords. The JMAP side is read back
//! over Cyrus's own IMAP (same account) to compare, and over JMAP for its change state.

use std::collections::{BTreeMap, BTreeSet};

use crate::mr::{account, mailreplica, sync, Key};
use crate::support::corpus::Corpus;
use crate::support::imap_client::TestImap;
use crate::support::servers::{cyrus_http_port, fresh_user, TestServer};

fn jmap_url(user: &str) -> String {
    format!("jmap+http://{user}@127.0.0.1:{}", cyrus_http_port())
}

type Account = BTreeMap<String, Vec<Key>>;

/// An account as a JMAP side keeps it (DESIGN.md, cross-protocol projection): one email per
/// content and mailbox, its keywords the union of the flags of every copy of that content in
/// the account, `\Deleted` and `\Recent` gone; flags sorted, lowercase. A content held twice in
/// one folder keeps no date (which copy's date survives is the first's, not compared here).
/// Cyrus's own `$hasattachment` (set on import, shown over IMAP) is not a user's flag.
fn projection(a: &Account, dups: &BTreeSet<(String, String)>) -> Account {
    let mut union: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for keys in a.values() {
        for (sha, flags, _) in keys {
            union
                .entry(sha)
                .or_default()
                .extend(flags.split(' ').filter(|f| {
                    !f.is_empty() && !["\\deleted", "\\recent", "$hasattachment"].contains(f)
                }));
        }
    }
    a.iter()
        .map(|(folder, keys)| {
            let seen: BTreeMap<&str, i64> = keys.iter().map(|(s, _, t)| (s.as_str(), *t)).collect();
            let out = seen
                .into_iter()
                .map(|(sha, ts)| {
                    let flags: Vec<&str> = union[sha].iter().copied().collect();
                    let dup = dups.contains(&(folder.clone(), sha.to_string()));
                    (sha.to_string(), flags.join(" "), if dup { 0 } else { ts })
                })
                .collect();
            (folder.clone(), out)
        })
        .collect()
}

/// Compares an IMAP account with a JMAP one (or two JMAP ones) through [`projection`]; the
/// contents held twice in a folder of `a` are compared without dates.
fn assert_same_projection(a: &Account, b: &Account) {
    let mut dups = BTreeSet::new();
    for (folder, keys) in a {
        let mut once = BTreeSet::new();
        for (sha, ..) in keys {
            if !once.insert(sha) {
                dups.insert((folder.clone(), sha.clone()));
            }
        }
    }
    let (a, b) = (projection(a, &dups), projection(b, &dups));
    crate::mr::assert_same_accounts(&a, &b);
}

/// A primary on Dovecot with the corpus and the folders a new Cyrus account has.
async fn seeded_dovecot(prefix: &str, cyrus_user: &str) -> (TestImap, String) {
    let primary = TestServer::dovecot_primary();
    let user = fresh_user(prefix);
    let mut p = TestImap::connect(&primary, &user).await;
    Corpus::load().seed(&mut p).await;
    let mut c = TestImap::connect(&TestServer::cyrus(), cyrus_user).await;
    for folder in c.folders().await {
        p.create(&folder).await;
    }
    (p, primary.url(&user))
}

#[tokio::test(flavor = "multi_thread")]
async fn dovecot_to_cyrus_jmap_replicates_the_corpus_and_follows_changes() {
    let cyrus = TestServer::cyrus();
    let dst = fresh_user("jmdst");
    cyrus.ensure_user(&dst);
    let (mut p, source) = seeded_dovecot("jmsrc", &dst).await;
    let target = jmap_url(&dst);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("jmap.redb");

    let first = sync(&source, &target, &state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let mut c = TestImap::connect(&cyrus, &dst).await;
    assert_same_projection(&account(&mut p).await, &account(&mut c).await);

    let v = mailreplica(&[
        "verify",
        "--source",
        &source,
        "--target",
        &target,
        "--state",
        &state.to_string_lossy(),
    ])
    .await;
    assert_eq!(v.code, 0, "{v:?}");

    let second = sync(&source, &target, &state, &[]).await;
    assert_eq!((second.code, second.count("copied")), (0, 0), "{second:?}");

    // Changes on the primary: a flag, a new message, a move, an expunge.
    let inbox = p.messages("INBOX").await;
    p.set_flags("INBOX", inbox[3].uid, &["\\Flagged", "$Label1"], &[])
        .await;
    p.append(
        "Projects/Alpha",
        &["\\Seen"],
        None,
        b"Subject: new over jmap\r\n\r\nnew\r\n",
    )
    .await;
    p.move_uids("INBOX", &[inbox[7].uid], "Archive").await;
    p.expunge_uids("INBOX", &[inbox[9].uid]).await;
    let third = sync(&source, &target, &state, &[]).await;
    assert_eq!(third.code, 0, "{third:?}");
    assert_eq!(third.count("copied"), 1, "{third:?}");
    assert_same_projection(&account(&mut p).await, &account(&mut c).await);
}
