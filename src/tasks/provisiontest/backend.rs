//! What every hypervisor backend shares: the VM's shape, the hypervisor
//! process in a process group of its own, the run's private directory, and
//! a teardown that checks nothing is left.
//!
//! A backend only says how its hypervisor is started and asked to stop
//! ([`Backend`]); the rest is here so that both leave the node the same way.
//! The hypervisor's serial console is its standard output.
//!
//! Nothing may outlive a run: the hypervisor and anything it starts share a
//! process group, which teardown kills and then checks empty; the group is
//! also killed when a [`Vm`] is dropped (cancellation, shutdown, a panic),
//! and the kernel kills the hypervisor if the daemon itself dies
//! (`PR_SET_PDEATHSIG`).

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdout, Command};

use super::config::Accel;
use super::error::{HypervisorError, RunDirError, StartError, TeardownError, TeardownProblem};

/// How long a hypervisor gets to stop by itself before its group is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);
/// How much of the hypervisor's standard error an error message carries.
const STDERR_TAIL: usize = 2048;

/// The VM every run boots: as on zos, 1 vCPU, 512 MiB and no network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmSpec {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Attached read-only.
    pub disk: Option<PathBuf>,
    pub cmdline: String,
    pub accel: Accel,
    pub vcpus: u32,
    pub memory_mib: u32,
}

/// One hypervisor: how it is started and stopped.
pub(crate) trait Backend: Send + Sync {
    /// The resolved program.
    fn program(&self) -> &Path;

    /// The hypervisor's arguments. `run_dir` is the run's private directory.
    fn args(&self, spec: &VmSpec, run_dir: &Path) -> Vec<OsString>;

    /// Waits, after the start, until the hypervisor reports the VM running
    /// (nothing to wait for when the command line alone boots it).
    fn ready<'a>(&'a self, run_dir: &'a Path) -> BoxFuture<'a, Result<(), HypervisorError>>;

    /// Asks the hypervisor (leader `pid`) to stop the VM and exit.
    fn stop<'a>(
        &'a self,
        run_dir: &'a Path,
        pid: Pid,
    ) -> BoxFuture<'a, Result<(), HypervisorError>>;
}

