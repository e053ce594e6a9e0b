//! One WebSocket connection to an RMB relay.
//!
//! The relay authenticates a connection once, at the upgrade: the whole
//! query string of the URL is a JWT naming the twin (and session) and
//! signed by the twin's account. After that every frame is one binary
//! protobuf envelope, both ways.
//!
//! [`open`] connects and starts a task that owns the socket: it writes what
//! is sent through the [`Link`], hands every frame read back as an
//! [`Event`], sends a WebSocket Ping when nothing was written, or nothing
//! read, for `ping_after`, and gives the connection up when nothing at all
//! was read for `dead_after` while it was waiting to read (the relay
//! answers Pings, so a live relay is never silent that long) or when one
//! write is not taken within `dead_after` (a relay that stopped reading).
//! Pinging on a quiet read side too matters to a server: answering a burst
//! of large requests is a long run of writes with nothing to read, and a
//! relay that has nothing to send would otherwise look dead after
//! `dead_after`, with every answer still queued lost. Reconnecting
//! is the owner's choice: a one-shot caller reports the loss, a server
//! opens a new link with a fresh token.
//!
//! Bytes held are bounded, not frames: room for a whole frame
//! (`max_message`) is taken from the link's read budget before the next
//! frame is read, shrunk to the frame's size once it is in, and handed to
//! the owner with the envelope ([`Held`]); it comes back when the owner
//! drops it. Past the budget the socket is read no further, and that wait
//! is ours, not the relay's silence: the dead timer runs only while the
//! task is ready to read. Frames queued for writing count against a write
//! budget the same way.
//!
//! Under the WebSocket layer sits a [`FrameGuard`]: a frame over
//! `max_message` is skipped as it arrives and reported as
//! [`Event::Oversized`], so a huge frame from anyone costs neither memory
//! nor the connection.

use std::time::Duration;

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

use tokio::net::TcpStream;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::envelope::Envelope;
use super::error::RmbError;
use super::frames::{FrameGuard, Oversized};
use super::identity::Identity;
use super::jwt;
use crate::grid::chain::{ws_config, ws_connector};
use crate::util::unix_time::unix_now;

/// Timing and size limits of a relay connection.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    pub connect_timeout: Duration,
    /// Send a WebSocket Ping after this long without writing, or without
    /// reading (at most one Ping per `ping_after`).
    pub ping_after: Duration,
    /// Give the connection up after this long without reading anything.
    pub dead_after: Duration,
    /// The largest frame accepted (and sent).
    pub max_message: usize,
    /// Lifetime of the connection's token (it is checked only at upgrade).
    pub token_lifetime: u64,
    /// Bytes of frames read and not yet let go by the owner, the frame
    /// being read counted as `max_message` (at least one whole frame).
    pub read_budget: usize,
    /// Bytes of frames queued for writing (at least one whole frame).
    pub write_budget: usize,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            ping_after: Duration::from_secs(20),
            dead_after: Duration::from_secs(40),
            // The relay's own limit is far above any zos.perf answer; 4 MiB
            // bounds what a peer can make us buffer.
            max_message: 4 << 20,
            token_lifetime: 60,
            // Three frames of the largest size held, a fourth being read.
            read_budget: 16 << 20,
            write_budget: 16 << 20,
        }
    }
}

/// What the connection task reports.
#[derive(Debug)]
pub enum Event {
    /// An envelope, and its frame's bytes held against the read budget
    /// until the [`Held`] is dropped.
    Envelope(Box<Envelope>, Held),
    /// A frame that is not a binary protobuf envelope (skipped).
    Garbage(String),
    /// A frame over `max_message`, skipped unread: its length.
    Oversized(u64),
    /// The connection is gone; no event follows.
    Closed(String),
}

