//! A stand-in for a Substrate chain's RPC endpoint: a real WebSocket
//! JSON-RPC server on 127.0.0.1 (a fresh port each) that answers
//! `state_getStorage` from a map of storage key -> SCALE bytes, and
//! `null` for any key it does not hold.
//!
//! Its [`Mode`] makes it misbehave the ways a real endpoint can: close every
//! connection at once, answer text that is not JSON, answer a result of the
//! wrong type, or never answer at all. It records every method it was
//! asked, so a test can tell which endpoint a client used, and every
//! storage key read, so a test can count lookups.
//! [`ChainServer::slow_reads_of`] makes it answer reads of one key slowly
//! (each call on its own, others answered meanwhile, as a busy node does).
//!
//! It serves from a [`LoopbackServer`] and stops when dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::loopback::LoopbackServer;

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answers from its storage map.
    Normal,
    /// Closes every TCP connection as soon as it is accepted.
    Refuse,
    /// Answers every call with a text frame that is not JSON.
    Garbage,
    /// Answers every call with `"result": 12` (not a storage value).
    WrongResult,
    /// Answers every call with a JSON-RPC error object.
    RpcError,
    /// Completes the WebSocket handshake, then never answers.
    Silent,
}

#[derive(Default)]
struct State {
    storage: HashMap<Vec<u8>, Vec<u8>>,
    calls: Vec<String>,
    reads: Vec<Vec<u8>>,
    mode: Option<Mode>,
    slow: HashMap<Vec<u8>, Duration>,
}

/// The running stand-in; stopped when dropped.
pub struct ChainServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _server: LoopbackServer,
}

impl ChainServer {
    /// Starts a server in [`Mode::Normal`] with empty storage.
    pub fn start() -> ChainServer {
        Self::with_mode(Mode::Normal)
    }

    pub fn with_mode(mode: Mode) -> ChainServer {
        let state = Arc::new(Mutex::new(State {
            mode: Some(mode),
            ..State::default()
        }));
        let shared = state.clone();
        let server = LoopbackServer::start("chain stand-in", 0, move |tcp, stopped| {
            connection(tcp, shared.clone(), stopped)
        });
        ChainServer {
            addr: server.addr(),
            state,
            _server: server,
        }
    }

    /// `ws://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stores `value` (SCALE bytes) under `key`.
    pub fn insert(&self, key: Vec<u8>, value: Vec<u8>) {
        self.state.lock().unwrap().storage.insert(key, value);
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.state.lock().unwrap().storage.get(key).cloned()
    }

    pub fn remove(&self, key: &[u8]) {
        self.state.lock().unwrap().storage.remove(key);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// Every method called so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// How many times `key` was read (`state_getStorage`) so far.
    pub fn reads_of(&self, key: &[u8]) -> usize {
        let st = self.state.lock().unwrap();
        st.reads.iter().filter(|k| k.as_slice() == key).count()
    }

    /// Answers each read of `key` `delay` after it arrives (reads
    /// overlap; a zero delay answers at once again).
    pub fn slow_reads_of(&self, key: Vec<u8>, delay: Duration) {
        self.state.lock().unwrap().slow.insert(key, delay);
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    state: Arc<Mutex<State>>,
    mut stopped: watch::Receiver<bool>,
) {
    if state.lock().unwrap().mode == Some(Mode::Refuse) {
        return; // drops the connection unanswered
    }
    // As a substrate node's RPC server: each answer goes out when written,
    // not held back until the caller acknowledges the one before (with
    // Nagle on, pipelined lookups waited out the caller's 40 ms delayed
    // ACK, which was most of a relayed call's time in the serving bench).
    let _ = tcp.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (sink, mut ws) = ws.split();
    let sink = Arc::new(tokio::sync::Mutex::new(sink));
    loop {
        let frame = tokio::select! {
            _ = stopped.changed() => return,
            frame = ws.next() => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        };
        let Ok(call) = serde_json::from_str::<Value>(&text) else {
            return;
        };
        let id = call.get("id").cloned().unwrap_or(Value::Null);
        let method = call
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut delay = Duration::ZERO;
        let (mode, answer) = {
            let mut st = state.lock().unwrap();
            st.calls.push(method.clone());
            let mode = st.mode.unwrap_or(Mode::Normal);
            let answer = match method.as_str() {
                "state_getStorage" => {
                    let key = call["params"][0]
                        .as_str()
                        .and_then(|k| k.strip_prefix("0x"))
                        .and_then(|k| hex::decode(k).ok());
                    if let Some(k) = &key {
                        st.reads.push(k.clone());
                        delay = st.slow.get(k).copied().unwrap_or_default();
                    }
                    match key {
                        Some(k) => json!({"jsonrpc": "2.0", "id": id, "result":
                            st.storage.get(&k).map(|v| format!("0x{}", hex::encode(v)))}),
                        None => json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": -32602, "message": "invalid storage key"}}),
                    }
                }
                _ => json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": "Method not found"}}),
            };
            (mode, answer)
        };
        let reply = match mode {
            Mode::Normal | Mode::Refuse => answer.to_string(),
            Mode::Garbage => "<html>502 Bad Gateway</html>".to_string(),
            Mode::WrongResult => json!({"jsonrpc": "2.0", "id": id, "result": 12}).to_string(),
            Mode::RpcError => json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32000, "message": "stand-in failure"}})
            .to_string(),
            Mode::Silent => continue,
        };
        if delay.is_zero() {
            if sink.lock().await.send(Message::text(reply)).await.is_err() {
                return;
            }
        } else {
            let sink = sink.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = sink.lock().await.send(Message::text(reply)).await;
            });
        }
    }
}
