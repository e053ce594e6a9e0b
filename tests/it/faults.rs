//! The daemon as shipped (the `zos-perf` binary, `zos-perf run` with a
//! config file) under faults: Redis killed and restarted empty under load,
//! SIGTERM while Redis is down, Redis missing at start, SIGTERM in the
//! middle of an iperf3 run and of a public-ip-validation run (during the
//! election ping and with a farm IP on the macvlan), a task that hangs past
//! its timeout beside one that fails; and, at the library level, a task that
//! panics beside the real healthcheck (no task of the shipped binary can be
//! made to panic).
//!
//! Each test has its own redis-server, temporary directory and namespaces;
//! the daemon is killed if a test fails half-way.

use crate::common;
use crate::pubnet;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use common::daemon::Daemon;
use common::graphql::{closed_url, node as gql_node, public_ip as gql_ip, GraphQlServer, Grid};
use common::observe::{get, sample};
use common::{only_task, unique_name, wait_for, IperfPair, RedisServer};
use zos_perf::node_redis::keys::STATUS as STATUS_KEY;
use zos_perf::store::{Outcome, State, TaskStatus};

const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A cron that fires once a year: the task runs only if it has no result.
const YEARLY: &str = "0 0 0 1 1 *";

// ---------------------------------------------------------------------------
// The daemon process

/// Starts the daemon with `config` against `redis`, in network namespace
/// `netns` if given (through `ip netns exec`, which execs: the process
/// started is the daemon itself).
fn start_daemon(dir: &Path, config: &str, redis: &str, netns: Option<&str>) -> Daemon {
    let cfg = common::daemon::write_config(dir, config);
    let cmdline = dir.join("cmdline");
    std::fs::write(&cmdline, "").expect("write empty kernel command line");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--kernel-cmdline")
        .arg(&cmdline)
        .args(["--redis", redis, "--log", "info", "run"])
        .env_remove("ZOS_PERF_REDIS")
        .env_remove("ZOS_PERF_CONFIG")
        .env_remove("ZOS_PERF_NETWORK")
        .env_remove("ZOS_PERF_FARM_ID")
        .env_remove("ZOS_PERF_NODE_ID")
        .env_remove("ZOS_PERF_LOG")
        .env("NO_COLOR", "1");
    let daemon = Daemon::spawn(&mut cmd);
    let pid = daemon.child.id();
    // `ip netns exec` has become the daemon once the program is ours.
    wait_for(Duration::from_secs(10), "the daemon process", || {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        exe.to_string_lossy().contains("zos-perf").then_some(())
    });
    daemon
}

/// The first log line of `daemon` containing every one of `needles`.
fn wait_line(daemon: &Daemon, timeout: Duration, needles: &[&str]) -> String {
    let what = format!("a log line with {needles:?}");
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(timeout, &what, || {
            daemon
                .log()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .map(str::to_string)
        })
    }));
    found.unwrap_or_else(|_| panic!("no log line with {needles:?}; log:\n{}", daemon.log()))
}

/// SIGTERM and the checks every shutdown must pass: exit 0 within 5 s,
/// having said so.
fn stop_cleanly(daemon: &mut Daemon) {
    daemon.stop_cleanly();
    assert!(daemon.log().contains("stopped"), "log:\n{}", daemon.log());
}

// ---------------------------------------------------------------------------
// Processes, as /proc shows them

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, PartialEq)]
struct Proc {
    pid: u32,
    comm: String,
    state: char,
    ppid: u32,
    /// Clock ticks after boot: tells a process from a later one with its pid.
    start: u64,
}

fn proc_stat(pid: u32) -> Option<Proc> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 2..].split_whitespace().collect();
    Some(Proc {
        pid,
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        start: rest.get(19)?.parse().ok()?,
    })
}

/// Every process whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .filter(|p| p.ppid == ppid)
        .collect()
}

/// Whether `p` still runs: the same process (same start time) and not a
/// zombie. (A zombie has exited; reaping it falls to whoever inherited it.)
fn still_running(p: &Proc) -> bool {
    proc_stat(p.pid).is_some_and(|now| now.start == p.start && !matches!(now.state, 'Z' | 'X'))
}

/// Waits for a running child of the daemon named `comm`.
fn wait_child(daemon: &Daemon, comm: &str) -> Proc {
    wait_for(Duration::from_secs(20), &format!("a {comm} child"), || {
        children_of(daemon.child.id())
            .into_iter()
            .find(|p| p.comm == comm && p.state != 'Z')
    })
}

