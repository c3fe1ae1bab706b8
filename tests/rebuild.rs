//! Rebuilding the mapping by identity against real servers: a primary folder deleted and
//! re-created with the same messages (new UIDVALIDITY), a lost state file, `--rebuild-state`.
//! Source and target each go through a counting proxy, so APPENDs, COPYs, MOVEs, EXPUNGEs and
//! whole-body fetches are counted on the wire, not taken from the tool's summary.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::mr::{account, assert_same_accounts, sync, verify, Run};
use crate::support::imap_client::{sha256_hex, TestImap};
use crate::support::proxy::{FaultPlan, Proxy};
use crate::support::servers::{fresh_user, TestServer};

/// The folder that is deleted and re-created on the primary.
const RESET: &str = "Projects";
/// Folders that stay as they are.
const STEADY: [(&str, usize); 2] = [("INBOX", 6), ("Other", 5)];

/// Why a message of [`RESET`] is, or is not, matched from its cheap key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Unique size + INTERNALDATE and a Message-ID: matched from one header fetch.
    Unique,
    /// Byte-identical copies in one folder (same INTERNALDATE): the key is ambiguous.
    Duplicate,
    /// Unique size + INTERNALDATE but no Message-ID to confirm it.
    NoMessageId,
    /// Different messages sharing size and INTERNALDATE: the key is ambiguous.
    SharedKey,
    /// Arrived with the re-creation: not on the target yet.
    New,
}

impl Kind {
    /// Messages whose body may be read to match them.
    fn needs_body(self) -> bool {
        self != Kind::Unique
    }
}

#[derive(Clone, Debug)]
struct Seed {
    kind: Kind,
    bytes: Vec<u8>,
    flags: Vec<&'static str>,
    date: String,
}

fn message(subject: &str, message_id: Option<&str>, body: &str) -> Vec<u8> {
    let mut m = format!(
        "From: sender@example.org\r\nTo: user@example.org\r\nSubject: {subject}\r\nDate: Tue, 5 Mar 2024 10:00:00 +0000\r\n"
    );
    if let Some(id) = message_id {
        m.push_str(&format!("Message-ID: <{id}@rebuild.test>\r\n"));
    }
    m.push_str(&format!("\r\n{body}\r\n"));
    m.into_bytes()
}

/// The 40 messages [`RESET`] starts with, in their first order: 30 unique, 2 pairs of
/// byte-identical copies (one pair with different flags per copy), 3 without Message-ID,
/// 3 different messages sharing one size and INTERNALDATE.
fn reset_seed() -> Vec<Seed> {
    const FLAGSETS: [&[&str]; 5] = [
        &[],
        &["\\Seen"],
        &["\\Seen", "\\Flagged"],
        &["$Label1"],
        &["\\Answered", "\\Seen"],
    ];
    let mut out = Vec::new();
    for i in 0..30 {
        out.push(Seed {
            kind: Kind::Unique,
            bytes: message(
                &format!("unique {i}"),
                Some(&format!("unique-{i}")),
                &"line of text\r\n".repeat(i + 1),
            ),
            flags: FLAGSETS[i % 5].to_vec(),
            date: format!("05-Mar-2024 10:{i:02}:00 +0000"),
        });
    }
    let dup_a = message("twin a", Some("twin-a"), "identical bytes a");
    let dup_b = message("twin b", Some("twin-b"), "identical bytes b");
    for (bytes, date, flags) in [
        (&dup_a, "06-Mar-2024 09:00:00 +0000", vec!["\\Seen"]),
        (
            &dup_a,
            "06-Mar-2024 09:00:00 +0000",
            vec!["\\Flagged", "$Label1"],
        ),
        (&dup_b, "06-Mar-2024 09:01:00 +0000", vec!["\\Seen"]),
        (&dup_b, "06-Mar-2024 09:01:00 +0000", vec!["\\Seen"]),
    ] {
        out.push(Seed {
            kind: Kind::Duplicate,
            bytes: bytes.clone(),
            flags,
            date: date.to_string(),
        });
    }
    for k in 0..3 {
        out.push(Seed {
            kind: Kind::NoMessageId,
            bytes: message(&format!("no id {k}"), None, &"x".repeat(10 + k)),
            flags: if k == 0 { vec![] } else { vec!["\\Seen"] },
            date: format!("07-Mar-2024 08:0{k}:00 +0000"),
        });
    }
    for k in 0..3 {
        out.push(Seed {
            kind: Kind::SharedKey,
            bytes: message(
                &format!("shared key {k}"),
                Some(&format!("shared-{k}")),
                &format!("same size, other text {k}"),
            ),
            flags: if k == 1 { vec!["\\Seen"] } else { vec![] },
            date: "08-Mar-2024 12:00:00 +0000".to_string(),
        });
    }
    let shared: BTreeSet<usize> = out
        .iter()
        .filter(|s| s.kind == Kind::SharedKey)
        .map(|s| s.bytes.len())
        .collect();
    assert_eq!(
        shared.len(),
        1,
        "the shared-key messages must share one size"
    );
    assert_eq!(out.len(), 40);
    out
}

