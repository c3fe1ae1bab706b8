//! `JmapPushProxy`: an HTTP relay on 127.0.0.1 (random port) in front of a real JMAP server
//! that gives the session an `eventSourceUrl` of its own and answers it, so that JMAP push can
//! be tested end to end with Cyrus (whose own event source answers 204): a `text/event-stream`
//! of pings that sends a StateChange whenever the test calls [`JmapPushProxy::push_change`],
//! or an error status ([`PushMode::Status`]). Every other request goes to the server as it
//! came, one request per connection (`Connection: close`); bodies with `Content-Length` only,
//! which is what reqwest sends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::http_server::{read_request, HttpRequest as Request};

/// The path the proxy serves the event stream on.
pub const EVENT_SOURCE_PATH: &str = "/push/";

/// How often an open stream sends a ping at most (more often than the client asks is
/// allowed, and keeps the stream plainly alive).
const PING_EVERY: Duration = Duration::from_secs(1);

/// What the event-source path answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushMode {
    /// A `text/event-stream` driven by the test.
    Stream,
    /// This HTTP status (204: no body; others: a small problem+json body).
    Status(u16),
}

/// One request the proxy received.
#[derive(Clone, Debug)]
pub struct ProxiedRequest {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

impl ProxiedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_event_source(&self) -> bool {
        self.path.starts_with(EVENT_SOURCE_PATH)
    }
}

struct Shared {
    upstream: SocketAddr,
    port: u16,
    mode: PushMode,
    http: reqwest::Client,
    requests: Mutex<Vec<ProxiedRequest>>,
    /// The mail account's id, from the first session the proxy relayed.
    account: Mutex<Option<String>>,
    /// Bumped by `push_change`; every stream open at that moment sends one StateChange.
    changes: watch::Sender<u64>,
    open_streams: AtomicUsize,
}

/// The relay; stops accepting when dropped.
pub struct JmapPushProxy {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl JmapPushProxy {
    /// Starts relaying to `upstream` on the current tokio runtime.
    pub async fn start(upstream: SocketAddr, mode: PushMode) -> JmapPushProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let http = reqwest::Client::builder()
            // Redirects go back to the client as they are (Location may name the server).
            .redirect(reqwest::redirect::Policy::none())
            .http1_only()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            upstream,
            port,
            mode,
            http,
            requests: Mutex::default(),
            account: Mutex::default(),
            changes: watch::Sender::new(0),
            open_streams: AtomicUsize::new(0),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accepting.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, shared).await;
                });
            }
        });
        JmapPushProxy { shared, task }
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `jmap+http://USER@127.0.0.1:PORT/jmap`: the session resource named directly, since
    /// Cyrus redirects `/.well-known/jmap` to an absolute URL that would go round the proxy.
    pub fn url(&self, user: &str) -> String {
        format!("jmap+http://{user}@127.0.0.1:{}/jmap", self.port())
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The GETs of the event-source path so far.
    pub fn event_source_requests(&self) -> Vec<ProxiedRequest> {
        self.requests()
            .into_iter()
            .filter(ProxiedRequest::is_event_source)
            .collect()
    }

    /// JMAP API calls (POSTs to the session's `apiUrl`, `/jmap/` on Cyrus) so far.
    pub fn api_calls(&self) -> Vec<ProxiedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/jmap/")
            .collect()
    }

    /// Event streams being served right now.
    pub fn open_streams(&self) -> usize {
        self.shared.open_streams.load(Ordering::SeqCst)
    }

    /// The mail account id seen in the session, once a session was relayed.
    pub fn account_id(&self) -> Option<String> {
        self.shared.account.lock().unwrap().clone()
    }

    /// Makes every open stream send a StateChange for the account (`Email` with a new
    /// state) and then end, as `closeafter=state` asks.
    pub fn push_change(&self) {
        self.shared.changes.send_modify(|n| *n += 1);
    }
}

