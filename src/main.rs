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
    /// Call a bus command through Redis the way the RMB peer does, and print the result.
    Call {
        /// Command, e.g. zos.perf.get or zos.perf.get_all.
        cmd: String,
        /// Payload JSON, e.g. '{"Name": "cpu-benchmark"}' (default: empty).
        payload: Option<String>,
        /// How long to wait for the reply.
        #[arg(long, default_value = "5s", value_parser = call_timeout)]
        timeout: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    zos_perf::logging::init(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say_error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(dispatch(cli));
    // Blocking work (a benchmark thread finishing its block) must not hold
    // the exit back.
    runtime.shutdown_timeout(Duration::from_millis(200));
    zos_perf::logging::flush(Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// The last words of a failing command, on stderr. Never panics (unlike
/// `eprintln!` on a closed pipe): there is nobody left to tell.
fn say_error(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "zos-perf: {message}");
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
            timeout,
        } => cli::call::call(&config, default_redis, &cmd, payload, timeout).await,
    }
}

/// `--timeout` of `call`: a duration of at most an hour.
fn call_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    zos_perf::config::bounded("--timeout", d, zos_perf::config::MAX_SHORT)
        .map_err(|e| e.to_string())?;
    Ok(d)
}