/// The two messages that arrive with the re-creation.
fn new_messages() -> Vec<Seed> {
    (0..2)
        .map(|k| Seed {
            kind: Kind::New,
            bytes: message(
                &format!("new {k}"),
                Some(&format!("new-{k}")),
                "arrived later",
            ),
            flags: vec!["$New"],
            date: format!("09-Mar-2024 1{k}:00:00 +0000"),
        })
        .collect()
}

async fn append_all(p: &mut TestImap, folder: &str, seeds: &[Seed]) {
    for s in seeds {
        p.append(folder, &s.flags, Some(&s.date), &s.bytes).await;
    }
}

/// INBOX, Other (unique messages with Message-IDs) and [`RESET`] in its first order.
async fn seed_account(p: &mut TestImap) -> Vec<Seed> {
    for (folder, n) in STEADY {
        if folder != "INBOX" {
            p.create(folder).await;
        }
        for i in 0..n {
            let flags: &[&str] = if i % 2 == 0 { &["\\Seen"] } else { &[] };
            p.append(
                folder,
                flags,
                Some(&format!("01-Feb-2024 10:{i:02}:00 +0000")),
                &message(
                    &format!("{folder} {i}"),
                    Some(&format!("{folder}-{i}")),
                    "steady",
                ),
            )
            .await;
        }
    }
    p.create(RESET).await;
    let seeds = reset_seed();
    append_all(p, RESET, &seeds).await;
    seeds
}

/// Deletes [`RESET`] on the primary and re-creates it with the same messages (bytes, flags,
/// INTERNALDATE) in reverse order, one new message in the middle and one at the end. Returns
/// the seeds in their new order.
async fn recreate(p: &mut TestImap, seeds: &[Seed]) -> Vec<Seed> {
    let (before, _, _) = p.status(RESET).await;
    p.delete_folder(RESET).await;
    p.create(RESET).await;
    let new = new_messages();
    let mut order: Vec<Seed> = seeds.iter().rev().cloned().collect();
    order.insert(20, new[0].clone());
    order.push(new[1].clone());
    append_all(p, RESET, &order).await;
    let (after, _, count) = p.status(RESET).await;
    assert_ne!(
        before, after,
        "re-creating {RESET} must change its UIDVALIDITY"
    );
    assert_eq!(count, 42);
    order
}

/// Per folder, the UIDs whose whole body (`BODY.PEEK[]`) went through `proxy`, attributed to
/// the folder each connection had selected.
fn body_fetches(proxy: &Proxy) -> BTreeMap<String, Vec<u32>> {
    fetches(proxy, "BODY.PEEK[]")
}

/// Per folder, the UIDs whose Message-ID alone was fetched (the cheap key's header fetch).
fn header_fetches(proxy: &Proxy) -> BTreeMap<String, Vec<u32>> {
    fetches(proxy, "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]")
}

