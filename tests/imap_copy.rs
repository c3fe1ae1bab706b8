//! `MailStore::copy` of the IMAP adapter against real Dovecot: one `UID COPY` per call, the new
//! UIDs read from COPYUID, the copies byte-identical with the same flags and INTERNALDATE (seen
//! by the independent witness client), vanished UIDs answered `None`, and a read-only side that
//! refuses before the wire. The scripted server gives the COPYUID forms Dovecot does not send
//! (untagged, mismatched). Tests panic (never skip) when the servers are down.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mailreplica::config::{Endpoint, Secret, SideConfig};
use mailreplica::mailstore::imap::transport::TlsOptions;
use mailreplica::mailstore::imap::ImapStore;
use mailreplica::mailstore::{Access, MailStore, StoreError};
use mailreplica::model::FolderPath;

use crate::support::imap_client::{TestImap, TestMessage};
use crate::support::proxy::{FaultPlan, Proxy};
use crate::support::scripted_server::{After, Script, ScriptedServer, Step};
use crate::support::servers::{fresh_user, TestServer, PASSWORD};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Three messages: (flags, INTERNALDATE, bytes). The second has flags and a keyword.
fn corpus() -> Vec<(Vec<&'static str>, &'static str, Vec<u8>)> {
    (0..3)
        .map(|i| {
            let flags = if i == 1 {
                vec!["\\Flagged", "\\Seen", "$Work"]
            } else {
                vec![]
            };
            let date = [
                "17-Jul-2024 02:44:25 +0200",
                "01-Feb-2019 23:59:59 -0800",
                "05-Mar-2021 12:00:00 +0000",
            ][i];
            let bytes = format!(
                "From: a@example.org\r\nTo: b@example.org\r\nSubject: copy {i}\r\n\
                 Message-ID: <c{i}@imap-copy>\r\nDate: Wed, 17 Jul 2024 02:44:25 +0200\r\n\r\n\
                 Body of message {i},\r\nwith two lines.\r\n"
            )
            .into_bytes();
            (flags, date, bytes)
        })
        .collect()
}

fn config(url: &str) -> SideConfig {
    SideConfig {
        endpoint: Endpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}")),
        password: Secret::new(PASSWORD.to_string()),
        auth: Default::default(),
        tls: TlsOptions::default(),
        allow_plaintext: false,
        timeout: TIMEOUT,
        jmap_ids: None,
    }
}

/// `imap+plain://USER@IP:PORT`: no TLS, so a proxy in between sees the commands.
fn plain_url(user: &str, addr: SocketAddr) -> String {
    format!("imap+plain://{user}@{}:{}", addr.ip(), addr.port())
}

/// Fails the test if `fut` does not finish within 60 s.
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return within 60 s"))
}

