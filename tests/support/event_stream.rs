//! `EventScript`: a Server-Sent Events body that `HttpServer` sends piece by piece (one HTTP
//! chunk per piece, pauses between them, then the end or a silent hold), for JMAP push tests.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http_server::HttpReply;

/// How long a held stream stays open at most when the client does not go away.
const HOLD_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
enum Step {
    Send(Vec<u8>),
    Wait(Duration),
    /// Stay open and silent until the client closes the connection.
    Hold,
}

/// What the stream sends, in order. Without [`EventScript::hold`], the stream ends after the
/// last step.
#[derive(Clone, Debug, Default)]
pub struct EventScript {
    steps: Vec<Step>,
}

impl EventScript {
    pub fn new() -> EventScript {
        EventScript::default()
    }

    /// Bytes as they are, in one chunk (to split an event across chunks, or send broken ones).
    pub fn raw(mut self, bytes: impl AsRef<[u8]>) -> EventScript {
        self.steps.push(Step::Send(bytes.as_ref().to_vec()));
        self
    }

    /// One event, CRLF line ends, `data` split into one `data:` line per line.
    pub fn event(self, name: &str, data: &str) -> EventScript {
        let mut text = format!("event: {name}\r\n");
        for line in data.split('\n') {
            text.push_str(&format!("data: {line}\r\n"));
        }
        text.push_str("\r\n");
        self.raw(text)
    }

    /// RFC 8620 ping event.
    pub fn ping(self) -> EventScript {
        self.event("ping", r#"{"@type":"Ping","interval":1}"#)
    }

    /// A StateChange for one account: `types` is `{"Email": "s2", ...}`.
    pub fn state(self, account: &str, types: Value) -> EventScript {
        let data = json!({"@type": "StateChange", "changed": {account: types}});
        self.event("state", &data.to_string())
    }

    /// A comment line (a keep-alive).
    pub fn comment(self, text: &str) -> EventScript {
        self.raw(format!(":{text}\n\n"))
    }

    pub fn wait(mut self, pause: Duration) -> EventScript {
        self.steps.push(Step::Wait(pause));
        self
    }

    /// Keeps the stream open and silent until the client goes (at most a minute).
    pub fn hold(mut self) -> EventScript {
        self.steps.push(Step::Hold);
        self
    }

    /// A 200 `text/event-stream` answer that plays this script.
    pub fn reply(self) -> HttpReply {
        HttpReply {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/event-stream".into()),
                ("Cache-Control".into(), "no-cache".into()),
            ],
            body: Vec::new(),
            stream: Some(self),
        }
    }

    /// Writes the steps as HTTP/1.1 chunks (the head is already written), then the last
    /// chunk. Returns early when the client has gone.
    pub(crate) async fn play(&self, stream: &mut TcpStream) -> std::io::Result<()> {
        for step in &self.steps {
            match step {
                Step::Send(bytes) => {
                    if bytes.is_empty() {
                        continue; // An empty chunk would end the body.
                    }
                    stream
                        .write_all(format!("{:x}\r\n", bytes.len()).as_bytes())
                        .await?;
                    stream.write_all(bytes).await?;
                    stream.write_all(b"\r\n").await?;
                    stream.flush().await?;
                }
                Step::Wait(pause) => tokio::time::sleep(*pause).await,
                Step::Hold => {
                    let mut buf = [0u8; 256];
                    let _ = tokio::time::timeout(HOLD_LIMIT, async {
                        while let Ok(n) = stream.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                        }
                    })
                    .await;
                    return Ok(());
                }
            }
        }
        stream.write_all(b"0\r\n\r\n").await?;
        stream.flush().await
    }
}
