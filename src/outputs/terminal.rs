//! `zos-perf history NAME`: a table of each run's key figures, newest
//! first, and a sparkline of each figure's trend, oldest to newest.

use std::fmt::Write;

use chrono::DateTime;

use crate::store::TaskResult;
use crate::tasks::view::{key_figures, Figure};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One bar per value, scaled between the smallest and the largest.
pub(crate) fn sparkline(values: &[f64]) -> String {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    values
        .iter()
        .map(|v| {
            if hi - lo < 1e-12 {
                BARS[3]
            } else {
                let i = ((v - lo) / (hi - lo) * (BARS.len() - 1) as f64).round() as usize;
                BARS[i.min(BARS.len() - 1)]
            }
        })
        .collect()
}

/// The table and the trend lines for `records` (newest first) of `name`.
pub fn history_table(name: &str, records: &[TaskResult]) -> String {
    let rows: Vec<(i64, Vec<Figure>)> = records
        .iter()
        .map(|r| (r.timestamp, key_figures(name, &r.result)))
        .collect();
    // The columns: every label seen, in the order the task gives them.
    let mut labels: Vec<&'static str> = Vec::new();
    for (_, figs) in &rows {
        for f in figs {
            if !labels.contains(&f.label) {
                labels.push(f.label);
            }
        }
    }
    let mut out = String::new();
    let _ = write!(out, "{:<20}", "TIME (UTC)");
    for l in &labels {
        let _ = write!(out, " {:>16}", l.to_uppercase());
    }
    out.push('\n');
    for (ts, figs) in &rows {
        let time = DateTime::from_timestamp(*ts, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| ts.to_string());
        let _ = write!(out, "{time:<20}");
        for l in &labels {
            let cell = figs
                .iter()
                .find(|f| f.label == *l)
                .map(|f| f.unit.show(f.value))
                .unwrap_or_else(|| "-".into());
            let _ = write!(out, " {cell:>16}");
        }
        out.push('\n');
    }
    if rows.len() > 1 {
        out.push_str("\ntrend, oldest to newest:\n");
        for l in &labels {
            let series: Vec<&Figure> = rows
                .iter()
                .rev()
                .filter_map(|(_, figs)| figs.iter().find(|f| f.label == *l))
                .collect();
            let values: Vec<f64> = series.iter().map(|f| f.value).collect();
            let (Some(first), Some(last)) = (series.first(), series.last()) else {
                continue;
            };
            let (lo, hi) = values
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(*v), b.max(*v))
                });
            let _ = writeln!(
                out,
                "{:<16} {}  min {}  max {}  last {}",
                l,
                sparkline(&values),
                first.unit.show(lo),
                first.unit.show(hi),
                last.unit.show(last.value)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sparkline_spans_the_range() {
        assert_eq!(sparkline(&[1.0, 2.0, 3.0]), "▁▅█");
        assert_eq!(sparkline(&[5.0, 5.0]), "▄▄");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn table_lists_runs_newest_first_with_a_trend() {
        let rec = |ts: i64, single: f64| TaskResult {
            name: "cpu-benchmark".into(),
            description: "d".into(),
            timestamp: ts,
            result: json!({"single": single, "multi": single / 4.0}),
        };
        let out = history_table(
            "cpu-benchmark",
            &[rec(1_700_000_600, 2.0), rec(1_700_000_000, 1.0)],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].contains("SINGLE") && lines[0].contains("MULTI"),
            "{out}"
        );
        assert!(
            lines[1].starts_with("2023-11-14 22:23:20") && lines[1].contains("2.000 s"),
            "{out}"
        );
        assert!(lines[2].contains("1.000 s"), "{out}");
        assert!(out.contains("single           ▁█"), "{out}");
    }
}
