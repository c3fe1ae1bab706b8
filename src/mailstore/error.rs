//! Errors of the mail store layer, classified by what the caller does next (a server's
//! "slow down" included: [`Throttling`]).

use std::time::Duration;

use thiserror::Error;

/// An error talking to one side. Every variant names the endpoint and says what to do.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{endpoint}: cannot connect: {detail}. Check the host and port, and that the server is running.")]
    Connect { endpoint: String, detail: String },

    #[error("{endpoint}: TLS failed: {detail}. Check the certificate (--ca-file PEM trusts an extra CA; --insecure skips checks).")]
    Tls { endpoint: String, detail: String },

    #[error("{endpoint}: login refused: {detail}. Check the user name and the password source.")]
    Auth { endpoint: String, detail: String },

    #[error("{endpoint}: {detail}")]
    Refused { endpoint: String, detail: String },

    #[error("{endpoint}: server said NO to {command}{folder}: {text}")]
    No {
        endpoint: String,
        command: String,
        folder: String,
        text: String,
        code: Option<String>,
    },

    #[error("{endpoint}: server rejected {command}{folder} as invalid (BAD): {text}. This may be a mailreplica bug or a server quirk; please report it.")]
    Bad {
        endpoint: String,
        command: String,
        folder: String,
        text: String,
    },

    #[error("{endpoint}: no answer to {command} within {seconds} s; the connection was dropped. Retry later.")]
    Timeout {
        endpoint: String,
        command: String,
        seconds: u64,
    },

    #[error("{endpoint}: connection lost during {command}: {detail}. Retry later.")]
    ConnectionLost {
        endpoint: String,
        command: String,
        detail: String,
    },

    #[error("{endpoint}: unexpected answer to {command}: {detail}")]
    Protocol {
        endpoint: String,
        command: String,
        detail: String,
    },

    #[error("{endpoint}: folder {folder} does not exist")]
    NoSuchFolder { endpoint: String, folder: String },

    #[error("{endpoint}: refusing {command}: this side is read-only")]
    ReadOnly { endpoint: String, command: String },
}

impl StoreError {
    /// True when the connection can no longer be used and must be reopened.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            StoreError::Timeout { .. }
                | StoreError::ConnectionLost { .. }
                | StoreError::Protocol { .. }
                | StoreError::Bad { .. }
        )
    }

    /// True when trying again later may succeed without any change by the user.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Connect { .. }
            | StoreError::Timeout { .. }
            | StoreError::ConnectionLost { .. } => true,
            StoreError::No { code, .. } => {
                matches!(
                    code.as_deref(),
                    Some(
                        "UNAVAILABLE" | "OVERQUOTA" | "LIMIT" | "INUSE" | "THROTTLED" | "SERVERBUG"
                    )
                ) || self.throttling().is_some()
            }
            _ => false,
        }
    }

    /// Whether the server asked us to slow down (see [`Throttling`]); `None` for every other
    /// answer. Only a NO carries it: a BAD that says so arrives as a NO (see
    /// `imap::connection`).
    pub fn throttling(&self) -> Option<Throttling> {
        match self {
            StoreError::No { code, text, .. } => throttling_in(code.as_deref(), text),
            _ => None,
        }
    }
}

/// A server's "slow down": the command was not carried out, and the same command may succeed
/// after a pause (see `engine::paced`, which waits and sends it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttling {
    /// `[THROTTLED]` (RFC 9051; Gmail), the word "throttled" in the text, or a suggested
    /// back-off time (Office 365: `Request is throttled. Suggested Backoff Time: 1234
    /// milliseconds`), which is waited for when given.
    Throttled { suggested: Option<Duration> },
    /// `[LIMIT]` (RFC 5530): a rate limit at some providers, a fixed implementation limit at
    /// others (a message too large), so tried again only a few times. A limit on keywords is
    /// not this: `engine::keywords` writes the message again without them.
    Limit,
}

