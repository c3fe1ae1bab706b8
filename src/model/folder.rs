//! Folder paths as lists of components, independent of any server's separator or encoding.

use std::fmt;

/// A folder path as components (`["Archive", "2024"]`), UTF-8, with INBOX spelled `INBOX`
/// whatever case a server used. The adapter turns it into the server's separator and
/// modified UTF-7.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct FolderPath(Vec<String>);

impl FolderPath {
    /// Builds a path from components; the first component is INBOX case-insensitively.
    pub fn new(components: Vec<String>) -> FolderPath {
        let mut components = components;
        if let Some(first) = components.first_mut() {
            if first.eq_ignore_ascii_case("INBOX") {
                *first = "INBOX".to_string();
            }
        }
        FolderPath(components)
    }

    pub fn inbox() -> FolderPath {
        FolderPath(vec!["INBOX".to_string()])
    }

    /// Parses the display form (`Archive/2024`), the form used in the state and in messages.
    pub fn from_display(s: &str) -> FolderPath {
        FolderPath::new(s.split('/').map(str::to_string).collect())
    }

    /// Splits a server's name on its hierarchy delimiter. The stand-in of that delimiter
    /// (see [`to_server_name`](Self::to_server_name)) turns back into it.
    pub fn from_server_name(name: &str, delimiter: Option<char>) -> FolderPath {
        match delimiter {
            Some(d) => FolderPath::new(
                name.split(d)
                    .map(|c| match stand_in(d) {
                        Some(e) => c.replace(e, &d.to_string()),
                        None => c.to_string(),
                    })
                    .collect(),
            ),
            None => FolderPath::new(vec![name.to_string()]),
        }
    }

    pub fn components(&self) -> &[String] {
        &self.0
    }

    /// Where this path is after `from` was renamed to `to` (IMAP RENAME moves the folders
    /// below too); `None` when this path is neither `from` nor below it.
    pub fn renamed(&self, from: &FolderPath, to: &FolderPath) -> Option<FolderPath> {
        let rest = self.0.strip_prefix(from.0.as_slice())?;
        let mut components = to.0.clone();
        components.extend_from_slice(rest);
        Some(FolderPath::new(components))
    }

    pub fn is_inbox(&self) -> bool {
        self.0.len() == 1 && self.0[0] == "INBOX"
    }

    /// Every proper ancestor, outermost first (`A`, `A/B` for `A/B/C`).
    pub fn ancestors(&self) -> impl Iterator<Item = FolderPath> + '_ {
        (1..self.0.len()).map(|n| FolderPath(self.0[..n].to_vec()))
    }

    /// The server's name for this path with its delimiter. A component holding the delimiter
    /// itself (`a.b` going to a `.` server) gets a stand-in for it (`a\u{2024}b`), which
    /// [`from_server_name`](Self::from_server_name) turns back: the name round-trips through
    /// that server. `None` for a delimiter without a stand-in, or a path of several components
    /// on a flat server.
    pub fn to_server_name(&self, delimiter: Option<char>) -> Option<String> {
        match delimiter {
            Some(d) => {
                let mut parts = Vec::with_capacity(self.0.len());
                for c in &self.0 {
                    if c.contains(d) {
                        parts.push(c.replace(d, &stand_in(d)?.to_string()));
                    } else {
                        parts.push(c.clone());
                    }
                }
                Some(parts.join(&d.to_string()))
            }
            None if self.0.len() == 1 => Some(self.0[0].clone()),
            None => None,
        }
    }
}

/// What stands for a hierarchy delimiter inside a folder name on that server: ONE DOT LEADER
/// for `.`, DIVISION SLASH for `/` (they look alike, so users recognise their folder).
fn stand_in(delimiter: char) -> Option<char> {
    match delimiter {
        '.' => Some('\u{2024}'),
        '/' => Some('\u{2215}'),
        _ => None,
    }
}

impl fmt::Display for FolderPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

impl fmt::Debug for FolderPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_moves_the_folder_and_those_below_only() {
        let (from, to) = (
            FolderPath::from_display("A/B"),
            FolderPath::from_display("X"),
        );
        let moved = |p: &str| FolderPath::from_display(p).renamed(&from, &to);
        assert_eq!(moved("A/B"), Some(FolderPath::from_display("X")));
        assert_eq!(moved("A/B/C"), Some(FolderPath::from_display("X/C")));
        assert_eq!(moved("A/BC"), None);
        assert_eq!(moved("A"), None);
    }

    #[test]
    fn inbox_is_case_insensitive() {
        assert_eq!(FolderPath::from_display("inbox"), FolderPath::inbox());
        assert_eq!(
            FolderPath::from_server_name("Inbox.Sub", Some('.')).to_string(),
            "INBOX/Sub"
        );
    }

    #[test]
    fn server_names_use_the_delimiter() {
        let p = FolderPath::from_display("Données/Été");
        assert_eq!(p.to_server_name(Some('.')).as_deref(), Some("Données.Été"));
        // A component holding the delimiter gets its stand-in, and comes back.
        let dotted = FolderPath::from_display("a.b/c");
        let name = dotted.to_server_name(Some('.')).unwrap();
        assert_eq!(name, "a\u{2024}b.c");
        assert_eq!(FolderPath::from_server_name(&name, Some('.')), dotted);
        let slashed = FolderPath::new(vec!["x/y".into(), "z".into()]);
        let name = slashed.to_server_name(Some('/')).unwrap();
        assert_eq!(name, "x\u{2215}y/z");
        assert_eq!(FolderPath::from_server_name(&name, Some('/')), slashed);
        // On a server without that delimiter the name is kept as it is.
        assert_eq!(
            FolderPath::from_server_name("a\u{2024}b", Some('/')).components(),
            ["a\u{2024}b"]
        );
        assert_eq!(
            FolderPath::new(vec!["a\\b".into()]).to_server_name(Some('\\')),
            None
        );
        let anc: Vec<String> = FolderPath::from_display("A/B/C")
            .ancestors()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(anc, ["A", "A/B"]);
    }
}
