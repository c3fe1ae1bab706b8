//! JMAP push over EventSource (RFC 8620 section 7.3): waiting for a change, or saying why not.
//!
//! The wait is one GET of the session's `eventSourceUrl` with `closeafter=state`: the first
//! StateChange for our account that names Email, Mailbox or EmailDelivery ends it. The framing
//! ([`SseParser`]), the URL ([`event_source_url`]) and the meaning of an event ([`interpret`])
//! are pure and tested here; [`JmapClient::wait_for_change`] only moves bytes and keeps time.
//!
//! Three outcomes, so that a watch loop needs no error handling for push itself:
//! [`PushOutcome::Changed`] (do a pass now), [`PushOutcome::Timeout`] (nothing heard for too
//! long, or `max_wait` reached: do a pass, then wait again) and [`PushOutcome::Unavailable`]
//! (this server does not push: log the reason once and poll). Errors are kept for what any
//! other request would fail on too: the server cannot be reached, or the connection broke
//! after the stream was under way.

use std::time::Duration;

use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use serde::Deserialize;
use tokio::time::{timeout_at, Instant};

use super::client::{error_chain, JmapClient};
use super::error::JmapError;
use super::session::{resolve_template, Session};

/// The types we ask to hear about (`{types}`); RFC 6570 expansion sends `Email%2CMailbox`.
pub const PUSH_TYPES: &str = "Email,Mailbox";

/// The data types whose change means "do a pass". Thread changes always come with an Email
/// change, so they add nothing.
const CHANGE_TYPES: [&str; 3] = ["Email", "Mailbox", "EmailDelivery"];

/// The largest event (all its lines) kept in memory; a StateChange is a few hundred bytes.
/// A longer event is dropped whole, as a malformed one is.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// UTF-8 byte-order mark, which may open a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// How to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOptions {
    /// The ping interval asked of the server (`{ping}`, whole seconds, at least 1). It is
    /// lowered to two thirds of the client's timeout, so that the HTTP read timeout never
    /// fires between two pings of a healthy server.
    pub ping: Duration,
    /// The longest wait; when it passes the outcome is [`PushOutcome::Timeout`].
    pub max_wait: Duration,
    /// The caller's polling interval. Only used to word [`PushOutcome::Unavailable`].
    pub poll_interval: Duration,
}

impl Default for PushOptions {
    fn default() -> PushOptions {
        PushOptions {
            ping: Duration::from_secs(60),
            max_wait: Duration::from_secs(600),
            poll_interval: Duration::from_secs(60),
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// A StateChange for our account named Email, Mailbox or EmailDelivery. The states are
    /// the server's new ones, when it gave them (EmailDelivery alone gives neither).
    Changed {
        email_state: Option<String>,
        mailbox_state: Option<String>,
    },
    /// Nothing for us before `max_wait`, or silence (not even a ping) for longer than twice
    /// the ping interval and a margin, or the server ended a stream that had been running.
    /// The caller does a normal pass and waits again.
    Timeout,
    /// The server does not push, and it is no use asking again on this session: a human
    /// sentence saying what was tried, what the server said, and that the caller polls.
    Unavailable { reason: String },
}

/// One dispatched Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when the event had none.
    pub event: String,
    /// The `data:` lines joined by `\n`.
    pub data: String,
    /// The last `id:` seen so far in the stream, if any.
    pub id: Option<String>,
}

/// Server-Sent Events framing (the WHATWG EventSource parsing rules), fed with chunks that
/// may end anywhere, even inside a CRLF or a UTF-8 sequence.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The current line, without its end.
    line: Vec<u8>,
    /// The last byte fed was a CR: an LF right after it belongs to the same line end.
    after_cr: bool,
    /// The first bytes, held until they are known not to be a byte-order mark.
    start: Vec<u8>,
    started: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    /// Bytes of the event being read; past [`MAX_EVENT_BYTES`] the event is dropped.
    event_bytes: usize,
    oversized: bool,
    /// Bytes of the current line were dropped: it is not a blank line, even if empty.
    line_dropped: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds bytes; returns the events they complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.started {
            self.feed_bytes(bytes, &mut out);
            return out;
        }
        // A byte-order mark is skipped once, at the start; it may itself arrive in pieces.
        self.start.extend_from_slice(bytes);
        if self.start.len() < BOM.len() && BOM.starts_with(&self.start) {
            return out;
        }
        self.started = true;
        let start = std::mem::take(&mut self.start);
        self.feed_bytes(start.strip_prefix(&BOM[..]).unwrap_or(&start), &mut out);
        out
    }

    fn feed_bytes(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    self.end_line(out);
                }
                _ => {
                    self.after_cr = false;
                    self.event_bytes += 1;
                    if self.event_bytes > MAX_EVENT_BYTES {
                        self.oversized = true;
                        self.line_dropped = true;
                        self.line.clear();
                    } else {
                        self.line.push(b);
                    }
                }
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        let dropped = std::mem::replace(&mut self.line_dropped, false);
        if line.is_empty() && !dropped {
            self.dispatch(out);
            return;
        }
        if self.oversized {
            return;
        }
        if line[0] == b':' {
            // A comment: servers send them to keep the connection alive. Not part of an event.
            self.event_bytes = self.event_bytes.saturating_sub(line.len());
            return;
        }
        let line = String::from_utf8_lossy(&line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            // `retry` is for browsers that reconnect by themselves; unknown fields are ignored.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        let has_data = std::mem::replace(&mut self.has_data, false);
        self.event_bytes = 0;
        if std::mem::replace(&mut self.oversized, false) {
            tracing::debug!(
                limit = MAX_EVENT_BYTES,
                "an event longer than the limit was dropped"
            );
            return;
        }
        if !has_data {
            return;
        }
        out.push(SseEvent {
            event: if event.is_empty() {
                "message".to_string()
            } else {
                event
            },
            data,
            id: self.last_id.clone(),
        });
    }
}

