//! JMAP server errors met by `mailreplica sync` from Dovecot (IMAP) to Cyrus (JMAP), injected
//! by a relay that answers chosen requests itself (tests/support/http_fault.rs): each is
//! reported naming what failed, the server and what to do, with the exit code the same failure
//! has over IMAP; nothing reaches the target that should not, no secret reaches the output,
//! and a run without the fault completes from the same state with nothing twice on the target.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use serde_json::json;

use crate::mr::{mailreplica, on_pair, sync, Run, PASSWORDS};
use crate::support::http_fault::{Fault, HttpFault};
use crate::support::imap_client::TestImap;
use crate::support::servers::{cyrus_http_port, fresh_user, TestServer, PASSWORD};

/// A Dovecot source with five messages in INBOX and Projects, an empty Cyrus account as the
/// target behind a fault relay, and a state file.
struct Pair {
    source: String,
    target: String,
    relay: HttpFault,
    source_user: String,
    target_user: String,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pair {
    async fn new(prefix: &str) -> Pair {
        let cyrus = TestServer::cyrus();
        let target_user = fresh_user(&format!("{prefix}d"));
        cyrus.ensure_user(&target_user);
        let dovecot = TestServer::dovecot_primary();
        let source_user = fresh_user(&format!("{prefix}s"));
        let mut s = TestImap::connect(&dovecot, &source_user).await;
        // The folders a new Cyrus account has, so that none is on the target only.
        let mut c = TestImap::connect(&cyrus, &target_user).await;
        for folder in c.folders().await {
            s.create(&folder).await;
        }
        s.create("Projects").await;
        let relay = HttpFault::start(([127, 0, 0, 1], cyrus_http_port()).into()).await;
        let dir = tempfile::tempdir().unwrap();
        let pair = Pair {
            source: dovecot.url(&source_user),
            // The session resource named directly: Cyrus redirects /.well-known/jmap to an
            // absolute URL, which would go round the relay.
            target: format!("jmap+http://{target_user}@127.0.0.1:{}/jmap", relay.port()),
            relay,
            source_user,
            target_user,
            state: dir.path().join("state.redb"),
            _dir: dir,
        };
        for (i, folder) in ["INBOX", "INBOX", "INBOX", "Projects", "Projects"]
            .into_iter()
            .enumerate()
        {
            pair.add_message(&mut s, folder, i).await;
        }
        pair
    }

    async fn add_message(&self, s: &mut TestImap, folder: &str, i: usize) {
        let tag = &self.source_user;
        let bytes = format!(
            "From: a@example.org\r\nTo: b@example.net\r\nSubject: {tag} {i}\r\n\
             Message-ID: <{tag}-{i}@jmap-errors.test>\r\n\r\nbody {i}\r\n"
        );
        s.append(folder, &["\\Seen"], None, bytes.as_bytes()).await;
    }

    async fn source_imap(&self) -> TestImap {
        TestImap::connect(&TestServer::dovecot_primary(), &self.source_user).await
    }

    /// `sync` as a user runs it: the summary on stdout, progress and errors on stderr.
    async fn sync_plain(&self, env: &[(&str, &str)]) -> Run {
        on_pair("sync", &self.source, &self.target, &self.state, &[], env).await
    }

    /// `sync --json` and any `extra` arguments.
    async fn sync_json(&self, extra: &[&str]) -> Run {
        sync(&self.source, &self.target, &self.state, extra).await
    }

    /// The run after the fault: everything placed, `verify` with the state agrees, and the
    /// target holds each source message once, in its folder.
    async fn completes(&self, extra: &[&str]) -> Run {
        let run = self.sync_json(extra).await;
        assert_eq!(run.code, 0, "{run:?}");
        let state = self.state.to_string_lossy();
        let v = mailreplica(&[
            "verify",
            "--source",
            &self.source,
            "--target",
            &self.target,
            "--state",
            &state,
        ])
        .await;
        assert_eq!(v.code, 0, "{v:?}");
        assert_eq!(
            contents(&mut self.source_imap().await).await,
            self.target_contents().await,
            "source and target differ after {run:?}"
        );
        run
    }

    /// The target's messages, read over Cyrus's own IMAP (not through the relay).
    async fn target_contents(&self) -> BTreeMap<String, Vec<String>> {
        let mut c = TestImap::connect(&TestServer::cyrus(), &self.target_user).await;
        contents(&mut c).await
    }

    async fn target_count(&self) -> usize {
        self.target_contents().await.values().map(Vec::len).sum()
    }

    /// The `Authorization` header value mailreplica sends for the target with `password`.
    fn basic(&self, password: &str) -> String {
        let raw = format!("{}:{password}", self.target_user);
        base64::engine::general_purpose::STANDARD.encode(raw)
    }
}

/// Every folder's messages as sorted SHA-256 digests of their bytes: a duplicate shows as a
/// digest twice.
async fn contents(imap: &mut TestImap) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for folder in imap.folders().await {
        let mut shas: Vec<String> = imap
            .messages(&folder)
            .await
            .into_iter()
            .map(|m| m.sha256)
            .collect();
        shas.sort();
        out.insert(folder, shas);
    }
    out
}

