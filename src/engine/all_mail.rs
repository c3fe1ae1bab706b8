//! Gmail's All Mail on a migration (`migrate --preset gmail`): which of its messages no other
//! copied folder holds. Those (archived mail, no label) are copied to the target's archive
//! folder; the others are in their label folders already, so All Mail is not copied as a
//! folder of duplicates (see reconcile/gmail.rs).
//!
//! A message of All Mail and its copy in a label folder have the same size, INTERNALDATE and
//! Message-ID: Gmail serves one message under several folders. So the folders are compared by
//! those cheap keys, from one header fetch per folder and only for the messages whose size and
//! INTERNALDATE meet in both; no body is read for them. A message without a Message-ID is
//! confirmed by its content: All Mail's copy is fetched and its fingerprint looked for among
//! the other folder's copies this migration recorded (the other folders are copied first).
//! When in doubt, a message is archived: at worst a copy too many in the archive folder,
//! placed by a copy on the target, never a message lost.

use std::collections::{HashMap, HashSet};

use super::EngineError;
use crate::mailstore::{MailStore, MessageMeta};
use crate::model::{Fingerprint, FolderPath};
use crate::state::StateFile;

type Key = (u32, i64);

fn key(m: &MessageMeta) -> Key {
    (m.size, m.internaldate.epoch())
}

/// The UIDs of `all_mail`'s messages held by none of `others` (on the source).
pub(super) async fn unlabelled<S: MailStore>(
    source: &mut S,
    state: &StateFile,
    all_mail: &FolderPath,
    others: &[FolderPath],
) -> Result<HashSet<u32>, EngineError> {
    source.open_folder(all_mail).await?;
    let all = source.list_messages().await?;
    let wanted: HashSet<Key> = all.iter().map(key).collect();
    // The messages of the other folders that may be All Mail's: (size, date, Message-ID).
    let mut held: HashSet<(u32, i64, String)> = HashSet::new();
    let mut held_keys: HashSet<Key> = HashSet::new();
    // Those without a Message-ID, by content as recorded when they were copied.
    let mut held_content: HashSet<(Fingerprint, i64)> = HashSet::new();
    for folder in others {
        // A folder the source will not open holds nothing here: its messages count as
        // archived (kept), the safe side.
        match source.open_folder(folder).await {
            Ok(_) => {}
            Err(e) if super::sync::folder_local(&e) && !e.is_connection_lost() => {
                tracing::debug!(%folder, "not compared with All Mail: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let metas: Vec<MessageMeta> = source
            .list_messages()
            .await?
            .into_iter()
            .filter(|m| wanted.contains(&key(m)))
            .collect();
        if metas.is_empty() {
            continue;
        }
        let uids: Vec<u32> = metas.iter().map(|m| m.uid).collect();
        let ids: HashMap<u32, Option<String>> =
            source.fetch_message_ids(&uids).await?.into_iter().collect();
        let mut recorded = None;
        for m in &metas {
            held_keys.insert(key(m));
            match ids.get(&m.uid).cloned().flatten() {
                Some(id) => {
                    held.insert((m.size, m.internaldate.epoch(), id));
                }
                None => {
                    if recorded.is_none() {
                        recorded = Some(state.instances(&folder.to_string())?);
                    }
                    let fp = recorded
                        .as_ref()
                        .and_then(|r| r.get(&m.uid))
                        .and_then(|i| i.fingerprint);
                    if let Some(fp) = fp {
                        held_content.insert((fp, m.internaldate.epoch()));
                    }
                }
            }
        }
    }
    // All Mail's messages that may be held elsewhere, confirmed by Message-ID.
    let (maybe, archived): (Vec<&MessageMeta>, Vec<&MessageMeta>) =
        all.iter().partition(|m| held_keys.contains(&key(m)));
    let mut out: HashSet<u32> = archived.iter().map(|m| m.uid).collect();
    if !maybe.is_empty() {
        source.open_folder(all_mail).await?;
        let uids: Vec<u32> = maybe.iter().map(|m| m.uid).collect();
        let ids: HashMap<u32, Option<String>> =
            source.fetch_message_ids(&uids).await?.into_iter().collect();
        let mut without_id: Vec<&MessageMeta> = Vec::new();
        for m in maybe {
            match ids.get(&m.uid).cloned().flatten() {
                Some(id) => {
                    if !held.contains(&(m.size, m.internaldate.epoch(), id)) {
                        out.insert(m.uid);
                    }
                }
                None => without_id.push(m),
            }
        }
        for chunk in without_id.chunks(100) {
            let uids: Vec<u32> = chunk.iter().map(|m| m.uid).collect();
            let bodies = source.fetch_bodies(&uids).await?;
            let dates: HashMap<u32, i64> = chunk
                .iter()
                .map(|m| (m.uid, m.internaldate.epoch()))
                .collect();
            let mut seen: HashSet<u32> = HashSet::new();
            for body in bodies {
                let Some(date) = dates.get(&body.uid) else {
                    continue;
                };
                seen.insert(body.uid);
                if !held_content.contains(&(Fingerprint::of(body.bytes()), *date)) {
                    out.insert(body.uid);
                }
            }
            // Gone since the listing: kept as archived (the pass sees whether it still is).
            out.extend(uids.into_iter().filter(|u| !seen.contains(u)));
        }
    }
    Ok(out)
}
