//! The guarantees of the IMAP adapter (`mailreplica::mailstore::imap::ImapStore`), each proved
//! on its own, used directly as a library: against the scripted server for replies a real server
//! cannot be made to give, and through the counting / fault-injecting proxy to the real Dovecot
//! primary for round trips and faults on a real session.
//!
//! Every call under test is bounded (see [`bounded`]) so that a broken guarantee fails the test
//! instead of hanging it. Tests on real servers panic (never skip) when the servers are down.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mailreplica::config::{Endpoint, Secret, SideConfig};
use mailreplica::mailstore::imap::transport::TlsOptions;
use mailreplica::mailstore::imap::ImapStore;
use mailreplica::mailstore::{Access, AppendRequest, FlagChange, MailStore, StoreError};
use mailreplica::model::{FlagSet, FolderPath, InternalDate};

use crate::support::imap_client::{sha256_hex, TestImap, TestMessage};
use crate::support::proxy::{FaultPlan, Proxy};
use crate::support::scripted_server::{After, Script, ScriptedServer, Step};
use crate::support::servers::{fresh_user, TestServer, PASSWORD};

const DATE: &str = "17-Jul-2024 02:44:25 +0200";

/// Generous per-call timeout for sessions that are expected to work.
const SLOW: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------ helpers

fn config(url: &str, password: &str, timeout: Duration) -> SideConfig {
    SideConfig {
        endpoint: Endpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}")),
        password: Secret::new(password.to_string()),
        auth: Default::default(),
        tls: TlsOptions::default(),
        allow_plaintext: false,
        timeout,
        jmap_ids: None,
    }
}

/// `imap+plain://USER@IP:PORT`: no TLS, so a proxy in between sees the commands.
fn plain_url(user: &str, addr: SocketAddr) -> String {
    format!("imap+plain://{user}@{}:{}", addr.ip(), addr.port())
}

/// Fails the test if `fut` does not finish within 60 s (a guarantee that hangs is broken).
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return within 60 s"))
}

async fn connect(url: &str, access: Access, timeout: Duration) -> ImapStore {
    bounded(
        "connect",
        ImapStore::connect(&config(url, PASSWORD, timeout), access),
    )
    .await
    .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// `LIST "" ""` and `LIST "" "*"`, answered at any time.
fn list_auto() -> Step {
    Step::new(
        "LIST",
        [
            "* LIST (\\HasNoChildren) \"/\" INBOX",
            "{tag} OK List completed.",
        ],
    )
}

/// The standard scripted session (greeting, CAPABILITY, LOGIN, LIST) plus `steps`.
fn scripted(steps: Vec<Step>) -> ScriptedServer {
    let mut script = Script::standard().auto(list_auto()).end(After::Continue);
    for s in steps {
        script = script.step(s);
    }
    ScriptedServer::start(script)
}

/// A SELECT/EXAMINE answer for INBOX; `uidvalidity: None` leaves the code out.
fn open_step(verb: &str, exists: u32, uidvalidity: Option<u32>) -> Step {
    let mut reply = vec![
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)".to_string(),
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted."
            .to_string(),
        format!("* {exists} EXISTS"),
        "* 0 RECENT".to_string(),
    ];
    if let Some(v) = uidvalidity {
        reply.push(format!("* OK [UIDVALIDITY {v}] UIDs valid"));
    }
    reply.push(format!("* OK [UIDNEXT {}] Predicted next UID", exists + 1));
    let mode = if verb == "EXAMINE" {
        "READ-ONLY"
    } else {
        "READ-WRITE"
    };
    reply.push(format!("{{tag}} OK [{mode}] {verb} completed."));
    Step::new(&format!("{verb} \"INBOX\""), reply)
}

/// One metadata FETCH response line as Dovecot writes it.
fn meta_line(seq: u32, uid: u32, flags: &str, size: u32) -> String {
    format!("* {seq} FETCH (UID {uid} FLAGS ({flags}) INTERNALDATE \"{DATE}\" RFC822.SIZE {size})")
}

async fn open_scripted(server: &ScriptedServer, access: Access, timeout: Duration) -> ImapStore {
    let mut store = connect(&plain_url("bob", server.addr()), access, timeout).await;
    bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap_or_else(|e| panic!("opening INBOX on the scripted server: {e}"));
    store
}

fn is_poison_error(e: &StoreError) -> bool {
    matches!(e, StoreError::ConnectionLost { detail, .. } if detail.contains("earlier failure"))
}

