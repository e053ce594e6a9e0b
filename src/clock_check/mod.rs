//! The clock check: a monitor loop (not a task) that compares the node's
//! clock with trusted sources and, when it is off by more than a threshold,
//! runs a corrective command.
//!
//! zos does this every minute against tfchain, then three HTTP time
//! services, and restarts ntpd through zinit (`zinit kill ntp SIGTERM`)
//! beyond 10 minutes of skew, silently. Here:
//!
//! - Sources in order ([`sources`]): tfchain's `Timestamp.Now`, the HTTP
//!   time services of `[clock] time_services`, then the `Date` header of the
//!   grid's HTTPS services (`date_urls`, default the GraphQL URLs). A bad
//!   answer (error, unparsable, before 2025) is logged and the next source
//!   asked.
//! - A skew within `threshold` (10 min) ends the check at once. A larger
//!   one must be confirmed: the next sources are asked until one agrees
//!   with an earlier answer (within `threshold` of it), or agrees with the
//!   node's clock (then the first source was the wild one, and nothing is
//!   done); a source that disagrees wildly is logged and passed over. When
//!   only one source answers at all, its word is taken, as zos does. When
//!   several answer and no two agree, nothing is corrected.
//! - The correction is `[clock] command` (none by default: only the skew is
//!   reported; on zos, `["zinit", "kill", "ntp", "SIGTERM"]`), run at most
//!   once per [`CORRECTION_GAP`] of monotonic time, so a correction that
//!   does not help is not repeated every minute.
//! - Unlike zos, the last check is visible: `perf:status` field `clock`
//!   ([`ClockStatus`]), shown by `zos-perf tasks`.

mod config;
pub use config::ClockConfig;
mod sources;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::grid::chain::{ChainClient, ChainOptions};
use crate::grid::GridContext;
use crate::node_redis::keys::STATUS as STATUS_KEY;
use crate::node_redis::RedisLink;
use crate::schedule::Timekeeper;
use sources::{DateHeader, Tfchain, TimeService, TimeSource};

/// The field of `perf:status` that holds the last check.
pub(crate) const STATUS_FIELD: &str = "clock";

/// Corrections are at least this far apart.
pub(crate) const CORRECTION_GAP: Duration = Duration::from_secs(10 * 60);

/// How long the corrective command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The last check, as stored in `perf:status` field `clock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockStatus {
    /// Seconds the node's clock is ahead (+) or behind (−) the source.
    pub skew: Option<f64>,
    /// The source that gave it.
    pub source: Option<String>,
    /// Unix seconds (node clock) when the check ended.
    pub checked_at: i64,
    /// Why no skew was measured, or why it was not acted on.
    pub error: Option<String>,
    /// Seconds of skew beyond which the command runs.
    pub threshold: u64,
    /// Unix seconds of the last corrective command, and how it ended.
    pub last_correction: Option<i64>,
    pub last_correction_result: Option<String>,
}

/// One measured skew.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Node clock minus source clock.
    pub skew: chrono::TimeDelta,
    pub source: String,
}

/// Why a round measured no skew; `perf:status` shows this text.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// No source gave a usable time: each, and why.
    #[error("failed to get time from all servers: {}", join(.0, "; "))]
    NoTime(Vec<SourceFailure>),
    /// Every source answered, but no two agreed within the threshold.
    #[error("clock sources disagree: {}", join(.0, ", "))]
    Disagree(Vec<Reading>),
}

/// A source that gave no usable time.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {why}")]
pub struct SourceFailure {
    pub name: String,
    pub why: sources::TimeError,
}

impl std::fmt::Display for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} says skew {:+.1}s", self.source, secs(self.skew))
    }
}

fn join<T: std::fmt::Display>(items: &[T], separator: &str) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

/// The check and what it remembers between rounds.
pub struct ClockCheck {
    sources: Vec<Box<dyn TimeSource>>,
    clock: Arc<dyn Timekeeper>,
    threshold: Duration,
    command: Option<Vec<String>>,
    last_correction: Option<(tokio::time::Instant, i64, String)>,
}

impl ClockCheck {
    pub fn new(
        sources: Vec<Box<dyn TimeSource>>,
        clock: Arc<dyn Timekeeper>,
        threshold: Duration,
        command: Option<Vec<String>>,
    ) -> ClockCheck {
        ClockCheck {
            sources,
            clock,
            threshold,
            command,
            last_correction: None,
        }
    }

