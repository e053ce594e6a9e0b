//! The private redis-server: started, watched, restarted and stopped.
//!
//! The daemon that runs one (no Redis configured, none on the default
//! address; [`super::server`]) holds its runtime directory's lock
//! ([`crate::node_redis::instance`]), so nobody else uses the socket there. The
//! server's pid is recorded in `redis.pid` beside it.
//!
//! - **Left over from a daemon that died** (SIGKILL, a crash): the recorded
//!   server, if it is still ours (its `/proc` entry: same user, a
//!   `redis-*` executable, `redis-server` with our socket on its command
//!   line) and answers, is **adopted**: used as it is, so the results it
//!   holds are kept and the bus answers at once with them. One that is ours
//!   but does not answer is stopped and replaced. A recorded pid that is
//!   now another process is never signalled.
//! - **An unknown server on the socket** (answers, but nothing recorded it):
//!   refused, never unlinked or taken over.
//! - **Dies while the daemon runs**: reaped (no zombie) and started again
//!   on the same socket at once; the store's sync loop finds its keys
//!   missing within a second and writes the results back.
//! - **Stop**: SIGTERM, then SIGKILL, within a deadline the daemon's
//!   shutdown gives, so a stopped (SIGSTOP) or slow server cannot stretch
//!   the shutdown; the socket and the pid record are then removed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::instance::{self, prepare_runtime_dir};
use super::server::{answers, SOCKET};
use crate::util::backoff::Backoff;

/// The pid record's name in the runtime directory.
pub const PID_FILE: &str = "redis.pid";
/// How long a new server has to answer.
const START_WAIT: Duration = Duration::from_secs(5);
/// What a stop keeps, of its deadline, for SIGKILL after SIGTERM.
const KILL_RESERVE: Duration = Duration::from_millis(300);
/// How often an adopted server (not our child: no exit to wait on) is
/// looked at.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

/// The private redis-server of a daemon, watched by a task of its own.
pub struct PrivateRedis {
    socket: PathBuf,
    stop: Option<oneshot::Sender<Instant>>,
    watcher: Option<JoinHandle<()>>,
}

/// The server process: our child, or adopted from an earlier daemon.
enum Server {
    Child(Child),
    Adopted(i32),
}

impl PrivateRedis {
    /// Adopts the server an earlier daemon left in `dir`, or starts one
    /// there (`redis-server` on a unix socket, no TCP port, nothing on
    /// disk), and waits until it answers. The caller holds `dir`'s lock.
    pub async fn start(dir: &Path) -> anyhow::Result<PrivateRedis> {
        prepare_runtime_dir(dir)?;
        let socket = dir.join(SOCKET);
        let pid_file = dir.join(PID_FILE);
        let url = url_of(&socket);
        let recorded = instance::read_pid(&pid_file).filter(|&pid| is_ours(pid, &socket));
        let server = match recorded {
            Some(pid) if answers(&url).await => {
                tracing::info!(pid, socket = %socket.display(),
                    "adopting the private redis-server an earlier daemon left running: its results are kept");
                Server::Adopted(pid)
            }
            Some(pid) => {
                tracing::warn!(
                    pid,
                    "the private redis-server an earlier daemon left does not answer: stopping it"
                );
                Server::Adopted(pid)
                    .terminate(&socket, Instant::now() + Duration::from_secs(1))
                    .await;
                spawn(&socket).await?
            }
            None if answers(&url).await => anyhow::bail!(
                "a redis-server that no zos-perf daemon recorded answers on {}: refusing to take \
                 its socket over (stop it, or remove the socket)",
                socket.display()
            ),
            None => spawn(&socket).await?,
        };
        server.record(&pid_file)?;
        let (tx, rx) = oneshot::channel();
        let watcher = tokio::spawn(watch(server, socket.clone(), pid_file, rx));
        Ok(PrivateRedis {
            socket,
            stop: Some(tx),
            watcher: Some(watcher),
        })
    }

    pub fn url(&self) -> String {
        url_of(&self.socket)
    }

    /// Stops the server by `deadline` (SIGTERM, then SIGKILL) and removes
    /// its socket and pid record.
    pub async fn stop(mut self, deadline: Instant) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(deadline);
        }
        if let Some(watcher) = self.watcher.take() {
            let _ = tokio::time::timeout_at(deadline + Duration::from_millis(50), watcher).await;
        }
    }
}

impl Drop for PrivateRedis {
    /// Not stopped through [`PrivateRedis::stop`] (a start that failed
    /// later): the watcher stops the server now.
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(Instant::now() + Duration::from_secs(1));
        }
    }
}

fn url_of(socket: &Path) -> String {
    format!("unix://{}", socket.display())
}

/// The pauses between attempts to start the server again: 200 ms growing
/// to 5 s, with full jitter.
fn restart_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(5)).full_jitter()
}

