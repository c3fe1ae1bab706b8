//! The fidelity probe's message and its verdict: how faithfully a side keeps the bytes it is given.
//!
//! DESIGN.md "Identity and fidelity": a writable side is given one small message with an 8-bit
//! header, a line of 998 characters, an unfolded long header and a multipart/alternative body
//! with a base64 part; what the side serves back is compared with what was sent:
//!
//! - `exact`: the same bytes, and RFC822.SIZE equal to their length.
//! - `normalising`: the differences are all known transforms ([`Transform`]): 8-bit header bytes
//!   replaced (Cyrus `munge8bit`), trailing whitespace removed, headers folded or unfolded. The
//!   size the side reports matches what it serves.
//! - `rewriting`: anything else (a re-rendered message), or a reported size that is not the size
//!   of what the side serves (an estimate, as Exchange gives).
//!
//! No I/O here: the engine (`engine::probe`) appends, fetches and cleans up.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How faithfully a side keeps message bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FidelityClass {
    Exact,
    Normalising,
    Rewriting,
}

impl fmt::Display for FidelityClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FidelityClass::Exact => "exact",
            FidelityClass::Normalising => "normalising",
            FidelityClass::Rewriting => "rewriting",
        })
    }
}

/// A known, harmless change a server makes to stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Transform {
    /// 8-bit bytes in the header section replaced by this ASCII byte (Cyrus `munge8bit`: `X`).
    EightBitHeaderReplaced { replacement: char },
    /// Spaces or tabs at line ends removed.
    TrailingWhitespace,
    /// Header lines folded or unfolded differently (whitespace between words kept).
    HeaderFolding,
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transform::EightBitHeaderReplaced { replacement } => {
                write!(f, "8-bit header bytes replaced with {replacement:?}")
            }
            Transform::TrailingWhitespace => f.write_str("trailing whitespace removed"),
            Transform::HeaderFolding => f.write_str("header lines refolded"),
        }
    }
}

/// What comparing the sent probe with what the side served found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub class: FidelityClass,
    /// The transforms seen (normalising sides only).
    pub transforms: Vec<Transform>,
    /// One sentence a user can read: what matched, or the first difference.
    pub detail: String,
}

/// The probe's Message-ID for a nonce: `<mailreplica-probe-NONCE@localhost>`.
pub fn probe_message_id(nonce: &str) -> String {
    format!("<mailreplica-probe-{nonce}@localhost>")
}

const BOUNDARY: &str = "mailreplica-probe-boundary";

/// The probe message, CRLF line ends throughout. `nonce` makes its Message-ID unique; it
/// should be ASCII letters, digits and `-`.
pub fn probe_message(nonce: &str) -> Vec<u8> {
    let long_line: String = "0123456789".repeat(100).chars().take(998).collect();
    let long_header: String = (1..=30)
        .map(|n| format!("word{n:02}"))
        .collect::<Vec<_>>()
        .join(" ");
    let html =
        "<html><body><p>mailreplica fidelity probe: Gr\u{fc}\u{df}e \u{2603}</p></body></html>";
    let html_b64 = base64_lines(html.as_bytes());
    let mut m = String::new();
    let mut line = |s: &str| {
        m.push_str(s);
        m.push_str("\r\n");
    };
    line(&format!("Message-ID: {}", probe_message_id(nonce)));
    line("Date: Mon, 01 Jan 2024 00:00:00 +0000");
    line("From: mailreplica probe <probe@localhost>");
    line("To: probe@localhost");
    line("Subject: mailreplica probe Gr\u{fc}\u{df}e \u{2603} (8-bit header)");
    line(&format!("X-Mailreplica-Long: {long_header}"));
    line("X-Mailreplica-Probe: tests whether this server keeps bytes; removed at once");
    line("MIME-Version: 1.0");
    line(&format!(
        "Content-Type: multipart/alternative; boundary=\"{BOUNDARY}\""
    ));
    line("");
    line("This is a multi-part message in MIME format.");
    line("");
    line(&format!("--{BOUNDARY}"));
    line("Content-Type: text/plain; charset=utf-8");
    line("Content-Transfer-Encoding: 8bit");
    line("");
    line("mailreplica fidelity probe: Gr\u{fc}\u{df}e \u{2603}");
    line(&long_line);
    line("");
    line(&format!("--{BOUNDARY}"));
    line("Content-Type: text/html; charset=utf-8");
    line("Content-Transfer-Encoding: base64");
    line("");
    for l in html_b64 {
        line(&l);
    }
    line("");
    line(&format!("--{BOUNDARY}--"));
    m.into_bytes()
}

