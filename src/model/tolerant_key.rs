//! The tolerant identity key (DESIGN.md "Identity and fidelity"): what still identifies a
//! message on a side that does not keep its bytes (`normalising` or `rewriting`).
//!
//! Key = SHA-256 over the normalised Message-ID, the Date, From and Subject header values, and
//! the INTERNALDATE instant. Header values are reduced to what every known transform leaves
//! alone: ASCII letters and digits only, and without `X` (Cyrus's `munge8bit` replaces each
//! 8-bit header byte with `X`, so `Jürgen` is stored as `JXXrgen`: dropping 8-bit bytes on one
//! side and `X` on both makes them equal). Whitespace, folding, punctuation and control bytes
//! do not count. Size never counts (it changes with any rewrite).

use sha2::{Digest, Sha256};

use super::message_id::message_id;

/// A message's tolerant key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TolerantKey(pub [u8; 32]);

/// The header section of a message (up to the first empty line, or all of it).
pub fn header_section(bytes: &[u8]) -> &[u8] {
    // The first LF that starts an empty line (LF LF, or CR LF CR LF) ends it.
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &bytes[from..]) {
        let at = from + i;
        if bytes.get(at + 1) == Some(&b'\n') {
            return &bytes[..at];
        }
        if at > 0 && bytes[at - 1] == b'\r' && bytes.get(at + 1..at + 3) == Some(b"\r\n") {
            return &bytes[..at - 1];
        }
        from = at + 1;
    }
    bytes
}

/// The raw value of the first header field `name` (unfolded, lines joined), if present.
fn field<'a>(header: &'a [u8], name: &str) -> Option<Vec<&'a [u8]>> {
    let mut lines = header.split(|&b| b == b'\n');
    let mut value: Option<Vec<&[u8]>> = None;
    for line in lines.by_ref() {
        match &mut value {
            Some(v) if line.first().is_some_and(|&b| b == b' ' || b == b'\t') => v.push(line),
            Some(_) => break,
            None => {
                if let Some(colon) = line.iter().position(|&b| b == b':') {
                    if line[..colon]
                        .trim_ascii()
                        .eq_ignore_ascii_case(name.as_bytes())
                    {
                        value = Some(vec![&line[colon + 1..]]);
                    }
                }
            }
        }
    }
    value
}

/// What of a header value every transform keeps: ASCII letters and digits other than `X`.
fn reduced(parts: Option<Vec<&[u8]>>) -> Vec<u8> {
    parts
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() && *b != b'X')
        .collect()
}

/// The tolerant key of a message as a side serves it, with its INTERNALDATE (unix seconds).
pub fn tolerant_key(bytes: &[u8], internaldate_epoch: i64) -> TolerantKey {
    let header = header_section(bytes);
    let mut h = Sha256::new();
    let id = message_id(header).unwrap_or_default();
    let id: Vec<u8> = id
        .bytes()
        .filter(|b| b.is_ascii_graphic() && *b != b'X')
        .collect();
    for part in [
        id,
        reduced(field(header, "Date")),
        reduced(field(header, "From")),
        reduced(field(header, "Subject")),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(&part);
    }
    h.update(internaldate_epoch.to_be_bytes());
    TolerantKey(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &[u8] = "From: Jürgen <j@example.com>\r\nSubject: Grüße aus Köln\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <a@example.com>\r\n\r\nbody é\r\n".as_bytes();

    fn munged(bytes: &[u8]) -> Vec<u8> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| if i < end && b >= 0x80 { b'X' } else { b })
            .collect()
    }

    #[test]
    fn munged_8bit_headers_keep_the_key() {
        let m = munged(ORIGINAL);
        assert_ne!(m, ORIGINAL);
        assert_eq!(tolerant_key(&m, 5), tolerant_key(ORIGINAL, 5));
    }

    #[test]
    fn refolding_and_trailing_space_keep_the_key() {
        let refolded = "From: Jürgen\r\n <j@example.com>  \r\nSubject: Grüße aus Köln\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <a@example.com>\r\n\r\nbody é re-encoded\r\n".as_bytes();
        assert_eq!(tolerant_key(refolded, 5), tolerant_key(ORIGINAL, 5));
    }

    #[test]
    fn another_message_or_date_is_another_key() {
        let other = String::from_utf8_lossy(ORIGINAL).replace("Köln", "Bonn");
        assert_ne!(tolerant_key(other.as_bytes(), 5), tolerant_key(ORIGINAL, 5));
        let other = String::from_utf8_lossy(ORIGINAL).replace("<a@", "<b@");
        assert_ne!(tolerant_key(other.as_bytes(), 5), tolerant_key(ORIGINAL, 5));
        assert_ne!(tolerant_key(ORIGINAL, 6), tolerant_key(ORIGINAL, 5));
    }

    fn header_section_by_search(bytes: &[u8]) -> &[u8] {
        let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
        let lf = bytes.windows(2).position(|w| w == b"\n\n");
        match (crlf, lf) {
            (Some(a), Some(b)) => &bytes[..a.min(b)],
            (Some(a), None) => &bytes[..a],
            (None, Some(b)) => &bytes[..b],
            (None, None) => bytes,
        }
    }

    proptest::proptest! {
        /// The header section ends where the first empty line starts, as a plain search finds.
        #[test]
        fn header_section_ends_at_the_first_empty_line(text in "[ab:\r\n]{0,40}") {
            let bytes = text.as_bytes();
            proptest::prop_assert_eq!(header_section(bytes), header_section_by_search(bytes));
        }
    }

    #[test]
    fn no_header_at_all_is_still_a_key() {
        assert_eq!(tolerant_key(b"", 0), tolerant_key(b"", 0));
        assert_ne!(tolerant_key(b"", 0), tolerant_key(b"", 1));
    }
}
