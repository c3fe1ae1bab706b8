//! Reading literal8 (`~{n}`, RFC 3516) in server responses, which imap-proto cannot parse.
//!
//! Cyrus answers `BODY[]` of a message holding a NUL byte with a literal8, whatever was asked.
//! imap-proto fails on the `~`, which would poison the connection on every pass that meets such a
//! message. [`Literal8Reader`] sits under async-imap's framing and turns each `~{n}` that ends a
//! response line into `{n}`: the n bytes that follow are passed on untouched, so the parser reads
//! an ordinary literal with the same bytes (a literal's content may be any octet to imap-proto).
//!
//! Only `~{digits}` immediately followed by CRLF is rewritten, and only outside literals (the
//! filter tracks `{n}` literals too): a quoted string cannot hold CRLF, so nothing else can end
//! a line that way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The pure byte filter: feed it what the server sent, in any chunks; it writes what the parser
/// should see.
#[derive(Debug, Default)]
pub struct Literal8Filter {
    /// Bytes of a possible literal marker (`~{12}\r` so far), not yet passed on.
    held: Vec<u8>,
    /// Bytes of the literal being passed through.
    literal_left: u64,
}

/// Longest literal size we read as a size (20 digits hold any u64).
const MAX_DIGITS: usize = 20;

enum Marker {
    /// Still a prefix of `~?{digits}\r\n`.
    Partial,
    /// A complete marker announcing a literal of this many bytes.
    Complete(u64),
    /// Not a marker.
    No,
}

fn marker(held: &[u8]) -> Marker {
    let rest = held.strip_prefix(b"~").unwrap_or(held);
    let Some(rest) = rest.strip_prefix(b"{") else {
        return if held == b"~" {
            Marker::Partial
        } else {
            Marker::No
        };
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > MAX_DIGITS {
        return Marker::No;
    }
    let tail = &rest[digits..];
    match tail {
        [] => Marker::Partial,
        [b'}'] | [b'}', b'\r'] if digits > 0 => Marker::Partial,
        [b'}', b'\r', b'\n'] if digits > 0 => std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .map_or(Marker::No, Marker::Complete),
        _ => Marker::No,
    }
}

impl Literal8Filter {
    /// Whether the next `n` input bytes are literal content passed through as they are.
    pub fn passes_through(&self, n: usize) -> bool {
        self.held.is_empty() && self.literal_left >= n as u64
    }

    /// Takes note that `n` bytes were passed through (see [`Self::passes_through`]).
    pub fn skip(&mut self, n: usize) {
        self.literal_left -= n as u64;
    }

    /// Filters `input` into `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if self.literal_left > 0 {
                let n = (self.literal_left.min(input.len() as u64)) as usize;
                out.extend_from_slice(&input[..n]);
                self.literal_left -= n as u64;
                input = &input[n..];
                continue;
            }
            let byte = input[0];
            input = &input[1..];
            if self.held.is_empty() {
                if byte == b'~' || byte == b'{' {
                    self.held.push(byte);
                } else {
                    out.push(byte);
                }
                continue;
            }
            self.held.push(byte);
            match marker(&self.held) {
                Marker::Partial => {}
                Marker::Complete(n) => {
                    let start = usize::from(self.held[0] == b'~');
                    out.extend_from_slice(&self.held[start..]);
                    self.held.clear();
                    self.literal_left = n;
                }
                Marker::No => {
                    // Pass on all but the last byte, which may start a marker itself.
                    let last = self.held.pop().unwrap_or(byte);
                    out.append(&mut self.held);
                    if last == b'~' || last == b'{' {
                        self.held.push(last);
                    } else {
                        out.push(last);
                    }
                }
            }
        }
    }

    /// At end of stream: whatever was held is passed on.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.held);
    }
}