fn base64_lines(bytes: &[u8]) -> Vec<String> {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    text.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// Compares the bytes sent with the bytes served and the RFC822.SIZE the side reported.
pub fn classify(sent: &[u8], served: &[u8], reported_size: u64) -> Verdict {
    let served_len = served.len() as u64;
    if reported_size != served_len {
        return Verdict {
            class: FidelityClass::Rewriting,
            transforms: Vec::new(),
            detail: format!(
                "RFC822.SIZE {reported_size} is not the size of the {served_len} bytes served (an estimate); {}",
                if sent == served {
                    "the bytes themselves came back unchanged".to_string()
                } else {
                    first_difference(sent, served)
                }
            ),
        };
    }
    if sent == served {
        return Verdict {
            class: FidelityClass::Exact,
            transforms: Vec::new(),
            detail: format!("bytes and RFC822.SIZE round-trip ({served_len} bytes)"),
        };
    }
    // The smallest set of known transforms that explains every difference.
    const SETS: [(bool, bool, bool); 7] = [
        (true, false, false),
        (false, true, false),
        (false, false, true),
        (true, true, false),
        (true, false, true),
        (false, true, true),
        (true, true, true),
    ];
    for (munge, trailing, folding) in SETS {
        if let Some(replacement) = equal_under(sent, served, munge, trailing, folding) {
            let mut transforms = Vec::new();
            if munge {
                transforms.push(Transform::EightBitHeaderReplaced {
                    replacement: replacement.unwrap_or('?'),
                });
            }
            if trailing {
                transforms.push(Transform::TrailingWhitespace);
            }
            if folding {
                transforms.push(Transform::HeaderFolding);
            }
            let list: Vec<String> = transforms.iter().map(ToString::to_string).collect();
            return Verdict {
                class: FidelityClass::Normalising,
                detail: format!(
                    "{} ({} bytes sent, {served_len} stored); everything else round-trips",
                    list.join(", "),
                    sent.len()
                ),
                transforms,
            };
        }
    }
    Verdict {
        class: FidelityClass::Rewriting,
        transforms: Vec::new(),
        detail: format!(
            "the message was re-rendered: {}",
            first_difference(sent, served)
        ),
    }
}

/// Whether the two messages are equal once the chosen transforms are undone. `Some(r)` when
/// they are, with the replacement byte seen for 8-bit header bytes (if any were replaced).
fn equal_under(
    sent: &[u8],
    served: &[u8],
    munge: bool,
    trailing: bool,
    folding: bool,
) -> Option<Option<char>> {
    let (sent_head, sent_body) = split_header(sent);
    let (served_head, served_body) = split_header(served);
    let prepare_head = |h: &[u8]| {
        let mut h = h.to_vec();
        if folding {
            h = unfold(&h);
        }
        if trailing {
            h = strip_trailing(&h);
        }
        h
    };
    let prepare_body = |b: &[u8]| {
        if trailing {
            strip_trailing(b)
        } else {
            b.to_vec()
        }
    };
    if prepare_body(sent_body) != prepare_body(served_body) {
        return None;
    }
    let (a, b) = (prepare_head(sent_head), prepare_head(served_head));
    if munge {
        let replacement = match_munged(&a, &b)?;
        // A munge that changed nothing is not a munge.
        replacement.map(Some)
    } else if a == b {
        Some(None)
    } else {
        None
    }
}

/// Splits at the first empty line: (header section with its final CRLF, the rest).
fn split_header(m: &[u8]) -> (&[u8], &[u8]) {
    match m.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&m[..i + 2], &m[i + 2..]),
        None => (m, &[]),
    }
}

/// Joins folded header lines and collapses runs of spaces and tabs into one space.
fn unfold(h: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(h.len());
    let mut i = 0;
    while i < h.len() {
        if h[i..].starts_with(b"\r\n") && matches!(h.get(i + 2), Some(b' ' | b'\t')) {
            i += 2;
            continue;
        }
        if matches!(h[i], b' ' | b'\t') {
            if out.last() != Some(&b' ') {
                out.push(b' ');
            }
        } else {
            out.push(h[i]);
        }
        i += 1;
    }
    out
}

/// Removes spaces and tabs before each CRLF (and at the very end).
fn strip_trailing(b: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"\r\n") {
            while matches!(out.last(), Some(b' ' | b'\t')) {
                out.pop();
            }
        }
        out.push(b[i]);
        i += 1;
    }
    while matches!(out.last(), Some(b' ' | b'\t')) {
        out.pop();
    }
    out
}

