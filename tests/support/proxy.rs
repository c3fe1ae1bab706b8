//! `Proxy`: a TCP proxy in front of a server for fault injection and for
//! counting the IMAP commands a client sends (literal-aware).
//!
//! The proxy runs on its own small tokio runtime, so it works from sync
//! tests, `#[tokio::test]` (either flavor) and while the test blocks on a
//! child process. Dropping the `Proxy` closes the listener and every
//! connection.
//!
//! Command parsing: a client line ending in `{N}`, `{N+}` or `{N-}` is
//! followed by N literal bytes that are not parsed; after the literal the
//! same command continues on the next line. A command is a line of the
//! form `TAG SP VERB ...` at command start; its verb is the word after the
//! tag, or after `UID ` (then `uid` is set). Lines without a space (IDLE's
//! `DONE`, SASL responses) are not commands. After `STARTTLS` or
//! `COMPRESS`, or when a connection starts with a TLS record, the rest of
//! that connection is passed through unparsed, so counting only works on
//! plain, uncompressed IMAP.
//!
//! Faults fire once and disarm (the plan becomes `FaultPlan::None`) unless
//! set with [`Proxy::set_plan_always`] (for `DropRandomly`: on every
//! connection, each with its own threshold). `nth` counts matching commands over
//! all connections since the plan was set. Commands the proxy refused to
//! forward (the one that triggered a drop or stall) are not in
//! [`Proxy::commands`]/[`Proxy::count`] but in [`Proxy::faulted_commands`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// What the proxy does to the traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultPlan {
    /// Forward everything.
    None,
    /// Close both directions of a connection once this many bytes have
    /// flowed server->client on it (exactly that many are forwarded).
    DropAfterServerBytes(usize),
    /// Close the connection when the client sends the nth (1-based) command
    /// with this verb (`APPEND`, `FETCH`, or `UID FETCH` for the UID form
    /// only), before forwarding it.
    DropOnCommand { verb: String, nth: usize },
    /// Like `DropOnCommand` but stop forwarding in both directions and keep
    /// both sockets open (until the proxy is dropped or
    /// [`Proxy::close_connections`]).
    StallOnCommand { verb: String, nth: usize },
    /// Close both directions of a connection once a random number of bytes
    /// has flowed on it, both directions counted (exactly that many are
    /// forwarded, so the cut can fall inside a line or a literal). Each
    /// connection draws its own threshold from an exponential distribution
    /// of mean `mean_bytes`, with a generator seeded from `seed` and the
    /// connection number (deterministic for the same accept order), when
    /// its first bytes flow under this plan. Bytes that flowed before the
    /// plan was set do not count. Drawing per connection approximates
    /// "never twice within one command": a command retried on a new
    /// connection gets a new threshold. The command being cut is recorded
    /// as forwarded. See [`random_drop_threshold`].
    DropRandomly { mean_bytes: u64, seed: u64 },
    /// Answer the nth (1-based) command with this verb with `TAG NO <answer>` (e.g.
    /// `[THROTTLED] slow down`) without the server carrying it out: the command is forwarded
    /// with its first argument (the mailbox) replaced by one that does not exist, so the
    /// server reads any literal and refuses, and the server's tagged answer is replaced by
    /// this one. The command is not in [`Proxy::commands`] but in
    /// [`Proxy::faulted_commands`].
    RefuseCommand {
        verb: String,
        nth: usize,
        answer: String,
    },
}

impl FaultPlan {
    pub fn drop_on(verb: &str, nth: usize) -> FaultPlan {
        FaultPlan::DropOnCommand {
            verb: verb.to_string(),
            nth,
        }
    }

    pub fn refuse(verb: &str, nth: usize, answer: &str) -> FaultPlan {
        FaultPlan::RefuseCommand {
            verb: verb.to_string(),
            nth,
            answer: answer.to_string(),
        }
    }

    pub fn stall_on(verb: &str, nth: usize) -> FaultPlan {
        FaultPlan::StallOnCommand {
            verb: verb.to_string(),
            nth,
        }
    }
}

