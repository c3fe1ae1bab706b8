//! JMAP session: the `jmap://` URL, credentials, and the session document (account, resolved
//! URLs, limits), parsed without I/O so every rule is unit-tested.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::error::JmapError;
use crate::config::Secret;
use crate::mailstore::imap::transport::is_loopback;

/// `urn:ietf:params:jmap:core`
pub const CORE: &str = "urn:ietf:params:jmap:core";
/// `urn:ietf:params:jmap:mail`
pub const MAIL: &str = "urn:ietf:params:jmap:mail";
/// The `using` of every request: only what we call. Cyrus answers 400 `unknownCapability` to
/// a longer list naming capabilities it lacks (jmap-client issue 32).
pub const USING: [&str; 2] = [CORE, MAIL];

/// How the session resource is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JmapScheme {
    /// `jmap://`: HTTPS.
    Https,
    /// `jmap+http://`: plain HTTP, loopback only unless plaintext is allowed.
    Http,
}

/// One JMAP account's server, from its URL: `jmap://user@host[:port][/path]`. The path is the
/// session resource, `/.well-known/jmap` by default. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JmapUrl {
    pub scheme: JmapScheme,
    pub user: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl JmapUrl {
    pub fn parse(raw: &str) -> Result<JmapUrl, JmapError> {
        let bad = |reason: &str| JmapError::BadUrl {
            url: crate::config::redact_userinfo(raw),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        let scheme = match url.scheme() {
            "jmap" => JmapScheme::Https,
            "jmap+http" => JmapScheme::Http,
            other => return Err(bad(&format!("unsupported scheme {other:?}"))),
        };
        let (user, host) =
            crate::config::user_and_host(&url, "missing user name (jmap://USER@host)")
                .map_err(bad)?;
        let port = url.port().unwrap_or(match scheme {
            JmapScheme::Https => 443,
            JmapScheme::Http => 80,
        });
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("unexpected query or fragment"));
        }
        let path = match url.path() {
            "" | "/" => "/.well-known/jmap".to_string(),
            p => p.to_string(),
        };
        Ok(JmapUrl {
            scheme,
            user,
            host,
            port,
            path,
        })
    }

    /// The HTTP(S) URL of the session resource.
    pub fn session_url(&self) -> Result<url::Url, JmapError> {
        let scheme = match self.scheme {
            JmapScheme::Https => "https",
            JmapScheme::Http => "http",
        };
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        url::Url::parse(&format!("{scheme}://{host}:{}{}", self.port, self.path)).map_err(|e| {
            JmapError::BadUrl {
                url: self.to_string(),
                reason: e.to_string(),
            }
        })
    }

    /// Refuses plain HTTP to anything but this machine unless the user allowed it.
    pub fn check_plaintext(&self, allow_plaintext: bool) -> Result<(), JmapError> {
        if self.scheme == JmapScheme::Http && !allow_plaintext && !is_loopback(&self.host) {
            return Err(JmapError::Plaintext {
                endpoint: self.to_string(),
                host: self.host.clone(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for JmapUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            JmapScheme::Https => "jmap",
            JmapScheme::Http => "jmap+http",
        };
        write!(
            f,
            "{scheme}://{}@{}:{}{}",
            self.user, self.host, self.port, self.path
        )
    }
}

/// How requests authenticate. The password or token comes from the project's password sources
/// ([`crate::config::PasswordSource`]: file, command or environment), never from the URL.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// HTTP Basic with the URL's user name.
    Password(Secret),
    /// `Authorization: Bearer <token>` (OAuth access tokens, app tokens).
    Bearer(Secret),
}

impl Credentials {
    /// The `Authorization` header value, marked sensitive so that reqwest and hyper never log it.
    pub(crate) fn header_value(
        &self,
        user: &str,
    ) -> Result<reqwest::header::HeaderValue, JmapError> {
        let raw = match self {
            Credentials::Password(p) => {
                let plain = Zeroizing::new(format!("{user}:{}", p.expose()));
                Zeroizing::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(plain.as_bytes())
                ))
            }
            Credentials::Bearer(t) => Zeroizing::new(format!("Bearer {}", t.expose())),
        };
        let mut value =
            reqwest::header::HeaderValue::from_str(&raw).map_err(|_| JmapError::BadUrl {
                url: user.to_string(),
                reason: "the password or token holds characters an HTTP header cannot carry".into(),
            })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// The server's limits (RFC 8620 section 2, `urn:ietf:params:jmap:core`), each at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    pub max_size_upload: u64,
    pub max_concurrent_upload: u64,
    pub max_size_request: u64,
    pub max_concurrent_requests: u64,
    pub max_calls_in_request: u64,
    pub max_objects_in_get: u64,
    pub max_objects_in_set: u64,
}

