//! Emails: listing a mailbox (`Email/query` + `Email/get` by back-reference), `Email/get` in
//! chunks, `Email/changes`, `Email/import`, keyword and mailbox patches, destroy.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::changes::{Changes, HasId, RawGet};
use super::client::{JmapClient, Request};
use super::error::{JmapError, MethodErrorType, SetError, SetErrorType};
use super::keywords::{keyword_patch_path, keywords_to_flags, mailbox_patch_path};
use super::set::{Outcomes, RawSet};
use crate::model::{FlagSet, InternalDate};

/// The properties every email call asks for.
pub const EMAIL_PROPERTIES: [&str; 7] = [
    "id",
    "blobId",
    "mailboxIds",
    "keywords",
    "receivedAt",
    "size",
    "messageId",
];

/// Listing orders, best first: a total order (arrival, then id) keeps anchored pages stable;
/// a server refusing it (`unsupportedSort`; `id` is not a required sort property) gets a
/// simpler one, and last its own default order.
const SORTS: [&[&str]; 3] = [&["receivedAt", "id"], &["receivedAt"], &[]];

/// How many times a listing restarts when its anchor vanishes mid-way.
const LISTING_ATTEMPTS: u32 = 3;

/// One email's metadata, without its body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailMeta {
    pub id: String,
    /// On Cyrus `G` + the SHA-1 of the stored bytes: an identity without downloading.
    pub blob_id: String,
    #[serde(default)]
    pub mailbox_ids: BTreeMap<String, bool>,
    #[serde(default)]
    pub keywords: BTreeMap<String, bool>,
    /// RFC 3339 UTC (`2020-01-02T03:04:05Z`).
    pub received_at: String,
    pub size: u64,
    /// The Message-ID header's ids without angle brackets; `None` without the header.
    #[serde(default)]
    pub message_id: Option<Vec<String>>,
}

impl EmailMeta {
    /// The keywords as IMAP flags.
    pub fn flags(&self) -> FlagSet {
        keywords_to_flags(&self.keywords)
    }

    /// `receivedAt` as an INTERNALDATE (UTC).
    pub fn internaldate(&self) -> Option<InternalDate> {
        internaldate_from_utc_date(&self.received_at)
    }

    pub fn in_mailbox(&self, mailbox_id: &str) -> bool {
        self.mailbox_ids.get(mailbox_id).copied().unwrap_or(false)
    }

    /// The mailboxes the email is in.
    pub fn mailboxes(&self) -> impl Iterator<Item = &str> {
        self.mailbox_ids
            .iter()
            .filter(|(_, v)| **v)
            .map(|(k, _)| k.as_str())
    }
}

impl HasId for EmailMeta {
    fn id(&self) -> &str {
        &self.id
    }
}

/// JMAP `UTCDate` for an INTERNALDATE: the same instant, in UTC, whole seconds.
pub fn utc_date_from_internaldate(date: &InternalDate) -> String {
    DateTime::<Utc>::from_timestamp(date.epoch(), 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An INTERNALDATE for a JMAP `UTCDate` or `Date` (any offset; fractions dropped).
pub fn internaldate_from_utc_date(date: &str) -> Option<InternalDate> {
    let parsed = DateTime::parse_from_rfc3339(date).ok()?;
    InternalDate::parse(&parsed.format("%d-%b-%Y %H:%M:%S %z").to_string())
}

/// Every email of one mailbox, and an `Email` state taken before the listing began: changes
/// made while listing are caught up by `Email/changes` from that state.
#[derive(Debug, Clone)]
pub struct EmailListing {
    pub state: String,
    /// In the server's order: `receivedAt` ascending, then id (where the server sorts by id).
    pub emails: Vec<EmailMeta>,
}

/// One email to import from an uploaded blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    pub blob_id: String,
    pub mailbox_ids: Vec<String>,
    /// Lowercase keywords ([`super::keywords::flags_to_keywords`]).
    pub keywords: BTreeMap<String, bool>,
    /// `UTCDate` ([`utc_date_from_internaldate`]).
    pub received_at: String,
}

/// An imported email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub id: String,
    /// The server already held this content in the account (`alreadyExists`) and gave the id
    /// of that email: its mailboxes and keywords are its own, not those asked for; the caller
    /// patches them if they differ.
    pub already_existed: bool,
}

