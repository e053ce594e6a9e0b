//! The benchmark's workload: 64 Mi chained CRC steps from a fixed seed, timed
//! on one thread, then on one OS thread per online CPU released together.
//!
//! Everything here runs on plain OS threads and blocks; the task bridges it
//! to the async monitor. A stop flag is looked at between blocks of
//! [`CHECK_EVERY`] steps, so a cancelled run ends within about a millisecond
//! while the look itself costs one relaxed load per 65,536 steps.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[cfg(target_arch = "x86_64")]
use super::crc::ClmulKernel;
use super::crc::{portable_update, Block, Path};

/// The fixed start of every chain (docs/tasks/cpu-benchmark.md).
pub const SEED: u64 = 0x0a0b_0c0d_1234_5ff0;
/// Steps of one chain: 64 Mi.
pub const STEPS: u64 = 64 * 1024 * 1024;
/// Where a chain of [`STEPS`] from [`SEED`] must end.
pub const FINAL: u64 = 0x4092_42b8_972c_b0b1;
/// Steps between two looks at the stop flag (about 1 ms of work).
pub const CHECK_EVERY: u64 = 1 << 16;

/// The chain was stopped by its flag before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// One chain: `steps` times `seed = CRC-64/XZ(seed as 8 LE bytes)`, looking
/// at `stop` every [`CHECK_EVERY`] steps.
pub fn chain(path: Path, seed: u64, steps: u64, stop: &AtomicBool) -> Result<u64, Stopped> {
    chain_checked_every(path, seed, steps, CHECK_EVERY, stop)
}

/// [`chain`] with another distance between looks at the flag (the benchmark
/// measures what the looks cost by comparing with one look in all).
pub fn chain_checked_every(
    path: Path,
    seed: u64,
    steps: u64,
    every: u64,
    stop: &AtomicBool,
) -> Result<u64, Stopped> {
    #[cfg(target_arch = "x86_64")]
    if path == Path::Clmul {
        if let Some(kernel) = ClmulKernel::new() {
            return run(seed, steps, every, stop, |crc, block, start, len| {
                kernel.update(crc, block, start, len)
            });
        }
    }
    let _ = path;
    run(seed, steps, every, stop, portable_update)
}

/// The loop itself, as the reference's: the seed goes to memory, the kernel
/// is called on its address.
#[inline(always)]
fn run(
    seed: u64,
    steps: u64,
    every: u64,
    stop: &AtomicBool,
    kernel: impl Fn(u64, &Block, usize, usize) -> u64,
) -> Result<u64, Stopped> {
    // Where the seed sits in its block and how long it is stay opaque to the
    // optimizer, as they are to the reference's separately compiled routine,
    // so the kernel does its general work every step. Offset 8 is where the
    // reference's stack variable sits in its 16-byte block.
    let start = black_box(8usize);
    let len = black_box(8usize);
    // The CRC each step starts from (0) likewise: with it known, a whole-
    // program (LTO) build folds `!crc` and its register move out of the
    // kernel, which the reference's routine always does at run time.
    let crc = black_box(0u64);
    let every = every.max(1);
    let mut block = Block::default();
    // Checked once here, so the step below is one 8-byte store and the call:
    // no bounds check or slice copy that a size-optimised build (the `dist`
    // profile) would leave as calls of their own, making each step ~5
    // cycles dearer than the reference's. Every access to the block goes
    // through `block_ptr`: the stores through it and the kernel's shared
    // view of it, one at a time.
    assert!(
        start <= block.0.len() - 8,
        "seed offset {start} outside the block"
    );
    let block_ptr: *mut Block = &mut block;
    let slot = block_ptr.cast::<u8>().wrapping_add(start).cast::<[u8; 8]>();
    let mut seed = seed;
    let mut left = steps;
    while left > 0 {
        if stop.load(Ordering::Relaxed) {
            return Err(Stopped);
        }
        let n = left.min(every);
        for _ in 0..n {
            // SAFETY: `slot` points at bytes start..start + 8 of the block,
            // inside it (checked above); `[u8; 8]` needs no alignment; no
            // reference to the block is alive during the store, and the
            // shared one handed to the kernel ends with its call.
            seed = unsafe {
                slot.write(seed.to_le_bytes());
                kernel(crc, &*block_ptr, start, len)
            };
        }
        left -= n;
    }
    Ok(seed)
}

/// One chain of `steps` from [`SEED`], timed (wall clock around the loop).
pub(crate) fn timed_chain(
    path: Path,
    steps: u64,
    stop: &AtomicBool,
) -> (Result<u64, Stopped>, Duration) {
    let begin = Instant::now();
    let end = chain(path, SEED, steps, stop);
    (end, begin.elapsed())
}

