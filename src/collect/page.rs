//! `GET /` of the collector: the fleet on one page. A table of every node
//! held with its key figures and their age (sortable by any column: click
//! its head, or open the page at `#sort=<column>` or `#sort=<column>-`
//! for descending), above it how the CPU scores and speeds spread over the
//! fleet, as server-rendered bars.
//!
//! As the daemon's dashboard, it loads nothing: the style and the one small
//! script are inline, the script allowed by its hash in the CSP, and every
//! text a node sent (its error) is escaped.

use std::fmt::Write;
use std::sync::LazyLock;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::node::NodeState;
use super::Collected;
use crate::outputs::dashboard::{age, escape, short_num};
use crate::util::unix_time::unix_now;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1c1e21}\
header{background:#1f2d3d;color:#fff;padding:12px 16px}h1{margin:0;font-size:1.3em}header p{margin:4px 0 0;opacity:.8;font-size:.9em}\
main{padding:12px;max-width:1300px;margin:auto}.d{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px;margin-bottom:12px}\
section{background:#fff;border-radius:8px;padding:10px 12px;box-shadow:0 1px 2px rgba(0,0,0,.1);overflow-x:auto}h2{font-size:1em;margin:0 0 6px}\
svg{width:100%;height:auto;display:block}table{border-collapse:collapse;width:100%;font-size:.85em}\
th{text-align:left;cursor:pointer;user-select:none;border-bottom:2px solid #ccd;padding:3px 5px;white-space:nowrap}th.asc:after{content:' ▲'}th.desc:after{content:' ▼'}\
td{padding:2px 5px;border-bottom:1px solid #eee;white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#1a7f37}.bad{color:#c62828}td.e{white-space:normal;min-width:16em;max-width:28em;overflow-wrap:anywhere;font-size:.9em}";

/// Sorts the table by a column's `data-v` (numbers as numbers, blanks
/// last), and at load by `#sort=<key>` (`-` at the end: descending).
const SCRIPT: &str = "const t=document.getElementById('nodes'),b=t.tBodies[0],hs=[...t.tHead.rows[0].cells];let k=-1,d=1;\
function s(i,again){d=i==k&&again?-d:1;k=i;const r=[...b.rows];r.sort((x,y)=>{const v=e=>e.dataset.v??e.textContent,a=v(x.cells[i]),c=v(y.cells[i]);\
if(a===c)return 0;if(a==='')return 1;if(c==='')return -1;const p=Number(a),q=Number(c);\
return(isNaN(p)||isNaN(q)?a.localeCompare(c):p-q)*d});b.append(...r);hs.forEach((h,j)=>h.className=j==i?(d>0?'asc':'desc'):'')}\
hs.forEach((h,i)=>h.onclick=()=>s(i,true));const m=location.hash.match(/sort=(\\w+)(-?)/);\
if(m){const i=hs.findIndex(h=>h.dataset.k==m[1]);if(i>=0){s(i,false);if(m[2])s(i,true)}}";

/// The page's `Content-Security-Policy`: nothing loaded, the inline style,
/// and the script above by its hash.
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
    format!("default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'")
});

/// Bars of a distribution.
const BINS: usize = 12;

fn num(v: Option<f64>, scale: f64, digits: usize) -> (String, String) {
    match v {
        Some(v) => (format!("{v}"), format!("{:.*}", digits, v / scale)),
        None => (String::new(), "-".into()),
    }
}

/// The whole page.
pub fn render(state: &Collected) -> String {
    let now = unix_now();
    let round = state.round();
    let nodes = state.nodes();
    let mut page = String::with_capacity(2048 + nodes.len() * 640);
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>zos-perf collect: {scope}</title><style>{STYLE}</style></head><body>\
<header><h1>zos-perf collect: {scope}</h1><p>{} nodes held, {} answered the last round",
        nodes.len(),
        round.answered,
        scope = escape(&state.scope_text()),
    );
    if round.rounds > 0 {
        let _ = write!(
            page,
            " (ended {} ago, took {:.1} s)",
            age(now.saturating_sub(round.ended_at)),
            round.duration
        );
    } else {
        page.push_str(" (first round under way)");
    }
    if round.over_limit {
        page.push_str("; more nodes are up than --max-nodes holds");
    }
    if let Some(e) = &round.listing_error {
        let _ = write!(page, "; listing failed: {}", escape(e));
    }
    let _ = write!(
        page,
        " · version {}</p></header><main><div class=\"d\">",
        env!("CARGO_PKG_VERSION")
    );
    let values = |f: fn(&NodeState) -> Option<f64>| -> Vec<f64> {
        nodes
            .values()
            .filter_map(f)
            .filter(|v| v.is_finite())
            .collect()
    };
    histogram(
        &mut page,
        "CPU single-threaded, seconds (lower is faster)",
        &values(|n| n.cpu_single),
        1.0,
    );
    histogram(
        &mut page,
        "CPU multi-threaded, seconds (lower is faster)",
        &values(|n| n.cpu_multi),
        1.0,
    );
    histogram(
        &mut page,
        "Best download, Mbit/s",
        &values(|n| n.download),
        1e6,
    );
    histogram(&mut page, "Best upload, Mbit/s", &values(|n| n.upload), 1e6);
    page.push_str("</div><section><table id=\"nodes\"><thead><tr>");
    for (key, head) in [
        ("node", "node"),
        ("farm", "farm"),
        ("twin", "twin"),
        ("state", "state"),
        ("took", "took s"),
        ("cpu_single", "CPU-1 s"),
        ("cpu_multi", "CPU-N s"),
        ("download", "down Mbit/s"),
        ("upload", "up Mbit/s"),
        ("health", "failing checks"),
        ("ips", "IPs valid/invalid/skipped"),
        ("provision", "provision test"),
        ("age", "oldest result"),
        ("error", "last error"),
    ] {
        let _ = write!(page, "<th data-k=\"{key}\">{head}</th>");
    }
    page.push_str("</tr></thead><tbody>");
    for n in nodes.values() {
        row(&mut page, n, now);
    }
    let _ = writeln!(
        page,
        "</tbody></table></section></main><script>{SCRIPT}</script></body></html>"
    );
    page
}

fn row(page: &mut String, n: &NodeState, now: u64) {
    let cell = |page: &mut String, (v, shown): (String, String)| {
        let _ = write!(page, "<td class=\"n\" data-v=\"{v}\">{shown}</td>");
    };
    page.push_str("<tr>");
    cell(page, (n.node.to_string(), n.node.to_string()));
    cell(page, (n.farm.to_string(), n.farm.to_string()));
    cell(
        page,
        n.twin.map_or((String::new(), "-".into()), |t| {
            (t.to_string(), t.to_string())
        }),
    );
    let (class, state) = match (n.polled_at, n.answered) {
        (0, _) => ("", "not yet"),
        (_, true) => ("ok", "answered"),
        (_, false) => ("bad", "no answer"),
    };
    let _ = write!(
        page,
        "<td class=\"{class}\" data-v=\"{state}\">{state}</td>"
    );
    cell(page, num((n.polled_at > 0).then_some(n.took), 1.0, 2));
    cell(page, num(n.cpu_single, 1.0, 3));
    cell(page, num(n.cpu_multi, 1.0, 3));
    cell(page, num(n.download, 1e6, 1));
    cell(page, num(n.upload, 1e6, 1));
    match n.health_failing {
        Some(f) => {
            let class = if f == 0 { "ok" } else { "bad" };
            let _ = write!(page, "<td class=\"n {class}\" data-v=\"{f}\">{f}</td>");
        }
        None => cell(page, (String::new(), "-".into())),
    }
    match n.ips {
        Some([v, i, s]) => {
            let _ = write!(page, "<td class=\"n\" data-v=\"{v}\">{v}/{i}/{s}</td>");
        }
        None => cell(page, (String::new(), "-".into())),
    }
    match n.provision_pass {
        Some(p) => {
            let (class, text) = if p { ("ok", "pass") } else { ("bad", "fail") };
            let _ = write!(page, "<td class=\"{class}\" data-v=\"{text}\">{text}</td>");
        }
        None => cell(page, (String::new(), "-".into())),
    }
    match n.oldest_age(now) {
        Some(a) => cell(page, (a.to_string(), age(a))),
        None => cell(page, (String::new(), "-".into())),
    }
    let err = n.error.as_deref().map(escape).unwrap_or_default();
    // Sorted by its text: a node's text goes in no attribute.
    let _ = write!(page, "<td class=\"e bad\">{err}</td></tr>");
}

/// Bars of how `values` spread between their least and greatest, with
/// the count over each bar.
fn histogram(page: &mut String, title: &str, values: &[f64], scale: f64) {
    let _ = write!(
        page,
        "<section><h2>{} <small>({} nodes)</small></h2>",
        escape(title),
        values.len()
    );
    let (w, h, top, bottom) = (300.0, 120.0, 14.0, 100.0);
    let _ = write!(page, "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">", escape(title));
    if values.is_empty() {
        let _ = write!(page, "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#777\">no figures yet</text></svg></section>", w / 2.0, h / 2.0);
        return;
    }
    let scaled: Vec<f64> = values.iter().map(|v| v / scale).collect();
    let lo = scaled.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi - lo > 1e-12 { hi - lo } else { 1.0 };
    let mut counts = [0usize; BINS];
    for v in &scaled {
        let i = (((v - lo) / span) * BINS as f64) as usize;
        counts[i.min(BINS - 1)] += 1;
    }
    let most = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bar = w / BINS as f64;
    for (i, c) in counts.iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let bh = (bottom - top) * *c as f64 / most;
        let x = i as f64 * bar;
        let _ = write!(
            page,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#2f6fd6\"><title>{c}</title></rect>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\" fill=\"#333\">{c}</text>",
            x + 1.0,
            bottom - bh,
            bar - 2.0,
            x + bar / 2.0,
            bottom - bh - 2.0
        );
    }
    let _ = write!(
        page,
        "<line x1=\"0\" y1=\"{bottom}\" x2=\"{w}\" y2=\"{bottom}\" stroke=\"#999\"/>\
<g font-size=\"10\" fill=\"#555\"><text x=\"0\" y=\"{}\">{}</text><text x=\"{w}\" y=\"{}\" text-anchor=\"end\">{}</text></g></svg></section>",
        h - 6.0,
        short_num(lo),
        h - 6.0,
        short_num(hi)
    );
}
