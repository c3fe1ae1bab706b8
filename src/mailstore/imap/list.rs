//! LIST, CREATE, RENAME and DELETE: the folder tree with its hierarchy delimiter, special-use attributes and,
//! where LIST-STATUS is offered, every folder's change tokens in the same command.

use std::collections::HashMap;

use imap_proto::NameAttribute;
use imap_proto::{MailboxDatum, Response, StatusAttribute};

use super::connection::{Ctx, Part};
use super::{mutf7, ImapStore};
use crate::mailstore::{FolderInfo, FolderTokens, StoreError};
use crate::model::FolderPath;

impl ImapStore {
    pub(super) async fn list(&mut self) -> Result<Vec<FolderInfo>, StoreError> {
        // LIST-STATUS (RFC 5819) gives every folder's tokens in the same round trip. Never ask
        // for more than imap-proto parses (see CRATES.md), nor HIGHESTMODSEQ without CONDSTORE.
        // LIST-EXTENDED (RFC 5258) marks subscribed folders in the same answer; without it,
        // LSUB says which they are.
        let extended = self.caps.has("LIST-EXTENDED");
        // With RETURN options, Dovecot leaves special-use attributes out unless asked.
        let options = match (extended, self.caps.special_use) {
            (true, true) => "SPECIAL-USE SUBSCRIBED ",
            (true, false) => "SUBSCRIBED ",
            (false, _) => "",
        };
        let command = if self.caps.has("LIST-STATUS") {
            let items = if self.caps.condstore {
                "MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ"
            } else {
                "MESSAGES UIDNEXT UIDVALIDITY"
            };
            format!("LIST \"\" \"*\" RETURN ({options}STATUS ({items}))")
        } else if extended {
            format!("LIST \"\" \"*\" RETURN ({})", options.trim_end())
        } else {
            "LIST \"\" \"*\"".to_string()
        };
        let done = self.conn.run_text(&command, Ctx::new("LIST")).await?;
        let lsub: Option<Vec<String>> = if extended {
            None
        } else {
            let names = self
                .conn
                .run_text("LSUB \"\" \"*\"", Ctx::new("LSUB"))
                .await?;
            Some(
                names
                    .untagged
                    .iter()
                    .filter_map(|r| match r.parsed() {
                        Response::MailboxData(MailboxDatum::List(data)) => {
                            Some(data.name.to_string())
                        }
                        _ => None,
                    })
                    .collect(),
            )
        };
        let mut tokens: HashMap<String, FolderTokens> = HashMap::new();
        for r in &done.untagged {
            if let Response::MailboxData(MailboxDatum::Status { mailbox, status }) = r.parsed() {
                if let Some(t) = tokens_of(status) {
                    tokens.insert(mailbox.to_string(), t);
                }
            }
        }
        let mut folders = Vec::new();
        for r in &done.untagged {
            let Response::MailboxData(MailboxDatum::List(data)) = r.parsed() else {
                continue;
            };
            let delimiter = data
                .delimiter
                .as_deref()
                .and_then(|d| d.chars().next())
                .or(self.delimiter);
            let name = mutf7::decode(&data.name);
            let mut selectable = true;
            let mut special_use = None;
            let mut subscribed = lsub
                .as_ref()
                .is_some_and(|names| names.iter().any(|n| n == data.name.as_ref()));
            for attr in &data.name_attributes {
                match attr {
                    NameAttribute::NoSelect => selectable = false,
                    NameAttribute::All => special_use = Some("\\All".to_string()),
                    NameAttribute::Archive => special_use = Some("\\Archive".to_string()),
                    NameAttribute::Drafts => special_use = Some("\\Drafts".to_string()),
                    NameAttribute::Flagged => special_use = Some("\\Flagged".to_string()),
                    NameAttribute::Junk => special_use = Some("\\Junk".to_string()),
                    NameAttribute::Sent => special_use = Some("\\Sent".to_string()),
                    NameAttribute::Trash => special_use = Some("\\Trash".to_string()),
                    NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\NonExistent") => {
                        selectable = false
                    }
                    NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\Subscribed") => {
                        subscribed = true
                    }
                    _ => {}
                }
            }
            folders.push(FolderInfo {
                path: self.namespace.path_of(&name, delimiter),
                selectable,
                special_use,
                tokens: tokens.get(data.name.as_ref()).copied(),
                subscribed,
            });
        }
        folders.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(folders)
    }

    /// CREATE, with `(USE (\Sent))` when a special-use is given; a folder that already exists
    /// is not an error.
    pub(super) async fn create(
        &mut self,
        path: &FolderPath,
        special_use: Option<&str>,
    ) -> Result<(), StoreError> {
        let wire = self.wire_name(path)?;
        let display = path.to_string();
        let quoted = quote_mailbox(&wire);
        // Only the attributes RFC 6154 defines go on the wire (never a server's free text).
        let use_part = special_use
            .filter(|u| SPECIAL_USES.iter().any(|k| k.eq_ignore_ascii_case(u)))
            .map(|u| format!(" (USE ({u}))"))
            .unwrap_or_default();
        let mut result = self
            .conn
            .run(
                &[
                    Part::Text("CREATE "),
                    Part::Text(&quoted),
                    Part::Text(&use_part),
                ],
                Ctx::on("CREATE", &display),
            )
            .await
            .map(|_| ());
        // A special-use the server will not give (another folder has it, `[USEATTR]`): the
        // folder is still created, without it.
        if !use_part.is_empty()
            && matches!(&result, Err(StoreError::No { code, .. }) if code.as_deref() != Some("ALREADYEXISTS"))
        {
            result = self
                .conn
                .run(
                    &[Part::Text("CREATE "), Part::Text(&quoted)],
                    Ctx::on("CREATE", &display),
                )
                .await
                .map(|_| ());
        }
        match result {
            Err(StoreError::No { code, text, .. })
                if code.as_deref() == Some("ALREADYEXISTS")
                    || text.to_ascii_lowercase().contains("already exists") =>
            {
                Ok(())
            }
            other => other,
        }
    }
}

