//! What a task's result means, behind one trait: each task folder has a
//! `view.rs` that implements [`TaskView`], and every reader of results
//! (the history and its charts, `perf:status`'s problem count, the
//! dashboard, the metrics, `get --human`, a collector of many nodes) asks
//! the view of the result's task, found by name in [`super::VIEWS`].
//! Adding a task means writing its view, not editing the readers.
//!
//! Results are read as JSON values, not as the tasks' own types, because a
//! stored result may come from an older or newer version of the daemon (or
//! from the Go monitor): a field that is missing or of another type is
//! simply not a figure, not a problem, not a sample.

use std::fmt::Write;

use serde_json::Value;

use crate::text::Escaped;

/// How a task's result is read: one implementation per task, in its own
/// folder (`src/tasks/<task>/view.rs`).
pub trait TaskView: Send + Sync + 'static {
    /// The task's wire name (`cpu-benchmark`, ...), as [`super::Task::name`].
    fn name(&self) -> &'static str;

    /// The figures a person looks at first, in a fixed order: the columns
    /// of `zos-perf history`, the dashboard's table and charts.
    fn key_figures(&self, result: &Value) -> Vec<Figure>;

    /// How many problems the result reports: a run can finish (outcome
    /// `ok`) and still find six unreachable services. `perf:status` carries
    /// the count so `zos-perf tasks` shows `ok, 6 problems`.
    fn problem_count(&self, result: &Value) -> u64;

    /// The problems as lines for the dashboard card, unescaped (the reader
    /// escapes and clips them); empty when the task does not judge.
    fn problem_lines(&self, result: &Value) -> Vec<String>;

    /// The result for a person (`get --human`): indented lines, every
    /// string of the result escaped. `None` when the result does not have
    /// the task's shape; the reader then shows it as JSON.
    fn human(&self, result: &Value) -> Option<String>;

    /// The result's Prometheus gauges, in the order they are exposed. A
    /// family without a sample is left out by the encoder.
    fn metrics(&self, result: &Value) -> Vec<Family>;

    /// The named checks the result finds failing, each with its number of
    /// problems, in the result's order (names unescaped: the reader
    /// escapes them). A row per node (`zos-perf fleet`) shows them in one
    /// cell. `None` for a task that runs no named checks (the default),
    /// or a result without the task's shape.
    fn failing_checks(&self, _result: &Value) -> Option<Vec<(String, usize)>> {
        None
    }

    /// How many of the result's items are in each state, every state in a
    /// fixed order. A row per node shows them in one cell. `None` for a
    /// task whose items have no states (the default), or a result without
    /// the task's shape.
    fn states(&self, _result: &Value) -> Option<Vec<(&'static str, usize)>> {
        None
    }
}

/// How a figure is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    BitsPerSecond,
    Count,
}

impl Unit {
    /// `value` for a person: `1.234 s`, `941.2 Mbit/s`, `3`.
    pub fn show(self, value: f64) -> String {
        match self {
            Unit::Seconds => format!("{value:.3} s"),
            Unit::BitsPerSecond => mbits(value),
            Unit::Count => format!("{value}"),
        }
    }
}

/// One key figure of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub label: &'static str,
    pub value: f64,
    pub unit: Unit,
    /// Whether a higher value is better (for the chart's caption).
    pub higher_is_better: bool,
}

impl Figure {
    pub fn new(label: &'static str, value: f64, unit: Unit, higher_is_better: bool) -> Figure {
        Figure {
            label,
            value,
            unit,
            higher_is_better,
        }
    }
}

/// The labels of one sample: names from a fixed set, values from a
/// bounded one (docs/observability.md).
pub type Labels = Vec<(&'static str, String)>;

/// One family of gauges of a result: its name, its help text and its
/// samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub samples: Vec<(Labels, f64)>,
}

impl Family {
    /// A family of one sample without labels.
    pub fn one(name: &'static str, help: &'static str, value: f64) -> Family {
        Family {
            name,
            help,
            samples: vec![(Vec::new(), value)],
        }
    }
}

/// Label pairs from borrowed values.
pub fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// The view of task `name`, if it is a task this version knows.
pub fn view(name: &str) -> Option<&'static dyn TaskView> {
    super::VIEWS.iter().copied().find(|v| v.name() == name)
}

/// The key figures of task `name`'s result, in a fixed order; none for a
/// task this version does not know. A collector reads a node's stored
/// results with this, without a daemon.
pub fn key_figures(name: &str, result: &Value) -> Vec<Figure> {
    view(name)
        .map(|v| v.key_figures(result))
        .unwrap_or_default()
}

/// The problems in a result of task `name`; for a task this version does
/// not know, the strings of a result that is an array (a list of errors).
pub fn problem_count(name: &str, result: &Value) -> u64 {
    match view(name) {
        Some(v) => v.problem_count(result),
        None => strings_in_array(result),
    }
}

/// How many items of an array result are strings (0 for anything else).
pub fn strings_in_array(result: &Value) -> u64 {
    result
        .as_array()
        .map(|items| items.iter().filter(|i| i.is_string()).count())
        .unwrap_or(0) as u64
}

/// Every string of a result that is a list of errors, or a map of such
/// lists.
pub fn error_strings(result: &Value) -> Vec<String> {
    let all: Vec<&Value> = match result {
        Value::Object(m) => m
            .values()
            .flat_map(|v| v.as_array().into_iter().flatten())
            .collect(),
        Value::Array(a) => a.iter().collect(),
        _ => Vec::new(),
    };
    all.iter()
        .filter_map(|v| v.as_str())
        .map(str::to_string)
        .collect()
}

/// A list of errors for a person: the count, then one escaped line each.
/// `None` unless every item is a string.
pub fn human_error_list(result: &Value) -> Option<String> {
    let items = result.as_array()?;
    if !items.iter().all(Value::is_string) {
        return None;
    }
    let mut out = String::new();
    let _ = writeln!(out, "  {}", summary(items.len() as u64));
    for e in items {
        let _ = writeln!(out, "    - {}", Escaped(e.as_str()?));
    }
    Some(out)
}

/// "no problems", "1 problem", "3 problems".
pub fn summary(problems: u64) -> String {
    if problems == 0 {
        "no problems".into()
    } else {
        plural(problems as usize, "problem")
    }
}

/// "1 problem", "2 problems".
pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Bits per second as Mbit/s.
pub fn mbits(bps: f64) -> String {
    format!("{:.1} Mbit/s", bps / 1e6)
}

#[cfg(test)]
mod tests;
