//! Modified UTF-7 (RFC 3501 section 5.1.3) for IMAP mailbox names: the
//! test side's own encoder and decoder, independent of the library.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Encodes a UTF-8 mailbox name (one component or a whole path; the
/// hierarchy delimiter is printable ASCII and passes through) to modified
/// UTF-7.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut pending);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut pending);
    out
}

fn flush(out: &mut String, pending: &mut Vec<u16>) {
    if pending.is_empty() {
        return;
    }
    let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1; // 1 byte -> 2 chars, 2 -> 3, 3 -> 4
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out.push('-');
    pending.clear();
}

fn sextet(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// Decodes a modified UTF-7 mailbox name to UTF-8, strictly: rejects
/// non-printable or 8-bit input, bad base64, non-zero padding bits, odd
/// UTF-16 lengths, unpaired surrogates, and encoded printable ASCII.
pub fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if !(0x20..=0x7e).contains(&c) {
            return Err(format!("{s:?}: byte {c:#04x} is not printable ASCII"));
        }
        if c != b'&' {
            out.push(c as char);
            i += 1;
            continue;
        }
        let end = bytes[i + 1..]
            .iter()
            .position(|&b| b == b'-')
            .map(|p| i + 1 + p)
            .ok_or_else(|| format!("{s:?}: unterminated '&' shift"))?;
        let run = &bytes[i + 1..end];
        i = end + 1;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        let mut acc: u32 = 0;
        let mut nbits = 0;
        let mut data: Vec<u8> = Vec::new();
        for &b in run {
            let v = sextet(b).ok_or_else(|| format!("{s:?}: bad base64 char {:?}", b as char))?;
            acc = (acc << 6) | v;
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                data.push((acc >> nbits) as u8);
                acc &= (1 << nbits) - 1;
            }
        }
        if nbits >= 6 || acc != 0 {
            return Err(format!("{s:?}: bad base64 padding"));
        }
        if !data.len().is_multiple_of(2) {
            return Err(format!("{s:?}: odd number of UTF-16 bytes"));
        }
        let units: Vec<u16> = data
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        let decoded = String::from_utf16(&units).map_err(|e| format!("{s:?}: bad UTF-16: {e}"))?;
        if decoded.chars().any(|c| (' '..='~').contains(&c)) {
            return Err(format!("{s:?}: printable ASCII must not be base64-encoded"));
        }
        out.push_str(&decoded);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/台北/日本語"
        );
    }

    #[test]
    fn french_accents() {
        assert_eq!(encode("Données/Été"), "Donn&AOk-es/&AMk-t&AOk-");
        assert_eq!(decode("Donn&AOk-es/&AMk-t&AOk-").unwrap(), "Données/Été");
    }

    #[test]
    fn ampersand() {
        assert_eq!(encode("&"), "&-");
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(decode("&-").unwrap(), "&");
        assert_eq!(decode("Tom &- Jerry").unwrap(), "Tom & Jerry");
    }

    #[test]
    fn astral_plane_uses_surrogate_pairs() {
        let s = "mail 📬 box";
        let e = encode(s);
        assert_eq!(e, "mail &2D3c7A- box");
        assert_eq!(decode(&e).unwrap(), s);
    }

    #[test]
    fn rejects_malformed() {
        assert!(decode("&U,BTFw").is_err(), "unterminated");
        assert!(decode("&AGE-").is_err(), "encoded printable ASCII 'a'");
        assert!(decode("&U-").is_err(), "too short");
        assert!(decode("caf\u{e9}").is_err(), "8-bit input");
        assert!(decode("&2D0-").is_err(), "lone surrogate");
    }
}
