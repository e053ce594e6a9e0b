//! Where the grid secret comes from, in this order: a file
//! (`--mnemonic-file`, `[rmb] mnemonic_file`), a systemd credential
//! (`LoadCredential=mnemonic:...`, read from `$CREDENTIALS_DIRECTORY`), the
//! `ZOS_PERF_MNEMONIC` environment variable, or a prompt on the terminal
//! (never for the daemon). Never a command-line argument (it would show in
//! `ps` and the shell's history) and never a log line. The text is held in
//! a zeroizing buffer.
//!
//! The environment variable is read once, at the very start of `main`, and
//! taken out of the process environment there ([`take_from_environment`]):
//! every program the daemon starts (redis-server, iperf3, ping, qemu, the
//! workloads command) inherits the environment, and none of them has any use
//! for the secret.

use std::io::{IsTerminal, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use zeroize::Zeroizing;

use super::error::RmbError;

pub(crate) const ENV_VAR: &str = "ZOS_PERF_MNEMONIC";
/// The environment variable systemd sets to the service's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";
/// The credential's name: `LoadCredential=mnemonic:/etc/zos-perf/mnemonic`.
pub const CREDENTIAL: &str = "mnemonic";

/// A mnemonic is at most 24 words; a seed 66 characters.
const MAX_SECRET_FILE: u64 = 4096;

/// `ZOS_PERF_MNEMONIC` as [`take_from_environment`] found it, once it ran.
static FROM_ENVIRONMENT: OnceLock<Option<Zeroizing<Vec<u8>>>> = OnceLock::new();

/// Reads `ZOS_PERF_MNEMONIC` into this process's memory and removes it from
/// the environment, its text overwritten with zeros first (so that
/// `/proc/self/environ`, which shows the environment the process started
/// with, no longer holds it either). Later calls do nothing; [`load`] uses
/// what was taken.
///
/// # Safety
///
/// No other thread may exist yet: changing the environment races with any
/// thread that reads it (C code calling `getenv`, too), which is why
/// `remove_var` is `unsafe` from edition 2024 on. `main` calls this first
/// thing, before the log's writer thread and the async runtime start.
pub unsafe fn take_from_environment() {
    if FROM_ENVIRONMENT.get().is_some() {
        return;
    }
    let value = std::env::var_os(ENV_VAR).map(|v| Zeroizing::new(v.into_vec()));
    let present = value.is_some();
    let _ = FROM_ENVIRONMENT.set(value);
    if !present {
        return;
    }
    let name = c"ZOS_PERF_MNEMONIC";
    // SAFETY: single-threaded (the caller's promise). getenv returns the
    // value's bytes inside the environment block (the process's stack for
    // the environment it started with, the heap for one set later), both
    // writable, NUL-terminated: strlen stays inside them.
    unsafe {
        let value = nix::libc::getenv(name.as_ptr());
        if !value.is_null() {
            std::ptr::write_bytes(value, 0, nix::libc::strlen(value));
        }
        std::env::remove_var(ENV_VAR);
    }
}

/// The secret from `file` if given, else the systemd credential, else the
/// environment, else a prompt when standard input is a terminal.
pub fn load(file: Option<&Path>) -> Result<Zeroizing<String>, RmbError> {
    if let Some(secret) = unprompted(file)? {
        return Ok(secret);
    }
    if std::io::stdin().is_terminal() {
        let typed = Zeroizing::new(
            rpassword::prompt_password("grid mnemonic or hex seed (not echoed): ")
                .map_err(|e| RmbError::Secret(format!("reading the prompt: {e}")))?,
        );
        if typed.trim().is_empty() {
            return Err(RmbError::Secret("nothing was typed".into()));
        }
        return Ok(typed);
    }
    Err(RmbError::Secret(format!(
        "no secret: pass --mnemonic-file PATH, set [rmb] mnemonic_file, \
         the credential {CREDENTIAL:?} or {ENV_VAR}, or run on a terminal to be asked"
    )))
}

/// [`load`] without the prompt, for the daemon (nobody to ask).
pub fn load_for_daemon(file: Option<&Path>) -> Result<Zeroizing<String>, RmbError> {
    unprompted(file)?.ok_or_else(|| {
        RmbError::Secret(format!(
            "no secret for the serving twin: set [rmb] mnemonic_file, \
             the systemd credential {CREDENTIAL:?} (LoadCredential=) or {ENV_VAR}"
        ))
    })
}

fn unprompted(file: Option<&Path>) -> Result<Option<Zeroizing<String>>, RmbError> {
    if let Some(path) = file {
        return read_file("mnemonic file", path).map(Some);
    }
    if let Some(dir) = std::env::var_os(CREDENTIALS_DIRECTORY) {
        if let Some(secret) = from_credentials(Path::new(&dir))? {
            return Ok(Some(secret));
        }
    }
    from_environment()
}

fn from_environment() -> Result<Option<Zeroizing<String>>, RmbError> {
    // Not taken (the library used without zos-perf's main): read in place.
    let read;
    let bytes: &[u8] = match FROM_ENVIRONMENT.get() {
        Some(Some(taken)) => taken,
        Some(None) => return Ok(None),
        None => match std::env::var_os(ENV_VAR) {
            Some(value) => {
                read = Zeroizing::new(value.into_vec());
                &read
            }
            None => return Ok(None),
        },
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|_| RmbError::Secret(format!("{ENV_VAR} is not UTF-8")))?;
    if text.trim().is_empty() {
        return Err(RmbError::Secret(format!("{ENV_VAR} is empty")));
    }
    Ok(Some(Zeroizing::new(text.to_owned())))
}

/// The credential [`CREDENTIAL`] in the credentials directory `dir`, if
/// there is one. The daemon runs as root, so nothing another user could
/// have put there is trusted: the directory and every directory above it
/// must be owned by root or us, the directory writable by nobody else and
/// those above only sticky if others can write them (as `/tmp`); the
/// credential must be a regular file of root or ours, writable by nobody
/// else. A symbolic link is followed only to a file inside the directory.
pub fn from_credentials(dir: &Path) -> Result<Option<Zeroizing<String>>, RmbError> {
    let refuse = |e: String| {
        RmbError::Secret(format!(
            "credential {CREDENTIAL} in {} ({CREDENTIALS_DIRECTORY}): {e}",
            dir.display()
        ))
    };
    if !dir.is_absolute() {
        return Err(refuse("not an absolute path".into()));
    }
    let path = dir.join(CREDENTIAL);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refuse(e.to_string())),
    };
    let dir = trusted_directory(dir).map_err(|e| refuse(e.to_string()))?;
    let target = if meta.file_type().is_symlink() {
        let real = std::fs::canonicalize(&path).map_err(|e| refuse(e.to_string()))?;
        if !real.starts_with(&dir) || real == dir {
            return Err(refuse(format!(
                "a symbolic link out of the directory (to {}): refusing it",
                real.display()
            )));
        }
        real
    } else {
        dir.join(CREDENTIAL)
    };
    read_file("credential", &target).map(Some)
}