/// Bytes of one frame counted against a link's budget: they are given
/// back when this is dropped (when the owner is done with the envelope).
#[derive(Debug)]
pub struct Held(#[allow(dead_code)] OwnedSemaphorePermit);

/// A frame queued for writing, with its bytes counted.
struct Outgoing {
    bytes: Vec<u8>,
    _held: OwnedSemaphorePermit,
}

/// The owner's side of an open connection. Dropping it closes the socket.
pub struct Link {
    pub url: String,
    out: LinkSender,
    pub events: mpsc::Receiver<Event>,
}

/// A cloneable handle for sending on a link.
#[derive(Clone)]
pub struct LinkSender {
    url: String,
    out: mpsc::Sender<Outgoing>,
    budget: Arc<Semaphore>,
    /// The budget's size: no frame waits for more.
    budget_bytes: usize,
}

impl Link {
    pub fn sender(&self) -> LinkSender {
        self.out.clone()
    }
}

impl LinkSender {
    /// Queues one envelope for writing, once the write budget has room for
    /// it; fails once the connection is gone.
    pub async fn send(&self, env: &Envelope) -> Result<(), RmbError> {
        let closed = || RmbError::Relay {
            url: self.url.clone(),
            reason: "the connection is closed".into(),
        };
        let bytes = env.to_bytes();
        let count = bytes.len().clamp(1, self.budget_bytes);
        let held = self
            .budget
            .clone()
            .acquire_many_owned(u32::try_from(count).unwrap_or(u32::MAX))
            .await
            .map_err(|_| closed())?;
        self.out
            .send(Outgoing { bytes, _held: held })
            .await
            .map_err(|_| closed())
    }
}

/// A budget of `bytes` (at least `max_message`), in permits of one byte.
fn budget(bytes: usize, max_message: usize) -> (Arc<Semaphore>, usize) {
    let bytes = bytes
        .max(max_message)
        .clamp(1, u32::MAX as usize)
        .min(Semaphore::MAX_PERMITS);
    (Arc::new(Semaphore::new(bytes)), bytes)
}

/// `wss://host` for a bare hostname (how twins list their relays), the
/// URL itself otherwise.
pub fn relay_url(relay: &str) -> String {
    if relay.contains("://") {
        relay.to_string()
    } else {
        format!("wss://{relay}")
    }
}

/// The hostname of a relay URL (what a twin's `relay` on chain lists).
pub(crate) fn relay_host(relay: &str) -> Option<String> {
    url::Url::parse(&relay_url(relay))
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
}

/// Connects to `relay` as `twin` (session `sid`) and starts the
/// connection task.
pub async fn open(
    relay: &str,
    identity: &Identity,
    twin: u32,
    sid: Option<&str>,
    options: &RelayOptions,
) -> Result<Link, RmbError> {
    let base = relay_url(relay);
    let mut url = url::Url::parse(&base).map_err(|e| RmbError::Relay {
        url: base.clone(),
        reason: format!("not a URL: {e}"),
    })?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(RmbError::Relay {
            url: base,
            reason: "the scheme must be ws or wss".into(),
        });
    }
    let token = jwt::token(identity, twin, sid, unix_now(), options.token_lifetime);
    url.set_query(Some(&token));
    let connecting = handshake(&url, options.max_message);
    let (ws, oversized) = match tokio::time::timeout(options.connect_timeout, connecting).await {
        Err(_) => {
            return Err(RmbError::Relay {
                url: base,
                reason: format!(
                    "no connection within {}",
                    humantime::format_duration(options.connect_timeout)
                ),
            })
        }
        Ok(Err(Handshake::Ws(tungstenite::Error::Http(response))))
            if matches!(response.status().as_u16(), 400 | 401 | 403) =>
        {
            return Err(RmbError::JwtRefused {
                url: base,
                status: response.status().as_u16(),
                twin,
            })
        }
        Ok(Err(e)) => {
            return Err(RmbError::Relay {
                url: base,
                reason: e.to_string(),
            })
        }
        Ok(Ok(done)) => done,
    };
    let (out, out_rx) = mpsc::channel(256);
    let (events_tx, events) = mpsc::channel(256);
    let (write_budget, budget_bytes) = budget(options.write_budget, options.max_message);
    let (read_budget, _) = budget(options.read_budget, options.max_message);
    tokio::spawn(run(
        base.clone(),
        ws,
        oversized,
        out_rx,
        events_tx,
        read_budget,
        *options,
    ));
    Ok(Link {
        url: base.clone(),
        out: LinkSender {
            url: base,
            out,
            budget: write_budget,
            budget_bytes,
        },
        events,
    })
}

/// Why a connection could not be set up.
#[derive(Debug)]
enum Handshake {
    Io(String),
    Ws(tungstenite::Error),
}

impl std::fmt::Display for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handshake::Io(e) => f.write_str(e),
            Handshake::Ws(e) => write!(f, "{e}"),
        }
    }
}

type Stream = FrameGuard<MaybeTlsStream<TcpStream>>;

