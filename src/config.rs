//! Configuration: an optional TOML file, then environment variables, then
//! command-line flags (flags win). Everything has a default, so a node runs
//! with no file at all.
//!
//! Every error names the field it is about, as a dotted path
//! (`tasks.iperf.cron`, `healthcheck.backoff_total`), so an operator can find
//! the line to fix. See `zos-perf.example.toml` and docs/configuration.md
//! for every field.
//!
//! This module composes the sections; each section's struct, defaults and
//! checks live with what it configures (`tasks/<task>/config.rs`,
//! `grid/config.rs`, `bus/config.rs`, `outputs/mod.rs`, `store/history.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::bus::BusConfig;
use crate::clock_check::ClockConfig;
use crate::grid::{GridConfig, GridContext, Network};
use crate::schedule::Schedule;
use crate::tasks::{self, Sections, TaskDefaults};

/// Where the kernel command line is read from on a node.
pub const KERNEL_CMDLINE: &str = "/proc/cmdline";

/// Values given on the command line or in the environment; `None` = not given.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub redis: Option<String>,
    pub network: Option<Network>,
    pub farm_id: Option<u32>,
    pub node_id: Option<u32>,
}

/// The daemon's whole configuration, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// Redis URL; `None` when nothing named one (the daemon may then start
    /// its own private redis-server, see `embedded`).
    pub redis: Option<String>,
    /// With no Redis named: how long `run` waits for the default address
    /// to answer before starting a private redis-server (`redis_wait`).
    pub redis_wait: Duration,
    pub network: Network,
    pub farm_id: Option<u32>,
    pub node_id: Option<u32>,
    /// Per-task overrides, by task name.
    pub tasks: BTreeMap<String, TaskOverride>,
    pub grid: GridConfig,
    /// The tasks' own sections (`[iperf]`, `[healthcheck]`, ...).
    pub sections: Sections,
    pub bus: BusConfig,
    pub metrics: crate::outputs::MetricsConfig,
    pub history: crate::store::history::HistoryConfig,
    /// Log filter (`log` in the file); the `--log` flag and `ZOS_PERF_LOG`
    /// win. Checked by the binary, which sets logging up.
    pub log: Option<String>,
    /// `text` or `json` (`log_format` in the file); `--log-format` and
    /// `ZOS_PERF_LOG_FORMAT` win.
    pub log_format: Option<String>,
    /// `[clock]`: the clock check (a monitor loop, not a task).
    pub clock: ClockConfig,
    pub rmb: crate::rmb::RmbConfig,
}

/// The file's shape. Unknown fields are refused, so a typo is an error that
/// names it rather than a setting silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    redis: Option<String>,
    #[serde(default, with = "humantime_serde")]
    redis_wait: Option<Duration>,
    network: Option<String>,
    farm_id: Option<u32>,
    node_id: Option<u32>,
    #[serde(default)]
    tasks: BTreeMap<String, TaskOverride>,
    #[serde(default)]
    grid: GridConfig,
    #[serde(default)]
    cpu_benchmark: tasks::cpu_benchmark::CpuBenchmarkConfig,
    #[serde(default)]
    healthcheck: tasks::healthcheck::HealthcheckConfig,
    #[serde(default)]
    iperf: tasks::iperf::IperfConfig,
    #[serde(default)]
    public_ip: tasks::public_ip::PublicIpConfig,
    #[serde(default)]
    provisiontest: tasks::provisiontest::ProvisionTestConfig,
    #[serde(default)]
    bus: BusConfig,
    #[serde(default)]
    metrics: crate::outputs::MetricsConfig,
    #[serde(default)]
    history: crate::store::history::HistoryConfig,
    log: Option<String>,
    log_format: Option<String>,
    #[serde(default)]
    clock: ClockConfig,
    #[serde(default)]
    rmb: crate::rmb::RmbConfig,
}

/// `[tasks.<name>]`: what configuration may change of a task's defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskOverride {
    pub enabled: Option<bool>,
    pub cron: Option<String>,
    /// Seconds.
    pub jitter: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub exclusive: Option<bool>,
}

/// A task's settings once its defaults and overrides are merged.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    pub enabled: bool,
    pub schedule: Schedule,
    pub jitter: Duration,
    pub timeout: Duration,
    pub exclusive: bool,
}

