//! Shared by the benchmark commands: where the figures go and on what
//! machine they were taken.
//!
//! Each benchmark owns one section of BENCHMARKS.md, between the markers
//! `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`; running it replaces that
//! section (or appends it) and leaves the others alone.

#![allow(dead_code)]

use std::path::PathBuf;

/// The repository's BENCHMARKS.md.
pub fn benchmarks_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md")
}

/// One line saying what machine this is and when: CPU model, online CPUs,
/// memory, kernel, UTC date.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let mhz = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("cpu MHz"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| format!(" @ {} MHz", m.trim()))
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1 = load.split_whitespace().next().unwrap_or("?");
    format!(
        "{model}{mhz}, {cpus} CPUs, {mem_gib:.0} GiB, Linux {}, load average {load1} at start; {}",
        kernel.trim(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    )
}

/// Replaces (or appends) the section `name` of BENCHMARKS.md with `body`,
/// headed by `title` and the machine line, and prints it.
pub fn write_section(name: &str, title: &str, body: &str) {
    let section = format!(
        "<!-- bench:{name} -->\n## {title}\n\nMachine: {}\n\n{}\n<!-- /bench:{name} -->\n",
        machine(),
        body.trim_end()
    );
    println!("{section}");
    let path = benchmarks_file();
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nFigures written by the benchmark commands (`scripts/bench` runs them all).\nEach section says the machine and date it was measured on.\n\n".to_string()
    });
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->\n");
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &old[..a], section, &old[b + end.len()..]),
        _ => format!("{}\n{}", old.trim_end(), "\n".to_string() + &section),
    };
    if let Err(e) = std::fs::write(&path, new) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

/// The `p`-th percentile (0..=100) of sorted samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    assert!(!sorted.is_empty(), "no samples");
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Stores `records` (newest first) as task `name`'s history in Redis and
/// the first of them as its latest result, as the daemon keeps them.
pub fn store_history(conn: &mut redis::Connection, name: &str, records: &[String]) {
    let _: () = redis::cmd("RPUSH")
        .arg(format!("zos-perf:history:{name}"))
        .arg(records)
        .query(conn)
        .expect("RPUSH");
    let _: () = redis::cmd("SET")
        .arg(format!("perf.{name}"))
        .arg(&records[0])
        .query(conn)
        .expect("SET");
}
