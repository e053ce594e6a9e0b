//! The shipped binary against what an attacker or an unlucky operator can
//! do to its inputs and its surroundings: durations that overflow, a config
//! that is not a file, credentials in a Redis URL, forged and flooding bus
//! messages, a closed log pipe, children that fork or never stop writing,
//! symbolic links in the flags directory, a squatted runtime directory, a
//! result from the future, expired and skewed requests.
//!
//! Each test has its own redis-server and temporary directory; every
//! process it starts is killed when it fails half-way.

use crate::common;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use common::daemon::{output_within, write_config, Daemon};
use common::{closed_port, wait_for, KillOnDrop, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const YEARLY: &str = "0 0 0 1 1 *";

/// `zos-perf` with a clean environment and an empty kernel command line.
fn zos_perf(dir: &Path) -> Command {
    let cmdline = dir.join("cmdline");
    std::fs::write(&cmdline, "").expect("write kernel command line");
    let mut cmd = Command::new(BIN);
    cmd.arg("--kernel-cmdline")
        .arg(cmdline)
        .env_remove("ZOS_PERF_REDIS")
        .env_remove("ZOS_PERF_CONFIG")
        .env_remove("ZOS_PERF_LOG")
        .env("NO_COLOR", "1");
    cmd
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// `zos-perf run` with `config` against `redis`, logging at info.
fn start_daemon(dir: &Path, config: &str, redis: &str) -> Daemon {
    let cfg = write_config(dir, config);
    Daemon::spawn(
        zos_perf(dir)
            .arg("--config")
            .arg(&cfg)
            .args(["--redis", redis, "--log", "info", "run"]),
    )
}

/// A config with every task disabled but the healthcheck, which probes
/// `service` once a year (so: once at start) with its flags in `flags`.
fn healthcheck_only(dir: &Path, flags: &Path, service: &str) -> String {
    format!(
        "[tasks.cpu-benchmark]\nenabled = false\n[tasks.iperf]\nenabled = false\n\
         [tasks.public-ip-validation]\nenabled = false\n\
         [tasks.healthcheck]\ncron = \"{YEARLY}\"\n\
         [healthcheck]\ncache_dir = {:?}\nflags_dir = {:?}\nconnect_timeout = \"1s\"\n\
         backoff_total = \"0s\"\nservices = [{service:?}]\n",
        dir.display().to_string(),
        flags.display().to_string(),
    )
}

fn bus_only() -> String {
    "[tasks.cpu-benchmark]\nenabled = false\n[tasks.iperf]\nenabled = false\n\
     [tasks.public-ip-validation]\nenabled = false\n[tasks.healthcheck]\nenabled = false\n"
        .to_string()
}

fn stored(redis: &RedisServer, name: &str) -> Option<Value> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("perf.{name}"))
        .query(&mut redis.conn())
        .ok()?;
    raw.map(|r| serde_json::from_str(&r).expect("stored JSON"))
}

/// A `zos.perf.get` request for `name` as the peer pushes it.
fn request(ret: &str, name: &str, now: u64, exp: u64, ver: u64) -> String {
    json!({"ver": ver, "ref": "r", "src": "7", "cmd": "zos.perf.get", "exp": exp,
        "dat": B64.encode(json!({"Name": name}).to_string()), "tag": null,
        "ret": ret, "shm": null, "now": now})
    .to_string()
}

fn push(redis: &RedisServer, list: &str, values: &[String]) {
    redis::cmd("LPUSH")
        .arg(list)
        .arg(values)
        .query::<()>(&mut redis.conn())
        .expect("LPUSH");
}

fn pop_reply(redis: &RedisServer, ret: &str, timeout: u64) -> Option<Value> {
    let got: Option<(String, String)> = redis::cmd("BRPOP")
        .arg(ret)
        .arg(timeout)
        .query(&mut redis.conn())
        .expect("BRPOP");
    got.map(|(_, v)| serde_json::from_str(&v).expect("reply JSON"))
}

// ---------------------------------------------------------------------------
// Values that explode later (items 17, 18)

#[test]
fn a_duration_too_long_is_refused_at_start_naming_field_and_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (section, field) in [
        ("healthcheck", "connect_timeout"),
        ("healthcheck", "backoff_total"),
        ("public_ip", "lookup_timeout"),
        ("iperf", "busy_backoff_initial"),
    ] {
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            format!("[{section}]\n{field} = \"18446744073709551615s\"\n"),
        )
        .expect("write");
        let out = output_within(
            zos_perf(dir.path()).arg("--config").arg(&cfg).arg("tasks"),
            Duration::from_secs(10),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{section}.{field} accepted");
        assert!(err.contains(&format!("{section}.{field}")), "{err}");
        assert!(err.contains("the limit is"), "{err}");
    }
    let out = output_within(
        zos_perf(dir.path()).args([
            "--redis",
            &format!("redis://127.0.0.1:{}", closed_port()),
            "call",
            "zos.perf.get",
            "--timeout",
            "18446744073709551615s",
        ]),
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--timeout") && err.contains("the limit is"),
        "{err}"
    );
}