/// Reads a tagged NO (or BAD) for throttling: its response code (parsed, or as the text's
/// leading `[CODE ...]`) and its words.
pub fn throttling_in(code: Option<&str>, text: &str) -> Option<Throttling> {
    let lower = text.to_ascii_lowercase();
    let code = code
        .map(str::to_ascii_uppercase)
        .or_else(|| leading_code(text));
    let suggested = suggested_backoff(&lower);
    if code.as_deref() == Some("THROTTLED") || suggested.is_some() || lower.contains("throttl") {
        return Some(Throttling::Throttled { suggested });
    }
    if code.as_deref() == Some("LIMIT") && !lower.contains("keyword") && !lower.contains("flag") {
        return Some(Throttling::Limit);
    }
    None
}

/// `OVERQUOTA` from `[OVERQUOTA] Quota exceeded`.
fn leading_code(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('[')?;
    let end = rest.find([']', ' '])?;
    Some(rest[..end].to_ascii_uppercase())
}

/// `Suggested Backoff Time: 1234 milliseconds` (also `ms`, `s`, `seconds`; lower-cased
/// text), at most an hour.
fn suggested_backoff(lower: &str) -> Option<Duration> {
    let at = lower.find("backoff time")?;
    let rest = lower[at + "backoff time".len()..].trim_start_matches([':', ' ', '=']);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = rest[digits.len()..].trim_start();
    let wait = if unit.starts_with("ms") || unit.starts_with("milli") {
        Duration::from_millis(n)
    } else if unit.starts_with('s') {
        Duration::from_secs(n)
    } else {
        // No unit: Office 365 counts in milliseconds.
        Duration::from_millis(n)
    };
    Some(wait.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_answers_are_recognised() {
        let t = |code: Option<&str>, text: &str| throttling_in(code, text);
        assert_eq!(
            t(
                None,
                "[THROTTLED] Account exceeded command or bandwidth limits"
            ),
            Some(Throttling::Throttled { suggested: None })
        );
        assert_eq!(
            t(Some("throttled"), "slow down"),
            Some(Throttling::Throttled { suggested: None })
        );
        assert_eq!(
            t(
                None,
                "Request is throttled. Suggested Backoff Time: 1234 milliseconds"
            ),
            Some(Throttling::Throttled {
                suggested: Some(Duration::from_millis(1234))
            })
        );
        assert_eq!(
            t(None, "Suggested backoff time: 3 s"),
            Some(Throttling::Throttled {
                suggested: Some(Duration::from_secs(3))
            })
        );
        assert_eq!(
            t(None, "Suggested Backoff Time: 99999999 ms"),
            Some(Throttling::Throttled {
                suggested: Some(Duration::from_secs(3600))
            })
        );
        assert_eq!(
            t(Some("LIMIT"), "Too many commands"),
            Some(Throttling::Limit)
        );
        assert_eq!(
            t(None, "[LIMIT] Too many commands"),
            Some(Throttling::Limit)
        );
        // Keyword limits are learned and written around, not waited for.
        assert_eq!(t(Some("LIMIT"), "Too many keywords in mailbox"), None);
        assert_eq!(t(Some("OVERQUOTA"), "Quota exceeded"), None);
        assert_eq!(t(None, "Mailbox doesn't exist"), None);
        assert_eq!(t(Some("TRYCREATE"), "Mailbox doesn't exist"), None);
    }

    #[test]
    fn a_throttled_no_is_retryable() {
        let no = |text: &str| StoreError::No {
            endpoint: "imap://u@h:1".into(),
            command: "APPEND".into(),
            folder: String::new(),
            text: text.into(),
            code: None,
        };
        assert!(no("Request is throttled. Suggested Backoff Time: 5 ms").is_retryable());
        assert!(no("Request is throttled. Suggested Backoff Time: 5 ms")
            .throttling()
            .is_some());
        assert!(!no("Message too large").is_retryable());
    }
}
