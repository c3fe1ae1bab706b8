//! A second name for a content: the SHA-1 of its CRLF-normalised bytes, the name Cyrus gives a
//! message's blob over JMAP (`G` + 40 hex digits), kept so that a Cyrus side is matched to the
//! state without reading bodies.

use sha1::{Digest, Sha1};

/// SHA-1 of a message's CRLF-normalised bytes (never an identity on its own: the state maps
/// a [`super::Fingerprint`] to it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ContentSha1(pub [u8; 20]);

impl ContentSha1 {
    /// Of bytes that are already normalised (the bytes sent to a target).
    pub fn of_normalized(bytes: &[u8]) -> ContentSha1 {
        ContentSha1(Sha1::digest(bytes).into())
    }

    /// Read from a Cyrus blobId: `G` and 40 hex digits. `None` for any other form.
    pub fn from_cyrus_blob_id(blob_id: &str) -> Option<ContentSha1> {
        let hex_digits = blob_id.strip_prefix('G')?;
        if hex_digits.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        hex::decode_to_slice(hex_digits, &mut out).ok()?;
        Some(ContentSha1(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cyrus_blob_id_is_g_and_the_sha1_of_the_bytes() {
        let bytes = b"Subject: x\r\n\r\nbody\r\n";
        let sha = ContentSha1::of_normalized(bytes);
        let blob = format!("G{}", hex::encode(sha.0));
        assert_eq!(ContentSha1::from_cyrus_blob_id(&blob), Some(sha));
        let upper = format!("G{}", hex::encode_upper(sha.0));
        assert_eq!(ContentSha1::from_cyrus_blob_id(&upper), Some(sha));
        for other in ["", "G", "Gzz", &blob[1..], &format!("{blob}0"), "Mabc"] {
            assert_eq!(ContentSha1::from_cyrus_blob_id(other), None, "{other}");
        }
    }
}