#[test]
fn a_config_that_is_not_a_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    for path in [Path::new("/dev/zero"), fifo.as_path()] {
        let out = output_within(
            zos_perf(dir.path()).arg("--config").arg(path).arg("tasks"),
            Duration::from_secs(10),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("not a regular file"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}

// ---------------------------------------------------------------------------
// Logs (items 2, 14, 15)

#[test]
fn redis_credentials_never_reach_the_logs_or_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("redis://:s3cr3tpw@127.0.0.1:{}", closed_port());
    let mut daemon = start_daemon(dir.path(), &bus_only(), &url);
    daemon.wait_log(Duration::from_secs(10), "redis unreachable");
    daemon.stop_cleanly();
    let log = daemon.log();
    assert!(log.contains(":***@127.0.0.1"), "{log}");
    assert!(!log.contains("s3cr3tpw"), "{log}");
    for args in [
        vec!["get", "cpu-benchmark"],
        vec!["tasks"],
        vec!["run-task", "healthcheck"],
    ] {
        let out = output_within(
            zos_perf(dir.path()).args(["--redis", &url]).args(&args),
            Duration::from_secs(20),
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("***"), "{args:?}: {text}");
        assert!(!text.contains("s3cr3tpw"), "{args:?}: {text}");
    }
}

#[test]
fn junk_on_the_bus_cannot_forge_a_log_line_nor_flood_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let daemon = start_daemon(dir.path(), &bus_only(), &redis.url());
    daemon.wait_log(Duration::from_secs(10), "bus handler starting");
    let forged = "junk\n2026-01-01T00:00:00.000000Z  INFO zos_perf: FORGED by a caller".to_string();
    push(&redis, "msgbus.zos.perf.get", &[forged]);
    daemon.wait_log(Duration::from_secs(10), "dropping a message");
    let junk: Vec<String> = (0..5000).map(|i| format!("junk {i}")).collect();
    push(&redis, "msgbus.zos.perf.get", &junk);
    wait_for(Duration::from_secs(20), "the junk to be popped", || {
        let left: u64 = redis.llen("msgbus.zos.perf.get");
        (left == 0).then_some(())
    });
    // The pops are done; give the handler a moment to have logged them.
    std::thread::sleep(Duration::from_millis(500));
    let log = daemon.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("FORGED") && !l.contains("dropping")),
        "a forged line:\n{log}"
    );
    assert!(log.contains("junk\\n2026"), "{log}");
    let drops = log
        .lines()
        .filter(|l| l.contains("dropping a message"))
        .count();
    assert!(drops <= 2, "{drops} drop lines for 5001 junk messages");
}

