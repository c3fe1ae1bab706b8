//! Errors of the JMAP transport: HTTP and method-level failures, per-object SetErrors, each
//! naming the server and the object and saying what to do. No variant ever holds a credential.

use std::fmt;

use serde::Deserialize;
use thiserror::Error;

use crate::mailstore::StoreError;

/// A method-level error type (RFC 8620 section 3.6.2 and the method sections). Types this code
/// does not know are kept as [`MethodErrorType::Other`], never a parse failure.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum MethodErrorType {
    ServerUnavailable,
    ServerFail,
    ServerPartialFail,
    UnknownMethod,
    InvalidArguments,
    InvalidResultReference,
    Forbidden,
    AccountNotFound,
    AccountNotSupportedByMethod,
    AccountReadOnly,
    RequestTooLarge,
    CannotCalculateChanges,
    StateMismatch,
    AnchorNotFound,
    UnsupportedSort,
    UnsupportedFilter,
    TooManyChanges,
    Other(String),
}

impl From<String> for MethodErrorType {
    fn from(s: String) -> Self {
        use MethodErrorType::*;
        match s.as_str() {
            "serverUnavailable" => ServerUnavailable,
            "serverFail" => ServerFail,
            "serverPartialFail" => ServerPartialFail,
            "unknownMethod" => UnknownMethod,
            "invalidArguments" => InvalidArguments,
            "invalidResultReference" => InvalidResultReference,
            "forbidden" => Forbidden,
            "accountNotFound" => AccountNotFound,
            "accountNotSupportedByMethod" => AccountNotSupportedByMethod,
            "accountReadOnly" => AccountReadOnly,
            "requestTooLarge" => RequestTooLarge,
            "cannotCalculateChanges" => CannotCalculateChanges,
            "stateMismatch" => StateMismatch,
            "anchorNotFound" => AnchorNotFound,
            "unsupportedSort" => UnsupportedSort,
            "unsupportedFilter" => UnsupportedFilter,
            "tooManyChanges" => TooManyChanges,
            _ => Other(s),
        }
    }
}

impl fmt::Display for MethodErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MethodErrorType::*;
        f.write_str(match self {
            ServerUnavailable => "serverUnavailable",
            ServerFail => "serverFail",
            ServerPartialFail => "serverPartialFail",
            UnknownMethod => "unknownMethod",
            InvalidArguments => "invalidArguments",
            InvalidResultReference => "invalidResultReference",
            Forbidden => "forbidden",
            AccountNotFound => "accountNotFound",
            AccountNotSupportedByMethod => "accountNotSupportedByMethod",
            AccountReadOnly => "accountReadOnly",
            RequestTooLarge => "requestTooLarge",
            CannotCalculateChanges => "cannotCalculateChanges",
            StateMismatch => "stateMismatch",
            AnchorNotFound => "anchorNotFound",
            UnsupportedSort => "unsupportedSort",
            UnsupportedFilter => "unsupportedFilter",
            TooManyChanges => "tooManyChanges",
            Other(s) => s,
        })
    }
}

impl MethodErrorType {
    /// What the user can do about a method refused with this error, one or two sentences.
    pub fn hint(&self) -> &'static str {
        use MethodErrorType::*;
        match self {
            ServerUnavailable | ServerFail | ServerPartialFail => {
                "The server failed to carry it out; retry later, and check the server's logs if it persists."
            }
            UnknownMethod => {
                "The server does not offer this method, which mailreplica needs: check that it supports JMAP Mail (RFC 8621) for this account, or replicate the account over IMAP instead."
            }
            InvalidArguments | InvalidResultReference | RequestTooLarge | AnchorNotFound
            | UnsupportedSort | UnsupportedFilter => {
                "The server did not accept the call mailreplica sent, and did not carry it out: a mailreplica bug or a server quirk; please report it with the server's name and version."
            }
            Forbidden | AccountReadOnly => {
                "The account may not do this: check its rights on the server."
            }
            AccountNotFound | AccountNotSupportedByMethod => {
                "The server no longer offers this account for JMAP Mail: check the user name and that JMAP mail is enabled for the account."
            }
            CannotCalculateChanges | StateMismatch | TooManyChanges => {
                "The account changed meanwhile; run again."
            }
            Other(_) => {
                "An error type mailreplica does not know; retry later, and report it if it persists."
            }
        }
    }
}