/// A patch of one email: keywords and mailboxes added or removed, each one path (RFC 8620
/// section 5.3), so concurrent changes to other keywords or mailboxes are left alone.
///
/// Keywords holding `/` or `~` need JSON Pointer escaping in a path, and Cyrus 3.6 does not
/// unescape (`keywords/a~1b` sets the keyword `a~1b`; `keywords/a/b` sets `a/b`), so no path
/// form is right on every server. When such a keyword changes and `keywords_after` is known,
/// the patch replaces the whole `keywords` property instead; without it, the RFC's escaped path
/// is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailPatch {
    pub add_keywords: Vec<String>,
    pub remove_keywords: Vec<String>,
    pub add_mailboxes: Vec<String>,
    pub remove_mailboxes: Vec<String>,
    /// The email's whole keyword set after the patch, when the caller knows it.
    pub keywords_after: Option<BTreeMap<String, bool>>,
}

impl EmailPatch {
    /// The patch that turns keywords `from` into `to`.
    pub fn keywords(from: &BTreeMap<String, bool>, to: &BTreeMap<String, bool>) -> EmailPatch {
        // Keywords are case-insensitive: compare them lowercase.
        let set = |m: &BTreeMap<String, bool>| -> Vec<String> {
            m.iter()
                .filter(|(_, v)| **v)
                .map(|(k, _)| k.to_ascii_lowercase())
                .collect()
        };
        let after: BTreeMap<String, bool> = set(to).into_iter().map(|k| (k, true)).collect();
        let (from, to) = (set(from), set(to));
        EmailPatch {
            add_keywords: to.iter().filter(|k| !from.contains(k)).cloned().collect(),
            remove_keywords: from.iter().filter(|k| !to.contains(k)).cloned().collect(),
            keywords_after: Some(after),
            ..EmailPatch::default()
        }
    }

    /// Moves an email from one mailbox to another.
    pub fn moved(from: &str, to: &str) -> EmailPatch {
        EmailPatch {
            add_mailboxes: vec![to.to_string()],
            remove_mailboxes: vec![from.to_string()],
            ..EmailPatch::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.add_keywords.is_empty()
            && self.remove_keywords.is_empty()
            && self.add_mailboxes.is_empty()
            && self.remove_mailboxes.is_empty()
    }

    /// The PatchObject: `{"keywords/$seen": true, "mailboxIds/M1": null, ...}`, keys
    /// JSON-Pointer-escaped.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let needs_escaping = |k: &String| k.contains(['/', '~']);
        let awkward = self.add_keywords.iter().any(needs_escaping)
            || self.remove_keywords.iter().any(needs_escaping);
        if let (true, Some(after)) = (awkward, &self.keywords_after) {
            let whole: Map<String, Value> = after
                .iter()
                .filter(|(_, v)| **v)
                .map(|(k, _)| (k.to_ascii_lowercase(), Value::Bool(true)))
                .collect();
            m.insert("keywords".into(), Value::Object(whole));
        } else {
            self.keyword_paths(&mut m);
        }
        for id in &self.add_mailboxes {
            m.insert(mailbox_patch_path(id), Value::Bool(true));
        }
        for id in &self.remove_mailboxes {
            m.insert(mailbox_patch_path(id), Value::Null);
        }
        m
    }

    fn keyword_paths(&self, m: &mut Map<String, Value>) {
        for k in &self.add_keywords {
            m.insert(
                keyword_patch_path(&k.to_ascii_lowercase()),
                Value::Bool(true),
            );
        }
        for k in &self.remove_keywords {
            m.insert(keyword_patch_path(&k.to_ascii_lowercase()), Value::Null);
        }
    }
}

/// How an email leaves one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// It is not there: nothing to do.
    NotThere,
    /// It stays in other mailboxes: a `mailboxIds/<id>: null` patch.
    Patch(EmailPatch),
    /// This was its last mailbox: destroy it (an email must be in at least one mailbox).
    Destroy,
}

