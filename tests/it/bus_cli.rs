//! `zos-perf call` and the daemon's bus, end to end through the built binary.

use crate::common;

use std::process::{Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::{KillOnDrop, RedisServer};
use zos_perf::bus;
use zos_perf::bus::BusConfig;

const CPU: &str = r#"{"name":"cpu-benchmark","description":"Measures the performance of the node CPU by reporting the timespent of computing a task in seconds.","timestamp":1700000000,"result":{"single":1.234,"multi":5.678,"threads":4,"workloads":0}}"#;

fn zos_perf(server: &RedisServer, args: &[&str]) -> StdCommand {
    let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_zos-perf"));
    cmd.args([
        "--redis",
        &server.url(),
        "--network",
        "dev",
        "--log",
        "warn",
    ])
    .args(args)
    .env_remove("ZOS_PERF_CONFIG");
    cmd
}

/// Runs `zos-perf call ...` off the async runtime.
async fn call(server: &RedisServer, args: &[&str]) -> Output {
    let mut cmd = zos_perf(server, &[&["call"], args].concat());
    tokio::task::spawn_blocking(move || cmd.output().expect("run zos-perf call"))
        .await
        .expect("join")
}

fn set(server: &RedisServer, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query::<()>(&mut server.conn())
        .expect("SET");
}

/// The bus handler, in process, serving `server` until dropped.
struct Serving(CancellationToken);

impl Serving {
    fn start(server: &RedisServer) -> Serving {
        let token = CancellationToken::new();
        let client = redis::Client::open(server.url()).expect("client");
        tokio::spawn(bus::serve(client, BusConfig::default(), token.clone()));
        Serving(token)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_prints_the_stored_result_as_pretty_json() {
    let server = RedisServer::start();
    set(&server, "perf.cpu-benchmark", CPU);
    let _bus = Serving::start(&server);
    let out = call(&server, &["zos.perf.get", r#"{"Name": "cpu-benchmark"}"#]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert_eq!(printed, serde_json::from_str::<Value>(CPU).expect("JSON"));
    assert!(stdout.contains("\n  \"name\""), "not pretty: {stdout}");

    let out = call(&server, &["zos.perf.get_all"]).await;
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(printed.as_array().map(Vec::len), Some(1));
    // The call's ret lists are its own, and nothing is left behind.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("msgbus.*")
        .query(&mut server.conn())
        .expect("KEYS");
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_prints_an_error_reply_with_its_code_and_fails() {
    let server = RedisServer::start();
    let _bus = Serving::start(&server);
    let out = call(&server, &["zos.perf.get", r#"{"name": "iperf"}"#]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("zos.perf.get: error 7 (result not found): result not found"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_without_a_handler_times_out_and_says_so() {
    let server = RedisServer::start();
    let started = Instant::now();
    let out = call(&server, &["zos.perf.get_all", "--timeout", "300ms"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no reply to zos.perf.get_all within 300ms"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn daemon_serves_the_bus_and_stops_on_sigterm() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("zos-perf.toml");
    // No task runs: this is about the bus alone.
    let tasks: String = zos_perf::tasks::NAMES
        .iter()
        .map(|n| format!("[tasks.{n}]\nenabled = false\n"))
        .collect();
    std::fs::write(
        &config,
        format!("{tasks}[bus]\nenabled = true\nmax_in_flight = 8\n"),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path");
    let daemon = zos_perf(
        &server,
        &[
            "--config",
            config,
            "--farm-id",
            "1",
            "--node-id",
            "1",
            "--kernel-cmdline",
            "/nonexistent",
            "run",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start zos-perf run");
    let mut daemon = KillOnDrop(daemon);

    let out = zos_perf(&server, &["call", "zos.perf.get_all", "--timeout", "10s"])
        .output()
        .expect("run zos-perf call");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(printed, json!([]));

    let pid = nix::unistd::Pid::from_raw(daemon.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = common::wait_for(Duration::from_secs(10), "the daemon to exit", || {
        daemon.0.try_wait().expect("try_wait")
    });
    assert!(status.success(), "{status:?}");
}
