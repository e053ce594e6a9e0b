//! The idle daemon: RSS and CPU share over 60 s with every real task
//! disabled (the scheduler, the store's sync loop and the bus still run).
//!
//! Run: `cargo bench --bench idle` (takes about 70 s).
//! Targets: RSS ≤ 10 MiB, CPU ≤ 0.1 %.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECONDS: u64 = 60;

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name's closing parenthesis; utime and stime
    // are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn main() {
    let redis = common::RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("idle.toml");
    std::fs::write(
        &cfg,
        "[tasks.cpu-benchmark]\nenabled = false\n[tasks.healthcheck]\nenabled = false\n\
[tasks.iperf]\nenabled = false\n[tasks.public-ip-validation]\nenabled = false\n",
    )
    .expect("config");
    let bin = env!("CARGO_BIN_EXE_zos-perf");
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .args(["--redis", &redis.url(), "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start daemon");
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(3));
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid);
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(SECONDS) {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(rss_kib(pid));
    }
    let cpu_s = (cpu_ticks(pid) - c0) as f64 / hz;
    let wall = t0.elapsed().as_secs_f64();
    let rss_end = rss_kib(pid);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let body = format!(
        "`zos-perf run` with all four tasks disabled, connected to Redis over a unix socket, sampled for {wall:.0} s \
after a 3 s settling time.\n\n| RSS at end | RSS max | CPU time | CPU share |\n|---|---|---|---|\n\
| {:.1} MiB | {:.1} MiB | {:.3} s | {:.3} % |\n\nTargets: RSS ≤ 10 MiB, CPU ≤ 0.1 %.\n",
        rss_end as f64 / 1024.0,
        rss_max as f64 / 1024.0,
        cpu_s,
        cpu_s / wall * 100.0
    );
    support::write_section("idle-daemon", "Idle daemon", &body);
}
