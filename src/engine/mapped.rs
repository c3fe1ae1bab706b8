//! A target store seen through a [`FolderMap`]: the engine speaks the source's folder paths,
//! and every path going to the target (and coming back from its listing) is translated, so a
//! source's `Sent Items` is the target's `Sent` without the engine knowing.

use std::sync::Arc;

use crate::mailstore::{
    AppendRequest, Capabilities, FetchedBody, FlagChange, FolderChanges, FolderInfo, FolderStatus,
    FolderTokens, MailStore, MessageMeta, StoreError,
};
use crate::model::{ContentSha1, FlagSet, FolderPath};
use crate::reconcile::folder_map::{FolderMap, Rules};

/// `inner` with folder paths translated by `map`.
pub struct Mapped<T> {
    inner: T,
    map: Arc<FolderMap>,
    /// A listing just made (to build the map), answered once instead of listing again.
    listed: Option<Vec<FolderInfo>>,
}

impl<T> Mapped<T> {
    pub fn new(inner: T, map: Arc<FolderMap>) -> Mapped<T> {
        Mapped {
            inner,
            map,
            listed: None,
        }
    }

    /// Like [`new`](Self::new); the first `list_folders` answers `listing` (the store's own,
    /// untranslated, taken a moment ago) without asking the server.
    pub fn with_listing(inner: T, map: Arc<FolderMap>, listing: Vec<FolderInfo>) -> Mapped<T> {
        Mapped {
            inner,
            map,
            listed: Some(listing),
        }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

/// Lists both sides and decides which source folders live under another name on the target
/// (special-use, and the explicit `rules` of a migration). The listings come back too, for
/// [`Mapped::with_listing`]. Rules that would merge two folders are refused here.
pub async fn folder_map<S: MailStore, T: MailStore>(
    source: &mut S,
    target: &mut T,
    rules: &Rules,
) -> Result<(FolderMap, Vec<FolderInfo>, Vec<FolderInfo>), StoreError> {
    let (s, t) = tokio::join!(source.list_folders(), target.list_folders());
    let (s, t) = (s?, t?);
    let map = FolderMap::build_with(&s, &t, rules).map_err(|detail| StoreError::Refused {
        endpoint: target.endpoint().to_string(),
        detail,
    })?;
    Ok((map, s, t))
}

impl<T: MailStore> MailStore for Mapped<T> {
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, StoreError> {
        let mut folders = match self.listed.take() {
            Some(listed) => listed,
            None => self.inner.list_folders().await?,
        };
        folders.retain(|f| !self.map.hides(&f.path));
        for f in &mut folders {
            f.path = self.map.to_source(&f.path);
        }
        folders.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(folders)
    }

    async fn create_folder(
        &mut self,
        path: &FolderPath,
        special_use: Option<&str>,
    ) -> Result<(), StoreError> {
        self.inner
            .create_folder(&self.map.to_target(path), special_use)
            .await
    }

    async fn rename_folder(
        &mut self,
        from: &FolderPath,
        to: &FolderPath,
    ) -> Result<(), StoreError> {
        let (from, to) = (self.map.to_target(from), self.map.to_target(to));
        self.inner.rename_folder(&from, &to).await
    }

    async fn delete_folder(&mut self, path: &FolderPath) -> Result<(), StoreError> {
        self.inner.delete_folder(&self.map.to_target(path)).await
    }

    async fn set_subscribed(&mut self, path: &FolderPath, on: bool) -> Result<(), StoreError> {
        self.inner
            .set_subscribed(&self.map.to_target(path), on)
            .await
    }

    async fn open_folder(&mut self, path: &FolderPath) -> Result<FolderStatus, StoreError> {
        self.inner.open_folder(&self.map.to_target(path)).await
    }

    async fn list_messages(&mut self) -> Result<Vec<MessageMeta>, StoreError> {
        self.inner.list_messages().await
    }

    async fn list_changes(
        &mut self,
        since: &FolderTokens,
        old_known: u32,
    ) -> Result<FolderChanges, StoreError> {
        self.inner.list_changes(since, old_known).await
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<FetchedBody>, StoreError> {
        self.inner.fetch_bodies(uids).await
    }

    async fn fetch_message_ids(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Option<String>)>, StoreError> {
        self.inner.fetch_message_ids(uids).await
    }

    async fn append(
        &mut self,
        path: &FolderPath,
        messages: &[AppendRequest<'_>],
    ) -> Result<Vec<Result<Option<u32>, StoreError>>, StoreError> {
        self.inner.append(&self.map.to_target(path), messages).await
    }

    fn set_append_group_limit(&mut self, bytes: u64) {
        self.inner.set_append_group_limit(bytes);
    }

    async fn store_flags(
        &mut self,
        uids: &[u32],
        change: FlagChange,
        flags: &FlagSet,
    ) -> Result<(), StoreError> {
        self.inner.store_flags(uids, change, flags).await
    }

    async fn store_flags_many(
        &mut self,
        changes: &[(&[u32], FlagChange, &FlagSet)],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.inner.store_flags_many(changes).await
    }

    async fn copy(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        self.inner.copy(uids, &self.map.to_target(to)).await
    }

    async fn move_messages(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        self.inner
            .move_messages(uids, &self.map.to_target(to))
            .await
    }

    async fn close_folder(&mut self) -> Result<(), StoreError> {
        self.inner.close_folder().await
    }

    fn names_content_by_sha1(&self) -> bool {
        self.inner.names_content_by_sha1()
    }

    async fn content_sha1(&mut self, uids: &[u32]) -> Result<Vec<(u32, ContentSha1)>, StoreError> {
        self.inner.content_sha1(uids).await
    }

    async fn expunge(&mut self, uids: &[u32]) -> Result<(), StoreError> {
        self.inner.expunge(uids).await
    }

    async fn logout(&mut self) {
        self.inner.logout().await
    }
}
