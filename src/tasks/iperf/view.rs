//! What an iperf result means: one entry per target and protocol, with
//! speeds in bits per second or an error. Targets are drawn at random each
//! run, so they are summed up per test type and address family (best,
//! median, tested, failed) rather than kept apart: per-target figures would
//! be a new series every time. Every entry with an error is a problem.

use std::fmt::Write;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::tasks::view::{labels, mbits, summary, Family, Figure, Labels, TaskView, Unit};
use crate::text::Escaped;

/// The view of iperf's results.
pub struct View;

/// The address families, as labels.
pub const FAMILIES: [&str; 2] = ["ipv4", "ipv6"];
/// The iperf test types, as labels.
pub const TEST_TYPES: [&str; 2] = ["tcp", "udp"];

/// iperf figures of one test type and address family.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IperfTotal {
    pub test_type: &'static str,
    pub family: &'static str,
    pub best_download: Option<f64>,
    pub best_upload: Option<f64>,
    pub median_download: Option<f64>,
    pub median_upload: Option<f64>,
    /// Targets measured, and of them those that failed.
    pub tested: usize,
    pub failed: usize,
}

impl TaskView for View {
    fn name(&self) -> &'static str {
        super::super::IPERF
    }

    fn key_figures(&self, result: &Value) -> Vec<Figure> {
        let t = iperf_totals(result);
        let mut out = Vec::new();
        if let Some(v) = t.iter().filter_map(|t| t.best_download).reduce(f64::max) {
            out.push(Figure::new("best download", v, Unit::BitsPerSecond, true));
        }
        if let Some(v) = t.iter().filter_map(|t| t.best_upload).reduce(f64::max) {
            out.push(Figure::new("best upload", v, Unit::BitsPerSecond, true));
        }
        out
    }

    fn problem_count(&self, result: &Value) -> u64 {
        result
            .as_array()
            .map(|entries| entries.iter().filter(|e| failed(e)).count())
            .unwrap_or(0) as u64
    }

    /// The dashboard lists no iperf problems: the failed targets are counted
    /// in its metrics and shown by `get --human`.
    fn problem_lines(&self, _result: &Value) -> Vec<String> {
        Vec::new()
    }

    fn human(&self, result: &Value) -> Option<String> {
        let entries = result.as_array()?;
        let mut out = String::new();
        let _ = writeln!(out, "  {}", summary(self.problem_count(result)));
        if entries.is_empty() {
            let _ = writeln!(out, "  no targets were tested");
        }
        for e in entries {
            let e = e.as_object()?;
            let _ = writeln!(out, "  {}", human_entry(e));
        }
        Some(out)
    }

    fn metrics(&self, result: &Value) -> Vec<Family> {
        let totals = iperf_totals(result);
        // Bytes, the base unit of Prometheus's conventions (promtool
        // refuses bits): iperf's bits per second divided by 8.
        let pick = |f: fn(&IperfTotal) -> Option<f64>| -> Vec<(Labels, f64)> {
            totals
                .iter()
                .filter_map(|t| {
                    f(t).map(|v| {
                        (
                            labels(&[("test_type", t.test_type), ("family", t.family)]),
                            v,
                        )
                    })
                })
                .collect()
        };
        let gauge = |name, help, samples| Family {
            name,
            help,
            samples,
        };
        vec![
            gauge(
                "zos_perf_iperf_best_download_bytes_per_second",
                "Best download speed over the targets of this test type and address family.",
                pick(|t| t.best_download.map(|b| b / 8.0)),
            ),
            gauge(
                "zos_perf_iperf_best_upload_bytes_per_second",
                "Best upload speed over the targets of this test type and address family.",
                pick(|t| t.best_upload.map(|b| b / 8.0)),
            ),
            gauge(
                "zos_perf_iperf_median_download_bytes_per_second",
                "Median download speed over the targets that answered.",
                pick(|t| t.median_download.map(|b| b / 8.0)),
            ),
            gauge(
                "zos_perf_iperf_median_upload_bytes_per_second",
                "Median upload speed over the targets that answered.",
                pick(|t| t.median_upload.map(|b| b / 8.0)),
            ),
            gauge(
                "zos_perf_iperf_targets",
                "Targets measured in the latest run.",
                pick(|t| Some(t.tested as f64)),
            ),
            gauge(
                "zos_perf_iperf_failed_targets",
                "Targets of the latest run whose measurement failed.",
                pick(|t| Some(t.failed as f64)),
            ),
        ]
    }
}

