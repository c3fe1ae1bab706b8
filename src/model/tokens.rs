//! A folder's change tokens (UIDVALIDITY, UIDNEXT, MESSAGES, HIGHESTMODSEQ) and what they prove.

/// What tells whether a folder changed: equal tokens with a HIGHESTMODSEQ mean nothing in the
/// folder changed (no message added, removed or reflagged). Without HIGHESTMODSEQ equal tokens
/// prove nothing about flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FolderTokens {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u32,
    pub highest_modseq: Option<u64>,
}

impl FolderTokens {
    /// Whether these tokens, equal to `other`, prove the folder unchanged.
    pub fn proves_unchanged(&self, other: &FolderTokens) -> bool {
        self.highest_modseq.is_some() && self == other
    }

    /// The regression ("time travel") this folder shows against tokens seen earlier under the
    /// same UIDVALIDITY: UIDNEXT or HIGHESTMODSEQ went down. `None` when it did not.
    pub fn regression_from(&self, earlier: &FolderTokens) -> Option<String> {
        if self.uidvalidity != earlier.uidvalidity {
            return None;
        }
        if self.uidnext < earlier.uidnext {
            return Some(format!(
                "UIDNEXT went down from {} to {}",
                earlier.uidnext, self.uidnext
            ));
        }
        match (earlier.highest_modseq, self.highest_modseq) {
            (Some(before), Some(now)) if now < before => {
                Some(format!("HIGHESTMODSEQ went down from {before} to {now}"))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(uidnext: u32, messages: u32, modseq: Option<u64>) -> FolderTokens {
        FolderTokens {
            uidvalidity: 7,
            uidnext,
            messages,
            highest_modseq: modseq,
        }
    }

    #[test]
    fn equal_tokens_prove_nothing_without_modseq() {
        assert!(t(5, 4, Some(9)).proves_unchanged(&t(5, 4, Some(9))));
        assert!(!t(5, 4, None).proves_unchanged(&t(5, 4, None)));
        assert!(!t(5, 4, Some(10)).proves_unchanged(&t(5, 4, Some(9))));
    }

    #[test]
    fn regression_is_uidnext_or_modseq_going_down_under_one_uidvalidity() {
        assert!(t(4, 4, Some(9))
            .regression_from(&t(5, 4, Some(9)))
            .is_some());
        assert!(t(5, 4, Some(8))
            .regression_from(&t(5, 4, Some(9)))
            .is_some());
        assert!(t(6, 2, Some(12))
            .regression_from(&t(5, 4, Some(9)))
            .is_none());
        assert!(t(6, 2, None).regression_from(&t(5, 4, Some(9))).is_none());
        let other = FolderTokens {
            uidvalidity: 8,
            ..t(1, 0, Some(1))
        };
        assert!(other.regression_from(&t(5, 4, Some(9))).is_none());
    }
}
