//! The JMAP transport against a scripted HTTP server on 127.0.0.1: the answers Cyrus cannot be
//! made to give (cannotCalculateChanges, unknown error types, tiny limits, HTTP errors, odd
//! redirects), and what goes on the wire (`using`, auth, request splitting).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use mailreplica::config::Secret;
use mailreplica::mailstore::imap::transport::TlsOptions;
use mailreplica::mailstore::jmap::email::ImportRequest;
use mailreplica::mailstore::jmap::error::{MethodErrorType, SetErrorType};
use mailreplica::mailstore::jmap::session::{Credentials, JmapUrl};
use mailreplica::mailstore::jmap::{ConnectOptions, JmapClient, JmapError};

use crate::support::http_server::{HttpReply, HttpRequest, HttpServer};

fn options(port: u16) -> ConnectOptions {
    ConnectOptions {
        url: JmapUrl::parse(&format!("jmap+http://alice@127.0.0.1:{port}")).unwrap(),
        credentials: Credentials::Password(Secret::new("s3cret".into())),
        tls: TlsOptions::default(),
        allow_plaintext: false,
        timeout: Duration::from_secs(10),
    }
}

fn session(core: Value, api_url: &str) -> Value {
    json!({
        "username": "alice",
        "apiUrl": api_url,
        "downloadUrl": "/dl/{accountId}/{blobId}/{name}?type={type}",
        "uploadUrl": "/up/{accountId}/",
        "eventSourceUrl": "/es/",
        "state": "0",
        "capabilities": {"urn:ietf:params:jmap:core": core, "urn:ietf:params:jmap:mail": {}},
        "accounts": {"A1": {"name": "alice", "isPersonal": true, "isReadOnly": false,
                            "accountCapabilities": {"urn:ietf:params:jmap:mail": {}}}},
        "primaryAccounts": {"urn:ietf:params:jmap:mail": "A1"}
    })
}

fn email(id: &str, keyword: &str) -> Value {
    json!({"id": id, "blobId": format!("G{id}"), "mailboxIds": {"MB": true},
           "keywords": {keyword: true}, "receivedAt": "2021-01-01T00:00:00Z", "size": 10,
           "messageId": null})
}

/// A JMAP server: `/.well-known/jmap` redirects to `/jmap/session`; API calls are answered
/// one by one by `api(method, args) -> [name, args]`, with `#ids` back-references resolved
/// against earlier answers of the same request.
async fn jmap_server(
    core: Value,
    api: impl Fn(&str, &Value) -> (String, Value) + Send + Sync + 'static,
) -> HttpServer {
    let session = session(core, "/api/");
    HttpServer::start(
        move |r: &HttpRequest| match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/.well-known/jmap") => HttpReply::redirect("/jmap/session"),
            ("GET", "/jmap/session") => HttpReply::json(session.clone()),
            ("POST", "/api/") => {
                let body = r.json();
                let mut results: BTreeMap<String, Value> = BTreeMap::new();
                let mut out = Vec::new();
                for call in body["methodCalls"].as_array().cloned().unwrap_or_default() {
                    let (method, mut args, id) = (
                        call[0].as_str().unwrap_or("").to_string(),
                        call[1].clone(),
                        call[2].as_str().unwrap_or("").to_string(),
                    );
                    let reference = args.get("#ids").cloned();
                    let (name, answer) = match reference {
                        Some(r) => {
                            let source = r["resultOf"].as_str().unwrap_or("");
                            let path = r["path"].as_str().unwrap_or("");
                            match results.get(source).and_then(|v| v.pointer(path)) {
                                Some(ids) => {
                                    args["ids"] = ids.clone();
                                    api(&method, &args)
                                }
                                None => ("error".into(), json!({"type": "invalidResultReference"})),
                            }
                        }
                        None => api(&method, &args),
                    };
                    if name != "error" {
                        results.insert(id.clone(), answer.clone());
                    }
                    out.push(json!([name, answer, id]));
                }
                HttpReply::json(json!({"methodResponses": out, "sessionState": "0"}))
            }
            _ => HttpReply::status(404, "{}"),
        },
    )
    .await
}

