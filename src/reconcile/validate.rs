//! Completeness check of one message's bytes: is it whole (transport), and is its structure intact?
//!
//! [`validate`] is pure and total: it never panics, does no I/O and allocates at most a few small
//! buffers (one boundary string per nesting level, reason strings). It rejects *damage*, not style:
//! real mailboxes hold plenty of mail that bends RFC 5322 and RFC 2045–2049 and must still replicate.
//!
//! # Transport damage ([`Verdict::Transport`]), checked first
//!
//! - On an exact side (one that keeps bytes as they were appended), the byte length differs from the
//!   server's RFC822.SIZE. The comparison uses the bytes as served, before any CRLF normalisation.
//! - The message is empty.
//!
//! # Structural damage ([`Verdict::Structural`])
//!
//! - **No header fields**: the header section (everything before the first empty line, or the whole
//!   message when there is none) holds no `name: value` line at all. Lines that are not fields (an
//!   mbox `From ` line, junk) are tolerated as long as one real field is there.
//! - **Header section cut off**: the message has no empty line *and* does not end with a line break.
//!   A message that is only headers, each line terminated, is valid (RFC 5322 allows omitting the
//!   body and its separator); a message cut exactly at a line end inside its headers cannot be told
//!   from it, which is what the RFC822.SIZE check is for.
//! - **Unclosed multipart**: a `multipart/*` entity whose close delimiter `--boundary--` is missing
//!   inside its own byte range, at any depth. Delimiters are matched as whole lines (`--boundary`,
//!   optionally `--`, then only transport padding), like Python's `email` package; a longer line that
//!   merely starts with the boundary is content. `message/rfc822` bodies are *not* descended into:
//!   bounces routinely carry a returned message cut by the reporting MTA, and the outer message is
//!   still whole (a cut in it shows as a missing outer delimiter anyway). A multipart without a
//!   `boundary` parameter is treated as opaque, as parsers do. Nesting deeper than [`MAX_DEPTH`] is
//!   not inspected further.
//! - **Corrupt base64**: a part with `Content-Transfer-Encoding: base64` holding a byte outside the
//!   alphabet (whitespace ignored), or a run of data characters of length 1 modulo 4, which no
//!   encoder produces (the tail of a cut or mangled body). Missing or extra `=` padding and padding
//!   in mid-stream (line-by-line encoders) are accepted.
//! - **Parser panic**: mail-parser is run inside `catch_unwind`; in debug builds it panics on a few
//!   inputs (quoted-printable soft break right before a boundary). Release builds do not panic on
//!   those, so such a message is `Structural` in debug builds only.
//!
//! Not damage here: broken quoted-printable (bad soft breaks, `=` without hex digits: too common),
//! NUL bytes and bare newlines outside base64 (the target may refuse them; that is another class),
//! 8-bit header bytes, missing Date or Message-ID, overlong lines, duplicate headers.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Deepest MIME nesting inspected; deeper entities are accepted unchecked.
pub const MAX_DEPTH: usize = 64;

/// Outcome of [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// The bytes are damaged in structure (cut or corrupt content), a short human reason.
    Structural(String),
    /// The bytes did not arrive whole (size mismatch, empty), a short human reason.
    Transport(String),
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid)
    }

    /// The reason, for anything but [`Verdict::Valid`].
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Valid => None,
            Verdict::Structural(r) | Verdict::Transport(r) => Some(r),
        }
    }
}

/// What the server told us about the message before we read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expectation {
    /// The server's RFC822.SIZE (JMAP `size`), when known.
    pub size: Option<u32>,
    /// The side keeps bytes as appended, so `size` must equal the byte length exactly.
    pub exact: bool,
}

impl Expectation {
    /// Nothing known: only the content is checked.
    pub fn unknown() -> Expectation {
        Expectation::default()
    }

    /// An exact side that reported `size`.
    pub fn exact(size: u32) -> Expectation {
        Expectation {
            size: Some(size),
            exact: true,
        }
    }
}

/// Checks one message's bytes as served. See the module documentation for the rules.
pub fn validate(bytes: &[u8], expect: &Expectation) -> Verdict {
    if expect.exact {
        if let Some(size) = expect.size {
            if bytes.len() as u64 != u64::from(size) {
                return Verdict::Transport(format!(
                    "size {} differs from RFC822.SIZE {size}",
                    bytes.len()
                ));
            }
        }
    }
    if bytes.is_empty() {
        return Verdict::Transport("message is empty".to_string());
    }

    let head = parse_head(bytes, 0, bytes.len());
    if head.fields == 0 {
        return Verdict::Structural("message has no header fields".to_string());
    }
    if !head.terminated && bytes.last() != Some(&b'\n') {
        return Verdict::Structural("message ends inside its header section".to_string());
    }
    if let Err(reason) = check_entity_with_head(bytes, &head, bytes.len(), 0, false) {
        return Verdict::Structural(reason);
    }
    if parser_panics(bytes) {
        return Verdict::Structural("parser panicked".to_string());
    }
    Verdict::Valid
}

