//! The `zos-perf` binary as an operator uses it.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

// Every real task disabled: the daemon tests are about the daemon.
use common::observe::{config as write_config, ALL_DISABLED};
use common::{die_with_parent, wait_for, RedisServer};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");

fn zos_perf(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("ZOS_PERF_REDIS")
        .env_remove("ZOS_PERF_CONFIG")
        .output()
        .expect("run zos-perf")
}

/// A daemon started by a test; stopped when dropped, so a failing test
/// leaves no process behind. SIGTERM first, as an operator would stop it:
/// a SIGKILL would leave its private redis-server running. It also gets
/// SIGTERM if the test binary dies (see `common::die_with_parent`).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The zos-perf binary, tied to the test (SIGTERM when the test's thread ends).
fn daemon_command() -> Command {
    let mut cmd = Command::new(BIN);
    die_with_parent(&mut cmd, Signal::SIGTERM);
    cmd
}

/// `zos-perf --config CFG --redis URL run`, its output discarded.
fn start_daemon(cfg: &str, redis: &str) -> Daemon {
    Daemon(
        daemon_command()
            .args(["--config", cfg, "--redis", redis, "run"])
            .env_remove("ZOS_PERF_REDIS")
            .env_remove("ZOS_PERF_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon"),
    )
}

/// The processes whose parent is `pid`, with their command names.
fn children(pid: u32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let mut rest = stat[close + 1..].split_whitespace();
        let ppid = rest.nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            if let Ok(child) = stat[..open].trim().parse::<i32>() {
                out.push((child, comm.to_string()));
            }
        }
    }
    out
}

/// Whether process `pid` still exists (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// A Redis address on which nothing answers: a socket path that does not
/// exist, in the test's own directory.
fn nothing_answers(dir: &Path) -> String {
    format!("unix://{}", dir.join("nothing-here.sock").display())
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
    assert!(!out.status.success(), "a non-Redis URL is refused");
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
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    // No wait for the default address: the private server at once.
    let cfg = write_config(dir.path(), &format!("redis_wait = \"0s\"\n{ALL_DISABLED}"));
    let none = nothing_answers(dir.path());
    let child = Daemon(
        daemon_command()
            .args(["--config", &cfg, "run"])
            .env_remove("ZOS_PERF_REDIS")
            .env_remove("ZOS_PERF_CONFIG")
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("ZOS_PERF_DEFAULT_REDIS", &none)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon"),
    );
    let runtime = dir.path().join("zos-perf");
    let socket = runtime.join("redis.sock");
    let url = format!("unix://{}", socket.display());
    wait_for(Duration::from_secs(10), "private redis answers", || {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut conn = client.get_connection().ok()?;
        redis::cmd("PING").query::<String>(&mut conn).ok()
    });
    let servers: Vec<i32> = children(child.0.id())
        .into_iter()
        .filter(|(_, comm)| comm == "redis-server")
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(servers.len(), 1, "one private redis-server: {servers:?}");
    let server = servers[0];
    // Only the daemon's user may reach the directory and the socket.
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&runtime), 0o700, "runtime directory mode");
    assert_eq!(mode(&socket), 0o700, "socket mode");
    // The read-only commands find it too.
    let out = Command::new(BIN)
        .arg("get-all")
        .env_remove("ZOS_PERF_REDIS")
        .env_remove("ZOS_PERF_CONFIG")
        .env("XDG_RUNTIME_DIR", dir.path())
        .env("ZOS_PERF_DEFAULT_REDIS", &none)
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
    wait_for(Duration::from_secs(5), "redis-server gone", || {
        (!alive(server)).then_some(())
    });
    // Nothing kept on disk: no dump, no append-only file, no socket, no
    // records; only the lock file (never removed: see src/instance.rs).
    let left: Vec<_> = std::fs::read_dir(&runtime)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(left, ["daemon.lock"], "left in {}", runtime.display());
}

#[test]
fn with_an_explicit_redis_no_private_server_is_started() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), ALL_DISABLED);
    let child = Daemon(
        daemon_command()
            .args(["--config", &cfg, "--redis", &redis.url(), "run"])
            .env_remove("ZOS_PERF_REDIS")
            .env_remove("ZOS_PERF_CONFIG")
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("ZOS_PERF_DEFAULT_REDIS", nothing_answers(dir.path()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon"),
    );
    // The daemon is up once it is connected to the given Redis.
    let mut conn = redis.conn();
    wait_for(Duration::from_secs(10), "daemon connected", || {
        let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn).ok()?;
        (clients.lines().count() >= 2).then_some(())
    });
    let servers: Vec<_> = children(child.0.id())
        .into_iter()
        .filter(|(_, comm)| comm == "redis-server")
        .collect();
    assert!(servers.is_empty(), "{servers:?}");
    assert!(
        !dir.path().join("zos-perf").exists(),
        "no runtime directory"
    );
    let (ok, _) = stop(child);
    assert!(ok, "exit status 0");
}