// ---------------------------------------------------------------------------
// Redis, as a reader sees it

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A blocking connection that gives up quickly (Redis may be down).
fn try_conn(redis: &RedisServer) -> Option<redis::Connection> {
    let client = redis::Client::open(redis.url()).ok()?;
    let conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    conn.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
    Some(conn)
}

fn stored(redis: &RedisServer, name: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(format!("perf.{name}"))
        .query(&mut try_conn(redis)?)
        .ok()?
}

fn status(redis: &RedisServer, name: &str) -> Option<TaskStatus> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(STATUS_KEY)
        .arg(name)
        .query(&mut try_conn(redis)?)
        .ok()?;
    raw.map(|s| serde_json::from_str(&s).expect("status JSON"))
}

fn wait_status(
    redis: &RedisServer,
    name: &str,
    what: &str,
    ok: impl Fn(&TaskStatus) -> bool,
) -> TaskStatus {
    wait_for(Duration::from_secs(20), what, || {
        status(redis, name).filter(|s| ok(s))
    })
}

/// A stored result for `name`, stamped now, as a previous run left it.
fn put_result(redis: &RedisServer, name: &str, result: Value) -> String {
    let value = json!({"name": name, "description": "stored before the test",
        "timestamp": unix_now(), "result": result})
    .to_string();
    redis::cmd("SET")
        .arg(format!("perf.{name}"))
        .arg(&value)
        .query::<()>(&mut redis.conn())
        .expect("SET");
    value
}

