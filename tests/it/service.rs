//! The daemon and its service manager: `READY=1` once the store and the bus
//! are up, `WATCHDOG=1` at half the interval systemd asks for, `STOPPING=1`
//! on SIGTERM, `RELOADING=1` then `READY=1` on SIGHUP. The test plays systemd: a unix datagram socket in a private
//! directory, named to the daemon by `NOTIFY_SOCKET`, as systemd does.

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{write_config, Daemon, BIN};
use common::observe::ALL_DISABLED;
use common::{wait_for, RedisServer};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The next notification, as the lines of one datagram.
fn next(socket: &UnixDatagram) -> Vec<String> {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the read timeout");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_daemon_says_ready_once_serving_pings_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), ALL_DISABLED);
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    let redis = RedisServer::start();

    let started = Instant::now();
    let mut daemon = Daemon::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(["--redis", &redis.url(), "run"])
            .env("NOTIFY_SOCKET", &notify)
            // 1 s: pings every 500 ms. No WATCHDOG_PID: any pid is accepted.
            .env("WATCHDOG_USEC", "1000000")
            .env_remove("WATCHDOG_PID")
            .env_remove("ZOS_PERF_CONFIG"),
    );

    let first = next(&socket);
    assert!(first.contains(&"READY=1".to_string()), "{first:?}");
    // Ready means serving: a bus request is answered at once.
    let out = Command::new(BIN)
        .args(["--redis", &redis.url(), "call", "zos.perf.get_all"])
        .args(["--timeout", "5s"])
        .env_remove("ZOS_PERF_CONFIG")
        .output()
        .expect("zos-perf call");
    assert!(
        out.status.success(),
        "bus not serving after READY=1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");

    // Two watchdog pings, about 500 ms apart.
    let mut pings = Vec::new();
    while pings.len() < 2 {
        if next(&socket).contains(&"WATCHDOG=1".to_string()) {
            pings.push(Instant::now());
        }
    }
    let gap = pings[1] - pings[0];
    assert!(
        gap >= Duration::from_millis(300) && gap <= Duration::from_millis(900),
        "watchdog pings {gap:?} apart for a 1 s watchdog"
    );

    kill(Pid::from_raw(daemon.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let stopping = loop {
        let msg = next(&socket);
        if !msg.iter().all(|l| l == "WATCHDOG=1") {
            break msg;
        }
    };
    assert!(stopping.contains(&"STOPPING=1".to_string()), "{stopping:?}");
    let status = wait_for(Duration::from_secs(10), "daemon exit", || {
        daemon.child.try_wait().expect("wait")
    });
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// The next notification that is not a watchdog ping.
fn next_state(socket: &UnixDatagram) -> Vec<String> {
    loop {
        let msg = next(socket);
        if !msg.iter().all(|l| l == "WATCHDOG=1") {
            return msg;
        }
    }
}

#[test]
fn on_sighup_the_daemon_says_reloading_then_ready_and_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), ALL_DISABLED);
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    let redis = RedisServer::start();
    let mut daemon = Daemon::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(["--redis", &redis.url(), "run"])
            .env("NOTIFY_SOCKET", &notify)
            .env_remove("WATCHDOG_USEC")
            .env_remove("ZOS_PERF_CONFIG"),
    );
    assert!(next_state(&socket).contains(&"READY=1".to_string()));
    let pid = Pid::from_raw(daemon.child.id() as i32);
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    let reloading = next_state(&socket);
    assert!(
        reloading.contains(&"RELOADING=1".to_string()),
        "{reloading:?}"
    );
    let ready = next_state(&socket);
    assert!(ready.contains(&"READY=1".to_string()), "{ready:?}");
    assert!(
        daemon.child.try_wait().expect("wait").is_none(),
        "exited on SIGHUP"
    );

    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    assert!(next_state(&socket).contains(&"STOPPING=1".to_string()));
    let status = wait_for(Duration::from_secs(10), "daemon exit", || {
        daemon.child.try_wait().expect("wait")
    });
    assert!(status.success(), "{status}");
}

#[test]
fn without_a_notify_socket_the_daemon_runs_and_stops_as_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), ALL_DISABLED);
    let redis = RedisServer::start();
    let mut daemon = Daemon::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(["--redis", &redis.url(), "run"])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("ZOS_PERF_CONFIG"),
    );
    // Serving: the bus answers.
    wait_for(Duration::from_secs(10), "the bus to answer", || {
        let out = Command::new(BIN)
            .args(["--redis", &redis.url(), "call", "zos.perf.get_all"])
            .args(["--timeout", "1s"])
            .env_remove("ZOS_PERF_CONFIG")
            .output()
            .expect("zos-perf call");
        out.status.success().then_some(())
    });
    let (status, _) = daemon.signal(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let err = daemon.log();
    assert!(
        !err.contains("NOTIFY_SOCKET"),
        "complained about a service manager that is not there: {err}"
    );
}

/// The zinit service file of docs/deploy/zinit.yaml, run as zinit runs it:
/// its `exec` line starts the daemon and its `test` line succeeds once the
/// daemon serves (the node's Redis socket swapped for a test one).
#[test]
fn the_zinit_service_file_starts_a_daemon_its_test_line_sees_serving() {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/deploy/zinit.yaml"
    ))
    .expect("docs/deploy/zinit.yaml");
    let redis = RedisServer::start();
    let line = |key: &str| -> Vec<String> {
        let value = yaml
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("zinit.yaml has no {key}: line"));
        value
            .split_whitespace()
            .map(|w| match w {
                "/usr/bin/zos-perf" => BIN.to_string(),
                "unix:///var/run/redis.sock" => redis.url(),
                other => other.to_string(),
            })
            .collect()
    };
    let exec = line("exec");
    let test = line("test");
    assert_eq!(exec[0], BIN, "exec runs the installed binary");
    assert_eq!(exec.last().map(String::as_str), Some("run"));

    // Before the daemon runs, the test line fails: zinit would keep waiting.
    let probe = || {
        Command::new(&test[0])
            .args(&test[1..])
            .env_remove("ZOS_PERF_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run the test line")
            .success()
    };
    assert!(!probe(), "the test line passes with no daemon running");

    // Only the bus matters here: no task runs at start.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), ALL_DISABLED);
    let mut daemon = Daemon::spawn(
        Command::new(&exec[0])
            .args(&exec[1..])
            .env("ZOS_PERF_CONFIG", &cfg),
    );
    wait_for(
        Duration::from_secs(15),
        "the zinit test line to pass",
        || probe().then_some(()),
    );
    let (status, _) = daemon.signal(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.success(), "{status}");
}
