//! INTERNALDATE: kept as the server rendered it (for APPEND), compared as an instant.

use chrono::DateTime;
use std::fmt;
use std::sync::Arc;

/// A message's INTERNALDATE as served (`17-Jul-1996 02:44:25 -0700`). Two dates are equal when
/// they denote the same instant, whatever time zone each server chose to render it in.
///
/// The instant is computed once, when the date is read (from a server or the state): dates are
/// compared for every message of every listing.
///
/// The text is shared (`Arc<str>`): listings copy dates for every message of a folder.
#[derive(Clone)]
pub struct InternalDate(Arc<str>, i64);

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
        Ok(InternalDate(raw.into(), epoch))
    }
}

fn instant(raw: &str) -> Option<i64> {
    fast_instant(raw).or_else(|| {
        DateTime::parse_from_str(raw, "%d-%b-%Y %H:%M:%S %z")
            .ok()
            .map(|d| d.timestamp())
    })
}

/// The common exact form `DD-Mon-YYYY HH:MM:SS +ZZZZ` (day one or two digits) read without
/// chrono's format machinery: every instance read from the state parses its date, so this is
/// on the path of every pass. Anything else goes to chrono.
fn fast_instant(raw: &str) -> Option<i64> {
    let b = raw.as_bytes();
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let dash = b.iter().position(|&c| c == b'-')?;
    if !(1..=2).contains(&dash) {
        return None;
    }
    let day = digits(&b[..dash])?;
    let rest = &b[dash + 1..];
    // "Jul-1996 02:44:25 -0700"
    if rest.len() != 23 || rest[3] != b'-' || rest[8] != b' ' || rest[17] != b' ' {
        return None;
    }
    let month = match &rest[..3] {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    };
    let year = digits(&rest[4..8])?;
    if rest[11] != b':' || rest[14] != b':' {
        return None;
    }
    let (hour, min, sec) = (
        digits(&rest[9..11])?,
        digits(&rest[12..14])?,
        digits(&rest[15..17])?,
    );
    let sign = match rest[18] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (zh, zm) = (digits(&rest[19..21])?, digits(&rest[21..23])?);
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let max_day = month_days[month as usize - 1] + i64::from(leap && month == 2);
    if day < 1 || day > max_day || hour > 23 || min > 59 || sec > 59 || zh > 23 || zm > 59 {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let offset = sign * (zh * 3600 + zm * 60);
    Some(days * 86_400 + hour * 3600 + min * 60 + sec - offset)
}

impl InternalDate {
    /// Accepts the IMAP `date-time` form; the day may be space-padded.
    pub fn parse(raw: &str) -> Option<InternalDate> {
        let trimmed = raw.trim().trim_matches('"').trim();
        let epoch = instant(trimmed)?;
        Some(InternalDate(trimmed.into(), epoch))
    }

    /// A date as the state stored it: its text and the instant read from it then.
    pub fn from_stored(raw: &str, epoch: i64) -> InternalDate {
        InternalDate(raw.into(), epoch)
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
    use proptest::prelude::*;

    fn chrono_instant(raw: &str) -> Option<i64> {
        DateTime::parse_from_str(raw, "%d-%b-%Y %H:%M:%S %z")
            .ok()
            .map(|d| d.timestamp())
    }

    proptest! {
        /// The fast reader agrees with chrono on every date it accepts, and accepts the
        /// common form.
        #[test]
        fn fast_instant_agrees_with_chrono(
            day in 0u32..33, month in 0usize..13, year in 1900u32..2200,
            h in 0u32..25, m in 0u32..61, sec in 0u32..61,
            west in any::<bool>(), zh in 0u32..25, zm in 0u32..61, pad in any::<bool>(),
        ) {
            let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                "Nov", "Dec", "Foo"];
            let d = if pad { format!("{day:02}") } else { day.to_string() };
            let raw = format!(
                "{d}-{}-{year} {h:02}:{m:02}:{sec:02} {}{zh:02}{zm:02}",
                months[month],
                if west { '-' } else { '+' }
            );
            if let Some(fast) = fast_instant(&raw) {
                prop_assert_eq!(Some(fast), chrono_instant(&raw), "{}", raw);
            } else if sec < 60 {
                prop_assert_eq!(None, chrono_instant(&raw), "{}", raw);
            }
        }
    }

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
