//! Replays what the fuzz targets found (`fuzz/regressions/<target>/`), their
//! hand-written seeds (`fuzz/seeds/<target>/`) and their minimized corpora
//! (`fuzz/corpus/<target>/`) through the same checks the targets run
//! (`fuzz/checks/`), on stable Rust, without cargo-fuzz: a fixed crash
//! stays fixed. `scripts/fuzz` runs the targets themselves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

#[path = "../../fuzz/checks/bus_request.rs"]
mod bus_request;
#[path = "../../fuzz/checks/config_cron.rs"]
mod config_cron;
#[path = "../../fuzz/checks/frame_guard.rs"]
pub(crate) mod frame_guard;
#[path = "../../fuzz/checks/stored_value.rs"]
mod stored_value;
#[path = "../../fuzz/checks/stun.rs"]
mod stun;

/// Every file of `fuzz/<dir>/<target>`, sorted.
fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(dir)
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The CPU time this thread has used: what a check costs, however many
/// other tests share the machine's CPUs meanwhile (its wall time does not
/// say that: a 0.3 s input took 2.2 s beside seven other tests).
fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Runs `check` on each file, naming the file that fails, and refusing one
/// that is slow: the fuzz runs time out at 5 s in their instrumented build;
/// here the slowest input (frames of megabytes) takes well under a second
/// of CPU, so 2 s of it is a generous bound. The checks run on this thread.
fn replay(files: &[PathBuf], check: fn(&[u8])) {
    for file in files {
        let data = std::fs::read(file).expect("read input");
        let started = thread_cpu();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{}: check failed (input {:?})",
            file.display(),
            String::from_utf8_lossy(&data)
        );
        let used = thread_cpu() - started;
        assert!(
            used < Duration::from_secs(2),
            "{}: took {used:?} of CPU",
            file.display(),
        );
    }
}

#[test]
fn bus_request_regressions() {
    let files = inputs("regressions", "bus_request");
    assert!(!files.is_empty(), "no bus_request regression inputs");
    replay(&files, bus_request::check);
}

#[test]
fn config_cron_regressions() {
    let files = inputs("regressions", "config_cron");
    assert!(!files.is_empty(), "no config_cron regression inputs");
    replay(&files, config_cron::check);
}

#[test]
fn bus_request_seeds_and_corpus() {
    let mut files = inputs("seeds", "bus_request");
    files.extend(inputs("corpus", "bus_request"));
    replay(&files, bus_request::check);
}

#[test]
fn config_cron_seeds_and_corpus() {
    let mut files = inputs("seeds", "config_cron");
    files.extend(inputs("corpus", "config_cron"));
    replay(&files, config_cron::check);
}

#[test]
fn stored_value_seeds_corpus_and_regressions() {
    let mut files = inputs("seeds", "stored_value");
    files.extend(inputs("corpus", "stored_value"));
    files.extend(inputs("regressions", "stored_value"));
    assert!(!files.is_empty(), "no stored_value inputs");
    replay(&files, stored_value::check);
}

#[test]
fn frame_guard_seeds_corpus_and_regressions() {
    let mut files = inputs("seeds", "frame_guard");
    files.extend(inputs("corpus", "frame_guard"));
    files.extend(inputs("regressions", "frame_guard"));
    assert!(!files.is_empty(), "no frame_guard inputs");
    replay(&files, frame_guard::check);
}

#[test]
fn stun_seeds_and_corpus() {
    let mut files = inputs("seeds", "stun");
    assert!(!files.is_empty(), "no stun seeds");
    // The corpus and the regressions exist once `scripts/fuzz` has run.
    for dir in ["corpus", "regressions"] {
        if Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join(dir)
            .join("stun")
            .is_dir()
        {
            files.extend(inputs(dir, "stun"));
        }
    }
    replay(&files, stun::check);
}
