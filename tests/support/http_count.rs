//! `HttpCounter`: a relay on 127.0.0.1 (random port) in front of an HTTP/1.1 server that
//! records each request's method, path and body, so tests count JMAP uploads and method calls
//! at the wire rather than from the tool's summary. Requests with `Content-Length` bodies only
//! (what reqwest sends); answers are relayed untouched.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::http_server::parse_request;

/// One request as relayed.
#[derive(Clone, Debug)]
pub struct CountedRequest {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

pub struct HttpCounter {
    port: u16,
    requests: Arc<Mutex<Vec<CountedRequest>>>,
}

impl HttpCounter {
    pub async fn start(upstream: SocketAddr) -> HttpCounter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<CountedRequest>>> = Arc::default();
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf: Vec<u8> = Vec::new();
                    let mut chunk = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if sw.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(request) = take_request(&mut buf) {
                            log.lock().unwrap().push(request);
                        }
                    }
                    down.abort();
                });
            }
        });
        HttpCounter { port, requests }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn reset(&self) {
        self.requests.lock().unwrap().clear();
    }

    /// Requests whose method and path start as given (`("POST", "/jmap/upload/")`).
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .count()
    }

    /// How many times a JMAP method (`"Email/import"`) was called, over every API request.
    pub fn method_calls(&self, method: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .filter_map(|v| v["methodCalls"].as_array().cloned())
            .flatten()
            .filter(|call| call[0] == method)
            .count()
    }
}

/// Removes one complete request from the front of `buf`, if there is one.
fn take_request(buf: &mut Vec<u8>) -> Option<CountedRequest> {
    let (used, r) = parse_request(buf)?;
    buf.drain(..used);
    Some(CountedRequest {
        method: r.method,
        path: r.path,
        body: r.body,
    })
}
