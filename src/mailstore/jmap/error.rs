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

    #[error("{endpoint}: {method} refused for {what}: {error}")]
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
        let text = e.to_string();
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
            JmapError::Auth { endpoint, .. } => StoreError::Auth {
                endpoint,
                detail: text,
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
        assert!(s.to_string().contains("Email/get refused for x: forbidden"));
    }
}
