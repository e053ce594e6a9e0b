//! `zos-perf run` (the daemon until a signal; SIGHUP reloads its
//! configuration) and `zos-perf run-task` (one task now).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use zos_perf::config::Config;
use zos_perf::daemon::{self, Daemon};
use zos_perf::node_redis::instance;
use zos_perf::tasks::Progress;

use super::error::CliError;
use super::{human, print_result, reader_url, task_name};

/// Cancels `token` on SIGINT, SIGTERM or SIGHUP: for `run-task`, where a
/// SIGHUP means the terminal went away.
fn on_signal(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => "SIGHUP",
        };
        tracing::info!(signal = which, "stopping");
        token.cancel();
    });
    Ok(())
}

/// What the daemon's signals ask for: SIGINT and SIGTERM stop it
/// (`stop` fires), SIGHUP reloads its configuration (`reload` is
/// notified; one received while a reload is under way is kept for after
/// it).
struct Signals {
    stop: CancellationToken,
    reload: Arc<Notify>,
}

fn daemon_signals() -> anyhow::Result<Signals> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let signals = Signals {
        stop: CancellationToken::new(),
        reload: Arc::new(Notify::new()),
    };
    let (stop, reload) = (signals.stop.clone(), signals.reload.clone());
    tokio::spawn(async move {
        let which = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => {
                    tracing::info!(signal = "SIGHUP", "reloading the configuration");
                    reload.notify_one();
                }
            }
        };
        tracing::info!(signal = which, "stopping");
        stop.cancel();
    });
    Ok(signals)
}

/// `run`: the daemon, until SIGINT or SIGTERM. With no Redis named it
/// holds its runtime directory: a second such daemon there is refused
/// (exit code 12).
///
/// SIGHUP reloads the configuration: `reread` reads and checks it again,
/// as at start. One that does not validate is refused, the running daemon
/// goes on and the log says why. One that does is applied by stopping
/// every part in order and starting them again with it, in this process
/// (`RELOADING=1`, then `READY=1`, to systemd); should that start fail (a
/// metrics port taken, say), the daemon starts again with the
/// configuration it ran before and the log says why. `log` and
/// `log_format` are read at start only.
pub async fn daemon(
    config: Config,
    default_redis: &str,
    reread: &dyn Fn() -> anyhow::Result<Config>,
) -> anyhow::Result<()> {
    // Installed before start-up, so that a signal during it is not lost;
    // one during start-up's waits (for Redis) cuts them short.
    let signals = daemon_signals()?;
    let mut running = config;
    let Some(mut daemon) = start(&running, default_redis, &signals.stop).await? else {
        return Ok(());
    };
    loop {
        // Start-up is over: the heap it alone used goes back to the system.
        zos_perf::memory::settle();
        let stop = daemon.stop_token();
        tokio::select! {
            _ = signals.stop.cancelled() => break,
            _ = stop.cancelled() => break,
            _ = signals.reload.notified() => {}
        }
        let new = match reread() {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "configuration not reloaded: the new one does not validate; the daemon goes on with the one it runs");
                continue;
            }
        };
        if (&new.log, &new.log_format) != (&running.log, &running.log_format) {
            tracing::warn!(
                "log and log_format changed: they apply at the next start, not on reload"
            );
        }
        daemon.shutdown_for_reload().await;
        let started = match start(&new, default_redis, &signals.stop).await {
            Ok(started) => {
                running = new;
                tracing::info!("configuration reloaded");
                started
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the new configuration did not start; starting again with the one the daemon ran");
                start(&running, default_redis, &signals.stop).await?
            }
        };
        match started {
            Some(started) => daemon = started,
            // Stopped by a signal while starting again: nothing runs.
            None => return Ok(()),
        }
    }
    let lost_to = daemon.lease_lost_to();
    daemon.shutdown().await;
    match lost_to {
        // Not a clean stop: the service manager should see it.
        Some(by) => {
            anyhow::bail!("stopped: another daemon ({by}) took over the redis this one used")
        }
        None => Ok(()),
    }
}

/// Starts the daemon of `config`; `None` if `stop` fired during start-up,
/// before anything was started.
async fn start(
    config: &Config,
    default_redis: &str,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Daemon>> {
    // With no Redis named, the runtime directory is the daemon's: it may
    // hold the private server, and records which Redis was chosen. With
    // one named, it is not touched (the readers are given the same name).
    let named = config.redis.is_some();
    let mut builder = Daemon::builder(config.clone())
        .default_redis(default_redis)
        .interrupt(stop.clone());
    if !named {
        builder = builder.runtime_dir(instance::runtime_dir());
    }
    match builder.start().await {
        Ok(d) => Ok(Some(d)),
        // Stopped while waiting for Redis: nothing was started.
        Err(_) if stop.is_cancelled() => Ok(None),
        Err(e) => Err(e),
    }
}

/// What `run-task` was asked besides the name.
pub struct TaskOptions {
    /// Overrides the task's own timeout.
    pub timeout: Option<Duration>,
    /// Progress on stderr even when it is not a terminal.
    pub verbose: bool,
    /// The result rendered for a person rather than JSON.
    pub human: bool,
}

/// The longest `--timeout` accepted: a day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A `--timeout`: a humantime duration, more than zero, at most a day.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    if d > MAX_TIMEOUT {
        return Err(format!(
            "{text:?} is more than {}",
            humantime::format_duration(MAX_TIMEOUT)
        ));
    }
    Ok(d)
}

/// `run-task NAME`: runs one task now, stores its result and prints it. On
/// a terminal (or with `--verbose`) each step of the run is noted on
/// stderr, so a long run never looks hung.
pub async fn task(
    mut config: Config,
    default_redis: &str,
    name: &str,
    opts: TaskOptions,
) -> Result<(), CliError> {
    // `--timeout` bounds the whole command, from here: the wait for
    // another process's measurement (the exclusive lease) included.
    let deadline = opts.timeout.map(|t| tokio::time::Instant::now() + t);
    let name = task_name(name)?;
    if let Some(timeout) = opts.timeout {
        config.tasks.entry(name.to_string()).or_default().timeout = Some(timeout);
    }
    let cancel = CancellationToken::new();
    on_signal(cancel.clone())?;
    let url = reader_url(&config, default_redis).await?;
    let progress = if opts.verbose || std::io::stderr().is_terminal() {
        // A note may quote a child's output or a remote error: one line.
        Progress::new(move |note| errln!("zos-perf: {name}: {}", zos_perf::text::Escaped(note)))
    } else {
        Progress::default()
    };
    let result =
        daemon::run_once_with_progress(&config, &url, name, cancel, progress, deadline).await?;
    if opts.human {
        out!("{}", human::render(&result, chrono::Utc::now().timestamp()));
        Ok(())
    } else {
        print_result(&result)
    }
}