/// `zos-perf call <cmd> <payload>` through the binary, as an operator would.
fn call(redis: &RedisServer, cmd: &str, payload: &str) -> Result<Value, String> {
    let out = Command::new(BIN)
        .args([
            "--redis",
            &redis.url(),
            "--log",
            "warn",
            "call",
            cmd,
            payload,
        ])
        .args(["--timeout", "10s"])
        .env_remove("ZOS_PERF_CONFIG")
        .output()
        .expect("run zos-perf call");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("call prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

// ---------------------------------------------------------------------------
// Configuration

/// The `[healthcheck]` section: its directories in `dir`, one probe of
/// `service`, and no retries within a test's time.
fn healthcheck_section(dir: &Path, service: &str, retry: bool) -> String {
    format!(
        "[healthcheck]\ncache_dir = {:?}\nflags_dir = {:?}\nconnect_timeout = \"1s\"\n\
         backoff_initial = \"1h\"\nbackoff_total = \"{}\"\nservices = [{service:?}]\n",
        dir.display().to_string(),
        dir.join("flags").display().to_string(),
        if retry { "2h" } else { "0s" },
    )
}

/// A TCP listener on loopback that the healthcheck can reach.
fn loopback_service() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    (listener, url)
}

// ---------------------------------------------------------------------------
// The bus, spoken to as the RMB peer speaks to it

/// One client pushing requests continuously (each with a ref of its own)
/// and one collecting the replies, both reconnecting when Redis goes away.
struct BusLoad {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<(String, Instant)>>>,
    replies: Arc<Mutex<Vec<(String, Value, Instant)>>>,
    sender: Option<JoinHandle<()>>,
    receiver: Option<JoinHandle<()>>,
    receiver_stop: Arc<AtomicBool>,
    /// The reply list.
    ret: String,
}

/// What request `seq` asks: valid and invalid ones mixed.
fn request_kind(seq: u64) -> (&'static str, Value) {
    match seq % 4 {
        0 => ("zos.perf.get", json!({"Name": "healthcheck"})),
        1 => ("zos.perf.get", json!({"name": "iperf"})),
        2 => ("zos.perf.get_all", json!({})),
        _ => ("zos.perf.get", json!({"Name": "no-such-task"})),
    }
}

impl BusLoad {
    fn start(redis: &RedisServer) -> BusLoad {
        let url = redis.url();
        let ret = format!("msgbus.faults.{:016x}", rand::random::<u64>());
        let stop = Arc::new(AtomicBool::new(false));
        let receiver_stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(Vec::new()));

        let connect = |url: &str| -> Option<redis::Connection> {
            let conn = redis::Client::open(url)
                .ok()?
                .get_connection_with_timeout(Duration::from_millis(300))
                .ok()?;
            conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            Some(conn)
        };

        let sender = {
            let (url, ret, stop, sent) = (url.clone(), ret.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut conn = None;
                let mut seq = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(2));
                    let Some(c) = conn.as_mut() else {
                        conn = connect(&url);
                        if conn.is_none() {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        continue;
                    };
                    seq += 1;
                    let reference = format!("f{seq}");
                    let (cmd, payload) = request_kind(seq);
                    let request = json!({"ver": 1, "ref": reference, "src": "42:faults",
                        "cmd": cmd, "exp": 60, "dat": B64.encode(payload.to_string()),
                        "tag": null, "ret": ret, "shm": null, "now": unix_now()});
                    let pushed = redis::cmd("LPUSH")
                        .arg(format!("msgbus.{cmd}"))
                        .arg(request.to_string())
                        .query::<()>(c);
                    match pushed {
                        Ok(()) => sent.lock().expect("sent").push((reference, Instant::now())),
                        Err(_) => conn = None,
                    }
                }
            })
        };
        let receiver = {
            let (ret, stop, replies) = (ret.clone(), receiver_stop.clone(), replies.clone());
            std::thread::spawn(move || {
                let mut conn = None;
                while !stop.load(Ordering::SeqCst) {
                    let Some(c) = conn.as_mut() else {
                        conn = connect(&url);
                        if conn.is_none() {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        continue;
                    };
                    let popped: redis::RedisResult<Option<(String, Vec<u8>)>> =
                        redis::cmd("BRPOP").arg(&ret).arg(0.2).query(c);
                    match popped {
                        Ok(Some((_, raw))) => {
                            let reply: Value = serde_json::from_slice(&raw).expect("reply JSON");
                            let reference = reply["ref"].as_str().expect("ref").to_string();
                            replies.lock().expect("replies").push((
                                reference,
                                reply,
                                Instant::now(),
                            ));
                        }
                        Ok(None) => {}
                        Err(_) => conn = None,
                    }
                }
            })
        };
        BusLoad {
            stop,
            sent,
            replies,
            sender: Some(sender),
            receiver: Some(receiver),
            receiver_stop,
            ret,
        }
    }

    fn sent_count(&self) -> usize {
        self.sent.lock().expect("sent").len()
    }

    /// Stops sending, waits until every ref in `must` has a reply (at most
    /// `wait`), then until the daemon is done with every request: a
    /// sentinel pushed last onto each request list is answered (so all
    /// before it were taken) and the in-flight gauge of the daemon's
    /// `metrics` reads 0 (so every reply, retried ones too, was pushed or
    /// given up). Only then does it stop receiving, and it takes what is
    /// left on the reply list: a duplicate, however late, is among the
    /// replies returned. Returns what was sent and received (sentinels left
    /// out).
    #[allow(clippy::type_complexity)]
    fn finish(
        mut self,
        redis: &RedisServer,
        metrics: SocketAddr,
        must: impl Fn(&str, Instant) -> bool,
        wait: Duration,
    ) -> (Vec<(String, Instant)>, Vec<(String, Value, Instant)>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.sender.take() {
            s.join().expect("sender");
        }
        let sent = self.sent.lock().expect("sent").clone();
        let answered = |mut refs: &mut dyn Iterator<Item = &str>| {
            let got: HashSet<String> = self
                .replies
                .lock()
                .expect("replies")
                .iter()
                .map(|(r, _, _)| r.clone())
                .collect();
            Iterator::all(&mut refs, |r| got.contains(r))
        };
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let mut refs = sent
                .iter()
                .filter(|(r, t)| must(r, *t))
                .map(|(r, _)| r.as_str());
            if answered(&mut refs) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }

        let mut conn = redis.conn();
        let sentinels = ["sentinel-get", "sentinel-get_all"];
        for (reference, cmd) in sentinels.iter().zip(["zos.perf.get", "zos.perf.get_all"]) {
            let request = json!({"ver": 1, "ref": reference, "src": "42:faults",
                "cmd": cmd, "exp": 60, "dat": B64.encode(r#"{"Name": "healthcheck"}"#),
                "tag": null, "ret": self.ret, "shm": null, "now": unix_now()});
            redis::cmd("LPUSH")
                .arg(format!("msgbus.{cmd}"))
                .arg(request.to_string())
                .query::<()>(&mut conn)
                .expect("LPUSH sentinel");
        }
        wait_for(Duration::from_secs(30), "the sentinels' replies", || {
            answered(&mut sentinels.iter().copied()).then_some(())
        });
        wait_for(Duration::from_secs(30), "no request in flight", || {
            let scrape = get(metrics, "/metrics", "").body;
            (sample(&scrape, "zos_perf_bus_requests_in_flight") == Some(0.0)).then_some(())
        });

        self.receiver_stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.receiver.take() {
            r.join().expect("receiver");
        }
        let mut replies = self.replies.lock().expect("replies").clone();
        while let Some(raw) = redis::cmd("RPOP")
            .arg(&self.ret)
            .query::<Option<Vec<u8>>>(&mut conn)
            .expect("RPOP")
        {
            let reply: Value = serde_json::from_slice(&raw).expect("reply JSON");
            let reference = reply["ref"].as_str().expect("ref").to_string();
            replies.push((reference, reply, Instant::now()));
        }
        replies.retain(|(r, _, _)| !sentinels.contains(&r.as_str()));
        (sent, replies)
    }
}