/// One client command seen by the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyCommand {
    /// Connection number, from 1, in accept order.
    pub conn: usize,
    pub tag: String,
    /// Upper-cased verb, without a `UID ` prefix.
    pub verb: String,
    /// Whether the command was `TAG UID VERB ...`.
    pub uid: bool,
    /// The first line without CRLF (literal data is never included).
    pub line: String,
    /// The size of each literal the command carried, in order (an APPEND's messages: one, or
    /// one per message of a MULTIAPPEND).
    pub literals: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    Running,
    Stalled,
    Closed,
}

struct Shared {
    plan: FaultPlan,
    always: bool,
    matched: usize,
    fired: usize,
    commands: Vec<ProxyCommand>,
    faulted: Vec<ProxyCommand>,
    connections: usize,
    states: Vec<watch::Sender<ConnState>>,
    server_bytes: u64,
    client_bytes: u64,
    /// Per connection (index conn - 1): bytes forwarded in both directions.
    flowed: Vec<u64>,
    /// Per connection: the `DropRandomly` limit (on `flowed`), once drawn.
    limits: Vec<Option<u64>>,
    /// Capability atoms removed from the server's CAPABILITY lists (see
    /// [`Proxy::hide_capability`]).
    hidden: Vec<String>,
    /// Capability atoms added to them (see [`Proxy::add_capability`]).
    added: Vec<String>,
    /// Tagged answers to replace (see `FaultPlan::RefuseCommand`): (connection, tag, answer).
    refusing: Vec<(usize, String, String)>,
    /// Per connection: where its latest command was recorded (faulted, index), so that the
    /// literals of its continuation lines count for it.
    latest: HashMap<usize, (bool, usize)>,
}

impl Shared {
    fn record(&mut self, cmd: ProxyCommand, faulted: bool) {
        let list = if faulted {
            &mut self.faulted
        } else {
            &mut self.commands
        };
        self.latest.insert(cmd.conn, (faulted, list.len()));
        list.push(cmd);
    }

    /// One more literal for the connection's latest command.
    fn count_literal(&mut self, conn: usize, size: usize) {
        let Some(&(faulted, i)) = self.latest.get(&conn) else {
            return;
        };
        let list = if faulted {
            &mut self.faulted
        } else {
            &mut self.commands
        };
        if let Some(cmd) = list.get_mut(i) {
            cmd.literals.push(size);
        }
    }

    fn arm(&mut self, plan: FaultPlan, always: bool) {
        self.plan = plan;
        self.always = always;
        self.matched = 0;
        // Thresholds are drawn again under the new plan, from the bytes flowed so far.
        self.limits.iter_mut().for_each(|l| *l = None);
    }

    /// How many of the `n` bytes about to flow (either direction) on
    /// connection `conn` may be forwarded, and whether the connection is to
    /// be closed after them. Counts the allowed bytes as flowed.
    fn budget(&mut self, conn: usize, n: usize) -> (usize, bool) {
        let i = conn - 1;
        let flowed = self.flowed[i];
        let FaultPlan::DropRandomly { mean_bytes, seed } = self.plan else {
            self.flowed[i] += n as u64;
            return (n, false);
        };
        let limit = *self.limits[i].get_or_insert_with(|| {
            flowed.saturating_add(random_drop_threshold(seed, conn, mean_bytes))
        });
        if flowed >= limit {
            // Already cut (the other direction got there first).
            return (0, true);
        }
        if flowed + n as u64 >= limit {
            let allowed = limit.saturating_sub(flowed) as usize;
            self.flowed[i] += allowed as u64;
            self.fire();
            (allowed, true)
        } else {
            self.flowed[i] += n as u64;
            (n, false)
        }
    }
    fn fire(&mut self) {
        self.fired += 1;
        if !self.always {
            self.plan = FaultPlan::None;
        }
    }
}

