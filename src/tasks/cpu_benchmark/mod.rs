//! # cpu-benchmark: the grid's CPU score
//!
//! **Schedule:** `0 0 */6 * * *` (every six hours, UTC), no jitter, timeout
//! 15 min, exclusive (never at the same time as another measurement).
//!
//! **Measures** how long this node's CPU takes for a fixed workload, the
//! same one the grid's long-standing C tool `cpubench` runs, so scores
//! compare across every node (docs/tasks/cpu-benchmark.md): from the seed `0x0a0b0c0d12345ff0`,
//! 64 Mi times `seed = CRC-64/XZ(seed as 8 little-endian bytes)`, which must
//! end on `0x409242b8972cb0b1` (any other end is a bug and fails the run).
//! Each CRC is one carry-less-multiply fold plus a Barrett reduction, as in
//! `cpubench` (see [`crc`]); a table-driven CRC would give other numbers.
//!
//! - `single`: wall seconds of one loop on one thread;
//! - `threads`: online CPUs; `multi`: the SUM of the wall seconds of
//!   `threads` loops run at once, one OS thread each, released together;
//! - `workloads`: what `[cpu_benchmark] workloads_command` printed (0 when
//!   none is configured, or when it fails: the failure is logged).
//!
//! Lower is better. Seconds are rounded to 3 decimals.
//!
//! **Result sample** (2-core Xeon):
//! ```json
//! {"single": 1.151, "multi": 2.316, "threads": 2, "workloads": 0}
//! ```
//!
//! **Needs:** an x86_64 CPU with SSE4.1 and PCLMULQDQ for figures comparable
//! with `cpubench` (elsewhere a portable path computes the same values, at a
//! cost that is not comparable; the log says which path ran), and CPUs that
//! are otherwise idle. The loops run on OS threads off the async runtime and
//! stop within about a millisecond of a shutdown or timeout.

mod config;
pub mod crc;
pub mod view;
pub mod workload;

pub use config::CpuBenchmarkConfig;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::grid::GridContext;
use crate::tasks::child::Ended;
use crate::tasks::CPU_BENCHMARK;
use crate::tasks::{RunContext, RunFuture, Task, TaskDefaults};
use crc::Path;
use workload::Stopped;

pub(crate) const DESCRIPTION: &str =
    "Measures the performance of the node CPU by reporting the timespent of computing a task in seconds.";

/// How long the workloads command may take before it counts as broken.
const WORKLOADS_TIMEOUT: Duration = Duration::from_secs(30);
/// The most the workloads command may print (it prints one number).
const WORKLOADS_OUTPUT: usize = 4096;

/// Where the kernel lists its online CPUs (what `_SC_NPROCESSORS_ONLN`
/// reads, as `cpubench` asks for it).
const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";

/// The `cpu-benchmark` task.
#[derive(Debug, Clone)]
pub struct CpuBenchmark {
    workloads_command: Option<Vec<String>>,
    workload: Workload,
}

/// The length of the loop and where it must end: the documented 64 Mi steps, or a
/// short loop for tests of everything around it (an endless one, with `steps`
/// at `u64::MAX`, for tests of cancelling; see [`CpuBenchmark::with_workload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Steps of each chain.
    pub steps: u64,
    /// Where each chain must end for the run to give a score.
    pub expected: u64,
}

const SPEC_WORKLOAD: Workload = Workload {
    steps: workload::STEPS,
    expected: workload::FINAL,
};

/// What one measurement found.
#[derive(Debug, Clone, Copy)]
struct Measured {
    single: Duration,
    multi: Duration,
    threads: usize,
}

impl CpuBenchmark {
    pub fn new(config: &CpuBenchmarkConfig, _grid: &GridContext) -> Self {
        Self {
            workloads_command: config.workloads_command.clone(),
            workload: SPEC_WORKLOAD,
        }
    }

    /// The same task with another loop than the documented one: for tests,
    /// which need a short loop, or an endless one to cancel. The daemon never
    /// calls it.
    pub fn with_workload(self, workload: Workload) -> Self {
        Self { workload, ..self }
    }

    /// The number reported as `workloads`: 0 when no source is configured or
    /// when the source is broken (logged as an error: the score stays good).
    async fn workloads(&self) -> u64 {
        let Some(command) = &self.workloads_command else {
            return 0;
        };
        match count_workloads(command).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"),
                    "workloads source is broken; reporting 0 workloads");
                0
            }
        }
    }
}

impl Task for CpuBenchmark {
    fn name(&self) -> &'static str {
        CPU_BENCHMARK
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn defaults(&self) -> TaskDefaults {
        TaskDefaults {
            cron: "0 0 */6 * * *",
            jitter: Duration::ZERO,
            timeout: Duration::from_secs(15 * 60),
            exclusive: true,
        }
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> RunFuture<'a> {
        Box::pin(async move {
            // Counted first, so that the command does not share the CPUs
            // with the loops.
            let workloads = tokio::select! {
                n = self.workloads() => n,
                _ = ctx.cancel.cancelled() => bail!("cpu-benchmark: cancelled while counting workloads"),
            };
            let path = Path::detect();
            let threads = online_cpus();
            tracing::info!(threads, "CRC step: {}", path.describe());
            let m = measure(path, threads, self.workload, &ctx.cancel).await?;
            tracing::info!(
                single = ?m.single,
                multi = ?m.multi,
                threads = m.threads,
                workloads,
                "measured"
            );
            Ok(json!({
                "single": seconds(m.single),
                "multi": seconds(m.multi),
                "threads": m.threads,
                "workloads": workloads,
            }))
        })
    }
}

