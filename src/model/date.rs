//! INTERNALDATE: kept as the server rendered it (for APPEND), compared as an instant.

use chrono::DateTime;
use std::fmt;

/// A message's INTERNALDATE as served (`17-Jul-1996 02:44:25 -0700`). Two dates are equal when
/// they denote the same instant, whatever time zone each server chose to render it in.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct InternalDate(String);

impl InternalDate {
    /// Accepts the IMAP `date-time` form; the day may be space-padded.
    pub fn parse(raw: &str) -> Option<InternalDate> {
        let trimmed = raw.trim().trim_matches('"').trim();
        DateTime::parse_from_str(trimmed, "%d-%b-%Y %H:%M:%S %z").ok()?;
        Some(InternalDate(trimmed.to_string()))
    }

    /// The form to send in APPEND, quoted.
    pub fn to_imap_quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Seconds since the Unix epoch.
    pub fn epoch(&self) -> i64 {
        DateTime::parse_from_str(&self.0, "%d-%b-%Y %H:%M:%S %z")
            .map(|d| d.timestamp())
            .unwrap_or(0)
    }
}

impl PartialEq for InternalDate {
    fn eq(&self, other: &Self) -> bool {
        self.epoch() == other.epoch()
    }
}
impl Eq for InternalDate {}

impl fmt::Debug for InternalDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for InternalDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_instant_in_two_zones_is_equal() {
        let a = InternalDate::parse("17-Jul-1996 02:44:25 -0700").unwrap();
        let b = InternalDate::parse("\"17-Jul-1996 09:44:25 +0000\"").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_imap_quoted(), "\"17-Jul-1996 02:44:25 -0700\"");
    }

    #[test]
    fn space_padded_day_and_garbage() {
        assert!(InternalDate::parse(" 7-Jul-1996 02:44:25 -0700").is_some());
        assert!(InternalDate::parse("yesterday").is_none());
    }
}
