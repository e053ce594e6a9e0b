//! The frame guard (`src/rmb/frames.rs`) against tungstenite alone: the
//! same stream of WebSocket frames, as a relay would send it, read through
//! guard + tungstenite (as the relay client reads it: the guard's limit and
//! tungstenite's limits both at `limit`) and through tungstenite alone
//! (no message limit; frames capped at [`REFERENCE_FRAME_CAP`] so that a
//! declared length cannot make it reserve gigabytes), each delivered in
//! the same chunks. Shared by the fuzz target `frame_guard`, the property
//! test and the split-at-every-byte tests of `tests/it/frame_guard.rs`.
//!
//! The invariants, message by message (`R` tungstenite alone, `G` the
//! guarded read):
//! - nothing panics, and a read never stalls on a stream that is ready;
//! - `G` never delivers a data message over `limit`;
//! - the guard notes a data message exactly when it cut it, with a length
//!   over `limit`; the message it delivered in its place is of the same
//!   kind and a prefix of `R`'s (what passed before the cut, and for text
//!   the rest of a character the cut fell inside; a text fragment that is
//!   not the last is cut 3 bytes below the limit, to leave room for it);
//! - every other message of `G` is `R`'s, in the same place;
//! - `G` ends where `R` ends, the same way (both cleanly or both with an
//!   error), with one exception: at a message the guard cut that `R`
//!   never finished, because it failed inside the part the guard discarded
//!   unread (a protocol error or broken UTF-8 in a frame it skipped, a
//!   frame over `R`'s cap) or because the stream or a Close came before the
//!   message's last fragment; `G` then goes on past it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::WebSocketStream;
use zos_perf::rmb::frames::FrameGuard;

/// The upgrade answer the guard lets through before the frames.
pub const HTTP: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

/// The largest frame tungstenite alone is let read (it reserves a frame's
/// declared length at its header).
pub const REFERENCE_FRAME_CAP: usize = 8 << 20;

/// The limits the fuzz input picks from: at the boundaries of the length
/// encodings (control frames, 125 bytes at most, always fit).
pub const LIMITS: [usize; 8] = [125, 126, 127, 1000, 65_535, 65_536, 65_537, 70_000];

/// One frame to send.
#[derive(Debug, Clone)]
pub struct Frame {
    pub fin: bool,
    /// The three reserved bits (RSV1..3), as the top bits of byte 0.
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    /// The declared payload length.
    pub len: u64,
    /// The length field's form: `None` the shortest, else 7, 16 or 64 bits
    /// (a longer form than needed, or a length that does not fit).
    pub form: Option<u8>,
    /// What the payload is made of (see [`payload`]).
    pub fill: u8,
    /// Payload bytes actually sent (fewer than `len`: the stream ends
    /// inside this frame).
    pub sent: Option<usize>,
}

/// The bytes `from..from + len` of a payload by `fill`: ASCII for fill
/// < 0x80, two-byte UTF-8 (`é`) up to 0xc0, else arbitrary bytes (rarely
/// valid UTF-8). A message's fragments continue its pattern ([`encode`]),
/// so a character can be split between two fragments.
pub fn payload(fill: u8, from: usize, len: usize) -> Vec<u8> {
    let byte = |i: usize| match fill {
        0..=0x7f => b'a' + (i % 26) as u8,
        0x80..=0xbf => [0xc3, 0xa9][i % 2],
        _ => fill
            .wrapping_mul(31)
            .wrapping_add((i as u8).wrapping_mul(17)),
    };
    (from..from + len).map(byte).collect()
}

