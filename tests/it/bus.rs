//! The bus handler against a real redis-server, spoken to the way the RMB
//! peer speaks to it: requests LPUSHed onto `msgbus.zos.perf.*`, replies
//! BRPOPed from a `ret` list of the test's own.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::RedisServer;
use zos_perf::bus::BusConfig;
use zos_perf::bus::{self, Bus, BusStats, Command};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A connection whose replies may take as long as the longest BRPOP these
/// tests send (30 s) and a margin: the crate's default of 500 ms would cut a
/// wait for the handler short whenever it is slow to come back, as it is
/// after Redis restarts on a loaded machine.
async fn waiting_conn(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(35)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

const CPU: &str = r#"{"name":"cpu-benchmark","description":"Measures the performance of the node CPU by reporting the timespent of computing a task in seconds.","timestamp":1700000000,"result":{"single":1.234,"multi":5.678,"threads":4,"workloads":0}}"#;
const HEALTH: &str = r#"{"name":"healthcheck","description":"health check","timestamp":1700000001,"result":{"cache":[],"network":[]}}"#;

/// A redis-server with the bus handler serving it.
struct Harness {
    server: RedisServer,
    client: redis::Client,
    shutdown: CancellationToken,
    stats: Arc<BusStats>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    fn start() -> Harness {
        Self::start_with(BusConfig::default())
    }

    fn start_with(config: BusConfig) -> Harness {
        let server = RedisServer::start();
        let client = redis::Client::open(server.url()).expect("client");
        let shutdown = CancellationToken::new();
        let bus = Bus::new(client.clone(), config);
        let stats = bus.stats();
        let handle = tokio::spawn(bus.serve(shutdown.clone()));
        Harness {
            server,
            client,
            shutdown,
            stats,
            handle: Some(handle),
        }
    }

    async fn conn(&self) -> MultiplexedConnection {
        waiting_conn(&self.client)
            .await
            .expect("connect to test redis")
    }

    async fn set(&self, key: &str, value: &str) {
        let mut c = self.conn().await;
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut c)
            .await
            .expect("SET");
    }

    async fn push(&self, cmd: Command, message: &[u8]) {
        let mut c = self.conn().await;
        redis::cmd("LPUSH")
            .arg(cmd.list())
            .arg(message)
            .query_async::<()>(&mut c)
            .await
            .expect("LPUSH");
    }

    /// The next reply on `ret`, raw, within 10 s.
    async fn reply(&self, ret: &str) -> Value {
        let mut c = self.conn().await;
        let (_, raw): (String, Vec<u8>) = redis::cmd("BRPOP")
            .arg(ret)
            .arg(10)
            .query_async::<Option<(String, Vec<u8>)>>(&mut c)
            .await
            .expect("BRPOP")
            .unwrap_or_else(|| panic!("no reply on {ret} within 10 s"));
        serde_json::from_slice(&raw).expect("reply is JSON")
    }

    /// Sends one request and returns its reply.
    async fn call(&self, cmd: Command, request: &Value) -> Value {
        self.push(cmd, &serde_json::to_vec(request).expect("encode"))
            .await;
        self.reply(request["ret"].as_str().expect("ret")).await
    }

    async fn llen(&self, list: &str) -> usize {
        let mut c = self.conn().await;
        redis::cmd("LLEN")
            .arg(list)
            .query_async(&mut c)
            .await
            .expect("LLEN")
    }

    /// Waits until every request pushed so far has been popped and dealt
    /// with (answered, dropped, expired or lost).
    async fn quiesce(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.stats.snapshot();
            let queued =
                self.llen(Command::Get.list()).await + self.llen(Command::GetAll.list()).await;
            if queued == 0 && s.received == s.replied + s.expired + s.dropped + s.lost {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "bus did not settle: {s:?}, {queued} queued"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn ret_list() -> String {
    format!("msgbus.test.{:016x}", rand::random::<u64>())
}

/// A well-formed request as the peer writes it.
fn request(ret: &str, reference: &str, payload: &[u8]) -> Value {
    json!({"ver": 1, "ref": reference, "src": "42:abc", "cmd": "zos.perf.get", "exp": 60,
        "dat": B64.encode(payload), "tag": null, "ret": ret, "shm": null, "now": unix_now()})
}

fn get_name(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"Name": name})).expect("encode")
}