/// Every kind of later call fails at once with ConnectionLost ("unusable after an earlier
/// failure"), and `sent` (what the peer has received so far) does not grow: nothing more
/// reached the wire.
async fn assert_poisoned(store: &mut ImapStore, sent: impl Fn() -> usize) {
    let before = sent();
    let flags = FlagSet::from_raw(["\\Seen"]);
    let date = InternalDate::parse(DATE).unwrap();
    let bytes = b"Subject: x\r\n\r\nx\r\n";
    let results: Vec<(&str, Result<(), StoreError>)> = vec![
        (
            "list_folders",
            bounded("list_folders", store.list_folders())
                .await
                .map(|_| ()),
        ),
        (
            "list_messages",
            bounded("list_messages", store.list_messages())
                .await
                .map(|_| ()),
        ),
        (
            "fetch_bodies",
            bounded("fetch_bodies", store.fetch_bodies(&[1, 2]))
                .await
                .map(|_| ()),
        ),
    ];
    for (what, r) in results {
        match r {
            Err(e) if is_poison_error(&e) => {}
            other => panic!("{what} on a poisoned connection gave {other:?}, not ConnectionLost"),
        }
    }
    // Writes too (a read-only store refuses them even earlier, with ReadOnly).
    let r = bounded(
        "store_flags",
        store.store_flags(&[1], FlagChange::Add, &flags),
    )
    .await;
    assert!(
        matches!(&r, Err(e) if is_poison_error(e) || matches!(e, StoreError::ReadOnly { .. })),
        "store_flags on a poisoned connection gave {r:?}"
    );
    let req = AppendRequest {
        flags: &flags,
        internaldate: &date,
        bytes,
    };
    let r = bounded("append", store.append(&FolderPath::inbox(), &[req])).await;
    assert!(
        matches!(&r, Err(e) if is_poison_error(e) || matches!(e, StoreError::ReadOnly { .. })),
        "append on a poisoned connection gave {r:?}"
    );
    // Last: opening clears the open folder, which later message calls would report instead.
    let r = bounded("open_folder", store.open_folder(&FolderPath::inbox())).await;
    assert!(
        matches!(&r, Err(e) if is_poison_error(e)),
        "open_folder on a poisoned connection gave {r:?}"
    );
    // Give anything that was (wrongly) written time to arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sent(), before, "a poisoned connection sent something");
}

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: guarantee {i}\r\n\
         Message-ID: <g{i}@imap-guarantees>\r\nDate: Wed, 17 Jul 2024 02:44:25 +0200\r\n\r\n\
         Body of message {i}.\r\n"
    )
    .into_bytes()
}

/// One APPEND request per body, all with the same flags and date.
fn append_requests<'a>(
    bodies: &'a [Vec<u8>],
    flags: &'a FlagSet,
    date: &'a InternalDate,
) -> Vec<AppendRequest<'a>> {
    bodies
        .iter()
        .map(|b| AppendRequest {
            flags,
            internaldate: date,
            bytes: b,
        })
        .collect()
}

/// Appends `n` messages to INBOX of `user` on `server` with the witness client and returns
/// what the witness then sees there.
async fn seed_inbox(server: &TestServer, user: &str, n: usize) -> Vec<TestMessage> {
    server.require();
    let mut w = TestImap::connect(server, user).await;
    for i in 0..n {
        let flags: &[&str] = if i % 3 == 0 { &["\\Seen"] } else { &[] };
        w.append("INBOX", flags, Some(DATE), &message(i)).await;
    }
    let msgs = w.messages("INBOX").await;
    w.logout().await;
    assert_eq!(msgs.len(), n, "seeding {user}");
    msgs
}

async fn witness(server: &TestServer, user: &str) -> (Vec<TestMessage>, Vec<String>) {
    let mut w = TestImap::connect(server, user).await;
    let msgs = w.messages("INBOX").await;
    let folders = w.folders().await;
    w.logout().await;
    (msgs, folders)
}

// ------------------------------------------------------------------ 1. tagged NO