/// The arguments of an `error` method response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MethodError {
    #[serde(rename = "type")]
    pub kind: MethodErrorType,
    #[serde(default)]
    pub description: Option<String>,
    /// `invalidArguments` may name the arguments at fault (Cyrus does).
    #[serde(default)]
    pub arguments: Option<Vec<String>>,
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(args) = self.arguments.as_ref().filter(|a| !a.is_empty()) {
            write!(f, " ({})", args.join(", "))?;
        }
        if let Some(d) = self.description.as_deref().filter(|d| !d.is_empty()) {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// A per-object error type of a `/set`, `/import` or `/copy` (RFC 8620 section 5.3, RFC 8621).
/// Unknown types are kept as [`SetErrorType::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum SetErrorType {
    AlreadyExists,
    NotFound,
    Forbidden,
    OverQuota,
    TooLarge,
    RateLimit,
    InvalidPatch,
    InvalidProperties,
    WillDestroy,
    Singleton,
    MailboxHasChild,
    MailboxHasEmail,
    BlobNotFound,
    TooManyKeywords,
    TooManyMailboxes,
    InvalidEmail,
    Other(String),
}

impl From<String> for SetErrorType {
    fn from(s: String) -> Self {
        use SetErrorType::*;
        match s.as_str() {
            "alreadyExists" => AlreadyExists,
            "notFound" => NotFound,
            "forbidden" => Forbidden,
            "overQuota" => OverQuota,
            "tooLarge" => TooLarge,
            "rateLimit" => RateLimit,
            "invalidPatch" => InvalidPatch,
            "invalidProperties" => InvalidProperties,
            "willDestroy" => WillDestroy,
            "singleton" => Singleton,
            "mailboxHasChild" => MailboxHasChild,
            "mailboxHasEmail" => MailboxHasEmail,
            "blobNotFound" => BlobNotFound,
            "tooManyKeywords" => TooManyKeywords,
            "tooManyMailboxes" => TooManyMailboxes,
            "invalidEmail" => InvalidEmail,
            _ => Other(s),
        }
    }
}

impl fmt::Display for SetErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SetErrorType::*;
        f.write_str(match self {
            AlreadyExists => "alreadyExists",
            NotFound => "notFound",
            Forbidden => "forbidden",
            OverQuota => "overQuota",
            TooLarge => "tooLarge",
            RateLimit => "rateLimit",
            InvalidPatch => "invalidPatch",
            InvalidProperties => "invalidProperties",
            WillDestroy => "willDestroy",
            Singleton => "singleton",
            MailboxHasChild => "mailboxHasChild",
            MailboxHasEmail => "mailboxHasEmail",
            BlobNotFound => "blobNotFound",
            TooManyKeywords => "tooManyKeywords",
            TooManyMailboxes => "tooManyMailboxes",
            InvalidEmail => "invalidEmail",
            Other(s) => s,
        })
    }
}

impl SetErrorType {
    /// What the user can do about an object refused with this error, when there is more to say
    /// than its name. Never mentions keywords or flags unless the refusal is about them: the
    /// engine reads such words as a keyword refusal and writes the message again without them.
    pub fn hint(&self) -> Option<&'static str> {
        use SetErrorType::*;
        match self {
            OverQuota => Some(
                "the account is over its storage quota on the server: free space there or raise the quota",
            ),
            Forbidden => Some("the account may not do this: check its rights on the server"),
            _ => None,
        }
    }
}

/// Why the server refused one object of a set/import call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SetError {
    #[serde(rename = "type")]
    pub kind: SetErrorType,
    #[serde(default)]
    pub description: Option<String>,
    /// `invalidProperties`: the properties at fault.
    #[serde(default)]
    pub properties: Option<Vec<String>>,
    /// `alreadyExists`: the id of the object that already exists (RFC 8620 section 5.4).
    #[serde(default, rename = "existingId")]
    pub existing_id: Option<String>,
}

impl SetError {
    /// A SetError for an object the server's answer does not mention at all.
    pub(crate) fn unanswered() -> SetError {
        SetError {
            kind: SetErrorType::Other("unanswered".into()),
            description: Some("the server did not say whether this object was changed".into()),
            properties: None,
            existing_id: None,
        }
    }

