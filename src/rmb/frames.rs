//! A guard under the WebSocket layer of a relay connection that skips
//! frames over the size limit without reading them into memory, so one
//! huge frame costs neither memory nor the connection.
//!
//! tungstenite refuses a frame over its limit with an error after which
//! the connection cannot be read any more (and reading on would buffer the
//! whole frame), so a sender could knock a server off its relay with one
//! big envelope. The guard reads the byte stream first: it lets the HTTP
//! upgrade answer through, then follows the frame headers. A data message
//! that would grow past the limit has the rest of its bytes discarded as
//! they arrive and is ended, for tungstenite, by an empty final frame of
//! its own making; the message's place in the stream and its length are
//! noted ([`Oversized`]), so the reader reports it as skipped instead of
//! parsing what it got. A text message cut after a fragment that ends
//! inside a character gets that character completed in the closing frame:
//! tungstenite checks the text of the fragments it was given, and an
//! incomplete character at the end would cost the connection (so a text
//! fragment that is not the last must leave 3 bytes of room below the
//! limit for it).
//!
//! Control frames pass as they are (tungstenite bounds those itself).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Messages the guard cut short: `(index among data messages, length)`.
#[derive(Debug, Clone, Default)]
pub struct Oversized(Arc<Mutex<VecDeque<(u64, u64)>>>);

impl Oversized {
    /// Whether data message number `index` (counting from 0) was cut
    /// short, and how long it was (at least).
    pub fn take(&self, index: u64) -> Option<u64> {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match q.front() {
            Some((i, len)) if *i == index => {
                let len = *len;
                q.pop_front();
                Some(len)
            }
            _ => None,
        }
    }

    fn note(&self, index: u64, len: u64) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((index, len));
    }
}

#[derive(Clone, Copy)]
enum State {
    /// The HTTP upgrade answer: bytes pass until its blank line (`matched`
    /// bytes of `\r\n\r\n` seen so far).
    Http { matched: usize },
    /// Gathering a frame header.
    Header,
    /// Passing `left` payload bytes through.
    Pass { left: u64 },
    /// Discarding `left` payload bytes.
    Skip { left: u64 },
}

/// The stream with the guard on its read side.
pub struct FrameGuard<S> {
    inner: S,
    limit: u64,
    state: State,
    header: Vec<u8>,
    /// Bytes ready for the reader.
    out: VecDeque<u8>,
    scratch: Box<[u8]>,
    /// Length of the data message being passed so far.
    message_len: u64,
    /// Discarding the rest of a message cut short.
    skipping: bool,
    /// Data messages completed so far (passed or cut short).
    messages: u64,
    /// The data message being passed is text; the frame being passed is
    /// one of its fragments.
    text: bool,
    passing_text: bool,
    /// The last character of the text passed so far: its first byte, the
    /// bytes of it seen and the bytes it still needs.
    utf8: (u8, u8, u8),
    oversized: Oversized,
}

impl<S> FrameGuard<S> {
    pub fn new(inner: S, limit: usize) -> FrameGuard<S> {
        FrameGuard {
            inner,
            limit: limit as u64,
            state: State::Http { matched: 0 },
            header: Vec::with_capacity(14),
            out: VecDeque::new(),
            scratch: vec![0u8; 16 * 1024].into_boxed_slice(),
            message_len: 0,
            skipping: false,
            messages: 0,
            text: false,
            passing_text: false,
            utf8: (0, 0, 0),
            oversized: Oversized::default(),
        }
    }

    /// Where the messages cut short are noted.
    pub fn oversized(&self) -> Oversized {
        self.oversized.clone()
    }

