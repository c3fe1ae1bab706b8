//! Failover and failback against two real Dovecot instances: the failed-over mark stops one-way
//! sync; failback merges what both sides did since, applies it to both, and resumes sync.
#![allow(dead_code)] // helpers grow with the failback tests below

use std::path::Path;
use std::time::Duration;

use crate::mr::{on_pair, sync, Run, PASSWORDS};
use crate::support::imap_client::{TestImap, ToAppend};
use crate::support::servers::{fresh_user, TestServer};
use crate::support::watcher::{wait_in_step, Account, Watch};

/// How long a running watch may take to bring the recovery side in step before the test
/// fails (a deadline, not a measure: the first pass of the drill copies 1 000 messages).
const WATCH_DEADLINE: Duration = Duration::from_secs(120);

/// A pair of fresh accounts, primary on the Dovecot primary, recovery on the Dovecot recovery.
pub struct Pair {
    pub source: String,
    pub target: String,
    pub primary_server: TestServer,
    pub recovery_server: TestServer,
    pub src_user: String,
    pub dst_user: String,
    pub dir: tempfile::TempDir,
}

impl Pair {
    pub fn new(prefix: &str) -> Pair {
        Pair::with_recovery(prefix, TestServer::dovecot_recovery())
    }

    /// The recovery account on `r` (Cyrus accounts are created first).
    pub fn with_recovery(prefix: &str, r: TestServer) -> Pair {
        let src_user = fresh_user(&format!("{prefix}a"));
        let dst_user = fresh_user(&format!("{prefix}b"));
        let p = TestServer::dovecot_primary();
        if r.is_cyrus() {
            r.ensure_user(&dst_user);
        }
        Pair {
            source: format!("imap+plain://{src_user}@127.0.0.1:{}", p.port),
            target: format!("imap+plain://{dst_user}@127.0.0.1:{}", r.port),
            primary_server: p,
            recovery_server: r,
            src_user,
            dst_user,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("pair.redb")
    }

    pub fn primary_account(&self) -> Account<'_> {
        Account {
            server: &self.primary_server,
            user: &self.src_user,
        }
    }

    pub fn recovery_account(&self) -> Account<'_> {
        Account {
            server: &self.recovery_server,
            user: &self.dst_user,
        }
    }

    pub async fn primary(&self) -> TestImap {
        self.primary_account().connect().await
    }

    pub async fn recovery(&self) -> TestImap {
        self.recovery_account().connect().await
    }

    /// `mailreplica watch` on the pair, in the background, logging to `log` in the pair's
    /// directory; a pass at least every 2 s besides IDLE.
    pub fn watch(&self, log: &str) -> Watch {
        Watch::spawn_pair(
            &self.source,
            &self.target,
            &self.state(),
            &["--poll-interval", "2"],
            &self.dir.path().join(log),
        )
    }

    pub async fn sync(&self) -> Run {
        sync(&self.source, &self.target, &self.state(), &[]).await
    }

    pub async fn run(&self, command: &str, extra: &[&str]) -> Run {
        on_pair(
            command,
            &self.source,
            &self.target,
            &self.state(),
            extra,
            &PASSWORDS,
        )
        .await
    }
}

pub fn message(folder: &str, i: usize, tag: &str) -> Vec<u8> {
    format!(
        "From: sender{i}@example.org\r\nTo: user@example.org\r\nSubject: {folder} {tag} {i}\r\nMessage-ID: <{folder}-{tag}-{i}@failback.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody of {folder} {tag} message {i}\r\n"
    )
    .into_bytes()
}

/// `n` base messages per folder (every third one `\Seen`), sent in batches.
pub async fn seed(imap: &mut TestImap, folders: &[(&str, usize)]) {
    for (folder, n) in folders {
        if *folder != "INBOX" {
            imap.create(folder).await;
        }
        let batch: Vec<ToAppend> = (0..*n)
            .map(|i| ToAppend {
                flags: if i % 3 == 0 { &["\\Seen"] } else { &[] },
                internaldate: DATE,
                bytes: message(folder, i, "base"),
            })
            .collect();
        imap.append_batch(folder, &batch).await;
    }
}

