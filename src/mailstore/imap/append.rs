//! APPEND with flags and INTERNALDATE; pipelined with LITERAL+, APPENDUID read where offered,
//! BINARY (literal8) for messages holding NUL.

use imap_proto::rfc4315::UidSetMember;
use imap_proto::ResponseCode;

use super::connection::{Completion, Ctx, Part};
use super::list::quote_mailbox;
use super::ImapStore;
use crate::mailstore::{AppendRequest, StoreError};
use crate::model::FolderPath;

impl ImapStore {
    /// Appends in order. With LITERAL+ every command of the batch is written before any answer
    /// is read (one round trip per batch); otherwise each literal waits for its continuation.
    /// A per-message NO (the server refused that message) is returned in its slot; a
    /// connection failure fails the whole call, and the caller must treat the batch's outcome as
    /// unknown.
    pub(super) async fn append_batch(
        &mut self,
        path: &FolderPath,
        messages: &[AppendRequest<'_>],
    ) -> Result<Vec<Result<Option<u32>, StoreError>>, StoreError> {
        let wire = self.wire_name(path)?;
        let display = path.to_string();
        let ctx = Ctx::on("APPEND", &display);
        let mailbox = quote_mailbox(&wire);
        let mut results = Vec::with_capacity(messages.len());
        if self.caps.literal_plus {
            let mut tags = Vec::with_capacity(messages.len());
            for m in messages {
                let head = command_head(&mailbox, m);
                tags.push(
                    self.conn
                        .send(&[Part::Text(&head), self.literal(m.bytes)], ctx)
                        .await?,
                );
            }
            for tag in tags {
                results.push(classify(self.conn.finish(&tag, ctx).await)?);
            }
        } else {
            for m in messages {
                let head = command_head(&mailbox, m);
                results.push(classify(
                    self.conn
                        .run(&[Part::Text(&head), self.literal(m.bytes)], ctx)
                        .await,
                )?);
            }
        }
        Ok(results)
    }
}

impl ImapStore {
    /// A message with a NUL byte goes as a literal8 where the server offers BINARY (RFC 3516):
    /// servers refuse NUL in a plain literal. Everything else as a plain literal.
    fn literal<'a>(&self, bytes: &'a [u8]) -> Part<'a> {
        if self.caps.binary && memchr::memchr(0, bytes).is_some() {
            Part::Literal8(bytes)
        } else {
            Part::Literal(bytes)
        }
    }
}

fn command_head(mailbox: &str, m: &AppendRequest<'_>) -> String {
    format!(
        "APPEND {mailbox} {} {} ",
        m.flags.to_imap_list(),
        m.internaldate.to_imap_quoted()
    )
}

/// Splits a per-message refusal (kept in the result) from a connection failure (returned).
fn classify(
    result: Result<Completion, StoreError>,
) -> Result<Result<Option<u32>, StoreError>, StoreError> {
    match result {
        Ok(done) => {
            crate::crashpoint::hit("after_append_ok");
            Ok(Ok(append_uid(&done)))
        }
        Err(e @ StoreError::No { .. }) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

fn append_uid(done: &Completion) -> Option<u32> {
    match done.code() {
        Some(ResponseCode::AppendUid(_, members)) => members.first().map(|m| match m {
            UidSetMember::Uid(u) => *u,
            UidSetMember::UidRange(r) => *r.start(),
        }),
        _ => None,
    }
}