/// Whether an entry carries a non-empty `error`.
fn failed(entry: &Value) -> bool {
    entry
        .get("error")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// One line: the target (a grid node, or a public server), protocol,
/// speeds or error.
fn human_entry(e: &Map<String, Value>) -> String {
    let s = |k: &str| Escaped(e.get(k).and_then(Value::as_str).unwrap_or("")).to_string();
    let target = if let Some(host) = e.get("server_host").and_then(Value::as_str) {
        let host = Escaped(host);
        let port = e
            .get("server_port")
            .and_then(Value::as_u64)
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!("server {host} ({}{port})", s("server_ip"))
    } else {
        let node = e
            .get("node_id")
            .and_then(Value::as_u64)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".into());
        format!("node {node} ({})", s("node_ip"))
    };
    let protocol = s("test_type");
    if !s("error").is_empty() {
        return format!("{target} {protocol}: error: {}", s("error"));
    }
    let speed = |k: &str| e.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    format!(
        "{target} {protocol}: down {}, up {}",
        mbits(speed("download_speed")),
        mbits(speed("upload_speed"))
    )
}

/// The family of an iperf entry's target: `node_ip` (grid-nodes mode) or
/// `server_ip` (public-servers mode); a CIDR suffix is ignored.
fn family(entry: &Value) -> Option<&'static str> {
    let ip = entry
        .get("node_ip")
        .or_else(|| entry.get("server_ip"))
        .and_then(Value::as_str)?;
    let ip = ip.split('/').next().unwrap_or(ip);
    match ip.trim_matches(['[', ']']).parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some(FAMILIES[0]),
        IpAddr::V6(_) => Some(FAMILIES[1]),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Per test type and family (always the four combinations, in order):
/// best and median speeds over the targets that answered, and counts.
pub fn iperf_totals(result: &Value) -> Vec<IperfTotal> {
    let entries = result.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = Vec::new();
    for test_type in TEST_TYPES {
        for fam in FAMILIES {
            let mine: Vec<&Value> = entries
                .iter()
                .filter(|e| {
                    e.get("test_type").and_then(Value::as_str) == Some(test_type)
                        && family(e) == Some(fam)
                })
                .collect();
            let ok: Vec<&&Value> = mine
                .iter()
                .filter(|e| {
                    e.get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                })
                .collect();
            let speeds = |k: &str| -> Vec<f64> {
                ok.iter()
                    .filter_map(|e| e.get(k).and_then(Value::as_f64))
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .collect()
            };
            let (down, up) = (speeds("download_speed"), speeds("upload_speed"));
            out.push(IperfTotal {
                test_type,
                family: fam,
                best_download: down.iter().copied().reduce(f64::max),
                best_upload: up.iter().copied().reduce(f64::max),
                median_download: median(down),
                median_upload: median(up),
                tested: mine.len(),
                failed: mine.len() - ok.len(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(ip: &str, t: &str, down: f64, up: f64, err: &str) -> Value {
        json!({"upload_speed": up, "download_speed": down, "node_id": 1, "node_ip": ip,
               "test_type": t, "error": err, "cpu_report": {}})
    }

    #[test]
    fn iperf_is_summed_up_per_type_and_family() {
        let r = json!([
            entry("198.51.100.2", "tcp", 100.0, 50.0, ""),
            entry("198.51.100.3", "tcp", 300.0, 10.0, ""),
            entry("198.51.100.4", "tcp", 900.0, 900.0, "busy"),
            entry("2001:db8::2", "udp", 7.0, 8.0, ""),
            json!({"server_ip": "203.0.113.9", "test_type": "udp", "error": "",
                   "download_speed": 5.0, "upload_speed": 6.0}),
        ]);
        let t = iperf_totals(&r);
        assert_eq!(t.len(), 4);
        let tcp4 = &t[0];
        assert_eq!((tcp4.test_type, tcp4.family), ("tcp", "ipv4"));
        assert_eq!(tcp4.best_download, Some(300.0));
        assert_eq!(tcp4.median_download, Some(200.0));
        assert_eq!((tcp4.tested, tcp4.failed), (3, 1));
        assert_eq!(t[1].tested, 0);
        assert_eq!(t[1].best_download, None);
        assert_eq!(t[2].best_upload, Some(6.0));
        assert_eq!(t[3].best_upload, Some(8.0));
        let k = View.key_figures(&r);
        assert_eq!(k[0].value, 300.0);
        assert_eq!(k[1].value, 50.0);
        assert_eq!(View.problem_count(&r), 1);
    }
}
