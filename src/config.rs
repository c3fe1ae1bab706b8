//! Validated settings: one side (its URL, its password source, how it logs in, how to
//! connect), and the configuration file (TOML: servers, accounts, pairs) that names many of
//! them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use zeroize::Zeroizing;

use crate::mailstore::imap::transport::TlsOptions;

/// A configuration problem the user can fix; exits with code 2.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(
        "invalid URL {url:?}: {reason}. Expected imap://user@host:port (STARTTLS), imaps://user@host:port (TLS), imap+plain://user@host:port (no TLS, loopback), jmap://user@host[:port][/path] (JMAP over HTTPS) or jmap+http://user@host:port[/path] (JMAP over plain HTTP, loopback)."
    )]
    BadUrl { url: String, reason: String },
    #[error("no {what} for the {side} account {endpoint}: set {env}, or pass --{side}-password-file or --{side}-password-command")]
    NoPassword {
        /// `password`, `access token` or `admin password`.
        what: String,
        side: String,
        endpoint: String,
        env: String,
    },
    #[error("cannot read the {side} password: {detail}")]
    PasswordSource { side: String, detail: String },
    #[error("{side}: {detail}")]
    Auth { side: String, detail: String },
    #[error("configuration file {path}: {detail}")]
    File { path: String, detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `imap://`: STARTTLS (required unless the host is loopback or plaintext is allowed).
    Imap,
    /// `imaps://`: implicit TLS.
    Imaps,
    /// `imap+plain://`: no TLS at all, even when offered (loopback only, unless plaintext is
    /// allowed). For local servers and test proxies that must see the commands.
    ImapPlain,
    /// `jmap://`: JMAP over HTTPS; the path is the session resource.
    Jmap,
    /// `jmap+http://`: JMAP over plain HTTP (loopback only, unless plaintext is allowed).
    JmapHttp,
}

impl Scheme {
    /// JMAP (`jmap://`, `jmap+http://`) rather than IMAP.
    pub fn is_jmap(self) -> bool {
        matches!(self, Scheme::Jmap | Scheme::JmapHttp)
    }
}

/// One account on one server, from its URL. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub user: String,
    pub host: String,
    pub port: u16,
    /// JMAP's session resource (`/.well-known/jmap` by default); empty for IMAP.
    pub path: String,
}

impl Endpoint {
    /// The account `user` on the server at `url` (`imap://host:port`, no user in it).
    pub fn for_server(url: &str, user: &str) -> Result<Endpoint, ConfigError> {
        let bad = |reason: &str| ConfigError::BadUrl {
            url: redact_userinfo(url),
            reason: reason.to_string(),
        };
        let mut parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "a server URL names no user; the user goes in the account",
            ));
        }
        if user.is_empty() {
            return Err(bad("the account's user is empty"));
        }
        parsed
            .set_username(user)
            .map_err(|()| bad("this URL cannot carry a user"))?;
        let mut endpoint = Endpoint::parse(parsed.as_str())?;
        endpoint.user = user.to_string();
        Ok(endpoint)
    }

    pub fn parse(raw: &str) -> Result<Endpoint, ConfigError> {
        let bad = |reason: &str| ConfigError::BadUrl {
            url: redact_userinfo(raw),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        let scheme = match url.scheme() {
            "jmap" | "jmap+http" => return Endpoint::parse_jmap(raw),
            "imap" => Scheme::Imap,
            "imaps" => Scheme::Imaps,
            "imap+plain" => Scheme::ImapPlain,
            other => return Err(bad(&format!("unsupported scheme {other:?}"))),
        };
        let (user, host) =
            user_and_host(&url, "missing user name (imap://USER@host:port)").map_err(bad)?;
        let port = url
            .port()
            .unwrap_or(if scheme == Scheme::Imaps { 993 } else { 143 });
        if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
            return Err(bad("unexpected path or query"));
        }
        Ok(Endpoint {
            scheme,
            user,
            host,
            port,
            path: String::new(),
        })
    }

    fn parse_jmap(raw: &str) -> Result<Endpoint, ConfigError> {
        use crate::mailstore::jmap::session::{JmapScheme, JmapUrl};
        let url = JmapUrl::parse(raw).map_err(|e| match e {
            crate::mailstore::jmap::JmapError::BadUrl { url, reason } => {
                ConfigError::BadUrl { url, reason }
            }
            other => ConfigError::BadUrl {
                url: redact_userinfo(raw),
                reason: other.to_string(),
            },
        })?;
        Ok(Endpoint {
            scheme: match url.scheme {
                JmapScheme::Https => Scheme::Jmap,
                JmapScheme::Http => Scheme::JmapHttp,
            },
            user: url.user,
            host: url.host,
            port: url.port,
            path: url.path,
        })
    }

    /// The JMAP session URL of a `jmap://` or `jmap+http://` endpoint; `None` for IMAP.
    pub fn jmap_url(&self) -> Option<crate::mailstore::jmap::session::JmapUrl> {
        use crate::mailstore::jmap::session::{JmapScheme, JmapUrl};
        let scheme = match self.scheme {
            Scheme::Jmap => JmapScheme::Https,
            Scheme::JmapHttp => JmapScheme::Http,
            Scheme::Imap | Scheme::Imaps | Scheme::ImapPlain => return None,
        };
        Some(JmapUrl {
            scheme,
            user: self.user.clone(),
            host: self.host.clone(),
            port: self.port,
            path: self.path.clone(),
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Imap => "imap",
            Scheme::Imaps => "imaps",
            Scheme::ImapPlain => "imap+plain",
            Scheme::Jmap => "jmap",
            Scheme::JmapHttp => "jmap+http",
        };
        write!(f, "{scheme}://{}@{}:{}", self.user, self.host, self.port)?;
        if self.scheme.is_jmap() && self.path != "/.well-known/jmap" {
            f.write_str(&self.path)?;
        }
        Ok(())
    }
}