    /// The IMAP response code (RFC 5530) of the same refusal, so that the engine treats it as it
    /// treats the IMAP one: `OVERQUOTA`, `TOOBIG`; `None` for the others.
    pub fn response_code(&self) -> Option<&'static str> {
        match self.kind {
            SetErrorType::OverQuota => Some("OVERQUOTA"),
            SetErrorType::TooLarge => Some("TOOBIG"),
            _ => None,
        }
    }

    /// True when trying again later may succeed without any change by the user. A SetError
    /// `serverFail` is not: Cyrus uses it for permanent refusals ("SPECIAL-USE flag conflict").
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, SetErrorType::RateLimit)
            || matches!(&self.kind, SetErrorType::Other(s) if s == "unanswered")
    }
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(p) = self.properties.as_ref().filter(|p| !p.is_empty()) {
            write!(f, " ({})", p.join(", "))?;
        }
        if let Some(id) = &self.existing_id {
            write!(f, " (existing {id})")?;
        }
        if let Some(d) = self.description.as_deref().filter(|d| !d.is_empty()) {
            write!(f, ": {d}")?;
        }
        if let Some(hint) = self.kind.hint() {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// An error talking to a JMAP server. `endpoint` is `jmap://user@host:port/path`, never with a
/// secret; `what` names the operation and the mailbox or email it concerned.
#[derive(Debug, Error)]
pub enum JmapError {
    #[error("invalid JMAP URL {url:?}: {reason}. Expected jmap://user@host[:port][/path] (HTTPS) or jmap+http://user@host[:port][/path] (plain HTTP, loopback only unless --allow-plaintext).")]
    BadUrl { url: String, reason: String },

    #[error("{endpoint}: refusing plain HTTP to {host}, which is not a loopback address: the password would cross the network in clear. Use jmap:// (HTTPS), or --allow-plaintext if you really mean it.")]
    Plaintext { endpoint: String, host: String },

    #[error("{endpoint}: cannot connect for {what}: {detail}. Check the host and port, and that the server is running.")]
    Connect {
        endpoint: String,
        what: String,
        detail: String,
    },

    #[error("{endpoint}: TLS set-up failed: {detail}. Check the certificate (--ca-file PEM trusts an extra CA; --insecure skips checks).")]
    Tls { endpoint: String, detail: String },

    #[error("{endpoint}: no answer to {what} within {seconds} s. Retry later.")]
    Timeout {
        endpoint: String,
        what: String,
        seconds: u64,
    },

    #[error("{endpoint}: connection lost during {what}: {detail}. Retry later.")]
    ConnectionLost {
        endpoint: String,
        what: String,
        detail: String,
    },

    #[error("{endpoint}: login refused (HTTP {status}) for {what}. Check the user name and the password or token source.")]
    Auth {
        endpoint: String,
        what: String,
        status: u16,
    },

    #[error("{endpoint}: {what} failed with HTTP {status}{problem}{hint}")]
    Http {
        endpoint: String,
        what: String,
        status: u16,
        /// `: <type>: <detail>` from an RFC 7807 problem document, or empty.
        problem: String,
        /// What to do, with a leading `. `, or empty.
        hint: String,
    },

    #[error("{endpoint}: unexpected answer to {what}: {detail}. This may be a server quirk or a mailreplica bug; please report it.")]
    Protocol {
        endpoint: String,
        what: String,
        detail: String,
    },

    #[error("{endpoint}: the server offers no mail account for this user ({detail}). Check that JMAP mail is enabled for the account.")]
    NoMailAccount { endpoint: String, detail: String },

    #[error("{endpoint}: {method} ({what}) refused by the server: {error}. {hint}", hint = .error.kind.hint())]
    Method {
        endpoint: String,
        method: String,
        what: String,
        error: Box<MethodError>,
    },

    #[error("{endpoint}: {method} cannot list changes since state {since:?} for {what}; a full listing is needed.")]
    CannotCalculateChanges {
        endpoint: String,
        method: String,
        what: String,
        since: String,
    },

    #[error("{endpoint}: {what} refused for {object}: {error}")]
    Set {
        endpoint: String,
        what: String,
        object: String,
        error: Box<SetError>,
    },

    #[error(
        "{endpoint}: {what} is {size} bytes, more than the {limit} bytes {whose} allows. {hint}"
    )]
    TooLarge {
        endpoint: String,
        what: String,
        size: u64,
        limit: u64,
        whose: &'static str,
        hint: &'static str,
    },
}

