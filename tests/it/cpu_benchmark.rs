//! The CPU benchmark's loop as the daemon runs it: the value every chain
//! must reach (docs/tasks/cpu-benchmark.md) on each path this CPU has, and
//! how soon a raised stop flag or a cancelled run ends the loops. Here, in
//! the library as built, rather than among the unit tests of
//! `tasks::cpu_benchmark`, whose harness the suite compiles at opt-level 0
//! (scripts/suite-rustc): there the portable path takes over a minute, and
//! a block of steps between two looks at the flag is about 30 times longer
//! than in the daemon.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zos_perf::grid::{GridContext, Network};
use zos_perf::tasks::cpu_benchmark::crc::Path;
use zos_perf::tasks::cpu_benchmark::workload::{
    chain, parallel_chains, Stopped, FINAL, SEED, STEPS,
};
use zos_perf::tasks::cpu_benchmark::{CpuBenchmark, CpuBenchmarkConfig, Workload};
use zos_perf::tasks::{RunContext, Task};

#[test]
fn the_full_64_mi_loop_ends_on_the_spec_value_on_both_paths() {
    let mut paths = vec![Path::Portable];
    if Path::detect() == Path::Clmul {
        paths.push(Path::Clmul);
    }
    let stop = AtomicBool::new(false);
    for path in paths {
        assert_eq!(chain(path, SEED, STEPS, &stop), Ok(FINAL), "{path:?}");
    }
}

#[test]
fn raising_the_flag_stops_running_parallel_chains_within_100_ms() {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (done, finished) = std::sync::mpsc::channel();
    let flag = stop.clone();
    std::thread::spawn(move || {
        let _ = done.send(parallel_chains(Path::detect(), threads, u64::MAX, &flag));
    });
    // The chains can never finish by themselves: let them get going.
    let early = finished.recv_timeout(Duration::from_millis(200));
    assert!(early.is_err(), "chains of u64::MAX steps ended");
    let raised = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let runs = finished
        .recv_timeout(Duration::from_secs(10))
        .expect("the chains stop at all")
        .expect("threads start");
    let took = raised.elapsed();
    assert!(took < Duration::from_millis(100), "stopped after {took:?}");
    assert_eq!(runs.len(), threads);
    assert!(runs.iter().all(|(end, _)| *end == Err(Stopped)));
}

#[tokio::test]
async fn cancelling_a_running_benchmark_stops_it_within_100_ms() {
    let grid = GridContext::new(Network::Main, &Default::default());
    let endless = Workload {
        steps: u64::MAX,
        expected: 0,
    };
    let task = CpuBenchmark::new(&CpuBenchmarkConfig::default(), &grid).with_workload(endless);
    let ctx = RunContext::default();
    let run = task.run(&ctx);
    tokio::pin!(run);
    // The run cannot finish by itself: give the loop time to get going.
    tokio::select! {
        r = &mut run => panic!("an endless run ended: {r:?}"),
        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    let cancelled = Instant::now();
    ctx.cancel.cancel();
    let err = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the run stops at all")
        .expect_err("a cancelled run has no result");
    let took = cancelled.elapsed();
    assert!(took < Duration::from_millis(100), "stopped after {took:?}");
    assert!(format!("{err:#}").contains("cancelled"), "{err:#}");
}
