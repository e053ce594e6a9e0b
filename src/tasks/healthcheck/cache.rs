//! The `cache` check: can the node still write to its cache directory?
//!
//! zos keeps its flists, container layers and volumes' metadata there; a
//! cache disk that went read-only (a failing disk remounted by the kernel)
//! leaves a node that looks alive but can deploy nothing.

use std::io::Write;
use std::path::Path;

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
        Ok(Err(reason)) => reason,
        Err(e) => format!("the write attempt did not finish: {e}"),
    };
    vec![format!("failed to write to cache: {reason}")]
}

/// A few bytes, not just an empty file: a full disk still lets an empty file
/// be created when inodes are left, but refuses data.
fn write_and_remove(path: &Path) -> Result<(), String> {
    let written = std::fs::File::create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
        .and_then(|mut f| {
            f.write_all(b"zos-perf healthcheck\n")
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        });
    let created = written.is_ok() || path.exists();
    let removed = if created {
        std::fs::remove_file(path).map_err(|e| format!("cannot remove {}: {e}", path.display()))
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