impl Default for Limits {
    /// Conservative values for a server that leaves a limit out (RFC 8620 says it must not).
    fn default() -> Limits {
        Limits {
            max_size_upload: 50_000_000,
            max_concurrent_upload: 4,
            max_size_request: 10_000_000,
            max_concurrent_requests: 4,
            max_calls_in_request: 16,
            max_objects_in_get: 500,
            max_objects_in_set: 500,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCoreCapability {
    max_size_upload: Option<u64>,
    max_concurrent_upload: Option<u64>,
    max_size_request: Option<u64>,
    max_concurrent_requests: Option<u64>,
    max_calls_in_request: Option<u64>,
    max_objects_in_get: Option<u64>,
    max_objects_in_set: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAccount {
    #[serde(default)]
    is_read_only: bool,
    #[serde(default)]
    account_capabilities: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSession {
    capabilities: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    accounts: BTreeMap<String, RawAccount>,
    #[serde(default)]
    primary_accounts: BTreeMap<String, String>,
    #[serde(default)]
    username: String,
    api_url: String,
    download_url: String,
    upload_url: String,
    #[serde(default)]
    event_source_url: Option<String>,
    #[serde(default)]
    state: String,
}

/// The mail-specific account limits (`urn:ietf:params:jmap:mail` in `accountCapabilities`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MailLimits {
    /// `null` (no limit) or at least 1.
    #[serde(default)]
    pub max_mailboxes_per_email: Option<u64>,
    #[serde(default)]
    pub max_keywords_per_email: Option<u64>,
    #[serde(default)]
    pub may_create_top_level_mailbox: Option<bool>,
}

/// A parsed session with every URL resolved against the URL the session was served from.
#[derive(Debug, Clone)]
pub struct Session {
    /// Where the session document was finally served from (after redirects).
    pub url: url::Url,
    pub username: String,
    /// The primary mail account.
    pub account_id: String,
    pub read_only: bool,
    pub api_url: url::Url,
    /// RFC 6570 level-1 templates, still relative; see [`Session::upload_url`],
    /// [`Session::download_url`].
    pub upload_template: String,
    pub download_template: String,
    pub event_source_template: Option<String>,
    pub state: String,
    pub limits: Limits,
    pub mail: MailLimits,
    /// Every capability the server advertised.
    pub capabilities: Vec<String>,
}

impl Session {
    /// Parses a session document served from `url`.
    pub fn parse(body: &[u8], url: url::Url, endpoint: &str) -> Result<Session, JmapError> {
        let protocol = |detail: String| JmapError::Protocol {
            endpoint: endpoint.to_string(),
            what: "session discovery".into(),
            detail,
        };
        let raw: RawSession = serde_json::from_slice(body)
            .map_err(|e| protocol(format!("the session document does not parse: {e}")))?;
        let core = raw
            .capabilities
            .get(CORE)
            .ok_or_else(|| protocol(format!("no {CORE} capability")))?;
        let core: RawCoreCapability = serde_json::from_value(core.clone())
            .map_err(|e| protocol(format!("the {CORE} capability does not parse: {e}")))?;
        let d = Limits::default();
        let at_least_1 = |v: Option<u64>, default: u64| v.unwrap_or(default).max(1);
        let limits = Limits {
            max_size_upload: at_least_1(core.max_size_upload, d.max_size_upload),
            max_concurrent_upload: at_least_1(core.max_concurrent_upload, d.max_concurrent_upload),
            max_size_request: at_least_1(core.max_size_request, d.max_size_request),
            max_concurrent_requests: at_least_1(
                core.max_concurrent_requests,
                d.max_concurrent_requests,
            ),
            max_calls_in_request: at_least_1(core.max_calls_in_request, d.max_calls_in_request),
            max_objects_in_get: at_least_1(core.max_objects_in_get, d.max_objects_in_get),
            max_objects_in_set: at_least_1(core.max_objects_in_set, d.max_objects_in_set),
        };
        if !raw.capabilities.contains_key(MAIL) {
            return Err(JmapError::NoMailAccount {
                endpoint: endpoint.to_string(),
                detail: format!("no {MAIL} capability"),
            });
        }
        let account_id =
            raw.primary_accounts
                .get(MAIL)
                .cloned()
                .ok_or_else(|| JmapError::NoMailAccount {
                    endpoint: endpoint.to_string(),
                    detail: "no primary mail account".into(),
                })?;
        let account = raw
            .accounts
            .get(&account_id)
            .ok_or_else(|| protocol(format!("primary account {account_id:?} is not listed")))?;
        let mail = match account.account_capabilities.get(MAIL) {
            Some(v) => serde_json::from_value(v.clone()).unwrap_or_default(),
            None => MailLimits::default(),
        };
        let api_url = url
            .join(&raw.api_url)
            .map_err(|e| protocol(format!("apiUrl {:?}: {e}", raw.api_url)))?;
        let session = Session {
            username: raw.username,
            read_only: account.is_read_only,
            account_id,
            api_url,
            upload_template: raw.upload_url,
            download_template: raw.download_url,
            event_source_template: raw.event_source_url,
            state: raw.state,
            limits,
            mail,
            capabilities: raw.capabilities.keys().cloned().collect(),
            url,
        };
        // Both templates must resolve now, not at the first upload.
        session.upload_url().map_err(&protocol)?;
        session.download_url("b", "n", "t").map_err(&protocol)?;
        Ok(session)
    }

    /// The upload URL for the primary account.
    pub fn upload_url(&self) -> Result<url::Url, String> {
        resolve_template(
            &self.url,
            &self.upload_template,
            &[("accountId", &self.account_id)],
        )
    }

    /// The download URL of one blob.
    pub fn download_url(&self, blob_id: &str, name: &str, type_: &str) -> Result<url::Url, String> {
        resolve_template(
            &self.url,
            &self.download_template,
            &[
                ("accountId", &self.account_id),
                ("blobId", blob_id),
                ("name", name),
                ("type", type_),
            ],
        )
    }
}

/// Expands an RFC 6570 level-1 template (`{var}`, values percent-encoded except unreserved
/// characters) and resolves the result against `base`. Expanding first matters: a URL parser
/// would percent-encode the braces of a relative template.
pub fn resolve_template(
    base: &url::Url,
    template: &str,
    vars: &[(&str, &str)],
) -> Result<url::Url, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in URL template {template:?}"))?;
        let name = &after[..close];
        let value = vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("unknown variable {{{name}}} in URL template {template:?}"))?;
        percent_encode_unreserved(value, &mut out);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    base.join(&out)
        .map_err(|e| format!("URL template {template:?}: {e}"))
}

fn percent_encode_unreserved(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jmap_urls() {
        let u = JmapUrl::parse("jmap://alice@mail.example.com").unwrap();
        assert_eq!(
            (u.scheme, u.user.as_str(), u.port, u.path.as_str()),
            (JmapScheme::Https, "alice", 443, "/.well-known/jmap")
        );
        assert_eq!(
            u.session_url().unwrap().as_str(),
            "https://mail.example.com/.well-known/jmap"
        );
        let u =
            JmapUrl::parse("jmap+http://bob%40example.com@127.0.0.1:17080/jmap/session").unwrap();
        assert_eq!(
            (u.scheme, u.user.as_str(), u.port, u.path.as_str()),
            (JmapScheme::Http, "bob@example.com", 17080, "/jmap/session")
        );
        assert_eq!(
            u.to_string(),
            "jmap+http://bob@example.com@127.0.0.1:17080/jmap/session"
        );
        let u = JmapUrl::parse("jmap+http://c@[::1]:8080").unwrap();
        assert_eq!(
            u.session_url().unwrap().as_str(),
            "http://[::1]:8080/.well-known/jmap"
        );
    }

    #[test]
    fn rejects_bad_urls_without_echoing_passwords() {
        for bad in [
            "imap://a@b",
            "jmap://host",
            "jmap://a@host/?x=1",
            "not a url",
        ] {
            assert!(JmapUrl::parse(bad).is_err(), "{bad}");
        }
        let e = JmapUrl::parse("jmap://a:hunter2@host")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let local = JmapUrl::parse("jmap+http://a@127.0.0.1:17080").unwrap();
        assert!(local.check_plaintext(false).is_ok());
        let remote = JmapUrl::parse("jmap+http://a@mail.example.com").unwrap();
        assert!(matches!(
            remote.check_plaintext(false),
            Err(JmapError::Plaintext { .. })
        ));
        assert!(remote.check_plaintext(true).is_ok());
        let tls = JmapUrl::parse("jmap://a@mail.example.com").unwrap();
        assert!(tls.check_plaintext(false).is_ok());
    }

    #[test]
    fn credentials_are_sensitive_headers() {
        let h = Credentials::Password(Secret::new("test".into()))
            .header_value("alice")
            .unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic YWxpY2U6dGVzdA==");
        let h = Credentials::Bearer(Secret::new("tok".into()))
            .header_value("alice")
            .unwrap();
        assert_eq!(h.to_str().unwrap(), "Bearer tok");
        let e = Credentials::Bearer(Secret::new("a\nb".into()))
            .header_value("alice")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("a\nb"));
        assert!(!format!("{:?}", Credentials::Bearer(Secret::new("tok".into()))).contains("tok"));
    }

    /// Cyrus 3.6's session, abridged: relative URLs, extra capabilities.
    const CYRUS_SESSION: &str = r#"{
      "username": "u1", "apiUrl": "/jmap/",
      "downloadUrl": "/jmap/download/{accountId}/{blobId}/{name}?accept={type}",
      "uploadUrl": "/jmap/upload/{accountId}/",
      "eventSourceUrl": "/jmap/eventsource/?types={types}&closeafter={closeafter}&ping={ping}",
      "state": "0",
      "capabilities": {
        "urn:ietf:params:jmap:core": {"maxSizeUpload": 1073741824, "maxConcurrentUpload": 5,
          "maxSizeRequest": 10485760, "maxConcurrentRequests": 5, "maxCallsInRequest": 50,
          "maxObjectsInGet": 4096, "maxObjectsInSet": 4096, "collationAlgorithms": []},
        "urn:ietf:params:jmap:mail": {}, "https://cyrusimap.org/ns/jmap/sieve": {}
      },
      "accounts": {"u1": {"name": "u1", "isPrimary": true, "isPersonal": true, "isReadOnly": false,
        "accountCapabilities": {"urn:ietf:params:jmap:mail": {"maxMailboxesPerEmail": 20,
          "maxKeywordsPerEmail": 100, "mayCreateTopLevelMailbox": true, "extra": [1]}}}},
      "primaryAccounts": {"urn:ietf:params:jmap:mail": "u1"}
    }"#;

