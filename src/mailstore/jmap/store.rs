//! [`JmapStore`]: a JMAP account behind [`MailStore`], seen as IMAP folders through the side's
//! [`UidMap`].
//!
//! Mailboxes are folders (paths from `parentId`, SPECIAL-USE from `role`); an email in several
//! mailboxes is one message in each; keywords are flags (`$seen` is `\Seen`, ...), one set per
//! email. Writes: a blob upload, then `Email/import` (APPEND); a `mailboxIds` patch (COPY,
//! MOVE, and EXPUNGE while another mailbox holds the email); keyword patches (STORE); a destroy
//! when the email's last mailbox goes. The account holds one email per content (Cyrus answers
//! `alreadyExists`): a second copy of a content in one mailbox is refused per message, with
//! code `ALREADYEXISTS`, a fidelity note the engine records once and `verify` accepts; the same
//! content in another mailbox is the existing email placed there too, never a second upload.
//! A read-only side refuses every write before the wire; JMAP reads never set `$seen`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::email::{utc_date_from_internaldate, EmailMeta, EmailPatch, ImportRequest};
use super::error::{JmapError, SetError};
use super::keywords::{flags_to_keywords, is_server_set, keywords_to_flags, special_use_to_role};
use super::mailbox::MailboxTree;
use super::push::{PushOptions, PushOutcome};
use super::session::Credentials;
use super::set::Outcomes;
use super::uid_map::UidMap;
use super::{ConnectOptions, JmapClient};
use crate::config::SideConfig;
use crate::mailstore::{
    Access, AppendRequest, Capabilities, FetchedBody, FlagChange, FolderInfo, FolderStatus,
    MailStore, MessageMeta, PermanentFlags, StoreError,
};
use crate::model::{ContentSha1, Flag, FlagSet, FolderPath};

/// The code of a refusal for a content the mailbox holds already (one email per content).
pub const ALREADY_EXISTS: &str = "ALREADYEXISTS";

/// The prefix of Cyrus's own session capabilities.
const CYRUS_CAPABILITY: &str = "https://cyrusimap.org/";

/// Blob downloads in flight at once per connection.
const PARALLEL_DOWNLOADS: usize = 4;

/// The folder opened last: its mailbox and its emails by UID.
struct OpenMailbox {
    id: String,
    path: FolderPath,
    emails: HashMap<u32, EmailMeta>,
    /// A write since the listing: list again before answering from it.
    stale: bool,
}

/// One JMAP account; see the module documentation.
pub struct JmapStore {
    client: JmapClient,
    access: Access,
    capabilities: Capabilities,
    uids: Arc<UidMap>,
    tree: MailboxTree,
    open: Option<OpenMailbox>,
    /// The server is Cyrus: a blobId is `G` + the SHA-1 of the message's bytes.
    cyrus: bool,
    /// This connection changed emails since it last counted changes: opening a folder counts
    /// them first, so that its tokens already show this connection's own writes.
    uncounted_writes: bool,
}

impl JmapStore {
    /// Fetches the session and the mailboxes. The side's UIDs live in `config.jmap_ids` when
    /// set (shared by every connection to it in this process), else in memory.
    pub async fn connect(config: &SideConfig, access: Access) -> Result<JmapStore, StoreError> {
        let endpoint = config.endpoint.to_string();
        let url = config
            .endpoint
            .jmap_url()
            .ok_or_else(|| StoreError::Refused {
                endpoint: endpoint.clone(),
                detail: "not a JMAP URL (a mailreplica bug)".into(),
            })?;
        if let Some(admin) = &config.auth.admin {
            return Err(StoreError::Refused {
                endpoint,
                detail: format!(
                    "an admin login ({admin}) is for IMAP; a JMAP side logs in as its own user, with a password (Basic) or an access token (--source-auth/--target-auth xoauth2 or oauthbearer: Bearer)"
                ),
            });
        }
        let credentials = if config.auth.mechanism.is_oauth() {
            Credentials::Bearer(config.password.clone())
        } else {
            Credentials::Password(config.password.clone())
        };
        let client = JmapClient::connect(ConnectOptions {
            url,
            credentials,
            tls: config.tls.clone(),
            allow_plaintext: config.allow_plaintext,
            timeout: config.timeout,
        })
        .await?;
        let uids = match &config.jmap_ids {
            Some(path) => UidMap::open(path)?,
            None => UidMap::in_memory(),
        };
        let limits = &client.session().limits;
        let mut atoms = vec![
            "UIDPLUS".to_string(),
            "MOVE".to_string(),
            "SPECIAL-USE".to_string(),
            // Leaving a folder is forgetting its listing: a connection is kept between passes.
            "UNSELECT".to_string(),
            "X-JMAP".to_string(),
        ];
        atoms.push(format!("APPENDLIMIT={}", limits.max_size_upload));
        let capabilities = Capabilities::from_atoms(atoms.iter().map(String::as_str));
        let tree = MailboxTree::new(client.mailboxes().await?.mailboxes);
        let cyrus = client
            .session()
            .capabilities
            .iter()
            .any(|c| c.starts_with(CYRUS_CAPABILITY));
        Ok(JmapStore {
            client,
            access,
            capabilities,
            uids,
            tree,
            open: None,
            cyrus,
            uncounted_writes: false,
        })
    }

