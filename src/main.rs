//! The `zos-perf` command: the daemon and the operator's tools around it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use zos_perf::bus;
use zos_perf::config::{Config, Overrides, KERNEL_CMDLINE};
use zos_perf::embedded::{self, EmbeddedRedis};
use zos_perf::grid::Network;
use zos_perf::monitor::{self, Monitor};
use zos_perf::redis_link::{self, RedisLink};
use zos_perf::schedule::SystemClock;
use zos_perf::store::{self, ResultStore};
use zos_perf::tasks;

/// How long shutdown may take before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

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
    #[arg(long, global = true, env = "ZOS_PERF_DEFAULT_REDIS", default_value = embedded::DEFAULT_REDIS, hide = true)]
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
        Command::Run => run_daemon(config, default_redis).await,
        Command::Tasks => show_tasks(config, default_redis).await,
        Command::Get { name } => {
            let name = task_name(&name)?;
            let mut conn =
                redis_link::connect_once(&reader_url(&config, default_redis).await?).await?;
            match store::read_raw(&mut conn, name).await? {
                Some(json) => print_json(&json),
                None => anyhow::bail!("{name}: result not found"),
            }
        }
        Command::GetAll => {
            let mut conn =
                redis_link::connect_once(&reader_url(&config, default_redis).await?).await?;
            let all = store::read_all_raw(&mut conn).await?;
            print_json(&format!("[{}]", all.join(",")))
        }
        Command::RunTask { name } => run_task(config, default_redis, task_name(&name)?).await,
        Command::Call {
            cmd,
            payload,
            timeout,
        } => {
            let client = redis_link::client(&reader_url(&config, default_redis).await?)?;
            let payload = payload.unwrap_or_default();
            let reply = bus::client::call(&client, &cmd, payload.as_bytes(), timeout).await?;
            let result = reply.result().map_err(|e| anyhow::anyhow!("{cmd}: {e}"))?;
            println!("{}", bus::client::pretty(&result));
            Ok(())
        }
    }
}

/// `--timeout` of `call`: a duration of at most an hour.
fn call_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    zos_perf::config::bounded("--timeout", d, zos_perf::config::MAX_SHORT)
        .map_err(|e| e.to_string())?;
    Ok(d)
}

fn task_name(name: &str) -> anyhow::Result<&'static str> {
    tasks::canonical(name).ok_or_else(|| {
        anyhow::anyhow!("unknown task {name:?} (known: {})", tasks::NAMES.join(", "))
    })
}

fn print_json(raw: &str) -> anyhow::Result<()> {
    let value: serde_json::Value = serde_json::from_str(raw).context("stored value is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// The Redis the read-only commands talk to: the configured one, else the
/// daemon's private one if it runs, else the default address.
/// A private socket is trusted only in a runtime directory that is ours
/// alone: in one another user can write, the server behind it may be theirs.
async fn reader_url(config: &Config, default_redis: &str) -> anyhow::Result<String> {
    if let Some(url) = &config.redis {
        return Ok(url.clone());
    }
    let private = embedded::socket_url();
    if std::fs::symlink_metadata(embedded::socket_path()).is_ok() {
        embedded::check_runtime_dir(&embedded::runtime_dir())?;
        if embedded::answers(&private).await {
            return Ok(private);
        }
    }
    Ok(default_redis.to_string())
}

/// Stops on SIGINT or SIGTERM.
fn on_signal(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = which, "stopping");
        shutdown.cancel();
    });
    Ok(())
}

