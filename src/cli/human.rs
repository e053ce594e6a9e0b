//! A stored result rendered for a person: its age ("3 h ago"), speeds in
//! Mbit/s, durations in seconds with units, per-IP states as a list, and
//! each problem on a line of its own. One renderer per result shape; a
//! shape it does not know is shown as indented JSON, never hidden. Every
//! string of the result is shown escaped ([`Escaped`]): Redis is open to
//! anyone on the node, and a stored ESC must not reach the terminal.

use std::fmt::Write;

use serde_json::{Map, Value};
use zos_perf::store::TaskResult;
use zos_perf::tasks::{problems, CPU_BENCHMARK, HEALTHCHECK, IPERF, PUBLIC_IP_VALIDATION};
use zos_perf::text::{self, Escaped};

/// The whole record: a header (name, description, when) and the result.
pub fn render(r: &TaskResult, now: i64) -> String {
    let mut out = String::new();
    let when = chrono::DateTime::from_timestamp(r.timestamp, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{} (not a valid time)", r.timestamp));
    let _ = writeln!(out, "{}: {}", Escaped(&r.name), Escaped(&r.description));
    let _ = writeln!(out, "  measured {when} ({})", age(now - r.timestamp));
    let body = match r.name.as_str() {
        CPU_BENCHMARK => cpu(&r.result),
        HEALTHCHECK => healthcheck(&r.result),
        IPERF => iperf(&r.result),
        PUBLIC_IP_VALIDATION => public_ip(&r.result),
        _ => match r.result.as_array() {
            Some(items) if items.iter().all(Value::is_string) => error_list(items),
            _ => None,
        },
    };
    match body {
        Some(lines) => out.push_str(&lines),
        None => {
            let json = serde_json::to_string_pretty(&r.result).unwrap_or_default();
            for line in text::json(&json).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

/// "45 s ago", "12 min ago", "3 h ago", "2 d ago"; "in 5 min" for a time
/// ahead of this clock.
pub fn age(seconds: i64) -> String {
    let (n, ahead) = if seconds < 0 {
        (seconds.unsigned_abs(), true)
    } else {
        (seconds as u64, false)
    };
    let span = match n {
        0..=59 => format!("{n} s"),
        60..=3599 => format!("{} min", n / 60),
        3600..=172_799 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if ahead {
        format!("in {span}, ahead of this clock")
    } else {
        format!("{span} ago")
    }
}

/// Bits per second as Mbit/s.
pub fn mbits(bps: f64) -> String {
    format!("{:.1} Mbit/s", bps / 1e6)
}

fn cpu(result: &Value) -> Option<String> {
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

fn healthcheck(result: &Value) -> Option<String> {
    let checks = result.as_object()?;
    let mut out = String::new();
    let total = problems::count(HEALTHCHECK, result);
    let _ = writeln!(out, "  {}", summary(total));
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

fn iperf(result: &Value) -> Option<String> {
    let entries = result.as_array()?;
    let mut out = String::new();
    let _ = writeln!(out, "  {}", summary(problems::count(IPERF, result)));
    if entries.is_empty() {
        let _ = writeln!(out, "  no targets were tested");
    }
    for e in entries {
        let e = e.as_object()?;
        let _ = writeln!(out, "  {}", iperf_entry(e));
    }
    Some(out)
}

/// One line: the target (a grid node, or a public server), protocol,
/// speeds or error.
fn iperf_entry(e: &Map<String, Value>) -> String {
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

fn public_ip(result: &Value) -> Option<String> {
    let ips = result.as_object()?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {}",
        summary(problems::count(PUBLIC_IP_VALIDATION, result))
    );
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

fn error_list(items: &[Value]) -> Option<String> {
    let mut out = String::new();
    let _ = writeln!(out, "  {}", summary(items.len() as u64));
    for e in items {
        let _ = writeln!(out, "    - {}", Escaped(e.as_str()?));
    }
    Some(out)
}

fn summary(problems: u64) -> String {
    if problems == 0 {
        "no problems".into()
    } else {
        plural(problems as usize, "problem")
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(5), "5 s ago");
        assert_eq!(age(12 * 60 + 5), "12 min ago");
        assert_eq!(age(3 * 3600 + 100), "3 h ago");
        assert_eq!(age(3 * 86_400), "3 d ago");
        assert_eq!(age(-300), "in 5 min, ahead of this clock");
        assert_eq!(mbits(941_000_000.0), "941.0 Mbit/s");
    }
}