/// A tagged NO to `UID FETCH` is `StoreError::No` naming the command and the folder, for the
/// listing and for bodies; never an empty list. (A NO does not poison the session.)
#[tokio::test(flavor = "multi_thread")]
async fn tagged_no_to_uid_fetch_is_an_error_naming_command_and_folder() {
    let server = scripted(vec![
        open_step("EXAMINE", 3, Some(9)),
        Step::new(
            "UID FETCH 1:*",
            ["{tag} NO [SERVERBUG] Internal error occurred. Refer to server log."],
        ),
        Step::new("UID FETCH 2", ["{tag} NO [UNAVAILABLE] Mailbox is locked"]),
        // No LIST-EXTENDED here: subscriptions come from LSUB.
        Step::new("LSUB", ["{tag} OK LSUB completed"]),
    ]);
    let mut store = open_scripted(&server, Access::ReadOnly, SLOW).await;

    let err = bounded("list_messages", store.list_messages())
        .await
        .expect_err("a tagged NO to UID FETCH must not read as a listing");
    match &err {
        StoreError::No {
            command,
            folder,
            code,
            ..
        } => {
            assert_eq!(command, "UID FETCH", "{err}");
            assert!(folder.contains("INBOX"), "{err}");
            assert_eq!(code.as_deref(), Some("SERVERBUG"), "{err}");
        }
        other => panic!("expected StoreError::No, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("UID FETCH") && text.contains("INBOX"),
        "{text}"
    );

    let err = bounded("fetch_bodies", store.fetch_bodies(&[2]))
        .await
        .expect_err("a tagged NO to UID FETCH must not read as no bodies");
    assert!(
        matches!(&err, StoreError::No { command, folder, .. }
            if command == "UID FETCH" && folder.contains("INBOX")),
        "{err:?}"
    );

    // NO is a per-command refusal: the session stays usable.
    let folders = bounded("list_folders", store.list_folders())
        .await
        .expect("the session is still usable after a NO");
    assert_eq!(folders.len(), 1);
    assert!(server.errors().is_empty(), "{:?}", server.errors());
}

// ------------------------------------------------------------------ 2. tagged BAD

/// A tagged BAD poisons the connection: the next calls fail at once with ConnectionLost and
/// send nothing.
#[tokio::test(flavor = "multi_thread")]
async fn tagged_bad_poisons_the_connection() {
    let server = scripted(vec![
        open_step("EXAMINE", 3, Some(9)),
        Step::new(
            "UID FETCH",
            ["{tag} BAD Error in IMAP command UID FETCH: Invalid messageset"],
        ),
    ]);
    let mut store = open_scripted(&server, Access::ReadOnly, SLOW).await;

    let err = bounded("list_messages", store.list_messages())
        .await
        .expect_err("BAD must be an error");
    assert!(
        matches!(&err, StoreError::Bad { command, .. } if command == "UID FETCH"),
        "{err:?}"
    );
    assert!(err.is_connection_lost(), "{err:?}");

    let received = server.received();
    assert!(
        received.last().is_some_and(|l| l.contains("UID FETCH")),
        "{received:?}"
    );
    assert_poisoned(&mut store, || server.received().len()).await;
    assert_eq!(server.received(), received);
}

// ------------------------------------------------------------------ 3. EOF mid-FETCH

/// The server closes after half the FETCH responses: ConnectionLost, never a short listing,
/// and nothing is sent afterwards (the server keeps reading and would record it).
#[tokio::test(flavor = "multi_thread")]
async fn eof_in_the_middle_of_a_fetch_is_connection_lost_then_poisoned() {
    let server = scripted(vec![
        open_step("EXAMINE", 4, Some(9)),
        Step::new(
            "UID FETCH 1:*",
            [meta_line(1, 1, "\\Seen", 100), meta_line(2, 2, "", 200)],
        )
        .then(After::HalfClose),
    ]);
    let mut store = open_scripted(&server, Access::ReadOnly, SLOW).await;

    let r = bounded("list_messages", store.list_messages()).await;
    match r {
        Err(StoreError::ConnectionLost { ref command, .. }) if command == "UID FETCH" => {}
        other => {
            panic!("EOF mid-FETCH gave {other:?}, expected ConnectionLost (never a short list)")
        }
    }
    assert_poisoned(&mut store, || server.received().len()).await;
}

/// The server closes inside a body literal: ConnectionLost, not a truncated or missing body.
#[tokio::test(flavor = "multi_thread")]
async fn eof_inside_a_body_literal_is_connection_lost_then_poisoned() {
    let server = scripted(vec![
        open_step("EXAMINE", 2, Some(9)),
        Step::new(
            "UID FETCH 1:2 (UID BODY.PEEK[])",
            [
                "* 1 FETCH (UID 1 BODY[] {5}\r\nhello)",
                "* 2 FETCH (UID 2 BODY[] {100}\r\nonly the first part of the body",
            ],
        )
        .then(After::HalfClose),
    ]);
    let mut store = open_scripted(&server, Access::ReadOnly, SLOW).await;

    let r = bounded("fetch_bodies", store.fetch_bodies(&[1, 2])).await;
    assert!(
        matches!(&r, Err(StoreError::ConnectionLost { .. })),
        "EOF inside a literal gave {r:?}, expected ConnectionLost"
    );
    assert_poisoned(&mut store, || server.received().len()).await;
}

/// Against real Dovecot: the proxy cuts the connection a few KB into the answer to the
/// metadata FETCH of a 200-message folder. ConnectionLost, never a short list; poisoned after.
#[tokio::test(flavor = "multi_thread")]
async fn connection_cut_mid_fetch_from_dovecot_is_connection_lost() {
    let dovecot = TestServer::dovecot_primary();
    let user = fresh_user("gcut");
    seed_inbox(&dovecot, &user, 200).await;

    let proxy = Proxy::start(dovecot.addr(), FaultPlan::None);
    let mut store = connect(&plain_url(&user, proxy.addr()), Access::ReadOnly, SLOW).await;
    let status = bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap();
    assert_eq!(status.exists, 200);
    // Let the proxy account for every byte the client has already read.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (so_far, _) = proxy.bytes();
    // Each of the 200 responses is ~90 bytes: 2000 more bytes is well inside the answer.
    proxy.set_plan(FaultPlan::DropAfterServerBytes(so_far as usize + 2000));

    let r = bounded("list_messages", store.list_messages()).await;
    match r {
        Err(StoreError::ConnectionLost { ref command, .. }) if command == "UID FETCH" => {}
        Err(other) => panic!("expected ConnectionLost, got {other:?}"),
        Ok(list) => panic!(
            "a cut connection read as a listing of {} messages (of 200)",
            list.len()
        ),
    }
    assert_eq!(proxy.faults_fired(), 1);
    assert_eq!(proxy.count("UID FETCH"), 1);
    let commands = proxy.commands().len();
    assert_poisoned(&mut store, || proxy.commands().len()).await;
    assert_eq!(proxy.commands().len(), commands);
    assert_eq!(
        proxy.connections(),
        1,
        "nothing reconnected behind our back"
    );
}

// ------------------------------------------------------------------ 4. BYE

/// `* BYE` in the middle of a command is ConnectionLost at once (the server keeps the socket
/// open and would answer later commands: only the BYE itself can end the call).
#[tokio::test(flavor = "multi_thread")]
async fn bye_mid_command_is_connection_lost() {
    let server = scripted(vec![
        open_step("EXAMINE", 3, Some(9)),
        Step::new(
            "UID FETCH 1:*",
            [
                meta_line(1, 1, "\\Seen", 100),
                "* BYE Server shutting down.".to_string(),
            ],
        ),
    ]);
    let mut store = open_scripted(&server, Access::ReadOnly, Duration::from_secs(10)).await;

    let r = bounded("list_messages", store.list_messages()).await;
    match &r {
        Err(StoreError::ConnectionLost { detail, .. }) if detail.contains("BYE") => {}
        other => panic!("BYE mid-command gave {other:?}, expected ConnectionLost naming BYE"),
    }
    assert_poisoned(&mut store, || server.received().len()).await;
}

// ------------------------------------------------------------------ 5. no UIDVALIDITY

/// SELECT or EXAMINE answered without `[UIDVALIDITY n]` is a Protocol error, not a folder, and
/// nothing is then read from that folder.
#[tokio::test(flavor = "multi_thread")]
async fn open_without_uidvalidity_is_a_protocol_error() {
    for (access, verb) in [(Access::ReadOnly, "EXAMINE"), (Access::ReadWrite, "SELECT")] {
        let server = scripted(vec![open_step(verb, 2, None)]);
        let mut store = connect(&plain_url("bob", server.addr()), access, SLOW).await;
        let r = bounded("open_folder", store.open_folder(&FolderPath::inbox())).await;
        match &r {
            Err(StoreError::Protocol {
                command, detail, ..
            }) if command == verb && detail.contains("UIDVALIDITY") => {}
            other => panic!("{verb} without UIDVALIDITY gave {other:?}, expected Protocol"),
        }
        let listing = bounded("list_messages", store.list_messages()).await;
        assert!(
            listing.is_err(),
            "a folder opened without UIDVALIDITY was listed: {listing:?}"
        );
        let bodies = bounded("fetch_bodies", store.fetch_bodies(&[1])).await;
        assert!(bodies.is_err(), "{bodies:?}");
        let received = server.received();
        assert!(
            received.iter().all(|l| !l.contains("FETCH")),
            "{verb}: {received:?}"
        );
        assert!(
            received.last().is_some_and(|l| l.contains(verb)),
            "{received:?}"
        );
    }
}

// ------------------------------------------------------------------ 6. stall -> Timeout

/// A scripted server that never answers `UID FETCH` (but keeps reading): Timeout after the
/// configured 2 s, then poisoned (nothing more is sent).
#[tokio::test(flavor = "multi_thread")]
async fn silent_server_times_out_then_poisoned() {
    let server = scripted(vec![
        open_step("EXAMINE", 3, Some(9)),
        Step::new("UID FETCH", Vec::<String>::new()),
    ]);
    let mut store = open_scripted(&server, Access::ReadOnly, Duration::from_secs(2)).await;

    let r = bounded("list_messages", store.list_messages()).await;
    match &r {
        Err(StoreError::Timeout {
            command, seconds, ..
        }) if command == "UID FETCH" && *seconds == 2 => {}
        other => panic!("a silent server gave {other:?}, expected Timeout after 2 s"),
    }
    assert_poisoned(&mut store, || server.received().len()).await;
}

/// Against real Dovecot: the proxy stalls the `UID FETCH` (both sockets stay open). Timeout
/// after 2 s, then poisoned.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_dovecot_fetch_times_out_then_poisoned() {
    let dovecot = TestServer::dovecot_primary();
    let user = fresh_user("gstall");
    seed_inbox(&dovecot, &user, 3).await;

    let proxy = Proxy::start(dovecot.addr(), FaultPlan::stall_on("UID FETCH", 1));
    let mut store = connect(
        &plain_url(&user, proxy.addr()),
        Access::ReadOnly,
        Duration::from_secs(2),
    )
    .await;
    bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap();

    let r = bounded("list_messages", store.list_messages()).await;
    match &r {
        Err(StoreError::Timeout {
            command, seconds, ..
        }) if command == "UID FETCH" && *seconds == 2 => {}
        other => panic!("a stalled FETCH gave {other:?}, expected Timeout"),
    }
    assert_eq!(proxy.faulted_commands().len(), 1);
    assert_poisoned(&mut store, || {
        proxy.commands().len() + proxy.faulted_commands().len()
    })
    .await;
    proxy.close_connections();
}

