//! Message identity: SHA-256 of the bytes as served, after normalising bare LF to CRLF.

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;

/// SHA-256 of a message's CRLF-normalised bytes. Two messages with the same fingerprint are the
/// same content; copies in one folder are told apart by their ordinal, not by this value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

/// Stored as 64 hex digits: a JSON array of 32 numbers (what the derive wrote, and what older
/// state files hold, still read) made decoding the state the largest cost of a small pass.
impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Fingerprint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SHA-256 as 64 hex digits or 32 numbers")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Fingerprint, E> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(v, &mut out).map_err(E::custom)?;
                Ok(Fingerprint(out))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Fingerprint, A::Error> {
                let mut out = [0u8; 32];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Fingerprint(out))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Fingerprint {
    /// Fingerprint of bytes that are already normalised (see [`normalize_line_endings`]).
    pub fn of_normalized(bytes: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(bytes).into())
    }

    /// Fingerprint of raw bytes as a server served them.
    pub fn of(bytes: &[u8]) -> Fingerprint {
        Fingerprint::of_normalized(&normalize_line_endings(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Fingerprint> {
        let v = hex::decode(s).ok()?;
        Some(Fingerprint(v.try_into().ok()?))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex()[..16])
    }
}

/// The one normalisation applied before hashing and before APPEND: an LF not preceded by CR
/// becomes CRLF. Nothing else changes. Borrows when the input is already normalised (the
/// common case), so large messages are not copied.
pub fn normalize_line_endings(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !has_bare_lf(bytes) {
        return Cow::Borrowed(bytes);
    }
    let bare = |i: usize| i == 0 || bytes[i - 1] != b'\r';
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut from = 0;
    for i in memchr::memchr_iter(b'\n', bytes) {
        if bare(i) {
            out.extend_from_slice(&bytes[from..i]);
            out.push(b'\r');
            from = i;
        }
    }
    out.extend_from_slice(&bytes[from..]);
    Cow::Owned(out)
}

/// Whether an LF in `bytes` is not preceded by CR. Every message is checked (most have none),
/// so this compares each byte with the one before it in fixed blocks without a branch per
/// byte, which the compiler turns into vector instructions: several times faster than
/// visiting each LF (a message has one every 80 bytes or so).
fn has_bare_lf(bytes: &[u8]) -> bool {
    const BLOCK: usize = 64;
    if bytes.first() == Some(&b'\n') {
        return true;
    }
    let (before, at) = (bytes, bytes.get(1..).unwrap_or_default());
    before
        .chunks(BLOCK)
        .zip(at.chunks(BLOCK))
        .any(|(before, at)| {
            before
                .iter()
                .zip(at)
                .fold(false, |bare, (b, a)| bare | ((*a == b'\n') & (*b != b'\r')))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stored_as_hex_and_read_from_hex_or_the_old_number_array() {
        let fp = Fingerprint::of(b"hello");
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(json, format!("\"{}\"", hex::encode(fp.0)));
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), fp);
        let old = serde_json::to_string(&fp.0.to_vec()).unwrap();
        assert_eq!(serde_json::from_str::<Fingerprint>(&old).unwrap(), fp);
        assert!(serde_json::from_str::<Fingerprint>("\"zz\"").is_err());
        assert!(serde_json::from_str::<Fingerprint>("[1,2]").is_err());
    }

    #[test]
    fn bare_lf_becomes_crlf_and_crlf_is_kept() {
        assert_eq!(&*normalize_line_endings(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(&*normalize_line_endings(b"\n"), b"\r\n");
        assert_eq!(&*normalize_line_endings(b"a\r\rb"), b"a\r\rb");
        assert!(matches!(
            normalize_line_endings(b"a\r\nb"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn hex_round_trips() {
        let f = Fingerprint::of(b"hello");
        assert_eq!(Fingerprint::from_hex(&f.to_hex()), Some(f));
        assert_eq!(Fingerprint::from_hex("zz"), None);
    }

    proptest! {
        #[test]
        fn lf_and_crlf_forms_have_the_same_fingerprint(lines in proptest::collection::vec("[ -~]{0,20}", 0..10)) {
            let lf = lines.join("\n");
            let crlf = lines.join("\r\n");
            prop_assert_eq!(Fingerprint::of(lf.as_bytes()), Fingerprint::of(crlf.as_bytes()));
        }

        #[test]
        fn bare_lf_found_as_a_byte_by_byte_scan_finds_it(bytes in proptest::collection::vec(
            proptest::sample::select(vec![b'a', b'\r', b'\n', b'\r', b'a']), 0..300)) {
            let naive = (0..bytes.len()).any(|i| bytes[i] == b'\n' && (i == 0 || bytes[i - 1] != b'\r'));
            prop_assert_eq!(has_bare_lf(&bytes), naive);
        }

        #[test]
        fn one_bare_lf_anywhere_in_crlf_text_is_found(
            lines in proptest::collection::vec("[a-z]{0,90}", 1..12),
            at in any::<proptest::sample::Index>(),
        ) {
            let mut text = lines.join("\r\n").into_bytes();
            prop_assert!(!has_bare_lf(&text));
            // A bare LF put before any byte that is not after a CR.
            let starts: Vec<usize> = (0..=text.len())
                .filter(|&i| i == 0 || text[i - 1] != b'\r')
                .collect();
            text.insert(starts[at.index(starts.len())], b'\n');
            prop_assert!(has_bare_lf(&text));
        }

        #[test]
        fn normalisation_is_idempotent(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let once = normalize_line_endings(&bytes).into_owned();
            let twice = normalize_line_endings(&once).into_owned();
            prop_assert_eq!(once, twice);
        }
    }
}
