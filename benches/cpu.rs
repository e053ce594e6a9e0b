//! cpu-benchmark figures: five runs of the task (single and multi,
//! min/median/max), nanoseconds per CRC step of the fast and the portable
//! path, and what the stop-flag checks cost. Written to BENCHMARKS.md.
//!
//! The machine may be shared, and a CPU score taken beside a compiler says
//! little. So the bench first waits (up to 5 minutes) for the 1-minute load
//! average to fall below 0.7 and records it, then before every timed run
//! waits (within the same limit) until the CPUs were at least 90 % idle over
//! the last 2 seconds (from /proc/stat) and records the busiest it accepted.
//! `ZOS_PERF_BENCH_WAIT=<seconds>` changes the limit.
//!
//! Set `ZOS_PERF_CPUBENCH=/path/to/cpubench` to also time the reference C
//! tool (`cpubench -j`) on the same machine, each of its five runs right
//! after one of ours, for calibration.
//!
//! Run: `cargo bench --bench figures -- cpu`

use crate::support;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use zos_perf::tasks::cpu_benchmark::crc::Path;
use zos_perf::tasks::cpu_benchmark::workload::{self, CHECK_EVERY, SEED, STEPS};
use zos_perf::tasks::cpu_benchmark::{CpuBenchmark, CpuBenchmarkConfig};
use zos_perf::tasks::{RunContext, Task};

const RUNS: usize = 5;
const QUIET_LOAD: f64 = 0.7;
const QUIET_BUSY: f64 = 0.10;
const IDLE_WINDOW: Duration = Duration::from_secs(2);