#[test]
fn config_file_then_environment_then_flags() {
    // Three real servers, each holding a different cpu-benchmark result:
    // what `get` prints says which address won.
    let servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    for (i, s) in servers.iter().enumerate() {
        let _: () = redis::cmd("SET")
            .arg("perf.cpu-benchmark")
            .arg(format!(
                r#"{{"name":"cpu-benchmark","description":"d","timestamp":{i},"result":{{}}}}"#
            ))
            .query(&mut s.conn())
            .expect("SET");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, server: usize| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("redis = {:?}\n", servers[server].url())).expect("write");
        path.display().to_string()
    };
    let (file_0, file_1) = (file("a.toml", 0), file("b.toml", 1));
    let which = |env: &[(&str, &str)], args: &[&str]| -> i64 {
        let out = Command::new(BIN)
            .env_remove("ZOS_PERF_REDIS")
            .env_remove("ZOS_PERF_CONFIG")
            .env("ZOS_PERF_DEFAULT_REDIS", nothing_answers(dir.path()))
            .env("XDG_RUNTIME_DIR", dir.path())
            .envs(env.iter().copied())
            .args(args)
            .args(["get", "cpu-benchmark"])
            .output()
            .expect("zos-perf get");
        assert!(
            out.status.success(),
            "{env:?} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        v["timestamp"].as_i64().expect("timestamp")
    };
    // The file named by ZOS_PERF_CONFIG.
    assert_eq!(which(&[("ZOS_PERF_CONFIG", &file_0)], &[]), 0);
    // --config beats ZOS_PERF_CONFIG.
    assert_eq!(
        which(&[("ZOS_PERF_CONFIG", &file_0)], &["--config", &file_1]),
        1
    );
    // ZOS_PERF_REDIS beats the file.
    let url_2 = servers[2].url();
    let url_1 = servers[1].url();
    assert_eq!(
        which(
            &[("ZOS_PERF_CONFIG", &file_0), ("ZOS_PERF_REDIS", &url_2)],
            &[]
        ),
        2
    );
    // --redis beats ZOS_PERF_REDIS and the file.
    assert_eq!(
        which(
            &[("ZOS_PERF_CONFIG", &file_0), ("ZOS_PERF_REDIS", &url_2)],
            &["--redis", &url_1]
        ),
        1
    );
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
    // A port held closed refuses: the check fails and the run waits an
    // hour to retry.
    let refused = format!("http://127.0.0.1:{}", common::closed_port());
    let cfg = healthcheck_only(dir.path(), &[refused]);
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
fn sigint_stops_the_daemon_with_exit_0() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), ALL_DISABLED);
    let mut child = start_daemon(&cfg, &redis.url());
    // Up once it is connected (its signal handlers are set before that).
    let mut conn = redis.conn();
    wait_for(Duration::from_secs(10), "daemon connected", || {
        let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn).ok()?;
        (clients.lines().count() >= 2).then_some(())
    });
    let t = Instant::now();
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGINT).expect("SIGINT");
    let status = wait_for(Duration::from_secs(10), "daemon exit", || {
        child.0.try_wait().expect("wait")
    });
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
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

/// `tasks` shows what the daemon that writes perf:status runs, not this
/// command's configuration, and says how that configuration differs: here
/// the daemon runs with iperf off and a slower healthcheck, while `tasks`
/// is run without the daemon's `--config` (defaults: iperf on).
#[test]
fn tasks_shows_the_daemons_settings_and_says_where_the_config_differs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let cfg = write_config(
        dir.path(),
        "[tasks.cpu-benchmark]\nenabled = false\n[tasks.iperf]\nenabled = false\n\
         [tasks.public-ip-validation]\nenabled = false\n\
         [tasks.healthcheck]\nenabled = false\ncron = \"0 0 * * * *\"\ntimeout = \"1m\"\n",
    );
    let _daemon = start_daemon(&cfg, &redis.url());
    wait_for(Duration::from_secs(20), "the daemon's settings", || {
        let raw: Option<String> = redis::cmd("HGET")
            .arg("perf:status")
            .arg("healthcheck")
            .query(&mut redis.conn())
            .ok()?;
        raw.filter(|r| r.contains("\"enabled\":false"))
    });

    let out = Command::new(BIN)
        .args(["--redis", &redis.url(), "tasks"])
        .env_remove("ZOS_PERF_REDIS")
        .env_remove("ZOS_PERF_CONFIG")
        .env("COLUMNS", "200")
        .output()
        .expect("tasks");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line: {text}"))
            .to_string()
    };
    let iperf = line("iperf ");
    assert!(iperf.contains(" no "), "{text}");
    assert!(iperf.ends_with("off: disabled by configuration"), "{text}");
    assert!(line("healthcheck").contains("0 0 * * * *"), "{text}");
    assert!(
        text.contains("The daemon's settings are shown; this command's configuration differs:"),
        "{text}"
    );
    assert!(
        text.contains("  iperf: on here, off in the daemon"),
        "{text}"
    );
    assert!(
        text.contains(
            "  healthcheck: on here, off in the daemon; cron \"0 */15 * * * *\" here, \
             \"0 0 * * * *\" in the daemon; timeout 900s here, 60s in the daemon"
        ),
        "{text}"
    );

    // With the daemon's own configuration: the same settings, no note.
    let out = zos_perf(&["--config", &cfg, "--redis", &redis.url(), "tasks", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    for r in &rows {
        assert_eq!(r["settings_from"], "daemon", "{r}");
        assert_eq!(r["config_differs"], serde_json::json!([]), "{r}");
    }
    let iperf = rows.iter().find(|r| r["name"] == "iperf").expect("iperf");
    assert_eq!(iperf["enabled"], false);
    assert_eq!(iperf["status"]["off_reason"], "disabled by configuration");
}