// ------------------------------------------------------------------ 7. unsolicited responses

/// Unsolicited `* 3 FETCH (UID 3 FLAGS (\Seen))` and `* 5 EXISTS` inside the answer to the
/// metadata FETCH are not lost: all messages are listed, with the later flags applied.
#[tokio::test(flavor = "multi_thread")]
async fn unsolicited_responses_inside_a_fetch_are_not_lost() {
    let server = scripted(vec![
        open_step("EXAMINE", 4, Some(9)),
        Step::new(
            "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)",
            [
                meta_line(1, 1, "\\Seen", 101),
                meta_line(2, 2, "", 102),
                meta_line(3, 3, "", 103),
                "* 3 FETCH (UID 3 FLAGS (\\Seen))".to_string(),
                "* 5 EXISTS".to_string(),
                meta_line(4, 4, "$Work", 104),
                meta_line(5, 5, "\\Flagged", 105),
                "{tag} OK Fetch completed.".to_string(),
            ],
        ),
    ]);
    let mut store = open_scripted(&server, Access::ReadOnly, SLOW).await;

    let list = bounded("list_messages", store.list_messages())
        .await
        .expect("listing");
    let got: Vec<(u32, FlagSet, u32)> = list
        .iter()
        .map(|m| (m.uid, m.flags.clone(), m.size))
        .collect();
    let want = vec![
        (1, FlagSet::from_raw(["\\Seen"]), 101),
        (2, FlagSet::new(), 102),
        (3, FlagSet::from_raw(["\\Seen"]), 103),
        (4, FlagSet::from_raw(["$Work"]), 104),
        (5, FlagSet::from_raw(["\\Flagged"]), 105),
    ];
    assert_eq!(got, want);
    assert!(list
        .iter()
        .all(|m| m.internaldate == InternalDate::parse(DATE).unwrap()));
    assert!(server.errors().is_empty(), "{:?}", server.errors());
}

