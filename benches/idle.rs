//! The idle daemon: RSS and CPU share over 60 s with every real task
//! disabled (the scheduler, the store's sync loop and the bus still run),
//! twice: with an empty Redis, and with a full history in Redis (120
//! results of every task, iperf results of 160 entries), which the daemon
//! reads into memory at start.
//!
//! Run: `cargo bench --bench figures -- idle` (takes about 140 s; `IDLE_SECONDS`
//! shortens each sample for a quick look).
//! Targets: RSS ≤ 10 MiB, CPU ≤ 0.1 %.

use crate::{common, support};
use std::time::{Duration, Instant};

// `status_kib(pid, field)`: a `kB` field of /proc/<pid>/status: `VmRSS`,
// `RssAnon` (private memory: heap, stacks) or `RssFile` (mapped pages of
// the binary and its libraries: clean, shared, reclaimable by the kernel).
use common::burst::status_kib;

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
    status_kib(pid, "VmRSS")
}

const DEPTH: i64 = 120;

/// Fills `redis` with a full history and a result of every task.
fn fill(redis: &common::RedisServer) {
    let mut conn = redis.conn();
    let now = chrono::Utc::now().timestamp();
    for name in zos_perf::tasks::NAMES {
        let records: Vec<String> = (0..DEPTH)
            .map(|i| common::burst::record_of(name, now - i * 3600, i as usize, 160))
            .collect();
        support::store_history(&mut conn, name, &records);
    }
}

pub fn main() {
    let seconds = std::env::var("IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SECONDS);
    let release = std::path::PathBuf::from(env!("CARGO_BIN_EXE_zos-perf"));
    // The shipped build (scripts/package, `cargo build --profile dist`),
    // when named: its smaller binary maps fewer file pages.
    let dist = std::env::var_os("ZOS_PERF_IDLE_DIST").map(std::path::PathBuf::from);
    let mut builds = vec![("release", release)];
    if let Some(dist) = dist {
        builds.push(("dist", dist));
    }
    let mut rows = String::new();
    let mut wall = 0.0;
    for (build, bin) in &builds {
        let empty = sample(bin, false, seconds);
        let full = sample(bin, true, seconds);
        wall = empty.wall;
        rows += &empty.row(&format!("`{build}`, empty"));
        rows += &full.row(&format!("`{build}`, {DEPTH} per task"));
    }
    let body = format!(
        "`zos-perf run` with every task disabled, connected to Redis over a unix socket, sampled for {wall:.0} s \
after a 3 s settling time; once with an empty Redis, once with a full history in Redis ({DEPTH} results of every \
task, iperf results of 160 entries), which the daemon holds in memory. `release` is the build the tests use \
(`cargo build --release`, symbols kept); `dist` is the build that ships (scripts/package), measured when \
`ZOS_PERF_IDLE_DIST` names it.\n\n\
| build, history | RSS at end | RSS max | of it private (RssAnon) | of it file pages (RssFile) | CPU time | CPU share |\n\
|---|---|---|---|---|---|---|\n{rows}\n\
Targets: RSS ≤ 10 MiB, CPU ≤ 0.1 %. RssFile is the binary's own code and data mapped by the \
process (clean pages the kernel can reclaim); RssAnon is the memory the daemon itself holds.\n",
    );
    support::write_section("idle-daemon", "Idle daemon", &body);
}

struct Sample {
    rss_end: u64,
    rss_max: u64,
    anon_end: u64,
    file_end: u64,
    cpu_s: f64,
    wall: f64,
}

impl Sample {
    fn row(&self, what: &str) -> String {
        format!(
            "| {what} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.3} s | {:.3} % |\n",
            self.rss_end as f64 / 1024.0,
            self.rss_max as f64 / 1024.0,
            self.anon_end as f64 / 1024.0,
            self.file_end as f64 / 1024.0,
            self.cpu_s,
            self.cpu_s / self.wall * 100.0
        )
    }
}

fn sample(bin: &std::path::Path, full: bool, seconds: u64) -> Sample {
    let redis = common::RedisServer::start();
    if full {
        fill(&redis);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("idle.toml");
    let tasks: String = zos_perf::tasks::NAMES
        .iter()
        .map(|t| format!("[tasks.{t}]\nenabled = false\n"))
        .collect();
    std::fs::write(&cfg, tasks).expect("config");
    let mut child = common::spawn_quiet_binary(bin, &cfg, &redis.url());
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(3));
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid);
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(rss_kib(pid));
    }
    let cpu_s = (cpu_ticks(pid) - c0) as f64 / hz;
    let wall = t0.elapsed().as_secs_f64();
    let rss_end = rss_kib(pid);
    let anon_end = status_kib(pid, "RssAnon");
    let file_end = status_kib(pid, "RssFile");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    Sample {
        rss_end,
        rss_max,
        anon_end,
        file_end,
        cpu_s,
        wall,
    }
}
