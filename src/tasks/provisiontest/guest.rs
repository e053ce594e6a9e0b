//! The contract with the test guest: a token in, the same token out.
//!
//! Each run draws a random token and puts `zosperf.marker=<token>` on the
//! guest kernel's command line. The guest's init reads `/proc/cmdline` and
//! prints the line `ZOSPERF-BOOTED <token>` on the serial console. Seeing
//! that line proves the kernel booted and user space ran; the prefix differs
//! from the parameter's name so that a kernel echoing its own command line
//! can never pass for the guest.

use std::fmt::Write as _;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The kernel parameter carrying the token.
pub(crate) const PARAM: &str = "zosperf.marker";
/// What the guest prints before the token.
pub(crate) const PREFIX: &str = "ZOSPERF-BOOTED";
/// How much of the console's end is kept for an error message.
const TAIL: usize = 1024;

/// One run's marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    token: String,
}

impl Marker {
    /// A fresh random token (64 bits, hex).
    pub fn random() -> Marker {
        let n: u64 = rand::random();
        Marker {
            token: format!("{n:016x}"),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The guest kernel's command line: serial console, no reboot loop on a
    /// panic, quiet (a serial console under emulation is slow), the token.
    pub fn cmdline(&self) -> String {
        format!("console=ttyS0 quiet panic=-1 {PARAM}={}", self.token)
    }

    /// The line the guest prints.
    pub fn line(&self) -> String {
        format!("{PREFIX} {}", self.token)
    }
}

/// Reads the console until the marker's line appears (`true`) or the
/// stream ends (`false`). `seen` keeps the console's last bytes (about 1 KiB,
/// however much the guest prints) for an error message, also when the
/// caller stops waiting.
pub async fn watch<R: AsyncRead + Unpin>(
    mut console: R,
    marker: &Marker,
    seen: &mut Vec<u8>,
) -> bool {
    let wanted = marker.line().into_bytes();
    let keep = TAIL.max(wanted.len() + 1);
    let mut buf = [0u8; 4096];
    loop {
        let n = match console.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        // Look from just before the new bytes: a marker may span two reads.
        let from = seen.len().saturating_sub(wanted.len() + 1);
        seen.extend_from_slice(&buf[..n]);
        if contains_line(&seen[from..], &wanted) {
            return true;
        }
        if seen.len() > keep {
            seen.drain(..seen.len() - keep);
        }
    }
}

/// Whether `hay` holds `line` as a whole line (ends at `\r` or `\n`).
fn contains_line(hay: &[u8], line: &[u8]) -> bool {
    hay.windows(line.len() + 1)
        .any(|w| w[..line.len()] == *line && matches!(w[line.len()], b'\r' | b'\n'))
}

/// Console bytes as one line of text: control characters become spaces,
/// runs of spaces one space.
pub(crate) fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for word in text.split(|c: char| c.is_control() || c.is_whitespace()) {
        if !word.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            let _ = write!(out, "{word}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_on_the_cmdline_and_the_line_differs_from_the_parameter() {
        let m = Marker::random();
        assert_eq!(m.token().len(), 16);
        assert_ne!(Marker::random(), m, "a fresh token per run");
        assert!(m
            .cmdline()
            .ends_with(&format!("zosperf.marker={}", m.token())));
        assert_eq!(m.line(), format!("ZOSPERF-BOOTED {}", m.token()));
        assert!(!m.cmdline().contains(&m.line()));
    }

    #[tokio::test]
    async fn the_marker_is_found_across_reads_and_only_as_a_whole_line() {
        let m = Marker::random();
        let (mut tx, rx) = tokio::io::duplex(8);
        let text = format!(
            "[    0.0] Command line: {}\r\nZOSPERF-BOOTED {}0\r\n{}\r\n",
            m.cmdline(),
            m.token(),
            m.line()
        );
        let writer = async move {
            use tokio::io::AsyncWriteExt;
            let _ = tx.write_all(text.as_bytes()).await;
        };
        let mut seen = Vec::new();
        let (found, ()) = tokio::join!(watch(rx, &m, &mut seen), writer);
        assert!(found);
    }

    #[tokio::test]
    async fn an_ended_console_keeps_its_last_bytes_and_an_echoed_cmdline_is_no_marker() {
        let m = Marker::random();
        let mut text = "x".repeat(10_000);
        text.push_str("\r\nKernel panic - not syncing: no init found\r\n");
        let mut seen = Vec::new();
        assert!(!watch(text.as_bytes(), &m, &mut seen).await);
        let tail = printable(&seen);
        assert!(
            tail.ends_with("Kernel panic - not syncing: no init found"),
            "{tail}"
        );
        assert!(seen.len() <= 1024);
        let cmdline_only = format!("Command line: {}\n", m.cmdline());
        assert!(!watch(cmdline_only.as_bytes(), &m, &mut Vec::new()).await);
    }
}
