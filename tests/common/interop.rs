//! The grid's TypeScript RMB client (`@threefold/rmb_direct_client`,
//! installed in tests/interop by scripts/interop-setup), driven through
//! tests/interop/rmb.js: one operation a run, JSON in on stdin, JSON out.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Runs one operation of tests/interop/rmb.js with `input` on its stdin;
/// returns the JSON of its last line of output.
pub fn rmb_js(op: &str, input: Value) -> Value {
    let dir = interop_dir();
    assert!(
        dir.join("node_modules/@threefold/rmb_direct_client")
            .is_dir(),
        "the TypeScript client is not installed: run scripts/interop-setup"
    );
    let out = super::pipe_into(
        Command::new("node").arg(dir.join("rmb.js")).arg(op),
        input.to_string().as_bytes(),
        "node must be installed (scripts/setup)",
    );
    assert!(
        out.status.success(),
        "rmb.js {op} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("rmb.js {op}: {e}: {stdout}"))
}
