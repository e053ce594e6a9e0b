//! The shipped binary as the process tests start: its config file written
//! into the test's directory, `zos-perf run` with its stderr collected
//! line by line (and killed when dropped), and a command run to its end
//! within a time limit. One copy, so that every daemon test starts the
//! daemon the same way and reads the same log.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");

/// The Cargo profile the binary was built with (`suite` under
/// scripts/test, `release` under `cargo test --release`): the name of the
/// folder it is in, `target/<profile>/`, which scripts/package reads.
fn profile() -> &'static str {
    Path::new(BIN)
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .expect("the binary is in target/<profile>/")
}

/// Packages [`BIN`] (scripts/package, not building it again) into the
/// directory `out`; the path of the .deb.
pub fn package_into(out: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package");
    let done = Command::new(&script)
        .args(["--profile", profile(), "--no-build", "--output"])
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(done.status.success(), "scripts/package failed: {said}");
    std::fs::read_dir(out)
        .expect("package output dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {} (scripts/package said {said})", out.display()))
}

/// Writes `text` as the config file `<dir>/zos-perf.toml`; its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("zos-perf.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The pid of the private redis-server recorded in a daemon's runtime
/// directory `runtime` (`redis.pid`), if there is one.
pub fn recorded_pid(runtime: &Path) -> Option<i32> {
    std::fs::read_to_string(runtime.join("redis.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Runs `cmd` to its end, killing it (and failing) after `limit`; it dies
/// with the test too (SIGKILL).
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = super::die_with_parent(cmd, Signal::SIGKILL)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start zos-perf");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("zos-perf output"),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("zos-perf did not finish within {limit:?}");
        }
    }
}

/// A running `zos-perf ... run`: its stderr collected (colour codes
/// removed), killed and reaped when dropped.
pub struct Daemon {
    pub child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts `cmd` (its arguments end in `run`), stdout discarded.
    pub fn spawn(cmd: &mut Command) -> Daemon {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zos-perf run");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&super::observe::strip_ansi(&line));
                log.push('\n');
            }
        });
        Daemon {
            child,
            log,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for `needle` in the log (panics with the log after `timeout`).
    pub fn wait_log(&self, timeout: Duration, needle: &str) {
        super::output::wait_in_log(timeout, needle, || self.log());
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends `signal` and waits up to `within` for the exit: its status
    /// and how long it took. The log is complete afterwards, unless a
    /// process the daemon left behind (the redis-server of a SIGKILLed
    /// one) still holds its stderr open: that is waited for 2 s, no longer.
    pub fn signal(&mut self, signal: Signal, within: Duration) -> (ExitStatus, Duration) {
        let t = Instant::now();
        kill(Pid::from_raw(self.pid()), signal).expect("signal the daemon");
        let child = &mut self.child;
        let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::wait_for(within, "the daemon to exit", || {
                child.try_wait().expect("wait")
            })
        }))
        .unwrap_or_else(|_| panic!("{signal} ignored; log:\n{}", self.log()));
        let took = t.elapsed();
        let end = Instant::now() + Duration::from_secs(2);
        while self.reader.as_ref().is_some_and(|r| !r.is_finished()) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(r) = self.reader.take_if(|r| r.is_finished()) {
            let _ = r.join();
        }
        (status, took)
    }

    /// SIGTERM, and what every shutdown must do: exit 0 within 5 s.
    pub fn stop_cleanly(&mut self) {
        let (status, took) = self.signal(Signal::SIGTERM, Duration::from_secs(10));
        assert!(status.success(), "exit {status}; log:\n{}", self.log());
        assert!(
            took < Duration::from_secs(5),
            "stopped in {took:?}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
