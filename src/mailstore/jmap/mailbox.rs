//! Mailboxes: listing (`Mailbox/get`), `Mailbox/changes`, create (parents first, with a role),
//! rename, destroy, and the tree that turns parent ids into folder paths.

use std::collections::BTreeMap;

use jmap_client::mailbox::MailboxRights;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::changes::{Changes, HasId, RawGet};
use super::client::{JmapClient, Request};
use super::error::{JmapError, MethodErrorType};
use super::keywords::role_to_special_use;
use super::set::RawSet;
use crate::model::FolderPath;

/// The properties every mailbox call asks for.
pub const MAILBOX_PROPERTIES: [&str; 7] = [
    "id",
    "name",
    "parentId",
    "role",
    "totalEmails",
    "myRights",
    "isSubscribed",
];

/// One mailbox as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mailbox {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Lowercase role (`inbox`, `sent`, ...), if any.
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub total_emails: u64,
    #[serde(default)]
    pub my_rights: Option<MailboxRights>,
    #[serde(default)]
    pub is_subscribed: bool,
}

impl Mailbox {
    /// The IMAP SPECIAL-USE attribute of this mailbox's role.
    pub fn special_use(&self) -> Option<&'static str> {
        self.role.as_deref().and_then(role_to_special_use)
    }

    pub fn is_inbox(&self) -> bool {
        self.role
            .as_deref()
            .is_some_and(|r| r.eq_ignore_ascii_case("inbox"))
    }
}

