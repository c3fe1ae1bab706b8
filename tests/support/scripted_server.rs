//! `ScriptedServer`: a tiny IMAP server on 127.0.0.1 (random port) that
//! plays a fixed script, for protocol-edge tests (odd replies, hangs,
//! disconnects) that real servers cannot be made to produce.
//!
//! A [`Script`] is a greeting, an ordered list of [`Step`]s (expected
//! command + reply lines), "auto" replies usable at any time (CAPABILITY,
//! LOGIN, NOOP, LOGOUT, ...), and what to do once all steps are played
//! ([`After`]). Every connection plays the script from the start. In reply
//! lines `{tag}` becomes the tag of the client's command; each line is sent
//! followed by CRLF (embed `\r\n` in a line to send a literal, e.g.
//! `"* 1 FETCH (UID 7 BODY[] {5}\r\nhello)"`). Client literals are read
//! (synchronising ones get `+ OK`) and kept in [`ScriptedServer::received_raw`].
//! A command that matches neither the next step nor an auto reply gets
//! `{tag} BAD`, is recorded in [`ScriptedServer::errors`] and, while steps
//! remain, closes the connection. Runs on its own runtime like the proxy.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// What happens after a reply (or after the last step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Keep reading commands (after the last step: answer them from the auto
    /// replies, `{tag} BAD` otherwise).
    Continue,
    /// Close the connection.
    Close,
    /// Stop reading and never answer again, keeping the socket open.
    Hang,
    /// Send FIN (the client reads EOF) but keep reading: every later
    /// command is recorded (in `received`/`received_raw`), never answered.
    HalfClose,
}

/// One expected command and the reply to it.
#[derive(Clone, Debug)]
pub struct Step {
    /// Case-insensitive prefix of the command after its tag, matched at a
    /// word boundary: `LOGIN`, `UID FETCH`, `SELECT "INBOX"`; `*` = anything.
    pub expect: String,
    pub reply: Vec<Vec<u8>>,
    /// Send `reply` instead of the `+` continuation when the command has a
    /// synchronising literal (the client then does not send it).
    pub reject_literal: bool,
    /// Delay before replying.
    pub delay: Duration,
    pub after: After,
}

impl Step {
    pub fn new<L: AsRef<[u8]>>(expect: &str, reply: impl IntoIterator<Item = L>) -> Step {
        Step {
            expect: expect.to_string(),
            reply: reply.into_iter().map(|l| l.as_ref().to_vec()).collect(),
            reject_literal: false,
            delay: Duration::ZERO,
            after: After::Continue,
        }
    }

    pub fn then(mut self, after: After) -> Step {
        self.after = after;
        self
    }

    pub fn rejecting_literal(mut self) -> Step {
        self.reject_literal = true;
        self
    }

    pub fn delayed(mut self, d: Duration) -> Step {
        self.delay = d;
        self
    }

    /// `CAPABILITY` -> `* CAPABILITY caps` + OK.
    pub fn capability(caps: &str) -> Step {
        Step::new(
            "CAPABILITY",
            [
                format!("* CAPABILITY {caps}"),
                "{tag} OK CAPABILITY completed".to_string(),
            ],
        )
    }

    /// `LOGIN` -> OK.
    pub fn login_ok() -> Step {
        Step::new("LOGIN", ["{tag} OK LOGIN completed"])
    }

    /// `LOGIN` -> OK with a `[CAPABILITY ...]` code.
    pub fn login_ok_with_caps(caps: &str) -> Step {
        Step::new(
            "LOGIN",
            [format!("{{tag}} OK [CAPABILITY {caps}] Logged in")],
        )
    }

    /// `NOOP` -> OK.
    pub fn noop() -> Step {
        Step::new("NOOP", ["{tag} OK NOOP completed"])
    }

    /// `LOGOUT` -> BYE + OK, then close.
    pub fn logout() -> Step {
        Step::new(
            "LOGOUT",
            [
                "* BYE scripted server logging out",
                "{tag} OK LOGOUT completed",
            ],
        )
        .then(After::Close)
    }

    /// A `{tag} OK` reply to `expect`.
    pub fn ok(expect: &str) -> Step {
        Step::new(expect, [format!("{{tag}} OK {expect} completed")])
    }

    fn matches(&self, command: &str) -> bool {
        let p = self.expect.trim();
        if p == "*" {
            return true;
        }
        let c = command.as_bytes();
        let p = p.as_bytes();
        c.len() >= p.len()
            && c[..p.len()].eq_ignore_ascii_case(p)
            && c.get(p.len())
                .is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-'))
    }
}

