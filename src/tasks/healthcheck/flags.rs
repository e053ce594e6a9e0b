//! The flags the power daemon reads: empty files in one directory.
//!
//! The power daemon stops reporting uptime while a flag is present, so a
//! flag must say exactly "this check failed at its last attempt" and nothing
//! else. Only the names of [`Flag`] are ever written there: the type makes
//! any other name impossible.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A flag the healthcheck sets when a check fails and clears when it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// The cache directory cannot be written.
    ReadonlyCache,
    /// At least one grid service could not be reached.
    NotReachable,
}

impl Flag {
    pub const ALL: [Flag; 2] = [Flag::ReadonlyCache, Flag::NotReachable];

    /// The file name, a wire fact the power daemon knows.
    pub fn name(self) -> &'static str {
        match self {
            Flag::ReadonlyCache => "readonly-cache",
            Flag::NotReachable => "not-reachable",
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
    /// (`/tmp/flags` does not survive a reboot).
    pub async fn set(&self, flag: Flag) -> anyhow::Result<()> {
        let path = self.path(flag);
        tokio::fs::create_dir_all(&self.dir)
            .await
            .with_context(|| format!("creating flags directory {}", self.dir.display()))?;
        tokio::fs::File::create(&path)
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
