//! The operator's side of the binary (issue 17): exit codes, `tasks
//! --json` and the fitted table, `get` in any case and `--human`,
//! `run-task --timeout` and its progress, log format and colour, `call`
//! with nobody serving, `check`.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::output::{code, stderr};
use common::RedisServer;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");

/// `zos-perf ARGS` with no configuration from the environment; `COLUMNS`
/// unset, so the table is 80 wide (stdout is not a terminal).
fn zos_perf(args: &[&str]) -> Output {
    zos_perf_env(args, &[])
}

fn zos_perf_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("ZOS_PERF_REDIS")
        .env_remove("ZOS_PERF_CONFIG")
        .env_remove("ZOS_PERF_LOG")
        .env_remove("ZOS_PERF_LOG_FORMAT")
        .env_remove("COLUMNS")
        .env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run zos-perf")
}

/// `zos-perf --config CFG --redis REDIS ARGS`.
fn on(cfg: &str, redis: &RedisServer, args: &[&str]) -> Output {
    let url = redis.url();
    let mut all = vec!["--config", cfg, "--redis", &url];
    all.extend_from_slice(args);
    zos_perf(&all)
}

fn healthcheck_only(dir: &Path, services: &[String], backoff_total: &str) -> String {
    let list = services
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let path = dir.join("zos-perf.toml");
    std::fs::write(
        &path,
        format!(
            "[tasks.cpu-benchmark]\nenabled = false\n[tasks.iperf]\nenabled = false\n\
[tasks.public-ip-validation]\nenabled = false\n\
[healthcheck]\ncache_dir = {:?}\nflags_dir = {:?}\nconnect_timeout = \"1s\"\n\
backoff_initial = \"100ms\"\nbackoff_total = {backoff_total:?}\nservices = [{list}]\n",
            dir.display().to_string(),
            dir.join("flags").display().to_string()
        ),
    )
    .expect("write config");
    path.display().to_string()
}