impl ImapStore {
    /// RENAME; the server renames the folders below too.
    pub(super) async fn rename(
        &mut self,
        from: &FolderPath,
        to: &FolderPath,
    ) -> Result<(), StoreError> {
        let old = quote_mailbox(&self.wire_name(from)?);
        let new = quote_mailbox(&self.wire_name(to)?);
        let display = from.to_string();
        self.conn
            .run(
                &[
                    Part::Text("RENAME "),
                    Part::Text(&old),
                    Part::Text(" "),
                    Part::Text(&new),
                ],
                Ctx::on("RENAME", &display),
            )
            .await?;
        Ok(())
    }

    /// SUBSCRIBE or UNSUBSCRIBE.
    pub(super) async fn subscribe(
        &mut self,
        path: &FolderPath,
        on: bool,
    ) -> Result<(), StoreError> {
        let quoted = quote_mailbox(&self.wire_name(path)?);
        let display = path.to_string();
        let verb = if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
        let command = format!("{verb} ");
        self.conn
            .run(
                &[Part::Text(&command), Part::Text(&quoted)],
                Ctx::on(verb, &display),
            )
            .await?;
        Ok(())
    }

    /// DELETE of one folder.
    pub(super) async fn delete(&mut self, path: &FolderPath) -> Result<(), StoreError> {
        let quoted = quote_mailbox(&self.wire_name(path)?);
        let display = path.to_string();
        self.conn
            .run(
                &[Part::Text("DELETE "), Part::Text(&quoted)],
                Ctx::on("DELETE", &display),
            )
            .await?;
        Ok(())
    }
}

/// The special-use attributes of RFC 6154.
const SPECIAL_USES: [&str; 7] = [
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

/// Tokens from a STATUS answer; `None` unless it has UIDVALIDITY, UIDNEXT and MESSAGES.
fn tokens_of(status: &[StatusAttribute]) -> Option<FolderTokens> {
    let (mut uidvalidity, mut uidnext, mut messages, mut highest_modseq) = (None, None, None, None);
    for a in status {
        match a {
            StatusAttribute::UidValidity(v) => uidvalidity = Some(*v),
            StatusAttribute::UidNext(v) => uidnext = Some(*v),
            StatusAttribute::Messages(v) => messages = Some(*v),
            // 0: the folder keeps no mod-sequences (RFC 7162).
            StatusAttribute::HighestModSeq(v) => highest_modseq = Some(*v).filter(|m| *m != 0),
            _ => {}
        }
    }
    Some(FolderTokens {
        uidvalidity: uidvalidity?,
        uidnext: uidnext?,
        messages: messages?,
        highest_modseq,
    })
}

/// Quotes an (ASCII, modified UTF-7) mailbox name.
pub(super) fn quote_mailbox(wire: &str) -> String {
    format!("\"{}\"", wire.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The delimiter in the answer to `LIST "" ""` (`None`: a flat server; `/` when not said).
pub(super) fn delimiter_in(done: &super::connection::Completion) -> Option<char> {
    for r in &done.untagged {
        if let Response::MailboxData(MailboxDatum::List(data)) = r.parsed() {
            return data.delimiter.as_deref().and_then(|d| d.chars().next());
        }
    }
    Some('/')
}