/// What one event means for the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A change to act on.
    Change(PushOutcome),
    /// The server's keep-alive.
    Ping,
    /// Nothing for us; the reason is for a debug log.
    Ignored(String),
}

/// Reads one event for `account_id`: a `state` event naming a change of ours is a
/// [`Seen::Change`]; pings are [`Seen::Ping`]; everything else (another account, other types,
/// malformed JSON, unknown event names) is [`Seen::Ignored`], never an error.
pub fn interpret(event: &SseEvent, account_id: &str) -> Seen {
    match event.event.as_str() {
        "state" => match state_change(&event.data, account_id) {
            Ok(Some(change)) => Seen::Change(change),
            Ok(None) => Seen::Ignored("a StateChange with nothing for this account".into()),
            Err(reason) => Seen::Ignored(reason),
        },
        "ping" => Seen::Ping,
        other => Seen::Ignored(format!("unknown event {other:?}")),
    }
}

#[derive(Deserialize)]
struct RawStateChange {
    #[serde(rename = "@type", default)]
    kind: Option<String>,
    changed: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

/// Parses a StateChange (`{"@type":"StateChange","changed":{account:{type:state}}}`) and
/// returns the change for `account_id` when it names Email, Mailbox or EmailDelivery.
pub fn state_change(data: &str, account_id: &str) -> Result<Option<PushOutcome>, String> {
    let raw: RawStateChange = serde_json::from_str(data)
        .map_err(|e| format!("a state event that is not a StateChange: {e}"))?;
    if let Some(kind) = raw.kind.as_deref().filter(|k| *k != "StateChange") {
        return Err(format!("a state event of @type {kind:?}"));
    }
    let Some(types) = raw.changed.get(account_id) else {
        return Ok(None);
    };
    if !CHANGE_TYPES.iter().any(|t| types.contains_key(*t)) {
        return Ok(None);
    }
    let state = |t: &str| types.get(t).and_then(|v| v.as_str()).map(str::to_string);
    Ok(Some(PushOutcome::Changed {
        email_state: state("Email"),
        mailbox_state: state("Mailbox"),
    }))
}

/// The session's `eventSourceUrl` expanded (`types`, `closeafter=state`, `ping` in seconds)
/// and resolved against the session URL, as the other session URLs are. `Ok(None)`: the
/// session offers no push.
pub fn event_source_url(session: &Session, ping_seconds: u64) -> Result<Option<url::Url>, String> {
    let Some(template) = session.event_source_template.as_deref() else {
        return Ok(None);
    };
    let ping = ping_seconds.to_string();
    resolve_template(
        &session.url,
        template,
        &[
            ("types", PUSH_TYPES),
            ("closeafter", "state"),
            ("ping", &ping),
        ],
    )
    .map(Some)
}

/// The ping interval to ask for: whole seconds, at least 1, at most two thirds of the
/// client's read timeout.
pub fn effective_ping(wanted: Duration, read_timeout: Duration) -> Duration {
    let cap = (read_timeout.as_secs() * 2 / 3).max(1);
    Duration::from_secs(wanted.as_secs().clamp(1, cap))
}

/// How long the stream may stay silent: two pings missed, and a margin for a slow network.
pub fn silence_allowance(ping: Duration) -> Duration {
    ping * 2 + (ping / 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// True when a content type is `text/event-stream` (parameters and case aside).
fn is_event_stream(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/event-stream"))
}

impl JmapClient {
    /// Waits for the account's emails or mailboxes to change, over the session's EventSource
    /// (one GET, `closeafter=state`). Holds none of the request permits: it is one long read.
    ///
    /// `Ok(Unavailable)` when the session has no `eventSourceUrl`, the server answers 204 No
    /// Content (Cyrus does), another status, another content type, or ends the stream at once:
    /// poll instead. `Err` only when the server cannot be reached, or the stream broke after
    /// it was under way (retryable, as any request).
    #[tracing::instrument(skip(self, opts), fields(endpoint = %self.endpoint()))]
    pub async fn wait_for_change(&self, opts: &PushOptions) -> Result<PushOutcome, JmapError> {
        let what = "waiting for a change (JMAP push)";
        let start = Instant::now();
        let deadline = start + opts.max_wait;
        let ping = effective_ping(opts.ping, self.timeout());
        let unavailable = |said: String| PushOutcome::Unavailable {
            reason: format!(
                "{}: no JMAP push: {said}; polling every {} s instead",
                self.endpoint(),
                opts.poll_interval.as_secs()
            ),
        };

        let url = match event_source_url(self.session(), ping.as_secs()) {
            Ok(Some(url)) => url,
            Ok(None) => return Ok(unavailable("the session offers no eventSourceUrl".into())),
            Err(e) => return Ok(unavailable(format!("the session's eventSourceUrl: {e}"))),
        };
        let target = match url.query() {
            Some(q) => format!("GET {}?{q}", url.path()),
            None => format!("GET {}", url.path()),
        };
        let request = self
            .http_request(reqwest::Method::GET, url)
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache")
            .send();
        let mut resp = match timeout_at(deadline, request).await {
            Err(_) => return Ok(PushOutcome::Timeout),
            Ok(sent) => sent.map_err(|e| self.transport(e, what))?,
        };

        let status = resp.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(unavailable(format!(
                "the server answered {target} with 204 No Content (it does not push changes)"
            )));
        }
        if !status.is_success() {
            return Ok(unavailable(format!(
                "the server answered {target} with HTTP {status}"
            )));
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        match content_type.as_deref() {
            Some(ct) if is_event_stream(ct) => {}
            other => {
                return Ok(unavailable(format!(
                    "the server answered {target} with content type {}, not text/event-stream",
                    other.unwrap_or("(none)")
                )))
            }
        }

        let opened = Instant::now();
        let allowance = silence_allowance(ping);
        let account = self.account_id();
        let mut parser = SseParser::new();
        let mut heard = false;
        let mut last = opened;
        tracing::debug!(ping_s = ping.as_secs(), "listening for JMAP push");
        loop {
            // A stream that ends before it has lasted one ping interval (it was asked to stay
            // open and ping) is a server that does not push, not a change: polling then
            // avoids a loop of instant reconnects.
            let early = !heard || opened.elapsed() < ping;
            let until = (last + allowance).min(deadline);
            let chunk = match timeout_at(until, resp.chunk()).await {
                Err(_) => {
                    tracing::debug!(
                        silent_s = last.elapsed().as_secs(),
                        waited_s = start.elapsed().as_secs(),
                        "no JMAP push within the allowance"
                    );
                    return Ok(PushOutcome::Timeout);
                }
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) if early => {
                    return Ok(unavailable(format!(
                        "the server ended the event stream of {target} after {} s, {}",
                        opened.elapsed().as_secs(),
                        if heard {
                            "within the ping interval"
                        } else {
                            "without sending anything"
                        }
                    )))
                }
                Ok(Ok(None)) => {
                    tracing::debug!("the server ended the JMAP push stream");
                    return Ok(PushOutcome::Timeout);
                }
                // The client's read timeout: silence, as above.
                Ok(Err(e)) if e.is_timeout() => return Ok(PushOutcome::Timeout),
                Ok(Err(e)) if early => {
                    return Ok(unavailable(format!(
                        "the event stream of {target} broke at once: {}",
                        error_chain(&e.without_url())
                    )))
                }
                Ok(Err(e)) => return Err(self.transport(e, what)),
            };
            heard = true;
            last = Instant::now();
            for event in parser.feed(&chunk) {
                match interpret(&event, account) {
                    Seen::Change(change) => {
                        tracing::debug!(?change, "JMAP push: changed");
                        return Ok(change);
                    }
                    Seen::Ping => tracing::trace!("JMAP push: ping"),
                    Seen::Ignored(why) => {
                        tracing::debug!(event = %event.event, %why, "JMAP push: event ignored")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8]) -> Vec<SseEvent> {
        SseParser::new().feed(bytes)
    }

    fn byte_by_byte(bytes: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        bytes.iter().flat_map(|b| p.feed(&[*b])).collect()
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(str::to_string),
        }
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBF: hello\r\n\r\nevent: ping\r\ndata: {\"@type\":\"Ping\",\"interval\":60}\r\n\r\n\
id: 7\nevent: state\ndata: {\"changed\":\ndata:  {}}\n\n\
event:unknown\rdata\r\r\
data: no event name\n\n\
data: never ended";

    #[test]
    fn sse_framing_with_comments_crlf_cr_multiline_data_and_ids() {
        let expected = vec![
            ev("ping", r#"{"@type":"Ping","interval":60}"#, None),
            ev("state", "{\"changed\":\n {}}", Some("7")),
            ev("unknown", "", Some("7")),
            ev("message", "no event name", Some("7")),
        ];
        assert_eq!(events(STREAM), expected);
        // Chunk boundaries anywhere: inside CRLF, the BOM, a UTF-8 sequence, a field name.
        assert_eq!(byte_by_byte(STREAM), expected);
        for split in 0..STREAM.len() {
            let mut p = SseParser::new();
            let mut got = p.feed(&STREAM[..split]);
            got.extend(p.feed(&STREAM[split..]));
            assert_eq!(got, expected, "split at {split}");
        }
    }

    #[test]
    fn sse_events_without_data_are_not_dispatched_and_fields_reset() {
        assert_eq!(
            events(b"event: state\n\ndata: x\n\n"),
            [ev("message", "x", None)]
        );
        assert_eq!(events(b"id\ndata\n\n"), [ev("message", "", Some(""))]);
        assert_eq!(
            byte_by_byte("data: é€\r\n\r\n".as_bytes()),
            [ev("message", "é€", None)]
        );
        // One BOM is skipped, at the start only; bytes held while deciding are not lost.
        for (input, n) in [
            (&b"\xEF\xBB\xBFdata: x\n\n"[..], 1),
            (b"\xEF\xBBdata: x\n\n", 0),
            (b"\xEF\ndata: x\n\n", 1),
            (b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n", 0),
        ] {
            assert_eq!(events(input).len(), n, "{input:?}");
            assert_eq!(byte_by_byte(input), events(input), "{input:?}");
        }
        assert_eq!(events(b""), []);
    }

    #[test]
    fn sse_oversized_events_are_dropped_whole() {
        let mut p = SseParser::new();
        let big = vec![b'a'; MAX_EVENT_BYTES + 10];
        assert!(p.feed(b"event: state\ndata: ").is_empty());
        assert!(p.feed(&big).is_empty());
        assert!(p.feed(b"\ndata: more\n\n").is_empty());
        assert_eq!(p.feed(b"data: next\n\n"), [ev("message", "next", None)]);
    }

    fn state(data: &str) -> SseEvent {
        ev("state", data, None)
    }

    #[test]
    fn state_changes_for_our_account() {
        let ours = state(
            r#"{"@type":"StateChange","changed":{"B":{"Email":"x"},"A1":{"Email":"s1","Mailbox":"m2","Thread":"t"}}}"#,
        );
        assert_eq!(
            interpret(&ours, "A1"),
            Seen::Change(PushOutcome::Changed {
                email_state: Some("s1".into()),
                mailbox_state: Some("m2".into())
            })
        );
        let delivery = state(r#"{"@type":"StateChange","changed":{"A1":{"EmailDelivery":"d"}}}"#);
        assert_eq!(
            interpret(&delivery, "A1"),
            Seen::Change(PushOutcome::Changed {
                email_state: None,
                mailbox_state: None
            })
        );
        // No @type is accepted (the shape says what it is).
        let bare = state(r#"{"changed":{"A1":{"Mailbox":"m"}}}"#);
        assert!(matches!(interpret(&bare, "A1"), Seen::Change(_)));
    }

    #[test]
    fn other_accounts_types_malformed_json_and_unknown_events_are_ignored() {
        let ignored = |e: &SseEvent| matches!(interpret(e, "A1"), Seen::Ignored(_));
        assert!(ignored(&state(
            r#"{"@type":"StateChange","changed":{"B7":{"Email":"s9"}}}"#
        )));
        assert!(ignored(&state(
            r#"{"@type":"StateChange","changed":{"A1":{"Thread":"t","CalendarEvent":"c"}}}"#
        )));
        assert!(ignored(&state(r#"{"@type":"StateChange","changed":"#)));
        assert!(ignored(&state("not json")));
        assert!(ignored(&state(
            r#"{"@type":"Other","changed":{"A1":{"Email":"s"}}}"#
        )));
        assert!(ignored(&ev(
            "message",
            r#"{"@type":"StateChange","changed":{"A1":{"Email":"s"}}}"#,
            None
        )));
        assert!(ignored(&ev("calendar", "{}", None)));
        assert_eq!(interpret(&ev("ping", "{}", None), "A1"), Seen::Ping);
        // A non-string state is no state, still a change.
        assert_eq!(
            state_change(r#"{"changed":{"A1":{"Email":5}}}"#, "A1"),
            Ok(Some(PushOutcome::Changed {
                email_state: None,
                mailbox_state: None
            }))
        );
    }

    fn session(template: Option<&str>, base: &str) -> Session {
        let mut doc = serde_json::json!({
            "apiUrl": "/jmap/", "downloadUrl": "/d/{blobId}", "uploadUrl": "/u/{accountId}",
            "capabilities": {"urn:ietf:params:jmap:core": {}, "urn:ietf:params:jmap:mail": {}},
            "accounts": {"A1": {}}, "primaryAccounts": {"urn:ietf:params:jmap:mail": "A1"}
        });
        if let Some(t) = template {
            doc["eventSourceUrl"] = t.into();
        }
        let body = serde_json::to_vec(&doc).unwrap();
        Session::parse(&body, url::Url::parse(base).unwrap(), "e").unwrap()
    }

    #[test]
    fn event_source_url_is_expanded_and_resolved_like_the_other_session_urls() {
        let cyrus = session(
            Some("/jmap/eventsource/?types={types}&closeafter={closeafter}&ping={ping}"),
            "http://127.0.0.1:17080/jmap",
        );
        assert_eq!(
            event_source_url(&cyrus, 60).unwrap().unwrap().as_str(),
            "http://127.0.0.1:17080/jmap/eventsource/?types=Email%2CMailbox&closeafter=state&ping=60"
        );
        let absolute = session(
            Some("https://push.example/es?ping={ping}"),
            "https://h/.well-known/jmap",
        );
        assert_eq!(
            event_source_url(&absolute, 5).unwrap().unwrap().as_str(),
            "https://push.example/es?ping=5"
        );
        let plain = session(Some("es/"), "https://h/jmap/session");
        assert_eq!(
            event_source_url(&plain, 5).unwrap().unwrap().as_str(),
            "https://h/jmap/es/"
        );
        assert_eq!(
            event_source_url(&session(None, "https://h/"), 5).unwrap(),
            None
        );
        let unknown = session(Some("/es?x={accountId}"), "https://h/");
        assert!(event_source_url(&unknown, 5)
            .unwrap_err()
            .contains("{accountId}"));
    }

    #[test]
    fn ping_stays_under_the_read_timeout_and_silence_allows_two_pings_and_a_margin() {
        let s = Duration::from_secs;
        assert_eq!(effective_ping(s(60), s(120)), s(60));
        assert_eq!(effective_ping(s(60), s(30)), s(20));
        assert_eq!(effective_ping(Duration::from_millis(300), s(30)), s(1));
        assert_eq!(effective_ping(s(60), s(1)), s(1));
        assert_eq!(silence_allowance(s(60)), s(150));
        assert_eq!(silence_allowance(s(1)), s(3));
        assert_eq!(silence_allowance(s(600)), s(1230));
        assert!(is_event_stream("Text/Event-Stream; charset=utf-8"));
        assert!(!is_event_stream("application/json"));
    }
}
