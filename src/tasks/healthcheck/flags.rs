//! The flags the power daemon reads: empty files in one directory.
//!
//! The power daemon stops reporting uptime while a flag is present, so a
//! flag must say exactly "this check failed at its last attempt" and nothing
//! else. Only the names of [`Flag`] are ever written there: the type makes
//! any other name impossible.
//!
//! The daemon runs as root and the directory (`/tmp/flags`) lies where
//! other users can create files, so no path is followed blindly: the
//! directory is opened once without following a symbolic link and checked
//! (owned by root or by us, writable by nobody else), and each flag is
//! created or removed relative to that handle, again without following a
//! link (`O_NOFOLLOW`, `openat`, `unlinkat`). A flag planted as a link to
//! some other file is refused, never written through.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

/// A flag a task sets when a check fails and clears when it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// The cache directory cannot be written.
    ReadonlyCache,
    /// At least one grid service could not be reached.
    NotReachable,
    /// The provisiontest's VM did not boot (set by that task).
    VmTestFailed,
}

impl Flag {
    /// The healthcheck's own flags.
    pub const ALL: [Flag; 2] = [Flag::ReadonlyCache, Flag::NotReachable];

    /// The file name, a wire fact the power daemon knows.
    pub fn name(self) -> &'static str {
        match self {
            Flag::ReadonlyCache => "readonly-cache",
            Flag::NotReachable => "not-reachable",
            Flag::VmTestFailed => "vm-test-failed",
        }
    }
}

/// The flags directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    dir: PathBuf,
}

