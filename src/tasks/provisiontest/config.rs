//! `[provisiontest]`: which hypervisor boots which test guest, and how long
//! it may take.
//!
//! Nothing here has a usable default guest: a node names the kernel and
//! initramfs it wants booted. Until it does (or while the hypervisor program
//! cannot be found) the task is off by default, see
//! [`ProvisionTestConfig::not_available`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::error::ProgramError;
use crate::tasks::retry::RetryPolicy;

/// The hypervisors the task can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// What zos nodes run: the VM is described on the command line and
    /// watched and stopped through the API socket.
    CloudHypervisor,
    /// `qemu-system-x86_64`, Debian's package.
    Qemu,
}

impl BackendKind {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::CloudHypervisor => "cloud-hypervisor",
            BackendKind::Qemu => "qemu",
        }
    }

    /// The program run when `hypervisor` is not set, looked up in `PATH`.
    pub(crate) fn default_program(self) -> &'static str {
        match self {
            BackendKind::CloudHypervisor => "cloud-hypervisor",
            BackendKind::Qemu => "qemu-system-x86_64",
        }
    }
}

/// How the guest's CPU is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation: the question the task answers is whether the
    /// node can run VMs at speed, so a KVM that does not work is a failure.
    Kvm,
    /// Software emulation (qemu only): for machines without KVM, and tests.
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// `[provisiontest]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisionTestConfig {
    pub backend: BackendKind,
    /// The hypervisor program: a path, or a name looked up in `PATH`.
    /// Unset: `cloud-hypervisor` or `qemu-system-x86_64`.
    pub hypervisor: Option<PathBuf>,
    pub accel: Accel,
    /// The guest's kernel (bzImage).
    pub kernel: Option<PathBuf>,
    /// The guest's initramfs; its init prints the marker (see the task's doc).
    pub initramfs: Option<PathBuf>,
    /// An optional disk image, attached read-only.
    pub disk: Option<PathBuf>,
    /// The marker must be on the serial console within this time of the
    /// hypervisor's start.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Each run makes a private directory here (API socket, nothing else)
    /// and removes it at the end. Created 0700 when missing; refused when
    /// another user could write to it.
    pub work_dir: PathBuf,
    /// Where `vm-test-failed` is set: the healthcheck's flags directory
    /// (`healthcheck.flags_dir`); keep the two the same.
    pub flags_dir: PathBuf,
    /// The retry policy of the healthcheck (zos's): the first wait's
    /// interval ...
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// ... the longest interval after it ...
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// ... and no retry once this much time has passed since the first
    /// attempt.
    #[serde(with = "humantime_serde")]
    pub backoff_total: Duration,
}

/// The longest deadline accepted: a boot slower than this is a broken node.
pub(crate) const MAX_DEADLINE: Duration = Duration::from_secs(30 * 60);

impl Default for ProvisionTestConfig {
    fn default() -> Self {
        Self {
            backend: BackendKind::CloudHypervisor,
            hypervisor: None,
            accel: Accel::Kvm,
            kernel: None,
            initramfs: None,
            disk: None,
            deadline: Duration::from_secs(120),
            work_dir: PathBuf::from("/run/zos-perf"),
            flags_dir: PathBuf::from("/tmp/flags"),
            backoff_initial: RetryPolicy::default().initial,
            backoff_max: RetryPolicy::default().max_interval,
            backoff_total: RetryPolicy::default().total,
        }
    }
}

