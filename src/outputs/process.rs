//! The standard `process_*` figures of this process, read from `/proc`
//! on each scrape (the names and meanings every Prometheus client library
//! uses, so existing dashboards work unchanged).

use std::time::Duration;

/// One reading of `/proc/self`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessStats {
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    /// Unix seconds.
    pub start_time_seconds: f64,
}

fn sysconf(var: nix::unistd::SysconfVar, fallback: i64) -> f64 {
    nix::unistd::sysconf(var)
        .ok()
        .flatten()
        .filter(|v| *v > 0)
        .unwrap_or(fallback) as f64
}

/// Reads this process's figures; `None` when `/proc` cannot be read (then
/// the metrics are left out rather than reported as zero).
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. `rest[0]` is field 3 (state) of proc(5).
    let rest: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    let ticks = sysconf(nix::unistd::SysconfVar::CLK_TCK, 100);
    let page = sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        });
    Some(ProcessStats {
        resident_memory_bytes: (field(24)? as f64 * page) as u64,
        virtual_memory_bytes: field(23)?,
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        open_fds,
        max_fds,
        start_time_seconds: boot as f64 + field(22)? as f64 / ticks,
    })
}

/// How long this process has run, from its start time.
pub fn uptime(stats: &ProcessStats) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    Duration::from_secs_f64((now - stats.start_time_seconds).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read() {
        let s = read().expect("/proc/self");
        assert!(s.resident_memory_bytes > 1 << 20, "{s:?}");
        assert!(s.virtual_memory_bytes >= s.resident_memory_bytes);
        assert!(s.open_fds >= 3);
        assert!(s.max_fds.is_some_and(|m| m >= s.open_fds));
        // Started in the last hour, not in the future.
        assert!(uptime(&s) < Duration::from_secs(3600), "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!(s.start_time_seconds <= now + 1.0);
    }
}
