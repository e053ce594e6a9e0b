//! A small grid on loopback for RMB tests: the stand-in chain holding
//! twins and nodes (SCALE-encoded as tfchain stores them), the test relay,
//! and test responders: twins connected to the relay that answer
//! `zos.perf.get` / `get_all` from a fixed list of results, the way a node
//! does (verify the caller, decrypt, answer signed and encrypted).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::StreamExt;

use parity_scale_codec::Encode;
use serde_json::Value;
use tokio::sync::watch;
use zos_perf::grid::chain::{ChainClient, ChainOptions};
use zos_perf::rmb::envelope::{self, Address, Body, Envelope, Payload, Response};
use zos_perf::rmb::relay_link::{self, Event, RelayOptions};
use zos_perf::rmb::twin::{self, NodeHead, Twin, TwinDb};
use zos_perf::rmb::{e2e, Identity, KeyType};

use super::chain::ChainServer;
use super::relay::TestRelay;

pub const MNEMONIC_A: &str =
    "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
pub const MNEMONIC_B: &str =
    "legal winner thank year wave sausage worth useful legal winner thank yellow";

/// A fresh 32-byte hex seed per call (distinct identities for many twins).
pub fn seed(n: u32) -> String {
    format!("0x{:0>64x}", 0x5eed_0000u64 + u64::from(n))
}

pub struct RmbGrid {
    pub chain: ChainServer,
    pub relay: TestRelay,
}

impl RmbGrid {
    pub fn start() -> RmbGrid {
        let chain = ChainServer::start();
        let relay = TestRelay::start(&chain.url());
        RmbGrid { chain, relay }
    }

    /// As [`RmbGrid::start`], with a relay that keeps the twins it read for
    /// 10 minutes, as the grid's relay does: for benches.
    pub fn start_like_the_grid() -> RmbGrid {
        let chain = ChainServer::start();
        let relay = TestRelay::start_caching(&chain.url(), Duration::from_secs(600));
        RmbGrid { chain, relay }
    }

    /// Registers twin `id` for `who` (its account by `who`'s key type),
    /// reachable on this relay, with `who`'s pk unless `pk` is false.
    pub fn add_twin(&self, id: u32, who: &Identity, pk: bool) {
        self.put_twin(Twin {
            id,
            account_id: who.account_id(),
            relay: Some(self.relay.host().into_bytes()),
            entities: vec![],
            pk: pk.then(|| who.secp256k1_public().to_vec()),
        });
        self.chain
            .insert(twin::twin_by_account_key(&who.account_id()), id.encode());
    }

    pub fn put_twin(&self, t: Twin) {
        self.chain.insert(twin::twin_key(t.id), t.encode());
    }

    pub fn add_node(&self, node: u32, farm: u32, twin_id: u32) {
        let mut raw = NodeHead {
            version: 4,
            id: node,
            farm_id: farm,
            twin_id,
        }
        .encode();
        raw.extend_from_slice(&[0u8; 24]); // fields a reader skips
        self.chain.insert(twin::node_key(node), raw);
    }

    /// The usual pair: twin `caller` for `MNEMONIC_A` (sr25519, with its
    /// pk) and twin `server` for `MNEMONIC_B` (ed25519, its pk on chain
    /// when `server_pk`).
    pub fn add_caller_and_server(&self, caller: u32, server: u32, server_pk: bool) {
        self.add_twin(
            caller,
            &Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).expect("caller identity"),
            true,
        );
        self.add_twin(
            server,
            &Identity::from_secret(MNEMONIC_B, KeyType::Ed25519).expect("server identity"),
            server_pk,
        );
    }

    /// `--relay URL --chain URL --key-type sr25519`: a `zos-perf call` or
    /// `fleet` pointed at this grid as an sr25519 caller.
    pub fn caller_args(&self) -> [String; 6] {
        [
            "--relay".into(),
            self.relay.url(),
            "--chain".into(),
            self.chain.url(),
            "--key-type".into(),
            "sr25519".into(),
        ]
    }

    /// The configuration of a daemon serving zos.perf over this grid's
    /// relay as an ed25519 twin, every task but cpu-benchmark disabled.
    /// `rmb_extra` goes on at the end of the `[rmb]` section and may open
    /// further sections; `redis`, when given, is the top-level `redis` URL.
    pub fn serving_config(&self, redis: Option<&str>, rmb_extra: &str) -> String {
        let mut text = redis.map_or(String::new(), |url| format!("redis = \"{url}\"\n"));
        text += &format!(
            "[bus.relay]\nenabled = true\n[rmb]\nrelays = [\"{}\"]\nchain_urls = [\"{}\"]\nkey_type = \"ed25519\"\n{rmb_extra}",
            self.relay.url(),
            self.chain.url()
        );
        for task in ["healthcheck", "iperf", "public-ip-validation"] {
            text += &format!("[tasks.{task}]\nenabled = false\n");
        }
        text
    }
}

