//! Logging in other than with the user's password, against the Dovecot "auth" instance:
//! XOAUTH2 and OAUTHBEARER with JWTs its oauth2 passdb validates locally, a token command
//! run again when the server refuses its first token, a refused token reported without the
//! token, a mechanism the server does not offer, and an admin (Dovecot master user)
//! replicating a user's mail without that user's password; on the command line and in the
//! configuration file.

use std::path::{Path, PathBuf};

use crate::mr::{account, assert_same_accounts, mailreplica_env, on_pair, Run};
use crate::support::imap_client::TestImap;
use crate::support::jwt;
use crate::support::servers::{
    auth_jwt_key, ca_file, fresh_user, TestServer, AUTH_MASTER_PASSWORD, AUTH_MASTER_USER,
};

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: a{i}@example.org\r\nSubject: auth {i}\r\nMessage-ID: <{i}.auth@mailreplica.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody {i}\r\n"
    )
    .into_bytes()
}

/// A fresh account on `server` holding three messages in INBOX (one \Seen) and one in Work.
async fn seeded(server: &TestServer, prefix: &str) -> (String, TestImap) {
    server.require();
    let user = fresh_user(prefix);
    let mut imap = TestImap::connect(server, &user).await;
    imap.create("Work").await;
    for i in 0..3 {
        let flags: &[&str] = if i == 0 { &["\\Seen"] } else { &[] };
        imap.append("INBOX", flags, None, &message(i)).await;
    }
    imap.append("Work", &[], None, &message(9)).await;
    (user, imap)
}

/// A state file of its own for each pair (a state file belongs to one pair).
fn state(dir: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("auth{n}.redb"))
}

/// Neither stream shows `secret`.
fn assert_hidden(run: &Run, secret: &str) {
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "a secret was printed: {run:?}"
    );
}

/// `sync` with XOAUTH2 on the source and OAUTHBEARER on the target (both on the auth
/// instance), tokens from the environment and from a file; then `verify` the same way.
#[tokio::test]
async fn xoauth2_and_oauthbearer_sync_with_locally_validated_jwts() {
    let server = TestServer::dovecot_auth();
    let (src_user, mut src) = seeded(&server, "xoauthsrc").await;
    let dst_user = fresh_user("obearerdst");
    let key = auth_jwt_key();
    let (src_token, dst_token) = (
        jwt::hs256(&key, &src_user, 600),
        jwt::hs256(&key, &dst_user, 600),
    );
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("target.token");
    std::fs::write(&token_file, format!("{dst_token}\n")).unwrap();
    let token_file = token_file.to_string_lossy().into_owned();
    let (source, target) = (server.url(&src_user), server.url(&dst_user));
    let auth = [
        "--source-auth",
        "xoauth2",
        "--target-auth",
        "oauthbearer",
        "--target-password-file",
        &token_file,
    ];
    let mut args = vec!["--json", "-vv"];
    args.extend_from_slice(&auth);
    let env = [("MAILREPLICA_SOURCE_PASSWORD", src_token.as_str())];
    let run = on_pair("sync", &source, &target, &state(dir.path()), &auth, &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("no access token for the source account"),
        "{}",
        run.stderr
    );
    let state_file = state(dir.path());
    let run = on_pair("sync", &source, &target, &state_file, &args, &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.count("copied"), 4, "{}", run.stdout);
    assert_hidden(&run, &src_token);
    assert_hidden(&run, &dst_token);
    let mut dst = TestImap::connect(&server, &dst_user).await;
    assert_same_accounts(&account(&mut src).await, &account(&mut dst).await);

    let verify = on_pair("verify", &source, &target, &state_file, &auth, &env).await;
    assert_eq!(verify.code, 0, "{verify:?}");
}

