//! Replication across protocols with the real Cyrus JMAP server: Dovecot (IMAP) to Cyrus
//! (JMAP), Cyrus (JMAP) to Dovecot (IMAP), and JMAP to JMAP between two Cyrus accounts, each
//! with the 529-message corpus in nested folders with keywords. The JMAP side is read back
//! over Cyrus's own IMAP (same account) to compare, and over JMAP for its change state.

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;

use crate::mr::{account, mailreplica, sync, Key};
use crate::support::corpus::Corpus;
use crate::support::http_count::HttpCounter;
use crate::support::imap_client::TestImap;
use crate::support::servers::{cyrus_http_port, fresh_user, TestServer};

fn jmap_url(user: &str) -> String {
    format!("jmap+http://{user}@127.0.0.1:{}", cyrus_http_port())
}

/// Cyrus's JMAP behind a counting relay. The session resource is named directly (`/jmap`):
/// Cyrus redirects `/.well-known/jmap` to an absolute URL, which would go round the relay.
async fn counted_jmap(user: &str) -> (HttpCounter, String) {
    let counter = HttpCounter::start(([127, 0, 0, 1], cyrus_http_port()).into()).await;
    let url = format!("jmap+http://{user}@127.0.0.1:{}/jmap", counter.port());
    (counter, url)
}

async fn verify_with_state(source: &str, target: &str, state: &Path) {
    let v = mailreplica(&[
        "verify",
        "--source",
        source,
        "--target",
        target,
        "--state",
        &state.to_string_lossy(),
    ])
    .await;
    assert_eq!(v.code, 0, "{v:?}");
}

/// `verify` with no state: nothing says what the target refused, so the sides are compared
/// through the cross-protocol projection alone.
async fn verify_across_protocols(source: &str, target: &str) {
    let v = mailreplica(&["verify", "--source", source, "--target", target]).await;
    assert_eq!(v.code, 0, "{v:?}");
    assert!(v.stdout.contains("across protocols"), "{v:?}");
}

/// Distinct contents of an account.
fn contents(a: &Account) -> BTreeSet<String> {
    a.values().flatten().map(|(sha, ..)| sha.clone()).collect()
}

/// A Cyrus account seeded with the corpus over IMAP (the same account is then read over JMAP).
async fn seeded_cyrus(prefix: &str) -> (TestImap, String) {
    let cyrus = TestServer::cyrus();
    let user = fresh_user(prefix);
    cyrus.ensure_user(&user);
    let mut c = TestImap::connect(&cyrus, &user).await;
    Corpus::load().seed(&mut c).await;
    (c, user)
}

type Account = BTreeMap<String, Vec<Key>>;

/// A Cyrus account seeded with the corpus, read over JMAP through a counting relay, and a
/// fresh Dovecot account as the target; the state in a temporary directory.
struct CyrusToDovecot {
    c: TestImap,
    counter: HttpCounter,
    source: String,
    d: TestImap,
    target: String,
    dir: tempfile::TempDir,
    state: std::path::PathBuf,
}

async fn cyrus_to_dovecot(src_prefix: &str, dst_prefix: &str) -> CyrusToDovecot {
    let (c, src) = seeded_cyrus(src_prefix).await;
    let (counter, source) = counted_jmap(&src).await;
    let primary = TestServer::dovecot_primary();
    let dst = fresh_user(dst_prefix);
    let d = TestImap::connect(&primary, &dst).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("jmap.redb");
    CyrusToDovecot {
        c,
        counter,
        source,
        d,
        target: primary.url(&dst),
        dir,
        state,
    }
}

/// An account as a JMAP side keeps it (DESIGN.md, cross-protocol projection): one email per
/// content and mailbox, its keywords the union of the flags of every copy of that content in
/// the account, `\Recent` gone, a message marked `\Deleted` absent (RFC 8621: such an email
/// is gone); flags sorted, lowercase. A content held twice in
/// one folder keeps no date (which copy's date survives is the first's, not compared here).
/// Cyrus's own `$hasattachment` (set on import, shown over IMAP) is not a user's flag.
fn projection(
    a: &Account,
    dups: &BTreeSet<(String, String)>,
    shared: &BTreeSet<String>,
) -> Account {
    let deleted = |flags: &str| flags.split(' ').any(|f| f == "\\deleted");
    let a: Account = a
        .iter()
        .map(|(folder, keys)| {
            let kept = keys.iter().filter(|(_, f, _)| !deleted(f)).cloned();
            (folder.clone(), kept.collect())
        })
        .collect();
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
                    let flags: Vec<&str> = if shared.contains(sha) {
                        vec!["(copies)"]
                    } else {
                        union[sha].iter().copied().collect()
                    };
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
    assert_same_projection_with(a, b, &BTreeSet::new());
}

/// [`assert_same_projection`] from a Cyrus source read over JMAP: Cyrus derives an email's one
/// keyword set from copies with differing flags by rules of its own (`$seen` only when every
/// copy is seen), so the flags of contents held more than once in `a` are not compared.
fn assert_same_projection_from_jmap(a: &Account, b: &Account) {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (sha, ..) in a.values().flatten() {
        *count.entry(sha).or_default() += 1;
    }
    let shared = count
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(sha, _)| sha.to_string())
        .collect();
    assert_same_projection_with(a, b, &shared);
}