/// Above this size only the header section goes through mail-parser: decoding attachments
/// took a quarter of a copy's CPU (an eighth still with a 1 MiB limit), and the structure of
/// the body, base64 included, is checked above.
const FULL_PARSE_MAX: usize = 64 << 10;

/// Runs mail-parser over the message (its header section only when it is large); true if it
/// panicked.
fn parser_panics(bytes: &[u8]) -> bool {
    catch_unwind(AssertUnwindSafe(|| {
        let parser = mail_parser::MessageParser::default();
        if bytes.len() <= FULL_PARSE_MAX {
            drop(parser.parse(bytes));
        } else {
            drop(parser.parse_headers(bytes));
        }
    }))
    .is_err()
}

/// One line of `data`: `start..end` is its content without the LF (a CR before the LF stays in),
/// `next` where the following line starts.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    end: usize,
    next: usize,
}

impl Line {
    /// The line of `data[..end]` that begins at `start`: up to its LF, or to `end`.
    fn at(data: &[u8], start: usize, end: usize) -> Line {
        match memchr::memchr(b'\n', &data[start..end]) {
            Some(i) => Line {
                start,
                end: start + i,
                next: start + i + 1,
            },
            None => Line {
                start,
                end,
                next: end,
            },
        }
    }
}

/// Lines of `data[start..end]`; the last one may lack a terminator.
struct Lines<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Lines<'a> {
    fn new(data: &'a [u8], start: usize, end: usize) -> Lines<'a> {
        Lines {
            data,
            pos: start,
            end,
        }
    }
}

impl Iterator for Lines<'_> {
    type Item = Line;

    fn next(&mut self) -> Option<Line> {
        if self.pos >= self.end {
            return None;
        }
        let line = Line::at(self.data, self.pos, self.end);
        self.pos = line.next;
        Some(line)
    }
}

/// The lines of `data[start..end]` that begin with `--`, the only ones that can be multipart
/// delimiters: found by one vectorised search for `\n--` instead of line by line, so the
/// lines of a large attachment are passed over at memory speed. `start` is a line start.
struct DashLines<'a> {
    data: &'a [u8],
    /// Where the search goes on: the line start `start` at first, then the LF that ended the
    /// last line given.
    pos: usize,
    end: usize,
    first: bool,
}

impl<'a> DashLines<'a> {
    fn new(data: &'a [u8], start: usize, end: usize) -> DashLines<'a> {
        DashLines {
            data,
            pos: start,
            end,
            first: true,
        }
    }
}

impl Iterator for DashLines<'_> {
    type Item = Line;

    fn next(&mut self) -> Option<Line> {
        if self.pos >= self.end {
            return None;
        }
        let hay = &self.data[self.pos..self.end];
        let start = if std::mem::take(&mut self.first) && hay.starts_with(b"--") {
            self.pos
        } else {
            self.pos + memchr::memmem::find(hay, b"\n--")? + 1
        };
        let line = Line::at(self.data, start, self.end);
        // The next search starts at this line's LF, so a `--` line right after it is found.
        self.pos = line.end;
        Some(line)
    }
}

/// What matters of an entity's header section.
#[derive(Debug, Default)]
struct Head {
    /// Number of `name: value` lines.
    fields: usize,
    /// An empty line ended the section.
    terminated: bool,
    /// Where the body starts (the end of the entity when there is no empty line).
    body_start: usize,
    /// Raw value of the last Content-Type field, folding included.
    content_type: Option<(usize, usize)>,
    /// Raw value of the last Content-Transfer-Encoding field, folding included.
    transfer_encoding: Option<(usize, usize)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tracked {
    None,
    ContentType,
    TransferEncoding,
}

/// Reads the header section of the entity `data[start..end]`: it ends at the first empty line.
fn parse_head(data: &[u8], start: usize, end: usize) -> Head {
    let mut head = Head {
        body_start: end,
        ..Head::default()
    };
    let mut tracked = Tracked::None;
    for line in Lines::new(data, start, end) {
        let content = &data[line.start..line.end];
        if content.iter().all(|&b| b == b'\r') {
            // An empty line (CR-only lines too: doubled CRs are mangled line ends, not content).
            head.terminated = true;
            head.body_start = line.next;
            break;
        }
        if matches!(content[0], b' ' | b'\t') {
            // Continuation of the previous field.
            match tracked {
                Tracked::ContentType => {
                    if let Some(v) = head.content_type.as_mut() {
                        v.1 = line.end;
                    }
                }
                Tracked::TransferEncoding => {
                    if let Some(v) = head.transfer_encoding.as_mut() {
                        v.1 = line.end;
                    }
                }
                Tracked::None => {}
            }
            continue;
        }
        tracked = Tracked::None;
        let Some(colon) = field_colon(content) else {
            continue; // not a field: tolerated
        };
        head.fields += 1;
        let name = trim_wsp_end(&content[..colon]);
        let value = (line.start + colon + 1, line.end);
        if name.eq_ignore_ascii_case(b"content-type") {
            head.content_type = Some(value);
            tracked = Tracked::ContentType;
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            head.transfer_encoding = Some(value);
            tracked = Tracked::TransferEncoding;
        }
    }
    head
}

/// Position of the colon if `line` is a header field: a non-empty name of printable ASCII without
/// spaces, optionally followed by blanks (obsolete syntax), then `:`.
fn field_colon(line: &[u8]) -> Option<usize> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = trim_wsp_end(&line[..colon]);
    if !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b)) {
        Some(colon)
    } else {
        None
    }
}