/// The URL with any `user:password@` part reduced to `user:***@`, for error messages.
/// The percent-decoded user and the host of an account URL (IMAP or JMAP), or why not: a
/// password in the URL is refused (secrets come from the environment, a file or a command).
/// `missing_user` is what to say without a user name.
pub(crate) fn user_and_host(
    url: &url::Url,
    missing_user: &'static str,
) -> Result<(String, String), &'static str> {
    if url.password().is_some() {
        return Err(
            "passwords do not belong in URLs; use the password environment variable, file or command",
        );
    }
    let user = url::form_urlencoded::parse(format!("u={}", url.username()).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if user.is_empty() {
        return Err(missing_user);
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("missing host")?
        .to_string();
    Ok((user, host))
}

pub(crate) fn redact_userinfo(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return raw.to_string();
    };
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &raw[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            ),
            None => raw.to_string(),
        },
        None => raw.to_string(),
    }
}

/// A password, wiped from memory on drop and never printed.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(Zeroizing::new(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a password (or, with an OAuth mechanism, an access token) comes from, in order of
/// precedence: file, command, environment variable.
#[derive(Debug, Clone, Default)]
pub struct PasswordSource {
    pub file: Option<PathBuf>,
    pub command: Option<String>,
    pub env_var: String,
}

impl PasswordSource {
    /// Reads the password. Only the first line of a file or command output is used.
    pub fn resolve(&self, side: &str, endpoint: &Endpoint) -> Result<Secret, ConfigError> {
        self.resolve_as(side, endpoint, "password")
    }

    /// Reads the secret, named `what` (`access token`, ...) when there is none.
    pub fn resolve_as(
        &self,
        side: &str,
        endpoint: &Endpoint,
        what: &str,
    ) -> Result<Secret, ConfigError> {
        let err = |detail: String| ConfigError::PasswordSource {
            side: side.to_string(),
            detail,
        };
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
            return Ok(Secret::new(first_line(text)));
        }
        if let Some(command) = &self.command {
            // Run as argv, no shell, so nothing in the command line is interpreted.
            let argv: Vec<&str> = command.split_whitespace().collect();
            let (program, args) = argv
                .split_first()
                .ok_or_else(|| err("the password command is empty".into()))?;
            let output = std::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| err(format!("cannot run {program:?}: {e}")))?;
            if !output.status.success() {
                return Err(err(format!("{program:?} exited with {}", output.status)));
            }
            let text = String::from_utf8(output.stdout)
                .map_err(|_| err(format!("{program:?} printed non-UTF-8")))?;
            return Ok(Secret::new(first_line(text)));
        }
        match std::env::var(&self.env_var) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err(ConfigError::NoPassword {
                what: what.to_string(),
                side: side.to_string(),
                endpoint: endpoint.to_string(),
                env: self.env_var.clone(),
            }),
        }
    }
}

fn first_line(text: String) -> String {
    let text = Zeroizing::new(text);
    text.lines().next().unwrap_or("").to_string()
}