/// A draw (at least 1) from the exponential distribution of mean `mean`,
/// determined by `seed` and the connection number (splitmix64, inverse CDF).
pub fn random_drop_threshold(seed: u64, conn: usize, mean: u64) -> u64 {
    let mut z = seed ^ (conn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // Uniform in (0, 1].
    let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    ((-u.ln() * mean as f64) as u64).max(1)
}

/// Whether `pattern` (`FETCH`, or `UID FETCH` for the UID form only) names
/// this command.
fn verb_matches(pattern: &str, verb: &str, uid: bool) -> bool {
    let p = pattern.trim().to_ascii_uppercase();
    match p.strip_prefix("UID ") {
        Some(rest) => uid && rest.trim() == verb,
        None => p == verb,
    }
}

/// A running proxy; see the module docs.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    runtime: Option<Runtime>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 (random port) forwarding every accepted
    /// connection to `upstream`, with `plan` armed once.
    pub fn start(upstream: SocketAddr, plan: FaultPlan) -> Proxy {
        Self::start_on(0, upstream, plan)
    }

    /// Like [`Proxy::start`] on a chosen port (0: any), e.g. to bring a "server" back on
    /// the port a dropped proxy had.
    pub fn start_on(port: u16, upstream: SocketAddr, plan: FaultPlan) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-proxy")
            .enable_all()
            .build()
            .expect("building the proxy runtime");
        // A dropped proxy's listener closes a moment later (its runtime shuts down in the
        // background): rebinding its port waits for that, a few seconds at most.
        let mut tries = 0;
        let std_listener = loop {
            match std::net::TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if port != 0 && e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("binding the proxy listener on port {port}: {e}"),
            }
        };
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared {
            plan,
            always: false,
            matched: 0,
            fired: 0,
            commands: Vec::new(),
            faulted: Vec::new(),
            connections: 0,
            states: Vec::new(),
            server_bytes: 0,
            client_bytes: 0,
            flowed: Vec::new(),
            limits: Vec::new(),
            hidden: Vec::new(),
            added: Vec::new(),
            refusing: Vec::new(),
            latest: HashMap::new(),
        }));
        let sh = shared.clone();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("proxy listener");
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (tx, _) = watch::channel(ConnState::Running);
                let conn = {
                    let mut s = lock(&sh);
                    s.connections += 1;
                    s.states.push(tx.clone());
                    s.flowed.push(0);
                    s.limits.push(None);
                    s.connections
                };
                tokio::spawn(handle_conn(client, upstream, conn, sh.clone(), tx));
            }
        });
        Proxy {
            addr,
            upstream,
            shared,
            runtime: Some(runtime),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `imap://USER@127.0.0.1:PROXYPORT`
    pub fn url(&self, user: &str) -> String {
        format!("imap://{user}@{}:{}", self.addr.ip(), self.addr.port())
    }

    /// Replaces the plan (fires once, then disarms) and restarts `nth`
    /// counting.
    pub fn set_plan(&self, plan: FaultPlan) {
        lock(&self.shared).arm(plan, false);
    }

    /// Replaces the plan; it keeps firing: `DropAfterServerBytes` and
    /// `DropRandomly` on every connection, command faults on the nth and
    /// every later match.
    pub fn set_plan_always(&self, plan: FaultPlan) {
        lock(&self.shared).arm(plan, true);
    }

    /// The plan now in force (`None` once a one-shot fault has fired).
    pub fn plan(&self) -> FaultPlan {
        lock(&self.shared).plan.clone()
    }

    /// How many times a fault fired.
    pub fn faults_fired(&self) -> usize {
        lock(&self.shared).fired
    }

    /// Waits (blocking, polling) until at least `n` faults fired.
    pub fn wait_faults_fired(&self, n: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.faults_fired() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.faults_fired() >= n
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.shared).connections
    }

    /// Forwarded commands whose verb matches (`APPEND`; `FETCH` counts both
    /// `FETCH` and `UID FETCH`; `UID FETCH` only the latter),
    /// case-insensitive.
    pub fn count(&self, verb: &str) -> usize {
        lock(&self.shared)
            .commands
            .iter()
            .filter(|c| verb_matches(verb, &c.verb, c.uid))
            .count()
    }

    /// Messages sent in forwarded APPEND commands (one per APPEND, or one per message of a
    /// MULTIAPPEND): what the server was asked to store.
    pub fn appended(&self) -> usize {
        lock(&self.shared)
            .commands
            .iter()
            .filter(|c| c.verb == "APPEND")
            .map(|c| c.literals.len())
            .sum()
    }

    /// First line of every forwarded command, in order, over all connections.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.shared)
            .commands
            .iter()
            .map(|c| c.line.clone())
            .collect()
    }

    /// Every forwarded command with its connection, tag and verb.
    pub fn commands_detailed(&self) -> Vec<ProxyCommand> {
        lock(&self.shared).commands.clone()
    }

    /// The commands that triggered a drop or stall (not forwarded).
    pub fn faulted_commands(&self) -> Vec<ProxyCommand> {
        lock(&self.shared).faulted.clone()
    }

    /// Forgets recorded commands (and byte totals); keeps the plan.
    pub fn reset_counts(&self) {
        let mut s = lock(&self.shared);
        s.commands.clear();
        s.faulted.clear();
        s.latest.clear();
        s.server_bytes = 0;
        s.client_bytes = 0;
    }

    /// Total bytes forwarded server->client and client->server.
    pub fn bytes(&self) -> (u64, u64) {
        let s = lock(&self.shared);
        (s.server_bytes, s.client_bytes)
    }

    /// Removes the capability atom `cap` (e.g. `BINARY`) from every chunk of
    /// server bytes that holds a CAPABILITY list, so the client thinks the
    /// server lacks it (the server still has it). Only for tests whose
    /// messages do not contain the word `CAPABILITY`.
    pub fn hide_capability(&self, cap: &str) {
        lock(&self.shared).hidden.push(cap.to_ascii_uppercase());
    }

    /// Adds the capability atom `cap` (e.g. `APPENDLIMIT=2000`) after `IMAP4rev1` in every
    /// CAPABILITY list, the same way (the server knows nothing of it).
    pub fn add_capability(&self, cap: &str) {
        lock(&self.shared).added.push(cap.to_ascii_uppercase());
    }

    /// Closes every open connection now (stalled ones too); new ones are
    /// still accepted.
    pub fn close_connections(&self) {
        for tx in &lock(&self.shared).states {
            tx.send_replace(ConnState::Closed);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn handle_conn(
    client: TcpStream,
    upstream: SocketAddr,
    conn: usize,
    shared: Arc<Mutex<Shared>>,
    state: watch::Sender<ConnState>,
) {
    let server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(_) => return, // dropping `client` closes it
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (crd, cwr) = client.into_split();
    let (srd, swr) = server.into_split();
    tokio::join!(
        client_to_server(crd, swr, conn, shared.clone(), state.clone()),
        server_to_client(srd, cwr, conn, shared, state.clone()),
    );
}

/// Resolves once the connection leaves `Running` (the watch guard is
/// released before returning).
async fn until_not_running(rx: &mut watch::Receiver<ConnState>) {
    let _ = rx.wait_for(|s| *s != ConnState::Running).await;
}

/// Holds the sockets (of a stalled connection) until it is closed or the
/// proxy goes away.
async fn park(rx: &mut watch::Receiver<ConnState>) {
    let _ = rx.wait_for(|s| *s == ConnState::Closed).await;
}

async fn client_to_server(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    conn: usize,
    shared: Arc<Mutex<Shared>>,
    state: watch::Sender<ConnState>,
) {
    let mut rx = state.subscribe();
    let mut parser = CommandParser::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = wr.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            () = until_not_running(&mut rx) => {
                park(&mut rx).await;
                return;
            }
        };
        for piece in parser.feed(&buf[..n]) {
            let bytes = match piece {
                Piece::Bytes(b) => b,
                Piece::MoreLiteral(size) => {
                    lock(&shared).count_literal(conn, size);
                    continue;
                }
                Piece::Command(bytes, info) => {
                    let info = ProxyCommand { conn, ..info };
                    if let Some(edited) = refuse_command(&shared, &info, &bytes) {
                        if wr.write_all(&edited).await.is_err() {
                            state.send_replace(ConnState::Closed);
                            return;
                        }
                        continue;
                    }
                    if let Some(action) = record_command(&shared, info) {
                        state.send_replace(action);
                        if action == ConnState::Stalled {
                            park(&mut rx).await;
                        }
                        return;
                    }
                    bytes
                }
            };
            let (forward, close) = lock(&shared).budget(conn, bytes.len());
            if forward > 0 {
                if wr.write_all(&bytes[..forward]).await.is_err() {
                    state.send_replace(ConnState::Closed);
                    return;
                }
                lock(&shared).client_bytes += forward as u64;
            }
            if close {
                let _ = wr.flush().await;
                state.send_replace(ConnState::Closed);
                return;
            }
        }
    }
}

