//! The stored form of an instance record: compact binary (schema version 2), and the JSON of
//! version 1 still read.
//!
//! Every pass reads every instance of the folders it works on, and the target's content index
//! reads them all: decoding JSON (64 hex digits of fingerprint, a date parsed again) was a
//! third of a small pass's CPU. The binary form stores the fingerprint's 32 bytes and the date's
//! instant beside its text, so reading a record parses nothing.
//!
//! Layout (little-endian): `0x02`, presence bits (1: fingerprint, 2: target UID), the
//! fingerprint (32 bytes, when present), ordinal u32, target UID u32 (when present), size u32,
//! instant i64, date text (u16 length + bytes), flag count u16, each flag (u16 length + bytes).
//! A JSON record starts with `{`, never `0x02`.

use std::collections::HashMap;

use super::schema::InstanceRecord;
use crate::model::{Fingerprint, FlagSet, InternalDate};

const BINARY: u8 = 0x02;
const HAS_FINGERPRINT: u8 = 1;
const HAS_TARGET_UID: u8 = 2;

/// The stored bytes of a record.
pub fn encode(rec: &InstanceRecord) -> Vec<u8> {
    let date = rec.internaldate.as_str().as_bytes();
    let mut out = Vec::with_capacity(64 + date.len() + 16 * rec.flags.iter().count());
    out.push(BINARY);
    let mut bits = 0;
    if rec.fingerprint.is_some() {
        bits |= HAS_FINGERPRINT;
    }
    if rec.target_uid.is_some() {
        bits |= HAS_TARGET_UID;
    }
    out.push(bits);
    if let Some(fp) = &rec.fingerprint {
        out.extend_from_slice(&fp.0);
    }
    out.extend_from_slice(&rec.ordinal.to_le_bytes());
    if let Some(uid) = rec.target_uid {
        out.extend_from_slice(&uid.to_le_bytes());
    }
    out.extend_from_slice(&rec.size.to_le_bytes());
    out.extend_from_slice(&rec.internaldate.epoch().to_le_bytes());
    put_text(&mut out, date);
    let flags: Vec<&str> = rec.flags.iter().map(|f| f.as_str()).collect();
    out.extend_from_slice(&(flags.len().min(u16::MAX as usize) as u16).to_le_bytes());
    for f in flags.into_iter().take(u16::MAX as usize) {
        put_text(&mut out, f.as_bytes());
    }
    out
}

fn put_text(out: &mut Vec<u8>, text: &[u8]) {
    let text = &text[..text.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text);
}

/// Reads a record in either form; the error says what is wrong with it.
pub fn decode(bytes: &[u8]) -> Result<InstanceRecord, String> {
    Decoder::default().decode(bytes)
}

/// Reads many records: those with the same flags share one [`FlagSet`] (a folder of thousands
/// of messages has a handful of distinct flag sets), so reading a folder allocates no flags.
#[derive(Default)]
pub struct Decoder {
    sets: HashMap<Box<[u8]>, FlagSet>,
}

impl Decoder {
    pub fn decode(&mut self, bytes: &[u8]) -> Result<InstanceRecord, String> {
        if bytes.first() != Some(&BINARY) {
            return serde_json::from_slice(bytes).map_err(|e| e.to_string());
        }
        let mut r = Reader { bytes, at: 1 };
        let bits = r.take::<1>()?[0];
        let fingerprint = if bits & HAS_FINGERPRINT != 0 {
            Some(Fingerprint(r.take::<32>()?))
        } else {
            None
        };
        let ordinal = u32::from_le_bytes(r.take()?);
        let target_uid = if bits & HAS_TARGET_UID != 0 {
            Some(u32::from_le_bytes(r.take()?))
        } else {
            None
        };
        let size = u32::from_le_bytes(r.take()?);
        let epoch = i64::from_le_bytes(r.take()?);
        let date = r.text()?;
        let encoded_flags = &bytes[r.at.min(bytes.len())..];
        let flags = match self.sets.get(encoded_flags) {
            Some(set) => set.clone(),
            None => {
                let count = u16::from_le_bytes(r.take()?);
                let mut flags = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    flags.push(r.text()?);
                }
                if r.at != bytes.len() {
                    return Err(format!("{} bytes after the record", bytes.len() - r.at));
                }
                let set = FlagSet::from_stored(flags);
                // Bounded: a folder with more distinct sets than this just allocates.
                if self.sets.len() < 4096 {
                    self.sets.insert(encoded_flags.into(), set.clone());
                }
                set
            }
        };
        Ok(InstanceRecord {
            fingerprint,
            ordinal,
            target_uid,
            flags,
            internaldate: InternalDate::from_stored(date, epoch),
            size,
        })
    }
}