    /// Waits for the account to change, over its event stream (JMAP push): see
    /// [`JmapClient::wait_for_change`].
    pub async fn wait_for_change(&self, opts: &PushOptions) -> Result<PushOutcome, StoreError> {
        Ok(self.client.wait_for_change(opts).await?)
    }

    /// Counts, in the UID map, every change to the account's emails since the state it saved
    /// (`Email/changes`, the changed emails' mailboxes fetched in the same request): each
    /// mailbox an email entered, left, or changed keywords in gets a higher change counter,
    /// the HIGHESTMODSEQ of its folder. Where the server cannot tell the changes (or on first
    /// sight), every mailbox counts as changed and the next listing reads it in full.
    async fn count_changes(&mut self) -> Result<(), StoreError> {
        self.uncounted_writes = false;
        let all = BTreeSet::new();
        let Some(since) = self.uids.email_state() else {
            let state = self.client.email_state().await?;
            return self.uids.advance(&state, &all, true);
        };
        let changes = match self.client.email_changes(&since, None).await {
            Ok(changes) => changes,
            Err(JmapError::CannotCalculateChanges { .. }) => {
                tracing::debug!(
                    since,
                    "the server cannot tell the changes: every mailbox is read again"
                );
                let state = self.client.email_state().await?;
                return self.uids.advance(&state, &all, true);
            }
            Err(e) => return Err(e.into()),
        };
        if changes.new_state == since {
            return Ok(());
        }
        let mut touched = BTreeSet::new();
        for e in changes.created.iter().chain(&changes.updated) {
            touched.extend(e.mailboxes().map(str::to_string));
            touched.extend(self.uids.mailboxes_of(&e.id));
        }
        for id in &changes.destroyed {
            touched.extend(self.uids.mailboxes_of(id));
        }
        tracing::debug!(
            created = changes.created.len(),
            updated = changes.updated.len(),
            destroyed = changes.destroyed.len(),
            mailboxes = touched.len(),
            "email changes counted"
        );
        self.uids.advance(&changes.new_state, &touched, false)
    }

    fn endpoint_string(&self) -> String {
        self.client.endpoint().to_string()
    }