/// A failure reported cleanly: this exit code, no panic, these fragments on stderr, and
/// neither `secret` nor the Authorization header made of it anywhere in the output.
fn assert_reported(run: &Run, code: i32, fragments: &[&str], secrets: &[&str]) {
    assert_eq!(run.code, code, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    for f in fragments {
        assert!(
            run.stderr.contains(f),
            "stderr lacks {f:?}:\n{}",
            run.stderr
        );
    }
    for s in secrets {
        assert!(
            !run.stderr.contains(s) && !run.stdout.contains(s),
            "a secret in the output: {run:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_errors_unknown_method_is_reported_and_a_rerun_completes() {
    let p = Pair::new("jeum").await;
    let secrets = [p.basic(PASSWORD)];
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();

    // At connect (the mailbox list): the pass stops before any change, a refusal (exit 78).
    p.relay
        .on_method("Mailbox/get", 1, Fault::method_error("unknownMethod"));
    let run = p.sync_plain(&PASSWORDS).await;
    assert_reported(
        &run,
        78,
        &[
            &format!("target: {}: Mailbox/get", p.target),
            "unknownMethod",
            "does not offer this method",
            "JMAP Mail",
        ],
        &secrets,
    );
    assert_eq!(p.relay.injected(), ["Mailbox/get"]);

    // On Email/import: each folder is skipped with the reason, the pass asks for attention.
    p.relay
        .on_method("Email/import", 10, Fault::method_error("unknownMethod"));
    let run = p.sync_plain(&PASSWORDS).await;
    assert_reported(
        &run,
        3,
        &[
            &format!("INBOX: skipped: {}: Email/import (importing 3 emails)", p.target),
            &format!("Projects: skipped: {}: Email/import (importing 2 emails)", p.target),
            "refused by the server: unknownMethod",
            "check that it supports JMAP Mail (RFC 8621) for this account, or replicate the account over IMAP",
        ],
        &secrets,
    );
    assert_eq!(
        p.relay.injected()[1..],
        ["Email/import", "Email/import"],
        "one import per folder, not retried"
    );
    assert_eq!(p.target_count().await, 0);

    p.relay.clear();
    let run = p.completes(&[]).await;
    assert_eq!(run.count("copied"), 5, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_errors_invalid_arguments_is_reported_and_a_rerun_completes() {
    let p = Pair::new("jeia").await;
    p.completes(&[]).await;
    // Two new messages; listing the target's folders is refused.
    let mut s = p.source_imap().await;
    p.add_message(&mut s, "INBOX", 5).await;
    p.add_message(&mut s, "Projects", 6).await;
    p.relay.on_method(
        "Email/query",
        100,
        Fault::MethodError(json!({"type": "invalidArguments", "arguments": ["filter"]})),
    );
    let run = p.sync_plain(&PASSWORDS).await;
    let secret = p.basic(PASSWORD);
    assert_reported(
        &run,
        3,
        &[
            &format!(
                "INBOX: skipped: {}: Email/query (listing the emails of mailbox",
                p.target
            ),
            &format!("Projects: skipped: {}: Email/query", p.target),
            "refused by the server: invalidArguments (filter)",
            "a mailreplica bug or a server quirk; please report it",
        ],
        &[&secret],
    );
    // The state get before the query and the get after it were answered as a server would.
    assert!(
        p.relay
            .injected()
            .iter()
            .all(|m| m == "Email/get Email/query Email/get"),
        "{:?}",
        p.relay.injected()
    );
    assert_eq!(p.target_count().await, 5);

    p.relay.clear();
    let run = p.completes(&[]).await;
    assert_eq!(run.count("copied"), 2, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_errors_over_quota_is_a_refusal_per_message_as_over_imap() {
    let p = Pair::new("jeoq").await;
    p.relay.on_method(
        "Email/import",
        10,
        Fault::NotCreated(json!({"type": "overQuota"})),
    );
    let run = p.sync_json(&[]).await;
    // As an IMAP APPEND refused with [OVERQUOTA]: each message a refusal, recorded and
    // reported, the pass asking for attention (exit 3).
    assert_eq!(run.code, 3, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    let json = run.json();
    assert_eq!(json["refused_messages"], 5, "{run:?}");
    let refused: Vec<&str> = json["refused"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(refused.len(), 5, "{refused:?}");
    for (folder, n) in [("INBOX: source uid ", 3), ("Projects: source uid ", 2)] {
        assert_eq!(
            refused.iter().filter(|r| r.starts_with(folder)).count(),
            n,
            "{refused:?}"
        );
    }
    for r in &refused {
        assert!(
            r.contains("the target refused it: overQuota")
                && r.contains(
                    "over its storage quota on the server: free space there or raise the quota"
                )
                && r.contains("--retry-refused"),
            "{r}"
        );
    }
    assert_eq!(p.target_count().await, 0);

    // Refused messages wait a day, as over IMAP...
    p.relay.clear();
    let run = p.sync_json(&[]).await;
    assert_eq!(
        (run.count("refused_waiting"), run.count("copied")),
        (5, 0),
        "{run:?}"
    );
    // ... or go now when asked.
    let run = p.completes(&["--retry-refused"]).await;
    assert_eq!(run.count("copied"), 5, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_errors_unauthorized_session_is_a_login_failure() {
    let p = Pair::new("jeus").await;
    let wrong = "Wr0ng-S3cret-Passw0rd";
    p.relay.on_session(1, Fault::Unauthorized);
    let env = [
        ("MAILREPLICA_SOURCE_PASSWORD", PASSWORD),
        ("MAILREPLICA_TARGET_PASSWORD", wrong),
    ];
    let run = p.sync_plain(&env).await;
    // Exit 77 as for an IMAP login refused.
    let secret = p.basic(wrong);
    assert_reported(
        &run,
        77,
        &[
            &format!(
                "target: {}: login refused: HTTP 401 for session discovery",
                p.target
            ),
            "Check the user name and the password source",
        ],
        &[wrong, &secret],
    );
    assert_eq!(p.relay.injected(), ["GET /jmap"]);
    assert_eq!(p.target_count().await, 0);

    let run = p.completes(&[]).await;
    assert_eq!(run.count("copied"), 5, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_errors_unauthorized_mid_pass_keeps_the_state() {
    let p = Pair::new("jeim").await;
    // Logged in, uploads done: the first import is answered 401.
    p.relay.on_method("Email/import", 1, Fault::Unauthorized);
    let run = p.sync_plain(&PASSWORDS).await;
    let secret = p.basic(PASSWORD);
    assert_reported(
        &run,
        77,
        &[
            &format!("{}: login refused: HTTP 401 for importing", p.target),
            "Check the user name and the password source",
            "run the same command again to resume",
        ],
        &[&secret],
    );
    assert_eq!(p.relay.injected(), ["Email/import"]);

    // The state opens; the batch the 401 cut short (journaled, nothing imported) is resolved
    // and placed once.
    let run = p.completes(&[]).await;
    assert_eq!(run.count("copied"), 5, "{run:?}");
    let notices = run.json()["notices"].to_string();
    assert!(
        notices.contains("INBOX: resumed an interrupted batch: 0 copy(ies) found on the target"),
        "{notices}"
    );
}