/// Decides how `email` leaves `mailbox_id`, from its current mailboxes.
pub fn removal(email: &EmailMeta, mailbox_id: &str) -> Removal {
    if !email.in_mailbox(mailbox_id) {
        return Removal::NotThere;
    }
    if email.mailboxes().any(|m| m != mailbox_id) {
        Removal::Patch(EmailPatch {
            remove_mailboxes: vec![mailbox_id.to_string()],
            ..EmailPatch::default()
        })
    } else {
        Removal::Destroy
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawQuery {
    ids: Vec<String>,
}

impl JmapClient {
    /// The current `Email` state (an `Email/get` of no ids).
    pub async fn email_state(&self) -> Result<String, JmapError> {
        let what = "the email state";
        let mut request = Request::new();
        let get = request.call(
            "Email/get",
            json!({"accountId": self.account_id(), "ids": [], "properties": ["id"]}),
        );
        let mut responses = self.send(&request, what).await?;
        Ok(self
            .take::<RawGet<Value>>(&mut responses, &get, what)?
            .state)
    }

    /// Every email in a mailbox, with [`EMAIL_PROPERTIES`]. Each page is one request: an
    /// `Email/query` anchored on the last id of the previous page (so removals before it do not
    /// shift the window) and an `Email/get` of its ids by back-reference; the first request also
    /// takes the state. A vanished anchor restarts the listing.
    #[tracing::instrument(skip(self), fields(endpoint = %self.endpoint()))]
    pub async fn list_mailbox(&self, mailbox_id: &str) -> Result<EmailListing, JmapError> {
        let mut attempt = 1;
        let mut sort = 0;
        loop {
            match self.list_mailbox_once(mailbox_id, SORTS[sort]).await {
                Err(e)
                    if e.method_error() == Some(&MethodErrorType::AnchorNotFound)
                        && attempt < LISTING_ATTEMPTS =>
                {
                    tracing::debug!(attempt, "anchor vanished while listing; starting again");
                    attempt += 1;
                }
                Err(e)
                    if e.method_error() == Some(&MethodErrorType::UnsupportedSort)
                        && sort + 1 < SORTS.len() =>
                {
                    tracing::debug!(?e, "sort refused; trying a simpler one");
                    sort += 1;
                }
                other => return other,
            }
        }
    }

    async fn list_mailbox_once(
        &self,
        mailbox_id: &str,
        sort: &[&str],
    ) -> Result<EmailListing, JmapError> {
        let what = format!("listing the emails of mailbox {mailbox_id}");
        let page = self.query_page_size;
        let mut state: Option<String> = None;
        let mut emails: Vec<EmailMeta> = Vec::new();
        loop {
            let mut request = Request::new();
            let state_get = state.is_none().then(|| {
                request.call(
                    "Email/get",
                    json!({"accountId": self.account_id(), "ids": [], "properties": ["id"]}),
                )
            });
            let mut query = json!({
                "accountId": self.account_id(),
                "filter": {"inMailbox": mailbox_id},
                "collapseThreads": false,
                "limit": page,
            });
            if !sort.is_empty() {
                query["sort"] = sort
                    .iter()
                    .map(|p| json!({"property": p, "isAscending": true}))
                    .collect();
            }
            match emails.last() {
                Some(last) => {
                    query["anchor"] = Value::String(last.id.clone());
                    query["anchorOffset"] = json!(1);
                }
                None => query["position"] = json!(0),
            }
            let query = request.call("Email/query", query);
            let get = request.call(
                "Email/get",
                json!({
                    "accountId": self.account_id(),
                    "#ids": query.result("/ids"),
                    "properties": EMAIL_PROPERTIES,
                }),
            );
            let mut responses = self.send(&request, &what).await?;
            if let Some(state_get) = state_get {
                state = Some(
                    self.take::<RawGet<Value>>(&mut responses, &state_get, &what)?
                        .state,
                );
            }
            let ids: RawQuery = self.take(&mut responses, &query, &what)?;
            let got: RawGet<EmailMeta> = self.take(&mut responses, &get, &what)?;
            // Keep the query's order; an email destroyed between the two calls is not found.
            let mut by_id: BTreeMap<String, EmailMeta> =
                got.list.into_iter().map(|e| (e.id.clone(), e)).collect();
            let n = ids.ids.len() as u64;
            let before = emails.len();
            emails.extend(ids.ids.iter().filter_map(|id| by_id.remove(id)));
            if n < page {
                break;
            }
            if emails.len() == before {
                // A full page of ids none of which could be read: do not loop on it.
                return Err(self.protocol(
                    &what,
                    "Email/query returned ids that Email/get does not find".into(),
                ));
            }
        }
        Ok(EmailListing {
            state: state.unwrap_or_default(),
            emails,
        })
    }

    /// Emails by id, in chunks of `maxObjectsInGet`, packed into as few requests as the limits
    /// allow. Returns those found and the ids not found.
    pub async fn get_emails(
        &self,
        ids: &[String],
    ) -> Result<(Vec<EmailMeta>, Vec<String>), JmapError> {
        let what = format!("reading {} emails", ids.len());
        let chunk = self.session().limits.max_objects_in_get as usize;
        let calls = ids
            .chunks(chunk)
            .map(|c| json!({"accountId": self.account_id(), "ids": c, "properties": EMAIL_PROPERTIES}))
            .collect();
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for args in self.call_many("Email/get", calls, &what).await? {
            let got: RawGet<EmailMeta> = serde_json::from_value(args)
                .map_err(|e| self.protocol(&what, format!("Email/get does not parse: {e}")))?;
            found.extend(got.list);
            missing.extend(got.not_found);
        }
        Ok((found, missing))
    }

    /// Emails created, updated and destroyed since `since`, with their current metadata;
    /// `hasMoreChanges` pages are followed and merged. `cannotCalculateChanges` is
    /// [`JmapError::CannotCalculateChanges`]: fall back to listing every mailbox.
    pub async fn email_changes(
        &self,
        since: &str,
        max_changes: Option<u64>,
    ) -> Result<Changes<EmailMeta>, JmapError> {
        self.changes_with_objects(
            "Email",
            since,
            max_changes,
            &EMAIL_PROPERTIES,
            "email changes",
        )
        .await
    }

    /// Imports uploaded blobs as emails (`Email/import`), in chunks of `maxObjectsInSet`.
    /// Returns one outcome per request, in order. `alreadyExists` with an `existingId` is a
    /// success ([`Imported::already_existed`]).
    #[tracing::instrument(skip(self, emails), fields(endpoint = %self.endpoint(), n = emails.len()))]
    pub async fn import_emails(
        &self,
        emails: &[ImportRequest],
    ) -> Result<Vec<Result<Imported, SetError>>, JmapError> {
        let what = format!("importing {} emails", emails.len());
        let chunk = self.session().limits.max_objects_in_set as usize;
        let calls = emails
            .chunks(chunk)
            .map(|c| {
                let objects: Map<String, Value> = c
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let mailboxes: Map<String, Value> = e
                            .mailbox_ids
                            .iter()
                            .map(|m| (m.clone(), Value::Bool(true)))
                            .collect();
                        (
                            format!("e{i}"),
                            json!({
                                "blobId": e.blob_id,
                                "mailboxIds": mailboxes,
                                "keywords": e.keywords,
                                "receivedAt": e.received_at,
                            }),
                        )
                    })
                    .collect();
                json!({"accountId": self.account_id(), "emails": objects})
            })
            .collect();
        let mut out = Vec::with_capacity(emails.len());
        for (args, c) in self
            .call_many("Email/import", calls, &what)
            .await?
            .into_iter()
            .zip(emails.chunks(chunk))
        {
            let mut result: RawSet = serde_json::from_value(args)
                .map_err(|e| self.protocol(&what, format!("Email/import does not parse: {e}")))?;
            for i in 0..c.len() {
                let key = format!("e{i}");
                out.push(import_outcome(&mut result, &key));
            }
        }
        Ok(out)
    }

    /// Applies patches (`Email/set` update), in chunks of `maxObjectsInSet`. One outcome per
    /// email, in order; empty patches are not sent and succeed.
    pub async fn update_emails(
        &self,
        patches: &[(String, EmailPatch)],
    ) -> Result<Outcomes, JmapError> {
        let what = format!("updating {} emails", patches.len());
        let todo: Vec<&(String, EmailPatch)> =
            patches.iter().filter(|(_, p)| !p.is_empty()).collect();
        let chunk = self.session().limits.max_objects_in_set as usize;
        let calls = todo
            .chunks(chunk)
            .map(|c| {
                let update: Map<String, Value> = c
                    .iter()
                    .map(|(id, p)| (id.clone(), Value::Object(p.to_json())))
                    .collect();
                json!({"accountId": self.account_id(), "update": update})
            })
            .collect();
        let mut results: BTreeMap<String, Result<(), SetError>> = BTreeMap::new();
        for (args, c) in self
            .call_many("Email/set", calls, &what)
            .await?
            .into_iter()
            .zip(todo.chunks(chunk))
        {
            let mut set: RawSet = serde_json::from_value(args)
                .map_err(|e| self.protocol(&what, format!("Email/set does not parse: {e}")))?;
            results.extend(set.update_outcomes(c.iter().map(|(id, _)| id.clone())));
        }
        Ok(patches
            .iter()
            .map(|(id, _)| (id.clone(), results.remove(id).unwrap_or(Ok(()))))
            .collect())
    }

    /// Destroys emails (`Email/set` destroy; from every mailbox), in chunks of
    /// `maxObjectsInSet`. One outcome per id, in order.
    pub async fn destroy_emails(&self, ids: &[String]) -> Result<Outcomes, JmapError> {
        let what = format!("destroying {} emails", ids.len());
        let chunk = self.session().limits.max_objects_in_set as usize;
        let calls = ids
            .chunks(chunk)
            .map(|c| json!({"accountId": self.account_id(), "destroy": c}))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for (args, c) in self
            .call_many("Email/set", calls, &what)
            .await?
            .into_iter()
            .zip(ids.chunks(chunk))
        {
            let mut set: RawSet = serde_json::from_value(args)
                .map_err(|e| self.protocol(&what, format!("Email/set does not parse: {e}")))?;
            out.extend(set.destroy_outcomes(c.iter().cloned()));
        }
        Ok(out)
    }

    /// Takes emails out of one mailbox: a `mailboxIds` patch for those that stay elsewhere, a
    /// destroy for those it was the last mailbox of (as [`removal`] decides from `emails`'
    /// metadata). Emails not in the mailbox are left alone and succeed.
    pub async fn remove_from_mailbox(
        &self,
        emails: &[EmailMeta],
        mailbox_id: &str,
    ) -> Result<Outcomes, JmapError> {
        let mut patches = Vec::new();
        let mut destroys = Vec::new();
        for e in emails {
            match removal(e, mailbox_id) {
                Removal::NotThere => {}
                Removal::Patch(p) => patches.push((e.id.clone(), p)),
                Removal::Destroy => destroys.push(e.id.clone()),
            }
        }
        let mut results: BTreeMap<String, Result<(), SetError>> = BTreeMap::new();
        if !patches.is_empty() {
            results.extend(self.update_emails(&patches).await?);
        }
        if !destroys.is_empty() {
            results.extend(self.destroy_emails(&destroys).await?);
        }
        Ok(emails
            .iter()
            .map(|e| (e.id.clone(), results.remove(&e.id).unwrap_or(Ok(()))))
            .collect())
    }
}