/// Matches a header section whose 8-bit runs were replaced by one ASCII byte repeated once per
/// byte, once per UTF-8 character, or once for the whole run. Returns `Some(Some(byte))` when
/// the headers match that way with at least one replacement, `Some(None)` when no replacement
/// was needed, `None` when they do not match.
fn match_munged(sent: &[u8], served: &[u8]) -> Option<Option<char>> {
    let mut replacement: Option<u8> = None;
    let (mut i, mut j) = (0, 0);
    while i < sent.len() {
        if sent[i] < 0x80 {
            if served.get(j) != Some(&sent[i]) {
                return None;
            }
            i += 1;
            j += 1;
            continue;
        }
        let start = i;
        while i < sent.len() && sent[i] >= 0x80 {
            i += 1;
        }
        let run = &sent[start..i];
        let bytes = run.len();
        let chars = run.iter().filter(|b| (**b & 0xC0) != 0x80).count().max(1);
        let r = *served.get(j)?;
        if r >= 0x80 || r == b'\r' || r == b'\n' || replacement.is_some_and(|x| x != r) {
            return None;
        }
        replacement = Some(r);
        let same = served[j..].iter().take_while(|b| **b == r).count();
        // The byte after the run in `sent` may itself be the replacement byte: take only as
        // many as one of the accepted counts, preferring the longest.
        let next_is_r = sent.get(i) == Some(&r);
        let mut taken = None;
        for n in [bytes, chars, 1] {
            if n <= same && (next_is_r || n == same) {
                taken = Some(n);
                break;
            }
        }
        j += taken?;
    }
    if j != served.len() {
        return None;
    }
    Some(replacement.map(char::from))
}