/// Runs one timed chain on each of `threads` new OS threads, all released
/// together once every one of them is ready. Returns each thread's outcome,
/// or the error of a thread that could not be started.
pub fn parallel_chains(
    path: Path,
    threads: usize,
    steps: u64,
    stop: &AtomicBool,
) -> std::io::Result<Vec<(Result<u64, Stopped>, Duration)>> {
    let line = StartLine::new(threads);
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let line = &line;
            let spawned = std::thread::Builder::new()
                .name(format!("cpu-bench-{i}"))
                .spawn_scoped(scope, move || {
                    if line.arrive_and_wait() {
                        timed_chain(path, steps, stop)
                    } else {
                        (Err(Stopped), Duration::ZERO)
                    }
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // Release the ones already waiting, telling them not to run.
                    line.abort();
                    return Err(e);
                }
            }
        }
        Ok(handles
            .into_iter()
            .map(|h| h.join().unwrap_or((Err(Stopped), Duration::ZERO)))
            .collect())
    })
}

/// A barrier that can also be called off: threads wait until all `parties`
/// have arrived (go) or until [`StartLine::abort`] (do not go). A plain
/// `std::sync::Barrier` would leave the started threads waiting forever if a
/// later one could not be spawned.
struct StartLine {
    state: Mutex<(usize, Option<bool>)>,
    changed: Condvar,
    parties: usize,
}

impl StartLine {
    fn new(parties: usize) -> Self {
        Self {
            state: Mutex::new((0, None)),
            changed: Condvar::new(),
            parties,
        }
    }

    /// Waits for the others; true means go.
    fn arrive_and_wait(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 += 1;
        if state.0 >= self.parties && state.1.is_none() {
            state.1 = Some(true);
            self.changed.notify_all();
        }
        loop {
            if let Some(go) = state.1 {
                return go;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn abort(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.1.is_none() {
            state.1 = Some(false);
        }
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_chain(seed: u64, steps: u64) -> u64 {
        let reference = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
        (0..steps).fold(seed, |s, _| reference.checksum(&s.to_le_bytes()))
    }

    fn paths() -> Vec<Path> {
        let mut paths = vec![Path::Portable];
        if Path::detect() == Path::Clmul {
            paths.push(Path::Clmul);
        }
        paths
    }

    // The full 64 Mi chain on both paths, and that raised flag stops running
    // chains within 100 ms, are checked in tests/it/cpu_benchmark.rs, against
    // the library as the suite builds it: this module's harness is compiled
    // at opt-level 0 (scripts/suite-rustc), where the portable path alone
    // takes over a minute and a block of steps between two looks at the
    // flag is about 30 times longer than in the daemon.

    #[test]
    fn blocks_between_flag_checks_do_not_change_the_chain() {
        let stop = AtomicBool::new(false);
        let steps = 3 * CHECK_EVERY + 12_345;
        let expected = crate_chain(0x1234_5678_9abc_def0, steps);
        for path in paths() {
            for every in [1, 1000, CHECK_EVERY, steps, u64::MAX] {
                let end = chain_checked_every(path, 0x1234_5678_9abc_def0, steps, every, &stop);
                assert_eq!(end, Ok(expected), "{path:?} every {every}");
            }
            assert_eq!(chain(path, 7, 0, &stop), Ok(7), "{path:?}: zero steps");
        }
    }

    #[test]
    fn a_raised_flag_stops_a_chain_before_it_starts() {
        let stop = AtomicBool::new(true);
        for path in paths() {
            assert_eq!(chain(path, SEED, STEPS, &stop), Err(Stopped), "{path:?}");
        }
    }

    #[test]
    fn parallel_chains_run_one_per_thread_and_all_finish() {
        let stop = AtomicBool::new(false);
        let steps = 50_000;
        let expected = crate_chain(SEED, steps);
        let runs = parallel_chains(Path::detect(), 3, steps, &stop).expect("threads start");
        assert_eq!(runs.len(), 3);
        for (end, took) in runs {
            assert_eq!(end, Ok(expected));
            assert!(took > Duration::ZERO);
        }
    }

    #[test]
    fn an_aborted_start_line_releases_the_waiting_threads_without_running() {
        let line = StartLine::new(3);
        std::thread::scope(|scope| {
            let waiting: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| line.arrive_and_wait()))
                .collect();
            line.abort();
            for w in waiting {
                assert!(!w.join().expect("no panic"));
            }
        });
        let line = StartLine::new(2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| line.arrive_and_wait());
            assert!(line.arrive_and_wait());
            assert!(other.join().expect("no panic"));
        });
    }
}
