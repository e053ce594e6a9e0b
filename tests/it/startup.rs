//! What a start hands on and leaves behind, on the shipped binary: the
//! grid secret never reaches a child's environment (nor stays in the
//! daemon's own), a systemd credential is a secret source and one that
//! others could have written is refused, and a start that fails (a bad
//! secret) leaves nothing running: no private redis-server, no daemon
//! lease, no task run.
//!
//! Each test has its own temporary runtime directory (`XDG_RUNTIME_DIR`),
//! its own Redis and no fixed port; every process it starts is killed if
//! it fails half-way.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use common::daemon::{output_within, recorded_pid, write_config};
use common::rmbgrid::{MNEMONIC_A, MNEMONIC_B};
use common::{closed_port, die_with_parent, only_task, wait_for, KillOnDrop, RedisServer};
use zos_perf::rmb::{Identity, KeyType};

const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");

/// `zos-perf` with a clean environment: runtime directory `dir`, nothing
/// answering on the default Redis address, no secret.
fn zos_perf(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--kernel-cmdline")
        .arg("/dev/null")
        .env_remove("ZOS_PERF_REDIS")
        .env_remove("ZOS_PERF_CONFIG")
        .env_remove("ZOS_PERF_LOG")
        .env_remove("ZOS_PERF_MNEMONIC")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("XDG_RUNTIME_DIR", dir)
        .env(
            "ZOS_PERF_DEFAULT_REDIS",
            format!("redis://127.0.0.1:{}", closed_port()),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// A config serving over the relay (nothing listens on its relay or chain
/// address) with only `task` enabled, `extra` appended.
fn relay_config(dir: &Path, task: &str, extra: &str) -> PathBuf {
    let text = format!(
        "{}[bus.relay]\nenabled = true\n[rmb]\nrelays = [\"ws://127.0.0.1:{}\"]\n\
         chain_urls = [\"ws://127.0.0.1:{}\"]\n{extra}",
        only_task(task),
        closed_port(),
        closed_port(),
    );
    write_config(dir, &text)
}

fn runtime(dir: &Path) -> PathBuf {
    dir.join("zos-perf")
}

/// The processes whose command line names `needle` (a socket path).
fn processes_naming(needle: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

fn environ(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    String::from_utf8_lossy(&raw).replace('\0', "\n")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// The mnemonic out of the environment (issue 25, item 10)

#[test]
fn the_mnemonic_reaches_no_child_and_leaves_the_daemons_own_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The cpu-benchmark's workloads command copies the environment it was
    // started with (its /proc/PID/environ) where the test can read it.
    // (redis-server rewrites that memory for its process title: it would
    // show nothing either way.)
    let copy = dir.path().join("child-environ");
    let script = format!(
        "cat /proc/$$/environ > {}.part && mv {0}.part {0}; echo 1",
        copy.display()
    );
    let extra = format!("[cpu_benchmark]\nworkloads_command = [\"sh\", \"-c\", {script:?}]\n");
    let config = relay_config(dir.path(), "cpu-benchmark", &extra);
    let mut daemon = KillOnDrop(
        die_with_parent(&mut zos_perf(dir.path()), Signal::SIGKILL)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("ZOS_PERF_MNEMONIC", MNEMONIC_A)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start zos-perf run"),
    );
    let runtime = runtime(dir.path());
    // The daemon started (the relay transport needs the secret), with its
    // private redis-server, and ran the benchmark: its child inherited an
    // environment without the secret.
    wait_for(Duration::from_secs(20), "the private redis-server", || {
        recorded_pid(&runtime)
    });
    let child_env = wait_for(Duration::from_secs(120), "the workloads command", || {
        std::fs::read(&copy).ok()
    });
    let child_env = String::from_utf8_lossy(&child_env).replace('\0', "\n");
    assert!(child_env.contains("XDG_RUNTIME_DIR="), "{child_env}");
    assert!(!child_env.contains("ZOS_PERF_MNEMONIC"), "{child_env}");
    assert!(!child_env.contains("obey lake"), "{child_env}");
    // What the daemon started with is overwritten too.
    let own = environ(daemon.0.id() as i32);
    assert!(own.contains("XDG_RUNTIME_DIR="), "{own}");
    assert!(!own.contains("obey lake"), "{own}");
    kill(Pid::from_raw(daemon.0.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let child = &mut daemon.0;
    let status = wait_for(Duration::from_secs(10), "the daemon to exit", || {
        child.try_wait().expect("wait")
    });
    assert!(status.success(), "{status}");
}

// ---------------------------------------------------------------------------
// systemd credentials (issue 25, item 10)

/// A credentials directory as systemd makes one (ours, mode 700) holding
/// `secret` as the `mnemonic` credential, mode 400.
fn credentials(secret: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let file = dir.path().join("mnemonic");
    std::fs::write(&file, secret).expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    dir
}

/// `identity --json` with the chain unreachable: the accounts are printed
/// all the same (exit 8, the chain's code).
fn identity(dir: &Path, credentials: &Path) -> Output {
    output_within(
        zos_perf(dir)
            .args(["identity", "--json", "--chain"])
            .arg(format!("ws://127.0.0.1:{}", closed_port()))
            .env("CREDENTIALS_DIRECTORY", credentials)
            // The credential comes before the environment.
            .env("ZOS_PERF_MNEMONIC", MNEMONIC_B),
        Duration::from_secs(30),
    )
}

#[test]
fn the_secret_comes_from_a_systemd_credential_and_one_others_can_write_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = credentials(MNEMONIC_A);
    let out = identity(dir.path(), creds.path());
    let shown: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    let me = Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).expect("identity");
    assert_eq!(
        shown["sr25519"]["account"],
        hex::encode(me.sr25519_public()),
        "{shown}"
    );

    let file = creds.path().join("mnemonic");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o622)).expect("chmod");
    let out = identity(dir.path(), creds.path());
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("writable by group or others"),
        "{}",
        stderr(&out)
    );

    // A link out of the credentials directory, to a file of ours.
    let elsewhere = credentials(MNEMONIC_A);
    std::fs::remove_file(&file).expect("rm");
    std::os::unix::fs::symlink(elsewhere.path().join("mnemonic"), &file).expect("symlink");
    let out = identity(dir.path(), creds.path());
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("symbolic link out of the directory"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("obey lake"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// A failed start stops what started (issue 25, item 11)

fn bad_start(cmd: &mut Command) -> String {
    let started = Instant::now();
    let out = output_within(
        cmd.env("ZOS_PERF_MNEMONIC", "not a mnemonic at all"),
        Duration::from_secs(30),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(10), "{err}");
    assert!(err.contains("bus.relay.enabled"), "{err}");
    assert!(err.contains("mnemonic"), "{err}");
    assert!(!err.contains("not a mnemonic at all"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "{err}");
    err
}

#[test]
fn a_start_with_a_bad_mnemonic_fails_and_leaves_nothing_running() {
    // On a given Redis: no lease left, nothing run or written.
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let service = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let extra = format!(
        "[healthcheck]\ncache_dir = {:?}\nflags_dir = {:?}\nconnect_timeout = \"1s\"\n\
         backoff_total = \"0s\"\nservices = [\"http://{}\"]\n",
        dir.path().display().to_string(),
        dir.path().join("flags").display().to_string(),
        service.local_addr().expect("address"),
    );
    let config = relay_config(dir.path(), "healthcheck", &extra);
    bad_start(zos_perf(dir.path()).arg("--config").arg(&config).args([
        "--redis",
        &redis.url(),
        "run",
    ]));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut redis.conn())
        .expect("KEYS");
    assert!(keys.is_empty(), "left in redis: {keys:?}");

    // With the private redis-server: none left running, nothing recorded.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = relay_config(dir.path(), "none", "");
    bad_start(zos_perf(dir.path()).arg("--config").arg(&config).arg("run"));
    let socket = runtime(dir.path()).join("redis.sock");
    let left = processes_naming(&socket.display().to_string());
    for pid in &left {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    assert!(left.is_empty(), "redis-server left running: {left:?}");
    assert_eq!(recorded_pid(&runtime(dir.path())), None);
}

#[test]
fn a_start_refused_after_the_private_redis_started_stops_it_again() {
    // A daemon killed outright leaves its private redis-server running.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("zos-perf.toml");
    std::fs::write(&config, only_task("none")).expect("write config");
    let mut first = KillOnDrop(
        die_with_parent(&mut zos_perf(dir.path()), Signal::SIGKILL)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start zos-perf run"),
    );
    let runtime = runtime(dir.path());
    let url = format!("unix://{}", runtime.join("redis.sock").display());
    let lease = |conn: &mut redis::Connection| -> Option<String> {
        redis::cmd("GET")
            .arg("perf:lease:daemon")
            .query(conn)
            .ok()
            .flatten()
    };
    let server = wait_for(Duration::from_secs(20), "the first daemon's lease", || {
        let pid = recorded_pid(&runtime)?;
        let mut conn = redis::Client::open(url.as_str())
            .ok()?
            .get_connection()
            .ok()?;
        lease(&mut conn).map(|_| pid)
    });
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("wait");
    // Meanwhile another daemon, on another host, took that Redis.
    let mut conn = redis::Client::open(url.as_str())
        .expect("url")
        .get_connection()
        .expect("connect");
    let other = serde_json::json!({"pid": 4242, "host": "other-node", "what": "daemon",
        "since": 1, "token": "feedbeef"});
    redis::cmd("SET")
        .arg("perf:lease:daemon")
        .arg(other.to_string())
        .arg("PX")
        .arg(30_000)
        .query::<()>(&mut conn)
        .expect("SET");
    drop(conn);
    // The next daemon adopts the server, is refused the lease, and stops
    // the server it had taken on before it exits.
    let out = output_within(
        zos_perf(dir.path()).arg("--config").arg(&config).arg("run"),
        Duration::from_secs(30),
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("pid 4242 on other-node"), "{err}");
    assert!(err.contains("adopting"), "{err}");
    // Gone, or a zombie until whoever inherited it reaps it.
    wait_for(
        Duration::from_secs(5),
        "the private redis-server to go",
        || {
            let stat = std::fs::read_to_string(format!("/proc/{server}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
            (state.is_empty() || state.starts_with('Z')).then_some(())
        },
    );
    assert_eq!(recorded_pid(&runtime), None, "{err}");
}
