//! `zos-perf check`: what the enabled tasks need from this machine, one
//! line per requirement (ok / missing / info) with the tasks it affects.
//! Exits 0 only when nothing an enabled task needs is missing.
//!
//! Every probe is harmless: a file created and removed in each directory,
//! a network namespace created by a short-lived thread that exits with it,
//! one ping to 127.0.0.1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use zos_perf::config::Config;
use zos_perf::monitor;
use zos_perf::node_redis::keys;
use zos_perf::tasks::provisiontest::Accel;
use zos_perf::tasks::{
    self, CPU_BENCHMARK, HEALTHCHECK, IPERF, PROVISIONTEST, PUBLIC_IP_VALIDATION,
};

use super::error::{CliError, Exit};
use super::reader_url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    Missing,
    /// Reported, not required.
    Info,
}

/// One requirement and what became of it.
#[derive(Debug, Serialize)]
pub struct Finding {
    pub what: &'static str,
    pub state: State,
    pub detail: String,
    /// Task names; "every task" is all of them.
    pub affects: Vec<&'static str>,
}

fn finding(what: &'static str, r: Result<String, String>, affects: &[&'static str]) -> Finding {
    let (state, detail) = match r {
        Ok(d) => (State::Ok, d),
        Err(d) => (State::Missing, d),
    };
    Finding {
        what,
        state,
        detail,
        affects: affects.to_vec(),
    }
}

/// Runs every probe and prints the findings.
pub async fn run(config: &Config, default_redis: &str, as_json: bool) -> Result<(), CliError> {
    let registered = monitor::register(
        config,
        tasks::registry(&config.sections, &config.grid_context()),
    )
    .map_err(|e| CliError::new(Exit::Usage, e))?;
    let enabled: Vec<&str> = monitor::describe(&registered)
        .into_iter()
        .filter(|(_, s)| s.enabled)
        .map(|(n, _)| n)
        .collect();

    let url = reader_url(config, default_redis).await?;
    let (redis, clock) = redis_probe(&url).await;
    let mut found = vec![finding("redis", redis, &tasks::NAMES)];
    let iperf3 = &config.sections.iperf.iperf3;
    found.push(finding("iperf3", find_program(iperf3), &[IPERF]));
    found.push(finding("ping", ping().await, &[PUBLIC_IP_VALIDATION]));
    found.push(finding(
        "capabilities",
        tasks::public_ip::netns::check_privileges()
            .map(|()| "CAP_NET_ADMIN and CAP_SYS_ADMIN".to_string())
            .map_err(|e| format!("{e:#}")),
        &[PUBLIC_IP_VALIDATION],
    ));
    let hc = &config.sections.healthcheck;
    found.push(finding(
        "flags dir",
        writable(&hc.flags_dir),
        &[HEALTHCHECK],
    ));
    found.push(finding(
        "cache dir",
        writable(&hc.cache_dir),
        &[HEALTHCHECK],
    ));
    found.push(finding("netns", netns(), &[PUBLIC_IP_VALIDATION]));
    // Only a provisiontest that asks for KVM needs it; with tcg it is
    // reported.
    let kvm_users: &[&'static str] = match config.sections.provisiontest.accel {
        Accel::Kvm => &[PROVISIONTEST],
        Accel::Tcg => &[],
    };
    found.push(finding("kvm", kvm(), kvm_users));
    found.push(finding(
        "vm flags dir",
        writable(&config.sections.provisiontest.flags_dir),
        &[PROVISIONTEST],
    ));
    found.push(Finding {
        what: "hypervisor",
        state: State::Info,
        detail: hypervisor(),
        affects: vec![PROVISIONTEST, CPU_BENCHMARK],
    });
    found.push(Finding {
        what: "clock",
        state: State::Info,
        detail: clock,
        affects: tasks::NAMES.to_vec(),
    });

    // A requirement counts only when a task it affects is enabled.
    let mut failing = Vec::new();
    for f in &mut found {
        let needed = f.affects.iter().any(|t| enabled.contains(t));
        if f.state == State::Missing && !needed {
            f.state = State::Info;
            f.detail.push_str(" (no enabled task needs it)");
        }
        if f.state == State::Missing {
            failing.push(f.what);
        }
    }
    if as_json {
        let text = serde_json::to_string_pretty(&found).map_err(anyhow::Error::from)?;
        outln!("{text}");
    } else {
        for f in &found {
            let state = match f.state {
                State::Ok => "ok",
                State::Missing => "missing",
                State::Info => "info",
            };
            let affects = if f.affects.len() == tasks::NAMES.len() {
                "every task".to_string()
            } else {
                f.affects.join(", ")
            };
            outln!("{state:<8} {:<13} {}  [{affects}]", f.what, f.detail);
        }
    }
    if failing.is_empty() {
        Ok(())
    } else {
        Err(CliError::msg(
            Exit::Failure,
            format!("missing for an enabled task: {}", failing.join(", ")),
        ))
    }
}