    fn require_write(&self, command: &str) -> Result<(), StoreError> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(StoreError::ReadOnly {
                endpoint: self.endpoint_string(),
                command: command.to_string(),
            }),
        }
    }

    fn no_such_folder(&self, path: &FolderPath) -> StoreError {
        StoreError::NoSuchFolder {
            endpoint: self.endpoint_string(),
            folder: path.to_string(),
        }
    }

    /// The mailbox id at a path, reading the mailboxes again when the tree does not know it.
    async fn mailbox_id(&mut self, path: &FolderPath) -> Result<String, StoreError> {
        if let Some(m) = self.tree.find(path) {
            return Ok(m.id.clone());
        }
        self.tree = MailboxTree::new(self.client.mailboxes().await?.mailboxes);
        self.tree
            .find(path)
            .map(|m| m.id.clone())
            .ok_or_else(|| self.no_such_folder(path))
    }

    /// The open folder, listed again if a write made its listing stale.
    async fn opened(&mut self, command: &str) -> Result<&mut OpenMailbox, StoreError> {
        let no_folder = |endpoint: String| StoreError::Protocol {
            endpoint,
            command: command.to_string(),
            detail: "no folder is open (a mailreplica bug)".into(),
        };
        let relist = match &self.open {
            None => return Err(no_folder(self.endpoint_string())),
            Some(o) => o.stale.then(|| (o.id.clone(), o.path.clone())),
        };
        if let Some((id, path)) = relist {
            self.list_into_open(id, path).await?;
        }
        let endpoint = self.endpoint_string();
        self.open.as_mut().ok_or_else(|| no_folder(endpoint))
    }

    /// Lists a mailbox, brings its UIDs in line and makes it the open folder.
    async fn list_into_open(
        &mut self,
        id: String,
        path: FolderPath,
    ) -> Result<(u32, u32), StoreError> {
        let mut listing = self.client.list_mailbox(&id).await?;
        for e in &mut listing.emails {
            e.keywords.retain(|k, _| !is_server_set(k));
        }
        let ids: Vec<&str> = listing.emails.iter().map(|e| e.id.as_str()).collect();
        let observed = self.uids.observe(&id, &ids)?;
        let emails = observed.uids.iter().copied().zip(listing.emails).collect();
        self.open = Some(OpenMailbox {
            id,
            path,
            emails,
            stale: false,
        });
        Ok((observed.uidvalidity, observed.uidnext))
    }

    /// The open folder's emails with these UIDs (UIDs it does not hold are left out).
    async fn emails_at(
        &mut self,
        uids: &[u32],
        command: &str,
    ) -> Result<(String, Vec<(u32, EmailMeta)>), StoreError> {
        let open = self.opened(command).await?;
        let found = uids
            .iter()
            .filter_map(|u| open.emails.get(u).map(|e| (*u, e.clone())))
            .collect();
        Ok((open.id.clone(), found))
    }

    /// `Email/set` updates, each email's outcome by id (no request when there are none).
    async fn patch_emails(
        &self,
        patches: &[(String, EmailPatch)],
    ) -> Result<HashMap<String, Result<(), SetError>>, StoreError> {
        if patches.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(self
            .client
            .update_emails(patches)
            .await?
            .into_iter()
            .collect())
    }

    /// The first refusal among per-email outcomes, as an error on the open folder.
    fn first_refusal(&self, command: &str, outcomes: Outcomes) -> Result<(), StoreError> {
        let Some(e) = outcomes.into_iter().find_map(|(_, r)| r.err()) else {
            return Ok(());
        };
        let path = self
            .open
            .as_ref()
            .map(|o| o.path.clone())
            .unwrap_or_else(|| FolderPath::new(Vec::new()));
        Err(self.refused(command, &path, &e))
    }

    /// After a write to emails: the open listing is out of date, the changes are uncounted.
    fn mark_stale(&mut self) {
        self.uncounted_writes = true;
        if let Some(open) = &mut self.open {
            open.stale = true;
        }
    }

    fn refused(&self, command: &str, path: &FolderPath, e: &SetError) -> StoreError {
        StoreError::No {
            endpoint: self.endpoint_string(),
            command: command.to_string(),
            folder: format!(" in {path}"),
            text: e.to_string(),
            // As IMAP's [OVERQUOTA] and friends, so the engine treats both alike.
            code: e.response_code().map(str::to_string),
        }
    }
}

/// The flags every JMAP mailbox stores: the four system flags with a keyword, any keyword;
/// never `\Deleted` (RFC 8621: no keyword, the message is gone).
fn permanent_flags() -> PermanentFlags {
    let flags: FlagSet = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft"]
        .iter()
        .filter_map(|f| Flag::parse(f))
        .collect();
    PermanentFlags {
        flags,
        any_keyword: true,
    }
}

fn meta(uid: u32, e: &EmailMeta, keywords: &BTreeMap<String, bool>) -> Option<MessageMeta> {
    Some(MessageMeta {
        uid,
        flags: keywords_to_flags(keywords),
        internaldate: e.internaldate()?,
        size: u32::try_from(e.size).unwrap_or(u32::MAX),
    })
}

