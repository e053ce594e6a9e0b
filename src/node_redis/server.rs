//! Which Redis: the default address, the private server's socket in the
//! runtime directory, and the address the CLI's readers use.
//!
//! On a node, Redis is always there. On a laptop or a fresh machine the
//! daemon should still just work: when nothing names a Redis and nothing
//! answers on the default `redis://127.0.0.1:6379` (within
//! [`crate::config::Config::redis_wait`]), `zos-perf run` starts its own
//! redis-server ([`super::private`]) on a unix socket in its runtime
//! directory, keeps nothing on disk, and stops it on exit. With an explicit
//! address it never does.

use std::path::PathBuf;
use std::time::Duration;

use super::instance::{check_runtime_dir, recorded_redis, runtime_dir};

/// The address tried when nothing names one.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// The socket's name in the runtime directory.
pub const SOCKET: &str = "redis.sock";

/// The socket of the private redis-server, when one runs.
pub fn socket_path() -> PathBuf {
    runtime_dir().join(SOCKET)
}

/// The URL of the private redis-server's socket.
pub fn socket_url() -> String {
    format!("unix://{}", socket_path().display())
}

/// Whether a Redis answers PING at `url` within a second.
pub async fn answers(url: &str) -> bool {
    let Ok(client) = super::link::client(url) else {
        return false;
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Ok(_))
    )
}

/// Whether a Redis answers at `url` within `wait`: tried at once, then
/// every 200 ms until `wait` has passed (one try when it is zero) or
/// `interrupt` fires.
pub async fn answers_within(
    url: &str,
    wait: Duration,
    interrupt: &tokio_util::sync::CancellationToken,
) -> bool {
    let until = tokio::time::Instant::now() + wait;
    let mut told = false;
    loop {
        if answers(url).await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        if !told {
            tracing::info!(redis = %super::redacted(url), wait = ?wait,
                "no redis configured and none answers on the default address yet: waiting for it");
            told = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = interrupt.cancelled() => return false,
        }
    }
}

/// The Redis the read-only commands talk to: the configured one, else the
/// one the running daemon recorded in its runtime directory
/// ([`crate::node_redis::instance`]), else the daemon's private one if it answers,
/// else `default`. What the runtime directory says is trusted only when
/// the directory is ours alone: in one another user can write, the server
/// behind it may be theirs.
pub async fn reader_url(configured: Option<&str>, default: &str) -> anyhow::Result<String> {
    if let Some(url) = configured {
        return Ok(url.to_string());
    }
    if let Some(url) = recorded_redis(&runtime_dir()) {
        return Ok(url);
    }
    let private = socket_url();
    if std::fs::symlink_metadata(socket_path()).is_ok() {
        check_runtime_dir(&runtime_dir())?;
        if answers(&private).await {
            return Ok(private);
        }
    }
    Ok(default.to_string())
}