async fn run_daemon(config: Config, default_redis: &str) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone())?;

    let registered = monitor::register(&config, tasks::registry(&config))?;
    let (url, private) = match &config.redis {
        Some(url) => (url.clone(), None),
        None if embedded::answers(default_redis).await => (default_redis.to_string(), None),
        None => {
            let server = EmbeddedRedis::start(&embedded::socket_path()).await?;
            tracing::info!(redis = %server.url(), "no redis configured and none on the default address: started a private redis-server");
            (server.url(), Some(server))
        }
    };
    let shown = redis_link::redacted(&url);
    tracing::info!(redis = %shown, network = %config.network, tasks = registered.len(), "zos-perf starting");

    let link = RedisLink::start(&url, shutdown.clone())?;
    let store = ResultStore::new(link);
    if !store.load(Duration::from_secs(3)).await {
        tracing::warn!(redis = %shown, "no stored results could be read; tasks without a result in memory run now");
    }
    // The sync loop stops after the monitor, so that its last pass carries
    // how the runs cut short by shutdown ended (perf:status would otherwise
    // show them running after the daemon is gone).
    let sync_stop = CancellationToken::new();
    let sync = tokio::spawn(store.clone().sync_loop(sync_stop.clone()));
    let monitor = Monitor::new(registered, store.clone(), Arc::new(SystemClock));
    let run = tokio::spawn(monitor.run(shutdown.clone()));
    let bus = config.bus.enabled.then(|| {
        let client = store.link().client().clone();
        tokio::spawn(bus::serve(client, config.bus.clone(), shutdown.clone()))
    });

    shutdown.cancelled().await;
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _ = run.await;
        sync_stop.cancel();
        let _ = sync.await;
        if let Some(bus) = bus {
            let _ = bus.await;
        }
    })
    .await
    .is_err()
    {
        tracing::warn!("some work did not stop within the grace time; exiting anyway");
    }
    if let Some(server) = private {
        server.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn run_task(config: Config, default_redis: &str, name: &'static str) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone())?;
    let registered = monitor::register(&config, tasks::registry(&config))?;
    let url = reader_url(&config, default_redis).await?;
    // Fail before a long run if there is nowhere to store its result.
    redis_link::connect_once(&url).await?;
    let link = RedisLink::start(&url, shutdown.clone())?;
    let store = ResultStore::new(link);
    store.load(Duration::from_secs(3)).await;
    let monitor = Monitor::new(registered, store.clone(), Arc::new(SystemClock));
    let result = monitor.run_now(name, shutdown).await?;
    match store.sync_once().await? {
        Some(_) => {}
        None => {
            anyhow::bail!(
                "{name}: ran, but redis at {} is not connected: result not stored",
                redis_link::redacted(&url)
            )
        }
    }
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

async fn show_tasks(config: Config, default_redis: &str) -> anyhow::Result<()> {
    let registered = monitor::register(&config, tasks::registry(&config))?;
    let url = reader_url(&config, default_redis).await?;
    let (status, results) = match redis_link::connect_once(&url).await {
        Ok(mut conn) => (
            store::read_status(&mut conn).await?,
            store::read_all(&mut conn).await?,
        ),
        Err(e) => {
            say_error(&format!("{e:#} (showing the configuration only)"));
            Default::default()
        }
    };
    let now = chrono::Utc::now();
    println!(
        "{:<22} {:<8} {:<16} {:>6}  {:<20} {:<20} LAST OUTCOME",
        "TASK", "ENABLED", "CRON", "JITTER", "NEXT FIRE (UTC)", "LAST RESULT (UTC)"
    );
    for (name, s) in monitor::describe(&registered) {
        let st = status.get(name);
        let next = st
            .and_then(|s| s.next_fire)
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .or_else(|| s.schedule.next_after(now));
        let last = results
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| chrono::DateTime::from_timestamp(r.timestamp, 0));
        let outcome = match st.and_then(|s| s.last_outcome) {
            Some(o) => match st.and_then(|s| s.last_error.as_deref()) {
                Some(err) => format!("{}: {err}", o.as_str()),
                None => o.as_str().to_string(),
            },
            None => "-".into(),
        };
        let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{:<22} {:<8} {:<16} {:>5}s  {:<20} {:<20} {}",
            name,
            if s.enabled { "yes" } else { "no" },
            s.schedule.as_str(),
            s.jitter.as_secs(),
            if s.enabled { fmt(next) } else { "-".into() },
            fmt(last),
            outcome
        );
    }
    Ok(())
}