impl Config {
    /// Reads the file named in `overrides` (if any), applies the overrides,
    /// fills what is still unset from the kernel command line at `cmdline`,
    /// and checks every value.
    pub fn load(overrides: &Overrides, cmdline: &Path) -> anyhow::Result<Config> {
        let file = match &overrides.config_file {
            Some(path) => {
                let text = read_config_file(path)?;
                Self::parse_file(&text)
                    .with_context(|| format!("config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let kernel = std::fs::read_to_string(cmdline).unwrap_or_default();
        let config = Self::resolve(file, overrides, &kernel)?;
        Ok(config)
    }

    /// Parses a configuration text alone, with no overrides and no kernel
    /// command line: what `load` does with a file.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let file = Self::parse_file(text)?;
        Self::resolve(file, &Overrides::default(), "")
    }

    fn parse_file(text: &str) -> anyhow::Result<FileConfig> {
        toml::from_str::<FileConfig>(text).map_err(|e| {
            // toml's message names the key and shows the line; keep it whole.
            anyhow::anyhow!("{}", e.to_string().trim_end())
        })
    }

    fn resolve(file: FileConfig, o: &Overrides, kernel: &str) -> anyhow::Result<Config> {
        let network = match (o.network, &file.network) {
            (Some(n), _) => n,
            (None, Some(name)) => name
                .parse::<Network>()
                .map_err(|e| anyhow::anyhow!("network: {e}"))?,
            (None, None) => Network::from_kernel_cmdline(kernel).unwrap_or(Network::Main),
        };
        let farm_id = o
            .farm_id
            .or(file.farm_id)
            .or_else(|| kernel_arg(kernel, "farmer_id"));
        let config = Config {
            redis: o.redis.clone().or(file.redis),
            redis_wait: file.redis_wait.unwrap_or(REDIS_WAIT),
            network,
            farm_id,
            node_id: o.node_id.or(file.node_id),
            tasks: file.tasks,
            grid: file.grid,
            sections: Sections {
                cpu_benchmark: file.cpu_benchmark,
                healthcheck: file.healthcheck,
                iperf: file.iperf,
                public_ip: file.public_ip,
                provisiontest: file.provisiontest,
            },
            bus: file.bus,
            metrics: file.metrics,
            history: file.history,
            log: file.log,
            log_format: file.log_format,
            clock: file.clock,
            rmb: file.rmb,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot: known task names, cron expressions,
    /// non-empty lists, sane limits.
    fn validate(&self) -> anyhow::Result<()> {
        self.rmb.validate()?;
        for name in self.tasks.keys() {
            if !tasks::NAMES.contains(&name.as_str()) {
                bail!(
                    "tasks.{name}: unknown task (known: {})",
                    tasks::NAMES.join(", ")
                );
            }
        }
        for (name, o) in &self.tasks {
            if let Some(cron) = &o.cron {
                Schedule::parse(cron).with_context(|| format!("tasks.{name}.cron"))?;
            }
            if o.timeout == Some(Duration::ZERO) {
                bail!("tasks.{name}.timeout: must be more than zero");
            }
            if let Some(t) = o.timeout {
                bounded(&format!("tasks.{name}.timeout"), t, MAX_LONG)?;
            }
            if let Some(j) = o.jitter {
                bounded(
                    &format!("tasks.{name}.jitter"),
                    Duration::from_secs(j),
                    MAX_LONG,
                )?;
            }
        }
        if let Some(f) = &self.log_format {
            if f != "text" && f != "json" {
                bail!("log_format: {f:?} is neither \"text\" nor \"json\"");
            }
        }
        self.check_durations()?;
        if let Some(url) = &self.redis {
            crate::node_redis::check_url(url).context("redis")?;
        }
        self.grid.validate()?;
        self.sections.validate()?;
        self.bus.validate()?;
        self.metrics.validate()?;
        self.history.validate()?;
        self.clock.validate()?;
        Ok(())
    }

    /// Every duration from outside has an upper bound, checked here, so that
    /// no later `Instant + Duration` or doubling can overflow at use.
    fn check_durations(&self) -> anyhow::Result<()> {
        let (hc, ip) = (&self.sections.healthcheck, &self.sections.iperf);
        let fields = [
            ("grid.graphql_timeout", self.grid.graphql_timeout, MAX_SHORT),
            (
                "healthcheck.connect_timeout",
                hc.connect_timeout.unwrap_or_default(),
                MAX_SHORT,
            ),
            ("healthcheck.backoff_initial", hc.backoff_initial, MAX_LONG),
            ("healthcheck.backoff_max", hc.backoff_max, MAX_LONG),
            ("healthcheck.backoff_total", hc.backoff_total, MAX_LONG),
            (
                "provisiontest.backoff_initial",
                self.sections.provisiontest.backoff_initial,
                MAX_LONG,
            ),
            (
                "provisiontest.backoff_max",
                self.sections.provisiontest.backoff_max,
                MAX_LONG,
            ),
            (
                "provisiontest.backoff_total",
                self.sections.provisiontest.backoff_total,
                MAX_LONG,
            ),
            (
                "iperf.run_timeout",
                ip.run_timeout.unwrap_or_default(),
                MAX_LONG,
            ),
            ("iperf.duration", ip.duration.unwrap_or_default(), MAX_LONG),
            (
                "iperf.busy_backoff_initial",
                ip.busy_backoff_initial,
                MAX_LONG,
            ),
            ("iperf.busy_backoff_max", ip.busy_backoff_max, MAX_LONG),
            (
                "public_ip.lookup_timeout",
                self.sections.public_ip.lookup_timeout,
                MAX_SHORT,
            ),
            ("bus.clock_skew", self.bus.clock_skew, MAX_SKEW),
            ("redis_wait", self.redis_wait, MAX_SHORT),
        ];
        for (field, value, max) in fields {
            bounded(field, value, max)?;
        }
        Ok(())
    }

    /// Merges a task's defaults with its `[tasks.<name>]` override.
    pub fn task_settings(
        &self,
        name: &str,
        defaults: &TaskDefaults,
    ) -> anyhow::Result<TaskSettings> {
        let o = self.tasks.get(name).cloned().unwrap_or_default();
        let cron = o.cron.as_deref().unwrap_or(defaults.cron);
        let schedule = Schedule::parse(cron).with_context(|| format!("tasks.{name}.cron"))?;
        Ok(TaskSettings {
            enabled: o.enabled.unwrap_or(true),
            schedule,
            jitter: o.jitter.map(Duration::from_secs).unwrap_or(defaults.jitter),
            timeout: o.timeout.unwrap_or(defaults.timeout),
            exclusive: o.exclusive.unwrap_or(defaults.exclusive),
        })
    }

    /// What every task knows of the grid: network, farm, node, GraphQL.
    pub fn grid_context(&self) -> GridContext {
        GridContext {
            farm_id: self.farm_id,
            node_id: self.node_id,
            ..GridContext::new(self.network, &self.grid)
        }
    }
}

/// How long `run`, with no Redis named, waits for the default address
/// before starting a private redis-server: on a node, Redis may come up a
/// few seconds after us, and a daemon that fell back would serve a bus
/// nobody reads.
pub const REDIS_WAIT: Duration = Duration::from_secs(10);

/// The largest configuration file read; a real one is a few KiB.
pub(crate) const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Limit of the durations that bound a single wait (timeouts of one
/// connection or request).
pub const MAX_SHORT: Duration = Duration::from_secs(60 * 60);
/// Limit of the durations of whole runs, schedules and backoffs.
pub(crate) const MAX_LONG: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Limit of the tolerated clock skew of bus requests.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(60 * 60);

/// Refuses a duration over `max`, naming the field and the limit.
pub fn bounded(field: &str, value: Duration, max: Duration) -> anyhow::Result<()> {
    if value > max {
        bail!(
            "{field}: {} is too long; the limit is {}",
            humantime::format_duration(value),
            humantime::format_duration(max)
        );
    }
    Ok(())
}

/// Reads a configuration file: a regular file only (a FIFO would block for
/// ever, a device such as /dev/zero never ends) and at most
/// [`MAX_CONFIG_BYTES`]. Opened non-blocking so that even opening a FIFO
/// cannot hang.
fn read_config_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let what = || format!("config file {}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("{}: cannot open", what()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("{}: cannot stat", what()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file", what());
    }
    if meta.len() > MAX_CONFIG_BYTES {
        bail!(
            "{}: {} bytes; the limit is {MAX_CONFIG_BYTES}",
            what(),
            meta.len()
        );
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read", what()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        bail!(
            "{}: larger than the limit of {MAX_CONFIG_BYTES} bytes",
            what()
        );
    }
    String::from_utf8(bytes).map_err(|e| anyhow::anyhow!("{}: not UTF-8: {e}", what()))
}

/// `key=<u32>` from a kernel command line.
fn kernel_arg(cmdline: &str, key: &str) -> Option<u32> {
    cmdline.split_whitespace().find_map(|arg| {
        let (k, v) = arg.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests;
