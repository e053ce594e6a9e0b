//! Bad input to the daemon serving over the relay (`[bus.relay] enabled`):
//! a caller twin on the test relay sends the daemon forged, expired,
//! undecryptable, garbled and oversized requests. Each is refused with the
//! rmb-rs error code when the sender can be answered, or dropped and
//! counted when not (the counters read from the daemon's metrics); after
//! each, a valid request is still answered on the same connection: the
//! relay saw no reconnect. Also: a sender clock behind ours within the skew
//! allowance, a stored value over the size limit, and a plain (unencrypted)
//! call from the grid's TypeScript client.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::interop::rmb_js;
use common::observe::{get, sample, Observed};
use common::rmbgrid::{store_fresh_cpu, RmbGrid, MNEMONIC_A, MNEMONIC_B};
use common::served::serving_daemon;
use common::{wait_for, RedisServer};
use serde_json::{json, Value};
use zos_perf::rmb::envelope::{self, Address, Body, Envelope, Payload, Request};
use zos_perf::rmb::relay_link::{self, Event, Link, RelayOptions};
use zos_perf::rmb::{e2e, Identity, KeyType};

const CALLER: u32 = 100;
const SERVER: u32 = 300;
const SID: &str = "bad-input";
const OTHER: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

/// The daemon serving as twin 300 (ed25519, `pk` on chain unless told
/// otherwise) over the test relay, with its metrics listener on, and a
/// fresh cpu-benchmark result stored.
struct Served {
    daemon: Observed,
    g: RmbGrid,
    redis: RedisServer,
    stored: Value,
    _dir: tempfile::TempDir,
}

fn served(server_pk: bool) -> Served {
    let redis = RedisServer::start();
    let stored = store_fresh_cpu(&redis);
    let g = RmbGrid::start();
    g.add_caller_and_server(CALLER, SERVER, server_pk);
    let dir = tempfile::tempdir().unwrap();
    let daemon = serving_daemon(&g, &redis, dir.path(), SERVER, "2s", None);
    Served {
        daemon,
        g,
        redis,
        stored,
        _dir: dir,
    }
}

/// The caller's side: its own connection to the relay, as twin 100.
struct Caller {
    who: Identity,
    server: Identity,
    link: Link,
    n: u32,
}