/// The run's private directory under the work directory, removed on drop.
#[derive(Debug)]
pub(crate) struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Makes `<work_dir>/provisiontest-<token>` (0700). The work directory is
    /// created when missing and refused when it is a link or another user
    /// could write to it: the daemon is root and the hypervisor reads paths
    /// there.
    pub fn create(work_dir: &Path, token: &str) -> Result<RunDir, RunDirError> {
        let work = || work_dir.to_path_buf();
        if std::fs::symlink_metadata(work_dir).is_err() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(work_dir)
                .map_err(|error| RunDirError::CreateWorkDir {
                    path: work(),
                    error,
                })?;
        }
        let meta = std::fs::symlink_metadata(work_dir).map_err(|error| RunDirError::WorkDir {
            path: work(),
            error,
        })?;
        if !meta.is_dir() {
            return Err(RunDirError::NotADirectory(work()));
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
            return Err(RunDirError::Writable {
                path: work(),
                uid: meta.uid(),
                mode: meta.mode() & 0o7777,
            });
        }
        let path = work_dir.join(format!("provisiontest-{token}"));
        if let Err(error) = std::fs::DirBuilder::new().mode(0o700).create(&path) {
            return Err(RunDirError::Create { path, error });
        }
        Ok(RunDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and everything in it.
    fn remove(&self) -> Result<(), RunDirError> {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(RunDirError::Remove {
                path: self.path.clone(),
                error,
            }),
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// A started hypervisor.
pub(crate) struct Vm {
    child: Child,
    pgid: Pid,
    console: Option<ChildStdout>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: tokio::sync::watch::Receiver<bool>,
    run_dir: RunDir,
    torn_down: bool,
}

impl Vm {
    /// Starts the hypervisor in a process group of its own, its standard
    /// output (the serial console) and error piped to us.
    pub fn start(backend: &dyn Backend, spec: &VmSpec, run_dir: RunDir) -> Result<Vm, StartError> {
        let program = backend.program();
        let mut cmd = Command::new(program);
        cmd.args(backend.args(spec, run_dir.path()))
            .current_dir(run_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: between fork and exec only async-signal-safe calls are
        // allowed; prctl(PR_SET_PDEATHSIG) is one.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().map_err(|error| StartError::Spawn {
            program: program.to_path_buf(),
            error,
        })?;
        let pid = child
            .id()
            .ok_or_else(|| StartError::ExitedAtOnce(program.to_path_buf()))?;
        let console = child.stdout.take();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, stderr_done) = tokio::sync::watch::channel(false);
        if let Some(mut pipe) = child.stderr.take() {
            let keep = stderr.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut k) = keep.lock() {
                        k.extend_from_slice(&buf[..n]);
                        let excess = k.len().saturating_sub(STDERR_TAIL);
                        k.drain(..excess);
                    }
                }
                let _ = done_tx.send(true);
            });
        }
        Ok(Vm {
            child,
            pgid: Pid::from_raw(pid as i32),
            console,
            stderr,
            stderr_done,
            run_dir,
            torn_down: false,
        })
    }

    pub(crate) fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }

    /// The serial console (once).
    pub(crate) fn take_console(&mut self) -> Option<ChildStdout> {
        self.console.take()
    }

    /// Waits for the hypervisor to exit.
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// The end of what the hypervisor wrote on its standard error, as one
    /// line. Waits a moment for the pipe to drain after an exit.
    pub(crate) async fn stderr_tail(&mut self) -> String {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.stderr_done.wait_for(|done| *done),
        )
        .await;
        let bytes = self.stderr.lock().map(|b| b.clone()).unwrap_or_default();
        super::guest::printable(&bytes)
    }

    /// Stops the VM and checks that nothing of it is left: no process in its
    /// group, no run directory. `gently` first asks the hypervisor to stop.
    pub async fn teardown(
        mut self,
        backend: &dyn Backend,
        gently: bool,
    ) -> Result<(), TeardownError> {
        self.torn_down = true;
        let mut problems = Vec::new();
        if gently && self.child.try_wait().ok().flatten().is_none() {
            let pid = self.pgid;
            let asked = tokio::time::timeout(STOP_GRACE, async {
                backend.stop(self.run_dir.path(), pid).await?;
                self.child.wait().await.map_err(HypervisorError::Wait)?;
                Ok::<(), HypervisorError>(())
            })
            .await;
            match asked {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e,
                    "the hypervisor did not stop when asked; killing it"),
                Err(_) => {
                    tracing::warn!("the hypervisor did not stop within {STOP_GRACE:?}; killing it")
                }
            }
        }
        // Whatever is left of the group, leader included.
        let _ = killpg(self.pgid, Signal::SIGKILL);
        if let Err(e) = self.child.wait().await {
            problems.push(TeardownProblem::Reap(e));
        }
        let left = wait_group_empty(self.pgid, Duration::from_secs(2)).await;
        if !left.is_empty() {
            problems.push(TeardownProblem::Left {
                pids: left,
                pgid: self.pgid,
            });
        }
        if let Err(e) = self.run_dir.remove() {
            problems.push(e.into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TeardownError(problems))
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Dropped without a teardown: cancelled or shut down mid-run. Kill
        // the whole group now; tokio reaps the leader (kill_on_drop) and the
        // run directory goes with `RunDir`'s drop.
        if !self.torn_down {
            let _ = killpg(self.pgid, Signal::SIGKILL);
            tracing::info!(
                pgid = self.pgid.as_raw(),
                "run ended early: hypervisor process group killed"
            );
        }
    }
}

/// Waits until no live process (zombies do not count: their reaper may not
/// be us) is in group `pgid`; returns those still there at the limit.
async fn wait_group_empty(pgid: Pid, limit: Duration) -> Vec<i32> {
    let until = tokio::time::Instant::now() + limit;
    loop {
        let left = group_members(pgid);
        if left.is_empty() || tokio::time::Instant::now() >= until {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The live processes of a process group, read from `/proc`.
pub(crate) fn group_members(pgid: Pid) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and ')'.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
            pgrp == Some(pgid.as_raw()) && state != "Z" && state != "X"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_run_dir_is_private_and_goes_away_on_drop() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let work = tmp.path().join("work");
        let dir = RunDir::create(&work, "abc").expect("create");
        let meta = std::fs::metadata(dir.path()).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        std::fs::write(dir.path().join("api.sock"), b"").expect("file inside");
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
        let err = RunDir::create(&work, "abc")
            .and_then(|_| RunDir::create(&work, "abc"))
            .map(|_| ())
            .expect_err("same name twice while the first lives");
        assert!(matches!(err, RunDirError::Create { .. }), "{err:?}");
        assert!(err.to_string().contains("provisiontest-abc"), "{err}");
    }

    #[test]
    fn a_work_dir_others_can_write_or_a_link_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = RunDir::create(&open, "t").expect_err("world-writable");
        assert!(
            matches!(err, RunDirError::Writable { mode: 0o777, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("others could write"), "{err}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).expect("symlink");
        let err = RunDir::create(&link, "t").expect_err("a link");
        assert!(matches!(err, RunDirError::NotADirectory(_)), "{err:?}");
        assert!(err.to_string().contains("link"), "{err}");
    }
}
