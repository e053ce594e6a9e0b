//! A client of a Substrate chain (tfchain) over its WebSocket JSON-RPC.
//!
//! Only what reading the chain's state needs: [`ChainClient::get_storage`]
//! (`state_getStorage`) and the storage-key hashers of [`key`]. A chain
//! network has several RPC endpoints, so the client holds a list of URLs and
//! moves to the next one when the current one cannot be reached, stays
//! silent past the per-call timeout, closes the connection or answers
//! something that is not JSON-RPC. Only when every URL failed is a call an
//! error, and that error says what each URL did.
//!
//! One WebSocket is kept open and shared: calls are written on it with their
//! own ids and a reader task hands each answer to its caller, so concurrent
//! lookups do not queue behind each other. The reader task ends when the
//! client is dropped or the socket fails; the next call reconnects.
//!
//! Everything from outside is bounded: a frame or message larger than
//! [`ChainOptions::max_message`] closes the connection, every call and
//! connect attempt is limited by [`ChainOptions::call_timeout`].
//!
//! Longer than most files (about 460 lines, its tests in `chain/tests.rs`):
//! the failover over URLs, the shared socket and its reader task are one
//! piece of state that only reads right in one place.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

pub mod key;

/// Limits of a [`ChainClient`].
#[derive(Debug, Clone, Copy)]
pub struct ChainOptions {
    /// How long one call (connecting included) may take on one URL.
    pub call_timeout: Duration,
    /// The largest WebSocket message accepted from the chain.
    pub max_message: usize,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(10),
            // Storage values read here are a few hundred bytes; 1 MiB leaves
            // room for any single-value answer without letting a peer make
            // us buffer an unbounded message.
            max_message: 1 << 20,
        }
    }
}

/// What went wrong with one URL during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// TCP, TLS or WebSocket handshake failed.
    Connect(String),
    /// No answer within the call timeout.
    Timeout(Duration),
    /// The connection closed or broke before the answer.
    Closed(String),
    /// The chain answered something that is not a usable JSON-RPC answer.
    Garbage(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Timeout(d) => write!(f, "no answer within {}", humantime::format_duration(*d)),
            Failure::Closed(e) => write!(f, "connection lost: {e}"),
            Failure::Garbage(e) => write!(f, "answered garbage: {e}"),
        }
    }
}

/// One URL tried during a call, and how it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub url: String,
    pub failure: Failure,
}

/// A failed chain call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    #[error("chain: no URL configured")]
    NoUrl,
    #[error("chain: URL {url:?} is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    /// Every URL failed; each attempt says how.
    #[error("chain unreachable: {}", summary(.attempts))]
    Unavailable {
        method: String,
        attempts: Vec<Attempt>,
    },
    /// The chain answered with a JSON-RPC error object.
    #[error("chain {url}: {method} failed with error {code}: {message}")]
    Rpc {
        url: String,
        method: String,
        code: i64,
        message: String,
    },
}

impl ChainError {
    /// True when at least one URL answered, but with something unusable
    /// (as opposed to every URL being down or silent).
    pub fn answered_garbage(&self) -> bool {
        match self {
            ChainError::Unavailable { attempts, .. } => attempts
                .iter()
                .any(|a| matches!(a.failure, Failure::Garbage(_))),
            _ => false,
        }
    }
}

fn summary(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.url, a.failure))
        .collect::<Vec<_>>()
        .join("; ")
}

type Reply = Result<Value, Failure>;

/// One call waiting to be written, with where its answer goes.
struct Outgoing {
    id: u64,
    text: String,
    reply: oneshot::Sender<Reply>,
}

/// An open connection: a channel into its reader/writer task.
struct Conn {
    url_index: usize,
    tx: mpsc::Sender<Outgoing>,
}

/// A JSON-RPC client of one chain, with failover across its URLs.
pub struct ChainClient {
    urls: Vec<String>,
    options: ChainOptions,
    conn: Mutex<Option<Conn>>,
    /// The URL to try first: the last one that worked.
    current: AtomicUsize,
    next_id: AtomicU64,
}

impl fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainClient")
            .field("urls", &self.urls)
            .finish()
    }
}