fn status_json(state: &Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailreplica"))
        .args(["status", "--json", "--state"])
        .arg(state)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn failover_stops_sync_until_failback() {
    let pair = Pair::new("fo");
    let mut p = pair.primary().await;
    seed(&mut p, &[("INBOX", 5)]).await;
    let first = pair.sync().await;
    assert_eq!(first.code, 0, "{first:?}");

    let fo = pair.run("failover", &[]).await;
    assert_eq!(fo.code, 0, "{fo:?}");
    assert!(fo.stdout.contains("failed over"), "{fo:?}");
    // Idempotent.
    let again = pair.run("failover", &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("already failed over"), "{again:?}");

    let refused = pair.sync().await;
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(
        refused.stderr.contains("failed over since")
            && refused.stderr.contains("mailreplica failback"),
        "{refused:?}"
    );
    let status = status_json(&pair.state());
    assert_eq!(status["failed_over"]["phase"], "frozen", "{status}");
}

#[tokio::test]
async fn failover_without_state_is_refused() {
    let pair = Pair::new("fonostate");
    let fo = pair.run("failover", &[]).await;
    assert_eq!(fo.code, 2, "{fo:?}");
    assert!(fo.stderr.contains("never synced"), "{fo:?}");
    assert!(!pair.state().exists());
}

/// The UID of the message with this Message-ID in a folder.
async fn uid_of(imap: &mut TestImap, folder: &str, message_id: &str) -> u32 {
    imap.messages(folder)
        .await
        .iter()
        .find(|m| m.message_id.as_deref() == Some(message_id))
        .unwrap_or_else(|| panic!("{}: {folder} lacks {message_id}", imap.label()))
        .uid
}

fn mid(folder: &str, tag: &str, i: usize) -> String {
    format!("<{folder}-{tag}-{i}@failback.test>")
}

/// Message-ID -> the folders holding a copy (one entry per copy), over the whole account.
async fn where_is(imap: &mut TestImap) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for folder in imap.folders().await {
        for m in imap.messages(&folder).await {
            out.entry(m.message_id.unwrap_or_default())
                .or_default()
                .push(folder.clone());
        }
    }
    out
}

fn sha(folder: &str, tag: &str, i: usize) -> String {
    crate::support::imap_client::sha256_hex(&message(folder, i, tag))
}

const DATE: Option<&str> = Some("01-Jan-2024 10:00:00 +0000");

/// (kind, folder, identity or handle) of every action of one side in a `--json` plan.
fn actions(plan: &serde_json::Value, side: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = plan["actions"][side]
        .as_array()
        .unwrap_or_else(|| panic!("no actions.{side} in {plan}"))
        .iter()
        .map(|a| {
            let what = a["identity"]
                .as_str()
                .or(a["from"].as_str())
                .unwrap_or("")
                .to_string();
            (
                a["kind"].as_str().unwrap_or("").to_string(),
                a["folder"].as_str().unwrap_or("").to_string(),
                what,
            )
        })
        .collect();
    out.sort();
    out
}

fn act(kind: &str, folder: &str, what: &str) -> (String, String, String) {
    (kind.to_string(), folder.to_string(), what.to_string())
}

/// The failover drill of issue 9 (as `scripts/drill` runs it): a 1 000-message primary
/// replicated by a running `watch`; `failover` taken by that watch; changes on both sides
/// (including every must-pass case); the dry run lists exactly those changes; the failback,
/// held first by the removal budget (the primary deleted a folder of 71), applies them once
/// allowed; verify passes; every message not deleted is present exactly once on each side;
/// `watch` replicates one way again and finds nothing to copy or remove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_merges_both_sides_after_failover() {
    drill(Pair::new("fb")).await;
}

/// The same drill with the recovery side on Cyrus: its autocreated special-use folders are on
/// the primary too before the first pass, so the base is the same as with Dovecot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_merges_both_sides_with_cyrus_as_recovery() {
    TestServer::cyrus().require();
    let pair = Pair::with_recovery("fbcy", TestServer::cyrus());
    let mut p = pair.primary().await;
    for f in ["Sent", "Drafts", "Trash", "Junk"] {
        p.create(f).await;
    }
    drill(pair).await;
}

