//! UID STORE: add or remove flags on a UID set, silently (no echo of every message's flags).

use super::connection::Ctx;
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
        let sign = match change {
            FlagChange::Add => "+",
            FlagChange::Remove => "-",
            FlagChange::Replace => "",
        };
        let cmd = format!(
            "UID STORE {} {sign}FLAGS.SILENT {}",
            uid_set(uids),
            flags.to_imap_list()
        );
        self.conn
            .run_text(&cmd, Ctx::on("UID STORE", &display))
            .await?;
        Ok(())
    }
}
