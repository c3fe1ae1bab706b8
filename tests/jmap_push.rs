//! JMAP push (`JmapClient::wait_for_change`) against a scripted EventSource endpoint on
//! 127.0.0.1: a change after pings and pauses, events for others ignored, silence and
//! `max_wait` as Timeout, and every way a server says "no push" as Unavailable with a reason.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use mailreplica::config::Secret;
use mailreplica::mailstore::imap::transport::TlsOptions;
use mailreplica::mailstore::jmap::push::{PushOptions, PushOutcome};
use mailreplica::mailstore::jmap::session::{Credentials, JmapUrl};
use mailreplica::mailstore::jmap::{ConnectOptions, JmapClient, JmapError};

use crate::support::event_stream::EventScript;
use crate::support::http_server::{HttpReply, HttpRequest, HttpServer};

const EVENT_SOURCE: &str = "/es/?types={types}&closeafter={closeafter}&ping={ping}";

fn session(event_source: Option<&str>) -> Value {
    let mut s = json!({
        "username": "alice",
        "apiUrl": "/api/",
        "downloadUrl": "/dl/{accountId}/{blobId}/{name}?type={type}",
        "uploadUrl": "/up/{accountId}/",
        "state": "0",
        "capabilities": {"urn:ietf:params:jmap:core": {}, "urn:ietf:params:jmap:mail": {}},
        "accounts": {"A1": {"name": "alice", "isPersonal": true, "isReadOnly": false,
                            "accountCapabilities": {"urn:ietf:params:jmap:mail": {}}}},
        "primaryAccounts": {"urn:ietf:params:jmap:mail": "A1"}
    });
    if let Some(url) = event_source {
        s["eventSourceUrl"] = url.into();
    }
    s
}

/// A JMAP server whose session offers `event_source` and whose `/es/` answers with `push`.
async fn push_server(
    event_source: Option<&str>,
    push: impl Fn(&HttpRequest) -> HttpReply + Send + Sync + 'static,
) -> HttpServer {
    let session = session(event_source);
    HttpServer::start(move |r: &HttpRequest| {
        match (r.method.as_str(), r.path.split('?').next().unwrap_or("")) {
            ("GET", "/.well-known/jmap") => HttpReply::json(session.clone()),
            ("GET", "/es/") => push(r),
            _ => HttpReply::status(404, "{}"),
        }
    })
    .await
}

fn options(port: u16) -> ConnectOptions {
    ConnectOptions {
        url: JmapUrl::parse(&format!("jmap+http://alice@127.0.0.1:{port}")).unwrap(),
        credentials: Credentials::Password(Secret::new("s3cret".into())),
        tls: TlsOptions::default(),
        allow_plaintext: false,
        timeout: Duration::from_secs(10),
    }
}

async fn connect(server: &HttpServer) -> JmapClient {
    JmapClient::connect(options(server.port())).await.unwrap()
}

fn opts(ping_s: u64, max_wait: Duration) -> PushOptions {
    PushOptions {
        ping: Duration::from_secs(ping_s),
        max_wait,
        poll_interval: Duration::from_secs(60),
    }
}

/// Serves `script` on `/es/` and waits once.
async fn wait_with(script: EventScript, opts: PushOptions) -> (PushOutcome, Duration, HttpServer) {
    let server = push_server(Some(EVENT_SOURCE), move |_| script.clone().reply()).await;
    let client = connect(&server).await;
    let start = Instant::now();
    let outcome = client.wait_for_change(&opts).await.unwrap();
    (outcome, start.elapsed(), server)
}