/// When the plan refuses this command: records it as faulted, arms the
/// replacement of its tagged answer and returns the line to forward instead
/// (its first argument replaced by a mailbox that does not exist).
fn refuse_command(shared: &Mutex<Shared>, cmd: &ProxyCommand, line: &[u8]) -> Option<Vec<u8>> {
    let mut s = lock(shared);
    let FaultPlan::RefuseCommand { verb, nth, answer } = &s.plan else {
        return None;
    };
    if !verb_matches(verb, &cmd.verb, cmd.uid) {
        return None;
    }
    let (nth, answer) = (*nth, answer.clone());
    s.matched += 1;
    let hit = if s.always {
        s.matched >= nth
    } else {
        s.matched == nth
    };
    if !hit {
        return None;
    }
    let edited = without_first_argument(line, cmd)?;
    s.fire();
    s.record(cmd.clone(), true);
    s.refusing.push((cmd.conn, cmd.tag.clone(), answer));
    Some(edited)
}

/// `TAG [UID] VERB ARG REST` with ARG (an atom or a quoted string) replaced by a
/// mailbox name no server has; `None` when ARG is neither.
fn without_first_argument(line: &[u8], cmd: &ProxyCommand) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(line).ok()?;
    let prefix_len = cmd.tag.len() + 1 + if cmd.uid { 4 } else { 0 } + cmd.verb.len() + 1;
    let rest = text.get(prefix_len..)?;
    let arg_len = if let Some(quoted) = rest.strip_prefix('"') {
        let mut escaped = false;
        let end = quoted.char_indices().find(|&(_, c)| {
            let close = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            close
        })?;
        end.0 + 2
    } else {
        rest.find([' ', '\r', '\n']).unwrap_or(rest.len())
    };
    if arg_len == 0 || rest.starts_with('{') {
        return None;
    }
    let mut out = text.as_bytes()[..prefix_len].to_vec();
    out.extend_from_slice(b"\"mailreplica-proxy-refused\"");
    out.extend_from_slice(&rest.as_bytes()[arg_len..]);
    Some(out)
}