impl ChainClient {
    /// A client of `urls` (`ws://` or `wss://`), tried in this order.
    pub fn new(urls: Vec<String>, options: ChainOptions) -> Result<Self, ChainError> {
        if urls.is_empty() {
            return Err(ChainError::NoUrl);
        }
        for u in &urls {
            let parsed = url::Url::parse(u).map_err(|e| ChainError::BadUrl {
                url: u.clone(),
                reason: e.to_string(),
            })?;
            if !matches!(parsed.scheme(), "ws" | "wss") {
                return Err(ChainError::BadUrl {
                    url: u.clone(),
                    reason: "the scheme must be ws or wss".into(),
                });
            }
        }
        Ok(Self {
            urls,
            options,
            conn: Mutex::new(None),
            current: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The SCALE bytes stored under `key` at the chain's best block, or
    /// `None` when nothing is stored there.
    pub async fn get_storage(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        let key_hex = format!("0x{}", hex::encode(key));
        self.call_with("state_getStorage", json!([key_hex]), decode_storage)
            .await
    }

    /// Calls `method` with `params` and returns the `result` as is.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        self.call_with(method, params, |v| {
            Ok::<_, std::convert::Infallible>(v.clone())
        })
        .await
    }

    /// Calls `method` on each URL in turn until one answers with a result
    /// that `parse` accepts.
    async fn call_with<T, E: std::fmt::Display>(
        &self,
        method: &str,
        params: Value,
        parse: impl Fn(&Value) -> Result<T, E>,
    ) -> Result<T, ChainError> {
        let mut attempts = Vec::new();
        let start = self.current.load(Ordering::Relaxed) % self.urls.len();
        for step in 0..self.urls.len() {
            let index = (start + step) % self.urls.len();
            let url = &self.urls[index];
            let outcome = tokio::time::timeout(
                self.options.call_timeout,
                self.call_on(index, method, &params),
            )
            .await
            .unwrap_or(Err(Failure::Timeout(self.options.call_timeout)));
            let failure = match outcome {
                Ok(Ok(result)) => match parse(&result) {
                    Ok(value) => {
                        self.current.store(index, Ordering::Relaxed);
                        return Ok(value);
                    }
                    Err(e) => Failure::Garbage(format!("{method}: {e}")),
                },
                Ok(Err(rpc)) => return Err(rpc_error(url, method, &rpc)),
                Err(f) => f,
            };
            tracing::warn!(url = %url, method, failure = %failure, "chain: URL failed, trying the next");
            self.drop_conn(index).await;
            attempts.push(Attempt {
                url: url.clone(),
                failure,
            });
        }
        Err(ChainError::Unavailable {
            method: method.to_string(),
            attempts,
        })
    }

    /// One call on URL `index`: `Ok(Ok(result))`, `Ok(Err(error object))`
    /// for a JSON-RPC error, `Err` for a transport failure or garbage.
    async fn call_on(
        &self,
        index: usize,
        method: &str,
        params: &Value,
    ) -> Result<Result<Value, Value>, Failure> {
        let tx = self.sender(index).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let text =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let (reply, answer) = oneshot::channel();
        tx.send(Outgoing { id, text, reply })
            .await
            .map_err(|_| Failure::Closed("the connection task ended".into()))?;
        let answer = answer
            .await
            .map_err(|_| Failure::Closed("the connection task ended".into()))??;
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            return Ok(Err(error.clone()));
        }
        match answer.get("result") {
            Some(result) => Ok(Ok(result.clone())),
            None => Err(Failure::Garbage(format!(
                "answer to {method} has neither result nor error: {}",
                snippet(&answer.to_string())
            ))),
        }
    }

    /// The sender of the open connection to URL `index`, connecting first
    /// when there is none (or it is to another URL, or it died).
    async fn sender(&self, index: usize) -> Result<mpsc::Sender<Outgoing>, Failure> {
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_ref() {
            if conn.url_index == index && !conn.tx.is_closed() {
                return Ok(conn.tx.clone());
            }
        }
        *guard = None;
        let tx = connect(&self.urls[index], &self.options).await?;
        *guard = Some(Conn {
            url_index: index,
            tx: tx.clone(),
        });
        Ok(tx)
    }

    async fn drop_conn(&self, index: usize) {
        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_some_and(|c| c.url_index == index) {
            *guard = None;
        }
    }
}

fn rpc_error(url: &str, method: &str, error: &Value) -> ChainError {
    ChainError::Rpc {
        url: url.to_string(),
        method: method.to_string(),
        code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: error
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| snippet(&error.to_string())),
    }
}

/// A `state_getStorage` result that is not `null` or `"0x<hex>"`; the
/// chain's text is clipped ([`snippet`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum StorageError {
    #[error("storage value {0:?} lacks the 0x prefix")]
    NoPrefix(String),
    #[error("storage value {value:?} is not hex: {reason}")]
    NotHex {
        value: String,
        reason: hex::FromHexError,
    },
    #[error("storage value is neither null nor a hex string: {0}")]
    Neither(String),
}

