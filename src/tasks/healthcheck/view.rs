//! What a healthcheck result means: one list of errors per check (the
//! check passes when its list is empty); every error is a problem.

use std::fmt::Write;

use serde_json::Value;

use crate::tasks::view::{self, labels, plural, summary, Family, Figure, TaskView, Unit};
use crate::text::Escaped;

/// At most this many checks get a series: check names come from the
/// result, and a label set must stay bounded.
pub const MAX_CHECKS: usize = 16;

/// The view of healthcheck's results.
pub struct View;

impl TaskView for View {
    fn name(&self) -> &'static str {
        super::super::HEALTHCHECK
    }

    fn key_figures(&self, result: &Value) -> Vec<Figure> {
        let Some(checks) = result.as_object() else {
            return Vec::new();
        };
        let failing = checks
            .values()
            .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
            .count();
        vec![Figure::new(
            "failing checks",
            failing as f64,
            Unit::Count,
            false,
        )]
    }

    fn problem_count(&self, result: &Value) -> u64 {
        result
            .as_object()
            .map(|checks| {
                checks
                    .values()
                    .filter_map(Value::as_array)
                    .map(Vec::len)
                    .sum::<usize>()
            })
            .unwrap_or(0) as u64
    }

    fn problem_lines(&self, result: &Value) -> Vec<String> {
        view::error_strings(result)
    }

    fn human(&self, result: &Value) -> Option<String> {
        let checks = result.as_object()?;
        let mut out = String::new();
        let _ = writeln!(out, "  {}", summary(self.problem_count(result)));
        for (check, errors) in checks {
            let check = Escaped(check);
            let errors = errors.as_array()?;
            if errors.is_empty() {
                let _ = writeln!(out, "  {check}: ok");
                continue;
            }
            let _ = writeln!(out, "  {check}: {}", plural(errors.len(), "problem"));
            for e in errors {
                let _ = writeln!(out, "    - {}", Escaped(e.as_str().unwrap_or_default()));
            }
        }
        Some(out)
    }

    fn failing_checks(&self, result: &Value) -> Option<Vec<(String, usize)>> {
        let checks = result.as_object()?;
        Some(
            checks
                .iter()
                .filter_map(|(check, errors)| {
                    let n = errors.as_array().map_or(0, Vec::len);
                    (n > 0).then(|| (check.clone(), n))
                })
                .collect(),
        )
    }

    fn metrics(&self, result: &Value) -> Vec<Family> {
        let Some(checks) = result.as_object() else {
            return Vec::new();
        };
        let samples = checks
            .iter()
            .take(MAX_CHECKS)
            .map(|(check, errors)| {
                let n = errors.as_array().map_or(0, Vec::len);
                (labels(&[("check", check)]), n as f64)
            })
            .collect();
        vec![Family {
            name: "zos_perf_healthcheck_failing_items",
            help: "Problems the check found in the latest run (0 = passing).",
            samples,
        }]
    }
}