    #[test]
    fn parses_a_cyrus_session_with_relative_urls() {
        let base = url::Url::parse("http://127.0.0.1:17080/jmap").unwrap();
        let s = Session::parse(CYRUS_SESSION.as_bytes(), base, "jmap+http://u1@x").unwrap();
        assert_eq!(s.api_url.as_str(), "http://127.0.0.1:17080/jmap/");
        assert_eq!(s.account_id, "u1");
        assert_eq!(
            s.upload_url().unwrap().as_str(),
            "http://127.0.0.1:17080/jmap/upload/u1/"
        );
        assert_eq!(
            s.download_url("Gab", "a b/c.eml", "message/rfc822")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:17080/jmap/download/u1/Gab/a%20b%2Fc.eml?accept=message%2Frfc822"
        );
        assert_eq!(s.limits.max_calls_in_request, 50);
        assert_eq!(s.limits.max_objects_in_get, 4096);
        assert_eq!(s.mail.max_mailboxes_per_email, Some(20));
        assert!(!s.read_only);
    }

    #[test]
    fn session_without_mail_or_limits() {
        let base = url::Url::parse("https://h/.well-known/jmap").unwrap();
        let no_mail = r#"{"apiUrl":"/a","downloadUrl":"/d","uploadUrl":"/u",
            "capabilities":{"urn:ietf:params:jmap:core":{}}}"#;
        assert!(matches!(
            Session::parse(no_mail.as_bytes(), base.clone(), "e"),
            Err(JmapError::NoMailAccount { .. })
        ));
        let zero = r#"{"apiUrl":"https://api.example/jmap","downloadUrl":"/d/{blobId}","uploadUrl":"/u/{accountId}",
            "capabilities":{"urn:ietf:params:jmap:core":{"maxCallsInRequest":0},"urn:ietf:params:jmap:mail":{}},
            "accounts":{"A":{"accountCapabilities":{}}},"primaryAccounts":{"urn:ietf:params:jmap:mail":"A"}}"#;
        let s = Session::parse(zero.as_bytes(), base.clone(), "e").unwrap();
        assert_eq!(s.limits.max_calls_in_request, 1);
        assert_eq!(
            s.limits.max_objects_in_get,
            Limits::default().max_objects_in_get
        );
        assert_eq!(s.api_url.as_str(), "https://api.example/jmap");
        let bad_template = zero.replace("/u/{accountId}", "/u/{accountId");
        assert!(matches!(
            Session::parse(bad_template.as_bytes(), base, "e"),
            Err(JmapError::Protocol { .. })
        ));
    }
}
