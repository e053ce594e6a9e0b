//! `GET /`: one self-contained HTML page, every task's status, latest key
//! figures and their trend over the stored history as server-rendered SVG.
//!
//! Nodes may be offline from the internet, so the page loads nothing: no
//! script, no font, no image (the HTTP layer also forbids it by CSP). It is
//! plain HTML with a small style sheet that stacks the cards on a phone.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::metrics::Sources;
use crate::store::history::Summary;
use crate::store::TaskResult;
use crate::store::TaskStatus;
use crate::tasks::view::{self, key_figures, Figure, Unit};

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1c1e21}\
header{background:#1f2d3d;color:#fff;padding:12px 16px}header h1{margin:0;font-size:1.3em}header p{margin:4px 0 0;opacity:.8;font-size:.9em}\
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px;padding:12px;max-width:1200px;margin:auto}\
section{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.1);min-width:0}\
h2{font-size:1.1em;margin:0 0 6px}.st{font-size:.85em;color:#555;margin:0 0 8px}\
.ok{color:#1a7f37}.bad{color:#c62828}.run{color:#9a6700}\
table{border-collapse:collapse;width:100%;font-size:.9em}td{padding:2px 4px;border-bottom:1px solid #eee}td.v{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:8px 0 0}figcaption{font-size:.8em;color:#555}svg{width:100%;height:auto;display:block}\
ul{padding-left:18px;font-size:.85em;overflow-wrap:anywhere}@media(max-width:420px){main{grid-template-columns:1fr;padding:6px}}";

/// Chart size in SVG units (scaled to the card's width).
const W: f64 = 320.0;
const H: f64 = 110.0;
/// Problems listed under a task at most.
const MAX_LINES: usize = 8;

/// `&`, `<`, `>`, `"` and `'` escaped for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn when(ts: i64) -> String {
    DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

fn ago(ts: i64, now: i64) -> String {
    format!("{} ago", age(u64::try_from(now - ts).unwrap_or(0)))
}

/// `s` seconds as read at a glance: seconds, minutes, hours or days (the
/// node's dashboard and the collector's fleet page).
pub(crate) fn age(s: u64) -> String {
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

/// The whole page.
pub fn render(sources: &Sources) -> String {
    let now = Utc::now();
    let store = &sources.store;
    let mut page = String::with_capacity(32 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>zos-perf</title><style>{STYLE}</style></head><body>\
<header><h1>zos-perf</h1><p>Node performance and health, {} UTC, version {}</p></header><main>",
        now.format("%Y-%m-%d %H:%M:%S"),
        env!("CARGO_PKG_VERSION")
    );
    for name in &sources.tasks {
        let history = store.history().summaries(name);
        card(
            &mut page,
            name,
            store.status(name).as_ref(),
            store.latest(name).as_ref(),
            &history,
            now.timestamp(),
        );
    }
    if sources.tasks.is_empty() {
        page.push_str("<section><h2>No task is enabled</h2></section>");
    }
    page.push_str("</main></body></html>\n");
    page
}

fn card(
    page: &mut String,
    name: &str,
    status: Option<&TaskStatus>,
    latest: Option<&TaskResult>,
    history: &[Summary],
    now: i64,
) {
    let _ = write!(
        page,
        "<section id=\"{0}\"><h2>{0}</h2><p class=\"st\">",
        escape(name)
    );
    match status {
        Some(s) => {
            let (class, state) = match (s.state, s.last_outcome) {
                (crate::store::State::Running, _) => ("run", "running".to_string()),
                (_, Some(o)) if o.as_str() == "ok" => ("ok", "last run ok".to_string()),
                (_, Some(o)) => ("bad", format!("last run {}", o.as_str())),
                (_, None) => ("run", "not run yet".to_string()),
            };
            let _ = write!(page, "<span class=\"{class}\">{}</span>", escape(&state));
            if let Some(d) = s.last_duration {
                let _ = write!(page, " · took {d:.1} s");
            }
            let _ = write!(page, " · {} runs, {} failed", s.runs, s.failures);
            if let Some(t) = s.next_fire {
                let _ = write!(page, " · next {} UTC", when(t));
            }
            if let Some(err) = &s.last_error {
                let short: String = err.chars().take(200).collect();
                let _ = write!(page, "<br><span class=\"bad\">{}</span>", escape(&short));
            }
        }
        None => page.push_str("no status yet"),
    }
    page.push_str("</p>");
    let Some(latest) = latest else {
        page.push_str("<p>No result stored yet.</p></section>");
        return;
    };
    let figures = key_figures(name, &latest.result);
    let _ = write!(
        page,
        "<table><tr><td>latest result</td><td class=\"v\">{} UTC ({})</td></tr>",
        when(latest.timestamp),
        ago(latest.timestamp, now)
    );
    for f in &figures {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"v\">{}</td></tr>",
            escape(f.label),
            escape(&f.unit.show(f.value))
        );
    }
    page.push_str("</table>");
    problems(page, name, &latest.result);
    // Oldest first, left to right.
    let points: Vec<(i64, &[Figure])> = history
        .iter()
        .rev()
        .map(|s| (s.timestamp, s.figures.as_slice()))
        .collect();
    for f in &figures {
        let series: Vec<(i64, f64)> = points
            .iter()
            .filter_map(|(t, fs)| {
                fs.iter()
                    .find(|x| x.label == f.label)
                    .map(|x| (*t, x.value))
            })
            .collect();
        chart(page, f, &series);
    }
    page.push_str("</section>");
}

/// What went wrong in the latest result, as lines (the task's view says
/// which: healthcheck errors, invalid IPs, provisiontest errors).
fn problems(page: &mut String, name: &str, result: &serde_json::Value) {
    let lines = view::view(name)
        .map(|v| v.problem_lines(result))
        .unwrap_or_default();
    if lines.is_empty() {
        return;
    }
    page.push_str("<ul>");
    for l in lines.iter().take(MAX_LINES) {
        let short: String = l.chars().take(200).collect();
        let _ = write!(page, "<li class=\"bad\">{}</li>", escape(&short));
    }
    if lines.len() > MAX_LINES {
        let _ = write!(page, "<li>… {} more</li>", lines.len() - MAX_LINES);
    }
    page.push_str("</ul>");
}

/// One line chart of a figure over time, with its range and time span.
fn chart(page: &mut String, f: &Figure, series: &[(i64, f64)]) {
    let scale = |v: f64| match f.unit {
        Unit::BitsPerSecond => v / 1e6,
        _ => v,
    };
    let unit = match f.unit {
        Unit::Seconds => ", seconds",
        Unit::BitsPerSecond => ", Mbit/s",
        Unit::Count => "",
    };
    let better = if f.higher_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    let _ = write!(
        page,
        "<figure><figcaption>{}{unit} over {} runs ({better})</figcaption>",
        escape(f.label),
        series.len()
    );
    let (left, right, top, bottom) = (44.0, W - 6.0, 8.0, H - 18.0);
    let _ = write!(
        page,
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{} trend\" xmlns=\"http://www.w3.org/2000/svg\">\
<rect x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{}\" fill=\"#fafbfc\" stroke=\"#ddd\"/>",
        escape(f.label),
        right - left,
        bottom - top
    );
    if let (Some(first), Some(last)) = (series.first(), series.last()) {
        let vals: Vec<f64> = series.iter().map(|(_, v)| scale(*v)).collect();
        let (mut lo, mut hi) = vals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        if (hi - lo).abs() < 1e-9 {
            lo -= 1.0_f64.max(lo.abs() * 0.1);
            hi += 1.0_f64.max(hi.abs() * 0.1);
        }
        let (t0, t1) = (first.0, last.0.max(first.0 + 1));
        let x = |t: i64| left + (t - t0) as f64 / (t1 - t0) as f64 * (right - left);
        let y = |v: f64| bottom - (v - lo) / (hi - lo) * (bottom - top);
        let points: Vec<String> = series
            .iter()
            .zip(&vals)
            .map(|((t, _), v)| {
                let px = if series.len() == 1 {
                    (left + right) / 2.0
                } else {
                    x(*t)
                };
                format!("{px:.1},{:.1}", y(*v))
            })
            .collect();
        let _ = write!(
            page,
            "<polyline fill=\"none\" stroke=\"#2f6fd6\" stroke-width=\"1.6\" points=\"{}\"/>",
            points.join(" ")
        );
        if let Some(p) = points.last() {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                page,
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"2.6\" fill=\"#2f6fd6\"/>"
            );
        }
        let _ = write!(
            page,
            "<g font-size=\"9\" fill=\"#555\"><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
<text x=\"{left}\" y=\"{}\">{}</text><text x=\"{right}\" y=\"{}\" text-anchor=\"end\">{}</text></g>",
            left - 3.0,
            top + 8.0,
            escape(&short_num(hi)),
            left - 3.0,
            bottom,
            escape(&short_num(lo)),
            H - 4.0,
            escape(&when(first.0)),
            H - 4.0,
            escape(&when(last.0)),
        );
    } else {
        let _ = write!(
            page,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#777\">no history yet</text>",
            W / 2.0,
            H / 2.0
        );
    }
    page.push_str("</svg></figure>");
}

/// A number in at most about four significant figures, for axis labels.
pub(crate) fn short_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn a_chart_has_a_line_through_every_point() {
        let f = Figure {
            label: "single",
            value: 1.0,
            unit: Unit::Seconds,
            higher_is_better: false,
        };
        let mut page = String::new();
        chart(&mut page, &f, &[(100, 1.0), (200, 2.0), (300, 1.5)]);
        assert!(page.contains("<svg"), "{page}");
        let points = page
            .split("points=\"")
            .nth(1)
            .and_then(|s| s.split('"').next());
        assert_eq!(points.map(|p| p.split(' ').count()), Some(3), "{page}");
        let mut empty = String::new();
        chart(&mut empty, &f, &[]);
        assert!(empty.contains("no history yet"));
    }
}
