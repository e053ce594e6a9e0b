//! Reading what a run of the `zos-perf` binary left: its exit code and
//! stderr, and the one check most command tests make of them.

use std::process::Output;

/// The exit code; a run killed by a signal fails the test.
pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed, not exited: {}", stderr(out)))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The rows of `fleet --json` (JSON Lines, in the order the nodes
/// answered), sorted by node id; a line that is not JSON fails the test.
pub fn fleet_rows(out: &Output) -> Vec<serde_json::Value> {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{e}: {l:?} in {text:?} / {}", stderr(out)))
        })
        .collect();
    rows.sort_by_key(|r| r["node"].as_u64());
    rows
}

/// stderr contains `text`; the failure shows all of stderr.
pub fn assert_stderr(out: &Output, text: &str) {
    let err = stderr(out);
    assert!(err.contains(text), "no {text:?} in stderr:\n{err}");
}

/// The run exited with `expected` and said `text` on stderr.
pub fn assert_fails(out: &Output, expected: i32, text: &str) {
    assert_eq!(code(out), expected, "{}", stderr(out));
    assert_stderr(out, text);
}

/// Waits up to `timeout` for `needle` in what `log` returns (a process's
/// log collected so far); the failure shows the whole log.
pub fn wait_in_log(timeout: std::time::Duration, needle: &str, log: impl Fn() -> String) {
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        super::wait_for(timeout, needle, || log().contains(needle).then_some(()))
    }));
    if found.is_err() {
        panic!("no {needle:?} in the log:\n{}", log());
    }
}
