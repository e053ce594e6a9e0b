//! What a cpu-benchmark result means: two times in seconds (lower is
//! faster), the threads of the multi-threaded run and the workloads on the
//! node. It measures; it does not judge, so it has no problems.

use std::fmt::Write;

use serde_json::Value;

use crate::tasks::view::{Family, Figure, TaskView, Unit};

/// The view of cpu-benchmark's results.
pub struct View;

/// The result's numbers and their gauges.
const GAUGES: [(&str, &str, &str); 4] = [
    (
        "single",
        "zos_perf_cpu_single_seconds",
        "Time of the single-threaded CPU benchmark (lower is faster).",
    ),
    (
        "multi",
        "zos_perf_cpu_multi_seconds",
        "Time of the multi-threaded CPU benchmark (lower is faster).",
    ),
    (
        "threads",
        "zos_perf_cpu_threads",
        "Threads the multi-threaded CPU benchmark used.",
    ),
    (
        "workloads",
        "zos_perf_cpu_workloads",
        "Workloads on the node when the CPU benchmark ran.",
    ),
];

impl TaskView for View {
    fn name(&self) -> &'static str {
        super::super::CPU_BENCHMARK
    }

    fn key_figures(&self, result: &Value) -> Vec<Figure> {
        ["single", "multi"]
            .into_iter()
            .filter_map(|k| result.get(k).and_then(Value::as_f64).map(|v| (k, v)))
            .map(|(label, v)| Figure::new(label, v, Unit::Seconds, false))
            .collect()
    }

    fn problem_count(&self, _result: &Value) -> u64 {
        0
    }

    fn problem_lines(&self, _result: &Value) -> Vec<String> {
        Vec::new()
    }

    fn human(&self, result: &Value) -> Option<String> {
        let o = result.as_object()?;
        let secs = |k: &str| o.get(k).and_then(Value::as_f64);
        let mut out = String::new();
        let _ = writeln!(out, "  single thread  {:.3} s", secs("single")?);
        let _ = writeln!(
            out,
            "  multi thread   {:.3} s on {} threads",
            secs("multi")?,
            o.get("threads").and_then(Value::as_u64).unwrap_or(0)
        );
        if let Some(w) = o.get("workloads").and_then(Value::as_u64) {
            let _ = writeln!(out, "  workloads      {w} running");
        }
        Some(out)
    }

    fn metrics(&self, result: &Value) -> Vec<Family> {
        GAUGES
            .into_iter()
            .filter_map(|(key, name, help)| {
                let v = result.get(key).and_then(Value::as_f64)?;
                Some(Family::one(name, help, v))
            })
            .collect()
    }
}
