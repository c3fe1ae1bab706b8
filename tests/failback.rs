//! Failover and failback against two real Dovecot instances: the failed-over mark stops one-way
//! sync; failback merges what both sides did since, applies it to both, and resumes sync.
#![allow(dead_code)] // helpers grow with the failback tests below

use std::path::Path;

use crate::mr::{mailreplica, sync, Run};
use crate::support::imap_client::TestImap;
use crate::support::servers::{fresh_user, TestServer};

/// A pair of fresh accounts, primary on the Dovecot primary, recovery on the Dovecot recovery.
pub struct Pair {
    pub source: String,
    pub target: String,
    pub src_user: String,
    pub dst_user: String,
    pub dir: tempfile::TempDir,
}

impl Pair {
    pub fn new(prefix: &str) -> Pair {
        let src_user = fresh_user(&format!("{prefix}a"));
        let dst_user = fresh_user(&format!("{prefix}b"));
        let p = TestServer::dovecot_primary();
        let r = TestServer::dovecot_recovery();
        Pair {
            source: format!("imap+plain://{src_user}@127.0.0.1:{}", p.port),
            target: format!("imap+plain://{dst_user}@127.0.0.1:{}", r.port),
            src_user,
            dst_user,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("pair.redb")
    }

    pub async fn primary(&self) -> TestImap {
        TestImap::connect(&TestServer::dovecot_primary(), &self.src_user).await
    }

    pub async fn recovery(&self) -> TestImap {
        TestImap::connect(&TestServer::dovecot_recovery(), &self.dst_user).await
    }

    pub async fn sync(&self) -> Run {
        sync(&self.source, &self.target, &self.state(), &[]).await
    }

    pub async fn run(&self, command: &str, extra: &[&str]) -> Run {
        let state = self.state().to_string_lossy().into_owned();
        let mut args = vec![
            command,
            "--source",
            &self.source,
            "--target",
            &self.target,
            "--state",
            &state,
        ];
        args.extend_from_slice(extra);
        mailreplica(&args).await
    }
}

pub fn message(folder: &str, i: usize, tag: &str) -> Vec<u8> {
    format!(
        "From: sender{i}@example.org\r\nTo: user@example.org\r\nSubject: {folder} {tag} {i}\r\nMessage-ID: <{folder}-{tag}-{i}@failback.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody of {folder} {tag} message {i}\r\n"
    )
    .into_bytes()
}

pub async fn seed(imap: &mut TestImap, folders: &[(&str, usize)]) {
    for (folder, n) in folders {
        if *folder != "INBOX" {
            imap.create(folder).await;
        }
        for i in 0..*n {
            let flags: &[&str] = if i % 3 == 0 { &["\\Seen"] } else { &[] };
            imap.append(
                folder,
                flags,
                Some("01-Jan-2024 10:00:00 +0000"),
                &message(folder, i, "base"),
            )
            .await;
        }
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
