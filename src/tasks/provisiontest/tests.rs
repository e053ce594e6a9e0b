use super::*;

fn task(section: ProvisionTestConfig) -> ProvisionTest {
    let grid = crate::config::Config::from_toml("")
        .expect("config")
        .grid_context();
    ProvisionTest::new(&section, &grid)
}

#[test]
fn defaults_and_description_are_the_zos_ones() {
    let t = task(ProvisionTestConfig::default());
    assert_eq!(t.name(), "provisiontest");
    assert_eq!(t.description(), "daily provision test that deploys a test VM to verify the node can run virtual machines and sets flags for the power daemon");
    let d = t.defaults();
    assert_eq!(d.cron, "0 0 0 * * *");
    assert_eq!(d.jitter, Duration::from_secs(1800));
    assert!(d.exclusive);
    assert!(t.not_available().is_some(), "no guest configured");
    assert_eq!(t.flags, Flags::new("/tmp/flags"));
}

#[test]
fn an_exit_naming_kvm_is_kvm_unusable_only_when_kvm_was_asked_for() {
    let q = qemu::Qemu::new("/usr/bin/qemu-system-x86_64".into());
    let words = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69 \
                 qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.";
    let mut config = ProvisionTestConfig {
        backend: BackendKind::Qemu,
        ..ProvisionTestConfig::default()
    };
    let t = task(config.clone());
    let exit = t.exit_error(&q, "signal: 6 (SIGABRT)".into(), words.into());
    assert!(exit.kvm_failed, "{exit:?}");
    assert_eq!(
        exit.to_string(),
        format!("KVM unusable: /usr/bin/qemu-system-x86_64 ended (signal: 6 (SIGABRT)): {words}")
    );
    config.accel = Accel::Tcg;
    let t = task(config);
    let exit = t.exit_error(
        &q,
        "exit status: 1".into(),
        "qemu: could not load kernel".into(),
    );
    assert!(!exit.kvm_failed, "{exit:?}");
    assert_eq!(
        exit.to_string(),
        "hypervisor exited before the guest's marker: /usr/bin/qemu-system-x86_64 ended \
         (exit status: 1): qemu: could not load kernel"
    );
}