/// Why a credentials directory is not trusted ([`trusted_directory`]).
#[derive(Debug, thiserror::Error)]
enum Untrusted {
    /// The directory cannot be resolved (does not exist, no permission).
    #[error("{0}")]
    Resolve(std::io::Error),
    #[error("{}: {error}", .path.display())]
    Metadata {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} is owned by another user (uid {uid}): refusing it", .path.display())]
    Owner { path: PathBuf, uid: u32 },
    #[error("{} is writable by group or others: refusing it", .0.display())]
    Writable(PathBuf),
}

/// `dir` without symbolic links, once it and every directory above it
/// passed the checks of [`from_credentials`].
fn trusted_directory(dir: &Path) -> Result<PathBuf, Untrusted> {
    let real = std::fs::canonicalize(dir).map_err(Untrusted::Resolve)?;
    let me = nix::unistd::geteuid().as_raw();
    for (i, d) in real.ancestors().enumerate() {
        let meta = std::fs::metadata(d).map_err(|error| Untrusted::Metadata {
            path: d.to_path_buf(),
            error,
        })?;
        if !meta.is_dir() {
            return Err(Untrusted::NotADirectory(d.to_path_buf()));
        }
        if meta.uid() != 0 && meta.uid() != me {
            return Err(Untrusted::Owner {
                path: d.to_path_buf(),
                uid: meta.uid(),
            });
        }
        let open = meta.mode() & 0o022 != 0;
        let sticky = meta.mode() & 0o1000 != 0;
        if open && (i == 0 || !sticky) {
            return Err(Untrusted::Writable(d.to_path_buf()));
        }
    }
    Ok(real)
}

