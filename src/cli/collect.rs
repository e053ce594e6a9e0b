//! `zos-perf collect --farm ID | --grid`: the collector (`zos_perf::collect`)
//! with its flags: serving `/metrics` and `/` until a signal, or one round
//! printed with `--once`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use zos_perf::collect::{Caller, Collector, NodeState, Options};
use zos_perf::config::Config;
use zos_perf::rmb::RmbError;

use super::rmb::{RmbArgs, Settings};

/// What `collect` is asked to do.
pub struct Run {
    pub options: Options,
    pub listen: SocketAddr,
    pub once: bool,
    pub json: bool,
}

pub async fn collect(config: &Config, args: &RmbArgs, run: Run) -> anyhow::Result<()> {
    let settings = Settings::resolve(config, args);
    let graphql = config
        .grid_context()
        .graphql()
        .context("collect: the grid's GraphQL")?;
    let caller = Caller::new(
        settings.identity()?,
        settings.twins()?,
        settings.relays.clone(),
    );
    let mut collector = Collector::new(graphql, caller, run.options);
    if run.once {
        collector.round().await?;
        let nodes = collector.state.nodes();
        let rows: Vec<&NodeState> = nodes.values().collect();
        if run.json {
            out!("{}\n", super::json(&rows)?);
        } else {
            out!("{}", table(&rows));
        }
        let failed = rows.iter().filter(|n| !n.answered).count();
        if failed > 0 {
            return Err(RmbError::Partial {
                failed,
                total: rows.len(),
            }
            .into());
        }
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stop.cancel();
    });
    zos_perf::collect::serve(collector, run.listen, shutdown).await
}

/// One line per node: its figures (CPU in seconds, speeds in Mbit/s).
fn table(rows: &[&NodeState]) -> String {
    let f = |v: Option<f64>, scale: f64| v.map_or("-".into(), |v| format!("{:.2}", v / scale));
    let mut out = format!(
        "{:>6} {:>5} {:>6} {:>7} {:>7} {:>8} {:>8} {:>6} {}\n",
        "NODE", "FARM", "TWIN", "CPU-1", "CPU-N", "DOWN", "UP", "HEALTH", "ERROR"
    );
    for n in rows {
        out += &format!(
            "{:>6} {:>5} {:>6} {:>7} {:>7} {:>8} {:>8} {:>6} {}\n",
            n.node,
            n.farm,
            n.twin.map_or("-".into(), |t| t.to_string()),
            f(n.cpu_single, 1.0),
            f(n.cpu_multi, 1.0),
            f(n.download, 1e6),
            f(n.upload, 1e6),
            n.health_failing.map_or("-".into(), |h| h.to_string()),
            n.error.as_deref().unwrap_or("")
        );
    }
    out
}

/// `--interval`: from 1 s to a day.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err("must be from 1s to 24h".into());
    }
    Ok(d)
}

/// `--timeout` and `--jitter`: at most an hour.
pub fn parse_short(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    zos_perf::config::bounded("the duration", d, zos_perf::config::MAX_SHORT)
        .map_err(|e| e.to_string())?;
    Ok(d)
}

/// `--shard I/N`: the nodes whose id mod N is I.
pub fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| "expected I/N, e.g. 0/3".to_string())?;
    let i: u32 = i
        .trim()
        .parse()
        .map_err(|_| "I is not a number".to_string())?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| "N is not a number".to_string())?;
    if n == 0 || i >= n {
        return Err(format!("{i}/{n}: need 0 <= I < N"));
    }
    Ok((i, n))
}
