//! `zos-perf fleet --farm ID`: every online node of a farm, asked at once
//! (a bounded number in flight), in one table.
//!
//! The nodes come from the grid's GraphQL (those up now); each is asked
//! `zos.perf.get_all` (or `zos.perf.get` for `--task`) over the relay. A
//! node that does not answer gets its error in the table and the others
//! are shown all the same. Every text a node sent (check names, its error)
//! is escaped in the table and the CSV; `--json` is exact JSON.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use zos_perf::config::Config;
use zos_perf::grid::graphql::NodeFilter;
use zos_perf::rmb::error::exit;
use zos_perf::rmb::{RmbClient, RmbError};
use zos_perf::text::{self, Escaped};

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

/// Asks every up node of `farm` and prints the table. Fails with exit
/// code 11 when some node could not be asked (after printing).
pub async fn fleet(
    config: &Config,
    args: &RmbArgs,
    farm: u32,
    task: Option<&str>,
    format: Format,
) -> Result<(), RmbError> {
    let settings = Settings::resolve(config, args);
    let graphql = config
        .grid_context()
        .graphql()
        .map_err(|e| RmbError::Other(format!("{e:#}")))?;
    let mut nodes: Vec<u32> = graphql
        .up_nodes(&NodeFilter::farm(farm), None)
        .await
        .map_err(|e| RmbError::Other(format!("farm {farm}: {e:#}")))?
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.is_empty() {
        return Err(RmbError::Other(format!("farm {farm}: no node is up")));
    }
    let client = settings.connect().await?;
    let rows = ask_all(
        &client,
        &nodes,
        task,
        settings.timeout,
        settings.concurrency,
    )
    .await;
    let out = match format {
        Format::Table => table(&rows, task.is_some()),
        Format::Json => super::json(&rows).unwrap_or_default() + "\n",
        Format::Csv => csv(&rows),
    };
    out!("{out}");
    let failed = rows.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        return Err(RmbError::Partial {
            failed,
            total: rows.len(),
        });
    }
    Ok(())
}

/// Asks each node, at most `concurrency` at once, with a progress line
/// on a terminal.
pub async fn ask_all(
    client: &RmbClient,
    nodes: &[u32],
    task: Option<&str>,
    timeout: Duration,
    concurrency: usize,
) -> Vec<Row> {
    let (cmd, payload) = match task {
        Some(t) => ("zos.perf.get", serde_json::json!({ "Name": t }).to_string()),
        None => ("zos.perf.get_all", String::new()),
    };
    let progress = std::io::stderr().is_terminal();
    let now = zos_perf::unix_time::unix_now();
    let mut rows: Vec<Row> = Vec::with_capacity(nodes.len());
    let mut stream = futures::stream::iter(nodes.iter().copied())
        .map(|node| {
            let payload = payload.as_bytes();
            async move {
                let twin = client.twins().node_twin(node).await.ok();
                let answer = client.call_node(node, cmd, payload, timeout).await;
                row(node, twin, answer, task.is_some(), now)
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(r) = stream.next().await {
        rows.push(r);
        if progress {
            let done = rows.len();
            let width = 30 * done / nodes.len();
            eprint!(
                "\r[{}{}] {done}/{} nodes",
                "#".repeat(width),
                " ".repeat(30 - width),
                nodes.len()
            );
            let _ = std::io::stderr().flush();
        }
    }
    if progress {
        eprintln!();
    }
    rows.sort_by_key(|r| r.node);
    rows
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
        let result = &item["result"];
        match item["name"].as_str() {
            Some("cpu-benchmark") => {
                r.cpu_single = result["single"].as_f64();
                r.cpu_multi = result["multi"].as_f64();
            }
            Some("iperf") => {
                let ok = || {
                    result
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|run| run["error"].as_str().unwrap_or("").is_empty())
                };
                r.download = ok()
                    .filter_map(|run| run["download_speed"].as_f64())
                    .reduce(f64::max);
                r.upload = ok()
                    .filter_map(|run| run["upload_speed"].as_f64())
                    .reduce(f64::max);
            }
            Some("healthcheck") => {
                let problems = result
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(label, errs)| {
                        let n = errs.as_array().map_or(0, Vec::len);
                        (n > 0).then(|| (label.clone(), n))
                    })
                    .collect();
                r.health_problems = Some(problems);
            }
            Some("public-ip-validation") => {
                let count = |state: &str| {
                    result
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(_, v)| v["state"] == state)
                        .count()
                };
                r.ips_valid = Some(count("valid"));
                r.ips_invalid = Some(count("invalid"));
                r.ips_skipped = Some(count("skipped"));
            }
            _ => {}
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

/// The human table. Speeds in Mbit/s, CPU in seconds (lower is better),
/// public IPs as valid/invalid/skipped.
pub fn table(rows: &[Row], with_result: bool) -> String {
    let mut out = format!(
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
    );
    for r in rows {
        let last = match (&r.error, &r.result) {
            (Some(e), _) => Escaped(e).to_string(),
            (None, Some(v)) if with_result => text::json(&v.to_string()).into_owned(),
            _ => String::new(),
        };
        out += &format!(
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
        );
    }
    out
}

/// CSV with a header line; speeds in bits/s, age in seconds.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from("node,twin,cpu_single,cpu_multi,download_bps,upload_bps,health,ips_valid,ips_invalid,ips_skipped,age_secs,error\n");
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
    for r in rows {
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
        out += &cols.into_iter().map(field).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
