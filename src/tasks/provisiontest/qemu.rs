//! The `qemu` backend: `qemu-system-x86_64`, Debian's package.
//!
//! The whole VM is on the command line: no default devices, no network, no
//! display or monitor, the serial console on standard output, and
//! `-no-reboot` so that a guest that reboots or triple-faults ends the
//! process instead of looping. Stopping is SIGTERM, on which qemu quits.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use futures::FutureExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::backend::{Backend, VmSpec};
use super::config::Accel;
use super::error::HypervisorError;

pub(crate) struct Qemu {
    program: PathBuf,
}

impl Qemu {
    pub fn new(program: PathBuf) -> Qemu {
        Qemu { program }
    }
}

impl Backend for Qemu {
    fn program(&self) -> &Path {
        &self.program
    }

    fn args(&self, spec: &VmSpec, _run_dir: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        push("-name");
        push("zos-perf-provisiontest");
        push("-nodefaults");
        push("-no-user-config");
        push("-accel");
        push(spec.accel.as_str());
        if spec.accel == Accel::Kvm {
            // The host's CPU as it is: what a workload VM would get.
            push("-cpu");
            push("host");
        }
        push("-smp");
        push(&spec.vcpus.to_string());
        push("-m");
        push(&format!("{}M", spec.memory_mib));
        push("-display");
        push("none");
        push("-monitor");
        push("none");
        push("-serial");
        push("stdio");
        push("-nic");
        push("none");
        push("-no-reboot");
        a.push("-kernel".into());
        a.push(spec.kernel.clone().into_os_string());
        a.push("-initrd".into());
        a.push(spec.initramfs.clone().into_os_string());
        a.push("-append".into());
        a.push(spec.cmdline.clone().into());
        if let Some(disk) = &spec.disk {
            // Paths with a comma are refused by the configuration, so this
            // cannot smuggle in another -drive option.
            let mut d = OsString::from("file=");
            d.push(disk);
            d.push(",format=raw,if=virtio,readonly=on");
            a.push("-drive".into());
            a.push(d);
        }
        a
    }

    fn ready<'a>(&'a self, _run_dir: &'a Path) -> BoxFuture<'a, Result<(), HypervisorError>> {
        futures::future::ready(Ok(())).boxed()
    }

    fn stop<'a>(
        &'a self,
        _run_dir: &'a Path,
        pid: Pid,
    ) -> BoxFuture<'a, Result<(), HypervisorError>> {
        let sent =
            kill(pid, Signal::SIGTERM).map_err(|error| HypervisorError::Signal { pid, error });
        futures::future::ready(sent).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(accel: Accel, disk: Option<&str>) -> VmSpec {
        VmSpec {
            kernel: "/g/vmlinuz".into(),
            initramfs: "/g/initrd".into(),
            disk: disk.map(PathBuf::from),
            cmdline: "console=ttyS0 zosperf.marker=ab".into(),
            accel,
            vcpus: 1,
            memory_mib: 512,
        }
    }

    fn joined(q: &Qemu, s: &VmSpec) -> String {
        q.args(s, Path::new("/run/x"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_command_line_is_one_vcpu_512_mib_no_network_serial_on_stdout() {
        let q = Qemu::new("qemu-system-x86_64".into());
        assert_eq!(
            joined(&q, &spec(Accel::Tcg, None)),
            "-name zos-perf-provisiontest -nodefaults -no-user-config -accel tcg -smp 1 -m 512M \
             -display none -monitor none -serial stdio -nic none -no-reboot \
             -kernel /g/vmlinuz -initrd /g/initrd -append console=ttyS0 zosperf.marker=ab"
        );
        let kvm = joined(&q, &spec(Accel::Kvm, Some("/g/disk.raw")));
        assert!(kvm.contains("-accel kvm -cpu host "), "{kvm}");
        assert!(
            kvm.ends_with("-drive file=/g/disk.raw,format=raw,if=virtio,readonly=on"),
            "{kvm}"
        );
    }
}
