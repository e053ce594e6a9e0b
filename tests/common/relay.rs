//! A test relay: real WebSockets on 127.0.0.1 (a fresh port each) that
//! behaves as the grid's relay does for one domain:
//!
//! - the upgrade's query string is the JWT; it is checked against the
//!   twin's account read from the stand-in chain (400 without a token,
//!   401 for a bad or expired one or an unknown twin, 500 when the chain
//!   cannot be asked);
//! - sessions are keyed by (twin, sid); a second connection of the same
//!   key replaces the first;
//! - every frame is one protobuf envelope; one that does not parse drops
//!   the connection; `source` must equal the connection's (twin, sid);
//! - envelopes are routed to (destination twin, connection), and queued
//!   while that session is offline (delivered when it connects), unless
//!   tagged `fail-fast`;
//! - errors go back unsigned, without a source, with the request's uid;
//! - `Ping` envelopes are answered with a `Pong`; WebSocket Pings are
//!   answered by the WebSocket layer.
//!
//! Fault switches let a test make it refuse every token, corrupt what it
//! delivers to a twin, drop a sender's connection instead of forwarding,
//! stop reading a twin's connection (while still writing to it), close a
//! twin's connections right after the upgrade, or close both connections
//! when a second one arrives for a (twin, sid) already connected, as the
//! grid's relay does. It can be stopped and started again on the same port
//! (a relay restart), and says when each upgrade was accepted.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use zos_perf::grid::chain::{ChainClient, ChainOptions};
use zos_perf::rmb::envelope::{self, Address, Body, Envelope, Pong};
use zos_perf::rmb::twin::TwinDb;
use zos_perf::rmb::{jwt, RmbError};
use zos_perf::unix_time::unix_now;

use super::loopback::LoopbackServer;

type Key = (u32, Option<String>);

const QUEUE_MAX: usize = 10_000;

#[derive(Default)]
struct Faults {
    refuse_tokens: bool,
    corrupt_to: Option<u32>,
    drop_sender_to: Option<u32>,
    stop_reading_from: Option<u32>,
    close_at_once: Option<u32>,
    duplicates_close_both: bool,
}

#[derive(Default)]
struct State {
    sessions: HashMap<Key, (u64, mpsc::UnboundedSender<Vec<u8>>)>,
    queues: HashMap<Key, VecDeque<Vec<u8>>>,
    faults: Faults,
    next_conn: u64,
    /// Upgrades accepted per twin.
    per_twin: HashMap<u32, u64>,
    /// Each upgrade accepted: the twin and when.
    upgrades: Vec<(u32, Instant)>,
}

/// The running relay; stopped when dropped.
pub struct TestRelay {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// None while stopped.
    server: Option<LoopbackServer>,
    forwarded: Arc<AtomicUsize>,
    twins: Arc<TwinDb>,
}

impl TestRelay {
    /// A relay checking tokens against the chain at `chain_url`, reading
    /// each twin afresh every time (a test may change a twin between two
    /// connections).
    pub fn start(chain_url: &str) -> TestRelay {
        Self::start_caching(chain_url, Duration::ZERO)
    }

    /// A relay that keeps the twins it read for `ttl`, as the grid's relay
    /// does (for 10 minutes): for benches, where a chain lookup for every
    /// envelope routed would weigh on the figures of the code measured.
    pub fn start_caching(chain_url: &str, ttl: Duration) -> TestRelay {
        let options = ChainOptions {
            call_timeout: Duration::from_secs(2),
            ..ChainOptions::default()
        };
        let chain = ChainClient::new(vec![chain_url.to_string()], options).expect("chain URL");
        let twins = Arc::new(TwinDb::new(Arc::new(chain), ttl));
        let state = Arc::new(Mutex::new(State::default()));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = serve(addr, &state, &forwarded, &twins);
        TestRelay {
            addr: server.addr(),
            state,
            server: Some(server),
            forwarded,
            twins,
        }
    }

    /// Stops it as a restart does: every connection closed, the port
    /// refusing connections, its sessions and queues forgotten (the fault
    /// switches and counts stay).
    pub fn stop(&mut self) {
        self.server = None;
        let mut st = self.state.lock().unwrap();
        st.sessions.clear();
        st.queues.clear();
    }

    /// Starts it again on the same port after [`TestRelay::stop`].
    pub fn start_again(&mut self) {
        if self.server.is_none() {
            self.server = Some(serve(self.addr, &self.state, &self.forwarded, &self.twins));
        }
    }

    /// The upgrades accepted at or after `since`: the twin and when, in
    /// the order they came.
    pub fn upgrades_since(&self, since: Instant) -> Vec<(u32, Instant)> {
        let st = self.state.lock().unwrap();
        st.upgrades
            .iter()
            .filter(|(_, at)| *at >= since)
            .copied()
            .collect()
    }

