//! Adoption by identity: which target message, already there, is the copy of a source message.

use crate::model::{Fingerprint, InternalDate};

/// A message known by its identity.
#[derive(Debug, Clone)]
pub struct Identified<'a> {
    pub uid: u32,
    pub fingerprint: Fingerprint,
    pub internaldate: &'a InternalDate,
}

/// Pairs each source message with an unused target message of the same fingerprint and
/// INTERNALDATE, lowest UIDs first on both sides, so two identical copies in one folder map to
/// two distinct target copies (the ordinal rule). Returns, per source message in input order,
/// the adopted target UID.
pub fn adopt(sources: &[Identified<'_>], candidates: &[Identified<'_>]) -> Vec<Option<u32>> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| candidates[i].uid);
    let mut used = vec![false; candidates.len()];
    let mut src_order: Vec<usize> = (0..sources.len()).collect();
    src_order.sort_by_key(|&i| sources[i].uid);
    let mut out = vec![None; sources.len()];
    for si in src_order {
        let s = &sources[si];
        let found = order.iter().copied().find(|&ci| {
            !used[ci]
                && candidates[ci].fingerprint == s.fingerprint
                && candidates[ci].internaldate == s.internaldate
        });
        if let Some(ci) = found {
            used[ci] = true;
            out[si] = Some(candidates[ci].uid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_copies_adopt_distinct_targets_in_uid_order() {
        let d = InternalDate::parse("01-Jan-2024 10:00:00 +0000").unwrap();
        let other = InternalDate::parse("02-Jan-2024 10:00:00 +0000").unwrap();
        let fa = Fingerprint::of(b"a");
        let fb = Fingerprint::of(b"b");
        let id = |uid, fingerprint, internaldate| Identified {
            uid,
            fingerprint,
            internaldate,
        };
        let sources = [id(5, fa, &d), id(2, fa, &d), id(7, fb, &d), id(9, fb, &d)];
        let candidates = [id(30, fa, &d), id(20, fa, &d), id(40, fb, &other)];
        assert_eq!(
            adopt(&sources, &candidates),
            vec![Some(30), Some(20), None, None]
        );
    }
}
