//! The driver stdout framer (`run::lines::LineReader`), fed through a reader that hands the
//! bytes over in chunks of fuzzer-chosen sizes (a pipe's reads split lines anywhere).
//!
//! Input: a byte for the line cap (0–255 bytes, so the cap is hit often), a byte seeding the
//! chunk sizes, then the output. Asserts the framer's contract against a model: the lines
//! are the output split at `\n`, the last one only if not empty; a line longer than the cap
//! is `Oversize` with its exact length, every other `Full` without its line end (one trailing
//! `\r` dropped); the oversize count matches; a line's buffer is bounded by the cap and not kept.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use orgx_peer::run::lines::{Line, LineReader};
use tokio::io::{AsyncRead, ReadBuf};

/// Hands `data` over in chunks of 1–16 bytes, sizes drawn from a small generator.
struct Chunked<'a> {
    data: &'a [u8],
    state: u32,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.state = self.state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (self.state >> 16) as usize % 16).min(self.data.len()).min(buf.remaining());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}

fn model(data: &[u8], cap: usize) -> Vec<Line> {
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|l| if l.len() > cap { Line::Oversize { len: l.len() } } else { Line::Full(l.strip_suffix(b"\r").unwrap_or(l).to_vec()) })
        .collect()
}

fuzz_target!(|input: &[u8]| {
    let Some((&[cap, seed], data)) = input.split_first_chunk::<2>() else { return };
    let cap = cap as usize;
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let got = rt.block_on(async {
        let mut reader = LineReader::new(Chunked { data, state: u32::from(seed) }, cap);
        let mut got = Vec::new();
        while let Some(line) = reader.next().await.expect("reading from memory cannot fail") {
            if let Line::Full(l) = &line {
                // The line is the reader's buffer, handed over: what it held is bounded by the
                // cap (growth by doubling), never by the line the child printed.
                assert!(l.capacity() <= (2 * cap).max(8), "a buffer of {} bytes for a {cap}-byte cap", l.capacity());
            }
            assert_eq!(reader.buffer_capacity(), 0, "the reader kept a line's buffer");
            got.push(line);
        }
        let over = got.iter().filter(|l| matches!(l, Line::Oversize { .. })).count() as u64;
        assert_eq!(reader.oversize_count(), over);
        got
    });
    assert_eq!(got, model(data, cap));
});