impl JmapError {
    /// True when trying again later may succeed without any change by the user.
    pub fn is_retryable(&self) -> bool {
        match self {
            JmapError::Connect { .. }
            | JmapError::Timeout { .. }
            | JmapError::ConnectionLost { .. } => true,
            JmapError::Http { status, .. } => *status == 429 || (500..600).contains(status),
            JmapError::Method { error, .. } => matches!(
                error.kind,
                MethodErrorType::ServerUnavailable
                    | MethodErrorType::ServerFail
                    | MethodErrorType::ServerPartialFail
            ),
            JmapError::Set { error, .. } => error.is_retryable(),
            _ => false,
        }
    }

    /// The endpoint the error names first (`jmap://user@host:port/path`); `None` for a URL
    /// that does not parse.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            JmapError::BadUrl { .. } => None,
            JmapError::Plaintext { endpoint, .. }
            | JmapError::Connect { endpoint, .. }
            | JmapError::Tls { endpoint, .. }
            | JmapError::Timeout { endpoint, .. }
            | JmapError::ConnectionLost { endpoint, .. }
            | JmapError::Auth { endpoint, .. }
            | JmapError::Http { endpoint, .. }
            | JmapError::Protocol { endpoint, .. }
            | JmapError::NoMailAccount { endpoint, .. }
            | JmapError::Method { endpoint, .. }
            | JmapError::CannotCalculateChanges { endpoint, .. }
            | JmapError::Set { endpoint, .. }
            | JmapError::TooLarge { endpoint, .. } => Some(endpoint),
        }
    }

    /// The method error type, when the server answered a method with `error`.
    pub fn method_error(&self) -> Option<&MethodErrorType> {
        match self {
            JmapError::Method { error, .. } => Some(&error.kind),
            _ => None,
        }
    }
}

