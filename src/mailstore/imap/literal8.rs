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

/// The byte filter, working in place: fed what the server sent in any chunks, it leaves in
/// each chunk what the parser should see, and keeps back the few bytes of a marker a chunk
/// cuts (they are put in front of the next one).
#[derive(Debug, Default)]
pub struct Literal8Filter {
    /// Bytes of a possible literal marker (`~{12}\r` so far) that ended the last chunk.
    held: Vec<u8>,
    /// Bytes of the literal being passed through.
    literal_left: u64,
}

/// Longest literal size we read as a size (20 digits hold any u64).
const MAX_DIGITS: usize = 20;

enum Marker {
    /// The bytes end before the marker does: all of them may still be one.
    Partial,
    /// A marker of this many bytes announcing a literal of this many bytes.
    Complete { len: usize, literal: u64 },
    /// Not a marker.
    No,
}

/// Whether `bytes` start with `~{digits}\r\n` or `{digits}\r\n`.
fn marker(bytes: &[u8]) -> Marker {
    let mut i = usize::from(bytes.first() == Some(&b'~'));
    match bytes.get(i) {
        None => return Marker::Partial,
        Some(b'{') => i += 1,
        Some(_) => return Marker::No,
    }
    let digits_from = i;
    while let Some(b) = bytes.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        i += 1;
        if i - digits_from > MAX_DIGITS {
            return Marker::No;
        }
    }
    let digits = &bytes[digits_from..i];
    for want in [b'}', b'\r', b'\n'] {
        match bytes.get(i) {
            None => return Marker::Partial,
            Some(b) if *b == want && !digits.is_empty() => i += 1,
            Some(_) => return Marker::No,
        }
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .map_or(Marker::No, |literal| Marker::Complete { len: i, literal })
}

impl Literal8Filter {
    /// Bytes kept back from the last chunk, to be put in front of the next one.
    pub fn take_held(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    /// Filters `data` in place (the held bytes of the last chunk already in front of it) and
    /// returns how many bytes at its start are the output. A marker cut by the end of `data`
    /// is kept back; `last` (end of stream) passes everything.
    pub fn filter(&mut self, data: &mut [u8], last: bool) -> usize {
        let (mut r, mut w) = (0, 0);
        while r < data.len() {
            if self.literal_left > 0 {
                let n = self.literal_left.min((data.len() - r) as u64) as usize;
                if w != r {
                    data.copy_within(r..r + n, w);
                }
                r += n;
                w += n;
                self.literal_left -= n as u64;
                continue;
            }
            let byte = data[r];
            if byte == b'~' || byte == b'{' {
                match marker(&data[r..]) {
                    Marker::Complete { len, literal } => {
                        let from = r + usize::from(byte == b'~');
                        data.copy_within(from..r + len, w);
                        w += r + len - from;
                        r += len;
                        self.literal_left = literal;
                        continue;
                    }
                    Marker::Partial if !last => {
                        self.held.extend_from_slice(&data[r..]);
                        return w;
                    }
                    Marker::Partial | Marker::No => {}
                }
            }
            data[w] = byte;
            w += 1;
            r += 1;
        }
        w
    }
}

/// A stream whose reads go through a [`Literal8Filter`]; writes pass through.
#[derive(Debug)]
pub struct Literal8Reader<S> {
    inner: S,
    filter: Literal8Filter,
    /// Filtered bytes a small read buffer had no room for (see `poll_small`).
    spill: Vec<u8>,
}

impl<S> Literal8Reader<S> {
    pub fn new(inner: S) -> Literal8Reader<S> {
        Literal8Reader {
            inner,
            filter: Literal8Filter::default(),
            spill: Vec::new(),
        }
    }

    /// The stream back. Call only between responses (nothing held or pending).
    pub fn into_inner(self) -> S {
        self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> Literal8Reader<S> {
    /// Reads a few bytes into a buffer of our own behind the held ones and filters them into
    /// `spill`: for a reader whose buffer has less room than the held bytes take.
    fn poll_small(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut small = [0u8; 64];
        let mut rb = ReadBuf::new(&mut small);
        match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let eof = rb.filled().is_empty();
        let mut data = self.filter.take_held();
        data.extend_from_slice(rb.filled());
        let kept = self.filter.filter(&mut data, eof);
        data.truncate(kept);
        self.spill = data;
        Poll::Ready(Ok(()))
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
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if !this.spill.is_empty() {
                let n = this.spill.len().min(buf.remaining());
                buf.put_slice(&this.spill[..n]);
                this.spill.drain(..n);
                return Poll::Ready(Ok(()));
            }
            let start = buf.filled().len();
            let held = this.filter.take_held();
            if held.len() >= buf.remaining() {
                // No room to read behind the held bytes: read a little aside.
                this.filter.held = held;
                match this.poll_small(cx) {
                    Poll::Ready(Ok(())) => continue,
                    other => return other,
                }
            }
            buf.put_slice(&held);
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Pending => {
                    buf.set_filled(start);
                    this.filter.held = held;
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    buf.set_filled(start);
                    this.filter.held = held;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) => {}
            }
            let eof = buf.filled().len() == before;
            let end = buf.filled().len();
            let kept = this.filter.filter(&mut buf.filled_mut()[start..end], eof);
            buf.set_filled(start + kept);
            // Everything read may be held (a marker cut by the read): read on. At the end of
            // the stream nothing is held.
            if kept > 0 || eof {
                return Poll::Ready(Ok(()));
            }
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
        let chunks: Vec<&[u8]> = input.chunks(chunk.max(1)).collect();
        for (i, c) in chunks.iter().enumerate() {
            let mut data = f.take_held();
            data.extend_from_slice(c);
            let n = f.filter(&mut data, i + 1 == chunks.len());
            out.extend_from_slice(&data[..n]);
        }
        let mut rest = f.take_held();
        let n = f.filter(&mut rest, true);
        out.extend_from_slice(&rest[..n]);
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

    /// A stream that hands out its bytes in the given chunk sizes.
    struct Chunked {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let size = this
                .sizes
                .get(this.at % this.sizes.len().max(1))
                .copied()
                .unwrap_or(1);
            let from = this.data.len().min(this.at);
            let n = size.min(buf.remaining()).min(this.data.len() - from);
            buf.put_slice(&this.data[from..from + n]);
            this.at += n.max(1);
            Poll::Ready(Ok(()))
        }
    }

    /// Through the reader, in reads of any size, the same bytes as the filter gives.
    #[test]
    fn the_reader_gives_what_the_filter_gives() {
        use tokio::io::AsyncReadExt;
        let input = b"* 1 FETCH (BODY[] ~{7}\r\na\0b~{1}\r\n)\r\n* 2 FETCH (BODY[] {3}\r\n~{}\r\nmr1 OK\r\n".to_vec();
        let want = filter_chunks(&input, input.len());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for sizes in [vec![1], vec![2, 3], vec![5, 1, 7], vec![1000]] {
            for buf_size in [3usize, 8, 64] {
                let mut reader = Literal8Reader::new(Chunked {
                    data: input.clone(),
                    at: 0,
                    sizes: sizes.clone(),
                });
                let mut out = Vec::new();
                let mut buf = vec![0u8; buf_size];
                rt.block_on(async {
                    loop {
                        let n = reader.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        out.extend_from_slice(&buf[..n]);
                    }
                });
                assert_eq!(out, want, "reads {sizes:?}, buffer {buf_size}");
            }
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