fn result_of(reply: &Value) -> Value {
    assert!(reply["err"].is_null(), "unexpected error reply {reply}");
    let bytes = B64
        .decode(reply["dat"].as_str().expect("dat is a string"))
        .expect("dat is base64");
    serde_json::from_slice(&bytes).expect("dat decodes to JSON")
}

fn error_of(reply: &Value) -> (u64, String) {
    assert_eq!(reply["dat"], "", "an error reply has empty dat: {reply}");
    let err = &reply["err"];
    (
        err["code"].as_u64().expect("err.code"),
        err["message"].as_str().expect("err.message").to_string(),
    )
}

fn parsed(json: &str) -> Value {
    serde_json::from_str(json).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_has_exactly_the_protocol_fields_and_dat_decodes_to_the_stored_object() {
    let h = Harness::start();
    h.set("perf.cpu-benchmark", CPU).await;
    let ret = ret_list();
    let before = unix_now();
    let reply = h
        .call(
            Command::Get,
            &request(&ret, "ref-1", &get_name("cpu-benchmark")),
        )
        .await;
    let mut keys: Vec<&str> = reply
        .as_object()
        .expect("reply is an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["dat", "dst", "err", "now", "ref", "shm", "ver"]);
    assert_eq!(reply["ver"], 1);
    assert_eq!(reply["ref"], "ref-1");
    assert_eq!(reply["dst"], "42:abc");
    assert_eq!(reply["shm"], "application/json");
    assert!(reply["now"].as_u64().expect("now") >= before);
    assert_eq!(result_of(&reply), parsed(CPU));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_ref_and_src_with_a_connection_part_round_trip() {
    let h = Harness::start();
    h.set("perf.cpu-benchmark", CPU).await;
    let ret = ret_list();
    let mut req = request(&ret, "x", &get_name("cpu-benchmark"));
    req["ref"] = Value::Null;
    req["src"] = json!("42:abc");
    let reply = h.call(Command::Get, &req).await;
    assert!(reply["ref"].is_null(), "{reply}");
    assert_eq!(reply["dst"], "42:abc");

    // Absent ref reads as null too; a plain twin id comes back as is.
    req.as_object_mut().expect("object").remove("ref");
    req["src"] = json!("7");
    let reply = h.call(Command::Get, &req).await;
    assert!(reply["ref"].is_null(), "{reply}");
    assert_eq!(reply["dst"], "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_key_matches_in_any_case() {
    let h = Harness::start();
    h.set("perf.cpu-benchmark", CPU).await;
    let ret = ret_list();
    for key in ["Name", "name", "NAME"] {
        let payload = serde_json::to_vec(&json!({key: "cpu-benchmark"})).expect("encode");
        let reply = h.call(Command::Get, &request(&ret, key, &payload)).await;
        assert_eq!(reply["ref"], key);
        assert_eq!(result_of(&reply), parsed(CPU), "with key {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_all_returns_every_stored_result_or_an_empty_array() {
    let h = Harness::start();
    let ret = ret_list();
    let reply = h.call(Command::GetAll, &request(&ret, "a", b"")).await;
    assert_eq!(result_of(&reply), json!([]));

    h.set("perf.cpu-benchmark", CPU).await;
    h.set("perf.healthcheck", HEALTH).await;
    h.set("perf.not-a-task", "{}").await;
    // The payload of get_all is ignored, whatever it is.
    let reply = h
        .call(Command::GetAll, &request(&ret, "b", b"anything"))
        .await;
    assert_eq!(result_of(&reply), json!([parsed(CPU), parsed(HEALTH)]));
    assert_eq!(reply["shm"], "application/json");
}

// ---- bad input: one clear outcome each ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stored_result_is_result_not_found() {
    let h = Harness::start();
    let ret = ret_list();
    let reply = h
        .call(Command::Get, &request(&ret, "r", &get_name("iperf")))
        .await;
    assert_eq!(error_of(&reply), (7, "result not found".to_string()));
    assert_eq!(reply["ref"], "r");
    assert_eq!(reply["dst"], "42:abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_task_name_is_an_error_that_names_it() {
    let h = Harness::start();
    let ret = ret_list();
    let reply = h
        .call(
            Command::Get,
            &request(&ret, "r", &get_name("disk-benchmark")),
        )
        .await;
    let (code, message) = error_of(&reply);
    assert_eq!(code, 6);
    assert!(
        message.starts_with("unknown task name \"disk-benchmark\""),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_task_name_is_an_error_that_names_it() {
    let h = Harness::start();
    let ret = ret_list();
    let reply = h
        .call(Command::Get, &request(&ret, "r", &get_name("")))
        .await;
    let (code, message) = error_of(&reply);
    assert_eq!(code, 6);
    assert!(message.starts_with("task name \"\" is empty"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dat_that_is_not_base64_is_an_error_saying_so() {
    let h = Harness::start();
    let ret = ret_list();
    let mut req = request(&ret, "r", b"");
    req["dat"] = json!("{\"Name\": \"iperf\"}");
    let (code, message) = error_of(&h.call(Command::Get, &req).await);
    assert_eq!(code, 4);
    assert!(message.starts_with("dat is not valid base64"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_that_is_not_json_is_an_error_saying_so() {
    let h = Harness::start();
    let ret = ret_list();
    let (code, message) = error_of(
        &h.call(Command::Get, &request(&ret, "r", b"Name=iperf"))
            .await,
    );
    assert_eq!(code, 5);
    assert!(message.starts_with("payload is not JSON"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_of_the_wrong_shape_is_an_error_saying_so() {
    let h = Harness::start();
    let ret = ret_list();
    for (payload, why) in [
        (r#"["iperf"]"#, "not an object"),
        (r#"{"task": "iperf"}"#, "no \"Name\" key"),
        (r#"{"Name": 3}"#, "\"Name\" is not a string"),
    ] {
        let (code, message) = error_of(
            &h.call(Command::Get, &request(&ret, "r", payload.as_bytes()))
                .await,
        );
        assert_eq!(code, 5, "{payload}");
        assert_eq!(
            message,
            format!(r#"payload is not the expected JSON {{"Name": "<task name>"}}: {why}"#)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_version_is_an_error() {
    let h = Harness::start();
    h.set("perf.iperf", "[]").await;
    let ret = ret_list();
    let mut req = request(&ret, "r", &get_name("iperf"));
    req["ver"] = json!(2);
    let (code, message) = error_of(&h.call(Command::Get, &req).await);
    assert_eq!(code, 2);
    assert_eq!(
        message,
        "unsupported protocol version 2: this service speaks version 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_over_64_kib_is_refused_without_decoding_it() {
    let h = Harness::start();
    let ret = ret_list();
    let mut req = request(&ret, "r", b"");
    // Not base64 at all: decoding it would have answered code 4.
    req["dat"] = json!("!".repeat(90_000));
    let (code, message) = error_of(&h.call(Command::Get, &req).await);
    assert_eq!(code, 3);
    assert_eq!(
        message,
        "payload too large: 67500 bytes, the limit is 65536"
    );

    // 64 KiB itself passes the limit (and then fails as JSON).
    let at_limit = request(&ret, "r", &vec![b' '; 65536]);
    let (code, _) = error_of(&h.call(Command::Get, &at_limit).await);
    assert_eq!(code, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_envelope_field_is_an_error_that_names_it() {
    let h = Harness::start();
    let ret = ret_list();
    let mut req = request(&ret, "r", &get_name("iperf"));
    req["exp"] = json!("soon");
    let (code, message) = error_of(&h.call(Command::Get, &req).await);
    assert_eq!(code, 1);
    assert_eq!(
        message,
        "invalid request: field \"exp\" must be a non-negative integer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_request_is_dropped_without_work_and_counted() {
    let h = Harness::start();
    h.set("perf.iperf", "[]").await;
    let ret = ret_list();
    let mut expired = request(&ret, "expired", &get_name("iperf"));
    // Past its deadline by more than the tolerated clock skew (5 min).
    expired["now"] = json!(unix_now() - 1000);
    expired["exp"] = json!(30);
    h.push(Command::Get, &serde_json::to_vec(&expired).expect("encode"))
        .await;
    // Served oldest first: once this one is answered, the expired one has
    // been dealt with.
    let reply = h
        .call(Command::Get, &request(&ret, "fresh", &get_name("iperf")))
        .await;
    assert_eq!(reply["ref"], "fresh");
    h.quiesce().await;
    assert_eq!(h.llen(&ret).await, 0, "the expired request got a reply");
    let s = h.stats.snapshot();
    assert_eq!((s.expired, s.replied), (1, 1), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_that_is_not_json_is_dropped_and_the_handler_carries_on() {
    let h = Harness::start();
    h.set("perf.iperf", "[]").await;
    let ret = ret_list();
    h.push(Command::Get, b"{\"ret\": \"msgbus.test.broken\", ")
        .await;
    h.push(Command::Get, &[0xff, 0xfe, 0x00]).await;
    let reply = h
        .call(Command::Get, &request(&ret, "after", &get_name("iperf")))
        .await;
    assert_eq!(result_of(&reply), json!([]));
    h.quiesce().await;
    assert_eq!(h.llen("msgbus.test.broken").await, 0);
    assert_eq!(h.stats.snapshot().dropped, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_without_a_usable_ret_is_dropped() {
    let h = Harness::start();
    let ret = ret_list();
    let mut no_ret = request(&ret, "a", &get_name("iperf"));
    no_ret.as_object_mut().expect("object").remove("ret");
    let mut bad_ret = request(&ret, "b", &get_name("iperf"));
    bad_ret["ret"] = json!(["msgbus.test.x"]);
    for r in [&no_ret, &bad_ret] {
        h.push(Command::Get, &serde_json::to_vec(r).expect("encode"))
            .await;
    }
    let reply = h
        .call(Command::Get, &request(&ret, "c", &get_name("iperf")))
        .await;
    assert_eq!(reply["ref"], "c");
    h.quiesce().await;
    assert_eq!(h.llen(&ret).await, 0);
    assert_eq!(h.stats.snapshot().dropped, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_value_that_is_not_json_is_an_error_and_left_out_of_get_all() {
    let h = Harness::start();
    h.set("perf.iperf", "{truncated").await;
    h.set("perf.cpu-benchmark", CPU).await;
    let ret = ret_list();
    let reply = h
        .call(Command::Get, &request(&ret, "r", &get_name("iperf")))
        .await;
    let (code, message) = error_of(&reply);
    assert_eq!(code, 8, "{message}");
    assert!(
        message.starts_with("perf.iperf: stored value is not JSON"),
        "{message}"
    );
    let reply = h.call(Command::GetAll, &request(&ret, "a", b"")).await;
    assert_eq!(result_of(&reply), json!([parsed(CPU)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_extra_fields_are_tolerated() {
    let h = Harness::start();
    h.set("perf.cpu-benchmark", CPU).await;
    let ret = ret_list();
    let mut req = request(&ret, "r", &get_name("cpu-benchmark"));
    req["future"] = json!({"nested": [1, 2, 3]});
    req["tag"] = json!("opaque");
    req["shm"] = json!("application/json");
    let reply = h.call(Command::Get, &req).await;
    assert_eq!(result_of(&reply), parsed(CPU));
}

// ---- load and failure ----

/// What a request of the mixed load must get back.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Result,
    Error(u64),
    Nothing,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_requests_from_concurrent_clients_get_exactly_one_reply_each() {
    const CLIENTS: usize = 10;
    // A multiple of 8: each kind of request below comes equally often.
    const PER_CLIENT: usize = 1000;
    let h = Arc::new(Harness::start());
    h.set("perf.cpu-benchmark", CPU).await;
    h.set("perf.healthcheck", HEALTH).await;
    let started = Instant::now();

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let h = h.clone();
        clients.push(tokio::spawn(async move {
            let ret = ret_list();
            let mut expected: HashMap<String, Expect> = HashMap::new();
            let mut answered = 0usize;
            let mut conn = h.conn().await;
            for chunk in (0..PER_CLIENT).collect::<Vec<_>>().chunks(50) {
                let mut pipe = redis::pipe();
                for &i in chunk {
                    let reference = format!("c{c}-{i}");
                    let (cmd, message, expect) = match i % 8 {
                        0 | 1 => (
                            Command::Get,
                            request(&ret, &reference, &get_name("cpu-benchmark")),
                            Expect::Result,
                        ),
                        2 => (
                            Command::GetAll,
                            request(&ret, &reference, b""),
                            Expect::Result,
                        ),
                        3 => (
                            Command::Get,
                            request(&ret, &reference, &get_name("iperf")),
                            Expect::Error(7),
                        ),
                        4 => (
                            Command::Get,
                            request(&ret, &reference, &get_name("nope")),
                            Expect::Error(6),
                        ),
                        5 => {
                            let mut r = request(&ret, &reference, b"");
                            r["dat"] = json!("@@@");
                            (Command::Get, r, Expect::Error(4))
                        }
                        6 => {
                            let mut r = request(&ret, &reference, &get_name("iperf"));
                            r["now"] = json!(1);
                            (Command::Get, r, Expect::Nothing)
                        }
                        _ => {
                            let mut r = request(&ret, &reference, &get_name("iperf"));
                            r.as_object_mut().expect("object").remove("ret");
                            (Command::Get, r, Expect::Nothing)
                        }
                    };
                    if expect != Expect::Nothing {
                        answered += 1;
                    }
                    expected.insert(reference, expect);
                    pipe.cmd("LPUSH")
                        .arg(cmd.list())
                        .arg(serde_json::to_vec(&message).expect("encode"))
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn)
                    .await
                    .expect("pushing requests");
            }

            let mut waiter = h.conn().await;
            let mut seen: HashSet<String> = HashSet::new();
            while seen.len() < answered {
                let (_, raw): (String, Vec<u8>) = redis::cmd("BRPOP")
                    .arg(&ret)
                    .arg(30)
                    .query_async::<Option<(String, Vec<u8>)>>(&mut waiter)
                    .await
                    .expect("BRPOP")
                    .unwrap_or_else(|| {
                        panic!(
                            "client {c}: only {} of {answered} replies within 30 s",
                            seen.len()
                        )
                    });
                let reply: Value = serde_json::from_slice(&raw).expect("reply JSON");
                let reference = reply["ref"].as_str().expect("ref").to_string();
                let want = expected.get(&reference).copied();
                match want {
                    Some(Expect::Result) => {
                        result_of(&reply);
                    }
                    Some(Expect::Error(code)) => assert_eq!(error_of(&reply).0, code, "{reply}"),
                    _ => panic!("client {c}: reply to {reference}, which expects none: {reply}"),
                }
                assert!(
                    seen.insert(reference.clone()),
                    "client {c}: {reference} answered twice"
                );
            }
            ret
        }));
    }
    let mut rets = Vec::new();
    for client in clients {
        rets.push(client.await.expect("client task"));
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");

    h.quiesce().await;
    for ret in &rets {
        assert_eq!(h.llen(ret).await, 0, "an extra reply on {ret}");
    }
    let s = h.stats.snapshot();
    let total = (CLIENTS * PER_CLIENT) as u64;
    let per_kind = total / 8;
    assert_eq!(s.received, total, "{s:?}");
    assert_eq!(s.replied, per_kind * 6, "{s:?}");
    assert_eq!(s.errors, per_kind * 3, "{s:?}");
    assert_eq!(
        (s.expired, s.dropped, s.lost),
        (per_kind, per_kind, 0),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_while_requests_flow_handler_resumes_and_answers_none_twice() {
    let mut h = Harness::start();
    h.set("perf.iperf", "[]").await;
    let ret = ret_list();
    let reply = h
        .call(Command::Get, &request(&ret, "before", &get_name("iperf")))
        .await;
    assert_eq!(reply["ref"], "before");

    // A steady flow of requests, carried on across the restart.
    let flowing = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let pushed_refs = Arc::new(Mutex::new(Vec::new()));
    let sender = {
        let (client, flowing, sent, ret, pushed_refs) = (
            h.client.clone(),
            flowing.clone(),
            sent.clone(),
            ret.clone(),
            pushed_refs.clone(),
        );
        tokio::spawn(async move {
            let mut conn = None;
            let mut attempt = 0u64;
            while flowing.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = client.get_multiplexed_async_connection().await.ok();
                }
                if let Some(c) = conn.as_mut() {
                    attempt += 1;
                    let reference = format!("flow-{attempt}");
                    let req = request(&ret, &reference, &get_name("iperf"));
                    let pushed = redis::cmd("LPUSH")
                        .arg(Command::Get.list())
                        .arg(serde_json::to_vec(&req).expect("encode"))
                        .query_async::<()>(c)
                        .await;
                    match pushed {
                        Ok(()) => {
                            pushed_refs.lock().expect("lock").push(reference);
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => conn = None,
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let flowed = sent.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent.load(Ordering::Relaxed) < flowed + 50 {
        assert!(Instant::now() < deadline, "requests are not flowing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::task::block_in_place(|| h.server.restart_empty());
    let after_restart = sent.load(Ordering::Relaxed);
    let first_after = pushed_refs.lock().expect("lock").len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent.load(Ordering::Relaxed) < after_restart + 50 {
        assert!(
            Instant::now() < deadline,
            "requests do not flow after the restart"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    flowing.store(false, Ordering::Relaxed);
    sender.await.expect("sender");

    // Later requests are answered: the store is empty now, so they are
    // "result not found" until the result is back.
    let probe = ret_list();
    let reply = h
        .call(Command::Get, &request(&probe, "probe", &get_name("iperf")))
        .await;
    assert_eq!(error_of(&reply), (7, "result not found".to_string()));
    h.set("perf.iperf", "[]").await;
    let reply = h
        .call(
            Command::Get,
            &request(&probe, "probe-2", &get_name("iperf")),
        )
        .await;
    assert_eq!(result_of(&reply), json!([]));

    // None twice: every reply on `ret` in the new Redis is to a distinct request.
    h.quiesce().await;
    let mut c = h.conn().await;
    let replies: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg(&ret)
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .expect("LRANGE");
    let mut seen = HashSet::new();
    for raw in &replies {
        let reply: Value = serde_json::from_slice(raw).expect("reply JSON");
        let reference = reply["ref"].as_str().expect("ref").to_string();
        assert!(seen.insert(reference.clone()), "{reference} answered twice");
    }
    // And every request pushed after the restart got its reply.
    let later: Vec<String> = pushed_refs.lock().expect("lock")[first_after..].to_vec();
    assert!(later.len() >= 50);
    for reference in &later {
        assert!(
            seen.contains(reference),
            "{reference}, sent after the restart, got no reply"
        );
    }
    let s = h.stats.snapshot();
    eprintln!(
        "across the restart: {} replies on the new redis; {s:?}",
        replies.len()
    );
    assert!(s.replied + s.lost <= s.received, "{s:?}");
    h.shutdown.cancel();
    let handle = h.handle.take().expect("handle");
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("the handler stops on shutdown")
        .expect("handler task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_waits_for_redis_that_is_not_there_yet_and_stops_on_shutdown() {
    let mut server = RedisServer::start();
    server.kill();
    let client = redis::Client::open(server.url()).expect("client");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(bus::serve(
        client.clone(),
        BusConfig::default(),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::block_in_place(|| server.restart_empty());
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let ret = ret_list();
    redis::cmd("LPUSH")
        .arg(Command::GetAll.list())
        .arg(serde_json::to_vec(&request(&ret, "late", b"")).expect("encode"))
        .query_async::<()>(&mut conn)
        .await
        .expect("LPUSH");
    let mut waiter = waiting_conn(&client).await.expect("connect");
    let popped: Option<(String, Vec<u8>)> = redis::cmd("BRPOP")
        .arg(&ret)
        .arg(15)
        .query_async(&mut waiter)
        .await
        .expect("BRPOP");
    let (_, raw) = popped.expect("a reply once redis is there");
    let reply: Value = serde_json::from_slice(&raw).expect("JSON");
    assert_eq!(result_of(&reply), json!([]));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("the handler stops on shutdown")
        .expect("handler task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_request_after_a_quiet_redis_restart_is_answered() {
    let mut h = Harness::start();
    let ret = ret_list();
    let reply = h.call(Command::GetAll, &request(&ret, "before", b"")).await;
    assert_eq!(reply["ref"], "before");
    // The handler has seen its push confirmed before Redis goes.
    h.quiesce().await;
    tokio::task::block_in_place(|| h.server.restart_empty());
    let reply = h.call(Command::GetAll, &request(&ret, "after", b"")).await;
    assert_eq!(reply["ref"], "after");
    assert_eq!(result_of(&reply), json!([]));
    h.quiesce().await;
    assert_eq!(h.stats.snapshot().lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_list_of_the_wrong_type_is_survived() {
    let h = Harness::start();
    // Someone made the request list a string: every BRPOP is refused.
    h.set(Command::Get.list(), "oops").await;
    let ret = ret_list();
    let mut c = h.conn().await;
    // Redis counts the refusals (WRONGTYPE) it sent: wait for one. The
    // handler then leaves that list out for a while (serving the others)
    // and looks at it again later; free it meanwhile.
    let refused = |info: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("errorstat_WRONGTYPE:count="))
            .and_then(|n| n.trim().split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("errorstats")
            .query_async(&mut c)
            .await
            .expect("INFO");
        if refused(&info) >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handler's pops were never refused: {info}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis::cmd("DEL")
        .arg(Command::Get.list())
        .query_async::<()>(&mut c)
        .await
        .expect("DEL");
    let reply = h.call(Command::GetAll, &request(&ret, "after", b"")).await;
    assert_eq!(reply["ref"], "after");
}

// ---------------------------------------------------------------------------
// Faults of the store and the lists (issue 11: items 1, 3, 4, 5, 6)

impl Harness {
    async fn set_bytes(&self, key: &str, value: &[u8]) {
        let mut c = self.conn().await;
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut c)
            .await
            .expect("SET");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_value_that_is_not_utf8_is_error_8_for_that_task_only() {
    let h = Harness::start();
    h.set_bytes("perf.healthcheck", b"\xff\xfe{}").await;
    h.set("perf.cpu-benchmark", CPU).await;
    let ret = ret_list();
    for i in 0..50 {
        let reply = h
            .call(
                Command::Get,
                &request(&ret, &format!("c{i}"), &get_name("cpu-benchmark")),
            )
            .await;
        assert_eq!(result_of(&reply), parsed(CPU));
    }
    let reply = h
        .call(Command::Get, &request(&ret, "h", &get_name("healthcheck")))
        .await;
    let (code, message) = error_of(&reply);
    assert_eq!(code, 8, "{message}");
    assert!(message.contains("perf.healthcheck"), "{message}");
    let reply = h.call(Command::GetAll, &request(&ret, "a", b"")).await;
    assert_eq!(result_of(&reply), json!([parsed(CPU)]));
    h.quiesce().await;
    assert_eq!(h.stats.snapshot().lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_list_of_the_wrong_type_costs_the_other_command_nothing() {
    let h = Harness::start();
    h.set("perf.cpu-benchmark", CPU).await;
    h.set(Command::Get.list(), "not a list").await;
    let ret = ret_list();
    let n = 1000;
    let mut c = h.conn().await;
    let requests: Vec<Vec<u8>> = (0..n)
        .map(|i| serde_json::to_vec(&request(&ret, &format!("a{i}"), b"")).expect("encode"))
        .collect();
    redis::cmd("LPUSH")
        .arg(Command::GetAll.list())
        .arg(&requests)
        .query_async::<()>(&mut c)
        .await
        .expect("LPUSH");
    for _ in 0..n {
        let reply = h.reply(&ret).await;
        assert_eq!(result_of(&reply), json!([parsed(CPU)]));
    }
    // (`quiesce` cannot be used: it measures the broken list.)
    assert_eq!(h.llen(Command::GetAll.list()).await, 0);
    let s = h.stats.snapshot();
    assert_eq!((s.received, s.lost, s.dropped), (n, 0, 0), "{s:?}");
    // The broken list was left as it was: nothing popped from it.
    let kept: String = redis::cmd("GET")
        .arg(Command::Get.list())
        .query_async(&mut c)
        .await
        .expect("GET");
    assert_eq!(kept, "not a list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_stored_value_is_never_read_and_costs_other_requests_nothing() {
    let h = Harness::start();
    let huge = format!("[\"{}\"]", "x".repeat(zos_perf::store::MAX_STORED + 1));
    h.set("perf.iperf", &huge).await;
    h.set("perf.cpu-benchmark", CPU).await;
    let ret = ret_list();
    let reply = h
        .call(
            Command::Get,
            &request(&ret, "c", &get_name("cpu-benchmark")),
        )
        .await;
    assert_eq!(result_of(&reply), parsed(CPU));
    let reply = h
        .call(Command::Get, &request(&ret, "i", &get_name("iperf")))
        .await;
    let (code, message) = error_of(&reply);
    assert_eq!(code, 8, "{message}");
    assert!(message.contains("the limit is"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_dropped_unread_and_counted() {
    let h = Harness::start();
    h.set("perf.cpu-benchmark", CPU).await;
    let ret = ret_list();
    let mut big = request(&ret, "big", &get_name("cpu-benchmark"));
    big["tag"] = json!("t".repeat(200 * 1024));
    // Several, so that some are taken by the batch pop as well.
    for _ in 0..5 {
        h.push(Command::Get, &serde_json::to_vec(&big).expect("encode"))
            .await;
    }
    let reply = h
        .call(
            Command::Get,
            &request(&ret, "ok", &get_name("cpu-benchmark")),
        )
        .await;
    assert_eq!(reply["ref"], "ok");
    h.quiesce().await;
    let s = h.stats.snapshot();
    assert_eq!((s.dropped, s.replied), (5, 1), "{s:?}");
    assert_eq!(h.llen(&ret).await, 0, "an oversized message was answered");
}

/// A message over 128 KiB whose envelope (all but `dat`) is short, in the
/// peer's field order (`ret` after `dat`): its sender is told, error 3, by
/// the blocking pop and by the batch pop alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_with_a_readable_envelope_gets_error_3() {
    let h = Harness::start();
    h.set("perf.cpu-benchmark", CPU).await;
    let ret = ret_list();
    let dat = B64.encode(vec![b'x'; 200 * 1024]);
    for i in 0..5 {
        let big = format!(
            r#"{{"ver":1,"ref":"big{i}","src":"42:abc","cmd":"zos.perf.get","exp":60,"dat":"{dat}","tag":null,"ret":"{ret}","shm":null,"now":{}}}"#,
            unix_now()
        );
        h.push(Command::Get, big.as_bytes()).await;
    }
    let mut refs = Vec::new();
    for _ in 0..5 {
        let reply = h.reply(&ret).await;
        let (code, message) = error_of(&reply);
        assert_eq!(code, 3, "{message}");
        assert!(message.contains("request message is"), "{message}");
        assert_eq!(reply["dst"], "42:abc");
        refs.push(reply["ref"].as_str().expect("ref").to_string());
    }
    refs.sort();
    assert_eq!(refs, ["big0", "big1", "big2", "big3", "big4"]);
    h.quiesce().await;
    let s = h.stats.snapshot();
    assert_eq!((s.replied, s.errors, s.dropped), (5, 5, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reply_list_of_the_wrong_type_costs_only_its_own_reply() {
    let h = Harness::start();
    h.set("perf.cpu-benchmark", CPU).await;
    let bad = format!("msgbus.test.bad{:016x}", rand::random::<u64>());
    h.set(&bad, "a string").await;
    let good = ret_list();
    let mut batch: Vec<Vec<u8>> = (0..10)
        .map(|i| {
            serde_json::to_vec(&request(
                &good,
                &format!("g{i}"),
                &get_name("cpu-benchmark"),
            ))
            .expect("encode")
        })
        .collect();
    batch.insert(
        5,
        serde_json::to_vec(&request(&bad, "b", &get_name("cpu-benchmark"))).expect("encode"),
    );
    let mut c = h.conn().await;
    redis::cmd("LPUSH")
        .arg(Command::Get.list())
        .arg(&batch)
        .query_async::<()>(&mut c)
        .await
        .expect("LPUSH");
    for _ in 0..10 {
        h.reply(&good).await;
    }
    h.quiesce().await;
    let s = h.stats.snapshot();
    assert_eq!((s.replied, s.lost), (10, 1), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_far_above_max_in_flight_never_has_more_in_flight() {
    const MAX: usize = 8;
    const BURST: usize = 4000;
    let h = Harness::start_with(BusConfig {
        max_in_flight: MAX,
        ..BusConfig::default()
    });
    h.set("perf.cpu-benchmark", CPU).await;
    let ret = ret_list();
    // The whole burst is in Redis before the handler has answered much of
    // it: both lists, pushed in one pipeline.
    let (mut gets, mut alls) = (redis::cmd("LPUSH"), redis::cmd("LPUSH"));
    gets.arg(Command::Get.list());
    alls.arg(Command::GetAll.list());
    for i in 0..BURST {
        let (cmd, payload) = match i % 2 {
            0 => (&mut gets, get_name("cpu-benchmark")),
            _ => (&mut alls, Vec::new()),
        };
        cmd.arg(serde_json::to_vec(&request(&ret, &format!("b{i}"), &payload)).expect("encode"));
    }
    let mut conn = h.conn().await;
    redis::pipe()
        .add_command(gets)
        .ignore()
        .add_command(alls)
        .ignore()
        .query_async::<()>(&mut conn)
        .await
        .expect("pushing the burst");

    let mut seen = HashSet::new();
    while seen.len() < BURST {
        let reply = h.reply(&ret).await;
        result_of(&reply);
        let reference = reply["ref"].as_str().expect("ref").to_string();
        assert!(seen.insert(reference.clone()), "{reference} answered twice");
    }
    h.quiesce().await;
    assert_eq!(h.stats.snapshot().received, BURST as u64);
    assert_eq!(h.stats.in_flight(), 0);
    // Never above the bound, and the burst did press against it: more than
    // half the permits in flight at once means two batches overlapped, so
    // a bound not kept would have shown. (Exactly MAX is usual, but on a
    // loaded machine the first batch may finish one request before the
    // second batch's last one starts.)
    let peak = h.stats.peak_in_flight();
    assert!(peak <= MAX as u64, "peak {peak} above the bound {MAX}");
    assert!(
        peak > (MAX / 2) as u64,
        "peak {peak}: the burst never pressed the bound"
    );
}
