//! `zos-perf run` (the daemon until a signal) and `zos-perf run-task` (one
//! task now).

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use zos_perf::config::Config;
use zos_perf::daemon::{self, Daemon};
use zos_perf::redis::server;
use zos_perf::tasks::Progress;

use super::error::CliError;
use super::{human, print_result, reader_url, task_name};

/// Cancels `token` on SIGINT, SIGTERM or SIGHUP. SIGHUP (the terminal
/// went away, or a service manager's reload) is a clean stop like the
/// others, logged: the configuration is read at start only, so a restart
/// is what applies a changed one.
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

/// `run`: the daemon, until SIGINT, SIGTERM or SIGHUP. With no Redis
/// named it holds its runtime directory: a second such daemon there is
/// refused (exit code 12).
pub async fn daemon(config: Config, default_redis: &str) -> anyhow::Result<()> {
    // Installed before start-up, so that a signal during it is not lost;
    // one during start-up's waits (for Redis) cuts them short.
    let signalled = CancellationToken::new();
    on_signal(signalled.clone())?;
    // With no Redis named, the runtime directory is the daemon's: it may
    // hold the private server, and records which Redis was chosen. With
    // one named, it is not touched (the readers are given the same name).
    let named = config.redis.is_some();
    let mut builder = Daemon::builder(config)
        .default_redis(default_redis)
        .interrupt(signalled.clone());
    if !named {
        builder = builder.runtime_dir(server::runtime_dir());
    }
    let daemon = match builder.start().await {
        Ok(d) => d,
        // Stopped while waiting for Redis: nothing was started.
        Err(_) if signalled.is_cancelled() => return Ok(()),
        Err(e) => return Err(e),
    };
    // Start-up is over: the heap it alone used goes back to the system.
    zos_perf::memory::settle();
    let stop = daemon.stop_token();
    tokio::select! {
        _ = signalled.cancelled() => {}
        _ = stop.cancelled() => {}
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
    let result = daemon::run_once_with_progress(&config, &url, name, cancel, progress).await?;
    if opts.human {
        out!("{}", human::render(&result, chrono::Utc::now().timestamp()));
        Ok(())
    } else {
        print_result(&result)
    }
}
