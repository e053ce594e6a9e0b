//! cpu-benchmark figures: five runs of the task (single and multi,
//! min/median/max), nanoseconds per CRC step of the fast and the portable
//! path, and what the stop-flag checks cost. Written to BENCHMARKS.md.
//!
//! The machine may be shared: the bench first waits (up to 5 minutes) for the
//! 1-minute load average to fall below 0.7 and records the load it started at.
//! `ZOS_PERF_BENCH_WAIT=<seconds>` changes that limit. Set
//! `ZOS_PERF_CPUBENCH=/path/to/cpubench` to also time the reference C tool
//! (`cpubench -j`) on the same machine, each of its five runs right after one
//! of ours, for calibration.
//!
//! Run: `cargo bench --bench cpu`

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use zos_perf::config::CpuBenchmarkConfig;
use zos_perf::task::{RunContext, Task};
use zos_perf::tasks::cpu_benchmark::chain::{self, CHECK_EVERY, SEED, STEPS};
use zos_perf::tasks::cpu_benchmark::crc::Path;
use zos_perf::tasks::cpu_benchmark::CpuBenchmark;

const RUNS: usize = 5;
const QUIET_LOAD: f64 = 0.7;

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

/// Waits for a quiet machine; returns (load when measuring began, waited).
fn wait_for_quiet() -> (f64, Duration) {
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

/// (min, median, max) of samples.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], support::percentile(&v, 50.0), v[v.len() - 1])
}

fn row(label: &str, v: Vec<f64>) -> String {
    let (min, med, max) = spread(v);
    format!("| {label} | {min:.3} | {med:.3} | {max:.3} |\n")
}

/// Median nanoseconds per step over three chains of `steps`.
fn ns_per_step(path: Path, steps: u64, every: u64) -> f64 {
    let stop = AtomicBool::new(false);
    let samples = (0..3)
        .map(|_| {
            let begin = Instant::now();
            let end = chain::chain_checked_every(path, SEED, steps, every, &stop);
            let ns = begin.elapsed().as_nanos() as f64 / steps as f64;
            assert!(end.is_ok());
            ns
        })
        .collect();
    spread(samples).1
}

/// One run of the reference tool named by `ZOS_PERF_CPUBENCH`: (single, multi).
fn reference_run(tool: &str) -> Option<(f64, f64)> {
    let out = std::process::Command::new(tool).arg("-j").output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["single"].as_f64()?, v["multi"].as_f64()?))
}

fn main() {
    let (load, waited) = wait_for_quiet();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let task = CpuBenchmark::new(&CpuBenchmarkConfig::default());
    let ctx = RunContext::default();
    let tool = std::env::var("ZOS_PERF_CPUBENCH").ok();
    let mut single = Vec::new();
    let mut multi = Vec::new();
    let (mut ref_single, mut ref_multi) = (Vec::new(), Vec::new());
    let mut threads = 0;
    for i in 0..RUNS {
        let v = rt.block_on(task.run(&ctx)).expect("cpu-benchmark runs");
        eprintln!("run {}: {v}", i + 1);
        single.push(v["single"].as_f64().expect("single"));
        multi.push(v["multi"].as_f64().expect("multi"));
        threads = v["threads"].as_u64().expect("threads");
        if let Some(tool) = &tool {
            let (s, m) = reference_run(tool).expect("the reference tool prints its JSON");
            eprintln!("reference {}: single {s}, multi {m}", i + 1);
            ref_single.push(s);
            ref_multi.push(m);
        }
    }

    let path = Path::detect();
    let fast = (path == Path::Clmul).then(|| ns_per_step(Path::Clmul, STEPS, CHECK_EVERY));
    let portable = ns_per_step(Path::Portable, STEPS / 4, CHECK_EVERY);
    // What the look at the stop flag costs: checks every block vs none at all.
    let (checked, unchecked) = match path {
        Path::Clmul => (fast.unwrap_or(f64::NAN), ns_per_step(path, STEPS, u64::MAX)),
        Path::Portable => (portable, ns_per_step(path, STEPS / 4, u64::MAX)),
    };
    let load_after = load1();

    let mut body = String::new();
    body.push_str(&format!(
        "Five runs of the task (64 Mi steps each; `multi` = sum over {threads} threads), seconds, lower is better. \
         Step path: {}.\n\n",
        path.describe()
    ));
    body.push_str("| figure | min | median | max |\n|---|---|---|---|\n");
    body.push_str(&row("single (s)", single));
    body.push_str(&row(&format!("multi (s, {threads} threads)"), multi));
    if let Some(tool) = &tool {
        body.push_str(&row(
            &format!("reference `{tool} -j`: single (s)"),
            ref_single,
        ));
        body.push_str(&row(
            &format!("reference `{tool} -j`: multi (s)"),
            ref_multi,
        ));
    }
    body.push('\n');
    body.push_str("CRC step (median of 3 chains):\n\n");
    match fast {
        Some(ns) => body.push_str(&format!(
            "- fast path (SSE4.1+PCLMULQDQ): {ns:.2} ns/step\n"
        )),
        None => body.push_str("- fast path: not available on this CPU\n"),
    }
    body.push_str(&format!("- portable path: {portable:.2} ns/step\n"));
    body.push_str(&format!(
        "- stop-flag check every {CHECK_EVERY} steps: {checked:.3} ns/step vs {unchecked:.3} without checks ({:+.2} %)\n\n",
        (checked / unchecked - 1.0) * 100.0
    ));
    body.push_str(&format!(
        "Load: 1-min load average {load:.2} when measuring began (after waiting {}s for < {QUIET_LOAD}), {load_after:.2} at the end.\n\n",
        waited.as_secs()
    ));
    body.push_str(
        "Calibration: on the 2-core Xeon (2.5 GHz) machines of this project the reference C tool \
         `cpubench` measured single 1.13-1.17 s and multi 2.27-2.37 s; figures on the same machine \
         should be within ±5 % of it.\n",
    );
    support::write_section("cpu-benchmark", "cpu-benchmark", &body);
}