/// Lines of server bytes with the tagged answers the proxy refuses replaced (see
/// `FaultPlan::RefuseCommand`); a partial line stays in `held`.
fn replace_refused_answers(shared: &Mutex<Shared>, conn: usize, held: &mut Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(held.len());
    let mut s = lock(shared);
    while let Some(end) = held.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = held.drain(..=end).collect();
        let text = String::from_utf8_lossy(&line);
        let hit = s.refusing.iter().position(|(c, tag, _)| {
            *c == conn
                && text.strip_prefix(tag.as_str()).is_some_and(|r| {
                    r.starts_with(" NO ") || r.starts_with(" BAD ") || r.starts_with(" OK ")
                })
        });
        match hit {
            Some(i) => {
                let (_, tag, answer) = s.refusing.remove(i);
                out.extend_from_slice(format!("{tag} NO {answer}\r\n").as_bytes());
            }
            None => out.extend_from_slice(&line),
        }
    }
    if !s.refusing.iter().any(|(c, _, _)| *c == conn) {
        out.append(held);
    }
    out
}

/// Records a client command; returns the fault to apply instead of
/// forwarding it, if one fires.
fn record_command(shared: &Mutex<Shared>, cmd: ProxyCommand) -> Option<ConnState> {
    let mut s = lock(shared);
    let fault = match &s.plan {
        FaultPlan::DropOnCommand { verb, nth } if verb_matches(verb, &cmd.verb, cmd.uid) => {
            Some((ConnState::Closed, *nth))
        }
        FaultPlan::StallOnCommand { verb, nth } if verb_matches(verb, &cmd.verb, cmd.uid) => {
            Some((ConnState::Stalled, *nth))
        }
        _ => None,
    };
    let fire = fault.and_then(|(action, nth)| {
        s.matched += 1;
        let hit = if s.always {
            s.matched >= nth
        } else {
            s.matched == nth
        };
        hit.then_some(action)
    });
    if fire.is_some() {
        s.fire();
    }
    s.record(cmd, fire.is_some());
    fire
}

