//! Which Redis: the default address, the runtime directory, and the
//! address the CLI's readers use.
//!
//! On a node, Redis is always there. On a laptop or a fresh machine the
//! daemon should still just work: when nothing names a Redis and nothing
//! answers on the default `redis://127.0.0.1:6379` (within
//! [`crate::config::Config::redis_wait`]), `zos-perf run` starts its own
//! redis-server ([`super::private`]) on a unix socket in its runtime
//! directory, keeps nothing on disk, and stops it on exit. With an explicit
//! address it never does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

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

/// Refuses a runtime directory that is not ours alone: a link, not a
/// directory, owned by another user, or open to group or others. Another
/// user who could create it first (it lies under `/tmp` when there is no
/// `XDG_RUNTIME_DIR`) could otherwise put their own server behind our
/// socket path and feed us forged results.
pub fn check_runtime_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("runtime directory {}", dir.display()))?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        anyhow::bail!(
            "runtime directory {} is not a directory (a link?): refusing it",
            dir.display()
        );
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        anyhow::bail!(
            "runtime directory {} is owned by uid {}, not by us (uid {me}): refusing it",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        anyhow::bail!(
            "runtime directory {} is open to other users (mode {:o}; it must be 700): refusing it",
            dir.display(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// Creates the runtime directory (mode 700) if missing, then checks it.
pub fn prepare_runtime_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating runtime directory {}", dir.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| format!("creating runtime directory {}", dir.display()))
        }
    }
    check_runtime_dir(dir)
}

/// The socket of the private redis-server, when one runs.
pub fn socket_path() -> PathBuf {
    runtime_dir().join(super::private::SOCKET)
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
    if let Some(url) = crate::node_redis::instance::recorded_redis(&runtime_dir()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_runtime_directory_open_to_others_or_a_link_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("zos-perf");
        prepare_runtime_dir(&dir).expect("created");
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = prepare_runtime_dir(&dir).expect_err("777");
        assert!(
            format!("{err:#}").contains("open to other users"),
            "{err:#}"
        );

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        let err = check_runtime_dir(&link).expect_err("link");
        assert!(format!("{err:#}").contains("not a directory"), "{err:#}");
    }
}