/// `migrate` with OAUTHBEARER from the auth instance to an ordinary Dovecot (password).
#[tokio::test]
async fn oauthbearer_migrates_to_another_server() {
    let server = TestServer::dovecot_auth();
    let recovery = TestServer::dovecot_recovery();
    recovery.require();
    let (src_user, mut src) = seeded(&server, "obearersrc").await;
    let dst_user = fresh_user("obearermig");
    let token = jwt::hs256(&auth_jwt_key(), &src_user, 600);
    let dir = tempfile::tempdir().unwrap();
    let run = on_pair(
        "migrate",
        &server.url(&src_user),
        &recovery.url(&dst_user),
        &state(dir.path()),
        &["--source-auth", "oauthbearer"],
        &[
            ("MAILREPLICA_SOURCE_PASSWORD", token.as_str()),
            ("MAILREPLICA_TARGET_PASSWORD", "test"),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_hidden(&run, &token);
    let mut dst = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&account(&mut src).await, &account(&mut dst).await);
}

/// A token command that first prints an expired token, then a valid one: the refused token
/// is fetched again once (the command runs exactly twice for the whole run, however many
/// connections open), and the sync succeeds.
#[tokio::test]
async fn a_refused_token_from_a_command_is_fetched_again() {
    let server = TestServer::dovecot_auth();
    let recovery = TestServer::dovecot_recovery();
    recovery.require();
    let (src_user, mut src) = seeded(&server, "refreshsrc").await;
    let dst_user = fresh_user("refreshdst");
    let key = auth_jwt_key();
    let (expired, valid) = (
        jwt::hs256(&key, &src_user, -3600),
        jwt::hs256(&key, &src_user, 600),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("expired"), format!("{expired}\n")).unwrap();
    std::fs::write(d.join("valid"), format!("{valid}\n")).unwrap();
    let script = d.join("token-helper");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# First run: the expired token; every later run: the valid one.\necho run >> '{dir}/runs'\nif [ -e '{dir}/issued' ]; then cat '{dir}/valid'; else touch '{dir}/issued'; cat '{dir}/expired'; fi\n",
            dir = d.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = script.to_string_lossy().into_owned();
    let run = on_pair(
        "sync",
        &server.url(&src_user),
        &recovery.url(&dst_user),
        &state(d),
        &[
            "--json",
            "-v",
            "--source-auth",
            "xoauth2",
            "--source-password-command",
            &script,
        ],
        &[("MAILREPLICA_TARGET_PASSWORD", "test")],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("fetched a new access token"),
        "{}",
        run.stderr
    );
    assert_hidden(&run, &expired);
    assert_hidden(&run, &valid);
    let runs = std::fs::read_to_string(d.join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 2, "the token command runs: {runs:?}");
    let mut dst = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&account(&mut src).await, &account(&mut dst).await);
}

/// A bad token (signed with another key) is refused with an error that names the server,
/// the mechanism and the server's status, exit 77, and the token is printed nowhere, not
/// even in debug logs. A token from the environment is not fetched again.
#[tokio::test]
async fn a_refused_token_is_reported_without_the_token() {
    let server = TestServer::dovecot_auth();
    let recovery = TestServer::dovecot_recovery();
    let user = fresh_user("badtoken");
    let dir = tempfile::tempdir().unwrap();
    for (mechanism, status) in [("oauthbearer", "invalid_token"), ("xoauth2", "401")] {
        let token = jwt::hs256(b"not the server's key", &user, 600);
        let run = on_pair(
            "sync",
            &server.url(&user),
            &recovery.url(&fresh_user("badtokendst")),
            &state(dir.path()),
            &["-vv", "--source-auth", mechanism],
            &[
                ("MAILREPLICA_SOURCE_PASSWORD", token.as_str()),
                ("MAILREPLICA_TARGET_PASSWORD", "test"),
            ],
        )
        .await;
        assert_eq!(run.code, 77, "{run:?}");
        let upper = mechanism.to_ascii_uppercase();
        for expected in [
            format!("imap://{user}@127.0.0.1:{}", server.port),
            format!("AUTHENTICATE {upper} refused the access token"),
            format!("status \"{status}\""),
        ] {
            assert!(
                run.stderr.contains(&expected),
                "{expected:?} in {}",
                run.stderr
            );
        }
        assert_hidden(&run, &token);
        // The signature alone would be enough to replay nothing, but no part is shown.
        let signature = token.rsplit('.').next().unwrap();
        assert_hidden(&run, signature);
    }
}

