//! The daemon's line to Redis, which may not be there.
//!
//! On a node, Redis can start after us, restart, or vanish for a while. The
//! link never makes a caller wait for it: [`RedisLink::get`] answers at once
//! with a connection or `None`, while a background task keeps (re)connecting
//! with capped exponential backoff. Once made, the redis crate's
//! `ConnectionManager` reconnects by itself after a failure.

use std::time::Duration;

use anyhow::{bail, Context};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::util::backoff::Backoff;

/// How long one command may take before it counts as failed. Our commands
/// are small; a Redis that does not answer in this time is as good as gone.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Accepts the two Redis URL forms (docs/configuration.md):
/// `redis://host:port` and `unix:///path`. Errors show the URL with its
/// credentials hidden.
pub(crate) fn check_url(url: &str) -> anyhow::Result<()> {
    let shown = redacted(url);
    if let Some(path) = url.strip_prefix("unix://") {
        if !path.starts_with('/') {
            bail!("{shown:?}: a unix socket URL needs an absolute path, e.g. unix:///var/run/redis.sock");
        }
        return Ok(());
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        redis::Client::open(url).map_err(|e| anyhow::anyhow!("{shown:?}: {e}"))?;
        return Ok(());
    }
    bail!("{shown:?}: expected redis://host:port or unix:///path/to/socket")
}

/// A Redis URL made into a client (`unix:///path` or `redis://`).
pub fn client(url: &str) -> anyhow::Result<redis::Client> {
    check_url(url)?;
    redis::Client::open(url).with_context(|| format!("redis URL {:?}", redacted(url)))
}

/// `url` fit for a log line or an error message: a user name, password or
/// `pass`/`password` query parameter is replaced with `***`. A URL that
/// does not parse keeps only its scheme.
pub(crate) fn redacted(url: &str) -> String {
    const HIDDEN: &str = "***";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return match url.split_once("://") {
            Some((scheme, rest)) if rest.contains('@') || rest.contains('?') => {
                format!("{scheme}://{HIDDEN}")
            }
            Some(_) => url.to_string(),
            None => HIDDEN.to_string(),
        };
    };
    if !parsed.username().is_empty() {
        let _ = parsed.set_username(HIDDEN);
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(HIDDEN));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let secret = matches!(k.as_ref(), "pass" | "password" | "user" | "username");
                let v = if secret {
                    HIDDEN.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// One connection attempt, for commands that need Redis now (the CLI).
pub async fn connect_once(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = client(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client, config)
        .await
        .with_context(|| format!("cannot connect to redis at {}", redacted(url)))
}

/// A shared, self-healing connection.
#[derive(Clone)]
pub struct RedisLink {
    /// Redacted: this is what logs and errors show.
    url: String,
    client: redis::Client,
    conn: watch::Receiver<Option<ConnectionManager>>,
}

impl RedisLink {
    /// Starts connecting in the background and returns at once.
    pub fn start(url: &str, shutdown: CancellationToken) -> anyhow::Result<RedisLink> {
        let client = client(url)?;
        let (tx, rx) = watch::channel(None);
        tokio::spawn(connect_loop(redacted(url), client.clone(), tx, shutdown));
        Ok(RedisLink {
            url: redacted(url),
            client,
            conn: rx,
        })
    }

    /// The URL with any credentials hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client for callers that need connections of their own (blocking
    /// commands such as BRPOP must not share the multiplexed one).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The connection, if one has been made.
    pub fn get(&self) -> Option<ConnectionManager> {
        self.conn.borrow().clone()
    }

    /// Waits until a connection has been made (or `cancel` fires).
    pub async fn ready(&self, cancel: &CancellationToken) -> Option<ConnectionManager> {
        let mut rx = self.conn.clone();
        tokio::select! {
            r = rx.wait_for(|c| c.is_some()) => r.ok().and_then(|c| c.clone()),
            _ = cancel.cancelled() => None,
        }
    }
}

/// The pauses between connection attempts: 100 ms growing to 5 s, with
/// full jitter, so that the daemons whose Redis went away at the same
/// moment do not all knock at the same instants.
fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).full_jitter()
}

async fn connect_loop(
    url: String,
    client: redis::Client,
    tx: watch::Sender<Option<ConnectionManager>>,
    shutdown: CancellationToken,
) {
    let mut delay = reconnect_backoff();
    let mut attempts: u64 = 0;
    loop {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // Reconnection after a drop is retried by our sync loop's
            // next command; keep each reconnect attempt short.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(1000));
        match ConnectionManager::new_with_config(client.clone(), config).await {
            Ok(conn) => {
                if attempts > 0 {
                    tracing::info!(redis = %url, attempts, "connected to redis");
                } else {
                    tracing::debug!(redis = %url, "connected to redis");
                }
                let _ = tx.send(Some(conn));
                return;
            }
            Err(e) => {
                attempts += 1;
                // Say it loudly once, then about every minute.
                if attempts == 1 || attempts.is_multiple_of(12) {
                    tracing::warn!(redis = %url, error = %e, retry_in = ?delay.peek(), attempts,
                        "redis unreachable; tasks keep running and results are published once it answers");
                }
            }
        }
        if delay.sleep(&shutdown).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    /// Full jitter: the first pause is anywhere in 0..=100 ms, not 100 ms
    /// every time.
    #[test]
    fn reconnect_pauses_are_jittered() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let wait = super::reconnect_backoff().advance();
            assert!(wait <= std::time::Duration::from_millis(100), "{wait:?}");
            seen.insert(wait.as_millis() / 10);
        }
        assert!(seen.len() >= 5, "pauses not spread over the step: {seen:?}");
    }

    #[test]
    fn credentials_never_show() {
        for (url, shown) in [
            (
                "redis://:secret@127.0.0.1:6379",
                "redis://:***@127.0.0.1:6379",
            ),
            ("redis://admin:secret@h:1/0", "redis://***:***@h:1/0"),
            ("rediss://u@h", "rediss://***@h"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("unix:///run/r.sock", "unix:///run/r.sock"),
            (
                "unix:///run/r.sock?db=1&pass=secret",
                "unix:///run/r.sock?db=1&pass=***",
            ),
            ("redis://:sec ret@[bad", "redis://***"),
        ] {
            let out = redacted(url);
            assert_eq!(out, shown, "{url}");
            assert!(!out.contains("secret") && !out.contains("sec ret"), "{out}");
        }
    }
}
