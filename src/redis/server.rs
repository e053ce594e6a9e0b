//! A private redis-server for a daemon started with no Redis address.
//!
//! On a node, Redis is always there. On a laptop or a fresh machine the
//! daemon should still just work: when nothing names a Redis and nothing
//! answers on the default `redis://127.0.0.1:6379`, `zos-perf run` starts its
//! own redis-server on a unix socket in a runtime directory, keeps nothing
//! on disk, and stops it on exit. With an explicit address it never does.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// The address tried when nothing names one.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// The runtime directory of this user's daemon.
pub fn runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        return Path::new(&dir).join("zos-perf");
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/zos-perf");
    }
    std::env::temp_dir().join(format!("zos-perf-{}", nix::unistd::geteuid()))
}

/// The socket of the private redis-server, when one runs.
pub fn socket_path() -> PathBuf {
    runtime_dir().join("redis.sock")
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

/// The Redis the read-only commands talk to: the configured one, else the
/// daemon's private one if it runs, else `default`.
pub async fn reader_url(configured: Option<&str>, default: &str) -> String {
    if let Some(url) = configured {
        return url.to_string();
    }
    let private = socket_url();
    if socket_path().exists() && answers(&private).await {
        return private;
    }
    default.to_string()
}

/// A redis-server child process; killed when dropped.
pub struct PrivateRedis {
    child: Child,
    socket: PathBuf,
}

impl PrivateRedis {
    /// Starts `redis-server` on a unix socket at `socket` with no
    /// persistence and no TCP port, and waits until it answers.
    pub async fn start(socket: &Path) -> anyhow::Result<PrivateRedis> {
        let dir = socket.parent().context("socket path has no directory")?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating runtime directory {}", dir.display()))?;
        let _ = std::fs::remove_file(socket);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own process group: a Ctrl-C or a signal to the daemon's
            // group must not stop Redis before the daemon has finished with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (is it installed? scripts/setup installs it)")?;
        let me = PrivateRedis {
            child,
            socket: socket.to_path_buf(),
        };
        let url = me.url();
        for _ in 0..100 {
            if answers(&url).await {
                return Ok(me);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "redis-server on {} did not answer within 5 s",
            socket.display()
        )
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Stops the server and removes its socket.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        let _ = std::fs::remove_file(&self.socket);
    }
}