/// Reads a secret file: a regular file (a symbolic link is refused, so the
/// name cannot be pointed elsewhere), small, of root or ours, not writable
/// by others.
fn read_file(kind: &str, path: &Path) -> Result<Zeroizing<String>, RmbError> {
    let what = |e: String| RmbError::Secret(format!("{kind} {}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| what(e.to_string()))?;
    let meta = file.metadata().map_err(|e| what(e.to_string()))?;
    if !meta.is_file() {
        return Err(what("not a regular file".into()));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(what(format!(
            "{} bytes is too large for a secret",
            meta.len()
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(what(format!(
            "owned by another user (uid {}): refusing it",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(what("writable by group or others: refusing it".into()));
    }
    if meta.mode() & 0o044 != 0 {
        tracing::warn!(file = %path.display(), "{kind} is readable by group or others");
    }
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_SECRET_FILE)
        .read_to_string(&mut text)
        .map_err(|e| what(e.to_string()))?;
    if text.trim().is_empty() {
        return Err(what("empty".into()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const WORDS: &str = "a secret that is only read";

    /// A credentials directory as systemd makes one: ours, mode 700.
    fn credentials() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        chmod(dir.path(), 0o700);
        dir
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn put(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join(CREDENTIAL);
        std::fs::write(&path, WORDS).expect("write");
        chmod(&path, mode);
        path
    }

    fn refused(dir: &Path) -> String {
        match from_credentials(dir) {
            Err(e) => e.to_string(),
            Ok(got) => panic!("accepted: {:?}", got.map(|s| s.len())),
        }
    }

    #[test]
    fn a_credential_is_read_and_an_absent_one_is_no_secret() {
        let dir = credentials();
        assert!(from_credentials(dir.path()).expect("read").is_none());
        put(dir.path(), 0o400);
        let got = from_credentials(dir.path()).expect("read").expect("some");
        assert_eq!(got.as_str(), WORDS);
    }

    #[test]
    fn a_credential_others_can_write_is_refused() {
        let dir = credentials();
        put(dir.path(), 0o602);
        let e = refused(dir.path());
        assert!(e.contains("writable by group or others"), "{e}");
        assert!(!e.contains(WORDS), "{e}");
    }

    #[test]
    fn a_credentials_directory_others_can_write_is_refused() {
        let dir = credentials();
        put(dir.path(), 0o400);
        chmod(dir.path(), 0o777);
        let e = refused(dir.path());
        assert!(e.contains("writable by group or others"), "{e}");
        // Sticky does not make the directory itself trusted.
        chmod(dir.path(), 0o1777);
        assert!(refused(dir.path()).contains("writable by group or others"));
    }

    #[test]
    fn a_directory_above_that_others_can_write_is_refused_unless_sticky() {
        let above = tempfile::tempdir().expect("tempdir");
        let dir = above.path().join("credentials");
        std::fs::create_dir(&dir).expect("mkdir");
        chmod(&dir, 0o700);
        put(&dir, 0o400);
        chmod(above.path(), 0o777);
        let e = refused(&dir);
        assert!(e.contains(&above.path().display().to_string()), "{e}");
        chmod(above.path(), 0o1777);
        assert!(from_credentials(&dir).expect("read").is_some());
    }

    #[test]
    fn a_link_is_followed_only_inside_the_directory() {
        let dir = credentials();
        let outside = credentials();
        let target = put(outside.path(), 0o400);
        std::os::unix::fs::symlink(&target, dir.path().join(CREDENTIAL)).expect("symlink");
        let e = refused(dir.path());
        assert!(e.contains("symbolic link out of the directory"), "{e}");
        std::fs::remove_file(dir.path().join(CREDENTIAL)).expect("rm");
        let inside = dir.path().join("mnemonic.real");
        std::fs::write(&inside, WORDS).expect("write");
        chmod(&inside, 0o400);
        std::os::unix::fs::symlink("mnemonic.real", dir.path().join(CREDENTIAL)).expect("ln");
        let got = from_credentials(dir.path()).expect("read").expect("some");
        assert_eq!(got.as_str(), WORDS);
    }

    #[test]
    fn a_relative_credentials_directory_is_refused() {
        let e = refused(Path::new("run/credentials"));
        assert!(e.contains("not an absolute path"), "{e}");
    }
}