impl Drop for BusLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.receiver_stop.store(true, Ordering::SeqCst);
    }
}

/// Where the daemon's metrics listener answers, from its log.
fn metrics_addr(daemon: &Daemon) -> SocketAddr {
    let line = wait_line(
        daemon,
        Duration::from_secs(20),
        &["metrics and dashboard listening"],
    );
    common::observe::listen_addr(&line)
        .flatten()
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

fn reply_result(reply: &Value) -> Result<Value, String> {
    if !reply["err"].is_null() {
        return Err(reply["err"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string());
    }
    let bytes = B64
        .decode(reply["dat"].as_str().expect("dat"))
        .expect("dat is base64");
    Ok(serde_json::from_slice(&bytes).expect("dat is JSON"))
}

// ---------------------------------------------------------------------------
// 1. Redis killed and restarted empty while tasks run and the bus is busy

#[test]
fn redis_restarted_empty_under_load_gets_every_result_back_and_the_bus_answers_each_request_once() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_listener, service) = loopback_service();
    // Results the daemon holds but does not produce during the test: they
    // can only come back from its memory.
    let iperf = put_result(&redis, "iperf", json!([]));
    let pubip = put_result(&redis, "public-ip-validation", json!({}));
    let config = format!(
        "node_id = 1\nfarm_id = 7\n[grid]\ngraphql_urls = [{:?}]\n\
         [tasks.cpu-benchmark]\nenabled = false\n\
         [tasks.healthcheck]\ncron = \"* * * * * *\"\n\
         [tasks.iperf]\ncron = \"{YEARLY}\"\n\
         [tasks.public-ip-validation]\ncron = \"{YEARLY}\"\n\
         [public_ip]\nnamespace = {:?}\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n{}",
        closed_url(),
        unique_name("fnone"),
        healthcheck_section(dir.path(), &service, true)
    );
    let mut daemon = start_daemon(dir.path(), &config, &redis.url(), None);
    let metrics = metrics_addr(&daemon);
    wait_status(&redis, "healthcheck", "two healthcheck runs", |s| {
        s.runs >= 2
    });
    let load = BusLoad::start(&redis);
    wait_for(Duration::from_secs(10), "requests flowing", || {
        (load.sent_count() > 200).then_some(())
    });

    redis.kill();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        daemon.running(),
        "the daemon died with redis; log:\n{}",
        daemon.log()
    );
    redis.restart_empty();
    let restarted = Instant::now();

    // Every result held is written back: the ones adopted at start, the
    // healthcheck's, and the status of each task.
    let names = ["healthcheck", "iperf", "public-ip-validation"];
    wait_for(
        Duration::from_secs(10),
        "every result back in redis",
        || {
            let mut c = try_conn(&redis)?;
            let keys: Vec<String> = names.iter().map(|n| format!("perf.{n}")).collect();
            let found: u32 = redis::cmd("EXISTS").arg(&keys).query(&mut c).ok()?;
            let statuses: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(STATUS_KEY)
                .arg(&names)
                .query(&mut c)
                .ok()?;
            (found == 3 && statuses.iter().all(Option::is_some)).then_some(())
        },
    );
    let restored = Instant::now();
    let took = restored - restarted;
    // docs/daemon.md promises 6 s: at most 5 s of reconnect backoff, then a pass.
    assert!(
        took < Duration::from_secs(6),
        "results back {took:?} after the restart"
    );
    for (name, before) in [("iperf", &iperf), ("public-ip-validation", &pubip)] {
        let now: Value =
            serde_json::from_str(&stored(&redis, name).expect("stored")).expect("JSON");
        assert_eq!(
            now,
            serde_json::from_str::<Value>(before).expect("JSON"),
            "{name}"
        );
    }

    // Keep the bus busy a while after the restart.
    let count = load.sent_count();
    wait_for(
        Duration::from_secs(10),
        "requests after the restart",
        || (load.sent_count() > count + 300).then_some(()),
    );
    let (sent, replies) = load.finish(
        &redis,
        metrics,
        |_, t| t > restarted,
        Duration::from_secs(15),
    );

    let sent_at: HashMap<&str, Instant> = sent.iter().map(|(r, t)| (r.as_str(), *t)).collect();
    let mut answered: HashMap<&str, usize> = HashMap::new();
    for (reference, reply, _) in &replies {
        assert!(
            sent_at.contains_key(reference.as_str()),
            "a reply to a ref never sent: {reply}"
        );
        *answered.entry(reference.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = answered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
    let after: Vec<&(String, Instant)> = sent.iter().filter(|(_, t)| *t > restarted).collect();
    let missing: Vec<&str> = after
        .iter()
        .filter(|(r, _)| !answered.contains_key(r.as_str()))
        .map(|(r, _)| r.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} requests sent after the restart got no reply: {:?}...",
        missing.len(),
        after.len(),
        &missing[..missing.len().min(10)]
    );
    // Requests sent once the results were back are answered from them.
    let expected_iperf: Value = serde_json::from_str(&iperf).expect("JSON");
    let mut checked = 0;
    for (reference, reply, _) in &replies {
        if sent_at[reference.as_str()] <= restored {
            continue;
        }
        let seq: u64 = reference[1..].parse().expect("ref");
        let result = reply_result(reply);
        match seq % 4 {
            0 => assert_eq!(result.expect("healthcheck")["name"], "healthcheck"),
            1 => assert_eq!(result.expect("iperf"), expected_iperf),
            2 => assert_eq!(result.expect("get_all").as_array().map(Vec::len), Some(3)),
            _ => assert!(result.expect_err("unknown task").contains("no-such-task")),
        }
        checked += 1;
    }
    assert!(
        checked > 100,
        "only {checked} replies after the results were back"
    );
    eprintln!(
        "redis restart: results back after {took:?}; {} requests sent, {} answered, \
         {} sent after the restart (all answered), none twice",
        sent.len(),
        answered.len(),
        after.len()
    );

    assert!(daemon.running(), "log:\n{}", daemon.log());
    let log = daemon.log();
    assert!(
        log.contains("wrote them back"),
        "no restore in the log:\n{log}"
    );
    stop_cleanly(&mut daemon);
}

