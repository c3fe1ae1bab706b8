//! Crash tests: the mailreplica process is killed (SIGKILL, by itself, through
//! `MAILREPLICA_CRASH_AT=<point>:<n>`) at one exact step of a pass, then the same sync is run
//! again without the crash. After that second run the target must equal the primary exactly (no
//! duplicate, no missing message, same flags and INTERNALDATE) and `verify` must exit 0.
//!
//! Every crash point runs on its own fresh target user and its own state file. The primary is
//! seeded once per test function (a fresh user) with `MAILREPLICA_CRASHTEST_MESSAGES` messages
//! (default 120) in three folders: byte-identical duplicates in one folder and across folders
//! (half of them with the same INTERNALDATE, which the target may place by UID COPY), varied
//! flags and INTERNALDATEs, and one ~200 KB message at the head of every folder (so
//! `mid_literal` cuts large literals).
//!
//! The initial-pass tests first run a probe pass through the counting proxy on a fresh target:
//! the APPENDs it sends, in order (mailbox, literal size), say which `after_append_ok:n` and
//! `mid_literal:n` exist and where the big literals and the folder boundaries are (117 APPENDs
//! and 3 COPYs at N = 120). The three tests (nextest runs them in parallel) and the crash points
//! they exercise at the default size (counted only when the process was really killed there; a
//! point the pass does not reach `n` times lets the run complete and is not counted):
//!
//! * `crash_initial_sync_after_append_ok`: 21 points `after_append_ok:n` spread over all
//!   uploads, with both sides of every folder boundary; every one must be reached.
//! * `crash_initial_sync_literals_journal_commit`: 15 points `mid_literal:n` (every big literal
//!   and its neighbours, the first and last uploads, a few in between; all must be reached),
//!   then `after_journal:n`, `after_commit:n` (and `after_store:n`, for the flags of copies
//!   placed by UID COPY, if the pass reaches it) for n = 1, 2, ... until the pass no longer
//!   reaches the point (3 each at N = 120: one batch per folder; about 12 each at N = 2000):
//!   21 in all.
//! * `crash_incremental_pass`: targets are synced first, then the primary changes (in every
//!   folder a new keyword and a `\Seen` removal or `\Flagged` addition, one expunge, in INBOX
//!   of the later of a byte-identical pair, two in the last folder, one new message, the one in
//!   INBOX big) and the next pass is cut at every `after_store:n`, `after_expunge:n`,
//!   `after_append_ok:n` and `mid_literal:n` (candidates counted on the wire by a probe pass
//!   through the counting proxy: 9 STOREs of which 6 are flag changes, 3 EXPUNGEs, 3 APPENDs)
//!   and at `after_journal:n`, `after_commit:n` for n = 1.. while reached: 21 in all
//!   (6 + 3 + 3 + 3 + 3 + 3). Runs with `--allow-deletions` so the expunges are applied.
//!
//! Each test asserts its own minimum: 20 + 18 + 15 = 53 >= 50 distinct crash points (63
//! measured). Each prints a `crashtest: ...: K crash points exercised` line (shown with
//! `--success-output final`); `scripts/crashtest` runs the same tests at 2000 messages.
//! `MAILREPLICA_CRASHTEST_JOBS` (default 3) sets how many cases of one test run at once.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Instant;

use futures::StreamExt;

use crate::mr::{account, assert_same_accounts, verify, Key};
use crate::support::corpus::big_message;
use crate::support::imap_client::TestImap;
use crate::support::proxy::{FaultPlan, Proxy};
use crate::support::servers::{ca_file, fresh_user, TestServer};

/// The folders of the seeded primary (nested, non-ASCII).
const FOLDERS: [&str; 3] = ["INBOX", "Archive/2023", "Projets/Été"];

/// Size of the big message at the head of every folder.
const BIG: usize = 200_000;

const SIGKILL: i32 = 9;

type Account = BTreeMap<String, Vec<Key>>;

/// `MAILREPLICA_CRASHTEST_MESSAGES`, default 120 (at least 30).
fn message_count() -> usize {
    match std::env::var("MAILREPLICA_CRASHTEST_MESSAGES") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<usize>()
            .unwrap_or_else(|_| panic!("MAILREPLICA_CRASHTEST_MESSAGES={v:?} is not a number"))
            .max(30),
        _ => 120,
    }
}