impl Caller {
    async fn connect(g: &RmbGrid) -> Caller {
        let who = Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).unwrap();
        // Room to send frames over the daemon's own limit.
        let options = RelayOptions {
            max_message: 16 << 20,
            ..RelayOptions::default()
        };
        let link = relay_link::open(&g.relay.url(), &who, CALLER, Some(SID), &options)
            .await
            .expect("caller connects");
        let server = Identity::from_secret(MNEMONIC_B, KeyType::Ed25519).unwrap();
        Caller {
            who,
            server,
            link,
            n: 0,
        }
    }

    /// A signed request for the daemon, sent now with 60 s to live.
    fn request(&mut self, command: &str, payload: Option<Payload>) -> Envelope {
        self.n += 1;
        let mut env = Envelope {
            uid: format!("bad-{}", self.n),
            timestamp: zos_perf::unix_time::unix_now(),
            expiration: 60,
            source: Some(Address::session(CALLER, Some(SID.into()))),
            destination: Some(Address::twin(SERVER)),
            message: Some(Body::Request(Request {
                command: command.into(),
            })),
            schema: Some(envelope::SCHEMA_JSON.into()),
            payload,
            ..Envelope::default()
        };
        env.sign(&self.who);
        env
    }

    fn get_cpu(&mut self) -> Envelope {
        let payload = Payload::Plain(br#"{"Name":"cpu-benchmark"}"#.to_vec());
        self.request("zos.perf.get", Some(payload))
    }

    async fn send(&self, env: &Envelope) {
        self.link.sender().send(env).await.expect("send");
    }

    /// The reply to `uid`, its signature checked against the daemon's
    /// account; `None` if none comes within `wait`.
    async fn reply(&mut self, uid: &str, wait: Duration) -> Option<Envelope> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let event = tokio::time::timeout_at(deadline, self.link.events.recv())
                .await
                .ok()?;
            match event {
                Some(Event::Envelope(env, _)) if env.uid == uid => {
                    env.verify(&self.server.account_id())
                        .expect("the reply is signed by the daemon");
                    assert_eq!(env.schema.as_deref(), Some(envelope::SCHEMA_JSON));
                    return Some(*env);
                }
                Some(Event::Envelope(..)) => continue,
                other => panic!("caller connection: {other:?}"),
            }
        }
    }

    /// Sends `env` and returns the error code and message it gets.
    async fn refused(&mut self, env: &Envelope) -> (u32, String) {
        self.send(env).await;
        let reply = self
            .reply(&env.uid, Duration::from_secs(10))
            .await
            .expect("an error reply");
        match reply.message {
            Some(Body::Error(e)) => (e.code, e.message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Sends `env` and returns the JSON of the answer (decrypted).
    async fn answered(&mut self, env: &Envelope) -> Value {
        self.send(env).await;
        let reply = self
            .reply(&env.uid, Duration::from_secs(10))
            .await
            .expect("an answer");
        assert!(
            matches!(reply.message, Some(Body::Response(_))),
            "{:?}",
            reply.message
        );
        let json = match reply.payload {
            Some(Payload::Cipher(c)) => {
                e2e::decrypt(&self.who, &self.server.secp256k1_public(), &c).expect("decrypts")
            }
            Some(Payload::Plain(p)) => p,
            None => panic!("an answer without payload"),
        };
        serde_json::from_slice(&json).expect("JSON answer")
    }
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let body = get(addr, "/metrics", "").body;
    sample(&body, name).unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

fn refused_count(addr: SocketAddr, reason: &str) -> f64 {
    metric(
        addr,
        &format!("zos_perf_relay_refused_requests_total{{reason=\"{reason}\"}}"),
    )
}

fn dropped_count(addr: SocketAddr, reason: &str) -> f64 {
    metric(
        addr,
        &format!("zos_perf_relay_dropped_frames_total{{reason=\"{reason}\"}}"),
    )
}

/// The daemon still answers, on the connection it had: no reconnect.
async fn still_up(c: &mut Caller, s: &Served, connections: u64) {
    let env = c.get_cpu();
    assert_eq!(c.answered(&env).await, s.stored);
    assert_eq!(
        s.g.relay.connections(),
        connections,
        "the daemon reconnected"
    );
    assert!(s.g.relay.is_online(SERVER, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_or_dropped_and_counted_and_the_connection_stays_up() {
    let s = served(true);
    let addr = s.daemon.addr();
    let mut c = Caller::connect(&s.g).await;
    // The relay counts a connection once it has taken it in, which can be
    // a moment after the caller's side is open.
    wait_for(Duration::from_secs(10), "the caller on the relay", || {
        s.g.relay.is_online(CALLER, Some(SID)).then_some(())
    });
    let connections = s.g.relay.connections();
    still_up(&mut c, &s, connections).await;

    // A forged signature: signed by a key that is not the caller's.
    let mut env = c.get_cpu();
    env.sign(&Identity::from_secret(OTHER, KeyType::Sr25519).unwrap());
    let (code, message) = c.refused(&env).await;
    assert_eq!(code, 104, "{message}");
    assert!(message.contains("invalid envelope signature"), "{message}");
    still_up(&mut c, &s, connections).await;

    // A signature with a key type byte that is neither 'e' nor 's'.
    let mut env = c.get_cpu();
    if let Some(sig) = env.signature.as_mut() {
        sig[0] = b'x';
    }
    let (code, message) = c.refused(&env).await;
    assert_eq!(code, 104, "{message}");
    still_up(&mut c, &s, connections).await;

    // Expired: sent an hour ago with a minute to live, far past the skew
    // allowance (5 minutes by default).
    let mut env = c.get_cpu();
    env.timestamp -= 3600;
    env.sign(&c.who);
    let (code, message) = c.refused(&env).await;
    assert_eq!(code, 102, "{message}");
    assert!(message.contains("message has expired"), "{message}");
    still_up(&mut c, &s, connections).await;

    // Expired by our clock, but within the skew allowance: answered.
    let mut env = c.get_cpu();
    env.timestamp -= 200;
    env.sign(&c.who);
    assert_eq!(c.answered(&env).await, s.stored);

    // A cipher that does not decrypt.
    let env = c.request("zos.perf.get", Some(Payload::Cipher(vec![7u8; 64])));
    let (code, message) = c.refused(&env).await;
    assert_eq!(code, 106, "{message}");
    assert!(message.contains("e2e error"), "{message}");
    still_up(&mut c, &s, connections).await;

    // A payload over the bus's limit, in a frame the daemon reads.
    let big = format!(
        r#"{{"Name":"cpu-benchmark","pad":"{}"}}"#,
        "x".repeat(100_000)
    );
    let env = c.request("zos.perf.get", Some(Payload::Plain(big.into_bytes())));
    let (code, message) = c.refused(&env).await;
    assert_eq!(code, 3, "{message}");
    assert!(message.contains("payload too large"), "{message}");
    still_up(&mut c, &s, connections).await;

    // Garbage protobuf: the relay delivers bytes that are not an envelope.
    // Nobody can be answered: dropped and counted.
    s.g.relay.corrupt_deliveries_to(Some(SERVER));
    let env = c.get_cpu();
    c.send(&env).await;
    wait_for(Duration::from_secs(10), "the garbled frame counted", || {
        (dropped_count(addr, "not_envelope") == 1.0).then_some(())
    });
    s.g.relay.corrupt_deliveries_to(None);
    assert!(c
        .reply(&env.uid, Duration::from_millis(300))
        .await
        .is_none());
    still_up(&mut c, &s, connections).await;

    // A frame over the daemon's 4 MiB limit: skipped unread, counted.
    let huge = vec![b' '; 5 << 20];
    let env = c.request("zos.perf.get", Some(Payload::Plain(huge)));
    c.send(&env).await;
    wait_for(
        Duration::from_secs(20),
        "the oversized frame counted",
        || (dropped_count(addr, "oversized") == 1.0).then_some(()),
    );
    assert!(c
        .reply(&env.uid, Duration::from_millis(300))
        .await
        .is_none());
    still_up(&mut c, &s, connections).await;

    // A response addressed to the daemon is nothing to answer.
    let mut env = c.get_cpu();
    env.message = Some(Body::Response(envelope::Response {}));
    env.sign(&c.who);
    c.send(&env).await;
    wait_for(
        Duration::from_secs(10),
        "the stray response counted",
        || (dropped_count(addr, "not_request") == 1.0).then_some(()),
    );
    still_up(&mut c, &s, connections).await;

    // zos.perf.history, read from the same store as the local bus.
    let record = json!({"timestamp": 1, "result": {"single": 1.0}});
    redis::cmd("LPUSH")
        .arg(zos_perf::node_redis::keys::history("cpu-benchmark"))
        .arg(record.to_string())
        .query::<()>(&mut s.redis.conn())
        .unwrap();
    let payload = Payload::Plain(br#"{"Name":"cpu-benchmark"}"#.to_vec());
    let env = c.request("zos.perf.history", Some(payload));
    assert_eq!(c.answered(&env).await, json!([record]));

    for (reason, n) in [
        ("bad_signature", 2.0),
        ("expired", 1.0),
        ("undecryptable", 1.0),
        ("too_large", 1.0),
        ("unknown_twin", 0.0),
        ("no_public_key", 0.0),
    ] {
        assert_eq!(refused_count(addr, reason), n, "{reason}");
    }
    assert_eq!(
        metric(addr, "zos_perf_relay_replies_total{outcome=\"ok\"}"),
        11.0
    );
    assert_eq!(metric(addr, "zos_perf_relay_connections_total"), 1.0);
    assert_eq!(metric(addr, "zos_perf_relay_connected"), 1.0);

    // A stored value over the size limit is error 8, read no further than
    // its length (a full read would answer it or break the connection).
    let huge = format!("[\"{}\"]", "x".repeat(zos_perf::store::MAX_STORED + 1));
    redis::cmd("SET")
        .arg("perf.cpu-benchmark")
        .arg(huge)
        .query::<()>(&mut s.redis.conn())
        .unwrap();
    let env = c.get_cpu();
    let (code, message) = c.refused(&env).await;
    assert_eq!(code, 8, "{message}");
    assert!(message.contains("the limit is"), "{message}");
    assert_eq!(s.g.relay.connections(), connections);
}

/// The TypeScript client encrypts only when both twins have a `pk` on
/// chain (and insists on its own): with a serving twin without one, its
/// call goes plain, and so does the daemon's reply.
#[test]
fn the_typescript_client_calls_plain_when_the_serving_twin_has_no_pk() {
    let s = served(false);
    let who = Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).unwrap();
    let server = Identity::from_secret(MNEMONIC_B, KeyType::Ed25519).unwrap();
    let twins = json!([
        {"id": CALLER, "account": hex::encode(who.account_id()), "keyType": "sr25519",
         "relay": s.g.relay.host(), "pk": hex::encode(who.secp256k1_public())},
        {"id": SERVER, "account": hex::encode(server.account_id()), "keyType": "ed25519",
         "relay": s.g.relay.host(), "pk": null},
    ]);
    let out = rmb_js(
        "call",
        json!({"mnemonic": MNEMONIC_A, "keyType": "sr25519",
        "relayUrl": s.g.relay.url(), "sid": "ts-plain", "twins": twins, "dest": SERVER,
        "command": "zos.perf.get", "payload": r#"{"Name":"cpu-benchmark"}"#}),
    );
    assert_eq!(out["result"], s.stored, "{out}");
    let body = get(s.daemon.addr(), "/metrics", "").body;
    assert_eq!(
        sample(&body, "zos_perf_relay_replies_total{outcome=\"ok\"}"),
        Some(1.0),
        "{body}"
    );
}