/// (Extra) The latest flags win whatever the order: a flag-only FETCH for a message that the
/// server sends before that message's full response is older than the full response.
#[tokio::test(flavor = "multi_thread")]
async fn an_earlier_flag_update_does_not_override_later_full_flags() {
    let server = scripted(vec![
        open_step("EXAMINE", 3, Some(9)),
        Step::new(
            "UID FETCH 1:*",
            [
                meta_line(1, 1, "", 101),
                "* 3 FETCH (UID 3 FLAGS (\\Seen))".to_string(),
                meta_line(2, 2, "", 102),
                meta_line(3, 3, "\\Seen \\Flagged", 103),
                "{tag} OK Fetch completed.".to_string(),
            ],
        ),
    ]);
    let mut store = open_scripted(&server, Access::ReadOnly, SLOW).await;
    let list = bounded("list_messages", store.list_messages())
        .await
        .expect("listing");
    let three = list.iter().find(|m| m.uid == 3).expect("uid 3 listed");
    assert_eq!(three.flags, FlagSet::from_raw(["\\Seen", "\\Flagged"]));
}

/// (Extra) An unsolicited flag update that identifies the message by sequence number only
/// (no UID item) is not lost: the answer itself maps sequence 3 to UID 30.
#[tokio::test(flavor = "multi_thread")]
async fn a_flag_update_without_uid_is_not_lost() {
    let server = scripted(vec![
        open_step("EXAMINE", 3, Some(9)),
        Step::new(
            "UID FETCH 1:*",
            [
                meta_line(1, 1, "", 101),
                meta_line(2, 2, "", 102),
                meta_line(3, 30, "", 103),
                "* 3 FETCH (FLAGS (\\Seen))".to_string(),
                "{tag} OK Fetch completed.".to_string(),
            ],
        ),
    ]);
    let mut store = open_scripted(&server, Access::ReadOnly, SLOW).await;
    let list = bounded("list_messages", store.list_messages())
        .await
        .expect("listing");
    let m = list.iter().find(|m| m.uid == 30).expect("uid 30 listed");
    assert_eq!(m.flags, FlagSet::from_raw(["\\Seen"]));
}

// ------------------------------------------------------------------ 8. UID below n

