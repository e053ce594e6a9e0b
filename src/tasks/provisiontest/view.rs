//! What a provisiontest result means: the list of errors of the VM boot
//! test; empty when the VM booted and answered. Each error is a problem.

use serde_json::Value;

use crate::tasks::view::{self, Family, Figure, TaskView, Unit};

/// The view of provisiontest's results.
pub struct View;

impl TaskView for View {
    fn name(&self) -> &'static str {
        super::super::PROVISIONTEST
    }

    fn key_figures(&self, result: &Value) -> Vec<Figure> {
        match result.as_array() {
            Some(errors) => vec![Figure::new(
                "pass",
                f64::from(u8::from(errors.is_empty())),
                Unit::Count,
                true,
            )],
            None => Vec::new(),
        }
    }

    fn problem_count(&self, result: &Value) -> u64 {
        view::strings_in_array(result)
    }

    fn problem_lines(&self, result: &Value) -> Vec<String> {
        view::error_strings(result)
    }

    fn human(&self, result: &Value) -> Option<String> {
        view::human_error_list(result)
    }

    fn metrics(&self, result: &Value) -> Vec<Family> {
        match result.as_array() {
            Some(errors) => vec![Family::one(
                "zos_perf_provisiontest_pass",
                "1 when the latest VM boot test passed, else 0.",
                f64::from(u8::from(errors.is_empty())),
            )],
            None => Vec::new(),
        }
    }
}