const CPU: &str = r#"{"name":"cpu-benchmark","description":"Measures the CPU.","timestamp":TS,"result":{"multi":16.244,"single":4.162,"threads":2,"workloads":0}}"#;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[test]
fn each_exit_code_means_one_thing() {
    let redis = RedisServer::start();
    let url = redis.url();
    redis.set("perf.cpu-benchmark", CPU.replace("TS", "1700000000"));
    redis.set("perf.iperf", "not a result");

    assert_eq!(
        code(&zos_perf(&["--redis", &url, "get", "cpu-benchmark"])),
        0
    );
    // 1: the stored value is broken.
    let out = zos_perf(&["--redis", &url, "get", "iperf"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("perf.iperf: stored value is not JSON"),
        "{}",
        stderr(&out)
    );
    // 2: usage: a bad flag, a bad configuration, a bad filter.
    assert_eq!(code(&zos_perf(&["--redis", &url, "get", "--nope"])), 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[iperf]\nport = 0\n").expect("write");
    let out = zos_perf(&["--config", cfg.to_str().expect("utf-8"), "tasks"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("iperf.port"), "{}", stderr(&out));
    // 3: not found.
    let out = zos_perf(&["--redis", &url, "get", "healthcheck"]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("healthcheck: result not found"));
    let out = zos_perf(&["--redis", &url, "get", "gpu-benchmark"]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("unknown task \"gpu-benchmark\""));
    let out = zos_perf(&["--redis", &url, "run-task", "gpu-benchmark"]);
    assert_eq!(code(&out), 3);
    // 4: the store is unreachable.
    let gone = RedisServer::not_started();
    for cmd in [&["get", "cpu-benchmark"][..], &["get-all"], &["tasks"]] {
        let out = zos_perf(&[&["--redis", &gone.url()][..], cmd].concat());
        assert_eq!(code(&out), 4, "{cmd:?}: {}", stderr(&out));
    }
    // 5: no reply.
    let out = zos_perf(&[
        "--redis",
        &url,
        "call",
        "zos.perf.get_all",
        "--timeout",
        "200ms",
    ]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    // --help documents them.
    let help = String::from_utf8_lossy(&zos_perf(&["--help"]).stdout).into_owned();
    for line in [
        "0  success",
        "2  usage",
        "3  not found",
        "4  the store (Redis) is unreachable",
        "5  timed out",
    ] {
        assert!(help.contains(line), "--help lacks {line:?}: {help}");
    }
}

#[test]
fn tasks_json_has_every_field_and_the_table_fits_80_columns() {
    let redis = RedisServer::start();
    let url = redis.url();
    let long_error = format!("unable to connect to server: {}", "x".repeat(900));
    redis.hset("perf:status",
        "iperf",
        json!({"cron": "0 0 */6 * * *", "jitter": 0, "exclusive": true, "state": "idle",
                "last_attempt": 1700000000, "last_duration": 1.5, "last_outcome": "failed",
                "last_error": long_error, "next_fire": null, "runs": 3, "failures": 1, "skipped": 0})
        .to_string(),
    );
    redis.hset(
        "perf:status",
        "healthcheck",
        json!({"cron": "0 */15 * * * *", "jitter": 0, "exclusive": false, "state": "idle",
                "last_outcome": "ok", "problems": 6, "runs": 1, "failures": 0, "skipped": 0})
        .to_string(),
    );
    let out = zos_perf(&["--redis", &url, "tasks"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in table.lines() {
        assert!(line.chars().count() <= 80, "wider than 80: {line:?}");
    }
    let iperf = table
        .lines()
        .find(|l| l.starts_with("iperf"))
        .expect("iperf line");
    assert!(
        iperf.contains("failed: unable") && iperf.ends_with('…'),
        "{iperf}"
    );
    let hc = table
        .lines()
        .find(|l| l.starts_with("healthcheck"))
        .expect("line");
    assert!(hc.ends_with("ok, 6 problems"), "{hc}");
    // COLUMNS widens it.
    let wide = zos_perf_env(&["--redis", &url, "tasks"], &[("COLUMNS", "200")]);
    let wide = String::from_utf8_lossy(&wide.stdout).into_owned();
    let iperf = wide.lines().find(|l| l.starts_with("iperf")).expect("line");
    assert_eq!(iperf.chars().count(), 200, "{iperf}");

    let out = zos_perf(&["--redis", &url, "tasks", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rows.len(), zos_perf::tasks::NAMES.len());
    let iperf = rows.iter().find(|r| r["name"] == "iperf").expect("iperf");
    assert_eq!(
        iperf["status"]["last_error"],
        json!(long_error),
        "full error"
    );
    for field in [
        "enabled",
        "cron",
        "jitter",
        "timeout",
        "exclusive",
        "next_fire",
        "last_result",
    ] {
        assert!(iperf.get(field).is_some(), "no {field}");
    }
    for field in [
        "state",
        "last_attempt",
        "last_duration",
        "last_outcome",
        "runs",
        "failures",
        "skipped",
        "problems",
    ] {
        assert!(iperf["status"].get(field).is_some(), "no status.{field}");
    }
    let hc = rows
        .iter()
        .find(|r| r["name"] == "healthcheck")
        .expect("hc");
    assert_eq!(hc["status"]["problems"], 6);
}

#[test]
fn get_takes_any_case_and_keeps_record_order() {
    let redis = RedisServer::start();
    redis.set("perf.cpu-benchmark", CPU.replace("TS", "1700000000"));
    let out = zos_perf(&["--redis", &redis.url(), "get", "CPU-Benchmark"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let at = |k: &str| {
        text.find(&format!("\"{k}\""))
            .unwrap_or_else(|| panic!("{k}: {text}"))
    };
    assert!(at("name") < at("description"), "{text}");
    assert!(at("description") < at("timestamp"), "{text}");
    assert!(at("timestamp") < at("result"), "{text}");
    let all = zos_perf(&["--redis", &redis.url(), "get-all"]);
    let all = String::from_utf8_lossy(&all.stdout).into_owned();
    assert!(all.find("\"name\"") < all.find("\"description\""), "{all}");
}

#[test]
fn get_human_renders_each_task_for_a_person() {
    let redis = RedisServer::start();
    let three_hours_ago = now() - 3 * 3600 - 60;
    let record = |name: &str, result: Value| {
        json!({"name": name, "description": "d", "timestamp": three_hours_ago, "result": result})
            .to_string()
    };
    redis.set(
        "perf.cpu-benchmark",
        CPU.replace("TS", &three_hours_ago.to_string()),
    );
    redis.set("perf.healthcheck",
        record(
            "healthcheck",
            json!({
        "cache": [], "network": ["http://127.0.0.1:1/ is not reachable: refused", "https://example.invalid/ is not reachable"]}),
        ),
    );
    redis.set("perf.iperf",
        record(
            "iperf",
            json!([
        {"download_speed": 941000000.0, "upload_speed": 470500000.0, "error": "", "node_id": 10, "node_ip": "198.51.100.2", "test_type": "tcp", "cpu_report": {}},
        {"download_speed": 0.0, "upload_speed": 0.0, "error": "unable to connect to server", "node_id": 11, "node_ip": "203.0.113.7", "test_type": "udp", "cpu_report": {}},
        {"download_speed": 2000000.0, "upload_speed": 1000000.0, "error": "", "server_host": "iperf.example.org", "server_ip": "203.0.113.9", "server_port": 5201, "test_type": "tcp", "cpu_report": {}}]),
        ),
    );
    redis.set("perf.public-ip-validation",
        record(
            "public-ip-validation",
            json!({
        "203.0.113.10/24": {"state": "valid", "reason": ""},
        "203.0.113.11/24": {"state": "invalid", "reason": "public ip or gateway data are not valid"}}),
        ),
    );
    let human = |name: &str| {
        let out = zos_perf(&["--redis", &redis.url(), "get", name, "--human"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cpu = human("cpu-benchmark");
    assert!(cpu.contains("(3 h ago)"), "{cpu}");
    assert!(
        cpu.contains("single thread  4.162 s") && cpu.contains("16.244 s on 2 threads"),
        "{cpu}"
    );
    let hc = human("healthcheck");
    assert!(
        hc.contains("  2 problems\n") && hc.contains("  cache: ok\n"),
        "{hc}"
    );
    assert!(
        hc.contains("    - http://127.0.0.1:1/ is not reachable: refused\n"),
        "{hc}"
    );
    let iperf = human("iperf");
    assert!(
        iperf.contains("node 10 (198.51.100.2) tcp: down 941.0 Mbit/s, up 470.5 Mbit/s"),
        "{iperf}"
    );
    assert!(
        iperf.contains("node 11 (203.0.113.7) udp: error: unable to connect to server"),
        "{iperf}"
    );
    assert!(
        iperf.contains("server iperf.example.org (203.0.113.9:5201) tcp: down 2.0 Mbit/s"),
        "{iperf}"
    );
    let ips = human("public-ip-validation");
    assert!(ips.contains("  1 problem\n"), "{ips}");
    assert!(ips.contains("  - 203.0.113.10/24  valid\n"), "{ips}");
    assert!(
        ips.contains("  - 203.0.113.11/24  invalid: public ip or gateway data are not valid\n"),
        "{ips}"
    );
}

#[test]
fn run_task_that_finds_problems_says_so_in_status_and_tasks() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // A loopback port that refuses: one problem, no retries.
    let cfg = healthcheck_only(dir.path(), &[refused_url()], "0s");
    let out = on(&cfg, &redis, &["run-task", "HealthCheck"]);
    assert_eq!(code(&out), 0, "the run completed: {}", stderr(&out));
    let status: String = redis::cmd("HGET")
        .arg("perf:status")
        .arg("healthcheck")
        .query(&mut redis.conn())
        .expect("HGET");
    let status: Value = serde_json::from_str(&status).expect("JSON");
    assert_eq!(status["last_outcome"], "ok");
    assert_eq!(status["problems"], 1);
    let out = on(&cfg, &redis, &["tasks"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = table
        .lines()
        .find(|l| l.starts_with("healthcheck"))
        .expect("line");
    assert!(line.ends_with("ok, 1 problem"), "{line}");
}

#[test]
fn run_task_timeout_exits_5_and_verbose_shows_each_attempt() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Refused, retried for ten minutes: only --timeout ends it.
    let cfg = healthcheck_only(dir.path(), &[refused_url()], "10m");
    let out = on(
        &cfg,
        &redis,
        &[
            "--log",
            "off",
            "run-task",
            "healthcheck",
            "--timeout",
            "2s",
            "--verbose",
        ],
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 5, "{err}");
    assert!(
        err.contains("healthcheck: timeout: timed out after 2s"),
        "{err}"
    );
    assert!(
        err.contains("zos-perf: healthcheck: network check: attempt 1"),
        "{err}"
    );
    assert!(
        err.contains("zos-perf: healthcheck: network check: attempt 2"),
        "{err}"
    );
    // Not a terminal and no --verbose: no progress.
    let out = on(
        &cfg,
        &redis,
        &["--log", "off", "run-task", "healthcheck", "--timeout", "1s"],
    );
    assert_eq!(code(&out), 5);
    assert!(!stderr(&out).contains("attempt"), "{}", stderr(&out));
    let out = zos_perf(&[
        "--redis",
        &redis.url(),
        "run-task",
        "healthcheck",
        "--timeout",
        "0s",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[test]
fn logs_have_no_colour_in_a_file_and_json_lines_parse() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = healthcheck_only(dir.path(), &[refused_url()], "0s");
    let out = on(&cfg, &redis, &["run-task", "healthcheck"]);
    let log = stderr(&out);
    assert!(log.contains("run finished"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "escape codes in a log that is not a terminal: {log:?}"
    );

    for (args, env) in [
        (vec!["--log-format", "json"], vec![]),
        (vec![], vec![("ZOS_PERF_LOG_FORMAT", "json")]),
    ] {
        let out = zos_perf_env(
            &[
                &["--config", &cfg, "--redis", &redis.url()][..],
                &args,
                &["run-task", "healthcheck"],
            ]
            .concat(),
            &env,
        );
        let log = stderr(&out);
        let lines: Vec<Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        let done = lines
            .iter()
            .find(|l| l["message"] == "run finished")
            .unwrap_or_else(|| panic!("no run finished: {log}"));
        assert_eq!(done["problems"], 1);
        assert_eq!(done["level"], "INFO");
    }
    // In the file too, with `log`.
    let text = std::fs::read_to_string(&cfg).expect("read");
    std::fs::write(
        &cfg,
        format!("log = \"warn\"\nlog_format = \"json\"\n{text}"),
    )
    .expect("write");
    let out = on(&cfg, &redis, &["run-task", "healthcheck"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for line in stderr(&out).lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert_ne!(v["level"], "INFO", "log = warn in the file: {line}");
    }
}

#[test]
fn a_bad_log_filter_is_a_usage_error_naming_it() {
    let out = zos_perf(&["--log", "info,verbose", "tasks"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("\"verbose\""), "{}", stderr(&out));
    let out = zos_perf_env(&["tasks"], &[("ZOS_PERF_LOG", "zos_perf=loud")]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("\"zos_perf=loud\""),
        "{}",
        stderr(&out)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "log = \"verbose\"\n").expect("write");
    let out = zos_perf(&["--config", cfg.to_str().expect("utf-8"), "tasks"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("log (configuration file)"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&cfg, "log_format = \"xml\"\n").expect("write");
    let out = zos_perf(&["--config", cfg.to_str().expect("utf-8"), "tasks"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("log_format"), "{}", stderr(&out));
}

#[test]
fn call_nobody_serves_times_out_with_5_and_leaves_no_request() {
    let redis = RedisServer::start();
    let out = zos_perf(&[
        "--redis",
        &redis.url(),
        "call",
        "zos.perf.nope",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no reply to zos.perf.nope within 300ms"),
        "{err}"
    );
    assert!(
        err.contains("zos-perf serves only zos.perf.get and zos.perf.get_all"),
        "{err}"
    );
    assert!(!err.contains("is `zos-perf run` serving"), "{err}");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("msgbus.*")
        .query(&mut redis.conn())
        .expect("KEYS");
    assert!(keys.is_empty(), "left behind: {keys:?}");
    // A command zos-perf serves: the hint asks whether it runs.
    let out = zos_perf(&[
        "--redis",
        &redis.url(),
        "call",
        "zos.perf.get_all",
        "--timeout",
        "200ms",
    ]);
    assert_eq!(code(&out), 5);
    assert!(
        stderr(&out).contains("is `zos-perf run` serving the bus"),
        "{}",
        stderr(&out)
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("msgbus.*")
        .query(&mut redis.conn())
        .expect("KEYS");
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[test]
fn check_here_and_without_iperf3() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            // No KVM is assumed of a CI machine: the VM test is off.
            "[tasks.provisiontest]\nenabled = false\n[healthcheck]\ncache_dir = {:?}\nflags_dir = {:?}\n",
            dir.path().display().to_string(),
            dir.path().join("flags").display().to_string()
        ),
    )
    .expect("write");
    let cfg = cfg.to_str().expect("utf-8");
    let out = zos_perf(&["--config", cfg, "--redis", &redis.url(), "check"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    for what in [
        "redis",
        "iperf3",
        "ping",
        "capabilities",
        "flags dir",
        "cache dir",
        "netns",
        "kvm",
        "hypervisor",
        "clock",
    ] {
        assert!(
            text.lines().any(
                |l| l.split_whitespace().nth(1) == Some(what.split(' ').next().unwrap_or(what))
            ),
            "no line for {what}: {text}"
        );
    }
    assert!(text.contains("ok       redis         redis "), "{text}");
    assert!(text.contains("ok       iperf3 "), "{text}");

    // PATH with ping but no iperf3.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let ping = common::sh(&["sh", "-c", "command -v ping"]);
    std::os::unix::fs::symlink(ping.trim(), bin.join("ping")).expect("symlink");
    let path = bin.display().to_string();
    let out = zos_perf_env(
        &["--config", cfg, "--redis", &redis.url(), "check"],
        &[("PATH", &path)],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 1, "{text}");
    assert!(
        text.contains("missing  iperf3        iperf3 not found in PATH  [iperf]"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("missing for an enabled task: iperf3"),
        "{}",
        stderr(&out)
    );
    let out = zos_perf_env(
        &["--config", cfg, "--redis", &redis.url(), "check", "--json"],
        &[("PATH", &path)],
    );
    let found: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let iperf3 = found
        .iter()
        .find(|f| f["what"] == "iperf3")
        .expect("iperf3");
    assert_eq!(iperf3["state"], "missing");

    // With iperf disabled, nothing enabled needs it.
    let text = std::fs::read_to_string(cfg).expect("read");
    std::fs::write(cfg, format!("{text}[tasks.iperf]\nenabled = false\n")).expect("write");
    let out = zos_perf_env(
        &["--config", cfg, "--redis", &redis.url(), "check"],
        &[("PATH", &path)],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains("info     iperf3 "), "{text}");
}

/// A loopback URL on which connections are refused, and stay refused (the
/// port is held by a socket that never listens): nothing is assumed of any
/// fixed port.
fn refused_url() -> String {
    format!("http://127.0.0.1:{}", common::closed_port())
}