/// What the target's content index needs of a record, read without allocating: fingerprint,
/// target UID and INTERNALDATE instant; `None` for a record without both of the first two.
pub fn decode_placed(bytes: &[u8]) -> Result<Option<(Fingerprint, u32, i64)>, String> {
    if bytes.first() != Some(&BINARY) {
        let rec = decode(bytes)?;
        return Ok(match (rec.fingerprint, rec.target_uid) {
            (Some(fp), Some(uid)) => Some((fp, uid, rec.internaldate.epoch())),
            _ => None,
        });
    }
    let mut r = Reader { bytes, at: 1 };
    let bits = r.take::<1>()?[0];
    if bits & HAS_FINGERPRINT == 0 || bits & HAS_TARGET_UID == 0 {
        return Ok(None);
    }
    let fp = Fingerprint(r.take::<32>()?);
    let _ordinal = r.take::<4>()?;
    let uid = u32::from_le_bytes(r.take()?);
    let _size = r.take::<4>()?;
    let epoch = i64::from_le_bytes(r.take()?);
    Ok(Some((fp, uid, epoch)))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.at + N;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| format!("record cut short at byte {}", self.at))?;
        self.at = end;
        // The slice has exactly N bytes.
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn text(&mut self) -> Result<&'a str, String> {
        let len = u16::from_le_bytes(self.take()?) as usize;
        let end = self.at + len;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| format!("record cut short at byte {}", self.at))?;
        self.at = end;
        std::str::from_utf8(slice).map_err(|e| format!("text is not UTF-8: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(
        fp: Option<[u8; 32]>,
        target_uid: Option<u32>,
        flags: Vec<String>,
        date: &str,
    ) -> InstanceRecord {
        InstanceRecord {
            fingerprint: fp.map(Fingerprint),
            ordinal: 3,
            target_uid,
            flags: FlagSet::from_raw(flags.iter().map(String::as_str)),
            internaldate: InternalDate::parse(date)
                .unwrap_or_else(|| InternalDate::from_stored(date, 0)),
            size: 12345,
        }
    }

    proptest! {
        /// Every record reads back as written, in both forms.
        #[test]
        fn round_trips(
            fp in proptest::option::of(any::<[u8; 32]>()),
            target_uid in proptest::option::of(any::<u32>()),
            flags in proptest::collection::vec("\\\\Seen|\\\\Flagged|\\$[A-Za-z]{1,20}|[a-z]{1,60}", 0..6),
            date in "(0[1-9]|1[0-9])-(Jan|Feb|Dec)-(19[0-9]{2}|20[0-9]{2}) 1[0-9]:[0-5][0-9]:[0-5][0-9] [+-][01][0-9]00|garbage",
        ) {
            let rec = record(fp, target_uid, flags, &date);
            let back = decode(&encode(&rec)).unwrap();
            let placed = decode_placed(&encode(&rec)).unwrap();
            let want = match (rec.fingerprint, rec.target_uid) {
                (Some(fp), Some(uid)) => Some((fp, uid, rec.internaldate.epoch())),
                _ => None,
            };
            prop_assert_eq!(placed, want);
            prop_assert_eq!(&back, &rec);
            prop_assert_eq!(back.internaldate.epoch(), rec.internaldate.epoch());
            let json = serde_json::to_vec(&rec).unwrap();
            prop_assert_eq!(decode(&json).unwrap(), rec);
        }
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let rec = record(
            Some([7; 32]),
            Some(9),
            vec!["\\Seen".into()],
            "01-Jan-2024 10:00:00 +0000",
        );
        let bytes = encode(&rec);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn one_decoder_shares_flags_and_still_checks_every_record() {
        let seen = |uid| {
            record(
                Some([uid as u8; 32]),
                Some(uid),
                vec!["\\Seen".into(), "$Work".into()],
                "01-Jan-2024 10:00:00 +0000",
            )
        };
        let mut decoder = Decoder::default();
        let (a, b) = (seen(1), seen(2));
        assert_eq!(decoder.decode(&encode(&a)).unwrap(), a);
        assert_eq!(decoder.decode(&encode(&b)).unwrap(), b);
        // A damaged record with flags already seen is still an error.
        let bytes = encode(&b);
        for cut in 0..bytes.len() {
            assert!(decoder.decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decoder.decode(&longer).is_err());
        let other = record(None, None, vec![], "garbage");
        assert_eq!(decoder.decode(&encode(&other)).unwrap(), other);
    }
}
