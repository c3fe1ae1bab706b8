//! Where the real test servers are (started by `scripts/test-servers start`):
//! addresses, ports (with `MR_*` environment overrides), the CA file, the
//! shared password, unique per-test user names and Cyrus user creation.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What every helper says when a server cannot be reached.
pub const START_HINT: &str = "start the test servers with scripts/test-servers start";

/// The password of every test user on every test server.
pub const PASSWORD: &str = "test";

const HOST: &str = "127.0.0.1";

/// One real IMAP server of the test environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestServer {
    pub name: &'static str,
    pub host: String,
    pub port: u16,
    pub tls_port: Option<u16>,
}

fn env_port(var: &str, default: u16) -> u16 {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a port number")),
        _ => default,
    }
}

impl TestServer {
    fn new(name: &'static str, port: u16, tls_port: Option<u16>) -> TestServer {
        TestServer {
            name,
            host: HOST.to_string(),
            port,
            tls_port,
        }
    }

    /// Dovecot primary: IMAP 14143 (`MR_DOVECOT_PRIMARY_PORT`), IMAPS 14993
    /// (`MR_DOVECOT_PRIMARY_TLS_PORT`).
    pub fn dovecot_primary() -> TestServer {
        Self::new(
            "dovecot-primary",
            env_port("MR_DOVECOT_PRIMARY_PORT", 14143),
            Some(env_port("MR_DOVECOT_PRIMARY_TLS_PORT", 14993)),
        )
    }

    /// Dovecot recovery: IMAP 15143 (`MR_DOVECOT_RECOVERY_PORT`), IMAPS 15993
    /// (`MR_DOVECOT_RECOVERY_TLS_PORT`).
    pub fn dovecot_recovery() -> TestServer {
        Self::new(
            "dovecot-recovery",
            env_port("MR_DOVECOT_RECOVERY_PORT", 15143),
            Some(env_port("MR_DOVECOT_RECOVERY_TLS_PORT", 15993)),
        )
    }

    /// Dovecot without CONDSTORE/QRESYNC: IMAP 16143
    /// (`MR_DOVECOT_NOCONDSTORE_PORT`), IMAPS 16993
    /// (`MR_DOVECOT_NOCONDSTORE_TLS_PORT`).
    pub fn dovecot_nocondstore() -> TestServer {
        Self::new(
            "dovecot-nocondstore",
            env_port("MR_DOVECOT_NOCONDSTORE_PORT", 16143),
            Some(env_port("MR_DOVECOT_NOCONDSTORE_TLS_PORT", 16993)),
        )
    }

    /// Dovecot with a Courier-style namespace: `.` separator, every folder below the
    /// `INBOX.` prefix. IMAP 18143 (`MR_DOVECOT_DOTTED_PORT`), IMAPS 18993
    /// (`MR_DOVECOT_DOTTED_TLS_PORT`).
    pub fn dovecot_dotted() -> TestServer {
        Self::new(
            "dovecot-dotted",
            env_port("MR_DOVECOT_DOTTED_PORT", 18143),
            Some(env_port("MR_DOVECOT_DOTTED_TLS_PORT", 18993)),
        )
    }

    /// Dovecot with more ways in: XOAUTH2 and OAUTHBEARER (JWTs signed with
    /// [`auth_jwt_key`], validated locally) and a master user ([`AUTH_MASTER_USER`]), besides
    /// the test password. IMAP 20143 (`MR_DOVECOT_AUTH_PORT`), IMAPS 20993
    /// (`MR_DOVECOT_AUTH_TLS_PORT`).
    pub fn dovecot_auth() -> TestServer {
        Self::new(
            "dovecot-auth",
            env_port("MR_DOVECOT_AUTH_PORT", 20143),
            Some(env_port("MR_DOVECOT_AUTH_TLS_PORT", 20993)),
        )
    }

    /// Cyrus IMAP: IMAP 17143 (`MR_CYRUS_IMAP_PORT`), no IMAPS. Users must be
    /// created with [`TestServer::ensure_user`] before logging in.
    pub fn cyrus() -> TestServer {
        Self::new("cyrus", env_port("MR_CYRUS_IMAP_PORT", 17143), None)
    }

    /// Cyrus with its defaults for fidelity: IMAP 19143 (`MR_CYRUS_STOCK_IMAP_PORT`);
    /// `munge8bit` (8-bit header bytes become `X`) and at most 10 identical messages per
    /// folder. Users via [`TestServer::ensure_user`].
    pub fn cyrus_stock() -> TestServer {
        Self::new(
            "cyrus-stock",
            env_port("MR_CYRUS_STOCK_IMAP_PORT", 19143),
            None,
        )
    }

    pub fn is_cyrus(&self) -> bool {
        self.name.starts_with("cyrus")
    }