fn limits() -> Value {
    json!({"maxSizeUpload": 1000, "maxConcurrentUpload": 1, "maxSizeRequest": 100000,
           "maxConcurrentRequests": 1, "maxCallsInRequest": 8, "maxObjectsInGet": 100,
           "maxObjectsInSet": 100})
}

async fn connect(server: &HttpServer) -> JmapClient {
    JmapClient::connect(options(server.port())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_scripted_session_redirect_auth_and_minimal_using() {
    let server = jmap_server(limits(), |method, _| match method {
        "Email/get" => (
            "Email/get".into(),
            json!({"state": "s9", "list": [], "notFound": []}),
        ),
        _ => ("error".into(), json!({"type": "unknownMethod"})),
    })
    .await;
    let client = connect(&server).await;
    assert_eq!(
        client.session().api_url.as_str(),
        format!("http://127.0.0.1:{}/api/", server.port())
    );
    assert_eq!(client.account_id(), "A1");
    assert_eq!(client.email_state().await.unwrap(), "s9");

    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/.well-known/jmap", "/jmap/session", "/api/"]);
    // Basic alice:s3cret on every request, including after the (same-origin) redirect.
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some("Basic YWxpY2U6czNjcmV0"),
            "{r:?}"
        );
    }
    assert_eq!(
        requests[2].json()["using"],
        json!(["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_scripted_cannot_calculate_changes_is_its_own_error() {
    let server = jmap_server(limits(), |method, _| match method {
        "Email/changes" => ("error".into(), json!({"type": "cannotCalculateChanges"})),
        _ => ("error".into(), json!({"type": "unknownMethod"})),
    })
    .await;
    let client = connect(&server).await;
    let err = client.email_changes("s1", None).await.unwrap_err();
    match &err {
        JmapError::CannotCalculateChanges { since, method, .. } => {
            assert_eq!((since.as_str(), method.as_str()), ("s1", "Email/changes"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("full listing"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_scripted_has_more_changes_pages_are_merged() {
    let server = jmap_server(limits(), |method, args| {
        match (method, args["sinceState"].as_str()) {
            ("Email/changes", Some("s0")) => {
                assert_eq!(
                    args["maxChanges"],
                    json!(100),
                    "maxChanges is capped by maxObjectsInGet"
                );
                (
                    method.into(),
                    json!({"oldState": "s0", "newState": "s1", "hasMoreChanges": true,
                       "created": ["a", "b"], "updated": [], "destroyed": ["z"]}),
                )
            }
            ("Email/changes", Some("s1")) => (
                method.into(),
                json!({"oldState": "s1", "newState": "s2", "hasMoreChanges": false,
                   "created": null, "updated": ["a"], "destroyed": ["b"]}),
            ),
            ("Email/changes", Some("stuck")) => (
                method.into(),
                json!({"oldState": "stuck", "newState": "stuck", "hasMoreChanges": true,
                   "created": [], "updated": [], "destroyed": []}),
            ),
            ("Email/get", _) => {
                let ids: Vec<Value> = args["ids"].as_array().cloned().unwrap_or_default();
                // The second page sees a's newer keyword; b is already gone.
                let list: Vec<Value> = ids
                    .iter()
                    .filter_map(|id| match id.as_str() {
                        Some("a") => Some(email("a", "$seen")),
                        _ => None,
                    })
                    .collect();
                (
                    method.into(),
                    json!({"state": "s2", "list": list, "notFound": ["b"]}),
                )
            }
            _ => ("error".into(), json!({"type": "unknownMethod"})),
        }
    })
    .await;
    let client = connect(&server).await;
    let changes = client.email_changes("s0", Some(5000)).await.unwrap();
    assert_eq!(changes.pages, 2);
    assert_eq!(changes.new_state, "s2");
    assert_eq!(
        changes
            .created
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert!(changes.updated.is_empty());
    assert_eq!(changes.destroyed, ["z"]);
    // One request per page: the changes and both gets by back-reference.
    let posts: Vec<Value> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/")
        .map(|r| r.json())
        .collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0]["methodCalls"].as_array().unwrap().len(), 3);

    let err = client.email_changes("stuck", None).await.unwrap_err();
    assert!(matches!(err, JmapError::Protocol { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_scripted_requests_are_split_by_the_session_limits() {
    let mut core = limits();
    core["maxCallsInRequest"] = json!(2);
    core["maxObjectsInGet"] = json!(2);
    let server = jmap_server(core, |method, args| {
        let list: Vec<Value> = args["ids"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|id| email(id.as_str().unwrap_or(""), "$seen"))
            .collect();
        (
            method.into(),
            json!({"state": "1", "list": list, "notFound": []}),
        )
    })
    .await;
    let client = connect(&server).await;
    let ids: Vec<String> = (0..7).map(|i| format!("e{i}")).collect();
    let (found, missing) = client.get_emails(&ids).await.unwrap();
    assert_eq!(
        found.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        ids,
        "order kept"
    );
    assert!(missing.is_empty());
    let posts: Vec<Value> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/")
        .map(|r| r.json())
        .collect();
    // 7 ids -> 4 gets of at most 2 ids -> 2 requests of at most 2 calls.
    assert_eq!(posts.len(), 2);
    for p in &posts {
        let calls = p["methodCalls"].as_array().unwrap();
        assert!(calls.len() <= 2);
        for c in calls {
            assert!(c[1]["ids"].as_array().unwrap().len() <= 2);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_scripted_upload_over_max_size_is_refused_before_the_wire() {
    let server = jmap_server(limits(), |_, _| ("error".into(), json!({"type": "x"}))).await;
    let client = connect(&server).await;
    let err = client
        .upload(vec![b'x'; 1001], "message/rfc822")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            JmapError::TooLarge {
                size: 1001,
                limit: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(server
        .requests()
        .iter()
        .all(|r| !r.path.starts_with("/up/")));
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_scripted_unknown_error_types_are_kept_not_fatal() {
    let server = jmap_server(limits(), |method, _| match method {
        "Email/import" => (
            method.into(),
            json!({"accountId": "A1", "created": null,
                   "notCreated": {"e0": {"type": "brandNewRefusal", "description": "no"}}}),
        ),
        _ => (
            "error".into(),
            json!({"type": "somethingNobodyKnows", "description": "why"}),
        ),
    })
    .await;
    let client = connect(&server).await;
    let out = client
        .import_emails(&[ImportRequest {
            blob_id: "G1".into(),
            mailbox_ids: vec!["MB".into()],
            keywords: BTreeMap::new(),
            received_at: "2021-01-01T00:00:00Z".into(),
        }])
        .await
        .unwrap();
    let e = out[0].clone().unwrap_err();
    assert_eq!(e.kind, SetErrorType::Other("brandNewRefusal".into()));
    let err = client
        .destroy_emails(&["M1".to_string()])
        .await
        .unwrap_err();
    assert_eq!(
        err.method_error(),
        Some(&MethodErrorType::Other("somethingNobodyKnows".into()))
    );
    assert!(
        err.to_string().contains("somethingNobodyKnows: why"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_scripted_http_errors_say_what_to_do() {
    let server = HttpServer::start(|r: &HttpRequest| match r.path.as_str() {
        "/.well-known/jmap" => HttpReply::json(session(limits(), "/api/")),
        _ => HttpReply::status(
            503,
            r#"{"type":"urn:ietf:params:jmap:error:limit","limit":"maxConcurrentRequests","status":503,"detail":"busy"}"#,
        ),
    })
    .await;
    let client = connect(&server).await;
    let err = client.email_state().await.unwrap_err();
    assert!(
        matches!(err, JmapError::Http { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("limit: busy (limit maxConcurrentRequests)"),
        "{text}"
    );
    assert!(text.contains("Retry later"), "{text}");

    let refused = HttpServer::start(|_: &HttpRequest| HttpReply::status(401, "")).await;
    let err = JmapClient::connect(options(refused.port()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, JmapError::Auth { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_scripted_plain_http_off_this_machine_is_refused() {
    // A redirect to plain HTTP elsewhere is refused by the redirect policy (TEST-NET-1: never
    // contacted).
    let redirecting = HttpServer::start(|_: &HttpRequest| {
        HttpReply::redirect("http://192.0.2.1/.well-known/jmap")
    })
    .await;
    let err = JmapClient::connect(options(redirecting.port()))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("refusing a redirect to plain HTTP"),
        "{err}"
    );

    // A session whose apiUrl is plain HTTP elsewhere.
    let pointing = HttpServer::start(|_: &HttpRequest| {
        HttpReply::json(session(limits(), "http://192.0.2.1/api/"))
    })
    .await;
    let err = JmapClient::connect(options(pointing.port()))
        .await
        .unwrap_err();
    assert!(matches!(err, JmapError::Plaintext { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_scripted_bearer_tokens_are_sent_as_bearer() {
    let server = jmap_server(limits(), |method, _| {
        (
            method.into(),
            json!({"state": "1", "list": [], "notFound": []}),
        )
    })
    .await;
    let mut opts = options(server.port());
    opts.credentials = Credentials::Bearer(Secret::new("tok-123".into()));
    let client = JmapClient::connect(opts).await.unwrap();
    client.email_state().await.unwrap();
    for r in server.requests() {
        assert_eq!(r.header("authorization"), Some("Bearer tok-123"), "{r:?}");
    }
    assert!(!format!("{client:?}").contains("tok-123"));
}

/// A listing pages with anchors; when the anchor email leaves the mailbox between two pages
/// (`anchorNotFound`), the listing starts again with a fresh state instead of skipping emails.
/// A server that cannot sort by id gets a receivedAt-only sort.
#[tokio::test(flavor = "multi_thread")]
async fn jmap_scripted_listing_restarts_when_its_anchor_vanishes() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let anchored_queries = std::sync::Arc::new(AtomicU32::new(0));
    let seen = anchored_queries.clone();
    let server = jmap_server(limits(), move |method, args| match method {
        "Email/query" => {
            assert_eq!(args["filter"], json!({"inMailbox": "MB"}));
            // This server sorts by receivedAt only.
            if args["sort"].as_array().is_some_and(|s| s.len() > 1) {
                return ("error".into(), json!({"type": "unsupportedSort"}));
            }
            match args["anchor"].as_str() {
                None => (method.into(), json!({"ids": ["a", "b"], "position": 0})),
                // The first time, "b" has just been moved away.
                Some("b") if seen.fetch_add(1, Ordering::SeqCst) == 0 => {
                    ("error".into(), json!({"type": "anchorNotFound"}))
                }
                Some("b") => (method.into(), json!({"ids": ["c"], "position": 2})),
                Some(other) => panic!("unexpected anchor {other}"),
            }
        }
        "Email/get" => {
            let list: Vec<Value> = args["ids"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|id| email(id.as_str().unwrap_or(""), "$seen"))
                .collect();
            (
                method.into(),
                json!({"state": "st", "list": list, "notFound": []}),
            )
        }
        _ => ("error".into(), json!({"type": "unknownMethod"})),
    })
    .await;
    let mut client = connect(&server).await;
    client.set_query_page_size(2);
    let listing = client.list_mailbox("MB").await.unwrap();
    assert_eq!(
        listing
            .emails
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(listing.state, "st");
    assert_eq!(anchored_queries.load(Ordering::SeqCst), 2);
    // Sort refused; then state+page 1, page 2 (anchor gone); then state+page 1, page 2.
    let posts: Vec<Value> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/")
        .map(|r| r.json())
        .collect();
    assert_eq!(posts.len(), 5);
    assert_eq!(
        posts[1]["methodCalls"][1][1]["sort"],
        json!([{"property": "receivedAt", "isAscending": true}])
    );
    assert_eq!(posts[1]["methodCalls"].as_array().unwrap().len(), 3);
    assert_eq!(posts[2]["methodCalls"].as_array().unwrap().len(), 2);
}
