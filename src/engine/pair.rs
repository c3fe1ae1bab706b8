//! The pair id: a stable name for (source account, target account), used for the state file.

use sha2::{Digest, Sha256};

use crate::config::Endpoint;

/// `user@host-port_to_user@host-port` style ids are unreadable once escaped, so the id is a short
/// hash of both endpoints; the state file records it and refuses another pair.
pub fn pair_id(source: &Endpoint, target: &Endpoint) -> String {
    let text = format!("{}\n{}", identity(source), identity(target));
    hex::encode(&Sha256::digest(text.as_bytes())[..10])
}

fn identity(e: &Endpoint) -> String {
    format!("{}@{}:{}", e.user, e.host.to_ascii_lowercase(), e.port)
}

/// The default state path: `$XDG_STATE_HOME/mailreplica/<pair id>.redb`, or
/// `~/.local/state/mailreplica/...` when XDG_STATE_HOME is unset.
pub fn default_state_path(pair_id: &str) -> Option<std::path::PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".local/state"),
    };
    Some(base.join("mailreplica").join(format!("{pair_id}.redb")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_id_is_stable_and_directional() {
        let a = Endpoint::parse("imap://a@Host:1").unwrap();
        let b = Endpoint::parse("imaps://b@host:2").unwrap();
        assert_eq!(pair_id(&a, &b), pair_id(&a, &b));
        assert_ne!(pair_id(&a, &b), pair_id(&b, &a));
        assert_eq!(pair_id(&a, &b).len(), 20);
    }
}
