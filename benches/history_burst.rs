//! Under hostile input: a burst of `zos.perf.history` requests against the
//! shipped daemon (every task disabled) over a full default history (120
//! records of every task, iperf records of about 17 KB), half of them for
//! iperf, limits spread over 1..120, pushed at once onto
//! `msgbus.zos.perf.history` as the RMB peer would. Every reply is taken
//! and checked; the daemon's peak RSS (VmHWM) is read from /proc.
//!
//! Run: `cargo bench --bench figures -- history_burst` (a few minutes: the largest
//! burst moves gigabytes of replies through Redis). `BURSTS=64,256` picks
//! the sizes.

use crate::{common, support};
use common::burst;

pub fn main() {
    let sizes: Vec<usize> = std::env::var("BURSTS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![64, 256, 1_000, 10_000]);
    let mut rows = String::new();
    for n in sizes {
        let redis = common::RedisServer::start();
        burst::fill(&redis);
        let dir = tempfile::tempdir().expect("temp dir");
        let daemon = burst::daemon(&redis, dir.path());
        let pid = daemon.0.id();
        let before = burst::status_kib(pid, "VmHWM");
        let out = burst::run(&redis, &burst::mix(n), n > 1_000);
        let peak = burst::status_kib(pid, "VmHWM");
        let after = burst::status_kib(pid, "VmRSS");
        eprintln!("{n} requests: peak {peak} KiB");
        rows += &format!(
            "| {n} | {:.0} MB | {:.1} s | {:.1} MiB | {:.1} MiB | {:.1} MiB |\n",
            out.bytes as f64 / 1e6,
            out.seconds,
            before as f64 / 1024.0,
            peak as f64 / 1024.0,
            after as f64 / 1024.0,
        );
    }
    let body = format!(
        "A burst of `zos.perf.history` requests pushed at once onto `msgbus.zos.perf.history` (one LPUSH, as \
the RMB peer hands over requests from any twin), against `zos-perf run` (release build, every task disabled) \
over a full default history in Redis: {depth} records of every task, iperf records of about 17 KB (64 entries). \
Half the requests ask for iperf, the rest for the other tasks in turn, with limits spread over 1..{depth}. \
Every reply is taken by the bench as it comes and checked (count of records; timestamps too up to 1,000 \
requests). Peak RSS is the daemon's VmHWM; before: after start-up, before the burst. `benches/history_burst.rs`.\n\n\
| requests | replies taken | time | peak RSS before | peak RSS | RSS after |\n|---|---|---|---|---|---|\n{rows}\n\
Target: peak RSS ≤ 64 MiB for any burst up to 10,000 requests (`tests/it/history.rs::\
a_burst_of_history_requests_keeps_the_daemon_under_64_mib` asserts it for 160). Before the fix (main at \
6be097c, issue 25): 64 requests → 843 MB, 256 → 2.74 GB, 512 → 4.35 GB.\n",
        depth = burst::DEPTH
    );
    support::write_section(
        "hostile-history",
        "Under hostile input: a burst of history requests",
        &body,
    );
}