/// The SASL mechanism a side logs in with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// A password: AUTHENTICATE PLAIN (with SASL-IR), else LOGIN.
    #[default]
    Plain,
    /// An OAuth 2.0 access token, Google's XOAUTH2.
    Xoauth2,
    /// An OAuth 2.0 access token, RFC 7628 OAUTHBEARER.
    Oauthbearer,
}

impl Mechanism {
    /// The name in AUTHENTICATE and in the `AUTH=` capability.
    pub fn sasl_name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Xoauth2 => "XOAUTH2",
            Mechanism::Oauthbearer => "OAUTHBEARER",
        }
    }

    pub fn is_oauth(self) -> bool {
        !matches!(self, Mechanism::Plain)
    }
}

impl std::str::FromStr for Mechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Mechanism, String> {
        match s.to_ascii_lowercase().as_str() {
            "plain" => Ok(Mechanism::Plain),
            "xoauth2" => Ok(Mechanism::Xoauth2),
            "oauthbearer" => Ok(Mechanism::Oauthbearer),
            _ => Err(format!(
                "unknown mechanism {s:?}: use plain, xoauth2 or oauthbearer"
            )),
        }
    }
}

/// How a side logs in, besides its secret.
#[derive(Debug, Clone, Default)]
pub struct AuthOptions {
    pub mechanism: Mechanism,
    /// Log in as this user with its password and act as the URL's user (SASL PLAIN with an
    /// authorization identity: a Dovecot master user, a Cyrus admin). Plain only.
    pub admin: Option<String>,
    /// For a token from a command or a file: fetched again once when the server refuses it.
    pub refresh: Option<TokenRefresh>,
}

impl AuthOptions {
    /// Checks the combination and reads the secret (`side` names the side in messages: "source",
    /// or the account of a configuration file).
    pub fn resolve(
        mechanism: Mechanism,
        admin: Option<String>,
        source: &PasswordSource,
        side: &str,
        endpoint: &Endpoint,
    ) -> Result<(AuthOptions, Secret), ConfigError> {
        let err = |detail: String| ConfigError::Auth {
            side: side.to_string(),
            detail,
        };
        if let Some(admin) = &admin {
            if admin.is_empty() {
                return Err(err("the admin user name is empty".into()));
            }
            if mechanism.is_oauth() {
                return Err(err(format!(
                    "an admin login ({admin}) uses a password over PLAIN; it cannot be combined with {}",
                    mechanism.sasl_name()
                )));
            }
        }
        let what = match (mechanism.is_oauth(), &admin) {
            (true, _) => "access token",
            (false, Some(_)) => "admin password",
            (false, None) => "password",
        };
        let secret = source.resolve_as(side, endpoint, what)?;
        let refresh = (mechanism.is_oauth() && (source.command.is_some() || source.file.is_some()))
            .then(|| TokenRefresh::new(source.clone(), side));
        Ok((
            AuthOptions {
                mechanism,
                admin,
                refresh,
            },
            secret,
        ))
    }
}

/// A token source that can be asked again, shared by every connection to a side (clones share
/// it): when the server refuses a token (expired), the first connection to notice runs the
/// command again (or re-reads the file) and every later connection uses the new token.
#[derive(Debug, Clone)]
pub struct TokenRefresh {
    source: PasswordSource,
    side: String,
    latest: Arc<tokio::sync::Mutex<Latest>>,
}

#[derive(Debug, Default)]
struct Latest {
    /// How many times a token was fetched again.
    generation: u64,
    /// The last token fetched again; `None`: the one read at start is still current.
    token: Option<Secret>,
}

impl TokenRefresh {
    pub fn new(source: PasswordSource, side: &str) -> TokenRefresh {
        TokenRefresh {
            source,
            side: side.to_string(),
            latest: Arc::default(),
        }
    }

    /// The token fetched last (`None`: the one read at start) and its generation, to hand
    /// back to [`TokenRefresh::renew`].
    pub async fn current(&self) -> (u64, Option<Secret>) {
        let latest = self.latest.lock().await;
        (latest.generation, latest.token.clone())
    }

    /// A new token, after `seen` was refused: fetched now, unless another connection did so
    /// since `seen` (then that one). The command runs off the async threads.
    pub async fn renew(&self, seen: u64, endpoint: &Endpoint) -> Result<Secret, ConfigError> {
        let mut latest = self.latest.lock().await;
        if latest.generation != seen {
            if let Some(token) = &latest.token {
                return Ok(token.clone());
            }
        }
        let (source, side, endpoint) = (self.source.clone(), self.side.clone(), endpoint.clone());
        let token = tokio::task::spawn_blocking(move || {
            source.resolve_as(&side, &endpoint, "access token")
        })
        .await
        .map_err(|e| ConfigError::PasswordSource {
            side: self.side.clone(),
            detail: format!("the token command did not finish: {e}"),
        })??;
        tracing::info!(side = %self.side, "fetched a new access token after the server refused one");
        latest.generation += 1;
        latest.token = Some(token.clone());
        Ok(token)
    }
}

