//! The IMAP adapter: [`ImapStore`] implements [`MailStore`] over one guarded [`Connection`].
//!
//! Files are named after what they implement: `open` (TLS, greeting), `authenticate` (login:
//! password, admin, OAuth token) with `sasl` (its messages), `list`, `select`, `fetch`,
//! `append`, `store`, `copy`, `expunge`, `idle`; `connection` holds the guarantees every command
//! relies on; `namespace` maps folder names to paths through the server's personal prefix.

pub mod append;
pub mod authenticate;
pub mod changes;
pub mod connection;
pub mod copy;
pub mod expunge;
pub mod fetch;
pub mod idle;
pub mod list;
pub mod literal8;
pub mod mutf7;
pub mod namespace;
pub mod open;
pub mod sasl;
pub mod select;
pub mod store;
pub mod transport;

use connection::{Connection, Part};

use crate::config::SideConfig;
use crate::mailstore::{
    Access, AppendRequest, Capabilities, FetchedBody, FlagChange, FolderChanges, FolderInfo,
    FolderStatus, FolderTokens, MailStore, MessageMeta, StoreError,
};
use crate::model::{FlagSet, FolderPath};

/// One IMAP account, opened read-only or read-write.
pub struct ImapStore {
    conn: Connection,
    caps: Capabilities,
    access: Access,
    endpoint: String,
    /// The hierarchy delimiter (from `LIST "" ""`), `None` for a flat server.
    delimiter: Option<char>,
    /// The personal namespace's prefix (`INBOX.` on Courier-style servers).
    namespace: namespace::Namespace,
    /// The open folder: its path and wire name.
    selected: Option<(FolderPath, String)>,
    /// EXISTS of the open folder when it was opened.
    selected_exists: u32,
    /// The open folder's tokens when it was opened.
    selected_tokens: Option<FolderTokens>,
    /// `ENABLE QRESYNC` succeeded: expunges arrive as VANISHED, FETCH always carries UID.
    qresync_enabled: bool,
    /// The most message bytes one MULTIAPPEND command carries (see
    /// [`MailStore::set_append_group_limit`]).
    append_group_bytes: u64,
}

impl ImapStore {
    /// Connects and logs in.
    pub async fn connect(config: &SideConfig, access: Access) -> Result<ImapStore, StoreError> {
        let (conn, caps, namespace) = open::open(config).await?;
        let mut store = ImapStore {
            conn,
            caps,
            access,
            endpoint: config.endpoint.to_string(),
            delimiter: None,
            namespace,
            selected: None,
            selected_exists: 0,
            selected_tokens: None,
            qresync_enabled: false,
            append_group_bytes: u64::MAX,
        };
        store.settle_in().await?;
        Ok(store)
    }

    /// `ENABLE QRESYNC` (where offered) and `LIST "" ""` (the delimiter), in one round trip.
    async fn settle_in(&mut self) -> Result<(), StoreError> {
        let enable = connection::Ctx::new("ENABLE");
        let list = connection::Ctx::new("LIST");
        let enable_tag = if self.wants_qresync() {
            Some(
                self.conn
                    .send(&[Part::Text("ENABLE QRESYNC")], enable)
                    .await?,
            )
        } else {
            None
        };
        let list_tag = self
            .conn
            .send(&[Part::Text("LIST \"\" \"\"")], list)
            .await?;
        if let Some(tag) = enable_tag {
            let done = self.conn.finish(&tag, enable).await?;
            self.qresync_enabled = qresync_in(&done);
        }
        let done = self.conn.finish(&list_tag, list).await?;
        self.delimiter = list::delimiter_in(&done);
        Ok(())
    }

    /// `ENABLE QRESYNC` where offered (RFC 7162); true when the server enabled it.
    /// `MAILREPLICA_TEST_NO_QRESYNC=1` leaves it off, so tests reach the CONDSTORE-only path on
    /// a server that offers both.
    fn wants_qresync(&self) -> bool {
        self.caps.qresync && std::env::var_os("MAILREPLICA_TEST_NO_QRESYNC").is_none()
    }

    /// The hierarchy delimiter the server announced (`LIST "" ""`), `None` for a flat server.
    pub fn delimiter(&self) -> Option<char> {
        self.delimiter
    }

    /// The personal namespace's prefix (empty when none), which folder paths leave out.
    pub fn namespace_prefix(&self) -> &str {
        &self.namespace.prefix
    }