/// Per folder, the UIDs of the `UID FETCH` commands through `proxy` that ask for `item`.
fn fetches(proxy: &Proxy, item: &str) -> BTreeMap<String, Vec<u32>> {
    let mut selected: HashMap<usize, String> = HashMap::new();
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for c in proxy.commands_detailed() {
        let words: Vec<&str> = c.line.split_whitespace().collect();
        match c.verb.as_str() {
            "SELECT" | "EXAMINE" => {
                let name = words.get(2).copied().unwrap_or_default();
                selected.insert(c.conn, name.trim_matches('"').to_string());
            }
            "FETCH" if c.uid && c.line.contains(item) => {
                let folder = selected
                    .get(&c.conn)
                    .cloned()
                    .unwrap_or_else(|| panic!("body fetch with no folder selected: {c:?}"));
                out.entry(folder)
                    .or_default()
                    .extend(uid_set(words.get(3).copied().unwrap_or_default()));
            }
            _ => {}
        }
    }
    out
}

/// The UIDs of a UID set such as `1:4,7` (no `*`).
fn uid_set(set: &str) -> Vec<u32> {
    set.split(',')
        .flat_map(|part| {
            let (a, b) = part.split_once(':').unwrap_or((part, part));
            let (a, b): (u32, u32) = (
                a.parse().unwrap_or_else(|_| panic!("uid set {set}")),
                b.parse().unwrap_or_else(|_| panic!("uid set {set}")),
            );
            a.min(b)..=a.max(b)
        })
        .collect()
}

/// Commands that write to the target, as first lines.
fn writes(proxy: &Proxy) -> Vec<String> {
    proxy
        .commands_detailed()
        .into_iter()
        .filter(|c| {
            [
                "APPEND", "COPY", "MOVE", "EXPUNGE", "STORE", "CREATE", "DELETE",
            ]
            .contains(&c.verb.as_str())
        })
        .map(|c| c.line)
        .collect()
}

/// The kind of each message of `folder` on a server, by UID (matched by content).
async fn kinds_by_uid(imap: &mut TestImap, folder: &str, seeds: &[Seed]) -> HashMap<u32, Kind> {
    let by_sha: HashMap<String, Kind> = seeds
        .iter()
        .map(|s| (sha256_hex(&s.bytes), s.kind))
        .collect();
    imap.messages(folder)
        .await
        .into_iter()
        .map(|m| {
            let kind = by_sha
                .get(&m.sha256)
                .copied()
                .unwrap_or_else(|| panic!("{folder} uid {} is not a seeded message", m.uid));
            (m.uid, kind)
        })
        .collect()
}

/// How many of `uids` are of each kind.
fn tally(uids: &[u32], kinds: &HashMap<u32, Kind>) -> BTreeMap<Kind, usize> {
    let mut out = BTreeMap::new();
    for u in uids {
        *out.entry(kinds[u]).or_default() += 1;
    }
    out
}

/// Target UIDs of the copies of a twin whose copies carry different flags: the only messages
/// whose flags a rebuild may write (copies are paired in UID order, and a new order on the
/// source pairs them the other way round).
async fn swappable_twins(r: &mut TestImap, seeds: &[Seed]) -> BTreeSet<u32> {
    let mut flags: HashMap<String, BTreeSet<Vec<&str>>> = HashMap::new();
    for s in seeds.iter().filter(|s| s.kind == Kind::Duplicate) {
        flags
            .entry(sha256_hex(&s.bytes))
            .or_default()
            .insert(s.flags.clone());
    }
    r.messages(RESET)
        .await
        .into_iter()
        .filter(|m| flags.get(&m.sha256).is_some_and(|f| f.len() > 1))
        .map(|m| m.uid)
        .collect()
}

/// Every STORE through `proxy` names only UIDs in `allowed`.
fn assert_stores_within(proxy: &Proxy, allowed: &BTreeSet<u32>) {
    for c in proxy.commands_detailed() {
        if c.verb == "STORE" {
            let set = c.line.split_whitespace().nth(3).unwrap_or_default();
            assert!(
                uid_set(set).iter().all(|u| allowed.contains(u)),
                "flags written outside the twins {allowed:?}: {}",
                c.line
            );
        }
    }
}

