//! One IMAP connection with the guarantees async-imap lacks.
//!
//! async-imap's command helpers ignore tagged NO/BAD on data commands, keep answering Ok after
//! EOF, drop unsolicited responses when a channel fills, and have no timeouts (see CRATES.md).
//! Each can make a dead connection read as an empty mailbox, which a replicator would turn into
//! deletions. So this type uses only async-imap's framing and parser (`read_response`) and
//! writes every command itself:
//!
//! - every read and write has a timeout;
//! - every command's tagged status is checked: NO becomes [`StoreError::No`], BAD poisons
//!   (unless it asks to slow down: then it is a NO, see [`StoreError::throttling`]);
//! - the first I/O error, parse error, timeout, EOF or BYE poisons the connection: every later
//!   call fails at once, so it is dropped and never reused;
//! - a command whose future was dropped half way (cancelled) also poisons it;
//! - untagged responses are returned to the caller with the command's result, none is lost.

use std::time::Duration;

use imap_proto::{Response, ResponseCode, Status};
use tokio::io::AsyncWriteExt;

use super::literal8::Literal8Reader;
use super::transport::Transport;
use crate::mailstore::error::throttling_in;
use crate::mailstore::StoreError;

/// One server response. async-imap's `ImapResponse` (the parsed response owning its buffer,
/// so a body is held once) is not nameable outside that crate, so it is kept behind this box.
pub struct ImapResponse(Box<dyn ErasedResponse>);

trait ErasedResponse: Send + Sync {
    fn parsed(&self) -> &Response<'_>;
}

struct Holder<R> {
    response: R,
    parsed: for<'a> fn(&'a R) -> &'a Response<'a>,
}

impl<R: Send + Sync> ErasedResponse for Holder<R> {
    fn parsed(&self) -> &Response<'_> {
        (self.parsed)(&self.response)
    }
}

impl ImapResponse {
    pub fn parsed(&self) -> &Response<'_> {
        self.0.parsed()
    }
}

/// A connection taken apart for a raw exchange (see [`Connection::into_parts`]).
pub struct RawParts {
    pub transport: Transport,
    endpoint: String,
    literal_plus: bool,
    next_tag: u64,
    timeout: Duration,
}

/// A piece of a command: text, or a literal sent as `{n}`/`{n+}` plus its bytes, or a
/// literal8 (`~{n}`/`~{n+}`, RFC 3516 BINARY: may hold NUL bytes).
pub enum Part<'a> {
    Text(&'a str),
    Literal(&'a [u8]),
    Literal8(&'a [u8]),
}

/// What a command is, for error messages: its verb and the folder it concerns.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub command: &'a str,
    pub folder: Option<&'a str>,
}

impl<'a> Ctx<'a> {
    pub fn new(command: &'a str) -> Ctx<'a> {
        Ctx {
            command,
            folder: None,
        }
    }
    pub fn on(command: &'a str, folder: &'a str) -> Ctx<'a> {
        Ctx {
            command,
            folder: Some(folder),
        }
    }
    fn folder_suffix(&self) -> String {
        self.folder
            .map(|f| format!(" on folder {f:?}"))
            .unwrap_or_default()
    }
}

/// A tagged OK and the untagged responses that came before it.
pub struct Completion {
    pub untagged: Vec<ImapResponse>,
    pub done: ImapResponse,
}

impl Completion {
    /// The response code of the tagged OK (`[APPENDUID ...]`, ...).
    pub fn code(&self) -> Option<&ResponseCode<'_>> {
        match self.done.parsed() {
            Response::Done { outcome, .. } => outcome.code.as_ref(),
            _ => None,
        }
    }
}

pub struct Connection {
    client: async_imap::Client<Literal8Reader<Transport>>,
    endpoint: String,
    next_tag: u64,
    poisoned: Option<String>,
    /// Commands sent whose completion has not been read yet.
    in_flight: usize,
    timeout: Duration,
    literal_plus: bool,
}

