//! The `.prom` file for node_exporter's textfile collector: the same
//! metrics as `/metrics` (less `process_*`, which node_exporter has of its
//! own), rewritten every `textfile_interval`.
//!
//! The daemon runs as root, so the directory is trusted only if it is a
//! real directory (not a link) owned by this user and writable by no one
//! else; it is opened once per write and everything after happens relative
//! to that handle, so nothing can swap it under us. The file is written to
//! a temporary name (which node_exporter ignores: it reads `*.prom` only),
//! created exclusively and without following links, then renamed over
//! [`FILE_NAME`], so a reader sees the old file or the new one, never half.
//! On shutdown the file is removed: stale figures served for ever would be
//! worse than none.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};
use tokio_util::sync::CancellationToken;

use super::metrics::{Exporter, Format};

/// The file node_exporter reads.
pub(crate) const FILE_NAME: &str = "zos_perf.prom";
const TEMP_NAME: &str = ".zos_perf.prom.tmp";

/// Opens `dir` if it may be trusted.
fn open_dir(dir: &Path) -> anyhow::Result<File> {
    let what = || format!("metrics.textfile_dir {}", dir.display());
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags(OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW))
        .open(dir)
        .with_context(|| {
            format!(
                "{}: cannot open it as a directory (a link is refused)",
                what()
            )
        })?;
    let meta = handle.metadata().with_context(what)?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        anyhow::bail!(
            "{}: owned by uid {}, not by this user (uid {me}): refusing to write there",
            what(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "{}: writable by group or others (mode {:o}): refusing to write there",
            what(),
            meta.mode() & 0o7777
        );
    }
    Ok(handle)
}

fn libc_flags(f: OFlag) -> i32 {
    f.bits()
}

/// Writes `text` as `dir/zos_perf.prom`, atomically.
pub fn write(dir: &Path, text: &str) -> anyhow::Result<()> {
    let d = open_dir(dir)?;
    let fd = &d;
    // A temporary file left by a crash is ours to remove.
    let _ = unlinkat(fd, TEMP_NAME, UnlinkatFlags::NoRemoveDir);
    let owned = openat(
        fd,
        TEMP_NAME,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .with_context(|| format!("creating {}", dir.join(TEMP_NAME).display()))?;
    let mut file = File::from(owned);
    let written = file.write_all(text.as_bytes()).and_then(|()| file.flush());
    drop(file);
    if let Err(e) = written {
        let _ = unlinkat(fd, TEMP_NAME, UnlinkatFlags::NoRemoveDir);
        return Err(e).with_context(|| format!("writing {}", dir.join(TEMP_NAME).display()));
    }
    renameat(fd, TEMP_NAME, fd, FILE_NAME)
        .with_context(|| format!("renaming into {}", dir.join(FILE_NAME).display()))
}

/// Removes the file (on shutdown).
pub fn remove(dir: &Path) -> anyhow::Result<()> {
    let d = open_dir(dir)?;
    match unlinkat(&d, FILE_NAME, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.join(FILE_NAME).display())),
    }
}

/// Rewrites the file every `interval` until `shutdown`, then removes it.
/// Failures are logged (once per run of failures), never fatal.
pub async fn run(
    dir: PathBuf,
    interval: Duration,
    exporter: Exporter,
    shutdown: CancellationToken,
) {
    let exporter = std::sync::Arc::new(exporter);
    let mut failing = false;
    loop {
        let (d, e) = (dir.clone(), exporter.clone());
        let done = tokio::task::spawn_blocking(move || write(&d, &e.render(Format::Text))).await;
        match done {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!(dir = %dir.display(), "textfile written again");
                }
                failing = false;
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %format!("{e:#}"), "cannot write the metrics textfile; will retry");
                }
                failing = true;
            }
            Err(e) => tracing::error!(error = %e, "textfile writer panicked"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    let d = dir.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || remove(&d)).await {
        tracing::warn!(error = %format!("{e:#}"), "cannot remove the metrics textfile");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn private_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        d
    }

    #[test]
    fn writes_atomically_and_replaces() {
        let d = private_dir();
        write(d.path(), "a 1\n").expect("first");
        write(d.path(), "a 2\n").expect("second");
        let got = std::fs::read_to_string(d.path().join(FILE_NAME)).expect("read");
        assert_eq!(got, "a 2\n");
        assert!(!d.path().join(TEMP_NAME).exists());
        remove(d.path()).expect("remove");
        assert!(!d.path().join(FILE_NAME).exists());
        remove(d.path()).expect("remove again is fine");
    }

    #[test]
    fn a_link_or_a_shared_directory_is_refused() {
        let d = private_dir();
        let link = d.path().join("link");
        let target = private_dir();
        std::os::unix::fs::symlink(target.path(), &link).expect("symlink");
        let e = write(&link, "x 1\n").expect_err("link");
        assert!(e.to_string().contains("metrics.textfile_dir"), "{e:#}");
        assert!(!target.path().join(FILE_NAME).exists());

        let shared = private_dir();
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod");
        let e = write(shared.path(), "x 1\n").expect_err("world-writable");
        assert!(
            format!("{e:#}").contains("writable by group or others"),
            "{e:#}"
        );
    }

    #[test]
    fn a_link_planted_at_the_file_name_is_replaced_not_followed() {
        let d = private_dir();
        let victim = private_dir();
        let victim_file = victim.path().join("victim");
        std::fs::write(&victim_file, "keep").expect("victim");
        std::os::unix::fs::symlink(&victim_file, d.path().join(FILE_NAME)).expect("symlink");
        std::os::unix::fs::symlink(&victim_file, d.path().join(TEMP_NAME)).expect("symlink");
        write(d.path(), "y 1\n").expect("write");
        assert_eq!(std::fs::read_to_string(&victim_file).expect("read"), "keep");
        let meta = std::fs::symlink_metadata(d.path().join(FILE_NAME)).expect("meta");
        assert!(meta.file_type().is_file());
    }
}