/// A stream whose reads go through a [`Literal8Filter`]; writes pass through.
#[derive(Debug)]
pub struct Literal8Reader<S> {
    inner: S,
    filter: Literal8Filter,
    /// Filtered bytes not yet handed to the reader.
    out: Vec<u8>,
    out_pos: usize,
    eof: bool,
}

impl<S> Literal8Reader<S> {
    pub fn new(inner: S) -> Literal8Reader<S> {
        Literal8Reader {
            inner,
            filter: Literal8Filter::default(),
            out: Vec::new(),
            out_pos: 0,
            eof: false,
        }
    }

    /// The stream back. Call only between responses (nothing held or pending).
    pub fn into_inner(self) -> S {
        self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn drain_into(&mut self, buf: &mut ReadBuf<'_>) {
        let n = (self.out.len() - self.out_pos).min(buf.remaining());
        buf.put_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Literal8Reader<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                this.drain_into(buf);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let start = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let n = buf.filled().len() - start;
            if n == 0 {
                this.eof = true;
                this.filter.finish(&mut this.out);
                continue;
            }
            // Literal content (message bodies) is handed on where it was read.
            if this.filter.passes_through(n) {
                this.filter.skip(n);
                return Poll::Ready(Ok(()));
            }
            let read = buf.filled()[start..].to_vec();
            buf.set_filled(start);
            this.filter.feed(&read, &mut this.out);
            // Everything read may be held (a marker cut by the read): read on.
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Literal8Reader<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filter_chunks(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut f = Literal8Filter::default();
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            if f.passes_through(c.len()) {
                f.skip(c.len());
                out.extend_from_slice(c);
            } else {
                f.feed(c, &mut out);
            }
        }
        f.finish(&mut out);
        out
    }

    #[test]
    fn a_literal8_reads_as_a_literal_with_the_same_bytes() {
        let input = b"* 1 FETCH (UID 1 BODY[] ~{7}\r\na\0b~{1}\r\n)\r\nmr1 OK done\r\n";
        let want = b"* 1 FETCH (UID 1 BODY[] {7}\r\na\0b~{1}\r\n)\r\nmr1 OK done\r\n";
        for chunk in 1..input.len() {
            assert_eq!(filter_chunks(input, chunk), want.to_vec(), "chunk {chunk}");
        }
    }

    #[test]
    fn a_tilde_inside_a_literal_or_a_quoted_string_is_kept() {
        let input = b"* 1 FETCH (ENVELOPE (\"~{3}x\") BODY[] {6}\r\n~{1}\r\n)\r\n";
        assert_eq!(filter_chunks(input, 1), input.to_vec());
        assert_eq!(filter_chunks(input, 1000), input.to_vec());
    }

    #[test]
    fn near_misses_pass_unchanged() {
        for input in [
            &b"~~{2}\r\nab\r\n"[..],
            b"{{3}\r\nabc",
            b"~{}\r\n",
            b"~{12x}\r\n",
            b"~{99999999999999999999999}\r\n",
            b"ends with ~{4",
        ] {
            let out = filter_chunks(input, 1);
            let want: Vec<u8> = if input.starts_with(b"~~{2}") {
                b"~{2}\r\nab\r\n".to_vec()
            } else {
                input.to_vec()
            };
            assert_eq!(out, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    proptest! {
        /// Chunking never changes the result.
        #[test]
        fn chunking_does_not_matter(
            parts in proptest::collection::vec(
                prop_oneof![
                    "[a-z ~{}0-9\r\n]{0,12}".prop_map(|s| s.into_bytes()),
                    proptest::collection::vec(any::<u8>(), 0..20).prop_map(|body| {
                        let mut v = format!("~{{{}}}\r\n", body.len()).into_bytes();
                        v.extend(body);
                        v
                    }),
                ],
                0..8,
            ),
            chunk in 1usize..40,
        ) {
            let input: Vec<u8> = parts.concat();
            prop_assert_eq!(filter_chunks(&input, chunk), filter_chunks(&input, input.len().max(1)));
        }
    }
}