/// The wire bytes of `frames`.
pub fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    // Where the message being sent is in its payload pattern.
    let mut offset = 0;
    for f in frames {
        out.push(u8::from(f.fin) << 7 | (f.rsv & 7) << 4 | (f.opcode & 0x0f));
        let mask_bit = if f.mask.is_some() { 0x80 } else { 0 };
        let form = f.form.unwrap_or(match f.len {
            0..=125 => 7,
            126..=0xffff => 16,
            _ => 64,
        });
        match form {
            7 => out.push(mask_bit | (f.len.min(125) as u8)),
            16 => {
                out.push(mask_bit | 126);
                out.extend((f.len.min(0xffff) as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend(f.len.to_be_bytes());
            }
        }
        let declared = match form {
            7 => f.len.min(125),
            16 => f.len.min(0xffff),
            _ => f.len,
        };
        if let Some(key) = f.mask {
            out.extend(key);
        }
        let n = f.sent.map_or(declared, |s| (s as u64).min(declared)) as usize;
        let from = match f.opcode {
            0 => offset,
            _ => 0,
        };
        if f.opcode < 8 {
            offset = from + n;
        }
        let mut body = payload(f.fill, from, n);
        if let Some(key) = f.mask {
            for (i, b) in body.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        out.extend(body);
    }
    out
}

/// Fuzz input: `[limit, chunk count k, k chunk sizes, frames...]`, each
/// frame `[flags, length class, fill]` (see [`frame_of`]); with the top bit
/// of the chunk count set, the rest is the frame stream itself, raw.
pub fn check(data: &[u8]) {
    let Some((&l, rest)) = data.split_first() else {
        return;
    };
    let limit = LIMITS[usize::from(l) % LIMITS.len()];
    let Some((&k, rest)) = rest.split_first() else {
        return;
    };
    let n = usize::from(k & 7).min(rest.len());
    let chunks: Vec<usize> = rest[..n].iter().map(|&c| usize::from(c).max(1)).collect();
    let rest = &rest[n..];
    let stream = if k & 0x80 != 0 {
        rest.to_vec()
    } else {
        let mut frames = Vec::new();
        let mut specs = rest.chunks_exact(3);
        let mut total = 0u64;
        for s in specs.by_ref() {
            let f = frame_of([s[0], s[1], s[2]], limit);
            total += f.sent.map_or(f.len, |n| n as u64);
            if total > 4 << 20 {
                break;
            }
            frames.push(f);
        }
        let mut bytes = encode(&frames);
        bytes.extend(specs.remainder());
        bytes
    };
    compare(&stream, limit, &chunks);
}

/// A frame from three fuzz bytes. `flags`: bit 7 FIN, bit 6 masked, bits
/// 3..5 the opcode (continuation twice as often; 3 and 11 are reserved),
/// bits 0..2 = 7 sets RSV1, = 6 sends a length field longer than needed.
/// `class`: below 0x80 the length itself, else one of the boundaries
/// (125/126, 65535/65536, around `limit`, one not sent whole).
pub fn frame_of([flags, class, fill]: [u8; 3], limit: usize) -> Frame {
    const OPCODES: [u8; 8] = [0, 0, 1, 2, 9, 10, 8, 3];
    let limit = limit as u64;
    let boundaries = [
        125,
        126,
        127,
        65_535,
        65_536,
        65_537,
        limit - 1,
        limit,
        limit + 1,
        limit / 2,
        limit / 2 + 1,
        3 * limit,
        // Declared far past what is sent: the stream ends inside it.
        1 << 40,
        u64::MAX,
    ];
    let len = if class < 0x80 {
        u64::from(class)
    } else {
        boundaries[usize::from(class) % boundaries.len()]
    };
    let mut opcode = OPCODES[usize::from(flags >> 3 & 7)];
    if opcode == 3 && fill & 1 == 1 {
        opcode = 11; // a reserved control opcode
    }
    Frame {
        fin: flags & 0x80 != 0,
        rsv: if flags & 7 == 7 { 4 } else { 0 },
        opcode,
        mask: (flags & 0x40 != 0).then_some([fill, 0x5a, 0xa5, 0x3c]),
        len,
        form: (flags & 7 == 6).then_some(64),
        fill,
        sent: (len > 4 << 20).then_some(usize::from(fill)),
    }
}

/// What a read produced, message by message, and how it ended.
pub struct Outcome {
    pub messages: Vec<Message>,
    /// `None`: the stream ended cleanly (no more messages).
    pub error: Option<String>,
    /// For each message of `messages` that is a data message cut short by
    /// the guard: its noted length.
    pub cut: Vec<Option<u64>>,
}

/// Runs `stream` both ways in `chunks` (cycled; empty: all at once) and
/// checks the invariants. Data messages and control messages are compared
/// each in their own order: a Ping that arrives between the fragments of
/// a message comes out before that message from tungstenite alone, and
/// after it when the guard ended the message early.
pub fn compare(stream: &[u8], limit: usize, chunks: &[usize]) {
    let reference = read_alone(stream, chunks);
    let guarded = read_guarded(stream, limit, chunks);
    let context = || format!("limit {limit}, chunks {chunks:?}\nR: {reference:?}\nG: {guarded:?}");
    let (r_data, r_ctrl) = reference.split();
    let (g_data, g_ctrl) = guarded.split();
    for (m, _) in &g_data {
        assert!(
            m.len() <= limit,
            "a message over the limit passed: {}",
            context()
        );
    }
    for (i, ((g, cut), (r, _))) in g_data.iter().zip(&r_data).enumerate() {
        match cut {
            Some(len) => {
                // A text fragment that is not the last is cut 3 bytes early.
                let room = match g {
                    Message::Text(_) => limit - 3,
                    _ => limit,
                };
                assert!(
                    *len > room as u64,
                    "message {i} noted at {len}: {}",
                    context()
                );
                let prefix = match (g, r) {
                    // But for the character the guard completed at the cut.
                    (Message::Text(a), Message::Text(b)) => {
                        let last = a.char_indices().last().map_or(0, |(at, _)| at);
                        b.as_bytes().starts_with(&a.as_bytes()[..last])
                    }
                    (Message::Binary(a), Message::Binary(b)) => b.starts_with(a),
                    _ => false,
                };
                assert!(
                    prefix,
                    "message {i}, cut, is not a prefix of R's: {}",
                    context()
                );
                assert!(
                    r.len() as u64 >= *len,
                    "message {i} noted at {len}: {}",
                    context()
                );
            }
            None => assert_eq!(g, r, "data message {i}: {}", context()),
        }
    }
    for (i, (g, r)) in g_ctrl.iter().zip(&r_ctrl).enumerate() {
        assert_eq!(g, r, "control message {i}: {}", context());
    }
    let k = r_data.len();
    if g_data.len() > k {
        // Only past a message the guard cut, which tungstenite alone never
        // finished: it failed inside the part the guard discarded, or the
        // stream (or a Close) came before the message's last fragment.
        assert!(
            g_data[k].1.is_some(),
            "G went on past R's end: {}",
            context()
        );
        assert!(
            g_ctrl.len() >= r_ctrl.len(),
            "G lost a control message: {}",
            context()
        );
        return;
    }
    assert_eq!(g_data.len(), k, "G ended early: {}", context());
    assert_eq!(
        g_ctrl.len(),
        r_ctrl.len(),
        "control messages differ: {}",
        context()
    );
    assert_eq!(
        guarded.error.is_some(),
        reference.error.is_some(),
        "the ends differ: {}",
        context()
    );
    for (i, ((_, cut), (r, _))) in g_data.iter().zip(&r_data).enumerate() {
        // Text within 3 bytes of the limit may be cut (see above).
        let maybe = matches!(r, Message::Text(_)) && r.len() > limit - 3 && r.len() <= limit;
        if !maybe {
            assert_eq!(
                r.len() > limit,
                cut.is_some(),
                "message {i} cut or not: {}",
                context()
            );
        }
    }
}

/// Each message as its kind and length (a failure shows them all).
impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = |m: &Message| match m {
            Message::Text(_) => "text",
            Message::Binary(_) => "binary",
            Message::Ping(_) => "ping",
            Message::Pong(_) => "pong",
            Message::Close(_) => "close",
            Message::Frame(_) => "frame",
        };
        let shown: Vec<String> = self
            .messages
            .iter()
            .zip(&self.cut)
            .map(|(m, cut)| match cut {
                Some(n) => format!("{} {} (cut, noted {n})", kind(m), m.len()),
                None => format!("{} {}", kind(m), m.len()),
            })
            .collect();
        write!(f, "{shown:?}, then {:?}", self.error)
    }
}

