//! Opening a session: TCP, TLS (implicit or STARTTLS), greeting, capabilities, then the login
//! (`authenticate`).
//!
//! STARTTLS is negotiated before async-imap sees the stream, reading line by line and never past
//! a line's end, so that nothing the server sent before the handshake can be buffered and
//! trusted afterwards: any byte after the STARTTLS OK and before the handshake is an injection
//! attempt and fails the connection. Capabilities are read again after TLS and after login.

use imap_proto::{Capability, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::authenticate;
use super::connection::{Connection, Ctx};
use super::namespace::{self, Namespace};
use super::transport::{connect_tcp, is_loopback, read_line_tcp, start_tls, Transport};
use crate::config::{Scheme, SideConfig};
use crate::mailstore::{Capabilities, StoreError};

/// Connects, secures and logs in. The returned connection is authenticated; the personal
/// namespace is read where NAMESPACE is offered.
pub async fn open(
    config: &SideConfig,
) -> Result<(Connection, Capabilities, Namespace), StoreError> {
    let ep = &config.endpoint;
    let endpoint = ep.to_string();
    let tcp = connect_tcp(&ep.host, ep.port, config.timeout)
        .await
        .map_err(|detail| StoreError::Connect {
            endpoint: endpoint.clone(),
            detail,
        })?;
    let tls_err = |detail: String| StoreError::Tls {
        endpoint: endpoint.clone(),
        detail,
    };

    // The capabilities the greeting announced (Dovecot's does), saving a CAPABILITY.
    let mut greeted: Option<Vec<String>> = None;
    let mut conn = match ep.scheme {
        Scheme::Jmap | Scheme::JmapHttp => {
            return Err(StoreError::Refused {
                endpoint,
                detail: "a JMAP URL cannot be opened over IMAP (a mailreplica bug)".into(),
            });
        }
        Scheme::Imaps => {
            let transport = start_tls(tcp, &ep.host, &config.tls, config.timeout)
                .await
                .map_err(tls_err)?;
            let mut conn = Connection::new(transport, endpoint.clone(), config.timeout);
            greeted = conn.read_greeting().await?;
            conn
        }
        Scheme::ImapPlain => {
            if !(config.allow_plaintext || is_loopback(&ep.host)) {
                return Err(StoreError::Refused {
                    endpoint,
                    detail: "imap+plain:// sends the password in clear; it is refused for a remote host unless --allow-plaintext is given".into(),
                });
            }
            let mut conn = Connection::new(Transport::Plain(tcp), endpoint.clone(), config.timeout);
            greeted = conn.read_greeting().await?;
            conn
        }
        Scheme::Imap => {
            let plaintext_ok = config.allow_plaintext || is_loopback(&ep.host);
            match starttls_prelude(tcp, &endpoint, config).await? {
                Prelude::Secured(tcp) => {
                    let transport = start_tls(tcp, &ep.host, &config.tls, config.timeout)
                        .await
                        .map_err(tls_err)?;
                    Connection::new(transport, endpoint.clone(), config.timeout)
                }
                Prelude::NoStartTls(_) if !plaintext_ok => {
                    return Err(StoreError::Refused {
                        endpoint,
                        detail: "the server does not offer STARTTLS, and sending a password in clear to a remote host is refused. Use imaps://, or --allow-plaintext if the network is trusted".into(),
                    });
                }
                Prelude::NoStartTls(tcp) => {
                    Connection::new(Transport::Plain(tcp), endpoint.clone(), config.timeout)
                }
            }
        }
    };

    let caps = match complete(greeted) {
        Some(caps) => caps,
        None => capabilities(&mut conn).await?,
    };
    // The capabilities after login: from the OK's [CAPABILITY ...] when the server sends it
    // (Dovecot does; one round trip less per connection), else asked for.
    let caps = match authenticate::login(&mut conn, &caps, config).await? {
        Some(after) => after,
        None => capabilities(&mut conn).await?,
    };
    conn.set_literal_plus(caps.literal_plus);
    if !caps.has("NAMESPACE") {
        return Ok((conn, caps, Namespace::default()));
    }
    let (conn, ns) = namespace::read(conn, config.timeout)
        .await
        .map_err(|detail| StoreError::ConnectionLost {
            endpoint: config.endpoint.to_string(),
            command: "NAMESPACE".into(),
            detail,
        })?;
    Ok((conn, caps, ns))
}

enum Prelude {
    Secured(TcpStream),
    NoStartTls(TcpStream),
}

/// Greeting and, when offered, STARTTLS on the raw socket.
async fn starttls_prelude(
    mut tcp: TcpStream,
    endpoint: &str,
    config: &SideConfig,
) -> Result<Prelude, StoreError> {
    let timeout = config.timeout;
    let lost = |detail: String| StoreError::ConnectionLost {
        endpoint: endpoint.to_string(),
        command: "STARTTLS".into(),
        detail,
    };
    let greeting = read_line(&mut tcp, timeout).await.map_err(lost)?;
    let upper = greeting.to_ascii_uppercase();
    if upper.starts_with("* PREAUTH") {
        return Err(StoreError::Refused {
            endpoint: endpoint.to_string(),
            detail: "the server greeted with PREAUTH on an unencrypted link; refusing it".into(),
        });
    }
    if !upper.starts_with("* OK") {
        return Err(StoreError::Refused {
            endpoint: endpoint.to_string(),
            detail: format!("unexpected greeting: {}", greeting.trim_end()),
        });
    }
    let mut offered = upper.contains(" STARTTLS");
    if !upper.contains("[CAPABILITY ") {
        write_all(&mut tcp, b"s1 CAPABILITY\r\n", timeout)
            .await
            .map_err(lost)?;
        loop {
            let line = read_line(&mut tcp, timeout)
                .await
                .map_err(lost)?
                .to_ascii_uppercase();
            if line.starts_with("* CAPABILITY ") {
                offered = line.split_whitespace().any(|w| w == "STARTTLS");
            } else if line.starts_with("s1 ".to_ascii_uppercase().as_str()) {
                break;
            }
        }
    }
    if !offered {
        return Ok(Prelude::NoStartTls(tcp));
    }
    write_all(&mut tcp, b"s2 STARTTLS\r\n", timeout)
        .await
        .map_err(lost)?;
    loop {
        let line = read_line(&mut tcp, timeout).await.map_err(lost)?;
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("S2 OK") {
            break;
        }
        if upper.starts_with("S2 ") {
            return Err(StoreError::Tls {
                endpoint: endpoint.to_string(),
                detail: format!("STARTTLS refused: {}", line.trim_end()),
            });
        }
    }
    // Anything already waiting was sent before the handshake and could be injected.
    let mut probe = [0u8; 1];
    match tcp.try_read(&mut probe) {
        Ok(0) => return Err(lost("the server closed the connection after STARTTLS".into())),
        Ok(_) => {
            return Err(StoreError::Tls {
                endpoint: endpoint.to_string(),
                detail: "the server sent data between STARTTLS and the TLS handshake (possible injection); refusing".into(),
            })
        }
        Err(_) => {}
    }
    Ok(Prelude::Secured(tcp))
}

async fn read_line(tcp: &mut TcpStream, timeout: std::time::Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, read_line_tcp(tcp, 64 * 1024)).await {
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
        Ok(Err(e)) => Err(format!("{e} before TLS")),
        Ok(Ok(line)) => Ok(String::from_utf8_lossy(&line).into_owned()),
    }
}

