//! What a public-ip-validation result means: the farm's public IPs, each
//! `valid`, `invalid` (a problem) or `skipped`, with a reason. `{}` when
//! another node of the farm validates.

use std::fmt::Write;

use serde_json::Value;

use crate::tasks::view::{labels, summary, Family, Figure, TaskView, Unit};
use crate::text::Escaped;

/// The view of public-ip-validation's results.
pub struct View;

/// The public-ip states in label order.
pub const IP_STATES: [&str; 3] = ["valid", "invalid", "skipped"];

impl TaskView for View {
    fn name(&self) -> &'static str {
        super::super::PUBLIC_IP_VALIDATION
    }

    fn key_figures(&self, result: &Value) -> Vec<Figure> {
        if !result.is_object() {
            return Vec::new();
        }
        let c = public_ip_counts(result);
        vec![
            Figure::new("valid", c[0] as f64, Unit::Count, true),
            Figure::new("invalid", c[1] as f64, Unit::Count, false),
        ]
    }

    fn problem_count(&self, result: &Value) -> u64 {
        result
            .as_object()
            .map(|ips| ips.values().filter(|o| invalid(o)).count())
            .unwrap_or(0) as u64
    }

    fn problem_lines(&self, result: &Value) -> Vec<String> {
        let mut lines = Vec::new();
        for (ip, r) in result.as_object().into_iter().flatten() {
            if invalid(r) {
                let reason = r.get("reason").and_then(|s| s.as_str()).unwrap_or("");
                lines.push(format!("{ip}: {reason}"));
            }
        }
        lines
    }

    fn human(&self, result: &Value) -> Option<String> {
        let ips = result.as_object()?;
        let mut out = String::new();
        let _ = writeln!(out, "  {}", summary(self.problem_count(result)));
        if ips.is_empty() {
            let _ = writeln!(out, "  no public IPs to check");
        }
        let ips: Vec<(String, &Value)> = ips
            .iter()
            .map(|(k, v)| (Escaped(k).to_string(), v))
            .collect();
        let width = ips
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        for (ip, o) in ips {
            let state = Escaped(o.get("state").and_then(Value::as_str).unwrap_or("?"));
            let reason = Escaped(o.get("reason").and_then(Value::as_str).unwrap_or("")).to_string();
            let line = if reason.is_empty() {
                format!("  - {ip:<width$}  {state}")
            } else {
                format!("  - {ip:<width$}  {state}: {reason}")
            };
            let _ = writeln!(out, "{}", line.trim_end());
        }
        Some(out)
    }

    /// The farm's IPs by state, in [`IP_STATES`]' order.
    fn states(&self, result: &Value) -> Option<Vec<(&'static str, usize)>> {
        result.is_object().then(|| {
            IP_STATES
                .into_iter()
                .zip(public_ip_counts(result))
                .collect()
        })
    }

    fn metrics(&self, result: &Value) -> Vec<Family> {
        if !result.is_object() {
            return Vec::new();
        }
        let samples = IP_STATES
            .iter()
            .zip(public_ip_counts(result))
            .map(|(s, n)| (labels(&[("state", s)]), n as f64))
            .collect();
        vec![Family {
            name: "zos_perf_public_ips",
            help: "The farm's public IPs by state in the latest validation.",
            samples,
        }]
    }
}

/// Whether an IP's report says `invalid`.
fn invalid(report: &Value) -> bool {
    report.get("state").and_then(Value::as_str) == Some("invalid")
}

/// How many of the farm's IPs are valid, invalid and skipped.
pub fn public_ip_counts(result: &Value) -> [usize; 3] {
    let mut counts = [0; 3];
    for report in result.as_object().into_iter().flat_map(|m| m.values()) {
        let state = report.get("state").and_then(Value::as_str);
        if let Some(i) = IP_STATES.iter().position(|s| Some(*s) == state) {
            counts[i] += 1;
        }
    }
    counts
}