#[test]
fn a_closed_log_pipe_neither_kills_nor_deafens_the_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let service = TcpListener::bind("127.0.0.1:0").expect("bind");
    let service_url = format!("http://{}", service.local_addr().expect("addr"));
    // The healthcheck every second: log lines keep coming after the pipe closes.
    let config = healthcheck_only(dir.path(), &dir.path().join("flags"), &service_url)
        .replace(YEARLY, "* * * * * *");
    let cfg = write_config(dir.path(), &config);
    let mut child = KillOnDrop(
        zos_perf(dir.path())
            .arg("--config")
            .arg(&cfg)
            .args(["--redis", &redis.url(), "--log", "debug", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zos-perf run"),
    );
    // `| head -c 100`: read 100 bytes, then close the pipe.
    let mut stderr = child.0.stderr.take().expect("stderr");
    let mut head = [0u8; 100];
    stderr.read_exact(&mut head).expect("100 bytes of log");
    drop(stderr);
    // Runs go on after the close (each one logs) and the bus still answers.
    let before: u64 = stored(&redis, "healthcheck")
        .and_then(|v| v["timestamp"].as_u64())
        .unwrap_or(0);
    wait_for(
        Duration::from_secs(15),
        "a healthcheck run after the close",
        || {
            let t = stored(&redis, "healthcheck")?["timestamp"].as_u64()?;
            (t > before + 1).then_some(())
        },
    );
    let ret = format!("msgbus.test.{}", std::process::id());
    push(
        &redis,
        "msgbus.zos.perf.get",
        &[request(&ret, "healthcheck", unix_now(), 60, 1)],
    );
    let reply = pop_reply(&redis, &ret, 10).expect("the bus answers after the pipe closed");
    assert!(reply["err"].is_null(), "{reply}");
    let t = Instant::now();
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = wait_for(Duration::from_secs(10), "exit after SIGTERM", || {
        child.0.try_wait().expect("wait")
    });
    assert!(status.success(), "exit {status}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Children (item 10)

fn cpu_with_workloads(dir: &Path, command: &[&str]) -> String {
    format!(
        "[tasks.healthcheck]\nenabled = false\n[tasks.iperf]\nenabled = false\n\
         [tasks.public-ip-validation]\nenabled = false\n\
         [cpu_benchmark]\nworkloads_command = {command:?}\n\
         [healthcheck]\ncache_dir = {:?}\n",
        dir.display().to_string()
    )
}

/// `run-task TASK` with `config` written to `dir/file`, against `redis`,
/// killed if it takes longer than `within`.
fn run_task(
    dir: &Path,
    file: &str,
    config: &str,
    redis: &RedisServer,
    task: &str,
    within: Duration,
) -> std::process::Output {
    let cfg = dir.join(file);
    std::fs::write(&cfg, config).expect("write");
    output_within(
        zos_perf(dir)
            .arg("--config")
            .arg(&cfg)
            .args(["--redis", &redis.url(), "run-task", task]),
        within,
    )
}

fn run_cpu(dir: &Path, redis: &RedisServer, command: &[&str]) -> (Value, String) {
    let config = cpu_with_workloads(dir, command);
    let out = run_task(
        dir,
        "cpu.toml",
        &config,
        redis,
        "cpu-benchmark",
        Duration::from_secs(120),
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (
        serde_json::from_slice(&out.stdout).expect("result JSON"),
        err,
    )
}

#[test]
fn a_child_that_never_stops_writing_is_killed_at_its_output_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let (result, log) = run_cpu(dir.path(), &redis, &["yes"]);
    assert_eq!(result["result"]["workloads"], 0, "{result}");
    assert!(
        log.contains("wrote more than 4096 bytes to stdout"),
        "{log}"
    );
}

#[test]
fn what_a_child_forks_does_not_outlive_its_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let marker = format!("97.{}{}", std::process::id(), unix_now() % 1000);
    let script = format!("sleep {marker} & echo 3");
    let (result, log) = run_cpu(dir.path(), &redis, &["sh", "-c", &script]);
    assert_eq!(result["result"]["workloads"], 3, "{result}\n{log}");
    let left: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| {
            let e = e.ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let pid = e.file_name().to_str()?.parse().ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&marker)
                .then_some(pid)
        })
        .collect();
    for pid in &left {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
    assert!(left.is_empty(), "sleep {marker} left running: {left:?}");
}

// ---------------------------------------------------------------------------
// Local attackers (items 12, 13)

#[test]
fn a_flag_planted_as_a_symlink_is_never_written_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "root's precious file").expect("write");
    let flags = dir.path().join("flags");
    std::fs::create_dir(&flags).expect("mkdir");
    std::os::unix::fs::symlink(&victim, flags.join("not-reachable")).expect("symlink");
    let service = format!("http://127.0.0.1:{}", closed_port());
    let mut daemon = start_daemon(
        dir.path(),
        &healthcheck_only(dir.path(), &flags, &service),
        &redis.url(),
    );
    let result = wait_for(Duration::from_secs(20), "a healthcheck result", || {
        stored(&redis, "healthcheck")
    });
    daemon.stop_cleanly();
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "root's precious file"
    );
    let network = result["result"]["network"].to_string();
    assert!(network.contains("symbolic link"), "{result}");
}

#[test]
fn a_flags_directory_others_can_write_is_refused_and_the_check_fails() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let flags = dir.path().join("flags");
    std::fs::create_dir(&flags).expect("mkdir");
    std::fs::set_permissions(&flags, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let service = format!("http://127.0.0.1:{}", closed_port());
    let mut daemon = start_daemon(
        dir.path(),
        &healthcheck_only(dir.path(), &flags, &service),
        &redis.url(),
    );
    let result = wait_for(Duration::from_secs(20), "a healthcheck result", || {
        stored(&redis, "healthcheck")
    });
    daemon.stop_cleanly();
    assert!(!flags.join("not-reachable").exists());
    let cache = result["result"]["cache"].to_string();
    assert!(cache.contains("writable by others"), "{result}");
    assert!(daemon.log().contains("writable by others"));
}

