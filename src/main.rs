//! The `zos-perf` command: parses the command line and hands each command
//! to its implementation in `cli/`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use zos_perf::config::Config;

#[macro_use]
mod cli;

use cli::args::{Cli, Command};
use cli::error::{CliError, Exit};

/// The async runtime's worker threads, whatever the node's core count.
const WORKER_THREADS: usize = 2;

fn main() -> ExitCode {
    // SAFETY: the first thing the process does, with one thread: the log's
    // writer thread and the async runtime start further down, and nothing
    // before them reads or changes the environment on another thread.
    // From here, no child inherits the secret (src/rmb/secret.rs).
    unsafe { zos_perf::rmb::secret::take_from_environment() };
    let cli = Cli::parse();
    // Generated from the definitions in cli/args.rs: no configuration, no Redis.
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
    let config = match cli.load_config() {
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
            // Remote errors and stored values end up here: on one line.
            errln!("zos-perf: {}", zos_perf::text::Escaped(&e.to_string()));
            e.exit.code()
        }
    }
}

async fn dispatch(cli: Cli, config: Config) -> Result<(), CliError> {
    let default_redis = cli.default_redis.as_str();
    if let Command::Run = cli.command {
        // On SIGHUP: the configuration read and checked as at start, the
        // log settings included.
        let reread = || {
            let config = cli.load_config()?;
            cli::logging::Settings::resolve(
                cli.log.as_deref(),
                cli.log_format,
                config.log.as_deref(),
                config.log_format.as_deref(),
            )?;
            Ok(config)
        };
        return Ok(cli::run::daemon(config, default_redis, &reread).await?);
    }
    match cli.command {
        // Handled above.
        Command::Run => Ok(()),
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
            grid: _,
            concurrency,
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
            // Clap requires one of --farm and --grid.
            let scope = farm.map_or(zos_perf::fleet::Scope::Grid, zos_perf::fleet::Scope::Farm);
            let concurrency = concurrency.map(usize::from);
            Ok(
                cli::fleet::fleet(&config, &rmb, scope, concurrency, task, format)
                    .await
                    .map_err(anyhow::Error::from)?,
            )
        }
        Command::Collect {
            farm,
            grid: _,
            shard,
            listen,
            interval,
            jitter,
            timeout,
            concurrency,
            max_nodes,
            once,
            json,
            rmb,
        } => {
            let options = zos_perf::collect::Options {
                scope: farm.map_or(
                    zos_perf::collect::Scope::Grid,
                    zos_perf::collect::Scope::Farm,
                ),
                shard,
                interval,
                jitter: jitter.unwrap_or(interval / 10),
                timeout,
                concurrency: concurrency as usize,
                max_nodes: max_nodes as usize,
            };
            let run = cli::collect::Run {
                options,
                listen,
                once,
                json,
            };
            Ok(cli::collect::collect(&config, &rmb, run).await?)
        }
        Command::Check { json } => cli::check::run(&config, default_redis, json).await,
        // Printed by main() before any configuration is read.
        Command::Completions { .. } | Command::Man => Ok(()),
    }
}