async fn server_to_client(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    conn: usize,
    shared: Arc<Mutex<Shared>>,
    state: watch::Sender<ConnState>,
) {
    let mut rx = state.subscribe();
    let mut sent = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    // Server bytes held back while an answer is to be replaced (RefuseCommand).
    let mut held: Vec<u8> = Vec::new();
    loop {
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = wr.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            () = until_not_running(&mut rx) => {
                park(&mut rx).await;
                return;
            }
        };
        let refusing = lock(&shared).refusing.iter().any(|(c, _, _)| *c == conn);
        if refusing || !held.is_empty() {
            held.extend_from_slice(&buf[..n]);
            let out = replace_refused_answers(&shared, conn, &mut held);
            if !out.is_empty() && wr.write_all(&out).await.is_err() {
                state.send_replace(ConnState::Closed);
                return;
            }
            continue;
        }
        let (hidden, added) = {
            let s = lock(&shared);
            (s.hidden.clone(), s.added.clone())
        };
        if !hidden.is_empty() || !added.is_empty() {
            let edited = with_capabilities(&without_capabilities(&buf[..n], &hidden), &added);
            if edited.len() != n {
                if wr.write_all(&edited).await.is_err() {
                    state.send_replace(ConnState::Closed);
                    return;
                }
                continue;
            }
        }
        let (forward, close) = {
            let mut s = lock(&shared);
            match s.plan {
                FaultPlan::DropAfterServerBytes(limit) if sent + n >= limit => {
                    s.fire();
                    s.flowed[conn - 1] += limit.saturating_sub(sent) as u64;
                    (limit.saturating_sub(sent), true)
                }
                _ => s.budget(conn, n),
            }
        };
        if forward > 0 {
            if wr.write_all(&buf[..forward]).await.is_err() {
                state.send_replace(ConnState::Closed);
                return;
            }
            sent += forward;
            lock(&shared).server_bytes += forward as u64;
        }
        if close {
            state.send_replace(ConnState::Closed);
            return;
        }
    }
}

/// `chunk` without the atoms `hidden` where it holds a CAPABILITY list.
fn without_capabilities(chunk: &[u8], hidden: &[String]) -> Vec<u8> {
    if !chunk.windows(10).any(|w| w == b"CAPABILITY") {
        return chunk.to_vec();
    }
    let mut out = chunk.to_vec();
    for cap in hidden {
        for end in [" ", "]", "\r"] {
            let needle = format!(" {cap}{end}").into_bytes();
            while let Some(at) = out.windows(needle.len()).position(|w| w == needle) {
                out.drain(at..at + 1 + cap.len());
            }
        }
    }
    out
}

/// `chunk` with the atoms `added` after `IMAP4rev1` where it holds a CAPABILITY list.
fn with_capabilities(chunk: &[u8], added: &[String]) -> Vec<u8> {
    if added.is_empty() || !chunk.windows(10).any(|w| w == b"CAPABILITY") {
        return chunk.to_vec();
    }
    let extra: String = added.iter().map(|c| format!(" {c}")).collect();
    let needle = b"IMAP4rev1";
    let mut out = Vec::with_capacity(chunk.len() + extra.len() * 2);
    let mut rest = chunk;
    while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..at + needle.len()]);
        out.extend_from_slice(extra.as_bytes());
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// What the parser hands back, in stream order.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    /// Bytes to forward as they are.
    Bytes(Vec<u8>),
    /// The complete first line of a command (to forward unless faulted).
    Command(Vec<u8>, ProxyCommand),
    /// A continuation line of the current command announced one more literal (forwarded as
    /// the `Bytes` that follow), of this size.
    MoreLiteral(usize),
}