fn trim_wsp_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn is_fws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_fws(mut s: &[u8]) -> &[u8] {
    while let [b, rest @ ..] = s {
        if !is_fws(*b) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., b] = s {
        if !is_fws(*b) {
            break;
        }
        s = rest;
    }
    s
}

/// The media type of an entity, as far as the structure check cares.
#[derive(Debug, PartialEq, Eq)]
enum Media {
    /// `multipart/*` with its boundary (None when the parameter is missing or empty); `digest` tells
    /// that parts default to `message/rfc822`.
    Multipart {
        boundary: Option<Vec<u8>>,
        digest: bool,
    },
    /// `message/rfc822` or `message/global`.
    Message,
    Other,
}

/// Parses a raw (possibly folded) Content-Type value.
fn parse_content_type(raw: &[u8]) -> Media {
    let token_end = |i: usize| {
        let mut j = i;
        while j < raw.len() && !matches!(raw[j], b'/' | b';') && !is_fws(raw[j]) {
            j += 1;
        }
        j
    };
    let skip_fws = |mut i: usize| {
        while i < raw.len() && is_fws(raw[i]) {
            i += 1;
        }
        i
    };
    let mut i = skip_fws(0);
    let type_end = token_end(i);
    let ctype = &raw[i..type_end];
    i = skip_fws(type_end);
    let mut subtype: &[u8] = b"";
    if raw.get(i) == Some(&b'/') {
        i = skip_fws(i + 1);
        let end = token_end(i);
        subtype = &raw[i..end];
        i = end;
    }
    if ctype.eq_ignore_ascii_case(b"message")
        && (subtype.eq_ignore_ascii_case(b"rfc822") || subtype.eq_ignore_ascii_case(b"global"))
    {
        return Media::Message;
    }
    if !ctype.eq_ignore_ascii_case(b"multipart") {
        return Media::Other;
    }
    let digest = subtype.eq_ignore_ascii_case(b"digest");
    let boundary = boundary_param(&raw[i..]).filter(|b| !b.is_empty());
    Media::Multipart { boundary, digest }
}

/// The first `boundary` parameter in `params` (the part of a Content-Type after the subtype),
/// unquoted, with folding removed.
fn boundary_param(params: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0;
    while i < params.len() {
        // Find the next parameter start.
        i += params[i..].iter().position(|&b| b == b';')? + 1;
        let eq = params[i..].iter().position(|&b| b == b'=' || b == b';')?;
        if params[i + eq] == b';' {
            continue; // a parameter without a value
        }
        let name = trim_fws(&params[i..i + eq]);
        let mut j = i + eq + 1;
        while j < params.len() && is_fws(params[j]) {
            j += 1;
        }
        let mut value = Vec::new();
        if params.get(j) == Some(&b'"') {
            j += 1;
            while j < params.len() {
                match params[j] {
                    b'"' => {
                        j += 1;
                        break;
                    }
                    b'\\' if j + 1 < params.len() => {
                        value.push(params[j + 1]);
                        j += 2;
                    }
                    b'\r' | b'\n' => j += 1,
                    b => {
                        value.push(b);
                        j += 1;
                    }
                }
            }
        } else {
            while j < params.len() && params[j] != b';' && !is_fws(params[j]) {
                value.push(params[j]);
                j += 1;
            }
        }
        if name.eq_ignore_ascii_case(b"boundary") {
            return Some(value);
        }
        i = j;
    }
    None
}

