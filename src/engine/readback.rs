//! Learning how the target stores what it is given, from the messages themselves: a message
//! with 8-bit bytes in its header is read back after upload (Cyrus's default `munge8bit`
//! replaces each with `X`), unless the target is known to keep them.
//!
//! A copy stored otherwise than sent gets a fidelity note in the state (table `notes`),
//! reported once in the summary, and the target's fidelity class becomes `normalising` (META
//! `fidelity:target`, as `check`'s probe would have stored it), so `verify` matches such copies
//! by the tolerant key. A copy stored as sent proves the target keeps 8-bit headers: no later
//! pass reads back again (META `fidelity:target:8bit`).

use super::probe::{meta_key, stored_fidelity, FidelityRecord};
use super::EngineError;
use crate::mailstore::MailStore;
use crate::model::Fingerprint;
use crate::reconcile::fidelity::{classify, FidelityClass, Verdict};
use crate::state::{FidelityNote, StateFile};

/// META key: the target was seen to keep 8-bit header bytes.
const KEPT_KEY: &str = "fidelity:target:8bit";

/// Whether the header section of `bytes` holds a byte above 0x7f.
pub fn has_8bit_header(bytes: &[u8]) -> bool {
    crate::model::tolerant_key::header_section(bytes)
        .iter()
        .any(|b| *b >= 0x80)
}

/// Whether copies still need reading back: the target is not known to keep 8-bit headers
/// (neither the probe of `check` nor an earlier read-back said so).
pub fn needed(state: &StateFile) -> Result<bool, EngineError> {
    if state.meta(KEPT_KEY)?.is_some() {
        return Ok(false);
    }
    let class = stored_fidelity(state, "target")?.map(|r| r.class);
    Ok(class != Some(FidelityClass::Exact))
}

/// One uploaded copy to read back.
pub struct Uploaded<'a> {
    pub source_uid: u32,
    pub target_uid: u32,
    pub sent: &'a [u8],
}

/// Reads the copies back from the target's open folder `folder` and records what differs.
/// Returns the summary lines (one per folder and kind of change).
pub async fn read_back<T: MailStore>(
    target: &mut T,
    state: &StateFile,
    folder: &str,
    copies: &[Uploaded<'_>],
    now: u64,
) -> Result<Vec<String>, EngineError> {
    let uids: Vec<u32> = copies.iter().map(|c| c.target_uid).collect();
    let served = target.fetch_bodies(&uids).await?;
    let mut notes: Vec<(u32, FidelityNote)> = Vec::new();
    let mut kept = 0usize;
    let mut learned = None;
    for body in &served {
        let Some(copy) = copies.iter().find(|c| c.target_uid == body.uid) else {
            continue;
        };
        if body.bytes() == copy.sent {
            kept += 1;
            continue;
        }
        let verdict = classify(copy.sent, body.bytes(), body.bytes().len() as u64);
        let what = describe(&verdict);
        notes.push((copy.source_uid, note(&what, body.bytes(), now)));
        learned.get_or_insert((verdict, what));
    }
    let mut lines = Vec::new();
    if let Some((verdict, what)) = learned {
        record(state, folder, &notes, &verdict, target.endpoint(), now)?;
        lines.push(format!(
            "{folder}: {} message(s) stored by the target otherwise than sent ({what}); kept as stored, a fidelity note: verify matches them by the tolerant key",
            notes.len()
        ));
    } else if kept > 0 {
        state.set_meta(KEPT_KEY, b"kept")?;
    }
    Ok(lines)
}

/// The transforms a verdict found, readable.
pub fn describe(verdict: &Verdict) -> String {
    if verdict.transforms.is_empty() {
        verdict.detail.clone()
    } else {
        let t: Vec<String> = verdict.transforms.iter().map(|t| t.to_string()).collect();
        t.join(", ")
    }
}

/// The note of one copy the target stores as `served`.
pub fn note(what: &str, served: &[u8], now: u64) -> FidelityNote {
    FidelityNote {
        since: now,
        note: format!("the target stores it otherwise than sent: {what}"),
        target_fingerprint: Fingerprint::of(served),
    }
}

/// Records notes of a folder's copies and, unless the state already says the target does not
/// keep bytes, the class the verdict shows (as `check`'s probe would store it).
pub fn record(
    state: &StateFile,
    folder: &str,
    notes: &[(u32, FidelityNote)],
    verdict: &Verdict,
    endpoint: &str,
    now: u64,
) -> Result<(), EngineError> {
    state.add_notes(folder, notes)?;
    if stored_fidelity(state, "target")?.is_none_or(|r| r.class == FidelityClass::Exact) {
        let mut record = FidelityRecord::new(verdict, endpoint, now);
        record.detail = format!("learned from a replicated message: {}", verdict.detail);
        // Encoding a record of strings and numbers does not fail.
        if let Ok(json) = serde_json::to_vec(&record) {
            state.set_meta(&meta_key("target"), &json)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_header_counts() {
        assert!(has_8bit_header("Subject: Grüße\r\n\r\nbody\r\n".as_bytes()));
        assert!(!has_8bit_header("Subject: hi\r\n\r\nbödy\r\n".as_bytes()));
        assert!(has_8bit_header("Subject: no body ü".as_bytes()));
        assert!(!has_8bit_header(b""));
    }
}