    /// The sources of the `[clock]` section `c`, in order, on the grid of
    /// `grid` (its chain and GraphQL when the section names none).
    pub fn from_config(
        c: &ClockConfig,
        grid: &GridContext,
        clock: Arc<dyn Timekeeper>,
    ) -> anyhow::Result<ClockCheck> {
        let http = reqwest::Client::builder()
            .timeout(c.timeout)
            .user_agent(concat!("zos-perf/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("clock: building the HTTP client")?;
        let chain_urls = c.substrate_urls.clone().unwrap_or_else(|| {
            crate::tasks::healthcheck::services::instances(grid.network, "substrate")
        });
        let options = ChainOptions {
            call_timeout: c.timeout,
            ..ChainOptions::default()
        };
        let mut sources: Vec<Box<dyn TimeSource>> = vec![Box::new(Tfchain {
            client: ChainClient::new(chain_urls, options).context("clock.substrate_urls")?,
        })];
        for url in &c.time_services {
            sources.push(Box::new(TimeService {
                url: url.clone(),
                http: http.clone(),
            }));
        }
        for url in c
            .date_urls
            .clone()
            .unwrap_or_else(|| grid.graphql_urls.clone())
        {
            sources.push(Box::new(DateHeader {
                url,
                http: http.clone(),
            }));
        }
        Ok(ClockCheck::new(
            sources,
            clock,
            c.threshold,
            c.command.clone(),
        ))
    }

    /// Asks the sources in order (see the module documentation).
    pub async fn measure(&self) -> Result<Reading, ClockError> {
        let limit = chrono::TimeDelta::from_std(self.threshold).unwrap_or(chrono::TimeDelta::MAX);
        let mut answers: Vec<Reading> = Vec::new();
        let mut failures = Vec::new();
        for source in &self.sources {
            let name = source.name();
            let said = match source.time().await {
                Ok(t) => t,
                Err(why) => {
                    tracing::warn!(source = %name, %why, "clock source gave no usable time");
                    failures.push(SourceFailure { name, why });
                    continue;
                }
            };
            let reading = Reading {
                skew: self.clock.now() - said,
                source: name,
            };
            // Within the threshold: no action is called for, whatever an
            // earlier source said (this one and the node's clock agree).
            if reading.skew.abs() <= limit {
                return Ok(reading);
            }
            if let Some(agreed) = answers
                .iter()
                .find(|a| (a.skew - reading.skew).abs() <= limit)
            {
                return Ok(agreed.clone());
            }
            for a in &answers {
                tracing::warn!(source = %reading.source, other = %a.source,
                    skew = secs(reading.skew), other_skew = secs(a.skew),
                    "clock sources disagree; asking the next one");
            }
            answers.push(reading);
        }
        match answers.len() {
            0 => Err(ClockError::NoTime(failures)),
            1 => Ok(answers.remove(0)),
            _ => Err(ClockError::Disagree(answers)),
        }
    }

    /// One round: measure, correct if needed and allowed, report.
    pub async fn check(&mut self) -> ClockStatus {
        let measured = self.measure().await;
        let limit = chrono::TimeDelta::from_std(self.threshold).unwrap_or(chrono::TimeDelta::MAX);
        let mut status = ClockStatus {
            skew: None,
            source: None,
            checked_at: 0,
            error: None,
            threshold: self.threshold.as_secs(),
            last_correction: None,
            last_correction_result: None,
        };
        match measured {
            Ok(r) => {
                status.skew = Some(secs(r.skew));
                status.source = Some(r.source.clone());
                if r.skew.abs() > limit {
                    tracing::warn!(skew = secs(r.skew), source = %r.source,
                        threshold = ?self.threshold, "the node's clock is off");
                    self.correct().await;
                } else {
                    tracing::debug!(skew = secs(r.skew), source = %r.source, "clock checked");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "clock check failed");
                status.error = Some(e.to_string());
            }
        }
        if let Some((_, at, result)) = &self.last_correction {
            status.last_correction = Some(*at);
            status.last_correction_result = Some(result.clone());
        }
        status.checked_at = self.clock.now().timestamp();
        status
    }

    /// Runs the command, unless there is none or the last run is recent.
    async fn correct(&mut self) {
        let Some(cmd) = &self.command else {
            tracing::warn!("no [clock] command configured: the skew is only reported");
            return;
        };
        if let Some((when, _, _)) = &self.last_correction {
            if when.elapsed() < CORRECTION_GAP {
                tracing::info!("a correction ran less than 10 minutes ago; not running it again");
                return;
            }
        }
        let result = run_command(cmd).await;
        tracing::warn!(command = ?cmd, %result, "ran the clock correction");
        self.last_correction = Some((
            tokio::time::Instant::now(),
            self.clock.now().timestamp(),
            result,
        ));
    }
}

/// Runs `cmd` (no shell), bounded; says how it ended.
async fn run_command(cmd: &[String]) -> String {
    let child = tokio::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(COMMAND_TIMEOUT, child).await {
        Err(_) => format!("killed after {COMMAND_TIMEOUT:?}"),
        Ok(Err(e)) => format!("cannot start {}: {e}", cmd[0]),
        Ok(Ok(out)) if out.status.success() => "ok".into(),
        Ok(Ok(out)) => {
            let err: String = String::from_utf8_lossy(&out.stderr)
                .trim()
                .chars()
                .take(200)
                .collect();
            format!("{}: {err}", out.status)
        }
    }
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// Writes the status into `perf:status` field `clock`, if Redis is there.
/// Written after every check, so a Redis that restarted empty has it back
/// within one interval.
pub async fn publish(link: &RedisLink, status: &ClockStatus) {
    let Some(mut conn) = link.get() else { return };
    let json = match serde_json::to_string(status) {
        Ok(j) => j,
        Err(e) => return tracing::error!(error = %e, "cannot encode the clock status"),
    };
    let written: redis::RedisResult<()> = redis::cmd("HSET")
        .arg(STATUS_KEY)
        .arg(STATUS_FIELD)
        .arg(json)
        .query_async(&mut conn)
        .await;
    if let Err(e) = written {
        tracing::debug!(error = %e, "cannot store the clock status");
    }
}

/// The last check stored in `perf:status`, if any.
pub async fn read_status(conn: &mut impl ConnectionLike) -> anyhow::Result<Option<ClockStatus>> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(STATUS_KEY)
        .arg(STATUS_FIELD)
        .query_async(conn)
        .await
        .with_context(|| format!("reading {STATUS_KEY} {STATUS_FIELD}"))?;
    Ok(raw.and_then(|j| serde_json::from_str(&j).ok()))
}

/// One line for `zos-perf tasks`.
pub fn describe(status: Option<&ClockStatus>) -> String {
    let Some(s) = status else {
        return "clock: not checked yet".into();
    };
    let at = DateTime::<Utc>::from_timestamp(s.checked_at, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into());
    let mut line = match (s.skew, &s.source) {
        (Some(skew), Some(source)) => format!("clock: skew {skew:+.1}s against {source} at {at}"),
        _ => format!("clock: no skew measured at {at}"),
    };
    if let Some(e) = &s.error {
        line.push_str(&format!(" ({e})"));
    }
    if let (Some(t), Some(r)) = (s.last_correction, &s.last_correction_result) {
        let t = DateTime::<Utc>::from_timestamp(t, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        line.push_str(&format!("; last correction {t}: {r}"));
    }
    line
}

/// Runs the check every `[clock] interval` until `shutdown`.
pub async fn run(
    mut check: ClockCheck,
    interval: Duration,
    link: RedisLink,
    shutdown: CancellationToken,
) {
    loop {
        let status = tokio::select! {
            s = check.check() => s,
            _ = shutdown.cancelled() => return,
        };
        publish(&link, &status).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Starts the loop if `[clock] enabled`; a configuration it cannot use is
/// logged and the daemon goes on without it.
pub fn spawn(
    config: &ClockConfig,
    grid: &GridContext,
    clock: Arc<dyn Timekeeper>,
    link: RedisLink,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !config.is_enabled() {
        return None;
    }
    match ClockCheck::from_config(config, grid, clock) {
        Ok(check) => Some(tokio::spawn(run(check, config.interval, link, shutdown))),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "clock check not started");
            None
        }
    }
}
