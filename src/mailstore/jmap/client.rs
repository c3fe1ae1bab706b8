//! The JMAP client: one pooled HTTP client, session discovery, the request/response envelope,
//! method calls with back-references, packing of independent calls within the session's limits.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::error::{JmapError, MethodError, MethodErrorType};
use super::session::{Credentials, JmapScheme, JmapUrl, Session, USING};
use crate::mailstore::imap::transport::{is_loopback, TlsOptions};

/// The largest API response read into memory. An `Email/get` of 4096 emails with our
/// properties is a few MB; anything near this bound is a broken or hostile server.
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// How many requests run at once at most, whatever the server allows: the server is someone's
/// live mail server (see DESIGN, "Connections").
const MAX_PARALLEL_REQUESTS: u64 = 4;

/// Everything needed to reach one JMAP account.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: JmapUrl,
    pub credentials: Credentials,
    pub tls: TlsOptions,
    /// Allow plain HTTP (`jmap+http://`, or a server pointing us to `http://`) to a host that is
    /// not loopback.
    pub allow_plaintext: bool,
    /// Connect timeout and the longest silence while reading an answer.
    pub timeout: Duration,
}

/// A connected JMAP account: the session and a pooled HTTP client. Cheap to share by
/// reference; every method takes `&self` and calls may run concurrently within the session's
/// limits.
pub struct JmapClient {
    http: reqwest::Client,
    auth: HeaderValue,
    session: Session,
    endpoint: String,
    timeout: Duration,
    pub(super) requests: Arc<Semaphore>,
    pub(super) uploads: Arc<Semaphore>,
    pub(super) query_page_size: u64,
}

impl std::fmt::Debug for JmapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JmapClient")
            .field("endpoint", &self.endpoint)
            .field("account_id", &self.session.account_id)
            .finish_non_exhaustive()
    }
}

/// One method call of a request, by its call id; [`CallRef::result`] makes a back-reference to
/// its result for a later call of the same request (RFC 8620 section 3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRef {
    pub id: String,
    pub method: String,
}

impl CallRef {
    /// `{"resultOf": id, "name": method, "path": path}`.
    pub fn result(&self, path: &str) -> Value {
        json!({"resultOf": self.id, "name": self.method, "path": path})
    }
}

/// A request being built: method calls in order.
#[derive(Debug, Default, Clone)]
pub struct Request {
    calls: Vec<(String, Value, String)>,
}

impl Request {
    pub fn new() -> Request {
        Request::default()
    }

