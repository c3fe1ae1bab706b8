//! `TestImap`: the tests' own small IMAP client (async-imap over plain TCP,
//! LOGIN user/test) used to seed and inspect accounts. It is the
//! independent witness and therefore never uses the mailreplica library.
//!
//! Conventions:
//! * Folder paths are UTF-8 with `/` between levels; each level is encoded
//!   to modified UTF-7 and joined with the server's delimiter.
//! * Helpers panic with a clear message (user, server, command, server
//!   reply); [`TestImap::run`] and the `try_*` variants return
//!   `Result<_, String>` for tests that expect failures.
//! * Every helper that opens a folder leaves it again with UNSELECT, so this
//!   session never holds a folder open while something else changes it (a
//!   session with the folder selected would be given `\Recent` for new
//!   arrivals).
//! * `\Recent` on Dovecot 2.3 (observed): the first session that SELECTs a
//!   folder after messages arrived is given `\Recent` for them and keeps
//!   reporting it while it stays selected; any later SELECT, by another
//!   session or by the same session again, reports them without `\Recent`.
//!   EXAMINE, STATUS and `UID FETCH ... BODY.PEEK[]` in an EXAMINEd folder
//!   neither take nor clear it. [`TestImap::messages`] therefore never
//!   disturbs it, while [`TestImap::set_flags`], [`TestImap::expunge_uids`]
//!   and [`TestImap::recent_flags`] (which SELECT) consume it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use async_imap::imap_proto::{
    AttributeValue, MailboxDatum, NameAttribute, RequestId, Response, ResponseCode, Status,
    StatusAttribute,
};
use async_imap::{Client, Session};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::mutf7;
use super::servers::{TestServer, PASSWORD, START_HINT};

/// Longest wait for any single server reply.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// One message as the server serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestMessage {
    pub uid: u32,
    /// Flags as spelled by the server, without `\Recent`.
    pub flags: BTreeSet<String>,
    /// INTERNALDATE exactly as served, e.g. `17-Jul-2024 02:44:25 +0200`.
    pub internaldate: String,
    pub size: u32,
    /// Lowercase hex SHA-256 of the exact `BODY[]` bytes.
    pub sha256: String,
    /// The Message-ID header value (unfolded, trimmed), if any.
    pub message_id: Option<String>,
}

/// One message for [`TestImap::append_batch`].
#[derive(Clone, Debug)]
pub struct ToAppend<'a> {
    /// e.g. `\Seen`, `$Forwarded`.
    pub flags: &'a [&'a str],
    /// `17-Jul-2024 02:44:25 +0200`; a one-digit day is padded.
    pub internaldate: Option<&'a str>,
    pub bytes: Vec<u8>,
}

