//! Keywords the target will not keep, learned from its refusals (Dovecot refuses a keyword
//! longer than `mail_max_keyword_length`, 50 bytes by default, and with it the whole APPEND or
//! STORE; other servers cap how many keywords a folder holds). A message is never left behind
//! for a keyword: it is written again without the keywords that can be at fault, and those
//! keywords become a fidelity note in the state (META `refused_keywords`), reported once and
//! left out of every later comparison and write, so a no-op pass sends no STORE for them.

use std::collections::BTreeMap;

use crate::mailstore::StoreError;
use crate::model::{Flag, FlagSet};
use crate::state::{StateError, StateFile};

/// Keywords longer than this are the first suspects (Dovecot's default limit).
const LONG_KEYWORD: usize = 50;

/// The META key of the note.
const META_KEY: &str = "refused_keywords";

/// A refusal that may be about the message's keywords (not about its bytes or the folder).
pub(crate) fn is_keyword_refusal(e: &StoreError) -> bool {
    match e {
        StoreError::No { text, .. } => {
            let t = text.to_ascii_lowercase();
            t.contains("keyword") || t.contains("flag")
        }
        _ => false,
    }
}

/// The flag sets to try next, most faithful first, each with the keywords it leaves out:
/// without the long keywords, then with system flags only. Empty when the set has no keyword.
pub(crate) fn fallbacks(flags: &FlagSet) -> Vec<(FlagSet, Vec<Flag>)> {
    let keywords: Vec<Flag> = flags.iter().filter(|f| !f.is_system()).cloned().collect();
    if keywords.is_empty() {
        return Vec::new();
    }
    let long: Vec<Flag> = keywords
        .iter()
        .filter(|f| f.as_str().len() > LONG_KEYWORD)
        .cloned()
        .collect();
    let mut out = Vec::new();
    if !long.is_empty() && long.len() < keywords.len() {
        out.push((flags.filtered(|f| !long.contains(f)), long));
    }
    out.push((flags.filtered(Flag::is_system), keywords));
    out
}

/// The keywords noted as refused by the target, lower-cased, with the server's words.
pub fn refused(state: &StateFile) -> Result<BTreeMap<String, String>, StateError> {
    Ok(state
        .meta(META_KEY)?
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or_default())
}

/// Adds keywords to the note; returns those that were not in it yet (to report once).
pub(crate) fn note_refused(
    state: &StateFile,
    keywords: &[Flag],
    why: &str,
) -> Result<Vec<String>, StateError> {
    let mut all = refused(state)?;
    let mut new = Vec::new();
    for k in keywords {
        let key = k.as_str().to_ascii_lowercase();
        if let std::collections::btree_map::Entry::Vacant(e) = all.entry(key) {
            e.insert(why.to_string());
            new.push(k.as_str().to_string());
        }
    }
    if !new.is_empty() {
        let raw = serde_json::to_vec(&all).unwrap_or_default();
        state.set_meta(META_KEY, &raw)?;
    }
    Ok(new)
}

/// Whether a flag is one the note says the target refuses.
pub fn is_refused(refused: &BTreeMap<String, String>, flag: &Flag) -> bool {
    !flag.is_system() && refused.contains_key(&flag.as_str().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallbacks_drop_long_keywords_first_then_all() {
        let long = "k".repeat(60);
        let flags = FlagSet::from_raw(["\\Seen", "$Forwarded", long.as_str()]);
        let f = fallbacks(&flags);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].0, FlagSet::from_raw(["\\Seen", "$Forwarded"]));
        assert_eq!(f[0].1.len(), 1);
        assert_eq!(f[1].0, FlagSet::from_raw(["\\Seen"]));
        assert_eq!(f[1].1.len(), 2);
        // Only long ones: one step. No keyword: nothing to try.
        assert_eq!(fallbacks(&FlagSet::from_raw([long.as_str()])).len(), 1);
        assert!(fallbacks(&FlagSet::from_raw(["\\Seen", "\\Flagged"])).is_empty());
    }

    #[test]
    fn keyword_refusals_are_told_apart() {
        let no = |text: &str| StoreError::No {
            endpoint: "e".into(),
            command: "APPEND".into(),
            folder: String::new(),
            code: Some("CANNOT".into()),
            text: text.into(),
        };
        assert!(is_keyword_refusal(&no("Keyword length too long")));
        assert!(is_keyword_refusal(&no("Too many user flags in mailbox")));
        assert!(!is_keyword_refusal(&no("Message contains NUL characters")));
    }
}