    /// Adds a call; its id is its position.
    pub fn call(&mut self, method: &str, args: Value) -> CallRef {
        let id = format!("c{}", self.calls.len());
        self.calls.push((method.to_string(), args, id.clone()));
        CallRef {
            id,
            method: method.to_string(),
        }
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    fn to_body(&self) -> Vec<u8> {
        let calls: Vec<Value> = self
            .calls
            .iter()
            .map(|(m, a, id)| json!([m, a, id]))
            .collect();
        // Serialising a Value cannot fail.
        serde_json::to_vec(&json!({"using": USING, "methodCalls": calls})).unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResponse {
    method_responses: Vec<(String, Value, String)>,
    #[serde(default)]
    session_state: Option<String>,
}

/// The method responses of one request, taken out by call.
#[derive(Debug)]
pub struct Responses {
    list: Vec<Option<(String, Value, String)>>,
    /// The session state the server reported; a change means the session should be fetched
    /// again (new limits, accounts).
    pub session_state: Option<String>,
}

/// Why a call's response could not be taken.
#[derive(Debug)]
pub enum CallFailure {
    /// The server answered the call with an `error` response.
    Method(MethodError),
    /// The answer is missing, named another method, or does not parse.
    Protocol(String),
}

impl Responses {
    /// Parses an API response body (pure: tested without a server).
    pub fn parse(body: &[u8]) -> Result<Responses, String> {
        let raw: RawResponse = serde_json::from_slice(body)
            .map_err(|e| format!("the response does not parse: {e}"))?;
        Ok(Responses {
            list: raw.method_responses.into_iter().map(Some).collect(),
            session_state: raw.session_state,
        })
    }

    /// The arguments of the response to `call`: an `error` response becomes
    /// [`CallFailure::Method`]. A method may answer with several responses; the first is taken.
    pub fn take(&mut self, call: &CallRef) -> Result<Value, CallFailure> {
        let slot = self
            .list
            .iter_mut()
            .find(|r| matches!(r, Some((_, _, id)) if *id == call.id))
            .ok_or_else(|| CallFailure::Protocol(format!("no response to {}", call.method)))?;
        let (name, args, _) = slot
            .take()
            .ok_or_else(|| CallFailure::Protocol(format!("no response to {}", call.method)))?;
        if name == "error" {
            let err: MethodError = serde_json::from_value(args).map_err(|e| {
                CallFailure::Protocol(format!("an error response does not parse: {e}"))
            })?;
            return Err(CallFailure::Method(err));
        }
        if name != call.method {
            return Err(CallFailure::Protocol(format!(
                "{} was answered by {name}",
                call.method
            )));
        }
        Ok(args)
    }
}

/// The HTTP client all sessions share the settings of: timeouts, TLS, redirects.
fn build_http(opts: &ConnectOptions, endpoint: &str) -> Result<reqwest::Client, JmapError> {
    let allow_plaintext = opts.allow_plaintext;
    // Follow the session redirect (Cyrus: /.well-known/jmap -> /jmap) but never to plain HTTP
    // off this machine, never from HTTPS down to HTTP. reqwest drops the Authorization header
    // on a redirect to another origin.
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error("more than 5 redirects");
        }
        let next = attempt.url();
        let was_https = attempt
            .previous()
            .last()
            .is_some_and(|p| p.scheme() == "https");
        let local = next.host_str().is_some_and(is_loopback);
        if next.scheme() == "http" && (was_https || !(allow_plaintext || local)) {
            let to = format!("{}://{}", next.scheme(), next.host_str().unwrap_or("?"));
            return attempt.error(format!("refusing a redirect to plain HTTP ({to})"));
        }
        attempt.follow()
    });
    let mut builder = reqwest::Client::builder()
        .connect_timeout(opts.timeout)
        .read_timeout(opts.timeout)
        .redirect(policy)
        .no_proxy()
        .tcp_nodelay(true)
        .referer(false)
        .user_agent(concat!("mailreplica/", env!("CARGO_PKG_VERSION")));
    let tls_error = |detail: String| JmapError::Tls {
        endpoint: endpoint.to_string(),
        detail,
    };
    if let Some(ca) = &opts.tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| tls_error(format!("{}: {e}", ca.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| tls_error(format!("{}: {e}", ca.display())))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if opts.tls.insecure {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| tls_error(format!("cannot set up HTTP: {}", error_chain(&e))))
}

/// An error and its sources, `: `-separated. reqwest errors carry no credentials (they are in
/// a sensitive header, never in a URL).
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[derive(Deserialize)]
struct Problem {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

impl JmapClient {
    /// Fetches the session (following the server's redirect) and checks it: a mail account,
    /// resolvable URLs, no plain HTTP off this machine unless allowed.
    #[tracing::instrument(skip(opts), fields(endpoint = %opts.url))]
    pub async fn connect(opts: ConnectOptions) -> Result<JmapClient, JmapError> {
        let endpoint = opts.url.to_string();
        opts.url.check_plaintext(opts.allow_plaintext)?;
        let http = build_http(&opts, &endpoint)?;
        let auth = opts.credentials.header_value(&opts.url.user)?;
        let session_url = opts.url.session_url()?;
        let what = "session discovery";
        let resp = http
            .get(session_url)
            .header(AUTHORIZATION, auth.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| transport_error(&endpoint, opts.timeout, e, what))?;
        let resp = check_status(&endpoint, resp, what).await?;
        let final_url = resp.url().clone();
        let body = read_bounded(&endpoint, opts.timeout, resp, MAX_RESPONSE_BYTES, what).await?;
        let session = Session::parse(&body, final_url, &endpoint)?;
        // The session may point elsewhere: hold those URLs to the same plaintext rule.
        // The push URL too: it carries the same Authorization header.
        for url in [
            Some(session.api_url.clone()),
            session.upload_url().ok(),
            session.download_url("b", "n", "t").ok(),
            super::push::event_source_url(&session, 60).ok().flatten(),
        ]
        .into_iter()
        .flatten()
        {
            let host = url.host_str().unwrap_or_default();
            let insecure = url.scheme() == "http"
                && (opts.url.scheme == JmapScheme::Https
                    || !(opts.allow_plaintext || is_loopback(host)));
            if insecure {
                return Err(JmapError::Plaintext {
                    endpoint,
                    host: host.to_string(),
                });
            }
        }
        tracing::debug!(
            account = %session.account_id,
            limits = ?session.limits,
            "JMAP session"
        );
        let parallel = session
            .limits
            .max_concurrent_requests
            .min(MAX_PARALLEL_REQUESTS) as usize;
        let uploads = session
            .limits
            .max_concurrent_upload
            .min(MAX_PARALLEL_REQUESTS) as usize;
        let query_page_size = session.limits.max_objects_in_get.min(1024);
        Ok(JmapClient {
            http,
            auth,
            session,
            endpoint,
            timeout: opts.timeout,
            requests: Arc::new(Semaphore::new(parallel)),
            uploads: Arc::new(Semaphore::new(uploads)),
            query_page_size,
        })
    }