#[test]
fn a_squatted_runtime_directory_is_refused_by_the_daemon_and_the_cli() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = dir.path().join("zos-perf");
    std::fs::create_dir(&runtime).expect("mkdir");
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    // The squatter's server behind our socket path, with a forged result.
    let socket = runtime.join("redis.sock");
    let _squatter = KillOnDrop(
        Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args([
                "--unixsocketperm",
                "777",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let forged = json!({"name": "cpu-benchmark", "description": "d",
        "timestamp": 1, "result": {"single": 999999}});
    wait_for(Duration::from_secs(10), "the squatter's server", || {
        let mut conn = redis::Client::open(format!("unix://{}", socket.display()))
            .ok()?
            .get_connection()
            .ok()?;
        redis::cmd("SET")
            .arg("perf.cpu-benchmark")
            .arg(forged.to_string())
            .query::<()>(&mut conn)
            .ok()
    });
    let default = format!("redis://127.0.0.1:{}", closed_port());
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").expect("write");
    let out = output_within(
        zos_perf(dir.path())
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("ZOS_PERF_DEFAULT_REDIS", &default)
            .args(["get", "cpu-benchmark"]),
        Duration::from_secs(20),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(!text.contains("999999"), "served the forged value: {text}");
    assert!(text.contains("open to other users"), "{text}");

    let out = output_within(
        zos_perf(dir.path())
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("ZOS_PERF_DEFAULT_REDIS", &default)
            .arg("--config")
            .arg(&empty)
            .arg("run"),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("open to other users"), "{err}");
    assert!(err.contains(&runtime.display().to_string()), "{err}");
}

// ---------------------------------------------------------------------------
// Stored results and the clock (item 20, review items)

#[test]
fn a_result_stamped_in_the_future_is_stale_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let future = unix_now() + 86_400;
    let value = json!({"name": "healthcheck", "description": "d",
        "timestamp": future, "result": {"cache": [], "network": []}});
    redis.set("perf.healthcheck", value.to_string());
    let service = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", service.local_addr().expect("addr"));
    let mut daemon = start_daemon(
        dir.path(),
        &healthcheck_only(dir.path(), &dir.path().join("flags"), &url),
        &redis.url(),
    );
    let t = wait_for(
        Duration::from_secs(20),
        "a fresh healthcheck result",
        || {
            let t = stored(&redis, "healthcheck")?["timestamp"].as_u64()?;
            (t <= unix_now()).then_some(t)
        },
    );
    assert!(t + 60 > unix_now());
    daemon.stop_cleanly();
    assert!(daemon.log().contains("stamped in the future"));
}

#[test]
fn an_expired_request_is_never_answered_even_with_a_bad_version_and_skew_is_tolerated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let daemon = start_daemon(dir.path(), &bus_only(), &redis.url());
    daemon.wait_log(Duration::from_secs(10), "bus handler starting");
    let now = unix_now();
    let expired = format!("msgbus.test.expired.{}", std::process::id());
    let skewed = format!("msgbus.test.skewed.{}", std::process::id());
    // Sent an hour ago with 30 s to live and version 7: expired, unanswered.
    push(
        &redis,
        "msgbus.zos.perf.get",
        &[request(&expired, "healthcheck", now - 3600, 30, 7)],
    );
    // Sent "2 minutes ago" by a clock behind ours, 30 s to live: answered.
    push(
        &redis,
        "msgbus.zos.perf.get",
        &[request(&skewed, "healthcheck", now - 120, 30, 1)],
    );
    let reply = pop_reply(&redis, &skewed, 10).expect("the skewed request is answered");
    assert_eq!(reply["err"]["code"], 7, "not found is the answer: {reply}");
    let late: u64 = redis.llen(&expired);
    assert_eq!(late, 0, "an expired request was answered");
    daemon.wait_log(Duration::from_secs(5), "dropping an expired request");
}

// ---------------------------------------------------------------------------
// Processes on one Redis (item 8)

#[test]
fn run_task_waits_for_the_daemons_exclusive_measurement_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let config = cpu_with_workloads(dir.path(), &["echo", "1"]);
    let mut daemon = start_daemon(dir.path(), &config, &redis.url());
    daemon.wait_log(Duration::from_secs(20), "run started");
    let out = run_task(
        dir.path(),
        "cpu.toml",
        &config,
        &redis,
        "cpu-benchmark",
        Duration::from_secs(180),
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let waited = err
        .lines()
        .find(|l| l.contains("waiting for the lease"))
        .unwrap_or_else(|| panic!("run-task did not wait for the daemon's run:\n{err}"));
    assert!(
        waited.contains(&format!("pid {}", daemon.child.id())),
        "{waited}"
    );
    // The daemon's run had finished before the manual one started.
    let finished_at = |log: &str, what: &str| -> String {
        log.lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {what:?} in:\n{log}"))
            .to_string()
    };
    let daemon_done = finished_at(&daemon.log(), "run finished");
    let manual_start = finished_at(&err, "run started");
    assert!(
        daemon_done <= manual_start,
        "{daemon_done} > {manual_start}"
    );
    daemon.stop_cleanly();
}

// ---------------------------------------------------------------------------
// Replies only where replies belong (item 16)

#[test]
fn a_reply_is_never_pushed_into_another_services_request_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let daemon = start_daemon(dir.path(), &bus_only(), &redis.url());
    daemon.wait_log(Duration::from_secs(10), "bus handler starting");
    let victim = "msgbus.zos.statistics.get";
    let ours = format!("msgbus.test.{}", std::process::id());
    push(
        &redis,
        "msgbus.zos.perf.get",
        &[
            request(victim, "healthcheck", unix_now(), 60, 1),
            request("msgbus.system.local", "healthcheck", unix_now(), 60, 1),
            request(&ours, "healthcheck", unix_now(), 60, 1),
        ],
    );
    pop_reply(&redis, &ours, 10).expect("the request with our own ret is answered");
    for list in [victim, "msgbus.system.local"] {
        let n: u64 = redis.llen(list);
        assert_eq!(n, 0, "a reply was pushed into {list}");
    }
    // Log lines reach the file through the daemon's log queue, possibly
    // after the reply: wait for it.
    daemon.wait_log(Duration::from_secs(10), "request namespace");
}