    /// `ws://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// What a twin lists as its relay to be routed here.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// Envelopes routed so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }

    /// Answers every upgrade with 401 (and drops open connections).
    pub fn refuse_tokens(&self, on: bool) {
        let mut st = self.state.lock().unwrap();
        st.faults.refuse_tokens = on;
        if on {
            st.sessions.clear();
        }
    }

    /// Delivers bytes that are not an envelope instead of what is routed
    /// to `twin`.
    pub fn corrupt_deliveries_to(&self, twin: Option<u32>) {
        self.state.lock().unwrap().faults.corrupt_to = twin;
    }

    /// Drops the sender's connection instead of forwarding to `twin`.
    pub fn drop_senders_to(&self, twin: Option<u32>) {
        self.state.lock().unwrap().faults.drop_sender_to = twin;
    }

    /// Stops reading from `twin`'s connections (writing to them goes on).
    pub fn stop_reading_from(&self, twin: Option<u32>) {
        self.state.lock().unwrap().faults.stop_reading_from = twin;
    }

    /// Closes each connection of `twin` right after its upgrade.
    pub fn close_at_once(&self, twin: Option<u32>) {
        self.state.lock().unwrap().faults.close_at_once = twin;
    }

    /// A second connection for a (twin, sid) already connected closes
    /// both (the grid's relay), instead of replacing the first.
    pub fn duplicates_close_both(&self, on: bool) {
        self.state.lock().unwrap().faults.duplicates_close_both = on;
    }

    /// Upgrades accepted for `twin` so far.
    pub fn connections_of(&self, twin: u32) -> u64 {
        let st = self.state.lock().unwrap();
        st.per_twin.get(&twin).copied().unwrap_or(0)
    }

    /// Closes every open connection (as a relay restart does).
    pub fn kick_all(&self) {
        self.state.lock().unwrap().sessions.clear();
    }

    /// WebSocket connections accepted so far (a reconnect adds one).
    pub fn connections(&self) -> u64 {
        self.state.lock().unwrap().next_conn
    }

    /// Whether (twin, sid) is connected now.
    pub fn is_online(&self, twin: u32, sid: Option<&str>) -> bool {
        self.state
            .lock()
            .unwrap()
            .sessions
            .contains_key(&(twin, sid.map(str::to_string)))
    }
}

/// The relay's server on `addr` (port 0: a fresh one).
fn serve(
    addr: SocketAddr,
    state: &Arc<Mutex<State>>,
    forwarded: &Arc<AtomicUsize>,
    twins: &Arc<TwinDb>,
) -> LoopbackServer {
    let (s, f, t) = (state.clone(), forwarded.clone(), twins.clone());
    LoopbackServer::start_on("test relay", addr, 2, move |tcp, stopped| {
        let (s, f, t) = (s.clone(), f.clone(), t.clone());
        async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(3600), connection(tcp, s, f, t, stopped))
                    .await;
        }
    })
}

