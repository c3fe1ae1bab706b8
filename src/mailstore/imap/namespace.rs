//! The personal namespace (RFC 2342): the prefix a server puts before every folder but INBOX
//! (`INBOX.` on Courier-style servers), read with our own parser because imap-proto's fails on
//! the NAMESPACE response and takes the session down with it (CRATES.md).
//!
//! Folder paths in mailreplica never carry the prefix: `INBOX.Projects.A` on a `.` server with
//! the prefix `INBOX.` is the path `Projects/A`, the same path as `Projects/A` on a `/` server
//! without one, so the two replicate onto each other with the names users expect.

use tokio::io::AsyncWriteExt;

use super::connection::Connection;
use super::transport::Transport;
use crate::model::FolderPath;

/// The tag of the one command sent outside the connection's command layer.
const TAG: &str = "mrns";

/// The personal namespace's prefix; empty when the server has none (or did not say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    pub prefix: String,
}

impl Namespace {
    /// The path of a server's (decoded) folder name: the prefix comes off, then the name is
    /// split on the delimiter. INBOX itself and names outside the prefix are taken as they are.
    pub fn path_of(&self, name: &str, delimiter: Option<char>) -> FolderPath {
        let inner = self.strip(name).unwrap_or(name);
        FolderPath::from_server_name(inner, delimiter)
    }

    /// The server's name of a path (before modified UTF-7): the prefix goes before every path
    /// but INBOX; `None` when a component holds the delimiter.
    pub fn name_of(&self, path: &FolderPath, delimiter: Option<char>) -> Option<String> {
        let name = path.to_server_name(delimiter)?;
        if self.prefix.is_empty() || path.is_inbox() {
            return Some(name);
        }
        Some(format!("{}{name}", self.prefix))
    }

    fn strip<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() || name.len() <= self.prefix.len() {
            return None;
        }
        let (head, rest) = name.split_at_checked(self.prefix.len())?;
        // `INBOX.` matches INBOX in any case, like INBOX itself.
        let same = if self.prefix.to_ascii_uppercase().starts_with("INBOX") {
            head.eq_ignore_ascii_case(&self.prefix)
        } else {
            head == self.prefix
        };
        same.then_some(rest)
    }
}

/// Asks NAMESPACE on the raw stream, right after login (when the server has nothing else
/// pending), and returns the connection rebuilt on the same stream. A server that answers
/// anything unexpected is taken as having no prefix; an I/O failure is an error.
pub async fn read(
    conn: Connection,
    timeout: std::time::Duration,
) -> Result<(Connection, Namespace), String> {
    let mut parts = conn.into_parts();
    let transport = &mut parts.transport;
    let exchange = async {
        transport
            .write_all(format!("{TAG} NAMESPACE\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        transport.flush().await.map_err(|e| e.to_string())?;
        let mut found = Namespace::default();
        loop {
            let line = read_line(transport).await?;
            if let Some(rest) = line.strip_prefix("* NAMESPACE ") {
                found = parse_personal(rest).unwrap_or_default();
            } else if let Some(rest) = line.strip_prefix(&format!("{TAG} ")) {
                let ok = rest.get(..2).is_some_and(|s| s.eq_ignore_ascii_case("OK"));
                return Ok::<_, String>(if ok { found } else { Namespace::default() });
            }
        }
    };
    let namespace = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => {
            return Err(format!(
                "no answer to NAMESPACE within {} s",
                timeout.as_secs()
            ))
        }
        Ok(r) => r?,
    };
    Ok((Connection::resume(parts), namespace))
}

async fn read_line(transport: &mut Transport) -> Result<String, String> {
    let mut line = transport
        .read_line_exact(64 * 1024)
        .await
        .map_err(|e| format!("NAMESPACE answer: {e}"))?;
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// The first personal namespace's prefix from the part after `* NAMESPACE `:
/// `(("INBOX." ".")) NIL NIL` gives `INBOX.`; `NIL ...` gives none.
fn parse_personal(rest: &str) -> Option<Namespace> {
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("((")?;
    let (prefix, _) = quoted(rest)?;
    Some(Namespace { prefix })
}

/// A quoted string at the start of `s` (backslash escapes) and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let s = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_personal_prefix() {
        let ns = parse_personal(r#"(("INBOX." ".")) NIL NIL"#).unwrap();
        assert_eq!(ns.prefix, "INBOX.");
        let ns = parse_personal(r##"(("" "/")) NIL (("#shared/" "/"))"##).unwrap();
        assert_eq!(ns.prefix, "");
        let ns = parse_personal(r#"(("a\"b." ".") ("other." "."))"#).unwrap();
        assert_eq!(ns.prefix, "a\"b.");
        assert!(parse_personal("NIL NIL NIL").is_none());
        assert!(parse_personal("((garbage").is_none());
    }

    #[test]
    fn the_prefix_comes_off_and_goes_back() {
        let ns = Namespace {
            prefix: "INBOX.".into(),
        };
        let d = Some('.');
        assert_eq!(ns.path_of("INBOX", d), FolderPath::inbox());
        assert_eq!(ns.path_of("inbox", d), FolderPath::inbox());
        assert_eq!(ns.path_of("INBOX.Projects.A", d).to_string(), "Projects/A");
        assert_eq!(ns.path_of("Inbox.Sent", d).to_string(), "Sent");
        // Outside the prefix: as it is.
        assert_eq!(ns.path_of("Shared.x", d).to_string(), "Shared/x");
        let p = FolderPath::from_display("Projects/A");
        assert_eq!(ns.name_of(&p, d).unwrap(), "INBOX.Projects.A");
        assert_eq!(ns.name_of(&FolderPath::inbox(), d).unwrap(), "INBOX");
        // A child of INBOX itself keeps INBOX under the prefix and round-trips.
        let child = FolderPath::from_display("INBOX/x");
        let name = ns.name_of(&child, d).unwrap();
        assert_eq!(name, "INBOX.INBOX.x");
        assert_eq!(ns.path_of(&name, d), child);
        let none = Namespace::default();
        assert_eq!(none.name_of(&p, Some('/')).unwrap(), "Projects/A");
        assert_eq!(none.path_of("Projects/A", Some('/')), p);
    }
}