// ---------------------------------------------------------------------------
// Stored values as bytes (item 1)

#[test]
fn a_stored_value_that_is_not_utf8_is_named_by_the_cli_and_stops_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    redis.set("perf.healthcheck", &b"\xff\xfe{}"[..]);
    let cpu = json!({"name": "cpu-benchmark", "description": "d", "timestamp": 1,
        "result": {"single": 1.5}});
    redis.set("perf.cpu-benchmark", cpu.to_string());
    let out = output_within(
        zos_perf(dir.path()).args(["--redis", &redis.url(), "get", "healthcheck"]),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("perf.healthcheck") && err.contains("UTF-8"),
        "{err}"
    );
    let out = output_within(
        zos_perf(dir.path()).args(["--redis", &redis.url(), "get-all"]),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let all: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(all, json!([cpu]));
    assert!(err.contains("perf.healthcheck"), "{err}");

    // The daemon starts on it: it runs the healthcheck, whose result
    // replaces the bad value, and writes its status.
    let service = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", service.local_addr().expect("addr"));
    let mut daemon = start_daemon(
        dir.path(),
        &healthcheck_only(dir.path(), &dir.path().join("flags"), &url),
        &redis.url(),
    );
    wait_for(Duration::from_secs(20), "a healthcheck result", || {
        stored(&redis, "healthcheck")
    });
    let status: Option<String> = redis::cmd("HGET")
        .arg("perf:status")
        .arg("healthcheck")
        .query(&mut redis.conn())
        .expect("HGET");
    assert!(status.is_some(), "no status written");
    daemon.stop_cleanly();
}

// ---------------------------------------------------------------------------
// Keys of ours of the wrong type (item 19)

#[test]
fn keys_of_ours_turned_into_another_type_are_repaired_and_tasks_still_shows_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let service = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", service.local_addr().expect("addr"));
    let config = healthcheck_only(dir.path(), &dir.path().join("flags"), &url);
    let mut daemon = start_daemon(dir.path(), &config, &redis.url());
    wait_for(Duration::from_secs(20), "a healthcheck result", || {
        stored(&redis, "healthcheck")
    });
    let mut conn = redis.conn();
    redis::pipe()
        .del("perf.healthcheck")
        .hset("perf.healthcheck", "x", "y")
        .del("perf:status")
        .rpush("perf:status", "junk")
        .query::<()>(&mut conn)
        .expect("corrupt");
    let cfg = dir.path().join("zos-perf.toml");
    let out = output_within(
        zos_perf(dir.path())
            .arg("--config")
            .arg(&cfg)
            .args(["--redis", &redis.url(), "tasks"]),
        Duration::from_secs(20),
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("healthcheck"), "{table}");
    let kind = |key: &str| -> String {
        redis::cmd("TYPE")
            .arg(key)
            .query(&mut redis.conn())
            .expect("TYPE")
    };
    wait_for(Duration::from_secs(20), "the keys repaired", || {
        (kind("perf.healthcheck") == "string" && kind("perf:status") == "hash").then_some(())
    });
    assert!(stored(&redis, "healthcheck").is_some());
    daemon.stop_cleanly();
    assert!(
        daemon.log().contains("held another type"),
        "{}",
        daemon.log()
    );
}

// ---------------------------------------------------------------------------
// One daemon per Redis, and run-task beside it (item 8)

const LEASE: &str = "perf:lease:daemon";