    /// `jmap://user@host:port/path`, for messages. Never contains a secret.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn account_id(&self) -> &str {
        &self.session.account_id
    }

    /// The connect timeout, also the longest silence tolerated while reading an answer.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How many ids an `Email/query` page asks for (at most `maxObjectsInGet`). Small values
    /// exercise paging in tests.
    pub fn set_query_page_size(&mut self, n: u64) {
        self.query_page_size = n.clamp(1, self.session.limits.max_objects_in_get);
    }

    /// Sends one request as it is and returns its responses. Fails before the wire when the
    /// request has more calls than `maxCallsInRequest` or more bytes than `maxSizeRequest`.
    #[tracing::instrument(skip(self, request), fields(calls = request.len()))]
    pub async fn send(&self, request: &Request, what: &str) -> Result<Responses, JmapError> {
        let limits = &self.session.limits;
        if request.len() as u64 > limits.max_calls_in_request {
            return Err(self.protocol(
                what,
                format!(
                    "{} calls in one request, more than the server's maxCallsInRequest {} (a mailreplica bug)",
                    request.len(),
                    limits.max_calls_in_request
                ),
            ));
        }
        let body = request.to_body();
        if body.len() as u64 > limits.max_size_request {
            return Err(JmapError::TooLarge {
                endpoint: self.endpoint.clone(),
                what: format!("the request for {what}"),
                size: body.len() as u64,
                limit: limits.max_size_request,
                whose: "the server's maxSizeRequest",
                hint: "This is a mailreplica bug (requests are split by size); please report it.",
            });
        }
        let _permit = self
            .requests
            .acquire()
            .await
            .map_err(|_| self.protocol(what, "the request limiter was closed".into()))?;
        let resp = self
            .http
            .post(self.session.api_url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport(e, what))?;
        let resp = check_status(&self.endpoint, resp, what).await?;
        let body =
            read_bounded(&self.endpoint, self.timeout, resp, MAX_RESPONSE_BYTES, what).await?;
        Responses::parse(&body).map_err(|d| self.protocol(what, d))
    }

    /// Takes and parses one call's response, turning a method error into [`JmapError::Method`]
    /// and `cannotCalculateChanges` into [`JmapError::CannotCalculateChanges`].
    pub fn take<T: DeserializeOwned>(
        &self,
        responses: &mut Responses,
        call: &CallRef,
        what: &str,
    ) -> Result<T, JmapError> {
        let args = responses
            .take(call)
            .map_err(|f| self.call_failure(f, &call.method, what, None))?;
        serde_json::from_value(args).map_err(|e| {
            self.protocol(
                what,
                format!("the {} response does not parse: {e}", call.method),
            )
        })
    }

    pub(super) fn call_failure(
        &self,
        failure: CallFailure,
        method: &str,
        what: &str,
        since: Option<&str>,
    ) -> JmapError {
        match failure {
            CallFailure::Method(error) => match (&error.kind, since) {
                (MethodErrorType::CannotCalculateChanges, Some(since)) => {
                    JmapError::CannotCalculateChanges {
                        endpoint: self.endpoint.clone(),
                        method: method.to_string(),
                        what: what.to_string(),
                        since: since.to_string(),
                    }
                }
                _ => JmapError::Method {
                    endpoint: self.endpoint.clone(),
                    method: method.to_string(),
                    what: what.to_string(),
                    error: Box::new(error),
                },
            },
            CallFailure::Protocol(d) => self.protocol(what, d),
        }
    }

