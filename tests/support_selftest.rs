//! Tests of the test helpers in `tests/support/` themselves: modified UTF-7,
//! user names, the corpus loader, the proxy (with a fake upstream), the
//! scripted server, the JMAP push proxy (with a fake JMAP server), `TestImap` against the real
//! Dovecot primary, and a private Dovecot killed and restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::support::corpus::{big_message, Corpus};
use crate::support::http_server::{HttpReply, HttpRequest, HttpServer};
use crate::support::imap_client::{internaldate_timestamp, sha256_hex, TestImap, ToAppend};
use crate::support::jmap_push_proxy::{JmapPushProxy, PushMode};
use crate::support::mutf7;
use crate::support::private_dovecot::PrivateDovecot;
use crate::support::proxy::{random_drop_threshold, FaultPlan, Proxy};
use crate::support::scripted_server::{After, Script, ScriptedServer, Step};
use crate::support::servers::{fresh_user, TestServer};

// ------------------------------------------------------------ mutf7, names

proptest! {
    #[test]
    fn mutf7_round_trips(s in "\\PC*") {
        let e = mutf7::encode(&s);
        prop_assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{e:?}");
        prop_assert_eq!(mutf7::decode(&e).unwrap(), s);
    }

    #[test]
    fn mutf7_decode_never_panics(s in "[ -~]{0,40}") {
        if let Ok(d) = mutf7::decode(&s) {
            // Whatever decodes must encode back to the same canonical form.
            prop_assert_eq!(mutf7::encode(&d), s);
        }
    }
}

#[test]
fn mutf7_known_values() {
    for (utf8, wire) in [
        ("Données/Été", "Donn&AOk-es/&AMk-t&AOk-"),
        ("&", "&-"),
        ("Projects/R&D", "Projects/R&-D"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("INBOX", "INBOX"),
    ] {
        assert_eq!(mutf7::encode(utf8), wire);
        assert_eq!(mutf7::decode(wire).unwrap(), utf8);
    }
}

#[test]
fn fresh_users_are_unique_short_and_plain() {
    let names: Vec<String> = (0..1000).map(|_| fresh_user("Self-Test_ä")).collect();
    let set: BTreeSet<&String> = names.iter().collect();
    assert_eq!(set.len(), names.len());
    for n in &names {
        assert!(n.len() <= 40, "{n}");
        assert!(n.starts_with("selftest"), "{n}");
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "{n}"
        );
    }
    assert!(fresh_user(&"x".repeat(100)).len() <= 40);
    assert!(fresh_user("").starts_with('u'));
}

#[test]
fn server_urls() {
    let s = TestServer::dovecot_primary();
    assert_eq!(s.url("bob"), format!("imap://bob@127.0.0.1:{}", s.port));
    assert!(TestServer::cyrus().is_cyrus());
    assert!(!s.is_cyrus());
}

// ------------------------------------------------------------ corpus

#[test]
fn corpus_loader_parses_a_small_manifest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("m")).unwrap();
    for (name, body) in [
        ("a", "Subject: a\r\n\r\na\r\n"),
        ("b", "Subject: b\r\n\r\nb\r\n"),
    ] {
        std::fs::write(dir.path().join("m").join(name), body).unwrap();
    }
    let manifest = dir.path().join("manifest.tsv");
    std::fs::write(
        &manifest,
        "# comment\nINBOX\t\t\t\nA/B\t\t\t\nINBOX\tm/a\t\\Seen $X\t17-Jul-2024 02:44:25 +0200\n\
         \nA/B\tm/b\t\t\nA/B\tm/a\n",
    )
    .unwrap();
    let c = Corpus::load_from(&manifest).unwrap();
    assert_eq!(c.folders, ["INBOX", "A/B"]);
    assert_eq!(c.messages.len(), 3);
    assert_eq!(c.messages[0].flags, ["\\Seen", "$X"]);
    assert_eq!(
        c.messages[0].internaldate.as_deref(),
        Some("17-Jul-2024 02:44:25 +0200")
    );
    assert_eq!(c.messages[0].bytes, b"Subject: a\r\n\r\na\r\n");
    assert!(c.messages[1].flags.is_empty() && c.messages[1].internaldate.is_none());
    assert_eq!(c.messages[2].folder, "A/B");
    assert_eq!(
        c.counts(),
        BTreeMap::from([("INBOX".into(), 1), ("A/B".into(), 2)])
    );

    std::fs::write(&manifest, "INBOX\tm/missing\t\t\n").unwrap();
    assert!(Corpus::load_from(&manifest)
        .unwrap_err()
        .contains("missing"));
}

#[test]
fn project_corpus_loads() {
    let c = Corpus::load();
    assert!(c.folders.iter().any(|f| f == "INBOX"));
    assert!(!c.messages.is_empty());
    for m in &c.messages {
        assert!(c.folders.contains(&m.folder), "{} not declared", m.folder);
        assert!(!m.bytes.is_empty(), "{}", m.file);
        if let Some(d) = &m.internaldate {
            internaldate_timestamp(d);
        }
    }
}