/// Checks the entity `data[start..end]` (headers and body).
fn check_entity(
    data: &[u8],
    start: usize,
    end: usize,
    depth: usize,
    in_digest: bool,
) -> Result<(), String> {
    let head = parse_head(data, start, end);
    check_entity_with_head(data, &head, end, depth, in_digest)
}

fn check_entity_with_head(
    data: &[u8],
    head: &Head,
    end: usize,
    depth: usize,
    in_digest: bool,
) -> Result<(), String> {
    let media = match head.content_type {
        Some((a, b)) => parse_content_type(&data[a..b]),
        None if in_digest => Media::Message,
        None => Media::Other,
    };
    match media {
        Media::Multipart {
            boundary: Some(boundary),
            digest,
        } => {
            if depth >= MAX_DEPTH {
                return Ok(());
            }
            check_multipart(data, head.body_start, end, &boundary, depth, digest)
        }
        Media::Multipart { boundary: None, .. } | Media::Message => Ok(()),
        Media::Other => {
            let base64 = head
                .transfer_encoding
                .is_some_and(|(a, b)| trim_fws(&data[a..b]).eq_ignore_ascii_case(b"base64"));
            if base64 {
                check_base64(data, head.body_start, end)
            } else {
                Ok(())
            }
        }
    }
}

/// Is `line` (without its LF) a delimiter for `boundary`? `Some(true)` for the close delimiter.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.iter()
        .all(|&b| matches!(b, b' ' | b'\t' | b'\r'))
        .then_some(close)
}

/// Scans the body `data[start..end]` of a multipart for its delimiters, checks each complete part
/// and requires the close delimiter.
fn check_multipart(
    data: &[u8],
    start: usize,
    end: usize,
    boundary: &[u8],
    depth: usize,
    digest: bool,
) -> Result<(), String> {
    let mut part_start: Option<usize> = None;
    for line in DashLines::new(data, start, end) {
        let Some(close) = delimiter(&data[line.start..line.end], boundary) else {
            continue;
        };
        if let Some(ps) = part_start {
            // The line break before a delimiter belongs to the delimiter.
            let mut pe = line.start;
            if pe > ps && data[pe - 1] == b'\n' {
                pe -= 1;
                if pe > ps && data[pe - 1] == b'\r' {
                    pe -= 1;
                }
            }
            check_entity(data, ps, pe, depth + 1, digest)?;
        }
        if close {
            return Ok(());
        }
        part_start = Some(line.next);
    }
    Err(format!(
        "multipart boundary {:?} is never closed",
        shown(boundary)
    ))
}

/// A boundary for a reason string: lossy UTF-8, control characters as `?`, at most 40 characters.
fn shown(boundary: &[u8]) -> String {
    const MAX: usize = 40;
    let lossy = String::from_utf8_lossy(&boundary[..boundary.len().min(4 * MAX)]);
    let mut out: String = lossy
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if lossy.chars().nth(MAX).is_some() || boundary.len() > 4 * MAX {
        out.push_str("...");
    }
    out
}

/// Checks a base64 body `data[start..end]`: alphabet, whitespace and `=` only, and no run of data
/// characters of length 1 modulo 4.
fn check_base64(data: &[u8], start: usize, end: usize) -> Result<(), String> {
    // The bodies of large attachments are most of the bytes a copy moves.
    let mut run = 0usize;
    let body = &data[start..end];
    let mut at = 0;
    while at < body.len() {
        let chunk = &body[at..(at + 64).min(body.len())];
        // Most chunks are only alphabet and line breaks: counted without a branch or a table
        // lookup per byte, which the compiler turns into vector instructions.
        let (mut alphabet, mut other) = (0u8, false);
        for &b in chunk {
            let (data, space) = (in_alphabet(b), is_space(b));
            alphabet += u8::from(data);
            other |= !(data | space);
        }
        if !other {
            run += usize::from(alphabet);
            at += chunk.len();
            continue;
        }
        check_base64_bytes(chunk, start + at, &mut run)?;
        at += chunk.len();
    }
    if run % 4 == 1 {
        return Err("base64 part ends with a truncated quantum".to_string());
    }
    Ok(())
}

/// A base64 data character ([`CLASS`] `ALPHABET`), by comparisons only.
fn in_alphabet(b: u8) -> bool {
    (b.wrapping_sub(b'A') < 26)
        | (b.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'+')
        | (b == b'/')
}

/// Whitespace in base64 ([`CLASS`] `SPACE`), by comparisons only.
fn is_space(b: u8) -> bool {
    (b == b' ') | (b == b'\t') | (b == b'\r') | (b == b'\n')
}

