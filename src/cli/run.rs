//! `zos-perf run` (the daemon until a signal) and `zos-perf run-task` (one
//! task now).

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use zos_perf::config::Config;
use zos_perf::daemon::{self, Daemon};
use zos_perf::tasks::Progress;

use super::error::CliError;
use super::{human, print_result, reader_url, task_name};

/// Cancels `token` on SIGINT or SIGTERM.
fn on_signal(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = which, "stopping");
        token.cancel();
    });
    Ok(())
}

/// `run`: the daemon, until SIGINT or SIGTERM.
pub async fn daemon(config: Config, default_redis: &str) -> anyhow::Result<()> {
    // Installed before start-up, so that a signal during it is not lost.
    let signalled = CancellationToken::new();
    on_signal(signalled.clone())?;
    let daemon = Daemon::builder(config)
        .default_redis(default_redis)
        .start()
        .await?;
    // Start-up is over: what it alone used need not stay resident.
    let dropped = zos_perf::memory::settle();
    tracing::debug!(code_unmapped = dropped, "start-up memory given back");
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
        Progress::new(move |note| errln!("zos-perf: {name}: {note}"))
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
