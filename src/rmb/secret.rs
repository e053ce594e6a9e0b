//! Where the grid secret comes from: a file, the `ZOS_PERF_MNEMONIC`
//! environment variable, or a prompt on the terminal, in that order.
//! Never a command-line argument (it would show in `ps` and the shell's
//! history) and never a log line. The text is held in a zeroizing buffer.

use std::io::{IsTerminal, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use super::error::RmbError;

pub(crate) const ENV_VAR: &str = "ZOS_PERF_MNEMONIC";

/// A mnemonic is at most 24 words; a seed 66 characters.
const MAX_SECRET_FILE: u64 = 4096;

/// The secret from `file` if given, else the environment, else a prompt
/// when standard input is a terminal.
pub fn load(file: Option<&Path>) -> Result<Zeroizing<String>, RmbError> {
    if let Some(path) = file {
        return read_file(path);
    }
    if let Some(value) = std::env::var_os(ENV_VAR) {
        let value = Zeroizing::new(
            value
                .into_string()
                .map_err(|_| RmbError::Secret(format!("{ENV_VAR} is not UTF-8")))?,
        );
        if value.trim().is_empty() {
            return Err(RmbError::Secret(format!("{ENV_VAR} is empty")));
        }
        return Ok(value);
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
        "no secret: pass --mnemonic-file PATH, set [rmb] mnemonic_file or {ENV_VAR}, or run on a terminal to be asked"
    )))
}

/// Reads a secret file: a regular file (a symbolic link is refused, so the
/// name cannot be pointed elsewhere), small, not writable by others.
fn read_file(path: &Path) -> Result<Zeroizing<String>, RmbError> {
    let what = |e: String| RmbError::Secret(format!("mnemonic file {}: {e}", path.display()));
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
    if meta.mode() & 0o022 != 0 {
        return Err(what("writable by group or others: refusing it".into()));
    }
    if meta.mode() & 0o044 != 0 {
        tracing::warn!(file = %path.display(), "mnemonic file is readable by group or others");
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