/// Stores a fresh cpu-benchmark result in `redis` (the daemon does not run
/// a task that has one, and deletes the results of disabled tasks only):
/// the value stored.
pub fn store_fresh_cpu(redis: &super::RedisServer) -> Value {
    let now = zos_perf::unix_time::unix_now();
    let stored = serde_json::json!({"name": "cpu-benchmark", "description": "cpu", "timestamp": now,
                        "result": {"single": 1.25, "multi": 9.5, "threads": 8, "workloads": 0}});
    redis::cmd("SET")
        .arg("perf.cpu-benchmark")
        .arg(stored.to_string())
        .query::<()>(&mut redis.conn())
        .expect("store the cpu-benchmark result");
    stored
}

/// `zos-perf run` with `config`, serving as the twin of `MNEMONIC_B`.
pub fn spawn_serving(config: &std::path::Path) -> super::KillOnDrop {
    super::KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_zos-perf"))
            .args(["run", "--kernel-cmdline", "/dev/null", "--log", "warn"])
            .arg("--config")
            .arg(config)
            .env("ZOS_PERF_MNEMONIC", MNEMONIC_B)
            .env_remove("ZOS_PERF_CONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn zos-perf run"),
    )
}

/// How a responder misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Signs its replies with a key that is not its account's.
    ForgedSignature,
    /// Reads requests and never answers.
    Silent,
    /// Answers with the text its results are (a JSON string): `zos.perf.get`
    /// with that text as the reply's bytes (not JSON), anything else with
    /// an error whose message is that text.
    Hostile,
}

/// A twin answering zos.perf requests through the relay.
pub struct Responder {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    handled: Arc<AtomicUsize>,
}