    fn require_write(&self, command: &str) -> Result<(), StoreError> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(StoreError::ReadOnly {
                endpoint: self.endpoint.clone(),
                command: command.to_string(),
            }),
        }
    }

    /// The wire name of a folder path (separator and modified UTF-7).
    fn wire_name(&self, path: &FolderPath) -> Result<String, StoreError> {
        let name = self.namespace.name_of(path, self.delimiter).ok_or_else(|| StoreError::Refused {
            endpoint: self.endpoint.clone(),
            detail: format!(
                "folder {path} cannot be named on this server: a component contains its hierarchy separator {:?}",
                self.delimiter.unwrap_or('/')
            ),
        })?;
        Ok(mutf7::encode(&name))
    }

    fn selected_name(&self, command: &str) -> Result<String, StoreError> {
        self.conn.check_poison(connection::Ctx::new(command))?;
        match &self.selected {
            Some((_, name)) => Ok(name.clone()),
            None => Err(StoreError::Protocol {
                endpoint: self.endpoint.clone(),
                command: command.to_string(),
                detail: "no folder is open (a mailreplica bug)".into(),
            }),
        }
    }

    fn selected_display(&self) -> String {
        self.selected
            .as_ref()
            .map(|(p, _)| p.to_string())
            .unwrap_or_default()
    }
}

impl MailStore for ImapStore {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, StoreError> {
        self.list().await
    }

    async fn create_folder(
        &mut self,
        path: &FolderPath,
        special_use: Option<&str>,
    ) -> Result<(), StoreError> {
        self.require_write("CREATE")?;
        let special_use = special_use.filter(|_| self.caps.has("CREATE-SPECIAL-USE"));
        self.create(path, special_use).await
    }

    async fn rename_folder(
        &mut self,
        from: &FolderPath,
        to: &FolderPath,
    ) -> Result<(), StoreError> {
        self.require_write("RENAME")?;
        self.rename(from, to).await
    }

    async fn delete_folder(&mut self, path: &FolderPath) -> Result<(), StoreError> {
        self.require_write("DELETE")?;
        self.delete(path).await
    }

    async fn set_subscribed(&mut self, path: &FolderPath, on: bool) -> Result<(), StoreError> {
        self.require_write(if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" })?;
        self.subscribe(path, on).await
    }

    async fn open_folder(&mut self, path: &FolderPath) -> Result<FolderStatus, StoreError> {
        self.select(path).await
    }

    async fn list_messages(&mut self) -> Result<Vec<MessageMeta>, StoreError> {
        self.fetch_meta().await
    }

    async fn list_changes(
        &mut self,
        since: &FolderTokens,
        old_known: u32,
    ) -> Result<FolderChanges, StoreError> {
        self.changes_since(since, old_known).await
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<FetchedBody>, StoreError> {
        self.fetch_body_batch(uids).await
    }

    async fn fetch_message_ids(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Option<String>)>, StoreError> {
        self.fetch_message_id_batch(uids).await
    }

    async fn append(
        &mut self,
        path: &FolderPath,
        messages: &[AppendRequest<'_>],
    ) -> Result<Vec<Result<Option<u32>, StoreError>>, StoreError> {
        self.require_write("APPEND")?;
        self.append_batch(path, messages).await
    }

    fn set_append_group_limit(&mut self, bytes: u64) {
        self.append_group_bytes = bytes;
    }

    async fn store_flags(
        &mut self,
        uids: &[u32],
        change: FlagChange,
        flags: &FlagSet,
    ) -> Result<(), StoreError> {
        self.require_write("STORE")?;
        self.store(uids, change, flags).await
    }

    async fn store_flags_many(
        &mut self,
        changes: &[(&[u32], FlagChange, &FlagSet)],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.require_write("STORE")?;
        self.store_many(changes).await
    }

    async fn copy(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        self.require_write("COPY")?;
        self.copy_uids(uids, to).await
    }

    async fn move_messages(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        self.require_write("MOVE")?;
        self.move_uids(uids, to).await
    }

    async fn close_folder(&mut self) -> Result<(), StoreError> {
        // Never CLOSE: it would expunge messages other clients marked \Deleted.
        if self.selected.is_none() || !self.caps.has("UNSELECT") {
            return Ok(());
        }
        self.conn
            .run_text("UNSELECT", connection::Ctx::new("UNSELECT"))
            .await?;
        self.selected = None;
        self.selected_tokens = None;
        Ok(())
    }

    async fn expunge(&mut self, uids: &[u32]) -> Result<(), StoreError> {
        self.require_write("EXPUNGE")?;
        self.expunge_uids(uids).await
    }

    async fn logout(&mut self) {
        if !self.conn.is_poisoned() {
            let _ = self
                .conn
                .run_text("LOGOUT", connection::Ctx::new("LOGOUT"))
                .await;
        }
    }
}

/// Whether `ENABLE QRESYNC`'s answer says it is enabled.
fn qresync_in(done: &connection::Completion) -> bool {
    done.untagged.iter().any(|r| match r.parsed() {
        imap_proto::Response::Capabilities(caps) => caps.iter().any(
            |c| matches!(c, imap_proto::Capability::Atom(a) if a.eq_ignore_ascii_case("QRESYNC")),
        ),
        _ => false,
    })
}