/// Default capabilities of [`Script::standard`].
pub const STANDARD_CAPS: &str = "IMAP4rev1 LITERAL+ UIDPLUS MOVE IDLE";

/// A whole script.
#[derive(Clone, Debug)]
pub struct Script {
    /// Greeting line (without CRLF); `None` sends nothing.
    pub greeting: Option<Vec<u8>>,
    pub steps: Vec<Step>,
    /// Replies usable at any time, tried after the next step.
    pub auto: Vec<Step>,
    /// What to do once every step is played.
    pub end: After,
}

impl Script {
    /// Greeting only; no steps, no auto replies; closes at the end.
    pub fn new(greeting: &str) -> Script {
        Script {
            greeting: Some(greeting.as_bytes().to_vec()),
            steps: Vec::new(),
            auto: Vec::new(),
            end: After::Close,
        }
    }

    /// Greeting with `[CAPABILITY caps]`, auto CAPABILITY / LOGIN / NOOP /
    /// LOGOUT, closes once the steps are played.
    pub fn with_caps(caps: &str) -> Script {
        Script::new(&format!("* OK [CAPABILITY {caps}] scripted server ready"))
            .auto(Step::capability(caps))
            .auto(Step::login_ok())
            .auto(Step::noop())
            .auto(Step::logout())
    }

    /// [`Script::with_caps`] with [`STANDARD_CAPS`].
    pub fn standard() -> Script {
        Script::with_caps(STANDARD_CAPS)
    }

    /// Sends no greeting at all.
    pub fn no_greeting(mut self) -> Script {
        self.greeting = None;
        self
    }

    pub fn step(mut self, step: Step) -> Script {
        self.steps.push(step);
        self
    }

    /// Shorthand for `step(Step::new(expect, reply))`.
    pub fn expect<L: AsRef<[u8]>>(
        self,
        expect: &str,
        reply: impl IntoIterator<Item = L>,
    ) -> Script {
        self.step(Step::new(expect, reply))
    }

    pub fn auto(mut self, step: Step) -> Script {
        self.auto.push(step);
        self
    }

    pub fn end(mut self, end: After) -> Script {
        self.end = end;
        self
    }
}

#[derive(Default)]
struct Record {
    connections: usize,
    received: Vec<(usize, String)>,
    raw: Vec<(usize, Vec<u8>)>,
    errors: Vec<String>,
    finished: usize,
}

/// A running scripted server; dropping it closes everything.
pub struct ScriptedServer {
    addr: SocketAddr,
    record: Arc<Mutex<Record>>,
    runtime: Option<Runtime>,
}