/// Everything needed to open one side.
#[derive(Debug, Clone)]
pub struct SideConfig {
    pub endpoint: Endpoint,
    /// The password, the access token (OAuth) or the admin's password (admin login), as read
    /// at start.
    pub password: Secret,
    pub auth: AuthOptions,
    pub tls: TlsOptions,
    pub allow_plaintext: bool,
    pub timeout: Duration,
    /// A JMAP side's UID map (`mailstore::jmap::uid_map`), beside the pair's state; `None`
    /// keeps it in memory (commands without a state). Unused for IMAP.
    pub jmap_ids: Option<PathBuf>,
}

impl SideConfig {
    /// Keeps a JMAP side's UIDs beside the state file `state` (`<state>.<role>-ids`).
    pub fn keep_ids_beside(&mut self, state: &Path, role: &str) {
        if self.endpoint.scheme.is_jmap() {
            let mut name = state.as_os_str().to_owned();
            name.push(format!(".{role}-ids"));
            self.jmap_ids = Some(PathBuf::from(name));
        }
    }
}

/// The configuration file as written (see `man 5 mailreplica-config`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub watch: WatchSection,
    #[serde(default)]
    pub servers: BTreeMap<String, ServerSection>,
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountSection>,
    #[serde(default)]
    pub pairs: Vec<PairSection>,
}

/// `[watch]`: settings of every pair.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSection {
    /// Where state files go (`<state_dir>/<pair name>.redb`).
    pub state_dir: Option<PathBuf>,
    pub poll_interval: Option<u64>,
    pub idle_renew: Option<u64>,
    /// `false`: poll only.
    pub idle: Option<bool>,
}

/// `[servers.NAME]`: one server, without an account.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `imap://host:port`, `imaps://host:port` or `imap+plain://host:port` (no user).
    pub url: String,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Seconds to wait for any answer (default 120).
    pub timeout: Option<u64>,
    /// Connections all pairs together may hold open to this server (default: no limit).
    pub max_connections: Option<u32>,
}

/// `[accounts.NAME]`: a user on a server, how it logs in and where its password (or access
/// token) comes from.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSection {
    pub server: String,
    pub user: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// argv (a list), or a string split at white space; never run through a shell.
    pub password_command: Option<CommandLine>,
    /// `plain` (default), `xoauth2` or `oauthbearer`: with OAuth, the password source gives
    /// the access token.
    #[serde(default)]
    pub auth: Mechanism,
    /// Log in as this admin (its password from the password source) and act as `user`.
    pub admin: Option<String>,
}

/// A command as a list of arguments or as one string.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    Argv(Vec<String>),
    Line(String),
}

/// `[[pairs]]`: a primary account replicated to a recovery account.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSection {
    pub name: String,
    pub primary: String,
    pub recovery: String,
    /// The pair's state file (default `<state_dir>/<name>.redb`).
    pub state: Option<PathBuf>,
    #[serde(default)]
    pub allow_deletions: bool,
}

/// One pair of a configuration file, validated, passwords read.
#[derive(Debug, Clone)]
pub struct ConfiguredPair {
    pub name: String,
    pub source: SideConfig,
    pub target: SideConfig,
    /// The names of the servers in the file (connection limits are per server).
    pub source_server: String,
    pub target_server: String,
    /// `None`: the default path of the pair id.
    pub state: Option<PathBuf>,
    pub allow_deletions: bool,
}

/// A configuration file, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub watch: WatchSection,
    pub pairs: Vec<ConfiguredPair>,
    /// `max_connections` per server name.
    pub max_connections: BTreeMap<String, u32>,
}