#[test]
fn sigterm_while_redis_is_down_exits_0_without_waiting_for_it() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_listener, service) = loopback_service();
    let config = format!(
        "{}cron = \"* * * * * *\"\n{}",
        only_task("healthcheck"),
        healthcheck_section(dir.path(), &service, true)
    );
    let mut daemon = start_daemon(dir.path(), &config, &redis.url(), None);
    wait_status(&redis, "healthcheck", "two healthcheck runs", |s| {
        s.runs >= 2
    });
    redis.kill();
    // The store's sync loop is now retrying against a Redis that is gone.
    wait_line(
        &daemon,
        Duration::from_secs(10),
        &["cannot sync results to redis"],
    );
    let (status, took) = daemon.signal(Signal::SIGTERM, Duration::from_secs(10));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        daemon.log()
    );
    // Not rescued by the grace time: nothing waited for Redis.
    assert!(
        took < Duration::from_secs(3) && !daemon.log().contains("within the grace time"),
        "stopped in {took:?}; log:\n{}",
        daemon.log()
    );
}

// ---------------------------------------------------------------------------
// 2. Redis unreachable when the daemon starts

#[test]
fn redis_missing_at_start_the_daemon_retries_runs_its_tasks_and_publishes_once_redis_appears() {
    let mut redis = RedisServer::not_started();
    let dir = tempfile::tempdir().expect("tempdir");
    // Refused (a port held by a socket that never listens): the check
    // fails at once and sets its flag.
    let refused = &format!("http://127.0.0.1:{}", common::closed_port());
    let config = format!(
        "[tasks.cpu-benchmark]\nenabled = false\n[tasks.iperf]\nenabled = false\n\
         [tasks.public-ip-validation]\nenabled = false\n{}",
        healthcheck_section(dir.path(), refused, false)
    );
    let url = redis.url();
    let mut daemon = start_daemon(dir.path(), &config, &url, None);
    let line = wait_line(
        &daemon,
        Duration::from_secs(10),
        &["redis unreachable", &url],
    );
    assert!(
        line.contains("retry_in") && line.contains("results are published once it answers"),
        "{line}"
    );
    wait_line(
        &daemon,
        Duration::from_secs(10),
        &["bus handler cannot reach redis", "requests wait in redis"],
    );

    // The healthcheck runs without Redis: its flag shows it.
    let flag = dir.path().join("flags/not-reachable");
    wait_for(Duration::from_secs(20), "the not-reachable flag", || {
        flag.exists().then_some(())
    });
    wait_line(
        &daemon,
        Duration::from_secs(10),
        &["task=\"healthcheck\"", "run finished", "outcome=\"ok\""],
    );
    assert!(daemon.running());

    redis.restart_empty();
    let stored = wait_for(
        Duration::from_secs(15),
        "the healthcheck result published",
        || stored(&redis, "healthcheck"),
    );
    let stored: Value = serde_json::from_str(&stored).expect("JSON");
    assert_eq!(stored["name"], "healthcheck");
    let errors = stored["result"]["network"].as_array().expect("network");
    assert_eq!(errors.len(), 1, "{stored}");
    assert!(
        errors[0]
            .as_str()
            .is_some_and(|e| e.starts_with(&format!("{refused} is not reachable"))),
        "{stored}"
    );
    let line = wait_line(
        &daemon,
        Duration::from_secs(5),
        &["connected to redis", "attempts="],
    );
    let attempts: u32 = line
        .split("attempts=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("attempts count");
    // Logged only after failed attempts: it kept trying until Redis came.
    assert!(attempts >= 1, "{line}");
    let s = wait_status(&redis, "healthcheck", "the status published", |s| {
        s.runs >= 1
    });
    assert_eq!(s.last_outcome, Some(Outcome::Ok));

    // The bus serves the published result.
    let got = wait_for(Duration::from_secs(15), "the bus answering", || {
        call(&redis, "zos.perf.get", r#"{"Name": "healthcheck"}"#).ok()
    });
    assert_eq!(got, stored);
    stop_cleanly(&mut daemon);
}

// ---------------------------------------------------------------------------
// 3. SIGTERM in the middle of runs that hold the network

/// A GraphQL stand-in listening on loopback inside namespace `ns`, served
/// (and stopped) by a thread living there.
struct NsGraphQl {
    url: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl NsGraphQl {
    fn start(ns: &str, grid: Grid) -> NsGraphQl {
        let path = PathBuf::from("/var/run/netns").join(ns);
        let (url_tx, url_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let file = File::open(&path).expect("open the namespace");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let server = GraphQlServer::grid(grid);
            url_tx.send(server.url()).expect("send url");
            let _ = stop_rx.recv();
            drop(server);
        });
        let url = url_rx.recv().expect("stand-in started");
        NsGraphQl {
            url,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for NsGraphQl {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// SIGTERM while `child` runs; the daemon exits 0 within 5 s and neither
/// `child` nor any other child of the daemon is left running.
fn sigterm_leaves_no_child(daemon: &mut Daemon, redis: &RedisServer, task: &str) {
    let children = children_of(daemon.child.id());
    stop_cleanly(daemon);
    for child in &children {
        wait_for(
            Duration::from_secs(2),
            &format!("{child:?} gone after the daemon's exit"),
            || (!still_running(child)).then_some(()),
        );
    }
    let s = status(redis, task).expect("status");
    assert_ne!(s.state, State::Running, "{s:?}");
    assert_eq!(s.last_outcome, Some(Outcome::Cancelled), "{s:?}");
    assert_eq!(stored(redis, task), None, "a cancelled run stores nothing");
}

#[test]
fn sigterm_during_an_iperf3_run_exits_0_within_5_s_and_leaves_no_iperf3() {
    // The daemon's namespace and a target's, joined by a veth pair.
    let pair = IperfPair::start("fic", "fis");
    let (client, server) = (&pair.client, &pair.server);
    let mut grid = Grid::default();
    grid.nodes.push(gql_node(
        10,
        1,
        Some("198.51.100.2/30"),
        Some("2001:db8:1::2/64"),
        "",
    ));
    let gql = NsGraphQl::start(&client.name, grid);

    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "node_id = 1\n[grid]\ngraphql_urls = [{:?}]\n[iperf]\nmode = \"grid-nodes\"\nduration = \"30s\"\n\
         run_timeout = \"60s\"\n{}",
        gql.url,
        only_task("iperf")
    );
    let mut daemon = start_daemon(dir.path(), &config, &redis.url(), Some(&client.name));
    wait_status(&redis, "iperf", "iperf running", |s| {
        s.state == State::Running
    });
    let iperf3 = wait_child(&daemon, "iperf3");
    // Measuring, not just starting: the server has the test's connection.
    wait_for(Duration::from_secs(10), "the iperf3 test under way", || {
        let out = server.exec(&["ss", "-Htn", "state", "established", "( sport = :300 )"]);
        (!out.trim().is_empty()).then_some(())
    });
    assert!(still_running(&iperf3));
    sigterm_leaves_no_child(&mut daemon, &redis, "iperf");
    assert!(!still_running(&iperf3), "{iperf3:?} left behind");
}

/// A farm of one IP on the `pubnet` network, with `nodes` up, and the
/// daemon validating it from the node namespace with a lookup at `path`.
fn start_pubip(
    net: &pubnet::Net,
    dir: &Path,
    redis: &RedisServer,
    nodes: Vec<Value>,
    path: &str,
    ping_count: u32,
) -> (Daemon, NsGraphQl) {
    let grid = Grid {
        nodes,
        public_ips: [(
            pubnet::FARM,
            vec![gql_ip("203.0.113.10/24", pubnet::GATEWAY, 0)],
        )]
        .into(),
    };
    let gql = NsGraphQl::start(&net.node.name, grid);
    let config = net
        .config_text(path)
        .replace("lookup_timeout = \"10s\"", "lookup_timeout = \"60s\"")
        .replace("ping_count = 3", &format!("ping_count = {ping_count}"));
    let config = format!(
        "{config}[grid]\ngraphql_urls = [{:?}]\n{}",
        gql.url,
        only_task("public-ip-validation")
    );
    let daemon = start_daemon(dir, &config, &redis.url(), Some(&net.node.name));
    wait_status(redis, "public-ip-validation", "the run started", |s| {
        s.state == State::Running
    });
    (daemon, gql)
}

#[test]
fn sigterm_while_a_farm_ip_is_on_the_macvlan_exits_0_within_5_s_and_leaves_the_link_clean() {
    let net = pubnet::Net::new();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let me = gql_node(pubnet::ME, pubnet::FARM, None, None, "192.0.2.1");
    // The lookup service never answers: the run waits with the IP on the link.
    let (mut daemon, _gql) = start_pubip(&net, dir.path(), &redis, vec![me], "/hang", 3);
    wait_for(Duration::from_secs(20), "the farm IP on the link", || {
        let (addrs, _, up) = net.link_state();
        (up && addrs.iter().any(|a| a.contains("203.0.113.10"))).then_some(())
    });
    sigterm_leaves_no_child(&mut daemon, &redis, "public-ip-validation");
    net.assert_link_clean();
}

#[test]
fn sigterm_during_the_election_ping_exits_0_within_5_s_and_leaves_no_ping() {
    let net = pubnet::Net::new();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // A lower node that never answers, pinged 30 times (about 30 s).
    let nodes = vec![
        gql_node(3, pubnet::FARM, None, None, pubnet::ELDER_SILENT),
        gql_node(pubnet::ME, pubnet::FARM, None, None, "192.0.2.1"),
    ];
    let (mut daemon, _gql) = start_pubip(&net, dir.path(), &redis, nodes, "/", 30);
    let ping = wait_child(&daemon, "ping");
    sigterm_leaves_no_child(&mut daemon, &redis, "public-ip-validation");
    assert!(!still_running(&ping), "{ping:?} left behind");
    net.assert_link_clean();
}

// ---------------------------------------------------------------------------
// 4. A task that hangs past its timeout and one that fails, beside a healthy one

#[test]
fn a_hung_task_times_out_and_a_failing_one_fails_while_the_healthcheck_and_the_bus_go_on() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_listener, service) = loopback_service();
    // An "iperf3" that hangs; it logs its pid first.
    let script = dir.path().join("iperf3");
    let pids = dir.path().join("iperf3.pids");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ >> '{}'\nexec sleep 30\n",
            pids.display()
        ),
    )
    .expect("write script");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut grid = Grid::default();
    grid.nodes.push(gql_node(
        9,
        1,
        Some("203.0.113.9/24"),
        Some("2001:db8:ffff::9/64"),
        "",
    ));
    let gql = GraphQlServer::grid(grid);
    let missing_ns = unique_name("fnone");
    let config = format!(
        "node_id = 1\nfarm_id = 7\n[grid]\ngraphql_urls = [{:?}]\n\
         [tasks.cpu-benchmark]\nenabled = false\n\
         [tasks.healthcheck]\ncron = \"* * * * * *\"\n\
         [tasks.iperf]\ncron = \"{YEARLY}\"\ntimeout = \"2s\"\njitter = 0\n\
         [tasks.public-ip-validation]\ncron = \"{YEARLY}\"\njitter = 0\n\
         [iperf]\nmode = \"grid-nodes\"\niperf3 = {:?}\nrun_timeout = \"60s\"\n\
         [public_ip]\nnamespace = {missing_ns:?}\n{}",
        gql.url(),
        script.display().to_string(),
        healthcheck_section(dir.path(), &service, true)
    );
    let mut daemon = start_daemon(dir.path(), &config, &redis.url(), None);

    let iperf = wait_status(&redis, "iperf", "iperf timed out", |s| {
        s.last_outcome.is_some()
    });
    assert_eq!(iperf.last_outcome, Some(Outcome::Timeout), "{iperf:?}");
    assert_eq!(iperf.last_error.as_deref(), Some("timed out after 2s"));
    assert_eq!(iperf.state, State::Idle);
    let pubip = wait_status(&redis, "public-ip-validation", "public-ip failed", |s| {
        s.last_outcome.is_some()
    });
    assert_eq!(pubip.last_outcome, Some(Outcome::Failed), "{pubip:?}");
    let reason = pubip.last_error.expect("reason");
    assert!(
        reason.contains(&missing_ns) && reason.contains("not found"),
        "{reason}"
    );
    assert_eq!(stored(&redis, "iperf"), None);
    assert_eq!(stored(&redis, "public-ip-validation"), None);

    // The hung child was killed with its run.
    let pid: u32 = std::fs::read_to_string(&pids)
        .expect("the script ran")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid");
    wait_for(Duration::from_secs(5), "the hung iperf3 killed", || {
        proc_stat(pid)
            .is_none_or(|p| p.comm != "sleep" || matches!(p.state, 'Z' | 'X'))
            .then_some(())
    });

    // The healthcheck goes on: more runs, newer results.
    let before = status(&redis, "healthcheck").expect("healthcheck status");
    let first: Value =
        serde_json::from_str(&stored(&redis, "healthcheck").expect("healthcheck result"))
            .expect("JSON");
    let later = wait_status(&redis, "healthcheck", "more healthcheck runs", |s| {
        s.runs >= before.runs + 2
    });
    assert_eq!(later.failures, 0, "{later:?}");
    assert_eq!(later.last_outcome, Some(Outcome::Ok));
    let got = call(&redis, "zos.perf.get", r#"{"Name": "healthcheck"}"#).expect("bus answers");
    assert!(
        got["timestamp"].as_i64() > first["timestamp"].as_i64(),
        "{got} not newer than {first}"
    );
    assert_eq!(got["result"], json!({"cache": [], "network": []}));
    assert!(daemon.running());
    stop_cleanly(&mut daemon);
}

// ---------------------------------------------------------------------------
// 4b. A panicking task beside the real healthcheck (library level: the
//     shipped binary has no task that can be made to panic)

/// A task that panics on every run, every second.
fn panicky() -> std::sync::Arc<dyn zos_perf::tasks::Task> {
    std::sync::Arc::new(common::task::FnTask {
        name: "panicky",
        description: "panics on every run",
        cron: "* * * * * *",
        timeout: Duration::from_secs(10),
        run: || -> zos_perf::tasks::RunFuture<'static> {
            Box::pin(async move { panic!("the panicky task panics on purpose") })
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_is_caught_and_the_healthcheck_beside_it_goes_on() {
    use std::sync::Arc;
    use zos_perf::config::Config;
    use zos_perf::tasks::Task;
    use zos_perf::Daemon;

    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_listener, service) = loopback_service();
    let config = Config::from_toml(&format!(
        "redis = {:?}\n[bus]\nenabled = false\n[tasks.healthcheck]\ncron = \"* * * * * *\"\n{}",
        redis.url(),
        healthcheck_section(dir.path(), &service, true)
    ))
    .expect("config");
    let tasks: Vec<Arc<dyn Task>> = vec![
        Arc::new(zos_perf::tasks::healthcheck::Healthcheck::new(
            &config.sections.healthcheck,
            &config.grid_context(),
        )),
        panicky(),
    ];
    let daemon = Daemon::builder(config)
        .tasks(tasks)
        .expect("register")
        .load_wait(Duration::from_secs(5))
        .start()
        .await
        .expect("daemon starts");
    assert!(daemon.loaded(), "redis answers");

    let (panicky, health) = tokio::task::spawn_blocking(move || {
        let panicky = wait_status(&redis, "panicky", "three panics", |s| s.runs >= 3);
        let health = wait_status(&redis, "healthcheck", "three healthchecks", |s| s.runs >= 3);
        assert!(stored(&redis, "healthcheck").is_some());
        assert_eq!(stored(&redis, "panicky"), None);
        (panicky, health)
    })
    .await
    .expect("checks");
    assert_eq!(panicky.last_outcome, Some(Outcome::Panicked), "{panicky:?}");
    assert_eq!(
        panicky.last_error.as_deref(),
        Some("panicked: the panicky task panics on purpose")
    );
    assert_eq!(panicky.failures, panicky.runs, "{panicky:?}");
    assert_eq!(health.last_outcome, Some(Outcome::Ok), "{health:?}");
    assert_eq!(health.failures, 0, "{health:?}");

    assert!(
        daemon.shutdown().await,
        "the daemon stops within its grace time"
    );
}
