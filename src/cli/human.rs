//! A stored result rendered for a person: its age ("3 h ago"), speeds in
//! Mbit/s, durations in seconds with units, per-IP states as a list, and
//! each problem on a line of its own. The body is the task's view's
//! ([`zos_perf::tasks::TaskView::human`]); a task or a shape it does not know is shown as
//! indented JSON (a list of errors as a list), never hidden. Every
//! string of the result is shown escaped ([`Escaped`]): Redis is open to
//! anyone on the node, and a stored ESC must not reach the terminal.

use std::fmt::Write;

use zos_perf::store::TaskResult;
use zos_perf::tasks::view;
use zos_perf::text::{self, Escaped};

/// The whole record: a header (name, description, when) and the result.
pub fn render(r: &TaskResult, now: i64) -> String {
    let mut out = String::new();
    let when = chrono::DateTime::from_timestamp(r.timestamp, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{} (not a valid time)", r.timestamp));
    let _ = writeln!(out, "{}: {}", Escaped(&r.name), Escaped(&r.description));
    let _ = writeln!(out, "  measured {when} ({})", age(now - r.timestamp));
    let body = match view::view(&r.name) {
        Some(v) => v.human(&r.result),
        None => view::human_error_list(&r.result),
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
        assert_eq!(view::mbits(941_000_000.0), "941.0 Mbit/s");
    }
}
