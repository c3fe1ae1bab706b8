//! Pure mappings between IMAP and JMAP vocabulary: flags <-> keywords, SPECIAL-USE <-> roles,
//! and JSON Pointer escaping for patch paths.
//!
//! RFC 8621 section 4.1.1: the four portable system flags have `$` keywords; `\Deleted` has
//! none (JMAP hides messages marked deleted rather than flagging them) and `\Recent` is never
//! replicated. Keywords are case-insensitive and sent lowercase, so an IMAP keyword written
//! `$Label1` comes back from a JMAP side as `$label1`; [`crate::model::Flag`] compares
//! case-insensitively, so the round trip is lossless for everything but spelling.

use std::collections::BTreeMap;

use crate::model::{Flag, FlagSet};

/// IMAP system flag <-> JMAP keyword, for the flags that have one.
const SYSTEM_KEYWORDS: [(&str, &str); 4] = [
    ("\\Seen", "$seen"),
    ("\\Flagged", "$flagged"),
    ("\\Answered", "$answered"),
    ("\\Draft", "$draft"),
];

/// IMAP SPECIAL-USE attribute (RFC 6154, 8457) <-> JMAP Mailbox role (IANA registry, RFC 8621
/// section 10.5). `inbox` is not a special-use attribute: INBOX is a name in IMAP.
const SPECIAL_USE_ROLES: [(&str, &str); 8] = [
    ("\\All", "all"),
    ("\\Archive", "archive"),
    ("\\Drafts", "drafts"),
    ("\\Flagged", "flagged"),
    ("\\Important", "important"),
    ("\\Junk", "junk"),
    ("\\Sent", "sent"),
    ("\\Trash", "trash"),
];

/// Keywords a server sets on its own from the content (Cyrus: `$hasattachment` on every
/// imported email with an attachment), not a user's flag: never replicated, compared or
/// removed.
pub fn is_server_set(keyword: &str) -> bool {
    ["$hasattachment", "$hasnoattachment"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(keyword))
}

/// The JMAP keyword for an IMAP flag, lowercase; `None` for `\Deleted` (no keyword exists).
pub fn flag_to_keyword(flag: &Flag) -> Option<String> {
    if flag.is_system() {
        return SYSTEM_KEYWORDS
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(flag.as_str()))
            .map(|(_, k)| (*k).to_string());
    }
    Some(flag.as_str().to_ascii_lowercase())
}

/// The IMAP flag for a JMAP keyword: `$seen` -> `\Seen` etc., other keywords as they are.
/// `None` for a keyword that is not a valid IMAP flag atom (the server sent something IMAP
/// cannot carry).
pub fn keyword_to_flag(keyword: &str) -> Option<Flag> {
    if let Some((flag, _)) = SYSTEM_KEYWORDS
        .iter()
        .find(|(_, k)| k.eq_ignore_ascii_case(keyword))
    {
        return Flag::parse(flag);
    }
    Flag::parse(&keyword.to_ascii_lowercase())
}

/// The JMAP `keywords` object for a flag set. Flags without a keyword (`\Deleted`) are left
/// out; use [`unmapped_flags`] to know which.
pub fn flags_to_keywords(flags: &FlagSet) -> BTreeMap<String, bool> {
    flags
        .iter()
        .filter_map(flag_to_keyword)
        .map(|k| (k, true))
        .collect()
}

/// The flags of a set that JMAP cannot carry (`\Deleted`): a fidelity note, not an error.
pub fn unmapped_flags(flags: &FlagSet) -> FlagSet {
    flags.filtered(|f| flag_to_keyword(f).is_none())
}

/// The flag set for a JMAP `keywords` object. Entries whose value is not `true` are ignored
/// (RFC 8621 allows only `true`); keywords IMAP cannot carry are dropped.
pub fn keywords_to_flags<'a>(
    keywords: impl IntoIterator<Item = (&'a String, &'a bool)>,
) -> FlagSet {
    keywords
        .into_iter()
        .filter(|(_, set)| **set)
        .filter_map(|(k, _)| keyword_to_flag(k))
        .collect()
}

/// The JMAP role for an IMAP SPECIAL-USE attribute (`\Sent` -> `sent`), case-insensitively.
pub fn special_use_to_role(special_use: &str) -> Option<&'static str> {
    SPECIAL_USE_ROLES
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(special_use))
        .map(|(_, r)| *r)
}

/// The IMAP SPECIAL-USE attribute for a JMAP role (`sent` -> `\Sent`). `None` for `inbox`
/// (a name in IMAP), `subscribed` and roles from outside the registry.
pub fn role_to_special_use(role: &str) -> Option<&'static str> {
    SPECIAL_USE_ROLES
        .iter()
        .find(|(_, r)| r.eq_ignore_ascii_case(role))
        .map(|(s, _)| *s)
}

/// Escapes one JSON Pointer reference token (RFC 6901): `~` -> `~0`, `/` -> `~1`, in that order.
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Reverses [`escape_pointer_token`]: `~1` -> `/`, then `~0` -> `~`.
pub fn unescape_pointer_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The patch path for one keyword of an email: `keywords/<escaped keyword>`.
pub fn keyword_patch_path(keyword: &str) -> String {
    format!("keywords/{}", escape_pointer_token(keyword))
}