impl MailStore for JmapStore {
    fn endpoint(&self) -> &str {
        self.client.endpoint()
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, StoreError> {
        self.tree = MailboxTree::new(self.client.mailboxes().await?.mailboxes);
        self.count_changes().await?;
        let mut out: Vec<FolderInfo> = self
            .tree
            .iter()
            .filter_map(|m| {
                Some(FolderInfo {
                    path: self.tree.path(&m.id)?,
                    selectable: true,
                    special_use: m.special_use().map(str::to_string),
                    tokens: self.uids.tokens(&m.id),
                    subscribed: m.is_subscribed,
                })
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn create_folder(
        &mut self,
        path: &FolderPath,
        special_use: Option<&str>,
    ) -> Result<(), StoreError> {
        self.require_write("Mailbox/set create")?;
        let role = special_use.and_then(special_use_to_role);
        // Another connection may have created a parent since: read the tree afresh.
        self.tree = MailboxTree::new(self.client.mailboxes().await?.mailboxes);
        let created = match self
            .client
            .create_mailbox(&self.tree, path, role, false)
            .await
        {
            Ok(created) => created,
            // Two connections creating folders under one new parent at once: the other made
            // the parent (or the folder) first. Read the tree again and finish the job.
            Err(first) => {
                self.tree = MailboxTree::new(self.client.mailboxes().await?.mailboxes);
                if self.tree.find(path).is_some() {
                    return Ok(());
                }
                tracing::debug!(folder = %path, "creating again after: {first}");
                self.client
                    .create_mailbox(&self.tree, path, role, false)
                    .await?
            }
        };
        for m in created.created {
            self.tree.insert(m);
        }
        Ok(())
    }

    async fn rename_folder(
        &mut self,
        from: &FolderPath,
        to: &FolderPath,
    ) -> Result<(), StoreError> {
        self.require_write("Mailbox/set rename")?;
        let id = self.mailbox_id(from).await?;
        let Some((name, parent)) = to.components().split_last() else {
            return Err(self.no_such_folder(to));
        };
        let parent_id = if parent.is_empty() {
            None
        } else {
            let parent_path = FolderPath::new(parent.to_vec());
            if self.tree.find(&parent_path).is_none() {
                self.create_folder(&parent_path, None).await?;
            }
            Some(self.mailbox_id(&parent_path).await?)
        };
        let mailbox = self
            .tree
            .get(&id)
            .cloned()
            .ok_or_else(|| self.no_such_folder(from))?;
        self.client
            .rename_mailbox(&mailbox, name, parent_id.as_deref())
            .await?;
        self.tree = MailboxTree::new(self.client.mailboxes().await?.mailboxes);
        Ok(())
    }

    async fn delete_folder(&mut self, path: &FolderPath) -> Result<(), StoreError> {
        self.require_write("Mailbox/set destroy")?;
        let id = self.mailbox_id(path).await?;
        self.client.destroy_mailbox(&id, false).await?;
        self.tree.remove(&id);
        if self.open.as_ref().is_some_and(|o| o.id == id) {
            self.open = None;
        }
        Ok(())
    }

    async fn set_subscribed(&mut self, path: &FolderPath, on: bool) -> Result<(), StoreError> {
        self.require_write("Mailbox/set isSubscribed")?;
        let id = self.mailbox_id(path).await?;
        self.client.set_mailbox_subscribed(&id, on).await?;
        Ok(())
    }

    async fn open_folder(&mut self, path: &FolderPath) -> Result<FolderStatus, StoreError> {
        let id = self.mailbox_id(path).await?;
        // The counter is read before the listing: a change after it shows as a higher counter
        // once counted (by the next pass's folder listing at the latest). This connection's
        // own writes are counted now, so that tokens read after them show them already.
        if self.uncounted_writes {
            self.count_changes().await?;
        }
        let modseq = self.uids.modseq(&id);
        let (uidvalidity, uidnext) = self.list_into_open(id, path.clone()).await?;
        let exists = self
            .open
            .as_ref()
            .map(|o| o.emails.len() as u32)
            .unwrap_or(0);
        Ok(FolderStatus {
            uidvalidity,
            uidnext: Some(uidnext),
            exists,
            permanent_flags: Some(permanent_flags()),
            highest_modseq: Some(modseq),
        })
    }

    async fn list_messages(&mut self) -> Result<Vec<MessageMeta>, StoreError> {
        let endpoint = self.endpoint_string();
        let uids = self.uids.clone();
        let open = self.opened("Email/query").await?;
        let mut out = Vec::with_capacity(open.emails.len());
        for (uid, e) in &open.emails {
            let keywords = uids.instance_keywords(&open.id, *uid, &e.id, &e.keywords);
            let m = meta(*uid, e, &keywords).ok_or_else(|| StoreError::Protocol {
                endpoint: endpoint.clone(),
                command: "Email/get".into(),
                detail: format!(
                    "email {} has an unreadable receivedAt {:?}",
                    e.id, e.received_at
                ),
            })?;
            out.push(m);
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<FetchedBody>, StoreError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let (_, emails) = self.emails_at(uids, "blob download").await?;
        let client = &self.client;
        stream::iter(emails)
            .map(|(uid, e)| async move {
                // A little room over the listed size: a server may count differently.
                let max = e.size.saturating_mul(2).saturating_add(64 * 1024);
                let bytes = client.download(&e.blob_id, max).await?;
                Ok::<_, JmapError>(FetchedBody::owned(uid, bytes))
            })
            .buffered(PARALLEL_DOWNLOADS)
            .try_collect()
            .await
            .map_err(StoreError::from)
    }

    fn names_content_by_sha1(&self) -> bool {
        self.cyrus
    }

    async fn close_folder(&mut self) -> Result<(), StoreError> {
        self.open = None;
        Ok(())
    }

    async fn content_sha1(&mut self, uids: &[u32]) -> Result<Vec<(u32, ContentSha1)>, StoreError> {
        if !self.cyrus {
            return Ok(Vec::new());
        }
        let (_, emails) = self.emails_at(uids, "Email/get blobId").await?;
        Ok(emails
            .into_iter()
            .filter_map(|(uid, e)| Some((uid, ContentSha1::from_cyrus_blob_id(&e.blob_id)?)))
            .collect())
    }

    async fn fetch_message_ids(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Option<String>)>, StoreError> {
        let (_, emails) = self.emails_at(uids, "Email/get messageId").await?;
        Ok(emails
            .into_iter()
            .map(|(uid, e)| {
                let id = e
                    .message_id
                    .and_then(|ids| ids.into_iter().next())
                    .filter(|id| !id.is_empty());
                (uid, id)
            })
            .collect())
    }

    async fn append(
        &mut self,
        path: &FolderPath,
        messages: &[AppendRequest<'_>],
    ) -> Result<Vec<Result<Option<u32>, StoreError>>, StoreError> {
        self.require_write("Email/import")?;
        let mailbox = self.mailbox_id(path).await?;
        let mut requests = Vec::with_capacity(messages.len());
        let mut uploaded: Vec<Result<(), StoreError>> = Vec::with_capacity(messages.len());
        // A content twice in one batch (copies in one folder) crosses the wire once.
        let mut blobs: HashMap<&[u8], String> = HashMap::new();
        // On Cyrus, a content the open mailbox holds is named by its SHA-1: not sent again.
        let held: HashMap<ContentSha1, String> = match &self.open {
            Some(open) if self.cyrus && open.id == mailbox => open
                .emails
                .values()
                .filter_map(|e| {
                    Some((
                        ContentSha1::from_cyrus_blob_id(&e.blob_id)?,
                        e.blob_id.clone(),
                    ))
                })
                .collect(),
            _ => HashMap::new(),
        };
        for m in messages {
            let known = (!held.is_empty())
                .then(|| held.get(&ContentSha1::of_normalized(m.bytes)).cloned())
                .flatten();
            let blob = match blobs.get(m.bytes).cloned().or(known) {
                Some(id) => Ok(id),
                None => self
                    .client
                    .upload(m.bytes.to_vec(), "message/rfc822")
                    .await
                    .map(|b| b.blob_id),
            };
            match blob {
                Ok(blob_id) => {
                    blobs.insert(m.bytes, blob_id.clone());
                    requests.push(ImportRequest {
                        blob_id,
                        mailbox_ids: vec![mailbox.clone()],
                        keywords: flags_to_keywords(m.flags),
                        received_at: utc_date_from_internaldate(m.internaldate),
                    });
                    uploaded.push(Ok(()));
                }
                Err(e @ JmapError::TooLarge { .. }) => uploaded.push(Err(StoreError::No {
                    endpoint: self.endpoint_string(),
                    command: "upload".into(),
                    folder: format!(" in {path}"),
                    text: e.to_string(),
                    code: Some("TOOBIG".into()),
                })),
                Err(e) => return Err(e.into()),
            }
        }
        self.mark_stale();
        let imported = self.client.import_emails(&requests).await?;
        // Emails the account held already: where are they?
        let existing: Vec<String> = imported
            .iter()
            .filter_map(|r| r.as_ref().ok().filter(|i| i.already_existed))
            .map(|i| i.id.clone())
            .collect();
        let mut existing_in: HashMap<String, EmailMeta> = HashMap::new();
        if !existing.is_empty() {
            let (found, _) = self.client.get_emails(&existing).await?;
            existing_in = found.into_iter().map(|e| (e.id.clone(), e)).collect();
        }
        // Per request: the email id to place here, or a refusal.
        let mut placed_here: HashSet<String> = HashSet::new();
        let mut outcome: Vec<Result<String, StoreError>> = Vec::with_capacity(requests.len());
        let mut patches: Vec<(String, EmailPatch)> = Vec::new();
        // Copies refused as already here: their keywords join the email's (the union).
        let mut merged: Vec<(String, BTreeSet<String>)> = Vec::new();
        for (result, request) in imported.into_iter().zip(&requests) {
            match result {
                Ok(i) if !i.already_existed => {
                    placed_here.insert(i.id.clone());
                    outcome.push(Ok(i.id));
                }
                Ok(i) => {
                    let there = existing_in.get(&i.id);
                    let in_mailbox = placed_here.contains(&i.id)
                        || there.is_some_and(|e| e.in_mailbox(&mailbox));
                    if in_mailbox {
                        merged.push((i.id.clone(), request.keywords.keys().cloned().collect()));
                        outcome.push(Err(StoreError::No {
                            endpoint: self.endpoint_string(),
                            command: "Email/import".into(),
                            folder: format!(" in {path}"),
                            text: format!(
                                "the mailbox holds this content already (email {}); a JMAP account keeps one email per content",
                                i.id
                            ),
                            code: Some(ALREADY_EXISTS.into()),
                        }));
                    } else {
                        let have = there.map(|e| e.keywords.clone()).unwrap_or_default();
                        let mut want = have.clone();
                        want.extend(request.keywords.clone());
                        let mut patch = EmailPatch::keywords(&have, &want);
                        patch.add_mailboxes.push(mailbox.clone());
                        patches.push((i.id.clone(), patch));
                        placed_here.insert(i.id.clone());
                        outcome.push(Ok(i.id));
                    }
                }
                Err(e) => outcome.push(Err(self.refused("Email/import", path, &e))),
            }
        }
        let patched = self.patch_emails(&patches).await?;
        let mut out = Vec::with_capacity(messages.len());
        let mut outcomes = outcome.into_iter();
        let mut wanted = requests
            .iter()
            .map(|r| r.keywords.keys().cloned().collect());
        for upload in uploaded {
            let upload_ok = upload.is_ok();
            let result = match upload {
                Err(e) => Err(e),
                Ok(()) => match outcomes.next() {
                    Some(Ok(id)) => match patched.get(&id) {
                        Some(Err(e)) => Err(self.refused("Email/set", path, e)),
                        _ => Ok(id),
                    },
                    Some(Err(e)) => Err(e),
                    None => Err(StoreError::Protocol {
                        endpoint: self.endpoint_string(),
                        command: "Email/import".into(),
                        detail: "fewer answers than emails".into(),
                    }),
                },
            };
            let keywords: BTreeSet<String> = match upload_ok {
                true => wanted.next().unwrap_or_default(),
                false => BTreeSet::new(),
            };
            out.push(match result {
                Ok(id) => {
                    let uid = self.uids.place(&mailbox, &[id.as_str()])?;
                    if let Some(uid) = uid.first() {
                        self.uids.want(&mailbox, *uid, &id, keywords)?;
                    }
                    Ok(uid.first().copied())
                }
                Err(e) => Err(e),
            });
        }
        self.merge_keywords(&mailbox, merged).await?;
        Ok(out)
    }

    async fn store_flags(
        &mut self,
        uids: &[u32],
        change: FlagChange,
        flags: &FlagSet,
    ) -> Result<(), StoreError> {
        self.require_write("Email/set keywords")?;
        let (mailbox, emails) = self.emails_at(uids, "Email/set keywords").await?;
        let asked: BTreeSet<String> = flags_to_keywords(flags).into_keys().collect();
        let mut patches: Vec<(String, EmailPatch)> = Vec::with_capacity(emails.len());
        for (uid, e) in &emails {
            let view = self
                .uids
                .instance_keywords(&mailbox, *uid, &e.id, &e.keywords);
            let mut after: BTreeSet<String> = view.into_keys().collect();
            match change {
                FlagChange::Add => after.extend(asked.iter().cloned()),
                FlagChange::Remove => after.retain(|k| !asked.contains(k)),
                FlagChange::Replace => after = asked.clone(),
            }
            // One keyword set per email: the union of what each of its instances wants.
            let union = self.uids.want(&mailbox, *uid, &e.id, after)?;
            let union = union.into_iter().map(|k| (k, true)).collect();
            patches.push((e.id.clone(), EmailPatch::keywords(&e.keywords, &union)));
        }
        let outcomes = self.client.update_emails(&patches).await?;
        self.mark_stale();
        self.first_refusal("Email/set keywords", outcomes)
    }

    async fn copy(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        self.require_write("Email/set mailboxIds")?;
        self.place_elsewhere(uids, to, false).await
    }

    async fn move_messages(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        self.require_write("Email/set mailboxIds")?;
        self.place_elsewhere(uids, to, true).await
    }

    async fn expunge(&mut self, uids: &[u32]) -> Result<(), StoreError> {
        self.require_write("Email/set destroy")?;
        let (mailbox, emails) = self.emails_at(uids, "Email/set destroy").await?;
        if emails.is_empty() {
            return Ok(());
        }
        let metas: Vec<EmailMeta> = emails.into_iter().map(|(_, e)| e).collect();
        let outcomes = self.client.remove_from_mailbox(&metas, &mailbox).await?;
        self.mark_stale();
        let removed: Vec<&str> = outcomes
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(id, _)| id.as_str())
            .collect();
        self.uids.forget(&mailbox, &removed)?;
        self.first_refusal("Email/set destroy", outcomes)
    }

    async fn logout(&mut self) {}
}

impl JmapStore {
    /// Adds the keywords of copies refused as already in `mailbox` to the email there, and to
    /// what its instance wants, so the email carries the union of its copies' flags.
    async fn merge_keywords(
        &mut self,
        mailbox: &str,
        merged: Vec<(String, BTreeSet<String>)>,
    ) -> Result<(), StoreError> {
        let mut patches = Vec::new();
        for (id, keywords) in merged {
            let Some(uid) = self.uids.uid(mailbox, &id) else {
                continue;
            };
            let add = self.uids.merge(mailbox, uid, &keywords)?;
            if !add.is_empty() {
                let patch = EmailPatch {
                    add_keywords: add,
                    ..EmailPatch::default()
                };
                patches.push((id, patch));
            }
        }
        if !patches.is_empty() {
            for (id, result) in self.client.update_emails(&patches).await? {
                if let Err(e) = result {
                    tracing::warn!(email = %id, "keywords of a refused identical copy not added: {e}");
                }
            }
        }
        Ok(())
    }

    /// COPY (`remove` false) or MOVE: each email gets `to` in its `mailboxIds` (and loses the
    /// open mailbox on a move) in one `Email/set`. An email `to` holds already is left out of
    /// the answer (one email per content and mailbox); the engine uploads instead and learns
    /// the refusal.
    async fn place_elsewhere(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
        remove: bool,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        let command = if remove { "MOVE" } else { "COPY" };
        let target = self.mailbox_id(to).await?;
        let (from, emails) = self.emails_at(uids, command).await?;
        let mut patches = Vec::new();
        for (_, e) in &emails {
            if e.in_mailbox(&target) {
                continue;
            }
            let patch = if remove {
                EmailPatch::moved(&from, &target)
            } else {
                EmailPatch {
                    add_mailboxes: vec![target.clone()],
                    ..EmailPatch::default()
                }
            };
            patches.push((e.id.clone(), patch));
        }
        let outcomes = self.patch_emails(&patches).await?;
        self.mark_stale();
        let mut out = Vec::new();
        let mut moved = Vec::new();
        for (uid, e) in &emails {
            match outcomes.get(&e.id) {
                Some(Ok(())) => {
                    let new = self.uids.place(&target, &[e.id.as_str()])?;
                    let view = self.uids.instance_keywords(&from, *uid, &e.id, &e.keywords);
                    if let Some(n) = new.first() {
                        self.uids
                            .want(&target, *n, &e.id, view.into_keys().collect())?;
                    }
                    if remove {
                        moved.push(e.id.as_str());
                    }
                    out.push((*uid, new.first().copied()));
                }
                Some(Err(err)) => {
                    tracing::debug!(email = %e.id, "{command} refused: {err}");
                    out.push((*uid, None));
                }
                None => {}
            }
        }
        self.uids.forget(&from, &moved)?;
        Ok(out)
    }
}
