//! The `cache` check: can the node still write to its cache directory?
//!
//! zos keeps its flists, container layers and volumes' metadata there; a
//! cache disk that went read-only (a failing disk remounted by the kernel)
//! leaves a node that looks alive but can deploy nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The file created and removed in the cache directory.
pub(crate) const PROBE_FILE: &str = "healthcheck";

/// Creates, writes and removes [`PROBE_FILE`] in `cache_dir`. Returns the
/// check's errors: none, or one `failed to write to cache: <reason>`.
pub async fn check(cache_dir: &Path) -> Vec<String> {
    let path = cache_dir.join(PROBE_FILE);
    // One blocking call for the three steps: a single hop to the blocking pool.
    let probed = tokio::task::spawn_blocking(move || write_and_remove(&path)).await;
    let reason = match probed {
        Ok(Ok(())) => return Vec::new(),
        Ok(Err(reason)) => reason.to_string(),
        Err(e) => format!("the write attempt did not finish: {e}"),
    };
    vec![format!("failed to write to cache: {reason}")]
}

/// Which step of the probe failed, on which file.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("cannot create {}: {error}", .path.display())]
    Create {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {}: {error}", .path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot remove {}: {error}", .path.display())]
    Remove {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// A few bytes, not just an empty file: a full disk still lets an empty file
/// be created when inodes are left, but refuses data.
fn write_and_remove(path: &Path) -> Result<(), ProbeError> {
    let at = || path.to_path_buf();
    let written = std::fs::File::create(path)
        .map_err(|error| ProbeError::Create { path: at(), error })
        .and_then(|mut f| {
            f.write_all(b"zos-perf healthcheck\n")
                .map_err(|error| ProbeError::Write { path: at(), error })
        });
    let created = written.is_ok() || path.exists();
    let removed = if created {
        std::fs::remove_file(path).map_err(|error| ProbeError::Remove { path: at(), error })
    } else {
        Ok(())
    };
    written.and(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_writable_directory_passes_and_keeps_no_probe_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(check(tmp.path()).await.is_empty());
        assert!(!tmp.path().join(PROBE_FILE).exists());
    }

    #[tokio::test]
    async fn a_missing_directory_fails_with_the_spec_prefix_and_the_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("not-there");
        let errors = check(&dir).await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("failed to write to cache: cannot create "),
            "{errors:?}"
        );
        assert!(errors[0].contains("not-there/healthcheck"), "{errors:?}");
    }
}