/// `state_getStorage`'s result: `null` or `"0x<hex>"`.
fn decode_storage(result: &Value) -> Result<Option<Vec<u8>>, StorageError> {
    match result {
        Value::Null => Ok(None),
        Value::String(s) => {
            let digits = s
                .strip_prefix("0x")
                .ok_or_else(|| StorageError::NoPrefix(snippet(s)))?;
            hex::decode(digits)
                .map(Some)
                .map_err(|reason| StorageError::NotHex {
                    value: snippet(s),
                    reason,
                })
        }
        other => Err(StorageError::Neither(snippet(&other.to_string()))),
    }
}

fn snippet(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The TLS settings for `wss://` could not be built: the crypto provider
/// supports none of rustls's safe protocol versions. Nothing can then
/// connect to a `wss://` URL (chain or relay); `ws://` is unaffected.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS set-up: {0}")]
pub struct TlsSetup(rustls::Error);

/// The TLS settings for `wss://`: the rustls ring provider (the one the
/// HTTP client already builds in) with the webpki roots.
fn tls() -> Result<Arc<rustls::ClientConfig>, TlsSetup> {
    static TLS: OnceLock<Result<Arc<rustls::ClientConfig>, TlsSetup>> = OnceLock::new();
    TLS.get_or_init(|| {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        .map_err(TlsSetup)
    })
    .clone()
}

/// The WebSocket limits used for every connection of this module and of
/// the RMB relay client.
pub(crate) fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// The TLS connector for `wss://` URLs.
pub(crate) fn ws_connector() -> Result<Connector, TlsSetup> {
    tls().map(Connector::Rustls)
}

/// Opens a WebSocket to `url` and starts its connection task.
async fn connect(url: &str, options: &ChainOptions) -> Result<mpsc::Sender<Outgoing>, Failure> {
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        Some(ws_config(options.max_message)),
        true,
        Some(ws_connector().map_err(|e| Failure::Connect(e.to_string()))?),
    )
    .await
    .map_err(|e| Failure::Connect(e.to_string()))?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(run_conn(url.to_string(), ws, rx));
    Ok(tx)
}

type Pending = HashMap<u64, oneshot::Sender<Reply>>;

/// Writes calls, reads answers and hands each to its caller by id. Ends
/// when every sender is gone (the client was dropped or moved to another
/// URL) or the socket fails; callers still waiting then get the failure.
async fn run_conn<S>(
    url: String,
    ws: tokio_tungstenite::WebSocketStream<S>,
    mut rx: mpsc::Receiver<Outgoing>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut pending: Pending = HashMap::new();
    let failure = loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break None };
                if out.reply.is_closed() {
                    continue;
                }
                if let Err(e) = sink.send(Message::text(out.text)).await {
                    let _ = out.reply.send(Err(Failure::Closed(e.to_string())));
                    break Some(Failure::Closed(e.to_string()));
                }
                pending.retain(|_, r| !r.is_closed());
                pending.insert(out.id, out.reply);
            }
            frame = stream.next() => {
                let text = match frame {
                    None => break Some(Failure::Closed("closed by the chain".into())),
                    Some(Err(e)) => break Some(Failure::Closed(e.to_string())),
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                        Ok(t) => t,
                        Err(_) => break Some(Failure::Garbage("a binary frame that is not UTF-8".into())),
                    },
                    Some(Ok(Message::Close(c))) => {
                        break Some(Failure::Closed(format!("closed by the chain ({c:?})")))
                    }
                    Some(Ok(_)) => continue, // ping/pong are handled by tungstenite
                };
                match serde_json::from_str::<Value>(&text) {
                    Ok(answer) => {
                        // Notifications (no id) and answers nobody waits
                        // for any more are skipped.
                        if let Some(reply) = answer.get("id").and_then(Value::as_u64).and_then(|id| pending.remove(&id)) {
                            let _ = reply.send(Ok(answer));
                        }
                    }
                    Err(e) => break Some(Failure::Garbage(format!("not JSON ({e}): {}", snippet(&text)))),
                }
            }
        }
    };
    if let Some(failure) = failure {
        tracing::debug!(url = %url, failure = %failure, "chain: connection ended");
        for (_, reply) in pending.drain() {
            let _ = reply.send(Err(failure.clone()));
        }
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests;
