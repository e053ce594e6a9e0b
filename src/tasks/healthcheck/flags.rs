//! The flags the power daemon reads: empty files in one directory.
//!
//! The power daemon stops reporting uptime while a flag is present, so a
//! flag must say exactly "this check failed at its last attempt" and nothing
//! else. Only the names of [`Flag`] are ever written there: the type makes
//! any other name impossible.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;

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

    /// Whether the flag's file exists.
    pub fn is_set(&self, flag: Flag) -> bool {
        self.path(flag).exists()
    }

    /// Creates the flag as an empty file, and the directory if it is missing
    /// (`/tmp/flags` does not survive a reboot). The directory lives in a
    /// place anyone can write to, so it must be a real directory (not a
    /// link) that only its owner (us or root) can write, and the flag is
    /// created without following a link planted in its place.
    pub async fn set(&self, flag: Flag) -> anyhow::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let path = self.path(flag);
        let shown = self.dir.display();
        tokio::fs::create_dir_all(&self.dir)
            .await
            .with_context(|| format!("creating flags directory {shown}"))?;
        let meta = tokio::fs::symlink_metadata(&self.dir)
            .await
            .with_context(|| format!("flags directory {shown}"))?;
        let euid = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() {
            anyhow::bail!("flags directory {shown}: is a link or not a directory");
        }
        if (meta.uid() != euid && meta.uid() != 0) || meta.mode() & 0o022 != 0 {
            anyhow::bail!(
                "flags directory {shown}: others could write to it (owner uid {}, mode {:o})",
                meta.uid(),
                meta.mode() & 0o7777
            );
        }
        tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&path)
            .await
            .with_context(|| format!("setting flag {}", path.display()))?;
        Ok(())
    }

    /// Removes the flag; a flag that is not there is already clear.
    pub async fn clear(&self, flag: Flag) -> anyhow::Result<()> {
        let path = self.path(flag);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("clearing flag {}", path.display())),
        }
    }

    /// Sets the flag when `failing`, clears it otherwise. A flag that cannot
    /// be written is logged, not returned: the check's own result is still
    /// true and worth storing.
    pub async fn update(&self, flag: Flag, failing: bool) {
        let done = if failing {
            self.set(flag).await
        } else {
            self.clear(flag).await
        };
        if let Err(e) = done {
            tracing::error!(flag = flag.name(), error = %format!("{e:#}"),
                "cannot update the flag the power daemon reads");
        }
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
        assert!(format!("{err:#}").contains("others could write"), "{err:#}");
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
