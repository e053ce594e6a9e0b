//! The `zos-perf` command: parses the command line and hands each command
//! to its implementation in `cli/`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use zos_perf::config::{Config, Overrides, KERNEL_CMDLINE};
use zos_perf::grid::Network;
use zos_perf::redis::server::DEFAULT_REDIS;

#[macro_use]
mod cli;

use cli::error::{CliError, Exit, EXIT_CODES_HELP};
use cli::logging::LogFormat;

/// The async runtime's worker threads, whatever the node's core count.
const WORKER_THREADS: usize = 2;

#[derive(Parser, Debug)]
#[command(
    name = "zos-perf",
    version,
    about = "Performance monitor of a ThreeFold zos node",
    after_help = EXIT_CODES_HELP
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
    /// Log filter, e.g. info, debug, zos_perf=debug (default: `log` of the
    /// file, else info).
    #[arg(long, global = true, env = "ZOS_PERF_LOG", value_name = "FILTER")]
    log: Option<String>,
    /// Log lines as text or as one JSON object per line (default:
    /// `log_format` of the file, else text).
    #[arg(
        long,
        global = true,
        env = "ZOS_PERF_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    log_format: Option<LogFormat>,
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
        /// Give up after this long (default: the task's timeout).
        #[arg(long, value_parser = cli::run::parse_timeout)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Generated from the definitions above: no configuration, no Redis.
    let generated = match cli.command {
        Command::Completions { shell } => Some(cli::completions::print(shell, Cli::command())),
        Command::Man => Some(cli::completions::print_man_page(Cli::command())),
        _ => None,
    };
    if let Some(done) = generated {
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                errln!("zos-perf: {e:#}");
                Exit::Failure.code()
            }
        };
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            errln!("zos-perf: {e:#}");
            return Exit::Usage.code();
        }
    };
    let log = match cli::logging::Settings::resolve(
        cli.log.as_deref(),
        cli.log_format,
        config.log.as_deref(),
        config.log_format.as_deref(),
    ) {
        Ok(l) => l,
        Err(e) => {
            errln!("zos-perf: {e:#}");
            return Exit::Usage.code();
        }
    };
    cli::logging::init(
        &log,
        // Queued to a thread of its own: never blocks or panics on a stuck
        // or closed stderr.
        zos_perf::logging::queued_stderr(),
    );
    // Before any thread exists (src/util/memory.rs says why).
    zos_perf::memory::limit_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // The async work is light (a sync pass a second, the bus, the
        // listener); measurements run on threads of their own. More workers
        // on a many-core node would only add idle threads and arenas.
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("zos-perf: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(dispatch(cli, config));
    // Blocking work (a benchmark thread finishing its block) must not hold
    // the exit back.
    runtime.shutdown_timeout(Duration::from_millis(200));
    zos_perf::logging::flush(Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("zos-perf: {e}");
            e.exit.code()
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let overrides = Overrides {
        config_file: cli.config.clone(),
        redis: cli.redis.clone(),
        network: cli.network,
        farm_id: cli.farm_id,
        node_id: cli.node_id,
    };
    Config::load(&overrides, &cli.kernel_cmdline)
}

async fn dispatch(cli: Cli, config: Config) -> Result<(), CliError> {
    let default_redis = cli.default_redis.as_str();
    match cli.command {
        Command::Run => Ok(cli::run::daemon(config, default_redis).await?),
        Command::Tasks { json } => cli::tasks::show(config, default_redis, json).await,
        Command::Get { name, human } => {
            cli::results::get(&config, default_redis, &name, human).await
        }
        Command::GetAll { human } => cli::results::get_all(&config, default_redis, human).await,
        Command::RunTask {
            name,
            timeout,
            verbose,
            human,
        } => {
            let opts = cli::run::TaskOptions {
                timeout,
                verbose,
                human,
            };
            cli::run::task(config, default_redis, &name, opts).await
        }
        Command::History { name, limit, json } => {
            Ok(cli::history::show(&config, default_redis, &name, limit as usize, json).await?)
        }
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
                return Ok(
                    cli::remote::call(&config, &rmb, target, &cmd, payload, timeout)
                        .await
                        .map_err(anyhow::Error::from)?,
                );
            }
            let timeout = timeout.unwrap_or(Duration::from_secs(5));
            cli::call::call(&config, default_redis, &cmd, payload, timeout).await
        }
        Command::Identity { json, rmb } => Ok(cli::identity::identity(&config, &rmb, json)
            .await
            .map_err(anyhow::Error::from)?),
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
            Ok(cli::fleet::fleet(&config, &rmb, farm, task, format)
                .await
                .map_err(anyhow::Error::from)?)
        }
        Command::Check { json } => cli::check::run(&config, default_redis, json).await,
        // Printed by main() before any configuration is read.
        Command::Completions { .. } | Command::Man => Ok(()),
    }
}

/// `--timeout` of `call`: a duration of at most an hour.
fn call_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    zos_perf::config::bounded("--timeout", d, zos_perf::config::MAX_SHORT)
        .map_err(|e| e.to_string())?;
    Ok(d)
}
