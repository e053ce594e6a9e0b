//! Child processes that cannot outlive, outgrow or outwait their run.
//!
//! Every program the daemon starts for a measurement goes through [`run`]:
//!
//! - **Its own process group**, killed as a whole: whatever the child
//!   forks (`sh -c "sleep 97 & echo 3"`) goes when the child's run ends,
//!   however it ends (exit, timeout, cancel, too much output, or the
//!   future dropped by the monitor).
//! - **Bounded output**: stdout and stderr are read as they come, up to a
//!   limit each; past it the group is killed and the run fails saying so
//!   (`yes` cannot fill the daemon's memory, and a child blocked on a full
//!   pipe is not left to run into its timeout).
//! - **A time limit** and a cancellation token.
//!
//! The child itself is always reaped (no zombie).

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// How long the rest of the output is read once the child has exited and
/// its group has been killed.
const DRAIN: Duration = Duration::from_secs(1);

/// What a run may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of stdout kept; more ends the run.
    pub stdout: usize,
    /// Bytes of stderr kept; more ends the run.
    pub stderr: usize,
    pub timeout: Duration,
}

/// How a run ended.
#[derive(Debug)]
pub enum Ended {
    /// The child exited (its group was killed after it).
    Exited {
        status: ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// It wrote more than its limit to `stream` (`"stdout"` or `"stderr"`);
    /// killed. What was read up to the limit is kept.
    TooMuchOutput {
        stream: &'static str,
        limit: usize,
        stdout: Vec<u8>,
    },
    /// Past `Limits::timeout`; killed.
    TimedOut,
    /// `cancel` fired; killed.
    Cancelled,
}

/// Kills the whole group when dropped, unless disarmed.
struct Group {
    pgid: Option<Pid>,
}

impl Group {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid {
            // ESRCH: nobody left in the group.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` (stdin from /dev/null) in a process group of its own.
/// `Err` only when it cannot be started.
pub async fn run(
    cmd: &mut Command,
    limits: Limits,
    cancel: &CancellationToken,
) -> std::io::Result<Ended> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    // The group's id is the child's pid (`process_group(0)`).
    let mut group = Group {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (mut obuf, mut ebuf) = (vec![0u8; 8192], vec![0u8; 8192]);
    let deadline = tokio::time::sleep(limits.timeout);
    tokio::pin!(deadline);

    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            n = read_some(&mut out_pipe, &mut obuf), if out_pipe.is_some() => {
                if !keep(&mut out_pipe, n, &obuf, &mut stdout, limits.stdout) {
                    return Ok(stop(&mut child, &mut group, Ended::TooMuchOutput {
                        stream: "stdout", limit: limits.stdout, stdout,
                    }).await);
                }
            }
            n = read_some(&mut err_pipe, &mut ebuf), if err_pipe.is_some() => {
                if !keep(&mut err_pipe, n, &ebuf, &mut stderr, limits.stderr) {
                    return Ok(stop(&mut child, &mut group, Ended::TooMuchOutput {
                        stream: "stderr", limit: limits.stderr, stdout,
                    }).await);
                }
            }
            _ = &mut deadline => return Ok(stop(&mut child, &mut group, Ended::TimedOut).await),
            _ = cancel.cancelled() => return Ok(stop(&mut child, &mut group, Ended::Cancelled).await),
        }
    };
    // The child is gone; what it left behind in its group goes too, which
    // also closes the pipes they may hold.
    group.kill();
    group.pgid = None;
    let status = status?;
    let rest = async {
        while out_pipe.is_some() || err_pipe.is_some() {
            tokio::select! {
                n = read_some(&mut out_pipe, &mut obuf), if out_pipe.is_some() => {
                    if !keep(&mut out_pipe, n, &obuf, &mut stdout, limits.stdout) {
                        return Some("stdout");
                    }
                }
                n = read_some(&mut err_pipe, &mut ebuf), if err_pipe.is_some() => {
                    if !keep(&mut err_pipe, n, &ebuf, &mut stderr, limits.stderr) {
                        return Some("stderr");
                    }
                }
            }
        }
        None
    };
    let over = tokio::time::timeout(DRAIN, rest).await.ok().flatten();
    Ok(match over {
        Some(stream) => Ended::TooMuchOutput {
            stream,
            limit: if stream == "stdout" {
                limits.stdout
            } else {
                limits.stderr
            },
            stdout,
        },
        None => Ended::Exited {
            status,
            stdout,
            stderr,
        },
    })
}

/// Kills the group, reaps the child, and says how it ended.
async fn stop(child: &mut tokio::process::Child, group: &mut Group, ended: Ended) -> Ended {
    group.kill();
    let _ = child.start_kill();
    let _ = child.wait().await;
    group.pgid = None;
    ended
}

async fn read_some(
    pipe: &mut Option<impl tokio::io::AsyncRead + Unpin>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => Ok(0),
    }
}

/// Appends what was read; closes the pipe at its end (or on an error).
/// False when the output has passed `limit`.
fn keep<P>(
    pipe: &mut Option<P>,
    n: std::io::Result<usize>,
    buf: &[u8],
    into: &mut Vec<u8>,
    limit: usize,
) -> bool {
    match n {
        Ok(0) | Err(_) => {
            *pipe = None;
            true
        }
        Ok(n) => {
            let room = limit.saturating_sub(into.len());
            into.extend_from_slice(&buf[..n.min(room)]);
            n <= room
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        stdout: 4096,
        stderr: 4096,
        timeout: Duration::from_secs(10),
    };

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[tokio::test]
    async fn output_past_the_limit_kills_the_child() {
        let cancel = CancellationToken::new();
        match run(&mut Command::new("yes"), LIMITS, &cancel).await {
            Ok(Ended::TooMuchOutput {
                stream,
                limit,
                stdout,
            }) => {
                assert_eq!((stream, limit, stdout.len()), ("stdout", 4096, 4096));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn what_the_child_forked_goes_with_it() {
        let cancel = CancellationToken::new();
        let marker = format!("{}.{}", 97, std::process::id());
        let script = format!("sleep {marker} & echo 3");
        let started = std::time::Instant::now();
        match run(&mut sh(&script), LIMITS, &cancel).await {
            Ok(Ended::Exited { status, stdout, .. }) => {
                assert!(status.success());
                assert_eq!(stdout, b"3\n");
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        let left = std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .any(|c| String::from_utf8_lossy(&c).contains(&marker));
        assert!(!left, "sleep {marker} outlived its run");
    }

    #[tokio::test]
    async fn a_timeout_and_a_cancel_kill_the_group() {
        let cancel = CancellationToken::new();
        let limits = Limits {
            timeout: Duration::from_millis(200),
            ..LIMITS
        };
        let ended = run(&mut sh("sleep 30 & sleep 30"), limits, &cancel).await;
        assert!(matches!(ended, Ok(Ended::TimedOut)), "{ended:?}");
        cancel.cancel();
        let ended = run(&mut sh("sleep 30"), LIMITS, &cancel).await;
        assert!(matches!(ended, Ok(Ended::Cancelled)), "{ended:?}");
    }
}
