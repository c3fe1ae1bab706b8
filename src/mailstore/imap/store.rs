//! UID STORE: add or remove flags on a UID set, silently (no echo of every message's flags);
//! several pipelined.

use super::connection::{Ctx, Part};
use super::ImapStore;
use crate::mailstore::{uid_set, FlagChange, StoreError};
use crate::model::FlagSet;

impl ImapStore {
    pub(super) async fn store(
        &mut self,
        uids: &[u32],
        change: FlagChange,
        flags: &FlagSet,
    ) -> Result<(), StoreError> {
        self.selected_name("UID STORE")?;
        if uids.is_empty() || (flags.is_empty() && change != FlagChange::Replace) {
            return Ok(());
        }
        let display = self.selected_display();
        let cmd = store_command(uids, change, flags);
        self.conn
            .run_text(&cmd, Ctx::on("UID STORE", &display))
            .await?;
        Ok(())
    }

    /// Several STOREs pipelined: all sent, then every answer read (a NO is that change's
    /// outcome; a broken connection fails the call).
    pub(super) async fn store_many(
        &mut self,
        changes: &[(&[u32], FlagChange, &FlagSet)],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.selected_name("UID STORE")?;
        let display = self.selected_display();
        let ctx = Ctx::on("UID STORE", &display);
        let mut tags = Vec::with_capacity(changes.len());
        for (uids, change, flags) in changes {
            if uids.is_empty() || (flags.is_empty() && *change != FlagChange::Replace) {
                tags.push(None);
                continue;
            }
            let cmd = store_command(uids, *change, flags);
            tags.push(Some(self.conn.send(&[Part::Text(&cmd)], ctx).await?));
        }
        let mut out = Vec::with_capacity(tags.len());
        for tag in tags {
            let Some(tag) = tag else {
                out.push(Ok(()));
                continue;
            };
            match self.conn.finish(&tag, ctx).await {
                Ok(_) => out.push(Ok(())),
                Err(e @ StoreError::No { .. }) => out.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

pub(super) fn store_command(uids: &[u32], change: FlagChange, flags: &FlagSet) -> String {
    let sign = match change {
        FlagChange::Add => "+",
        FlagChange::Remove => "-",
        FlagChange::Replace => "",
    };
    format!(
        "UID STORE {} {sign}FLAGS.SILENT {}",
        uid_set(uids),
        flags.to_imap_list()
    )
}