async fn connect(addr: SocketAddr, user: &str, access: Access) -> ImapStore {
    let url = plain_url(user, addr);
    bounded("connect", ImapStore::connect(&config(&url), access))
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// A fresh user on `server` with the corpus in INBOX and `dest` holding one older message (so
/// the copies' UIDs differ from the originals'). Returns the user and INBOX as the witness sees
/// it.
async fn seed(server: &TestServer, prefix: &str, dest: &str) -> (String, Vec<TestMessage>) {
    server.require();
    let user = fresh_user(prefix);
    let mut w = TestImap::connect(server, &user).await;
    for (flags, date, bytes) in corpus() {
        w.append("INBOX", &flags, Some(date), &bytes).await;
    }
    w.create(dest).await;
    w.append(
        dest,
        &[],
        Some("01-Jan-2020 00:00:00 +0000"),
        b"Subject: old\r\n\r\nold\r\n",
    )
    .await;
    let inbox = w.messages("INBOX").await;
    w.logout().await;
    assert_eq!(inbox.len(), 3, "seeding {user}");
    (user, inbox)
}

async fn witness(server: &TestServer, user: &str, path: &str) -> Vec<TestMessage> {
    let mut w = TestImap::connect(server, user).await;
    let msgs = w.messages(path).await;
    w.logout().await;
    msgs
}

/// The copies are where COPYUID says, byte-identical, with the same flags (keyword included)
/// and INTERNALDATE; the originals stay. The destination is nested and non-ASCII, so the wire
/// name goes through the delimiter and modified UTF-7. Through the counting proxy, the call is
/// one `UID COPY` and no APPEND.
#[tokio::test(flavor = "multi_thread")]
async fn copy_is_one_command_and_keeps_bodies_flags_and_dates() {
    let dovecot = TestServer::dovecot_primary();
    let dest = "Archiv/Übersicht";
    let (user, inbox) = seed(&dovecot, "cpy", dest).await;
    let proxy = Proxy::start(dovecot.addr(), FaultPlan::None);
    let mut store = connect(proxy.addr(), &user, Access::ReadWrite).await;
    assert!(store.capabilities().uidplus, "Dovecot advertises UIDPLUS");
    bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap();

    // Out of order on purpose: the answer follows the input order.
    let uids = [inbox[2].uid, inbox[0].uid, inbox[1].uid];
    proxy.reset_counts();
    let copied = bounded("copy", store.copy(&uids, &FolderPath::from_display(dest)))
        .await
        .unwrap();
    assert_eq!(proxy.count("UID COPY"), 1, "{:?}", proxy.commands());
    assert_eq!(proxy.count("COPY"), 1, "{:?}", proxy.commands());
    assert_eq!(proxy.count("APPEND"), 0, "{:?}", proxy.commands());
    assert_eq!(proxy.commands().len(), 1, "{:?}", proxy.commands());
    store.logout().await;

    assert_eq!(
        copied.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        uids,
        "one answer per source UID, in input order"
    );
    let archived = witness(&dovecot, &user, dest).await;
    assert_eq!(archived.len(), 4, "the old message and three copies");
    let mut new_uids = Vec::new();
    for (src, new) in &copied {
        let new = new.unwrap_or_else(|| panic!("no COPYUID for source UID {src}"));
        new_uids.push(new);
        let original = inbox.iter().find(|m| m.uid == *src).unwrap();
        let copy = archived
            .iter()
            .find(|m| m.uid == new)
            .unwrap_or_else(|| panic!("UID {new} (copy of {src}) is not in {dest}"));
        assert_eq!(copy.sha256, original.sha256, "body of {src} -> {new}");
        assert_eq!(copy.size, original.size, "size of {src} -> {new}");
        assert_eq!(copy.flags, original.flags, "flags of {src} -> {new}");
        assert_eq!(
            copy.internaldate_timestamp(),
            original.internaldate_timestamp(),
            "INTERNALDATE of {src} -> {new} ({} vs {})",
            copy.internaldate,
            original.internaldate
        );
    }
    let flagged = archived.iter().find(|m| m.uid == copied[2].1.unwrap());
    assert!(
        flagged.is_some_and(|m| m.flags.contains("$Work") && m.flags.contains("\\Flagged")),
        "{flagged:?}"
    );
    new_uids.sort_unstable();
    new_uids.dedup();
    assert_eq!(new_uids.len(), 3, "three distinct new UIDs");
    assert_eq!(
        witness(&dovecot, &user, "INBOX").await,
        inbox,
        "the source changed"
    );
}

/// A UID the folder does not hold (never existed, or expunged) maps to `None`; the others are
/// copied.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_uid_maps_to_none() {
    let dovecot = TestServer::dovecot_primary();
    let dest = "Copies";
    let (user, inbox) = seed(&dovecot, "cpymiss", dest).await;
    let mut w = TestImap::connect(&dovecot, &user).await;
    w.expunge_uids("INBOX", &[inbox[1].uid]).await;
    w.logout().await;

    let mut store = connect(dovecot.addr(), &user, Access::ReadWrite).await;
    bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap();
    let absent = inbox[2].uid + 1000;
    let uids = [inbox[0].uid, absent, inbox[1].uid];
    let copied = bounded("copy", store.copy(&uids, &FolderPath::from_display(dest)))
        .await
        .unwrap();
    assert_eq!(copied.len(), 3, "{copied:?}");
    assert_eq!(
        (copied[1], copied[2]),
        ((absent, None), (inbox[1].uid, None))
    );
    assert_eq!(copied[0].0, inbox[0].uid);
    let new = copied[0].1.expect("COPYUID for the existing message");

    // Only existing UIDs: the session is still usable after the partial copy.
    let again = bounded(
        "copy",
        store.copy(&[absent], &FolderPath::from_display(dest)),
    )
    .await;
    assert!(
        matches!(&again, Ok(v) if v == &[(absent, None)]),
        "{again:?}"
    );
    store.logout().await;

    let archived = witness(&dovecot, &user, dest).await;
    assert_eq!(
        archived.len(),
        2,
        "the old message and one copy: {archived:?}"
    );
    let copy = archived.iter().find(|m| m.uid == new).unwrap();
    assert_eq!(copy.sha256, inbox[0].sha256);
}