/// `UID FETCH 10` answered with a message of UID 7 (what `UID FETCH n:*` does when n is above
/// the highest UID): that body is dropped; the one asked for is kept.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_for_uids_not_asked_for_are_dropped() {
    let server = scripted(vec![
        open_step("EXAMINE", 5, Some(9)),
        Step::new(
            "UID FETCH 10 (UID BODY.PEEK[])",
            [
                "* 5 FETCH (UID 7 BODY[] {5}\r\nhello)",
                "{tag} OK Fetch completed.",
            ],
        ),
        Step::new(
            "UID FETCH 10 (UID BODY.PEEK[])",
            [
                "* 5 FETCH (UID 7 BODY[] {5}\r\nhello)",
                "* 6 FETCH (UID 10 BODY[] {5}\r\nworld)",
                "{tag} OK Fetch completed.",
            ],
        ),
    ]);
    let mut store = open_scripted(&server, Access::ReadOnly, SLOW).await;

    let bodies = bounded("fetch_bodies", store.fetch_bodies(&[10]))
        .await
        .expect("fetch");
    assert!(bodies.is_empty(), "UID 7 was not asked for: {bodies:?}");

    let bodies = bounded("fetch_bodies", store.fetch_bodies(&[10]))
        .await
        .expect("fetch");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0].uid, 10);
    assert_eq!(bodies[0].bytes(), b"world");
    assert!(server.errors().is_empty(), "{:?}", server.errors());
}

// ------------------------------------------------------------------ 9. read-only

/// A read-only store opens folders with EXAMINE and refuses APPEND, STORE, EXPUNGE and CREATE
/// with `ReadOnly` before anything reaches the wire (counted by the proxy to real Dovecot).
#[tokio::test(flavor = "multi_thread")]
async fn read_only_store_examines_and_refuses_writes_before_the_wire() {
    let dovecot = TestServer::dovecot_primary();
    let user = fresh_user("gro");
    let seeded = seed_inbox(&dovecot, &user, 3).await;
    let (_, folders_before) = witness(&dovecot, &user).await;

    let proxy = Proxy::start(dovecot.addr(), FaultPlan::None);
    let mut store = connect(&plain_url(&user, proxy.addr()), Access::ReadOnly, SLOW).await;
    let status = bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap();
    assert_eq!(status.exists, 3);
    assert_eq!(proxy.count("EXAMINE"), 1, "{:?}", proxy.commands());
    assert_eq!(proxy.count("SELECT"), 0, "{:?}", proxy.commands());

    let sent = proxy.commands();
    let flags = FlagSet::from_raw(["\\Flagged"]);
    let date = InternalDate::parse(DATE).unwrap();
    let bytes = message(99);
    let uids: Vec<u32> = seeded.iter().map(|m| m.uid).collect();

    let r = bounded(
        "append",
        store.append(
            &FolderPath::inbox(),
            &[AppendRequest {
                flags: &flags,
                internaldate: &date,
                bytes: &bytes,
            }],
        ),
    )
    .await;
    assert!(
        matches!(&r, Err(StoreError::ReadOnly { command, .. }) if command == "APPEND"),
        "{r:?}"
    );
    for change in [FlagChange::Add, FlagChange::Remove] {
        let r = bounded("store_flags", store.store_flags(&uids, change, &flags)).await;
        assert!(
            matches!(&r, Err(StoreError::ReadOnly { command, .. }) if command == "STORE"),
            "{r:?}"
        );
    }
    let r = bounded("expunge", store.expunge(&uids)).await;
    assert!(
        matches!(&r, Err(StoreError::ReadOnly { command, .. }) if command == "EXPUNGE"),
        "{r:?}"
    );
    let r = bounded(
        "create_folder",
        store.create_folder(&FolderPath::from_display("Created"), None),
    )
    .await;
    assert!(
        matches!(&r, Err(StoreError::ReadOnly { command, .. }) if command == "CREATE"),
        "{r:?}"
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    for verb in ["APPEND", "STORE", "EXPUNGE", "CREATE", "SELECT"] {
        assert_eq!(proxy.count(verb), 0, "{verb}: {:?}", proxy.commands());
    }
    assert_eq!(proxy.commands(), sent, "a refused write reached the wire");

    // The refusals leave the session usable, and reading does not take the folder read-write.
    let list = bounded("list_messages", store.list_messages())
        .await
        .unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(proxy.count("SELECT"), 0);
    store.logout().await;

    let (after, folders_after) = witness(&dovecot, &user).await;
    assert_eq!(after, seeded, "the read-only side changed");
    assert_eq!(folders_after, folders_before);
}

// ------------------------------------------------------------------ 10. round trips

/// Listing a 300-message folder is one `UID FETCH` command, and fetching 50 bodies is one
/// command too; the bodies are byte-exact.
#[tokio::test(flavor = "multi_thread")]
async fn listing_and_body_fetch_are_one_command_each() {
    let dovecot = TestServer::dovecot_primary();
    let user = fresh_user("ground");
    let seeded = seed_inbox(&dovecot, &user, 300).await;

    let proxy = Proxy::start(dovecot.addr(), FaultPlan::None);
    let mut store = connect(&plain_url(&user, proxy.addr()), Access::ReadOnly, SLOW).await;
    bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap();

    proxy.reset_counts();
    let list = bounded("list_messages", store.list_messages())
        .await
        .unwrap();
    assert_eq!(list.len(), 300);
    assert_eq!(
        list.iter().map(|m| m.uid).collect::<Vec<_>>(),
        seeded.iter().map(|m| m.uid).collect::<Vec<_>>()
    );
    for (m, s) in list.iter().zip(&seeded) {
        assert_eq!(m.size, s.size, "uid {}", m.uid);
        let want: BTreeSet<String> = s.flags.clone();
        let got: BTreeSet<String> = m.flags.iter().map(|f| f.as_str().to_string()).collect();
        assert_eq!(got, want, "uid {}", m.uid);
    }
    assert_eq!(proxy.count("UID FETCH"), 1, "{:?}", proxy.commands());
    assert_eq!(proxy.count("FETCH"), 1, "{:?}", proxy.commands());
    assert_eq!(proxy.commands().len(), 1, "{:?}", proxy.commands());

    proxy.reset_counts();
    let wanted: Vec<u32> = seeded.iter().step_by(6).take(50).map(|m| m.uid).collect();
    assert_eq!(wanted.len(), 50);
    let bodies = bounded("fetch_bodies", store.fetch_bodies(&wanted))
        .await
        .unwrap();
    assert_eq!(proxy.count("UID FETCH"), 1, "{:?}", proxy.commands());
    assert_eq!(proxy.commands().len(), 1, "{:?}", proxy.commands());
    assert_eq!(
        bodies.iter().map(|b| b.uid).collect::<Vec<_>>(),
        wanted,
        "every body asked for, in UID order"
    );
    for b in &bodies {
        let s = seeded.iter().find(|s| s.uid == b.uid).unwrap();
        assert_eq!(sha256_hex(b.bytes()), s.sha256, "uid {}", b.uid);
    }
    store.logout().await;
}

// ------------------------------------------------------------------ 11. login

/// A wrong password is `Auth` (and the password appears nowhere in the error).
#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_auth() {
    let dovecot = TestServer::dovecot_primary();
    dovecot.require();
    let user = fresh_user("gauth");
    let password = "not-the-password-x7q";
    let r = bounded(
        "connect",
        ImapStore::connect(
            &config(&plain_url(&user, dovecot.addr()), password, SLOW),
            Access::ReadOnly,
        ),
    )
    .await;
    match r {
        Err(e @ StoreError::Auth { .. }) => {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(password), "the password leaked: {text}");
        }
        Err(other) => panic!("a wrong password gave {other:?}, expected Auth"),
        Ok(_) => panic!("a wrong password logged in"),
    }
}

