//! `zos-perf run` (the daemon until a signal) and `zos-perf run-task` (one
//! task now).

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use zos_perf::config::Config;
use zos_perf::daemon::{self, Daemon};

use super::{reader_url, task_name};

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
    let stop = daemon.stop_token();
    tokio::select! {
        _ = signalled.cancelled() => {}
        _ = stop.cancelled() => {}
    }
    daemon.shutdown().await;
    Ok(())
}

/// `run-task NAME`: runs one task now, stores its result and prints it.
pub async fn task(config: Config, default_redis: &str, name: &str) -> anyhow::Result<()> {
    let name = task_name(name)?;
    let cancel = CancellationToken::new();
    on_signal(cancel.clone())?;
    let url = reader_url(&config, default_redis).await?;
    let result = daemon::run_once(&config, &url, name, cancel).await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
