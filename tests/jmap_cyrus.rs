//! The JMAP transport against the real Cyrus 3.6 JMAP server (127.0.0.1:17080): session
//! discovery, mailboxes, import, patches, changes, blobs. Tests panic (never skip) when the
//! servers are down.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use mailreplica::config::Secret;
use mailreplica::mailstore::imap::transport::TlsOptions;
use mailreplica::mailstore::jmap::email::{utc_date_from_internaldate, EmailPatch, ImportRequest};
use mailreplica::mailstore::jmap::error::{MethodErrorType, SetErrorType};
use mailreplica::mailstore::jmap::keywords::flags_to_keywords;
use mailreplica::mailstore::jmap::mailbox::MailboxTree;
use mailreplica::mailstore::jmap::push::{PushOptions, PushOutcome};
use mailreplica::mailstore::jmap::session::{Credentials, JmapUrl};
use mailreplica::mailstore::jmap::{ConnectOptions, JmapClient, JmapError};
use mailreplica::model::{FlagSet, FolderPath, InternalDate};

use crate::support::servers::{cyrus_http_port, fresh_user, TestServer, PASSWORD, START_HINT};

fn options(url: &str, password: &str) -> ConnectOptions {
    ConnectOptions {
        url: JmapUrl::parse(url).unwrap(),
        credentials: Credentials::Password(Secret::new(password.to_string())),
        tls: TlsOptions::default(),
        allow_plaintext: false,
        timeout: Duration::from_secs(30),
    }
}

/// The JMAP URL of a Cyrus user: plain HTTP on loopback, the default path
/// (`/.well-known/jmap`, which Cyrus redirects to `/jmap`).
fn url(user: &str) -> String {
    format!("jmap+http://{user}@127.0.0.1:{}", cyrus_http_port())
}

/// A fresh Cyrus account (created by an IMAP login) and a JMAP client for it.
async fn fresh_client(prefix: &str) -> (String, JmapClient) {
    let cyrus = TestServer::cyrus();
    let user = fresh_user(prefix);
    cyrus.ensure_user(&user);
    let http = ("127.0.0.1", cyrus_http_port());
    assert!(
        TcpStream::connect(http).is_ok(),
        "Cyrus JMAP is not reachable at 127.0.0.1:{}: {START_HINT}",
        cyrus_http_port()
    );
    let client = JmapClient::connect(options(&url(&user), PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("JMAP session for {user}: {e}"));
    (user, client)
}

/// A small message with a Message-ID; `n` makes its content unique.
fn message(n: u32) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: jmap {n}\r\n\
         Date: Thu, 04 Mar 2021 05:06:07 +0000\r\nMessage-ID: <jmap-{n}@example.com>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(*b);
    }
    out
}

fn keywords(list: &[&str]) -> BTreeMap<String, bool> {
    list.iter().map(|k| (k.to_string(), true)).collect()
}