#[test]
fn big_message_is_deterministic_and_sized() {
    for size in [1, 10_000, 1_000_000, 5 * 1024 * 1024] {
        let m = big_message(size);
        assert_eq!(m, big_message(size));
        if size >= 10_000 {
            let diff = (m.len() as i64 - size as i64).abs();
            assert!(diff < 100, "asked {size}, got {}", m.len());
        }
        // CRLF only, lines <= 998, 7-bit.
        let text = std::str::from_utf8(&m).unwrap();
        assert!(text.ends_with("--\r\n"));
        for line in text.split("\r\n") {
            assert!(!line.contains('\n') && !line.contains('\r'));
            assert!(line.len() <= 998);
        }
        assert!(text.contains("Content-Transfer-Encoding: base64"));
    }
    assert_ne!(big_message(20_000), big_message(20_001));
}

// ------------------------------------------------------------ proxy

/// A fake upstream: accepts one connection, optionally sends `greeting`,
/// answers every complete line with `* OK seen` (no IMAP parsing), and
/// returns everything it received once the client closes.
async fn fake_upstream(greeting: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(greeting).await.unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
        all
    });
    (addr, h)
}

/// An upstream that answers every line `TAG ...` with `TAG OK done`, for
/// any number of connections; returns the lines it received.
async fn echo_ok_upstream() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = s.into_split();
                let mut rd = tokio::io::BufReader::new(rd);
                wr.write_all(b"* OK echo ready\r\n").await.unwrap();
                loop {
                    let mut line = String::new();
                    match tokio::io::AsyncBufReadExt::read_line(&mut rd, &mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let line = line.trim_end().to_string();
                    let tag = line.split(' ').next().unwrap_or("*").to_string();
                    seen.lock().unwrap().push(line);
                    if wr
                        .write_all(format!("{tag} OK done\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    (addr, seen)
}

async fn read_line(s: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(1)) => {
                out.push(b[0]);
                if b[0] == b'\n' {
                    return Some(String::from_utf8_lossy(&out).trim_end().to_string());
                }
            }
            Ok(_) => return None,
            Err(_) => panic!(
                "no line within 5 s (got {:?})",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Reads until EOF/error (true) or until `wait` passes with the connection
/// open (false).
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let end = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn proxy_counts_commands_literal_aware() {
    let (up, received) = fake_upstream(b"* OK fake\r\n").await;
    let proxy = Proxy::start(up, FaultPlan::None);
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "* OK fake");

    let lit1 = b"a2 APPEND x\r\n".to_vec(); // looks like a command, is message data
    let lit2 = b"Subject: y\r\n\r\nb1 UID FETCH 1:* BODY[]\r\nc1 APPEND INBOX {3}\r\n".to_vec();
    let mut sent = Vec::new();
    sent.extend(format!("a1 APPEND INBOX (\\Seen) {{{}}}\r\n", lit1.len()).bytes());
    sent.extend(&lit1);
    sent.extend(b"\r\n");
    sent.extend(b"a3 NOOP\r\n");
    sent.extend(format!("a4 append \"Sent\" {{{}+}}\r\n", lit2.len()).bytes());
    sent.extend(&lit2);
    sent.extend(b"\r\n");
    sent.extend(b"a5 uid fetch 1:* (FLAGS)\r\na6 FETCH 1 FLAGS\r\n");
    sent.extend(b"a7 IDLE\r\nDONE\r\n");
    // MULTIAPPEND-style continuation: a second literal in the same command.
    sent.extend(b"a8 APPEND INBOX {1}\r\nX {2}\r\nYZ\r\n");
    sent.extend(b"a9 LOGOUT\r\n");
    // Send in awkward pieces to exercise the incremental parser.
    for chunk in sent.chunks(7) {
        c.write_all(chunk).await.unwrap();
        c.flush().await.unwrap();
    }
    c.shutdown().await.unwrap();
    let got = timeout(Duration::from_secs(10), received)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, sent, "the proxy must forward bytes unchanged");

    assert_eq!(proxy.count("APPEND"), 3);
    assert_eq!(proxy.count("append"), 3);
    assert_eq!(proxy.count("FETCH"), 2);
    assert_eq!(proxy.count("UID FETCH"), 1);
    assert_eq!(proxy.count("NOOP"), 1);
    assert_eq!(proxy.count("IDLE"), 1);
    assert_eq!(proxy.count("DONE"), 0);
    assert_eq!(
        proxy.commands(),
        [
            "a1 APPEND INBOX (\\Seen) {13}",
            "a3 NOOP",
            "a4 append \"Sent\" {60+}",
            "a5 uid fetch 1:* (FLAGS)",
            "a6 FETCH 1 FLAGS",
            "a7 IDLE",
            "a8 APPEND INBOX {1}",
            "a9 LOGOUT",
        ]
    );
    let d = proxy.commands_detailed();
    assert!(d.iter().all(|c| c.conn == 1));
    assert_eq!(d[3].tag, "a5");
    assert!(d[3].uid && d[3].verb == "FETCH");
    assert_eq!(proxy.connections(), 1);
}

#[tokio::test]
async fn proxy_drop_on_command_closes_before_forwarding() {
    let (up, seen) = echo_ok_upstream().await;
    let proxy = Proxy::start(up, FaultPlan::drop_on("noop", 2));
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "* OK echo ready");
    c.write_all(b"a1 NOOP\r\n").await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "a1 OK done");
    c.write_all(b"a2 SELECT INBOX\r\n").await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "a2 OK done");
    c.write_all(b"a3 NOOP\r\n").await.unwrap();
    assert!(
        closed_within(&mut c, Duration::from_secs(5)).await,
        "not closed"
    );
    assert_eq!(proxy.faults_fired(), 1);
    assert_eq!(proxy.plan(), FaultPlan::None, "one-shot plans disarm");
    assert_eq!(proxy.count("NOOP"), 1, "the dropped NOOP was not forwarded");
    assert_eq!(proxy.faulted_commands()[0].line, "a3 NOOP");

    // A new connection works normally.
    let mut c2 = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(read_line(&mut c2).await.unwrap(), "* OK echo ready");
    c2.write_all(b"b1 NOOP\r\n").await.unwrap();
    assert_eq!(read_line(&mut c2).await.unwrap(), "b1 OK done");
    assert_eq!(proxy.connections(), 2);
    assert_eq!(proxy.count("NOOP"), 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, ["a1 NOOP", "a2 SELECT INBOX", "b1 NOOP"]);
}

