//! SELECT and EXAMINE: open a folder and read UIDVALIDITY, UIDNEXT, EXISTS, PERMANENTFLAGS.

use imap_proto::{MailboxDatum, Response, ResponseCode, Status};

use super::connection::{Ctx, Part};
use super::list::quote_mailbox;
use super::ImapStore;
use crate::mailstore::{Access, FolderStatus, PermanentFlags, StoreError};
use crate::model::{FlagSet, FolderPath};

impl ImapStore {
    /// Opens a folder: EXAMINE on a read-only side, so no flag (not even `\Recent`) changes.
    /// A folder without UIDVALIDITY is an error: UIDs without it identify nothing.
    pub(super) async fn select(&mut self, path: &FolderPath) -> Result<FolderStatus, StoreError> {
        let wire = self.wire_name(path)?;
        let display = path.to_string();
        let verb = match self.access {
            Access::ReadOnly => "EXAMINE",
            Access::ReadWrite => "SELECT",
        };
        self.selected = None;
        self.selected_tokens = None;
        let quoted = quote_mailbox(&wire);
        let cmd = format!("{verb} ");
        let done = match self
            .conn
            .run(
                &[Part::Text(&cmd), Part::Text(&quoted)],
                Ctx::on(verb, &display),
            )
            .await
        {
            Ok(done) => done,
            Err(StoreError::No { code, endpoint, .. })
                if code.as_deref() == Some("NONEXISTENT") =>
            {
                return Err(StoreError::NoSuchFolder {
                    endpoint,
                    folder: display,
                });
            }
            Err(e) => return Err(e),
        };
        let mut uidvalidity = None;
        let mut uidnext = None;
        let mut exists = None;
        let mut permanent_flags = None;
        let mut highest_modseq = None;
        for r in &done.untagged {
            match r.parsed() {
                Response::MailboxData(MailboxDatum::Exists(n)) => exists = Some(*n),
                Response::Data {
                    status: Status::Ok,
                    outcome,
                } => match &outcome.code {
                    Some(ResponseCode::UidValidity(v)) => uidvalidity = Some(*v),
                    Some(ResponseCode::UidNext(v)) => uidnext = Some(*v),
                    Some(ResponseCode::HighestModSeq(v)) => highest_modseq = Some(*v),
                    Some(ResponseCode::PermanentFlags(flags)) => {
                        permanent_flags = Some(PermanentFlags {
                            any_keyword: flags.iter().any(|f| f == "\\*"),
                            flags: FlagSet::from_raw(flags.iter().map(|f| f.as_ref())),
                        })
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        let ctx = Ctx::on(verb, &display);
        let Some(uidvalidity) = uidvalidity else {
            return Err(self.conn.protocol_error(
                ctx,
                "no UIDVALIDITY in the answer; UIDs cannot be trusted".into(),
            ));
        };
        let Some(exists) = exists else {
            return Err(self
                .conn
                .protocol_error(ctx, "no EXISTS in the answer".into()));
        };
        self.selected = Some((path.clone(), wire));
        self.selected_exists = exists;
        let status = FolderStatus {
            uidvalidity,
            uidnext,
            exists,
            permanent_flags,
            // RFC 7162: 0 means the folder keeps no mod-sequences.
            highest_modseq: highest_modseq.filter(|m| *m != 0),
        };
        self.selected_tokens = Some(status.tokens());
        Ok(status)
    }
}
