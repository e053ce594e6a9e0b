//! The `zos-perf` command: parses the command line and hands each command
//! to its implementation in `cli/`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use zos_perf::config::{Config, Overrides, KERNEL_CMDLINE};
use zos_perf::grid::Network;
use zos_perf::redis::server::DEFAULT_REDIS;

mod cli;

#[derive(Parser, Debug)]
#[command(
    name = "zos-perf",
    version,
    about = "Performance monitor of a ThreeFold zos node"
)]
struct Cli {
    /// TOML configuration file (see zos-perf.example.toml).
    #[arg(long, global = true, env = "ZOS_PERF_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Redis URL: redis://host:port or unix:///path/to/socket.
    #[arg(long, global = true, env = "ZOS_PERF_REDIS", value_name = "URL")]
    redis: Option<String>,
    /// Grid network: main, test, qa or dev (default: runmode= of the kernel command line).
    #[arg(long, global = true, env = "ZOS_PERF_NETWORK", value_name = "NET")]
    network: Option<Network>,
    /// This node's farm id (default: farmer_id= of the kernel command line).
    #[arg(long, global = true, env = "ZOS_PERF_FARM_ID", value_name = "ID")]
    farm_id: Option<u32>,
    /// This node's id.
    #[arg(long, global = true, env = "ZOS_PERF_NODE_ID", value_name = "ID")]
    node_id: Option<u32>,
    /// Log filter, e.g. info, debug, zos_perf=debug.
    #[arg(
        long,
        global = true,
        env = "ZOS_PERF_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    log: String,
    /// The address tried when nothing names a Redis (tests point it elsewhere).
    #[arg(long, global = true, env = "ZOS_PERF_DEFAULT_REDIS", default_value = DEFAULT_REDIS, hide = true)]
    default_redis: String,
    /// Kernel command line to read runmode= and farmer_id= from.
    #[arg(long, global = true, default_value = KERNEL_CMDLINE, hide = true)]
    kernel_cmdline: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: schedule the tasks, store their results, serve the bus.
    Run,
    /// Show each task: schedule, jitter, next fire time, last result, last outcome.
    Tasks,
    /// Print the stored result of one task.
    Get {
        /// Task name, e.g. cpu-benchmark.
        name: String,
    },
    /// Print every stored result as a JSON array.
    GetAll,
    /// Run one task now, store its result and print it.
    RunTask {
        /// Task name, e.g. healthcheck.
        name: String,
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
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
        #[command(flatten)]
        rmb: cli::rmb::RmbArgs,
    },
    /// Print the grid identity of the configured secret: accounts, the pk
    /// to set on the twin, and the twin the chain knows.
    Identity {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        rmb: cli::rmb::RmbArgs,
    },
    /// Ask every up node of a farm over the relay and print one table.
    Fleet {
        /// The farm id.
        #[arg(long, value_name = "ID")]
        farm: u32,
        /// Ask for this task only (default: every stored result).
        #[arg(long, value_name = "NAME")]
        task: Option<String>,
        /// JSON instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV instead of a table.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        rmb: cli::rmb::RmbArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zos-perf: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(dispatch(cli));
    // Blocking work (a benchmark thread finishing its block) must not hold
    // the exit back.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zos-perf: {e:#}");
            // RMB errors have one exit code per kind (docs/rmb.md).
            e.downcast_ref::<zos_perf::rmb::RmbError>()
                .map_or(ExitCode::FAILURE, |r| ExitCode::from(r.exit_code()))
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let overrides = Overrides {
        config_file: cli.config.clone(),
        redis: cli.redis.clone(),
        network: cli.network,
        farm_id: cli.farm_id,
        node_id: cli.node_id,
    };
    let config = Config::load(&overrides, &cli.kernel_cmdline)?;
    let default_redis = cli.default_redis.as_str();
    match cli.command {
        Command::Run => cli::run::daemon(config, default_redis).await,
        Command::Tasks => cli::tasks::show(config, default_redis).await,
        Command::Get { name } => cli::results::get(&config, default_redis, &name).await,
        Command::GetAll => cli::results::get_all(&config, default_redis).await,
        Command::RunTask { name } => cli::run::task(config, default_redis, &name).await,
        Command::Call {
            cmd,
            payload,
            node,
            twin,
            timeout,
            rmb,
        } => {
            if let Some(target) = node
                .map(cli::remote::Target::Node)
                .or(twin.map(cli::remote::Target::Twin))
            {
                let payload = payload.as_deref();
                return Ok(cli::remote::call(&config, &rmb, target, &cmd, payload, timeout).await?);
            }
            let timeout = timeout.unwrap_or(Duration::from_secs(5));
            cli::call::call(&config, default_redis, &cmd, payload, timeout).await
        }
        Command::Identity { json, rmb } => Ok(cli::identity::identity(&config, &rmb, json).await?),
        Command::Fleet {
            farm,
            task,
            json,
            csv,
            rmb,
        } => {
            let task = task.as_deref().map(cli::task_name).transpose()?;
            let format = match (json, csv) {
                (true, _) => cli::fleet::Format::Json,
                (_, true) => cli::fleet::Format::Csv,
                _ => cli::fleet::Format::Table,
            };
            Ok(cli::fleet::fleet(&config, &rmb, farm, task, format).await?)
        }
    }
}