#[tokio::test]
async fn proxy_drop_always_and_runtime_plan_changes() {
    let (up, _seen) = echo_ok_upstream().await;
    let proxy = Proxy::start(up, FaultPlan::None);
    proxy.set_plan_always(FaultPlan::drop_on("UID FETCH", 1));
    for i in 0..2 {
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        read_line(&mut c).await.unwrap();
        c.write_all(b"x FETCH 1 FLAGS\r\n").await.unwrap(); // not the UID form
        assert_eq!(read_line(&mut c).await.unwrap(), "x OK done");
        c.write_all(b"y UID FETCH 1 FLAGS\r\n").await.unwrap();
        assert!(
            closed_within(&mut c, Duration::from_secs(5)).await,
            "round {i}"
        );
    }
    assert_eq!(proxy.faults_fired(), 2);
    proxy.set_plan(FaultPlan::None);
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    read_line(&mut c).await.unwrap();
    c.write_all(b"z UID FETCH 1 FLAGS\r\n").await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "z OK done");
}

#[tokio::test]
async fn proxy_stall_keeps_sockets_open() {
    let (up, seen) = echo_ok_upstream().await;
    let proxy = Proxy::start(up, FaultPlan::stall_on("SELECT", 1));
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    read_line(&mut c).await.unwrap();
    c.write_all(b"a1 SELECT INBOX\r\n").await.unwrap();
    assert!(
        !closed_within(&mut c, Duration::from_millis(500)).await,
        "a stalled connection must stay open and silent"
    );
    c.write_all(b"a2 NOOP\r\n").await.unwrap(); // swallowed by the stall
    assert!(!closed_within(&mut c, Duration::from_millis(300)).await);
    assert!(proxy.wait_faults_fired(1, Duration::from_secs(1)));
    assert!(seen.lock().unwrap().is_empty());
    proxy.close_connections();
    assert!(closed_within(&mut c, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn proxy_drop_after_server_bytes() {
    let (up, _rx) = fake_upstream(b"* OK 0123456789 0123456789 0123456789\r\n").await;
    let proxy = Proxy::start(up, FaultPlan::DropAfterServerBytes(10));
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut got = Vec::new();
    let _ = timeout(Duration::from_secs(5), c.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"* OK 01234");
    assert_eq!(proxy.faults_fired(), 1);
    assert_eq!(proxy.bytes().0, 10);
}

#[tokio::test]
async fn proxy_drop_randomly_cuts_each_connection_at_its_own_threshold() {
    let (up, _seen) = echo_ok_upstream().await;
    let proxy = Proxy::start(up, FaultPlan::None);
    let (mean, seed) = (3000, 99);
    proxy.set_plan_always(FaultPlan::DropRandomly {
        mean_bytes: mean,
        seed,
    });
    let mut thresholds = Vec::new();
    for conn in 1..=3 {
        proxy.reset_counts();
        let want = random_drop_threshold(seed, conn, mean);
        thresholds.push(want);
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = [0u8; 256];
        // Greeting, then NOOP after NOOP until the proxy cuts the connection.
        let mut i = 0;
        'conn: loop {
            loop {
                match timeout(Duration::from_secs(5), c.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break 'conn,
                    Ok(Ok(n)) if buf[..n].ends_with(b"\n") => break,
                    Ok(Ok(_)) => {}
                    Err(_) => panic!("connection {conn}: no answer and not closed"),
                }
            }
            i += 1;
            if c.write_all(format!("a{i} NOOP\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        // Both directions together carry exactly the threshold (the last piece is cut).
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while {
            let (s, c) = proxy.bytes();
            s + c != want && std::time::Instant::now() < end
        } {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (s, c) = proxy.bytes();
        assert_eq!(s + c, want, "connection {conn}: {s} + {c} bytes");
    }
    assert_eq!(proxy.faults_fired(), 3);
    assert_eq!(proxy.connections(), 3);
    thresholds.dedup();
    assert_eq!(thresholds.len(), 3, "{thresholds:?}");
}

#[tokio::test]
async fn proxy_drop_closes_client_and_upstream_on_dropping_proxy() {
    let (up, rx) = fake_upstream(b"* OK hi\r\n").await;
    let proxy = Proxy::start(up, FaultPlan::None);
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    read_line(&mut c).await.unwrap();
    drop(proxy);
    assert!(closed_within(&mut c, Duration::from_secs(5)).await);
    timeout(Duration::from_secs(5), rx).await.unwrap().unwrap();
}

// ------------------------------------------------------------ scripted server

fn list_step() -> Step {
    Step::new(
        "LIST",
        ["* LIST (\\Noselect) \"/\" \"\"", "{tag} OK LIST completed"],
    )
}

#[tokio::test]
async fn scripted_server_replays_per_connection() {
    let server = ScriptedServer::start(
        Script::standard()
            .auto(list_step())
            .expect(
                "EXAMINE",
                [
                    "* 1 EXISTS",
                    "* OK [UIDVALIDITY 7] ok",
                    "{tag} OK [READ-ONLY] EXAMINE completed",
                ],
            )
            .expect(
                "UID FETCH",
                [
                    "* 1 FETCH (UID 42 FLAGS (\\Seen $Work) INTERNALDATE \"17-Jul-2024 02:44:25 +0200\" RFC822.SIZE 5 BODY[] {5}\r\nhello)",
                    "{tag} OK FETCH completed",
                ],
            )
            .expect("UNSELECT", ["{tag} OK done"])
            .end(After::Continue),
    );
    for round in 1..=2 {
        let mut imap = TestImap::connect_addr(server.addr(), "scripted", "bob").await;
        let msgs = imap.messages("INBOX").await;
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].uid, 42);
        assert_eq!(
            msgs[0].flags,
            BTreeSet::from(["\\Seen".into(), "$Work".into()])
        );
        assert_eq!(msgs[0].internaldate, "17-Jul-2024 02:44:25 +0200");
        assert_eq!(msgs[0].sha256, sha256_hex(b"hello"));
        imap.logout().await;
        assert_eq!(server.connections(), round);
    }
    let r = server.received_on(2);
    assert_eq!(r.len(), 6, "{r:?}");
    assert!(r[0].ends_with("LOGIN \"bob\" \"test\""), "{r:?}");
    assert!(r[2].ends_with("EXAMINE \"INBOX\""), "{r:?}");
    assert!(r[3].contains("UID FETCH 1:*"), "{r:?}");
    assert!(server.errors().is_empty(), "{:?}", server.errors());
}

#[tokio::test]
async fn scripted_server_literals_and_rejection() {
    let server = ScriptedServer::start(
        Script::standard()
            .auto(list_step())
            .expect(
                "APPEND \"INBOX\"",
                ["{tag} OK [APPENDUID 9 77] APPEND completed"],
            )
            .step(Step::new("APPEND", ["{tag} NO [TRYCREATE] no such folder"]).rejecting_literal())
            .end(After::Continue),
    );
    let mut imap = TestImap::connect_addr(server.addr(), "scripted", "bob").await;
    let uid = imap
        .append(
            "INBOX",
            &["\\Seen"],
            Some("7-Jul-2024 02:44:25 +0200"),
            b"Subject: x\r\n\r\nbody\r\n",
        )
        .await;
    assert_eq!(uid, Some(77));
    let err = imap.try_append("Nope", &[], None, b"x").await.unwrap_err();
    assert!(
        err.contains("TRYCREATE") || err.contains("no such folder"),
        "{err}"
    );
    // The session is still usable after the rejected literal.
    imap.run("NOOP", |_| {}).await.unwrap();
    let raw = server.received_raw();
    let append = raw
        .iter()
        .find(|r| r.windows(6).any(|w| w == b"APPEND"))
        .unwrap();
    let text = String::from_utf8_lossy(append);
    assert!(
        text.contains("APPEND \"INBOX\" (\\Seen) \" 7-Jul-2024 02:44:25 +0200\" {20}\r\nSubject: x\r\n\r\nbody\r\n\r\n"),
        "{text:?}"
    );
}

#[tokio::test]
async fn scripted_server_unexpected_command_and_hang() {
    let server = ScriptedServer::start(
        Script::standard()
            .expect("SELECT", ["{tag} OK selected"])
            .end(After::Hang),
    );
    // Unexpected command while steps remain: BAD + close + recorded.
    let mut c = TcpStream::connect(server.addr()).await.unwrap();
    assert!(read_line(&mut c)
        .await
        .unwrap()
        .starts_with("* OK [CAPABILITY"));
    c.write_all(b"t1 EXAMINE INBOX\r\n").await.unwrap();
    assert_eq!(
        read_line(&mut c).await.unwrap(),
        "t1 BAD scripted server did not expect this"
    );
    assert!(closed_within(&mut c, Duration::from_secs(5)).await);
    assert_eq!(server.errors().len(), 1);

    // Hang after the last step: silent, open.
    let mut c = TcpStream::connect(server.addr()).await.unwrap();
    read_line(&mut c).await.unwrap();
    c.write_all(b"t1 LOGIN a b\r\nt2 SELECT INBOX\r\n")
        .await
        .unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "t1 OK LOGIN completed");
    assert_eq!(read_line(&mut c).await.unwrap(), "t2 OK selected");
    c.write_all(b"t3 NOOP\r\n").await.unwrap();
    assert!(!closed_within(&mut c, Duration::from_millis(500)).await);
}

#[tokio::test]
async fn scripted_server_close_and_no_greeting() {
    let server = ScriptedServer::start(Script::new("* BYE go away"));
    let mut c = TcpStream::connect(server.addr()).await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "* BYE go away");
    assert!(closed_within(&mut c, Duration::from_secs(5)).await);

    let server = ScriptedServer::start(Script::standard().no_greeting().end(After::Hang));
    let mut c = TcpStream::connect(server.addr()).await.unwrap();
    assert!(!closed_within(&mut c, Duration::from_millis(300)).await);
}

// ------------------------------------------------------------ real Dovecot

/// Every folder of the corpus plus its parents and INBOX.
fn expected_folders(c: &Corpus) -> Vec<String> {
    let mut set = BTreeSet::from(["INBOX".to_string()]);
    for f in &c.folders {
        let parts: Vec<&str> = f.split('/').collect();
        for i in 1..=parts.len() {
            set.insert(parts[..i].join("/"));
        }
    }
    set.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dovecot_seeded_corpus_matches_manifest() {
    let server = TestServer::dovecot_primary();
    server.require();
    let corpus = Corpus::load();
    let user = fresh_user("selftestcorpus");
    let mut imap = TestImap::connect(&server, &user).await;
    assert_eq!(imap.folders().await, ["INBOX"], "a fresh user starts empty");
    corpus.seed(&mut imap).await;

    assert_eq!(imap.folders().await, expected_folders(&corpus));
    for folder in expected_folders(&corpus) {
        let want: Vec<_> = corpus.in_folder(&folder).collect();
        let got = imap.messages(&folder).await;
        assert_eq!(got.len(), want.len(), "{folder}: message count");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.sha256, sha256_hex(&w.bytes), "{folder}: {} bytes", w.file);
            assert_eq!(g.size as usize, w.bytes.len(), "{folder}: {} size", w.file);
            let want_flags: BTreeSet<String> = w.flags.iter().cloned().collect();
            assert_eq!(g.flags, want_flags, "{folder}: {} flags", w.file);
            if let Some(d) = &w.internaldate {
                assert_eq!(
                    g.internaldate_timestamp(),
                    internaldate_timestamp(d),
                    "{folder}: {} INTERNALDATE {} vs {d}",
                    w.file,
                    g.internaldate
                );
            }
            assert_eq!(
                g.message_id,
                crate::support::imap_client::header_value(&w.bytes, "Message-ID"),
                "{folder}: {}",
                w.file
            );
        }
        let uids: Vec<u32> = got.iter().map(|m| m.uid).collect();
        assert!(
            uids.windows(2).all(|w| w[0] < w[1]),
            "{folder}: uids ascend"
        );
    }
    imap.logout().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dovecot_test_imap_operations() {
    let server = TestServer::dovecot_primary();
    server.require();
    let user = fresh_user("selftestops");
    let mut imap = TestImap::connect(&server, &user).await;
    assert_eq!(imap.delimiter().await.as_deref(), Some("/"));

    imap.create("Données/Été").await;
    imap.create("Données/Été").await; // already exists: fine
    imap.create("Projects/R&D").await;
    assert_eq!(
        imap.folders().await,
        [
            "Données",
            "Données/Été",
            "INBOX",
            "Projects",
            "Projects/R&D"
        ]
    );

    let big = big_message(300_000);
    let m1 = b"Message-ID: <one@test>\r\nSubject: one\r\n\r\nfirst\r\n".to_vec();
    let m2 = b"Subject: two\r\nMessage-ID:\r\n  <two@test>\r\n\r\nsecond\r\n".to_vec();
    let u1 = imap
        .append(
            "Données/Été",
            &["\\Seen", "$Forwarded"],
            Some("17-Jul-2024 02:44:25 +0200"),
            &m1,
        )
        .await
        .expect("Dovecot sends APPENDUID");
    let u2 = imap.append("Données/Été", &[], None, &m2).await.unwrap();
    let u3 = imap
        .append("Données/Été", &["\\Flagged"], None, &big)
        .await
        .unwrap();
    assert!(u1 < u2 && u2 < u3);

    let msgs = imap.messages("Données/Été").await;
    assert_eq!(msgs.iter().map(|m| m.uid).collect::<Vec<_>>(), [u1, u2, u3]);
    assert_eq!(
        msgs[0].flags,
        BTreeSet::from(["\\Seen".into(), "$Forwarded".into()])
    );
    assert_eq!(
        msgs[0].internaldate_timestamp(),
        internaldate_timestamp("17-Jul-2024 02:44:25 +0200")
    );
    assert_eq!(msgs[0].message_id.as_deref(), Some("<one@test>"));
    assert_eq!(msgs[1].message_id.as_deref(), Some("<two@test>"));
    assert!(
        msgs[1].flags.is_empty(),
        "messages() must not set \\Seen: {:?}",
        msgs[1].flags
    );
    assert_eq!(msgs[2].sha256, sha256_hex(&big));
    assert_eq!(imap.body("Données/Été", u2).await, m2);

    imap.set_flags("Données/Été", u2, &["\\Answered", "Work-Item"], &[])
        .await;
    imap.set_flags("Données/Été", u1, &[], &["\\Seen"]).await;
    let msgs = imap.messages("Données/Été").await;
    assert_eq!(msgs[0].flags, BTreeSet::from(["$Forwarded".into()]));
    assert_eq!(
        msgs[1].flags,
        BTreeSet::from(["\\Answered".into(), "Work-Item".into()])
    );

    let (validity, next, count) = imap.status("Données/Été").await;
    assert!(validity > 0 && next > u3 && count == 3);

    imap.expunge_uids("Données/Été", &[u2]).await;
    let uids: Vec<u32> = imap
        .messages("Données/Été")
        .await
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, [u1, u3]);

    imap.rename_folder("Projects/R&D", "Archive/R&D 2024").await;
    imap.delete_folder("Données/Été").await;
    // RENAME leaves the implied parent `Archive` \NonExistent on Dovecot,
    // so folders() does not list it.
    assert_eq!(
        imap.folders().await,
        ["Archive/R&D 2024", "Données", "INBOX", "Projects"]
    );
    imap.logout().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dovecot_messages_of_empty_and_missing_folders() {
    let server = TestServer::dovecot_primary();
    server.require();
    let user = fresh_user("selftestempty");
    let mut imap = TestImap::connect(&server, &user).await;
    assert!(imap.messages("INBOX").await.is_empty());
    imap.create("Empty").await;
    assert!(imap.messages("Empty").await.is_empty());
    let err = imap.try_messages("Missing").await.unwrap_err();
    assert!(err.contains("EXAMINE"), "{err}");
    // The session is still fine afterwards.
    assert_eq!(imap.folders().await, ["Empty", "INBOX"]);
}

/// `append_batch` stores every message exactly as `append` would (bytes, flags, date), in
/// order, across more than one MULTIAPPEND command; on Dovecot and on Cyrus.
#[tokio::test(flavor = "multi_thread")]
async fn append_batch_stores_every_message_in_order() {
    let mut servers = vec![TestServer::dovecot_primary()];
    if TestServer::cyrus().is_reachable() {
        servers.push(TestServer::cyrus());
    }
    for server in servers {
        server.require();
        let user = fresh_user("selftestbatch");
        server.ensure_user(&user);
        let mut imap = TestImap::connect(&server, &user).await;
        imap.create("Batch").await;
        let batch: Vec<ToAppend> = (0..450)
            .map(|i| ToAppend {
                flags: if i % 2 == 0 {
                    &["\\Seen", "$Label1"]
                } else {
                    &[]
                },
                internaldate: Some("7-Jul-2024 02:44:25 +0200"),
                bytes: format!(
                    "Subject: batch {i}\r\nMessage-ID: <b{i}@selftest>\r\n\r\n{}\r\n",
                    "x".repeat(i)
                )
                .into_bytes(),
            })
            .collect();
        imap.append_batch("Batch", &batch).await;
        let got = imap.messages("Batch").await;
        assert_eq!(got.len(), batch.len(), "{}", server.name);
        for (m, want) in got.iter().zip(&batch) {
            assert_eq!(m.sha256, sha256_hex(&want.bytes), "{}", server.name);
            let flags: BTreeSet<String> = want.flags.iter().map(|f| f.to_string()).collect();
            assert_eq!(m.flags, flags, "{}: uid {}", server.name, m.uid);
            assert_eq!(
                m.internaldate_timestamp(),
                internaldate_timestamp("07-Jul-2024 02:44:25 +0200"),
                "{}",
                server.name
            );
        }
        imap.logout().await;
    }
}

/// Documents the `\Recent` semantics `TestImap::recent_flags` relies on.
#[tokio::test(flavor = "multi_thread")]
async fn dovecot_recent_semantics() {
    let server = TestServer::dovecot_primary();
    server.require();
    let user = fresh_user("selftestrecent");
    let mut writer = TestImap::connect(&server, &user).await;
    let u1 = writer
        .append("INBOX", &[], None, b"Subject: r1\r\n\r\nx\r\n")
        .await
        .unwrap();
    let u2 = writer
        .append("INBOX", &["\\Seen"], None, b"Subject: r2\r\n\r\ny\r\n")
        .await
        .unwrap();

    // EXAMINE + FETCH BODY.PEEK[] (messages()) in other sessions take nothing.
    let mut witness = TestImap::connect(&server, &user).await;
    witness.messages("INBOX").await;
    witness.status("INBOX").await;
    writer.messages("INBOX").await;

    // The first SELECT anywhere gets \Recent ...
    let mut a = TestImap::connect(&server, &user).await;
    assert_eq!(a.recent_flags("INBOX").await, [(u1, true), (u2, true)]);
    // ... and it is gone for everyone afterwards, the same session included.
    assert_eq!(a.recent_flags("INBOX").await, [(u1, false), (u2, false)]);
    let mut b = TestImap::connect(&server, &user).await;
    assert_eq!(b.recent_flags("INBOX").await, [(u1, false), (u2, false)]);

    // A new arrival is recent again for the next SELECT.
    let u3 = writer
        .append("INBOX", &[], None, b"Subject: r3\r\n\r\nz\r\n")
        .await
        .unwrap();
    assert_eq!(
        b.recent_flags("INBOX").await,
        [(u1, false), (u2, false), (u3, true)]
    );
}

/// The proxy in front of the real Dovecot: APPENDs are counted exactly,
/// even when message bodies contain command-like lines, and a dropped
/// APPEND is neither forwarded nor stored.
#[tokio::test(flavor = "multi_thread")]
async fn dovecot_through_proxy_counts_and_drops_appends() {
    let server = TestServer::dovecot_primary();
    server.require();
    let proxy = Proxy::start(server.addr(), FaultPlan::None);
    let user = fresh_user("selftestproxy");
    let mut imap = TestImap::connect_addr(proxy.addr(), "via-proxy", &user).await;
    let tricky =
        b"Subject: tricky\r\n\r\na1 APPEND INBOX {3}\r\nx2 UID FETCH 1:* BODY[]\r\n{5+}\r\n"
            .to_vec();
    for i in 0..5 {
        let mut m = tricky.clone();
        m.extend(format!("n{i} APPEND Sent (\\Seen) {{10}}\r\n").bytes());
        imap.append("INBOX", &[], None, &m).await;
    }
    imap.append("INBOX", &[], None, &big_message(200_000)).await;
    assert_eq!(proxy.count("APPEND"), 6);
    assert_eq!(proxy.count("FETCH"), 0);
    assert_eq!(proxy.count("LOGIN"), 1);

    proxy.set_plan(FaultPlan::drop_on("APPEND", 2));
    imap.append("INBOX", &[], None, b"Subject: 7\r\n\r\n7\r\n")
        .await;
    let err = imap
        .try_append("INBOX", &[], None, b"Subject: 8\r\n\r\n8\r\n")
        .await
        .unwrap_err();
    assert!(err.contains("APPEND"), "{err}");
    assert_eq!(proxy.faults_fired(), 1);
    assert_eq!(proxy.count("APPEND"), 7);

    let mut direct = TestImap::connect(&server, &user).await;
    assert_eq!(direct.messages("INBOX").await.len(), 7);
    assert_eq!(proxy.connections(), 1);
}

// ------------------------------------------------------------ real Cyrus

#[tokio::test(flavor = "multi_thread")]
async fn cyrus_user_seed_and_read_back() {
    let server = TestServer::cyrus();
    server.require();
    let user = fresh_user("selftestcyrus");
    server.ensure_user(&user);
    server.ensure_user(&user); // idempotent
    let mut imap = TestImap::connect(&server, &user).await;
    imap.create("Données/Été").await;
    imap.create("Projects/R&D").await;
    let folders = imap.folders().await;
    for f in [
        "INBOX",
        "Données",
        "Données/Été",
        "Projects",
        "Projects/R&D",
    ] {
        assert!(
            folders.iter().any(|x| x == f),
            "{f} missing from {folders:?}"
        );
    }
    let body = b"Message-ID: <c1@test>\r\nSubject: c\r\n\r\ncyrus\r\n";
    let uid = imap
        .append(
            "Données/Été",
            &["\\Seen", "$Label1"],
            Some("17-Jul-2024 02:44:25 +0200"),
            body,
        )
        .await;
    let msgs = imap.messages("Données/Été").await;
    assert_eq!(msgs.len(), 1);
    if let Some(uid) = uid {
        assert_eq!(msgs[0].uid, uid);
    }
    assert_eq!(msgs[0].sha256, sha256_hex(body));
    assert_eq!(
        msgs[0].flags,
        BTreeSet::from(["\\Seen".into(), "$Label1".into()])
    );
    assert_eq!(
        msgs[0].internaldate_timestamp(),
        internaldate_timestamp("17-Jul-2024 02:44:25 +0200")
    );
    imap.logout().await;
}

// ------------------------------------------------------------ private Dovecot

/// A private Dovecot: a login works, SIGKILL takes every process of the instance down (the
/// port refuses connections) and nothing else, a restart on the same port serves the same
/// mail, a clean stop works too.
#[tokio::test]
async fn private_dovecot_survives_kill_and_restart_with_its_mail() {
    let dovecot = PrivateDovecot::start();
    let server = dovecot.server();
    let user = fresh_user("pvself");
    let mut imap = TestImap::connect(&server, &user).await;
    let body = b"Message-ID: <pv1@test>\r\nSubject: pv\r\n\r\nprivate\r\n";
    imap.append("INBOX", &["\\Seen"], None, body).await;
    let before = imap.messages("INBOX").await;
    let shared = TestServer::dovecot_primary();
    let shared_up = shared.is_reachable();

    dovecot.kill();
    assert!(dovecot.pids().is_empty(), "{:?}", dovecot.pids());
    assert!(
        !server.is_reachable(),
        "the port still answers after SIGKILL"
    );
    assert!(
        TestImap::try_connect(&server, &user).await.is_err(),
        "a login worked while the instance was killed"
    );
    // The shared servers are not ours: they are untouched.
    assert_eq!(shared.is_reachable(), shared_up);

    dovecot.restart();
    let mut imap = TestImap::connect(&server, &user).await;
    assert_eq!(imap.messages("INBOX").await, before);
    imap.logout().await;
    assert!(dovecot.mail_dir(&user).join("sdbox").is_dir());

    dovecot.stop();
    assert!(!dovecot.is_running() && dovecot.pids().is_empty());
    dovecot.restart();
    let mut imap = TestImap::connect(&server, &user).await;
    assert_eq!(imap.messages("INBOX").await, before);
    imap.logout().await;
}

// ------------------------------------------------------------ JMAP push proxy

/// A fake JMAP server for the proxy: a session at `/jmap` (account `A1`, its own event
/// source) and an API that echoes the request body.
async fn fake_jmap() -> HttpServer {
    HttpServer::start(
        |r: &HttpRequest| match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/jmap") => HttpReply::json(serde_json::json!({
                "apiUrl": "/jmap/",
                "eventSourceUrl": "/jmap/eventsource/?types={types}",
                "primaryAccounts": {"urn:ietf:params:jmap:mail": "A1"}
            })),
            ("POST", "/jmap/") => HttpReply::json(r.json()),
            _ => HttpReply::status(404, "{}"),
        },
    )
    .await
}