async fn tree(client: &JmapClient) -> MailboxTree {
    MailboxTree::new(client.mailboxes().await.unwrap().mailboxes)
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_session_discovery_follows_the_redirect_and_resolves_relative_urls() {
    let (user, client) = fresh_client("jsess").await;
    let s = client.session();
    let port = cyrus_http_port();
    // Cyrus redirects /.well-known/jmap to /jmap and answers with relative URLs.
    assert_eq!(s.url.as_str(), format!("http://127.0.0.1:{port}/jmap"));
    assert_eq!(s.api_url.as_str(), format!("http://127.0.0.1:{port}/jmap/"));
    assert_eq!(
        s.upload_url().unwrap().as_str(),
        format!("http://127.0.0.1:{port}/jmap/upload/{user}/")
    );
    assert!(s.upload_template.starts_with('/'), "{}", s.upload_template);
    assert_eq!(s.account_id, user);
    assert!(!s.read_only);
    assert!(s.limits.max_calls_in_request >= 2, "{:?}", s.limits);
    assert!(s.limits.max_objects_in_get >= 2, "{:?}", s.limits);
    assert!(s
        .capabilities
        .iter()
        .any(|c| c == "urn:ietf:params:jmap:mail"));
    assert!(client.endpoint().starts_with("jmap+http://"));

    // The explicit session path works too.
    let direct = JmapClient::connect(options(
        &format!("jmap+http://{user}@127.0.0.1:{port}/jmap"),
        PASSWORD,
    ))
    .await
    .unwrap();
    assert_eq!(direct.session().api_url, s.api_url);
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_wrong_password_is_an_auth_error_without_the_password() {
    let (user, _) = fresh_client("jauth").await;
    let err = JmapClient::connect(options(&url(&user), "not-the-password"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, JmapError::Auth { status: 401, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(text.contains(&user), "{text}");
    assert!(!format!("{err:?}").contains("not-the-password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_plain_http_to_another_host_is_refused_before_the_wire() {
    // 192.0.2.0/24 is TEST-NET-1: never contacted, the check comes first.
    let err = JmapClient::connect(options("jmap+http://a@192.0.2.1:17080", PASSWORD))
        .await
        .unwrap_err();
    assert!(matches!(err, JmapError::Plaintext { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_mailboxes_create_with_parents_and_role_rename_destroy() {
    let (_, client) = fresh_client("jmbox").await;
    let before = client.mailboxes().await.unwrap();
    let t = MailboxTree::new(before.mailboxes.clone());
    let inbox = t
        .with_role("inbox")
        .expect("Cyrus gives every account an inbox");
    assert_eq!(t.path(&inbox.id), Some(FolderPath::inbox()));
    let sent = t.with_role("sent").expect("Cyrus creates Sent");
    assert_eq!(sent.special_use(), Some("\\Sent"));
    assert!(inbox.my_rights.as_ref().is_some_and(|r| r.may_add_items()));

    // Two missing parents and the leaf, in one request; the leaf gets a role nobody holds.
    let path = FolderPath::from_display("Projects/2026/Q1");
    let made = client
        .create_mailbox(&t, &path, Some("important"), true)
        .await
        .unwrap();
    assert_eq!(made.created.len(), 3, "{made:?}");
    assert_eq!(made.leaf.role.as_deref(), Some("important"));
    assert!(!made.role_ignored);
    assert!(made.leaf.is_subscribed);
    let t = tree(&client).await;
    assert_eq!(t.path(&made.leaf.id), Some(path.clone()));
    let projects = t
        .find(&FolderPath::from_display("Projects"))
        .unwrap()
        .clone();
    assert_eq!(projects.role, None);

    // An existing parent is reused; a child of INBOX goes under the inbox mailbox.
    let sub = client
        .create_mailbox(&t, &FolderPath::from_display("INBOX/Sub"), None, false)
        .await
        .unwrap();
    assert_eq!(sub.created.len(), 1);
    assert_eq!(sub.leaf.parent_id.as_deref(), Some(inbox.id.as_str()));
    let again = client.create_mailbox(&t, &path, None, true).await.unwrap();
    assert!(again.created.is_empty());
    assert_eq!(again.leaf.id, made.leaf.id);

    // A role another mailbox holds is not sent (Cyrus would take it from Sent): the
    // mailbox is created without it, and Sent keeps it.
    let dup = client
        .create_mailbox(&t, &FolderPath::from_display("Sent2"), Some("sent"), true)
        .await
        .unwrap();
    assert!(dup.role_ignored, "{dup:?}");
    assert_eq!(dup.leaf.role, None);
    assert_eq!(tree(&client).await.with_role("sent").unwrap().id, sent.id);

    // Move a mailbox without a role to the top level and back under another parent.
    let misc = client
        .create_mailbox(&t, &FolderPath::from_display("Projects/Misc"), None, true)
        .await
        .unwrap()
        .leaf;
    client.rename_mailbox(&misc, "Misc2", None).await.unwrap();
    let misc = tree(&client).await.get(&misc.id).unwrap().clone();
    assert_eq!(
        tree(&client).await.path(&misc.id),
        Some(FolderPath::from_display("Misc2"))
    );
    let twenty_six = t
        .find(&FolderPath::from_display("Projects/2026"))
        .unwrap()
        .id
        .clone();
    client
        .rename_mailbox(&misc, "Misc", Some(&twenty_six))
        .await
        .unwrap();
    let t = tree(&client).await;
    assert_eq!(
        t.path(&misc.id),
        Some(FolderPath::from_display("Projects/2026/Misc"))
    );

    // Cyrus refuses to rename a nested mailbox that has a role, even in place ("SPECIAL-USE
    // flag conflict", a serverFail; a top-level one renames fine): the error names the mailbox
    // and keeps the server's words.
    let err = client
        .rename_mailbox(
            t.get(&made.leaf.id).unwrap(),
            "Q2",
            made.leaf.parent_id.as_deref(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&made.leaf.id), "{err}");
    assert!(err.to_string().contains("SPECIAL-USE"), "{err}");
    assert!(!err.is_retryable(), "{err}");

    // Mailbox/changes since the first listing, in pages of 2.
    let changes = client
        .mailbox_changes(&before.state, Some(2))
        .await
        .unwrap();
    assert!(changes.pages >= 2, "{changes:?}");
    let created: Vec<&str> = changes.created.iter().map(|m| m.name.as_str()).collect();
    for name in ["Projects", "2026", "Q1", "Sub", "Sent2", "Misc"] {
        assert!(created.contains(&name), "{name} not in {created:?}");
    }
    assert!(changes.destroyed.is_empty());

    // A parent with a child is refused; children first works.
    let err = client
        .destroy_mailbox(&projects.id, false)
        .await
        .unwrap_err();
    match &err {
        JmapError::Set { error, object, .. } => {
            assert_eq!(error.kind, SetErrorType::MailboxHasChild, "{err}");
            assert!(object.contains(&projects.id), "{err}");
        }
        other => panic!("{other:?}"),
    }
    for id in [
        &made.leaf.id,
        &misc.id,
        &twenty_six,
        &projects.id,
        &sub.leaf.id,
    ] {
        client.destroy_mailbox(id, false).await.unwrap();
    }
    let t = tree(&client).await;
    assert!(t.find(&FolderPath::from_display("Projects")).is_none());
    let changes = client.mailbox_changes(&before.state, None).await.unwrap();
    let created: Vec<&str> = changes.created.iter().map(|m| m.name.as_str()).collect();
    // Created and destroyed within the window: not reported at all.
    assert!(!created.contains(&"Projects"), "{created:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_import_get_patch_move_changes_download_destroy() {
    let (_, client) = fresh_client("jmail").await;
    let t = tree(&client).await;
    let inbox = t.with_role("inbox").unwrap().id.clone();
    let archive = t.with_role("archive").unwrap().id.clone();
    let work = client
        .create_mailbox(&t, &FolderPath::from_display("Work"), None, true)
        .await
        .unwrap()
        .leaf
        .id;
    let state0 = client.email_state().await.unwrap();

    // Upload once, import with keywords and receivedAt.
    let bytes = message(1);
    let blob = client
        .upload(bytes.clone(), "message/rfc822")
        .await
        .unwrap();
    assert_eq!(blob.size, bytes.len() as u64);
    let date = InternalDate::parse("04-Mar-2021 06:06:07 +0100").unwrap();
    let flags = FlagSet::from_raw(["\\Seen", "\\Flagged", "$Label1"]);
    let request = ImportRequest {
        blob_id: blob.blob_id.clone(),
        mailbox_ids: vec![inbox.clone()],
        keywords: flags_to_keywords(&flags),
        received_at: utc_date_from_internaldate(&date),
    };
    let imported = client
        .import_emails(std::slice::from_ref(&request))
        .await
        .unwrap();
    let first = imported[0].clone().unwrap();
    assert!(!first.already_existed);

    // Every field round-trips.
    let (got, missing) = client
        .get_emails(std::slice::from_ref(&first.id))
        .await
        .unwrap();
    assert!(missing.is_empty());
    let e = &got[0];
    assert_eq!(e.size, bytes.len() as u64);
    assert_eq!(e.received_at, "2021-03-04T05:06:07Z");
    assert_eq!(e.internaldate(), Some(date));
    assert_eq!(e.flags(), flags);
    assert_eq!(e.keywords, keywords(&["$flagged", "$label1", "$seen"]));
    assert_eq!(e.message_id, Some(vec!["jmap-1@example.com".to_string()]));
    assert_eq!(e.blob_id, blob.blob_id);
    assert_eq!(e.mailboxes().collect::<Vec<_>>(), [inbox.as_str()]);

    // The same blob again, into the same mailbox and into another one: Cyrus answers
    // alreadyExists with the existing id both times and changes nothing of the existing email.
    let mut elsewhere = request.clone();
    elsewhere.mailbox_ids = vec![archive.clone()];
    elsewhere.keywords = keywords(&["$draft"]);
    for again in client.import_emails(&[request, elsewhere]).await.unwrap() {
        let again = again.unwrap();
        assert!(again.already_existed);
        assert_eq!(again.id, first.id);
    }
    let (got, _) = client
        .get_emails(std::slice::from_ref(&first.id))
        .await
        .unwrap();
    assert_eq!(got[0].mailboxes().collect::<Vec<_>>(), [inbox.as_str()]);
    assert_eq!(got[0].keywords, keywords(&["$flagged", "$label1", "$seen"]));

    // A keyword that needs JSON Pointer escaping, and a removal, in one patch: sent as the
    // whole keyword set, since Cyrus does not unescape paths (see below).
    let odd = "a/b~c";
    let patch = EmailPatch::keywords(&got[0].keywords, &keywords(&["$label1", "$seen", odd]));
    assert!(patch.to_json().contains_key("keywords"), "{patch:?}");
    let out = client
        .update_emails(&[(first.id.clone(), patch)])
        .await
        .unwrap();
    assert!(out[0].1.is_ok(), "{out:?}");
    let (got, _) = client
        .get_emails(std::slice::from_ref(&first.id))
        .await
        .unwrap();
    assert_eq!(got[0].keywords, keywords(&["$label1", "$seen", odd]));
    assert_eq!(
        got[0].flags(),
        FlagSet::from_raw(["\\Seen", "$label1", odd])
    );

    // Taking an email out of its only mailbox by patch is refused (invalidProperties)...
    let out = client
        .update_emails(&[(
            first.id.clone(),
            EmailPatch {
                remove_mailboxes: vec![inbox.clone()],
                ..EmailPatch::default()
            },
        )])
        .await
        .unwrap();
    let err = out[0].1.clone().unwrap_err();
    assert_eq!(err.kind, SetErrorType::InvalidProperties, "{err}");
    // ...until it has been moved once: then Cyrus accepts the same patch and the email is
    // gone (its expunged copy in the old mailbox seems to count). Removals therefore destroy
    // explicitly when the mailbox is the last one (`remove_from_mailbox`), never by patch.

    // A move is one mailboxIds patch.
    let out = client
        .update_emails(&[(first.id.clone(), EmailPatch::moved(&inbox, &work))])
        .await
        .unwrap();
    assert!(out[0].1.is_ok(), "{out:?}");
    let (got, _) = client
        .get_emails(std::slice::from_ref(&first.id))
        .await
        .unwrap();
    assert_eq!(got[0].mailboxes().collect::<Vec<_>>(), [work.as_str()]);

    // Five more in Work, uploaded and imported in one batch each.
    let mut ids = vec![first.id.clone()];
    let mut requests = Vec::new();
    for n in 2..=6 {
        let b = client.upload(message(n), "message/rfc822").await.unwrap();
        requests.push(ImportRequest {
            blob_id: b.blob_id,
            mailbox_ids: vec![work.clone()],
            keywords: keywords(&["$seen"]),
            // After the first email's date: the listing is in receivedAt order.
            received_at: format!("2021-03-1{n}T00:00:00Z"),
        });
    }
    for r in client.import_emails(&requests).await.unwrap() {
        let r = r.unwrap();
        assert!(!r.already_existed);
        ids.push(r.id);
    }

    // Listing in pages of 2 (anchored), in receivedAt order.
    let mut paged = JmapClient::connect(options(&url(&client.session().username), PASSWORD))
        .await
        .unwrap();
    paged.set_query_page_size(2);
    let listing = paged.list_mailbox(&work).await.unwrap();
    let listed: Vec<&str> = listing.emails.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(listing.emails.iter().all(|e| e.in_mailbox(&work)));
    assert!(paged.list_mailbox(&inbox).await.unwrap().emails.is_empty());

    // Email/changes since before the first import, 2 changes a page: all six, created, with
    // their current keywords and mailboxes.
    let changes = client.email_changes(&state0, Some(2)).await.unwrap();
    assert!(changes.pages >= 3, "pages: {}", changes.pages);
    let mut created: Vec<&str> = changes.created.iter().map(|e| e.id.as_str()).collect();
    created.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(created, expected);
    assert!(changes.updated.is_empty() && changes.destroyed.is_empty());
    let first_now = changes.created.iter().find(|e| e.id == first.id).unwrap();
    assert_eq!(first_now.keywords, keywords(&["$label1", "$seen", odd]));
    assert_eq!(changes.new_state, client.email_state().await.unwrap());

    // From the listing's state: one update, then nothing.
    let out = client
        .update_emails(&[(
            ids[2].clone(),
            EmailPatch {
                add_keywords: vec!["$answered".into()],
                add_mailboxes: vec![archive.clone()],
                ..EmailPatch::default()
            },
        )])
        .await
        .unwrap();
    assert!(out[0].1.is_ok(), "{out:?}");
    let changes = client.email_changes(&listing.state, None).await.unwrap();
    assert_eq!(changes.pages, 1);
    assert_eq!(
        changes
            .updated
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        [ids[2].as_str()]
    );
    assert_eq!(
        changes.updated[0].flags(),
        FlagSet::from_raw(["\\Seen", "\\Answered"])
    );
    let none = client
        .email_changes(&changes.new_state, None)
        .await
        .unwrap();
    assert!(none.created.is_empty() && none.updated.is_empty() && none.destroyed.is_empty());

    // The blob comes back as uploaded.
    let down = client.download(&blob.blob_id, 1 << 20).await.unwrap();
    assert_eq!(crlf(&down), crlf(&bytes));
    let err = client.download(&blob.blob_id, 10).await.unwrap_err();
    assert!(matches!(err, JmapError::TooLarge { .. }), "{err:?}");

    // Out of Work: a patch for the one also in Archive, a destroy for the others.
    let (metas, _) = client.get_emails(&ids).await.unwrap();
    let out = client.remove_from_mailbox(&metas, &work).await.unwrap();
    assert!(out.iter().all(|(_, r)| r.is_ok()), "{out:?}");
    let (left, gone) = client.get_emails(&ids).await.unwrap();
    assert_eq!(
        left.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [ids[2].as_str()]
    );
    assert_eq!(left[0].mailboxes().collect::<Vec<_>>(), [archive.as_str()]);
    assert_eq!(gone.len(), 5);
    let out = client.destroy_emails(&[ids[2].clone()]).await.unwrap();
    assert!(out[0].1.is_ok(), "{out:?}");
    // Destroying it again: Cyrus answers "destroyed" again rather than notFound.
    let out = client.destroy_emails(&[ids[2].clone()]).await.unwrap();
    assert!(
        matches!(&out[0].1, Ok(()))
            || matches!(&out[0].1, Err(e) if e.kind == SetErrorType::NotFound),
        "{out:?}"
    );
    let changes = client.email_changes(&listing.state, None).await.unwrap();
    assert_eq!(changes.destroyed.len(), 6, "{changes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_bad_state_is_a_method_error_not_a_crash() {
    let (_, client) = fresh_client("jstate").await;
    // Cyrus answers a state it cannot parse with invalidArguments, not
    // cannotCalculateChanges.
    let err = client.email_changes("not-a-state", None).await.unwrap_err();
    assert_eq!(
        err.method_error(),
        Some(&MethodErrorType::InvalidArguments),
        "{err:?}"
    );
    assert!(err.to_string().contains("Email/changes"), "{err}");
    assert!(!err.is_retryable());
}

/// Pins a Cyrus 3.6 quirk the patch code works around: it does not unescape JSON Pointer
/// tokens in patch paths (RFC 8620 section 5.3 says it must), so `keywords/x~1y` sets the
/// keyword `x~1y`, and `keywords/a/b` sets `a/b`. If this fails, Cyrus was fixed: escaped paths
/// can then be used everywhere.
#[tokio::test(flavor = "multi_thread")]
async fn jmap_cyrus_does_not_unescape_patch_paths() {
    let (_, client) = fresh_client("jptr").await;
    let inbox = tree(&client).await.with_role("inbox").unwrap().id.clone();
    let blob = client.upload(message(1), "message/rfc822").await.unwrap();
    let id = client
        .import_emails(&[ImportRequest {
            blob_id: blob.blob_id,
            mailbox_ids: vec![inbox],
            keywords: BTreeMap::new(),
            received_at: "2021-03-04T05:06:07Z".into(),
        }])
        .await
        .unwrap()[0]
        .clone()
        .unwrap()
        .id;
    let escaped = EmailPatch {
        add_keywords: vec!["x/y".into()],
        ..EmailPatch::default()
    };
    assert!(escaped.to_json().contains_key("keywords/x~1y"));
    let out = client
        .update_emails(&[(id.clone(), escaped)])
        .await
        .unwrap();
    assert!(out[0].1.is_ok(), "{out:?}");
    let (got, _) = client.get_emails(&[id]).await.unwrap();
    assert_eq!(got[0].keywords, keywords(&["x~1y"]));
}

/// Cyrus refuses bare newlines and NUL over JMAP as over IMAP: the upload succeeds, the import
/// is an `invalidEmail` SetError carrying the server's words (so the adapter must upload
/// CRLF-normalised bytes, and NUL is a target-refused message, reported once).
#[tokio::test(flavor = "multi_thread")]
async fn jmap_import_refusals_keep_the_servers_words() {
    let (_, client) = fresh_client("jbad").await;
    let inbox = tree(&client).await.with_role("inbox").unwrap().id.clone();
    let mut requests = Vec::new();
    for bytes in [
        b"From: a@example.com\nSubject: lf\n\nbody\n".to_vec(),
        b"From: a@example.com\r\nSubject: nul\r\n\r\nbo\0dy\r\n".to_vec(),
    ] {
        let blob = client.upload(bytes, "message/rfc822").await.unwrap();
        requests.push(ImportRequest {
            blob_id: blob.blob_id,
            mailbox_ids: vec![inbox.clone()],
            keywords: BTreeMap::new(),
            received_at: "2021-03-04T05:06:07Z".into(),
        });
    }
    let out = client.import_emails(&requests).await.unwrap();
    for (outcome, words) in out.iter().zip(["bare newlines", "NUL"]) {
        let e = outcome.clone().unwrap_err();
        assert_eq!(e.kind, SetErrorType::InvalidEmail, "{e}");
        assert!(e.to_string().contains(words), "{e}");
        assert!(!e.is_retryable());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jmap_push_cyrus_answers_204_so_the_caller_polls() {
    let (_, client) = fresh_client("jpush").await;
    // Cyrus advertises an eventSourceUrl template...
    assert!(
        client.session().event_source_template.is_some(),
        "{:?}",
        client.session()
    );
    let opts = PushOptions {
        ping: Duration::from_secs(20),
        max_wait: Duration::from_secs(60),
        poll_interval: Duration::from_secs(60),
    };
    // ...but answers the EventSource GET with 204 No Content: the watch agent polls.
    let outcome = tokio::time::timeout(Duration::from_secs(90), client.wait_for_change(&opts))
        .await
        .expect("Cyrus answers the EventSource request")
        .unwrap();
    match outcome {
        PushOutcome::Unavailable { reason } => {
            assert!(reason.contains("204 No Content"), "{reason}");
            assert!(
                reason
                    .contains("/jmap/eventsource/?types=Email%2CMailbox&closeafter=state&ping=20"),
                "{reason}"
            );
            assert!(reason.contains("polling every 60 s instead"), "{reason}");
        }
        other => panic!(
            "Cyrus 3.6 (Debian) answered 204 to its eventSourceUrl when this test was written; \
             now: {other:?}. If it streams, test Changed after delivering a message instead."
        ),
    }
}