    /// Runs `bytes` (as read) through the state machine into `out`.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Http { matched } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.out.push_back(b);
                    let matched = match (b, matched) {
                        (b'\r', 0 | 2) | (b'\n', 1 | 3) => matched + 1,
                        (b'\r', _) => 1,
                        _ => 0,
                    };
                    self.state = if matched == 4 {
                        State::Header
                    } else {
                        State::Http { matched }
                    };
                }
                State::Header => {
                    self.header.push(bytes[0]);
                    bytes = &bytes[1..];
                    if let Some(len) = header_len(&self.header) {
                        self.frame(len);
                    }
                }
                State::Pass { left } | State::Skip { left } => {
                    let pass = matches!(self.state, State::Pass { .. });
                    let n = left.min(bytes.len() as u64) as usize;
                    if pass {
                        self.out.extend(&bytes[..n]);
                        if self.passing_text {
                            self.follow_text(&bytes[..n]);
                        }
                    }
                    bytes = &bytes[n..];
                    self.state = next_state(left - n as u64, !pass);
                }
            }
        }
    }

    /// A whole header is in `self.header`, its payload `len` bytes long.
    fn frame(&mut self, len: u64) {
        let (fin, opcode) = (self.header[0] & 0x80 != 0, self.header[0] & 0x0f);
        let data = opcode <= 2;
        self.passing_text = false;
        if !data {
            self.out.extend(&self.header);
            self.state = next_state(len, false);
        } else if self.skipping && opcode == 0 {
            // The rest of a message already cut short and ended.
            self.skipping = !fin;
            self.state = next_state(len, true);
        } else {
            self.skipping = false;
            let so_far = if opcode == 0 { self.message_len } else { 0 };
            let total = so_far.saturating_add(len);
            if opcode != 0 {
                self.text = opcode == 1;
                self.utf8 = (0, 0, 0);
            }
            // A text fragment that is not the last leaves room for the
            // character the cut may have to complete (at most 3 bytes):
            // tungstenite bounds the message at the same limit.
            let room = if self.text && !fin {
                self.limit.saturating_sub(3)
            } else {
                self.limit
            };
            if total > room {
                // Ends the message here with a final frame of the same kind,
                // empty but for the rest of a character the text passed so
                // far ends inside; its remaining fragments are discarded.
                let end = if opcode == 0 && self.text {
                    self.utf8_completion()
                } else {
                    Vec::new()
                };
                self.out.extend([0x80 | opcode, end.len() as u8]);
                self.out.extend(end);
                self.oversized.note(self.messages, total);
                self.messages += 1;
                self.message_len = 0;
                self.skipping = !fin;
                self.state = next_state(len, true);
            } else {
                self.out.extend(&self.header);
                self.passing_text = self.text;
                self.message_len = if fin { 0 } else { total };
                if fin {
                    self.messages += 1;
                }
                self.state = next_state(len, false);
            }
        }
        self.header.clear();
    }
}

impl<S> FrameGuard<S> {
    /// Follows the characters of text bytes passed (valid UTF-8 so far, or
    /// tungstenite has refused them already).
    fn follow_text(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let (lead, seen, need) = self.utf8;
            self.utf8 = match (need, b) {
                (0, 0xc0..=0xdf) => (b, 1, 1),
                (0, 0xe0..=0xef) => (b, 1, 2),
                (0, 0xf0..=0xf7) => (b, 1, 3),
                (0, _) => (0, 0, 0),
                (n, _) => (lead, seen + 1, n - 1),
            };
        }
    }

    /// The bytes that complete the character the text passed so far ends
    /// inside (none when it ends on a whole one): continuation bytes, the
    /// first one in the range the lead byte allows.
    fn utf8_completion(&self) -> Vec<u8> {
        let (lead, seen, need) = self.utf8;
        (0..need)
            .map(|i| match (i, seen, lead) {
                (0, 1, 0xe0) => 0xa0,
                (0, 1, 0xf0) => 0x90,
                _ => 0x80,
            })
            .collect()
    }
}

fn next_state(len: u64, skip: bool) -> State {
    match (len, skip) {
        (0, _) => State::Header,
        (left, true) => State::Skip { left },
        (left, false) => State::Pass { left },
    }
}

