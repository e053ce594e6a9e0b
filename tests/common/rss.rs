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
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return (status, peak);
        }
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| vm_hwm(&s))
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The `VmHWM:` line of a `/proc/<pid>/status` text, in KiB.
fn vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
