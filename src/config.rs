//! Validated settings for one side: its URL, its password source, and how to connect.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use zeroize::Zeroizing;

use crate::mailstore::imap::transport::TlsOptions;

/// A configuration problem the user can fix; exits with code 2.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(
        "invalid URL {url:?}: {reason}. Expected imap://user@host:port (STARTTLS), imaps://user@host:port (TLS) or imap+plain://user@host:port (no TLS, loopback)."
    )]
    BadUrl { url: String, reason: String },
    #[error("no password for the {side} account {endpoint}: set {env}, or pass --{side}-password-file or --{side}-password-command")]
    NoPassword {
        side: String,
        endpoint: String,
        env: String,
    },
    #[error("cannot read the {side} password: {detail}")]
    PasswordSource { side: String, detail: String },
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
}

/// One account on one server, from its URL. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub user: String,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(raw: &str) -> Result<Endpoint, ConfigError> {
        let bad = |reason: &str| ConfigError::BadUrl {
            url: redact_userinfo(raw),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        let scheme = match url.scheme() {
            "imap" => Scheme::Imap,
            "imaps" => Scheme::Imaps,
            "imap+plain" => Scheme::ImapPlain,
            other => return Err(bad(&format!("unsupported scheme {other:?}"))),
        };
        let (user, host) =
            user_and_host(&url, "missing user name (imap://USER@host:port)").map_err(bad)?;
        let port = url.port().unwrap_or(match scheme {
            Scheme::Imap | Scheme::ImapPlain => 143,
            Scheme::Imaps => 993,
        });
        if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
            return Err(bad("unexpected path or query"));
        }
        Ok(Endpoint {
            scheme,
            user,
            host,
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Imap => "imap",
            Scheme::Imaps => "imaps",
            Scheme::ImapPlain => "imap+plain",
        };
        write!(f, "{scheme}://{}@{}:{}", self.user, self.host, self.port)
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

/// Where a password comes from, in order of precedence: file, command, environment variable.
#[derive(Debug, Clone, Default)]
pub struct PasswordSource {
    pub file: Option<PathBuf>,
    pub command: Option<String>,
    pub env_var: String,
}

impl PasswordSource {
    /// Reads the password. Only the first line of a file or command output is used.
    pub fn resolve(&self, side: &str, endpoint: &Endpoint) -> Result<Secret, ConfigError> {
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

/// Everything needed to open one side.
#[derive(Debug, Clone)]
pub struct SideConfig {
    pub endpoint: Endpoint,
    pub password: Secret,
    pub tls: TlsOptions,
    pub allow_plaintext: bool,
    pub timeout: Duration,
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
    fn secrets_are_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2".into())),
            "Secret(<redacted>)"
        );
    }
}
