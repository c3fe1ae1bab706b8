//! Errors of the mail store layer, classified by what the caller does next.

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
            StoreError::No { code, .. } => matches!(
                code.as_deref(),
                Some("UNAVAILABLE" | "OVERQUOTA" | "LIMIT" | "INUSE" | "THROTTLED" | "SERVERBUG")
            ),
            _ => false,
        }
    }
}
