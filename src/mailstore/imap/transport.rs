//! TCP and TLS transport: one stream type for plain and TLS links, TCP_NODELAY and keepalive
//! on every socket, and the rustls client configuration (system roots, extra CA, or insecure).

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// How certificates are checked.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// An extra CA to trust, in PEM.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate checks entirely (said loudly by the CLI).
    pub insecure: bool,
}

/// A connected stream, plain or TLS.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Plain(_) => "Transport::Plain",
            Transport::Tls(_) => "Transport::Tls",
        })
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Transport {
    /// One line, through its CRLF and not a byte more: what follows belongs to whoever reads
    /// next (see [`read_line_tcp`]). Over TLS the bytes come from rustls's buffer, so reading
    /// them one at a time costs no system call.
    pub async fn read_line_exact(&mut self, limit: usize) -> Result<Vec<u8>, String> {
        let tls = match self {
            Transport::Plain(tcp) => return read_line_tcp(tcp, limit).await,
            Transport::Tls(tls) => tls,
        };
        let mut line = Vec::with_capacity(128);
        let mut byte = [0u8; 1];
        loop {
            let n = tokio::io::AsyncReadExt::read(tls.as_mut(), &mut byte)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            line.push(byte[0]);
            if line.ends_with(b"\r\n") {
                return Ok(line);
            }
            if line.len() > limit {
                return Err(format!("a line longer than {limit} bytes"));
            }
        }
    }
}

/// One line from a plain socket, through its CRLF and not a byte more: the waiting bytes are
/// peeked, and only those up to the line's end are taken (two system calls per line instead of
/// one per byte). What follows stays in the socket for whoever reads next: the connection
/// layer, or after STARTTLS the TLS handshake, which must not find it consumed.
pub async fn read_line_tcp(tcp: &mut TcpStream, limit: usize) -> Result<Vec<u8>, String> {
    let mut line = Vec::with_capacity(128);
    let mut window = [0u8; 1024];
    loop {
        let n = tcp.peek(&mut window).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        let take = memchr::memchr(b'\n', &window[..n]).map_or(n, |i| i + 1);
        let start = line.len();
        line.resize(start + take, 0);
        tokio::io::AsyncReadExt::read_exact(tcp, &mut line[start..])
            .await
            .map_err(|e| e.to_string())?;
        if line.ends_with(b"\r\n") {
            return Ok(line);
        }
        if line.len() > limit {
            return Err(format!("a line longer than {limit} bytes"));
        }
    }
}

/// Whether a host name or address is this machine (plaintext is tolerated only there).
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Opens a TCP connection with TCP_NODELAY (Nagle plus delayed ACK stalls each APPEND literal)
/// and keepalive (a dead peer is noticed during long IDLEs).
pub async fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addr = (host.trim_matches(['[', ']']), port);
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(format!("no answer within {} s", timeout.as_secs())),
        Ok(Err(e)) => return Err(describe_io(&e)),
        Ok(Ok(s)) => s,
    };
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let sock = socket2::SockRef::from(&stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(20));
    sock.set_tcp_keepalive(&keepalive)
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            "connection refused (nothing listens on that port)".to_string()
        }
        _ if e.to_string().contains("failed to lookup address") => format!("unknown host ({e})"),
        _ => e.to_string(),
    }
}

/// Wraps a TCP stream in TLS, checking the certificate against `host` unless insecure.
pub async fn start_tls(
    stream: TcpStream,
    host: &str,
    options: &TlsOptions,
    timeout: Duration,
) -> Result<Transport, String> {
    let config = client_config(options)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| format!("invalid server name {host:?}: {e}"))?;
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Err(_) => Err(format!("no TLS handshake within {} s", timeout.as_secs())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(tls)) => Ok(Transport::Tls(Box::new(tls))),
    }
}

fn client_config(options: &TlsOptions) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if options.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &options.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "CA file {} holds no PEM certificate",
                path.display()
            ));
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The verifier behind `--insecure`: accepts any certificate, still checks signatures of the
/// handshake itself.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("mail.example.com"));
        assert!(!is_loopback("10.0.0.1"));
    }

    /// A line is taken whole and nothing after it: a line sent in pieces, a bare LF inside
    /// one, and the next line left in the socket.
    #[test]
    fn a_line_is_read_through_its_crlf_and_no_further() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let (mut s, _) = listener.accept().await.unwrap();
                s.write_all(b"* OK [CAPA").await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                s.write_all(b"BILITY IMAP4rev1] hi\r\na\nb\r\nNEXT")
                    .await
                    .unwrap();
                s.write_all(&[b'x'; 100]).await.unwrap();
                s
            });
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let line = read_line_tcp(&mut tcp, 1000).await.unwrap();
            assert_eq!(line, b"* OK [CAPABILITY IMAP4rev1] hi\r\n");
            let line = read_line_tcp(&mut tcp, 1000).await.unwrap();
            assert_eq!(line, b"a\nb\r\n");
            let _server = server.await.unwrap();
            let mut rest = [0u8; 4];
            tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut rest)
                .await
                .unwrap();
            assert_eq!(&rest, b"NEXT");
            let err = read_line_tcp(&mut tcp, 50).await.unwrap_err();
            assert!(err.contains("longer than 50"), "{err}");
        });
    }
}