impl ToAppend<'_> {
    /// `[(FLAGS) ]["DATE" ]{N+}`: one message's APPEND arguments with a non-synchronizing
    /// literal.
    fn arguments(&self) -> String {
        let mut s = String::new();
        if !self.flags.is_empty() {
            s.push_str(&format!("({}) ", self.flags.join(" ")));
        }
        if let Some(d) = self.internaldate {
            s.push_str(&format!("\"{}\" ", pad_date(d)));
        }
        s.push_str(&format!("{{{}+}}", self.bytes.len()));
        s
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A logged-in test session.
pub struct TestImap {
    session: Session<TcpStream>,
    label: String,
    /// `None` until asked; then the server's delimiter (`None` = flat).
    delimiter: Option<Option<String>>,
}

#[derive(Default)]
struct PartialMessage {
    uid: Option<u32>,
    flags: Option<BTreeSet<String>>,
    internaldate: Option<String>,
    size: Option<u32>,
    body: Option<Vec<u8>>,
}

impl TestImap {
    /// Connects to `server`'s plain IMAP port and logs in as `user` with the
    /// test password. Panics (with the start-the-servers hint when it cannot
    /// connect). On Cyrus, call `server.ensure_user(user)` first.
    pub async fn connect(server: &TestServer, user: &str) -> TestImap {
        Self::try_connect(server, user)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn try_connect(server: &TestServer, user: &str) -> Result<TestImap, String> {
        let label = format!("{user}@{}", server.name);
        let mut imap = Self::try_connect_addr(server.addr(), &label, user)
            .await
            .map_err(|e| {
                if server.is_cyrus() && e.contains("LOGIN") {
                    format!("{e} (did the test call TestServer::cyrus().ensure_user({user:?})?)")
                } else {
                    e
                }
            })?;
        imap.label = label;
        Ok(imap)
    }

    /// Like [`TestImap::connect`] but to any address (e.g. a test proxy);
    /// `label` only names the session in messages.
    pub async fn connect_addr(addr: SocketAddr, label: &str, user: &str) -> TestImap {
        Self::try_connect_addr(addr, label, user)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn try_connect_addr(
        addr: SocketAddr,
        label: &str,
        user: &str,
    ) -> Result<TestImap, String> {
        let stream = match timeout(Duration::from_secs(10), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(format!(
                    "{label}: cannot connect to {addr}: {e}; {START_HINT}"
                ))
            }
            Err(_) => {
                return Err(format!(
                    "{label}: connecting to {addr} timed out; {START_HINT}"
                ))
            }
        };
        let mut client = Client::new(stream);
        match timeout(IO_TIMEOUT, client.read_response()).await {
            Ok(Ok(Some(greeting))) => {
                if let Response::Data {
                    status: Status::Bye,
                    outcome,
                } = greeting.parsed()
                {
                    return Err(format!("{label}: server said BYE: {outcome:?}"));
                }
            }
            Ok(Ok(None)) => {
                return Err(format!(
                    "{label}: {addr} closed before the greeting; {START_HINT}"
                ))
            }
            Ok(Err(e)) => return Err(format!("{label}: reading the greeting from {addr}: {e}")),
            Err(_) => return Err(format!("{label}: no greeting from {addr}; {START_HINT}")),
        }
        let session = match timeout(IO_TIMEOUT, client.login(user, PASSWORD)).await {
            Ok(Ok(s)) => s,
            Ok(Err((e, _))) => return Err(format!("{label}: LOGIN {user} failed: {e}")),
            Err(_) => return Err(format!("{label}: LOGIN {user} timed out")),
        };
        let mut imap = TestImap {
            session,
            label: label.to_string(),
            delimiter: None,
        };
        imap.drain();
        Ok(imap)
    }

    /// `user@server`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Empties async-imap's bounded channel of unsolicited responses.
    fn drain(&mut self) {
        while self.session.unsolicited_responses.try_recv().is_ok() {}
    }

    async fn read_until_done<F>(
        &mut self,
        tag: &RequestId,
        cmd: &str,
        on: &mut F,
    ) -> Result<(), String>
    where
        F: FnMut(&Response<'_>),
    {
        loop {
            let resp = match timeout(IO_TIMEOUT, self.session.read_response()).await {
                Ok(Ok(Some(r))) => r,
                Ok(Ok(None)) => {
                    return Err(format!("{}: connection closed during {cmd}", self.label))
                }
                Ok(Err(e)) => return Err(format!("{}: {cmd}: {e}", self.label)),
                Err(_) => {
                    return Err(format!(
                        "{}: {cmd}: no reply within {IO_TIMEOUT:?}",
                        self.label
                    ))
                }
            };
            let parsed = resp.parsed();
            on(parsed);
            if let Response::Done {
                tag: t,
                status,
                outcome,
            } = parsed
            {
                if t == tag {
                    return match status {
                        Status::Ok => Ok(()),
                        _ => Err(format!(
                            "{}: {cmd} -> {status:?} {}{}",
                            self.label,
                            outcome
                                .code
                                .as_ref()
                                .map(|c| format!("[{c:?}] "))
                                .unwrap_or_default(),
                            outcome.information.as_deref().unwrap_or("")
                        )),
                    };
                }
            }
        }
    }

    /// Runs one tagged command (without tag or CRLF) and calls `on` for every
    /// response up to and including its tagged completion. `Err` (with the
    /// server's text) unless the completion is OK.
    pub async fn run<F>(&mut self, cmd: &str, mut on: F) -> Result<(), String>
    where
        F: FnMut(&Response<'_>),
    {
        let tag = match timeout(IO_TIMEOUT, self.session.run_command(cmd)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(format!("{}: sending {cmd}: {e}", self.label)),
            Err(_) => return Err(format!("{}: sending {cmd} timed out", self.label)),
        };
        let res = self.read_until_done(&tag, cmd, &mut on).await;
        self.drain();
        res
    }

    async fn run_ok(&mut self, cmd: &str) {
        if let Err(e) = self.run(cmd, |_| {}).await {
            panic!("{e}");
        }
    }

    /// The hierarchy delimiter (`LIST "" ""`, asked once); `None` if flat.
    pub async fn delimiter(&mut self) -> Option<String> {
        if let Some(d) = &self.delimiter {
            return d.clone();
        }
        let mut delim = None;
        let r = self
            .run("LIST \"\" \"\"", |r| {
                if let Response::MailboxData(MailboxDatum::List(l)) = r {
                    delim = l.delimiter.as_ref().map(|d| d.to_string());
                }
            })
            .await;
        if let Err(e) = r {
            panic!("{e}");
        }
        self.delimiter = Some(delim.clone());
        delim
    }

    /// The wire form (modified UTF-7, server delimiter, not yet quoted) of a
    /// `/`-separated UTF-8 folder path.
    pub async fn wire_name(&mut self, path: &str) -> String {
        let delim = self.delimiter().await;
        let parts: Vec<String> = path.split('/').map(mutf7::encode).collect();
        match delim {
            Some(d) => parts.join(&d),
            None => {
                assert!(
                    parts.len() == 1,
                    "{}: server is flat, cannot use {path:?}",
                    self.label
                );
                parts.into_iter().next().unwrap()
            }
        }
    }

    async fn mailbox_arg(&mut self, path: &str) -> String {
        quote(&self.wire_name(path).await)
    }

    async fn unselect(&mut self) {
        // Both Dovecot and Cyrus have UNSELECT; CLOSE would expunge.
        let _ = self.run("UNSELECT", |_| {}).await;
    }

    /// Creates the folder `path` and all its parents; "already exists" is
    /// not an error.
    pub async fn create(&mut self, path: &str) {
        if let Err(e) = self.try_create(path).await {
            panic!("{e}");
        }
    }

    pub async fn try_create(&mut self, path: &str) -> Result<(), String> {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..=parts.len() {
            let prefix = parts[..i].join("/");
            let arg = self.mailbox_arg(&prefix).await;
            if let Err(e) = self.run(&format!("CREATE {arg}"), |_| {}).await {
                let lower = e.to_ascii_lowercase();
                let exists = lower.contains("alreadyexists")
                    || lower.contains("already exists")
                    || lower.contains("mailbox exists");
                if !exists {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// All selectable folders (no `\Noselect`/`\NonExistent`), decoded to
    /// UTF-8 with `/` separators, sorted.
    pub async fn folders(&mut self) -> Vec<String> {
        let mut raw: Vec<(String, Option<String>)> = Vec::new();
        let r = self
            .run("LIST \"\" \"*\"", |r| {
                if let Response::MailboxData(MailboxDatum::List(l)) = r {
                    let unselectable = l.name_attributes.iter().any(|a| match a {
                        NameAttribute::NoSelect => true,
                        NameAttribute::Extension(s) => s.eq_ignore_ascii_case("\\NonExistent"),
                        _ => false,
                    });
                    if !unselectable {
                        raw.push((
                            l.name.to_string(),
                            l.delimiter.as_ref().map(|d| d.to_string()),
                        ));
                    }
                }
            })
            .await;
        if let Err(e) = r {
            panic!("{e}");
        }
        let mut out: Vec<String> = raw
            .into_iter()
            .map(|(name, delim)| {
                // imap-proto hands quoted strings over still escaped.
                let name = unescape_quoted(&name);
                let parts: Vec<&str> = match &delim {
                    Some(d) => name.split(d.as_str()).collect(),
                    None => vec![name.as_str()],
                };
                parts
                    .iter()
                    .map(|p| {
                        mutf7::decode(p).unwrap_or_else(|e| {
                            panic!("{}: LIST returned a bad name: {e}", self.label)
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        out.sort();
        out
    }

    /// APPENDs `bytes` to `path` with `flags` (e.g. `\Seen`, `$Forwarded`)
    /// and `internaldate` (`17-Jul-2024 02:44:25 +0200`; a one-digit day is
    /// padded). Returns the APPENDUID uid if the server sent one.
    pub async fn append(
        &mut self,
        path: &str,
        flags: &[&str],
        internaldate: Option<&str>,
        bytes: &[u8],
    ) -> Option<u32> {
        self.try_append(path, flags, internaldate, bytes)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn try_append(
        &mut self,
        path: &str,
        flags: &[&str],
        internaldate: Option<&str>,
        bytes: &[u8],
    ) -> Result<Option<u32>, String> {
        self.append_literal(path, flags, internaldate, bytes, false)
            .await
    }

    /// APPEND with a literal8 (`~{n}`, RFC 3516 BINARY): how a message with a NUL byte gets
    /// onto a server that refuses NUL in a plain literal (Cyrus).
    pub async fn append_binary(&mut self, path: &str, bytes: &[u8]) -> Option<u32> {
        self.append_literal(path, &[], None, bytes, true)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn append_literal(
        &mut self,
        path: &str,
        flags: &[&str],
        internaldate: Option<&str>,
        bytes: &[u8],
        binary: bool,
    ) -> Result<Option<u32>, String> {
        let mut cmd = format!("APPEND {}", self.mailbox_arg(path).await);
        if !flags.is_empty() {
            cmd.push_str(&format!(" ({})", flags.join(" ")));
        }
        if let Some(d) = internaldate {
            cmd.push_str(&format!(" \"{}\"", pad_date(d)));
        }
        let tilde = if binary { "~" } else { "" };
        cmd.push_str(&format!(" {tilde}{{{}}}", bytes.len()));

        let tag = match timeout(IO_TIMEOUT, self.session.run_command(&cmd)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(format!("{}: sending {cmd}: {e}", self.label)),
            Err(_) => return Err(format!("{}: sending {cmd} timed out", self.label)),
        };
        // Wait for the continuation (or an early tagged rejection).
        loop {
            let resp = match timeout(IO_TIMEOUT, self.session.read_response()).await {
                Ok(Ok(Some(r))) => r,
                Ok(Ok(None)) => {
                    return Err(format!("{}: connection closed during {cmd}", self.label))
                }
                Ok(Err(e)) => return Err(format!("{}: {cmd}: {e}", self.label)),
                Err(_) => return Err(format!("{}: {cmd}: no continuation", self.label)),
            };
            match resp.parsed() {
                Response::Continue(_) => break,
                Response::Done {
                    tag: t,
                    status,
                    outcome,
                } if *t == tag => {
                    return Err(format!(
                        "{}: {cmd} -> {status:?} {:?} {}",
                        self.label,
                        outcome.code,
                        outcome.information.as_deref().unwrap_or("")
                    ));
                }
                _ => {}
            }
        }
        let write = async {
            let s = self.session.get_mut();
            s.write_all(bytes).await?;
            s.write_all(b"\r\n").await?;
            s.flush().await
        };
        match timeout(IO_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("{}: writing APPEND literal: {e}", self.label)),
            Err(_) => return Err(format!("{}: writing APPEND literal timed out", self.label)),
        }
        let mut uid = None;
        let res = self
            .read_until_done(&tag, &cmd, &mut |r| {
                if let Response::Done {
                    tag: t, outcome, ..
                } = r
                {
                    if *t == tag {
                        if let Some(ResponseCode::AppendUid(_, set)) = &outcome.code {
                            uid = set.first().map(|m| match m {
                                async_imap::imap_proto::rfc4315::UidSetMember::Uid(u) => *u,
                                async_imap::imap_proto::rfc4315::UidSetMember::UidRange(r) => {
                                    *r.start()
                                }
                            });
                        }
                    }
                }
            })
            .await;
        self.drain();
        res.map(|()| uid)
    }

    /// The capabilities the server advertises now (CAPABILITY), as atoms
    /// (`IMAP4rev1`, `AUTH=PLAIN`, `LITERAL+`, ...).
    pub async fn capabilities(&mut self) -> Vec<String> {
        use async_imap::imap_proto::Capability;
        let mut out = Vec::new();
        let r = self
            .run("CAPABILITY", |r| {
                if let Response::Capabilities(caps) = r {
                    out.extend(caps.iter().map(|c| match c {
                        Capability::Imap4rev1 => "IMAP4rev1".to_string(),
                        Capability::Auth(a) => format!("AUTH={a}"),
                        Capability::Atom(a) => a.to_string(),
                    }));
                }
            })
            .await;
        if let Err(e) = r {
            panic!("{e}");
        }
        out
    }

    /// APPENDs many messages to `path` in few round trips: with MULTIAPPEND and LITERAL+,
    /// one command per 200 messages whose literals are all sent without waiting for a
    /// continuation (a thousand small messages in well under a second); without them, one
    /// [`TestImap::append`] each.
    pub async fn append_batch(&mut self, path: &str, messages: &[ToAppend<'_>]) {
        let caps = self.capabilities().await;
        let has = |c: &str| caps.iter().any(|x| x.eq_ignore_ascii_case(c));
        if !(has("MULTIAPPEND") && has("LITERAL+")) {
            for m in messages {
                self.append(path, m.flags, m.internaldate, &m.bytes).await;
            }
            return;
        }
        let arg = self.mailbox_arg(path).await;
        for chunk in messages.chunks(200) {
            // The first message's arguments end the command line; async-imap adds the tag
            // and the CRLF. The other messages and the final CRLF follow as raw bytes.
            let cmd = format!("APPEND {arg} {}", chunk[0].arguments());
            let tag = match timeout(IO_TIMEOUT, self.session.run_command(&cmd)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => panic!("{}: sending {cmd}: {e}", self.label),
                Err(_) => panic!("{}: sending {cmd} timed out", self.label),
            };
            let mut rest = chunk[0].bytes.clone();
            for m in &chunk[1..] {
                rest.push(b' ');
                rest.extend_from_slice(m.arguments().as_bytes());
                rest.extend_from_slice(b"\r\n");
                rest.extend_from_slice(&m.bytes);
            }
            rest.extend_from_slice(b"\r\n");
            let write = async {
                let s = self.session.get_mut();
                s.write_all(&rest).await?;
                s.flush().await
            };
            match timeout(IO_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("{}: writing the APPEND literals: {e}", self.label),
                Err(_) => panic!("{}: writing the APPEND literals timed out", self.label),
            }
            let what = format!("APPEND of {} messages to {path}", chunk.len());
            let res = self.read_until_done(&tag, &what, &mut |_| {}).await;
            self.drain();
            if let Err(e) = res {
                panic!("{e}");
            }
        }
    }

    /// Every message of `path` (EXAMINE + `UID FETCH 1:* (UID FLAGS
    /// INTERNALDATE RFC822.SIZE BODY.PEEK[])`), sorted by uid. Changes no
    /// flag, not even `\Recent`.
    pub async fn messages(&mut self, path: &str) -> Vec<TestMessage> {
        self.try_messages(path)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn try_messages(&mut self, path: &str) -> Result<Vec<TestMessage>, String> {
        let arg = self.mailbox_arg(path).await;
        let mut exists = 0;
        self.run(&format!("EXAMINE {arg}"), |r| {
            if let Response::MailboxData(MailboxDatum::Exists(n)) = r {
                exists = *n;
            }
        })
        .await?;
        let mut by_seq: BTreeMap<u32, PartialMessage> = BTreeMap::new();
        if exists > 0 {
            let fetched = self
                .run(
                    "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])",
                    |r| {
                        if let Response::Fetch(seq, attrs) = r {
                            let m = by_seq.entry(*seq).or_default();
                            for a in attrs {
                                match a {
                                    AttributeValue::Uid(u) => m.uid = Some(*u),
                                    AttributeValue::Flags(f) => {
                                        m.flags = Some(
                                            f.iter()
                                                .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                                                .map(|f| f.to_string())
                                                .collect(),
                                        )
                                    }
                                    AttributeValue::InternalDate(d) => {
                                        m.internaldate = Some(d.to_string())
                                    }
                                    AttributeValue::Rfc822Size(s) => m.size = Some(*s),
                                    AttributeValue::BodySection {
                                        section: None,
                                        data,
                                        ..
                                    } => {
                                        m.body = Some(data.as_deref().unwrap_or_default().to_vec())
                                    }
                                    AttributeValue::Rfc822(data) => {
                                        m.body = Some(data.as_deref().unwrap_or_default().to_vec())
                                    }
                                    _ => {}
                                }
                            }
                        }
                    },
                )
                .await;
            if let Err(e) = fetched {
                self.unselect().await;
                return Err(e);
            }
        }
        self.unselect().await;
        let mut out = Vec::with_capacity(by_seq.len());
        for (seq, m) in by_seq {
            let missing =
                |what: &str| format!("{}: {path}: FETCH for seq {seq} lacks {what}", self.label);
            let body = m.body.ok_or_else(|| missing("BODY[]"))?;
            out.push(TestMessage {
                uid: m.uid.ok_or_else(|| missing("UID"))?,
                flags: m.flags.ok_or_else(|| missing("FLAGS"))?,
                internaldate: m.internaldate.ok_or_else(|| missing("INTERNALDATE"))?,
                size: m.size.ok_or_else(|| missing("RFC822.SIZE"))?,
                sha256: sha256_hex(&body),
                message_id: header_value(&body, "Message-ID"),
            });
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    /// The raw `BODY[]` bytes of one message (EXAMINE, PEEK).
    pub async fn body(&mut self, path: &str, uid: u32) -> Vec<u8> {
        let arg = self.mailbox_arg(path).await;
        self.run_ok(&format!("EXAMINE {arg}")).await;
        let mut body = None;
        let r = self
            .run(&format!("UID FETCH {uid} (UID BODY.PEEK[])"), |r| {
                if let Response::Fetch(_, attrs) = r {
                    let is_it = attrs
                        .iter()
                        .any(|a| matches!(a, AttributeValue::Uid(u) if *u == uid));
                    for a in attrs {
                        if let AttributeValue::BodySection {
                            section: None,
                            data,
                            ..
                        } = a
                        {
                            if is_it {
                                body = Some(data.as_deref().unwrap_or_default().to_vec());
                            }
                        }
                    }
                }
            })
            .await;
        self.unselect().await;
        if let Err(e) = r {
            panic!("{e}");
        }
        body.unwrap_or_else(|| panic!("{}: {path}: no message with uid {uid}", self.label))
    }

    /// UIDVALIDITY, UIDNEXT and MESSAGES of `path` via STATUS (touches no flag).
    pub async fn status(&mut self, path: &str) -> (u32, u32, u32) {
        let arg = self.mailbox_arg(path).await;
        let (mut validity, mut next, mut count) = (None, None, None);
        let r = self
            .run(
                &format!("STATUS {arg} (UIDVALIDITY UIDNEXT MESSAGES)"),
                |r| {
                    if let Response::MailboxData(MailboxDatum::Status { status, .. }) = r {
                        for s in status {
                            match s {
                                StatusAttribute::UidValidity(v) => validity = Some(*v),
                                StatusAttribute::UidNext(v) => next = Some(*v),
                                StatusAttribute::Messages(v) => count = Some(*v),
                                _ => {}
                            }
                        }
                    }
                },
            )
            .await;
        if let Err(e) = r {
            panic!("{e}");
        }
        let label = &self.label;
        (
            validity.unwrap_or_else(|| panic!("{label}: {path}: STATUS lacks UIDVALIDITY")),
            next.unwrap_or_else(|| panic!("{label}: {path}: STATUS lacks UIDNEXT")),
            count.unwrap_or_else(|| panic!("{label}: {path}: STATUS lacks MESSAGES")),
        )
    }

    /// SELECTs `path` and adds/removes flags on one message (UID STORE
    /// +FLAGS.SILENT / -FLAGS.SILENT). Takes `\Recent` (see module docs).
    pub async fn set_flags(&mut self, path: &str, uid: u32, add: &[&str], remove: &[&str]) {
        let arg = self.mailbox_arg(path).await;
        self.run_ok(&format!("SELECT {arg}")).await;
        if !add.is_empty() {
            self.run_ok(&format!(
                "UID STORE {uid} +FLAGS.SILENT ({})",
                add.join(" ")
            ))
            .await;
        }
        if !remove.is_empty() {
            self.run_ok(&format!(
                "UID STORE {uid} -FLAGS.SILENT ({})",
                remove.join(" ")
            ))
            .await;
        }
        self.unselect().await;
    }

    /// SELECTs `path`, marks `uids` `\Deleted` and UID EXPUNGEs exactly them.
    pub async fn expunge_uids(&mut self, path: &str, uids: &[u32]) {
        if uids.is_empty() {
            return;
        }
        let set = uids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let arg = self.mailbox_arg(path).await;
        self.run_ok(&format!("SELECT {arg}")).await;
        self.run_ok(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
            .await;
        self.run_ok(&format!("UID EXPUNGE {set}")).await;
        self.unselect().await;
    }

    /// SELECTs `from` and moves `uids` to `to` with one UID MOVE, as a mail client does.
    pub async fn move_uids(&mut self, from: &str, uids: &[u32], to: &str) {
        let set = uids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let from_arg = self.mailbox_arg(from).await;
        let to_arg = self.mailbox_arg(to).await;
        self.run_ok(&format!("SELECT {from_arg}")).await;
        self.run_ok(&format!("UID MOVE {set} {to_arg}")).await;
        self.unselect().await;
    }

    /// DELETE `path` (only that folder, not its children).
    pub async fn delete_folder(&mut self, path: &str) {
        let arg = self.mailbox_arg(path).await;
        self.run_ok(&format!("DELETE {arg}")).await;
    }

    /// RENAME `from` to `to` (the server creates missing parents of `to`).
    pub async fn rename_folder(&mut self, from: &str, to: &str) {
        let a = self.mailbox_arg(from).await;
        let b = self.mailbox_arg(to).await;
        self.run_ok(&format!("RENAME {a} {b}")).await;
    }

    /// SELECTs `path` in THIS session and reports, per uid, whether the
    /// message carries `\Recent` here. A probe that consumes: see the module
    /// docs for the semantics.
    pub async fn recent_flags(&mut self, path: &str) -> Vec<(u32, bool)> {
        let arg = self.mailbox_arg(path).await;
        let mut exists = 0;
        let r = self
            .run(&format!("SELECT {arg}"), |r| {
                if let Response::MailboxData(MailboxDatum::Exists(n)) = r {
                    exists = *n;
                }
            })
            .await;
        if let Err(e) = r {
            panic!("{e}");
        }
        let mut out = Vec::new();
        if exists > 0 {
            let r = self
                .run("UID FETCH 1:* (UID FLAGS)", |r| {
                    if let Response::Fetch(_, attrs) = r {
                        let mut uid = None;
                        let mut recent = None;
                        for a in attrs {
                            match a {
                                AttributeValue::Uid(u) => uid = Some(*u),
                                AttributeValue::Flags(f) => {
                                    recent =
                                        Some(f.iter().any(|f| f.eq_ignore_ascii_case("\\Recent")))
                                }
                                _ => {}
                            }
                        }
                        if let (Some(u), Some(rc)) = (uid, recent) {
                            out.push((u, rc));
                        }
                    }
                })
                .await;
            if let Err(e) = r {
                panic!("{e}");
            }
        }
        self.unselect().await;
        out.sort();
        out.dedup_by_key(|(u, _)| *u);
        out
    }

    /// LOGOUT (errors ignored).
    pub async fn logout(mut self) {
        let _ = timeout(Duration::from_secs(10), self.session.logout()).await;
    }
}

/// Quotes an ASCII string for IMAP.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// imap-proto returns quoted strings with their escapes still in place
/// (atoms cannot contain a backslash, so this is safe for names).
fn unescape_quoted(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// IMAP date-time needs a two-character day: `7-Jul-2024` -> ` 7-Jul-2024`.
fn pad_date(d: &str) -> String {
    let d = d.trim();
    match d.find('-') {
        Some(1) => format!(" {d}"),
        _ => d.to_string(),
    }
}

/// The first header field `name` of an RFC 5322 message, unfolded and
/// trimmed.
pub fn header_value(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let mut found: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some(v) = found.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if found.is_some() || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim_end().eq_ignore_ascii_case(name) {
                found = Some(v.trim().to_string());
            }
        }
    }
    found.map(|v| v.trim().to_string())
}

/// Seconds since the epoch of an IMAP date-time (`17-Jul-2024 02:44:25
/// +0200`, day may be space-padded). Servers keep the instant of an
/// INTERNALDATE but not always its zone, so compare these.
pub fn internaldate_timestamp(d: &str) -> i64 {
    chrono::DateTime::parse_from_str(d.trim(), "%d-%b-%Y %H:%M:%S %z")
        .unwrap_or_else(|e| panic!("bad INTERNALDATE {d:?}: {e}"))
        .timestamp()
}

impl TestMessage {
    /// [`internaldate_timestamp`] of this message's INTERNALDATE.
    pub fn internaldate_timestamp(&self) -> i64 {
        internaldate_timestamp(&self.internaldate)
    }
}
