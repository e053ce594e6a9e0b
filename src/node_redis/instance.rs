//! The runtime directory: where it is, that it is ours alone, one daemon
//! per directory, and what that daemon records there.
//!
//! The runtime directory (`$XDG_RUNTIME_DIR/zos-perf`, `/run/zos-perf` for
//! root; see [`runtime_dir`]) belongs to one daemon at
//! a time. Two daemons sharing it would share the private redis-server's
//! socket: the second would take it over and delete it on exit while the
//! first still runs. So `zos-perf run` holds a lock there for its whole
//! life, and writes what others need to find:
//!
//! - `daemon.lock`: `flock`ed by the running daemon, with its pid inside.
//!   The lock, not the file, says a daemon runs: the kernel drops it when
//!   the process dies, however it dies, so a stale file never blocks a
//!   start. The file is never removed (removing a lock file races with a
//!   daemon opening it); it is a few bytes.
//! - `redis.url`: the Redis the running daemon uses, so that the CLI's
//!   readers (`get`, `tasks`, `call`, ...) given no address find it. Only a
//!   URL without credentials is written; one with a password is not kept on
//!   disk (give the readers `--redis`). Removed on exit, and trusted only
//!   while the lock is held.
//! - `redis.pid`: the private redis-server's pid
//!   ([`crate::node_redis::private`]).
//!
//! Every file is opened with `O_NOFOLLOW` in a directory checked to be ours
//! alone (owned by us, mode 700), so a link planted there is refused, not
//! followed.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file held by the running daemon.
pub const LOCK_FILE: &str = "daemon.lock";
/// The running daemon's Redis address.
pub const REDIS_URL_FILE: &str = "redis.url";
/// The most read of any record: they hold a pid or a URL.
const MAX_RECORD: u64 = 4096;

/// Another daemon holds the runtime directory.
#[derive(Debug)]
pub struct AlreadyRunning {
    pub dir: PathBuf,
    /// The holder's pid, as it wrote it (none if unreadable).
    pub pid: Option<u32>,
}

impl std::fmt::Display for AlreadyRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = match self.pid {
            Some(pid) => format!("pid {pid}"),
            None => "pid unknown".to_string(),
        };
        write!(
            f,
            "another zos-perf daemon ({who}) already runs with the runtime directory {}; \
             stop it first, or give this one another XDG_RUNTIME_DIR",
            self.dir.display()
        )
    }
}

impl std::error::Error for AlreadyRunning {}

/// The runtime directory, held: dropping it removes the Redis record and
/// releases the lock.
#[derive(Debug)]
pub struct Instance {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Instance {
    /// Creates `dir` if missing (mode 700), checks it is ours alone, and
    /// takes its lock. Fails with [`AlreadyRunning`] in the chain when a
    /// live daemon holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<Instance> {
        prepare_runtime_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = open(&path, libc_flags::CREATE_RW)?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                return Err(AlreadyRunning {
                    dir: dir.to_path_buf(),
                    pid: read_small(&mut file).and_then(|t| t.trim().parse().ok()),
                }
                .into());
            }
            Err((_, errno)) => {
                return Err(std::io::Error::from(errno))
                    .with_context(|| format!("locking {}", path.display()));
            }
        };
        file.set_len(0)
            .and_then(|()| writeln!(&*file, "{}", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Instance {
            dir: dir.to_path_buf(),
            _lock: file,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records `url` as the Redis this daemon uses, for the CLI's readers;
    /// a URL with credentials is not written (nor left from before).
    pub fn record_redis(&self, url: &str) -> anyhow::Result<()> {
        let path = self.dir.join(REDIS_URL_FILE);
        let _ = std::fs::remove_file(&path);
        if crate::node_redis::redacted(url) != url {
            tracing::info!(
                "the redis address has credentials: not recorded for the CLI (give it --redis)"
            );
            return Ok(());
        }
        let mut file = open(&path, libc_flags::CREATE_NEW_W)?;
        writeln!(file, "{url}").with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(REDIS_URL_FILE));
    }
}

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

/// The Redis the daemon running with runtime directory `dir` recorded, if
/// one runs there (its lock is held) and the directory is ours alone.
pub fn recorded_redis(dir: &Path) -> Option<String> {
    check_runtime_dir(dir).ok()?;
    let lock = open(&dir.join(LOCK_FILE), libc_flags::READ).ok()?;
    // A shared lock we can take means no daemon holds the exclusive one:
    // whatever is recorded is stale.
    if Flock::lock(lock, FlockArg::LockSharedNonblock).is_ok() {
        return None;
    }
    let mut file = open(&dir.join(REDIS_URL_FILE), libc_flags::READ).ok()?;
    let url = read_small(&mut file)?.trim().to_string();
    crate::node_redis::check_url(&url).ok()?;
    Some(url)
}

/// Reads the pid recorded in `path`, if it is a regular file of ours.
pub fn read_pid(path: &Path) -> Option<i32> {
    let mut file = open(path, libc_flags::READ).ok()?;
    read_small(&mut file)?
        .trim()
        .parse()
        .ok()
        .filter(|&p| p > 1)
}

/// Writes `pid` to `path` (replacing what was there), mode 600.
pub fn write_pid(path: &Path, pid: u32) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = open(path, libc_flags::CREATE_NEW_W)?;
    writeln!(file, "{pid}").with_context(|| format!("writing {}", path.display()))
}

