//! `provisiontest`: can this node run a virtual machine? Once a day it boots
//! a small test guest and waits for the guest's own user space to answer.
//!
//! **Schedule:** `0 0 0 * * *` (daily at midnight UTC), jitter 1800 s,
//! timeout 20 min, exclusive (a VM boot would disturb a CPU score or a
//! network measurement).
//!
//! **What it proves:** more than that a hypervisor starts. Each attempt
//! draws a random token, boots the configured kernel and initramfs (and
//! disk, read-only) with `zosperf.marker=<token>` on the kernel command line
//! in a VM of 1 vCPU, 512 MiB and no network, and waits for the guest's init
//! to print `ZOSPERF-BOOTED <token>` on the serial console (see [`guest`]).
//! The marker must come within `deadline` (120 s) of the hypervisor's start.
//! Then the VM is stopped and the attempt checks that nothing of it is
//! left: no process in the hypervisor's process group, no file or socket in
//! its private directory. The same cleanup happens on failure, timeout,
//! cancellation and daemon shutdown (see [`backend`]).
//!
//! **Backends:** `cloud-hypervisor` (the default, what zos runs; command
//! line plus its API socket, [`cloud_hypervisor`]) and `qemu`
//! (`qemu-system-x86_64`, [`qemu`]). Acceleration `kvm` (default; a KVM that
//! does not work fails the test with the hypervisor's own words) or `tcg`
//! (software, qemu only).
//!
//! **Enabled** by default only where it can run: a guest is configured and
//! the hypervisor program is found. Elsewhere it is off, the daemon says
//! why at start, `run-task provisiontest` says why and stores nothing, and
//! `get` answers `result not found`. `[tasks.provisiontest] enabled = true`
//! forces it on; a missing piece is then a failed test.
//!
//! **Result:** a JSON array of error strings, `[]` when the guest answered.
//! Each string starts with the step that failed: `hypervisor missing`,
//! `kernel missing` (or `initramfs`/`disk`), `work directory`, `hypervisor
//! start failed`, `KVM unusable`, `hypervisor exited`, `no marker within
//! <deadline>`, `teardown failed`. For example
//! `["no marker within 120s: the guest's console ended with: ..."]`.
//!
//! **Flag and retries:** `vm-test-failed` in the healthcheck's flags
//! directory is set after every failing attempt and cleared after a passing
//! one. A failing attempt is retried like a healthcheck check (zos's
//! cadence): after 3 min ± 50 %, then every 30 s ± 50 %, until 10 min have
//! passed; every retry boots a new VM. The stored result is the last attempt's.
//!
//! **Progress:** each step is logged at `info` as it happens, so
//! `zos-perf run-task provisiontest` shows it on the terminal (stderr).

mod backend;
pub(crate) mod cloud_hypervisor;
mod config;
mod error;
mod guest;
mod qemu;
pub mod view;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::grid::GridContext;
use crate::tasks::healthcheck::{Flag, Flags};
use crate::tasks::retry::{self, Cancelled, RetryPolicy};
use crate::tasks::PROVISIONTEST;
use crate::tasks::{RunContext, RunFuture, Task, TaskDefaults};
use backend::{Backend, RunDir, Vm, VmSpec};
use guest::Marker;

pub use config::{find_program, Accel, BackendKind, ProvisionTestConfig};
pub use error::{ApiError, ApiProblem, ProgramError};
use error::{BootError, Exit, GuestFileError};

/// The description stored with every result (exact, as the Go monitor's).
pub(crate) const DESCRIPTION: &str = "daily provision test that deploys a test VM to verify the node can run virtual machines and sets flags for the power daemon";

/// The test VM's size, as zos makes it.
pub(crate) const VCPUS: u32 = 1;
pub(crate) const MEMORY_MIB: u32 = 512;

/// The `provisiontest` task.
pub struct ProvisionTest {
    config: ProvisionTestConfig,
    flags: Flags,
}

/// How one attempt went, for the logs and the benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// Empty: the guest answered and nothing was left behind.
    pub errors: Vec<String>,
    /// From the hypervisor's start to the marker, when it came.
    pub to_marker: Option<Duration>,
}

