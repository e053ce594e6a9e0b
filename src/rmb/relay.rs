//! One WebSocket connection to an RMB relay.
//!
//! The relay authenticates a connection once, at the upgrade: the whole
//! query string of the URL is a JWT naming the twin (and session) and
//! signed by the twin's account. After that every frame is one binary
//! protobuf envelope, both ways.
//!
//! [`open`] connects and starts a task that owns the socket: it writes what
//! is sent through the [`Link`], hands every frame read back as an
//! [`Event`], sends a WebSocket Ping when nothing was written for
//! `ping_after`, and gives the connection up when nothing at all was read
//! for `dead_after` (the relay answers Pings, so a live relay is never
//! silent that long). Reconnecting is the owner's choice: a one-shot
//! caller reports the loss, a server opens a new link with a fresh token.
//!
//! Under the WebSocket layer sits a [`FrameGuard`]: a frame over
//! `max_message` is skipped as it arrives and reported as
//! [`Event::Oversized`], so a huge frame from anyone costs neither memory
//! nor the connection.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
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

/// Timing and size limits of a relay connection.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    pub connect_timeout: Duration,
    /// Send a WebSocket Ping after this long without writing.
    pub ping_after: Duration,
    /// Give the connection up after this long without reading anything.
    pub dead_after: Duration,
    /// The largest frame accepted (and sent).
    pub max_message: usize,
    /// Lifetime of the connection's token (it is checked only at upgrade).
    pub token_lifetime: u64,
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
        }
    }
}

/// What the connection task reports.
#[derive(Debug)]
pub enum Event {
    Envelope(Box<Envelope>),
    /// A frame that is not a binary protobuf envelope (skipped).
    Garbage(String),
    /// A frame over `max_message`, skipped unread: its length.
    Oversized(u64),
    /// The connection is gone; no event follows.
    Closed(String),
}

/// The owner's side of an open connection. Dropping it closes the socket.
pub struct Link {
    pub url: String,
    out: mpsc::Sender<Vec<u8>>,
    pub events: mpsc::Receiver<Event>,
}

/// A cloneable handle for sending on a link.
#[derive(Clone)]
pub struct LinkSender {
    url: String,
    out: mpsc::Sender<Vec<u8>>,
}

impl Link {
    pub fn sender(&self) -> LinkSender {
        LinkSender {
            url: self.url.clone(),
            out: self.out.clone(),
        }
    }
}

impl LinkSender {
    /// Queues one envelope for writing; fails once the connection is gone.
    pub async fn send(&self, env: &Envelope) -> Result<(), RmbError> {
        self.out
            .send(env.to_bytes())
            .await
            .map_err(|_| RmbError::Relay {
                url: self.url.clone(),
                reason: "the connection is closed".into(),
            })
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
    tokio::spawn(run(
        base.clone(),
        ws,
        oversized,
        out_rx,
        events_tx,
        *options,
    ));
    Ok(Link {
        url: base,
        out,
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
        let Connector::Rustls(config) = ws_connector().map_err(Handshake::Io)? else {
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
    mut out: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<Event>,
    options: RelayOptions,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut last_write = Instant::now();
    let mut last_read = Instant::now();
    // Data messages read so far, to find those the guard cut short.
    let mut messages: u64 = 0;
    let reason = loop {
        let ping_at = last_write + options.ping_after;
        let dead_at = last_read + options.dead_after;
        tokio::select! {
            frame = out.recv() => {
                let Some(frame) = frame else { break None };
                if let Err(e) = sink.send(Message::binary(frame)).await {
                    break Some(format!("write failed: {e}"));
                }
                last_write = Instant::now();
            }
            frame = stream.next() => {
                last_read = Instant::now();
                let event = match frame {
                    None => break Some("closed by the relay".to_string()),
                    Some(Err(e)) => break Some(e.to_string()),
                    Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                        let index = messages;
                        messages += 1;
                        match (oversized.take(index), m) {
                            (Some(len), _) => Event::Oversized(len),
                            (None, Message::Binary(b)) => match Envelope::from_bytes(&b) {
                                Ok(env) => Event::Envelope(Box::new(env)),
                                Err(e) => Event::Garbage(e),
                            },
                            (None, _) => Event::Garbage("a text frame".into()),
                        }
                    }
                    Some(Ok(Message::Close(c))) => {
                        break Some(match c {
                            Some(c) => format!("closed by the relay ({} {})", c.code, c.reason),
                            None => "closed by the relay".to_string(),
                        })
                    }
                    Some(Ok(_)) => continue, // ping/pong
                };
                if events.send(event).await.is_err() {
                    break None; // the owner is gone
                }
            }
            _ = tokio::time::sleep_until(ping_at) => {
                if let Err(e) = sink.send(Message::Ping(Vec::new().into())).await {
                    break Some(format!("ping failed: {e}"));
                }
                last_write = Instant::now();
            }
            _ = tokio::time::sleep_until(dead_at) => {
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
    let _ = sink.close().await;
}
