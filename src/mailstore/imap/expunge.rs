//! Removing exactly the given UIDs: UID EXPUNGE with UIDPLUS, else the guarded EXPUNGE dance.

use std::collections::BTreeSet;

use imap_proto::{MailboxDatum, Response};

use super::connection::{Ctx, Part};
use super::store::store_command;
use super::ImapStore;
use crate::mailstore::{uid_set, FlagChange, StoreError};
use crate::model::FlagSet;

impl ImapStore {
    /// Marks the UIDs `\Deleted` and expunges only them. Without UIDPLUS a plain EXPUNGE would
    /// also remove messages other clients marked `\Deleted`, so their mark is cleared first and
    /// restored after (DESIGN.md "Crash safety").
    pub(super) async fn expunge_uids(&mut self, uids: &[u32]) -> Result<(), StoreError> {
        self.selected_name("EXPUNGE")?;
        if uids.is_empty() {
            return Ok(());
        }
        let display = self.selected_display();
        let deleted = FlagSet::from_raw(["\\Deleted"]);
        if self.caps.uidplus {
            // Both in one round trip: were the STORE refused, UID EXPUNGE would remove only
            // those of these UIDs already marked, which are to go anyway.
            let store = store_command(uids, FlagChange::Add, &deleted);
            let store_ctx = Ctx::on("UID STORE", &display);
            let store_tag = self.conn.send(&[Part::Text(&store)], store_ctx).await?;
            let cmd = format!("UID EXPUNGE {}", uid_set(uids));
            let ctx = Ctx::on("UID EXPUNGE", &display);
            let tag = self.conn.send(&[Part::Text(&cmd)], ctx).await?;
            let marked = self.conn.finish(&store_tag, store_ctx).await;
            let expunged = self.conn.finish(&tag, ctx).await;
            marked?;
            expunged?;
            return Ok(());
        }
        let done = self
            .conn
            .run_text("UID SEARCH DELETED", Ctx::on("UID SEARCH", &display))
            .await?;
        let mine: BTreeSet<u32> = uids.iter().copied().collect();
        let mut others: Vec<u32> = Vec::new();
        for r in &done.untagged {
            if let Response::MailboxData(MailboxDatum::Search(found)) = r.parsed() {
                others.extend(found.iter().copied().filter(|u| !mine.contains(u)));
            }
        }
        self.store(&others, FlagChange::Remove, &deleted).await?;
        self.store(uids, FlagChange::Add, &deleted).await?;
        let expunged = self
            .conn
            .run_text("EXPUNGE", Ctx::on("EXPUNGE", &display))
            .await;
        // Restore the other clients' marks even when EXPUNGE failed.
        self.store(&others, FlagChange::Add, &deleted).await?;
        expunged.map(|_| ())
    }
}
