//! The peak resident memory of a child process, as the child itself had it.
//!
//! Not `wait4`'s `ru_maxrss`: a child started with `posix_spawn` (what
//! `std::process::Command` uses) runs on the parent's memory until its
//! `exec`, and the kernel carries the high-water mark of that memory (the
//! parent's, test relay and responders included) into the child's
//! `ru_maxrss`. A bench holding many responders then "measures" its own
//! size. `VmHWM` in `/proc/<pid>/status` is the high-water mark of the
//! child's own memory since its `exec`; it is read every millisecond until
//! the child exits (it only grows, so the last reading misses at most the
//! last millisecond, when a process is freeing, not taking).

use std::process::{Child, ExitStatus};
use std::time::Duration;

/// Waits for `child`; its exit status and peak resident memory in KiB.
pub fn wait_with_peak_rss(child: &mut Child) -> (ExitStatus, u64) {
    let (status, kib, _) = wait_with_peak_rss_and_cpu(child);
    (status, kib)
}

/// Waits for `child`; its exit status, peak resident memory in KiB and
/// the CPU time it used (user + system, from `/proc/<pid>/stat`, read with
/// the memory: a bench on a loaded machine can tell the child's own work
/// from the time it waited for the CPU or for its peers).
pub fn wait_with_peak_rss_and_cpu(child: &mut Child) -> (ExitStatus, u64, Duration) {
    let status_file = format!("/proc/{}/status", child.id());
    let stat_file = format!("/proc/{}/stat", child.id());
    let (mut peak, mut cpu) = (0, Duration::ZERO);
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return (status, peak, cpu);
        }
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| vm_hwm(&s))
        {
            peak = peak.max(kib);
        }
        if let Some(t) = std::fs::read_to_string(&stat_file)
            .ok()
            .and_then(|s| cpu_time(&s))
        {
            cpu = cpu.max(t);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// utime + stime of a `/proc/<pid>/stat` text (fields 14 and 15, after
/// the command name in parentheses), in clock ticks of 1/100 s (Linux's
/// `USER_HZ`).
fn cpu_time(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The `VmHWM:` line of a `/proc/<pid>/status` text, in KiB.
fn vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
