//! The provisiontest's test guest and the checks that a VM left nothing.
//!
//! The guest is built by `scripts/test-guest` from Debian packages (the cloud
//! kernel, busybox-static) into `target/test-guest`, once, and reused by
//! later runs. Shared by tests/it/provisiontest.rs and benches/provisiontest.rs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The start of a daemon configuration where the provisiontest is the
/// only task and the local bus is off; its own section follows.
pub const ONLY_PROVISIONTEST: &str =
    "[tasks.cpu-benchmark]\nenabled = false\n[tasks.healthcheck]\nenabled = false\n\
     [tasks.iperf]\nenabled = false\n[tasks.public-ip-validation]\nenabled = false\n\
     [tasks.provisiontest]\njitter = 0\n[bus]\nenabled = false\n";

/// The directory holding `vmlinuz`, `initramfs.cpio` (prints the marker and
/// powers off), `linger.cpio` (prints it and stays up) and `silent.cpio`
/// (never prints it).
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("scripts/test-guest"))
            .output()
            .expect("run scripts/test-guest");
        assert!(
            out.status.success(),
            "scripts/test-guest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// The cloud-hypervisor stand-in (tests/standins/cloud-hypervisor).
pub fn cloud_hypervisor_standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins/cloud-hypervisor")
}

/// Live processes whose working directory is `dir` or below it. Each run
/// starts its hypervisor in its own directory under the work directory, so
/// this finds a test's hypervisors (and their children) and nobody else's.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map(|cwd| cwd.starts_with(dir))
                .unwrap_or(false)
        })
        .filter(|pid| {
            // A zombie has no cwd link to read, but be explicit.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
                .is_some_and(|r| !r.starts_with('Z'))
        })
        .collect()
}

/// The entries of a directory, by name.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