/// Reads the upgrade request without consuming it; returns the token.
async fn peek_token(tcp: &tokio::net::TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 8192];
    for _ in 0..200 {
        let n = tcp.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.contains("\r\n\r\n") {
            let target = text.lines().next()?.split_whitespace().nth(1)?.to_string();
            return Some(
                target
                    .split_once('?')
                    .map(|(_, q)| q.to_string())
                    .unwrap_or_default(),
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

async fn reject(mut tcp: tokio::net::TcpStream, status: &str) {
    let _ = tcp
        .write_all(
            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let _ = tcp.shutdown().await;
}

/// The claims of a token the relay accepts, or the HTTP status to refuse.
async fn authenticate(
    token: &str,
    twins: &TwinDb,
    refuse: bool,
) -> Result<jwt::Claims, &'static str> {
    if token.is_empty() {
        return Err("400 Bad Request");
    }
    if refuse {
        return Err("401 Unauthorized");
    }
    let claims = jwt::claims(token).map_err(|_| "401 Unauthorized")?;
    let twin = match twins.twin(claims.sub).await {
        Ok(t) => t,
        Err(RmbError::UnknownTwin(_)) => return Err("401 Unauthorized"),
        Err(_) => return Err("500 Internal Server Error"),
    };
    jwt::verify(token, &twin.account_id, unix_now()).map_err(|_| "401 Unauthorized")
}

async fn connection(
    tcp: tokio::net::TcpStream,
    state: Arc<Mutex<State>>,
    forwarded: Arc<AtomicUsize>,
    twins: Arc<TwinDb>,
    mut stopped: watch::Receiver<bool>,
) {
    // As the grid's relay: frames go out as written, not held back for
    // the peer's ACK of the one before.
    let _ = tcp.set_nodelay(true);
    let Some(token) = peek_token(&tcp).await else {
        return;
    };
    let refuse = state.lock().unwrap().faults.refuse_tokens;
    let claims = match authenticate(&token, &twins, refuse).await {
        Ok(c) => c,
        Err(status) => return reject(tcp, status).await,
    };
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let key: Key = (claims.sub, claims.sid.clone());
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let me = {
        let mut st = state.lock().unwrap();
        st.next_conn += 1;
        *st.per_twin.entry(key.0).or_default() += 1;
        st.upgrades.push((key.0, Instant::now()));
        let me = st.next_conn;
        let close = st.faults.close_at_once == Some(key.0)
            || (st.faults.duplicates_close_both && st.sessions.remove(&key).is_some());
        if close {
            None
        } else {
            st.sessions.insert(key.clone(), (me, tx.clone()));
            for queued in st.queues.remove(&key).unwrap_or_default() {
                let _ = tx.send(queued);
            }
            Some(me)
        }
    };
    let Some(me) = me else {
        let _ = sink.send(Message::Close(None)).await;
        return;
    };
    drop(tx);
    // Faults may change while the connection waits: look again now and
    // then. One timer for the connection, not one per frame (a timer made
    // and dropped for every frame cost the relay ~40 % of its throughput).
    let mut look_again = tokio::time::interval(Duration::from_millis(100));
    loop {
        let reading = state.lock().unwrap().faults.stop_reading_from != Some(key.0);
        tokio::select! {
            _ = stopped.changed() => break,
            _ = look_again.tick() => {}
            out = rx.recv() => {
                let Some(bytes) = out else { break }; // replaced or kicked
                if sink.send(Message::binary(bytes)).await.is_err() { break }
            }
            frame = stream.next(), if reading => {
                let bytes = match frame {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    _ => break, // text, close, error: the relay drops the connection
                };
                let Ok(env) = Envelope::from_bytes(&bytes) else { break };
                match route(&env, bytes.to_vec(), &key, &state, &twins).await {
                    Routed::Sent => { forwarded.fetch_add(1, Ordering::SeqCst); }
                    Routed::Answer(reply) => {
                        if sink.send(Message::binary(reply.to_bytes())).await.is_err() { break }
                    }
                    Routed::Drop => break,
                }
            }
        }
    }
    let mut st = state.lock().unwrap();
    if st.sessions.get(&key).is_some_and(|(id, _)| *id == me) {
        st.sessions.remove(&key);
    }
}

enum Routed {
    Sent,
    Answer(Box<Envelope>),
    Drop,
}

fn relay_error(env: &Envelope, key: &Key, message: &str) -> Routed {
    if !matches!(env.message, Some(Body::Request(_))) {
        return Routed::Sent; // only requests get an answer
    }
    Routed::Answer(Box::new(Envelope {
        uid: env.uid.clone(),
        timestamp: unix_now(),
        expiration: 300,
        destination: Some(Address::session(key.0, key.1.clone())),
        message: Some(Body::Error(envelope::Error {
            code: 0,
            message: message.to_string(),
        })),
        ..Envelope::default()
    }))
}

async fn route(
    env: &Envelope,
    bytes: Vec<u8>,
    key: &Key,
    state: &Mutex<State>,
    twins: &TwinDb,
) -> Routed {
    if let Some(Body::Ping(_)) = env.message {
        let mut pong = env.clone();
        pong.message = Some(Body::Pong(Pong {}));
        std::mem::swap(&mut pong.source, &mut pong.destination);
        return Routed::Answer(Box::new(pong));
    }
    let source = env.source.clone().unwrap_or_default();
    if (source.twin, source.connection.clone()) != *key {
        return relay_error(env, key, "message wrong source");
    }
    let Some(dest) = env.destination.clone() else {
        return relay_error(env, key, "message with missing destination");
    };
    match twins.twin(dest.twin).await {
        Ok(t) if t.relays().is_empty() => {
            return relay_error(env, key, "relay info is not set for this twin")
        }
        Ok(_) => {}
        Err(_) => return relay_error(env, key, "unknown twin destination"),
    }
    let to: Key = (dest.twin, dest.connection.clone());
    let mut st = state.lock().unwrap();
    if st.faults.drop_sender_to == Some(dest.twin) {
        return Routed::Drop;
    }
    let bytes = if st.faults.corrupt_to == Some(dest.twin) {
        b"\xff\xff\xff not an envelope".to_vec()
    } else {
        bytes
    };
    if let Some((_, tx)) = st.sessions.get(&to) {
        if tx.send(bytes.clone()).is_ok() {
            return Routed::Sent;
        }
    }
    let fail_fast = env
        .tags
        .as_deref()
        .is_some_and(|t| t.split([',', ' ']).any(|x| x.trim() == "fail-fast"));
    if fail_fast {
        drop(st);
        return relay_error(env, key, "destination offline");
    }
    let queue = st.queues.entry(to).or_default();
    if queue.len() < QUEUE_MAX {
        queue.push_back(bytes);
    }
    Routed::Sent
}