fn import_outcome(result: &mut RawSet, key: &str) -> Result<Imported, SetError> {
    if let Some(created) = result.created.get(key) {
        return match created.get("id").and_then(Value::as_str) {
            Some(id) => Ok(Imported {
                id: id.to_string(),
                already_existed: false,
            }),
            None => Err(SetError::unanswered()),
        };
    }
    match result.not_created.remove(key) {
        Some(SetError {
            kind: SetErrorType::AlreadyExists,
            existing_id: Some(id),
            ..
        }) => Ok(Imported {
            id,
            already_existed: true,
        }),
        Some(e) => Err(e),
        None => Err(SetError::unanswered()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(mailboxes: &[&str]) -> EmailMeta {
        EmailMeta {
            id: "M1".into(),
            blob_id: "G1".into(),
            mailbox_ids: mailboxes.iter().map(|m| (m.to_string(), true)).collect(),
            keywords: BTreeMap::new(),
            received_at: "2020-01-02T03:04:05Z".into(),
            size: 10,
            message_id: None,
        }
    }

    #[test]
    fn dates_convert_both_ways() {
        let d = InternalDate::parse("17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(utc_date_from_internaldate(&d), "1996-07-17T09:44:25Z");
        let back = internaldate_from_utc_date("1996-07-17T09:44:25Z").unwrap();
        assert_eq!(back, d);
        assert_eq!(back.as_str(), "17-Jul-1996 09:44:25 +0000");
        assert!(internaldate_from_utc_date("2020-01-02T03:04:05.5+01:00").is_some());
        assert!(internaldate_from_utc_date("yesterday").is_none());
    }

    #[test]
    fn cyrus_email_parses() {
        let e: EmailMeta = serde_json::from_str(
            r#"{"id":"M806674946fc891cedcdeaf84","blobId":"G806674946fc891cedcdeaf84d053aca65606173f",
                "mailboxIds":{"oiao":true},"keywords":{"$seen":true,"a/b~c":true},"size":52,
                "receivedAt":"2020-01-02T03:04:05Z","messageId":["x1@y"]}"#,
        )
        .unwrap();
        assert_eq!(e.flags(), FlagSet::from_raw(["\\Seen", "a/b~c"]));
        assert_eq!(
            e.internaldate().unwrap().as_str(),
            "02-Jan-2020 03:04:05 +0000"
        );
        assert!(e.in_mailbox("oiao"));
        let no_id: EmailMeta = serde_json::from_str(
            r#"{"id":"M","blobId":"G","mailboxIds":{},"keywords":{},"size":1,"receivedAt":"2020-01-02T03:04:05Z","messageId":null}"#,
        )
        .unwrap();
        assert_eq!(no_id.message_id, None);
    }

    #[test]
    fn patches_escape_and_diff() {
        let from: BTreeMap<String, bool> = [("$seen", true), ("old", true)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        let to: BTreeMap<String, bool> = [("$seen", true), ("a/b~c", true)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        // A keyword needing escaping: the whole set, since servers disagree on paths.
        let p = EmailPatch::keywords(&from, &to);
        assert_eq!(
            Value::Object(p.to_json()),
            json!({"keywords": {"$seen": true, "a/b~c": true}})
        );
        // Without the whole set, the RFC's escaped paths.
        let p = EmailPatch {
            keywords_after: None,
            ..p
        };
        assert_eq!(
            Value::Object(p.to_json()),
            json!({"keywords/a~1b~0c": true, "keywords/old": null})
        );
        let plain: BTreeMap<String, bool> =
            [("$Seen", true)].map(|(k, v)| (k.to_string(), v)).into();
        assert_eq!(
            Value::Object(EmailPatch::keywords(&from, &plain).to_json()),
            json!({"keywords/old": null})
        );
        assert_eq!(
            Value::Object(EmailPatch::moved("A", "B").to_json()),
            json!({"mailboxIds/A": null, "mailboxIds/B": true})
        );
        assert!(EmailPatch::keywords(&from, &from).is_empty());
    }

    #[test]
    fn removal_destroys_only_from_the_last_mailbox() {
        assert_eq!(removal(&email(&["A"]), "B"), Removal::NotThere);
        assert_eq!(removal(&email(&["A"]), "A"), Removal::Destroy);
        assert_eq!(
            removal(&email(&["A", "B"]), "A"),
            Removal::Patch(EmailPatch {
                remove_mailboxes: vec!["A".into()],
                ..EmailPatch::default()
            })
        );
    }

    #[test]
    fn import_outcomes() {
        let mut r: RawSet = serde_json::from_str(
            r#"{"created":{"e0":{"id":"M1","blobId":"G1","size":5}},
                "notCreated":{"e1":{"type":"alreadyExists","existingId":"M2"},
                              "e2":{"type":"alreadyExists"},
                              "e3":{"type":"invalidEmail","description":"bad"}}}"#,
        )
        .unwrap();
        assert_eq!(
            import_outcome(&mut r, "e0"),
            Ok(Imported {
                id: "M1".into(),
                already_existed: false
            })
        );
        assert_eq!(
            import_outcome(&mut r, "e1"),
            Ok(Imported {
                id: "M2".into(),
                already_existed: true
            })
        );
        assert_eq!(
            import_outcome(&mut r, "e2").unwrap_err().kind,
            SetErrorType::AlreadyExists
        );
        assert_eq!(
            import_outcome(&mut r, "e3").unwrap_err().kind,
            SetErrorType::InvalidEmail
        );
        assert!(import_outcome(&mut r, "e4").unwrap_err().is_retryable());
    }
}
