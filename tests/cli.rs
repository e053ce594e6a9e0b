//! The `zos-perf` binary as an operator uses it.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{wait_for, RedisServer};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");

/// Every real task disabled: the daemon tests are about the daemon.
const ALL_DISABLED: &str =
    "[tasks.cpu-benchmark]\nenabled = false\n[tasks.healthcheck]\nenabled = false\n\
[tasks.iperf]\nenabled = false\n[tasks.public-ip-validation]\nenabled = false\n";

fn zos_perf(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("ZOS_PERF_REDIS")
        .env_remove("ZOS_PERF_CONFIG")
        .output()
        .expect("run zos-perf")
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("zos-perf.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

/// A daemon started by a test; killed when dropped, so a failing test
/// leaves no process behind.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `zos-perf --config CFG --redis URL run`, its output discarded.
fn start_daemon(cfg: &str, redis: &str) -> Daemon {
    Daemon(
        Command::new(BIN)
            .args(["--config", cfg, "--redis", redis, "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon"),
    )
}

fn stop(mut daemon: Daemon) -> (bool, Duration) {
    let child = &mut daemon.0;
    let t = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = wait_for(Duration::from_secs(10), "daemon exit", || {
        child.try_wait().expect("wait")
    });
    (status.success(), t.elapsed())
}

#[test]
fn a_broken_config_exits_non_zero_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, field) in [
        ("[tasks.iperf]\ncron = \"every day\"\n", "tasks.iperf.cron"),
        (
            "[healthcheck]\nconnect_timeout = \"soon\"\n",
            "connect_timeout",
        ),
        ("[iperf]\nport = 0\n", "iperf.port"),
        ("nework = \"main\"\n", "nework"),
    ] {
        let cfg = write_config(dir.path(), text);
        let out = zos_perf(&["--config", &cfg, "tasks"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(
            err.contains(field),
            "error for {text:?} does not name {field}: {err}"
        );
    }
    let out = zos_perf(&["--config", "/nonexistent/zos-perf.toml", "tasks"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/zos-perf.toml"));
    let out = zos_perf(&["--redis", "http://localhost", "get-all"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("redis"));
}

#[test]
fn get_and_get_all_read_the_store() {
    let redis = RedisServer::start();
    let url = redis.url();
    let value = r#"{"name":"cpu-benchmark","description":"d","timestamp":1700000000,"result":{"single":1.15}}"#;
    let _: () = redis::cmd("SET")
        .arg("perf.cpu-benchmark")
        .arg(value)
        .query(&mut redis.conn())
        .expect("SET");
    let _: () = redis::cmd("SET")
        .arg("perf.unrelated")
        .arg("x")
        .query(&mut redis.conn())
        .expect("SET");

    let out = zos_perf(&["--redis", &url, "get", "cpu-benchmark"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        got,
        serde_json::from_str::<serde_json::Value>(value).expect("JSON")
    );

    let out = zos_perf(&["--redis", &url, "get", "healthcheck"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("result not found"));

    let out = zos_perf(&["--redis", &url, "get", "gpu-benchmark"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown task \"gpu-benchmark\""));

    let out = zos_perf(&["--redis", &url, "get-all"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON array");
    assert_eq!(all.len(), 1, "only the known task keys are read");
    assert_eq!(all[0]["name"], "cpu-benchmark");
}

#[test]
fn with_no_redis_anywhere_the_daemon_runs_a_private_one_and_stops_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), ALL_DISABLED);
    let child = Daemon(
        Command::new(BIN)
            .args(["--config", &cfg, "run"])
            .env_remove("ZOS_PERF_REDIS")
            .env("XDG_RUNTIME_DIR", dir.path())
            // Nothing listens on port 1: the default address does not answer.
            .env("ZOS_PERF_DEFAULT_REDIS", "redis://127.0.0.1:1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon"),
    );
    let socket = dir.path().join("zos-perf/redis.sock");
    let url = format!("unix://{}", socket.display());
    wait_for(Duration::from_secs(10), "private redis answers", || {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut conn = client.get_connection().ok()?;
        redis::cmd("PING").query::<String>(&mut conn).ok()
    });
    // The read-only commands find it too.
    let out = Command::new(BIN)
        .arg("get-all")
        .env_remove("ZOS_PERF_REDIS")
        .env("XDG_RUNTIME_DIR", dir.path())
        .env("ZOS_PERF_DEFAULT_REDIS", "redis://127.0.0.1:1")
        .output()
        .expect("get-all");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, took) = stop(child);
    assert!(ok, "exit status 0");
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    assert!(!socket.exists(), "private redis socket removed");
    assert!(redis::Client::open(url.as_str())
        .expect("client")
        .get_connection()
        .is_err());
}

#[test]
fn disabled_tasks_lose_their_stale_keys_and_nothing_else() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    for key in ["perf.iperf", "perf.cpu-benchmark", "other"] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("{}")
            .query(&mut conn)
            .expect("SET");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), ALL_DISABLED);
    let child = start_daemon(&cfg, &redis.url());
    wait_for(Duration::from_secs(10), "stale keys removed", || {
        let n: u32 = redis::cmd("EXISTS")
            .arg("perf.iperf")
            .arg("perf.cpu-benchmark")
            .query(&mut conn)
            .ok()?;
        (n == 0).then_some(())
    });
    let other: Option<String> = redis::cmd("GET")
        .arg("other")
        .query(&mut conn)
        .expect("GET");
    assert_eq!(other.as_deref(), Some("{}"));
    let (ok, _) = stop(child);
    assert!(ok);
}

/// A config where only the healthcheck runs, against `services`, with its
/// directories in `dir` and retries an hour apart.
fn healthcheck_only(dir: &Path, services: &[String]) -> String {
    let list = services
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    write_config(
        dir,
        &format!(
            "[tasks.cpu-benchmark]\nenabled = false\n[tasks.iperf]\nenabled = false\n\
[tasks.public-ip-validation]\nenabled = false\n\
[healthcheck]\ncache_dir = {:?}\nflags_dir = {:?}\nconnect_timeout = \"1s\"\n\
backoff_initial = \"1h\"\nbackoff_total = \"2h\"\nservices = [{list}]\n",
            dir.display().to_string(),
            dir.join("flags").display().to_string()
        ),
    )
}

#[test]
fn sigterm_during_a_long_run_exits_0_within_5_s() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 1 refuses: the check fails and the run waits an hour to retry.
    let cfg = healthcheck_only(dir.path(), &["http://127.0.0.1:1".to_string()]);
    let child = start_daemon(&cfg, &redis.url());
    let mut conn = redis.conn();
    wait_for(Duration::from_secs(10), "healthcheck running", || {
        let s: Option<String> = redis::cmd("HGET")
            .arg("perf:status")
            .arg("healthcheck")
            .query(&mut conn)
            .ok()?;
        s.filter(|s| s.contains("\"state\":\"running\""))
    });
    // Let the first attempt fail, so the run sits in its backoff wait.
    wait_for(Duration::from_secs(10), "not-reachable flag", || {
        dir.path()
            .join("flags/not-reachable")
            .exists()
            .then_some(())
    });
    let (ok, took) = stop(child);
    assert!(ok, "exit status 0");
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    let stored: Option<String> = redis::cmd("GET")
        .arg("perf.healthcheck")
        .query(&mut conn)
        .expect("GET");
    assert_eq!(stored, None, "a cancelled run stores nothing");
}

#[test]
fn run_task_stores_and_prints_and_tasks_shows_it() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let service = format!("http://{}", listener.local_addr().expect("addr"));
    let cfg = healthcheck_only(dir.path(), &[service]);
    let out = zos_perf(&[
        "--config",
        &cfg,
        "--redis",
        &redis.url(),
        "run-task",
        "healthcheck",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed["name"], "healthcheck");
    assert_eq!(
        printed["result"],
        serde_json::json!({"cache": [], "network": []})
    );
    let stored: String = redis::cmd("GET")
        .arg("perf.healthcheck")
        .query(&mut redis.conn())
        .expect("GET");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored).expect("JSON"),
        printed
    );

    let out = zos_perf(&["--config", &cfg, "--redis", &redis.url(), "tasks"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with("healthcheck"))
        .expect("healthcheck line");
    assert!(
        line.contains("0 */15 * * * *") && line.contains(" yes ") && line.ends_with("ok"),
        "{line}"
    );
    let line = table
        .lines()
        .find(|l| l.starts_with("iperf"))
        .expect("iperf line");
    assert!(line.contains(" no "), "{line}");
}
