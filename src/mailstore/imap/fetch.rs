//! UID FETCH: message metadata in one batched command, bodies with BODY.PEEK[] by UID set.

use std::collections::{BTreeMap, HashSet};

use imap_proto::{AttributeValue, Response};

use super::connection::{Ctx, ImapResponse};
use super::ImapStore;
use crate::mailstore::{uid_set, FetchedBody, MessageMeta, StoreError};
use crate::model::message_id::message_id;
use crate::model::{FlagSet, InternalDate};

impl ImapStore {
    /// Flags, INTERNALDATE and size of every message in the open folder, in one command.
    pub(super) async fn fetch_meta(&mut self) -> Result<Vec<MessageMeta>, StoreError> {
        self.selected_name("UID FETCH")?;
        let display = self.selected_display();
        let ctx = Ctx::on("UID FETCH", &display);
        if self.selected_exists == 0 {
            return Ok(Vec::new());
        }
        let done = self
            .conn
            .run_text("UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)", ctx)
            .await?;
        Ok(parse_meta(&done.untagged, 1))
    }

    /// Bodies of the given UIDs with BODY.PEEK[] (never sets `\Seen`). UIDs the server does not
    /// return (expunged meanwhile) are absent; responses for UIDs not asked for are dropped
    /// (`UID FETCH n:*` can return a message below n).
    pub(super) async fn fetch_body_batch(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<FetchedBody>, StoreError> {
        self.selected_name("UID FETCH")?;
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let display = self.selected_display();
        let ctx = Ctx::on("UID FETCH", &display);
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let cmd = format!("UID FETCH {} (UID BODY.PEEK[])", uid_set(uids));
        let done = self.conn.run_text(&cmd, ctx).await?;
        let mut bodies = Vec::with_capacity(uids.len());
        for r in done.untagged {
            let uid = match r.parsed() {
                Response::Fetch(_, attrs) => {
                    let uid = attrs.iter().find_map(|a| match a {
                        AttributeValue::Uid(u) => Some(u),
                        _ => None,
                    });
                    match uid {
                        Some(u) if wanted.contains(u) && body_section(&r).is_some() => *u,
                        _ => continue,
                    }
                }
                _ => continue,
            };
            bodies.push(FetchedBody::imap(uid, r));
        }
        bodies.sort_by_key(|b| b.uid);
        bodies.dedup_by_key(|b| b.uid);
        Ok(bodies)
    }
}

impl ImapStore {
    /// Message-IDs by UID with one header-field fetch (never sets `\Seen`).
    pub(super) async fn fetch_message_id_batch(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Option<String>)>, StoreError> {
        self.selected_name("UID FETCH")?;
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let display = self.selected_display();
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let cmd = format!(
            "UID FETCH {} (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
            uid_set(uids)
        );
        let done = self
            .conn
            .run_text(&cmd, Ctx::on("UID FETCH", &display))
            .await?;
        let mut out = Vec::with_capacity(uids.len());
        for r in &done.untagged {
            let Response::Fetch(_, attrs) = r.parsed() else {
                continue;
            };
            let mut uid = None;
            let mut header = None;
            for a in attrs {
                match a {
                    AttributeValue::Uid(u) => uid = Some(*u),
                    AttributeValue::BodySection {
                        section: Some(_),
                        data,
                        ..
                    } => header = Some(data.as_deref().unwrap_or(&[])),
                    _ => {}
                }
            }
            if let (Some(uid), Some(header)) = (uid, header) {
                if wanted.contains(&uid) {
                    out.push((uid, message_id(header)));
                }
            }
        }
        out.sort();
        out.dedup_by_key(|(u, _)| *u);
        Ok(out)
    }
}

/// Metadata from the responses to a `UID FETCH from:* (UID FLAGS INTERNALDATE RFC822.SIZE)`,
/// sorted by UID. Responses below `from` are dropped: `n:*` also returns the last message when
/// its UID is below n.
pub(super) fn parse_meta<'a>(
    untagged: impl IntoIterator<Item = &'a ImapResponse>,
    from: u32,
) -> Vec<MessageMeta> {
    // Responses are applied in the order they came: a flag-only FETCH (another client
    // changed flags meanwhile) updates a message already listed, and is dropped otherwise
    // because the full response that follows is newer. Unsolicited FETCHes may carry no
    // UID; their sequence numbers are mapped through the full responses seen so far.
    let mut by_uid: BTreeMap<u32, MessageMeta> = BTreeMap::new();
    let mut seq_to_uid: BTreeMap<u32, u32> = BTreeMap::new();
    for r in untagged {
        let (seq, attrs) = match r.parsed() {
            Response::Fetch(seq, attrs) => (*seq, attrs),
            Response::Expunge(gone) => {
                // Later sequence numbers shift down by one.
                let gone = *gone;
                seq_to_uid = seq_to_uid
                    .into_iter()
                    .filter(|(s, _)| *s != gone)
                    .map(|(s, u)| (if s > gone { s - 1 } else { s }, u))
                    .collect();
                continue;
            }
            _ => continue,
        };
        let mut uid = None;
        let mut flags = None;
        let mut date = None;
        let mut size = None;
        for a in attrs {
            match a {
                AttributeValue::Uid(u) => uid = Some(*u),
                AttributeValue::Flags(f) => {
                    flags = Some(FlagSet::from_raw(f.iter().map(|x| x.as_ref())))
                }
                AttributeValue::InternalDate(d) => date = InternalDate::parse(d.as_ref()),
                AttributeValue::Rfc822Size(s) => size = Some(*s),
                _ => {}
            }
        }
        match (uid, flags, date, size) {
            (Some(uid), Some(flags), Some(internaldate), Some(size)) => {
                seq_to_uid.insert(seq, uid);
                by_uid.insert(
                    uid,
                    MessageMeta {
                        uid,
                        flags,
                        internaldate,
                        size,
                    },
                );
            }
            (uid, Some(flags), _, _) => {
                let uid = uid.or_else(|| seq_to_uid.get(&seq).copied());
                if let Some(m) = uid.and_then(|u| by_uid.get_mut(&u)) {
                    m.flags = flags;
                }
            }
            _ => {}
        }
    }
    by_uid.into_values().filter(|m| m.uid >= from).collect()
}

/// The bytes of `BODY[]` in a FETCH response.
pub fn body_section(response: &ImapResponse) -> Option<&[u8]> {
    let Response::Fetch(_, attrs) = response.parsed() else {
        return None;
    };
    attrs.iter().find_map(|a| match a {
        AttributeValue::BodySection {
            section: None,
            data: Some(data),
            ..
        } => Some(data.as_ref()),
        AttributeValue::Rfc822(Some(data)) => Some(data.as_ref()),
        _ => None,
    })
}