/// The drill's primary: 1 000 messages in six folders.
const DRILL_BASE: [(&str, usize); 6] = [
    ("INBOX", 285),
    ("Work", 215),
    ("Lists", 215),
    ("Archive", 143),
    ("Travel", 71),
    ("Old", 71),
];

/// The `<state>.status.json` a running watch writes after each pass.
fn watch_status(state: &Path) -> Option<serde_json::Value> {
    let mut name = state.as_os_str().to_owned();
    name.push(".status.json");
    let raw = std::fs::read(std::path::PathBuf::from(name)).ok()?;
    serde_json::from_slice(&raw).ok()
}

async fn drill(pair: Pair) {
    TestServer::dovecot_primary().require();
    pair.recovery_server.require();
    let base = DRILL_BASE;
    let total: usize = base.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 1000);
    let mut p = pair.primary().await;
    seed(&mut p, &base).await;

    // Replicated by a running watch, which takes the failover.
    let mut watch = pair.watch("watch.log");
    wait_in_step(
        pair.primary_account(),
        pair.recovery_account(),
        &mut watch,
        "the first pass of the 1 000 messages",
        WATCH_DEADLINE,
    )
    .await;
    let fo = pair.run("failover", &[]).await;
    assert_eq!(fo.code, 0, "{fo:?}");
    assert!(
        fo.stdout.contains("took the request"),
        "the running watch acknowledges the failover: {fo:?}\nlog:\n{}",
        watch.log()
    );

    // The primary, with changes that never replicated (the watch still runs: the pair is
    // stopped, not the process).
    for i in 0..3 {
        p.append("INBOX", &[], DATE, &message("INBOX", i, "pnew"))
            .await;
    }
    let u = uid_of(&mut p, "Work", &mid("Work", "base", 1)).await;
    p.set_flags("Work", u, &["\\Seen"], &[]).await; // a read
    let u = uid_of(&mut p, "Lists", &mid("Lists", "base", 4)).await;
    p.move_uids("Lists", &[u], "Archive").await; // a move
    let u = uid_of(&mut p, "INBOX", &mid("INBOX", "base", 9)).await;
    p.expunge_uids("INBOX", &[u]).await; // a delete
    p.rename_folder("Travel", "Trips").await; // must-pass 1: renamed while B moves into it
    p.append("INBOX", &[], DATE, &message("INBOX", 0, "both"))
        .await; // must-pass 2
    let u = uid_of(&mut p, "Work", &mid("Work", "base", 4)).await;
    p.expunge_uids("Work", &[u]).await; // must-pass 3: deleted here, only read there
    p.delete_folder("Old").await; // must-pass 4: deleted here, mail moved into it there

    // failback needs the state the watch holds: it is stopped now (SIGTERM, exit 0).
    assert!(watch.is_running(), "log:\n{}", watch.log());
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);
    assert!(
        watch.log().contains("no longer replicated"),
        "log:\n{}",
        watch.log()
    );

    // The recovery side, live for days.
    let mut r = pair.recovery().await;
    for i in 0..2 {
        r.append("INBOX", &[], DATE, &message("INBOX", i, "bnew"))
            .await;
        r.append("Work", &["\\Flagged"], DATE, &message("Work", i, "bnew"))
            .await;
    }
    r.append("INBOX", &[], DATE, &message("INBOX", 0, "both"))
        .await;
    let u = uid_of(&mut r, "Archive", &mid("Archive", "base", 1)).await;
    r.set_flags("Archive", u, &["\\Seen"], &[]).await;
    let u = uid_of(&mut r, "Work", &mid("Work", "base", 4)).await;
    r.set_flags("Work", u, &["\\Seen"], &[]).await;
    let u = uid_of(&mut r, "INBOX", &mid("INBOX", "base", 20)).await;
    r.move_uids("INBOX", &[u], "Travel").await;
    let u = uid_of(&mut r, "INBOX", &mid("INBOX", "base", 30)).await;
    r.move_uids("INBOX", &[u], "Old").await;
    let u = uid_of(&mut r, "Archive", &mid("Archive", "base", 2)).await;
    r.expunge_uids("Archive", &[u]).await;
    r.create("Projects").await;
    r.append("Projects", &[], DATE, &message("Projects", 0, "bnew"))
        .await;
    r.rename_folder("Lists", "Mailing lists").await; // must-pass 5: a rename, not delete + create

    let dry = pair.run("failback", &["--dry-run", "--json"]).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    let plan = dry.json();
    let none = "";
    let mut want_primary = vec![
        act("create_folder", "Projects", none),
        act("place_upload", "Projects", &sha("Projects", "bnew", 0)),
        act("rename_folder", "Mailing lists", "Lists"),
        act("place_upload", "INBOX", &sha("INBOX", "bnew", 0)),
        act("place_upload", "INBOX", &sha("INBOX", "bnew", 1)),
        act("place_upload", "Work", &sha("Work", "bnew", 0)),
        act("place_upload", "Work", &sha("Work", "bnew", 1)),
        act("set_flags", "Archive", none),
        act("move", "Trips", "INBOX"),
        act("create_folder", "Old", none),
        act("move", "Old", "INBOX"),
        act("remove", "Archive", &sha("Archive", "base", 2)),
    ];
    want_primary.sort();
    assert_eq!(actions(&plan, "primary"), want_primary, "{plan:#}");
    let old = base[5].1;
    let mut want_recovery = vec![
        act("place_upload", "INBOX", &sha("INBOX", "pnew", 0)),
        act("place_upload", "INBOX", &sha("INBOX", "pnew", 1)),
        act("place_upload", "INBOX", &sha("INBOX", "pnew", 2)),
        act("set_flags", "Work", none),
        act("move", "Archive", "Mailing lists"),
        act("remove", "INBOX", &sha("INBOX", "base", 9)),
        act("rename_folder", "Trips", "Travel"),
        act("remove", "Work", &sha("Work", "base", 4)),
    ];
    for i in 0..old {
        want_recovery.push(act("remove", "Old", &sha("Old", "base", i)));
    }
    want_recovery.sort();
    assert_eq!(actions(&plan, "recovery"), want_recovery, "{plan:#}");
    // The folder the primary deleted is kept for the mail moved into it, and said so.
    let conflicts = plan["conflicts"].as_array().unwrap();
    assert!(
        conflicts
            .iter()
            .any(|c| c["folder"] == "Old"
                && c["text"].as_str().unwrap().contains("kept and recreated")),
        "{plan:#}"
    );
    // Nothing changed by the dry run.
    let again = pair.run("failback", &["--dry-run", "--json"]).await;
    assert_eq!(actions(&again.json(), "primary"), want_primary);
    assert_eq!(actions(&again.json(), "recovery"), want_recovery);

    // The removal budget still applies: the folder the primary deleted takes more removals
    // on the recovery side than max(50, 5 %) of its 1 000 messages; nothing is applied.
    let held = pair.run("failback", &["--json"]).await;
    assert_eq!(held.code, 3, "{held:?}");
    let held = held.json();
    let removals = old + 2;
    let text = held["message"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "removes {removals} message(s) on the recovery side"
        )) && text.contains("--allow-deletions"),
        "{held:#}"
    );
    assert!(held["applied"].is_null(), "{held:#}");
    let again = pair.run("failback", &["--dry-run", "--json"]).await;
    assert_eq!(actions(&again.json(), "recovery"), want_recovery);

    let done = pair.run("failback", &["--json", "--allow-deletions"]).await;
    assert_eq!(done.code, 0, "{done:?}");
    let out = done.json();
    assert_eq!(out["remaining"], 0, "{out:#}");
    assert_eq!(out["resumed"]["copied"], 0, "{out:#}");

    let v = crate::mr::verify(&pair.source, &pair.target).await;
    assert_eq!(v.code, 0, "{v:?}");

    // Every message not deleted, exactly once on each side, where the merge put it.
    let mut expected: std::collections::BTreeMap<String, String> = Default::default();
    for (folder, n) in base {
        for i in 0..n {
            let f = match folder {
                "Lists" => "Mailing lists",
                "Travel" => "Trips",
                f => f,
            };
            expected.insert(mid(folder, "base", i), f.to_string());
        }
    }
    for gone in [
        mid("INBOX", "base", 9),
        mid("Work", "base", 4),
        mid("Archive", "base", 2),
    ] {
        expected.remove(&gone);
    }
    for i in 0..old {
        expected.remove(&mid("Old", "base", i));
    }
    expected.insert(mid("Lists", "base", 4), "Archive".into());
    expected.insert(mid("INBOX", "base", 20), "Trips".into());
    expected.insert(mid("INBOX", "base", 30), "Old".into());
    for i in 0..3 {
        expected.insert(mid("INBOX", "pnew", i), "INBOX".into());
    }
    for i in 0..2 {
        expected.insert(mid("INBOX", "bnew", i), "INBOX".into());
        expected.insert(mid("Work", "bnew", i), "Work".into());
    }
    expected.insert(mid("Projects", "bnew", 0), "Projects".into());
    expected.insert(mid("INBOX", "both", 0), "INBOX".into());
    let mut expected: std::collections::BTreeMap<String, Vec<String>> =
        expected.into_iter().map(|(k, v)| (k, vec![v])).collect();
    let mut p = pair.primary().await;
    let mut r = pair.recovery().await;
    assert_eq!(where_is(&mut p).await, expected, "primary");
    assert_eq!(where_is(&mut r).await, expected, "recovery");

    // Back to one-way replication under watch: its first pass finds both sides in step
    // (nothing copied, moved or removed), and new mail on the primary is replicated.
    let mut watch = pair.watch("watch-after-failback.log");
    let pid = watch.pid().map(u64::from);
    let state = pair.state();
    watch
        .wait_until("the first pass after failback", WATCH_DEADLINE, |_| {
            // Written by this process after a pass that succeeded.
            watch_status(&state).is_some_and(|s| {
                s["watch"]["pid"].as_u64() == pid && s["watch"]["last_error"].is_null()
            })
        })
        .await;
    let status = watch_status(&state).unwrap();
    let pass = &status["last_pass"];
    for key in [
        "copied",
        "copied_on_target",
        "adopted",
        "moved",
        "flags_updated",
        "removed",
        "removals_held",
        "folders_created",
        "folders_renamed",
        "folders_deleted",
    ] {
        assert_eq!(pass[key], 0, "{key}: {status:#}\nlog:\n{}", watch.log());
    }
    p.append("INBOX", &[], DATE, &message("INBOX", 0, "after"))
        .await;
    wait_in_step(
        pair.primary_account(),
        pair.recovery_account(),
        &mut watch,
        "new mail after failback",
        WATCH_DEADLINE,
    )
    .await;
    assert_eq!(watch.terminate(Duration::from_secs(10)).await, 0);
    expected.insert(mid("INBOX", "after", 0), vec!["INBOX".into()]);
    assert_eq!(where_is(&mut p).await, expected, "primary, after failback");
    assert_eq!(where_is(&mut r).await, expected, "recovery, after failback");

    // And a one-shot sync finds nothing to do.
    let after = pair.sync().await;
    assert_eq!(after.code, 0, "{after:?}");
    assert_eq!(after.count("copied"), 0);
    assert_eq!(after.count("removed"), 0);
    let status = status_json(&pair.state());
    assert!(status["failed_over"].is_null(), "{status}");
}