/// A mechanism the server does not advertise is refused before anything is sent, saying what
/// to do (exit 78); an admin login with a wrong admin password is refused (77).
#[tokio::test]
async fn unoffered_mechanisms_and_bad_admin_passwords_are_clear_errors() {
    let primary = TestServer::dovecot_primary();
    let server = TestServer::dovecot_auth();
    primary.require();
    server.require();
    let dir = tempfile::tempdir().unwrap();
    let run = on_pair(
        "check",
        &primary.url(&fresh_user("nooauth")),
        &server.url(&fresh_user("nooauthdst")),
        &state(dir.path()),
        &["--source-auth", "xoauth2"],
        &[
            ("MAILREPLICA_SOURCE_PASSWORD", "some-token"),
            ("MAILREPLICA_TARGET_PASSWORD", "test"),
        ],
    )
    .await;
    assert_eq!(run.code, 78, "{run:?}");
    assert!(
        run.stderr.contains("does not offer AUTHENTICATE XOAUTH2")
            && run.stderr.contains("--source-auth"),
        "{}",
        run.stderr
    );

    let user = fresh_user("badadmin");
    let run = on_pair(
        "sync",
        &server.url(&user),
        &primary.url(&fresh_user("badadmindst")),
        &state(dir.path()),
        &["--source-admin", AUTH_MASTER_USER],
        &[
            ("MAILREPLICA_SOURCE_PASSWORD", "not-the-master-password"),
            ("MAILREPLICA_TARGET_PASSWORD", "test"),
        ],
    )
    .await;
    assert_eq!(run.code, 77, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "admin login as {AUTH_MASTER_USER} acting as {user}"
        )),
        "{}",
        run.stderr
    );
    assert_hidden(&run, "not-the-master-password");

    // An admin login carries a password: it does not combine with an OAuth mechanism.
    let run = on_pair(
        "sync",
        &server.url(&user),
        &primary.url(&user),
        &state(dir.path()),
        &[
            "--source-admin",
            AUTH_MASTER_USER,
            "--source-auth",
            "xoauth2",
        ],
        &[
            ("MAILREPLICA_SOURCE_PASSWORD", "x"),
            ("MAILREPLICA_TARGET_PASSWORD", "test"),
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("cannot be combined with XOAUTH2"),
        "{}",
        run.stderr
    );
}

/// The admin (a Dovecot master user) replicates a user's mail with only the admin's
/// password: the user's own password ("test") is given nowhere.
#[tokio::test]
async fn an_admin_replicates_a_users_mail_without_its_password() {
    let server = TestServer::dovecot_auth();
    let recovery = TestServer::dovecot_recovery();
    recovery.require();
    let (src_user, mut src) = seeded(&server, "mastersrc").await;
    let dst_user = fresh_user("masterdst");
    let dir = tempfile::tempdir().unwrap();
    let run = on_pair(
        "migrate",
        &server.url(&src_user),
        &recovery.url(&dst_user),
        &state(dir.path()),
        &["--source-admin", AUTH_MASTER_USER],
        &[
            ("MAILREPLICA_SOURCE_PASSWORD", AUTH_MASTER_PASSWORD),
            ("MAILREPLICA_TARGET_PASSWORD", "test"),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_hidden(&run, AUTH_MASTER_PASSWORD);
    let mut dst = TestImap::connect(&recovery, &dst_user).await;
    assert_same_accounts(&account(&mut src).await, &account(&mut dst).await);
}

/// The configuration file's accounts: `auth = "oauthbearer"` with a token command, and
/// `admin` with the admin's password, for `watch --once`.
#[tokio::test]
async fn config_file_accounts_log_in_with_tokens_and_as_admin() {
    let server = TestServer::dovecot_auth();
    let (src_user, mut src) = seeded(&server, "cfgoauth").await;
    let dst_user = fresh_user("cfgadmin");
    let token = jwt::hs256(&auth_jwt_key(), &src_user, 600);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let config = format!(
        r#"
[watch]
state_dir = {state_dir:?}

[servers.auth]
url = "imap://127.0.0.1:{port}"
ca_file = {ca:?}

[accounts.user]
server = "auth"
user = "{src_user}"
auth = "oauthbearer"
password_command = ["cat", {token_file:?}]

[accounts.by-admin]
server = "auth"
user = "{dst_user}"
admin = "{AUTH_MASTER_USER}"
password_env = "MR_AUTH_TEST_MASTER_PASSWORD"

[[pairs]]
name = "cfg"
primary = "user"
recovery = "by-admin"
"#,
        state_dir = dir.path().display().to_string(),
        port = server.port,
        ca = ca_file().display().to_string(),
        token_file = token_file.display().to_string(),
    );
    let path = dir.path().join("mailreplica.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.to_string_lossy().into_owned();
    let run = mailreplica_env(
        &["watch", "--config", &path, "--once"],
        &[("MR_AUTH_TEST_MASTER_PASSWORD", AUTH_MASTER_PASSWORD)],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_hidden(&run, &token);
    let mut dst = TestImap::connect(&server, &dst_user).await;
    assert_same_accounts(&account(&mut src).await, &account(&mut dst).await);
}