fn lock(m: &Mutex<Record>) -> MutexGuard<'_, Record> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ScriptedServer {
    pub fn start(script: Script) -> ScriptedServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("scripted-imap")
            .enable_all()
            .build()
            .expect("building the scripted server runtime");
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding the scripted server");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let rec = record.clone();
        let script = Arc::new(script);
        runtime.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("scripted listener");
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let conn = {
                    let mut r = lock(&rec);
                    r.connections += 1;
                    r.connections
                };
                let (rec, script) = (rec.clone(), script.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, conn, &script, &rec).await;
                    lock(&rec).finished += 1;
                });
            }
        });
        ScriptedServer {
            addr,
            record,
            runtime: Some(runtime),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `imap://USER@127.0.0.1:PORT`
    pub fn url(&self, user: &str) -> String {
        format!("imap://{user}@{}:{}", self.addr.ip(), self.addr.port())
    }

    /// First line (without CRLF, with tag) of every command received, over
    /// all connections in arrival order.
    pub fn received(&self) -> Vec<String> {
        lock(&self.record)
            .received
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Like [`ScriptedServer::received`] for one connection (from 1).
    pub fn received_on(&self, conn: usize) -> Vec<String> {
        lock(&self.record)
            .received
            .iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Every command's full bytes (all lines and literal data).
    pub fn received_raw(&self) -> Vec<Vec<u8>> {
        lock(&self.record)
            .raw
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Commands that matched nothing in the script.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.record).errors.clone()
    }

    pub fn connections(&self) -> usize {
        lock(&self.record).connections
    }

    /// Connections whose handling has ended (closed by either side).
    pub fn finished_connections(&self) -> usize {
        lock(&self.record).finished
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn substitute(line: &[u8], tag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 8);
    let mut i = 0;
    while i < line.len() {
        if line[i..].starts_with(b"{tag}") {
            out.extend_from_slice(tag.as_bytes());
            i += 5;
        } else {
            out.push(line[i]);
            i += 1;
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// N and whether it is synchronising, if the line ends in a literal marker.
fn literal(line: &[u8]) -> Option<(usize, bool)> {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    let inner = &l[open + 1..];
    let (digits, sync) = match inner.last() {
        Some(b'+') | Some(b'-') => (&inner[..inner.len() - 1], false),
        _ => (inner, true),
    };
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, sync))
}

async fn hang() -> std::io::Result<()> {
    std::future::pending::<()>().await;
    Ok(())
}

async fn serve(
    sock: TcpStream,
    conn: usize,
    script: &Script,
    rec: &Mutex<Record>,
) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    if let Some(g) = &script.greeting {
        wr.write_all(&substitute(g, "*")).await?;
    }
    let mut next = 0;
    loop {
        if next == script.steps.len() {
            match script.end {
                After::Close => return close(rd, wr).await,
                After::Hang => return hang().await,
                After::HalfClose => return half_close(rd, wr, conn, rec).await,
                After::Continue => {}
            }
        }
        let mut first = Vec::new();
        if rd.read_until(b'\n', &mut first).await? == 0 {
            return Ok(());
        }
        let first_text = String::from_utf8_lossy(&first)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        let (tag, rest) = first_text
            .split_once(' ')
            .unwrap_or((first_text.as_str(), ""));
        let tag = tag.to_string();
        let rest = rest.to_string();
        lock(rec).received.push((conn, first_text.clone()));

        let chosen: Option<(Step, bool)> = match script.steps.get(next) {
            Some(s) if s.matches(&rest) => Some((s.clone(), true)),
            _ => script
                .auto
                .iter()
                .find(|s| s.matches(&rest))
                .map(|s| (s.clone(), false)),
        };

        // Read the rest of the command (literals and continuation lines).
        let mut raw = first.clone();
        let mut line = first;
        while let Some((n, sync)) = literal(&line) {
            if sync {
                if chosen.as_ref().is_some_and(|(s, _)| s.reject_literal) {
                    break;
                }
                wr.write_all(b"+ OK\r\n").await?;
            }
            let mut data = vec![0u8; n];
            rd.read_exact(&mut data).await?;
            raw.extend_from_slice(&data);
            line = Vec::new();
            if rd.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            raw.extend_from_slice(&line);
        }
        lock(rec).raw.push((conn, raw));

        let Some((step, is_step)) = chosen else {
            let expected = script
                .steps
                .get(next)
                .map(|s| s.expect.clone())
                .unwrap_or_else(|| "(script finished)".to_string());
            lock(rec).errors.push(format!(
                "conn {conn}: expected {expected:?}, got {first_text:?}"
            ));
            wr.write_all(&substitute(
                b"{tag} BAD scripted server did not expect this",
                &tag,
            ))
            .await?;
            if next < script.steps.len() {
                return close(rd, wr).await;
            }
            continue;
        };
        if is_step {
            next += 1;
        }
        if !step.delay.is_zero() {
            tokio::time::sleep(step.delay).await;
        }
        let mut out = Vec::new();
        for l in &step.reply {
            out.extend(substitute(l, &tag));
        }
        wr.write_all(&out).await?;
        wr.flush().await?;
        match step.after {
            After::Continue => {}
            After::Close => return close(rd, wr).await,
            After::Hang => return hang().await,
            After::HalfClose => return half_close(rd, wr, conn, rec).await,
        }
    }
}

/// Sends FIN, then records every line the client still sends until it
/// closes its side (nothing is answered).
async fn half_close(
    mut rd: BufReader<OwnedReadHalf>,
    mut wr: OwnedWriteHalf,
    conn: usize,
    rec: &Mutex<Record>,
) -> std::io::Result<()> {
    wr.flush().await?;
    let _ = wr.shutdown().await;
    loop {
        let mut line = Vec::new();
        if rd.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        let mut r = lock(rec);
        r.received.push((conn, text));
        r.raw.push((conn, line));
    }
}

/// Closes gracefully: FIN first, then discard what the client still sends
/// (briefly), so the client reads our last reply instead of a reset.
async fn close(mut rd: BufReader<OwnedReadHalf>, mut wr: OwnedWriteHalf) -> std::io::Result<()> {
    wr.flush().await?;
    let _ = wr.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = rd.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(())
}
