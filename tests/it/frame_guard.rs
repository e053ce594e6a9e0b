//! The frame guard under the relay connection (`src/rmb/frames.rs`),
//! proven against tungstenite alone: random frame streams (fragmented,
//! masked, reserved bits and opcodes, control frames between fragments,
//! lengths at every boundary of the encodings and of the limit, streams
//! that end inside a frame) in random chunks, and hand-made streams split
//! at every byte, each read through guard + tungstenite and through
//! tungstenite alone, compared by the checks the fuzz target `frame_guard`
//! runs (fuzz/checks/frame_guard.rs). And the relay connection never
//! negotiates permessage-deflate: the guard reads frame lengths on the
//! wire, which compression would make meaningless.

// The check the fuzz target runs (fuzz/checks/frame_guard.rs), compiled
// once for the test binary by `fuzz_regressions`.
use crate::fuzz_regressions::frame_guard;

use frame_guard::{compare, encode, Frame};
use proptest::prelude::*;

fn frame(fin: bool, opcode: u8, len: u64, fill: u8) -> Frame {
    Frame {
        fin,
        rsv: 0,
        opcode,
        mask: None,
        len,
        form: None,
        fill,
        sent: None,
    }
}

/// A message of `kind` (1 text, 2 binary) in fragments of `lens`, with a
/// Ping before each fragment but the first when `pings`.
fn message(kind: u8, lens: &[u64], fill: u8, pings: bool) -> Vec<Frame> {
    let mut frames = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        if pings && i > 0 {
            frames.push(frame(true, 9, i as u64, b'p'));
        }
        let opcode = if i == 0 { kind } else { 0 };
        frames.push(frame(i + 1 == lens.len(), opcode, len, fill));
    }
    frames
}

/// Every way the guard cuts or passes a message at `limit`, in one stream.
fn boundaries(limit: u64) -> Vec<Frame> {
    let mut frames = Vec::new();
    for len in [0, 1, 125, 126, limit - 1, limit, limit + 1] {
        frames.extend(message(2, &[len], 0x20, false));
        frames.extend(message(1, &[len], 0x90, false));
    }
    // Fragmented: crossing the limit on the second, the last, the first fragment.
    frames.extend(message(2, &[limit / 2, limit / 2 + 1, 3], 0x41, true));
    frames.extend(message(1, &[limit - 1, 1], 0x10, true));
    frames.extend(message(1, &[limit - 1, 2, 5], 0x10, true));
    frames.extend(message(2, &[limit + 1, 7], 0x42, true));
    frames.extend(message(2, &[limit / 3, limit / 3, limit / 3], 0x43, true));
    // Text cut after a fragment that ends inside a two-byte character.
    frames.extend(message(1, &[3, limit], 0x90, true));
    frames.push(frame(true, 10, 3, b'q'));
    frames.extend(message(1, &[5], 0x11, false));
    frames.push(frame(true, 8, 2, 0x03));
    frames
}

/// Each boundary stream, split in two at every byte (and cycled at that
/// size), through both readers.
#[test]
fn boundary_streams_split_at_every_byte_agree() {
    for limit in [125u64, 126, 200] {
        let stream = encode(&boundaries(limit));
        for at in 1..=stream.len() + frame_guard::HTTP.len() {
            compare(&stream, limit as usize, &[at, usize::MAX]);
        }
    }
}

/// The 16- and 64-bit length boundaries, read a byte at a time and whole.
#[test]
fn the_long_length_forms_agree_a_byte_at_a_time() {
    for limit in [65_535u64, 65_536, 70_000] {
        let mut frames = Vec::new();
        for len in [65_535u64, 65_536, 65_537, limit] {
            frames.extend(message(2, &[len], 0x33, false));
        }
        frames.extend(message(2, &[65_535, 1], 0x34, true));
        frames.extend(message(1, &[40_000, 40_000], 0x91, true));
        // Found by the property test: text that fills the limit exactly and
        // ends inside a character, then goes on.
        frames.extend(message(1, &[limit, 19], 0x80, false));
        frames.extend(message(1, &[limit - 2, 19], 0x80, false));
        let stream = encode(&frames);
        compare(&stream, limit as usize, &[]);
        compare(&stream, limit as usize, &[1]);
        compare(&stream, limit as usize, &[7, 4096, 1]);
    }
}

/// What proptest draws: a frame (any, valid or not) or a whole message
/// (fragments, control frames between them).
#[derive(Debug, Clone)]
enum Piece {
    Frame(Frame),
    Message {
        kind: u8,
        lens: Vec<u64>,
        fill: u8,
        pings: bool,
    },
}

fn length(limit: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..130,
        1 => prop::sample::select(vec![
            125, 126, 127, 65_535, 65_536, 65_537, limit - 1, limit, limit + 1, limit / 2,
        ]),
    ]
}