mod libc_flags {
    use nix::libc::{O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_WRONLY};
    pub const READ: i32 = O_RDONLY;
    pub const CREATE_RW: i32 = O_RDWR | O_CREAT;
    pub const CREATE_NEW_W: i32 = O_WRONLY | O_CREAT | O_EXCL;
}

/// Opens `path` without following a link (`O_NOFOLLOW`), mode 600 when
/// created, and refuses anything but a regular file owned by us.
fn open(path: &Path, flags: i32) -> anyhow::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut options = std::fs::OpenOptions::new();
    options
        .read(flags & nix::libc::O_ACCMODE != nix::libc::O_WRONLY)
        .write(flags & nix::libc::O_ACCMODE != nix::libc::O_RDONLY)
        .mode(0o600)
        .custom_flags(
            (flags & !nix::libc::O_ACCMODE & !nix::libc::O_CREAT & !nix::libc::O_EXCL)
                | nix::libc::O_NOFOLLOW
                | nix::libc::O_CLOEXEC,
        );
    if flags & nix::libc::O_EXCL != 0 {
        options.create_new(true);
    } else if flags & nix::libc::O_CREAT != 0 {
        options.create(true);
    }
    let file = options
        .open(path)
        .with_context(|| format!("opening {} (links are not followed)", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?;
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
        anyhow::bail!(
            "{} is not a regular file of ours: refusing it",
            path.display()
        );
    }
    Ok(file)
}

fn read_small(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.take(MAX_RECORD).read_to_string(&mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_second_holder_is_refused_naming_the_first_and_a_link_is_never_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("zos-perf");
        let first = Instance::acquire(&dir).expect("first");
        first.record_redis("unix:///run/r.sock").expect("record");
        assert_eq!(recorded_redis(&dir).as_deref(), Some("unix:///run/r.sock"));
        let err = Instance::acquire(&dir).expect_err("second");
        let busy = err
            .downcast_ref::<AlreadyRunning>()
            .expect("AlreadyRunning");
        assert_eq!(busy.pid, Some(std::process::id()));
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
        // A credential is never written down.
        first
            .record_redis("redis://:secret@127.0.0.1:1")
            .expect("record");
        assert_eq!(recorded_redis(&dir), None);
        drop(first);
        // Released: the record is gone, the next daemon takes the lock.
        assert_eq!(recorded_redis(&dir), None);
        let again = Instance::acquire(&dir).expect("after release");
        drop(again);

        let target = tmp.path().join("target");
        std::fs::write(&target, "keep").expect("write");
        let pid = dir.join("redis.pid");
        std::os::unix::fs::symlink(&target, &pid).expect("symlink");
        assert_eq!(read_pid(&pid), None);
        std::fs::remove_file(dir.join(LOCK_FILE)).expect("rm");
        std::os::unix::fs::symlink(&target, dir.join(LOCK_FILE)).expect("symlink");
        let err = Instance::acquire(&dir).expect_err("a linked lock file");
        assert!(
            format!("{err:#}").contains("links are not followed"),
            "{err:#}"
        );
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep");
    }

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