/// Splits a client->server byte stream into commands and other bytes.
#[derive(Default)]
struct CommandParser {
    /// The current (incomplete) line, held back until its LF.
    line: Vec<u8>,
    /// Literal bytes still to pass through.
    literal_left: usize,
    /// The next line continues a command (it follows a literal).
    continuation: bool,
    /// Parsing stopped (TLS, COMPRESS, or no line end in sight).
    opaque: bool,
    /// Whether any byte was seen (to spot a TLS ClientHello).
    started: bool,
}

const MAX_LINE: usize = 256 * 1024;

impl CommandParser {
    fn feed(&mut self, mut data: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        if !self.started && !data.is_empty() {
            self.started = true;
            if data[0] == 0x16 {
                self.opaque = true;
            }
        }
        while !data.is_empty() {
            if self.opaque {
                out.push(Piece::Bytes(data.to_vec()));
                break;
            }
            if self.literal_left > 0 {
                let take = self.literal_left.min(data.len());
                out.push(Piece::Bytes(data[..take].to_vec()));
                self.literal_left -= take;
                data = &data[take..];
                continue;
            }
            match data.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    self.line.extend_from_slice(&data[..=p]);
                    data = &data[p + 1..];
                    self.complete_line(&mut out);
                }
                None => {
                    self.line.extend_from_slice(data);
                    data = &[];
                    if self.line.len() > MAX_LINE {
                        self.opaque = true;
                        out.push(Piece::Bytes(std::mem::take(&mut self.line)));
                    }
                }
            }
        }
        out
    }

    fn complete_line(&mut self, out: &mut Vec<Piece>) {
        let line = std::mem::take(&mut self.line);
        let literal = literal_len(&line);
        if self.continuation {
            if let Some(size) = literal {
                out.push(Piece::MoreLiteral(size));
            }
            out.push(Piece::Bytes(line));
        } else {
            match parse_command(&line) {
                Some(mut cmd) => {
                    cmd.literals.extend(literal);
                    if cmd.verb == "STARTTLS" || cmd.verb == "COMPRESS" {
                        self.opaque = true;
                    }
                    out.push(Piece::Command(line, cmd));
                }
                None => out.push(Piece::Bytes(line)),
            }
        }
        match literal {
            Some(n) => {
                self.literal_left = n;
                self.continuation = true;
            }
            None => self.continuation = false,
        }
    }
}

