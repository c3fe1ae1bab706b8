//! `HttpServer`: a tiny HTTP/1.1 server on 127.0.0.1 (random port) whose answers come from a
//! closure, for JMAP cases a real server cannot be made to produce (cannotCalculateChanges,
//! unknown error types, odd limits). One request per connection (`Connection: close`); every
//! request is recorded. A reply may also be streamed ([`super::event_stream::EventScript`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::event_stream::EventScript;

/// One request as received.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An answer: status, extra headers, body; or, with `stream`, a chunked body played step by
/// step (`body` is then unused).
#[derive(Clone, Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub stream: Option<EventScript>,
}

impl HttpReply {
    pub fn json(value: serde_json::Value) -> HttpReply {
        HttpReply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(&value).unwrap(),
            stream: None,
        }
    }

    pub fn status(status: u16, body: &str) -> HttpReply {
        HttpReply {
            status,
            headers: vec![("Content-Type".into(), "application/problem+json".into())],
            body: body.as_bytes().to_vec(),
            stream: None,
        }
    }

    pub fn redirect(location: &str) -> HttpReply {
        HttpReply {
            status: 301,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
            stream: None,
        }
    }
}

type Handler = dyn Fn(&HttpRequest) -> HttpReply + Send + Sync;

/// The server; stops when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Starts serving on the current tokio runtime.
    pub async fn start(
        handler: impl Fn(&HttpRequest) -> HttpReply + Send + Sync + 'static,
    ) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, handler, recorded).await;
                });
            }
        });
        HttpServer {
            addr,
            requests,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The complete request at the front of `buf` (head, then a `Content-Length` body) and how
/// many bytes it takes; `None` while it is incomplete.
pub fn parse_request(buf: &[u8]) -> Option<(usize, HttpRequest)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body = buf.get(end..end + length)?.to_vec();
    let request = HttpRequest {
        method,
        path,
        headers,
        body,
    };
    Some((end + length, request))
}

/// Reads one request from a connection; `None` when the client went away first.
pub async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<HttpRequest>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((_, request)) = parse_request(&buf) {
            return Ok(Some(request));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve(
    mut stream: TcpStream,
    handler: Arc<Handler>,
    recorded: Arc<Mutex<Vec<HttpRequest>>>,
) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let reply = handler(&request);
    recorded.lock().unwrap().push(request);
    let length = match &reply.stream {
        Some(_) => "Transfer-Encoding: chunked".to_string(),
        None => format!("Content-Length: {}", reply.body.len()),
    };
    let mut out = format!(
        "HTTP/1.1 {} X\r\n{length}\r\nConnection: close\r\n",
        reply.status
    );
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    match &reply.stream {
        Some(script) => script.play(&mut stream).await?,
        None => stream.write_all(&reply.body).await?,
    }
    stream.shutdown().await
}