/// Redis and its version, and the `clock` field of `perf:status` if a
/// daemon recorded one.
async fn redis_probe(url: &str) -> (Result<String, String>, String) {
    let mut conn = match zos_perf::node_redis::connect_once(url).await {
        Ok(c) => c,
        Err(e) => return (Err(format!("{e:#}")), "unknown (no redis)".into()),
    };
    let info: Result<String, _> = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await;
    let version = match info {
        Ok(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| format!("redis {} at {url}", v.trim()))
            .unwrap_or_else(|| format!("answers at {url}, version unknown")),
        Err(e) => return (Err(format!("{url}: {e}")), "unknown".into()),
    };
    let clock: Option<String> = redis::cmd("HGET")
        .arg(keys::STATUS)
        .arg("clock")
        .query_async(&mut conn)
        .await
        .ok()
        .flatten();
    let clock = match clock {
        Some(c) => format!(
            "skew as the daemon measured it: {}",
            super::ellipsize(&c, 200)
        ),
        None => "skew unknown (the daemon has not measured it)".into(),
    };
    (Ok(version), clock)
}

/// `program` as the task would run it: a path, or found in PATH.
fn find_program(program: &Path) -> Result<String, String> {
    let runnable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return if runnable(program) {
            Ok(program.display().to_string())
        } else {
            Err(format!("{} is not an executable file", program.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| runnable(p))
        .map(|p| p.display().to_string())
        .ok_or_else(|| format!("{} not found in PATH", program.display()))
}

/// `ping -c 1 -W 1 127.0.0.1`: the program exists and may send.
async fn ping() -> Result<String, String> {
    let run = tokio::process::Command::new("ping")
        .args(["-c", "1", "-W", "1", "127.0.0.1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(5), run).await {
        Err(_) => Err("ping 127.0.0.1 did not finish within 5 s".into()),
        Ok(Err(e)) => Err(format!("cannot run ping: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok("sends (ping 127.0.0.1 answered)".into()),
        Ok(Ok(out)) => Err(format!(
            "ping 127.0.0.1 failed: {}",
            super::ellipsize(String::from_utf8_lossy(&out.stderr).trim(), 200)
        )),
    }
}

/// A file can be created in `dir` (or `dir` can be created, for a
/// directory the task makes itself).
fn writable(dir: &Path) -> Result<String, String> {
    let mut probe_dir: PathBuf = dir.to_path_buf();
    while !probe_dir.exists() {
        match probe_dir.parent() {
            Some(p) => probe_dir = p.to_path_buf(),
            None => return Err(format!("{}: no existing parent", dir.display())),
        }
    }
    let probe = probe_dir.join(format!(".zos-perf-check-{}", rand::random::<u64>()));
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match made {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            if probe_dir == dir {
                Ok(format!("{} is writable", dir.display()))
            } else {
                Ok(format!(
                    "{} will be created in {}",
                    dir.display(),
                    probe_dir.display()
                ))
            }
        }
        Err(e) => Err(format!("{}: cannot write: {e}", probe_dir.display())),
    }
}

/// A thread of our own moves into a new network namespace and exits: the
/// namespace goes with it.
fn netns() -> Result<String, String> {
    std::thread::spawn(|| nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET))
        .join()
        .map_err(|_| "the probe thread panicked".to_string())?
        .map(|()| "a network namespace can be created".to_string())
        .map_err(|e| format!("cannot create a network namespace: {e}"))
}

/// /dev/kvm exists and opens for reading and writing.
fn kvm() -> Result<String, String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => Ok("/dev/kvm opens read-write".into()),
        Err(e) => Err(format!("/dev/kvm: {e}")),
    }
}

/// Whether this machine is itself a VM (the `hypervisor` CPU flag).
fn hypervisor() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "hypervisor"));
    if virt {
        "running under a hypervisor (nested VMs are slower)".into()
    } else {
        "bare metal (no hypervisor flag)".into()
    }
}
