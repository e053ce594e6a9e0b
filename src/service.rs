//! Talking to the service manager: readiness, watchdog and stopping.
//!
//! Under systemd (`Type=notify`) the daemon says `READY=1` once its store is
//! loaded and the bus is serving, so units ordered after it (and
//! `systemctl start`, which waits) see a daemon that answers, not one still
//! connecting. With `WatchdogSec=` set, it sends `WATCHDOG=1` at half the
//! interval from a task on the async runtime: if the runtime stalls (every
//! worker blocked), the pings stop and systemd restarts the service. On
//! shutdown it says `STOPPING=1`, so a slow stop is not mistaken for a hang;
//! on a reload (SIGHUP) `RELOADING=1`, and `READY=1` again once the daemon
//! serves with the new configuration.
//!
//! Without systemd (zinit on a zos node, a terminal) `NOTIFY_SOCKET` is unset
//! and every call here does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// The service manager's view of one daemon run.
pub struct Service {
    watchdog: Option<tokio::task::JoinHandle<()>>,
}

/// Tells the service manager the daemon is up, and starts the watchdog pings
/// when it asked for them. The pings stop at `shutdown`.
pub fn ready(shutdown: CancellationToken) -> Service {
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
    let watchdog = sd_notify::watchdog_enabled().map(|timeout| {
        let every = ping_interval(timeout);
        tracing::debug!(every = ?every, "systemd watchdog enabled");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => send(&[NotifyState::Watchdog]),
                }
            }
        })
    });
    Service { watchdog }
}

impl Service {
    /// Tells the service manager the daemon is stopping.
    pub fn stopping(self) {
        if let Some(watchdog) = self.watchdog {
            watchdog.abort();
        }
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Tells the service manager the daemon is reloading: it stops and
    /// starts again, and [`ready`] ends the reload.
    pub fn reloading(self) {
        if let Some(watchdog) = self.watchdog {
            watchdog.abort();
        }
        send(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
    }
}

/// Half the watchdog timeout, as sd_watchdog_enabled(3) advises, and never
/// under 100 ms whatever the environment says.
fn ping_interval(timeout: Duration) -> Duration {
    (timeout / 2).max(Duration::from_millis(100))
}

fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        // Not fatal: the daemon works the same; only the manager's view lags.
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_come_at_half_the_timeout_and_never_too_often() {
        assert_eq!(
            ping_interval(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(
            ping_interval(Duration::from_micros(10)),
            Duration::from_millis(100)
        );
    }
}
