//! Driver stdout framed into lines, with a hard cap per line.
//!
//! A line is bytes up to `\n` (a trailing `\r` is dropped); it need not be UTF-8 — what it
//! means is the mapper's business. A line longer than the cap is skipped and reported as
//! `Oversize` with its length, without ever being held in memory: past the cap the reader
//! only counts bytes until the next newline, so memory stays bounded by the cap plus the
//! read buffer whatever the child prints.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Read buffer size: large enough that multi-megabyte lines take few reads.
const READ_BUF: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its line ending.
    Full(Vec<u8>),
    /// A line longer than the cap, skipped; `len` is its length in bytes.
    Oversize { len: usize },
}

pub struct LineReader<R> {
    inner: BufReader<R>,
    max_line_bytes: usize,
    buf: Vec<u8>,
    oversize: u64,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(reader: R, max_line_bytes: usize) -> Self {
        LineReader { inner: BufReader::with_capacity(READ_BUF, reader), max_line_bytes, buf: Vec::new(), oversize: 0 }
    }

    /// How many oversize lines were skipped so far.
    pub fn oversize_count(&self) -> u64 {
        self.oversize
    }

    /// The next line, or `None` at end of input.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        self.buf.clear();
        let mut len = 0usize;
        let mut over = false;
        let mut saw_any = false;
        loop {
            let avail = self.inner.fill_buf().await?;
            if avail.is_empty() {
                if !saw_any {
                    return Ok(None);
                }
                break;
            }
            saw_any = true;
            let (chunk, used, end) = match memchr::memchr(b'\n', avail) {
                Some(i) => (&avail[..i], i + 1, true),
                None => (avail, avail.len(), false),
            };
            len += chunk.len();
            if !over {
                if len > self.max_line_bytes {
                    over = true;
                    // Give the memory back: an oversize line must not pin its buffer.
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            self.inner.consume(used);
            if end {
                break;
            }
        }
        if over {
            self.oversize += 1;
            return Ok(Some(Line::Oversize { len }));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(Line::Full(std::mem::take(&mut self.buf))))
    }

    /// Capacity of the line buffer (tests check memory stays bounded).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next().await.unwrap() {
            out.push(l);
        }
        out
    }

    fn full(s: &[u8]) -> Line {
        Line::Full(s.to_vec())
    }

    #[tokio::test]
    async fn framing_table() {
        assert_eq!(all(b"", 10).await, vec![]);
        assert_eq!(all(b"a\nb\n", 10).await, vec![full(b"a"), full(b"b")]);
        assert_eq!(all(b"a\r\nb", 10).await, vec![full(b"a"), full(b"b")], "CRLF, and a last line without newline");
        assert_eq!(all(b"\n\n", 10).await, vec![full(b""), full(b"")]);
        assert_eq!(all(b"\xff\xfe\n", 10).await, vec![full(b"\xff\xfe")], "bytes, not text");
        assert_eq!(all(b"0123456789\n", 10).await, vec![full(b"0123456789")], "exactly the cap fits");
        assert_eq!(all(b"0123456789A\nok\n", 10).await, vec![Line::Oversize { len: 11 }, full(b"ok")]);
    }

    #[tokio::test]
    async fn a_20_mib_line_is_skipped_with_bounded_memory() {
        let mut input = vec![b'x'; 20 << 20];
        input.extend_from_slice(b"\nnext\n");
        let mut r = LineReader::new(&input[..], 1 << 20);
        assert_eq!(r.next().await.unwrap(), Some(Line::Oversize { len: 20 << 20 }));
        assert!(r.buffer_capacity() <= (1 << 20) + READ_BUF, "buffer {}", r.buffer_capacity());
        assert_eq!(r.next().await.unwrap(), Some(full(b"next")));
        assert_eq!(r.oversize_count(), 1);
        assert_eq!(r.next().await.unwrap(), None);
    }
}