/// A copy into a folder that does not exist is a NO and leaves the session usable.
#[tokio::test(flavor = "multi_thread")]
async fn copy_into_a_missing_folder_is_no() {
    let dovecot = TestServer::dovecot_primary();
    let (user, inbox) = seed(&dovecot, "cpynof", "Copies").await;
    let mut store = connect(dovecot.addr(), &user, Access::ReadWrite).await;
    bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap();
    let r = bounded(
        "copy",
        store.copy(&[inbox[0].uid], &FolderPath::from_display("Nowhere")),
    )
    .await;
    // Dovecot answers `NO [TRYCREATE]`; the adapter's NO keeps a response code only when the
    // parser left it in the text, so the code is not asserted here.
    assert!(
        matches!(&r, Err(StoreError::No { command, folder, .. })
            if command == "UID COPY" && folder.contains("Nowhere")),
        "{r:?}"
    );
    let list = bounded("list_messages", store.list_messages())
        .await
        .unwrap();
    assert_eq!(list.len(), 3);
    store.logout().await;
}

/// A read-only store refuses COPY with `ReadOnly` before anything reaches the wire.
#[tokio::test(flavor = "multi_thread")]
async fn read_only_store_refuses_copy_before_the_wire() {
    let dovecot = TestServer::dovecot_primary();
    let dest = "Copies";
    let (user, inbox) = seed(&dovecot, "cpyro", dest).await;
    let before = witness(&dovecot, &user, dest).await;

    let proxy = Proxy::start(dovecot.addr(), FaultPlan::None);
    let mut store = connect(proxy.addr(), &user, Access::ReadOnly).await;
    bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap();
    let sent = proxy.commands();
    let uids: Vec<u32> = inbox.iter().map(|m| m.uid).collect();
    let r = bounded("copy", store.copy(&uids, &FolderPath::from_display(dest))).await;
    assert!(
        matches!(&r, Err(StoreError::ReadOnly { command, .. }) if command == "COPY"),
        "{r:?}"
    );
    let r = bounded("copy", store.copy(&[], &FolderPath::from_display(dest))).await;
    assert!(matches!(&r, Err(StoreError::ReadOnly { .. })), "{r:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(proxy.count("COPY"), 0, "{:?}", proxy.commands());
    assert_eq!(proxy.count("UID COPY"), 0, "{:?}", proxy.commands());
    assert_eq!(proxy.commands(), sent, "a refused COPY reached the wire");

    // The refusal leaves the session usable.
    let list = bounded("list_messages", store.list_messages())
        .await
        .unwrap();
    assert_eq!(list.len(), 3);
    store.logout().await;
    assert_eq!(witness(&dovecot, &user, dest).await, before);
}

/// Without CONDSTORE too (the third Dovecot): COPYUID is read and the copies are exact.
#[tokio::test(flavor = "multi_thread")]
async fn copy_on_the_nocondstore_server() {
    let dovecot = TestServer::dovecot_nocondstore();
    let dest = "Copies";
    let (user, inbox) = seed(&dovecot, "cpyncs", dest).await;
    let mut store = connect(dovecot.addr(), &user, Access::ReadWrite).await;
    bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap();
    let uids: Vec<u32> = inbox.iter().map(|m| m.uid).collect();
    let copied = bounded("copy", store.copy(&uids, &FolderPath::from_display(dest)))
        .await
        .unwrap();
    store.logout().await;
    let archived = witness(&dovecot, &user, dest).await;
    for ((src, new), original) in copied.iter().zip(&inbox) {
        assert_eq!(*src, original.uid);
        let new = new.expect("COPYUID");
        let copy = archived.iter().find(|m| m.uid == new).unwrap();
        assert_eq!(
            (&copy.sha256, &copy.flags, copy.internaldate_timestamp()),
            (
                &original.sha256,
                &original.flags,
                original.internaldate_timestamp()
            )
        );
    }
}

// ------------------------------------------------------------------ scripted COPYUID forms

/// A scripted session with INBOX of 3 messages open, then one `UID COPY` answered by `reply`.
async fn scripted_copy(
    reply: &[&str],
    uids: &[u32],
) -> (Result<Vec<(u32, Option<u32>)>, StoreError>, Vec<String>) {
    let list = Step::new(
        "LIST",
        [
            "* LIST (\\HasNoChildren) \"/\" INBOX",
            "{tag} OK List completed.",
        ],
    );
    let select = Step::new(
        "SELECT \"INBOX\"",
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
            "* 3 EXISTS",
            "* OK [UIDVALIDITY 7] UIDs valid",
            "* OK [UIDNEXT 4] Predicted next UID",
            "{tag} OK [READ-WRITE] Select completed.",
        ],
    );
    let server = ScriptedServer::start(
        Script::standard()
            .auto(list)
            .end(After::Continue)
            .step(select)
            .step(Step::new("UID COPY", reply.iter().copied())),
    );
    let mut store = connect(server.addr(), "bob", Access::ReadWrite).await;
    bounded("open_folder", store.open_folder(&FolderPath::inbox()))
        .await
        .unwrap();
    let r = bounded(
        "copy",
        store.copy(uids, &FolderPath::from_display("Archive")),
    )
    .await;
    let sent: Vec<String> = server
        .received()
        .into_iter()
        .filter(|c| c.to_ascii_uppercase().contains("COPY"))
        .collect();
    assert!(server.errors().is_empty(), "{:?}", server.errors());
    (r, sent)
}

