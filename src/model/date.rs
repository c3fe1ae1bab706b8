//! INTERNALDATE: kept as the server rendered it (for APPEND), compared as an instant.

use chrono::DateTime;
use std::fmt;

/// A message's INTERNALDATE as served (`17-Jul-1996 02:44:25 -0700`). Two dates are equal when
/// they denote the same instant, whatever time zone each server chose to render it in.
///
/// The instant is computed once, when the date is read (from a server or the state): dates are
/// compared for every message of every listing.
#[derive(Clone)]
pub struct InternalDate(String, i64);

impl serde::Serialize for InternalDate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for InternalDate {
    /// A stored date that no longer parses keeps its text, at instant 0 (as before).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let epoch = instant(&raw).unwrap_or(0);
        Ok(InternalDate(raw, epoch))
    }
}

fn instant(raw: &str) -> Option<i64> {
    DateTime::parse_from_str(raw, "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.timestamp())
}

impl InternalDate {
    /// Accepts the IMAP `date-time` form; the day may be space-padded.
    pub fn parse(raw: &str) -> Option<InternalDate> {
        let trimmed = raw.trim().trim_matches('"').trim();
        let epoch = instant(trimmed)?;
        Some(InternalDate(trimmed.to_string(), epoch))
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
        self.1
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
    fn stored_as_the_server_rendered_it() {
        let a = InternalDate::parse("17-Jul-1996 02:44:25 -0700").unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"17-Jul-1996 02:44:25 -0700\"");
        let back: InternalDate = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_str(), a.as_str());
        assert_eq!(back.epoch(), a.epoch());
        assert_eq!(a.epoch(), 837_596_665);
    }

    #[test]
    fn space_padded_day_and_garbage() {
        assert!(InternalDate::parse(" 7-Jul-1996 02:44:25 -0700").is_some());
        assert!(InternalDate::parse("yesterday").is_none());
    }
}