impl Outcome {
    /// The data messages (each with its note) and the control messages.
    fn split(&self) -> (Vec<(&Message, Option<u64>)>, Vec<&Message>) {
        let (mut data, mut ctrl) = (Vec::new(), Vec::new());
        for (m, cut) in self.messages.iter().zip(&self.cut) {
            match m {
                Message::Text(_) | Message::Binary(_) => data.push((m, *cut)),
                _ => ctrl.push(m),
            }
        }
        (data, ctrl)
    }
}

/// tungstenite alone.
pub fn read_alone(stream: &[u8], chunks: &[usize]) -> Outcome {
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(Some(REFERENCE_FRAME_CAP));
    let io = Chunked::new(stream, chunks);
    read(io, config, None)
}

/// guard + tungstenite, as `rmb::relay_link` sets them up.
pub fn read_guarded(stream: &[u8], limit: usize, chunks: &[usize]) -> Outcome {
    let mut bytes = HTTP.to_vec();
    bytes.extend_from_slice(stream);
    let mut guard = FrameGuard::new(Chunked::new(&bytes, chunks), limit);
    // The upgrade answer passes first, byte for byte.
    let mut head = vec![0u8; HTTP.len()];
    let mut got = 0;
    while got < HTTP.len() {
        let mut buf = ReadBuf::new(&mut head[got..]);
        match poll_once(|cx| Pin::new(&mut guard).poll_read(cx, &mut buf)) {
            Ok(()) if !buf.filled().is_empty() => got += buf.filled().len(),
            other => panic!("the upgrade answer did not pass: {other:?}"),
        }
    }
    assert_eq!(head, HTTP, "the upgrade answer changed");
    let oversized = guard.oversized();
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    read(guard, config, Some(oversized))
}