async fn write_all(
    tcp: &mut TcpStream,
    bytes: &[u8],
    timeout: std::time::Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, tcp.write_all(bytes)).await {
        Err(_) => Err("write timed out".into()),
        Ok(r) => r.map_err(|e| e.to_string()),
    }
}

/// One capability as the server spelled it (`AUTH=PLAIN`, `IDLE`).
/// Capabilities from a list the server volunteered, when it is complete (names the protocol
/// version); a partial list is not trusted.
pub(super) fn complete(atoms: Option<Vec<String>>) -> Option<Capabilities> {
    let atoms = atoms?;
    atoms
        .iter()
        .any(|a| a.eq_ignore_ascii_case("IMAP4REV1") || a.eq_ignore_ascii_case("IMAP4REV2"))
        .then(|| Capabilities::from_atoms(atoms.iter().map(String::as_str)))
}

pub(super) fn capability_atom(c: &Capability<'_>) -> String {
    match c {
        Capability::Imap4rev1 => "IMAP4REV1".to_string(),
        Capability::Auth(a) => format!("AUTH={a}"),
        Capability::Atom(a) => a.to_string(),
    }
}

/// Asks for CAPABILITY and parses the answer.
pub async fn capabilities(conn: &mut Connection) -> Result<Capabilities, StoreError> {
    let done = conn.run_text("CAPABILITY", Ctx::new("CAPABILITY")).await?;
    let mut atoms: Vec<String> = Vec::new();
    for r in &done.untagged {
        if let Response::Capabilities(caps) = r.parsed() {
            atoms.extend(caps.iter().map(capability_atom));
        }
    }
    if atoms.is_empty() {
        return Err(conn.protocol_error(Ctx::new("CAPABILITY"), "no CAPABILITY response".into()));
    }
    Ok(Capabilities::from_atoms(atoms.iter().map(String::as_str)))
}