impl ConfigFile {
    /// Reads and parses a file; nothing is resolved yet.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let err = |detail: String| ConfigError::File {
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// Checks every reference and reads the passwords (`resolve_secrets` false: for `status`,
    /// which reaches no server).
    pub fn validate(&self, path: &Path, resolve_secrets: bool) -> Result<Config, ConfigError> {
        let err = |detail: String| ConfigError::File {
            path: path.display().to_string(),
            detail,
        };
        if self.pairs.is_empty() {
            return Err(err("no [[pairs]]: nothing to replicate".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut pairs = Vec::new();
        for p in &self.pairs {
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
            {
                return Err(err(format!(
                    "pair name {:?}: use letters, digits and - _ . @ only (it names the state file)",
                    p.name
                )));
            }
            if !names.insert(p.name.clone()) {
                return Err(err(format!("two pairs are named {:?}", p.name)));
            }
            let side = |account: &str, role: &str| -> Result<(SideConfig, String), ConfigError> {
                let a = self.accounts.get(account).ok_or_else(|| {
                    err(format!(
                        "pair {:?}: {role} account {account:?} is not defined in [accounts]",
                        p.name
                    ))
                })?;
                let server = self.servers.get(&a.server).ok_or_else(|| {
                    err(format!(
                        "account {account:?}: server {:?} is not defined in [servers]",
                        a.server
                    ))
                })?;
                let endpoint = Endpoint::for_server(&server.url, &a.user)
                    .map_err(|e| err(format!("server {:?}: {e}", a.server)))?;
                let label = format!("{role} account {account:?} of pair {:?}", p.name);
                let (auth, password) = if resolve_secrets {
                    let source = PasswordSource {
                        file: a.password_file.clone(),
                        command: a.password_command.as_ref().map(|c| match c {
                            CommandLine::Argv(v) => v.join(" "),
                            CommandLine::Line(l) => l.clone(),
                        }),
                        env_var: a.password_env.clone().unwrap_or_default(),
                    };
                    if source.file.is_none()
                        && source.command.is_none()
                        && source.env_var.is_empty()
                    {
                        return Err(err(format!(
                            "account {account:?}: no password source; set password_env, password_file or password_command"
                        )));
                    }
                    AuthOptions::resolve(a.auth, a.admin.clone(), &source, &label, &endpoint)?
                } else {
                    (AuthOptions::default(), Secret::new(String::new()))
                };
                Ok((
                    SideConfig {
                        endpoint,
                        password,
                        auth,
                        tls: TlsOptions {
                            ca_file: server.ca_file.clone(),
                            insecure: server.insecure,
                        },
                        allow_plaintext: server.allow_plaintext,
                        timeout: Duration::from_secs(server.timeout.unwrap_or(120).max(1)),
                        jmap_ids: None,
                    },
                    a.server.clone(),
                ))
            };
            let (source, source_server) = side(&p.primary, "primary")?;
            let (target, target_server) = side(&p.recovery, "recovery")?;
            let state = p.state.clone().or_else(|| {
                self.watch
                    .state_dir
                    .as_ref()
                    .map(|d| d.join(format!("{}.redb", p.name)))
            });
            let (mut source, mut target) = (source, target);
            if let Some(state) = &state {
                source.keep_ids_beside(state, "source");
                target.keep_ids_beside(state, "target");
            }
            pairs.push(ConfiguredPair {
                name: p.name.clone(),
                source,
                target,
                source_server,
                target_server,
                state,
                allow_deletions: p.allow_deletions,
            });
        }
        let mut max_connections = BTreeMap::new();
        for (name, server) in &self.servers {
            if let Some(n) = server.max_connections {
                // Half may IDLE; a pair with both sides on this server needs 2 for a pass.
                let both_sides = pairs
                    .iter()
                    .any(|p| &p.source_server == name && &p.target_server == name);
                let least = if both_sides { 4 } else { 2 };
                if n < least {
                    return Err(err(format!(
                        "server {name:?}: max_connections must be at least {least} (half may IDLE; a pass needs one connection per side{})",
                        if both_sides { ", and a pair has both sides on this server" } else { "" }
                    )));
                }
                max_connections.insert(name.clone(), n);
            }
        }
        Ok(Config {
            watch: self.watch.clone(),
            pairs,
            max_connections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let e = Endpoint::parse("imap://alice@127.0.0.1:14143").unwrap();
        assert_eq!(
            (e.scheme, e.user.as_str(), e.host.as_str(), e.port),
            (Scheme::Imap, "alice", "127.0.0.1", 14143)
        );
        let e = Endpoint::parse("imaps://bob%40example.com@mail.example.com").unwrap();
        assert_eq!((e.user.as_str(), e.port), ("bob@example.com", 993));
        assert_eq!(
            e.to_string(),
            "imaps://bob@example.com@mail.example.com:993"
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://a@b",
            "imap://host",
            "imap://a:pw@host",
            "not a url",
            "imap://a@host/INBOX",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_file_resolves_pairs() {
        let text = r#"
[watch]
state_dir = "/tmp/mr-state"
poll_interval = 30

[servers.main]
url = "imaps://mail.example.com"
max_connections = 10

[servers.dr]
url = "imap://dr.example.com:143"
timeout = 30

[accounts.alice]
server = "main"
user = "alice@example.com"
password_env = "MR_CONFIG_TEST_PW"

[accounts.alice-dr]
server = "dr"
user = "alice"
password_command = ["printf", "x"]

[[pairs]]
name = "alice"
primary = "alice"
recovery = "alice-dr"
"#;
        let file: ConfigFile = toml::from_str(text).unwrap();
        std::env::set_var("MR_CONFIG_TEST_PW", "pw");
        let config = file.validate(Path::new("t.toml"), true).unwrap();
        let pair = &config.pairs[0];
        assert_eq!(
            pair.source.endpoint.to_string(),
            "imaps://alice@example.com@mail.example.com:993"
        );
        assert_eq!(pair.target.endpoint.port, 143);
        assert_eq!(pair.source.password.expose(), "pw");
        assert_eq!(pair.target.password.expose(), "x");
        assert_eq!(pair.target.timeout, Duration::from_secs(30));
        assert_eq!(
            pair.state.as_deref(),
            Some(Path::new("/tmp/mr-state/alice.redb"))
        );
        assert_eq!(config.max_connections.get("main"), Some(&10));
        assert_eq!(config.watch.poll_interval, Some(30));
    }

    #[test]
    fn config_file_errors_name_what_is_wrong() {
        let missing = r#"
[servers.main]
url = "imap://h"
[accounts.a]
server = "main"
user = "a"
password_env = "X"
[[pairs]]
name = "p"
primary = "a"
recovery = "nope"
"#;
        let file: ConfigFile = toml::from_str(missing).unwrap();
        let e = file
            .validate(Path::new("t.toml"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"nope\" is not defined"), "{e}");
        assert!(
            toml::from_str::<ConfigFile>("[servers.x]\nurl = \"imap://h\"\nbogus = 1\n").is_err()
        );
        let one_server = r#"
[servers.main]
url = "imap://h"
max_connections = 3
[accounts.a]
server = "main"
user = "a"
[accounts.b]
server = "main"
user = "b"
[[pairs]]
name = "p"
primary = "a"
recovery = "b"
"#;
        let file: ConfigFile = toml::from_str(one_server).unwrap();
        let e = file
            .validate(Path::new("t.toml"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 4"), "{e}");
        let e = Endpoint::for_server("imap://u@h", "a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no user"), "{e}");
    }

    #[test]
    fn accounts_choose_how_they_log_in() {
        let text = r#"
[servers.main]
url = "imap://h"
[accounts.a]
server = "main"
user = "alice"
auth = "xoauth2"
password_command = ["printf", "token"]
[accounts.b]
server = "main"
user = "bob"
admin = "master"
password_env = "MR_CONFIG_TEST_ADMIN_PW"
[[pairs]]
name = "p"
primary = "a"
recovery = "b"
"#;
        std::env::set_var("MR_CONFIG_TEST_ADMIN_PW", "masterpw");
        let file: ConfigFile = toml::from_str(text).unwrap();
        let config = file.validate(Path::new("t.toml"), true).unwrap();
        let (source, target) = (&config.pairs[0].source, &config.pairs[0].target);
        assert_eq!(source.auth.mechanism, Mechanism::Xoauth2);
        assert!(
            source.auth.refresh.is_some(),
            "a token command can be run again"
        );
        assert_eq!(source.password.expose(), "token");
        assert_eq!(target.auth.mechanism, Mechanism::Plain);
        assert_eq!(target.auth.admin.as_deref(), Some("master"));
        assert!(target.auth.refresh.is_none());

        let both = text.replace(
            "admin = \"master\"",
            "admin = \"master\"\nauth = \"oauthbearer\"",
        );
        let file: ConfigFile = toml::from_str(&both).unwrap();
        let e = file
            .validate(Path::new("t.toml"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be combined with OAUTHBEARER"), "{e}");
        assert!(toml::from_str::<ConfigFile>(&text.replace("xoauth2", "kerberos")).is_err());
        assert_eq!("OAuthBearer".parse(), Ok(Mechanism::Oauthbearer));
        assert!("gssapi".parse::<Mechanism>().is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2".into())),
            "Secret(<redacted>)"
        );
    }
}