/// Waits for the stop (or the server's end, then starts another).
async fn watch(
    mut server: Server,
    socket: PathBuf,
    pid_file: PathBuf,
    mut stop: oneshot::Receiver<Instant>,
) {
    let mut delay = restart_backoff();
    loop {
        let ended = tokio::select! {
            deadline = &mut stop => {
                server.terminate(&socket, deadline.unwrap_or_else(|_| Instant::now())).await;
                let _ = std::fs::remove_file(&socket);
                let _ = std::fs::remove_file(&pid_file);
                return;
            }
            how = server.ended(&socket) => how,
        };
        tracing::warn!(pid = server.pid(), how = %ended,
            "the private redis-server ended; starting another (the results are written back to it)");
        loop {
            let started = tokio::select! {
                s = spawn(&socket) => s,
                _ = &mut stop => {
                    let _ = std::fs::remove_file(&socket);
                    let _ = std::fs::remove_file(&pid_file);
                    return;
                }
            };
            match started {
                Ok(s) => {
                    server = s;
                    if let Err(e) = server.record(&pid_file) {
                        tracing::warn!(error = %format!("{e:#}"), "cannot record the private redis-server's pid");
                    }
                    tracing::info!(pid = server.pid(), "private redis-server started again");
                    delay.reset();
                    break;
                }
                Err(e) => {
                    let wait = delay.advance();
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?wait,
                        "cannot start the private redis-server again");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = &mut stop => {
                            let _ = std::fs::remove_file(&pid_file);
                            return;
                        }
                    }
                }
            }
        }
    }
}

impl Server {
    fn pid(&self) -> i32 {
        match self {
            Server::Child(c) => c.id().map(|p| p as i32).unwrap_or(0),
            Server::Adopted(pid) => *pid,
        }
    }

    fn record(&self, pid_file: &Path) -> anyhow::Result<()> {
        instance::write_pid(pid_file, self.pid() as u32)
    }

    /// Returns once the server is gone, saying how; a child is reaped.
    async fn ended(&mut self, socket: &Path) -> String {
        match self {
            Server::Child(child) => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("wait failed: {e}"),
            },
            Server::Adopted(pid) => {
                while is_ours(*pid, socket) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                "gone".to_string()
            }
        }
    }

    /// SIGTERM; SIGKILL if it is still there [`KILL_RESERVE`] before
    /// `deadline`; waits at most until `deadline`. An adopted pid is
    /// signalled only while it is still our server.
    async fn terminate(mut self, socket: &Path, deadline: Instant) {
        let term_until = deadline
            .checked_sub(KILL_RESERVE)
            .unwrap_or(deadline)
            .max(Instant::now());
        for (signal, until) in [(Signal::SIGTERM, term_until), (Signal::SIGKILL, deadline)] {
            let pid = self.pid();
            if pid <= 1 || (matches!(self, Server::Adopted(_)) && !is_ours(pid, socket)) {
                return;
            }
            let _ = kill(Pid::from_raw(pid), signal);
            if tokio::time::timeout_at(until, self.ended(socket))
                .await
                .is_ok()
            {
                return;
            }
        }
        tracing::warn!(
            pid = self.pid(),
            "the private redis-server did not end by the shutdown deadline"
        );
    }
}

/// Whether `pid` is a redis-server of ours serving `socket`: same user, a
/// `redis-*` executable, and `redis-server` with the socket on its command
/// line (redis rewrites it to `redis-server unixsocket:<path>`). A zombie
/// or another process under a reused pid is not.
pub fn is_ours(pid: i32, socket: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let Ok(meta) = std::fs::metadata(&proc) else {
        return false;
    };
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return false;
    }
    let exe_ok = std::fs::read_link(proc.join("exe"))
        .ok()
        .and_then(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("redis-"))
        })
        .unwrap_or(false);
    let Ok(cmdline) = std::fs::read(proc.join("cmdline")) else {
        return false;
    };
    let text = String::from_utf8_lossy(&cmdline);
    let first = text.split(['\0', ' ']).next().unwrap_or_default();
    let Some(socket) = socket.to_str() else {
        return false;
    };
    exe_ok && first.ends_with("redis-server") && text.contains(socket)
}

/// Starts a redis-server on `socket` (a stale socket file there is ours
/// to remove: the caller holds the directory's lock and its server is
/// gone) and waits until it answers.
async fn spawn(socket: &Path) -> anyhow::Result<Server> {
    let dir = socket.parent().context("socket path has no directory")?;
    let _ = std::fs::remove_file(socket);
    let mut child = Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(socket)
        .args([
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // Its own process group: a Ctrl-C or a signal to the daemon's
        // group must not stop Redis before the daemon has finished with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("starting redis-server (is it installed? scripts/setup installs it)")?;
    let url = url_of(socket);
    let until = Instant::now() + START_WAIT;
    while Instant::now() < until {
        if answers(&url).await {
            return Ok(Server::Child(child));
        }
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("redis-server on {} exited: {status}", socket.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "redis-server on {} did not answer within {}",
        socket.display(),
        humantime::format_duration(START_WAIT)
    )
}

#[cfg(test)]
mod tests {
    /// Full jitter: the first pause before a restart is anywhere in
    /// 0..=200 ms, not 200 ms every time.
    #[test]
    fn restart_pauses_are_jittered() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let wait = super::restart_backoff().advance();
            assert!(wait <= std::time::Duration::from_millis(200), "{wait:?}");
            seen.insert(wait.as_millis() / 20);
        }
        assert!(seen.len() >= 5, "pauses not spread over the step: {seen:?}");
    }
}
