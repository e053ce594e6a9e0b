//! provisiontest against real VMs: qemu-system-x86_64 with tcg (never KVM,
//! whose state differs between machines), a guest built from Debian
//! packages by scripts/test-guest, and a cloud-hypervisor stand-in that
//! speaks its command line and API and boots the same guest in qemu.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::{guest, wait_for, RedisServer};
use zos_perf::config::Config;
use zos_perf::tasks::provisiontest::ProvisionTest;
use zos_perf::tasks::{RunContext, Task};

const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");
const FLAG: &str = "vm-test-failed";

/// One test's private directories: work (run directories), flags.
struct Scene {
    tmp: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        Scene {
            tmp: tempfile::Builder::new()
                .prefix("zos-perf-pt-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    fn flags(&self) -> PathBuf {
        self.tmp.path().join("flags")
    }

    fn flag_set(&self) -> bool {
        self.flags().join(FLAG).exists()
    }

    /// Config text: the test's directories, one attempt, qemu with tcg on
    /// the marker guest unless `extra` says otherwise (later keys win).
    fn config(&self, extra: &str) -> String {
        let g = guest::dir();
        let mut fields = vec![
            ("backend", "\"qemu\"".to_string()),
            ("accel", "\"tcg\"".to_string()),
            ("kernel", format!("{:?}", g.join("vmlinuz"))),
            ("initramfs", format!("{:?}", g.join("initramfs.cpio"))),
            ("work_dir", format!("{:?}", self.work())),
            ("backoff_total", "\"0s\"".to_string()),
            // A tcg boot takes seconds alone, minutes on a loaded machine.
            ("deadline", "\"5m\"".to_string()),
        ];
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').expect("key = value");
            fields.retain(|(f, _)| *f != k.trim());
            fields.push((leak(k.trim()), v.trim().to_string()));
        }
        let mut text = format!("[provisiontest]\nflags_dir = {:?}\n", self.flags());
        for (k, v) in fields {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text
    }

    fn task(&self, extra: &str) -> ProvisionTest {
        let config = Config::from_toml(&self.config(extra)).expect("config");
        ProvisionTest::new(&config.sections.provisiontest, &config.grid_context())
    }

    /// Nothing of any VM is left: no process working in the work directory,
    /// no run directory in it.
    fn assert_nothing_left(&self) {
        let left = wait_for(
            Duration::from_secs(10),
            "hypervisor processes to go",
            || {
                let p = guest::processes_under(&self.work());
                p.is_empty().then_some(p)
            },
        );
        assert!(left.is_empty());
        assert_eq!(guest::entries(&self.work()), Vec::<String>::new());
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

async fn run(task: &ProvisionTest) -> Value {
    task.check(&RunContext::new(CancellationToken::new()))
        .await
        .expect("the task never fails, it reports")
}

/// The only error of a failed run.
fn only_error(v: &Value) -> String {
    let list = v.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{v}");
    list[0].as_str().expect("a string").to_string()
}

#[tokio::test]
async fn a_real_boot_with_qemu_tcg_sees_the_marker_clears_the_flag_and_leaves_nothing() {
    let s = Scene::new();
    std::fs::create_dir_all(s.flags()).expect("flags dir");
    std::fs::write(s.flags().join(FLAG), b"").expect("pre-set flag");
    let task = s.task("");
    let attempt = task.attempt(&CancellationToken::new()).await;
    assert_eq!(attempt.errors, Vec::<String>::new());
    assert!(attempt.to_marker.is_some());
    let result = run(&task).await;
    assert_eq!(result, json!([]));
    assert!(!s.flag_set(), "a passing run clears the flag");
    s.assert_nothing_left();
}

#[tokio::test]
async fn cloud_hypervisor_backend_boots_through_its_command_line_and_api() {
    let s = Scene::new();
    let record = s.tmp.path().join("ch-record.jsonl");
    // The stand-in, told where to record what it is asked.
    let program = s.tmp.path().join("cloud-hypervisor");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\nZOS_PERF_CH_RECORD={:?} exec {:?} \"$@\"\n",
            record,
            guest::cloud_hypervisor_standin()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &program,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .expect("chmod");
    // This guest stays up after the marker, so the task has to stop it
    // through the API.
    let task = s.task(&format!(
        "backend = \"cloud-hypervisor\"\naccel = \"kvm\"\nhypervisor = {program:?}\ninitramfs = {:?}",
        guest::dir().join("linger.cpio")
    ));
    let result = run(&task).await;
    assert_eq!(result, json!([]));
    assert!(!s.flag_set());
    s.assert_nothing_left();

    let lines: Vec<Value> = std::fs::read_to_string(&record)
        .expect("the stand-in recorded")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let argv: Vec<String> = serde_json::from_value(lines[0]["argv"].clone()).expect("argv");
    let socket = argv[1].strip_prefix("path=").expect("path=");
    assert!(
        socket.starts_with(s.work().to_str().expect("utf-8")),
        "{socket}"
    );
    assert!(socket.ends_with("/api.sock"));
    let joined = argv.join(" ");
    for part in [
        "--cpus boot=1",
        "--memory size=512M",
        "--serial tty",
        "--console off",
    ] {
        assert!(joined.contains(part), "{joined}");
    }
    assert!(!joined.contains("--net"), "no network: {joined}");
    let requests: Vec<String> = lines[1..]
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap_or("?"),
                r["path"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let first = |r: &str| requests.iter().position(|x| x == r);
    let ping = first("GET /api/v1/vmm.ping").expect("ping");
    let info = first("GET /api/v1/vm.info").expect("info");
    let vm_down = first("PUT /api/v1/vm.shutdown").expect("vm.shutdown");
    let vmm_down = first("PUT /api/v1/vmm.shutdown").expect("vmm.shutdown");
    assert!(
        ping < info && info < vm_down && vm_down < vmm_down,
        "{requests:?}"
    );
}

#[tokio::test]
async fn no_hypervisor_binary_is_a_failure_naming_it_and_sets_the_flag() {
    let s = Scene::new();
    let task = s.task("hypervisor = \"/nonexistent/qemu-system-x86_64\"");
    let e = only_error(&run(&task).await);
    assert_eq!(
        e,
        "hypervisor missing: qemu backend: /nonexistent/qemu-system-x86_64: not found or not executable"
    );
    assert!(s.flag_set());
}

#[tokio::test]
async fn a_missing_kernel_is_a_failure_naming_the_path_and_sets_the_flag() {
    let s = Scene::new();
    let missing = s.tmp.path().join("no-such-vmlinuz");
    let task = s.task(&format!("kernel = {missing:?}"));
    let e = only_error(&run(&task).await);
    assert_eq!(
        e,
        format!(
            "kernel missing: {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    assert!(s.flag_set());
    s.assert_nothing_left();
}

#[tokio::test]
async fn a_guest_that_never_prints_the_marker_fails_at_the_deadline_and_is_stopped() {
    let s = Scene::new();
    let task = s.task(&format!(
        "initramfs = {:?}\ndeadline = \"4s\"",
        guest::dir().join("silent.cpio")
    ));
    let e = only_error(&run(&task).await);
    assert!(
        e.starts_with("no marker within 4s: the guest's console "),
        "{e}"
    );
    assert!(s.flag_set());
    s.assert_nothing_left();
}

#[tokio::test]
async fn a_hypervisor_that_exits_at_once_is_a_failure_with_its_status_and_words() {
    let s = Scene::new();
    // Real qemu, refusing a kernel that is not one: it exits before booting.
    let bogus = s.tmp.path().join("not-a-kernel");
    std::fs::write(&bogus, vec![0u8; 4096]).expect("write");
    let e = only_error(&run(&s.task(&format!("kernel = {bogus:?}"))).await);
    assert!(
        e.starts_with("hypervisor exited before the guest's marker: "),
        "{e}"
    );
    assert!(e.contains("exit status: 1"), "{e}");
    // qemu's own words, e.g. "qemu: linux kernel too old to load a ram disk".
    assert!(e.contains("(exit status: 1): qemu"), "{e}");
    assert!(s.flag_set());
    s.assert_nothing_left();

    let e = only_error(&run(&s.task("hypervisor = \"/bin/false\"")).await);
    assert_eq!(
        e,
        "hypervisor exited before the guest's marker: /bin/false ended (exit status: 1); \
         the guest's console stayed silent"
    );
    s.assert_nothing_left();
}

/// Waits until a hypervisor runs in the scene's work directory.
async fn hypervisor_started(work: &Path) {
    let work = work.to_path_buf();
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "the hypervisor to start", || {
            let p = guest::processes_under(&work);
            (!p.is_empty()).then_some(())
        })
    })
    .await
    .expect("join");
}

#[tokio::test]
async fn cancelling_mid_boot_stops_the_vm_and_leaves_nothing() {
    let s = Scene::new();
    let task = s.task(&format!(
        "initramfs = {:?}\ndeadline = \"10m\"",
        guest::dir().join("silent.cpio")
    ));
    let cancel = CancellationToken::new();
    let ctx = RunContext::new(cancel.clone());
    let (result, ()) = tokio::join!(task.check(&ctx), async {
        hypervisor_started(&s.work()).await;
        cancel.cancel();
    });
    let err = result.expect_err("a cancelled run fails");
    assert!(format!("{err:#}").contains("cancelled"), "{err:#}");
    s.assert_nothing_left();

    // Dropping the run (the monitor's timeout does) kills the VM too.
    let ctx = RunContext::new(CancellationToken::new());
    let work = s.work();
    tokio::select! {
        _ = task.check(&ctx) => panic!("the silent guest cannot pass"),
        _ = hypervisor_started(&work) => {}
    }
    s.assert_nothing_left();
}

#[test]
fn sigterm_to_the_daemon_mid_boot_leaves_nothing_behind() {
    let s = Scene::new();
    let redis = RedisServer::start();
    let cfg = s.tmp.path().join("zos-perf.toml");
    let text = format!(
        "{}{}",
        guest::ONLY_PROVISIONTEST,
        s.config(&format!(
            "initramfs = {:?}\ndeadline = \"10m\"",
            guest::dir().join("silent.cpio")
        ))
    );
    std::fs::write(&cfg, text).expect("config");
    let mut daemon = common::spawn_quiet_daemon(&cfg, &redis.url());
    // No stored result: the start-up check boots the VM at once.
    let work = s.work();
    let started = std::panic::catch_unwind(|| {
        wait_for(Duration::from_secs(60), "the daemon's hypervisor", || {
            (!guest::processes_under(&work).is_empty()).then_some(())
        })
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = wait_for(Duration::from_secs(10), "the daemon to exit", || {
        daemon.try_wait().expect("wait")
    });
    if started.is_err() {
        let _ = daemon.kill();
        panic!("the daemon never started a hypervisor");
    }
    assert!(status.success(), "{status}");
    s.assert_nothing_left();
}

#[test]
fn run_task_shows_each_step_and_get_answers_not_found_when_it_cannot_run() {
    let s = Scene::new();
    let redis = RedisServer::start();
    let cfg = s.tmp.path().join("zos-perf.toml");
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(["--redis", &redis.url()])
            .args(args)
            .output()
            .expect("run zos-perf")
    };

    // No guest configured: not run, nothing stored, the reason given.
    std::fs::write(
        &cfg,
        format!("[provisiontest]\nwork_dir = {:?}\n", s.work()),
    )
    .expect("cfg");
    let out = cli(&["run-task", "provisiontest"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("provisiontest: not run: no test guest configured"),
        "{err}"
    );
    let out = cli(&["get", "provisiontest"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("provisiontest: result not found"));
    let out = cli(&["tasks"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("provisiontest "))
        .unwrap_or_else(|| panic!("listed: {table}"));
    assert!(row.contains(" no "), "off by default here: {row}");

    // A guest and qemu: the steps on stderr, `[]` stored.
    std::fs::write(&cfg, s.config("")).expect("cfg");
    let out = cli(&["run-task", "provisiontest"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for step in [
        "checking the test guest's files",
        "finding the hypervisor",
        "starting ",
        "waiting up to 5m for the guest's marker",
        "marker seen after",
        "VM stopped, nothing left behind: passed",
    ] {
        assert!(err.contains(step), "step {step:?} in {err}");
    }
    let stored: Value = serde_json::from_slice(&out.stdout).expect("printed result");
    assert_eq!(stored["name"], "provisiontest");
    assert_eq!(stored["result"], json!([]));
    let out = cli(&["get", "provisiontest"]);
    assert!(out.status.success());
    s.assert_nothing_left();
}

/// The real provisiontest, run by the monitor, except that a run panics
/// once its hypervisor and the hypervisor's own child are up: what a bug in
/// the task would do mid-boot. Each run waits for a permit of `gate` first.
struct PanicsMidBoot {
    inner: ProvisionTest,
    work: PathBuf,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
}

impl zos_perf::tasks::Task for PanicsMidBoot {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn description(&self) -> &'static str {
        self.inner.description()
    }
    fn defaults(&self) -> zos_perf::tasks::TaskDefaults {
        zos_perf::tasks::TaskDefaults {
            cron: "* * * * * *",
            jitter: Duration::ZERO,
            ..self.inner.defaults()
        }
    }
    fn run<'a>(&'a self, ctx: &'a RunContext) -> zos_perf::tasks::RunFuture<'a> {
        Box::pin(async move {
            self.gate.acquire().await?.forget();
            let work = self.work.clone();
            let up = tokio::task::spawn_blocking(move || {
                wait_for(
                    Duration::from_secs(60),
                    "the hypervisor and its child",
                    || (guest::processes_under(&work).len() >= 2).then_some(()),
                )
            });
            tokio::select! {
                r = self.inner.run(ctx) => r,
                _ = up => panic!("provisiontest panics mid-boot on purpose"),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_panics_mid_boot_leaves_nothing_is_recorded_and_the_monitor_goes_on() {
    use zos_perf::store::Outcome;

    let s = Scene::new();
    let redis = RedisServer::start();
    // A hypervisor with a child of its own, both in the run directory.
    let hypervisor = s.tmp.path().join("qemu-with-child");
    std::fs::write(
        &hypervisor,
        "#!/bin/sh\nsleep 1000 &\nexec qemu-system-x86_64 \"$@\"\n",
    )
    .expect("write hypervisor");
    std::fs::set_permissions(
        &hypervisor,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let config = Config::from_toml(&format!(
        "redis = {:?}\n[bus]\nenabled = false\n{}",
        redis.url(),
        s.config(&format!(
            "hypervisor = {hypervisor:?}\ninitramfs = {:?}\ndeadline = \"10m\"",
            guest::dir().join("silent.cpio")
        ))
    ))
    .expect("config");
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let task = PanicsMidBoot {
        inner: ProvisionTest::new(&config.sections.provisiontest, &config.grid_context()),
        work: s.work(),
        gate: gate.clone(),
    };
    let name = task.name();
    let daemon = zos_perf::Daemon::builder(config)
        .tasks(vec![std::sync::Arc::new(task)])
        .expect("register")
        .load_wait(Duration::from_secs(5))
        .start()
        .await
        .expect("daemon starts");
    let store = daemon.store().clone();

    for run in 1..=2u64 {
        let st = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                wait_for(Duration::from_secs(120), "the run to end", || {
                    store.status(name).filter(|s| s.runs >= run)
                })
            })
            .await
            .expect("join")
        };
        assert_eq!(st.runs, run, "{st:?}");
        assert_eq!(st.failures, run, "{st:?}");
        assert_eq!(st.last_outcome, Some(Outcome::Panicked), "{st:?}");
        assert_eq!(
            st.last_error.as_deref(),
            Some("panicked: provisiontest panics mid-boot on purpose")
        );
        // The hypervisor, its child and the run directory are gone.
        tokio::task::block_in_place(|| s.assert_nothing_left());
        assert!(
            store.latest(name).is_none(),
            "a panicked run stores nothing"
        );
        // The monitor goes on: the next fire runs the task again (and the
        // exclusive lease of the panicked run was given back, or it would
        // wait for it).
        if run == 1 {
            gate.add_permits(1);
        }
    }
    assert!(daemon.shutdown().await, "the daemon stops in time");
    tokio::task::block_in_place(|| s.assert_nothing_left());
}
