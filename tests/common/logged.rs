//! An iperf3 program that logs each invocation, for the iperf tests: they
//! see what the task ran (arguments, pid) while the real iperf3 runs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// An iperf3 program that logs `<pid> <args>` to `calls.log` beside it,
/// then becomes iperf3 (same pid, so killing it kills iperf3).
pub struct Logged {
    dir: tempfile::TempDir,
}

impl Logged {
    pub fn new() -> Logged {
        Logged::with_body("exec iperf3 \"$@\"")
    }

    /// A program whose body after the logging line is `body`.
    pub fn with_body(body: &str) -> Logged {
        let dir = tempfile::Builder::new()
            .prefix("zos-perf-iperf-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("calls.log");
        let script = format!("#!/bin/sh\necho \"$$ $*\" >> '{}'\n{body}\n", log.display());
        let path = dir.path().join("iperf3");
        std::fs::write(&path, script).expect("write wrapper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Logged { dir }
    }

    pub fn program(&self) -> PathBuf {
        self.dir.path().join("iperf3")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `(pid, args)` of every invocation so far.
    pub fn calls(&self) -> Vec<(u32, String)> {
        let text = std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let (pid, args) = l.split_once(' ').expect("log line");
                (pid.parse().expect("pid"), args.to_string())
            })
            .collect()
    }

    /// The arguments of every invocation so far.
    pub fn args(&self) -> Vec<String> {
        self.calls().into_iter().map(|(_, args)| args).collect()
    }
}