/// A closed port is `Connect`.
#[tokio::test(flavor = "multi_thread")]
async fn closed_port_is_connect() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // dropped: nothing listens there now
    for url in [
        format!("imap+plain://bob@127.0.0.1:{port}"),
        format!("imap://bob@127.0.0.1:{port}"),
        format!("imaps://bob@127.0.0.1:{port}"),
    ] {
        let r = bounded(
            "connect",
            ImapStore::connect(&config(&url, PASSWORD, SLOW), Access::ReadOnly),
        )
        .await;
        assert!(
            matches!(&r, Err(StoreError::Connect { .. })),
            "{url}: {:?}",
            r.as_ref().err()
        );
    }
}

/// A PREAUTH greeting (already logged in as someone) is refused before any command is sent,
/// with and without the STARTTLS prelude.
#[tokio::test(flavor = "multi_thread")]
async fn preauth_greeting_is_refused() {
    for scheme in ["imap+plain", "imap"] {
        let server = ScriptedServer::start(
            Script::new("* PREAUTH [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] Logged in as alice")
                .auto(Step::capability("IMAP4rev1 LITERAL+ UIDPLUS"))
                .auto(Step::login_ok())
                .auto(list_auto())
                .end(After::Continue),
        );
        let url = format!("{scheme}://bob@127.0.0.1:{}", server.port());
        let r = bounded(
            "connect",
            ImapStore::connect(&config(&url, PASSWORD, SLOW), Access::ReadOnly),
        )
        .await;
        match &r {
            Err(StoreError::Refused { detail, .. }) if detail.contains("PREAUTH") => {}
            Err(other) => panic!("{url}: PREAUTH gave {other:?}, expected Refused"),
            Ok(_) => panic!("{url}: a PREAUTH session was used"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(server.received(), Vec::<String>::new(), "{url}");
    }
}

// ------------------------------------------------------------------ 12. mid-APPEND

/// The connection drops at the 3rd APPEND of a 5-message batch (one message per APPEND: the
/// server's MULTIAPPEND hidden): the call is an error (connection-level, outcome unknown), not
/// a list of per-message results; messages 3-5 never reached the server.
#[tokio::test(flavor = "multi_thread")]
async fn connection_drop_mid_append_batch_fails_the_call() {
    let dovecot = TestServer::dovecot_primary();
    dovecot.require();
    let user = fresh_user("gappend");
    // One message already there (an empty folder is listed without a command; see
    // `listing_an_empty_folder_on_a_dead_connection_is_an_error`).
    let seeded = seed_inbox(&dovecot, &user, 1).await;
    let proxy = Proxy::start(dovecot.addr(), FaultPlan::drop_on("APPEND", 3));
    proxy.hide_capability("MULTIAPPEND");
    let mut store = connect(&plain_url(&user, proxy.addr()), Access::ReadWrite, SLOW).await;
    // A folder is open, so that the later message calls exercise the poisoned connection.
    bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap();
    assert_eq!(proxy.count("SELECT"), 1, "{:?}", proxy.commands());

    let flags = FlagSet::from_raw(["\\Seen"]);
    let date = InternalDate::parse(DATE).unwrap();
    let bodies: Vec<Vec<u8>> = (100..105).map(message).collect();
    let requests = append_requests(&bodies, &flags, &date);

    let r = bounded("append", store.append(&FolderPath::inbox(), &requests)).await;
    match &r {
        Err(e) if e.is_connection_lost() => {}
        Err(other) => panic!("a dropped connection gave {other:?}, not a connection error"),
        Ok(results) => panic!("a dropped connection read as per-message results: {results:?}"),
    }
    assert_eq!(proxy.faults_fired(), 1);
    assert_eq!(proxy.count("APPEND"), 2, "{:?}", proxy.commands());
    assert_poisoned(&mut store, || {
        proxy.commands().len() + proxy.faulted_commands().len()
    })
    .await;

    // What did arrive: the seeded message and at most the two APPENDs forwarded before the drop.
    let (after, _) = witness(&dovecot, &user).await;
    assert!(after.len() <= 3, "{after:?}");
    assert_eq!(after[0], seeded[0]);
    let ids: Vec<Option<String>> = after.iter().map(|m| m.message_id.clone()).collect();
    for i in 102..105 {
        let id = format!("<g{i}@imap-guarantees>");
        assert!(!ids.contains(&Some(id.clone())), "{id} reached the server");
    }
}

/// With MULTIAPPEND and a group limit of two messages, a 5-message batch is three pipelined
/// commands (2 + 2 + 1 messages); the connection drops at the second: the call is an error,
/// and the server holds the first command's two messages or neither, and none of the others
/// (a MULTIAPPEND is stored all or nothing).
#[tokio::test(flavor = "multi_thread")]
async fn connection_drop_mid_multiappend_keeps_only_whole_commands() {
    let dovecot = TestServer::dovecot_primary();
    dovecot.require();
    let user = fresh_user("gmulti");
    let seeded = seed_inbox(&dovecot, &user, 1).await;
    let proxy = Proxy::start(dovecot.addr(), FaultPlan::drop_on("APPEND", 2));
    let mut store = connect(&plain_url(&user, proxy.addr()), Access::ReadWrite, SLOW).await;
    assert!(
        store.capabilities().multiappend,
        "Dovecot offers MULTIAPPEND"
    );
    let flags = FlagSet::from_raw(["\\Seen"]);
    let date = InternalDate::parse(DATE).unwrap();
    let bodies: Vec<Vec<u8>> = (200..205).map(message).collect();
    let requests = append_requests(&bodies, &flags, &date);
    store.set_append_group_limit((bodies[0].len() + bodies[1].len()) as u64);

    let r = bounded("append", store.append(&FolderPath::inbox(), &requests)).await;
    assert!(
        matches!(&r, Err(e) if e.is_connection_lost()),
        "a dropped connection gave {r:?}"
    );
    let sent = proxy.commands_detailed();
    let appends: Vec<_> = sent.iter().filter(|c| c.verb == "APPEND").collect();
    assert_eq!(appends.len(), 1, "{sent:?}");
    assert_eq!(appends[0].literals.len(), 2, "{sent:?}");

    let (after, _) = witness(&dovecot, &user).await;
    let ids: Vec<Option<String>> = after.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(after[0], seeded[0]);
    // The first command went through whole; whether the server committed it before it saw
    // the connection close is its business, but it is both messages or neither.
    let first = [
        Some("<g200@imap-guarantees>".to_string()),
        Some("<g201@imap-guarantees>".to_string()),
    ];
    assert!(ids[1..] == first || ids[1..].is_empty(), "{ids:?}");
}

/// (Extra) Once the connection is dead, listing a folder that was empty when opened is an
/// error too, never an empty listing (the folder may have filled since; we can no longer ask).
/// `fetch_meta` answers an empty folder without a command, so it must check the poison first.
#[tokio::test(flavor = "multi_thread")]
async fn listing_an_empty_folder_on_a_dead_connection_is_an_error() {
    let server = scripted(vec![
        open_step("EXAMINE", 0, Some(9)),
        Step::new("UID FETCH", Vec::<String>::new()).then(After::HalfClose),
    ]);
    let mut store = open_scripted(&server, Access::ReadOnly, SLOW).await;
    let r = bounded("fetch_bodies", store.fetch_bodies(&[1])).await;
    assert!(
        matches!(&r, Err(StoreError::ConnectionLost { .. })),
        "{r:?}"
    );
    let r = bounded("list_messages", store.list_messages()).await;
    assert!(
        matches!(&r, Err(e) if is_poison_error(e)),
        "a dead connection listed the folder: {r:?}"
    );
}
