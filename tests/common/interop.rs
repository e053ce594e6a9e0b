//! The grid's TypeScript RMB client (`@threefold/rmb_direct_client`,
//! installed in tests/interop by scripts/interop-setup), driven through
//! tests/interop/rmb.js: one operation a run, or a batch of them, JSON in
//! on stdin, JSON out. Each run costs Node.js and the client's load, about a
//! second of CPU: a test asks for what it needs in one batch.

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

/// Runs `ops` (operation, input) in order, in one run of rmb.js; their
/// outputs, in the same order.
pub fn rmb_js_batch(ops: &[(&str, Value)]) -> Vec<Value> {
    let list: Vec<Value> = ops
        .iter()
        .map(|(op, input)| serde_json::json!({"op": op, "input": input}))
        .collect();
    let out = rmb_js("batch", serde_json::json!({ "ops": list }));
    let results = out["results"]
        .as_array()
        .unwrap_or_else(|| panic!("rmb.js batch: no results in {out}"))
        .clone();
    assert_eq!(results.len(), ops.len(), "rmb.js batch: {out}");
    results
}