/// The payload length (mask key included) once `h` holds a whole frame
/// header, `None` while it needs more bytes.
fn header_len(h: &[u8]) -> Option<u64> {
    if h.len() < 2 {
        return None;
    }
    let masked = h[1] & 0x80 != 0;
    let (ext, short) = match h[1] & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let mask = if masked { 4 } else { 0 };
    if h.len() < 2 + ext + mask {
        return None;
    }
    let len = short.unwrap_or_else(|| {
        h[2..2 + ext]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    });
    Some(len.saturating_add(mask as u64))
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        while me.out.is_empty() {
            let mut scratch = std::mem::take(&mut me.scratch);
            let mut read = ReadBuf::new(&mut scratch);
            let polled = Pin::new(&mut me.inner).poll_read(cx, &mut read);
            let n = read.filled().len();
            if let Poll::Ready(Ok(())) = polled {
                me.feed(&scratch[..n]);
            }
            me.scratch = scratch;
            ready!(polled)?;
            if n == 0 {
                return Poll::Ready(Ok(())); // end of stream
            }
        }
        let n = buf.remaining().min(me.out.len());
        let (a, b) = me.out.as_slices();
        let from_a = n.min(a.len());
        buf.put_slice(&a[..from_a]);
        buf.put_slice(&b[..n - from_a]);
        me.out.drain(..n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A frame as a server sends it (unmasked).
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend((n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend((n as u64).to_be_bytes());
            }
        }
        f.extend(payload);
        f
    }

    /// Reads `input` through a guard of `limit`, `chunk` bytes per read.
    async fn through(input: &[u8], limit: usize, chunk: usize) -> (Vec<u8>, Oversized) {
        let (mut tx, rx) = tokio::io::duplex(chunk);
        let mut guard = FrameGuard::new(rx, limit);
        let notes = guard.oversized();
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tx.write_all(&input).await.expect("write");
        });
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.expect("read");
        writer.await.expect("writer");
        (out, notes)
    }

    const HTTP: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

    #[tokio::test]
    async fn frames_over_the_limit_become_empty_messages_and_are_noted() {
        for chunk in [1, 7, 4096] {
            let mut input = HTTP.to_vec();
            input.extend(frame(true, 2, b"first"));
            input.extend(frame(true, 9, b"ping"));
            input.extend(frame(true, 2, &[7u8; 300]));
            input.extend(frame(true, 2, &[8u8; 70_000]));
            input.extend(frame(true, 2, b"last"));
            let (out, notes) = through(&input, 100, chunk).await;
            let mut want = HTTP.to_vec();
            want.extend(frame(true, 2, b"first"));
            want.extend(frame(true, 9, b"ping"));
            want.extend([0x82, 0]);
            want.extend([0x82, 0]);
            want.extend(frame(true, 2, b"last"));
            assert_eq!(out, want, "chunk {chunk}");
            assert_eq!(notes.take(0), None);
            assert_eq!(notes.take(1), Some(300));
            assert_eq!(notes.take(2), Some(70_000));
            assert_eq!(notes.take(3), None);
        }
    }

    #[tokio::test]
    async fn a_fragmented_message_growing_past_the_limit_is_cut_and_its_rest_discarded() {
        let mut input = HTTP.to_vec();
        input.extend(frame(false, 2, &[1u8; 60]));
        input.extend(frame(false, 0, &[2u8; 60]));
        input.extend(frame(false, 0, &[3u8; 10]));
        input.extend(frame(true, 0, &[4u8; 10]));
        input.extend(frame(false, 2, &[5u8; 10]));
        input.extend(frame(true, 0, &[6u8; 10]));
        let (out, notes) = through(&input, 100, 3).await;
        let mut want = HTTP.to_vec();
        want.extend(frame(false, 2, &[1u8; 60]));
        want.extend([0x80, 0]);
        want.extend(frame(false, 2, &[5u8; 10]));
        want.extend(frame(true, 0, &[6u8; 10]));
        assert_eq!(out, want);
        assert_eq!(notes.take(0), Some(120));
        assert_eq!(notes.take(1), None);
    }
}
