//! Flags and keywords: compared case-insensitively, written in their original spelling.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The system flags that are replicated. `\Recent` is never read, compared or written; other
/// `\X` flags are not portable and are dropped.
const SYSTEM_FLAGS: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// One IMAP flag or keyword. Equality, ordering and hashing ignore ASCII case (RFC 3501 flags are
/// case-insensitive); the original spelling is kept for writing.
///
/// The spelling is shared (`Arc<str>`): listings copy flags for every message of a folder.
#[derive(Clone)]
pub struct Flag(Arc<str>);

impl serde::Serialize for Flag {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Flag(String::deserialize(d)?.into()))
    }
}

impl Flag {
    /// Parses a flag as a server sent it. Returns `None` for flags that are never replicated:
    /// `\Recent`, unknown system flags, `\*`, and atoms that are not valid keywords.
    pub fn parse(raw: &str) -> Option<Flag> {
        if raw.is_empty() {
            return None;
        }
        if raw.starts_with('\\') {
            let canonical = SYSTEM_FLAGS.iter().find(|f| f.eq_ignore_ascii_case(raw))?;
            return Some(Flag((*canonical).into()));
        }
        let valid_atom = raw.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        });
        valid_atom.then(|| Flag(raw.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_system(&self) -> bool {
        self.0.starts_with('\\')
    }

    fn key(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.bytes().map(|b| b.to_ascii_lowercase())
    }
}

impl PartialEq for Flag {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for Flag {}

impl Ord for Flag {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(other.key())
    }
}
impl PartialOrd for Flag {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for Flag {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.key() {
            state.write_u8(b);
        }
    }
}

impl fmt::Debug for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of flags, ordered case-insensitively.
///
/// Shared and immutable (`None` when empty): a pass copies the flags of every message of a
/// folder several times (the base, each side's view of it, the plan), and a copy is a count
/// increment. Sets are small, so lookups scan.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct FlagSet(Option<Arc<[Flag]>>);

impl FlagSet {
    pub fn new() -> FlagSet {
        FlagSet::default()
    }

    /// Builds a set from flags as a server sent them, dropping those never replicated.
    pub fn from_raw<'a>(raw: impl IntoIterator<Item = &'a str>) -> FlagSet {
        raw.into_iter().filter_map(Flag::parse).collect()
    }

    /// Flags as the state stored them (spelled as written then, not parsed again).
    pub fn from_stored<'a>(stored: impl IntoIterator<Item = &'a str>) -> FlagSet {
        stored.into_iter().map(|s| Flag(s.into())).collect()
    }

    fn slice(&self) -> &[Flag] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// Adds `flag`; false when the set had it already (in any case).
    pub fn insert(&mut self, flag: Flag) -> bool {
        let Err(at) = self.slice().binary_search(&flag) else {
            return false;
        };
        let mut flags = self.slice().to_vec();
        flags.insert(at, flag);
        self.0 = Some(flags.into());
        true
    }

    pub fn contains(&self, flag: &Flag) -> bool {
        self.slice().contains(flag)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Flag> {
        self.slice().iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn len(&self) -> usize {
        self.slice().len()
    }

    /// Flags in `self` that are not in `other`.
    pub fn minus(&self, other: &FlagSet) -> FlagSet {
        if other.is_empty() {
            return self.clone();
        }
        self.filtered(|f| !other.contains(f))
    }

    /// Keeps only the flags `keep` accepts (used to leave out what a target cannot store).
    pub fn filtered(&self, keep: impl Fn(&Flag) -> bool) -> FlagSet {
        if self.iter().all(&keep) {
            return self.clone();
        }
        // Already sorted and distinct: no sort again.
        FlagSet::from_sorted(self.iter().filter(|f| keep(f)).cloned().collect())
    }

    /// The IMAP list form: `(\Seen $Label)`.
    pub fn to_imap_list(&self) -> String {
        let names: Vec<&str> = self.iter().map(Flag::as_str).collect();
        format!("({})", names.join(" "))
    }

    fn from_sorted(flags: Vec<Flag>) -> FlagSet {
        FlagSet((!flags.is_empty()).then(|| flags.into()))
    }
}

impl FromIterator<Flag> for FlagSet {
    fn from_iter<I: IntoIterator<Item = Flag>>(iter: I) -> Self {
        let mut flags: Vec<Flag> = iter.into_iter().collect();
        flags.sort();
        // The first spelling of a flag given twice in different cases is kept.
        flags.dedup();
        FlagSet::from_sorted(flags)
    }
}

/// Written as a sequence of flags, in order (the form the state has always had).
impl serde::Serialize for FlagSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for FlagSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Flag>::deserialize(d)?.into_iter().collect())
    }
}

impl fmt::Debug for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_imap_list())
    }
}

impl fmt::Display for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_imap_list())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_compare_case_insensitively_and_keep_spelling() {
        let a = FlagSet::from_raw(["\\SEEN", "$Label1"]);
        let b = FlagSet::from_raw(["\\Seen", "$label1"]);
        assert_eq!(a, b);
        assert_eq!(a.to_imap_list(), "($Label1 \\Seen)");
    }

    #[test]
    fn recent_and_unknown_system_flags_are_dropped() {
        let s = FlagSet::from_raw(["\\Recent", "\\Seen", "\\Whatever", "\\*", "", "a(b"]);
        assert_eq!(s.to_imap_list(), "(\\Seen)");
    }

    #[test]
    fn minus_is_set_difference() {
        let a = FlagSet::from_raw(["\\Seen", "\\Flagged", "Work"]);
        let b = FlagSet::from_raw(["\\seen", "work"]);
        assert_eq!(a.minus(&b).to_imap_list(), "(\\Flagged)");
        assert!(b.minus(&a).is_empty());
    }
}