/// N if the line (with or without CRLF) ends in `{N}`, `{N+}` or `{N-}`.
fn literal_len(line: &[u8]) -> Option<usize> {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    let inner = &l[open + 1..];
    let digits = inner
        .strip_suffix(b"+")
        .or_else(|| inner.strip_suffix(b"-"))
        .unwrap_or(inner);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `TAG SP VERB ...` -> the command (conn 0); `None` for other lines.
fn parse_command(line: &[u8]) -> Option<ProxyCommand> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    let mut words = text.split(' ');
    let tag = words.next()?;
    let is_word = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && w.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
    };
    if tag.is_empty() || tag == "*" || tag == "+" {
        return None;
    }
    let first = words.next()?;
    if !is_word(first) {
        return None;
    }
    let mut verb = first.to_ascii_uppercase();
    let mut uid = false;
    if verb == "UID" {
        if let Some(second) = words.next().filter(|w| is_word(w)) {
            verb = second.to_ascii_uppercase();
            uid = true;
        }
    }
    Some(ProxyCommand {
        conn: 0,
        tag: tag.to_string(),
        verb,
        uid,
        line: text.to_string(),
        literals: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands(chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
        let mut p = CommandParser::default();
        let mut cmds = Vec::new();
        let mut all = Vec::new();
        for c in chunks {
            for piece in p.feed(c) {
                match piece {
                    Piece::Bytes(b) => all.extend(b),
                    Piece::MoreLiteral(_) => {}
                    Piece::Command(b, info) => {
                        cmds.push(format!(
                            "{}{}",
                            if info.uid { "UID " } else { "" },
                            info.verb
                        ));
                        all.extend(b);
                    }
                }
            }
        }
        (cmds, all)
    }

    #[test]
    fn literal_lengths() {
        assert_eq!(literal_len(b"a APPEND x {12}\r\n"), Some(12));
        assert_eq!(literal_len(b"a APPEND x {5+}\r\n"), Some(5));
        assert_eq!(literal_len(b"a APPEND x {0}"), Some(0));
        assert_eq!(literal_len(b"a APPEND x ~{7}\r\n"), Some(7));
        assert_eq!(literal_len(b"a LOGIN x {y}\r\n"), None);
        assert_eq!(literal_len(b"a SELECT \"{5}\"\r\n"), None);
    }

    #[test]
    fn literal_bodies_are_not_commands_even_byte_by_byte() {
        let stream: &[u8] = b"a1 APPEND INBOX {12}\r\na2 APPEND x\r\nb1 UID fetch 1:* FLAGS\r\nDONE\r\nc1 APPEND X (\\Seen) {5+}\r\nc2 X) {3}\r\nyyy\r\n";
        let (cmds, all) = commands(&[stream]);
        assert_eq!(cmds, ["APPEND", "UID FETCH", "APPEND"]);
        assert_eq!(all, stream);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let (cmds1, all1) = commands(&bytes);
        assert_eq!(cmds1, cmds);
        assert_eq!(all1, stream);
    }

    #[test]
    fn every_literal_of_a_multiappend_is_counted() {
        let stream: &[u8] =
            b"m1 APPEND INBOX (\\Seen) {3+}\r\nabc () {2+}\r\nde ~{1+}\r\nf\r\nm2 NOOP\r\n";
        for chunks in [vec![stream], stream.chunks(1).collect()] {
            let mut p = CommandParser::default();
            let mut literals = Vec::new();
            for piece in chunks.iter().flat_map(|c| p.feed(c)) {
                match piece {
                    Piece::Command(_, info) => literals.push(info.literals),
                    Piece::MoreLiteral(size) => literals.last_mut().unwrap().push(size),
                    Piece::Bytes(_) => {}
                }
            }
            assert_eq!(literals, [vec![3, 2, 1], vec![]]);
        }
    }

    #[test]
    fn random_drop_thresholds_are_deterministic_with_the_right_mean() {
        assert_eq!(
            random_drop_threshold(7, 1, 1000),
            random_drop_threshold(7, 1, 1000)
        );
        assert_ne!(
            random_drop_threshold(7, 1, 1000),
            random_drop_threshold(7, 2, 1000)
        );
        assert_ne!(
            random_drop_threshold(7, 1, 1000),
            random_drop_threshold(8, 1, 1000)
        );
        let n = 20_000;
        let draws: Vec<u64> = (1..=n)
            .map(|c| random_drop_threshold(42, c, 300_000))
            .collect();
        let mean = draws.iter().sum::<u64>() as f64 / n as f64;
        assert!((mean - 300_000.0).abs() < 15_000.0, "mean {mean}");
        // P(X > mean) = 1/e for an exponential distribution.
        let above = draws.iter().filter(|&&d| d > 300_000).count() as f64 / n as f64;
        assert!((above - (-1f64).exp()).abs() < 0.02, "{above}");
        assert!(draws.iter().all(|&d| d >= 1));
    }

    #[test]
    fn tls_and_compress_go_opaque() {
        let (cmds, _) = commands(&[b"\x16\x03\x01\x00\x10a1 LOGIN x y\r\n"]);
        assert!(cmds.is_empty());
        let (cmds, _) = commands(&[b"a1 COMPRESS DEFLATE\r\n", b"a2 NOOP\r\n"]);
        assert_eq!(cmds, ["COMPRESS"]);
    }
}