impl Flags {
    pub fn new(dir: impl Into<PathBuf>) -> Flags {
        Flags { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, flag: Flag) -> PathBuf {
        self.dir.join(flag.name())
    }

    /// Whether the flag's file exists (a link counts, and is not followed).
    pub fn is_set(&self, flag: Flag) -> bool {
        std::fs::symlink_metadata(self.path(flag)).is_ok()
    }

    /// Creates the flag as an empty file, and the directory if it is missing
    /// (`/tmp/flags` does not survive a reboot). The directory lives in a
    /// place anyone can write to, so it must be a real directory (not a
    /// link) that only its owner (us or root) can write, and the flag is
    /// created without following a link planted in its place.
    pub async fn set(&self, flag: Flag) -> anyhow::Result<()> {
        let dir = self.open_dir(true)?.context("flags directory vanished")?;
        let path = self.path(flag);
        let fd = nix::fcntl::openat(
            &dir,
            flag.name(),
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| match e {
            Errno::ELOOP => anyhow::anyhow!(
                "setting flag {}: it is a symbolic link; refusing to write through it",
                path.display()
            ),
            e => anyhow::anyhow!("setting flag {}: {e}", path.display()),
        })?;
        let kind = nix::sys::stat::fstat(&fd).map(|st| st.st_mode & SFlag::S_IFMT.bits());
        drop(fd);
        match kind {
            Ok(k) if k == SFlag::S_IFREG.bits() => Ok(()),
            Ok(_) => bail!("setting flag {}: not a regular file", path.display()),
            Err(e) => bail!("setting flag {}: {e}", path.display()),
        }
    }

    /// Removes the flag (a link is removed, not followed); a flag that is
    /// not there, or a directory that is not there, is already clear.
    pub async fn clear(&self, flag: Flag) -> anyhow::Result<()> {
        let path = self.path(flag);
        let Some(dir) = self.open_dir(false)? else {
            return Ok(());
        };
        match nix::unistd::unlinkat(&dir, flag.name(), nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => bail!("clearing flag {}: {e}", path.display()),
        }
    }

    /// Opens the directory without following a link and checks that only
    /// root (or we) can write to it; creates it (0755) when `create`.
    /// `None`: it does not exist and was not to be created.
    fn open_dir(&self, create: bool) -> anyhow::Result<Option<File>> {
        let shown = self.dir.display();
        if create {
            if let Some(parent) = self.dir.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating flags directory {shown}"))?;
            }
            match std::fs::DirBuilder::new().mode(0o755).create(&self.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("creating flags directory {shown}"))
                }
            }
        }
        let dir = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&self.dir)
        {
            Ok(dir) => dir,
            Err(e) if e.kind() == ErrorKind::NotFound && !create => return Ok(None),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ELOOP | nix::libc::ENOTDIR)
                ) =>
            {
                bail!("flags directory {shown} is a symbolic link or not a directory; refusing it")
            }
            Err(e) => return Err(e).with_context(|| format!("opening flags directory {shown}")),
        };
        let meta = dir
            .metadata()
            .with_context(|| format!("flags directory {shown}"))?;
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != 0 && meta.uid() != me {
            bail!(
                "flags directory {shown} is owned by uid {}, not root: refusing it",
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 {
            bail!(
                "flags directory {shown} is writable by others (mode {:o}): refusing it",
                meta.mode() & 0o7777
            );
        }
        Ok(Some(dir))
    }

    /// Sets the flag when `failing`, clears it otherwise. A flag that cannot
    /// be written is logged and returned: the caller counts its check as
    /// failed, since the power daemon was not told what the check found.
    pub async fn update(&self, flag: Flag, failing: bool) -> anyhow::Result<()> {
        let done = if failing {
            self.set(flag).await
        } else {
            self.clear(flag).await
        };
        if let Err(e) = &done {
            tracing::error!(flag = flag.name(), error = %format!("{e:#}"),
                "cannot update the flag the power daemon reads");
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_are_the_wire_names() {
        assert_eq!(Flag::ReadonlyCache.name(), "readonly-cache");
        assert_eq!(Flag::NotReachable.name(), "not-reachable");
        assert_eq!(Flag::VmTestFailed.name(), "vm-test-failed");
    }

    #[tokio::test]
    async fn a_link_in_place_of_a_flag_or_its_directory_is_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("target");
        std::fs::write(&target, b"keep").expect("write");
        let dir = tmp.path().join("flags");
        std::fs::create_dir(&dir).expect("mkdir");
        std::os::unix::fs::symlink(&target, dir.join("vm-test-failed")).expect("symlink");
        let flags = Flags::new(&dir);
        let err = flags.set(Flag::VmTestFailed).await.expect_err("a link");
        assert!(format!("{err:#}").contains("vm-test-failed"), "{err:#}");
        assert_eq!(std::fs::read(&target).expect("read"), b"keep");

        let linked = tmp.path().join("linked-flags");
        std::os::unix::fs::symlink(&dir, &linked).expect("symlink dir");
        let err = Flags::new(&linked)
            .set(Flag::NotReachable)
            .await
            .expect_err("dir link");
        assert!(format!("{err:#}").contains("link"), "{err:#}");
        assert!(!dir.join("not-reachable").exists());

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = Flags::new(&open)
            .set(Flag::NotReachable)
            .await
            .expect_err("world-writable");
        assert!(format!("{err:#}").contains("writable by others"), "{err:#}");
    }

    #[tokio::test]
    async fn set_creates_the_directory_and_an_empty_file_and_clear_is_idempotent() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let flags = Flags::new(tmp.path().join("a/b/flags"));
        flags.set(Flag::NotReachable).await.expect("set");
        let meta = std::fs::metadata(flags.path(Flag::NotReachable)).expect("flag file");
        assert!(meta.is_file());
        assert_eq!(meta.len(), 0);
        flags.set(Flag::NotReachable).await.expect("set again");
        flags.clear(Flag::NotReachable).await.expect("clear");
        assert!(!flags.is_set(Flag::NotReachable));
        flags.clear(Flag::NotReachable).await.expect("clear again");
        // Clearing in a directory that does not exist is not an error either.
        Flags::new(tmp.path().join("missing"))
            .clear(Flag::ReadonlyCache)
            .await
            .expect("clear in missing dir");
        assert!(!tmp.path().join("missing").exists());
    }

    #[tokio::test]
    async fn a_flag_planted_as_a_symlink_is_never_written_through() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        let flags = Flags::new(tmp.path().join("flags"));
        std::fs::create_dir(flags.dir()).expect("mkdir");
        std::os::unix::fs::symlink(&victim, flags.path(Flag::NotReachable)).expect("symlink");
        let err = flags.set(Flag::NotReachable).await.expect_err("a link");
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
        // Clearing removes the link itself, not its target.
        flags.clear(Flag::NotReachable).await.expect("clear");
        assert!(!flags.is_set(Flag::NotReachable));
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    }

    #[tokio::test]
    async fn a_flags_directory_others_can_write_or_a_link_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = Flags::new(&open)
            .set(Flag::ReadonlyCache)
            .await
            .expect_err("777");
        assert!(format!("{err:#}").contains("writable by others"), "{err:#}");
        assert!(!open.join("readonly-cache").exists());

        let real = tmp.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let err = Flags::new(&link)
            .set(Flag::ReadonlyCache)
            .await
            .expect_err("link");
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert!(!real.join("readonly-cache").exists());
    }

    #[tokio::test]
    async fn an_unwritable_flags_directory_is_an_error_naming_the_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("plain-file");
        std::fs::write(&file, b"x").expect("write");
        let err = Flags::new(file.join("flags"))
            .set(Flag::ReadonlyCache)
            .await
            .expect_err("a directory under a file cannot exist");
        assert!(format!("{err:#}").contains("plain-file"), "{err:#}");
    }
}
