//! The figures a person looks at first in each task's result: what the
//! `history` table, the dashboard's charts and the result metrics show.
//!
//! Results are read as JSON values, not as the tasks' own types, because a
//! stored result may come from an older or newer version of the daemon (or
//! from the Go monitor): a field that is missing or of another type is
//! simply not a figure.

use std::net::IpAddr;

use serde_json::Value;

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
            Unit::BitsPerSecond => format!("{:.1} Mbit/s", value / 1e6),
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

fn figure(label: &'static str, value: f64, unit: Unit, higher_is_better: bool) -> Figure {
    Figure {
        label,
        value,
        unit,
        higher_is_better,
    }
}

/// The key figures of task `name`'s result value, in a fixed order.
pub fn key_figures(name: &str, result: &Value) -> Vec<Figure> {
    match name {
        "cpu-benchmark" => ["single", "multi"]
            .into_iter()
            .filter_map(|k| result.get(k).and_then(Value::as_f64).map(|v| (k, v)))
            .map(|(k, v)| {
                let label = if k == "single" { "single" } else { "multi" };
                figure(label, v, Unit::Seconds, false)
            })
            .collect(),
        "iperf" => {
            let t = iperf_totals(result);
            let mut out = Vec::new();
            if let Some(v) = t.iter().filter_map(|t| t.best_download).reduce(f64::max) {
                out.push(figure("best download", v, Unit::BitsPerSecond, true));
            }
            if let Some(v) = t.iter().filter_map(|t| t.best_upload).reduce(f64::max) {
                out.push(figure("best upload", v, Unit::BitsPerSecond, true));
            }
            out
        }
        "healthcheck" => match result.as_object() {
            Some(checks) => {
                let failing = checks
                    .values()
                    .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
                    .count();
                vec![figure("failing checks", failing as f64, Unit::Count, false)]
            }
            None => Vec::new(),
        },
        "public-ip-validation" => match result.as_object() {
            Some(_) => {
                let c = public_ip_counts(result);
                vec![
                    figure("valid", c[0] as f64, Unit::Count, true),
                    figure("invalid", c[1] as f64, Unit::Count, false),
                ]
            }
            None => Vec::new(),
        },
        "provisiontest" => match result.as_array() {
            Some(errors) => vec![figure(
                "pass",
                f64::from(u8::from(errors.is_empty())),
                Unit::Count,
                true,
            )],
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

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
/// Targets themselves are not kept apart: they are drawn at random each
/// run, so per-target figures would be a new series every time.
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

/// The public-ip states in label order.
pub const IP_STATES: [&str; 3] = ["valid", "invalid", "skipped"];

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
        let k = key_figures("iperf", &r);
        assert_eq!(k[0].value, 300.0);
        assert_eq!(k[1].value, 50.0);
    }

    #[test]
    fn the_other_tasks_give_their_key_figures() {
        let cpu = key_figures("cpu-benchmark", &json!({"single": 1.5, "multi": 0.4}));
        assert_eq!(cpu.iter().map(|f| f.value).collect::<Vec<_>>(), [1.5, 0.4]);
        let hc = key_figures("healthcheck", &json!({"cache": [], "network": ["x", "y"]}));
        assert_eq!(hc[0].value, 1.0);
        let ips = json!({"a": {"state": "valid"}, "b": {"state": "invalid"},
                         "c": {"state": "valid"}, "d": {"state": "skipped"}});
        assert_eq!(public_ip_counts(&ips), [2, 1, 1]);
        assert_eq!(key_figures("public-ip-validation", &ips)[0].value, 2.0);
        assert_eq!(key_figures("provisiontest", &json!([]))[0].value, 1.0);
        assert_eq!(key_figures("provisiontest", &json!(["boot"]))[0].value, 0.0);
        assert!(key_figures("cpu-benchmark", &json!("junk")).is_empty());
    }
}