/// Killed at each step of a failback (SIGKILL through `MAILREPLICA_CRASH_AT`), then run
/// again: the merge finishes with no loss and no duplicate, on both sides.
#[tokio::test]
async fn failback_killed_midway_finishes_on_rerun() {
    for point in [
        "failback_after_folders:1",
        "failback_after_upload_batch:1",
        "failback_after_places:1",
        "failback_after_remove:1",
        "failback_after_primary:1",
        "failback_after_apply:1",
        "failback_after_reset:1",
    ] {
        let pair = Pair::new("fbcrash");
        let mut p = pair.primary().await;
        seed(&mut p, &[("INBOX", 30), ("Work", 20)]).await;
        let first = pair.sync().await;
        assert_eq!(first.code, 0, "{point}: {first:?}");
        assert_eq!(pair.run("failover", &[]).await.code, 0);

        // 150 new on the recovery side: two upload batches to the primary.
        let mut r = pair.recovery().await;
        for i in 0..150 {
            r.append("INBOX", &[], DATE, &message("INBOX", i, "bnew"))
                .await;
        }
        r.create("Projects").await;
        let u = uid_of(&mut r, "Work", &mid("Work", "base", 3)).await;
        r.expunge_uids("Work", &[u]).await;
        for i in 0..5 {
            p.append("Work", &[], DATE, &message("Work", i, "pnew"))
                .await;
        }
        let u = uid_of(&mut p, "INBOX", &mid("INBOX", "base", 7)).await;
        p.expunge_uids("INBOX", &[u]).await;
        let u = uid_of(&mut p, "INBOX", &mid("INBOX", "base", 8)).await;
        p.set_flags("INBOX", u, &["\\Flagged"], &[]).await;

        let [source_password, target_password] = PASSWORDS;
        let killed = on_pair(
            "failback",
            &pair.source,
            &pair.target,
            &pair.state(),
            &["--json"],
            &[
                source_password,
                target_password,
                ("MAILREPLICA_CRASH_AT", point),
            ],
        )
        .await;
        assert_eq!(killed.code, -1, "{point}: not killed: {killed:?}");
        let rerun = pair.run("failback", &["--json"]).await;
        assert_eq!(rerun.code, 0, "{point}: {rerun:?}");

        let mut expected: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (folder, n) in [("INBOX", 30), ("Work", 20)] {
            for i in 0..n {
                expected.insert(mid(folder, "base", i), vec![folder.to_string()]);
            }
        }
        expected.remove(&mid("Work", "base", 3));
        expected.remove(&mid("INBOX", "base", 7));
        for i in 0..150 {
            expected.insert(mid("INBOX", "bnew", i), vec!["INBOX".into()]);
        }
        for i in 0..5 {
            expected.insert(mid("Work", "pnew", i), vec!["Work".into()]);
        }
        let mut p = pair.primary().await;
        let mut r = pair.recovery().await;
        assert_eq!(where_is(&mut p).await, expected, "{point}: primary");
        assert_eq!(where_is(&mut r).await, expected, "{point}: recovery");
        assert!(
            r.folders().await.contains(&"Projects".to_string())
                && p.folders().await.contains(&"Projects".to_string()),
            "{point}"
        );
        let v = crate::mr::verify(&pair.source, &pair.target).await;
        assert_eq!(v.code, 0, "{point}: {v:?}");
        let after = pair.sync().await;
        assert_eq!(after.code, 0, "{point}: {after:?}");
        assert_eq!(after.count("copied"), 0, "{point}");
    }
}