impl Drop for JmapPushProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return Ok(());
    };
    shared.requests.lock().unwrap().push(ProxiedRequest {
        method: request.method.clone(),
        path: request.path.clone(),
        headers: request.headers.clone(),
        at: Instant::now(),
    });
    if request.path.starts_with(EVENT_SOURCE_PATH) {
        return match shared.mode {
            PushMode::Stream => event_stream(stream, &request.path, &shared).await,
            PushMode::Status(status) => {
                let body = if status == 204 {
                    String::new()
                } else {
                    format!(r#"{{"type":"about:blank","status":{status},"detail":"scripted"}}"#)
                };
                let head = format!(
                    "HTTP/1.1 {status} Scripted\r\nContent-Type: application/problem+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(body.as_bytes()).await?;
                stream.shutdown().await
            }
        };
    }
    let (status, headers, body) = match forward(&request, &shared).await {
        Ok(answer) => answer,
        Err(e) => (
            502,
            vec![("content-type".to_string(), "text/plain".to_string())],
            format!("proxy: {e}").into_bytes(),
        ),
    };
    let mut head = format!(
        "HTTP/1.1 {status} Relayed\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in &headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

/// Headers that belong to one hop (or that the relay sets itself), never forwarded.
const HOP_HEADERS: [&str; 9] = [
    "host",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "transfer-encoding",
    "content-length",
    "accept-encoding",
    "alt-svc",
];

/// Sends the request to the server; the answer's status, end-to-end headers and body, with
/// a session's `eventSourceUrl` pointing here.
async fn forward(
    request: &Request,
    shared: &Shared,
) -> Result<(u16, Vec<(String, String)>, Vec<u8>), reqwest::Error> {
    let url = format!("http://{}{}", shared.upstream, request.path);
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
    let mut outgoing = shared.http.request(method, url);
    for (n, v) in &request.headers {
        if !HOP_HEADERS.contains(&n.as_str()) {
            outgoing = outgoing.header(n, v);
        }
    }
    if !request.body.is_empty() {
        outgoing = outgoing.body(request.body.clone());
    }
    let answer = outgoing.send().await?;
    let status = answer.status().as_u16();
    let headers: Vec<(String, String)> = answer
        .headers()
        .iter()
        .filter(|(n, _)| !HOP_HEADERS.contains(&n.as_str()))
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let mut body = answer.bytes().await?.to_vec();
    if request.method == "GET" && status == 200 {
        if let Some(session) = rewrite_session(&body, shared) {
            body = session;
        }
    }
    Ok((status, headers, body))
}

/// A JMAP session (a JSON object with `apiUrl`) with its `eventSourceUrl` on this proxy;
/// remembers the mail account. `None` for anything else.
fn rewrite_session(body: &[u8], shared: &Shared) -> Option<Vec<u8>> {
    let mut session: Value = serde_json::from_slice(body).ok()?;
    session.get("apiUrl")?;
    if let Some(account) = session["primaryAccounts"]["urn:ietf:params:jmap:mail"].as_str() {
        *shared.account.lock().unwrap() = Some(account.to_string());
    }
    session["eventSourceUrl"] = format!(
        "http://127.0.0.1:{}{EVENT_SOURCE_PATH}?types={{types}}&closeafter={{closeafter}}&ping={{ping}}",
        shared.port
    )
    .into();
    Some(serde_json::to_vec(&session).unwrap())
}

/// Counts a stream as open for as long as it lives.
struct OpenStream<'a>(&'a AtomicUsize);

impl<'a> OpenStream<'a> {
    fn new(count: &'a AtomicUsize) -> OpenStream<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        OpenStream(count)
    }
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One HTTP chunk holding one event.
async fn send_event(out: &mut OwnedWriteHalf, name: &str, data: &Value) -> std::io::Result<()> {
    let event = format!("event: {name}\r\ndata: {data}\r\n\r\n");
    out.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())
        .await?;
    out.flush().await
}

/// Serves the event stream: a ping at once and then every [`PING_EVERY`] (or the `ping` the
/// client asked for, when shorter), a StateChange when the test pushes one, then the end.
/// Ends early when the client goes away.
async fn event_stream(stream: TcpStream, path: &str, shared: &Shared) -> std::io::Result<()> {
    let _open = OpenStream::new(&shared.open_streams);
    let asked = path
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("ping="))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
        .unwrap_or(PING_EVERY);
    let every = asked.min(PING_EVERY);
    let mut changes = shared.changes.subscribe();
    changes.mark_unchanged();
    let (mut input, mut out) = stream.into_split();
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let ping = json!({"@type": "Ping", "interval": every.as_secs()});
    send_event(&mut out, "ping", &ping).await?;
    let mut gone = [0u8; 256];
    loop {
        tokio::select! {
            read = input.read(&mut gone) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep(every) => send_event(&mut out, "ping", &ping).await?,
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let n = *changes.borrow_and_update();
                let account = shared.account.lock().unwrap().clone().unwrap_or_default();
                let change = json!({
                    "@type": "StateChange",
                    "changed": {account: {"Email": format!("pushed{n}")}}
                });
                send_event(&mut out, "state", &change).await?;
                out.write_all(b"0\r\n\r\n").await?;
                out.flush().await?;
                return Ok(());
            }
        }
    }
}