/// TCP, TLS for `wss`, the frame guard, then the WebSocket upgrade: the
/// guard sits on the plain bytes, under the WebSocket layer.
async fn handshake(
    url: &url::Url,
    max_message: usize,
) -> Result<(WebSocketStream<Stream>, Oversized), Handshake> {
    let host = url
        .host_str()
        .ok_or_else(|| Handshake::Io("the URL names no host".into()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Handshake::Io("the URL names no port".into()))?;
    let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| Handshake::Io(format!("connecting: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let stream = if url.scheme() == "wss" {
        let Connector::Rustls(config) = ws_connector().map_err(|e| Handshake::Io(e.to_string()))?
        else {
            return Err(Handshake::Io("no TLS connector".into()));
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| Handshake::Io(format!("TLS server name {host:?}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| Handshake::Io(format!("TLS: {e}")))?;
        MaybeTlsStream::Rustls(tls)
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    let guard = FrameGuard::new(stream, max_message);
    let oversized = guard.oversized();
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        url.as_str(),
        guard,
        Some(ws_config(max_message)),
    )
    .await
    .map_err(Handshake::Ws)?;
    Ok((ws, oversized))
}

async fn run<S>(
    url: String,
    ws: tokio_tungstenite::WebSocketStream<S>,
    oversized: Oversized,
    mut out: mpsc::Receiver<Outgoing>,
    events: mpsc::Sender<Event>,
    read_budget: Arc<Semaphore>,
    options: RelayOptions,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut last_write = Instant::now();
    // When the relay was last heard, or when we were last ready to hear it
    // again after holding back: our own waits are not its silence.
    let mut last_read = Instant::now();
    // When we last sent a Ping: while the relay stays quiet, one per
    // `ping_after`, not one per turn of the loop.
    let mut last_ping = Instant::now();
    // Data messages read so far, to find those the guard cut short.
    let mut messages: u64 = 0;
    // Room for the next frame, taken before it is read.
    let mut room: Option<OwnedSemaphorePermit> = None;
    // A frame read, waiting for room in the event channel.
    let mut pending: Option<Event> = None;
    let whole_frame = u32::try_from(
        options
            .max_message
            .clamp(1, read_budget.available_permits()),
    )
    .unwrap_or(u32::MAX);
    let written =
        |what: &str, e: Result<Result<(), tungstenite::Error>, tokio::time::error::Elapsed>| match e
        {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{what} failed: {e}")),
            Err(_) => Some(format!(
                "the relay took no {what} within {}: it stopped reading",
                humantime::format_duration(options.dead_after)
            )),
        };
    let reason = loop {
        let ping_at = last_write.min(last_read).max(last_ping) + options.ping_after;
        let dead_at = last_read + options.dead_after;
        let reading = room.is_some() && pending.is_none();
        tokio::select! {
            taken = read_budget.clone().acquire_many_owned(whole_frame), if room.is_none() && pending.is_none() => {
                let Ok(taken) = taken else { break None };
                room = Some(taken);
                last_read = Instant::now();
            }
            frame = out.recv() => {
                let Some(frame) = frame else { break None };
                let sent = tokio::time::timeout(options.dead_after, sink.send(Message::binary(frame.bytes))).await;
                if let Some(why) = written("write", sent) {
                    break Some(why);
                }
                last_write = Instant::now();
            }
            handed = events.reserve(), if pending.is_some() => {
                let Ok(slot) = handed else { break None }; // the owner is gone
                if let Some(event) = pending.take() {
                    slot.send(event);
                }
            }
            frame = stream.next(), if reading => {
                last_read = Instant::now();
                let Some(taken) = room.take() else { continue };
                let event = match frame {
                    None => break Some("closed by the relay".to_string()),
                    Some(Err(e)) => break Some(e.to_string()),
                    Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                        let index = messages;
                        messages += 1;
                        match (oversized.take(index), m) {
                            (Some(len), _) => Event::Oversized(len),
                            (None, Message::Binary(b)) => match Envelope::from_bytes(&b) {
                                Ok(env) => Event::Envelope(Box::new(env), hold(taken, b.len())),
                                Err(e) => Event::Garbage(e.to_string()),
                            },
                            (None, _) => Event::Garbage("a text frame".into()),
                        }
                    }
                    Some(Ok(Message::Close(c))) => {
                        break Some(match c {
                            Some(c) => format!(
                                "closed by the relay ({} {})",
                                c.code,
                                crate::util::text::clean(&c.reason, 200)
                            ),
                            None => "closed by the relay".to_string(),
                        })
                    }
                    Some(Ok(_)) => {
                        room = Some(taken); // ping/pong: the room is still free
                        continue;
                    }
                };
                pending = Some(event);
            }
            _ = tokio::time::sleep_until(ping_at) => {
                let sent = tokio::time::timeout(options.dead_after, sink.send(Message::Ping(Vec::new().into()))).await;
                if let Some(why) = written("ping", sent) {
                    break Some(why);
                }
                last_write = Instant::now();
                last_ping = last_write;
            }
            _ = tokio::time::sleep_until(dead_at), if reading => {
                break Some(format!(
                    "nothing received for {}",
                    humantime::format_duration(options.dead_after)
                ));
            }
        }
    };
    if let Some(reason) = reason {
        tracing::debug!(relay = %url, reason = %reason, "relay connection ended");
        let _ = events.send(Event::Closed(reason)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// The room taken for a frame, shrunk to the `len` bytes it holds (the
/// rest goes back to the budget at once).
fn hold(mut room: OwnedSemaphorePermit, len: usize) -> Held {
    let len = len.min(room.num_permits());
    Held(room.split(len).unwrap_or(room))
}