impl HasId for Mailbox {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Every mailbox of the account, and the state they were read at.
#[derive(Debug, Clone)]
pub struct MailboxList {
    pub state: String,
    pub mailboxes: Vec<Mailbox>,
}

/// Mailboxes by id, with paths built from the parent chain.
#[derive(Debug, Clone, Default)]
pub struct MailboxTree {
    by_id: BTreeMap<String, Mailbox>,
}

impl MailboxTree {
    pub fn new(mailboxes: impl IntoIterator<Item = Mailbox>) -> MailboxTree {
        MailboxTree {
            by_id: mailboxes.into_iter().map(|m| (m.id.clone(), m)).collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Mailbox> {
        self.by_id.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mailbox> {
        self.by_id.values()
    }

    pub fn insert(&mut self, mailbox: Mailbox) {
        self.by_id.insert(mailbox.id.clone(), mailbox);
    }

    pub fn remove(&mut self, id: &str) -> Option<Mailbox> {
        self.by_id.remove(id)
    }

    /// The folder path of a mailbox: names from the top down; the mailbox with role `inbox` is
    /// `INBOX` whatever its name. `None` for an unknown id, a dangling parent or a cycle.
    pub fn path(&self, id: &str) -> Option<FolderPath> {
        let mut components = Vec::new();
        let mut current = self.by_id.get(id)?;
        loop {
            if components.len() > self.by_id.len() {
                return None; // a cycle
            }
            let name = if current.is_inbox() && current.parent_id.is_none() {
                "INBOX".to_string()
            } else {
                current.name.clone()
            };
            components.push(name);
            match &current.parent_id {
                None => break,
                Some(parent) => current = self.by_id.get(parent)?,
            }
        }
        components.reverse();
        Some(FolderPath::new(components))
    }

    /// The mailbox at a folder path.
    pub fn find(&self, path: &FolderPath) -> Option<&Mailbox> {
        self.by_id
            .values()
            .find(|m| self.path(&m.id).as_ref() == Some(path))
    }

    /// The mailbox with a role (`sent`, ...), if one has it.
    pub fn with_role(&self, role: &str) -> Option<&Mailbox> {
        self.by_id.values().find(|m| {
            m.role
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(role))
        })
    }
}

/// What [`JmapClient::create_mailbox`] did.
#[derive(Debug, Clone)]
pub struct MailboxCreation {
    /// The mailbox at the requested path (created now, or found there already).
    pub leaf: Mailbox,
    /// The mailboxes created, outermost first (missing parents, then the leaf).
    pub created: Vec<Mailbox>,
    /// A role was asked for and the mailbox was created without it: another mailbox holds
    /// that role already (then the role is not sent at all: Cyrus 3.6 moves a role held
    /// elsewhere to the first new mailbox asking for it, and for later ones reads the role back
    /// in the same request although it did not keep it), or the server dropped it.
    pub role_ignored: bool,
}

impl JmapClient {
    /// Every mailbox, with [`MAILBOX_PROPERTIES`]. Falls back to `Mailbox/query` plus gets in
    /// chunks when the server will not return them all at once (`requestTooLarge`).
    #[tracing::instrument(skip(self), fields(endpoint = %self.endpoint()))]
    pub async fn mailboxes(&self) -> Result<MailboxList, JmapError> {
        let what = "the mailbox list";
        let mut request = Request::new();
        let get = request.call(
            "Mailbox/get",
            json!({"accountId": self.account_id(), "ids": null, "properties": MAILBOX_PROPERTIES}),
        );
        let mut responses = self.send(&request, what).await?;
        match self.take::<RawGet<Mailbox>>(&mut responses, &get, what) {
            Ok(got) => Ok(MailboxList {
                state: got.state,
                mailboxes: got.list,
            }),
            Err(e) if e.method_error() == Some(&MethodErrorType::RequestTooLarge) => {
                self.mailboxes_in_chunks(what).await
            }
            Err(e) => Err(e),
        }
    }

    async fn mailboxes_in_chunks(&self, what: &str) -> Result<MailboxList, JmapError> {
        // The state first, so that changes made while listing are caught up later.
        let mut request = Request::new();
        let get = request.call(
            "Mailbox/get",
            json!({"accountId": self.account_id(), "ids": [], "properties": ["id"]}),
        );
        let mut responses = self.send(&request, what).await?;
        let state = self
            .take::<RawGet<Value>>(&mut responses, &get, what)?
            .state;
        let mut ids: Vec<String> = Vec::new();
        let page = self.session().limits.max_objects_in_get;
        loop {
            let mut request = Request::new();
            let query = request.call(
                "Mailbox/query",
                json!({"accountId": self.account_id(), "position": ids.len(), "limit": page}),
            );
            let mut responses = self.send(&request, what).await?;
            #[derive(Deserialize)]
            struct Q {
                ids: Vec<String>,
            }
            let q: Q = self.take(&mut responses, &query, what)?;
            let n = q.ids.len() as u64;
            ids.extend(q.ids);
            if n < page {
                break;
            }
        }
        let calls = ids
            .chunks(page as usize)
            .map(|c| json!({"accountId": self.account_id(), "ids": c, "properties": MAILBOX_PROPERTIES}))
            .collect();
        let mut mailboxes = Vec::with_capacity(ids.len());
        for args in self.call_many("Mailbox/get", calls, what).await? {
            let got: RawGet<Mailbox> = serde_json::from_value(args)
                .map_err(|e| self.protocol(what, format!("Mailbox/get does not parse: {e}")))?;
            mailboxes.extend(got.list);
        }
        Ok(MailboxList { state, mailboxes })
    }

    /// Mailboxes created, updated and destroyed since `since`, pages merged.
    pub async fn mailbox_changes(
        &self,
        since: &str,
        max_changes: Option<u64>,
    ) -> Result<Changes<Mailbox>, JmapError> {
        self.changes_with_objects(
            "Mailbox",
            since,
            max_changes,
            &MAILBOX_PROPERTIES,
            "mailbox changes",
        )
        .await
    }

    /// Creates the mailbox at `path` and any missing parent, in one `Mailbox/set` (parents
    /// referenced by creation id, so they are created first), and reads them back in the same
    /// request (the server may drop a role it will not give: see [`MailboxCreation`]). `role` goes on the leaf only. Children of INBOX go under the `inbox` mailbox.
    #[tracing::instrument(skip(self, tree), fields(endpoint = %self.endpoint()))]
    pub async fn create_mailbox(
        &self,
        tree: &MailboxTree,
        path: &FolderPath,
        role: Option<&str>,
        subscribed: bool,
    ) -> Result<MailboxCreation, JmapError> {
        let what = format!("creating mailbox {path}");
        let components = path.components();
        if components.is_empty() {
            return Err(self.protocol(&what, "an empty folder path (a mailreplica bug)".into()));
        }
        if let Some(existing) = tree.find(path) {
            return Ok(MailboxCreation {
                leaf: existing.clone(),
                created: Vec::new(),
                role_ignored: false,
            });
        }
        // The deepest ancestor that exists.
        let mut existing_depth = 0;
        let mut parent_id: Option<String> = None;
        for depth in (1..components.len()).rev() {
            let ancestor = FolderPath::new(components[..depth].to_vec());
            if let Some(m) = tree.find(&ancestor) {
                existing_depth = depth;
                parent_id = Some(m.id.clone());
                break;
            }
        }
        let mut create = Map::new();
        let mut keys = Vec::new();
        for (depth, name) in components.iter().enumerate().skip(existing_depth) {
            let key = format!("m{depth}");
            let parent = match keys.last() {
                Some(previous) => Value::String(format!("#{previous}")),
                None => parent_id.clone().map(Value::String).unwrap_or(Value::Null),
            };
            let mut object = json!({"name": name, "parentId": parent, "isSubscribed": subscribed});
            if depth + 1 == components.len() {
                if let Some(role) = role.filter(|r| tree.with_role(r).is_none()) {
                    object["role"] = Value::String(role.to_ascii_lowercase());
                }
            }
            create.insert(key.clone(), object);
            keys.push(key);
        }
        let mut request = Request::new();
        let set = request.call(
            "Mailbox/set",
            json!({"accountId": self.account_id(), "create": create}),
        );
        // Read back by creation-id reference (RFC 8620 section 5.3): Cyrus 3.6 refuses the
        // `/created/*/id` result-reference path ("resultReference") but resolves `#m0` in ids.
        let refs: Vec<String> = keys.iter().map(|k| format!("#{k}")).collect();
        let get = request.call(
            "Mailbox/get",
            json!({"accountId": self.account_id(), "ids": refs, "properties": MAILBOX_PROPERTIES}),
        );
        let mut responses = self.send(&request, &what).await?;
        let mut result: RawSet = self.take(&mut responses, &set, &what)?;
        for (depth, key) in keys.iter().enumerate() {
            if let Some(error) = result.not_created.remove(key) {
                let prefix = FolderPath::new(components[..existing_depth + depth + 1].to_vec());
                return Err(JmapError::Set {
                    endpoint: self.endpoint().to_string(),
                    what: "Mailbox/set create".into(),
                    object: format!("mailbox {prefix}"),
                    error: Box::new(error),
                });
            }
        }
        let got: RawGet<Mailbox> = self.take(&mut responses, &get, &what)?;
        let by_id: BTreeMap<String, Mailbox> =
            got.list.into_iter().map(|m| (m.id.clone(), m)).collect();
        let mut created = Vec::new();
        for key in &keys {
            let id = result
                .created
                .get(key)
                .and_then(|c| c.get("id"))
                .and_then(Value::as_str)
                .ok_or_else(|| self.protocol(&what, format!("no id for created {key}")))?;
            let mailbox = by_id
                .get(id)
                .cloned()
                .ok_or_else(|| self.protocol(&what, format!("created mailbox {id} not found")))?;
            created.push(mailbox);
        }
        let leaf = created
            .last()
            .cloned()
            .ok_or_else(|| self.protocol(&what, "nothing created".into()))?;
        let role_ignored = role.is_some_and(|r| {
            !leaf
                .role
                .as_deref()
                .is_some_and(|got| got.eq_ignore_ascii_case(r))
        });
        if role_ignored {
            tracing::warn!(mailbox = %path, role = ?role, "the server created the mailbox without its role");
        }
        Ok(MailboxCreation {
            leaf,
            created,
            role_ignored,
        })
    }

    /// Renames and/or moves a mailbox to `name` under `parent_id` (`None`: top level). Only
    /// what changes is sent: Cyrus 3.6 treats any `parentId` in the patch as a move, and
    /// refuses to move a mailbox that has a role ("SPECIAL-USE flag conflict").
    pub async fn rename_mailbox(
        &self,
        mailbox: &Mailbox,
        name: &str,
        parent_id: Option<&str>,
    ) -> Result<(), JmapError> {
        let mut patch = Map::new();
        if mailbox.name != name {
            patch.insert("name".into(), Value::String(name.to_string()));
        }
        if mailbox.parent_id.as_deref() != parent_id {
            patch.insert("parentId".into(), json!(parent_id));
        }
        if patch.is_empty() {
            return Ok(());
        }
        self.update_mailbox(
            &mailbox.id,
            Value::Object(patch),
            &format!("renaming mailbox {} to {name:?}", mailbox.id),
        )
        .await
    }

    /// Subscribes or unsubscribes a mailbox.
    pub async fn set_mailbox_subscribed(
        &self,
        id: &str,
        subscribed: bool,
    ) -> Result<(), JmapError> {
        self.update_mailbox(
            id,
            json!({"isSubscribed": subscribed}),
            &format!("subscribing mailbox {id}"),
        )
        .await
    }

    async fn update_mailbox(&self, id: &str, patch: Value, what: &str) -> Result<(), JmapError> {
        let mut request = Request::new();
        let set = request.call(
            "Mailbox/set",
            json!({"accountId": self.account_id(), "update": {id: patch}}),
        );
        let mut responses = self.send(&request, what).await?;
        let mut result: RawSet = self.take(&mut responses, &set, what)?;
        self.single_outcome(
            result.update_outcomes([id.to_string()]),
            "Mailbox/set update",
            "mailbox",
        )
    }

    /// Destroys a mailbox. Without `remove_emails` the server refuses a mailbox that holds
    /// emails (`mailboxHasEmail`); with it, emails only in this mailbox are destroyed too.
    pub async fn destroy_mailbox(&self, id: &str, remove_emails: bool) -> Result<(), JmapError> {
        let what = format!("destroying mailbox {id}");
        let mut request = Request::new();
        let set = request.call(
            "Mailbox/set",
            json!({
                "accountId": self.account_id(),
                "destroy": [id],
                "onDestroyRemoveEmails": remove_emails,
            }),
        );
        let mut responses = self.send(&request, &what).await?;
        let mut result: RawSet = self.take(&mut responses, &set, &what)?;
        self.single_outcome(
            result.destroy_outcomes([id.to_string()]),
            "Mailbox/set destroy",
            "mailbox",
        )
    }

    pub(super) fn single_outcome(
        &self,
        outcomes: super::set::Outcomes,
        what: &str,
        kind: &str,
    ) -> Result<(), JmapError> {
        for (id, outcome) in outcomes {
            if let Err(error) = outcome {
                return Err(JmapError::Set {
                    endpoint: self.endpoint().to_string(),
                    what: what.to_string(),
                    object: format!("{kind} {id}"),
                    error: Box::new(error),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(id: &str, name: &str, parent: Option<&str>, role: Option<&str>) -> Mailbox {
        Mailbox {
            id: id.into(),
            name: name.into(),
            parent_id: parent.map(Into::into),
            role: role.map(Into::into),
            total_emails: 0,
            my_rights: None,
            is_subscribed: true,
        }
    }

    #[test]
    fn paths_follow_parents_and_inbox_is_inbox() {
        let tree = MailboxTree::new([
            mb("i", "Posteingang", None, Some("inbox")),
            mb("c", "Kunden", Some("i"), None),
            mb("a", "Archive", None, Some("archive")),
            mb("y", "2024", Some("a"), None),
            mb("d", "dangling", Some("gone"), None),
            mb("l1", "loop1", Some("l2"), None),
            mb("l2", "loop2", Some("l1"), None),
        ]);
        assert_eq!(tree.path("i"), Some(FolderPath::inbox()));
        assert_eq!(tree.path("c").unwrap().to_string(), "INBOX/Kunden");
        assert_eq!(tree.path("y").unwrap().to_string(), "Archive/2024");
        assert_eq!(tree.path("d"), None);
        assert_eq!(tree.path("l1"), None);
        assert_eq!(tree.path("nope"), None);
        assert_eq!(
            tree.find(&FolderPath::from_display("Archive/2024"))
                .map(|m| m.id.as_str()),
            Some("y")
        );
        assert_eq!(tree.with_role("ARCHIVE").map(|m| m.id.as_str()), Some("a"));
        assert_eq!(tree.get("a").unwrap().special_use(), Some("\\Archive"));
        assert_eq!(tree.get("i").unwrap().special_use(), None);
    }

    #[test]
    fn cyrus_mailbox_parses_with_rights() {
        let m: Mailbox = serde_json::from_str(
            r#"{"id":"x","name":"Inbox","parentId":null,"role":"inbox","totalEmails":3,
                "isSubscribed":true,"myRights":{"mayReadItems":true,"mayAddItems":true,
                "mayRemoveItems":true,"mayCreateChild":true,"mayDelete":false,"maySubmit":true,
                "maySetSeen":true,"maySetKeywords":true,"mayAdmin":true,"mayRename":false}}"#,
        )
        .unwrap();
        assert!(m.is_inbox());
        assert_eq!(m.total_emails, 3);
        let rights = m.my_rights.unwrap();
        assert!(rights.may_add_items() && !rights.may_delete());
    }
}
