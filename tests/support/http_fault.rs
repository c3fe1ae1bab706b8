//! `HttpFault`: a relay on 127.0.0.1 (random port) in front of an HTTP/1.1 JMAP server that
//! relays every request untouched, except those a test asked to fault, which it answers itself:
//! an HTTP 401, or an API answer where the chosen method's calls get a method-level `error` (or,
//! for `Email/import`, every email in `notCreated`). Those calls never reach the server; the
//! calls that use their results get `invalidResultReference`, as from a real server, and the
//! other calls of the request are run by the server in a request of their own, so that their
//! answers are real.
//!
//! Requests are read whole (`Content-Length` bodies, as reqwest sends them) before they go on,
//! so the relay decides per request. A faulted answer says `Connection: close` and the relay
//! closes that connection. An HTTP/1.1 client (reqwest) sends the next request on a connection
//! only after reading the last answer, so nothing of the server's is pending on it then, and
//! the client's next request goes over a fresh connection: a fault replaces exactly one answer.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::http_server::parse_request;

/// What the relay answers instead of the server.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Each call of the method is answered `["error", ARGS, callId]`; ARGS is the error object,
    /// e.g. `{"type": "invalidArguments", "arguments": ["filter"]}`.
    MethodError(Value),
    /// Each `Email/import` call is answered with every one of its emails in `notCreated` with
    /// this SetError (e.g. `{"type": "overQuota"}`), nothing created.
    NotCreated(Value),
    /// HTTP 401 Unauthorized with a `WWW-Authenticate: Basic` challenge, for the whole request.
    Unauthorized,
}

impl Fault {
    /// `Fault::MethodError({"type": kind})`.
    pub fn method_error(kind: &str) -> Fault {
        Fault::MethodError(json!({ "type": kind }))
    }
}

/// Which requests a fault is for.
#[derive(Clone, Debug, PartialEq)]
enum Target {
    /// The session resource: a GET of `/jmap`, `/jmap/` or `/.well-known/jmap`.
    Session,
    /// An API request with at least one call of this method.
    Method(String),
}

#[derive(Debug)]
struct Rule {
    target: Target,
    fault: Fault,
    remaining: usize,
}

/// One request as read from the client.
struct Request {
    method: String,
    path: String,
    /// The `Authorization` header, passed on with the calls the relay has the server run.
    authorization: Option<String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    /// One entry per faulted answer: `"GET /jmap"`, or the methods of the API request.
    injected: Vec<String>,
}

pub struct HttpFault {
    port: u16,
    shared: Arc<Mutex<Shared>>,
}

impl HttpFault {
    pub async fn start(upstream: SocketAddr) -> HttpFault {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let rules = shared.clone();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, rules.clone(), http.clone()));
            }
        });
        HttpFault { port, shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next `times` API requests with a call of `method` get `fault`.
    pub fn on_method(&self, method: &str, times: usize, fault: Fault) {
        self.add(Target::Method(method.to_string()), times, fault);
    }

    /// The next `times` session fetches get `fault` (only [`Fault::Unauthorized`] makes sense).
    pub fn on_session(&self, times: usize, fault: Fault) {
        self.add(Target::Session, times, fault);
    }

    /// Drops every fault not yet used: from now on everything is relayed.
    pub fn clear(&self) {
        self.shared.lock().unwrap().rules.clear();
    }

    /// What was faulted so far, one entry per faulted answer (`"GET /jmap"`, `"Email/import"`,
    /// `"Email/get Email/query Email/get"`).
    pub fn injected(&self) -> Vec<String> {
        self.shared.lock().unwrap().injected.clone()
    }

    fn add(&self, target: Target, times: usize, fault: Fault) {
        self.shared.lock().unwrap().rules.push(Rule {
            target,
            fault,
            remaining: times,
        });
    }
}

/// One client connection: whole requests relayed to one server connection, answers piped back,
/// until a request is faulted (answered here, then both connections closed).
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    http: reqwest::Client,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let cw = Arc::new(tokio::sync::Mutex::new(cw));
    let down_cw = cw.clone();
    let down = tokio::spawn(async move {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if down_cw.lock().await.write_all(&chunk[..n]).await.is_err() {
                break;
            }
        }
        // The server closed: so does the relay, towards the client.
        let _ = down_cw.lock().await.shutdown().await;
    });
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match cr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some((len, request)) = take_request(&buf) {
            let Some((target, fault)) = fault_for(&shared, &request) else {
                if sw.write_all(&buf[..len]).await.is_err() {
                    break 'read;
                }
                buf.drain(..len);
                continue;
            };
            down.abort();
            let answer = answer(&target, &fault, &request, upstream, &http).await;
            let mut w = cw.lock().await;
            let _ = w.write_all(&answer).await;
            let _ = w.shutdown().await;
            return;
        }
    }
    down.abort();
}

/// The rule this request matches, if any (the first with uses left; one use taken).
fn fault_for(shared: &Mutex<Shared>, request: &Request) -> Option<(Target, Fault)> {
    let session = request.method == "GET"
        && matches!(
            request.path.as_str(),
            "/jmap" | "/jmap/" | "/.well-known/jmap"
        );
    let calls = calls_of(request);
    let methods: Vec<&str> = calls.iter().filter_map(|c| c[0].as_str()).collect();
    let mut shared = shared.lock().unwrap();
    let rule = shared.rules.iter_mut().find(|r| {
        r.remaining > 0
            && match &r.target {
                Target::Session => session,
                Target::Method(m) => methods.contains(&m.as_str()),
            }
    })?;
    rule.remaining -= 1;
    let found = (rule.target.clone(), rule.fault.clone());
    let what = if session {
        format!("GET {}", request.path)
    } else {
        methods.join(" ")
    };
    shared.injected.push(what);
    Some(found)
}