impl ProvisionTest {
    /// The task of a node with the `[provisiontest]` section `section`. The
    /// grid plays no part: the test stays on this node.
    pub fn new(section: &ProvisionTestConfig, _grid: &GridContext) -> ProvisionTest {
        ProvisionTest {
            config: section.clone(),
            flags: Flags::new(section.flags_dir.clone()),
        }
    }

    pub fn config(&self) -> &ProvisionTestConfig {
        &self.config
    }

    /// Attempts with retries; the result is the last attempt's errors.
    pub async fn check(&self, ctx: &RunContext) -> anyhow::Result<Value> {
        let policy = RetryPolicy {
            initial: self.config.backoff_initial,
            max_interval: self.config.backoff_max,
            total: self.config.backoff_total,
        };
        let retried = retry::retry(policy, &ctx.cancel, "vm", |n| async move {
            if n > 1 {
                tracing::info!(attempt = n, "retrying with a new VM");
            }
            let attempt = self.attempt(&ctx.cancel).await;
            let mut errors = attempt.errors;
            // The power daemon was not told: the check counts as failed.
            if let Err(e) = self
                .flags
                .update(Flag::VmTestFailed, !errors.is_empty())
                .await
            {
                errors.push(format!("{e:#}"));
            }
            errors
        })
        .await
        .map_err(|Cancelled| anyhow::anyhow!("{PROVISIONTEST}: cancelled; the VM was stopped"))?;
        Ok(Value::from(retried.errors))
    }

