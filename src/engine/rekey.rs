//! A source folder whose UIDVALIDITY changed, on a source that names content by SHA-1 (Cyrus
//! over JMAP, whose UID map was lost): the state's instances are carried over to the new UIDs
//! by content, so nothing is read again and the target's copies keep their mapping.
//!
//! The state keeps, per content, the SHA-1 of its normalised bytes beside its fingerprint
//! (recorded as bodies are read from such a source, or uploaded to such a target). A message
//! listed now under the new UIDVALIDITY, named by SHA-1 `s`, takes over one instance whose
//! fingerprint has SHA-1 `s` (instances of one content in ordinal order). What no instance
//! matches is placed as usual; instances left over are dropped from the base (their target
//! copies stay, as for any rebuild: nothing is removed).

use std::collections::{BTreeMap, HashMap};

use super::EngineError;
use crate::mailstore::{MailStore, MessageMeta};
use crate::model::{ContentSha1, Fingerprint};
use crate::state::{InstanceChange, InstanceRecord, StateFile};

/// The base re-keyed by the source's new UIDs, and the changes that make the state say so
/// (every old UID deleted, every carried instance put under its new UID).
pub(crate) struct Rekeyed {
    pub base: BTreeMap<u32, InstanceRecord>,
    pub changes: Vec<InstanceChange>,
}

/// Carries `old` over to the UIDs of `listed` by SHA-1; `None` when the source does not name
/// content by SHA-1 (the caller then starts the folder afresh).
pub(crate) async fn rekey_by_content_sha1<S: MailStore>(
    source: &mut S,
    state: &StateFile,
    old: &BTreeMap<u32, InstanceRecord>,
    listed: &[MessageMeta],
) -> Result<Option<Rekeyed>, EngineError> {
    if !source.names_content_by_sha1() {
        return Ok(None);
    }
    let fingerprints: Vec<Fingerprint> = old.values().filter_map(|i| i.fingerprint).collect();
    let known = state.content_sha1(fingerprints)?;
    // Per SHA-1, the old instances of that content, last ordinal first (popped in order).
    let mut by_sha1: HashMap<ContentSha1, Vec<&InstanceRecord>> = HashMap::new();
    for inst in old.values() {
        if let Some(sha) = inst.fingerprint.and_then(|fp| known.get(&fp)) {
            by_sha1.entry(*sha).or_default().push(inst);
        }
    }
    for list in by_sha1.values_mut() {
        list.sort_by_key(|i| std::cmp::Reverse(i.ordinal));
    }
    let uids: Vec<u32> = listed.iter().map(|m| m.uid).collect();
    let named: HashMap<u32, ContentSha1> = source.content_sha1(&uids).await?.into_iter().collect();
    let mut changes: Vec<InstanceChange> = old.keys().map(|u| InstanceChange::Delete(*u)).collect();
    let mut base = BTreeMap::new();
    for m in listed {
        let Some(inst) = named
            .get(&m.uid)
            .and_then(|sha| by_sha1.get_mut(sha))
            .and_then(Vec::pop)
        else {
            continue;
        };
        base.insert(m.uid, inst.clone());
    }
    // Deletes first: a new UID may equal an old one.
    changes.extend(
        base.iter()
            .map(|(uid, inst)| InstanceChange::Put(*uid, inst.clone())),
    );
    Ok(Some(Rekeyed { base, changes }))
}