    /// Runs independent calls of one method (no back-references between them), packed into as
    /// few requests as `maxCallsInRequest` and `maxSizeRequest` allow, the requests in parallel
    /// within the session's concurrency. Returns each call's response arguments in input order.
    pub async fn call_many(
        &self,
        method: &str,
        calls: Vec<Value>,
        what: &str,
    ) -> Result<Vec<Value>, JmapError> {
        let limits = &self.session.limits;
        // Leave room for the envelope.
        let budget = limits.max_size_request.saturating_sub(1024).max(1);
        let mut requests: Vec<Request> = Vec::new();
        let mut size = 0u64;
        for args in calls {
            let call_size = serde_json::to_vec(&args).map(|v| v.len()).unwrap_or(0) as u64 + 64;
            let start_new = match requests.last() {
                None => true,
                Some(r) => {
                    r.len() as u64 >= limits.max_calls_in_request || size + call_size > budget
                }
            };
            if start_new {
                requests.push(Request::new());
                size = 0;
            }
            size += call_size;
            if let Some(r) = requests.last_mut() {
                r.call(method, args);
            }
        }
        let sent = futures::future::try_join_all(requests.iter().map(|r| async move {
            let mut responses = self.send(r, what).await?;
            let mut out = Vec::with_capacity(r.len());
            for i in 0..r.len() {
                let call = CallRef {
                    id: format!("c{i}"),
                    method: method.to_string(),
                };
                out.push(
                    responses
                        .take(&call)
                        .map_err(|f| self.call_failure(f, method, what, None))?,
                );
            }
            Ok::<_, JmapError>(out)
        }))
        .await?;
        Ok(sent.into_iter().flatten().collect())
    }

    /// An authenticated request to a session URL other than the API (upload, download).
    pub(super) fn http_request(
        &self,
        method: reqwest::Method,
        url: url::Url,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone())
    }

    pub(super) async fn check(
        &self,
        resp: reqwest::Response,
        what: &str,
    ) -> Result<reqwest::Response, JmapError> {
        check_status(&self.endpoint, resp, what).await
    }

