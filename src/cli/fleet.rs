//! `zos-perf fleet --farm ID | --grid`: every up node of a farm or of the
//! whole grid, asked over the relay with a bounded number in flight
//! (`--concurrency`), one row printed per node as soon as it answers.
//!
//! The nodes come from the grid's GraphQL, page by page; the calls and the
//! stream of answers are the library's [`zos_perf::fleet`]. Rows come in
//! the order the nodes answer (each names its node): a node that does not
//! answer holds up no other row, and nothing is kept once printed, so
//! memory does not grow with the number of nodes. `--json` prints JSON
//! Lines, one object per node. A node that does not answer gets its error
//! in its row. Every text a node sent (check names, its error) is escaped
//! in the table and the CSV; `--json` is exact JSON. On a terminal, stderr
//! shows a progress line.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use zos_perf::config::Config;
use zos_perf::fleet::{self, Question, Scope};
use zos_perf::rmb::error::exit;
use zos_perf::rmb::RmbError;
use zos_perf::tasks::view;
use zos_perf::text::{self, Escaped, Keep};

use super::rmb::{RmbArgs, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// One node's line.
#[derive(Debug, Default, Serialize)]
pub struct Row {
    pub node: u32,
    pub twin: Option<u32>,
    pub cpu_single: Option<f64>,
    pub cpu_multi: Option<f64>,
    /// Best download and upload over the iperf runs without error, bits/s.
    pub download: Option<f64>,
    pub upload: Option<f64>,
    /// Health checks with errors, and how many errors each.
    pub health_problems: Option<Vec<(String, usize)>>,
    /// Farm public IPs by validation state.
    pub ips_valid: Option<usize>,
    pub ips_invalid: Option<usize>,
    pub ips_skipped: Option<usize>,
    /// Age of the oldest result shown, seconds.
    pub age: Option<u64>,
    /// The raw result, with `--task`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    pub error: Option<String>,
    #[serde(skip)]
    pub exit_code: u8,
}

/// Asks every up node of `scope`, printing each row as it comes. Fails
/// with exit code 11 when some node could not be asked (after printing).
pub async fn fleet(
    config: &Config,
    args: &RmbArgs,
    scope: Scope,
    concurrency: Option<usize>,
    task: Option<&str>,
    format: Format,
) -> Result<(), RmbError> {
    let settings = Settings::resolve(config, args);
    let graphql = config
        .grid_context()
        .graphql()
        .map_err(|e| RmbError::Other(format!("{e:#}")))?;
    let nodes = fleet::up_nodes(&graphql, scope, fleet::PAGE)
        .await
        .map_err(|e| RmbError::Other(format!("{e:#}")))?;
    if nodes.is_empty() {
        return Err(RmbError::Other(format!("{scope}: no node is up")));
    }
    let client = settings.connect().await?;
    let question = match task {
        Some(t) => Question {
            command: "zos.perf.get".into(),
            payload: serde_json::json!({ "Name": t }).to_string().into_bytes(),
            timeout: settings.timeout,
        },
        None => Question {
            command: "zos.perf.get_all".into(),
            payload: Vec::new(),
            timeout: settings.timeout,
        },
    };
    let total = nodes.len();
    let mut answers = fleet::ask(
        &client,
        nodes.iter().map(|n| n.node_id),
        &question,
        concurrency.unwrap_or(settings.concurrency),
    );
    let mut out = Output::new(format, task.is_some(), total);
    out.header()?;
    let now = zos_perf::unix_time::unix_now();
    while let Some(answer) = answers.next().await {
        let r = row(answer.node, answer.twin, answer.reply, task.is_some(), now);
        out.row(&r)?;
    }
    out.done();
    if out.failed > 0 {
        return Err(RmbError::Partial {
            failed: out.failed,
            total,
        });
    }
    Ok(())
}

/// Where the rows go: stdout, a line each, written as they come; and the
/// progress line on stderr when that is a terminal.
struct Output {
    format: Format,
    with_result: bool,
    total: usize,
    done: usize,
    failed: usize,
    progress: bool,
    /// Rows and the progress line share the screen: the line is cleared
    /// before each row and drawn again after it.
    shared_screen: bool,
    drawn: Option<Instant>,
}

impl Output {
    /// The progress line is redrawn at most this often (when it does not
    /// share the screen with the rows).
    const REDRAW: Duration = Duration::from_millis(100);

    fn new(format: Format, with_result: bool, total: usize) -> Output {
        let progress = std::io::stderr().is_terminal();
        Output {
            format,
            with_result,
            total,
            done: 0,
            failed: 0,
            progress,
            shared_screen: progress && std::io::stdout().is_terminal(),
            drawn: None,
        }
    }

    fn header(&mut self) -> Result<(), RmbError> {
        match self.format {
            Format::Table => self.write(&table_header(self.with_result)),
            Format::Csv => self.write(CSV_HEADER),
            Format::Json => Ok(()),
        }
    }

    fn row(&mut self, r: &Row) -> Result<(), RmbError> {
        self.done += 1;
        if r.error.is_some() {
            self.failed += 1;
        }
        let line = match self.format {
            Format::Table => table_line(r, self.with_result),
            Format::Csv => csv_line(r),
            Format::Json => {
                let json = serde_json::to_string(r)
                    .map_err(|e| RmbError::Other(format!("node {}: {e}", r.node)))?;
                text::json(&json).into_owned() + "\n"
            }
        };
        if self.shared_screen && self.drawn.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
        self.write(&line)?;
        if self.progress
            && (self.shared_screen
                || self.done == self.total
                || self.drawn.is_none_or(|t| t.elapsed() >= Self::REDRAW))
        {
            self.draw();
        }
        Ok(())
    }

    /// One line of our own text (its node values escaped already), with
    /// the last line of defence applied.
    fn write(&self, line: &str) -> Result<(), RmbError> {
        let line = text::escape(line, Keep::Lines);
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| RmbError::Other(format!("writing the rows to stdout: {e}")))
    }

    fn draw(&mut self) {
        let width = 30 * self.done / self.total.max(1);
        let failed = match self.failed {
            0 => String::new(),
            n => format!(", {n} failed"),
        };
        let _ = write!(
            std::io::stderr(),
            "\r\x1b[K[{}{}] {}/{} nodes{failed}",
            "#".repeat(width),
            " ".repeat(30 - width),
            self.done,
            self.total
        );
        let _ = std::io::stderr().flush();
        self.drawn = Some(Instant::now());
    }

    fn done(&mut self) {
        if self.drawn.is_some() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

fn row(
    node: u32,
    twin: Option<u32>,
    answer: Result<Vec<u8>, RmbError>,
    keep: bool,
    now: u64,
) -> Row {
    let mut r = Row {
        node,
        twin,
        ..Row::default()
    };
    let value = match answer.map(|b| serde_json::from_slice::<Value>(&b)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            r.error = Some(format!("the answer is not JSON: {e}"));
            r.exit_code = exit::BAD_REPLY;
            return r;
        }
        Err(e) => {
            r.exit_code = e.exit_code();
            r.error = Some(e.to_string());
            return r;
        }
    };
    let results = match &value {
        Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    };
    let mut oldest: Option<u64> = None;
    for item in &results {
        if let Some(ts) = item["timestamp"].as_u64() {
            oldest = Some(oldest.map_or(ts, |o| o.min(ts)));
        }
        let Some(task) = item["name"].as_str().and_then(view::view) else {
            continue;
        };
        let result = &item["result"];
        // Columns by the labels the task's view gives its figures: the
        // view, not this file, knows which task has which.
        for f in task.key_figures(result) {
            match f.label {
                "single" => r.cpu_single = Some(f.value),
                "multi" => r.cpu_multi = Some(f.value),
                "best download" => r.download = Some(f.value),
                "best upload" => r.upload = Some(f.value),
                _ => {}
            }
        }
        if let Some(checks) = task.failing_checks(result) {
            r.health_problems = Some(checks);
        }
        if let Some(states) = task.states(result) {
            let count = |state: &str| states.iter().find(|(s, _)| *s == state).map(|(_, n)| *n);
            r.ips_valid = count("valid");
            r.ips_invalid = count("invalid");
            r.ips_skipped = count("skipped");
        }
    }
    r.age = oldest.map(|o| now.saturating_sub(o));
    if keep {
        r.result = results.into_iter().next().map(|v| v["result"].clone());
    }
    r
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn mbps(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |b| format!("{:.1}", b / 1e6))
}

fn health(r: &Row) -> String {
    match &r.health_problems {
        None => "-".into(),
        Some(p) if p.is_empty() => "ok".into(),
        Some(p) => p
            .iter()
            .map(|(l, n)| format!("{}({n})", Escaped(l)))
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn ips(r: &Row) -> String {
    match (r.ips_valid, r.ips_invalid, r.ips_skipped) {
        (Some(v), Some(i), Some(s)) => format!("{v}/{i}/{s}"),
        _ => "-".into(),
    }
}

fn age(r: &Row) -> String {
    r.age.map_or_else(
        || "-".into(),
        |s| humantime::format_duration(Duration::from_secs(s)).to_string(),
    )
}

/// The human table's head. Speeds in Mbit/s, CPU in seconds (lower is
/// better), public IPs as valid/invalid/skipped.
pub fn table_header(with_result: bool) -> String {
    format!(
        "{:>6} {:>6} {:>8} {:>8} {:>9} {:>9} {:<18} {:<9} {:<14} {}\n",
        "NODE",
        "TWIN",
        "CPU-1",
        "CPU-N",
        "DOWN",
        "UP",
        "HEALTH",
        "IPS v/i/s",
        "AGE",
        if with_result {
            "RESULT / ERROR"
        } else {
            "ERROR"
        }
    )
}

/// One node's line of the table.
pub fn table_line(r: &Row, with_result: bool) -> String {
    let last = match (&r.error, &r.result) {
        (Some(e), _) => Escaped(e).to_string(),
        (None, Some(v)) if with_result => text::json(&v.to_string()).into_owned(),
        _ => String::new(),
    };
    format!(
        "{:>6} {:>6} {:>8} {:>8} {:>9} {:>9} {:<18} {:<9} {:<14} {}\n",
        r.node,
        opt(r.twin),
        opt(r.cpu_single),
        opt(r.cpu_multi),
        mbps(r.download),
        mbps(r.upload),
        health(r),
        ips(r),
        age(r),
        last
    )
}

/// The whole table of `rows` (the command prints it a line at a time).
#[cfg(test)]
pub fn table(rows: &[Row], with_result: bool) -> String {
    let mut out = table_header(with_result);
    for r in rows {
        out += &table_line(r, with_result);
    }
    out
}

/// The CSV header line; speeds in bits/s, age in seconds.
pub const CSV_HEADER: &str = "node,twin,cpu_single,cpu_multi,download_bps,upload_bps,health,ips_valid,ips_invalid,ips_skipped,age_secs,error\n";

/// One node's CSV line.
pub fn csv_line(r: &Row) -> String {
    // A node's text on one line, then quoted as CSV quotes.
    let field = |v: String| {
        let v = Escaped(&v).to_string();
        if v.contains([',', '"']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v
        }
    };
    let o = |v: Option<String>| v.unwrap_or_default();
    let cols = [
        r.node.to_string(),
        o(r.twin.map(|v| v.to_string())),
        o(r.cpu_single.map(|v| v.to_string())),
        o(r.cpu_multi.map(|v| v.to_string())),
        o(r.download.map(|v| v.to_string())),
        o(r.upload.map(|v| v.to_string())),
        if r.health_problems.is_some() {
            health(r)
        } else {
            String::new()
        },
        o(r.ips_valid.map(|v| v.to_string())),
        o(r.ips_invalid.map(|v| v.to_string())),
        o(r.ips_skipped.map(|v| v.to_string())),
        o(r.age.map(|v| v.to_string())),
        o(r.error.clone()),
    ];
    let mut line = cols.into_iter().map(field).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

/// CSV of `rows`, with the header line (printed a line at a time).
#[cfg(test)]
pub fn csv(rows: &[Row]) -> String {
    let mut out = CSV_HEADER.to_string();
    for r in rows {
        out += &csv_line(r);
    }
    out
}

#[cfg(test)]
mod tests;