fn max_wait() -> Duration {
    let secs = std::env::var("ZOS_PERF_BENCH_WAIT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Waits for the 1-minute load average to fall below [`QUIET_LOAD`];
/// returns (the load when measuring began, time waited).
fn wait_for_low_load() -> (f64, Duration) {
    let begin = Instant::now();
    loop {
        let load = load1();
        if load < QUIET_LOAD || begin.elapsed() >= max_wait() {
            return (load, begin.elapsed());
        }
        eprintln!("load average {load:.2} >= {QUIET_LOAD}: waiting");
        std::thread::sleep(Duration::from_secs(10));
    }
}

/// (busy, total) jiffies of all CPUs together, from /proc/stat.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Waits until the CPUs were at least 90 % idle over [`IDLE_WINDOW`] (or the
/// wait limit passed); returns the busy fraction of the last window.
fn wait_for_idle_cpus() -> f64 {
    let begin = Instant::now();
    loop {
        let (busy0, total0) = cpu_jiffies();
        std::thread::sleep(IDLE_WINDOW);
        let (busy1, total1) = cpu_jiffies();
        let busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
        if busy < QUIET_BUSY || begin.elapsed() >= max_wait() {
            return busy;
        }
        eprintln!("CPUs {:.0} % busy: waiting", busy * 100.0);
    }
}

/// (min, median, max) of samples.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], support::percentile(&v, 50.0), v[v.len() - 1])
}

fn row(label: &str, v: Vec<f64>, decimals: usize) -> String {
    let (min, med, max) = spread(v);
    format!("| {label} | {min:.decimals$} | {med:.decimals$} | {max:.decimals$} |\n")
}

/// Nanoseconds per step of one chain of `steps`.
fn ns_per_step(path: Path, steps: u64, every: u64) -> f64 {
    let stop = AtomicBool::new(false);
    let begin = Instant::now();
    let end = workload::chain_checked_every(path, SEED, steps, every, &stop);
    let ns = begin.elapsed().as_nanos() as f64 / steps as f64;
    assert!(end.is_ok());
    ns
}

/// One run of the reference tool: (single, multi).
fn reference_run(tool: &str) -> (f64, f64) {
    let out = std::process::Command::new(tool)
        .arg("-j")
        .output()
        .expect("the reference tool runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("it prints JSON");
    (
        v["single"].as_f64().expect("single"),
        v["multi"].as_f64().expect("multi"),
    )
}

pub fn main() {
    let (load, waited) = wait_for_low_load();
    let mut busiest: f64 = 0.0;
    let mut quiet = || {
        let busy = wait_for_idle_cpus();
        busiest = busiest.max(busy);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config = zos_perf::Config::from_toml("").expect("config");
    let task = CpuBenchmark::new(&CpuBenchmarkConfig::default(), &config.grid_context());
    let ctx = RunContext::default();
    let tool = std::env::var("ZOS_PERF_CPUBENCH").ok();
    let (mut single, mut multi) = (Vec::new(), Vec::new());
    let (mut ref_single, mut ref_multi) = (Vec::new(), Vec::new());
    let mut threads = 0;
    for i in 0..RUNS {
        quiet();
        let v = rt.block_on(task.run(&ctx)).expect("cpu-benchmark runs");
        eprintln!("run {}: {v}", i + 1);
        single.push(v["single"].as_f64().expect("single"));
        multi.push(v["multi"].as_f64().expect("multi"));
        threads = v["threads"].as_u64().expect("threads");
        if let Some(tool) = &tool {
            quiet();
            let (s, m) = reference_run(tool);
            eprintln!("reference {}: single {s}, multi {m}", i + 1);
            ref_single.push(s);
            ref_multi.push(m);
        }
    }

    // Per-step costs, interleaved so that a disturbance hits all alike:
    // the fast path with and without the stop-flag checks, and the portable.
    let path = Path::detect();
    let (mut fast, mut unchecked, mut portable) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        quiet();
        if path == Path::Clmul {
            fast.push(ns_per_step(Path::Clmul, STEPS, CHECK_EVERY));
            unchecked.push(ns_per_step(Path::Clmul, STEPS, u64::MAX));
        }
        portable.push(ns_per_step(Path::Portable, STEPS / 4, CHECK_EVERY));
    }
    let load_after = load1();

    let mut body = format!(
        "Five runs of the task (64 Mi steps each; `multi` = sum over {threads} threads), \
         seconds, lower is better. Step path: {}.\n\n",
        path.describe()
    );
    body.push_str("| figure | min | median | max |\n|---|---|---|---|\n");
    let (single_all, multi_all) = (single.clone(), multi.clone());
    body.push_str(&row("single (s)", single, 3));
    body.push_str(&row(&format!("multi (s, {threads} threads)"), multi, 3));
    match &tool {
        Some(tool) => {
            // Ours and the reference, run alternately on this machine:
            // medians side by side, and their ratio.
            body.push_str(&row(
                &format!("reference `{tool} -j`: single (s)"),
                ref_single.clone(),
                3,
            ));
            body.push_str(&row(
                &format!("reference `{tool} -j`: multi (s)"),
                ref_multi.clone(),
                3,
            ));
            let median = |v: &[f64]| {
                let mut v = v.to_vec();
                v.sort_by(|a, b| a.total_cmp(b));
                support::percentile(&v, 50.0)
            };
            body.push_str(&format!(
                "\n| median on this machine | ours | reference | ours / reference |\n|---|---|---|---|\n\
                 | single (s) | {:.3} | {:.3} | {:.3} |\n| multi (s) | {:.3} | {:.3} | {:.3} |\n",
                median(&single_all),
                median(&ref_single),
                median(&single_all) / median(&ref_single),
                median(&multi_all),
                median(&ref_multi),
                median(&multi_all) / median(&ref_multi),
            ));
        }
        None => body.push_str(
            "\nThe reference tool was not run (set `ZOS_PERF_CPUBENCH` to its path to \
             compare side by side on this machine).\n",
        ),
    }
    body.push_str(
        "\nCRC step, nanoseconds (five chains each, interleaved):\n\n\
         | path | min | median | max |\n|---|---|---|---|\n",
    );
    if path == Path::Clmul {
        let (best_checked, best_unchecked) = (spread(fast.clone()).0, spread(unchecked.clone()).0);
        body.push_str(&row("fast (SSE4.1+PCLMULQDQ), 64 Mi steps", fast, 2));
        body.push_str(&row("fast, without stop-flag checks", unchecked, 2));
        body.push_str(&row("portable, 16 Mi steps", portable, 2));
        body.push_str(&format!(
            "\nStop-flag check every {CHECK_EVERY} steps: {:+.2} % per step (best of five, \
             with vs without checks).\n",
            (best_checked / best_unchecked - 1.0) * 100.0
        ));
    } else {
        body.push_str("| fast | not available on this CPU | | |\n");
        body.push_str(&row("portable, 16 Mi steps", portable, 2));
    }
    body.push_str(&format!(
        "\nLoad: 1-min load average {load:.2} when measuring began (after waiting {}s for < {QUIET_LOAD}), \
         {load_after:.2} at the end; before each timed run the CPUs were at most {:.0} % busy over {}s.\n\n",
        waited.as_secs(),
        busiest * 100.0,
        IDLE_WINDOW.as_secs()
    ));
    support::write_section("cpu-benchmark", "cpu-benchmark", &body);
}