#[tokio::test]
async fn jmap_push_proxy_rewrites_the_session_forwards_and_streams_on_demand() {
    let upstream = fake_jmap().await;
    let proxy =
        JmapPushProxy::start(([127, 0, 0, 1], upstream.port()).into(), PushMode::Stream).await;
    let base = format!("http://127.0.0.1:{}", proxy.port());
    let http = reqwest::Client::new();

    let session: serde_json::Value = http
        .get(format!("{base}/jmap"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(
        session["eventSourceUrl"],
        format!("{base}/push/?types={{types}}&closeafter={{closeafter}}&ping={{ping}}")
    );
    assert_eq!(session["apiUrl"], "/jmap/");
    assert_eq!(proxy.account_id().as_deref(), Some("A1"));
    let seen = upstream.requests();
    assert!(seen[0].header("authorization").is_some(), "{seen:?}");

    let echoed: serde_json::Value = http
        .post(format!("{base}/jmap/"))
        .body(r#"{"methodCalls":[]}"#)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(echoed, serde_json::json!({"methodCalls": []}));
    assert_eq!(proxy.api_calls().len(), 1);

    let mut stream = http
        .get(format!("{base}/push/?types=Email&ping=30"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let first = timeout(Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("event: ping\r\n"));
    assert_eq!(proxy.open_streams(), 1);
    proxy.push_change();
    let mut rest = Vec::new();
    while let Some(chunk) = timeout(Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        rest.extend_from_slice(&chunk);
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains(
            "event: state\r\ndata: {\"@type\":\"StateChange\",\"changed\":{\"A1\":{\"Email\":\"pushed1\"}}}\r\n\r\n"
        ),
        "{rest}"
    );
    let gets = proxy.event_source_requests();
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].header("accept"), Some("text/event-stream"));
    // The stream was not forwarded; the session, the API call were.
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn jmap_push_proxy_answers_the_event_source_with_a_status() {
    let upstream = fake_jmap().await;
    for status in [500, 204] {
        let proxy = JmapPushProxy::start(
            ([127, 0, 0, 1], upstream.port()).into(),
            PushMode::Status(status),
        )
        .await;
        let answer = reqwest::get(format!("http://127.0.0.1:{}/push/", proxy.port()))
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status);
        let body = answer.bytes().await.unwrap();
        assert_eq!(body.is_empty(), status == 204, "{body:?}");
        assert_eq!(proxy.event_source_requests().len(), 1);
    }
}
