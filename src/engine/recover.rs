//! Resolving a batch that a previous pass left unfinished (crash, lost connection).
//!
//! The journal entry lists what the batch was about to upload and the target's UIDNEXT before
//! it. Copies that reached the target have a UID at or above that UIDNEXT, no instance points to
//! them, and their size and INTERNALDATE match an intent: only those candidates' bodies are
//! fetched, and a copy is taken when its fingerprint matches. Nothing depends on Message-ID.
//! The first intent without a copy (the one the interruption hit) counts one failed attempt; all
//! of them are uploaded again by this pass. A message that keeps failing (too large for a flaky
//! link, refused in ways that break the connection) is given up after a few and reported.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::EngineError;
use crate::mailstore::{FolderStatus, MailStore, MessageMeta};
use crate::model::Fingerprint;
use crate::reconcile::identity::{adopt, Identified};
use crate::state::{InstanceChange, InstanceRecord, JournalEntry, JournalOp, StateFile};

/// Candidates read per round trip while resolving (each round's finds are committed).
const RECOVERY_CHUNK: usize = 8;

/// What resolving found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Copies found on the target and recorded.
    pub found: usize,
    /// Intents with no copy: counted as failed attempts.
    pub missing: usize,
}

/// Resolves the folder's journal entry, if any, and updates `base` with the copies found.
pub async fn resolve_journal<T: MailStore>(
    target: &mut T,
    state: &StateFile,
    name: &str,
    base: &mut BTreeMap<u32, InstanceRecord>,
    target_msgs: &[MessageMeta],
    target_status: &FolderStatus,
    batch_messages: usize,
) -> Result<Recovered, EngineError> {
    let Some(entry) = state.journal(name)? else {
        return Ok(Recovered::default());
    };
    if entry.target_uidvalidity != target_status.uidvalidity {
        // The copies' UIDs mean nothing now; adoption by identity will find them.
        state.commit_with(name, None, &[], JournalOp::Clear)?;
        return Ok(Recovered::default());
    }
    let mapped: HashSet<u32> = base.values().filter_map(|i| i.target_uid).collect();
    let keys: HashSet<(u32, i64)> = entry
        .intents
        .iter()
        .map(|i| (i.sent_size, i.internaldate.epoch()))
        .collect();
    let candidates: Vec<&MessageMeta> = target_msgs
        .iter()
        .filter(|m| m.uid >= entry.target_uidnext && !mapped.contains(&m.uid))
        .filter(|m| keys.contains(&(m.size, m.internaldate.epoch())))
        .collect();
    let mut ordinals: HashMap<Fingerprint, u32> = HashMap::new();
    for fp in base.values().filter_map(|i| i.fingerprint) {
        *ordinals.entry(fp).or_default() += 1;
    }
    // Candidates are read and matched in small chunks, each committed at once: on a link that
    // keeps dropping, every pass keeps what it found and the next one goes on from there.
    let mut remaining: Vec<&crate::state::Intent> = entry.intents.iter().collect();
    let mut found = 0;
    for chunk in candidates.chunks(RECOVERY_CHUNK.min(batch_messages.max(1))) {
        if remaining.is_empty() {
            break;
        }
        let uids: Vec<u32> = chunk.iter().map(|m| m.uid).collect();
        let mut fingerprinted: Vec<(u32, Fingerprint, &MessageMeta)> =
            Vec::with_capacity(chunk.len());
        for body in target.fetch_bodies(&uids).await? {
            if let Some(m) = chunk.iter().find(|m| m.uid == body.uid) {
                fingerprinted.push((m.uid, Fingerprint::of(body.bytes()), m));
            }
        }
        let sources: Vec<Identified<'_>> = remaining
            .iter()
            .map(|i| Identified {
                uid: i.source_uid,
                fingerprint: i.fingerprint,
                internaldate: &i.internaldate,
            })
            .collect();
        let cands: Vec<Identified<'_>> = fingerprinted
            .iter()
            .map(|(uid, fp, m)| Identified {
                uid: *uid,
                fingerprint: *fp,
                internaldate: &m.internaldate,
            })
            .collect();
        let matches = adopt(&sources, &cands);
        let mut changes = Vec::new();
        let mut matched: Vec<u32> = Vec::new();
        for (intent, tuid) in remaining.iter().zip(matches) {
            let Some(tuid) = tuid else { continue };
            let ordinal = ordinals.entry(intent.fingerprint).or_default();
            let rec = InstanceRecord {
                fingerprint: Some(intent.fingerprint),
                ordinal: *ordinal,
                target_uid: Some(tuid),
                flags: intent.flags.clone(),
                internaldate: intent.internaldate.clone(),
                size: intent.size,
            };
            *ordinal += 1;
            base.insert(intent.source_uid, rec.clone());
            changes.push(InstanceChange::Put(intent.source_uid, rec));
            matched.push(intent.source_uid);
        }
        state.commit(name, None, &changes)?;
        found += changes.len();
        remaining.retain(|i| !matched.contains(&i.source_uid));
    }
    let missing: Vec<u32> = remaining.iter().map(|i| i.source_uid).collect();
    let changes: Vec<InstanceChange> = Vec::new();
    let recovered = Recovered {
        found,
        missing: missing.len(),
    };
    if missing.is_empty() {
        state.commit_with(name, None, &changes, JournalOp::Clear)?;
    } else {
        // The server stores a batch in order: the first missing intent is the one the
        // interruption hit; those after it were never reached and are not held against.
        state.commit(name, None, &changes)?;
        state.record_failed_batch(name, &missing[..1], "the upload was interrupted")?;
    }
    Ok(recovered)
}

/// The journal entry for a batch about to be uploaded.
pub fn journal_entry(
    target_status: &FolderStatus,
    intents: Vec<crate::state::Intent>,
) -> JournalEntry {
    JournalEntry {
        target_uidvalidity: target_status.uidvalidity,
        target_uidnext: target_status.uidnext.unwrap_or(1),
        intents,
    }
}