    /// One attempt: check, boot, watch the console, tear down. Never leaves
    /// a process or file behind, even when dropped half-way.
    pub async fn attempt(&self, cancel: &CancellationToken) -> Attempt {
        let failed = |e: String| Attempt {
            errors: vec![e],
            to_marker: None,
        };
        let c = &self.config;
        step(1, "checking the test guest's files");
        let (Some(kernel), Some(initramfs)) = (&c.kernel, &c.initramfs) else {
            return failed(
                "kernel missing: provisiontest.kernel and provisiontest.initramfs must be set"
                    .into(),
            );
        };
        for (what, path) in [
            ("kernel", Some(kernel)),
            ("initramfs", Some(initramfs)),
            ("disk", c.disk.as_ref()),
        ] {
            if let Some(path) = path {
                if let Err(e) = regular_file(path) {
                    return failed(format!("{what} missing: {e}"));
                }
            }
        }
        step(2, "finding the hypervisor");
        let program = match find_program(&c.program()) {
            Ok(p) => p,
            Err(e) => {
                return failed(format!(
                    "hypervisor missing: {} backend: {e}",
                    c.backend.as_str()
                ))
            }
        };
        let backend: Box<dyn Backend> = match c.backend {
            BackendKind::Qemu => Box::new(qemu::Qemu::new(program)),
            BackendKind::CloudHypervisor => {
                Box::new(cloud_hypervisor::CloudHypervisor::new(program))
            }
        };
        let marker = Marker::random();
        let run_dir = match RunDir::create(&c.work_dir, marker.token()) {
            Ok(d) => d,
            Err(e) => return failed(format!("work directory: {e}")),
        };
        let spec = VmSpec {
            kernel: kernel.clone(),
            initramfs: initramfs.clone(),
            disk: c.disk.clone(),
            cmdline: marker.cmdline(),
            accel: c.accel,
            vcpus: VCPUS,
            memory_mib: MEMORY_MIB,
        };
        step(
            3,
            &format!(
                "starting {} ({}, {VCPUS} vCPU, {MEMORY_MIB} MiB, no network)",
                backend.program().display(),
                c.accel.as_str()
            ),
        );
        let started = Instant::now();
        let mut vm = match Vm::start(backend.as_ref(), &spec, run_dir) {
            Ok(vm) => vm,
            Err(e) => return failed(format!("hypervisor start failed: {e}")),
        };
        step(
            4,
            &format!(
                "waiting up to {} for the guest's marker on the serial console",
                humantime::format_duration(c.deadline)
            ),
        );
        let boot = self.boot(backend.as_ref(), &mut vm, &marker, cancel).await;
        let to_marker = boot.is_ok().then(|| started.elapsed());
        let mut errors = Vec::new();
        match &boot {
            Ok(()) => step(
                5,
                &format!(
                    "marker seen after {:.1} s; stopping the VM",
                    started.elapsed().as_secs_f64()
                ),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "boot failed; stopping the VM");
                errors.push(e.to_string());
            }
        }
        // On cancellation there is no time for a gentle stop.
        let gently = !cancel.is_cancelled();
        if let Err(e) = vm.teardown(backend.as_ref(), gently).await {
            errors.push(format!("teardown failed: {e}"));
        }
        if errors.is_empty() {
            step(6, "VM stopped, nothing left behind: passed");
        }
        Attempt { errors, to_marker }
    }

    /// From the start to the marker, within the deadline; the hypervisor's
    /// exit or cancellation ends the wait.
    async fn boot(
        &self,
        backend: &dyn Backend,
        vm: &mut Vm,
        marker: &Marker,
        cancel: &CancellationToken,
    ) -> Result<(), BootError> {
        let deadline = self.config.deadline;
        let Some(console) = vm.take_console() else {
            return Err(BootError::NoConsole);
        };
        let run_dir = vm.run_dir().to_path_buf();
        let mut seen = Vec::new();
        let watch = async {
            backend.ready(&run_dir).await.map_err(BootError::NotReady)?;
            tracing::info!("hypervisor started; reading the serial console");
            Ok::<bool, BootError>(guest::watch(console, marker, &mut seen).await)
        };
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(BootError::Cancelled),
            r = tokio::time::timeout(deadline, watch) => r,
            status = vm.exited() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                let tail = vm.stderr_tail().await;
                return Err(BootError::Exited(self.exit_error(backend, status, tail)));
            }
        };
        let console = if seen.is_empty() {
            "the guest's console stayed silent".to_string()
        } else {
            format!(
                "the guest's console ended with: {}",
                guest::printable(&seen)
            )
        };
        match outcome {
            Ok(Ok(true)) => Ok(()),
            Ok(Err(e)) => Err(e),
            // The console closed: the hypervisor is going; say how it went.
            Ok(Ok(false)) => {
                let status = match tokio::time::timeout(Duration::from_secs(2), vm.exited()).await {
                    Ok(Ok(s)) => s.to_string(),
                    _ => "its console closed".to_string(),
                };
                let tail = vm.stderr_tail().await;
                Err(BootError::ConsoleClosed {
                    exit: self.exit_error(backend, status, tail),
                    console,
                })
            }
            Err(_) => Err(BootError::NoMarker { deadline, console }),
        }
    }

    /// The message for a hypervisor that ended before the marker. With
    /// `kvm`, an exit whose words name KVM is the KVM failing.
    fn exit_error(&self, backend: &dyn Backend, status: String, stderr: String) -> Exit {
        Exit {
            kvm_failed: self.config.accel == Accel::Kvm
                && stderr.to_ascii_lowercase().contains("kvm"),
            program: backend.program().to_path_buf(),
            status,
            stderr,
        }
    }
}

/// One step of an attempt, for the log (and the terminal of `run-task`).
fn step(n: u32, what: &str) {
    tracing::info!(step = n, "{what}");
}

/// A path the hypervisor will read: it must be a regular file (a link to
/// one is fine: the operator configured it).
fn regular_file(path: &Path) -> Result<(), GuestFileError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(GuestFileError::NotRegular(path.to_path_buf())),
        Err(error) => Err(GuestFileError::Unreadable {
            path: path.to_path_buf(),
            error,
        }),
    }
}

impl Task for ProvisionTest {
    fn name(&self) -> &'static str {
        PROVISIONTEST
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn defaults(&self) -> TaskDefaults {
        TaskDefaults {
            cron: "0 0 0 * * *",
            jitter: Duration::from_secs(1800),
            timeout: Duration::from_secs(20 * 60),
            exclusive: true,
        }
    }

    fn not_available(&self) -> Option<String> {
        self.config.not_available()
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> RunFuture<'a> {
        Box::pin(self.check(ctx))
    }
}

#[cfg(test)]
mod tests;