/// Where two messages first differ, as a short sentence with a little context.
fn first_difference(sent: &[u8], served: &[u8]) -> String {
    let at = sent
        .iter()
        .zip(served)
        .position(|(a, b)| a != b)
        .unwrap_or(sent.len().min(served.len()));
    let line = sent[..at].iter().filter(|b| **b == b'\n').count() + 1;
    let show = |b: &[u8]| {
        let end = (at + 24).min(b.len());
        let from = at.min(end);
        format!("{:?}", String::from_utf8_lossy(&b[from..end]))
    };
    format!(
        "{} bytes sent, {} served; first difference at byte {at} (line {line}): sent {}, served {}",
        sent.len(),
        served.len(),
        show(sent),
        show(served)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Vec<u8> {
        probe_message("t1")
    }

    fn size(b: &[u8]) -> u64 {
        b.len() as u64
    }

    #[test]
    fn the_probe_has_what_it_tests() {
        let p = probe();
        let text = String::from_utf8(p.clone()).unwrap();
        assert!(text.contains("Message-ID: <mailreplica-probe-t1@localhost>\r\n"));
        assert!(p.iter().any(|b| *b >= 0x80), "8-bit bytes");
        let (head, _) = split_header(&p);
        assert!(head.iter().any(|b| *b >= 0x80), "8-bit header");
        assert!(
            text.split("\r\n").any(|l| l.len() == 998),
            "a 998-char line"
        );
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("Content-Transfer-Encoding: base64"));
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
        assert!(text.ends_with("--mailreplica-probe-boundary--\r\n"));
    }

    #[test]
    fn identical_bytes_and_size_are_exact() {
        let p = probe();
        let v = classify(&p, &p, size(&p));
        assert_eq!(v.class, FidelityClass::Exact, "{v:?}");
        assert!(v.transforms.is_empty());
    }

    /// Cyrus with its default `munge8bit: yes` stores each 8-bit header byte as `X`.
    fn munged(p: &[u8], r: u8, per: &str) -> Vec<u8> {
        let (head, body) = split_header(p);
        let mut out = Vec::new();
        let mut i = 0;
        while i < head.len() {
            if head[i] < 0x80 {
                out.push(head[i]);
                i += 1;
                continue;
            }
            let start = i;
            while i < head.len() && head[i] >= 0x80 {
                i += 1;
            }
            let run = &head[start..i];
            let n = match per {
                "byte" => run.len(),
                "char" => std::str::from_utf8(run).unwrap().chars().count(),
                _ => 1,
            };
            out.extend(std::iter::repeat_n(r, n));
        }
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn munged_8bit_header_is_normalising() {
        let p = probe();
        for (r, per) in [(b'X', "byte"), (b'?', "char"), (b'?', "run")] {
            let served = munged(&p, r, per);
            let v = classify(&p, &served, size(&served));
            assert_eq!(v.class, FidelityClass::Normalising, "{per}: {v:?}");
            assert_eq!(
                v.transforms,
                vec![Transform::EightBitHeaderReplaced {
                    replacement: char::from(r)
                }]
            );
            assert!(
                v.detail.contains("8-bit header bytes replaced"),
                "{}",
                v.detail
            );
        }
    }

    #[test]
    fn munged_body_bytes_are_rewriting() {
        // Only header bytes may be munged; the 8-bit body part must come back unchanged.
        let p = probe();
        let text = String::from_utf8(p.clone()).unwrap();
        let served = text
            .replacen("probe: Gr\u{fc}\u{df}e", "probe: GrXXXXe", 2)
            .into_bytes();
        let v = classify(&p, &served, size(&served));
        assert_eq!(v.class, FidelityClass::Rewriting, "{v:?}");
    }

    #[test]
    fn refolded_header_is_normalising() {
        let p = probe();
        let text = String::from_utf8(p.clone()).unwrap();
        let served = text
            .replacen("word10 word11", "word10\r\n\tword11", 1)
            .into_bytes();
        let v = classify(&p, &served, size(&served));
        assert_eq!(v.class, FidelityClass::Normalising, "{v:?}");
        assert_eq!(v.transforms, vec![Transform::HeaderFolding]);
    }

    #[test]
    fn several_transforms_are_all_named() {
        let p = probe();
        let folded = String::from_utf8(p.clone())
            .unwrap()
            .replacen("word10 word11", "word10\r\n word11", 1)
            .into_bytes();
        let served = munged(&folded, b'X', "byte");
        let v = classify(&p, &served, size(&served));
        assert_eq!(v.class, FidelityClass::Normalising, "{v:?}");
        assert_eq!(v.transforms.len(), 2, "{v:?}");
    }

    #[test]
    fn trailing_whitespace_removed_is_normalising() {
        let sent = b"Subject: a \r\n\r\nbody  \r\nmore\r\n".to_vec();
        let served = b"Subject: a\r\n\r\nbody\r\nmore\r\n".to_vec();
        let v = classify(&sent, &served, size(&served));
        assert_eq!(v.class, FidelityClass::Normalising, "{v:?}");
        assert_eq!(v.transforms, vec![Transform::TrailingWhitespace]);
    }

    #[test]
    fn re_rendered_message_is_rewriting() {
        // Exchange-like: headers reordered, the body re-encoded.
        let p = probe();
        let text = String::from_utf8(p.clone()).unwrap();
        let served = text
            .replace(
                "Content-Transfer-Encoding: 8bit",
                "Content-Transfer-Encoding: quoted-printable",
            )
            .replace("To: probe@localhost\r\n", "")
            .replacen("From:", "To: probe@localhost\r\nFrom:", 1)
            .into_bytes();
        let v = classify(&p, &served, size(&served));
        assert_eq!(v.class, FidelityClass::Rewriting, "{v:?}");
        assert!(v.detail.contains("first difference"), "{}", v.detail);
    }

    #[test]
    fn size_mismatch_is_rewriting_even_with_identical_bytes() {
        let p = probe();
        let v = classify(&p, &p, size(&p) + 120);
        assert_eq!(v.class, FidelityClass::Rewriting, "{v:?}");
        assert!(v.detail.contains("RFC822.SIZE"), "{}", v.detail);
        assert!(v.detail.contains("unchanged"), "{}", v.detail);
        let served = munged(&p, b'X', "byte");
        let v = classify(&p, &served, size(&p) + 1);
        assert_eq!(v.class, FidelityClass::Rewriting, "{v:?}");
    }

    #[test]
    fn a_replacement_that_varies_is_not_a_munge() {
        let sent = "Subject: \u{e9}a\u{e9}\r\n\r\nx\r\n".as_bytes().to_vec();
        let served = b"Subject: XXa??\r\n\r\nx\r\n".to_vec();
        let v = classify(&sent, &served, size(&served));
        assert_eq!(v.class, FidelityClass::Rewriting, "{v:?}");
    }

    #[test]
    fn replacement_next_to_the_same_ascii_byte() {
        // "éX" munged to "XXX": the run takes two, the literal X the third.
        let sent = "Subject: \u{e9}X\r\n\r\nx\r\n".as_bytes().to_vec();
        let served = b"Subject: XXX\r\n\r\nx\r\n".to_vec();
        let v = classify(&sent, &served, size(&served));
        assert_eq!(v.class, FidelityClass::Normalising, "{v:?}");
    }

    #[test]
    fn truncated_message_is_rewriting() {
        let p = probe();
        let served = p[..p.len() - 40].to_vec();
        let v = classify(&p, &served, size(&served));
        assert_eq!(v.class, FidelityClass::Rewriting, "{v:?}");
    }

    #[test]
    fn verdicts_serialise_with_lowercase_classes() {
        let p = probe();
        let v = classify(&p, &munged(&p, b'X', "byte"), size(&p));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["class"], "normalising");
        assert_eq!(json["transforms"][0]["kind"], "eight_bit_header_replaced");
        assert_eq!(json["transforms"][0]["replacement"], "X");
    }
}