/// The cheap key was used: every unique message of [`RESET`] had its Message-ID fetched.
fn assert_unique_matched_by_header(proxy: &Proxy, kinds: &HashMap<u32, Kind>, side: &str) {
    let uids = header_fetches(proxy)
        .get(RESET)
        .cloned()
        .unwrap_or_default();
    let t = tally(&uids, kinds);
    eprintln!("{side}: Message-ID fetched for {} ({t:?})", uids.len());
    assert_eq!(t.get(&Kind::Unique), Some(&30), "{side}: {t:?}");
}

/// The sides of one scenario: direct URLs for the witnesses and `verify`, proxied URLs for sync.
struct Pair {
    primary: TestServer,
    recovery: TestServer,
    src_user: String,
    dst_user: String,
    src_proxy: Proxy,
    dst_proxy: Proxy,
    source: String,
    target: String,
}

impl Pair {
    fn new(primary: TestServer, recovery: TestServer, prefix: &str) -> Pair {
        let src_user = fresh_user(&format!("{prefix}src"));
        let dst_user = fresh_user(&format!("{prefix}dst"));
        recovery.ensure_user(&dst_user);
        let src_proxy = Proxy::start(primary.addr(), FaultPlan::None);
        let dst_proxy = Proxy::start(recovery.addr(), FaultPlan::None);
        let source = format!("imap+plain://{src_user}@127.0.0.1:{}", src_proxy.port());
        let target = format!("imap+plain://{dst_user}@127.0.0.1:{}", dst_proxy.port());
        Pair {
            primary,
            recovery,
            src_user,
            dst_user,
            src_proxy,
            dst_proxy,
            source,
            target,
        }
    }

    async fn sync(&self, state: &Path, extra: &[&str]) -> Run {
        self.src_proxy.reset_counts();
        self.dst_proxy.reset_counts();
        sync(&self.source, &self.target, state, extra).await
    }

    async fn verify(&self) -> Run {
        verify(
            &self.primary.url(&self.src_user),
            &self.recovery.url(&self.dst_user),
        )
        .await
    }

    /// Both accounts are equal and `verify` agrees.
    async fn assert_equal(&self, p: &mut TestImap, r: &mut TestImap) {
        assert_same_accounts(&account(p).await, &account(r).await);
        let v = self.verify().await;
        assert_eq!(v.code, 0, "verify: {v:?}");
    }

    /// A pass that finds nothing to do writes nothing to the target.
    async fn assert_quiet_rerun(&self, state: &Path) {
        let again = self.sync(state, &[]).await;
        assert_eq!(again.code, 0, "{again:?}");
        assert_eq!(
            (again.count("copied"), again.count("adopted")),
            (0, 0),
            "{}",
            again.stdout
        );
        assert!(
            writes(&self.dst_proxy).is_empty(),
            "a re-run wrote to the target: {:?}",
            writes(&self.dst_proxy)
        );
    }

    fn print_wire(&self, label: &str) {
        let src = body_fetches(&self.src_proxy);
        let dst = body_fetches(&self.dst_proxy);
        eprintln!(
            "{label}: source body fetches {:?}; target body fetches {:?}; target writes {:?}; bytes source->us {}, us->target {}",
            src,
            dst,
            writes(&self.dst_proxy),
            self.src_proxy.bytes().0,
            self.dst_proxy.bytes().1,
        );
    }
}