/// A plan that would remove more than the removal budget on a side applies nothing until
/// `--allow-deletions`.
#[tokio::test]
async fn failback_holds_a_mass_removal_until_allowed() {
    let pair = Pair::new("fbbudget");
    let mut p = pair.primary().await;
    seed(&mut p, &[("INBOX", 5), ("Work", 60)]).await;
    assert_eq!(pair.sync().await.code, 0);
    assert_eq!(pair.run("failover", &[]).await.code, 0);
    let uids: Vec<u32> = p.messages("Work").await.iter().map(|m| m.uid).collect();
    p.expunge_uids("Work", &uids[..55]).await;

    let held = pair.run("failback", &["--json"]).await;
    assert_eq!(held.code, 3, "{held:?}");
    assert!(
        held.json()["message"]
            .as_str()
            .unwrap()
            .contains("--allow-deletions"),
        "{held:?}"
    );
    let mut r = pair.recovery().await;
    assert_eq!(r.messages("Work").await.len(), 60, "nothing applied");
    assert_eq!(pair.sync().await.code, 3, "still failed over");

    let allowed = pair.run("failback", &["--json", "--allow-deletions"]).await;
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert_eq!(r.messages("Work").await.len(), 5);
    assert_eq!(pair.sync().await.code, 0);
}
