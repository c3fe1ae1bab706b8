//! [`AnyStore`]: one side over IMAP or JMAP, chosen by its URL's scheme, behind [`MailStore`].

use super::imap::ImapStore;
use super::jmap::JmapStore;
use super::{
    Access, AppendRequest, Capabilities, FetchedBody, FlagChange, FolderChanges, FolderInfo,
    FolderStatus, FolderTokens, MailStore, MessageMeta, StoreError,
};
use crate::config::SideConfig;
use crate::model::{ContentSha1, FlagSet, FolderPath};

/// A side of either protocol. The CLI opens every side through [`AnyStore::connect`]. The
/// IMAP store is kept inline: it is the common case, and one store lives per connection.
#[allow(clippy::large_enum_variant)]
pub enum AnyStore {
    Imap(ImapStore),
    Jmap(JmapStore),
}

impl AnyStore {
    /// Connects and logs in over the protocol the side's URL names.
    pub async fn connect(config: &SideConfig, access: Access) -> Result<AnyStore, StoreError> {
        if config.endpoint.scheme.is_jmap() {
            Ok(AnyStore::Jmap(JmapStore::connect(config, access).await?))
        } else {
            Ok(AnyStore::Imap(ImapStore::connect(config, access).await?))
        }
    }

    /// The hierarchy separator; `None` on JMAP, where a mailbox name may hold any character.
    pub fn delimiter(&self) -> Option<char> {
        match self {
            AnyStore::Imap(s) => s.delimiter(),
            AnyStore::Jmap(_) => None,
        }
    }

    /// The personal namespace's prefix (empty when none, always on JMAP).
    pub fn namespace_prefix(&self) -> &str {
        match self {
            AnyStore::Imap(s) => s.namespace_prefix(),
            AnyStore::Jmap(_) => "",
        }
    }
}

/// Calls the same method on whichever store this is.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Imap($s) => $call,
            AnyStore::Jmap($s) => $call,
        }
    };
}

impl MailStore for AnyStore {
    fn endpoint(&self) -> &str {
        each!(self, s => s.endpoint())
    }
    fn capabilities(&self) -> &Capabilities {
        each!(self, s => s.capabilities())
    }
    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, StoreError> {
        each!(self, s => s.list_folders().await)
    }
    async fn create_folder(
        &mut self,
        path: &FolderPath,
        special_use: Option<&str>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.create_folder(path, special_use).await)
    }
    async fn rename_folder(
        &mut self,
        from: &FolderPath,
        to: &FolderPath,
    ) -> Result<(), StoreError> {
        each!(self, s => s.rename_folder(from, to).await)
    }
    async fn delete_folder(&mut self, path: &FolderPath) -> Result<(), StoreError> {
        each!(self, s => s.delete_folder(path).await)
    }
    async fn set_subscribed(&mut self, path: &FolderPath, on: bool) -> Result<(), StoreError> {
        each!(self, s => s.set_subscribed(path, on).await)
    }
    async fn open_folder(&mut self, path: &FolderPath) -> Result<FolderStatus, StoreError> {
        each!(self, s => s.open_folder(path).await)
    }
    async fn list_messages(&mut self) -> Result<Vec<MessageMeta>, StoreError> {
        each!(self, s => s.list_messages().await)
    }
    async fn list_changes(
        &mut self,
        since: &FolderTokens,
        old_known: u32,
    ) -> Result<FolderChanges, StoreError> {
        each!(self, s => s.list_changes(since, old_known).await)
    }
    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<FetchedBody>, StoreError> {
        each!(self, s => s.fetch_bodies(uids).await)
    }
    async fn fetch_message_ids(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Option<String>)>, StoreError> {
        each!(self, s => s.fetch_message_ids(uids).await)
    }
    async fn append(
        &mut self,
        path: &FolderPath,
        messages: &[AppendRequest<'_>],
    ) -> Result<Vec<Result<Option<u32>, StoreError>>, StoreError> {
        each!(self, s => s.append(path, messages).await)
    }
    fn set_append_group_limit(&mut self, bytes: u64) {
        each!(self, s => s.set_append_group_limit(bytes))
    }
    async fn store_flags(
        &mut self,
        uids: &[u32],
        change: FlagChange,
        flags: &FlagSet,
    ) -> Result<(), StoreError> {
        each!(self, s => s.store_flags(uids, change, flags).await)
    }
    async fn store_flags_many(
        &mut self,
        changes: &[(&[u32], FlagChange, &FlagSet)],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        each!(self, s => s.store_flags_many(changes).await)
    }
    async fn copy(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        each!(self, s => s.copy(uids, to).await)
    }
    async fn move_messages(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        each!(self, s => s.move_messages(uids, to).await)
    }
    async fn close_folder(&mut self) -> Result<(), StoreError> {
        each!(self, s => s.close_folder().await)
    }
    fn names_content_by_sha1(&self) -> bool {
        each!(self, s => s.names_content_by_sha1())
    }
    async fn content_sha1(&mut self, uids: &[u32]) -> Result<Vec<(u32, ContentSha1)>, StoreError> {
        each!(self, s => s.content_sha1(uids).await)
    }
    async fn expunge(&mut self, uids: &[u32]) -> Result<(), StoreError> {
        each!(self, s => s.expunge(uids).await)
    }
    async fn logout(&mut self) {
        each!(self, s => s.logout().await)
    }
}