fn read<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    config: WebSocketConfig,
    oversized: Option<zos_perf::rmb::frames::Oversized>,
) -> Outcome {
    let mut ws = poll_future(WebSocketStream::from_raw_socket(
        io,
        Role::Client,
        Some(config),
    ));
    let mut out = Outcome {
        messages: Vec::new(),
        error: None,
        cut: Vec::new(),
    };
    let mut data = 0u64;
    loop {
        match poll_once(|cx| ws.poll_next_unpin(cx)) {
            None => break,
            Some(Ok(m)) => {
                let cut = match (&m, &oversized) {
                    (Message::Text(_) | Message::Binary(_), Some(o)) => {
                        data += 1;
                        o.take(data - 1)
                    }
                    (Message::Text(_) | Message::Binary(_), None) => {
                        data += 1;
                        None
                    }
                    _ => None,
                };
                out.messages.push(m);
                out.cut.push(cut);
            }
            Some(Err(Error::ConnectionClosed | Error::AlreadyClosed)) => break,
            Some(Err(e)) => {
                out.error = Some(e.to_string());
                break;
            }
        }
    }
    out
}

/// Polls until ready: every stream here is in memory and always ready, so
/// `Pending` more than a few times in a row means a read that stalls.
fn poll_once<T>(mut f: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        if let Poll::Ready(v) = f(&mut cx) {
            return v;
        }
    }
    panic!("a read on a ready stream stayed pending");
}

fn poll_future<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    poll_once(|cx| f.as_mut().poll(cx))
}

/// An in-memory connection handing its bytes out in the given chunk sizes
/// (cycled), then end of stream; what is written to it is dropped.
pub struct Chunked {
    data: Vec<u8>,
    at: usize,
    chunks: Vec<usize>,
    next: usize,
}

impl Chunked {
    pub fn new(data: &[u8], chunks: &[usize]) -> Chunked {
        Chunked {
            data: data.to_vec(),
            at: 0,
            chunks: chunks.iter().map(|&c| c.max(1)).collect(),
            next: 0,
        }
    }
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        let chunk = match me.chunks.len() {
            0 => usize::MAX,
            n => me.chunks[me.next % n],
        };
        me.next += 1;
        let n = chunk.min(buf.remaining()).min(me.data.len() - me.at);
        buf.put_slice(&me.data[me.at..me.at + n]);
        me.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Chunked {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