/// The `methodCalls` of an API request (each `[name, args, id]`); empty for anything else.
fn calls_of(request: &Request) -> Vec<Value> {
    serde_json::from_slice::<Value>(&request.body)
        .ok()
        .and_then(|v| v["methodCalls"].as_array().cloned())
        .unwrap_or_default()
}

/// The whole HTTP answer to a faulted request, `Connection: close`.
async fn answer(
    target: &Target,
    fault: &Fault,
    request: &Request,
    upstream: SocketAddr,
    http: &reqwest::Client,
) -> Vec<u8> {
    let (status, body) = match (target, fault) {
        (_, Fault::Unauthorized) | (Target::Session, _) => {
            ("401 Unauthorized", json!({"status": 401}))
        }
        (Target::Method(method), _) => (
            "200 OK",
            api_answer(method, fault, request, upstream, http).await,
        ),
    };
    let body = body.to_string();
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("401") {
        out.push_str("WWW-Authenticate: Basic realm=\"relay\"\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// The API answer to a request with calls of `method` to fault: those calls answered with the
/// fault, the calls using their results (back-references point backwards, so one pass finds
/// them all) with `invalidResultReference`, and the others by the server.
async fn api_answer(
    method: &str,
    fault: &Fault,
    request: &Request,
    upstream: SocketAddr,
    http: &reqwest::Client,
) -> Value {
    let calls = calls_of(request);
    let mut faulted: HashSet<&str> = HashSet::new();
    let mut broken: HashSet<&str> = HashSet::new();
    for c in &calls {
        let id = c[2].as_str().unwrap_or("");
        if c[0] == method {
            faulted.insert(id);
        } else if refers_to(&c[1], &faulted) || refers_to(&c[1], &broken) {
            broken.insert(id);
        }
    }
    let rest: Vec<&Value> = calls
        .iter()
        .filter(|c| {
            let id = c[2].as_str().unwrap_or("");
            !faulted.contains(id) && !broken.contains(id)
        })
        .collect();
    let (mut real, session_state) = if rest.is_empty() {
        (HashMap::new(), json!("relay"))
    } else {
        run_upstream(&rest, request, upstream, http).await
    };
    let mut responses = Vec::new();
    for c in &calls {
        let id = c[2].as_str().unwrap_or("");
        if faulted.contains(id) {
            responses.push(faulted_response(fault, c));
        } else if broken.contains(id) {
            responses.push(json!(["error", {"type": "invalidResultReference"}, id]));
        } else {
            let answers = real.remove(id).unwrap_or_else(|| {
                vec![json!(["error", {"type": "serverFail", "description": "no answer from the server behind the relay"}, id])]
            });
            responses.extend(answers);
        }
    }
    json!({"methodResponses": responses, "sessionState": session_state})
}

/// A call's response under `fault`.
fn faulted_response(fault: &Fault, call: &Value) -> Value {
    match fault {
        Fault::NotCreated(error) if call[0] == "Email/import" => {
            let refused: serde_json::Map<String, Value> = call[1]["emails"]
                .as_object()
                .map(|emails| emails.keys().map(|k| (k.clone(), error.clone())).collect())
                .unwrap_or_default();
            json!(["Email/import", {
                "accountId": call[1]["accountId"],
                "oldState": null,
                "newState": null,
                "created": null,
                "notCreated": refused,
            }, call[2]])
        }
        Fault::MethodError(error) => json!(["error", error, call[2]]),
        _ => {
            json!(["error", {"type": "serverFail", "description": "the relay's fault does not apply to this method"}, call[2]])
        }
    }
}

/// True when a call's arguments use (`"#name": {"resultOf": id, ..}`) the result of one of `ids`.
fn refers_to(args: &Value, ids: &HashSet<&str>) -> bool {
    args.as_object().is_some_and(|a| {
        a.iter().any(|(k, v)| {
            k.starts_with('#') && v["resultOf"].as_str().is_some_and(|r| ids.contains(r))
        })
    })
}

/// Runs `calls` on the server in a request of their own, with the client's credentials. Returns
/// the responses by call id (a call may have several) and the server's session state.
async fn run_upstream(
    calls: &[&Value],
    request: &Request,
    upstream: SocketAddr,
    http: &reqwest::Client,
) -> (HashMap<String, Vec<Value>>, Value) {
    let using = serde_json::from_slice::<Value>(&request.body)
        .map(|v| v["using"].clone())
        .unwrap_or(Value::Null);
    let mut post = http
        .post(format!("http://{upstream}{}", request.path))
        .header("Content-Type", "application/json")
        .body(json!({"using": using, "methodCalls": calls}).to_string());
    if let Some(auth) = &request.authorization {
        post = post.header("Authorization", auth);
    }
    let answer: Value = match post.send().await {
        Ok(resp) => match resp.bytes().await {
            Ok(body) => serde_json::from_slice(&body).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        },
        Err(_) => Value::Null,
    };
    let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
    for r in answer["methodResponses"].as_array().into_iter().flatten() {
        let id = r[2].as_str().unwrap_or("").to_string();
        by_id.entry(id).or_default().push(r.clone());
    }
    (by_id, answer["sessionState"].clone())
}

/// The length and parts of the complete request at the front of `buf`, if there is one.
fn take_request(buf: &[u8]) -> Option<(usize, Request)> {
    let (used, r) = parse_request(buf)?;
    let request = Request {
        authorization: r.header("authorization").map(str::to_string),
        method: r.method,
        path: r.path,
        body: r.body,
    };
    Some((used, request))
}