/// A primary folder deleted and re-created with the same messages in another order (new
/// UIDVALIDITY, new UIDs) plus two new ones: only the new ones are uploaded, nothing is copied,
/// moved or expunged, and bodies are read only for the new and the ambiguous messages.
async fn uidvalidity_reset(primary: TestServer, prefix: &str) {
    let pair = Pair::new(primary, TestServer::dovecot_recovery(), prefix);
    let mut p = TestImap::connect(&pair.primary, &pair.src_user).await;
    let seeds = seed_account(&mut p).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pair.redb");

    let first = pair.sync(&state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let total = (40 + STEADY.iter().map(|(_, n)| n).sum::<usize>()) as u64;
    assert_eq!(
        first.count("copied") + first.count("copied_on_target"),
        total,
        "{}",
        first.stdout
    );
    let mut r = TestImap::connect(&pair.recovery, &pair.dst_user).await;
    let (target_uidvalidity, _, _) = r.status(RESET).await;
    let target_before = r.messages(RESET).await;

    let order = recreate(&mut p, &seeds).await;
    let src_kinds = kinds_by_uid(&mut p, RESET, &order).await;

    let rerun = pair.sync(&state, &[]).await;
    pair.print_wire("after the UIDVALIDITY reset");
    eprintln!("summary: {}", rerun.stdout.trim());
    assert_eq!(rerun.code, 0, "{rerun:?}");
    let j = rerun.json();
    assert!(
        j["notices"].to_string().contains("UIDVALIDITY changed"),
        "{}",
        rerun.stdout
    );

    // At the target: the two new messages appended, nothing else placed or removed.
    let dst = &pair.dst_proxy;
    assert_eq!(dst.appended(), 2, "target: {:?}", writes(dst));
    for verb in ["COPY", "MOVE", "EXPUNGE", "CREATE", "DELETE"] {
        assert_eq!(
            dst.count(verb),
            0,
            "{verb} on the target: {:?}",
            writes(dst)
        );
    }
    // Flag writes only where the new order paired a copy of the twin with different flags
    // with the other copy: at most one +FLAGS and one -FLAGS per copy of that pair.
    assert!(dst.count("STORE") <= 4, "target: {:?}", writes(dst));
    assert_stores_within(dst, &swappable_twins(&mut r, &seeds).await);
    assert!(
        dst.commands()
            .iter()
            .filter(|c| c.contains("APPEND"))
            .all(|c| c.contains(RESET)),
        "appends outside {RESET}: {:?}",
        writes(dst)
    );
    // The target folder kept its identity and every message it held.
    let target_after = r.messages(RESET).await;
    assert_eq!(r.status(RESET).await.0, target_uidvalidity);
    let kept: BTreeSet<u32> = target_after.iter().map(|m| m.uid).collect();
    assert!(
        target_before.iter().all(|m| kept.contains(&m.uid)),
        "target messages were replaced"
    );
    assert_eq!(target_after.len(), 42);

    // Bodies: from the source only for the 2 new + 10 ambiguous messages of the reset
    // folder, from the target only for the ambiguous ones (the new ones have dates of their
    // own, so no target message is a candidate for them).
    let src_fetches = body_fetches(&pair.src_proxy);
    let dst_fetches = body_fetches(dst);
    assert!(
        src_fetches.keys().all(|f| f == RESET) && dst_fetches.keys().all(|f| f == RESET),
        "bodies read outside {RESET}: source {src_fetches:?}, target {dst_fetches:?}"
    );
    let src_uids = src_fetches.get(RESET).cloned().unwrap_or_default();
    let src_tally = tally(&src_uids, &src_kinds);
    eprintln!(
        "source bodies read: {} of 42 ({src_tally:?})",
        src_uids.len()
    );
    assert!(
        !src_tally.contains_key(&Kind::Unique),
        "bodies of unambiguous messages read from the source: {src_tally:?}"
    );
    assert_eq!(src_tally.get(&Kind::New), Some(&2), "{src_tally:?}");
    assert!(src_uids.len() <= 12, "{src_uids:?}");
    let dst_kinds = kinds_by_uid(&mut r, RESET, &order).await;
    let dst_uids = dst_fetches.get(RESET).cloned().unwrap_or_default();
    let dst_tally = tally(&dst_uids, &dst_kinds);
    eprintln!(
        "target bodies read: {} of 40 ({dst_tally:?})",
        dst_uids.len()
    );
    assert!(
        dst_tally.keys().all(|k| k.needs_body() && *k != Kind::New),
        "target bodies read for unambiguous messages: {dst_tally:?}"
    );
    assert!(dst_uids.len() <= 10, "{dst_uids:?}");
    assert_unique_matched_by_header(&pair.src_proxy, &src_kinds, "source");
    assert_unique_matched_by_header(dst, &dst_kinds, "target");

    pair.assert_equal(&mut p, &mut r).await;
    pair.assert_quiet_rerun(&state).await;
    pair.assert_equal(&mut p, &mut r).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_after_uidvalidity_reset_uploads_only_new_messages() {
    uidvalidity_reset(TestServer::dovecot_primary(), "rbuv").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_after_uidvalidity_reset_without_condstore() {
    uidvalidity_reset(TestServer::dovecot_nocondstore(), "rbnc").await;
}

/// After a full sync, a pass with no state (a lost file, or `--rebuild-state`) maps everything
/// by identity: no write on the target, bodies read only for ambiguous messages.
async fn assert_rebuild_writes_nothing(pair: &Pair, state: &Path, extra: &[&str], seeds: &[Seed]) {
    let label = format!("rebuild with {extra:?} on {}", state.display());
    let run = pair.sync(state, extra).await;
    pair.print_wire(&label);
    eprintln!("summary: {}", run.stdout.trim());
    assert_eq!(run.code, 0, "{run:?}");
    let total = (40 + STEADY.iter().map(|(_, n)| n).sum::<usize>()) as u64;
    assert_eq!(
        (run.count("copied"), run.count("adopted")),
        (0, total),
        "{}",
        run.stdout
    );
    let dst = &pair.dst_proxy;
    for verb in ["APPEND", "COPY", "MOVE", "EXPUNGE", "CREATE", "DELETE"] {
        assert_eq!(
            dst.count(verb),
            0,
            "{verb} on the target: {:?}",
            writes(dst)
        );
    }
    let src_fetches = body_fetches(&pair.src_proxy);
    let dst_fetches = body_fetches(dst);
    let mut p = TestImap::connect(&pair.primary, &pair.src_user).await;
    let mut r = TestImap::connect(&pair.recovery, &pair.dst_user).await;
    // The twins with different flags may be paired the other way round: their flags are
    // then written, nothing else.
    assert!(dst.count("STORE") <= 4, "target: {:?}", writes(dst));
    assert_stores_within(dst, &swappable_twins(&mut r, seeds).await);
    for (fetches, imap, side) in [
        (&src_fetches, &mut p, "source"),
        (&dst_fetches, &mut r, "target"),
    ] {
        assert!(
            fetches.keys().all(|f| f == RESET),
            "{side}: bodies read outside {RESET}: {fetches:?}"
        );
        let uids = fetches.get(RESET).cloned().unwrap_or_default();
        let kinds = kinds_by_uid(imap, RESET, seeds).await;
        let t = tally(&uids, &kinds);
        eprintln!("{label}: {side} bodies read: {} ({t:?})", uids.len());
        assert!(
            !t.contains_key(&Kind::Unique),
            "{side}: bodies of unambiguous messages read: {t:?}"
        );
        assert!(uids.len() <= 10, "{side}: {uids:?}");
        let proxy = if side == "source" {
            &pair.src_proxy
        } else {
            dst
        };
        assert_unique_matched_by_header(proxy, &kinds, side);
    }
    pair.assert_equal(&mut p, &mut r).await;
    pair.assert_quiet_rerun(state).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_from_lost_state_and_rebuild_state_write_nothing() {
    let pair = Pair::new(
        TestServer::dovecot_primary(),
        TestServer::dovecot_recovery(),
        "rblost",
    );
    let mut p = TestImap::connect(&pair.primary, &pair.src_user).await;
    let seeds = seed_account(&mut p).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pair.redb");
    let first = pair.sync(&state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");

    std::fs::remove_file(&state).unwrap();
    assert_rebuild_writes_nothing(&pair, &state, &[], &seeds).await;
    // The state is intact now; --rebuild-state throws it away and does the same.
    assert_rebuild_writes_nothing(&pair, &state, &["--rebuild-state"], &seeds).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_from_lost_state_onto_cyrus_writes_nothing() {
    let pair = Pair::new(TestServer::dovecot_primary(), TestServer::cyrus(), "rbcy");
    let mut p = TestImap::connect(&pair.primary, &pair.src_user).await;
    // Cyrus creates special-use folders for every new account; give the primary the same,
    // so that both accounts hold the same folders.
    let mut c = TestImap::connect(&pair.recovery, &pair.dst_user).await;
    for folder in c.folders().await {
        p.create(&folder).await;
    }
    let seeds = seed_account(&mut p).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pair.redb");
    let first = pair.sync(&state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    std::fs::remove_file(&state).unwrap();
    assert_rebuild_writes_nothing(&pair, &state, &[], &seeds).await;
}