    /// The plain IMAP address.
    pub fn addr(&self) -> SocketAddr {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("{}: bad address {}:{}", self.name, self.host, self.port))
    }

    /// The IMAPS address, if the server has one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        let port = self.tls_port?;
        (self.host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
    }

    /// `imap://USER@127.0.0.1:PORT`
    pub fn url(&self, user: &str) -> String {
        format!("imap://{user}@{}:{}", self.host, self.port)
    }

    /// `imaps://USER@127.0.0.1:TLS_PORT`, if the server has IMAPS.
    pub fn imaps_url(&self, user: &str) -> Option<String> {
        self.tls_port
            .map(|p| format!("imaps://{user}@{}:{p}", self.host))
    }

    /// Whether the plain IMAP port accepts TCP connections right now.
    pub fn is_reachable(&self) -> bool {
        TcpStream::connect_timeout(&self.addr(), Duration::from_secs(2)).is_ok()
    }

    /// Panics with [`START_HINT`] unless the server is reachable.
    pub fn require(&self) {
        assert!(
            self.is_reachable(),
            "{} is not reachable at {}:{}: {START_HINT}",
            self.name,
            self.host,
            self.port
        );
    }

    /// Makes sure `name` can log in with [`PASSWORD`]. Cyrus: runs
    /// `scripts/test-servers cyrus-user NAME` (panics if it fails). Dovecot
    /// accepts any user name already, so this is a no-op there.
    pub fn ensure_user(&self, name: &str) {
        if !self.is_cyrus() {
            return;
        }
        self.require();
        let script = manifest_dir().join("scripts/test-servers");
        let instance = if self.name == "cyrus-stock" {
            "stock"
        } else {
            "cyrus"
        };
        let out = Command::new(&script)
            .arg("cyrus-user")
            .arg(name)
            .arg(instance)
            .output()
            .unwrap_or_else(|e| panic!("running {} cyrus-user {name}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} cyrus-user {name} failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Where a Dovecot test instance keeps a user's mail (`MAILREPLICA_SERVERS_DIR`, default
/// `/var/tmp/mailreplica-servers`): `<dir>/dovecot-<instance>/mail/<user>`.
pub fn dovecot_mail_dir(instance: &str, user: &str) -> PathBuf {
    let dir = match std::env::var_os("MAILREPLICA_SERVERS_DIR") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("/var/tmp/mailreplica-servers"),
    };
    dir.join(format!("dovecot-{instance}"))
        .join("mail")
        .join(user)
}

/// The master user of the Dovecot "auth" instance (`MR_DOVECOT_AUTH_MASTER_USER`) and its
/// password (`MR_DOVECOT_AUTH_MASTER_PASSWORD`).
pub const AUTH_MASTER_USER: &str = "admin";
pub const AUTH_MASTER_PASSWORD: &str = "masterpw";

/// The HS256 key (raw bytes) the Dovecot "auth" instance checks JWTs with: the base64 file
/// `MR_DOVECOT_AUTH_JWT_KEY`, default `<servers dir>/dovecot-auth/keys/default/HS256/default`.
pub fn auth_jwt_key() -> Vec<u8> {
    use base64::Engine;
    let path = match std::env::var_os("MR_DOVECOT_AUTH_JWT_KEY") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => dovecot_mail_dir("auth", "x")
            .parent()
            .and_then(|p| p.parent())
            .map(|inst| inst.join("keys/default/HS256/default"))
            .expect("servers dir"),
    };
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: {START_HINT}", path.display()));
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap_or_else(|e| panic!("{}: not base64: {e}", path.display()))
}

/// The project root (`CARGO_MANIFEST_DIR`).
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Port of Cyrus' HTTP (JMAP) listener: 17080 (`MR_CYRUS_HTTP_PORT`).
pub fn cyrus_http_port() -> u16 {
    env_port("MR_CYRUS_HTTP_PORT", 17080)
}

/// Cyrus' JMAP well-known URL, `http://127.0.0.1:17080/.well-known/jmap`.
pub fn cyrus_jmap_url() -> String {
    format!("http://{HOST}:{}/.well-known/jmap", cyrus_http_port())
}

/// The CA certificate that signed the test servers' TLS certificates:
/// `MR_CA_FILE`, default `/var/tmp/mailreplica-servers/tls/ca.pem`.
pub fn ca_file() -> PathBuf {
    match std::env::var_os("MR_CA_FILE") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("/var/tmp/mailreplica-servers/tls/ca.pem"),
    }
}

fn base36(mut n: u128, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).unwrap()
}

/// A user name no other call, test process or earlier run has used:
/// the prefix (lowercased, alphanumerics only, at most 18 chars, `u` if
/// empty) + 6 base36 chars of pid + 4 of a process-wide counter + 12 of the
/// nanoseconds since the epoch. Lowercase alphanumerics only, <= 40 chars.
pub fn fresh_user(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut p: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(18)
        .collect();
    if p.is_empty() {
        p.push('u');
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_nanos();
    format!(
        "{p}{}{}{}",
        base36(u128::from(std::process::id()), 6),
        base36(u128::from(n), 4),
        base36(nanos, 12)
    )
}