/// Serves a whole answer on `/es/` and returns the reason it is Unavailable.
async fn unavailable_with(event_source: Option<&str>, reply: HttpReply) -> String {
    let server = push_server(event_source, move |_| reply.clone()).await;
    let client = connect(&server).await;
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        client.wait_for_change(&opts(5, Duration::from_secs(60))),
    )
    .await
    .expect("an Unavailable answer comes at once")
    .unwrap();
    match outcome {
        PushOutcome::Unavailable { reason } => {
            assert!(reason.contains("polling every 60 s instead"), "{reason}");
            assert!(!reason.contains("s3cret"), "{reason}");
            reason
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_state_change_after_a_ping_and_a_delay_is_changed() {
    let state =
        r#"{"@type":"StateChange","changed":{"A1":{"Email":"s2","Mailbox":"m3","Thread":"t4"}}}"#;
    // Split between two JSON tokens: the "\n" joining the data lines is then white space.
    let (first, second) = state.split_at(state.find(r#""changed""#).unwrap());
    let script = EventScript::new()
        .ping()
        .wait(Duration::from_millis(400))
        .comment(" keep-alive")
        // One event across three chunks, split inside a field and inside a CRLF.
        .raw("event: sta")
        .wait(Duration::from_millis(100))
        .raw(format!("te\r\ndata: {first}\r"))
        .wait(Duration::from_millis(100))
        .raw(format!("\ndata: {second}\r\n\r\n"))
        .hold();
    let (outcome, elapsed, _server) = wait_with(script, opts(5, Duration::from_secs(30))).await;
    assert_eq!(
        outcome,
        PushOutcome::Changed {
            email_state: Some("s2".into()),
            mailbox_state: Some("m3".into())
        }
    );
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_request_carries_accept_auth_and_the_expanded_query() {
    let script = EventScript::new()
        .state("A1", json!({"Email": "s2"}))
        .hold();
    let (outcome, _, server) = wait_with(script, opts(5, Duration::from_secs(30))).await;
    assert!(
        matches!(outcome, PushOutcome::Changed { .. }),
        "{outcome:?}"
    );
    let requests = server.requests();
    let push = requests
        .iter()
        .find(|r| r.path.starts_with("/es/"))
        .expect("a push request");
    assert_eq!(push.method, "GET");
    assert_eq!(
        push.path,
        "/es/?types=Email%2CMailbox&closeafter=state&ping=5"
    );
    assert_eq!(push.header("accept"), Some("text/event-stream"));
    assert_eq!(push.header("authorization"), Some("Basic YWxpY2U6czNjcmV0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_ping_is_lowered_under_the_client_timeout() {
    // The client's timeout is 10 s: a 60 s ping would let the read timeout fire between pings.
    let script = EventScript::new()
        .state("A1", json!({"Mailbox": "m"}))
        .hold();
    let (_, _, server) = wait_with(script, opts(60, Duration::from_secs(30))).await;
    let requests = server.requests();
    let push = requests
        .iter()
        .find(|r| r.path.starts_with("/es/"))
        .unwrap();
    assert!(push.path.ends_with("&ping=6"), "{}", push.path);
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_events_for_another_account_malformed_or_unknown_are_ignored() {
    let script = EventScript::new()
        .state("B7", json!({"Email": "other", "Mailbox": "other"}))
        .state("A1", json!({"Thread": "t9", "CalendarEvent": "c1"}))
        .event("state", r#"{"@type":"StateChange","changed":{"A1":"#)
        .event("calendar", r#"{"changed":{"A1":{"Email":"wrong"}}}"#)
        .raw("data: no event name\n\n")
        .wait(Duration::from_millis(300))
        .state("A1", json!({"Email": "s5"}))
        .hold();
    let (outcome, elapsed, _server) = wait_with(script, opts(5, Duration::from_secs(30))).await;
    assert_eq!(
        outcome,
        PushOutcome::Changed {
            email_state: Some("s5".into()),
            mailbox_state: None
        }
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_silence_longer_than_the_ping_allowance_is_timeout() {
    // ping 1 s: the allowance is 2 pings and a 1 s margin, 3 s after the last thing heard.
    let script = EventScript::new().ping().hold();
    let (outcome, elapsed, _server) = wait_with(script, opts(1, Duration::from_secs(60))).await;
    assert_eq!(outcome, PushOutcome::Timeout);
    assert!(elapsed >= Duration::from_millis(2900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_max_wait_is_timeout_even_while_pings_come() {
    let mut script = EventScript::new();
    for _ in 0..40 {
        script = script.ping().wait(Duration::from_millis(200));
    }
    let (outcome, elapsed, _server) =
        wait_with(script.hold(), opts(1, Duration::from_millis(1500))).await;
    assert_eq!(outcome, PushOutcome::Timeout);
    assert!(elapsed >= Duration::from_millis(1400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_204_is_unavailable() {
    let reply = HttpReply {
        status: 204,
        headers: Vec::new(),
        body: Vec::new(),
        stream: None,
    };
    let reason = unavailable_with(Some(EVENT_SOURCE), reply).await;
    assert!(reason.contains("204 No Content"), "{reason}");
    assert!(reason.contains("GET /es/?types="), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_500_is_unavailable_with_the_status() {
    let reason = unavailable_with(
        Some(EVENT_SOURCE),
        HttpReply::status(500, r#"{"type":"about:blank"}"#),
    )
    .await;
    assert!(reason.contains("HTTP 500"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_other_content_type_is_unavailable() {
    let reason = unavailable_with(Some(EVENT_SOURCE), HttpReply::json(json!({}))).await;
    assert!(reason.contains("application/json"), "{reason}");
    assert!(reason.contains("not text/event-stream"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_stream_ended_at_once_is_unavailable() {
    let reason = unavailable_with(Some(EVENT_SOURCE), EventScript::new().reply()).await;
    assert!(reason.contains("ended the event stream"), "{reason}");
    // Pings, then the end, within the ping interval (5 s): a server that does not keep it open.
    let script = EventScript::new().ping().ping();
    let reason = unavailable_with(Some(EVENT_SOURCE), script.reply()).await;
    assert!(reason.contains("within the ping interval"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_session_without_event_source_is_unavailable() {
    let reply = EventScript::new()
        .state("A1", json!({"Email": "s"}))
        .reply();
    let reason = unavailable_with(None, reply).await;
    assert!(reason.contains("no eventSourceUrl"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_plain_http_event_source_off_this_machine_is_refused_at_connect() {
    // The push request carries the Authorization header, like the API's.
    let server = push_server(Some("http://push.example/es/?ping={ping}"), |_| {
        HttpReply::status(404, "{}")
    })
    .await;
    let err = JmapClient::connect(options(server.port()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, JmapError::Plaintext { ref host, .. } if host == "push.example"),
        "{err}"
    );
}