fn assert_same_projection_with(a: &Account, b: &Account, shared: &BTreeSet<String>) {
    let mut dups = BTreeSet::new();
    for (folder, keys) in a {
        let mut once = BTreeSet::new();
        for (sha, ..) in keys {
            if !once.insert(sha) {
                dups.insert((folder.clone(), sha.clone()));
            }
        }
    }
    let (a, b) = (projection(a, &dups, shared), projection(b, &dups, shared));
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
    let (counter, target) = counted_jmap(&dst).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("jmap.redb");
    let before = account(&mut p).await;

    let first = sync(&source, &target, &state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let mut c = TestImap::connect(&cyrus, &dst).await;
    assert_same_projection(&before, &account(&mut c).await);
    // Each content crossed the wire once; copies in other folders are mailboxIds patches.
    assert_eq!(
        counter.count("POST", "/jmap/upload/"),
        contents(&before).len(),
        "{first:?}"
    );
    // INBOX holds one content twice: one email, a fidelity note, not a problem.
    assert_eq!(
        first.json()["fidelity_notes"].as_array().unwrap().len(),
        1,
        "{first:?}"
    );
    verify_with_state(&source, &target, &state).await;
    verify_across_protocols(&source, &target).await;

    counter.reset();
    let second = sync(&source, &target, &state, &[]).await;
    assert_eq!((second.code, second.count("copied")), (0, 0), "{second:?}");
    assert_eq!(counter.count("POST", "/jmap/upload/"), 0);
    assert_eq!(counter.method_calls("Email/import"), 0);
    assert_eq!(counter.method_calls("Email/set"), 0);
    // The second pass reads back the mailboxes the first one's copies touched; from then
    // on a pass with nothing new reads the target's changes (Email/changes), not its mailboxes.
    counter.reset();
    let idle = sync(&source, &target, &state, &[]).await;
    assert_eq!((idle.code, idle.count("copied")), (0, 0), "{idle:?}");
    assert_eq!(counter.method_calls("Email/query"), 0, "{idle:?}");
    assert!(counter.method_calls("Email/changes") >= 1);

    // Changes on the primary: a flag, a new message in three folders, a move, an expunge.
    let inbox = p.messages("INBOX").await;
    p.set_flags("INBOX", inbox[3].uid, &["\\Flagged", "$Label1"], &[])
        .await;
    let new = b"Subject: new over jmap, in three folders\r\n\r\nnew\r\n";
    for folder in ["Projects/Alpha", "Archive", "Sent"] {
        p.append(folder, &["\\Seen"], None, new).await;
    }
    p.move_uids("INBOX", &[inbox[7].uid], "Archive").await;
    p.expunge_uids("INBOX", &[inbox[9].uid]).await;
    // Marked \Deleted before it is expunged: no JMAP email can say so; not imported.
    p.append(
        "Archive",
        &["\\Deleted"],
        None,
        b"Subject: on its way out\r\n\r\ngone\r\n",
    )
    .await;
    counter.reset();
    let third = sync(&source, &target, &state, &[]).await;
    assert_eq!(third.code, 0, "{third:?}");
    assert!(
        third.json()["notices"]
            .to_string()
            .contains("Archive: 1 message(s) marked \\\\Deleted"),
        "{third:?}"
    );
    assert_same_projection(&account(&mut p).await, &account(&mut c).await);
    // The new message: uploaded and imported once, placed in two more mailboxes by patch;
    // the moved one: a mailboxIds patch, no upload.
    assert_eq!(counter.count("POST", "/jmap/upload/"), 1, "{third:?}");
    assert_eq!(counter.method_calls("Email/import"), 1, "{third:?}");
    verify_with_state(&source, &target, &state).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cyrus_jmap_to_dovecot_replicates_the_corpus_and_follows_changes() {
    let CyrusToDovecot {
        mut c,
        counter,
        source,
        mut d,
        target,
        dir: _dir,
        state,
    } = cyrus_to_dovecot("jisrc", "jidst").await;

    let first = sync(&source, &target, &state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_same_projection_from_jmap(&account(&mut c).await, &account(&mut d).await);
    verify_with_state(&source, &target, &state).await;
    verify_across_protocols(&source, &target).await;
    counter.reset();
    let second = sync(&source, &target, &state, &[]).await;
    assert_eq!((second.code, second.count("copied")), (0, 0), "{second:?}");
    // Nothing changed: the primary's changes are read (Email/changes), not its mailboxes.
    assert_eq!(counter.method_calls("Email/query"), 0, "{second:?}");
    assert!(counter.method_calls("Email/changes") >= 1);

    // Changes on the JMAP primary (made over its IMAP): flags, new, moved, expunged.
    let inbox = c.messages("INBOX").await;
    c.set_flags("INBOX", inbox[2].uid, &["\\Flagged"], &["\\Seen"])
        .await;
    c.append(
        "Projects/Alpha",
        &["\\Seen"],
        None,
        b"Subject: new on jmap\r\n\r\nnew\r\n",
    )
    .await;
    c.move_uids("INBOX", &[inbox[5].uid], "Archive").await;
    c.expunge_uids("INBOX", &[inbox[8].uid]).await;
    counter.reset();
    let third = sync(&source, &target, &state, &[]).await;
    // Only the three mailboxes that changed (INBOX, Projects/Alpha, Archive) are listed.
    assert_eq!(counter.method_calls("Email/query"), 3, "{third:?}");
    assert_eq!(third.code, 0, "{third:?}");
    assert_eq!(third.count("copied"), 1, "{third:?}");
    assert_same_projection_from_jmap(&account(&mut c).await, &account(&mut d).await);
    verify_with_state(&source, &target, &state).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cyrus_jmap_to_cyrus_jmap_replicates_the_corpus() {
    let (mut c, src) = seeded_cyrus("jjsrc").await;
    let cyrus = TestServer::cyrus();
    let dst = fresh_user("jjdst");
    cyrus.ensure_user(&dst);
    let (source, target) = (jmap_url(&src), jmap_url(&dst));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("jmap.redb");

    let first = sync(&source, &target, &state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let mut d = TestImap::connect(&cyrus, &dst).await;
    assert_same_projection_from_jmap(&account(&mut c).await, &account(&mut d).await);
    verify_with_state(&source, &target, &state).await;

    let inbox = c.messages("INBOX").await;
    c.set_flags("INBOX", inbox[1].uid, &["$Label2"], &[]).await;
    c.move_uids("INBOX", &[inbox[4].uid], "Projects/R&D").await;
    let second = sync(&source, &target, &state, &[]).await;
    assert_eq!((second.code, second.count("copied")), (0, 0), "{second:?}");
    assert_same_projection_from_jmap(&account(&mut c).await, &account(&mut d).await);
}

/// The target's UID map is lost (the file beside the state removed): every target mailbox
/// gets a new UIDVALIDITY and the pass matches the state's messages to the target's emails by
/// identity again: Cyrus's blobId (`G` + SHA-1) against the SHA-1 the state kept of what it
/// uploaded. No body is read from either side and nothing is uploaded; the copy refused by
/// design is offered again by its blobId, so its flags are merged into the email again.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_jmap_uid_map_is_rebuilt_without_reading_bodies() {
    let cyrus = TestServer::cyrus();
    let dst = fresh_user("jrdst");
    cyrus.ensure_user(&dst);
    let (mut p, source) = seeded_dovecot("jrsrc", &dst).await;
    let (counter, target) = counted_jmap(&dst).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("jmap.redb");
    let rebuilt = sync_after_losing_the_uid_map(
        &source,
        &target,
        &state,
        &dir.path().join("jmap.redb.target-ids"),
        &counter,
    )
    .await;
    assert_eq!(counter.count("POST", "/jmap/upload/"), 0, "{rebuilt:?}");
    assert_eq!(counter.count("GET", "/jmap/download/"), 0, "{rebuilt:?}");
    let mut c = TestImap::connect(&cyrus, &dst).await;
    assert_same_projection(&account(&mut p).await, &account(&mut c).await);
    verify_with_state(&source, &target, &state).await;
}

/// A first pass, then the UID map `lost` (beside the state) is deleted and the pass run again
/// with the HTTP counter from zero; both passes succeed. Returns the second.
async fn sync_after_losing_the_uid_map(
    source: &str,
    target: &str,
    state: &Path,
    lost: &Path,
    counter: &HttpCounter,
) -> crate::mr::Run {
    let first = sync(source, target, state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    std::fs::remove_file(lost).unwrap();
    counter.reset();
    let rebuilt = sync(source, target, state, &[]).await;
    assert_eq!(rebuilt.code, 0, "{rebuilt:?}");
    rebuilt
}

/// The source's UID map is lost: every source mailbox gets a new UIDVALIDITY, and the state's
/// messages are carried over to the new UIDs by the SHA-1 Cyrus names them by (recorded as
/// they were first read): no body is downloaded, nothing is copied again.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_source_uid_map_is_rebuilt_without_reading_bodies() {
    let CyrusToDovecot {
        mut c,
        counter,
        source,
        mut d,
        target,
        dir,
        state,
    } = cyrus_to_dovecot("jrsrc2", "jrdst2").await;
    let rebuilt = sync_after_losing_the_uid_map(
        &source,
        &target,
        &state,
        &dir.path().join("jmap.redb.source-ids"),
        &counter,
    )
    .await;
    assert_eq!(counter.count("GET", "/jmap/download/"), 0, "{rebuilt:?}");
    assert_eq!(rebuilt.count("copied"), 0, "{rebuilt:?}");
    assert!(
        rebuilt.json()["notices"]
            .to_string()
            .contains("matched by the SHA-1"),
        "{rebuilt:?}"
    );
    assert_same_projection_from_jmap(&account(&mut c).await, &account(&mut d).await);
    verify_with_state(&source, &target, &state).await;
}