impl Responder {
    /// Connects `who` as twin `twin_id` (no session, as nodes do) and waits
    /// until the relay has it online.
    pub fn start(
        grid: &RmbGrid,
        who: Identity,
        twin_id: u32,
        results: Value,
        behaviour: Behaviour,
    ) -> Responder {
        let (stop, stopped) = watch::channel(false);
        let handled = Arc::new(AtomicUsize::new(0));
        let (relay_url, chain_url, h) = (grid.relay.url(), grid.chain.url(), handled.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("responder runtime");
            rt.block_on(async move {
                let chain = ChainClient::new(vec![chain_url], ChainOptions::default()).unwrap();
                let twins = Arc::new(TwinDb::new(Arc::new(chain), Duration::from_secs(60)));
                let link =
                    relay_link::open(&relay_url, &who, twin_id, None, &RelayOptions::default())
                        .await
                        .expect("responder connects to the test relay");
                let _ = ready_tx.send(());
                let how = How {
                    results,
                    behaviour,
                    gauge: None,
                };
                serve(link, who, twin_id, twins, how, h, stopped).await;
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("responder connected");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !grid.relay.is_online(twin_id, None) {
            assert!(
                std::time::Instant::now() < deadline,
                "responder {twin_id} never online"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Responder {
            stop,
            thread: Some(thread),
            handled,
        }
    }

    /// Many twins answering on one thread (one relay connection each, one
    /// chain client for all): `members` are (identity, twin id). Every
    /// request is counted by `gauge` (and held back as it says) when
    /// given. Returns once the relay has them all online.
    pub fn start_many(
        grid: &RmbGrid,
        members: Vec<(Identity, u32)>,
        results: Value,
        behaviour: Behaviour,
        gauge: Option<Arc<Gauge>>,
    ) -> Responder {
        let (stop, stopped) = watch::channel(false);
        let handled = Arc::new(AtomicUsize::new(0));
        let (relay_url, chain_url, h) = (grid.relay.url(), grid.chain.url(), handled.clone());
        let ids: Vec<u32> = members.iter().map(|m| m.1).collect();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("responders' runtime");
            rt.block_on(async move {
                let chain = ChainClient::new(vec![chain_url], ChainOptions::default()).unwrap();
                let twins = Arc::new(TwinDb::new(Arc::new(chain), Duration::from_secs(600)));
                // Each responder serves as soon as its connection is open:
                // one left unread while thousands of others connect would
                // give its link up (nothing read for `dead_after`) and
                // never answer.
                let tasks: Vec<_> = futures::stream::iter(members)
                    .map(|(who, twin_id)| {
                        let relay_url = relay_url.clone();
                        async move {
                            let link = relay_link::open(
                                &relay_url,
                                &who,
                                twin_id,
                                None,
                                &RelayOptions::default(),
                            )
                            .await
                            .expect("responder connects to the test relay");
                            (link, who, twin_id)
                        }
                    })
                    .buffer_unordered(32)
                    .map(|(link, who, twin_id)| {
                        let how = How {
                            results: results.clone(),
                            behaviour,
                            gauge: gauge.clone(),
                        };
                        tokio::spawn(serve(
                            link,
                            who,
                            twin_id,
                            twins.clone(),
                            how,
                            h.clone(),
                            stopped.clone(),
                        ))
                    })
                    .collect()
                    .await;
                let _ = ready_tx.send(());
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(600))
            .expect("responders connected");
        let deadline = Instant::now() + Duration::from_secs(60);
        for id in ids {
            while !grid.relay.is_online(id, None) {
                assert!(Instant::now() < deadline, "responder {id} never online");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Responder {
            stop,
            thread: Some(thread),
            handled,
        }
    }

    /// Requests answered so far.
    pub fn handled(&self) -> usize {
        self.handled.load(Ordering::SeqCst)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Calls in flight across the responders sharing it (the most seen at
/// once), and a hold on their answers: a request is answered once
/// `release_at` requests are in flight together, or [`Gauge::open`] was
/// called, or it was held [`Gauge::HOLD_MAX`].
pub struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
    release_at: usize,
    open: AtomicBool,
    /// Each request is answered no sooner than this after it came.
    linger: Duration,
}

impl Gauge {
    /// The longest a request is held back.
    pub const HOLD_MAX: Duration = Duration::from_secs(30);

    /// Holds each request until `release_at` are in flight (1: no hold).
    pub fn new(release_at: usize) -> Arc<Gauge> {
        Gauge::lingering(release_at, Duration::ZERO)
    }

    /// Holds each request until `release_at` are in flight, and answers
    /// none sooner than `linger` after it came: a client with one call
    /// more in flight than it may have is then seen with them all at once
    /// (released at once, they would be answered before it sent its next).
    pub fn lingering(release_at: usize, linger: Duration) -> Arc<Gauge> {
        Arc::new(Gauge {
            now: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
            release_at,
            open: AtomicBool::new(false),
            linger,
        })
    }

    /// The most requests in flight at once so far.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    /// Requests received and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// Lets every held request (and every later one) be answered.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    async fn hold(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        let came = Instant::now();
        let until = came + Self::HOLD_MAX;
        while !self.open.load(Ordering::SeqCst)
            && self.max.load(Ordering::SeqCst) < self.release_at
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep_until((came + self.linger).into()).await;
    }

    fn done(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a responder answers, and how.
struct How {
    results: Value,
    behaviour: Behaviour,
    gauge: Option<Arc<Gauge>>,
}

async fn serve(
    mut link: relay_link::Link,
    who: Identity,
    twin_id: u32,
    twins: Arc<TwinDb>,
    how: How,
    handled: Arc<AtomicUsize>,
    mut stopped: watch::Receiver<bool>,
) {
    let How {
        results,
        behaviour,
        gauge,
    } = how;
    let forger = Identity::from_secret(MNEMONIC_A, KeyType::Ed25519).unwrap();
    let sender = link.sender();
    let own_pk = twins
        .twin(twin_id)
        .await
        .is_ok_and(|t| t.public_key().is_some());
    loop {
        let event = tokio::select! {
            _ = stopped.changed() => return,
            e = link.events.recv() => e,
        };
        let env = match event {
            Some(Event::Envelope(env, _)) => *env,
            Some(Event::Garbage(_) | Event::Oversized(_)) => continue,
            Some(Event::Closed(_)) | None => return,
        };
        let Some(Body::Request(req)) = env.message.clone() else {
            continue;
        };
        if behaviour == Behaviour::Silent {
            continue;
        }
        let Ok(caller) = twins.twin(env.source_twin()).await else {
            continue;
        };
        if env.verify(&caller.account_id).is_err() {
            continue;
        }
        let payload = match &env.payload {
            Some(Payload::Cipher(c)) => {
                match caller.public_key().map(|pk| e2e::decrypt(&who, pk, c)) {
                    Some(Ok(p)) => p,
                    _ => continue,
                }
            }
            Some(Payload::Plain(p)) => p.clone(),
            None => vec![],
        };
        if let Some(g) = &gauge {
            g.hold().await;
        }
        let (body, out) = match (behaviour, results.as_str()) {
            (Behaviour::Hostile, Some(text)) => hostile(&req.command, text),
            _ => {
                let (body, answer) = answer(&req.command, &payload, &results);
                (body, serde_json::to_vec(&answer).unwrap())
            }
        };
        let mut reply = Envelope {
            uid: env.uid.clone(),
            timestamp: zos_perf::unix_time::unix_now(),
            expiration: 300,
            source: Some(Address::twin(twin_id)),
            destination: env.source.clone(),
            message: Some(body),
            schema: Some(envelope::SCHEMA_JSON.into()),
            // Encrypted only when the caller can open it: both have a pk.
            payload: Some(match (caller.public_key(), own_pk) {
                (Some(pk), true) => Payload::Cipher(e2e::encrypt(&who, pk, &out).unwrap()),
                _ => Payload::Plain(out),
            }),
            ..Envelope::default()
        };
        match behaviour {
            Behaviour::ForgedSignature => reply.sign(&forger),
            _ => reply.sign(&who),
        }
        let sent = sender.send(&reply).await;
        if let Some(g) = &gauge {
            g.done();
        }
        if sent.is_err() {
            return;
        }
        handled.fetch_add(1, Ordering::SeqCst);
    }
}

fn hostile(command: &str, text: &str) -> (Body, Vec<u8>) {
    match command {
        "zos.perf.get" => (Body::Response(Response {}), text.as_bytes().to_vec()),
        _ => (
            Body::Error(envelope::Error {
                code: 0,
                message: text.to_string(),
            }),
            b"null".to_vec(),
        ),
    }
}

fn answer(command: &str, payload: &[u8], results: &Value) -> (Body, Value) {
    let error = |m: &str| {
        (
            Body::Error(envelope::Error {
                code: 0,
                message: m.to_string(),
            }),
            Value::Null,
        )
    };
    match command {
        "zos.perf.get_all" => (Body::Response(Response {}), results.clone()),
        "zos.perf.get" => {
            let name = serde_json::from_slice::<Value>(payload).ok().and_then(|v| {
                v.get("Name")
                    .or(v.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            match results
                .as_array()
                .and_then(|a| a.iter().find(|r| r["name"].as_str() == name.as_deref()))
            {
                Some(r) => (Body::Response(Response {}), r.clone()),
                None => error("result not found"),
            }
        }
        _ => error("function is not found"),
    }
}