/// Seconds rounded to 3 decimals.
fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Runs the measurement on its own OS thread and waits for it without
/// blocking the runtime. Cancelling `cancel`, or dropping this future, raises
/// the stop flag the loops look at.
async fn measure(
    path: Path,
    threads: usize,
    workload: Workload,
    cancel: &CancellationToken,
) -> anyhow::Result<Measured> {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("cpu-benchmark".into())
        .spawn(move || {
            // The receiver may be gone (run dropped): nothing left to tell.
            let _ = tx.send(measure_blocking(path, threads, workload, &flag));
        })
        .context("cpu-benchmark: cannot start the measuring thread")?;
    let outcome = tokio::select! {
        r = &mut rx => r,
        _ = cancel.cancelled() => {
            stop.store(true, Ordering::Relaxed);
            // The loops end within a block of steps; wait for them, so that
            // nothing of this run is left on the CPUs when it returns.
            rx.await
        }
    };
    outcome.map_err(|_| anyhow!("cpu-benchmark: the measuring thread ended without a result"))?
}

/// Raises the stop flag when the run's future goes away, however it ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `single`, then `multi` on `threads` threads released together.
fn measure_blocking(
    path: Path,
    threads: usize,
    workload: Workload,
    stop: &AtomicBool,
) -> anyhow::Result<Measured> {
    let (end, single) = workload::timed_chain(path, workload.steps, stop);
    check_end(end, workload, "single-thread")?;
    let runs = workload::parallel_chains(path, threads, workload.steps, stop)
        .with_context(|| format!("cpu-benchmark: cannot start {threads} benchmark threads"))?;
    Ok(Measured {
        single,
        multi: sum_of_runs(runs, workload, threads)?,
        threads,
    })
}

/// `multi`: the SUM of the threads' wall times (not their maximum or
/// mean: the documented shape), each thread's chain checked.
fn sum_of_runs(
    runs: Vec<(Result<u64, Stopped>, Duration)>,
    workload: Workload,
    threads: usize,
) -> anyhow::Result<Duration> {
    let mut multi = Duration::ZERO;
    for (i, (end, took)) in runs.into_iter().enumerate() {
        check_end(
            end,
            workload,
            &format!("multi-thread (thread {i} of {threads})"),
        )?;
        multi += took;
    }
    Ok(multi)
}

/// A chain that was stopped or ended on the wrong value gives no score.
fn check_end(end: Result<u64, Stopped>, workload: Workload, which: &str) -> anyhow::Result<()> {
    match end {
        Err(Stopped) => bail!("cpu-benchmark: cancelled during the {which} loop"),
        Ok(v) if v != workload.expected => bail!(
            "cpu-benchmark: the {which} loop ended on {v:#018x} instead of {:#018x}: \
             the CRC step is wrong, no score reported",
            workload.expected
        ),
        Ok(_) => Ok(()),
    }
}

/// Online CPUs, as `sysconf(_SC_NPROCESSORS_ONLN)` counts them.
fn online_cpus() -> usize {
    match std::fs::read_to_string(ONLINE_CPUS) {
        Ok(text) => match count_cpu_list(&text) {
            Some(n) if n > 0 => return n,
            _ => tracing::warn!("{ONLINE_CPUS}: cannot parse {text:?}"),
        },
        Err(e) => tracing::warn!("{ONLINE_CPUS}: {e}"),
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Counts the CPUs of a kernel CPU list such as `0-3,5,7-8`.
fn count_cpu_list(text: &str) -> Option<usize> {
    text.trim().split(',').try_fold(0usize, |count, range| {
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let cpu = range.parse::<usize>().ok()?;
                (cpu, cpu)
            }
        };
        (first <= last).then(|| count + last - first + 1)
    })
}

/// Runs the workloads command (program and arguments, no shell) and reads
/// the integer it prints.
async fn count_workloads(command: &[String]) -> anyhow::Result<u64> {
    let (program, args) = command
        .split_first()
        .context("cpu_benchmark.workloads_command is empty")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    let limits = crate::tasks::child::Limits {
        stdout: WORKLOADS_OUTPUT,
        stderr: WORKLOADS_OUTPUT,
        timeout: WORKLOADS_TIMEOUT,
    };
    let never = CancellationToken::new();
    let ended = crate::tasks::child::run(&mut cmd, limits, &never)
        .await
        .with_context(|| format!("workloads command {program:?}: cannot run it"))?;
    let (status, stdout, stderr) = match ended {
        Ended::Exited {
            status,
            stdout,
            stderr,
        } => (status, stdout, stderr),
        Ended::TooMuchOutput { stream, limit, .. } => {
            bail!(
                "workloads command {program:?}: wrote more than {limit} bytes to {stream}; killed"
            )
        }
        Ended::TimedOut | Ended::Cancelled => {
            bail!("workloads command {program:?}: no answer within {WORKLOADS_TIMEOUT:?}; killed")
        }
    };
    if !status.success() {
        bail!(
            "workloads command {program:?}: {} ({})",
            status,
            excerpt(&stderr)
        );
    }
    let text = String::from_utf8_lossy(&stdout);
    text.trim().parse::<u64>().map_err(|e| {
        anyhow!(
            "workloads command {program:?}: printed {:?}, not a number of workloads ({e})",
            excerpt(&stdout)
        )
    })
}

/// The start of a process's output, for an error message.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests;