fn any_frame(limit: u64) -> impl Strategy<Value = Frame> {
    (
        any::<bool>(),
        prop::sample::select(vec![0u8, 0, 4, 2, 1]),
        prop::sample::select(vec![0u8, 0, 1, 2, 8, 9, 10, 3, 11]),
        prop::option::weighted(0.15, any::<[u8; 4]>()),
        prop_oneof![9 => length(limit), 1 => Just(1u64 << 40)],
        prop::option::weighted(0.1, prop::sample::select(vec![16u8, 64])),
        any::<u8>(),
        prop::option::weighted(0.1, 0usize..200),
    )
        .prop_map(|(fin, rsv, opcode, mask, len, form, fill, sent)| {
            // A control frame over 125 bytes is refused at once: keep most of
            // them readable, so the reading goes on.
            let len = if opcode >= 8 && len > 125 {
                len % 126
            } else {
                len
            };
            // Declared far past what is sent: the stream ends inside it.
            let sent = if len > 1 << 30 {
                Some(sent.unwrap_or(0))
            } else {
                sent
            };
            Frame {
                fin,
                rsv,
                opcode,
                mask,
                len,
                form: form.filter(|&f| f == 64 || len <= 0xffff),
                fill,
                sent,
            }
        })
}

fn piece(limit: u64) -> impl Strategy<Value = Piece> {
    prop_oneof![
        1 => any_frame(limit).prop_map(Piece::Frame),
        3 => (
            1u8..=2,
            prop::collection::vec(length(limit), 1..4),
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(kind, lens, fill, pings)| Piece::Message { kind, lens, fill, pings }),
    ]
}

fn stream() -> impl Strategy<Value = (usize, Vec<Piece>, Vec<usize>)> {
    prop::sample::select(frame_guard::LIMITS.to_vec()).prop_flat_map(|limit| {
        (
            Just(limit),
            prop::collection::vec(piece(limit as u64), 0..10),
            prop::collection::vec(1usize..300, 0..4),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_streams_read_the_same_with_and_without_the_guard(
        (limit, pieces, chunks) in stream()
    ) {
        let mut frames = Vec::new();
        for p in pieces {
            match p {
                Piece::Frame(f) => frames.push(f),
                Piece::Message { kind, lens, fill, pings } => {
                    frames.extend(message(kind, &lens, fill, pings))
                }
            }
        }
        compare(&encode(&frames), limit, &chunks);
    }
}

/// The fuzz target's input format reaches the same checks: a few inputs,
/// so a change to the format that breaks it shows here too.
#[test]
fn fuzz_inputs_decode_and_agree() {
    frame_guard::check(&[]);
    frame_guard::check(&[0, 0x81, 1]);
    frame_guard::check(&[
        3, 2, 1, 200, 0x90, 0x85, 0x41, 0x00, 0x86, 0x42, 0x88, 0, 0, 0x80, 3, 0x10,
    ]);
    frame_guard::check(&[4, 0x80, 0x82, 0x7e, 0xff, 0xff]);
}

mod deflate {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use zos_perf::rmb::relay_link::{self, Event, RelayOptions};
    use zos_perf::rmb::{Identity, KeyType};

    /// The relay client never offers permessage-deflate, and a relay that
    /// answers with it anyway and sends a compressed frame (RSV1 set) gets
    /// the connection closed, not a message read. Either half fails if the
    /// extension is ever switched on (tungstenite's `deflate` feature).
    #[tokio::test]
    async fn permessage_deflate_is_never_negotiated() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.expect("read the upgrade");
                assert!(n > 0, "closed before the upgrade");
                request.extend_from_slice(&buf[..n]);
            }
            let request = String::from_utf8_lossy(&request).into_owned();
            let key = request
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| v.trim().to_string())
                })
                .expect("a Sec-WebSocket-Key");
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            conn.write_all(answer.as_bytes()).await.expect("answer");
            // "hello", deflated (RFC 7692 section 7.2.3.1), in a binary
            // frame with RSV1 set.
            let deflated = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
            let mut frame = vec![0xc2, deflated.len() as u8];
            frame.extend(deflated);
            conn.write_all(&frame).await.expect("send");
            let _ = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await;
            request
        });
        let who = Identity::from_secret(
            "bottom drive obey lake curtain smoke basket hold race lonely fit walk",
            KeyType::Sr25519,
        )
        .expect("identity");
        let opened = relay_link::open(&url, &who, 7, None, &RelayOptions::default()).await;
        if let Ok(mut link) = opened {
            let event = tokio::time::timeout(Duration::from_secs(10), link.events.recv())
                .await
                .expect("an event");
            assert!(
                matches!(event, Some(Event::Closed(_)) | None),
                "a compressed frame was read: {event:?}"
            );
        }
        let request = server.await.expect("server");
        assert!(
            !request.to_ascii_lowercase().contains("permessage-deflate"),
            "the client offered compression:\n{request}"
        );
    }
}
