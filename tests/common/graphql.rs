//! A stand-in for the grid's GraphQL: a small HTTP/1.1 server on
//! 127.0.0.1 (a fresh port each) that records every query it receives and
//! answers from a handler, by the query's shape.
//!
//! [`Grid`] is a ready handler holding canned nodes and farm public IPs. It
//! answers the three query shapes the daemon asks (docs/tasks/iperf.md) (`nodes`, `nodesConnection`,
//! `publicIps`), pages of `nodes` by `limit`/`offset` or after a `nodeID_gt`
//! (as `fleet` lists them), optionally capped ([`GraphQlServer::grid_paged`]), and refuses, with a GraphQL error, a nodes query that lacks
//! the up-node filter, so a client that forgets it fails the test.
//!
//! The server binds its socket in the network namespace of the thread that
//! calls `start`, so a test running on a thread moved into a namespace gets
//! a server reachable from there.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this JSON body (`{"data": ...}` or `{"errors": [...]}`).
    Json(Value),
    /// 200 with this body as is (e.g. something that is not JSON).
    Raw(String),
    /// This HTTP status with this body.
    Status(u16, String),
    /// Close the connection without answering.
    Close,
}

impl Reply {
    pub fn data(data: Value) -> Reply {
        Reply::Json(json!({ "data": data }))
    }

    pub fn error(message: &str) -> Reply {
        Reply::Json(json!({ "data": null, "errors": [{ "message": message }] }))
    }
}

type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

struct Inner {
    queries: Mutex<Vec<String>>,
    handler: Mutex<Handler>,
    /// When set, every request gets this instead of the handler's reply.
    failure: Mutex<Option<Reply>>,
    stop: AtomicBool,
}

/// The running server; stopped when dropped.
pub struct GraphQlServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl GraphQlServer {
    /// Starts a server answering each query with `handler(query)`.
    pub fn start(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> GraphQlServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the GraphQL stand-in");
        let addr = listener.local_addr().expect("stand-in address");
        let inner = Arc::new(Inner {
            queries: Mutex::new(Vec::new()),
            handler: Mutex::new(Arc::new(handler)),
            failure: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let accept = inner.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if accept.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let inner = accept.clone();
                std::thread::spawn(move || serve(conn, &inner));
            }
        });
        GraphQlServer {
            addr,
            inner,
            thread: Some(thread),
        }
    }

    /// Starts a server answering from canned grid data.
    pub fn grid(grid: Grid) -> GraphQlServer {
        GraphQlServer::start(move |q| grid.answer(q))
    }

    /// The same, giving at most `max_page` nodes per answer whatever the
    /// `limit` asked (as an indexer with a page cap would).
    pub fn grid_paged(grid: Grid, max_page: usize) -> GraphQlServer {
        GraphQlServer::start(move |q| grid.answer_page(q, max_page))
    }

    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// A configuration file whose `[grid]` asks this stand-in, for a
    /// `zos-perf` process (`--config`); removed when dropped.
    pub fn config_file(&self) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp config");
        std::fs::write(
            file.path(),
            format!("[grid]\ngraphql_urls = [\"{}\"]\n", self.url()),
        )
        .expect("write the config");
        file
    }

    /// Every query received so far, in order.
    pub fn queries(&self) -> Vec<String> {
        self.inner.queries.lock().expect("queries").clone()
    }

    /// Makes every request get `reply` (e.g. `Reply::Status(500, ..)` or
    /// `Reply::Close`); `None` returns to normal answers.
    pub fn fail_with(&self, reply: Option<Reply>) {
        *self.inner.failure.lock().expect("failure") = reply;
    }

    /// Replaces the handler.
    pub fn set_handler(&self, handler: impl Fn(&str) -> Reply + Send + Sync + 'static) {
        *self.inner.handler.lock().expect("handler") = Arc::new(handler);
    }
}

impl Drop for GraphQlServer {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A URL on which nothing listens (connection refused), on a port this
/// process keeps (see [`super::closed_port`]).
pub fn closed_url() -> String {
    format!("http://127.0.0.1:{}/graphql", super::closed_port())
}

fn serve(mut conn: TcpStream, inner: &Inner) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(body) = read_request(&mut conn) else {
        return;
    };
    let query = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_string));
    let reply = match &query {
        None => Reply::Status(400, "expected a JSON body {\"query\": ...}".into()),
        Some(q) => {
            inner.queries.lock().expect("queries").push(q.clone());
            let failure = inner.failure.lock().expect("failure").clone();
            match failure {
                Some(f) => f,
                None => {
                    // Not called under the lock: a slow handler must not
                    // hold up other requests.
                    let handler = inner.handler.lock().expect("handler").clone();
                    handler(q)
                }
            }
        }
    };
    let (status, body) = match reply {
        Reply::Close => return,
        Reply::Json(v) => (200, v.to_string()),
        Reply::Raw(s) => (200, s),
        Reply::Status(code, s) => (code, s),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body.as_bytes());
    let _ = conn.flush();
}

