//! How long a provisiontest takes with qemu and tcg (software emulation, as
//! on a machine without a working KVM), and what a run costs the daemon.
//!
//! - Time to the marker (hypervisor start to the guest's `ZOSPERF-BOOTED`
//!   line) and the whole attempt (checks, start, boot, teardown), median of
//!   5, with the guest of scripts/test-guest (Debian's cloud kernel and a
//!   busybox initramfs).
//! - Peak RSS of the daemon (`VmHWM` of the zos-perf process alone; the
//!   guest's 512 MiB belong to qemu) over a run triggered by its start-up
//!   check, with the other tasks and the bus off.
//!
//! Run: `cargo bench --bench figures -- provisiontest` (root; qemu-system-x86 installed).

use crate::{common, support};
use std::time::{Duration, Instant};

use common::{guest, wait_for, RedisServer};
use tokio_util::sync::CancellationToken;
use zos_perf::config::Config;
use zos_perf::tasks::provisiontest::ProvisionTest;

const RUNS: usize = 5;

fn config_text(dir: &std::path::Path) -> String {
    let g = guest::dir();
    format!(
        "[provisiontest]\nflags_dir = {:?}\nbackend = \"qemu\"\naccel = \"tcg\"\n\
         kernel = {:?}\ninitramfs = {:?}\nwork_dir = {:?}\nbackoff_total = \"0s\"\n",
        dir.join("flags"),
        g.join("vmlinuz"),
        g.join("initramfs.cpio"),
        dir.join("work")
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `VmHWM` or `VmRSS` of a process, in KiB.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = Config::from_toml(&config_text(tmp.path())).expect("config");
    let task = ProvisionTest::new(&config.sections.provisiontest, &config.grid_context());
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    let mut to_marker = Vec::new();
    let mut total = Vec::new();
    for i in 0..RUNS {
        let t = Instant::now();
        let attempt = rt.block_on(task.attempt(&CancellationToken::new()));
        let whole = t.elapsed();
        assert_eq!(attempt.errors, Vec::<String>::new(), "run {i}");
        let m = attempt.to_marker.expect("marker seen");
        eprintln!(
            "run {i}: marker after {:.2} s, attempt {:.2} s",
            m.as_secs_f64(),
            whole.as_secs_f64()
        );
        to_marker.push(m.as_secs_f64());
        total.push(whole.as_secs_f64());
    }

    // The daemon: its start-up check runs provisiontest at once.
    let redis = RedisServer::start();
    let cfg = tmp.path().join("daemon.toml");
    std::fs::write(
        &cfg,
        format!("{}{}", guest::ONLY_PROVISIONTEST, config_text(tmp.path())),
    )
    .expect("config");
    let mut daemon = common::spawn_quiet_daemon(&cfg, &redis.url());
    let pid = daemon.id();
    let mut conn = redis.conn();
    wait_for(
        Duration::from_secs(300),
        "the daemon's provisiontest result",
        || {
            redis::cmd("GET")
                .arg("perf.provisiontest")
                .query::<Option<String>>(&mut conn)
                .ok()
                .flatten()
        },
    );
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let rss_after = status_kib(pid, "VmRSS:").unwrap_or(0);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();

    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let body = format!(
        "qemu-system-x86_64 with `-accel tcg`, 1 vCPU, 512 MiB, guest of scripts/test-guest \
         ({kernel}), {RUNS} attempts in a row (`cargo bench --bench figures -- provisiontest`).\n\n\
         | measure | median | all runs (s) |\n|---|---|---|\n\
         | hypervisor start to marker | {:.2} s | {} |\n\
         | whole attempt (checks, boot, teardown) | {:.2} s | {} |\n\n\
         Daemon during a run (start-up check, other tasks and bus off): peak RSS (VmHWM) \
         {:.1} MiB, RSS after the run {:.1} MiB. The guest's memory is qemu's, not counted.\n",
        median(to_marker.clone()),
        fmt(&to_marker),
        median(total.clone()),
        fmt(&total),
        hwm as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        kernel = std::fs::read_to_string(guest::dir().join("kernel-package"))
            .unwrap_or_default()
            .trim(),
    );
    support::write_section("provisiontest", "provisiontest (VM boot, tcg)", &body);
}
