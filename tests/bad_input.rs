//! Bad input answered with a clear error, the right exit code, no panic, no secret in the
//! output, and no damage to the state.

use crate::mr::{mailreplica, mailreplica_env, on_pair, sync, Run};
use crate::support::imap_client::TestImap;
use crate::support::servers::{fresh_user, TestServer};

/// A run that failed cleanly: the code, no panic or backtrace, and these words on stderr.
fn assert_clean_failure(run: &Run, code: i32, words: &[&str]) {
    assert_eq!(run.code, code, "{run:?}");
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "{run:?}"
    );
    for w in words {
        assert!(run.stderr.contains(w), "stderr lacks {w:?}: {}", run.stderr);
    }
}

/// A pair that has been synced once, with its state file.
struct Synced {
    source: String,
    target: String,
    _dir: tempfile::TempDir,
    state: std::path::PathBuf,
}

async fn synced_pair(prefix: &str) -> Synced {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let user = fresh_user(prefix);
    let mut p = TestImap::connect(&primary, &user).await;
    p.append("INBOX", &["\\Seen"], None, b"Subject: one\r\n\r\none\r\n")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.redb");
    let s = Synced {
        source: primary.url(&user),
        target: recovery.url(&format!("{user}dst")),
        state,
        _dir: dir,
    };
    let first = sync(&s.source, &s.target, &s.state, &[]).await;
    assert_eq!(first.code, 0, "{first:?}");
    s
}

/// The state still works: a pass after the failure transfers nothing.
async fn assert_state_intact(s: &Synced) {
    let again = sync(&s.source, &s.target, &s.state, &[]).await;
    assert_eq!(
        (again.code, again.count("copied"), again.count("adopted")),
        (0, 0, 0),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_refused_without_leaking_it() {
    let s = synced_pair("badpw").await;
    let secret = "Sup3r-S3cret-Passw0rd";
    let run = on_pair(
        "sync",
        &s.source,
        &s.target,
        &s.state,
        &[],
        &[
            ("MAILREPLICA_SOURCE_PASSWORD", secret),
            ("MAILREPLICA_TARGET_PASSWORD", "test"),
        ],
    )
    .await;
    assert_clean_failure(
        &run,
        77,
        &["source", "login refused", &s.source, "password"],
    );
    assert!(
        !run.stderr.contains(secret) && !run.stdout.contains(secret),
        "{run:?}"
    );
    assert_state_intact(&s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_port_says_nothing_listens() {
    let s = synced_pair("closed").await;
    let state = s.state.to_string_lossy().into_owned();
    // Port 1 on loopback: nothing listens there.
    let run = mailreplica(&[
        "sync",
        "--source",
        &s.source,
        "--target",
        "imap://x@127.0.0.1:1",
        "--state",
        &state,
    ])
    .await;
    // Another target means another pair: the state is refused before any connection.
    assert_clean_failure(&run, 2, &["belongs to another pair"]);
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.redb").to_string_lossy().into_owned();
    let run = mailreplica(&[
        "sync",
        "--source",
        &s.source,
        "--target",
        "imap://x@127.0.0.1:1",
        "--state",
        &other,
    ])
    .await;
    assert_clean_failure(
        &run,
        69,
        &[
            "target",
            "cannot connect",
            "connection refused",
            "127.0.0.1:1",
        ],
    );
    let run = mailreplica(&[
        "verify",
        "--source",
        "imap://x@127.0.0.1:1",
        "--target",
        &s.target,
    ])
    .await;
    assert_clean_failure(&run, 69, &["source", "cannot connect"]);
    assert_state_intact(&s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_urls_are_usage_errors() {
    for (url, words) in [
        ("http://a@127.0.0.1:1", &["unsupported scheme"][..]),
        ("imap://127.0.0.1:14143", &["missing user name"][..]),
        (
            "imap://a:pw@127.0.0.1:14143",
            &["passwords do not belong in URLs"][..],
        ),
        ("not a url", &["invalid URL"][..]),
    ] {
        let run = mailreplica(&[
            "sync",
            "--source",
            url,
            "--target",
            "imap://b@127.0.0.1:15143",
        ])
        .await;
        assert_clean_failure(&run, 2, words);
        assert!(
            !run.stderr.contains("pw@"),
            "the password part is echoed: {}",
            run.stderr
        );
    }
    let run = mailreplica(&["sync", "--source", "imap://a@127.0.0.1:1"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--target"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_password_names_the_variable() {
    let run = mailreplica_env(
        &[
            "sync",
            "--source",
            "imap://a@127.0.0.1:14143",
            "--target",
            "imap://b@127.0.0.1:15143",
        ],
        &[("MAILREPLICA_SOURCE_PASSWORD", "test")],
    )
    .await;
    assert_clean_failure(
        &run,
        2,
        &["MAILREPLICA_TARGET_PASSWORD", "--target-password-file"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn password_file_and_command_work() {
    let primary = TestServer::dovecot_primary();
    let recovery = TestServer::dovecot_recovery();
    let user = fresh_user("pwsrc");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "test\nsecond line ignored\n").unwrap();
    let (source, target) = (primary.url(&user), recovery.url(&format!("{user}d")));
    let file = file.to_string_lossy().into_owned();
    let run = on_pair(
        "sync",
        &source,
        &target,
        &dir.path().join("s.redb"),
        &[
            "--source-password-file",
            &file,
            "--target-password-command",
            "echo test",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_and_foreign_state_files_are_refused_untouched() {
    let s = synced_pair("badstate").await;
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, b"definitely not a redb file, just text\n").unwrap();
    let run = sync(&s.source, &s.target, &garbage, &[]).await;
    assert_clean_failure(&run, 2, &["garbage.redb", "damaged", "Move it aside"]);
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        b"definitely not a redb file, just text\n"
    );

    // The state of this pair, used for another pair.
    let before = std::fs::read(&s.state).unwrap();
    let other_target = TestServer::dovecot_recovery().url(&fresh_user("someoneelse"));
    let run = sync(&s.source, &other_target, &s.state, &[]).await;
    assert_clean_failure(&run, 2, &["belongs to another pair", "--state"]);
    assert_eq!(
        std::fs::read(&s.state).unwrap(),
        before,
        "a refused state file was modified"
    );

    // A path that cannot be a file.
    let run = sync(&s.source, &s.target, dir.path(), &[]).await;
    assert_clean_failure(&run, 2, &["state file"]);
    assert_state_intact(&s).await;
}

/// Rate limits that cannot be kept are usage errors that say what is expected, before any
/// server is reached.
#[tokio::test]
async fn impossible_rate_limits_are_usage_errors() {
    for (option, value, words) in [
        ("--max-bytes-per-second", "0", "would stop every upload"),
        ("--max-bytes-per-second", "fast", "e.g. 500K or 2M"),
        ("--max-bytes-per-second", "5T", "K, M or G suffix"),
        (
            "--max-messages-per-second",
            "0",
            "positive number of messages per second",
        ),
        (
            "--max-messages-per-second",
            "-3",
            "positive number of messages per second",
        ),
        ("--max-messages-per-second", "NaN", "e.g. 50 or 0.5"),
    ] {
        let arg = format!("{option}={value}");
        for command in ["sync", "migrate"] {
            let run = mailreplica(&[
                command,
                "--source",
                "imap://a@127.0.0.1:1",
                "--target",
                "imap://b@127.0.0.1:1",
                &arg,
            ])
            .await;
            assert_clean_failure(&run, 2, &[option, words]);
        }
    }
}