impl ProvisionTestConfig {
    /// Checks what types alone cannot; every error names its field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.deadline.is_zero() || self.deadline > MAX_DEADLINE {
            bail!(
                "provisiontest.deadline: must be more than zero and at most {}",
                humantime::format_duration(MAX_DEADLINE)
            );
        }
        if self.backend == BackendKind::CloudHypervisor && self.accel == Accel::Tcg {
            bail!("provisiontest.accel: cloud-hypervisor only runs guests with kvm");
        }
        if self.backoff_initial.is_zero() && !self.backoff_total.is_zero() {
            bail!("provisiontest.backoff_initial: must be more than zero");
        }
        if self.backoff_max.is_zero() && !self.backoff_total.is_zero() {
            bail!("provisiontest.backoff_max: must be more than zero");
        }
        for (field, path) in [
            ("hypervisor", &self.hypervisor),
            ("kernel", &self.kernel),
            ("initramfs", &self.initramfs),
            ("disk", &self.disk),
        ] {
            if let Some(p) = path {
                if p.as_os_str().is_empty() {
                    bail!("provisiontest.{field}: must not be empty");
                }
                // Paths reach the hypervisor's command line, where a comma
                // would start another option (cloud-hypervisor's key=value
                // lists, qemu's -drive).
                if field != "hypervisor" && p.to_string_lossy().contains(',') {
                    bail!(
                        "provisiontest.{field}: {}: a comma is not allowed",
                        p.display()
                    );
                }
            }
        }
        if !self.work_dir.is_absolute() {
            bail!("provisiontest.work_dir: must be an absolute path");
        }
        Ok(())
    }

    /// The hypervisor program as configured (a name or a path).
    pub fn program(&self) -> PathBuf {
        self.hypervisor
            .clone()
            .unwrap_or_else(|| PathBuf::from(self.backend.default_program()))
    }

    /// Why the task cannot run on this node with this configuration, if so:
    /// no guest configured, or no hypervisor program. Such a task is off
    /// unless `[tasks.provisiontest] enabled = true` asks for it anyway.
    pub(crate) fn not_available(&self) -> Option<String> {
        if self.kernel.is_none() || self.initramfs.is_none() {
            return Some(
                "no test guest configured (set provisiontest.kernel and provisiontest.initramfs)"
                    .into(),
            );
        }
        match find_program(&self.program()) {
            Ok(_) => None,
            Err(e) => Some(format!("no VM backend here: {e}")),
        }
    }
}

/// Resolves a program the way a shell would: a name with no `/` is looked
/// up in `PATH`; the result must be an executable regular file.
pub fn find_program(program: &Path) -> Result<PathBuf, ProgramError> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.components().count() > 1 || program.is_absolute() {
        return if executable(program) {
            Ok(program.to_path_buf())
        } else {
            Err(ProgramError::NotExecutable(program.to_path_buf()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| ProgramError::NotInPath(program.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<ProvisionTestConfig> {
        let c: ProvisionTestConfig = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_are_cloud_hypervisor_with_kvm_and_a_two_minute_deadline() {
        let c = parse("").expect("defaults");
        assert_eq!(c.backend, BackendKind::CloudHypervisor);
        assert_eq!(c.accel, Accel::Kvm);
        assert_eq!(c.deadline, Duration::from_secs(120));
        assert_eq!(c.program(), PathBuf::from("cloud-hypervisor"));
        assert_eq!(c.backoff_initial, Duration::from_secs(180));
        assert_eq!(c.backoff_total, Duration::from_secs(600));
        let why = c.not_available().expect("no guest: not available");
        assert!(why.contains("provisiontest.kernel"), "{why}");
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            ("deadline = \"0s\"", "provisiontest.deadline"),
            ("deadline = \"2h\"", "provisiontest.deadline"),
            ("accel = \"tcg\"", "provisiontest.accel"),
            ("kernel = \"/a,b\"", "provisiontest.kernel"),
            ("work_dir = \"run\"", "provisiontest.work_dir"),
            (
                "backoff_initial = \"0s\"\nbackoff_total = \"1m\"",
                "provisiontest.backoff_initial",
            ),
        ] {
            let err = parse(text).expect_err(text);
            assert!(format!("{err:#}").starts_with(field), "{text}: {err:#}");
        }
        let err = parse("backend = \"xen\"").expect_err("unknown backend");
        assert!(format!("{err:#}").contains("xen"), "{err:#}");
    }

    #[test]
    fn a_missing_program_makes_the_task_unavailable() {
        let c = parse(
            "backend = \"qemu\"\nhypervisor = \"/nonexistent/qemu\"\nkernel = \"/k\"\ninitramfs = \"/i\"",
        )
        .expect("parse");
        let why = c.not_available().expect("unavailable");
        assert!(why.contains("/nonexistent/qemu: not found"), "{why}");
        assert!(find_program(Path::new("sh")).is_ok());
        let err = find_program(Path::new("zos-perf-no-such-program")).expect_err("missing");
        assert_eq!(
            err,
            ProgramError::NotInPath("zos-perf-no-such-program".into())
        );
        assert_eq!(
            err.to_string(),
            "zos-perf-no-such-program: not found in PATH"
        );
    }
}