fn lease_holder(redis: &RedisServer) -> Option<Value> {
    let raw: Option<String> = redis::cmd("GET").arg(LEASE).query(&mut redis.conn()).ok()?;
    raw.and_then(|r| serde_json::from_str(&r).ok())
}

fn status_of(redis: &RedisServer, name: &str) -> Option<Value> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg("perf:status")
        .arg(name)
        .query(&mut redis.conn())
        .ok()?;
    raw.and_then(|r| serde_json::from_str(&r).ok())
}

#[test]
fn a_second_daemon_on_one_redis_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let mut first = start_daemon(dir.path(), &bus_only(), &redis.url());
    let pid = first.child.id() as u64;
    wait_for(Duration::from_secs(20), "the first daemon's lease", || {
        lease_holder(&redis).filter(|h| h["pid"] == pid)
    });
    let cfg = dir.path().join("second.toml");
    std::fs::write(&cfg, bus_only()).expect("write");
    let out = output_within(
        zos_perf(dir.path())
            .arg("--config")
            .arg(&cfg)
            .args(["--redis", &redis.url(), "run"]),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the second daemon ran:\n{err}");
    assert!(err.contains("another zos-perf daemon"), "{err}");
    assert!(err.contains(&format!("pid {pid} on ")), "{err}");
    // The first is untouched, and gives the lease back when it stops.
    assert_eq!(lease_holder(&redis).expect("lease")["pid"], pid);
    first.stop_cleanly();
    assert!(lease_holder(&redis).is_none());
}

#[test]
fn a_flushed_lease_is_taken_again_and_a_lease_taken_by_another_stops_the_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let mut daemon = start_daemon(dir.path(), &bus_only(), &redis.url());
    let pid = daemon.child.id() as u64;
    wait_for(Duration::from_secs(20), "the daemon's lease", || {
        lease_holder(&redis).filter(|h| h["pid"] == pid)
    });
    redis::cmd("FLUSHALL")
        .query::<()>(&mut redis.conn())
        .expect("FLUSHALL");
    wait_for(Duration::from_secs(30), "the lease taken again", || {
        lease_holder(&redis).filter(|h| h["pid"] == pid)
    });
    daemon.wait_log(Duration::from_secs(5), "took it again");
    // Another daemon (on another host) took it while this one was frozen:
    // a holder's record, with a holder's expiry (30 s).
    let other = json!({"pid": 4242, "host": "other-node", "what": "daemon",
        "since": unix_now(), "token": "feedbeef"});
    redis::cmd("SET")
        .arg(LEASE)
        .arg(other.to_string())
        .arg("PX")
        .arg(30_000)
        .query::<()>(&mut redis.conn())
        .expect("SET");
    let child = &mut daemon.child;
    let status = wait_for(Duration::from_secs(30), "the daemon to stop", || {
        child.try_wait().expect("wait")
    });
    assert!(!status.success(), "{status}");
    let log = daemon.log();
    assert!(log.contains("pid 4242 on other-node"), "{log}");
    // Its lease is left to its holder.
    assert_eq!(lease_holder(&redis).expect("lease")["host"], "other-node");
}

/// Puts `value` at `key` with an expiry of `px` ms, as a stray write would.
fn plant(redis: &RedisServer, key: &str, value: &[u8], px: u64) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("PX")
        .arg(px)
        .query::<()>(&mut redis.conn())
        .expect("SET");
}

const HOUR_MS: u64 = 3_600_000;

#[test]
fn a_daemon_lease_no_zos_perf_wrote_is_taken_over_at_once_naming_what_was_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let holder = json!({"pid": 4242, "host": "other-node", "what": "daemon",
        "since": unix_now(), "token": "feedbeef"})
    .to_string();
    // JSON that is not a holder, a holder's record with an expiry no holder
    // sets, and bytes that would drive a terminal: each for an hour.
    let strays: [(&[u8], &str); 4] = [
        (b"{}", "found={}"),
        (b"\"x\"", "found=\"x\""),
        (holder.as_bytes(), "an expiry of"),
        (b"\x1b]0;owned\x07{", "found=\\u{1b}]0;owned\\u{7}{"),
    ];
    for (value, shown) in strays {
        plant(&redis, LEASE, value, HOUR_MS);
        let mut daemon = start_daemon(dir.path(), &bus_only(), &redis.url());
        let pid = daemon.child.id() as u64;
        wait_for(Duration::from_secs(20), "the daemon's lease", || {
            lease_holder(&redis).filter(|h| h["pid"] == pid)
        });
        daemon.wait_log(Duration::from_secs(5), "no zos-perf wrote");
        let log = daemon.log();
        let line = log
            .lines()
            .find(|l| l.contains("no zos-perf wrote"))
            .unwrap_or_default();
        assert!(line.contains(shown), "{shown:?} not in {line}");
        assert!(!log.contains('\x1b'), "{log}");
        daemon.stop_cleanly();
    }
}