/// Reads one request and returns its body (by Content-Length).
fn read_request(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + length].to_vec())
}

/// Canned grid data: nodes (all of them up) and each farm's public IPs.
#[derive(Debug, Clone, Default)]
pub struct Grid {
    /// Node objects as GraphQL returns them (see [`node`]).
    pub nodes: Vec<Value>,
    pub public_ips: BTreeMap<u32, Vec<Value>>,
}

/// A node object with public addresses (`None` = null) and a `zos` interface.
pub fn node(id: u32, farm: u32, ipv4: Option<&str>, ipv6: Option<&str>, zos_ips: &str) -> Value {
    json!({
        "nodeID": id,
        "farmID": farm,
        "publicConfig": { "ipv4": ipv4, "ipv6": ipv6 },
        "interfaces": [ { "name": "zos", "ips": zos_ips } ],
    })
}

/// A farm public IP object; the contract id is a string, as the indexer writes BigInt.
pub fn public_ip(ip: &str, gateway: &str, contract_id: u64) -> Value {
    json!({ "ip": ip, "gateway": gateway, "contractId": contract_id.to_string() })
}

impl Grid {
    /// Answers a query by its shape, as the grid's indexer would.
    pub fn answer(&self, query: &str) -> Reply {
        self.answer_page(query, usize::MAX)
    }

    /// [`Grid::answer`], with at most `max_page` nodes per answer.
    pub fn answer_page(&self, query: &str, max_page: usize) -> Reply {
        if query.contains("publicIps(") {
            let Some(farm) = number_after(query, "farmID_eq:") else {
                return Reply::error("publicIps query without farmID_eq");
            };
            let ips = self
                .public_ips
                .get(&(farm as u32))
                .cloned()
                .unwrap_or_default();
            return Reply::data(json!({ "publicIps": ips }));
        }
        let counting = query.contains("nodesConnection(");
        if !counting && !query.contains("nodes(") {
            return Reply::error("stand-in: unknown query shape");
        }
        if let Err(e) = check_up_filter(query) {
            return Reply::error(&e);
        }
        if counting && !query.contains("orderBy: id_ASC") {
            return Reply::error("nodesConnection needs orderBy");
        }
        let mut nodes: Vec<Value> = self
            .nodes
            .iter()
            .filter(|n| self.matches(n, query))
            .cloned()
            .collect();
        nodes.sort_by_key(|n| n["nodeID"].as_u64());
        if counting {
            return Reply::data(json!({ "nodesConnection": { "totalCount": nodes.len() } }));
        }
        // Keyset paging: the nodes after a node id, in node id order.
        if let Some(after) = number_after(query, "nodeID_gt:") {
            if !query.contains("orderBy: nodeID_ASC") {
                return Reply::error("stand-in: nodeID_gt without orderBy: nodeID_ASC");
            }
            nodes.retain(|n| n["nodeID"].as_u64().is_some_and(|id| id > after));
        }
        let offset = number_after(query, "offset:").unwrap_or(0) as usize;
        let limit = number_after(query, "limit:").map(|l| l as usize);
        let page: Vec<Value> = nodes
            .into_iter()
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX).min(max_page))
            .collect();
        Reply::data(json!({ "nodes": page }))
    }

    fn matches(&self, n: &Value, query: &str) -> bool {
        let farm = n["farmID"].as_u64();
        if let Some(f) = number_after(query, "farmID_eq:") {
            if farm != Some(f) {
                return false;
            }
        }
        if let Some(f) = number_after(query, "farmID_not_eq:") {
            if farm == Some(f) {
                return false;
            }
        }
        if query.contains("publicConfig: {") {
            let has = |k: &str| n["publicConfig"][k].as_str().is_some_and(|s| !s.is_empty());
            if !(has("ipv4") && has("ipv6")) {
                return false;
            }
        }
        true
    }
}

/// The up-node filter (docs/tasks/iperf.md): updated within 80 minutes, power null or Up/Up.
fn check_up_filter(query: &str) -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let Some(since) = number_after(query, "updatedAt_gte:") else {
        return Err("stand-in: nodes query without updatedAt_gte".into());
    };
    let expected = now - 80 * 60;
    if since.abs_diff(expected) > 120 {
        return Err(format!(
            "stand-in: updatedAt_gte {since} is not now - 80 min ({expected})"
        ));
    }
    if !query.contains("power_isNull: true")
        || !query.contains("power: {state_eq: Up, target_eq: Up}")
    {
        return Err("stand-in: nodes query without the power up filter".into());
    }
    if query.contains("publicConfig: {")
        && !query.contains(
            r#"publicConfig: {ipv4_isNull: false, ipv4_not_eq: "", ipv6_isNull: false, ipv6_not_eq: ""}"#,
        )
    {
        return Err("stand-in: incomplete publicConfig filter".into());
    }
    Ok(())
}

/// The unsigned number right after `key` in `text`.
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}