/// How many crash cases of one test run at once (`MAILREPLICA_CRASHTEST_JOBS`, default 3).
fn jobs() -> usize {
    std::env::var("MAILREPLICA_CRASHTEST_JOBS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(3usize)
        .max(1)
}

/// One message of the seeded primary.
struct Seed {
    folder: &'static str,
    flags: Vec<String>,
    date: String,
    bytes: Vec<u8>,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn flags_for(i: usize) -> Vec<String> {
    let f: &[&str] = match i % 8 {
        0 => &[],
        1 => &["\\Seen"],
        2 => &["\\Seen", "\\Flagged"],
        3 => &["\\Answered", "\\Seen"],
        4 => &["$Forwarded"],
        5 => &["\\Seen", "$Label1", "Work"],
        6 => &["\\Draft"],
        _ => &["\\Flagged", "$Important"],
    };
    f.iter().map(|s| s.to_string()).collect()
}

fn date_for(i: usize) -> String {
    let zones = ["+0000", "+0200", "-0500"];
    format!(
        "{:02}-{}-2023 {:02}:{:02}:{:02} {}",
        1 + i % 28,
        MONTHS[(i / 28) % 12],
        i % 24,
        (i * 7) % 60,
        (i * 13) % 60,
        zones[i % 3]
    )
}

fn text_message(tag: &str, i: usize) -> Vec<u8> {
    let mut body = String::new();
    let lines = 5 + (i * 37) % 60;
    for l in 0..lines {
        body.push_str(&format!(
            "Line {l} of message {tag}-{i}: the quick brown fox jumps over the lazy dog.\r\n"
        ));
    }
    format!(
        "From: Sender {i} <sender{i}@example.org>\r\n\
         To: Recipient <rcpt@example.net>\r\n\
         Subject: {tag} message {i}\r\n\
         Date: Mon, 2 Jan 2023 10:00:00 +0000\r\n\
         Message-ID: <{tag}-{i}@crash.mailreplica.test>\r\n\
         \r\n\
         {body}"
    )
    .into_bytes()
}

/// The primary's messages, in APPEND order: message i goes to `FOLDERS[i % 3]`, so every
/// folder holds about N/3 and the big ones (the first of each folder) are uploads 1, N/3+1 and
/// 2N/3+1 of an initial pass when N is a multiple of 3.
fn seeds(n: usize) -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::with_capacity(n);
    for i in 0..n {
        let folder = FOLDERS[i % 3];
        let (bytes, date) = if i < 3 {
            (big_message(BIG + i), date_for(i))
        } else if i % 13 == 7 {
            // Byte-identical to the previous message of the same folder; every other one with
            // the same INTERNALDATE too.
            let orig = &out[i - 3];
            let date = if i % 2 == 0 {
                orig.date.clone()
            } else {
                date_for(i)
            };
            (orig.bytes.clone(), date)
        } else if i % 19 == 10 {
            // Byte-identical to a message of another folder; every other one with the same
            // INTERNALDATE too (the target may place those by UID COPY from the other folder).
            let orig = &out[i - 1];
            let date = if i % 2 == 0 {
                orig.date.clone()
            } else {
                date_for(i)
            };
            (orig.bytes.clone(), date)
        } else {
            (text_message("crash", i), date_for(i))
        };
        out.push(Seed {
            folder,
            flags: flags_for(i),
            date,
            bytes,
        });
    }
    out
}

/// Seeds a fresh primary user with `n` messages; returns the user and its account.
async fn seed_primary(prefix: &str, n: usize) -> (String, Account) {
    let primary = TestServer::dovecot_primary();
    let user = fresh_user(prefix);
    let mut p = TestImap::connect(&primary, &user).await;
    for f in FOLDERS {
        if f != "INBOX" {
            p.create(f).await;
        }
    }
    for s in seeds(n) {
        let flags: Vec<&str> = s.flags.iter().map(String::as_str).collect();
        p.append(s.folder, &flags, Some(&s.date), &s.bytes).await;
    }
    let acc = account(&mut p).await;
    p.logout().await;
    let total: usize = acc.values().map(Vec::len).sum();
    assert_eq!(total, n, "seeded {total} of {n} messages");
    (user, acc)
}

/// One run of the binary, with the exit status as it is (a signal is not an exit code).
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn killed(&self) -> bool {
        self.status.signal() == Some(SIGKILL)
    }

    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.stdout.trim()).ok()
    }
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// `mailreplica sync --json` with the test passwords and CA, fast retries, and the crash point
/// if one is given (`MAILREPLICA_CRASH_AT` is removed otherwise).
async fn run_sync(
    source: &str,
    target: &str,
    state: &Path,
    extra: &[&str],
    crash_at: Option<&str>,
) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailreplica"));
    cmd.args(["sync", "--source", source, "--target", target, "--state"])
        .arg(state)
        .arg("--json")
        .arg("--ca-file")
        .arg(ca_file())
        // One connection pair: the n-th APPEND (STORE, ...) is then the same message in every
        // run, which the cases count on. Concurrent workers meet faults in tests/faults.rs.
        .args(["--connections", "1"])
        .args(extra)
        .env("MAILREPLICA_SOURCE_PASSWORD", "test")
        .env("MAILREPLICA_TARGET_PASSWORD", "test")
        .env("MAILREPLICA_BACKOFF_MS", "10")
        .env_remove("MAILREPLICA_CRASH_AT");
    if let Some(c) = crash_at {
        cmd.env("MAILREPLICA_CRASH_AT", c);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    Outcome {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A crash point: `<point>:<n>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CrashPoint {
    point: &'static str,
    n: usize,
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.point, self.n)
    }
}

/// One crash case: a fresh target (already synced to the old primary for an incremental case),
/// its state file and the extra sync arguments.
struct Case {
    point: CrashPoint,
    source: String,
    target_user: String,
    state: std::path::PathBuf,
    extra: Vec<&'static str>,
    /// The account the primary holds now: what the target must hold after the resume.
    expected: std::sync::Arc<Account>,
    /// Whether what the target holds right after the crash must be a sub-multiset of the
    /// primary (true for an initial pass: every copy there is a message of the primary, and a
    /// single pass never uploads one twice).
    check_subset_after_crash: bool,
}

/// Runs a case; `true` if the process was killed at the point (then the resume was checked),
/// `false` if the pass completed without reaching it `n` times.
async fn run_case(case: Case) -> bool {
    let recovery = TestServer::dovecot_recovery();
    let target = recovery.url(&case.target_user);
    let extra: Vec<&str> = case.extra.clone();
    let crash_at = case.point.to_string();
    let crashed = run_sync(&case.source, &target, &case.state, &extra, Some(&crash_at)).await;
    if !crashed.killed() {
        assert!(
            crashed.status.code() == Some(0) && crashed.json().is_some(),
            "{crash_at}: the run neither crashed nor completed: {crashed:?}"
        );
        return false;
    }
    assert!(
        crashed.json().is_none() && !crashed.stdout.contains('{'),
        "{crash_at}: a killed run printed a summary: {crashed:?}"
    );

    let mut r = TestImap::connect(&recovery, &case.target_user).await;
    if case.check_subset_after_crash {
        let partial = account(&mut r).await;
        for (folder, keys) in &partial {
            let mut want: Vec<(String, i64)> = case
                .expected
                .get(folder)
                .map(|v| v.iter().map(|k| (k.0.clone(), k.2)).collect())
                .unwrap_or_default();
            for k in keys {
                match want.iter().position(|w| w.0 == k.0 && w.1 == k.2) {
                    Some(p) => {
                        want.remove(p);
                    }
                    None => panic!(
                        "{crash_at}: after the crash, {folder} on the target holds a copy the primary does not have (or one copy too many): {k:?}"
                    ),
                }
            }
        }
    }

    let resumed = run_sync(&case.source, &target, &case.state, &extra, None).await;
    assert!(
        resumed.status.code() == Some(0) && resumed.json().is_some(),
        "{crash_at}: the sync after the crash failed: {resumed:?}"
    );
    eprintln!(
        "crashtest: {crash_at} (target {}) resumed: {}",
        case.target_user,
        resumed.stdout.trim()
    );
    let got = account(&mut r).await;
    r.logout().await;
    if got != *case.expected {
        eprintln!(
            "crashtest: {crash_at}: target {} differs from the primary after the resume",
            case.target_user
        );
        assert_same_accounts(&case.expected, &got);
    }
    let v = verify(&case.source, &target).await;
    assert_eq!(v.code, 0, "{crash_at}: verify after the resume: {v:?}");
    true
}

/// Runs cases `jobs()` at a time; returns the points where the process was killed.
async fn run_cases(cases: Vec<Case>) -> Vec<CrashPoint> {
    let results: Vec<(CrashPoint, bool)> = futures::stream::iter(cases)
        .map(|c| async move {
            let p = c.point.clone();
            (p, run_case(c).await)
        })
        .buffer_unordered(jobs())
        .collect()
        .await;
    let mut hit: Vec<CrashPoint> = results
        .into_iter()
        .filter_map(|(p, k)| k.then_some(p))
        .collect();
    hit.sort();
    hit
}

/// Runs `point:1`, `point:2`, ... (one fresh target each, made by `make`) until the pass no
/// longer reaches the point or `cap` is reached; returns the points where it was killed.
async fn run_while_reached<F, Fut>(point: &'static str, cap: usize, make: F) -> Vec<CrashPoint>
where
    F: Fn(CrashPoint) -> Fut,
    Fut: std::future::Future<Output = Case>,
{
    let mut hit = Vec::new();
    for n in 1..=cap {
        let cp = CrashPoint { point, n };
        if !run_case(make(cp.clone()).await).await {
            break;
        }
        hit.push(cp);
    }
    hit
}

/// `count` distinct values spread evenly over 1..=max, always with 1 and max.
fn spread(max: usize, count: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..count)
        .map(|i| 1 + i * (max - 1) / (count - 1).max(1))
        .collect();
    v.dedup();
    v
}

fn initial_case(
    source: &str,
    expected: &std::sync::Arc<Account>,
    dir: &Path,
    point: CrashPoint,
) -> Case {
    let target_user = fresh_user("crashdst");
    Case {
        state: dir.join(format!("{target_user}.redb")),
        point,
        source: source.to_string(),
        target_user,
        extra: Vec::new(),
        expected: expected.clone(),
        check_subset_after_crash: true,
    }
}

/// What an initial pass sends to the target, seen by the counting proxy on a probe target: every
/// message APPENDed, in order, as (mailbox as sent, literal size) (a MULTIAPPEND carries
/// several), and how many UID COPY commands.
/// Deterministic: every crash case makes the same pass on its own fresh target.
async fn probe_initial_pass(source: &str, dir: &Path) -> (Vec<(String, usize)>, usize) {
    let proxy = Proxy::start(TestServer::dovecot_recovery().addr(), FaultPlan::None);
    let (_, _) = baseline(source, dir, Some(&proxy)).await;
    let appends: Vec<(String, usize)> = proxy
        .commands_detailed()
        .iter()
        .filter(|c| c.verb == "APPEND")
        .flat_map(|c| {
            let rest = c.line.split_once(" APPEND ").map(|(_, r)| r).unwrap_or("");
            let mailbox = rest.split(' ').next().unwrap_or("").to_string();
            assert!(!c.literals.is_empty(), "no literal in {:?}", c.line);
            c.literals.iter().map(move |&size| (mailbox.clone(), size))
        })
        .collect();
    let copies = proxy.count("COPY");
    eprintln!(
        "crashtest: the initial pass sends {} messages in {} APPEND and {copies} COPY",
        appends.len(),
        proxy.count("APPEND")
    );
    (appends, copies)
}

fn report(test: &str, n: usize, started: Instant, hit: &[CrashPoint]) {
    let names: Vec<String> = hit.iter().map(ToString::to_string).collect();
    eprintln!(
        "crashtest: {test}: {} crash points exercised with {n} messages in {:.1} s: {}",
        hit.len(),
        started.elapsed().as_secs_f64(),
        names.join(" ")
    );
}

/// `after_append_ok` (a tagged APPEND OK read, its outcome not committed yet) at 20 uploads
/// spread over an initial pass.
#[tokio::test(flavor = "multi_thread")]
async fn crash_initial_sync_after_append_ok() {
    let started = Instant::now();
    let n = message_count();
    let (src_user, expected) = seed_primary("crashsrca", n).await;
    let expected = std::sync::Arc::new(expected);
    let source = TestServer::dovecot_primary().url(&src_user);
    let dir = tempfile::tempdir().unwrap();
    let (appends, _) = probe_initial_pass(&source, dir.path()).await;
    let uploads = appends.len();
    assert!(uploads >= n * 9 / 10, "{uploads} uploads for {n} messages");
    let mut wanted: Vec<usize> = spread(uploads, 17);
    // Both sides of every folder boundary (the last upload of a folder, the first of the next).
    for k in 1..uploads {
        if appends[k].0 != appends[k - 1].0 {
            wanted.extend([k, k + 1]);
        }
    }
    wanted.push(2);
    wanted.sort();
    wanted.dedup();
    let cases: Vec<Case> = wanted
        .iter()
        .map(|&k| {
            initial_case(
                &source,
                &expected,
                dir.path(),
                CrashPoint {
                    point: "after_append_ok",
                    n: k,
                },
            )
        })
        .collect();
    let planned = cases.len();
    let hit = run_cases(cases).await;
    report("after_append_ok", n, started, &hit);
    // Every upload the probe saw is one tagged APPEND OK, so every n <= uploads is reached.
    assert_eq!(
        hit.len(),
        planned,
        "only {hit:?} of {wanted:?} were reached"
    );
    assert!(hit.len() >= 20, "{} crash points", hit.len());
}

/// `mid_literal` (half an APPEND literal on the socket), then `after_journal` and
/// `after_commit` at every batch of an initial pass.
#[tokio::test(flavor = "multi_thread")]
async fn crash_initial_sync_literals_journal_commit() {
    let started = Instant::now();
    let n = message_count();
    let (src_user, expected) = seed_primary("crashsrcb", n).await;
    let expected = std::sync::Arc::new(expected);
    let source = TestServer::dovecot_primary().url(&src_user);
    let dir = tempfile::tempdir().unwrap();

    // Every upload writes one literal: cut each big one (they head the folders), the uploads
    // around them, the first and the last ones, and a few spread in between.
    let (appends, copies) = probe_initial_pass(&source, dir.path()).await;
    let uploads = appends.len();
    let bigs: Vec<usize> = (1..=uploads)
        .filter(|&k| appends[k - 1].1 >= BIG / 2)
        .collect();
    assert!(bigs.len() >= FOLDERS.len(), "big uploads at {bigs:?}");
    let mut wanted: Vec<usize> = vec![1, 2, uploads - 1, uploads];
    for &k in &bigs {
        wanted.extend([k - 1, k, k + 1]);
    }
    wanted.retain(|&k| (1..=uploads).contains(&k));
    wanted.extend(spread(uploads, 7));
    wanted.sort();
    wanted.dedup();
    let cases: Vec<Case> = wanted
        .iter()
        .map(|&k| {
            initial_case(
                &source,
                &expected,
                dir.path(),
                CrashPoint {
                    point: "mid_literal",
                    n: k,
                },
            )
        })
        .collect();
    let mut hit = run_cases(cases).await;
    assert_eq!(
        hit.len(),
        wanted.len(),
        "mid_literal: only {hit:?} of {wanted:?} were reached"
    );

    // Batches: at least one per folder; discovered by running until a point is not reached.
    // Messages placed by UID COPY (same content and INTERNALDATE already in another folder)
    // get their own flags by STORE: cut there too, while reached.
    let (journal, commit, stores, copies_cut) = tokio::join!(
        run_while_reached("after_journal", 200, |cp| {
            let c = initial_case(&source, &expected, dir.path(), cp);
            async move { c }
        }),
        run_while_reached("after_commit", 200, |cp| {
            let c = initial_case(&source, &expected, dir.path(), cp);
            async move { c }
        }),
        run_while_reached("after_store", if copies > 0 { 200 } else { 0 }, |cp| {
            let c = initial_case(&source, &expected, dir.path(), cp);
            async move { c }
        }),
        // Between a UID COPY and the STORE that gives the copies their own flags.
        run_while_reached("after_copy", if copies > 0 { 200 } else { 0 }, |cp| {
            let c = initial_case(&source, &expected, dir.path(), cp);
            async move { c }
        }),
    );
    assert!(
        copies == 0 || !copies_cut.is_empty(),
        "after_copy never reached with {copies} copies"
    );
    assert!(
        journal.len() >= FOLDERS.len(),
        "after_journal reached only {} times (one batch per folder at least)",
        journal.len()
    );
    assert!(
        commit.len() >= FOLDERS.len(),
        "after_commit reached only {} times (one batch per folder at least)",
        commit.len()
    );
    hit.extend(journal);
    hit.extend(commit);
    hit.extend(stores);
    hit.extend(copies_cut);
    report(
        "mid_literal+after_journal+after_commit+after_store+after_copy",
        n,
        started,
        &hit,
    );
    assert!(hit.len() >= 18, "{} crash points", hit.len());
}

/// Changes the primary after the baseline sync: in every folder two flag changes (each its own
/// STORE: a new keyword; `\Seen` removed or a keyword added with `\Flagged`), one expunge (in
/// INBOX the later of a byte-identical pair, in the last folder two messages) and one new
/// message (the one in INBOX big).
async fn change_primary(p: &mut TestImap) {
    for (f, folder) in FOLDERS.iter().enumerate() {
        let msgs = p.messages(folder).await;
        assert!(msgs.len() >= 10, "{folder}: {} messages", msgs.len());
        // The later of the first byte-identical pair in this folder, else the third message.
        let dup = msgs
            .iter()
            .enumerate()
            .skip(1)
            .find(|(i, m)| msgs[..*i].iter().any(|o| o.sha256 == m.sha256))
            .map(|(_, m)| m.uid);
        let mut gone = vec![dup.unwrap_or(msgs[2].uid)];
        if f == FOLDERS.len() - 1 {
            gone.push(msgs[msgs.len() - 1].uid);
        }
        let kept: Vec<_> = msgs.iter().filter(|m| !gone.contains(&m.uid)).collect();
        let kw = format!("$IncA{f}");
        p.set_flags(folder, kept[4].uid, &[kw.as_str()], &[]).await;
        match kept[5..].iter().find(|m| m.flags.contains("\\Seen")) {
            Some(m) => p.set_flags(folder, m.uid, &[], &["\\Seen"]).await,
            None => {
                let kw = format!("$IncB{f}");
                p.set_flags(folder, kept[5].uid, &["\\Flagged", kw.as_str()], &[])
                    .await
            }
        }
        p.expunge_uids(folder, &gone).await;
        let bytes = if f == 0 {
            big_message(BIG + 10)
        } else {
            text_message("incremental", f)
        };
        p.append(
            folder,
            &["$New"],
            Some("02-Feb-2024 10:00:00 +0000"),
            &bytes,
        )
        .await;
    }
}

/// A target synced to the primary as it is now, with its state: the starting point of an
/// incremental case. Synced through `via` (a counting proxy) when given.
async fn baseline(source: &str, dir: &Path, via: Option<&Proxy>) -> (String, std::path::PathBuf) {
    let target_user = fresh_user("crashinc");
    let state = dir.join(format!("{target_user}.redb"));
    let target = match via {
        Some(p) => format!("imap+plain://{target_user}@127.0.0.1:{}", p.port()),
        None => TestServer::dovecot_recovery().url(&target_user),
    };
    let run = run_sync(source, &target, &state, &["--allow-deletions"], None).await;
    assert!(
        run.status.code() == Some(0),
        "baseline sync to {target_user}: {run:?}"
    );
    (target_user, state)
}

/// An incremental pass: after a full sync, the primary changes (flags, expunges, new
/// messages) and the next pass is cut at every step it takes.
#[tokio::test(flavor = "multi_thread")]
async fn crash_incremental_pass() {
    let started = Instant::now();
    let n = message_count();
    let (src_user, _) = seed_primary("crashsrcc", n).await;
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let source = primary.url(&src_user);
    let dir = tempfile::tempdir().unwrap();

    // How many baselines: the wire-visible points are counted on a probe target whose passes
    // go through the counting proxy; journal and commit points get a few spare targets.
    const SPARE: usize = 5;
    // 9 STOREs (6 flag changes, 3 `\Deleted` marks), 3 EXPUNGEs, 3 APPENDs at any size.
    const POOL: usize = 18 + 2 * SPARE + 2;
    let proxy = Proxy::start(recovery.addr(), FaultPlan::None);
    let (probe_user, probe_state) = baseline(&source, dir.path(), Some(&proxy)).await;
    let mut pool: Vec<(String, std::path::PathBuf)> = futures::stream::iter(0..POOL)
        .map(|_| baseline(&source, dir.path(), None))
        .buffer_unordered(jobs())
        .collect()
        .await;

    let mut p = TestImap::connect(&primary, &src_user).await;
    change_primary(&mut p).await;
    let expected = std::sync::Arc::new(account(&mut p).await);
    p.logout().await;

    proxy.reset_counts();
    let probe_target = format!("imap+plain://{probe_user}@127.0.0.1:{}", proxy.port());
    let probe = run_sync(
        &source,
        &probe_target,
        &probe_state,
        &["--allow-deletions"],
        None,
    )
    .await;
    assert!(probe.status.code() == Some(0), "probe pass: {probe:?}");
    let (stores, expunges, appends) = (
        proxy.count("STORE"),
        proxy.count("EXPUNGE"),
        proxy.appended(),
    );
    eprintln!(
        "crashtest: the incremental pass sends {stores} STORE, {expunges} EXPUNGE, {appends} APPEND: {:?}",
        proxy.commands()
    );
    assert!(
        stores >= 2 * FOLDERS.len() && expunges >= 1 && appends == FOLDERS.len(),
        "{:?}",
        proxy.commands()
    );
    drop(proxy);

    let mut wire: Vec<CrashPoint> = Vec::new();
    for (point, count) in [
        ("after_store", stores),
        ("after_expunge", expunges),
        ("after_append_ok", appends),
        ("mid_literal", appends),
    ] {
        wire.extend((1..=count).map(|n| CrashPoint { point, n }));
    }
    assert!(
        pool.len() >= wire.len() + 2 * SPARE,
        "{} baselines for {} wire points",
        pool.len(),
        wire.len()
    );
    let make = |point: CrashPoint, (target_user, state): (String, std::path::PathBuf)| Case {
        point,
        source: source.clone(),
        target_user,
        state,
        extra: vec!["--allow-deletions"],
        expected: expected.clone(),
        check_subset_after_crash: false,
    };
    let cases: Vec<Case> = wire
        .iter()
        .map(|cp| make(cp.clone(), pool.pop().unwrap()))
        .collect();
    let mut hit = run_cases(cases).await;
    // STOREs that mark messages \Deleted for an expunge may or may not count as flag STOREs
    // for the crash point; the flag changes themselves must.
    for point in ["after_expunge", "after_append_ok", "mid_literal"] {
        let want = wire.iter().filter(|c| c.point == point).count();
        let got = hit.iter().filter(|c| c.point == point).count();
        assert_eq!(got, want, "{point}: reached {got} of {want} times: {hit:?}");
    }
    let stores_hit = hit.iter().filter(|c| c.point == "after_store").count();
    assert!(
        stores_hit >= 2 * FOLDERS.len(),
        "after_store reached only {stores_hit} times: {hit:?}"
    );

    let journal_pool = std::sync::Mutex::new(pool.split_off(pool.len() - SPARE));
    let commit_pool = std::sync::Mutex::new(pool);
    let take = |pool: &std::sync::Mutex<Vec<(String, std::path::PathBuf)>>| {
        pool.lock()
            .unwrap()
            .pop()
            .expect("not enough baseline targets: raise the pool size")
    };
    let (journal, commit) = tokio::join!(
        run_while_reached("after_journal", SPARE, |cp| {
            let c = make(cp, take(&journal_pool));
            async move { c }
        }),
        run_while_reached("after_commit", SPARE, |cp| {
            let c = make(cp, take(&commit_pool));
            async move { c }
        }),
    );
    assert!(
        !journal.is_empty() && !commit.is_empty(),
        "after_journal {journal:?}, after_commit {commit:?}"
    );
    hit.extend(journal);
    hit.extend(commit);
    report("incremental", n, started, &hit);
    assert!(hit.len() >= 15, "{} crash points", hit.len());
}