/// COPYUID in an untagged OK before the tagged one is read too.
#[tokio::test(flavor = "multi_thread")]
async fn untagged_copyuid_is_read() {
    let (r, sent) = scripted_copy(
        &[
            "* OK [COPYUID 99 1:2 15:16] Copied",
            "{tag} OK Copy completed.",
        ],
        &[2, 1, 3],
    )
    .await;
    assert_eq!(r.unwrap(), [(2, Some(16)), (1, Some(15)), (3, None)]);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].ends_with("UID COPY 1:3 \"Archive\""), "{sent:?}");
}

/// Sets of different lengths pair what they can; the rest is `None`. No COPYUID at all (no
/// UIDPLUS) is `None` for every UID.
#[tokio::test(flavor = "multi_thread")]
async fn mismatched_or_absent_copyuid_gives_none() {
    let (r, _) = scripted_copy(
        &["{tag} OK [COPYUID 99 1:3,7 10:12] Copy completed."],
        &[1, 2, 3, 7],
    )
    .await;
    assert_eq!(
        r.unwrap(),
        [(1, Some(10)), (2, Some(11)), (3, Some(12)), (7, None)]
    );
    let (r, _) = scripted_copy(&["{tag} OK Copy completed."], &[1, 2]).await;
    assert_eq!(r.unwrap(), [(1, None), (2, None)]);
}
