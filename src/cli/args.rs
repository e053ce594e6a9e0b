//! The command line of `zos-perf`: the global flags every command shares
//! and one variant per command with its own flags. `main.rs` parses it and
//! dispatches each variant to its implementation in this folder.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use zos_perf::config::{Config, Overrides, KERNEL_CMDLINE};
use zos_perf::grid::Network;
use zos_perf::node_redis::server::DEFAULT_REDIS;

use super::error::EXIT_CODES_HELP;
use super::logging::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "zos-perf",
    version,
    about = "Performance monitor of a ThreeFold zos node",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// TOML configuration file (see zos-perf.example.toml).
    #[arg(long, global = true, env = "ZOS_PERF_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Redis URL: redis://host:port or unix:///path/to/socket.
    #[arg(long, global = true, env = "ZOS_PERF_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// Grid network: main, test, qa or dev (default: runmode= of the kernel command line).
    #[arg(long, global = true, env = "ZOS_PERF_NETWORK", value_name = "NET")]
    pub network: Option<Network>,
    /// This node's farm id (default: farmer_id= of the kernel command line).
    #[arg(long, global = true, env = "ZOS_PERF_FARM_ID", value_name = "ID")]
    pub farm_id: Option<u32>,
    /// This node's id.
    #[arg(long, global = true, env = "ZOS_PERF_NODE_ID", value_name = "ID")]
    pub node_id: Option<u32>,
    /// Log filter, e.g. info, debug, zos_perf=debug (default: `log` of the
    /// file, else info).
    #[arg(long, global = true, env = "ZOS_PERF_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Log lines as text or as one JSON object per line (default:
    /// `log_format` of the file, else text).
    #[arg(
        long,
        global = true,
        env = "ZOS_PERF_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<LogFormat>,
    /// The address tried when nothing names a Redis (tests point it elsewhere).
    #[arg(long, global = true, env = "ZOS_PERF_DEFAULT_REDIS", default_value = DEFAULT_REDIS, hide = true)]
    pub default_redis: String,
    /// Kernel command line to read runmode= and farmer_id= from.
    #[arg(long, global = true, default_value = KERNEL_CMDLINE, hide = true)]
    pub kernel_cmdline: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: schedule the tasks, store their results, serve the bus.
    Run,
    /// Show each task: schedule, next fire time, last result, last outcome.
    Tasks {
        /// Every field of each task's status as JSON, errors in full.
        #[arg(long)]
        json: bool,
    },
    /// Print the stored result of one task (JSON; --human for a person).
    Get {
        /// Task name, in any case, e.g. cpu-benchmark.
        name: String,
        /// Ages, Mbit/s, seconds with units, one line per problem.
        #[arg(long)]
        human: bool,
    },
    /// Print every stored result as a JSON array (--human for a person).
    GetAll {
        /// Every result rendered for a person.
        #[arg(long)]
        human: bool,
    },
    /// Show a task's stored history: the key figures of each run, newest
    /// first, and their trend.
    History {
        /// Task name, e.g. iperf.
        name: String,
        /// Newest runs to show, at most.
        #[arg(long, default_value_t = zos_perf::store::history::DEFAULT_DEPTH as u32,
              value_parser = clap::value_parser!(u32).range(1..=zos_perf::store::history::MAX_DEPTH as i64))]
        limit: u32,
        /// Print the stored records as a JSON array instead.
        #[arg(long)]
        json: bool,
    },
    /// Run one task now, store its result and print it.
    RunTask {
        /// Task name, in any case, e.g. healthcheck.
        name: String,
        /// Give up after this long, a wait for another process's measurement included (exit 5; default: the task's timeout, for the run alone).
        #[arg(long, value_parser = super::run::parse_timeout)]
        timeout: Option<Duration>,
        /// Show the run's progress on stderr even when it is not a terminal.
        #[arg(long, short)]
        verbose: bool,
        /// Print the result for a person instead of JSON.
        #[arg(long)]
        human: bool,
    },
    /// Call a bus command and print the result: with --node or --twin on
    /// that node over the grid's relay, else through the local Redis the
    /// way the RMB peer does.
    Call {
        /// Command, e.g. zos.perf.get or zos.perf.get_all.
        cmd: String,
        /// Payload JSON, e.g. '{"Name": "cpu-benchmark"}' (default: empty).
        payload: Option<String>,
        /// Call this node (through its twin) over the relay.
        #[arg(long, value_name = "ID", conflicts_with = "twin")]
        node: Option<u32>,
        /// Call this twin over the relay.
        #[arg(long, value_name = "ID")]
        twin: Option<u32>,
        /// How long to wait for the reply (default: 5s locally, [rmb] timeout over the relay).
        #[arg(long, value_parser = call_timeout)]
        timeout: Option<Duration>,
        #[command(flatten)]
        rmb: super::rmb::RmbArgs,
    },
    /// Print the grid identity of the configured secret: accounts, the pk
    /// to set on the twin, and the twin the chain knows.
    Identity {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        rmb: super::rmb::RmbArgs,
    },
    /// Ask every up node of a farm (or of the grid) over the relay; print
    /// one row per node as it answers.
    #[command(group(clap::ArgGroup::new("nodes").required(true).args(["farm", "grid"])))]
    Fleet {
        /// The farm id.
        #[arg(long, value_name = "ID")]
        farm: Option<u32>,
        /// Every up node of the grid, listed from its GraphQL page by page.
        #[arg(long)]
        grid: bool,
        /// Nodes asked at the same time, 1 to 256 (default: [rmb] concurrency, 100).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: Option<u16>,
        /// Ask for this task only (default: every stored result).
        #[arg(long, value_name = "NAME")]
        task: Option<String>,
        /// JSON Lines (one object per node) instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV instead of a table.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        rmb: super::rmb::RmbArgs,
    },
    /// Poll every up node of a farm (or the grid) on an interval and serve
    /// their figures: /metrics for Prometheus, / a fleet page.
    Collect {
        /// The farm id.
        #[arg(
            long,
            value_name = "ID",
            required_unless_present = "grid",
            conflicts_with = "grid"
        )]
        farm: Option<u32>,
        /// Every up node of the grid instead.
        #[arg(long)]
        grid: bool,
        /// Only the nodes whose id mod N is I (several collectors sharing the grid).
        #[arg(long, value_name = "I/N", value_parser = super::collect::parse_shard)]
        shard: Option<(u32, u32)>,
        /// Address and port of /metrics and /.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9109")]
        listen: std::net::SocketAddr,
        /// From the start of one round to the start of the next.
        #[arg(long, default_value = "5m", value_parser = super::collect::parse_interval)]
        interval: Duration,
        /// Up to this much later, drawn each round (default: a tenth of --interval).
        #[arg(long, value_parser = super::collect::parse_short)]
        jitter: Option<Duration>,
        /// Per node, to answer (its twin's lookup included).
        #[arg(long, default_value = "10s", value_parser = super::collect::parse_short)]
        timeout: Duration,
        /// Nodes asked at once.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        concurrency: u32,
        /// Nodes held at most (the lowest ids), each a few hundred bytes.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_nodes: u32,
        /// One round, printed (a table, or --json), then exit.
        #[arg(long)]
        once: bool,
        /// With --once: the nodes as a JSON array.
        #[arg(long, requires = "once")]
        json: bool,
        #[command(flatten)]
        rmb: super::rmb::RmbArgs,
    },
    /// Check what the enabled tasks need on this machine, one line each;
    /// exits 0 only when every enabled task can run.
    Check {
        /// The checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the completion script of SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout, e.g. `zos-perf man | man -l -`.
    Man,
}

impl Cli {
    /// The configuration these flags, the environment and the file give.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            config_file: self.config.clone(),
            redis: self.redis.clone(),
            network: self.network,
            farm_id: self.farm_id,
            node_id: self.node_id,
        };
        Config::load(&overrides, &self.kernel_cmdline)
    }
}

/// `--timeout` of `call`: a duration of at most an hour.
fn call_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    zos_perf::config::bounded("--timeout", d, zos_perf::config::MAX_SHORT)
        .map_err(|e| e.to_string())?;
    Ok(d)
}