/// The cpu-benchmark (with a workloads command that answers at once) as
/// `run-task ... --timeout T`, killed after `within`.
fn run_cpu_within(dir: &Path, redis: &RedisServer, timeout: &str, within: Duration) -> Output {
    let cfg = dir.join("cpu.toml");
    std::fs::write(&cfg, cpu_with_workloads(dir, &["echo", "1"])).expect("write");
    output_within(
        zos_perf(dir).arg("--config").arg(&cfg).args([
            "--redis",
            &redis.url(),
            "run-task",
            "cpu-benchmark",
            "--timeout",
            timeout,
        ]),
        within,
    )
}

#[test]
fn an_exclusive_lease_no_zos_perf_wrote_does_not_hold_run_task_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    plant(&redis, "perf:lease:exclusive", b"{}", HOUR_MS);
    let out = run_cpu_within(dir.path(), &redis, "60s", Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no zos-perf wrote"), "{err}");
    let left: Option<String> = redis::cmd("GET")
        .arg("perf:lease:exclusive")
        .query(&mut redis.conn())
        .expect("GET");
    assert_eq!(left, None, "the run's lease was not given back");
}

#[test]
fn run_task_timeout_covers_the_wait_for_a_live_holder_exit_5() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    // Another process's measurement, holding the lease as a holder does.
    let other = json!({"pid": 4242, "host": "other-node", "what": "iperf",
        "since": unix_now(), "token": "feedbeef"})
    .to_string();
    plant(&redis, "perf:lease:exclusive", other.as_bytes(), 30_000);
    let started = Instant::now();
    let out = run_cpu_within(dir.path(), &redis, "3s", Duration::from_secs(25));
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("timed out after 3s"), "{err}");
    assert!(err.contains("pid 4242 on other-node"), "{err}");
    assert!(out.stdout.is_empty());
    // Generous: the 3 s deadline, plus start-up on a loaded machine.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // The holder's lease is left alone.
    let left: Option<String> = redis::cmd("GET")
        .arg("perf:lease:exclusive")
        .query(&mut redis.conn())
        .expect("GET");
    assert_eq!(left.as_deref(), Some(other.as_str()));
}

/// Only the healthcheck, once a year, against a service that answers.
fn reachable_healthcheck(dir: &Path, service: &TcpListener, cache: &Path) -> String {
    let flags = dir.join("flags");
    format!(
        "[tasks.cpu-benchmark]\nenabled = false\n[tasks.iperf]\nenabled = false\n\
         [tasks.public-ip-validation]\nenabled = false\n[tasks.provisiontest]\nenabled = false\n\
         [tasks.healthcheck]\ncron = \"{YEARLY}\"\n\
         [healthcheck]\ncache_dir = {:?}\nflags_dir = {:?}\nconnect_timeout = \"2s\"\n\
         backoff_total = \"0s\"\nservices = [\"http://{}\"]\n",
        cache.display().to_string(),
        flags.display().to_string(),
        service.local_addr().expect("addr"),
    )
}

#[test]
fn run_task_beside_the_daemon_writes_only_the_last_runs_fields_and_the_daemon_repairs_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let service = TcpListener::bind("127.0.0.1:0").expect("bind");
    let config = reachable_healthcheck(dir.path(), &service, dir.path());
    let mut daemon = start_daemon(dir.path(), &config, &redis.url());
    let before = wait_for(Duration::from_secs(30), "the daemon's run", || {
        status_of(&redis, "healthcheck").filter(|s| s["last_outcome"] == "ok")
    });
    assert_eq!(before["cron"], YEARLY);
    assert!(before["next_fire"].is_i64(), "{before}");
    let out = run_task(
        dir.path(),
        "manual.toml",
        &config,
        &redis,
        "healthcheck",
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = status_of(&redis, "healthcheck").expect("status");
    for field in [
        "cron",
        "jitter",
        "exclusive",
        "next_fire",
        "runs",
        "failures",
    ] {
        assert_eq!(after[field], before[field], "{field}: {after}");
    }
    assert!(
        after["last_attempt"].as_i64() >= before["last_attempt"].as_i64(),
        "{after}"
    );
    // An older run-task overwrote the whole entry: the daemon puts its own
    // fields back and keeps the newer last run.
    let clobbered = json!({"cron": "", "jitter": 0, "exclusive": false, "state": "idle",
        "last_attempt": unix_now() + 5, "last_duration": 0.5, "last_outcome": "failed",
        "last_error": "by hand", "problems": null, "next_fire": null,
        "runs": 0, "failures": 1, "skipped": 0});
    redis::cmd("HSET")
        .arg("perf:status")
        .arg("healthcheck")
        .arg(clobbered.to_string())
        .query::<()>(&mut redis.conn())
        .expect("HSET");
    let repaired = wait_for(Duration::from_secs(20), "the daemon's repair", || {
        status_of(&redis, "healthcheck").filter(|s| s["cron"] == YEARLY)
    });
    assert_eq!(repaired["next_fire"], before["next_fire"], "{repaired}");
    assert_eq!(repaired["last_error"], "by hand", "{repaired}");
    daemon.stop_cleanly();
}

