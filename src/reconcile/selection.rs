//! Which folders and messages a migration copies: folder include/exclude patterns (regular
//! expressions on the folder's path as `sync` prints it, `Archive/2024`), a size limit and an
//! INTERNALDATE window. Pure; `sync` selects everything.

use regex::Regex;

use crate::mailstore::MessageMeta;
use crate::model::FolderPath;

/// What to copy. The default copies everything.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// A folder is copied when it matches one of these (or there are none)...
    pub include: Vec<Regex>,
    /// ... and none of these.
    pub exclude: Vec<Regex>,
    /// Messages larger than this (bytes, RFC822.SIZE) are skipped.
    pub max_size: Option<u32>,
    /// Messages whose INTERNALDATE is before this instant (unix seconds) are skipped.
    pub min_date: Option<i64>,
    /// Messages whose INTERNALDATE is at or after this instant are skipped.
    pub max_date: Option<i64>,
}

/// Why a message is not copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    TooLarge,
    TooOld,
    TooNew,
}

impl Selection {
    /// Builds a selection from patterns, reporting the first that is not a valid regex.
    pub fn with_patterns(include: &[String], exclude: &[String]) -> Result<Selection, String> {
        let compile = |p: &String| {
            Regex::new(p)
                .map_err(|e| format!("folder pattern {p:?} is not a valid regular expression: {e}"))
        };
        Ok(Selection {
            include: include.iter().map(compile).collect::<Result<_, _>>()?,
            exclude: exclude.iter().map(compile).collect::<Result<_, _>>()?,
            ..Selection::default()
        })
    }

    pub fn selects_everything(&self) -> bool {
        self.include.is_empty()
            && self.exclude.is_empty()
            && self.max_size.is_none()
            && self.min_date.is_none()
            && self.max_date.is_none()
    }

    pub fn folder_selected(&self, path: &FolderPath) -> bool {
        let name = path.to_string();
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(&name)))
            && !self.exclude.iter().any(|r| r.is_match(&name))
    }

    /// `None` when the message is copied, else why not.
    pub fn skip(&self, m: &MessageMeta) -> Option<Skip> {
        if self.max_size.is_some_and(|max| m.size > max) {
            return Some(Skip::TooLarge);
        }
        let date = m.internaldate.epoch();
        if self.min_date.is_some_and(|min| date < min) {
            return Some(Skip::TooOld);
        }
        if self.max_date.is_some_and(|max| date >= max) {
            return Some(Skip::TooNew);
        }
        None
    }
}

/// Unix seconds of `YYYY-MM-DD` at 00:00 UTC.
pub fn parse_day(s: &str) -> Result<i64, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp())
        .ok_or_else(|| format!("{s:?} is not a date: use YYYY-MM-DD"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FlagSet, InternalDate};

    fn meta(size: u32, date: &str) -> MessageMeta {
        MessageMeta {
            uid: 1,
            flags: FlagSet::new(),
            internaldate: InternalDate::parse(date).unwrap(),
            size,
        }
    }

    #[test]
    fn folders_are_selected_by_include_then_exclude() {
        let s = Selection::with_patterns(&["^Archive".into(), "^INBOX$".into()], &["2019".into()])
            .unwrap();
        let p = FolderPath::from_display;
        assert!(s.folder_selected(&p("INBOX")));
        assert!(s.folder_selected(&p("Archive/2024")));
        assert!(!s.folder_selected(&p("Archive/2019")));
        assert!(!s.folder_selected(&p("Work")));
        assert!(Selection::default().folder_selected(&p("Work")));
        assert!(Selection::with_patterns(&["(".into()], &[]).is_err());
    }

    #[test]
    fn messages_are_skipped_by_size_and_date() {
        let s = Selection {
            max_size: Some(1000),
            min_date: Some(parse_day("2024-01-01").unwrap()),
            max_date: Some(parse_day("2025-01-01").unwrap()),
            ..Selection::default()
        };
        assert_eq!(s.skip(&meta(10, "15-Mar-2024 10:00:00 +0000")), None);
        assert_eq!(
            s.skip(&meta(5000, "15-Mar-2024 10:00:00 +0000")),
            Some(Skip::TooLarge)
        );
        assert_eq!(
            s.skip(&meta(10, "31-Dec-2023 23:00:00 +0000")),
            Some(Skip::TooOld)
        );
        assert_eq!(
            s.skip(&meta(10, "01-Jan-2025 00:00:00 +0000")),
            Some(Skip::TooNew)
        );
        assert!(parse_day("2024-13-01").is_err());
    }
}