/// The byte classes of base64: data, padding, whitespace (0: anything else).
const ALPHABET: u8 = 1;
const PAD: u8 = 2;
const SPACE: u8 = 3;
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => ALPHABET,
            b'=' => PAD,
            b' ' | b'\t' | b'\r' | b'\n' => SPACE,
            _ => 0,
        };
        b += 1;
    }
    t
};

/// Checks base64 bytes one by one (`offset`: where `bytes` starts in the message), carrying the
/// length of the current run of data characters in `run`.
fn check_base64_bytes(bytes: &[u8], offset: usize, run: &mut usize) -> Result<(), String> {
    for (i, &b) in bytes.iter().enumerate() {
        match CLASS[b as usize] {
            ALPHABET => *run += 1,
            SPACE => {}
            PAD => {
                if *run % 4 == 1 {
                    return Err(format!(
                        "base64 part has a truncated quantum before byte {}",
                        offset + i
                    ));
                }
                *run = 0;
            }
            _ => {
                let shown = if b.is_ascii_graphic() {
                    format!("'{}'", b as char)
                } else {
                    format!("0x{b:02X}")
                };
                return Err(format!(
                    "base64 part holds invalid character {shown} at byte {}",
                    offset + i
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_fixtures.rs"]
mod fixtures_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comparisons_classify_every_byte_as_the_table_does() {
        for b in 0..=255u8 {
            let class = CLASS[b as usize];
            assert_eq!(in_alphabet(b), class == ALPHABET, "byte {b}");
            assert_eq!(is_space(b), class == SPACE, "byte {b}");
        }
    }

    /// The dash lines are exactly the lines that begin with `--`, with the same bounds.
    #[test]
    fn dash_lines_are_the_lines_that_begin_with_two_dashes() {
        let cases: [&[u8]; 8] = [
            b"",
            b"--",
            b"--a\n--b\n",
            b"x\n--a\r\n\n---\n-\n--",
            b"\n\n--\n\n",
            b"a-\n-a\n--\n",
            b"--x--\n--\r\n--y",
            b"no dashes here\nnor here\n",
        ];
        for data in cases {
            for start in 0..=data.len() {
                // Only line starts are valid starts.
                if start > 0 && data[start - 1] != b'\n' {
                    continue;
                }
                let want: Vec<(usize, usize, usize)> = Lines::new(data, start, data.len())
                    .filter(|l| data[l.start..l.end].starts_with(b"--"))
                    .map(|l| (l.start, l.end, l.next))
                    .collect();
                let got: Vec<(usize, usize, usize)> = DashLines::new(data, start, data.len())
                    .map(|l| (l.start, l.end, l.next))
                    .collect();
                assert_eq!(
                    got,
                    want,
                    "{:?} from {start}",
                    String::from_utf8_lossy(data)
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn dash_lines_match_a_line_by_line_scan(data in proptest::collection::vec(
            proptest::sample::select(vec![b'-', b'-', b'\n', b'\r', b'a']), 0..80)) {
            let want: Vec<(usize, usize, usize)> = Lines::new(&data, 0, data.len())
                .filter(|l| data[l.start..l.end].starts_with(b"--"))
                .map(|l| (l.start, l.end, l.next))
                .collect();
            let got: Vec<(usize, usize, usize)> = DashLines::new(&data, 0, data.len())
                .map(|l| (l.start, l.end, l.next))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    fn check(bytes: &[u8]) -> Verdict {
        validate(bytes, &Expectation::unknown())
    }

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    fn structural(v: Verdict) -> String {
        match v {
            Verdict::Structural(r) => r,
            other => panic!("expected Structural, got {other:?}"),
        }
    }

    const SIMPLE: &str = "From: a@example.com\nSubject: hi\n\nHello\n";

    #[test]
    fn simple_message_is_valid() {
        assert_eq!(check(&crlf(SIMPLE)), Verdict::Valid);
        // Bare LF is style, not damage.
        assert_eq!(check(SIMPLE.as_bytes()), Verdict::Valid);
    }

    #[test]
    fn size_mismatch_on_exact_side_is_transport() {
        let m = crlf(SIMPLE);
        let n = m.len() as u32;
        assert_eq!(validate(&m, &Expectation::exact(n)), Verdict::Valid);
        assert_eq!(
            validate(&m, &Expectation::exact(n + 300)),
            Verdict::Transport(format!("size {n} differs from RFC822.SIZE {}", n + 300))
        );
        assert!(matches!(
            validate(&m, &Expectation::exact(n - 1)),
            Verdict::Transport(_)
        ));
        // A side that does not keep bytes may report another size.
        let loose = Expectation {
            size: Some(n + 300),
            exact: false,
        };
        assert_eq!(validate(&m, &loose), Verdict::Valid);
        // Exact, but no size known.
        let nosize = Expectation {
            size: None,
            exact: true,
        };
        assert_eq!(validate(&m, &nosize), Verdict::Valid);
    }

    #[test]
    fn size_is_compared_before_crlf_normalisation() {
        let lf = SIMPLE.as_bytes();
        let normalised = crlf(SIMPLE);
        assert_eq!(
            validate(lf, &Expectation::exact(lf.len() as u32)),
            Verdict::Valid
        );
        assert!(matches!(
            validate(lf, &Expectation::exact(normalised.len() as u32)),
            Verdict::Transport(_)
        ));
    }

    #[test]
    fn empty_message_is_transport() {
        assert_eq!(
            check(b""),
            Verdict::Transport("message is empty".to_string())
        );
        assert!(matches!(
            validate(b"", &Expectation::exact(0)),
            Verdict::Transport(_)
        ));
        assert!(matches!(
            validate(b"", &Expectation::exact(10)),
            Verdict::Transport(_)
        ));
        assert_eq!(check(b"X: y\r\n"), Verdict::Valid);
    }

    #[test]
    fn header_section_rules() {
        // Cut inside the headers: no empty line and no final line break.
        assert_eq!(
            structural(check(b"From: a@example.com\r\nSubject: quarterly re")),
            "message ends inside its header section"
        );
        assert!(!check(b"From: a@example.com\r\nSubject: x\r").is_valid());
        assert!(!check(b"From: a@example.com\r\nSubject: x").is_valid());
        // Only headers, each terminated: valid, with or without the empty line.
        assert_eq!(
            check(b"From: a@example.com\r\nSubject: x\r\n"),
            Verdict::Valid
        );
        assert_eq!(
            check(b"From: a@example.com\r\nSubject: x\r\n\r\n"),
            Verdict::Valid
        );
        // Headers present, body without a final line break: valid.
        assert_eq!(check(b"Subject: x\r\n\r\nno newline"), Verdict::Valid);
        // No header field at all.
        assert_eq!(
            structural(check(b"\r\nbody only\r\n")),
            "message has no header fields"
        );
        assert!(!check(b"just some text\r\n").is_valid());
        assert!(!check(b"\r\n").is_valid());
        assert!(!check(b"no colon line\r\n\r\nbody\r\n").is_valid());
        // A name with a space is not a field; obsolete space before the colon is.
        assert!(!check(b"Not a field: x\r\n\r\nbody\r\n").is_valid());
        assert_eq!(check(b"Subject : x\r\n\r\nbody\r\n"), Verdict::Valid);
        // Doubled CRs before LF still end the header section.
        assert_eq!(
            check(b"Content-Type: multipart/mixed; boundary=b\r\r\n\r\r\n--b\r\r\n\r\r\nx\r\r\n--b--\r\r\n"),
            Verdict::Valid
        );
        // Junk lines and an mbox From line beside real fields are tolerated.
        assert_eq!(
            check(b"From someone Mon Jun  3 10:00:00 2024\r\nFrom: a@example.com\r\n\r\nhi\r\n"),
            Verdict::Valid
        );
    }

    const MULTI: &str = "From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"abc\"\n\npreamble\n--abc\nContent-Type: text/plain\n\none\n--abc\n\ntwo\n--abc--\nepilogue\n";

    #[test]
    fn multipart_closed_and_unclosed() {
        assert_eq!(check(&crlf(MULTI)), Verdict::Valid);
        let cut = crlf(&MULTI[..MULTI.find("two").unwrap()]);
        assert_eq!(
            structural(check(&cut)),
            "multipart boundary \"abc\" is never closed"
        );
        // Headers only, body gone.
        let cut = crlf(&MULTI[..MULTI.find("\n\n").unwrap() + 2]);
        assert!(!check(&cut).is_valid());
        // Close delimiter without a final line break, and with transport padding.
        let m = crlf(&MULTI.replace("--abc--\nepilogue\n", "--abc--"));
        assert_eq!(check(&m), Verdict::Valid);
        let m = crlf(
            &MULTI
                .replace("--abc--\n", "--abc-- \t\n")
                .replace("--abc\n\ntwo", "--abc  \n\ntwo"),
        );
        assert_eq!(check(&m), Verdict::Valid);
        // Cut inside the close delimiter.
        let at = MULTI.find("--abc--").unwrap();
        for k in 0..7 {
            let m = crlf(&MULTI[..at + k]);
            assert!(!check(&m).is_valid(), "cut at +{k}");
        }
        let m = crlf(&MULTI[..at + 7]);
        assert_eq!(check(&m), Verdict::Valid);
    }

    #[test]
    fn boundary_as_prefix_of_a_longer_line_is_content() {
        let m =
            "Content-Type: multipart/mixed; boundary=abc\n\n--abc\n\n--abc--and more\n--abcdef\n";
        assert!(!check(&crlf(m)).is_valid());
        let m = format!("{m}--abc--\n");
        assert_eq!(check(&crlf(&m)), Verdict::Valid);
        // A delimiter must start its line.
        let m = "Content-Type: multipart/mixed; boundary=abc\n\n--abc\n\ntext --abc--\n";
        assert!(!check(&crlf(m)).is_valid());
    }

    #[test]
    fn nested_multipart_must_close_inside_its_part() {
        let ok = "Content-Type: multipart/mixed; boundary=outer\n\n--outer\nContent-Type: multipart/alternative; boundary=inner\n\n--inner\n\na\n--inner\n\nb\n--inner--\n--outer\n\nc\n--outer--\n";
        assert_eq!(check(&crlf(ok)), Verdict::Valid);
        let bad = ok.replace("--inner--\n", "");
        assert_eq!(
            structural(check(&crlf(&bad))),
            "multipart boundary \"inner\" is never closed"
        );
        // The inner close after the outer's next delimiter does not count.
        let bad = ok.replace("--inner--\n--outer\n", "--outer\n--inner--\n");
        assert!(!check(&crlf(&bad)).is_valid());
    }

    #[test]
    fn boundary_parameter_forms() {
        let body = |b: &str| format!("\n--{b}\n\nx\n--{b}--\n");
        for (ct, b) in [
            ("multipart/mixed; boundary=\"a b c\"", "a b c"),
            ("MULTIPART/Mixed; BOUNDARY=XyZ", "XyZ"),
            (
                "multipart/mixed;\n\tcharset=us-ascii;\n boundary=\"=_folded\"",
                "=_folded",
            ),
            ("multipart/mixed; boundary=\"q\\\"x\"", "q\"x"),
            ("multipart/mixed ; name=\"a;b\"; boundary = tok", "tok"),
        ] {
            let m = format!("Content-Type: {ct}\n{}", body(b));
            assert_eq!(check(&crlf(&m)), Verdict::Valid, "{ct}");
            let cut = format!("Content-Type: {ct}\n\n--{b}\n\nx\n");
            assert!(!check(&crlf(&cut)).is_valid(), "{ct}");
        }
        // Without a boundary parameter the multipart is opaque.
        assert_eq!(
            check(&crlf("Content-Type: multipart/mixed\n\nwhatever\n")),
            Verdict::Valid
        );
        assert_eq!(
            check(&crlf(
                "Content-Type: multipart/mixed; boundary=\"\"\n\nwhatever\n"
            )),
            Verdict::Valid
        );
    }

    #[test]
    fn last_content_type_wins() {
        let m = "Content-Type: text/plain\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n";
        assert!(!check(&crlf(m)).is_valid());
        let m = "Content-Type: multipart/mixed; boundary=b\nContent-Type: text/plain\n\n--b\n\nx\n";
        assert_eq!(check(&crlf(m)), Verdict::Valid);
    }

    #[test]
    fn message_rfc822_is_not_descended_into() {
        let m = "Content-Type: multipart/report; boundary=r\n\n--r\n\nbounce\n--r\nContent-Type: message/rfc822\n\nSubject: returned\nContent-Type: multipart/mixed; boundary=cut\n\n--cut\n\npartial\n--r--\n";
        assert_eq!(check(&crlf(m)), Verdict::Valid);
        // But the outer multipart must still close.
        let m = m.replace("--r--\n", "");
        assert!(!check(&crlf(&m)).is_valid());
    }

    #[test]
    fn base64_rules() {
        let b64 = |body: &str| {
            crlf(&format!(
                "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n{body}"
            ))
        };
        assert_eq!(check(&b64("SGVsbG8gd29ybGQ=\n")), Verdict::Valid);
        // Missing padding, odd line lengths, padding mid-stream, blanks: accepted.
        assert_eq!(check(&b64("SGVsbG8gd29ybGQ\n")), Verdict::Valid);
        assert_eq!(check(&b64("SGVsbG8gd2\n9ybGQ\n\n")), Verdict::Valid);
        assert_eq!(check(&b64("SGVsbG8=IHdvcmxk\n")), Verdict::Valid);
        assert_eq!(check(&b64("SGVs bG8g\td29y bGQ=\n  \n")), Verdict::Valid);
        assert_eq!(check(&b64("")), Verdict::Valid);
        // Invalid characters.
        let r = structural(check(&b64("SGVsbG8*d29ybGQ=\n")));
        assert!(
            r.starts_with("base64 part holds invalid character '*' at byte "),
            "{r}"
        );
        assert!(!check(&b64("SGVs-bG8_\n")).is_valid());
        assert!(!check(&b64("SGVsbG8\0\0\0\0\n")).is_valid());
        // A final quantum of one character.
        assert_eq!(
            structural(check(&b64("SGVsbG8gd29ybGQgS\n"))),
            "base64 part ends with a truncated quantum"
        );
        assert!(!check(&b64("SGVsb===\n")).is_valid());
        // The encoding name is case-insensitive and trimmed.
        let m = crlf("Content-Transfer-Encoding:  BASE64 \n\nab*\n");
        assert!(!check(&m).is_valid());
        // Not base64: nothing checked.
        let m = crlf("Content-Transfer-Encoding: 7bit\n\nab*c\n");
        assert_eq!(check(&m), Verdict::Valid);
    }

    #[test]
    fn base64_inside_multipart_is_checked_up_to_the_delimiter() {
        let m = "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: base64\n\nSGVsbG8=\n--b--\n";
        assert_eq!(check(&crlf(m)), Verdict::Valid);
        let bad = m.replace("SGVsbG8=", "SGVsbG8!");
        assert!(!check(&crlf(&bad)).is_valid());
        let bad = m.replace("SGVsbG8=", "SGVsb");
        assert!(!check(&crlf(&bad)).is_valid());
        // A multipart with a base64 transfer encoding is treated as a multipart.
        let m = "Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: base64\n\n--b\n\nplain text!\n--b--\n";
        assert_eq!(check(&crlf(m)), Verdict::Valid);
    }

    #[test]
    fn broken_quoted_printable_is_not_damage() {
        let m = "Content-Transfer-Encoding: quoted-printable\n\nbad =ZZ soft = \ntrailing  \n=";
        assert_eq!(check(&crlf(m)), Verdict::Valid);
    }

    #[test]
    fn nul_bytes_are_not_damage_here() {
        assert_eq!(
            check(b"Subject: nul\r\n\r\nbefore\0after\r\n"),
            Verdict::Valid
        );
    }

    #[test]
    fn parser_panic_is_structural_in_debug_builds() {
        // A quoted-printable soft break right before the boundary: mail-parser 0.11.9 subtracts
        // with overflow (a panic in debug builds, wrapping in release builds).
        let m = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: quoted-printable\n\n=\n--b--\n");
        let v = check(&m);
        if cfg!(debug_assertions) {
            assert_eq!(v, Verdict::Structural("parser panicked".to_string()));
        } else {
            assert_eq!(v, Verdict::Valid);
        }
    }

    #[test]
    fn deep_nesting_stops_at_max_depth_without_recursing_forever() {
        let levels = 2000;
        let mut m = String::new();
        for i in 0..levels {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
            ));
        }
        m.push_str("\nleaf\n");
        for i in (0..levels).rev() {
            m.push_str(&format!("--b{i}--\n"));
        }
        assert_eq!(check(&crlf(&m)), Verdict::Valid);
        // Cut the outermost close: still found.
        let cut = crlf(m.trim_end_matches("--b0--\n"));
        assert!(!check(&cut).is_valid());
    }

    #[test]
    fn digest_parts_default_to_messages() {
        // In a digest a part without Content-Type is a message (opaque); elsewhere it is text, so
        // its base64 is checked.
        let m = "Content-Type: multipart/digest; boundary=d\n\n--d\nContent-Transfer-Encoding: base64\n\nnot base64!\n--d--\n";
        assert_eq!(check(&crlf(m)), Verdict::Valid);
        let m = m.replace("multipart/digest", "multipart/mixed");
        assert!(!check(&crlf(&m)).is_valid());
    }

    #[test]
    fn long_boundaries_are_shortened_in_reasons() {
        let b = "x".repeat(200);
        let m = format!("Content-Type: multipart/mixed; boundary={b}\n\n--{b}\n\nx\n");
        let r = structural(check(&crlf(&m)));
        assert!(r.len() < 140, "{r}");
        assert!(r.ends_with("...\" is never closed"), "{r}");
        // Non-ASCII, control and non-UTF-8 bytes stay short too.
        let mut b = "é\u{1}".repeat(100).into_bytes();
        b.extend_from_slice(&[0xff; 50]);
        let mut m = b"Content-Type: multipart/mixed; boundary=".to_vec();
        m.extend_from_slice(&b);
        m.extend_from_slice(b"\r\n\r\n--");
        m.extend_from_slice(&b);
        m.extend_from_slice(b"\r\n\r\nx\r\n");
        let r = structural(check(&m));
        assert!(r.len() < 140, "{r}");
        assert!(!r.contains('\u{1}'), "{r}");
    }
}