impl Connection {
    pub fn new(transport: Transport, endpoint: String, timeout: Duration) -> Connection {
        Connection {
            client: async_imap::Client::new(Literal8Reader::new(transport)),
            endpoint,
            next_tag: 0,
            poisoned: None,
            in_flight: 0,
            timeout,
            literal_plus: false,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The stream back (async-imap's read buffer is dropped: call only when the server has
    /// nothing pending), the endpoint and the LITERAL+ setting, for a raw exchange.
    pub fn into_parts(self) -> RawParts {
        RawParts {
            transport: self.client.into_inner().into_inner(),
            endpoint: self.endpoint,
            literal_plus: self.literal_plus,
            next_tag: self.next_tag,
            timeout: self.timeout,
        }
    }

    /// The connection again after a raw exchange; tags go on from where they were.
    pub fn resume(parts: RawParts) -> Connection {
        let mut conn = Connection::new(parts.transport, parts.endpoint, parts.timeout);
        conn.literal_plus = parts.literal_plus;
        conn.next_tag = parts.next_tag;
        conn
    }

    pub fn set_literal_plus(&mut self, on: bool) {
        self.literal_plus = on;
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Reads the server greeting. PREAUTH is refused: we did not authenticate, so we cannot
    /// know whose mailbox this is.
    /// Returns the capability atoms the greeting carried (`[CAPABILITY ...]`), if any.
    pub async fn read_greeting(&mut self) -> Result<Option<Vec<String>>, StoreError> {
        let ctx = Ctx::new("greeting");
        let response = self.read_one(ctx).await?;
        match response.parsed() {
            Response::Data {
                status: Status::Ok,
                outcome,
            } => Ok(match &outcome.code {
                Some(ResponseCode::Capabilities(list)) => {
                    Some(list.iter().map(super::open::capability_atom).collect())
                }
                _ => None,
            }),
            Response::Data {
                status: Status::PreAuth,
                ..
            } => {
                self.poison("PREAUTH greeting");
                Err(StoreError::Refused {
                    endpoint: self.endpoint.clone(),
                    detail: "the server greeted with PREAUTH (already logged in as someone); refusing to use it".into(),
                })
            }
            Response::Data {
                status: Status::Bye,
                outcome,
            } => {
                let text = outcome.information.as_deref().unwrap_or("").to_string();
                self.poison("BYE greeting");
                Err(StoreError::Refused {
                    endpoint: self.endpoint.clone(),
                    detail: format!("the server refused the connection: {text}"),
                })
            }
            other => {
                let detail = format!("not an IMAP greeting: {other:?}");
                self.poison(&detail);
                Err(self.protocol(ctx, detail))
            }
        }
    }

    /// Runs one command and waits for its tagged completion.
    pub async fn run(
        &mut self,
        parts: &[Part<'_>],
        ctx: Ctx<'_>,
    ) -> Result<Completion, StoreError> {
        self.check_usable(ctx)?;
        let tag = self.send(parts, ctx).await?;
        self.finish(&tag, ctx).await
    }

    /// Runs a command made of plain text.
    pub async fn run_text(&mut self, text: &str, ctx: Ctx<'_>) -> Result<Completion, StoreError> {
        self.run(&[Part::Text(text)], ctx).await
    }

    /// Sends a command and returns its tag without waiting for the completion (pipelining:
    /// several `send`s, then one `finish` per tag in order).
    /// Synchronising literals wait for the server's continuation; with LITERAL+ nothing waits.
    pub async fn send(&mut self, parts: &[Part<'_>], ctx: Ctx<'_>) -> Result<String, StoreError> {
        self.check_poison(ctx)?;
        self.in_flight += 1;
        self.next_tag += 1;
        let tag = format!("mr{}", self.next_tag);
        let mut line: Vec<u8> = Vec::with_capacity(128);
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        for part in parts {
            match part {
                Part::Text(t) => line.extend_from_slice(t.as_bytes()),
                Part::Literal(bytes) | Part::Literal8(bytes) => {
                    if matches!(part, Part::Literal8(_)) {
                        line.push(b'~');
                    }
                    if self.literal_plus {
                        line.extend_from_slice(format!("{{{}+}}\r\n", bytes.len()).as_bytes());
                        self.write(&line, ctx).await?;
                        line.clear();
                        self.write_literal(bytes, ctx).await?;
                    } else {
                        line.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                        self.write(&line, ctx).await?;
                        line.clear();
                        self.flush(ctx).await?;
                        self.await_continuation(&tag, ctx).await?;
                        self.write_literal(bytes, ctx).await?;
                    }
                }
            }
        }
        line.extend_from_slice(b"\r\n");
        self.write(&line, ctx).await?;
        self.flush(ctx).await?;
        Ok(tag)
    }

    /// Reads until the tagged completion of `tag`. Untagged responses are collected.
    pub async fn finish(&mut self, tag: &str, ctx: Ctx<'_>) -> Result<Completion, StoreError> {
        self.finish_from(None, tag, ctx).await
    }

    /// [`Connection::finish`], starting with a response already read.
    async fn finish_from(
        &mut self,
        mut first: Option<ImapResponse>,
        tag: &str,
        ctx: Ctx<'_>,
    ) -> Result<Completion, StoreError> {
        let mut untagged = Vec::new();
        loop {
            let response = match first.take() {
                Some(r) => r,
                None => self.read_one(ctx).await?,
            };
            let done = match response.parsed() {
                Response::Done {
                    tag: t,
                    status,
                    outcome,
                } if t.0 == tag => Some((TaggedStatus::of(status), outcome)),
                Response::Done { tag: t, .. } => {
                    let detail = format!("completion for unknown tag {}", t.0);
                    self.poison(&detail);
                    return Err(self.protocol(ctx, detail));
                }
                Response::Data {
                    status: Status::Bye,
                    outcome,
                } => {
                    let text = outcome.information.as_deref().unwrap_or("").to_string();
                    self.poison("BYE");
                    return Err(StoreError::ConnectionLost {
                        endpoint: self.endpoint.clone(),
                        command: ctx.command.to_string(),
                        detail: format!("the server closed the session (BYE {text})"),
                    });
                }
                _ => None,
            };
            let Some((status, outcome)) = done else {
                untagged.push(response);
                continue;
            };
            let text = outcome.information.as_deref().unwrap_or("").to_string();
            match status {
                TaggedStatus::Ok => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    return Ok(Completion {
                        untagged,
                        done: response,
                    });
                }
                TaggedStatus::No => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    return Err(StoreError::No {
                        endpoint: self.endpoint.clone(),
                        command: ctx.command.to_string(),
                        folder: ctx.folder_suffix(),
                        code: outcome
                            .code
                            .as_ref()
                            .and_then(code_name)
                            .or_else(|| response_code_name(&text)),
                        text,
                    });
                }
                // A tagged BAD that asks us to slow down is a refusal of this command like a
                // NO: the stream is in step (the completion arrived), so the connection stays
                // usable and the command is sent again later (engine::paced).
                TaggedStatus::Bad if throttling_in(None, &text).is_some() => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    return Err(StoreError::No {
                        endpoint: self.endpoint.clone(),
                        command: ctx.command.to_string(),
                        folder: ctx.folder_suffix(),
                        code: response_code_name(&text),
                        text,
                    });
                }
                TaggedStatus::Bad => {
                    self.poison("BAD");
                    return Err(StoreError::Bad {
                        endpoint: self.endpoint.clone(),
                        command: ctx.command.to_string(),
                        folder: ctx.folder_suffix(),
                        text,
                    });
                }
            }
        }
    }

    /// Runs one AUTHENTICATE exchange. `command` is the command without its tag (`AUTHENTICATE
    /// XOAUTH2 <initial response>`); it may hold a secret, and the line sent is wiped. Each
    /// `+` continuation's challenge (base64-decoded; as sent if it is not base64) goes to
    /// `answer`, whose bytes are sent base64-encoded as the next line. A server that keeps
    /// challenging past a few rounds is a protocol error.
    pub async fn authenticate(
        &mut self,
        command: &str,
        mut answer: impl FnMut(&[u8]) -> zeroize::Zeroizing<Vec<u8>>,
        ctx: Ctx<'_>,
    ) -> Result<Completion, StoreError> {
        use base64::Engine;
        const MAX_ROUNDS: usize = 4;
        let b64 = base64::engine::general_purpose::STANDARD;
        self.check_usable(ctx)?;
        self.in_flight += 1;
        self.next_tag += 1;
        let tag = format!("mr{}", self.next_tag);
        let line = zeroize::Zeroizing::new(format!("{tag} {command}\r\n"));
        self.write(line.as_bytes(), ctx).await?;
        self.flush(ctx).await?;
        let mut rounds = 0;
        loop {
            let response = self.read_one(ctx).await?;
            let Response::Continue(outcome) = response.parsed() else {
                return self.finish_from(Some(response), &tag, ctx).await;
            };
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(self.protocol_error(
                    ctx,
                    format!("more than {MAX_ROUNDS} challenges in one AUTHENTICATE"),
                ));
            }
            let text = outcome.information.as_deref().unwrap_or("").trim();
            let challenge = b64
                .decode(text)
                .unwrap_or_else(|_| text.as_bytes().to_vec());
            let reply = answer(&challenge);
            let mut line = zeroize::Zeroizing::new(b64.encode(&*reply));
            line.push_str("\r\n");
            self.write(line.as_bytes(), ctx).await?;
            self.flush(ctx).await?;
        }
    }

    /// Reads until the `+` continuation of a synchronising literal. A tagged completion instead
    /// means the server refused the command before the literal.
    pub(super) async fn await_continuation(
        &mut self,
        tag: &str,
        ctx: Ctx<'_>,
    ) -> Result<(), StoreError> {
        loop {
            let response = self.read_one(ctx).await?;
            match response.parsed() {
                Response::Continue(_) => return Ok(()),
                Response::Done {
                    tag: t, outcome, ..
                } if t.0 == tag => {
                    let text = outcome.information.as_deref().unwrap_or("").to_string();
                    self.in_flight = self.in_flight.saturating_sub(1);
                    return Err(StoreError::No {
                        endpoint: self.endpoint.clone(),
                        command: ctx.command.to_string(),
                        folder: ctx.folder_suffix(),
                        code: outcome
                            .code
                            .as_ref()
                            .and_then(code_name)
                            .or_else(|| response_code_name(&text)),
                        text,
                    });
                }
                _ => continue,
            }
        }
    }

    /// Waits up to `wait` for one response (IDLE): `None` when none came in time, which does
    /// not poison (reading a response is cancel-safe: async-imap's framing keeps partial input
    /// in its buffer). EOF, BYE handling and errors are as for every read.
    pub(super) async fn read_within(
        &mut self,
        wait: Duration,
        ctx: Ctx<'_>,
    ) -> Result<Option<ImapResponse>, StoreError> {
        self.check_poison(ctx)?;
        match tokio::time::timeout(wait, self.client.read_response()).await {
            Err(_) => Ok(None),
            Ok(result) => self.judge_read(result, |r| r.parsed(), ctx).map(Some),
        }
    }

    /// Writes one line outside any command (IDLE's `DONE`) and flushes it.
    pub(super) async fn write_line(&mut self, line: &str, ctx: Ctx<'_>) -> Result<(), StoreError> {
        self.check_poison(ctx)?;
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes, ctx).await?;
        self.flush(ctx).await
    }

    /// Reads one response, with the timeout; any failure poisons the connection.
    async fn read_one(&mut self, ctx: Ctx<'_>) -> Result<ImapResponse, StoreError> {
        self.check_poison(ctx)?;
        match tokio::time::timeout(self.timeout, self.client.read_response()).await {
            Err(_) => {
                self.poison("timeout");
                Err(StoreError::Timeout {
                    endpoint: self.endpoint.clone(),
                    command: ctx.command.to_string(),
                    seconds: self.timeout.as_secs(),
                })
            }
            Ok(result) => self.judge_read(result, |r| r.parsed(), ctx),
        }
    }

    /// A read's outcome: a response, or the connection poisoned by an error or EOF.
    fn judge_read<R: Send + Sync + 'static>(
        &mut self,
        result: std::io::Result<Option<R>>,
        parsed: for<'a> fn(&'a R) -> &'a Response<'a>,
        ctx: Ctx<'_>,
    ) -> Result<ImapResponse, StoreError> {
        match result {
            Err(e) => {
                self.poison(&e.to_string());
                Err(StoreError::ConnectionLost {
                    endpoint: self.endpoint.clone(),
                    command: ctx.command.to_string(),
                    detail: e.to_string(),
                })
            }
            Ok(None) => {
                self.poison("EOF");
                Err(StoreError::ConnectionLost {
                    endpoint: self.endpoint.clone(),
                    command: ctx.command.to_string(),
                    detail: "the server closed the connection".into(),
                })
            }
            Ok(Some(response)) => Ok(ImapResponse(Box::new(Holder { response, parsed }))),
        }
    }

    async fn write(&mut self, bytes: &[u8], ctx: Ctx<'_>) -> Result<(), StoreError> {
        let stream = self.client.get_mut();
        match tokio::time::timeout(self.timeout, stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.poison(&e.to_string());
                Err(StoreError::ConnectionLost {
                    endpoint: self.endpoint.clone(),
                    command: ctx.command.to_string(),
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                self.poison("write timeout");
                Err(StoreError::Timeout {
                    endpoint: self.endpoint.clone(),
                    command: ctx.command.to_string(),
                    seconds: self.timeout.as_secs(),
                })
            }
        }
    }

    /// Writes a literal's bytes; the crash tests can stop the process half way through.
    async fn write_literal(&mut self, bytes: &[u8], ctx: Ctx<'_>) -> Result<(), StoreError> {
        let half = bytes.len() / 2;
        self.write(&bytes[..half], ctx).await?;
        if half > 0 {
            self.flush(ctx).await?;
            crate::crashpoint::hit("mid_literal");
        }
        self.write(&bytes[half..], ctx).await
    }

    async fn flush(&mut self, ctx: Ctx<'_>) -> Result<(), StoreError> {
        let stream = self.client.get_mut();
        match tokio::time::timeout(self.timeout, stream.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.poison(&e.to_string());
                Err(StoreError::ConnectionLost {
                    endpoint: self.endpoint.clone(),
                    command: ctx.command.to_string(),
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                self.poison("flush timeout");
                Err(StoreError::Timeout {
                    endpoint: self.endpoint.clone(),
                    command: ctx.command.to_string(),
                    seconds: self.timeout.as_secs(),
                })
            }
        }
    }

    /// Before a new command: a previous one must have completed (a dropped future leaves the
    /// stream out of step) and the connection must not be poisoned.
    fn check_usable(&mut self, ctx: Ctx<'_>) -> Result<(), StoreError> {
        if self.in_flight > 0 {
            self.poison("a previous command was abandoned before its completion");
        }
        self.check_poison(ctx)
    }

    /// Fails when the connection is poisoned. Operations that can answer without the wire
    /// (an empty folder, nothing to store) call it first, so a dead connection never answers
    /// "nothing here".
    pub fn check_poison(&self, ctx: Ctx<'_>) -> Result<(), StoreError> {
        match &self.poisoned {
            None => Ok(()),
            Some(why) => Err(StoreError::ConnectionLost {
                endpoint: self.endpoint.clone(),
                command: ctx.command.to_string(),
                detail: format!("connection unusable after an earlier failure ({why})"),
            }),
        }
    }

    fn poison(&mut self, why: &str) {
        if self.poisoned.is_none() {
            tracing::debug!(endpoint = %self.endpoint, why, "connection poisoned");
            self.poisoned = Some(why.to_string());
        }
    }

    fn protocol(&self, ctx: Ctx<'_>, detail: String) -> StoreError {
        StoreError::Protocol {
            endpoint: self.endpoint.clone(),
            command: ctx.command.to_string(),
            detail,
        }
    }

    /// Marks the connection unusable (used by callers that detect an inconsistency).
    pub fn invalidate(&mut self, why: &str) {
        self.poison(why);
    }

    pub fn protocol_error(&mut self, ctx: Ctx<'_>, detail: String) -> StoreError {
        self.poison(&detail);
        self.protocol(ctx, detail)
    }
}

#[derive(Clone, Copy)]
enum TaggedStatus {
    Ok,
    No,
    Bad,
}

impl TaggedStatus {
    fn of(status: &Status) -> TaggedStatus {
        match status {
            Status::Ok => TaggedStatus::Ok,
            Status::No => TaggedStatus::No,
            _ => TaggedStatus::Bad,
        }
    }
}

/// The name of a response code imap-proto parsed (`[TRYCREATE]` and friends).
fn code_name(code: &ResponseCode<'_>) -> Option<String> {
    Some(
        match code {
            ResponseCode::TryCreate => "TRYCREATE",
            ResponseCode::ReadOnly => "READ-ONLY",
            ResponseCode::ReadWrite => "READ-WRITE",
            ResponseCode::Alert => "ALERT",
            ResponseCode::Parse => "PARSE",
            _ => return None,
        }
        .to_string(),
    )
}

/// The response code name of a tagged text that async-imap's parser left as text
/// (`[OVERQUOTA] Quota exceeded` gives `OVERQUOTA`).
fn response_code_name(text: &str) -> Option<String> {
    let rest = text.strip_prefix('[')?;
    let end = rest.find([']', ' '])?;
    Some(rest[..end].to_ascii_uppercase())
}

/// Quotes a string for IMAP when it can be quoted; `None` means a literal is needed.
pub fn quote(s: &str) -> Option<String> {
    if s.len() > 1000
        || s.bytes()
            .any(|b| b == b'\r' || b == b'\n' || b == 0 || b >= 0x80)
    {
        return None;
    }
    Some(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c").as_deref(), Some("\"a\\\"b\\\\c\""));
        assert_eq!(quote("é"), None);
        assert_eq!(quote("a\r\nb"), None);
    }

    #[test]
    fn response_codes_from_text() {
        assert_eq!(
            response_code_name("[OVERQUOTA] Quota exceeded").as_deref(),
            Some("OVERQUOTA")
        );
        assert_eq!(response_code_name("[LIMIT 5] x").as_deref(), Some("LIMIT"));
        assert_eq!(response_code_name("no code"), None);
    }
}