/// How the engine will see JMAP failures once JMAP sits behind [`crate::mailstore::MailStore`]:
/// the same classification (connect, auth, timeout, refusal, protocol) as IMAP.
impl From<JmapError> for StoreError {
    fn from(e: JmapError) -> StoreError {
        // StoreError names the endpoint itself: the text without it.
        let text = e.to_string();
        let text = match e.endpoint() {
            Some(endpoint) => text
                .strip_prefix(endpoint)
                .and_then(|t| t.strip_prefix(": "))
                .map(str::to_string)
                .unwrap_or(text),
            None => text,
        };
        match e {
            JmapError::Connect {
                endpoint, detail, ..
            } => StoreError::Connect { endpoint, detail },
            JmapError::Tls { endpoint, detail } => StoreError::Tls { endpoint, detail },
            JmapError::Timeout {
                endpoint,
                what,
                seconds,
            } => StoreError::Timeout {
                endpoint,
                command: what,
                seconds,
            },
            JmapError::ConnectionLost {
                endpoint,
                what,
                detail,
            } => StoreError::ConnectionLost {
                endpoint,
                command: what,
                detail,
            },
            // StoreError::Auth says what to check.
            JmapError::Auth {
                endpoint,
                what,
                status,
            } => StoreError::Auth {
                endpoint,
                detail: format!("HTTP {status} for {what}"),
            },
            JmapError::Protocol {
                endpoint,
                what,
                detail,
            } => StoreError::Protocol {
                endpoint,
                command: what,
                detail,
            },
            JmapError::Http { endpoint, .. }
            | JmapError::Plaintext { endpoint, .. }
            | JmapError::NoMailAccount { endpoint, .. }
            | JmapError::Method { endpoint, .. }
            | JmapError::CannotCalculateChanges { endpoint, .. }
            | JmapError::Set { endpoint, .. }
            | JmapError::TooLarge { endpoint, .. } => StoreError::Refused {
                endpoint,
                detail: text,
            },
            JmapError::BadUrl { url, .. } => StoreError::Refused {
                endpoint: url,
                detail: text,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_error_types_are_kept() {
        let e: MethodError =
            serde_json::from_str(r#"{"type":"somethingNew","description":"why","extra":1}"#)
                .unwrap();
        assert_eq!(e.kind, MethodErrorType::Other("somethingNew".into()));
        assert_eq!(e.to_string(), "somethingNew: why");
        let e: MethodError =
            serde_json::from_str(r#"{"type":"invalidArguments","arguments":["sinceState"]}"#)
                .unwrap();
        assert_eq!(e.to_string(), "invalidArguments (sinceState)");
    }

    #[test]
    fn already_exists_keeps_the_existing_id() {
        let e: SetError =
            serde_json::from_str(r#"{"type":"alreadyExists","existingId":"M123"}"#).unwrap();
        assert_eq!(e.kind, SetErrorType::AlreadyExists);
        assert_eq!(e.existing_id.as_deref(), Some("M123"));
        let e: SetError = serde_json::from_str(r#"{"type":"brandNew"}"#).unwrap();
        assert_eq!(e.kind, SetErrorType::Other("brandNew".into()));
    }

    #[test]
    fn classification() {
        let m = |kind: &str| JmapError::Method {
            endpoint: "jmap://u@h:1/".into(),
            method: "Email/get".into(),
            what: "x".into(),
            error: Box::new(MethodError {
                kind: kind.to_string().into(),
                description: None,
                arguments: None,
            }),
        };
        assert!(m("serverUnavailable").is_retryable());
        assert!(!m("invalidArguments").is_retryable());
        let s: StoreError = m("forbidden").into();
        assert!(!s.is_retryable());
        assert_eq!(
            s.to_string(),
            "jmap://u@h:1/: Email/get (x) refused by the server: forbidden. The account may not do this: check its rights on the server."
        );
    }

    /// What failed, where (once) and what to do, through the engine's StoreError as the user
    /// reads it.
    #[test]
    fn store_errors_name_the_endpoint_once_and_say_what_to_do() {
        let endpoint = "jmap://u@h:1/jmap";
        let method = |kind: &str| -> StoreError {
            JmapError::Method {
                endpoint: endpoint.into(),
                method: "Email/import".into(),
                what: "importing 3 emails".into(),
                error: Box::new(MethodError {
                    kind: kind.to_string().into(),
                    description: None,
                    arguments: None,
                }),
            }
            .into()
        };
        assert_eq!(
            method("unknownMethod").to_string(),
            "jmap://u@h:1/jmap: Email/import (importing 3 emails) refused by the server: unknownMethod. The server does not offer this method, which mailreplica needs: check that it supports JMAP Mail (RFC 8621) for this account, or replicate the account over IMAP instead."
        );
        assert!(method("invalidArguments")
            .to_string()
            .ends_with("a mailreplica bug or a server quirk; please report it with the server's name and version."));
        let auth: StoreError = JmapError::Auth {
            endpoint: endpoint.into(),
            what: "session discovery".into(),
            status: 401,
        }
        .into();
        assert_eq!(
            auth.to_string(),
            "jmap://u@h:1/jmap: login refused: HTTP 401 for session discovery. Check the user name and the password source."
        );
        let http: StoreError = JmapError::Http {
            endpoint: endpoint.into(),
            what: "session discovery".into(),
            status: 404,
            problem: String::new(),
            hint: ". Check the URL's path".into(),
        }
        .into();
        assert_eq!(http.to_string().matches(endpoint).count(), 1, "{http}");
    }

    /// An object over quota reads and classifies as IMAP's `[OVERQUOTA]` refusal.
    #[test]
    fn over_quota_says_what_to_do_and_is_imap_overquota() {
        let e: SetError =
            serde_json::from_str(r#"{"type":"overQuota","description":"Quota exceeded"}"#).unwrap();
        assert_eq!(
            e.to_string(),
            "overQuota: Quota exceeded; the account is over its storage quota on the server: free space there or raise the quota"
        );
        assert_eq!(e.response_code(), Some("OVERQUOTA"));
        let no = StoreError::No {
            endpoint: "jmap://u@h:1/".into(),
            command: "Email/import".into(),
            folder: " in INBOX".into(),
            text: e.to_string(),
            code: e.response_code().map(str::to_string),
        };
        assert!(no.is_retryable() && no.throttling().is_none());
        let e: SetError = serde_json::from_str(r#"{"type":"invalidEmail"}"#).unwrap();
        assert_eq!(
            (e.to_string().as_str(), e.response_code()),
            ("invalidEmail", None)
        );
    }
}