/// The patch path for one mailbox of an email: `mailboxIds/<escaped id>`.
pub fn mailbox_patch_path(mailbox_id: &str) -> String {
    format!("mailboxIds/{}", escape_pointer_token(mailbox_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn flag(s: &str) -> Flag {
        Flag::parse(s).unwrap()
    }

    #[test]
    fn system_flags_map_to_dollar_keywords() {
        assert_eq!(flag_to_keyword(&flag("\\Seen")).as_deref(), Some("$seen"));
        assert_eq!(
            flag_to_keyword(&flag("\\FLAGGED")).as_deref(),
            Some("$flagged")
        );
        assert_eq!(
            flag_to_keyword(&flag("\\Answered")).as_deref(),
            Some("$answered")
        );
        assert_eq!(flag_to_keyword(&flag("\\draft")).as_deref(), Some("$draft"));
        assert_eq!(flag_to_keyword(&flag("\\Deleted")), None);
        assert_eq!(keyword_to_flag("$seen").unwrap().as_str(), "\\Seen");
        assert_eq!(keyword_to_flag("$Draft").unwrap().as_str(), "\\Draft");
    }

    #[test]
    fn custom_keywords_are_lowercased_and_kept() {
        assert_eq!(
            flag_to_keyword(&flag("$Label1")).as_deref(),
            Some("$label1")
        );
        assert_eq!(
            flag_to_keyword(&flag("Work/Done")).as_deref(),
            Some("work/done")
        );
        assert_eq!(keyword_to_flag("$Junk").unwrap().as_str(), "$junk");
        assert_eq!(
            keyword_to_flag("$forwarded").unwrap().as_str(),
            "$forwarded"
        );
        // Not an IMAP atom: dropped on the way back.
        assert_eq!(keyword_to_flag("a(b"), None);
        assert_eq!(keyword_to_flag(""), None);
    }

    #[test]
    fn flag_sets_and_keyword_objects() {
        let flags = FlagSet::from_raw(["\\Seen", "\\Deleted", "$Label1", "\\Flagged"]);
        let kw = flags_to_keywords(&flags);
        assert_eq!(
            kw.keys().map(String::as_str).collect::<Vec<_>>(),
            ["$flagged", "$label1", "$seen"]
        );
        assert_eq!(unmapped_flags(&flags).to_imap_list(), "(\\Deleted)");
        let mut back = kw.clone();
        back.insert("$ignored".into(), false);
        assert_eq!(
            keywords_to_flags(&back),
            FlagSet::from_raw(["\\Seen", "$label1", "\\Flagged"])
        );
    }

    #[test]
    fn roles_and_special_use() {
        assert_eq!(special_use_to_role("\\Sent"), Some("sent"));
        assert_eq!(special_use_to_role("\\JUNK"), Some("junk"));
        assert_eq!(special_use_to_role("\\Noselect"), None);
        assert_eq!(role_to_special_use("trash"), Some("\\Trash"));
        assert_eq!(role_to_special_use("inbox"), None);
        assert_eq!(role_to_special_use("subscribed"), None);
        for (s, r) in SPECIAL_USE_ROLES {
            assert_eq!(
                role_to_special_use(special_use_to_role(s).unwrap()),
                Some(s)
            );
            assert_eq!(
                special_use_to_role(role_to_special_use(r).unwrap()),
                Some(r)
            );
        }
    }

    #[test]
    fn pointer_escaping() {
        assert_eq!(escape_pointer_token("a/b~c"), "a~1b~0c");
        // `~1` in the input must not turn into `/` on the way back.
        assert_eq!(escape_pointer_token("~1"), "~01");
        assert_eq!(unescape_pointer_token("~01"), "~1");
        assert_eq!(keyword_patch_path("$a/b"), "keywords/$a~1b");
        assert_eq!(mailbox_patch_path("Mabc"), "mailboxIds/Mabc");
    }

    /// Keyword atoms as IMAP allows them (printable ASCII minus atom-specials and `\`),
    /// including `/` and `~`, which need pointer escaping.
    fn keyword_atom() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[A-Za-z0-9$/~!#&'+,.:;<=>?@^_`|-]{1,12}").unwrap()
    }

    proptest! {
        #[test]
        fn keywords_survive_the_round_trip(k in keyword_atom()) {
            let lower = k.to_ascii_lowercase();
            let f = keyword_to_flag(&lower).expect("a valid atom is a flag");
            prop_assert_eq!(flag_to_keyword(&f), Some(lower));
        }

        #[test]
        fn flags_survive_the_round_trip(k in keyword_atom(), sys in 0usize..5) {
            // A custom keyword spelled like a system keyword (`$Seen`) collapses onto the
            // system flag: that is the one lossy case, by RFC 8621's design.
            prop_assume!(!SYSTEM_KEYWORDS.iter().any(|(_, kw)| kw.eq_ignore_ascii_case(&k)));
            let f = flag(&k);
            prop_assert_eq!(keyword_to_flag(&flag_to_keyword(&f).unwrap()), Some(f));
            let s = flag(["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted"][sys]);
            match flag_to_keyword(&s) {
                Some(kw) => prop_assert_eq!(keyword_to_flag(&kw), Some(s)),
                None => prop_assert_eq!(s.as_str(), "\\Deleted"),
            }
        }

        #[test]
        fn pointer_escaping_round_trips(k in keyword_atom()) {
            let e = escape_pointer_token(&k);
            prop_assert!(!e.contains('/'));
            prop_assert_eq!(unescape_pointer_token(&e), k);
        }
    }
}