// ---------------------------------------------------------------------------
// Flags that cannot be written show in the status (item 21)

#[test]
fn flags_that_cannot_be_written_show_as_a_problem_in_the_status_and_tasks() {
    use std::os::unix::fs::{chown, PermissionsExt};
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let open = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    open(dir.path(), 0o755);
    let redis = RedisServer::start_with(&["--unixsocketperm", "777"]);
    open(redis.socket().parent().expect("socket dir"), 0o755);
    // Root's flags directory, with a flag set: a daemon running as another
    // user may neither clear nor set it (permission denied).
    let flags = dir.path().join("flags");
    std::fs::create_dir(&flags).expect("mkdir");
    open(&flags, 0o755);
    std::fs::write(flags.join("not-reachable"), "").expect("flag");
    let (cache, run) = (dir.path().join("cache"), dir.path().join("run"));
    for d in [&cache, &run] {
        std::fs::create_dir(d).expect("mkdir");
        chown(d, Some(NOBODY), Some(NOBODY)).expect("chown");
        open(d, 0o700);
    }
    let service = TcpListener::bind("127.0.0.1:0").expect("bind");
    let cfg = write_config(
        dir.path(),
        &reachable_healthcheck(dir.path(), &service, &cache),
    );
    open(&cfg, 0o644);
    let out = output_within(
        zos_perf(dir.path())
            .uid(NOBODY)
            .gid(NOBODY)
            .env("XDG_RUNTIME_DIR", &run)
            .arg("--config")
            .arg(&cfg)
            .args(["--redis", &redis.url(), "run-task", "healthcheck"]),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(flags.join("not-reachable").exists());
    let result = stored(&redis, "healthcheck").expect("result");
    assert!(
        result["result"]["network"]
            .to_string()
            .contains("Permission denied"),
        "{result}"
    );
    let status = status_of(&redis, "healthcheck").expect("status");
    assert_eq!(status["last_outcome"], "ok", "{status}");
    assert_eq!(status["problems"], 1, "{status}");
    let tasks = output_within(
        zos_perf(dir.path())
            .arg("--config")
            .arg(&cfg)
            .args(["--redis", &redis.url(), "tasks"]),
        Duration::from_secs(30),
    );
    let table = String::from_utf8_lossy(&tasks.stdout).into_owned();
    let line = table
        .lines()
        .find(|l| l.starts_with("healthcheck"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("ok, 1 problem"), "{table}");
}

// ---------------------------------------------------------------------------
// The sync loop against keys that keep vanishing (review)

#[test]
fn keys_evicted_again_and_again_cost_at_most_two_sync_passes_an_interval() {
    use zos_perf::store::{history::HistoryConfig, ResultStore, TaskResult, SYNC_INTERVAL};
    // Room for about two of the six results: every write evicts another.
    let redis =
        RedisServer::start_with(&["--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let link =
            zos_perf::node_redis::RedisLink::start(&redis.url(), shutdown.clone()).expect("link");
        let store = ResultStore::with_history(link, &HistoryConfig { depth: 0 });
        assert!(store.load(Duration::from_secs(10)).await);
        for i in 0..6 {
            let result = TaskResult {
                name: format!("evicted-{i}"),
                description: "d".into(),
                timestamp: unix_now() as i64,
                result: json!("x".repeat(700 * 1024)),
            };
            store.put(result).expect("put");
        }
        let looping = tokio::spawn(store.clone().sync_loop(shutdown.clone()));
        let (t0, p0) = (Instant::now(), store.sync_passes());
        let window = SYNC_INTERVAL * 4;
        tokio::time::sleep(window).await;
        let passes = store.sync_passes() - p0;
        let intervals = t0.elapsed().as_secs_f64() / SYNC_INTERVAL.as_secs_f64();
        shutdown.cancel();
        let _ = looping.await;
        assert!(
            passes as f64 <= 2.0 * (intervals.ceil() + 1.0),
            "{passes} passes in {intervals:.1} intervals"
        );
    });
}