    pub(super) async fn read_body(
        &self,
        resp: reqwest::Response,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, JmapError> {
        read_bounded(&self.endpoint, self.timeout, resp, limit, what).await
    }

    pub(super) fn transport(&self, e: reqwest::Error, what: &str) -> JmapError {
        transport_error(&self.endpoint, self.timeout, e, what)
    }

    pub(super) fn protocol(&self, what: &str, detail: String) -> JmapError {
        JmapError::Protocol {
            endpoint: self.endpoint.clone(),
            what: what.to_string(),
            detail,
        }
    }
}

fn transport_error(endpoint: &str, timeout: Duration, e: reqwest::Error, what: &str) -> JmapError {
    let e = e.without_url();
    let detail = error_chain(&e);
    if e.is_timeout() {
        JmapError::Timeout {
            endpoint: endpoint.to_string(),
            what: what.to_string(),
            seconds: timeout.as_secs(),
        }
    } else if e.is_connect() {
        JmapError::Connect {
            endpoint: endpoint.to_string(),
            what: what.to_string(),
            detail,
        }
    } else if e.is_redirect() || e.is_builder() {
        JmapError::Protocol {
            endpoint: endpoint.to_string(),
            what: what.to_string(),
            detail,
        }
    } else {
        JmapError::ConnectionLost {
            endpoint: endpoint.to_string(),
            what: what.to_string(),
            detail,
        }
    }
}

/// Passes a 2xx response through; turns anything else into an error that says what to do,
/// with the RFC 7807 problem type when the server sent one.
async fn check_status(
    endpoint: &str,
    resp: reqwest::Response,
    what: &str,
) -> Result<reqwest::Response, JmapError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let code = status.as_u16();
    if code == 401 {
        return Err(JmapError::Auth {
            endpoint: endpoint.to_string(),
            what: what.to_string(),
            status: code,
        });
    }
    // A short read: the body only explains the status.
    let mut resp = resp;
    let mut body = Vec::new();
    while body.len() < 16 * 1024 {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    let problem = match serde_json::from_slice::<Problem>(&body) {
        Ok(p) => {
            let kind = p
                .kind
                .as_deref()
                .map(|k| k.trim_start_matches("urn:ietf:params:jmap:error:"))
                .unwrap_or("");
            let mut s = String::new();
            if !kind.is_empty() {
                s.push_str(": ");
                s.push_str(kind);
            }
            if let Some(d) = p.detail.filter(|d| !d.is_empty()) {
                s.push_str(": ");
                s.push_str(&d);
            }
            if let Some(l) = p.limit {
                s.push_str(&format!(" (limit {l})"));
            }
            s
        }
        Err(_) => String::new(),
    };
    let hint = match code {
        403 => ". The account may not be allowed to use JMAP; check its rights",
        404 => ". Check the URL's path (the session resource, /.well-known/jmap by default)",
        413 => ". The request is larger than the server accepts",
        429 => ". The server is rate-limiting; retry later",
        500..=599 => ". Retry later",
        _ => "",
    };
    Err(JmapError::Http {
        endpoint: endpoint.to_string(),
        what: what.to_string(),
        status: code,
        problem,
        hint: hint.to_string(),
    })
}

/// Reads a body into memory, refusing to go past `limit` bytes.
async fn read_bounded(
    endpoint: &str,
    timeout: Duration,
    mut resp: reqwest::Response,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, JmapError> {
    let too_large = |size: u64| JmapError::TooLarge {
        endpoint: endpoint.to_string(),
        what: format!("the answer to {what}"),
        size,
        limit,
        whose: "mailreplica",
        hint: "Nothing was kept.",
    };
    let announced = resp.content_length();
    if let Some(len) = announced.filter(|l| *l > limit) {
        return Err(too_large(len));
    }
    let mut out = Vec::with_capacity(announced.unwrap_or(0).min(1 << 20) as usize);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport_error(endpoint, timeout, e, what))?
    {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_large((out.len() + chunk.len()) as u64));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_number_their_calls_and_reference_results() {
        let mut r = Request::new();
        let q = r.call("Email/query", json!({"accountId": "A"}));
        let g = r.call("Email/get", json!({"#ids": q.result("/ids")}));
        assert_eq!((q.id.as_str(), g.id.as_str()), ("c0", "c1"));
        let body: Value = serde_json::from_slice(&r.to_body()).unwrap();
        assert_eq!(
            body,
            json!({
                "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                "methodCalls": [
                    ["Email/query", {"accountId": "A"}, "c0"],
                    ["Email/get", {"#ids": {"resultOf": "c0", "name": "Email/query", "path": "/ids"}}, "c1"]
                ]
            })
        );
    }

    #[test]
    fn responses_split_errors_from_results() {
        let body = br#"{"methodResponses":[
            ["Email/changes",{"newState":"5"},"c0"],
            ["error",{"type":"cannotCalculateChanges"},"c1"],
            ["error",{"type":"someFutureError","description":"d"},"c2"],
            ["Mailbox/get",{},"c3"]
        ],"sessionState":"0"}"#;
        let mut r = Responses::parse(body).unwrap();
        let call = |id: &str, m: &str| CallRef {
            id: id.into(),
            method: m.into(),
        };
        assert_eq!(
            r.take(&call("c0", "Email/changes")).unwrap(),
            json!({"newState":"5"})
        );
        assert!(matches!(
            r.take(&call("c0", "Email/changes")),
            Err(CallFailure::Protocol(_))
        ));
        match r.take(&call("c1", "Email/changes")) {
            Err(CallFailure::Method(e)) => {
                assert_eq!(e.kind, MethodErrorType::CannotCalculateChanges)
            }
            other => panic!("{other:?}"),
        }
        match r.take(&call("c2", "Email/get")) {
            Err(CallFailure::Method(e)) => {
                assert_eq!(e.kind, MethodErrorType::Other("someFutureError".into()))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            r.take(&call("c3", "Email/get")),
            Err(CallFailure::Protocol(_))
        ));
        assert!(matches!(
            r.take(&call("c9", "Email/get")),
            Err(CallFailure::Protocol(_))
        ));
        assert_eq!(r.session_state.as_deref(), Some("0"));
        assert!(Responses::parse(b"<html>").is_err());
        assert!(Responses::parse(br#"{"methodResponses":[["a",{}]]}"#).is_err());
    }
}
